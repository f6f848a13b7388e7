//! The front-proxy authenticator (spec §8.4 item 1, kube's `headerrequest`): kube-apiserver's
//! aggregator authenticates the user itself, then proxies with its front-proxy client
//! certificate and `X-Remote-User` / `X-Remote-Group` / `X-Remote-Extra-*` headers. The headers
//! are believed only when that certificate verifies against the request-header CA and carries
//! an allowed CN; anyone else could send them.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue};

use super::x509::CaBundle;
use super::{Authenticator, Credentials, Outcome, PeerCertificates};
use crate::resource::UserInfo;

/// The `requestheader-*` settings (flags or the `extension-apiserver-authentication`
/// ConfigMap).
#[derive(Clone, Debug, Default)]
pub struct RequestHeaderSettings {
    /// `requestheader-client-ca-file`; without it the authenticator is off.
    pub ca: Option<Arc<CaBundle>>,
    /// `requestheader-allowed-names`: the proxy certificate's CN must be one of them (empty:
    /// any certificate of the CA).
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_header_prefixes: Vec<String>,
}

impl RequestHeaderSettings {
    /// The header names kube-apiserver's aggregator sends, without a CA.
    pub fn kube_defaults() -> Self {
        RequestHeaderSettings {
            ca: None,
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".to_string()],
            uid_headers: vec!["X-Remote-Uid".to_string()],
            group_headers: vec!["X-Remote-Group".to_string()],
            extra_header_prefixes: vec!["X-Remote-Extra-".to_string()],
        }
    }
}

/// kube's request-header authenticator; its settings are swapped when the ConfigMap changes.
#[derive(Clone)]
pub struct RequestHeaderAuthenticator {
    settings: Arc<RwLock<Arc<RequestHeaderSettings>>>,
}

impl RequestHeaderAuthenticator {
    pub fn new(settings: RequestHeaderSettings) -> Self {
        RequestHeaderAuthenticator {
            settings: Arc::new(RwLock::new(Arc::new(settings))),
        }
    }

    pub fn update(&self, settings: RequestHeaderSettings) {
        // A writer that panicked left a whole value behind (the swap is one assignment).
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    pub fn settings(&self) -> Arc<RequestHeaderSettings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Authenticator for RequestHeaderAuthenticator {
    async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let settings = self.settings();
        let Some(ca) = &settings.ca else {
            return Outcome::NotMine;
        };
        let Some(peer) = credentials.peer.filter(|p| !p.0.is_empty()) else {
            return Outcome::NotMine;
        };
        if let Err(why) = verify_proxy(ca, &settings.allowed_names, peer) {
            return Outcome::Rejected(why);
        }
        match user_from_headers(&settings, credentials.headers) {
            Some(user) => Outcome::User(user.authenticated()),
            None => Outcome::NotMine,
        }
    }
}

/// The proxy's certificate must chain to the request-header CA and name an allowed proxy.
fn verify_proxy(
    ca: &CaBundle,
    allowed_names: &[String],
    peer: &PeerCertificates,
) -> Result<(), String> {
    let subject = ca
        .verify(peer)
        .map_err(|why| format!("request header: {why}"))?;
    let allowed = allowed_names.is_empty() || allowed_names.contains(&subject.common_name);
    if !allowed {
        return Err(format!(
            "x509: subject with cn={} is not in the allowed list",
            subject.common_name
        ));
    }
    Ok(())
}

/// The user the proxy names, or `None` when it names nobody (kube then asks the next
/// authenticator).
fn user_from_headers(settings: &RequestHeaderSettings, headers: &HeaderMap) -> Option<UserInfo> {
    let name = first_value(headers, &settings.username_headers)?;
    Some(UserInfo {
        name,
        uid: first_value(headers, &settings.uid_headers).unwrap_or_default(),
        groups: all_values(headers, &settings.group_headers),
        extra: extra_values(headers, &settings.extra_header_prefixes),
    })
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// Go's `Header.Get` over each name in turn: the first value of the first header whose first
/// value is non-empty.
fn first_value(headers: &HeaderMap, names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|name| headers.get(name.as_str()))
        .map(text)
        .find(|value| !value.is_empty())
}

/// Every non-empty value of every named header, in order; each value is one entry (a group
/// name may contain a comma).
fn all_values(headers: &HeaderMap, names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|name| headers.get_all(name.as_str()))
        .map(text)
        .filter(|value| !value.is_empty())
        .collect()
}

/// `<prefix><escaped key>: value` headers as extra attributes: the key is the rest of the
/// lower-cased header name, percent-unescaped; all values kept, empty ones included (as kube).
fn extra_values(headers: &HeaderMap, prefixes: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut extra = BTreeMap::<String, Vec<String>>::new();
    for prefix in prefixes {
        let prefix = prefix.to_ascii_lowercase();
        for name in headers.keys() {
            // Header names are stored lower-cased already.
            let Some(encoded) = name.as_str().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let values = headers.get_all(name).iter().map(text);
            extra
                .entry(unescape_key(encoded))
                .or_default()
                .extend(values);
        }
    }
    extra
}

/// Go's `url.PathUnescape`; a malformed escape (or bytes that are not UTF-8) keeps the key as
/// sent, so the value is still recorded.
fn unescape_key(encoded: &str) -> String {
    percent_decode(encoded.as_bytes())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| encoded.to_string())
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte != b'%' {
            out.push(byte);
            rest = tail;
            continue;
        }
        let &[high, low, ..] = tail else {
            return None;
        };
        out.push((hex_digit(high)? << 4) | hex_digit(low)?);
        rest = &tail[2..];
    }
    Some(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;

    use super::*;
    use crate::auth::x509::testing::{make_ca, make_client_cert, TestCa};

    fn settings(ca: &TestCa, allowed: &[&str]) -> RequestHeaderSettings {
        RequestHeaderSettings {
            ca: Some(Arc::new(CaBundle::from_pem(&ca.pem).expect("CA bundle"))),
            allowed_names: allowed.iter().map(|n| n.to_string()).collect(),
            ..RequestHeaderSettings::kube_defaults()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    async fn outcome(
        authenticator: &RequestHeaderAuthenticator,
        headers: &HeaderMap,
        peer: Option<&PeerCertificates>,
    ) -> Outcome {
        authenticator
            .authenticate(&Credentials { headers, peer })
            .await
    }

    fn aggregator_headers() -> HeaderMap {
        headers(&[
            ("X-Remote-User", "alice"),
            ("X-Remote-Uid", "u-1"),
            ("X-Remote-Group", "dev"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-Scopes", "b"),
            (
                "X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id",
                "JTI=1",
            ),
        ])
    }

    #[tokio::test]
    async fn a_verified_proxy_names_the_user() {
        let ca = make_ca("front-proxy-ca");
        let proxy = make_client_cert(&ca, "front-proxy-client", &[]);
        let authenticator = RequestHeaderAuthenticator::new(settings(&ca, &["front-proxy-client"]));
        let got = outcome(&authenticator, &aggregator_headers(), Some(&proxy.peer())).await;
        let Outcome::User(user) = got else {
            panic!("alice expected, got {got:?}");
        };
        assert_eq!(user.name, "alice");
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.groups, ["dev", "system:authenticated"]);
        assert_eq!(user.extra.len(), 2);
        assert_eq!(user.extra["scopes"], ["a", "b"]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=1"]
        );
    }

    #[tokio::test]
    async fn wrong_names_and_foreign_cas_are_rejected() {
        let ca = make_ca("front-proxy-ca");
        let authenticator = RequestHeaderAuthenticator::new(settings(&ca, &["front-proxy-client"]));
        let impostor = make_client_cert(&ca, "someone-else", &[]);
        assert_eq!(
            outcome(
                &authenticator,
                &aggregator_headers(),
                Some(&impostor.peer())
            )
            .await,
            Outcome::Rejected(
                "x509: subject with cn=someone-else is not in the allowed list".to_string()
            )
        );
        let foreign = make_client_cert(&make_ca("other-ca"), "front-proxy-client", &[]);
        let Outcome::Rejected(why) =
            outcome(&authenticator, &aggregator_headers(), Some(&foreign.peer())).await
        else {
            panic!("a certificate of another CA must be rejected");
        };
        assert!(why.starts_with("request header: "), "{why}");
    }

    #[tokio::test]
    async fn headers_without_a_proxy_certificate_are_not_trusted() {
        let ca = make_ca("front-proxy-ca");
        let authenticator = RequestHeaderAuthenticator::new(settings(&ca, &[]));
        assert_eq!(
            outcome(&authenticator, &aggregator_headers(), None).await,
            Outcome::NotMine
        );
        let no_ca = RequestHeaderAuthenticator::new(RequestHeaderSettings::kube_defaults());
        let proxy = make_client_cert(&ca, "front-proxy-client", &[]);
        assert_eq!(
            outcome(&no_ca, &aggregator_headers(), Some(&proxy.peer())).await,
            Outcome::NotMine
        );
    }

    #[tokio::test]
    async fn an_empty_allowed_list_accepts_any_cn_of_the_ca() {
        let ca = make_ca("front-proxy-ca");
        let authenticator = RequestHeaderAuthenticator::new(settings(&ca, &[]));
        let proxy = make_client_cert(&ca, "whatever", &[]);
        let got = outcome(&authenticator, &aggregator_headers(), Some(&proxy.peer())).await;
        assert!(
            matches!(got, Outcome::User(ref u) if u.name == "alice"),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_proxy_that_names_nobody_is_not_mine() {
        let ca = make_ca("front-proxy-ca");
        let authenticator = RequestHeaderAuthenticator::new(settings(&ca, &[]));
        let proxy = make_client_cert(&ca, "front-proxy-client", &[]);
        let peer = proxy.peer();
        assert_eq!(
            outcome(&authenticator, &HeaderMap::new(), Some(&peer)).await,
            Outcome::NotMine
        );
        let empty_user = headers(&[("X-Remote-User", ""), ("X-Remote-Group", "dev")]);
        assert_eq!(
            outcome(&authenticator, &empty_user, Some(&peer)).await,
            Outcome::NotMine
        );
    }

    #[tokio::test]
    async fn settings_are_swapped_in_place() {
        let (old, new) = (make_ca("old-ca"), make_ca("new-ca"));
        let authenticator = RequestHeaderAuthenticator::new(settings(&old, &[]));
        let proxy = make_client_cert(&new, "front-proxy-client", &[]);
        let peer = proxy.peer();
        assert!(matches!(
            outcome(&authenticator, &aggregator_headers(), Some(&peer)).await,
            Outcome::Rejected(_)
        ));
        authenticator.update(settings(&new, &[]));
        assert_eq!(
            authenticator.settings().ca.as_ref().map(|ca| ca.pem()),
            Some(new.pem.as_str())
        );
        assert!(matches!(
            outcome(&authenticator, &aggregator_headers(), Some(&peer)).await,
            Outcome::User(_)
        ));
    }

    #[test]
    fn header_names_and_prefixes_are_case_insensitive() {
        let settings = RequestHeaderSettings {
            username_headers: vec!["x-remote-user".into()],
            extra_header_prefixes: vec!["x-REMOTE-extra-".into()],
            ..RequestHeaderSettings::kube_defaults()
        };
        let user = user_from_headers(&settings, &aggregator_headers()).expect("user");
        assert_eq!(user.name, "alice");
        assert_eq!(user.extra["scopes"], ["a", "b"]);
    }

    #[test]
    fn the_first_non_empty_username_header_wins() {
        let settings = RequestHeaderSettings {
            username_headers: vec!["X-User".into(), "X-Remote-User".into()],
            ..RequestHeaderSettings::kube_defaults()
        };
        let map = headers(&[("X-User", ""), ("X-Remote-User", "bob")]);
        let user = user_from_headers(&settings, &map).expect("user");
        assert_eq!(user.name, "bob");
        assert_eq!(user.uid, "");
        assert!(user.groups.is_empty());
    }

    #[test]
    fn extra_keys_are_unescaped_or_kept_raw() {
        assert_eq!(unescape_key("a%2fb%2Fc"), "a/b/c");
        assert_eq!(unescape_key("plain-key"), "plain-key");
        assert_eq!(unescape_key("bad%zz"), "bad%zz");
        assert_eq!(unescape_key("cut%2"), "cut%2");
        assert_eq!(unescape_key("not-utf8%ff"), "not-utf8%ff");
        let map = headers(&[("X-Remote-User", "a"), ("X-Remote-Extra-Bad%zz", "v")]);
        let user = user_from_headers(&RequestHeaderSettings::kube_defaults(), &map).expect("user");
        assert_eq!(user.extra["bad%zz"], ["v"]);
    }
}
