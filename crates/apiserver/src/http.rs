//! The HTTP surface (spec §0, §1, §3, §4.4, §4.5, §5.1, §7): routing of API paths to resources,
//! authentication, content negotiation, encoding of objects, lists, tables, watch streams and
//! Status errors, discovery, version, health and OpenAPI documents.

use std::sync::Arc;
use std::time::Instant;

use apimachinery::discovery::{self, ResourceInfo};
use apimachinery::errors::{ApiError, MAX_REQUEST_BODY_BYTES};
use apimachinery::negotiate::{self, Encoding, IncludeObject, Negotiated, Shape, Target};
use apimachinery::options::Query;
use apimachinery::request::{self, RequestInfo};
use apimachinery::table::{partial_object_metadata, Table, TableRow, NAME_COLUMN};
use axum::body::Body;
use axum::extract::{Path, Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::auth::TokenAuthenticator;
use crate::metrics::Metrics;
use crate::resource::{Reply, Request, Resource, UserInfo, Verb, Warnings, WatchEvent};

/// What `/healthz`, `/livez` and `/readyz` check, supplied by the binary.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// Storage answers (the `etcd` check).
    async fn storage_ok(&self) -> bool;
    /// Every watch cache has loaded (the `informer-sync` check).
    fn caches_ready(&self) -> bool;
}

/// OpenAPI documents served as they are (generated at build time, checked into `api/`).
#[derive(Clone, Default)]
pub struct OpenApi {
    pub v2: Option<Bytes>,
    /// The `/openapi/v3/apis/<group>/<version>` document.
    pub v3: Option<Bytes>,
}

pub struct ApiConfig {
    pub group: &'static str,
    pub version: &'static str,
    pub resources: Vec<Arc<dyn Resource>>,
    pub auth: TokenAuthenticator,
    pub health: Arc<dyn Health>,
    pub openapi: OpenApi,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Shared with whatever else records metrics (the instrumented store).
    pub metrics: Metrics,
    /// kube's `--max-requests-inflight` and `--max-mutating-requests-inflight`.
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
}

/// Everything precomputed that requests share.
pub struct Api {
    config: ApiConfig,
    group_list: Bytes,
    group: Bytes,
    resource_list: Bytes,
    aggregated: Bytes,
    aggregated_etag: String,
    v3_hash: Option<String>,
    pub metrics: Metrics,
    readonly: Arc<tokio::sync::Semaphore>,
    mutating: Arc<tokio::sync::Semaphore>,
}

fn json_line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

impl Api {
    pub fn new(config: ApiConfig) -> Arc<Self> {
        let infos: Vec<ResourceInfo> = config.resources.iter().map(|r| r.info().clone()).collect();
        let gv = format!("{}/{}", config.group, config.version);
        let mut group_list =
            serde_json::to_value(discovery::api_group_list(&[(config.group, config.version)]))
                .unwrap_or_default();
        group_list["kind"] = json!("APIGroupList");
        group_list["apiVersion"] = json!("v1");
        let mut group = serde_json::to_value(discovery::api_group(config.group, config.version))
            .unwrap_or_default();
        group["kind"] = json!("APIGroup");
        group["apiVersion"] = json!("v1");
        let mut resource_list =
            serde_json::to_value(discovery::api_resource_list(&gv, &infos)).unwrap_or_default();
        resource_list["kind"] = json!("APIResourceList");
        resource_list["apiVersion"] = json!("v1");
        let aggregated = json_line(&discovery::aggregated_discovery(
            config.group,
            config.version,
            &infos,
        ));
        let v3_hash = config.openapi.v3.as_ref().map(|d| discovery::hex_sha512(d));
        Arc::new(Api {
            group_list: json_line(&group_list),
            group: json_line(&group),
            resource_list: json_line(&resource_list),
            aggregated_etag: discovery::etag(&aggregated),
            aggregated,
            v3_hash,
            metrics: config.metrics.clone(),
            readonly: Arc::new(tokio::sync::Semaphore::new(
                config.max_requests_inflight.max(1),
            )),
            mutating: Arc::new(tokio::sync::Semaphore::new(
                config.max_mutating_requests_inflight.max(1),
            )),
            config,
        })
    }

    fn resource(&self, name: &str) -> Option<&Arc<dyn Resource>> {
        self.config
            .resources
            .iter()
            .find(|r| r.info().resource == name)
    }

    fn root_paths(&self) -> Value {
        let g = self.config.group;
        let v = self.config.version;
        let mut paths = vec![
            "/apis".to_string(),
            format!("/apis/{g}"),
            format!("/apis/{g}/{v}"),
            "/healthz".into(),
            "/livez".into(),
            "/metrics".into(),
            "/openapi/v2".into(),
            "/openapi/v3".into(),
            "/readyz".into(),
            "/version".into(),
        ];
        paths.sort();
        json!({ "paths": paths })
    }

    fn shutting_down(&self) -> bool {
        *self.config.shutdown.borrow()
    }
}

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
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
        .route("/apis/{*rest}", any(api_request))
        .fallback(not_found_paths)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            common_layer,
        ))
        .with_state(api)
}

// ---------------------------------------------------------------------------------------------
// Middleware: authentication, headers, one log line per request.

const ANONYMOUS_PATHS: &[&str] = &["/healthz", "/livez", "/readyz"];

async fn common_layer(
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

// ---------------------------------------------------------------------------------------------
// Encoding

fn wants_pretty(query: &Query, headers: &HeaderMap) -> bool {
    if query.pretty() {
        return true;
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ua.starts_with("curl") || ua.starts_with("Wget") || ua.starts_with("Mozilla/5.0")
}

/// Sorts object keys (YAML output lists keys in order, as Go's does).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

struct Encoder {
    encoding: Encoding,
    pretty: bool,
}

impl Encoder {
    /// Encodes JSON bytes (compact, from the cache) for the response.
    fn bytes(&self, json: Bytes) -> Bytes {
        match (self.encoding, self.pretty) {
            (Encoding::Json, false) => {
                let mut out = BytesMut::with_capacity(json.len() + 1);
                out.put_slice(&json);
                out.put_u8(b'\n');
                out.freeze()
            }
            _ => match serde_json::from_slice::<Value>(&json) {
                Ok(v) => self.value(&v),
                Err(_) => json,
            },
        }
    }

    fn value(&self, v: &Value) -> Bytes {
        match (self.encoding, self.pretty) {
            (Encoding::Yaml, _) => {
                Bytes::from(serde_norway::to_string(&sorted(v.clone())).unwrap_or_default())
            }
            (Encoding::Json, true) => {
                Bytes::from(serde_json::to_string_pretty(v).unwrap_or_default())
            }
            (Encoding::Json, false) => json_line(v),
        }
    }
}

fn respond(code: u16, content_type: &str, body: Bytes, warnings: &[String]) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    for w in warnings {
        let text = format!("299 - {}", apimachinery::field::go_quote(w));
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.append(header::WARNING, v);
        }
    }
    resp
}

/// A Status error response.
pub fn error_response(err: &ApiError, pretty: bool) -> Response {
    let mut status = serde_json::to_value(err.to_status()).unwrap_or_default();
    if let Some(o) = status.as_object_mut() {
        o.insert("kind".into(), json!("Status"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    let status = order_status(status);
    let body = if pretty {
        Bytes::from(serde_json::to_string_pretty(&status).unwrap_or_default())
    } else {
        json_line(&status)
    };
    let mut resp = respond(err.code(), "application/json", body, &[]);
    let headers = resp.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Some(retry) = err.retry_after().filter(|r| *r > 0) {
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            headers.insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// Go's field order for Status: kind, apiVersion, metadata, status, message, reason, details,
/// code.
fn order_status(v: Value) -> Value {
    let Value::Object(mut m) = v else { return v };
    let mut out = serde_json::Map::new();
    for k in [
        "kind",
        "apiVersion",
        "metadata",
        "status",
        "message",
        "reason",
        "details",
        "code",
    ] {
        match m.remove(k) {
            Some(val) => {
                out.insert(k.to_string(), val);
            }
            None if k == "metadata" => {
                out.insert(k.to_string(), json!({}));
            }
            None => {}
        }
    }
    out.extend(m);
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Non-resource endpoints

async fn root(State(api): State<Arc<Api>>) -> Response {
    respond(
        200,
        "application/json",
        Bytes::from(serde_json::to_string_pretty(&api.root_paths()).unwrap_or_default()),
        &[],
    )
}

async fn not_found_paths(State(api): State<Arc<Api>>) -> Response {
    respond(
        404,
        "application/json",
        Bytes::from(serde_json::to_string_pretty(&api.root_paths()).unwrap_or_default()),
        &[],
    )
}

async fn version() -> Response {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Healthz,
    Livez,
    Readyz,
}

async fn run_checks(api: &Api, probe: Probe) -> Vec<(&'static str, bool)> {
    let storage = api.config.health.storage_ok().await;
    let mut checks = vec![("ping", true), ("log", true), ("etcd", storage)];
    if probe == Probe::Readyz {
        checks.push(("etcd-readiness", storage));
        checks.push(("informer-sync", api.config.health.caches_ready()));
        checks.push(("shutdown", !api.shutting_down()));
    }
    checks
}

async fn probe(api: &Api, probe: Probe, query: Option<&str>, only: Option<&str>) -> Response {
    let name = match probe {
        Probe::Healthz => "healthz",
        Probe::Livez => "livez",
        Probe::Readyz => "readyz",
    };
    // ping and log need nothing: they answer at once (the cheapest authenticated handler).
    if matches!(only, Some("ping" | "log")) {
        return respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]);
    }
    let q = Query::parse(query);
    let verbose = q.get("verbose").is_some();
    let excluded = q.all("exclude");
    let checks = run_checks(api, probe).await;
    if let Some(only) = only {
        return match checks.iter().find(|(c, _)| *c == only) {
            Some((_, true)) => respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]),
            Some((_, false)) => respond(
                500,
                "text/plain; charset=utf-8",
                Bytes::from(format!("internal server error: {only} failed\n")),
                &[],
            ),
            None => respond(
                404,
                "text/plain; charset=utf-8",
                Bytes::from("404 page not found\n"),
                &[],
            ),
        };
    }
    let mut lines = Vec::new();
    let mut ok = true;
    for (check, passed) in &checks {
        if excluded.contains(check) {
            lines.push(format!("[+]{check} excluded: ok"));
        } else if *passed {
            lines.push(format!("[+]{check} ok"));
        } else {
            ok = false;
            lines.push(format!("[-]{check} failed: reason withheld"));
        }
    }
    if ok && !verbose {
        return respond(200, "text/plain; charset=utf-8", Bytes::from("ok"), &[]);
    }
    let tail = if ok {
        format!("{name} check passed")
    } else {
        format!("{name} check failed")
    };
    lines.push(tail);
    respond(
        if ok { 200 } else { 500 },
        "text/plain; charset=utf-8",
        Bytes::from(lines.join("\n") + "\n"),
        &[],
    )
}

async fn healthz(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    probe(&api, Probe::Healthz, req.uri().query(), None).await
}
async fn livez(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    probe(&api, Probe::Livez, req.uri().query(), None).await
}
async fn readyz(State(api): State<Arc<Api>>, req: HttpRequest) -> Response {
    probe(&api, Probe::Readyz, req.uri().query(), None).await
}
async fn healthz_one(State(api): State<Arc<Api>>, Path(check): Path<String>) -> Response {
    probe(&api, Probe::Healthz, None, Some(&check)).await
}
async fn livez_one(State(api): State<Arc<Api>>, Path(check): Path<String>) -> Response {
    probe(&api, Probe::Livez, None, Some(&check)).await
}
async fn readyz_one(State(api): State<Arc<Api>>, Path(check): Path<String>) -> Response {
    probe(&api, Probe::Readyz, None, Some(&check)).await
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    respond(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(api.metrics.render()),
        &[],
    )
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
}

async fn apis(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
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

async fn openapi_v2(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
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

async fn openapi_v3_index(State(api): State<Arc<Api>>) -> Response {
    let Some(hash) = &api.v3_hash else {
        return not_found_paths(State(api.clone())).await;
    };
    let path = v3_path(&api);
    let body = json!({"paths": {path.clone(): {"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}}});
    respond(200, "application/json", json_line(&body), &[])
}

async fn openapi_v3_doc(
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

// ---------------------------------------------------------------------------------------------
// Resource requests

fn verb_for(method: &Method, info: &RequestInfo, query: &Query) -> Option<Verb> {
    let named = info.name.is_some();
    Some(match *method {
        Method::GET | Method::HEAD => {
            if info.watch_path || (!named && query.flag("watch")) {
                Verb::Watch
            } else if named {
                Verb::Get
            } else {
                Verb::List
            }
        }
        Method::POST if !named || info.subresource.is_some() => Verb::Create,
        Method::PUT if named => Verb::Update,
        Method::PATCH if named => Verb::Patch,
        Method::DELETE if named => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => return None,
    })
}

/// The error for a verb a resource does not serve, as go-restful's routes give it: a watch is
/// 405 naming the resource; a path with no route at all (an item path of a resource without
/// item verbs, or the reverse) is 404; another method on an existing route is 405.
fn disallowed(r: &ResourceInfo, info: &RequestInfo, verb: Verb) -> ApiError {
    if verb == Verb::Watch {
        return ApiError::MethodNotAllowed {
            verb: verb.as_str().to_string(),
            resource: apimachinery::GroupResource::new(r.group, r.resource),
        };
    }
    let item_verbs = ["get", "update", "patch", "delete"];
    let collection_verbs = ["list", "create", "deletecollection"];
    let has_route = if info.name.is_some() && info.subresource.is_none() {
        r.verbs.iter().any(|v| item_verbs.contains(v))
    } else if info.name.is_none() {
        r.verbs.iter().any(|v| collection_verbs.contains(v))
    } else {
        true
    };
    if has_route {
        ApiError::RouteMethodNotAllowed
    } else {
        ApiError::RouteNotFound
    }
}

/// Whether discovery advertises `verb` for this (sub)resource.
fn allowed(info: &ResourceInfo, subresource: Option<&str>, verb: Verb) -> bool {
    let verbs = match subresource {
        None => info.verbs,
        Some(s) => match info.subresources.iter().find(|x| x.name == s) {
            Some(sub) => sub.verbs,
            None => return true,
        },
    };
    verbs.contains(&verb.as_str())
}

async fn api_request(
    State(api): State<Arc<Api>>,
    Path(rest): Path<String>,
    user: axum::Extension<UserInfo>,
    req: HttpRequest,
) -> Response {
    let headers = req.headers().clone();
    let query = Query::parse(req.uri().query());
    let pretty = wants_pretty(&query, &headers);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let group_matches = segments.first() == Some(&api.config.group);
    match segments.as_slice() {
        [_] if group_matches => return respond(200, "application/json", api.group.clone(), &[]),
        [_, v] if group_matches && *v == api.config.version => {
            return respond(200, "application/json", api.resource_list.clone(), &[])
        }
        _ => {}
    }
    let Some(info) = request::parse(&rest)
        .filter(|i| i.group == api.config.group && i.version == api.config.version)
    else {
        if group_matches {
            return error_response(&ApiError::RouteNotFound, pretty);
        }
        return not_found_paths(State(api.clone())).await;
    };
    let Some(resource) = api.resource(&info.resource).cloned() else {
        return error_response(&ApiError::RouteNotFound, pretty);
    };
    let Some(verb) = verb_for(req.method(), &info, &query) else {
        return error_response(&ApiError::RouteMethodNotAllowed, pretty);
    };
    if info.namespace.is_some() != resource.info().namespaced
        && !(resource.info().namespaced
            && info.namespace.is_none()
            && matches!(verb, Verb::List | Verb::Watch))
    {
        return error_response(&ApiError::RouteNotFound, pretty);
    }
    if !allowed(resource.info(), info.subresource.as_deref(), verb) {
        return error_response(&disallowed(resource.info(), &info, verb), pretty);
    }
    let started = Instant::now();
    let response = handle_resource(
        &api,
        resource.clone(),
        info,
        verb,
        query,
        headers,
        user.0,
        req,
        pretty,
    )
    .await;
    api.metrics.observe(
        verb.as_str(),
        resource.info().resource,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[allow(clippy::too_many_arguments)]
async fn handle_resource(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    info: RequestInfo,
    verb: Verb,
    query: Query,
    headers: HeaderMap,
    user: UserInfo,
    req: HttpRequest,
    pretty: bool,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let shape = match verb {
        Verb::List | Verb::DeleteCollection => Shape::List,
        Verb::Watch => Shape::Watch,
        _ => Shape::Item,
    };
    let negotiated = match negotiate::negotiate(accept, shape, &resource.type_name()) {
        Ok(n) => n,
        Err(e) => return error_response(&e, pretty),
    };
    let include = if negotiated.target == Target::Table {
        match IncludeObject::parse(query.get("includeObject")) {
            Ok(i) => i,
            Err(e) => return error_response(&e, pretty),
        }
    } else {
        IncludeObject::None
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| ct.split(';').next().unwrap_or("").trim().to_string())
        .filter(|ct| !ct.is_empty());
    let body = match axum::body::to_bytes(req.into_body(), MAX_REQUEST_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                &ApiError::RequestEntityTooLarge(format!("limit is {MAX_REQUEST_BODY_BYTES}")),
                pretty,
            )
        }
    };
    let warnings = Warnings::default();
    let request = Request {
        verb,
        namespace: info.namespace,
        name: info.name,
        subresource: info.subresource,
        query,
        body,
        content_type,
        user,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        warnings: warnings.clone(),
        shutdown: api.config.shutdown.clone(),
    };
    let reply = match resource.handle(request).await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = error_response(&e, pretty);
            for w in warnings.take() {
                if let Ok(v) =
                    HeaderValue::from_str(&format!("299 - {}", apimachinery::field::go_quote(&w)))
                {
                    resp.headers_mut().append(header::WARNING, v);
                }
            }
            return resp;
        }
    };
    let encoder = Encoder {
        encoding: negotiated.encoding,
        pretty,
    };
    let warnings = warnings.take();
    render(
        api, resource, reply, negotiated, include, &encoder, &warnings,
    )
}

fn table_object(include: IncludeObject, object: &Value) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(object),
        IncludeObject::Object => object.clone(),
    }
}

fn table_for(
    resource: &dyn Resource,
    metadata: Value,
    objects: &[Value],
    include: IncludeObject,
    with_columns: bool,
) -> Table {
    let mut columns = vec![NAME_COLUMN];
    columns.extend(resource.table_columns());
    let rows = objects
        .iter()
        .map(|o| TableRow {
            cells: resource.table_row(o),
            object: table_object(include, o),
        })
        .collect();
    Table::new(
        metadata,
        if with_columns { columns } else { Vec::new() },
        rows,
    )
}

fn render(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    reply: Reply,
    negotiated: Negotiated,
    include: IncludeObject,
    encoder: &Encoder,
    warnings: &[String],
) -> Response {
    let ct = negotiated.encoding.content_type();
    match reply {
        Reply::Status { code, status } => respond(code, ct, encoder.value(&status), warnings),
        Reply::Object { code, json } => match negotiated.target {
            Target::Object => respond(code, ct, encoder.bytes(json), warnings),
            Target::Table => {
                let obj: Value = serde_json::from_slice(&json).unwrap_or_default();
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let table = table_for(
                    resource.as_ref(),
                    json!({"resourceVersion": rv}),
                    &[obj],
                    include,
                    true,
                );
                respond(
                    code,
                    ct,
                    encoder.value(&serde_json::to_value(&table).unwrap_or_default()),
                    warnings,
                )
            }
            Target::PartialObjectMetadata | Target::PartialObjectMetadataList => {
                let obj: Value = serde_json::from_slice(&json).unwrap_or_default();
                respond(
                    code,
                    ct,
                    encoder.value(&partial_object_metadata(&obj)),
                    warnings,
                )
            }
        },
        Reply::List {
            kind,
            api_version,
            metadata,
            items,
        } => match negotiated.target {
            Target::Object if negotiated.encoding == Encoding::Json && !encoder.pretty => {
                let mut out =
                    BytesMut::with_capacity(items.iter().map(Bytes::len).sum::<usize>() + 256);
                out.put_slice(b"{\"kind\":");
                out.put_slice(&serde_json::to_vec(&kind).unwrap_or_default());
                out.put_slice(b",\"apiVersion\":");
                out.put_slice(&serde_json::to_vec(&api_version).unwrap_or_default());
                out.put_slice(b",\"metadata\":");
                out.put_slice(&serde_json::to_vec(&metadata).unwrap_or_default());
                out.put_slice(b",\"items\":[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.put_u8(b',');
                    }
                    out.put_slice(item);
                }
                out.put_slice(b"]}\n");
                respond(200, ct, out.freeze(), warnings)
            }
            Target::Object => {
                let items: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice(i).ok())
                    .collect();
                let list = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items});
                respond(200, ct, encoder.value(&list), warnings)
            }
            Target::Table => {
                let objects: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice(i).ok())
                    .collect();
                let table = table_for(resource.as_ref(), metadata, &objects, include, true);
                respond(
                    200,
                    ct,
                    encoder.value(&serde_json::to_value(&table).unwrap_or_default()),
                    warnings,
                )
            }
            Target::PartialObjectMetadata | Target::PartialObjectMetadataList => {
                let items: Vec<Value> = items
                    .iter()
                    .filter_map(|i| serde_json::from_slice::<Value>(i).ok())
                    .map(|o| partial_object_metadata(&o))
                    .collect();
                let list = json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items});
                respond(200, ct, encoder.value(&list), warnings)
            }
        },
        Reply::Watch(stream) => watch_response(api, resource, stream, negotiated.target, include),
    }
}

fn watch_response(
    api: &Arc<Api>,
    resource: Arc<dyn Resource>,
    stream: futures::stream::BoxStream<'static, WatchEvent>,
    target: Target,
    include: IncludeObject,
) -> Response {
    let mut columns = vec![NAME_COLUMN];
    columns.extend(resource.table_columns());
    let guard = api.metrics.watch_started(resource.info().resource);
    let mut first = true;
    let body = stream.map(move |ev| {
        let _counted = &guard;
        let bytes = match (&ev.frame, target) {
            (Some(frame), Target::Object) => frame.clone(),
            _ => {
                let object: Value = serde_json::from_slice(&ev.object).unwrap_or_default();
                let converted = convert_watch_object(
                    resource.as_ref(),
                    &ev,
                    object,
                    target,
                    include,
                    &columns,
                    first,
                );
                if target == Target::Table
                    && ev.event_type != "ERROR"
                    && ev.event_type != "BOOKMARK"
                {
                    first = false;
                }
                json_line(&json!({"type": ev.event_type, "object": converted}))
            }
        };
        Ok::<Bytes, std::convert::Infallible>(bytes)
    });
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// The object of a watch event in the negotiated representation (errors and bookmarks stay
/// as they are).
fn convert_watch_object(
    resource: &dyn Resource,
    ev: &WatchEvent,
    object: Value,
    target: Target,
    include: IncludeObject,
    columns: &[apimachinery::table::ColumnDefinition],
    first: bool,
) -> Value {
    let passthrough = ev.event_type == "ERROR" || ev.event_type == "BOOKMARK";
    match target {
        Target::Table if !passthrough => {
            let rv = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            let table = Table::new(
                json!({"resourceVersion": rv}),
                if first { columns.to_vec() } else { Vec::new() },
                vec![TableRow {
                    cells: resource.table_row(&object),
                    object: table_object(include, &object),
                }],
            );
            serde_json::to_value(&table).unwrap_or_default()
        }
        Target::PartialObjectMetadata | Target::PartialObjectMetadataList
            if ev.event_type != "ERROR" =>
        {
            partial_object_metadata(&object)
        }
        _ => object,
    }
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

    #[test]
    fn statuses_keep_go_field_order() {
        let v = order_status(
            json!({"code": 404, "message": "m", "kind": "Status", "apiVersion": "v1", "status": "Failure"}),
        );
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            vec![
                "kind",
                "apiVersion",
                "metadata",
                "status",
                "message",
                "code"
            ]
        );
    }
}
