//! Generic Kubernetes API machinery, as k8s.io/apimachinery and k8s.io/apiserver define it
//! (spec `k8s-apiserver-semantics.md`). Pure logic: no I/O, no async, and nothing about images,
//! so every rule here is unit-tested in isolation.
//!
//! - [`field`]: field paths and field errors, aggregated into `Invalid` messages exactly as
//!   `field.ErrorList` prints them.
//! - [`errors`]: [`errors::ApiError`], every error a request can end with, and its `Status`.
//! - [`continue_token`]: kube's continue tokens.
//! - [`labels`], [`fields`]: label and field selectors with Go's grammar and messages.
//! - [`options`]: query parameters (Go's booleans, list options, write options).
//! - [`validation`]: names, labels, annotations and object metadata.
//! - [`meta`]: `ObjectMeta`, with managedFields' fieldsV1 kept as JSON text.
//! - [`negotiate`]: `Accept` headers, Table and PartialObjectMetadata targets.
//! - [`discovery`], [`table`]: discovery documents and server-side printing.
//! - [`request`]: request info from the URL path.

/// The `serde::de::Visitor` methods of a visitor that reads objects (and arrays) and passes
/// over every JSON scalar: each accepts its value and reads nothing from it. For visitors
/// whose `Value` is `()`; expands inside their `impl Visitor`.
#[macro_export]
macro_rules! pass_over_json_scalars {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

pub mod continue_token;
pub mod discovery;
pub mod duration;
pub mod errors;
pub mod field;
pub mod fields;
pub mod labels;
pub mod meta;
pub mod negotiate;
pub mod object;
pub mod options;
pub mod protobuf;
pub mod request;
pub mod table;
pub mod time;
pub mod validation;

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
