//! `imagestreammappings` (spec §12), create only: what the registry posts after a push. It
//! checks the image against the namespace's size limit (§15.1), creates the Image when absent
//! (never changes an existing one), adds the tag event through the status strategy, and
//! propagates it to tracking tags.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::options::WriteOptions;
use apimachinery::validation::{dns1123_label_errors, path_segment_name_errors};
use apimachinery::GroupKind;
use apiserver::body;
use apiserver::registry::{UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use async_trait::async_trait;
use image_api::limits::{image_storage_violation, StorageLimit};
use image_api::metadata::MetadataError;
use image_api::tags::{add_tag_event, new_event, update_tracking_tags};
use image_api::validation::validate_image_fields;
use image_api::{Image, ImageStream, ImageStreamMapping};
use serde_json::{json, Value};

use crate::resources::forbidden;
use crate::resources::registries::Registries;
use crate::resources::views::{gr, not_found};

const RESOURCE: &str = "imagestreammappings";
const MANAGED_ANNOTATION: &str = "openshift.io/image.managed";

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: RESOURCE,
        singular: "imagestreammapping",
        kind: "ImageStreamMapping",
        namespaced: true,
        verbs: &["create"],
        short_names: &[],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageStreamMappings {
    info: ResourceInfo,
    registries: Arc<Registries>,
}

impl ImageStreamMappings {
    pub fn new(registries: Arc<Registries>) -> Self {
        ImageStreamMappings {
            info: info(),
            registries,
        }
    }

    fn validate(&self, m: &ImageStreamMapping) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let meta = FieldPath::new("metadata");
        let name = m.metadata.name.as_deref().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(&meta.child("name"), ""));
            errs.push(FieldError::required(
                &FieldPath::new("dockerImageRepository"),
                "",
            ));
        }
        for e in path_segment_name_errors(name) {
            errs.push(FieldError::invalid(&meta.child("name"), name, e));
        }
        let ns = m.metadata.namespace.as_deref().unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required(&meta.child("namespace"), ""));
        } else {
            for e in dns1123_label_errors(ns) {
                errs.push(FieldError::invalid(&meta.child("namespace"), ns, e));
            }
        }
        if m.tag.is_empty() {
            errs.push(FieldError::required(&FieldPath::new("tag"), ""));
        }
        for mut e in validate_image_fields(&m.image) {
            e.field = FieldPath::new(&format!("image.{}", e.field));
            errs.push(e);
        }
        let image_name = m.image.metadata.name.as_deref().unwrap_or("");
        if image_name.is_empty() {
            errs.push(FieldError::required(
                &FieldPath::new("image").child("metadata").child("name"),
                "",
            ));
        }
        errs
    }

    /// The mapping of the request, in its namespace, with the image's reference defaulted to
    /// the integrated registry, validated.
    fn decode(&self, req: &Request, opts: &WriteOptions) -> Result<ImageStreamMapping, ApiError> {
        let mut m: ImageStreamMapping = body::decode_object(&self.info, req, opts)?;
        body::check_namespace(&mut m, req.namespace.as_deref(), true)?;
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        let stream_name = m.metadata.name.clone().unwrap_or_default();
        let image_name = m.image.metadata.name.clone().unwrap_or_default();
        let internal = &self.registries.policy.internal;
        if m.image.docker_image_reference.is_empty() && !internal.is_empty() {
            m.image.docker_image_reference = format!("{internal}/{ns}/{stream_name}@{image_name}");
        }
        m.image.signatures.clear();
        // Admission runs before validation, as kube's create handler orders them.
        if let Some(limit) = self.registries.policy.limits.image_storage_limit(&ns) {
            check_image_size(&limit, &m)?;
        }
        let errs = self.validate(&m);
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                GroupKind::new(image_api::GROUP, "ImageStreamMapping"),
                &stream_name,
                errs,
            ));
        }
        Ok(m)
    }

    /// Creates the Image unless it exists (an existing one is never changed here); returns
    /// whether it existed.
    async fn create_image(
        &self,
        ctx: &WriteContext<'_>,
        m: &ImageStreamMapping,
    ) -> Result<bool, ApiError> {
        let mut image = m.image.clone();
        image.kind.clear();
        image.api_version.clear();
        image.metadata.namespace = None;
        image.metadata.resource_version = None;
        match self.registries.images.create_image(ctx, image).await {
            Ok(_) => Ok(false),
            Err(ApiError::AlreadyExists { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let m = self.decode(req, &opts)?;
        let ctx = WriteContext::new(req, &opts);
        let stream_name = m.metadata.name.clone().unwrap_or_default();
        let ns = m.metadata.namespace.clone().unwrap_or_default();
        // A missing stream is a 404 before any Image is created.
        if self
            .registries
            .streams
            .current_stream(&ns, &stream_name)
            .await?
            .is_none()
        {
            return Err(not_found(RESOURCE, &stream_name));
        }
        let existed = self.create_image(&ctx, &m).await?;
        let record = |s: &mut ImageStream| {
            record_event(s, &m, existed);
            Ok(())
        };
        match self
            .registries
            .change_stream(&ctx, &stream_name, UpdateStrategy::Status, None, record)
            .await
        {
            Ok(_) => {}
            Err(ApiError::NotFound { .. }) => return Err(not_found(RESOURCE, &stream_name)),
            Err(e) => return Err(e),
        }
        Ok(Reply::Status {
            code: 201,
            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        })
    }
}

/// ImageLimitRange (spec §15.1): a 403 when the mapping's image is larger than `limit`. The
/// size is the one §3.1 computes, so the image's metadata is extracted first; an image whose
/// metadata cannot be extracted is refused with that error, as upstream's plugin does.
fn check_image_size(limit: &StorageLimit, m: &ImageStreamMapping) -> Result<(), ApiError> {
    let name = m.metadata.name.as_deref().unwrap_or("");
    let refuse = |reason: &str| forbidden(&gr(RESOURCE), name, reason);
    let size = image_size(&m.image).map_err(|e| refuse(&e.to_string()))?;
    match image_storage_violation(limit, size) {
        Some(violation) => Err(refuse(&violation)),
        None => Ok(()),
    }
}

/// `dockerImageMetadata.Size` after metadata extraction (spec §3.1).
fn image_size(image: &Image) -> Result<u64, MetadataError> {
    let mut image = image.clone();
    image_api::metadata::extract(&mut image, "")?;
    let size = image
        .docker_image_metadata
        .as_ref()
        .and_then(|meta| meta.get("Size"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Ok(u64::try_from(size).unwrap_or(0))
}

/// Adds the mapping's tag event to the stream and to the tags that track it. An Image the
/// integrated registry manages, and that existed already, is referenced through the stream's
/// repository. An identical event changes nothing: re-posting a mapping is idempotent.
fn record_event(s: &mut ImageStream, m: &ImageStreamMapping, existed: bool) {
    let image_name = m.image.metadata.name.as_deref().unwrap_or("");
    let managed = m
        .image
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANAGED_ANNOTATION))
        .is_some_and(|v| v == "true");
    let mut reference = m.image.docker_image_reference.clone();
    if existed && managed {
        let repo = if s.status.docker_image_repository.is_empty() {
            &s.spec.docker_image_repository
        } else {
            &s.status.docker_image_repository
        };
        if !repo.is_empty() {
            reference = format!("{repo}@{image_name}");
        }
    }
    let generation = s.metadata.generation.unwrap_or(0);
    let event = new_event(
        &reference,
        image_name,
        generation,
        apiserver::registry::now(),
    );
    if add_tag_event(s, &m.tag, event) {
        update_tracking_tags(s, &m.tag);
    }
}

#[async_trait]
impl Resource for ImageStreamMappings {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        match (req.verb, req.name.as_deref()) {
            (Verb::Create, None) => self.create(&req).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(managed: bool) -> ImageStreamMapping {
        let mut m = ImageStreamMapping {
            tag: "v1".into(),
            ..Default::default()
        };
        m.image.metadata.name = Some("sha256:1".into());
        m.image.docker_image_reference = "quay.io/a/b@sha256:1".into();
        if managed {
            m.image.metadata.annotations =
                Some([(MANAGED_ANNOTATION.to_string(), "true".to_string())].into());
        }
        m
    }

    fn stream() -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = Some("app".into());
        s.metadata.generation = Some(3);
        s.status.docker_image_repository = "registry.local/ns/app".into();
        s
    }

    fn events(s: &ImageStream, tag: &str) -> Vec<image_api::TagEvent> {
        s.status_tag(tag)
            .and_then(|l| l.items.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_mapping_records_one_event_even_when_posted_twice() {
        let mut s = stream();
        record_event(&mut s, &mapping(false), false);
        record_event(&mut s, &mapping(false), false);
        let items = events(&s, "v1");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].docker_image_reference, "quay.io/a/b@sha256:1");
        assert_eq!(items[0].generation, 3);
    }

    #[test]
    fn an_existing_managed_image_is_referenced_through_the_stream() {
        let mut s = stream();
        record_event(&mut s, &mapping(true), true);
        assert_eq!(
            events(&s, "v1")[0].docker_image_reference,
            "registry.local/ns/app@sha256:1"
        );
        let mut fresh = stream();
        record_event(&mut fresh, &mapping(true), false);
        assert_eq!(
            events(&fresh, "v1")[0].docker_image_reference,
            "quay.io/a/b@sha256:1",
            "a new image keeps the reference it was pushed with"
        );
    }

    fn one_kib() -> StorageLimit {
        StorageLimit {
            bytes: 1024,
            text: "1Ki".to_string(),
        }
    }

    fn mapping_of_size(size: i64) -> ImageStreamMapping {
        let mut m = mapping(false);
        m.metadata.name = Some("app".into());
        m.image.docker_image_metadata = Some(json!({"Size": size}));
        m
    }

    #[test]
    fn images_over_the_namespace_storage_limit_are_forbidden() {
        assert!(check_image_size(&one_kib(), &mapping_of_size(1024)).is_ok());
        let e = check_image_size(&one_kib(), &mapping_of_size(2048)).expect_err("too large");
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            "imagestreammappings.image.openshift.io \"app\" is forbidden: requested usage of storage exceeds the maximum limit per openshift.io/Image (2Ki > 1Ki)"
        );
    }

    #[test]
    fn the_size_is_extracted_from_the_manifest() {
        let mut m = mapping_of_size(0);
        m.image.docker_image_manifest = json!({
            "schemaVersion": 2,
            "mediaType": image_api::metadata::SCHEMA2,
            "config": {"digest": "sha256:c"},
            "layers": [{"digest": "sha256:l1", "size": 3000, "mediaType": "x"}],
        })
        .to_string();
        m.image.docker_image_config = "{}".to_string();
        let e = check_image_size(&one_kib(), &m).expect_err("layers over the limit");
        assert!(e.to_string().ends_with("(3002 > 1Ki)"), "{e}");
        m.image.docker_image_config.clear();
        let e = check_image_size(&one_kib(), &m).expect_err("no config");
        assert!(
            e.to_string()
                .ends_with("is forbidden: dockerImageConfig must not be empty for manifest type \"application/vnd.docker.distribution.manifest.v2+json\""),
            "{e}"
        );
    }
}
