//! Command-line flags, named like kube-apiserver's, parsed once into a [`ServerConfig`].

use std::net::IpAddr;
use std::path::PathBuf;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_embedded_on_loopback() {
        let config = ServerConfig::parse_from(["image-apiserver"]);
        assert_eq!(config.storage_backend, StorageBackend::Embedded);
        assert_eq!(config.bind_address.to_string(), "127.0.0.1");
        assert_eq!(config.secure_port, 8443);
        assert_eq!(config.etcd_prefix, "openshift.io");
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
