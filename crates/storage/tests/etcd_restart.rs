//! The etcd backend's watch survives an etcd restart: it reconnects and resumes from the last
//! revision it delivered, without losing or repeating events; and a revision compacted while
//! it was away is reported as the typed error.

use std::time::Duration;

use bytes::Bytes;
use storage::conformance::collect_events;
use storage::etcd::{EtcdConfig, EtcdStore};
use storage::testing::EtcdProcess;
use storage::{StorageError, Store, WatchMessage};

async fn start() -> (EtcdProcess, EtcdStore) {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io");
    let store = EtcdStore::connect(config).await.expect("connect");
    (etcd, store)
}

/// Retries a write until etcd answers again after a restart.
async fn create_retrying(store: &EtcdStore, key: &str) -> i64 {
    for _ in 0..100 {
        match store.create(key, Bytes::from_static(b"{}")).await {
            Ok(r) => return r,
            Err(StorageError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("create {key}: {e}"),
        }
    }
    panic!("etcd did not come back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_etcd_restart() {
    let (mut etcd, store) = start().await;
    let r0 = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/imagestreams/", r0).await.expect("watch");
    let r1 = store
        .create("/imagestreams/ns/a", Bytes::from_static(b"{}"))
        .await
        .expect("create a");
    assert_eq!(collect_events(&mut watch, 1).await[0].revision(), r1);

    let _etcd = tokio::task::spawn_blocking(move || {
        etcd.restart();
        etcd
    })
    .await
    .expect("restart");
    let r2 = create_retrying(&store, "/imagestreams/ns/b").await;
    let r3 = create_retrying(&store, "/imagestreams/ns/c").await;
    let events = collect_events(&mut watch, 2).await;
    let revs: Vec<_> = events.iter().map(|e| e.revision()).collect();
    assert_eq!(revs, [r2, r3], "events lost or repeated across the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_compaction_that_happened_while_away() {
    let (mut etcd, store) = start().await;
    let r0 = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/images/", r0).await.expect("watch");
    let r1 = store
        .create("/images/a", Bytes::from_static(b"{}"))
        .await
        .expect("create");
    assert_eq!(collect_events(&mut watch, 1).await[0].revision(), r1);

    // Take etcd away, then bring it back and compact past everything before the watch resumes.
    etcd = tokio::task::spawn_blocking(move || {
        etcd.stop();
        etcd
    })
    .await
    .expect("stop");
    let other = tokio::spawn({
        let store = store.clone();
        async move {
            let mut last = 0;
            for i in 0..5 {
                last = create_retrying(&store, &format!("/other/{i}")).await;
            }
            store.compact(last).await.expect("compact");
        }
    });
    etcd = tokio::task::spawn_blocking(move || {
        etcd.start_again();
        etcd
    })
    .await
    .expect("start again");
    other.await.expect("writer");
    // The watch resumed either after the compaction (then it must say its events are gone) or
    // before it (then nothing was missed, and the next write under its prefix arrives).
    let next = tokio::time::timeout(Duration::from_secs(2), watch.next()).await;
    match next {
        Ok(Some(Err(StorageError::Compacted { .. }))) => {}
        Err(_) | Ok(Some(Ok(WatchMessage::Progress(_)))) => {
            let r2 = create_retrying(&store, "/images/b").await;
            let events = collect_events(&mut watch, 1).await;
            assert_eq!(events[0].revision(), r2);
        }
        other => panic!("unexpected watch outcome {other:?}"),
    }
    drop(etcd);
}
