//! Server-side apply (spec §6.4) in the spirit of structured-merge-diff: the applied
//! configuration's fields become owned by `(manager, Apply)`; fields another manager owns with
//! a different value conflict (409) unless `force=true`; fields this manager applied before
//! and no longer applies are removed when nobody else owns them.

use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath as ErrPath};
use apimachinery::options::WriteOptions;
use apimachinery::GroupKind;
use serde_json::{Map, Value};

use crate::managed::{self, value_at, FieldPath, FieldSet};
use crate::registry::{now, Registry, UpdateStrategy, WriteContext};
use crate::resource::Request;
use crate::strategy::{ApiObject, Strategy};

/// A conflict with another manager over one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as structured-merge-diff names it (`manager_identity`).
    pub manager: String,
    pub field: String,
}

/// How a conflict names the manager of a managedFields entry, as kube's fieldmanager prints
/// it: the quoted name, the subresource if any, and for `Update` managers the apiVersion and
/// time they wrote with (`"kubectl-edit" using image.openshift.io/v1 at 2026-01-01T00:00:00Z`).
/// An `Apply` manager is just its name.
pub fn manager_identity(entry: &Value) -> String {
    let field = |name: &str| entry.get(name).and_then(Value::as_str);
    let mut out = format!("{:?}", field("manager").unwrap_or(""));
    if let Some(sub) = field("subresource").filter(|s| !s.is_empty()) {
        out.push_str(&format!(" with subresource {sub:?}"));
    }
    if field("operation") == Some("Update") {
        out.push_str(&format!(" using {}", field("apiVersion").unwrap_or("")));
        if let Some(time) = field("time").filter(|t| !t.is_empty()) {
            out.push_str(&format!(" at {time}"));
        }
    }
    out
}

/// SMD's path printing: `.spec.tags[name="latest"].from`.
pub fn path_string(path: &FieldPath) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else {
            out.push_str(el);
        }
    }
    out
}

pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let n = conflicts.len();
    let message = if n == 1 {
        let c = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        )
    } else {
        let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
        for c in conflicts {
            match by_manager.iter_mut().find(|(m, _)| *m == c.manager) {
                Some((_, fields)) => fields.push(c.field.clone()),
                None => by_manager.push((c.manager.clone(), vec![c.field.clone()])),
            }
        }
        let body: Vec<String> = by_manager
            .iter()
            .map(|(m, fields)| {
                let list: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                format!("conflicts with {m}:\n{}", list.join("\n"))
            })
            .collect();
        format!("Apply failed with {n} conflicts: {}", body.join("\n"))
    };
    ApiError::ApplyConflict {
        message,
        causes: conflicts
            .iter()
            .map(|c| (format!("conflict with {}", c.manager), c.field.clone()))
            .collect(),
    }
}

/// Removes the field at `path` from `obj`.
fn remove_at(obj: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parents {
        let next = if let Some(name) = el.strip_prefix("f:") {
            cur.get_mut(name)
        } else if let Some(key) = el.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(name) = last.strip_prefix("f:") {
        if let Some(o) = cur.as_object_mut() {
            o.remove(name);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        if let (Ok(Value::Object(key)), Some(a)) =
            (serde_json::from_str::<Value>(key), cur.as_array_mut())
        {
            a.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
        }
    }
}

/// Merges an applied configuration into the live object: maps merge, keyed lists merge by key,
/// everything else is replaced.
fn merge_applied(live: &mut Value, applied: &Value, path: &str, keys: &[(&str, &str)]) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match l.get_mut(k) {
                    Some(lv) if !av.is_null() => merge_applied(lv, av, &child, keys),
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let Some(key) = keys.iter().find(|(p, _)| *p == path).map(|(_, k)| *k) else {
                *l = a.clone();
                return;
            };
            let item_path = format!("{path}[]");
            for item in a {
                let id = item.get(key);
                match l.iter_mut().find(|x| x.get(key) == id) {
                    Some(existing) => merge_applied(existing, item, &item_path, keys),
                    None => l.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

fn apply_entry(
    manager: &str,
    api_version: &str,
    set: &FieldSet,
    subresource: Option<&str>,
) -> Value {
    let mut e = Map::new();
    e.insert("manager".into(), manager.into());
    e.insert("operation".into(), "Apply".into());
    e.insert("apiVersion".into(), api_version.into());
    e.insert(
        "time".into(),
        serde_json::to_value(now()).unwrap_or_default(),
    );
    e.insert("fieldsType".into(), "FieldsV1".into());
    e.insert("fieldsV1".into(), managed::to_fields_v1(set));
    if let Some(s) = subresource {
        e.insert("subresource".into(), s.into());
    }
    Value::Object(e)
}

fn entry_is(e: &Value, manager: &str, op: &str, subresource: Option<&str>) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some(op)
        && e.get("subresource").and_then(Value::as_str) == subresource
}

/// Applies `applied` to `live` for `manager`; returns the new object JSON or the conflicts.
pub fn apply_to(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    keys: &[(&str, &str)],
    subresource: Option<&str>,
) -> Result<Value, Vec<Conflict>> {
    let ignored: &[&str] = if subresource == Some("status") {
        &["spec"]
    } else {
        &["status"]
    };
    let applied_set = managed::applied_field_set(applied, keys, ignored);
    let entries: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut previous = FieldSet::new();
    let mut others: Vec<(Value, FieldSet)> = Vec::new();
    for e in entries {
        let set = e
            .get("fieldsV1")
            .map(managed::from_fields_v1)
            .unwrap_or_default();
        if entry_is(&e, manager, "Apply", subresource) {
            previous = set;
        } else {
            others.push((e, set));
        }
    }
    let mut conflicts = Vec::new();
    let mut conflicting = FieldSet::new();
    for (e, set) in &others {
        for p in set.intersection(&applied_set) {
            let (lv, av) = (value_at(live, p), value_at(applied, p));
            let leaf = av.is_some_and(|v| !v.is_object() && !v.is_array());
            if leaf && lv != av {
                conflicting.insert(p.clone());
                conflicts.push(Conflict {
                    manager: manager_identity(e),
                    field: path_string(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut out = live.clone();
    // Fields this manager stops applying go away unless someone else owns them.
    let owned_by_others: FieldSet = others.iter().flat_map(|(_, s)| s.iter().cloned()).collect();
    let mut dropped: Vec<&FieldPath> = previous
        .iter()
        .filter(|p| !applied_set.contains(*p) && !owned_by_others.contains(*p))
        .collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_at(&mut out, p);
    }
    let mut applied_body = applied.clone();
    if let Some(o) = applied_body.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    merge_applied(&mut out, &applied_body, "", keys);
    let new_full = managed::field_set(&out, keys, ignored);
    let changed = managed::changed_fields(
        &managed::field_set(live, keys, ignored),
        &new_full,
        live,
        &out,
    );
    let mut new_entries = Vec::new();
    for (mut e, set) in others {
        let kept: FieldSet = set
            .into_iter()
            .filter(|p| !applied_set.contains(p) || !changed.contains(p))
            .filter(|p| !conflicting.contains(p))
            .collect();
        if kept.is_empty() {
            continue;
        }
        if let Some(o) = e.as_object_mut() {
            o.insert("fieldsV1".into(), managed::to_fields_v1(&kept));
        }
        new_entries.push(e);
    }
    if !applied_set.is_empty() {
        new_entries.push(apply_entry(manager, api_version, &applied_set, subresource));
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(new_entries));
    }
    Ok(out)
}

/// Server-side apply of `req`'s body to object `name`: creates it when it is missing (not on
/// `/status`), else merges it into the live object through the update loop. Returns the HTTP
/// code (201 or 200) and the served object.
pub(crate) async fn apply<S: Strategy>(
    registry: &Registry<S>,
    req: &Request,
    opts: &WriteOptions,
    name: &str,
    strategy: UpdateStrategy,
) -> Result<(u16, S::Object), ApiError> {
    let manager = required_field_manager(opts)?;
    let applied = crate::decode::yaml_value(&req.body)?;
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    let info = registry.info().clone();
    crate::decode::check_type_meta(&applied, &info)?;
    let gv = info.group_version();
    let keys = registry.strategy().list_merge_keys();
    let ctx = WriteContext::new(req, opts).applied();
    let existing = registry.get_current(req.namespace.as_deref(), name).await?;
    if existing.is_none() && strategy == UpdateStrategy::Main {
        let obj = applied_new_object(registry, req, opts, name, &applied, &manager)?;
        return Ok((201, registry.create(&ctx, obj).await?));
    }
    let subresource = (strategy == UpdateStrategy::Status).then_some("status");
    let force = opts.force.unwrap_or(false);
    let updated = registry
        .update(&ctx, name, strategy, |old| {
            let live = serde_json::to_value(old).map_err(|e| ApiError::Internal(e.to_string()))?;
            let out = apply_to(&live, &applied, &manager, &gv, force, keys, subresource)
                .map_err(|c| conflict_error(&c))?;
            let mut obj: S::Object =
                crate::decode::typed(out, &info, opts.field_validation, &req.warnings)
                    .map_err(|e| e.for_body(&info))?;
            registry.strategy().default(&mut obj);
            Ok(obj)
        })
        .await?;
    Ok((200, updated))
}

fn required_field_manager(opts: &WriteOptions) -> Result<String, ApiError> {
    opts.field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                GroupKind::new("meta.k8s.io", "PatchOptions"),
                "",
                vec![FieldError::required(
                    &ErrPath::new("fieldManager"),
                    "is required for apply patch",
                )],
            )
        })
}

/// The object an apply creates: the applied configuration, named after the URL, owned by the
/// manager.
fn applied_new_object<S: Strategy>(
    registry: &Registry<S>,
    req: &Request,
    opts: &WriteOptions,
    name: &str,
    applied: &Value,
    manager: &str,
) -> Result<S::Object, ApiError> {
    let info = registry.info();
    let keys = registry.strategy().list_merge_keys();
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("name")
            .or_insert_with(|| Value::String(name.to_string()));
    }
    let set = managed::applied_field_set(applied, keys, &["status"]);
    let mut obj: S::Object = crate::decode::typed(body, info, opts.field_validation, &req.warnings)
        .map_err(|e| e.for_body(info))?;
    registry.strategy().default(&mut obj);
    let entry: k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry =
        serde_json::from_value(apply_entry(manager, &info.group_version(), &set, None))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    obj.metadata_mut().managed_fields = (!set.is_empty()).then(|| vec![entry]);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEYS: &[(&str, &str)] = &[("spec.tags", "name")];

    #[test]
    fn apply_owns_conflicts_and_forces() {
        let live = json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"x"}}]}});
        let first = apply_to(&live, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"x"}}]}}), "one", "g/v1", false, KEYS, None).expect("first");
        let conflict = apply_to(&first, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"y"}}]}}), "two", "g/v1", false, KEYS, None).expect_err("conflict");
        assert_eq!(conflict.len(), 1);
        assert_eq!(conflict[0].field, ".spec.tags[name=\"t\"].from.name");
        assert_eq!(
            conflict_error(&conflict).to_string(),
            "Apply failed with 1 conflict: conflict with \"one\": .spec.tags[name=\"t\"].from.name"
        );
        let forced = apply_to(&first, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"y"}}]}}), "two", "g/v1", true, KEYS, None).expect("force");
        assert_eq!(forced["spec"]["tags"][0]["from"]["name"], "y");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .expect("mf")
            .iter()
            .map(|e| e["manager"].as_str().unwrap_or(""))
            .collect();
        assert!(managers.contains(&"two"));
    }

    #[test]
    fn conflicts_name_update_managers_with_version_and_time_and_apply_managers_bare() {
        let update = json!({"manager": "kubectl-edit", "operation": "Update",
            "apiVersion": "image.openshift.io/v1", "time": "2026-11-29T10:00:00Z"});
        assert_eq!(
            manager_identity(&update),
            "\"kubectl-edit\" using image.openshift.io/v1 at 2026-11-29T10:00:00Z"
        );
        let status = json!({"manager": "m", "operation": "Update", "apiVersion": "g/v1",
            "subresource": "status"});
        assert_eq!(
            manager_identity(&status),
            "\"m\" with subresource \"status\" using g/v1"
        );
        let apply = json!({"manager": "mgr-one", "operation": "Apply", "apiVersion": "g/v1",
            "time": "2026-11-29T10:00:00Z"});
        assert_eq!(manager_identity(&apply), "\"mgr-one\"");
        let two = conflict_error(&[
            Conflict {
                manager: "\"a\"".into(),
                field: ".x".into(),
            },
            Conflict {
                manager: "\"a\"".into(),
                field: ".y".into(),
            },
        ]);
        assert_eq!(
            two.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .x\n- .y"
        );
    }

    #[test]
    fn dropping_a_field_removes_it() {
        let live = json!({"metadata":{"name":"a"}});
        let first = apply_to(
            &live,
            &json!({"metadata":{"name":"a","labels":{"x":"1","y":"2"}}}),
            "m",
            "g/v1",
            false,
            KEYS,
            None,
        )
        .expect("first");
        let second = apply_to(
            &first,
            &json!({"metadata":{"name":"a","labels":{"x":"1"}}}),
            "m",
            "g/v1",
            false,
            KEYS,
            None,
        )
        .expect("second");
        assert_eq!(second["metadata"]["labels"], json!({"x":"1"}));
    }
}
