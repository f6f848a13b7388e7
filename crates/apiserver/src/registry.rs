//! The generic registry of a stored resource (k8s.io/apiserver's `registry.Store`): every verb
//! of spec §4–§6 over the storage KV and the watch cache, with the resource's behavior coming
//! from its [`Strategy`].

use std::sync::Arc;
use std::time::Duration;

use apimachinery::continue_token::ContinueToken;
use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::{ApiError, CONTINUE_EXPIRED_MSG};
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::options::{ListOptions, ReadAt, WriteOptions};
use apimachinery::table::ColumnDefinition;
use apimachinery::validation::{validate_object_meta, validate_object_meta_update};
use apimachinery::{GroupKind, GroupResource};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{json, Value};
use storage::cache::{
    CacheConfig, CacheError, CacheWatcher, ListRequest, ReadRevision, Selection, WatchCache,
    WatchItem, WatchRequest, WatchStart,
};
use storage::{Revision, StorageError, Store};

use crate::decode::{self, DecodeError};
use crate::managed::{self, UpdateRecord};
use crate::patch::{self, PatchType};
use crate::resource::{Reply, Request, Resource, Verb, WatchEvent};
use crate::strategy::{to_bytes, ApiObject, ObjectAttrs, ObjectCodec, Strategy, StrategyContext};

/// What kind of read-modify-write an update is.
#[derive(Clone, Copy, Debug)]
pub struct UpdateMode {
    /// Through the `/status` subresource.
    pub status: bool,
    /// The body must carry a resourceVersion (PUT of an image resource).
    pub require_rv: bool,
    /// Record an `Update` managedFields entry (apply records its own).
    pub record: bool,
    /// A write by the server itself for a virtual resource: spec and status both change
    /// (`Strategy::prepare_for_internal_update`).
    pub internal: bool,
}

impl UpdateMode {
    /// What virtual resources write with.
    pub const INTERNAL: UpdateMode = UpdateMode {
        status: false,
        require_rv: false,
        record: true,
        internal: true,
    };
}

/// How many times a write re-reads and retries after losing a compare-and-swap.
const MAX_UPDATE_ATTEMPTS: usize = 16;
/// How many names a `generateName` create tries (KEP-4420).
const GENERATE_NAME_ATTEMPTS: usize = 8;
/// kube's `--min-request-timeout`: watches without `timeoutSeconds` last 1–2× this.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

pub struct Registry<S: Strategy> {
    strategy: Arc<S>,
    store: Arc<dyn Store>,
    cache: WatchCache<ObjectCodec<S>>,
    codec: ObjectCodec<S>,
    gr: GroupResource,
    gk: GroupKind,
}

/// The current time as Kubernetes stores it (second precision).
pub fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time(jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

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

fn read_revision(at: ReadAt) -> ReadRevision {
    match at {
        ReadAt::Latest => ReadRevision::Consistent,
        ReadAt::Any => ReadRevision::Any,
        ReadAt::NotOlderThan(n) => ReadRevision::NotOlderThan(n as Revision),
        ReadAt::Exact(n) => ReadRevision::Exact(n as Revision),
    }
}

/// Five characters from kube's name-generation alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

fn generated_name(prefix: &str) -> String {
    let base: String = prefix.chars().take(58).collect();
    format!("{base}{}", random_suffix())
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

    fn info(&self) -> &ResourceInfo {
        self.strategy.info()
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

    fn invalid(&self, name: &str, errors: Vec<FieldError>) -> ApiError {
        ApiError::invalid(self.gk.clone(), name, errors)
    }

    /// Reads the stored object and its served form.
    pub async fn get_object(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<(S::Object, Revision)>, ApiError> {
        let key = self.key(namespace, name);
        let got = self
            .store
            .get(&key)
            .await
            .map_err(|e| storage_error(e, &self.gr, "get"))?;
        match got.kv {
            None => Ok(None),
            Some(kv) => {
                let obj = self
                    .codec
                    .served(&key, &kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                Ok(Some((obj, kv.mod_revision)))
            }
        }
    }

    fn served_bytes(&self, obj: &mut S::Object, revision: Revision) -> Result<Bytes, ApiError> {
        self.codec.prepare_served(obj, revision);
        to_bytes(obj).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The stored form: kind and apiVersion set, no resourceVersion.
    fn stored_bytes(&self, obj: &S::Object) -> Result<Bytes, ApiError> {
        let mut obj = obj.clone();
        let info = self.info();
        obj.set_type_meta(info.kind, &info.group_version());
        obj.metadata_mut().resource_version = None;
        to_bytes(&obj).map_err(|e| ApiError::Internal(e.to_string()))
    }

    // -----------------------------------------------------------------------------------
    // Reads

    async fn get(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let at = match req.query.get("resourceVersion").filter(|s| !s.is_empty()) {
            None => ReadRevision::Consistent,
            Some(rv) => match apimachinery::options::parse_resource_version(rv)? {
                0 => ReadRevision::Any,
                n => ReadRevision::NotOlderThan(n as Revision),
            },
        };
        let key = self.key(req.namespace.as_deref(), name);
        let (obj, _, _) = self
            .cache
            .get(&key, at)
            .await
            .map_err(|e| cache_error(e, &self.gr, "get"))?;
        let obj = obj.ok_or_else(|| self.not_found(name))?;
        Ok(Reply::Object {
            code: 200,
            json: self
                .cache
                .wire(&obj)
                .map_err(|e| cache_error(e, &self.gr, "get"))?,
        })
    }

    fn selection(
        &self,
        req: &Request,
        opts: &ListOptions,
    ) -> Result<Selection<ObjectAttrs>, ApiError> {
        let mut supported = vec!["metadata.name", "metadata.namespace"];
        supported.extend_from_slice(self.strategy.selectable_field_names());
        opts.field_selector
            .check_fields(&supported)
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let mut sel = Selection::prefix(self.prefix(req.namespace.as_deref()));
        if !opts.label_selector.is_empty() || !opts.field_selector.is_empty() {
            let labels = opts.label_selector.clone();
            let fields = opts.field_selector.clone();
            sel.filter = Some(Arc::new(move |a: &ObjectAttrs| {
                labels.matches_with(|k| a.label(k)) && fields.matches(|f| a.field(f))
            }));
        }
        Ok(sel)
    }

    async fn list(&self, req: &Request, opts: &ListOptions) -> Result<Reply, ApiError> {
        let selection = self.selection(req, opts)?;
        let filtered = selection.filter.is_some();
        let resource_prefix = self.resource_prefix();
        let (start, revision, continuing) = match &opts.continue_token {
            Some(token) => {
                if opts.resource_version.as_deref().is_some_and(|rv| rv != "0") {
                    return Err(ApiError::BadRequest(
                        "specifying resource version is not allowed when using continue"
                            .to_string(),
                    ));
                }
                let t = ContinueToken::decode(token)
                    .map_err(|e| ApiError::BadRequest(format!("invalid continue token: {e}")))?;
                let at = if t.revision == -1 {
                    ReadRevision::Consistent
                } else {
                    ReadRevision::Exact(t.revision)
                };
                (Some(format!("{resource_prefix}{}", t.start)), at, Some(t))
            }
            None => (None, read_revision(opts.list_read_at()?), None),
        };
        let limit = match revision {
            ReadRevision::Any => 0,
            _ => opts.limit as usize,
        };
        let result = self
            .cache
            .list(ListRequest {
                selection,
                start,
                limit,
                revision,
            })
            .await
            .map_err(|e| match (e, &continuing) {
                (CacheError::Storage(StorageError::Compacted { .. }), Some(t)) => {
                    ApiError::Expired {
                        message: CONTINUE_EXPIRED_MSG.to_string(),
                        continue_token: Some(
                            ContinueToken {
                                revision: -1,
                                start: t.start.clone(),
                            }
                            .encode(),
                        ),
                    }
                }
                (e, _) => cache_error(e, &self.gr, "list"),
            })?;
        let mut metadata = serde_json::Map::new();
        metadata.insert("resourceVersion".into(), result.revision.to_string().into());
        if result.more {
            if let Some((last, _)) = result.items.last() {
                let rel = last.strip_prefix(&resource_prefix).unwrap_or(last);
                metadata.insert(
                    "continue".into(),
                    ContinueToken::after(result.revision, rel).encode().into(),
                );
                if !filtered && result.remaining > 0 {
                    metadata.insert("remainingItemCount".into(), result.remaining.into());
                }
            }
        }
        let items = result
            .items
            .iter()
            .map(|(_, o)| self.cache.wire(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cache_error(e, &self.gr, "list"))?;
        Ok(Reply::List {
            kind: format!("{}List", self.info().kind),
            api_version: self.info().group_version(),
            metadata: Value::Object(metadata),
            items,
        })
    }

    async fn watch(&self, req: &Request, mut opts: ListOptions) -> Result<Reply, ApiError> {
        if let Some(name) = &req.name {
            match opts.field_selector.required_value("metadata.name") {
                Some(n) if n != name => {
                    return Err(ApiError::BadRequest(
                        "fieldSelector metadata.name doesn't match requested name".to_string(),
                    ))
                }
                Some(_) => {}
                None => {
                    opts.field_selector
                        .requirements
                        .push(apimachinery::fields::FieldRequirement {
                            field: "metadata.name".into(),
                            value: name.clone(),
                            negated: false,
                        })
                }
            }
        }
        let selection = self.selection(req, &opts)?;
        let rv = opts.revision()?;
        let start = match (opts.send_initial_events, rv) {
            (Some(true), None) => WatchStart::Snapshot(ReadRevision::Consistent),
            (Some(true), Some(0)) => WatchStart::Snapshot(ReadRevision::Any),
            (Some(true), Some(n)) => {
                WatchStart::Snapshot(ReadRevision::NotOlderThan(n as Revision))
            }
            (Some(false), Some(n)) if n > 0 => WatchStart::After(n as Revision),
            (Some(false), _) => WatchStart::After(self.cache.revision()),
            (None, None) => WatchStart::Snapshot(ReadRevision::Consistent),
            (None, Some(0)) => WatchStart::Snapshot(ReadRevision::Any),
            (None, Some(n)) => WatchStart::After(n as Revision),
        };
        let timeout = match opts.timeout_seconds {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => {
                let jitter = (uuid::Uuid::new_v4().as_bytes()[0] as f64) / 255.0;
                MIN_REQUEST_TIMEOUT.mul_f64(1.0 + jitter)
            }
        };
        let watch = self
            .cache
            .watch(WatchRequest {
                selection,
                start,
                bookmarks: opts.allow_watch_bookmarks,
                initial_events_end: opts.send_initial_events == Some(true)
                    && opts.allow_watch_bookmarks,
            })
            .await;
        let info = self.info();
        let watcher = match watch {
            Ok(w) => w,
            Err(
                e @ (CacheError::TooOld { .. }
                | CacheError::Storage(StorageError::Compacted { .. })),
            ) => {
                let status = cache_error(e, &self.gr, "watch").to_status();
                let object = to_bytes(&status).map_err(|e| ApiError::Internal(e.to_string()))?;
                let event = WatchEvent {
                    event_type: "ERROR",
                    object,
                    frame: None,
                };
                return Ok(Reply::Watch(
                    futures::stream::once(async move { event }).boxed(),
                ));
            }
            Err(e) => return Err(cache_error(e, &self.gr, "watch")),
        };
        let state = WatchState {
            watcher,
            deadline: tokio::time::Instant::now() + timeout,
            shutdown: req.shutdown.clone(),
            kind: info.kind,
            api_version: info.group_version(),
        };
        Ok(Reply::Watch(
            futures::stream::unfold(state, |mut st| async move {
                let ev = st.next_event().await?;
                Some((ev, st))
            })
            .boxed(),
        ))
    }

    // -----------------------------------------------------------------------------------
    // Writes

    fn decode_body(&self, req: &Request, opts: &WriteOptions) -> Result<S::Object, ApiError> {
        let value = decode::body_value(&req.body, req.content_type.as_deref())?;
        decode::check_type_meta(&value, self.info())?;
        let duplicates = match req.content_type.as_deref() {
            None | Some("application/json") => decode::duplicate_fields(&req.body),
            _ => Vec::new(),
        };
        let mut obj: S::Object = decode::typed_checked(
            value,
            &duplicates,
            self.info(),
            opts.field_validation,
            &req.warnings,
        )
        .map_err(|e| e.for_body(self.info()))?;
        self.strategy.default(&mut obj);
        Ok(obj)
    }

    fn check_namespace(&self, req: &Request, obj: &mut S::Object) -> Result<(), ApiError> {
        let meta = obj.metadata_mut();
        if !self.info().namespaced {
            meta.namespace = None;
            return Ok(());
        }
        let url_ns = req.namespace.as_deref().unwrap_or("");
        match meta.namespace.as_deref() {
            Some(ns) if !ns.is_empty() && ns != url_ns => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_string(),
            )),
            _ => {
                meta.namespace = (!url_ns.is_empty()).then(|| url_ns.to_string());
                Ok(())
            }
        }
    }

    fn record_managed_fields(
        &self,
        req: &Request,
        opts: &WriteOptions,
        old: Option<&S::Object>,
        new: &mut S::Object,
        subresource: Option<&str>,
    ) -> Result<(), ApiError> {
        let manager =
            managed::manager_name(opts.field_manager.as_deref(), req.user_agent.as_deref());
        let time = serde_json::to_value(now()).unwrap_or_default();
        let gv = self.info().group_version();
        let old_v = old
            .map(serde_json::to_value)
            .transpose()
            .map_err(internal)?;
        let mut new_v = serde_json::to_value(&*new).map_err(internal)?;
        managed::record_update(
            old_v.as_ref(),
            &mut new_v,
            &UpdateRecord {
                manager: &manager,
                api_version: &gv,
                subresource,
                time: time.as_str().unwrap_or(""),
                merge_keys: self.strategy.list_merge_keys(),
            },
        );
        *new = serde_json::from_value(new_v).map_err(internal)?;
        Ok(())
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let mut obj = self.decode_body(req, &opts)?;
        self.create_object(req, &opts, &mut obj, true).await
    }

    /// Creates `obj` (already decoded and defaulted): the path of POST and of apply on a
    /// missing object.
    async fn create_object(
        &self,
        req: &Request,
        opts: &WriteOptions,
        obj: &mut S::Object,
        record: bool,
    ) -> Result<Reply, ApiError> {
        self.check_namespace(req, obj)?;
        let meta = obj.metadata_mut();
        if meta
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv.parse::<u64>().is_ok_and(|n| n > 0))
        {
            return Err(ApiError::Unknown(
                "resourceVersion should not be set on objects to be created".to_string(),
            ));
        }
        meta.resource_version = None;
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.creation_timestamp = Some(now());
        meta.deletion_timestamp = None;
        meta.deletion_grace_period_seconds = None;
        meta.self_link = None;
        meta.generation = None;
        meta.managed_fields = meta.managed_fields.take().filter(|m| !m.is_empty());
        let generate = meta
            .name
            .as_deref()
            .is_none_or(str::is_empty)
            .then(|| meta.generate_name.clone().filter(|g| !g.is_empty()))
            .flatten();
        if let Some(prefix) = &generate {
            meta.name = Some(generated_name(prefix));
        }
        self.strategy.prepare_for_create(obj);
        let mut errs = validate_object_meta(obj.metadata(), self.info().namespaced, |n, p| {
            self.strategy.validate_name(n, p)
        });
        let ctx = StrategyContext {
            user: &req.user,
            namespace: req.namespace.as_deref(),
        };
        errs.extend(self.strategy.validate_create(&ctx, obj).await);
        let name = obj.metadata().name.clone().unwrap_or_default();
        if !errs.is_empty() {
            return Err(self.invalid(&name, errs));
        }
        if record {
            self.record_managed_fields(req, opts, None, obj, None)?;
        }
        if opts.dry_run {
            let json = self.served_bytes(obj, 0)?;
            return Ok(Reply::Object { code: 201, json });
        }
        let namespace = obj.metadata().namespace.clone();
        for attempt in 0.. {
            let name = obj.metadata().name.clone().unwrap_or_default();
            let key = self.key(namespace.as_deref(), &name);
            let value = self.stored_bytes(obj)?;
            match self.store.create(&key, value).await {
                Ok(rev) => {
                    let json = self.served_bytes(obj, rev)?;
                    return Ok(Reply::Object { code: 201, json });
                }
                Err(StorageError::AlreadyExists { .. }) => match &generate {
                    Some(prefix) if attempt + 1 < GENERATE_NAME_ATTEMPTS => {
                        obj.metadata_mut().name = Some(generated_name(prefix));
                    }
                    Some(_) => {
                        return Err(ApiError::AlreadyExistsGenerated {
                            resource: self.gr.clone(),
                            name,
                        })
                    }
                    None => {
                        return Err(ApiError::AlreadyExists {
                            resource: self.gr.clone(),
                            name,
                        })
                    }
                },
                Err(e) => return Err(storage_error(e, &self.gr, "create")),
            }
        }
        Err(ApiError::Internal("unreachable create loop".to_string()))
    }

    /// The read-modify-write loop of PUT and PATCH (`GuaranteedUpdate`): `produce` builds the
    /// new object from the current one; a conflict with a concurrent writer re-runs it unless
    /// the request pinned a resourceVersion.
    async fn update_with<F>(
        &self,
        req: &Request,
        opts: &WriteOptions,
        name: &str,
        mode: UpdateMode,
        mut produce: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        let UpdateMode {
            status,
            require_rv,
            record,
            internal,
        } = mode;
        let namespace = req.namespace.as_deref();
        let key = self.key(namespace, name);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((old, current_rev)) = self.get_object(namespace, name).await? else {
                return Err(self.not_found(name));
            };
            let mut new = produce(&old)?;
            self.check_namespace(req, &mut new)?;
            let new_name = new.metadata().name.clone().unwrap_or_default();
            if !new_name.is_empty() && new_name != name {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
            new.metadata_mut().name = Some(name.to_string());
            let pinned = match new
                .metadata()
                .resource_version
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                None if require_rv => {
                    return Err(ApiError::invalid(
                        GroupKind::new(self.gr.group.clone(), self.gr.resource.clone()),
                        name,
                        vec![FieldError::invalid(
                            &FieldPath::new("metadata").child("resourceVersion"),
                            0i64,
                            "must be specified for an update",
                        )],
                    ))
                }
                None => false,
                Some(rv) => {
                    let rv = apimachinery::options::parse_resource_version(rv)?;
                    if rv as Revision != current_rev {
                        return Err(ApiError::conflict(&self.gr, name));
                    }
                    true
                }
            };
            self.restore_system_fields(&mut new, &old);
            let ctx = StrategyContext {
                user: &req.user,
                namespace,
            };
            let mut errs = Vec::new();
            if new.metadata().uid.as_deref().unwrap_or("")
                != old.metadata().uid.as_deref().unwrap_or("")
            {
                errs.push(FieldError::invalid(
                    &FieldPath::new("metadata").child("uid"),
                    new.metadata().uid.clone().unwrap_or_default(),
                    "field is immutable",
                ));
            }
            if status {
                self.strategy.prepare_for_status_update(&mut new, &old);
                errs.extend(validate_object_meta_update(new.metadata(), old.metadata()));
                errs.extend(
                    self.strategy
                        .validate_status_update(&ctx, &mut new, &old)
                        .await,
                );
            } else {
                if internal {
                    self.strategy.prepare_for_internal_update(&mut new, &old);
                } else {
                    self.strategy.prepare_for_update(&mut new, &old);
                }
                errs.extend(validate_object_meta_update(new.metadata(), old.metadata()));
                errs.extend(self.strategy.validate_update(&ctx, &mut new, &old).await);
            }
            if !errs.is_empty() {
                return Err(self.invalid(name, errs));
            }
            self.strategy.decorate(&mut new);
            if self.stored_bytes(&new)? == self.stored_bytes(&old)? {
                let mut old = old;
                let json = self.served_bytes(&mut old, current_rev)?;
                return Ok(Reply::Object { code: 200, json });
            }
            if record {
                self.record_managed_fields(
                    req,
                    opts,
                    Some(&old),
                    &mut new,
                    status.then_some("status"),
                )?;
            }
            if opts.dry_run {
                let json = self.served_bytes(&mut new, current_rev)?;
                return Ok(Reply::Object { code: 200, json });
            }
            if let Some(reply) = self.finish_deletion(&key, &mut new, current_rev).await? {
                return Ok(reply);
            }
            match self
                .store
                .update(&key, self.stored_bytes(&new)?, current_rev)
                .await
            {
                Ok(rev) => {
                    let json = self.served_bytes(&mut new, rev)?;
                    return Ok(Reply::Object { code: 200, json });
                }
                Err(StorageError::Conflict { .. }) if pinned => {
                    return Err(ApiError::conflict(&self.gr, name))
                }
                Err(StorageError::Conflict { .. }) => continue,
                Err(StorageError::NotFound { .. }) => return Err(self.not_found(name)),
                Err(e) => return Err(storage_error(e, &self.gr, "update")),
            }
        }
        Err(ApiError::conflict(&self.gr, name))
    }

    /// An update that removes the last finalizer of an object being deleted deletes it.
    async fn finish_deletion(
        &self,
        key: &str,
        new: &mut S::Object,
        current_rev: Revision,
    ) -> Result<Option<Reply>, ApiError> {
        let meta = new.metadata();
        if meta.deletion_timestamp.is_none()
            || meta.finalizers.as_ref().is_some_and(|f| !f.is_empty())
        {
            return Ok(None);
        }
        match self.store.delete(key, Some(current_rev)).await {
            Ok((rev, _)) => {
                let json = self.served_bytes(new, rev)?;
                Ok(Some(Reply::Object { code: 200, json }))
            }
            Err(StorageError::Conflict { .. }) => Err(ApiError::conflict(
                &self.gr,
                meta.name.as_deref().unwrap_or(""),
            )),
            Err(e) => Err(storage_error(e, &self.gr, "delete")),
        }
    }

    /// §2.4: what an update cannot change is silently taken from the stored object.
    fn restore_system_fields(&self, new: &mut S::Object, old: &S::Object) {
        let old = old.metadata();
        let meta = new.metadata_mut();
        if meta.uid.as_deref().is_none_or(str::is_empty) {
            meta.uid = old.uid.clone();
        }
        meta.creation_timestamp = old.creation_timestamp.clone();
        meta.deletion_timestamp = old.deletion_timestamp.clone();
        meta.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
        meta.generation = old.generation;
        meta.self_link = None;
        match &meta.managed_fields {
            None => meta.managed_fields = old.managed_fields.clone(),
            Some(m) if m.is_empty() => meta.managed_fields = None,
            Some(_) => {}
        }
    }

    async fn update(&self, req: &Request, name: &str, status: bool) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "UpdateOptions")?;
        let body = self.decode_body(req, &opts)?;
        self.update_with(
            req,
            &opts,
            name,
            UpdateMode {
                status,
                require_rv: true,
                record: true,
                internal: false,
            },
            |_| Ok(body.clone()),
        )
        .await
    }

    async fn patch(&self, req: &Request, name: &str, status: bool) -> Result<Reply, ApiError> {
        let patch_type = PatchType::from_content_type(req.content_type.as_deref())?;
        let opts = WriteOptions::parse(&req.query, "PatchOptions")?;
        if patch_type == PatchType::Apply {
            return crate::apply::apply(self, req, &opts, name, status).await;
        }
        if opts.force.is_some() {
            return Err(ApiError::invalid(
                GroupKind::new("meta.k8s.io", "PatchOptions"),
                "",
                vec![FieldError::forbidden(
                    &FieldPath::new("force"),
                    "may not be specified for non-apply patch",
                )],
            ));
        }
        let info = self.info().clone();
        let keys = self.strategy.list_merge_keys();
        let warnings = req.warnings.clone();
        let body = req.body.clone();
        self.update_with(
            req,
            &opts,
            name,
            UpdateMode {
                status,
                require_rv: false,
                record: true,
                internal: false,
            },
            move |old| {
                let mut doc = serde_json::to_value(old).map_err(internal)?;
                match patch_type {
                    PatchType::Json => patch::apply_json_patch(&mut doc, &body)?,
                    PatchType::Merge => patch::apply_merge_patch(&mut doc, &body)?,
                    PatchType::Strategic => {
                        patch::apply_strategic_merge_patch(&mut doc, &body, keys)?
                    }
                    PatchType::Apply => {}
                }
                decode::check_type_meta(&doc, &info)?;
                let mut obj: S::Object =
                    decode::typed(doc.clone(), &info, opts.field_validation, &warnings)
                        .map_err(|e| patched_invalid(&info, name, &doc, e))?;
                self.strategy.default(&mut obj);
                Ok(obj)
            },
        )
        .await
    }

    // -----------------------------------------------------------------------------------
    // Deletes

    async fn delete(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let opts = crate::delete::DeleteOptions::parse(req)?;
        self.delete_one(req, name, &opts).await
    }

    async fn delete_one(
        &self,
        req: &Request,
        name: &str,
        opts: &crate::delete::DeleteOptions,
    ) -> Result<Reply, ApiError> {
        let namespace = req.namespace.as_deref();
        let key = self.key(namespace, name);
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((mut obj, rev)) = self.get_object(namespace, name).await? else {
                return Err(self.not_found(name));
            };
            opts.check_preconditions(&self.gk, name, &obj, rev)?;
            let finalizers = obj.metadata().finalizers.clone().unwrap_or_default();
            let extra = opts.finalizer_to_add(self.strategy.info().stored && self.gc_supported());
            if !finalizers.is_empty() || extra.is_some() {
                if obj.metadata().deletion_timestamp.is_some() {
                    let json = self.served_bytes(&mut obj, rev)?;
                    return Ok(Reply::Object { code: 200, json });
                }
                let meta = obj.metadata_mut();
                meta.deletion_timestamp = Some(now());
                meta.deletion_grace_period_seconds = Some(0);
                if let Some(f) = extra {
                    let list = meta.finalizers.get_or_insert_with(Vec::new);
                    if !list.iter().any(|x| x == f) {
                        list.push(f.to_string());
                    }
                }
                if let Some(g) = meta.generation.filter(|g| *g > 0) {
                    meta.generation = Some(g + 1);
                }
                if opts.dry_run {
                    let json = self.served_bytes(&mut obj, rev)?;
                    return Ok(Reply::Object { code: 200, json });
                }
                match self.store.update(&key, self.stored_bytes(&obj)?, rev).await {
                    Ok(new_rev) => {
                        let json = self.served_bytes(&mut obj, new_rev)?;
                        return Ok(Reply::Object { code: 200, json });
                    }
                    Err(StorageError::Conflict { .. }) => continue,
                    Err(e) => return Err(storage_error(e, &self.gr, "delete")),
                }
            }
            let uid = obj.metadata().uid.clone().unwrap_or_default();
            let status = json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": self.gr.group, "kind": self.gr.resource, "uid": uid},
            });
            if opts.dry_run {
                return Ok(Reply::Status { code: 200, status });
            }
            match self.store.delete(&key, Some(rev)).await {
                Ok(_) => return Ok(Reply::Status { code: 200, status }),
                Err(StorageError::Conflict { .. }) => continue,
                Err(StorageError::NotFound { .. }) => return Err(self.not_found(name)),
                Err(e) => return Err(storage_error(e, &self.gr, "delete")),
            }
        }
        Err(ApiError::conflict(&self.gr, name))
    }

    fn gc_supported(&self) -> bool {
        self.strategy.garbage_collection()
    }

    async fn delete_collection(&self, req: &Request) -> Result<Reply, ApiError> {
        let delete_opts = crate::delete::DeleteOptions::parse(req)?;
        let list_opts = ListOptions::parse(&req.query, false)?;
        let Reply::List {
            kind,
            api_version,
            items,
            ..
        } = self.list(req, &list_opts).await?
        else {
            return Err(ApiError::Internal("list returned no list".to_string()));
        };
        let mut deleted = Vec::new();
        for item in items {
            let v: Value = serde_json::from_slice(&item).map_err(internal)?;
            let Some(name) = v.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let mut item_req_ns = req.namespace.clone();
            if item_req_ns.is_none() {
                item_req_ns = v
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let item_req = Request {
                namespace: item_req_ns,
                name: Some(name.to_string()),
                ..req.clone_without_body()
            };
            match self.delete_one(&item_req, name, &delete_opts).await {
                Ok(Reply::Object { json, .. }) => deleted.push(json),
                Ok(_) => deleted.push(item),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let revision = self
            .store
            .current_revision()
            .await
            .map_err(|e| storage_error(e, &self.gr, "deletecollection"))?;
        Ok(Reply::List {
            kind,
            api_version,
            metadata: json!({"resourceVersion": revision.to_string()}),
            items: deleted,
        })
    }
}

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// A patch result that does not decode: 422 on field `patch` (Strict unknown fields too).
fn patched_invalid(info: &ResourceInfo, name: &str, doc: &Value, e: DecodeError) -> ApiError {
    let detail = match e {
        DecodeError::Strict(d) => d,
        DecodeError::Malformed(e) => e.to_string(),
    };
    ApiError::invalid(
        GroupKind::new(info.group, info.kind),
        name,
        vec![FieldError::invalid(
            &FieldPath::new("patch"),
            apimachinery::field::BadValue::Str(doc.to_string()),
            detail,
        )],
    )
}

struct WatchState<S: Strategy> {
    watcher: CacheWatcher<ObjectCodec<S>>,
    deadline: tokio::time::Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
    kind: &'static str,
    api_version: String,
}

impl<S: Strategy> WatchState<S> {
    async fn next_event(&mut self) -> Option<WatchEvent> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let item = tokio::select! {
                _ = tokio::time::sleep_until(self.deadline) => return None,
                changed = self.shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    continue;
                }
                item = self.watcher.next() => item?,
            };
            if let Some(ev) = self.convert(item) {
                return Some(ev);
            }
        }
    }

    fn bookmark(&self, revision: Revision, end: bool) -> WatchEvent {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata});
        WatchEvent {
            event_type: "BOOKMARK",
            object: to_bytes(&object).unwrap_or_default(),
            frame: None,
        }
    }

    fn convert(&self, item: WatchItem<ObjectAttrs>) -> Option<WatchEvent> {
        let cache = self.watcher.cache();
        match &item {
            WatchItem::Initial(obj) => {
                let object = cache.wire(obj).ok()?;
                Some(WatchEvent {
                    event_type: "ADDED",
                    frame: Some(storage::cache::watch_frame("ADDED", &object)),
                    object,
                })
            }
            WatchItem::Event(event, view) => {
                let object = cache.event_object(event, *view).ok()?;
                Some(WatchEvent {
                    event_type: view.event_type().as_str(),
                    object,
                    frame: cache.frame(&item).ok().flatten(),
                })
            }
            WatchItem::Bookmark(rev) => Some(self.bookmark(*rev, false)),
            WatchItem::InitialEventsEnd(rev) => Some(self.bookmark(*rev, true)),
        }
    }
}

#[async_trait]
impl<S: Strategy> Resource for Registry<S> {
    fn info(&self) -> &ResourceInfo {
        self.strategy.info()
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        let status = match req.subresource.as_deref() {
            None => false,
            Some("status") if self.strategy.has_status() => true,
            Some(_) => return Err(ApiError::RouteNotFound),
        };
        let name = req.name.clone();
        match (req.verb, name.as_deref()) {
            (Verb::Get, Some(name)) => self.get(&req, name).await,
            (Verb::List, None) => {
                let opts = ListOptions::parse(&req.query, false)?;
                self.list(&req, &opts).await
            }
            (Verb::Watch, _) if !status => {
                let opts = ListOptions::parse(&req.query, true)?;
                self.watch(&req, opts).await
            }
            (Verb::Create, None) => self.create(&req).await,
            (Verb::Update, Some(name)) => self.update(&req, name, status).await,
            (Verb::Patch, Some(name)) => self.patch(&req, name, status).await,
            (Verb::Delete, Some(name)) if !status => self.delete(&req, name).await,
            (Verb::DeleteCollection, None) => self.delete_collection(&req).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        self.strategy.table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let mut cells = vec![name];
        if let Ok(obj) = <S::Object as serde::Deserialize>::deserialize(object) {
            cells.extend(self.strategy.table_cells(&obj));
        }
        cells
    }
}

impl<S: Strategy> Registry<S> {
    /// The read-modify-write loop, for resources built on this one (virtual resources):
    /// `produce` makes the new object from the current one; a produced object without a
    /// resourceVersion is retried on conflict, one with a resourceVersion is pinned to it.
    pub async fn update_object<F>(
        &self,
        req: &Request,
        opts: &WriteOptions,
        name: &str,
        mode: UpdateMode,
        produce: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        self.update_with(req, opts, name, mode, produce).await
    }

    /// Creates an object through the normal create path (strategy, validation, managedFields).
    pub async fn create_typed(
        &self,
        req: &Request,
        opts: &WriteOptions,
        obj: &mut S::Object,
    ) -> Result<Reply, ApiError> {
        self.create_object(req, opts, obj, true).await
    }

    /// A consistent read of one object's served form, from the watch cache.
    pub async fn get_cached(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<S::Object>, ApiError> {
        self.read_cached(namespace, name, ReadRevision::Consistent)
            .await
    }

    /// A read of one object from whatever the watch cache holds (resourceVersion "0").
    pub async fn get_any(
        &self,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<S::Object>, ApiError> {
        self.read_cached(namespace, name, ReadRevision::Any).await
    }

    async fn read_cached(
        &self,
        namespace: Option<&str>,
        name: &str,
        at: ReadRevision,
    ) -> Result<Option<S::Object>, ApiError> {
        let key = self.key(namespace, name);
        let (obj, _, _) = self
            .cache
            .get(&key, at)
            .await
            .map_err(|e| cache_error(e, &self.gr, "get"))?;
        obj.map(|o| {
            let json = self
                .cache
                .wire(&o)
                .map_err(|e| cache_error(e, &self.gr, "get"))?;
            serde_json::from_slice(&json).map_err(internal)
        })
        .transpose()
    }

    /// A list of served objects with the list's metadata (resourceVersion, continue).
    pub async fn list_objects(
        &self,
        req: &Request,
        opts: &ListOptions,
    ) -> Result<(Vec<S::Object>, Value), ApiError> {
        match self.list(req, opts).await? {
            Reply::List {
                metadata, items, ..
            } => {
                let objects = items
                    .iter()
                    .map(|i| serde_json::from_slice(i).map_err(internal))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((objects, metadata))
            }
            _ => Err(ApiError::Internal("list returned no list".to_string())),
        }
    }

    /// Whether the watch cache has loaded (virtual views built on it answer 504 until then).
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// For server-side apply.
    pub(crate) async fn apply_update<F>(
        &self,
        req: &Request,
        opts: &WriteOptions,
        name: &str,
        status: bool,
        produce: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnMut(&S::Object) -> Result<S::Object, ApiError> + Send,
    {
        self.update_with(
            req,
            opts,
            name,
            UpdateMode {
                status,
                require_rv: false,
                record: false,
                internal: false,
            },
            produce,
        )
        .await
    }

    pub(crate) async fn apply_create(
        &self,
        req: &Request,
        opts: &WriteOptions,
        obj: &mut S::Object,
    ) -> Result<Reply, ApiError> {
        self.create_object(req, opts, obj, false).await
    }

    pub(crate) fn resource_info(&self) -> &ResourceInfo {
        self.strategy.info()
    }
}
