//! The task that keeps a watch cache in step with the store, as a small state machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::state::{CachedEvent, CachedObject, EventType};
use super::{Codec, Inner};
use crate::{Event, EventKind, RangeRequest, Revision, StorageError, WatchMessage, WatchStream};

/// Where the reflector is.
enum Phase {
    /// Load every object at one revision and replace the cache with it; closes all watchers.
    List,
    /// Follow the store's watch from this revision.
    Watch(Revision),
    /// Something failed; wait, then go to the phase inside.
    Backoff(Duration, Box<Phase>),
}

pub(super) async fn run<C: Codec>(inner: Arc<Inner<C>>) {
    let mut phase = Phase::List;
    loop {
        phase = step(&inner, phase).await;
    }
}

async fn step<C: Codec>(inner: &Inner<C>, phase: Phase) -> Phase {
    match phase {
        Phase::List => match list_all(inner).await {
            Ok(revision) => Phase::Watch(revision),
            Err(e) => {
                tracing::warn!(prefix = %inner.prefix, error = %e, "watch cache list failed");
                Phase::Backoff(Duration::from_millis(500), Box::new(Phase::List))
            }
        },
        Phase::Watch(from) => match inner.store.watch(&inner.prefix, from).await {
            Ok(stream) => follow(inner, stream).await,
            Err(StorageError::Compacted { .. }) => Phase::List,
            Err(e) => {
                tracing::warn!(prefix = %inner.prefix, error = %e, "watch cache watch failed");
                Phase::Backoff(Duration::from_millis(500), Box::new(Phase::Watch(from)))
            }
        },
        Phase::Backoff(delay, next) => {
            tokio::time::sleep(delay).await;
            *next
        }
    }
}

async fn list_all<C: Codec>(inner: &Inner<C>) -> Result<Revision, StorageError> {
    let mut objects = BTreeMap::new();
    let mut revision = None;
    let mut start = None;
    loop {
        let page = inner
            .store
            .range(RangeRequest {
                prefix: inner.prefix.clone(),
                start: start.take(),
                revision,
                limit: inner.config.list_page_size,
            })
            .await?;
        revision = Some(page.revision);
        let last = page.kvs.last().map(|kv| format!("{}\0", kv.key));
        for kv in page.kvs {
            match inner.decode(&kv.key, &kv.value, kv.mod_revision) {
                Ok(object) => {
                    objects.insert(kv.key, object);
                }
                Err(e) => tracing::error!(key = %kv.key, error = %e, "skipping undecodable object"),
            }
        }
        if !page.more {
            break;
        }
        start = last;
    }
    let revision = revision.unwrap_or(0);
    inner.forget_expected();
    inner.write_state().reset(objects, revision);
    inner.applied.send_replace(revision);
    tracing::debug!(prefix = %inner.prefix, revision, "watch cache loaded");
    Ok(revision)
}

async fn follow<C: Codec>(inner: &Inner<C>, mut stream: WatchStream) -> Phase {
    *inner.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.progress_requester());
    let mut bookmarks = tokio::time::interval(inner.config.bookmark_interval);
    bookmarks.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(WatchMessage::Events(events))) => apply_events(inner, events),
                // Untrusted progress (etcd before 3.4.31 / 3.5.13) could run ahead of events:
                // ignore it. Asked per message: a reconnected watch may have changed the answer.
                Some(Ok(WatchMessage::Progress(revision))) if inner.reliable_progress() => {
                    inner.write_state().advance(revision);
                    publish(inner);
                }
                Some(Ok(WatchMessage::Progress(_))) => {}
                Some(Err(StorageError::Compacted { .. })) => return Phase::List,
                Some(Err(e)) => {
                    tracing::warn!(prefix = %inner.prefix, error = %e, "watch cache upstream failed");
                    return Phase::Backoff(Duration::from_millis(200), Box::new(Phase::Watch(inner.read_state().revision)));
                }
                None => return Phase::Backoff(Duration::from_millis(200), Box::new(Phase::Watch(inner.read_state().revision))),
            },
            _ = bookmarks.tick() => inner.write_state().bookmark_all(),
        }
    }
}

/// One store event, decoded outside the cache lock.
struct Change<A> {
    key: String,
    deleted: bool,
    /// The new state; for a delete, the last state stamped with the deletion revision.
    object: Arc<CachedObject<A>>,
}

fn apply_events<C: Codec>(inner: &Inner<C>, events: Vec<Event>) {
    let changes: Vec<_> = events
        .into_iter()
        .filter_map(|e| decode_change(inner, e))
        .collect();
    let mut state = inner.write_state();
    for change in changes {
        let prev = state.objects.get(&change.key).cloned();
        let kind = match (change.deleted, prev.is_some()) {
            (true, _) => EventType::Deleted,
            (false, true) => EventType::Modified,
            (false, false) => EventType::Added,
        };
        state.apply(CachedEvent::new(kind, change.key, change.object, prev));
    }
    drop(state);
    publish(inner);
}

fn decode_change<C: Codec>(inner: &Inner<C>, event: Event) -> Option<Change<C::Attrs>> {
    let revision = event.revision();
    let deleted = event.kind == EventKind::Delete;
    let value = if deleted {
        let Some(prev) = event.prev else {
            tracing::error!(key = %event.kv.key, "delete event without a previous value");
            return None;
        };
        prev.value
    } else {
        event.kv.value
    };
    let announced = (!deleted)
        .then(|| inner.take_expected(&event.kv.key, &value, revision))
        .flatten();
    match announced.map_or_else(|| inner.decode(&event.kv.key, &value, revision), Ok) {
        Ok(object) => Some(Change {
            key: event.kv.key,
            deleted,
            object,
        }),
        Err(e) => {
            tracing::error!(revision, error = %e, "skipping undecodable event");
            None
        }
    }
}

fn publish<C: Codec>(inner: &Inner<C>) {
    let revision = inner.read_state().revision;
    inner.applied.send_replace(revision);
}
