//! Storage and watch-cache benchmark. Prints figures; asserts nothing about speed.
//!
//! Every figure is measured next to a baseline from the same run, because these machines are
//! noisy: writes through our etcd backend next to raw etcd Txns from the same program at the
//! same concurrency; memory as a ratio to the JSON it holds.
//!
//! Run with `hack/bench` (release build, starts its own etcd).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use storage::cache::{
    CacheConfig, CacheWatcher, JsonCodec, ReadRevision, Selection, WatchCache, WatchItem,
    WatchRequest, WatchStart,
};
use storage::embedded::{EmbeddedStore, Options};
use storage::etcd::{EtcdConfig, EtcdStore};
use storage::testing::EtcdProcess;
use storage::{Revision, Store};

#[derive(Parser, Debug)]
#[command(about = "Storage and watch cache benchmarks")]
struct Args {
    /// Seconds per write measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Updates for the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    updates: usize,
    /// Objects for the memory measurement.
    #[arg(long, default_value_t = 100_000)]
    objects: usize,
    /// Which parts to run (writes, fanout, memory, disk).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "writes,fanout,memory,disk"
    )]
    only: Vec<String>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("start etcd");
    println!(
        "# machine: {} cpus; etcd at {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        etcd.endpoint
    );
    if args.only.iter().any(|o| o == "writes") {
        writes(&args, &etcd).await;
    }
    if args.only.iter().any(|o| o == "fanout") {
        fanout(&args).await;
    }
    if args.only.iter().any(|o| o == "memory") {
        memory(&args, &etcd).await;
    }
    if args.only.iter().any(|o| o == "disk") {
        disk().await;
    }
}

/// The embedded store's file under the issue's steady load, compressed in time: 1,000 streams
/// updated 30,000 times per compaction interval (100 updates/s for the default 5 minutes), for
/// 12 intervals (an hour), compacting as the compactor does; then a restart with defrag.
async fn disk() {
    const KEYS: usize = 1000;
    const PER_INTERVAL: usize = 30_000;
    const CONCURRENCY: usize = 32;
    println!("## embedded store file size: {KEYS} streams, {PER_INTERVAL} updates per compaction interval");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open");
    let size =
        |s: &EmbeddedStore| std::fs::metadata(s.path()).map_or(0, |m| m.len()) as f64 / 1048576.0;
    for i in 0..KEYS {
        store
            .create(
                &format!("/imagestreams/bench/s{i}"),
                object(&format!("s{i}"), i),
            )
            .await
            .expect("create");
    }
    let live = KEYS as f64 * object("s0", 0).len() as f64 / 1048576.0;
    let mut previous = store.current_revision().await.expect("revision");
    let started = Instant::now();
    for interval in 1..=12 {
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in (t..PER_INTERVAL).step_by(CONCURRENCY) {
                        let i = (n * 7919 + interval) % KEYS;
                        let key = format!("/imagestreams/bench/s{i}");
                        loop {
                            let current = store.get(&key).await.expect("get").kv.expect("present");
                            let next = object(&format!("s{i}"), n);
                            if store.update(&key, next, current.mod_revision).await.is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
        let last = store.current_revision().await.expect("revision");
        store.compact(previous).await.expect("compact");
        previous = last;
        println!(
            "interval {interval:>2}: file {:>7.1} MiB   live data {live:.1} MiB   ({:.0} s)",
            size(&store),
            started.elapsed().as_secs_f64()
        );
    }
    store.compact(previous).await.expect("compact");
    let before = size(&store);
    store.close(Duration::from_secs(10)).await.expect("close");
    let options = Options {
        defrag: true,
        ..Options::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).expect("reopen");
    println!("after compacting everything and a restart with defrag (--embedded-defrag): {before:.1} MiB -> {:.1} MiB", size(&store));
}

/// A value of about 1 KiB of JSON, shaped like an image stream.
fn object(name: &str, n: usize) -> Bytes {
    let pad = "x".repeat(900);
    Bytes::from(format!(
        r#"{{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{{"name":"{name}","namespace":"bench","uid":"00000000-0000-0000-0000-{n:012}"}},"spec":{{"lookupPolicy":{{"local":false}},"note":"{pad}"}},"status":{{"dockerImageRepository":""}}}}"#
    ))
}

/// Runs `op` from `concurrency` tasks for `seconds`; returns completed operations per second.
async fn throughput<F, Fut>(concurrency: usize, seconds: u64, op: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, counter) = (op.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                op(n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    counter.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn writes(args: &Args, etcd: &EtcdProcess) {
    println!("\n## durable single-object creates (~1 KiB JSON each)");
    println!(
        "{:<10} {:>11} {:>12} {:>14}",
        "backend", "concurrency", "writes/s", "vs raw etcd"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let embedded = EmbeddedStore::open(dir.path(), Options::default()).expect("open embedded");
    let etcd_store =
        EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io"))
            .await
            .expect("connect etcd");
    for concurrency in [1usize, 64] {
        // Alternate raw and ours twice, so that etcd's growing database and the machine's
        // noise weigh on both alike.
        let (mut raw, mut ours_etcd) = (0.0, 0.0);
        for round in 0..2 {
            raw += raw_etcd_creates(&etcd_store, concurrency, args.seconds, round).await / 2.0;
            ours_etcd += store_creates(
                Arc::new(etcd_store.clone()),
                concurrency,
                args.seconds,
                &format!("e{concurrency}-{round}"),
            )
            .await
                / 2.0;
        }
        let ours_embedded = store_creates(
            Arc::new(embedded.clone()),
            concurrency,
            args.seconds,
            &format!("m{concurrency}"),
        )
        .await;
        println!(
            "{:<10} {:>11} {:>12.0} {:>14}",
            "raw-etcd", concurrency, raw, "100%"
        );
        println!(
            "{:<10} {:>11} {:>12.0} {:>13.0}%",
            "etcd",
            concurrency,
            ours_etcd,
            100.0 * ours_etcd / raw
        );
        println!(
            "{:<10} {:>11} {:>12.0} {:>13.0}%",
            "embedded",
            concurrency,
            ours_embedded,
            100.0 * ours_embedded / raw
        );
    }
}

/// Creates through raw etcd Txns, the same shape our etcd backend sends.
async fn raw_etcd_creates(
    store: &EtcdStore,
    concurrency: usize,
    seconds: u64,
    round: usize,
) -> f64 {
    let client = store.client();
    throughput(concurrency, seconds, move |n| {
        let mut kv = client.kv_client();
        async move {
            let key = format!("/raw/imagestreams/bench/c{concurrency}-r{round}-{n}");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, object("raw", n as usize).to_vec(), None)]);
            let resp = kv.txn(txn).await.expect("raw txn");
            assert!(resp.succeeded());
        }
    })
    .await
}

/// Creates through the `Store` trait.
async fn store_creates(store: Arc<dyn Store>, concurrency: usize, seconds: u64, tag: &str) -> f64 {
    let tag = tag.to_string();
    throughput(concurrency, seconds, move |n| {
        let (store, key) = (store.clone(), format!("/imagestreams/bench/{tag}-{n}"));
        async move {
            store
                .create(&key, object("s", n as usize))
                .await
                .expect("create");
        }
    })
    .await
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Per event: its revision and when the watcher got it (µs since the fan-out's origin); the
/// bytes of the frames it encoded; whether it was evicted.
type Received = (Vec<(Revision, u64)>, usize, bool);

/// What the watchers of a fan-out got, together.
struct Deliveries {
    /// Microseconds from each write's acknowledgement to each delivery of it.
    latencies: Vec<u64>,
    in_order: bool,
    evicted: usize,
    delivered: usize,
}

async fn fanout(args: &Args) {
    println!("\n## watch fan-out (embedded store, watch cache)");
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), Options::default()).expect("open"));
    let config = CacheConfig {
        watcher_buffer: args.updates.max(1024),
        ..CacheConfig::default()
    };
    let cache = WatchCache::new(store.clone(), "/imagestreams/", JsonCodec, config);
    assert!(cache.wait_ready(Duration::from_secs(10)).await);
    let key = "/imagestreams/bench/fan";
    let rev = store.create(key, object("fan", 0)).await.expect("create");
    cache
        .get(key, ReadRevision::Consistent)
        .await
        .expect("catch up");
    let origin = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        watchers.push(spawn_watcher(&cache, rev, args.updates, origin).await);
    }
    let start = Instant::now();
    let (written, acked) = write_updates(&store, key, rev, args.updates).await;
    let write_elapsed = start.elapsed();
    let capacity = args.watchers * args.updates;
    let acked: std::collections::HashMap<Revision, u64> = acked
        .iter()
        .map(|(r, t)| (*r, t.duration_since(origin).as_micros() as u64))
        .collect();
    let deliveries = collect_deliveries(watchers, &written, &acked, capacity).await;
    let elapsed = start.elapsed();
    print_fanout(args, deliveries, elapsed, write_elapsed);
}

/// A watcher from after `rev` on its own task, until it has seen `updates` events.
async fn spawn_watcher(
    cache: &WatchCache<JsonCodec>,
    rev: Revision,
    updates: usize,
    origin: Instant,
) -> tokio::task::JoinHandle<Received> {
    let w = cache
        .watch(WatchRequest {
            selection: Selection::prefix("/imagestreams/"),
            start: WatchStart::After(rev),
            bookmarks: false,
            initial_events_end: false,
        })
        .await
        .expect("watch");
    tokio::spawn(receive_events(w, updates, origin))
}

/// Encodes every event, as a server sending it would.
async fn receive_events(
    mut w: CacheWatcher<JsonCodec>,
    updates: usize,
    origin: Instant,
) -> Received {
    let mut seen: Vec<(Revision, u64)> = Vec::with_capacity(updates);
    let mut bytes = 0usize;
    while seen.len() < updates {
        match w.next().await {
            Some(item @ WatchItem::Event(..)) => {
                let frame = w.cache().frame(&item).expect("frame").expect("event");
                bytes += frame.len();
                if let WatchItem::Event(e, _) = item {
                    seen.push((e.revision, origin.elapsed().as_micros() as u64));
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    (seen, bytes, w.was_evicted())
}

/// Updates `key` `updates` times after `rev`: the revisions written, and when each write was
/// acknowledged.
async fn write_updates(
    store: &Arc<dyn Store>,
    key: &str,
    mut rev: Revision,
    updates: usize,
) -> (Vec<Revision>, Vec<(Revision, Instant)>) {
    let mut written = Vec::with_capacity(updates);
    let mut acked = Vec::new();
    for n in 1..=updates {
        rev = store
            .update(key, object("fan", n), rev)
            .await
            .expect("update");
        acked.push((rev, Instant::now()));
        written.push(rev);
    }
    (written, acked)
}

async fn collect_deliveries(
    watchers: Vec<tokio::task::JoinHandle<Received>>,
    written: &[Revision],
    acked: &std::collections::HashMap<Revision, u64>,
    capacity: usize,
) -> Deliveries {
    let mut latencies = Vec::with_capacity(capacity);
    let (mut in_order, mut evicted, mut delivered) = (true, 0, 0usize);
    for w in watchers {
        let (seen, _bytes, was_evicted) = w.await.expect("watcher");
        evicted += usize::from(was_evicted);
        delivered += seen.len();
        let revs: Vec<Revision> = seen.iter().map(|(r, _)| *r).collect();
        in_order &= revs.as_slice() == written;
        for (r, at) in seen {
            latencies.push(at.saturating_sub(acked[&r]));
        }
    }
    Deliveries {
        latencies,
        in_order,
        evicted,
        delivered,
    }
}

fn print_fanout(args: &Args, deliveries: Deliveries, elapsed: Duration, write_elapsed: Duration) {
    let Deliveries {
        mut latencies,
        in_order,
        evicted,
        delivered,
    } = deliveries;
    latencies.sort_unstable();
    println!(
        "watchers={} updates={} delivered={} elapsed={:.2}s (writes took {:.2}s) deliveries/s={:.0}",
        args.watchers,
        args.updates,
        delivered,
        elapsed.as_secs_f64(),
        write_elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64()
    );
    println!(
        "delivery latency after the write's acknowledgement: p50={:.2}ms p99={:.2}ms max={:.2}ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!("every watcher saw every event in order: {in_order}; evicted watchers: {evicted}");
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn memory(args: &Args, etcd: &EtcdProcess) {
    println!(
        "\n## watch cache memory ({} objects of ~1 KiB JSON, loaded from etcd)",
        args.objects
    );
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint.clone()], "memory"))
        .await
        .expect("connect etcd");
    // Load through 64 concurrent writers; the objects live in etcd, not in this process.
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, next, total) = (store.clone(), next.clone(), args.objects as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let name = format!("stream-{n:07}");
                store
                    .create(
                        &format!("/imagestreams/bench/{name}"),
                        object(&name, n as usize),
                    )
                    .await
                    .expect("load");
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
    let before = rss_bytes();
    let store: Arc<dyn Store> = Arc::new(store);
    let cache = WatchCache::new(store, "/imagestreams/", JsonCodec, CacheConfig::default());
    assert!(
        cache.wait_ready(Duration::from_secs(300)).await,
        "cache did not load"
    );
    let list = cache
        .list(storage::cache::ListRequest {
            selection: Selection::prefix("/imagestreams/"),
            start: None,
            limit: 0,
            revision: ReadRevision::Any,
        })
        .await
        .expect("list");
    let json_bytes: usize = list.items.iter().map(|(_, o)| o.json.len()).sum();
    drop(list);
    let after = rss_bytes();
    let delta = after.saturating_sub(before);
    println!(
        "objects={} json={:.1} MiB rss_before={:.1} MiB rss_after={:.1} MiB cache_rss={:.1} MiB ratio={:.2}x (target <= 2.5x)",
        cache.len(),
        json_bytes as f64 / 1048576.0,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        delta as f64 / 1048576.0,
        delta as f64 / json_bytes as f64
    );
}
