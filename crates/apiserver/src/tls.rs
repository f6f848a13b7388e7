//! Serving certificates (spec §0): the files given by `--tls-cert-file`/`--tls-private-key-file`,
//! or a self-signed CA and a serving certificate it signs, generated into the data directory
//! and reused on restart (so kubeconfigs written earlier keep working). Like client-go's
//! `GenerateSelfSignedCertKey`, both are valid for a year; a pair that is within 30 days of
//! expiry (or valid for longer than we issue, as earlier versions made them) is replaced on
//! start.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::time::ASN1Time;

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
    #[error("the clock is outside what a certificate can hold: {0}")]
    Clock(String),
}

const DAY_SECS: i64 = 24 * 60 * 60;

/// How long generated certificates are valid (client-go: one year, CA included).
const VALIDITY_SECS: i64 = 365 * DAY_SECS;

/// Generated certificates start an hour back, so a client whose clock is a little behind
/// accepts them (client-go does the same).
const BACKDATE_SECS: i64 = 60 * 60;

/// A reused certificate that expires sooner than this is replaced on start.
const RENEW_BEFORE_SECS: i64 = 30 * DAY_SECS;

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

/// Writes `contents`; a private file is owner-only before anything is written to it, so a key
/// is never readable by others, not even for a moment.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    if private {
        // The mode above applies only to a file this call creates.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    file.write_all(contents.as_bytes()).map_err(err)
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
struct Lifetime {
    not_before: ASN1Time,
    not_after: ASN1Time,
}

impl Lifetime {
    /// The lifetime of certificates generated at `now`.
    fn issued_at(now: i64) -> Result<Self, TlsError> {
        let start = now - BACKDATE_SECS;
        Ok(Lifetime {
            not_before: asn1_time(start)?,
            not_after: asn1_time(start + VALIDITY_SECS)?,
        })
    }

    fn apply_to(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.to_datetime();
        params.not_after = self.not_after.to_datetime();
    }
}

fn asn1_time(unix: i64) -> Result<ASN1Time, TlsError> {
    ASN1Time::from_timestamp(unix).map_err(|e| TlsError::Clock(format!("{unix}: {e}")))
}

/// Why the certificate in `pem` (read from `path`) should be replaced at `now`, if it should:
/// it expires within [`RENEW_BEFORE_SECS`], or later than one issued now would.
fn replacement_reason(pem: &str, path: &Path, now: i64) -> Result<Option<String>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let der = pem_certs(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no certificate".to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| invalid(e.to_string()))?;
    let not_after = cert.validity().not_after;
    let left = not_after.timestamp() - now;
    Ok(if left < RENEW_BEFORE_SECS {
        Some(format!("{} expires at {not_after}", path.display()))
    } else if left > VALIDITY_SECS + DAY_SECS {
        Some(format!(
            "{} is valid until {not_after}, longer than the year certificates are issued for",
            path.display()
        ))
    } else {
        None
    })
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

    /// Loads `<dir>/apiserver.{crt,key}` and `<dir>/ca.crt`, generating them when absent and
    /// generating both anew when either is due for replacement (see the module comment).
    pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<Self, TlsError> {
        Self::self_signed_at(dir, hosts, unix_now())
    }

    fn self_signed_at(dir: &Path, hosts: &[String], now: i64) -> Result<Self, TlsError> {
        let (cert, key, ca) = (
            dir.join("apiserver.crt"),
            dir.join("apiserver.key"),
            dir.join("ca.crt"),
        );
        if cert.exists() && key.exists() && ca.exists() {
            let reused = ServingCerts {
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
                ca_pem: read(&ca)?,
            };
            let reason = match replacement_reason(&reused.cert_pem, &cert, now)? {
                Some(reason) => reason,
                None => match replacement_reason(&reused.ca_pem, &ca, now)? {
                    Some(reason) => reason,
                    None => return Ok(reused),
                },
            };
            // Clients holding the old CA (kubeconfigs, an APIService caBundle) must take the
            // new one: say so loudly.
            tracing::warn!(
                %reason,
                dir = %dir.display(),
                "generating a new self-signed CA and serving certificate"
            );
        }
        let generated = generate_for(hosts, Lifetime::issued_at(now)?)?;
        write(&ca, &generated.ca_pem, false)?;
        write(&key, &generated.key_pem, true)?;
        write(&cert, &generated.cert_pem, false)?;
        Ok(generated)
    }

    /// A rustls server configuration offering h2 and http/1.1, TLS 1.2+, no client
    /// certificates.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.server_config_with(TlsMinVersion::Tls12, false)
    }

    /// A rustls server configuration offering h2 and http/1.1 from `min` up; with
    /// `request_client_certs` it asks clients for a certificate without requiring one.
    pub fn server_config_with(
        &self,
        min: TlsMinVersion,
        request_client_certs: bool,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs = pem_certs(&self.cert_pem)?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TlsError::Invalid {
                path: PathBuf::from("<key>"),
                reason: e.to_string(),
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_certs: Arc<dyn ClientCertVerifier> = if request_client_certs {
            Arc::new(AnyClientCert {
                algorithms: provider.signature_verification_algorithms,
            })
        } else {
            Arc::new(rustls::server::NoClientAuth)
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(min.protocol_versions())?
            .with_client_cert_verifier(client_certs)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// `--tls-min-version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    #[default]
    Tls12,
    Tls13,
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl TlsMinVersion {
    /// kube's names (`VersionTLS12`, `VersionTLS13`); empty means the default.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" | "VersionTLS12" => Ok(TlsMinVersion::Tls12),
            "VersionTLS13" => Ok(TlsMinVersion::Tls13),
            "VersionTLS10" | "VersionTLS11" => Err(format!(
                "--tls-min-version {s} is not supported: the minimum is VersionTLS12"
            )),
            other => Err(format!(
                "unknown --tls-min-version {other:?}: use VersionTLS12 or VersionTLS13"
            )),
        }
    }

    fn protocol_versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            TlsMinVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            TlsMinVersion::Tls13 => TLS13_ONLY,
        }
    }
}

/// Asks for a client certificate, requires none, and accepts any chain whose holder proves it
/// has the key. Which CA to trust is decided per request by the authenticators: the client CA
/// and the front-proxy CA differ, and both are rotated at runtime (the ConfigMap), which a
/// verifier fixed into the TLS configuration could not follow.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client offers whatever certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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

#[cfg(test)]
fn generate(hosts: &[String]) -> Result<ServingCerts, TlsError> {
    generate_for(hosts, Lifetime::issued_at(unix_now())?)
}

/// A CA and a serving certificate it signs, both valid for `lifetime`.
fn generate_for(hosts: &[String], lifetime: Lifetime) -> Result<ServingCerts, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "image-apiserver-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Python 3.13's default (VERIFY_X509_STRICT) refuses a CA without key usage and a leaf
    // without an authority key identifier.
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    lifetime.apply_to(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "image-apiserver");
    params.use_authority_key_identifier_extension = true;
    lifetime.apply_to(&mut params);
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

#[cfg(test)]
mod tests {
    use rustls::pki_types::ServerName;
    use rustls::{
        ClientConfig, Connection, ProtocolVersion, RootCertStore, SupportedProtocolVersion,
    };

    use super::*;
    use crate::auth::x509::testing::{make_ca, make_client_cert, ClientCert};

    fn client_config(
        ca_pem: &str,
        versions: &[&'static SupportedProtocolVersion],
        cert: Option<&ClientCert>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for ca in pem_certs(ca_pem).expect("CA PEM") {
            roots.add(ca).expect("CA root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("client versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some(cert) => builder
                .with_client_auth_cert(vec![cert.der.clone()], cert.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    /// Runs a handshake in memory and returns the server's side of it.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<Connection, rustls::Error> {
        let name = ServerName::try_from("localhost").expect("server name");
        let mut client = Connection::from(rustls::ClientConnection::new(client, name)?);
        let mut server = Connection::from(rustls::ServerConnection::new(server)?);
        for _ in 0..16 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(server);
            }
            transfer(&mut client, &mut server)?;
            transfer(&mut server, &mut client)?;
        }
        Err(rustls::Error::General(
            "the handshake did not finish".to_string(),
        ))
    }

    fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).expect("write to memory");
        }
        let mut pending = bytes.as_slice();
        while !pending.is_empty() {
            to.read_tls(&mut pending).expect("read from memory");
            to.process_new_packets()?;
        }
        Ok(())
    }

    /// (not before, not after) of the first certificate in `pem`, in Unix seconds.
    fn validity_of(pem: &str) -> (i64, i64) {
        let der = pem_certs(pem).expect("PEM").remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("certificate");
        let v = cert.validity();
        (v.not_before.timestamp(), v.not_after.timestamp())
    }

    fn write_pair(dir: &Path, certs: &ServingCerts) {
        write(&dir.join("ca.crt"), &certs.ca_pem, false).expect("ca");
        write(&dir.join("apiserver.key"), &certs.key_pem, true).expect("key");
        write(&dir.join("apiserver.crt"), &certs.cert_pem, false).expect("cert");
    }

    #[test]
    fn generated_certificates_are_valid_for_a_year_from_an_hour_ago() {
        let dir = tempfile::tempdir().expect("dir");
        let now = unix_now();
        let certs = ServingCerts::self_signed_at(dir.path(), &[], now).expect("generate");
        for pem in [&certs.cert_pem, &certs.ca_pem] {
            assert_eq!(
                validity_of(pem),
                (now - BACKDATE_SECS, now - BACKDATE_SECS + VALIDITY_SECS)
            );
        }
    }

    #[test]
    fn generated_certificates_pass_strict_x509_checks() {
        let certs = generate(&[]).expect("generate");
        let extensions = |pem: &str| -> Vec<String> {
            let der = pem_certs(pem).expect("PEM").remove(0);
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("cert");
            cert.extensions()
                .iter()
                .map(|e| e.oid.to_id_string())
                .collect()
        };
        // keyUsage on the CA, authorityKeyIdentifier on the leaf (Python 3.13's strict mode).
        assert!(extensions(&certs.ca_pem).contains(&"2.5.29.15".to_string()));
        assert!(extensions(&certs.cert_pem).contains(&"2.5.29.35".to_string()));
    }

    #[test]
    fn certificates_are_reused_until_thirty_days_before_expiry() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let now = unix_now();
        let first = ServingCerts::self_signed_at(dir.path(), &[], now).expect("generate");
        let key_mode = std::fs::metadata(dir.path().join("apiserver.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);

        let later = now + VALIDITY_SECS - RENEW_BEFORE_SECS - DAY_SECS;
        let reused = ServingCerts::self_signed_at(dir.path(), &[], later).expect("reuse");
        assert_eq!(reused.cert_pem, first.cert_pem);
        assert_eq!(reused.ca_pem, first.ca_pem);

        let due = now + VALIDITY_SECS - RENEW_BEFORE_SECS + DAY_SECS;
        let renewed = ServingCerts::self_signed_at(dir.path(), &[], due).expect("renew");
        assert_ne!(renewed.cert_pem, first.cert_pem);
        assert_ne!(
            renewed.ca_pem, first.ca_pem,
            "the CA is replaced with the certificate"
        );
        assert_eq!(
            validity_of(&renewed.cert_pem).1,
            due - BACKDATE_SECS + VALIDITY_SECS
        );
        assert_eq!(
            read(&dir.path().join("ca.crt")).expect("ca"),
            renewed.ca_pem
        );
    }

    #[test]
    fn an_expiring_ca_alone_renews_both() {
        let dir = tempfile::tempdir().expect("dir");
        let now = unix_now();
        let fresh = generate_for(&[], Lifetime::issued_at(now).expect("lifetime")).expect("fresh");
        let old = generate_for(
            &[],
            Lifetime::issued_at(now - VALIDITY_SECS + DAY_SECS).expect("lifetime"),
        )
        .expect("old");
        write_pair(
            dir.path(),
            &ServingCerts {
                ca_pem: old.ca_pem.clone(),
                ..fresh
            },
        );
        let renewed = ServingCerts::self_signed_at(dir.path(), &[], now).expect("renew");
        assert_ne!(renewed.ca_pem, old.ca_pem);
        assert!(validity_of(&renewed.ca_pem).1 > now + VALIDITY_SECS - BACKDATE_SECS - 60);
    }

    #[test]
    fn certificates_valid_for_millennia_are_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        let now = unix_now();
        let forever = Lifetime {
            not_before: asn1_time(0).expect("1970"),
            not_after: asn1_time(67_090_000_000).expect("the year 4096"),
        };
        let old = generate_for(&[], forever).expect("old");
        write_pair(dir.path(), &old);
        let renewed = ServingCerts::self_signed_at(dir.path(), &[], now).expect("renew");
        assert_ne!(renewed.cert_pem, old.cert_pem);
        assert_eq!(
            validity_of(&renewed.cert_pem).1,
            now - BACKDATE_SECS + VALIDITY_SECS
        );
    }

    #[test]
    fn a_damaged_reused_certificate_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        ServingCerts::self_signed_at(dir.path(), &[], unix_now()).expect("generate");
        std::fs::write(dir.path().join("apiserver.crt"), "not a certificate").expect("damage");
        let Err(err) = ServingCerts::self_signed_at(dir.path(), &[], unix_now()) else {
            panic!("a damaged certificate was reused");
        };
        assert!(matches!(err, TlsError::Invalid { .. }), "{err}");
    }

    #[test]
    fn min_versions_use_kubes_names() {
        assert_eq!(
            TlsMinVersion::parse("VersionTLS12"),
            Ok(TlsMinVersion::Tls12)
        );
        assert_eq!(
            TlsMinVersion::parse("VersionTLS13"),
            Ok(TlsMinVersion::Tls13)
        );
        assert_eq!(TlsMinVersion::parse(""), Ok(TlsMinVersion::Tls12));
        let old = TlsMinVersion::parse("VersionTLS11").expect_err("TLS 1.1");
        assert!(old.contains("the minimum is VersionTLS12"), "{old}");
        assert!(TlsMinVersion::parse("tls13").is_err());
    }

    #[test]
    fn the_minimum_version_is_enforced() {
        let certs = generate(&[]).expect("certificates");
        let tls12_only = [&rustls::version::TLS12];
        let tls13_server = certs
            .server_config_with(TlsMinVersion::Tls13, false)
            .expect("server config");
        assert!(handshake(
            tls13_server.clone(),
            client_config(&certs.ca_pem, &tls12_only, None)
        )
        .is_err());
        let server = handshake(
            tls13_server,
            client_config(&certs.ca_pem, rustls::DEFAULT_VERSIONS, None),
        )
        .expect("TLS 1.3 handshake");
        assert_eq!(server.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        let server = handshake(
            certs.server_config().expect("server config"),
            client_config(&certs.ca_pem, &tls12_only, None),
        )
        .expect("TLS 1.2 handshake");
        assert_eq!(server.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    }

    #[test]
    fn client_certificates_are_requested_but_optional_and_any_ca_passes_the_handshake() {
        let certs = generate(&[]).expect("certificates");
        let requesting = certs
            .server_config_with(TlsMinVersion::Tls12, true)
            .expect("server config");
        let client = make_client_cert(&make_ca("unrelated-ca"), "alice", &[]);
        for versions in [
            &[&rustls::version::TLS12][..],
            &[&rustls::version::TLS13][..],
        ] {
            let server = handshake(
                requesting.clone(),
                client_config(&certs.ca_pem, versions, Some(&client)),
            )
            .expect("handshake with a client certificate");
            assert_eq!(server.peer_certificates(), Some(&[client.der.clone()][..]));
        }
        let anonymous = handshake(
            requesting,
            client_config(&certs.ca_pem, rustls::DEFAULT_VERSIONS, None),
        )
        .expect("handshake without a client certificate");
        assert!(anonymous.peer_certificates().is_none());
        let not_asked = handshake(
            certs.server_config().expect("server config"),
            client_config(&certs.ca_pem, rustls::DEFAULT_VERSIONS, Some(&client)),
        )
        .expect("handshake when not asking");
        assert!(not_asked.peer_certificates().is_none());
    }
}
