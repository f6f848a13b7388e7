//! A client generated from our OpenAPI v3 document (issue 14, item 4): openapi-python-client
//! must take every image endpoint without a warning, and the client it writes must create,
//! read, list and watch image streams against the running server, parsing the fields the
//! server sends as `null` (a tag's `annotations`, an ImageTag's `image`).

use std::path::Path;
use std::process::Command;

use blackbox::{admin_token, python};
use serde_json::{json, Value};

const NS: &str = "generated-client";

/// What openapi-python-client needs told about a kube-style document: request bodies are
/// `*/*` (kube's documents say so; the server reads them as JSON), and an apply body is
/// JSON too (JSON is YAML). No post hooks: the generated code is run, not formatted.
const CONFIG: &str = r#"{
  "content_type_overrides": {
    "*/*": "application/json",
    "application/apply-patch+yaml": "application/json"
  },
  "post_hooks": []
}"#;

/// Drives the generated package `image_client` (on PYTHONPATH) with the server's URL, the admin
/// token, the CA file and a namespace; prints one JSON summary.
const SCRIPT: &str = r#"
import json
import ssl
import sys

from image_client import AuthenticatedClient
from image_client.api.image_openshift_io_v_1 import (
    create_image_openshift_io_v1_namespaced_image_stream as create_stream,
    list_image_openshift_io_v1_namespaced_image_stream as list_streams,
    list_image_openshift_io_v1_namespaced_image_tag as list_image_tags,
    read_image_openshift_io_v1_namespaced_image_stream as read_stream,
)
from image_client.models import (
    ComGithubOpenshiftApiImageV1ImageStream as ImageStream,
    ComGithubOpenshiftApiImageV1ImageStreamList as ImageStreamList,
    ComGithubOpenshiftApiImageV1ImageTagList as ImageTagList,
    IoK8SApimachineryPkgApisMetaV1WatchEvent as WatchEvent,
)
from image_client.types import Unset

base, token, ca, namespace = sys.argv[1:5]
# verify_ssl takes the CA file's path too, which httpx 0.28 deprecates in favour of a context.
client = AuthenticatedClient(
    base_url=base, token=token, verify_ssl=ssl.create_default_context(cafile=ca)
)


def parsed(response, model):
    """The typed body of a 2xx answer; anything else ends the script with the body."""
    if not (200 <= response.status_code < 300 and isinstance(response.parsed, model)):
        raise SystemExit(f"{response.status_code}: {response.content!r}")
    return response.parsed


def value(field):
    """A generated field as JSON: "unset" when the body left it out, else null or its value."""
    if isinstance(field, Unset):
        return "unset"
    if field is None:
        return None
    return field.to_dict() if hasattr(field, "to_dict") else field


def summary(stream):
    return {
        "name": stream.metadata.name,
        "resourceVersion": stream.metadata.resource_version,
        "tags": [t.name for t in stream.spec.tags],
        "annotations": [value(t.annotations) for t in stream.spec.tags],
        "generations": [value(t.generation) for t in stream.spec.tags],
        "history": {
            t.tag: [e.docker_image_reference for e in t.items or []]
            for t in stream.status.tags or []
        },
    }


def spec_name(image_tag):
    spec = value(image_tag.spec)
    return spec["name"] if isinstance(spec, dict) else spec


def watched(event):
    stream = ImageStream.from_dict(event.object_.to_dict())
    name = None if isinstance(stream.metadata, Unset) else value(stream.metadata.name)
    return {"type": event.type_, "name": name}


body = ImageStream.from_dict({
    "apiVersion": "image.openshift.io/v1",
    "kind": "ImageStream",
    "metadata": {"name": "generated"},
    "spec": {"tags": [
        {"name": tag, "reference": True,
         "from": {"kind": "DockerImage", "name": f"registry.example.com/app:{tag}"}}
        for tag in ("v1", "v2")
    ]},
})
created = create_stream.sync_detailed(namespace, client=client, body=body)
created_status = created.status_code
created = parsed(created, ImageStream)
got = parsed(
    read_stream.sync_detailed(name="generated", namespace=namespace, client=client), ImageStream
)
listed = parsed(list_streams.sync_detailed(namespace, client=client), ImageStreamList)
image_tags = parsed(list_image_tags.sync_detailed(namespace, client=client), ImageTagList)

# A watch answers JSON lines, which sync_detailed would parse as one ImageStreamList and fail:
# the same request goes through the generated client's own httpx client, and each line is
# parsed with the generated WatchEvent and ImageStream models.
request = list_streams._get_kwargs(namespace, watch=True, timeout_seconds=1)
watch = client.get_httpx_client().request(**request)
events = [WatchEvent.from_dict(json.loads(line)) for line in watch.text.splitlines() if line]

print(json.dumps({
    "createdStatus": created_status,
    "created": summary(created),
    "got": summary(got),
    "list": {
        "resourceVersion": listed.metadata.resource_version,
        "items": [summary(s) for s in listed.items],
    },
    "imageTags": [
        {"name": t.metadata.name, "spec": spec_name(t), "image": value(t.image)}
        for t in image_tags.items
    ],
    "watch": {"status": watch.status_code, "events": [watched(e) for e in events]},
}))
"#;

/// Runs openapi-python-client over `spec`; any warning (an endpoint or schema it could not
/// take) fails the test with the generator's report.
fn generate(spec: &Path, config: &Path, package: &Path) {
    let output = Command::new(python::interpreter())
        .args(["-m", "openapi_python_client", "generate", "--meta", "none"])
        .arg("--fail-on-warning")
        .arg("--path")
        .arg(spec)
        .arg("--config")
        .arg(config)
        .arg("--output-path")
        .arg(package)
        .output()
        .expect("run openapi-python-client");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let unparsed: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("Unable to parse") || l.contains("WARNING"))
        .collect();
    assert!(
        output.status.success() && unparsed.is_empty(),
        "openapi-python-client did not take our document ({}): {unparsed:#?}\n{report}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_client_creates_reads_lists_and_watches_streams() {
    let server = blackbox::start_embedded(&[]).await;
    let spec = server
        .client()
        .get("/openapi/v3/apis/image.openshift.io/v1")
        .await;
    assert_eq!(spec.status, 200, "{}", spec.text());
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, &spec.body).expect("write spec");
    let config = dir.path().join("config.json");
    std::fs::write(&config, CONFIG).expect("write config");
    generate(&spec_path, &config, &dir.path().join("image_client"));

    let token = admin_token(server.data_dir());
    let ca = server.data_dir().join("ca.crt").display().to_string();
    let pythonpath = dir.path().to_string_lossy().into_owned();
    let out = python::run_ok(
        SCRIPT,
        &[server.base.as_str(), token.as_str(), ca.as_str(), NS],
        &[("PYTHONPATH", pythonpath.as_str())],
    );
    let summary: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("the script's summary is not JSON ({e}): {out}"));
    // Shown with --no-capture: what the client saw, for people comparing clients.
    eprintln!("{summary:#}");
    check_stream_reads(&summary);
    check_list_and_watch(&summary);
}

/// Create and get answer the stream as sent, with the server's nulls parsed as None.
fn check_stream_reads(summary: &Value) {
    assert_eq!(summary["createdStatus"], 201, "{summary}");
    let created = &summary["created"];
    assert_eq!(created["name"], "generated", "{summary}");
    assert_eq!(created["tags"], json!(["v1", "v2"]), "{summary}");
    assert!(
        created["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty()),
        "{summary}"
    );
    // Tags without annotations come back as `annotations: null`, as from openshift-apiserver:
    // None in the client, not a parse error and not left out.
    assert_eq!(created["annotations"], json!([null, null]), "{summary}");
    assert!(
        created["generations"]
            .as_array()
            .is_some_and(|g| g.len() == 2 && g.iter().all(Value::is_i64)),
        "{summary}"
    );
    assert_eq!(
        created["history"],
        json!({"v1": ["registry.example.com/app:v1"], "v2": ["registry.example.com/app:v2"]}),
        "{summary}"
    );
    assert_eq!(summary["got"], *created, "{summary}");
}

/// The list holds the stream, ImageTags parse with their null image, and the watch starts with
/// the stream's ADDED event.
fn check_list_and_watch(summary: &Value) {
    let list = &summary["list"];
    assert!(
        list["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty()),
        "{summary}"
    );
    let items = list["items"].as_array().expect("list items");
    let listed = items
        .iter()
        .find(|s| s["name"] == "generated")
        .unwrap_or_else(|| panic!("the stream is not listed: {summary}"));
    assert_eq!(listed["tags"], json!(["v1", "v2"]), "{summary}");
    assert_eq!(listed["annotations"], json!([null, null]), "{summary}");
    assert_eq!(
        summary["imageTags"],
        json!([
            {"name": "generated:v1", "spec": "v1", "image": null},
            {"name": "generated:v2", "spec": "v2", "image": null},
        ]),
        "{summary}"
    );
    assert_eq!(summary["watch"]["status"], 200, "{summary}");
    let events = summary["watch"]["events"].as_array().expect("watch events");
    assert!(
        events.contains(&json!({"type": "ADDED", "name": "generated"})),
        "no ADDED event for the stream: {summary}"
    );
}
