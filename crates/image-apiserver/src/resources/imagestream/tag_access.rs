//! Upstream's TagVerifier (spec §6.1b): a spec tag may follow a stream in another namespace
//! only if the requesting user may pull from it, i.e. `get imagestreams/layers` on the source
//! stream there. The question goes to the server's authorizer (delegated SubjectAccessReview in
//! a cluster, the policy file standalone), once per distinct source stream.

use std::collections::BTreeMap;

use apimachinery::field::{FieldError, FieldPath};
use apiserver::auth::{Attributes, Authorizer, Decision, ResourceAttributes};
use apiserver::resource::UserInfo;
use image_api::ImageStream;

/// The source streams in other namespaces that new or changed spec tags follow:
/// (namespace, stream) → the tags that reference it.
pub fn foreign_sources(
    new: &ImageStream,
    old: Option<&ImageStream>,
) -> BTreeMap<(String, String), Vec<String>> {
    let own_namespace = new.metadata.namespace.as_deref().unwrap_or_default();
    let mut sources: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for tag in &new.spec.tags {
        let Some(from) = &tag.from else { continue };
        let namespace = from.namespace.as_deref().unwrap_or_default();
        if namespace.is_empty() || namespace == own_namespace {
            continue;
        }
        let unchanged = old
            .and_then(|o| o.spec.tags.iter().find(|t| t.name == tag.name))
            .is_some_and(|o| o.from.as_ref() == Some(from));
        if unchanged {
            continue;
        }
        let Some(stream) = source_stream(from.kind.as_deref(), from.name.as_deref()) else {
            continue;
        };
        sources
            .entry((namespace.to_string(), stream))
            .or_default()
            .push(tag.name.clone());
    }
    sources
}

/// The stream an ImageStreamTag (`stream:tag`) or ImageStreamImage (`stream@id`) names.
fn source_stream(kind: Option<&str>, name: Option<&str>) -> Option<String> {
    let name = name?;
    let stream = match kind? {
        "ImageStreamTag" => name.split_once(':')?.0,
        "ImageStreamImage" => name.split_once('@')?.0,
        _ => return None,
    };
    (!stream.is_empty()).then(|| stream.to_string())
}

/// Forbidden errors at `spec.tags[<tag>].from` for every tag following a stream the user may
/// not pull from, worded as upstream: `<ns>/<stream>: "<reason>" "<evaluation error>"`.
pub async fn tag_access_errors(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    new: &ImageStream,
    old: Option<&ImageStream>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for ((namespace, stream), tags) in foreign_sources(new, old) {
        let attributes = pull_attributes(user, &namespace, &stream);
        let reason = match authorizer.authorize(&attributes).await {
            Decision::Allow => continue,
            Decision::Deny(reason) | Decision::NoOpinion(reason) => reason,
        };
        for tag in tags {
            let path = FieldPath::new("spec").child("tags").key(&tag).child("from");
            errs.push(FieldError::forbidden(
                &path,
                format!("{namespace}/{stream}: {reason:?} \"\""),
            ));
        }
    }
    errs
}

/// "May pull from the stream": `get imagestreams/layers` on it.
fn pull_attributes(user: &UserInfo, namespace: &str, stream: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "get".to_string(),
        resource: Some(ResourceAttributes {
            group: image_api::GROUP.to_string(),
            version: image_api::VERSION.to_string(),
            resource: "imagestreams".to_string(),
            subresource: "layers".to_string(),
            namespace: namespace.to_string(),
            name: stream.to_string(),
        }),
        path: format!(
            "/apis/{}/{}/namespaces/{namespace}/imagestreams/{stream}/layers",
            image_api::GROUP,
            image_api::VERSION
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use image_api::TagReference;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn tag(name: &str, kind: &str, ns: Option<&str>, from: &str) -> TagReference {
        TagReference {
            name: name.into(),
            from: Some(ObjectReference {
                kind: Some(kind.into()),
                namespace: ns.map(str::to_string),
                name: Some(from.into()),
                ..ObjectReference::default()
            }),
            ..TagReference::default()
        }
    }

    fn stream(tags: Vec<TagReference>) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.namespace = Some("mine".into());
        s.metadata.name = Some("app".into());
        s.spec.tags = tags;
        s
    }

    #[test]
    fn only_new_or_changed_tags_of_other_namespaces_count() {
        let new = stream(vec![
            tag("a", "ImageStreamTag", Some("other"), "src:v1"),
            tag("b", "ImageStreamImage", Some("other"), "src@sha256:1"),
            tag("c", "ImageStreamTag", Some("mine"), "src:v1"),
            tag("d", "ImageStreamTag", None, "src:v1"),
            tag("e", "DockerImage", Some("other"), "quay.io/a/b"),
            tag("f", "ImageStreamTag", Some("third"), "x:1"),
        ]);
        let got = foreign_sources(&new, None);
        let want: BTreeMap<_, _> = [
            (
                ("other".to_string(), "src".to_string()),
                vec!["a".to_string(), "b".to_string()],
            ),
            (
                ("third".to_string(), "x".to_string()),
                vec!["f".to_string()],
            ),
        ]
        .into();
        assert_eq!(got, want);
        let old = stream(vec![tag("a", "ImageStreamTag", Some("other"), "src:v1")]);
        let got = foreign_sources(&new, Some(&old));
        assert_eq!(got[&("other".to_string(), "src".to_string())], ["b"]);
    }

    struct AllowOnly(&'static str);

    #[async_trait]
    impl Authorizer for AllowOnly {
        async fn authorize(&self, a: &Attributes) -> Decision {
            let r = a.resource.as_ref().expect("resource");
            assert_eq!((a.verb.as_str(), r.subresource.as_str()), ("get", "layers"));
            if r.namespace == self.0 {
                Decision::Allow
            } else {
                Decision::NoOpinion("no rule".into())
            }
        }
    }

    #[tokio::test]
    async fn denied_sources_are_forbidden_at_each_tag() {
        let new = stream(vec![
            tag("a", "ImageStreamTag", Some("open"), "src:v1"),
            tag("b", "ImageStreamTag", Some("closed"), "src:v1"),
        ]);
        let errs = tag_access_errors(&AllowOnly("open"), &UserInfo::default(), &new, None).await;
        let texts: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            texts,
            ["spec.tags[b].from: Forbidden: closed/src: \"no rule\" \"\""]
        );
    }
}
