//! `metadata.managedFields` for non-apply writes (spec §6.5): each create, update and patch
//! records an `Update` entry for its manager with the fields it set or changed, and takes
//! changed fields away from other managers.
//!
//! Field sets follow Go's unstructured view of the object: empty values (Go's `omitempty`
//! zeros) are not fields. Lists named by the strategy's merge keys are keyed (`k:{...}`),
//! other lists are atomic leaves.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One path in a field set, each element already in fieldsV1 form (`f:spec`, `k:{"name":"a"}`).
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields the system owns; never part of a manager's set.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Maps whose keys are data, not schema: the map itself is a member of the set.
fn is_free_form_map(name: &str) -> bool {
    matches!(name, "labels" | "annotations" | "signedClaims")
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty_value),
    }
}

/// The fields of an object. `ignored` top-level fields (`status` for the main resource, `spec`
/// for `/status`) are left out, as kube's reset fields are.
pub fn field_set(object: &Value, merge_keys: &[(&str, &str)], ignored: &[&str]) -> FieldSet {
    field_set_with(object, merge_keys, ignored, true)
}

/// [`field_set`] for an applied configuration: maps of free-form keys (labels) are not
/// members themselves, only their keys are (what structured-merge-diff records for Apply).
pub fn applied_field_set(
    object: &Value,
    merge_keys: &[(&str, &str)],
    ignored: &[&str],
) -> FieldSet {
    field_set_with(object, merge_keys, ignored, false)
}

fn field_set_with(
    object: &Value,
    merge_keys: &[(&str, &str)],
    ignored: &[&str],
    map_members: bool,
) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(top) = object.as_object() else {
        return set;
    };
    let mut walker = Walker {
        merge_keys,
        map_members,
        set: &mut set,
    };
    for (k, v) in top {
        if k == "apiVersion" || k == "kind" || ignored.contains(&k.as_str()) {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                let filtered: Map<String, Value> = meta
                    .iter()
                    .filter(|(mk, _)| !SYSTEM_METADATA.contains(&mk.as_str()))
                    .map(|(mk, mv)| (mk.clone(), mv.clone()))
                    .collect();
                walker.walk(
                    &Value::Object(filtered),
                    &mut vec!["f:metadata".into()],
                    "metadata",
                );
            }
            continue;
        }
        walker.walk(v, &mut vec![format!("f:{k}")], k);
    }
    set
}

struct Walker<'a> {
    merge_keys: &'a [(&'a str, &'a str)],
    map_members: bool,
    set: &'a mut FieldSet,
}

impl Walker<'_> {
    fn walk(&mut self, v: &Value, path: &mut FieldPath, json_path: &str) {
        if is_empty_value(v) {
            return;
        }
        match v {
            Value::Object(o) => {
                let last = path.last().map(String::as_str).unwrap_or("");
                if self.map_members && last.starts_with("f:") && is_free_form_map(&last[2..]) {
                    self.set.insert(path.clone());
                }
                for (k, child) in o {
                    path.push(format!("f:{k}"));
                    self.walk(child, path, &format!("{json_path}.{k}"));
                    path.pop();
                }
            }
            Value::Array(items) => {
                let key = self
                    .merge_keys
                    .iter()
                    .find(|(p, _)| *p == json_path)
                    .map(|(_, k)| *k);
                let Some(key) = key else {
                    self.set.insert(path.clone());
                    return;
                };
                for item in items {
                    let Some(k) = item.get(key) else { continue };
                    let mut id = Map::new();
                    id.insert(key.to_string(), k.clone());
                    path.push(format!("k:{}", Value::Object(id)));
                    self.set.insert(path.clone());
                    self.walk(item, path, &format!("{json_path}[]"));
                    path.pop();
                }
            }
            _ => {
                self.set.insert(path.clone());
            }
        }
    }
}

/// Renders a field set as a fieldsV1 object (`{"f:spec":{"f:tags":{...}}}`), with `.` on
/// nodes that are members and have children.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_path(&mut root, path);
    }
    mark_members(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[String]) {
    if let Some((first, rest)) = path.split_first() {
        let child = node
            .entry(first.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = child {
            insert_path(m, rest);
        }
    }
}

fn mark_members(node: &mut Map<String, Value>, set: &FieldSet, path: &mut FieldPath) {
    let keys: Vec<String> = node.keys().cloned().collect();
    for k in keys {
        path.push(k.clone());
        if let Some(Value::Object(child)) = node.get_mut(&k) {
            if !child.is_empty() && set.contains(path) {
                mark_members(child, set, path);
                child.insert(".".into(), Value::Object(Map::new()));
                sort_dot_first(child);
            } else {
                mark_members(child, set, path);
            }
        }
        path.pop();
    }
}

fn sort_dot_first(m: &mut Map<String, Value>) {
    let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
    entries.sort_by(|a, b| (a.0 != ".").cmp(&(b.0 != ".")).then(a.0.cmp(&b.0)));
    m.extend(entries);
}

/// Parses a fieldsV1 object back into a set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    fn rec(v: &Value, path: &mut FieldPath, set: &mut FieldSet) {
        let Some(o) = v.as_object() else { return };
        if o.is_empty() {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            return;
        }
        for (k, child) in o {
            if k == "." {
                set.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            rec(child, path, set);
            path.pop();
        }
    }
    rec(v, &mut Vec::new(), &mut set);
    set
}

/// The fields whose values differ between two objects (added or changed in `new`). A node
/// with children (a map or keyed list item) changes only by appearing.
pub fn changed_fields(
    old: &FieldSet,
    new: &FieldSet,
    old_obj: &Value,
    new_obj: &Value,
) -> FieldSet {
    let has_children = |p: &FieldPath| {
        new.range(p.clone()..)
            .nth(1)
            .is_some_and(|next| next.len() > p.len() && next.starts_with(p))
    };
    new.iter()
        .filter(|p| {
            !old.contains(*p) || (!has_children(p) && value_at(old_obj, p) != value_at(new_obj, p))
        })
        .cloned()
        .collect()
}

/// The JSON value at a field path (list elements found by key).
pub fn value_at<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        if let Some(name) = el.strip_prefix("f:") {
            cur = cur.get(name)?;
        } else if let Some(key) = el.strip_prefix("k:") {
            let key: Value = serde_json::from_str(key).ok()?;
            let key = key.as_object()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?;
        } else {
            return None;
        }
    }
    // Members that have children compare as present; leaves compare by value.
    Some(cur)
}

/// Updates `new`'s managedFields for a non-apply write by `manager`.
pub struct UpdateRecord<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub time: &'a str,
    pub merge_keys: &'a [(&'a str, &'a str)],
}

pub fn record_update(old: Option<&Value>, new: &mut Value, rec: &UpdateRecord<'_>) {
    let ignored: &[&str] = if rec.subresource == Some("status") {
        &["spec"]
    } else {
        &["status"]
    };
    let empty = Value::Object(Map::new());
    let old_obj = old.unwrap_or(&empty);
    let old_set = field_set(old_obj, rec.merge_keys, ignored);
    let new_set = field_set(new, rec.merge_keys, ignored);
    let changed = changed_fields(&old_set, &new_set, old_obj, new);
    let entries: Vec<Value> = new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut mine = FieldSet::new();
    for e in entries {
        let is_mine = e.get("manager").and_then(Value::as_str) == Some(rec.manager)
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("apiVersion").and_then(Value::as_str) == Some(rec.api_version)
            && e.get("subresource").and_then(Value::as_str) == rec.subresource;
        let set = e.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        if is_mine {
            mine = set;
            continue;
        }
        // Another manager keeps what still exists and was not changed by this write.
        let kept: FieldSet = set
            .into_iter()
            .filter(|p| !changed.contains(p) && (new_set.contains(p) || !old_set.contains(p)))
            .collect();
        if kept.is_empty() {
            continue;
        }
        let mut e = e;
        if let Some(o) = e.as_object_mut() {
            o.insert("fieldsV1".into(), to_fields_v1(&kept));
        }
        out.push(e);
    }
    let mine: FieldSet = mine
        .union(&changed)
        .filter(|p| new_set.contains(*p))
        .cloned()
        .collect();
    if !mine.is_empty() {
        let mut entry = Map::new();
        entry.insert("manager".into(), rec.manager.into());
        entry.insert("operation".into(), "Update".into());
        entry.insert("apiVersion".into(), rec.api_version.into());
        entry.insert("time".into(), rec.time.into());
        entry.insert("fieldsType".into(), "FieldsV1".into());
        entry.insert("fieldsV1".into(), to_fields_v1(&mine));
        if let Some(s) = rec.subresource {
            entry.insert("subresource".into(), s.into());
        }
        out.push(Value::Object(entry));
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        if out.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(out));
        }
    }
}

/// The manager name of a request: `fieldManager`, else the User-Agent up to the first `/`,
/// printable characters only, at most 128.
pub fn manager_name(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = user_agent.unwrap_or("");
    let prefix = ua.split('/').next().unwrap_or("");
    prefix
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEYS: &[(&str, &str)] = &[("spec.tags", "name")];

    fn rec<'a>(manager: &'a str) -> UpdateRecord<'a> {
        UpdateRecord {
            manager,
            api_version: "g/v1",
            subresource: None,
            time: "2024-01-01T00:00:00Z",
            merge_keys: KEYS,
        }
    }

    #[test]
    fn a_name_only_create_records_nothing() {
        let mut obj = json!({"kind":"X","metadata":{"name":"a","namespace":"n"},"spec":{"lookupPolicy":{"local":false}},"status":{"dockerImageRepository":""}});
        record_update(None, &mut obj, &rec("kubectl"));
        assert!(obj["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn create_with_fields_records_an_update_entry() {
        let mut obj = json!({"metadata":{"name":"a","labels":{"app":"x"}},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"i"}}]}});
        record_update(None, &mut obj, &rec("kubectl-create"));
        let mf = &obj["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "kubectl-create");
        assert_eq!(mf["operation"], "Update");
        assert_eq!(
            mf["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:tags": {"k:{\"name\":\"t\"}": {".": {}, "f:from": {"f:kind": {}, "f:name": {}}, "f:name": {}}}}
            })
        );
    }

    #[test]
    fn changed_fields_move_to_the_writer() {
        let mut first = json!({"metadata":{"name":"a","labels":{"app":"x","tier":"y"}}});
        record_update(None, &mut first, &rec("one"));
        let mut second = first.clone();
        second["metadata"]["labels"]["app"] = json!("z");
        record_update(Some(&first), &mut second, &rec("two"));
        let mf = second["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(mf.len(), 2);
        assert_eq!(mf[0]["manager"], "one");
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:metadata":{"f:labels":{".":{},"f:tier":{}}}})
        );
        assert_eq!(mf[1]["manager"], "two");
        assert_eq!(
            mf[1]["fieldsV1"],
            json!({"f:metadata":{"f:labels":{"f:app":{}}}})
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata":{"labels":{"a":"1"}},"spec":{"tags":[{"name":"t","reference":true}]}});
        let set = field_set(&obj, KEYS, &["status"]);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    #[test]
    fn manager_names() {
        assert_eq!(manager_name(Some("me"), Some("kubectl/v1.32")), "me");
        assert_eq!(manager_name(None, Some("kubectl/v1.32 (linux)")), "kubectl");
        assert_eq!(
            manager_name(None, Some("python-requests/2.0")),
            "python-requests"
        );
    }
}
