//! The registry's hooks and retry rules, in process (upstream's `genericregistrytest` in
//! spirit): a small test resource over the embedded store, behind a store that injects
//! compare-and-swap conflicts and name collisions.

use std::sync::Arc;

use apimachinery::discovery::ResourceInfo;
use apimachinery::errors::ApiError;
use apimachinery::field::{FieldError, FieldPath};
use apimachinery::object::ApiObject;
use apimachinery::options::WriteOptions;
use apimachinery::table::ColumnDefinition;
use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::embedded::{EmbeddedStore, Options};
use storage::testing::FaultyStore;

use super::*;
use crate::delete::DeleteOptions;
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

/// A plain resource: status reset on create, `/status` changes only status, size ≥ 0.
struct Widgets {
    info: ResourceInfo,
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
        false
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
}

fn harness() -> Harness {
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
    let registry = Registry::new(Widgets { info }, store.clone(), Default::default());
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
