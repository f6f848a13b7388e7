//! Discovery and the other fixed documents (spec §3): `/`, the 404 path list, `/version`,
//! `/apis` (legacy and aggregated, with its ETag). Named `discovery_handlers` so that it does
//! not clash with `apimachinery::discovery`, which `mod.rs` imports as `discovery`.

use std::sync::Arc;

use apimachinery::discovery;
use apimachinery::negotiate;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use super::render::respond;
use super::Api;

pub(super) async fn root(State(api): State<Arc<Api>>) -> Response {
    respond(
        200,
        "application/json",
        Bytes::from(serde_json::to_string_pretty(&api.root_paths()).unwrap_or_default()),
        &[],
    )
}

pub(super) async fn not_found_paths(State(api): State<Arc<Api>>) -> Response {
    respond(
        404,
        "application/json",
        Bytes::from(serde_json::to_string_pretty(&api.root_paths()).unwrap_or_default()),
        &[],
    )
}

pub(super) async fn version() -> Response {
    let v = json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0",
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    });
    respond(
        200,
        "application/json",
        Bytes::from(serde_json::to_string_pretty(&v).unwrap_or_default()),
        &[],
    )
}

pub(super) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
}

pub(super) async fn apis(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !negotiate::wants_aggregated_discovery(accept) {
        return respond(200, "application/json", api.group_list.clone(), &[]);
    }
    let mut resp = if if_none_match(&headers, &api.aggregated_etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        respond(
            200,
            discovery::AGGREGATED_CONTENT_TYPE,
            api.aggregated.clone(),
            &[],
        )
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&api.aggregated_etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    resp
}
