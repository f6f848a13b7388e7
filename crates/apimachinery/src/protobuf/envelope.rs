//! kube's protobuf envelope (`k8s\0` + runtime.Unknown) and watch framing, which are fixed
//! shapes and need no schema.
//!
//! runtime.Unknown: typeMeta = 1 (TypeMeta{apiVersion = 1, kind = 2}), raw = 2,
//! contentEncoding = 3, contentType = 4. meta/v1 WatchEvent: type = 1, object = 2
//! (RawExtension{raw = 1}).

use prost::encoding::WireType;

use super::wire::{put_bytes, wrong_wire_type, Reader, WireValue};
use super::ProtoError;

/// The four bytes before every enveloped object: "k8s" and a zero.
pub const ENVELOPE_PREFIX: [u8; 4] = *b"k8s\0";

/// The envelope alone, for callers that must look at typeMeta before choosing the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unknown {
    pub api_version: String,
    pub kind: String,
    pub raw: Vec<u8>,
}

/// One decoded watch event: its type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) and the
/// enveloped object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchEventFrame {
    pub event_type: String,
    pub object: Vec<u8>,
}

/// `k8s\0` + Unknown, written as upstream's `NestedMarshalTo` does: typeMeta, raw, and the
/// (empty) contentEncoding and contentType, which gogo writes even when empty.
pub fn encode_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_bytes(1, api_version.as_bytes(), &mut type_meta);
    put_bytes(2, kind.as_bytes(), &mut type_meta);
    let mut out = Vec::with_capacity(ENVELOPE_PREFIX.len() + type_meta.len() + raw.len() + 16);
    out.extend_from_slice(&ENVELOPE_PREFIX);
    put_bytes(1, &type_meta, &mut out);
    put_bytes(2, raw, &mut out);
    put_bytes(3, &[], &mut out);
    put_bytes(4, &[], &mut out);
    out
}

/// Checks the prefix and decodes the Unknown. contentEncoding and contentType are ignored,
/// as upstream's serializer ignores them.
pub fn decode_envelope(bytes: &[u8]) -> Result<Unknown, ProtoError> {
    if bytes.is_empty() {
        return Err(ProtoError::Envelope("empty data".to_owned()));
    }
    let Some(body) = bytes.strip_prefix(&ENVELOPE_PREFIX[..]) else {
        return Err(ProtoError::Envelope(
            "provided data does not appear to be a protobuf message, expected prefix \
             [107 56 115 0]"
                .to_owned(),
        ));
    };
    if body.is_empty() {
        return Err(ProtoError::Envelope("empty body".to_owned()));
    }
    let mut unknown = Unknown::default();
    let mut reader = Reader::new(body);
    while !reader.is_empty() {
        match reader.field()? {
            (1, WireValue::Len(type_meta)) => {
                read_type_meta(type_meta, &mut unknown).map_err(|e| e.within("typeMeta"))?
            }
            (2, WireValue::Len(raw)) => unknown.raw = raw.to_vec(),
            (1 | 2, other) => return Err(wrong_wire_type(&other, WireType::LengthDelimited)),
            _ => {}
        }
    }
    Ok(unknown)
}

fn read_type_meta(bytes: &[u8], unknown: &mut Unknown) -> Result<(), ProtoError> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.field()? {
            (1, WireValue::Len(b)) => unknown.api_version = String::from_utf8_lossy(b).into(),
            (2, WireValue::Len(b)) => unknown.kind = String::from_utf8_lossy(b).into(),
            (1 | 2, other) => return Err(wrong_wire_type(&other, WireType::LengthDelimited)),
            _ => {}
        }
    }
    Ok(())
}

/// One watch frame: a 4-byte big-endian length, then a raw (unenveloped) meta/v1 WatchEvent
/// whose object is a RawExtension holding `object_envelope` (an object from
/// [`encode_envelope`] or `Schema::encode_object`).
pub fn watch_frame(event_type: &str, object_envelope: &[u8]) -> Vec<u8> {
    let mut raw_extension = Vec::with_capacity(object_envelope.len() + 6);
    put_bytes(1, object_envelope, &mut raw_extension);
    let mut frame = Vec::with_capacity(raw_extension.len() + event_type.len() + 16);
    frame.extend_from_slice(&[0; 4]);
    put_bytes(1, event_type.as_bytes(), &mut frame);
    put_bytes(2, &raw_extension, &mut frame);
    // A frame over 4 GiB cannot happen (bodies are megabytes); saturating keeps this total.
    let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Splits the first complete frame off a watch stream's buffered bytes: the WatchEvent's
/// bytes and the rest. None while the frame is still incomplete.
pub fn split_watch_frame(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = buf.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Decodes one WatchEvent (a frame without its length prefix).
pub fn decode_watch_event(bytes: &[u8]) -> Result<WatchEventFrame, ProtoError> {
    let mut event = WatchEventFrame::default();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.field()? {
            (1, WireValue::Len(b)) => event.event_type = String::from_utf8_lossy(b).into(),
            (2, WireValue::Len(raw_extension)) => {
                event.object = raw_extension_bytes(raw_extension).map_err(|e| e.within("object"))?
            }
            (1 | 2, other) => return Err(wrong_wire_type(&other, WireType::LengthDelimited)),
            _ => {}
        }
    }
    Ok(event)
}

fn raw_extension_bytes(bytes: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut raw = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.field()? {
            (1, WireValue::Len(b)) => raw = b.to_vec(),
            (1, other) => return Err(wrong_wire_type(&other, WireType::LengthDelimited)),
            _ => {}
        }
    }
    Ok(raw)
}
