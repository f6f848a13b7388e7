//! A real container registry for the import tests: Debian's `docker-registry` (distribution
//! 2.8.2) on a free loopback port, optionally behind TLS (a CA generated here), htpasswd or
//! token authentication, with test images pushed into it by `skopeo` from OCI layouts the tests
//! build themselves.
//!
//! It is real rather than mocked so that the importer meets what it will meet in production:
//! distribution's own content negotiation (OCI and Docker schema2 manifests, indexes and manifest
//! lists), its `WWW-Authenticate` challenges and error bodies, and manifests converted by the
//! same library (`containers/image`) that real pushes go through. Its access log also lets
//! a test count the requests the importer really made.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::token_service::TokenAuthConfig;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The creation time of every test image (configs must not change between runs).
const CREATED: &str = "2024-01-01T00:00:00Z";
/// How long the registry may take to answer `GET /v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to run the registry. The default is plain HTTP without authentication.
#[derive(Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate signed by a CA generated for this registry
    /// ([`Registry::ca_file`]).
    pub tls: bool,
    /// Require HTTP basic authentication with this user and password.
    pub htpasswd: Option<(String, String)>,
    /// Require bearer tokens from this token service.
    pub token_auth: Option<TokenAuthConfig>,
}

/// The manifest type `skopeo` pushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    /// OCI, pushed unchanged (`--format oci --preserve-digests`).
    Oci,
    /// Docker schema2 (`--format v2s2`): a converted manifest (or manifest list), whose digest
    /// differs from the OCI one; configs and layers keep theirs.
    DockerSchema2,
}

impl PushFormat {
    fn skopeo_flag(self) -> &'static str {
        match self {
            PushFormat::Oci => "oci",
            PushFormat::DockerSchema2 => "v2s2",
        }
    }
}

/// A running `docker-registry`, killed (and its storage removed) on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    child: Child,
    tls: bool,
    ca_file: Option<PathBuf>,
    log_file: PathBuf,
    /// What `skopeo` pushes with, when the registry wants credentials.
    credentials: Option<(String, String)>,
    /// Config, storage, certificates, htpasswd file, log: dropped after the process is killed.
    dir: tempfile::TempDir,
}

enum Startup {
    Ready,
    Exited(ExitStatus),
    TimedOut,
}

impl Registry {
    /// Starts the registry and waits until `GET /v2/` answers (with any status). Panics with
    /// the registry's log when it does not within 20 seconds.
    pub fn start(options: RegistryOptions) -> Registry {
        assert!(
            options.htpasswd.is_none() || options.token_auth.is_none(),
            "a registry has one authentication scheme: htpasswd or token, not both"
        );
        let dir = tempfile::Builder::new()
            .prefix("blackbox-registry-")
            .tempdir()
            .expect("a temp dir for the registry");
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).expect("creating the registry's storage directory");
        let tls = options.tls.then(|| write_tls_files(dir.path()));
        let htpasswd_file = options
            .htpasswd
            .as_ref()
            .map(|(user, password)| write_htpasswd(dir.path(), user, password));
        let credentials = options.htpasswd.clone().or_else(|| {
            options
                .token_auth
                .as_ref()
                .map(|token| token.credentials.clone())
        });
        let client = probe_client(tls.as_ref().map(|files| files.ca_pem.as_str()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let log_file = dir.path().join("registry.log");
        let config_file = dir.path().join("config.yml");
        let binary =
            std::env::var("DOCKER_REGISTRY_BIN").unwrap_or_else(|_| "docker-registry".to_string());

        // The free port may be taken by someone else before the registry binds it: retry then.
        for attempt in 1..=5 {
            let host = format!("127.0.0.1:{}", crate::free_port());
            let mut config = String::new();
            config.push_str("version: 0.1\n");
            config.push_str("log:\n  level: info\n  accesslog:\n    disabled: false\n");
            config.push_str("storage:\n  filesystem:\n");
            config.push_str(&format!("    rootdirectory: {}\n", yaml_path(&storage)));
            config.push_str("  delete:\n    enabled: true\n");
            config.push_str("http:\n");
            config.push_str(&format!("  addr: {}\n", yaml_string(&host)));
            // A fixed secret only silences the warning about a random one.
            config.push_str("  secret: \"blackbox-test-registry\"\n");
            if let Some(files) = &tls {
                config.push_str("  tls:\n");
                config.push_str(&format!("    certificate: {}\n", yaml_path(&files.cert)));
                config.push_str(&format!("    key: {}\n", yaml_path(&files.key)));
            }
            if let Some(path) = &htpasswd_file {
                config.push_str("auth:\n  htpasswd:\n");
                config.push_str("    realm: \"blackbox-registry\"\n");
                config.push_str(&format!("    path: {}\n", yaml_path(path)));
            }
            if let Some(token) = &options.token_auth {
                config.push_str("auth:\n  token:\n");
                config.push_str(&format!("    realm: {}\n", yaml_string(&token.realm)));
                config.push_str(&format!("    service: {}\n", yaml_string(&token.service)));
                config.push_str(&format!("    issuer: {}\n", yaml_string(&token.issuer)));
                config.push_str(&format!(
                    "    rootcertbundle: {}\n",
                    yaml_path(&token.rootcertbundle)
                ));
            }
            fs::write(&config_file, config).expect("writing the registry's config");

            // Both streams into one file (a fresh one per attempt): the access log goes to
            // stdout, everything else to stderr.
            let log = File::create(&log_file).expect("creating the registry's log file");
            let log_too = log
                .try_clone()
                .expect("duplicating the registry's log file");
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg(&config_file)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_too)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "spawning {binary}: {e} \
                         (is docker-registry installed? hack/test installs it)"
                    )
                });
            let url = format!("{scheme}://{host}/v2/");
            match wait_ready(&mut child, &client, &url, STARTUP_TIMEOUT) {
                Startup::Ready => {
                    return Registry {
                        host,
                        child,
                        tls: tls.is_some(),
                        ca_file: tls.map(|files| files.ca),
                        log_file,
                        credentials,
                        dir,
                    };
                }
                Startup::Exited(status) => {
                    let log = read_lossy(&log_file);
                    if log.contains("address already in use") && attempt < 5 {
                        eprintln!(
                            "docker-registry could not bind {host} (attempt {attempt}); \
                             retrying on another port"
                        );
                        continue;
                    }
                    panic!(
                        "docker-registry exited ({status}) before answering GET /v2/; \
                         its log:\n{log}"
                    );
                }
                Startup::TimedOut => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not answer GET {url} within {STARTUP_TIMEOUT:?}; \
                         its log:\n{}",
                        read_lossy(&log_file)
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `http://<host>` or `https://<host>`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The PEM file of the CA that signed the registry's certificate, when it serves TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Everything the registry wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_lossy(&self.log_file)
    }

    /// How many requests the registry served whose method is `method` and whose request URI
    /// (path and query) contains `path_contains`, counted from its access log. Every request
    /// counts, those refused (401 before a credential or token) too. A request shows there once
    /// its response is complete, so count after the client has read the response.
    pub fn requests(&self, method: &str, path_contains: &str) -> usize {
        let log = self.log();
        log.lines()
            .filter_map(access_log_request)
            .filter(|&(m, uri)| m == method && uri.contains(path_contains))
            .count()
    }

    /// Pushes `image` to `<host>/<repo>:<tag>` as `format`; returns the pushed manifest's digest
    /// (`image.manifest_digest` for [`PushFormat::Oci`]). Panics with skopeo's stderr on failure.
    pub fn push(&self, image: &TestImage, repo: &str, tag: &str, format: PushFormat) -> String {
        self.copy(image.dir.path(), repo, tag, format, false)
    }

    /// Pushes the OCI index and all its images to `<host>/<repo>:<tag>`, unchanged; returns the
    /// index digest (`index.digest`).
    pub fn push_index(&self, index: &TestIndex, repo: &str, tag: &str) -> String {
        self.copy(index.dir.path(), repo, tag, PushFormat::Oci, true)
    }

    /// Like [`Registry::push_index`], as `format`: [`PushFormat::DockerSchema2`] pushes a Docker
    /// manifest list of schema2 manifests (new digests for the list and its children).
    pub fn push_index_as(
        &self,
        index: &TestIndex,
        repo: &str,
        tag: &str,
        format: PushFormat,
    ) -> String {
        self.copy(index.dir.path(), repo, tag, format, true)
    }

    fn copy(&self, layout: &Path, repo: &str, tag: &str, format: PushFormat, all: bool) -> String {
        // One directory per push: the digest file, and a HOME of skopeo's own, so that no user
        // configuration or credentials of the machine take part.
        let work = tempfile::Builder::new()
            .prefix("push-")
            .tempdir_in(self.dir.path())
            .expect("a temp dir for skopeo");
        let digest_file = work.path().join("digest");
        let destination = format!("docker://{}/{repo}:{tag}", self.host);
        let mut command = Command::new("skopeo");
        command
            .arg("copy")
            .arg("--quiet")
            .arg("--insecure-policy")
            .arg("--dest-tls-verify=false")
            .arg("--dest-authfile")
            .arg(work.path().join("auth.json"))
            .arg("--digestfile")
            .arg(&digest_file)
            .arg("--format")
            .arg(format.skopeo_flag());
        if format == PushFormat::Oci {
            command.arg("--preserve-digests");
        }
        if all {
            command.arg("--all");
        }
        if let Some((user, password)) = &self.credentials {
            command
                .arg("--dest-creds")
                .arg(format!("{user}:{password}"));
        }
        command
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(&destination)
            .env("HOME", work.path())
            .stdin(Stdio::null());
        let output = command.output().unwrap_or_else(|e| {
            panic!("running skopeo: {e} (is skopeo installed? hack/test installs it)")
        });
        assert!(
            output.status.success(),
            "skopeo copy to {destination} failed ({}):\n{}\nthe registry's log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        let digest = fs::read_to_string(&digest_file).expect("skopeo's digest file");
        digest.trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(method, request URI)` of an access-log line, which distribution writes in the combined log
/// format: `127.0.0.1 - - [29/Nov/2026:10:45:39 +0000] "HEAD /v2/a/b/manifests/1 HTTP/1.1" 404
/// 91 "" "curl/7.88.1"`.
fn access_log_request(line: &str) -> Option<(&str, &str)> {
    let (_, request) = line.split_once("] \"")?;
    let mut parts = request.splitn(3, ' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    parts.next()?.starts_with("HTTP/").then_some((method, uri))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// A YAML scalar for any string: a JSON string is a valid YAML double-quoted scalar.
fn yaml_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

fn yaml_path(path: &Path) -> String {
    yaml_string(&path.display().to_string())
}

struct TlsFiles {
    ca: PathBuf,
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA, and a serving certificate it signs for 127.0.0.1 and localhost.
fn write_tls_files(dir: &Path) -> TlsFiles {
    let ca_key = KeyPair::generate().expect("generating the CA key");
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).expect("the CA certificate's parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "blackbox test registry CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .expect("self-signing the CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("generating the registry's key");
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let mut params = CertificateParams::new(names).expect("the registry certificate's parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "blackbox test registry");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &issuer)
        .expect("signing the registry's certificate");

    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        ca_pem: ca_cert.pem(),
        cert: dir.join("registry.crt"),
        key: dir.join("registry.key"),
    };
    fs::write(&files.ca, &files.ca_pem).expect("writing the CA certificate");
    fs::write(&files.cert, cert.pem()).expect("writing the registry's certificate");
    fs::write(&files.key, key.serialize_pem()).expect("writing the registry's key");
    files
}

/// The bcrypt htpasswd file distribution wants, made by `htpasswd` (Debian's apache2-utils).
fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let output = Command::new("htpasswd")
        .arg("-Bbn")
        .arg(user)
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("running htpasswd: {e} (is apache2-utils installed? hack/test installs it)")
        });
    assert!(
        output.status.success(),
        "htpasswd failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("htpasswd");
    fs::write(&path, output.stdout).expect("writing the htpasswd file");
    path
}

/// A client for the readiness probe: trusts the registry's CA (if any), ignores proxies.
fn probe_client(ca_pem: Option<&str>) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.expect("the CA's PEM"))
                .expect("trusting the CA");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("the readiness probe's client")
}

/// Polls `url` until it answers, the process exits or `timeout` passes. The polling runs on a
/// thread of its own, so that callers may be async or not.
fn wait_ready(
    child: &mut Child,
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Startup {
    let deadline = Instant::now() + timeout;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the readiness probe");
                loop {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Startup::Exited(status);
                    }
                    let answered = runtime.block_on(async {
                        client
                            .get(url)
                            .timeout(Duration::from_secs(2))
                            .send()
                            .await
                            .is_ok()
                    });
                    if answered {
                        return Startup::Ready;
                    }
                    if Instant::now() >= deadline {
                        return Startup::TimedOut;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .join()
            .expect("the readiness probe panicked")
    })
}

/// A single-platform test image in an OCI layout whose `index.json` names it `latest`.
pub struct TestImage {
    /// The OCI layout.
    pub dir: tempfile::TempDir,
    pub arch: String,
    pub os: String,
    /// The digest of the OCI manifest (what [`PushFormat::Oci`] pushes unchanged).
    pub manifest_digest: String,
    pub config_digest: String,
    /// The digests of the (gzip-compressed) layers, as the manifest lists them.
    pub layer_digests: Vec<String>,
}

/// A multi-platform test image: an OCI layout whose `index.json` names an OCI image index
/// `latest`.
pub struct TestIndex {
    /// The OCI layout.
    pub dir: tempfile::TempDir,
    /// `(architecture, os, manifest digest)` of each image, in the index's order.
    pub children: Vec<(String, String, String)>,
    /// The digest of the image index.
    pub digest: String,
}

/// An image for `arch`/`os` with one layer. Different seeds (or platforms) give different
/// layers, configs and manifests; the same arguments give the same digests.
pub fn test_image(seed: &str, arch: &str, os: &str) -> TestImage {
    let dir = new_layout();
    let image = add_image(dir.path(), seed, arch, os);
    write_index_json(dir.path(), OCI_MANIFEST, &image.manifest);
    TestImage {
        dir,
        arch: arch.to_string(),
        os: os.to_string(),
        manifest_digest: image.manifest.digest,
        config_digest: image.config_digest,
        layer_digests: image.layer_digests,
    }
}

/// An image index with one image (as [`test_image`] makes them) per `(architecture, os)`.
pub fn test_index(seed: &str, platforms: &[(&str, &str)]) -> TestIndex {
    assert!(
        !platforms.is_empty(),
        "an image index needs at least one platform"
    );
    let dir = new_layout();
    let mut children = Vec::new();
    let mut descriptors = Vec::new();
    for &(arch, os) in platforms {
        let image = add_image(dir.path(), seed, arch, os);
        descriptors.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest.digest,
            "size": image.manifest.size,
            "platform": {"architecture": arch, "os": os},
        }));
        children.push((arch.to_string(), os.to_string(), image.manifest.digest));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let index_blob = write_blob(dir.path(), &json_bytes(&index));
    write_index_json(dir.path(), OCI_INDEX, &index_blob);
    TestIndex {
        dir,
        children,
        digest: index_blob.digest,
    }
}

struct Blob {
    digest: String,
    size: usize,
}

struct BuiltImage {
    manifest: Blob,
    config_digest: String,
    layer_digests: Vec<String>,
}

fn new_layout() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("blackbox-oci-")
        .tempdir()
        .expect("a temp dir for an OCI layout");
    fs::create_dir_all(dir.path().join("blobs").join("sha256")).expect("creating blobs/sha256");
    fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("writing oci-layout");
    dir
}

fn json_bytes(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON serializes")
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Blob {
    let digest = sha256_digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let path = layout.join("blobs").join("sha256").join(hex);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    Blob {
        digest,
        size: bytes.len(),
    }
}

/// Points the layout's `index.json` at `blob` under the name `latest`.
fn write_index_json(layout: &Path, media_type: &str, blob: &Blob) {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": media_type,
            "digest": blob.digest,
            "size": blob.size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(layout.join("index.json"), json_bytes(&index)).expect("writing index.json");
}

/// Writes the layer, config and manifest blobs of one image.
fn add_image(layout: &Path, seed: &str, arch: &str, os: &str) -> BuiltImage {
    let (layer, diff_id) = build_layer(&format!(
        "blackbox test image\nseed: {seed}\nplatform: {os}/{arch}\n"
    ));
    let layer_blob = write_blob(layout, &layer);
    let config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": os,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                format!("BLACKBOX_SEED={seed}"),
            ],
            "Labels": {"seed": seed},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": CREATED,
            "created_by": format!("blackbox test image {seed}"),
        }],
    });
    let config_blob = write_blob(layout, &json_bytes(&config));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_blob.digest,
            "size": config_blob.size,
        },
        "layers": [{
            "mediaType": OCI_LAYER_GZIP,
            "digest": layer_blob.digest,
            "size": layer_blob.size,
        }],
    });
    BuiltImage {
        manifest: write_blob(layout, &json_bytes(&manifest)),
        config_digest: config_blob.digest,
        layer_digests: vec![layer_blob.digest],
    }
}

/// A gzip'd tar holding `seed.txt` with `content`, and the tar's digest (the layer's diff ID).
/// Made by GNU `tar` and `gzip` with fixed owners, modes and times, so it is reproducible.
fn build_layer(content: &str) -> (Vec<u8>, String) {
    let scratch = tempfile::Builder::new()
        .prefix("blackbox-layer-")
        .tempdir()
        .expect("a temp dir for a layer");
    let root = scratch.path().join("root");
    fs::create_dir_all(&root).expect("creating the layer's root");
    fs::write(root.join("seed.txt"), content).expect("writing the layer's file");
    let tar_file = scratch.path().join("layer.tar");
    run(
        Command::new("tar")
            .arg("--create")
            .arg("--format=ustar")
            .arg("--sort=name")
            .arg("--mtime=@0")
            .arg("--owner=0")
            .arg("--group=0")
            .arg("--numeric-owner")
            .arg("--mode=0644")
            .arg("--file")
            .arg(&tar_file)
            .arg("--directory")
            .arg(&root)
            .arg("seed.txt"),
        "tar",
    );
    let tar = fs::read(&tar_file).expect("reading the layer's tar");
    // -n: no name or time in the gzip header.
    let gzipped = run(
        Command::new("gzip")
            .arg("-n")
            .arg("-9")
            .arg("-c")
            .arg(&tar_file),
        "gzip",
    );
    (gzipped, sha256_digest(&tar))
}

/// Runs a command to completion; returns its stdout, or panics with its stderr.
fn run(command: &mut Command, what: &str) -> Vec<u8> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[cfg(test)]
mod tests {
    use super::access_log_request;

    #[test]
    fn access_log_lines() {
        let line = r#"127.0.0.1 - - [29/Nov/2026:10:45:39 +0000] "HEAD /v2/a/b/manifests/1 HTTP/1.1" 404 91 "" "curl/7.88.1""#;
        assert_eq!(
            access_log_request(line),
            Some(("HEAD", "/v2/a/b/manifests/1"))
        );
        let h2 = r#"127.0.0.1 - - [29/Nov/2026:10:46:12 +0000] "GET /v2/ HTTP/2.0" 401 87 "" "curl/7.88.1""#;
        assert_eq!(access_log_request(h2), Some(("GET", "/v2/")));
        let app = r#"time="2026-11-29T10:45:39.53Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/"#;
        assert_eq!(access_log_request(app), None);
    }
}
