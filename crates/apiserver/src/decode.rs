//! Request bodies (spec §6.1, §6.7, §7): JSON or YAML into a typed object, with the apiVersion
//! and kind checks and unknown-field detection for `fieldValidation`.

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::options::FieldValidation;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resource::Warnings;

pub const UNSUPPORTED_BODY: &str = "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml";

/// The media types a body may have (POST, PUT, DeleteOptions).
pub fn body_value(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    match content_type.unwrap_or("") {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/yaml" => yaml_value(body),
        _ => Err(ApiError::UnsupportedMediaType(UNSUPPORTED_BODY.to_string())),
    }
}

/// Parses YAML (JSON is YAML too) into a JSON value.
pub fn yaml_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_norway::from_slice::<Value>(body)
        .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))
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
    let expected = info.group_version();
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str) {
        if !v.is_empty() && v != expected {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
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
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
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
    let mut unknown = Vec::new();
    let obj: T = serde_ignored::deserialize(value, |path| unknown.push(field_path(&path)))
        .map_err(|e| DecodeError::Malformed(cannot_handle(info, e)))?;
    if unknown.is_empty() && duplicates.is_empty() {
        return Ok(obj);
    }
    let list: Vec<String> = duplicates
        .iter()
        .map(|f| format!("duplicate field {f:?}"))
        .chain(unknown.iter().map(|f| format!("unknown field {f:?}")))
        .collect();
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

/// The dotted paths of keys that appear twice in one JSON object of `body` (Go's strict
/// decoder reports them; serde keeps the last silently).
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Duplicates {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

struct Duplicates<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Duplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.out.push(child.clone());
            }
            map.next_value_seed(Duplicates {
                path: child,
                out: self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Duplicates {
                path: format!("{}[{i}]", self.path),
                out: self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
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
}
