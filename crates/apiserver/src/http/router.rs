//! The `router` fn: every path the server answers, mapped to its handler in the sibling
//! modules, wrapped in the common middleware stack.

use std::sync::Arc;

use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::extract::Request as HttpRequest;
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;

use super::discovery_handlers::{
    apis, core_resource_not_found, core_resources, core_versions, not_found_paths, root, version,
};
use super::dispatch::api_request;
use super::health::{healthz, healthz_one, livez, livez_one, metrics, readyz, readyz_one};
use super::middleware::with_common_stack;
use super::openapi::{openapi_v2, openapi_v3_doc, openapi_v3_index};
use super::render::{error_response, wants_pretty};
use super::self_review::{self_subject_access_review_handler, self_subject_review_handler};
use super::Api;

pub fn router(api: Arc<Api>) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/version", get(version))
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz_one))
        .route("/livez", get(livez))
        .route("/livez/{check}", get(livez_one))
        .route("/readyz", get(readyz))
        .route("/readyz/{check}", get(readyz_one))
        .route("/metrics", get(metrics))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*path}", get(openapi_v3_doc))
        // The core group: named, with nothing in it (see `discovery_handlers`).
        .route("/api", get(core_versions))
        .route("/api/", get(core_versions))
        .route("/api/v1", get(core_resources))
        .route("/api/v1/", get(core_resources))
        .route("/api/v1/{*rest}", any(core_resource_not_found))
        .route("/apis", get(apis))
        .route("/apis/", get(apis))
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(self_subject_review_handler),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(self_subject_access_review_handler),
        )
        .route("/apis/{*rest}", any(api_request))
        .fallback(not_found_paths)
        .layer(from_fn(refuse_undecodable_paths));
    with_common_stack(routes, &api).with_state(api)
}

/// A path whose percent-decoding is not UTF-8 names nothing served here: it gets the 404
/// Status of any unknown path, not the path extractors' plain-text 400. Inside the common
/// stack, so the request is still authenticated, authorized and audited first.
async fn refuse_undecodable_paths(req: HttpRequest, next: Next) -> Response {
    if decoded_path(req.uri().path()).is_none() {
        let pretty = wants_pretty(&Query::parse(req.uri().query()), req.headers());
        return error_response(&ApiError::RouteNotFound, pretty);
    }
    next.run(req).await
}

/// The request path percent-decoded, as Go's `URL.Path` is and as axum's path extractors
/// decode it; `None` when the decoded bytes are not UTF-8. A `%` not followed by two hex
/// digits stays as it is.
pub(super) fn decoded_path(raw: &str) -> Option<String> {
    String::from_utf8(percent_decode(raw.as_bytes())).ok()
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = match tail {
            [hi, lo, after @ ..] if first == b'%' => hex(*hi)
                .zip(hex(*lo))
                .map(|(hi, lo)| ((hi << 4) | lo, after)),
            _ => None,
        };
        match escaped {
            Some((byte, after)) => {
                out.push(byte);
                rest = after;
            }
            None => {
                out.push(first);
                rest = tail;
            }
        }
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn paths_decode_like_go_and_refuse_invalid_utf8() {
        assert_eq!(decoded_path("/apis/a%2Fb").as_deref(), Some("/apis/a/b"));
        assert_eq!(decoded_path("/x/%C3%A9").as_deref(), Some("/x/\u{e9}"));
        assert_eq!(decoded_path("/x/%zz%4").as_deref(), Some("/x/%zz%4"));
        assert_eq!(decoded_path("/x/100%").as_deref(), Some("/x/100%"));
        assert_eq!(decoded_path("/x/%ff"), None);
        assert_eq!(decoded_path("/x/%C3"), None);
    }

    async fn answer(router: Router, uri: &str) -> (u16, serde_json::Value) {
        let req = axum::http::Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let resp = router.oneshot(req).await.expect("infallible");
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (code, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn an_undecodable_path_is_a_not_found_status() {
        let router = Router::new()
            .route("/apis/{*rest}", any(|| async { "served" }))
            .layer(from_fn(refuse_undecodable_paths));
        let (code, status) = answer(
            router.clone(),
            "/apis/image.openshift.io/v1/namespaces/%ff/imagestreams",
        )
        .await;
        assert_eq!(code, 404);
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(
            status["message"],
            "the server could not find the requested resource"
        );
        let (code, _) = answer(router, "/apis/image.openshift.io/v1/namespaces/%C3%A9/x").await;
        assert_eq!(code, 200);
    }
}
