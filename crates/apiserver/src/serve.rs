//! The HTTPS listener: axum-server's rustls acceptor plus one step, putting the client
//! certificate chain of the connection into every request as [`PeerCertificates`], where the
//! authenticators look for it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Request;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tower::Service;

use crate::auth::PeerCertificates;

/// Binds `addr` for HTTPS with `config`; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` to see client addresses as well.
pub fn bind(
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> axum_server::Server<SocketAddr, PeerCertAcceptor> {
    axum_server::bind(addr).acceptor(PeerCertAcceptor::new(RustlsConfig::from_config(config)))
}

/// The TLS handshake, then the peer's certificates attached to the connection's service.
#[derive(Clone, Debug)]
pub struct PeerCertAcceptor {
    tls: RustlsAcceptor,
}

impl PeerCertAcceptor {
    /// `config` stays shared with the caller, so `RustlsConfig::reload_from_config` still
    /// rotates the serving certificate.
    pub fn new(config: RustlsConfig) -> Self {
        PeerCertAcceptor {
            tls: RustlsAcceptor::new(config),
        }
    }
}

impl<I, S> Accept<I, S> for PeerCertAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = <RustlsAcceptor as Accept<I, S>>::Stream;
    type Service = PeerCertService<<RustlsAcceptor as Accept<I, S>>::Service>;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.tls.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = handshake.await?;
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .filter(|chain| !chain.is_empty())
                .map(|chain| PeerCertificates(Arc::new(chain.to_vec())));
            Ok((
                stream,
                PeerCertService {
                    inner: service,
                    peer,
                },
            ))
        })
    }
}

/// A connection's service that inserts the connection's [`PeerCertificates`] (when it
/// presented any) into each request.
#[derive(Clone, Debug)]
pub struct PeerCertService<S> {
    inner: S,
    peer: Option<PeerCertificates>,
}

impl<S, B> Service<Request<B>> for PeerCertService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use axum::Router;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::auth::x509::testing::{make_ca, make_client_cert, ClientCert};
    use crate::tls::{ServingCerts, TlsMinVersion};

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

    /// One HTTP/1.1 GET over a blocking rustls client; returns the raw response.
    fn get_over_tls(addr: SocketAddr, ca_pem: &str, cert: Option<&ClientCert>) -> String {
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
        let name = ServerName::try_from("localhost").expect("server name");
        let connection =
            rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
        let tcp = std::net::TcpStream::connect(addr).expect("connect");
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send request");
        let mut response = Vec::new();
        // Whatever ends the stream (close_notify or a bare close), the response is in by then.
        let _ = tls.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn fetch(addr: SocketAddr, ca_pem: &str, cert: Option<ClientCert>) -> String {
        let ca_pem = ca_pem.to_string();
        tokio::task::spawn_blocking(move || get_over_tls(addr, &ca_pem, cert.as_ref()))
            .await
            .expect("client task")
    }

    #[tokio::test]
    async fn handlers_see_the_client_certificate_chain_and_address() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let serving = ServingCerts::self_signed(dir.path(), &[]).expect("serving certificates");
        let config = serving
            .server_config_with(TlsMinVersion::Tls12, true)
            .expect("server config");
        let handle = axum_server::Handle::new();
        let server = bind(SocketAddr::from(([127, 0, 0, 1], 0)), config).handle(handle.clone());
        let app = Router::new().route("/", get(describe_peer));
        let serving_task =
            tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
        let addr = handle.listening().await.expect("listening");

        let client = make_client_cert(&make_ca("some-ca"), "alice", &[]);
        let with_cert = fetch(addr, &serving.ca_pem, Some(client)).await;
        assert!(with_cert.starts_with("HTTP/1.1 200"), "{with_cert}");
        assert!(with_cert.ends_with("certs=1 loopback=true"), "{with_cert}");
        let without = fetch(addr, &serving.ca_pem, None).await;
        assert!(without.ends_with("certs=0 loopback=true"), "{without}");

        handle.shutdown();
        serving_task
            .await
            .expect("server task")
            .expect("server result");
    }
}
