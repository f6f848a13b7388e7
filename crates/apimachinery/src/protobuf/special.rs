//! The apimachinery messages whose JSON is not an object of their fields, with the rules of
//! their hand-written Go marshalers (`time_proto.go`, `micro_time_proto.go`, `FieldsV1`,
//! `RawExtension`, `intstr`, `quantity_proto.go`). Fields are matched by number, since their
//! names (FieldsV1's is `Raw`) are not JSON names.

use jiff::Timestamp;
use prost::encoding::WireType;
use serde_json::Value;

use super::encode::{json_kind, string};
use super::schema::Special;
use super::wire::{put_bytes, put_varint, wrong_wire_type, Reader, WireValue};
use super::{decode_error, encode_error, ProtoError};

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: JSON null.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

pub(crate) fn encode(kind: Special, value: &Value, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    match kind {
        Special::Time => encode_time(value, false, out),
        Special::MicroTime => encode_time(value, true, out),
        Special::InlineJson => {
            let raw = serde_json::to_vec(value)
                .map_err(|e| encode_error(format!("cannot serialize JSON: {e}")))?;
            put_bytes(1, &raw, out);
            Ok(())
        }
        Special::IntOrString => encode_int_or_string(value, out),
        Special::Quantity => {
            let text = match value {
                Value::Number(n) => n.to_string(),
                other => string(other)?.to_owned(),
            };
            put_bytes(1, text.as_bytes(), out);
            Ok(())
        }
        Special::None => Err(encode_error("not a special message")),
    }
}

pub(crate) fn decode(kind: Special, bytes: &[u8]) -> Result<Value, ProtoError> {
    match kind {
        Special::Time => decode_time(bytes, false),
        Special::MicroTime => decode_time(bytes, true),
        Special::InlineJson => decode_inline_json(bytes),
        Special::IntOrString => decode_int_or_string(bytes),
        Special::Quantity => {
            let mut text = None;
            each_field(bytes, |number, wire| {
                if number == 1 {
                    text = Some(len_string(wire)?);
                }
                Ok(())
            })?;
            // Go's zero Quantity prints as "0".
            Ok(Value::String(text.unwrap_or_else(|| "0".to_owned())))
        }
        Special::None => Err(decode_error("not a special message")),
    }
}

/// metav1.Time keeps whole seconds only (its nanos are written as 0 and ignored on read);
/// MicroTime keeps nanoseconds on the wire and microseconds in JSON. The zero time is an
/// empty message.
fn encode_time(value: &Value, micro: bool, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let text = string(value)?;
    let time: Timestamp = text
        .parse()
        .map_err(|e| encode_error(format!("invalid time {text:?}: {e}")))?;
    // Go counts seconds down to the calendar second and nanoseconds up from it.
    let (mut seconds, mut nanos) = (time.as_second(), time.subsec_nanosecond());
    if nanos < 0 {
        seconds -= 1;
        nanos += NANOS_PER_SECOND as i32;
    }
    if seconds == ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(());
    }
    put_varint(1, seconds as u64, out);
    let nanos = if micro { nanos } else { 0 };
    put_varint(2, nanos as u64, out);
    Ok(())
}

fn decode_time(bytes: &[u8], micro: bool) -> Result<Value, ProtoError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    each_field(bytes, |number, wire| {
        match (number, wire) {
            (1, WireValue::Varint(v)) => seconds = v as i64,
            (2, WireValue::Varint(v)) => nanos = v as i32,
            (1 | 2, other) => return Err(wrong_wire_type(&other, WireType::Varint)),
            _ => {}
        }
        Ok(())
    })?;
    if !micro {
        nanos = 0;
    }
    // time.Unix normalizes nanoseconds outside [0, 1s) into the seconds.
    let total = i128::from(seconds) * i128::from(NANOS_PER_SECOND) + i128::from(nanos);
    let nanos_per_second = i128::from(NANOS_PER_SECOND);
    let seconds = i64::try_from(total.div_euclid(nanos_per_second))
        .map_err(|_| decode_error("time out of range"))?;
    // JSON shows microseconds at most; a time within them of the zero time is the zero time
    // (what its JSON would read back as).
    let nanos = total.rem_euclid(nanos_per_second) as i32;
    let nanos = nanos - nanos % 1000;
    if seconds == ZERO_TIME_SECONDS && nanos == 0 {
        return Ok(Value::Null);
    }
    let time = Timestamp::new(seconds, nanos)
        .map_err(|_| decode_error(format!("time {seconds}s is out of range")))?;
    Ok(Value::String(if micro {
        format!("{time:.6}")
    } else {
        format!("{time:.0}")
    }))
}

/// FieldsV1 and RawExtension hold a JSON document's bytes; none (or empty) is null, as their
/// Go MarshalJSON answers for nil. Bytes that are not JSON are an error, not a null: a null
/// would silently drop whatever the client sent.
fn decode_inline_json(bytes: &[u8]) -> Result<Value, ProtoError> {
    let mut raw: &[u8] = &[];
    each_field(bytes, |number, wire| {
        match (number, wire) {
            (1, WireValue::Len(b)) => raw = b,
            (1, other) => return Err(wrong_wire_type(&other, WireType::LengthDelimited)),
            _ => {}
        }
        Ok(())
    })?;
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| decode_error(format!("raw is not JSON: {e}")))
}

/// intstr writes all three fields: type (0 int, 1 string), intVal, strVal.
fn encode_int_or_string(value: &Value, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let (ty, int, text) = match value {
        Value::String(s) => (1, 0, s.as_str()),
        Value::Number(n) => {
            let int = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| encode_error(format!("{n} is not an int32")))?;
            (0, int, "")
        }
        other => {
            let found = json_kind(other);
            return Err(encode_error(format!(
                "expected a number or string, found {found}"
            )));
        }
    };
    put_varint(1, ty, out);
    // Sign-extended like any negative int32.
    put_varint(2, int as u64, out);
    put_bytes(3, text.as_bytes(), out);
    Ok(())
}

fn decode_int_or_string(bytes: &[u8]) -> Result<Value, ProtoError> {
    let (mut ty, mut int, mut text) = (0i64, 0i32, String::new());
    each_field(bytes, |number, wire| {
        match (number, wire) {
            (1, WireValue::Varint(v)) => ty = v as i64,
            (2, WireValue::Varint(v)) => int = v as i32,
            (3, wire) => text = len_string(wire)?,
            (1 | 2, other) => return Err(wrong_wire_type(&other, WireType::Varint)),
            _ => {}
        }
        Ok(())
    })?;
    match ty {
        0 => Ok(Value::from(int)),
        1 => Ok(Value::String(text)),
        other => Err(decode_error(format!("impossible IntOrString.Type {other}"))),
    }
}

fn len_string(wire: WireValue<'_>) -> Result<String, ProtoError> {
    match wire {
        WireValue::Len(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        other => Err(wrong_wire_type(&other, WireType::LengthDelimited)),
    }
}

/// Visits every field of a message's bytes; the payloads borrow from `bytes`.
fn each_field<'a>(
    bytes: &'a [u8],
    mut visit: impl FnMut(u32, WireValue<'a>) -> Result<(), ProtoError>,
) -> Result<(), ProtoError> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (number, wire) = reader.field()?;
        visit(number, wire)?;
    }
    Ok(())
}
