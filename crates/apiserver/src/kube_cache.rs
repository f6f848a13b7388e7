//! A watch-backed in-memory cache of one kind of cluster object (client-go's reflector and
//! store, cut down): LIST, then WATCH from the list's resourceVersion, applying every event;
//! re-watch from the last seen resourceVersion when a watch ends, and LIST again after a
//! backoff when the resourceVersion expired (410) or a request failed.
//!
//! We do not use kube-runtime's reflector: it would pull a second major version of json-patch
//! into the build, and the part we need is this small loop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Server-side timeout of one watch request (kube-runtime's and client-go's default).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// The first wait after a failure; doubled on every further failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A watch that ends this quickly without a single event is treated as a failure (as
/// client-go's "very short watch"), so a server that closes watches at once is not hammered.
const MIN_WATCH_DURATION: Duration = Duration::from_secs(1);

/// Objects are keyed by (namespace, name); cluster-scoped objects have namespace "".
type Key = (String, String);

/// What the cache needs of a kind: everything `Api::list` and `Api::watch` need, and to be
/// shareable with the background task.
pub trait Cached: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

impl<K> Cached for K where K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}

/// A handle on the cache; clones share it. The background task stops when the last handle is
/// dropped.
pub struct KubeCache<K> {
    shared: Arc<Shared<K>>,
    _task: Arc<AbortOnDrop>,
}

impl<K> Clone for KubeCache<K> {
    fn clone(&self) -> Self {
        KubeCache {
            shared: Arc::clone(&self.shared),
            _task: Arc::clone(&self._task),
        }
    }
}

impl<K: Cached> KubeCache<K> {
    /// Starts following every object `api` can list. Must be called inside a tokio runtime.
    /// `what` names the cache in logs (e.g. `"configmaps"`).
    pub fn start(api: Api<K>, what: &'static str) -> KubeCache<K> {
        Self::spawn(api, what, None)
    }

    /// As [`KubeCache::start`], restricted to the objects matching a field selector (e.g.
    /// `metadata.name=extension-apiserver-authentication`).
    pub fn start_with_fields(api: Api<K>, what: &'static str, fields: &str) -> KubeCache<K> {
        Self::spawn(api, what, Some(fields))
    }

    fn spawn(api: Api<K>, what: &'static str, fields: Option<&str>) -> KubeCache<K> {
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            contents: RwLock::new(Contents::default()),
            synced: AtomicBool::new(false),
            changes,
        });
        let mut list_params = ListParams::default();
        let mut watch_params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
        if let Some(fields) = fields {
            list_params = list_params.fields(fields);
            watch_params = watch_params.fields(fields);
        }
        let reflector = Reflector {
            api,
            what,
            list_params,
            watch_params,
            shared: Arc::clone(&shared),
            backoff: Backoff::default(),
        };
        let task = tokio::spawn(reflector.run());
        KubeCache {
            shared,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }
}

impl<K> KubeCache<K> {
    /// Whether the first LIST has been loaded (it stays true while later requests fail: the
    /// cache then serves what it last saw, as an informer does).
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Waits until the first LIST is loaded; false if `timeout` passed first.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        // Subscribe before looking, so a sync between the look and the wait is not missed.
        let mut changes = self.subscribe();
        let synced = async {
            while !self.is_synced() {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(timeout, synced).await.unwrap_or(false)
    }

    /// One object; cluster-scoped objects have namespace "".
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = (namespace.to_string(), name.to_string());
        self.shared.read().objects.get(&key).cloned()
    }

    /// The objects of one namespace sorted by name; namespace "" lists every object (by
    /// namespace, then name).
    pub fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        self.shared.read().list(namespace)
    }

    /// The resourceVersion of the last list or watch event seen ("" before the first list).
    pub fn resource_version(&self) -> String {
        self.shared.read().resource_version.clone()
    }

    /// A counter bumped on every change of the contents (and when the first list loads):
    /// followers wait on it and read the cache again.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

/// Stops the background task when the last handle goes.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the handles and the task share.
struct Shared<K> {
    contents: RwLock<Contents<K>>,
    synced: AtomicBool,
    changes: watch::Sender<u64>,
}

impl<K> Shared<K> {
    fn read(&self) -> RwLockReadGuard<'_, Contents<K>> {
        // A panic while holding the lock leaves whole maps behind, never half-applied entries.
        self.contents.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Contents<K>> {
        self.contents
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl<K: Resource> Shared<K> {
    fn replace(&self, items: Vec<K>, resource_version: String) {
        self.write().replace(items, resource_version);
        self.synced.store(true, Ordering::Release);
        self.bump();
    }

    fn apply(&self, event: WatchEvent<K>) -> Applied {
        let applied = self.write().apply(event);
        if applied == Applied::Changed {
            self.bump();
        }
        applied
    }
}

/// The cached objects and how far they reflect the cluster.
struct Contents<K> {
    objects: BTreeMap<Key, Arc<K>>,
    resource_version: String,
}

impl<K> Default for Contents<K> {
    fn default() -> Self {
        Contents {
            objects: BTreeMap::new(),
            resource_version: String::new(),
        }
    }
}

/// What applying one watch event did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// An object was added, changed or removed.
    Changed,
    /// Only the resourceVersion moved (a bookmark).
    Progressed,
    /// The watch's resourceVersion is gone (410): the cache must LIST again.
    Expired,
    /// The server sent another error; the message is for the log.
    Failed(String),
}

impl<K> Contents<K> {
    fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        if namespace.is_empty() {
            return self.objects.values().cloned().collect();
        }
        let start = (namespace.to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, object)| Arc::clone(object))
            .collect()
    }
}

impl<K: Resource> Contents<K> {
    fn replace(&mut self, items: Vec<K>, resource_version: String) {
        self.objects = items
            .into_iter()
            .map(|item| (key_of(&item), Arc::new(item)))
            .collect();
        self.resource_version = resource_version;
    }

    fn apply(&mut self, event: WatchEvent<K>) -> Applied {
        match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                self.advance(object.meta().resource_version.as_deref());
                self.objects.insert(key_of(&object), Arc::new(object));
                Applied::Changed
            }
            WatchEvent::Deleted(object) => {
                self.advance(object.meta().resource_version.as_deref());
                self.objects.remove(&key_of(&object));
                Applied::Changed
            }
            WatchEvent::Bookmark(bookmark) => {
                self.advance(Some(&bookmark.metadata.resource_version));
                Applied::Progressed
            }
            WatchEvent::Error(status) if status.code == 410 => Applied::Expired,
            WatchEvent::Error(status) => Applied::Failed(format!(
                "{} ({}, code {})",
                status.message, status.reason, status.code
            )),
        }
    }

    fn advance(&mut self, resource_version: Option<&str>) {
        if let Some(rv) = resource_version.filter(|rv| !rv.is_empty()) {
            self.resource_version = rv.to_string();
        }
    }
}

fn key_of<K: Resource>(object: &K) -> Key {
    let meta = object.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Exponential backoff between failed attempts: 1 s, 2 s, 4 s ... 30 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: MIN_BACKOFF }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }

    fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

/// Where the reflector is.
enum Phase {
    /// Load every object and replace the contents with them.
    List,
    /// Follow a watch from this resourceVersion; when it ends cleanly, watch again from the
    /// last resourceVersion seen.
    Watch(String),
    /// Something failed or expired: wait for the backoff, then LIST again.
    Relist,
}

struct Reflector<K> {
    api: Api<K>,
    what: &'static str,
    list_params: ListParams,
    watch_params: WatchParams,
    shared: Arc<Shared<K>>,
    backoff: Backoff,
}

impl<K: Cached> Reflector<K> {
    async fn run(mut self) {
        let mut phase = Phase::List;
        loop {
            phase = self.step(phase).await;
        }
    }

    async fn step(&mut self, phase: Phase) -> Phase {
        match phase {
            Phase::List => self.list().await,
            Phase::Watch(resource_version) => self.watch(&resource_version).await,
            Phase::Relist => {
                tokio::time::sleep(self.backoff.next_delay()).await;
                Phase::List
            }
        }
    }

    async fn list(&mut self) -> Phase {
        match self.api.list(&self.list_params).await {
            Ok(list) => {
                let resource_version = list.metadata.resource_version.unwrap_or_default();
                let first = !self.shared.synced.load(Ordering::Acquire);
                let count = list.items.len();
                self.shared.replace(list.items, resource_version.clone());
                self.backoff.reset();
                if first {
                    tracing::info!(what = self.what, objects = count, "cluster cache synced");
                } else {
                    tracing::debug!(what = self.what, objects = count, "cluster cache relisted");
                }
                Phase::Watch(resource_version)
            }
            Err(error) => {
                tracing::warn!(what = self.what, %error, "cluster cache list failed");
                Phase::Relist
            }
        }
    }

    async fn watch(&mut self, resource_version: &str) -> Phase {
        let stream = match self.api.watch(&self.watch_params, resource_version).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(what = self.what, %error, "cluster cache watch failed");
                return Phase::Relist;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let started = Instant::now();
        let mut events = 0_u64;
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(what = self.what, %error, "cluster cache watch broke");
                    return Phase::Relist;
                }
            };
            events += 1;
            match self.shared.apply(event) {
                Applied::Changed | Applied::Progressed => {}
                Applied::Expired => {
                    tracing::info!(what = self.what, "cluster cache resourceVersion expired");
                    return Phase::Relist;
                }
                Applied::Failed(error) => {
                    tracing::warn!(what = self.what, %error, "cluster cache watch error event");
                    return Phase::Relist;
                }
            }
        }
        if events == 0 && started.elapsed() < MIN_WATCH_DURATION {
            tracing::warn!(what = self.what, "cluster cache watch closed at once");
            return Phase::Relist;
        }
        Phase::Watch(self.shared.read().resource_version.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn config_map(namespace: &str, name: &str, rv: &str, value: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name, "resourceVersion": rv},
            "data": {"k": value},
        }))
        .expect("config map")
    }

    fn event(json: serde_json::Value) -> WatchEvent<ConfigMap> {
        serde_json::from_value(json).expect("watch event")
    }

    fn object_event(kind: &str, object: &ConfigMap) -> WatchEvent<ConfigMap> {
        event(json!({"type": kind, "object": object}))
    }

    fn bookmark(rv: &str) -> WatchEvent<ConfigMap> {
        let metadata = json!({"resourceVersion": rv});
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
        event(json!({"type": "BOOKMARK", "object": object}))
    }

    fn error_event(code: u16, reason: &str, message: &str) -> WatchEvent<ConfigMap> {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "reason": reason, "message": message,
        });
        event(json!({"type": "ERROR", "object": status}))
    }

    fn value_of(contents: &Contents<ConfigMap>, namespace: &str, name: &str) -> Option<String> {
        let key = (namespace.to_string(), name.to_string());
        let object = contents.objects.get(&key)?;
        object.data.as_ref()?.get("k").cloned()
    }

    #[test]
    fn events_update_objects_and_resource_version() {
        let mut contents = Contents::default();
        contents.replace(vec![config_map("a", "x", "3", "1")], "5".into());
        assert_eq!(contents.resource_version, "5");

        let added = config_map("a", "y", "6", "2");
        assert_eq!(
            contents.apply(object_event("ADDED", &added)),
            Applied::Changed
        );
        assert_eq!(value_of(&contents, "a", "y").as_deref(), Some("2"));
        assert_eq!(contents.resource_version, "6");

        let modified = config_map("a", "x", "7", "changed");
        assert_eq!(
            contents.apply(object_event("MODIFIED", &modified)),
            Applied::Changed
        );
        assert_eq!(value_of(&contents, "a", "x").as_deref(), Some("changed"));
        assert_eq!(contents.resource_version, "7");

        let deleted = config_map("a", "y", "8", "2");
        assert_eq!(
            contents.apply(object_event("DELETED", &deleted)),
            Applied::Changed
        );
        assert_eq!(value_of(&contents, "a", "y"), None);
        assert_eq!(contents.resource_version, "8");

        assert_eq!(contents.apply(bookmark("12")), Applied::Progressed);
        assert_eq!(contents.resource_version, "12");
        assert_eq!(contents.objects.len(), 1);
    }

    #[test]
    fn error_events_expire_or_fail() {
        let mut contents = Contents::<ConfigMap>::default();
        contents.replace(vec![], "5".into());
        let gone = error_event(410, "Expired", "too old resource version: 1 (5)");
        assert_eq!(contents.apply(gone), Applied::Expired);
        assert_eq!(
            contents.apply(error_event(500, "InternalError", "boom")),
            Applied::Failed("boom (InternalError, code 500)".into())
        );
        assert_eq!(
            contents.resource_version, "5",
            "errors do not move the resourceVersion"
        );
    }

    #[test]
    fn relist_replaces_everything() {
        let mut contents = Contents::default();
        contents.replace(vec![config_map("a", "x", "1", "1")], "1".into());
        contents.replace(vec![config_map("b", "z", "9", "9")], "9".into());
        assert_eq!(value_of(&contents, "a", "x"), None);
        assert_eq!(value_of(&contents, "b", "z").as_deref(), Some("9"));
        assert_eq!(contents.resource_version, "9");
    }

    #[test]
    fn lists_by_namespace_sorted_by_name() {
        let mut contents = Contents::default();
        contents.replace(
            vec![
                config_map("b", "q", "1", "1"),
                config_map("a", "z", "1", "1"),
                config_map("a", "c", "1", "1"),
                config_map("ab", "a", "1", "1"),
            ],
            "1".into(),
        );
        let names = |objects: Vec<Arc<ConfigMap>>| -> Vec<String> {
            objects
                .iter()
                .map(|o| o.metadata.name.clone().unwrap_or_default())
                .collect()
        };
        assert_eq!(names(contents.list("a")), ["c", "z"]);
        assert_eq!(names(contents.list("ab")), ["a"]);
        assert_eq!(names(contents.list("none")), Vec::<String>::new());
        assert_eq!(names(contents.list("")), ["c", "z", "a", "q"]);
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn shared_bumps_the_counter_on_changes_only() {
        let (changes, _) = watch::channel(0);
        let shared = Shared {
            contents: RwLock::new(Contents::default()),
            synced: AtomicBool::new(false),
            changes,
        };
        let counter = shared.changes.subscribe();
        shared.replace(vec![config_map("a", "x", "1", "1")], "1".into());
        assert!(shared.synced.load(Ordering::Acquire));
        assert_eq!(*counter.borrow(), 1);
        shared.apply(object_event("MODIFIED", &config_map("a", "x", "2", "2")));
        assert_eq!(*counter.borrow(), 2);
        shared.apply(bookmark("3"));
        assert_eq!(*counter.borrow(), 2, "a bookmark changes no object");
        assert_eq!(shared.read().resource_version, "3");
    }
}
