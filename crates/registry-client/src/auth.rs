//! Authentication (spec §13.4 "Auth"): `WWW-Authenticate` challenges (RFC 7235: several
//! challenges per header, quoted strings with escapes, case-insensitive schemes and parameter
//! names), the Docker token exchange for a `Bearer` challenge, and `Basic` credentials.

use std::fmt;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, Url};
use serde::Deserialize;

use crate::error::{self, Error, Target};
use crate::retry::Failure;
use crate::{BodyLimit, ClientInner, Outgoing};

/// Static credentials for one registry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The password never reaches a log.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One challenge of a `WWW-Authenticate` header; the scheme and parameter names in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value, by lower-case name.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The first challenge with this (lower-case) scheme.
pub(crate) fn find<'a>(challenges: &'a [Challenge], scheme: &str) -> Option<&'a Challenge> {
    challenges
        .iter()
        .find(|challenge| challenge.scheme == scheme)
}

/// Every challenge of every `WWW-Authenticate` header, in order.
pub(crate) fn parse_challenges(headers: &HeaderMap) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE).iter() {
        parse_challenge_header(&String::from_utf8_lossy(value.as_bytes()), &mut challenges);
    }
    challenges
}

/// RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Parses one header value: `Bearer realm="a",service="b", Basic realm="c"`. A token followed
/// by `=` is a parameter of the current challenge; any other token starts a new challenge.
pub(crate) fn parse_challenge_header(text: &str, out: &mut Vec<Challenge>) {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut current: Option<Challenge> = None;
    while pos < bytes.len() {
        // Separators, blanks and stray characters between items.
        if !is_tchar(bytes[pos]) {
            pos += 1;
            continue;
        }
        let start = pos;
        while pos < bytes.len() && is_tchar(bytes[pos]) {
            pos += 1;
        }
        let token = &text[start..pos];
        let mut look = pos;
        while look < bytes.len() && is_blank(bytes[look]) {
            look += 1;
        }
        if look < bytes.len() && bytes[look] == b'=' {
            pos = look + 1;
            while pos < bytes.len() && is_blank(bytes[pos]) {
                pos += 1;
            }
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                let (value, next) = quoted_string(bytes, pos + 1);
                pos = next;
                value
            } else {
                let value_start = pos;
                while pos < bytes.len() && bytes[pos] != b',' && !bytes[pos].is_ascii_whitespace() {
                    pos += 1;
                }
                text[value_start..pos].to_string()
            };
            if let Some(challenge) = current.as_mut() {
                challenge.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
            pos = look;
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
}

/// A quoted string starting after its opening quote: (unescaped value, position after the
/// closing quote). An unterminated string runs to the end.
fn quoted_string(bytes: &[u8], mut pos: usize) -> (String, usize) {
    let mut value = Vec::new();
    while pos < bytes.len() {
        match bytes[pos] {
            b'\\' if pos + 1 < bytes.len() => {
                value.push(bytes[pos + 1]);
                pos += 2;
            }
            b'"' => return (String::from_utf8_lossy(&value).into_owned(), pos + 1),
            other => {
                value.push(other);
                pos += 1;
            }
        }
    }
    (String::from_utf8_lossy(&value).into_owned(), pos)
}

/// `Authorization: Basic ...`, marked sensitive.
pub(crate) fn basic_header(credentials: &Credentials) -> Result<HeaderValue, Error> {
    let encoded = STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| Error::Malformed("the credentials cannot be sent in a header".to_string()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `Authorization: Bearer <token>`, marked sensitive.
pub(crate) fn bearer_header(token: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Error::Malformed(
            "the registry token contains characters not allowed in a header".to_string(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A token as the repository keeps it.
#[derive(Clone)]
pub(crate) struct CachedToken {
    realm: String,
    service: String,
    pub(crate) value: String,
    expires_at: Instant,
}

impl CachedToken {
    /// Whether this token answers this challenge and is still fresh.
    pub(crate) fn usable_for(&self, realm: &str, service: &str) -> bool {
        self.realm == realm && self.service == service && Instant::now() < self.expires_at
    }
}

/// Without `expires_in`, a token lives 60 s (the Docker token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// Tokens are never kept longer than this, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The token endpoint's answer is read up to this size.
const MAX_TOKEN_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<f64>,
}

/// Reads a token endpoint's answer: `token` or `access_token`, and `expires_in`.
fn parse_token_response(body: &[u8]) -> Result<(String, Duration), String> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let value = parsed
        .token
        .filter(|token| !token.is_empty())
        .or_else(|| parsed.access_token.filter(|token| !token.is_empty()))
        .ok_or_else(|| "the answer holds no token".to_string())?;
    let lifetime = parsed
        .expires_in
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .filter(|lifetime| !lifetime.is_zero())
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    Ok((value, lifetime))
}

/// What a token is asked for.
pub(crate) struct TokenRequest<'a> {
    pub(crate) realm: &'a str,
    pub(crate) service: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) credentials: Option<&'a Credentials>,
    pub(crate) insecure: bool,
}

/// `GET <realm>?service=<service>&scope=<scope>`, with the credentials as Basic when there are
/// any. A 401 or 403 means the credentials were refused (or, without any, that anonymous access
/// is not allowed).
pub(crate) async fn fetch_token(
    client: &ClientInner,
    request: &TokenRequest<'_>,
) -> Result<CachedToken, Failure> {
    let realm = request.realm;
    let mut url = Url::parse(realm).map_err(|e| {
        Error::Malformed(format!(
            "invalid token realm {realm:?} in the registry's challenge: {e}"
        ))
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(Error::Malformed(format!(
            "invalid token realm {realm:?} in the registry's challenge"
        ))
        .into());
    }
    {
        let mut query = url.query_pairs_mut();
        if !request.service.is_empty() {
            query.append_pair("service", request.service);
        }
        query.append_pair("scope", request.scope);
    }
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(credentials) = request.credentials {
        headers.insert(AUTHORIZATION, basic_header(credentials)?);
    }
    let reply = client
        .exchange(
            request.insecure,
            Outgoing {
                method: Method::GET,
                url,
                headers,
                timeout: client.options.request_timeout,
                body: BodyLimit::Strict(MAX_TOKEN_RESPONSE_BYTES),
            },
        )
        .await?;
    let credentials_sent = request.credentials.is_some();
    let status = reply.status.as_u16();
    if status == 401 || status == 403 {
        let error = if credentials_sent {
            Error::IncorrectCredentials
        } else {
            Error::Unauthorized
        };
        return Err(error.into());
    }
    if !reply.status.is_success() {
        return Err(error::from_response(
            reply.status,
            &reply.headers,
            &reply.body,
            Target::Token,
            credentials_sent,
        ));
    }
    let (value, lifetime) = parse_token_response(&reply.body).map_err(|why| {
        Error::Malformed(format!(
            "invalid answer from the token endpoint {realm:?}: {why}"
        ))
    })?;
    Ok(CachedToken {
        realm: realm.to_string(),
        service: request.service.to_string(),
        value,
        expires_at: Instant::now() + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(header: &str) -> Vec<Challenge> {
        let mut out = Vec::new();
        parse_challenge_header(header, &mut out);
        out
    }

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn bearer_challenge() {
        assert_eq!(
            parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ]
            )]
        );
    }

    #[test]
    fn basic_challenge_and_case() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            vec![challenge("basic", &[("realm", "Registry Realm")])]
        );
        assert_eq!(
            parse(r#"BASIC Realm="x""#),
            vec![challenge("basic", &[("realm", "x")])]
        );
        assert_eq!(parse("Basic"), vec![challenge("basic", &[])]);
    }

    #[test]
    fn several_challenges_in_one_header() {
        assert_eq!(
            parse(r#"Bearer realm="https://a/token", service="a" , Basic realm="b""#),
            vec![
                challenge("bearer", &[("realm", "https://a/token"), ("service", "a")]),
                challenge("basic", &[("realm", "b")]),
            ]
        );
    }

    #[test]
    fn quoted_strings_and_tokens() {
        assert_eq!(
            parse(
                r#"Bearer realm = "https://a/t?x=1,2", error="insufficient_scope", note="say \"hi\"\\", service=plain"#
            ),
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://a/t?x=1,2"),
                    ("error", "insufficient_scope"),
                    ("note", r#"say "hi"\"#),
                    ("service", "plain"),
                ]
            )]
        );
        assert_eq!(
            parse(r#"Bearer realm="unterminated"#),
            vec![challenge("bearer", &[("realm", "unterminated")])]
        );
        assert!(parse("").is_empty());
        assert!(parse(" , ").is_empty());
    }

    #[test]
    fn several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="b""#),
        );
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="https://a/token""#),
        );
        let challenges = parse_challenges(&headers);
        assert_eq!(challenges.len(), 2);
        assert_eq!(
            find(&challenges, "bearer").and_then(|c| c.param("realm")),
            Some("https://a/token")
        );
        assert_eq!(
            find(&challenges, "basic").and_then(|c| c.param("realm")),
            Some("b")
        );
        assert_eq!(find(&challenges, "negotiate"), None);
    }

    #[test]
    fn token_responses() {
        let (token, lifetime) =
            parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(
            (token.as_str(), lifetime),
            ("abc", Duration::from_secs(300))
        );
        let (token, lifetime) = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((token.as_str(), lifetime), ("xyz", DEFAULT_TOKEN_LIFETIME));
        let (token, _) =
            parse_token_response(br#"{"token":"","access_token":"xyz","expires_in":-1}"#).unwrap();
        assert_eq!(token, "xyz");
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(b"<html>").is_err());
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let credentials = Credentials {
            username: "user".to_string(),
            password: "secret".to_string(),
        };
        let text = format!("{credentials:?}");
        assert!(text.contains("user"));
        assert!(!text.contains("secret"));
        let header = basic_header(&credentials).unwrap();
        assert_eq!(header.to_str().unwrap(), "Basic dXNlcjpzZWNyZXQ=");
        assert!(header.is_sensitive());
    }
}
