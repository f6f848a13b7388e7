//! ImageStream behavior (openshift-image-behavior.md §2, §5, §6): status reset, generations,
//! tag resolution within and across streams, tracking tags, registry hostnames, validation.

use std::time::Duration;

use blackbox::api::{stream, streams};
use blackbox::both_backends;
use blackbox::Server;
use serde_json::{json, Value};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn tag(name: &str, kind: &str, from: &str) -> Value {
    json!({"name": name, "from": {"kind": kind, "name": from}})
}

fn items(obj: &Value, tag: &str) -> Vec<Value> {
    obj["status"]["tags"]
        .as_array()
        .and_then(|tags| tags.iter().find(|t| t["tag"] == tag))
        .and_then(|t| t["items"].as_array().cloned())
        .unwrap_or_default()
}

async fn create_resets_status_and_sets_generations(server: &Server) {
    let c = server.client();
    let body = json!({"metadata": {"name": "s"}, "spec": {"tags": [
        {"name": "b", "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}, "generation": 7},
        {"name": "a", "from": {"kind": "DockerImage", "name": "quay.io/a/b:0"}, "reference": true}
    ]}, "status": {"dockerImageRepository": "bogus", "tags": [{"tag": "x", "items": []}]}});
    let r = c.post(&streams("ns"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.json();
    assert_eq!(s["metadata"]["generation"], 1);
    let names: Vec<&str> = s["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"], "spec tags come back sorted");
    for t in s["spec"]["tags"].as_array().expect("tags") {
        assert_eq!(t["generation"], 1);
        assert_eq!(t["referencePolicy"]["type"], "Source");
        assert_eq!(t["importPolicy"]["importMode"], "Legacy");
    }
    assert_eq!(
        s["status"]["dockerImageRepository"],
        "registry.test:5000/ns/s"
    );
    assert_eq!(
        s["status"]["publicDockerImageRepository"],
        "public.test/ns/s"
    );
    // Only the reference tag has history: DockerImage tags wait for the importer.
    assert_eq!(
        s["status"]["tags"].as_array().expect("status tags").len(),
        1
    );
    assert_eq!(items(&s, "a")[0]["dockerImageReference"], "quay.io/a/b:0");
    assert_eq!(items(&s, "a")[0]["image"], "");

    // Spec changes bump the stream generation and the changed tag's; generation 0 re-resolves.
    let mut s2 = s.clone();
    s2["spec"]["tags"][1]["from"]["name"] = json!("quay.io/a/b:2");
    let u = c.put(&stream("ns", "s"), &s2).await.json();
    assert_eq!(u["metadata"]["generation"], 2);
    assert_eq!(
        u["spec"]["tags"][0]["generation"], 1,
        "unchanged tag keeps its generation"
    );
    assert_eq!(u["spec"]["tags"][1]["generation"], 2);
    let mut s3 = u.clone();
    s3["spec"]["tags"][0]["generation"] = json!(0);
    let u = c.put(&stream("ns", "s"), &s3).await.json();
    assert_eq!(u["metadata"]["generation"], 3);
    assert_eq!(u["spec"]["tags"][0]["generation"], 3);
    assert_eq!(
        items(&u, "a")[0]["generation"],
        3,
        "re-resolving a reference tag updates its event"
    );
    // Field selectors on the computed repository.
    let list = c
        .get(&format!(
            "{}?fieldSelector=status.dockerImageRepository%3Dregistry.test:5000/ns/s",
            streams("ns")
        ))
        .await
        .json();
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
}

async fn same_stream_and_cross_stream_tags(server: &Server) {
    let c = server.client();
    // A source stream with history, written through the status endpoint.
    let src = c
        .post(&streams("other"), &json!({"metadata": {"name": "src"}}))
        .await
        .json();
    let mut st = src.clone();
    st["status"]["tags"] = json!([{"tag": "v1", "items": [
        {"created": "2024-01-01T00:00:00Z", "dockerImageReference": format!("quay.io/o/src@{D2}"), "image": D2, "generation": 1},
        {"created": "2023-01-01T00:00:00Z", "dockerImageReference": format!("quay.io/o/src@{D1}"), "image": D1, "generation": 1}
    ]}]);
    let r = c
        .put(&format!("{}/status", stream("other", "src")), &st)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let body = json!({"metadata": {"name": "app"}, "spec": {"tags": [
        {"name": "cur", "from": {"kind": "ImageStreamTag", "namespace": "other", "name": "src:v1"}},
        {"name": "pinned", "from": {"kind": "ImageStreamImage", "namespace": "other", "name": "src@1111"}},
        {"name": "follow", "from": {"kind": "ImageStreamTag", "name": "cur"}}
    ]}});
    let r = c.post(&streams("ns"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let app = r.json();
    assert_eq!(
        items(&app, "cur")[0]["image"],
        D2,
        "cross-stream tag copies the current image"
    );
    assert_eq!(
        items(&app, "pinned")[0]["image"],
        D1,
        "an image id prefix resolves across history"
    );
    assert_eq!(
        items(&app, "follow")[0]["image"],
        D2,
        "a tracking tag follows its tag"
    );

    let missing = json!({"metadata": {"name": "bad"}, "spec": {"tags": [
        {"name": "x", "from": {"kind": "ImageStreamTag", "namespace": "other", "name": "nothere:v1"}}
    ]}});
    let r = c.post(&streams("ns"), &missing).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "ImageStream.image.openshift.io \"bad\" is invalid: spec.tags[x].from.name: Not found: \"nothere:v1\"");
    let ambiguous = json!({"metadata": {"name": "amb"}, "spec": {"tags": [
        {"name": "x", "from": {"kind": "ImageStreamImage", "namespace": "other", "name": "src@sha256:"}}
    ]}});
    let r = c.post(&streams("ns"), &ambiguous).await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("multiple images match the prefix \"sha256:\""),
        "{}",
        r.message()
    );
}

async fn validation_messages(server: &Server) {
    let c = server.client();
    let cases = [
        (tag("t", "Bogus", "x"), "spec.tags[t].from.kind: Required value: valid values are 'DockerImage', 'ImageStreamImage', 'ImageStreamTag'"),
        (tag("t", "DockerImage", "Bad Ref"), "spec.tags[t].from.name: Invalid value: \"Bad Ref\": invalid reference format"),
        (json!({"name": "t", "from": {"kind": "ImageStreamTag", "name": "x"}, "importPolicy": {"scheduled": true}}), "spec.tags[t].importPolicy.scheduled: Invalid value: true: only tags pointing to Docker repositories may be scheduled for background import"),
        (json!({"name": "t", "referencePolicy": {"type": "Remote"}}), "spec.tags[t].referencePolicy.type: Invalid value: \"Remote\": valid values are \"Source\", \"Local\""),
        (json!({"name": "t", "importPolicy": {"importMode": "All"}}), "spec.tags[t].importPolicy.importMode: Invalid value: \"All\": invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'"),
    ];
    for (t, want) in cases {
        let r = c
            .post(
                &streams("ns"),
                &json!({"metadata": {"name": "v"}, "spec": {"tags": [t]}}),
            )
            .await;
        assert_eq!(r.status, 422, "{want}");
        assert_eq!(
            r.message(),
            format!("ImageStream.image.openshift.io \"v\" is invalid: {want}")
        );
        assert_eq!(
            r.json()["details"]["causes"]
                .as_array()
                .expect("causes")
                .len(),
            1
        );
    }
    let r = c.post(&streams("ns"), &json!({"metadata": {"name": "v"}, "spec": {"dockerImageRepository": "quay.io/a/b:tag"}})).await;
    assert_eq!(r.message(), "ImageStream.image.openshift.io \"v\" is invalid: spec.dockerImageRepository: Invalid value: \"quay.io/a/b:tag\": the repository name may not contain a tag");
    // A generateName ending in `-` is accepted (an upstream quirk we fix).
    let r = c
        .post(
            &streams("ns"),
            &json!({"metadata": {"generateName": "web-"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let long = "a".repeat(253);
    let r = c
        .post(&streams("ns"), &json!({"metadata": {"name": long}}))
        .await;
    assert_eq!(r.status, 422);
    assert!(r
        .message()
        .contains("'namespace/name' cannot be longer than 255 characters"));
}

async fn local_reference_policy_and_status_writes(server: &Server) {
    let c = server.client();
    let body = json!({"metadata": {"name": "loc"}, "spec": {"tags": [
        {"name": "t", "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}, "referencePolicy": {"type": "Local"}}
    ]}});
    let s = c.post(&streams("ns"), &body).await.json();
    let mut st = s.clone();
    st["status"]["tags"] = json!([{"tag": "t", "items": [{"created": "2024-01-01T00:00:00Z", "dockerImageReference": format!("quay.io/a/b@{D1}"), "image": D1, "generation": 1}]}]);
    st["metadata"]["labels"] = json!({"sneaky": "yes"});
    let r = c.put(&format!("{}/status", stream("ns", "loc")), &st).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert!(
        after["metadata"].get("labels").is_none(),
        "the status endpoint changes status only"
    );
    let bad = {
        let mut b = after.clone();
        b["status"]["tags"][0]["items"][0]["dockerImageReference"] = json!("Bad Ref");
        b
    };
    let r = c
        .put(&format!("{}/status", stream("ns", "loc")), &bad)
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "status.tags[t].items[0].dockerImageReference"
    );
    let _ = Duration::ZERO;
}

both_backends!(
    [
        "--internal-registry-hostname=registry.test:5000",
        "--external-registry-hostname=public.test"
    ],
    create_resets_status_and_sets_generations,
    same_stream_and_cross_stream_tags,
    validation_messages,
    local_reference_policy_and_status_writes,
);

async fn allowed_registries(server: &Server) {
    let c = server.client();
    let ok = json!({"metadata": {"name": "ok"}, "spec": {"tags": [tag("t", "DockerImage", "quay.io/a/b:1")]}});
    assert_eq!(c.post(&streams("ns"), &ok).await.status, 201);
    let denied = json!({"metadata": {"name": "no"}, "spec": {"tags": [tag("t", "DockerImage", "docker.io/library/nginx:1")]}});
    let r = c.post(&streams("ns"), &denied).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.message(),
        "ImageStream.image.openshift.io \"no\" is invalid: spec.tags[t].from.name: Forbidden: registry \"docker.io:443\" not allowed by whitelist: \"quay.io:443\", \"*.corp.example:5000\""
    );
    let wildcard = json!({"metadata": {"name": "wild"}, "spec": {"tags": [tag("t", "DockerImage", "reg.corp.example:5000/a/b:1")]}});
    assert_eq!(c.post(&streams("ns"), &wildcard).await.status, 201);
    // The integrated registry is always allowed.
    let internal = json!({"metadata": {"name": "int"}, "spec": {"dockerImageRepository": "registry.test:5000/ns/x"}});
    assert_eq!(c.post(&streams("ns"), &internal).await.status, 201);
    // A reference the stream already had stays allowed on update.
    let mut s = c.get(&stream("ns", "ok")).await.json();
    s["metadata"]["labels"] = json!({"touched": "yes"});
    assert_eq!(c.put(&stream("ns", "ok"), &s).await.status, 200);
}

both_backends!(
    [
        "--internal-registry-hostname=registry.test:5000",
        "--allowed-registries-for-import=quay.io,*.corp.example:5000"
    ],
    allowed_registries
);

async fn stream_limits(server: &Server) {
    let c = server.client();
    let two = json!({"metadata": {"name": "lim"}, "spec": {"tags": [
        tag("a", "DockerImage", "quay.io/a/b:1"), tag("b", "DockerImage", "quay.io/a/b:2")
    ]}});
    assert_eq!(c.post(&streams("ns"), &two).await.status, 201);
    let three = json!({"metadata": {"name": "over"}, "spec": {"tags": [
        tag("a", "DockerImage", "quay.io/a/b:1"), tag("b", "DockerImage", "quay.io/a/b:2"), tag("c", "DockerImage", "quay.io/a/b:3")
    ]}});
    let r = c.post(&streams("ns"), &three).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.message(),
        "ImageStream.image.openshift.io \"over\" is invalid: imageStream: Forbidden: requested usage of openshift.io/image-tags exceeds the maximum limit per openshift.io/ImageStream (3 > 2)"
    );
    // Two tags naming the same image count once.
    let same = json!({"metadata": {"name": "same"}, "spec": {"tags": [
        tag("a", "DockerImage", "nginx"), tag("b", "DockerImage", "docker.io/library/nginx:latest"), tag("c", "DockerImage", "quay.io/x/y:1")
    ]}});
    assert_eq!(c.post(&streams("ns"), &same).await.status, 201);
}

both_backends!(["--max-image-tags-per-stream=2"], stream_limits);
