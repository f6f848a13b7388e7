//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) as a transcoding of
//! JSON objects, driven by a protobuf descriptor set.
//!
//! The server holds objects as `serde_json::Value`; this module turns them into the bytes
//! kube-apiserver's gogo-protobuf code writes and back, so nothing else needs typed protobuf
//! structs. The rules are those of k8s.io/apimachinery's generated code:
//!
//! - fields are written in field-number order, each present JSON value written even when it is
//!   zero or empty (gogo writes non-pointer fields always); JSON null or absent is not written;
//! - repeated scalars are written unpacked (proto2) and read packed or unpacked;
//! - map fields are written sorted by key, every entry with both key and value;
//! - `bytes` fields are base64 strings in JSON, as Go's encoding/json writes `[]byte`;
//! - a few apimachinery types have a JSON form unlike their messages (`special.rs`): `Time` and
//!   `MicroTime` (RFC 3339 strings), `FieldsV1` and `RawExtension` (JSON inline),
//!   `IntOrString` and `Quantity`.
//!
//! Whole objects travel in kube's envelope (`envelope.rs`): `k8s\0` and a `runtime.Unknown`
//! carrying apiVersion and kind. Decoding is hostile-input safe: nesting is limited to
//! [`MAX_DEPTH`], every length is checked against the bytes left before anything is allocated,
//! and no input makes it panic.

mod decode;
mod descriptors;
mod encode;
mod envelope;
mod schema;
mod special;
mod wire;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_meta;

pub use descriptors::{fields_out_of_number_order, DESCRIPTOR_SET};
pub use envelope::{
    decode_envelope, decode_watch_event, encode_envelope, split_watch_frame, watch_frame, Unknown,
    WatchEventFrame, ENVELOPE_PREFIX,
};
pub use schema::Schema;

/// The media type of kube's protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream (length-prefixed `WatchEvent`s).
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The message of `Status` replies (errors and DELETE answers).
pub const STATUS_MESSAGE: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Status";
/// The message of DELETE bodies.
pub const DELETE_OPTIONS_MESSAGE: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions";

/// How deeply messages may nest, in either direction. Kubernetes objects nest a handful of
/// levels; the limit only stops hostile input (and recursive schemas) from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// Why a transcoding failed. `Envelope` and `Decode` are the client's fault when the bytes came
/// in a request (400); `Encode`, `UnknownMessage` and `Descriptor` are the server's (500), or an
/// unsupported type (415) where the lead chooses so.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The descriptor set compiled into the binary cannot be used: a build problem.
    #[error("invalid protobuf descriptor set: {0}")]
    Descriptor(String),
    /// No descriptor describes this message (full name, no leading dot).
    #[error("protobuf message {0} is not known")]
    UnknownMessage(String),
    /// The bytes are not kube's envelope; the messages are upstream's serializer's.
    #[error("{0}")]
    Envelope(String),
    /// The wire bytes do not fit the message; `path` names the JSON field (`metadata.labels`).
    #[error("unable to decode protobuf{}: {reason}", location(.path))]
    Decode { path: String, reason: String },
    /// The JSON value does not fit the message; `path` names the JSON field.
    #[error("unable to encode protobuf{}: {reason}", location(.path))]
    Encode { path: String, reason: String },
}

impl ProtoError {
    /// Prefixes the error's path with the field (or `[index]`) it happened under, so an
    /// error deep in an object names where it is on the way out.
    pub(crate) fn within(self, segment: &str) -> ProtoError {
        match self {
            ProtoError::Decode { path, reason } => ProtoError::Decode {
                path: join_path(segment, &path),
                reason,
            },
            ProtoError::Encode { path, reason } => ProtoError::Encode {
                path: join_path(segment, &path),
                reason,
            },
            other => other,
        }
    }
}

pub(crate) fn decode_error(reason: impl Into<String>) -> ProtoError {
    ProtoError::Decode {
        path: String::new(),
        reason: reason.into(),
    }
}

pub(crate) fn encode_error(reason: impl Into<String>) -> ProtoError {
    ProtoError::Encode {
        path: String::new(),
        reason: reason.into(),
    }
}

fn join_path(segment: &str, rest: &str) -> String {
    if rest.is_empty() {
        segment.to_owned()
    } else if rest.starts_with('[') {
        format!("{segment}{rest}")
    } else {
        format!("{segment}.{rest}")
    }
}

fn location(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}
