//! What authentication and authorization cost per request. One release server on the embedded
//! store answers the same GET of an image stream for different kinds of caller, and the run
//! prints requests/s, p50/p99 and the server's CPU per request for each, next to the cheapest
//! authenticated handler (`/healthz/ping`):
//! - standalone: the admin (`system:masters`, decided without asking anyone), a user of the
//!   token file allowed by a policy file, a client certificate;
//! - in a cluster (a fake kube-apiserver over TLS): a bearer token reviewed by TokenReview and
//!   authorized by SubjectAccessReview, and a user asserted by the front proxy, with the number
//!   of reviews the fake answered per request (the caches at work).
//!
//! It prints numbers; it asserts nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bench::{load, Load};
use blackbox::api::{stream, streams, Client};
use blackbox::fake_kube::{FakeKube, SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS};
use blackbox::pki::{https_client_with_identity, tls_client_config, Identity, TestCa};
use blackbox::{process_cpu_seconds, Server};
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "What authentication and authorization cost per request")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
}

const NAMESPACE: &str = "bench";
const STREAM: &str = "app";

/// Prints one measurement: throughput, latency and the server's CPU per request.
async fn measure(server_pid: u32, label: &str, clients: Vec<Client>, path: &str, args: &Args) {
    let clients = Arc::new(clients);
    let path: Arc<str> = Arc::from(path);
    let before = process_cpu_seconds(server_pid);
    let result: Load = load(args.clients, args.seconds, move |i, _| {
        let c = clients[i % clients.len()].clone();
        let path = path.clone();
        async move { c.get(&path).await.status == 200 }
    })
    .await;
    let cpu = process_cpu_seconds(server_pid) - before;
    let per_request_us = cpu * 1e6 / result.ops.max(1) as f64;
    println!(
        "{}   server CPU {per_request_us:>6.0} µs/req",
        result.line(label)
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write bench file");
    path.display().to_string()
}

async fn start(data: &Path, flags: Vec<String>) -> Server {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || Server::start_with(&data, &flags))
        .await
        .expect("start server")
}

async fn create_stream(admin: &Client) {
    let body = json!({"metadata": {"name": STREAM}, "spec": {"tags": [
        {"name": "v1", "from": {"kind": "DockerImage", "name": "quay.io/example/app:v1"}, "reference": true}]}});
    let status = admin.post(&streams(NAMESPACE), &body).await.status;
    assert!(
        status == 201 || status == 409,
        "creating the bench stream: {status}"
    );
}

fn clients(n: usize, make: impl Fn() -> reqwest::Client, base: &str) -> Vec<Client> {
    (0..n).map(|_| Client::new(base, make())).collect()
}

async fn standalone(args: &Args) {
    println!("## standalone (token file, policy file, client certificates)");
    let dir = tempfile::tempdir().expect("temp dir");
    let users = TestCa::new("bench-clients");
    let tokens = write(
        dir.path(),
        "tokens.csv",
        "admintoken,admin,admin,\"system:masters\"\nalicetoken,alice,alice\n",
    );
    let policy = write(
        dir.path(),
        "policy.yaml",
        "rules:\n- users: [alice, carol]\n  namespaces: [bench]\n  verbs: [get, list, watch]\n  apiGroups: [image.openshift.io]\n  resources: [imagestreams]\n",
    );
    let ca = users.write(dir.path(), "clients-ca");
    let data = dir.path().join("data");
    let server = start(
        &data,
        vec![
            format!("--token-auth-file={tokens}"),
            format!("--authorization-policy-file={policy}"),
            format!("--client-ca-file={}", ca.display()),
            "--disable-import-controller".into(),
        ],
    )
    .await;
    let base = server.base.clone();
    let server_ca = std::fs::read_to_string(data.join("ca.crt")).expect("server CA");
    let admin = Client::new(&base, blackbox::https_client(&data, Some("admintoken")));
    create_stream(&admin).await;
    let n = args.clients;
    let path = stream(NAMESPACE, STREAM);
    let as_token = |t: &'static str| {
        let data = data.clone();
        move || blackbox::https_client(&data, Some(t))
    };
    measure(
        server.pid(),
        "healthz/ping (admin)",
        clients(n, as_token("admintoken"), &base),
        "/healthz/ping",
        args,
    )
    .await;
    measure(
        server.pid(),
        "GET stream, admin (system:masters)",
        clients(n, as_token("admintoken"), &base),
        &path,
        args,
    )
    .await;
    measure(
        server.pid(),
        "GET stream, token + policy file",
        clients(n, as_token("alicetoken"), &base),
        &path,
        args,
    )
    .await;
    let carol: Identity = users.client_cert("carol", &[]);
    let with_cert = || https_client_with_identity(&server_ca, Some(&carol), None);
    measure(
        server.pid(),
        "GET stream, client cert + policy file",
        clients(n, with_cert, &base),
        &path,
        args,
    )
    .await;
}

async fn delegated(args: &Args) {
    println!("## delegated to a fake kube-apiserver over TLS (TokenReview and SubjectAccessReview cached 10 s)");
    let dir = tempfile::tempdir().expect("temp dir");
    let proxy_ca = TestCa::new("front-proxy-ca");
    let fake = FakeKube::start().await;
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {"requestheader-client-ca-file": proxy_ca.pem(),
                 "requestheader-allowed-names": "[\"front-proxy-client\"]",
                 "requestheader-username-headers": "[\"X-Remote-User\"]",
                 "requestheader-group-headers": "[\"X-Remote-Group\"]",
                 "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]"}}));
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}, "status": {"phase": "Active"}}));
    fake.add_token("bobtoken", "bob", &["dev"]);
    fake.allow("bob", "get", "imagestreams", NAMESPACE);
    fake.allow("alice", "get", "imagestreams", NAMESPACE);
    let kubeconfig = fake.write_kubeconfig(dir.path()).display().to_string();
    let data = dir.path().join("data");
    let server = start(
        &data,
        vec![
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            format!("--kubeconfig={kubeconfig}"),
            "--disable-import-controller".into(),
        ],
    )
    .await;
    let base = server.base.clone();
    let server_ca = std::fs::read_to_string(data.join("ca.crt")).expect("server CA");
    create_stream(&server.client()).await;
    let n = args.clients;
    let path = stream(NAMESPACE, STREAM);
    let reviews = |fake: &FakeKube| {
        (
            fake.calls(TOKEN_REVIEWS),
            fake.calls(SUBJECT_ACCESS_REVIEWS),
        )
    };

    let (t0, s0) = reviews(&fake);
    let bob = || {
        let data = data.clone();
        move || blackbox::https_client(&data, Some("bobtoken"))
    };
    measure(
        server.pid(),
        "GET stream, TokenReview + SAR",
        clients(n, bob(), &base),
        &path,
        args,
    )
    .await;
    let (t1, s1) = reviews(&fake);
    println!(
        "    reviews asked of kube-apiserver: {} TokenReview, {} SubjectAccessReview",
        t1 - t0,
        s1 - s0
    );

    let proxy = proxy_ca.client_cert("front-proxy-client", &[]);
    let through_proxy = || {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-remote-user", "alice".parse().expect("header"));
        headers.insert(
            "x-remote-group",
            "system:authenticated".parse().expect("header"),
        );
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls_client_config(&server_ca, Some(&proxy)))
            .default_headers(headers)
            .build()
            .expect("front-proxy client")
    };
    let proxied = clients(n, through_proxy, &base);
    measure(
        server.pid(),
        "GET stream, front proxy + SAR",
        proxied,
        &path,
        args,
    )
    .await;
    let (_, s2) = reviews(&fake);
    println!(
        "    reviews asked of kube-apiserver: {} SubjectAccessReview",
        s2 - s1
    );
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    println!("# image-apiserver authentication and authorization benchmark (release build, this machine; client and server share its cores)");
    standalone(&args).await;
    delegated(&args).await;
}
