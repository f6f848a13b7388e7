//! `/metrics` as kube-apiserver 1.32 serves it: Prometheus text format 0.0.4 (tikv's
//! `prometheus` crate), kube's family names, label names, label values, help texts (with their
//! `[STABLE]`/`[ALPHA]` prefixes) and buckets, Go's `process_*` family, and whatever the binary
//! registers (the import metrics).
//!
//! - [`labels`]: kube's verb, scope and dry-run values of a request.
//! - [`record`]: one request from routing to answer (a watch until its stream ends), the
//!   watch event counts, the in-flight watermarks.
//! - [`store`]: storage latency ([`InstrumentedStore`]) and object counts ([`StoredObjects`]).
//! - [`process`]: `process_*` from `/proc`.

mod labels;
mod process;
mod record;
mod store;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use apimachinery::discovery::ResourceInfo;
use apimachinery::request::RequestInfo;
use apimachinery::GroupResource;
use axum::http::Request;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub use self::labels::RequestLabels;
pub use self::record::{InflightGuard, RequestRecord, WatchEvents};
pub use self::store::{InstrumentedStore, StoredObjects};

use self::process::ProcessCollector;
use self::record::{lock, Inflight, RequestKind};

/// kube's buckets of `apiserver_request_duration_seconds` and `etcd_request_duration_seconds`.
const LATENCY_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

const REQUEST_LABELS: [&str; 8] = [
    "verb",
    "dry_run",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];
const REQUEST_TOTAL_LABELS: [&str; 9] = [
    "verb",
    "dry_run",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
    "code",
];
const LONGRUNNING_LABELS: [&str; 7] = [
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
];
const WATCH_LABELS: [&str; 3] = ["group", "version", "kind"];

const ETCD_LATENCY: &str = "etcd_request_duration_seconds";

/// Cheap to clone; all clones share the same metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    longrunning: IntGaugeVec,
    watch_events: IntCounterVec,
    watch_event_sizes: HistogramVec,
    inflight_gauge: IntGaugeVec,
    inflight: Arc<Inflight>,
    storage_objects: IntGaugeVec,
    etcd_latency: HistogramVec,
    /// Weak: a registry holds the store, which holds these metrics.
    object_sources: Mutex<Vec<Weak<dyn StoredObjects>>>,
    /// The group, version and resource of every request routed to a resource so far: what a
    /// dropped request may be labelled with.
    served: RwLock<HashSet<(&'static str, &'static str, &'static str)>>,
    /// kube's `type` of a storage key's first segment (`imagestreams` →
    /// `imagestreams.image.openshift.io`), learned from [`Metrics::count_objects`].
    storage_types: Mutex<HashMap<String, String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::try_new().expect("the metric definitions are constants and valid")
    }
}

impl Inner {
    /// The families kube defines, with its names, help texts, labels and buckets.
    fn define() -> prometheus::Result<Inner> {
        Ok(Inner {
            requests: counters(
                "apiserver_request_total",
                "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, \
                 group, version, resource, scope, component, and HTTP response code.",
                &REQUEST_TOTAL_LABELS,
            )?,
            latency: histograms(
                "apiserver_request_duration_seconds",
                "[STABLE] Response latency distribution in seconds for each verb, dry run value, \
                 group, version, resource, subresource, scope and component.",
                LATENCY_BUCKETS.to_vec(),
                &REQUEST_LABELS,
            )?,
            longrunning: gauges(
                "apiserver_longrunning_requests",
                "[STABLE] Gauge of all active long-running apiserver requests broken out by \
                 verb, group, version, resource, scope and component. Not all requests are \
                 tracked this way.",
                &LONGRUNNING_LABELS,
            )?,
            watch_events: counters(
                "apiserver_watch_events_total",
                "[ALPHA] Number of events sent in watch clients",
                &WATCH_LABELS,
            )?,
            watch_event_sizes: histograms(
                "apiserver_watch_events_sizes",
                "[ALPHA] Watch event size distribution in bytes",
                exponential_buckets(1024.0, 2.0, 8)?,
                &WATCH_LABELS,
            )?,
            inflight_gauge: gauges(
                "apiserver_current_inflight_requests",
                "[STABLE] Maximal number of currently used inflight request limit of this \
                 apiserver per request kind in last second.",
                &["request_kind"],
            )?,
            inflight: Arc::new(Inflight::new()),
            storage_objects: gauges(
                "apiserver_storage_objects",
                "[STABLE] Number of stored objects at the time of last check split by kind.",
                &["resource"],
            )?,
            etcd_latency: histograms(
                ETCD_LATENCY,
                "[ALPHA] Etcd request latency in seconds for each operation and object type.",
                LATENCY_BUCKETS.to_vec(),
                &["operation", "type"],
            )?,
            object_sources: Mutex::new(Vec::new()),
            storage_types: Mutex::new(HashMap::new()),
            served: RwLock::new(HashSet::new()),
            registry: Registry::new(),
        })
    }

    /// Everything `/metrics` reads from the registry, the `process_*` family included.
    fn collectors(&self) -> prometheus::Result<[Box<dyn Collector>; 9]> {
        let collectors: [Box<dyn Collector>; 9] = [
            Box::new(self.requests.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.longrunning.clone()),
            Box::new(self.watch_events.clone()),
            Box::new(self.watch_event_sizes.clone()),
            Box::new(self.inflight_gauge.clone()),
            Box::new(self.storage_objects.clone()),
            Box::new(self.etcd_latency.clone()),
            Box::new(ProcessCollector::new()?),
        ];
        Ok(collectors)
    }
}

impl Metrics {
    /// kube's families on a registry of their own (not the process-wide default one, so that
    /// every server in a test process has its own).
    pub fn try_new() -> prometheus::Result<Metrics> {
        let inner = Inner::define()?;
        // Both kinds are always reported, as kube's watermark reports them.
        for kind in RequestKind::ALL {
            inner.inflight_gauge.with_label_values(&[kind.label()]);
        }
        for collector in inner.collectors()? {
            inner.registry.register(collector)?;
        }
        Ok(Metrics {
            inner: Arc::new(inner),
        })
    }

    /// Adds metrics of another layer (the binary's import metrics) to `/metrics`.
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.inner.registry.register(collector)
    }

    /// Starts recording a request routed to a resource; `watch` when it may stream.
    pub fn start_request(&self, labels: RequestLabels, watch: bool) -> RequestRecord {
        if let (Cow::Borrowed(group), Cow::Borrowed(version), Cow::Borrowed(resource)) =
            (&labels.group, &labels.version, &labels.resource)
        {
            self.note_served((*group, *version, *resource));
        }
        RequestRecord {
            metrics: self.clone(),
            labels,
            watch,
            started: Instant::now(),
        }
    }

    /// A request to a handler kube instruments by path (the root health checks).
    pub fn observe_path<B>(
        &self,
        req: &Request<B>,
        path: &'static str,
        code: u16,
        elapsed: Duration,
    ) {
        let labels = RequestLabels::for_path(req.method(), req.uri(), req.headers(), path, "");
        self.observe_request(&labels, code, elapsed);
    }

    /// A request the in-flight limit refused with 429: counted, as kube counts them, in
    /// `apiserver_request_total` only.
    pub fn record_dropped<B>(&self, req: &Request<B>) {
        let served = self.inner.served.read().unwrap_or_else(|p| p.into_inner());
        let is_served = |info: &RequestInfo| {
            served.iter().any(|(group, version, resource)| {
                *group == info.group && *version == info.version && *resource == info.resource
            })
        };
        let labels = RequestLabels::dropped(req.method(), req.uri(), req.headers(), is_served);
        drop(served);
        self.inner
            .requests
            .with_label_values(&labels.total_values("429"))
            .inc();
    }

    /// Counts a request in the in-flight watermark of its kind until the guard drops.
    pub fn inflight_started(&self, mutating: bool) -> InflightGuard {
        InflightGuard::start(self.inner.inflight.clone(), mutating)
    }

    /// The event counter of watches of `resource`, for one watch to count what it sends.
    pub fn watch_events(&self, resource: &ResourceInfo) -> WatchEvents {
        let values = [resource.group, resource.version, resource.kind];
        WatchEvents {
            count: self.inner.watch_events.with_label_values(&values),
            sizes: self.inner.watch_event_sizes.with_label_values(&values),
        }
    }

    /// One store call on `key` took `elapsed`. Recorded under the key's first segment, which
    /// [`Metrics::render`] names as kube names the resource.
    pub fn observe_storage(&self, operation: &'static str, key: &str, elapsed: Duration) {
        let segment = key.trim_start_matches('/').split('/').next().unwrap_or("");
        self.inner
            .etcd_latency
            .with_label_values(&[operation, segment])
            .observe(elapsed.as_secs_f64());
    }

    /// Reports `source`'s object count in `apiserver_storage_objects` on every scrape, for as
    /// long as it lives.
    pub fn count_objects<T: StoredObjects + 'static>(&self, source: &Arc<T>) {
        let info = source.resource_info();
        lock(&self.inner.storage_types).insert(info.resource.to_string(), group_resource(info));
        let weak: Weak<T> = Arc::downgrade(source);
        let weak: Weak<dyn StoredObjects> = weak;
        lock(&self.inner.object_sources).push(weak);
    }

    /// The text of `/metrics`: Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        self.refresh_inflight();
        self.refresh_object_counts();
        let mut families = self.inner.registry.gather();
        self.name_storage_types(&mut families);
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "metrics could not be encoded");
        }
        out
    }

    fn note_served(&self, key: (&'static str, &'static str, &'static str)) {
        let known = self.inner.served.read().unwrap_or_else(|p| p.into_inner());
        if known.contains(&key) {
            return;
        }
        drop(known);
        let mut known = self.inner.served.write().unwrap_or_else(|p| p.into_inner());
        known.insert(key);
    }

    fn observe_request(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        let code = code.to_string();
        self.inner
            .requests
            .with_label_values(&labels.total_values(&code))
            .inc();
        self.inner
            .latency
            .with_label_values(&labels.latency_values())
            .observe(elapsed.as_secs_f64());
    }

    fn refresh_inflight(&self) {
        let last = self.inner.inflight.last_second();
        for kind in RequestKind::ALL {
            let level = i64::try_from(last[kind as usize]).unwrap_or(i64::MAX);
            self.inner
                .inflight_gauge
                .with_label_values(&[kind.label()])
                .set(level);
        }
    }

    fn refresh_object_counts(&self) {
        let mut sources = lock(&self.inner.object_sources);
        sources.retain(|source| source.strong_count() > 0);
        for source in sources.iter().filter_map(|weak| weak.upgrade()) {
            let Some(count) = source.stored_objects() else {
                continue;
            };
            let label = group_resource(source.resource_info());
            self.inner
                .storage_objects
                .with_label_values(&[label.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Storage latency is recorded by key segment; kube's `type` is the group resource.
    fn name_storage_types(&self, families: &mut [MetricFamily]) {
        let types = lock(&self.inner.storage_types);
        for family in families.iter_mut().filter(|f| f.name() == ETCD_LATENCY) {
            for metric in family.mut_metric().iter_mut() {
                for pair in metric.mut_label().iter_mut() {
                    if pair.name() != "type" {
                        continue;
                    }
                    if let Some(named) = types.get(pair.value()).cloned() {
                        pair.set_value(named);
                    }
                }
            }
        }
    }
}

/// kube's name of a resource in storage metrics: `imagestreams.image.openshift.io`.
fn group_resource(info: &ResourceInfo) -> String {
    GroupResource::new(info.group, info.resource).to_string()
}

fn counters(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauges(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

fn histograms(
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
}

#[cfg(test)]
mod tests;
