//! The OpenAPI endpoints (spec §5.1): `/openapi/v2` (JSON, or the protobuf header kubectl
//! asks for) and `/openapi/v3` (the index and the hashed group-version document).

use std::sync::Arc;

use apimachinery::discovery;
use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::body::Body;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use super::discovery_handlers::{if_none_match, not_found_paths};
use super::render::{error_response, json_line, respond};
use super::Api;

pub(super) async fn openapi_v2(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let Some(doc) = &api.config.openapi.v2 else {
        return not_found_paths(State(api.clone())).await;
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    let media: Vec<&str> = accept
        .split(',')
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .collect();
    let json_ok = media
        .iter()
        .any(|m| matches!(*m, "application/json" | "*/*" | "application/*" | ""));
    if !json_ok && media.iter().any(|m| PROTO_V2_TYPES.contains(m)) {
        return respond(200, PROTO_V2_TYPES[1], proto_v2_header(&api), &[]);
    }
    if !json_ok {
        return error_response(
            &ApiError::NotAcceptable(
                "only the following media types are accepted: application/json".to_string(),
            ),
            false,
        );
    }
    let etag = discovery::etag(doc);
    let mut resp = if if_none_match(&headers, &etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        respond(200, "application/json", doc.clone(), &[])
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// The media types of the protobuf OpenAPI v2 document (client-go's `OpenAPISchema()` asks
/// for nothing else).
const PROTO_V2_TYPES: [&str; 2] = [
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// The protobuf v2 document (gnostic `openapi.v2.Document`) with its header only: `swagger`
/// (field 1) and `info` (field 2: title 1, version 2). kubectl falls back to it for kinds whose
/// v3 PATCH operation does not advertise `fieldValidation` (create-only kinds); finding no
/// definition there, it leaves validation to the server. The JSON documents are complete.
fn proto_v2_header(api: &Api) -> Bytes {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut len = bytes.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(&mut info, 1, b"image-apiserver");
    field(
        &mut info,
        2,
        format!("{}/{}", api.config.group, api.config.version).as_bytes(),
    );
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    Bytes::from(doc)
}

fn v3_path(api: &Api) -> String {
    format!("apis/{}/{}", api.config.group, api.config.version)
}

pub(super) async fn openapi_v3_index(State(api): State<Arc<Api>>) -> Response {
    let Some(hash) = &api.v3_hash else {
        return not_found_paths(State(api.clone())).await;
    };
    let path = v3_path(&api);
    let body = json!({"paths": {path.clone(): {"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}}});
    respond(200, "application/json", json_line(&body), &[])
}

pub(super) async fn openapi_v3_doc(
    State(api): State<Arc<Api>>,
    Path(path): Path<String>,
    req: HttpRequest,
) -> Response {
    let (Some(doc), Some(hash)) = (&api.config.openapi.v3, &api.v3_hash) else {
        return not_found_paths(State(api.clone())).await;
    };
    if path.trim_matches('/') != v3_path(&api) {
        return not_found_paths(State(api.clone())).await;
    }
    let q = Query::parse(req.uri().query());
    let url = format!("/openapi/v3/{}?hash={hash}", v3_path(&api));
    let mut resp = match q.get("hash") {
        Some(h) if h != hash => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(v) = HeaderValue::from_str(&url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        Some(_) => {
            let mut r = respond(200, "application/json", doc.clone(), &[]);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
            let formatted =
                jiff::fmt::rfc2822::to_string(&expires.to_zoned(jiff::tz::TimeZone::UTC))
                    .unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&formatted) {
                r.headers_mut().insert(header::EXPIRES, v);
            }
            r
        }
        None => respond(200, "application/json", doc.clone(), &[]),
    };
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}
