//! `imagestreams` as served: the stored resource (the generic registry) plus its computed
//! subresources `layers` (spec §8) and `secrets` (§7).

use std::sync::Arc;

use apimachinery::continue_token::ContinueToken;
use apimachinery::discovery::{ResourceInfo, SubresourceInfo};
use apimachinery::errors::ApiError;
use apimachinery::options::{ListOptions, ReadAt};
use apimachinery::table::ColumnDefinition;
use apiserver::registry::Registry;
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Map, Value};

use super::layers::stream_layers;
use super::strategy::ImageStreamStrategy;
use crate::resources::registries::Registries;

/// The image streams resource with every subresource.
pub struct ImageStreams {
    info: ResourceInfo,
    /// Serves the stored resource and its `/status`.
    stored: Arc<Registry<ImageStreamStrategy>>,
    registries: Arc<Registries>,
}

/// Discovery of image streams with every subresource.
pub fn streams_info() -> ResourceInfo {
    let mut info = super::info();
    info.subresources.push(SubresourceInfo {
        name: "layers",
        kind: "ImageStreamLayers",
        group_version: None,
        verbs: &["get"],
    });
    info.subresources.push(SubresourceInfo {
        name: "secrets",
        kind: "SecretList",
        group_version: None,
        verbs: &["get"],
    });
    info
}

impl ImageStreams {
    pub fn new(stored: Arc<Registry<ImageStreamStrategy>>, registries: Arc<Registries>) -> Self {
        ImageStreams {
            info: streams_info(),
            stored,
            registries,
        }
    }
}

impl ImageStreams {
    async fn layers(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        self.registries.require_images_loaded()?;
        let ns = req.namespace.as_deref().unwrap_or("");
        let at = self.registries.view_read().await?;
        let stream = self
            .registries
            .view_stream(ns, name, "imagestreams", at)
            .await?;
        let layers = stream_layers(&self.registries, &stream).await?;
        Ok(Reply::Object {
            code: 200,
            json: to_bytes(&layers).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }

    /// The pull secrets of the request's namespace, whatever stream the path names, under the
    /// request's list options (design.md). Standalone there are no namespace Secrets: the list
    /// is empty.
    async fn secrets(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = ListOptions::parse(&req.query, false)?;
        let list = match &self.registries.cluster {
            Some(cluster) => {
                cluster.require_secrets_loaded().await?;
                let ns = req.namespace.as_deref().unwrap_or("");
                let secrets = cluster.image_secrets(ns);
                secret_list(&secrets, ns, &opts, &cluster.secrets_resource_version())?
            }
            None => {
                json!({"kind": "SecretList", "apiVersion": image_api::API_VERSION, "metadata": {}, "items": []})
            }
        };
        Ok(Reply::Object {
            code: 200,
            json: to_bytes(&list).map_err(|e| ApiError::Internal(e.to_string()))?,
        })
    }
}

/// The field selectors kube supports on Secrets.
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];

/// One page of `secrets` (sorted by name, all in `namespace`) as a `SecretList`: the label and
/// field selectors, then the continue point, then the limit, as a list of Secrets from
/// kube-apiserver would answer. Continue tokens are kube's, keyed by `<namespace>/<name>`.
fn secret_list(
    secrets: &[Arc<Secret>],
    namespace: &str,
    opts: &ListOptions,
    resource_version: &str,
) -> Result<Value, ApiError> {
    check_secret_fields(opts)?;
    let start = continue_start(opts)?;
    // As for any list, resourceVersion "0" reads whatever the cache has, whole.
    let limit = match opts.list_read_at()? {
        ReadAt::Any if start.is_none() => 0,
        _ => usize::try_from(opts.limit).unwrap_or(usize::MAX),
    };
    let mut items = Vec::new();
    let mut last_key = String::new();
    let mut more = false;
    for secret in secrets {
        let key = format!(
            "{namespace}/{}",
            secret.metadata.name.as_deref().unwrap_or("")
        );
        if start.as_deref().is_some_and(|s| key.as_str() < s) || !secret_matches(secret, opts) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            more = true;
            break;
        }
        items.push(list_item(secret)?);
        last_key = key;
    }
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), resource_version.into());
    if more {
        let revision = resource_version
            .parse::<i64>()
            .ok()
            .filter(|r| *r > 0)
            .unwrap_or(-1);
        let token = ContinueToken::after(revision, &last_key).encode();
        metadata.insert("continue".into(), token.into());
    }
    Ok(json!({
        "kind": "SecretList",
        "apiVersion": image_api::API_VERSION,
        "metadata": metadata,
        "items": items,
    }))
}

/// kube's field label conversion for Secrets refuses other fields with this message.
fn check_secret_fields(opts: &ListOptions) -> Result<(), ApiError> {
    match opts
        .field_selector
        .requirements
        .iter()
        .find(|r| !SECRET_FIELDS.contains(&r.field.as_str()))
    {
        Some(r) => Err(ApiError::BadRequest(format!(
            "field label not supported: {}",
            r.field
        ))),
        None => Ok(()),
    }
}

/// The key a continued list starts at (inclusive), with the generic list's checks.
fn continue_start(opts: &ListOptions) -> Result<Option<String>, ApiError> {
    let Some(token) = &opts.continue_token else {
        return Ok(None);
    };
    if opts.resource_version.as_deref().is_some_and(|rv| rv != "0") {
        return Err(ApiError::BadRequest(
            "specifying resource version is not allowed when using continue".to_string(),
        ));
    }
    let token = ContinueToken::decode(token)
        .map_err(|e| ApiError::BadRequest(format!("invalid continue token: {e}")))?;
    Ok(Some(token.start))
}

fn secret_matches(secret: &Secret, opts: &ListOptions) -> bool {
    let meta = &secret.metadata;
    let labels_match = opts.label_selector.matches_with(|key| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map(String::as_str)
    });
    labels_match
        && opts.field_selector.matches(|field| match field {
            "metadata.name" => meta.name.as_deref(),
            "metadata.namespace" => meta.namespace.as_deref(),
            "type" => secret.type_.as_deref(),
            _ => None,
        })
}

/// A list item as kube writes one: without its own apiVersion and kind.
fn list_item(secret: &Secret) -> Result<Value, ApiError> {
    let mut item = serde_json::to_value(secret).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(fields) = item.as_object_mut() {
        fields.shift_remove("apiVersion");
        fields.shift_remove("kind");
    }
    Ok(item)
}

#[async_trait]
impl Resource for ImageStreams {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.subresource.as_deref(), req.name.clone()) {
            (Verb::Get, Some("layers"), Some(name)) => self.layers(&req, &name).await,
            (Verb::Get, Some("secrets"), Some(_)) => self.secrets(&req).await,
            (_, Some("layers" | "secrets"), _) => Err(ApiError::RouteMethodNotAllowed),
            _ => self.stored.handle(req).await,
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        self.stored.table_columns()
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        self.stored.table_row(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{DOCKERCFG, DOCKERCONFIGJSON};
    use apimachinery::options::Query;

    fn secret(name: &str, type_: &str, labels: &[(&str, &str)]) -> Arc<Secret> {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.type_ = Some(type_.into());
        if !labels.is_empty() {
            s.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        }
        Arc::new(s)
    }

    fn secrets() -> Vec<Arc<Secret>> {
        vec![
            secret("a", DOCKERCFG, &[("app", "x")]),
            secret("b", DOCKERCONFIGJSON, &[]),
            secret("c", DOCKERCONFIGJSON, &[("app", "x")]),
        ]
    }

    fn page(query: &str) -> Result<Value, ApiError> {
        let opts = ListOptions::parse(&Query::parse(Some(query)), false)?;
        secret_list(&secrets(), "ns", &opts, "42")
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name"))
            .collect()
    }

    fn continue_token(list: &Value) -> Option<&str> {
        list["metadata"]["continue"].as_str()
    }

    #[test]
    fn lists_the_secrets_as_kube_lists_items() {
        let list = page("").expect("list");
        assert_eq!(list["kind"], "SecretList");
        assert_eq!(list["apiVersion"], "image.openshift.io/v1");
        assert_eq!(list["metadata"]["resourceVersion"], "42");
        assert_eq!(continue_token(&list), None);
        assert_eq!(names(&list), ["a", "b", "c"]);
        let first = &list["items"][0];
        assert_eq!(first["type"], DOCKERCFG);
        assert!(first.get("kind").is_none() && first.get("apiVersion").is_none());
    }

    #[test]
    fn selectors_filter_the_list() {
        let cases = [
            ("labelSelector=app%3Dx", vec!["a", "c"]),
            (
                "fieldSelector=type%3Dkubernetes.io%2Fdockerconfigjson",
                vec!["b", "c"],
            ),
            ("fieldSelector=metadata.name!%3Db", vec!["a", "c"]),
            ("fieldSelector=metadata.namespace%3Dother", vec![]),
            (
                "labelSelector=app%3Dx&fieldSelector=type%3Dkubernetes.io%2Fdockerconfigjson",
                vec!["c"],
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(names(&page(query).expect(query)), expected, "{query}");
        }
        let unsupported = page("fieldSelector=spec.x%3D1").expect_err("unknown field");
        assert_eq!(unsupported.to_string(), "field label not supported: spec.x");
        assert_eq!(unsupported.code(), 400);
    }

    #[test]
    fn pages_continue_after_the_last_name() {
        let first = page("limit=2").expect("first page");
        assert_eq!(names(&first), ["a", "b"]);
        let token = continue_token(&first).expect("a continue token");
        let decoded = ContinueToken::decode(token).expect("kube's token format");
        assert_eq!(decoded, ContinueToken::after(42, "ns/b"));
        let rest = page(&format!("limit=2&continue={token}")).expect("second page");
        assert_eq!(names(&rest), ["c"]);
        assert_eq!(continue_token(&rest), None);

        let filtered = page("labelSelector=app%3Dx&limit=1").expect("filtered page");
        assert_eq!(names(&filtered), ["a"]);
        let token = continue_token(&filtered).expect("more labelled secrets");
        let next = page(&format!("labelSelector=app%3Dx&limit=1&continue={token}"));
        assert_eq!(names(&next.expect("next page")), ["c"]);
    }

    #[test]
    fn continue_and_resource_version_rules_are_the_generic_lists() {
        let token = ContinueToken::after(42, "ns/a").encode();
        let pinned = page(&format!("continue={token}&resourceVersion=7")).expect_err("rv");
        assert_eq!(
            pinned.to_string(),
            "specifying resource version is not allowed when using continue"
        );
        let garbage = page("continue=!!!").expect_err("bad token");
        assert!(
            garbage.to_string().starts_with("invalid continue token:"),
            "{garbage}"
        );
        let whole = page("limit=1&resourceVersion=0").expect("rv 0");
        assert_eq!(
            names(&whole),
            ["a", "b", "c"],
            "resourceVersion 0 ignores the limit"
        );
    }
}
