//! High availability (issue 10): replicas of the server on one etcd serve one consistent API, and
//! the import controller runs on exactly one of them, elected through a lock record in the store
//! (`/<etcd prefix>/leases/image-apiserver-controllers`), taken over when its holder dies and
//! handed over when it stops.
//!
//! The lock record is read straight from etcd through etcd's own JSON gateway
//! (`POST /v3/kv/range`), so no etcd client is needed. A replica's identity in the record is its
//! host name and a random suffix; which replica holds it is known by starting the first one
//! alone and noting the holder before the second one starts.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use blackbox::api::{stream, streams, tag_items, Client};
use blackbox::registry::{test_image, PushFormat, Registry, RegistryOptions};
use blackbox::{start_embedded, EtcdProcess, Server};
use serde_json::{json, Value};

const NS: &str = "ha";
/// Where the replicas (`--etcd-prefix=openshift.io`) keep the controllers' lock.
const LOCK_KEY: &str = "/openshift.io/leases/image-apiserver-controllers";
const POLL: Duration = Duration::from_millis(200);
/// Short election timings: a 4 s lease, a 3 s renew deadline, a try every second.
const FAST_ELECTION: [&str; 3] = [
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=1s",
];
/// A long lease with quick tries: a handover much faster than the lease shows a release.
const LONG_LEASE: [&str; 3] = [
    "--leader-elect-lease-duration=20s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=1s",
];

/// Fixtures start processes and wait for them: off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The flags of a replica on `etcd` under the shared prefix, plus `extra`.
fn etcd_flags(etcd: &EtcdProcess, extra: &[&str]) -> Vec<String> {
    let mut flags = vec![
        "--storage-backend=etcd".to_string(),
        format!("--etcd-servers={}", etcd.endpoint),
        "--etcd-prefix=openshift.io".to_string(),
    ];
    flags.extend(extra.iter().map(|f| f.to_string()));
    flags
}

/// A replica with a data directory of its own (its own CA and admin token) under `dir`.
fn replica(dir: &Path, name: &str, flags: &[String]) -> Server {
    blocking(|| Server::start_with(&dir.join(name), flags))
}

/// The lock record as the replicas wrote it, or `None` while there is none.
async fn lock_record(etcd_endpoint: &str) -> Option<Value> {
    let engine = base64::engine::general_purpose::STANDARD;
    let http = blackbox::pki::plain_http_client();
    let resp = http
        .post(format!("{etcd_endpoint}/v3/kv/range"))
        .header("content-type", "application/json")
        .body(json!({"key": engine.encode(LOCK_KEY)}).to_string())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("etcd's range request");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("etcd's range answer");
    assert_eq!(
        status,
        200,
        "etcd's range request failed: {}",
        String::from_utf8_lossy(&body)
    );
    let body: Value = serde_json::from_slice(&body).expect("etcd's gateway answers JSON");
    let value = body["kvs"].as_array()?.first()?["value"]
        .as_str()?
        .to_string();
    let bytes = engine
        .decode(value)
        .expect("etcd's gateway sends values in base64");
    Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the lock record is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    }))
}

fn holder(record: &Value) -> String {
    record["holderIdentity"].as_str().unwrap_or("").to_string()
}

/// Polls the lock record until `check` holds or `within` passes.
async fn wait_for_lock(
    etcd_endpoint: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let record = lock_record(etcd_endpoint).await;
        if let Some(record) = &record {
            if check(record) {
                return record.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the lock record did not reach the expected state within {within:?}: {record:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A stream whose tag `v1` follows `<registry>/a/b:<tag>` (plain HTTP, hence insecure).
fn tagged_stream(name: &str, reg: &Registry, tag: &str) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {"tags": [{
            "name": "v1",
            "from": {"kind": "DockerImage", "name": format!("{}/a/b:{tag}", reg.host)},
            "importPolicy": {"insecure": true},
        }]},
    })
}

async fn create(c: &Client, body: &Value) -> Value {
    let r = c.post(&streams(NS), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

/// Polls the stream until its tag `v1` has an imported image, or panics after `within`.
async fn wait_imported(c: &Client, name: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = c.get(&stream(NS, name)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let s = r.json();
        let imported = tag_items(&s, "v1")
            .first()
            .and_then(|i| i["image"].as_str().map(|d| !d.is_empty()))
            .unwrap_or(false);
        if imported {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} was not imported within {within:?}: {s}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The registry's `GET`s of `a/b`'s manifest by `tag`: one per import of that tag.
fn manifest_gets(reg: &Registry, tag: &str) -> usize {
    reg.requests("GET", &format!("/v2/a/b/manifests/{tag}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_etcd_serve_one_api() {
    let etcd = blocking(EtcdProcess::start);
    let dir = tempfile::Builder::new()
        .prefix("image-apiserver-ha-")
        .tempdir()
        .expect("temp dir");
    let flags = etcd_flags(&etcd, &["--disable-import-controller"]);
    let a = replica(dir.path(), "a", &flags);
    let b = replica(dir.path(), "b", &flags);
    // Each replica generated its own CA and admin token.
    let (ca, cb) = (a.client(), b.client());

    let listed = cb.get(&streams(NS)).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let rv = listed.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list resourceVersion")
        .to_string();
    let mut watch = cb
        .watch(
            &format!("{}?watch=true&resourceVersion={rv}", streams(NS)),
            None,
        )
        .await;

    // A create through A reaches B's watch, under the resourceVersion A answered.
    let created = create(&ca, &json!({"metadata": {"name": "one"}})).await;
    let created_rv = created["metadata"]["resourceVersion"].clone();
    assert!(created_rv.is_string(), "{created}");
    let added = watch
        .next(Duration::from_secs(5))
        .await
        .expect("B's watch saw no event within 5 s of the create through A");
    assert_eq!(added["type"], "ADDED", "{added}");
    assert_eq!(added["object"]["metadata"]["name"], "one", "{added}");
    assert_eq!(
        added["object"]["metadata"]["resourceVersion"], created_rv,
        "{added}"
    );
    assert_eq!(
        added["object"]["metadata"]["uid"], created["metadata"]["uid"],
        "{added}"
    );

    // Names are unique across the replicas.
    let again = cb
        .post(&streams(NS), &json!({"metadata": {"name": "one"}}))
        .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(
        again.message(),
        "imagestreams.image.openshift.io \"one\" already exists"
    );

    // An update through B is read back through A at once.
    let mut current = cb.get(&stream(NS, "one")).await.json();
    assert_eq!(current["metadata"]["resourceVersion"], created_rv);
    current["metadata"]["labels"] = json!({"written-by": "b"});
    let put = cb.put(&stream(NS, "one"), &current).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let updated_rv = put.json()["metadata"]["resourceVersion"].clone();
    assert_ne!(updated_rv, created_rv);
    let read = ca.get(&stream(NS, "one")).await;
    assert_eq!(read.status, 200, "{}", read.text());
    let read = read.json();
    assert_eq!(
        read["metadata"]["resourceVersion"], updated_rv,
        "A served a stale stream right after B's update: {read}"
    );
    assert_eq!(read["metadata"]["labels"]["written-by"], "b", "{read}");

    // A PATCH through A, which starts from the stream as A last wrote it (the create), applies
    // to B's version: A's compare-and-swap loses, and A redoes the patch on what etcd holds.
    let patched = ca
        .patch(
            &stream(NS, "one"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"patched-by":"a"}}}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    let patched = patched.json();
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"written-by": "b", "patched-by": "a"}),
        "{patched}"
    );
    let patched_rv = patched["metadata"]["resourceVersion"].clone();
    assert_ne!(patched_rv, updated_rv);

    // A's write with the stale resourceVersion loses to B's.
    let mut stale = created.clone();
    stale["metadata"]["labels"] = json!({"written-by": "a"});
    let r = ca.put(&stream(NS, "one"), &stale).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.message(),
        "Operation cannot be fulfilled on imagestreams.image.openshift.io \"one\": the object \
         has been modified; please apply your changes to the latest version and try again"
    );

    // A delete through A: gone on B at once, and B's watch saw the update, the patch, then the
    // delete.
    let deleted = ca.delete(&stream(NS, "one")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let gone = cb.get(&stream(NS, "one")).await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(
        gone.message(),
        "imagestreams.image.openshift.io \"one\" not found"
    );
    let modified = watch
        .next(Duration::from_secs(5))
        .await
        .expect("B's watch saw no MODIFIED event");
    assert_eq!(modified["type"], "MODIFIED", "{modified}");
    assert_eq!(
        modified["object"]["metadata"]["resourceVersion"], updated_rv,
        "{modified}"
    );
    assert_eq!(
        modified["object"]["metadata"]["labels"]["written-by"], "b",
        "{modified}"
    );
    let modified = watch
        .next(Duration::from_secs(5))
        .await
        .expect("B's watch saw no MODIFIED event for A's patch");
    assert_eq!(modified["type"], "MODIFIED", "{modified}");
    assert_eq!(
        modified["object"]["metadata"]["resourceVersion"], patched_rv,
        "{modified}"
    );
    let removed = watch
        .next(Duration::from_secs(5))
        .await
        .expect("B's watch saw no DELETED event");
    assert_eq!(removed["type"], "DELETED", "{removed}");
    assert_eq!(removed["object"]["metadata"]["name"], "one", "{removed}");

    drop(watch);
    drop(a);
    drop(b);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_only_the_leader_imports() {
    let reg = blocking(|| Registry::start(RegistryOptions::default()));
    let img = test_image("ha-failover", "amd64", "linux");
    let digest = blocking(|| reg.push(&img, "a/b", "first", PushFormat::Oci));
    let digest_second = blocking(|| reg.push(&img, "a/b", "second", PushFormat::Oci));
    assert_eq!(digest, digest_second, "one image under both tags");
    let etcd = blocking(EtcdProcess::start);
    let dir = tempfile::Builder::new()
        .prefix("image-apiserver-ha-")
        .tempdir()
        .expect("temp dir");
    let flags = etcd_flags(&etcd, &FAST_ELECTION);

    // Alone, A takes the lock at once.
    let a = replica(dir.path(), "a", &flags);
    let record = wait_for_lock(&etcd.endpoint, Duration::from_secs(10), |r| {
        !holder(r).is_empty()
    })
    .await;
    let leader_a = holder(&record);
    assert_eq!(record["leaseDurationSeconds"], 4, "{record}");
    assert_eq!(record["leaseTransitions"], 0, "{record}");
    assert!(record["acquireTime"].is_string(), "{record}");
    assert!(record["renewTime"].is_string(), "{record}");

    let b = replica(dir.path(), "b", &flags);
    let cb = b.client();

    // Created through B, imported by the leader A: the manifest is fetched once, not once per
    // replica.
    let before = manifest_gets(&reg, "first");
    create(&cb, &tagged_stream("first", &reg, "first")).await;
    let s = wait_imported(&cb, "first", Duration::from_secs(20)).await;
    assert_eq!(tag_items(&s, "v1")[0]["image"], digest.as_str(), "{s}");
    // Time for a second controller, were one running, to fetch it as well.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        manifest_gets(&reg, "first") - before,
        1,
        "the tag was imported by more than one replica:\n{}",
        reg.log()
    );
    let record = lock_record(&etcd.endpoint).await.expect("the lock record");
    assert_eq!(
        holder(&record),
        leader_a,
        "B took a live leader's lock: {record}"
    );
    assert_eq!(record["leaseTransitions"], 0, "{record}");

    // A dies without releasing the lock.
    let killed = std::process::Command::new("kill")
        .arg("-KILL")
        .arg(a.pid().to_string())
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL failed: {killed:?}");
    let killed_at = Instant::now();
    blocking(|| drop(a));

    let before_second = manifest_gets(&reg, "second");
    create(&cb, &tagged_stream("second", &reg, "second")).await;
    // B takes over once A's lease runs out: not before, and within the lease and some tries.
    let record = wait_for_lock(&etcd.endpoint, Duration::from_secs(19), |r| {
        let h = holder(r);
        !h.is_empty() && h != leader_a
    })
    .await;
    let took = killed_at.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "B took the lock {took:?} after A died, before A's 4 s lease could have run out"
    );
    assert_eq!(record["leaseTransitions"], 1, "{record}");
    assert_eq!(record["leaseDurationSeconds"], 4, "{record}");

    // The controller now runs on B: the second stream is imported, once.
    let s = wait_imported(&cb, "second", Duration::from_secs(15)).await;
    assert_eq!(tag_items(&s, "v1")[0]["image"], digest.as_str(), "{s}");
    assert_eq!(
        manifest_gets(&reg, "second") - before_second,
        1,
        "the second tag was not fetched exactly once:\n{}",
        reg.log()
    );
    // The new leader did not fetch the already imported tag again.
    assert_eq!(
        manifest_gets(&reg, "first") - before,
        1,
        "the new leader imported an up-to-date tag again:\n{}",
        reg.log()
    );

    drop(b);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_releases_the_lock_for_an_immediate_handover() {
    let reg = blocking(|| Registry::start(RegistryOptions::default()));
    let digest = blocking(|| {
        reg.push(
            &test_image("ha-handover", "amd64", "linux"),
            "a/b",
            "third",
            PushFormat::Oci,
        )
    });
    let etcd = blocking(EtcdProcess::start);
    let dir = tempfile::Builder::new()
        .prefix("image-apiserver-ha-")
        .tempdir()
        .expect("temp dir");
    let flags = etcd_flags(&etcd, &LONG_LEASE);

    let mut a = replica(dir.path(), "a", &flags);
    let record = wait_for_lock(&etcd.endpoint, Duration::from_secs(10), |r| {
        !holder(r).is_empty()
    })
    .await;
    let leader_a = holder(&record);
    assert_eq!(record["leaseDurationSeconds"], 20, "{record}");
    let b = replica(dir.path(), "b", &flags);
    let cb = b.client();
    let record = lock_record(&etcd.endpoint).await.expect("the lock record");
    assert_eq!(
        holder(&record),
        leader_a,
        "B took a live leader's lock: {record}"
    );

    // SIGTERM: A stops its controller and releases the lock before it exits.
    let exit = blocking(|| a.terminate(Duration::from_secs(15)));
    assert!(exit.success(), "A's exit status {exit:?}");
    let record = lock_record(&etcd.endpoint).await.expect("the lock record");
    assert_ne!(
        holder(&record),
        leader_a,
        "A exited still holding the lock: {record}"
    );

    // B takes the released lock within a few tries, long before the 20 s lease would end.
    let record = wait_for_lock(&etcd.endpoint, Duration::from_secs(5), |r| {
        let h = holder(r);
        !h.is_empty() && h != leader_a
    })
    .await;
    assert_eq!(record["leaseTransitions"], 1, "{record}");
    assert_eq!(record["leaseDurationSeconds"], 20, "{record}");

    // The controller now runs on B.
    let before = manifest_gets(&reg, "third");
    create(&cb, &tagged_stream("third", &reg, "third")).await;
    let s = wait_imported(&cb, "third", Duration::from_secs(10)).await;
    assert_eq!(tag_items(&s, "v1")[0]["image"], digest.as_str(), "{s}");
    assert_eq!(manifest_gets(&reg, "third") - before, 1, "{}", reg.log());

    drop(a);
    drop(b);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_under_election_on_the_embedded_store() {
    let reg = blocking(|| Registry::start(RegistryOptions::default()));
    let digest = blocking(|| {
        reg.push(
            &test_image("ha-embedded", "amd64", "linux"),
            "a/b",
            "solo",
            PushFormat::Oci,
        )
    });
    // --leader-elect is on by default: the lock is a key of the embedded store.
    let server = start_embedded(&[]).await;
    let c = server.client();
    let before = manifest_gets(&reg, "solo");
    create(&c, &tagged_stream("solo", &reg, "solo")).await;
    let s = wait_imported(&c, "solo", Duration::from_secs(20)).await;
    let items = tag_items(&s, "v1");
    assert_eq!(items.len(), 1, "{s}");
    assert_eq!(items[0]["image"], digest.as_str(), "{s}");
    assert_eq!(
        items[0]["dockerImageReference"],
        format!("{}/a/b@{digest}", reg.host),
        "{s}"
    );
    assert_eq!(manifest_gets(&reg, "solo") - before, 1, "{}", reg.log());
}
