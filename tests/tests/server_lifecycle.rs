//! The binary's lifecycle on both backends: it becomes ready, answers health checks that reflect
//! its store, and exits cleanly on SIGTERM, releasing its data directory.

use std::time::Duration;

use blackbox::{EtcdProcess, Server};

async fn status(server: &Server, path: &str) -> (u16, String) {
    let resp = server.anonymous().get(path).await;
    (resp.status, resp.text())
}

#[tokio::test]
async fn embedded_server_serves_health_and_stops_on_sigterm() {
    let mut server = tokio::task::spawn_blocking(Server::embedded)
        .await
        .expect("start");
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            status(&server, path).await,
            (200, "ok".to_string()),
            "{path}"
        );
    }
    let data = server.data_dir().to_path_buf();
    let exit = tokio::task::spawn_blocking(move || {
        let s = server.terminate(Duration::from_secs(10));
        (s, server)
    })
    .await
    .expect("terminate");
    assert!(exit.0.success(), "exit status {:?}", exit.0);
    // The data directory was released: a new server opens it.
    let again = tokio::task::spawn_blocking(move || Server::start_with(&data, &[]))
        .await
        .expect("restart");
    assert_eq!(status(&again, "/readyz").await.0, 200);
    drop(exit.1);
}

#[tokio::test]
async fn etcd_server_health_follows_etcd() {
    let mut etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    let server = Server::etcd(&etcd, "openshift.io");
    assert_eq!(status(&server, "/readyz").await.0, 200);
    etcd = tokio::task::spawn_blocking(move || {
        etcd.stop();
        etcd
    })
    .await
    .expect("stop etcd");
    let (code, _) = status(&server, "/healthz").await;
    assert_eq!(code, 500, "healthz stayed green with etcd down");
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_cleanly() {
    let mut server = blackbox::start_embedded(&[]).await;
    let client = server.client();
    let mut watch = client
        .watch(
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreams?watch=true",
            None,
        )
        .await;
    let created = client
        .post(
            "/apis/image.openshift.io/v1/namespaces/ns/imagestreams",
            &serde_json::json!({"metadata": {"name": "before-shutdown"}}),
        )
        .await;
    assert_eq!(created.status, 201);
    let event = watch.next(Duration::from_secs(5)).await.expect("event");
    assert_eq!(event["type"], "ADDED");
    let (exit, server) = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(15));
        (status, server)
    })
    .await
    .expect("terminate");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        watch.ends_within(Duration::from_secs(2)).await,
        "the watch stream did not end at shutdown"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_inflight_limit_get_429() {
    let server = blackbox::start_embedded(&["--max-mutating-requests-inflight=1"]).await;
    let client = server.client();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(
                    "/apis/image.openshift.io/v1/namespaces/ns/imagestreams",
                    &serde_json::json!({"metadata": {"name": format!("s{i}")}}),
                )
                .await;
            (i, r)
        }));
    }
    let mut created = Vec::new();
    let mut limited = 0;
    for t in tasks {
        let (i, r) = t.await.expect("task");
        match r.status {
            201 => created.push(i),
            429 => {
                limited += 1;
                assert_eq!(r.text(), "Too many requests, please try again later.\n");
                assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!(limited > 0, "no request was limited");
    let list = client
        .get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams")
        .await
        .json();
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(created.len()),
        "a 429 wrote something, or a 201 was lost"
    );
}

/// kube's `--shutdown-delay-duration`: after SIGTERM `/readyz` fails at once while requests are
/// still served, and only after the delay does the server stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_first_during_the_shutdown_delay() {
    let mut server = blackbox::start_embedded(&["--shutdown-delay-duration=3s"]).await;
    assert_eq!(status(&server, "/readyz").await.0, 200);
    let admin = server.client();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (code, body) = status(&server, "/readyz").await;
        if code != 200 {
            assert!(body.contains("shutdown"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still ready after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still serving while load balancers catch up.
    let r = admin
        .get("/apis/image.openshift.io/v1/namespaces/ns/imagestreams")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let exit = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
        .await
        .expect("wait for the exit");
    assert!(exit.success(), "exit status {exit:?}");
}
