//! Responses shaped as kube-apiserver shapes them (issue 14, item 8): a large complete body is
//! gzipped for a client that asks (kubectl and client-go do), a small one or a watch never is;
//! Warning headers are cut to kube's limits.
//!
//! reqwest is built without its gzip feature, so bodies arrive as the server sent them.

use std::time::Duration;

use blackbox::api::{stream, streams, Client, Resp};
use blackbox::{admin_token, https_client, start_embedded, Server};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Map, Value};

const NS: &str = "gzip";
const STREAMS: usize = 200;
const TAGS: usize = 4;
/// kube's `defaultGzipThresholdBytes`.
const THRESHOLD: usize = 128 * 1024;
const GZIP: &[(&str, &str)] = &[("accept-encoding", "gzip")];

/// A stream with reference tags: they get status history at once and are never imported, so
/// each stream serves over a kilobyte of JSON.
fn tagged_stream(i: usize) -> Value {
    let tags: Vec<Value> = (0..TAGS)
        .map(|t| {
            json!({
                "name": format!("v{t}"),
                "reference": true,
                "from": {
                    "kind": "DockerImage",
                    "name": format!("registry.example.com/team/app-{i:03}:v{t}"),
                },
            })
        })
        .collect();
    json!({"metadata": {"name": format!("app-{i:03}")}, "spec": {"tags": tags}})
}

async fn create_streams(c: &Client) {
    let created: Vec<Resp> = futures::stream::iter(0..STREAMS)
        .map(|i| {
            let c = c.clone();
            async move { c.post(&streams(NS), &tagged_stream(i)).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in created {
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

async fn a_large_list_is_gzipped_for_clients_that_ask(c: &Client) {
    let plain = c.get(&streams(NS)).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(
        plain.body.len() > THRESHOLD,
        "the list is {} bytes, too small to be compressed",
        plain.body.len()
    );
    assert_eq!(
        plain.json()["items"].as_array().map(Vec::len),
        Some(STREAMS)
    );

    let gzipped = c.request(Method::GET, &streams(NS), GZIP, None).await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding").as_deref(), Some("gzip"));
    assert!(
        gzipped
            .headers_all("vary")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("accept-encoding")),
        "{:?}",
        gzipped.headers
    );
    assert!(gzipped.body.starts_with(&[0x1f, 0x8b]), "no gzip magic");
    assert!(
        gzipped.body.len() < plain.body.len() / 4,
        "{} bytes gzipped of {}",
        gzipped.body.len(),
        plain.body.len()
    );

    // kube never answers 406 for an encoding: a client that refuses identity gets it anyway.
    let refusing = c
        .request(
            Method::GET,
            &streams(NS),
            &[("accept-encoding", "identity;q=0")],
            None,
        )
        .await;
    assert_eq!(refusing.status, 200);
    assert_eq!(refusing.header("content-encoding"), None);
    assert_eq!(refusing.body.len(), plain.body.len());
}

async fn a_small_object_is_not_gzipped(c: &Client) {
    let one = c
        .request(Method::GET, &stream(NS, "app-000"), GZIP, None)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-encoding"), None);
    assert_eq!(one.json()["metadata"]["name"], "app-000");
}

/// The watch's initial events add up to well over the threshold, yet the stream is plain: kube
/// writes watch events straight to the connection.
async fn a_watch_is_not_gzipped(server: &Server) {
    let http = https_client(server.data_dir(), Some(&admin_token(server.data_dir())));
    let mut watch = http
        .get(format!("{}{}?watch=true", server.base, streams(NS)))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("watch request");
    assert_eq!(watch.status().as_u16(), 200);
    assert!(watch.headers().get("content-encoding").is_none());
    let mut buf = Vec::new();
    let line = loop {
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            break buf[..end].to_vec();
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), watch.chunk())
            .await
            .expect("the first event within 10 s")
            .expect("watch body")
            .expect("the watch is still open");
        buf.extend_from_slice(&chunk);
    };
    let event: Value = serde_json::from_slice(&line).expect("the first event is plain JSON");
    assert_eq!(event["type"], "ADDED");
}

/// kube's recorder: warnings go out whole while their texts add up to at most 4,096
/// characters; the one that would pass it cuts every warning to 256, and once 4,096 is reached
/// again the rest are dropped. Twenty unknown fields of 300 characters make warnings of 321:
/// twelve fit, the 13th cuts them all (13 × 256), the 14th to 16th are cut as they come and
/// bring the total to 4,096, and the last four are dropped.
async fn warnings_are_cut_to_kube_limits(c: &Client) {
    let names: Vec<String> = (0..20)
        .map(|i| format!("f{i:02}{}", "x".repeat(297)))
        .collect();
    let mut spec = Map::new();
    for name in &names {
        spec.insert(name.clone(), json!(1));
    }
    let body = json!({"metadata": {"name": "warned"}, "spec": spec});
    let r = c
        .post(&format!("{}?fieldValidation=Warn", streams(NS)), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // Each text is `unknown field "spec.<name>"`; its first 256 characters keep 236 of the
    // name.
    let expected: Vec<String> = names[..16]
        .iter()
        .map(|name| format!("299 - \"unknown field \\\"spec.{}\"", &name[..236]))
        .collect();
    assert_eq!(r.headers_all("warning"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_gzipped_and_warnings_cut_as_kube_does() {
    let server = start_embedded(&[]).await;
    let c = server.client();
    create_streams(&c).await;
    a_large_list_is_gzipped_for_clients_that_ask(&c).await;
    a_small_object_is_not_gzipped(&c).await;
    a_watch_is_not_gzipped(&server).await;
    warnings_are_cut_to_kube_limits(&c).await;
}
