//! The task that keeps a watch cache in step with the store, as a small state machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::state::{CachedEvent, CachedObject, EventType};
use super::{CacheResult, Codec, Inner};
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
    let last = events.last().map(Event::revision);
    let mut changes: Vec<Change<C::Attrs>> = Vec::with_capacity(events.len());
    for event in events {
        let change = if event.kind == EventKind::Delete {
            deleted_change(inner, &changes, event)
        } else {
            written_change(inner, event)
        };
        changes.extend(change);
    }
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
    // A skipped event (logged where it was skipped) is still behind the cache: reads waiting
    // for its revision must not wait for the next write.
    if let Some(revision) = last {
        state.advance(revision);
    }
    drop(state);
    publish(inner);
}

/// A put: the object its writer announced, or the stored value decoded.
fn written_change<C: Codec>(inner: &Inner<C>, event: Event) -> Option<Change<C::Attrs>> {
    let (key, value, revision) = (event.kv.key, event.kv.value, event.kv.mod_revision);
    let announced = inner.take_expected(&key, &value, revision);
    let object = announced.map_or_else(|| inner.decode(&key, &value, revision), Ok);
    change_or_skip(key, false, revision, object)
}

/// A delete: the key's last state, restamped with the deletion revision. The last state is
/// the batch's own latest change of the key, else the cache's object. Only this task writes the
/// cache's state, so what it reads here is still there when the batch is applied.
fn deleted_change<C: Codec>(
    inner: &Inner<C>,
    earlier: &[Change<C::Attrs>],
    event: Event,
) -> Option<Change<C::Attrs>> {
    let (key, revision) = (event.kv.key, event.kv.mod_revision);
    let last = match earlier.iter().rev().find(|c| c.key == key) {
        Some(change) => (!change.deleted).then(|| change.object.clone()),
        None => inner.read_state().objects.get(&key).cloned(),
    };
    let Some(last) = last else {
        tracing::error!(%key, revision, "delete event for a key the cache does not hold");
        return None;
    };
    let object = inner.restamped(&key, &last, revision);
    change_or_skip(key, true, revision, object)
}

/// The change to `key`; an object that could not be made is logged and the event skipped.
fn change_or_skip<A>(
    key: String,
    deleted: bool,
    revision: Revision,
    object: CacheResult<Arc<CachedObject<A>>>,
) -> Option<Change<A>> {
    match object {
        Ok(object) => Some(Change {
            key,
            deleted,
            object,
        }),
        Err(e) => {
            tracing::error!(%key, revision, error = %e, "skipping undecodable event");
            None
        }
    }
}

fn publish<C: Codec>(inner: &Inner<C>) {
    let revision = inner.read_state().revision;
    inner.applied.send_replace(revision);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::{json, Value};

    use super::*;
    use crate::cache::{CacheConfig, JsonCodec, Selection, WatchCache, WatchRequest};
    use crate::embedded::{EmbeddedStore, Options};
    use crate::{KeyValue, Store};

    fn put(key: &str, value: Value, create_revision: Revision, mod_revision: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_string(),
                value: Bytes::from(value.to_string()),
                create_revision,
                mod_revision,
            },
        }
    }

    fn delete(key: &str, mod_revision: Revision) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_string(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision,
            },
        }
    }

    /// Deletes carry no value: a DELETED event is the key's last state, found earlier in the
    /// same batch or else in the cache, at the deletion revision. A delete of a key the cache
    /// does not hold is skipped, not published with a made-up object.
    #[tokio::test]
    async fn deleted_objects_are_the_last_state_at_the_deletion_revision() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), Options::default()).expect("open store"));
        let value = json!({"metadata": {"name": "a"}, "v": 0});
        let r0 = store
            .create("/things/a", Bytes::from(value.to_string()))
            .await
            .expect("create");
        let cache = WatchCache::new(store, "/things/", JsonCodec, CacheConfig::default());
        assert!(
            cache.wait_ready(Duration::from_secs(10)).await,
            "never loaded"
        );
        let mut watcher = cache
            .watch(WatchRequest::after(Selection::prefix("/things/"), r0))
            .await
            .expect("watch");

        let z = |v: u64| json!({"metadata": {"name": "z"}, "v": v});
        apply_events(
            &cache.inner,
            vec![
                put("/things/z", z(1), r0 + 1, r0 + 1),
                put("/things/z", z(2), r0 + 1, r0 + 2),
                delete("/things/z", r0 + 3),
                delete("/things/a", r0 + 4),
                delete("/things/never", r0 + 5),
            ],
        );

        let mut frames = Vec::new();
        while frames.len() < 4 {
            let item = tokio::time::timeout(Duration::from_secs(10), watcher.next())
                .await
                .expect("event in time")
                .expect("watch open");
            if let Some(frame) = cache.frame(&item).expect("frame") {
                frames.push(serde_json::from_slice::<Value>(&frame).expect("frame JSON"));
            }
        }
        let seen: Vec<_> = frames
            .iter()
            .map(|f| (f["type"].clone(), f["object"].clone()))
            .collect();
        let at = |mut v: Value, revision: Revision| {
            v["metadata"]["resourceVersion"] = json!(revision.to_string());
            v
        };
        assert_eq!(
            seen,
            [
                (json!("ADDED"), at(z(1), r0 + 1)),
                (json!("MODIFIED"), at(z(2), r0 + 2)),
                (json!("DELETED"), at(z(2), r0 + 3)),
                (json!("DELETED"), at(value, r0 + 4)),
            ]
        );
        let state = cache.inner.read_state();
        assert!(state.objects.is_empty(), "left {:?}", state.objects.keys());
        assert_eq!(state.revision, r0 + 5, "the skipped delete's revision");
    }
}
