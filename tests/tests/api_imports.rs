//! Imports from container registries over HTTP (openshift-image-behavior.md §13, scenarios
//! 38–44): a real `docker-registry` on loopback, images pushed into it with skopeo from OCI
//! layouts built here, the built server importing them.

use std::time::{Duration, Instant};

use blackbox::api::{stream, streams, tag_items as items, Client, Resp, IMAGES};
use blackbox::registry::{test_image, test_index, PushFormat, Registry, RegistryOptions};
use blackbox::{start_embedded, start_etcd, Server};
use serde_json::{json, Value};

const V1: &str = "/apis/image.openshift.io/v1";

fn imports(ns: &str) -> String {
    format!("{V1}/namespaces/{ns}/imagestreamimports")
}

fn istag(ns: &str, name: &str) -> String {
    format!("{V1}/namespaces/{ns}/imagestreamtags/{name}")
}

/// Fixtures start processes and wait for them: off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn registry(options: RegistryOptions) -> Registry {
    blocking(|| Registry::start(options))
}

/// An image entry; `insecure` for the plain-HTTP test registry.
fn image(from: &str, to: Option<&str>, insecure: bool) -> Value {
    let mut v = json!({"from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": insecure}});
    if let Some(to) = to {
        v["to"] = json!({"name": to});
    }
    v
}

fn isi(name: &str, import: bool, images: Vec<Value>) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
        "metadata": {"name": name}, "spec": {"import": import, "images": images}})
}

async fn post(c: &Client, ns: &str, body: &Value) -> Value {
    let r = c.post(&imports(ns), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn first_status(done: &Value) -> &Value {
    &done["status"]["images"][0]["status"]
}

fn conditions(s: &Value, tag: &str) -> Vec<Value> {
    s["status"]["tags"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["tag"] == tag))
        .and_then(|t| t["conditions"].as_array().cloned())
        .unwrap_or_default()
}

/// Polls `check` on the stream until it holds or `within` passes; returns the last stream.
async fn wait_for(
    c: &Client,
    ns: &str,
    name: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = c.get(&stream(ns, name)).await;
        let s = r.json();
        if r.status == 200 && check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {within:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_of_scenario_38() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let r = c.post(&imports("ns"), &isi("app", false, vec![])).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.message().contains("spec.images: Invalid value: \"null\": you must specify at least one image or a repository import"), "{}", r.message());
    let mut wrong_kind = image("r/a/b:1", None, false);
    wrong_kind["from"]["kind"] = json!("ImageStreamTag");
    let r = c
        .post(&imports("ns"), &isi("app", false, vec![wrong_kind]))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.message().contains("spec.images[0].from.kind: Invalid value: \"ImageStreamTag\": only DockerImage is supported"), "{}", r.message());
    let mut repo = isi("app", false, vec![]);
    repo["spec"]["repository"] = json!({"from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}});
    let r = c.post(&imports("ns"), &repo).await;
    assert_eq!(r.status, 422);
    assert!(
        r.message()
            .contains("you must specify an image repository, not a tag or ID"),
        "{}",
        r.message()
    );
    let r = c
        .post(
            &imports("ns"),
            &isi("Bad", false, vec![image("r/a/b:1", None, false)]),
        )
        .await;
    assert_eq!(r.status, 422);
    // GET of one is not served; the collection answers only POST.
    assert_eq!(c.get(&format!("{}/app", imports("ns"))).await.status, 404);
    assert_eq!(c.get(&imports("ns")).await.status, 405);
    // Nothing was created by any of these.
    assert_eq!(c.get(&stream("ns", "app")).await.status, 404);
}

/// Scenarios 39 and 40 plus reimport and a new image, on `server`.
async fn preview_import_and_reimport(server: &Server) {
    let reg = registry(RegistryOptions::default());
    let one = test_image("one", "amd64", "linux");
    let d1 = blocking(|| reg.push(&one, "a/b", "1", PushFormat::Oci));
    let c = server.client();
    let from = format!("{}/a/b:1", reg.host);

    // Preview: no stream, no image, the digest and reference of the pushed manifest.
    let done = post(&c, "ns", &isi("app", false, vec![image(&from, None, true)])).await;
    let st = &done["status"]["images"][0];
    assert_eq!(st["status"]["status"], "Success", "{done}");
    assert_eq!(st["tag"], "1");
    assert_eq!(st["image"]["metadata"]["name"], d1.as_str());
    assert_eq!(
        st["image"]["dockerImageReference"],
        format!("{}/a/b@{d1}", reg.host)
    );
    assert!(st["image"].get("dockerImageManifest").is_none(), "{st}");
    assert_eq!(
        st["image"]["dockerImageLayers"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(c.get(&stream("ns", "app")).await.status, 404);
    assert_eq!(c.get(&format!("{IMAGES}/{d1}")).await.status, 404);

    // Import: the stream is created with the tag, the event and the annotation.
    let done = post(
        &c,
        "ns",
        &isi("app", true, vec![image(&from, Some("v1"), true)]),
    )
    .await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert_eq!(done["status"]["import"]["metadata"]["name"], "app");
    let s = c.get(&stream("ns", "app")).await.json();
    assert!(
        s["metadata"]["annotations"]["openshift.io/image.dockerRepositoryCheck"].is_string(),
        "{s}"
    );
    assert_eq!(s["metadata"]["generation"], 1);
    let spec = &s["spec"]["tags"][0];
    assert_eq!(spec["name"], "v1");
    assert_eq!(spec["from"]["name"], from.as_str());
    assert_eq!(spec["generation"], 1);
    let it = items(&s, "v1");
    assert_eq!(it.len(), 1, "{s}");
    assert_eq!(it[0]["image"], d1.as_str());
    assert_eq!(
        it[0]["dockerImageReference"],
        format!("{}/a/b@{d1}", reg.host)
    );
    assert_eq!(it[0]["generation"], 1);
    let img = c.get(&format!("{IMAGES}/{d1}")).await.json();
    assert!(
        img.get("dockerImageManifest").is_none(),
        "stored without its manifest: {img}"
    );
    assert_eq!(img["dockerImageLayers"].as_array().map(Vec::len), Some(1));
    assert_eq!(img["dockerImageMetadata"]["Architecture"], "amd64");
    let ist = c.get(&istag("ns", "app:v1")).await;
    assert_eq!(ist.status, 200, "{}", ist.text());
    assert_eq!(ist.json()["image"]["metadata"]["name"], d1.as_str());

    // The same import again writes nothing.
    let rv = s["metadata"]["resourceVersion"].clone();
    post(
        &c,
        "ns",
        &isi("app", true, vec![image(&from, Some("v1"), true)]),
    )
    .await;
    let again = c.get(&stream("ns", "app")).await.json();
    assert_eq!(
        again["metadata"]["resourceVersion"], rv,
        "an identical import wrote the stream"
    );

    // A new image behind the same tag is prepended to the history.
    let two = test_image("two", "amd64", "linux");
    let d2 = blocking(|| reg.push(&two, "a/b", "1", PushFormat::DockerSchema2));
    let done = post(
        &c,
        "ns",
        &isi("app", true, vec![image(&from, Some("v1"), true)]),
    )
    .await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    let s = c.get(&stream("ns", "app")).await.json();
    let it = items(&s, "v1");
    assert_eq!(
        it.iter().map(|i| i["image"].clone()).collect::<Vec<_>>(),
        [json!(d2), json!(d1)]
    );
    assert_eq!(it[0]["generation"], s["metadata"]["generation"]);
    let img = c.get(&format!("{IMAGES}/{d2}")).await.json();
    assert_eq!(
        img["dockerImageManifestMediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // The imports are counted.
    let metrics = c.get("/metrics").await.text();
    let successes = metrics
        .lines()
        .find(|l| l.starts_with("image_import_images_total{") && l.contains("result=\"Success\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(successes.is_some_and(|n| n >= 4.0), "{metrics}");
    assert!(
        metrics.contains("image_import_duration_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_import_and_reimport_embedded() {
    let server = start_embedded(&["--disable-import-controller"]).await;
    preview_import_and_reimport(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_import_and_reimport_etcd() {
    let (etcd, server) = start_etcd(&["--disable-import-controller"]).await;
    preview_import_and_reimport(&server).await;
    drop(server);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_scenario_41() {
    let reg = registry(RegistryOptions::default());
    blocking(|| {
        reg.push(
            &test_image("f", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let server = start_embedded(&["--disable-import-controller"]).await;
    let c = server.client();
    let missing_tag = format!("{}/a/b:nope", reg.host);
    let missing_repo = format!("{}/no/such:1", reg.host);
    let http_only = format!("{}/a/b:1", reg.host);
    let done = post(
        &c,
        "ns",
        &isi(
            "app",
            true,
            vec![
                image(&missing_tag, Some("nope"), true),
                image(&missing_repo, Some("repo"), true),
                image(&http_only, Some("plain"), false),
            ],
        ),
    )
    .await;
    let st = |i: usize| done["status"]["images"][i]["status"].clone();
    assert_eq!(st(0)["status"], "Failure", "{done}");
    assert_eq!(st(0)["code"], 404);
    assert_eq!(st(0)["reason"], "NotFound");
    assert_eq!(
        st(0)["message"],
        format!("dockerimage.image.openshift.io \"{missing_tag}\" not found")
    );
    assert_eq!(st(1)["code"], 404, "{done}");
    assert_eq!(st(2)["code"], 400, "{done}");
    assert_eq!(
        st(2)["message"],
        format!(
            "the repository {}/a/b is HTTP only and requires the insecure flag to import",
            reg.host
        )
    );
    // The failures are conditions on the stream's tags, which follow what was asked.
    let s = c.get(&stream("ns", "app")).await.json();
    let cond = conditions(&s, "nope");
    assert_eq!(cond.len(), 1, "{s}");
    assert_eq!(cond[0]["type"], "ImportSuccess");
    assert_eq!(cond[0]["status"], "False");
    assert_eq!(cond[0]["reason"], "NotFound");
    assert!(items(&s, "nope").is_empty());
    let spec: Vec<&Value> = s["spec"]["tags"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    assert!(
        spec.iter()
            .any(|t| t["name"] == "nope" && t["from"]["name"] == missing_tag.as_str()),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_self_signed_registries() {
    let reg = registry(RegistryOptions {
        tls: true,
        htpasswd: Some(("user".into(), "s3cret".into())),
        ..Default::default()
    });
    let pushed = blocking(|| {
        reg.push(
            &test_image("p", "amd64", "linux"),
            "priv/app",
            "1",
            PushFormat::Oci,
        )
    });
    let from = format!("{}/priv/app:1", reg.host);
    let dir = tempfile::tempdir().expect("tmp");
    let auth = |user: &str, pass: &str| {
        let path = dir.path().join(format!("{user}-{pass}.json"));
        let token = base64_of(&format!("{user}:{pass}"));
        std::fs::write(
            &path,
            json!({"auths": {reg.host.clone(): {"auth": token}}}).to_string(),
        )
        .expect("authfile");
        path.display().to_string()
    };
    let ca = reg.ca_file().expect("ca").display().to_string();

    // Self-signed without trusting it: a certificate error; insecure: past TLS, then refused.
    let server = start_embedded(&["--disable-import-controller"]).await;
    let c = server.client();
    let done = post(
        &c,
        "ns",
        &isi(
            "app",
            false,
            vec![image(&from, None, false), image(&from, None, true)],
        ),
    )
    .await;
    let st = &done["status"]["images"];
    assert_eq!(st[0]["status"]["code"], 500, "{done}");
    assert!(
        st[0]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("certificate"),
        "{done}"
    );
    assert_eq!(st[1]["status"]["code"], 401, "{done}");
    assert_eq!(
        st[1]["status"]["message"],
        format!("you may not have access to the container image \"{from}\"")
    );
    drop(server);

    // The CA trusted and the right password: imported. A wrong password: refused as such.
    let good = auth("user", "s3cret");
    let server = start_embedded(&[
        "--disable-import-controller",
        &format!("--registry-ca-file={ca}"),
        &format!("--authfile={good}"),
    ])
    .await;
    let done = post(
        &server.client(),
        "ns",
        &isi("app", false, vec![image(&from, None, false)]),
    )
    .await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert_eq!(
        done["status"]["images"][0]["image"]["metadata"]["name"],
        pushed.as_str()
    );
    drop(server);
    let bad = auth("user", "wrong");
    let server = start_embedded(&[
        "--disable-import-controller",
        &format!("--registry-ca-file={ca}"),
        &format!("--authfile={bad}"),
    ])
    .await;
    let done = post(
        &server.client(),
        "ns",
        &isi("app", false, vec![image(&from, None, false)]),
    )
    .await;
    assert_eq!(first_status(&done)["code"], 401, "{done}");
    assert_eq!(
        first_status(&done)["message"],
        format!("incorrect username or password for image \"{from}\"")
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_registry() {
    let tokens = blackbox::token_service::TokenService::start("robot", "t0ken").await;
    let reg = registry(RegistryOptions {
        token_auth: Some(tokens.config.clone()),
        ..Default::default()
    });
    let pushed = blocking(|| {
        reg.push(
            &test_image("t", "amd64", "linux"),
            "team/app",
            "1",
            PushFormat::Oci,
        )
    });
    let from = format!("{}/team/app:1", reg.host);
    let dir = tempfile::tempdir().expect("tmp");
    let authfile = dir.path().join("auth.json");
    std::fs::write(&authfile, json!({"auths": {format!("{}/team", reg.host): {"username": "robot", "password": "t0ken"}}}).to_string()).expect("authfile");

    let anonymous = start_embedded(&["--disable-import-controller"]).await;
    let done = post(
        &anonymous.client(),
        "ns",
        &isi("app", false, vec![image(&from, None, true)]),
    )
    .await;
    assert_eq!(first_status(&done)["code"], 401, "{done}");
    drop(anonymous);

    let before = tokens.requests();
    let server = start_embedded(&[
        "--disable-import-controller",
        &format!("--authfile={}", authfile.display()),
    ])
    .await;
    let done = post(
        &server.client(),
        "ns",
        &isi("app", false, vec![image(&from, None, true)]),
    )
    .await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert_eq!(
        done["status"]["images"][0]["image"]["metadata"]["name"],
        pushed.as_str()
    );
    assert!(tokens.requests() > before, "no token was asked for");

    // Three images of one repository in one import share its token (spec §13.4).
    blocking(|| {
        for tag in ["2", "3"] {
            reg.push(
                &test_image(&format!("t{tag}"), "amd64", "linux"),
                "team/app",
                tag,
                PushFormat::Oci,
            );
        }
    });
    let before = tokens.requests();
    let three = ["1", "2", "3"]
        .iter()
        .map(|tag| image(&format!("{}/team/app:{tag}", reg.host), None, true))
        .collect();
    let done = post(&server.client(), "ns", &isi("app", false, three)).await;
    for i in 0..3 {
        assert_eq!(
            done["status"]["images"][i]["status"]["status"], "Success",
            "{done}"
        );
    }
    assert_eq!(
        tokens.requests() - before,
        1,
        "one token for the repository, not one per image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_import_orders_and_limits_tags() {
    let reg = registry(RegistryOptions::default());
    let img = test_image("repo", "amd64", "linux");
    for tag in ["latest", "3.1", "3", "abc", "other", "v1", "v2"] {
        blocking(|| reg.push(&img, "a/b", tag, PushFormat::Oci));
    }
    let server = start_embedded(&[
        "--disable-import-controller",
        "--max-images-bulk-imported-per-repository=5",
    ])
    .await;
    let c = server.client();
    let mut body = isi("app", true, vec![]);
    body["spec"]["repository"] = json!({"from": {"kind": "DockerImage", "name": format!("{}/a/b", reg.host)}, "importPolicy": {"insecure": true}});
    let done = post(&c, "ns", &body).await;
    let repo = &done["status"]["repository"];
    assert_eq!(repo["status"]["status"], "Success", "{done}");
    let tags: Vec<&str> = repo["images"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["tag"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(tags, ["latest", "3.1", "3", "abc", "other"]);
    assert_eq!(repo["additionalTags"], json!(["v1", "v2"]));
    let s = c.get(&stream("ns", "app")).await.json();
    let spec = s["spec"]["tags"].as_array().cloned().unwrap_or_default();
    assert_eq!(spec.len(), 5, "{s}");
    assert!(spec
        .iter()
        .any(|t| t["name"] == "3.1" && t["from"]["name"] == format!("{}/a/b:3.1", reg.host)));
    // One image behind all tags: fetched once per tag, created once.
    assert_eq!(items(&s, "abc")[0]["image"], img.manifest_digest.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_lists_in_both_modes() {
    let reg = registry(RegistryOptions::default());
    let index = test_index("multi", &[("amd64", "linux"), ("arm64", "linux")]);
    let list = blocking(|| reg.push_index(&index, "a/multi", "1"));
    let child = |arch: &str| {
        index
            .children
            .iter()
            .find(|c| c.0 == arch)
            .map(|c| c.2.clone())
            .expect("child")
    };
    let server = start_embedded(&["--disable-import-controller"]).await;
    let c = server.client();
    let from = format!("{}/a/multi:1", reg.host);

    let mut preserve = image(&from, Some("all"), true);
    preserve["importPolicy"]["importMode"] = json!("PreserveOriginal");
    let done = post(&c, "ns", &isi("multi", true, vec![preserve])).await;
    let st = &done["status"]["images"][0];
    assert_eq!(st["status"]["status"], "Success", "{done}");
    assert_eq!(st["image"]["metadata"]["name"], list.as_str());
    assert_eq!(
        st["image"]["dockerImageManifests"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(st["manifests"].as_array().map(Vec::len), Some(2));
    for digest in [list.clone(), child("amd64"), child("arm64")] {
        assert_eq!(
            c.get(&format!("{IMAGES}/{digest}")).await.status,
            200,
            "{digest}"
        );
    }
    let layers = c
        .get(&format!("{}/layers", stream("ns", "multi")))
        .await
        .json();
    assert_eq!(
        layers["images"][&list]["manifests"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{layers}"
    );

    // Legacy picks this machine's platform (amd64 here), or what the tag prefers.
    let done = post(
        &c,
        "ns",
        &isi("multi", true, vec![image(&from, Some("legacy"), true)]),
    )
    .await;
    assert_eq!(
        done["status"]["images"][0]["image"]["metadata"]["name"],
        child(
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64")
                .as_str()
        )
        .as_str(),
        "{done}"
    );
    let r = c.patch(&stream("ns", "multi"), "application/merge-patch+json",
        &json!({"spec": {"tags": [{"name": "arm", "annotations": {"importer.image.openshift.io/prefer-arch": "arm64"}, "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": true}}]}}).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let done = post(
        &c,
        "ns",
        &isi("multi", true, vec![image(&from, Some("arm"), true)]),
    )
    .await;
    assert_eq!(
        done["status"]["images"][0]["image"]["metadata"]["name"],
        child("arm64").as_str(),
        "{done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_by_digest_and_dry_run() {
    let reg = registry(RegistryOptions::default());
    let digest = blocking(|| {
        reg.push(
            &test_image("g", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let server = start_embedded(&["--disable-import-controller"]).await;
    let c = server.client();
    let by_digest = format!("{}/a/b@{digest}", reg.host);

    // dryRun: the answer, but no stream and no image.
    let r = c
        .post(
            &format!("{}?dryRun=All", imports("ns")),
            &isi("app", true, vec![image(&by_digest, Some("d"), true)]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(first_status(&r.json())["status"], "Success");
    assert_eq!(c.get(&stream("ns", "app")).await.status, 404);
    assert_eq!(c.get(&format!("{IMAGES}/{digest}")).await.status, 404);

    // An RV for a missing stream: 404.
    let mut body = isi("app", true, vec![image(&by_digest, Some("d"), true)]);
    body["metadata"]["resourceVersion"] = json!("1");
    assert_eq!(c.post(&imports("ns"), &body).await.status, 404);

    let done = post(
        &c,
        "ns",
        &isi("app", true, vec![image(&by_digest, Some("d"), true)]),
    )
    .await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert_eq!(
        done["status"]["images"][0]["tag"],
        json!(null),
        "digest imports have no tag"
    );
    let s = c.get(&stream("ns", "app")).await.json();
    assert_eq!(items(&s, "d")[0]["image"], digest.as_str());

    // A stale RV: 409; another uid: 404; the current ones: imported.
    let mut stale = body.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = c.post(&imports("ns"), &stale).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.message()
            .contains("the image stream was updated from \"1\" to"),
        "{}",
        r.message()
    );
    let mut other = body.clone();
    other["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    other["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"].clone();
    assert_eq!(c.post(&imports("ns"), &other).await.status, 404);
    let mut current = body;
    current["metadata"]["uid"] = s["metadata"]["uid"].clone();
    current["metadata"]["resourceVersion"] = s["metadata"]["resourceVersion"].clone();
    assert_eq!(c.post(&imports("ns"), &current).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_and_blocked_registries_from_registries_conf() {
    let reg = registry(RegistryOptions::default());
    let digest = blocking(|| {
        reg.push(
            &test_image("m", "amd64", "linux"),
            "mirror/app",
            "1",
            PushFormat::Oci,
        )
    });
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("registries.conf");
    // The source (a closed port) is unreachable; its mirror serves the repository.
    std::fs::write(
        &conf,
        format!(
            r#"
[[registry]]
prefix = "127.0.0.1:1/src"
location = "127.0.0.1:1/src"
[[registry.mirror]]
location = "{}/mirror"
insecure = true

[[registry]]
location = "blocked.example.com"
blocked = true
"#,
            reg.host
        ),
    )
    .expect("conf");
    let server = start_embedded(&[
        "--disable-import-controller",
        &format!("--registries-conf={}", conf.display()),
    ])
    .await;
    let c = server.client();
    let done = post(
        &c,
        "ns",
        &isi(
            "app",
            true,
            vec![
                image("127.0.0.1:1/src/app:1", Some("m"), false),
                image("blocked.example.com/a/b:1", Some("b"), false),
            ],
        ),
    )
    .await;
    let st = &done["status"]["images"];
    assert_eq!(st[0]["status"]["status"], "Success", "{done}");
    assert_eq!(st[0]["image"]["metadata"]["name"], digest.as_str());
    assert_eq!(
        st[0]["image"]["dockerImageReference"],
        format!("127.0.0.1:1/src/app@{digest}"),
        "named by its source"
    );
    assert_eq!(st[1]["status"]["code"], 403, "{done}");
    assert_eq!(
        st[1]["status"]["message"],
        "forbidden: registry blocked.example.com blocked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_imports_schedules_and_retries() {
    let reg = registry(RegistryOptions::default());
    let first = blocking(|| {
        reg.push(
            &test_image("c1", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let server = start_embedded(&[
        "--scheduled-image-import-minimum-interval=2s",
        "--max-scheduled-image-imports-per-minute=600",
    ])
    .await;
    let c = server.client();
    let from = format!("{}/a/b:1", reg.host);
    let later = format!("{}/a/b:later", reg.host);
    let body = json!({"metadata": {"name": "app"}, "spec": {"tags": [
        {"name": "v1", "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": true, "scheduled": true}},
        {"name": "later", "from": {"kind": "DockerImage", "name": later}, "importPolicy": {"insecure": true}},
    ]}});
    assert_eq!(c.post(&streams("ns"), &body).await.status, 201);

    // The tag fills in by itself; the missing one records its failure.
    let s = wait_for(&c, "ns", "app", Duration::from_secs(20), |s| {
        !items(s, "v1").is_empty() && !conditions(s, "later").is_empty()
    })
    .await;
    assert_eq!(items(&s, "v1")[0]["image"], first.as_str());
    assert_eq!(conditions(&s, "later")[0]["reason"], "NotFound");

    // The missing image appears: the failed tag retries on its own.
    let appeared = blocking(|| {
        reg.push(
            &test_image("c2", "amd64", "linux"),
            "a/b",
            "later",
            PushFormat::Oci,
        )
    });
    let s = wait_for(&c, "ns", "app", Duration::from_secs(30), |s| {
        !items(s, "later").is_empty()
    })
    .await;
    assert_eq!(items(&s, "later")[0]["image"], appeared.as_str());
    assert!(conditions(&s, "later").is_empty());

    // Nothing changes upstream: scheduled checks only HEAD the manifest.
    let gets = reg.requests("GET", "/v2/a/b/manifests/1");
    let heads = reg.requests("HEAD", "/v2/a/b/manifests/1");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        reg.requests("HEAD", "/v2/a/b/manifests/1") > heads,
        "no scheduled check happened"
    );
    assert_eq!(
        reg.requests("GET", "/v2/a/b/manifests/1"),
        gets,
        "an unchanged tag was fetched again"
    );

    // A new image under the scheduled tag is picked up.
    let second = blocking(|| {
        reg.push(
            &test_image("c3", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let s = wait_for(&c, "ns", "app", Duration::from_secs(20), |s| {
        items(s, "v1").len() == 2
    })
    .await;
    assert_eq!(items(&s, "v1")[0]["image"], second.as_str());

    // Generation 0 asks for a new import, which records the current generation.
    let mut s = c.get(&stream("ns", "app")).await.json();
    let tags = s["spec"]["tags"].as_array_mut().expect("tags");
    let later_tag = tags
        .iter_mut()
        .find(|t| t["name"] == "later")
        .expect("later");
    later_tag["generation"] = json!(0);
    let r = c.put(&stream("ns", "app"), &s).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The import resets the tag, so the event records the generation after the PUT's.
    let generation = r.json()["metadata"]["generation"]
        .as_i64()
        .expect("generation");
    let s = wait_for(&c, "ns", "app", Duration::from_secs(20), |s| {
        items(s, "later")[0]["generation"].as_i64().unwrap_or(0) > generation
    })
    .await;
    assert_eq!(
        items(&s, "later")[0]["generation"],
        s["metadata"]["generation"]
    );
    assert_eq!(
        items(&s, "later").len(),
        1,
        "the same image: no new history entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_registries_are_contained() {
    use blackbox::hostile::{Fault, Hostile};
    let reg = registry(RegistryOptions::default());
    let digest = blocking(|| {
        reg.push(
            &test_image("h", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let upstream = Some(format!("http://{}", reg.host));
    let server =
        start_embedded(&["--disable-import-controller", "--image-import-timeout=6s"]).await;
    let c = server.client();
    let one = |host: &str, reference: &str| {
        isi(
            "app",
            false,
            vec![image(&format!("{host}/a/b{reference}"), None, true)],
        )
    };

    // A registry that never answers: the deadline, and the server keeps serving meanwhile.
    let hang = Hostile::start(Fault::Hang, None).await;
    let started = Instant::now();
    let slow = {
        let c = server.client();
        let body = one(&hang.host, ":1");
        tokio::spawn(async move { c.post(&imports("ns"), &body).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quick = Instant::now();
    assert_eq!(c.get(&streams("ns")).await.status, 200);
    assert!(
        quick.elapsed() < Duration::from_secs(2),
        "a hung registry held other requests"
    );
    let done: Resp = slow.await.expect("join");
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(first_status(&done.json())["code"], 504, "{}", done.text());
    assert!(started.elapsed() < Duration::from_secs(15));

    for fault in [Fault::Garbage, Fault::GarbageManifest] {
        let bad = Hostile::start(fault, upstream.clone()).await;
        let done = post(&c, "ns", &one(&bad.host, ":1")).await;
        assert_eq!(first_status(&done)["code"], 500, "{fault:?}: {done}");
    }
    let wrong = Hostile::start(Fault::WrongDigest, upstream.clone()).await;
    let done = post(&c, "ns", &one(&wrong.host, &format!("@{digest}"))).await;
    assert_eq!(first_status(&done)["code"], 500, "{done}");
    assert!(
        first_status(&done)["message"]
            .as_str()
            .unwrap_or("")
            .contains("content integrity error"),
        "{done}"
    );

    // A 503 and a 429 with Retry-After recover on retry, within the deadline.
    let flaky = Hostile::start(Fault::ServerErrorsThenOk(1), upstream.clone()).await;
    let done = post(&c, "ns", &one(&flaky.host, ":1")).await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert!(flaky.requests_to("/manifests/") >= 2);
    let throttled = Hostile::start(
        Fault::TooManyRequests {
            times: 1,
            retry_after_secs: 1,
        },
        upstream,
    )
    .await;
    let started = Instant::now();
    let done = post(&c, "ns", &one(&throttled.host, ":1")).await;
    assert_eq!(first_status(&done)["status"], "Success", "{done}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honored"
    );
}

/// A registry that refuses connections is pinged once per import (with its retries) and its
/// error given to every image it serves, whatever their repositories, as upstream's importer
/// does; an image of another registry in the same import still succeeds. Each image paying
/// its own ping and retries (2 s) would need 64 / 8 x 2 s = 16 s, past the 6 s deadline: the
/// later ones would end in a 504 Timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_fails_all_its_images_with_its_own_error() {
    let reg = registry(RegistryOptions::default());
    blocking(|| {
        reg.push(
            &test_image("u", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let server =
        start_embedded(&["--disable-import-controller", "--image-import-timeout=6s"]).await;
    let c = server.client();
    let dead = |i: usize| format!("127.0.0.1:1/a/b{i}:v{i}");
    let mut images: Vec<Value> = (0..64).map(|i| image(&dead(i), None, true)).collect();
    images.push(image(&format!("{}/a/b:1", reg.host), None, true));
    // A reference the client cannot ask for fails as it is, without waiting for the ping.
    let sha512 = format!("127.0.0.1:1/a/c@sha512:{}", "ab".repeat(64));
    images.push(image(&sha512, None, true));

    let done = post(&c, "ns", &isi("app", false, images)).await;
    let statuses: Vec<&Value> = done["status"]["images"]
        .as_array()
        .map(|a| a.iter().map(|i| &i["status"]).collect())
        .unwrap_or_default();
    assert_eq!(statuses.len(), 66, "{done}");
    let mut errors = std::collections::BTreeSet::new();
    for (i, status) in statuses[..64].iter().enumerate() {
        assert_eq!(status["code"], 500, "image {i}: {status}");
        assert_eq!(status["reason"], "InternalError", "image {i}: {status}");
        let message = status["message"].as_str().unwrap_or("");
        let prefix = format!("Internal error occurred: {}: ", dead(i));
        let error = message.strip_prefix(&prefix);
        assert!(error.is_some(), "image {i}: {message}");
        errors.extend(error.map(str::to_string));
    }
    assert_eq!(errors.len(), 1, "one ping, one error for all: {errors:?}");
    assert_eq!(statuses[64]["status"], "Success", "{}", statuses[64]);
    let refused = statuses[65]["message"].as_str().unwrap_or("");
    assert!(
        refused.contains("only sha256 is supported"),
        "{}",
        statuses[65]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_imports_and_lists_istags() {
    let reg = registry(RegistryOptions::default());
    blocking(|| {
        reg.push(
            &test_image("k", "amd64", "linux"),
            "a/b",
            "1",
            PushFormat::Oci,
        )
    });
    let server = start_embedded(&["--disable-import-controller"]).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("isi.json");
    std::fs::write(
        &file,
        isi(
            "app",
            true,
            vec![image(&format!("{}/a/b:1", reg.host), Some("v1"), true)],
        )
        .to_string(),
    )
    .expect("write");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg(format!("--kubeconfig={}", server.kubeconfig().display()))
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let created: Value = serde_json::from_str(&blocking(|| {
        kubectl(&[
            "create",
            "-n",
            "ns",
            "-f",
            &file.display().to_string(),
            "-o",
            "json",
        ])
    }))
    .expect("json");
    assert_eq!(
        created["status"]["images"][0]["status"]["status"], "Success",
        "{created}"
    );
    let listed = blocking(|| kubectl(&["get", "istag", "-n", "ns"]));
    assert!(listed.lines().any(|l| l.starts_with("app:v1")), "{listed}");
}
