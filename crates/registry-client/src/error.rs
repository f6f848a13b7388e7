//! [`Error`], and how a registry's answers become one: the `{"errors":[{"code","message"}]}`
//! envelope of the distribution spec, HTTP statuses, and transport failures (with the TLS cases
//! told apart: a plain-HTTP server, a certificate problem).

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use crate::media_types;
use crate::retry::{self, Failure, RetryClass};

/// Everything a registry call can end with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// 401, `UNAUTHORIZED` or `DENIED`, and no credentials were sent.
    #[error("unauthorized: authentication required")]
    Unauthorized,
    /// Credentials were sent (to the token realm, or as Basic) and refused.
    #[error("unauthorized: incorrect username or password")]
    IncorrectCredentials,
    /// 404 or `MANIFEST_UNKNOWN` on a manifest.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// `NAME_UNKNOWN`, or a 404 on the tag list.
    #[error("repository name not known to registry")]
    NameUnknown,
    /// 404 or `BLOB_UNKNOWN` on a blob.
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// A TLS handshake was answered in plain HTTP (secure mode only).
    #[error(
        "tls: first record does not look like a TLS handshake (the registry serves plain HTTP)"
    )]
    HttpOnly,
    /// The ping answered with something other than 2xx, 401 or 403.
    #[error("endpoint {url:?} does not support v2 API (got {status})")]
    NotV2 { url: String, status: u16 },
    /// The content fetched by digest does not hash to that digest.
    #[error("{}", digest_mismatch_text(.media_type, .expected, .actual))]
    DigestMismatch {
        media_type: String,
        expected: String,
        actual: String,
    },
    /// A manifest of a type this client does not read.
    #[error("unsupported image manifest type: {0}")]
    UnsupportedManifest(String),
    /// A body (or a reference, a digest, a header) that does not parse.
    #[error("{0}")]
    Malformed(String),
    /// A body larger than the configured cap.
    #[error("the response body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// 429 or `TOOMANYREQUESTS`, after the retries ran out.
    #[error("toomanyrequests: too many requests")]
    TooManyRequests,
    /// Any other error answer; `code` and `message` come from the errors envelope when present
    /// (otherwise `message` is an excerpt of the body).
    #[error("{}", status_text(.status, .code, .message))]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// A call that did not finish within its timeout; the text names the URL.
    #[error("{0}")]
    Timeout(String),
    /// Connection, DNS, TLS (rustls' own text, e.g. `invalid peer certificate: UnknownIssuer`),
    /// with the whole source chain.
    #[error("{0}")]
    Transport(String),
}

impl Error {
    /// Whether trying again later may succeed: transport errors, timeouts, throttling and the
    /// server errors the retry policy retries (500, 502, 503, 504, `UNAVAILABLE`; not `UNKNOWN`).
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout(_) | Error::TooManyRequests => true,
            Error::Status { status, code, .. } => {
                !matches!(retry::classify_status(*status, code), RetryClass::Never)
            }
            _ => false,
        }
    }
}

fn digest_mismatch_text(media_type: &str, expected: &str, actual: &str) -> String {
    if media_type == media_types::DOCKER_SCHEMA1_SIGNED || media_type == media_types::DOCKER_SCHEMA1
    {
        format!(
            "content integrity error: the schema 1 manifest retrieved with digest {expected} does not match the digest calculated from the content {actual}"
        )
    } else {
        format!(
            "content integrity error: the manifest retrieved (media type: {media_type}) with digest {expected} does not match the digest calculated from the content {actual}"
        )
    }
}

fn status_text(status: &u16, code: &str, message: &str) -> String {
    if !code.is_empty() {
        let name = code.to_ascii_lowercase().replace('_', " ");
        return if message.is_empty() {
            name
        } else {
            format!("{name}: {message}")
        };
    }
    let reason = StatusCode::from_u16(*status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default();
    let mut text = format!("received unexpected HTTP status: {status} {reason}");
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

/// What a request was about, for the 404 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Manifest,
    Blob,
    Tags,
    Token,
}

/// At most this much of an error body is read.
pub(crate) const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// At most this much of a body without an envelope is kept in [`Error::Status`].
const EXCERPT_CHARS: usize = 256;

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Option<Vec<EnvelopeError>>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The first error of a distribution errors envelope: (upper-case code, message).
pub(crate) fn parse_envelope(body: &[u8]) -> Option<(String, String)> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let first = envelope.errors?.into_iter().next()?;
    Some((
        first.code.unwrap_or_default().trim().to_ascii_uppercase(),
        first.message.unwrap_or_default(),
    ))
}

/// The error for a non-2xx answer, with the retry class its status and code call for.
pub(crate) fn from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    target: Target,
    credentials_sent: bool,
) -> Failure {
    let status = status.as_u16();
    let (code, message) = parse_envelope(body).unwrap_or_default();
    let retry = match retry::classify_status(status, &code) {
        RetryClass::Throttle(_) => RetryClass::Throttle(retry_after(headers)),
        other => other,
    };
    let error = map_status(status, &code, &message, body, target, credentials_sent);
    Failure {
        error,
        retry,
        transport: false,
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    retry::parse_retry_after(value, SystemTime::now())
}

fn auth_error(credentials_sent: bool) -> Error {
    if credentials_sent {
        Error::IncorrectCredentials
    } else {
        Error::Unauthorized
    }
}

/// Maps a status and an envelope code (upper case, possibly empty) to an [`Error`].
pub(crate) fn map_status(
    status: u16,
    code: &str,
    message: &str,
    body: &[u8],
    target: Target,
    credentials_sent: bool,
) -> Error {
    match code {
        "UNAUTHORIZED" | "DENIED" => return auth_error(credentials_sent),
        "MANIFEST_UNKNOWN" => return Error::ManifestUnknown,
        "NAME_UNKNOWN" => return Error::NameUnknown,
        "BLOB_UNKNOWN" => return Error::BlobUnknown,
        "TOOMANYREQUESTS" => return Error::TooManyRequests,
        _ => {}
    }
    match (status, target) {
        (401, _) => auth_error(credentials_sent),
        (429, _) => Error::TooManyRequests,
        (404, Target::Manifest) => Error::ManifestUnknown,
        (404, Target::Tags) => Error::NameUnknown,
        (404, Target::Blob) => Error::BlobUnknown,
        _ => {
            let message = if code.is_empty() && message.is_empty() {
                excerpt(body)
            } else {
                message.to_string()
            };
            Error::Status {
                status,
                code: code.to_string(),
                message,
            }
        }
    }
}

/// The start of a body, whitespace collapsed, for an answer without an errors envelope.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for (count, word) in text.split_whitespace().enumerate() {
        if count > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= EXCERPT_CHARS {
            break;
        }
    }
    if out.chars().count() > EXCERPT_CHARS {
        out = out.chars().take(EXCERPT_CHARS).collect();
        out.push_str("...");
    }
    out
}

/// A request that got no (complete) answer.
pub(crate) fn transport(
    err: &reqwest::Error,
    method: &Method,
    url: &Url,
    timeout: Duration,
) -> Failure {
    if err.is_timeout() {
        let text = if err.is_connect() {
            format!("{method} {url}: timed out connecting (TCP connect and TLS handshake)")
        } else {
            format!("{method} {url}: timed out after {timeout:?}")
        };
        return Failure {
            error: Error::Timeout(text),
            retry: RetryClass::Network,
            transport: true,
        };
    }
    let text = chain_text(err);
    let (error, retry) = match tls_failure(err) {
        Some(TlsFailure::PlainHttp) => (Error::HttpOnly, RetryClass::Never),
        Some(TlsFailure::Other) => (Error::Transport(text), RetryClass::Never),
        // The server answered with bytes that are not HTTP: asking again will not help.
        None if is_http_parse_error(err) => (Error::Transport(text), RetryClass::Never),
        None => (Error::Transport(text), RetryClass::Network),
    };
    Failure {
        error,
        retry,
        transport: true,
    }
}

/// Whether hyper failed to parse the answer (not HTTP, or malformed HTTP).
fn is_http_parse_error(err: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error and its sources, joined by ": ", without repeating a text already included.
pub(crate) fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(text.as_str())) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsFailure {
    /// The server answered the ClientHello with something that is not TLS (plain HTTP).
    PlainHttp,
    /// Any other TLS failure (certificates, protocol): retrying will not help.
    Other,
}

fn tls_failure(err: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = find_rustls(e) {
            return Some(match tls {
                rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType
                    | rustls::InvalidMessage::UnknownProtocolVersion
                    | rustls::InvalidMessage::MessageTooLarge,
                ) => TlsFailure::PlainHttp,
                _ => TlsFailure::Other,
            });
        }
        current = e.source();
    }
    None
}

/// A rustls error, directly or inside an `io::Error` (tokio-rustls wraps them so; an
/// `io::Error`'s `source()` skips the wrapped error, hence `get_ref`).
fn find_rustls<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    let inner: &'a (dyn StdError + 'static) = io.get_ref()?;
    find_rustls(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str, target: Target, credentials_sent: bool) -> Error {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
        from_response(
            status,
            &HeaderMap::new(),
            body.as_bytes(),
            target,
            credentials_sent,
        )
        .error
    }

    fn envelope(code: &str) -> String {
        format!(r#"{{"errors":[{{"code":"{code}","message":"some message","detail":null}}]}}"#)
    }

    #[test]
    fn envelope_codes_map_to_variants() {
        let cases = [
            ("MANIFEST_UNKNOWN", Target::Manifest, Error::ManifestUnknown),
            ("NAME_UNKNOWN", Target::Manifest, Error::NameUnknown),
            ("NAME_UNKNOWN", Target::Tags, Error::NameUnknown),
            ("BLOB_UNKNOWN", Target::Blob, Error::BlobUnknown),
            ("UNAUTHORIZED", Target::Manifest, Error::Unauthorized),
            ("DENIED", Target::Tags, Error::Unauthorized),
            ("TOOMANYREQUESTS", Target::Manifest, Error::TooManyRequests),
        ];
        for (code, target, want) in cases {
            assert_eq!(map(400, &envelope(code), target, false), want, "{code}");
        }
        assert_eq!(
            map(401, &envelope("UNAUTHORIZED"), Target::Manifest, true),
            Error::IncorrectCredentials
        );
        assert_eq!(
            map(403, &envelope("DENIED"), Target::Manifest, true),
            Error::IncorrectCredentials
        );
    }

    #[test]
    fn statuses_without_envelope() {
        assert_eq!(
            map(404, "", Target::Manifest, false),
            Error::ManifestUnknown
        );
        assert_eq!(
            map(404, "not found", Target::Tags, false),
            Error::NameUnknown
        );
        assert_eq!(map(404, "", Target::Blob, false), Error::BlobUnknown);
        assert_eq!(map(401, "", Target::Blob, false), Error::Unauthorized);
        assert_eq!(
            map(401, "", Target::Manifest, true),
            Error::IncorrectCredentials
        );
        assert_eq!(
            map(429, "", Target::Manifest, false),
            Error::TooManyRequests
        );
        assert_eq!(
            map(500, "<html>\n  oops  </html>", Target::Manifest, false),
            Error::Status {
                status: 500,
                code: String::new(),
                message: "<html> oops </html>".to_string()
            }
        );
        assert_eq!(
            map(404, "", Target::Token, false),
            Error::Status {
                status: 404,
                code: String::new(),
                message: String::new()
            }
        );
    }

    #[test]
    fn unknown_codes_keep_code_and_message() {
        let err = map(500, &envelope("unknown"), Target::Manifest, false);
        assert_eq!(
            err,
            Error::Status {
                status: 500,
                code: "UNKNOWN".to_string(),
                message: "some message".to_string()
            }
        );
        assert_eq!(err.to_string(), "unknown: some message");
        assert!(!err.is_temporary());
        let err = map(503, &envelope("UNAVAILABLE"), Target::Manifest, false);
        assert!(err.is_temporary());
        assert_eq!(err.to_string(), "unavailable: some message");
    }

    #[test]
    fn retry_classes_follow_status_and_code() {
        let statuses = [
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (501, false),
            (400, false),
        ];
        for (status, retried) in statuses {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT);
            let failure = from_response(code, &HeaderMap::new(), b"", Target::Manifest, false);
            assert_eq!(failure.retry == RetryClass::Server, retried, "{status}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        let failure = from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"",
            Target::Manifest,
            false,
        );
        assert_eq!(
            failure.retry,
            RetryClass::Throttle(Some(Duration::from_secs(7)))
        );
        let failure = from_response(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            b"",
            Target::Manifest,
            false,
        );
        assert_eq!(failure.retry, RetryClass::Throttle(None));
        let failure = from_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            envelope("UNKNOWN").as_bytes(),
            Target::Manifest,
            false,
        );
        assert_eq!(failure.retry, RetryClass::Never);
    }

    #[test]
    fn display_texts() {
        assert!(Error::IncorrectCredentials
            .to_string()
            .contains("incorrect username or password"));
        assert_eq!(
            Error::NotV2 {
                url: "https://r.example/v2/".to_string(),
                status: 404
            }
            .to_string(),
            r#"endpoint "https://r.example/v2/" does not support v2 API (got 404)"#
        );
        assert_eq!(
            Error::UnsupportedManifest("application/x".to_string()).to_string(),
            "unsupported image manifest type: application/x"
        );
        let mismatch = Error::DigestMismatch {
            media_type: media_types::DOCKER_SCHEMA2.to_string(),
            expected: "sha256:a".to_string(),
            actual: "sha256:b".to_string(),
        };
        assert_eq!(
            mismatch.to_string(),
            "content integrity error: the manifest retrieved (media type: application/vnd.docker.distribution.manifest.v2+json) with digest sha256:a does not match the digest calculated from the content sha256:b"
        );
        let mismatch = Error::DigestMismatch {
            media_type: media_types::DOCKER_SCHEMA1_SIGNED.to_string(),
            expected: "sha256:a".to_string(),
            actual: "sha256:b".to_string(),
        };
        assert_eq!(
            mismatch.to_string(),
            "content integrity error: the schema 1 manifest retrieved with digest sha256:a does not match the digest calculated from the content sha256:b"
        );
        assert_eq!(
            Error::Status {
                status: 502,
                code: String::new(),
                message: String::new()
            }
            .to_string(),
            "received unexpected HTTP status: 502 Bad Gateway"
        );
    }

    #[test]
    fn envelope_parsing_is_lenient() {
        assert_eq!(parse_envelope(b"not json"), None);
        assert_eq!(parse_envelope(br#"{"errors":[]}"#), None);
        assert_eq!(
            parse_envelope(br#"{"errors":[{"code":"denied","message":null}]}"#),
            Some(("DENIED".to_string(), String::new()))
        );
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let plain = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(tls_failure(&plain), Some(TlsFailure::PlainHttp));
        let cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(tls_failure(&cert), Some(TlsFailure::Other));
        assert!(chain_text(&cert).contains("invalid peer certificate"));
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(tls_failure(&refused), None);
    }
}
