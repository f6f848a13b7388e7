//! The server in a cluster (issue 10, spec §8.3–§8.5, §7, §15): a fake kube-apiserver over TLS
//! supplies the extension-apiserver-authentication ConfigMap, answers TokenReviews and
//! SubjectAccessReviews, and holds the Secrets, LimitRanges and Namespaces the server reads.
//! Every test starts the real binary with --authentication-kubeconfig,
//! --authorization-kubeconfig and --kubeconfig all pointing at the fake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use blackbox::api::{stream, streams, Client, Resp};
use blackbox::fake_kube::{FakeKube, SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS};
use blackbox::front_proxy::FrontProxy;
use blackbox::pki::{https_client_with_identity, Identity, TestCa};
use blackbox::{https_client, Server};
use reqwest::Method;
use serde_json::{json, Map, Value};

const SSR: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const V1: &str = "/apis/image.openshift.io/v1";
const V2_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const PROXY_CN: &str = "front-proxy-client";

// ---- fixtures ----

/// The server and the fake cluster it runs in. Fields drop in order: the server stops before
/// the fake goes away, the directory last.
struct Cluster {
    server: Server,
    fake: FakeKube,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The CA the server generated for its serving certificate.
    fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.server.data_dir().join("ca.crt")).expect("server CA")
    }

    /// A client presenting `identity` (a TLS client certificate) and `token` when given.
    fn client_as(&self, identity: Option<&Identity>, token: Option<&str>) -> Client {
        Client::new(
            &self.server.base,
            https_client_with_identity(&self.ca_pem(), identity, token),
        )
    }

    /// The generated admin (system:masters).
    fn admin(&self) -> Client {
        self.server.client()
    }
}

/// kube-system/extension-apiserver-authentication; with a front-proxy CA, the request-header
/// settings kube-apiserver publishes (allowed name `front-proxy-client`, kube's header names).
fn auth_config_map(front_proxy_ca: Option<&str>) -> Value {
    let mut data = Map::new();
    if let Some(pem) = front_proxy_ca {
        data.insert("requestheader-client-ca-file".into(), json!(pem));
        let lists = [
            ("requestheader-allowed-names", json!([PROXY_CN])),
            ("requestheader-username-headers", json!(["X-Remote-User"])),
            ("requestheader-group-headers", json!(["X-Remote-Group"])),
            (
                "requestheader-extra-headers-prefix",
                json!(["X-Remote-Extra-"]),
            ),
        ];
        for (key, list) in lists {
            // The ConfigMap holds each list as a JSON-encoded string.
            data.insert(key.into(), Value::String(list.to_string()));
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": data,
    })
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// A fake cluster with the authentication ConfigMap, the Namespaces team-a, team-b and ns1,
/// and every authenticated user allowed to ask who they are.
async fn fake_cluster(front_proxy_ca: Option<&str>) -> FakeKube {
    let fake = FakeKube::start().await;
    fake.put(auth_config_map(front_proxy_ca));
    for ns in ["team-a", "team-b", "ns1"] {
        fake.put(namespace(ns));
    }
    fake.allow("system:authenticated", "create", "selfsubjectreviews", "");
    fake
}

/// Starts the server against `fake` (whose objects are in place already: /readyz waits for
/// the caches) with `extra` flags.
async fn serve(fake: FakeKube, extra: &[&str]) -> Cluster {
    let dir = tempfile::Builder::new()
        .prefix("image-apiserver-cluster-")
        .tempdir()
        .expect("temp dir");
    let kubeconfig = fake.write_kubeconfig(dir.path());
    let k = kubeconfig.display().to_string();
    let mut args = vec![
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        format!("--kubeconfig={k}"),
        // No imports from the internet: the streams here only name registries.
        "--disable-import-controller".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let data = dir.path().join("data");
    // The fake runs on this runtime's workers; starting blocks until /readyz, off them.
    let server = tokio::task::spawn_blocking(move || Server::start_with(&data, &args))
        .await
        .expect("start the server");
    Cluster {
        server,
        fake,
        _dir: dir,
    }
}

// ---- requests and checks ----

/// POST a SelfSubjectReview with extra request headers.
async fn whoami(client: &Client, headers: &[(&str, &str)]) -> Resp {
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                      "metadata": {}});
    client
        .request(Method::POST, SSR, &all, Some(body.to_string().into_bytes()))
        .await
}

/// The userInfo of a successful SelfSubjectReview.
fn user_info(r: &Resp) -> Value {
    assert_eq!(r.status, 201, "{}", r.text());
    let review = r.json();
    assert_eq!(review["kind"], "SelfSubjectReview");
    review["status"]["userInfo"].clone()
}

fn groups(info: &Value) -> Vec<String> {
    info["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn assert_unauthorized(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.text());
    let status = r.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["message"], "Unauthorized");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
}

/// SubjectAccessReviews the fake received for `user` doing `verb` on
/// `resource[/subresource]` in `namespace`.
fn sar_count(
    fake: &FakeKube,
    user: &str,
    verb: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
) -> usize {
    fake.requests(SUBJECT_ACCESS_REVIEWS)
        .iter()
        .filter(|r| {
            let Some(body) = &r.body else { return false };
            let spec = &body["spec"];
            let attrs = &spec["resourceAttributes"];
            spec["user"] == user
                && attrs["verb"] == verb
                && attrs["resource"] == resource
                && attrs["subresource"].as_str().unwrap_or("") == subresource
                && attrs["namespace"].as_str().unwrap_or("") == namespace
        })
        .count()
}

fn stream_body(name: &str, tags: Value) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
           "metadata": {"name": name}, "spec": {"tags": tags}})
}

fn docker_tag(tag: &str, reference: &str) -> Value {
    json!({"name": tag, "from": {"kind": "DockerImage", "name": reference}})
}

/// `path?k=v&...`, encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

// ---- 1. front proxy ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxy_headers_are_believed_only_from_the_allowed_proxy_certificate() {
    let proxy_ca = TestCa::new("front-proxy-ca");
    let fake = fake_cluster(Some(proxy_ca.pem())).await;
    let c = serve(fake, &[]).await;
    let alice = [
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "dev"),
        ("X-Remote-Group", "qa"),
        ("X-Remote-Extra-Scopes", "read"),
    ];

    let proxy = c.client_as(Some(&proxy_ca.client_cert(PROXY_CN, &[])), None);
    let info = user_info(&whoami(&proxy, &alice).await);
    assert_eq!(info["username"], "alice");
    assert_eq!(
        groups(&info),
        ["dev", "qa", "system:authenticated"],
        "{info}"
    );
    assert_eq!(info["extra"], json!({"scopes": ["read"]}));
    // The fake was asked about alice, not about the proxy.
    let asked_for_alice = c.fake.requests(SUBJECT_ACCESS_REVIEWS).iter().any(|r| {
        r.body
            .as_ref()
            .is_some_and(|b| b["spec"]["user"] == "alice")
    });
    assert!(asked_for_alice);

    // The proxy's certificate without a user header names nobody.
    assert_unauthorized(&whoami(&proxy, &[]).await);

    // A certificate of the front-proxy CA with a CN not in the allowed names.
    let stranger = c.client_as(Some(&proxy_ca.client_cert("someone-else", &[])), None);
    assert_unauthorized(&whoami(&stranger, &alice).await);

    // The allowed CN from another CA.
    let forged = TestCa::new("front-proxy-ca").client_cert(PROXY_CN, &[]);
    let forger = c.client_as(Some(&forged), None);
    assert_unauthorized(&whoami(&forger, &alice).await);

    // No certificate at all.
    assert_unauthorized(&whoami(&c.client_as(None, None), &alice).await);

    // A bearer token with the headers: the token's user; the headers count for nothing.
    let token = blackbox::admin_token(c.server.data_dir());
    let admin = c.client_as(None, Some(token.as_str()));
    let info = user_info(&whoami(&admin, &alice).await);
    assert_eq!(info["username"], "admin");
    let admin_groups = groups(&info);
    assert!(
        admin_groups.contains(&"system:masters".to_string()),
        "{info}"
    );
    assert!(!admin_groups.contains(&"dev".to_string()), "{info}");
    assert!(info.get("extra").is_none(), "{info}");
}

// ---- 2. rotation ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_front_proxy_ca_applies_without_a_restart() {
    let old_ca = TestCa::new("front-proxy-ca");
    let new_ca = TestCa::new("front-proxy-ca-2");
    let fake = fake_cluster(Some(old_ca.pem())).await;
    let c = serve(fake, &[]).await;
    let old = c.client_as(Some(&old_ca.client_cert(PROXY_CN, &[])), None);
    let new = c.client_as(Some(&new_ca.client_cert(PROXY_CN, &[])), None);
    let alice = [("X-Remote-User", "alice")];

    assert_eq!(user_info(&whoami(&old, &alice).await)["username"], "alice");
    assert_unauthorized(&whoami(&new, &alice).await);

    c.fake.put(auth_config_map(Some(new_ca.pem())));
    let within = Duration::from_secs(10);
    let deadline = Instant::now() + within;
    loop {
        let by_new = whoami(&new, &alice).await;
        let by_old = whoami(&old, &alice).await;
        if by_new.status == 201 && by_old.status == 401 {
            assert_eq!(user_info(&by_new)["username"], "alice");
            assert_unauthorized(&by_old);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new CA was not applied within {within:?}: new {} {}, old {} {}",
            by_new.status,
            by_new.text(),
            by_old.status,
            by_old.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- 3. token file ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_users_are_authenticated_before_token_reviews() {
    let tokens = tempfile::tempdir().expect("temp dir");
    let file = tokens.path().join("tokens.csv");
    std::fs::write(
        &file,
        "admintoken,admin,admin,\"system:masters\"\nt-carol,carol,carol-uid,\"qa,dev\"\n",
    )
    .expect("write the token file");
    let fake = fake_cluster(None).await;
    fake.add_token("t-bob", "bob", &["dev"]);
    let flag = format!("--token-auth-file={}", file.display());
    let c = serve(fake, &[flag.as_str()]).await;

    // The file is used instead of a generated admin token.
    assert!(!c.server.data_dir().join("tokens.csv").exists());
    let kubeconfig = std::fs::read_to_string(c.server.kubeconfig()).expect("the admin kubeconfig");
    assert!(!kubeconfig.contains("token:"), "{kubeconfig}");

    let carol = c.client_as(None, Some("t-carol"));
    let info = user_info(&whoami(&carol, &[]).await);
    assert_eq!(info["username"], "carol");
    assert_eq!(info["uid"], "carol-uid");
    assert_eq!(groups(&info), ["qa", "dev", "system:authenticated"]);
    assert_eq!(
        c.fake.calls(TOKEN_REVIEWS),
        0,
        "a token of the file is never reviewed"
    );

    let admin = Client::new(
        &c.server.base,
        https_client(c.server.data_dir(), Some("admintoken")),
    );
    let list = admin.get(&streams("ns1")).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["kind"], "ImageStreamList");

    // A token the file does not know still reaches the TokenReview.
    let bob = c.client_as(None, Some("t-bob"));
    assert_eq!(user_info(&whoami(&bob, &[]).await)["username"], "bob");
    assert_eq!(c.fake.calls(TOKEN_REVIEWS), 1);
}

// ---- 4. TokenReview ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_token_reviews_are_cached() {
    let fake = fake_cluster(None).await;
    fake.add_token("t-bob", "bob", &["dev"]);
    let c = serve(fake, &[]).await;
    assert_eq!(c.fake.calls(TOKEN_REVIEWS), 0);

    let bob = c.client_as(None, Some("t-bob"));
    for _ in 0..2 {
        let info = user_info(&whoami(&bob, &[]).await);
        assert_eq!(info["username"], "bob");
        assert_eq!(info["uid"], "uid-bob");
        assert_eq!(groups(&info), ["dev", "system:authenticated"]);
    }
    assert_eq!(c.fake.calls(TOKEN_REVIEWS), 1, "the answer is cached");
    let reviews = c.fake.requests(TOKEN_REVIEWS);
    let sent = reviews[0].body.as_ref().expect("a JSON TokenReview");
    assert_eq!(sent["kind"], "TokenReview");
    assert_eq!(sent["spec"]["token"], "t-bob");

    let stranger = c.client_as(None, Some("t-nobody"));
    assert_unauthorized(&whoami(&stranger, &[]).await);
    assert_eq!(c.fake.calls(TOKEN_REVIEWS), 2);
    assert_unauthorized(&whoami(&stranger, &[]).await);
    assert_eq!(
        c.fake.calls(TOKEN_REVIEWS),
        2,
        "refusals are cached as well"
    );
}

// ---- 5. SubjectAccessReview ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_access_reviews_are_cached_and_denials_read_as_kube() {
    let fake = fake_cluster(None).await;
    fake.add_token("t-bob", "bob", &["dev"]);
    fake.allow("bob", "list", "imagestreams", "team-a");
    fake.deny("bob", "*", "imagestreams", "team-c");
    let c = serve(fake, &[]).await;
    let bob = c.client_as(None, Some("t-bob"));

    for _ in 0..2 {
        let r = bob.get(&streams("team-a")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["kind"], "ImageStreamList");
    }
    assert_eq!(
        sar_count(&c.fake, "bob", "list", "imagestreams", "", "team-a"),
        1,
        "the allowed answer is cached"
    );
    let reviews = c.fake.requests(SUBJECT_ACCESS_REVIEWS);
    let sent = reviews
        .iter()
        .filter_map(|r| r.body.as_ref())
        .find(|b| b["spec"]["resourceAttributes"]["namespace"] == "team-a")
        .expect("a review for team-a");
    assert_eq!(
        sent["spec"]["resourceAttributes"]["group"],
        "image.openshift.io"
    );
    assert_eq!(sent["spec"]["resourceAttributes"]["version"], "v1");
    assert_eq!(
        sent["spec"]["groups"],
        json!(["dev", "system:authenticated"])
    );

    for _ in 0..2 {
        let r = bob.get(&streams("team-b")).await;
        assert_eq!(r.status, 403, "{}", r.text());
        let status = r.json();
        assert_eq!(
            status["message"],
            "imagestreams.image.openshift.io is forbidden: User \"bob\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-b\": no rule matched"
        );
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(status["code"], 403);
        assert_eq!(status["details"]["kind"], "imagestreams");
        assert_eq!(status["details"]["group"], "image.openshift.io");
        assert!(status["details"]["name"].is_null(), "{status}");
    }
    assert_eq!(
        sar_count(&c.fake, "bob", "list", "imagestreams", "", "team-b"),
        1,
        "the denial is cached"
    );

    let r = bob.get(&stream("team-b", "web")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let status = r.json();
    assert_eq!(
        status["message"],
        "imagestreams.image.openshift.io \"web\" is forbidden: User \"bob\" cannot get resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-b\": no rule matched"
    );
    assert_eq!(status["details"]["name"], "web");

    let r = bob.get(&streams("team-c")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.message(),
        "imagestreams.image.openshift.io is forbidden: User \"bob\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-c\": denied by test rule"
    );
}

// ---- 6. cross-namespace tags ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_following_another_namespace_need_pull_access_there() {
    let fake = fake_cluster(None).await;
    fake.add_token("t-bob", "bob", &["dev"]);
    fake.allow("bob", "*", "imagestreams", "team-a");
    // Denials are not cached, so the grant below applies at once.
    let c = serve(fake, &["--authorization-webhook-cache-unauthorized-ttl=0s"]).await;

    let source = stream_body(
        "src",
        json!([{"name": "v1", "reference": true,
                "from": {"kind": "DockerImage", "name": "registry.example.com/team-b/src:1"}}]),
    );
    let r = c.admin().post(&streams("team-b"), &source).await;
    assert_eq!(r.status, 201, "{}", r.text());

    let bob = c.client_as(None, Some("t-bob"));
    let follower = stream_body(
        "app",
        json!([{"name": "v1",
                "from": {"kind": "ImageStreamTag", "namespace": "team-b", "name": "src:v1"}}]),
    );
    let r = bob.post(&streams("team-a"), &follower).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["reason"], "Invalid");
    assert!(
        r.message()
            .contains("spec.tags[v1].from: Forbidden: team-b/src"),
        "{}",
        r.message()
    );
    assert!(
        sar_count(&c.fake, "bob", "get", "imagestreams", "layers", "team-b") >= 1,
        "bob's pull access to team-b was asked"
    );
    let asked = c.fake.requests(SUBJECT_ACCESS_REVIEWS);
    let layers = asked
        .iter()
        .filter_map(|r| r.body.as_ref())
        .find(|b| b["spec"]["resourceAttributes"]["subresource"] == "layers")
        .expect("a layers review");
    assert_eq!(layers["spec"]["resourceAttributes"]["name"], "src");
    assert_eq!(
        layers["spec"]["resourceAttributes"]["group"],
        "image.openshift.io"
    );
    assert_eq!(c.admin().get(&stream("team-a", "app")).await.status, 404);

    c.fake.allow("bob", "get", "imagestreams/layers", "team-b");
    let r = bob.post(&streams("team-a"), &follower).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    assert_eq!(
        created["status"]["tags"][0]["items"][0]["dockerImageReference"],
        "registry.example.com/team-b/src:1",
        "{created}"
    );

    // Same-namespace and DockerImage tags ask nothing.
    let asked_before = sar_count(&c.fake, "bob", "get", "imagestreams", "layers", "team-b");
    let local = stream_body(
        "local",
        json!([
            {"name": "mirror", "from": {"kind": "ImageStreamTag", "name": "app:v1"}},
            {"name": "ext", "reference": true,
             "from": {"kind": "DockerImage", "name": "registry.example.com/x/y:1"}},
        ]),
    );
    let r = bob.post(&streams("team-a"), &local).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let layer_reviews = c
        .fake
        .requests(SUBJECT_ACCESS_REVIEWS)
        .iter()
        .filter(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b["spec"]["resourceAttributes"]["subresource"] == "layers")
        })
        .count();
    assert_eq!(
        layer_reviews, asked_before,
        "no pull-access review for same-namespace or DockerImage tags"
    );
}

// ---- 7. secrets ----

fn secret(name: &str, namespace: &str, type_: &str, data: Value, meta: Value) -> Value {
    let mut metadata = json!({"name": name, "namespace": namespace});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": type_,
           "data": data})
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_subresource_lists_the_namespaces_pull_secrets() {
    let fake = fake_cluster(None).await;
    let json_config = b64(r#"{"auths":{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}}"#);
    let cfg_config = b64(r#"{"registry.example.com":{"auth":"dXNlcjpwYXNz"}}"#);
    fake.put(secret(
        "a-json",
        "ns1",
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": json_config}),
        json!({"labels": {"team": "x"}}),
    ));
    fake.put(secret(
        "b-cfg",
        "ns1",
        "kubernetes.io/dockercfg",
        json!({".dockercfg": cfg_config}),
        json!({"labels": {"team": "y"}}),
    ));
    fake.put(secret(
        "c-opaque",
        "ns1",
        "Opaque",
        json!({"k": b64("v")}),
        json!({"labels": {"team": "x"}}),
    ));
    fake.put(secret(
        "d-hidden",
        "ns1",
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": json_config}),
        json!({"labels": {"team": "x"},
               "annotations": {"openshift.io/image.excludeSecret": "true"}}),
    ));
    fake.put(secret(
        "e-elsewhere",
        "ns2",
        "kubernetes.io/dockerconfigjson",
        json!({".dockerconfigjson": json_config}),
        json!({"labels": {"team": "x"}}),
    ));
    let c = serve(fake, &[]).await;
    let admin = c.admin();
    let path = format!("{V1}/namespaces/ns1/imagestreams/anything/secrets");

    let r = admin.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json();
    assert_eq!(list["kind"], "SecretList");
    assert_eq!(list["apiVersion"], "image.openshift.io/v1");
    assert_eq!(item_names(&list), ["a-json", "b-cfg"], "{list}");
    assert_eq!(list["items"][0]["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(list["items"][0]["data"][".dockerconfigjson"], json_config);
    assert_eq!(list["items"][1]["type"], "kubernetes.io/dockercfg");
    assert_eq!(list["items"][1]["data"][".dockercfg"], cfg_config);

    let r = admin
        .get(&with_query(&path, &[("labelSelector", "team=x")]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(item_names(&r.json()), ["a-json"]);

    let r = admin
        .get(&with_query(
            &path,
            &[("fieldSelector", "type=kubernetes.io/dockercfg")],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(item_names(&r.json()), ["b-cfg"]);

    let r = admin.get(&with_query(&path, &[("limit", "1")])).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let first = r.json();
    assert_eq!(item_names(&first), ["a-json"]);
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let r = admin
        .get(&with_query(
            &path,
            &[("limit", "1"), ("continue", token.as_str())],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second = r.json();
    assert_eq!(item_names(&second), ["b-cfg"]);
    assert!(
        second["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{second}"
    );

    // A pull secret added later shows up through the watch.
    c.fake.put(secret(
        "c-late",
        "ns1",
        "kubernetes.io/dockercfg",
        json!({".dockercfg": cfg_config}),
        json!({}),
    ));
    let within = Duration::from_secs(5);
    let deadline = Instant::now() + within;
    loop {
        let names = item_names(&admin.get(&path).await.json());
        if names == ["a-json", "b-cfg", "c-late"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "c-late not listed within {within:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- 8. limits ----

fn tag_limit(max: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "LimitRange",
           "metadata": {"name": "streams", "namespace": "ns1"},
           "spec": {"limits": [{"type": "openshift.io/ImageStream",
                                "max": {"openshift.io/image-tags": max}}]}})
}

/// A schema2 image of one `layer_size`-byte layer, named by its manifest's digest.
fn sized_image(layer_size: u64) -> Value {
    use sha2::{Digest, Sha256};
    let sha = |bytes: &[u8]| format!("sha256:{:x}", Sha256::digest(bytes));
    let config = r#"{"architecture":"amd64","os":"linux","config":{}}"#;
    let manifest = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": config.len(), "digest": sha(config.as_bytes())},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": layer_size, "digest": sha(&layer_size.to_be_bytes())}]})
    .to_string();
    json!({"metadata": {"name": sha(manifest.as_bytes())},
           "dockerImageReference": "registry.example.com/team/app@".to_string() + &sha(manifest.as_bytes()),
           "dockerImageManifest": manifest, "dockerImageConfig": config})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_bound_the_size_of_pushed_images() {
    let fake = fake_cluster(None).await;
    fake.put(json!({"apiVersion": "v1", "kind": "LimitRange",
           "metadata": {"name": "images", "namespace": "ns1"},
           "spec": {"limits": [{"type": "openshift.io/Image", "max": {"storage": "1Ki"}}]}}));
    let c = serve(fake, &[]).await;
    let admin = c.admin();
    let push = |image: Value| {
        json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamMapping",
               "metadata": {"name": "app"}, "tag": "v1", "image": image})
    };
    let mappings = format!("{V1}/namespaces/ns1/imagestreammappings");
    let r = admin
        .post(&streams("ns1"), &stream_body("app", json!([])))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());

    let r = admin.post(&mappings, &push(sized_image(5000))).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["reason"], "Forbidden");
    let message = r.message();
    assert!(
        message.starts_with("imagestreammappings.image.openshift.io \"app\" is forbidden: requested usage of storage exceeds the maximum limit per openshift.io/Image (")
            && message.ends_with(" > 1Ki)"),
        "{message}"
    );

    // A small image passes the same limit.
    let r = admin.post(&mappings, &push(sized_image(10))).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_bound_the_references_of_a_stream() {
    let fake = fake_cluster(None).await;
    fake.put(tag_limit("1"));
    let c = serve(fake, &[]).await;
    let admin = c.admin();

    let two = stream_body(
        "two",
        json!([
            docker_tag("a", "registry.example.com/team/one:1"),
            docker_tag("b", "registry.example.com/team/two:1"),
        ]),
    );
    let r = admin.post(&streams("ns1"), &two).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["reason"], "Invalid");
    assert!(
        r.message()
            .contains("exceeds the maximum limit per openshift.io/ImageStream (2 > 1)"),
        "{}",
        r.message()
    );
    assert_eq!(admin.get(&stream("ns1", "two")).await.status, 404);

    let same = stream_body(
        "same",
        json!([
            docker_tag("a", "registry.example.com/team/one:1"),
            docker_tag("b", "registry.example.com/team/one:1"),
        ]),
    );
    let r = admin.post(&streams("ns1"), &same).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // A raised limit arrives by watch.
    c.fake.put(tag_limit("2"));
    let within = Duration::from_secs(5);
    let deadline = Instant::now() + within;
    loop {
        let r = admin.post(&streams("ns1"), &two).await;
        if r.status == 201 {
            break;
        }
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(
            Instant::now() < deadline,
            "the raised limit did not apply within {within:?}: {}",
            r.message()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- 9. namespaces ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_need_an_existing_namespace_that_is_not_terminating() {
    let fake = fake_cluster(None).await;
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "ns-gone", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Terminating"}}));
    let c = serve(fake, &[]).await;
    let admin = c.admin();
    let app = stream_body("app", json!([]));

    let r = admin.post(&streams("ns-gone"), &app).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let status = r.json();
    assert_eq!(
        status["message"],
        "imagestreams.image.openshift.io \"app\" is forbidden: unable to create new content in namespace ns-gone because it is being terminated"
    );
    assert_eq!(status["reason"], "Forbidden");

    let r = admin.post(&streams("nowhere"), &app).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let status = r.json();
    assert_eq!(status["message"], "namespaces \"nowhere\" not found");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["details"]["name"], "nowhere");
    assert_eq!(status["details"]["kind"], "namespaces");
    assert!(
        c.fake.calls("/api/v1/namespaces/nowhere") >= 1,
        "a namespace the cache lacks is looked up"
    );

    let r = admin.post(&streams("ns1"), &app).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // A namespace created a moment ago is usable at once.
    c.fake.put(namespace("late"));
    let r = admin.post(&streams("late"), &app).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

// ---- 10. the aggregator ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_discovers_the_group_through_the_front_proxy() {
    let proxy_ca = TestCa::new("front-proxy-ca");
    let fake = fake_cluster(Some(proxy_ca.pem())).await;
    let c = serve(fake, &[]).await;
    let aggregator = c.client_as(Some(&proxy_ca.client_cert(PROXY_CN, &[])), None);
    let as_aggregator = [
        ("X-Remote-User", "system:kube-aggregator"),
        ("X-Remote-Group", "system:masters"),
    ];

    let mut headers: Vec<(&str, &str)> = vec![("accept", V2_ACCEPT)];
    headers.extend_from_slice(&as_aggregator);
    let r = aggregator
        .request(Method::GET, "/apis", &headers, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.contains("as=APIGroupDiscoveryList"),
        "{content_type}"
    );
    let doc = r.json();
    assert_eq!(doc["kind"], "APIGroupDiscoveryList");
    let names: Vec<&str> = doc["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|g| g["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"image.openshift.io"), "{doc}");

    // The availability probe, fired concurrently as kube-aggregator does.
    let probes = (0..5).map(|_| aggregator.request(Method::GET, V1, &as_aggregator, None));
    for r in futures::future::join_all(probes).await {
        assert_eq!(r.status, 200, "{}", r.text());
        let list = r.json();
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "image.openshift.io/v1");
        let has_streams = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|res| res["name"] == "imagestreams");
        assert!(has_streams, "{list}");
    }
    // system:masters is decided locally: the cluster was never asked about the aggregator.
    let asked = c
        .fake
        .requests(SUBJECT_ACCESS_REVIEWS)
        .iter()
        .filter(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b["spec"]["user"] == "system:kube-aggregator")
        })
        .count();
    assert_eq!(asked, 0);
}

// ---- 11. kubectl through the front proxy ----

/// kubectl with `kubeconfig` and a private HOME (its discovery cache), off the async workers
/// (the fake and the proxy run on them).
async fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let home: PathBuf = home.to_path_buf();
    let kubeconfig: PathBuf = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .env("HOME", &home)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    })
    .await
    .expect("kubectl thread")
}

fn stdout_of(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const WEB: &str = "apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: web
spec:
  tags:
  - name: latest
    from:
      kind: DockerImage
      name: registry.example.com/team-a/web:1.0
    reference: true
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_through_the_front_proxy_as_the_proxied_user() {
    let proxy_ca = TestCa::new("front-proxy-ca");
    let fake = fake_cluster(Some(proxy_ca.pem())).await;
    fake.allow("alice", "*", "imagestreams", "team-a");
    let c = serve(fake, &[]).await;
    let proxy = FrontProxy::start(
        &c.server.base,
        &c.ca_pem(),
        proxy_ca.client_cert(PROXY_CN, &[]),
        "alice",
        &["system:authenticated"],
    )
    .await;
    let home = tempfile::tempdir().expect("kubectl home");
    let kubeconfig = proxy.write_kubeconfig(home.path());
    let manifest = home.path().join("web.yaml");
    std::fs::write(&manifest, WEB).expect("write the manifest");
    let manifest = manifest.to_str().expect("UTF-8 path").to_string();

    let args = ["-n", "team-a", "create", "-f", manifest.as_str()];
    let out = stdout_of(&args, &kubectl(home.path(), &kubeconfig, &args).await);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web created");
    assert!(
        sar_count(&c.fake, "alice", "create", "imagestreams", "", "team-a") >= 1,
        "the create was authorized for alice"
    );
    let created = c.admin().get(&stream("team-a", "web")).await;
    assert_eq!(created.status, 200, "{}", created.text());

    let args = ["-n", "team-a", "get", "imagestreams", "-o", "name"];
    let out = stdout_of(&args, &kubectl(home.path(), &kubeconfig, &args).await);
    assert_eq!(out.trim(), "imagestream.image.openshift.io/web");

    let args = ["-n", "team-a", "delete", "imagestream", "web"];
    let out = stdout_of(&args, &kubectl(home.path(), &kubeconfig, &args).await);
    assert!(
        out.trim()
            .starts_with("imagestream.image.openshift.io \"web\" deleted"),
        "{out}"
    );
    let args = ["-n", "team-a", "get", "imagestreams", "-o", "name"];
    let out = stdout_of(&args, &kubectl(home.path(), &kubeconfig, &args).await);
    assert!(out.trim().is_empty(), "{out}");

    let args = ["-n", "team-b", "get", "imagestreams"];
    let denied = kubectl(home.path(), &kubeconfig, &args).await;
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("imagestreams.image.openshift.io is forbidden: User \"alice\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-b\": no rule matched"),
        "{stderr}"
    );
    assert!(proxy.requests() > 0);
}

// ---- pull secrets as import credentials ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_use_the_namespaces_pull_secrets() {
    use blackbox::registry::{test_image, PushFormat, Registry, RegistryOptions};
    let reg = tokio::task::block_in_place(|| {
        Registry::start(RegistryOptions {
            tls: true,
            htpasswd: Some(("user".into(), "s3cret".into())),
            ..Default::default()
        })
    });
    let pushed = tokio::task::block_in_place(|| {
        reg.push(
            &test_image("ps", "amd64", "linux"),
            "priv/app",
            "1",
            PushFormat::Oci,
        )
    });
    let auth = base64::engine::general_purpose::STANDARD.encode("user:s3cret");
    let config = json!({"auths": {reg.host.clone(): {"auth": auth}}}).to_string();
    let fake = fake_cluster(None).await;
    fake.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "pull", "namespace": "ns1"},
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(&config)}}),
    );
    let ca = reg.ca_file().expect("registry CA").display().to_string();
    let c = serve(fake, &[&format!("--registry-ca-file={ca}")]).await;
    let admin = c.admin();
    let from = format!("{}/priv/app:1", reg.host);
    let isi = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
        "metadata": {"name": "app"},
        "spec": {"import": false, "images": [{"from": {"kind": "DockerImage", "name": from}}]}});
    let import_in = |ns: &str| format!("{V1}/namespaces/{ns}/imagestreamimports");

    // ns1 holds the pull secret: the private image is found.
    let r = admin.post(&import_in("ns1"), &isi).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let done = r.json();
    assert_eq!(
        done["status"]["images"][0]["status"]["status"], "Success",
        "{done}"
    );
    assert_eq!(
        done["status"]["images"][0]["image"]["metadata"]["name"],
        pushed.as_str()
    );

    // team-a has none: the registry refuses, as upstream reports it.
    let r = admin.post(&import_in("team-a"), &isi).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let done = r.json();
    assert_eq!(done["status"]["images"][0]["status"]["code"], 401, "{done}");
}
