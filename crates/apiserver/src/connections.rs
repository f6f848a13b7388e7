//! Connection hygiene, as kube-apiserver's Go HTTP server has it: a connection must finish its
//! TLS handshake and send each request head within the header-read timeout, may sit between
//! requests for the idle timeout, and one client may hold only so many connections.
//!
//! hyper enforces none of this as kube does: its HTTP/1 head timer also runs while a kept-alive
//! connection waits for its next request (so it would be the idle timeout too), and HTTP/2 has no
//! idle rule at all. So every connection carries a [`ConnectionActivity`]: the requests in flight
//! ([`InFlight`], held from the service call until the response body ends) and the quiet phase
//! since the last one ended. The connection's stream ([`TrackedStream`]) enforces that phase's
//! deadline by failing its I/O, which makes hyper drop the connection. A request in flight has
//! no deadline of this kind, however quiet (a watch with no events), since the request timeout
//! and the watch's own lifetime bound it; a peer that stops reading what it is sent is cut after
//! the idle timeout all the same.
//!
//! [`ConnectionCounter`] caps the connections per source address and in all; the acceptor asks
//! it before any TLS work is spent on a connection.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::HttpBody;
use axum_server::ConnectionShutdown;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Go's `http.Server.ReadHeaderTimeout` in k8s.io/apiserver's secure serving.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);
/// Go's `http.Server.IdleTimeout` (and the HTTP/2 server's) in k8s.io/apiserver.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Enough for any real client (the front proxy multiplexes over HTTP/2), while one source
/// cannot take the server near its file-descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS_PER_SOURCE: usize = 512;
/// kube-apiserver's default for `--http2-max-streams-per-connection`.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 1000;
/// Go's default for a zero `--http2-max-streams-per-connection`, as k8s.io/apiserver says.
const GO_HTTP2_MAX_STREAMS: u32 = 250;
/// Go's `http.DefaultMaxHeaderBytes`, which k8s.io/apiserver sets explicitly.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 1 << 20;
/// Go's listener keep-alive (`net.ListenConfig.KeepAlive`): idle time and probe interval.
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// client-go's HTTP/2 health check (`ReadIdleTimeout`, `PingTimeout`), from our side.
pub const DEFAULT_HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(15);
/// kube's `resourceBody99Percentile`: its HTTP/2 frame size and per-stream upload window.
pub const HTTP2_FRAME_AND_STREAM_WINDOW: u32 = 256 * 1024;
/// kube sizes the connection window as stream window × streams; at Go's 250 streams that is
/// this much, which stays our ceiling so one connection cannot make us buffer 250 MiB.
const HTTP2_MAX_CONNECTION_WINDOW: u32 = HTTP2_FRAME_AND_STREAM_WINDOW * GO_HTTP2_MAX_STREAMS;
/// Sized like a frame, so a stream buffers one frame's worth of response ahead of the peer.
pub const HTTP2_SEND_BUFFER: usize = 256 * 1024;
/// h2's own default, stated: reset streams not yet accepted before the connection gets GOAWAY
/// (the rapid-reset attack, CVE-2023-44487).
pub const HTTP2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// hyper's own default, stated: streams we reset for protocol errors before GOAWAY
/// (RUSTSEC-2024-0003).
pub const HTTP2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Go has no header count limit; hyper's default of 100 would refuse a front-proxied user in
/// many groups (one `X-Remote-Group` line each). The byte limit still bounds the head.
pub const HTTP1_MAX_HEADERS: usize = 1000;
/// hyper refuses a smaller HTTP/1 buffer.
const HTTP1_MIN_BUFFER: usize = 8192;
/// Without a readable open-file limit, the connection cap in all.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;
/// How long a connection asked to close gracefully after idling may take before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Refused connections are logged at most this often per source (and for the global cap).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long connections may take and how many there may be. Zero durations disable a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection's first request head, and every later one from its first byte, must arrive
    /// within this (`--http-header-read-timeout`).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this; HTTP/2 ones get GOAWAY
    /// (`--http-idle-timeout`).
    pub idle_timeout: Duration,
    /// The TLS handshake's bound; `None`: the header-read timeout, as Go's server does.
    pub handshake_timeout: Option<Duration>,
    /// Connections one source (an IPv4 address, an IPv6 /64) may hold; 0: no cap
    /// (`--max-connections-per-source`).
    pub max_connections_per_source: usize,
    /// Connections in all; `None`: three quarters of the open-file limit (`--max-connections`).
    pub max_connections: Option<usize>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`; 0: Go's 250 (`--http2-max-streams-per-connection`).
    pub http2_max_streams_per_connection: u32,
    /// The largest request head: HTTP/1 head bytes, HTTP/2 header list size.
    pub max_header_bytes: usize,
    /// TCP keep-alive idle time and probe interval, so dead peers of quiet requests are found.
    pub tcp_keepalive: Duration,
    /// HTTP/2 pings sent after this long without a frame from the peer.
    pub http2_keepalive_interval: Duration,
    /// An unanswered HTTP/2 ping closes the connection after this.
    pub http2_keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: None,
            max_connections_per_source: DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
            max_connections: None,
            http2_max_streams_per_connection: DEFAULT_HTTP2_MAX_STREAMS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            tcp_keepalive: DEFAULT_TCP_KEEPALIVE,
            http2_keepalive_interval: DEFAULT_HTTP2_KEEPALIVE_INTERVAL,
            http2_keepalive_timeout: DEFAULT_HTTP2_KEEPALIVE_TIMEOUT,
        }
    }
}

impl ConnectionLimits {
    /// The deadlines a connection's stream enforces.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            header_read: enabled(self.header_read_timeout),
            idle: enabled(self.idle_timeout),
        }
    }

    /// The TLS handshake's bound; `Duration::MAX` (never) when disabled.
    pub fn effective_handshake_timeout(&self) -> Duration {
        let timeout = self.handshake_timeout.unwrap_or(self.header_read_timeout);
        if timeout.is_zero() {
            Duration::MAX
        } else {
            timeout
        }
    }

    /// The cap on connections in all.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(default_max_connections)
    }

    /// The counter for these caps.
    pub fn counter(&self) -> ConnectionCounter {
        ConnectionCounter::new(
            self.max_connections_per_source,
            self.effective_max_connections(),
        )
    }

    /// hyper's own HTTP/1 head timer, kept as a backstop to ours. It starts when a kept-alive
    /// connection begins waiting, so it must allow the idle time and a head after it, as Go
    /// does; `None` when either is unbounded.
    pub fn http1_header_read_backstop(&self) -> Option<Duration> {
        let timeouts = self.timeouts();
        Some(timeouts.header_read?.saturating_add(timeouts.idle?))
    }

    /// hyper's HTTP/1 buffer: it bounds the request head.
    pub fn http1_max_buffer(&self) -> usize {
        self.max_header_bytes.max(HTTP1_MIN_BUFFER)
    }

    pub fn http2_max_streams(&self) -> u32 {
        match self.http2_max_streams_per_connection {
            0 => GO_HTTP2_MAX_STREAMS,
            streams => streams,
        }
    }

    pub fn http2_max_header_list_size(&self) -> u32 {
        u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX)
    }

    /// kube's stream window × streams, up to `HTTP2_MAX_CONNECTION_WINDOW`.
    pub fn http2_connection_window(&self) -> u32 {
        HTTP2_FRAME_AND_STREAM_WINDOW
            .saturating_mul(self.http2_max_streams())
            .min(HTTP2_MAX_CONNECTION_WINDOW)
    }

    /// `None` disables HTTP/2 pings.
    pub fn http2_ping_interval(&self) -> Option<Duration> {
        enabled(self.http2_keepalive_interval)
    }

    /// `None` disables TCP keep-alive.
    pub fn tcp_keepalive_interval(&self) -> Option<Duration> {
        enabled(self.tcp_keepalive)
    }
}

fn enabled(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then_some(timeout)
}

/// Three quarters of the soft open-file limit: the rest stays for the store, etcd, registries
/// and the cluster clients, which must keep working while clients flood the port.
pub fn default_max_connections() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(soft_open_files_limit)
        .map_or(FALLBACK_MAX_CONNECTIONS, |limit| limit / 4 * 3)
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text; `None` when unlimited or absent.
pub fn soft_open_files_limit(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The counts stay consistent across a panic elsewhere: every update is one statement.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- Connections per source ----

/// Whose connections count together: an IPv4 address, or an IPv6 /64 (one host's usual share,
/// so an attacker cannot pick a fresh address per connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    pub fn of(peer: IpAddr) -> Self {
        match peer.to_canonical() {
            IpAddr::V4(v4) => SourceKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                SourceKey(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Why a connection was closed right after it was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{client} already holds {limit} connections (--max-connections-per-source)")]
    PerSource { client: SourceKey, limit: usize },
    #[error("the server already holds {limit} connections (--max-connections)")]
    Total { limit: usize },
}

/// Open connections per source and in all, against their caps (0: none).
#[derive(Clone, Debug)]
pub struct ConnectionCounter {
    shared: Arc<Mutex<Counts>>,
    per_source: usize,
    total: usize,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    sources: HashMap<SourceKey, SourceCount>,
    total_refusals: RefusalLog,
}

#[derive(Debug, Default)]
struct SourceCount {
    open: usize,
    refusals: RefusalLog,
}

/// Counts refusals between log lines, so a flood costs one line per interval.
#[derive(Debug, Default)]
struct RefusalLog {
    reported_at: Option<Instant>,
    unreported: u64,
}

impl RefusalLog {
    /// Counts one refusal; when a log line is due, returns how many it reports.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        let due = self
            .reported_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

impl ConnectionCounter {
    pub fn new(per_source: usize, total: usize) -> Self {
        ConnectionCounter {
            shared: Arc::new(Mutex::new(Counts::default())),
            per_source,
            total,
        }
    }

    /// Admits one more connection from `peer`, or says which cap it would break.
    pub fn try_acquire(&self, peer: IpAddr, now: Instant) -> Result<ConnectionPermit, Refused> {
        let source = SourceKey::of(peer);
        let (refused, report) = {
            let mut guard = lock(&self.shared);
            let counts = &mut *guard;
            if self.total > 0 && counts.open >= self.total {
                let refused = Refused::Total { limit: self.total };
                (refused, counts.total_refusals.refused(now))
            } else {
                let entry = counts.sources.entry(source).or_default();
                if self.per_source > 0 && entry.open >= self.per_source {
                    let refused = Refused::PerSource {
                        client: source,
                        limit: self.per_source,
                    };
                    (refused, entry.refusals.refused(now))
                } else {
                    entry.open += 1;
                    counts.open += 1;
                    return Ok(ConnectionPermit {
                        shared: Arc::clone(&self.shared),
                        source,
                    });
                }
            }
        };
        if let Some(count) = report {
            tracing::warn!(
                refused_connections = count,
                reason = %refused,
                "refusing connections (logged at most every {REFUSAL_LOG_INTERVAL:?})"
            );
        }
        Err(refused)
    }

    /// Open connections in all.
    pub fn open(&self) -> usize {
        lock(&self.shared).open
    }

    /// Open connections from `peer`'s source.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        lock(&self.shared)
            .sources
            .get(&SourceKey::of(peer))
            .map_or(0, |entry| entry.open)
    }
}

/// One counted connection; dropping it counts it out.
#[derive(Debug)]
pub struct ConnectionPermit {
    shared: Arc<Mutex<Counts>>,
    source: SourceKey,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut guard = lock(&self.shared);
        let counts = &mut *guard;
        counts.open = counts.open.saturating_sub(1);
        let unused = match counts.sources.get_mut(&self.source) {
            Some(entry) => {
                entry.open = entry.open.saturating_sub(1);
                entry.open == 0
            }
            None => false,
        };
        if unused {
            counts.sources.remove(&self.source);
        }
    }
}

// ---- One connection's activity ----

/// The deadlines of a connection's quiet phases; `None` disables one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Option<Duration>,
    pub idle: Option<Duration>,
}

/// The protocol a connection negotiated, which decides what bytes between requests mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Bytes after an idle spell are the next request's head: the header-read timeout applies.
    Http1,
    /// Bytes between requests may be pings and settings: only the idle timeout applies, as in
    /// Go's HTTP/2 server.
    Http2,
}

impl Protocol {
    /// From the TLS ALPN result; a client that named no protocol speaks HTTP/1.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Self {
        if alpn == Some(&b"h2"[..]) {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

/// Why a connection was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Expired {
    #[error("no complete request head within the header-read timeout of {0:?}")]
    HeaderRead(Duration),
    #[error("no request for the idle timeout of {0:?}")]
    Idle(Duration),
    #[error("the client read nothing it was sent for the idle timeout of {0:?}")]
    WriteStalled(Duration),
}

/// What a connection's stream does about deadlines now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing yet; look again by this instant (`None`: no deadline applies).
    Wait(Option<Instant>),
    /// Fail the stream's I/O, which ends the connection.
    Expired(Expired),
}

impl Check {
    /// The more urgent of two checks.
    fn earliest(self, other: Check) -> Check {
        match (self, other) {
            (Check::Expired(expired), _) | (_, Check::Expired(expired)) => Check::Expired(expired),
            (Check::Wait(Some(a)), Check::Wait(Some(b))) => Check::Wait(Some(a.min(b))),
            (Check::Wait(a), Check::Wait(b)) => Check::Wait(a.or(b)),
        }
    }
}

/// Where a connection with no request in flight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quiet {
    /// A request head is due: since the connection opened, or since the first byte reached an
    /// idle HTTP/1 connection.
    AwaitingHead { since: Instant },
    /// Between requests, since the last response ended.
    Idle { since: Instant },
    /// Asked to close gracefully after idling; cut if that takes too long.
    Closing { since: Instant },
}

/// The requests in flight on one connection and its quiet phase, shared by the connection's
/// stream (which enforces the deadlines) and its service (which counts requests).
#[derive(Debug)]
pub struct ConnectionActivity {
    protocol: Protocol,
    timeouts: Timeouts,
    state: Mutex<ActivityState>,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: usize,
    quiet: Quiet,
    /// The connection task, woken when the last request ends so that it arms the idle timer
    /// (an HTTP/2 response ends in another task while the connection waits on a read).
    waker: Option<Waker>,
    /// axum-server's handle on the connection, from its first request: a graceful close.
    shutdown: Option<ConnectionShutdown>,
}

impl ConnectionActivity {
    /// A connection that has just finished its TLS handshake at `now`.
    pub fn new(protocol: Protocol, timeouts: Timeouts, now: Instant) -> Arc<Self> {
        Arc::new(ConnectionActivity {
            protocol,
            timeouts,
            state: Mutex::new(ActivityState {
                in_flight: 0,
                quiet: Quiet::AwaitingHead { since: now },
                waker: None,
                shutdown: None,
            }),
        })
    }

    /// Bytes arrived: on an idle HTTP/1 connection, the next request's head has begun.
    pub fn record_read(&self, now: Instant) {
        if self.protocol != Protocol::Http1 {
            return;
        }
        let mut state = lock(&self.state);
        if state.in_flight == 0 && matches!(state.quiet, Quiet::Idle { .. }) {
            state.quiet = Quiet::AwaitingHead { since: now };
        }
    }

    /// Keeps the handle that closes the connection gracefully, the first time one is seen.
    pub fn remember_shutdown(&self, shutdown: &ConnectionShutdown) {
        let mut state = lock(&self.state);
        if state.shutdown.is_none() {
            state.shutdown = Some(shutdown.clone());
        }
    }

    fn request_started(&self) {
        lock(&self.state).in_flight += 1;
    }

    fn request_finished(&self, now: Instant) {
        let waker = {
            let mut guard = lock(&self.state);
            let state = &mut *guard;
            state.in_flight = state.in_flight.saturating_sub(1);
            if state.in_flight > 0 {
                return;
            }
            if !matches!(state.quiet, Quiet::Closing { .. }) {
                state.quiet = Quiet::Idle { since: now };
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The requests in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).in_flight
    }

    /// What the deadlines say at `now`; remembers `waker` as the connection task's. An idle
    /// connection that served a request is first asked to close gracefully (HTTP/2 sends
    /// GOAWAY, so no client loses a request to a connection it believed open) and cut only if
    /// that takes longer than `CLOSE_GRACE`.
    pub fn check(&self, now: Instant, waker: &Waker) -> Check {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if !state
            .waker
            .as_ref()
            .is_some_and(|known| known.will_wake(waker))
        {
            state.waker = Some(waker.clone());
        }
        if state.in_flight > 0 {
            return Check::Wait(None);
        }
        let Timeouts { header_read, idle } = self.timeouts;
        match state.quiet {
            Quiet::AwaitingHead { since } => {
                check_deadline(since, header_read, now, Expired::HeaderRead)
            }
            Quiet::Idle { since } => {
                let check = check_deadline(since, idle, now, Expired::Idle);
                match (check, &state.shutdown) {
                    (Check::Expired(_), Some(shutdown)) => {
                        shutdown.graceful_shutdown();
                        let grace = idle.map_or(CLOSE_GRACE, close_grace);
                        state.quiet = Quiet::Closing { since: now };
                        Check::Wait(now.checked_add(grace))
                    }
                    (check, _) => check,
                }
            }
            Quiet::Closing { since } => {
                let grace = idle.map_or(CLOSE_GRACE, close_grace);
                let idle = idle.unwrap_or(grace);
                check_deadline(since, Some(grace), now, |_| Expired::Idle(idle))
            }
        }
    }
}

/// Short idle timeouts (tests) get a grace as short.
fn close_grace(idle: Duration) -> Duration {
    idle.min(CLOSE_GRACE)
}

fn check_deadline(
    since: Instant,
    timeout: Option<Duration>,
    now: Instant,
    expired: impl FnOnce(Duration) -> Expired,
) -> Check {
    let Some(timeout) = timeout else {
        return Check::Wait(None);
    };
    match since.checked_add(timeout) {
        Some(deadline) if now >= deadline => Check::Expired(expired(timeout)),
        deadline => Check::Wait(deadline),
    }
}

/// One request on a connection, from the service call until its response body ends or is
/// dropped (a reset stream, a client gone).
#[derive(Debug)]
pub struct InFlight(Arc<ConnectionActivity>);

impl InFlight {
    pub fn start(activity: &Arc<ConnectionActivity>) -> Self {
        activity.request_started();
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// A response body that keeps its request counted as in flight until it ends.
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        TrackedBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl<B> HttpBody for TrackedBody<B>
where
    B: HttpBody + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            // hyper may keep an ended body around; the request is over now.
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's byte stream, failing its I/O once a deadline of the connection's
/// [`ConnectionActivity`] passes or once the peer has read nothing it was sent for the idle
/// timeout. It holds the connection's [`ConnectionPermit`], so the connection counts until
/// hyper drops it.
pub struct TrackedStream<S> {
    inner: S,
    activity: Arc<ConnectionActivity>,
    timer: Option<Pin<Box<Sleep>>>,
    write_stalled_since: Option<Instant>,
    _permit: Option<ConnectionPermit>,
}

impl<S> fmt::Debug for TrackedStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedStream")
            .field("activity", &self.activity)
            .field("write_stalled_since", &self.write_stalled_since)
            .finish_non_exhaustive()
    }
}

impl<S> TrackedStream<S> {
    pub fn new(
        inner: S,
        activity: Arc<ConnectionActivity>,
        permit: Option<ConnectionPermit>,
    ) -> Self {
        TrackedStream {
            inner,
            activity,
            timer: None,
            write_stalled_since: None,
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Called when the inner stream is not ready: fails once a deadline has passed, else arms
    /// the timer for the next one (the inner stream has registered the waker for its I/O).
    fn poll_deadlines<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let now = Instant::now();
        let check = self
            .activity
            .check(now, cx.waker())
            .earliest(self.write_stall(now));
        match check {
            Check::Expired(expired) => {
                tracing::debug!(reason = %expired, "closing connection");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, expired)))
            }
            Check::Wait(None) => Poll::Pending,
            Check::Wait(Some(deadline)) => {
                self.arm(deadline, cx);
                Poll::Pending
            }
        }
    }

    fn arm(&mut self, deadline: Instant, cx: &mut Context<'_>) {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            // It passed while we looked: look again at once rather than never.
            cx.waker().wake_by_ref();
        }
    }

    fn write_stall(&self, now: Instant) -> Check {
        match self.write_stalled_since {
            Some(since) => check_deadline(
                since,
                self.activity.timeouts.idle,
                now,
                Expired::WriteStalled,
            ),
            None => Check::Wait(None),
        }
    }

    fn after_write<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                self.write_stalled_since.get_or_insert_with(Instant::now);
                self.poll_deadlines(cx)
            }
            ready => {
                self.write_stalled_since = None;
                ready
            }
        }
    }
}

impl<S> AsyncRead for TrackedStream<S>
where
    S: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let filled = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > filled {
                    this.activity.record_read(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.poll_deadlines(cx),
        }
    }
}

impl<S> AsyncWrite for TrackedStream<S>
where
    S: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(polled, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(polled, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after_write(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const HEAD: Duration = Duration::from_secs(32);
    const IDLE: Duration = Duration::from_secs(90);

    fn timeouts() -> Timeouts {
        Timeouts {
            header_read: Some(HEAD),
            idle: Some(IDLE),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    // ---- Limits ----

    #[test]
    fn defaults_are_kube_apiservers() {
        let limits = ConnectionLimits::default();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(32));
        assert_eq!(limits.idle_timeout, Duration::from_secs(90));
        // Go bounds the TLS handshake by the header-read timeout.
        assert_eq!(
            limits.effective_handshake_timeout(),
            Duration::from_secs(32)
        );
        assert_eq!(limits.http2_max_streams(), 1000);
        assert_eq!(limits.http2_max_header_list_size(), 1 << 20);
        assert_eq!(limits.http1_max_buffer(), 1 << 20);
        assert_eq!(
            limits.http1_header_read_backstop(),
            Some(Duration::from_secs(122))
        );
        assert_eq!(limits.http2_connection_window(), 250 * 256 * 1024);
    }

    #[test]
    fn zero_disables_a_timeout_and_zero_streams_means_gos_default() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::ZERO,
            idle_timeout: Duration::ZERO,
            http2_max_streams_per_connection: 0,
            http2_keepalive_interval: Duration::ZERO,
            max_header_bytes: 10,
            ..ConnectionLimits::default()
        };
        assert_eq!(
            limits.timeouts(),
            Timeouts {
                header_read: None,
                idle: None
            }
        );
        assert_eq!(limits.effective_handshake_timeout(), Duration::MAX);
        assert_eq!(limits.http1_header_read_backstop(), None);
        assert_eq!(limits.http2_max_streams(), 250);
        assert_eq!(limits.http2_ping_interval(), None);
        assert_eq!(limits.http1_max_buffer(), 8192, "hyper's minimum");
        let small = ConnectionLimits {
            http2_max_streams_per_connection: 10,
            ..ConnectionLimits::default()
        };
        assert_eq!(small.http2_connection_window(), 10 * 256 * 1024);
        let explicit = ConnectionLimits {
            handshake_timeout: Some(Duration::from_secs(10)),
            ..ConnectionLimits::default()
        };
        assert_eq!(
            explicit.effective_handshake_timeout(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20480                1048576              files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(20480));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files_limit(unlimited), None);
        assert_eq!(
            soft_open_files_limit("Max processes 10 10 processes\n"),
            None
        );
        assert!(default_max_connections() > 0);
    }

    // ---- Connections per source ----

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        let mapped = ip("::ffff:10.1.2.3");
        assert_eq!(SourceKey::of(mapped), SourceKey::of(ip("10.1.2.3")));
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_ne!(SourceKey::of(ip("10.0.0.1")), SourceKey::of(ip("10.0.0.2")));
        assert_eq!(SourceKey::of(ip("10.1.2.3")).to_string(), "10.1.2.3");
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn a_source_at_its_cap_is_refused_until_one_of_its_connections_closes() {
        let counter = ConnectionCounter::new(2, 0);
        let now = Instant::now();
        let a = ip("10.0.0.1");
        let first = counter.try_acquire(a, now).expect("first");
        let _second = counter.try_acquire(a, now).expect("second");
        assert_eq!(
            counter.try_acquire(a, now).expect_err("third"),
            Refused::PerSource {
                client: SourceKey::of(a),
                limit: 2
            }
        );
        // Loopback is a source like any other, and other sources are not affected.
        let _other = counter
            .try_acquire(ip("127.0.0.1"), now)
            .expect("another source");
        assert_eq!(counter.open(), 3);
        drop(first);
        assert_eq!(counter.open_from(a), 1);
        let _again = counter.try_acquire(a, now).expect("a slot was freed");
    }

    #[test]
    fn the_total_cap_holds_across_sources_and_counts_are_forgotten_at_zero() {
        let counter = ConnectionCounter::new(0, 2);
        let now = Instant::now();
        let first = counter.try_acquire(ip("10.0.0.1"), now).expect("first");
        let second = counter.try_acquire(ip("10.0.0.2"), now).expect("second");
        assert_eq!(
            counter
                .try_acquire(ip("10.0.0.3"), now)
                .expect_err("over the total"),
            Refused::Total { limit: 2 }
        );
        drop((first, second));
        assert_eq!(counter.open(), 0);
        assert!(lock(&counter.shared).sources.is_empty());
        let unlimited = ConnectionCounter::new(0, 0);
        let permits: Vec<_> = (0..1000)
            .map(|_| unlimited.try_acquire(ip("10.0.0.1"), now).expect("no cap"))
            .collect();
        assert_eq!(unlimited.open_from(ip("10.0.0.1")), permits.len());
    }

    #[test]
    fn refusals_are_reported_at_most_once_per_interval_with_their_count() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.refused(start), Some(1));
        assert_eq!(log.refused(start + Duration::from_secs(1)), None);
        assert_eq!(log.refused(start + Duration::from_secs(9)), None);
        assert_eq!(log.refused(start + Duration::from_secs(10)), Some(3));
        assert_eq!(log.refused(start + Duration::from_secs(11)), None);
    }

    // ---- Deadlines, as pure state ----

    fn noop_waker() -> Waker {
        futures::task::noop_waker()
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_has_no_deadline_and_its_end_starts_the_idle_one() {
        let start = Instant::now();
        let activity = ConnectionActivity::new(Protocol::Http1, timeouts(), start);
        let waker = noop_waker();
        assert_eq!(
            activity.check(start, &waker),
            Check::Wait(Some(start + HEAD))
        );
        let request = InFlight::start(&activity);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(activity.check(much_later, &waker), Check::Wait(None));
        drop(request);
        let ended = Instant::now();
        assert_eq!(activity.in_flight(), 0);
        assert_eq!(
            activity.check(ended, &waker),
            Check::Wait(Some(ended + IDLE))
        );
        assert_eq!(
            activity.check(ended + IDLE, &waker),
            Check::Expired(Expired::Idle(IDLE))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http1_bytes_after_an_idle_spell_start_the_head_deadline_but_http2_ones_do_not() {
        let start = Instant::now();
        let waker = noop_waker();
        for (protocol, expected) in [
            (Protocol::Http1, HEAD + Duration::from_secs(10)),
            (Protocol::Http2, IDLE),
        ] {
            let activity = ConnectionActivity::new(protocol, timeouts(), start);
            drop(InFlight::start(&activity));
            let idle_since = Instant::now();
            activity.record_read(idle_since + Duration::from_secs(10));
            assert_eq!(
                activity.check(idle_since, &waker),
                Check::Wait(Some(idle_since + expected)),
                "{protocol:?}"
            );
        }
    }

    #[test]
    fn bytes_do_not_extend_the_first_head_deadline() {
        let start = Instant::now();
        let activity = ConnectionActivity::new(Protocol::Http1, timeouts(), start);
        activity.record_read(start + Duration::from_secs(30));
        assert_eq!(
            activity.check(start + HEAD, &noop_waker()),
            Check::Expired(Expired::HeaderRead(HEAD))
        );
    }

    #[test]
    fn disabled_timeouts_set_no_deadline() {
        let start = Instant::now();
        let none = Timeouts {
            header_read: None,
            idle: None,
        };
        let activity = ConnectionActivity::new(Protocol::Http1, none, start);
        assert_eq!(activity.check(start, &noop_waker()), Check::Wait(None));
        drop(InFlight::start(&activity));
        assert_eq!(
            activity.check(start + IDLE * 100, &noop_waker()),
            Check::Wait(None)
        );
    }

    #[test]
    fn the_end_of_the_last_request_wakes_the_connection_task() {
        let activity = ConnectionActivity::new(Protocol::Http2, timeouts(), Instant::now());
        let woken = Arc::new(WakeCount::default());
        let waker = Waker::from(Arc::clone(&woken));
        let first = InFlight::start(&activity);
        let second = InFlight::start(&activity);
        assert_eq!(activity.check(Instant::now(), &waker), Check::Wait(None));
        drop(first);
        assert_eq!(woken.count(), 0, "a request is still in flight");
        drop(second);
        assert_eq!(woken.count(), 1);
    }

    #[derive(Default)]
    struct WakeCount(std::sync::atomic::AtomicUsize);

    impl WakeCount {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn earliest_prefers_expiry_then_the_sooner_deadline() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let expired = Check::Expired(Expired::Idle(IDLE));
        assert_eq!(Check::Wait(Some(now)).earliest(expired), expired);
        assert_eq!(
            Check::Wait(Some(later)).earliest(Check::Wait(Some(now))),
            Check::Wait(Some(now))
        );
        assert_eq!(
            Check::Wait(None).earliest(Check::Wait(Some(later))),
            Check::Wait(Some(later))
        );
        assert_eq!(
            Check::Wait(None).earliest(Check::Wait(None)),
            Check::Wait(None)
        );
    }

    // ---- Deadlines, through the stream, on a paused clock ----

    fn tracked(
        protocol: Protocol,
    ) -> (
        TrackedStream<DuplexStream>,
        DuplexStream,
        Arc<ConnectionActivity>,
    ) {
        let (client, server) = tokio::io::duplex(64);
        let activity = ConnectionActivity::new(protocol, timeouts(), Instant::now());
        let stream = TrackedStream::new(server, Arc::clone(&activity), None);
        (stream, client, activity)
    }

    /// Reads until the stream fails; returns the failure.
    async fn read_until_cut(stream: &mut TrackedStream<DuplexStream>) -> Expired {
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => panic!("the peer closed, the deadline did not"),
                Ok(_) => {}
                Err(error) => return expired_of(&error),
            }
        }
    }

    /// The paused clock moves in timer ticks of a millisecond.
    fn assert_about(actual: Duration, expected: Duration) {
        let slack = Duration::from_millis(5);
        assert!(
            actual >= expected && actual <= expected + slack,
            "took {actual:?}, expected {expected:?}"
        );
    }

    fn expired_of(error: &io::Error) -> Expired {
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        *error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Expired>())
            .expect("an Expired error")
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_cut_at_the_header_read_timeout() {
        let (mut stream, _client, _) = tracked(Protocol::Http1);
        let start = Instant::now();
        assert_eq!(read_until_cut(&mut stream).await, Expired::HeaderRead(HEAD));
        assert_about(start.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_trickling_in_is_cut_at_the_header_read_timeout() {
        let (mut stream, mut client, _) = tracked(Protocol::Http1);
        let start = Instant::now();
        let slowloris = tokio::spawn(async move {
            client
                .write_all(b"GET / HTTP/1.1\r\n")
                .await
                .expect("request line");
            for line in 0.. {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let header = format!("X-Slow-{line}: 1\r\n");
                if client.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        assert_eq!(read_until_cut(&mut stream).await, Expired::HeaderRead(HEAD));
        assert_about(start.elapsed(), HEAD);
        slowloris.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_request_is_not_cut_and_the_idle_deadline_follows_its_end() {
        let (mut stream, _client, activity) = tracked(Protocol::Http2);
        let start = Instant::now();
        let request = InFlight::start(&activity);
        let reader = tokio::spawn(async move {
            let expired = read_until_cut(&mut stream).await;
            (expired, Instant::now())
        });
        // Far past both timeouts, with the reader parked on the stream all along.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!reader.is_finished(), "a request in flight was cut");
        drop(request);
        let (expired, at) = reader.await.expect("reader task");
        assert_eq!(expired, Expired::Idle(IDLE));
        assert_about(at - start, Duration::from_secs(600) + IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_is_cut_after_the_idle_timeout() {
        let (mut stream, _client, activity) = tracked(Protocol::Http1);
        let _request = InFlight::start(&activity);
        let start = Instant::now();
        // More than the 64-byte pipe holds, and the peer never reads.
        let error = stream
            .write_all(&[b'x'; 1024])
            .await
            .expect_err("a stalled write fails");
        assert_eq!(expired_of(&error), Expired::WriteStalled(IDLE));
        assert_about(start.elapsed(), IDLE);
    }

    #[tokio::test]
    async fn a_tracked_body_counts_its_request_until_it_ends() {
        let activity = ConnectionActivity::new(Protocol::Http1, timeouts(), Instant::now());
        let mut body =
            TrackedBody::new(axum::body::Body::from("hello"), InFlight::start(&activity));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(activity.in_flight(), 1);
        let mut frames = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            frame.expect("a frame");
            frames += 1;
        }
        assert_eq!(frames, 1);
        assert_eq!(
            activity.in_flight(),
            0,
            "released at the end, before the drop"
        );
        drop(body);
        assert_eq!(activity.in_flight(), 0);
        let dropped = TrackedBody::new(axum::body::Body::empty(), InFlight::start(&activity));
        assert_eq!(activity.in_flight(), 1);
        drop(dropped);
        assert_eq!(activity.in_flight(), 0);
    }

    #[test]
    fn alpn_h2_is_http2_and_anything_else_http1() {
        assert_eq!(Protocol::from_alpn(Some(&b"h2"[..])), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(&b"http/1.1"[..])), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
