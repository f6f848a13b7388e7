//! The two rustls configurations (spec §13.4 "TLS roots"), both on the ring provider built here,
//! so nothing depends on a process-wide default provider:
//!
//! - secure: the system roots (rustls-native-certs, as rustls-platform-verifier loads them on
//!   Linux) plus the extra PEM bundles; an unreadable system store or bundle is logged and
//!   skipped, never fatal;
//! - insecure: any certificate is accepted, but the handshake signatures are still verified with
//!   the provider's algorithms.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system roots plus every certificate of `extra_roots_pem`.
pub(crate) fn secure_config(extra_roots_pem: &[Vec<u8>]) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "could not load system CA certificates");
    }
    let (system, ignored) = roots.add_parsable_certificates(native.certs);
    for (bundle, pem) in extra_roots_pem.iter().enumerate() {
        for item in CertificateDer::pem_slice_iter(pem) {
            match item {
                Ok(certificate) => {
                    if let Err(error) = roots.add(certificate) {
                        tracing::warn!(bundle, %error, "ignoring an unusable extra CA certificate");
                    }
                }
                Err(error) => {
                    tracing::warn!(bundle, %error, "ignoring the rest of an unreadable PEM CA bundle");
                    break;
                }
            }
        }
    }
    tracing::debug!(
        system,
        ignored,
        total = roots.len(),
        "TLS trust roots loaded"
    );
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Transport(format!("building the TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(with_alpn(config))
}

/// A configuration that accepts any server certificate.
pub(crate) fn insecure_config() -> Result<ClientConfig, Error> {
    let provider = provider();
    let verifier = AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Transport(format!("building the TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(with_alpn(config))
}

/// reqwest does not set ALPN on a preconfigured rustls configuration: offer h2 and HTTP/1.1.
fn with_alpn(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// Accepts every certificate chain; still checks that the server holds the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_build_without_a_process_default_provider() {
        assert!(secure_config(&[b"not a certificate".to_vec()]).is_ok());
        assert!(insecure_config().is_ok());
    }
}
