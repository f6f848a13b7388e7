//! The official Python client (`kubernetes`) against the running server with the admin
//! kubeconfig (issue 14, item 1): the DynamicClient's discovery, a full search over `/api` and
//! `/apis`, create/get/list/merge-patch/delete of an image stream through it, the typed
//! CustomObjectsApi, and watches through `kubernetes.watch`.

use blackbox::python;
use serde_json::{json, Value};

const NS: &str = "python-client";

/// Takes the kubeconfig, a namespace and the file the DynamicClient caches discovery in;
/// prints one JSON summary.
const SCRIPT: &str = r#"
import json
import sys

from kubernetes import client, config, watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

kubeconfig, namespace, cache_file = sys.argv[1:4]
configuration = client.Configuration()
config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
api_client = client.ApiClient(configuration)
# Discovery is cached in a file of this test's own (by default one per server URL in /tmp).
dyn = DynamicClient(api_client, cache_file=cache_file)

found = [
    {"apiVersion": r.group_version, "name": r.name, "namespaced": r.namespaced}
    for r in dyn.resources.search(kind="ImageStream")
]
streams = dyn.resources.get(api_version="image.openshift.io/v1", kind="ImageStream")

created = streams.create(namespace=namespace, body={
    "apiVersion": "image.openshift.io/v1",
    "kind": "ImageStream",
    "metadata": {"name": "python"},
    "spec": {"tags": [{
        "name": "v1",
        "reference": True,
        "from": {"kind": "DockerImage", "name": "registry.example.com/app:v1"},
    }]},
})
got = streams.get(name="python", namespace=namespace)
listed = streams.get(namespace=namespace)
patched = streams.patch(
    name="python",
    namespace=namespace,
    body={"metadata": {"labels": {"client": "python"}}},
    content_type="application/merge-patch+json",
)

# The typed API of the same client, as used for any resource it has no model of.
custom = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
    "image.openshift.io", "v1", namespace, "imagestreams"
)

# Watch.stream over the resource's own get: serialize=False hands it the open response, as the
# DynamicClient's watch() does (without it get() reads the whole stream as one object).
events = [
    {"type": e["type"], "name": e["raw_object"]["metadata"]["name"]}
    for e in watch.Watch().stream(
        streams.get, namespace=namespace, serialize=False, timeout_seconds=2
    )
]
dynamic_events = [
    {"type": e["type"], "name": e["object"].metadata.name}
    for e in streams.watch(namespace=namespace, timeout=2)
]

# Without a filter the search walks every group version the server lists, /api's and /apis'.
kinds = sorted({r.kind for r in dyn.resources.search()})

streams.delete(name="python", namespace=namespace)
try:
    streams.get(name="python", namespace=namespace)
    gone = False
except NotFoundError:
    gone = True

print(json.dumps({
    "found": found,
    "created": {
        "name": created.metadata.name,
        "resourceVersion": created.metadata.resourceVersion,
        "tags": [t.name for t in created.spec.tags],
    },
    "got": {"name": got.metadata.name, "resourceVersion": got.metadata.resourceVersion},
    "list": {
        "resourceVersion": listed.metadata.resourceVersion,
        "names": [i.metadata.name for i in listed.items],
    },
    "patched": {
        "labels": dict(patched.metadata.labels),
        "resourceVersion": patched.metadata.resourceVersion,
    },
    "custom": [i["metadata"]["name"] for i in custom["items"]],
    "watch": events,
    "dynamicWatch": dynamic_events,
    "kinds": kinds,
    "gone": gone,
}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_client_discovers_and_drives_image_streams() {
    let server = blackbox::start_embedded(&[]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("discovery-cache.json");
    let cache_file = cache.display().to_string();
    let kubeconfig = server.kubeconfig().display().to_string();
    let args = [kubeconfig.as_str(), NS, cache_file.as_str()];
    let out = python::run_ok(SCRIPT, &args, &[]);
    let summary: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the script's summary is not JSON ({e}): {out}"));
    // Shown with --no-capture: what the client saw, for people comparing clients.
    eprintln!("{summary:#}");
    // The cache went where the test said, not into a file other runs share.
    assert!(cache.exists(), "no discovery cache at {}", cache.display());
    check_discovery(&summary);
    check_writes_and_reads(&summary);
    check_watches(&summary);
}

fn check_discovery(summary: &Value) {
    let found = json!([{
        "apiVersion": "image.openshift.io/v1",
        "name": "imagestreams",
        "namespaced": true,
    }]);
    assert_eq!(summary["found"], found, "{summary}");
    let kinds: Vec<&str> = summary["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for kind in [
        "Image",
        "ImageStream",
        "ImageStreamTag",
        "ImageTag",
        "ImageStreamImport",
    ] {
        assert!(
            kinds.contains(&kind),
            "the full search missed {kind}: {kinds:?}"
        );
    }
}

fn check_writes_and_reads(summary: &Value) {
    let created = &summary["created"];
    assert_eq!(created["name"], "python", "{summary}");
    assert_eq!(created["tags"], json!(["v1"]), "{summary}");
    let rv = created["resourceVersion"].as_str().unwrap_or_default();
    assert!(!rv.is_empty(), "{summary}");
    let got = json!({"name": "python", "resourceVersion": rv});
    assert_eq!(summary["got"], got, "{summary}");
    let list = &summary["list"];
    assert!(
        list["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{summary}"
    );
    assert_eq!(list["names"], json!(["python"]), "{summary}");
    let patched = &summary["patched"];
    let labels = json!({"client": "python"});
    assert_eq!(patched["labels"], labels, "{summary}");
    assert_ne!(patched["resourceVersion"], created["resourceVersion"]);
    assert_eq!(summary["custom"], json!(["python"]), "{summary}");
    // Deleted: a get after the delete is a NotFoundError.
    assert_eq!(summary["gone"], true, "{summary}");
}

fn check_watches(summary: &Value) {
    let added = json!({"type": "ADDED", "name": "python"});
    for watch in ["watch", "dynamicWatch"] {
        let events = summary[watch].as_array().expect("events");
        assert!(
            events.contains(&added),
            "{watch} saw no ADDED for the stream: {summary}"
        );
    }
}
