//! Server-side apply (spec §6.4) in the spirit of structured-merge-diff: the applied
//! configuration's fields become owned by `(manager, Apply)`; fields another manager owns with
//! a different value conflict (409) unless `force=true`; fields this manager applied before
//! and no longer applies are removed when nobody else owns them.
//!
//! An apply costs time linear in the objects and field sets involved (issue 13): field sets
//! are trees walked in step with the values ([`managed::FieldTree`]), keyed list items are
//! found through indexes, and a conflict message names at most [`MAX_REPORTED_FIELDS`] fields,
//! each cut at [`MAX_FIELD_PATH_BYTES`].

use std::borrow::Cow;
use std::collections::HashMap;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath as ErrPath};
use apimachinery::meta::{FieldsV1, ManagedFieldsEntry};
use apimachinery::options::WriteOptions;
use apimachinery::GroupKind;
use serde_json::{Map, Value};

use crate::limits::{MAX_FIELD_PATH_BYTES, MAX_REPORTED_FIELDS};
use crate::managed::{self, FieldTree, Lookups};
use crate::registry::{now, Registry, UpdateStrategy, WriteContext, Written};
use crate::resource::Request;
use crate::strategy::{ApiObject, Strategy};

/// A conflict with another manager over one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as structured-merge-diff names it (`manager_identity`).
    pub manager: String,
    /// The field as conflict messages print it (`path_string`).
    pub field: String,
}

/// The conflicts of an apply: the first [`MAX_REPORTED_FIELDS`] by name (by manager entry,
/// then field), the rest by count, so that a body conflicting on a million fields gets a
/// short answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conflicts {
    pub listed: Vec<Conflict>,
    pub unlisted: usize,
}

impl Conflicts {
    /// How many fields conflict.
    pub fn len(&self) -> usize {
        self.listed.len() + self.unlisted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn record(&mut self, manager: &str, path: &[&str]) {
        if self.listed.len() < MAX_REPORTED_FIELDS {
            self.listed.push(Conflict {
                manager: manager.to_string(),
                field: path_string(path),
            });
        } else {
            self.unlisted += 1;
        }
    }
}

/// How a conflict names the manager of a managedFields entry, as kube's fieldmanager prints
/// it: the quoted name, the subresource if any, and for `Update` managers the apiVersion and
/// time they wrote with (`"kubectl-edit" using image.openshift.io/v1 at 2026-01-01T00:00:00Z`).
/// An `Apply` manager is just its name.
pub fn manager_identity(entry: &ManagedFieldsEntry) -> String {
    let mut out = format!("{:?}", entry.manager.as_deref().unwrap_or(""));
    if let Some(sub) = entry.subresource.as_deref().filter(|s| !s.is_empty()) {
        out.push_str(&format!(" with subresource {sub:?}"));
    }
    if entry.operation.as_deref() == Some("Update") {
        let version = entry.api_version.as_deref().unwrap_or("");
        out.push_str(&format!(" using {version}"));
        let time = serde_json::to_value(&entry.time).unwrap_or_default();
        if let Some(time) = time.as_str().filter(|t| !t.is_empty()) {
            out.push_str(&format!(" at {time}"));
        }
    }
    out
}

/// SMD's path printing: `.spec.tags[name="latest"].from`, cut after [`MAX_FIELD_PATH_BYTES`]
/// (and `...`): a hostile key is not printed whole for every conflict below it.
pub fn path_string<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = crate::limits::CutText::default();
    for element in path {
        let element: &str = element.as_ref();
        if let Some(field) = element.strip_prefix("f:") {
            out.push(".");
            out.push(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            out.push(&key_text(key));
        } else {
            out.push(element);
        }
        if out.is_cut() {
            break;
        }
    }
    out.into_string()
}

/// A key as SMD prints it: `[name="latest"]`. A key too long to print whole is shown as sent
/// (the text is cut inside it anyway), so no conflict pays to parse it.
fn key_text(key: &str) -> Cow<'_, str> {
    if key.len() > MAX_FIELD_PATH_BYTES {
        return Cow::Borrowed(key);
    }
    let key: Value = serde_json::from_str(key).unwrap_or(Value::Null);
    let parts: Vec<String> = key
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    Cow::Owned(format!("[{}]", parts.join(",")))
}

pub fn conflict_error(conflicts: &Conflicts) -> ApiError {
    let n = conflicts.len();
    let message = match conflicts.listed.as_slice() {
        [c] if n == 1 => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        ),
        listed => {
            let mut message = format!("Apply failed with {n} conflicts: {}", by_manager(listed));
            if conflicts.unlisted > 0 {
                message.push_str(&format!("\n{} more conflicts", conflicts.unlisted));
            }
            message
        }
    };
    ApiError::ApplyConflict {
        message,
        causes: conflicts
            .listed
            .iter()
            .map(|c| (format!("conflict with {}", c.manager), c.field.clone()))
            .collect(),
    }
}

/// The conflicts' fields under their managers, managers in the order they first conflict.
fn by_manager(conflicts: &[Conflict]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for c in conflicts {
        match group_of.get(c.manager.as_str()) {
            Some(&g) => {
                if let Some((_, fields)) = groups.get_mut(g) {
                    fields.push(c.field.as_str());
                }
            }
            None => {
                group_of.insert(c.manager.as_str(), groups.len());
                groups.push((c.manager.as_str(), vec![c.field.as_str()]));
            }
        }
    }
    let body: Vec<String> = groups
        .iter()
        .map(|(m, fields)| {
            let list: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
            format!("conflicts with {m}:\n{}", list.join("\n"))
        })
        .collect();
    body.join("\n")
}

/// Merges an applied configuration into the live object: maps merge, keyed lists merge by key,
/// everything else is replaced. `path` is the JSON path while a keyed list may lie below it
/// (see [`managed::tracked`]).
fn merge_applied(live: &mut Value, applied: &Value, path: Option<&str>, keys: &[(&str, &str)]) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                match l.get_mut(k) {
                    Some(lv) if !av.is_null() => {
                        let child = managed::child_path(path, k, keys);
                        merge_applied(lv, av, child.as_deref(), keys);
                    }
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let key = path.and_then(|p| managed::merge_key_of(p, keys));
            let (Some(path), Some(key)) = (path, key) else {
                *l = a.clone();
                return;
            };
            let item_path = managed::tracked(format!("{path}[]"), keys);
            merge_keyed_items(l, a, key, item_path.as_deref(), keys);
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Each applied item merges into the first live item with its key (items without the key
/// count as having the same, absent one) or is appended. Merging keeps an item's key, so an
/// index of first positions built once stays true, where a search per item would make this
/// quadratic in the list.
fn merge_keyed_items(
    live: &mut Vec<Value>,
    applied: &[Value],
    key: &str,
    item_path: Option<&str>,
    keys: &[(&str, &str)],
) {
    let mut first: HashMap<Option<Value>, usize> = HashMap::new();
    for (i, item) in live.iter().enumerate() {
        first.entry(item.get(key).cloned()).or_insert(i);
    }
    for item in applied {
        let id = item.get(key).cloned();
        match first.get(&id).copied().and_then(|i| live.get_mut(i)) {
            Some(existing) => merge_applied(existing, item, item_path, keys),
            None => {
                first.insert(id, live.len());
                live.push(item.clone());
            }
        }
    }
}

fn apply_entry(who: &Applier, set: &FieldTree) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(who.manager.to_string()),
        operation: Some("Apply".to_string()),
        api_version: Some(who.api_version.to_string()),
        time: Some(now()),
        fields_type: Some("FieldsV1".to_string()),
        fields_v1: Some(FieldsV1::from_value(&set.to_fields_v1())),
        subresource: who.subresource.map(str::to_string),
    }
}

fn entry_is(e: &ManagedFieldsEntry, manager: &str, op: &str, subresource: Option<&str>) -> bool {
    e.manager.as_deref() == Some(manager)
        && e.operation.as_deref() == Some(op)
        && e.subresource.as_deref() == subresource
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
/// else's entries (borrowed), each with its field set.
struct Owners<'a> {
    previous: FieldTree,
    others: Vec<(&'a ManagedFieldsEntry, FieldTree)>,
}

impl<'a> Owners<'a> {
    fn of(entries: &'a [ManagedFieldsEntry], who: &Applier) -> Self {
        let mut owners = Owners {
            previous: FieldTree::default(),
            others: Vec::new(),
        };
        for e in entries {
            let set = e
                .fields_v1
                .as_ref()
                .map(|f| FieldTree::from_fields_v1_text(f.raw()))
                .unwrap_or_default();
            if entry_is(e, who.manager, "Apply", who.subresource) {
                owners.previous = set;
            } else {
                owners.others.push((e, set));
            }
        }
        owners
    }

    /// Leaf fields another manager owns that the applied configuration sets to another value:
    /// the conflicts to report, and all their fields (what a forced apply takes).
    fn conflicts(
        &self,
        live: &Value,
        applied: &Value,
        applied_set: &FieldTree,
    ) -> (Conflicts, FieldTree) {
        let mut found = Conflicts::default();
        let mut taken = FieldTree::default();
        // One index per list, shared by every manager's walk.
        let mut lookups = Lookups::default();
        for (entry, owned) in &self.others {
            let manager = manager_identity(entry);
            let conflicting =
                owned.shared_where(applied_set, live, applied, &mut lookups, |path, lv, av| {
                    let leaf = av.is_some_and(|v| !v.is_object() && !v.is_array());
                    let conflict = leaf && lv != av;
                    if conflict {
                        found.record(&manager, path);
                    }
                    conflict
                });
            taken.absorb(conflicting);
        }
        (found, taken)
    }

    /// Removes what this manager applied before and applies no more, unless someone else
    /// owns it.
    fn drop_unapplied(&self, out: &mut Value, applied_set: &FieldTree) {
        let unapplied = self
            .previous
            .select([applied_set], |[in_applied]| !in_applied);
        // The usual apply repeats the last one: then nothing is dropped, and the others' sets
        // (as large as the object) need not be gathered.
        if unapplied.is_empty() {
            return;
        }
        let mut owned_by_others = FieldTree::default();
        for (_, set) in &self.others {
            owned_by_others.absorb(set.clone());
        }
        let dropped = unapplied.select([&owned_by_others], |[in_others]| !in_others);
        managed::remove_fields(out, &dropped);
    }

    /// The other managers' entries after the apply: they lose the fields the apply changed
    /// or took from them by force, and entries left empty go.
    fn remaining(
        self,
        applied_set: &FieldTree,
        changed: &FieldTree,
        taken: &FieldTree,
    ) -> Vec<ManagedFieldsEntry> {
        // What an entry loses: fields the apply set to a new value, and fields it took.
        let contested = applied_set.select([changed], |[in_changed]| in_changed);
        let mut entries = Vec::new();
        for (e, set) in self.others {
            if set.is_empty() {
                continue;
            }
            // An entry that loses nothing is kept as it is, as an update keeps the entries its
            // change does not reach: a stream's creator owns every tag, so rendering its set
            // again would cost the size of the object.
            if !set.shares_any(&contested) && !set.shares_any(taken) {
                entries.push(e.clone());
                continue;
            }
            let kept = set.select([&contested, taken], |[in_contested, in_taken]| {
                !in_contested && !in_taken
            });
            if !kept.is_empty() {
                entries.push(with_fields_v1(e, &kept.to_fields_v1()));
            }
        }
        entries
    }
}

/// A copy of the managedFields entry `e` with `fields` for its fieldsV1, without copying the
/// old fieldsV1 first.
fn with_fields_v1(e: &ManagedFieldsEntry, fields: &Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        api_version: e.api_version.clone(),
        fields_type: e.fields_type.clone(),
        fields_v1: Some(FieldsV1::from_value(fields)),
        manager: e.manager.clone(),
        operation: e.operation.clone(),
        subresource: e.subresource.clone(),
        time: e.time.clone(),
    }
}

/// Applies `applied` to `live` (its managedFields in it) for `who`; returns the new object JSON
/// (with its managedFields) or the conflicts. Entries that do not read as entries are dropped.
pub fn apply_to(live: &Value, applied: &Value, who: &Applier) -> Result<Value, Conflicts> {
    let mut bare = live.clone();
    let entries: Vec<ManagedFieldsEntry> = bare
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|meta| meta.remove("managedFields"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::from_value(e).ok())
        .collect();
    let (mut out, entries) = apply_to_entries(&bare, &entries, applied, who)?;
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "managedFields".into(),
            serde_json::to_value(entries).unwrap_or_default(),
        );
    }
    Ok(out)
}

/// [`apply_to`] with the live object's managedFields `entries` apart from it (its own are
/// passed over): returns the new object JSON, without managedFields, and its entries. The
/// update path keeps them apart, so that the largest part of a large object (its creator's
/// field set) is neither parsed into the object's value nor rendered back from it.
pub fn apply_to_entries(
    live: &Value,
    entries: &[ManagedFieldsEntry],
    applied: &Value,
    who: &Applier,
) -> Result<(Value, Vec<ManagedFieldsEntry>), Conflicts> {
    let ignored = who.ignored();
    let applied_set = FieldTree::of_applied(applied, who.keys, ignored);
    let owners = Owners::of(entries, who);
    let (conflicts, taken) = owners.conflicts(live, applied, &applied_set);
    if !conflicts.is_empty() && !who.force {
        return Err(conflicts);
    }
    let mut out = live.clone();
    owners.drop_unapplied(&mut out, &applied_set);
    let mut applied_body = applied.clone();
    if let Some(o) = applied_body.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    merge_applied(&mut out, &applied_body, Some(""), who.keys);
    // One walk of both that passes over what the apply left alone, instead of the two whole
    // field sets it equals (`field_changes_agree_with_whole_field_sets`).
    let changed = managed::FieldChanges::between(live, &out, who.keys, ignored).changed;
    let mut entries = owners.remaining(&applied_set, &changed, &taken);
    if !applied_set.is_empty() {
        entries.push(apply_entry(who, &applied_set));
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    Ok((out, entries))
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
/// code (201 or 200) and the written object.
pub(crate) async fn apply<S: Strategy>(
    registry: &Registry<S>,
    req: &Request,
    opts: &WriteOptions,
    name: &str,
    strategy: UpdateStrategy,
) -> Result<(u16, Written<S::Object>), ApiError> {
    let manager = required_field_manager(opts)?;
    let info = registry.info().clone();
    let applied = applied_configuration(&req.body, &info)?;
    let gv = info.group_version();
    let ctx = WriteContext::new(req, opts).applied();
    let exists = registry.exists(req.namespace.as_deref(), name).await?;
    let who = Applier::new(&manager, &gv, registry.strategy().list_merge_keys());
    if !exists && strategy == UpdateStrategy::Main {
        let obj = applied_new_object(registry, req, opts, name, &applied, &who)?;
        return Ok((201, registry.create_written(&ctx, obj).await?));
    }
    let who = Applier {
        force: opts.force.unwrap_or(false),
        ..who.on((strategy == UpdateStrategy::Status).then_some("status"))
    };
    let updated = registry
        .update_written(&ctx, name, strategy, |old| {
            // The entries stay typed, apart from the object's value (see `apply_to_entries`).
            let (live, entries) = crate::body::value_apart_from_managed_fields(old)?;
            let entries = entries.unwrap_or_default();
            let (out, entries) = apply_to_entries(&live, &entries, &applied, &who)
                .map_err(|c| conflict_error(&c))?;
            crate::limits::check_patched_size(&out)?;
            let mut obj: S::Object =
                crate::decode::typed(out, &info, opts.field_validation, &req.warnings)
                    .map_err(|e| e.for_body(&info))?;
            obj.metadata_mut().managed_fields = Some(entries);
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
    let set = FieldTree::of_applied(applied, who.keys, who.ignored());
    let mut obj: S::Object = crate::decode::typed(body, info, opts.field_validation, &req.warnings)
        .map_err(|e| e.for_body(info))?;
    registry.strategy().default(&mut obj);
    obj.metadata_mut().managed_fields = (!set.is_empty()).then(|| vec![apply_entry(who, &set)]);
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
        assert_eq!(conflict.listed[0].field, ".spec.tags[name=\"t\"].from.name");
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
        let entry = |v: Value| -> ManagedFieldsEntry { serde_json::from_value(v).expect("entry") };
        let update = entry(json!({"manager": "kubectl-edit", "operation": "Update",
            "apiVersion": "image.openshift.io/v1", "time": "2026-11-29T10:00:00Z"}));
        assert_eq!(
            manager_identity(&update),
            "\"kubectl-edit\" using image.openshift.io/v1 at 2026-11-29T10:00:00Z"
        );
        let status = entry(
            json!({"manager": "m", "operation": "Update", "apiVersion": "g/v1",
            "subresource": "status"}),
        );
        assert_eq!(
            manager_identity(&status),
            "\"m\" with subresource \"status\" using g/v1"
        );
        let apply = entry(
            json!({"manager": "mgr-one", "operation": "Apply", "apiVersion": "g/v1",
            "time": "2026-11-29T10:00:00Z"}),
        );
        assert_eq!(manager_identity(&apply), "\"mgr-one\"");
        let conflict = |manager: &str, field: &str| Conflict {
            manager: manager.into(),
            field: field.into(),
        };
        let two = conflict_error(&Conflicts {
            listed: vec![conflict("\"a\"", ".x"), conflict("\"a\"", ".y")],
            unlisted: 0,
        });
        assert_eq!(
            two.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"a\":\n- .x\n- .y"
        );
    }

    use crate::test_fixtures::streams_info;

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

    fn tag(i: usize, image: &str) -> Value {
        json!({"name": format!("t{i}"), "from": {"kind": "DockerImage", "name": image}})
    }

    fn stream(tags: Vec<Value>) -> Value {
        json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "a"}, "spec": {"tags": tags}})
    }

    fn managers(obj: &Value) -> Vec<(String, Value)> {
        obj["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .map(|e| {
                let name = e["manager"].as_str().unwrap_or("").to_string();
                (name, e["fieldsV1"].clone())
            })
            .collect()
    }

    fn item(name: &str) -> String {
        format!("k:{{\"name\":\"{name}\"}}")
    }

    /// As an update does, an apply keeps the entries it takes nothing from as they are, in
    /// their own order, and renders again only those that lose fields.
    #[test]
    fn entries_that_lose_nothing_are_kept_as_they_are() {
        let fields = r#"{"f:spec":{"f:tags":{}},"f:metadata":{"f:labels":{"f:b":{}},"f:name":{}}}"#;
        let entry = |manager: &str| {
            json!({"manager": manager, "operation": "Update", "apiVersion": "g/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": serde_json::from_str::<Value>(fields).expect("fields")})
        };
        let live = json!({"metadata": {"name": "a", "labels": {"b": "1"},
            "managedFields": [entry("kept"), entry("loses")]}, "spec": {"tags": []}});
        let applied = json!({"metadata": {"name": "a", "labels": {"c": "2"}}});
        let out = apply_to(&live, &applied, &Applier::new("m", "g/v1", KEYS)).expect("applied");
        let entries = out["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(entries[0]["fieldsV1"].to_string(), fields);
        let applied_b = json!({"metadata": {"name": "a", "labels": {"b": "3"}}});
        let forced =
            apply_to(&live, &applied_b, &Applier::new("m", "g/v1", KEYS).forced()).expect("forced");
        let entries = forced["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(
            entries[0]["fieldsV1"].to_string(),
            r#"{"f:metadata":{"f:name":{}},"f:spec":{"f:tags":{}}}"#,
            "an entry that loses a field is rendered again"
        );
    }

    #[test]
    fn keyed_items_merge_into_the_first_with_their_key_or_are_appended() {
        let live = json!({"metadata": {"name": "a"}, "spec": {"tags": [
            {"name": "a", "x": 1}, {"x": 7}, {"name": "a", "x": 5}]}});
        let applied = json!({"metadata": {"name": "a"}, "spec": {"tags": [
            {"name": "b", "x": 1}, {"name": "b", "y": 2}, {"name": "a", "x": 2}, {"y": 8}]}});
        let out = apply_to(&live, &applied, &Applier::new("m", "g/v1", KEYS)).expect("applied");
        assert_eq!(
            out["spec"]["tags"],
            json!([{"name": "a", "x": 2}, {"x": 7, "y": 8}, {"name": "a", "x": 5},
                {"name": "b", "x": 1, "y": 2}])
        );
    }

    #[test]
    fn a_long_keyed_list_merges_in_order_and_is_owned_item_by_item() {
        let live = stream((0..5000).map(|i| tag(i, "x")).collect());
        // The same tags in reverse, every other one changed, and two new ones.
        let mut applied: Vec<Value> = (0..5000)
            .rev()
            .map(|i| tag(i, if i % 2 == 0 { "y" } else { "x" }))
            .collect();
        applied.extend([tag(9001, "z"), tag(9000, "z")]);
        let out = apply_to(&live, &stream(applied), &Applier::new("one", "g/v1", KEYS))
            .expect("nobody else owns anything");
        let tags = out["spec"]["tags"].as_array().expect("tags");
        assert_eq!(tags.len(), 5002);
        assert_eq!(tags[0], tag(0, "y"));
        assert_eq!(tags[1], tag(1, "x"));
        assert_eq!(tags[4998], tag(4998, "y"));
        assert_eq!(tags[4999], tag(4999, "x"));
        assert_eq!(tags[5000], tag(9001, "z"));
        assert_eq!(tags[5001], tag(9000, "z"));
        let owned = managers(&out);
        assert_eq!(owned.len(), 1);
        let items = &owned[0].1["f:spec"]["f:tags"];
        assert_eq!(items.as_object().expect("keyed items").len(), 5002);
        assert_eq!(
            items[item("t4999")],
            json!({".": {}, "f:from": {"f:kind": {}, "f:name": {}}, "f:name": {}})
        );
    }

    #[test]
    fn items_no_longer_applied_go_whole() {
        let who = Applier::new("one", "g/v1", KEYS);
        let all = apply_to(
            &json!({"metadata": {"name": "a"}}),
            &stream((0..5000).map(|i| tag(i, "x")).collect()),
            &who,
        )
        .expect("first apply");
        let evens = apply_to(
            &all,
            &stream((0..5000).step_by(2).map(|i| tag(i, "x")).collect()),
            &who,
        )
        .expect("second apply");
        let expected: Vec<Value> = (0..5000).step_by(2).map(|i| tag(i, "x")).collect();
        assert_eq!(evens["spec"]["tags"], Value::Array(expected));
        let owned = managers(&evens);
        let items = &owned[0].1["f:spec"]["f:tags"];
        assert_eq!(items.as_object().expect("keyed items").len(), 2500);
        assert!(items.get(item("t1")).is_none());
    }

    #[test]
    fn many_conflicts_are_counted_and_the_first_listed() {
        let all_x = apply_to(
            &json!({"metadata": {"name": "a"}}),
            &stream((0..5000).map(|i| tag(i, "x")).collect()),
            &Applier::new("one", "g/v1", KEYS),
        )
        .expect("first apply");
        let all_y = stream((0..5000).map(|i| tag(i, "y")).collect());
        let conflicts = apply_to(&all_x, &all_y, &Applier::new("two", "g/v1", KEYS))
            .expect_err("one owns every from.name");
        assert_eq!(conflicts.len(), 5000);
        assert_eq!(conflicts.listed.len(), MAX_REPORTED_FIELDS);
        assert_eq!(conflicts.unlisted, 5000 - MAX_REPORTED_FIELDS);
        assert_eq!(
            conflicts.listed[0].field,
            ".spec.tags[name=\"t0\"].from.name"
        );
        assert_eq!(
            conflicts.listed[1].field,
            ".spec.tags[name=\"t1\"].from.name"
        );
        let err = conflict_error(&conflicts);
        let message = err.to_string();
        assert!(
            message.starts_with(
                "Apply failed with 5000 conflicts: conflicts with \"one\":\n- .spec.tags[name=\"t0\"].from.name\n"
            ),
            "{message}"
        );
        assert!(message.ends_with("\n4900 more conflicts"), "{message}");
        let ApiError::ApplyConflict { causes, .. } = &err else {
            panic!("an apply conflict, got {err:?}");
        };
        assert_eq!(causes.len(), MAX_REPORTED_FIELDS);

        let forced =
            apply_to(&all_x, &all_y, &Applier::new("two", "g/v1", KEYS).forced()).expect("forced");
        let tags = forced["spec"]["tags"].as_array().expect("tags");
        assert!(tags.iter().all(|t| t["from"]["name"] == "y"));
        let owned = managers(&forced);
        assert_eq!(owned.len(), 2);
        assert_eq!((owned[0].0.as_str(), owned[1].0.as_str()), ("one", "two"));
        // One shares what both applied alike and loses every field taken from it.
        let ones = owned[0].1["f:spec"]["f:tags"].as_object().expect("items");
        assert_eq!(ones.len(), 5000);
        assert!(ones
            .values()
            .all(|fields| *fields == json!({".": {}, "f:from": {"f:kind": {}}, "f:name": {}})));
        assert_eq!(
            owned[1].1["f:spec"]["f:tags"][item("t7")],
            json!({".": {}, "f:from": {"f:kind": {}, "f:name": {}}, "f:name": {}})
        );
    }

    #[test]
    fn conflicting_paths_under_a_long_key_are_cut() {
        let key = "k".repeat(10_000);
        let body = |value: &str| {
            json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "a"},
                "spec": {key.clone(): {"a": value, "b": value}}})
        };
        let first = apply_to(
            &json!({"metadata": {"name": "a"}}),
            &body("x"),
            &Applier::new("one", "g/v1", KEYS),
        )
        .expect("first apply");
        let conflicts = apply_to(&first, &body("y"), &Applier::new("two", "g/v1", KEYS))
            .expect_err("one owns spec");
        assert_eq!(conflicts.len(), 2);
        for c in &conflicts.listed {
            assert_eq!(c.field.len(), MAX_FIELD_PATH_BYTES + "...".len());
            assert!(c.field.starts_with(".spec.kkk") && c.field.ends_with("k..."));
        }
        let long_key = format!("k:{{\"name\":\"{key}\"}}");
        let printed = path_string(&["f:spec", "f:tags", long_key.as_str()]);
        assert!(
            printed.starts_with(".spec.tags{\"name\":\"kkk"),
            "{printed}"
        );
        assert!(printed.ends_with("..."));
    }
}
