//! `/metrics` in Prometheus text format (prometheus-client): requests by verb, resource and
//! code, request latency, and open watches, named like kube-apiserver's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

/// Cheap to clone; all clones share the same metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    watches: Family<ResourceLabels, Gauge<i64, std::sync::atomic::AtomicI64>>,
    storage_latency: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let storage_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let watches = Family::<ResourceLabels, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register(
            "apiserver_request",
            "Requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Request latency by verb and resource (watches: until the response starts)",
            latency.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Open watch streams by resource",
            watches.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Storage operation latency by operation and resource",
            storage_latency.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            watches,
            storage_latency,
        }
    }
}

/// Keeps a watch counted while alive.
pub struct WatchGuard {
    gauge: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                verb: verb.to_string(),
                resource: resource.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_storage(&self, operation: &str, resource: &str, elapsed: Duration) {
        self.storage_latency
            .get_or_create(&LatencyLabels {
                verb: operation.to_string(),
                resource: resource.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn watch_started(&self, resource: &str) -> WatchGuard {
        let gauge = self
            .watches
            .get_or_create(&ResourceLabels {
                resource: resource.to_string(),
            })
            .clone();
        gauge.inc();
        WatchGuard { gauge }
    }

    /// Adds metrics of another layer (the server's controllers, its importer) to `/metrics`.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(name, help, metric);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A [`Store`](storage::Store) that records how long each operation takes
/// (`etcd_request_duration_seconds`, by operation and resource).
pub struct InstrumentedStore {
    inner: Arc<dyn storage::Store>,
    metrics: Metrics,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn storage::Store>, metrics: Metrics) -> Self {
        InstrumentedStore { inner, metrics }
    }

    fn observe(&self, op: &str, key: &str, started: std::time::Instant) {
        // Keys are /<resource>/...: the resource is the first segment.
        let resource = key.trim_start_matches('/').split('/').next().unwrap_or("");
        self.metrics
            .observe_storage(op, resource, started.elapsed());
    }
}

#[async_trait::async_trait]
impl storage::Store for InstrumentedStore {
    async fn get(&self, key: &str) -> storage::Result<storage::GetResponse> {
        let t = std::time::Instant::now();
        let r = self.inner.get(key).await;
        self.observe("get", key, t);
        r
    }

    async fn range(&self, req: storage::RangeRequest) -> storage::Result<storage::RangeResponse> {
        let t = std::time::Instant::now();
        let prefix = req.prefix.clone();
        let r = self.inner.range(req).await;
        self.observe("list", &prefix, t);
        r
    }

    async fn create(&self, key: &str, value: bytes::Bytes) -> storage::Result<storage::Revision> {
        let t = std::time::Instant::now();
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
        let t = std::time::Instant::now();
        let r = self.inner.update(key, value, expected).await;
        self.observe("update", key, t);
        r
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<storage::Revision>,
    ) -> storage::Result<(storage::Revision, storage::KeyValue)> {
        let t = std::time::Instant::now();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_watches() {
        let m = Metrics::default();
        m.observe("get", "imagestreams", 200, Duration::from_millis(3));
        let guard = m.watch_started("imagestreams");
        let text = m.render();
        assert!(
            text.contains(
                "apiserver_request_total{verb=\"get\",resource=\"imagestreams\",code=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("apiserver_longrunning_requests{resource=\"imagestreams\"} 1"),
            "{text}"
        );
        drop(guard);
        assert!(m
            .render()
            .contains("apiserver_longrunning_requests{resource=\"imagestreams\"} 0"));
    }
}
