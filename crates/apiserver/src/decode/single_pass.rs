//! The fast path of [`super::typed_json`]: the typed decoding of a JSON body in one pass, which
//! also notices what would make the long way answer differently. A wrapper around serde_json's
//! deserializer, it hashes each object's keys as they go by (a repeated key: serde would keep
//! the last one silently, Go's strict decoder reports it), notes whether the type passed over
//! any field (serde's derive ignores unknown fields through `deserialize_ignored_any`, which is
//! how serde_ignored finds them too), and keeps the top level's `apiVersion` and `kind`.
//!
//! serde_ignored itself is not used here: it copies every key of the body into a `String` to
//! build the path of a field it might report, and a body with managedFields has thousands of
//! keys. The paths are only needed when something was passed over, and then the long way
//! renders them. A clean body costs one pass, no copy of any key, and no allocation beyond the
//! object's own (a 54 KB stream body: about a third less than a duplicate-key scan followed by
//! serde_ignored's decoding).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, Error as _, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};

/// What the pass noticed besides the object.
#[derive(Default)]
pub(super) struct Findings {
    /// Some value was passed over by the type (an unknown field, usually).
    pub passed_over: Cell<bool>,
    /// The document is a JSON object (serde decodes a struct from an array too; kube does not).
    pub object: Cell<bool>,
    pub api_version: RefCell<Option<String>>,
    pub kind: RefCell<Option<String>>,
}

/// Why a pass stopped short of an object.
const REPEATED_KEY: &str = "a repeated key";
const UNHASHED_KEY: &str = "a key that is not a string";

/// Decodes `T` from `de` in one pass, recording into `findings`. A repeated key fails the
/// decoding (the long way words it).
pub(super) fn decode<'de, T, D>(de: D, findings: &Findings) -> Result<T, D::Error>
where
    T: serde::Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(Checked {
        de,
        findings,
        role: Role::Top,
    })
}

/// Where a value sits, as far as the pass cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The document itself: its keys name the type strings.
    Top,
    /// The value of the top level's `apiVersion` or `kind`.
    TypeString(TypeKey),
    /// Anything else.
    Inner,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeKey {
    ApiVersion,
    Kind,
}

/// A deserializer whose every value is checked on its way to the type's visitor.
struct Checked<'f, D> {
    de: D,
    findings: &'f Findings,
    role: Role,
}

impl<'f, D> Checked<'f, D> {
    /// The inner deserializer, and `visitor` watched.
    fn split<V>(self, visitor: V) -> (D, Watched<'f, V>) {
        let watched = Watched {
            visitor,
            findings: self.findings,
            role: self.role,
        };
        (self.de, watched)
    }
}

/// Every `deserialize_*` method but `deserialize_ignored_any`, handed to the inner
/// deserializer with the visitor wrapped (`self.split`).
macro_rules! forward_deserialize {
    () => {
        forward_deserialize! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
            deserialize_identifier();
        }
    };
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let (de, visitor) = self.split(visitor);
            de.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Checked<'_, D> {
    type Error = D::Error;

    forward_deserialize!();

    /// The type has no use for this value: the long way reports it, if it is a field.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.findings.passed_over.set(true);
        self.de.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The type's visitor, handed checked maps, sequences and nested deserializers.
struct Watched<'f, V> {
    visitor: V,
    findings: &'f Findings,
    role: Role,
}

impl<'f, V> Watched<'f, V> {
    fn keep_type_string(&self, text: &str) {
        let slot = match self.role {
            Role::TypeString(TypeKey::ApiVersion) => &self.findings.api_version,
            Role::TypeString(TypeKey::Kind) => &self.findings.kind,
            _ => return,
        };
        *slot.borrow_mut() = Some(text.to_string());
    }

    fn nested<D>(&self, de: D) -> Checked<'f, D> {
        Checked {
            de,
            findings: self.findings,
            role: self.role,
        }
    }
}

/// The `visit_*` methods of scalars, handed to the wrapped visitor as they are.
macro_rules! forward_visit {
    () => {
        forward_visit! {
            visit_bool(bool);
            visit_i8(i8);
            visit_i16(i16);
            visit_i32(i32);
            visit_i64(i64);
            visit_i128(i128);
            visit_u8(u8);
            visit_u16(u16);
            visit_u32(u32);
            visit_u64(u64);
            visit_u128(u128);
            visit_f32(f32);
            visit_f64(f64);
            visit_char(char);
            visit_bytes(&[u8]);
            visit_borrowed_bytes(&'de [u8]);
            visit_byte_buf(Vec<u8>);
        }
    };
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Watched<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit!();

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.keep_type_string(v);
        self.visitor.visit_str(v)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.keep_type_string(v);
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<V::Value, E> {
        self.keep_type_string(&v);
        self.visitor.visit_string(v)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let nested = self.nested(de);
        self.visitor.visit_some(nested)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let nested = self.nested(de);
        self.visitor.visit_newtype_struct(nested)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(CheckedSeq {
            seq,
            findings: self.findings,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        if self.role == Role::Top {
            self.findings.object.set(true);
        }
        self.visitor.visit_map(CheckedMap {
            map,
            findings: self.findings,
            top: self.role == Role::Top,
            seen: SeenHashes::default(),
            next_role: Role::Inner,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(CheckedEnum {
            data,
            findings: self.findings,
        })
    }
}

/// A value's seed, checked.
struct CheckedSeed<'f, S> {
    seed: S,
    findings: &'f Findings,
    role: Role,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for CheckedSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Checked {
            de,
            findings: self.findings,
            role: self.role,
        })
    }
}

struct CheckedSeq<'f, A> {
    seq: A,
    findings: &'f Findings,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for CheckedSeq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(CheckedSeed {
            seed,
            findings: self.findings,
            role: Role::Inner,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// An object's entries: each key hashed against the object's others, each value checked.
struct CheckedMap<'f, A> {
    map: A,
    findings: &'f Findings,
    top: bool,
    seen: SeenHashes,
    /// The role of the value that follows the key just read.
    next_role: Role,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for CheckedMap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let mut key = None;
        let value = self.map.next_key_seed(KeySeed {
            seed,
            key: &mut key,
        })?;
        if value.is_none() {
            return Ok(None);
        }
        let Some(KeyHash { hash, type_key }) = key else {
            return Err(A::Error::custom(UNHASHED_KEY));
        };
        if !self.seen.insert(hash) {
            return Err(A::Error::custom(REPEATED_KEY));
        }
        self.next_role = match type_key {
            Some(type_key) if self.top => Role::TypeString(type_key),
            _ => Role::Inner,
        };
        Ok(value)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(CheckedSeed {
            seed,
            findings: self.findings,
            role: std::mem::replace(&mut self.next_role, Role::Inner),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

struct CheckedEnum<'f, A> {
    data: A,
    findings: &'f Findings,
}

impl<'de, 'f, A: EnumAccess<'de>> EnumAccess<'de> for CheckedEnum<'f, A> {
    type Error = A::Error;
    type Variant = CheckedVariant<'f, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.data.variant_seed(seed)?;
        let variant = CheckedVariant {
            variant,
            findings: self.findings,
        };
        Ok((value, variant))
    }
}

struct CheckedVariant<'f, A> {
    variant: A,
    findings: &'f Findings,
}

impl<'f, A> CheckedVariant<'f, A> {
    fn wrap<V>(&self, visitor: V) -> Watched<'f, V> {
        Watched {
            visitor,
            findings: self.findings,
            role: Role::Inner,
        }
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for CheckedVariant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.variant.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.variant.newtype_variant_seed(CheckedSeed {
            seed,
            findings: self.findings,
            role: Role::Inner,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let watched = self.wrap(visitor);
        self.variant.tuple_variant(len, watched)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let watched = self.wrap(visitor);
        self.variant.struct_variant(fields, watched)
    }
}

/// A key by its hash (FNV-1a of its unescaped text), and whether it names a type string.
struct KeyHash {
    hash: u64,
    type_key: Option<TypeKey>,
}

impl KeyHash {
    fn of(text: &str) -> KeyHash {
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let type_key = match text {
            "apiVersion" => Some(TypeKey::ApiVersion),
            "kind" => Some(TypeKey::Kind),
            _ => None,
        };
        KeyHash { hash, type_key }
    }
}

/// The type's key seed, with the key's text hashed on its way through.
struct KeySeed<'k, S> {
    seed: S,
    key: &'k mut Option<KeyHash>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(KeyDeserializer { de, key: self.key })
    }
}

/// A key's deserializer: whatever the type asks of it, the text is hashed. Keys are strings
/// in JSON; one read as anything else (a number-keyed map) is left unhashed, and the pass
/// declines.
struct KeyDeserializer<'k, D> {
    de: D,
    key: &'k mut Option<KeyHash>,
}

impl<'k, D> KeyDeserializer<'k, D> {
    /// The inner deserializer, and `visitor` noting the key.
    fn split<V>(self, visitor: V) -> (D, KeyVisitor<'k, V>) {
        (
            self.de,
            KeyVisitor {
                visitor,
                key: self.key,
            },
        )
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDeserializer<'_, D> {
    type Error = D::Error;

    forward_deserialize!();

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let (de, visitor) = self.split(visitor);
        de.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The key seed's visitor: notes the key's text, then hands it on.
struct KeyVisitor<'k, V> {
    visitor: V,
    key: &'k mut Option<KeyHash>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<V::Value, E> {
        *self.key = Some(KeyHash::of(v));
        self.visitor.visit_str(v)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        *self.key = Some(KeyHash::of(v));
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<V::Value, E> {
        *self.key = Some(KeyHash::of(&v));
        self.visitor.visit_string(v)
    }

    // Keys arrive as strings from serde_json; anything else is handed on unhashed.
    forward_visit!();

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(de)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(data)
    }
}

/// The key hashes of one object seen so far: a few kept inline (most objects are small, and
/// a body has thousands of them), then a set once the object is large.
enum SeenHashes {
    Few {
        hashes: [u64; SeenHashes::FEW],
        len: usize,
    },
    Many(HashSet<u64>),
}

impl Default for SeenHashes {
    fn default() -> Self {
        SeenHashes::Few {
            hashes: [0; Self::FEW],
            len: 0,
        }
    }
}

impl SeenHashes {
    const FEW: usize = 16;

    /// Adds `hash`; false when it was there already.
    fn insert(&mut self, hash: u64) -> bool {
        match self {
            SeenHashes::Few { hashes, len } => {
                if hashes[..*len].contains(&hash) {
                    return false;
                }
                if *len < Self::FEW {
                    hashes[*len] = hash;
                    *len += 1;
                    return true;
                }
                let mut set: HashSet<u64> = hashes.iter().copied().collect();
                set.insert(hash);
                *self = SeenHashes::Many(set);
                true
            }
            SeenHashes::Many(set) => set.insert(hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::Value;

    use super::*;

    fn pass<T: serde::de::DeserializeOwned>(body: &str) -> (Option<T>, Findings) {
        let findings = Findings::default();
        let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
        let decoded = decode(&mut de, &findings).and_then(|obj| de.end().map(|()| obj));
        (decoded.ok(), findings)
    }

    /// An object of `n` distinct keys, `repeat` of them given again at the end.
    fn object_with_keys(n: usize, repeat: &[usize]) -> String {
        let keys = (0..n).chain(repeat.iter().copied());
        let fields: Vec<String> = keys.map(|k| format!("\"k{k}\":{{}}")).collect();
        format!("{{{}}}", fields.join(","))
    }

    #[test]
    fn repeated_keys_fail_the_pass_in_small_and_large_objects_at_any_depth() {
        for n in [1, 2, 15, 16, 17, 40] {
            let distinct = object_with_keys(n, &[]);
            assert!(pass::<Value>(&distinct).0.is_some(), "{n} distinct keys");
            let nested = format!(r#"{{"a":[{distinct}],"b":{distinct}}}"#);
            assert!(pass::<Value>(&nested).0.is_some(), "{n} nested");
            // The first key and the last one again: seen inline, or after the set took over.
            for repeat in [0, n - 1] {
                let repeated = object_with_keys(n, &[repeat]);
                assert!(
                    pass::<Value>(&repeated).0.is_none(),
                    "{n} keys, k{repeat} twice"
                );
                let nested = format!(r#"{{"a":{{"b":[{repeated}]}}}}"#);
                assert!(pass::<Value>(&nested).0.is_none(), "{n} nested");
            }
        }
        // The same key spelled with an escape is the same key.
        assert!(pass::<Value>(r#"{"a":1,"\u0061":2}"#).0.is_none());
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        #[serde(default)]
        spec: Option<Spec>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Spec {
        #[serde(default)]
        labels: BTreeMap<String, String>,
        #[serde(default)]
        shape: Option<Shape>,
        #[serde(default)]
        raw: Option<Value>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    enum Shape {
        Round { radius: u32 },
        Named(String),
    }

    #[test]
    fn the_type_strings_are_kept_from_the_top_level_only() {
        let body = r#"{"kind":"ImageStream","spec":{"raw":{"kind":"Other","apiVersion":"x/v9"}},"apiVersion":"image.openshift.io/v1"}"#;
        let (obj, findings) = pass::<Typed>(body);
        assert!(obj.is_some());
        assert_eq!(findings.kind.borrow().as_deref(), Some("ImageStream"));
        assert_eq!(
            findings.api_version.borrow().as_deref(),
            Some("image.openshift.io/v1")
        );
        assert!(!findings.passed_over.get());
        assert!(findings.object.get());
        let (obj, findings) = pass::<Typed>("[]");
        assert!(obj.is_some(), "serde makes a struct of an array");
        assert!(!findings.object.get());
        // Type strings nested anywhere else are not the document's.
        let (_, findings) = pass::<Value>(r#"{"spec":{"kind":"Other"}}"#);
        assert_eq!(*findings.kind.borrow(), None);
    }

    #[test]
    fn the_pass_notices_what_the_type_passes_over_at_any_depth() {
        for body in [
            r#"{"bogus":1}"#,
            r#"{"spec":{"bogus":[1,{"a":2}]}}"#,
            r#"{"spec":{"shape":{"Round":{"radius":1,"bogus":true}}}}"#,
        ] {
            let (obj, findings) = pass::<Typed>(body);
            assert!(obj.is_some(), "{body}");
            assert!(findings.passed_over.get(), "{body}");
        }
        for body in [
            r#"{"spec":{"labels":{"bogus":"a label, not a field"}}}"#,
            r#"{"spec":{"shape":{"Round":{"radius":1}},"raw":{"anything":[{"goes":null}]}}}"#,
            r#"{"spec":{"shape":{"Named":"x"}}}"#,
        ] {
            let (obj, findings) = pass::<Typed>(body);
            assert!(obj.is_some(), "{body}");
            assert!(!findings.passed_over.get(), "{body}");
        }
    }

    #[test]
    fn the_object_is_what_serde_json_decodes() {
        let body = r#"{"apiVersion":"v1","kind":"K","spec":{"labels":{"a":"1","b\n":"2"},"shape":{"Round":{"radius":7}},"raw":{"x":[1,2.5,"s",null,true,{"y":{}}]}}}"#;
        let plain: Typed = serde_json::from_str(body).expect("decodes");
        assert_eq!(pass::<Typed>(body).0, Some(plain));
    }

    #[test]
    fn keys_that_are_not_strings_fail_the_pass() {
        let (obj, _) = pass::<BTreeMap<u32, String>>(r#"{"1":"a"}"#);
        assert!(obj.is_none());
        let plain: BTreeMap<u32, String> = serde_json::from_str(r#"{"1":"a"}"#).expect("decodes");
        assert_eq!(plain.len(), 1);
    }
}
