//! The protobuf wire format: a bounds-checked reader over untrusted bytes, and the few
//! writers the encoder needs (on top of prost's varint and key encoding).

use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};

use super::{decode_error, ProtoError, MAX_DEPTH};

/// One field's payload as it appears on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
    /// A (deprecated) group, already skipped: no Kubernetes field is one.
    Group,
}

impl WireValue<'_> {
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Fixed32(_) => "32-bit",
            WireValue::Len(_) => "length-delimited",
            WireValue::Group => "group",
        }
    }
}

pub(crate) fn describe_wire_type(wire_type: WireType) -> &'static str {
    match wire_type {
        WireType::Varint => "varint",
        WireType::SixtyFourBit => "64-bit",
        WireType::LengthDelimited => "length-delimited",
        WireType::StartGroup | WireType::EndGroup => "group",
        WireType::ThirtyTwoBit => "32-bit",
    }
}

/// The error for a known field that arrived with another wire type than its declared one.
pub(crate) fn wrong_wire_type(found: &WireValue<'_>, expected: WireType) -> ProtoError {
    decode_error(format!(
        "wrong wire type {} (expected {})",
        found.describe(),
        describe_wire_type(expected)
    ))
}

/// Reads fields from a message's bytes. Every read checks the bytes left first, so a hostile
/// length can neither read past the end nor make anything allocate.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next field: its number and payload. Groups are skipped whole.
    pub(crate) fn field(&mut self) -> Result<(u32, WireValue<'a>), ProtoError> {
        let (number, wire_type) =
            decode_key(&mut self.buf).map_err(|_| decode_error("invalid field key"))?;
        let value = match wire_type {
            WireType::StartGroup => {
                self.skip_group(number)?;
                WireValue::Group
            }
            WireType::EndGroup => return Err(decode_error("unexpected end of group")),
            other => self.value(other)?,
        };
        Ok((number, value))
    }

    /// One payload of a non-group wire type: also how packed repeated scalars are read.
    pub(crate) fn value(&mut self, wire_type: WireType) -> Result<WireValue<'a>, ProtoError> {
        match wire_type {
            WireType::Varint => Ok(WireValue::Varint(self.varint()?)),
            WireType::SixtyFourBit => {
                let bytes = self.take_array::<8>()?;
                Ok(WireValue::Fixed64(u64::from_le_bytes(bytes)))
            }
            WireType::ThirtyTwoBit => {
                let bytes = self.take_array::<4>()?;
                Ok(WireValue::Fixed32(u32::from_le_bytes(bytes)))
            }
            WireType::LengthDelimited => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| decode_error(format!("length {len} is too large")))?;
                Ok(WireValue::Len(self.take(len)?))
            }
            WireType::StartGroup | WireType::EndGroup => {
                Err(decode_error("unexpected group in a packed field"))
            }
        }
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        decode_varint(&mut self.buf).map_err(|_| decode_error("invalid varint"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtoError> {
        if len > self.buf.len() {
            return Err(decode_error(format!(
                "length {len} exceeds the {} bytes left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| decode_error("truncated fixed-width value"))
    }

    /// Skips to the end of a group, counting nested groups instead of recursing.
    fn skip_group(&mut self, number: u32) -> Result<(), ProtoError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            let (inner, wire_type) =
                decode_key(&mut self.buf).map_err(|_| decode_error("invalid field key"))?;
            match wire_type {
                WireType::StartGroup => {
                    if open.len() >= MAX_DEPTH {
                        return Err(decode_error(format!(
                            "groups nested deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    open.push(inner);
                }
                WireType::EndGroup => {
                    if inner != innermost {
                        return Err(decode_error("mismatched end of group"));
                    }
                    open.pop();
                }
                other => {
                    self.value(other)?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn put_varint(number: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::Varint, out);
    encode_varint(value, out);
}

pub(crate) fn put_fixed32(number: u32, value: u32, out: &mut Vec<u8>) {
    encode_key(number, WireType::ThirtyTwoBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_fixed64(number: u32, value: u64, out: &mut Vec<u8>) {
    encode_key(number, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_bytes(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
