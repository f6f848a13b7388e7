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
            shutdown: shutdown_rx,
            metrics: Metrics::default(),
            max_requests_inflight: 100,
            max_mutating_requests_inflight: 100,
            max_requests_inflight_per_user: 0,
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
