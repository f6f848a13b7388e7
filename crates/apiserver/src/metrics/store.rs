//! Storage metrics: `etcd_request_duration_seconds` from every store call
//! ([`InstrumentedStore`]), and the object counts of `apiserver_storage_objects`
//! ([`StoredObjects`]).

use std::sync::Arc;
use std::time::Instant;

use apimachinery::discovery::ResourceInfo;

use super::Metrics;
use crate::registry::Registry;
use crate::strategy::Strategy;

/// What `apiserver_storage_objects` reads on each scrape.
pub trait StoredObjects: Send + Sync {
    fn resource_info(&self) -> &ResourceInfo;

    /// How many objects the resource holds; `None` while that cannot be told (the watch cache
    /// is still loading), and the last count stands.
    fn stored_objects(&self) -> Option<usize>;
}

/// The watch cache holds every stored object of the resource, on either backend, once it has
/// loaded; counting it costs no store call.
impl<S: Strategy> StoredObjects for Registry<S> {
    fn resource_info(&self) -> &ResourceInfo {
        self.info()
    }

    fn stored_objects(&self) -> Option<usize> {
        self.is_ready().then(|| self.cache().len())
    }
}

/// A [`Store`](storage::Store) that times each operation into `etcd_request_duration_seconds`
/// (kube's operation names: get, list, create, update, delete).
pub struct InstrumentedStore {
    inner: Arc<dyn storage::Store>,
    metrics: Metrics,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn storage::Store>, metrics: Metrics) -> Self {
        InstrumentedStore { inner, metrics }
    }

    fn observe(&self, operation: &'static str, key: &str, started: Instant) {
        self.metrics
            .observe_storage(operation, key, started.elapsed());
    }
}

#[async_trait::async_trait]
impl storage::Store for InstrumentedStore {
    async fn get(&self, key: &str) -> storage::Result<storage::GetResponse> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.observe("get", key, t);
        r
    }

    async fn range(&self, req: storage::RangeRequest) -> storage::Result<storage::RangeResponse> {
        let t = Instant::now();
        let prefix = req.prefix.clone();
        let r = self.inner.range(req).await;
        self.observe("list", &prefix, t);
        r
    }

    async fn create(&self, key: &str, value: bytes::Bytes) -> storage::Result<storage::Revision> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.observe("create", key, t);
        r
    }

    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: storage::Revision,
    ) -> storage::Result<storage::Revision> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected).await;
        self.observe("update", key, t);
        r
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<storage::Revision>,
    ) -> storage::Result<(storage::Revision, storage::KeyValue)> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected).await;
        self.observe("delete", key, t);
        r
    }

    async fn watch(
        &self,
        prefix: &str,
        after: storage::Revision,
    ) -> storage::Result<storage::WatchStream> {
        self.inner.watch(prefix, after).await
    }

    async fn current_revision(&self) -> storage::Result<storage::Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: storage::Revision) -> storage::Result<()> {
        self.inner.compact(revision).await
    }

    fn reliable_progress(&self) -> bool {
        self.inner.reliable_progress()
    }

    fn local_revision(&self) -> bool {
        self.inner.local_revision()
    }
}
