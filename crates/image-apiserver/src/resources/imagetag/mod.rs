//! `imagetags` (spec §10): the full view of one tag (spec, history, current image). Fix from
//! design.md: a PUT or PATCH that changes `spec` works (metadata is compared without
//! managedFields).

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::meta::ObjectMeta;
use apimachinery::object::ApiObject;
use apimachinery::table::{human_duration, ColumnDefinition};
use image_api::tags::{latest_tagged_image, resolve_reference};
use image_api::validation::validate_tag_reference;
use image_api::{
    default_tag_reference, Image, ImageStream, ImageTag, TagEventCondition, TagReference,
};
use serde_json::Value;

use crate::resources::tagview::{TagView, TagViews};
use crate::resources::views::{self, not_found};

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

/// The served resource.
pub type ImageTags = TagViews<ItagView>;

/// How an ImageTag is built from its stream and written back to it.
pub struct ItagView;

/// `newITag` (spec §10.1) without the image: `None` when the tag has neither spec nor status.
fn build(stream: &ImageStream, tag: &str) -> Option<ImageTag> {
    let spec = stream.spec_tag(tag).cloned();
    let status = stream.status_tag(tag).cloned();
    if spec.is_none() && status.is_none() {
        return None;
    }
    Some(ImageTag {
        spec,
        status,
        ..empty(stream, tag)
    })
}

/// The view of a tag the stream does not have: the stream's metadata under the view's name.
fn empty(stream: &ImageStream, tag: &str) -> ImageTag {
    let mut it = ImageTag {
        metadata: stream.metadata.clone(),
        ..Default::default()
    };
    it.set_type_meta("ImageTag", image_api::API_VERSION);
    it.metadata.name = Some(format!(
        "{}:{tag}",
        stream.metadata.name.as_deref().unwrap_or("")
    ));
    it
}

/// The view's image: the Image of the latest event, resolved as the tag resolves; a missing
/// Image is no error here, unlike istag (spec §10.1).
fn with_image(mut it: ImageTag, stream: &ImageStream, tag: &str, image: Option<Image>) -> ImageTag {
    if let (Some(event), Some(img)) = (latest_tagged_image(stream, tag), image) {
        it.image = Some(views::image_view(
            img,
            resolve_reference(stream, tag, event),
        ));
    }
    it
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

impl TagView for ItagView {
    type Object = ImageTag;
    const EXISTS_AS: &'static str = RESOURCE;
    const RETRY_BLIND: bool = false;

    fn info() -> ResourceInfo {
        info()
    }

    /// Spec and status tags, sorted (spec §10.2).
    fn listed_tags(stream: &ImageStream) -> Vec<&str> {
        let mut tags: Vec<&str> = stream
            .spec
            .tags
            .iter()
            .map(|t| t.name.as_str())
            .chain(stream.status.tags.iter().map(|t| t.tag.as_str()))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    fn list_item(stream: &ImageStream, tag: &str) -> Option<ImageTag> {
        build(stream, tag)
    }

    fn get_view(
        stream: &ImageStream,
        tag: &str,
        name: &str,
        image: Option<Image>,
    ) -> Result<ImageTag, ApiError> {
        let it = build(stream, tag).ok_or_else(|| not_found(RESOURCE, name))?;
        Ok(with_image(it, stream, tag, image))
    }

    fn view_or_empty(
        stream: &ImageStream,
        tag: &str,
        _name: &str,
        image: Option<Image>,
    ) -> ImageTag {
        let it = build(stream, tag).unwrap_or_else(|| empty(stream, tag));
        with_image(it, stream, tag, image)
    }

    fn default(it: &mut ImageTag, import_mode: &str) {
        if let Some(t) = it.spec.as_mut() {
            default_tag_reference(t, import_mode);
        }
    }

    fn prepare_create(it: &mut ImageTag, tag: &str) {
        if let Some(spec) = it.spec.as_mut().filter(|s| s.name.is_empty()) {
            spec.name = tag.to_string();
        }
        it.status = None;
        it.image = None;
    }

    fn validate_create(it: &ImageTag, tag: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if it.spec.is_none() {
            errs.push(FieldError::required(
                &FieldPath::new("spec"),
                "spec is a required field during creation",
            ));
        }
        errs.extend(validate_spec(it, tag));
        errs
    }

    fn prepare_update(new: &mut ImageTag, old: &ImageTag, _stream: &ImageStream, _tag: &str) {
        new.image = old.image.clone();
    }

    /// Only spec may change (spec §10.4): clients GET, modify spec, and PUT.
    fn validate_update(new: &ImageTag, old: &ImageTag, tag: &str) -> Vec<FieldError> {
        let mut errs = validate_spec(new, tag);
        let strip = |m: &ObjectMeta| ObjectMeta {
            managed_fields: None,
            resource_version: None,
            ..m.clone()
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
        errs
    }

    fn created_spec_tag(it: &ImageTag, tag: &str) -> Option<TagReference> {
        it.spec.clone().map(|mut s| {
            s.name = tag.to_string();
            s
        })
    }

    /// `spec` replaces the spec tag; `spec: null` removes it and keeps the history.
    fn write_to_stream(it: &ImageTag, stream: &mut ImageStream, tag: &str) -> Result<(), ApiError> {
        stream.spec.tags.retain(|t| t.name != tag);
        stream.spec.tags.extend(Self::created_spec_tag(it, tag));
        Ok(())
    }

    fn table_columns() -> Vec<ColumnDefinition> {
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

    fn table_cells(object: &Value) -> Vec<Value> {
        let it = <ImageTag as serde::Deserialize>::deserialize(object).unwrap_or_default();
        let items = it
            .status
            .as_ref()
            .and_then(|s| s.items.clone())
            .unwrap_or_default();
        let history = if items.is_empty() {
            Value::from("")
        } else {
            Value::from(items.len())
        };
        vec![
            Value::from(spec_cell(&it)),
            Value::from(status_cell(&it)),
            history,
            Value::from(updated_cell(&it)),
        ]
    }
}

fn conditions(it: &ImageTag) -> &[TagEventCondition] {
    it.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[])
}

fn first_event(it: &ImageTag) -> Option<&image_api::TagEvent> {
    it.status.as_ref().and_then(|s| s.items.as_ref()?.first())
}

fn spec_generation(it: &ImageTag) -> i64 {
    it.spec.as_ref().and_then(|s| s.generation).unwrap_or(0)
}

/// The Spec cell (spec §10.6): Push when the history is newer than the spec.
fn spec_cell(it: &ImageTag) -> String {
    let first = first_event(it);
    match &it.spec {
        None if first.is_some() => "Push".to_string(),
        None => String::new(),
        Some(_) if first.is_some_and(|f| f.generation > spec_generation(it)) => "Push".to_string(),
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
    }
}

/// The Status cell: a failed import, a pending one, the current image, or the source.
fn status_cell(it: &ImageTag) -> String {
    let failed = conditions(it)
        .iter()
        .find(|c| c.type_ == "ImportSuccess" && c.status == "False");
    let spec_gen = spec_generation(it);
    match first_event(it) {
        _ if failed.is_some() => {
            format!(
                "ImportFailed ({})",
                failed.map(|c| c.reason.as_str()).unwrap_or("")
            )
        }
        Some(f) if f.generation > 0 && spec_gen > 0 && f.generation < spec_gen => {
            "Importing".to_string()
        }
        Some(f) if !f.image.is_empty() => format!("image/{}", f.image),
        Some(f) => f.docker_image_reference.clone(),
        None => source_cell(it),
    }
}

/// Where a tag without history would come from.
fn source_cell(it: &ImageTag) -> String {
    let Some(from) = it.spec.as_ref().and_then(|s| s.from.as_ref()) else {
        return String::new();
    };
    let name = from.name.as_deref().unwrap_or("");
    match from.kind.as_deref() {
        Some("ImageStreamTag") => match from.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) => format!("istag {ns}/{name}"),
            None => format!("istag/{name}"),
        },
        Some("DockerImage") => name.to_string(),
        _ => "InvalidRefKind".to_string(),
    }
}

/// The Updated cell: the latest of the newest event and the conditions' transitions.
fn updated_cell(it: &ImageTag) -> String {
    let event = first_event(it)
        .and_then(|f| f.created.as_ref())
        .map(|t| t.0.as_second());
    let transitions = conditions(it)
        .iter()
        .filter_map(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_second());
    event
        .into_iter()
        .chain(transitions)
        .max()
        .map(|t| {
            format!(
                "{} ago",
                human_duration(jiff::Timestamp::now().as_second() - t)
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app() -> ImageStream {
        serde_json::from_value(json!({
            "metadata": {"name": "app", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"tags": [
                {"name": "v1", "generation": 2,
                 "from": {"kind": "DockerImage", "name": "quay.io/a/b:1"}},
                {"name": "track", "from": {"kind": "ImageStreamTag", "name": "v1"}},
                {"name": "ref", "reference": true,
                 "from": {"kind": "DockerImage", "name": "quay.io/a/b:r"}}
            ]},
            "status": {"tags": [
                {"tag": "v1", "items": [{"created": "2026-01-02T00:00:00Z",
                    "dockerImageReference": "quay.io/a/b@sha256:1", "image": "sha256:1",
                    "generation": 2}]},
                {"tag": "pushed", "items": [{"created": "2026-01-02T00:00:00Z",
                    "dockerImageReference": "r/app@sha256:2", "image": "sha256:2",
                    "generation": 3}]},
                {"tag": "failing", "conditions": [{"type": "ImportSuccess", "status": "False",
                    "reason": "NotFound", "generation": 1}]}
            ]}
        }))
        .expect("stream")
    }

    fn cells(tag: &str) -> Vec<Value> {
        let view = ItagView::list_item(&app(), tag).expect("view");
        ItagView::table_cells(&serde_json::to_value(view).expect("json"))
    }

    #[test]
    fn spec_and_status_tags_are_listed_once_sorted() {
        assert_eq!(
            ItagView::listed_tags(&app()),
            vec!["failing", "pushed", "ref", "track", "v1"]
        );
        assert!(ItagView::get_view(&app(), "none", "app:none", None).is_err());
        let empty = ItagView::view_or_empty(&app(), "none", "app:none", None);
        assert_eq!(empty.metadata.name.as_deref(), Some("app:none"));
        assert_eq!(empty.metadata.resource_version.as_deref(), Some("7"));
        assert!(empty.spec.is_none() && empty.status.is_none());
    }

    #[test]
    fn table_cells_say_what_each_tag_does() {
        assert_eq!(
            cells("v1")[..3],
            [json!("Tag"), json!("image/sha256:1"), json!(1)]
        );
        assert_eq!(
            cells("pushed")[..3],
            [json!("Push"), json!("image/sha256:2"), json!(1)]
        );
        assert_eq!(
            cells("track")[..3],
            [json!("Track"), json!("istag/v1"), json!("")]
        );
        assert_eq!(
            cells("ref")[..3],
            [json!("Ref"), json!("quay.io/a/b:r"), json!("")]
        );
        assert_eq!(cells("failing")[1], json!("ImportFailed (NotFound)"));
    }

    #[test]
    fn create_requires_a_spec_named_after_the_tag() {
        let mut it = ImageTag::default();
        ItagView::prepare_create(&mut it, "x");
        let errs = ItagView::validate_create(&it, "x");
        assert_eq!(
            errs[0].to_string(),
            "spec: Required value: spec is a required field during creation"
        );
        it.spec = Some(TagReference {
            name: "y".into(),
            ..Default::default()
        });
        let errs = ItagView::validate_create(&it, "x");
        assert_eq!(
            errs[0].to_string(),
            "spec.name: Invalid value: \"y\": must match image tag name"
        );
        it.spec = Some(TagReference::default());
        ItagView::default(&mut it, "Legacy");
        ItagView::prepare_create(&mut it, "x");
        assert!(ItagView::validate_create(&it, "x").is_empty());
    }

    #[test]
    fn an_update_may_change_only_spec() {
        let s = app();
        let old = ItagView::view_or_empty(&s, "v1", "app:v1", None);
        let mut new = old.clone();
        new.spec.as_mut().expect("spec").reference = true;
        ItagView::default(&mut new, "Legacy");
        ItagView::prepare_update(&mut new, &old, &s, "v1");
        assert!(ItagView::validate_update(&new, &old, "v1").is_empty());
        let mut relabelled = new.clone();
        relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        let mut restatused = new.clone();
        restatused.status = None;
        let meta_errs = ItagView::validate_update(&relabelled, &old, "v1");
        let status_errs = ItagView::validate_update(&restatused, &old, "v1");
        assert_eq!(
            meta_errs[0].to_string(),
            "metadata: Invalid value: \"\": may not update fields other than spec"
        );
        assert_eq!(
            status_errs[0].to_string(),
            "status: Invalid value: \"\": may not update fields other than spec"
        );
    }

    #[test]
    fn a_null_spec_removes_the_spec_tag_and_keeps_history() {
        let mut s = app();
        let mut it = ItagView::view_or_empty(&s, "v1", "app:v1", None);
        it.spec = None;
        ItagView::write_to_stream(&it, &mut s, "v1").expect("write");
        assert!(s.spec_tag("v1").is_none());
        assert!(s.status_tag("v1").is_some());
    }
}
