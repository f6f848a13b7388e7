//! The audit log (`--audit-log-path`): writes and denials as kube's `audit.k8s.io/v1` Events at
//! level Metadata, one JSON line per request at stage ResponseComplete.
//!
//! Requests never wait for the disk: an event becomes a line on the request's task and goes
//! into a bounded queue; one writer thread drains it in batches and flushes after each. A
//! full queue (a disk slower than the traffic) drops events, counts them and says so in the
//! log, rather than slowing every request down.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::auth::ResourceAttributes;
use crate::resource::UserInfo;

/// Events waiting for the writer before new ones are dropped.
const QUEUE_CAPACITY: usize = 10_000;
/// Lines written between two flushes at most, so a steady stream still reaches the disk.
const MAX_BATCH: usize = 1_024;
/// At most one warning about dropped events or write errors this often.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Verbs that change something: recorded whatever their outcome.
const WRITE_VERBS: &[&str] = &[
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    // Non-resource requests carry the lower-cased HTTP method as their verb.
    "post",
    "put",
];

/// Whether a request goes into the audit log: every write, and every denial (401, 403);
/// successful and failed reads are left out.
pub fn should_record(verb: &str, code: u16) -> bool {
    matches!(code, 401 | 403) || WRITE_VERBS.contains(&verb)
}

/// kube's `Audit-ID` header, spelled in the lower case HTTP/2 requires.
pub const AUDIT_ID_HEADER: &str = "audit-id";

/// The one ID of a request, kept in its extensions: what the `Audit-ID` response header, the
/// request's log line and its audit event all carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditId(pub String);

impl AuditId {
    /// The client's `Audit-ID` when it sends one, as kube's `WithAuditInit` keeps it (as is, not
    /// truncated): kube-apiserver's aggregator forwards the ID it logged, so a proxied request
    /// has the same ID in both servers' logs. A fresh UUID otherwise.
    pub fn of_request(headers: &axum::http::HeaderMap) -> AuditId {
        let given = headers
            .get(AUDIT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        let id = match given {
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        AuditId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the audit log records of one request.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub audit_id: String,
    pub request_uri: String,
    pub verb: String,
    /// The authenticated user (the impersonator when impersonating); `None` for a 401.
    pub user: Option<UserInfo>,
    pub impersonated: Option<UserInfo>,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// `None` for non-resource requests.
    pub object_ref: Option<ResourceAttributes>,
    pub code: u16,
    pub received: jiff::Timestamp,
    pub finished: jiff::Timestamp,
    /// (allowed, reason) when the authorizer was asked.
    pub decision: Option<(bool, String)>,
}

impl AuditEvent {
    /// The `audit.k8s.io/v1` Event, keys in kube's order, empty optional fields left out.
    pub fn to_json(&self) -> Value {
        let mut event = Map::new();
        event.insert("kind".into(), json!("Event"));
        event.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
        event.insert("level".into(), json!("Metadata"));
        event.insert("auditID".into(), json!(self.audit_id));
        event.insert("stage".into(), json!("ResponseComplete"));
        event.insert("requestURI".into(), json!(self.request_uri));
        event.insert("verb".into(), json!(self.verb));
        let user = self.user.as_ref().map_or_else(|| json!({}), user_json);
        event.insert("user".into(), user);
        if let Some(impersonated) = &self.impersonated {
            event.insert("impersonatedUser".into(), user_json(impersonated));
        }
        if let Some(ip) = self.source_ip {
            event.insert("sourceIPs".into(), json!([ip.to_string()]));
        }
        if let Some(agent) = self.user_agent.as_deref().filter(|a| !a.is_empty()) {
            event.insert("userAgent".into(), json!(agent));
        }
        if let Some(object) = &self.object_ref {
            event.insert("objectRef".into(), object_ref_json(object));
        }
        event.insert(
            "responseStatus".into(),
            json!({"metadata": {}, "code": self.code}),
        );
        event.insert(
            "requestReceivedTimestamp".into(),
            json!(micro_time(self.received)),
        );
        event.insert("stageTimestamp".into(), json!(micro_time(self.finished)));
        if let Some((allowed, reason)) = &self.decision {
            let decision = if *allowed { "allow" } else { "forbid" };
            event.insert(
                "annotations".into(),
                json!({
                    "authorization.k8s.io/decision": decision,
                    "authorization.k8s.io/reason": reason,
                }),
            );
        }
        Value::Object(event)
    }
}

/// RFC 3339 with microseconds, as kube's MicroTime.
fn micro_time(time: jiff::Timestamp) -> String {
    format!("{time:.6}")
}

/// authentication/v1 UserInfo: every field omitted when empty.
fn user_json(user: &UserInfo) -> Value {
    let mut out = Map::new();
    if !user.name.is_empty() {
        out.insert("username".into(), json!(user.name));
    }
    if !user.uid.is_empty() {
        out.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        out.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        out.insert("extra".into(), json!(user.extra));
    }
    Value::Object(out)
}

/// audit/v1 ObjectReference: every field omitted when empty.
fn object_ref_json(object: &ResourceAttributes) -> Value {
    let fields = [
        ("resource", &object.resource),
        ("namespace", &object.namespace),
        ("name", &object.name),
        ("apiGroup", &object.group),
        ("apiVersion", &object.version),
        ("subresource", &object.subresource),
    ];
    let out: Map<String, Value> = fields
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| (key.to_string(), json!(value)))
        .collect();
    Value::Object(out)
}

/// Lets a warning through at most once per [`WARNING_INTERVAL`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < WARNING_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// The open audit log. Recording never blocks.
pub struct AuditLog {
    lines: SyncSender<String>,
    dropped: AtomicU64,
    drop_warnings: Mutex<Throttle>,
    writer: JoinHandle<()>,
}

impl AuditLog {
    /// Opens `path` for appending (created with mode 0600, with its directory), or standard
    /// output for `-`, and starts the writer thread.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(open_file(path)?)
        };
        AuditLog::start(out, QUEUE_CAPACITY)
    }

    fn start(out: Box<dyn Write + Send>, capacity: usize) -> io::Result<AuditLog> {
        let (lines, queue) = mpsc::sync_channel(capacity);
        let writer = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_lines(&queue, BufWriter::new(out)))?;
        Ok(AuditLog {
            lines,
            dropped: AtomicU64::new(0),
            drop_warnings: Mutex::new(Throttle::default()),
            writer,
        })
    }

    /// Queues the event's line; drops it when the queue is full.
    pub fn record(&self, event: &AuditEvent) {
        let mut line = event.to_json().to_string();
        line.push('\n');
        if self.lines.try_send(line).is_err() {
            self.note_dropped();
        }
    }

    /// Events dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer. Blocks (call it where blocking is fine).
    pub fn close(self) {
        let AuditLog { lines, writer, .. } = self;
        drop(lines);
        if writer.join().is_err() {
            tracing::error!("the audit log writer panicked");
        }
    }

    fn note_dropped(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut throttle = self
            .drop_warnings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if throttle.ready(Instant::now()) {
            tracing::warn!(
                dropped = total,
                "audit log queue full, dropping audit events"
            );
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The writer thread: waits for a line, takes whatever else is queued (up to a batch),
/// writes and flushes; ends when the log is closed (or dropped) and the queue is empty.
fn write_lines(queue: &Receiver<String>, mut out: BufWriter<Box<dyn Write + Send>>) {
    let mut error_warnings = Throttle::default();
    while let Ok(first) = queue.recv() {
        let batch = std::iter::once(first).chain(queue.try_iter().take(MAX_BATCH - 1));
        if let Err(error) = write_batch(&mut out, batch) {
            if error_warnings.ready(Instant::now()) {
                tracing::warn!(%error, "writing the audit log failed");
            }
        }
    }
    if let Err(error) = out.flush() {
        tracing::warn!(%error, "flushing the audit log failed");
    }
}

fn write_batch(out: &mut impl Write, batch: impl Iterator<Item = String>) -> io::Result<()> {
    for line in batch {
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            extra: BTreeMap::from([("scopes".to_string(), vec!["a".to_string()])]),
        }
    }

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            audit_id: id.into(),
            request_uri: "/apis/image.openshift.io/v1/namespaces/ns/imagestreams?dryRun=All".into(),
            verb: "create".into(),
            user: Some(alice()),
            impersonated: None,
            source_ip: Some("10.0.0.7".parse().expect("ip")),
            user_agent: Some("kubectl/v1.35".into()),
            object_ref: Some(ResourceAttributes {
                group: "image.openshift.io".into(),
                version: "v1".into(),
                resource: "imagestreams".into(),
                subresource: String::new(),
                namespace: "ns".into(),
                name: String::new(),
            }),
            code: 201,
            received: jiff::Timestamp::new(1_700_000_000, 5_000).expect("time"),
            finished: jiff::Timestamp::new(1_700_000_000, 250_000_000).expect("time"),
            decision: Some((true, "RBAC: allowed".into())),
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn events_have_kubes_shape() {
        let json = event("id-1").to_json();
        assert_eq!(
            keys(&json),
            [
                "kind",
                "apiVersion",
                "level",
                "auditID",
                "stage",
                "requestURI",
                "verb",
                "user",
                "sourceIPs",
                "userAgent",
                "objectRef",
                "responseStatus",
                "requestReceivedTimestamp",
                "stageTimestamp",
                "annotations",
            ]
        );
        assert_eq!(json["kind"], "Event");
        assert_eq!(json["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(json["level"], "Metadata");
        assert_eq!(json["stage"], "ResponseComplete");
        assert_eq!(
            json["user"],
            json!({
                "username": "alice",
                "uid": "u-1",
                "groups": ["dev", "system:authenticated"],
                "extra": {"scopes": ["a"]},
            })
        );
        assert_eq!(json["sourceIPs"], json!(["10.0.0.7"]));
        assert_eq!(
            json["objectRef"],
            json!({
                "resource": "imagestreams",
                "namespace": "ns",
                "apiGroup": "image.openshift.io",
                "apiVersion": "v1",
            })
        );
        assert_eq!(json["responseStatus"], json!({"metadata": {}, "code": 201}));
        assert_eq!(
            json["requestReceivedTimestamp"],
            "2023-11-14T22:13:20.000005Z"
        );
        assert_eq!(json["stageTimestamp"], "2023-11-14T22:13:20.250000Z");
        assert_eq!(
            json["annotations"],
            json!({
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed",
            })
        );
    }

    #[test]
    fn unauthenticated_denied_and_impersonated_events() {
        let unauthenticated = AuditEvent {
            user: None,
            source_ip: None,
            user_agent: None,
            object_ref: None,
            decision: None,
            verb: "get".into(),
            code: 401,
            ..event("id-2")
        };
        let json = unauthenticated.to_json();
        assert_eq!(json["user"], json!({}));
        for absent in [
            "impersonatedUser",
            "sourceIPs",
            "userAgent",
            "objectRef",
            "annotations",
        ] {
            assert!(json.get(absent).is_none(), "{absent} should be left out");
        }
        let impersonating = AuditEvent {
            impersonated: Some(UserInfo {
                name: "bob".into(),
                ..UserInfo::default()
            }),
            decision: Some((false, String::new())),
            code: 403,
            ..event("id-3")
        };
        let json = impersonating.to_json();
        assert_eq!(json["impersonatedUser"], json!({"username": "bob"}));
        assert_eq!(
            json["annotations"]["authorization.k8s.io/decision"],
            "forbid"
        );
        assert_eq!(json["annotations"]["authorization.k8s.io/reason"], "");
    }

    #[test]
    fn writes_and_denials_are_recorded_successful_reads_are_not() {
        for verb in [
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
            "post",
            "put",
        ] {
            assert!(should_record(verb, 200), "{verb}");
            assert!(should_record(verb, 409), "{verb} failing");
        }
        for verb in ["get", "list", "watch"] {
            assert!(!should_record(verb, 200), "{verb}");
            assert!(!should_record(verb, 404), "{verb}");
            assert!(should_record(verb, 401), "{verb} unauthenticated");
            assert!(should_record(verb, 403), "{verb} forbidden");
        }
    }

    #[test]
    fn events_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit").join("audit.log");
        let log = AuditLog::open(&path).expect("open");
        log.record(&event("id-1"));
        log.record(&event("id-2"));
        assert_eq!(log.dropped(), 0);
        log.close();
        let text = std::fs::read_to_string(&path).expect("read");
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("a JSON line");
                v["auditID"].as_str().expect("auditID").to_string()
            })
            .collect();
        assert_eq!(ids, ["id-1", "id-2"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Reopening appends.
        let log = AuditLog::open(&path).expect("reopen");
        log.record(&event("id-3"));
        log.close();
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3);
    }

    /// An output whose writes wait until the test lets them through.
    struct Gated {
        entered: mpsc::Sender<()>,
        gate: Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            // A closed gate sender opens the gate for good.
            let _ = self.gate.recv();
            self.written.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_events_instead_of_blocking() {
        let (entered_tx, entered) = mpsc::channel();
        let (open_gate, gate) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let out = Gated {
            entered: entered_tx,
            gate,
            written: written.clone(),
        };
        let log = AuditLog::start(Box::new(out), 1).expect("start");
        log.record(&event("id-1"));
        // The writer holds id-1 and is stuck writing it: one queue slot is left.
        entered.recv().expect("writer writes");
        log.record(&event("id-2"));
        log.record(&event("id-3"));
        assert_eq!(log.dropped(), 1);
        drop(open_gate);
        log.close();
        let written = written.lock().expect("buffer");
        let text = String::from_utf8_lossy(&written);
        let ids: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("\"auditID\":\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(ids, ["id-1", "id-2"]);
    }

    #[test]
    fn warnings_are_throttled() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert!(throttle.ready(start));
        assert!(!throttle.ready(start + Duration::from_secs(5)));
        assert!(throttle.ready(start + Duration::from_secs(11)));
    }

    #[test]
    fn the_clients_audit_id_is_kept_and_a_missing_one_is_made() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("Audit-ID", "agg-1".parse().expect("value"));
        assert_eq!(AuditId::of_request(&headers).as_str(), "agg-1");

        headers.insert("audit-id", "".parse().expect("value"));
        let made = AuditId::of_request(&headers);
        assert!(uuid::Uuid::parse_str(made.as_str()).is_ok(), "{made:?}");
        let other = AuditId::of_request(&axum::http::HeaderMap::new());
        assert_ne!(made, other);
    }
}
