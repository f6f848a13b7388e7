//! Watch: a stream of events from the watch cache, with bookmarks, the initial-events-end
//! marker of watch-list, `timeoutSeconds` and shutdown. Events leave as the cache's shared
//! frames; nothing is expanded per watcher here.

use std::time::Duration;

use apimachinery::errors::ApiError;
use apimachinery::fields::FieldRequirement;
use apimachinery::options::ListOptions;
use futures::stream::BoxStream;
use futures::StreamExt;
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
        let state = WatchState {
            watcher,
            deadline: tokio::time::Instant::now() + watch_timeout(opts.timeout_seconds),
            shutdown: req.shutdown.clone(),
            kind: info.kind,
            api_version: info.group_version(),
        };
        Ok(futures::stream::unfold(state, |mut st| async move {
            let ev = st.next_event().await?;
            Some((ev, st))
        })
        .boxed())
    }
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
