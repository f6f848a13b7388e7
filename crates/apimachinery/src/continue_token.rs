//! kube's continue tokens (spec §4.3): base64url (no padding) of
//! `{"v":"meta.k8s.io/v1","rv":<list revision>,"start":"<key after the resource prefix>\u0000"}`,
//! interchangeable with kube-apiserver's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

const VERSION: &str = "meta.k8s.io/v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision all pages are read at; -1 means "continue at the latest revision".
    pub revision: i64,
    /// The key (relative to the resource prefix) to start at, inclusive.
    pub start: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: String,
    rv: i64,
    start: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContinueError {
    /// kube's `invalid continue token: continue key is not valid: ...` cases.
    #[error("continue key is not valid: {0}")]
    Invalid(&'static str),
}

impl ContinueToken {
    /// The token for the page after the one that ended at `last_key` (relative key).
    pub fn after(revision: i64, last_key: &str) -> Self {
        ContinueToken {
            revision,
            start: format!("{last_key}\u{0}"),
        }
    }

    pub fn encode(&self) -> String {
        let wire = Wire {
            v: VERSION.to_string(),
            rv: self.revision,
            start: self.start.clone(),
        };
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(token: &str) -> Result<Self, ContinueError> {
        let raw = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| ContinueError::Invalid("invalid base64"))?;
        let wire: Wire =
            serde_json::from_slice(&raw).map_err(|_| ContinueError::Invalid("invalid JSON"))?;
        if wire.v != VERSION {
            return Err(ContinueError::Invalid(
                "unrecognized continue token version",
            ));
        }
        if wire.rv == 0 {
            return Err(ContinueError::Invalid(
                "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            ));
        }
        if wire.start.is_empty() {
            return Err(ContinueError::Invalid("encoded start key empty"));
        }
        if !path_is_clean(&wire.start) {
            return Err(ContinueError::Invalid("path traversal attempt detected"));
        }
        Ok(ContinueToken {
            revision: wire.rv,
            start: wire.start,
        })
    }
}

/// kube refuses start keys that `path.Clean` would change in a way that climbs out (`..`).
fn path_is_clean(start: &str) -> bool {
    !start.split('/').any(|seg| seg == "..") && !start.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_kube_encoding() {
        let t = ContinueToken::after(123, "ns1/foo");
        let encoded = t.encode();
        let json = URL_SAFE_NO_PAD.decode(&encoded).expect("base64");
        assert_eq!(
            std::str::from_utf8(&json).expect("utf8"),
            r#"{"v":"meta.k8s.io/v1","rv":123,"start":"ns1/foo\u0000"}"#
        );
        assert_eq!(ContinueToken::decode(&encoded), Ok(t));
    }

    #[test]
    fn rejects_bad_tokens() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let cases = [
            "!!!".to_string(),
            enc("not json"),
            enc(r#"{"v":"other/v1","rv":1,"start":"a"}"#),
            enc(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#),
            enc(r#"{"v":"meta.k8s.io/v1","rv":1,"start":""}"#),
            enc(r#"{"v":"meta.k8s.io/v1","rv":1,"start":"../x"}"#),
        ];
        for token in cases {
            assert!(ContinueToken::decode(&token).is_err(), "{token} accepted");
        }
        let latest = enc(r#"{"v":"meta.k8s.io/v1","rv":-1,"start":"a\u0000"}"#);
        assert_eq!(ContinueToken::decode(&latest).map(|t| t.revision), Ok(-1));
    }
}
