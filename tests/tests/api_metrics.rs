//! `/metrics` as kube-apiserver 1.32 serves it (issue 14, item 2), read by the official
//! Prometheus text parser (Python's `prometheus_client`), the way a scraper reads it: family
//! types, help texts, kube's label names and values, buckets, and the `process_*` family.

use std::time::{Duration, Instant};

use blackbox::api::{stream, streams, Client};
use blackbox::{python, start_embedded};
use serde_json::{json, Value};

const NS: &str = "metrics";
const WAIT: Duration = Duration::from_secs(20);
/// Asked for, and never served: kube's legacy registry handler has no OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
const ONE_STORED_STREAM: &str =
    "apiserver_storage_objects{resource=\"imagestreams.image.openshift.io\"} 1\n";

/// Parses the file named by argv[1] and prints {family: {type, help, samples}} as JSON. The
/// parser names a counter family without its `_total`; its samples keep it.
const PARSE: &str = r#"
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families

with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()
families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [
            {
                "name": s.name,
                "labels": s.labels,
                "value": s.value if math.isfinite(s.value) else str(s.value),
            }
            for s in family.samples
        ],
    }
print(json.dumps(families))
"#;

/// The families the parser found.
struct Scrape(Value);

impl Scrape {
    fn family(&self, name: &str) -> &Value {
        let family = &self.0[name];
        assert!(family.is_object(), "no family {name} in {:?}", self.names());
        family
    }

    fn names(&self) -> Vec<&String> {
        self.0
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default()
    }

    fn kind(&self, name: &str) -> &str {
        self.family(name)["type"].as_str().unwrap_or("")
    }

    /// The samples of `family` named `sample` whose labels include every pair of `labels`.
    fn samples(&self, family: &str, sample: &str, labels: &[(&str, &str)]) -> Vec<&Value> {
        self.family(family)["samples"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|s| s["name"] == sample)
                    .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the one sample that matches.
    fn value(&self, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.samples(family, sample, labels);
        assert_eq!(
            found.len(),
            1,
            "{sample} {labels:?}: {found:?} in {}",
            self.family(family)
        );
        found[0]["value"].as_f64().expect("a finite value")
    }
}

/// Reads `/metrics` (asking for OpenMetrics, as Prometheus does) and checks its media type.
async fn metrics_text(c: &Client) -> String {
    let resp = c.get_accept("/metrics", OPENMETRICS).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type").as_deref(), Some(TEXT_0_0_4));
    resp.text()
}

/// What the scenario must have left in the text before it is parsed: the watch that was
/// dropped is counted once the server noticed, and the watch cache has the stored stream.
fn settled(text: &str) -> bool {
    let watch_counted = text.lines().any(|l| {
        l.starts_with("apiserver_request_total{")
            && l.contains("verb=\"WATCH\"")
            && l.contains("code=\"200\"")
    });
    watch_counted && text.contains(ONE_STORED_STREAM)
}

async fn parse(text: String) -> Scrape {
    let out = tokio::task::spawn_blocking(move || {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write the scrape");
        let path = file.path().to_str().expect("UTF-8 path").to_string();
        python::run_ok(PARSE, &[path.as_str()], &[])
    })
    .await
    .expect("parser");
    Scrape(serde_json::from_str(&out).expect("the parser's JSON"))
}

/// A create, a get, a list, a watch opened and dropped, a watch left open, a dry-run create
/// and a 404.
async fn traffic(c: &Client) -> blackbox::api::Watch {
    let created = c
        .post(&streams(NS), &json!({"metadata": {"name": "web"}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(c.get(&stream(NS, "web")).await.status, 200);
    assert_eq!(c.get(&streams(NS)).await.status, 200);
    let watch = format!("{}?watch=true", streams(NS));
    let mut dropped = c.watch(&watch, None).await;
    assert!(dropped.next(WAIT).await.is_some(), "the ADDED event");
    drop(dropped);
    let mut open = c.watch(&watch, None).await;
    assert!(open.next(WAIT).await.is_some(), "the ADDED event");
    let dry = c
        .post(
            &format!("{}?dryRun=All", streams(NS)),
            &json!({"metadata": {"name": "dry"}}),
        )
        .await;
    assert_eq!(dry.status, 201, "{}", dry.text());
    assert_eq!(c.get(&stream(NS, "missing")).await.status, 404);
    open
}

fn request_labels<'a>(verb: &'a str, scope: &'a str, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("verb", verb),
        ("group", "image.openshift.io"),
        ("version", "v1"),
        ("resource", "imagestreams"),
        ("subresource", ""),
        ("scope", scope),
        ("component", "apiserver"),
        ("code", code),
    ]
}

/// The value of the one `apiserver_request_total` series with these labels.
fn total(s: &Scrape, labels: &[(&str, &str)]) -> f64 {
    s.value("apiserver_request", "apiserver_request_total", labels)
}

fn requests_are_labelled_as_kube_labels_them(s: &Scrape) {
    assert_eq!(s.kind("apiserver_request"), "counter");
    let help = s.family("apiserver_request")["help"].as_str().unwrap_or("");
    assert!(
        help.starts_with("[STABLE] Counter of apiserver requests"),
        "{help}"
    );
    // kube's installer puts every create in scope "resource".
    let mut created = request_labels("POST", "resource", "201");
    created.push(("dry_run", ""));
    assert_eq!(total(s, &created), 1.0);
    let mut dry = request_labels("POST", "resource", "201");
    dry.push(("dry_run", "All"));
    assert_eq!(total(s, &dry), 1.0);
    assert_eq!(total(s, &request_labels("GET", "resource", "404")), 1.0);
    assert_eq!(total(s, &request_labels("GET", "resource", "200")), 1.0);
    assert!(total(s, &request_labels("LIST", "namespace", "200")) >= 1.0);
    // The dropped watch; the open one is counted when it ends.
    assert_eq!(total(s, &request_labels("WATCH", "namespace", "200")), 1.0);
    // The root health checks are counted by path, as kube counts them.
    let readyz = [
        ("verb", "GET"),
        ("subresource", "/readyz"),
        ("component", ""),
        ("code", "200"),
    ];
    assert!(total(s, &readyz) >= 1.0);
}

fn latency_has_kubes_buckets(s: &Scrape) {
    let name = "apiserver_request_duration_seconds";
    assert_eq!(s.kind(name), "histogram");
    let post = [("verb", "POST"), ("dry_run", ""), ("scope", "resource")];
    let buckets = s.samples(name, &format!("{name}_bucket"), &post);
    let les: Vec<&str> = buckets
        .iter()
        .filter_map(|b| b["labels"]["le"].as_str())
        .collect();
    for le in ["0.005", "0.025", "1", "5", "30", "60", "+Inf"] {
        assert!(les.contains(&le), "no le={le} in {les:?}");
    }
    assert_eq!(les.len(), 24, "{les:?}");
    assert_eq!(s.value(name, &format!("{name}_count"), &post), 1.0);
}

fn watches_are_counted(s: &Scrape) {
    assert_eq!(s.kind("apiserver_longrunning_requests"), "gauge");
    let open = [
        ("verb", "WATCH"),
        ("group", "image.openshift.io"),
        ("version", "v1"),
        ("resource", "imagestreams"),
        ("subresource", ""),
        ("scope", "namespace"),
        ("component", "apiserver"),
    ];
    let gauge = "apiserver_longrunning_requests";
    assert_eq!(s.value(gauge, gauge, &open), 1.0);
    assert_eq!(s.kind("apiserver_watch_events"), "counter");
    let kind = [
        ("group", "image.openshift.io"),
        ("version", "v1"),
        ("kind", "ImageStream"),
    ];
    let events = s.value(
        "apiserver_watch_events",
        "apiserver_watch_events_total",
        &kind,
    );
    assert!(events >= 2.0, "{events}");
    let sizes = "apiserver_watch_events_sizes";
    assert_eq!(s.kind(sizes), "histogram");
    assert_eq!(s.value(sizes, &format!("{sizes}_count"), &kind), events);
}

fn inflight_and_storage(s: &Scrape) {
    let inflight = "apiserver_current_inflight_requests";
    assert_eq!(s.kind(inflight), "gauge");
    for kind in ["readOnly", "mutating"] {
        assert!(s.value(inflight, inflight, &[("request_kind", kind)]) >= 0.0);
    }
    let objects = "apiserver_storage_objects";
    assert_eq!(s.kind(objects), "gauge");
    let streams = [("resource", "imagestreams.image.openshift.io")];
    assert_eq!(s.value(objects, objects, &streams), 1.0);
    let images = [("resource", "images.image.openshift.io")];
    assert_eq!(s.value(objects, objects, &images), 0.0);
    let etcd = "etcd_request_duration_seconds";
    assert_eq!(s.kind(etcd), "histogram");
    for operation in ["create", "list"] {
        let labels = [
            ("operation", operation),
            ("type", "imagestreams.image.openshift.io"),
        ];
        assert!(s.value(etcd, &format!("{etcd}_count"), &labels) >= 1.0);
    }
}

fn process_family(s: &Scrape) {
    assert_eq!(s.kind("process_cpu_seconds"), "counter");
    let cpu = s.value("process_cpu_seconds", "process_cpu_seconds_total", &[]);
    assert!(cpu > 0.0, "{cpu}");
    let gauge = |name: &str| {
        assert_eq!(s.kind(name), "gauge", "{name}");
        s.value(name, name, &[])
    };
    let resident = gauge("process_resident_memory_bytes");
    assert!(resident > 1_000_000.0, "{resident}");
    assert!(gauge("process_virtual_memory_bytes") >= resident);
    assert!(gauge("process_virtual_memory_max_bytes") > 0.0);
    let open = gauge("process_open_fds");
    assert!(open >= 3.0 && gauge("process_max_fds") >= open);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = gauge("process_start_time_seconds");
    assert!(
        started > now - 600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_kubes_families_in_text_format() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    let _open = traffic(&c).await;
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = metrics_text(&c).await;
        if settled(&text) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(settled(&text), "the scenario never showed up:\n{text}");
    assert!(!text.contains("# EOF"), "OpenMetrics was served:\n{text}");
    let scrape = parse(text).await;
    requests_are_labelled_as_kube_labels_them(&scrape);
    latency_has_kubes_buckets(&scrape);
    watches_are_counted(&scrape);
    inflight_and_storage(&scrape);
    process_family(&scrape);
}
