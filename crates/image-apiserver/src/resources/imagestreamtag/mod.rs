//! `imagestreamtags` (spec §9): one tag of a stream as an object, read from and written to the
//! stream. Fixes from design.md: a name without `:` is a 400; POST copies
//! `metadata.annotations` into the spec tag as PUT does; field selectors match istag names.

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{BadValue, FieldError, FieldPath};
use apimachinery::meta::ObjectMeta;
use apimachinery::object::ApiObject;
use apimachinery::table::ColumnDefinition;
use apimachinery::validation::path_segment_name_errors;
use image_api::tags::{latest_tagged_image, resolve_reference};
use image_api::validation::validate_tag_reference;
use image_api::{
    default_tag_reference, Image, ImageStream, ImageStreamTag, TagEvent, TagReference,
};
use serde_json::{json, Value};

use crate::resources::tagview::{TagView, TagViews};
use crate::resources::views::{self, not_found};

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

/// The served resource.
pub type ImageStreamTags = TagViews<IstagView>;

/// How an ImageStreamTag is built from its stream and written back to it.
pub struct IstagView;

/// The event an istag shows: the tag's latest, if it has an image.
fn shown_event(stream: &ImageStream, tag: &str) -> Option<TagEvent> {
    latest_tagged_image(stream, tag)
        .filter(|e| !e.image.is_empty())
        .cloned()
}

/// What an istag without an image shows (`allowEmpty`, spec §9.1).
fn empty_event(stream: &ImageStream) -> TagEvent {
    TagEvent {
        created: stream.metadata.creation_timestamp.clone(),
        docker_image_reference: String::new(),
        image: String::new(),
        generation: 0,
    }
}

/// `newISTag` (spec §9.1) for the event shown; `image` is the event's Image when found.
fn build(
    stream: &ImageStream,
    tag: &str,
    event: &TagEvent,
    image: Option<Image>,
) -> ImageStreamTag {
    let spec_tag = stream.spec_tag(tag).cloned();
    let mut ist = ImageStreamTag::default();
    ist.set_type_meta("ImageStreamTag", image_api::API_VERSION);
    ist.metadata = ObjectMeta {
        name: Some(format!(
            "{}:{tag}",
            stream.metadata.name.as_deref().unwrap_or("")
        )),
        namespace: stream.metadata.namespace.clone(),
        uid: stream.metadata.uid.clone(),
        resource_version: stream.metadata.resource_version.clone(),
        creation_timestamp: event.created.clone(),
        labels: stream.metadata.labels.clone(),
        annotations: spec_tag.as_ref().and_then(|t| t.annotations.clone()),
        ..Default::default()
    };
    ist.generation = event.generation;
    ist.conditions = stream
        .status_tag(tag)
        .map(|l| l.conditions.clone())
        .unwrap_or_default();
    ist.lookup_policy = stream.spec.lookup_policy.clone();
    ist.image = image_of(stream, tag, event, image, spec_tag.as_ref());
    ist.tag = spec_tag;
    ist
}

/// The istag's image: the Image with the spec tag's annotations merged in, or only its name;
/// in both cases with the reference the tag resolves to.
fn image_of(
    stream: &ImageStream,
    tag: &str,
    event: &TagEvent,
    image: Option<Image>,
    spec_tag: Option<&TagReference>,
) -> Image {
    let reference = resolve_reference(stream, tag, event);
    match image {
        Some(mut img) => {
            if let Some(extra) = spec_tag.and_then(|t| t.annotations.clone()) {
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
    }
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

/// Whether anything but annotations, tag, lookupPolicy and generation changed (§9.5).
fn metadata_changed(old: &ImageStreamTag, new: &ImageStreamTag) -> bool {
    let strip = |m: &ObjectMeta| ObjectMeta {
        annotations: None,
        managed_fields: None,
        resource_version: None,
        creation_timestamp: None,
        uid: None,
        ..m.clone()
    };
    strip(&old.metadata) != strip(&new.metadata)
}

impl TagView for IstagView {
    type Object = ImageStreamTag;
    const EXISTS_AS: &'static str = "imagestreamtag";
    const RETRY_BLIND: bool = true;

    fn info() -> ResourceInfo {
        info()
    }

    fn listed_tags(stream: &ImageStream) -> Vec<&str> {
        let mut tags: Vec<&str> = stream.status.tags.iter().map(|t| t.tag.as_str()).collect();
        tags.sort_unstable();
        tags
    }

    fn list_item(stream: &ImageStream, tag: &str) -> Option<ImageStreamTag> {
        shown_event(stream, tag).map(|e| build(stream, tag, &e, None))
    }

    /// Without an image there is no istag, even when the spec tag exists (spec §9.2); a
    /// deleted Image is a 404 naming it.
    fn get_view(
        stream: &ImageStream,
        tag: &str,
        name: &str,
        image: Option<Image>,
    ) -> Result<ImageStreamTag, ApiError> {
        let event = shown_event(stream, tag).ok_or_else(|| not_found(RESOURCE, name))?;
        let image = image.ok_or_else(|| not_found(RESOURCE, &event.image))?;
        Ok(build(stream, tag, &event, Some(image)))
    }

    fn view_or_empty(
        stream: &ImageStream,
        tag: &str,
        _name: &str,
        image: Option<Image>,
    ) -> ImageStreamTag {
        let event = shown_event(stream, tag).unwrap_or_else(|| empty_event(stream));
        build(stream, tag, &event, image)
    }

    fn default(ist: &mut ImageStreamTag, import_mode: &str) {
        if let Some(t) = ist.tag.as_mut() {
            default_tag_reference(t, import_mode);
        }
    }

    fn prepare_create(ist: &mut ImageStreamTag, tag: &str) {
        if let Some(t) = ist.tag.as_mut().filter(|t| t.name.is_empty()) {
            t.name = tag.to_string();
        }
        ist.conditions.clear();
        ist.image = Image::default();
    }

    fn validate_create(ist: &ImageStreamTag, _tag: &str) -> Vec<FieldError> {
        validate(ist)
    }

    /// Spec §9.5 steps 6 and 7: the stream's labels when the body has none (back-compat), the
    /// tag's annotations are the object's (before the rule that they be equal is checked),
    /// and conditions and image are not the client's to set.
    fn prepare_update(
        new: &mut ImageStreamTag,
        old: &ImageStreamTag,
        stream: &ImageStream,
        tag: &str,
    ) {
        if new.metadata.labels.is_none() {
            new.metadata.labels = stream.metadata.labels.clone();
        }
        let annotations = new.metadata.annotations.clone();
        if let Some(t) = new.tag.as_mut() {
            t.name = tag.to_string();
            t.annotations = annotations;
        }
        new.conditions = old.conditions.clone();
        new.image = old.image.clone();
    }

    fn validate_update(new: &ImageStreamTag, old: &ImageStreamTag, _tag: &str) -> Vec<FieldError> {
        let mut errs = validate(new);
        if metadata_changed(old, new) {
            errs.push(FieldError::invalid(
                &FieldPath::new("metadata"),
                "",
                "may not update fields other than metadata.annotations",
            ));
        }
        errs
    }

    /// design.md: a POST copies `metadata.annotations` into the spec tag, as a PUT does.
    fn created_spec_tag(ist: &ImageStreamTag, tag: &str) -> Option<TagReference> {
        ist.tag.clone().map(|mut t| {
            t.name = tag.to_string();
            t.annotations = ist.metadata.annotations.clone();
            t
        })
    }

    /// Spec §9.5 steps 8 and 9: the body's tag replaces the spec tag, whose annotations are
    /// the object's; `lookupPolicy` cannot change the stream.
    fn write_to_stream(
        ist: &ImageStreamTag,
        stream: &mut ImageStream,
        tag: &str,
    ) -> Result<(), ApiError> {
        let Some(mut spec_tag) = ist.tag.clone().or_else(|| stream.spec_tag(tag).cloned()) else {
            return Err(ApiError::BadRequest(format!(
                "imagestreamtag {tag} is not a spec tag in imagestream {}/{}, cannot be updated",
                stream.metadata.namespace.as_deref().unwrap_or(""),
                stream.metadata.name.as_deref().unwrap_or("")
            )));
        };
        spec_tag.name = tag.to_string();
        spec_tag.annotations = ist.metadata.annotations.clone();
        stream.spec.tags.retain(|x| x.name != tag);
        stream.spec.tags.push(spec_tag);
        Ok(())
    }

    fn table_columns() -> Vec<ColumnDefinition> {
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

    fn table_cells(object: &Value) -> Vec<Value> {
        let reference = object
            .pointer("/image/dockerImageReference")
            .cloned()
            .unwrap_or(json!(""));
        let updated = views::age(object.pointer("/metadata/creationTimestamp"));
        let image = object
            .pointer("/image/metadata/name")
            .cloned()
            .unwrap_or(json!(""));
        vec![reference, Value::from(updated), image]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(value: Value) -> ImageStream {
        serde_json::from_value(value).expect("stream")
    }

    /// A stream with a spec tag `v1` (annotated) whose history has an image, and a spec-only
    /// tag `next`.
    fn app() -> ImageStream {
        stream(json!({
            "metadata": {"name": "app", "namespace": "ns", "resourceVersion": "7",
                "labels": {"team": "a"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"tags": [
                {"name": "v1", "annotations": {"note": "x"},
                 "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}},
                {"name": "next", "from": {"kind": "DockerImage", "name": "quay.io/a/b:2"}}
            ]},
            "status": {"tags": [{"tag": "v1", "items": [{"created": "2026-01-02T00:00:00Z",
                "dockerImageReference": "quay.io/a/b@sha256:1", "image": "sha256:1",
                "generation": 1}]}]}
        }))
    }

    #[test]
    fn only_tags_with_an_image_are_listed_or_got() {
        let s = app();
        assert_eq!(IstagView::listed_tags(&s), vec!["v1"]);
        assert!(IstagView::list_item(&s, "next").is_none());
        let got = IstagView::get_view(&s, "next", "app:next", None).expect_err("no image");
        assert_eq!(
            got.to_string(),
            "imagestreamtags.image.openshift.io \"app:next\" not found"
        );
        let deleted = IstagView::get_view(&s, "v1", "app:v1", None).expect_err("image gone");
        assert!(deleted.to_string().contains("\"sha256:1\" not found"));
    }

    #[test]
    fn the_view_takes_stream_identity_and_the_spec_tags_annotations() {
        let ist = IstagView::list_item(&app(), "v1").expect("view");
        assert_eq!(ist.metadata.name.as_deref(), Some("app:v1"));
        assert_eq!(ist.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(ist.metadata.labels, app().metadata.labels);
        assert_eq!(
            ist.metadata.annotations,
            Some([("note".to_string(), "x".to_string())].into())
        );
        assert_eq!(ist.image.metadata.name.as_deref(), Some("sha256:1"));
        assert_eq!(ist.image.docker_image_reference, "quay.io/a/b@sha256:1");
        let empty = IstagView::view_or_empty(&app(), "next", "app:next", None);
        assert_eq!(
            empty.metadata.creation_timestamp,
            app().metadata.creation_timestamp
        );
    }

    #[test]
    fn an_update_may_change_annotations_and_tag_but_not_labels() {
        let s = app();
        let old = IstagView::view_or_empty(&s, "v1", "app:v1", None);
        let mut new = old.clone();
        new.metadata.annotations = Some([("note".to_string(), "y".to_string())].into());
        IstagView::default(&mut new, "Legacy");
        IstagView::prepare_update(&mut new, &old, &s, "v1");
        let tag = new.tag.as_ref().expect("tag");
        assert_eq!(tag.annotations, new.metadata.annotations);
        assert!(IstagView::validate_update(&new, &old, "v1").is_empty());

        let mut relabelled = old.clone();
        relabelled.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        IstagView::default(&mut relabelled, "Legacy");
        IstagView::prepare_update(&mut relabelled, &old, &s, "v1");
        let errs = IstagView::validate_update(&relabelled, &old, "v1");
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "metadata: Invalid value: \"\": may not update fields other than metadata.annotations"
        );
    }

    #[test]
    fn no_labels_in_the_body_keep_the_streams() {
        let s = app();
        let old = IstagView::view_or_empty(&s, "v1", "app:v1", None);
        let mut new = old.clone();
        new.metadata.labels = None;
        IstagView::prepare_update(&mut new, &old, &s, "v1");
        assert_eq!(new.metadata.labels, s.metadata.labels);
    }

    #[test]
    fn creates_validate_the_tag_annotations_rule() {
        let mut ist = ImageStreamTag::default();
        ist.metadata.name = Some("app:v2".into());
        ist.tag = Some(TagReference {
            annotations: Some([("a".to_string(), "1".to_string())].into()),
            ..Default::default()
        });
        IstagView::default(&mut ist, "Legacy");
        IstagView::prepare_create(&mut ist, "v2");
        assert_eq!(ist.tag.as_ref().map(|t| t.name.as_str()), Some("v2"));
        let errs = IstagView::validate_create(&ist, "v2");
        assert!(errs.iter().any(|e| e.to_string().contains(
            "tag annotations must not be provided or must be equal to the object meta annotations"
        )));
        ist.metadata.annotations = Some([("a".to_string(), "1".to_string())].into());
        assert!(IstagView::validate_create(&ist, "v2").is_empty());
        let spec = IstagView::created_spec_tag(&ist, "v2").expect("spec tag");
        assert_eq!(spec.annotations, ist.metadata.annotations);
    }

    #[test]
    fn writing_a_view_without_tag_needs_an_existing_spec_tag() {
        let mut s = app();
        let mut ist = IstagView::view_or_empty(&s, "v1", "app:v1", None);
        ist.tag = None;
        ist.metadata.annotations = Some([("note".to_string(), "z".to_string())].into());
        IstagView::write_to_stream(&ist, &mut s, "v1").expect("annotate");
        let v1 = s.spec_tag("v1").expect("v1");
        assert_eq!(v1.annotations, ist.metadata.annotations);
        assert_eq!(
            v1.from.as_ref().and_then(|f| f.name.as_deref()),
            Some("quay.io/a/b:1")
        );
        let err = IstagView::write_to_stream(&ist, &mut s, "pushed").expect_err("no spec tag");
        assert_eq!(
            err.to_string(),
            "imagestreamtag pushed is not a spec tag in imagestream ns/app, cannot be updated"
        );
    }
}
