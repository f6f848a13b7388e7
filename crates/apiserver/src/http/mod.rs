//! The HTTP surface (spec §0, §1, §3, §4.4, §4.5, §5.1, §7): routing of API paths to resources,
//! authentication, content negotiation, encoding of objects, lists, tables, watch streams and
//! Status errors, discovery, version, health and OpenAPI documents.

pub mod audit_log;
mod auth_filters;
mod discovery_handlers;
mod dispatch;
pub mod fairness;
mod health;
mod middleware;
mod openapi;
mod render;
mod review_protobuf;
mod router;
mod self_review;
mod watch;

pub use self::render::error_response;
pub use self::router::router;

use std::sync::Arc;

use apimachinery::discovery::{self, ResourceInfo};
use bytes::Bytes;
use serde_json::{json, Value};

use self::render::json_line;
use crate::admission::NamespaceLifecycle;
use crate::auth::{Authentication, Authorizer};
use crate::metrics::Metrics;
use crate::resource::Resource;

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
    pub authentication: Authentication,
    /// Everything that decides (the configured modes behind `system:masters` and the
    /// always-allowed paths); also what impersonation and SelfSubjectAccessReview ask.
    pub authorizer: Arc<dyn Authorizer>,
    /// `--audit-log-path`: writes and denials as audit events.
    pub audit_log: Option<audit_log::AuditLog>,
    /// Admission of creates by namespace (with a cluster: missing and terminating ones).
    pub namespaces: Option<Arc<dyn NamespaceLifecycle>>,
    pub health: Arc<dyn Health>,
    pub openapi: OpenApi,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Fires first on a stop: `/readyz` fails while everything is still served, so load
    /// balancers stop sending before the listener closes (kube's `--shutdown-delay-duration`).
    pub draining: tokio::sync::watch::Receiver<bool>,
    /// Shared with whatever else records metrics (the instrumented store).
    pub metrics: Metrics,
    /// kube's `--max-requests-inflight` and `--max-mutating-requests-inflight`.
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// The in-flight requests one user may hold in each pool (0: a quarter of the pool).
    pub max_requests_inflight_per_user: usize,
    /// `application/vnd.kubernetes.protobuf` for requests and responses; JSON and YAML only
    /// without it.
    pub protobuf: Option<Arc<crate::protobuf::ProtobufCodec>>,
}

/// One user's share of a pool: the flag, or a quarter of the pool.
fn per_user_share(pool: usize, flag: usize) -> Arc<fairness::PerUserLimit> {
    let share = if flag > 0 { flag } else { (pool / 4).max(1) };
    Arc::new(fairness::PerUserLimit::new(share))
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
    readonly_per_user: Arc<fairness::PerUserLimit>,
    mutating_per_user: Arc<fairness::PerUserLimit>,
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
            readonly_per_user: per_user_share(
                config.max_requests_inflight,
                config.max_requests_inflight_per_user,
            ),
            mutating_per_user: per_user_share(
                config.max_mutating_requests_inflight,
                config.max_requests_inflight_per_user,
            ),
            mutating: Arc::new(tokio::sync::Semaphore::new(
                config.max_mutating_requests_inflight.max(1),
            )),
            config,
        })
    }

    /// The authorizer, for handlers that answer access questions (SelfSubjectAccessReview).
    pub fn authorizer(&self) -> &dyn Authorizer {
        self.config.authorizer.as_ref()
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
            "/api".to_string(),
            "/api/v1".to_string(),
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
        *self.config.draining.borrow() || *self.config.shutdown.borrow()
    }
}
