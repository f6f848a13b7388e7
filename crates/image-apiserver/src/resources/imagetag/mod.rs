//! `imagetags` (spec §10): the full view of one tag (spec, history, current image). Fix from
//! design.md: a PUT or PATCH that changes `spec` works (metadata is compared without
//! managedFields).

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::object::ApiObject;
use apimachinery::options::{ListOptions, WriteOptions};
use apimachinery::table::{human_duration, ColumnDefinition};
use apiserver::decode;
use apiserver::registry::{ReadRevision, UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::tags::{latest_tagged_image, resolve_reference};
use image_api::validation::validate_tag_reference;
use image_api::{default_tag_reference, ImageStream, ImageTag};
use serde_json::Value;

use super::imagestreamtag::{delete_tag, patcher};
use crate::resources::registries::Registries;
use crate::resources::views::{self, gr, not_found, parse_stream_tag, split_stream_tag};

const RESOURCE: &str = "imagetags";

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: RESOURCE,
        singular: "imagetag",
        kind: "ImageTag",
        namespaced: true,
        verbs: &["create", "delete", "get", "list", "patch", "update"],
        short_names: &["itag"],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageTags {
    info: ResourceInfo,
    registries: Arc<Registries>,
}

fn bad_name() -> ApiError {
    ApiError::BadRequest("ImageTags must be retrieved with <name>:<tag>".to_string())
}

fn invalid(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(
        apimachinery::GroupKind::new(image_api::GROUP, "ImageTag"),
        name,
        errs,
    )
}

/// `newITag` (spec §10.1), without the image.
pub fn build(stream: &ImageStream, tag: &str) -> Option<ImageTag> {
    let spec = stream.spec_tag(tag).cloned();
    let status = stream.status_tag(tag).cloned();
    if spec.is_none() && status.is_none() {
        return None;
    }
    let mut it = ImageTag {
        metadata: stream.metadata.clone(),
        spec,
        status,
        ..Default::default()
    };
    it.set_type_meta("ImageTag", image_api::API_VERSION);
    it.metadata.name = Some(format!(
        "{}:{tag}",
        stream.metadata.name.as_deref().unwrap_or("")
    ));
    Some(it)
}

fn validate_spec(it: &ImageTag, tag: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(spec) = &it.spec {
        if spec.name != tag {
            errs.push(FieldError::invalid(
                &FieldPath::new("spec").child("name"),
                spec.name.as_str(),
                "must match image tag name",
            ));
        }
        errs.extend(validate_tag_reference(spec, &FieldPath::new("spec")));
    }
    errs
}

fn reply(it: &ImageTag, code: u16) -> Result<Reply, ApiError> {
    Ok(Reply::Object {
        code,
        json: to_bytes(it).map_err(|e| ApiError::Internal(e.to_string()))?,
    })
}

impl ImageTags {
    pub fn new(registries: Arc<Registries>) -> Self {
        ImageTags {
            info: info(),
            registries,
        }
    }

    /// The view with its current image (GET, create, update).
    async fn with_image(
        &self,
        stream: &ImageStream,
        tag: &str,
        name: &str,
    ) -> Result<ImageTag, ApiError> {
        let mut it = build(stream, tag).ok_or_else(|| not_found(RESOURCE, name))?;
        if let Some(event) = latest_tagged_image(stream, tag).filter(|e| !e.image.is_empty()) {
            if let Some(img) = self.registries.image(&event.image).await? {
                it.image = Some(views::image_view(
                    img,
                    resolve_reference(stream, tag, event),
                ));
            }
        }
        Ok(it)
    }

    async fn get(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        let ns = req.namespace.as_deref().unwrap_or("");
        let stream = self
            .registries
            .streams
            .get_stream(ns, stream_name, ReadRevision::Consistent)
            .await?
            .ok_or_else(|| not_found(RESOURCE, stream_name))?;
        reply(&self.with_image(&stream, tag, name).await?, 200)
    }

    async fn list(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = ListOptions::parse(&req.query, false)?;
        opts.field_selector
            .check_fields(&["metadata.name", "metadata.namespace"])
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let stream_opts = ListOptions {
            field_selector: Default::default(),
            ..opts.clone()
        };
        let (streams, metadata) = self
            .registries
            .streams
            .list_streams(req.namespace.as_deref(), &stream_opts)
            .await?;
        let mut items = Vec::new();
        for stream in &streams {
            let mut tags: Vec<&str> = stream
                .spec
                .tags
                .iter()
                .map(|t| t.name.as_str())
                .chain(stream.status.tags.iter().map(|t| t.tag.as_str()))
                .collect();
            tags.sort();
            tags.dedup();
            for tag in tags {
                let Some(it) = build(stream, tag) else {
                    continue;
                };
                let fields = |f: &str| match f {
                    "metadata.name" => it.metadata.name.as_deref(),
                    "metadata.namespace" => it.metadata.namespace.as_deref(),
                    _ => None,
                };
                if opts.field_selector.matches(fields) {
                    items.push(to_bytes(&it).map_err(|e| ApiError::Internal(e.to_string()))?);
                }
            }
        }
        Ok(Reply::List {
            kind: "ImageTagList".to_string(),
            api_version: image_api::API_VERSION.to_string(),
            metadata: serde_json::to_value(&metadata)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            items,
        })
    }

    fn decode(&self, req: &Request, opts: &WriteOptions) -> Result<ImageTag, ApiError> {
        let value = decode::body_value(&req.body, req.content_type.as_deref())?;
        decode::check_type_meta(&value, &self.info)?;
        let mut it: ImageTag =
            decode::typed(value, &self.info, opts.field_validation, &req.warnings)
                .map_err(|e| e.for_body(&self.info))?;
        if let Some(t) = it.spec.as_mut() {
            default_tag_reference(t, &self.registries.policy.import_mode);
        }
        Ok(it)
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let mut it = self.decode(req, &opts)?;
        // The namespace check of create (spec §9.4 step 3).
        views::namespace(req, "a namespace must be specified to import images")?;
        let name = it.metadata.name.clone().unwrap_or_default();
        let Some((stream_name, tag)) = split_stream_tag(&name) else {
            return Err(ApiError::BadRequest(format!(
                "{name:?} must be of the form <stream_name>:<tag>"
            )));
        };
        if let Some(spec) = it.spec.as_mut() {
            if spec.name.is_empty() {
                spec.name = tag.to_string();
            }
        }
        it.status = None;
        it.image = None;
        let mut errs = Vec::new();
        if it.spec.is_none() {
            errs.push(FieldError::required(
                &FieldPath::new("spec"),
                "spec is a required field during creation",
            ));
        }
        errs.extend(validate_spec(&it, tag));
        if !errs.is_empty() {
            return Err(invalid(&name, errs));
        }
        let spec = it.spec.clone();
        let exists = ApiError::AlreadyExists {
            resource: gr(RESOURCE),
            name: name.clone(),
        };
        let stream = self
            .registries
            .add_spec_tag(
                &WriteContext::new(req, &opts),
                stream_name,
                tag,
                spec,
                exists,
            )
            .await?;
        reply(&self.with_image(&stream, tag, &name).await?, 201)
    }

    async fn update<F>(
        &self,
        req: &Request,
        name: &str,
        opts: WriteOptions,
        produce: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnOnce(&ImageTag) -> Result<ImageTag, ApiError>,
    {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        let ns = views::namespace(req, "namespace is required on ImageTags")?.to_string();
        let existing = self
            .registries
            .streams
            .current_stream(&ns, stream_name)
            .await?;
        let create_mode = existing.is_none();
        let stream = existing
            .map(|(s, _)| s)
            .unwrap_or_else(|| views::new_stream(&ns, stream_name));
        let old = build(&stream, tag).unwrap_or_else(|| {
            let mut it = ImageTag {
                metadata: stream.metadata.clone(),
                ..Default::default()
            };
            it.set_type_meta("ImageTag", image_api::API_VERSION);
            it.metadata.name = Some(name.to_string());
            it
        });
        let mut new = produce(&old)?;
        let pinned = match new
            .metadata
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            None => stream
                .metadata
                .resource_version
                .clone()
                .filter(|_| !create_mode),
            Some(_) if create_mode => return Err(not_found(RESOURCE, name)),
            Some(rv) if Some(rv) != stream.metadata.resource_version.as_deref() => {
                return Err(ApiError::conflict(&gr(RESOURCE), name))
            }
            Some(rv) => Some(rv.to_string()),
        };
        if let Some(spec) = new.spec.as_mut() {
            default_tag_reference(spec, &self.registries.policy.import_mode);
        }
        let mut errs = validate_spec(&new, tag);
        if !create_mode {
            let strip = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                let mut m = m.clone();
                m.managed_fields = None;
                m.resource_version = None;
                m
            };
            if strip(&new.metadata) != strip(&old.metadata) {
                errs.push(FieldError::invalid(
                    &FieldPath::new("metadata"),
                    "",
                    "may not update fields other than spec",
                ));
            }
            if new.status != old.status {
                errs.push(FieldError::invalid(
                    &FieldPath::new("status"),
                    "",
                    "may not update fields other than spec",
                ));
            }
        }
        if !errs.is_empty() {
            return Err(invalid(name, errs));
        }
        let spec_existed = stream.spec_tag(tag).is_some();
        let spec = new.spec.clone().map(|mut s| {
            s.name = tag.to_string();
            s
        });
        let apply = move |s: &mut ImageStream| -> Result<(), ApiError> {
            s.spec.tags.retain(|t| t.name != tag);
            s.spec.tags.extend(spec.clone());
            Ok(())
        };
        let written = if create_mode {
            let mut fresh = stream.clone();
            apply(&mut fresh)?;
            self.registries
                .streams
                .create_stream(&WriteContext::new(req, &opts), fresh)
                .await?
        } else {
            self.registries
                .change_stream(
                    &WriteContext::new(req, &opts),
                    stream_name,
                    UpdateStrategy::Internal,
                    pinned,
                    apply,
                )
                .await?
        };
        let it = match self.with_image(&written, tag, name).await {
            Ok(it) => it,
            // `spec: null` on a tag without history leaves nothing to show.
            Err(ApiError::NotFound { .. }) => {
                let mut it = old.clone();
                it.spec = None;
                it
            }
            Err(e) => return Err(e),
        };
        reply(&it, if spec_existed { 200 } else { 201 })
    }

    async fn delete(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        delete_tag(&self.registries, req, stream_name, tag, RESOURCE, name).await
    }
}

#[async_trait]
impl Resource for ImageTags {
    fn info(&self) -> &ResourceInfo {
        &self.info
    }

    async fn handle(&self, req: Request) -> Result<Reply, ApiError> {
        let name = req.name.clone();
        match (req.verb, name.as_deref()) {
            (Verb::Get, Some(n)) => self.get(&req, n).await,
            (Verb::List, None) => self.list(&req).await,
            (Verb::Create, None) => self.create(&req).await,
            (Verb::Update, Some(n)) => {
                let opts = WriteOptions::parse(&req.query, "UpdateOptions")?;
                let body = self.decode(&req, &opts)?;
                self.update(&req, n, opts, |_| Ok(body)).await
            }
            (Verb::Patch, Some(n)) => {
                let opts = WriteOptions::parse(&req.query, "PatchOptions")?;
                let patch = patcher(&req, &self.info, &opts)?;
                self.update(&req, n, opts, patch).await
            }
            (Verb::Delete, Some(n)) => self.delete(&req, n).await,
            _ => Err(ApiError::RouteMethodNotAllowed),
        }
    }

    fn table_columns(&self) -> Vec<ColumnDefinition> {
        vec![
            ColumnDefinition::new(
                "Spec",
                "string",
                "What the spec tag does: Tag, Ref, Scheduled, Track, or Push",
            ),
            ColumnDefinition::new(
                "Status",
                "string",
                "Where the current image came from, or the import state",
            ),
            ColumnDefinition::new(
                "History",
                "number",
                "How many images the tag has pointed to",
            ),
            ColumnDefinition::new("Updated", "string", "When the tag last changed"),
        ]
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        let it = <ImageTag as serde::Deserialize>::deserialize(object).unwrap_or_default();
        let (spec, status, history, updated) = columns(&it);
        vec![
            name,
            Value::from(spec),
            Value::from(status),
            history,
            Value::from(updated),
        ]
    }
}

/// The Spec, Status, History and Updated cells (spec §10.6).
fn columns(it: &ImageTag) -> (String, String, Value, String) {
    let items = it
        .status
        .as_ref()
        .and_then(|s| s.items.clone())
        .unwrap_or_default();
    let first = items.first();
    let spec_gen = it.spec.as_ref().and_then(|s| s.generation).unwrap_or(0);
    let spec = match &it.spec {
        None if first.is_some() => "Push".to_string(),
        None => String::new(),
        Some(_) if first.is_some_and(|f| f.generation > spec_gen) => "Push".to_string(),
        Some(s) => match &s.from {
            None => String::new(),
            Some(_) if s.reference => "Ref".to_string(),
            Some(_) if s.import_policy.scheduled => "Scheduled".to_string(),
            Some(f)
                if f.kind.as_deref() == Some("ImageStreamTag")
                    && !f.name.as_deref().unwrap_or("").contains(':') =>
            {
                "Track".to_string()
            }
            Some(_) => "Tag".to_string(),
        },
    };
    let conditions = it
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let failed = conditions
        .iter()
        .find(|c| c.type_ == "ImportSuccess" && c.status == "False");
    let status = if let Some(c) = failed {
        format!("ImportFailed ({})", c.reason)
    } else if first.is_some_and(|f| f.generation > 0 && spec_gen > 0 && f.generation < spec_gen) {
        "Importing".to_string()
    } else if let Some(f) = first {
        if !f.image.is_empty() {
            format!("image/{}", f.image)
        } else {
            f.docker_image_reference.clone()
        }
    } else {
        match it.spec.as_ref().and_then(|s| s.from.as_ref()) {
            Some(f) if f.kind.as_deref() == Some("ImageStreamTag") => {
                match f.namespace.as_deref().filter(|n| !n.is_empty()) {
                    Some(ns) => format!("istag {ns}/{}", f.name.as_deref().unwrap_or("")),
                    None => format!("istag/{}", f.name.as_deref().unwrap_or("")),
                }
            }
            Some(f) if f.kind.as_deref() == Some("DockerImage") => {
                f.name.clone().unwrap_or_default()
            }
            Some(_) => "InvalidRefKind".to_string(),
            None => String::new(),
        }
    };
    let history = if items.is_empty() {
        Value::from("")
    } else {
        Value::from(items.len())
    };
    let mut latest = first
        .and_then(|f| f.created.as_ref())
        .map(|t| t.0.as_second());
    for c in &conditions {
        if let Some(t) = c.last_transition_time.as_ref() {
            latest = Some(latest.map_or(t.0.as_second(), |l| l.max(t.0.as_second())));
        }
    }
    let updated = latest
        .map(|t| {
            format!(
                "{} ago",
                human_duration(jiff::Timestamp::now().as_second() - t)
            )
        })
        .unwrap_or_default();
    (spec, status, history, updated)
}
