//! JSON -> wire bytes, as gogo-protobuf's generated marshalers write them: fields in number
//! order, repeated scalars unpacked, map entries sorted by key with key and value always
//! written.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use prost::encoding::WireType;
use serde_json::{Map, Value};

use super::schema::{Field, FieldType, MessageDef, Scalar, Schema, Special};
use super::wire::{put_bytes, put_fixed32, put_fixed64, put_varint};
use super::{encode_error, special, ProtoError, MAX_DEPTH};

/// Appends `value` encoded as `def` (without a key or length) to `out`.
pub(crate) fn message(
    schema: &Schema,
    def: &MessageDef,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    if depth > MAX_DEPTH {
        return Err(encode_error(format!(
            "messages nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if def.special != Special::None {
        return special::encode(def.special, value, out);
    }
    let Value::Object(object) = value else {
        return Err(encode_error(format!(
            "expected an object, found {}",
            json_kind(value)
        )));
    };
    for field in &def.fields {
        if field.inline {
            single(schema, field, value, out, depth).map_err(|e| e.within(&field.name))?;
            continue;
        }
        match object.get(&field.name) {
            None | Some(Value::Null) => {}
            Some(v) => {
                self::field(schema, field, v, out, depth).map_err(|e| e.within(&field.name))?;
            }
        }
    }
    Ok(())
}

fn field(
    schema: &Schema,
    field: &Field,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    if !field.repeated {
        return single(schema, field, value, out, depth);
    }
    if let FieldType::Message(name) = &field.ty {
        let entry = schema.message(name)?;
        if entry.map_entry {
            return map(schema, field.number, entry, value, out, depth);
        }
    }
    let Value::Array(items) = value else {
        return Err(encode_error(format!(
            "expected an array, found {}",
            json_kind(value)
        )));
    };
    for (i, item) in items.iter().enumerate() {
        if item.is_null() {
            // Go's encoding/json reads a null item as the zero value, and a decoded list can
            // hold one (an empty RawExtension or Time): write the zero value back.
            zero(field, out);
        } else {
            single(schema, field, item, out, depth).map_err(|e| e.within(&format!("[{i}]")))?;
        }
    }
    Ok(())
}

/// One value of a field (the field itself, or one item of a repeated field), key included.
fn single(
    schema: &Schema,
    field: &Field,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    match &field.ty {
        FieldType::Scalar(scalar) => self::scalar(*scalar, field.number, value, out),
        FieldType::Message(name) => {
            let def = schema.message(name)?;
            let mut body = Vec::new();
            message(schema, def, value, &mut body, depth + 1)?;
            put_bytes(field.number, &body, out);
            Ok(())
        }
    }
}

/// A map key in the order gogo's `sortkeys` gives: strings bytewise, integers by value.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum MapKey<'a> {
    Bool(bool),
    Int(i128),
    Str(&'a str),
}

fn map(
    schema: &Schema,
    number: u32,
    entry: &MessageDef,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), ProtoError> {
    let Value::Object(object) = value else {
        return Err(encode_error(format!(
            "expected an object, found {}",
            json_kind(value)
        )));
    };
    let key_field = entry.entry_field(1)?;
    let value_field = entry.entry_field(2)?;
    let FieldType::Scalar(key_scalar) = key_field.ty else {
        return Err(ProtoError::Descriptor(format!(
            "map entry {} has a message key",
            entry.name
        )));
    };
    for (key, key_json, item) in sorted_entries(object, key_scalar)? {
        let mut body = Vec::new();
        scalar(key_scalar, 1, &key_json, &mut body).map_err(|e| e.within(&format!("[{key}]")))?;
        if item.is_null() {
            zero(value_field, &mut body);
        } else {
            single(schema, value_field, item, &mut body, depth)
                .map_err(|e| e.within(&format!("[{key}]")))?;
        }
        put_bytes(number, &body, out);
    }
    Ok(())
}

/// The object's entries with each key parsed as the key type, sorted.
fn sorted_entries(
    object: &Map<String, Value>,
    key_scalar: Scalar,
) -> Result<Vec<(&str, Value, &Value)>, ProtoError> {
    let mut entries = Vec::with_capacity(object.len());
    for (key, item) in object {
        let (order, key_json) = map_key(key_scalar, key)?;
        entries.push((order, key.as_str(), key_json, item));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries
        .into_iter()
        .map(|(_, key, key_json, item)| (key, key_json, item))
        .collect())
}

fn map_key(key_scalar: Scalar, key: &str) -> Result<(MapKey<'_>, Value), ProtoError> {
    let invalid = || encode_error(format!("map key {key:?} is not a {}", key_scalar.name()));
    match key_scalar {
        Scalar::String => Ok((MapKey::Str(key), Value::String(key.to_owned()))),
        Scalar::Bool => {
            let b: bool = key.parse().map_err(|_| invalid())?;
            Ok((MapKey::Bool(b), Value::Bool(b)))
        }
        Scalar::Bytes | Scalar::Double | Scalar::Float => Err(invalid()),
        _ => {
            let n: i128 = key.parse().map_err(|_| invalid())?;
            let json = if let Ok(i) = i64::try_from(n) {
                Value::from(i)
            } else {
                Value::from(u64::try_from(n).map_err(|_| invalid())?)
            };
            Ok((MapKey::Int(n), json))
        }
    }
}

/// A null map value or list item: written as its type's zero value, as Go stores it.
fn zero(field: &Field, out: &mut Vec<u8>) {
    let wire_type = match &field.ty {
        FieldType::Scalar(scalar) => scalar.wire_type(),
        FieldType::Message(_) => WireType::LengthDelimited,
    };
    match wire_type {
        WireType::SixtyFourBit => put_fixed64(field.number, 0, out),
        WireType::ThirtyTwoBit => put_fixed32(field.number, 0, out),
        WireType::LengthDelimited => put_bytes(field.number, &[], out),
        _ => put_varint(field.number, 0, out),
    }
}

/// One scalar with its key. Integers must be JSON integers in the type's range, as Go's
/// encoding/json demands.
pub(crate) fn scalar(
    scalar: Scalar,
    number: u32,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    match scalar {
        // Negative int32s are sign-extended to ten bytes, as proto does.
        Scalar::Int32 | Scalar::Enum => put_varint(number, int::<i32>(value, scalar)? as u64, out),
        Scalar::Int64 => put_varint(number, int::<i64>(value, scalar)? as u64, out),
        Scalar::Uint32 => put_varint(number, int::<u32>(value, scalar)?.into(), out),
        Scalar::Uint64 => put_varint(number, int::<u64>(value, scalar)?, out),
        Scalar::Sint32 => {
            let n = int::<i32>(value, scalar)?;
            put_varint(number, ((n << 1) ^ (n >> 31)) as u32 as u64, out);
        }
        Scalar::Sint64 => {
            let n = int::<i64>(value, scalar)?;
            put_varint(number, ((n << 1) ^ (n >> 63)) as u64, out);
        }
        Scalar::Bool => put_varint(number, u64::from(bool_value(value)?), out),
        Scalar::Fixed32 => put_fixed32(number, int::<u32>(value, scalar)?, out),
        Scalar::Sfixed32 => put_fixed32(number, int::<i32>(value, scalar)? as u32, out),
        Scalar::Fixed64 => put_fixed64(number, int::<u64>(value, scalar)?, out),
        Scalar::Sfixed64 => put_fixed64(number, int::<i64>(value, scalar)? as u64, out),
        Scalar::Float => put_fixed32(number, float32(value)?.to_bits(), out),
        Scalar::Double => put_fixed64(number, float64(value)?.to_bits(), out),
        Scalar::String => put_bytes(number, string(value)?.as_bytes(), out),
        Scalar::Bytes => {
            let bytes = STANDARD
                .decode(string(value)?)
                .map_err(|e| encode_error(format!("invalid base64: {e}")))?;
            put_bytes(number, &bytes, out);
        }
    }
    Ok(())
}

fn int<T: TryFrom<i128>>(value: &Value, scalar: Scalar) -> Result<T, ProtoError> {
    let n = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    };
    let Some(n) = n else {
        return Err(encode_error(format!(
            "expected an integer ({}), found {}",
            scalar.name(),
            json_kind(value)
        )));
    };
    T::try_from(n).map_err(|_| encode_error(format!("{n} is out of range for {}", scalar.name())))
}

fn float64(value: &Value) -> Result<f64, ProtoError> {
    value
        .as_f64()
        .ok_or_else(|| encode_error(format!("expected a number, found {}", json_kind(value))))
}

fn float32(value: &Value) -> Result<f32, ProtoError> {
    let wide = float64(value)?;
    let narrow = wide as f32;
    if narrow.is_finite() {
        Ok(narrow)
    } else {
        Err(encode_error(format!("{wide} is out of range for float")))
    }
}

fn bool_value(value: &Value) -> Result<bool, ProtoError> {
    value
        .as_bool()
        .ok_or_else(|| encode_error(format!("expected a boolean, found {}", json_kind(value))))
}

pub(crate) fn string(value: &Value) -> Result<&str, ProtoError> {
    value
        .as_str()
        .ok_or_else(|| encode_error(format!("expected a string, found {}", json_kind(value))))
}

/// Go's words for JSON kinds, as its unmarshal errors use them.
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
