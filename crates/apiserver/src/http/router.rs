//! The `router` fn: every path the server answers, mapped to its handler in the sibling
//! modules, wrapped in the common middleware stack.

use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;

use super::discovery_handlers::{apis, not_found_paths, root, version};
use super::dispatch::api_request;
use super::health::{healthz, healthz_one, livez, livez_one, metrics, readyz, readyz_one};
use super::middleware::with_common_stack;
use super::openapi::{openapi_v2, openapi_v3_doc, openapi_v3_index};
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
        .fallback(not_found_paths);
    with_common_stack(routes, &api).with_state(api)
}
