//! The HTTPS listener: axum-server over rustls, with connection hygiene
//! ([`crate::connections`]). Each accepted connection is counted against the per-source and
//! total caps before any TLS work, must finish its handshake in time, and is served through a
//! [`TrackedStream`] (the header-read, idle and stalled-write deadlines), with HTTP/2's writes
//! batched ([`BatchedWrites`]), and a [`TrackedService`], which counts its requests in flight and puts the client certificate chain
//! into every request as [`PeerCertificates`], where the authenticators look for it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use axum_server::accept::{Accept, TcpConfigAcceptor, TcpKeepaliveConfig, TcpSocketConfig};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::ConnectionShutdown;
use futures::future::BoxFuture;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::Service;

use crate::auth::PeerCertificates;
use crate::connections::{
    ConnectionActivity, ConnectionCounter, ConnectionLimits, ConnectionPermit, InFlight, Protocol,
    Timeouts, TrackedBody, TrackedStream, HTTP1_MAX_HEADERS, HTTP2_FRAME_AND_STREAM_WINDOW,
    HTTP2_MAX_LOCAL_ERROR_RESETS, HTTP2_MAX_PENDING_ACCEPT_RESETS, HTTP2_SEND_BUFFER,
};
use crate::write_batch::BatchedWrites;

/// Linux's default keep-alive probe count, which Go keeps too: a dead peer is found after
/// the idle time plus this many unanswered probes.
const TCP_KEEPALIVE_PROBES: u32 = 9;

/// Binds `addr` for HTTPS with `config` under `limits`; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` to see client addresses as well.
pub fn bind(
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    limits: &ConnectionLimits,
) -> axum_server::Server<SocketAddr, Acceptor> {
    let acceptor = Acceptor::new(RustlsConfig::from_config(config), limits);
    let mut server = axum_server::bind(addr).acceptor(acceptor);
    configure_protocols(&mut server, limits);
    server
}

/// As [`bind`], on a listener the caller opened: a caller that binds first can report a busy
/// address before it writes anything, and choose when connections start to be taken.
pub fn from_listener(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: &ConnectionLimits,
) -> axum_server::Server<SocketAddr, Acceptor> {
    let acceptor = Acceptor::new(RustlsConfig::from_config(config), limits);
    let mut server = axum_server::Server::<SocketAddr>::from_listener(listener).acceptor(acceptor);
    configure_protocols(&mut server, limits);
    server
}

/// hyper's HTTP/1 and HTTP/2 settings, each chosen (axum-server has installed the timer that
/// the timeouts and pings need).
fn configure_protocols(
    server: &mut axum_server::Server<SocketAddr, Acceptor>,
    limits: &ConnectionLimits,
) {
    let builder = server.http_builder();
    builder
        .http1()
        .max_headers(HTTP1_MAX_HEADERS)
        .max_buf_size(limits.http1_max_buffer())
        .header_read_timeout(limits.http1_header_read_backstop());
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_streams())
        .max_header_list_size(limits.http2_max_header_list_size())
        .max_frame_size(HTTP2_FRAME_AND_STREAM_WINDOW)
        .initial_stream_window_size(HTTP2_FRAME_AND_STREAM_WINDOW)
        .initial_connection_window_size(limits.http2_connection_window())
        .max_send_buf_size(HTTP2_SEND_BUFFER)
        .max_pending_accept_reset_streams(HTTP2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(HTTP2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(limits.http2_ping_interval())
        .keep_alive_timeout(limits.http2_keepalive_timeout);
}

/// Socket options as Go's listener sets them: no Nagle delay, TCP keep-alive.
fn socket_options(limits: &ConnectionLimits) -> TcpSocketConfig {
    let options = TcpSocketConfig::new().nodelay(true);
    match limits.tcp_keepalive_interval() {
        Some(interval) => options.keepalive(
            TcpKeepaliveConfig::new()
                .time(interval)
                .interval(interval)
                .retries(TCP_KEEPALIVE_PROBES),
        ),
        None => options,
    }
}

/// The connection caps, the TLS handshake (bounded in time), then the tracked stream and
/// service of the connection.
#[derive(Clone, Debug)]
pub struct Acceptor {
    tls: RustlsAcceptor<TcpConfigAcceptor>,
    counter: ConnectionCounter,
    timeouts: Timeouts,
}

impl Acceptor {
    /// `config` stays shared with the caller, so `RustlsConfig::reload_from_config` still
    /// rotates the serving certificate.
    pub fn new(config: RustlsConfig, limits: &ConnectionLimits) -> Self {
        let tls = RustlsAcceptor::new(config)
            .handshake_timeout(limits.effective_handshake_timeout())
            .acceptor(TcpConfigAcceptor::new(socket_options(limits)));
        Acceptor {
            tls,
            counter: limits.counter(),
            timeouts: limits.timeouts(),
        }
    }

    /// The counter the caps are kept in (for tests and metrics).
    pub fn counter(&self) -> &ConnectionCounter {
        &self.counter
    }

    fn admit(&self, stream: &TcpStream) -> io::Result<ConnectionPermit> {
        let peer = stream.peer_addr()?;
        self.counter
            .try_acquire(peer.ip(), Instant::now())
            .map_err(|refused| io::Error::new(io::ErrorKind::ConnectionRefused, refused))
    }
}

type TlsStreamOf<S> = <RustlsAcceptor<TcpConfigAcceptor> as Accept<TcpStream, S>>::Stream;
type TlsServiceOf<S> = <RustlsAcceptor<TcpConfigAcceptor> as Accept<TcpStream, S>>::Service;

impl<S> Accept<TcpStream, S> for Acceptor
where
    S: Send + 'static,
{
    type Stream = BatchedWrites<TrackedStream<TlsStreamOf<S>>>;
    type Service = TrackedService<TlsServiceOf<S>>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let permit = match self.admit(&stream) {
            Ok(permit) => permit,
            Err(error) => {
                // Dropping the stream closes it before any TLS work is spent on it.
                let refused: io::Result<(Self::Stream, Self::Service)> = Err(error);
                return Box::pin(std::future::ready(refused));
            }
        };
        let handshake = self.tls.accept(stream, service);
        let timeouts = self.timeouts;
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let (_, tls) = stream.get_ref();
            let peer = tls
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
            let protocol = Protocol::from_alpn(tls.alpn_protocol());
            let activity = ConnectionActivity::new(protocol, timeouts, Instant::now());
            let service = TrackedService {
                inner: service,
                peer,
                activity: Arc::clone(&activity),
            };
            let stream = TrackedStream::new(stream, activity, Some(permit));
            Ok((
                BatchedWrites::new(stream, protocol == Protocol::Http2),
                service,
            ))
        })
    }
}

/// A connection's service: it inserts the connection's [`PeerCertificates`] (when it
/// presented any) into each request, and counts each request in flight until its response
/// body ends.
#[derive(Clone, Debug)]
pub struct TrackedService<S> {
    inner: S,
    peer: Option<PeerCertificates>,
    activity: Arc<ConnectionActivity>,
}

impl<S, B, ResBody> Service<Request<B>> for TrackedService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<TrackedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        // axum-server's handle on this connection, to close it gracefully once idle.
        if let Some(shutdown) = request.extensions().get::<ConnectionShutdown>() {
            self.activity.remember_shutdown(shutdown);
        }
        let in_flight = InFlight::start(&self.activity);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody::new(body, in_flight)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::time::Duration;

    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::auth::x509::testing::{make_ca, make_client_cert, ClientCert};
    use crate::tls::{ServingCerts, TlsMinVersion};

    /// How often a blocking client looks whether the server closed its connection.
    const POLL: Duration = Duration::from_millis(100);
    /// How late the server may be, on a busy test machine.
    const SLACK: Duration = Duration::from_secs(3);

    type ClientStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

    struct TestServer {
        addr: SocketAddr,
        ca_pem: String,
        counter: ConnectionCounter,
        handle: axum_server::Handle<SocketAddr>,
        task: tokio::task::JoinHandle<io::Result<()>>,
        _dir: tempfile::TempDir,
    }

    /// Serves `app` on a free loopback port under `limits`.
    async fn start(app: Router, limits: &ConnectionLimits) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let serving = ServingCerts::self_signed(dir.path(), &[]).expect("serving certificates");
        let config = serving
            .server_config_with(TlsMinVersion::Tls12, true)
            .expect("server config");
        let handle = axum_server::Handle::new();
        let server =
            bind(SocketAddr::from(([127, 0, 0, 1], 0)), config, limits).handle(handle.clone());
        let counter = server.get_ref().counter().clone();
        let task =
            tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
        let addr = handle.listening().await.expect("listening");
        TestServer {
            addr,
            ca_pem: serving.ca_pem,
            counter,
            handle,
            task,
            _dir: dir,
        }
    }

    impl TestServer {
        fn client_config(&self) -> Arc<rustls::ClientConfig> {
            client_config(&self.ca_pem, None)
        }

        async fn stop(self) {
            self.handle.shutdown();
            self.task
                .await
                .expect("server task")
                .expect("server result");
        }
    }

    fn client_config(ca_pem: &str, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.expect("CA PEM")).expect("CA root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some(cert) => builder
                .with_client_auth_cert(vec![cert.der.clone()], cert.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// A blocking TLS connection with its handshake done; reads then time out after [`POLL`].
    fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> ClientStream {
        let name = ServerName::try_from("localhost").expect("server name");
        let connection = rustls::ClientConnection::new(config, name).expect("client connection");
        let tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(SLACK)).expect("read timeout");
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        tls.sock.set_read_timeout(Some(POLL)).expect("read timeout");
        tls
    }

    /// One HTTP/1.1 GET over a blocking rustls client; returns the raw response.
    fn get_over_tls(addr: SocketAddr, ca_pem: &str, cert: Option<&ClientCert>) -> String {
        let mut tls = connect_tls(addr, client_config(ca_pem, cert));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send request");
        let (response, closed) = read_until_closed(&mut tls, SLACK);
        assert!(
            closed.is_some(),
            "the server kept a Connection: close connection open"
        );
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn fetch(addr: SocketAddr, ca_pem: &str, cert: Option<ClientCert>) -> String {
        let ca_pem = ca_pem.to_string();
        tokio::task::spawn_blocking(move || get_over_tls(addr, &ca_pem, cert.as_ref()))
            .await
            .expect("client task")
    }

    /// Reads until the server closes the connection (a clean end, a reset or an unclean TLS
    /// end) or `limit` passes; returns what arrived and how long the close took.
    fn read_until_closed(stream: &mut impl Read, limit: Duration) -> (Vec<u8>, Option<Duration>) {
        let started = std::time::Instant::now();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while started.elapsed() < limit {
            match stream.read(&mut buf) {
                Ok(0) => return (received, Some(started.elapsed())),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return (received, Some(started.elapsed())),
            }
        }
        (received, None)
    }

    async fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + SLACK;
        while !condition() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {SLACK:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn describe_peer(
        ConnectInfo(remote): ConnectInfo<SocketAddr>,
        request: axum::extract::Request,
    ) -> String {
        let chain = request.extensions().get::<PeerCertificates>();
        format!(
            "certs={} loopback={}",
            chain.map_or(0, |c| c.0.len()),
            remote.ip().is_loopback()
        )
    }

    #[tokio::test]
    async fn handlers_see_the_client_certificate_chain_and_address() {
        let app = Router::new().route("/", get(describe_peer));
        let server = start(app, &ConnectionLimits::default()).await;

        let client = make_client_cert(&make_ca("some-ca"), "alice", &[]);
        let with_cert = fetch(server.addr, &server.ca_pem, Some(client)).await;
        assert!(with_cert.starts_with("HTTP/1.1 200"), "{with_cert}");
        assert!(with_cert.ends_with("certs=1 loopback=true"), "{with_cert}");
        let without = fetch(server.addr, &server.ca_pem, None).await;
        assert!(without.ends_with("certs=0 loopback=true"), "{without}");

        server.stop().await;
    }

    #[tokio::test]
    async fn a_listener_opened_by_the_caller_is_served() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let serving = ServingCerts::self_signed(dir.path(), &[]).expect("serving certificates");
        let config = serving
            .server_config_with(TlsMinVersion::Tls12, true)
            .expect("server config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let addr = listener.local_addr().expect("local address");
        let handle = axum_server::Handle::new();
        let server =
            from_listener(listener, config, &ConnectionLimits::default()).handle(handle.clone());
        let app = Router::new().route("/", get(|| async { "ok" }));
        let task =
            tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
        assert_eq!(handle.listening().await, Some(addr));

        let served = fetch(addr, &serving.ca_pem, None).await;
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
        handle.shutdown();
        task.await.expect("server task").expect("server result");
    }

    #[tokio::test]
    async fn an_unfinished_tls_handshake_is_closed_after_the_handshake_timeout() {
        let limits = ConnectionLimits {
            handshake_timeout: Some(Duration::from_millis(300)),
            ..ConnectionLimits::default()
        };
        let server = start(Router::new(), &limits).await;
        let addr = server.addr;
        let (_, closed) = tokio::task::spawn_blocking(move || {
            let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
            tcp.set_read_timeout(Some(POLL)).expect("read timeout");
            // A handshake record header announcing 512 bytes, and one of them.
            tcp.write_all(&[0x16, 3, 1, 2, 0, 1])
                .expect("the start of a ClientHello");
            read_until_closed(&mut tcp, SLACK)
        })
        .await
        .expect("client task");
        let closed = closed.expect("the unfinished handshake was never cut");
        assert!(
            closed >= Duration::from_millis(200),
            "cut early: {closed:?}"
        );
        assert_eq!(server.counter.open(), 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_per_source_cap_are_closed_before_the_handshake() {
        let limits = ConnectionLimits {
            max_connections_per_source: 2,
            handshake_timeout: Some(Duration::from_secs(30)),
            ..ConnectionLimits::default()
        };
        let app = Router::new().route("/", get(|| async { "ok" }));
        let server = start(app, &limits).await;
        let addr = server.addr;
        // Two connections that never start their handshakes hold the source's two slots.
        let held: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        wait_for("two connections counted", || server.counter.open() == 2).await;

        let (_, closed) = tokio::task::spawn_blocking(move || {
            let mut third = std::net::TcpStream::connect(addr).expect("connect");
            third.set_read_timeout(Some(POLL)).expect("read timeout");
            read_until_closed(&mut third, SLACK)
        })
        .await
        .expect("client task");
        let closed = closed.expect("the third connection was accepted");
        assert!(
            closed < Duration::from_secs(2),
            "refused only after {closed:?}"
        );
        assert_eq!(server.counter.open(), 2, "the held connections stay open");

        drop(held);
        wait_for("the held connections counted out", || {
            server.counter.open() == 0
        })
        .await;
        let served = fetch(addr, &server.ca_pem, None).await;
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_request_head_sent_slowly_is_cut_at_the_header_read_timeout() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(500),
            ..ConnectionLimits::default()
        };
        let app = Router::new().route("/", get(|| async { "ok" }));
        let server = start(app, &limits).await;
        let (addr, config) = (server.addr, server.client_config());
        let (received, closed) = tokio::task::spawn_blocking(move || {
            let mut tls = connect_tls(addr, config);
            let started = std::time::Instant::now();
            let mut received = Vec::new();
            let mut head = b"GET / HTTP/1.1\r\nHost: localhost\r\n".to_vec();
            let mut line = 0;
            loop {
                if tls.write_all(&head).is_err() {
                    return (received, Some(started.elapsed()));
                }
                let (more, closed) = read_until_closed(&mut tls, POLL);
                received.extend(more);
                if closed.is_some() || started.elapsed() > SLACK {
                    return (received, closed.map(|_| started.elapsed()));
                }
                head = format!("X-Slow-{line}: 1\r\n").into_bytes();
                line += 1;
            }
        })
        .await
        .expect("client task");
        let closed = closed.expect("the slow head was never cut");
        assert!(
            closed >= Duration::from_millis(300),
            "cut early: {closed:?}"
        );
        let text = String::from_utf8_lossy(&received);
        assert!(
            !text.contains(" 200 "),
            "the unfinished head was served: {text}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn a_slow_request_is_not_cut_but_the_idle_connection_after_it_is() {
        const HANDLER_TIME: Duration = Duration::from_secs(1);
        const IDLE: Duration = Duration::from_millis(300);
        let limits = ConnectionLimits {
            idle_timeout: IDLE,
            header_read_timeout: Duration::from_secs(5),
            ..ConnectionLimits::default()
        };
        let slow = || async {
            tokio::time::sleep(HANDLER_TIME).await;
            "done"
        };
        let server = start(Router::new().route("/slow", get(slow)), &limits).await;
        let (addr, config) = (server.addr, server.client_config());
        let (received, closed) = tokio::task::spawn_blocking(move || {
            let mut tls = connect_tls(addr, config);
            let started = std::time::Instant::now();
            // Kept alive: after the answer the connection idles.
            tls.write_all(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("send request");
            let (received, closed) = read_until_closed(&mut tls, HANDLER_TIME + IDLE + SLACK);
            (received, closed.map(|_| started.elapsed()))
        })
        .await
        .expect("client task");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("done"), "{text}");
        let closed = closed.expect("the idle connection was never closed");
        assert!(
            closed >= HANDLER_TIME + IDLE - POLL,
            "closed early: {closed:?}"
        );
        wait_for("the connection counted out", || server.counter.open() == 0).await;
        server.stop().await;
    }
}
