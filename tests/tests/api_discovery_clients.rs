//! Discovery as the client libraries run it when we are the only server (issue 14, item 1):
//! kube-rs's `Discovery::run` (legacy: `/apis`, `/apis/<gv>`, `/api`, `/api/v1`) and
//! `Discovery::run_aggregated` (`/apis` and `/api` as aggregated v2), kubectl's `api-versions`
//! and `api-resources`, and the `/api` documents on the wire.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use blackbox::api::streams;
use blackbox::Server;
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, ResourceExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::json;

const GROUP: &str = "image.openshift.io";
const V2_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const V2BETA1_ACCEPT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const V2_TYPE: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// A kube-rs client from the admin kubeconfig the server wrote, as a user's program builds one.
async fn kube_client(server: &Server) -> kube::Client {
    // kube's rustls transport uses the process's default provider; an earlier test in this
    // process may have installed it already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

/// What kube-rs made of one resource, in a form two discoveries can be compared by.
#[derive(Debug, PartialEq, Eq)]
struct Found {
    api_version: String,
    kind: String,
    namespaced: bool,
    verbs: Vec<String>,
    /// (name, kind, verbs), by name.
    subresources: Vec<(String, String, Vec<String>)>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn found(ar: &ApiResource, caps: &ApiCapabilities) -> Found {
    let mut subresources: Vec<_> = caps
        .subresources
        .iter()
        .map(|(sub, sub_caps)| {
            (
                sub.plural.clone(),
                sub.kind.clone(),
                sorted(sub_caps.operations.clone()),
            )
        })
        .collect();
    subresources.sort();
    Found {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        namespaced: caps.scope == Scope::Namespaced,
        verbs: sorted(caps.operations.clone()),
        subresources,
    }
}

/// Every resource kube-rs found in `group`, by plural.
fn resources_of(discovery: &Discovery, group: &str) -> BTreeMap<String, Found> {
    let group = discovery
        .get(group)
        .unwrap_or_else(|| panic!("kube-rs did not discover group {group:?}"));
    group
        .recommended_resources()
        .iter()
        .map(|(ar, caps)| (ar.plural.clone(), found(ar, caps)))
        .collect()
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// What both discoveries must report for image streams and images.
fn assert_image_resources(resources: &BTreeMap<String, Found>) {
    let is = resources.get("imagestreams").expect("imagestreams");
    assert_eq!(
        is,
        &Found {
            api_version: format!("{GROUP}/v1"),
            kind: "ImageStream".into(),
            namespaced: true,
            verbs: strings(&[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch"
            ]),
            subresources: vec![
                (
                    "layers".into(),
                    "ImageStreamLayers".into(),
                    strings(&["get"])
                ),
                ("secrets".into(), "SecretList".into(), strings(&["get"])),
                (
                    "status".into(),
                    "ImageStream".into(),
                    strings(&["get", "patch", "update"])
                ),
            ],
        }
    );
    let images = resources.get("images").expect("images");
    assert_eq!(images.kind, "Image");
    assert!(!images.namespaced);
}

/// The core group as kube-rs sees it: version v1, nothing in it.
fn assert_empty_core(discovery: &Discovery) {
    let core = discovery.get("").expect("core group");
    assert_eq!(core.versions().collect::<Vec<_>>(), vec!["v1"]);
    assert!(core.recommended_resources().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_discovers_us_both_ways() {
    let server = blackbox::start_embedded(&[]).await;
    let client = kube_client(&server).await;

    let legacy = Discovery::new(client.clone())
        .run()
        .await
        .expect("kube-rs Discovery::run");
    let legacy_found = resources_of(&legacy, GROUP);
    assert_image_resources(&legacy_found);
    assert_empty_core(&legacy);
    assert_eq!(
        legacy.get(GROUP).and_then(|g| g.preferred_version()),
        Some("v1")
    );

    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("kube-rs Discovery::run_aggregated");
    let aggregated_found = resources_of(&aggregated, GROUP);
    assert_image_resources(&aggregated_found);
    assert_empty_core(&aggregated);
    assert_eq!(
        legacy_found, aggregated_found,
        "legacy and aggregated discovery disagree"
    );

    // What was discovered is enough to use the API: list a stream through it.
    let created = server
        .client()
        .post(
            &streams("team"),
            &json!({"metadata": {"name": "web"}, "spec": {}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let gvk = GroupVersionKind::gvk(GROUP, "v1", "ImageStream");
    let (ar, caps) = aggregated.resolve_gvk(&gvk).expect("ImageStream resolves");
    assert_eq!(caps.scope, Scope::Namespaced);
    let streams_api: Api<DynamicObject> = Api::namespaced_with(client, "team", &ar);
    let list = streams_api
        .list(&ListParams::default())
        .await
        .expect("list through discovery");
    let names: Vec<String> = list.items.iter().map(|s| s.name_any()).collect();
    assert_eq!(names, vec!["web".to_string()]);
}

/// The machine's kubectl with the server's kubeconfig and a private HOME (its discovery cache).
fn kubectl(server: &Server, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("HOME", home)
        .env("KUBECONFIG", server.kubeconfig())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

/// Runs kubectl, expects success with nothing on stderr (no discovery warnings), returns stdout.
fn kubectl_clean(server: &Server, home: &std::path::Path, args: &[&str]) -> String {
    let out = kubectl(server, home, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stdout}{stderr}"
    );
    assert!(
        stderr.is_empty(),
        "kubectl {args:?} wrote to stderr: {stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_versions_and_resources_cleanly() {
    let server = blackbox::start_embedded(&[]).await;
    let home = tempfile::tempdir().expect("home");
    let versions = kubectl_clean(&server, home.path(), &["api-versions"]);
    assert_eq!(
        versions.lines().collect::<Vec<_>>(),
        vec![format!("{GROUP}/v1").as_str(), "v1"],
        "{versions}"
    );
    let resources = kubectl_clean(&server, home.path(), &["api-resources"]);
    let row = resources
        .lines()
        .find(|l| l.starts_with("imagestreams "))
        .unwrap_or_else(|| panic!("no imagestreams row in {resources}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        vec![
            "imagestreams",
            "is",
            "image.openshift.io/v1",
            "true",
            "ImageStream"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_documents_on_the_wire() {
    let server = blackbox::start_embedded(&[]).await;
    let c = server.client();

    let legacy = c.get("/api").await;
    assert_eq!(legacy.status, 200);
    assert_eq!(
        legacy.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        legacy.json(),
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", server.port)}
            ],
        })
    );
    assert_eq!(c.get("/api/").await.json()["kind"], "APIVersions");

    let v2 = c.get_accept("/api", V2_ACCEPT).await;
    assert_eq!(v2.status, 200);
    assert_eq!(v2.header("content-type").as_deref(), Some(V2_TYPE));
    assert_eq!(v2.header("vary").as_deref(), Some("Accept"));
    assert_eq!(
        v2.json(),
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": [{"metadata": {}, "versions": [{"version": "v1", "freshness": "Current"}]}],
        })
    );
    let etag = v2.header("etag").expect("etag");
    let again = c
        .request(
            reqwest::Method::GET,
            "/api",
            &[("accept", V2_ACCEPT), ("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // A client of kube 1.26-1.29 asks for v2beta1 only, on /api and /apis alike.
    for path in ["/api", "/apis"] {
        let beta = c.get_accept(path, V2BETA1_ACCEPT).await;
        assert_eq!(beta.status, 200, "{path}");
        assert_eq!(beta.header("content-type").as_deref(), Some(V2BETA1_TYPE));
        let doc = beta.json();
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1", "{path}");
        assert_eq!(doc["kind"], "APIGroupDiscoveryList", "{path}");
    }
    let apis_beta = c.get_accept("/apis", V2BETA1_ACCEPT).await.json();
    assert_eq!(apis_beta["items"][0]["metadata"]["name"], GROUP);

    let core = c.get("/api/v1").await;
    assert_eq!(core.status, 200);
    assert_eq!(
        core.json(),
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []})
    );
    let missing = c.get("/api/v1/namespaces/default/pods").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["reason"], "NotFound");
    assert_eq!(
        missing.message(),
        "the server could not find the requested resource"
    );

    let root = c.get("/").await.json();
    let paths: Vec<&str> = root["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        paths.contains(&"/api") && paths.contains(&"/api/v1"),
        "{paths:?}"
    );

    // Discovery is for authenticated users, as /apis is.
    assert_eq!(server.anonymous().get("/api").await.status, 401);
}
