//! Authentication, impersonation and authorization (spec §8.4, §8.5), in kube's order:
//! front-proxy request headers, client certificates, bearer tokens (a file, then delegated
//! TokenReview), anonymous; then `Impersonate-*`; then the authorizers (`system:masters`,
//! always-allowed paths, delegated SubjectAccessReview, a policy file, AlwaysAllow).

pub mod authn;
pub mod authz;
pub mod extension_config;
pub mod impersonation;
pub mod policy;
pub mod request_header;
mod token_file;
pub mod webhook;
pub mod x509;

pub use self::authn::{Authentication, Authenticator, Credentials, Outcome, PeerCertificates};
pub use self::authz::{Attributes, Authorization, Authorizer, Decision, ResourceAttributes};
pub use self::token_file::{AuthError, TokenAuthenticator};
