//! `ObjectMeta` as every object of ours carries it: k8s-openapi's fields, names and JSON, but
//! with each managedFields entry's `fieldsV1` kept as the JSON text it is, as Go's
//! `metav1.FieldsV1` keeps its bytes.
//!
//! Why not k8s-openapi's own type: it holds `fieldsV1` as a `serde_json::Value`, a tree of
//! maps with a string per key. A stream's creator owns every tag, so its entry is as large as
//! the spec; decoding, copying, rendering and dropping that tree was the largest part of an
//! update of a stream with hundreds of tags, though most writes never look inside it (a
//! 1,000-tag stream: 187 KB of fieldsV1, about 3.6 ms to decode as a tree). As text, it is
//! copied through, and parsed only by a write that edits the entry.
//!
//! The OpenAPI schema is k8s-openapi's, so clients see the same type.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as k8s;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

pub use k8s::{OwnerReference, Time};

/// Standard object metadata (`io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::serialize_option"
    )]
    pub creation_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::serialize_option"
    )]
    pub deletion_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<Vec<ManagedFieldsEntry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Vec<OwnerReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One manager's entry in `metadata.managedFields`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedFieldsEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields_type: Option<String>,
    #[serde(default, rename = "fieldsV1", skip_serializing_if = "Option::is_none")]
    pub fields_v1: Option<FieldsV1>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::serialize_option"
    )]
    pub time: Option<Time>,
}

/// A field set in its JSON form (`{"f:spec":{"f:tags":{...}}}`), held as compact JSON text.
#[derive(Clone, Debug)]
pub struct FieldsV1(Box<RawValue>);

impl FieldsV1 {
    /// The JSON text of `value`.
    pub fn from_value(value: &Value) -> FieldsV1 {
        FieldsV1(RawValue::from_string(value.to_string()).unwrap_or_else(|_| null()))
    }

    /// JSON text rendered elsewhere (compact, as [`FieldsV1::from_value`] renders it); None
    /// when it is not JSON.
    pub fn from_json(text: String) -> Option<FieldsV1> {
        RawValue::from_string(text).ok().map(FieldsV1)
    }

    /// The set as a value, for a write that edits it.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    pub fn json(&self) -> &str {
        self.0.get()
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

impl PartialEq for FieldsV1 {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Serialize for FieldsV1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for FieldsV1 {
    /// Text as the client wrote it, compacted when it holds whitespace, so that what is stored
    /// and served reads as a value rendered here would. Text with a repeated key is refused:
    /// a request body holding one is decoded again through a value, which keeps the last and
    /// reports the repetition as kube does.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if has_repeated_keys(raw.get()) {
            return Err(serde::de::Error::custom("fieldsV1 repeats a key"));
        }
        if !raw.get().bytes().any(|b| b.is_ascii_whitespace()) {
            return Ok(FieldsV1(raw));
        }
        RawValue::from_string(compact(raw.get()))
            .map(FieldsV1)
            .map_err(serde::de::Error::custom)
    }
}

/// Valid JSON `text` without the whitespace between its tokens (clients that indent, or put
/// a space after `:` and `,` as Python's `json.dumps` does).
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Whether some object in the JSON `text` has a key twice, or the text is not JSON serde
/// reads whole (nested deeper than serde's limit, a lone surrogate, a number out of range):
/// either way the body goes the long way, which reports it. Keys are compared by hash (FNV-1a
/// of the unescaped text); a collision reads as a repetition, which only costs a decoding
/// through a value.
///
/// A scan of the bytes, not a serde pass: every fieldsV1 of every request body and stored
/// object comes through here, and a 1,000-tag stream's creator entry is 187 KB. The scan reads
/// only what fieldsV1 renderers write, objects of objects with plain keys, no deeper than
/// [`SCANNED_DEPTH`]; anything else (a `\u` escape, an array, a scalar) is left to serde. The
/// text is JSON already (`RawValue` checked its syntax, though not its depth or its escapes'
/// meaning).
fn has_repeated_keys(text: &str) -> bool {
    KeyScan::default()
        .repeats(text.as_bytes())
        .unwrap_or_else(|| has_repeated_keys_by_serde(text))
}

/// The deepest nesting the scan reads; serde refuses beyond 127, and fieldsV1 of the deepest
/// image type is about a tenth of that.
const SCANNED_DEPTH: usize = 64;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
}

/// Past this many keys an object's hashes go into a set; below, a look along them is cheaper.
const FEW_KEYS: usize = 16;

#[derive(Default)]
struct KeyScan {
    /// The key hashes of the open objects, innermost last.
    keys: Vec<u64>,
    levels: Vec<Level>,
}

struct Level {
    /// Where its keys start in [`KeyScan::keys`].
    keys_from: usize,
    /// Its key hashes again, once it has more than [`FEW_KEYS`].
    many: Option<std::collections::HashSet<u64>>,
}

impl KeyScan {
    /// Some(whether a key repeats), or None where the text is not objects of objects with
    /// plain keys, no deeper than [`SCANNED_DEPTH`].
    fn repeats(mut self, text: &[u8]) -> Option<bool> {
        let mut at = 0;
        // Whether the next string is a key: after `{` or `,`; a value is always an object.
        let mut key_next = false;
        while let Some(&byte) = text.get(at) {
            at += 1;
            match byte {
                b'{' if self.levels.len() < SCANNED_DEPTH => {
                    self.levels.push(Level {
                        keys_from: self.keys.len(),
                        many: None,
                    });
                    key_next = true;
                }
                b'}' => {
                    let level = self.levels.pop()?;
                    self.keys.truncate(level.keys_from);
                    key_next = false;
                }
                b',' => key_next = true,
                b':' | b' ' | b'\t' | b'\n' | b'\r' => {}
                b'"' if key_next => {
                    let (end, hash) = key_end(text, at);
                    at = end;
                    if self.seen(hash?) {
                        return Some(true);
                    }
                    key_next = false;
                }
                _ => return None,
            }
        }
        Some(false)
    }

    /// Notes a key of the innermost object; whether it had it already.
    fn seen(&mut self, hash: u64) -> bool {
        let Some(level) = self.levels.last_mut() else {
            return false;
        };
        let from = level.keys_from;
        if let Some(many) = level.many.as_mut() {
            return !many.insert(hash);
        }
        if self.keys[from..].contains(&hash) {
            return true;
        }
        self.keys.push(hash);
        if self.keys.len() - from > FEW_KEYS {
            level.many = Some(self.keys[from..].iter().copied().collect());
        }
        false
    }
}

/// Where the key whose text starts at `at` ends (after its closing quote), and the hash of its
/// unescaped text: None when it has a `\u` escape (or does not end).
fn key_end(text: &[u8], mut at: usize) -> (usize, Option<u64>) {
    let mut hash = FNV_OFFSET;
    while let Some(&byte) = text.get(at) {
        at += 1;
        let unescaped = match byte {
            b'"' => return (at, Some(hash)),
            b'\\' => {
                let escaped = text.get(at).copied();
                at += 1;
                match escaped {
                    Some(b'b') => 0x08,
                    Some(b'f') => 0x0c,
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'"' | b'\\' | b'/') => escaped.unwrap_or_default(),
                    _ => return (at, None),
                }
            }
            _ => byte,
        };
        hash = fnv(hash, unescaped);
    }
    (at, None)
}

/// [`has_repeated_keys`] through serde, which unescapes every key.
fn has_repeated_keys_by_serde(text: &str) -> bool {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

    struct Walk;

    impl<'de> DeserializeSeed<'de> for Walk {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Walk {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // Most objects have a few keys: their hashes stay on the stack.
            let mut few = [0u64; 16];
            let mut len = 0;
            let mut many = std::collections::HashSet::new();
            while let Some(KeyHash(hash)) = map.next_key()? {
                let repeated = if len < few.len() {
                    let seen = few[..len].contains(&hash);
                    few[len] = hash;
                    len += 1;
                    seen
                } else {
                    few.contains(&hash) || !many.insert(hash)
                };
                if repeated {
                    return Err(serde::de::Error::custom("a repeated key"));
                }
                map.next_value_seed(Walk)?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk)?.is_some() {}
            Ok(())
        }
        crate::pass_over_json_scalars!();
    }

    struct KeyHash(u64);

    impl<'de> Deserialize<'de> for KeyHash {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Hash;
            impl Visitor<'_> for Hash {
                type Value = KeyHash;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E>(self, v: &str) -> Result<KeyHash, E> {
                    Ok(KeyHash(v.bytes().fold(FNV_OFFSET, fnv)))
                }
            }
            d.deserialize_str(Hash)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    Walk.deserialize(&mut de).is_err()
}

impl schemars::JsonSchema for ObjectMeta {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <k8s::ObjectMeta as schemars::JsonSchema>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <k8s::ObjectMeta as schemars::JsonSchema>::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <k8s::ObjectMeta as schemars::JsonSchema>::json_schema(generator)
    }

    fn inline_schema() -> bool {
        <k8s::ObjectMeta as schemars::JsonSchema>::inline_schema()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn full() -> Value {
        json!({
            "annotations": {"a": "1"},
            "creationTimestamp": "2026-11-30T09:00:00Z",
            "deletionGracePeriodSeconds": 30,
            "deletionTimestamp": "2026-11-30T09:01:00Z",
            "finalizers": ["f"],
            "generateName": "g-",
            "generation": 2,
            "labels": {"l": "v"},
            "managedFields": [{
                "apiVersion": "image.openshift.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:l": {}}}, "f:spec": {}},
                "manager": "kubectl",
                "operation": "Update",
                "subresource": "status",
                "time": "2026-11-30T09:00:00Z"
            }],
            "name": "n",
            "namespace": "ns",
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u"}],
            "resourceVersion": "7",
            "selfLink": "/x",
            "uid": "u-1"
        })
    }

    #[test]
    fn json_is_k8s_openapis_both_ways() {
        for value in [full(), json!({}), json!({"name": "n", "managedFields": []})] {
            let ours: ObjectMeta = serde_json::from_value(value.clone()).expect("ours");
            let theirs: k8s::ObjectMeta = serde_json::from_value(value.clone()).expect("k8s");
            assert_eq!(
                serde_json::to_string(&ours).expect("render"),
                serde_json::to_string(&theirs).expect("render"),
            );
            assert_eq!(serde_json::to_value(&ours).expect("value"), value);
            let from_text: ObjectMeta =
                serde_json::from_str(&value.to_string()).expect("from text");
            assert_eq!(from_text, ours);
        }
    }

    #[test]
    fn nulls_read_as_absent() {
        let meta: ObjectMeta =
            serde_json::from_value(json!({"labels": null, "managedFields": [{"fieldsV1": null}]}))
                .expect("decodes");
        assert_eq!(meta.labels, None);
        let entries = meta.managed_fields.expect("one entry");
        assert_eq!(entries[0].fields_v1, None);
    }

    #[test]
    fn fields_v1_text_is_kept_and_compacted() {
        let text = r#"{"f:spec":{"f:tags":{"k:{\"name\":\"a b\"}":{".":{}}}}}"#;
        let entry: ManagedFieldsEntry =
            serde_json::from_str(&format!(r#"{{"fieldsV1":{text}}}"#)).expect("decodes");
        assert_eq!(entry.fields_v1.as_ref().map(FieldsV1::json), Some(text));
        let spaced = r#"{ "fieldsV1" : { "f:a" : { } ,
            "f:b": {"." :{}} } }"#;
        let entry: ManagedFieldsEntry = serde_json::from_str(spaced).expect("decodes");
        assert_eq!(
            entry.fields_v1.as_ref().map(FieldsV1::json),
            Some(r#"{"f:a":{},"f:b":{".":{}}}"#)
        );
        assert_eq!(
            entry.fields_v1.map(|f| f.to_value()),
            Some(json!({"f:a": {}, "f:b": {".": {}}}))
        );
    }

    #[test]
    fn compacting_keeps_strings_whole() {
        let text = "{ \"f:a b\" : { \"k:{\\\"n\\\": \\\"x \\\\\\\" y\\\"}\" :\n\t{ } } , \"v\" : [ 1 , \" \" ] }";
        let value: Value = serde_json::from_str(text).expect("valid");
        assert_eq!(compact(text), value.to_string());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = "[ a\"\\\\\n\t{}:,\\u00e9]{0,6}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((text, inner), 0..4)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// A JSON string for `text`, each character written as itself (escaped where JSON needs
    /// it), as its `\u` escape (`spelled` 1), or, for `/`, as `\/` (`spelled` 2).
    fn json_string(text: &str, spelled: &[u8]) -> String {
        let mut out = String::from('"');
        for (i, c) in text.chars().enumerate() {
            match (spelled.get(i).copied().unwrap_or(0), c) {
                (1, _) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                (2, '/') => out.push_str("\\/"),
                _ => {
                    let one = serde_json::to_string(&c.to_string()).expect("renders");
                    out.push_str(&one[1..one.len() - 1]);
                }
            }
        }
        out.push('"');
        out
    }

    /// JSON text shaped mostly as fieldsV1 is (objects of objects), whose objects often repeat
    /// a key, written with every kind of escape, and with whitespace between tokens; now and
    /// then an array, a string, a lone surrogate or a number serde refuses.
    fn json_text_with_repeats() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let spelling = prop_oneof![40 => Just(0u8), 8 => Just(2u8), 1 => Just(1u8)];
        let key = (
            prop::collection::vec(
                prop::sample::select(vec!['a', 'b', '"', '\\', '/', '\n', 'é', '{']),
                0..3,
            ),
            prop::collection::vec(spelling, 3),
        )
            .prop_map(|(chars, spelled)| {
                json_string(&chars.into_iter().collect::<String>(), &spelled)
            });
        let leaf = prop_oneof![
            16 => Just("{}".to_string()),
            1 => Just("null".to_string()),
            1 => Just("1e400".to_string()),
            1 => Just(r#""\ud800""#.to_string()),
            1 => key.clone(),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let space = prop::sample::select(vec!["", " ", "\n  "]);
            prop_oneof![
                1 => (prop::collection::vec(inner.clone(), 0..6), space.clone())
                    .prop_map(|(items, sp)| format!("[{sp}{}]", items.join(","))),
                8 => (prop::collection::vec((key.clone(), inner), 0..20), space).prop_map(
                    |(pairs, sp)| {
                        let fields: Vec<String> = pairs
                            .iter()
                            .map(|(k, v)| format!("{k}{sp}:{sp}{v}"))
                            .collect();
                        format!("{{{sp}{}}}", fields.join(&format!(",{sp}")))
                    }
                ),
            ]
        })
    }

    /// What random texts seldom hold: a repetition after more than [`FEW_KEYS`] keys, and one
    /// key written two ways without a `\u` escape.
    #[test]
    fn the_key_scan_sees_repeats_past_many_keys_and_through_escapes() {
        let object = |keys: &[String]| {
            let fields: Vec<String> = keys.iter().map(|k| format!("\"{k}\":{{}}")).collect();
            format!("{{\"f:spec\":{{{}}},\"f:status\":{{}}}}", fields.join(","))
        };
        let distinct: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let mut cases = vec![(object(&distinct), false)];
        for (at, again) in [(17, 3), (25, 24), (40, 39), (30, 0)] {
            let mut keys = distinct.clone();
            keys.insert(at, keys[again].clone());
            cases.push((object(&keys), true));
        }
        cases.extend([
            (r#"{"/":1,"\/":2}"#.to_string(), true),
            (r#"{"a\/b":{},"x":{"a/b":{}},"a/b":{}}"#.to_string(), true),
            (r#"{"a\/b":{},"x":{"a/b":{}}}"#.to_string(), false),
            (r#"{"\"":[{"\"":1},{"\"":2}],"\\":{}}"#.to_string(), false),
            (r#"{"\n":1,"\u000a":2}"#.to_string(), true),
            // Serde refuses these, so they go the long way, which reports them.
            (r#"{"f:a":"\ud800"}"#.to_string(), true),
            (r#"{"f:a":1e400}"#.to_string(), true),
            (
                format!("{}{{}}{}", "{\"x\":".repeat(200), "}".repeat(200)),
                true,
            ),
            (
                format!("{}{{}}{}", "{\"x\":".repeat(60), "}".repeat(60)),
                false,
            ),
        ]);
        for (text, repeats) in cases {
            assert_eq!(has_repeated_keys(&text), repeats, "{text}");
            assert_eq!(has_repeated_keys_by_serde(&text), repeats, "{text}");
        }
        // What renderers write is read by the scan itself, not left to serde.
        let rendered = r#"{"f:metadata":{"f:labels":{".":{},"f:a/b":{}}},"f:spec":{"f:tags":{"k:{\"name\":\"t\\\\1\"}":{".":{},"f:from":{"f:kind":{}}}}}}"#;
        assert_eq!(KeyScan::default().repeats(rendered.as_bytes()), Some(false));
        let object = object(&distinct);
        assert_eq!(KeyScan::default().repeats(object.as_bytes()), Some(false));
    }

    proptest::proptest! {
        #[test]
        fn the_key_scan_finds_what_serde_finds(text in json_text_with_repeats()) {
            // What `RawValue` lets through: JSON syntax, whatever its depth and escapes mean.
            proptest::prop_assume!(serde_json::from_str::<Box<RawValue>>(&text).is_ok());
            proptest::prop_assert_eq!(
                has_repeated_keys(&text),
                has_repeated_keys_by_serde(&text),
                "{}", text
            );
        }

        #[test]
        fn compacting_undoes_pretty_printing(value in json_value()) {
            let pretty = serde_json::to_string_pretty(&value).expect("renders");
            proptest::prop_assert_eq!(compact(&pretty), value.to_string());
        }
    }

    #[test]
    fn fields_v1_with_a_repeated_key_is_refused() {
        for text in [
            r#"{"f:a":{},"f:a":{}}"#,
            r#"{"f:a":{"f:b":{},"f:c":{},"f:b":{}}}"#,
            r#"{"f:a":{},"f:\u0061":{}}"#,
        ] {
            let body = format!(r#"{{"fieldsV1":{text}}}"#);
            assert!(
                serde_json::from_str::<ManagedFieldsEntry>(&body).is_err(),
                "{text}"
            );
        }
        let body = r#"{"fieldsV1":{"f:a":{"f:b":{}},"f:b":{"f:a":{}}}}"#;
        assert!(serde_json::from_str::<ManagedFieldsEntry>(body).is_ok());
    }

    #[test]
    fn the_schema_is_k8s_openapis() {
        let ours = schemars::SchemaGenerator::default().into_root_schema_for::<ObjectMeta>();
        let theirs = schemars::SchemaGenerator::default().into_root_schema_for::<k8s::ObjectMeta>();
        assert_eq!(ours, theirs);
    }
}
