//! The storage conformance suite: the same checks run against every [`Store`] backend
//! (and, through its store-shaped reads, the watch cache).
//!
//! Each check takes a fresh, empty store and panics with a message on failure. Backends wire
//! them into `#[tokio::test]`s with [`conformance_tests!`](crate::conformance_tests). Revisions
//! are only compared relative to each other: on etcd they are global and jump.

use std::time::Duration;

use bytes::Bytes;

use crate::{
    Event, EventKind, RangeRequest, Revision, StorageError, Store, WatchMessage, WatchStream,
};

fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Collects events from a watch until `n` arrived (progress messages are skipped).
pub async fn collect_events(watch: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let msg = tokio::time::timeout_at(deadline, watch.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} events: {out:?}", out.len()))
            .expect("watch ended early");
        match msg.expect("watch error") {
            WatchMessage::Events(evs) => out.extend(evs),
            WatchMessage::Progress(_) => {}
        }
    }
    out
}

/// Every write gets a revision greater than every earlier one, and the store's current revision
/// follows.
pub async fn revisions_strictly_increase(store: &dyn Store) {
    let before = store.current_revision().await.expect("current revision");
    let r1 = store.create("/t/a", val("1")).await.expect("create a");
    let r2 = store.create("/t/b", val("1")).await.expect("create b");
    let r3 = store.update("/t/a", val("2"), r1).await.expect("update a");
    let (r4, _) = store.delete("/t/b", Some(r2)).await.expect("delete b");
    let revs = [before, r1, r2, r3, r4];
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions not increasing: {revs:?}"
    );
    let now = store.current_revision().await.expect("current revision");
    assert!(now >= r4, "current revision {now} behind last write {r4}");
}

/// Create-if-absent refuses an existing key and leaves it unchanged.
pub async fn create_existing_fails(store: &dyn Store) {
    let r = store.create("/t/a", val("first")).await.expect("create");
    let err = store
        .create("/t/a", val("second"))
        .await
        .expect_err("second create");
    assert!(
        matches!(err, StorageError::AlreadyExists { .. }),
        "got {err:?}"
    );
    let got = store.get("/t/a").await.expect("get").kv.expect("present");
    assert_eq!(got.value, val("first"));
    assert_eq!(got.mod_revision, r);
    assert_eq!(got.create_revision, r);
}

/// Get returns create and mod revisions like etcd, and a revision not older than the value.
pub async fn get_reports_revisions(store: &dyn Store) {
    assert!(store.get("/t/missing").await.expect("get").kv.is_none());
    let c = store.create("/t/a", val("1")).await.expect("create");
    let u = store.update("/t/a", val("2"), c).await.expect("update");
    let got = store.get("/t/a").await.expect("get");
    let kv = got.kv.expect("present");
    assert_eq!((kv.create_revision, kv.mod_revision), (c, u));
    assert_eq!(kv.key, "/t/a");
    assert!(got.revision >= u);
}

/// Compare-and-swap update: a stale revision is a conflict carrying the current value; a missing
/// key is not found; nothing changes on failure.
pub async fn cas_update_conflict(store: &dyn Store) {
    let r1 = store.create("/t/a", val("1")).await.expect("create");
    let r2 = store.update("/t/a", val("2"), r1).await.expect("update");
    let err = store
        .update("/t/a", val("3"), r1)
        .await
        .expect_err("stale update");
    match err {
        StorageError::Conflict {
            current, expected, ..
        } => {
            assert_eq!(expected, r1);
            let current = current.expect("conflict carries the current value");
            assert_eq!((current.mod_revision, current.value), (r2, val("2")));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let err = store
        .update("/t/none", val("x"), r1)
        .await
        .expect_err("missing");
    assert!(matches!(err, StorageError::NotFound { .. }), "got {err:?}");
    let got = store.get("/t/a").await.expect("get").kv.expect("present");
    assert_eq!((got.mod_revision, got.value), (r2, val("2")));
}

/// Compare-and-swap delete: conflicts on a stale revision, not found when absent, and returns
/// the deleted value.
pub async fn cas_delete_conflict(store: &dyn Store) {
    let r1 = store.create("/t/a", val("1")).await.expect("create");
    let r2 = store.update("/t/a", val("2"), r1).await.expect("update");
    let err = store
        .delete("/t/a", Some(r1))
        .await
        .expect_err("stale delete");
    assert!(matches!(err, StorageError::Conflict { .. }), "got {err:?}");
    assert!(
        store.get("/t/a").await.expect("get").kv.is_some(),
        "failed delete removed the key"
    );
    let (rd, prev) = store.delete("/t/a", Some(r2)).await.expect("delete");
    assert!(rd > r2);
    assert_eq!((prev.value, prev.mod_revision), (val("2"), r2));
    assert!(store.get("/t/a").await.expect("get").kv.is_none());
    let err = store.delete("/t/a", None).await.expect_err("delete again");
    assert!(matches!(err, StorageError::NotFound { .. }), "got {err:?}");
    // Unconditional delete of a live key works.
    store.create("/t/b", val("b")).await.expect("create b");
    let (_, prev) = store
        .delete("/t/b", None)
        .await
        .expect("unconditional delete");
    assert_eq!(prev.value, val("b"));
}

/// A range sees exactly the keys under its prefix, in key order.
pub async fn range_prefix_is_exact(store: &dyn Store) {
    for key in ["/t/a/2", "/t/a/1", "/t/ab", "/t/a0", "/t/b/1"] {
        store.create(key, val(key)).await.expect("create");
    }
    let resp = store
        .range(RangeRequest {
            prefix: "/t/a/".into(),
            ..Default::default()
        })
        .await
        .expect("range");
    let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/t/a/1", "/t/a/2"]);
    assert!(!resp.more);
    assert_eq!(resp.remaining, 0);
    assert_eq!(resp.kvs[0].value, val("/t/a/1"));
}

/// Paging: limit, start key, `more` and `remaining`, all pages at the first page's revision
/// even when the keys change in between.
pub async fn range_paging(store: &dyn Store) {
    for i in 0..7 {
        store
            .create(&format!("/t/p/{i}"), val(&i.to_string()))
            .await
            .expect("create");
    }
    let first = store
        .range(RangeRequest {
            prefix: "/t/p/".into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .expect("page 1");
    assert_eq!(first.kvs.len(), 3);
    assert!(first.more);
    assert_eq!(first.remaining, 4);
    // A write after the first page must not show up in later pages at the same revision.
    store
        .create("/t/p/9", val("late"))
        .await
        .expect("late create");
    let five = store.get("/t/p/5").await.expect("get").kv.expect("present");
    store
        .update("/t/p/5", val("changed"), five.mod_revision)
        .await
        .expect("update");
    let mut keys: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut start = format!("{}\0", keys.last().expect("non-empty"));
    loop {
        let page = store
            .range(RangeRequest {
                prefix: "/t/p/".into(),
                start: Some(start.clone()),
                revision: Some(first.revision),
                limit: 3,
            })
            .await
            .expect("next page");
        assert_eq!(page.revision, first.revision);
        keys.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        for kv in &page.kvs {
            assert_ne!(
                kv.value,
                val("changed"),
                "page at old revision saw a later value"
            );
        }
        if !page.more {
            break;
        }
        start = format!("{}\0", keys.last().expect("non-empty"));
    }
    let want: Vec<String> = (0..7).map(|i| format!("/t/p/{i}")).collect();
    assert_eq!(keys, want);
}

/// A range at an old revision sees the values of then, including keys deleted since.
pub async fn range_at_old_revision(store: &dyn Store) {
    let ra = store.create("/t/a", val("a1")).await.expect("create a");
    let rb = store.create("/t/b", val("b1")).await.expect("create b");
    let at = store.current_revision().await.expect("revision");
    store.update("/t/a", val("a2"), ra).await.expect("update a");
    store.delete("/t/b", Some(rb)).await.expect("delete b");
    store.create("/t/c", val("c1")).await.expect("create c");
    let old = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            revision: Some(at),
            ..Default::default()
        })
        .await
        .expect("range at old revision");
    let got: Vec<_> = old
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(got, [("/t/a", val("a1")), ("/t/b", val("b1"))]);
    assert_eq!(old.revision, at);
    let now = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            ..Default::default()
        })
        .await
        .expect("range now");
    let got: Vec<_> = now
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(got, [("/t/a", val("a2")), ("/t/c", val("c1"))]);
    let future = now.revision + 1000;
    let err = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            revision: Some(future),
            ..Default::default()
        })
        .await
        .expect_err("future revision");
    assert!(
        matches!(err, StorageError::FutureRevision { .. }),
        "got {err:?}"
    );
}

/// A watch from a past revision replays exactly the events after it, in order, then continues
/// live; events outside the prefix are not delivered.
pub async fn watch_replays_from_past_revision(store: &dyn Store) {
    let r0 = store.create("/t/w/a", val("1")).await.expect("create");
    let r1 = store.update("/t/w/a", val("2"), r0).await.expect("update");
    store.create("/t/other", val("x")).await.expect("other");
    let r2 = store.create("/t/w/b", val("1")).await.expect("create b");
    let (r3, _) = store.delete("/t/w/a", Some(r1)).await.expect("delete");
    let mut watch = store.watch("/t/w/", r0).await.expect("watch");
    let events = collect_events(&mut watch, 3).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.kind.clone(), e.kv.key.as_str(), e.revision()))
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::Put, "/t/w/a", r1),
            (EventKind::Put, "/t/w/b", r2),
            (EventKind::Delete, "/t/w/a", r3),
        ]
    );
    assert!(!events[0].is_create() && events[1].is_create());
    let r4 = store
        .create("/t/w/c", val("live"))
        .await
        .expect("live create");
    let live = collect_events(&mut watch, 1).await;
    assert_eq!(
        (live[0].kv.key.as_str(), live[0].revision()),
        ("/t/w/c", r4)
    );
    assert_eq!(live[0].kv.value, val("live"));
}

/// A put event carries the key's new value and revisions, the create revision kept across
/// updates; a delete carries the key, the deletion revision and no value.
pub async fn watch_event_shapes(store: &dyn Store) {
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/t/", start).await.expect("watch");
    let r1 = store.create("/t/a", val("v1")).await.expect("create");
    let r2 = store.update("/t/a", val("v2"), r1).await.expect("update");
    let (rd, _) = store.delete("/t/a", Some(r2)).await.expect("delete");
    let events = collect_events(&mut watch, 3).await;
    let shape = |e: &Event| {
        (
            e.kind.clone(),
            e.kv.key.clone(),
            e.kv.value.clone(),
            e.kv.create_revision,
            e.kv.mod_revision,
        )
    };
    let shapes: Vec<_> = events.iter().map(shape).collect();
    assert_eq!(
        shapes,
        [
            (EventKind::Put, "/t/a".to_string(), val("v1"), r1, r1),
            (EventKind::Put, "/t/a".to_string(), val("v2"), r1, r2),
            (EventKind::Delete, "/t/a".to_string(), Bytes::new(), 0, rd),
        ]
    );
    assert!(events[0].is_create() && !events[1].is_create());
}

/// After compaction, ranges and watches from before the compacted revision fail with the typed
/// error; from the compacted revision on they still work.
pub async fn compacted_revisions_are_gone(store: &dyn Store) {
    let r1 = store.create("/t/a", val("1")).await.expect("create");
    let r2 = store.update("/t/a", val("2"), r1).await.expect("update");
    let r3 = store.update("/t/a", val("3"), r2).await.expect("update");
    store.compact(r3).await.expect("compact");
    let err = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            revision: Some(r2),
            ..Default::default()
        })
        .await
        .expect_err("range below compaction");
    assert!(matches!(err, StorageError::Compacted { .. }), "got {err:?}");
    match store.watch("/t/", r1).await {
        Err(StorageError::Compacted { .. }) => {}
        Err(other) => panic!("expected Compacted, got {other:?}"),
        Ok(mut w) => match w.next().await {
            Some(Err(StorageError::Compacted { .. })) => {}
            other => panic!("watch from a compacted revision delivered {other:?}"),
        },
    }
    let at = store
        .range(RangeRequest {
            prefix: "/t/".into(),
            revision: Some(r3),
            ..Default::default()
        })
        .await
        .expect("range at the compacted revision");
    assert_eq!(at.kvs[0].value, val("3"));
    // Watching from just before the compacted revision still gets its event.
    let mut watch = store
        .watch("/t/", r3 - 1)
        .await
        .expect("watch at compaction");
    let events = collect_events(&mut watch, 1).await;
    assert_eq!(events[0].revision(), r3);
    let r4 = store
        .update("/t/a", val("4"), r3)
        .await
        .expect("update after compaction");
    let events = collect_events(&mut watch, 1).await;
    assert_eq!(events[0].revision(), r4);
}

/// A progress request is answered with a revision that covers every write made before it.
pub async fn watch_progress(store: &dyn Store) {
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/t/quiet/", start).await.expect("watch");
    let written = store
        .create("/t/elsewhere", val("1"))
        .await
        .expect("create");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        watch.request_progress();
        match tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
            Ok(Some(Ok(WatchMessage::Progress(r)))) if r >= written => return,
            Ok(Some(Ok(WatchMessage::Progress(_)))) | Err(_) => {}
            Ok(other) => panic!("unexpected watch message {other:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress covering {written}"
        );
    }
}

/// Many concurrent writers: every acknowledged write is readable with its own revision, and all
/// revisions are distinct.
pub async fn concurrent_writers(store: std::sync::Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..20 {
                let key = format!("/t/c/{w}/{i}");
                revs.push((
                    key.clone(),
                    store.create(&key, val(&key)).await.expect("create"),
                ));
            }
            revs
        }));
    }
    let mut all: Vec<(String, Revision)> = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    let mut revs: Vec<Revision> = all.iter().map(|(_, r)| *r).collect();
    revs.sort_unstable();
    revs.dedup();
    assert_eq!(revs.len(), all.len(), "two writes share a revision");
    for (key, rev) in &all {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .kv
            .expect("acknowledged write lost");
        assert_eq!(kv.mod_revision, *rev);
    }
}

/// Declares one `#[tokio::test]` per conformance check for a backend. `$make` is an async
/// expression yielding `(Arc<dyn Store>, guard)`, where the guard keeps the backend alive.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            revisions_strictly_increase, create_existing_fails, get_reports_revisions,
            cas_update_conflict, cas_delete_conflict, range_prefix_is_exact, range_paging,
            range_at_old_revision, watch_replays_from_past_revision, watch_event_shapes,
            compacted_revisions_are_gone, watch_progress);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_writers() {
            let (store, _guard) = $make.await;
            $crate::conformance::concurrent_writers(store).await;
        }
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                $crate::conformance::$name(&*store).await;
            }
        )*
    };
}
