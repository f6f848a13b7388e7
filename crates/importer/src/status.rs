//! The `Status` of each imported image (spec §13.8): what clients and the import controller
//! read in `status.images[i].status`, with upstream's codes, reasons and messages.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
use registry_client::Error as RegistryError;

pub fn success() -> Status {
    Status {
        status: Some("Success".to_string()),
        ..Default::default()
    }
}

pub fn failure(code: i32, reason: &str, message: String) -> Status {
    Status {
        status: Some("Failure".to_string()),
        code: Some(code),
        reason: Some(reason.to_string()),
        message: Some(message),
        ..Default::default()
    }
}

/// Whether a status is an Unauthorized answer that blames the credentials (what triggers the
/// import's second run without them).
pub fn blames_credentials(status: &Status) -> bool {
    status.reason.as_deref() == Some("Unauthorized")
        && status
            .message
            .as_deref()
            .is_some_and(|m| m.to_lowercase().contains("username or password"))
}

pub fn is_unauthorized(status: &Status) -> bool {
    status.reason.as_deref() == Some("Unauthorized")
}

/// `dockerimage.image.openshift.io "<ref>" not found`.
pub fn not_found(reference: &str) -> Status {
    let mut s = failure(
        404,
        "NotFound",
        format!("dockerimage.image.openshift.io \"{reference}\" not found"),
    );
    s.details = Some(StatusDetails {
        name: Some(reference.to_string()),
        group: Some("image.openshift.io".to_string()),
        kind: Some("dockerimage".to_string()),
        ..Default::default()
    });
    s
}

pub fn internal(reference: &str, detail: &str) -> Status {
    let message = format!("{reference}: {detail}");
    let mut s = failure(
        500,
        "InternalError",
        format!("Internal error occurred: {message}"),
    );
    s.details = Some(StatusDetails {
        causes: Some(vec![StatusCause {
            message: Some(message),
            ..Default::default()
        }]),
        ..Default::default()
    });
    s
}

pub fn blocked(registry: &str) -> Status {
    failure(
        403,
        "Forbidden",
        format!("forbidden: registry {registry} blocked"),
    )
}

/// An unparsable `from.name`: upstream's Invalid error with an empty kind and name.
pub fn invalid_name(name: &str, error: &str) -> Status {
    failure(
        422,
        "Invalid",
        format!(" \"\" is invalid: from.name: Invalid value: \"{name}\": invalid name: {error}"),
    )
}

/// An import that did not finish before the request's deadline (ours: upstream has none).
pub fn deadline_exceeded(reference: &str, deadline: Duration) -> Status {
    failure(
        504,
        "Timeout",
        format!(
            "the import of \"{reference}\" did not finish within {}s",
            deadline.as_secs()
        ),
    )
}

/// A registry failure for image `reference` of `repository`.
pub fn from_registry_error(err: &RegistryError, reference: &str, repository: &str) -> Status {
    match err {
        RegistryError::Unauthorized => failure(
            401,
            "Unauthorized",
            format!("you may not have access to the container image \"{reference}\""),
        ),
        RegistryError::IncorrectCredentials => failure(
            401,
            "Unauthorized",
            format!("incorrect username or password for image \"{reference}\""),
        ),
        RegistryError::ManifestUnknown | RegistryError::NameUnknown => not_found(reference),
        RegistryError::HttpOnly => failure(
            400,
            "BadRequest",
            format!(
                "the repository {repository} is HTTP only and requires the insecure flag to import"
            ),
        ),
        other => internal(reference, &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_of_the_spec() {
        let s = from_registry_error(
            &RegistryError::ManifestUnknown,
            "r:5000/a/b:nope",
            "r:5000/a/b",
        );
        assert_eq!(s.code, Some(404));
        assert_eq!(s.reason.as_deref(), Some("NotFound"));
        assert_eq!(
            s.message.as_deref(),
            Some("dockerimage.image.openshift.io \"r:5000/a/b:nope\" not found")
        );
        let s = from_registry_error(&RegistryError::Unauthorized, "r/a:1", "r/a");
        assert_eq!(s.code, Some(401));
        assert!(!blames_credentials(&s));
        let s = from_registry_error(&RegistryError::IncorrectCredentials, "r/a:1", "r/a");
        assert!(blames_credentials(&s));
        let s = from_registry_error(&RegistryError::HttpOnly, "r/a:1", "r/a");
        assert_eq!(s.code, Some(400));
        assert_eq!(
            s.message.as_deref(),
            Some("the repository r/a is HTTP only and requires the insecure flag to import")
        );
        let s = from_registry_error(&RegistryError::Transport("x509".into()), "r/a:1", "r/a");
        assert_eq!(s.code, Some(500));
        assert!(s
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("Internal error occurred: r/a:1: "));
        assert_eq!(
            blocked("r").message.as_deref(),
            Some("forbidden: registry r blocked")
        );
    }
}
