//! The watch cache's in-memory state: the current objects, the window of recent events, and
//! the registered watchers. Everything here is synchronous and runs under the cache's lock, so
//! that a snapshot and the events after it can never disagree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::Revision;

/// One version of one object as served: wire JSON plus filter attributes.
#[derive(Debug)]
pub struct CachedObject<A> {
    /// The object's resourceVersion (its mod revision; for a deleted object's last state, the
    /// deletion revision).
    pub revision: Revision,
    pub json: Bytes,
    pub attrs: A,
}

/// The kind of a change, named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, shared by every watcher that receives it; its frames are encoded once.
#[derive(Debug)]
pub struct CachedEvent<A> {
    pub kind: EventType,
    pub key: String,
    pub revision: Revision,
    /// The new state; for a delete, the last state with the deletion revision.
    pub object: Arc<CachedObject<A>>,
    /// The state before a modification (with its own revision), for filter transitions.
    pub prev: Option<Arc<CachedObject<A>>>,
    pub(super) frames: [OnceLock<Bytes>; 4],
}

impl<A> CachedEvent<A> {
    pub(super) fn new(
        kind: EventType,
        key: String,
        object: Arc<CachedObject<A>>,
        prev: Option<Arc<CachedObject<A>>>,
    ) -> Self {
        CachedEvent {
            kind,
            key,
            revision: object.revision,
            object,
            prev,
            frames: Default::default(),
        }
    }
}

/// How one watcher sees one event, after its filter (kube's cacher rules): a modification that
/// makes an object match is ADDED for it, one that makes it stop matching is DELETED (with the
/// previous state at the event's revision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Added,
    Modified,
    Deleted,
    /// DELETED, carrying the previous state re-stamped with the event's revision.
    DeletedPrev,
}

impl View {
    pub(super) fn index(self) -> usize {
        match self {
            View::Added => 0,
            View::Modified => 1,
            View::Deleted => 2,
            View::DeletedPrev => 3,
        }
    }

    pub fn event_type(self) -> EventType {
        match self {
            View::Added => EventType::Added,
            View::Modified => EventType::Modified,
            View::Deleted | View::DeletedPrev => EventType::Deleted,
        }
    }
}

/// A watcher's filter over an object's attributes.
pub type Filter<A> = Arc<dyn Fn(&A) -> bool + Send + Sync>;

/// Which objects a watch or list sees: a key prefix and an optional attribute filter.
pub struct Selection<A> {
    pub prefix: String,
    pub filter: Option<Filter<A>>,
}

impl<A> Clone for Selection<A> {
    fn clone(&self) -> Self {
        Selection {
            prefix: self.prefix.clone(),
            filter: self.filter.clone(),
        }
    }
}

impl<A> Selection<A> {
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Selection {
            prefix: prefix.into(),
            filter: None,
        }
    }

    pub fn matches(&self, key: &str, attrs: &A) -> bool {
        key.starts_with(&self.prefix) && self.filter.as_ref().is_none_or(|f| f(attrs))
    }

    /// What this selection sees of `event`, if anything.
    pub fn view(&self, event: &CachedEvent<A>) -> Option<View> {
        if !event.key.starts_with(&self.prefix) {
            return None;
        }
        let passes = |o: &CachedObject<A>| self.filter.as_ref().is_none_or(|f| f(&o.attrs));
        match event.kind {
            EventType::Added => passes(&event.object).then_some(View::Added),
            EventType::Deleted => passes(&event.object).then_some(View::Deleted),
            EventType::Modified => {
                let now = passes(&event.object);
                let before = event.prev.as_deref().is_some_and(passes);
                match (before, now) {
                    (true, true) => Some(View::Modified),
                    (false, true) => Some(View::Added),
                    (true, false) => Some(View::DeletedPrev),
                    (false, false) => None,
                }
            }
        }
    }
}

/// A key that changed, with its current object (`None`: deleted).
pub type Changed<A> = (String, Option<Arc<CachedObject<A>>>);

/// What a cache watcher receives.
#[derive(Debug)]
pub enum WatchItem<A> {
    /// A change, as this watcher sees it.
    Event(Arc<CachedEvent<A>>, View),
    /// An object of the initial state, sent as ADDED.
    Initial(Arc<CachedObject<A>>),
    /// Nothing this watcher cares about happened up to this revision.
    Bookmark(Revision),
    /// The initial state is complete at this revision (watch-list's end bookmark).
    InitialEventsEnd(Revision),
}

pub(super) struct WatcherSlot<A> {
    pub id: u64,
    /// Events at or below this revision are not for this watcher (it started after them).
    pub after: Revision,
    pub selection: Selection<A>,
    pub tx: mpsc::Sender<WatchItem<A>>,
    pub evicted: Arc<AtomicBool>,
    pub bookmarks: bool,
}

/// The cache proper.
pub(super) struct State<A> {
    /// A list has been loaded since the last (re)start.
    pub ready: bool,
    /// Every change up to this revision is applied.
    pub revision: Revision,
    /// The history holds every event with a revision above this one.
    pub window_start: Revision,
    pub objects: BTreeMap<String, Arc<CachedObject<A>>>,
    pub history: VecDeque<Arc<CachedEvent<A>>>,
    pub history_capacity: usize,
    pub watchers: Vec<WatcherSlot<A>>,
}

/// Why a watch cannot start from the requested revision.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StartError {
    /// Older than the window: the client must relist.
    TooOld { oldest: Revision },
}

impl<A> State<A> {
    pub fn new(history_capacity: usize) -> Self {
        State {
            ready: false,
            revision: 0,
            window_start: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            watchers: Vec::new(),
        }
    }

    /// Replaces everything with a fresh list at `revision`. Existing watchers are closed: their
    /// clients re-watch, as with kube's cacher after a relist.
    pub fn reset(&mut self, objects: BTreeMap<String, Arc<CachedObject<A>>>, revision: Revision) {
        self.objects = objects;
        self.revision = revision;
        self.window_start = revision;
        self.history.clear();
        self.watchers.clear();
        self.ready = true;
    }

    /// Applies one change and hands it to every interested watcher. A watcher whose buffer is
    /// full is evicted on the spot: it never holds up the others.
    pub fn apply(&mut self, event: CachedEvent<A>) {
        let event = Arc::new(event);
        match event.kind {
            EventType::Deleted => {
                self.objects.remove(&event.key);
            }
            EventType::Added | EventType::Modified => {
                self.objects.insert(event.key.clone(), event.object.clone());
            }
        }
        self.revision = self.revision.max(event.revision);
        self.push_history(event.clone());
        self.watchers.retain(|w| {
            if event.revision <= w.after {
                return true;
            }
            let Some(view) = w.selection.view(&event) else {
                return true;
            };
            deliver(w, WatchItem::Event(event.clone(), view))
        });
    }

    /// Records progress without a change under our prefix.
    pub fn advance(&mut self, revision: Revision) {
        self.revision = self.revision.max(revision);
    }

    fn push_history(&mut self, event: Arc<CachedEvent<A>>) {
        if self.history.len() == self.history_capacity {
            if let Some(oldest) = self.history.pop_front() {
                self.window_start = oldest.revision;
            }
        }
        self.history.push_back(event);
    }

    /// The events a watch from `after` must replay, or why it cannot start there.
    pub fn events_after(
        &self,
        after: Revision,
        selection: &Selection<A>,
    ) -> Result<Vec<WatchItem<A>>, StartError> {
        if after < self.window_start {
            return Err(StartError::TooOld {
                oldest: self.window_start + 1,
            });
        }
        let first = self.history.partition_point(|e| e.revision <= after);
        Ok(self
            .history
            .range(first..)
            .filter_map(|e| selection.view(e).map(|v| WatchItem::Event(e.clone(), v)))
            .collect())
    }

    /// The keys under `prefix` that changed after `after`, once each, with their current
    /// objects (`None`: deleted since), or why the window cannot tell.
    pub fn changed_after(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<Vec<Changed<A>>, StartError> {
        if after < self.window_start {
            return Err(StartError::TooOld {
                oldest: self.window_start + 1,
            });
        }
        let first = self.history.partition_point(|e| e.revision <= after);
        let keys: BTreeSet<&str> = self
            .history
            .range(first..)
            .filter(|e| e.key.starts_with(prefix))
            .map(|e| e.key.as_str())
            .collect();
        Ok(keys
            .into_iter()
            .map(|k| (k.to_string(), self.objects.get(k).cloned()))
            .collect())
    }

    /// The current objects a selection sees, as initial ADDED items.
    pub fn snapshot(&self, selection: &Selection<A>) -> Vec<WatchItem<A>> {
        self.objects
            .range(selection.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&selection.prefix))
            .filter(|(k, o)| selection.matches(k, &o.attrs))
            .map(|(_, o)| WatchItem::Initial(o.clone()))
            .collect()
    }

    /// Sends a bookmark at the current revision to every watcher that asked for them. A full
    /// buffer just skips this one: a bookmark is never worth an eviction.
    pub fn bookmark_all(&mut self) {
        let revision = self.revision;
        for w in self.watchers.iter().filter(|w| w.bookmarks) {
            let _ = w.tx.try_send(WatchItem::Bookmark(revision));
        }
    }
}

fn deliver<A>(w: &WatcherSlot<A>, item: WatchItem<A>) -> bool {
    match w.tx.try_send(item) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            w.evicted.store(true, Ordering::Release);
            tracing::info!(watcher = w.id, prefix = %w.selection.prefix, "evicting a slow watcher");
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(revision: Revision, label: &str) -> Arc<CachedObject<String>> {
        Arc::new(CachedObject {
            revision,
            json: Bytes::from(format!("{{\"rv\":{revision}}}")),
            attrs: label.to_string(),
        })
    }

    fn selection(prefix: &str, want: Option<&'static str>) -> Selection<String> {
        Selection {
            prefix: prefix.to_string(),
            filter: want.map(|w| Arc::new(move |a: &String| a == w) as Filter<String>),
        }
    }

    fn modified(key: &str, prev_label: &str, label: &str) -> CachedEvent<String> {
        CachedEvent::new(
            EventType::Modified,
            key.into(),
            obj(2, label),
            Some(obj(1, prev_label)),
        )
    }

    #[test]
    fn views_follow_filter_transitions() {
        let sel = selection("/a/", Some("x"));
        let cases = [
            (modified("/a/1", "x", "x"), Some(View::Modified)),
            (modified("/a/1", "y", "x"), Some(View::Added)),
            (modified("/a/1", "x", "y"), Some(View::DeletedPrev)),
            (modified("/a/1", "y", "y"), None),
            (modified("/b/1", "x", "x"), None),
            (
                CachedEvent::new(EventType::Added, "/a/2".into(), obj(3, "x"), None),
                Some(View::Added),
            ),
            (
                CachedEvent::new(EventType::Added, "/a/2".into(), obj(3, "y"), None),
                None,
            ),
            (
                CachedEvent::new(EventType::Deleted, "/a/2".into(), obj(4, "x"), None),
                Some(View::Deleted),
            ),
        ];
        for (event, want) in cases {
            assert_eq!(sel.view(&event), want, "{:?} {:?}", event.key, event.kind);
        }
    }

    fn added(key: &str, revision: Revision) -> CachedEvent<String> {
        CachedEvent::new(EventType::Added, key.into(), obj(revision, "x"), None)
    }

    #[test]
    fn window_serves_events_after_and_rejects_older() {
        let mut state = State::new(3);
        state.reset(BTreeMap::new(), 10);
        for r in 11..=15 {
            state.apply(added(&format!("/a/{r}"), r));
        }
        // Capacity 3 keeps 13..=15, so the window starts after 12.
        assert_eq!(state.window_start, 12);
        let all = selection("/a/", None);
        let revs = |items: Vec<WatchItem<String>>| -> Vec<Revision> {
            items
                .iter()
                .map(|i| match i {
                    WatchItem::Event(e, _) => e.revision,
                    _ => -1,
                })
                .collect()
        };
        assert_eq!(
            revs(state.events_after(12, &all).expect("in window")),
            [13, 14, 15]
        );
        assert_eq!(revs(state.events_after(14, &all).expect("in window")), [15]);
        assert!(state.events_after(15, &all).expect("at head").is_empty());
        assert_eq!(
            state.events_after(11, &all).err(),
            Some(StartError::TooOld { oldest: 13 })
        );
    }

    #[test]
    fn changed_after_names_each_changed_key_once_with_its_current_state() {
        let mut state = State::new(4);
        state.reset(BTreeMap::new(), 10);
        state.apply(added("/a/1", 11));
        state.apply(added("/b/1", 12));
        state.apply(CachedEvent::new(
            EventType::Modified,
            "/a/1".into(),
            obj(13, "y"),
            Some(obj(11, "x")),
        ));
        state.apply(CachedEvent::new(
            EventType::Deleted,
            "/a/2".into(),
            obj(14, "x"),
            None,
        ));
        let changed = state.changed_after("/a/", 10).expect("in window");
        let summary: Vec<(&str, Option<Revision>)> = changed
            .iter()
            .map(|(k, o)| (k.as_str(), o.as_ref().map(|o| o.revision)))
            .collect();
        assert_eq!(summary, [("/a/1", Some(13)), ("/a/2", None)]);
        assert!(state.changed_after("/a/", 14).expect("at head").is_empty());
        assert_eq!(state.changed_after("/b/", 11).expect("in window").len(), 1);
        // One more event pushes 11 out of the window of 4.
        state.apply(added("/a/3", 15));
        assert_eq!(
            state.changed_after("/a/", 10).err(),
            Some(StartError::TooOld { oldest: 12 })
        );
    }

    #[test]
    fn snapshot_respects_prefix_and_filter() {
        let mut state = State::new(10);
        let objects = [("/a/1", "x"), ("/a/2", "y"), ("/ab/1", "x"), ("/b/1", "x")]
            .into_iter()
            .map(|(k, l)| (k.to_string(), obj(1, l)))
            .collect();
        state.reset(objects, 5);
        assert_eq!(state.snapshot(&selection("/a/", None)).len(), 2);
        assert_eq!(state.snapshot(&selection("/a/", Some("x"))).len(), 1);
        assert_eq!(state.snapshot(&selection("/", Some("x"))).len(), 3);
    }

    #[test]
    fn full_watcher_is_evicted_others_continue() {
        let mut state = State::new(100);
        state.reset(BTreeMap::new(), 1);
        let (slow_tx, _slow_rx) = mpsc::channel(2);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let slow_evicted = Arc::new(AtomicBool::new(false));
        state.watchers.push(WatcherSlot {
            id: 1,
            after: 0,
            selection: selection("/", None),
            tx: slow_tx,
            evicted: slow_evicted.clone(),
            bookmarks: false,
        });
        state.watchers.push(WatcherSlot {
            id: 2,
            after: 0,
            selection: selection("/", None),
            tx: fast_tx,
            evicted: Arc::new(AtomicBool::new(false)),
            bookmarks: false,
        });
        for r in 2..10 {
            state.apply(added(&format!("/k{r}"), r));
        }
        assert!(slow_evicted.load(Ordering::Acquire));
        assert_eq!(state.watchers.len(), 1);
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 8);
    }

    #[test]
    fn watcher_skips_events_at_or_below_its_start() {
        let mut state = State::new(10);
        state.reset(BTreeMap::new(), 1);
        let (tx, mut rx) = mpsc::channel(10);
        state.watchers.push(WatcherSlot {
            id: 1,
            after: 5,
            selection: selection("/", None),
            tx,
            evicted: Arc::new(AtomicBool::new(false)),
            bookmarks: false,
        });
        for r in [4, 5, 6] {
            state.apply(added(&format!("/k{r}"), r));
        }
        let mut got = Vec::new();
        while let Ok(WatchItem::Event(e, _)) = rx.try_recv() {
            got.push(e.revision);
        }
        assert_eq!(got, [6]);
    }

    #[test]
    fn delete_removes_object_and_modify_replaces_it() {
        let mut state = State::new(10);
        state.reset(BTreeMap::new(), 1);
        state.apply(added("/a", 2));
        state.apply(modified("/a", "x", "x"));
        assert_eq!(state.objects["/a"].revision, 2);
        state.apply(CachedEvent::new(
            EventType::Deleted,
            "/a".into(),
            obj(4, "x"),
            None,
        ));
        assert!(state.objects.is_empty());
        assert_eq!(state.revision, 4);
    }
}
