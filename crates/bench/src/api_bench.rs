//! The API load benchmark (issue "A real Kubernetes API over HTTPS", item 5). Starts the
//! release `image-apiserver` binary (and etcd for the etcd rows), drives it over HTTPS from this
//! process and prints, in one run:
//! - GET and LIST requests/s with p50/p99 for image streams served from the watch cache, next to
//!   the same load against a trivial HTTPS handler of the same binary (`/healthz/ping`);
//! - creates/s at 1 and 64 concurrent clients, embedded and etcd;
//! - read-modify-write updates with conflicts (16 clients on 20 streams), and of streams that
//!   grow to 100 tags, embedded and etcd, with server CPU per successful update;
//! - watch fan-out to 1,000 watchers, embedded and etcd;
//! - server CPU per GET, label-only PUT, merge PATCH and apply of streams of 10 to 1,000 tags;
//! - resident memory per cached image stream and per idle watch;
//! - and last, issue 11's table: each workload per backend, with the issue's targets checked
//!   against figures of this run ([`api_summary`]).
//!
//! It prints numbers; it asserts nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod api_summary;
mod etcd_requests;

use api_summary::{clients as clients_label, rate_cell, thousands, Summary};
use bench::{load, percentile, Load};
use blackbox::api::{stream, streams, Client, Watch};
use blackbox::{EtcdProcess, Server};
use clap::Parser;
use etcd_requests::EtcdRequests;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Load benchmark of the image-apiserver HTTP API")]
struct Args {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent clients for GET/LIST.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Streams in the LIST measurement.
    #[arg(long, default_value_t = 1000)]
    list_size: usize,
    /// Watchers in the fan-out measurement.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Streams created for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    memory_streams: usize,
    /// Comma-separated sections: reads,creates,updates,update-cost,fanout,memory.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "reads,creates,updates,update-cost,fanout,memory"
    )]
    only: Vec<String>,
}

/// A stream of about 2.35 KB of JSON (the size in the issue's openshift-apiserver figure).
fn sized_stream(name: &str) -> Value {
    let tags: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("v{i}"), "from": {"kind": "DockerImage", "name": format!("quay.io/example/app-{name}:v{i}")}, "reference": true, "annotations": {"description": "a tag with some annotations"}}))
        .collect();
    json!({"metadata": {"name": name, "labels": {"app": name, "team": "bench"}}, "spec": {"tags": tags}})
}

fn clients_for(server: &Server, n: usize) -> Vec<Client> {
    (0..n).map(|_| server.client()).collect()
}

async fn reads(on: Backend<'_>, args: &Args, how: &str, summary: &mut Summary) {
    let (server, etcd) = (on.server, on.etcd);
    println!(
        "## reads ({} clients, {} s each; server on {how})",
        args.clients, args.seconds
    );
    let setup = server.client();
    create_read_streams(&setup, args.list_size).await;
    let cs = Arc::new(clients_for(server, args.clients));
    let processes = Processes::of(server, etcd);
    let trivial = load_gets(processes, &cs, args, "/healthz/ping").await;
    println!("{}", trivial.line("trivial handler (/healthz/ping)"));
    let gets = load_gets(processes, &cs, args, &stream("bench", "target")).await;
    println!("{}", gets.line("GET imagestream (consistent read)"));
    // The same stream through its virtual ImageStreamTag view (needs an image).
    push_target_image(&setup).await;
    let istag = "/apis/image.openshift.io/v1/namespaces/bench/imagestreamtags/target:pushed";
    let istags = load_gets(processes, &cs, args, istag).await;
    println!("{}", istags.line("GET imagestreamtag"));
    let rv0 = format!("{}?resourceVersion=0", stream("bench", "target"));
    let gets0 = load_gets(processes, &cs, args, &rv0).await;
    println!("{}", gets0.line("GET imagestream (resourceVersion=0)"));
    let lists = load_gets(processes, &cs, args, &streams("bench-list")).await;
    println!(
        "{}",
        lists.line(&format!("LIST {} imagestreams", args.list_size))
    );
    // The baseline again, after the others: the machine is noisy, the mean of both is fairer.
    let trivial2 = load_gets(processes, &cs, args, "/healthz/ping").await;
    println!("{}", trivial2.line("trivial handler, again"));
    let baseline = (trivial.load.rate() + trivial2.load.rate()) / 2.0;
    println!(
        "GET throughput / trivial handler (mean of both runs): {:.0}%",
        gets.load.rate() / baseline * 100.0
    );
    let c = args.clients;
    summary.put(
        &format!("trivial handler, {c} clients (the baseline of reads)"),
        on.name,
        rate_cell(baseline, trivial.server_ms(), None),
    );
    summary.put(&format!("GET, {c} clients"), on.name, gets.cell());
    summary.put(
        &format!("LIST of {}, {c} clients", args.list_size),
        on.name,
        lists.cell(),
    );
    summary.put(&format!("istag GET, {c} clients"), on.name, istags.cell());
    summary.put(
        "GET per server CPU second",
        on.name,
        thousands(gets.successes() / gets.server_cpu.max(1e-9)),
    );
    summary.record_gets(on.name, gets.load.rate());
}

/// A server under test, the etcd it runs on if any, and its column in the summary.
#[derive(Clone, Copy)]
struct Backend<'a> {
    name: &'a str,
    server: &'a Server,
    etcd: Option<&'a EtcdProcess>,
}

/// A load, with the CPU it took the server, and its etcd when it has one, and the requests
/// etcd answered meanwhile.
struct Measured {
    load: Load,
    server_cpu: f64,
    etcd_cpu: Option<f64>,
    /// This process's: the load generator shares the cores with the server and etcd.
    client_cpu: f64,
    etcd_requests: Option<EtcdRequests>,
}

impl Measured {
    fn successes(&self) -> f64 {
        self.load.ops.saturating_sub(self.load.errors).max(1) as f64
    }

    fn server_ms(&self) -> f64 {
        self.server_cpu * 1e3 / self.successes()
    }

    fn etcd_ms(&self) -> Option<f64> {
        self.etcd_cpu.map(|cpu| cpu * 1e3 / self.successes())
    }

    fn line(&self, label: &str) -> String {
        let mut etcd = self
            .etcd_ms()
            .map(|ms| format!("   etcd CPU {ms:.3} ms/req"))
            .unwrap_or_default();
        if let Some(requests) = self.etcd_requests {
            etcd = format!("{etcd}   {}", requests.per_op(self.successes()));
        }
        format!(
            "{}   server CPU {:.3} ms/req{etcd}   client CPU {:.3} ms/req",
            self.load.line(label),
            self.server_ms(),
            self.client_cpu * 1e3 / self.successes()
        )
    }

    /// This load's cell in the summary.
    fn cell(&self) -> String {
        rate_cell(self.load.rate(), self.server_ms(), self.etcd_ms())
    }
}

/// The processes whose CPU a measurement reads: the server, and its etcd when it has one.
#[derive(Clone, Copy)]
struct Processes<'a> {
    server: u32,
    etcd: Option<&'a EtcdProcess>,
}

impl<'a> Processes<'a> {
    fn of(server: &Server, etcd: Option<&'a EtcdProcess>) -> Self {
        Processes {
            server: server.pid(),
            etcd,
        }
    }

    fn cpu_seconds(&self) -> (f64, Option<f64>) {
        (
            blackbox::process_cpu_seconds(self.server),
            self.etcd.map(|e| blackbox::process_cpu_seconds(e.pid())),
        )
    }

    async fn etcd_requests(&self) -> Option<EtcdRequests> {
        EtcdRequests::read(&self.etcd?.endpoint).await
    }

    /// Runs `work`, and returns its load with the CPU each process spent meanwhile and the
    /// requests etcd answered.
    async fn measure(&self, work: impl std::future::Future<Output = Load>) -> Measured {
        let requests_before = self.etcd_requests().await;
        let (server_before, etcd_before) = self.cpu_seconds();
        let client_before = own_cpu_seconds();
        let load = work.await;
        let client_cpu = own_cpu_seconds() - client_before;
        let (server_after, etcd_after) = self.cpu_seconds();
        let requests_after = self.etcd_requests().await;
        Measured {
            load,
            server_cpu: server_after - server_before,
            etcd_cpu: etcd_after.zip(etcd_before).map(|(a, b)| a - b),
            client_cpu,
            etcd_requests: requests_after
                .zip(requests_before)
                .map(|(after, before)| after.since(before)),
        }
    }
}

fn own_cpu_seconds() -> f64 {
    blackbox::process_cpu_seconds(std::process::id())
}

/// `list_size` streams to list in `bench-list`, and the stream to get in `bench`.
async fn create_read_streams(setup: &Client, list_size: usize) {
    for i in 0..list_size {
        let r = setup
            .post(&streams("bench-list"), &sized_stream(&format!("s{i:05}")))
            .await;
        assert_eq!(r.status, 201, "setup create failed: {}", r.text());
    }
    setup.post(&streams("bench"), &sized_stream("target")).await;
}

/// Tags an image into the target stream as `pushed`.
async fn push_target_image(setup: &Client) {
    let image = json!({"metadata": {"name": "sha256:7777777777777777777777777777777777777777777777777777777777777777"}, "dockerImageReference": "quay.io/example/app@sha256:7777777777777777777777777777777777777777777777777777777777777777"});
    let r = setup
        .post(
            "/apis/image.openshift.io/v1/namespaces/bench/imagestreammappings",
            &json!({"metadata": {"name": "target"}, "tag": "pushed", "image": image}),
        )
        .await;
    assert_eq!(r.status, 201, "mapping failed: {}", r.text());
}

/// GETs of `path` from every client; a 200 is a success.
async fn load_gets(
    processes: Processes<'_>,
    cs: &Arc<Vec<Client>>,
    args: &Args,
    path: &str,
) -> Measured {
    let c = cs.clone();
    let path: Arc<str> = Arc::from(path);
    let work = load(args.clients, args.seconds, move |i, _| {
        let c = c[i].clone();
        let path = path.clone();
        async move { c.get(&path).await.status == 200 }
    });
    processes.measure(work).await
}

async fn creates(on: Backend<'_>, seconds: u64, summary: &mut Summary) {
    let (server, backend, etcd) = (on.server, on.name, on.etcd);
    let processes = Processes::of(server, etcd);
    for clients in [1usize, 64] {
        let cs = Arc::new(clients_for(server, clients.min(16)));
        // Namespace names are DNS labels: "etcd 3.5" becomes "etcd-3-5".
        let slug: String = backend
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let run = format!("{slug}-{clients}");
        let work = load(clients, seconds, move |i, n| {
            let c = cs[i % cs.len()].clone();
            let ns = format!("create-{run}");
            async move {
                c.post(
                    &streams(&ns),
                    &json!({"metadata": {"name": format!("c{i}-{n}")}}),
                )
                .await
                .status
                    == 201
            }
        });
        let measured = processes.measure(work).await;
        println!(
            "{}",
            measured.line(&format!("create ({backend}, {clients} clients)"))
        );
        let l = &measured.load;
        summary.put(
            &format!("create, {}", clients_label(clients)),
            backend,
            measured.cell(),
        );
        if let Some(etcd) = etcd {
            let etcd_before = blackbox::process_cpu_seconds(etcd.pid());
            let client_before = own_cpu_seconds();
            let raw = raw_etcd_creates(&etcd.endpoint, clients, seconds).await;
            let client_cpu = own_cpu_seconds() - client_before;
            let etcd_cpu = blackbox::process_cpu_seconds(etcd.pid()) - etcd_before;
            println!(
                "{}   etcd CPU {:.3} ms/req   client CPU {:.3} ms/req",
                raw.line(&format!("raw etcd Txns ({clients} clients)")),
                etcd_cpu * 1e3 / raw.ops.max(1) as f64,
                client_cpu * 1e3 / raw.ops.max(1) as f64
            );
            println!(
                "  API creates on etcd / raw etcd Txns: {:.0}%",
                100.0 * l.rate() / raw.rate().max(1e-9)
            );
            summary.put(
                &format!(
                    "raw etcd Txns, {} (the baseline of creates)",
                    clients_label(clients)
                ),
                backend,
                format!(
                    "{}/s (etcd {:.3} ms)",
                    thousands(raw.rate()),
                    etcd_cpu * 1e3 / raw.ops.max(1) as f64
                ),
            );
            if clients == 64 {
                summary.record_creates_64(backend, l.rate(), raw.rate());
            }
        }
    }
}

/// Creates straight to etcd, as our etcd backend sends them (a Txn that puts the key only if
/// absent) with a value the size of a stored new stream: the ceiling the API's creates on etcd
/// are measured against, in the same run.
async fn raw_etcd_creates(endpoint: &str, clients: usize, seconds: u64) -> Load {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let client = etcd_client::Client::connect([endpoint], None)
        .await
        .expect("connect etcd");
    let value = vec![b'x'; 600];
    load(clients, seconds, move |i, n| {
        let (mut kv, value) = (client.kv_client(), value.clone());
        async move {
            let key = format!("/raw/imagestreams/bench/c{clients}-{i}-{n}");
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)]);
            kv.txn(txn).await.is_ok_and(|r| r.succeeded())
        }
    })
    .await
}

async fn updates(server: &Server, seconds: u64) {
    let setup = server.client();
    for i in 0..20 {
        setup
            .post(
                &streams("upd"),
                &json!({"metadata": {"name": format!("u{i}")}}),
            )
            .await;
    }
    let conflicts = Arc::new(AtomicU64::new(0));
    let cs = Arc::new(clients_for(server, 16));
    let k = conflicts.clone();
    let l = load(16, seconds, move |i, n| {
        let c = cs[i].clone();
        let conflicts = k.clone();
        async move {
            let path = stream("upd", &format!("u{}", (i as u64 * 7 + n) % 20));
            loop {
                let mut obj = c.get(&path).await.json();
                obj["metadata"]["labels"] = json!({"writer": format!("{i}"), "n": format!("{n}")});
                match c.put(&path, &obj).await.status {
                    200 => return true,
                    409 => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return false,
                }
            }
        }
    })
    .await;
    println!("{}", l.line("read-modify-write update (16 on 20)"));
    println!(
        "  conflicts retried: {} ({:.0}/s)",
        conflicts.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed) as f64 / l.elapsed.as_secs_f64()
    );
}

/// Streams grown by read-modify-write, as users grow release streams: 16 clients append one
/// spec tag per update to 20 streams until each holds `GROWN_TAGS` tags (conflicting appends
/// re-read and retry). Successful updates/s, conflicts, and server CPU per successful update.
async fn growing_updates(on: Backend<'_>, summary: &mut Summary) {
    let (server, backend) = (on.server, on.name);
    const STREAMS: usize = 20;
    const GROWN_TAGS: usize = 100;
    let setup = server.client();
    for i in 0..STREAMS {
        setup
            .post(
                &streams("grow"),
                &json!({"metadata": {"name": format!("g{i}")}}),
            )
            .await;
    }
    let target = (STREAMS * GROWN_TAGS) as u64;
    let done = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let processes = Processes::of(server, on.etcd);
    let requests_before = processes.etcd_requests().await;
    let (cpu_before, etcd_cpu_before) = processes.cpu_seconds();
    let start = Instant::now();
    let tasks: Vec<_> = clients_for(server, 16)
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (done, conflicts, errors) = (done.clone(), conflicts.clone(), errors.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while done.load(Ordering::Relaxed) < target {
                    let path = stream("grow", &format!("g{}", (i * 7 + n) % STREAMS));
                    match append_tag(&c, &path, GROWN_TAGS).await {
                        Append::Done => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        // Re-read and retry the same stream at once (client-go's
                        // RetryOnConflict re-reads too, after a short backoff). Moving on
                        // instead kept the loser in step with the winner, to meet it again on
                        // the next stream.
                        Append::Conflict => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Append::Full => {}
                        Append::Failed => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (cpu_after, etcd_cpu_after) = processes.cpu_seconds();
    let cpu = cpu_after - cpu_before;
    let ok = done.load(Ordering::Relaxed).max(1) as f64;
    let etcd_ms = etcd_cpu_after
        .zip(etcd_cpu_before)
        .map(|(after, before)| (after - before) * 1e3 / ok);
    let etcd_cpu = etcd_ms
        .map(|ms| format!(", etcd CPU {ms:.2} ms"))
        .unwrap_or_default();
    let requests = match (processes.etcd_requests().await, requests_before) {
        (Some(after), Some(before)) => format!(
            "; per successful update (and its share of conflicts) {}",
            after.since(before).per_op(ok)
        ),
        _ => String::new(),
    };
    println!(
        "{backend}: {STREAMS} streams grown to {GROWN_TAGS} tags by 16 clients: {:.0} successful updates/s, {} conflicts retried, {} errors; server CPU {:.2} ms per successful update{etcd_cpu} = {:.1} successful updates per server CPU second{requests}",
        ok / elapsed,
        conflicts.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        cpu * 1e3 / ok,
        ok / cpu.max(1e-9)
    );
    summary.put(
        &format!("update of growing streams, 16 clients on {STREAMS} streams to {GROWN_TAGS} tags (successful)"),
        backend,
        rate_cell(ok / elapsed, cpu * 1e3 / ok, etcd_ms),
    );
    summary.put(
        "successful update per server CPU second",
        backend,
        format!("{:.1}", ok / cpu.max(1e-9)),
    );
    summary.record_updates_per_cpu(backend, ok / cpu.max(1e-9));
}

enum Append {
    Done,
    Conflict,
    Full,
    Failed,
}

/// One read-modify-write that appends a reference tag to the stream at `path`.
async fn append_tag(c: &Client, path: &str, max_tags: usize) -> Append {
    let mut obj = c.get(path).await.json();
    let len = obj["spec"]["tags"].as_array().map_or(0, Vec::len);
    if len >= max_tags {
        return Append::Full;
    }
    let tag = json!({"name": format!("t{len:03}"), "from": {"kind": "DockerImage", "name": format!("quay.io/example/release:4.{len}")}, "reference": true});
    match obj["spec"]["tags"].as_array_mut() {
        Some(tags) => tags.push(tag),
        None => obj["spec"]["tags"] = json!([tag]),
    }
    match c.put(path, &obj).await.status {
        200 => Append::Done,
        409 => Append::Conflict,
        _ => Append::Failed,
    }
}

/// Server CPU per GET and per label-only write of one stream of `n` reference tags, sequential,
/// by each way of writing: PUT, JSON merge PATCH and server-side apply (issue 11: an update's
/// cost should grow linearly with the object, and stay within a few GETs).
async fn update_cost(server: &Server, seconds: u64) {
    let c = server.client();
    for n in [10usize, 100, 1000] {
        let name = format!("cost-{n}");
        let tags: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("t{i:04}"), "from": {"kind": "DockerImage", "name": format!("quay.io/example/app:t{i:04}")}, "reference": true}))
            .collect();
        let created = c
            .post(
                &streams("cost"),
                &json!({"metadata": {"name": name}, "spec": {"tags": tags}}),
            )
            .await;
        assert_eq!(created.status, 201, "setup: {}", created.text());
        let path = stream("cost", &name);
        let size = c.get(&path).await.body.len();
        let get = cpu_per_op(server, seconds, {
            let (c, path) = (c.clone(), path.clone());
            move || {
                let (c, path) = (c.clone(), path.clone());
                async move { c.get(&path).await.status == 200 }
            }
        })
        .await;
        let put = label_puts(server, seconds, &c, &path).await;
        let patch = label_patches(server, seconds, &c, &path, LabelPatch::Merge).await;
        let apply = label_patches(server, seconds, &c, &path, LabelPatch::Apply(&name)).await;
        let vs_get = |(cpu, rate): (f64, f64)| {
            format!(
                "{:>7.3} ms CPU ({rate:>4.0}/s, {:>4.1}x)",
                cpu * 1e3,
                cpu / get.0.max(1e-9)
            )
        };
        println!(
            "{n:>5} tags ({:>4} KB): GET {:>6.3} ms CPU ({:>5.0}/s)   label-only PUT {}   merge PATCH {}   apply {}",
            size / 1000,
            get.0 * 1e3,
            get.1,
            vs_get(put),
            vs_get(patch),
            vs_get(apply),
        );
    }
}

/// Label-only PUTs of the object at `path`, each sent with the previous one's result.
async fn label_puts(server: &Server, seconds: u64, c: &Client, path: &str) -> (f64, f64) {
    let last = Arc::new(tokio::sync::Mutex::new(c.get(path).await.json()));
    let (c, path) = (c.clone(), path.to_string());
    cpu_per_op(server, seconds, move || {
        let (c, path, last) = (c.clone(), path.clone(), last.clone());
        async move {
            let mut obj = last.lock().await;
            obj["metadata"]["labels"] = json!({"n": next_label().to_string()});
            let r = c.put(&path, &obj).await;
            let ok = r.status == 200;
            if ok {
                *obj = r.json();
            }
            ok
        }
    })
    .await
}

/// How a label-only patch is sent.
#[derive(Clone, Copy)]
enum LabelPatch<'a> {
    /// A JSON merge patch.
    Merge,
    /// Server-side apply of the named stream, by a manager of its own that owns the label.
    Apply(&'a str),
}

/// Label-only patches of the object at `path`: a small body, the whole object's work.
async fn label_patches(
    server: &Server,
    seconds: u64,
    c: &Client,
    path: &str,
    how: LabelPatch<'_>,
) -> (f64, f64) {
    let (content_type, url) = match how {
        LabelPatch::Merge => ("application/merge-patch+json", path.to_string()),
        LabelPatch::Apply(_) => (
            "application/apply-patch+yaml",
            format!("{path}?fieldManager=bench-apply&force=true"),
        ),
    };
    let name = match how {
        LabelPatch::Merge => None,
        LabelPatch::Apply(name) => Some(name.to_string()),
    };
    let c = c.clone();
    cpu_per_op(server, seconds, move || {
        let (c, url, name) = (c.clone(), url.clone(), name.clone());
        async move {
            let labels = json!({"applied": next_label().to_string()});
            let body = match name {
                None => json!({"metadata": {"labels": labels}}),
                Some(name) => json!({
                    "apiVersion": "image.openshift.io/v1",
                    "kind": "ImageStream",
                    "metadata": {"name": name, "labels": labels},
                }),
            };
            c.patch(&url, content_type, &body.to_string()).await.status == 200
        }
    })
    .await
}

/// A label value that differs on every call, so each PUT changes the object.
fn next_label() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One client running `op` for `seconds`: server CPU seconds per successful op, and ops/s.
async fn cpu_per_op<F, Fut>(server: &Server, seconds: u64, op: F) -> (f64, f64)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let before = blackbox::process_cpu_seconds(server.pid());
    let l = load(1, seconds, move |_, _| op()).await;
    let cpu = blackbox::process_cpu_seconds(server.pid()) - before;
    let ok = l.ops.saturating_sub(l.errors).max(1) as f64;
    (cpu / ok, ok / l.elapsed.as_secs_f64())
}

/// Watch fan-out: `watchers` watches of one namespace, and one stream in it patched 100 times,
/// first back to back (the most the machine delivers: deliveries/s, and the latency of a
/// saturated server), then at a fixed pace of 50 writes/s (the latency of a server with room).
async fn fanout(server: &Server, watchers: usize, backend: &str, summary: &mut Summary) {
    let setup = server.client();
    setup
        .post(&streams("fan"), &json!({"metadata": {"name": "hot"}}))
        .await;
    let rv = setup.get(&streams("fan")).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let mut open = open_watches(server, watchers, "fan", &rv).await;
    for pace in [None, Some(Duration::from_millis(20))] {
        let (round, still_open) = fanout_round(server, &setup, open, pace).await;
        open = still_open;
        let how = match pace {
            None => "back to back".to_string(),
            Some(p) => format!("one write every {} ms", p.as_millis()),
        };
        println!("watch fan-out on {backend}, {watchers} watchers x 100 writes, {how}: {round}");
        let (p50, p99) = (
            percentile(&round.latency, 0.5),
            percentile(&round.latency, 0.99),
        );
        summary.put(
            &format!(
                "watch, {watchers} watchers, {how}: p50 / p99 after the write's response (ms)"
            ),
            backend,
            format!(
                "{p50:.2} / {p99:.2} (server {:.2} us per delivery)",
                round.server_cpu * 1e6 / round.delivered.max(1) as f64
            ),
        );
        if pace.is_some() {
            summary.record_watch_p99(backend, watchers, p99);
        }
    }
}

/// What one round of writes delivered.
struct FanoutRound {
    delivered: usize,
    elapsed: Duration,
    /// Latency from each write's response to each watcher's receipt of it, sorted.
    latency: Vec<Duration>,
    server_cpu: f64,
    client_cpu: f64,
}

impl std::fmt::Display for FanoutRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per_delivery = |cpu: f64| cpu * 1e6 / self.delivered.max(1) as f64;
        write!(
            f,
            "{} delivered in {:.2}s = {:.0} deliveries/s; after the write's response p50 {:.2} ms p99 {:.2} ms max {:.2} ms; server CPU {:.2} us per delivery (the watching client's: {:.2} us)",
            self.delivered,
            self.elapsed.as_secs_f64(),
            self.delivered as f64 / self.elapsed.as_secs_f64(),
            percentile(&self.latency, 0.5),
            percentile(&self.latency, 0.99),
            percentile(&self.latency, 1.0),
            per_delivery(self.server_cpu),
            per_delivery(self.client_cpu),
        )
    }
}

async fn fanout_round(
    server: &Server,
    setup: &Client,
    watches: Vec<Watch>,
    pace: Option<Duration>,
) -> (FanoutRound, Vec<Watch>) {
    let updates = 100usize;
    let readers: Vec<_> = watches
        .into_iter()
        .map(|w| tokio::spawn(read_events(w, updates)))
        .collect();
    let cpu_before = blackbox::process_cpu_seconds(server.pid());
    let client_cpu_before = own_cpu_seconds();
    let start = Instant::now();
    let acks: std::collections::HashMap<String, Instant> = patch_updates(setup, updates, pace)
        .await
        .into_iter()
        .collect();
    let mut round = FanoutRound {
        delivered: 0,
        elapsed: Duration::ZERO,
        latency: Vec::new(),
        server_cpu: 0.0,
        client_cpu: 0.0,
    };
    let mut last = start;
    let mut still_open = Vec::new();
    for r in readers {
        let Ok((watch, events)) = r.await else {
            continue;
        };
        still_open.push(watch);
        for (rv, at) in events {
            round.delivered += 1;
            last = last.max(at);
            if let Some(ack) = acks.get(&rv) {
                round.latency.push(at.saturating_duration_since(*ack));
            }
        }
    }
    round.server_cpu = blackbox::process_cpu_seconds(server.pid()) - cpu_before;
    round.client_cpu = own_cpu_seconds() - client_cpu_before;
    round.latency.sort();
    round.elapsed = last.duration_since(start);
    (round, still_open)
}

/// `watchers` watches of namespace `ns` from `rv`, spread over a few connections.
async fn open_watches(server: &Server, watchers: usize, ns: &str, rv: &str) -> Vec<Watch> {
    let clients = clients_for(server, 8);
    let mut streams_open = Vec::new();
    for i in 0..watchers {
        let c = clients[i % clients.len()].clone();
        streams_open.push(
            c.watch(
                &format!("{}?watch=true&resourceVersion={rv}", streams(ns)),
                None,
            )
            .await,
        );
    }
    streams_open
}

/// Each event's resourceVersion and when it arrived, until `updates` events or a 30 s silence.
async fn read_events(mut w: Watch, updates: usize) -> (Watch, Vec<(String, Instant)>) {
    let mut got = Vec::with_capacity(updates);
    while got.len() < updates {
        match w.next_line(Duration::from_secs(30)).await {
            Some(line) => got.push((event_revision(&line), Instant::now())),
            None => break,
        }
    }
    (w, got)
}

/// The resourceVersion of a watch event's object, decoding nothing else: the watching side
/// shares the machine's cores with the server, so it should spend as little as it can.
fn event_revision(line: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        object: Object<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Object<'a> {
        #[serde(borrow)]
        metadata: Metadata<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata<'a> {
        #[serde(rename = "resourceVersion", default)]
        resource_version: &'a str,
    }
    serde_json::from_slice::<Event>(line)
        .map(|e| e.object.metadata.resource_version.to_string())
        .unwrap_or_default()
}

/// Patches the hot stream `updates` times, back to back or one every `pace`: each write's
/// resourceVersion and when its response came.
async fn patch_updates(
    setup: &Client,
    updates: usize,
    pace: Option<Duration>,
) -> Vec<(String, Instant)> {
    let mut written = Vec::new();
    let mut ticks = pace.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for n in 0..updates {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        let r = setup
            .patch(
                &stream("fan", "hot"),
                "application/merge-patch+json",
                &format!(r#"{{"metadata":{{"labels":{{"n":"{n}"}}}}}}"#),
            )
            .await;
        let rv = r.json()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        written.push((rv, Instant::now()));
    }
    written
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Fills etcd with `n` streams through one server, then starts a fresh server on the same etcd:
/// its resident memory once its caches are loaded, minus that of an empty server, is what the
/// cached streams cost (no request buffers or allocator churn in the figure).
async fn memory(n: usize, summary: &mut Summary) {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    let endpoint = etcd.endpoint.clone();
    let start = move |prefix: &'static str| {
        let endpoint = endpoint.clone();
        tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = Server::start_with(
                &dir.path().join("data"),
                &[
                    "--storage-backend=etcd".to_string(),
                    format!("--etcd-servers={endpoint}"),
                    format!("--etcd-prefix={prefix}"),
                    "--etcd-compaction-interval=0".to_string(),
                ],
            );
            (s, dir)
        })
    };
    let empty = start("empty").await.expect("empty server");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(empty.0.pid());
    drop(empty);
    let loader = start("openshift.io").await.expect("loader");
    let cs = Arc::new(clients_for(&loader.0, 16));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (cs, next) = (cs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n as u64 {
                    break;
                }
                cs[i]
                    .post(&streams("mem"), &sized_stream(&format!("m{k:06}")))
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let one = loader
        .0
        .client()
        .get(&stream("mem", "m000000"))
        .await
        .body
        .len();
    drop(cs);
    drop(loader);
    let fresh = start("openshift.io").await.expect("fresh server");
    let listed = fresh
        .0
        .client()
        .get(&format!("{}?resourceVersion=0&limit=1", streams("mem")))
        .await
        .json();
    let cached = listed["items"].as_array().map(Vec::len).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = rss_kib(fresh.0.pid());
    let per = (loaded.saturating_sub(baseline) as f64 * 1024.0) / n as f64;
    println!(
        "memory: {cached} cached streams of {one} bytes of JSON each; empty server {} KiB, loaded server {} KiB; {:.2} KB resident per cached stream ({:.2}x its JSON)",
        baseline,
        loaded,
        per / 1000.0,
        per / one as f64
    );
    drop(fresh);
    let watched = start("watched").await.expect("server for watches");
    let per_watch = idle_watches(&watched.0).await;
    summary.note(format!(
        "memory (server on etcd 3.4.23): {:.2} KB resident per cached stream of {one} bytes of JSON, {per_watch:.2} KB per idle watch; empty server {baseline} KiB",
        per / 1000.0
    ));
    drop(watched);
    drop(etcd);
}

/// How to start one etcd version.
type EtcdStart = fn() -> EtcdProcess;

/// What an idle watch costs the server: `WATCHES` watches of a quiet namespace over 8 HTTP/2
/// connections on a server of its own, resident memory after minus before, per watch (the
/// connections included).
async fn idle_watches(server: &Server) -> f64 {
    const WATCHES: usize = 5000;
    let rv = server.client().get(&streams("idle")).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(server.pid());
    let watches = open_watches(server, WATCHES, "idle", &rv).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let watching = rss_kib(server.pid());
    let per_watch = watching.saturating_sub(before) as f64 * 1024.0 / WATCHES as f64 / 1000.0;
    println!(
        "memory: {} idle watches over 8 HTTP/2 connections: server {before} KiB before, {watching} KiB after; {per_watch:.2} KB resident per watch",
        watches.len(),
    );
    per_watch
}

/// A server on an etcd of its own. Fields drop in order: the server stops before its etcd.
struct OnEtcd {
    server: Server,
    etcd: EtcdProcess,
    _dir: tempfile::TempDir,
}

impl OnEtcd {
    /// This server as the summary's column `name`.
    fn backend<'a>(&'a self, name: &'a str) -> Backend<'a> {
        Backend {
            name,
            server: &self.server,
            etcd: Some(&self.etcd),
        }
    }
}

/// A server on a fresh etcd of its own (`start` picks the etcd version).
async fn etcd_server(start: EtcdStart) -> OnEtcd {
    tokio::task::spawn_blocking(move || {
        let etcd = start();
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Server::start_with(
            &dir.path().join("data"),
            &[
                "--storage-backend=etcd".to_string(),
                format!("--etcd-servers={}", etcd.endpoint),
                "--etcd-compaction-interval=0".to_string(),
                // One user drives every client here: its fair share must not cap the load.
                "--max-requests-inflight-per-user=100000".to_string(),
            ],
        );
        OnEtcd {
            server: s,
            etcd,
            _dir: dir,
        }
    })
    .await
    .expect("start etcd server")
}

/// The etcd versions writes are measured on: Debian 12's, and one whose watch progress the
/// server trusts.
const ETCD_VERSIONS: [(&str, EtcdStart); 2] = [
    ("etcd 3.4.23", EtcdProcess::start),
    ("etcd 3.5", EtcdProcess::start_v35),
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // The plain-HTTP client that reads etcd's metrics still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let wants = |s: &str| args.only.iter().any(|o| o == s);
    println!("# image-apiserver API benchmark (release build, this machine; client and server share its cores)");
    let server = tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Server::start_with(
            &dir.path().join("data"),
            &[
                "--etcd-compaction-interval=0".to_string(),
                // One user drives every client here: its fair share must not cap the load.
                "--max-requests-inflight-per-user=100000".to_string(),
            ],
        );
        (s, dir)
    })
    .await
    .expect("start server");
    let mut summary = Summary::default();
    let embedded = Backend {
        name: "embedded",
        server: &server.0,
        etcd: None,
    };
    if wants("reads") {
        reads(embedded, &args, "the embedded store", &mut summary).await;
        let backends: [(&str, &str, EtcdStart); 2] = [
            (
                "etcd 3.4.23",
                "etcd 3.4.23: progress untrusted, consistent reads go to etcd",
                EtcdProcess::start,
            ),
            (
                "etcd 3.5",
                "etcd 3.5: progress trusted, consistent reads from the cache",
                EtcdProcess::start_v35,
            ),
        ];
        for (name, how, start) in backends {
            let on_etcd = etcd_server(start).await;
            reads(on_etcd.backend(name), &args, how, &mut summary).await;
        }
    }
    if wants("creates") {
        println!("## creates ({} s each)", args.seconds);
        creates(embedded, args.seconds, &mut summary).await;
        for (backend, start) in ETCD_VERSIONS {
            let etcd = etcd_server(start).await;
            creates(etcd.backend(backend), args.seconds, &mut summary).await;
        }
    }
    if wants("updates") {
        println!("## conflicting updates ({} s)", args.seconds);
        updates(&server.0, args.seconds).await;
        println!("## updates of growing streams");
        growing_updates(embedded, &mut summary).await;
        for (backend, start) in ETCD_VERSIONS {
            let etcd = etcd_server(start).await;
            growing_updates(etcd.backend(backend), &mut summary).await;
        }
    }
    if wants("update-cost") {
        println!("## update cost by stream size (1 client, sequential, server CPU per operation)");
        update_cost(&server.0, args.seconds).await;
    }
    if wants("fanout") {
        println!("## watch fan-out");
        fanout(&server.0, args.watchers, "embedded", &mut summary).await;
        for (backend, start) in ETCD_VERSIONS {
            let etcd = etcd_server(start).await;
            fanout(&etcd.server, args.watchers, backend, &mut summary).await;
        }
    }
    if wants("memory") {
        // On etcd, so that the server's resident memory is the cache and not the embedded
        // store's page cache.
        println!("## memory (etcd backend: the server holds only the watch cache)");
        memory(args.memory_streams, &mut summary).await;
    }
    summary.print();
}
