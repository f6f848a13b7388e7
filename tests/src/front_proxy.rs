//! A stand-in for kube-apiserver's aggregator proxy (spec §8.3), in front of the server under
//! test.
//!
//! kube-apiserver authenticates the caller, then proxies requests for an aggregated group
//! to the aggregated server over TLS with its front-proxy client certificate, dropping the
//! caller's `Authorization` and any `X-Remote-*` headers and saying who the caller is with
//! `X-Remote-User` and `X-Remote-Group`. [`FrontProxy`] does the same for one fixed identity,
//! listening on plain HTTP so that kubectl can talk to it with a credential-less kubeconfig.
//! Answers stream back unchanged, so watches work through it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::pki::{https_client_with_identity, Identity};

/// Request bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A running front proxy; dropping it stops serving.
pub struct FrontProxy {
    url: String,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
}

struct Proxy {
    /// `https://127.0.0.1:<port>` without a trailing slash.
    upstream: String,
    client: reqwest::Client,
    user: HeaderValue,
    groups: Vec<HeaderValue>,
    requests: AtomicUsize,
}

impl FrontProxy {
    /// Proxies plain-HTTP requests on a free loopback port to `upstream` (trusting
    /// `upstream_ca_pem`, presenting `client`), as `user` in `groups`.
    pub async fn start(
        upstream: &str,
        upstream_ca_pem: &str,
        client: Identity,
        user: &str,
        groups: &[&str],
    ) -> FrontProxy {
        let header_value =
            |value: &str| HeaderValue::from_str(value).expect("a header-safe identity");
        let proxy = Arc::new(Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: https_client_with_identity(upstream_ca_pem, Some(&client), None),
            user: header_value(user),
            groups: groups.iter().copied().map(header_value).collect(),
            requests: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the front proxy");
        let port = listener.local_addr().expect("front proxy address").port();
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FrontProxy {
            url: format!("http://127.0.0.1:{port}"),
            proxy,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests received so far, whatever became of them.
    pub fn requests(&self) -> usize {
        self.proxy.requests.load(Ordering::SeqCst)
    }

    /// Writes `<dir>/front-proxy.kubeconfig`: the proxy's URL and no credentials (the proxy
    /// says who the caller is).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let text = [
            "apiVersion: v1".to_string(),
            "kind: Config".to_string(),
            "clusters:".to_string(),
            "- name: front-proxy".to_string(),
            "  cluster:".to_string(),
            format!("    server: {}", self.url),
            "users:".to_string(),
            "- name: front-proxy".to_string(),
            "  user: {}".to_string(),
            "contexts:".to_string(),
            "- name: front-proxy".to_string(),
            "  context:".to_string(),
            "    cluster: front-proxy".to_string(),
            "    user: front-proxy".to_string(),
            "current-context: front-proxy".to_string(),
        ]
        .join("\n")
            + "\n";
        let path = dir.join("front-proxy.kubeconfig");
        std::fs::write(&path, text).expect("write the front proxy kubeconfig");
        path
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    proxy.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            let message = format!("front proxy: reading the request body: {e}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let mut outgoing = proxy
        .client
        .request(parts.method.clone(), format!("{}{target}", proxy.upstream))
        .headers(upstream_headers(&parts.headers, &proxy));
    // GET and HEAD without a body stay bodiless; anything else carries its body, even an
    // empty one, so that the upstream sees a Content-Length.
    let bodiless = body.is_empty() && (parts.method == Method::GET || parts.method == Method::HEAD);
    if !bodiless {
        outgoing = outgoing.body(body);
    }
    match outgoing.send().await {
        Ok(response) => stream_back(&parts.method, response),
        // What kube-apiserver answers when it cannot reach the aggregated server.
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable\n").into_response(),
    }
}

/// The caller's headers minus credentials, identity claims and hop-by-hop ones, plus the
/// proxy's identity headers.
fn upstream_headers(incoming: &HeaderMap, proxy: &Proxy) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in incoming {
        if forwarded_request_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(HeaderName::from_static("x-remote-user"), proxy.user.clone());
    for group in &proxy.groups {
        headers.append(HeaderName::from_static("x-remote-group"), group.clone());
    }
    headers
}

fn forwarded_request_header(name: &HeaderName) -> bool {
    let lower = name.as_str();
    !is_hop_by_hop(name)
        && name != header::HOST
        && name != header::CONTENT_LENGTH
        && name != header::AUTHORIZATION
        && !lower.starts_with("x-remote-")
        && !lower.starts_with("impersonate-")
}

/// The upstream's status and headers now, its body as it arrives.
fn stream_back(method: &Method, upstream: reqwest::Response) -> Response {
    let status = upstream.status();
    let mut headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        // The streamed body's length is hyper's to frame, except for HEAD, which has none.
        let length_matters = name != header::CONTENT_LENGTH || *method == Method::HEAD;
        if !is_hop_by_hop(name) && length_matters {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(body_chunks(upstream))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The upstream body chunk by chunk; an upstream failure fails the stream, which aborts the
/// answer rather than ending it as if complete.
fn body_chunks(
    upstream: reqwest::Response,
) -> impl futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static {
    futures::stream::unfold(Some(upstream), |state| async move {
        let mut upstream = state?;
        match upstream.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(upstream))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Headers that describe one connection, not the message: a proxy never forwards them.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use rustls::server::WebPkiClientVerifier;
    use serde_json::{json, Value};

    use super::*;
    use crate::pki::{pem_certificates, plain_http_client, TestCa};

    /// An HTTPS upstream that requires a client certificate from `client_ca` and echoes
    /// what reached it; `/stream` sends one line and then holds the body open.
    struct Echo {
        url: String,
        handle: axum_server::Handle<SocketAddr>,
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.handle.shutdown();
        }
    }

    async fn echo(request: Request) -> Response {
        if request.uri().path() == "/stream" {
            let first = futures::stream::once(async {
                Ok::<Bytes, std::convert::Infallible>(Bytes::from_static(b"{\"first\":true}\n"))
            });
            let endless = futures::stream::pending::<Result<Bytes, std::convert::Infallible>>();
            return Response::new(Body::from_stream(futures::StreamExt::chain(first, endless)));
        }
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1024).await.expect("echo body");
        let all = |name: &str| {
            parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().expect("ASCII header").to_string())
                .collect::<Vec<_>>()
        };
        let seen = json!({
            "method": parts.method.as_str(),
            "target": parts.uri.path_and_query().map(|pq| pq.as_str()),
            "user": all("x-remote-user"),
            "groups": all("x-remote-group"),
            "extra": all("x-remote-extra-scopes"),
            "authorization": all("authorization"),
            "accept": all("accept"),
            "body": String::from_utf8_lossy(&body),
        });
        axum::Json(seen).into_response()
    }

    async fn start_echo(ca: &TestCa, client_ca: &TestCa) -> Echo {
        use rustls::pki_types::pem::PemObject;
        let serving = ca.server_cert(&["127.0.0.1"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certificates(client_ca.pem()) {
            roots.add(cert).expect("front proxy CA");
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("client verifier");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
            .expect("serving key");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(pem_certificates(&serving.cert_pem), key)
            .expect("serving config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the echo");
        let port = listener.local_addr().expect("echo address").port();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
        let handle = axum_server::Handle::<SocketAddr>::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .expect("serve the echo")
            .handle(handle.clone());
        let app = Router::new().fallback(echo);
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Echo {
            url: format!("https://127.0.0.1:{port}"),
            handle,
        }
    }

    #[tokio::test]
    async fn requests_arrive_with_the_proxy_identity_and_without_the_callers_claims() {
        let serving_ca = TestCa::new("echo-serving-ca");
        let front_proxy_ca = TestCa::new("front-proxy-ca");
        let upstream = start_echo(&serving_ca, &front_proxy_ca).await;
        let client_cert = front_proxy_ca.client_cert("front-proxy-client", &[]);
        let proxy = FrontProxy::start(
            &upstream.url,
            serving_ca.pem(),
            client_cert,
            "alice",
            &["team-a", "system:authenticated"],
        )
        .await;

        let client = plain_http_client();
        let seen: Value = client
            .post(format!("{}/apis/x/v1/things?b=2&a=1", proxy.url()))
            .header("Authorization", "Bearer stolen")
            .header("X-Remote-User", "system:admin")
            .header("X-Remote-Group", "system:masters")
            .header("X-Remote-Extra-Scopes", "all")
            .header("Accept", "application/json")
            .body("{\"k\":1}")
            .send()
            .await
            .expect("proxied request")
            .json()
            .await
            .expect("echo JSON");
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["target"], "/apis/x/v1/things?b=2&a=1");
        assert_eq!(seen["user"], json!(["alice"]));
        assert_eq!(seen["groups"], json!(["team-a", "system:authenticated"]));
        assert_eq!(seen["extra"], json!([]));
        assert_eq!(seen["authorization"], json!([]));
        assert_eq!(seen["accept"], json!(["application/json"]));
        assert_eq!(seen["body"], "{\"k\":1}");
        assert_eq!(proxy.requests(), 1);
    }

    #[tokio::test]
    async fn answers_stream_before_the_upstream_body_ends() {
        let serving_ca = TestCa::new("echo-serving-ca");
        let front_proxy_ca = TestCa::new("front-proxy-ca");
        let upstream = start_echo(&serving_ca, &front_proxy_ca).await;
        let client_cert = front_proxy_ca.client_cert("front-proxy-client", &[]);
        let proxy =
            FrontProxy::start(&upstream.url, serving_ca.pem(), client_cert, "bob", &[]).await;
        let client = plain_http_client();
        let mut response = client
            .get(format!("{}/stream", proxy.url()))
            .send()
            .await
            .expect("streamed request");
        let first = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the first line before the body ends")
            .expect("a chunk")
            .expect("not the end of the body");
        assert_eq!(&first[..], b"{\"first\":true}\n");
    }

    #[tokio::test]
    async fn a_client_certificate_from_another_ca_is_refused_by_the_upstream() {
        let serving_ca = TestCa::new("echo-serving-ca");
        let front_proxy_ca = TestCa::new("front-proxy-ca");
        let upstream = start_echo(&serving_ca, &front_proxy_ca).await;
        let stranger = TestCa::new("stranger-ca").client_cert("front-proxy-client", &[]);
        let proxy = FrontProxy::start(&upstream.url, serving_ca.pem(), stranger, "eve", &[]).await;
        let client = plain_http_client();
        let response = client
            .get(format!("{}/apis", proxy.url()))
            .send()
            .await
            .expect("proxied request");
        assert_eq!(response.status().as_u16(), 503);
    }
}
