//! Server-side apply (spec §6.4) in the spirit of structured-merge-diff: the applied
//! configuration's fields become owned by `(manager, Apply)`; fields another manager owns with
//! a different value conflict (409) unless `force=true`; fields this manager applied before
//! and no longer applies are removed when nobody else owns them.

use apimachinery::discovery::ResourceInfo;
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
    /// The field as conflict messages print it (`path_string`).
    pub field: String,
    pub path: FieldPath,
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

fn apply_entry(who: &Applier, set: &FieldSet) -> Value {
    let mut e = Map::new();
    e.insert("manager".into(), who.manager.into());
    e.insert("operation".into(), "Apply".into());
    e.insert("apiVersion".into(), who.api_version.into());
    e.insert(
        "time".into(),
        serde_json::to_value(now()).unwrap_or_default(),
    );
    e.insert("fieldsType".into(), "FieldsV1".into());
    e.insert("fieldsV1".into(), managed::to_fields_v1(set));
    if let Some(s) = who.subresource {
        e.insert("subresource".into(), s.into());
    }
    Value::Object(e)
}

fn entry_is(e: &Value, manager: &str, op: &str, subresource: Option<&str>) -> bool {
    e.get("manager").and_then(Value::as_str) == Some(manager)
        && e.get("operation").and_then(Value::as_str) == Some(op)
        && e.get("subresource").and_then(Value::as_str) == subresource
}

/// Who applies and how: the manager, the apiVersion it writes, the resource's keyed lists,
/// `force`, and the subresource it applies to.
#[derive(Debug, Clone, Copy)]
pub struct Applier<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub keys: &'a [(&'a str, &'a str)],
    pub force: bool,
    pub subresource: Option<&'a str>,
}

impl<'a> Applier<'a> {
    pub fn new(manager: &'a str, api_version: &'a str, keys: &'a [(&'a str, &'a str)]) -> Self {
        Applier {
            manager,
            api_version,
            keys,
            force: false,
            subresource: None,
        }
    }

    /// Conflicting fields are taken over instead of refused.
    pub fn forced(self) -> Self {
        Applier {
            force: true,
            ..self
        }
    }

    pub fn on(self, subresource: Option<&'a str>) -> Self {
        Applier {
            subresource,
            ..self
        }
    }

    /// The fields the other half of the object owns: spec is not applied through `/status`,
    /// nor status through the main resource.
    fn ignored(&self) -> &'static [&'static str] {
        if self.subresource == Some("status") {
            &["spec"]
        } else {
            &["status"]
        }
    }
}

/// The live object's managedFields split into this applier's previous apply and everybody
/// else's entries, each with its field set.
struct Owners {
    previous: FieldSet,
    others: Vec<(Value, FieldSet)>,
}

impl Owners {
    fn of(live: &Value, who: &Applier) -> Self {
        let entries = live
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut owners = Owners {
            previous: FieldSet::new(),
            others: Vec::new(),
        };
        for e in entries {
            let set = e
                .get("fieldsV1")
                .map(managed::from_fields_v1)
                .unwrap_or_default();
            if entry_is(&e, who.manager, "Apply", who.subresource) {
                owners.previous = set;
            } else {
                owners.others.push((e, set));
            }
        }
        owners
    }

    /// Leaf fields another manager owns that the applied configuration sets to another value.
    fn conflicts(&self, live: &Value, applied: &Value, applied_set: &FieldSet) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        for (e, set) in &self.others {
            for p in set.intersection(applied_set) {
                let (lv, av) = (value_at(live, p), value_at(applied, p));
                let leaf = av.is_some_and(|v| !v.is_object() && !v.is_array());
                if leaf && lv != av {
                    conflicts.push(Conflict {
                        manager: manager_identity(e),
                        field: path_string(p),
                        path: p.clone(),
                    });
                }
            }
        }
        conflicts
    }

    /// Removes what this manager applied before and applies no more, unless someone else
    /// owns it.
    fn drop_unapplied(&self, out: &mut Value, applied_set: &FieldSet) {
        let owned_by_others: FieldSet = self
            .others
            .iter()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();
        let mut dropped: Vec<&FieldPath> = self
            .previous
            .iter()
            .filter(|p| !applied_set.contains(*p) && !owned_by_others.contains(*p))
            .collect();
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(out, p);
        }
    }

    /// The other managers' entries after the apply: they lose the fields the apply changed
    /// or took from them by force, and entries left empty go.
    fn remaining(self, applied_set: &FieldSet, changed: &FieldSet, taken: &FieldSet) -> Vec<Value> {
        let mut entries = Vec::new();
        for (mut e, set) in self.others {
            let kept: FieldSet = set
                .into_iter()
                .filter(|p| !applied_set.contains(p) || !changed.contains(p))
                .filter(|p| !taken.contains(p))
                .collect();
            if kept.is_empty() {
                continue;
            }
            if let Some(o) = e.as_object_mut() {
                o.insert("fieldsV1".into(), managed::to_fields_v1(&kept));
            }
            entries.push(e);
        }
        entries
    }
}

/// Applies `applied` to `live` for `who`; returns the new object JSON or the conflicts.
pub fn apply_to(live: &Value, applied: &Value, who: &Applier) -> Result<Value, Vec<Conflict>> {
    let ignored = who.ignored();
    let applied_set = managed::applied_field_set(applied, who.keys, ignored);
    let owners = Owners::of(live, who);
    let conflicts = owners.conflicts(live, applied, &applied_set);
    if !conflicts.is_empty() && !who.force {
        return Err(conflicts);
    }
    let taken: FieldSet = conflicts.into_iter().map(|c| c.path).collect();
    let mut out = live.clone();
    owners.drop_unapplied(&mut out, &applied_set);
    let mut applied_body = applied.clone();
    if let Some(o) = applied_body.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    merge_applied(&mut out, &applied_body, "", who.keys);
    let changed = managed::changed_fields(
        &managed::field_set(live, who.keys, ignored),
        &managed::field_set(&out, who.keys, ignored),
        live,
        &out,
    );
    let mut entries = owners.remaining(&applied_set, &changed, &taken);
    if !applied_set.is_empty() {
        entries.push(apply_entry(who, &applied_set));
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
    Ok(out)
}

/// An apply body: YAML or JSON, naming this resource's apiVersion and kind, without
/// managedFields of its own.
pub(crate) fn applied_configuration(body: &[u8], info: &ResourceInfo) -> Result<Value, ApiError> {
    let applied = crate::decode::yaml_value(body)?;
    match applied.as_object() {
        Some(obj) => check_applied_type(obj, info)?,
        // Refuses anything but an object, with the decoder's message.
        None => crate::decode::check_type_meta(&applied, info)?,
    }
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    Ok(applied)
}

/// Unlike a create or an update, an apply patch is not defaulted to the endpoint's type: its
/// apiVersion and kind must be this resource's, as kube's fieldmanager `versionCheckManager`
/// requires (400 `invalid object type: <gvk>`, before any other check of the body).
fn check_applied_type(obj: &Map<String, Value>, info: &ResourceInfo) -> Result<(), ApiError> {
    let text = |name: &str| obj.get(name).and_then(Value::as_str).unwrap_or("");
    let kind = text("kind");
    let (group, version) = parse_group_version(text("apiVersion")).unwrap_or(("", ""));
    if (group, version, kind) == (info.group, info.version, info.kind) {
        return Ok(());
    }
    Err(ApiError::BadRequest(format!(
        "invalid object type: {group}/{version}, Kind={kind}"
    )))
}

/// Go's `schema.ParseGroupVersion`: `""` and `"/"` are empty, `v1` is the core group, and
/// more than one slash does not parse.
fn parse_group_version(api_version: &str) -> Option<(&str, &str)> {
    if api_version.is_empty() || api_version == "/" {
        return Some(("", ""));
    }
    match api_version.split_once('/') {
        None => Some(("", api_version)),
        Some((_, version)) if version.contains('/') => None,
        Some(gv) => Some(gv),
    }
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
    let info = registry.info().clone();
    let applied = applied_configuration(&req.body, &info)?;
    let gv = info.group_version();
    let ctx = WriteContext::new(req, opts).applied();
    let existing = registry.get_current(req.namespace.as_deref(), name).await?;
    let who = Applier::new(&manager, &gv, registry.strategy().list_merge_keys());
    if existing.is_none() && strategy == UpdateStrategy::Main {
        let obj = applied_new_object(registry, req, opts, name, &applied, &who)?;
        return Ok((201, registry.create(&ctx, obj).await?));
    }
    let who = Applier {
        force: opts.force.unwrap_or(false),
        ..who.on((strategy == UpdateStrategy::Status).then_some("status"))
    };
    let updated = registry
        .update(&ctx, name, strategy, |old| {
            let live = serde_json::to_value(old).map_err(|e| ApiError::Internal(e.to_string()))?;
            let out = apply_to(&live, &applied, &who).map_err(|c| conflict_error(&c))?;
            crate::limits::check_patched_size(&out)?;
            let mut obj: S::Object =
                crate::decode::typed(out, &info, opts.field_validation, &req.warnings)
                    .map_err(|e| e.for_body(&info))?;
            registry.strategy().default(&mut obj);
            Ok(obj)
        })
        .await?;
    Ok((200, updated))
}

pub(crate) fn required_field_manager(opts: &WriteOptions) -> Result<String, ApiError> {
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
    who: &Applier,
) -> Result<S::Object, ApiError> {
    let info = registry.info();
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("name")
            .or_insert_with(|| Value::String(name.to_string()));
    }
    let set = managed::applied_field_set(applied, who.keys, who.ignored());
    let mut obj: S::Object = crate::decode::typed(body, info, opts.field_validation, &req.warnings)
        .map_err(|e| e.for_body(info))?;
    registry.strategy().default(&mut obj);
    let entry: k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry =
        serde_json::from_value(apply_entry(who, &set))
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
        let first = apply_to(&live, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"x"}}]}}), &Applier::new("one", "g/v1", KEYS)).expect("first");
        let conflict = apply_to(&first, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"y"}}]}}), &Applier::new("two", "g/v1", KEYS)).expect_err("conflict");
        assert_eq!(conflict.len(), 1);
        assert_eq!(conflict[0].field, ".spec.tags[name=\"t\"].from.name");
        assert_eq!(
            conflict_error(&conflict).to_string(),
            "Apply failed with 1 conflict: conflict with \"one\": .spec.tags[name=\"t\"].from.name"
        );
        let forced = apply_to(&first, &json!({"metadata":{"name":"a"},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"y"}}]}}), &Applier::new("two", "g/v1", KEYS).forced()).expect("force");
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
                path: vec!["f:x".to_string()],
            },
            Conflict {
                manager: "\"a\"".into(),
                field: ".y".into(),
                path: vec!["f:y".to_string()],
            },
        ]);
        assert_eq!(
            two.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .x\n- .y"
        );
    }

    fn streams_info() -> ResourceInfo {
        ResourceInfo {
            group: "image.openshift.io",
            version: "v1",
            resource: "imagestreams",
            singular: "imagestream",
            kind: "ImageStream",
            namespaced: true,
            verbs: &[],
            short_names: &[],
            categories: &[],
            stored: true,
            subresources: vec![],
        }
    }

    #[test]
    fn an_apply_body_must_name_the_resources_type() {
        let refused = |body: &str| {
            applied_configuration(body.as_bytes(), &streams_info())
                .expect_err(body)
                .to_string()
        };
        assert_eq!(refused("{}"), "invalid object type: /, Kind=");
        assert_eq!(
            refused("apiVersion: image.openshift.io/v1\nmetadata:\n  name: a\n"),
            "invalid object type: image.openshift.io/v1, Kind="
        );
        assert_eq!(
            refused(r#"{"kind":"ImageStream","metadata":{"name":"a"}}"#),
            "invalid object type: /, Kind=ImageStream"
        );
        assert_eq!(
            refused(r#"{"apiVersion":"v1","kind":"ImageStream"}"#),
            "invalid object type: /v1, Kind=ImageStream"
        );
        assert_eq!(
            refused(r#"{"apiVersion":"a/b/c","kind":"ImageStream"}"#),
            "invalid object type: /, Kind=ImageStream"
        );
        assert_eq!(
            refused(r#"{"apiVersion":"image.openshift.io/v1","kind":"Image"}"#),
            "invalid object type: image.openshift.io/v1, Kind=Image"
        );
        // The type is checked before managedFields, as kube's managers are stacked.
        assert_eq!(
            refused(r#"{"metadata":{"managedFields":[]}}"#),
            "invalid object type: /, Kind="
        );
        assert_eq!(
            refused(
                r#"{"apiVersion":"image.openshift.io/v1","kind":"ImageStream","metadata":{"managedFields":[]}}"#
            ),
            "metadata.managedFields must be nil"
        );
        let err = applied_configuration(b"{}", &streams_info()).expect_err("empty");
        assert_eq!((err.code(), err.reason()), (400, Some("BadRequest")));
        assert!(applied_configuration(b"[]", &streams_info()).is_err());
        let ok = applied_configuration(
            b"apiVersion: image.openshift.io/v1\nkind: ImageStream\nmetadata:\n  name: a\n",
            &streams_info(),
        )
        .expect("a complete apply body");
        assert_eq!(ok["metadata"]["name"], "a");
    }

    #[test]
    fn group_versions_parse_as_go() {
        assert_eq!(parse_group_version(""), Some(("", "")));
        assert_eq!(parse_group_version("/"), Some(("", "")));
        assert_eq!(parse_group_version("v1"), Some(("", "v1")));
        assert_eq!(parse_group_version("g.io/v1"), Some(("g.io", "v1")));
        assert_eq!(parse_group_version("a/b/c"), None);
    }

    #[test]
    fn dropping_a_field_removes_it() {
        let live = json!({"metadata":{"name":"a"}});
        let first = apply_to(
            &live,
            &json!({"metadata":{"name":"a","labels":{"x":"1","y":"2"}}}),
            &Applier::new("m", "g/v1", KEYS),
        )
        .expect("first");
        let second = apply_to(
            &first,
            &json!({"metadata":{"name":"a","labels":{"x":"1"}}}),
            &Applier::new("m", "g/v1", KEYS),
        )
        .expect("second");
        assert_eq!(second["metadata"]["labels"], json!({"x":"1"}));
    }
}
