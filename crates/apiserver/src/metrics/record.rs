//! Recording one request: its count and latency once its answer is known (a watch's when its
//! stream ends, as kube measures it), the open-watch gauge, each watch event sent, and the
//! in-flight watermarks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use prometheus::{Histogram, IntCounter, IntGauge};

use super::labels::RequestLabels;
use super::Metrics;

/// One request being served. [`RequestRecord::finish`] records it; a record dropped without
/// an answer (the request timed out, or its client went away) counts nothing.
#[must_use = "a request is recorded by finish"]
pub struct RequestRecord {
    pub(super) metrics: Metrics,
    pub(super) labels: RequestLabels,
    pub(super) watch: bool,
    pub(super) started: Instant,
}

impl RequestRecord {
    /// Records the request with the answer's code, or, for a watch that is streaming, counts it
    /// open until its body is dropped and records it then, with the whole watch's duration.
    pub fn finish(self, response: Response) -> Response {
        let streaming = self.watch && response.status() == StatusCode::OK;
        if !streaming {
            let code = response.status().as_u16();
            self.metrics
                .observe_request(&self.labels, code, self.started.elapsed());
            return response;
        }
        let open = OpenWatch::start(self);
        response.map(move |body| {
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _open = &open;
                chunk
            }))
        })
    }
}

/// A watch being streamed: in `apiserver_longrunning_requests` while it lives.
struct OpenWatch {
    gauge: IntGauge,
    record: RequestRecord,
}

impl OpenWatch {
    fn start(record: RequestRecord) -> OpenWatch {
        let gauge = record
            .metrics
            .inner
            .longrunning
            .with_label_values(&record.labels.longrunning_values());
        gauge.inc();
        OpenWatch { gauge, record }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.gauge.dec();
        let record = &self.record;
        record.metrics.observe_request(
            &record.labels,
            StatusCode::OK.as_u16(),
            record.started.elapsed(),
        );
    }
}

/// The event counter and size histogram of one watched resource, looked up once per watch.
pub struct WatchEvents {
    pub(super) count: IntCounter,
    pub(super) sizes: Histogram,
}

impl WatchEvents {
    /// One event of `len` bytes went to the watcher (nothing went when it encoded to nothing).
    pub fn sent(&self, len: usize) {
        if len == 0 {
            return;
        }
        self.count.inc();
        self.sizes.observe(len as f64);
    }
}

/// `request_kind` of `apiserver_current_inflight_requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestKind {
    ReadOnly = 0,
    Mutating = 1,
}

impl RequestKind {
    pub(super) const ALL: [RequestKind; 2] = [RequestKind::ReadOnly, RequestKind::Mutating];

    pub(super) fn label(self) -> &'static str {
        match self {
            RequestKind::ReadOnly => "readOnly",
            RequestKind::Mutating => "mutating",
        }
    }
}

/// kube's request watermark: the most requests of each kind in flight at once during each
/// second. The gauge shows the last complete second, as kube's once-a-second update does.
pub(super) struct Inflight {
    epoch: Instant,
    in_flight: [AtomicUsize; 2],
    marks: Mutex<Watermarks>,
}

/// The maxima of the current second and of the one before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Watermarks {
    /// Seconds since the epoch of the second `current` belongs to.
    second: u64,
    current: [usize; 2],
    last: [usize; 2],
}

impl Watermarks {
    /// Moves to second `now`: the current maxima become the last second's when `now` is the
    /// next second; when whole seconds passed without a request, the last second had none.
    pub(super) fn roll(&mut self, now: u64) {
        if now <= self.second {
            return;
        }
        self.last = if now == self.second + 1 {
            self.current
        } else {
            [0; 2]
        };
        self.current = [0; 2];
        self.second = now;
    }

    pub(super) fn note(&mut self, now: u64, kind: RequestKind, level: usize) {
        self.roll(now);
        let mark = &mut self.current[kind as usize];
        *mark = (*mark).max(level);
    }

    pub(super) fn last(&self) -> [usize; 2] {
        self.last
    }
}

impl Inflight {
    pub(super) fn new() -> Inflight {
        Inflight {
            epoch: Instant::now(),
            in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
            marks: Mutex::new(Watermarks::default()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_secs()
    }

    fn note(&self, kind: RequestKind, level: usize) {
        let now = self.now();
        lock(&self.marks).note(now, kind, level);
    }

    /// The watermarks of the last complete second, by [`RequestKind`].
    pub(super) fn last_second(&self) -> [usize; 2] {
        let now = self.now();
        let mut marks = lock(&self.marks);
        marks.roll(now);
        marks.last()
    }
}

/// A request holding an in-flight slot. The level is noted when it starts and when it ends,
/// as kube notes it on both sides of serving.
pub struct InflightGuard {
    inflight: Arc<Inflight>,
    kind: RequestKind,
}

impl InflightGuard {
    pub(super) fn start(inflight: Arc<Inflight>, mutating: bool) -> InflightGuard {
        let kind = if mutating {
            RequestKind::Mutating
        } else {
            RequestKind::ReadOnly
        };
        let level = inflight.in_flight[kind as usize].fetch_add(1, Ordering::Relaxed) + 1;
        inflight.note(kind, level);
        InflightGuard { inflight, kind }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let counter = &self.inflight.in_flight[self.kind as usize];
        let level = counter.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.inflight.note(self.kind, level);
    }
}

/// A poisoned lock still holds consistent numbers: every update is a single assignment.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_report_the_last_complete_second() {
        let mut w = Watermarks::default();
        w.note(0, RequestKind::ReadOnly, 3);
        w.note(0, RequestKind::ReadOnly, 1);
        w.note(0, RequestKind::Mutating, 2);
        assert_eq!(w.last(), [0, 0], "second 0 is not over yet");
        w.roll(1);
        assert_eq!(w.last(), [3, 2]);
        w.note(1, RequestKind::ReadOnly, 1);
        w.roll(2);
        assert_eq!(w.last(), [1, 0]);
        // Seconds without requests: the last one had none in flight that anyone noted.
        w.roll(5);
        assert_eq!(w.last(), [0, 0]);
    }

    #[test]
    fn guards_count_requests_in_flight() {
        let inflight = Arc::new(Inflight::new());
        let a = InflightGuard::start(inflight.clone(), false);
        let b = InflightGuard::start(inflight.clone(), false);
        let c = InflightGuard::start(inflight.clone(), true);
        assert_eq!(inflight.in_flight[0].load(Ordering::Relaxed), 2);
        assert_eq!(inflight.in_flight[1].load(Ordering::Relaxed), 1);
        drop((a, b, c));
        assert_eq!(inflight.in_flight[0].load(Ordering::Relaxed), 0);
        // The peaks are in this second's marks, or in the last one's if a second just ended.
        let marks = *lock(&inflight.marks);
        let peak = |k: usize| marks.current[k].max(marks.last[k]);
        assert_eq!((peak(0), peak(1)), (2, 1));
    }
}
