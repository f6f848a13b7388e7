//! How the watch cache turns stored values into what it serves.
//!
//! The cache keeps each object as its wire JSON (with `metadata.resourceVersion` filled in,
//! since storage never holds it) plus whatever attributes the resource filters on (labels,
//! selectable fields). The resource layer supplies a [`Codec`]; [`JsonCodec`] is the generic one.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::Revision;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("decoding stored object {key}: {source}")]
    Json {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored object {key} is not a JSON object with metadata")]
    NotAnObject { key: String },
    #[error("cached object {key} does not expand: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A stored value made ready to serve.
pub struct Decoded<A> {
    /// The wire JSON, resourceVersion included.
    pub json: Bytes,
    pub attrs: A,
}

pub trait Codec: Send + Sync + 'static {
    /// What watchers and lists filter on, computed once per object version.
    type Attrs: Clone + Send + Sync + 'static;

    /// Turns a stored value, last written at `revision`, into its served form.
    fn decode(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<Decoded<Self::Attrs>, CodecError>;

    /// The wire JSON of what `decode` produced, when the codec keeps objects in another form
    /// in memory (compressed, say). The default keeps the JSON itself.
    fn wire(&self, key: &str, cached: &Bytes) -> Result<Bytes, CodecError> {
        let _ = key;
        Ok(cached.clone())
    }

    /// How the cache keeps an object's wire JSON in memory; `wire` undoes it. The default
    /// keeps the JSON itself.
    fn keep(&self, json: Bytes) -> Bytes {
        json
    }

    /// The same wire JSON with another resourceVersion (a DELETED event carries the last
    /// state of the object at the deletion revision).
    fn with_revision(
        &self,
        key: &str,
        json: &[u8],
        revision: Revision,
    ) -> Result<Bytes, CodecError> {
        set_resource_version(key, json, revision)
    }
}

/// The generic codec: values are JSON objects with a `metadata` object; no attributes.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Attrs = ();

    fn decode(
        &self,
        key: &str,
        value: &[u8],
        revision: Revision,
    ) -> Result<Decoded<()>, CodecError> {
        Ok(Decoded {
            json: set_resource_version(key, value, revision)?,
            attrs: (),
        })
    }
}

/// Sets `metadata.resourceVersion` (a decimal string, as Kubernetes sends it) in a JSON object,
/// keeping the order of every other field.
pub fn set_resource_version(
    key: &str,
    json: &[u8],
    revision: Revision,
) -> Result<Bytes, CodecError> {
    let mut value: Value = serde_json::from_slice(json).map_err(|source| CodecError::Json {
        key: key.to_string(),
        source,
    })?;
    let metadata = value
        .as_object_mut()
        .map(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
        })
        .and_then(Value::as_object_mut)
        .ok_or_else(|| CodecError::NotAnObject {
            key: key.to_string(),
        })?;
    metadata.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    let mut out = BytesMut::with_capacity(json.len() + 32).writer();
    serde_json::to_writer(&mut out, &value).map_err(|source| CodecError::Json {
        key: key.to_string(),
        source,
    })?;
    Ok(out.into_inner().freeze())
}

/// An object's wire JSON with its resourceVersion still to fill in: what a writer renders
/// before the store gives its write a revision. The resourceVersion's digits go at `slot`.
#[derive(Clone, Debug)]
pub struct Unversioned {
    json: Bytes,
    slot: std::ops::Range<usize>,
}

impl Unversioned {
    /// `json` rendered with `placeholder` as its resourceVersion: the one place the
    /// placeholder occurs becomes the slot. None when it occurs other than once, so a
    /// placeholder a client could guess cannot move the slot.
    pub fn from_placeholder(json: Vec<u8>, placeholder: &str) -> Option<Self> {
        let needle = placeholder.as_bytes();
        let mut found = memchr::memmem::find_iter(&json, needle);
        let start = found.next()?;
        if found.next().is_some() {
            return None;
        }
        Some(Unversioned {
            slot: start..start + needle.len(),
            json: Bytes::from(json),
        })
    }

    /// The wire JSON at `revision`.
    pub fn at(&self, revision: Revision) -> Bytes {
        let digits = revision.to_string();
        let mut out = BytesMut::with_capacity(self.json.len() - self.slot.len() + digits.len());
        out.put_slice(&self.json[..self.slot.start]);
        out.put_slice(digits.as_bytes());
        out.put_slice(&self.json[self.slot.end..]);
        out.freeze()
    }
}

/// One line of a Kubernetes JSON watch stream: `{"type":"MODIFIED","object":{...}}\n`.
pub fn watch_frame(event_type: &str, object_json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object_json.len() + event_type.len() + 24);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(event_type.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object_json);
    out.put_slice(b"}\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_resource_version_and_keeps_field_order() {
        let cases: [(&str, Revision, &str); 3] = [
            (
                r#"{"kind":"ImageStream","metadata":{"name":"a","namespace":"n"},"spec":{}}"#,
                42,
                r#"{"kind":"ImageStream","metadata":{"name":"a","namespace":"n","resourceVersion":"42"},"spec":{}}"#,
            ),
            (
                r#"{"metadata":{"resourceVersion":"1"}}"#,
                7,
                r#"{"metadata":{"resourceVersion":"7"}}"#,
            ),
            (
                r#"{"kind":"X"}"#,
                3,
                r#"{"kind":"X","metadata":{"resourceVersion":"3"}}"#,
            ),
        ];
        for (input, rv, want) in cases {
            let got = set_resource_version("k", input.as_bytes(), rv).expect("valid");
            assert_eq!(
                std::str::from_utf8(&got).expect("utf8"),
                want,
                "input {input}"
            );
        }
    }

    #[test]
    fn rejects_non_objects() {
        for input in ["[]", "3", r#"{"metadata":5}"#] {
            let err = set_resource_version("k", input.as_bytes(), 1).expect_err(input);
            assert!(
                matches!(err, CodecError::NotAnObject { .. }),
                "{input}: {err}"
            );
        }
        let err = set_resource_version("k", b"{", 1).expect_err("truncated");
        assert!(matches!(err, CodecError::Json { .. }));
    }

    #[test]
    fn unversioned_json_takes_the_revision_in_its_slot() {
        let json = br#"{"metadata":{"name":"a","resourceVersion":"@rv@"},"spec":{}}"#.to_vec();
        let unversioned = Unversioned::from_placeholder(json, "@rv@").expect("one slot");
        assert_eq!(
            &unversioned.at(1234)[..],
            &br#"{"metadata":{"name":"a","resourceVersion":"1234"},"spec":{}}"#[..]
        );
        assert_eq!(
            &unversioned.at(7)[..],
            &br#"{"metadata":{"name":"a","resourceVersion":"7"},"spec":{}}"#[..]
        );
    }

    #[test]
    fn unversioned_json_needs_exactly_one_placeholder() {
        let none = br#"{"metadata":{"name":"a"}}"#.to_vec();
        assert!(Unversioned::from_placeholder(none, "@rv@").is_none());
        let twice = br#"{"metadata":{"name":"@rv@","resourceVersion":"@rv@"}}"#.to_vec();
        assert!(Unversioned::from_placeholder(twice, "@rv@").is_none());
    }

    #[test]
    fn frames_watch_events() {
        let f = watch_frame("ADDED", br#"{"a":1}"#);
        assert_eq!(&f[..], &b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n"[..]);
    }
}
