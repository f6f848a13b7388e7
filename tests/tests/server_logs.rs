//! The server's log as Kubernetes users expect it (issue 14, item 3): everything on standard
//! error, text without escape codes in a file or JSON lines (`--logging-format`), klog's `-v`,
//! and one line per request with kube's httplog fields and the request's Audit-ID.

use std::time::{Duration, Instant};

use blackbox::{LogFiles, Server};
use reqwest::Method;
use serde_json::Value;

const LIST: &str = "/apis/image.openshift.io/v1/namespaces/default/imagestreams";
const AGENT: &str = "server-logs-test/1.0 (logging)";
/// An Audit-ID a client (kube-apiserver's aggregator) chose.
const FORWARDED_ID: &str = "aggregator-1";

/// A server logging into files of a fresh directory. The directory must outlive the server:
/// bind it first.
async fn start(extra: &[&str]) -> (tempfile::TempDir, LogFiles, Server) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-logs-")
            .tempdir()
            .expect("temp dir");
        let logs = LogFiles::in_dir(dir.path());
        let server = Server::start_logging_to(&dir.path().join("data"), &extra, &logs);
        (dir, logs, server)
    })
    .await
    .expect("start the server")
}

/// Every complete line of standard error, each of which must be one JSON object.
fn json_lines(logs: &LogFiles) -> Vec<Value> {
    let logged = String::from_utf8_lossy(&logs.stderr_bytes()).into_owned();
    logged
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(value) if value.is_object() => value,
            other => panic!("not one JSON object per line ({other:?}): {line}"),
        })
        .collect()
}

/// The JSON lines, once `found` holds of them (within 10 s).
async fn json_lines_when(
    logs: &LogFiles,
    what: &str,
    found: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = json_lines(logs);
        if found(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not logged within 10 s: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The request line carrying `audit_id`.
fn request_line<'a>(lines: &'a [Value], audit_id: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|l| l["message"] == "HTTP" && l["audit-ID"] == audit_id)
}

/// The lines more detailed than info.
fn debug_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["level"] == "DEBUG" || l["level"] == "TRACE")
        .collect()
}

/// Standard error, once it contains `needle` (within 10 s).
async fn stderr_when_it_contains(logs: &LogFiles, needle: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bytes = logs.stderr_bytes();
        if String::from_utf8_lossy(&bytes).contains(needle) {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged within 10 s: {}",
            String::from_utf8_lossy(&bytes)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_name_every_request_like_kube_apiserver() {
    let (_dir, logs, server) = start(&["--logging-format=json"]).await;
    let admin = server.client();
    let uri = format!("{LIST}?limit=5&labelSelector=app%3Dweb");
    let listed = admin
        .request(Method::GET, &uri, &[("user-agent", AGENT)], None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let audit_id = listed.header("audit-id").expect("an Audit-Id header");
    assert!(!audit_id.is_empty());
    // The ID kube-apiserver's aggregator forwards is kept, in the header and in the log.
    let forwarded = admin
        .request(Method::GET, LIST, &[("Audit-ID", FORWARDED_ID)], None)
        .await;
    assert_eq!(forwarded.header("audit-id").as_deref(), Some(FORWARDED_ID));
    let refused = server.anonymous().get(LIST).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let refused_id = refused.header("audit-id").expect("an Audit-Id header");

    let ids = [audit_id.as_str(), FORWARDED_ID, refused_id.as_str()];
    let logged = |lines: &[Value]| ids.iter().all(|id| request_line(lines, id).is_some());
    let lines = json_lines_when(&logs, "the three requests", logged).await;
    let line = request_line(&lines, &audit_id).expect("the list's line");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["verb"], "GET", "{line}");
    assert_eq!(line["URI"], uri.as_str(), "{line}");
    assert_eq!(line["resp"], 200, "{line}");
    assert_eq!(line["userAgent"], AGENT, "{line}");
    assert_eq!(line["user"], "admin", "{line}");
    let src_ip = line["srcIP"].as_str().unwrap_or_default();
    assert!(src_ip.starts_with("127.0.0.1:"), "{line}");
    let latency = line["latency"].as_str().unwrap_or_default();
    assert!(!latency.is_empty(), "{line}");
    assert!(line["timestamp"].as_str().is_some(), "{line}");
    let target = line["target"].as_str().unwrap_or_default();
    assert!(target.starts_with("apiserver::"), "{line}");
    // No user was established for the 401.
    let line = request_line(&lines, &refused_id).expect("the 401's line");
    assert_eq!(line["resp"], 401, "{line}");
    assert_eq!(line["user"], "", "{line}");

    // What used to be printed for the user is a log line now.
    let kubeconfig = std::fs::canonicalize(server.kubeconfig())
        .expect("the kubeconfig")
        .display()
        .to_string();
    assert!(
        lines.iter().any(|l| l["kubeconfig"] == kubeconfig.as_str()),
        "no line names {kubeconfig}: {lines:#?}"
    );
    // -v 0: the 401's debug line (the authenticators' rejections) stays out.
    let detailed = debug_lines(&lines);
    assert!(detailed.is_empty(), "{detailed:#?}");
    assert!(logs.stdout_bytes().is_empty(), "{:?}", logs.stdout_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbosity_4_logs_debug_lines_of_our_code() {
    let (_dir, logs, server) = start(&["--logging-format=json", "-v", "4"]).await;
    let refused = server.anonymous().get(LIST).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    let refused_id = refused.header("audit-id").expect("an Audit-Id header");

    let logged = |lines: &[Value]| request_line(lines, &refused_id).is_some();
    let lines = json_lines_when(&logs, "the 401", logged).await;
    let detailed = debug_lines(&lines);
    assert!(!detailed.is_empty(), "no debug line at -v 4: {lines:#?}");
    // Ours only: dependencies stay at warnings.
    let ours = [
        "apimachinery",
        "apiserver",
        "image_api",
        "image_apiserver",
        "importer",
        "registry_client",
        "storage",
    ];
    for line in &detailed {
        let target = line["target"].as_str().unwrap_or_default();
        let crate_name = target.split("::").next().unwrap_or_default();
        assert!(ours.contains(&crate_name), "{line}");
    }
    assert!(
        detailed.iter().any(|l| l["message"] == "unauthorized"),
        "the 401's reason is not logged: {detailed:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_file_are_plain_and_stdout_stays_empty() {
    let (_dir, logs, mut server) = start(&[]).await;
    let listed = server
        .client()
        .request(Method::GET, LIST, &[("user-agent", AGENT)], None)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let audit_id = listed.header("audit-id").expect("an Audit-Id header");

    let needle = format!("audit-ID={audit_id}");
    let stderr = stderr_when_it_contains(&logs, &needle).await;
    let stderr_text = String::from_utf8_lossy(&stderr).into_owned();
    let line = stderr_text
        .lines()
        .find(|l| l.contains(&needle))
        .expect("the request's line");
    let expected = [
        " INFO ".to_string(),
        " HTTP ".to_string(),
        "verb=GET".to_string(),
        format!("URI={LIST} "),
        format!("userAgent={AGENT} "),
        "srcIP=127.0.0.1:".to_string(),
        "resp=200".to_string(),
        "user=admin".to_string(),
    ];
    for field in expected {
        assert!(line.contains(&field), "{field:?} missing from {line}");
    }

    // Shutdown's lines too.
    let status = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(20)));
    assert!(status.success(), "exit status {status:?}");
    let stderr = logs.stderr_bytes();
    let stderr_text = String::from_utf8_lossy(&stderr);
    assert!(!stderr.contains(&0x1b), "escape codes: {stderr_text}");
    assert!(
        logs.stdout_bytes().is_empty(),
        "standard output: {}",
        String::from_utf8_lossy(&logs.stdout_bytes())
    );
}

#[test]
fn an_unknown_logging_format_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let (code, stderr) = blackbox::refused_start(&data, &["--logging-format=xml"]);
    // clap's usage error, as for every other bad flag value.
    assert_eq!(code, Some(2), "{stderr}");
    for part in ["--logging-format", "'xml'", "text", "json"] {
        assert!(stderr.contains(part), "{part:?} missing from {stderr}");
    }
    assert!(!data.exists(), "the data directory was created");
}
