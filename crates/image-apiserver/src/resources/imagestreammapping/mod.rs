//! `imagestreammappings` (spec §12), create only: what the registry posts after a push. It
//! creates the Image when absent (never changes an existing one), adds the tag event through the
//! status strategy, and propagates it to tracking tags.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::options::WriteOptions;
use apimachinery::validation::{dns1123_label_errors, path_segment_name_errors};
use apimachinery::GroupKind;
use apiserver::decode;
use apiserver::registry::{UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use async_trait::async_trait;
use image_api::tags::{add_tag_event, new_event, update_tracking_tags};
use image_api::validation::validate_image_fields;
use image_api::ImageStreamMapping;
use serde_json::json;

use crate::resources::registries::Registries;
use crate::resources::views::not_found;

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

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let value = decode::body_value(&req.body, req.content_type.as_deref())?;
        decode::check_type_meta(&value, &self.info)?;
        let mut m: ImageStreamMapping =
            decode::typed(value, &self.info, opts.field_validation, &req.warnings)
                .map_err(|e| e.for_body(&self.info))?;
        let url_ns = req.namespace.clone().unwrap_or_default();
        match m.metadata.namespace.as_deref() {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".to_string(),
                ))
            }
            _ => m.metadata.namespace = Some(url_ns.clone()),
        }
        let stream_name = m.metadata.name.clone().unwrap_or_default();
        let image_name = m.image.metadata.name.clone().unwrap_or_default();
        let internal = &self.registries.policy.internal;
        if m.image.docker_image_reference.is_empty() && !internal.is_empty() {
            m.image.docker_image_reference =
                format!("{internal}/{url_ns}/{stream_name}@{image_name}");
        }
        m.image.signatures.clear();
        let errs = self.validate(&m);
        if !errs.is_empty() {
            return Err(ApiError::invalid(
                GroupKind::new(image_api::GROUP, "ImageStreamMapping"),
                &stream_name,
                errs,
            ));
        }
        let Some((stream, _)) = self
            .registries
            .streams
            .current_stream(&url_ns, &stream_name)
            .await?
        else {
            return Err(not_found(RESOURCE, &stream_name));
        };
        // Create the Image unless it exists; an existing one is never changed here.
        let mut image = m.image.clone();
        image.kind.clear();
        image.api_version.clear();
        image.metadata.namespace = None;
        image.metadata.resource_version = None;
        let existed = match self
            .registries
            .images
            .create_image(&WriteContext::new(req, &opts), image)
            .await
        {
            Ok(_) => false,
            Err(ApiError::AlreadyExists { .. }) => true,
            Err(e) => return Err(e),
        };
        let managed = m
            .image
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MANAGED_ANNOTATION))
            .is_some_and(|v| v == "true");
        let tag = m.tag.clone();
        let requested_ref = m.image.docker_image_reference.clone();
        let generation = stream.metadata.generation.unwrap_or(0);
        let result = self
            .registries
            .change_stream(
                &WriteContext::new(req, &opts),
                &stream_name,
                UpdateStrategy::Status,
                None,
                |s| {
                    let mut reference = requested_ref.clone();
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
                    let event = new_event(
                        &reference,
                        &image_name,
                        s.metadata.generation.unwrap_or(generation),
                        apiserver::registry::now(),
                    );
                    // An identical event changes nothing: re-posting a mapping is idempotent.
                    if !add_tag_event(s, &tag, event) {
                        return Ok(());
                    }
                    update_tracking_tags(s, &tag);
                    Ok(())
                },
            )
            .await;
        match result {
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
