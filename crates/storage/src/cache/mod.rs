//! The watch cache: kube-apiserver's cacher, per resource, on top of any [`Store`]
//! (spec `k8s-apiserver-semantics.md` §5.4).
//!
//! - One upstream watch per resource prefix feeds an in-memory copy of every object (as served
//!   JSON) and a bounded window of recent events ([`state`]).
//! - Gets and lists are served from memory at a consistent revision: a consistent read first
//!   learns the store's current revision and waits (asking the store for watch progress) until
//!   the cache has caught up; if it does not within [`CacheConfig::consistent_read_timeout`]
//!   (Debian's etcd 3.4.23 predates reliable progress requests), it reads the store instead.
//! - Any number of watchers share the one upstream watch. Each event is encoded once per view
//!   and the bytes are shared; each watcher has a bounded buffer and is evicted when it is full.
//! - Watches start from a snapshot (initial ADDED events, optionally closed by the watch-list
//!   end bookmark) or from a revision inside the window; older revisions are "too old" (410).

pub mod codec;
mod reflector;
mod revision;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use self::codec::{watch_frame, Codec, CodecError, Decoded, JsonCodec, Unversioned};
pub use self::state::{
    CachedEvent, CachedObject, Changed, EventType, Filter, Selection, View, WatchItem,
};
use self::state::{StartError, State, WatcherSlot};
use crate::{KeyValue, ProgressRequester, RangeRequest, Revision, StorageError, Store};

/// Tuning for one watch cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Events kept for watches that start from a past revision.
    pub history_capacity: usize,
    /// Items buffered per watcher before it is evicted as too slow.
    pub watcher_buffer: usize,
    /// How long a consistent read waits for the cache before reading the store.
    pub consistent_read_timeout: Duration,
    /// How long a read "not older than N" waits for the cache before failing (kube: 3 s).
    pub fresh_read_timeout: Duration,
    /// How often watchers that asked for bookmarks get one (kube: about a minute).
    pub bookmark_interval: Duration,
    /// Keys per page when the cache (re)loads from the store.
    pub list_page_size: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            history_capacity: 10_000,
            watcher_buffer: 1024,
            consistent_read_timeout: Duration::from_millis(500),
            fresh_read_timeout: Duration::from_secs(3),
            bookmark_interval: Duration::from_secs(60),
            list_page_size: 1_000,
        }
    }
}

/// Which revision a read must reflect (the API's resourceVersion / resourceVersionMatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRevision {
    /// The latest state of the store (resourceVersion unset).
    Consistent,
    /// Whatever the cache holds (resourceVersion "0").
    Any,
    /// At least this revision (resourceVersion "N", NotOlderThan).
    NotOlderThan(Revision),
    /// Exactly this revision (resourceVersionMatch=Exact, or continue tokens).
    Exact(Revision),
    /// The latest state, like `Consistent`, given the store's revision fetched after the
    /// request began ([`WatchCache::consistent_read`]): the reads of one request share a fetch.
    ConsistentWith(Revision),
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A watch asked for events older than the window (kube: `too old resource version: N (M)`).
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        requested: Revision,
        oldest: Revision,
    },
    /// A read asked for a revision the cache did not reach in time (kube: 504, `Too large
    /// resource version`).
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge {
        requested: Revision,
        current: Revision,
    },
}

pub type CacheResult<T> = Result<T, CacheError>;

/// Which objects a list returns and where it starts.
pub struct ListRequest<A> {
    pub selection: Selection<A>,
    /// Start at this key (inclusive); continue tokens carry it.
    pub start: Option<String>,
    /// At most this many items; 0 means all.
    pub limit: usize,
    pub revision: ReadRevision,
}

/// Where a read was answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Cache,
    Store,
}

pub struct ListResult<A> {
    pub items: Vec<(String, Arc<CachedObject<A>>)>,
    pub revision: Revision,
    /// Keys in range after this page (exact only without a filter).
    pub remaining: u64,
    /// More matching items follow: the caller issues a continue token.
    pub more: bool,
    pub source: Source,
}

/// How a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// Only changes after this revision ("start at exact").
    After(Revision),
    /// The current state as ADDED events, then changes ("get state and start").
    Snapshot(ReadRevision),
}

pub struct WatchRequest<A> {
    pub selection: Selection<A>,
    pub start: WatchStart,
    /// Periodic bookmarks (allowWatchBookmarks).
    pub bookmarks: bool,
    /// Close the initial state with [`WatchItem::InitialEventsEnd`] (watch-list).
    pub initial_events_end: bool,
}

impl<A> WatchRequest<A> {
    /// A plain watch of the changes after `revision`: no bookmarks, no initial state.
    pub fn after(selection: Selection<A>, revision: Revision) -> Self {
        WatchRequest {
            selection,
            start: WatchStart::After(revision),
            bookmarks: false,
            initial_events_end: false,
        }
    }
}

/// The watch cache for one resource. Cheap to clone; the upstream watch stops when the last
/// clone is dropped.
pub struct WatchCache<C: Codec> {
    inner: Arc<Inner<C>>,
    _reflector: Arc<AbortOnDrop>,
}

impl<C: Codec> Clone for WatchCache<C> {
    fn clone(&self) -> Self {
        WatchCache {
            inner: self.inner.clone(),
            _reflector: self._reflector.clone(),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) struct Inner<C: Codec> {
    store: Arc<dyn Store>,
    codec: C,
    prefix: String,
    config: CacheConfig,
    state: RwLock<State<C::Attrs>>,
    /// The applied revision, published for readers waiting to be fresh.
    applied: watch::Sender<Revision>,
    progress: std::sync::Mutex<Option<ProgressRequester>>,
    next_watcher: AtomicU64,
    /// The store's revision for consistent reads, one fetch for the readers of a moment.
    current: revision::CurrentRevision,
    /// Writes on their way to the store whose served form the writer has rendered already,
    /// by key: the reflector takes an event's object from here instead of decoding it again.
    expected: std::sync::Mutex<HashMap<String, Expected<C::Attrs>>>,
}

/// What a writer is about to store under a key, and what the cache is to hold for it.
struct Expected<A> {
    value: Bytes,
    json: Unversioned,
    attrs: A,
}

impl<C: Codec> WatchCache<C> {
    /// Starts caching every key under `prefix`. Must be called inside a tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        prefix: impl Into<String>,
        codec: C,
        config: CacheConfig,
    ) -> Self {
        let inner = Arc::new(Inner {
            store,
            codec,
            prefix: prefix.into(),
            state: RwLock::new(State::new(config.history_capacity)),
            config,
            applied: watch::channel(0).0,
            progress: std::sync::Mutex::new(None),
            next_watcher: AtomicU64::new(1),
            current: revision::CurrentRevision::default(),
            expected: Default::default(),
        });
        let task = tokio::spawn(reflector::run(inner.clone()));
        WatchCache {
            inner,
            _reflector: Arc::new(AbortOnDrop(task)),
        }
    }

    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    /// Announces a write: `value` is about to be stored under `key`, and its served form is
    /// `json` with `attrs`. When the store reports that value there, the cache keeps `json`
    /// at the event's revision instead of decoding the value, which for large objects costs
    /// more than the rest of the write. The writer withdraws the announcement if its write
    /// fails ([`Self::withdraw`]); a newer announcement for the key replaces it.
    pub fn expect(&self, key: &str, value: Bytes, json: Unversioned, attrs: C::Attrs) {
        self.inner
            .expected()
            .insert(key.to_string(), Expected { value, json, attrs });
    }

    /// Withdraws the announcement of `value` under `key`, if it is still the latest.
    pub fn withdraw(&self, key: &str, value: &Bytes) {
        let mut expected = self.inner.expected();
        if expected.get(key).is_some_and(|e| e.value == value) {
            expected.remove(key);
        }
    }

    /// The revision the cache has applied up to (0 before its first list).
    pub fn revision(&self) -> Revision {
        self.inner.read_state().revision
    }

    pub fn is_ready(&self) -> bool {
        self.inner.read_state().ready
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.inner.read_state().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first list is loaded, up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_ready() {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.is_ready();
            }
        }
    }

    /// A consistent read's revision, fetched once for several reads of one request, in this
    /// cache or in another over the same store (its revision is the whole store's).
    pub async fn consistent_read(&self) -> CacheResult<ReadRevision> {
        Ok(ReadRevision::ConsistentWith(
            self.inner.consistent_revision().await?,
        ))
    }

    /// Reads one object.
    pub async fn get(
        &self,
        key: &str,
        revision: ReadRevision,
    ) -> CacheResult<(Option<Arc<CachedObject<C::Attrs>>>, Revision, Source)> {
        match self.inner.freshness(revision).await? {
            Freshness::Cache => {
                let state = self.inner.read_state();
                Ok((
                    state.objects.get(key).cloned(),
                    state.revision,
                    Source::Cache,
                ))
            }
            Freshness::Store(_) => {
                let got = self.inner.store.get(key).await?;
                let object = match got.kv {
                    Some(kv) => Some(
                        self.inner
                            .stored_object(&kv, self.inner.cached_write(&kv))?,
                    ),
                    None => None,
                };
                Ok((object, got.revision, Source::Store))
            }
        }
    }

    /// Lists objects in key order, one page at a time.
    pub async fn list(&self, req: ListRequest<C::Attrs>) -> CacheResult<ListResult<C::Attrs>> {
        match self.inner.freshness(req.revision).await? {
            Freshness::Cache => Ok(self.inner.list_from_cache(&req)),
            Freshness::Store(at) => match self.inner.list_from_store(&req, at).await {
                Ok(result) => Ok(result),
                Err(e) => Err(self.inner.future_is_too_large(e).await),
            },
        }
    }

    /// Starts a watch.
    pub async fn watch(&self, req: WatchRequest<C::Attrs>) -> CacheResult<CacheWatcher<C>> {
        let after = match req.start {
            WatchStart::After(r) => {
                self.inner.reach_for_watch(r).await?;
                Some(r)
            }
            WatchStart::Snapshot(revision) => {
                // A watch cannot be served from the store, so a consistent start that the cache
                // does not reach in time starts from the cache's own (slightly older) state.
                if let Freshness::Store(_) = self.inner.freshness(revision).await? {
                    tracing::debug!(prefix = %self.inner.prefix, "watch starts from a cache that is behind the store");
                }
                None
            }
        };
        let (tx, rx) = mpsc::channel(self.inner.config.watcher_buffer.max(1));
        let evicted = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_watcher.fetch_add(1, Ordering::Relaxed);
        let mut state = self.inner.write_state();
        let mut initial = match after {
            Some(after) => state.events_after(after, &req.selection).map_err(
                |StartError::TooOld { oldest }| CacheError::TooOld {
                    requested: after,
                    oldest,
                },
            )?,
            None => state.snapshot(&req.selection),
        };
        if after.is_none() && req.initial_events_end {
            initial.push(WatchItem::InitialEventsEnd(state.revision));
        }
        let after = after.unwrap_or(state.revision);
        state.watchers.push(WatcherSlot {
            id,
            after,
            selection: req.selection,
            tx,
            evicted: evicted.clone(),
            bookmarks: req.bookmarks,
        });
        drop(state);
        Ok(CacheWatcher {
            cache: self.clone(),
            id,
            initial: initial.into(),
            rx,
            evicted,
        })
    }

    /// What changed under `prefix` after `after` (a revision this cache reported): each
    /// changed key once, with its current object (`None`: deleted), and the revision they are
    /// current at. `TooOld` when the event window no longer reaches back that far (or the cache
    /// relisted since): the caller lists instead. Lets a controller follow the objects by
    /// what changed rather than by reading all of them again.
    pub fn changed_after(
        &self,
        prefix: &str,
        after: Revision,
    ) -> CacheResult<(Vec<Changed<C::Attrs>>, Revision)> {
        let state = self.inner.read_state();
        let changed =
            state
                .changed_after(prefix, after)
                .map_err(|StartError::TooOld { oldest }| CacheError::TooOld {
                    requested: after,
                    oldest,
                })?;
        Ok((changed, state.revision))
    }

    /// The wire frame of one watch item for a JSON watch stream; bookmarks are the caller's to
    /// encode (they carry the resource's kind). Event frames are encoded once and shared.
    pub fn frame(&self, item: &WatchItem<C::Attrs>) -> CacheResult<Option<Bytes>> {
        match item {
            WatchItem::Initial(object) => {
                let json = self.inner.codec.wire("", &object.json)?;
                Ok(Some(watch_frame("ADDED", &json)))
            }
            WatchItem::Event(event, view) => self.event_frame(event, *view).map(Some),
            WatchItem::Bookmark(_) | WatchItem::InitialEventsEnd(_) => Ok(None),
        }
    }

    fn event_frame(&self, event: &CachedEvent<C::Attrs>, view: View) -> CacheResult<Bytes> {
        let slot = &event.frames[view.index()];
        if let Some(frame) = slot.get() {
            return Ok(frame.clone());
        }
        let json = self.event_object(event, view)?;
        let frame = watch_frame(view.event_type().as_str(), &json);
        Ok(slot.get_or_init(|| frame).clone())
    }

    /// The wire JSON of a cached object.
    pub fn wire(&self, object: &CachedObject<C::Attrs>) -> CacheResult<Bytes> {
        Ok(self.inner.codec.wire("", &object.json)?)
    }

    /// The object JSON a watcher with this view of `event` receives.
    pub fn event_object(&self, event: &CachedEvent<C::Attrs>, view: View) -> CacheResult<Bytes> {
        match (view, &event.prev) {
            (View::DeletedPrev, Some(prev)) => {
                let json = self.inner.codec.wire(&event.key, &prev.json)?;
                Ok(self
                    .inner
                    .codec
                    .with_revision(&event.key, &json, event.revision)?)
            }
            _ => Ok(self.inner.codec.wire(&event.key, &event.object.json)?),
        }
    }
}

/// How a read will be answered.
enum Freshness {
    Cache,
    /// From the store, at this revision (None: the latest).
    Store(Option<Revision>),
}

impl<C: Codec> Inner<C> {
    /// Whether the store's progress notifications can be trusted for freshness: asked each
    /// time, since the etcd backend decides again when its watches reconnect.
    pub(crate) fn reliable_progress(&self) -> bool {
        self.store.reliable_progress()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State<C::Attrs>> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State<C::Attrs>> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decode(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> CacheResult<Arc<CachedObject<C::Attrs>>> {
        let decoded = self.codec.decode(key, value, revision)?;
        Ok(Arc::new(CachedObject {
            revision,
            json: decoded.json,
            attrs: decoded.attrs,
        }))
    }

    /// `last`, the final state of a deleted key, as of its deletion `revision`: the JSON a
    /// DELETED event carries.
    fn restamped(
        &self,
        key: &str,
        last: &CachedObject<C::Attrs>,
        revision: Revision,
    ) -> CacheResult<Arc<CachedObject<C::Attrs>>> {
        let wire = self.codec.wire(key, &last.json)?;
        let json = self.codec.with_revision(key, &wire, revision)?;
        Ok(Arc::new(CachedObject {
            revision,
            json: self.codec.keep(json),
            attrs: last.attrs.clone(),
        }))
    }

    /// The cache's objects that are the very writes `kvs` hold: a key's mod revision names one
    /// write, so a store read (every consistent read where watch progress is untrusted) need
    /// not decode what the cache already holds. Looked up under one short read lock; the
    /// misses are decoded after it, with [`Inner::stored_object`].
    fn cached_writes(&self, kvs: &[KeyValue]) -> Vec<Option<Arc<CachedObject<C::Attrs>>>> {
        let state = self.read_state();
        kvs.iter().map(|kv| same_write(&state, kv)).collect()
    }

    fn cached_write(&self, kv: &KeyValue) -> Option<Arc<CachedObject<C::Attrs>>> {
        same_write(&self.read_state(), kv)
    }

    /// A stored object: the cache's when it holds that write, decoded otherwise.
    fn stored_object(
        &self,
        kv: &KeyValue,
        cached: Option<Arc<CachedObject<C::Attrs>>>,
    ) -> CacheResult<Arc<CachedObject<C::Attrs>>> {
        match cached {
            Some(object) => {
                #[cfg(debug_assertions)]
                self.check_cached(kv, &object);
                Ok(object)
            }
            None => self.decode(&kv.key, &kv.value, kv.mod_revision),
        }
    }

    /// Debug builds (every test) decode the value anyway: the cache's object for a write must
    /// be what decoding that write gives.
    #[cfg(debug_assertions)]
    fn check_cached(&self, kv: &KeyValue, object: &CachedObject<C::Attrs>) {
        let decoded = self
            .decode(&kv.key, &kv.value, kv.mod_revision)
            .and_then(|decoded| Ok(self.codec.wire(&kv.key, &decoded.json)?));
        let cached = self.codec.wire(&kv.key, &object.json);
        match (decoded, cached) {
            (Ok(decoded), Ok(cached)) => assert!(
                decoded == cached,
                "{}: the cached object differs from the stored write at {}",
                kv.key,
                kv.mod_revision
            ),
            (decoded, cached) => panic!(
                "{}: a cached write does not decode: {:?} / {:?}",
                kv.key,
                decoded.err(),
                cached.err()
            ),
        }
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected<C::Attrs>>> {
        self.expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object a write announced for `value` under `key`, at `revision`; None when no
    /// announcement matches and the value must be decoded.
    fn take_expected(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Option<Arc<CachedObject<C::Attrs>>> {
        let found = {
            let mut expected = self.expected();
            if expected.get(key)?.value != value {
                return None;
            }
            expected.remove(key)?
        };
        let json = found.json.at(revision);
        #[cfg(debug_assertions)]
        self.check_expected(key, value, revision, &json);
        Some(Arc::new(CachedObject {
            revision,
            json: self.codec.keep(json),
            attrs: found.attrs,
        }))
    }

    /// Debug builds (every test) decode the value anyway: what a writer announces must be
    /// what decoding gives, or the cache would serve one thing until restart and another after.
    #[cfg(debug_assertions)]
    fn check_expected(&self, key: &str, value: &[u8], revision: Revision, json: &Bytes) {
        let decoded = self
            .decode(key, value, revision)
            .and_then(|object| Ok(self.codec.wire(key, &object.json)?));
        match decoded {
            Ok(wire) => assert!(
                wire == json,
                "{key}: the announced object differs from the stored one decoded:\n  announced {}\n  decoded   {}",
                String::from_utf8_lossy(json),
                String::from_utf8_lossy(&wire)
            ),
            Err(e) => panic!("{key}: an announced value does not decode: {e}"),
        }
    }

    /// A relist starts from what the store holds; announcements from before it are moot.
    pub(crate) fn forget_expected(&self) {
        self.expected().clear();
    }

    async fn freshness(&self, revision: ReadRevision) -> CacheResult<Freshness> {
        match revision {
            ReadRevision::Any => {
                if self.read_state().ready {
                    Ok(Freshness::Cache)
                } else {
                    Ok(Freshness::Store(None))
                }
            }
            ReadRevision::NotOlderThan(r) if self.reliable_progress() => {
                self.wait_until(r, self.config.fresh_read_timeout).await?;
                Ok(Freshness::Cache)
            }
            ReadRevision::NotOlderThan(r) => {
                if self.wait_fresh(r, Duration::ZERO).await {
                    return Ok(Freshness::Cache);
                }
                self.store_reaches(r).await?;
                Ok(Freshness::Store(None))
            }
            ReadRevision::Consistent => {
                let current = self.consistent_revision().await?;
                Ok(self.consistent_freshness(current).await)
            }
            ReadRevision::ConsistentWith(current) => Ok(self.consistent_freshness(current).await),
            ReadRevision::Exact(r) => {
                let state = self.read_state();
                if state.ready && state.revision == r {
                    Ok(Freshness::Cache)
                } else {
                    Ok(Freshness::Store(Some(r)))
                }
            }
        }
    }

    /// A revision the store reached after this call began.
    async fn consistent_revision(&self) -> CacheResult<Revision> {
        let current = if self.store.local_revision() {
            self.store.current_revision().await?
        } else {
            self.current.get(&self.store).await?
        };
        Ok(current)
    }

    /// Where a consistent read at the store's `current` revision is served from.
    async fn consistent_freshness(&self, current: Revision) -> Freshness {
        // Without trustworthy progress the cache cannot prove it is current unless it already
        // is; waiting would only add latency before reading the store.
        let bound = if self.reliable_progress() {
            self.config.consistent_read_timeout
        } else {
            Duration::ZERO
        };
        if self.wait_fresh(current, bound).await {
            Freshness::Cache
        } else {
            tracing::debug!(prefix = %self.prefix, current, "cache behind; reading the store");
            Freshness::Store(None)
        }
    }

    /// Makes sure a watch may start after `target`: the cache has applied it, or (without
    /// trustworthy progress) the store has reached it, in which case the watcher skips the
    /// events up to `target` that the cache has yet to apply.
    async fn reach_for_watch(&self, target: Revision) -> CacheResult<()> {
        if self.reliable_progress() {
            return self
                .wait_until(target, self.config.fresh_read_timeout)
                .await;
        }
        if self.wait_fresh(target, Duration::ZERO).await {
            return Ok(());
        }
        self.store_reaches(target).await
    }

    /// A read at a revision the store has not reached (an exact list, a continue token from
    /// the future) is kube's 504 "Too large resource version", as etcd's `ErrFutureRev` is
    /// there, not an internal error. etcd does not say its current revision, so it is asked.
    async fn future_is_too_large(&self, e: CacheError) -> CacheError {
        let CacheError::Storage(StorageError::FutureRevision { requested, current }) = e else {
            return e;
        };
        let current = match self.store.current_revision().await {
            Ok(now) => now.max(current),
            Err(_) => current,
        };
        CacheError::TooLarge { requested, current }
    }

    /// Waits until the store's revision reaches `target`, or fails with TooLarge.
    async fn store_reaches(&self, target: Revision) -> CacheResult<()> {
        let deadline = Instant::now() + self.config.fresh_read_timeout;
        loop {
            let current = self.store.current_revision().await?;
            if current >= target {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CacheError::TooLarge {
                    requested: target,
                    current,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the cache has applied `target`, or fails with TooLarge after `timeout`.
    async fn wait_until(&self, target: Revision, timeout: Duration) -> CacheResult<()> {
        if self.wait_fresh(target, timeout).await {
            Ok(())
        } else {
            Err(CacheError::TooLarge {
                requested: target,
                current: self.read_state().revision,
            })
        }
    }

    /// Waits until the cache is ready and has applied `target`, asking the store for watch
    /// progress while it waits. False after `timeout`.
    async fn wait_fresh(&self, target: Revision, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut applied = self.applied.subscribe();
        loop {
            {
                let state = self.read_state();
                if state.ready && state.revision >= target {
                    return true;
                }
            }
            if let Some(p) = self
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                p.request();
            }
            let step = Instant::now() + Duration::from_millis(50);
            match tokio::time::timeout_at(deadline.min(step), applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) if Instant::now() >= deadline => return false,
                Err(_) => {}
            }
        }
    }

    fn list_from_cache(&self, req: &ListRequest<C::Attrs>) -> ListResult<C::Attrs> {
        let state = self.read_state();
        let prefix = &req.selection.prefix;
        let start = match &req.start {
            Some(s) if s > prefix => s.clone(),
            _ => prefix.clone(),
        };
        let mut items = Vec::new();
        let mut remaining = 0u64;
        let mut more = false;
        for (key, object) in state
            .objects
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
        {
            if req.limit > 0 && items.len() == req.limit {
                remaining += 1;
                if req.selection.filter.is_some() {
                    // With a filter the count is not meaningful; one more match is enough.
                    if req.selection.matches(key, &object.attrs) {
                        more = true;
                        break;
                    }
                } else {
                    more = true;
                }
                continue;
            }
            if req.selection.matches(key, &object.attrs) {
                items.push((key.clone(), object.clone()));
            }
        }
        ListResult {
            items,
            revision: state.revision,
            remaining: if req.selection.filter.is_some() {
                0
            } else {
                remaining
            },
            more,
            source: Source::Cache,
        }
    }

    async fn list_from_store(
        &self,
        req: &ListRequest<C::Attrs>,
        at: Option<Revision>,
    ) -> CacheResult<ListResult<C::Attrs>> {
        // With a filter, read everything after `start` and cut after filtering, so a page is
        // never short of matches that exist.
        let filtered = req.selection.filter.is_some();
        let resp = self
            .store
            .range(RangeRequest {
                prefix: req.selection.prefix.clone(),
                start: req.start.clone(),
                revision: at,
                limit: if filtered { 0 } else { req.limit },
            })
            .await?;
        let mut items = Vec::new();
        let mut more = resp.more;
        let cached = self.cached_writes(&resp.kvs);
        for (kv, cached) in resp.kvs.into_iter().zip(cached) {
            let object = self.stored_object(&kv, cached)?;
            if !req.selection.matches(&kv.key, &object.attrs) {
                continue;
            }
            if req.limit > 0 && items.len() == req.limit {
                more = true;
                break;
            }
            items.push((kv.key, object));
        }
        Ok(ListResult {
            items,
            revision: resp.revision,
            remaining: if filtered { 0 } else { resp.remaining },
            more,
            source: Source::Store,
        })
    }

    fn remove_watcher(&self, id: u64) {
        self.write_state().watchers.retain(|w| w.id != id);
    }
}

/// One watcher of the cache: its initial items first, then live ones. Dropping it unregisters.
pub struct CacheWatcher<C: Codec> {
    cache: WatchCache<C>,
    id: u64,
    initial: std::collections::VecDeque<WatchItem<C::Attrs>>,
    rx: mpsc::Receiver<WatchItem<C::Attrs>>,
    evicted: Arc<AtomicBool>,
}

impl<C: Codec> CacheWatcher<C> {
    /// The next item; `None` when the watch has ended (evicted as too slow, or the cache
    /// relisted): the client re-watches from its last revision.
    pub async fn next(&mut self) -> Option<WatchItem<C::Attrs>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`CacheWatcher::next`] for a hand-written stream.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<WatchItem<C::Attrs>>> {
        if let Some(item) = self.initial.pop_front() {
            return std::task::Poll::Ready(Some(item));
        }
        self.rx.poll_recv(cx)
    }

    /// True once the cache dropped this watcher for not keeping up.
    pub fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    pub fn cache(&self) -> &WatchCache<C> {
        &self.cache
    }
}

impl<C: Codec> Drop for CacheWatcher<C> {
    fn drop(&mut self) {
        self.cache.inner.remove_watcher(self.id);
    }
}

/// The cache's object for `kv`'s key when it is that very write.
fn same_write<A>(state: &State<A>, kv: &KeyValue) -> Option<Arc<CachedObject<A>>> {
    let cached = state.objects.get(&kv.key)?;
    (cached.revision == kv.mod_revision).then(|| cached.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{EmbeddedStore, Options};

    async fn cache_over_embedded(dir: &std::path::Path) -> (Arc<dyn Store>, WatchCache<JsonCodec>) {
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir, Options::default()).expect("open store"));
        store
            .create(
                "/things/a",
                Bytes::from_static(br#"{"metadata":{"name":"a"}}"#),
            )
            .await
            .expect("create");
        let cache = WatchCache::new(store.clone(), "/things/", JsonCodec, CacheConfig::default());
        assert!(
            cache.wait_ready(Duration::from_secs(10)).await,
            "cache never loaded"
        );
        (store, cache)
    }

    /// Two resources over one store far away (its revision is fetched, not known in memory):
    /// one fetch serves a request's reads of both, and they see what was written before it.
    #[tokio::test]
    async fn the_reads_of_one_request_share_a_fetch_of_the_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let embedded = Arc::new(EmbeddedStore::open(dir.path(), Options::default()).expect("open"));
        let faulty = Arc::new(crate::testing::FaultyStore::new(embedded));
        let store: Arc<dyn Store> = faulty.clone();
        let things = WatchCache::new(store.clone(), "/things/", JsonCodec, CacheConfig::default());
        let others = WatchCache::new(store.clone(), "/others/", JsonCodec, CacheConfig::default());
        for cache in [&things, &others] {
            assert!(
                cache.wait_ready(Duration::from_secs(10)).await,
                "never loaded"
            );
        }
        let value = Bytes::from_static(br#"{"metadata":{"name":"x"}}"#);
        store
            .create("/things/x", value.clone())
            .await
            .expect("create");
        let written = store.create("/others/x", value).await.expect("create");
        let fetches_before = faulty.revision_calls();

        let at = things.consistent_read().await.expect("revision");
        let ReadRevision::ConsistentWith(revision) = at else {
            panic!("a consistent read's revision is {at:?}");
        };
        assert!(
            revision >= written,
            "fetched {revision} before the write {written}"
        );
        for (cache, key) in [(&things, "/things/x"), (&others, "/others/x")] {
            let (found, served_at, _) = cache.get(key, at).await.expect("get");
            assert!(found.is_some(), "{key} written before the read is missing");
            assert!(
                served_at >= revision,
                "{key} served at {served_at} < {revision}"
            );
        }
        assert_eq!(
            faulty.revision_calls() - fetches_before,
            1,
            "two reads of one request fetched the revision more than once"
        );
    }

    /// A list read from the store at an older revision: the object unchanged since is the
    /// cache's own (no decode), the one written since is decoded from the older write.
    #[tokio::test]
    async fn store_reads_take_the_cached_object_only_for_the_same_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, cache) = cache_over_embedded(dir.path()).await;
        let old_b = Bytes::from_static(br#"{"metadata":{"name":"b"},"v":1}"#);
        let at = store.create("/things/b", old_b).await.expect("create");
        let new_b = Bytes::from_static(br#"{"metadata":{"name":"b"},"v":2}"#);
        let now = store.update("/things/b", new_b, at).await.expect("update");
        cache
            .get("/things/b", ReadRevision::NotOlderThan(now))
            .await
            .expect("caught up");
        let cached = |key: &str| cache.inner.read_state().objects.get(key).cloned();
        let (cached_a, cached_b) = (
            cached("/things/a").expect("a"),
            cached("/things/b").expect("b"),
        );

        let listed = cache
            .list(ListRequest {
                selection: Selection::prefix("/things/"),
                start: None,
                limit: 0,
                revision: ReadRevision::Exact(at),
            })
            .await
            .expect("list");
        assert_eq!(listed.source, Source::Store);
        let [(key_a, a), (key_b, b)] = &listed.items[..] else {
            panic!("listed {} objects at {at}", listed.items.len());
        };
        assert_eq!((key_a.as_str(), key_b.as_str()), ("/things/a", "/things/b"));
        assert!(
            Arc::ptr_eq(a, &cached_a),
            "the unchanged object was decoded again"
        );
        assert!(
            !Arc::ptr_eq(b, &cached_b),
            "a later write was served for an older one"
        );
        assert_eq!(b.revision, at);
        let served = cache.codec().wire("/things/b", &b.json).expect("wire");
        let expected = format!(r#"{{"metadata":{{"name":"b","resourceVersion":"{at}"}},"v":1}}"#);
        assert_eq!(String::from_utf8_lossy(&served), expected);
    }

    #[tokio::test]
    async fn an_exact_list_from_the_future_is_too_large_with_the_current_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, cache) = cache_over_embedded(dir.path()).await;
        let current = store.current_revision().await.expect("revision");
        let listed = cache
            .list(ListRequest {
                selection: Selection::prefix("/things/"),
                start: None,
                limit: 0,
                revision: ReadRevision::Exact(current + 100),
            })
            .await;
        let Err(err) = listed else {
            panic!("a list at a future revision succeeded");
        };
        match err {
            CacheError::TooLarge {
                requested,
                current: reported,
            } => {
                assert_eq!(requested, current + 100);
                assert_eq!(reported, current);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    fn announced_b() -> (Bytes, Unversioned) {
        let value = Bytes::from_static(br#"{"metadata":{"name":"b"}}"#);
        let json = br#"{"metadata":{"name":"b","resourceVersion":"@"}}"#.to_vec();
        let json = Unversioned::from_placeholder(json, "@").expect("one placeholder");
        (value, json)
    }

    #[tokio::test]
    async fn an_announcement_is_taken_once_and_for_its_own_value_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_store, cache) = cache_over_embedded(dir.path()).await;
        let (value, json) = announced_b();
        cache.expect("/things/b", value.clone(), json.clone(), ());
        let other = br#"{"metadata":{"name":"b","labels":{"x":"y"}}}"#;
        assert!(cache.inner.take_expected("/things/b", other, 5).is_none());
        assert!(cache.inner.take_expected("/things/c", &value, 5).is_none());
        let taken = cache
            .inner
            .take_expected("/things/b", &value, 7)
            .expect("the announced value is taken");
        assert_eq!(taken.revision, 7);
        assert_eq!(
            &taken.json[..],
            &br#"{"metadata":{"name":"b","resourceVersion":"7"}}"#[..]
        );
        assert!(cache.inner.take_expected("/things/b", &value, 7).is_none());

        cache.expect("/things/b", value.clone(), json, ());
        cache.withdraw("/things/b", &Bytes::from_static(other));
        assert_eq!(cache.inner.expected().len(), 1, "another value withdrew it");
        cache.withdraw("/things/b", &value);
        assert!(cache.inner.expected().is_empty());
    }

    #[tokio::test]
    async fn the_reflector_keeps_an_announced_write_without_decoding_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, cache) = cache_over_embedded(dir.path()).await;
        let (value, json) = announced_b();
        cache.expect("/things/b", value.clone(), json, ());
        let revision = store.create("/things/b", value).await.expect("create");
        let (object, _, source) = cache
            .get("/things/b", ReadRevision::NotOlderThan(revision))
            .await
            .expect("get");
        assert_eq!(source, Source::Cache);
        let object = object.expect("cached");
        assert_eq!(
            String::from_utf8_lossy(&object.json),
            format!(r#"{{"metadata":{{"name":"b","resourceVersion":"{revision}"}}}}"#)
        );
        assert!(
            cache.inner.expected().is_empty(),
            "the reflector left the announcement unused"
        );
    }

    #[tokio::test]
    async fn other_store_errors_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_store, cache) = cache_over_embedded(dir.path()).await;
        let kept = cache
            .inner
            .future_is_too_large(CacheError::Storage(StorageError::Compacted {
                requested: 1,
                compacted: 5,
            }))
            .await;
        assert!(
            matches!(kept, CacheError::Storage(StorageError::Compacted { .. })),
            "got {kept:?}"
        );
    }
}
