//! Request bodies (spec §6.1, §6.7, §7): JSON or YAML into a typed object, with the apiVersion
//! and kind checks and unknown-field detection for `fieldValidation`. Every decoder here is
//! bounded (see [`crate::limits`]): nesting depth, YAML scanning work, alias expansion, and the
//! number and length of the field paths reported.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::options::FieldValidation;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::limits::{self, LimitExceeded, JSON_MAX_DEPTH, MAX_REPORTED_FIELDS, YAML_MAX_DEPTH};
use crate::resource::Warnings;

mod single_pass;

pub const UNSUPPORTED_BODY: &str = "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml";

/// The media types a body may have (POST, PUT, DeleteOptions).
pub fn body_value(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    match content_type.unwrap_or("") {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            limits::json_decode_error(&e, |e| {
                format!("couldn't get version/kind; json parse error: {e}")
            })
        }),
        "application/yaml" => yaml_value(body),
        _ => Err(ApiError::UnsupportedMediaType(UNSUPPORTED_BODY.to_string())),
    }
}

/// Parses YAML (JSON is YAML too) into a JSON value, at a cost bounded by the body's size:
/// JSON takes serde_json's linear parser, as kube's YAMLOrJSONDecoder does (kubectl's apply
/// patches are JSON); other YAML is scanned for nesting first (libyaml is quadratic in it) and
/// decoded with its aliases counted as they expand.
pub fn yaml_value(body: &[u8]) -> Result<Value, ApiError> {
    if let Some(value) = json_shaped_value(body)? {
        return Ok(value);
    }
    limits::check_yaml_nesting(body)?;
    let budget = limits::yaml_expansion_budget(body.len());
    let meter = ExpansionMeter::new(budget);
    let decoded =
        MeteredValue { meter: &meter }.deserialize(serde_norway::Deserializer::from_slice(body));
    decoded.map_err(|e| {
        if meter.exceeded.get() {
            return ApiError::from(LimitExceeded::YamlExpansion(budget));
        }
        if e.to_string().starts_with("recursion limit exceeded") {
            return ApiError::from(LimitExceeded::Depth(YAML_MAX_DEPTH));
        }
        ApiError::BadRequest(format!("error converting YAML to JSON: {e}"))
    })
}

/// A body that looks like JSON and is JSON, decoded as JSON; `None` for anything else (YAML
/// flow style starts with the same brackets). Too deep is refused here: YAML allows no more.
fn json_shaped_value(body: &[u8]) -> Result<Option<Value>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return Ok(None);
    }
    match serde_json::from_slice(body) {
        Ok(value) => Ok(Some(value)),
        Err(e) if limits::is_json_recursion_limit(&e) => {
            Err(LimitExceeded::Depth(JSON_MAX_DEPTH).into())
        }
        Err(_) => Ok(None),
    }
}

/// What a YAML document may still expand to: serde_norway replays an anchor's events for every
/// alias, so a few kilobytes of aliases to aliases would otherwise build gigabytes.
struct ExpansionMeter {
    remaining: Cell<usize>,
    exceeded: Cell<bool>,
}

impl ExpansionMeter {
    fn new(budget: usize) -> Self {
        ExpansionMeter {
            remaining: Cell::new(budget),
            exceeded: Cell::new(false),
        }
    }

    /// Spends `units` (one per node, plus a scalar's bytes), failing the decoding once the
    /// budget is gone.
    fn charge<E: serde::de::Error>(&self, units: usize) -> Result<(), E> {
        match self.remaining.get().checked_sub(units) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("the YAML alias expansion limit was reached"))
            }
        }
    }
}

/// serde_json's `Value` visitor, metered: the same value, built only while the budget lasts.
#[derive(Clone, Copy)]
struct MeteredValue<'m> {
    meter: &'m ExpansionMeter,
}

impl<'de> DeserializeSeed<'de> for MeteredValue<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MeteredValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Number::from_i128(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("JSON number out of range"))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Number::from_u128(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("JSON number out of range"))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.meter.charge::<E>(v.len().saturating_add(1))?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.meter.charge::<E>(v.len().saturating_add(1))?;
        Ok(Value::String(v))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Value::Null)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.meter.charge::<E>(1)?;
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.meter.charge::<A::Error>(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.meter.charge::<A::Error>(1)?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.meter.charge::<A::Error>(key.len().saturating_add(1))?;
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

fn cannot_handle(info: &ResourceInfo, detail: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
        kind = info.kind,
        version = info.version
    ))
}

/// Checks `apiVersion` and `kind` of a request object against the endpoint; missing ones are
/// defaulted from it.
pub fn check_type_meta(value: &Value, info: &ResourceInfo) -> Result<(), ApiError> {
    let Some(obj) = value.as_object() else {
        return Err(cannot_handle(info, "expected a JSON object"));
    };
    check_type_strings(
        obj.get("apiVersion").and_then(Value::as_str),
        obj.get("kind").and_then(Value::as_str),
        info,
    )
}

/// [`check_type_meta`] of the string values an object's `apiVersion` and `kind` hold.
fn check_type_strings(
    api_version: Option<&str>,
    kind: Option<&str>,
    info: &ResourceInfo,
) -> Result<(), ApiError> {
    let expected = info.group_version();
    if let Some(v) = api_version {
        if !v.is_empty() && v != expected {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    if let Some(k) = kind {
        if !k.is_empty() && k != info.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

/// Formats a serde_ignored path the way kube prints unknown fields (`spec.tags[0].foo`).
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let mut steps = Vec::new();
    let mut at = path;
    loop {
        match *at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                steps.push(FieldStep::Index(index));
                at = parent;
            }
            Path::Map { parent, ref key } => {
                steps.push(FieldStep::Key(key));
                at = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => at = parent,
        }
    }
    let mut out = PathWriter::default();
    for step in steps.iter().rev() {
        out.step(step);
    }
    out.finish()
}

enum FieldStep<'a> {
    Key(&'a str),
    Index(usize),
}

/// Writes a field path, cut at [`crate::limits::MAX_FIELD_PATH_BYTES`]: a hostile key is printed once, not
/// in full in the path of every field below it.
#[derive(Default)]
struct PathWriter {
    out: crate::limits::CutText,
}

impl PathWriter {
    fn step(&mut self, step: &FieldStep<'_>) {
        match step {
            FieldStep::Key(key) => {
                if !self.out.is_empty() {
                    self.write(".");
                }
                self.write(key);
            }
            FieldStep::Index(index) => self.write(&format!("[{index}]")),
        }
    }

    fn write(&mut self, text: &str) {
        self.out.push(text);
    }

    fn finish(self) -> String {
        self.out.into_string()
    }
}

/// Field paths worth reporting, the first [`MAX_REPORTED_FIELDS`] by name and the rest by
/// count: a body of a million unknown fields gets a short answer.
#[derive(Default)]
struct FieldReports {
    listed: Vec<String>,
    unlisted: usize,
}

impl FieldReports {
    fn record(&mut self, render: impl FnOnce() -> String) {
        if self.listed.len() < MAX_REPORTED_FIELDS {
            self.listed.push(render());
        } else {
            self.unlisted += 1;
        }
    }
}

/// Decodes a typed object from a JSON value, applying `fieldValidation` to unknown fields.
/// `strict_error` chooses how a Strict failure is reported (POST/PUT: 400; patch: 422).
pub fn typed<T: DeserializeOwned>(
    value: Value,
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &Warnings,
) -> Result<T, DecodeError> {
    typed_checked(value, &[], info, validation, warnings)
}

/// [`typed`], also reporting `duplicates` (found in the raw body by [`duplicate_fields`]).
pub fn typed_checked<T: DeserializeOwned>(
    value: Value,
    duplicates: &[String],
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &Warnings,
) -> Result<T, DecodeError> {
    typed_from(value, duplicates, info, validation, warnings)
}

/// [`typed`] from a value the caller keeps (a patched document, quoted when it does not
/// decode). Cheaper than decoding a clone: only the strings are copied.
pub fn typed_borrowed<T: DeserializeOwned>(
    value: &Value,
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &Warnings,
) -> Result<T, DecodeError> {
    typed_from(value, &[], info, validation, warnings)
}

fn typed_from<'de, D, T>(
    de: D,
    duplicates: &[String],
    info: &ResourceInfo,
    validation: FieldValidation,
    warnings: &Warnings,
) -> Result<T, DecodeError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: DeserializeOwned,
{
    let mut unknown = FieldReports::default();
    let obj: T = serde_ignored::deserialize(de, |path| {
        unknown.record(|| field_path(&path));
    })
    .map_err(|e| DecodeError::Malformed(cannot_handle(info, e)))?;
    validate_fields(obj, duplicates, unknown, validation, warnings)
}

/// The common case of [`body_value`], [`check_type_meta`] and [`typed_checked`] for a JSON
/// body, in one pass over its bytes instead of through a [`Value`]: the typed decoding straight
/// from the bytes, watched for repeated keys, passed-over fields and the type strings
/// ([`single_pass`]). A large object is decoded several times faster this way. `None` sends
/// the body the long way: a body with repeated keys or unknown fields (the long way words
/// them), or one the decoding refuses, which then fails there with its usual message.
pub fn typed_json<T: DeserializeOwned>(
    body: &[u8],
    info: &ResourceInfo,
) -> Result<Option<T>, DecodeError> {
    // Checked as a whole, the body's UTF-8 costs one quick pass; read from bytes, serde_json
    // checks it string by string, which cost a tenth of decoding a stream of a hundred tags.
    // A body that is not UTF-8 goes the long way, which says why.
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(None);
    };
    let findings = single_pass::Findings::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let decoded: Result<T, _> = single_pass::decode(&mut de, &findings);
    let Ok(obj) = decoded.and_then(|obj| de.end().map(|()| obj)) else {
        return Ok(None);
    };
    if findings.passed_over.get() || !findings.object.get() {
        return Ok(None);
    }
    check_type_strings(
        findings.api_version.borrow().as_deref(),
        findings.kind.borrow().as_deref(),
        info,
    )
    .map_err(DecodeError::Malformed)?;
    Ok(Some(obj))
}

/// `fieldValidation` applied to what decoding found: nothing, warnings, or the strict error.
fn validate_fields<T>(
    obj: T,
    duplicates: &[String],
    unknown: FieldReports,
    validation: FieldValidation,
    warnings: &Warnings,
) -> Result<T, DecodeError> {
    let list = field_problems(duplicates, unknown);
    if list.is_empty() {
        return Ok(obj);
    }
    match validation {
        FieldValidation::Ignore => Ok(obj),
        FieldValidation::Warn => {
            for w in list {
                warnings.add(w);
            }
            Ok(obj)
        }
        FieldValidation::Strict => Err(DecodeError::Strict(format!(
            "strict decoding error: {}",
            list.join(", ")
        ))),
    }
}

/// kube's strict-decoding complaints, duplicates first, at most [`MAX_REPORTED_FIELDS`] of
/// them and then how many more there are.
fn field_problems(duplicates: &[String], unknown: FieldReports) -> Vec<String> {
    let mut list: Vec<String> = duplicates
        .iter()
        .map(|f| format!("duplicate field {f:?}"))
        .chain(
            unknown
                .listed
                .iter()
                .map(|f| format!("unknown field {f:?}")),
        )
        .collect();
    let unlisted = unknown.unlisted + list.len().saturating_sub(MAX_REPORTED_FIELDS);
    list.truncate(MAX_REPORTED_FIELDS);
    if unlisted > 0 {
        list.push(format!("{unlisted} more unknown or duplicate fields"));
    }
    list
}

/// The dotted paths of keys that appear twice in one JSON object of `body` (Go's strict
/// decoder reports them; serde keeps the last silently), the first [`MAX_REPORTED_FIELDS`].
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let mut found = FieldReports::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Duplicates {
        at: &BodyStep::Root,
        found: &mut found,
    }
    .deserialize(&mut de);
    found.listed
}

/// A key as the body spells it: borrowed unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The keys of one object seen so far: a short list, then a set once the object is large.
enum SeenKeys<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

impl<'de> SeenKeys<'de> {
    const FEW: usize = 16;

    /// Adds `key`; false when it was there already.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        match self {
            SeenKeys::Few(keys) if keys.contains(&key) => false,
            SeenKeys::Few(keys) if keys.len() < Self::FEW => {
                keys.push(key);
                true
            }
            SeenKeys::Few(keys) => {
                let mut set: HashSet<Cow<'de, str>> = keys.drain(..).collect();
                set.insert(key);
                *self = SeenKeys::Many(set);
                true
            }
            SeenKeys::Many(set) => set.insert(key),
        }
    }
}

/// Where the walk through a body is: a chain of steps on the stack, rendered only for the
/// duplicates found, so no key is copied once per field below it.
enum BodyStep<'p> {
    Root,
    Key {
        parent: &'p BodyStep<'p>,
        key: &'p str,
    },
    Index {
        parent: &'p BodyStep<'p>,
        index: usize,
    },
}

fn render_body_path(step: &BodyStep<'_>) -> String {
    let mut steps = Vec::new();
    let mut at = step;
    loop {
        match *at {
            BodyStep::Root => break,
            BodyStep::Key { parent, key } => {
                steps.push(FieldStep::Key(key));
                at = parent;
            }
            BodyStep::Index { parent, index } => {
                steps.push(FieldStep::Index(index));
                at = parent;
            }
        }
    }
    let mut out = PathWriter::default();
    for step in steps.iter().rev() {
        out.step(step);
    }
    out.finish()
}

/// The walk of [`duplicate_fields`].
struct Duplicates<'p, 'f> {
    at: &'p BodyStep<'p>,
    found: &'f mut FieldReports,
}

impl<'de> DeserializeSeed<'de> for Duplicates<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Duplicates<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = SeenKeys::Few(Vec::new());
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let step = BodyStep::Key {
                parent: self.at,
                key: &key,
            };
            if !seen.insert(key.clone()) {
                self.found.record(|| render_body_path(&step));
            }
            map.next_value_seed(Duplicates {
                at: &step,
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let step = BodyStep::Index {
                parent: self.at,
                index,
            };
            let item = Duplicates {
                at: &step,
                found: &mut *self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    apimachinery::pass_over_json_scalars!();
}

#[derive(Debug)]
pub enum DecodeError {
    /// Not decodable at all (400).
    Malformed(ApiError),
    /// Unknown fields under Strict: the detail `strict decoding error: ...`.
    Strict(String),
}

impl DecodeError {
    /// The error of a POST or PUT body.
    pub fn for_body(self, info: &ResourceInfo) -> ApiError {
        match self {
            DecodeError::Malformed(e) => e,
            DecodeError::Strict(detail) => cannot_handle(info, detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Thing {
        #[serde(default)]
        spec: Spec,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Spec {
        #[serde(default)]
        tags: Vec<Tag>,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Tag {
        #[serde(default)]
        name: String,
    }

    fn info() -> ResourceInfo {
        ResourceInfo {
            group: "g.io",
            version: "v1",
            resource: "things",
            singular: "thing",
            kind: "Thing",
            namespaced: true,
            verbs: &[],
            short_names: &[],
            categories: &[],
            stored: true,
            subresources: vec![],
        }
    }

    /// A body read as text in one pass: the same object as from bytes, and a body that is not
    /// UTF-8 (inside a string, where serde_json would find it) left to the long way, whose
    /// error names it.
    #[test]
    fn the_fast_path_reads_utf8_bodies_and_leaves_the_others() {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)]
        struct Typed {
            api_version: String,
            kind: String,
            spec: Spec,
        }
        let body = r#"{"apiVersion":"g.io/v1","kind":"Thing","spec":{"tags":[{"name":"é"}]}}"#;
        let thing: Typed = typed_json(body.as_bytes(), &info())
            .expect("decodes")
            .expect("fast");
        assert_eq!(thing.spec.tags[0].name, "é");
        let mut broken = body.as_bytes().to_vec();
        let at = body.find('é').expect("é");
        broken[at] = 0xff;
        assert!(matches!(typed_json::<Typed>(&broken, &info()), Ok(None)));
        let err = body_value(&broken, Some("application/json")).expect_err("not UTF-8");
        assert!(format!("{err:?}").contains("invalid unicode"), "{err:?}");
    }

    #[test]
    fn unknown_fields_by_mode() {
        let v = serde_json::json!({"spec": {"foo": 1, "tags": [{"name": "a", "bar": 2}]}, "x": 1});
        let w = Warnings::default();
        let _: Thing = typed(v.clone(), &info(), FieldValidation::Warn, &w).expect("warn");
        assert_eq!(
            w.take(),
            vec![
                "unknown field \"spec.foo\"".to_string(),
                "unknown field \"spec.tags[0].bar\"".to_string(),
                "unknown field \"x\"".to_string()
            ]
        );
        let err = typed::<Thing>(v.clone(), &info(), FieldValidation::Strict, &w)
            .expect_err("strict")
            .for_body(&info());
        assert_eq!(err.to_string(), "Thing in version \"v1\" cannot be handled as a Thing: strict decoding error: unknown field \"spec.foo\", unknown field \"spec.tags[0].bar\", unknown field \"x\"");
        let _: Thing = typed(v, &info(), FieldValidation::Ignore, &w).expect("ignore");
        assert!(w.take().is_empty());
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"tags":[{"name":"x","name":"y"}]},"spec":{}}"#;
        assert_eq!(
            duplicate_fields(body),
            vec!["metadata.name", "spec.tags[0].name", "spec"]
        );
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":{"b":2}}"#).is_empty());
    }

    #[test]
    fn type_meta_must_match() {
        let err =
            check_type_meta(&serde_json::json!({"apiVersion": "v1"}), &info()).expect_err("v");
        assert_eq!(
            err.to_string(),
            "the API version in the data (v1) does not match the expected API version (g.io/v1)"
        );
        assert!(check_type_meta(
            &serde_json::json!({"apiVersion": "g.io/v1", "kind": "Thing"}),
            &info()
        )
        .is_ok());
        assert!(check_type_meta(&serde_json::json!({}), &info()).is_ok());
    }

    #[test]
    fn yaml_and_unsupported_bodies() {
        let v = body_value(b"a: 1\nb: [x]\n", Some("application/yaml")).expect("yaml");
        assert_eq!(v, serde_json::json!({"a": 1, "b": ["x"]}));
        let err = body_value(b"{}", Some("text/plain")).expect_err("415");
        assert_eq!(err.code(), 415);
    }

    fn nested(open: &str, middle: &str, close: &str, depth: usize) -> String {
        format!("{}{middle}{}", open.repeat(depth), close.repeat(depth))
    }

    fn pointer(depth: usize) -> String {
        "/a".repeat(depth)
    }

    #[test]
    fn the_issues_deep_yaml_is_refused_by_name() {
        let body = format!("spec: {}", nested("[", "", "]", 100_000));
        let err = yaml_value(body.as_bytes()).expect_err("100,000 levels");
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "the request body is nested too deeply: more than 128 levels"
        );
        let err = body_value(body.as_bytes(), Some("application/yaml")).expect_err("as a PUT");
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn deep_json_is_refused_by_name() {
        let body = nested("[", "", "]", 100_000);
        for content_type in [None, Some("application/yaml")] {
            let err = body_value(body.as_bytes(), content_type).expect_err("100,000 levels");
            assert_eq!(err.code(), 400);
            assert_eq!(
                err.to_string(),
                "the request body is nested too deeply: more than 127 levels"
            );
        }
    }

    #[test]
    fn deep_block_yaml_is_refused_by_name() {
        let body: String = (0..300).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let err = yaml_value(body.as_bytes()).expect_err("300 levels");
        assert_eq!(
            err.to_string(),
            "the request body is nested too deeply: more than 128 levels"
        );
    }

    #[test]
    fn legitimately_deep_yaml_decodes() {
        let block: String = (0..50)
            .map(|i| format!("{}a:", "  ".repeat(i)))
            .collect::<Vec<_>>()
            .join("\n");
        let value = yaml_value(format!("{block} 1\n").as_bytes()).expect("block style");
        assert_eq!(value.pointer(&pointer(50)), Some(&serde_json::json!(1)));
        let flow = nested("{a: ", "1", "}", 50);
        let value = yaml_value(flow.as_bytes()).expect("flow style");
        assert_eq!(value.pointer(&pointer(50)), Some(&serde_json::json!(1)));
        let json = nested("{\"a\":", "1", "}", 50);
        let value = yaml_value(json.as_bytes()).expect("JSON");
        assert_eq!(value.pointer(&pointer(50)), Some(&serde_json::json!(1)));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let brackets = "[".repeat(1000);
        let value = yaml_value(format!("a: \"{brackets}\"\nb: '{brackets}'\n").as_bytes())
            .expect("quoted brackets are text");
        assert_eq!(value["a"], serde_json::json!(brackets));
        assert_eq!(value["b"], serde_json::json!(brackets));
        let value = yaml_value(format!("# {brackets}\na: 1 # {brackets}\n").as_bytes())
            .expect("commented brackets are text");
        assert_eq!(value, serde_json::json!({"a": 1}));
        let value = yaml_value(format!("a: |\n  {brackets}\nb: x{brackets}\n").as_bytes())
            .expect("block and plain scalars are text");
        assert_eq!(value["a"], serde_json::json!(format!("{brackets}\n")));
        assert_eq!(value["b"], serde_json::json!(format!("x{brackets}")));
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        let anchored = ["1"; 1000].join(",");
        let aliases = ["*a"; 1000].join(",");
        let body = format!("a: &a [{anchored}]\nb: [{aliases}]\n");
        let err = yaml_value(body.as_bytes()).expect_err("a million values from 6 KB");
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "the request body is too large once its YAML aliases are expanded: more than 65536 bytes"
        );
        let small = yaml_value(b"a: &a {x: [1, 2]}\nb: *a\n").expect("ordinary reuse");
        assert_eq!(small["b"], serde_json::json!({"x": [1, 2]}));
    }

    #[test]
    fn yaml_scalars_decode_as_before() {
        let value = yaml_value(
            b"s: x\nn: ~\nt: true\ni: -3\nu: 18446744073709551615\nf: 1.5\nnan: .nan\n1: k\n",
        )
        .expect("scalars");
        assert_eq!(
            value,
            serde_json::json!({
                "s": "x", "n": null, "t": true, "i": -3, "u": 18446744073709551615u64,
                "f": 1.5, "nan": null, "1": "k"
            })
        );
        assert_eq!(yaml_value(b"").expect("empty"), Value::Null);
        assert_eq!(yaml_value(b"{a: 1").expect_err("unclosed").code(), 400);
    }

    #[test]
    fn reported_fields_are_few_and_short() {
        let key = "k".repeat(5000);
        let repeated = [r#""a":1"#; 300].join(",");
        let body = format!(r#"{{"{key}":{{{repeated}}}}}"#);
        let found = duplicate_fields(body.as_bytes());
        assert_eq!(found.len(), MAX_REPORTED_FIELDS);
        assert!(found
            .iter()
            .all(|f| f.len() == crate::limits::MAX_FIELD_PATH_BYTES + 3 && f.ends_with("...")));

        let fields: serde_json::Map<String, Value> = (0..300)
            .map(|i| (format!("x{i}"), Value::from(i)))
            .collect();
        let err = typed::<Thing>(
            Value::Object(fields),
            &info(),
            FieldValidation::Strict,
            &Warnings::default(),
        )
        .expect_err("strict")
        .for_body(&info());
        let message = err.to_string();
        assert!(message.contains("unknown field \"x99\""), "{message}");
        assert!(!message.contains("unknown field \"x100\""), "{message}");
        assert!(
            message.ends_with("200 more unknown or duplicate fields"),
            "{message}"
        );
    }
}
