//! The import metrics on `/metrics`: imports by result and reason, import duration, registry
//! requests by status class, and the scheduled-import queue depth.

use std::sync::Mutex;
use std::time::Duration;

use apiserver::metrics::Metrics;
use image_api::ImageStreamImportStatus;
use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

const CLASSES: [&str; 6] = ["error", "1xx", "2xx", "3xx", "4xx", "5xx"];

pub struct ImportMetrics {
    images: IntCounterVec,
    duration: Histogram,
    registry_requests: IntCounterVec,
    /// What the registry client had counted when last read: its counters only grow, and the
    /// exported ones grow by the difference.
    seen: Mutex<[u64; 6]>,
    pub scheduled_queue: IntGauge,
}

impl ImportMetrics {
    /// Defines the import families and registers them on `metrics`. The definitions are
    /// constants, and the server registers them once: a failure is a bug, and stops start-up.
    pub fn new(metrics: &Metrics) -> ImportMetrics {
        let m = ImportMetrics::define().expect("the import metric definitions are valid");
        let collectors: [Box<dyn prometheus::core::Collector>; 4] = [
            Box::new(m.images.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.registry_requests.clone()),
            Box::new(m.scheduled_queue.clone()),
        ];
        for collector in collectors {
            metrics
                .register(collector)
                .expect("the import metrics are registered once");
        }
        m
    }

    fn define() -> prometheus::Result<ImportMetrics> {
        Ok(ImportMetrics {
            images: IntCounterVec::new(
                Opts::new(
                    "image_import_images_total",
                    "Imported images by result (Success, Failure) and failure reason",
                ),
                &["result", "reason"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "image_import_duration_seconds",
                    "Wall time of one ImageStreamImport's registry work",
                )
                .buckets(exponential_buckets(0.01, 2.0, 14)?),
            )?,
            registry_requests: IntCounterVec::new(
                Opts::new(
                    "image_import_registry_requests_total",
                    "HTTP requests to container registries by status class (error: no answer)",
                ),
                &["class"],
            )?,
            seen: Mutex::new([0; 6]),
            scheduled_queue: IntGauge::new(
                "image_import_scheduled_queue_depth",
                "Tags waiting for their scheduled re-import",
            )?,
        })
    }

    /// Counts one import's per-image results and its duration.
    pub fn record(&self, status: &ImageStreamImportStatus, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let results = status
            .images
            .iter()
            .chain(status.repository.iter().flat_map(|r| r.images.iter()));
        for result in results {
            let labels = [
                result.status.status.as_deref().unwrap_or_default(),
                result.status.reason.as_deref().unwrap_or_default(),
            ];
            self.images.with_label_values(&labels).inc();
        }
    }

    /// Brings the registry request counters up to the client's.
    pub fn sync_registry_requests(&self, now: [u64; 6]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (i, class) in CLASSES.iter().enumerate() {
            let delta = now[i].saturating_sub(seen[i]);
            if delta > 0 {
                self.registry_requests
                    .with_label_values(&[*class])
                    .inc_by(delta);
            }
        }
        *seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn keeps_the_served_names() {
        let metrics = Metrics::default();
        let m = ImportMetrics::new(&metrics);
        m.sync_registry_requests([0, 0, 3, 0, 1, 0]);
        m.sync_registry_requests([0, 0, 5, 0, 1, 0]);
        m.scheduled_queue.set(7);
        let mut failed = image_api::ImageImportStatus::default();
        failed.status.status = Some("Failure".to_string());
        failed.status.reason = Some("NotFound".to_string());
        let status = ImageStreamImportStatus {
            images: vec![failed],
            ..Default::default()
        };
        m.record(&status, Duration::from_millis(40));
        let text = metrics.render();
        let value = |series: &str| sample(&text, series);
        assert_eq!(
            value("image_import_registry_requests_total{class=\"2xx\"}"),
            Some(5.0),
            "{text}"
        );
        assert_eq!(
            value("image_import_registry_requests_total{class=\"4xx\"}"),
            Some(1.0)
        );
        assert_eq!(
            value("image_import_images_total{reason=\"NotFound\",result=\"Failure\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(value("image_import_scheduled_queue_depth"), Some(7.0));
        assert_eq!(value("image_import_duration_seconds_count"), Some(1.0));
        assert!(text.contains("# TYPE image_import_images_total counter\n"));
    }
}
