//! Command-line flags, named like kube-apiserver's, parsed once into a [`ServerConfig`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageBackend {
    /// A redb file in --data-dir: nothing else to install or run.
    Embedded,
    /// etcd v3 at --etcd-servers, keys under --etcd-prefix.
    Etcd,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "image-apiserver",
    version,
    about = "Serves image.openshift.io/v1"
)]
pub struct ServerConfig {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,

    /// The port to serve on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8443)]
    pub secure_port: u16,

    /// Where the embedded store (and, later, generated credentials) live.
    #[arg(long, default_value = ".data")]
    pub data_dir: PathBuf,

    #[arg(long, value_enum, default_value_t = StorageBackend::Embedded)]
    pub storage_backend: StorageBackend,

    /// Comma-separated etcd endpoints, e.g. http://127.0.0.1:2379.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_servers: Vec<String>,

    /// The etcd key prefix: objects live at /<prefix>/imagestreams/<ns>/<name>.
    #[arg(long, default_value = "openshift.io")]
    pub etcd_prefix: String,

    /// Whether etcd's watch progress notifications are trusted, which lets consistent GETs and
    /// LISTs be answered from the watch cache: auto (from every endpoint's version, as
    /// kube-apiserver decides: 3.4.31+, 3.5.13+, 3.6+), trusted or untrusted (every
    /// consistent read goes to etcd).
    #[arg(long, default_value = "auto", value_parser = parse_watch_progress)]
    pub etcd_watch_progress: storage::etcd::ProgressTrust,

    /// On SIGTERM, how long `/readyz` fails while requests are still served, before the
    /// listener closes and watches end (kube-apiserver's flag; Go duration).
    #[arg(long, default_value = "0s", value_parser = parse_go_duration)]
    pub shutdown_delay_duration: Duration,

    /// Shrink the embedded store's file on start (etcd's defrag). Compaction frees history
    /// for reuse, so the file levels off; this gives the free space back to the filesystem.
    #[arg(long)]
    pub embedded_defrag: bool,

    /// How often to compact storage history (Go duration: 5m, 90s, 1h30m). 0 disables it, as
    /// when kube-apiserver compacts a shared etcd. Applies to both backends.
    #[arg(long, default_value = "5m", value_parser = parse_go_duration)]
    pub etcd_compaction_interval: Duration,

    /// The serving certificate (PEM). Without it a self-signed CA and certificate are
    /// generated into --data-dir.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// The serving certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Bearer tokens, kube's CSV format: token,user,uid,"group1,group2". Without it an admin
    /// token is generated into --data-dir and written into the admin kubeconfig.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,

    /// Extra names (DNS or IP) for the generated serving certificate.
    #[arg(long, value_delimiter = ',')]
    pub tls_sans: Vec<String>,

    /// The integrated registry's in-cluster host (imagePolicyConfig.internalRegistryHostname),
    /// e.g. image-registry.openshift-image-registry.svc:5000.
    #[arg(long, default_value = "")]
    pub internal_registry_hostname: String,

    /// Non-mutating requests served at once (kube's flag); more get 429. Watches do not count.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,

    /// Mutating requests served at once (kube's flag); more get 429.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,

    /// Events each watch cache keeps for watches that resume from a past resourceVersion
    /// (kube's flag name); older resourceVersions get 410 Expired.
    #[arg(long, default_value_t = 10_000)]
    pub default_watch_cache_size: usize,

    /// Registries image streams may reference (imagePolicyConfig.allowedRegistriesForImport):
    /// comma-separated `host[:port]` patterns with `*` and `?`; `http://host` marks an insecure
    /// entry. Unset: every registry is allowed.
    #[arg(long, value_delimiter = ',')]
    pub allowed_registries_for_import: Option<Vec<String>>,

    /// The most distinct references an image stream's spec.tags may name (LimitRange
    /// `openshift.io/image-tags` upstream). 0: unlimited.
    #[arg(long, default_value_t = 0)]
    pub max_image_tags_per_stream: u64,

    /// The most distinct images an image stream's tag history may hold (LimitRange
    /// `openshift.io/images` upstream). 0: unlimited.
    #[arg(long, default_value_t = 0)]
    pub max_images_per_stream: u64,

    /// The integrated registry's public host (the first of externalRegistryHostnames).
    #[arg(long, default_value = "")]
    pub external_registry_hostname: String,

    /// Registry credentials for imports: a containers-auth.json(5) / docker config.json file
    /// (podman's and skopeo's --authfile).
    #[arg(long)]
    pub authfile: Option<PathBuf>,

    /// Mirrors, blocked and insecure registries for imports: a containers-registries.conf(5)
    /// file (version 2: [[registry]] tables).
    #[arg(long)]
    pub registries_conf: Option<PathBuf>,

    /// PEM bundles of extra certificate authorities trusted by imports, besides the system's.
    #[arg(long, value_delimiter = ',')]
    pub registry_ca_file: Vec<PathBuf>,

    /// The deadline of one ImageStreamImport's registry work (Go duration). It stays below the
    /// 60 s request timeout, so an import answers with per-image statuses instead of a 504.
    #[arg(long, default_value = "50s", value_parser = parse_go_duration)]
    pub image_import_timeout: Duration,

    /// Images one ImageStreamImport fetches at once.
    #[arg(long, default_value_t = 8)]
    pub image_import_concurrency: usize,

    /// How many tags a repository import takes (imagePolicyConfig's
    /// maxImagesBulkImportedPerRepository); -1: all of them.
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub max_images_bulk_imported_per_repository: i64,

    /// How often a scheduled tag is re-imported at most (Go duration).
    #[arg(long, default_value = "15m", value_parser = parse_go_duration)]
    pub scheduled_image_import_minimum_interval: Duration,

    /// The most scheduled re-imports started per minute, across all streams.
    #[arg(long, default_value_t = 60)]
    pub max_scheduled_image_imports_per_minute: u32,

    /// Turns scheduled re-imports off (imports of new or changed tags still happen).
    #[arg(long)]
    pub disable_scheduled_import: bool,

    /// Turns the import controller off: DockerImage spec tags are imported only by explicit
    /// ImageStreamImports.
    #[arg(long)]
    pub disable_import_controller: bool,

    /// How log lines are written to standard error: `text` (colored only on a terminal) or
    /// `json` (one object per line, its fields at the top level).
    #[arg(long, value_enum, default_value_t = LoggingFormat::Text)]
    pub logging_format: LoggingFormat,

    /// Log verbosity, klog's -v: 0-1 info, 2-3 debug, 4 and above trace, for image-apiserver's
    /// own code; other libraries log warnings and errors only. RUST_LOG, when set, wins (a
    /// tracing-subscriber EnvFilter: `warn,apiserver=debug`).
    #[arg(short = 'v', long = "v", value_name = "LEVEL", default_value_t = 0)]
    pub verbosity: u8,

    #[command(flatten)]
    pub cluster: ClusterFlags,
}

/// `--logging-format`: kube's two formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoggingFormat {
    Text,
    Json,
}

/// Authentication, authorization, the cluster connection, leader election and hardening:
/// kube-apiserver's and k8s.io/apiserver's flag names and defaults (spec §8.4, §8.5, §8.7).
#[derive(Clone, Debug, clap::Args)]
pub struct ClusterFlags {
    /// The oldest TLS version served: VersionTLS12 or VersionTLS13.
    #[arg(long, default_value = "VersionTLS12")]
    pub tls_min_version: String,

    /// Clients presenting a certificate signed by one of these CAs (PEM) are authenticated as
    /// its CommonName, with its Organizations as groups.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// The CA (PEM) of the front proxy (kube-apiserver's --proxy-client-cert-file): only a
    /// client certificate it signed may assert a user in the request headers.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// The front proxy certificate CommonNames allowed (empty: any signed by the CA).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,

    /// Request headers that carry the user name.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,

    /// Request headers that carry the user's uid.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Uid")]
    pub requestheader_uid_headers: Vec<String>,

    /// Request headers that carry the groups.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,

    /// Request header prefixes of the user's extra attributes.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// kubeconfig of the cluster that reviews tokens (TokenReview) and supplies the client CA
    /// and front-proxy settings (ConfigMap kube-system/extension-apiserver-authentication).
    /// Inside a pod the in-cluster configuration is used when no kubeconfig is given.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// Do not read the extension-apiserver-authentication ConfigMap.
    #[arg(long)]
    pub authentication_skip_lookup: bool,

    /// Start even when the extension-apiserver-authentication ConfigMap cannot be read.
    #[arg(long)]
    pub authentication_tolerate_lookup_failure: bool,

    /// How long TokenReview answers are cached.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,

    /// Serve requests no authenticator vouches for as system:anonymous (off by default:
    /// standalone stays closed; the health endpoints are always open).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
        default_missing_value = "true", require_equals = true)]
    pub anonymous_auth: bool,

    /// kubeconfig of the cluster that decides (SubjectAccessReview). Inside a pod the
    /// in-cluster configuration is used when none is given.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// The authorizers, in order: Webhook (SubjectAccessReview), Policy (--authorization-
    /// policy-file), AlwaysAllow. Default: Webhook with a kubeconfig or in a pod, Policy
    /// with a policy file; with neither only system:masters is allowed.
    #[arg(long, value_delimiter = ',')]
    pub authorization_mode: Vec<AuthorizationMode>,

    /// A standalone policy file (RBAC-like YAML: subjects, verbs, resources, namespaces).
    #[arg(long)]
    pub authorization_policy_file: Option<PathBuf>,

    /// Paths served without authorization (a trailing * matches a prefix).
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,

    /// How long allowed SubjectAccessReview answers are cached.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,

    /// How long denied SubjectAccessReview answers are cached.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,

    /// kubeconfig of the cluster to read Secrets, LimitRanges and Namespaces from and to hold
    /// the controllers' Lease in. Inside a pod the in-cluster configuration is used.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Run the controllers on one replica at a time, elected through a Lease (with a
    /// kubeconfig) or through the store (etcd) otherwise.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
        default_missing_value = "true", require_equals = true)]
    pub leader_elect: bool,

    /// How long others wait after the last renewal before taking the lock over.
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    pub leader_elect_lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives leadership up.
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub leader_elect_renew_deadline: Duration,

    /// How often candidates try to acquire or renew the lock.
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    pub leader_elect_retry_period: Duration,

    /// The namespace of the controllers' Lease.
    #[arg(long, default_value = "image-apiserver")]
    pub leader_elect_resource_namespace: String,

    /// The name of the controllers' Lease (or of the lock key in the store).
    #[arg(long, default_value = "image-apiserver-controllers")]
    pub leader_elect_resource_name: String,

    /// Writes and denials as JSON lines (audit.k8s.io/v1 Events at level Metadata); `-` is
    /// standard output.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,

    /// How long a client may take to send a request's headers, and its TLS handshake (Go
    /// duration; kube-apiserver's ReadHeaderTimeout). 0 disables it.
    #[arg(long, default_value = "32s", value_parser = parse_go_duration)]
    pub http_header_read_timeout: Duration,

    /// How long a connection with no request in flight stays open (kube-apiserver's
    /// IdleTimeout). 0 disables it.
    #[arg(long, default_value = "90s", value_parser = parse_go_duration)]
    pub http_idle_timeout: Duration,

    /// Connections one client (an IPv4 address, an IPv6 /64) may hold; more are closed at
    /// once, before the TLS handshake. 0: no cap.
    #[arg(long, default_value_t = 512)]
    pub max_connections_per_source: usize,

    /// Connections in all; 0: three quarters of the open-file limit.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,

    /// kube's flag: concurrent HTTP/2 streams per connection; 0: Go's default, 250.
    #[arg(long, default_value_t = 1000)]
    pub http2_max_streams_per_connection: u32,

    /// In-flight requests one user may hold in each pool (0: a quarter of the pool), so one
    /// noisy client cannot starve the others; beyond it the user gets 429.
    #[arg(long, default_value_t = 0)]
    pub max_requests_inflight_per_user: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthorizationMode {
    #[value(name = "Webhook")]
    Webhook,
    #[value(name = "Policy")]
    Policy,
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
}

pub use apimachinery::duration::parse_go_duration;

fn parse_watch_progress(value: &str) -> Result<storage::etcd::ProgressTrust, String> {
    value.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_flags_take_go_forms() {
        let parse = |args: &[&str]| {
            let mut all = vec!["image-apiserver"];
            all.extend(args);
            ServerConfig::parse_from(all).cluster
        };
        assert!(parse(&[]).leader_elect);
        assert!(!parse(&[]).anonymous_auth);
        assert!(!parse(&["--leader-elect=false"]).leader_elect);
        assert!(parse(&["--anonymous-auth"]).anonymous_auth);
        assert!(parse(&["--anonymous-auth=true"]).anonymous_auth);
    }

    #[test]
    fn defaults_are_embedded_on_loopback() {
        let config = ServerConfig::parse_from(["image-apiserver"]);
        assert_eq!(config.storage_backend, StorageBackend::Embedded);
        assert_eq!(config.bind_address.to_string(), "127.0.0.1");
        assert_eq!(config.secure_port, 8443);
        assert_eq!(config.etcd_prefix, "openshift.io");
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("300ms", 300),
            ("90s", 90_000),
            ("5m", 300_000),
            ("5m0s", 300_000),
            ("1h30m", 5_400_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for bad in ["", "5", "m", "5x", "-5m", "1.5h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn logging_flags_parse_like_kube_apiserver() {
        let parse = |args: &[&str]| {
            let mut all = vec!["image-apiserver"];
            all.extend(args);
            ServerConfig::try_parse_from(all).map(|c| (c.logging_format, c.verbosity))
        };
        assert_eq!(parse(&[]).ok(), Some((LoggingFormat::Text, 0)));
        let json = parse(&["--logging-format=json", "-v", "4"]).ok();
        assert_eq!(json, Some((LoggingFormat::Json, 4)));
        let spellings: [&[&str]; 4] = [&["--v=2"], &["--v", "2"], &["-v=2"], &["-v2"]];
        for spelling in spellings {
            assert_eq!(
                parse(spelling).ok(),
                Some((LoggingFormat::Text, 2)),
                "{spelling:?}"
            );
        }
        let unknown = parse(&["--logging-format=xml"]).expect_err("xml");
        let message = unknown.to_string();
        for part in ["--logging-format", "'xml'", "text", "json"] {
            assert!(message.contains(part), "{part} missing from {message}");
        }
        assert!(parse(&["--v=loud"]).is_err());
    }

    #[test]
    fn etcd_flags_parse_like_kube_apiserver() {
        let config = ServerConfig::parse_from([
            "image-apiserver",
            "--storage-backend=etcd",
            "--etcd-servers=http://a:2379,http://b:2379",
            "--etcd-prefix=/custom",
        ]);
        assert_eq!(config.storage_backend, StorageBackend::Etcd);
        assert_eq!(config.etcd_servers, ["http://a:2379", "http://b:2379"]);
        assert_eq!(config.etcd_prefix, "/custom");
    }
}
