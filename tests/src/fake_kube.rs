//! A fake kube-apiserver: the few endpoints an aggregated server calls in a cluster, over TLS,
//! answering as kube-apiserver does so that kube-rs' typed client works against it.
//!
//! - Objects (ConfigMaps, Secrets, LimitRanges, Namespaces, Leases) live in memory under one
//!   global resourceVersion counter, with list, watch, get, create, replace and delete. Watches
//!   stream every change after the requested resourceVersion from an event log kept in full
//!   (until [`FakeKube::compact`] drops it, after which older resourceVersions get 410).
//! - `TokenReview` answers from tokens registered with [`FakeKube::add_token`];
//!   `SubjectAccessReview` from rules registered with [`FakeKube::allow`] and
//!   [`FakeKube::deny`].
//! - Every request must carry the bearer token of the kubeconfig the fake writes, as the
//!   server's ServiceAccount would; others get `401`.
//! - Legacy discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`) lists the
//!   kinds deploy/ renders and the server uses, so kubectl can map them to REST paths (as
//!   `kubectl apply --dry-run=client` must). Objects of kinds the fake does not store answer
//!   404, so kubectl takes its create path.
//! - Tests count requests by path, read what was sent, and can make paths fail or hang.
//!
//! Dropping the fake closes its listener and every connection.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::pki::{pem_certificates, Identity, TestCa};

pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
pub const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// Watches end after this long unless `timeoutSeconds` says otherwise.
const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 300;
/// Changes a slow watcher may fall behind before its stream is ended (the client re-watches).
const WATCH_BUFFER: usize = 4096;
/// Request bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A kind of object the fake serves over REST.
struct ResourceType {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
}

const RESOURCE_TYPES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "limitranges",
        kind: "LimitRange",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
    },
];

/// A resource listed by discovery; its singular name is its kind in lower case.
struct DiscoveredResource {
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
}

/// A group version listed by discovery (`""` is the legacy core group).
struct DiscoveredGroupVersion {
    group: &'static str,
    version: &'static str,
    resources: &'static [DiscoveredResource],
}

const OBJECT_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const REVIEW_VERBS: &[&str] = &["create"];

const fn stored(plural: &'static str, kind: &'static str, namespaced: bool) -> DiscoveredResource {
    DiscoveredResource {
        plural,
        kind,
        namespaced,
        verbs: OBJECT_VERBS,
    }
}

const fn review(plural: &'static str, kind: &'static str) -> DiscoveredResource {
    DiscoveredResource {
        plural,
        kind,
        namespaced: false,
        verbs: REVIEW_VERBS,
    }
}

/// What discovery lists: every kind deploy/ renders and every kind the server calls. Each
/// named group appears once, with one version.
const DISCOVERY: &[DiscoveredGroupVersion] = &[
    DiscoveredGroupVersion {
        group: "",
        version: "v1",
        resources: &[
            stored("namespaces", "Namespace", false),
            stored("serviceaccounts", "ServiceAccount", true),
            stored("services", "Service", true),
            stored("secrets", "Secret", true),
            stored("configmaps", "ConfigMap", true),
            stored("limitranges", "LimitRange", true),
            stored("persistentvolumeclaims", "PersistentVolumeClaim", true),
        ],
    },
    DiscoveredGroupVersion {
        group: "apps",
        version: "v1",
        resources: &[
            stored("deployments", "Deployment", true),
            stored("statefulsets", "StatefulSet", true),
        ],
    },
    DiscoveredGroupVersion {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        resources: &[
            stored("clusterroles", "ClusterRole", false),
            stored("clusterrolebindings", "ClusterRoleBinding", false),
            stored("roles", "Role", true),
            stored("rolebindings", "RoleBinding", true),
        ],
    },
    DiscoveredGroupVersion {
        group: "policy",
        version: "v1",
        resources: &[stored("poddisruptionbudgets", "PodDisruptionBudget", true)],
    },
    DiscoveredGroupVersion {
        group: "networking.k8s.io",
        version: "v1",
        resources: &[stored("networkpolicies", "NetworkPolicy", true)],
    },
    DiscoveredGroupVersion {
        group: "apiregistration.k8s.io",
        version: "v1",
        resources: &[stored("apiservices", "APIService", false)],
    },
    DiscoveredGroupVersion {
        group: "coordination.k8s.io",
        version: "v1",
        resources: &[stored("leases", "Lease", true)],
    },
    DiscoveredGroupVersion {
        group: "authentication.k8s.io",
        version: "v1",
        resources: &[review("tokenreviews", "TokenReview")],
    },
    DiscoveredGroupVersion {
        group: "authorization.k8s.io",
        version: "v1",
        resources: &[review("subjectaccessreviews", "SubjectAccessReview")],
    },
];

impl DiscoveredGroupVersion {
    fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Where discovery serves the group version's APIResourceList.
    fn path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    fn resource_list(&self) -> Value {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|r| {
                json!({
                    "name": r.plural,
                    "singularName": r.kind.to_ascii_lowercase(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": r.verbs,
                })
            })
            .collect();
        json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": self.group_version(),
            "resources": resources,
        })
    }

    fn api_group(&self) -> Value {
        let version = json!({"groupVersion": self.group_version(), "version": self.version});
        json!({
            "name": self.group,
            "versions": [version.clone()],
            "preferredVersion": version,
        })
    }
}

impl ResourceType {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps`, `leases.coordination.k8s.io`: how kube-apiserver names the resource in
    /// error messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Where an object is stored: its kind, namespace (empty when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One committed change; `object` carries the change's resourceVersion.
struct Event {
    revision: u64,
    change: Change,
    key: ObjectKey,
    object: Value,
}

/// What live watches hear.
#[derive(Clone)]
enum Broadcast {
    Event(Arc<Event>),
    /// Every open watch ends cleanly, as on a kube-apiserver restart.
    CloseWatches,
}

#[derive(Default)]
struct Store {
    revision: u64,
    /// Events up to this revision were dropped: watches starting before it get 410.
    compacted: u64,
    objects: BTreeMap<ObjectKey, Value>,
    log: Vec<Arc<Event>>,
}

impl Store {
    /// Gives `object` the next resourceVersion, stores (or removes) it, logs the change and
    /// tells live watches. Callers hold the store lock, so watches subscribed under it see
    /// exactly the changes after their snapshot.
    fn commit(
        &mut self,
        changes: &broadcast::Sender<Broadcast>,
        key: ObjectKey,
        mut object: Map<String, Value>,
        change: Change,
    ) -> Value {
        self.revision += 1;
        metadata_mut(&mut object).insert(
            "resourceVersion".to_string(),
            Value::String(self.revision.to_string()),
        );
        let object = Value::Object(object);
        if change == Change::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        let event = Arc::new(Event {
            revision: self.revision,
            change,
            key,
            object: object.clone(),
        });
        self.log.push(event.clone());
        // Nobody watching is not an error.
        let _ = changes.send(Broadcast::Event(event));
        object
    }
}

/// A user known to the TokenReview endpoint.
#[derive(Clone)]
struct TokenUser {
    username: String,
    groups: Vec<String>,
}

/// A SubjectAccessReview rule; `subject` is a user name, a group name or `*`.
#[derive(Clone, Debug)]
struct AccessRule {
    subject: String,
    verb: String,
    /// `resource` or `resource/subresource`, a non-resource path, or `*`.
    resource: String,
    /// Empty: any namespace.
    namespace: String,
    allow: bool,
}

impl AccessRule {
    fn matches(&self, subject: &Subject, verb: &str, resource: &str, namespace: &str) -> bool {
        let subject_matches = self.subject == "*"
            || self.subject == subject.user
            || subject.groups.contains(&self.subject);
        subject_matches
            && (self.verb == "*" || self.verb == verb)
            && (self.resource == "*" || self.resource == resource)
            && (self.namespace.is_empty() || self.namespace == namespace)
    }
}

/// Who a SubjectAccessReview asks about.
struct Subject {
    user: String,
    groups: Vec<String>,
}

enum AccessDecision {
    Allowed(&'static str),
    Denied,
    NoOpinion(&'static str),
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, empty when there was none.
    pub query: String,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A misbehaviour injected for requests under a path prefix.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answer a Status with this code.
    Status(u16),
    /// Wait this long before answering normally.
    Delay(Duration),
}

struct Shared {
    token: String,
    /// `127.0.0.1:<port>`, as discovery advertises it.
    address: String,
    store: Mutex<Store>,
    changes: broadcast::Sender<Broadcast>,
    tokens: Mutex<HashMap<String, TokenUser>>,
    rules: Mutex<Vec<AccessRule>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Watches opened, by kind.
    watches: Mutex<HashMap<String, usize>>,
    faults: Mutex<Vec<(String, Fault)>>,
    random: SystemRandom,
}

/// A running fake kube-apiserver.
pub struct FakeKube {
    url: String,
    ca_pem: String,
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    /// Serves HTTPS on a free loopback port, with a serving certificate for `127.0.0.1` and
    /// `localhost` from a CA of its own.
    pub async fn start() -> FakeKube {
        let ca = TestCa::new("fake-kube-apiserver-ca");
        let serving = ca.server_cert(&["127.0.0.1", "localhost"]);
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake kube-apiserver");
        let port = listener
            .local_addr()
            .expect("fake kube-apiserver address")
            .port();
        let random = SystemRandom::new();
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        let shared = Arc::new(Shared {
            token: format!("fake-kube-{}", random_hex(&random, 16)),
            address: format!("127.0.0.1:{port}"),
            store: Mutex::new(Store::default()),
            changes,
            tokens: Mutex::new(HashMap::new()),
            rules: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            watches: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
            random,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(server_tls(&serving));
        let server_handle = axum_server::Handle::<SocketAddr>::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .expect("serve the fake kube-apiserver")
            .handle(server_handle.clone());
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        FakeKube {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: ca.pem().to_string(),
            shared,
            handle: server_handle,
            task,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the fake's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token every request must carry.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// An HTTPS client for the fake, with its bearer token.
    pub fn client(&self) -> reqwest::Client {
        crate::pki::https_client_with_identity(self.ca_pem(), None, Some(self.token()))
    }

    /// Writes `<dir>/fake-kube.kubeconfig`: the fake's URL, its CA inline and its token.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem());
        let text = [
            "apiVersion: v1".to_string(),
            "kind: Config".to_string(),
            "clusters:".to_string(),
            "- name: fake-kube".to_string(),
            "  cluster:".to_string(),
            format!("    server: {}", self.url),
            format!("    certificate-authority-data: {ca}"),
            "users:".to_string(),
            "- name: fake-kube".to_string(),
            "  user:".to_string(),
            format!("    token: {}", self.shared.token),
            "contexts:".to_string(),
            "- name: fake-kube".to_string(),
            "  context:".to_string(),
            "    cluster: fake-kube".to_string(),
            "    user: fake-kube".to_string(),
            "current-context: fake-kube".to_string(),
        ]
        .join("\n")
            + "\n";
        let path = dir.join("fake-kube.kubeconfig");
        std::fs::write(&path, text).expect("write the fake kube-apiserver kubeconfig");
        path
    }

    // ---- objects ----

    /// Creates or replaces an object, keyed by its `kind`, `metadata.namespace` and
    /// `metadata.name`; sets `metadata.resourceVersion`, and `uid` and `creationTimestamp`
    /// when absent (kept from the stored object on a replace). Watches see ADDED or
    /// MODIFIED. Returns the stored object.
    pub fn put(&self, object: Value) -> Value {
        let mut object = match object {
            Value::Object(object) => object,
            other => panic!("FakeKube::put takes a JSON object, got {other}"),
        };
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .expect("FakeKube::put needs the object's kind")
            .to_string();
        let meta = metadata_mut(&mut object);
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .expect("FakeKube::put needs metadata.name")
            .to_string();
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let key = ObjectKey {
            kind,
            namespace,
            name,
        };
        let mut store = self.shared.store();
        let previous = store.objects.get(&key);
        let change = if previous.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        let (uid, created) = match previous {
            Some(previous) => (
                meta_value(previous, "uid"),
                meta_value(previous, "creationTimestamp"),
            ),
            None => (
                Value::String(random_uuid(&self.shared.random)),
                Value::String(now()),
            ),
        };
        let meta = metadata_mut(&mut object);
        meta.entry("uid").or_insert(uid);
        meta.entry("creationTimestamp").or_insert(created);
        store.commit(&self.shared.changes, key, object, change)
    }

    /// Deletes an object (`kind` as in the object, e.g. `ConfigMap`; `namespace` empty when
    /// cluster-scoped). Watches see DELETED. Returns the object as deleted.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared.remove(&object_key(kind, namespace, name))
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.shared
            .store()
            .objects
            .get(&object_key(kind, namespace, name))
            .cloned()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> String {
        self.shared.store().revision.to_string()
    }

    /// Forgets every change so far: a watch from an older resourceVersion then gets
    /// `ERROR` 410 Expired, as after an etcd compaction.
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.compacted = store.revision;
        store.log.clear();
    }

    /// Ends every open watch cleanly, as a kube-apiserver restart does.
    pub fn close_watches(&self) {
        let _ = self.shared.changes.send(Broadcast::CloseWatches);
    }

    // ---- authentication and authorization ----

    /// Makes TokenReview authenticate `token` as `username` (uid `uid-<username>`) in
    /// `groups` (as given: `system:authenticated` is not added).
    pub fn add_token(&self, token: &str, username: &str, groups: &[&str]) {
        let user = TokenUser {
            username: username.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        self.shared
            .tokens
            .lock()
            .expect("fake kube tokens")
            .insert(token.to_string(), user);
    }

    /// Allows `subject` (a user, a group, or `*`) to `verb` (or `*`) `resource`
    /// (`imagestreams`, `imagestreams/layers`, a non-resource path, or `*`) in `namespace`
    /// (empty: any).
    pub fn allow(&self, subject: &str, verb: &str, resource: &str, namespace: &str) {
        self.add_rule(subject, verb, resource, namespace, true);
    }

    /// Denies as [`FakeKube::allow`] allows; a matching deny wins over any allow.
    pub fn deny(&self, subject: &str, verb: &str, resource: &str, namespace: &str) {
        self.add_rule(subject, verb, resource, namespace, false);
    }

    /// Forgets every allow and deny rule.
    pub fn clear_rules(&self) {
        self.shared.rules.lock().expect("fake kube rules").clear();
    }

    fn add_rule(&self, subject: &str, verb: &str, resource: &str, namespace: &str, allow: bool) {
        self.shared
            .rules
            .lock()
            .expect("fake kube rules")
            .push(AccessRule {
                subject: subject.to_string(),
                verb: verb.to_string(),
                resource: resource.to_string(),
                namespace: namespace.to_string(),
                allow,
            });
    }

    // ---- observing and misbehaving ----

    /// Requests received (whether answered or refused) whose path starts with `path_prefix`.
    pub fn calls(&self, path_prefix: &str) -> usize {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .count()
    }

    /// The requests received whose path starts with `path_prefix`, in order.
    pub fn requests(&self, path_prefix: &str) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Watches opened on `kind` (e.g. `ConfigMap`), including refused ones.
    pub fn watches(&self, kind: &str) -> usize {
        self.shared
            .watches
            .lock()
            .expect("fake kube watch counts")
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    /// Answers requests under `path_prefix` with a Status of `code` from now on.
    pub fn fail(&self, path_prefix: &str, code: u16) {
        self.add_fault(path_prefix, Fault::Status(code));
    }

    /// Delays answers to requests under `path_prefix` by `delay` from now on.
    pub fn delay(&self, path_prefix: &str, delay: Duration) {
        self.add_fault(path_prefix, Fault::Delay(delay));
    }

    /// Stops every failure and delay.
    pub fn heal(&self) {
        self.shared.faults.lock().expect("fake kube faults").clear();
    }

    fn add_fault(&self, path_prefix: &str, fault: Fault) {
        self.shared
            .faults
            .lock()
            .expect("fake kube faults")
            .push((path_prefix.to_string(), fault));
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("fake kube store")
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().expect("fake kube request log")
    }

    fn remove(&self, key: &ObjectKey) -> Option<Value> {
        let mut store = self.store();
        let Some(Value::Object(object)) = store.objects.get(key).cloned() else {
            return None;
        };
        Some(store.commit(&self.changes, key.clone(), object, Change::Deleted))
    }

    fn faults_for(&self, path: &str) -> Vec<Fault> {
        self.faults
            .lock()
            .expect("fake kube faults")
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, fault)| *fault)
            .collect()
    }

    fn count_watch(&self, kind: &str) {
        *self
            .watches
            .lock()
            .expect("fake kube watch counts")
            .entry(kind.to_string())
            .or_insert(0) += 1;
    }

    fn bearer_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|token| token.trim() == self.token)
    }
}

fn server_tls(serving: &Identity) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
        .expect("serving key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(pem_certificates(&serving.cert_pem), key)
        .expect("serving certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

// ---- request handling ----

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            let message = format!("reading the request body: {e}");
            return status_response(StatusCode::BAD_REQUEST, "BadRequest", &message);
        }
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    shared.requests().push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: serde_json::from_slice(&body).ok(),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    if !shared.bearer_matches(&parts.headers) {
        return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    for fault in shared.faults_for(&path) {
        match fault {
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Status(code) => return injected_failure(code),
        }
    }
    route(&shared, &parts.method, &path, &query, &body)
}

fn route(shared: &Shared, method: &Method, path: &str, query: &str, body: &[u8]) -> Response {
    match (method, path) {
        (&Method::POST, TOKEN_REVIEWS) => return token_review(shared, body),
        (&Method::POST, SUBJECT_ACCESS_REVIEWS) => return subject_access_review(shared, body),
        (&Method::GET, "/version") => return version(),
        (&Method::GET, "/healthz" | "/readyz" | "/livez") => {
            return (StatusCode::OK, "ok").into_response();
        }
        _ => {}
    }
    if *method == Method::GET {
        if let Some(document) = discovery_document(&shared.address, path) {
            return json_response(StatusCode::OK, &document);
        }
    }
    let Some(target) = Target::parse(path) else {
        return path_not_found();
    };
    let query = Query::parse(query);
    match (method, target.name.as_deref()) {
        (&Method::GET, None) if query.watch => watch(shared, &target, &query),
        (&Method::GET, None) => list(shared, &target, &query),
        (&Method::POST, None) if !target.ty.namespaced || target.namespace.is_some() => {
            create(shared, &target, body)
        }
        (&Method::GET, Some(name)) => get(shared, &target, name),
        (&Method::PUT, Some(name)) => replace(shared, &target, name, body),
        (&Method::DELETE, Some(name)) => delete(shared, &target, name),
        _ => status_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
    }
}

/// The resource a REST path addresses.
struct Target {
    ty: &'static ResourceType,
    /// `None` for cluster-scoped types and for all-namespace collections.
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    /// `/api/v1/...` or `/apis/<group>/<version>/...`, then `<plural>[/<name>]` or
    /// `namespaces/<ns>/<plural>[/<name>]`.
    fn parse(path: &str) -> Option<Target> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, plural, name) = match rest {
            [plural] => (None, *plural, None),
            // Also `namespaces/<name>`: the Namespace itself.
            [plural, name] => (None, *plural, Some(*name)),
            ["namespaces", namespace, plural] => (Some(*namespace), *plural, None),
            ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name)),
            _ => return None,
        };
        let ty = RESOURCE_TYPES
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)?;
        let scoped_right = if ty.namespaced {
            namespace.is_some() || name.is_none()
        } else {
            namespace.is_none()
        };
        scoped_right.then(|| Target {
            ty,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        })
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey {
            kind: self.ty.kind.to_string(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_string(),
        }
    }
}

/// The list and watch parameters the fake honors.
#[derive(Debug, Default)]
struct Query {
    watch: bool,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    send_initial_events: bool,
}

impl Query {
    fn parse(query: &str) -> Query {
        let mut parsed = Query::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "watch" => parsed.watch = matches!(&*value, "true" | "1" | ""),
                "resourceVersion" => parsed.resource_version = Some(value.into_owned()),
                "timeoutSeconds" => parsed.timeout_seconds = value.parse().ok(),
                "labelSelector" => parsed.label_selector = Some(value.into_owned()),
                "fieldSelector" => parsed.field_selector = Some(value.into_owned()),
                "sendInitialEvents" => parsed.send_initial_events = value == "true",
                _ => {}
            }
        }
        parsed
    }
}

// ---- selectors ----

#[derive(Clone, Debug, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    /// Equality and existence requirements, comma-separated; set-based ones (`in`, `notin`)
    /// are ignored, as are pieces the fake does not understand.
    fn parse_all(selector: &str) -> Vec<LabelRequirement> {
        selector
            .split(',')
            .map(str::trim)
            .filter(|piece| !piece.is_empty() && !piece.contains([' ', '(', ')']))
            .map(LabelRequirement::parse)
            .collect()
    }

    fn parse(piece: &str) -> LabelRequirement {
        if let Some((key, value)) = piece.split_once("!=") {
            LabelRequirement::NotEquals(key.to_string(), value.to_string())
        } else if let Some((key, value)) = piece.split_once("==").or_else(|| piece.split_once('='))
        {
            LabelRequirement::Equals(key.to_string(), value.to_string())
        } else if let Some(key) = piece.strip_prefix('!') {
            LabelRequirement::NotExists(key.to_string())
        } else {
            LabelRequirement::Exists(piece.to_string())
        }
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels[key].as_str();
        match self {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::NotExists(key) => label(key).is_none(),
        }
    }
}

/// `metadata.name` and `metadata.namespace` (in)equality; other fields are ignored.
#[derive(Clone, Debug, PartialEq)]
struct FieldRequirement {
    field: &'static str,
    value: String,
    equal: bool,
}

impl FieldRequirement {
    fn parse_all(selector: &str) -> Vec<FieldRequirement> {
        selector
            .split(',')
            .filter_map(|piece| FieldRequirement::parse(piece.trim()))
            .collect()
    }

    fn parse(piece: &str) -> Option<FieldRequirement> {
        let (field, value, equal) = if let Some((field, value)) = piece.split_once("!=") {
            (field, value, false)
        } else {
            let (field, value) = piece.split_once("==").or_else(|| piece.split_once('='))?;
            (field, value, true)
        };
        let field = match field {
            "metadata.name" => "name",
            "metadata.namespace" => "namespace",
            _ => return None,
        };
        Some(FieldRequirement {
            field,
            value: value.to_string(),
            equal,
        })
    }

    fn matches(&self, key: &ObjectKey) -> bool {
        let actual = if self.field == "name" {
            &key.name
        } else {
            &key.namespace
        };
        (*actual == self.value) == self.equal
    }
}

/// Which objects a list or watch is about.
struct Filter {
    kind: &'static str,
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Filter {
    fn new(target: &Target, query: &Query) -> Filter {
        Filter {
            kind: target.ty.kind,
            namespace: target.namespace.clone(),
            labels: query
                .label_selector
                .as_deref()
                .map(LabelRequirement::parse_all)
                .unwrap_or_default(),
            fields: query
                .field_selector
                .as_deref()
                .map(FieldRequirement::parse_all)
                .unwrap_or_default(),
        }
    }

    fn matches(&self, key: &ObjectKey, object: &Value) -> bool {
        key.kind == self.kind
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && self.fields.iter().all(|f| f.matches(key))
            && self.labels.iter().all(|l| l.matches(object))
    }
}

// ---- REST verbs ----

fn list(shared: &Shared, target: &Target, query: &Query) -> Response {
    let filter = Filter::new(target, query);
    let store = shared.store();
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(key, object)| filter.matches(key, object))
        .map(|(_, object)| object.clone())
        .collect();
    let body = json!({
        "kind": format!("{}List", target.ty.kind),
        "apiVersion": target.ty.api_version(),
        "metadata": {"resourceVersion": store.revision.to_string()},
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response {
    match shared.store().objects.get(&target.key(name)) {
        Some(object) => json_response(StatusCode::OK, object),
        None => rejection_response(target.ty, name, Rejection::NotFound),
    }
}

fn create(shared: &Shared, target: &Target, body: &[u8]) -> Response {
    let result = request_object(body).and_then(|object| {
        let name = object_name(shared, &object)?;
        let key = target.key(&name);
        let mut store = shared.store();
        if store.objects.contains_key(&key) {
            return Err(Rejection::AlreadyExists(name));
        }
        let object = normalize(object, target, &key)?;
        let object = with_identity(
            object,
            Value::String(random_uuid(&shared.random)),
            Value::String(now()),
        );
        Ok(store.commit(&shared.changes, key, object, Change::Added))
    });
    match result {
        Ok(object) => json_response(StatusCode::CREATED, &object),
        Err(rejection) => rejection_response(target.ty, "", rejection),
    }
}

fn replace(shared: &Shared, target: &Target, name: &str, body: &[u8]) -> Response {
    let key = target.key(name);
    let result = request_object(body).and_then(|object| {
        let mut store = shared.store();
        let Some(stored) = store.objects.get(&key) else {
            return Err(Rejection::NotFound);
        };
        let sent_version = meta_str(&object, "resourceVersion");
        if !sent_version.is_empty() && sent_version != meta_str(stored, "resourceVersion") {
            return Err(Rejection::Conflict);
        }
        let (uid, created) = (
            meta_value(stored, "uid"),
            meta_value(stored, "creationTimestamp"),
        );
        let object = normalize(object, target, &key)?;
        let object = with_identity(object, uid, created);
        Ok(store.commit(&shared.changes, key, object, Change::Modified))
    });
    match result {
        Ok(object) => json_response(StatusCode::OK, &object),
        Err(rejection) => rejection_response(target.ty, name, rejection),
    }
}

fn delete(shared: &Shared, target: &Target, name: &str) -> Response {
    match shared.remove(&target.key(name)) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => rejection_response(target.ty, name, Rejection::NotFound),
    }
}

/// Why a write was refused.
#[derive(Debug)]
enum Rejection {
    NotFound,
    /// With the name, which a create may only learn from the body.
    AlreadyExists(String),
    Conflict,
    BadRequest(String),
}

fn request_object(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Rejection::BadRequest(
            "the request body is not a JSON object".to_string(),
        )),
        Err(e) => Err(Rejection::BadRequest(format!(
            "the request body is not JSON: {e}"
        ))),
    }
}

/// `metadata.name`, or `metadata.generateName` plus a random suffix.
fn object_name(shared: &Shared, object: &Map<String, Value>) -> Result<String, Rejection> {
    let meta = object.get("metadata");
    let field = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(name) = field("name") {
        return Ok(name.to_string());
    }
    if let Some(prefix) = field("generateName") {
        return Ok(format!("{prefix}{}", random_suffix(&shared.random)));
    }
    Err(Rejection::BadRequest(
        "name or generateName is required".to_string(),
    ))
}

/// Sets kind, apiVersion, name and namespace from where the object is written, refusing a
/// body that names another object or namespace.
fn normalize(
    mut object: Map<String, Value>,
    target: &Target,
    key: &ObjectKey,
) -> Result<Map<String, Value>, Rejection> {
    object.insert(
        "kind".to_string(),
        Value::String(target.ty.kind.to_string()),
    );
    object.insert(
        "apiVersion".to_string(),
        Value::String(target.ty.api_version()),
    );
    let meta = metadata_mut(&mut object);
    let sent_name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if !sent_name.is_empty() && sent_name != key.name {
        return Err(Rejection::BadRequest(format!(
            "the name of the object ({sent_name}) does not match the name on the URL ({})",
            key.name
        )));
    }
    meta.insert("name".to_string(), Value::String(key.name.clone()));
    if target.ty.namespaced {
        let sent_namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        if !sent_namespace.is_empty() && sent_namespace != key.namespace {
            return Err(Rejection::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the \
                 request"
                    .to_string(),
            ));
        }
        meta.insert(
            "namespace".to_string(),
            Value::String(key.namespace.clone()),
        );
    } else {
        meta.remove("namespace");
    }
    Ok(object)
}

fn with_identity(mut object: Map<String, Value>, uid: Value, created: Value) -> Map<String, Value> {
    let meta = metadata_mut(&mut object);
    meta.insert("uid".to_string(), uid);
    meta.insert("creationTimestamp".to_string(), created);
    object
}

fn rejection_response(ty: &ResourceType, name: &str, rejection: Rejection) -> Response {
    let qualified = ty.qualified();
    let (code, reason, message, name) = match rejection {
        Rejection::NotFound => (
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{qualified} \"{name}\" not found"),
            name.to_string(),
        ),
        Rejection::AlreadyExists(name) => (
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
            name,
        ),
        Rejection::Conflict => (
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
            name.to_string(),
        ),
        Rejection::BadRequest(message) => {
            return status_response(StatusCode::BAD_REQUEST, "BadRequest", &message);
        }
    };
    let mut body = status_body(code, reason, &message);
    body["details"] = json!({"name": name, "group": ty.group, "kind": ty.plural});
    json_response(code, &body)
}

// ---- watch ----

/// The lines a watch starts with, and whether it ends after them.
struct Opening {
    lines: VecDeque<Bytes>,
    ends: bool,
}

fn watch(shared: &Shared, target: &Target, query: &Query) -> Response {
    shared.count_watch(target.ty.kind);
    let start = match query.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                let message = format!("invalid resource version: {rv}");
                return status_response(StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
        },
    };
    let filter = Filter::new(target, query);
    let (opening, live) = {
        let store = shared.store();
        // Subscribed under the store lock: the live feed starts right after the snapshot.
        let live = shared.changes.subscribe();
        (
            watch_opening(&store, &filter, target.ty, query, start),
            live,
        )
    };
    let timeout = query.timeout_seconds.unwrap_or(DEFAULT_WATCH_TIMEOUT_SECS);
    let state = WatchState {
        pending: opening.lines,
        finished: opening.ends,
        live,
        filter,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
    };
    let stream = futures::stream::unfold(state, next_watch_line);
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Without a resourceVersion (or with `0`, or with `sendInitialEvents`): ADDED for every
/// matching object, then (watch-list) the initial-events-end bookmark. From a
/// resourceVersion: every logged change after it, or 410 when it was compacted away.
fn watch_opening(
    store: &Store,
    filter: &Filter,
    ty: &ResourceType,
    query: &Query,
    start: Option<u64>,
) -> Opening {
    let mut lines = VecDeque::new();
    match start {
        Some(rv) if !query.send_initial_events => {
            if rv < store.compacted {
                let message = format!("too old resource version: {rv} ({})", store.compacted);
                let status = status_body(StatusCode::GONE, "Expired", &message);
                lines.push_back(event_line("ERROR", &status));
                return Opening { lines, ends: true };
            }
            let changes = store
                .log
                .iter()
                .filter(|e| e.revision > rv && filter.matches(&e.key, &e.object));
            lines.extend(changes.map(|e| event_line(e.change.as_str(), &e.object)));
        }
        _ => {
            let objects = store
                .objects
                .iter()
                .filter(|(key, object)| filter.matches(key, object));
            lines.extend(objects.map(|(_, object)| event_line("ADDED", object)));
            if query.send_initial_events {
                let bookmark = json!({
                    "kind": ty.kind,
                    "apiVersion": ty.api_version(),
                    "metadata": {
                        "resourceVersion": store.revision.to_string(),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                });
                lines.push_back(event_line("BOOKMARK", &bookmark));
            }
        }
    }
    Opening { lines, ends: false }
}

struct WatchState {
    pending: VecDeque<Bytes>,
    finished: bool,
    live: broadcast::Receiver<Broadcast>,
    filter: Filter,
    deadline: tokio::time::Instant,
}

/// The next line of a watch: the opening ones, then live changes until the deadline, a
/// [`FakeKube::close_watches`], or the watcher falling too far behind.
async fn next_watch_line(mut state: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    if let Some(line) = state.pending.pop_front() {
        return Some((Ok(line), state));
    }
    if state.finished {
        return None;
    }
    loop {
        let received = tokio::select! {
            () = tokio::time::sleep_until(state.deadline) => return None,
            received = state.live.recv() => received,
        };
        match received {
            Ok(Broadcast::Event(event)) => {
                if state.filter.matches(&event.key, &event.object) {
                    let line = event_line(event.change.as_str(), &event.object);
                    return Some((Ok(line), state));
                }
            }
            Ok(Broadcast::CloseWatches) | Err(_) => return None,
        }
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

// ---- reviews ----

fn token_review(shared: &Shared, body: &[u8]) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        return status_response(StatusCode::BAD_REQUEST, "BadRequest", "not a TokenReview");
    };
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let token = spec["token"].as_str().unwrap_or("");
    let user = shared
        .tokens
        .lock()
        .expect("fake kube tokens")
        .get(token)
        .cloned();
    let mut status = match user {
        Some(user) => json!({
            "authenticated": true,
            "user": {
                "username": user.username,
                "uid": format!("uid-{}", user.username),
                "groups": user.groups,
            },
        }),
        None => json!({"authenticated": false, "error": "invalid token"}),
    };
    if let Some(audiences) = spec.get("audiences").filter(|a| a.is_array()) {
        status["audiences"] = audiences.clone();
    }
    let answer = json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "spec": spec,
        "status": status,
    });
    json_response(StatusCode::CREATED, &answer)
}

fn subject_access_review(shared: &Shared, body: &[u8]) -> Response {
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "not a SubjectAccessReview",
        );
    };
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let subject = Subject {
        user: spec["user"].as_str().unwrap_or("").to_string(),
        groups: spec["groups"]
            .as_array()
            .map(|groups| {
                groups
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let rules = shared.rules.lock().expect("fake kube rules").clone();
    let status = match decide(&rules, &subject, &spec) {
        AccessDecision::Allowed(reason) => json!({"allowed": true, "reason": reason}),
        AccessDecision::Denied => {
            json!({"allowed": false, "denied": true, "reason": "denied by test rule"})
        }
        AccessDecision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    };
    let answer = json!({
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": spec,
        "status": status,
    });
    json_response(StatusCode::CREATED, &answer)
}

/// Deny rules first, then `system:masters`, allow rules, and (for non-resource requests)
/// any `get` by an authenticated user.
fn decide(rules: &[AccessRule], subject: &Subject, spec: &Value) -> AccessDecision {
    let (verb, resource, namespace, non_resource) =
        if let Some(attributes) = spec.get("resourceAttributes") {
            let text = |field: &str| attributes[field].as_str().unwrap_or("").to_string();
            let subresource = text("subresource");
            let resource = if subresource.is_empty() {
                text("resource")
            } else {
                format!("{}/{subresource}", text("resource"))
            };
            (text("verb"), resource, text("namespace"), false)
        } else if let Some(attributes) = spec.get("nonResourceAttributes") {
            let text = |field: &str| attributes[field].as_str().unwrap_or("").to_string();
            (text("verb"), text("path"), String::new(), true)
        } else {
            return AccessDecision::NoOpinion("no attributes in the review");
        };
    let matching = |allow: bool| {
        rules
            .iter()
            .any(|r| r.allow == allow && r.matches(subject, &verb, &resource, &namespace))
    };
    let in_group = |group: &str| subject.groups.iter().any(|g| g == group);
    if matching(false) {
        AccessDecision::Denied
    } else if in_group("system:masters") {
        AccessDecision::Allowed("system:masters")
    } else if matching(true) {
        AccessDecision::Allowed("allowed by test rule")
    } else if non_resource && verb == "get" && in_group("system:authenticated") {
        AccessDecision::Allowed("non-resource get by an authenticated user")
    } else {
        AccessDecision::NoOpinion("no rule matched")
    }
}

// ---- discovery ----

/// The legacy discovery document at `path`, if it is one. kubectl first asks for aggregated
/// discovery; a plain `application/json` answer makes it fall back to these.
fn discovery_document(address: &str, path: &str) -> Option<Value> {
    match path {
        "/api" => Some(api_versions(address)),
        "/apis" => Some(api_group_list()),
        _ => DISCOVERY
            .iter()
            .find(|gv| gv.path() == path)
            .map(DiscoveredGroupVersion::resource_list),
    }
}

fn api_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

fn api_group_list() -> Value {
    let groups: Vec<Value> = DISCOVERY
        .iter()
        .filter(|gv| !gv.group.is_empty())
        .map(DiscoveredGroupVersion::api_group)
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "35",
        "gitVersion": "v1.35.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    });
    json_response(StatusCode::OK, &body)
}

// ---- helpers ----

fn object_key(kind: &str, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

/// The object's `metadata`, made an object first if it was missing or something else.
fn metadata_mut(object: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
        .expect("metadata was just made an object")
}

fn meta_str<'a>(object: &'a impl MetadataSource, field: &str) -> &'a str {
    object
        .metadata_field(field)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn meta_value(object: &Value, field: &str) -> Value {
    object["metadata"][field].clone()
}

/// Stored objects are `Value`s, request bodies `Map`s; both have metadata.
trait MetadataSource {
    fn metadata_field(&self, field: &str) -> Option<&Value>;
}

impl MetadataSource for Value {
    fn metadata_field(&self, field: &str) -> Option<&Value> {
        self.get("metadata").and_then(|m| m.get(field))
    }
}

impl MetadataSource for Map<String, Value> {
    fn metadata_field(&self, field: &str) -> Option<&Value> {
        self.get("metadata").and_then(|m| m.get(field))
    }
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

fn status_response(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status_body(code, reason, message))
}

fn path_not_found() -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn injected_failure(code: u16) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = match code.as_u16() {
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    status_response(code, reason, "failure injected by the test")
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Now, to the second, as kube-apiserver writes timestamps.
fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn random_bytes<const N: usize>(random: &SystemRandom) -> [u8; N] {
    let mut bytes = [0u8; N];
    random.fill(&mut bytes).expect("random bytes");
    bytes
}

fn random_hex(random: &SystemRandom, len: usize) -> String {
    random_bytes::<32>(random)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(len)
        .collect()
}

/// A version-4 UUID.
fn random_uuid(random: &SystemRandom) -> String {
    let mut b: [u8; 16] = random_bytes(random);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Five characters as kube-apiserver appends to a `generateName`.
fn random_suffix(random: &SystemRandom) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>(random)
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(namespace: &str, name: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"k": "v"},
        })
    }

    /// `base?k=v&...`, encoded (reqwest is built without its `query` feature).
    fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        format!("{base}?{}", query.finish())
    }

    /// Reads watch lines until `count` arrived (or the stream ended), at most 10 s.
    async fn read_lines(response: &mut reqwest::Response, count: usize) -> Vec<Value> {
        let mut buffer = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while buffer.iter().filter(|b| **b == b'\n').count() < count {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .expect("watch lines in time")
                .expect("watch chunk");
            match chunk {
                Some(bytes) => buffer.extend_from_slice(&bytes),
                None => break,
            }
        }
        String::from_utf8(buffer)
            .expect("UTF-8 watch stream")
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON watch line"))
            .collect()
    }

    /// The Accept header kubectl sends for discovery, hoping for the aggregated kind.
    const KUBECTL_DISCOVERY_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;\
        as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;\
        as=APIGroupDiscoveryList,application/json";

    /// GETs `path` as kubectl does discovery: the status, the Content-Type and the body.
    async fn get_as_kubectl(fake: &FakeKube, path: &str) -> (u16, String, Value) {
        let response = fake
            .client()
            .get(format!("{}{path}", fake.url()))
            .header(reqwest::header::ACCEPT, KUBECTL_DISCOVERY_ACCEPT)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.json().await.expect("JSON body");
        (status, content_type, body)
    }

    fn discovered<'a>(list: &'a Value, plural: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == plural)
            .unwrap_or_else(|| panic!("no {plural} in {list}"))
    }

    #[tokio::test]
    async fn legacy_discovery_answers_plain_json_for_every_listed_group() {
        let fake = FakeKube::start().await;
        let (status, content_type, versions) = get_as_kubectl(&fake, "/api").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        assert_eq!(versions["kind"], "APIVersions");
        assert_eq!(versions["versions"], json!(["v1"]));
        let address = fake.url().trim_start_matches("https://");
        assert_eq!(
            versions["serverAddressByClientCIDRs"][0]["serverAddress"],
            address
        );

        let (_, content_type, core) = get_as_kubectl(&fake, "/api/v1").await;
        assert_eq!(content_type, "application/json");
        assert_eq!(core["groupVersion"], "v1");
        assert_eq!(discovered(&core, "namespaces")["namespaced"], false);
        let accounts = discovered(&core, "serviceaccounts");
        assert_eq!(accounts["kind"], "ServiceAccount");
        assert_eq!(accounts["singularName"], "serviceaccount");
        assert_eq!(accounts["namespaced"], true);

        let (_, content_type, groups) = get_as_kubectl(&fake, "/apis").await;
        assert_eq!(content_type, "application/json");
        assert_eq!(groups["kind"], "APIGroupList");
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        for wanted in [
            "apps",
            "rbac.authorization.k8s.io",
            "apiregistration.k8s.io",
        ] {
            assert!(names.contains(&wanted), "{wanted}: {names:?}");
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for (group, name) in groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .zip(&names)
        {
            assert_eq!(
                group["preferredVersion"]["groupVersion"],
                format!("{name}/v1")
            );
            let (status, _, list) = get_as_kubectl(&fake, &format!("/apis/{name}/v1")).await;
            assert_eq!(status, 200, "{name}");
            assert_eq!(list["kind"], "APIResourceList");
            assert_eq!(list["groupVersion"], format!("{name}/v1"));
        }

        let (_, _, apps) = get_as_kubectl(&fake, "/apis/apps/v1").await;
        assert_eq!(discovered(&apps, "deployments")["kind"], "Deployment");
        let (_, _, registration) = get_as_kubectl(&fake, "/apis/apiregistration.k8s.io/v1").await;
        assert_eq!(
            discovered(&registration, "apiservices")["namespaced"],
            false
        );
        let (_, _, authn) = get_as_kubectl(&fake, "/apis/authentication.k8s.io/v1").await;
        assert_eq!(
            discovered(&authn, "tokenreviews")["verbs"],
            json!(["create"])
        );
    }

    #[tokio::test]
    async fn objects_of_kinds_the_fake_does_not_store_are_not_found() {
        let fake = FakeKube::start().await;
        for path in [
            "/apis/apps/v1/namespaces/image-apiserver/deployments/image-apiserver",
            "/apis/apiregistration.k8s.io/v1/apiservices/v1.image.openshift.io",
            "/api/v1/namespaces/image-apiserver/serviceaccounts/etcd",
            "/api/v1/namespaces/image-apiserver",
        ] {
            let (status, content_type, answer) = get_as_kubectl(&fake, path).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(content_type, "application/json", "{path}");
            assert_eq!(answer["kind"], "Status", "{path}");
            assert_eq!(answer["reason"], "NotFound", "{path}");
        }
    }

    #[tokio::test]
    async fn requests_without_the_token_get_401_status() {
        let fake = FakeKube::start().await;
        let anonymous = crate::pki::https_client_with_identity(fake.ca_pem(), None, None);
        let response = anonymous
            .get(format!("{}/api/v1/namespaces", fake.url()))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);
        let status: Value = response.json().await.expect("Status");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(fake.calls("/api/v1/namespaces"), 1);
    }

    #[tokio::test]
    async fn lists_filter_by_namespace_label_and_name_then_watch_streams_changes() {
        let fake = FakeKube::start().await;
        let client = fake.client();
        fake.put(config_map("a", "one", json!({"app": "x"})));
        fake.put(config_map("a", "two", json!({"app": "y"})));
        fake.put(config_map("b", "one", json!({"app": "x"})));

        let url = format!("{}/api/v1/namespaces/a/configmaps", fake.url());
        let list: Value = client
            .get(with_query(&url, &[("labelSelector", "app=x")]))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("list JSON");
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["metadata"]["resourceVersion"], "3");
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "one");
        assert_eq!(items[0]["kind"], "ConfigMap");

        let all: Value = client
            .get(with_query(
                &format!("{}/api/v1/configmaps", fake.url()),
                &[("fieldSelector", "metadata.name=one")],
            ))
            .send()
            .await
            .expect("list all")
            .json()
            .await
            .expect("list JSON");
        assert_eq!(all["items"].as_array().map(Vec::len), Some(2));

        let mut watch = client
            .get(with_query(
                &url,
                &[("watch", "true"), ("resourceVersion", "1")],
            ))
            .send()
            .await
            .expect("watch");
        assert_eq!(watch.status().as_u16(), 200);
        fake.put(config_map("b", "three", json!({})));
        fake.delete("ConfigMap", "a", "one");
        let events = read_lines(&mut watch, 2).await;
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[0]["object"]["metadata"]["name"], "two");
        assert_eq!(events[1]["type"], "DELETED");
        assert_eq!(events[1]["object"]["metadata"]["name"], "one");
        assert_eq!(events[1]["object"]["metadata"]["resourceVersion"], "5");
        assert_eq!(fake.watches("ConfigMap"), 1);
    }

    #[tokio::test]
    async fn watch_list_sends_initial_objects_then_the_end_bookmark_and_compaction_expires() {
        let fake = FakeKube::start().await;
        let client = fake.client();
        fake.put(config_map("a", "one", json!({})));
        let url = format!("{}/api/v1/namespaces/a/configmaps", fake.url());
        let mut watch = client
            .get(with_query(
                &url,
                &[
                    ("watch", "1"),
                    ("sendInitialEvents", "true"),
                    ("resourceVersionMatch", "NotOlderThan"),
                    ("allowWatchBookmarks", "true"),
                    ("timeoutSeconds", "5"),
                ],
            ))
            .send()
            .await
            .expect("watch-list");
        let events = read_lines(&mut watch, 2).await;
        assert_eq!(events[0]["type"], "ADDED");
        assert_eq!(events[1]["type"], "BOOKMARK");
        assert_eq!(
            events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );

        fake.put(config_map("a", "two", json!({})));
        fake.compact();
        let mut expired = client
            .get(with_query(
                &url,
                &[("watch", "true"), ("resourceVersion", "1")],
            ))
            .send()
            .await
            .expect("watch from a compacted revision");
        let events = read_lines(&mut expired, 2).await;
        assert_eq!(events.len(), 1, "the stream ends after the error");
        assert_eq!(events[0]["type"], "ERROR");
        assert_eq!(events[0]["object"]["code"], 410);
    }

    #[tokio::test]
    async fn token_and_subject_access_reviews_answer_from_registered_tokens_and_rules() {
        let fake = FakeKube::start().await;
        let client = fake.client();
        fake.add_token("secret-token", "alice", &["team-a"]);
        fake.allow("team-a", "get", "imagestreams", "ns1");
        fake.deny("alice", "*", "imagestreams/layers", "");

        let review = |token: &str| {
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                   "spec": {"token": token}})
        };
        let url = format!("{}{TOKEN_REVIEWS}", fake.url());
        let known: Value = client
            .post(&url)
            .json(&review("secret-token"))
            .send()
            .await
            .expect("token review")
            .json()
            .await
            .expect("TokenReview JSON");
        assert_eq!(known["status"]["authenticated"], true);
        assert_eq!(known["status"]["user"]["username"], "alice");
        assert_eq!(known["status"]["user"]["uid"], "uid-alice");
        assert_eq!(known["status"]["user"]["groups"], json!(["team-a"]));
        let unknown: Value = client
            .post(&url)
            .json(&review("other"))
            .send()
            .await
            .expect("token review")
            .json()
            .await
            .expect("TokenReview JSON");
        assert_eq!(unknown["status"]["authenticated"], false);
        assert_eq!(fake.calls(TOKEN_REVIEWS), 2);

        let sar = |verb: &str, resource: &str, subresource: &str, namespace: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                   "spec": {"user": "alice", "groups": ["team-a", "system:authenticated"],
                            "resourceAttributes": {"verb": verb, "resource": resource,
                                "subresource": subresource, "namespace": namespace,
                                "group": "image.openshift.io", "version": "v1"}}})
        };
        let url = format!("{}{SUBJECT_ACCESS_REVIEWS}", fake.url());
        let ask = |body: Value| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let answer: Value = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("subject access review")
                    .json()
                    .await
                    .expect("SubjectAccessReview JSON");
                answer["status"].clone()
            }
        };
        let allowed = ask(sar("get", "imagestreams", "", "ns1")).await;
        assert_eq!(allowed["allowed"], true);
        let elsewhere = ask(sar("get", "imagestreams", "", "ns2")).await;
        assert_eq!(elsewhere["allowed"], false);
        assert_eq!(elsewhere["reason"], "no rule matched");
        let denied = ask(sar("get", "imagestreams", "layers", "ns1")).await;
        assert_eq!(denied["denied"], true);
        let discovery = ask(
            json!({"spec": {"user": "bob", "groups": ["system:authenticated"],
            "nonResourceAttributes": {"path": "/apis/image.openshift.io/v1", "verb": "get"}}}),
        )
        .await;
        assert_eq!(discovery["allowed"], true);
    }

    #[tokio::test]
    async fn leases_are_created_once_and_replaced_only_at_the_current_resource_version() {
        let fake = FakeKube::start().await;
        let client = fake.client();
        let collection = format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            fake.url()
        );
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}});
        let missing = client
            .get(format!("{collection}/leader"))
            .send()
            .await
            .expect("get");
        assert_eq!(missing.status().as_u16(), 404);

        let created = client
            .post(&collection)
            .json(&lease)
            .send()
            .await
            .expect("create");
        assert_eq!(created.status().as_u16(), 201);
        let created: Value = created.json().await.expect("Lease JSON");
        assert_eq!(created["metadata"]["namespace"], "kube-system");
        let again = client
            .post(&collection)
            .json(&lease)
            .send()
            .await
            .expect("create again");
        assert_eq!(again.status().as_u16(), 409);
        let again: Value = again.json().await.expect("Status");
        assert_eq!(again["reason"], "AlreadyExists");

        let mut stale = created.clone();
        stale["metadata"]["resourceVersion"] = json!("0");
        stale["spec"]["holderIdentity"] = json!("b");
        let conflict = client
            .put(format!("{collection}/leader"))
            .json(&stale)
            .send()
            .await
            .expect("stale replace");
        assert_eq!(conflict.status().as_u16(), 409);

        let mut current = created.clone();
        current["spec"]["holderIdentity"] = json!("b");
        let replaced: Value = client
            .put(format!("{collection}/leader"))
            .json(&current)
            .send()
            .await
            .expect("replace")
            .json()
            .await
            .expect("Lease JSON");
        assert_eq!(replaced["spec"]["holderIdentity"], "b");
        assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
        assert_ne!(
            replaced["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }

    #[tokio::test]
    async fn injected_failures_answer_status_until_healed() {
        let fake = FakeKube::start().await;
        let client = fake.client();
        fake.fail(TOKEN_REVIEWS, 503);
        let url = format!("{}{TOKEN_REVIEWS}", fake.url());
        let body = json!({"spec": {"token": "t"}});
        let failed = client.post(&url).json(&body).send().await.expect("review");
        assert_eq!(failed.status().as_u16(), 503);
        fake.heal();
        let healed = client.post(&url).json(&body).send().await.expect("review");
        assert_eq!(healed.status().as_u16(), 201);
    }

    #[test]
    fn paths_parse_to_their_resource_and_scope() {
        let cm = Target::parse("/api/v1/namespaces/ns/configmaps/x").expect("configmap item");
        assert_eq!(
            (cm.ty.kind, cm.namespace.as_deref()),
            ("ConfigMap", Some("ns"))
        );
        assert_eq!(cm.name.as_deref(), Some("x"));
        let ns = Target::parse("/api/v1/namespaces/ns").expect("namespace item");
        assert_eq!((ns.ty.kind, ns.name.as_deref()), ("Namespace", Some("ns")));
        assert!(Target::parse("/api/v1/configmaps").is_some());
        assert!(Target::parse("/api/v1/configmaps/x").is_none());
        assert!(Target::parse("/apis/coordination.k8s.io/v1/leases").is_some());
        assert!(Target::parse("/api/v1/pods").is_none());
    }

    #[test]
    fn label_selectors_understand_equality_and_existence() {
        let object = json!({"metadata": {"labels": {"app": "x", "tier": "web"}}});
        let all = |s: &str| {
            LabelRequirement::parse_all(s)
                .iter()
                .all(|r| r.matches(&object))
        };
        assert!(all("app=x,tier==web"));
        assert!(all("app!=y,tier,!missing"));
        assert!(!all("app=y"));
        assert!(!all("!app"));
        // Set-based requirements are not understood, so they do not filter.
        assert!(all("env in (prod)"));
    }
}
