//! What each attack of issue 13 ("Hostile input and hostile clients") costs the server now. Every
//! attack runs against a fresh release server on the embedded store, so the process's peak
//! resident memory (VmHWM) is that attack's peak, and prints the answer (an HTTP status, or when
//! the server closed a connection), the wall time, the server's CPU seconds, its peak memory and
//! its memory before and after. A well-behaved client reads an image stream (or `/readyz`) in a
//! loop from another source address during each attack; its successes and latency are printed
//! below, next to the "before" figure:
//! 1. a 2 KB JSON patch whose `copy` operations double a 1 KiB value 21 times;
//! 2. YAML nested 100,000 deep, as a create and as an apply patch;
//! 3. two such bodies at once while `/readyz` is polled;
//! 4. slowloris: a request head sent one header line every 2 s;
//! 5. idle connections: fresh TLS, kept-alive HTTP/1.1, HTTP/2;
//! 6. a flood of idle TLS connections from one source, and a client from another one;
//! 7. 20 concurrent merge patches without a resourceVersion to one stream;
//! 8. the smaller items, one status each.
//!
//! It prints numbers; it asserts nothing.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::percentile;
use blackbox::api::{stream, streams};
use blackbox::{admin_token, process_cpu_seconds, start_embedded, Server};
use clap::Parser;
use reqwest::Method;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "What the attacks of issue 13 cost the server")]
struct Args {
    /// Idle TLS connections the flood opens from 127.0.0.1.
    #[arg(long, default_value_t = 2000)]
    flood: usize,
    /// Comma-separated attacks: patch,yaml,readyz,slowloris,idle,flood,race,small.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "patch,yaml,readyz,slowloris,idle,flood,race,small"
    )]
    only: Vec<String>,
}

const NS: &str = "hostile";
/// The stream the well-behaved client reads.
const CALM: &str = "calm";

const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// Long enough for the unfixed server's 23 s YAML decode to finish and be reported.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The well-behaved client's pause between reads: light enough not to weigh on the CPU figure.
const BYSTANDER_PAUSE: Duration = Duration::from_millis(50);
/// The well-behaved client's address: neither the attackers' (127.0.0.1) nor 127.0.0.2.
const BYSTANDER_SOURCE: u8 = 3;

/// The connection timeouts of attacks 4 and 5, shortened so the bench stays short.
const SHORT_HEADER_TIMEOUT_FLAG: &str = "--http-header-read-timeout=5s";
const SHORT_IDLE_TIMEOUT_FLAG: &str = "--http-idle-timeout=5s";
/// How long a held connection is watched before it counts as still open.
const WATCH_LIMIT: Duration = Duration::from_secs(15);
const SLOWLORIS_INTERVAL: Duration = Duration::from_secs(2);
const SLOW_CLIENTS: usize = 20;
/// A TLS connect or handshake that takes longer counts as refused.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How often a held connection checks whether the server closed it.
const POLL: Duration = Duration::from_millis(200);

/// `--max-connections-per-source`'s default.
const DEFAULT_PER_SOURCE_CAP: usize = 512;
/// Threads opening the flood; each holds at most one connection in its handshake, so the
/// bench's own descriptors stay near the connections the server accepts.
const FLOOD_WORKERS: usize = 64;
/// Descriptors the bench needs beside the flood's.
const FD_HEADROOM: usize = 256;
const OTHER_SOURCE_WAIT: Duration = Duration::from_secs(5);

const DEEP: usize = 100_000;
const DOUBLING_COPIES: usize = 21;
const RACERS: usize = 20;

/// Status messages are cut to this many characters in a report line.
const MESSAGE_CHARS: usize = 60;
const LABEL_WIDTH: usize = 44;

// ---- The server's memory ----

/// A `kB` field of a `/proc/<pid>/status` text, in MiB (0 when absent).
fn status_field_mib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// `VmRSS` (now) or `VmHWM` (the peak so far) of a process, in MiB; 0 once it is gone.
fn proc_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_field_mib(&status, field)
}

// ---- Clients ----

/// A TLS client configuration trusting the server's generated CA, offering `alpn`.
fn tls_config(server: &Server, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let ca = std::fs::read_to_string(server.data_dir().join("ca.crt")).expect("the server's CA");
    let mut config = blackbox::pki::tls_client_config(&ca, None);
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    config
}

/// An admin HTTPS client whose connections come from `source`: every 127.0.0.0/8 address
/// reaches the server, and each is a source of its own to the per-source cap.
fn client_from(server: &Server, source: IpAddr) -> reqwest::Client {
    let bearer = format!("Bearer {}", admin_token(server.data_dir()));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        bearer.parse().expect("a token is a header value"),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_preconfigured(tls_config(server, &[b"h2", b"http/1.1"]))
        .local_address(source)
        .default_headers(headers)
        .build()
        .expect("an HTTPS client")
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// What one request got back.
struct Answer {
    /// `None` when no answer came.
    status: Option<u16>,
    content_type: String,
    /// The body as JSON; `Null` when it is not JSON.
    body: Value,
    /// Why no answer came.
    error: String,
}

impl Answer {
    fn failed(error: impl ToString) -> Answer {
        Answer {
            status: None,
            content_type: String::new(),
            body: Value::Null,
            error: error.to_string(),
        }
    }

    fn code(&self) -> String {
        self.status
            .map_or_else(|| "no answer".to_string(), |code| code.to_string())
    }

    /// The status and what the body is: a Status's reason and message, an object's kind, or
    /// the content type of anything else.
    fn summary(&self) -> String {
        let Some(code) = self.status else {
            return shorten(&format!("no answer: {}", self.error), MESSAGE_CHARS);
        };
        match self.body["kind"].as_str() {
            Some("Status") => {
                let reason = self.body["reason"].as_str().unwrap_or("");
                let message = self.body["message"].as_str().unwrap_or("");
                shorten(&format!("{code} {reason}: {message}"), MESSAGE_CHARS)
            }
            Some(kind) => format!("{code} {kind}"),
            None => format!("{code} ({}, not a Status)", self.content_type),
        }
    }
}

/// Sends one request; never panics, whatever the server does.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut request = http.request(method, url).timeout(REQUEST_TIMEOUT);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Answer::failed(e),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    match response.bytes().await {
        Ok(bytes) => Answer {
            status: Some(status),
            content_type,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            error: String::new(),
        },
        Err(e) => Answer::failed(e),
    }
}

/// At most `max` characters of `text`, marked when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max).collect();
    short.push('…');
    short
}

// ---- A well-behaved client during an attack ----

/// What the well-behaved client saw.
#[derive(Debug, Default)]
struct Reads {
    ok: usize,
    latencies: Vec<Duration>,
}

impl Reads {
    fn max_ms(&self) -> f64 {
        self.latencies
            .iter()
            .max()
            .map_or(0.0, |slowest| slowest.as_secs_f64() * 1e3)
    }

    fn summary(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        format!(
            "well-behaved GETs {}/{} ok, p99 {:.1} ms, max {:.1} ms",
            self.ok,
            sorted.len(),
            percentile(&sorted, 0.99),
            self.max_ms()
        )
    }
}

/// A client reading one URL in a loop until it is finished.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Reads>,
}

impl Bystander {
    fn start(http: reqwest::Client, url: String) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read_until_stopped(http, url, stop.clone()));
        Bystander { stop, task }
    }

    async fn finish(self) -> Reads {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

async fn read_until_stopped(http: reqwest::Client, url: String, stop: Arc<AtomicBool>) -> Reads {
    let mut reads = Reads::default();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let ok = match http.get(&url).timeout(REQUEST_TIMEOUT).send().await {
            Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        reads.latencies.push(started.elapsed());
        reads.ok += usize::from(ok);
        tokio::time::sleep(BYSTANDER_PAUSE).await;
    }
    reads
}

// ---- One attack's measurement ----

/// A fresh server, its admin client and the stream the well-behaved client reads.
struct Target {
    server: Server,
    admin: reqwest::Client,
}

impl Target {
    async fn start(flags: &[&str]) -> Target {
        let server = start_embedded(flags).await;
        let admin = client_from(&server, loopback(1));
        let target = Target { server, admin };
        target
            .create_stream(json!({"metadata": {"name": CALM}}))
            .await;
        target
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    async fn create_stream(&self, body: Value) {
        let url = self.url(&streams(NS));
        let body = body.to_string().into_bytes();
        let answer = send(&self.admin, Method::POST, &url, Some(JSON), Some(body)).await;
        if answer.status != Some(201) {
            eprintln!("setup: creating a stream: {}", answer.summary());
        }
    }

    /// Starts measuring, with the well-behaved client reading `bystander_path`.
    fn run(&self, bystander_path: &str) -> Run {
        let pid = self.server.pid();
        let http = client_from(&self.server, loopback(BYSTANDER_SOURCE));
        Run {
            pid,
            cpu_before: process_cpu_seconds(pid),
            rss_before: proc_mib(pid, "VmRSS"),
            started: Instant::now(),
            bystander: Bystander::start(http, self.url(bystander_path)),
        }
    }
}

struct Run {
    pid: u32,
    cpu_before: f64,
    rss_before: u64,
    started: Instant,
    bystander: Bystander,
}

impl Run {
    async fn finish(self) -> Measured {
        let cost = Cost {
            wall: self.started.elapsed(),
            cpu: process_cpu_seconds(self.pid) - self.cpu_before,
            peak_mib: proc_mib(self.pid, "VmHWM"),
            rss_before_mib: self.rss_before,
            rss_after_mib: proc_mib(self.pid, "VmRSS"),
        };
        let reads = self.bystander.finish().await;
        Measured { cost, reads }
    }
}

struct Cost {
    wall: Duration,
    cpu: f64,
    peak_mib: u64,
    rss_before_mib: u64,
    rss_after_mib: u64,
}

struct Measured {
    cost: Cost,
    reads: Reads,
}

impl Measured {
    fn print(&self, label: &str, outcome: &str, before: &str) {
        let c = &self.cost;
        println!(
            "{label:<LABEL_WIDTH$} wall {:>6.2} s  CPU {:>6.2} s  peak RSS {:>5} MiB  RSS {:>4} -> {:>4} MiB  {outcome}",
            c.wall.as_secs_f64(),
            c.cpu,
            c.peak_mib,
            c.rss_before_mib,
            c.rss_after_mib,
        );
        println!(
            "{:<LABEL_WIDTH$} {}; before: {before}",
            "",
            self.reads.summary()
        );
    }
}

// ---- 1. A JSON patch that doubles its value with every copy ----

/// An `add` of a one-element array holding 1 KiB, then `copies` copies of the array onto its
/// own end: each doubles it.
fn doubling_json_patch(copies: usize) -> Vec<u8> {
    let mut ops = vec![json!({"op": "add", "path": "/spec", "value": {"x": ["a".repeat(1024)]}})];
    ops.extend((0..copies).map(|_| json!({"op": "copy", "from": "/spec/x", "path": "/spec/x/-"})));
    Value::Array(ops).to_string().into_bytes()
}

async fn doubling_patch() {
    let target = Target::start(&[]).await;
    target
        .create_stream(json!({"metadata": {"name": "big"}}))
        .await;
    let url = target.url(&stream(NS, "big"));
    let patch = doubling_json_patch(DOUBLING_COPIES);
    let label = format!("1 doubling JSON patch ({} B)", patch.len());
    let run = target.run(&stream(NS, CALM));
    let answer = send(
        &target.admin,
        Method::PATCH,
        &url,
        Some(JSON_PATCH),
        Some(patch),
    )
    .await;
    run.finish()
        .await
        .print(&label, &answer.summary(), "200 OK, 9.1 GB, not returned");
}

// ---- 2 and 3. YAML nested 100,000 deep ----

/// An ImageStream whose spec is a flow sequence nested `depth` deep.
fn deep_yaml(depth: usize) -> Vec<u8> {
    let mut body =
        b"apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: deep\nspec: "
            .to_vec();
    body.resize(body.len() + depth, b'[');
    body.resize(body.len() + depth, b']');
    body.push(b'\n');
    body
}

async fn deep_yaml_requests() {
    let apply_path = format!("{}?fieldManager=bench", stream(NS, "deep"));
    let requests = [
        (
            "2a 100,000-deep YAML, POST",
            Method::POST,
            streams(NS),
            YAML,
        ),
        (
            "2b 100,000-deep YAML, apply patch",
            Method::PATCH,
            apply_path,
            APPLY,
        ),
    ];
    for (label, method, path, content_type) in requests {
        let target = Target::start(&[]).await;
        let url = target.url(&path);
        let run = target.run(&stream(NS, CALM));
        let body = Some(deep_yaml(DEEP));
        let answer = send(&target.admin, method, &url, Some(content_type), body).await;
        run.finish()
            .await
            .print(label, &answer.summary(), "400 after ~23 s of CPU");
    }
}

async fn two_deep_yaml_while_readyz_is_polled() {
    let target = Target::start(&[]).await;
    let url = target.url(&streams(NS));
    let run = target.run("/readyz");
    let attacks: Vec<_> = (0..2)
        .map(|_| {
            let http = target.admin.clone();
            let url = url.clone();
            tokio::spawn(async move {
                send(&http, Method::POST, &url, Some(YAML), Some(deep_yaml(DEEP))).await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for attack in attacks {
        codes.push(match attack.await {
            Ok(answer) => answer.code(),
            Err(e) => format!("task failed: {e}"),
        });
    }
    let measured = run.finish().await;
    let outcome = format!(
        "{}; slowest /readyz {:.0} ms",
        codes.join(", "),
        measured.reads.max_ms()
    );
    measured.print(
        "3 two deep YAML POSTs at once",
        &outcome,
        "/readyz took 22 s",
    );
}

// ---- Raw connections ----

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection from 127.0.0.1 with the handshake done and nothing sent; reads time out
/// after [`POLL`].
fn connect_tls(config: &Arc<rustls::ClientConfig>, port: u16) -> io::Result<TlsStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&address, CONNECT_WAIT)?;
    tcp.set_read_timeout(Some(CONNECT_WAIT))?;
    tcp.set_write_timeout(Some(CONNECT_WAIT))?;
    let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
    let connection =
        rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let deadline = Instant::now() + CONNECT_WAIT;
    while tls.conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(ErrorKind::TimedOut.into());
        }
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.sock.set_read_timeout(Some(POLL))?;
    Ok(tls)
}

/// How a held connection ended.
#[derive(Debug)]
enum Close {
    /// The server closed it this long after the attack on it began.
    After(Duration),
    /// Still open at [`WATCH_LIMIT`].
    StillOpen,
    /// It could not be set up.
    Failed(String),
}

impl Close {
    fn describe(&self) -> String {
        match self {
            Close::After(after) => format!("closed after {:.1} s", after.as_secs_f64()),
            Close::StillOpen => format!("open after {} s", WATCH_LIMIT.as_secs()),
            Close::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// Many connections' endings in a few words.
fn describe_closes(closes: &[Close]) -> String {
    let times: Vec<f64> = closes
        .iter()
        .filter_map(|close| match close {
            Close::After(after) => Some(after.as_secs_f64()),
            _ => None,
        })
        .collect();
    let open = closes
        .iter()
        .filter(|close| matches!(close, Close::StillOpen))
        .count();
    let failed = closes.len() - times.len() - open;
    let mut parts = Vec::new();
    if !times.is_empty() {
        let first = times.iter().copied().fold(f64::INFINITY, f64::min);
        let last = times.iter().copied().fold(0.0, f64::max);
        parts.push(format!(
            "{} closed after {first:.1}-{last:.1} s",
            times.len()
        ));
    }
    if open > 0 {
        parts.push(format!("{open} open after {} s", WATCH_LIMIT.as_secs()));
    }
    if failed > 0 {
        parts.push(format!("{failed} failed to connect"));
    }
    parts.join(", ")
}

/// Reads (and discards) whatever the server sends until it closes the connection, or
/// `deadline` passes (`None`). `stream` must have a read timeout.
fn wait_for_close(stream: &mut impl Read, started: Instant, deadline: Instant) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if still_open(e.kind()) => {}
            // A reset or an unclean TLS end: closed all the same.
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Whether a read error only means that nothing came within the read timeout.
fn still_open(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

fn watch_from(stream: &mut impl Read, started: Instant) -> Close {
    match wait_for_close(stream, started, started + WATCH_LIMIT) {
        Some(after) => Close::After(after),
        None => Close::StillOpen,
    }
}

/// Sends `bytes`; a failed write means the server has closed the connection.
fn send_raw(tls: &mut TlsStream, bytes: &[u8]) -> bool {
    tls.write_all(bytes).and_then(|()| tls.flush()).is_ok()
}

// ---- 4. Slowloris ----

/// A request line, then one header line every [`SLOWLORIS_INTERVAL`], never the blank line
/// that ends the head.
fn slowloris(config: &Arc<rustls::ClientConfig>, port: u16) -> Close {
    let mut tls = match connect_tls(config, port) {
        Ok(tls) => tls,
        Err(e) => return Close::Failed(e.to_string()),
    };
    let started = Instant::now();
    let deadline = started + WATCH_LIMIT;
    let mut next: Vec<u8> = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_vec();
    for line in 0.. {
        if !send_raw(&mut tls, &next) {
            return Close::After(started.elapsed());
        }
        let next_line = (Instant::now() + SLOWLORIS_INTERVAL).min(deadline);
        if let Some(after) = wait_for_close(&mut tls, started, next_line) {
            return Close::After(after);
        }
        if Instant::now() >= deadline {
            break;
        }
        next = format!("X-Slow-{line}: 1\r\n").into_bytes();
    }
    Close::StillOpen
}

/// Runs `attack` on `count` threads at once.
async fn on_threads(
    count: usize,
    attack: impl Fn() -> Close + Send + Sync + 'static,
) -> Vec<Close> {
    let joined = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..count).map(|_| scope.spawn(&attack)).collect();
            threads
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|_| Close::Failed("the thread panicked".into()))
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    joined.unwrap_or_default()
}

async fn slowloris_attack() {
    let target = Target::start(&[SHORT_HEADER_TIMEOUT_FLAG]).await;
    let config = Arc::new(tls_config(&target.server, &[b"http/1.1"]));
    let port = target.server.port;
    let run = target.run(&stream(NS, CALM));
    let closes = on_threads(SLOW_CLIENTS, move || slowloris(&config, port)).await;
    run.finish().await.print(
        &format!("4 slowloris x{SLOW_CLIENTS} ({SHORT_HEADER_TIMEOUT_FLAG})"),
        &describe_closes(&closes),
        "open after 200 s",
    );
}

// ---- 5. Idle connections ----

/// A TLS connection that never sends a request: the header-read timeout's case.
fn idle_after_handshake(config: &Arc<rustls::ClientConfig>, port: u16) -> Close {
    match connect_tls(config, port) {
        Ok(mut tls) => watch_from(&mut tls, Instant::now()),
        Err(e) => Close::Failed(e.to_string()),
    }
}

/// A kept-alive HTTP/1.1 connection that sends one request, then nothing.
fn idle_after_one_request(config: &Arc<rustls::ClientConfig>, port: u16) -> Close {
    let mut tls = match connect_tls(config, port) {
        Ok(tls) => tls,
        Err(e) => return Close::Failed(e.to_string()),
    };
    if !send_raw(&mut tls, b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") {
        return Close::Failed("sending the request".into());
    }
    watch_from(&mut tls, Instant::now())
}

/// An HTTP/2 connection that sends its preface and an empty SETTINGS frame, then nothing.
fn idle_h2(config: &Arc<rustls::ClientConfig>, port: u16) -> Close {
    let mut tls = match connect_tls(config, port) {
        Ok(tls) => tls,
        Err(e) => return Close::Failed(e.to_string()),
    };
    // The SETTINGS frame: length 0, type 4, no flags, stream 0.
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    if !send_raw(&mut tls, &preface) {
        return Close::Failed("sending the h2 preface".into());
    }
    watch_from(&mut tls, Instant::now())
}

async fn idle_connections() {
    let target = Target::start(&[SHORT_HEADER_TIMEOUT_FLAG, SHORT_IDLE_TIMEOUT_FLAG]).await;
    let h1 = Arc::new(tls_config(&target.server, &[b"http/1.1"]));
    let h2 = Arc::new(tls_config(&target.server, &[b"h2"]));
    let port = target.server.port;
    let run = target.run(&stream(NS, CALM));
    let [fresh, kept_alive, http2] = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let fresh = scope.spawn(|| idle_after_handshake(&h1, port));
            let kept_alive = scope.spawn(|| idle_after_one_request(&h1, port));
            let http2 = scope.spawn(|| idle_h2(&h2, port));
            [fresh, kept_alive, http2].map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Close::Failed("the thread panicked".into()))
            })
        })
    })
    .await
    .unwrap_or_else(|e| [0, 1, 2].map(|_| Close::Failed(e.to_string())));
    let outcome = format!(
        "fresh TLS {}; kept-alive h1 {}; h2 {}",
        fresh.describe(),
        kept_alive.describe(),
        http2.describe()
    );
    run.finish().await.print(
        "5 idle connections (both timeouts 5s)",
        &outcome,
        "open after 200 s",
    );
}

// ---- 6. A flood of idle connections from one source ----

/// Opens `count` TLS connections from 127.0.0.1 on [`FLOOD_WORKERS`] threads and holds those
/// the server let finish their handshake.
fn open_flood(config: &Arc<rustls::ClientConfig>, port: u16, count: usize) -> Vec<TlsStream> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..FLOOD_WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut held = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < count {
                        if let Ok(tls) = connect_tls(config, port) {
                            held.push(tls);
                        }
                    }
                    held
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    })
}

/// Polls `url` until it answers 2xx; returns how long that took, `None` past `within`.
async fn served_within(http: &reqwest::Client, url: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let answer = http.get(url).timeout(within).send().await;
        if answer.is_ok_and(|response| response.status().is_success()) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Warns when this process (and so the server it starts) may run out of descriptors before
/// the flood does, which would be counted as refusals.
fn note_open_files_limit(flood: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let Some(limit) = apiserver::connections::soft_open_files_limit(&limits) else {
        return;
    };
    if limit < flood + FD_HEADROOM {
        println!(
            "  note: open-file limit {limit} is low for a flood of {flood}; raise it (ulimit -n)"
        );
    }
}

/// The admin client's own connection from 127.0.0.1 counts toward the cap too, and so may one
/// of the harness's readiness polls not yet counted out.
async fn connection_flood(flood: usize) {
    note_open_files_limit(flood);
    let target = Target::start(&[]).await;
    let config = Arc::new(tls_config(&target.server, &[b"http/1.1"]));
    let port = target.server.port;
    let run = target.run(&stream(NS, CALM));
    let opening = Instant::now();
    let held = tokio::task::spawn_blocking(move || open_flood(&config, port, flood))
        .await
        .unwrap_or_default();
    let opened_in = opening.elapsed();
    let other_source = client_from(&target.server, loopback(2));
    let other = served_within(&other_source, &target.url("/readyz"), OTHER_SOURCE_WAIT).await;
    let measured = run.finish().await;
    let accepted = held.len();
    drop(held);
    let other = other.map_or_else(
        || format!("not served within {} s", OTHER_SOURCE_WAIT.as_secs()),
        |took| format!("served in {:.0} ms", took.as_secs_f64() * 1e3),
    );
    let outcome = format!(
        "{accepted} of {flood} accepted in {:.1} s (cap {DEFAULT_PER_SOURCE_CAP}); 127.0.0.2 {other}",
        opened_in.as_secs_f64()
    );
    measured.print(
        &format!("6 flood of {flood} idle TLS connections"),
        &outcome,
        "at ~20,000 connections new clients could not connect for 45 s",
    );
}

// ---- 7. Unconditional patches under concurrency ----

/// Counts of each answer, as `18×200 2×409`.
fn tally(codes: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for code in codes {
        *counts.entry(code.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(code, count)| format!("{count}×{code}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The racers' annotations (`a<i>`) a stream kept.
fn racer_annotations(stream: &Value) -> usize {
    stream["metadata"]["annotations"]
        .as_object()
        .map_or(0, |annotations| {
            annotations
                .keys()
                .filter(|key| {
                    key.strip_prefix('a')
                        .is_some_and(|i| i.parse::<usize>().is_ok())
                })
                .count()
        })
}

async fn patch_race() {
    let target = Target::start(&[]).await;
    // The seed keeps the annotations map in place, as a labelled object's would be.
    target
        .create_stream(json!({"metadata": {"name": "race", "annotations": {"seed": "1"}}}))
        .await;
    let url = target.url(&stream(NS, "race"));
    let run = target.run(&stream(NS, CALM));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let http = target.admin.clone();
            let url = url.clone();
            let key = format!("a{i}");
            let body = json!({"metadata": {"annotations": {key: "v"}}}).to_string();
            tokio::spawn(async move {
                let body = Some(body.into_bytes());
                send(&http, Method::PATCH, &url, Some(MERGE_PATCH), body)
                    .await
                    .code()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for racer in racers {
        codes.push(racer.await.unwrap_or_else(|e| format!("task failed: {e}")));
    }
    let measured = run.finish().await;
    let kept = racer_annotations(
        &send(&target.admin, Method::GET, &url, None, None)
            .await
            .body,
    );
    measured.print(
        &format!("7 {RACERS} concurrent merge patches, no RV"),
        &format!("{}; {kept} of {RACERS} annotations kept", tally(&codes)),
        "7×200, 13×409",
    );
}

// ---- 8. The smaller items ----

fn print_small(label: &str, outcome: &str, before: &str) {
    println!("{label:<LABEL_WIDTH$} {outcome}   (before: {before})");
}

/// The permission bits of a file, as `0600`.
fn file_mode(path: &Path) -> String {
    std::fs::metadata(path).map_or_else(
        |e| format!("unreadable: {e}"),
        |meta| format!("{:04o}", meta.permissions().mode() & 0o777),
    )
}

/// How many days the first certificate of a PEM file is valid for.
fn certificate_validity_days(path: &Path) -> Result<i64, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let der = blackbox::pki::pem_certificates(&pem)
        .into_iter()
        .next()
        .ok_or("no certificate in the file")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| format!("{e:?}"))?;
    let validity = cert.validity();
    Ok((validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400)
}

async fn small_items() {
    println!("## 8. the smaller items (one fresh server; the answer each gets)");
    let target = Target::start(&[]).await;
    let get = |path: String| {
        let url = target.url(&path);
        let http = target.admin.clone();
        async move { send(&http, Method::GET, &url, None, None).await }
    };
    let list = get(streams(NS)).await;
    let listed = list.body["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse::<i64>().ok())
        .unwrap_or(0);
    let future = listed + 1000;
    let exact = format!(
        "{}?resourceVersion={future}&resourceVersionMatch=Exact",
        streams(NS)
    );
    print_small(
        "8a future resourceVersion, match=Exact",
        &get(exact).await.summary(),
        "500",
    );
    let huge = format!("{}?resourceVersion=18446744073709551615", streams(NS));
    print_small(
        "8b resourceVersion=18446744073709551615",
        &get(huge).await.summary(),
        "wrapped to a negative number and served",
    );
    let undecodable = "/apis/image.openshift.io/v1/namespaces/%ff/imagestreams".to_string();
    print_small(
        "8c GET .../namespaces/%ff/imagestreams",
        &get(undecodable).await.summary(),
        "400 in plain text",
    );
    let apply_url = target.url(&format!("{}?fieldManager=bench", stream(NS, "applied")));
    let empty_apply = Some(b"{}".to_vec());
    let apply = send(
        &target.admin,
        Method::PATCH,
        &apply_url,
        Some(APPLY),
        empty_apply,
    )
    .await;
    print_small("8d apply patch {}", &apply.summary(), "accepted");
    let data = target.server.data_dir();
    print_small(
        "8e store.redb mode",
        &file_mode(&data.join("store.redb")),
        "world-readable",
    );
    let days = certificate_validity_days(&data.join("apiserver.crt")).map_or_else(
        |e| format!("unreadable: {e}"),
        |days| format!("valid {days} days"),
    );
    print_small("8f serving certificate", &days, "valid about 2,000 years");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!(
        "# image-apiserver hostile-client benchmark (release build, this machine; client and \
         server share its cores)"
    );
    println!(
        "# a fresh embedded-store server per attack, so peak RSS (VmHWM) is that attack's; CPU \
         is the server's; a well-behaved client reads from 127.0.0.{BYSTANDER_SOURCE} every {} ms \
         during each attack",
        BYSTANDER_PAUSE.as_millis()
    );
    let wants = |attack: &str| args.only.iter().any(|only| only == attack);
    if wants("patch") {
        doubling_patch().await;
    }
    if wants("yaml") {
        deep_yaml_requests().await;
    }
    if wants("readyz") {
        two_deep_yaml_while_readyz_is_polled().await;
    }
    if wants("slowloris") {
        slowloris_attack().await;
    }
    if wants("idle") {
        idle_connections().await;
    }
    if wants("flood") {
        connection_flood(args.flood).await;
    }
    if wants("race") {
        patch_race().await;
    }
    if wants("small") {
        small_items().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_mib() {
        let status = "Name:\timage-apiserver\nVmHWM:\t  204800 kB\nVmRSS:\t   51300 kB\n";
        assert_eq!(status_field_mib(status, "VmHWM"), 200);
        assert_eq!(status_field_mib(status, "VmRSS"), 50);
        assert_eq!(status_field_mib(status, "VmSwap"), 0);
    }

    #[test]
    fn the_doubling_patch_is_small_and_copies_its_value_onto_itself() {
        let patch = doubling_json_patch(DOUBLING_COPIES);
        assert!(patch.len() < 4096, "{} bytes", patch.len());
        let ops: Value = serde_json::from_slice(&patch).expect("the patch is JSON");
        let ops = ops.as_array().expect("a JSON patch is an array");
        assert_eq!(ops.len(), DOUBLING_COPIES + 1);
        assert_eq!(ops[0]["op"], "add");
        assert_eq!(
            ops[DOUBLING_COPIES],
            json!({"op": "copy", "from": "/spec/x", "path": "/spec/x/-"})
        );
    }

    #[test]
    fn the_deep_yaml_nests_as_deep_as_asked() {
        let body = deep_yaml(DEEP);
        let opening = body.iter().filter(|b| **b == b'[').count();
        let closing = body.iter().filter(|b| **b == b']').count();
        assert_eq!((opening, closing), (DEEP, DEEP));
        assert!(body.starts_with(b"apiVersion: image.openshift.io/v1\n"));
        assert!(body.len() < 2 * DEEP + 200);
    }

    #[test]
    fn answers_are_summarized_by_what_their_body_is() {
        let status = Answer {
            status: Some(422),
            content_type: JSON.into(),
            body: json!({"kind": "Status", "reason": "Invalid", "message": "too large"}),
            error: String::new(),
        };
        assert_eq!(status.summary(), "422 Invalid: too large");
        let object = Answer {
            body: json!({"kind": "ImageStream"}),
            status: Some(200),
            ..Answer::failed("")
        };
        assert_eq!(object.summary(), "200 ImageStream");
        let text = Answer {
            status: Some(400),
            content_type: "text/plain".into(),
            ..Answer::failed("")
        };
        assert_eq!(text.summary(), "400 (text/plain, not a Status)");
        assert_eq!(Answer::failed("reset").summary(), "no answer: reset");
        assert_eq!(Answer::failed("reset").code(), "no answer");
    }

    #[test]
    fn long_messages_are_cut_on_characters() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("ééééé", 3), "ééé…");
    }

    #[test]
    fn tallies_count_each_answer() {
        let codes: Vec<String> = ["200", "409", "200", "no answer"]
            .iter()
            .map(|code| code.to_string())
            .collect();
        assert_eq!(tally(&codes), "2×200 1×409 1×no answer");
        assert_eq!(tally(&[]), "");
    }

    #[test]
    fn closes_are_described_by_range_and_counts() {
        let closes = [
            Close::After(Duration::from_millis(5100)),
            Close::After(Duration::from_millis(5400)),
            Close::StillOpen,
            Close::Failed("refused".into()),
        ];
        assert_eq!(
            describe_closes(&closes),
            "2 closed after 5.1-5.4 s, 1 open after 15 s, 1 failed to connect"
        );
        assert_eq!(describe_closes(&closes[..1]), "1 closed after 5.1-5.1 s");
        assert_eq!(closes[2].describe(), "open after 15 s");
    }

    #[test]
    fn a_read_that_hits_the_end_reports_the_close() {
        let started = Instant::now();
        let mut empty: &[u8] = &[];
        let deadline = started + Duration::from_secs(1);
        assert!(wait_for_close(&mut empty, started, deadline).is_some());
    }

    #[test]
    fn only_the_racers_annotations_are_counted() {
        let stream =
            json!({"metadata": {"annotations": {"seed": "1", "a0": "v", "a19": "v", "ab": "v"}}});
        assert_eq!(racer_annotations(&stream), 2);
        assert_eq!(racer_annotations(&json!({})), 0);
    }
}
