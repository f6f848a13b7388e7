//! Every error an API request can end with, and its `Status` (spec `k8s-apiserver-semantics.md`
//! §3): the code, reason, message and details that k8s.io/apimachinery's `errors` package
//! produces, byte for byte where clients match on them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::field::{aggregate_message, FieldError};
use crate::{GroupKind, GroupResource};

/// The optimistic-lock message (`registry.OptimisticLockErrorMsg`).
pub const OPTIMISTIC_LOCK_MSG: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// The continue-token expiry message with a fresh token (§4.3).
pub const CONTINUE_EXPIRED_MSG: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// Request bodies larger than this are refused with 413 (`MaxRequestBodyBytes`).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    Forbidden {
        message: String,
        name: String,
        resource: Option<GroupResource>,
    },
    #[error("{resource} {name:?} not found")]
    NotFound {
        resource: GroupResource,
        name: String,
    },
    #[error("{verb} is not supported on resources of kind {resource:?}", resource = .resource.to_string())]
    MethodNotAllowed {
        verb: String,
        resource: GroupResource,
    },
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{resource} {name:?} already exists")]
    AlreadyExists {
        resource: GroupResource,
        name: String,
    },
    /// generateName ran out of attempts (KEP-4420): a 409 with `Retry-After: 1`.
    #[error("{resource} {name:?} already exists, the server was not able to generate a unique name for the object")]
    AlreadyExistsGenerated {
        resource: GroupResource,
        name: String,
    },
    /// A 409 Conflict: `Operation cannot be fulfilled on <qualified> "<name>": <message>`.
    #[error("Operation cannot be fulfilled on {qualified} {name:?}: {message}")]
    Conflict {
        /// `resource.group` for lock conflicts, `Kind.group` for delete preconditions.
        qualified: String,
        group: String,
        /// What `details.kind` carries (the resource for lock conflicts).
        kind: String,
        name: String,
        message: String,
    },
    /// A server-side apply conflict: causes are (message, field) pairs.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    /// A 410 Expired (too old resource version, expired continue token).
    #[error("{message}")]
    Expired {
        message: String,
        /// A fresh continue token (`rv:-1`) for an expired continue.
        continue_token: Option<String>,
    },
    #[error("Request entity too large: {0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A 422 Invalid with field causes.
    #[error("{}", invalid_message(.kind, .name, .errors))]
    Invalid {
        /// `Kind.group` (or `resource.group` where upstream uses the resource).
        kind: GroupKind,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u32 },
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// A 500 that is not a Status error upstream: no reason, the bare message.
    #[error("{0}")]
    Unknown(String),
    #[error("The {operation} operation against {resource} could not be completed at this time, please try again.")]
    ServerTimeout {
        resource: GroupResource,
        operation: String,
        retry_after: u32,
    },
    /// A 504 Timeout. `too_large_rv` adds the `ResourceVersionTooLarge` cause.
    #[error("Timeout: {message}")]
    Timeout {
        message: String,
        retry_after: Option<u32>,
        too_large_rv: bool,
    },
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A 422 without field errors (a JSON patch that cannot be applied).
    #[error("the server rejected our request due to an error in our request")]
    Unprocessable(String),
    /// No route for the path (go-restful's miss): 404 with empty details.
    #[error("the server could not find the requested resource")]
    RouteNotFound,
    /// A known path without this method: 405 with empty details.
    #[error("the server does not allow this method on the requested resource")]
    RouteMethodNotAllowed,
}

fn invalid_message(kind: &GroupKind, name: &str, errors: &[FieldError]) -> String {
    match aggregate_message(errors) {
        Some(agg) => format!("{kind} {name:?} is invalid: {agg}"),
        None => format!("{kind} {name:?} is invalid"),
    }
}

impl ApiError {
    /// The optimistic-lock conflict of an update whose resourceVersion is stale.
    pub fn conflict(resource: &GroupResource, name: &str) -> Self {
        ApiError::Conflict {
            qualified: resource.to_string(),
            group: resource.group.clone(),
            kind: resource.resource.clone(),
            name: name.to_string(),
            message: OPTIMISTIC_LOCK_MSG.to_string(),
        }
    }

    /// A 422 from field errors.
    pub fn invalid(kind: GroupKind, name: &str, errors: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            kind,
            name: name.to_string(),
            errors,
        }
    }

    /// A read asked for a resourceVersion the server has not reached.
    pub fn too_large_resource_version(
        requested: i64,
        current: i64,
        retry_after: Option<u32>,
    ) -> Self {
        ApiError::Timeout {
            message: format!("Too large resource version: {requested}, current: {current}"),
            retry_after,
            too_large_rv: true,
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound { .. } | ApiError::RouteNotFound => 404,
            ApiError::RouteMethodNotAllowed => 405,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::AlreadyExists { .. }
            | ApiError::AlreadyExistsGenerated { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Expired { .. } => 410,
            ApiError::RequestEntityTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Internal(_) | ApiError::Unknown(_) | ApiError::ServerTimeout { .. } => 500,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::Timeout { .. } => 504,
        }
    }

    /// The Status `reason` (absent for the bare 500).
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } | ApiError::RouteNotFound => "NotFound",
            ApiError::RouteMethodNotAllowed => "MethodNotAllowed",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::AlreadyExists { .. } | ApiError::AlreadyExistsGenerated { .. } => {
                "AlreadyExists"
            }
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Expired { .. } => "Expired",
            ApiError::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unknown(_) => return None,
            ApiError::ServerTimeout { .. } => "ServerTimeout",
            ApiError::Timeout { .. } => "Timeout",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        })
    }

    /// Seconds a client should wait before retrying (also sent as `Retry-After`).
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::ServerTimeout { retry_after, .. } => Some(*retry_after),
            ApiError::Timeout { retry_after, .. } => *retry_after,
            ApiError::AlreadyExistsGenerated { .. } => Some(1),
            _ => None,
        }
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Status {
        Status {
            status: Some("Failure".to_string()),
            message: Some(self.to_string()),
            reason: self.reason().map(str::to_string),
            details: self.status_details(),
            code: Some(i32::from(self.code())),
            metadata: self.list_meta(),
        }
    }

    /// The Status `details`; absent where upstream sends none.
    fn status_details(&self) -> Option<StatusDetails> {
        let mut details = StatusDetails::default();
        match self {
            ApiError::NotFound { resource, name } | ApiError::AlreadyExists { resource, name } => {
                set_gr(&mut details, resource, name);
            }
            ApiError::MethodNotAllowed { resource, .. } => set_gr(&mut details, resource, ""),
            ApiError::AlreadyExistsGenerated { resource, name } => {
                set_gr(&mut details, resource, name);
                details.retry_after_seconds = Some(1);
            }
            ApiError::Forbidden {
                name,
                resource: Some(gr),
                ..
            } => set_gr(&mut details, gr, name),
            ApiError::Conflict {
                group, kind, name, ..
            } => {
                details.name = non_empty(name);
                details.group = non_empty(group);
                details.kind = non_empty(kind);
            }
            ApiError::Invalid { kind, name, errors } => {
                details.name = non_empty(name);
                details.group = non_empty(&kind.group);
                details.kind = non_empty(&kind.kind);
                details.causes = Some(field_causes(errors));
            }
            ApiError::ApplyConflict { causes, .. } => {
                details.causes = Some(apply_conflict_causes(causes));
            }
            ApiError::Internal(msg) | ApiError::Unprocessable(msg) => {
                details.causes = Some(vec![StatusCause {
                    message: Some(msg.clone()),
                    ..Default::default()
                }]);
            }
            ApiError::ServerTimeout {
                resource,
                operation,
                retry_after,
            } => {
                details.name = non_empty(operation);
                details.group = non_empty(&resource.group);
                details.kind = non_empty(&resource.resource);
                details.retry_after_seconds = Some(*retry_after as i32);
            }
            ApiError::Timeout {
                retry_after,
                too_large_rv,
                ..
            } => return timeout_details(*retry_after, *too_large_rv),
            ApiError::TooManyRequests { retry_after, .. } => {
                details.retry_after_seconds = Some(*retry_after as i32);
            }
            ApiError::RouteNotFound | ApiError::RouteMethodNotAllowed => {}
            _ => return None,
        }
        Some(details)
    }

    /// Only an expired continue token has list metadata: the fresh token.
    fn list_meta(&self) -> ListMeta {
        match self {
            ApiError::Expired {
                continue_token: Some(token),
                ..
            } => ListMeta {
                continue_: Some(token.clone()),
                ..Default::default()
            },
            _ => ListMeta::default(),
        }
    }
}

fn field_causes(errors: &[FieldError]) -> Vec<StatusCause> {
    errors
        .iter()
        .map(|e| StatusCause {
            reason: Some(e.kind.cause_reason().to_string()),
            message: Some(e.body()),
            field: non_empty(e.field.as_str()),
        })
        .collect()
}

fn apply_conflict_causes(causes: &[(String, String)]) -> Vec<StatusCause> {
    causes
        .iter()
        .map(|(message, field)| StatusCause {
            reason: Some("FieldManagerConflict".to_string()),
            message: Some(message.clone()),
            field: Some(field.clone()),
        })
        .collect()
}

/// A plain timeout has no details; a too-large resourceVersion or a retry hint does.
fn timeout_details(retry_after: Option<u32>, too_large_rv: bool) -> Option<StatusDetails> {
    if !too_large_rv && retry_after.is_none() {
        return None;
    }
    let mut details = StatusDetails::default();
    if too_large_rv {
        details.causes = Some(vec![StatusCause {
            reason: Some("ResourceVersionTooLarge".to_string()),
            message: Some("Too large resource version".to_string()),
            field: None,
        }]);
    }
    details.retry_after_seconds = retry_after.map(|r| r as i32);
    Some(details)
}

fn set_gr(details: &mut StatusDetails, gr: &GroupResource, name: &str) {
    details.name = non_empty(name);
    details.group = non_empty(&gr.group);
    details.kind = non_empty(&gr.resource);
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::FieldPath;

    fn streams() -> GroupResource {
        GroupResource::new("image.openshift.io", "imagestreams")
    }

    fn json(e: &ApiError) -> serde_json::Value {
        serde_json::to_value(e.to_status()).expect("status serializes")
    }

    #[test]
    fn not_found_status() {
        let e = ApiError::NotFound {
            resource: streams(),
            name: "foo".into(),
        };
        let v = json(&e);
        assert_eq!(e.code(), 404);
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["status"], "Failure");
        assert_eq!(
            v["message"],
            "imagestreams.image.openshift.io \"foo\" not found"
        );
        assert_eq!(v["reason"], "NotFound");
        assert_eq!(
            v["details"],
            serde_json::json!({"name": "foo", "group": "image.openshift.io", "kind": "imagestreams"})
        );
        assert_eq!(v["code"], 404);
        assert_eq!(v["metadata"], serde_json::json!({}));
    }

    #[test]
    fn messages_match_upstream() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::AlreadyExists { resource: streams(), name: "a".into() }, 409, "imagestreams.image.openshift.io \"a\" already exists"),
            (ApiError::conflict(&streams(), "a"), 409, "Operation cannot be fulfilled on imagestreams.image.openshift.io \"a\": the object has been modified; please apply your changes to the latest version and try again"),
            (ApiError::MethodNotAllowed { verb: "watch".into(), resource: streams() }, 405, "watch is not supported on resources of kind \"imagestreams.image.openshift.io\""),
            (ApiError::RequestEntityTooLarge("limit is 3145728".into()), 413, "Request entity too large: limit is 3145728"),
            (ApiError::Internal("boom".into()), 500, "Internal error occurred: boom"),
            (ApiError::ServerTimeout { resource: streams(), operation: "create".into(), retry_after: 2 }, 500, "The create operation against imagestreams.image.openshift.io could not be completed at this time, please try again."),
            (ApiError::too_large_resource_version(10, 5, Some(1)), 504, "Timeout: Too large resource version: 10, current: 5"),
        ];
        for (e, code, msg) in cases {
            assert_eq!((e.code(), e.to_string().as_str()), (code, msg));
            assert_eq!(json(&e)["message"], msg);
        }
    }

    #[test]
    fn invalid_status_has_causes() {
        let errors = vec![FieldError::invalid(
            &FieldPath::new("metadata").child("resourceVersion"),
            0i64,
            "must be specified for an update",
        )];
        let e = ApiError::invalid(
            GroupKind::new("image.openshift.io", "imagestreams"),
            "foo",
            errors,
        );
        let v = json(&e);
        assert_eq!(v["message"], "imagestreams.image.openshift.io \"foo\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update");
        assert_eq!(v["reason"], "Invalid");
        assert_eq!(v["code"], 422);
        assert_eq!(
            v["details"]["causes"],
            serde_json::json!([{"reason": "FieldValueInvalid", "message": "Invalid value: 0: must be specified for an update", "field": "metadata.resourceVersion"}])
        );
        assert_eq!(v["details"]["kind"], "imagestreams");
    }

    #[test]
    fn expired_carries_a_fresh_continue() {
        let e = ApiError::Expired {
            message: CONTINUE_EXPIRED_MSG.into(),
            continue_token: Some("tok".into()),
        };
        let v = json(&e);
        assert_eq!(v["code"], 410);
        assert_eq!(v["reason"], "Expired");
        assert_eq!(v["metadata"]["continue"], "tok");
    }

    #[test]
    fn too_large_has_cause_and_retry() {
        let v = json(&ApiError::too_large_resource_version(10, 5, Some(1)));
        assert_eq!(v["details"]["retryAfterSeconds"], 1);
        assert_eq!(
            v["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
        let bare =
            ApiError::Unknown("resourceVersion should not be set on objects to be created".into());
        let v = json(&bare);
        assert_eq!(v["code"], 500);
        assert!(v.get("reason").is_none());
    }
}
