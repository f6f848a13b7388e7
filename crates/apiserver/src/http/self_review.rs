//! What `kubectl auth whoami` and `kubectl auth can-i` ask when the server runs standalone:
//! SelfSubjectReview (who the request's user is) and SelfSubjectAccessReview (whether it may
//! do something). Behind the aggregator kube-apiserver answers these itself.

use std::sync::Arc;

use apimachinery::errors::{ApiError, MAX_REQUEST_BODY_BYTES};
use apimachinery::field::{BadValue, FieldError, FieldPath};
use apimachinery::negotiate::{self, Encoding, Shape};
use apimachinery::options::Query;
use apimachinery::GroupKind;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes as RequestedResource, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use super::render::{error_response, json_line, respond, wants_pretty};
use super::Api;
use crate::auth::{Attributes, Authorizer, Decision, ResourceAttributes};
use crate::resource::UserInfo;

const AUTHORIZATION_GROUP: &str = "authorization.k8s.io";
const EXACTLY_ONE: &str =
    "exactly one of nonResourceAttributes or resourceAttributes must be specified";

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`.
pub(super) async fn self_subject_review_handler(req: HttpRequest) -> Response {
    let pretty = wants_pretty_output(&req);
    match ReviewRequest::read(req, "SelfSubjectReview").await {
        Ok(review) => review
            .output
            .answer(self_subject_review(&review.user, &review.body)),
        Err(e) => error_response(&e, pretty),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`.
pub(super) async fn self_subject_access_review_handler(
    State(api): State<Arc<Api>>,
    req: HttpRequest,
) -> Response {
    let pretty = wants_pretty_output(&req);
    let review = match ReviewRequest::read(req, "SelfSubjectAccessReview").await {
        Ok(review) => review,
        Err(e) => return error_response(&e, pretty),
    };
    let authorizer = api.config.authorizer.as_ref();
    let answer = self_subject_access_review(&review.user, &review.body, authorizer).await;
    review.output.answer(answer)
}

/// The answer to a SelfSubjectReview: the request's user, as kube's registry gives it.
pub(super) fn self_subject_review(user: &UserInfo, body: &[u8]) -> Result<Value, ApiError> {
    let _: SelfSubjectReview = decode(body, "SelfSubjectReview")?;
    // kube stamps the answer with the time it was made.
    let created = serde_json::to_value(crate::registry::now()).unwrap_or(Value::Null);
    Ok(json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": created},
        "status": {"userInfo": user_info(user)},
    }))
}

/// The answer to a SelfSubjectAccessReview: the review echoed back with the authorizer's
/// decision for the requesting user.
pub(super) async fn self_subject_access_review(
    user: &UserInfo,
    body: &[u8],
    authorizer: &dyn Authorizer,
) -> Result<Value, ApiError> {
    let review: SelfSubjectAccessReview = decode(body, "SelfSubjectAccessReview")?;
    let attributes = requested_attributes(user, &review)?;
    let decision = authorizer.authorize(&attributes).await;
    Ok(json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec_json(&review.spec),
        "status": status_json(decision),
    }))
}

/// A review body into its type, with kube's messages.
fn decode<T: DeserializeOwned>(body: &[u8], kind: &str) -> Result<T, ApiError> {
    let value = crate::decode::body_value(body, None)?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::BadRequest(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })
}

/// `authentication.k8s.io/v1` UserInfo, with Go's field order and `omitempty`.
fn user_info(user: &UserInfo) -> Value {
    let mut info = Map::new();
    if !user.name.is_empty() {
        info.insert("username".into(), json!(user.name));
    }
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    Value::Object(info)
}

/// kube's validation of a SelfSubjectAccessReview, then the attributes it asks about.
fn requested_attributes(
    user: &UserInfo,
    review: &SelfSubjectAccessReview,
) -> Result<Attributes, ApiError> {
    let spec = &review.spec;
    let mut errors = Vec::new();
    let attributes = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(resource), None) => Some(resource_request(user, resource)),
        (None, Some(non_resource)) => Some(non_resource_request(user, non_resource)),
        // kube shows the nonResourceAttributes as the offending value either way.
        (_, non_resource) => {
            let value = non_resource.as_ref().map_or(Value::Null, to_json);
            errors.push(FieldError::invalid(
                &FieldPath::new("spec"),
                BadValue::Json(value),
                EXACTLY_ONE,
            ));
            None
        }
    };
    if !metadata_is_empty(&review.metadata) {
        errors.push(FieldError::invalid(
            &FieldPath::new("metadata"),
            BadValue::Json(to_json(&review.metadata)),
            "must be empty",
        ));
    }
    match attributes {
        Some(attributes) if errors.is_empty() => Ok(attributes),
        _ => Err(ApiError::invalid(
            GroupKind::new(AUTHORIZATION_GROUP, "SelfSubjectAccessReview"),
            "",
            errors,
        )),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// managedFields aside, a review's metadata must be empty (as kube checks).
fn metadata_is_empty(metadata: &ObjectMeta) -> bool {
    let mut metadata = metadata.clone();
    metadata.managed_fields = None;
    metadata == ObjectMeta::default()
}

/// kube's `ResourceAttributesFrom`: an empty version means every version.
fn resource_request(user: &UserInfo, requested: &RequestedResource) -> Attributes {
    let text = |field: &Option<String>| field.clone().unwrap_or_default();
    let version = text(&requested.version);
    Attributes {
        user: user.clone(),
        verb: text(&requested.verb),
        resource: Some(ResourceAttributes {
            group: text(&requested.group),
            version: if version.is_empty() {
                "*".to_string()
            } else {
                version
            },
            resource: text(&requested.resource),
            subresource: text(&requested.subresource),
            namespace: text(&requested.namespace),
            name: text(&requested.name),
        }),
        path: String::new(),
    }
}

fn non_resource_request(user: &UserInfo, requested: &NonResourceAttributes) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: requested.verb.clone().unwrap_or_default(),
        resource: None,
        path: requested.path.clone().unwrap_or_default(),
    }
}

/// The spec as kube echoes it: Go's field order, empty strings left out.
fn spec_json(spec: &SelfSubjectAccessReviewSpec) -> Value {
    let mut out = Map::new();
    if let Some(r) = &spec.resource_attributes {
        let mut attributes = non_empty_strings(&[
            ("namespace", &r.namespace),
            ("verb", &r.verb),
            ("group", &r.group),
            ("version", &r.version),
            ("resource", &r.resource),
            ("subresource", &r.subresource),
            ("name", &r.name),
        ]);
        if let Some(selector) = &r.field_selector {
            attributes.insert("fieldSelector".into(), to_json(selector));
        }
        if let Some(selector) = &r.label_selector {
            attributes.insert("labelSelector".into(), to_json(selector));
        }
        out.insert("resourceAttributes".into(), Value::Object(attributes));
    }
    if let Some(n) = &spec.non_resource_attributes {
        let attributes = non_empty_strings(&[("path", &n.path), ("verb", &n.verb)]);
        out.insert("nonResourceAttributes".into(), Value::Object(attributes));
    }
    Value::Object(out)
}

/// Go's `omitempty` for string fields.
fn non_empty_strings(fields: &[(&str, &Option<String>)]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(key, value)| {
            let value = value.as_deref().filter(|v| !v.is_empty())?;
            Some((key.to_string(), Value::from(value)))
        })
        .collect()
}

fn status_json(decision: Decision) -> Value {
    let (allowed, denied, reason) = match decision {
        Decision::Allow => (true, false, String::new()),
        Decision::Deny(reason) => (false, true, reason),
        Decision::NoOpinion(reason) => (false, false, reason),
    };
    let mut status = Map::new();
    status.insert("allowed".into(), Value::Bool(allowed));
    if denied {
        status.insert("denied".into(), Value::Bool(true));
    }
    if !reason.is_empty() {
        status.insert("reason".into(), Value::String(reason));
    }
    Value::Object(status)
}

/// A review as it arrived: who asks, the body as JSON, how to answer.
struct ReviewRequest {
    user: UserInfo,
    body: Bytes,
    output: Output,
}

impl ReviewRequest {
    async fn read(req: HttpRequest, kind: &str) -> Result<ReviewRequest, ApiError> {
        let pretty = wants_pretty_output(&req);
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        // Reviews are answered in JSON or YAML: kubectl, which posts them as protobuf, accepts JSON.
        let encoding = negotiate::negotiate(accept, Shape::Item, kind, false)?.encoding;
        let content_type = media_type(req.headers());
        let user = req
            .extensions()
            .get::<UserInfo>()
            .cloned()
            .ok_or_else(|| ApiError::BadRequest("no user present on request".into()))?;
        let body = axum::body::to_bytes(req.into_body(), MAX_REQUEST_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::RequestEntityTooLarge(format!("limit is {MAX_REQUEST_BODY_BYTES}"))
            })?;
        let body = as_json(body, content_type.as_deref())?;
        Ok(ReviewRequest {
            user,
            body,
            output: Output { encoding, pretty },
        })
    }
}

fn wants_pretty_output(req: &HttpRequest) -> bool {
    wants_pretty(&Query::parse(req.uri().query()), req.headers())
}

/// The media type of the body, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// The body as JSON: YAML bodies are converted, other media types refused.
fn as_json(body: Bytes, content_type: Option<&str>) -> Result<Bytes, ApiError> {
    match content_type.unwrap_or_default() {
        "" | "application/json" | "*/*" => Ok(body),
        super::review_protobuf::PROTOBUF => {
            let value = super::review_protobuf::review_json(&body)?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        "application/yaml" => {
            let value = crate::decode::yaml_value(&body)?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        _ => Err(ApiError::UnsupportedMediaType(
            crate::decode::UNSUPPORTED_BODY.to_string(),
        )),
    }
}

/// How the answer is written.
#[derive(Clone, Copy, Debug)]
struct Output {
    encoding: Encoding,
    pretty: bool,
}

impl Output {
    fn answer(self, answer: Result<Value, ApiError>) -> Response {
        match answer {
            Ok(object) => self.created(&object),
            Err(e) => error_response(&e, self.pretty),
        }
    }

    fn created(self, object: &Value) -> Response {
        let body = match (self.encoding, self.pretty) {
            (Encoding::Yaml, _) => Bytes::from(serde_norway::to_string(object).unwrap_or_default()),
            (Encoding::Json | Encoding::Protobuf, true) => {
                Bytes::from(serde_json::to_string_pretty(object).unwrap_or_default())
            }
            // Not negotiated for reviews (see `read`).
            (Encoding::Json | Encoding::Protobuf, false) => json_line(object),
        };
        respond(201, self.encoding.content_type(), body, &[])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// `get` is allowed, `delete` denied, `watch` has no opinion without a reason, anything
    /// else with one; records what it was asked.
    #[derive(Default)]
    struct Fake {
        asked: Mutex<Vec<Attributes>>,
    }

    #[async_trait]
    impl Authorizer for Fake {
        async fn authorize(&self, attributes: &Attributes) -> Decision {
            self.asked
                .lock()
                .expect("not poisoned")
                .push(attributes.clone());
            match attributes.verb.as_str() {
                "get" => Decision::Allow,
                "delete" => Decision::Deny("no deleting".into()),
                "watch" => Decision::NoOpinion(String::new()),
                _ => Decision::NoOpinion("no rule".into()),
            }
        }
    }

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".to_string(), vec!["view".to_string()])]),
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn self_subject_review_reports_the_user() {
        let body = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","metadata":{"creationTimestamp":null}}"#;
        let review = self_subject_review(&alice(), body).expect("answered");
        assert_eq!(keys(&review), ["kind", "apiVersion", "metadata", "status"]);
        assert_eq!(review["kind"], "SelfSubjectReview");
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
        let created = review["metadata"]["creationTimestamp"]
            .as_str()
            .expect("a timestamp");
        assert!(created.ends_with('Z') && created.len() == 20, "{created}");
        let info = &review["status"]["userInfo"];
        assert_eq!(
            *info,
            json!({
                "username": "alice",
                "uid": "u-1",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["view"]},
            })
        );
        assert_eq!(keys(info), ["username", "uid", "groups", "extra"]);

        let anonymous = self_subject_review(&UserInfo::anonymous(), b"{}").expect("answered");
        assert_eq!(
            anonymous["status"]["userInfo"],
            json!({"username": "system:anonymous", "groups": ["system:unauthenticated"]})
        );
    }

    #[test]
    fn malformed_self_subject_reviews_are_bad_requests() {
        let err = self_subject_review(&alice(), b"{").expect_err("not JSON");
        assert_eq!(err.code(), 400);
        assert!(
            err.to_string()
                .starts_with("couldn't get version/kind; json parse error"),
            "{err}"
        );
        let err = self_subject_review(&alice(), br#"{"kind":"Pod"}"#).expect_err("wrong kind");
        assert_eq!(err.code(), 400);
        assert!(
            err.to_string().starts_with(
                "SelfSubjectReview in version \"v1\" cannot be handled as a SelfSubjectReview: "
            ),
            "{err}"
        );
    }

    async fn access_review(body: Value, fake: &Fake) -> Result<Value, ApiError> {
        let body = serde_json::to_vec(&body).expect("JSON");
        self_subject_access_review(&alice(), &body, fake).await
    }

    #[tokio::test]
    async fn resource_reviews_echo_the_spec_with_the_decision() {
        let fake = Fake::default();
        let body = json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {
                "namespace": "a",
                "verb": "get",
                "group": "image.openshift.io",
                "resource": "imagestreams",
                "subresource": "",
                "name": "x",
            }},
            "status": {"allowed": false},
        });
        let review = access_review(body, &fake).await.expect("answered");
        assert_eq!(
            review,
            json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {
                    "namespace": "a",
                    "verb": "get",
                    "group": "image.openshift.io",
                    "resource": "imagestreams",
                    "name": "x",
                }},
                "status": {"allowed": true},
            })
        );
        assert_eq!(
            keys(&review),
            ["kind", "apiVersion", "metadata", "spec", "status"]
        );
        let asked = fake.asked.lock().expect("not poisoned");
        assert_eq!(asked[0].user, alice());
        assert_eq!(
            asked[0].resource,
            Some(ResourceAttributes {
                group: "image.openshift.io".into(),
                version: "*".into(),
                resource: "imagestreams".into(),
                subresource: String::new(),
                namespace: "a".into(),
                name: "x".into(),
            })
        );
    }

    #[tokio::test]
    async fn denials_and_no_opinions_with_their_reasons() {
        let status = |verb: &str| json!({"spec": {"resourceAttributes": {"verb": verb, "resource": "images"}}});
        let fake = Fake::default();
        let cases = [
            (
                "delete",
                json!({"allowed": false, "denied": true, "reason": "no deleting"}),
            ),
            ("list", json!({"allowed": false, "reason": "no rule"})),
            ("watch", json!({"allowed": false})),
        ];
        for (verb, expected) in cases {
            let review = access_review(status(verb), &fake).await.expect("answered");
            assert_eq!(review["status"], expected, "{verb}");
        }
    }

    #[tokio::test]
    async fn non_resource_reviews() {
        let fake = Fake::default();
        let body = json!({"spec": {"nonResourceAttributes": {"path": "/apis", "verb": "get"}}});
        let review = access_review(body, &fake).await.expect("answered");
        assert_eq!(
            review["spec"],
            json!({"nonResourceAttributes": {"path": "/apis", "verb": "get"}})
        );
        assert_eq!(review["status"], json!({"allowed": true}));
        let asked = fake.asked.lock().expect("not poisoned");
        assert_eq!(
            (
                asked[0].resource.is_none(),
                asked[0].path.as_str(),
                asked[0].verb.as_str()
            ),
            (true, "/apis", "get")
        );
    }

    #[tokio::test]
    async fn invalid_reviews_are_kubes_422() {
        let fake = Fake::default();
        let neither = "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified";
        for body in [json!({}), json!({"spec": {}})] {
            let err = access_review(body, &fake).await.expect_err("nothing asked");
            assert_eq!(err.code(), 422);
            assert_eq!(err.to_string(), neither);
        }
        let both = json!({"spec": {
            "resourceAttributes": {"verb": "get"},
            "nonResourceAttributes": {"path": "/x", "verb": "get"},
        }});
        let err = access_review(both, &fake).await.expect_err("both asked");
        assert_eq!(
            err.to_string(),
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec: Invalid value: {\"path\":\"/x\",\"verb\":\"get\"}: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let named = json!({
            "metadata": {"name": "x"},
            "spec": {"nonResourceAttributes": {"path": "/x", "verb": "get"}},
        });
        let err = access_review(named, &fake).await.expect_err("metadata set");
        assert_eq!(
            err.to_string(),
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: metadata: Invalid value: {\"name\":\"x\"}: must be empty"
        );
        assert!(fake.asked.lock().expect("not poisoned").is_empty());
        let err = self_subject_access_review(&alice(), b"[", &fake)
            .await
            .expect_err("not JSON");
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn bodies_are_json_or_yaml() {
        let mut headers = HeaderMap::new();
        assert_eq!(media_type(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            "Application/YAML; charset=utf-8".parse().expect("header"),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("application/yaml"));
        let yaml = as_json(
            Bytes::from_static(b"spec:\n  x: 1\n"),
            Some("application/yaml"),
        )
        .expect("YAML");
        assert_eq!(
            serde_json::from_slice::<Value>(&yaml).expect("JSON"),
            json!({"spec": {"x": 1}})
        );
        let json = Bytes::from_static(b"{}");
        assert_eq!(as_json(json.clone(), None).expect("JSON"), json);
        let err = as_json(json, Some("text/plain")).expect_err("unsupported");
        assert_eq!(err.code(), 415);
    }

    #[test]
    fn answers_are_201_in_the_negotiated_encoding() {
        let object = json!({"kind": "SelfSubjectReview"});
        let output = Output {
            encoding: Encoding::Yaml,
            pretty: false,
        };
        let response = output.created(&object);
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).expect("type"),
            "application/yaml"
        );
        let failed = output.answer(Err(ApiError::BadRequest("no".into())));
        assert_eq!(failed.status().as_u16(), 400);
    }
}
