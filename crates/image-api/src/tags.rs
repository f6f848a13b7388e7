//! Tag history (spec §2.3), tracking tags, and reference-policy resolution (§2.4).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::{ImageStream, NamedTagEventList, TagEvent, REFERENCE_POLICY_LOCAL};

/// Adds `next` to the history of `tag` (`AddTagEventToImageStream`). Returns whether the
/// stream changed.
pub fn add_tag_event(stream: &mut ImageStream, tag: &str, next: TagEvent) -> bool {
    let Some(list) = stream.status.tags.iter_mut().find(|t| t.tag == tag) else {
        stream.status.tags.push(NamedTagEventList {
            tag: tag.to_string(),
            items: Some(vec![next]),
            conditions: Vec::new(),
        });
        sort_status_tags(stream);
        return true;
    };
    let items = list.items.get_or_insert_with(Vec::new);
    let Some(prev) = items.first_mut() else {
        items.push(next);
        list.conditions.clear();
        return true;
    };
    let same_ref = prev.docker_image_reference == next.docker_image_reference;
    let same_image = prev.image == next.image;
    match (same_ref, same_image) {
        (true, true) if prev.generation == next.generation => return false,
        (true, true) => prev.generation = next.generation,
        (true, false) => {
            prev.image = next.image;
            prev.generation = next.generation;
        }
        (false, true) => {
            prev.docker_image_reference = next.docker_image_reference;
            prev.generation = next.generation;
        }
        (false, false) => items.insert(0, next),
    }
    list.conditions.clear();
    true
}

pub fn sort_status_tags(stream: &mut ImageStream) {
    stream.status.tags.sort_by(|a, b| a.tag.cmp(&b.tag));
}

/// The current image of `tag` (empty means `latest`): `items[0]`.
pub fn latest_tagged_image<'a>(stream: &'a ImageStream, tag: &str) -> Option<&'a TagEvent> {
    let tag = if tag.is_empty() {
        crate::DEFAULT_IMAGE_TAG
    } else {
        tag
    };
    stream
        .status_tag(tag)
        .and_then(|l| l.items.as_ref())
        .and_then(|items| items.first())
}

/// `UpdateTrackingTags`: every spec tag of the same stream that follows `updated_tag` gets
/// the same event. Returns the tags that changed.
pub fn update_tracking_tags(stream: &mut ImageStream, updated_tag: &str) -> Vec<String> {
    let Some(event) = latest_tagged_image(stream, updated_tag).cloned() else {
        return Vec::new();
    };
    let namespace = stream.metadata.namespace.clone().unwrap_or_default();
    let stream_name = stream.metadata.name.clone().unwrap_or_default();
    let qualified = format!("{stream_name}:{updated_tag}");
    let followers: Vec<String> = stream
        .spec
        .tags
        .iter()
        .filter(|t| t.name != updated_tag)
        .filter(|t| {
            t.from.as_ref().is_some_and(|from| {
                from.kind.as_deref() == Some("ImageStreamTag")
                    && from
                        .namespace
                        .as_deref()
                        .is_none_or(|ns| ns.is_empty() || ns == namespace)
                    && from
                        .name
                        .as_deref()
                        .is_some_and(|n| n == updated_tag || n == qualified)
            })
        })
        .map(|t| t.name.clone())
        .collect();
    let mut changed = Vec::new();
    for follower in followers {
        if add_tag_event(stream, &follower, event.clone()) {
            changed.push(follower);
        }
    }
    changed
}

/// `ResolveReferenceForTagEvent`: the pull spec a tag event means under the tag's reference
/// policy.
pub fn resolve_reference(stream: &ImageStream, tag: &str, event: &TagEvent) -> String {
    let local = stream
        .spec_tag(tag)
        .is_some_and(|t| t.reference_policy.type_ == REFERENCE_POLICY_LOCAL);
    let repo = &stream.status.docker_image_repository;
    if local
        && !repo.is_empty()
        && !event.image.is_empty()
        && crate::reference::DockerImageReference::parse(repo).is_ok()
    {
        return format!("{repo}@{}", event.image);
    }
    event.docker_image_reference.clone()
}

/// A tag event created now.
pub fn new_event(reference: &str, image: &str, generation: i64, now: Time) -> TagEvent {
    TagEvent {
        created: Some(now),
        docker_image_reference: reference.to_string(),
        image: image.to_string(),
        generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TagReference, TagReferencePolicy};
    use k8s_openapi::api::core::v1::ObjectReference;

    fn now() -> Time {
        Time(jiff::Timestamp::from_second(1_700_000_000).expect("ts"))
    }

    fn ev(r: &str, image: &str, generation: i64) -> TagEvent {
        new_event(r, image, generation, now())
    }

    fn items(s: &ImageStream, tag: &str) -> Vec<(String, String, i64)> {
        s.status_tag(tag)
            .and_then(|l| l.items.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.docker_image_reference, e.image, e.generation))
            .collect()
    }

    #[test]
    fn history_rules() {
        let mut s = ImageStream::default();
        assert!(add_tag_event(&mut s, "t", ev("r1", "i1", 1)));
        assert!(!add_tag_event(&mut s, "t", ev("r1", "i1", 1)), "identical");
        assert!(
            add_tag_event(&mut s, "t", ev("r1", "i1", 2)),
            "generation only"
        );
        assert_eq!(items(&s, "t"), vec![("r1".into(), "i1".into(), 2)]);
        assert!(add_tag_event(&mut s, "t", ev("r1", "i2", 3)), "same ref");
        assert_eq!(items(&s, "t"), vec![("r1".into(), "i2".into(), 3)]);
        assert!(add_tag_event(&mut s, "t", ev("r2", "i2", 4)), "same image");
        assert_eq!(items(&s, "t"), vec![("r2".into(), "i2".into(), 4)]);
        assert!(add_tag_event(&mut s, "t", ev("r3", "i3", 5)), "new");
        assert_eq!(
            items(&s, "t"),
            vec![("r3".into(), "i3".into(), 5), ("r2".into(), "i2".into(), 4)]
        );
        add_tag_event(&mut s, "a", ev("x", "y", 1));
        assert_eq!(s.status.tags[0].tag, "a", "sorted by tag");
    }

    #[test]
    fn conditions_clear_on_change_only() {
        let mut s = ImageStream::default();
        add_tag_event(&mut s, "t", ev("r1", "i1", 1));
        s.status.tags[0].conditions.push(Default::default());
        add_tag_event(&mut s, "t", ev("r1", "i1", 1));
        assert_eq!(s.status.tags[0].conditions.len(), 1);
        add_tag_event(&mut s, "t", ev("r2", "i2", 1));
        assert!(s.status.tags[0].conditions.is_empty());
    }

    fn follower(name: &str, from: &str, ns: Option<&str>) -> TagReference {
        TagReference {
            name: name.into(),
            from: Some(ObjectReference {
                kind: Some("ImageStreamTag".into()),
                name: Some(from.into()),
                namespace: ns.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tracking_tags_follow_same_stream_only() {
        let mut s = ImageStream::default();
        s.metadata.name = Some("is".into());
        s.metadata.namespace = Some("ns".into());
        s.spec.tags = vec![
            follower("a", "latest", None),
            follower("b", "is:latest", Some("ns")),
            follower("c", "other:latest", None),
            follower("d", "latest", Some("elsewhere")),
        ];
        add_tag_event(&mut s, "latest", ev("r", "i", 1));
        let changed = update_tracking_tags(&mut s, "latest");
        assert_eq!(changed, vec!["a".to_string(), "b".to_string()]);
        assert!(s.status_tag("c").is_none());
        assert!(s.status_tag("d").is_none());
    }

    #[test]
    fn local_reference_policy_uses_the_stream_repository() {
        let mut s = ImageStream::default();
        s.status.docker_image_repository = "registry.svc:5000/ns/is".into();
        s.spec.tags = vec![TagReference {
            name: "t".into(),
            reference_policy: TagReferencePolicy {
                type_: "Local".into(),
            },
            ..Default::default()
        }];
        let e = ev("quay.io/a/b@sha256:x", "sha256:x", 1);
        assert_eq!(
            resolve_reference(&s, "t", &e),
            "registry.svc:5000/ns/is@sha256:x"
        );
        assert_eq!(resolve_reference(&s, "other", &e), "quay.io/a/b@sha256:x");
        s.status.docker_image_repository.clear();
        assert_eq!(resolve_reference(&s, "t", &e), "quay.io/a/b@sha256:x");
    }
}
