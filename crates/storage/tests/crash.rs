//! Crash robustness of the embedded backend, in the style of etcd's robustness tests: a child
//! process writes under concurrent load and reports every acknowledged write; it is killed with
//! SIGKILL at a random moment; the directory is reopened and every acknowledged write must be
//! there, intact, with the revision it was acknowledged with. Writes that were not acknowledged
//! may or may not exist. Repeated over several rounds on the same directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use storage::embedded::{EmbeddedStore, Options};
use storage::testing::crash::{parse_counter, payload};
use storage::{EventKind, RangeRequest, Revision, Store, WatchMessage};

const ROUNDS: usize = 4;

/// What the child acknowledged before it died.
#[derive(Default)]
struct Acks {
    creates: Vec<(String, Revision)>,
    /// Highest acknowledged count (and its revision) per counter key.
    counters: HashMap<String, (u64, Revision)>,
}

fn run_child_and_kill(dir: &std::path::Path, round: usize, after: Duration) -> Acks {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-writer"))
        .arg(dir)
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut acks = Acks::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["create", key, rev] => acks
                    .creates
                    .push((key.to_string(), rev.parse().expect("rev"))),
                ["counter", key, count, rev] => {
                    let count: u64 = count.parse().expect("count");
                    let entry = acks.counters.entry(key.to_string()).or_insert((0, 0));
                    if count >= entry.0 {
                        *entry = (count, rev.parse().expect("rev"));
                    }
                }
                // The last line may be cut by the kill: it was never fully acknowledged to us.
                _ => {}
            }
        }
        acks
    });
    let started = Instant::now();
    std::thread::sleep(after);
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    let acks = reader.join().expect("reader thread");
    assert!(
        !acks.creates.is_empty(),
        "the writer acknowledged nothing in {:?}: the test would prove nothing",
        started.elapsed()
    );
    acks
}

async fn verify(dir: &std::path::Path, acks: &Acks) -> Revision {
    let store = EmbeddedStore::open(dir, Options::default()).expect("reopen after crash");
    for (key, rev) in &acks.creates {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .kv
            .unwrap_or_else(|| panic!("acknowledged create of {key} at {rev} was lost"));
        assert_eq!(kv.mod_revision, *rev, "{key} has another revision");
        assert_eq!(kv.value, payload(key), "{key} is torn or misplaced");
    }
    for (key, (count, rev)) in &acks.counters {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .kv
            .expect("acknowledged counter lost");
        let stored = parse_counter(&kv.value);
        assert!(
            stored >= *count,
            "{key}: acknowledged {count} at {rev}, found {stored}"
        );
        assert!(kv.mod_revision >= *rev);
    }
    // The log is whole: replaying it from the start gives every revision once, in order.
    let current = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/crash/", 0).await.expect("watch from 0");
    let mut next_expected = 1;
    while next_expected <= current {
        match tokio::time::timeout(Duration::from_secs(20), watch.next()).await {
            Ok(Some(Ok(WatchMessage::Events(events)))) => {
                for e in events {
                    assert_eq!(e.revision(), next_expected, "log has a gap or a repeat");
                    assert_eq!(e.kind, EventKind::Put);
                    next_expected += 1;
                }
            }
            Ok(Some(Ok(WatchMessage::Progress(_)))) => {}
            other => panic!("log replay failed at {next_expected}: {other:?}"),
        }
    }
    drop(watch);
    // Every live key is readable through a range too.
    let all = store
        .range(RangeRequest {
            prefix: "/crash/objects/".into(),
            ..Default::default()
        })
        .await
        .expect("range");
    for kv in &all.kvs {
        assert_eq!(kv.value, payload(&kv.key), "{} is torn", kv.key);
    }
    store.close(Duration::from_secs(10)).await.expect("close");
    current
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut last_revision = 0;
    for round in 0..ROUNDS {
        // Kill at different moments of the load, from early to well into it.
        let after = Duration::from_millis(300 + 250 * round as u64);
        let acks = tokio::task::spawn_blocking({
            let dir = dir.path().to_path_buf();
            move || run_child_and_kill(&dir, round, after)
        })
        .await
        .expect("child round");
        let revision = verify(dir.path(), &acks).await;
        assert!(
            revision > last_revision,
            "round {round} wrote nothing durable"
        );
        eprintln!(
            "round {round}: {} creates, {} counters acknowledged; revision {revision}",
            acks.creates.len(),
            acks.counters.len()
        );
        last_revision = revision;
    }
}
