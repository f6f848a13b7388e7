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
