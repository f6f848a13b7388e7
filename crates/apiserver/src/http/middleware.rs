//! The layer every request passes through (spec §0): authentication, the Audit-Id and
//! Cache-Control headers, one log line per request, and the guard around the handler
//! (in-flight limits → 429, request timeout → 504, panic → 500).

use std::sync::Arc;
use std::time::Instant;

use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;

use super::render::{error_response, respond};
use super::Api;
use crate::resource::UserInfo;

const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

pub(super) async fn common_layer(
    State(api): State<Arc<Api>>,
    mut req: HttpRequest,
    next: axum::middleware::Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let audit_id = uuid::Uuid::new_v4().to_string();
    let anonymous_ok = ANONYMOUS_PATHS
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let user = api.config.auth.authenticate(
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let mut response = match (&user, anonymous_ok) {
        (Some(u), _) => {
            req.extensions_mut().insert(u.clone());
            run_guarded(&api, req, next).await
        }
        (None, true) => {
            req.extensions_mut().insert(UserInfo {
                name: "system:anonymous".into(),
                uid: String::new(),
                groups: vec!["system:unauthenticated".into()],
            });
            run_guarded(&api, req, next).await
        }
        (None, false) => error_response(&ApiError::Unauthorized, false),
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&audit_id) {
        headers.insert("audit-id", v);
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache, private"));
    let code = response.status().as_u16();
    tracing::info!(
        verb = %method,
        path = %path,
        code,
        user = user.as_ref().map(|u| u.name.as_str()).unwrap_or("system:anonymous"),
        latency_ms = start.elapsed().as_secs_f64() * 1e3,
        audit_id = %audit_id,
        "request"
    );
    response
}

/// The limits around a handler (spec §0): at most `--max-requests-inflight` reads and
/// `--max-mutating-requests-inflight` writes at once (429 beyond, plain text as kube's filter
/// answers), a timeout for non-watch requests (504), and a panic becomes a 500 Status.
async fn run_guarded(api: &Api, req: HttpRequest, next: axum::middleware::Next) -> Response {
    use futures::FutureExt;
    let query = Query::parse(req.uri().query());
    let watch = is_long_running(&req, &query);
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let _permit = if watch {
        None
    } else {
        let pool = if mutating {
            &api.mutating
        } else {
            &api.readonly
        };
        match pool.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return too_many_requests(),
        }
    };
    let timeout = request_timeout(&query);
    let run = std::panic::AssertUnwindSafe(next.run(req)).catch_unwind();
    let outcome = if watch {
        Ok(run.await)
    } else {
        tokio::time::timeout(timeout, run).await
    };
    match outcome {
        Ok(Ok(resp)) => resp,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            tracing::error!(panic = %what, "handler panicked");
            error_response(&ApiError::Internal(what), false)
        }
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

/// Watches are long-running: no timeout (they end on their own) and no in-flight slot.
fn is_long_running(req: &HttpRequest, query: &Query) -> bool {
    let path = req.uri().path();
    *req.method() == Method::GET && (path.contains("/watch/") || query.flag("watch"))
}

/// `--request-timeout` (60 s), shortened by a `?timeout=` the client sends (Go duration).
fn request_timeout(query: &Query) -> std::time::Duration {
    let default = std::time::Duration::from_secs(60);
    query
        .get("timeout")
        .and_then(parse_seconds)
        .map(|t| t.min(default))
        .unwrap_or(default)
}

/// A client's `?timeout=` (Go duration, e.g. `32s`); zero or malformed means none.
fn parse_seconds(text: &str) -> Option<std::time::Duration> {
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
    use super::*;

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
