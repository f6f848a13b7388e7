//! Start-up and stop as kube-apiserver does them (issue 14, items 5 and 6): an etcd that is
//! not up yet is waited for, a busy port is named before anything is written, and a clean stop
//! closes the embedded store at once and without a warning.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use blackbox::api::{streams, Client};
use blackbox::{admin_token, free_port, https_client, server_binary, EtcdProcess};
use serde_json::json;

/// A server started here rather than through `blackbox::Server`, so that what it writes to
/// stdout and stderr can be read (the log may go to either).
struct Logged {
    child: Child,
    port: u16,
    data: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    /// Starts the binary on `port` with a fresh data directory (not created here) and
    /// `extra` flags; does not wait for anything.
    fn start(port: u16, extra: &[String]) -> Logged {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let log_file = |path: &Path| std::fs::File::create(path).expect("log file");
        let child = Command::new(server_binary())
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--data-dir={}", data.display()))
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(log_file(&stdout))
            .stderr(log_file(&stderr))
            .spawn()
            .expect("spawn image-apiserver");
        Logged {
            child,
            port,
            data,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything the server wrote, stdout then stderr.
    fn output(&self) -> String {
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        format!("{stdout}{}", self.stderr())
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status, if the process ends within `timeout`.
    async fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// SIGTERM; the exit status and how long the exit took.
    async fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM failed");
        let status = self.exit_within(timeout).await;
        let took = sent.elapsed();
        let status = status.unwrap_or_else(|| {
            panic!(
                "image-apiserver did not exit within {timeout:?} of SIGTERM: {}",
                self.output()
            )
        });
        (status, took)
    }

    /// Waits until `/readyz` answers 200 (after the kubeconfig is written, as the server does
    /// once it listens).
    async fn ready_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.data.join("admin.kubeconfig").exists() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = https_client(&self.data, None);
        let url = format!("{}/readyz", self.base());
        while Instant::now() < deadline {
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().as_u16() == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The files the server has written into its data directory.
    fn written(&self) -> Vec<String> {
        std::fs::read_dir(&self.data)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_server_waits_for_an_etcd_that_starts_late() {
    let mut etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    // Down, with its ports and data kept: nothing listens at the endpoint until it is back.
    etcd.stop();
    let port = free_port();
    let flags = [
        "--storage-backend=etcd".to_string(),
        format!("--etcd-servers={}", etcd.endpoint),
        "--etcd-prefix=openshift.io".to_string(),
    ];
    let mut server = Logged::start(port, &flags);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        server.running(),
        "the server exited instead of waiting for etcd: {}",
        server.output()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server took connections before its store was reachable"
    );
    let log = server.output();
    assert!(
        log.contains(&format!("waiting for etcd at {}", etcd.endpoint)),
        "the wait is not in the log: {log}"
    );

    etcd.start_again();
    assert!(
        server.ready_within(Duration::from_secs(60)).await,
        "not ready after etcd came up: {}",
        server.output()
    );
    let (status, _) = server.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status:?}");
    drop(server);
    drop(etcd);
}

#[tokio::test]
async fn a_busy_port_is_named_before_anything_is_written() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let port = held.local_addr().expect("held address").port();
    let mut server = Logged::start(port, &[]);

    let status = server
        .exit_within(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the server kept running on a busy port: {}",
                server.output()
            )
        });
    assert!(!status.success(), "exit status {status:?}");
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the address is not named: {stderr}"
    );
    assert!(
        stderr.contains("in use"),
        "the reason is not given: {stderr}"
    );
    // Neither credentials nor certificates nor a store: nothing at all.
    assert_eq!(server.written(), Vec::<String>::new());
    drop(held);
}

#[tokio::test]
async fn a_clean_stop_closes_the_embedded_store_at_once() {
    let mut server = Logged::start(free_port(), &[]);
    assert!(
        server.ready_within(Duration::from_secs(30)).await,
        "not ready: {}",
        server.output()
    );
    // One write, so that the writer, the watch caches and the leader lock have all worked.
    let token = admin_token(&server.data);
    let client = Client::new(&server.base(), https_client(&server.data, Some(&token)));
    let created = client
        .post(
            &streams("ns"),
            &json!({"metadata": {"name": "before-stop"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    drop(client);

    let (status, took) = server.terminate(Duration::from_secs(15)).await;
    let log = server.output();
    assert!(status.success(), "exit status {status:?}: {log}");
    assert!(
        !log.contains("did not close cleanly"),
        "the store did not close cleanly: {log}"
    );
    // The store used to be waited on for a fixed 5 s at every stop.
    assert!(
        took < Duration::from_secs(4),
        "an idle stop took {took:?}: {log}"
    );
}
