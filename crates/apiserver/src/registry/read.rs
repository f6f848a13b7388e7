//! Reads: one object or a page of a list, through the watch cache (or, for the
//! read-modify-write loops, the store itself).

use std::sync::Arc;

use apimachinery::continue_token::ContinueToken;
use apimachinery::errors::{ApiError, CONTINUE_EXPIRED_MSG};
use apimachinery::options::{ListOptions, ReadAt};
use bytes::Bytes;
use serde::Serialize;
use storage::cache::{CacheError, ListRequest, ReadRevision, Selection};
use storage::{KeyValue, Revision, StorageError};

use super::{cache_error, internal, storage_error, Registry};
use crate::strategy::{Lookup, ObjectAttrs, Strategy};

/// A list's metadata, in Go's field order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    pub resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_item_count: Option<u64>,
}

/// One object that changed ([`Registry::changed_since`]): who it is, and what it is now
/// (`None`: deleted).
#[derive(Clone, Debug, PartialEq)]
pub struct ChangedObject<T> {
    pub namespace: Option<String>,
    pub name: String,
    pub object: Option<T>,
}

/// The objects changed since a revision, and the revision they are current at.
pub type Changes<T> = (Vec<ChangedObject<T>>, Revision);

/// A page of a list as the cache holds it: each item's served JSON.
pub(super) struct WireList {
    pub metadata: ListMeta,
    pub items: Vec<Bytes>,
}

fn read_revision(at: ReadAt) -> ReadRevision {
    match at {
        ReadAt::Latest => ReadRevision::Consistent,
        ReadAt::Any => ReadRevision::Any,
        ReadAt::NotOlderThan(n) => ReadRevision::NotOlderThan(revision(n)),
        ReadAt::Exact(n) => ReadRevision::Exact(revision(n)),
    }
}

/// Parsing already refuses resourceVersions beyond a revision's range; should one get here, it
/// saturates (a read from the far future: 504) rather than wrapping to a negative revision.
fn revision(rv: u64) -> Revision {
    Revision::try_from(rv).unwrap_or(Revision::MAX)
}

/// Where a list starts and at which revision: from its continue token, or from its options.
struct ListStart {
    start: Option<String>,
    revision: ReadRevision,
    token: Option<ContinueToken>,
}

impl<S: Strategy> Registry<S> {
    /// The revision of a consistent read, fetched once for several reads of one request (of
    /// this resource or another: the revision is the whole store's).
    pub async fn consistent_read(&self) -> Result<ReadRevision, ApiError> {
        self.cache
            .consistent_read()
            .await
            .map_err(|e| cache_error(e, &self.gr, "get"))
    }

    /// One object's served form from the watch cache, as of `at`.
    pub async fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
        at: ReadRevision,
    ) -> Result<Option<S::Object>, ApiError> {
        self.get_wire(namespace, name, at)
            .await?
            .map(|json| serde_json::from_slice(&json).map_err(internal))
            .transpose()
    }

    /// One object's served JSON from the watch cache (GET writes it as it is).
    pub(super) async fn get_wire(
        &self,
        namespace: Option<&str>,
        name: &str,
        at: ReadRevision,
    ) -> Result<Option<Bytes>, ApiError> {
        let key = self.key(namespace, name);
        let (obj, _, _) = self
            .cache
            .get(&key, at)
            .await
            .map_err(|e| cache_error(e, &self.gr, "get"))?;
        obj.map(|o| self.cache.wire(&o))
            .transpose()
            .map_err(|e| cache_error(e, &self.gr, "get"))
    }

    /// The object as the store holds it now, with its revision: where every read-modify-write
    /// starts, so that its compare-and-swap is against the latest version.
    pub async fn get_current(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<(S::Object, Revision)>, ApiError> {
        let Some(kv) = self.read_stored(namespace, name).await? else {
            return Ok(None);
        };
        Ok(Some((self.decode_stored(&kv)?, kv.mod_revision)))
    }

    /// Whether the store holds the object (read as `get_current` reads, without decoding it).
    pub async fn exists(&self, namespace: Option<&str>, name: &str) -> Result<bool, ApiError> {
        Ok(self.read_stored(namespace, name).await?.is_some())
    }

    /// What the store holds for the object, undecoded.
    pub(super) async fn read_stored(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<KeyValue>, ApiError> {
        let key = self.key(namespace, name);
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| storage_error(e, &self.gr, "get"))?;
        Ok(got.kv)
    }

    /// The served form of a stored value.
    pub(super) fn decode_stored(&self, kv: &KeyValue) -> Result<S::Object, ApiError> {
        self.codec
            .served(&kv.key, &kv.value, kv.mod_revision)
            .map_err(internal)
    }

    /// A page of served objects in `namespace` (all namespaces when `None`).
    pub async fn list(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<(Vec<S::Object>, ListMeta), ApiError> {
        let page = self.list_wire(namespace, opts).await?;
        let items = page
            .items
            .iter()
            .map(|json| serde_json::from_slice(json).map_err(internal))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, page.metadata))
    }

    /// What changed after `after` (a revision this registry's cache reported), typed, with the revision that is current at; `None` when the
    /// cache cannot tell (its event window moved past `after`, or it relisted): list instead.
    /// A controller follows the objects with this rather than reading all of them each time.
    pub fn changed_since(&self, after: Revision) -> Result<Option<Changes<S::Object>>, ApiError> {
        let (changed, revision) = match self.cache.changed_after(&self.resource_prefix(), after) {
            Ok(changed) => changed,
            Err(CacheError::TooOld { .. }) => return Ok(None),
            Err(e) => return Err(cache_error(e, &self.gr, "list")),
        };
        let mut objects = Vec::with_capacity(changed.len());
        for (key, cached) in changed {
            let Some((namespace, name)) = self.identity_of(&key) else {
                continue;
            };
            let object = match cached {
                Some(cached) => {
                    let json = self.cache.wire(&cached).map_err(internal)?;
                    Some(serde_json::from_slice(&json).map_err(internal)?)
                }
                None => None,
            };
            objects.push(ChangedObject {
                namespace,
                name,
                object,
            });
        }
        Ok(Some((objects, revision)))
    }

    /// The namespace and name a storage key of this resource stands for.
    fn identity_of(&self, key: &str) -> Option<(Option<String>, String)> {
        let rest = key.strip_prefix(&self.resource_prefix())?;
        if !self.info().namespaced {
            return Some((None, rest.to_string()));
        }
        let (namespace, name) = rest.split_once('/')?;
        Some((Some(namespace.to_string()), name.to_string()))
    }

    pub(super) fn selection(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Selection<ObjectAttrs>, ApiError> {
        let mut supported = vec!["metadata.name", "metadata.namespace"];
        supported.extend_from_slice(self.strategy.selectable_field_names());
        opts.field_selector
            .check_fields(&supported)
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let mut sel = Selection::prefix(self.prefix(namespace));
        if !opts.label_selector.is_empty() || !opts.field_selector.is_empty() {
            let labels = opts.label_selector.clone();
            let fields = opts.field_selector.clone();
            sel.filter = Some(Arc::new(move |a: &ObjectAttrs| {
                labels.matches_with(|k| a.label(k)) && fields.matches(|f| a.field(f))
            }));
        }
        Ok(sel)
    }

    fn list_start(&self, opts: &ListOptions) -> Result<ListStart, ApiError> {
        let Some(token) = &opts.continue_token else {
            return Ok(ListStart {
                start: None,
                revision: read_revision(opts.list_read_at()?),
                token: None,
            });
        };
        if opts.resource_version.as_deref().is_some_and(|rv| rv != "0") {
            return Err(ApiError::BadRequest(
                "specifying resource version is not allowed when using continue".to_string(),
            ));
        }
        let t = ContinueToken::decode(token)
            .map_err(|e| ApiError::BadRequest(format!("invalid continue token: {e}")))?;
        Ok(ListStart {
            start: Some(format!("{}{}", self.resource_prefix(), t.start)),
            revision: if t.revision == -1 {
                ReadRevision::Consistent
            } else {
                ReadRevision::Exact(t.revision)
            },
            token: Some(t),
        })
    }

    /// A page of the list as the cache holds it (LIST assembles its body from these bytes).
    pub(super) async fn list_wire(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<WireList, ApiError> {
        let selection = self.selection(namespace, opts)?;
        let filtered = selection.filter.is_some();
        let ListStart {
            start,
            revision,
            token,
        } = self.list_start(opts)?;
        let limit = match revision {
            ReadRevision::Any => 0,
            _ => opts.limit as usize,
        };
        let request = ListRequest {
            selection,
            start,
            limit,
            revision,
        };
        let result = self
            .cache
            .list(request)
            .await
            .map_err(|e| self.list_error(e, token.as_ref()))?;
        let mut metadata = ListMeta {
            resource_version: result.revision.to_string(),
            ..ListMeta::default()
        };
        if let Some((last, _)) = result.items.last().filter(|_| result.more) {
            let resource_prefix = self.resource_prefix();
            let rel = last.strip_prefix(&resource_prefix).unwrap_or(last);
            metadata.continue_token = Some(ContinueToken::after(result.revision, rel).encode());
            if !filtered && result.remaining > 0 {
                metadata.remaining_item_count = Some(result.remaining);
            }
        }
        let items = result
            .items
            .iter()
            .map(|(_, o)| self.cache.wire(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cache_error(e, &self.gr, "list"))?;
        Ok(WireList { metadata, items })
    }

    /// A continued list whose revision was compacted gets a fresh token (kube's 410).
    fn list_error(&self, e: CacheError, token: Option<&ContinueToken>) -> ApiError {
        match (e, token) {
            (CacheError::Storage(StorageError::Compacted { .. }), Some(t)) => ApiError::Expired {
                message: CONTINUE_EXPIRED_MSG.to_string(),
                continue_token: Some(
                    ContinueToken {
                        revision: -1,
                        start: t.start.clone(),
                    }
                    .encode(),
                ),
            },
            (e, _) => cache_error(e, &self.gr, "list"),
        }
    }
}

/// What a strategy reads of other objects of its resource: consistent reads from the cache.
#[async_trait::async_trait]
impl<S: Strategy> Lookup<S::Object> for Registry<S> {
    async fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<S::Object>, ApiError> {
        Registry::get(self, namespace, name, ReadRevision::Consistent).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions_map_to_revisions_without_wrapping() {
        assert_eq!(read_revision(ReadAt::Latest), ReadRevision::Consistent);
        assert_eq!(read_revision(ReadAt::Any), ReadRevision::Any);
        assert_eq!(
            read_revision(ReadAt::NotOlderThan(7)),
            ReadRevision::NotOlderThan(7)
        );
        assert_eq!(read_revision(ReadAt::Exact(7)), ReadRevision::Exact(7));
        assert_eq!(
            read_revision(ReadAt::Exact(u64::MAX)),
            ReadRevision::Exact(Revision::MAX)
        );
        assert_eq!(
            read_revision(ReadAt::NotOlderThan(1 << 63)),
            ReadRevision::NotOlderThan(Revision::MAX)
        );
    }
}
