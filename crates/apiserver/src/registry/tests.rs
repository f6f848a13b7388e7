//! The registry's hooks and retry rules, in process (upstream's `genericregistrytest` in
//! spirit): a small test resource over the embedded store, behind a store that injects
//! compare-and-swap conflicts and name collisions.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::{ApiError, OPTIMISTIC_LOCK_MSG};
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::meta::ObjectMeta;
use apimachinery::object::ApiObject;
use apimachinery::options::{Query, WriteOptions};
use apimachinery::table::ColumnDefinition;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::embedded::{EmbeddedStore, Options};
use storage::testing::FaultyStore;

use super::*;
use crate::delete::DeleteOptions;
use crate::resource::{Reply, Request, Resource, Verb, Warnings};
use crate::strategy::StrategyContext;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Widget {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: WidgetSpec,
    #[serde(default)]
    status: WidgetStatus,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct WidgetSpec {
    size: i64,
    /// Derived by the strategy, like an image stream tag's generation: 1 on create, one more
    /// whenever the size changes.
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct WidgetStatus {
    ready: bool,
}

impl ApiObject for Widget {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn set_type_meta(&mut self, kind: &str, api_version: &str) {
        self.kind = kind.to_string();
        self.api_version = api_version.to_string();
    }
}

/// A plain resource: status reset on create, `/status` changes only status, size ≥ 0; blind
/// updates only when `unconditional`.
struct Widgets {
    info: ResourceInfo,
    unconditional: bool,
}

fn size_errors(w: &Widget) -> Vec<FieldError> {
    if w.spec.size < 0 {
        return vec![FieldError::invalid(
            &FieldPath::new("spec").child("size"),
            w.spec.size,
            "must be greater than or equal to 0",
        )];
    }
    Vec::new()
}

#[async_trait]
impl Strategy for Widgets {
    type Object = Widget;

    fn info(&self) -> &ResourceInfo {
        &self.info
    }
    fn validate_name(&self, name: &str, prefix: bool) -> Vec<String> {
        // A generateName prefix may end in '-': kube checks it as if a character followed.
        let whole = if prefix {
            format!("{name}a")
        } else {
            name.to_string()
        };
        apimachinery::validation::dns1123_subdomain_errors(&whole)
    }
    fn prepare_for_create(&self, obj: &mut Widget) {
        obj.status = WidgetStatus::default();
        obj.spec.generation = 1;
    }
    async fn validate_create(
        &self,
        _: &StrategyContext<'_, Widget>,
        obj: &mut Widget,
    ) -> Vec<FieldError> {
        size_errors(obj)
    }
    fn prepare_for_update(&self, new: &mut Widget, old: &Widget) {
        new.status = old.status.clone();
        let resized = new.spec.size != old.spec.size;
        new.spec.generation = old.spec.generation + i64::from(resized);
    }
    async fn validate_update(
        &self,
        _: &StrategyContext<'_, Widget>,
        new: &mut Widget,
        _: &Widget,
    ) -> Vec<FieldError> {
        size_errors(new)
    }
    fn allow_unconditional_update(&self) -> bool {
        self.unconditional
    }
    fn has_status(&self) -> bool {
        true
    }
    fn prepare_for_status_update(&self, new: &mut Widget, old: &Widget) {
        new.spec = old.spec.clone();
    }
    fn table_columns(&self) -> Vec<ColumnDefinition> {
        Vec::new()
    }
    fn table_cells(&self, _: &Widget) -> Vec<Value> {
        Vec::new()
    }
}

struct Harness {
    registry: Registry<Widgets>,
    store: Arc<FaultyStore>,
    user: crate::resource::UserInfo,
    opts: WriteOptions,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn ctx(&self) -> WriteContext<'_> {
        WriteContext {
            namespace: Some("ns"),
            user: &self.user,
            user_agent: Some("registry-test"),
            options: &self.opts,
            managed_fields: ManagedFields::RecordUpdate,
            expected_revision: None,
        }
    }

    async fn create(&self, w: Widget) -> Result<Widget, ApiError> {
        self.registry.create(&self.ctx(), w).await
    }

    async fn update<F>(
        &self,
        name: &str,
        strategy: UpdateStrategy,
        produce: F,
    ) -> Result<Widget, ApiError>
    where
        F: FnMut(&Widget) -> Result<Widget, ApiError> + Send,
    {
        self.registry
            .update(&self.ctx(), name, strategy, produce)
            .await
    }

    /// A request through the registry's HTTP face; the served object and its code.
    async fn send(&self, req: Request) -> Result<(u16, Value), ApiError> {
        match self.registry.handle(req).await? {
            Reply::Object { code, json } => {
                Ok((code, serde_json::from_slice(&json).expect("served JSON")))
            }
            _ => panic!("a write answers with its object"),
        }
    }

    /// Widget `a` as the store holds it now.
    async fn stored(&self) -> Widget {
        let (current, _) = self
            .registry
            .get_current(Some("ns"), "a")
            .await
            .expect("read")
            .expect("widget a exists");
        current
    }
}

fn harness() -> Harness {
    harness_with(false)
}

/// A harness whose strategy allows updates without a resourceVersion.
fn harness_allowing_unconditional_updates() -> Harness {
    harness_with(true)
}

fn harness_with(unconditional: bool) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let inner = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
    let store = Arc::new(FaultyStore::new(Arc::new(inner)));
    let info = ResourceInfo {
        group: "example.com",
        version: "v1",
        resource: "widgets",
        singular: "widget",
        kind: "Widget",
        namespaced: true,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &[],
        categories: &[],
        stored: true,
        subresources: vec![],
    };
    let widgets = Widgets {
        info,
        unconditional,
    };
    let registry = Registry::new(widgets, store.clone(), Default::default());
    Harness {
        registry,
        store,
        user: crate::resource::UserInfo {
            name: "tester".into(),
            ..Default::default()
        },
        opts: WriteOptions::for_delete(false),
        _dir: dir,
    }
}

fn widget(name: &str, size: i64) -> Widget {
    let mut w = Widget::default();
    w.metadata.name = Some(name.to_string());
    w.spec.size = size;
    w
}

/// A change made to the current object, keeping its resourceVersion (what PATCH does).
fn resize(size: i64) -> impl FnMut(&Widget) -> Result<Widget, ApiError> + Send {
    move |current| {
        let mut next = current.clone();
        next.spec.size = size;
        Ok(next)
    }
}

#[tokio::test]
async fn create_sets_system_fields_and_runs_the_strategy() {
    let h = harness();
    let mut w = widget("a", 1);
    w.status.ready = true;
    w.metadata.generation = Some(7);
    let created = h.create(w).await.expect("create");
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ns"));
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert!(meta.resource_version.as_deref().is_some_and(|rv| rv != "0"));
    assert_eq!(meta.generation, None, "generation is the server's");
    assert!(!created.status.ready, "prepare_for_create reset status");
    let managers = meta.managed_fields.as_ref().expect("managedFields");
    assert_eq!(managers[0].manager.as_deref(), Some("registry-test"));
    assert_eq!(created.kind, "Widget");
}

/// The fields of the only managedFields entry of `w`, as fieldsV1 text.
fn only_entry_fields(w: &Widget) -> String {
    let entries = w.metadata.managed_fields.as_deref().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0]
        .fields_v1
        .as_ref()
        .map(|f| f.json().to_string())
        .unwrap_or_default()
}

/// kube's field manager runs before the strategy prepares the object, on create and on
/// update: what the strategy derives (here `spec.generation`) belongs to no manager.
#[tokio::test]
async fn fields_the_strategy_derives_belong_to_no_manager() {
    let h = harness();
    let created = h.create(widget("a", 1)).await.expect("create");
    assert_eq!(created.spec.generation, 1, "prepare_for_create ran");
    assert_eq!(only_entry_fields(&created), r#"{"f:spec":{"f:size":{}}}"#);

    let resized = h
        .update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect("update");
    assert_eq!(resized.spec.generation, 2, "prepare_for_update ran");
    assert_eq!(only_entry_fields(&resized), r#"{"f:spec":{"f:size":{}}}"#);

    // A writer that sends the derived field back changed does own it, as in kube; the
    // strategy then puts the old value back.
    let claimed = h
        .update("a", UpdateStrategy::Main, |current: &Widget| {
            let mut next = current.clone();
            next.spec.generation = 9;
            Ok(next)
        })
        .await
        .expect("update");
    assert_eq!(claimed.spec.generation, 2);
    assert_eq!(
        only_entry_fields(&claimed),
        r#"{"f:spec":{"f:generation":{},"f:size":{}}}"#
    );
}

#[tokio::test]
async fn create_reports_metadata_then_strategy_errors_and_writes_nothing() {
    let h = harness();
    let err = h.create(widget("Bad_Name", -1)).await.expect_err("invalid");
    let ApiError::Invalid { .. } = &err else {
        panic!("want 422, got {err:?}");
    };
    let message = err.to_string();
    let name_at = message.find("metadata.name").expect("name error");
    let size_at = message.find("spec.size").expect("size error");
    assert!(name_at < size_at, "{message}");
    assert_eq!(h.store.current_revision().await.expect("rev"), 0);
}

#[tokio::test]
async fn generate_name_retries_collisions_then_gives_up_after_eight() {
    let h = harness();
    let mut w = widget("", 1);
    w.metadata.generate_name = Some("gen-".into());
    h.store.collide(7);
    let created = h.create(w.clone()).await.expect("eighth name is free");
    assert!(created
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("gen-")));
    h.store.collide(8);
    let err = h.create(w).await.expect_err("eight collisions");
    assert!(
        matches!(err, ApiError::AlreadyExistsGenerated { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_lost_compare_and_swap_reapplies_the_change_to_the_fresh_object() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    h.store.conflict(3);
    let mut calls = 0;
    let updated = h
        .update("a", UpdateStrategy::Main, |current| {
            calls += 1;
            resize(5)(current)
        })
        .await
        .expect("retried");
    assert_eq!(calls, 4, "one run per attempt");
    assert_eq!(updated.spec.size, 5);
}

#[tokio::test]
async fn a_pinned_resource_version_is_a_conflict_once_the_object_moved_on() {
    let h = harness();
    let created = h.create(widget("a", 1)).await.expect("create");
    let stale = created.metadata.resource_version.clone();
    h.update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect("first update");
    let err = h
        .update("a", UpdateStrategy::Main, |current| {
            let mut next = current.clone();
            next.spec.size = 3;
            next.metadata.resource_version = stale.clone();
            Ok(next)
        })
        .await
        .expect_err("stale");
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
}

#[tokio::test]
async fn retries_that_run_out_end_in_server_timeout() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    h.store.conflict(usize::MAX);
    let err = h
        .update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect_err("always conflicting");
    assert!(matches!(err, ApiError::ServerTimeout { .. }), "{err:?}");
    assert_eq!(err.code(), 500);
}

#[tokio::test]
async fn an_update_without_resource_version_is_refused_when_the_strategy_requires_one() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    let err = h
        .update("a", UpdateStrategy::Main, |_| Ok(widget("a", 2)))
        .await
        .expect_err("unconditional");
    assert!(
        err.to_string().contains("must be specified for an update"),
        "{err}"
    );
}

#[tokio::test]
async fn status_and_main_strategies_change_only_their_half() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    let both = |current: &Widget| {
        let mut next = current.clone();
        next.spec.size = 9;
        next.status.ready = true;
        Ok(next)
    };
    let via_status = h
        .update("a", UpdateStrategy::Status, both)
        .await
        .expect("status");
    assert_eq!((via_status.spec.size, via_status.status.ready), (1, true));
    let via_main = h
        .update("a", UpdateStrategy::Main, |current| {
            let mut next = current.clone();
            next.spec.size = 9;
            next.status.ready = false;
            Ok(next)
        })
        .await
        .expect("main");
    assert_eq!((via_main.spec.size, via_main.status.ready), (9, true));
    let via_internal = h
        .update("a", UpdateStrategy::Internal, |current| {
            let mut next = current.clone();
            next.spec.size = 4;
            Ok(next)
        })
        .await
        .expect("internal");
    assert_eq!(via_internal.spec.size, 4);
}

#[tokio::test]
async fn removing_the_last_finalizer_of_a_deleted_object_deletes_it() {
    let h = harness();
    let mut w = widget("a", 1);
    w.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    h.create(w).await.expect("create");
    let pending = h
        .registry
        .delete(Some("ns"), "a", &DeleteOptions::default())
        .await
        .expect("delete");
    let Deleted::Pending(marked) = pending else {
        panic!("finalizers hold the object");
    };
    assert!(marked.metadata.deletion_timestamp.is_some());
    h.update("a", UpdateStrategy::Main, |current| {
        let mut next = current.clone();
        next.metadata.finalizers = None;
        Ok(next)
    })
    .await
    .expect("finalizer removed");
    let gone = h.registry.get_current(Some("ns"), "a").await.expect("read");
    assert!(gone.is_none(), "the object is deleted");
}

#[tokio::test]
async fn dry_runs_write_nothing() {
    let mut h = harness();
    h.opts = WriteOptions::for_delete(true);
    let served = h.create(widget("a", 1)).await.expect("dry create");
    assert_eq!(served.metadata.name.as_deref(), Some("a"));
    assert_eq!(h.store.current_revision().await.expect("rev"), 0);
}

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// A PATCH of widget `a` in `ns`, as the HTTP layer hands it over.
fn patch_request(content_type: &str, body: &str, query: &str) -> Request {
    let (_, shutdown) = tokio::sync::watch::channel(false);
    Request {
        verb: Verb::Patch,
        namespace: Some("ns".into()),
        name: Some("a".into()),
        subresource: None,
        query: Query::parse(Some(query)),
        body: Bytes::from(body.to_string()),
        content_type: Some(content_type.to_string()),
        user: crate::resource::UserInfo {
            name: "tester".into(),
            ..Default::default()
        },
        user_agent: Some("registry-test".into()),
        warnings: Warnings::default(),
        shutdown,
    }
}

/// A patch without a resourceVersion that adds annotation `key`: merge, strategic, JSON or
/// apply (as field manager `key`) by `kind`.
fn annotating_patch(kind: usize, key: &str) -> Request {
    let merge = json!({"metadata": {"annotations": {key: "x"}}}).to_string();
    match kind % 4 {
        0 => patch_request(MERGE, &merge, ""),
        1 => patch_request(STRATEGIC, &merge, ""),
        2 => {
            let ops = json!([{"op": "add", "path": format!("/metadata/annotations/{key}"),
                "value": "x"}]);
            patch_request(JSON_PATCH, &ops.to_string(), "")
        }
        _ => {
            let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "a", "annotations": {key: "x"}}});
            patch_request(APPLY, &applied.to_string(), &format!("fieldManager={key}"))
        }
    }
}

/// Widget `name` with annotation `seed` (a JSON patch `add` needs the map to exist).
fn annotated(name: &str) -> Widget {
    let mut w = widget(name, 1);
    w.metadata.annotations = Some([("seed".to_string(), "1".to_string())].into());
    w
}

#[tokio::test]
async fn a_written_object_is_kept_for_the_next_update_of_it() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    assert_eq!(h.registry.recent().len(), 0, "typed writes keep nothing");
    let (code, served) = h
        .send(patch_request(MERGE, r#"{"spec":{"size":2}}"#, ""))
        .await
        .expect("patch");
    assert_eq!((code, served["spec"]["size"].as_i64()), (200, Some(2)));
    assert_eq!(h.registry.recent().len(), 1, "the patch's result is kept");
    // Debug builds check the kept object against the stored one decoded.
    let updated = h
        .update("a", UpdateStrategy::Main, resize(3))
        .await
        .expect("update");
    assert_eq!(updated.spec.size, 3);
    assert_eq!(h.stored().await.spec.size, 3);
    assert_eq!(
        h.registry.recent().len(),
        0,
        "the update started from the kept object"
    );
}

/// Widget `a`, created at size 1, then kept by the registry after a PATCH to size 2.
async fn kept_at_size_2(h: &Harness) {
    h.create(widget("a", 1)).await.expect("create");
    h.send(patch_request(MERGE, r#"{"spec":{"size":2}}"#, ""))
        .await
        .expect("patch");
    assert_eq!(h.registry.recent().len(), 1, "the patch's result is kept");
}

/// Widget `a` kept at size 2 ([`kept_at_size_2`]), then rewritten in the store behind the
/// registry's back, as another apiserver would, to `moved_to`; the revision the other write
/// made.
async fn kept_then_moved_on(h: &Harness, moved_to: i64) -> Revision {
    kept_at_size_2(h).await;
    let key = h.registry.key(Some("ns"), "a");
    let kv = h.store.get(&key).await.expect("read").kv.expect("a");
    let mut stored: Value = serde_json::from_slice(&kv.value).expect("stored JSON");
    stored["spec"]["size"] = json!(moved_to);
    let value = Bytes::from(serde_json::to_vec(&stored).expect("JSON"));
    h.store
        .update(&key, value, kv.mod_revision)
        .await
        .expect("the other writer's write")
}

/// A change that adds one to the current size, noting each size it was made from.
fn grow(seen: &mut Vec<i64>) -> impl FnMut(&Widget) -> Result<Widget, ApiError> + Send + '_ {
    move |current| {
        seen.push(current.spec.size);
        resize(current.spec.size + 1)(current)
    }
}

/// Widget `a` updated by [`grow`]: the result, the sizes it was made from, and how many
/// times the update read the store.
async fn grown(h: &Harness) -> (Widget, Vec<i64>, usize) {
    let reads = h.store.gets();
    let mut seen = Vec::new();
    let updated = h
        .update("a", UpdateStrategy::Main, grow(&mut seen))
        .await
        .expect("update");
    (updated, seen, h.store.gets() - reads)
}

#[tokio::test]
async fn an_update_starts_from_the_kept_object_without_reading_the_store() {
    let h = harness();
    kept_at_size_2(&h).await;
    let (updated, seen, reads) = grown(&h).await;
    assert_eq!((updated.spec.size, seen), (3, vec![2]));
    assert_eq!(reads, 0, "its compare-and-swap was the check");
    assert_eq!(h.stored().await.spec.size, 3);
}

#[tokio::test]
async fn a_kept_object_another_writer_moved_on_from_loses_its_swap_and_the_update_is_redone() {
    let h = harness();
    kept_then_moved_on(&h, 5).await;
    let (updated, seen, reads) = grown(&h).await;
    assert_eq!(
        seen,
        vec![2, 5],
        "made again from what the lost swap returned"
    );
    assert_eq!(reads, 0, "the lost swap said what the store holds");
    assert_eq!(updated.spec.size, 6);
    assert_eq!(h.stored().await.spec.size, 6);
}

#[tokio::test]
async fn what_a_stale_kept_object_answers_short_of_a_write_is_checked_against_the_store() {
    // An error the stale object caused.
    let h = harness();
    kept_then_moved_on(&h, 5).await;
    let mut seen = Vec::new();
    let updated = h
        .update("a", UpdateStrategy::Main, |current| {
            seen.push(current.spec.size);
            match current.spec.size {
                2 => Err(ApiError::BadRequest("made from the stale object".into())),
                n => resize(n + 1)(current),
            }
        })
        .await
        .expect("redone from the store's object");
    assert_eq!((updated.spec.size, seen), (6, vec![2, 5]));

    // A version named by the produced object: the other writer's, which the kept one is not.
    let h = harness();
    let moved = kept_then_moved_on(&h, 5).await;
    let updated = h
        .update("a", UpdateStrategy::Main, |current| {
            let mut next = current.clone();
            next.metadata.resource_version = Some(moved.to_string());
            next.spec.size = 9;
            Ok(next)
        })
        .await
        .expect("held to the store's version, not the kept one's");
    assert_eq!(updated.spec.size, 9);

    // A no-op on the stale object.
    let h = harness();
    kept_then_moved_on(&h, 5).await;
    let unchanged = h
        .update("a", UpdateStrategy::Main, |current| Ok(current.clone()))
        .await
        .expect("no-op");
    assert_eq!(
        unchanged.spec.size, 5,
        "the store's object, not the kept one"
    );
    assert_eq!(
        unchanged.metadata.resource_version.as_deref(),
        Some(
            h.stored()
                .await
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or("?")
        )
    );
}

#[tokio::test]
async fn what_a_current_kept_object_answers_stands_after_one_read() {
    let h = harness();
    kept_at_size_2(&h).await;
    let reads = h.store.gets();
    let mut calls = 0;
    let err = h
        .update("a", UpdateStrategy::Main, |current| {
            calls += 1;
            resize(-1)(current)
        })
        .await
        .expect_err("invalid");
    assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    assert_eq!(
        calls, 1,
        "not made again: the store holds the kept revision"
    );
    assert_eq!(h.store.gets(), reads + 1);
    assert_eq!(h.stored().await.spec.size, 2, "nothing written");
}

#[tokio::test]
async fn a_kept_object_deleted_behind_the_registrys_back_answers_not_found() {
    let h = harness();
    kept_at_size_2(&h).await;
    let key = h.registry.key(Some("ns"), "a");
    h.store.delete(&key, None).await.expect("delete");
    let err = h
        .update("a", UpdateStrategy::Main, resize(3))
        .await
        .expect_err("gone");
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    assert!(h.store.get(&key).await.expect("read").kv.is_none());
}

#[tokio::test]
async fn a_put_held_to_an_older_revision_leaves_the_kept_object_to_the_next_writer() {
    let h = harness();
    let created = h.create(widget("a", 1)).await.expect("create");
    h.send(patch_request(MERGE, r#"{"spec":{"size":2}}"#, ""))
        .await
        .expect("patch");
    let mut stale = widget("a", 7);
    stale.metadata.resource_version = created.metadata.resource_version;
    let mut put = patch_request(
        "application/json",
        &serde_json::to_string(&stale).expect("JSON"),
        "",
    );
    put.verb = Verb::Update;
    let err = h.send(put).await.expect_err("stale");
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
    assert_eq!(h.registry.recent().len(), 1, "left kept");
    let (_, seen, reads) = grown(&h).await;
    assert_eq!(seen, vec![2]);
    assert_eq!(reads, 0, "the next writer started from it");
}

#[tokio::test]
async fn a_delete_forgets_the_kept_object() {
    let h = harness();
    kept_at_size_2(&h).await;
    h.registry
        .delete(Some("ns"), "a", &DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(h.registry.recent().len(), 0);
}

#[tokio::test]
async fn every_patch_type_is_reapplied_to_the_fresh_object_after_lost_races() {
    let h = harness();
    h.create(annotated("a")).await.expect("create");
    for kind in 0..4 {
        h.store.race(3);
        let (code, served) = h
            .send(annotating_patch(kind, &format!("p{kind}")))
            .await
            .unwrap_or_else(|e| panic!("patch type {kind}: {e}"));
        assert_eq!(code, 200, "{served}");
        assert_eq!(
            h.store.conflicts_left(),
            0,
            "patch type {kind} met every race"
        );
        let annotations = &served["metadata"]["annotations"];
        assert_eq!(annotations["seed"], "1", "{served}");
        for earlier in 0..=kind {
            assert_eq!(annotations[format!("p{earlier}")], "x", "{served}");
        }
    }
}

#[tokio::test]
async fn twenty_concurrent_patches_without_a_resource_version_all_land() {
    let h = harness();
    h.create(annotated("a")).await.expect("create");
    let patches = (0..20).map(|i| h.send(annotating_patch(i, &format!("p{i}"))));
    for (i, result) in futures::future::join_all(patches)
        .await
        .into_iter()
        .enumerate()
    {
        let (code, served) = result.unwrap_or_else(|e| panic!("patch {i}: {e}"));
        assert_eq!(code, 200, "patch {i}: {served}");
    }
    let annotations = h.stored().await.metadata.annotations.expect("annotations");
    for i in 0..20 {
        assert_eq!(
            annotations.get(&format!("p{i}")).map(String::as_str),
            Some("x"),
            "p{i} in {annotations:?}"
        );
    }
}

#[tokio::test]
async fn a_patch_that_sets_the_resource_version_is_held_to_it() {
    let h = harness();
    let created = h.create(annotated("a")).await.expect("create");
    let stale = created.metadata.resource_version.expect("resourceVersion");
    h.update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect("the widget moves on");
    let merge = json!({"metadata": {"resourceVersion": stale, "annotations": {"p": "x"}}});
    let err = h
        .send(patch_request(MERGE, &merge.to_string(), ""))
        .await
        .expect_err("a stale resourceVersion");
    assert_eq!(err.code(), 409);
    assert_eq!(
        err.to_string(),
        format!(
            "Operation cannot be fulfilled on widgets.example.com \"a\": {OPTIMISTIC_LOCK_MSG}"
        )
    );

    // The current version, then a lost race: the precondition is checked against the fresh
    // read, so the patch is not re-applied.
    let current = h.stored().await.metadata.resource_version;
    let ops = json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": current},
        {"op": "add", "path": "/metadata/annotations/p", "value": "x"},
    ]);
    h.store.race(1);
    let err = h
        .send(patch_request(JSON_PATCH, &ops.to_string(), ""))
        .await
        .expect_err("the pinned version moved on");
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
    let annotations = h.stored().await.metadata.annotations.expect("annotations");
    assert!(!annotations.contains_key("p"), "{annotations:?}");
}

#[tokio::test]
async fn apply_conflicts_are_answered_not_retried_and_a_forced_apply_outlasts_races() {
    let h = harness();
    let applied = |size: i64| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
            "spec": {"size": size}})
        .to_string()
    };
    let (code, _) = h
        .send(patch_request(APPLY, &applied(1), "fieldManager=one"))
        .await
        .expect("apply creates");
    assert_eq!(code, 201);
    h.store.race(2);
    let err = h
        .send(patch_request(APPLY, &applied(2), "fieldManager=two"))
        .await
        .expect_err("spec.size is one's");
    assert!(matches!(err, ApiError::ApplyConflict { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"one\": .spec.size"
    );
    assert_eq!(h.store.conflicts_left(), 2, "nothing was written");
    let (code, served) = h
        .send(patch_request(
            APPLY,
            &applied(2),
            "fieldManager=two&force=true",
        ))
        .await
        .expect("force takes the field");
    assert_eq!(code, 200, "{served}");
    assert_eq!(served["spec"]["size"], 2);
    assert_eq!(h.store.conflicts_left(), 0);
}

#[tokio::test]
async fn an_apply_whose_create_loses_to_another_creator_starts_over() {
    let h = harness();
    h.store.collide(1);
    let (code, served) = h
        .send(annotating_patch(3, "m"))
        .await
        .expect("the apply starts over");
    assert_eq!(code, 201, "{served}");
    assert_eq!(served["metadata"]["annotations"]["m"], "x");
}

#[tokio::test]
async fn concurrent_applies_creating_one_object_all_land() {
    let h = harness();
    let applies = (0..8).map(|i| h.send(annotating_patch(3, &format!("m{i}"))));
    let mut codes = Vec::new();
    for (i, result) in futures::future::join_all(applies)
        .await
        .into_iter()
        .enumerate()
    {
        let (code, served) = result.unwrap_or_else(|e| panic!("apply {i}: {e}"));
        assert!(code == 200 || code == 201, "apply {i}: {served}");
        codes.push(code);
    }
    assert_eq!(
        codes.iter().filter(|c| **c == 201).count(),
        1,
        "one apply created the widget, the others updated it: {codes:?}"
    );
    let annotations = h.stored().await.metadata.annotations.expect("annotations");
    assert_eq!(annotations.len(), 8, "{annotations:?}");
}

#[tokio::test]
async fn a_dry_run_patch_answers_the_result_at_the_current_version_and_writes_nothing() {
    let h = harness();
    let created = h.create(annotated("a")).await.expect("create");
    let before = h.store.current_revision().await.expect("revision");
    let merge = json!({"metadata": {"annotations": {"p": "x"}}}).to_string();
    let (code, served) = h
        .send(patch_request(MERGE, &merge, "dryRun=All"))
        .await
        .expect("dry run");
    assert_eq!(code, 200);
    assert_eq!(served["metadata"]["annotations"]["p"], "x");
    assert_eq!(
        served["metadata"]["resourceVersion"].as_str(),
        created.metadata.resource_version.as_deref()
    );
    assert_eq!(h.store.current_revision().await.expect("revision"), before);
}

#[tokio::test]
async fn an_unconditional_update_is_reapplied_over_the_latest_version() {
    let h = harness_allowing_unconditional_updates();
    h.create(widget("a", 1)).await.expect("create");
    h.store.race(3);
    let mut calls = 0;
    let updated = h
        .update("a", UpdateStrategy::Main, |_| {
            calls += 1;
            Ok(widget("a", 7))
        })
        .await
        .expect("written over the latest version");
    assert_eq!(calls, 4, "one run per attempt");
    assert_eq!(updated.spec.size, 7);
    assert_eq!(h.store.conflicts_left(), 0);
}

#[tokio::test]
async fn writers_outlast_all_but_the_retry_cap() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create");
    h.store.conflict(MAX_UPDATE_ATTEMPTS - 1);
    h.update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect("the last attempt wins");
    h.store.conflict(MAX_UPDATE_ATTEMPTS);
    let mut calls = 0;
    let err = h
        .update("a", UpdateStrategy::Main, |current| {
            calls += 1;
            resize(3)(current)
        })
        .await
        .expect_err("every attempt lost");
    assert!(matches!(err, ApiError::ServerTimeout { .. }), "{err:?}");
    assert_eq!(calls, MAX_UPDATE_ATTEMPTS);
}

#[tokio::test]
async fn changed_since_names_what_changed_after_a_revision_with_its_current_state() {
    let h = harness();
    h.create(widget("a", 1)).await.expect("create a");
    h.create(widget("b", 1)).await.expect("create b");
    h.create(widget("c", 1)).await.expect("create c");
    let before = caught_up(&h).await;
    h.update("a", UpdateStrategy::Main, resize(2))
        .await
        .expect("update a");
    h.update("a", UpdateStrategy::Main, resize(3))
        .await
        .expect("update a again");
    h.registry
        .delete(Some("ns"), "b", &DeleteOptions::default())
        .await
        .expect("delete b");
    let after = caught_up(&h).await;
    let (changed, revision) = h
        .registry
        .changed_since(before)
        .expect("read")
        .expect("the window reaches back");
    assert_eq!(revision, after);
    let summary: Vec<(Option<&str>, &str, Option<i64>)> = changed
        .iter()
        .map(|c| {
            (
                c.namespace.as_deref(),
                c.name.as_str(),
                c.object.as_ref().map(|w| w.spec.size),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(Some("ns"), "a", Some(3)), (Some("ns"), "b", None)],
        "each changed object once, as it is now; c is untouched"
    );
    let (nothing, _) = h
        .registry
        .changed_since(after)
        .expect("read")
        .expect("at the head");
    assert!(nothing.is_empty());
}

/// The cache's revision once it has caught up with the store (a consistent read waits for
/// that).
async fn caught_up(h: &Harness) -> storage::Revision {
    h.registry
        .get(Some("ns"), "c", ReadRevision::Consistent)
        .await
        .expect("read");
    h.registry.cache().revision()
}
