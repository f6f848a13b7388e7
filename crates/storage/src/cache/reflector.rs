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
                Some(Ok(WatchMessage::Progress(revision))) => {
                    inner.write_state().advance(revision);
                    publish(inner);
                }
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

fn apply_events<C: Codec>(inner: &Inner<C>, events: Vec<Event>) {
    let converted: Vec<_> = events
        .into_iter()
        .filter_map(|e| convert(inner, e))
        .collect();
    let mut state = inner.write_state();
    for event in converted {
        let prev = state.objects.get(&event.0).cloned();
        let (key, kind, object) = event;
        let cached = match kind {
            EventType::Modified | EventType::Added => {
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CachedEvent::new(kind, key, object, prev)
            }
            EventType::Deleted => CachedEvent::new(EventType::Deleted, key, object, prev),
        };
        state.apply(cached);
    }
    drop(state);
    publish(inner);
}

/// Decodes a store event into (key, type, served object) outside the lock.
fn convert<C: Codec>(
    inner: &Inner<C>,
    event: Event,
) -> Option<(String, EventType, Arc<CachedObject<C::Attrs>>)> {
    let revision = event.revision();
    let result = match event.kind {
        EventKind::Put => inner
            .decode(&event.kv.key, &event.kv.value, revision)
            .map(|o| (event.kv.key, EventType::Modified, o)),
        EventKind::Delete => {
            let Some(prev) = event.prev else {
                tracing::error!(key = %event.kv.key, "delete event without a previous value");
                return None;
            };
            inner
                .decode(&event.kv.key, &prev.value, revision)
                .map(|o| (event.kv.key, EventType::Deleted, o))
        }
    };
    result
        .map_err(|e| tracing::error!(revision, error = %e, "skipping undecodable event"))
        .ok()
}

fn publish<C: Codec>(inner: &Inner<C>) {
    let revision = inner.read_state().revision;
    inner.applied.send_replace(revision);
}
