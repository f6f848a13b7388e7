//! Standalone security, no cluster (spec §8.4, §8.5, §8.7): the policy file, client
//! certificates, impersonation, `kubectl auth`, the audit log, the TLS floor, per-user fairness
//! and the start-up errors of bad settings. Every server here runs on the embedded store.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox::api::{stream, streams, Client, Resp, IMAGES};
use blackbox::pki::{https_client_with_identity, pem_certificates, Identity, TestCa};
use blackbox::{https_client, start_embedded, Server};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admintoken";
const ALICE_TOKEN: &str = "alicetoken";
const BOB_TOKEN: &str = "bobtoken";

const SELF_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
const IMPORTS: &str = "/apis/image.openshift.io/v1/namespaces/team-a/imagestreamimports";

/// alice may work with image streams and image stream tags in team-a, and act as bob; bob may
/// do only what every authenticated user may (discovery, self reviews).
const POLICY: &str = r#"rules:
- users: [alice]
  namespaces: [team-a]
  verbs: [get, list, watch, create, update, patch, delete]
  apiGroups: ["image.openshift.io"]
  resources: [imagestreams, imagestreamtags]
- users: [alice]
  verbs: [impersonate]
  apiGroups: [""]
  resources: [users]
  resourceNames: [bob]
"#;

/// kube's token file: an admin (system:masters), alice and bob (no groups of their own).
fn write_token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens.csv");
    let text = format!(
        "{ADMIN_TOKEN},admin,admin,\"system:masters\"\n{ALICE_TOKEN},alice,alice\n{BOB_TOKEN},bob,bob\n"
    );
    std::fs::write(&path, text).expect("write the token file");
    path
}

fn write_policy(dir: &Path) -> PathBuf {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, POLICY).expect("write the policy file");
    path
}

/// A kubeconfig for `user` with `token`, trusting the CA the server generated; its context's
/// namespace is team-a.
fn write_kubeconfig(dir: &Path, server: &Server, user: &str, token: &str) -> PathBuf {
    let path = dir.join(format!("{user}.kubeconfig"));
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: image-apiserver
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: {user}
  context:
    cluster: image-apiserver
    user: {user}
    namespace: team-a
current-context: {user}
",
        server = server.base,
        ca = server.data_dir().join("ca.crt").display(),
    );
    std::fs::write(&path, text).expect("write the kubeconfig");
    path
}

/// A server started with the token file and the policy; the directory holding them (and the
/// data directory) lives as long as the fixture. The server is dropped first.
struct Secured {
    server: Server,
    dir: tempfile::TempDir,
}

impl Secured {
    /// `extra` gives further flags, from the fixture's directory.
    async fn start<F>(extra: F) -> Secured
    where
        F: FnOnce(&Path) -> Vec<String> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::Builder::new()
                .prefix("image-apiserver-policy-")
                .tempdir()
                .expect("temp dir");
            let mut args = vec![
                format!(
                    "--token-auth-file={}",
                    write_token_file(dir.path()).display()
                ),
                format!(
                    "--authorization-policy-file={}",
                    write_policy(dir.path()).display()
                ),
            ];
            args.extend(extra(dir.path()));
            let server = Server::start_with(&dir.path().join("data"), &args);
            Secured { server, dir }
        })
        .await
        .expect("start the server")
    }

    fn with_token(&self, token: &str) -> Client {
        Client::new(
            &self.server.base,
            https_client(self.server.data_dir(), Some(token)),
        )
    }

    fn admin(&self) -> Client {
        self.with_token(ADMIN_TOKEN)
    }

    fn alice(&self) -> Client {
        self.with_token(ALICE_TOKEN)
    }

    fn bob(&self) -> Client {
        self.with_token(BOB_TOKEN)
    }
}

fn new_stream(name: &str) -> Value {
    json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": {"name": name}})
}

/// POSTs a SelfSubjectReview with `headers` (impersonation, say).
async fn whoami(client: &Client, headers: &[(&str, &str)]) -> Resp {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    client
        .request(
            Method::POST,
            SELF_REVIEWS,
            &all,
            Some(review.to_string().into_bytes()),
        )
        .await
}

/// The userInfo of a successful SelfSubjectReview.
fn reviewed_user(r: &Resp) -> Value {
    assert_eq!(r.status, 201, "{}", r.text());
    let review = r.json();
    assert_eq!(review["kind"], "SelfSubjectReview", "{review}");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1", "{review}");
    review["status"]["userInfo"].clone()
}

/// A 403 Status carrying exactly `message`.
fn assert_forbidden(r: &Resp, message: &str) {
    assert_eq!(r.status, 403, "{}", r.text());
    let status = r.json();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["status"], "Failure", "{status}");
    assert_eq!(status["reason"], "Forbidden", "{status}");
    assert_eq!(status["code"], 403, "{status}");
    assert_eq!(status["message"], message, "{status}");
}

/// A 401 Status, as kube answers it.
fn assert_unauthorized(r: &Resp) {
    assert_eq!(r.status, 401, "{}", r.text());
    let status = r.json();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "Unauthorized", "{status}");
    assert_eq!(status["message"], "Unauthorized", "{status}");
    assert_eq!(status["code"], 401, "{status}");
}

/// kube's message for a denied list of image streams in `ns`.
fn list_forbidden(user: &str, ns: &str) -> String {
    format!(
        "imagestreams.image.openshift.io is forbidden: User \"{user}\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"{ns}\""
    )
}

/// kube's message for a denied impersonation of `name` (a user or a group) by `actor`.
fn impersonation_forbidden(actor: &str, resource: &str, name: &str) -> String {
    format!(
        "{resource} \"{name}\" is forbidden: User \"{actor}\" cannot impersonate resource \"{resource}\" in API group \"\" at the cluster scope"
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The machine's kubectl with one kubeconfig and a private HOME (its discovery cache).
struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(kubeconfig: PathBuf) -> Kubectl {
        Kubectl {
            kubeconfig,
            home: tempfile::tempdir().expect("kubectl home"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        tokio::task::block_in_place(|| {
            Command::new("kubectl")
                .env("HOME", self.home.path())
                .env("KUBECONFIG", &self.kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run kubectl")
        })
    }

    /// Runs and expects exit code `code`; returns the trimmed stdout.
    fn expect_code(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "kubectl {args:?}: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_file_confines_users_to_their_grants() {
    let s = Secured::start(|_| Vec::new()).await;
    let alice = s.alice();

    // Her namespace: create, read, list.
    let created = alice.post(&streams("team-a"), &new_stream("web")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let list = alice.get(&streams("team-a")).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let names: Vec<Value> = list.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("web")]);
    assert_eq!(alice.get(&stream("team-a", "web")).await.status, 200);
    let tags = alice
        .get("/apis/image.openshift.io/v1/namespaces/team-a/imagestreamtags")
        .await;
    assert_eq!(tags.status, 200, "{}", tags.text());

    // Another namespace: nothing. The policy has no opinion and gives no reason, so the
    // message carries no ": <reason>" suffix.
    let other = alice.get(&streams("team-b")).await;
    assert_forbidden(&other, &list_forbidden("alice", "team-b"));
    assert_eq!(
        other.json()["details"],
        json!({"group": "image.openshift.io", "kind": "imagestreams"})
    );
    let r = alice.post(&streams("team-b"), &new_stream("web")).await;
    assert_forbidden(
        &r,
        "imagestreams.image.openshift.io is forbidden: User \"alice\" cannot create resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-b\"",
    );
    let r = alice.get(&stream("team-b", "web")).await;
    assert_forbidden(
        &r,
        "imagestreams.image.openshift.io \"web\" is forbidden: User \"alice\" cannot get resource \"imagestreams\" in API group \"image.openshift.io\" in the namespace \"team-b\"",
    );
    assert_eq!(
        r.json()["details"],
        json!({"name": "web", "group": "image.openshift.io", "kind": "imagestreams"})
    );

    // "imagestreams" does not cover its subresources.
    let r = alice
        .get(&format!("{}/status", stream("team-a", "web")))
        .await;
    assert_forbidden(
        &r,
        "imagestreams.image.openshift.io \"web\" is forbidden: User \"alice\" cannot get resource \"imagestreams/status\" in API group \"image.openshift.io\" in the namespace \"team-a\"",
    );

    // The cluster scope, and lists across namespaces, need a rule without namespaces.
    let r = alice.get(IMAGES).await;
    assert_forbidden(
        &r,
        "images.image.openshift.io is forbidden: User \"alice\" cannot list resource \"images\" in API group \"image.openshift.io\" at the cluster scope",
    );
    let r = alice.get("/apis/image.openshift.io/v1/imagestreams").await;
    assert_forbidden(
        &r,
        "imagestreams.image.openshift.io is forbidden: User \"alice\" cannot list resource \"imagestreams\" in API group \"image.openshift.io\" at the cluster scope",
    );

    // Non-resource paths: discovery is every authenticated user's, /metrics is not.
    assert_eq!(alice.get("/apis").await.status, 200);
    assert_eq!(alice.get("/apis/image.openshift.io/v1").await.status, 200);
    let r = alice.get("/metrics").await;
    assert_forbidden(&r, "forbidden: User \"alice\" cannot get path \"/metrics\"");

    // bob is granted nothing but the basics.
    let bob = s.bob();
    assert_forbidden(
        &bob.get(&streams("team-a")).await,
        &list_forbidden("bob", "team-a"),
    );
    assert_eq!(bob.get("/apis").await.status, 200);

    // system:masters may do anything.
    let admin = s.admin();
    assert_eq!(admin.get(&streams("team-b")).await.status, 200);
    assert_eq!(admin.get(IMAGES).await.status, 200);
    assert_eq!(admin.get("/metrics").await.status, 200);

    // Without credentials only the health paths answer; a token nobody knows is no better.
    let anonymous = s.server.anonymous();
    assert_unauthorized(&anonymous.get(&streams("team-a")).await);
    assert_unauthorized(&anonymous.get("/apis").await);
    assert_unauthorized(&anonymous.get("/version").await);
    assert_unauthorized(&s.with_token("nosuchtoken").get(&streams("team-a")).await);
    assert_eq!(anonymous.get("/readyz").await.status, 200);
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    assert_eq!(anonymous.get("/livez").await.status, 200);

    // And alice may delete in her namespace.
    let deleted = alice.delete(&stream("team-a", "web")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(admin.get(&stream("team-a", "web")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_and_whoami_for_a_policy_user() {
    let s = Secured::start(|_| Vec::new()).await;
    let k = Kubectl::new(write_kubeconfig(
        s.dir.path(),
        &s.server,
        "alice",
        ALICE_TOKEN,
    ));

    // can-i exits 0 for yes and 1 for no.
    let streams_resource = "imagestreams.image.openshift.io";
    let can_i = [
        (["list", streams_resource, "-n", "team-a"], 0, "yes"),
        (["create", streams_resource, "-n", "team-a"], 0, "yes"),
        (["list", streams_resource, "-n", "team-b"], 1, "no"),
        (
            ["list", "images.image.openshift.io", "-n", "team-a"],
            1,
            "no",
        ),
        (["impersonate", "users/bob", "-n", "team-a"], 0, "yes"),
        (["impersonate", "users/carol", "-n", "team-a"], 1, "no"),
    ];
    for (question, code, answer) in can_i {
        let mut args = vec!["auth", "can-i"];
        args.extend(question);
        assert_eq!(k.expect_code(&args, code), answer, "{question:?}");
    }

    let me: Value = serde_json::from_str(&k.expect_code(&["auth", "whoami", "-o", "json"], 0))
        .expect("whoami prints JSON");
    assert_eq!(me["status"]["userInfo"]["username"], "alice", "{me}");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["system:authenticated"]),
        "{me}"
    );

    // Requests through the policy, as kubectl shows them.
    k.expect_code(&["get", "imagestreams", "-n", "team-a"], 0);
    let err = k.fails(&["get", "imagestreams", "-n", "team-b"]);
    assert!(
        err.contains(&format!(
            "Error from server (Forbidden): {}",
            list_forbidden("alice", "team-b")
        )),
        "{err}"
    );

    // --as sends Impersonate-User.
    let as_bob: Value =
        serde_json::from_str(&k.expect_code(&["--as=bob", "auth", "whoami", "-o", "json"], 0))
            .expect("whoami prints JSON");
    assert_eq!(as_bob["status"]["userInfo"]["username"], "bob", "{as_bob}");
    // kubectl turns any 403 of whoami into a message of its own...
    let err = k.fails(&["--as=carol", "auth", "whoami"]);
    assert!(
        err.contains("you do not have permission to call it"),
        "{err}"
    );
    // ...but shows the server's for other requests.
    let err = k.fails(&[
        "--as=carol",
        "get",
        "--raw",
        "/apis/image.openshift.io/v1/namespaces/team-a/imagestreams",
    ]);
    assert!(
        err.contains(&impersonation_forbidden("alice", "users", "carol")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_needs_leave_for_every_identity() {
    let s = Secured::start(|_| Vec::new()).await;
    let alice = s.alice();

    // The policy lets alice act as bob, who then has bob's rights only.
    let r = whoami(&alice, &[("Impersonate-User", "bob")]).await;
    assert_eq!(
        reviewed_user(&r),
        json!({"username": "bob", "groups": ["system:authenticated"]})
    );
    let r = alice
        .request(
            Method::GET,
            &streams("team-a"),
            &[("Impersonate-User", "bob")],
            None,
        )
        .await;
    assert_forbidden(&r, &list_forbidden("bob", "team-a"));

    // Nobody else.
    let r = whoami(&alice, &[("Impersonate-User", "carol")]).await;
    assert_forbidden(&r, &impersonation_forbidden("alice", "users", "carol"));
    assert_eq!(
        r.json()["details"],
        json!({"name": "carol", "kind": "users"})
    );
    // Every group asked for needs its own leave, even next to an allowed user.
    let r = whoami(
        &alice,
        &[("Impersonate-User", "bob"), ("Impersonate-Group", "admins")],
    )
    .await;
    assert_forbidden(&r, &impersonation_forbidden("alice", "groups", "admins"));
    // bob may impersonate nobody.
    let r = whoami(&s.bob(), &[("Impersonate-User", "alice")]).await;
    assert_forbidden(&r, &impersonation_forbidden("bob", "users", "alice"));

    // Groups without a user: kube's plain-text 500, naming the request URI (the path and
    // query, as Go's RequestURI, whatever the HTTP version).
    let r = alice
        .request(
            Method::GET,
            &streams("team-a"),
            &[("Impersonate-Group", "x")],
            None,
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = r.text();
    assert!(
        body.starts_with(&format!(
            "Internal Server Error: \"{}\": ",
            streams("team-a")
        )),
        "{body}"
    );
    assert!(body.contains("without impersonating a user"), "{body}");

    // system:masters may be anyone, and then has only that one's rights.
    let admin = s.admin();
    let r = whoami(&admin, &[("Impersonate-User", "alice")]).await;
    assert_eq!(
        reviewed_user(&r),
        json!({"username": "alice", "groups": ["system:authenticated"]})
    );
    let r = admin
        .request(
            Method::GET,
            &streams("team-b"),
            &[("Impersonate-User", "alice")],
            None,
        )
        .await;
    assert_forbidden(&r, &list_forbidden("alice", "team-b"));
    let r = admin
        .request(
            Method::GET,
            &streams("team-a"),
            &[("Impersonate-User", "alice")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Groups, uid and extras asked for are the impersonated user's.
    let r = whoami(
        &admin,
        &[
            ("Impersonate-User", "carol"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Uid", "u-9"),
            ("Impersonate-Extra-Scopes", "view"),
        ],
    )
    .await;
    assert_eq!(
        reviewed_user(&r),
        json!({
            "username": "carol",
            "uid": "u-9",
            "groups": ["dev", "system:authenticated"],
            "extra": {"scopes": ["view"]},
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_of_the_client_ca_name_the_user() {
    let cas = tempfile::tempdir().expect("temp dir");
    let clients = TestCa::new("clients");
    let flag = format!(
        "--client-ca-file={}",
        clients.write(cas.path(), "clients.crt").display()
    );
    let server = start_embedded(&[flag.as_str()]).await;
    let server_ca =
        std::fs::read_to_string(server.data_dir().join("ca.crt")).expect("the server's CA");
    let presenting = |identity: &Identity| {
        Client::new(
            &server.base,
            https_client_with_identity(&server_ca, Some(identity), None),
        )
    };

    // CN is the user, O the groups.
    let carol = presenting(&clients.client_cert("carol", &["team-x"]));
    assert_eq!(
        reviewed_user(&whoami(&carol, &[]).await),
        json!({"username": "carol", "groups": ["team-x", "system:authenticated"]})
    );
    assert_forbidden(
        &carol.get(&streams("team-a")).await,
        &list_forbidden("carol", "team-a"),
    );
    let ops = presenting(&clients.client_cert("ops", &["ops", "system:masters"]));
    assert_eq!(
        reviewed_user(&whoami(&ops, &[]).await),
        json!({"username": "ops", "groups": ["ops", "system:masters", "system:authenticated"]})
    );
    assert_eq!(ops.get(&streams("team-a")).await.status, 200);

    // A certificate of another CA is refused, whatever it claims.
    let mallory = presenting(&TestCa::new("elsewhere").client_cert("mallory", &["system:masters"]));
    assert_unauthorized(&whoami(&mallory, &[]).await);
    assert_unauthorized(&mallory.get(&streams("team-a")).await);
    // No certificate, no token: anonymous, which is off.
    assert_unauthorized(&server.anonymous().get(&streams("team-a")).await);
    // The generated admin token still works next to the client CA.
    assert_eq!(server.client().get(&streams("team-a")).await.status, 200);
}

/// The complete lines of the audit log (none while it does not exist).
fn audit_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written has no newline yet: leave it for the next look.
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect()
}

fn event_with_id<'a>(events: &'a [Value], id: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["auditID"] == id)
        .unwrap_or_else(|| panic!("no audit event {id} in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_writes_and_denials_only() {
    let s = Secured::start(|dir| {
        vec![format!(
            "--audit-log-path={}",
            dir.join("audit").join("audit.log").display()
        )]
    })
    .await;
    let log = s.dir.path().join("audit").join("audit.log");
    let alice = s.alice();
    let audit_id = |r: &Resp| r.header("audit-id").expect("an Audit-Id header");

    assert_eq!(alice.get(&streams("team-a")).await.status, 200);
    let created = alice.post(&streams("team-a"), &new_stream("web")).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(alice.get(&stream("team-a", "web")).await.status, 200);
    assert_eq!(alice.get("/apis").await.status, 200);
    let denied = alice.get(&streams("team-b")).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    let as_bob = alice
        .request(
            Method::POST,
            &streams("team-a"),
            &[
                ("content-type", "application/json"),
                ("Impersonate-User", "bob"),
            ],
            Some(new_stream("other").to_string().into_bytes()),
        )
        .await;
    assert_eq!(as_bob.status, 403, "{}", as_bob.text());
    let unauthenticated = s.server.anonymous().get(&streams("team-a")).await;
    assert_eq!(unauthenticated.status, 401);

    // Events are written in the order they were recorded: once the 401 is there, so is
    // everything before it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = audit_events(&log);
        if events.iter().any(|e| e["responseStatus"]["code"] == 401) {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "no 401 in the audit log within 5 s: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The create, the two denials and the 401; none of the successful reads.
    assert_eq!(events.len(), 4, "{events:#?}");
    assert!(
        !events.iter().any(|e| e["responseStatus"]["code"] == 200),
        "{events:#?}"
    );

    let create = event_with_id(&events, &audit_id(&created));
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "Metadata");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["verb"], "create");
    // kube's requestURI is the path and query (Go's RequestURI), also over HTTP/2.
    assert_eq!(create["requestURI"], streams("team-a"), "{create}");
    assert_eq!(
        create["user"],
        json!({"username": "alice", "uid": "alice", "groups": ["system:authenticated"]})
    );
    assert!(create.get("impersonatedUser").is_none(), "{create}");
    assert_eq!(create["sourceIPs"], json!(["127.0.0.1"]));
    assert_eq!(create["objectRef"]["resource"], "imagestreams");
    assert_eq!(create["objectRef"]["namespace"], "team-a");
    assert_eq!(create["objectRef"]["apiGroup"], "image.openshift.io");
    assert_eq!(create["objectRef"]["apiVersion"], "v1");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );

    let list = event_with_id(&events, &audit_id(&denied));
    assert_eq!(list["verb"], "list");
    assert_eq!(list["requestURI"], streams("team-b"), "{list}");
    assert_eq!(list["user"]["username"], "alice");
    assert_eq!(list["objectRef"]["resource"], "imagestreams");
    assert_eq!(list["objectRef"]["namespace"], "team-b");
    assert_eq!(list["responseStatus"]["code"], 403);
    assert_eq!(
        list["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(list["annotations"]["authorization.k8s.io/reason"], "");

    let impersonated = event_with_id(&events, &audit_id(&as_bob));
    assert_eq!(impersonated["verb"], "create");
    assert_eq!(impersonated["user"]["username"], "alice");
    assert_eq!(
        impersonated["impersonatedUser"],
        json!({"username": "bob", "groups": ["system:authenticated"]})
    );
    assert_eq!(impersonated["objectRef"]["namespace"], "team-a");
    assert_eq!(impersonated["responseStatus"]["code"], 403);
    assert_eq!(
        impersonated["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    let anonymous = event_with_id(&events, &audit_id(&unauthenticated));
    assert_eq!(anonymous["responseStatus"]["code"], 401);
    assert_eq!(anonymous["user"], json!({}));
    assert!(anonymous.get("annotations").is_none(), "{anonymous}");
    assert_eq!(anonymous["requestURI"], streams("team-a"), "{anonymous}");
    // kube resolves the request info before authenticating: a GET of a collection is a
    // list even when nobody is authenticated.
    assert_eq!(anonymous["verb"], "list", "{anonymous}");
}

/// A client that offers TLS 1.2 only, trusting the server's generated CA.
fn tls12_only_client(data_dir: &Path) -> reqwest::Client {
    let ca = std::fs::read_to_string(data_dir.join("ca.crt")).expect("the server's CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certificates(&ca) {
        roots.add(cert).expect("trust the server's CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("a TLS 1.2 client")
}

/// The status of GET /readyz, or the error of a connection that failed.
async fn readyz(client: &reqwest::Client, server: &Server) -> Result<u16, reqwest::Error> {
    client
        .get(format!("{}/readyz", server.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_min_version_turns_tls12_clients_away() {
    let strict = start_embedded(&["--tls-min-version=VersionTLS13"]).await;
    let modern = https_client(strict.data_dir(), None);
    assert_eq!(
        readyz(&modern, &strict).await.expect("a TLS 1.3 client"),
        200
    );
    let refused = readyz(&tls12_only_client(strict.data_dir()), &strict).await;
    assert!(
        refused.is_err(),
        "a TLS 1.2-only client was served: {refused:?}"
    );

    // The default floor is TLS 1.2: both are served.
    let default = start_embedded(&[]).await;
    let modern = https_client(default.data_dir(), None);
    assert_eq!(
        readyz(&modern, &default).await.expect("a TLS 1.3 client"),
        200
    );
    let old = tls12_only_client(default.data_dir());
    assert_eq!(readyz(&old, &default).await.expect("a TLS 1.2 client"), 200);
}

/// A "registry" that accepts connections and never answers: an import from it stays in
/// flight until --image-import-timeout.
struct SilentRegistry {
    host: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentRegistry {
    async fn start() -> SilentRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Held open, never read nor written.
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(conn);
            }
        });
        SilentRegistry {
            host: format!("127.0.0.1:{port}"),
            accepted,
            task,
        }
    }

    async fn wait_for_a_connection(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.accepted.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the server never connected to {}",
                self.host
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SilentRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn preview_import(host: &str) -> Value {
    json!({
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamImport",
        "metadata": {"name": "slow"},
        "spec": {
            "import": false,
            "images": [{
                "from": {"kind": "DockerImage", "name": format!("{host}/slow/app:1")},
                "importPolicy": {"insecure": true},
            }],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hold_more_than_its_share() {
    let s = Secured::start(|_| {
        vec![
            "--max-requests-inflight=8".to_string(),
            "--max-requests-inflight-per-user=2".to_string(),
            "--image-import-timeout=4s".to_string(),
        ]
    })
    .await;
    let admin = s.admin();
    // Finished requests give their slots back.
    for _ in 0..5 {
        assert_eq!(admin.get(&streams("team-a")).await.status, 200);
    }

    // Two imports from registries that never answer hold admin's two write slots.
    let one = SilentRegistry::start().await;
    let two = SilentRegistry::start().await;
    let slow = |host: &str| {
        let client = admin.clone();
        let body = preview_import(host);
        tokio::spawn(async move { client.post(IMPORTS, &body).await })
    };
    let first = slow(&one.host);
    let second = slow(&two.host);
    one.wait_for_a_connection().await;
    two.wait_for_a_connection().await;

    let refused = admin.post(&streams("team-a"), &new_stream("third")).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        refused.text(),
        "Too many requests, please try again later.\n"
    );
    // Reads are a pool of their own, and other users have their own share.
    assert_eq!(admin.get(&streams("team-a")).await.status, 200);
    let theirs = s
        .alice()
        .post(&streams("team-a"), &new_stream("alices"))
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text());

    // The imports end with the deadline (a status per image, not an error)...
    for task in [first, second] {
        let done = task.await.expect("the import task");
        assert_eq!(done.status, 201, "{}", done.text());
    }
    // ...and give the slots back.
    let r = admin.post(&streams("team-a"), &new_stream("third")).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Runs the server with `args`, expecting it to exit instead of serving; its exit code and
/// standard error.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    blackbox::refused_start(&dir.path().join("data"), args)
}

#[test]
fn bad_security_settings_stop_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "rules:\n- users: [alice]\n  resources: [imagestreams]\n",
    )
    .expect("write the policy");
    let policy_flag = format!("--authorization-policy-file={}", policy.display());
    let policy_path = policy.display().to_string();
    let cases: [(Vec<&str>, Vec<&str>); 4] = [
        (
            vec![policy_flag.as_str()],
            vec![
                "--authorization-policy-file",
                policy_path.as_str(),
                "rules[0]: verbs is required",
            ],
        ),
        (
            vec!["--authorization-mode=Policy"],
            vec!["--authorization-mode=Policy needs --authorization-policy-file"],
        ),
        (
            vec!["--authorization-mode=Webhook"],
            vec!["--authorization-mode=Webhook needs --authorization-kubeconfig"],
        ),
        (
            vec!["--tls-min-version=VersionTLS11"],
            vec!["--tls-min-version VersionTLS11 is not supported: the minimum is VersionTLS12"],
        ),
    ];
    for (args, fragments) in cases {
        let (code, stderr) = refused_start(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        for fragment in fragments {
            assert!(
                stderr.contains(fragment),
                "{args:?}: {fragment:?} not in {stderr}"
            );
        }
    }
}
