//! The storage conformance suite against the embedded (redb) backend.

use std::sync::Arc;

use storage::embedded::{EmbeddedStore, Options};
use storage::Store;

async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open store");
    (Arc::new(store), dir)
}

storage::conformance_tests!(make());

/// The compactor trims history to the revision it saw one round earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_trims_history_one_round_behind() {
    let (store, _dir) = make().await;
    let first = store
        .create("/t/a", bytes::Bytes::from_static(b"1"))
        .await
        .expect("create");
    // Round 1 only remembers the current revision.
    let seen = storage::compactor::compact_once(&*store, None).await;
    assert_eq!(seen, Some(first));
    let second = store
        .update("/t/a", bytes::Bytes::from_static(b"2"), first)
        .await
        .expect("update");
    // Round 2 compacts to what round 1 saw: a watch from before it is gone, one from it is not.
    let seen = storage::compactor::compact_once(&*store, seen).await;
    assert_eq!(seen, Some(second));
    assert!(matches!(
        store.watch("/t/", first - 2).await,
        Err(storage::StorageError::Compacted { .. })
    ));
    assert!(store.watch("/t/", first - 1).await.is_ok());
}
