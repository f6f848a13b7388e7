//! What the server reads from the cluster it runs in (with `--kubeconfig`, or in a pod): the
//! namespaces' pull Secrets (the `imagestreams/secrets` subresource of spec §7 and the import
//! credentials of §13.4), their LimitRanges (the limits of §15.1 and §15.2) and the Namespaces
//! themselves (kube's NamespaceLifecycle admission, §15.4).
//!
//! Each kind comes from a watch-backed cache ([`KubeCache`]), so resources and strategies read
//! them from memory, as upstream reads its informers: strategies stay free of I/O. The one live
//! request is kube's: a namespace missing from the cache is looked up before a create in it is
//! refused, since it may have been created a moment ago.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::errors::ApiError;
use apimachinery::GroupResource;
use apiserver::admission::NamespaceLifecycle;
use apiserver::kube_cache::KubeCache;
use async_trait::async_trait;
use image_api::limits::{
    Quantity, StorageLimit, StreamLimits, IMAGES, IMAGE_TAGS, LIMIT_TYPE_IMAGE,
    LIMIT_TYPE_IMAGE_STREAM, STORAGE,
};
use importer::keyring::KeyringError;
use importer::Keyring;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KubeQuantity;

use crate::resources::{forbidden, LimitSource, LimitsError};

/// The Secret types that carry registry credentials, and where each keeps them.
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const DOCKERCONFIGJSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKERCFG_KEY: &str = ".dockercfg";
const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";
/// `"true"` hides a pull secret from the image API (spec §7).
pub const EXCLUDE_SECRET_ANNOTATION: &str = "openshift.io/image.excludeSecret";

/// How long a read that needs the pull secrets waits for their caches to load.
const SECRETS_LOAD_WAIT: Duration = Duration::from_secs(5);

/// The cluster's Secrets, LimitRanges and Namespaces, as watch-backed caches.
pub struct ClusterReads {
    client: kube::Client,
    /// One cache per pull-secret type, each watched with a `type=` field selector: the
    /// cluster's other Secrets (service account tokens, TLS keys, Helm releases) are never
    /// held here.
    pull_secrets: [KubeCache<Secret>; 2],
    limit_ranges: KubeCache<LimitRange>,
    namespaces: KubeCache<Namespace>,
}

impl fmt::Debug for ClusterReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterReads")
            .field("secrets_synced", &self.secrets_synced())
            .field("limit_ranges_synced", &self.limit_ranges.is_synced())
            .field("namespaces_synced", &self.namespaces.is_synced())
            .finish_non_exhaustive()
    }
}

impl ClusterReads {
    /// Starts following every namespace's pull Secrets and LimitRanges, and the Namespaces.
    /// Must be called inside a tokio runtime.
    pub fn start(client: kube::Client) -> Arc<ClusterReads> {
        let secrets_of_type = |type_: &str| -> KubeCache<Secret> {
            let selector = format!("type={type_}");
            KubeCache::start_with_fields(kube::Api::all(client.clone()), "secrets", &selector)
        };
        Arc::new(ClusterReads {
            pull_secrets: [
                secrets_of_type(DOCKERCFG),
                secrets_of_type(DOCKERCONFIGJSON),
            ],
            limit_ranges: KubeCache::start(kube::Api::all(client.clone()), "limitranges"),
            namespaces: KubeCache::start(kube::Api::all(client.clone()), "namespaces"),
            client,
        })
    }

    /// Whether every cache has loaded (for `/readyz`).
    pub fn is_synced(&self) -> bool {
        self.secrets_synced() && self.limit_ranges.is_synced() && self.namespaces.is_synced()
    }

    /// Waits until every cache has loaded; false if `timeout` passed first.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let (dockercfg, dockerconfigjson, limit_ranges, namespaces) = tokio::join!(
            self.pull_secrets[0].wait_synced(timeout),
            self.pull_secrets[1].wait_synced(timeout),
            self.limit_ranges.wait_synced(timeout),
            self.namespaces.wait_synced(timeout),
        );
        dockercfg && dockerconfigjson && limit_ranges && namespaces
    }

    fn secrets_synced(&self) -> bool {
        self.pull_secrets.iter().all(KubeCache::is_synced)
    }

    /// Reads of the pull secrets wait a little for their caches; then they answer as an API
    /// server does while its storage is not ready (try again shortly).
    pub async fn require_secrets_loaded(&self) -> Result<(), ApiError> {
        let waits = self
            .pull_secrets
            .iter()
            .map(|cache| cache.wait_synced(SECRETS_LOAD_WAIT));
        if futures::future::join_all(waits)
            .await
            .into_iter()
            .all(|loaded| loaded)
        {
            return Ok(());
        }
        Err(ApiError::ServerTimeout {
            resource: GroupResource::new("", "secrets"),
            operation: "list".to_string(),
            retry_after: 1,
        })
    }

    /// The pull secrets of `namespace` that the image API uses (spec §7), sorted by name.
    pub fn image_secrets(&self, namespace: &str) -> Vec<Arc<Secret>> {
        // "" would list every namespace's.
        if namespace.is_empty() {
            return Vec::new();
        }
        // Each cache answers for its own type only, even if a server ignored the selector.
        let mut secrets: Vec<Arc<Secret>> = self
            .pull_secrets
            .iter()
            .zip([DOCKERCFG, DOCKERCONFIGJSON])
            .flat_map(|(cache, type_)| {
                cache
                    .list(namespace)
                    .into_iter()
                    .filter(move |s| s.type_.as_deref() == Some(type_))
            })
            .filter(|s| is_image_secret(s))
            .collect();
        secrets.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        secrets
    }

    /// The resourceVersion the pull secrets have been read at (the newer of the two caches').
    pub fn secrets_resource_version(&self) -> String {
        self.pull_secrets
            .iter()
            .map(KubeCache::resource_version)
            .max_by_key(|rv| rv.parse::<u64>().unwrap_or(0))
            .unwrap_or_default()
    }

    /// The credentials of the namespace's pull secrets (spec §13.4), if they hold any.
    pub fn keyring(&self, namespace: &str) -> Option<Keyring> {
        keyring_of(&self.image_secrets(namespace))
    }

    /// A live read, for a namespace the cache has not seen (yet).
    async fn live_namespace(&self, name: &str) -> Result<Option<Namespace>, ApiError> {
        kube::Api::<Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| ApiError::Internal(format!("reading namespace {name:?}: {e}")))
    }
}

/// A Secret of a pull-secret type that is not excluded from the image API.
pub fn is_image_secret(secret: &Secret) -> bool {
    let excluded = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXCLUDE_SECRET_ANNOTATION))
        .is_some_and(|v| v == "true");
    !excluded && matches!(secret.type_.as_deref(), Some(DOCKERCFG | DOCKERCONFIGJSON))
}

/// The secrets' credentials in one keyring, earlier secrets first (kube's keyring keeps the
/// order secrets are listed in); `None` when none holds any.
pub fn keyring_of(secrets: &[Arc<Secret>]) -> Option<Keyring> {
    secrets
        .iter()
        .filter_map(|s| secret_keyring(s))
        .reduce(Keyring::merged_with)
        .filter(|k| !k.is_empty())
}

/// One secret's credentials. A payload that does not parse is skipped with a warning, as
/// upstream logs and ignores it, so one broken secret does not cost the others.
fn secret_keyring(secret: &Secret) -> Option<Keyring> {
    type Parse = fn(&[u8]) -> Result<Keyring, KeyringError>;
    let (key, parse): (&str, Parse) = match secret.type_.as_deref() {
        Some(DOCKERCFG) => (DOCKERCFG_KEY, Keyring::from_dockercfg),
        Some(DOCKERCONFIGJSON) => (DOCKERCONFIGJSON_KEY, Keyring::from_dockerconfigjson),
        _ => return None,
    };
    let payload = secret.data.as_ref()?.get(key).filter(|p| !p.0.is_empty())?;
    match parse(&payload.0) {
        Ok(keyring) => Some(keyring),
        Err(e) => {
            tracing::warn!(
                namespace = secret.metadata.namespace.as_deref().unwrap_or(""),
                secret = secret.metadata.name.as_deref().unwrap_or(""),
                error = %e,
                "ignoring a pull secret whose credentials do not parse"
            );
            None
        }
    }
}

/// Limits come from memory. Before the LimitRanges have loaded, a namespace without any may
/// just not have been seen yet: upstream then refuses rather than guess.
impl LimitSource for ClusterReads {
    fn stream_limits(&self, namespace: &str) -> Result<StreamLimits, LimitsError> {
        if namespace.is_empty() {
            return Ok(StreamLimits::default());
        }
        let ranges = self.limit_ranges.list(namespace);
        loaded_stream_limits(&ranges, self.limit_ranges.is_synced())
    }

    fn image_storage_limit(&self, namespace: &str) -> Option<StorageLimit> {
        if namespace.is_empty() {
            return None;
        }
        image_storage_limit_of(&self.limit_ranges.list(namespace))
    }
}

/// The stream limits of a namespace's LimitRanges, or `StillLoading` when there are none yet
/// and the cache has not loaded.
pub fn loaded_stream_limits(
    ranges: &[Arc<LimitRange>],
    synced: bool,
) -> Result<StreamLimits, LimitsError> {
    if ranges.is_empty() && !synced {
        return Err(LimitsError::StillLoading);
    }
    Ok(stream_limits_of(ranges))
}

/// The `openshift.io/ImageStream` maximums of `openshift.io/image-tags` and
/// `openshift.io/images`; the smallest wins across ranges and items.
pub fn stream_limits_of(ranges: &[Arc<LimitRange>]) -> StreamLimits {
    let smallest = |resource: &str| {
        smallest_max(ranges, LIMIT_TYPE_IMAGE_STREAM, resource).map(|(q, _)| q.floor())
    };
    StreamLimits {
        image_tags: smallest(IMAGE_TAGS),
        images: smallest(IMAGES),
    }
}

/// The `openshift.io/Image` maximum of `storage`; the smallest wins across ranges and items.
pub fn image_storage_limit_of(ranges: &[Arc<LimitRange>]) -> Option<StorageLimit> {
    smallest_max(ranges, LIMIT_TYPE_IMAGE, STORAGE).map(|(q, text)| StorageLimit {
        bytes: q.floor(),
        text: text.to_string(),
    })
}

/// The smallest `max[resource]` among the items of `limit_type`, with its text.
fn smallest_max<'a>(
    ranges: &'a [Arc<LimitRange>],
    limit_type: &str,
    resource: &str,
) -> Option<(Quantity, &'a str)> {
    ranges
        .iter()
        .flat_map(|range| range.spec.iter().flat_map(|spec| spec.limits.iter()))
        .filter(|item| item.type_ == limit_type)
        .filter_map(|item| item.max.as_ref()?.get(resource))
        .filter_map(parse_max)
        .min_by_key(|(q, _)| q.floor())
}

/// kube-apiserver validates quantities before storing them, so one that does not parse is a
/// surprise: skipped, with a warning.
fn parse_max(quantity: &KubeQuantity) -> Option<(Quantity, &str)> {
    match Quantity::parse(&quantity.0) {
        Ok(parsed) => Some((parsed, quantity.0.as_str())),
        Err(e) => {
            tracing::warn!(quantity = %quantity.0, error = %e, "ignoring a LimitRange maximum");
            None
        }
    }
}

#[async_trait]
impl NamespaceLifecycle for ClusterReads {
    async fn admit_create(
        &self,
        namespace: &str,
        resource: &GroupResource,
        name: &str,
    ) -> Result<(), ApiError> {
        if namespace.is_empty() {
            return Ok(());
        }
        let found = match self.namespaces.get("", namespace) {
            Some(cached) => Some(cached),
            None => self.live_namespace(namespace).await?.map(Arc::new),
        };
        namespace_admission(found.as_deref(), namespace, resource, name)
    }
}

/// kube's NamespaceLifecycle for a create of `resource` `name` in `namespace`, given what is
/// known of the namespace: a 404 when it does not exist, a 403 while it is being deleted.
pub fn namespace_admission(
    found: Option<&Namespace>,
    namespace: &str,
    resource: &GroupResource,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = found else {
        return Err(ApiError::NotFound {
            resource: GroupResource::new("", "namespaces"),
            name: namespace.to_string(),
        });
    };
    if !is_terminating(ns) {
        return Ok(());
    }
    let reason = format!(
        "unable to create new content in namespace {namespace} because it is being terminated"
    );
    Err(forbidden(resource, name, &reason))
}

fn is_terminating(ns: &Namespace) -> bool {
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    phase == Some("Terminating") || ns.metadata.deletion_timestamp.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use k8s_openapi::api::core::v1::{LimitRangeItem, LimitRangeSpec, NamespaceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::ByteString;

    fn secret(name: &str, type_: &str, data: Option<(&str, String)>) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.type_ = Some(type_.into());
        s.data = data.map(|(k, v)| BTreeMap::from([(k.to_string(), ByteString(v.into_bytes()))]));
        s
    }

    fn excluded(mut s: Secret, value: &str) -> Secret {
        s.metadata.annotations = Some(BTreeMap::from([(
            EXCLUDE_SECRET_ANNOTATION.to_string(),
            value.to_string(),
        )]));
        s
    }

    fn auth(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    #[test]
    fn image_secrets_are_the_pull_secrets_not_excluded() {
        let cases = [
            (secret("cfg", DOCKERCFG, None), true),
            (secret("json", DOCKERCONFIGJSON, None), true),
            (secret("opaque", "Opaque", None), false),
            (
                secret("token", "kubernetes.io/service-account-token", None),
                false,
            ),
            (
                excluded(secret("hidden", DOCKERCONFIGJSON, None), "true"),
                false,
            ),
            (
                excluded(secret("shown", DOCKERCONFIGJSON, None), "false"),
                true,
            ),
        ];
        for (s, selected) in cases {
            assert_eq!(is_image_secret(&s), selected, "{:?}", s.metadata.name);
        }
    }

    #[test]
    fn keyrings_merge_both_secret_types_in_order() {
        let json = format!(
            r#"{{"auths":{{"quay.io":{{"auth":"{}"}},"registry.example.com":{{"auth":"{}"}}}}}}"#,
            auth("json-user", "p1"),
            auth("json-only", "p2")
        );
        let cfg = format!(
            r#"{{"quay.io":{{"auth":"{}"}},"docker.io":{{"auth":"{}"}}}}"#,
            auth("cfg-user", "p3"),
            auth("hub-user", "p4")
        );
        let secrets = [
            secret(
                "a-json",
                DOCKERCONFIGJSON,
                Some((DOCKERCONFIGJSON_KEY, json)),
            ),
            secret("b-cfg", DOCKERCFG, Some((DOCKERCFG_KEY, cfg))),
            secret(
                "c-broken",
                DOCKERCFG,
                Some((DOCKERCFG_KEY, "not json".into())),
            ),
            secret("d-empty", DOCKERCONFIGJSON, None),
        ]
        .map(Arc::new);
        let keyring = keyring_of(&secrets).expect("credentials");
        let user = |registry: &str, repository: &str| {
            keyring
                .lookup(registry, repository)
                .map(|c| c.username)
                .unwrap_or_default()
        };
        assert_eq!(
            user("quay.io", "org/app"),
            "json-user",
            "the first secret wins"
        );
        assert_eq!(user("registry.example.com", "app"), "json-only");
        assert_eq!(user("docker.io", "library/busybox"), "hub-user");
        assert_eq!(user("ghcr.io", "app"), "");
        assert!(
            keyring_of(&secrets[2..]).is_none(),
            "broken and empty secrets hold nothing"
        );
    }

    fn range(items: &[(&str, &str, &str)]) -> Arc<LimitRange> {
        let limits = items
            .iter()
            .map(|(type_, resource, max)| LimitRangeItem {
                type_: type_.to_string(),
                max: Some(BTreeMap::from([(
                    resource.to_string(),
                    KubeQuantity(max.to_string()),
                )])),
                ..Default::default()
            })
            .collect();
        Arc::new(LimitRange {
            spec: Some(LimitRangeSpec { limits }),
            ..Default::default()
        })
    }

    #[test]
    fn stream_limits_take_the_smallest_maximum() {
        let ranges = [
            range(&[
                (LIMIT_TYPE_IMAGE_STREAM, IMAGE_TAGS, "5"),
                (LIMIT_TYPE_IMAGE_STREAM, IMAGES, "1k"),
                (LIMIT_TYPE_IMAGE, IMAGE_TAGS, "1"),
            ]),
            range(&[
                (LIMIT_TYPE_IMAGE_STREAM, IMAGE_TAGS, "3"),
                (LIMIT_TYPE_IMAGE_STREAM, IMAGES, "not a quantity"),
                ("Container", IMAGES, "2"),
            ]),
        ];
        assert_eq!(
            stream_limits_of(&ranges),
            StreamLimits {
                image_tags: Some(3),
                images: Some(1000),
            }
        );
        assert_eq!(stream_limits_of(&[]), StreamLimits::default());
    }

    #[test]
    fn the_storage_limit_is_the_smallest_with_its_text() {
        let ranges = [
            range(&[(LIMIT_TYPE_IMAGE, STORAGE, "1Gi")]),
            range(&[
                (LIMIT_TYPE_IMAGE, STORAGE, "100Mi"),
                (LIMIT_TYPE_IMAGE_STREAM, STORAGE, "1Ki"),
            ]),
        ];
        assert_eq!(
            image_storage_limit_of(&ranges),
            Some(StorageLimit {
                bytes: 100 * 1024 * 1024,
                text: "100Mi".to_string(),
            })
        );
        let streams_only = [range(&[(LIMIT_TYPE_IMAGE_STREAM, IMAGES, "1")])];
        assert_eq!(image_storage_limit_of(&streams_only), None);
    }

    #[test]
    fn limits_are_still_loading_only_while_nothing_is_known() {
        let err = loaded_stream_limits(&[], false).expect_err("not loaded");
        assert_eq!(err, LimitsError::StillLoading);
        assert_eq!(
            err.to_string(),
            "limitranges is forbidden: the server is still loading limit information"
        );
        assert_eq!(loaded_stream_limits(&[], true), Ok(StreamLimits::default()));
        let seen = [range(&[(LIMIT_TYPE_IMAGE_STREAM, IMAGES, "2")])];
        assert_eq!(
            loaded_stream_limits(&seen, false).map(|l| l.images),
            Ok(Some(2)),
            "ranges already seen apply"
        );
    }

    fn namespace(phase: &str, deleting: bool) -> Namespace {
        let mut ns = Namespace::default();
        ns.metadata.name = Some("ns".into());
        ns.status = Some(NamespaceStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        if deleting {
            ns.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        }
        ns
    }

    #[test]
    fn creates_need_a_live_namespace() {
        let streams = GroupResource::new(image_api::GROUP, "imagestreams");
        let active = namespace("Active", false);
        assert!(namespace_admission(Some(&active), "ns", &streams, "app").is_ok());

        let missing = namespace_admission(None, "ns", &streams, "app").expect_err("missing");
        assert_eq!(missing.code(), 404);
        assert_eq!(missing.to_string(), "namespaces \"ns\" not found");

        for terminating in [namespace("Terminating", false), namespace("Active", true)] {
            let e = namespace_admission(Some(&terminating), "ns", &streams, "app")
                .expect_err("terminating");
            assert_eq!(e.code(), 403);
            assert_eq!(
                e.to_string(),
                "imagestreams.image.openshift.io \"app\" is forbidden: unable to create new content in namespace ns because it is being terminated"
            );
        }
        let unnamed =
            namespace_admission(Some(&namespace("Terminating", false)), "ns", &streams, "")
                .expect_err("terminating");
        assert_eq!(
            unnamed.to_string(),
            "imagestreams.image.openshift.io is forbidden: unable to create new content in namespace ns because it is being terminated"
        );
    }
}
