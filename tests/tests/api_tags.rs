//! The tag model over HTTP (openshift-image-behavior.md §4, §8–§12, scenarios 14–35, 37, 46),
//! on both backends, plus 20 concurrent taggers.

use blackbox::api::{stream, streams, tag_items as items, Client, IMAGES};
use blackbox::both_backends;
use blackbox::Server;
use serde_json::{json, Value};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const V1: &str = "/apis/image.openshift.io/v1";

fn istag(ns: &str, name: &str) -> String {
    format!("{V1}/namespaces/{ns}/imagestreamtags/{name}")
}

fn itag(ns: &str, name: &str) -> String {
    format!("{V1}/namespaces/{ns}/imagetags/{name}")
}

fn mapping(name: &str, tag: &str, image: Value) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamMapping", "metadata": {"name": name}, "tag": tag, "image": image})
}

async fn map(c: &Client, ns: &str, body: &Value) -> blackbox::api::Resp {
    c.post(&format!("{V1}/namespaces/{ns}/imagestreammappings"), body)
        .await
}

/// A schema2 image with one layer whose config and manifest hash to their names.
fn image_with_layers(reference: &str) -> (String, Value) {
    let config = r#"{"architecture":"amd64","os":"linux","config":{}}"#;
    let config_digest = sha(config.as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 42, "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444"}]}).to_string();
    let name = sha(manifest.as_bytes());
    (
        name.clone(),
        json!({"metadata": {"name": name}, "dockerImageReference": reference, "dockerImageManifest": manifest, "dockerImageConfig": config}),
    )
}

fn sha(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("output");
    format!(
        "sha256:{}",
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
    )
}

async fn mappings(server: &Server) {
    let c = server.client();
    c.post(&streams("ns"), &json!({"metadata": {"name": "app"}, "spec": {"tags": [{"name": "stable", "from": {"kind": "ImageStreamTag", "name": "latest"}}]}})).await;
    // 14: a mapping adds history, creates the image, leaves spec alone; re-posting is idempotent.
    let m = mapping(
        "app",
        "newer",
        json!({"metadata": {"name": "image1"}, "dockerImageReference": "some/other/name"}),
    );
    let r = map(&c, "ns", &m).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let s = c.get(&stream("ns", "app")).await.json();
    let newer = items(&s, "newer");
    assert_eq!(newer.len(), 1);
    assert_eq!(
        (
            newer[0]["image"].as_str(),
            newer[0]["dockerImageReference"].as_str()
        ),
        (Some("image1"), Some("some/other/name"))
    );
    assert_eq!(newer[0]["generation"], s["metadata"]["generation"]);
    assert_eq!(
        s["spec"]["tags"].as_array().map(Vec::len),
        Some(1),
        "mappings add no spec tags"
    );
    assert_eq!(map(&c, "ns", &m).await.status, 201);
    assert_eq!(
        items(&c.get(&stream("ns", "app")).await.json(), "newer").len(),
        1
    );
    assert_eq!(
        c.get(&format!("{IMAGES}/image1")).await.status,
        200,
        "the mapping created the image"
    );

    // 15
    let r = map(
        &c,
        "ns",
        &mapping(
            "nostream",
            "t",
            json!({"metadata": {"name": "image1"}, "dockerImageReference": "a/b"}),
        ),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        "imagestreammappings.image.openshift.io \"nostream\" not found"
    );
    assert_eq!(r.json()["details"]["kind"], "imagestreammappings");
    let r = map(
        &c,
        "ns",
        &mapping(
            "app",
            "",
            json!({"metadata": {"name": "image1"}, "dockerImageReference": "a/b"}),
        ),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(
        r.message().contains("tag: Required value"),
        "{}",
        r.message()
    );

    // 16: an existing image is not changed; the event carries the mapping's reference.
    c.post(
        IMAGES,
        &json!({"metadata": {"name": "image2"}, "dockerImageReference": "some/other/name"}),
    )
    .await;
    assert_eq!(
        map(
            &c,
            "ns",
            &mapping(
                "app",
                "newest",
                json!({"metadata": {"name": "image2"}, "dockerImageReference": "different"})
            )
        )
        .await
        .status,
        201
    );
    assert_eq!(
        c.get(&format!("{IMAGES}/image2")).await.json()["dockerImageReference"],
        "some/other/name"
    );
    assert_eq!(
        c.get(&istag("ns", "app:newest")).await.json()["image"]["dockerImageReference"],
        "different"
    );

    // 17: a managed image that already exists gets the stream's local pull spec.
    c.post(&streams("ns"), &json!({"metadata": {"name": "app2"}}))
        .await;
    c.post(IMAGES, &json!({"metadata": {"name": D3, "annotations": {"openshift.io/image.managed": "true"}}, "dockerImageReference": format!("x/y@{D3}")})).await;
    let managed = json!({"metadata": {"name": D3, "annotations": {"openshift.io/image.managed": "true"}}, "dockerImageReference": format!("x/y@{D3}")});
    assert_eq!(
        map(&c, "ns", &mapping("app2", "t", managed)).await.status,
        201
    );
    let s2 = c.get(&stream("ns", "app2")).await.json();
    assert_eq!(
        items(&s2, "t")[0]["dockerImageReference"],
        format!("reg:5000/ns/app2@{D3}")
    );

    // 18, 19: history order (no de-duplication beyond items[0]) and tracking tags.
    for d in [D1, D2, D1] {
        let r = map(&c, "ns", &mapping("app", "latest", json!({"metadata": {"name": d}, "dockerImageReference": format!("quay.io/a/b@{d}")}))).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let s = c.get(&stream("ns", "app")).await.json();
    let latest = items(&s, "latest");
    let images: Vec<&str> = latest.iter().filter_map(|i| i["image"].as_str()).collect();
    assert_eq!(images, vec![D1, D2, D1]);
    assert_eq!(items(&s, "stable")[0]["image"], D1, "stable tracks latest");
}

async fn stream_tags(server: &Server) {
    let c = server.client();
    c.post(&streams("ns"), &json!({"metadata": {"name": "app", "labels": {"team": "a"}}, "spec": {"tags": [{"name": "newer", "annotations": {"color": "blue"}, "from": {"kind": "DockerImage", "name": "quay.io/x/y:1"}}]}})).await;
    let (digest, image) = image_with_layers("quay.io/x/y@placeholder");
    let mut image = image;
    image["dockerImageReference"] = json!(format!("quay.io/x/y@{digest}"));
    assert_eq!(
        map(&c, "ns", &mapping("app", "newer", image)).await.status,
        201
    );

    // 20: the istag's shape.
    let s = c.get(&stream("ns", "app")).await.json();
    let ist = c.get(&istag("ns", "app:newer")).await;
    assert_eq!(ist.status, 200, "{}", ist.text());
    let ist = ist.json();
    assert_eq!(ist["kind"], "ImageStreamTag");
    assert_eq!(ist["metadata"]["name"], "app:newer");
    assert_eq!(ist["metadata"]["annotations"]["color"], "blue");
    assert_eq!(ist["metadata"]["labels"]["team"], "a");
    assert_eq!(
        ist["metadata"]["resourceVersion"],
        s["metadata"]["resourceVersion"]
    );
    assert_eq!(ist["metadata"]["uid"], s["metadata"]["uid"]);
    assert_eq!(ist["image"]["metadata"]["annotations"]["color"], "blue");
    assert!(ist["image"].get("dockerImageManifest").is_none());
    assert_eq!(ist["generation"], items(&s, "newer")[0]["generation"]);
    assert_eq!(ist["lookupPolicy"], json!({"local": false}));

    // 21: 404s and 400s.
    let r = c.get(&istag("ns", "app:doesnotexist")).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        "imagestreamtags.image.openshift.io \"app:doesnotexist\" not found"
    );
    let r = c.get(&istag("ns", "nostream:t")).await;
    assert_eq!(
        r.message(),
        "imagestreamtags.image.openshift.io \"nostream\" not found"
    );
    for bad in ["app", "app@sha256:1"] {
        let r = c.get(&istag("ns", bad)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.message(),
            "ImageStreamTags must be retrieved with <name>:<tag>"
        );
    }

    // 22, 23: create, duplicate, create-the-stream.
    let body = json!({"metadata": {"name": "app:v1"}, "tag": {"from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}});
    let r = c
        .post(&format!("{V1}/namespaces/ns/imagestreamtags"), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["tag"]["name"], "v1");
    assert!(c.get(&stream("ns", "app")).await.json()["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .any(|t| t["name"] == "v1"));
    let r = c
        .post(&format!("{V1}/namespaces/ns/imagestreamtags"), &body)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.message(),
        "imagestreamtag.image.openshift.io \"app:v1\" already exists"
    );
    let r = c.post(&format!("{V1}/namespaces/ns/imagestreamtags"), &json!({"metadata": {"name": "new:misc"}, "tag": {"from": {"kind": "DockerImage", "name": "quay.io/a/b:2"}}})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.get(&stream("ns", "new")).await.json()["metadata"]["generation"],
        1
    );
    let r = c
        .post(
            &format!("{V1}/namespaces/ns/imagestreamtags"),
            &json!({"metadata": {"name": "nocolon"}}),
        )
        .await;
    assert_eq!(r.status, 400, "design.md: a name without ':' is a 400");

    // 24: update conflicts, correct and empty resourceVersions.
    let mut put = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag", "metadata": {"name": "app:brandnew", "resourceVersion": "1"}, "tag": {"from": {"kind": "DockerImage", "name": "quay.io/a/b:3"}}});
    let r = c.put(&istag("ns", "app:brandnew"), &put).await;
    assert_eq!(r.status, 409);
    assert!(
        r.message()
            .contains("another caller has updated the resource version to"),
        "{}",
        r.message()
    );
    put["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let r = c.put(&istag("ns", "app:brandnew"), &put).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    put["metadata"]["resourceVersion"] = rv;
    put["metadata"]["labels"] = json!({"team": "a"});
    put["tag"]["from"]["name"] = json!("quay.io/a/b:4");
    assert_eq!(c.put(&istag("ns", "app:brandnew"), &put).await.status, 200);

    // 25: annotations flow to the spec tag; other metadata may not change.
    let mut cur = c.get(&istag("ns", "app:newer")).await.json();
    cur["metadata"]["annotations"] = json!({"a": "b"});
    cur["tag"]["annotations"] = Value::Null;
    let r = c.put(&istag("ns", "app:newer"), &cur).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let spec_tag = c.get(&stream("ns", "app")).await.json()["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|t| t["name"] == "newer")
        .cloned()
        .expect("newer");
    assert_eq!(spec_tag["annotations"], json!({"a": "b"}));
    let mut labels = c.get(&istag("ns", "app:newer")).await.json();
    labels["metadata"]["labels"] = json!({"other": "x"});
    let r = c.put(&istag("ns", "app:newer"), &labels).await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("may not update fields other than metadata.annotations"),
        "{}",
        r.message()
    );

    // 26: a status-only tag with tag: null cannot be updated.
    map(
        &c,
        "ns",
        &mapping(
            "app",
            "pushed",
            json!({"metadata": {"name": D2}, "dockerImageReference": format!("quay.io/p/q@{D2}")}),
        ),
    )
    .await;
    let mut pushed = c.get(&istag("ns", "app:pushed")).await.json();
    pushed["tag"] = Value::Null;
    let r = c.put(&istag("ns", "app:pushed"), &pushed).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "imagestreamtag pushed is not a spec tag in imagestream ns/app, cannot be updated"
    );

    // A merge patch through istag.
    let r = c
        .patch(
            &istag("ns", "app:v1"),
            "application/merge-patch+json",
            r#"{"tag":{"reference":true}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tag"]["reference"], true);

    // 46: the istag table.
    let t = c
        .get_accept(
            &format!("{V1}/namespaces/ns/imagestreamtags"),
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .await
        .json();
    let cols: Vec<(&str, i64)> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?, c["priority"].as_i64()?)))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("Name", 0),
            ("Image Reference", 0),
            ("Updated", 0),
            ("Image Name", 1)
        ]
    );
    assert_eq!(t["rows"][0]["cells"][0], "app:newer");
    assert!(t["rows"][0]["cells"][2]
        .as_str()
        .is_some_and(|u| u.ends_with(" ago")));

    // 28: the list has status tags with images only, sorted, without manifests.
    let list = c
        .get(&format!("{V1}/namespaces/ns/imagestreamtags"))
        .await
        .json();
    assert_eq!(list["kind"], "ImageStreamTagList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["app:newer", "app:pushed"]);
    let filtered = c
        .get(&format!(
            "{V1}/namespaces/ns/imagestreamtags?fieldSelector=metadata.name%3Dapp:pushed"
        ))
        .await
        .json();
    assert_eq!(
        filtered["items"].as_array().map(Vec::len),
        Some(1),
        "design.md: field selectors match istag names"
    );

    // 27: delete removes spec and history and bumps the generation.
    let before = c.get(&stream("ns", "app")).await.json()["metadata"]["generation"]
        .as_i64()
        .expect("gen");
    let r = c
        .delete_with(
            &istag("ns", "app:newer"),
            &json!({"preconditions": {"uid": "wrong"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c.delete(&istag("ns", "app:newer")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "Success");
    let s = c.get(&stream("ns", "app")).await.json();
    assert!(items(&s, "newer").is_empty());
    assert!(!s["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .any(|t| t["name"] == "newer"));
    assert!(s["metadata"]["generation"].as_i64().expect("gen") > before);
    assert_eq!(c.delete(&istag("ns", "app:newer")).await.status, 404);

    // 21 (image deleted): the istag is a 404 naming the digest.
    c.delete(&format!("{IMAGES}/{D2}")).await;
    let r = c.get(&istag("ns", "app:pushed")).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        format!("imagestreamtags.image.openshift.io \"{D2}\" not found")
    );

    // Server-side apply through istag: creates the spec tag, then changes it.
    let applied = "apiVersion: image.openshift.io/v1\nkind: ImageStreamTag\nmetadata:\n  name: app:applied\ntag:\n  from:\n    kind: DockerImage\n    name: quay.io/a/b:7\n";
    let r = c
        .patch(
            &istag("ns", "app:applied"),
            "application/apply-patch+yaml",
            applied,
        )
        .await;
    assert_eq!(r.status, 422, "apply needs a field manager");
    let r = c
        .patch(
            &format!("{}?fieldManager=me", istag("ns", "app:applied")),
            "application/apply-patch+yaml",
            applied,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let again = applied.replace(":7", ":8");
    let r = c
        .patch(
            &format!("{}?fieldManager=me", istag("ns", "app:applied")),
            "application/apply-patch+yaml",
            &again,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tag"]["from"]["name"], "quay.io/a/b:8");

    // Watch is not served.
    let r = c
        .get(&format!("{V1}/namespaces/ns/imagestreamtags?watch=true"))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.message(),
        "watch is not supported on resources of kind \"imagestreamtags.image.openshift.io\""
    );
}

async fn image_tags(server: &Server) {
    let c = server.client();
    c.post(&streams("ns"), &json!({"metadata": {"name": "app"}, "spec": {"tags": [{"name": "v1", "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}]}})).await;
    map(
        &c,
        "ns",
        &mapping(
            "app",
            "v1",
            json!({"metadata": {"name": D1}, "dockerImageReference": format!("quay.io/a/b@{D1}")}),
        ),
    )
    .await;
    c.post(&streams("ns"), &json!({"metadata": {"name": "other"}, "spec": {"tags": [{"name": "spec", "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}]}})).await;

    // 29: views.
    let spec_only = c.get(&itag("ns", "other:spec")).await;
    assert_eq!(spec_only.status, 200);
    let v = spec_only.json();
    assert_eq!(v["kind"], "ImageTag");
    assert!(v["spec"].is_object());
    assert_eq!(v["status"], Value::Null);
    assert_eq!(v["image"], Value::Null);
    assert_eq!(
        c.get(&istag("ns", "other:spec")).await.status,
        404,
        "istag has no view of a tag without an image"
    );
    let full = c.get(&itag("ns", "app:v1")).await.json();
    assert_eq!(full["image"]["metadata"]["name"], D1);
    assert_eq!(full["status"]["items"][0]["image"], D1);
    let r = c.get(&itag("ns", "app:nothing")).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        "imagetags.image.openshift.io \"app:nothing\" not found"
    );
    let list = c.get(&format!("{V1}/namespaces/ns/imagetags")).await.json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["app:v1", "other:spec"]);
    assert!(list["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|i| i["image"].is_null()));

    // 30: create validation.
    let r = c
        .post(
            &format!("{V1}/namespaces/ns/imagetags"),
            &json!({"metadata": {"name": "app:x"}, "spec": null}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("spec: Required value: spec is a required field during creation"),
        "{}",
        r.message()
    );
    let r = c
        .post(
            &format!("{V1}/namespaces/ns/imagetags"),
            &json!({"metadata": {"name": "app:x"}, "spec": {"name": "y"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("spec.name: Invalid value: \"y\": must match image tag name"),
        "{}",
        r.message()
    );
    let r = c.post(&format!("{V1}/namespaces/ns/imagetags"), &json!({"metadata": {"name": "app:x"}, "spec": {"from": {"kind": "DockerImage", "name": "quay.io/a/b:9"}}})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c.post(
            &format!("{V1}/namespaces/ns/imagetags"),
            &json!({"metadata": {"name": "app:x"}, "spec": {}})
        )
        .await
        .message(),
        "imagetags.image.openshift.io \"app:x\" already exists"
    );

    // design.md: a PUT that changes spec works.
    let mut cur = c.get(&itag("ns", "app:v1")).await.json();
    cur["spec"]["from"]["name"] = json!("quay.io/a/b:2");
    let r = c.put(&itag("ns", "app:v1"), &cur).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["from"]["name"], "quay.io/a/b:2");
    let r = c
        .patch(
            &itag("ns", "app:v1"),
            "application/merge-patch+json",
            r#"{"spec":{"reference":true}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut meta_change = c.get(&itag("ns", "app:v1")).await.json();
    meta_change["metadata"]["labels"] = json!({"x": "y"});
    let r = c.put(&itag("ns", "app:v1"), &meta_change).await;
    assert_eq!(r.status, 422);
    assert!(r
        .message()
        .contains("may not update fields other than spec"));

    // 31: spec null removes the spec tag and keeps history.
    let history = items(&c.get(&stream("ns", "app")).await.json(), "v1").len();
    let mut cur = c.get(&itag("ns", "app:v1")).await.json();
    cur["spec"] = Value::Null;
    let r = c.put(&itag("ns", "app:v1"), &cur).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = c.get(&stream("ns", "app")).await.json();
    assert!(!s["spec"]["tags"]
        .as_array()
        .map(|t| t.iter().any(|x| x["name"] == "v1"))
        .unwrap_or(false));
    assert_eq!(items(&s, "v1").len(), history);

    // Tables: itag columns.
    let t = c
        .get_accept(
            &format!("{V1}/namespaces/ns/imagetags"),
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .await
        .json();
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, vec!["Name", "Spec", "Status", "History", "Updated"]);
    let row = t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == "app:v1")
        .expect("row");
    assert_eq!(row["cells"][1], "Push");
    // items[0] is the reference event of quay.io/a/b:2 (no image): the source is its pull spec.
    assert_eq!(row["cells"][2], "quay.io/a/b:2");
    assert_eq!(row["cells"][3], history);
}

async fn stream_images_layers_and_signatures(server: &Server) {
    let c = server.client();
    c.post(&streams("ns"), &json!({"metadata": {"name": "app", "annotations": {"note": "x"}}, "spec": {"tags": [{"name": "loc", "referencePolicy": {"type": "Local"}, "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}}]}})).await;
    let (digest, mut image) = image_with_layers("unused");
    image["dockerImageReference"] = json!(format!("quay.io/a/b@{digest}"));
    assert_eq!(
        map(&c, "ns", &mapping("app", "loc", image)).await.status,
        201
    );
    map(
        &c,
        "ns",
        &mapping(
            "app",
            "src",
            json!({"metadata": {"name": D2}, "dockerImageReference": format!("quay.io/a/b@{D2}")}),
        ),
    )
    .await;

    // 32: isimage by short id.
    let short = &D2[..19];
    let r = c
        .get(&format!("{V1}/namespaces/ns/imagestreamimages/app@{short}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let isi = r.json();
    assert_eq!(isi["metadata"]["name"], format!("app@{short}"));
    assert_eq!(isi["metadata"]["annotations"]["note"], "x");
    assert_eq!(isi["image"]["metadata"]["name"], D2);
    assert_eq!(
        isi["image"]["dockerImageReference"],
        format!("quay.io/a/b@{D2}")
    );
    let missing = format!("app@sha256:{}", "f".repeat(64));
    let r = c
        .get(&format!("{V1}/namespaces/ns/imagestreamimages/{missing}"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.message(),
        format!("imagestreamimage.image.openshift.io \"{missing}\" not found")
    );
    assert_eq!(
        c.get(&format!("{V1}/namespaces/ns/imagestreamimages/app"))
            .await
            .status,
        400
    );
    let r = c
        .get(&format!("{V1}/namespaces/ns/imagestreamimages/app@sha256:"))
        .await;
    assert_eq!(
        r.status,
        409,
        "design.md: an ambiguous prefix is a conflict: {}",
        r.text()
    );

    // 33: a cross-stream ImageStreamImage tag resolves at create.
    let r = c.post(&streams("ns"), &json!({"metadata": {"name": "dest"}, "spec": {"tags": [{"name": "t", "from": {"kind": "ImageStreamImage", "name": format!("app@{D2}")}}]}})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(items(&r.json(), "t")[0]["image"], D2);

    // 34: reference policy Local resolves through the integrated registry.
    let ist = c.get(&istag("ns", "app:loc")).await.json();
    assert_eq!(
        ist["image"]["dockerImageReference"],
        format!("reg:5000/ns/app@{digest}")
    );

    // 35: layers.
    let layers = c.get(&format!("{}/layers", stream("ns", "app"))).await;
    assert_eq!(layers.status, 200, "{}", layers.text());
    let l = layers.json();
    assert_eq!(l["kind"], "ImageStreamLayers");
    assert_eq!(
        l["images"][&digest]["layers"],
        json!(["sha256:4444444444444444444444444444444444444444444444444444444444444444"])
    );
    assert_eq!(
        l["blobs"]["sha256:4444444444444444444444444444444444444444444444444444444444444444"],
        json!({"size": 42, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"})
    );
    assert_eq!(
        l["blobs"][&digest],
        json!({"size": null, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"})
    );
    assert!(l["images"][&digest]["config"]
        .as_str()
        .is_some_and(|c| c.starts_with("sha256:")));
    c.delete(&format!("{IMAGES}/{D2}")).await;
    let l = c
        .get(&format!("{}/layers", stream("ns", "app")))
        .await
        .json();
    assert_eq!(
        l["images"][D2],
        json!({"imageMissing": true, "layers": null, "config": null})
    );
    let secrets = c
        .get(&format!("{}/secrets?limit=5", stream("ns", "anything")))
        .await
        .json();
    assert_eq!(secrets["kind"], "SecretList");

    // 37: signatures.
    let sigs = format!("{V1}/imagesignatures");
    let sig = json!({"metadata": {"name": format!("{digest}@abc")}, "type": "AtomicImageV1", "content": "c2lnbmVk", "imageIdentity": "dropped"});
    let r = c.post(&sigs, &sig).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let img = c.get(&format!("{IMAGES}/{digest}")).await.json();
    assert_eq!(
        img["signatures"][0]["metadata"]["name"],
        format!("{digest}@abc")
    );
    assert!(img["signatures"][0].get("conditions").is_none());
    assert!(img["signatures"][0].get("imageIdentity").is_none());
    let r = c.post(&sigs, &sig).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.message(),
        format!("imageSignatures.image.openshift.io \"{digest}@abc\" already exists")
    );
    let mut same_content = sig.clone();
    same_content["metadata"]["name"] = json!(format!("{digest}@other"));
    assert_eq!(c.post(&sigs, &same_content).await.status, 409);
    let r = c
        .post(
            &sigs,
            &json!({"metadata": {"name": "noat"}, "type": "AtomicImageV1", "content": "eA=="}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("name must be of format <imageName>@<signatureName>"),
        "{}",
        r.message()
    );
    let r = c.post(&sigs, &json!({"metadata": {"name": format!("{digest}@l"), "labels": {"a": "b"}}, "type": "AtomicImageV1", "content": "eA=="})).await;
    assert_eq!(r.status, 422);
    assert_eq!(c.delete(&format!("{sigs}/{digest}@abc")).await.status, 200);
    assert_eq!(c.delete(&format!("{sigs}/{digest}@abc")).await.status, 404);
    assert_eq!(c.get(&sigs).await.status, 405);
    assert_eq!(
        c.get(&format!("{V1}/namespaces/ns/imagestreammappings/x"))
            .await
            .status,
        404
    );
}

/// 20 clients tag different tags of one stream at once, through istag and itag: every tag is
/// there at the end and nobody saw anything but success.
async fn concurrent_tagging(server: &Server) {
    let c = server.client();
    c.post(&streams("ns"), &json!({"metadata": {"name": "busy"}}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("busy:t{i}");
            let r = if i % 2 == 0 {
                c.post(&format!("{V1}/namespaces/ns/imagestreamtags"), &json!({"metadata": {"name": name}, "tag": {"from": {"kind": "DockerImage", "name": format!("quay.io/a/b:{i}")}}})).await
            } else {
                c.post(&format!("{V1}/namespaces/ns/imagetags"), &json!({"metadata": {"name": name}, "spec": {"from": {"kind": "DockerImage", "name": format!("quay.io/a/b:{i}")}}})).await
            };
            (i, r.status, r.text())
        }));
    }
    for t in tasks {
        let (i, status, body) = t.await.expect("task");
        assert_eq!(status, 201, "tagger {i}: {body}");
    }
    let s = c.get(&stream("ns", "busy")).await.json();
    let mut names: Vec<String> = s["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    want.sort();
    assert_eq!(names, want);
}

/// `kubectl annotate istag` is a merge patch of metadata.annotations: on a tag that already
/// has annotations it must replace the spec tag's annotations (spec §9.5 step 7 copies them
/// before validating), not fail the "annotations must be equal" rule.
async fn annotating_an_annotated_tag(server: &Server) {
    let c = server.client();
    c.post(
        &streams("ns"),
        &json!({"metadata": {"name": "ann"}, "spec": {"tags": [{"name": "v1",
            "annotations": {"color": "blue"},
            "from": {"kind": "DockerImage", "name": "quay.io/x/y:1"}}]}}),
    )
    .await;
    let r = c
        .patch(
            &istag("ns", "ann:v1"),
            "application/merge-patch+json",
            r#"{"metadata":{"annotations":{"size":"large"}}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s = c.get(&stream("ns", "ann")).await.json();
    assert_eq!(
        s["spec"]["tags"][0]["annotations"],
        json!({"color": "blue", "size": "large"}),
        "{s}"
    );
}

both_backends!(
    ["--internal-registry-hostname=reg:5000"],
    mappings,
    stream_tags,
    image_tags,
    stream_images_layers_and_signatures,
    concurrent_tagging,
    annotating_an_annotated_tag
);
