//! Creates, updates, patches, applies and deletes over HTTP (spec §2, §3, §6), on both backends.

use blackbox::api::{stream, streams, IMAGES};
use blackbox::both_backends;
use blackbox::Server;
use serde_json::{json, Value};

fn is(name: &str) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}})
}

async fn create_get_and_errors(server: &Server) {
    let c = server.client();
    let r = c.post(&streams("ns1"), &is("app")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "ns1");
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["uid"].as_str().expect("uid").len(), 36);
    assert!(meta["creationTimestamp"]
        .as_str()
        .expect("ts")
        .ends_with('Z'));
    let rv = meta["resourceVersion"].as_str().expect("rv").to_string();
    assert!(rv.parse::<u64>().is_ok());
    assert!(
        meta.get("managedFields").is_none(),
        "a name-only create records no managedFields"
    );
    assert_eq!(created["status"], json!({"dockerImageRepository": ""}));

    let got = c.get(&stream("ns1", "app")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["metadata"]["resourceVersion"], rv.as_str());

    let dup = c.post(&streams("ns1"), &is("app")).await;
    assert_eq!(dup.status, 409);
    let s = dup.json();
    assert_eq!(s["reason"], "AlreadyExists");
    assert_eq!(
        s["message"],
        "imagestreams.image.openshift.io \"app\" already exists"
    );
    assert_eq!(
        s["details"],
        json!({"name": "app", "group": "image.openshift.io", "kind": "imagestreams"})
    );

    let mut with_rv = is("rv");
    with_rv["metadata"]["resourceVersion"] = json!("5");
    let r = c.post(&streams("ns1"), &with_rv).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.message(),
        "resourceVersion should not be set on objects to be created"
    );
    assert!(r.json().get("reason").is_none());

    let r = c.post(&streams("ns1"), &is("Bad_Name")).await;
    assert_eq!(r.status, 422);
    let s = r.json();
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["kind"], "ImageStream");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(s["message"], "ImageStream.image.openshift.io \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": must match \"[a-z0-9]+(?:[._-][a-z0-9]+)*\"");

    let missing = c.get(&stream("ns1", "nope")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["message"],
        "imagestreams.image.openshift.io \"nope\" not found"
    );
    assert_eq!(missing.json()["details"]["kind"], "imagestreams");

    let mut other_ns = is("x");
    other_ns["metadata"]["namespace"] = json!("elsewhere");
    let r = c.post(&streams("ns1"), &other_ns).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    let wrong_version =
        json!({"apiVersion": "v1", "kind": "ImageStream", "metadata": {"name": "v"}});
    let r = c.post(&streams("ns1"), &wrong_version).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "the API version in the data (v1) does not match the expected API version (image.openshift.io/v1)");

    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let r = c
        .request(
            reqwest::Method::POST,
            &streams("ns1"),
            &[("content-type", "application/json")],
            Some(big),
        )
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.message(), "Request entity too large: limit is 3145728");

    let r = c
        .request(
            reqwest::Method::POST,
            &streams("ns1"),
            &[("content-type", "text/plain")],
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 415);
}

async fn generate_name_and_dry_run(server: &Server) {
    let c = server.client();
    let body = json!({"metadata": {"generateName": "gen-"}});
    let r = c.post(&streams("ns1"), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let name = r.json()["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    assert_eq!(name.len(), 9);
    assert!(name.starts_with("gen-"));
    assert!(
        name[4..]
            .chars()
            .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch)),
        "{name}"
    );

    let r = c
        .post(&format!("{}?dryRun=All", streams("ns1")), &is("dry"))
        .await;
    assert_eq!(r.status, 201);
    let obj = r.json();
    assert!(obj["metadata"].get("resourceVersion").is_none());
    assert!(obj["metadata"]["uid"].is_string());
    assert_eq!(
        c.get(&stream("ns1", "dry")).await.status,
        404,
        "a dry run persisted"
    );

    let r = c
        .post(&format!("{}?dryRun=Bogus", streams("ns1")), &is("dry"))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Bogus\"]: supported values: \"All\"");
}

async fn field_validation(server: &Server) {
    let c = server.client();
    let mut body = is("fv");
    body["spec"] = json!({"foo": 1});
    let r = c.post(&streams("ns1"), &body).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.headers_all("warning"),
        vec!["299 - \"unknown field \\\"spec.foo\\\"\"".to_string()]
    );
    body["metadata"]["name"] = json!("fv2");
    let r = c
        .post(&format!("{}?fieldValidation=Strict", streams("ns1")), &body)
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "ImageStream in version \"v1\" cannot be handled as a ImageStream: strict decoding error: unknown field \"spec.foo\"");
    let r = c
        .post(&format!("{}?fieldValidation=Ignore", streams("ns1")), &body)
        .await;
    assert_eq!(r.status, 201);
    assert!(r.headers_all("warning").is_empty());
    let r = c
        .patch(
            &format!("{}?fieldValidation=Strict", stream("ns1", "fv")),
            "application/merge-patch+json",
            r#"{"spec":{"bar":1}}"#,
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "patch");
    assert!(
        r.message()
            .contains("strict decoding error: unknown field \"spec.bar\""),
        "{}",
        r.message()
    );
}

async fn duplicate_fields(server: &Server) {
    let c = server.client();
    let body = br#"{"metadata":{"name":"dup","labels":{"a":"1","a":"2"}}}"#.to_vec();
    let r = c
        .request(
            reqwest::Method::POST,
            &streams("ns1"),
            &[("content-type", "application/json")],
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.headers_all("warning"),
        vec!["299 - \"duplicate field \\\"metadata.labels.a\\\"\"".to_string()]
    );
    let r = c
        .request(
            reqwest::Method::POST,
            &format!("{}?fieldValidation=Strict", streams("ns2")),
            &[("content-type", "application/json")],
            Some(body),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "ImageStream in version \"v1\" cannot be handled as a ImageStream: strict decoding error: duplicate field \"metadata.labels.a\"");
}

async fn updates_and_conflicts(server: &Server) {
    let c = server.client();
    let mut obj = c.post(&streams("ns1"), &is("u")).await.json();
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();

    let mut no_rv = obj.clone();
    no_rv["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let r = c.put(&stream("ns1", "u"), &no_rv).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "imagestreams.image.openshift.io \"u\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update");

    // Identical PUT: no write, same resourceVersion.
    let same = c.put(&stream("ns1", "u"), &obj).await;
    assert_eq!(same.status, 200);
    assert_eq!(same.json()["metadata"]["resourceVersion"], rv.as_str());

    obj["spec"]["lookupPolicy"] = json!({"local": true});
    obj["status"] = json!({"dockerImageRepository": "ignored", "tags": [{"tag": "x", "items": [{"dockerImageReference": "a/b", "image": "i", "generation": 1, "created": "2024-01-01T00:00:00Z"}]}]});
    let r = c.put(&stream("ns1", "u"), &obj).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let updated = r.json();
    assert_eq!(
        updated["metadata"]["generation"], 2,
        "a spec change bumps the generation"
    );
    assert_eq!(
        updated["status"],
        json!({"dockerImageRepository": ""}),
        "the main endpoint ignores status"
    );
    let rv2 = updated["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    assert_ne!(rv2, rv);

    // A stale resourceVersion conflicts.
    let stale = c.put(&stream("ns1", "u"), &obj).await;
    assert_eq!(stale.status, 409);
    assert_eq!(stale.message(), "Operation cannot be fulfilled on imagestreams.image.openshift.io \"u\": the object has been modified; please apply your changes to the latest version and try again");

    // The status endpoint writes status and ignores spec.
    let mut st = updated.clone();
    st["spec"]["lookupPolicy"] = json!({"local": false});
    st["status"]["tags"] = json!([{"tag": "x", "items": [{"dockerImageReference": "quay.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "generation": 0, "created": "2024-01-01T00:00:00Z"}]}]);
    let r = c.put(&format!("{}/status", stream("ns1", "u")), &st).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(
        after["spec"]["lookupPolicy"]["local"], true,
        "status writes keep spec"
    );
    assert_eq!(after["status"]["tags"][0]["tag"], "x");
    assert_eq!(
        after["status"]["tags"][0]["items"][0]["generation"], 2,
        "observed generation is filled in"
    );
    assert_eq!(after["metadata"]["generation"], 2);

    let mut renamed = after.clone();
    renamed["metadata"]["name"] = json!("other");
    let r = c.put(&stream("ns1", "u"), &renamed).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.message(),
        "the name of the object (other) does not match the name on the URL (u)"
    );
    // The identity is checked before the resourceVersion, however stale that is.
    renamed["metadata"]["resourceVersion"] = json!("1");
    let r = c.put(&stream("ns1", "u"), &renamed).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let mut stale = after.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["metadata"]["labels"] = json!({"stale": "yes"});
    let r = c.put(&stream("ns1", "u"), &stale).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["reason"], "Conflict");
    let now = c.get(&stream("ns1", "u")).await.json();
    assert_eq!(
        now["metadata"]["resourceVersion"],
        after["metadata"]["resourceVersion"]
    );
    assert!(now["metadata"].get("labels").is_none(), "{now}");
}

async fn patches(server: &Server) {
    let c = server.client();
    c.post(&streams("ns1"), &is("p")).await;
    let path = stream("ns1", "p");
    let r = c
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"a":"1"}}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["a"], "1");
    let r = c
        .patch(&path, "application/strategic-merge-patch+json", r#"{"spec":{"tags":[{"name":"t1","from":{"kind":"DockerImage","name":"quay.io/a/b:1"}}]}}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c
        .patch(&path, "application/strategic-merge-patch+json", r#"{"spec":{"tags":[{"name":"t2","from":{"kind":"DockerImage","name":"quay.io/a/b:2"}}]}}"#)
        .await;
    let tags: Vec<String> = r.json()["spec"]["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        tags,
        vec!["t1", "t2"],
        "strategic merge keeps existing tags"
    );
    let r = c
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/metadata/labels/a","value":"2"}]"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["labels"]["a"], "2");
    let r = c
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/metadata/labels/a","value":"9"}]"#,
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["reason"], "Invalid");
    let r = c.patch(&path, "application/json", "{}").await;
    assert_eq!(r.status, 415);
    assert_eq!(r.message(), "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml");
    let r = c
        .patch(&stream("ns1", "nope"), "application/merge-patch+json", "{}")
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .patch(
            &format!("{path}?force=true"),
            "application/merge-patch+json",
            "{}",
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");
    let r = c
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"}}"#,
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a stale resourceVersion in a patch is a precondition"
    );
}

async fn server_side_apply(server: &Server) {
    let c = server.client();
    let path = stream("ns1", "ssa");
    let body = r#"{"apiVersion":"image.openshift.io/v1","kind":"ImageStream","metadata":{"name":"ssa","labels":{"owner":"one"}}}"#;
    let r = c.patch(&path, "application/apply-patch+yaml", body).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let r = c
        .patch(
            &format!("{path}?fieldManager=one"),
            "application/apply-patch+yaml",
            body,
        )
        .await;
    assert_eq!(r.status, 201, "apply creates: {}", r.text());
    let mf = &r.json()["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "one");
    assert_eq!(mf["operation"], "Apply");
    let yaml = "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ssa\n  labels:\n    owner: two\n";
    let r = c
        .patch(
            &format!("{path}?fieldManager=two"),
            "application/apply-patch+yaml",
            yaml,
        )
        .await;
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        "Apply failed with 1 conflict: conflict with \"one\": .metadata.labels.owner"
    );
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(s["details"]["causes"][0]["field"], ".metadata.labels.owner");
    let r = c
        .patch(
            &format!("{path}?fieldManager=two&force=true"),
            "application/apply-patch+yaml",
            yaml,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let obj = r.json();
    assert_eq!(obj["metadata"]["labels"]["owner"], "two");
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .expect("mf")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(
        managers,
        vec!["two"],
        "force moved the only field of \"one\""
    );
    // Dropping a field from the applied config removes it.
    let r = c
        .patch(
            &format!("{path}?fieldManager=two"),
            "application/apply-patch+yaml",
            "apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: ssa\n",
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]
        .get("labels")
        .is_none_or(|l| l.get("owner").is_none()));
}

/// The fieldsV1 of the entry of `manager` in `obj`.
fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .unwrap_or_else(|| panic!("no entry of {manager}: {obj}"))
}

/// Tag generations are the strategy's, set after the field manager ran (kube records
/// managedFields before `BeforeCreate` and `BeforeUpdate`): neither the creator nor a writer
/// whose change bumped a tag's generation owns it.
async fn derived_fields_have_no_manager(server: &Server) {
    let c = server.client();
    let path = stream("ns1", "derived");
    let mut body = is("derived");
    body["spec"] = json!({"tags": [{"name": "a", "from": {"kind": "DockerImage", "name": "example.com/a:1"}}]});
    let r = c
        .post(&format!("{}?fieldManager=maker", streams("ns1")), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(created["spec"]["tags"][0]["generation"], 1);
    let tag = &fields_of(&created, "maker")["f:spec"]["f:tags"]["k:{\"name\":\"a\"}"];
    assert!(tag.get("f:from").is_some(), "{created}");
    assert!(tag.get("f:generation").is_none(), "{created}");

    let patch = r#"{"spec":{"tags":[{"name":"a","from":{"kind":"DockerImage","name":"example.com/a:2"}}]}}"#;
    let r = c
        .patch(
            &format!("{path}?fieldManager=mover"),
            "application/strategic-merge-patch+json",
            patch,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let patched = r.json();
    assert_eq!(patched["spec"]["tags"][0]["generation"], 2, "{patched}");
    let tag = &fields_of(&patched, "mover")["f:spec"]["f:tags"]["k:{\"name\":\"a\"}"];
    assert_eq!(tag["f:from"], json!({"f:name": {}}), "{patched}");
    assert!(tag.get("f:generation").is_none(), "{patched}");
}

async fn deletes(server: &Server) {
    let c = server.client();
    let uid = c.post(&streams("ns1"), &is("d")).await.json()["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let r = c
        .delete_with(
            &stream("ns1", "d"),
            &json!({"preconditions": {"uid": "wrong"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.message(), format!("Operation cannot be fulfilled on ImageStream.image.openshift.io \"d\": the UID in the precondition (wrong) does not match the UID in record ({uid}). The object might have been deleted and then recreated"));
    let r = c
        .delete_with(&stream("ns1", "d"), &json!({"propagationPolicy": "Bogus"}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Bogus\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"");
    let r = c.delete(&stream("ns1", "d")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": "d", "group": "image.openshift.io", "kind": "imagestreams", "uid": uid}})
    );
    assert_eq!(c.delete(&stream("ns1", "d")).await.status, 404);

    // Finalizers: delete marks, removing the last finalizer deletes.
    let mut body = is("fin");
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    c.post(&streams("ns1"), &body).await;
    let r = c.delete(&stream("ns1", "fin")).await;
    assert_eq!(r.status, 200);
    let marked = r.json();
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(c.get(&stream("ns1", "fin")).await.status, 200);
    let r = c
        .patch(
            &stream("ns1", "fin"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":["example.com/more"]}}"#,
        )
        .await;
    assert_eq!(
        r.status,
        422,
        "no new finalizers while deleting: {}",
        r.text()
    );
    let r = c
        .patch(
            &stream("ns1", "fin"),
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get(&stream("ns1", "fin")).await.status, 404);

    // Foreground deletion adds its finalizer.
    c.post(&streams("ns1"), &is("fg")).await;
    let r = c
        .delete_with(
            &stream("ns1", "fg"),
            &json!({"propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(
        r.json()["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    // deletecollection with a label selector.
    for (n, l) in [("c1", "x"), ("c2", "x"), ("c3", "y")] {
        let mut b = is(n);
        b["metadata"]["labels"] = json!({"set": l});
        c.post(&streams("ns2"), &b).await;
    }
    let r = c
        .delete(&format!("{}?labelSelector=set%3Dx", streams("ns2")))
        .await;
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list["kind"], "ImageStreamList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["c1", "c2"]);
    let left = c.get(&streams("ns2")).await.json();
    assert_eq!(left["items"].as_array().expect("items").len(), 1);

    // dry-run delete keeps the object.
    assert_eq!(
        c.delete(&format!("{}?dryRun=All", stream("ns2", "c3")))
            .await
            .status,
        200
    );
    assert_eq!(c.get(&stream("ns2", "c3")).await.status, 200);
}

async fn images(server: &Server) {
    let c = server.client();
    let config = r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]}}"#;
    let config_digest = digest(config.as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 10, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"}]}).to_string();
    let name = digest(manifest.as_bytes());
    let body = json!({"apiVersion": "image.openshift.io/v1", "kind": "Image", "metadata": {"name": name},
        "dockerImageReference": format!("quay.io/a/b@{name}"), "dockerImageManifest": manifest, "dockerImageConfig": config});
    let r = c.post(IMAGES, &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let img = r.json();
    assert_eq!(img["dockerImageMetadata"]["kind"], "DockerImage");
    assert_eq!(img["dockerImageMetadata"]["Architecture"], "amd64");
    assert_eq!(img["dockerImageMetadata"]["Size"], config.len() as i64 + 10);
    assert_eq!(img["dockerImageLayers"][0]["size"], 10);
    assert_eq!(img["dockerImageMetadataVersion"], "1.0");
    assert_eq!(
        img["metadata"]["annotations"]["image.openshift.io/dockerLayersOrder"],
        "ascending"
    );

    // Layers are immutable; the reference is not.
    let mut changed = img.clone();
    changed["dockerImageLayers"] = json!([]);
    changed["dockerImageReference"] = json!(
        "quay.io/c/d@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
    let r = c.put(&format!("{IMAGES}/{name}"), &changed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json();
    assert_eq!(after["dockerImageLayers"], img["dockerImageLayers"]);
    assert!(after["dockerImageReference"]
        .as_str()
        .expect("ref")
        .starts_with("quay.io/c/d@"));

    let r = c
        .post(IMAGES, &json!({"metadata": {"name": "noref"}}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.message(),
        "Image.image.openshift.io \"noref\" is invalid: dockerImageReference: Required value"
    );
    let r = c
        .post(
            IMAGES,
            &json!({"metadata": {"name": "badref"}, "dockerImageReference": "Not A Ref"}),
        )
        .await;
    assert_eq!(r.message(), "Image.image.openshift.io \"badref\" is invalid: dockerImageReference: Invalid value: \"Not A Ref\": invalid reference format");

    // Foreground deletes of images never add finalizers (GC unsupported upstream).
    let r = c
        .delete_with(
            &format!("{IMAGES}/{name}"),
            &json!({"propagationPolicy": "Foreground"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "Status");
    assert_eq!(c.get(&format!("{IMAGES}/{name}")).await.status, 404);
}

fn digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().expect("stdin").write_all(bytes)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    let mut s = String::new();
    let _ = write!(s, "sha256:{hex}");
    s
}

/// 20 clients patch one stream at once without a resourceVersion, each adding its own
/// annotation with a different patch type: kube re-applies such a patch to the fresh object
/// after a lost write, so every one succeeds and every annotation is there.
async fn concurrent_unconditional_patches(server: &Server) {
    let c = server.client();
    let path = stream("ns", "crowd");
    // JSON patch `add` needs the annotations map to exist.
    c.post(
        &streams("ns"),
        &json!({"metadata": {"name": "crowd", "annotations": {"seed": "1"}}}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (c, path) = (c.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let key = format!("p{i}");
            let (content_type, body) = match i % 3 {
                0 => (
                    "application/merge-patch+json",
                    json!({"metadata": {"annotations": {key: "x"}}}).to_string(),
                ),
                1 => (
                    "application/strategic-merge-patch+json",
                    json!({"metadata": {"annotations": {key: "x"}}}).to_string(),
                ),
                _ => (
                    "application/json-patch+json",
                    json!([{"op": "add", "path": format!("/metadata/annotations/{key}"), "value": "x"}])
                        .to_string(),
                ),
            };
            let r = c.patch(&path, content_type, &body).await;
            (i, r.status, r.text())
        }));
    }
    for t in tasks {
        let (i, status, body) = t.await.expect("task");
        assert_eq!(status, 200, "patch {i}: {body}");
    }
    let s = c.get(&path).await.json();
    let annotations = s["metadata"]["annotations"]
        .as_object()
        .expect("annotations");
    for i in 0..20 {
        assert_eq!(
            annotations.get(&format!("p{i}")),
            Some(&json!("x")),
            "p{i}: {s}"
        );
    }
}

both_backends!(
    [],
    create_get_and_errors,
    generate_name_and_dry_run,
    field_validation,
    duplicate_fields,
    updates_and_conflicts,
    patches,
    server_side_apply,
    derived_fields_have_no_manager,
    deletes,
    images,
    concurrent_unconditional_patches,
);
