//! Watch: a stream of events from the watch cache, with bookmarks, the initial-events-end
//! marker of watch-list, `timeoutSeconds` and shutdown. Events leave as the cache's shared
//! frames; nothing is expanded per watcher here.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use apimachinery::errors::ApiError;
use apimachinery::fields::FieldRequirement;
use apimachinery::options::ListOptions;
use futures::stream::BoxStream;
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use serde_json::json;
use storage::cache::{CacheError, CacheWatcher, ReadRevision, WatchItem, WatchRequest, WatchStart};
use storage::{Revision, StorageError};

use super::{cache_error, render, Registry};
use crate::resource::{Request, WatchBody, WatchEvent};
use crate::strategy::{ObjectAttrs, ObjectCodec, Strategy};

/// kube's `--min-request-timeout`: watches without `timeoutSeconds` last 1–2× this.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where a watch starts, from `sendInitialEvents` and `resourceVersion` (spec §4.5).
fn watch_start(send_initial_events: Option<bool>, rv: Option<u64>, now: Revision) -> WatchStart {
    match (send_initial_events, rv) {
        (Some(true), None) | (None, None) => WatchStart::Snapshot(ReadRevision::Consistent),
        (Some(true), Some(0)) | (None, Some(0)) => WatchStart::Snapshot(ReadRevision::Any),
        (Some(true), Some(n)) => WatchStart::Snapshot(ReadRevision::NotOlderThan(n as Revision)),
        (Some(false), Some(n)) if n > 0 => WatchStart::After(n as Revision),
        (Some(false), _) => WatchStart::After(now),
        (None, Some(n)) => WatchStart::After(n as Revision),
    }
}

/// `timeoutSeconds`, or kube's jittered default.
fn watch_timeout(timeout_seconds: Option<i64>) -> Duration {
    match timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s as u64),
        _ => {
            let jitter = (uuid::Uuid::new_v4().as_bytes()[0] as f64) / 255.0;
            MIN_REQUEST_TIMEOUT.mul_f64(1.0 + jitter)
        }
    }
}

/// A watch of one named object is a watch with a `metadata.name` field selector.
fn select_name(name: Option<&str>, opts: &mut ListOptions) -> Result<(), ApiError> {
    let Some(name) = name else {
        return Ok(());
    };
    match opts.field_selector.required_value("metadata.name") {
        Some(n) if n != name => Err(ApiError::BadRequest(
            "fieldSelector metadata.name doesn't match requested name".to_string(),
        )),
        Some(_) => Ok(()),
        None => {
            opts.field_selector.requirements.push(FieldRequirement {
                field: "metadata.name".into(),
                value: name.to_string(),
                negated: false,
            });
            Ok(())
        }
    }
}

impl<S: Strategy> Registry<S> {
    pub(super) async fn watch(
        &self,
        req: &Request,
        mut opts: ListOptions,
    ) -> Result<BoxStream<'static, WatchEvent>, ApiError> {
        select_name(req.name.as_deref(), &mut opts)?;
        let selection = self.selection(req.namespace.as_deref(), &opts)?;
        let start = watch_start(
            opts.send_initial_events,
            opts.revision()?,
            self.cache.revision(),
        );
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
        let watcher = match watch {
            Ok(w) => w,
            Err(
                e @ (CacheError::TooOld { .. }
                | CacheError::Storage(StorageError::Compacted { .. })),
            ) => {
                // A watch from a compacted revision answers 200 with one ERROR event (410).
                let status = cache_error(e, &self.gr, "watch").to_status();
                let event = WatchEvent {
                    event_type: "ERROR",
                    body: WatchBody::Object(render(&status)?),
                };
                return Ok(futures::stream::once(async move { event }).boxed());
            }
            Err(e) => return Err(cache_error(e, &self.gr, "watch")),
        };
        let info = self.info();
        let deadline = tokio::time::Instant::now() + watch_timeout(opts.timeout_seconds);
        Ok(WatchEvents {
            watcher,
            end: WatchEnd::new(watch_ends(deadline, req.shutdown.clone())),
            kind: info.kind,
            api_version: info.group_version(),
        }
        .boxed())
    }
}

/// Resolves when the watch must end: its timeout passed, or the server is shutting down.
async fn watch_ends(
    deadline: tokio::time::Instant,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        _ = tokio::time::sleep_until(deadline) => {}
        // A dropped sender ends the watch too.
        _ = shutdown.wait_for(|down| *down) => {}
    }
}

/// One watch's events. A hand-written stream rather than an `async` loop with a `select!`, so an
/// event costs one poll of the cache's channel and nothing else.
struct WatchEvents<S: Strategy> {
    watcher: CacheWatcher<ObjectCodec<S>>,
    end: WatchEnd,
    kind: &'static str,
    api_version: String,
}

impl<S: Strategy> Stream for WatchEvents<S> {
    type Item = WatchEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        let this = self.get_mut();
        if this.end.poll_ended(cx) {
            return Poll::Ready(None);
        }
        loop {
            let Some(item) = std::task::ready!(this.watcher.poll_next(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(ev) = this.convert(item) {
                return Poll::Ready(Some(ev));
            }
        }
    }
}

/// When a watch must end ([`watch_ends`]), polled only once it may have fired. Its wakeups go to
/// a waker of its own, which records them before waking the watch's task: polling the shutdown
/// half on every event would take a lock that every watch of the server shares.
struct WatchEnd {
    future: Pin<Box<dyn Future<Output = ()> + Send>>,
    signal: Arc<EndSignal>,
    waker: Waker,
    ended: bool,
}

#[derive(Default)]
struct EndSignal {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for EndSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl WatchEnd {
    fn new(future: impl Future<Output = ()> + Send + 'static) -> Self {
        let signal = Arc::new(EndSignal::default());
        // Polled on the first poll, which registers the timer and the shutdown listener.
        signal.fired.store(true, Ordering::Release);
        WatchEnd {
            future: Box::pin(future),
            waker: Waker::from(signal.clone()),
            signal,
            ended: false,
        }
    }

    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        if self.ended {
            return true;
        }
        self.signal.task.register(cx.waker());
        if self.signal.fired.swap(false, Ordering::AcqRel) {
            let mut own = Context::from_waker(&self.waker);
            self.ended = self.future.as_mut().poll(&mut own).is_ready();
        }
        self.ended
    }
}

impl<S: Strategy> WatchEvents<S> {
    fn bookmark(&self, revision: Revision, end: bool) -> WatchEvent {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata});
        WatchEvent {
            event_type: "BOOKMARK",
            body: WatchBody::Object(render(&object).unwrap_or_default()),
        }
    }

    /// The event as the cache framed it: an initial object is framed for this watcher; a
    /// change's frame is encoded once per view and shared by every watcher.
    fn convert(&self, item: WatchItem<ObjectAttrs>) -> Option<WatchEvent> {
        let event_type = match &item {
            WatchItem::Initial(_) => "ADDED",
            WatchItem::Event(_, view) => view.event_type().as_str(),
            WatchItem::Bookmark(rev) => return Some(self.bookmark(*rev, false)),
            WatchItem::InitialEventsEnd(rev) => return Some(self.bookmark(*rev, true)),
        };
        let frame = self.watcher.cache().frame(&item).ok().flatten()?;
        Some(WatchEvent {
            event_type,
            body: WatchBody::Frame(frame),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Polls `end` as a watch's stream does, from a task whose wakeups are counted.
    fn poll_once(end: &mut WatchEnd, woken: &Arc<Counter>) -> bool {
        let waker = Waker::from(woken.clone());
        end.poll_ended(&mut Context::from_waker(&waker))
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_ends_at_its_deadline_and_wakes_its_task() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut end = WatchEnd::new(watch_ends(deadline, rx));
        let task = Arc::new(Counter::default());
        assert!(!poll_once(&mut end, &task));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!poll_once(&mut end, &task), "ended before its deadline");
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert!(task.0.load(Ordering::SeqCst) >= 1, "the task was not woken");
        assert!(poll_once(&mut end, &task));
        assert!(poll_once(&mut end, &task), "an ended watch stays ended");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_watch_and_so_does_a_dropped_sender() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut end = WatchEnd::new(watch_ends(deadline, rx));
        let task = Arc::new(Counter::default());
        assert!(!poll_once(&mut end, &task));
        tx.send_replace(true);
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(poll_once(&mut end, &task));

        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut end = WatchEnd::new(watch_ends(deadline, rx));
        assert!(!poll_once(&mut end, &task));
        drop(tx);
        assert!(poll_once(&mut end, &task));
    }

    /// A future that counts its polls and never ends.
    struct Polls(Arc<AtomicUsize>);

    impl Future for Polls {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Pending
        }
    }

    #[test]
    fn the_end_is_polled_only_when_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut end = WatchEnd::new(Polls(polls.clone()));
        let task = Arc::new(Counter::default());
        for _ in 0..10 {
            assert!(!poll_once(&mut end, &task));
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, to register");
        end.waker.wake_by_ref();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "its wakeup reaches the task"
        );
        assert!(!poll_once(&mut end, &task));
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
