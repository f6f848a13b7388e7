//! The message descriptors the transcoder walks: loaded once from serialized
//! `FileDescriptorSet`s (build-time data, trusted) and shared behind an `Arc`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::encoding::{WireType, MAX_TAG};
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::Value;

use super::{decode, encode, envelope, ProtoError};

const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

/// Message descriptors by full name (no leading dot). Cloning shares them.
#[derive(Clone, Debug)]
pub struct Schema {
    messages: Arc<HashMap<String, MessageDef>>,
}

/// A message whose JSON form is not an object of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// metav1.Time: an RFC 3339 string, seconds precision.
    Time,
    /// metav1.MicroTime: an RFC 3339 string with six fraction digits.
    MicroTime,
    /// FieldsV1 and RawExtension: field 1 holds the JSON value's bytes.
    InlineJson,
    /// intstr.IntOrString: a JSON number or string.
    IntOrString,
    /// resource.Quantity: its canonical string.
    Quantity,
}

#[derive(Debug)]
pub(crate) struct MessageDef {
    pub(crate) name: String,
    /// Sorted by number: the order gogo writes them in.
    pub(crate) fields: Vec<Field>,
    by_number: HashMap<u32, usize>,
    pub(crate) map_entry: bool,
    pub(crate) special: Special,
}

#[derive(Debug)]
pub(crate) struct Field {
    /// The proto field name, which is also the JSON name in Kubernetes' .proto files.
    pub(crate) name: String,
    pub(crate) number: u32,
    pub(crate) ty: FieldType,
    pub(crate) repeated: bool,
    /// An embedded Go struct with `json:",inline"`: its fields sit in the parent's JSON object.
    pub(crate) inline: bool,
}

#[derive(Debug)]
pub(crate) enum FieldType {
    Scalar(Scalar),
    /// A message by full name, without the leading dot.
    Message(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Fixed64,
    Fixed32,
    Bool,
    String,
    Bytes,
    Uint32,
    Enum,
    Sfixed32,
    Sfixed64,
    Sint32,
    Sint64,
}

impl Scalar {
    pub(crate) fn wire_type(self) -> WireType {
        match self {
            Scalar::Double | Scalar::Fixed64 | Scalar::Sfixed64 => WireType::SixtyFourBit,
            Scalar::Float | Scalar::Fixed32 | Scalar::Sfixed32 => WireType::ThirtyTwoBit,
            Scalar::String | Scalar::Bytes => WireType::LengthDelimited,
            Scalar::Int64
            | Scalar::Uint64
            | Scalar::Int32
            | Scalar::Bool
            | Scalar::Uint32
            | Scalar::Enum
            | Scalar::Sint32
            | Scalar::Sint64 => WireType::Varint,
        }
    }

    /// The proto type's name, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scalar::Double => "double",
            Scalar::Float => "float",
            Scalar::Int64 => "int64",
            Scalar::Uint64 => "uint64",
            Scalar::Int32 => "int32",
            Scalar::Fixed64 => "fixed64",
            Scalar::Fixed32 => "fixed32",
            Scalar::Bool => "bool",
            Scalar::String => "string",
            Scalar::Bytes => "bytes",
            Scalar::Uint32 => "uint32",
            Scalar::Enum => "enum",
            Scalar::Sfixed32 => "sfixed32",
            Scalar::Sfixed64 => "sfixed64",
            Scalar::Sint32 => "sint32",
            Scalar::Sint64 => "sint64",
        }
    }

    fn from_type(ty: Type) -> Option<Scalar> {
        Some(match ty {
            Type::Double => Scalar::Double,
            Type::Float => Scalar::Float,
            Type::Int64 => Scalar::Int64,
            Type::Uint64 => Scalar::Uint64,
            Type::Int32 => Scalar::Int32,
            Type::Fixed64 => Scalar::Fixed64,
            Type::Fixed32 => Scalar::Fixed32,
            Type::Bool => Scalar::Bool,
            Type::String => Scalar::String,
            Type::Bytes => Scalar::Bytes,
            Type::Uint32 => Scalar::Uint32,
            Type::Enum => Scalar::Enum,
            Type::Sfixed32 => Scalar::Sfixed32,
            Type::Sfixed64 => Scalar::Sfixed64,
            Type::Sint32 => Scalar::Sint32,
            Type::Sint64 => Scalar::Sint64,
            Type::Group | Type::Message => return None,
        })
    }
}

impl MessageDef {
    pub(crate) fn field(&self, number: u32) -> Option<&Field> {
        self.by_number
            .get(&number)
            .and_then(|&i| self.fields.get(i))
    }

    /// A map entry's key (1) or value (2) field, which protoc always generates.
    pub(crate) fn entry_field(&self, number: u32) -> Result<&Field, ProtoError> {
        self.field(number).ok_or_else(|| {
            ProtoError::Descriptor(format!("map entry {} has no field {number}", self.name))
        })
    }
}

impl Schema {
    /// Merges several serialized FileDescriptorSets (later duplicates of a file are ignored).
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Schema, ProtoError> {
        Self::with_inline_fields(sets, &[])
    }

    /// Like [`Schema::from_descriptor_sets`], with the `(message, field)` pairs whose JSON is
    /// inlined into the parent object (Go's embedded `json:",inline"` structs: the .proto
    /// cannot say so).
    pub fn with_inline_fields(
        sets: &[&[u8]],
        inline: &[(&str, &str)],
    ) -> Result<Schema, ProtoError> {
        let mut files = HashSet::new();
        let mut messages = HashMap::new();
        for bytes in sets {
            let set = FileDescriptorSet::decode(*bytes)
                .map_err(|e| ProtoError::Descriptor(e.to_string()))?;
            for file in set.file {
                // Sets built with --include_imports repeat their imports (meta/v1 in every
                // API group's set): the first copy stands.
                if !files.insert(file.name.clone().unwrap_or_default()) {
                    continue;
                }
                let package = file.package.as_deref().unwrap_or_default();
                for message in &file.message_type {
                    register(package, message, &mut messages)?;
                }
            }
        }
        for (message, field) in inline {
            mark_inline(&mut messages, message, field)?;
        }
        Ok(Schema {
            messages: Arc::new(messages),
        })
    }

    pub fn has_message(&self, name: &str) -> bool {
        self.messages.contains_key(name)
    }

    /// JSON -> the message's wire bytes (no envelope). Fields of `value` not in the message
    /// (apiVersion, kind at top level) are ignored.
    pub fn encode(&self, message: &str, value: &Value) -> Result<Vec<u8>, ProtoError> {
        let def = self.message(message)?;
        let mut out = Vec::new();
        encode::message(self, def, value, &mut out, 0)?;
        Ok(out)
    }

    /// Wire bytes -> JSON. Unknown field numbers are skipped (forward compatibility).
    pub fn decode(&self, message: &str, bytes: &[u8]) -> Result<Value, ProtoError> {
        let def = self.message(message)?;
        decode::message(self, def, bytes, 0)
    }

    /// The object in kube's envelope: `k8s\0` + runtime.Unknown{typeMeta = the value's
    /// apiVersion and kind, raw = [`Schema::encode`], contentEncoding "", contentType ""}.
    pub fn encode_object(&self, message: &str, value: &Value) -> Result<Vec<u8>, ProtoError> {
        let raw = self.encode(message, value)?;
        let api_version = type_meta_field(value, "apiVersion")?;
        let kind = type_meta_field(value, "kind")?;
        Ok(envelope::encode_envelope(api_version, kind, &raw))
    }

    /// The inverse of [`Schema::encode_object`]: checks the prefix, decodes the Unknown and
    /// its raw bytes as `message`, and puts apiVersion and kind (when not empty) first in the
    /// returned object.
    pub fn decode_object(&self, message: &str, bytes: &[u8]) -> Result<Value, ProtoError> {
        let unknown = envelope::decode_envelope(bytes)?;
        let value = self.decode(message, &unknown.raw)?;
        Ok(with_type_meta(value, &unknown.api_version, &unknown.kind))
    }

    pub(crate) fn message(&self, name: &str) -> Result<&MessageDef, ProtoError> {
        self.messages
            .get(name)
            .ok_or_else(|| ProtoError::UnknownMessage(name.to_owned()))
    }
}

fn type_meta_field<'v>(value: &'v Value, name: &str) -> Result<&'v str, ProtoError> {
    match value.get(name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ProtoError::Encode {
            path: name.to_owned(),
            reason: "expected a string".to_owned(),
        }),
    }
}

/// Go's TypeMeta order: kind, then apiVersion, then the object's own fields.
fn with_type_meta(value: Value, api_version: &str, kind: &str) -> Value {
    let fields = match value {
        Value::Object(fields) => fields,
        other => return other,
    };
    let mut out = serde_json::Map::with_capacity(fields.len() + 2);
    if !kind.is_empty() {
        out.insert("kind".to_owned(), Value::String(kind.to_owned()));
    }
    if !api_version.is_empty() {
        out.insert(
            "apiVersion".to_owned(),
            Value::String(api_version.to_owned()),
        );
    }
    for (name, field) in fields {
        if !out.contains_key(&name) {
            out.insert(name, field);
        }
    }
    Value::Object(out)
}

fn register(
    scope: &str,
    proto: &DescriptorProto,
    messages: &mut HashMap<String, MessageDef>,
) -> Result<(), ProtoError> {
    let name = proto
        .name
        .as_deref()
        .ok_or_else(|| ProtoError::Descriptor(format!("a message in {scope} has no name")))?;
    let full = if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    };
    for nested in &proto.nested_type {
        register(&full, nested, messages)?;
    }
    let def = message_def(&full, proto)?;
    if messages.insert(full.clone(), def).is_some() {
        return Err(ProtoError::Descriptor(format!(
            "message {full} is defined twice"
        )));
    }
    Ok(())
}

fn message_def(full: &str, proto: &DescriptorProto) -> Result<MessageDef, ProtoError> {
    let mut fields = proto
        .field
        .iter()
        .map(|f| field_def(full, f))
        .collect::<Result<Vec<_>, _>>()?;
    fields.sort_by_key(|f| f.number);
    let mut by_number = HashMap::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        if by_number.insert(field.number, i).is_some() {
            return Err(ProtoError::Descriptor(format!(
                "{full} uses field number {} twice",
                field.number
            )));
        }
    }
    let map_entry = proto
        .options
        .as_ref()
        .and_then(|o| o.map_entry)
        .unwrap_or(false);
    Ok(MessageDef {
        name: full.to_owned(),
        fields,
        by_number,
        map_entry,
        special: special_kind(full),
    })
}

fn special_kind(full: &str) -> Special {
    match full {
        TIME => Special::Time,
        MICRO_TIME => Special::MicroTime,
        FIELDS_V1 | RAW_EXTENSION => Special::InlineJson,
        INT_OR_STRING => Special::IntOrString,
        QUANTITY => Special::Quantity,
        _ => Special::None,
    }
}

fn mark_inline(
    messages: &mut HashMap<String, MessageDef>,
    message: &str,
    field: &str,
) -> Result<(), ProtoError> {
    let found = messages
        .get_mut(message)
        .and_then(|def| def.fields.iter_mut().find(|f| f.name == field))
        .filter(|f| !f.repeated && matches!(f.ty, FieldType::Message(_)));
    match found {
        Some(f) => {
            f.inline = true;
            Ok(())
        }
        None => Err(ProtoError::Descriptor(format!(
            "{message}.{field} is not a singular message field to inline"
        ))),
    }
}

fn field_def(message: &str, proto: &FieldDescriptorProto) -> Result<Field, ProtoError> {
    let bad = |what: &str| ProtoError::Descriptor(format!("a field of {message} {what}"));
    let name = proto.name.clone().ok_or_else(|| bad("has no name"))?;
    let number = proto
        .number
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_TAG).contains(n))
        .ok_or_else(|| bad("has no valid number"))?;
    let ty = proto
        .r#type
        .and_then(|t| Type::try_from(t).ok())
        .ok_or_else(|| bad("has no type"))?;
    let ty = match ty {
        Type::Message => {
            let type_name = proto.type_name.as_deref().unwrap_or_default();
            FieldType::Message(type_name.trim_start_matches('.').to_owned())
        }
        Type::Group => return Err(bad("is a group, which is not supported")),
        other => match Scalar::from_type(other) {
            Some(scalar) => FieldType::Scalar(scalar),
            None => return Err(bad("has an unsupported type")),
        },
    };
    Ok(Field {
        name,
        number,
        ty,
        repeated: proto.label() == Label::Repeated,
        inline: false,
    })
}
