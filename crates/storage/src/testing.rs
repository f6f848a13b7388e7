//! Test support shared by this crate's tests, the in-process harnesses, the black-box tests and
//! the benchmarks: a real etcd process on a free loopback port, free-port discovery, and a
//! store that injects faults.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    GetResponse, KeyValue, RangeRequest, RangeResponse, Result, Revision, StorageError, Store,
    WatchStream,
};

/// A free TCP port on 127.0.0.1 (the listener is closed before returning, so a tiny race with
/// other processes remains; the callers retry startup on failure).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A store with faults on demand, around a real one: the next `conflict(n)` updates lose their
/// compare-and-swap, the next `race(n)` updates lose it to a real concurrent write (the key is
/// rewritten, so its revision moves on), the next `collide(n)` creates find the key taken.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    conflicts: AtomicUsize,
    races: AtomicUsize,
    collisions: AtomicUsize,
    gets: AtomicUsize,
    revision_calls: AtomicUsize,
    revisions_in_flight: AtomicUsize,
    most_revisions_in_flight: AtomicUsize,
    revision_delay_ms: std::sync::atomic::AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            conflicts: AtomicUsize::new(0),
            races: AtomicUsize::new(0),
            collisions: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
            revision_calls: AtomicUsize::new(0),
            revisions_in_flight: AtomicUsize::new(0),
            most_revisions_in_flight: AtomicUsize::new(0),
            revision_delay_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Makes every `current_revision` answer `delay` after reading the revision (a store far
    /// away).
    pub fn slow_revisions(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.revision_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many times `get` was asked.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    /// How many times `current_revision` was asked.
    pub fn revision_calls(&self) -> usize {
        self.revision_calls.load(Ordering::SeqCst)
    }

    /// The most `current_revision` calls that were on their way at once.
    pub fn most_revisions_in_flight(&self) -> usize {
        self.most_revisions_in_flight.load(Ordering::SeqCst)
    }

    pub fn race(&self, updates: usize) {
        self.races.store(updates, Ordering::SeqCst);
    }

    pub fn conflict(&self, updates: usize) {
        self.conflicts.store(updates, Ordering::SeqCst);
    }

    pub fn collide(&self, creates: usize) {
        self.collisions.store(creates, Ordering::SeqCst);
    }

    /// The injected conflicts and races not yet taken.
    pub fn conflicts_left(&self) -> usize {
        self.conflicts.load(Ordering::SeqCst) + self.races.load(Ordering::SeqCst)
    }

    /// Another writer's write of `key` (its value unchanged).
    async fn rewrite(&self, key: &str) -> Result<()> {
        if let Some(kv) = self.inner.get(key).await?.kv {
            self.inner.update(key, kv.value, kv.mod_revision).await?;
        }
        Ok(())
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &str) -> Result<GetResponse> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.inner.range(req).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        if take_one(&self.collisions) {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        if take_one(&self.conflicts) {
            return Err(StorageError::Conflict {
                key: key.to_string(),
                expected,
                current: None,
            });
        }
        if take_one(&self.races) {
            self.rewrite(key).await?;
        }
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.inner.watch(prefix, after).await
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.revision_calls.fetch_add(1, Ordering::SeqCst);
        let in_flight = self.revisions_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_revisions_in_flight
            .fetch_max(in_flight, Ordering::SeqCst);
        // The revision is read when the call arrives and answered after the delay, as a reply
        // travels back from a store far away: writes acknowledged meanwhile are not in it.
        let revision = self.inner.current_revision().await;
        let delay = self.revision_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        self.revisions_in_flight.fetch_sub(1, Ordering::SeqCst);
        revision
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }
}

/// `$ETCD35_BIN`, or where `hack/lib.sh` unpacks it (for tests run without hack/test).
pub fn etcd35_binary() -> String {
    if let Ok(binary) = std::env::var("ETCD35_BIN") {
        return binary;
    }
    let unpacked = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/etcd-3.5/root/usr/bin/etcd"
    );
    assert!(
        std::path::Path::new(unpacked).exists(),
        "no etcd 3.5: run the tests through hack/test, which fetches it (or set ETCD35_BIN)"
    );
    unpacked.to_string()
}

/// A throwaway etcd server (Debian's `etcd-server`), killed and wiped on drop.
pub struct EtcdProcess {
    child: Child,
    binary: String,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl EtcdProcess {
    /// The etcd process's id, to read its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts etcd and waits until it answers. Panics with the reason when it cannot: tests
    /// that need etcd must not silently skip.
    pub fn start() -> EtcdProcess {
        let binary = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_string());
        Self::start_binary(binary)
    }

    /// Starts the etcd 3.5 that `hack/lib.sh` unpacks from Debian trixie (`$ETCD35_BIN`),
    /// whose watch progress can be trusted, unlike Debian 12's 3.4.23.
    pub fn start_v35() -> EtcdProcess {
        Self::start_binary(etcd35_binary())
    }

    /// Starts the etcd server `binary`.
    pub fn start_binary(binary: String) -> EtcdProcess {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-etcd-")
            .tempdir()
            .expect("creating a temp dir for etcd");
        let data_dir = dir.path().join("data");
        for attempt in 0..5 {
            let (client_port, peer_port) = (free_port(), free_port());
            let mut child = spawn_etcd(&binary, &data_dir, client_port, peer_port);
            let endpoint = format!("http://127.0.0.1:{client_port}");
            if wait_healthy(&mut child, client_port, Duration::from_secs(20)) {
                return EtcdProcess {
                    child,
                    binary,
                    _dir: dir,
                    endpoint,
                    data_dir,
                    client_port,
                    peer_port,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&data_dir);
            eprintln!("etcd did not start (attempt {attempt}); retrying on other ports");
        }
        panic!("could not start {binary}: is etcd-server installed? (hack/test installs it)");
    }

    /// Kills etcd (SIGKILL) and starts it again on the same ports and data, for restart tests.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_etcd(
            &self.binary,
            &self.data_dir,
            self.client_port,
            self.peer_port,
        );
        assert!(
            wait_healthy(&mut self.child, self.client_port, Duration::from_secs(20)),
            "etcd did not come back after a restart"
        );
    }

    /// Kills etcd and starts `binary` (another version) on the same ports and data.
    pub fn restart_with(&mut self, binary: String) {
        self.binary = binary;
        self.restart();
    }

    /// Kills etcd, keeping its data.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts etcd again after [`EtcdProcess::stop`] without waiting for it.
    pub fn start_again(&mut self) {
        self.child = spawn_etcd(
            &self.binary,
            &self.data_dir,
            self.client_port,
            self.peer_port,
        );
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_etcd(binary: &str, data_dir: &std::path::Path, client: u16, peer: u16) -> Child {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    Command::new(binary)
        .arg("--name=test")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=test={peer_url}"))
        .arg("--log-level=error")
        .arg("--logger=zap")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {binary}: {e} (is etcd-server installed?)"))
}

fn wait_healthy(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if health_ok(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// etcd's `/health` over plain HTTP/1.1 (no client library needed).
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if conn.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// Values the crash test writes and checks: large enough to span pages, self-describing so a
/// torn or misplaced value is detected.
pub mod crash {
    use bytes::Bytes;

    /// `key` repeated to about 2 KiB, inside a JSON object.
    pub fn payload(key: &str) -> Bytes {
        let body = key.repeat(2048 / key.len().max(1) + 1);
        Bytes::from(format!("{{\"key\":\"{key}\",\"body\":\"{body}\"}}"))
    }

    pub fn counter_value(n: u64) -> Bytes {
        Bytes::from(format!("{{\"count\":{n}}}"))
    }

    /// The count of a counter value; panics on anything else (a torn value).
    pub fn parse_counter(value: &[u8]) -> u64 {
        let text = std::str::from_utf8(value).expect("counter is UTF-8");
        text.strip_prefix("{\"count\":")
            .and_then(|t| t.strip_suffix('}'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("torn counter value {text:?}"))
    }
}
