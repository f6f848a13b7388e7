//! A misbehaving registry, in front of a real one.
//!
//! Registries in the wild hang, answer with bytes that are not HTTP, serve manifests that
//! are not JSON or do not match the digest they claim, throttle with `429`, fail with `503`
//! for a while, or trickle a body forever. The server under test must turn each of these
//! into a bounded, reported failure (or a retry) rather than hang or store bad data; a real
//! `docker-registry` does none of them on demand, so this proxy injects them.
//!
//! [`Hostile`] listens on a free loopback port. In [`Fault::Hang`] and [`Fault::Garbage`]
//! it speaks raw TCP and never forwards anything. In every other mode it forwards each
//! request to the upstream registry (method, path and query, headers, body; the answer's
//! status, headers and body come back) and misbehaves only on manifest requests
//! (`/v2/<name>/manifests/<reference>`), so `GET /v2/` pings, token challenges, blobs and
//! uploads work as the upstream answers them. Forwarded requests carry
//! `X-Forwarded-Host`/`X-Forwarded-Proto`, so the upstream's `Location` headers (blob
//! uploads) point back at this proxy.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the registry misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Accepts connections and reads the request, then never answers (the socket stays
    /// open until the client gives up).
    Hang,
    /// Answers every request with bytes that are not HTTP, then closes the connection.
    Garbage,
    /// Forwards everything, but manifest GETs answer `200` with an OCI manifest content type
    /// and a body that is not JSON (its `Docker-Content-Digest` is the body's true digest).
    GarbageManifest,
    /// Forwards everything, but successful manifest GETs answer a different, still valid
    /// JSON body (the real one with a space inserted) under the original
    /// `Docker-Content-Digest`.
    WrongDigest,
    /// The first N manifest requests answer `503` with an `UNAVAILABLE` errors envelope;
    /// later ones are forwarded.
    ServerErrorsThenOk(usize),
    /// The first `times` manifest requests answer `429 TOOMANYREQUESTS` with
    /// `Retry-After: <retry_after_secs>`; later ones are forwarded.
    TooManyRequests { times: usize, retry_after_secs: u64 },
    /// Forwards everything, but successful manifest GETs send the upstream's headers and
    /// then trickle the body one byte per second, chunked, followed by spaces forever.
    SlowBody,
}

/// A running misbehaving registry. Dropping it stops accepting connections, closes the
/// raw ones and fails endless bodies; a request arriving later on a kept-alive connection
/// gets `503` and `Connection: close`.
pub struct Hostile {
    /// `127.0.0.1:<port>`.
    pub host: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    fault: Fault,
    /// `http://127.0.0.1:<port>` without a trailing slash.
    upstream: Option<String>,
    host: String,
    client: reqwest::Client,
    /// The request target (path and query) of every request received, in order.
    received: Mutex<Vec<String>>,
    /// Manifest requests answered with an injected error so far.
    faults_served: AtomicUsize,
    /// Set on drop: endless bodies then fail, closing their connections.
    stopped: AtomicBool,
}

impl Hostile {
    /// Starts misbehaving as `fault` on a free loopback port, forwarding to `upstream`
    /// (`http://127.0.0.1:<port>`) where the mode forwards. Without an upstream, requests
    /// that would be forwarded answer `502`.
    pub async fn start(fault: Fault, upstream: Option<String>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the hostile registry");
        let host = listener
            .local_addr()
            .expect("hostile registry address")
            .to_string();
        let shared = Arc::new(Shared {
            fault,
            upstream: upstream.map(|u| u.trim_end_matches('/').to_string()),
            host: host.clone(),
            client: forwarding_client(),
            received: Mutex::new(Vec::new()),
            faults_served: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let task = match fault {
            Fault::Hang | Fault::Garbage => tokio::spawn(serve_raw(listener, shared.clone())),
            _ => {
                let app = Router::new().fallback(handle).with_state(shared.clone());
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                })
            }
        };
        Hostile { host, shared, task }
    }

    /// All requests received, in every mode.
    pub fn requests(&self) -> usize {
        self.shared.received().len()
    }

    /// Requests received whose path (and query) contains `path_contains`.
    pub fn requests_to(&self, path_contains: &str) -> usize {
        self.shared
            .received()
            .iter()
            .filter(|target| target.contains(path_contains))
            .count()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

impl Shared {
    fn record(&self, target: &str) {
        self.received
            .lock()
            .expect("hostile registry request log")
            .push(target.to_string());
    }

    fn received(&self) -> Vec<String> {
        self.received
            .lock()
            .expect("hostile registry request log")
            .clone()
    }

    /// Whether this request is one of the first `limit` to get an injected error.
    fn take_fault(&self, limit: usize) -> bool {
        self.faults_served
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |served| {
                (served < limit).then_some(served + 1)
            })
            .is_ok()
    }
}

/// A plain-HTTP client for the upstream: no proxy from the environment, no redirects
/// followed (they go back to the caller), and a TLS configuration only because reqwest
/// is built without a default crypto provider.
fn forwarding_client() -> reqwest::Client {
    crate::pki::plain_http_builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("hostile registry forwarding client")
}

// ---- Hang and Garbage: raw TCP ----

/// Bytes that no HTTP client can parse as a response.
const GARBAGE: &[u8] = b"\x16\x03\x01\x00\xffSSH-2.0-hostile\x00\xfe\xff\r\n\xde\xad\r\n\r\n";

async fn serve_raw(listener: TcpListener, shared: Arc<Shared>) {
    // Owning the connections here means aborting this task closes them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                connections.spawn(serve_raw_connection(socket, shared.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_raw_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read the request head (a client that sends nothing is no request).
    loop {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 64 * 1024 {
            break;
        }
    }
    shared.record(&request_target(&head));
    if shared.fault == Fault::Garbage {
        let _ = socket.write_all(GARBAGE).await;
        let _ = socket.shutdown().await;
        return;
    }
    // Hang: hold the connection, discarding whatever comes, until the client closes it.
    while let Ok(read) = socket.read(&mut chunk).await {
        if read == 0 {
            break;
        }
    }
}

/// The request line's target (`/v2/...?...`), or `<unparsed>` when the head is not HTTP.
fn request_target(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or("<unparsed>")
        .to_string()
}

// ---- Everything else: an HTTP proxy ----

/// An upstream answer, read in full.
struct Upstream {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if shared.stopped.load(Ordering::SeqCst) {
        // A kept-alive connection outlives the dropped proxy: refuse, and close it.
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let body = Body::from("hostile registry stopped");
        return respond(StatusCode::SERVICE_UNAVAILABLE, headers, body);
    }
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| request.uri().path().to_string());
    shared.record(&target);
    let path = request.uri().path();
    let is_manifest = path.starts_with("/v2/") && path.contains("/manifests/");
    let method = request.method().clone();
    let is_manifest_get = is_manifest && method == Method::GET;

    match shared.fault {
        Fault::GarbageManifest if is_manifest_get => return garbage_manifest(),
        Fault::ServerErrorsThenOk(times) if is_manifest && shared.take_fault(times) => {
            return registry_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "service unavailable",
                None,
            );
        }
        Fault::TooManyRequests {
            times,
            retry_after_secs,
        } if is_manifest && shared.take_fault(times) => {
            return registry_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TOOMANYREQUESTS",
                "too many requests",
                Some(retry_after_secs),
            );
        }
        _ => {}
    }

    let upstream = match forward(&shared, &target, request).await {
        Ok(upstream) => upstream,
        Err(message) => {
            let mut response = Response::new(Body::from(message));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            return response;
        }
    };
    // The body's length is hyper's to write (it checks the two agree): the upstream's is
    // kept only for HEAD, whose answer has no body.
    let mut headers = upstream.headers;
    let upstream_length = headers.remove(header::CONTENT_LENGTH);
    let tamper = is_manifest_get && upstream.status.is_success();
    match shared.fault {
        Fault::WrongDigest if tamper => {
            let body = insert_space(&upstream.body);
            respond(upstream.status, headers, Body::from(body))
        }
        Fault::SlowBody if tamper => {
            let body = trickle(upstream.body, shared.clone());
            respond(upstream.status, headers, body)
        }
        _ if method == Method::HEAD => {
            if let Some(length) = upstream_length {
                headers.insert(header::CONTENT_LENGTH, length);
            }
            respond(upstream.status, headers, Body::empty())
        }
        _ => respond(upstream.status, headers, Body::from(upstream.body)),
    }
}

/// Sends the request to the upstream registry and reads the whole answer.
async fn forward(shared: &Shared, target: &str, request: Request) -> Result<Upstream, String> {
    let upstream = shared
        .upstream
        .as_deref()
        .ok_or_else(|| "hostile registry: no upstream to forward to".to_string())?;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("hostile registry: reading the request body: {e}"))?;

    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        if forward_request_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-host"),
        HeaderValue::from_str(&shared.host).expect("host header value"),
    );
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );

    let mut outgoing = shared
        .client
        .request(parts.method.clone(), format!("{upstream}{target}"))
        .headers(headers);
    // GET and HEAD carry no body; anything else carries its body, even an empty one, so
    // that the upstream sees a Content-Length.
    let bodiless = body.is_empty() && (parts.method == Method::GET || parts.method == Method::HEAD);
    if !bodiless {
        outgoing = outgoing.body(body);
    }
    let response = outgoing
        .send()
        .await
        .map_err(|e| format!("hostile registry: forwarding to {upstream}: {e}"))?;
    let status = response.status();
    let mut headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if forward_response_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("hostile registry: reading the upstream body: {e}"))?;
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

/// Hop-by-hop headers, and those the forwarding client sets itself, are not forwarded.
fn forward_request_header(name: &HeaderName) -> bool {
    !crate::front_proxy::is_hop_by_hop(name)
        && name != header::HOST
        && name != header::CONTENT_LENGTH
        && name != header::ACCEPT_ENCODING
        && !name.as_str().starts_with("x-forwarded-")
}

/// Hop-by-hop headers and `Date` (the proxy writes its own) do not come back.
fn forward_response_header(name: &HeaderName) -> bool {
    !crate::front_proxy::is_hop_by_hop(name) && name != header::DATE
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A registry errors envelope, as distribution writes it.
fn registry_error(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after_secs: Option<u64>,
) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    respond(status, headers, Body::from(body.to_string()))
}

/// Not JSON, under a manifest content type and the body's own (correct) digest.
const GARBAGE_MANIFEST: &[u8] = b"\x89PNG\r\n\x1a\n<html>this is not a manifest {{{";

fn garbage_manifest() -> Response {
    let digest = format!("sha256:{:x}", Sha256::digest(GARBAGE_MANIFEST));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
    );
    headers.insert(
        HeaderName::from_static("docker-content-digest"),
        HeaderValue::from_str(&digest).expect("digest header value"),
    );
    headers.insert(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    );
    respond(StatusCode::OK, headers, Body::from(GARBAGE_MANIFEST))
}

/// The same JSON document with one more space after its first byte: still valid, but
/// with another digest.
fn insert_space(body: &Bytes) -> Vec<u8> {
    let mut changed = Vec::with_capacity(body.len() + 1);
    match body.split_first() {
        Some((first, rest)) => {
            changed.push(*first);
            changed.push(b' ');
            changed.extend_from_slice(rest);
        }
        None => changed.push(b' '),
    }
    changed
}

/// The body one byte per second, then spaces (still valid trailing JSON whitespace)
/// forever, chunked; once the proxy is dropped the stream fails, which aborts the
/// connection rather than ending the body cleanly.
fn trickle(body: Bytes, shared: Arc<Shared>) -> Body {
    // The state is the count of bytes sent, and whether the stream has failed.
    let stream = futures::stream::unfold((0usize, false), move |(sent, failed)| {
        let body = body.clone();
        let shared = shared.clone();
        async move {
            if failed {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if shared.stopped.load(Ordering::SeqCst) {
                let error = std::io::Error::other("hostile registry stopped");
                return Some((Err(error), (sent, true)));
            }
            let byte = if sent < body.len() {
                body.slice(sent..sent + 1)
            } else {
                Bytes::from_static(b" ")
            };
            Some((Ok::<Bytes, std::io::Error>(byte), (sent + 1, false)))
        }
    });
    Body::from_stream(stream)
}
