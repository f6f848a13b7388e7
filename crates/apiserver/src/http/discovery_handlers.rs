//! Discovery and the other fixed documents (spec §1.1-1.2): `/`, the 404 path list, `/version`,
//! `/apis` and the core group's `/api` and `/api/v1` (legacy and aggregated, with their ETags).
//! Named `discovery_handlers` so that it does not clash with `apimachinery::discovery`, which
//! `mod.rs` imports as `discovery`.
//!
//! We serve no core resources, yet `/api` names the core version `v1` and `/api/v1` lists no
//! resources: kube-rs's `Discovery::run` fails on a core group without versions
//! (`EmptyApiGroup`), and the Python `DynamicClient` always reads `/api/v1` whatever `/api` says.
//! client-go accepts both answers.

use std::sync::Arc;

use apimachinery::discovery;
use apimachinery::errors::ApiError;
use apimachinery::options::Query;
use axum::body::Body;
use axum::extract::State;
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::json;

use super::render::{error_response, json_line, respond, wants_pretty};
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
    match discovery_form(accept(&headers)) {
        DiscoveryForm::Legacy => respond(200, "application/json", api.group_list.clone(), &[]),
        DiscoveryForm::Aggregated(version) => {
            aggregated_reply(version, &api.aggregated, &api.aggregated_etag, &headers)
        }
    }
}

/// The one version of the core group we name (see the module docs).
const CORE_VERSION: &str = "v1";

/// `/api`: the core group's versions, as `APIVersions` or as an aggregated list.
pub(super) async fn core_versions(headers: HeaderMap, uri: Uri) -> Response {
    match discovery_form(accept(&headers)) {
        DiscoveryForm::Legacy => {
            let body = api_versions(served_address(&headers, &uri).as_deref());
            respond(200, "application/json", body, &[])
        }
        DiscoveryForm::Aggregated(version) => {
            let body = core_aggregated();
            let etag = discovery::etag(&body);
            aggregated_reply(version, &body, &etag, &headers)
        }
    }
}

/// `/api/v1`: the core version, with no resources served under it.
pub(super) async fn core_resources() -> Response {
    let list = json!({
        "kind": "APIResourceList",
        "groupVersion": CORE_VERSION,
        "resources": [],
    });
    respond(200, "application/json", json_line(&list), &[])
}

/// Any path below `/api/v1`: a served group version without that resource, answered with the
/// NotFound Status that kube gives for a resource it does not serve, not the path list.
pub(super) async fn core_resource_not_found(uri: Uri, headers: HeaderMap) -> Response {
    let pretty = wants_pretty(&Query::parse(uri.query()), &headers);
    error_response(&ApiError::RouteNotFound, pretty)
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

/// `APIVersions` as kube writes it: no `apiVersion`, and the address the client reached us at
/// for every client network (kube names its advertised address; we have only the request's).
fn api_versions(address: Option<&str>) -> Bytes {
    let by_cidr: Vec<_> = address
        .map(|a| json!({ "clientCIDR": "0.0.0.0/0", "serverAddress": a }))
        .into_iter()
        .collect();
    json_line(&json!({
        "kind": "APIVersions",
        "versions": [CORE_VERSION],
        "serverAddressByClientCIDRs": by_cidr,
    }))
}

/// The core group in aggregated form: one version, no resources. Like kube's, the group has no
/// name and `resources` is left out when empty (Go's `omitempty`).
fn core_aggregated() -> Bytes {
    json_line(&json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": AggregatedVersion::V2.api_version(),
        "metadata": {},
        "items": [{
            "metadata": {},
            "versions": [{ "version": CORE_VERSION, "freshness": "Current" }],
        }],
    }))
}

/// `host:port` the request was sent to: the `Host` header (HTTP/1.1) or the URI's authority
/// (HTTP/2's `:authority`). Parsed, so that only a host and a port are echoed back.
fn served_address(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<Authority>().ok())
        .or_else(|| uri.authority().cloned())?;
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    Some(match authority.port() {
        Some(port) => format!("{host}:{}", port.as_str()),
        None => host.to_string(),
    })
}

/// The aggregated discovery versions a client may ask for. kube 1.30-1.36 serve both; clients
/// of 1.26-1.29 ask for `v2beta1` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggregatedVersion {
    V2,
    V2Beta1,
}

impl AggregatedVersion {
    fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => discovery::AGGREGATED_CONTENT_TYPE,
            AggregatedVersion::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// Which document a discovery `Accept` header asks for, decided as kube's
/// `DiscoveryEndpointRestrictions` do: the first clause by weight (the client's order among
/// equal weights) that is either an aggregated list we serve or plain JSON. Nothing usable
/// (no header, or only media types we do not write) gets the legacy document, as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiscoveryForm {
    Legacy,
    Aggregated(AggregatedVersion),
}

fn discovery_form(accept: Option<&str>) -> DiscoveryForm {
    let mut clauses: Vec<(f32, &str)> = accept
        .unwrap_or("")
        .split(',')
        .map(|c| (weight(c), c))
        .collect();
    // Stable: equal weights keep the client's order.
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
    clauses
        .into_iter()
        .find_map(|(_, c)| clause_form(c))
        .unwrap_or(DiscoveryForm::Legacy)
}

/// A clause's `q`; 1 when absent, 0 when not a finite number (so it cannot break the sort).
fn weight(clause: &str) -> f32 {
    match param(clause, "q") {
        Some(q) => q
            .parse::<f32>()
            .ok()
            .filter(|q| q.is_finite())
            .unwrap_or(0.0),
        None => 1.0,
    }
}

fn clause_form(clause: &str) -> Option<DiscoveryForm> {
    let media = clause.split(';').next().map(str::trim)?;
    match (media, param(clause, "as")) {
        ("application/json", Some("APIGroupDiscoveryList"))
            if param(clause, "g") == Some("apidiscovery.k8s.io") =>
        {
            match param(clause, "v") {
                Some("v2") => Some(DiscoveryForm::Aggregated(AggregatedVersion::V2)),
                Some("v2beta1") => Some(DiscoveryForm::Aggregated(AggregatedVersion::V2Beta1)),
                _ => None,
            }
        }
        ("application/json" | "application/*" | "*/*", None) => Some(DiscoveryForm::Legacy),
        _ => None,
    }
}

/// The value of a media-type parameter of one `Accept` clause.
fn param<'a>(clause: &'a str, key: &str) -> Option<&'a str> {
    clause.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// An aggregated document (`v2_body`, written as v2) in the version asked for, with kube's
/// caching headers: the ETag of the v2 document for either version (kube shares one too;
/// `Vary: Accept` keeps caches apart) and 304 when the client already has it.
fn aggregated_reply(
    version: AggregatedVersion,
    v2_body: &Bytes,
    etag: &str,
    headers: &HeaderMap,
) -> Response {
    let mut resp = if if_none_match(headers, etag) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        match in_version(v2_body, version) {
            Some(body) => respond(200, version.content_type(), body, &[]),
            None => {
                let err = ApiError::Internal("the discovery document is not a JSON object".into());
                return error_response(&err, false);
            }
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    resp
}

/// The v2 document as `version`: v2beta1 differs from v2 only in its `apiVersion`. `None` only
/// if our own document is not a JSON object.
fn in_version(v2_body: &Bytes, version: AggregatedVersion) -> Option<Bytes> {
    if version == AggregatedVersion::V2 {
        return Some(v2_body.clone());
    }
    let mut doc: serde_json::Value = serde_json::from_slice(v2_body).ok()?;
    doc.as_object_mut()?
        .insert("apiVersion".into(), json!(version.api_version()));
    Some(json_line(&doc))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const CLIENT_GO: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    const V2BETA1_ONLY: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    fn v2() -> DiscoveryForm {
        DiscoveryForm::Aggregated(AggregatedVersion::V2)
    }

    fn v2beta1() -> DiscoveryForm {
        DiscoveryForm::Aggregated(AggregatedVersion::V2Beta1)
    }

    #[test]
    fn accept_picks_the_first_servable_clause_by_weight() {
        assert_eq!(discovery_form(None), DiscoveryForm::Legacy);
        assert_eq!(discovery_form(Some("")), DiscoveryForm::Legacy);
        assert_eq!(discovery_form(Some(CLIENT_GO)), v2());
        assert_eq!(discovery_form(Some(V2BETA1_ONLY)), v2beta1());
        assert_eq!(
            discovery_form(Some("application/json, */*")),
            DiscoveryForm::Legacy
        );
        // kube-aggregator's exact header, and client-go master's `profile` parameter.
        assert_eq!(
            discovery_form(Some(discovery::AGGREGATED_CONTENT_TYPE)),
            v2()
        );
        assert_eq!(
            discovery_form(Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;profile=nopeer,application/json")),
            v2()
        );
        // Plain JSON first wins; weights reorder; unknown versions and groups are skipped.
        assert_eq!(
            discovery_form(Some(
                "application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            )),
            DiscoveryForm::Legacy
        );
        assert_eq!(
            discovery_form(Some(
                "application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            )),
            v2()
        );
        assert_eq!(
            discovery_form(Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json;g=other.io;v=v2;as=APIGroupDiscoveryList,application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")),
            DiscoveryForm::Legacy
        );
        assert_eq!(
            discovery_form(Some("application/json;q=NaN;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")),
            DiscoveryForm::Legacy
        );
    }

    #[test]
    fn params_are_trimmed_and_unquoted() {
        let clause =
            r#"application/json ; g = "apidiscovery.k8s.io" ;v=v2; as=APIGroupDiscoveryList"#;
        assert_eq!(param(clause, "g"), Some("apidiscovery.k8s.io"));
        assert_eq!(param(clause, "as"), Some("APIGroupDiscoveryList"));
        assert_eq!(param(clause, "q"), None);
        assert_eq!(clause_form(clause), Some(v2()));
        assert_eq!(weight("application/json;q=0.3"), 0.3);
        assert_eq!(weight("application/json;q=inf"), 0.0);
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn served_address_from_host_or_authority() {
        let origin: Uri = "/api".parse().expect("uri");
        let h2: Uri = "https://10.0.0.9:6443/api".parse().expect("uri");
        let host = |v| headers(&[(header::HOST, v)]);
        assert_eq!(
            served_address(&host("127.0.0.1:8443"), &origin).as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(
            served_address(&host("[::1]:8443"), &origin).as_deref(),
            Some("[::1]:8443")
        );
        assert_eq!(
            served_address(&host("images.example.com"), &origin).as_deref(),
            Some("images.example.com")
        );
        assert_eq!(
            served_address(&HeaderMap::new(), &h2).as_deref(),
            Some("10.0.0.9:6443")
        );
        // Only the host and port are echoed: no user info, nothing that is not an authority.
        assert_eq!(
            served_address(&host("user:pw@example.com:1"), &origin).as_deref(),
            Some("example.com:1")
        );
        assert_eq!(served_address(&host("a b"), &origin), None);
        assert_eq!(served_address(&HeaderMap::new(), &origin), None);
    }

    fn json(body: &[u8]) -> Value {
        serde_json::from_slice(body).expect("json")
    }

    #[test]
    fn api_versions_is_kubes_shape() {
        assert_eq!(
            json(&api_versions(Some("127.0.0.1:8443"))),
            json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    { "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:8443" }
                ],
            })
        );
        let doc = api_versions(None);
        assert!(doc.ends_with(b"\n"));
        assert_eq!(
            std::str::from_utf8(&doc).expect("utf-8"),
            "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"],\"serverAddressByClientCIDRs\":[]}\n"
        );
    }

    #[test]
    fn core_aggregated_names_v1_without_resources_in_both_versions() {
        let v2_body = core_aggregated();
        let doc = json(&v2_body);
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["metadata"], json!({}));
        assert_eq!(
            doc["items"],
            json!([{ "metadata": {}, "versions": [{ "version": "v1", "freshness": "Current" }] }])
        );
        let beta = in_version(&v2_body, AggregatedVersion::V2Beta1).expect("v2beta1");
        let mut want = doc.clone();
        want["apiVersion"] = json!("apidiscovery.k8s.io/v2beta1");
        assert_eq!(json(&beta), want);
        assert_eq!(
            in_version(&v2_body, AggregatedVersion::V2).as_ref(),
            Some(&v2_body)
        );
        assert_eq!(
            in_version(&Bytes::from_static(b"[]"), AggregatedVersion::V2Beta1),
            None
        );
    }

    async fn body_of(resp: Response) -> (u16, Option<String>, Bytes) {
        let code = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (code, content_type, body)
    }

    #[tokio::test]
    async fn core_versions_negotiates_and_honors_the_etag() {
        let origin: Uri = "/api".parse().expect("uri");
        let legacy = core_versions(headers(&[(header::HOST, "h:1")]), origin.clone()).await;
        let (code, ct, body) = body_of(legacy).await;
        assert_eq!((code, ct.as_deref()), (200, Some("application/json")));
        assert_eq!(
            json(&body)["serverAddressByClientCIDRs"][0]["serverAddress"],
            "h:1"
        );

        let agg = core_versions(headers(&[(header::ACCEPT, CLIENT_GO)]), origin.clone()).await;
        let etag = agg
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("etag");
        assert_eq!(
            agg.headers()
                .get(header::VARY)
                .and_then(|v| v.to_str().ok()),
            Some("Accept")
        );
        let (code, ct, body) = body_of(agg).await;
        assert_eq!(
            (code, ct.as_deref()),
            (200, Some(discovery::AGGREGATED_CONTENT_TYPE))
        );
        assert_eq!(etag, discovery::etag(&body));

        let beta = core_versions(headers(&[(header::ACCEPT, V2BETA1_ONLY)]), origin.clone()).await;
        let (code, ct, body) = body_of(beta).await;
        assert_eq!(
            (code, ct.as_deref()),
            (200, Some(AggregatedVersion::V2Beta1.content_type()))
        );
        assert_eq!(json(&body)["apiVersion"], "apidiscovery.k8s.io/v2beta1");

        let mut cached = headers(&[(header::ACCEPT, CLIENT_GO)]);
        cached.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&etag).expect("etag header"),
        );
        let (code, _, body) = body_of(core_versions(cached, origin).await).await;
        assert_eq!(code, 304);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn core_v1_lists_nothing_and_misses_are_not_found_statuses() {
        let (code, _, body) = body_of(core_resources().await).await;
        assert_eq!(code, 200);
        assert_eq!(
            json(&body),
            json!({ "kind": "APIResourceList", "groupVersion": "v1", "resources": [] })
        );
        let uri: Uri = "/api/v1/namespaces/default/pods".parse().expect("uri");
        let (code, _, body) = body_of(core_resource_not_found(uri, HeaderMap::new()).await).await;
        assert_eq!(code, 404);
        let status = json(&body);
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(
            status["message"],
            "the server could not find the requested resource"
        );
    }
}
