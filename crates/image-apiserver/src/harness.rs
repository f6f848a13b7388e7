//! The whole server in process (upstream's `resttest` in spirit): the router, with every
//! resource the binary serves, driven by `tower::ServiceExt::oneshot` over the embedded store
//! behind a store that injects faults. It covers what the black-box tests cannot reach: lost
//! compare-and-swaps, retries that run out, a panicking handler.

use std::sync::Arc;
use std::time::Duration;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apiserver::auth::{Authentication, Authorization, TokenAuthenticator};
use apiserver::http::{Api, ApiConfig};
use apiserver::metrics::Metrics;
use apiserver::resource::{Reply, Request, Resource};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method};
use axum::Router;
use serde_json::{json, Value};
use storage::cache::CacheConfig;
use storage::embedded::{EmbeddedStore, Options};
use storage::testing::FaultyStore;
use tower::ServiceExt;

use crate::resources::ImagePolicy;
use crate::{Served, ServerHealth, Wiring};

const TOKEN: &str = "harness-token";
const V1: &str = "/apis/image.openshift.io/v1";

struct Harness {
    router: Router,
    store: Arc<FaultyStore>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// A resource whose every request panics.
struct Panicker(ResourceInfo);

#[async_trait]
impl Resource for Panicker {
    fn info(&self) -> &ResourceInfo {
        &self.0
    }
    async fn handle(&self, _: Request) -> Result<Reply, ApiError> {
        panic!("the handler fell over")
    }
}

fn panicker() -> Arc<dyn Resource> {
    Arc::new(Panicker(ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: "panickers",
        singular: "panicker",
        kind: "Panicker",
        namespaced: true,
        verbs: &["get", "list"],
        short_names: &[],
        categories: &[],
        stored: false,
        subresources: vec![],
    }))
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = EmbeddedStore::open(dir.path(), Options::default()).expect("embedded store");
        let store = Arc::new(FaultyStore::new(Arc::new(inner)));
        let policy = ImagePolicy {
            import_mode: image_api::IMPORT_MODE_LEGACY.to_string(),
            ..Default::default()
        };
        let wiring = Wiring {
            policy,
            ..Wiring::default()
        };
        let served = Served::over(store.clone(), wiring, CacheConfig::default());
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let mut resources = served.resources();
        resources.push(panicker());
        let api = Api::new(ApiConfig {
            group: image_api::GROUP,
            version: image_api::VERSION,
            resources,
            authentication: Authentication::new(
                vec![Arc::new(
                    TokenAuthenticator::parse(&format!("{TOKEN},admin,1,system:masters"))
                        .expect("tokens"),
                )],
                false,
            ),
            authorizer: Arc::new(Authorization::new(vec![], vec![])),
            audit_log: None,
            namespaces: None,
            health: Arc::new(ServerHealth {
                store: store.clone(),
                streams: served.streams.clone(),
                images: served.images.clone(),
                cluster: None,
            }),
            openapi: Default::default(),
            draining: shutdown_rx.clone(),
            shutdown: shutdown_rx,
            metrics: Metrics::default(),
            max_requests_inflight: 100,
            max_mutating_requests_inflight: 100,
            max_requests_inflight_per_user: 0,
            protobuf: Some(crate::resources::protobuf_codec().expect("protobuf schema")),
        });
        for _ in 0..500 {
            if served.streams.cache().is_ready() && served.images.cache().is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Harness {
            router: apiserver::http::router(api),
            store,
            _shutdown: shutdown_tx,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, Value) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let code = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, "application/json", "").await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, "application/json", &body.to_string())
            .await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, "application/json", &body.to_string())
            .await
    }

    async fn patch(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        self.call(Method::PATCH, path, content_type, body).await
    }

    /// A stream `app` in `ns` with the spec tag `v1`.
    async fn with_stream(self) -> Harness {
        let stream = json!({"metadata": {"name": "app"}, "spec": {"tags": [
            {"name": "v1", "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}]}});
        let (code, body) = self
            .post(&format!("{V1}/namespaces/ns/imagestreams"), stream)
            .await;
        assert_eq!(code, 201, "{body}");
        self
    }

    async fn stream(&self) -> Value {
        self.get(&format!("{V1}/namespaces/ns/imagestreams/app"))
            .await
            .1
    }
}

fn spec_tag<'a>(stream: &'a Value, tag: &str) -> &'a Value {
    stream["spec"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["name"] == tag))
        .unwrap_or(&Value::Null)
}

fn istag_annotation(annotation: &str) -> Value {
    json!({"metadata": {"name": "app:v1", "annotations": {"note": annotation}},
        "tag": {"from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}})
}

#[tokio::test]
async fn a_blind_istag_put_that_loses_a_race_is_reapplied_to_the_fresh_stream() {
    let h = Harness::start().await.with_stream().await;
    h.store.race(2);
    let (code, body) = h
        .put(
            &format!("{V1}/namespaces/ns/imagestreamtags/app:v1"),
            istag_annotation("x"),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(h.store.conflicts_left(), 0, "both lost writes were retried");
    assert_eq!(
        spec_tag(&h.stream().await, "v1")["annotations"]["note"],
        "x"
    );
}

#[tokio::test]
async fn a_blind_itag_put_that_loses_a_race_is_a_conflict_and_changes_nothing() {
    let h = Harness::start().await.with_stream().await;
    let (_, mut itag) = h.get(&format!("{V1}/namespaces/ns/imagetags/app:v1")).await;
    itag["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("resourceVersion");
    itag["spec"]["reference"] = json!(true);
    h.store.race(1);
    let (code, body) = h
        .put(&format!("{V1}/namespaces/ns/imagetags/app:v1"), itag)
        .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("another caller has updated the resource version to")),
        "{body}"
    );
    assert_eq!(spec_tag(&h.stream().await, "v1")["reference"], Value::Null);
}

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

fn istag_path(name: &str) -> String {
    format!("{V1}/namespaces/ns/imagestreamtags/{name}")
}

fn itag_path(name: &str) -> String {
    format!("{V1}/namespaces/ns/imagetags/{name}")
}

/// Patches without a resourceVersion, each of one type, each after two lost races: every one
/// is re-applied to the fresh stream, and every change is there at the end.
async fn patch_through_races(h: &Harness, patches: &[(String, &str, String)]) {
    for (path, content_type, body) in patches {
        h.store.race(2);
        let (code, reply) = h.patch(path, content_type, body).await;
        assert_eq!(code, 200, "{content_type} {body}: {reply}");
        assert_eq!(h.store.conflicts_left(), 0, "{content_type} met every race");
    }
}

#[tokio::test]
async fn istag_patches_of_every_type_are_reapplied_after_lost_races() {
    let h = Harness::start().await.with_stream().await;
    let path = istag_path("app:v1");
    let applied = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
        "metadata": {"name": "app:v1", "annotations": {"applied": "1"}}});
    patch_through_races(
        &h,
        &[
            (
                path.clone(),
                MERGE,
                r#"{"metadata":{"annotations":{"merged":"1"}}}"#.to_string(),
            ),
            (
                path.clone(),
                STRATEGIC,
                r#"{"metadata":{"annotations":{"strategic":"1"}}}"#.to_string(),
            ),
            (
                path.clone(),
                JSON_PATCH,
                r#"[{"op":"add","path":"/metadata/annotations/json","value":"1"}]"#.to_string(),
            ),
            (format!("{path}?fieldManager=m"), APPLY, applied.to_string()),
        ],
    )
    .await;
    assert_eq!(
        spec_tag(&h.stream().await, "v1")["annotations"],
        json!({"merged": "1", "strategic": "1", "json": "1", "applied": "1"})
    );
}

#[tokio::test]
async fn itag_patches_of_every_type_are_reapplied_after_lost_races() {
    let h = Harness::start().await.with_stream().await;
    let path = itag_path("app:v1");
    let applied = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageTag",
        "metadata": {"name": "app:v1"}, "spec": {"name": "v1", "annotations": {"applied": "1"}}});
    patch_through_races(
        &h,
        &[
            (
                path.clone(),
                MERGE,
                r#"{"spec":{"reference":true}}"#.to_string(),
            ),
            (
                path.clone(),
                STRATEGIC,
                r#"{"spec":{"annotations":{"strategic":"1"}}}"#.to_string(),
            ),
            (
                path.clone(),
                JSON_PATCH,
                r#"[{"op":"add","path":"/spec/annotations/json","value":"1"}]"#.to_string(),
            ),
            (format!("{path}?fieldManager=m"), APPLY, applied.to_string()),
        ],
    )
    .await;
    let stream = h.stream().await;
    let tag = spec_tag(&stream, "v1");
    assert_eq!(tag["reference"], true, "{stream}");
    assert_eq!(
        tag["annotations"],
        json!({"strategic": "1", "json": "1", "applied": "1"})
    );
}

#[tokio::test]
async fn view_patches_that_set_a_resource_version_are_held_to_it() {
    let h = Harness::start().await.with_stream().await;
    let (_, itag) = h.get(&itag_path("app:v1")).await;
    let stale = itag["metadata"]["resourceVersion"].clone();
    let (code, body) = h
        .patch(
            &istag_path("app:v1"),
            MERGE,
            r#"{"metadata":{"annotations":{"moved":"on"}}}"#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let current = h.stream().await["metadata"]["resourceVersion"].clone();
    let pinned = json!({"metadata": {"resourceVersion": stale}, "spec": {"reference": true}});
    let (code, body) = h
        .patch(&itag_path("app:v1"), MERGE, &pinned.to_string())
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "Operation cannot be fulfilled on imagetags.image.openshift.io \"app:v1\": \
             another caller has updated the resource version to {}",
            current.as_str().unwrap_or("")
        )
    );

    // The current version, then a lost race: the precondition is checked against the fresh
    // stream, so the patch is not re-applied.
    let pinned = json!({"metadata": {"resourceVersion": current, "annotations": {"p": "x"}}});
    h.store.race(1);
    let (code, body) = h
        .patch(&istag_path("app:v1"), MERGE, &pinned.to_string())
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        spec_tag(&h.stream().await, "v1")["annotations"],
        json!({"moved": "on"})
    );
}

#[tokio::test]
async fn concurrent_view_patches_without_a_resource_version_all_land() {
    let h = Harness::start().await.with_stream().await;
    let requests: Vec<(String, String)> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                let body = json!({"metadata": {"annotations": {format!("k{i}"): "x"}}});
                (istag_path("app:v1"), body.to_string())
            } else {
                let body = json!({"spec": {"name": format!("t{i}"),
                    "from": {"kind": "DockerImage", "name": format!("quay.io/a/b:{i}")}}});
                (itag_path(&format!("app:t{i}")), body.to_string())
            }
        })
        .collect();
    let patches = requests
        .iter()
        .map(|(path, body)| h.patch(path, MERGE, body));
    let replies = futures::future::join_all(patches).await;
    for (i, (code, body)) in replies.iter().enumerate() {
        let want = if i % 2 == 0 { 200 } else { 201 };
        assert_eq!(*code, want, "patch {i}: {body}");
    }
    let stream = h.stream().await;
    for i in (0..20).step_by(2) {
        assert_eq!(spec_tag(&stream, "v1")["annotations"][format!("k{i}")], "x");
        let odd = format!("t{}", i + 1);
        assert_eq!(spec_tag(&stream, &odd)["name"], odd.as_str(), "{stream}");
    }
}

#[tokio::test]
async fn view_writes_whose_retries_run_out_name_the_view_and_verb() {
    let h = Harness::start().await.with_stream().await;
    h.store.conflict(usize::MAX);
    let (code, body) = h
        .put(
            &format!("{V1}/namespaces/ns/imagestreamtags/app:v1"),
            istag_annotation("y"),
        )
        .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["reason"], "ServerTimeout");
    assert_eq!(
        body["message"],
        "The update operation against imagestreamtags.image.openshift.io could not be completed at this time, please try again."
    );
    let (code, body) = h
        .post(
            &format!("{V1}/namespaces/ns/imagetags"),
            json!({"metadata": {"name": "app:v2"}, "spec": {}}),
        )
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("The create operation against imagetags")),
        "{body}"
    );
    h.store.conflict(0);
    assert_eq!(
        spec_tag(&h.stream().await, "v1")["annotations"],
        Value::Null
    );
    assert_eq!(spec_tag(&h.stream().await, "v2"), &Value::Null);
}

#[tokio::test]
async fn tag_deletes_and_mappings_retry_lost_races() {
    let h = Harness::start().await.with_stream().await;
    let digest = format!("sha256:{}", "a".repeat(64));
    let mapping = json!({"metadata": {"name": "app"}, "tag": "pushed", "image": {
        "metadata": {"name": digest},
        "dockerImageReference": format!("quay.io/a/b@{digest}")}});
    h.store.race(3);
    let (code, body) = h
        .post(&format!("{V1}/namespaces/ns/imagestreammappings"), mapping)
        .await;
    assert_eq!(code, 201, "{body}");
    let stream = h.stream().await;
    let pushed = stream["status"]["tags"]
        .as_array()
        .and_then(|t| t.iter().find(|l| l["tag"] == "pushed"))
        .expect("pushed tag");
    assert_eq!(pushed["items"].as_array().map(Vec::len), Some(1));

    h.store.race(3);
    let (code, body) = h
        .call(
            Method::DELETE,
            &format!("{V1}/namespaces/ns/imagestreamtags/app:v1"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(h.store.conflicts_left(), 0);
    assert_eq!(spec_tag(&h.stream().await, "v1"), &Value::Null);
}

#[tokio::test]
async fn a_panicking_handler_answers_a_500_status_and_the_server_goes_on() {
    let h = Harness::start().await;
    let (code, body) = h.get(&format!("{V1}/namespaces/ns/panickers")).await;
    assert_eq!(code, 500);
    assert_eq!(body["kind"], "Status");
    assert_eq!(
        body["message"],
        "Internal error occurred: the handler fell over"
    );
    let (code, _) = h.get(&format!("{V1}/namespaces/ns/imagestreams")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn requests_without_a_known_token_are_401_before_any_handler() {
    let h = Harness::start().await;
    let request = axum::http::Request::builder()
        .uri(format!("{V1}/namespaces/ns/panickers"))
        .body(Body::empty())
        .expect("request");
    let response = h.router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("audit-id"));
}
