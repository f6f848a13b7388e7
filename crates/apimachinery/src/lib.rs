//! Generic Kubernetes API machinery, as k8s.io/apimachinery and k8s.io/apiserver define it
//! (spec `k8s-apiserver-semantics.md`). Pure logic: no I/O, no async, and nothing about images,
//! so every rule here is unit-tested in isolation.
//!
//! - [`field`]: field paths and field errors, aggregated into `Invalid` messages exactly as
//!   `field.ErrorList` prints them.
//! - [`errors`]: [`errors::ApiError`], every error a request can end with, and its `Status`.
//! - [`continue_token`]: kube's continue tokens.
//!
//! Still to come (issue "A real Kubernetes API over HTTPS"): label and field selectors, list
//! options with resourceVersion validation, request info, content negotiation.

pub mod continue_token;
pub mod errors;
pub mod field;

/// A group and resource, e.g. `imagestreams.image.openshift.io`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A group and kind, e.g. `ImageStream.image.openshift.io`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        GroupKind {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl std::fmt::Display for GroupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}
