//! The stack every request passes through (spec §0), one `tower::ServiceBuilder`, outermost
//! first:
//! 1. [`kube_accept_encoding`]: whether the client asked for gzip, decided by kube's rule and
//!    written back as a plain `Accept-Encoding: gzip` or none;
//! 2. tower-http's `CompressionLayer` ([`gzip_large_responses`]): kube-apiserver's response
//!    compression: a complete body larger than 128 KiB is gzipped for a client that asked;
//!    watches (streams of unknown length) never are;
//! 3. [`audit`]: the Audit-Id and Cache-Control headers, and one log line per request, written
//!    after the answer so that it records the 401s, 429s, 504s and 500s of the layers below;
//! 4. [`authenticate_and_authorize`]: who is asking (authentication, then impersonation) and
//!    whether they may (authorization): 401 or 403 here, anonymous only on the health paths;
//! 5. [`limit_inflight`]: at most `--max-requests-inflight` reads and
//!    `--max-mutating-requests-inflight` writes at once, and one user at most its share of
//!    them, 429 beyond; watches are exempt;
//! 6. [`limit_time`]: the request timeout, 504, not for watches;
//! 7. `CatchPanicLayer`: a handler's panic becomes a 500 Status instead of a dropped connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::body::HttpBody;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::{CompressionLayer, CompressionLevel, Predicate};

use super::audit_log::{AuditId, AUDIT_ID_HEADER};
use super::auth_filters::{authenticate_and_authorize, AuditContext};
use super::render::{error_response, respond};
use super::Api;
use crate::resource::UserInfo;

/// `routes` wrapped in the common stack.
pub(super) fn with_common_stack(routes: Router<Arc<Api>>, api: &Arc<Api>) -> Router<Arc<Api>> {
    routes.layer(
        ServiceBuilder::new()
            .layer(from_fn(kube_accept_encoding))
            .layer(gzip_large_responses())
            .layer(from_fn_with_state(api.clone(), audit))
            .layer(from_fn_with_state(api.clone(), authenticate_and_authorize))
            .layer(from_fn_with_state(api.clone(), limit_inflight))
            .layer(from_fn(limit_time))
            .layer(CatchPanicLayer::custom(panic_response)),
    )
}

/// kube's `defaultGzipThresholdBytes`: a body must be larger than this to be gzipped; below
/// it compression costs more time than it saves.
const GZIP_THRESHOLD_BYTES: u64 = 128 * 1024;

/// kube-apiserver's response compression (the APIResponseCompression feature, on by default),
/// at its level 1 (`defaultGzipContentEncodingLevel`): the least CPU for nearly the same ratio.
/// The compressed body is streamed, so it goes out without a Content-Length.
fn gzip_large_responses() -> CompressionLayer<LargeCompleteBody> {
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(LargeCompleteBody)
}

/// What kube compresses: a response written whole (`SerializeObject`) and larger than the
/// threshold. A body whose length is not known up front is a stream, a watch: kube writes
/// watch events straight to the connection, never gzipped, and so do we.
#[derive(Clone, Copy, Debug)]
struct LargeCompleteBody;

impl Predicate for LargeCompleteBody {
    fn should_compress<B>(&self, response: &axum::http::Response<B>) -> bool
    where
        B: HttpBody,
    {
        response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|len| len > GZIP_THRESHOLD_BYTES)
    }
}

/// Leaves the request saying `Accept-Encoding: gzip` when kube would gzip for it, and no
/// `Accept-Encoding` otherwise. The compression layer then does exactly what kube does: it
/// can pick no other coding, and never answers 406 (tower-http does when a client refuses
/// identity, `identity;q=0`; kube serves such a client uncompressed).
async fn kube_accept_encoding(mut req: HttpRequest, next: Next) -> Response {
    let gzip = accepts_gzip(req.headers());
    let headers = req.headers_mut();
    headers.remove(header::ACCEPT_ENCODING);
    if gzip {
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    }
    next.run(req).await
}

/// kube's `negotiateContentEncoding`: the first `Accept-Encoding` header (Go's `Header.Get`)
/// asks for gzip when one of its comma-separated tokens is exactly `gzip`; q-values are not
/// read, so `gzip;q=0.5` does not count (Go's transport, client-go and kubectl send `gzip`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|token| token.trim() == "gzip"))
}

async fn audit(State(api): State<Arc<Api>>, mut req: HttpRequest, next: Next) -> Response {
    let start = Instant::now();
    let received = jiff::Timestamp::now();
    let method = req.method().clone();
    let uri = super::auth_filters::request_uri(req.uri());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let source_ip = peer.map(|p| p.ip());
    let audit_id = AuditId::of_request(req.headers());
    req.extensions_mut().insert(audit_id.clone());
    let mut response = next.run(req).await;
    let code = response.status().as_u16();
    log_request(&RequestLine {
        method: &method,
        uri: &uri,
        code,
        latency: start.elapsed(),
        user: response.extensions().get::<UserInfo>(),
        user_agent: user_agent.as_deref(),
        peer,
        audit_id: &audit_id,
    });
    let headers = response.headers_mut();
    // kube leaves an Audit-ID already set alone, so one response never carries two.
    if let Ok(v) = HeaderValue::from_str(audit_id.as_str()) {
        headers.entry(AUDIT_ID_HEADER).or_insert(v);
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache, private"));
    let audit_id = audit_id.0;
    if let Some(log) = &api.config.audit_log {
        let context = response
            .extensions()
            .get::<AuditContext>()
            .cloned()
            .unwrap_or_default();
        let verb = context
            .attributes
            .as_ref()
            .map(|a| a.verb.clone())
            .unwrap_or_else(|| method.as_str().to_ascii_lowercase());
        if super::audit_log::should_record(&verb, code) {
            log.record(&super::audit_log::AuditEvent {
                audit_id,
                request_uri: uri,
                verb,
                user: context.user,
                impersonated: context.impersonated,
                source_ip,
                user_agent,
                object_ref: context.attributes.and_then(|a| a.resource),
                code,
                received,
                finished: jiff::Timestamp::now(),
                decision: context.decision,
            });
        }
    }
    response
}

/// What one request's log line says.
struct RequestLine<'a> {
    method: &'a Method,
    /// Path and query, as the client sent them.
    uri: &'a str,
    code: u16,
    latency: Duration,
    /// `None` when no user was established (a 401).
    user: Option<&'a UserInfo>,
    user_agent: Option<&'a str>,
    /// The connection's peer; absent only for requests that never came over a socket.
    peer: Option<SocketAddr>,
    audit_id: &'a AuditId,
}

/// kube's httplog line (`"HTTP" verb=... URI=... latency=... userAgent=... audit-ID=...
/// srcIP=... resp=...`) with its field names, so queries written for kube-apiserver's logs
/// work on ours, plus the user it ran as. Written when the response starts: a watch is logged
/// as it begins, with the status it answered.
fn log_request(line: &RequestLine<'_>) {
    let src_ip = line.peer.map(|p| p.to_string()).unwrap_or_default();
    tracing::info!(
        verb = %line.method,
        "URI" = %line.uri,
        latency = ?line.latency,
        "userAgent" = %line.user_agent.unwrap_or(""),
        "audit-ID" = %line.audit_id.as_str(),
        "srcIP" = %src_ip,
        resp = line.code,
        user = %line.user.map_or("", |u| u.name.as_str()),
        "HTTP"
    );
}

/// What the limits need to know of a request, worked out once.
#[derive(Clone, Copy)]
struct Limits {
    long_running: bool,
    timeout: Duration,
}

/// kube's max-in-flight filter: 429 (plain text, as kube's filter answers) when the pool of
/// the request's kind is full.
async fn limit_inflight(State(api): State<Arc<Api>>, mut req: HttpRequest, next: Next) -> Response {
    let query = match req.extensions_mut().remove::<Query>() {
        Some(query) => query,
        None => Query::parse(req.uri().query()),
    };
    let limits = Limits {
        long_running: is_long_running(&req, &query),
        timeout: request_timeout(&query),
    };
    req.extensions_mut().insert(limits);
    req.extensions_mut().insert(query);
    if limits.long_running {
        return next.run(req).await;
    }
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let pool = if mutating {
        &api.mutating
    } else {
        &api.readonly
    };
    let user = req
        .extensions()
        .get::<UserInfo>()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let share = if mutating {
        &api.mutating_per_user
    } else {
        &api.readonly_per_user
    };
    let Some(_user_permit) = share.try_acquire(&user) else {
        api.metrics.record_dropped(&req);
        return too_many_requests();
    };
    let Ok(_permit) = pool.clone().try_acquire_owned() else {
        api.metrics.record_dropped(&req);
        return too_many_requests();
    };
    let _inflight = api.metrics.inflight_started(mutating);
    next.run(req).await
}

async fn limit_time(req: HttpRequest, next: Next) -> Response {
    let limits = req.extensions().get::<Limits>().copied();
    let Some(limits) = limits.filter(|l| !l.long_running) else {
        return next.run(req).await;
    };
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error_response(
            &ApiError::Timeout {
                message: "request did not complete within the allotted timeout".to_string(),
                retry_after: None,
                too_large_rv: false,
            },
            false,
        ),
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string());
    tracing::error!(panic = %what, "handler panicked");
    error_response(&ApiError::Internal(what), false)
}

/// Watches are long-running: no timeout (they end on their own) and no in-flight slot.
fn is_long_running(req: &HttpRequest, query: &Query) -> bool {
    let path = req.uri().path();
    *req.method() == Method::GET && (path.contains("/watch/") || query.flag("watch"))
}

/// `--request-timeout` (60 s), shortened by a `?timeout=` the client sends (Go duration).
fn request_timeout(query: &Query) -> Duration {
    let default = Duration::from_secs(60);
    query
        .get("timeout")
        .and_then(parse_seconds)
        .map(|t| t.min(default))
        .unwrap_or(default)
}

/// A client's `?timeout=` (Go duration, e.g. `32s`); zero or malformed means none.
fn parse_seconds(text: &str) -> Option<Duration> {
    apimachinery::duration::parse_go_duration(text)
        .ok()
        .filter(|d| !d.is_zero())
}

fn too_many_requests() -> Response {
    let mut r = respond(
        429,
        "text/plain; charset=utf-8",
        Bytes::from("Too many requests, please try again later.\n"),
        &[],
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Path;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    const OVER: usize = GZIP_THRESHOLD_BYTES as usize + 1;

    /// The two compression layers over a route with a complete body of any length and a
    /// streamed one of 300 KiB.
    fn compressing_router() -> Router {
        Router::new()
            .route(
                "/full/{len}",
                get(|Path(len): Path<usize>| async move { vec![b'x'; len] }),
            )
            .route(
                "/stream",
                get(|| async {
                    let chunks =
                        (0..3).map(|_| Ok::<_, std::convert::Infallible>(vec![b'x'; 100 * 1024]));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .layer(gzip_large_responses())
            .layer(from_fn(kube_accept_encoding))
    }

    /// Status, Content-Encoding and body of a GET sent with `accept_encoding`.
    async fn fetch(uri: &str, accept_encoding: Option<&str>) -> (u16, Option<String>, Bytes) {
        let mut req = axum::http::Request::builder().uri(uri);
        if let Some(value) = accept_encoding {
            req = req.header(header::ACCEPT_ENCODING, value);
        }
        let req = req.body(Body::empty()).expect("request");
        let resp = compressing_router().oneshot(req).await.expect("infallible");
        let encoding = resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (code, encoding, body)
    }

    #[tokio::test]
    async fn only_complete_bodies_over_128_kib_are_gzipped() {
        let (code, encoding, body) = fetch(&format!("/full/{OVER}"), Some("gzip")).await;
        assert_eq!((code, encoding.as_deref()), (200, Some("gzip")));
        assert!(body.starts_with(&[0x1f, 0x8b]), "gzip magic");
        assert!(body.len() < OVER / 10, "{} bytes", body.len());

        let at_threshold = format!("/full/{GZIP_THRESHOLD_BYTES}");
        let (_, encoding, body) = fetch(&at_threshold, Some("gzip")).await;
        assert_eq!((encoding, body.len() as u64), (None, GZIP_THRESHOLD_BYTES));

        let (_, encoding, body) = fetch("/stream", Some("gzip")).await;
        assert_eq!((encoding, body.len()), (None, 300 * 1024));
    }

    #[tokio::test]
    async fn gzip_is_negotiated_as_kube_negotiates_it() {
        let large = format!("/full/{OVER}");
        for (accept, gzipped) in [
            (None, false),
            (Some("gzip"), true),
            (Some("deflate, gzip, br"), true),
            (Some(" br ,gzip "), true),
            (Some("gzip;q=1.0"), false),
            (Some("br"), false),
            (Some("*"), false),
        ] {
            let (code, encoding, body) = fetch(&large, accept).await;
            assert_eq!(code, 200, "{accept:?}");
            assert_eq!(encoding.is_some(), gzipped, "{accept:?}");
            assert_eq!(body.len() == OVER, !gzipped, "{accept:?}");
        }
        // tower-http alone would answer 406 here.
        for refused in ["identity;q=0", "*;q=0"] {
            let (code, encoding, body) = fetch(&large, Some(refused)).await;
            assert_eq!((code, encoding, body.len()), (200, None, OVER), "{refused}");
        }
    }

    #[test]
    fn client_timeouts_parse_as_go_durations() {
        assert_eq!(
            parse_seconds("32s"),
            Some(std::time::Duration::from_secs(32))
        );
        assert_eq!(
            parse_seconds("1m"),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(
            parse_seconds("500ms"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_seconds("0s"), None);
        assert_eq!(parse_seconds("x"), None);
        assert_eq!(parse_seconds("5"), None);
    }
}
