//! Harness for the black-box tests: starts the built `image-apiserver` binary on a free
//! loopback port with its own data directory, talks to it over HTTPS with the CA and admin
//! token it generated, and stops it (SIGTERM, then SIGKILL) on drop.
//!
//! The binary is found at `$IMAGE_APISERVER_BIN`, or in the workspace's target directory
//! (`hack/test` builds it before running the tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod api;
pub mod fake_kube;
pub mod front_proxy;
pub mod hostile;
pub mod pki;
pub mod python;
pub mod registry;
pub mod token_service;

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
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// Where [`Server::start_logging_to`] writes the server's standard output and error.
pub struct LogFiles {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl LogFiles {
    /// `stdout.log` and `stderr.log` in `dir`.
    pub fn in_dir(dir: &Path) -> LogFiles {
        LogFiles {
            stdout: dir.join("stdout.log"),
            stderr: dir.join("stderr.log"),
        }
    }

    /// What the server has written to standard error so far.
    pub fn stderr_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.stderr).unwrap_or_default()
    }

    /// What the server has written to standard output so far.
    pub fn stdout_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.stdout).unwrap_or_default()
    }
}

/// An HTTPS client that trusts the CA the server generated in `data_dir`.
pub fn https_client(data_dir: &Path, token: Option<&str>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let ca = std::fs::read(data_dir.join("ca.crt")).expect("server CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The admin token the server generated in `data_dir`.
pub fn admin_token(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("tokens.csv")).expect("tokens.csv");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut parts = l.split(',');
            let token = parts.next()?;
            (parts.next()? == "admin").then(|| token.to_string())
        })
        .expect("admin token")
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
        let mut command = Server::command(data_dir, extra, port);
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        Server::spawn(command, data_dir, port)
    }

    /// Like [`Server::start_with`], with the server's standard output and error written to
    /// `logs`. It logs as its flags say: `RUST_LOG` and `NO_COLOR` are not passed on.
    pub fn start_logging_to(data_dir: &Path, extra: &[String], logs: &LogFiles) -> Server {
        let create = |path: &Path| std::fs::File::create(path).expect("log file");
        let port = free_port();
        let mut command = Server::command(data_dir, extra, port);
        command
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(create(&logs.stdout))
            .stderr(create(&logs.stderr));
        Server::spawn(command, data_dir, port)
    }

    /// The binary on `port` with `data_dir` and `extra`; output not yet directed.
    fn command(data_dir: &Path, extra: &[String], port: u16) -> Command {
        let mut command = Command::new(server_binary());
        command
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .args(extra)
            .stdin(Stdio::null());
        command
    }

    /// Runs `command` and waits until the server is ready.
    fn spawn(mut command: Command, data_dir: &Path, port: u16) -> Server {
        let child = command.spawn().expect("spawn image-apiserver");
        let server = Server {
            child: Some(child),
            port,
            base: format!("https://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            _dir: None,
        };
        server.wait_ready(Duration::from_secs(30));
        server
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    /// A client authenticated as the generated admin.
    pub fn client(&self) -> api::Client {
        api::Client::new(
            &self.base,
            https_client(&self.data_dir, Some(&admin_token(&self.data_dir))),
        )
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> api::Client {
        api::Client::new(&self.base, https_client(&self.data_dir, None))
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // The kubeconfig is written once the server listens.
        while !self.kubeconfig().exists() {
            assert!(
                Instant::now() < deadline,
                "image-apiserver on port {} did not start within {timeout:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Polled from a thread of its own, so that callers may be async or not.
        let client = https_client(&self.data_dir, None);
        let url = format!("{}/readyz", self.base);
        let ready = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            while Instant::now() < deadline {
                let ok = runtime.block_on(async {
                    client
                        .get(&url)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().as_u16() == 200)
                });
                if ok {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
        .join()
        .unwrap_or(false);
        assert!(
            ready,
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

/// Starts a server on the embedded store (from async tests).
pub async fn start_embedded(extra: &[&str]) -> Server {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        let mut server = Server::start_with(&dir.path().join("data"), &extra);
        server._dir = Some(dir);
        server
    })
    .await
    .expect("start server")
}

/// Starts etcd and a server on it (from async tests). Drop the server before etcd.
pub async fn start_etcd(extra: &[&str]) -> (EtcdProcess, Server) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let etcd = EtcdProcess::start();
        let dir = tempfile::Builder::new()
            .prefix("image-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        let mut args = vec![
            "--storage-backend=etcd".to_string(),
            format!("--etcd-servers={}", etcd.endpoint),
            "--etcd-prefix=openshift.io".to_string(),
        ];
        args.extend(extra);
        let mut server = Server::start_with(&dir.path().join("data"), &args);
        server._dir = Some(dir);
        (etcd, server)
    })
    .await
    .expect("start etcd and server")
}

/// Runs each listed `async fn(&Server, &[&str])`-style test on the embedded store and on etcd:
/// `both_backends!([flags], test_a, test_b)` makes modules `test_a::{embedded, etcd}`.
#[macro_export]
macro_rules! both_backends {
    ($flags:tt, $($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let server = $crate::start_embedded(&$flags).await;
                super::$name(&server).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                let (etcd, server) = $crate::start_etcd(&$flags).await;
                super::$name(&server).await;
                drop(server);
                drop(etcd);
            }
        }
    )* };
}

/// The CPU time (user + system) a process has used, from `/proc/<pid>/stat`: the figure that
/// tells the server's cost apart from the clients', which share its cores.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// `getconf CLK_TCK`; Linux has used 100 on every architecture we run on.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Runs the server with `args` and `data_dir`, expecting it to exit instead of serving (a bad
/// flag or file): its exit code and standard error. Panics if it is still running after 20 s.
pub fn refused_start(data_dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(server_binary())
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()))
        .arg(format!("--data-dir={}", data_dir.display()))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn image-apiserver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll the server").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("image-apiserver {args:?} kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("the server's output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
