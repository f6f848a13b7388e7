//! The watch cache over both backends: reads at a revision, consistent reads, paging, fan-out,
//! slow-watcher eviction, bookmarks, watch-list, filter transitions and the too-old error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use storage::cache::{
    CacheConfig, CacheError, Codec, CodecError, Decoded, Filter, ListRequest, ReadRevision,
    Selection, Source, WatchCache, WatchItem, WatchRequest, WatchStart,
};
use storage::embedded::{EmbeddedStore, Options};
use storage::etcd::{EtcdConfig, EtcdStore};
use storage::testing::EtcdProcess;
use storage::{Revision, Store};

/// A codec whose attribute is the `app` label, so filters can be tested.
#[derive(Clone, Copy)]
struct LabelCodec;

impl Codec for LabelCodec {
    type Attrs = Option<String>;

    fn decode(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<Decoded<Self::Attrs>, CodecError> {
        let json = storage::cache::codec::set_resource_version(key, value, revision)?;
        let parsed: Value = serde_json::from_slice(&json).map_err(|source| CodecError::Json {
            key: key.into(),
            source,
        })?;
        let app = parsed["metadata"]["labels"]["app"]
            .as_str()
            .map(str::to_string);
        Ok(Decoded { json, attrs: app })
    }
}

fn object(name: &str, app: &str, n: u64) -> Bytes {
    let v = json!({"kind": "Thing", "metadata": {"name": name, "labels": {"app": app}}, "spec": {"n": n}});
    Bytes::from(serde_json::to_vec(&v).expect("json"))
}

fn fast_config() -> CacheConfig {
    CacheConfig {
        fresh_read_timeout: Duration::from_millis(300),
        bookmark_interval: Duration::from_millis(100),
        ..CacheConfig::default()
    }
}

async fn cache_on(store: Arc<dyn Store>, config: CacheConfig) -> WatchCache<LabelCodec> {
    let cache = WatchCache::new(store, "/things/", LabelCodec, config);
    assert!(
        cache.wait_ready(Duration::from_secs(10)).await,
        "cache never loaded"
    );
    cache
}

/// Waits until the cache has applied `revision` (events arrive asynchronously).
async fn catch_up(cache: &WatchCache<LabelCodec>, revision: Revision) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.revision() < revision {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache stuck below {revision}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn parse(json: &[u8]) -> Value {
    serde_json::from_slice(json).expect("served JSON parses")
}

fn app_is(app: &'static str) -> Filter<Option<String>> {
    Arc::new(move |a: &Option<String>| a.as_deref() == Some(app))
}

/// Reads the next item with a timeout.
async fn next_item(
    w: &mut storage::cache::CacheWatcher<LabelCodec>,
) -> Option<WatchItem<Option<String>>> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch item in time")
}

/// The JSON frame of the next event-like item, skipping bookmarks.
async fn next_frame(w: &mut storage::cache::CacheWatcher<LabelCodec>) -> Value {
    loop {
        let item = next_item(w).await.expect("watch ended");
        if let Some(frame) = w.cache().frame(&item).expect("frame") {
            return parse(&frame);
        }
    }
}

async fn loads_existing_objects_and_follows_writes(store: Arc<dyn Store>) {
    let r1 = store
        .create("/things/a", object("a", "web", 1))
        .await
        .expect("create");
    store
        .create("/other/x", object("x", "web", 1))
        .await
        .expect("create other");
    let cache = cache_on(store.clone(), fast_config()).await;
    let (got, _, _) = cache
        .get("/things/a", ReadRevision::Any)
        .await
        .expect("get");
    let got = got.expect("cached");
    assert_eq!(got.revision, r1);
    assert_eq!(
        parse(&got.json)["metadata"]["resourceVersion"],
        r1.to_string()
    );
    assert!(
        cache
            .get("/other/x", ReadRevision::Any)
            .await
            .expect("get")
            .0
            .is_none(),
        "outside prefix"
    );

    let r2 = store
        .update("/things/a", object("a", "web", 2), r1)
        .await
        .expect("update");
    store
        .create("/things/b", object("b", "db", 1))
        .await
        .expect("create b");
    // A consistent read right after the writes must see them, served from the cache.
    let list = cache
        .list(ListRequest {
            selection: Selection::prefix("/things/"),
            start: None,
            limit: 0,
            revision: ReadRevision::Consistent,
        })
        .await
        .expect("consistent list");
    let names: Vec<_> = list.items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["/things/a", "/things/b"]);
    assert_eq!(list.items[0].1.revision, r2);
    if store.reliable_progress() {
        // Only a store whose progress can be trusted lets the cache prove it is current.
        assert_eq!(list.source, Source::Cache);
    }
    assert!(list.revision >= r2);
}

async fn reads_at_exact_and_future_revisions(store: Arc<dyn Store>) {
    let r1 = store
        .create("/things/a", object("a", "web", 1))
        .await
        .expect("create");
    let cache = cache_on(store.clone(), fast_config()).await;
    let before = store.current_revision().await.expect("revision");
    store
        .update("/things/a", object("a", "web", 2), r1)
        .await
        .expect("update");
    let rb = store
        .create("/things/b", object("b", "web", 1))
        .await
        .expect("create b");
    catch_up(&cache, rb).await;
    // Exact at an older revision comes from the store, with the values of then.
    let old = cache
        .list(ListRequest {
            selection: Selection::prefix("/things/"),
            start: None,
            limit: 0,
            revision: ReadRevision::Exact(before),
        })
        .await
        .expect("exact list");
    assert_eq!(old.revision, before);
    assert_eq!(old.items.len(), 1);
    assert_eq!(parse(&old.items[0].1.json)["spec"]["n"], 1);
    assert_eq!(old.source, Source::Store);
    // Not older than a revision the store has not reached: TooLarge after the bound.
    let now = store.current_revision().await.expect("revision");
    let err = cache
        .get("/things/a", ReadRevision::NotOlderThan(now + 1000))
        .await
        .expect_err("future");
    assert!(matches!(err, CacheError::TooLarge { .. }), "got {err:?}");
    // Not older than the current revision: served from the cache once it caught up.
    let (got, rev, source) = cache
        .get("/things/a", ReadRevision::NotOlderThan(now))
        .await
        .expect("fresh get");
    assert!(rev >= now);
    if store.reliable_progress() {
        assert_eq!(source, Source::Cache);
    }
    assert_eq!(parse(&got.expect("present").json)["spec"]["n"], 2);
}

async fn pages_from_memory(store: Arc<dyn Store>) {
    for i in 0..10 {
        let app = if i % 2 == 0 { "even" } else { "odd" };
        store
            .create(&format!("/things/{i:02}"), object(&i.to_string(), app, i))
            .await
            .expect("create");
    }
    let cache = cache_on(store, fast_config()).await;
    let page = cache
        .list(ListRequest {
            selection: Selection::prefix("/things/"),
            start: None,
            limit: 4,
            revision: ReadRevision::Consistent,
        })
        .await
        .expect("page 1");
    assert_eq!(page.items.len(), 4);
    assert!(page.more);
    assert_eq!(page.remaining, 6);
    let next = cache
        .list(ListRequest {
            selection: Selection::prefix("/things/"),
            start: Some(format!("{}\0", page.items[3].0)),
            limit: 4,
            revision: ReadRevision::Exact(page.revision),
        })
        .await
        .expect("page 2");
    let keys: Vec<_> = next.items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["/things/04", "/things/05", "/things/06", "/things/07"]
    );
    let filtered = cache
        .list(ListRequest {
            selection: Selection {
                prefix: "/things/".into(),
                filter: Some(app_is("odd")),
            },
            start: None,
            limit: 3,
            revision: ReadRevision::Any,
        })
        .await
        .expect("filtered");
    let keys: Vec<_> = filtered.items.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/things/01", "/things/03", "/things/05"]);
    assert!(filtered.more);
}

async fn fans_out_to_many_watchers_in_order(store: Arc<dyn Store>) {
    let cache = cache_on(store.clone(), fast_config()).await;
    let start = cache.revision();
    let mut watchers = Vec::new();
    for _ in 0..200 {
        watchers.push(
            cache
                .watch(WatchRequest::after(Selection::prefix("/things/"), start))
                .await
                .expect("watch"),
        );
    }
    let mut revs = Vec::new();
    let mut rev = store
        .create("/things/a", object("a", "web", 0))
        .await
        .expect("create");
    revs.push(rev);
    for n in 1..50 {
        rev = store
            .update("/things/a", object("a", "web", n), rev)
            .await
            .expect("update");
        revs.push(rev);
    }
    let mut first_frames: Option<Vec<Bytes>> = None;
    for w in &mut watchers {
        let mut frames = Vec::new();
        let mut seen = Vec::new();
        while seen.len() < revs.len() {
            let item = next_item(w).await.expect("watch open");
            if let WatchItem::Event(event, _) = &item {
                seen.push(event.revision);
                frames.push(w.cache().frame(&item).expect("frame").expect("event frame"));
            }
        }
        assert_eq!(seen, revs, "a watcher missed or reordered events");
        match &first_frames {
            None => first_frames = Some(frames),
            Some(first) => {
                // Each event is encoded once: every watcher gets the same bytes.
                for (a, b) in first.iter().zip(&frames) {
                    assert_eq!(a.as_ptr(), b.as_ptr(), "frame encoded twice");
                }
            }
        }
    }
    let first = parse(&first_frames.expect("frames")[0]);
    assert_eq!(first["type"], "ADDED");
    assert_eq!(
        first["object"]["metadata"]["resourceVersion"],
        revs[0].to_string()
    );
}

async fn evicts_a_slow_watcher_without_stalling_others(store: Arc<dyn Store>) {
    const BUFFER: usize = 16;
    const WRITES: usize = 40;
    // Room for a burst: a store that falls behind (a loaded machine) delivers several events
    // in one response, and a burst larger than the buffer evicts even a watcher that reads.
    let config = CacheConfig {
        watcher_buffer: BUFFER,
        ..fast_config()
    };
    let cache = cache_on(store.clone(), config).await;
    let start = cache.revision();
    let request = || WatchRequest::after(Selection::prefix("/things/"), start);
    let mut slow = cache.watch(request()).await.expect("slow watch");
    let mut fast = cache.watch(request()).await.expect("fast watch");
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < WRITES {
            match next_item(&mut fast).await {
                Some(WatchItem::Event(..)) => n += 1,
                Some(_) => {}
                None => panic!("fast watcher was closed after {n} events"),
            }
        }
        n
    });
    for i in 0..WRITES {
        store
            .create(&format!("/things/{i}"), object("x", "web", i as u64))
            .await
            .expect("create");
        // Give the fast reader a chance to drain between writes, as a healthy client would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reader.await.expect("reader"), WRITES);
    assert!(
        slow.was_evicted(),
        "a watcher that never read was not evicted"
    );
    // The slow watcher gets what was buffered, then its stream ends.
    let mut buffered = 0;
    while let Some(item) = next_item(&mut slow).await {
        assert!(matches!(item, WatchItem::Event(..)));
        buffered += 1;
    }
    assert_eq!(buffered, BUFFER);
}

async fn sends_bookmarks_only_when_asked(store: Arc<dyn Store>) {
    let cache = cache_on(store.clone(), fast_config()).await;
    let start = cache.revision();
    let mut with = cache
        .watch(WatchRequest {
            selection: Selection::prefix("/things/"),
            start: WatchStart::After(start),
            bookmarks: true,
            initial_events_end: false,
        })
        .await
        .expect("watch");
    let mut without = cache
        .watch(WatchRequest::after(Selection::prefix("/things/"), start))
        .await
        .expect("watch");
    let written = store
        .create("/things/a", object("a", "web", 1))
        .await
        .expect("create");
    let mut saw_event = false;
    loop {
        match next_item(&mut with).await.expect("open") {
            WatchItem::Event(e, _) => {
                assert_eq!(e.revision, written);
                saw_event = true;
            }
            WatchItem::Bookmark(r) if saw_event => {
                assert!(
                    r >= written,
                    "bookmark {r} behind an event already sent ({written})"
                );
                break;
            }
            WatchItem::Bookmark(r) => assert!(r < written || saw_event),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        next_item(&mut without).await,
        Some(WatchItem::Event(..))
    ));
    let quiet = tokio::time::timeout(Duration::from_millis(350), without.next()).await;
    assert!(quiet.is_err(), "a watcher that did not ask got {:?}", quiet);
}

async fn too_old_outside_the_window(store: Arc<dyn Store>) {
    let config = CacheConfig {
        history_capacity: 5,
        ..fast_config()
    };
    let cache = cache_on(store.clone(), config).await;
    let start = cache.revision();
    let mut revs = Vec::new();
    for i in 0..12 {
        revs.push(
            store
                .create(&format!("/things/{i}"), object("x", "web", i as u64))
                .await
                .expect("create"),
        );
    }
    catch_up(&cache, revs[11]).await;
    let request = |after| WatchRequest::after(Selection::prefix("/things/"), after);
    let err = cache
        .watch(request(start))
        .await
        .err()
        .expect("start is outside the window");
    match err {
        CacheError::TooOld { requested, oldest } => {
            assert_eq!(requested, start);
            assert_eq!(oldest, revs[7]);
        }
        other => panic!("expected TooOld, got {other:?}"),
    }
    // The last five are still there.
    let mut w = cache
        .watch(request(revs[6]))
        .await
        .expect("inside the window");
    for want in &revs[7..] {
        match next_item(&mut w).await.expect("open") {
            WatchItem::Event(e, _) => assert_eq!(e.revision, *want),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn watch_list_sends_state_then_end_bookmark(store: Arc<dyn Store>) {
    store
        .create("/things/a", object("a", "web", 1))
        .await
        .expect("create a");
    store
        .create("/things/b", object("b", "db", 1))
        .await
        .expect("create b");
    let cache = cache_on(store.clone(), fast_config()).await;
    let mut w = cache
        .watch(WatchRequest {
            selection: Selection {
                prefix: "/things/".into(),
                filter: Some(app_is("web")),
            },
            start: WatchStart::Snapshot(ReadRevision::Consistent),
            bookmarks: true,
            initial_events_end: true,
        })
        .await
        .expect("watch-list");
    let first = next_frame(&mut w).await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );
    let snapshot_rev = match next_item(&mut w).await.expect("open") {
        WatchItem::InitialEventsEnd(r) => r,
        other => panic!("expected the end bookmark, got {other:?}"),
    };
    assert!(snapshot_rev >= cache.revision().min(snapshot_rev));
    // b becomes web: ADDED for this watcher; a stops being web: DELETED with a's last state.
    let b = store.get("/things/b").await.expect("get").kv.expect("b");
    let rb = store
        .update("/things/b", object("b", "web", 2), b.mod_revision)
        .await
        .expect("relabel b");
    let added = next_frame(&mut w).await;
    assert_eq!(added["type"], "ADDED");
    assert_eq!(
        added["object"]["metadata"]["resourceVersion"],
        rb.to_string()
    );
    let a = store.get("/things/a").await.expect("get").kv.expect("a");
    let ra = store
        .update("/things/a", object("a", "db", 2), a.mod_revision)
        .await
        .expect("relabel a");
    let deleted = next_frame(&mut w).await;
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(
        deleted["object"]["metadata"]["labels"]["app"], "web",
        "DELETED carries the last matching state"
    );
    assert_eq!(
        deleted["object"]["metadata"]["resourceVersion"],
        ra.to_string()
    );
    // A real delete carries the deletion revision.
    let b = store.get("/things/b").await.expect("get").kv.expect("b");
    let (rd, _) = store
        .delete("/things/b", Some(b.mod_revision))
        .await
        .expect("delete b");
    let gone = next_frame(&mut w).await;
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(
        gone["object"]["metadata"]["resourceVersion"],
        rd.to_string()
    );
}

macro_rules! cache_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make.await;
                super::$name(store).await;
            }
        )*
    };
}

macro_rules! all_cache_tests {
    ($make:expr) => {
        cache_tests!($make;
            loads_existing_objects_and_follows_writes, reads_at_exact_and_future_revisions,
            pages_from_memory, fans_out_to_many_watchers_in_order,
            evicts_a_slow_watcher_without_stalling_others, sends_bookmarks_only_when_asked,
            too_old_outside_the_window, watch_list_sends_state_then_end_bookmark);
    };
}

mod embedded {
    use super::*;

    async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open");
        (Arc::new(store), dir)
    }

    all_cache_tests!(make());
}

/// A store on its own etcd of the version `start` runs.
async fn on_etcd(start: fn() -> EtcdProcess) -> (Arc<dyn Store>, EtcdProcess) {
    let etcd = tokio::task::spawn_blocking(start).await.expect("etcd");
    let store = EtcdStore::connect(EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io"))
        .await
        .expect("connect");
    (Arc::new(store), etcd)
}

mod etcd {
    use super::*;

    all_cache_tests!(on_etcd(EtcdProcess::start));
}

/// The same suite on etcd 3.5, whose progress notifications are trusted (detected from its
/// version): consistent reads are answered from the cache.
mod etcd35 {
    use super::*;

    async fn make() -> (Arc<dyn Store>, EtcdProcess) {
        let (store, etcd) = on_etcd(EtcdProcess::start_v35).await;
        assert!(store.reliable_progress(), "etcd 3.5 progress is trusted");
        (store, etcd)
    }

    all_cache_tests!(make());
}
