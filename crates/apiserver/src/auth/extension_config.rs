//! The `kube-system/extension-apiserver-authentication` ConfigMap (spec §8.4 "Config
//! source"): kube-apiserver publishes there the CA of client certificates and the front-proxy
//! (request-header) settings every aggregated server must trust. We read it at start-up and
//! follow it, so a CA rotation reaches the running authenticators without a restart. Flags win
//! over the ConfigMap, as in k8s.io/apiserver.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::request_header::{RequestHeaderAuthenticator, RequestHeaderSettings};
use super::x509::{CaBundle, DynamicCa, X509Error};
use crate::kube_cache::KubeCache;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";

const CLIENT_CA: &str = "client-ca-file";
const REQUEST_HEADER_CA: &str = "requestheader-client-ca-file";
const ALLOWED_NAMES: &str = "requestheader-allowed-names";
const USERNAME_HEADERS: &str = "requestheader-username-headers";
const UID_HEADERS: &str = "requestheader-uid-headers";
const GROUP_HEADERS: &str = "requestheader-group-headers";
const EXTRA_HEADER_PREFIXES: &str = "requestheader-extra-headers-prefix";

#[derive(Debug, thiserror::Error)]
pub enum ExtensionConfigError {
    /// `origin` is the ConfigMap key or the flag the PEM came from.
    #[error("{origin}: {source}")]
    Ca {
        origin: &'static str,
        // Boxed: rustls' errors inside are large, and this error travels in every Result here.
        #[source]
        source: Box<X509Error>,
    },
    #[error("{key}: not a JSON array of strings: {source}")]
    List {
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// What the flags set; each part replaces the ConfigMap's.
#[derive(Clone, Debug, Default)]
pub struct FlagOverrides {
    /// The PEM of `--client-ca-file`.
    pub client_ca: Option<String>,
    /// The `--requestheader-*` flags, when `--requestheader-client-ca-file` is given.
    pub request_header: Option<RequestHeaderSettings>,
}

/// The client CA and the request-header settings to use, from the ConfigMap's data and the
/// flags. A key missing from the ConfigMap turns its feature off unless a flag sets it; header
/// lists missing next to a request-header CA take kube's defaults.
pub fn settings_from(
    data: &BTreeMap<String, String>,
    flags: &FlagOverrides,
) -> Result<(Option<CaBundle>, Option<RequestHeaderSettings>), ExtensionConfigError> {
    let client_ca = match &flags.client_ca {
        Some(pem) => Some(parse_ca("--client-ca-file", pem)?),
        None => configured(data, CLIENT_CA)
            .map(|pem| parse_ca(CLIENT_CA, pem))
            .transpose()?,
    };
    let request_header = match &flags.request_header {
        Some(settings) => Some(settings.clone()),
        None => request_header_from(data)?,
    };
    Ok((client_ca, request_header))
}

fn request_header_from(
    data: &BTreeMap<String, String>,
) -> Result<Option<RequestHeaderSettings>, ExtensionConfigError> {
    let Some(pem) = configured(data, REQUEST_HEADER_CA) else {
        return Ok(None);
    };
    let defaults = RequestHeaderSettings::kube_defaults();
    Ok(Some(RequestHeaderSettings {
        ca: Some(Arc::new(parse_ca(REQUEST_HEADER_CA, pem)?)),
        // No list means any CN the CA signed, as in kube.
        allowed_names: list(data, ALLOWED_NAMES)?.unwrap_or_default(),
        username_headers: list(data, USERNAME_HEADERS)?.unwrap_or(defaults.username_headers),
        uid_headers: list(data, UID_HEADERS)?.unwrap_or(defaults.uid_headers),
        group_headers: list(data, GROUP_HEADERS)?.unwrap_or(defaults.group_headers),
        extra_header_prefixes: list(data, EXTRA_HEADER_PREFIXES)?
            .unwrap_or(defaults.extra_header_prefixes),
    }))
}

/// A key's value, unless missing or blank.
fn configured<'a>(data: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    data.get(key)
        .map(String::as_str)
        .filter(|value| !value.trim().is_empty())
}

fn parse_ca(origin: &'static str, pem: &str) -> Result<CaBundle, ExtensionConfigError> {
    CaBundle::from_pem(pem).map_err(|source| ExtensionConfigError::Ca {
        origin,
        source: Box::new(source),
    })
}

/// A JSON-encoded string array; `None` when missing, blank or `null`.
fn list(
    data: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<Vec<String>>, ExtensionConfigError> {
    let Some(text) = configured(data, key) else {
        return Ok(None);
    };
    serde_json::from_str(text).map_err(|source| ExtensionConfigError::List { key, source })
}

/// Reads the ConfigMap's data once (start-up); `None` when the ConfigMap does not exist. What
/// a failure means is the caller's choice (`--authentication-tolerate-lookup-failure`).
pub async fn lookup_once(
    client: &kube::Client,
) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE);
    let config_map = api.get_opt(NAME).await?;
    Ok(config_map.map(|cm| cm.data.unwrap_or_default()))
}

/// Applies the ConfigMap to the authenticators whenever it changes in `cache` (ConfigMaps of
/// `kube-system`). Invalid contents leave the previous settings in place; so does a ConfigMap
/// that disappears. The task holds `cache`, so it runs until the handle is aborted.
pub fn follow(
    cache: KubeCache<ConfigMap>,
    client_ca: DynamicCa,
    request_header: RequestHeaderAuthenticator,
    flags: FlagOverrides,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = cache.subscribe();
        let mut last_seen: Option<BTreeMap<String, String>> = None;
        loop {
            // Before the first list the cache is empty, which must not read as "no ConfigMap".
            if cache.is_synced() {
                if let Some(data) = current_data(&cache) {
                    if last_seen.as_ref() != Some(&data) {
                        apply(&data, &flags, &client_ca, &request_header);
                        last_seen = Some(data);
                    }
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    })
}

fn current_data(cache: &KubeCache<ConfigMap>) -> Option<BTreeMap<String, String>> {
    let Some(config_map) = cache.get(NAMESPACE, NAME) else {
        tracing::warn!(
            "ConfigMap {NAMESPACE}/{NAME} not found; keeping the current authentication settings"
        );
        return None;
    };
    Some(config_map.data.clone().unwrap_or_default())
}

fn apply(
    data: &BTreeMap<String, String>,
    flags: &FlagOverrides,
    client_ca: &DynamicCa,
    request_header: &RequestHeaderAuthenticator,
) {
    match settings_from(data, flags) {
        Ok((ca, settings)) => {
            apply_client_ca(client_ca, ca);
            apply_request_header(request_header, settings.unwrap_or_default());
        }
        Err(error) => tracing::warn!(
            %error,
            "invalid ConfigMap {NAMESPACE}/{NAME}; keeping the current authentication settings"
        ),
    }
}

fn apply_client_ca(slot: &DynamicCa, new: Option<CaBundle>) {
    let current = slot.current();
    let change = ca_change(
        current.as_deref().map(CaBundle::pem),
        new.as_ref().map(CaBundle::pem),
    );
    if let Some(change) = change {
        tracing::info!("client CA {change}");
        slot.set(new);
    }
}

fn apply_request_header(authenticator: &RequestHeaderAuthenticator, new: RequestHeaderSettings) {
    let current = authenticator.settings();
    let ca = ca_change(
        current.ca.as_deref().map(CaBundle::pem),
        new.ca.as_deref().map(CaBundle::pem),
    );
    let lists_changed = header_lists(&current) != header_lists(&new);
    if ca.is_none() && !lists_changed {
        return;
    }
    match ca {
        Some(change) => tracing::info!("request-header CA {change}"),
        None => tracing::info!("request-header settings changed"),
    }
    authenticator.update(new);
}

/// How a CA changed between two PEMs, if it did.
fn ca_change(current: Option<&str>, new: Option<&str>) -> Option<&'static str> {
    match (current, new) {
        (None, None) => None,
        (Some(a), Some(b)) if a == b => None,
        (None, Some(_)) => Some("enabled"),
        (Some(_), None) => Some("disabled"),
        (Some(_), Some(_)) => Some("rotated"),
    }
}

fn header_lists(settings: &RequestHeaderSettings) -> [&[String]; 5] {
    [
        settings.allowed_names.as_slice(),
        settings.username_headers.as_slice(),
        settings.uid_headers.as_slice(),
        settings.group_headers.as_slice(),
        settings.extra_header_prefixes.as_slice(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::x509::testing::make_ca;

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_keys_turn_features_off() {
        let (client_ca, request_header) =
            settings_from(&BTreeMap::new(), &FlagOverrides::default()).expect("settings");
        assert!(client_ca.is_none());
        assert!(request_header.is_none());
        let blank = data(&[(CLIENT_CA, "  \n"), (REQUEST_HEADER_CA, "")]);
        let (client_ca, request_header) =
            settings_from(&blank, &FlagOverrides::default()).expect("settings");
        assert!(client_ca.is_none() && request_header.is_none());
    }

    #[test]
    fn config_map_gives_both_cas_and_the_header_lists() {
        let client = make_ca("client-ca");
        let proxy = make_ca("front-proxy-ca");
        let config = data(&[
            (CLIENT_CA, client.pem.as_str()),
            (REQUEST_HEADER_CA, proxy.pem.as_str()),
            (ALLOWED_NAMES, r#"["front-proxy-client"]"#),
            (USERNAME_HEADERS, r#"["X-Remote-User"]"#),
            (UID_HEADERS, r#"["X-Remote-Uid"]"#),
            (GROUP_HEADERS, r#"["X-Remote-Group"]"#),
            (
                EXTRA_HEADER_PREFIXES,
                r#"["X-Remote-Extra-", "X-Other-Extra-"]"#,
            ),
        ]);
        let (client_ca, request_header) =
            settings_from(&config, &FlagOverrides::default()).expect("settings");
        assert_eq!(client_ca.expect("client CA").pem(), client.pem);
        let settings = request_header.expect("request header");
        assert_eq!(settings.ca.expect("proxy CA").pem(), proxy.pem);
        assert_eq!(settings.allowed_names, ["front-proxy-client"]);
        assert_eq!(settings.username_headers, ["X-Remote-User"]);
        assert_eq!(settings.uid_headers, ["X-Remote-Uid"]);
        assert_eq!(settings.group_headers, ["X-Remote-Group"]);
        assert_eq!(
            settings.extra_header_prefixes,
            ["X-Remote-Extra-", "X-Other-Extra-"]
        );
    }

    #[test]
    fn missing_header_lists_take_kube_defaults() {
        let proxy = make_ca("front-proxy-ca");
        let config = data(&[
            (REQUEST_HEADER_CA, proxy.pem.as_str()),
            (USERNAME_HEADERS, r#"["X-Proxy-User"]"#),
            (GROUP_HEADERS, "null"),
        ]);
        let (client_ca, request_header) =
            settings_from(&config, &FlagOverrides::default()).expect("settings");
        assert!(client_ca.is_none());
        let settings = request_header.expect("request header");
        let defaults = RequestHeaderSettings::kube_defaults();
        assert!(settings.allowed_names.is_empty());
        assert_eq!(settings.username_headers, ["X-Proxy-User"]);
        assert_eq!(settings.uid_headers, defaults.uid_headers);
        assert_eq!(settings.group_headers, defaults.group_headers);
        assert_eq!(
            settings.extra_header_prefixes,
            defaults.extra_header_prefixes
        );
    }

    #[test]
    fn flags_override_the_config_map() {
        let from_map = make_ca("map-ca");
        let from_flag = make_ca("flag-ca");
        let config = data(&[
            (CLIENT_CA, from_map.pem.as_str()),
            (REQUEST_HEADER_CA, from_map.pem.as_str()),
            (ALLOWED_NAMES, r#"["from-map"]"#),
        ]);
        let flags = FlagOverrides {
            client_ca: Some(from_flag.pem.clone()),
            request_header: Some(RequestHeaderSettings {
                allowed_names: vec!["from-flag".into()],
                ..RequestHeaderSettings::kube_defaults()
            }),
        };
        let (client_ca, request_header) = settings_from(&config, &flags).expect("settings");
        assert_eq!(client_ca.expect("client CA").pem(), from_flag.pem);
        let settings = request_header.expect("request header");
        assert_eq!(settings.allowed_names, ["from-flag"]);
        assert!(settings.ca.is_none(), "the flag's settings are taken whole");
    }

    #[test]
    fn malformed_values_are_errors_naming_the_key() {
        let proxy = make_ca("front-proxy-ca");
        for bad in [
            r#""X-Remote-User""#,
            "[X-Remote-User]",
            "[1]",
            r#"{"a": 1}"#,
        ] {
            let config = data(&[
                (REQUEST_HEADER_CA, proxy.pem.as_str()),
                (USERNAME_HEADERS, bad),
            ]);
            let error =
                settings_from(&config, &FlagOverrides::default()).expect_err("malformed list");
            assert!(
                matches!(
                    error,
                    ExtensionConfigError::List {
                        key: USERNAME_HEADERS,
                        ..
                    }
                ),
                "{bad}: {error}"
            );
        }
        let config = data(&[(CLIENT_CA, "not a certificate")]);
        let error = settings_from(&config, &FlagOverrides::default()).expect_err("bad PEM");
        assert!(matches!(
            error,
            ExtensionConfigError::Ca {
                origin: CLIENT_CA,
                ..
            }
        ));
    }

    #[test]
    fn ca_changes_are_named() {
        assert_eq!(ca_change(None, None), None);
        assert_eq!(ca_change(Some("a"), Some("a")), None);
        assert_eq!(ca_change(None, Some("a")), Some("enabled"));
        assert_eq!(ca_change(Some("a"), None), Some("disabled"));
        assert_eq!(ca_change(Some("a"), Some("b")), Some("rotated"));
    }

    #[test]
    fn applying_swaps_only_what_changed() {
        let first = make_ca("first");
        let second = make_ca("second");
        let slot = DynamicCa::new(None);
        let authenticator = RequestHeaderAuthenticator::new(RequestHeaderSettings::default());
        let config = data(&[
            (CLIENT_CA, first.pem.as_str()),
            (REQUEST_HEADER_CA, first.pem.as_str()),
        ]);
        apply(&config, &FlagOverrides::default(), &slot, &authenticator);
        let installed = slot.current().expect("client CA installed");
        assert_eq!(installed.pem(), first.pem);
        let settings = authenticator.settings();
        assert_eq!(settings.username_headers, ["X-Remote-User"]);

        // The same contents again keep the very same objects.
        apply(&config, &FlagOverrides::default(), &slot, &authenticator);
        assert!(Arc::ptr_eq(&installed, &slot.current().expect("client CA")));
        assert!(Arc::ptr_eq(&settings, &authenticator.settings()));

        let rotated = data(&[(CLIENT_CA, second.pem.as_str())]);
        apply(&rotated, &FlagOverrides::default(), &slot, &authenticator);
        assert_eq!(slot.current().expect("client CA").pem(), second.pem);
        assert!(
            authenticator.settings().ca.is_none(),
            "request header turned off"
        );

        let invalid = data(&[(CLIENT_CA, "garbage")]);
        apply(&invalid, &FlagOverrides::default(), &slot, &authenticator);
        assert_eq!(slot.current().expect("previous CA kept").pem(), second.pem);
    }
}
