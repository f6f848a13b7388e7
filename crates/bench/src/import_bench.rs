//! The import benchmark (issue "Imports from container registries"). Starts a real
//! `docker-registry` and the release `image-apiserver`, and prints, in one run:
//! - a repository import of 50 tags (50 distinct images), wall time, next to plain concurrent
//!   HTTP GETs of the same manifests and configs with 8 workers (the limit);
//! - 1,000 streams with one scheduled tag each and nothing changed upstream: registry requests
//!   and server CPU seconds per scheduled-import cycle, next to the client CPU of 1,000 plain
//!   HEADs.
//!
//! It prints numbers; it asserts nothing.

use std::time::{Duration, Instant};

use blackbox::api::streams;
use blackbox::registry::{test_image, PushFormat, Registry, RegistryOptions};
use blackbox::Server;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Benchmark of imports from a local container registry")]
struct Args {
    /// Tags (distinct images) in the repository import.
    #[arg(long, default_value_t = 50)]
    tags: usize,
    /// Streams with a scheduled tag.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// The scheduled-import interval of the cycle measurement (seconds).
    #[arg(long, default_value_t = 20)]
    interval: u64,
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // reqwest is built without a default crypto provider (as everywhere in the workspace).
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!("# image-apiserver import benchmark (release build, this machine; the registry, server and client share its cores)");
    let registry = tokio::task::spawn_blocking(|| Registry::start(RegistryOptions::default()))
        .await
        .expect("registry");
    let tags = args.tags;
    let registry = tokio::task::spawn_blocking(move || {
        for i in 0..tags {
            let image = test_image(&format!("bench-{i}"), "amd64", "linux");
            registry.push(&image, "bench/app", &format!("t{i:02}"), PushFormat::Oci);
        }
        registry
    })
    .await
    .expect("push");
    repository_import(&registry, args.tags).await;
    scheduled_cycle(&registry, args.streams, args.interval).await;
}

fn start_server(extra: Vec<String>) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start_with(&dir.path().join("data"), &extra);
    (s, dir)
}

async fn repository_import(registry: &Registry, tags: usize) {
    println!("## repository import of {tags} tags");
    let plain = plain_gets(&registry.host, tags, 8).await;
    println!(
        "plain GETs of manifests + configs, 8 workers: {:.3} s",
        plain.as_secs_f64()
    );
    let (server, _dir) = tokio::task::spawn_blocking(|| {
        start_server(vec![
            "--disable-import-controller".into(),
            "--max-images-bulk-imported-per-repository=-1".into(),
        ])
    })
    .await
    .expect("server");
    let c = server.client();
    for (round, import) in [(1, false), (2, true), (3, true)] {
        let body = json!({"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamImport",
            "metadata": {"name": format!("repo{round}")},
            "spec": {"import": import, "repository": {"from": {"kind": "DockerImage", "name": format!("{}/bench/app", registry.host)}, "importPolicy": {"insecure": true}}}});
        let started = Instant::now();
        let r = c
            .post(
                "/apis/image.openshift.io/v1/namespaces/bench/imagestreamimports",
                &body,
            )
            .await;
        let took = started.elapsed();
        let ok = r.json()["status"]["repository"]["images"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|i| i["status"]["status"] == "Success")
                    .count()
            })
            .unwrap_or(0);
        let what = if import { "import" } else { "preview" };
        println!(
            "image-apiserver {what} (round {round}): {:.3} s ({ok}/{tags} images, HTTP {}), {:.1}x the plain GETs",
            took.as_secs_f64(),
            r.status,
            took.as_secs_f64() / plain.as_secs_f64().max(1e-9)
        );
    }
}

/// What a repository import has to fetch at least: every tag's manifest and config, with
/// `workers` requests in flight.
async fn plain_gets(host: &str, tags: usize, workers: usize) -> Duration {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new((0..tags).collect::<Vec<_>>()));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (http, queue, host) = (http.clone(), queue.clone(), host.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().expect("queue").pop() else {
                    return;
                };
                let url = format!("http://{host}/v2/bench/app/manifests/t{i:02}");
                let manifest: Value = http
                    .get(&url)
                    .header("Accept", MANIFEST_ACCEPT)
                    .send()
                    .await
                    .expect("manifest")
                    .json()
                    .await
                    .expect("manifest json");
                let config = manifest["config"]["digest"].as_str().unwrap_or("");
                let blob = format!("http://{host}/v2/bench/app/blobs/{config}");
                http.get(&blob)
                    .send()
                    .await
                    .expect("config")
                    .bytes()
                    .await
                    .expect("config body");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    started.elapsed()
}

async fn scheduled_cycle(registry: &Registry, n: usize, interval: u64) {
    println!("## {n} streams with one scheduled tag each, nothing changed upstream ({interval} s interval)");
    let (server, _dir) = tokio::task::spawn_blocking(move || {
        start_server(vec![
            format!("--scheduled-image-import-minimum-interval={interval}s"),
            "--max-scheduled-image-imports-per-minute=100000".into(),
        ])
    })
    .await
    .expect("server");
    let c = server.client();
    let from = format!("{}/bench/app:t00", registry.host);
    for i in 0..n {
        let body = json!({"metadata": {"name": format!("s{i}")}, "spec": {"tags": [
            {"name": "t", "from": {"kind": "DockerImage", "name": from}, "importPolicy": {"insecure": true, "scheduled": true}}]}});
        let r = c.post(&streams("bench"), &body).await;
        assert!(r.status == 201, "create: {}", r.text());
    }
    let started = Instant::now();
    loop {
        let list = c.get(&streams("bench")).await.json();
        let filled = list["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| {
                        s["status"]["tags"]
                            .as_array()
                            .is_some_and(|t| !t.is_empty())
                    })
                    .count()
            })
            .unwrap_or(0);
        if filled == n {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("only {filled}/{n} streams imported within 600 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "initial imports of {n} streams by the controller: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Let the first (spread) checks run, then count one full cycle.
    tokio::time::sleep(Duration::from_secs(interval)).await;
    let heads = registry.requests("HEAD", "/manifests/");
    let gets = registry.requests("GET", "/manifests/") + registry.requests("GET", "/blobs/");
    let cpu = blackbox::process_cpu_seconds(server.pid());
    tokio::time::sleep(Duration::from_secs(interval)).await;
    let heads = registry.requests("HEAD", "/manifests/") - heads;
    let gets = registry.requests("GET", "/manifests/") + registry.requests("GET", "/blobs/") - gets;
    let cpu = blackbox::process_cpu_seconds(server.pid()) - cpu;
    println!(
        "one cycle: {heads} manifest HEADs, {gets} GETs, server CPU {cpu:.3} s ({:.0} µs per scheduled tag)",
        cpu * 1e6 / n as f64
    );
    let client_cpu = plain_heads(&registry.host, n).await;
    println!("baseline: {n} plain HEADs from this process: client CPU {client_cpu:.3} s ({:.0} µs per HEAD)", client_cpu * 1e6 / n as f64);
}

async fn plain_heads(host: &str, n: usize) -> f64 {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let before = blackbox::process_cpu_seconds(std::process::id());
    for _ in 0..n {
        let url = format!("http://{host}/v2/bench/app/manifests/t00");
        http.head(&url)
            .header("Accept", MANIFEST_ACCEPT)
            .send()
            .await
            .expect("head");
    }
    blackbox::process_cpu_seconds(std::process::id()) - before
}
