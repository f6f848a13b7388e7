//! The generic registry of a stored resource (k8s.io/apiserver's `registry.Store`): every verb
//! of spec §4–§6 over the storage KV and the watch cache, with the resource's behavior coming
//! from its [`Strategy`].
//!
//! Two layers, as upstream has `Store` and the REST handlers:
//! - the **typed core** (`read`, `create`, `update`, `delete`): takes and returns `S::Object`
//!   in its served form. Other resources and controllers call only this (through a narrow
//!   trait of their own, such as image-apiserver's `ImageStreamRegistry`).
//! - [`rest`]: the [`Resource`](crate::resource::Resource) served over HTTP: decodes bodies,
//!   turns PUT/PATCH/apply into an update function, and renders replies to bytes. Watches and
//!   LIST bodies come from the cache's bytes without decoding (`watch`, `read::list_wire`).

mod create;
mod delete;
mod read;
mod recent;
mod rest;
mod update;
mod watch;

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::FieldError;
use apimachinery::options::WriteOptions;
use apimachinery::{GroupKind, GroupResource};
use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use storage::cache::{CacheConfig, CacheError, Unversioned, WatchCache};
use storage::{KeyValue, Revision, StorageError, Store};

use crate::resource::{Request, UserInfo};
use crate::strategy::{to_bytes, ApiObject, ObjectCodec, Strategy};

pub use delete::Deleted;
pub use read::{ChangedObject, Changes, ListMeta};
pub use storage::cache::ReadRevision;

/// How many times a write re-reads and retries after losing a compare-and-swap before it
/// answers ServerTimeout. Every lost swap is another writer's success, so this is how big a
/// crowd writing one object at once is served in full (kube retries until the request times
/// out; a cap keeps one request's work bounded).
const MAX_UPDATE_ATTEMPTS: usize = 64;

/// The generic store of one resource: its strategy, the KV, and the watch cache every read
/// goes through.
pub struct Registry<S: Strategy> {
    strategy: Arc<S>,
    store: Arc<dyn Store>,
    cache: WatchCache<ObjectCodec<S>>,
    codec: ObjectCodec<S>,
    /// The objects this registry's REST writes stored last, typed: see [`recent`].
    recent: std::sync::Mutex<recent::Recent<S::Object>>,
    gr: GroupResource,
    gk: GroupKind,
}

/// Which of a resource's update strategies a write goes through. Upstream builds one `Store`
/// per strategy (the main one, `StatusStrategy`, `InternalStrategy`); here they share one
/// registry and differ only in the prepare/validate hooks they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateStrategy {
    /// PUT and PATCH of the resource itself.
    Main,
    /// The `/status` subresource: only status changes.
    Status,
    /// Writes by the server for virtual resources (tags, signatures): spec and status change
    /// together.
    Internal,
}

impl UpdateStrategy {
    /// The subresource a managedFields entry names.
    fn subresource(self) -> Option<&'static str> {
        (self == UpdateStrategy::Status).then_some("status")
    }
}

/// A write's result: the object in served form and, when the write stored it and rendered
/// it already (for the watch cache), its wire JSON and where it was stored, so the reply need
/// not render it again and the next update of it need not decode it ([`recent`]).
pub struct Written<O> {
    pub object: O,
    stored: Option<Stored>,
}

/// Where a written object went, the bytes stored, and its wire JSON.
struct Stored {
    key: String,
    revision: Revision,
    value: Bytes,
    json: Bytes,
}

impl<O> From<O> for Written<O> {
    /// A result that was not stored (dry run, no-op) or not rendered.
    fn from(object: O) -> Self {
        Written {
            object,
            stored: None,
        }
    }
}

/// How a write's managedFields come about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagedFields {
    /// Record an `Update` entry for the field manager (PUT, PATCH, create, internal writes).
    RecordUpdate,
    /// Server-side apply has computed them already.
    Applied,
}

/// Who writes, and with which options: what a write needs from its request.
#[derive(Clone, Copy)]
pub struct WriteContext<'a> {
    pub namespace: Option<&'a str>,
    pub user: &'a UserInfo,
    pub user_agent: Option<&'a str>,
    pub options: &'a WriteOptions,
    pub managed_fields: ManagedFields,
    /// The resourceVersion a PUT's body names, when its identity holds: an update checks it
    /// against the stored revision before decoding the stored object, so a stale PUT costs no
    /// decoding (the answer is the 409 the full check gives).
    pub expected_revision: Option<Revision>,
}

impl<'a> WriteContext<'a> {
    pub fn new(req: &'a Request, options: &'a WriteOptions) -> Self {
        WriteContext {
            namespace: req.namespace.as_deref(),
            user: &req.user,
            user_agent: req.user_agent.as_deref(),
            options,
            managed_fields: ManagedFields::RecordUpdate,
            expected_revision: None,
        }
    }

    /// The same write, expecting the stored object at `revision` (see `expected_revision`).
    pub fn expecting(self, revision: Option<Revision>) -> Self {
        WriteContext {
            expected_revision: revision,
            ..self
        }
    }

    /// The same write, with managedFields set by server-side apply.
    pub fn applied(self) -> Self {
        WriteContext {
            managed_fields: ManagedFields::Applied,
            ..self
        }
    }
}

/// The current time as Kubernetes stores it (second precision).
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// The one translation of storage errors into API errors (upstream's `storeerr`).
pub fn storage_error(e: StorageError, gr: &GroupResource, op: &str) -> ApiError {
    match e {
        StorageError::Unavailable(_) => ApiError::ServerTimeout {
            resource: gr.clone(),
            operation: op.to_string(),
            retry_after: 2,
        },
        StorageError::Compacted { .. } => ApiError::Expired {
            message: "The resourceVersion for the provided list is too old.".to_string(),
            continue_token: None,
        },
        other => ApiError::Internal(other.to_string()),
    }
}

fn cache_error(e: CacheError, gr: &GroupResource, op: &str) -> ApiError {
    match e {
        CacheError::Storage(s) => storage_error(s, gr, op),
        CacheError::TooLarge { requested, current } => {
            ApiError::too_large_resource_version(requested, current, Some(1))
        }
        CacheError::TooOld { requested, oldest } => ApiError::Expired {
            message: format!("too old resource version: {requested} ({oldest})"),
            continue_token: None,
        },
        CacheError::Codec(c) => ApiError::Internal(c.to_string()),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// The JSON bytes of a served object or a Status: what the HTTP edge writes.
pub fn render<T: Serialize>(obj: &T) -> Result<Bytes, ApiError> {
    to_bytes(obj).map_err(internal)
}

impl<S: Strategy> Registry<S> {
    pub fn new(strategy: S, store: Arc<dyn Store>, cache_config: CacheConfig) -> Self {
        let strategy = Arc::new(strategy);
        let info = strategy.info().clone();
        let cache = WatchCache::new(
            store.clone(),
            format!("/{}/", info.resource),
            ObjectCodec {
                strategy: strategy.clone(),
            },
            cache_config,
        );
        Registry {
            codec: ObjectCodec {
                strategy: strategy.clone(),
            },
            recent: Default::default(),
            strategy,
            store,
            cache,
            gr: GroupResource::new(info.group, info.resource),
            gk: GroupKind::new(info.group, info.kind),
        }
    }

    pub fn cache(&self) -> &WatchCache<ObjectCodec<S>> {
        &self.cache
    }

    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    pub fn info(&self) -> &ResourceInfo {
        self.strategy.info()
    }

    /// Whether the watch cache has loaded (virtual views built on it answer 504 until then).
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    fn resource_prefix(&self) -> String {
        format!("/{}/", self.info().resource)
    }

    fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.info().namespaced => format!("/{}/{ns}/", self.info().resource),
            _ => self.resource_prefix(),
        }
    }

    fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: self.gr.clone(),
            name: name.to_string(),
        }
    }

    /// Upstream's answer when a write keeps losing its compare-and-swap.
    fn retries_exhausted(&self, operation: &str) -> ApiError {
        ApiError::ServerTimeout {
            resource: self.gr.clone(),
            operation: operation.to_string(),
            retry_after: 1,
        }
    }

    fn invalid(&self, name: &str, errors: Vec<FieldError>) -> ApiError {
        ApiError::invalid(self.gk.clone(), name, errors)
    }

    /// Turns a stored object into its served form at `revision` (kind, apiVersion, defaults,
    /// decorations, resourceVersion).
    fn serve(&self, mut obj: S::Object, revision: Revision) -> S::Object {
        self.codec.prepare_served(&mut obj, revision);
        obj
    }

    /// Puts `obj`, about to be stored as `value` under `key`, into its served form (without a
    /// resourceVersion yet) and announces it to the watch cache, which then keeps it instead of
    /// decoding `value` once more. Returns its wire JSON, waiting for the write's revision.
    fn announce(&self, key: &str, value: &Bytes, obj: &mut S::Object) -> Option<Unversioned> {
        self.codec.prepare_served(obj, 0);
        let (json, attrs) = self.codec.unversioned(obj)?;
        self.cache.expect(key, value.clone(), json.clone(), attrs);
        Some(json)
    }

    /// The result of a write of `obj` as `value` under `key` (announced as `json`, in served
    /// form) given `revision`.
    fn written(
        &self,
        key: &str,
        mut obj: S::Object,
        value: Bytes,
        json: Option<Unversioned>,
        revision: Revision,
    ) -> Written<S::Object> {
        obj.metadata_mut().resource_version = Some(revision.to_string());
        Written {
            object: obj,
            stored: json.map(|json| Stored {
                key: key.to_string(),
                revision,
                value,
                json: json.at(revision),
            }),
        }
    }

    /// The wire JSON of a write's result. An object the write stored and rendered is kept for
    /// the next update of it instead of being dropped.
    pub fn written_json(&self, written: Written<S::Object>) -> Result<Bytes, ApiError> {
        match written.stored {
            Some(stored) => {
                let json = stored.json.clone();
                self.recent().keep(
                    &stored.key,
                    recent::Kept {
                        revision: stored.revision,
                        stored: stored.value,
                        json: stored.json,
                        object: written.object,
                    },
                );
                Ok(json)
            }
            None => render(&written.object),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, recent::Recent<S::Object>> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object stored as `kv`, in served form: the one this registry wrote and kept when it
    /// is that revision, with its wire JSON, else `kv` decoded.
    fn current_object(&self, kv: &KeyValue) -> Result<(S::Object, Option<Bytes>), ApiError> {
        let kept = self.recent().take(&kv.key, kv.mod_revision);
        match kept {
            Some((object, json)) => {
                #[cfg(debug_assertions)]
                self.check_kept(&object, &json, kv);
                Ok((object, Some(json)))
            }
            None => Ok((self.decode_stored(kv)?, None)),
        }
    }

    /// Debug builds (every test) decode anyway: a kept object must be what decoding gives.
    #[cfg(debug_assertions)]
    fn check_kept(&self, kept: &S::Object, json: &Bytes, kv: &KeyValue) {
        let render = |obj: &S::Object| serde_json::to_string(obj).unwrap_or_default();
        assert!(
            render(kept).as_bytes() == json,
            "{}: a kept object differs from its JSON",
            kv.key
        );
        match self.decode_stored(kv) {
            Ok(decoded) => assert!(
                render(kept) == render(&decoded),
                "{}: the kept object differs from the stored one decoded:\n  kept    {}\n  decoded {}",
                kv.key,
                render(kept),
                render(&decoded)
            ),
            Err(e) => panic!("{}: a kept object's stored value does not decode: {e:?}", kv.key),
        }
    }

    /// The object as stored: with its type, without a resourceVersion. Borrowed mutably
    /// (the version is put back) rather than cloned: objects can be half a megabyte.
    fn stored_bytes(&self, obj: &mut S::Object) -> Result<Bytes, ApiError> {
        let info = self.info();
        obj.set_type_meta(info.kind, &info.group_version());
        let version = obj.metadata_mut().resource_version.take();
        let bytes = to_bytes(&*obj).map_err(internal);
        obj.metadata_mut().resource_version = version;
        bytes
    }
}

#[cfg(test)]
mod tests;
