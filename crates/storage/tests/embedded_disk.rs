//! The embedded store's file under steady updates: compaction frees history for reuse, so the
//! file levels off instead of growing with every write, and `Options::defrag` gives the free
//! space back to the filesystem on open.

use bytes::Bytes;
use storage::embedded::{EmbeddedStore, Options};
use storage::Store;

const KEYS: usize = 200;
const VALUE_BYTES: usize = 2048;

fn value(round: usize) -> Bytes {
    Bytes::from(format!("{round:08}").repeat(VALUE_BYTES / 8))
}

fn key(i: usize) -> String {
    format!("/imagestreams/ns/s{i:04}")
}

/// One round: every key updated once. Returns the revision after it.
async fn update_all(store: &EmbeddedStore, round: usize) -> i64 {
    let mut revision = 0;
    for i in 0..KEYS {
        let current = store.get(&key(i)).await.expect("get").kv.expect("present");
        revision = store
            .update(&key(i), value(round), current.mod_revision)
            .await
            .expect("update");
    }
    revision
}

fn file_size(store: &EmbeddedStore) -> u64 {
    std::fs::metadata(store.path()).expect("store file").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_levels_off_under_updates_and_defrag_shrinks_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open");
    for i in 0..KEYS {
        store.create(&key(i), value(0)).await.expect("create");
    }
    // Like the compactor: each "interval" keeps the history of the previous one.
    let mut previous = store.current_revision().await.expect("revision");
    let mut sizes = Vec::new();
    for interval in 1..=12 {
        let mut last = previous;
        for round in 0..5 {
            last = update_all(&store, interval * 10 + round).await;
        }
        store.compact(previous).await.expect("compact");
        previous = last;
        sizes.push(file_size(&store));
    }
    // After the first few intervals the freed pages are reused: the file stops growing.
    let settled = sizes[5];
    let end = sizes[11];
    assert!(
        end <= settled + settled / 4,
        "the file kept growing under steady updates: {sizes:?}"
    );

    store.compact(previous).await.expect("compact the rest");
    let before = file_size(&store);
    store
        .close(std::time::Duration::from_secs(5))
        .await
        .expect("close");
    let options = Options {
        defrag: true,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).expect("reopen with defrag");
    let after = file_size(&store);
    assert!(
        after < before,
        "defrag did not shrink the file: {before} -> {after}"
    );
    for i in 0..KEYS {
        let kv = store.get(&key(i)).await.expect("get").kv.expect("kept");
        assert_eq!(kv.value, value(12 * 10 + 4), "{}", key(i));
    }
}
