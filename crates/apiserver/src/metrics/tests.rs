use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apimachinery::discovery::ResourceInfo;
use apimachinery::options::Query;
use apimachinery::request;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::Response;

use super::*;

use crate::test_fixtures::streams_info;

fn labels(method: Method, path: &str, query: Option<&str>) -> RequestLabels {
    let info = request::parse(path).expect("a resource path");
    RequestLabels::for_resource(
        &streams_info(),
        &info,
        &method,
        &Query::parse(query),
        &HeaderMap::new(),
    )
}

const NS: &str = "image.openshift.io/v1/namespaces/ns/imagestreams";

fn answer(code: StatusCode) -> Response {
    let mut resp = Response::new(Body::from("{}"));
    *resp.status_mut() = code;
    resp
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn renders_kubes_text_format_without_openmetrics_eof() {
    let m = Metrics::default();
    m.start_request(labels(Method::POST, NS, None), false)
        .finish(answer(StatusCode::CREATED));
    let text = m.render();
    assert!(
        text.contains("# TYPE apiserver_request_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out \
             for each verb, dry run value, group, version, resource, scope, component, and \
             HTTP response code.\n"
        ),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let created = "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",\
                   group=\"image.openshift.io\",resource=\"imagestreams\",scope=\"resource\",\
                   subresource=\"\",verb=\"POST\",version=\"v1\"}";
    assert_eq!(sample(&text, created), Some(1.0), "{text}");
    assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram\n"));
    for le in ["0.005", "1", "5", "30", "60", "+Inf"] {
        let bucket = format!(
            "apiserver_request_duration_seconds_bucket{{component=\"apiserver\",dry_run=\"\",\
             group=\"image.openshift.io\",resource=\"imagestreams\",scope=\"resource\",\
             subresource=\"\",verb=\"POST\",version=\"v1\",le=\"{le}\"}}"
        );
        assert_eq!(sample(&text, &bucket), Some(1.0), "{le}: {text}");
    }
}

#[test]
fn process_metrics_are_served() {
    let text = Metrics::default().render();
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    let rss = sample(&text, "process_resident_memory_bytes").expect("resident memory");
    assert!(rss > 0.0, "{text}");
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n > 0.0));
    assert!(sample(&text, "process_start_time_seconds").is_some_and(|t| t > 1.5e9));
}

#[test]
fn a_watch_is_open_until_its_body_drops_then_counted() {
    let m = Metrics::default();
    let watch = labels(Method::GET, NS, Some("watch=true"));
    let resp = m.start_request(watch, true).finish(answer(StatusCode::OK));
    let open = "apiserver_longrunning_requests{component=\"apiserver\",\
                group=\"image.openshift.io\",resource=\"imagestreams\",scope=\"namespace\",\
                subresource=\"\",verb=\"WATCH\",version=\"v1\"}";
    let total = "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",\
                 group=\"image.openshift.io\",resource=\"imagestreams\",scope=\"namespace\",\
                 subresource=\"\",verb=\"WATCH\",version=\"v1\"}";
    let text = m.render();
    assert_eq!(sample(&text, open), Some(1.0), "{text}");
    assert_eq!(sample(&text, total), None, "{text}");
    drop(resp);
    let text = m.render();
    assert_eq!(sample(&text, open), Some(0.0), "{text}");
    assert_eq!(sample(&text, total), Some(1.0), "{text}");
}

#[test]
fn a_failed_watch_is_counted_at_once_and_never_open() {
    let m = Metrics::default();
    let watch = labels(Method::GET, NS, Some("watch=1"));
    let _resp = m
        .start_request(watch, true)
        .finish(answer(StatusCode::GONE));
    let text = m.render();
    assert!(!text.contains("apiserver_longrunning_requests{"), "{text}");
    assert!(text.contains("code=\"410\""), "{text}");
}

#[test]
fn watch_events_are_counted_by_group_version_kind() {
    let m = Metrics::default();
    let events = m.watch_events(&streams_info());
    events.sent(100);
    events.sent(3000);
    events.sent(0);
    let text = m.render();
    let series = "{group=\"image.openshift.io\",kind=\"ImageStream\",version=\"v1\"}";
    assert_eq!(
        sample(&text, &format!("apiserver_watch_events_total{series}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("apiserver_watch_events_sizes_sum{series}")),
        Some(3100.0),
        "{text}"
    );
}

struct FakeStreams {
    info: ResourceInfo,
    count: AtomicUsize,
    ready: bool,
}

impl StoredObjects for FakeStreams {
    fn resource_info(&self) -> &ResourceInfo {
        &self.info
    }

    fn stored_objects(&self) -> Option<usize> {
        self.ready.then(|| self.count.load(Ordering::Relaxed))
    }
}

#[test]
fn storage_objects_and_latency_name_the_group_resource() {
    let m = Metrics::default();
    let streams = Arc::new(FakeStreams {
        info: streams_info(),
        count: AtomicUsize::new(3),
        ready: true,
    });
    m.observe_storage("list", "/imagestreams/", Duration::from_millis(2));
    m.count_objects(&streams);
    m.observe_storage("create", "/imagestreams/ns/a", Duration::from_millis(3));
    m.observe_storage("get", "/leases/lock", Duration::from_millis(1));
    let text = m.render();
    let objects = "apiserver_storage_objects{resource=\"imagestreams.image.openshift.io\"}";
    assert_eq!(sample(&text, objects), Some(3.0), "{text}");
    for operation in ["list", "create"] {
        let count = format!(
            "etcd_request_duration_seconds_count{{operation=\"{operation}\",\
             type=\"imagestreams.image.openshift.io\"}}"
        );
        assert_eq!(sample(&text, &count), Some(1.0), "{text}");
    }
    let unknown = "etcd_request_duration_seconds_count{operation=\"get\",type=\"leases\"}";
    assert_eq!(sample(&text, unknown), Some(1.0), "{text}");
    // A source that is gone leaves its last count.
    streams.count.store(5, Ordering::Relaxed);
    drop(streams);
    assert_eq!(sample(&m.render(), objects), Some(3.0));
}

#[test]
fn an_unready_source_reports_nothing_yet() {
    let m = Metrics::default();
    let streams = Arc::new(FakeStreams {
        info: streams_info(),
        count: AtomicUsize::new(7),
        ready: false,
    });
    m.count_objects(&streams);
    assert!(!m.render().contains("apiserver_storage_objects{"));
}

#[test]
fn dropped_requests_are_counted_as_429() {
    let m = Metrics::default();
    // The resource has been served, so its path may label a dropped request.
    m.start_request(labels(Method::GET, NS, None), false)
        .finish(answer(StatusCode::OK));
    let dropped = |method: Method, uri: &str| {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request");
        m.record_dropped(&req);
    };
    dropped(
        Method::DELETE,
        "/apis/image.openshift.io/v1/namespaces/ns/imagestreams/a?dryRun=All",
    );
    dropped(Method::GET, "/apis/made.up/v1/namespaces/ns/things");
    let text = m.render();
    let served = "apiserver_request_total{code=\"429\",component=\"apiserver\",\
                  dry_run=\"All\",group=\"image.openshift.io\",resource=\"imagestreams\",\
                  scope=\"resource\",subresource=\"\",verb=\"DELETE\",version=\"v1\"}";
    assert_eq!(sample(&text, served), Some(1.0), "{text}");
    let unknown = "apiserver_request_total{code=\"429\",component=\"apiserver\",dry_run=\"\",\
                   group=\"\",resource=\"\",scope=\"\",subresource=\"\",verb=\"GET\",\
                   version=\"\"}";
    assert_eq!(sample(&text, unknown), Some(1.0), "{text}");
    assert!(
        !text.contains("verb=\"DELETE\",version=\"v1\",le="),
        "no latency: {text}"
    );
}

#[test]
fn health_checks_are_recorded_by_path() {
    let m = Metrics::default();
    let req = Request::builder()
        .uri("/healthz")
        .body(())
        .expect("request");
    m.observe_path(&req, "/healthz", 200, Duration::from_millis(1));
    let text = m.render();
    let series = "apiserver_request_total{code=\"200\",component=\"\",dry_run=\"\",group=\"\",\
                  resource=\"\",scope=\"\",subresource=\"/healthz\",verb=\"GET\",version=\"\"}";
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
}

#[test]
fn the_inflight_gauge_has_both_kinds() {
    let m = Metrics::default();
    let guard = m.inflight_started(true);
    drop(guard);
    let text = m.render();
    assert!(text.contains("# TYPE apiserver_current_inflight_requests gauge\n"));
    for kind in ["readOnly", "mutating"] {
        let series = format!("apiserver_current_inflight_requests{{request_kind=\"{kind}\"}}");
        assert!(sample(&text, &series).is_some(), "{kind}: {text}");
    }
}

#[test]
fn other_layers_register_their_own_families_once() {
    let m = Metrics::default();
    let queue = prometheus::IntGauge::new("image_import_scheduled_queue_depth", "Tags waiting")
        .expect("gauge");
    queue.set(4);
    m.register(Box::new(queue.clone())).expect("registered");
    assert!(m.register(Box::new(queue)).is_err());
    assert_eq!(
        sample(&m.render(), "image_import_scheduled_queue_depth"),
        Some(4.0)
    );
}
