//! The import metrics on `/metrics`: imports by result and reason, import duration, registry
//! requests by status class, and the scheduled-import queue depth.

use std::sync::Mutex;
use std::time::Duration;

use apiserver::metrics::Metrics;
use image_api::ImageStreamImportStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: String,
}

const CLASSES: [&str; 6] = ["error", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct ImportMetrics {
    images: Family<ResultLabels, Counter>,
    duration: Histogram,
    registry_requests: Family<ClassLabels, Counter>,
    /// What the registry client had counted when last read: its counters only grow, and the
    /// exported ones grow by the difference.
    seen: Mutex<[u64; 6]>,
    pub scheduled_queue: Gauge,
}

impl ImportMetrics {
    pub fn new(metrics: &Metrics) -> ImportMetrics {
        let m = ImportMetrics {
            images: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            registry_requests: Family::default(),
            seen: Mutex::new([0; 6]),
            scheduled_queue: Gauge::default(),
        };
        metrics.register(
            "image_import_images",
            "Imported images by result (Success, Failure) and failure reason",
            m.images.clone(),
        );
        metrics.register(
            "image_import_duration_seconds",
            "Wall time of one ImageStreamImport's registry work",
            m.duration.clone(),
        );
        metrics.register(
            "image_import_registry_requests",
            "HTTP requests to container registries by status class (error: no answer)",
            m.registry_requests.clone(),
        );
        metrics.register(
            "image_import_scheduled_queue_depth",
            "Tags waiting for their scheduled re-import",
            m.scheduled_queue.clone(),
        );
        m
    }

    /// Counts one import's per-image results and its duration.
    pub fn record(&self, status: &ImageStreamImportStatus, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let results = status
            .images
            .iter()
            .chain(status.repository.iter().flat_map(|r| r.images.iter()));
        for result in results {
            let labels = ResultLabels {
                result: result.status.status.clone().unwrap_or_default(),
                reason: result.status.reason.clone().unwrap_or_default(),
            };
            self.images.get_or_create(&labels).inc();
        }
    }

    /// Brings the registry request counters up to the client's.
    pub fn sync_registry_requests(&self, now: [u64; 6]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (i, class) in CLASSES.iter().enumerate() {
            let delta = now[i].saturating_sub(seen[i]);
            if delta > 0 {
                let labels = ClassLabels {
                    class: class.to_string(),
                };
                self.registry_requests.get_or_create(&labels).inc_by(delta);
            }
        }
        *seen = now;
    }
}
