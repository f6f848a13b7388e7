//! `imagestreamtags` (spec §9): one tag of a stream as an object, read from and written to the
//! stream. Fixes from design.md: a name without `:` is a 400; POST copies
//! `metadata.annotations` into the spec tag as PUT does; field selectors match istag names.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{BadValue, FieldError, FieldPath};
use apimachinery::object::ApiObject;
use apimachinery::options::{ListOptions, WriteOptions};
use apimachinery::table::ColumnDefinition;
use apimachinery::validation::path_segment_name_errors;
use apiserver::decode;
use apiserver::patch::{self, PatchType};
use apiserver::registry::{ReadRevision, UpdateStrategy, WriteContext};
use apiserver::resource::{Reply, Request, Resource, Verb};
use apiserver::strategy::to_bytes;
use async_trait::async_trait;
use image_api::tags::{latest_tagged_image, resolve_reference};
use image_api::validation::validate_tag_reference;
use image_api::{default_tag_reference, Image, ImageStream, ImageStreamTag, TagEvent};
use serde_json::{json, Value};

use crate::resources::registries::Registries;
use crate::resources::views::{self, gr, not_found, parse_stream_tag, split_stream_tag};

const RESOURCE: &str = "imagestreamtags";

pub fn info() -> ResourceInfo {
    ResourceInfo {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resource: RESOURCE,
        singular: "imagestreamtag",
        kind: "ImageStreamTag",
        namespaced: true,
        verbs: &["create", "delete", "get", "list", "patch", "update"],
        short_names: &["istag"],
        categories: &[],
        stored: false,
        subresources: vec![],
    }
}

pub struct ImageStreamTags {
    info: ResourceInfo,
    registries: Arc<Registries>,
}

impl ImageStreamTags {
    pub fn new(registries: Arc<Registries>) -> Self {
        ImageStreamTags {
            info: info(),
            registries,
        }
    }
}

fn bad_name() -> ApiError {
    ApiError::BadRequest("ImageStreamTags must be retrieved with <name>:<tag>".to_string())
}

/// `newISTag` (spec §9.1).
pub fn build(
    stream: &ImageStream,
    tag: &str,
    image: Option<Image>,
    allow_empty: bool,
) -> Result<ImageStreamTag, ApiError> {
    let stream_name = stream.metadata.name.clone().unwrap_or_default();
    let name = format!("{stream_name}:{tag}");
    let event = match latest_tagged_image(stream, tag).filter(|e| !e.image.is_empty()) {
        Some(e) => e.clone(),
        None if allow_empty => TagEvent {
            created: stream.metadata.creation_timestamp.clone(),
            docker_image_reference: String::new(),
            image: String::new(),
            generation: 0,
        },
        None => return Err(not_found(RESOURCE, &name)),
    };
    let spec_tag = stream.spec_tag(tag).cloned();
    let mut ist = ImageStreamTag::default();
    ist.set_type_meta("ImageStreamTag", image_api::API_VERSION);
    let meta = &mut ist.metadata;
    meta.name = Some(name);
    meta.namespace = stream.metadata.namespace.clone();
    meta.uid = stream.metadata.uid.clone();
    meta.resource_version = stream.metadata.resource_version.clone();
    meta.creation_timestamp = event.created.clone();
    meta.labels = stream.metadata.labels.clone();
    meta.annotations = spec_tag.as_ref().and_then(|t| t.annotations.clone());
    ist.generation = event.generation;
    ist.conditions = stream
        .status_tag(tag)
        .map(|l| l.conditions.clone())
        .unwrap_or_default();
    ist.lookup_policy = stream.spec.lookup_policy.clone();
    let reference = resolve_reference(stream, tag, &event);
    ist.image = match image {
        Some(mut img) => {
            if let Some(extra) = spec_tag.as_ref().and_then(|t| t.annotations.clone()) {
                img.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .extend(extra);
            }
            views::image_view(img, reference)
        }
        None => {
            let mut img = Image::default();
            img.metadata.name = Some(event.image.clone());
            img.docker_image_reference = reference;
            img
        }
    };
    ist.tag = spec_tag;
    Ok(ist)
}

fn reply(ist: &ImageStreamTag, code: u16) -> Result<Reply, ApiError> {
    Ok(Reply::Object {
        code,
        json: to_bytes(ist).map_err(|e| ApiError::Internal(e.to_string()))?,
    })
}

/// Validation of create and update (spec §9.4 step 2, §9.5 step 7).
fn validate(ist: &ImageStreamTag) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta_path = FieldPath::new("metadata");
    let name = ist.metadata.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            &meta_path.child("name"),
            "name or generateName is required",
        ));
    }
    for m in path_segment_name_errors(name) {
        errs.push(FieldError::invalid(&meta_path.child("name"), name, m));
    }
    if let Some(tag) = &ist.tag {
        errs.extend(validate_tag_reference(tag, &FieldPath::new("tag")));
        if let Some(a) = &tag.annotations {
            if Some(a) != ist.metadata.annotations.as_ref() {
                errs.push(FieldError::invalid(
                    &FieldPath::new("tag").child("annotations"),
                    BadValue::Json(json!(a)),
                    "tag annotations must not be provided or must be equal to the object meta annotations",
                ));
            }
        }
    }
    errs
}

fn invalid(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(
        apimachinery::GroupKind::new(image_api::GROUP, "ImageStreamTag"),
        name,
        errs,
    )
}

impl ImageStreamTags {
    async fn get(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let ns = req.namespace.as_deref().unwrap_or("");
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        let stream = self
            .registries
            .streams
            .get_stream(ns, stream_name, ReadRevision::Consistent)
            .await?
            .ok_or_else(|| not_found(RESOURCE, stream_name))?;
        let event = latest_tagged_image(&stream, tag)
            .filter(|e| !e.image.is_empty())
            .ok_or_else(|| not_found(RESOURCE, name))?;
        let image = self
            .registries
            .image(&event.image)
            .await?
            .ok_or_else(|| not_found(RESOURCE, &event.image))?;
        reply(&build(&stream, tag, Some(image), false)?, 200)
    }

    async fn list(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = ListOptions::parse(&req.query, false)?;
        opts.field_selector
            .check_fields(&["metadata.name", "metadata.namespace"])
            .map_err(|e| ApiError::BadRequest(e.0))?;
        // The stream list gets the label selector; the field selector applies to istags.
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
            let mut tags: Vec<&str> = stream.status.tags.iter().map(|t| t.tag.as_str()).collect();
            tags.sort();
            for tag in tags {
                let Ok(ist) = build(stream, tag, None, false) else {
                    continue;
                };
                let fields = |f: &str| match f {
                    "metadata.name" => ist.metadata.name.as_deref(),
                    "metadata.namespace" => ist.metadata.namespace.as_deref(),
                    _ => None,
                };
                if opts.field_selector.matches(fields) {
                    items.push(to_bytes(&ist).map_err(|e| ApiError::Internal(e.to_string()))?);
                }
            }
        }
        Ok(Reply::List {
            kind: "ImageStreamTagList".to_string(),
            api_version: image_api::API_VERSION.to_string(),
            metadata: serde_json::to_value(&metadata)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
            items,
        })
    }

    fn decode(&self, req: &Request, opts: &WriteOptions) -> Result<ImageStreamTag, ApiError> {
        let value = decode::body_value(&req.body, req.content_type.as_deref())?;
        decode::check_type_meta(&value, &self.info)?;
        let mut ist: ImageStreamTag =
            decode::typed(value, &self.info, opts.field_validation, &req.warnings)
                .map_err(|e| e.for_body(&self.info))?;
        if let Some(t) = ist.tag.as_mut() {
            default_tag_reference(t, &self.registries.policy.import_mode);
        }
        Ok(ist)
    }

    fn check_namespace(req: &Request, ist: &mut ImageStreamTag) -> Result<(), ApiError> {
        let url = req.namespace.as_deref().unwrap_or("");
        match ist.metadata.namespace.as_deref() {
            Some(ns) if !ns.is_empty() && ns != url => Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".to_string(),
            )),
            _ => {
                ist.metadata.namespace = Some(url.to_string());
                Ok(())
            }
        }
    }

    async fn create(&self, req: &Request) -> Result<Reply, ApiError> {
        let opts = WriteOptions::parse(&req.query, "CreateOptions")?;
        let mut ist = self.decode(req, &opts)?;
        Self::check_namespace(req, &mut ist)?;
        // The namespace check of create (spec §9.4 step 3).
        views::namespace(req, "a namespace must be specified to import images")?;
        let name = ist.metadata.name.clone().unwrap_or_default();
        let Some((stream_name, tag)) = split_stream_tag(&name) else {
            return Err(ApiError::BadRequest(format!(
                "{name:?} must be of the form <stream_name>:<tag>"
            )));
        };
        if let Some(t) = ist.tag.as_mut() {
            if t.name.is_empty() {
                t.name = tag.to_string();
            }
        }
        ist.conditions.clear();
        ist.image = Image::default();
        let errs = validate(&ist);
        if !errs.is_empty() {
            return Err(invalid(&name, errs));
        }
        let spec_tag = ist.tag.clone().map(|mut t| {
            t.name = tag.to_string();
            t.annotations = ist.metadata.annotations.clone();
            t
        });
        let exists = ApiError::AlreadyExists {
            resource: gr("imagestreamtag"),
            name: name.clone(),
        };
        let stream = self
            .registries
            .add_spec_tag(
                &WriteContext::new(req, &opts),
                stream_name,
                tag,
                spec_tag,
                exists,
            )
            .await?;
        let image = match latest_tagged_image(&stream, tag) {
            Some(e) => self.registries.image(&e.image).await?,
            None => None,
        };
        reply(&build(&stream, tag, image, true)?, 201)
    }

    /// PUT and PATCH (spec §9.5): `produce` makes the new istag from the old one.
    async fn update<F>(
        &self,
        req: &Request,
        name: &str,
        opts: WriteOptions,
        produce: F,
    ) -> Result<Reply, ApiError>
    where
        F: FnOnce(&ImageStreamTag) -> Result<ImageStreamTag, ApiError>,
    {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        let ns = views::namespace(req, "namespace is required on ImageStreamTags")?.to_string();
        let existing = self
            .registries
            .streams
            .current_stream(&ns, stream_name)
            .await?;
        let create_mode = existing.is_none();
        let stream = existing
            .map(|(s, _)| s)
            .unwrap_or_else(|| views::new_stream(&ns, stream_name));
        let old = build(&stream, tag, None, true)?;
        let mut new = produce(&old)?;
        Self::check_namespace(req, &mut new)?;
        if new.metadata.name.as_deref().is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new.metadata.name.as_deref().unwrap_or("")
            )));
        }
        new.metadata.name = Some(name.to_string());
        let pinned = match new
            .metadata
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            None => None,
            Some(_) if create_mode => return Err(not_found(RESOURCE, name)),
            Some(rv) if Some(rv) != stream.metadata.resource_version.as_deref() => {
                return Err(ApiError::Conflict {
                    qualified: gr(RESOURCE).to_string(),
                    group: image_api::GROUP.to_string(),
                    kind: RESOURCE.to_string(),
                    name: name.to_string(),
                    message: format!(
                        "another caller has updated the resource version to {}",
                        stream.metadata.resource_version.as_deref().unwrap_or("")
                    ),
                })
            }
            Some(rv) => Some(rv.to_string()),
        };
        if new.metadata.labels.is_none() {
            new.metadata.labels = stream.metadata.labels.clone();
        }
        if let Some(t) = new.tag.as_mut() {
            default_tag_reference(t, &self.registries.policy.import_mode);
            t.name = tag.to_string();
        }
        if !create_mode {
            // PrepareForUpdate (§9.5 step 7): the tag's annotations are the object's, before
            // the rule that they be equal is checked.
            let annotations = new.metadata.annotations.clone();
            if let Some(t) = new.tag.as_mut() {
                t.annotations = annotations;
            }
        }
        let mut errs = validate(&new);
        if !create_mode && metadata_changed(&old, &new) {
            errs.push(FieldError::invalid(
                &FieldPath::new("metadata"),
                "",
                "may not update fields other than metadata.annotations",
            ));
        }
        if !errs.is_empty() {
            return Err(invalid(name, errs));
        }
        let spec_existed = stream.spec_tag(tag).is_some();
        if !spec_existed && new.tag.is_none() {
            return Err(ApiError::BadRequest(format!(
                "imagestreamtag {tag} is not a spec tag in imagestream {ns}/{stream_name}, cannot be updated"
            )));
        }
        let annotations = new.metadata.annotations.clone();
        let new_tag = new.tag.clone();
        let apply = move |s: &mut ImageStream| -> Result<(), ApiError> {
            let mut t = match new_tag.clone() {
                Some(t) => t,
                None => s
                    .spec_tag(tag)
                    .cloned()
                    .ok_or_else(|| not_found(RESOURCE, name))?,
            };
            t.annotations = annotations.clone();
            s.spec.tags.retain(|x| x.name != tag);
            s.spec.tags.push(t);
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
        let image = match latest_tagged_image(&written, tag) {
            Some(e) => self.registries.image(&e.image).await?,
            None => None,
        };
        reply(
            &build(&written, tag, image, true)?,
            if spec_existed { 200 } else { 201 },
        )
    }

    async fn delete(&self, req: &Request, name: &str) -> Result<Reply, ApiError> {
        let (stream_name, tag) = parse_stream_tag(name).ok_or_else(bad_name)?;
        delete_tag(&self.registries, req, stream_name, tag, RESOURCE, name).await
    }
}

/// istag and itag DELETE (spec §9.6): the stream must exist, a `preconditions.uid` must be the
/// stream's, and both the spec tag and the history go.
pub async fn delete_tag(
    registries: &Registries,
    req: &Request,
    stream_name: &str,
    tag: &str,
    resource: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let ns = req.namespace.clone().unwrap_or_default();
    let opts = apiserver::delete::DeleteOptions::parse(req)?;
    let Some((stream, _)) = registries.streams.current_stream(&ns, stream_name).await? else {
        return Err(not_found("imagestreams", stream_name));
    };
    if let Some(uid) = &opts.precondition_uid {
        if stream.metadata.uid.as_deref() != Some(uid.as_str()) {
            return Err(ApiError::Conflict {
                qualified: gr(resource).to_string(),
                group: image_api::GROUP.to_string(),
                kind: resource.to_string(),
                name: name.to_string(),
                message: "the UID precondition was not met".to_string(),
            });
        }
    }
    let write = WriteOptions::for_delete(opts.dry_run);
    registries
        .change_stream(
            &WriteContext::new(req, &write),
            stream_name,
            UpdateStrategy::Internal,
            None,
            |s| {
                let before = (s.spec.tags.len(), s.status.tags.len());
                s.spec.tags.retain(|t| t.name != tag);
                s.status.tags.retain(|t| t.tag != tag);
                if before == (s.spec.tags.len(), s.status.tags.len()) {
                    return Err(not_found(resource, name));
                }
                Ok(())
            },
        )
        .await?;
    Ok(Reply::Status {
        code: 200,
        status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    })
}

/// Whether anything but annotations, tag, lookupPolicy and generation changed (§9.5).
fn metadata_changed(old: &ImageStreamTag, new: &ImageStreamTag) -> bool {
    let strip = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let mut m = m.clone();
        m.annotations = None;
        m.managed_fields = None;
        m.resource_version = None;
        m.creation_timestamp = None;
        m.uid = None;
        m
    };
    strip(&old.metadata) != strip(&new.metadata)
}

#[async_trait]
impl Resource for ImageStreamTags {
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
                "Image Reference",
                "string",
                "The pull spec of the tag's current image",
            ),
            ColumnDefinition::new("Updated", "string", "When the tag last changed"),
            ColumnDefinition::new("Image Name", "string", "The current image").wide(),
        ]
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        let reference = object
            .pointer("/image/dockerImageReference")
            .cloned()
            .unwrap_or(json!(""));
        let updated = views::age(object.pointer("/metadata/creationTimestamp"));
        let image = object
            .pointer("/image/metadata/name")
            .cloned()
            .unwrap_or(json!(""));
        vec![name, reference, Value::from(updated), image]
    }
}

/// The function a PATCH applies to a view: the patch (of any type) on the old view's JSON,
/// decoded with the request's field validation.
pub fn patcher<T>(
    req: &Request,
    info: &ResourceInfo,
    opts: &WriteOptions,
) -> Result<impl FnOnce(&T) -> Result<T, ApiError>, ApiError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let patch_type = patch_type(req.content_type.as_deref())?;
    let body = req.body.clone();
    let info = info.clone();
    let warnings = req.warnings.clone();
    let opts = opts.clone();
    Ok(move |old: &T| {
        let doc = apply_patch(old, patch_type, &body, &opts)?;
        decode::typed(doc, &info, opts.field_validation, &warnings).map_err(|e| e.for_body(&info))
    })
}

/// The patch types a tag view accepts: all of them.
pub fn patch_type(ct: Option<&str>) -> Result<PatchType, ApiError> {
    PatchType::from_content_type(ct)
}

/// Applies a patch to a view's JSON. Server-side apply on a view merges the applied
/// configuration as the sole owner would: a view keeps no managedFields of its own, so there
/// is nobody to conflict with and nothing previously applied to remove.
pub fn apply_patch<T: serde::Serialize>(
    old: &T,
    patch_type: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let mut doc = serde_json::to_value(old).map_err(|e| ApiError::Internal(e.to_string()))?;
    match patch_type {
        PatchType::Json => patch::apply_json_patch(&mut doc, body)?,
        PatchType::Merge => patch::apply_merge_patch(&mut doc, body)?,
        PatchType::Strategic => patch::apply_strategic_merge_patch(&mut doc, body, &[])?,
        PatchType::Apply => {
            let Some(manager) = opts.field_manager.as_deref().filter(|m| !m.is_empty()) else {
                return Err(ApiError::invalid(
                    apimachinery::GroupKind::new("meta.k8s.io", "PatchOptions"),
                    "",
                    vec![FieldError::required(
                        &FieldPath::new("fieldManager"),
                        "is required for apply patch",
                    )],
                ));
            };
            let applied = decode::yaml_value(body)?;
            if applied
                .pointer("/metadata/managedFields")
                .is_some_and(|v| !v.is_null())
            {
                return Err(ApiError::BadRequest(
                    "metadata.managedFields must be nil".to_string(),
                ));
            }
            let managed = doc.pointer("/metadata/managedFields").cloned();
            let mut merged = apiserver::apply::apply_to(
                &doc,
                &applied,
                manager,
                image_api::API_VERSION,
                true,
                &[],
                None,
            )
            .map_err(|c| apiserver::apply::conflict_error(&c))?;
            if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
                match managed {
                    Some(m) => meta.insert("managedFields".into(), m),
                    None => meta.remove("managedFields"),
                };
            }
            doc = merged;
        }
    }
    Ok(doc)
}
