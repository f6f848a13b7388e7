//! The attacks of issue 13, against the built server: requests whose cost grows far beyond their
//! size (a self-doubling JSON patch, YAML nested 100,000 deep), connections that hold the
//! server's resources without ever finishing a request (slowloris, idle TLS and h2 connections,
//! unfinished handshakes, a flood from one source), and a crowd of unconditional patches to one
//! object. Each attack must be refused quickly and cheaply while a well-behaved client is served.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox::api::{stream, streams, Client, Resp};
use blackbox::{admin_token, both_backends, process_cpu_seconds, start_embedded, Server};
use reqwest::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

// The connection flags, with values short enough for the tests to stay short. Each flag and
// the duration beside it must agree.
const HEADER_TIMEOUT_FLAG: &str = "--http-header-read-timeout=3s";
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
const IDLE_TIMEOUT_FLAG: &str = "--http-idle-timeout=3s";
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// Go's HTTP server, and so kube-apiserver, bounds the TLS handshake by the header-read timeout.
const HANDSHAKE_TIMEOUT: Duration = HEADER_TIMEOUT;
const TIMEOUT_FLAGS: [&str; 2] = [HEADER_TIMEOUT_FLAG, IDLE_TIMEOUT_FLAG];
const MAX_CONN_FLAG: &str = "--max-connections-per-source=100";
const MAX_CONN_PER_SOURCE: usize = 100;

/// How late after its timeout the server may close a connection.
const CLOSE_SLACK: Duration = Duration::from_secs(2);
/// How often a raw connection checks whether the server closed it.
const POLL: Duration = Duration::from_millis(200);
/// The most an attacking request may take before it is refused.
const ATTACK_LATENCY: Duration = Duration::from_secs(3);
/// Past this, an attacking request counts as hung.
const ATTACK_DEADLINE: Duration = Duration::from_secs(20);
/// The most server CPU one attacking request may cost, the bystander's reads meanwhile included.
/// A refused doubling patch costs 0.33–0.42 s in a debug build run alone and went to 0.56 s
/// under the whole suite on 2 cores; an attack that got through would cost many seconds.
const ATTACK_CPU_SECONDS: f64 = 1.0;
/// The most memory the server may hold, at its peak or after an attack.
const MEMORY_LIMIT_MIB: u64 = 500;
/// The slowest answer a well-behaved client may get while an attack runs.
const BYSTANDER_LATENCY: Duration = Duration::from_secs(2);

const NS: &str = "hostile";

// ---- Helpers: the server's memory ----

/// A `kB` field of `/proc/<pid>/status`, in MiB (0 when it cannot be read).
fn proc_status_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// The server's resident memory now.
fn rss_mib(pid: u32) -> u64 {
    proc_status_mib(pid, "VmRSS")
}

/// The most resident memory the server has ever held: catches a spike that was freed again.
fn peak_rss_mib(pid: u32) -> u64 {
    proc_status_mib(pid, "VmHWM")
}

// ---- Helpers: clients ----

/// A TLS client configuration that trusts the server's generated CA and offers `alpn`.
fn tls_config(data_dir: &Path, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let ca = std::fs::read(data_dir.join("ca.crt")).expect("the server's CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA PEM")).expect("add the CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    config
}

/// An admin HTTPS client whose connections come from `source`: any 127.0.0.0/8 address
/// reaches the server, so a second loopback address is a second source.
fn client_from(server: &Server, source: IpAddr) -> reqwest::Client {
    let token = admin_token(server.data_dir());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls_config(server.data_dir(), &[b"h2", b"http/1.1"]))
        .local_address(source)
        .default_headers(headers)
        .build()
        .expect("client")
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Sends one request, failing the test when it has no answer within [`ATTACK_DEADLINE`];
/// returns the answer and how long it took.
async fn timed_request(
    c: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (Resp, Duration) {
    let headers = [("content-type", content_type)];
    let started = Instant::now();
    let request = c.request(method, path, &headers, Some(body));
    let resp = tokio::time::timeout(ATTACK_DEADLINE, request)
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer within {ATTACK_DEADLINE:?}"));
    (resp, started.elapsed())
}

/// Asserts a refusal: one of `statuses`, as a Status whose message names the limit (one of
/// `words`, lowercase).
fn assert_refused(what: &str, r: &Resp, statuses: &[u16], words: &[&str]) {
    assert!(
        statuses.contains(&r.status),
        "{what}: expected one of {statuses:?}, got {} {}",
        r.status,
        r.text()
    );
    let status = r.json();
    assert_eq!(status["kind"], "Status", "{what}: {status}");
    assert_eq!(status["status"], "Failure", "{what}: {status}");
    // kube's 422 for a failed patch keeps the reason in the causes.
    let causes = status["details"]["causes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["message"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let message = format!("{} {causes}", status["message"].as_str().unwrap_or("")).to_lowercase();
    assert!(
        words.iter().any(|word| message.contains(word)),
        "{what}: the message says no limit ({words:?}): {message}"
    );
}

// ---- Helpers: a well-behaved client during an attack ----

/// What a well-behaved client saw.
#[derive(Debug, Default)]
struct Reads {
    served: usize,
    failures: Vec<String>,
    slowest: Duration,
}

/// A client reading one path in a loop, on a connection of its own, until it is finished.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Reads>,
}

impl Bystander {
    /// Reads at least a few times, so that a quickly refused attack still has a witness.
    const MIN_READS: usize = 3;

    fn start(server: &Server, path: &str) -> Bystander {
        let http = client_from(server, loopback(1));
        let url = format!("{}{path}", server.base);
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read_until_stopped(http, url, stop.clone()));
        Bystander { stop, task }
    }

    /// Stops the reads and asserts they were all served, promptly.
    async fn assert_served(self, what: &str) {
        self.stop.store(true, Ordering::SeqCst);
        let reads = self.task.await.expect("the well-behaved client's task");
        assert!(
            reads.failures.is_empty(),
            "{what}: a well-behaved client failed: {:?}",
            reads.failures
        );
        assert!(reads.served >= Bystander::MIN_READS, "{what}: {reads:?}");
        assert!(
            reads.slowest <= BYSTANDER_LATENCY,
            "{what}: a well-behaved client waited {:?}",
            reads.slowest
        );
    }
}

async fn read_until_stopped(http: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> Reads {
    let mut reads = Reads::default();
    let mut attempts = 0;
    while !stop.load(Ordering::SeqCst) || attempts < Bystander::MIN_READS {
        attempts += 1;
        let started = Instant::now();
        let outcome = http.get(&url).timeout(BYSTANDER_LATENCY * 5).send().await;
        match outcome {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(_) => reads.served += 1,
                Err(e) => reads.failures.push(format!("reading the body: {e}")),
            },
            Ok(resp) => reads.failures.push(format!("status {}", resp.status())),
            Err(e) => reads.failures.push(e.to_string()),
        }
        reads.slowest = reads.slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reads
}

// ---- Helpers: raw connections ----

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A TLS connection with the handshake done and nothing sent; reads time out after [`POLL`].
fn connect_tls(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    wait: Duration,
) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect_timeout(&server_addr(port), wait)?;
    tcp.set_read_timeout(Some(wait))?;
    tcp.set_write_timeout(Some(wait))?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address is a server name");
    let connection =
        rustls::ClientConnection::new(config.clone(), name).expect("a TLS client connection");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let deadline = Instant::now() + wait;
    while tls.conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(ErrorKind::TimedOut.into());
        }
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.sock.set_read_timeout(Some(POLL))?;
    Ok(tls)
}

/// How a raw connection ended: when the server closed it (from the start of the watch), and
/// what it sent before.
struct Ending {
    after: Option<Duration>,
    received: Vec<u8>,
}

/// Reads whatever the server sends until it closes the connection or `deadline` passes.
/// `stream` must have a read timeout, so that waiting never outlasts the deadline by much.
fn watch_until_closed(stream: &mut impl Read, started: Instant, deadline: Instant) -> Ending {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return closed(started, received),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if still_open(e.kind()) => {}
            // A reset or an unclean TLS end: closed all the same.
            Err(_) => return closed(started, received),
        }
    }
    Ending {
        after: None,
        received,
    }
}

fn closed(started: Instant, received: Vec<u8>) -> Ending {
    Ending {
        after: Some(started.elapsed()),
        received,
    }
}

/// Whether a read error only means that nothing came within the read timeout.
fn still_open(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Watches until a little after `limit`, so that a late close is reported with its time.
fn watch_deadline(started: Instant, limit: Duration) -> Instant {
    started + limit + Duration::from_secs(1)
}

fn assert_closed_within(what: &str, ending: &Ending, limit: Duration) {
    match ending.after {
        Some(after) => assert!(
            after <= limit,
            "{what}: the server closed the connection only after {after:?} (limit {limit:?})"
        ),
        None => panic!("{what}: the connection was still open after {limit:?}"),
    }
}

// ---- 1. A JSON patch that doubles its value with every copy ----

/// An `add` of a one-element array holding 1 KiB, then `copies` copies of the array onto its
/// own end: each doubles it, so 21 make 2 GiB out of a 2 KB request.
fn doubling_json_patch(copies: usize) -> String {
    let mut ops = vec![json!({"op": "add", "path": "/spec", "value": {"x": ["a".repeat(1024)]}})];
    ops.extend((0..copies).map(|_| json!({"op": "copy", "from": "/spec/x", "path": "/spec/x/-"})));
    Value::Array(ops).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_doubling_json_patch_is_refused_within_bounded_memory() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let path = stream(NS, "big");
    let r = c
        .post(&streams(NS), &json!({"metadata": {"name": "big"}}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rv = r.json()["metadata"]["resourceVersion"].clone();

    let bystander = Bystander::start(&server, &path);
    let cpu_before = process_cpu_seconds(server.pid());
    let patch = doubling_json_patch(21).into_bytes();
    assert!(patch.len() < 4096, "the attack is a small request");
    let (r, took) = timed_request(
        &c,
        Method::PATCH,
        &path,
        "application/json-patch+json",
        patch,
    )
    .await;
    let cpu = process_cpu_seconds(server.pid()) - cpu_before;
    bystander.assert_served("during the doubling patch").await;

    assert_refused(
        "doubling patch",
        &r,
        &[413, 422],
        &["limit", "size", "too large"],
    );
    assert!(took <= ATTACK_LATENCY, "the doubling patch took {took:?}");
    assert!(
        cpu <= ATTACK_CPU_SECONDS,
        "the doubling patch cost {cpu:.2} s of CPU"
    );
    let peak = peak_rss_mib(server.pid());
    assert!(
        peak < MEMORY_LIMIT_MIB,
        "the server's memory peaked at {peak} MiB"
    );
    let now = rss_mib(server.pid());
    assert!(
        now < MEMORY_LIMIT_MIB,
        "the server holds {now} MiB after the patch"
    );

    let after = c.get(&path).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(
        after.json()["metadata"]["resourceVersion"],
        rv,
        "a refused patch wrote nothing"
    );
}

// ---- 2. YAML nested 100,000 deep ----

/// An ImageStream whose spec is a flow sequence nested `depth` deep: 200 KB, well under the
/// body limit.
fn deep_yaml(depth: usize) -> Vec<u8> {
    let mut body =
        b"apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: deep\nspec: "
            .to_vec();
    body.resize(body.len() + depth, b'[');
    body.resize(body.len() + depth, b']');
    body.push(b'\n');
    body
}

const DEEP: usize = 100_000;
const DEPTH_WORDS: [&str; 4] = ["depth", "nest", "deep", "limit"];

/// Each way a YAML body reaches the server: create, update, apply.
fn deep_yaml_requests() -> [(&'static str, Method, String, &'static str); 3] {
    [
        ("create", Method::POST, streams(NS), "application/yaml"),
        (
            "update",
            Method::PUT,
            stream(NS, "deep"),
            "application/yaml",
        ),
        (
            "apply",
            Method::PATCH,
            format!("{}?fieldManager=x", stream(NS, "deep")),
            "application/apply-patch+yaml",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_yaml_is_refused_cheaply() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    for (what, method, path, content_type) in deep_yaml_requests() {
        let cpu_before = process_cpu_seconds(server.pid());
        let (r, took) = timed_request(&c, method, &path, content_type, deep_yaml(DEEP)).await;
        let cpu = process_cpu_seconds(server.pid()) - cpu_before;
        assert_refused(what, &r, &[400], &DEPTH_WORDS);
        assert!(
            took <= ATTACK_LATENCY,
            "{what}: the deep YAML took {took:?}"
        );
        assert!(
            cpu <= ATTACK_CPU_SECONDS,
            "{what}: the deep YAML cost {cpu:.2} s of CPU"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_during_two_deep_yaml_requests() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let bystander = Bystander::start(&server, "/readyz");
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            let path = streams(NS);
            tokio::spawn(async move {
                timed_request(&c, Method::POST, &path, "application/yaml", deep_yaml(DEEP)).await
            })
        })
        .collect();
    for attack in attacks {
        let (r, took) = attack.await.expect("attack task");
        assert_refused("concurrent create", &r, &[400], &DEPTH_WORDS);
        assert!(
            took <= ATTACK_LATENCY,
            "a concurrent deep YAML took {took:?}"
        );
    }
    bystander.assert_served("during two deep YAML bodies").await;
}

// ---- 3. Connections that never finish a request ----

/// Sends a request line, then one header line every two seconds, never the blank line that
/// ends the head; returns when the server closed the connection.
fn slowloris(config: &Arc<rustls::ClientConfig>, port: u16) -> Ending {
    let mut tls = connect_tls(config, port, Duration::from_secs(5)).expect("TLS handshake");
    let started = Instant::now();
    let deadline = watch_deadline(started, HEADER_TIMEOUT + CLOSE_SLACK);
    let head = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    if tls.write_all(head).and_then(|()| tls.flush()).is_err() {
        return closed(started, Vec::new());
    }
    let mut received = Vec::new();
    let mut line = 0;
    loop {
        let next_line = (Instant::now() + Duration::from_secs(2)).min(deadline);
        let ending = watch_until_closed(&mut tls, started, next_line);
        received.extend_from_slice(&ending.received);
        if ending.after.is_some() || Instant::now() >= deadline {
            return Ending {
                after: ending.after,
                received,
            };
        }
        let header = format!("X-Slow-{line}: 1\r\n");
        if tls
            .write_all(header.as_bytes())
            .and_then(|()| tls.flush())
            .is_err()
        {
            return closed(started, received);
        }
        line += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    const SLOW_CLIENTS: usize = 20;
    let server = start_embedded(&TIMEOUT_FLAGS).await;
    let config = Arc::new(tls_config(server.data_dir(), &[b"http/1.1"]));
    let port = server.port;
    let slow = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..SLOW_CLIENTS)
                .map(|_| scope.spawn(|| slowloris(&config, port)))
                .collect();
            clients
                .into_iter()
                .map(|client| client.join().expect("slowloris thread"))
                .collect::<Vec<_>>()
        })
    });

    // While the slow heads trickle in, a well-behaved client is served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let r = server.client().get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let took = started.elapsed();
    assert!(
        took <= BYSTANDER_LATENCY,
        "/readyz took {took:?} among slow clients"
    );

    let endings = slow.await.expect("slowloris clients");
    for (i, ending) in endings.iter().enumerate() {
        assert_closed_within(
            &format!("slowloris {i}"),
            ending,
            HEADER_TIMEOUT + CLOSE_SLACK,
        );
    }
}

/// A TLS connection that never sends a request.
fn idle_after_handshake(config: &Arc<rustls::ClientConfig>, port: u16) -> Ending {
    let mut tls = connect_tls(config, port, Duration::from_secs(5)).expect("TLS handshake");
    let started = Instant::now();
    let limit = HEADER_TIMEOUT.max(IDLE_TIMEOUT) + CLOSE_SLACK;
    watch_until_closed(&mut tls, started, watch_deadline(started, limit))
}

/// A kept-alive HTTP/1.1 connection that sends one request, then nothing.
fn idle_after_one_request(config: &Arc<rustls::ClientConfig>, port: u16) -> Ending {
    let mut tls = connect_tls(config, port, Duration::from_secs(5)).expect("TLS handshake");
    tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .and_then(|()| tls.flush())
        .expect("send the request");
    let started = Instant::now();
    watch_until_closed(
        &mut tls,
        started,
        watch_deadline(started, IDLE_TIMEOUT + CLOSE_SLACK),
    )
}

/// An HTTP/2 connection that sends its preface and settings, then nothing.
fn idle_h2(config: &Arc<rustls::ClientConfig>, port: u16) -> Ending {
    let mut tls = connect_tls(config, port, Duration::from_secs(5)).expect("TLS handshake");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]), "h2 negotiated");
    // The connection preface and an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    tls.write_all(&preface)
        .and_then(|()| tls.flush())
        .expect("send the h2 preface");
    let started = Instant::now();
    watch_until_closed(
        &mut tls,
        started,
        watch_deadline(started, IDLE_TIMEOUT + CLOSE_SLACK),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let server = start_embedded(&TIMEOUT_FLAGS).await;
    let h1 = Arc::new(tls_config(server.data_dir(), &[b"http/1.1"]));
    let h2 = Arc::new(tls_config(server.data_dir(), &[b"h2"]));
    let port = server.port;
    let [fresh, kept_alive, http2] = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let fresh = scope.spawn(|| idle_after_handshake(&h1, port));
            let kept_alive = scope.spawn(|| idle_after_one_request(&h1, port));
            let http2 = scope.spawn(|| idle_h2(&h2, port));
            [fresh, kept_alive, http2].map(|t| t.join().expect("idle client thread"))
        })
    })
    .await
    .expect("idle clients");

    assert_closed_within(
        "idle after the handshake",
        &fresh,
        HEADER_TIMEOUT.max(IDLE_TIMEOUT) + CLOSE_SLACK,
    );
    assert!(
        kept_alive.received.starts_with(b"HTTP/1.1 200"),
        "the request before the idle time was served: {}",
        String::from_utf8_lossy(&kept_alive.received)
    );
    assert_closed_within(
        "idle after one request",
        &kept_alive,
        IDLE_TIMEOUT + CLOSE_SLACK,
    );
    assert_closed_within("idle h2", &http2, IDLE_TIMEOUT + CLOSE_SLACK);
}

/// A TCP connection that sends `first_bytes` of a handshake (maybe none), then nothing.
fn unfinished_handshake(port: u16, first_bytes: &[u8]) -> Ending {
    let mut tcp = TcpStream::connect(server_addr(port)).expect("connect");
    tcp.set_read_timeout(Some(POLL)).expect("read timeout");
    let started = Instant::now();
    tcp.write_all(first_bytes)
        .expect("send the start of a handshake");
    watch_until_closed(
        &mut tcp,
        started,
        watch_deadline(started, HANDSHAKE_TIMEOUT + CLOSE_SLACK),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_handshakes_are_closed_after_the_handshake_timeout() {
    let server = start_embedded(&TIMEOUT_FLAGS).await;
    let port = server.port;
    let [silent, partial] = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let silent = scope.spawn(|| unfinished_handshake(port, &[]));
            // A handshake record header announcing 512 bytes, and one of them.
            let partial = scope.spawn(|| unfinished_handshake(port, &[0x16, 3, 1, 2, 0, 1]));
            [silent, partial].map(|t| t.join().expect("handshake client thread"))
        })
    })
    .await
    .expect("handshake clients");
    let limit = HANDSHAKE_TIMEOUT + CLOSE_SLACK;
    assert_closed_within("no ClientHello", &silent, limit);
    assert_closed_within("a partial ClientHello", &partial, limit);
}

/// Opens `count` TLS connections at once from 127.0.0.1; returns those the server let finish
/// their handshake (it refuses the others by closing them, or by never answering).
fn open_at_once(config: &Arc<rustls::ClientConfig>, port: u16, count: usize) -> Vec<TlsStream> {
    std::thread::scope(|scope| {
        let attempts: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| connect_tls(config, port, Duration::from_secs(5))))
            .collect();
        attempts
            .into_iter()
            .filter_map(|attempt| attempt.join().expect("connecting thread").ok())
            .collect()
    })
}

/// Polls `/readyz` with a fresh client from `source` until it answers 200 or `within` passes.
async fn served_within(server: &Server, source: IpAddr, within: Duration) -> bool {
    let http = client_from(server, source);
    let url = format!("{}/readyz", server.base);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let answer = http.get(&url).timeout(within).send().await;
        if answer.is_ok_and(|r| r.status().as_u16() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_source_cap_are_refused() {
    const FLOOD: usize = 300;
    let server = start_embedded(&[MAX_CONN_FLAG]).await;
    let config = Arc::new(tls_config(server.data_dir(), &[b"http/1.1"]));
    let port = server.port;
    let idle = tokio::task::spawn_blocking(move || open_at_once(&config, port, FLOOD))
        .await
        .expect("the flood");
    assert!(
        idle.len() <= MAX_CONN_PER_SOURCE,
        "{} of {FLOOD} connections from one source were accepted (cap {MAX_CONN_PER_SOURCE})",
        idle.len()
    );
    // A connection or two of the readiness polls may not have been counted out yet.
    assert!(
        idle.len() + 5 >= MAX_CONN_PER_SOURCE,
        "only {} connections were accepted below the cap of {MAX_CONN_PER_SOURCE}",
        idle.len()
    );

    // The cap is per source: another loopback address is served while 127.0.0.1 is at it.
    assert!(
        served_within(&server, loopback(2), BYSTANDER_LATENCY).await,
        "a client from another source was not served while one source was at its cap"
    );

    drop(idle);
    assert!(
        served_within(&server, loopback(1), BYSTANDER_LATENCY).await,
        "once its idle connections closed, the source was not served again at once"
    );
}

// ---- 4. Unconditional patches under concurrency ----

const RACERS: usize = 20;

#[derive(Clone, Copy, Debug)]
enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    const ALL: [PatchKind; 4] = [
        PatchKind::Merge,
        PatchKind::Strategic,
        PatchKind::Json,
        PatchKind::Apply,
    ];

    fn content_type(self) -> &'static str {
        match self {
            PatchKind::Merge => "application/merge-patch+json",
            PatchKind::Strategic => "application/strategic-merge-patch+json",
            PatchKind::Json => "application/json-patch+json",
            PatchKind::Apply => "application/apply-patch+yaml",
        }
    }

    fn stream_name(self) -> &'static str {
        match self {
            PatchKind::Merge => "race-merge",
            PatchKind::Strategic => "race-strategic",
            PatchKind::Json => "race-json",
            PatchKind::Apply => "race-apply",
        }
    }

    /// The path and body with which racer `i` adds its own annotation `a<i>`, with no
    /// resourceVersion; appliers are managers of their own (`m<i>`).
    fn request(self, i: usize) -> (String, String) {
        let name = self.stream_name();
        let path = stream(NS, name);
        let key = format!("a{i}");
        match self {
            PatchKind::Merge | PatchKind::Strategic => (
                path,
                json!({"metadata": {"annotations": {key: "v"}}}).to_string(),
            ),
            PatchKind::Json => (
                path,
                json!([{"op": "add", "path": format!("/metadata/annotations/{key}"), "value": "v"}])
                    .to_string(),
            ),
            PatchKind::Apply => (
                format!("{path}?fieldManager=m{i}"),
                json!({
                    "apiVersion": "image.openshift.io/v1",
                    "kind": "ImageStream",
                    "metadata": {"name": name, "annotations": {key: "v"}},
                })
                .to_string(),
            ),
        }
    }
}

/// Races [`RACERS`] patches of one kind on a stream of their own; returns what went wrong.
async fn race_patches(c: &Client, kind: PatchKind) -> Vec<String> {
    let name = kind.stream_name();
    // The annotations map exists, so that JSON patch `add`s into it apply.
    let seeded = json!({"metadata": {"name": name, "annotations": {"seed": "1"}}});
    let r = c.post(&streams(NS), &seeded).await;
    assert_eq!(r.status, 201, "{kind:?}: {}", r.text());

    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let c = c.clone();
            let (path, body) = kind.request(i);
            tokio::spawn(async move { (i, c.patch(&path, kind.content_type(), &body).await) })
        })
        .collect();
    let mut failures = Vec::new();
    for racer in racers {
        let (i, r) = racer.await.expect("patch task");
        if r.status != 200 {
            failures.push(format!("{kind:?} patch {i}: {} {}", r.status, r.text()));
        }
    }

    let patched = c.get(&stream(NS, name)).await.json();
    let annotations = &patched["metadata"]["annotations"];
    for i in 0..RACERS {
        let key = format!("a{i}");
        if annotations[key.as_str()] != "v" {
            failures.push(format!(
                "{kind:?}: annotation {key} is missing: {annotations}"
            ));
        }
    }
    failures
}

/// kube re-applies a patch without a resourceVersion to the fresh object when its write loses
/// a race, so every racer succeeds and every annotation is kept, for every patch type.
async fn unconditional_patches_all_succeed_under_concurrency(server: &Server) {
    let c = server.client();
    let mut failures = Vec::new();
    for kind in PatchKind::ALL {
        failures.extend(race_patches(&c, kind).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

both_backends!([], unconditional_patches_all_succeed_under_concurrency);
