//! Harness for the black-box tests: starts the built `image-apiserver` binary on a free
//! loopback port with its own data directory, and stops it (SIGTERM, then SIGKILL) on drop.
//!
//! The binary is found at `$IMAGE_APISERVER_BIN`, or in the workspace's target directory
//! (`hack/test` builds it before running the tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use storage::testing::{free_port, EtcdProcess};

/// The server binary under test.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("IMAGE_APISERVER_BIN") {
        return PathBuf::from(path);
    }
    // Test executables live in <target>/<profile>/deps, next to the binaries' directory.
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
    {
        let candidate = profile_dir.join("image-apiserver");
        if candidate.exists() {
            return candidate;
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    for profile in ["debug", "release"] {
        let candidate = target.join(profile).join("image-apiserver");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("image-apiserver is not built: run `cargo build -p image-apiserver` (hack/test does)");
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts the server on the embedded store in a fresh data directory.
    pub fn embedded() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let mut server = Server::start_with(&data, &[]);
        server._dir = Some(dir);
        server
    }

    /// Starts the server on etcd under `prefix`.
    pub fn etcd(etcd: &EtcdProcess, prefix: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let args = [
            "--storage-backend=etcd".to_string(),
            format!("--etcd-servers={}", etcd.endpoint),
            format!("--etcd-prefix={prefix}"),
        ];
        let mut server = Server::start_with(&data, &args);
        server._dir = Some(dir);
        server
    }

    /// Starts the server with a given data directory (kept by the caller) and extra flags.
    pub fn start_with(data_dir: &Path, extra: &[String]) -> Server {
        let port = free_port();
        let child = Command::new(server_binary())
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn image-apiserver");
        let server = Server {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let req = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                let mut resp = String::new();
                if conn.write_all(req.as_bytes()).is_ok()
                    && conn.read_to_string(&mut resp).is_ok()
                    && resp.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "image-apiserver on port {} was not ready within {timeout:?}",
            self.port
        );
    }

    /// Sends SIGTERM and waits for the process to exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("image-apiserver did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
