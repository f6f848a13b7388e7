//! A Docker Registry v2 token service, for a real `docker-registry` (distribution 2.8.2)
//! configured with `auth: token`.
//!
//! Private registries (Quay, Harbor, GitLab, Docker Hub, ...) answer an anonymous request
//! with `401` and `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the client is
//! expected to fetch a JWT from the realm, with Basic credentials, and retry with it. The
//! import and pull-through paths of the server under test must do that dance, so the
//! black-box tests run a real registry behind this service rather than a fake registry.
//!
//! `GET /token?service=..&scope=repository:<name>:pull[,push]` (the scope may repeat, be
//! space separated or be absent):
//! - with the right `Authorization: Basic` credentials, a token granting what was asked;
//! - with wrong credentials (or another scheme), `401`;
//! - with no credentials, a token granting nothing, as Docker Hub does for anonymous
//!   callers, so a private repository then answers `401 UNAUTHORIZED` from the registry.
//!
//! The token is what distribution's `registry/auth/token` verifies: an ES256 JWS whose
//! header carries `x5c` (the signing certificate, which is also the whole
//! `rootcertbundle`), and whose claims carry `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`,
//! `jti` and `access`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// How long an issued token is valid, in seconds.
const TOKEN_LIFETIME_SECS: i64 = 300;

/// What the registry's `auth.token` section needs, and the credentials the service accepts.
#[derive(Clone, Debug)]
pub struct TokenAuthConfig {
    /// `http://127.0.0.1:<port>/token`.
    pub realm: String,
    /// The `aud` of issued tokens; the registry's `auth.token.service`.
    pub service: String,
    /// The `iss` of issued tokens; the registry's `auth.token.issuer`.
    pub issuer: String,
    /// PEM file holding the signing certificate; the registry's `auth.token.rootcertbundle`.
    pub rootcertbundle: PathBuf,
    /// The only (username, password) that is granted anything.
    pub credentials: (String, String),
}

impl TokenAuthConfig {
    /// The registry configuration's top-level `auth:` section (YAML) for this service.
    pub fn auth_yaml(&self) -> String {
        let lines = [
            "auth:".to_string(),
            "  token:".to_string(),
            format!("    realm: \"{}\"", self.realm),
            format!("    service: \"{}\"", self.service),
            format!("    issuer: \"{}\"", self.issuer),
            format!("    rootcertbundle: \"{}\"", self.rootcertbundle.display()),
        ];
        lines.join("\n") + "\n"
    }
}

/// A running token service; dropping it stops serving.
pub struct TokenService {
    pub config: TokenAuthConfig,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

struct Issuer {
    config: TokenAuthConfig,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// Standard base64 of the signing certificate's DER, the token header's `x5c` entry.
    certificate: String,
    requests: Arc<AtomicUsize>,
}

/// Who asked for a token.
enum Caller {
    Anonymous,
    Authenticated(String),
    Rejected,
}

impl TokenService {
    /// Generates a P-256 signing key and certificate, writes the certificate to
    /// `config.rootcertbundle`, and serves `GET /token` on a free loopback port.
    pub async fn start(username: &str, password: &str) -> TokenService {
        let dir = tempfile::Builder::new()
            .prefix("registry-token-service-")
            .tempdir()
            .expect("temp dir for the token signing certificate");

        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate the token signing key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("token signing certificate parameters");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "blackbox registry token signer");
        let certificate = params
            .self_signed(&key_pair)
            .expect("self-sign the token signing certificate");
        let rootcertbundle = dir.path().join("token-signer.pem");
        std::fs::write(&rootcertbundle, certificate.pem()).expect("write the rootcertbundle");

        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .expect("load the token signing key into ring");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the token service");
        let port = listener.local_addr().expect("token service address").port();
        let config = TokenAuthConfig {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: "blackbox-registry".to_string(),
            issuer: "blackbox-token-issuer".to_string(),
            rootcertbundle,
            credentials: (username.to_string(), password.to_string()),
        };
        let requests = Arc::new(AtomicUsize::new(0));
        let issuer = Arc::new(Issuer {
            config: config.clone(),
            key,
            rng,
            certificate: STANDARD.encode(certificate.der()),
            requests: requests.clone(),
        });
        let app = Router::new().route("/token", get(token)).with_state(issuer);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenService {
            config,
            requests,
            task,
            _dir: dir,
        }
    }

    /// How many token requests were received, whatever they were answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token(
    State(issuer): State<Arc<Issuer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    issuer.requests.fetch_add(1, Ordering::SeqCst);
    let subject = match issuer.caller(&headers) {
        Caller::Rejected => {
            let body = json!({"errors": [{
                "code": "UNAUTHORIZED",
                "message": "invalid username or password",
                "detail": null,
            }]});
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{}\"", issuer.config.realm),
                )],
                Json(body),
            )
                .into_response();
        }
        Caller::Anonymous => None,
        Caller::Authenticated(user) => Some(user),
    };
    let access: Vec<Value> = if subject.is_some() {
        requested_scopes(query.as_deref().unwrap_or(""))
    } else {
        Vec::new()
    };
    let jwt = issuer.sign(subject.as_deref().unwrap_or(""), access);
    let body = json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": TOKEN_LIFETIME_SECS,
        "issued_at": jiff::Timestamp::now().to_string(),
    });
    (StatusCode::OK, Json(body)).into_response()
}

impl Issuer {
    fn caller(&self, headers: &HeaderMap) -> Caller {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Some(encoded) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        }) else {
            return Caller::Rejected;
        };
        let Some(decoded) = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        else {
            return Caller::Rejected;
        };
        match decoded.split_once(':') {
            Some((user, password))
                if user == self.config.credentials.0 && password == self.config.credentials.1 =>
            {
                Caller::Authenticated(user.to_string())
            }
            _ => Caller::Rejected,
        }
    }

    /// An ES256 JWS in compact form, verifiable through its `x5c` against the bundle.
    fn sign(&self, subject: &str, access: Vec<Value>) -> String {
        let now = jiff::Timestamp::now().as_second();
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).expect("random token id");
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [self.certificate],
        });
        let claims = json!({
            "iss": self.config.issuer,
            "sub": subject,
            "aud": self.config.service,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now - 10,
            "iat": now,
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("sign the token");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// The `access` claim entries for every `scope` parameter: `type:name:action[,action]`,
/// several of them possibly space separated in one parameter. The name may itself hold a
/// colon (a registry host with a port), so the type ends at the first colon and the actions
/// start after the last one. Everything asked for is granted.
fn requested_scopes(query: &str) -> Vec<Value> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "scope")
        .flat_map(|(_, value)| {
            value
                .split(' ')
                .filter_map(|scope| {
                    let (kind, rest) = scope.split_once(':')?;
                    let (name, actions) = rest.rsplit_once(':')?;
                    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
                    Some(json!({"type": kind, "name": name, "actions": actions}))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
