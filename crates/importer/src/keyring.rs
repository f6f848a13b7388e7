//! Registry credentials as podman, skopeo and the kubelet read them: containers-auth.json(5),
//! Docker's `config.json`, and the legacy `.dockercfg` object (the `auths` map's content at the
//! top level), which is also the payload of a `kubernetes.io/dockercfg` Secret.
//!
//! Keys are normalized to a host (`host[:port]`, lower-cased, Docker Hub aliases folded into
//! `docker.io`, optionally `*.`-wildcarded) and a repository path prefix. Lookups pick the entry
//! with the longest path prefix on `/` boundaries; ties go to the entry added first.

use crate::hosts::split_port;
use std::borrow::Cow;

use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The one name every Docker Hub key and lookup is folded into, so a secret written for
/// `https://index.docker.io/v1/` serves an import from `docker.io/library/busybox`.
const DOCKER_HUB: &str = "docker.io";

const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Top-level settings of Docker's `config.json`. A `config.json` that has never seen a
/// `docker login` has no `auths`, and must not be mistaken for a legacy `.dockercfg` whose
/// keys are registries.
const CONFIG_JSON_SETTINGS: &[&str] = &[
    "credHelpers",
    "credsStore",
    "HttpHeaders",
    "psFormat",
    "imagesFormat",
    "pluginsFormat",
    "statsFormat",
    "servicesFormat",
    "serviceInspectFormat",
    "secretFormat",
    "configFormat",
    "nodesFormat",
    "networksFormat",
    "volumesFormat",
    "detachKeys",
    "proxies",
    "currentContext",
    "cliPluginsExtraDirs",
    "plugins",
    "aliases",
    "features",
    "experimental",
    "stackOrchestrator",
    "kubernetes",
];

/// Some tools write `auth` without its trailing `=`; podman's readers tolerate that, so must we.
const AUTH_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A username and password: the registry client's own type, so lookups hand it over as is
/// (its `Debug` hides the password).
pub use registry_client::Credentials;

/// Credentials keyed by registry host and repository path prefix, in priority order.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    host: HostPattern,
    /// Repository path prefix without surrounding `/`; empty covers the whole host.
    path: String,
    credentials: Credentials,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `host[:port]`, lower-cased.
    Exact(String),
    /// `*.domain[:port]`: exactly one extra DNS label, as the kubelet's keyring matches.
    Wildcard {
        domain: String,
        port: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("invalid registry credentials JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("invalid registry credentials: \"auths\" must be an object")]
    AuthsNotObject,
    #[error("invalid registry credentials for {key:?}: {source}")]
    Entry {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid base64 in the \"auth\" field for {key:?}: {source}")]
    Base64 {
        key: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("the \"auth\" field for {key:?} does not decode to UTF-8 text")]
    NotUtf8 { key: String },
    #[error("the \"auth\" field for {key:?} has no ':' between username and password")]
    MissingColon { key: String },
}

/// One value of an `auths` map. Unknown fields (`email`, `identitytoken`, `registrytoken`) are
/// ignored: identity tokens need an OAuth exchange this importer does not do.
#[derive(Deserialize)]
struct RawAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl RawAuth {
    /// `Ok(None)` for an entry that carries no usable secret (a credential-helper placeholder
    /// `{}` or a token-only entry), which must not shadow a real entry elsewhere.
    fn into_credentials(self, key: &str) -> Result<Option<Credentials>, KeyringError> {
        if let Some(auth) = self
            .auth
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let decoded = AUTH_BASE64
                .decode(auth)
                .map_err(|source| KeyringError::Base64 {
                    key: key.to_owned(),
                    source,
                })?;
            let decoded = String::from_utf8(decoded).map_err(|_| KeyringError::NotUtf8 {
                key: key.to_owned(),
            })?;
            // Passwords may contain ':', usernames may not.
            let (username, password) =
                decoded
                    .split_once(':')
                    .ok_or_else(|| KeyringError::MissingColon {
                        key: key.to_owned(),
                    })?;
            // Some writers NUL-pad the password; Docker and podman strip the padding.
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.trim_matches('\0').to_owned(),
            }));
        }
        let username = self.username.unwrap_or_default();
        let password = self.password.unwrap_or_default();
        if username.is_empty() && password.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials { username, password }))
    }
}

struct ParsedKey {
    host: HostPattern,
    path: String,
    /// Written as a URL (`https://…`), as old `docker login` did.
    is_url: bool,
}

impl Keyring {
    /// Reads a `config.json` / `auth.json` (`{"auths": {...}}`), or a legacy `.dockercfg`
    /// object when there is no `auths` key.
    pub fn from_auth_file(json: &[u8]) -> Result<Keyring, KeyringError> {
        let mut top = parse_object(json)?;
        match top.remove("auths") {
            Some(auths) => Keyring::from_auths_value(auths),
            None => {
                top.retain(|key, _| !CONFIG_JSON_SETTINGS.contains(&key.as_str()));
                Keyring::from_map(top)
            }
        }
    }

    /// Reads a `kubernetes.io/dockercfg` Secret's `.dockercfg` payload: the map itself.
    pub fn from_dockercfg(json: &[u8]) -> Result<Keyring, KeyringError> {
        Keyring::from_map(parse_object(json)?)
    }

    /// Reads a `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` payload.
    pub fn from_dockerconfigjson(json: &[u8]) -> Result<Keyring, KeyringError> {
        let mut top = parse_object(json)?;
        match top.remove("auths") {
            Some(auths) => Keyring::from_auths_value(auths),
            None => Ok(Keyring::default()),
        }
    }

    /// Adds other's entries with lower priority than self's (namespace secrets first, node or
    /// file credentials after).
    pub fn merged_with(mut self, lower: Keyring) -> Keyring {
        self.entries.extend(lower.entries);
        self
    }

    /// The credentials for `registry` (`host[:port]`; Docker Hub aliases are folded into
    /// `docker.io`) and `repository` (a path such as `library/busybox`).
    ///
    /// The most specific matching entry wins: the longest path prefix on `/` boundaries, then an
    /// exact host over a `*.` wildcard; among equally specific entries the first added wins.
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<Credentials> {
        let host = normalize_host(registry.trim());
        let repository = repository.trim_matches('/');
        // Docker Hub's official images live under `library/`; a caller that passed the short
        // form must still find credentials stored for `docker.io/library`.
        let repository: Cow<'_, str> =
            if host == DOCKER_HUB && !repository.is_empty() && !repository.contains('/') {
                Cow::Owned(format!("library/{repository}"))
            } else {
                Cow::Borrowed(repository)
            };

        let mut best: Option<(&Entry, (usize, bool))> = None;
        for entry in &self.entries {
            if !entry.host.matches(&host) || !path_covers(&entry.path, &repository) {
                continue;
            }
            let rank = (
                entry.path.len(),
                matches!(entry.host, HostPattern::Exact(_)),
            );
            let better = match &best {
                None => true,
                Some((_, best_rank)) => rank > *best_rank,
            };
            if better {
                best = Some((entry, rank));
            }
        }
        best.map(|(entry, _)| entry.credentials.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn from_auths_value(auths: Value) -> Result<Keyring, KeyringError> {
        match auths {
            Value::Object(map) => Keyring::from_map(map),
            // `"auths": null` is what Go writes for a nil map.
            Value::Null => Ok(Keyring::default()),
            _ => Err(KeyringError::AuthsNotObject),
        }
    }

    fn from_map(map: Map<String, Value>) -> Result<Keyring, KeyringError> {
        let mut parsed: Vec<(bool, Entry)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let raw: RawAuth =
                serde_json::from_value(value).map_err(|source| KeyringError::Entry {
                    key: key.clone(),
                    source,
                })?;
            let Some(credentials) = raw.into_credentials(&key)? else {
                continue;
            };
            // A key that names no host can never match a lookup; skipping it keeps one odd
            // entry from failing a whole secret.
            let Some(ParsedKey { host, path, is_url }) = parse_key(&key) else {
                continue;
            };
            parsed.push((
                is_url,
                Entry {
                    host,
                    path,
                    credentials,
                },
            ));
        }
        // containers/image consults plain keys before URL-style ones when both name the same
        // registry; a stable sort keeps file order within each group.
        parsed.sort_by_key(|(is_url, _)| *is_url);
        Ok(Keyring {
            entries: parsed.into_iter().map(|(_, entry)| entry).collect(),
        })
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == host,
            HostPattern::Wildcard { domain, port } => {
                let (name, target_port) = split_port(host);
                if target_port != port.as_deref() {
                    return false;
                }
                name.strip_suffix(domain.as_str())
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            }
        }
    }
}

fn parse_object(json: &[u8]) -> Result<Map<String, Value>, KeyringError> {
    serde_json::from_slice(json).map_err(KeyringError::Json)
}

fn parse_key(key: &str) -> Option<ParsedKey> {
    let key = key.trim();
    let (rest, is_url) = match strip_scheme(key) {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    // `/v1/` and `/v2/` are registry API roots that old `docker login` wrote into keys
    // (`https://index.docker.io/v1/`); they name no repository.
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    let host = normalize_host(host);
    if host.is_empty() {
        return None;
    }
    let host = if let Some(domain_and_port) = host.strip_prefix("*.") {
        if domain_and_port.is_empty() || domain_and_port.contains('*') {
            return None;
        }
        let (domain, port) = split_port(domain_and_port);
        HostPattern::Wildcard {
            domain: domain.to_owned(),
            port: port.map(str::to_owned),
        }
    } else if host.contains('*') {
        // Only a leading `*.` is a wildcard; anything else could never match a real host.
        return None;
    } else {
        HostPattern::Exact(host)
    };
    Some(ParsedKey {
        host,
        path: path.to_owned(),
        is_url,
    })
}

fn strip_scheme(key: &str) -> Option<&str> {
    ["https://", "http://"].iter().find_map(|scheme| {
        let head = key.get(..scheme.len())?;
        if head.eq_ignore_ascii_case(scheme) {
            key.get(scheme.len()..)
        } else {
            None
        }
    })
}

fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_owned()
    } else {
        host
    }
}

/// Whether `prefix` is `repository` or one of its ancestors, on `/` boundaries.
fn path_covers(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)
    }

    fn creds(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    fn auth_entry(username: &str, password: &str) -> Value {
        serde_json::json!({ "auth": b64(&format!("{username}:{password}")) })
    }

    fn auth_file(pairs: &[(&str, Value)]) -> Keyring {
        let mut auths = Map::new();
        for (key, value) in pairs {
            auths.insert((*key).to_owned(), value.clone());
        }
        let doc = serde_json::json!({ "auths": Value::Object(auths) });
        Keyring::from_auth_file(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn host_key() {
        let ring = auth_file(&[("quay.io", auth_entry("u", "p"))]);
        assert_eq!(ring.lookup("quay.io", "org/app"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("QUAY.IO", "org/app"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("quay.io:443", "org/app"), None);
        assert_eq!(ring.lookup("example.com", "org/app"), None);
    }

    #[test]
    fn host_and_port_key() {
        let ring = auth_file(&[("localhost:5000", auth_entry("u", "p"))]);
        assert_eq!(ring.lookup("localhost:5000", "app"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("localhost", "app"), None);
        assert_eq!(ring.lookup("localhost:5001", "app"), None);
    }

    #[test]
    fn host_and_path_key() {
        let ring = auth_file(&[("quay.io/org/app", auth_entry("u", "p"))]);
        assert_eq!(ring.lookup("quay.io", "org/app"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("quay.io", "org/app/sub"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("quay.io", "org/other"), None);
        assert_eq!(ring.lookup("quay.io", "org"), None);
    }

    #[test]
    fn legacy_url_keys() {
        let ring = auth_file(&[
            ("http://registry.local/v2/", auth_entry("a", "1")),
            ("https://quay.io", auth_entry("b", "2")),
            ("https://internal:5000/v1/", auth_entry("c", "3")),
            ("HTTPS://upper.example.com/", auth_entry("d", "4")),
        ]);
        assert_eq!(ring.lookup("registry.local", "x/y"), Some(creds("a", "1")));
        assert_eq!(ring.lookup("quay.io", "x/y"), Some(creds("b", "2")));
        assert_eq!(ring.lookup("internal:5000", "x"), Some(creds("c", "3")));
        assert_eq!(ring.lookup("upper.example.com", "x"), Some(creds("d", "4")));
    }

    #[test]
    fn url_key_with_repository_path() {
        let ring = auth_file(&[("https://quay.io/org", auth_entry("u", "p"))]);
        assert_eq!(ring.lookup("quay.io", "org/app"), Some(creds("u", "p")));
        assert_eq!(ring.lookup("quay.io", "other/app"), None);
    }

    #[test]
    fn docker_hub_aliases() {
        for key in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
            "index.docker.io/v1/",
        ] {
            let ring = auth_file(&[(key, auth_entry("hub", "pw"))]);
            assert_eq!(
                ring.lookup("docker.io", "library/busybox"),
                Some(creds("hub", "pw")),
                "key {key}"
            );
            assert_eq!(
                ring.lookup("index.docker.io", "library/busybox"),
                Some(creds("hub", "pw")),
                "key {key}"
            );
        }
    }

    #[test]
    fn docker_hub_short_repository_is_under_library() {
        let ring = auth_file(&[("docker.io/library", auth_entry("lib", "pw"))]);
        assert_eq!(
            ring.lookup("docker.io", "busybox"),
            Some(creds("lib", "pw"))
        );
        assert_eq!(ring.lookup("docker.io", "someone/busybox"), None);
    }

    #[test]
    fn longest_path_wins() {
        let ring = auth_file(&[
            ("quay.io", auth_entry("host", "1")),
            ("quay.io/org/app", auth_entry("repo", "3")),
            ("quay.io/org", auth_entry("org", "2")),
        ]);
        assert_eq!(ring.lookup("quay.io", "org/app"), Some(creds("repo", "3")));
        assert_eq!(ring.lookup("quay.io", "org/other"), Some(creds("org", "2")));
        assert_eq!(
            ring.lookup("quay.io", "elsewhere/app"),
            Some(creds("host", "1"))
        );
    }

    #[test]
    fn path_matches_on_component_boundaries() {
        let ring = auth_file(&[("reg.io/a/b", auth_entry("ab", "1"))]);
        assert_eq!(ring.lookup("reg.io", "a/bc"), None);
        assert_eq!(ring.lookup("reg.io", "a/b"), Some(creds("ab", "1")));
        assert_eq!(ring.lookup("reg.io", "a/b/c"), Some(creds("ab", "1")));

        let ring = ring.merged_with(auth_file(&[("reg.io", auth_entry("host", "2"))]));
        assert_eq!(ring.lookup("reg.io", "a/bc"), Some(creds("host", "2")));
    }

    #[test]
    fn plain_key_beats_url_key_for_the_same_registry() {
        let ring = auth_file(&[
            ("https://quay.io/v1/", auth_entry("url", "1")),
            ("quay.io", auth_entry("plain", "2")),
        ]);
        assert_eq!(ring.lookup("quay.io", "a/b"), Some(creds("plain", "2")));
    }

    #[test]
    fn merged_with_keeps_priority() {
        let high = auth_file(&[("quay.io", auth_entry("namespace", "1"))]);
        let low = auth_file(&[
            ("quay.io", auth_entry("node", "2")),
            ("quay.io/org", auth_entry("node-org", "3")),
            ("ghcr.io", auth_entry("node-ghcr", "4")),
        ]);
        let ring = high.merged_with(low);
        assert_eq!(
            ring.lookup("quay.io", "other/app"),
            Some(creds("namespace", "1"))
        );
        // A more specific entry wins even from a lower-priority source.
        assert_eq!(
            ring.lookup("quay.io", "org/app"),
            Some(creds("node-org", "3"))
        );
        assert_eq!(ring.lookup("ghcr.io", "x/y"), Some(creds("node-ghcr", "4")));
    }

    #[test]
    fn wildcard_matches_one_label() {
        let ring = auth_file(&[("*.example.com", auth_entry("wild", "1"))]);
        assert_eq!(ring.lookup("a.example.com", "x"), Some(creds("wild", "1")));
        assert_eq!(ring.lookup("A.Example.com", "x"), Some(creds("wild", "1")));
        assert_eq!(ring.lookup("a.b.example.com", "x"), None);
        assert_eq!(ring.lookup("example.com", "x"), None);
        assert_eq!(ring.lookup("a.example.com:5000", "x"), None);
        assert_eq!(ring.lookup("aexample.com", "x"), None);
    }

    #[test]
    fn wildcard_with_port_and_exact_host_preference() {
        let ring = auth_file(&[
            ("*.example.com:5000", auth_entry("wild", "1")),
            ("b.example.com:5000", auth_entry("exact", "2")),
        ]);
        assert_eq!(
            ring.lookup("a.example.com:5000", "x"),
            Some(creds("wild", "1"))
        );
        assert_eq!(
            ring.lookup("b.example.com:5000", "x"),
            Some(creds("exact", "2"))
        );
        assert_eq!(ring.lookup("a.example.com", "x"), None);
    }

    #[test]
    fn username_and_password_fields() {
        let ring = auth_file(&[(
            "quay.io",
            serde_json::json!({ "username": "user", "password": "secret", "email": "x@y" }),
        )]);
        assert_eq!(ring.lookup("quay.io", "a"), Some(creds("user", "secret")));
    }

    #[test]
    fn auth_field_wins_over_username_and_password() {
        let ring = auth_file(&[(
            "quay.io",
            serde_json::json!({ "auth": b64("from:auth"), "username": "u", "password": "p" }),
        )]);
        assert_eq!(ring.lookup("quay.io", "a"), Some(creds("from", "auth")));
    }

    #[test]
    fn password_keeps_colons_and_loses_nul_padding() {
        let ring = auth_file(&[("quay.io", auth_entry("u", "a:b:c\0\0"))]);
        assert_eq!(ring.lookup("quay.io", "a"), Some(creds("u", "a:b:c")));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let encoded = b64("ab:c");
        let unpadded = encoded.trim_end_matches('=');
        assert_ne!(encoded, unpadded);
        let ring = auth_file(&[("quay.io", serde_json::json!({ "auth": unpadded }))]);
        assert_eq!(ring.lookup("quay.io", "a"), Some(creds("ab", "c")));
    }

    #[test]
    fn token_only_and_empty_entries_are_skipped() {
        let ring = auth_file(&[
            ("quay.io", serde_json::json!({ "identitytoken": "tok" })),
            ("ghcr.io", serde_json::json!({})),
        ]);
        assert!(ring.is_empty());
    }

    #[test]
    fn bad_base64_names_the_key() {
        let doc = br#"{"auths": {"quay.io/org": {"auth": "not base64!"}}}"#;
        let err = Keyring::from_auth_file(doc).unwrap_err();
        assert!(matches!(err, KeyringError::Base64 { ref key, .. } if key == "quay.io/org"));
        assert!(err.to_string().contains("quay.io/org"), "{err}");
    }

    #[test]
    fn missing_colon_names_the_key() {
        let doc = serde_json::json!({ "auths": { "quay.io": { "auth": b64("nocolon") } } });
        let err = Keyring::from_auth_file(doc.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, KeyringError::MissingColon { ref key } if key == "quay.io"));
        assert!(err.to_string().contains("quay.io"), "{err}");
    }

    #[test]
    fn non_utf8_auth_names_the_key() {
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [0xff_u8, b':', b'x'],
        );
        let doc = serde_json::json!({ "auths": { "quay.io": { "auth": encoded } } });
        let err = Keyring::from_auth_file(doc.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, KeyringError::NotUtf8 { ref key } if key == "quay.io"));
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(matches!(
            Keyring::from_auth_file(b"{\"auths\": {"),
            Err(KeyringError::Json(_))
        ));
        assert!(matches!(
            Keyring::from_auth_file(b"[]"),
            Err(KeyringError::Json(_))
        ));
        assert!(matches!(
            Keyring::from_dockercfg(b""),
            Err(KeyringError::Json(_))
        ));
        assert!(matches!(
            Keyring::from_dockerconfigjson(b"{\"auths\": []}"),
            Err(KeyringError::AuthsNotObject)
        ));
    }

    #[test]
    fn entry_of_wrong_shape_names_the_key() {
        let err = Keyring::from_dockercfg(br#"{"quay.io": "user:pass"}"#).unwrap_err();
        assert!(matches!(err, KeyringError::Entry { ref key, .. } if key == "quay.io"));
        assert!(err.to_string().contains("quay.io"), "{err}");

        let err = Keyring::from_auth_file(br#"{"auths": {"ghcr.io": {"auth": 7}}}"#).unwrap_err();
        assert!(matches!(err, KeyringError::Entry { ref key, .. } if key == "ghcr.io"));
    }

    #[test]
    fn legacy_dockercfg_in_an_auth_file() {
        let doc = serde_json::json!({ "https://index.docker.io/v1/": auth_entry("hub", "pw") });
        let ring = Keyring::from_auth_file(doc.to_string().as_bytes()).unwrap();
        assert_eq!(
            ring.lookup("docker.io", "library/busybox"),
            Some(creds("hub", "pw"))
        );
    }

    #[test]
    fn config_json_without_auths_is_empty() {
        let doc =
            br#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}, "psFormat": "x"}"#;
        let ring = Keyring::from_auth_file(doc).unwrap();
        assert!(ring.is_empty());
        assert!(Keyring::from_auth_file(b"{}").unwrap().is_empty());
        assert!(Keyring::from_auth_file(br#"{"auths": null}"#)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn dockercfg_secret_payload() {
        let doc = serde_json::json!({
            "quay.io": { "auth": b64("u:p"), "email": "e@x" },
            "registry.local:5000": { "username": "a", "password": "b" },
        });
        let ring = Keyring::from_dockercfg(doc.to_string().as_bytes()).unwrap();
        assert_eq!(ring.lookup("quay.io", "a/b"), Some(creds("u", "p")));
        assert_eq!(
            ring.lookup("registry.local:5000", "a"),
            Some(creds("a", "b"))
        );
    }

    #[test]
    fn dockerconfigjson_secret_payload() {
        let doc = serde_json::json!({ "auths": { "quay.io": auth_entry("u", "p") } });
        let ring = Keyring::from_dockerconfigjson(doc.to_string().as_bytes()).unwrap();
        assert_eq!(ring.lookup("quay.io", "a/b"), Some(creds("u", "p")));
        assert!(Keyring::from_dockerconfigjson(b"{}").unwrap().is_empty());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let ring = auth_file(&[("quay.io", auth_entry("visible-user", "hidden-secret"))]);
        let shown = format!("{ring:?}");
        assert!(shown.contains("visible-user"));
        assert!(!shown.contains("hidden-secret"));
    }

    #[test]
    fn default_keyring_is_empty() {
        let ring = Keyring::default();
        assert!(ring.is_empty());
        assert_eq!(ring.lookup("quay.io", "a"), None);
    }
}
