//! PATCH bodies (spec §6.3): RFC 6902 JSON patch and RFC 7386 merge patch through the
//! `json-patch` crate, and Kubernetes strategic merge patch for types whose merge lists are
//! known (no Rust crate implements SMP; upstream derives it from Go struct tags, we from the
//! strategy's merge keys). Every patch type is bounded (see [`crate::limits`]): JSON patches
//! by operations, copied bytes and shifted array elements, all by the size of what they make,
//! and strategic merges run in time linear in the lists they merge.

use std::collections::{HashMap, HashSet, VecDeque};

use apimachinery::errors::ApiError;
use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;
use serde_json::{Map, Value};

use crate::limits::{self, LimitExceeded};

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

/// Whether a patch of this type and body can neither change nor read anything at or under
/// `metadata.managedFields`, so that the field may be left out of the document it patches and
/// put back after. Errs on the side of no: a body that does not parse, a JSON patch operation
/// on the root, on `metadata` as a whole or on anything under managedFields (a `test` or the
/// `from` of a `copy` read it), a merge patch that sets `metadata` to anything but an object
/// or names managedFields in it, a strategic merge patch with a directive (`$patch`,
/// `$retainKeys`, ...) at the root or in `metadata`, and apply (which owns managedFields).
pub fn leaves_managed_fields_alone(patch_type: PatchType, body: &[u8]) -> bool {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    match patch_type {
        PatchType::Json => json_patch_leaves_managed_fields_alone(&patch),
        PatchType::Merge => merge_patch_leaves_managed_fields_alone(&patch, false),
        PatchType::Strategic => merge_patch_leaves_managed_fields_alone(&patch, true),
        PatchType::Apply => false,
    }
}

fn json_patch_leaves_managed_fields_alone(ops: &Value) -> bool {
    let Some(ops) = ops.as_array() else {
        return false;
    };
    let touches = |pointer: &str| {
        matches!(pointer, "" | "/metadata" | "/metadata/managedFields")
            || pointer.starts_with("/metadata/managedFields/")
    };
    ops.iter().all(|op| {
        let path = op.get("path").and_then(Value::as_str);
        let from = op.get("from").map(Value::as_str);
        match (path, from) {
            (Some(path), None) => !touches(path),
            (Some(path), Some(Some(from))) => !touches(path) && !touches(from),
            _ => false,
        }
    })
}

fn merge_patch_leaves_managed_fields_alone(patch: &Value, strategic: bool) -> bool {
    let directive = |key: &String| strategic && key.starts_with('$');
    let Some(root) = patch.as_object() else {
        return false;
    };
    if root.keys().any(directive) {
        return false;
    }
    match root.get("metadata") {
        None => true,
        Some(Value::Object(meta)) => {
            !meta.contains_key("managedFields") && !meta.keys().any(directive)
        }
        Some(_) => false,
    }
}

/// A patch body that is not JSON: 400, or the nesting limit by name.
fn undecodable(e: &serde_json::Error) -> ApiError {
    limits::json_decode_error(e, |e| e.to_string())
}

/// Applies a JSON patch one operation at a time, charging each before it runs: `copy`
/// operations against kube's copy allowance, insertions and removals in lists by the elements
/// they shift. Failures of a well-formed patch are 422s (kube's message). On failure `doc` is
/// left partly patched; callers drop it.
pub fn apply_json_patch(doc: &mut Value, patch: &[u8]) -> Result<(), ApiError> {
    let ops: Value = serde_json::from_slice(patch).map_err(|e| undecodable(&e))?;
    let count = ops.as_array().map(Vec::len).unwrap_or(0);
    if count > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::RequestEntityTooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {count}"
        )));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(ops).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let mut cost = PatchCost::default();
    for (index, op) in patch.iter().enumerate() {
        cost.charge(doc, op)?;
        json_patch::patch_unsafe(doc, std::slice::from_ref(op))
            .map_err(|e| operation_failed(index, &e))?;
    }
    limits::check_patched_size(doc)?;
    Ok(())
}

/// json-patch's message, numbered within the whole patch.
fn operation_failed(index: usize, e: &json_patch::PatchError) -> ApiError {
    PatchFailed(format!(
        "operation '/{index}' failed at path '{}': {}",
        e.path, e.kind
    ))
    .into()
}

/// What a JSON patch has cost so far.
#[derive(Default)]
struct PatchCost {
    copied: usize,
    shifted: usize,
}

impl PatchCost {
    fn charge(&mut self, doc: &Value, op: &PatchOperation) -> Result<(), LimitExceeded> {
        let shifted = match op {
            PatchOperation::Add(op) => elements_shifted(doc, &op.path),
            PatchOperation::Remove(op) => elements_shifted(doc, &op.path),
            PatchOperation::Move(op) => {
                elements_shifted(doc, &op.from).saturating_add(elements_shifted(doc, &op.path))
            }
            PatchOperation::Copy(op) => {
                self.charge_copy(doc, &op.from)?;
                elements_shifted(doc, &op.path)
            }
            PatchOperation::Replace(_) | PatchOperation::Test(_) => 0,
        };
        self.shifted = self.shifted.saturating_add(shifted);
        if self.shifted > limits::MAX_JSON_PATCH_ARRAY_SHIFTS {
            return Err(LimitExceeded::JsonPatchShifts);
        }
        Ok(())
    }

    /// kube's `AccumulatedCopySizeLimit`: the JSON size of every copied value counts, and the
    /// copy that would pass the allowance is refused before it allocates anything.
    fn charge_copy(&mut self, doc: &Value, from: &Pointer) -> Result<(), LimitExceeded> {
        let Some(source) = doc.pointer(from.as_str()) else {
            return Ok(()); // the operation fails on its own
        };
        self.copied = self.copied.saturating_add(limits::serialized_len(source));
        if self.copied > limits::MAX_JSON_PATCH_COPY_BYTES {
            return Err(LimitExceeded::JsonPatchCopies(self.copied));
        }
        Ok(())
    }
}

/// How many elements an insertion or removal at `path` moves when `path` is in a list
/// (everything after its index); 0 elsewhere.
fn elements_shifted(doc: &Value, path: &Pointer) -> usize {
    let Some((parent, last)) = path.split_back() else {
        return 0;
    };
    let Some(Value::Array(items)) = doc.pointer(parent.as_str()) else {
        return 0;
    };
    let index = match &*last.decoded() {
        "-" => items.len(),
        token => token.parse().unwrap_or(items.len()),
    };
    items.len().saturating_sub(index)
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
    let patch: Value = serde_json::from_slice(patch).map_err(|e| undecodable(&e))?;
    if !patch.is_object() {
        return Err(ApiError::BadRequest(
            "merge patch must be a JSON object".to_string(),
        ));
    }
    json_patch::merge(doc, &patch);
    limits::check_patched_size(doc)?;
    Ok(())
}

pub fn apply_strategic_merge_patch(
    doc: &mut Value,
    patch: &[u8],
    keys: MergeKeys<'_>,
) -> Result<(), ApiError> {
    let patch: Value = serde_json::from_slice(patch).map_err(|e| undecodable(&e))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::BadRequest(
            "strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = std::mem::take(doc);
    *doc = merge_map(original, patch, Some(""), keys)?;
    limits::check_patched_size(doc)?;
    Ok(())
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `path` if a merge list may still lie at or below it. Past that no path is kept (`None`):
/// nothing there merges by key, and a long key is not copied into every path beneath it.
fn tracked(path: String, keys: MergeKeys<'_>) -> Option<String> {
    let below = |known: &str| known.starts_with(path.as_str());
    let relevant = keys.iter().any(|&(known, _)| below(known))
        || MERGING_PRIMITIVE_LISTS.iter().any(|&known| below(known));
    relevant.then_some(path)
}

fn child_path(path: Option<&str>, field: &str, keys: MergeKeys<'_>) -> Option<String> {
    tracked(join(path?, field), keys)
}

fn merge_key_of<'k>(path: &str, keys: MergeKeys<'k>) -> Option<&'k str> {
    keys.iter().find(|(p, _)| *p == path).map(|(_, k)| *k)
}

/// A value's identity when lists merge: its JSON text. Looking identities up in a hash keeps
/// merges linear where comparing every pair would be quadratic in the lists' lengths.
fn identity(value: &Value) -> String {
    value.to_string()
}

fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn merge_map(
    original: Value,
    mut patch: Map<String, Value>,
    path: Option<&str>,
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
        let retain: HashSet<String> = retain
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
                remove_all(list, &remove);
            }
            continue;
        }
        if v.is_null() {
            out.remove(&k);
            continue;
        }
        let current = out.remove(&k).unwrap_or(Value::Null);
        let merged = match v {
            Value::Object(pm) => {
                merge_map(current, pm, child_path(path, &k, keys).as_deref(), keys)?
            }
            Value::Array(items) => {
                merge_list(current, items, child_path(path, &k, keys).as_deref(), keys)?
            }
            other => other,
        };
        if !merged.is_null() {
            out.insert(k, merged);
        }
    }
    for (field, order) in orders {
        let key = path.and_then(|p| merge_key_of(&join(p, &field), keys));
        if let (Some(Value::Array(list)), Value::Array(order)) = (out.get_mut(&field), order) {
            reorder(list, &order, key);
        }
    }
    Ok(Value::Object(out))
}

fn strip_directives(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().filter(|(k, _)| !k.starts_with('$')).collect()
}

/// `$deleteFromPrimitiveList`: drops every item equal to one of `remove`.
fn remove_all(list: &mut Vec<Value>, remove: &[Value]) {
    let unwanted: HashSet<String> = remove.iter().map(identity).collect();
    list.retain(|item| !unwanted.contains(&identity(item)));
}

fn merge_list(
    original: Value,
    patch: Vec<Value>,
    path: Option<&str>,
    keys: MergeKeys<'_>,
) -> Result<Value, ApiError> {
    let Some(path) = path else {
        return Ok(Value::Array(patch));
    };
    if MERGING_PRIMITIVE_LISTS.contains(&path) {
        return Ok(merge_primitive_list(original, patch));
    }
    let Some(key) = merge_key_of(path, keys) else {
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
    merge_keyed_list(original, patch, path, key, keys)
}

/// A list that merges as a set: the patch's items not present yet, appended.
fn merge_primitive_list(original: Value, patch: Vec<Value>) -> Value {
    let mut out = into_items(original);
    let mut present: HashSet<String> = out.iter().map(identity).collect();
    for item in patch {
        if present.insert(identity(&item)) {
            out.push(item);
        }
    }
    Value::Array(out)
}

/// A list merged by `key`: each patch item merges into the first live item with its key,
/// deletes it (`$patch: delete`) or is appended. Items are found through an index of their
/// keys, and deleted ones leave a hole until the end, so this is linear in both lists.
fn merge_keyed_list(
    original: Value,
    patch: Vec<Value>,
    path: &str,
    key: &str,
    keys: MergeKeys<'_>,
) -> Result<Value, ApiError> {
    let mut slots: Vec<Option<Value>> = into_items(original).into_iter().map(Some).collect();
    let mut positions: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, item) in slots.iter().enumerate() {
        if let Some(id) = item.as_ref().and_then(|v| v.get(key)) {
            positions.entry(identity(id)).or_default().push_back(i);
        }
    }
    let item_path = tracked(format!("{path}[]"), keys);
    for item in patch {
        let Value::Object(pm) = item else {
            return Err(ApiError::BadRequest(format!(
                "strategic merge patch: elements of {path} must be objects"
            )));
        };
        let Some(id) = pm.get(key).map(identity) else {
            return Err(ApiError::BadRequest(format!(
                "map: {} does not contain declared merge key: {key}",
                Value::Object(pm)
            )));
        };
        let live = positions.entry(id).or_default();
        if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(slot) = live.pop_front().and_then(|i| slots.get_mut(i)) {
                *slot = None;
            }
            continue;
        }
        match live.front().copied() {
            Some(i) => {
                let current = slots
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or(Value::Null);
                let merged = merge_map(current, pm, item_path.as_deref(), keys)?;
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(merged);
                }
            }
            None => {
                live.push_back(slots.len());
                slots.push(Some(merge_map(
                    Value::Null,
                    pm,
                    item_path.as_deref(),
                    keys,
                )?));
            }
        }
    }
    Ok(Value::Array(slots.into_iter().flatten().collect()))
}

/// `$setElementOrder`: items named in `order` come first in that order; the rest keep theirs.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: Option<&str>) {
    let id_of = |v: &Value| match key {
        Some(k) => v.get(k).map(identity),
        None => Some(identity(v)),
    };
    let ids: Vec<Option<String>> = list.iter().map(&id_of).collect();
    let mut positions: HashMap<&str, VecDeque<usize>> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            positions.entry(id.as_str()).or_default().push_back(i);
        }
    }
    let mut slots: Vec<Option<Value>> = std::mem::take(list).into_iter().map(Some).collect();
    let mut ordered = Vec::with_capacity(slots.len());
    for wanted in order.iter().filter_map(&id_of) {
        let taken = positions
            .get_mut(wanted.as_str())
            .and_then(VecDeque::pop_front)
            .and_then(|i| slots.get_mut(i))
            .and_then(Option::take);
        ordered.extend(taken);
    }
    ordered.extend(slots.into_iter().flatten());
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
    fn patches_that_leave_managed_fields_alone() {
        let alone = |patch_type, body: Value| {
            leaves_managed_fields_alone(patch_type, body.to_string().as_bytes())
        };
        let (json, merge, strategic) = (PatchType::Json, PatchType::Merge, PatchType::Strategic);
        let op = |op: &str, path: &str| json!([{"op": op, "path": path, "value": 1}]);
        let from = |op: &str, from: &str| json!([{"op": op, "from": from, "path": "/spec/x"}]);
        assert!(alone(json, op("replace", "/metadata/labels/a")));
        assert!(alone(json, op("add", "/metadata/managedFieldsX")));
        assert!(alone(json, from("copy", "/spec/y")));
        assert!(alone(json, json!([])));
        for touching in [
            op("test", "/metadata/managedFields/0/manager"),
            op("replace", "/metadata/managedFields"),
            op("add", "/metadata"),
            op("test", ""),
            from("copy", "/metadata/managedFields/0"),
            from("move", "/metadata"),
            json!([{"op": "add", "value": 1}]),
            json!({"op": "add"}),
        ] {
            assert!(!alone(json, touching.clone()), "{touching}");
        }
        assert!(alone(merge, json!({"metadata": {"labels": {"a": null}}})));
        assert!(alone(merge, json!({"spec": null})));
        assert!(alone(merge, json!({"metadata": {"$patch": "replace"}})));
        assert!(!alone(merge, json!({"metadata": {"managedFields": null}})));
        assert!(!alone(merge, json!({"metadata": null})));
        assert!(!alone(merge, json!(["metadata"])));
        assert!(alone(
            strategic,
            json!({"metadata": {"labels": {"a": "1"}}})
        ));
        assert!(!alone(
            strategic,
            json!({"metadata": {"$patch": "replace"}})
        ));
        assert!(!alone(strategic, json!({"$retainKeys": ["spec"]})));
        assert!(!alone(
            strategic,
            json!({"metadata": {"$setElementOrder/managedFields": []}})
        ));
        assert!(!alone(PatchType::Apply, json!({"metadata": {}})));
        assert!(!leaves_managed_fields_alone(merge, b"{"));
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

    fn json_patch(doc: &mut Value, ops: &[Value]) -> Result<(), ApiError> {
        apply_json_patch(doc, Value::Array(ops.to_vec()).to_string().as_bytes())
    }

    fn repeated(value: Value, times: usize) -> Vec<Value> {
        std::iter::repeat_n(value, times).collect()
    }

    /// The issue's attack: a 1 KB value copied into itself 21 times would make 9 GB.
    #[test]
    fn the_doubling_json_patch_is_refused() {
        let mut ops = vec![json!({"op": "add", "path": "/blob", "value": ["x".repeat(1024)]})];
        ops.extend((0..21).map(|_| json!({"op": "copy", "from": "/blob", "path": "/blob/-"})));
        let mut doc = json!({});
        let err = json_patch(&mut doc, &ops).expect_err("refused");
        assert_eq!(err.code(), 422);
        let ApiError::Unprocessable(cause) = &err else {
            panic!("a 422 with kube's cause, got {err:?}");
        };
        assert!(
            cause.starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            ),
            "{cause}"
        );
        assert!(cause.ends_with("exceeding the limit 3145728"), "{cause}");
        assert!(limits::serialized_len(&doc) < 2 * limits::MAX_JSON_PATCH_COPY_BYTES);
    }

    #[test]
    fn legitimate_copies_and_moves_work() {
        let mut doc = json!({"a": {"b": [1, 2]}, "l": [1, 2, 3]});
        json_patch(
            &mut doc,
            &[
                json!({"op": "copy", "from": "/a", "path": "/c"}),
                json!({"op": "copy", "from": "/a/b/0", "path": "/l/0"}),
                json!({"op": "move", "from": "/l/3", "path": "/a/b/-"}),
                json!({"op": "remove", "path": "/l/1"}),
            ],
        )
        .expect("ordinary copies");
        assert_eq!(
            doc,
            json!({"a": {"b": [1, 2, 3]}, "c": {"b": [1, 2]}, "l": [1, 2]})
        );
    }

    #[test]
    fn failures_name_their_operation() {
        let mut doc = json!({"a": 1});
        let err = json_patch(
            &mut doc,
            &[
                json!({"op": "test", "path": "/a", "value": 1}),
                json!({"op": "remove", "path": "/missing"}),
            ],
        )
        .expect_err("no such path");
        assert_eq!(
            err,
            ApiError::Unprocessable(
                "operation '/1' failed at path '/missing': path is invalid".to_string()
            )
        );
    }

    #[test]
    fn operation_count_is_limited() {
        let test = json!({"op": "test", "path": "/a", "value": 1});
        let mut doc = json!({"a": 1});
        json_patch(&mut doc, &repeated(test.clone(), MAX_JSON_PATCH_OPERATIONS)).expect("10,000");
        let err = json_patch(&mut doc, &repeated(test, MAX_JSON_PATCH_OPERATIONS + 1))
            .expect_err("10,001");
        assert_eq!(err.code(), 413);
        assert_eq!(
            err.to_string(),
            "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }

    #[test]
    fn shifting_long_lists_is_limited() {
        let mut doc = json!({"l": repeated(json!(0), 100_000)});
        let appends = repeated(json!({"op": "add", "path": "/l/-", "value": 1}), 1000);
        json_patch(&mut doc, &appends).expect("appending shifts nothing");
        let inserts = repeated(json!({"op": "add", "path": "/l/0", "value": 1}), 100);
        let err = json_patch(&mut doc, &inserts).expect_err("100 inserts at the head");
        assert_eq!(err, ApiError::from(LimitExceeded::JsonPatchShifts));
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn patched_objects_are_limited_in_size() {
        let big = "x".repeat(limits::MAX_PATCHED_OBJECT_BYTES);
        let mut doc = json!({});
        let err = apply_merge_patch(&mut doc, json!({"big": big}).to_string().as_bytes())
            .expect_err("too large");
        assert_eq!(err.code(), 413);
        let mut doc = json!({});
        let err =
            apply_strategic_merge_patch(&mut doc, json!({"big": big}).to_string().as_bytes(), KEYS)
                .expect_err("too large");
        assert_eq!(err.code(), 413);
        let mut doc = json!({});
        let err = json_patch(
            &mut doc,
            &[json!({"op": "add", "path": "/big", "value": big})],
        )
        .expect_err("too large");
        assert_eq!(err.code(), 413);
    }

    #[test]
    fn deep_patches_are_refused_by_name() {
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        let mut doc = json!({});
        for err in [
            apply_json_patch(&mut doc, deep.as_bytes()).expect_err("json"),
            apply_merge_patch(&mut doc, deep.as_bytes()).expect_err("merge"),
            apply_strategic_merge_patch(&mut doc, deep.as_bytes(), KEYS).expect_err("smp"),
        ] {
            assert_eq!(
                err.to_string(),
                "the request body is nested too deeply: more than 127 levels"
            );
        }
    }

    #[test]
    fn long_keyed_lists_merge_in_order() {
        let live: Vec<Value> = (0..20_000)
            .map(|i| json!({"name": format!("t{i}")}))
            .collect();
        let mut patch: Vec<Value> = (0..20_000)
            .rev()
            .map(|i| json!({"name": format!("t{i}"), "seen": true}))
            .collect();
        patch.push(json!({"name": "t5", "$patch": "delete"}));
        patch.push(json!({"name": "new"}));
        let got = smp(
            json!({"spec": {"tags": live}}),
            json!({"spec": {"tags": patch}}),
        );
        let tags = got["spec"]["tags"].as_array().expect("a list");
        assert_eq!(tags.len(), 20_000);
        assert_eq!(tags[0], json!({"name": "t0", "seen": true}));
        assert_eq!(tags[5], json!({"name": "t6", "seen": true}));
        assert_eq!(tags[19_999], json!({"name": "new"}));
    }

    #[test]
    fn set_operations_on_lists() {
        let order = json!([{"name": "c"}, {"name": "x"}, {"name": "a"}]);
        let got = smp(
            json!({"spec": {"tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            json!({"spec": {"$setElementOrder/tags": order}}),
        );
        assert_eq!(
            got,
            json!({"spec": {"tags": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}})
        );
        let got = smp(
            json!({"metadata": {"finalizers": ["x", "y", "x", "z"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x", "q"]}}),
        );
        assert_eq!(got, json!({"metadata": {"finalizers": ["y", "z"]}}));
        let got = smp(
            json!({"a": {"k": 1, "l": 2, "m": 3}}),
            json!({"a": {"$retainKeys": ["k", "m"], "m": 4}}),
        );
        assert_eq!(got, json!({"a": {"k": 1, "m": 4}}));
    }

    #[test]
    fn long_keys_outside_merge_lists_merge_plainly() {
        let key = "k".repeat(10_000);
        let got = smp(
            json!({key.clone(): {"a": [1], "b": {"c": 1}}}),
            json!({key.clone(): {"a": [2], "b": {"d": 2}}}),
        );
        assert_eq!(got, json!({key: {"a": [2], "b": {"c": 1, "d": 2}}}));
    }
}
