//! Client certificates (spec §8.4 item 2): a CA bundle that verifies the chain a connection
//! presented, a swappable slot holding the current bundle (CA rotation without a restart), and
//! kube's x509 authenticator: user = the subject's CN, groups = its O values.
//!
//! The TLS layer accepts any client chain (see `tls::AnyClientCert`); the chain is verified
//! here, per request, because each authenticator trusts a different CA and the CAs change at
//! runtime. A verified chain is remembered by its digest for a minute (never past the leaf's
//! expiry): verifying and parsing costs about 80 µs, three times a whole cached GET, and a
//! connection presents the same chain on every request. The memory belongs to the bundle, so a
//! rotated CA starts from nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::{Authenticator, Credentials, Outcome, PeerCertificates};
use crate::resource::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("the CA bundle holds no certificate")]
    NoCertificate,
    #[error("reading the CA bundle: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    #[error("invalid CA certificate: {0}")]
    InvalidCa(#[source] rustls::Error),
    #[error("building the client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// One or more CA certificates and the verifier built from them.
#[derive(Debug)]
pub struct CaBundle {
    pem: String,
    verifier: Arc<dyn ClientCertVerifier>,
    verified: Mutex<HashMap<[u8; 32], (Subject, Instant)>>,
}

/// How long a verified chain is trusted without verifying it again.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Chains remembered at most; beyond, the memory starts over.
const VERIFIED_MAX: usize = 4096;

impl CaBundle {
    pub fn from_pem(pem: &str) -> Result<CaBundle, X509Error> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(X509Error::Pem)?;
        if certs.is_empty() {
            return Err(X509Error::NoCertificate);
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(X509Error::InvalidCa)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(X509Error::Verifier)?;
        Ok(CaBundle {
            pem: pem.to_string(),
            verifier,
            verified: Mutex::default(),
        })
    }

    /// The PEM text the bundle was built from (a reload compares it to skip no-op rebuilds).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Verifies the leaf (with the rest of the chain as intermediates) against this CA now,
    /// and returns the leaf's subject.
    pub fn verify(&self, peer: &PeerCertificates) -> Result<Subject, String> {
        let key = chain_digest(peer);
        if let Some(subject) = self.remembered(&key) {
            return Ok(subject);
        }
        let Some((leaf, intermediates)) = peer.0.split_first() else {
            return Err("no client certificate".to_string());
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| format!("verifying certificate: {e}"))?;
        let (subject, expires_in) = Subject::of(leaf)?;
        self.remember(key, subject.clone(), expires_in.min(VERIFIED_TTL));
        Ok(subject)
    }

    fn remembered(&self, key: &[u8; 32]) -> Option<Subject> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let (subject, until) = verified.get(key)?;
        (Instant::now() < *until).then(|| subject.clone())
    }

    fn remember(&self, key: [u8; 32], subject: Subject, for_how_long: Duration) {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(key, (subject, Instant::now() + for_how_long));
    }
}

/// The digest of the whole chain as presented.
fn chain_digest(peer: &PeerCertificates) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for cert in peer.0.iter() {
        hasher.update((cert.len() as u64).to_be_bytes());
        hasher.update(cert.as_ref());
    }
    hasher.finalize().into()
}

/// What kube reads from a verified client certificate's subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

impl Subject {
    /// The subject, and how long until the certificate expires.
    fn of(cert: &CertificateDer<'_>) -> Result<(Subject, Duration), String> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| format!("parsing certificate: {e}"))?;
        let expires_in = parsed
            .validity()
            .time_to_expiration()
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default();
        let name = parsed.subject();
        // Go's pkix.Name keeps the last CN when there are several; kube reads that one.
        let common_name = name
            .iter_common_name()
            .last()
            .map(attribute_text)
            .unwrap_or_default();
        let organizations = name.iter_organization().map(attribute_text).collect();
        Ok((
            Subject {
                common_name,
                organizations,
            },
            expires_in,
        ))
    }
}

/// The attribute as text; string types x509-parser does not decode are read as (lossy) UTF-8
/// rather than dropped, so an odd encoding cannot silently remove a group.
fn attribute_text(attribute: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    match attribute.as_str() {
        Ok(text) => text.to_string(),
        Err(_) => String::from_utf8_lossy(attribute.as_slice()).into_owned(),
    }
}

/// The CA currently trusted, replaceable while requests are being served.
#[derive(Clone, Debug, Default)]
pub struct DynamicCa(Arc<RwLock<Option<Arc<CaBundle>>>>);

impl DynamicCa {
    pub fn new(ca: Option<CaBundle>) -> Self {
        DynamicCa(Arc::new(RwLock::new(ca.map(Arc::new))))
    }

    pub fn set(&self, ca: Option<CaBundle>) {
        // A writer that panicked left a whole value behind (the swap is one assignment).
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = ca.map(Arc::new);
    }

    pub fn current(&self) -> Option<Arc<CaBundle>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// kube's x509 authenticator over `--client-ca-file` (or the ConfigMap's `client-ca-file`).
pub struct ClientCertAuthenticator {
    ca: DynamicCa,
}

impl ClientCertAuthenticator {
    pub fn new(ca: DynamicCa) -> Self {
        ClientCertAuthenticator { ca }
    }
}

#[async_trait]
impl Authenticator for ClientCertAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let Some(peer) = credentials.peer.filter(|p| !p.0.is_empty()) else {
            return Outcome::NotMine;
        };
        let Some(ca) = self.ca.current() else {
            return Outcome::NotMine;
        };
        match ca.verify(peer) {
            // kube's CommonNameUserConversion: no CN, no user (and no error either).
            Ok(subject) if subject.common_name.is_empty() => Outcome::NotMine,
            Ok(subject) => Outcome::User(
                UserInfo {
                    name: subject.common_name,
                    groups: subject.organizations,
                    ..UserInfo::default()
                }
                .authenticated(),
            ),
            Err(why) => Outcome::Rejected(why),
        }
    }
}

/// CAs and client certificates for tests (here and in the request-header tests).
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::PeerCertificates;

    pub(crate) struct TestCa {
        pub(crate) pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    pub(crate) struct ClientCert {
        pub(crate) der: CertificateDer<'static>,
        key_pkcs8: Vec<u8>,
    }

    impl ClientCert {
        /// The chain as the acceptor would hand it to the authenticators.
        pub(crate) fn peer(&self) -> PeerCertificates {
            PeerCertificates(Arc::new(vec![self.der.clone()]))
        }

        /// The private key, for TLS clients presenting this certificate.
        pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
            PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()).into()
        }
    }

    pub(crate) fn make_ca(common_name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate with at most two organizations: rcgen keeps one value per
    /// attribute type, so the second O goes in under the same OID spelled as a custom type.
    pub(crate) fn make_client_cert(ca: &TestCa, common_name: &str, orgs: &[&str]) -> ClientCert {
        assert!(orgs.len() <= 2, "rcgen can encode at most two O attributes");
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let org_types = [
            DnType::OrganizationName,
            DnType::CustomDnType(vec![2, 5, 4, 10]),
        ];
        for (ty, org) in org_types.into_iter().zip(orgs) {
            params.distinguished_name.push(ty, *org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &ca.issuer)
            .expect("signed client cert");
        ClientCert {
            der: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::testing::{make_ca, make_client_cert, TestCa};
    use super::*;

    fn bundle(ca: &TestCa) -> CaBundle {
        CaBundle::from_pem(&ca.pem).expect("CA bundle")
    }

    async fn outcome(
        authenticator: &ClientCertAuthenticator,
        peer: Option<&PeerCertificates>,
    ) -> Outcome {
        let headers = HeaderMap::new();
        authenticator
            .authenticate(&Credentials {
                headers: &headers,
                peer,
            })
            .await
    }

    #[test]
    fn bundles_need_at_least_one_parsable_certificate() {
        assert!(matches!(
            CaBundle::from_pem(""),
            Err(X509Error::NoCertificate)
        ));
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(CaBundle::from_pem(broken).is_err());
        let ca = make_ca("ca");
        let two = format!("{}\n{}", ca.pem, make_ca("other").pem);
        assert_eq!(CaBundle::from_pem(&two).expect("two CAs").pem(), two);
    }

    #[test]
    fn verify_returns_the_subject_of_a_chain_signed_by_the_ca() {
        let ca = make_ca("ca");
        let cert = make_client_cert(&ca, "alice", &["dev", "ops"]);
        let subject = bundle(&ca).verify(&cert.peer()).expect("verifies");
        assert_eq!(subject.common_name, "alice");
        assert_eq!(subject.organizations, ["dev", "ops"]);
        let stranger = make_client_cert(&make_ca("other"), "mallory", &[]);
        let err = bundle(&ca).verify(&stranger.peer()).expect_err("wrong CA");
        assert!(err.starts_with("verifying certificate: "), "{err}");
    }

    #[tokio::test]
    async fn users_are_the_cn_and_groups_the_organizations() {
        let ca = make_ca("client-ca");
        let authenticator = ClientCertAuthenticator::new(DynamicCa::new(Some(bundle(&ca))));
        let alice = make_client_cert(&ca, "alice", &["dev", "ops"]);
        let Outcome::User(user) = outcome(&authenticator, Some(&alice.peer())).await else {
            panic!("alice expected");
        };
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["dev", "ops", "system:authenticated"]);
        assert!(user.extra.is_empty());
    }

    #[tokio::test]
    async fn foreign_certificates_are_rejected_and_missing_ones_are_not_mine() {
        let ca = make_ca("client-ca");
        let authenticator = ClientCertAuthenticator::new(DynamicCa::new(Some(bundle(&ca))));
        let stranger = make_client_cert(&make_ca("other-ca"), "mallory", &[]);
        assert!(matches!(
            outcome(&authenticator, Some(&stranger.peer())).await,
            Outcome::Rejected(_)
        ));
        assert_eq!(outcome(&authenticator, None).await, Outcome::NotMine);
        let empty = PeerCertificates::default();
        assert_eq!(
            outcome(&authenticator, Some(&empty)).await,
            Outcome::NotMine
        );
    }

    #[test]
    fn verified_chains_are_remembered_and_failures_are_not() {
        let (ca, other) = (make_ca("ca"), make_ca("other"));
        let bundle = bundle(&ca);
        let good = make_client_cert(&ca, "alice", &["dev"]).peer();
        let bad = make_client_cert(&other, "mallory", &[]).peer();
        assert!(bundle.remembered(&chain_digest(&good)).is_none());
        let first = bundle.verify(&good).expect("verifies");
        assert_eq!(bundle.remembered(&chain_digest(&good)), Some(first.clone()));
        assert_eq!(bundle.verify(&good).expect("remembered"), first);
        assert!(bundle.verify(&bad).is_err());
        assert!(bundle.remembered(&chain_digest(&bad)).is_none());
        assert_ne!(chain_digest(&good), chain_digest(&bad));
    }

    #[tokio::test]
    async fn rotating_the_ca_changes_who_is_accepted() {
        let (old, new) = (make_ca("old-ca"), make_ca("new-ca"));
        let slot = DynamicCa::new(Some(bundle(&old)));
        let authenticator = ClientCertAuthenticator::new(slot.clone());
        let (from_old, from_new) = (
            make_client_cert(&old, "alice", &[]),
            make_client_cert(&new, "bob", &[]),
        );
        assert!(matches!(
            outcome(&authenticator, Some(&from_old.peer())).await,
            Outcome::User(_)
        ));
        assert!(matches!(
            outcome(&authenticator, Some(&from_new.peer())).await,
            Outcome::Rejected(_)
        ));

        slot.set(Some(bundle(&new)));
        assert!(matches!(
            outcome(&authenticator, Some(&from_old.peer())).await,
            Outcome::Rejected(_)
        ));
        let Outcome::User(bob) = outcome(&authenticator, Some(&from_new.peer())).await else {
            panic!("bob expected after the rotation");
        };
        assert_eq!(bob.name, "bob");

        slot.set(None);
        assert!(slot.current().is_none());
        assert_eq!(
            outcome(&authenticator, Some(&from_new.peer())).await,
            Outcome::NotMine
        );
    }

    #[tokio::test]
    async fn a_certificate_without_common_name_is_nobody() {
        let ca = make_ca("client-ca");
        let authenticator = ClientCertAuthenticator::new(DynamicCa::new(Some(bundle(&ca))));
        let nameless = make_client_cert(&ca, "", &["dev"]);
        assert_eq!(
            outcome(&authenticator, Some(&nameless.peer())).await,
            Outcome::NotMine
        );
    }
}
