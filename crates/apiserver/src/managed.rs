//! `metadata.managedFields` for non-apply writes (spec §6.5): each create, update and patch
//! records an `Update` entry for its manager with the fields it set or changed, and takes
//! changed fields away from other managers.
//!
//! Field sets follow Go's unstructured view of the object: empty values (Go's `omitempty`
//! zeros) are not fields. Lists named by the strategy's merge keys are keyed (`k:{...}`),
//! other lists are atomic leaves.
//!
//! Every request builds and compares field sets, so their cost must stay linear in the object
//! (issue 13). A set is held as a [`FieldTree`], one node per path element: as a set of whole
//! paths, a long key would be copied into the path of every field below it. Items of keyed
//! lists are found through an index of their fields ([`Lookups`]), never by scanning the list
//! once per item.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use apimachinery::meta::{FieldsV1, ManagedFieldsEntry, Time};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod scan;

use scan::Tapes;

/// One path in a field set, each element already in fieldsV1 form (`f:spec`, `k:{"name":"a"}`).
pub type FieldPath = Vec<String>;
/// A field set as whole paths: the form tests and small sets are easiest to write in. Requests
/// use [`FieldTree`].
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

/// Go's `omitempty` zero of a scalar or a list. A map is empty when all its values are, which
/// the walk finds out on its way up (see [`Walker::walk`]).
fn is_empty_leaf(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A set of field paths as a tree: one node per path element, marked where a path of the set
/// ends. Every node below the root is a member or leads to one (empty subtrees are never
/// kept), so a node has children exactly when some longer path of the set runs through it.
/// Children are ordered by element, so a walk visits paths in the order of a [`FieldSet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTree {
    member: bool,
    children: BTreeMap<String, FieldTree>,
}

impl FieldTree {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// How many paths the set holds.
    pub fn len(&self) -> usize {
        usize::from(self.member) + self.children.values().map(FieldTree::len).sum::<usize>()
    }

    pub fn contains(&self, path: &[String]) -> bool {
        let mut node = self;
        for element in path {
            match node.children.get(element) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.member
    }

    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    pub fn from_paths(set: &FieldSet) -> Self {
        let mut tree = FieldTree::default();
        for path in set {
            tree.insert(path);
        }
        tree
    }

    /// The set as whole paths (each repeats its ancestors: for tests and small sets).
    pub fn paths(&self) -> FieldSet {
        let mut set = FieldSet::new();
        self.collect_paths(&mut Vec::new(), &mut set);
        set
    }

    fn collect_paths(&self, path: &mut FieldPath, set: &mut FieldSet) {
        if self.member {
            set.insert(path.clone());
        }
        for (element, child) in &self.children {
            path.push(element.clone());
            child.collect_paths(path, set);
            path.pop();
        }
    }

    /// Adds every path of `other`.
    pub fn absorb(&mut self, other: FieldTree) {
        self.member |= other.member;
        for (element, child) in other.children {
            match self.children.entry(element) {
                Entry::Vacant(slot) => {
                    slot.insert(child);
                }
                Entry::Occupied(slot) => slot.into_mut().absorb(child),
            }
        }
    }

    /// Hangs `subtree` under `element` (merging with what is there), unless it is empty.
    fn put(&mut self, element: &str, subtree: FieldTree) {
        if subtree.is_empty() {
            return;
        }
        match self.children.get_mut(element) {
            Some(existing) => existing.absorb(subtree),
            None => {
                self.children.insert(element.to_string(), subtree);
            }
        }
    }

    /// [`FieldTree::put`] for an element the caller owns already.
    fn adopt(&mut self, element: String, subtree: FieldTree) {
        if subtree.is_empty() {
            return;
        }
        match self.children.entry(element) {
            Entry::Vacant(slot) => {
                slot.insert(subtree);
            }
            Entry::Occupied(slot) => slot.into_mut().absorb(subtree),
        }
    }

    /// The paths of this set that `keep` accepts, given whether each of `others` holds them:
    /// `a.select([&b], |[in_b]| !in_b)` is `a` without `b`. One walk of this tree.
    pub fn select<const N: usize>(
        &self,
        others: [&FieldTree; N],
        keep: impl Fn([bool; N]) -> bool,
    ) -> FieldTree {
        self.select_below(others.map(Some), &keep)
    }

    fn select_below<const N: usize>(
        &self,
        others: [Option<&FieldTree>; N],
        keep: &impl Fn([bool; N]) -> bool,
    ) -> FieldTree {
        let member = self.member && keep(others.map(|o| o.is_some_and(|o| o.member)));
        let mut out = FieldTree {
            member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let below = others.map(|o| o.and_then(|o| o.children.get(element)));
            out.put(element, child.select_below(below, keep));
        }
        out
    }

    /// Whether some path is in both sets. Walks `other` (the small one, where it matters) and
    /// looks each of its elements up here.
    pub fn shares_any(&self, other: &FieldTree) -> bool {
        (self.member && other.member)
            || other.children.iter().any(|(element, theirs)| {
                self.children
                    .get(element)
                    .is_some_and(|mine| mine.shares_any(theirs))
            })
    }

    /// The paths this set shares with `other` that `keep` accepts. `keep` sees each shared
    /// path in order, with the values at it in `x` and `y`.
    pub fn shared_where<'v>(
        &self,
        other: &FieldTree,
        x: &'v Value,
        y: &'v Value,
        lookups: &mut Lookups<'v>,
        keep: impl FnMut(&[&str], Option<&'v Value>, Option<&'v Value>) -> bool,
    ) -> FieldTree {
        let mut walk = SharedWalk {
            lookups,
            path: Vec::new(),
            keep,
        };
        walk.walk(self, other, Some(x), Some(y))
    }

    /// Reads a fieldsV1 object. Anything but objects below it holds no field.
    pub fn from_fields_v1(v: &Value) -> Self {
        let mut root = FieldTree::default();
        root.read_fields_v1(v, true);
        root
    }

    /// [`FieldTree::from_fields_v1`] from the text of a fieldsV1 (as a [`FieldsV1`] holds it),
    /// read straight into the tree: a stream's creator owns every tag, so a value in between
    /// would cost as much again. The text holds no repeated name ([`FieldsV1`] refuses one);
    /// text that is not JSON holds no field.
    pub fn from_fields_v1_text(text: &RawValue) -> Self {
        let mut root = FieldTree::default();
        let mut de = serde_json::Deserializer::from_str(text.get());
        let seed = ReadFieldsV1 {
            node: &mut root,
            is_root: true,
        };
        match serde::de::DeserializeSeed::deserialize(seed, &mut de) {
            Ok(()) => root,
            Err(_) => FieldTree::default(),
        }
    }

    fn read_fields_v1(&mut self, v: &Value, is_root: bool) {
        let Some(fields) = v.as_object() else { return };
        if fields.is_empty() {
            self.member |= !is_root;
            return;
        }
        for (element, below) in fields {
            if element == "." {
                self.member = true;
                continue;
            }
            let mut child = FieldTree::default();
            child.read_fields_v1(below, false);
            self.put(element, child);
        }
    }

    /// Renders the set as a fieldsV1 object (`{"f:spec":{"f:tags":{...}}}`), with `.` first on
    /// nodes that are members and have children, and children in element order.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_children())
    }

    fn fields_v1_children(&self) -> Map<String, Value> {
        self.children
            .iter()
            .map(|(element, child)| (element.clone(), child.fields_v1_node()))
            .collect()
    }

    fn fields_v1_node(&self) -> Value {
        let mut node = Map::new();
        if self.member && !self.children.is_empty() {
            node.insert(".".into(), Value::Object(Map::new()));
        }
        node.extend(self.fields_v1_children());
        Value::Object(node)
    }

    /// The fields of an object. `ignored` top-level fields (`status` for the main resource,
    /// `spec` for `/status`) are left out, as kube's reset fields are.
    pub fn of_object(object: &Value, merge_keys: &[(&str, &str)], ignored: &[&str]) -> Self {
        Walker {
            merge_keys,
            map_members: true,
        }
        .top(object, ignored)
    }

    /// [`FieldTree::of_object`] for an applied configuration: maps of free-form keys (labels)
    /// are not members themselves, only their keys are (what structured-merge-diff records for
    /// Apply).
    pub fn of_applied(object: &Value, merge_keys: &[(&str, &str)], ignored: &[&str]) -> Self {
        Walker {
            merge_keys,
            map_members: false,
        }
        .top(object, ignored)
    }
}

/// The fields of an object, as whole paths (see [`FieldTree::of_object`]).
/// Reads one fieldsV1 level into `node`, as [`FieldTree::read_fields_v1`] reads a value.
struct ReadFieldsV1<'t> {
    node: &'t mut FieldTree,
    is_root: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for ReadFieldsV1<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Anything but an object holds no field, and is passed over.
impl<'de> serde::de::Visitor<'de> for ReadFieldsV1<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a fieldsV1 value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut empty = true;
        while let Some(element) = map.next_key::<String>()? {
            empty = false;
            if element == "." {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.node.member = true;
                continue;
            }
            let mut child = FieldTree::default();
            map.next_value_seed(ReadFieldsV1 {
                node: &mut child,
                is_root: false,
            })?;
            self.node.adopt(element, child);
        }
        if empty {
            self.node.member |= !self.is_root;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }

    apimachinery::pass_over_json_scalars!();
}

pub fn field_set(object: &Value, merge_keys: &[(&str, &str)], ignored: &[&str]) -> FieldSet {
    FieldTree::of_object(object, merge_keys, ignored).paths()
}

/// The fields of an applied configuration, as whole paths (see [`FieldTree::of_applied`]).
pub fn applied_field_set(
    object: &Value,
    merge_keys: &[(&str, &str)],
    ignored: &[&str],
) -> FieldSet {
    FieldTree::of_applied(object, merge_keys, ignored).paths()
}

/// Renders a set of whole paths as a fieldsV1 object (see [`FieldTree::to_fields_v1`]).
pub fn to_fields_v1(set: &FieldSet) -> Value {
    FieldTree::from_paths(set).to_fields_v1()
}

/// Parses a fieldsV1 object into whole paths (see [`FieldTree::from_fields_v1`]).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    FieldTree::from_fields_v1(v).paths()
}

/// The merge key of the list at JSON path `path` (`spec.tags`), if it is keyed.
pub(crate) fn merge_key_of<'k>(path: &str, merge_keys: &[(&str, &'k str)]) -> Option<&'k str> {
    merge_keys
        .iter()
        .find(|(known, _)| *known == path)
        .map(|(_, key)| *key)
}

/// `path` while a keyed list may lie at or below it. Past that no path is kept (`None`):
/// nothing there is keyed, and a long key is not copied into the path of every field beneath.
pub(crate) fn tracked(path: String, merge_keys: &[(&str, &str)]) -> Option<String> {
    merge_keys
        .iter()
        .any(|(known, _)| known.starts_with(path.as_str()))
        .then_some(path)
}

/// The JSON path of field `name` of the value at `path`, while tracked (see [`tracked`]).
pub(crate) fn child_path(
    path: Option<&str>,
    name: &str,
    merge_keys: &[(&str, &str)],
) -> Option<String> {
    let path = path?;
    let joined = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    };
    tracked(joined, merge_keys)
}

/// The element naming the item of a list keyed by `key` whose key is `id`: `k:{"name":"a"}`.
fn key_element(key: &str, id: &Value) -> String {
    let mut fields = Map::new();
    fields.insert(key.to_string(), id.clone());
    format!("k:{}", Value::Object(fields))
}

/// Builds a field tree in one pass over an object, deciding on the way up whether each map
/// holds any field (so no subtree is checked for emptiness twice).
struct Walker<'k> {
    merge_keys: &'k [(&'k str, &'k str)],
    map_members: bool,
}

impl Walker<'_> {
    fn top(&self, object: &Value, ignored: &[&str]) -> FieldTree {
        let mut root = FieldTree::default();
        let Some(fields) = object.as_object() else {
            return root;
        };
        for (name, value) in fields {
            if name == "apiVersion" || name == "kind" || ignored.contains(&name.as_str()) {
                continue;
            }
            let element = format!("f:{name}");
            let path = tracked(name.clone(), self.merge_keys);
            let mut node = FieldTree::default();
            if name == "metadata" {
                let Some(meta) = value.as_object() else {
                    continue;
                };
                self.walk_object(meta, &mut node, &element, path.as_deref(), SYSTEM_METADATA);
            } else {
                self.walk(value, &mut node, &element, path.as_deref());
            }
            root.adopt(element, node);
        }
        root
    }

    /// Adds the fields of `value` (reached by `element`, at JSON path `path` while tracked) to
    /// `node`. Returns whether `value` is non-empty in Go's sense.
    fn walk(&self, value: &Value, node: &mut FieldTree, element: &str, path: Option<&str>) -> bool {
        match value {
            Value::Object(fields) => self.walk_object(fields, node, element, path, &[]),
            Value::Array(items) if !items.is_empty() => {
                self.walk_list(items, node, path);
                true
            }
            leaf => {
                let present = !is_empty_leaf(leaf);
                node.member |= present;
                present
            }
        }
    }

    fn walk_object(
        &self,
        fields: &Map<String, Value>,
        node: &mut FieldTree,
        element: &str,
        path: Option<&str>,
        skipped: &[&str],
    ) -> bool {
        let mut present = false;
        for (name, value) in fields {
            if skipped.contains(&name.as_str()) {
                continue;
            }
            let child_element = format!("f:{name}");
            let below_path = child_path(path, name, self.merge_keys);
            let mut child = FieldTree::default();
            present |= self.walk(value, &mut child, &child_element, below_path.as_deref());
            node.adopt(child_element, child);
        }
        let free_form = element.strip_prefix("f:").is_some_and(is_free_form_map);
        if present && self.map_members && free_form {
            node.member = true;
        }
        present
    }

    fn walk_list(&self, items: &[Value], node: &mut FieldTree, path: Option<&str>) {
        let key = path.and_then(|p| merge_key_of(p, self.merge_keys));
        let (Some(path), Some(key)) = (path, key) else {
            node.member = true;
            return;
        };
        let item_path = tracked(format!("{path}[]"), self.merge_keys);
        for item in items {
            let Some(id) = item.get(key) else { continue };
            let element = key_element(key, id);
            let mut child = FieldTree {
                member: true,
                children: BTreeMap::new(),
            };
            self.walk(item, &mut child, &element, item_path.as_deref());
            node.adopt(element, child);
        }
    }
}

/// A `k:` element's key when it names exactly one field. Our lists are keyed by one field, so
/// a key of none or several names no item (as structured-merge-diff would match none).
fn single_field_key(element: &str) -> Option<(String, Value)> {
    let key = element.strip_prefix("k:")?;
    match serde_json::from_str::<Value>(key).ok()? {
        Value::Object(fields) if fields.len() == 1 => fields.into_iter().next(),
        _ => None,
    }
}

/// The positions of a list's items by the value of one of their fields.
type ByValue<'v> = HashMap<&'v Value, Vec<usize>>;

/// The items of one list by the values of their fields, built as keys ask for them: one pass
/// to learn which items have which fields, then, per field asked about, one pass over the
/// items that have it. However many fields keys name, that is linear in the list.
struct ListIndex<'v> {
    items: &'v [Value],
    holders: HashMap<&'v str, Vec<usize>>,
    by_field: HashMap<&'v str, ByValue<'v>>,
}

impl<'v> ListIndex<'v> {
    fn new(items: &'v [Value]) -> Self {
        let mut holders: HashMap<&'v str, Vec<usize>> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            for name in item
                .as_object()
                .into_iter()
                .flat_map(|fields| fields.keys())
            {
                holders.entry(name.as_str()).or_default().push(i);
            }
        }
        ListIndex {
            items,
            holders,
            by_field: HashMap::new(),
        }
    }

    /// The positions, in list order, of the items whose `field` is `wanted`.
    fn positions(&mut self, field: &str, wanted: &Value) -> &[usize] {
        if !self.by_field.contains_key(field) {
            let Some((&name, holders)) = self.holders.get_key_value(field) else {
                return &[];
            };
            let mut by_value = ByValue::new();
            for &i in holders {
                if let Some(value) = self.items.get(i).and_then(|item| item.get(name)) {
                    by_value.entry(value).or_default().push(i);
                }
            }
            self.by_field.insert(name, by_value);
        }
        self.by_field
            .get(field)
            .and_then(|by_value| by_value.get(wanted))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Finds the values at field paths one element at a time: `f:name` by map lookup, `k:{...}`
/// (the first item with that key) through an index kept per list, so that finding every item
/// of a list costs one pass over it rather than one per item. Lists are told apart by their
/// address, which cannot change while the values are borrowed.
#[derive(Default)]
pub struct Lookups<'v> {
    lists: HashMap<usize, ListIndex<'v>>,
}

impl<'v> Lookups<'v> {
    /// The value `element` leads to from `value`, if any.
    pub fn step(&mut self, value: Option<&'v Value>, element: &str) -> Option<&'v Value> {
        let value = value?;
        if let Some(name) = element.strip_prefix("f:") {
            return value.get(name);
        }
        let items = value.as_array()?;
        let (field, wanted) = single_field_key(element)?;
        let index = self
            .lists
            .entry(std::ptr::from_ref(items).addr())
            .or_insert_with(|| ListIndex::new(items));
        let first = index.positions(&field, &wanted).first().copied()?;
        items.get(first)
    }
}

/// [`FieldTree::shared_where`]'s walk: both trees in step, with the values at each path.
struct SharedWalk<'l, 'v, 't, F> {
    lookups: &'l mut Lookups<'v>,
    path: Vec<&'t str>,
    keep: F,
}

impl<'v, 't, F> SharedWalk<'_, 'v, 't, F>
where
    F: FnMut(&[&str], Option<&'v Value>, Option<&'v Value>) -> bool,
{
    fn walk(
        &mut self,
        mine: &'t FieldTree,
        theirs: &'t FieldTree,
        x: Option<&'v Value>,
        y: Option<&'v Value>,
    ) -> FieldTree {
        let mut out = FieldTree::default();
        if mine.member && theirs.member {
            out.member = (self.keep)(self.path.as_slice(), x, y);
        }
        for (element, below) in &mine.children {
            let Some(their_below) = theirs.children.get(element) else {
                continue;
            };
            let x_below = self.lookups.step(x, element);
            let y_below = self.lookups.step(y, element);
            self.path.push(element);
            let kept = self.walk(below, their_below, x_below, y_below);
            self.path.pop();
            out.put(element, kept);
        }
        out
    }
}

/// The fields whose values differ between two objects (added or changed in `new`). A node
/// with children (a map or keyed list item) changes only by appearing.
pub fn changed_fields(
    old: &FieldTree,
    new: &FieldTree,
    old_obj: &Value,
    new_obj: &Value,
) -> FieldTree {
    let mut lookups = Lookups::default();
    changed_below(new, Some(old), Some(old_obj), Some(new_obj), &mut lookups)
}

fn changed_below<'v>(
    new: &FieldTree,
    old: Option<&FieldTree>,
    old_value: Option<&'v Value>,
    new_value: Option<&'v Value>,
    lookups: &mut Lookups<'v>,
) -> FieldTree {
    let known = old.is_some_and(|o| o.member);
    // Members that have children compare as present; leaves compare by value.
    let member = new.member && (!known || (new.children.is_empty() && old_value != new_value));
    let mut out = FieldTree {
        member,
        children: BTreeMap::new(),
    };
    for (element, child) in &new.children {
        let old_child = old.and_then(|o| o.children.get(element));
        let old_below = lookups.step(old_value, element);
        let new_below = lookups.step(new_value, element);
        out.put(
            element,
            changed_below(child, old_child, old_below, new_below, lookups),
        );
    }
    out
}

/// The JSON value at a field path (list items found by key, see [`Lookups`]).
pub fn value_at<'a>(obj: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut lookups = Lookups::default();
    path.iter()
        .try_fold(obj, |cur, element| lookups.step(Some(cur), element))
}

/// Removes the fields of `set` from `value`: a member goes with everything below it, a path
/// through it is followed. A keyed element removes every item with that key, and leads into
/// the first; items are found by their keys before anything in their list changes, so an item
/// whose key field is dropped with it goes whole.
pub fn remove_fields(value: &mut Value, set: &FieldTree) {
    match value {
        Value::Object(fields) => {
            for (element, below) in &set.children {
                let Some(name) = element.strip_prefix("f:") else {
                    continue;
                };
                if below.member {
                    // In element order: under preserve_order `remove` moves the last field into
                    // the hole, so the order of removals shows in the object.
                    fields.remove(name);
                } else if let Some(child) = fields.get_mut(name) {
                    remove_fields(child, below);
                }
            }
        }
        Value::Array(items) => remove_items(items, set),
        _ => {}
    }
}

fn remove_items(items: &mut Vec<Value>, set: &FieldTree) {
    let mut doomed = vec![false; items.len()];
    let mut entered: Vec<(usize, &FieldTree)> = Vec::new();
    {
        let mut index = ListIndex::new(items.as_slice());
        for (element, below) in &set.children {
            let Some((field, wanted)) = single_field_key(element) else {
                continue;
            };
            let positions = index.positions(&field, &wanted);
            if below.member {
                for &i in positions {
                    if let Some(flag) = doomed.get_mut(i) {
                        *flag = true;
                    }
                }
            } else if let Some(&first) = positions.first() {
                entered.push((first, below));
            }
        }
    }
    for (i, below) in entered {
        if doomed.get(i) == Some(&false) {
            if let Some(item) = items.get_mut(i) {
                remove_fields(item, below);
            }
        }
    }
    let mut doomed = doomed.into_iter();
    items.retain(|_| !doomed.next().unwrap_or(false));
}

/// What a write changed, as field sets (upstream's comparison of the old and new object):
/// `changed` holds the fields of the new object that are new or hold another value (Added and
/// Modified), `removed` the fields of the old object that the new one lacks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FieldChanges {
    pub changed: FieldTree,
    pub removed: FieldTree,
}

impl FieldChanges {
    /// One walk of both objects in step. A subtree equal in both holds no change and is passed
    /// over without building its field sets, so a write that changes one label of a stream of
    /// a thousand tags costs one comparison of the two objects, not two field sets of a
    /// thousand tags. Where the two sides differ in shape, the subtree's field sets are built
    /// and compared as [`changed_fields`] does.
    pub fn between(
        old: &Value,
        new: &Value,
        merge_keys: &[(&str, &str)],
        ignored: &[&str],
    ) -> Self {
        let unread = scan::Tapes::default();
        let differ = Differ {
            walker: Walker {
                merge_keys,
                map_members: true,
            },
            tapes: &unread,
        };
        let mut out = FieldChanges::default();
        for (name, old_v, new_v) in union_fields(old.as_object(), new.as_object()) {
            if name == "apiVersion" || name == "kind" || ignored.contains(&name) || old_v == new_v {
                continue;
            }
            let element = format!("f:{name}");
            let path = tracked(name.to_string(), merge_keys);
            let mut node = FieldChanges::default();
            if name == "metadata" {
                // As in `Walker::top`: a metadata that is not an object holds no field.
                let (old_m, new_m) = (
                    old_v.and_then(Value::as_object),
                    new_v.and_then(Value::as_object),
                );
                differ.maps(
                    old_m,
                    new_m,
                    &mut node,
                    &element,
                    path.as_deref(),
                    SYSTEM_METADATA,
                );
            } else {
                differ.diff(old_v, new_v, &mut node, &element, path.as_deref());
            }
            out.adopt(element, node);
        }
        out
    }

    /// [`Self::between`] from the two objects' JSON. Both are rendered by one serializer, so
    /// a top-level field, or a field of metadata, whose text is the same on both sides holds
    /// no change and is never parsed: only the fields whose text differs are read as values
    /// and compared. A label change on a stream of a thousand tags reads two label maps.
    pub fn between_json(
        old: &[u8],
        new: &[u8],
        merge_keys: &[(&str, &str)],
        ignored: &[&str],
    ) -> Result<Self, serde_json::Error> {
        let (old, new) = (utf8(old)?, utf8(new)?);
        let tapes = scan::Tapes::of(&[old, new]);
        let differ = Differ {
            walker: Walker {
                merge_keys,
                map_members: true,
            },
            tapes: &tapes,
        };
        let (old, new) = differing_fields(old, new, raw_object, &tapes)?;
        let mut out = FieldChanges::default();
        for (name, old_v, new_v) in union_raw(old.as_ref(), new.as_ref()) {
            if name == "apiVersion" || name == "kind" || ignored.contains(&name) {
                continue;
            }
            let element = format!("f:{name}");
            let path = tracked(name.to_string(), merge_keys);
            let mut node = FieldChanges::default();
            if name == "metadata" {
                // As in `between`: a metadata that is not an object holds no field.
                let (old_m, new_m) = raw_field_pairs(old_v, new_v, &tapes)?;
                for (field, old_f, new_f) in union_raw(old_m.as_ref(), new_m.as_ref()) {
                    if SYSTEM_METADATA.contains(&field) {
                        continue;
                    }
                    let child_element = format!("f:{field}");
                    let below = child_path(path.as_deref(), field, merge_keys);
                    let mut child = FieldChanges::default();
                    differ.diff_raw(old_f, new_f, &mut child, &child_element, below.as_deref())?;
                    node.adopt(child_element, child);
                }
            } else {
                differ.diff_raw(old_v, new_v, &mut node, &element, path.as_deref())?;
            }
            out.adopt(element, node);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }

    /// Adopts the changes of a keyed list's item, which is itself added or removed when only
    /// one side has it.
    fn adopt_item(&mut self, element: String, mut item: FieldChanges, was: bool, is: bool) {
        item.changed.member = !was;
        item.removed.member = !is;
        self.adopt(element, item);
    }

    fn adopt(&mut self, element: String, below: FieldChanges) {
        self.changed.adopt(element.clone(), below.changed);
        self.removed.adopt(element, below.removed);
    }
}

/// The fields of two maps by name: the old map's in its order, then those only the new has.
fn union_fields<'v>(
    old: Option<&'v Map<String, Value>>,
    new: Option<&'v Map<String, Value>>,
) -> impl Iterator<Item = (&'v str, Option<&'v Value>, Option<&'v Value>)> {
    let from_old = old
        .into_iter()
        .flatten()
        .map(move |(name, v)| (name.as_str(), Some(v), new.and_then(|n| n.get(name))));
    let only_new = new
        .into_iter()
        .flatten()
        .filter(move |(name, _)| !old.is_some_and(|o| o.contains_key(name.as_str())))
        .map(|(name, v)| (name.as_str(), None, Some(v)));
    from_old.chain(only_new)
}

/// The items of two keyed lists whose sides differ (by `same`), by key, each side's item when
/// present: the old list's keys, then those only the new list has.
fn differing_items<'m, K: Eq + std::hash::Hash, V: Copy>(
    old: &'m HashMap<K, V>,
    new: &'m HashMap<K, V>,
    same: impl Fn(V, V) -> bool + 'm,
) -> impl Iterator<Item = (&'m K, Option<V>, Option<V>)> + 'm {
    let only_new = new.keys().filter(move |id| !old.contains_key(*id));
    old.keys()
        .chain(only_new)
        .map(move |id| (id, old.get(id).copied(), new.get(id).copied()))
        .filter(move |(_, o, n)| match (o, n) {
            (Some(o), Some(n)) => !same(*o, *n),
            _ => true,
        })
}

/// The leading fields of a JSON document as unparsed text (see [`leading_fields`]); None when
/// it is valid JSON but no object.
fn raw_object<'j>(
    json: &'j str,
    tail: usize,
    tapes: &Tapes<'_>,
) -> Result<Option<Leading<'j>>, serde_json::Error> {
    match leading_fields(json, tail, tapes) {
        Ok(leading) => Ok(Some(leading)),
        Err(e) => match serde_json::from_str::<&RawValue>(json) {
            Ok(_) => Ok(None),
            Err(_) => Err(e),
        },
    }
}

/// The leading fields of a raw JSON value (see [`leading_fields`]); None when it is no object.
fn raw_fields<'j>(
    json: &'j str,
    tail: usize,
    tapes: &Tapes<'_>,
) -> Result<Option<Leading<'j>>, serde_json::Error> {
    if !json.starts_with('{') {
        return Ok(None);
    }
    leading_fields(json, tail, tapes).map(Some)
}

/// [`differing_fields`] of two raw values, each side present or not.
#[allow(clippy::type_complexity)]
fn raw_field_pairs<'j>(
    old: Option<&'j str>,
    new: Option<&'j str>,
    tapes: &Tapes<'_>,
) -> Result<(Option<RawFields<'j>>, Option<RawFields<'j>>), serde_json::Error> {
    match (old, new) {
        (Some(old), Some(new)) => differing_fields(old, new, raw_fields, tapes),
        (old, new) => {
            let all = |json: Option<&'j str>| -> Result<Option<RawFields<'j>>, serde_json::Error> {
                Ok(json
                    .map(|j| raw_fields(j, 0, tapes))
                    .transpose()?
                    .flatten()
                    .map(|l| l.fields.by_name()))
            };
            Ok((all(old)?, all(new)?))
        }
    }
}

/// The fields of two objects' texts that can differ, by name, with `read` (a reader of a
/// document's or of a value's leading fields). Both texts are rendered by one serializer,
/// which writes no name twice in an object; so where the rest of both texts is the same
/// after a field of each, every field after it is the same on both sides, and is not read.
/// A label edit of a stream passes over its metadata only, not over its tags and history.
#[allow(clippy::type_complexity)]
fn differing_fields<'j>(
    old: &'j str,
    new: &'j str,
    read: fn(&'j str, usize, &Tapes<'_>) -> Result<Option<Leading<'j>>, serde_json::Error>,
    tapes: &Tapes<'_>,
) -> Result<(Option<RawFields<'j>>, Option<RawFields<'j>>), serde_json::Error> {
    let tail = common_suffix_len(old.as_bytes(), new.as_bytes());
    let (old_lead, new_lead) = (read(old, tail, tapes)?, read(new, tail, tapes)?);
    let unread = |lead: &Option<Leading<'_>>| lead.as_ref().and_then(|l| l.unread);
    let (old_lead, new_lead) = if unread(&old_lead) == unread(&new_lead) {
        (old_lead, new_lead)
    } else {
        // One stopped where the other did not: the text left is the same, but it may not hold
        // the same fields. Two renderings of valid JSON have not been seen to come here, so
        // this only guards the reasoning above; it reads both whole.
        (read(old, 0, tapes)?, read(new, 0, tapes)?)
    };
    let by_name = |lead: Option<Leading<'j>>| lead.map(|l| l.fields.by_name());
    Ok((by_name(old_lead), by_name(new_lead)))
}

/// How many bytes `a` and `b` end with in common, compared a block at a time.
fn common_suffix_len(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let most = a.len().min(b.len());
    // The block of `BLOCK` bytes that ends `same` bytes before the end of each.
    let block_same = |same: usize| {
        a[a.len() - same - BLOCK..a.len() - same] == b[b.len() - same - BLOCK..b.len() - same]
    };
    let mut same = 0;
    while same + BLOCK <= most && block_same(same) {
        same += BLOCK;
    }
    while same < most && a[a.len() - same - 1] == b[b.len() - same - 1] {
        same += 1;
    }
    same
}

/// The fields of an object read from the start of its text.
struct Leading<'j> {
    fields: RawElements<'j>,
    /// How many bytes of the text were left unread, when reading stopped after a field that
    /// left no more than the tail it was given; None when every field was read.
    unread: Option<usize>,
}

/// An object's fields, read from the start of `json` until a field leaves at most `tail`
/// bytes of the text after its value (the object's close at least, so 0 reads all). Only the
/// syntax that splits the text is looked at ([`scan`]); the values read later are parsed.
fn leading_fields<'j>(
    json: &'j str,
    tail: usize,
    tapes: &Tapes<'_>,
) -> Result<Leading<'j>, serde_json::Error> {
    let read = scan::object_fields(json, tail, tapes).map_err(malformed)?;
    Ok(Leading {
        fields: RawElements(read.fields),
        unread: read.unread,
    })
}

fn malformed(e: impl std::fmt::Display) -> serde_json::Error {
    serde::de::Error::custom(e)
}

/// The objects' texts compared are serde_json's renderings, so UTF-8; the check is one quick
/// pass, where a text taken unchecked would make every slice of it unsound to trust.
fn utf8(json: &[u8]) -> Result<&str, serde_json::Error> {
    std::str::from_utf8(json).map_err(malformed)
}

/// The items of a raw JSON value; None when it is no list.
fn raw_items<'j>(
    raw: &'j str,
    tapes: &Tapes<'_>,
) -> Result<Option<Vec<&'j str>>, serde_json::Error> {
    if !raw.starts_with('[') {
        return Ok(None);
    }
    scan::list_items(raw, tapes).map(Some).map_err(malformed)
}

/// A raw list item's merge key, under the rule of [`items_by_key`]; None when it has no
/// usable key of its own.
fn raw_item_key(item: &str, key: &str, tapes: &Tapes<'_>) -> Option<Value> {
    let id: Value = serde_json::from_str(scan::field_text(item, key, tapes).ok()??).ok()?;
    let scalar = matches!(id, Value::String(_) | Value::Number(_) | Value::Bool(_));
    (scalar && !is_empty_leaf(&id)).then_some(id)
}

/// The merge keys of the items of an old and a new raw list.
struct ItemKeys {
    new: Vec<Value>,
    /// An old item whose text is the new list's item at the same position has that item's key
    /// (`None` here): most items of an edited list are unchanged, and reading a key passes over
    /// the whole item.
    old_own: Vec<Option<Value>>,
}

impl ItemKeys {
    /// None when an item has no usable key.
    fn read(old: &[&str], new: &[&str], key: &str, tapes: &Tapes<'_>) -> Option<Self> {
        let new_keys: Option<Vec<Value>> = new
            .iter()
            .map(|item| raw_item_key(item, key, tapes))
            .collect();
        let old_own: Option<Vec<Option<Value>>> = old
            .iter()
            .enumerate()
            .map(|(i, item)| match new.get(i) {
                Some(same) if same == item => Some(None),
                _ => raw_item_key(item, key, tapes).map(Some),
            })
            .collect();
        Some(ItemKeys {
            new: new_keys?,
            old_own: old_own?,
        })
    }

    /// Each list's items by key (the lists these keys were read from); None when two items of
    /// a list share a key.
    #[allow(clippy::type_complexity)]
    fn by_key<'k, 'j>(
        &'k self,
        old: &[&'j str],
        new: &[&'j str],
    ) -> Option<(HashMap<&'k Value, &'j str>, HashMap<&'k Value, &'j str>)> {
        let old_keys: Option<Vec<&Value>> = (self.old_own.iter().enumerate())
            .map(|(i, own)| own.as_ref().or(self.new.get(i)))
            .collect();
        let old_items = by_unique_key(old_keys?.into_iter().zip(old.iter().copied()))?;
        let new_items = by_unique_key(self.new.iter().zip(new.iter().copied()))?;
        Some((old_items, new_items))
    }
}

/// Items by their keys; None when two items share a key.
fn by_unique_key<'v, 'j>(
    pairs: impl ExactSizeIterator<Item = (&'v Value, &'j str)>,
) -> Option<HashMap<&'v Value, &'j str>> {
    let mut by_key = HashMap::with_capacity(pairs.len());
    for (id, item) in pairs {
        if by_key.insert(id, item).is_some() {
            return None;
        }
    }
    Some(by_key)
}

/// An object's fields by name, each value as text; names are borrowed from the text unless
/// they hold escapes.
type RawFields<'j> = BTreeMap<Cow<'j, str>, &'j str>;

/// The fields of two raw objects by name whose text differs, each side's text when present.
fn union_raw<'m, 'j>(
    old: Option<&'m RawFields<'j>>,
    new: Option<&'m RawFields<'j>>,
) -> impl Iterator<Item = (&'m str, Option<&'j str>, Option<&'j str>)> {
    let from_old = old.into_iter().flatten().map(move |(name, v)| {
        (
            name.as_ref(),
            Some(*v),
            new.and_then(|n| n.get(name).copied()),
        )
    });
    let only_new = new
        .into_iter()
        .flatten()
        .filter(move |(name, _)| !old.is_some_and(|o| o.contains_key(name.as_ref())))
        .map(|(name, v)| (name.as_ref(), None, Some(*v)));
    from_old.chain(only_new).filter(|(_, o, n)| o != n)
}

fn parse_raw(raw: Option<&str>) -> Result<Option<Value>, serde_json::Error> {
    raw.map(serde_json::from_str).transpose()
}

/// How a value takes part in a field set.
enum Shape<'v> {
    Map(&'v Map<String, Value>),
    Keyed(&'v [Value], &'v str),
    /// A scalar, an atomic list, or nothing; present when it is a field.
    Leaf(bool),
}

/// [`FieldChanges::between`]'s walk.
struct Differ<'k> {
    walker: Walker<'k>,
    /// The tapes of the two texts [`FieldChanges::between_json`] compares.
    tapes: &'k Tapes<'k>,
}

impl Differ<'_> {
    /// [`Differ::diff`] over raw JSON: maps (but free-form ones) and keyed lists are walked
    /// unparsed, passing over every field and item whose text is the same on both sides; the
    /// rest is parsed and left to `diff`.
    fn diff_raw(
        &self,
        old: Option<&str>,
        new: Option<&str>,
        out: &mut FieldChanges,
        element: &str,
        path: Option<&str>,
    ) -> Result<(), serde_json::Error> {
        if let (Some(old), Some(new)) = (old, new) {
            if old == new {
                return Ok(());
            }
            let free_form = element.strip_prefix("f:").is_some_and(is_free_form_map);
            if let (false, (Some(old_f), Some(new_f))) = (
                free_form,
                raw_field_pairs(Some(old), Some(new), self.tapes)?,
            ) {
                for (name, old_v, new_v) in union_raw(Some(&old_f), Some(&new_f)) {
                    let child_element = format!("f:{name}");
                    let below = child_path(path, name, self.walker.merge_keys);
                    let mut child = FieldChanges::default();
                    self.diff_raw(old_v, new_v, &mut child, &child_element, below.as_deref())?;
                    out.adopt(child_element, child);
                }
                return Ok(());
            }
            let key = path.and_then(|p| merge_key_of(p, self.walker.merge_keys));
            if let Some(key) = key {
                if self.keyed_raw(old, new, key, out, path)? {
                    return Ok(());
                }
            }
        }
        let (old, new) = (parse_raw(old)?, parse_raw(new)?);
        self.diff(old.as_ref(), new.as_ref(), out, element, path);
        Ok(())
    }

    /// [`Differ::keyed`] over raw lists; false (nothing done) where `keyed` would not match
    /// the items by key, or either side is no list or an empty one (a leaf to `diff`).
    fn keyed_raw(
        &self,
        old: &str,
        new: &str,
        key: &str,
        out: &mut FieldChanges,
        path: Option<&str>,
    ) -> Result<bool, serde_json::Error> {
        let (Some(old), Some(new)) = (raw_items(old, self.tapes)?, raw_items(new, self.tapes)?)
        else {
            return Ok(false);
        };
        if old.is_empty() || new.is_empty() {
            return Ok(false);
        }
        let Some(keys) = ItemKeys::read(&old, &new, key, self.tapes) else {
            return Ok(false);
        };
        let Some((old_items, new_items)) = keys.by_key(&old, &new) else {
            return Ok(false);
        };
        let item_path = path.and_then(|p| tracked(format!("{p}[]"), self.walker.merge_keys));
        let same_text = |a: &str, b: &str| a == b;
        for (id, old_item, new_item) in differing_items(&old_items, &new_items, same_text) {
            let element = key_element(key, id);
            let mut child = FieldChanges::default();
            self.diff_raw(
                old_item,
                new_item,
                &mut child,
                &element,
                item_path.as_deref(),
            )?;
            out.adopt_item(element, child, old_item.is_some(), new_item.is_some());
        }
        Ok(true)
    }
}

impl<'k> Differ<'k> {
    fn shape<'v>(&self, value: Option<&'v Value>, path: Option<&str>) -> Shape<'v>
    where
        'k: 'v,
    {
        match value {
            Some(Value::Object(fields)) => Shape::Map(fields),
            Some(Value::Array(items)) if !items.is_empty() => {
                match path.and_then(|p| merge_key_of(p, self.walker.merge_keys)) {
                    Some(key) => Shape::Keyed(items, key),
                    None => Shape::Leaf(true),
                }
            }
            Some(leaf) => Shape::Leaf(!is_empty_leaf(leaf)),
            None => Shape::Leaf(false),
        }
    }

    /// The changes below `element` (at JSON path `path` while tracked), from `old` to `new`.
    fn diff(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        out: &mut FieldChanges,
        element: &str,
        path: Option<&str>,
    ) {
        if old == new {
            return;
        }
        match (self.shape(old, path), self.shape(new, path)) {
            (Shape::Map(o), Shape::Map(n)) => self.maps(Some(o), Some(n), out, element, path, &[]),
            (Shape::Keyed(o, key), Shape::Keyed(n, _)) if self.keyed(o, n, key, out, path) => {}
            // Two different leaves: a present new one is changed, a vanished old one removed.
            (Shape::Leaf(was), Shape::Leaf(is)) => {
                out.changed.member = is;
                out.removed.member = was && !is;
            }
            _ => self.whole(old, new, out, element, path),
        }
    }

    fn maps(
        &self,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
        out: &mut FieldChanges,
        element: &str,
        path: Option<&str>,
        skipped: &[&str],
    ) {
        for (name, old_v, new_v) in union_fields(old, new) {
            if old_v == new_v || skipped.contains(&name) {
                continue;
            }
            let child_element = format!("f:{name}");
            let below = child_path(path, name, self.walker.merge_keys);
            let mut child = FieldChanges::default();
            self.diff(old_v, new_v, &mut child, &child_element, below.as_deref());
            out.adopt(child_element, child);
        }
        // A map of free-form keys is a member itself while it holds a field.
        if element.strip_prefix("f:").is_some_and(is_free_form_map) {
            let was = old.is_some_and(holds_value);
            let is = new.is_some_and(holds_value);
            out.changed.member |= is && !was;
            out.removed.member |= was && !is;
        }
    }

    /// Items matched by key. Lists where an item lacks the key or two items share one are left
    /// to [`Differ::whole`] (returns false), which merges such items as the field set does.
    fn keyed(
        &self,
        old: &[Value],
        new: &[Value],
        key: &str,
        out: &mut FieldChanges,
        path: Option<&str>,
    ) -> bool {
        let (Some(old_items), Some(new_items)) = (items_by_key(old, key), items_by_key(new, key))
        else {
            return false;
        };
        let item_path = path.and_then(|p| tracked(format!("{p}[]"), self.walker.merge_keys));
        for (id, old_item, new_item) in differing_items(&old_items, &new_items, |a, b| a == b) {
            let element = key_element(key, id);
            let mut child = FieldChanges::default();
            self.diff(
                old_item,
                new_item,
                &mut child,
                &element,
                item_path.as_deref(),
            );
            out.adopt_item(element, child, old_item.is_some(), new_item.is_some());
        }
        true
    }

    /// The changes below one element from the field sets of both sides, built whole.
    fn whole(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        out: &mut FieldChanges,
        element: &str,
        path: Option<&str>,
    ) {
        let tree = |value: Option<&Value>| {
            let mut node = FieldTree::default();
            if let Some(value) = value {
                self.walker.walk(value, &mut node, element, path);
            }
            node
        };
        let (old_tree, new_tree) = (tree(old), tree(new));
        let mut lookups = Lookups::default();
        out.changed = changed_below(&new_tree, Some(&old_tree), old, new, &mut lookups);
        out.removed = old_tree.select([&new_tree], |[in_new]| !in_new);
    }
}

/// Whether a map holds a field: some value below it is not empty in Go's sense.
fn holds_value(fields: &Map<String, Value>) -> bool {
    fields.values().any(|v| match v {
        Value::Object(inner) => holds_value(inner),
        other => !is_empty_leaf(other),
    })
}

/// The items of a list by their key; `None` unless every item has its own key, a scalar that
/// is a field. (Such an item always holds a field, its key, so it compares as present, as a
/// node with children does in [`changed_fields`].)
fn items_by_key<'v>(items: &'v [Value], key: &str) -> Option<HashMap<&'v Value, &'v Value>> {
    let mut by_key = HashMap::with_capacity(items.len());
    for item in items {
        let id = item.get(key)?;
        let scalar = matches!(id, Value::String(_) | Value::Number(_) | Value::Bool(_));
        if !scalar || is_empty_leaf(id) || by_key.insert(id, item).is_some() {
            return None;
        }
    }
    Some(by_key)
}

/// Whether a fieldsV1 node is a member: `{}`, or a node with children that starts with `.`.
fn is_member(node: &Map<String, Value>) -> bool {
    node.is_empty() || node.contains_key(".")
}

/// Whether a fieldsV1 object holds any field (read as [`FieldTree::from_fields_v1`] reads it).
/// Stops at the first member, which is usually the first leaf.
pub fn holds_field(fields: &Value) -> bool {
    fn below(node: &Map<String, Value>) -> bool {
        node.iter().any(|(element, v)| {
            element != "." && v.as_object().is_some_and(|n| is_member(n) || below(n))
        })
    }
    fields
        .as_object()
        .is_some_and(|root| root.contains_key(".") || below(root))
}

/// Puts a fieldsV1 node in its form for `member`: a member without children is `{}`, one with
/// children starts with `.`, a node that is no member has no `.` (and, left with no children,
/// is for the caller to remove).
fn settle(node: &mut Map<String, Value>, member: bool) {
    let has_children = node.keys().any(|k| k != ".");
    match (member, has_children) {
        (true, true) if !node.contains_key(".") => {
            node.shift_insert(0, ".".into(), Value::Object(Map::new()));
        }
        (true, true) => {}
        (true, false) => node.clear(),
        (false, _) => {
            node.shift_remove(".");
        }
    }
}

/// Adds every member of `set` to the fieldsV1 object `fields` in place. Nodes it lacks are
/// added where element order puts them, so an entry edited this way reads as one rendered by
/// [`FieldTree::to_fields_v1`].
pub fn mark_fields_v1(fields: &mut Map<String, Value>, set: &FieldTree) {
    let mut out_of_order = false;
    for (element, below) in &set.children {
        let existing = match fields.get(element) {
            Some(Value::Object(node)) => Some(is_member(node)),
            _ => None,
        };
        if existing.is_none() {
            out_of_order |= !fields.contains_key(element)
                && fields.keys().next_back().is_some_and(|last| last > element);
            // A value other than an object holds no field: it is replaced where it stands.
            fields.insert(element.clone(), Value::Object(Map::new()));
        }
        if let Some(node) = fields.get_mut(element).and_then(Value::as_object_mut) {
            mark_fields_v1(node, below);
            settle(node, existing == Some(true) || below.member);
        }
    }
    if out_of_order {
        fields.sort_keys();
    }
}

/// Takes every member of `set` out of the fieldsV1 object `fields` in place; nodes left
/// holding nothing go.
pub fn unmark_fields_v1(fields: &mut Map<String, Value>, set: &FieldTree) {
    for (element, below) in &set.children {
        let Some(node) = fields.get_mut(element).and_then(Value::as_object_mut) else {
            continue;
        };
        let member = is_member(node) && !below.member;
        unmark_fields_v1(node, below);
        settle(node, member);
        if node.is_empty() && !member {
            fields.shift_remove(element);
        }
    }
}

/// Who writes, as recorded in the managedFields entry of an `Update`.
pub struct UpdateRecord<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub time: &'a Time,
    pub merge_keys: &'a [(&'a str, &'a str)],
}

impl UpdateRecord<'_> {
    /// The half of the object the write cannot change: `/status` writes keep the spec, other
    /// writes the status.
    fn ignored(&self) -> &'static [&'static str] {
        if self.subresource == Some("status") {
            &["spec"]
        } else {
            &["status"]
        }
    }

    fn is_writers(&self, entry: &ManagedFieldsEntry) -> bool {
        entry.manager.as_deref() == Some(self.manager)
            && entry.operation.as_deref() == Some("Update")
            && entry.api_version.as_deref() == Some(self.api_version)
            && entry.subresource.as_deref() == self.subresource
    }
}

/// The managedFields after a non-apply write from `old` to `new` (their managedFields are not
/// looked at; `entries` are the new object's), as kube's field manager makes them: the writer's
/// set gains what the write changed and loses what it removed, every other manager loses both,
/// and managers left with no field go. The writer's entry takes the write's time and moves to
/// the end only when the write changed a field; a write that changed nothing leaves every
/// entry as it was, so it stays a no-op. The entries are edited in place: an update costs the
/// size of its changes, not of the sets (a stream's creator owns every tag).
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: Vec<ManagedFieldsEntry>,
    rec: &UpdateRecord<'_>,
) -> Vec<ManagedFieldsEntry> {
    let empty = Value::Object(Map::new());
    let changes = FieldChanges::between(old.unwrap_or(&empty), new, rec.merge_keys, rec.ignored());
    record_changes(changes, entries, rec)
}

/// [`record_update`] from the objects' JSON (their managedFields, like the other system fields,
/// are passed over), which is cheaper to render than values and is compared lazily
/// ([`FieldChanges::between_json`]).
pub fn record_update_json(
    old: Option<&[u8]>,
    new: &[u8],
    entries: Vec<ManagedFieldsEntry>,
    rec: &UpdateRecord<'_>,
) -> Result<Vec<ManagedFieldsEntry>, serde_json::Error> {
    let changes =
        FieldChanges::between_json(old.unwrap_or(b"{}"), new, rec.merge_keys, rec.ignored())?;
    Ok(record_changes(changes, entries, rec))
}

fn record_changes(
    changes: FieldChanges,
    entries: Vec<ManagedFieldsEntry>,
    rec: &UpdateRecord<'_>,
) -> Vec<ManagedFieldsEntry> {
    let refresh = !changes.changed.is_empty();
    let mut out = Vec::with_capacity(entries.len() + 1);
    let mut mine = None;
    for mut entry in entries {
        if refresh && rec.is_writers(&entry) {
            mine = Some(entry);
            continue;
        }
        let Some(fields) = entry.fields_v1.as_mut() else {
            continue;
        };
        // An entry the change does not reach is read once, to see that it still holds a field.
        let text = fields.raw().get();
        let tapes = Tapes::of(&[text]);
        let untouched = RawNode::of(text, &tapes).filter(|node| {
            !node.edited_by_unmark(&changes.changed) && !node.edited_by_unmark(&changes.removed)
        });
        let holds_field = match untouched {
            Some(node) => node.holds_field(),
            None => {
                let mut value = fields.to_value();
                if let Some(map) = value.as_object_mut() {
                    unmark_fields_v1(map, &changes.changed);
                    unmark_fields_v1(map, &changes.removed);
                }
                *fields = FieldsV1::from_value(&value);
                holds_field(&value)
            }
        };
        if holds_field {
            out.push(entry);
        }
    }
    if refresh {
        let fields = writers_fields(mine.and_then(|e| e.fields_v1), &changes);
        out.push(ManagedFieldsEntry {
            manager: Some(rec.manager.to_string()),
            operation: Some("Update".to_string()),
            api_version: Some(rec.api_version.to_string()),
            time: Some(rec.time.clone()),
            fields_type: Some("FieldsV1".to_string()),
            fields_v1: Some(fields),
            subresource: rec.subresource.map(str::to_string),
        });
    }
    out
}

/// The writer's fieldsV1 after its write. Kept as it is when it owns all the write changed
/// already (a label edited again); marked as text when the write only adds to it (a tag
/// appended), so only the levels the change passes through are read; parsed, edited and
/// rendered again otherwise.
fn writers_fields(fields: Option<FieldsV1>, changes: &FieldChanges) -> FieldsV1 {
    enum Edit {
        Keep,
        Marked(FieldsV1),
        Parse,
    }
    let text = fields.as_ref().map(|f| f.raw().get());
    let tapes = Tapes::of(text.as_slice());
    let edit = match text.and_then(|text| RawNode::of(text, &tapes)) {
        Some(node) if !node.edited_by_unmark(&changes.removed) => {
            match node.marked(&changes.changed) {
                Some(marked) => {
                    FieldsV1::from_json(render_elements(&marked)).map_or(Edit::Parse, Edit::Marked)
                }
                None => Edit::Keep,
            }
        }
        _ => Edit::Parse,
    };
    match (edit, fields) {
        (Edit::Keep, Some(fields)) => fields,
        (Edit::Marked(marked), _) => marked,
        (_, fields) => {
            let mut map = match fields.map(|f| f.to_value()) {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            unmark_fields_v1(&mut map, &changes.removed);
            mark_fields_v1(&mut map, &changes.changed);
            FieldsV1::from_value(&Value::Object(map))
        }
    }
}

/// A fieldsV1 element's value while a level is being marked: the text read, or text made.
enum ElementText<'j> {
    Read(&'j str),
    Made(String),
}

impl ElementText<'_> {
    fn get(&self) -> &str {
        match self {
            ElementText::Read(raw) => raw,
            ElementText::Made(text) => text,
        }
    }
}

type MarkedElements<'j> = Vec<(Cow<'j, str>, ElementText<'j>)>;

/// A level rendered as [`FieldTree::to_fields_v1`]'s JSON would be: keys escaped by
/// serde_json, values as they are (compact already).
fn render_elements(elements: &MarkedElements<'_>) -> String {
    let size: usize = elements
        .iter()
        .map(|(e, t)| e.len() + t.get().len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + 2);
    out.push(b'{');
    for (i, (element, text)) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Escaped straight into the level's text; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, element.as_ref());
        out.push(b':');
        out.extend_from_slice(text.get().as_bytes());
    }
    out.push(b'}');
    // Built from strings and serde_json's escaping, so valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`settle`] on a level being marked.
fn settle_elements(elements: &mut MarkedElements<'_>, member: bool) {
    let has_children = elements.iter().any(|(e, _)| e != ".");
    let has_dot = elements.iter().any(|(e, _)| e == ".");
    match (member, has_children) {
        (true, true) if !has_dot => {
            elements.insert(0, (Cow::Borrowed("."), ElementText::Made("{}".to_string())));
        }
        (true, true) => {}
        (true, false) => elements.clear(),
        (false, _) => elements.retain(|(e, _)| e != "."),
    }
}

/// One level of a fieldsV1 object read from its text: each element with its value's text,
/// nothing below parsed. Most writes leave most entries as they are, and finding that out
/// this way costs a scan of the text, where parsing it costs a map and a string per node.
struct RawNode<'t, 'j> {
    elements: Vec<(Cow<'j, str>, &'j str)>,
    /// The tape of the fieldsV1 text, so that a level is scanned only once.
    tapes: &'t Tapes<'j>,
}

impl<'t, 'j> RawNode<'t, 'j> {
    /// The node of `raw`; None when it is not an object.
    fn of(raw: &'j str, tapes: &'t Tapes<'j>) -> Option<RawNode<'t, 'j>> {
        let leading = raw_fields(raw, 0, tapes).ok()??;
        Some(RawNode {
            elements: leading.fields.0,
            tapes,
        })
    }

    fn get(&self, element: &str) -> Option<&'j str> {
        RawElements::raw(&self.elements, element)
    }

    /// [`is_member`].
    fn is_member(&self) -> bool {
        self.elements.is_empty() || self.get(".").is_some()
    }

    /// `{".":{}}`: a member written the long way, which an edit passing by rewrites as `{}`.
    fn is_unsettled(&self) -> bool {
        !self.elements.is_empty() && self.elements.iter().all(|(e, _)| e == ".")
    }

    /// [`holds_field`].
    fn holds_field(&self) -> bool {
        fn below(node: &RawNode<'_, '_>) -> bool {
            node.elements.iter().any(|(element, v)| {
                element != "."
                    && RawNode::of(v, node.tapes).is_some_and(|n| n.is_member() || below(&n))
            })
        }
        self.get(".").is_some() || below(self)
    }

    /// Whether [`unmark_fields_v1`] of `set` would change this node: a member of `set` is a
    /// member here, or a node it passes is unsettled.
    fn edited_by_unmark(&self, set: &FieldTree) -> bool {
        set.children.iter().any(|(element, below)| {
            let Some(node) = self.get(element).and_then(|v| RawNode::of(v, self.tapes)) else {
                return false;
            };
            (below.member && node.is_member())
                || node.is_unsettled()
                || node.edited_by_unmark(below)
        })
    }

    /// [`mark_fields_v1`] of `set` on this level, as text: the elements it passes through are
    /// read and marked in turn, the others copied as they are; None when the mark would change
    /// nothing here (a member of `set` is a member already, and no node it passes is
    /// unsettled), so the level's text stays as it is.
    fn marked(&self, set: &FieldTree) -> Option<MarkedElements<'j>> {
        let mut elements = self.read_elements();
        let mut changed = false;
        let mut out_of_order = false;
        for (element, below) in &set.children {
            let at = elements.iter().position(|(e, _)| e == element);
            let node = match at.map(|i| &elements[i].1) {
                Some(ElementText::Read(raw)) => RawNode::of(raw, self.tapes),
                _ => None,
            };
            let existing = node.as_ref().map(RawNode::is_member);
            let settled = node
                .as_ref()
                .is_some_and(|n| (n.is_member() || !below.member) && !n.is_unsettled());
            let node = node.unwrap_or(RawNode {
                elements: Vec::new(),
                tapes: self.tapes,
            });
            let mut below_elements = match node.marked(below) {
                Some(marked) => marked,
                // Nothing to mark below, and this node is as the mark leaves it: its text stays.
                None if settled => continue,
                None => node.read_elements(),
            };
            changed = true;
            if existing.is_none() {
                out_of_order |= at.is_none()
                    && elements
                        .last()
                        .is_some_and(|(last, _)| last.as_ref() > element.as_str());
            }
            settle_elements(&mut below_elements, existing == Some(true) || below.member);
            let text = ElementText::Made(render_elements(&below_elements));
            match at {
                Some(i) => elements[i].1 = text,
                None => elements.push((Cow::Owned(element.clone()), text)),
            }
        }
        if out_of_order {
            elements.sort_by(|a, b| a.0.cmp(&b.0));
        }
        changed.then_some(elements)
    }

    /// The elements as read, to be marked.
    fn read_elements(&self) -> MarkedElements<'j> {
        self.elements
            .iter()
            .map(|(e, v)| (e.clone(), ElementText::Read(v)))
            .collect()
    }
}

/// The fields of one JSON object, each with its value's text, nothing below parsed: the
/// elements of one fieldsV1 level, or the fields of a list item read for its key.
struct RawElements<'j>(Vec<(Cow<'j, str>, &'j str)>);

impl<'j> RawElements<'j> {
    /// The text of field `name` in `fields` (the last, if it repeats, as a parse into a map
    /// keeps).
    fn raw(fields: &[(Cow<'j, str>, &'j str)], name: &str) -> Option<&'j str> {
        fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The fields by name (the last of a repeated one, as a parse into a map keeps).
    fn by_name(self) -> RawFields<'j> {
        self.0.into_iter().collect()
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
            time: &AT,
            merge_keys: KEYS,
        }
    }

    const AT: Time = Time(jiff::Timestamp::UNIX_EPOCH);

    /// [`record_update`] on objects that carry their managedFields, as the tests write them.
    fn record(old: Option<&Value>, new: &mut Value, rec: &UpdateRecord<'_>) {
        let entries = new["metadata"]
            .as_object_mut()
            .and_then(|meta| meta.remove("managedFields"))
            .map(|v| serde_json::from_value(v).expect("entries"))
            .unwrap_or_default();
        let entries = record_update(old, new, entries, rec);
        if !entries.is_empty() {
            new["metadata"]["managedFields"] = serde_json::to_value(entries).expect("entries");
        }
    }

    fn path(elements: &[&str]) -> FieldPath {
        elements.iter().map(|e| e.to_string()).collect()
    }

    /// [`FieldChanges::between_json`] of two texts, held to [`FieldChanges::between`] of their
    /// values.
    fn changes_from_json(old: &str, new: &str) -> FieldChanges {
        let from_json = FieldChanges::between_json(old.as_bytes(), new.as_bytes(), KEYS, &[])
            .expect("valid JSON");
        let value = |text: &str| serde_json::from_str::<Value>(text).expect("JSON");
        let from_values = FieldChanges::between(&value(old), &value(new), KEYS, &[]);
        assert_eq!(from_json, from_values, "{old} -> {new}");
        from_json
    }

    #[test]
    fn the_same_end_of_two_texts_is_not_read() {
        // What follows the labels is the same on both sides, and no JSON: reading it would fail.
        let old = r#"{"metadata":{"labels":{"a":"1"}},"spec":{"tags":[nonsense]}}"#;
        let new = r#"{"metadata":{"labels":{"a":"2"}},"spec":{"tags":[nonsense]}}"#;
        let changes = FieldChanges::between_json(old.as_bytes(), new.as_bytes(), KEYS, &[])
            .expect("the end is not read");
        assert_eq!(
            changes.changed.paths().into_iter().collect::<Vec<_>>(),
            vec![path(&["f:metadata", "f:labels", "f:a"])]
        );
        assert!(changes.removed.is_empty());
        // A field that differs is read whole; what follows it, not.
        let old = r#"{"spec":{"lookupPolicy":{"local":false},"tags":[]},"status":nonsense}"#;
        let new = r#"{"spec":{"lookupPolicy":{"local":true},"tags":[]},"status":nonsense}"#;
        let changes = FieldChanges::between_json(old.as_bytes(), new.as_bytes(), KEYS, &[])
            .expect("the end is not read");
        assert_eq!(
            changes.changed.paths().into_iter().collect::<Vec<_>>(),
            vec![path(&["f:spec", "f:lookupPolicy", "f:local"])]
        );
    }

    #[test]
    fn a_field_renamed_just_before_the_same_end_is_read() {
        // The texts differ in the renamed field's first letter only, right after `a`'s value.
        let changes = changes_from_json(r#"{"a":1,"b":2}"#, r#"{"a":1,"c":2}"#);
        assert!(!changes.removed.is_empty());
        changes_from_json(
            r#"{"s":{"a":1,"b":{"x":2}}}"#,
            r#"{"s":{"a":1,"c":{"x":2}}}"#,
        );
        // Fields added, removed, or moved ahead of an end both sides share.
        changes_from_json(r#"{"a":1,"c":3}"#, r#"{"a":1,"b":3,"c":3}"#);
        changes_from_json(r#"{"a":1,"b":2}"#, r#"{"b":2}"#);
        changes_from_json(r#"{}"#, r#"{"a":{}}"#);
        changes_from_json(r#"{"a":"x","b":1}"#, r#"{"a":"x\",","b":1}"#);
        changes_from_json(r#"{"b":1,"a":1}"#, r#"{"a":1,"b":1}"#);
    }

    #[test]
    fn common_suffixes() {
        assert_eq!(common_suffix_len(b"", b""), 0);
        assert_eq!(common_suffix_len(b"abc", b"abc"), 3);
        assert_eq!(common_suffix_len(b"xbc", b"abc"), 2);
        assert_eq!(common_suffix_len(b"bc", b"abc"), 2);
        let long: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
        let mut other = long.clone();
        for at in [0, 1, 63, 64, 65, 500, 935, 936, 999] {
            other[at] ^= 0xff;
            assert_eq!(common_suffix_len(&long, &other), 999 - at, "at {at}");
            other[at] ^= 0xff;
        }
    }

    #[test]
    fn a_name_only_create_records_nothing() {
        let mut obj = json!({"kind":"X","metadata":{"name":"a","namespace":"n"},"spec":{"lookupPolicy":{"local":false}},"status":{"dockerImageRepository":""}});
        record(None, &mut obj, &rec("kubectl"));
        assert!(obj["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn create_with_fields_records_an_update_entry() {
        let mut obj = json!({"metadata":{"name":"a","labels":{"app":"x"}},"spec":{"tags":[{"name":"t","from":{"kind":"DockerImage","name":"i"}}]}});
        record(None, &mut obj, &rec("kubectl-create"));
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
        record(None, &mut first, &rec("one"));
        let mut second = first.clone();
        second["metadata"]["labels"]["app"] = json!("z");
        record(Some(&first), &mut second, &rec("two"));
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

    /// Pairs where walking both objects in step takes each of its turns: equal subtrees,
    /// leaves that appear, change and vanish, items matched by key, and lists it leaves to the
    /// whole field sets (items without a usable key, duplicate keys, items with no field).
    #[test]
    fn comparing_in_step_finds_what_whole_field_sets_find() {
        let cases = [
            (json!({}), json!({"metadata": {"labels": {"a": "1"}}})),
            (
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"a": ""}}}),
            ),
            (
                json!({"metadata": {"labels": {"a": "1"}, "uid": "u"}}),
                json!({"metadata": {"labels": {"a": "2"}, "uid": "v"}}),
            ),
            (
                json!({"spec": {"tags": [{"name": "a", "x": 1}, {"name": "b"}]}}),
                json!({"spec": {"tags": [{"name": "b", "x": 2}, {"name": "c"}]}}),
            ),
            (
                json!({"spec": {"tags": [{"name": "", "x": 0}]}}),
                json!({"spec": {"tags": [{"name": "", "x": false}]}}),
            ),
            (
                json!({"spec": {"tags": [{"name": "a", "x": 0}, {"x": 1}]}}),
                json!({"spec": {"tags": [{"name": "a", "x": 2}, {"x": 3}]}}),
            ),
            (
                json!({"spec": {"tags": [{"name": "a", "x": 1}, {"name": "a", "y": 1}]}}),
                json!({"spec": {"tags": [{"name": "a", "x": 2}, {"name": "a"}]}}),
            ),
            (
                json!({"spec": {"tags": [{"name": {"n": 1}, "x": 1}]}}),
                json!({"spec": {"tags": [{"name": {"n": 1}, "x": 2}]}}),
            ),
            (
                json!({"spec": {"tags": []}}),
                json!({"spec": {"tags": [{"name": "a"}]}}),
            ),
            (
                json!({"spec": {"tags": "atomic"}}),
                json!({"spec": {"tags": [{"name": "a"}]}}),
            ),
            (
                json!({"spec": {"a": [1]}}),
                json!({"spec": {"a": {"b": 1}}}),
            ),
            (
                json!({"spec": 1, "status": {"x": 1}}),
                json!({"spec": {"a": 1}, "status": {"x": 2}}),
            ),
        ];
        for (old, new) in cases {
            let old_set = FieldTree::of_object(&old, KEYS, &["status"]);
            let new_set = FieldTree::of_object(&new, KEYS, &["status"]);
            let expected = FieldChanges {
                changed: changed_fields(&old_set, &new_set, &old, &new),
                removed: old_set.select([&new_set], |[in_new]| !in_new),
            };
            let found = FieldChanges::between(&old, &new, KEYS, &["status"]);
            assert_eq!(found, expected, "{old} -> {new}");
            assert!(FieldChanges::between(&new, &new, KEYS, &["status"]).is_empty());
        }
    }

    #[test]
    fn an_update_edits_the_writers_entry_and_takes_its_changes_from_the_others() {
        let mut first = json!({"metadata": {"labels": {"a": "1", "b": "1"}},
            "spec": {"tags": [{"name": "t1", "from": {"kind": "DockerImage", "name": "x"}}]}});
        record(None, &mut first, &rec("creator"));
        let mut second = first.clone();
        second["metadata"]["labels"]["a"] = json!("2");
        second["spec"]["tags"][0]["from"]["name"] = json!("y");
        record(Some(&first), &mut second, &rec("editor"));
        let mut third = second.clone();
        third["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("b");
        third["spec"]["tags"]
            .as_array_mut()
            .expect("tags")
            .push(json!({"name": "t0"}));
        record(Some(&second), &mut third, &rec("editor"));
        let mf = &third["metadata"]["managedFields"];
        assert_eq!(mf[0]["manager"], "creator");
        assert_eq!(
            mf[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {}},
                "f:spec": {"f:tags": {"k:{\"name\":\"t1\"}": {".": {}, "f:from": {"f:kind": {}}, "f:name": {}}}}})
        );
        assert_eq!(mf[1]["manager"], "editor");
        let editor = &mf[1]["fieldsV1"];
        assert_eq!(
            *editor,
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:tags": {
                    "k:{\"name\":\"t0\"}": {".": {}, "f:name": {}},
                    "k:{\"name\":\"t1\"}": {"f:from": {"f:name": {}}}}}})
        );
        // The new item was put in element order, before the one the entry held already.
        let items: Vec<&String> = editor["f:spec"]["f:tags"]
            .as_object()
            .expect("items")
            .keys()
            .collect();
        assert_eq!(items, ["k:{\"name\":\"t0\"}", "k:{\"name\":\"t1\"}"]);
        assert_eq!(mf.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata":{"labels":{"a":"1"}},"spec":{"tags":[{"name":"t","reference":true}]}});
        let set = field_set(&obj, KEYS, &["status"]);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        let tree = FieldTree::of_object(&obj, KEYS, &["status"]);
        assert_eq!(FieldTree::from_paths(&set), tree);
        assert_eq!(FieldTree::from_fields_v1(&tree.to_fields_v1()), tree);
        assert_eq!(tree.len(), set.len());
    }

    #[test]
    fn fields_v1_puts_the_dot_first_and_elements_in_order() {
        let set: FieldSet = [
            path(&["f:spec", "f:b"]),
            path(&["f:spec"]),
            path(&["f:spec", "f:a"]),
            path(&["f:metadata", "f:x"]),
        ]
        .into_iter()
        .collect();
        let v1 = to_fields_v1(&set);
        let top: Vec<&String> = v1.as_object().expect("an object").keys().collect();
        assert_eq!(top, ["f:metadata", "f:spec"]);
        let spec: Vec<&String> = v1["f:spec"].as_object().expect("spec").keys().collect();
        assert_eq!(spec, [".", "f:a", "f:b"]);
        // Values other than objects hold no field; `.` at the top marks the empty path.
        let read = from_fields_v1(&json!({".": {}, "f:a": 1, "f:b": {"f:c": "x"}, "f:d": {}}));
        let expected: FieldSet = [path(&[]), path(&["f:d"])].into_iter().collect();
        assert_eq!(read, expected);
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

    fn tags(count: usize, image: impl Fn(usize) -> &'static str) -> Value {
        let items: Vec<Value> = (0..count)
            .map(|i| json!({"name": format!("t{i}"), "from": {"kind": "DockerImage", "name": image(i)}}))
            .collect();
        Value::Array(items)
    }

    #[test]
    fn long_keyed_lists_are_recorded_item_by_item() {
        let mut first = json!({"metadata": {"name": "a"}, "spec": {"tags": tags(5000, |_| "x")}});
        record(None, &mut first, &rec("one"));
        let owned = &first["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:tags"];
        assert_eq!(owned.as_object().expect("keyed items").len(), 5000);
        let mut second = first.clone();
        second["spec"]["tags"][4321]["from"]["name"] = json!("y");
        record(Some(&first), &mut second, &rec("two"));
        let mf = second["metadata"]["managedFields"]
            .as_array()
            .expect("entries");
        assert_eq!(mf.len(), 2);
        assert_eq!(
            mf[1]["fieldsV1"],
            json!({"f:spec": {"f:tags": {"k:{\"name\":\"t4321\"}": {"f:from": {"f:name": {}}}}}})
        );
        let one = &mf[0]["fieldsV1"]["f:spec"]["f:tags"];
        assert_eq!(one.as_object().expect("keyed items").len(), 5000);
        assert_eq!(
            one["k:{\"name\":\"t4321\"}"],
            json!({".": {}, "f:from": {"f:kind": {}}, "f:name": {}})
        );
        let untouched = &one["k:{\"name\":\"t4320\"}"];
        let fields: Vec<&String> = untouched.as_object().expect("an item").keys().collect();
        assert_eq!(fields, [".", "f:from", "f:name"]);
        assert_eq!(untouched["f:from"], json!({"f:kind": {}, "f:name": {}}));
    }

    #[test]
    fn changes_are_found_by_key_not_by_position() {
        let old = json!({"spec": {"tags": [
            {"name": "a", "x": 1}, {"name": "b", "x": 1}, {"name": "c", "x": 1}]}});
        let new = json!({"spec": {"tags": [
            {"name": "c", "x": 1}, {"name": "b", "x": 2}, {"name": "a", "x": 1}, {"name": "d"}]}});
        let changed = changed_fields(
            &FieldTree::of_object(&old, KEYS, &[]),
            &FieldTree::of_object(&new, KEYS, &[]),
            &old,
            &new,
        );
        let expected: FieldSet = [
            path(&["f:spec", "f:tags", "k:{\"name\":\"b\"}", "f:x"]),
            path(&["f:spec", "f:tags", "k:{\"name\":\"d\"}"]),
            path(&["f:spec", "f:tags", "k:{\"name\":\"d\"}", "f:name"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(changed.paths(), expected);
    }

    #[test]
    fn a_long_key_is_held_once_however_many_fields_lie_below_it() {
        let key = "k".repeat(100_000);
        let leaves: Map<String, Value> =
            (0..10_000).map(|i| (format!("l{i}"), json!("v"))).collect();
        let obj = json!({"spec": {key.clone(): {"deeper": leaves}}});
        let tree = FieldTree::of_object(&obj, KEYS, &[]);
        assert_eq!(tree.len(), 10_000);
        let below = tree
            .children
            .get("f:spec")
            .and_then(|spec| spec.children.get(&format!("f:{key}")))
            .and_then(|long| long.children.get("f:deeper"))
            .expect("the long key's node");
        assert_eq!(below.children.len(), 10_000);
        let v1 = tree.to_fields_v1().to_string();
        assert!(v1.len() < 2 * obj.to_string().len(), "{}", v1.len());
    }

    #[test]
    fn empty_values_are_no_fields() {
        let obj = json!({"spec": {"a": {"b": {"c": ""}}, "d": [], "e": 0, "f": false,
            "g": {"h": null}, "i": [0], "tags": [{"name": ""}, {"other": 1}]},
            "metadata": {"name": "n", "labels": {}, "annotations": {"x": "y"}}});
        let expected: FieldSet = [
            path(&["f:metadata", "f:annotations"]),
            path(&["f:metadata", "f:annotations", "f:x"]),
            path(&["f:spec", "f:i"]),
            path(&["f:spec", "f:tags", "k:{\"name\":\"\"}"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(field_set(&obj, KEYS, &[]), expected);
        // An applied configuration owns a label map's keys, not the map.
        let applied = applied_field_set(&obj, KEYS, &[]);
        assert!(!applied.contains(&path(&["f:metadata", "f:annotations"])));
        assert!(applied.contains(&path(&["f:metadata", "f:annotations", "f:x"])));
    }

    #[test]
    fn value_at_names_items_by_one_field() {
        fn at(obj: &Value, elements: &[&str]) -> Option<Value> {
            value_at(obj, &path(elements)).cloned()
        }
        fn tag(obj: &Value, key: &str) -> Option<Value> {
            at(obj, &["f:spec", "f:tags", key])
        }
        let obj = json!({"spec": {"tags": [
            {"name": "a", "x": 1}, {"name": "b"}, {"name": "a", "x": 2}]}});
        assert_eq!(
            at(&obj, &["f:spec", "f:tags", "k:{\"name\":\"a\"}", "f:x"]),
            Some(json!(1))
        );
        assert_eq!(tag(&obj, "k:{\"name\":\"b\"}"), Some(json!({"name": "b"})));
        assert_eq!(tag(&obj, "k:{\"name\":\"z\"}"), None);
        // Keys of no field or several fields name no item.
        assert_eq!(tag(&obj, "k:{}"), None);
        assert_eq!(tag(&obj, "k:{\"name\":\"a\",\"x\":2}"), None);
        assert_eq!(at(&obj, &["f:spec", "k:{\"name\":\"a\"}"]), None);
        assert_eq!(at(&obj, &["f:spec", "v:1"]), None);
        assert_eq!(at(&obj, &[]), Some(obj.clone()));
    }

    #[test]
    fn removing_fields_takes_whole_items_and_keeps_the_rest_in_order() {
        let mut obj = json!({"spec": {"tags": [
            {"name": "a", "x": 1, "y": 2}, {"name": "b", "x": 1}, {"name": "a", "x": 3},
            {"name": "c", "x": 1}]}, "keep": 1, "drop": 2});
        let set: FieldSet = [
            path(&["f:drop"]),
            // An item goes whole, even though its key field is dropped with it.
            path(&["f:spec", "f:tags", "k:{\"name\":\"b\"}"]),
            path(&["f:spec", "f:tags", "k:{\"name\":\"b\"}", "f:name"]),
            // A path through a key leads into the first item with it.
            path(&["f:spec", "f:tags", "k:{\"name\":\"a\"}", "f:x"]),
            // Keys of no field or several fields name no item.
            path(&["f:spec", "f:tags", "k:{}"]),
            path(&["f:spec", "f:tags", "k:{\"name\":\"c\",\"x\":1}"]),
        ]
        .into_iter()
        .collect();
        remove_fields(&mut obj, &FieldTree::from_paths(&set));
        assert_eq!(
            obj,
            json!({"spec": {"tags": [{"name": "a", "y": 2}, {"name": "a", "x": 3},
                {"name": "c", "x": 1}]}, "keep": 1})
        );
    }

    #[test]
    fn removing_many_items_of_a_long_list() {
        let mut obj = json!({"spec": {"tags": tags(5000, |_| "x")}});
        let mut set = FieldTree::default();
        for i in (1..5000).step_by(2) {
            set.insert(&path(&[
                "f:spec",
                "f:tags",
                &format!("k:{{\"name\":\"t{i}\"}}"),
            ]));
        }
        remove_fields(&mut obj, &set);
        let names: Vec<&str> = obj["spec"]["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        let expected: Vec<String> = (0..5000).step_by(2).map(|i| format!("t{i}")).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn selections_and_unions() {
        fn set(paths: &[&[&str]]) -> FieldTree {
            let mut tree = FieldTree::default();
            for p in paths {
                tree.insert(&path(p));
            }
            tree
        }
        let a = set(&[&["f:x"], &["f:x", "f:y"], &["f:z"]]);
        let b = set(&[&["f:x", "f:y"], &["f:w"]]);
        assert_eq!(a.select([&b], |[in_b]| !in_b), set(&[&["f:x"], &["f:z"]]));
        assert_eq!(a.select([&b], |[in_b]| in_b), set(&[&["f:x", "f:y"]]));
        assert!(a.select([&b, &a], |[in_b, in_a]| !in_b && !in_a).is_empty());
        let mut both = a.clone();
        both.absorb(b);
        assert_eq!(both.len(), 4);
        assert!(both.contains(&path(&["f:w"])) && both.contains(&path(&["f:x"])));
        assert!(!both.contains(&path(&["f:x", "f:q"])));
        // Sharing a path means sharing a member, not just a way through.
        assert!(a.shares_any(&set(&[&["f:x"]])));
        assert!(a.shares_any(&both));
        assert!(!a.shares_any(&set(&[&["f:w"]])));
        assert!(!set(&[&["f:x", "f:y"]]).shares_any(&set(&[&["f:x"]])));
        assert!(!set(&[&["f:x"]]).shares_any(&set(&[&["f:x", "f:q"]])));
        assert!(!a.shares_any(&FieldTree::default()));
        for other in [set(&[&["f:z"]]), set(&[&["f:w"]]), set(&[&["f:x", "f:y"]])] {
            assert_eq!(
                a.shares_any(&other),
                !a.select([&other], |[in_other]| in_other).is_empty()
            );
        }
    }

    /// The entries as [`record_changes`] made them before entries were kept as text: every
    /// entry parsed, edited and rendered again.
    fn record_changes_by_values(
        changes: &FieldChanges,
        entries: Vec<ManagedFieldsEntry>,
        rec: &UpdateRecord<'_>,
    ) -> Vec<ManagedFieldsEntry> {
        let refresh = !changes.changed.is_empty();
        let mut out = Vec::new();
        let mut mine = None;
        for mut entry in entries {
            if refresh && rec.is_writers(&entry) {
                mine = Some(entry);
                continue;
            }
            let Some(fields) = entry.fields_v1.as_ref().map(FieldsV1::to_value) else {
                continue;
            };
            let mut fields = fields;
            if let Some(map) = fields.as_object_mut() {
                unmark_fields_v1(map, &changes.changed);
                unmark_fields_v1(map, &changes.removed);
            }
            if holds_field(&fields) {
                entry.fields_v1 = Some(FieldsV1::from_value(&fields));
                out.push(entry);
            }
        }
        if refresh {
            let mut map = match mine.and_then(|e| e.fields_v1).map(|f| f.to_value()) {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            unmark_fields_v1(&mut map, &changes.removed);
            mark_fields_v1(&mut map, &changes.changed);
            out.push(ManagedFieldsEntry {
                manager: Some(rec.manager.to_string()),
                operation: Some("Update".to_string()),
                api_version: Some(rec.api_version.to_string()),
                time: Some(rec.time.clone()),
                fields_type: Some("FieldsV1".to_string()),
                fields_v1: Some(FieldsV1::from_value(&Value::Object(map))),
                subresource: None,
            });
        }
        out
    }

    mod raw_entries {
        use proptest::prelude::*;

        use super::*;

        const ELEMENTS: &[&str] = &["f:a", "f:b", "f:c", "k:{\"name\":\"x\"}"];

        fn fields_v1() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                6 => Just(json!({})),
                1 => Just(json!({".": {}})),
                1 => Just(json!(1)),
                1 => Just(Value::Null),
            ];
            leaf.prop_recursive(4, 40, 4, |inner| {
                let element = prop::sample::select(
                    ELEMENTS
                        .iter()
                        .chain(["."].iter())
                        .copied()
                        .collect::<Vec<_>>(),
                );
                prop::collection::vec((element, inner), 0..4).prop_map(|pairs| {
                    let map: Map<String, Value> =
                        pairs.into_iter().map(|(e, v)| (e.to_string(), v)).collect();
                    Value::Object(map)
                })
            })
        }

        fn field_tree() -> impl Strategy<Value = FieldTree> {
            let path = prop::collection::vec(prop::sample::select(ELEMENTS.to_vec()), 1..4);
            prop::collection::btree_set(path, 0..5).prop_map(|paths| {
                let set: FieldSet = paths
                    .into_iter()
                    .map(|p| p.into_iter().map(str::to_string).collect())
                    .collect();
                FieldTree::from_paths(&set)
            })
        }

        fn entry(manager: &str, fields: Option<Value>) -> ManagedFieldsEntry {
            ManagedFieldsEntry {
                manager: Some(manager.to_string()),
                operation: Some("Update".to_string()),
                api_version: Some("g/v1".to_string()),
                time: Some(AT.clone()),
                fields_type: Some("FieldsV1".to_string()),
                fields_v1: fields.map(|f| FieldsV1::from_value(&f)),
                subresource: None,
            }
        }

        proptest! {
            /// Entries kept as text and edited only where a change reaches them come out as
            /// entries parsed, edited and rendered every time.
            #[test]
            fn untouched_entries_are_kept_as_the_edits_would_leave_them(
                entries in prop::collection::vec(
                    (prop::sample::select(vec!["me", "other", "third"]), prop::option::of(fields_v1())),
                    0..4,
                ),
                changed in field_tree(),
                removed in field_tree(),
            ) {
                let entries: Vec<ManagedFieldsEntry> =
                    entries.into_iter().map(|(m, f)| entry(m, f)).collect();
                let changes = FieldChanges { changed, removed };
                let expected = record_changes_by_values(&changes, entries.clone(), &rec("me"));
                let got = record_changes(changes, entries, &rec("me"));
                prop_assert_eq!(got, expected);
            }
        }
    }
}
