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

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
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
