//! Discovery, version, health, OpenAPI and authentication (spec §1, §0).

use blackbox::both_backends;
use blackbox::Server;

const V2_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

async fn resource_discovery(server: &Server) {
    let c = server.client();
    let r = c.get("/apis/image.openshift.io/v1").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["kind"], "APIResourceList");
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["groupVersion"], "image.openshift.io/v1");
    let resources = doc["resources"].as_array().expect("resources");
    let find = |name: &str| {
        resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let is = find("imagestreams");
    assert_eq!(
        is["verbs"],
        serde_json::json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    );
    assert_eq!(is["shortNames"], serde_json::json!(["is"]));
    assert_eq!(is["categories"], serde_json::json!(["all"]));
    assert_eq!(is["storageVersionHash"], "mwmf9lCqOiA=");
    assert_eq!(is["namespaced"], true);
    let status = find("imagestreams/status");
    assert_eq!(status["singularName"], "");
    assert_eq!(
        status["verbs"],
        serde_json::json!(["get", "patch", "update"])
    );
    let images = find("images");
    assert_eq!(images["namespaced"], false);
    assert_eq!(images["storageVersionHash"], "FX/i8Tt+3Fc=");

    let group = c.get("/apis/image.openshift.io").await.json();
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "image.openshift.io/v1"
    );
}

async fn aggregated_discovery(server: &Server) {
    let c = server.client();
    let r = c.get_accept("/apis", V2_ACCEPT).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let etag = r.header("etag").expect("etag");
    assert!(etag.starts_with('"') && etag.len() == 130, "{etag}");
    let doc = r.json();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let res = &doc["items"][0]["versions"][0]["resources"];
    let is = res
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "imagestreams")
        .expect("is");
    assert_eq!(is["scope"], "Namespaced");
    assert_eq!(is["responseKind"]["kind"], "ImageStream");
    assert_eq!(is["subresources"][0]["subresource"], "status");
    let again = c
        .request(
            reqwest::Method::GET,
            "/apis",
            &[("accept", V2_ACCEPT), ("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let legacy = c.get_accept("/apis", "application/json").await.json();
    assert_eq!(legacy["kind"], "APIGroupList");
    assert_eq!(legacy["groups"][0]["name"], "image.openshift.io");
}

async fn root_version_and_unknown_paths(server: &Server) {
    let c = server.client();
    let root = c.get("/").await.json();
    let paths: Vec<&str> = root["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        paths.contains(&"/apis/image.openshift.io/v1") && paths.contains(&"/openapi/v3"),
        "{paths:?}"
    );
    let unknown = c.get("/nope").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["paths"].is_array());
    let v = c.get("/version").await.json();
    assert_eq!(v["major"], "1");
    assert!(v["gitVersion"]
        .as_str()
        .expect("gitVersion")
        .starts_with("v1."));
    let missing = c.get("/apis/image.openshift.io/v1/nothings").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.message(),
        "the server could not find the requested resource"
    );
    let method = c
        .request(
            reqwest::Method::POST,
            "/apis/image.openshift.io/v1/images/x",
            &[],
            None,
        )
        .await;
    assert_eq!(method.status, 405);
    assert_eq!(method.json()["reason"], "MethodNotAllowed");
}

async fn health_and_authentication(server: &Server) {
    let anon = server.anonymous();
    let r = anon.get("/readyz?verbose").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    for line in [
        "[+]ping ok",
        "[+]etcd ok",
        "[+]informer-sync ok",
        "[+]shutdown ok",
        "readyz check passed",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    assert_eq!(anon.get("/healthz/etcd").await.text(), "ok");
    let denied = anon.get("/apis/image.openshift.io/v1").await;
    assert_eq!(denied.status, 401);
    assert_eq!(denied.json()["reason"], "Unauthorized");
    assert_eq!(
        server
            .client()
            .get("/apis/image.openshift.io/v1/images")
            .await
            .status,
        200
    );
    let metrics = server.client().get("/metrics").await.text();
    assert!(
        metrics.contains(r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="image.openshift.io",resource="images",scope="cluster",subresource="",verb="LIST",version="v1"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"etcd_request_duration_seconds_count{operation="list",type="images.image.openshift.io"}"#
        ),
        "{metrics}"
    );
}

async fn openapi_documents(server: &Server) {
    let c = server.client();
    let index = c.get("/openapi/v3").await.json();
    let url = index["paths"]["apis/image.openshift.io/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url")
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/image.openshift.io/v1?hash="));
    let doc = c.get(&url).await;
    assert_eq!(doc.status, 200);
    assert_eq!(
        doc.header("cache-control").as_deref(),
        Some("public, immutable")
    );
    let v3 = doc.json();
    let want = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../api/openapi-v3.json"
    ))
    .expect("api/openapi-v3.json");
    assert_eq!(
        v3,
        serde_json::from_str::<serde_json::Value>(&want).expect("json"),
        "served v3 differs from api/"
    );
    let stale = c
        .get("/openapi/v3/apis/image.openshift.io/v1?hash=00")
        .await;
    assert_eq!(stale.status, 301);
    assert_eq!(stale.header("location").as_deref(), Some(url.as_str()));
    let v2 = c.get("/openapi/v2").await.json();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["com.github.openshift.api.image.v1.ImageStream"].is_object());
}

both_backends!(
    [],
    resource_discovery,
    aggregated_discovery,
    root_version_and_unknown_paths,
    health_and_authentication,
    openapi_documents,
);
