//! Protobuf bodies of the self reviews. kubectl's typed clients send built-in kinds as
//! `application/vnd.kubernetes.protobuf` (`kubectl auth can-i` posts its
//! SelfSubjectAccessReview that way), so the handlers read the few fields they need from kube's
//! envelope (`k8s\0` + `runtime.Unknown`) and the review's message, and go on in JSON. prost
//! derives the decoders; the field numbers are k8s.io/api's `generated.proto`.

use apimachinery::errors::ApiError;
use prost::Message;
use serde_json::{json, Map, Value};

pub(super) const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// kube's protobuf envelope starts with these four bytes.
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// SelfSubjectAccessReview (and SelfSubjectReview, whose `spec` is absent): metadata is
/// field 1 and skipped, spec field 2.
#[derive(Clone, PartialEq, Message)]
struct Review {
    #[prost(message, optional, tag = "2")]
    spec: Option<ReviewSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct ReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(string, tag = "2")]
    verb: String,
    #[prost(string, tag = "3")]
    group: String,
    #[prost(string, tag = "4")]
    version: String,
    #[prost(string, tag = "5")]
    resource: String,
    #[prost(string, tag = "6")]
    subresource: String,
    #[prost(string, tag = "7")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(string, tag = "2")]
    verb: String,
}

/// The review in a protobuf body, as the JSON the handlers read.
pub(super) fn review_json(body: &[u8]) -> Result<Value, ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("decoding the protobuf body: {why}"));
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not a kubernetes protobuf envelope".into()))?;
    let unknown = Unknown::decode(envelope).map_err(|e| bad(e.to_string()))?;
    let review = Review::decode(unknown.raw.as_slice()).map_err(|e| bad(e.to_string()))?;
    let mut object = Map::new();
    if let Some(meta) = unknown.type_meta {
        object.insert("apiVersion".into(), json!(meta.api_version));
        object.insert("kind".into(), json!(meta.kind));
    }
    if let Some(spec) = review.spec {
        object.insert("spec".into(), spec_json(spec));
    }
    Ok(Value::Object(object))
}

fn spec_json(spec: ReviewSpec) -> Value {
    let mut out = Map::new();
    if let Some(r) = spec.resource_attributes {
        let fields = [
            ("namespace", r.namespace),
            ("verb", r.verb),
            ("group", r.group),
            ("version", r.version),
            ("resource", r.resource),
            ("subresource", r.subresource),
            ("name", r.name),
        ];
        out.insert("resourceAttributes".into(), non_empty(fields));
    }
    if let Some(n) = spec.non_resource_attributes {
        out.insert(
            "nonResourceAttributes".into(),
            non_empty([("path", n.path), ("verb", n.verb)]),
        );
    }
    Value::Object(out)
}

/// Go's `omitempty` for strings.
fn non_empty<const N: usize>(fields: [(&str, String); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(review: &Review, kind: &str) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "authorization.k8s.io/v1".into(),
                kind: kind.into(),
            }),
            raw: review.encode_to_vec(),
        };
        [MAGIC, unknown.encode_to_vec().as_slice()].concat()
    }

    #[test]
    fn access_reviews_read_as_json() {
        let review = Review {
            spec: Some(ReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: "team-a".into(),
                    verb: "list".into(),
                    group: "image.openshift.io".into(),
                    resource: "imagestreams".into(),
                    ..ResourceAttributes::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let got = review_json(&envelope(&review, "SelfSubjectAccessReview")).expect("decodes");
        assert_eq!(
            got,
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {
                    "namespace": "team-a", "verb": "list",
                    "group": "image.openshift.io", "resource": "imagestreams"}}
            })
        );
        let paths = Review {
            spec: Some(ReviewSpec {
                resource_attributes: None,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: "/apis".into(),
                    verb: "get".into(),
                }),
            }),
        };
        let got = review_json(&envelope(&paths, "SelfSubjectAccessReview")).expect("decodes");
        assert_eq!(
            got["spec"],
            json!({"nonResourceAttributes": {"path": "/apis", "verb": "get"}})
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(review_json(b"{}").expect_err("no magic").code(), 400);
        assert_eq!(
            review_json(b"k8s\0\xff\xff")
                .expect_err("bad message")
                .code(),
            400
        );
    }
}
