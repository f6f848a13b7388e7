//! A test PKI: certificate authorities that issue client and serving certificates, and an
//! HTTPS client that trusts one of them and may present a client certificate.
//!
//! Clusters hand an aggregated server several CAs (the front proxy's, the client CA, the
//! kube-apiserver's serving CA); the tests make each with [`TestCa`] so that a certificate
//! signed by the wrong one can be shown to be refused.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The X.520 organizationName OID. rcgen keeps one value per attribute type, so a second
/// organization is written under this OID as a "custom" type, which encodes identically.
const ORGANIZATION_NAME_OID: [u64; 4] = [2, 5, 4, 10];

/// A self-signed certificate authority.
pub struct TestCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
}

impl Identity {
    /// Writes `<name>.crt` and `<name>.key` into `dir`; returns their paths in that order.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write the certificate");
        std::fs::write(&key, &self.key_pem).expect("write the private key");
        (cert, key)
    }
}

impl TestCa {
    /// A new CA (P-256 key) whose subject is `CN=<common_name>`.
    pub fn new(common_name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes the CA certificate to `<dir>/<name>` and returns that path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write the CA certificate");
        path
    }

    /// A client certificate for `CN=<cn>`, one `O=` per entry of `orgs` (at most two: see
    /// [`ORGANIZATION_NAME_OID`]), with extended key usage clientAuth only.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Identity {
        assert!(
            orgs.len() <= 2,
            "the test PKI writes at most two organizations per certificate, got {orgs:?}"
        );
        let mut params = leaf_params(ExtendedKeyUsagePurpose::ClientAuth);
        params.distinguished_name.push(DnType::CommonName, cn);
        let org_types = [
            DnType::OrganizationName,
            DnType::CustomDnType(ORGANIZATION_NAME_OID.to_vec()),
        ];
        for (org, ty) in orgs.iter().zip(org_types) {
            params.distinguished_name.push(ty, *org);
        }
        self.issue(&params)
    }

    /// A serving certificate for `sans` (IP addresses become IP SANs, anything else DNS
    /// SANs; the first one is also the CN), with extended key usage serverAuth only.
    pub fn server_cert(&self, sans: &[&str]) -> Identity {
        let mut params = leaf_params(ExtendedKeyUsagePurpose::ServerAuth);
        let cn = sans.first().copied().unwrap_or("test-server");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans.iter().copied().map(subject_alt_name).collect();
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Identity {
        let key = KeyPair::generate().expect("generate the leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the leaf certificate");
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn leaf_params(usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf parameters");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

fn subject_alt_name(san: &str) -> SanType {
    match san.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(san.try_into().expect("a DNS name fit for a certificate")),
    }
}

/// Every certificate in a PEM bundle.
pub fn pem_certificates(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A rustls client configuration trusting `ca_pem` only, presenting `identity` when given,
/// offering h2 and http/1.1.
pub fn tls_client_config(ca_pem: &str, identity: Option<&Identity>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certificates(ca_pem) {
        roots.add(cert).expect("add the CA to the trust store");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(identity) => {
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                .expect("client private key PEM");
            builder
                .with_client_auth_cert(pem_certificates(&identity.cert_pem), key)
                .expect("client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tls
}

/// An HTTPS client trusting `ca_pem`, presenting `identity` as its client certificate when
/// given and `Authorization: Bearer <token>` when given, following no redirects.
pub fn https_client_with_identity(
    ca_pem: &str,
    identity: Option<&Identity>,
    token: Option<&str>,
) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().expect("bearer header"),
        );
    }
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_preconfigured(tls_client_config(ca_pem, identity))
        .default_headers(headers)
        .build()
        .expect("HTTPS client")
}

/// A client for plain-HTTP servers (such as the front proxy). It still gets a TLS
/// configuration, trusting nothing, because reqwest is built without a default crypto
/// provider.
pub fn plain_http_client() -> reqwest::Client {
    plain_http_builder().build().expect("plain HTTP client")
}

/// The builder of [`plain_http_client`]: no proxy from the environment, no redirects
/// followed, nothing trusted over TLS.
pub fn plain_http_builder() -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_preconfigured(tls)
}

#[cfg(test)]
mod tests {
    use rustls::server::WebPkiClientVerifier;

    use super::*;

    /// A TLS server trusting `client_ca` for client certificates, serving `server`; answers
    /// whether the handshake with `client` succeeded.
    fn handshake(
        server_ca: &TestCa,
        server: &Identity,
        client_ca: &TestCa,
        client: Option<&Identity>,
    ) -> Result<(), rustls::Error> {
        use rustls::pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certificates(client_ca.pem()) {
            roots.add(cert).expect("client CA");
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("client verifier");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())
            .expect("server key");
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(pem_certificates(&server.cert_pem), key)
            .expect("server config");
        let client_config = tls_client_config(server_ca.pem(), client);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let mut client_conn =
            rustls::ClientConnection::new(Arc::new(client_config), name).expect("client conn");
        let mut server_conn =
            rustls::ServerConnection::new(Arc::new(server_config)).expect("server conn");
        // Shuttle the handshake bytes between the two ends in memory.
        // An empty read would tell rustls the peer closed, so only bytes are passed on.
        for _ in 0..10 {
            let mut buf = Vec::new();
            while client_conn.wants_write() {
                client_conn.write_tls(&mut buf).expect("client write");
            }
            let mut pending = buf.as_slice();
            while !pending.is_empty() {
                server_conn.read_tls(&mut pending).expect("server read");
                server_conn.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server_conn.wants_write() {
                server_conn.write_tls(&mut buf).expect("server write");
            }
            let mut pending = buf.as_slice();
            while !pending.is_empty() {
                client_conn.read_tls(&mut pending).expect("client read");
                client_conn.process_new_packets()?;
            }
            if !client_conn.is_handshaking() && !server_conn.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the TLS handshake did not finish");
    }

    #[test]
    fn certificates_chain_to_their_own_ca_only() {
        let server_ca = TestCa::new("server-ca");
        let client_ca = TestCa::new("client-ca");
        let other_ca = TestCa::new("other-ca");
        let server = server_ca.server_cert(&["127.0.0.1", "localhost"]);
        let good = client_ca.client_cert("alice", &["team-a", "team-b"]);
        let foreign = other_ca.client_cert("mallory", &[]);

        handshake(&server_ca, &server, &client_ca, Some(&good)).expect("trusted client");
        assert!(handshake(&server_ca, &server, &client_ca, Some(&foreign)).is_err());
        assert!(handshake(&server_ca, &server, &client_ca, None).is_err());
        assert!(handshake(&other_ca, &server, &client_ca, Some(&good)).is_err());
    }

    #[test]
    fn identities_and_cas_are_written_as_pem_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new("written-ca");
        let path = ca.write(dir.path(), "ca.crt");
        let written = std::fs::read_to_string(path).expect("read the CA back");
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(written, ca.pem());
        assert!(ca.key_pem().contains("PRIVATE KEY"));

        let (cert, key) = ca.client_cert("bob", &["g"]).write(dir.path(), "bob");
        assert!(cert.ends_with("bob.crt") && key.ends_with("bob.key"));
        let key_text = std::fs::read_to_string(key).expect("read the key back");
        assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
