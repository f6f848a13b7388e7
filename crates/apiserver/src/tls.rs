//! Serving certificates (spec §0): the files given by `--tls-cert-file`/`--tls-private-key-file`,
//! or a self-signed CA and a serving certificate it signs, generated once into the data
//! directory and reused on restart (so kubeconfigs written earlier keep working).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key in {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// PEM material for serving, plus the CA clients should trust.
pub struct ServingCerts {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA bundle for kubeconfigs and APIService `caBundle`.
    pub ca_pem: String,
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(err)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

impl ServingCerts {
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        Ok(ServingCerts {
            key_pem: read(key)?,
            ca_pem: cert_pem.clone(),
            cert_pem,
        })
    }

    /// Loads `<dir>/apiserver.{crt,key}` and `<dir>/ca.crt`, generating them when absent.
    pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<Self, TlsError> {
        let (cert, key, ca) = (
            dir.join("apiserver.crt"),
            dir.join("apiserver.key"),
            dir.join("ca.crt"),
        );
        if cert.exists() && key.exists() && ca.exists() {
            return Ok(ServingCerts {
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
                ca_pem: read(&ca)?,
            });
        }
        let generated = generate(hosts)?;
        write(&ca, &generated.ca_pem, false)?;
        write(&key, &generated.key_pem, true)?;
        write(&cert, &generated.cert_pem, false)?;
        Ok(generated)
    }

    /// A rustls server configuration offering h2 and http/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = pem_certs(&self.cert_pem)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TlsError::Invalid {
                path: PathBuf::from("<key>"),
                reason: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn pem_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: PathBuf::from("<certificate>"),
            reason: e.to_string(),
        })
}

use rustls::pki_types::pem::PemObject as _;

fn generate(hosts: &[String]) -> Result<ServingCerts, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "image-apiserver-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "image-apiserver");
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(hosts.iter().cloned());
    names.sort();
    names.dedup();
    for n in names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ServingCerts {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca_cert.pem(),
    })
}
