//! Lists, selectors, pagination, tables, metadata-only responses and watches (spec §4, §5, §7),
//! on both backends.

use std::time::Duration;

use blackbox::api::{stream, streams, Client};
use blackbox::both_backends;
use blackbox::Server;
use serde_json::{json, Value};

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
// The metadata client's Accept without its leading protobuf clause (api_protobuf.rs covers that).
const METADATA_ACCEPT: &str =
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
const METADATA_LIST_ACCEPT: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const WAIT: Duration = Duration::from_secs(5);

async fn make(c: &Client, ns: &str, name: &str, labels: Value) -> Value {
    let r = c
        .post(
            &streams(ns),
            &json!({"metadata": {"name": name, "labels": labels}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn pagination(server: &Server) {
    let c = server.client();
    for n in ["a", "b", "c"] {
        make(&c, "ns1", n, json!({})).await;
    }
    let first = c.get(&format!("{}?limit=1", streams("ns1"))).await.json();
    assert_eq!(first["kind"], "ImageStreamList");
    assert_eq!(names(&first), vec!["a"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 2);
    let rv = first["metadata"]["resourceVersion"].clone();
    // A write between pages does not show up in the later pages.
    make(&c, "ns1", "b2", json!({})).await;
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let second = c
        .get(&format!("{}?limit=1&continue={token}", streams("ns1")))
        .await
        .json();
    assert_eq!(names(&second), vec!["b"]);
    assert_eq!(second["metadata"]["resourceVersion"], rv);
    assert_eq!(second["metadata"]["remainingItemCount"], 1);
    let token = second["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let third = c
        .get(&format!("{}?limit=1&continue={token}", streams("ns1")))
        .await
        .json();
    assert_eq!(names(&third), vec!["c"]);
    assert!(
        third["metadata"].get("continue").is_none(),
        "last page has no continue"
    );

    let bad = c
        .get(&format!("{}?limit=1&continue=xyz", streams("ns1")))
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.message()
            .starts_with("invalid continue token: continue key is not valid"),
        "{}",
        bad.message()
    );
    let with_rv = c
        .get(&format!(
            "{}?limit=1&continue={token}&resourceVersion=5",
            streams("ns1")
        ))
        .await;
    assert_eq!(with_rv.status, 400);
    assert_eq!(
        with_rv.message(),
        "specifying resource version is not allowed when using continue"
    );
    let rvm = c
        .get(&format!("{}?resourceVersionMatch=Exact", streams("ns1")))
        .await;
    assert_eq!(rvm.status, 422);
    assert_eq!(rvm.message(), "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided");
    let abc = c
        .get(&format!("{}?resourceVersion=abc", streams("ns1")))
        .await;
    assert_eq!(abc.status, 400);

    // All namespaces, in key order; an empty namespace lists as [].
    make(&c, "ns0", "z", json!({})).await;
    let all = c
        .get("/apis/image.openshift.io/v1/imagestreams")
        .await
        .json();
    assert_eq!(names(&all), vec!["z", "a", "b", "b2", "c"]);
    let empty = c.get(&streams("nothing")).await;
    assert_eq!(empty.json()["items"], json!([]));
    // resourceVersion=0 with a limit serves everything from the cache.
    let any = c
        .get(&format!("{}?limit=1&resourceVersion=0", streams("ns1")))
        .await
        .json();
    assert_eq!(names(&any).len(), 4);
    // A future resourceVersion is a 504 after a short wait.
    let future = c
        .get(&format!("{}?resourceVersion=999999999", streams("ns1")))
        .await;
    assert_eq!(future.status, 504);
    assert_eq!(
        future.json()["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

async fn selectors(server: &Server) {
    let c = server.client();
    make(&c, "ns1", "web", json!({"app": "web", "tier": "front"})).await;
    make(&c, "ns1", "db", json!({"app": "db", "tier": "back"})).await;
    make(&c, "ns1", "bare", json!({})).await;
    let sel = |q: &str| {
        let c = c.clone();
        let q = q.to_string();
        async move {
            let r = c.get(&format!("{}?{q}", streams("ns1"))).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text());
            names(&r.json())
        }
    };
    assert_eq!(sel("labelSelector=app%3Dweb").await, vec!["web"]);
    assert_eq!(
        sel("labelSelector=app%20in%20(web,db)").await,
        vec!["db", "web"]
    );
    assert_eq!(
        sel("labelSelector=app%20notin%20(web)").await,
        vec!["bare", "db"]
    );
    assert_eq!(sel("labelSelector=app").await, vec!["db", "web"]);
    assert_eq!(sel("labelSelector=!app").await, vec!["bare"]);
    assert_eq!(sel("labelSelector=app!%3Dweb,tier").await, vec!["db"]);
    assert_eq!(sel("fieldSelector=metadata.name%3Ddb").await, vec!["db"]);
    assert_eq!(
        sel("fieldSelector=metadata.name!%3Ddb").await,
        vec!["bare", "web"]
    );
    assert_eq!(
        sel("fieldSelector=metadata.namespace%3Dns1,metadata.name%3Dweb").await,
        vec!["web"]
    );
    assert_eq!(
        sel("fieldSelector=spec.dockerImageRepository%3D")
            .await
            .len(),
        3
    );
    // Selectors filter pages: no remainingItemCount.
    let page = c
        .get(&format!("{}?labelSelector=app&limit=1", streams("ns1")))
        .await
        .json();
    assert!(page["metadata"].get("remainingItemCount").is_none());
    let bad = c
        .get(&format!("{}?labelSelector=app%20IN%20(a)", streams("ns1")))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.message(),
        "unable to parse requirement: found 'IN', expected: in, notin, =, ==, !=, gt, lt"
    );
    let bad = c
        .get(&format!("{}?fieldSelector=spec.foo%3Dx", streams("ns1")))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.message(), "\"spec.foo\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"");
}

async fn tables_and_metadata(server: &Server) {
    let c = server.client();
    let created = make(&c, "ns1", "t", json!({"a": "b"})).await;
    let t = c.get_accept(&streams("ns1"), TABLE_ACCEPT).await;
    assert_eq!(t.status, 200);
    assert_eq!(
        t.header("content-type").as_deref(),
        Some("application/json")
    );
    let table = t.json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, vec!["Name", "Image Repository", "Tags", "Updated"]);
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(table["rows"][0]["object"]["metadata"]["labels"]["a"], "b");
    let none = c
        .get_accept(
            &format!("{}?includeObject=None", stream("ns1", "t")),
            TABLE_ACCEPT,
        )
        .await
        .json();
    assert_eq!(none["rows"][0]["object"], Value::Null);
    let full = c
        .get_accept(
            &format!("{}?includeObject=Object", stream("ns1", "t")),
            TABLE_ACCEPT,
        )
        .await
        .json();
    assert_eq!(full["rows"][0]["object"]["kind"], "ImageStream");
    let bad = c
        .get_accept(
            &format!("{}?includeObject=x", stream("ns1", "t")),
            TABLE_ACCEPT,
        )
        .await;
    assert_eq!(bad.status, 400);

    let pom = c
        .get_accept(&stream("ns1", "t"), METADATA_ACCEPT)
        .await
        .json();
    assert_eq!(pom["kind"], "PartialObjectMetadata");
    assert_eq!(pom["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(pom.get("spec").is_none());
    let list = c
        .get_accept(&streams("ns1"), METADATA_LIST_ACCEPT)
        .await
        .json();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    let wrong = c
        .get_accept(
            &streams("ns1"),
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .await;
    assert_eq!(wrong.status, 406);

    let cbor = c.get_accept(&stream("ns1", "t"), "application/cbor").await;
    assert_eq!(cbor.status, 406);
    assert_eq!(cbor.json()["reason"], "NotAcceptable");
    assert_eq!(
        cbor.message(),
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
    );
    let yaml = c.get_accept(&stream("ns1", "t"), "application/yaml").await;
    assert_eq!(
        yaml.header("content-type").as_deref(),
        Some("application/yaml")
    );
    assert!(yaml.text().contains("kind: ImageStream"), "{}", yaml.text());
    let pretty = c
        .get(&format!("{}?pretty=true", stream("ns1", "t")))
        .await
        .text();
    assert!(pretty.starts_with("{\n  \""), "{pretty}");
}

async fn watches(server: &Server) {
    let c = server.client();
    let listed = c.get(&streams("ns1")).await.json();
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut w = c
        .watch(
            &format!("{}?watch=true&resourceVersion={rv}", streams("ns1")),
            None,
        )
        .await;
    let a = make(&c, "ns1", "w", json!({})).await;
    let patched = c
        .patch(
            &stream("ns1", "w"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"1"}}}"#,
        )
        .await
        .json();
    let deleted = c.delete(&stream("ns1", "w")).await;
    assert_eq!(deleted.status, 200);
    let e1 = w.next(WAIT).await.expect("ADDED");
    assert_eq!(e1["type"], "ADDED");
    assert_eq!(
        e1["object"]["metadata"]["resourceVersion"],
        a["metadata"]["resourceVersion"]
    );
    assert_eq!(e1["object"]["kind"], "ImageStream");
    let e2 = w.next(WAIT).await.expect("MODIFIED");
    assert_eq!(e2["type"], "MODIFIED");
    assert_eq!(
        e2["object"]["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );
    let e3 = w.next(WAIT).await.expect("DELETED");
    assert_eq!(e3["type"], "DELETED");
    let del_rv: u64 = e3["object"]["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("num");
    let mod_rv: u64 = patched["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("num");
    assert!(del_rv > mod_rv, "DELETED carries the deletion revision");

    // Without a resourceVersion (and with 0), a watch starts with the current state; the query
    // booleans follow Go's rules (`watch=True`, bare `watch`).
    make(&c, "ns1", "existing", json!({})).await;
    for q in ["watch=True", "watch", "watch=1&resourceVersion=0"] {
        let mut w = c.watch(&format!("{}?{q}", streams("ns1")), None).await;
        let e = w
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("{q}: no initial event"));
        assert_eq!(e["type"], "ADDED", "{q}");
        assert_eq!(e["object"]["metadata"]["name"], "existing");
    }
    // The legacy /watch/ path with a name.
    let mut w = c
        .watch(
            "/apis/image.openshift.io/v1/watch/namespaces/ns1/imagestreams/existing",
            None,
        )
        .await;
    assert_eq!(
        w.next(WAIT).await.expect("event")["object"]["metadata"]["name"],
        "existing"
    );
    let bad = c.get("/apis/image.openshift.io/v1/watch/namespaces/ns1/imagestreams/existing?fieldSelector=metadata.name%3Dother").await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.message(),
        "fieldSelector metadata.name doesn't match requested name"
    );
}

async fn watch_list_bookmarks_and_timeouts(server: &Server) {
    let c = server.client();
    make(&c, "ns1", "one", json!({})).await;
    make(&c, "ns1", "two", json!({})).await;
    let mut w = c
        .watch(&format!("{}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", streams("ns1")), None)
        .await;
    let mut seen = Vec::new();
    loop {
        let e = w.next(WAIT).await.expect("watch-list event");
        if e["type"] == "BOOKMARK" {
            assert_eq!(
                e["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
            assert_eq!(e["object"]["kind"], "ImageStream");
            assert!(e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|s| !s.is_empty()));
            break;
        }
        assert_eq!(e["type"], "ADDED");
        seen.push(
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    seen.sort();
    assert_eq!(seen, vec!["one", "two"]);
    let r = c
        .get(&format!(
            "{}?watch=true&sendInitialEvents=true",
            streams("ns1")
        ))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");

    let started = std::time::Instant::now();
    let mut w = c
        .watch(
            &format!(
                "{}?watch=true&timeoutSeconds=1&resourceVersion=0",
                streams("ns1")
            ),
            None,
        )
        .await;
    assert!(
        w.ends_within(Duration::from_secs(5)).await,
        "timeoutSeconds did not end the watch"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A label selector: losing the label is DELETED, gaining it is ADDED.
    let rv = c.get(&streams("ns1")).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut w = c
        .watch(
            &format!(
                "{}?watch=true&labelSelector=sel%3Dyes&resourceVersion={rv}",
                streams("ns1")
            ),
            None,
        )
        .await;
    c.patch(
        &stream("ns1", "one"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"sel":"yes"}}}"#,
    )
    .await;
    c.patch(
        &stream("ns1", "two"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"other":"x"}}}"#,
    )
    .await;
    c.patch(
        &stream("ns1", "one"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"sel":"no"}}}"#,
    )
    .await;
    let e = w.next(WAIT).await.expect("added");
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("one"))
    );
    let e = w.next(WAIT).await.expect("deleted");
    assert_eq!(
        (
            e["type"].as_str(),
            e["object"]["metadata"]["labels"]["sel"].as_str()
        ),
        (Some("DELETED"), Some("yes"))
    );

    // Tables over a watch: the first event carries the columns.
    let mut w = c
        .watch(
            &format!("{}?watch=true&resourceVersion=0", streams("ns1")),
            Some(TABLE_ACCEPT),
        )
        .await;
    let e = w.next(WAIT).await.expect("table event");
    assert_eq!(e["object"]["kind"], "Table");
    assert_eq!(e["object"]["columnDefinitions"][0]["name"], "Name");
    let e = w.next(WAIT).await.expect("second table event");
    assert_eq!(e["object"]["columnDefinitions"], json!([]));
}

async fn too_old_watches(server: &Server) {
    let c = server.client();
    let first = make(&c, "ns1", "old", json!({})).await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    for i in 0..8 {
        c.patch(
            &stream("ns1", "old"),
            "application/merge-patch+json",
            &format!(r#"{{"metadata":{{"labels":{{"i":"{i}"}}}}}}"#),
        )
        .await;
    }
    let mut w = c
        .watch(
            &format!("{}?watch=true&resourceVersion={rv}", streams("ns1")),
            None,
        )
        .await;
    let e = w.next(WAIT).await.expect("error event");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(e["object"]["message"]
        .as_str()
        .expect("msg")
        .starts_with(&format!("too old resource version: {rv} (")));
    assert!(w.ends_within(WAIT).await);
}

async fn expired_continue_tokens(server: &Server) {
    let c = server.client();
    for n in ["a", "b", "c"] {
        make(&c, "ns1", n, json!({})).await;
    }
    let first = c.get(&format!("{}?limit=1", streams("ns1"))).await.json();
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    // The compactor (1s interval) compacts past the token's revision once newer writes exist.
    let mut last = None;
    for i in 0..40 {
        make(&c, "ns2", &format!("x{i}"), json!({})).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let r = c
            .get(&format!("{}?limit=1&continue={token}", streams("ns1")))
            .await;
        if r.status == 410 {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("the continue token never expired");
    let s = r.json();
    assert_eq!(s["reason"], "Expired");
    assert!(s["message"]
        .as_str()
        .expect("m")
        .starts_with("The provided continue parameter is too old"));
    let fresh = s["metadata"]["continue"].as_str().expect("fresh token");
    let next = c
        .get(&format!("{}?limit=1&continue={fresh}", streams("ns1")))
        .await;
    assert_eq!(next.status, 200);
    assert_eq!(names(&next.json()), vec!["b"]);
    let exact = c
        .get(&format!(
            "{}?resourceVersion=1&resourceVersionMatch=Exact",
            streams("ns1")
        ))
        .await;
    assert_eq!(exact.status, 410);
}

both_backends!(
    [],
    pagination,
    selectors,
    tables_and_metadata,
    watches,
    watch_list_bookmarks_and_timeouts
);
both_backends!(["--default-watch-cache-size=5"], too_old_watches);
both_backends!(["--etcd-compaction-interval=1s"], expired_continue_tokens);
