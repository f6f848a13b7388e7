//! PATCH bodies (spec §6.3): RFC 6902 JSON patch and RFC 7386 merge patch through the
//! `json-patch` crate, and Kubernetes strategic merge patch for types whose merge lists are
//! known (no Rust crate implements SMP; upstream derives it from Go struct tags, we from the
//! strategy's merge keys).

use apimachinery::errors::ApiError;
use serde_json::{Map, Value};

pub const JSON_PATCH: &str = "application/json-patch+json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

pub const UNSUPPORTED_PATCH: &str = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

/// The most operations a JSON patch may have.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, ApiError> {
        match ct.unwrap_or("") {
            JSON_PATCH => Ok(PatchType::Json),
            MERGE_PATCH => Ok(PatchType::Merge),
            STRATEGIC_MERGE_PATCH => Ok(PatchType::Strategic),
            APPLY_PATCH => Ok(PatchType::Apply),
            _ => Err(ApiError::UnsupportedMediaType(
                UNSUPPORTED_PATCH.to_string(),
            )),
        }
    }
}

/// How lists merge in a strategic merge patch: (JSON path of the list, merge key). Paths use
/// `[]` for list elements, e.g. `spec.tags`.
pub type MergeKeys<'a> = &'a [(&'a str, &'a str)];

/// Primitive lists that merge as sets (`patchStrategy:"merge"` without a key).
const MERGING_PRIMITIVE_LISTS: &[&str] = &["metadata.finalizers"];

/// Applies a JSON patch. Failures of a well-formed patch are 422s (kube's message).
pub fn apply_json_patch(doc: &mut Value, patch: &[u8]) -> Result<(), ApiError> {
    let ops: Value =
        serde_json::from_slice(patch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let count = ops.as_array().map(Vec::len).unwrap_or(0);
    if count > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::RequestEntityTooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}"
        )));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    json_patch::patch(doc, &patch).map_err(|e| PatchFailed(e.to_string()).into())
}

/// A patch that applied cleanly to nothing sensible: kube's generic 422.
#[derive(Debug)]
pub struct PatchFailed(pub String);

impl From<PatchFailed> for ApiError {
    fn from(e: PatchFailed) -> Self {
        ApiError::Unprocessable(e.0)
    }
}

pub fn apply_merge_patch(doc: &mut Value, patch: &[u8]) -> Result<(), ApiError> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "merge patch must be a JSON object".to_string(),
        ));
    }
    json_patch::merge(doc, &patch);
    Ok(())
}

pub fn apply_strategic_merge_patch(
    doc: &mut Value,
    patch: &[u8],
    keys: MergeKeys<'_>,
) -> Result<(), ApiError> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::BadRequest(
            "strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = std::mem::take(doc);
    *doc = merge_map(original, patch, "", keys)?;
    Ok(())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn merge_map(
    original: Value,
    mut patch: Map<String, Value>,
    path: &str,
    keys: MergeKeys<'_>,
) -> Result<Value, ApiError> {
    match patch.remove("$patch").as_ref().and_then(Value::as_str) {
        Some("replace") => return Ok(Value::Object(strip_directives(patch))),
        Some("delete") => return Ok(Value::Null),
        Some("merge") | None => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Unknown patch type: {other} in map: {}",
                Value::Object(patch)
            )))
        }
    }
    let mut out = match original {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(retain) = patch.remove("$retainKeys") {
        let retain: Vec<String> = retain
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.retain(|k, _| retain.contains(k));
    }
    let mut orders: Vec<(String, Value)> = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (out.get_mut(field), v) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        let child_path = join(path, &k);
        if v.is_null() {
            out.remove(&k);
            continue;
        }
        let current = out.remove(&k).unwrap_or(Value::Null);
        let merged = match v {
            Value::Object(pm) => merge_map(current, pm, &child_path, keys)?,
            Value::Array(items) => merge_list(current, items, &child_path, keys)?,
            other => other,
        };
        if !merged.is_null() {
            out.insert(k, merged);
        }
    }
    for (field, order) in orders {
        let key = keys
            .iter()
            .find(|(p, _)| *p == join(path, &field))
            .map(|(_, k)| *k);
        if let (Some(Value::Array(list)), Value::Array(order)) = (out.get_mut(&field), order) {
            reorder(list, &order, key);
        }
    }
    Ok(Value::Object(out))
}

fn strip_directives(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(k, _)| !k.starts_with('$')).collect()
}

fn merge_list(
    original: Value,
    patch: Vec<Value>,
    path: &str,
    keys: MergeKeys<'_>,
) -> Result<Value, ApiError> {
    if MERGING_PRIMITIVE_LISTS.contains(&path) {
        let mut out = match original {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        for v in patch {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        return Ok(Value::Array(out));
    }
    let Some(key) = keys.iter().find(|(p, _)| *p == path).map(|(_, k)| *k) else {
        return Ok(Value::Array(patch));
    };
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let kept = patch
            .into_iter()
            .filter(|item| item.get("$patch").is_none())
            .collect();
        return Ok(Value::Array(kept));
    }
    let mut out = match original {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    let item_path = format!("{path}[]");
    for item in patch {
        let Value::Object(pm) = item else {
            return Err(ApiError::BadRequest(format!(
                "strategic merge patch: elements of {path} must be objects"
            )));
        };
        let Some(id) = pm.get(key).cloned() else {
            return Err(ApiError::BadRequest(format!(
                "map: {} does not contain declared merge key: {key}",
                Value::Object(pm)
            )));
        };
        let pos = out.iter().position(|o| o.get(key) == Some(&id));
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => {
                let current = std::mem::take(&mut out[i]);
                out[i] = merge_map(current, pm, &item_path, keys)?;
            }
            None => out.push(merge_map(Value::Null, pm, &item_path, keys)?),
        }
    }
    Ok(Value::Array(out))
}

/// `$setElementOrder`: items named in `order` come first in that order; the rest keep theirs.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned(),
        None => Some(v.clone()),
    };
    let wanted: Vec<Value> = order.iter().filter_map(&id).collect();
    let mut ordered: Vec<Value> = Vec::with_capacity(list.len());
    for w in &wanted {
        if let Some(i) = list.iter().position(|v| id(v).as_ref() == Some(w)) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEYS: MergeKeys<'static> = &[("spec.tags", "name"), ("status.tags", "tag")];

    fn smp(doc: Value, patch: Value) -> Value {
        let mut doc = doc;
        apply_strategic_merge_patch(&mut doc, patch.to_string().as_bytes(), KEYS).expect("smp");
        doc
    }

    #[test]
    fn merges_keyed_lists() {
        let doc = json!({"spec":{"tags":[{"name":"a","from":{"name":"x"}},{"name":"b"}]}});
        let got = smp(
            doc.clone(),
            json!({"spec":{"tags":[{"name":"a","reference":true},{"name":"c"}]}}),
        );
        assert_eq!(
            got,
            json!({"spec":{"tags":[{"name":"a","from":{"name":"x"},"reference":true},{"name":"b"},{"name":"c"}]}})
        );
        let got = smp(
            doc.clone(),
            json!({"spec":{"tags":[{"name":"b","$patch":"delete"}]}}),
        );
        assert_eq!(
            got,
            json!({"spec":{"tags":[{"name":"a","from":{"name":"x"}}]}})
        );
        let got = smp(
            doc.clone(),
            json!({"spec":{"tags":[{"name":"z"},{"$patch":"replace"}]}}),
        );
        assert_eq!(got, json!({"spec":{"tags":[{"name":"z"}]}}));
        let got = smp(
            doc,
            json!({"spec":{"$setElementOrder/tags":[{"name":"b"},{"name":"a"}]}}),
        );
        assert_eq!(got["spec"]["tags"][0]["name"], "b");
    }

    #[test]
    fn maps_nulls_and_unkeyed_lists() {
        let doc = json!({"metadata":{"labels":{"a":"1","b":"2"},"finalizers":["x"]},"other":[1,2]});
        let got = smp(
            doc,
            json!({"metadata":{"labels":{"a":null,"c":"3"},"finalizers":["y"]},"other":[3]}),
        );
        assert_eq!(
            got,
            json!({"metadata":{"labels":{"b":"2","c":"3"},"finalizers":["x","y"]},"other":[3]})
        );
        let got = smp(
            json!({"a":{"b":1,"c":2}}),
            json!({"a":{"$patch":"replace","d":3}}),
        );
        assert_eq!(got, json!({"a":{"d":3}}));
        let got = smp(
            json!({"metadata":{"finalizers":["x","y"]}}),
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["x"]}}),
        );
        assert_eq!(got, json!({"metadata":{"finalizers":["y"]}}));
    }

    #[test]
    fn json_and_merge_patches() {
        let mut doc = json!({"a":1,"b":[1,2]});
        apply_json_patch(
            &mut doc,
            br#"[{"op":"replace","path":"/a","value":2},{"op":"add","path":"/b/-","value":3}]"#,
        )
        .expect("ok");
        assert_eq!(doc, json!({"a":2,"b":[1,2,3]}));
        let err = apply_json_patch(&mut doc, br#"[{"op":"test","path":"/a","value":9}]"#)
            .expect_err("test");
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(
            apply_json_patch(&mut doc, b"{").expect_err("bad").code(),
            400
        );
        apply_merge_patch(&mut doc, br#"{"a":null,"c":{"d":1}}"#).expect("merge");
        assert_eq!(doc, json!({"b":[1,2,3],"c":{"d":1}}));
        assert_eq!(
            PatchType::from_content_type(Some("application/json"))
                .expect_err("415")
                .code(),
            415
        );
    }
}
