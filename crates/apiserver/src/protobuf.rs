//! Protobuf at the HTTP edge (spec §7): objects live as JSON everywhere inside the server, so a
//! protobuf request body becomes JSON before any handler sees it, and a response negotiated as
//! protobuf is transcoded from the JSON it would have been. The schema says how; which message
//! a kind is comes from the API's own table (the generic machinery knows no kinds but meta's).

use apimachinery::errors::ApiError;
use apimachinery::protobuf::{self as pb, ProtoError, Schema};
use bytes::Bytes;
use serde_json::Value;

/// Which message encodes an object of a kind (`ImageStream`, `ImageStreamList`, ...).
pub type MessageForKind = fn(&str) -> Option<&'static str>;

/// The kinds of meta.k8s.io and core that every API answers with.
fn meta_message(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Status" => pb::STATUS_MESSAGE,
        "DeleteOptions" => pb::DELETE_OPTIONS_MESSAGE,
        "PartialObjectMetadata" => "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadata",
        "PartialObjectMetadataList" => {
            "k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadataList"
        }
        _ => return None,
    })
}

pub struct ProtobufCodec {
    schema: Schema,
    messages: MessageForKind,
}

impl ProtobufCodec {
    pub fn new(schema: Schema, messages: MessageForKind) -> Self {
        ProtobufCodec { schema, messages }
    }

    fn message(&self, kind: &str) -> Option<&'static str> {
        meta_message(kind)
            .or_else(|| (self.messages)(kind))
            .filter(|m| self.schema.has_message(m))
    }

    /// A protobuf request body as the JSON the handlers read, apiVersion and kind included.
    /// Undecodable bodies are 400s, as kube's protobuf decoder answers.
    pub fn body_to_json(&self, body: &[u8]) -> Result<Bytes, ApiError> {
        let envelope = pb::decode_envelope(body).map_err(bad_body)?;
        let message = self.message(&envelope.kind).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "no kind \"{}\" is registered for version \"{}\"",
                envelope.kind, envelope.api_version
            ))
        })?;
        let value = self.schema.decode_object(message, body).map_err(bad_body)?;
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The object (or list, or Status) `value` in kube's envelope, by its `kind`.
    pub fn encode_value(&self, value: &Value) -> Result<Bytes, ApiError> {
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let message = self
            .message(kind)
            .ok_or_else(|| ApiError::Internal(format!("no protobuf message for kind {kind:?}")))?;
        self.schema
            .encode_object(message, value)
            .map(Bytes::from)
            .map_err(|e| ApiError::Internal(format!("encoding {kind} as protobuf: {e}")))
    }

    /// Compact JSON bytes (as the cache keeps objects) in kube's envelope.
    pub fn encode_json(&self, json: &[u8]) -> Result<Bytes, ApiError> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| ApiError::Internal(e.to_string()))?;
        self.encode_value(&value)
    }

    /// One length-prefixed watch frame carrying `object` in the envelope.
    pub fn watch_frame(&self, event_type: &str, object: &Value) -> Result<Bytes, ApiError> {
        let envelope = self.encode_value(object)?;
        Ok(Bytes::from(pb::watch_frame(event_type, &envelope)))
    }
}

fn bad_body(e: ProtoError) -> ApiError {
    ApiError::BadRequest(format!("unable to decode the protobuf body: {e}"))
}
