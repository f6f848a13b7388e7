//! Wire bytes -> JSON. Every field on the wire appears in the JSON (zero or not), unknown
//! field numbers are skipped, and a known field with the wrong wire type is an error, as in
//! gogo's generated unmarshalers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use prost::encoding::WireType;
use serde_json::{Map, Value};

use super::schema::{Field, FieldType, MessageDef, Scalar, Schema, Special};
use super::wire::{wrong_wire_type, Reader, WireValue};
use super::{decode_error, special, ProtoError, MAX_DEPTH};

/// Decodes `bytes` (one message's body) as `def`.
pub(crate) fn message(
    schema: &Schema,
    def: &MessageDef,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(decode_error(format!(
            "messages nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if def.special != Special::None {
        return special::decode(def.special, bytes);
    }
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (number, wire) = reader.field()?;
        let Some(field) = def.field(number) else {
            continue;
        };
        self::field(schema, field, wire, &mut out, depth).map_err(|e| e.within(&field.name))?;
    }
    Ok(Value::Object(out))
}

fn field(
    schema: &Schema,
    field: &Field,
    wire: WireValue<'_>,
    out: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtoError> {
    if !field.repeated {
        // A singular field seen twice keeps the last value (proto merges messages; no
        // encoder we answer writes a field twice).
        let value = single(schema, field, wire, depth)?;
        match value {
            Value::Object(inlined) if field.inline => out.extend(inlined),
            value => {
                out.insert(field.name.clone(), value);
            }
        }
        return Ok(());
    }
    match &field.ty {
        FieldType::Message(name) => {
            let def = schema.message(name)?;
            if def.map_entry {
                let (key, value) = map_entry(schema, def, wire, depth)?;
                object_at(out, &field.name)?.insert(key, value);
            } else {
                let value = single(schema, field, wire, depth)?;
                array_at(out, &field.name)?.push(value);
            }
        }
        FieldType::Scalar(scalar) => {
            let items = array_at(out, &field.name)?;
            match wire {
                WireValue::Len(bytes) if scalar.wire_type() != WireType::LengthDelimited => {
                    packed(*scalar, bytes, items)?;
                }
                other => items.push(self::scalar(*scalar, other)?),
            }
        }
    }
    Ok(())
}

/// One value of a field's type: a scalar, or a message at the next depth.
fn single(
    schema: &Schema,
    field: &Field,
    wire: WireValue<'_>,
    depth: usize,
) -> Result<Value, ProtoError> {
    match &field.ty {
        FieldType::Scalar(scalar) => self::scalar(*scalar, wire),
        FieldType::Message(name) => {
            let def = schema.message(name)?;
            let WireValue::Len(bytes) = wire else {
                return Err(wrong_wire_type(&wire, WireType::LengthDelimited));
            };
            message(schema, def, bytes, depth + 1)
        }
    }
}

/// A packed run of scalars: their payloads back to back, without keys.
fn packed(scalar: Scalar, bytes: &[u8], items: &mut Vec<Value>) -> Result<(), ProtoError> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let wire = reader.value(scalar.wire_type())?;
        items.push(self::scalar(scalar, wire)?);
    }
    Ok(())
}

/// A map entry as a JSON key and value; a missing key or value is its type's zero.
fn map_entry(
    schema: &Schema,
    entry: &MessageDef,
    wire: WireValue<'_>,
    depth: usize,
) -> Result<(String, Value), ProtoError> {
    let WireValue::Len(bytes) = wire else {
        return Err(wrong_wire_type(&wire, WireType::LengthDelimited));
    };
    let key_field = entry.entry_field(1)?;
    let value_field = entry.entry_field(2)?;
    let mut key = None;
    let mut value = None;
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.field()? {
            (1, wire) => key = Some(single(schema, key_field, wire, depth)?),
            (2, wire) => value = Some(single(schema, value_field, wire, depth)?),
            _ => {}
        }
    }
    let key = match key {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return Err(decode_error("map key is not a string, number or boolean")),
        None => zero_key(key_field),
    };
    let value = match value {
        Some(value) => value,
        None => zero_value(schema, value_field, depth)?,
    };
    Ok((key, value))
}

fn zero_key(field: &Field) -> String {
    match field.ty {
        FieldType::Scalar(Scalar::String) => String::new(),
        FieldType::Scalar(Scalar::Bool) => "false".to_owned(),
        _ => "0".to_owned(),
    }
}

/// What Go holds for a field it never read.
fn zero_value(schema: &Schema, field: &Field, depth: usize) -> Result<Value, ProtoError> {
    Ok(match &field.ty {
        FieldType::Scalar(Scalar::String | Scalar::Bytes) => Value::String(String::new()),
        FieldType::Scalar(Scalar::Bool) => Value::Bool(false),
        FieldType::Scalar(Scalar::Double | Scalar::Float) => Value::from(0.0),
        FieldType::Scalar(_) => Value::from(0),
        FieldType::Message(name) => {
            let def = schema.message(name)?;
            message(schema, def, &[], depth + 1)?
        }
    })
}

/// One scalar payload as JSON. Varints are truncated to the field's width, as Go's
/// generated code does.
pub(crate) fn scalar(scalar: Scalar, wire: WireValue<'_>) -> Result<Value, ProtoError> {
    let value = match (scalar, wire) {
        (Scalar::Int32 | Scalar::Enum, WireValue::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Scalar::Sint32, WireValue::Varint(v)) => Value::from(unzigzag32(v as u32)),
        (Scalar::Sint64, WireValue::Varint(v)) => Value::from(unzigzag64(v)),
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Fixed32, WireValue::Fixed32(v)) => Value::from(v),
        (Scalar::Sfixed32, WireValue::Fixed32(v)) => Value::from(v as i32),
        (Scalar::Float, WireValue::Fixed32(v)) => finite(f64::from(f32::from_bits(v)))?,
        (Scalar::Fixed64, WireValue::Fixed64(v)) => Value::from(v),
        (Scalar::Sfixed64, WireValue::Fixed64(v)) => Value::from(v as i64),
        (Scalar::Double, WireValue::Fixed64(v)) => finite(f64::from_bits(v))?,
        // Go's encoding/json writes invalid UTF-8 as U+FFFD; so does this.
        (Scalar::String, WireValue::Len(b)) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        (Scalar::Bytes, WireValue::Len(b)) => Value::String(STANDARD.encode(b)),
        (scalar, other) => return Err(wrong_wire_type(&other, scalar.wire_type())),
    };
    Ok(value)
}

fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// JSON has no NaN or infinity (Go's encoder refuses them too).
fn finite(v: f64) -> Result<Value, ProtoError> {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| decode_error(format!("{v} cannot be represented in JSON")))
}

fn object_at<'m>(
    out: &'m mut Map<String, Value>,
    name: &str,
) -> Result<&'m mut Map<String, Value>, ProtoError> {
    let slot = out
        .entry(name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    slot.as_object_mut()
        .ok_or_else(|| decode_error("map field holds a non-object"))
}

fn array_at<'m>(
    out: &'m mut Map<String, Value>,
    name: &str,
) -> Result<&'m mut Vec<Value>, ProtoError> {
    let slot = out
        .entry(name.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    slot.as_array_mut()
        .ok_or_else(|| decode_error("repeated field holds a non-array"))
}
