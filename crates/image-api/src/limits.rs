//! Image stream limits (spec §15.2): the number of distinct references in `spec.tags`
//! (`openshift.io/image-tags`) and of distinct images across the status history
//! (`openshift.io/images`). Upstream reads them from LimitRanges; standalone, from flags.

use std::collections::BTreeSet;

use crate::reference::DockerImageReference;
use crate::ImageStream;

pub const IMAGE_TAGS: &str = "openshift.io/image-tags";
pub const IMAGES: &str = "openshift.io/images";

/// Maximums per stream; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLimits {
    pub image_tags: Option<u64>,
    pub images: Option<u64>,
}

/// A spec tag's reference, normalized so that two tags naming the same thing count once.
fn normalized_reference(
    stream: &ImageStream,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Option<String> {
    let ns = namespace
        .filter(|n| !n.is_empty())
        .or(stream.metadata.namespace.as_deref())
        .unwrap_or("");
    let this = stream.metadata.name.as_deref().unwrap_or("");
    match kind {
        "DockerImage" => {
            let r = DockerImageReference::parse(name).ok()?;
            let registry = if r.registry.is_empty() {
                "docker.io"
            } else {
                r.registry.as_str()
            };
            let namespace = if r.namespace.is_empty() && registry == "docker.io" {
                "library"
            } else {
                r.namespace.as_str()
            };
            let mut out = format!("{registry}/");
            if !namespace.is_empty() {
                out.push_str(namespace);
                out.push('/');
            }
            out.push_str(&r.name);
            if !r.id.is_empty() {
                out.push('@');
                out.push_str(&r.id);
            } else {
                out.push(':');
                out.push_str(if r.tag.is_empty() { "latest" } else { &r.tag });
            }
            Some(out)
        }
        "ImageStreamTag" => {
            let (s, t) = name.split_once(':').unwrap_or((this, name));
            Some(format!("{ns}/{s}:{t}"))
        }
        "ImageStreamImage" => {
            let (s, id) = name.split_once('@').unwrap_or((this, name));
            Some(format!("{ns}/{s}@{id}"))
        }
        _ => None,
    }
}

pub fn tag_references(stream: &ImageStream) -> BTreeSet<String> {
    stream
        .spec
        .tags
        .iter()
        .filter_map(|t| {
            let from = t.from.as_ref()?;
            normalized_reference(
                stream,
                from.kind.as_deref().unwrap_or(""),
                from.name.as_deref().unwrap_or(""),
                from.namespace.as_deref(),
            )
        })
        .collect()
}

pub fn images(stream: &ImageStream) -> BTreeSet<String> {
    stream
        .status
        .tags
        .iter()
        .flat_map(|l| l.items.iter().flatten())
        .filter(|e| !e.image.is_empty())
        .map(|e| e.image.clone())
        .collect()
}

/// The limit violations of `new` (upstream's messages). Nothing is reported when usage did
/// not grow compared to `old`, so existing violations are tolerated.
pub fn violations(
    limits: &StreamLimits,
    new: &ImageStream,
    old: Option<&ImageStream>,
) -> Vec<String> {
    let (refs, imgs) = (tag_references(new), images(new));
    if let Some(old) = old {
        let (old_refs, old_imgs) = (tag_references(old), images(old));
        if refs.is_subset(&old_refs) && imgs.is_subset(&old_imgs) {
            return Vec::new();
        }
    }
    let mut out = Vec::new();
    for (resource, usage, max) in [
        (IMAGE_TAGS, refs.len() as u64, limits.image_tags),
        (IMAGES, imgs.len() as u64, limits.images),
    ] {
        if let Some(max) = max.filter(|m| usage > *m) {
            out.push(format!(
                "requested usage of {resource} exceeds the maximum limit per openshift.io/ImageStream ({usage} > {max})"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NamedTagEventList, TagEvent, TagReference};
    use k8s_openapi::api::core::v1::ObjectReference;

    fn stream(refs: &[(&str, &str)], images: &[&str]) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = Some("is".into());
        s.metadata.namespace = Some("ns".into());
        s.spec.tags = refs
            .iter()
            .enumerate()
            .map(|(i, (kind, name))| TagReference {
                name: format!("t{i}"),
                from: Some(ObjectReference {
                    kind: Some(kind.to_string()),
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        s.status.tags = vec![NamedTagEventList {
            tag: "t0".into(),
            items: Some(
                images
                    .iter()
                    .map(|i| TagEvent {
                        created: None,
                        docker_image_reference: "r".into(),
                        image: i.to_string(),
                        generation: 1,
                    })
                    .collect(),
            ),
            conditions: vec![],
        }];
        s
    }

    #[test]
    fn counts_distinct_normalized_references() {
        let s = stream(
            &[
                ("DockerImage", "nginx"),
                ("DockerImage", "docker.io/library/nginx:latest"),
                ("ImageStreamTag", "latest"),
                ("ImageStreamTag", "is:latest"),
                ("DockerImage", "quay.io/a/b:1"),
            ],
            &["sha256:a", "sha256:a", "sha256:b", ""],
        );
        assert_eq!(tag_references(&s).len(), 3);
        assert_eq!(images(&s).len(), 2);
    }

    #[test]
    fn reports_only_growing_violations() {
        let limits = StreamLimits {
            image_tags: Some(1),
            images: Some(1),
        };
        let s = stream(&[("DockerImage", "a"), ("DockerImage", "b")], &["sha256:a"]);
        assert_eq!(
            violations(&limits, &s, None),
            vec!["requested usage of openshift.io/image-tags exceeds the maximum limit per openshift.io/ImageStream (2 > 1)"]
        );
        assert!(
            violations(&limits, &s, Some(&s)).is_empty(),
            "existing violations are tolerated"
        );
        assert!(violations(&StreamLimits::default(), &s, None).is_empty());
    }
}
