//! What an import does to an image stream (spec §13.2 step 10, §13.6): pure functions from an
//! ImageStreamImport's results to the stream's spec tags, tag history and conditions. The
//! importer fetches; the REST layer persists; this decides.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, Time};

use crate::reference::DockerImageReference;
use crate::tags::{add_tag_event, new_event, sort_status_tags};
use crate::{
    default_tag_reference, ImageImportStatus, ImageStream, ImageStreamImport, NamedTagEventList,
    TagEventCondition, TagImportPolicy, TagReference, TagReferencePolicy,
};

/// The annotation an import sets on the stream it wrote (RFC 3339, UTC).
pub const REPOSITORY_CHECK_ANNOTATION: &str = "openshift.io/image.dockerRepositoryCheck";
pub const IMPORT_SUCCESS: &str = "ImportSuccess";
const UNKNOWN_FAILURE: &str = "unknown error prevented import";

/// Whether a per-image status is a success.
pub fn succeeded(status: &Status) -> bool {
    status.status.as_deref() == Some("Success")
}

/// When and with which defaults an import records its results.
pub struct ImportWrite<'a> {
    /// The stream's generation after this write: `generation + 1` (1 for a new stream).
    pub next_generation: i64,
    pub now: Time,
    /// The import mode spec tags default to.
    pub import_mode: &'a str,
}

/// Records the results of `isi` (whose status the importer filled) in `stream`. Returns whether
/// the stream changed.
pub fn apply_import(stream: &mut ImageStream, isi: &ImageStreamImport, w: &ImportWrite) -> bool {
    let before = stream.clone();
    if let (Some(spec), Some(status)) = (&isi.spec.repository, &isi.status.repository) {
        let repository = spec.from.name.as_deref().unwrap_or("");
        for result in &status.images {
            if result.tag.is_empty() {
                continue;
            }
            let from = DockerImageReference::parse(repository)
                .map(|mut r| {
                    r.tag = result.tag.clone();
                    r.id.clear();
                    r.exact()
                })
                .unwrap_or_else(|_| format!("{repository}:{}", result.tag));
            let policies = (&spec.import_policy, &spec.reference_policy);
            record(stream, &result.tag, &from, result, policies, w);
        }
    }
    for (spec, result) in isi.spec.images.iter().zip(&isi.status.images) {
        let Some(to) = spec.to.as_ref().filter(|to| !to.name.is_empty()) else {
            continue;
        };
        let from = spec.from.name.as_deref().unwrap_or("");
        let policies = (&spec.import_policy, &spec.reference_policy);
        record(stream, &to.name, from, result, policies, w);
    }
    sort_status_tags(stream);
    *stream != before
}

fn record(
    stream: &mut ImageStream,
    tag: &str,
    from: &str,
    result: &ImageImportStatus,
    (import_policy, reference_policy): (&TagImportPolicy, &TagReferencePolicy),
    w: &ImportWrite,
) {
    match result.image.as_ref().filter(|_| succeeded(&result.status)) {
        Some(image) => {
            let image_name = image.metadata.name.as_deref().unwrap_or("");
            let event = new_event(
                &image.docker_image_reference,
                image_name,
                w.next_generation,
                w.now.clone(),
            );
            import_successful(stream, tag, from, event, import_policy, reference_policy, w);
        }
        None => {
            set_failure_condition(stream, tag, &result.status, w);
            ensure_spec_tag(stream, tag, from, import_policy, reference_policy, w);
        }
    }
}

/// upstream's `importSuccessful`: a changed tag is reset to follow `from` and gets the event;
/// every imported tag takes the request's import policy and loses its conditions.
fn import_successful(
    stream: &mut ImageStream,
    tag: &str,
    from: &str,
    event: crate::TagEvent,
    import_policy: &TagImportPolicy,
    reference_policy: &TagReferencePolicy,
    w: &ImportWrite,
) {
    if tag_changed(stream, tag, &event) {
        let index = spec_tag_index(stream, tag);
        let spec = &mut stream.spec.tags[index];
        spec.from = Some(docker_image(from));
        spec.generation = Some(0);
        spec.import_policy = import_policy.clone();
        // An import never changes a reference policy the tag already has.
        if spec.reference_policy.type_.is_empty() {
            spec.reference_policy = reference_policy.clone();
        }
        default_tag_reference(spec, w.import_mode);
        add_tag_event(stream, tag, event);
    }
    if let Some(spec) = stream.spec.tags.iter_mut().find(|t| t.name == tag) {
        spec.import_policy = import_policy.clone();
        default_tag_reference(spec, w.import_mode);
    }
    if let Some(list) = stream.status.tags.iter_mut().find(|t| t.tag == tag) {
        list.conditions.clear();
    }
}

fn tag_changed(stream: &ImageStream, tag: &str, event: &crate::TagEvent) -> bool {
    let Some(first) = stream
        .status_tag(tag)
        .and_then(|l| l.items.as_ref())
        .and_then(|items| items.first())
    else {
        return true;
    };
    let Some(spec_generation) = stream.spec_tag(tag).and_then(|t| t.generation) else {
        return true;
    };
    first.docker_image_reference != event.docker_image_reference
        || first.image != event.image
        || spec_generation > first.generation
}

/// The index of the spec tag `tag`, added empty when missing.
fn spec_tag_index(stream: &mut ImageStream, tag: &str) -> usize {
    if let Some(i) = stream.spec.tags.iter().position(|t| t.name == tag) {
        return i;
    }
    stream.spec.tags.push(TagReference {
        name: tag.to_string(),
        ..Default::default()
    });
    stream.spec.tags.len() - 1
}

fn docker_image(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("DockerImage".to_string()),
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// A failed tag keeps (or gets) a spec tag following `from`, never reset.
fn ensure_spec_tag(
    stream: &mut ImageStream,
    tag: &str,
    from: &str,
    import_policy: &TagImportPolicy,
    reference_policy: &TagReferencePolicy,
    w: &ImportWrite,
) {
    if stream.spec_tag(tag).is_some() {
        return;
    }
    let mut spec = TagReference {
        name: tag.to_string(),
        from: Some(docker_image(from)),
        generation: Some(0),
        import_policy: import_policy.clone(),
        reference_policy: reference_policy.clone(),
        ..Default::default()
    };
    default_tag_reference(&mut spec, w.import_mode);
    stream.spec.tags.push(spec);
}

/// §13.6: the tag's conditions become one ImportSuccess=False condition, unless an identical
/// one is there already; only a new condition resets the spec tag's generation (asking for a
/// stream generation bump).
pub fn set_failure_condition(
    stream: &mut ImageStream,
    tag: &str,
    status: &Status,
    w: &ImportWrite,
) {
    let reason = status.reason.clone().unwrap_or_default();
    let message = status
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| UNKNOWN_FAILURE.to_string());
    let condition = TagEventCondition {
        type_: IMPORT_SUCCESS.to_string(),
        status: "False".to_string(),
        last_transition_time: Some(w.now.clone()),
        reason,
        message,
        generation: w.next_generation,
    };
    let list = match stream.status.tags.iter().position(|t| t.tag == tag) {
        Some(i) => &mut stream.status.tags[i],
        None => {
            stream.status.tags.push(NamedTagEventList {
                tag: tag.to_string(),
                items: None,
                conditions: Vec::new(),
            });
            let last = stream.status.tags.len() - 1;
            &mut stream.status.tags[last]
        }
    };
    let same = list.conditions.iter().any(|c| {
        c.type_ == condition.type_
            && c.status == condition.status
            && c.reason == condition.reason
            && c.message == condition.message
    });
    if same {
        return;
    }
    list.conditions = vec![condition];
    if let Some(spec) = stream.spec.tags.iter_mut().find(|t| t.name == tag) {
        spec.generation = Some(0);
    }
}

/// The response drops raw manifests and configs of entries that did not ask for them.
pub fn clear_unrequested_manifests(isi: &mut ImageStreamImport) {
    let clear = |result: &mut ImageImportStatus| {
        for image in result.image.iter_mut().chain(result.manifests.iter_mut()) {
            image.docker_image_manifest.clear();
            image.docker_image_config.clear();
        }
    };
    for (spec, result) in isi.spec.images.iter().zip(isi.status.images.iter_mut()) {
        if !spec.include_manifest {
            clear(result);
        }
    }
    if let (Some(spec), Some(status)) = (&isi.spec.repository, isi.status.repository.as_mut()) {
        if !spec.include_manifest {
            status.images.iter_mut().for_each(clear);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Image, ImageImportSpec, RepositoryImportSpec, RepositoryImportStatus};
    use k8s_openapi::api::core::v1::LocalObjectReference;

    fn write(next: i64) -> ImportWrite<'static> {
        ImportWrite {
            next_generation: next,
            now: Time("2026-11-29T10:00:00Z".parse().unwrap()),
            import_mode: "Legacy",
        }
    }

    fn success(digest: &str, reference: &str) -> ImageImportStatus {
        let mut image = Image {
            docker_image_reference: reference.to_string(),
            ..Default::default()
        };
        image.metadata.name = Some(digest.to_string());
        ImageImportStatus {
            status: Status {
                status: Some("Success".into()),
                ..Default::default()
            },
            image: Some(image),
            ..Default::default()
        }
    }

    fn failure(reason: &str, message: &str) -> ImageImportStatus {
        ImageImportStatus {
            status: Status {
                status: Some("Failure".into()),
                reason: Some(reason.into()),
                message: Some(message.into()),
                code: Some(404),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn single(from: &str, to: &str, result: ImageImportStatus) -> ImageStreamImport {
        let mut isi = ImageStreamImport::default();
        isi.spec.import = true;
        isi.spec.images.push(ImageImportSpec {
            from: docker_image(from),
            to: Some(LocalObjectReference { name: to.into() }),
            ..Default::default()
        });
        isi.status.images.push(result);
        isi
    }

    #[test]
    fn a_new_tag_gets_its_spec_and_first_event() {
        let mut s = ImageStream::default();
        let isi = single(
            "r:5000/a/b:1",
            "v1",
            success("sha256:1", "r:5000/a/b@sha256:1"),
        );
        assert!(apply_import(&mut s, &isi, &write(1)));
        let spec = s.spec_tag("v1").unwrap();
        assert_eq!(
            spec.from.as_ref().unwrap().name.as_deref(),
            Some("r:5000/a/b:1")
        );
        assert_eq!(spec.generation, Some(0));
        assert_eq!(spec.reference_policy.type_, "Source");
        assert_eq!(spec.import_policy.import_mode, "Legacy");
        let items = s.status_tag("v1").unwrap().items.clone().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].image, "sha256:1");
        assert_eq!(items[0].docker_image_reference, "r:5000/a/b@sha256:1");
        assert_eq!(items[0].generation, 1);
    }

    #[test]
    fn reimporting_the_same_image_changes_nothing() {
        let mut s = ImageStream::default();
        let isi = single("r/a/b:1", "v1", success("sha256:1", "r/a/b@sha256:1"));
        apply_import(&mut s, &isi, &write(1));
        // After the write, the strategy gives the reset tag the new generation.
        s.spec.tags[0].generation = Some(1);
        assert!(!apply_import(&mut s, &isi, &write(2)));
    }

    #[test]
    fn a_new_image_is_prepended_and_a_kept_reference_policy_stays() {
        let mut s = ImageStream::default();
        apply_import(
            &mut s,
            &single("r/a/b:1", "v1", success("sha256:1", "r/a/b@sha256:1")),
            &write(1),
        );
        s.spec.tags[0].generation = Some(1);
        s.spec.tags[0].reference_policy.type_ = "Local".into();
        let next = single("r/a/b:1", "v1", success("sha256:2", "r/a/b@sha256:2"));
        assert!(apply_import(&mut s, &next, &write(2)));
        let items = s.status_tag("v1").unwrap().items.clone().unwrap();
        assert_eq!(
            items.iter().map(|i| i.image.as_str()).collect::<Vec<_>>(),
            ["sha256:2", "sha256:1"]
        );
        assert_eq!(s.spec.tags[0].reference_policy.type_, "Local");
        assert_eq!(s.spec.tags[0].generation, Some(0));
    }

    #[test]
    fn a_failure_sets_one_condition_once_and_keeps_the_spec_tag() {
        let mut s = ImageStream::default();
        let isi = single("r/a/b:nope", "v1", failure("NotFound", "not found"));
        assert!(apply_import(&mut s, &isi, &write(1)));
        let list = s.status_tag("v1").unwrap();
        assert_eq!(list.conditions.len(), 1);
        assert_eq!(list.conditions[0].reason, "NotFound");
        assert_eq!(list.conditions[0].status, "False");
        assert_eq!(list.conditions[0].generation, 1);
        assert_eq!(s.spec_tag("v1").unwrap().generation, Some(0));
        // The same failure again: nothing changes (no generation bump, no new condition).
        s.spec.tags[0].generation = Some(1);
        assert!(!apply_import(&mut s, &isi, &write(2)));
        assert_eq!(s.spec_tag("v1").unwrap().generation, Some(1));
        // A different message is a new condition.
        let other = single("r/a/b:nope", "v1", failure("NotFound", "gone"));
        assert!(apply_import(&mut s, &other, &write(2)));
        assert_eq!(s.status_tag("v1").unwrap().conditions[0].message, "gone");
    }

    #[test]
    fn success_clears_conditions() {
        let mut s = ImageStream::default();
        apply_import(
            &mut s,
            &single("r/a/b:1", "v1", failure("NotFound", "x")),
            &write(1),
        );
        apply_import(
            &mut s,
            &single("r/a/b:1", "v1", success("sha256:1", "r/a/b@sha256:1")),
            &write(2),
        );
        assert!(s.status_tag("v1").unwrap().conditions.is_empty());
    }

    #[test]
    fn images_without_a_target_tag_are_ignored() {
        let mut s = ImageStream::default();
        let mut isi = single("r/a/b:1", "v1", success("sha256:1", "r/a/b@sha256:1"));
        isi.spec.images[0].to = None;
        assert!(!apply_import(&mut s, &isi, &write(1)));
    }

    #[test]
    fn repository_tags_follow_the_repository_with_their_tag() {
        let mut s = ImageStream::default();
        let mut isi = ImageStreamImport::default();
        isi.spec.repository = Some(RepositoryImportSpec {
            from: docker_image("r:5000/a/b"),
            ..Default::default()
        });
        let mut ok = success("sha256:1", "r:5000/a/b@sha256:1");
        ok.tag = "3.1".into();
        isi.status.repository = Some(RepositoryImportStatus {
            images: vec![ok],
            ..Default::default()
        });
        assert!(apply_import(&mut s, &isi, &write(1)));
        let from = s.spec_tag("3.1").unwrap().from.clone().unwrap();
        assert_eq!(from.name.as_deref(), Some("r:5000/a/b:3.1"));
    }

    #[test]
    fn manifests_are_cleared_unless_asked_for() {
        let mut isi = single("r/a/b:1", "v1", success("sha256:1", "r/a/b@sha256:1"));
        isi.status.images[0]
            .image
            .as_mut()
            .unwrap()
            .docker_image_manifest = "{}".into();
        let mut kept = isi.clone();
        kept.spec.images[0].include_manifest = true;
        clear_unrequested_manifests(&mut isi);
        clear_unrequested_manifests(&mut kept);
        assert!(isi.status.images[0]
            .image
            .as_ref()
            .unwrap()
            .docker_image_manifest
            .is_empty());
        assert_eq!(
            kept.status.images[0]
                .image
                .as_ref()
                .unwrap()
                .docker_image_manifest,
            "{}"
        );
    }
}
