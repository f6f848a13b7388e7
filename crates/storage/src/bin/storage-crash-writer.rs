//! The child process of the crash test (`tests/crash.rs`): writes to an embedded store under
//! concurrent load and prints one line per acknowledged write, until it is killed.
//!
//! Output lines: `create <key> <revision>` and `counter <key> <count> <revision>`. A line is
//! printed (and flushed) only after the store acknowledged the write, so every line is a promise
//! the reopened store must keep.

use std::io::Write;
use std::sync::{Arc, Mutex};

use storage::embedded::{EmbeddedStore, Options};
use storage::testing::crash::{counter_value, payload};
use storage::{StorageError, Store};

const WRITERS: usize = 32;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(round)) = (args.next(), args.next()) else {
        eprintln!("usage: storage-crash-writer <data-dir> <round>");
        std::process::exit(2);
    };
    let store = EmbeddedStore::open(&dir, Options::default()).expect("open store");
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, out, round) = (store.clone(), out.clone(), round.clone());
        tasks.push(tokio::spawn(async move {
            write_forever(store, out, &round, w).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn write_forever(
    store: EmbeddedStore,
    out: Arc<Mutex<std::io::Stdout>>,
    round: &str,
    w: usize,
) {
    let counter_key = format!("/crash/counters/{w}");
    for i in 0u64.. {
        let key = format!("/crash/objects/{round}/{w}/{i}");
        let rev = store.create(&key, payload(&key)).await.expect("create");
        emit(&out, &format!("create {key} {rev}"));
        // Every fourth write bumps this writer's counter with compare-and-swap.
        if i % 4 == 0 {
            let current = store.get(&counter_key).await.expect("get counter").kv;
            let result = match &current {
                None => store
                    .create(&counter_key, counter_value(0))
                    .await
                    .map(|r| (0, r)),
                Some(kv) => {
                    let next = storage::testing::crash::parse_counter(&kv.value) + 1;
                    store
                        .update(&counter_key, counter_value(next), kv.mod_revision)
                        .await
                        .map(|r| (next, r))
                }
            };
            match result {
                Ok((count, rev)) => emit(&out, &format!("counter {counter_key} {count} {rev}")),
                Err(StorageError::Conflict { .. } | StorageError::AlreadyExists { .. }) => {}
                Err(e) => panic!("counter write: {e}"),
            }
        }
    }
}

fn emit(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
