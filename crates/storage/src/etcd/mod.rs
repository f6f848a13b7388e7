//! The etcd v3 backend, laid out like openshift-apiserver (spec `k8s-apiserver-semantics.md` §9).
//!
//! Keys handed to the [`Store`] trait (`/imagestreams/<ns>/<name>`) are stored under the
//! configured prefix (`/openshift.io/imagestreams/<ns>/<name>`); resourceVersion is the etcd
//! revision; create, update and delete are single Txns on the key's mod revision, exactly the
//! shapes kube-apiserver's etcd3 store sends. Watches reconnect after an etcd restart and
//! resume from the last revision they delivered.

use std::time::Duration;

use bytes::Bytes;

mod progress;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use progress::ProgressSupport;
pub use progress::{version_has_reliable_progress, ProgressTrust};

/// gRPC's default 4 MiB response limit is too small for a page of large objects; kube-apiserver
/// lifts it to the maximum too.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

use crate::watch::WatchFeeder;
use crate::{
    prefix_end, validate_key, Event, EventKind, GetResponse, KeyValue, RangeRequest, RangeResponse,
    Result, Revision, StorageError, Store, WatchMessage, WatchStream,
};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://127.0.0.1:2379`-style endpoints (kube-apiserver's `--etcd-servers`).
    pub endpoints: Vec<String>,
    /// The key prefix (`--etcd-prefix`), e.g. `openshift.io`; stored keys start with `/<prefix>`.
    pub prefix: String,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    /// Whether etcd's watch progress notifications are trusted (`--etcd-watch-progress`): by
    /// default decided from the servers' versions (Debian 12's etcd 3.4.23 can report
    /// progress ahead of events it has not sent yet; 3.4.31+, 3.5.13+ and 3.6 cannot).
    pub watch_progress: ProgressTrust,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>, prefix: impl Into<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: prefix.into(),
            dial_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            watch_progress: ProgressTrust::Detect,
        }
    }
}

/// The etcd store. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// A KV client that accepts responses as large as etcd sends (lists of large objects).
    kv: KvClient,
    /// `/openshift.io`: no trailing slash; keys from the trait start with `/`.
    prefix: String,
    progress: ProgressSupport,
}

impl EtcdStore {
    /// Connects and checks that etcd answers: fails at once when etcd is not there.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let store = Self::new(config).await?;
        store.current_revision().await?;
        store.detect_progress_support().await;
        Ok(store)
    }

    /// Decides again whether watch progress can be trusted (from the endpoints' versions,
    /// unless forced). Called once etcd answers; watches call it again when they reconnect.
    pub async fn detect_progress_support(&self) -> bool {
        self.progress.detect().await
    }

    /// The store without contacting etcd: the client connects lazily and reconnects on each
    /// request, so a caller can wait for a late etcd with `current_revision` on this one
    /// store. Fails only on a malformed endpoint.
    pub async fn new(config: EtcdConfig) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        // etcd-client's balanced channel dials on the first request; with no user set, this
        // does no I/O.
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(unavailable)?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        Ok(EtcdStore {
            kv,
            client,
            prefix: normalize_prefix(&config.prefix),
            progress: ProgressSupport::new(
                config.watch_progress,
                config.endpoints.clone(),
                config.dial_timeout,
            ),
        })
    }

    /// The raw client, for benchmarks that compare against plain etcd.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn full(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn strip(&self, full: &[u8]) -> Result<String> {
        let s = std::str::from_utf8(full).map_err(|_| StorageError::Corrupt {
            key: String::from_utf8_lossy(full).into_owned(),
            reason: "key is not UTF-8".to_string(),
        })?;
        Ok(s.strip_prefix(&self.prefix).unwrap_or(s).to_string())
    }

    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// The current value of `key` carried in a failed Txn's else-branch Get.
    fn current_from(&self, resp: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.kv(kv)).transpose();
            }
        }
        Ok(None)
    }
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

fn unavailable(e: etcd_client::Error) -> StorageError {
    StorageError::Unavailable(format!("etcd: {e}"))
}

/// Maps the gRPC errors etcd uses for revision bounds to their typed errors.
fn range_error(e: etcd_client::Error, requested: Revision) -> StorageError {
    let text = e.to_string();
    if text.contains("required revision has been compacted") {
        StorageError::Compacted {
            requested,
            compacted: 0,
        }
    } else if text.contains("required revision is a future revision") {
        StorageError::FutureRevision {
            requested,
            current: 0,
        }
    } else {
        unavailable(e)
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<GetResponse> {
        validate_key(key)?;
        let resp = self
            .kv
            .clone()
            .get(self.full(key), None)
            .await
            .map_err(unavailable)?;
        Ok(GetResponse {
            kv: resp.kvs().first().map(|kv| self.kv(kv)).transpose()?,
            revision: revision_of(resp.header()),
        })
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let full_prefix = self.full(&req.prefix);
        let start = match &req.start {
            Some(s) if s.as_str() > req.prefix.as_str() => self.full(s),
            _ => full_prefix.clone(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(&full_prefix));
        if req.limit > 0 {
            options = options.with_limit(req.limit as i64);
        }
        if let Some(r) = req.revision.filter(|r| *r > 0) {
            options = options.with_revision(r);
        }
        let resp = self
            .kv
            .clone()
            .get(start, Some(options))
            .await
            .map_err(|e| range_error(e, req.revision.unwrap_or(0)))?;
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.kv(kv))
            .collect::<Result<Vec<_>>>()?;
        let remaining = (resp.count() as u64).saturating_sub(kvs.len() as u64);
        Ok(RangeResponse {
            revision: req
                .revision
                .filter(|r| *r > 0)
                .unwrap_or_else(|| revision_of(resp.header())),
            remaining,
            more: resp.more(),
            kvs,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        validate_key(key)?;
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(revision_of(resp.header()))
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        validate_key(key)?;
        let full = self.full(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            )])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        if resp.succeeded() {
            return Ok(revision_of(resp.header()));
        }
        match self.current_from(&resp)? {
            Some(current) => Err(StorageError::Conflict {
                key: key.to_string(),
                expected,
                current: Some(Box::new(current)),
            }),
            None => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        validate_key(key)?;
        let full = self.full(key);
        let delete = TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()));
        let txn = match expected {
            Some(r) => Txn::new()
                .when([Compare::mod_revision(full.clone(), CompareOp::Equal, r)])
                .and_then([delete])
                .or_else([TxnOp::get(full, None)]),
            None => Txn::new().and_then([delete]),
        };
        let resp = self.kv.clone().txn(txn).await.map_err(unavailable)?;
        let not_found = || StorageError::NotFound {
            key: key.to_string(),
        };
        if !resp.succeeded() {
            return match self.current_from(&resp)? {
                Some(current) => Err(StorageError::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or(0),
                    current: Some(Box::new(current)),
                }),
                None => Err(not_found()),
            };
        }
        let revision = revision_of(resp.header());
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op {
                if let Some(prev) = del.prev_kvs().first() {
                    return Ok((revision, self.kv(prev)?));
                }
            }
        }
        Err(not_found())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (stream, feeder) = WatchStream::channel(64);
        let mut task = EtcdWatch {
            store: self.clone(),
            full_prefix: self.full(prefix),
            sent: after,
            progressed: after,
            feeder,
        };
        // Open the first watch here so a compacted start revision fails the call itself.
        let first = task.open().await?;
        tokio::spawn(async move { task.run(first).await });
        Ok(stream)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let key = if self.prefix.is_empty() {
            "/".to_string()
        } else {
            self.prefix.clone()
        };
        let resp = self
            .kv
            .clone()
            .get(key, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(unavailable)?;
        Ok(revision_of(resp.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let options = etcd_client::CompactionOptions::new().with_physical();
        self.client
            .kv_client()
            .compact(revision, Some(options))
            .await
            .map(|_| ())
            .map_err(|e| range_error(e, revision))
    }

    fn reliable_progress(&self) -> bool {
        self.progress.reliable()
    }
}

/// One logical watch: survives etcd restarts by re-watching from the last delivered revision.
struct EtcdWatch {
    store: EtcdStore,
    full_prefix: String,
    /// The revision of the last event delivered: events at or below it are duplicates, and a
    /// broken stream resumes after it. Progress notifications never move it, because etcd
    /// before 3.4.25 may report progress ahead of events it still has to send.
    sent: Revision,
    /// The highest revision reported as progress (never below `sent`).
    progressed: Revision,
    feeder: WatchFeeder,
}

type EtcdStreams = (
    etcd_client::WatchRequestSender,
    etcd_client::WatchResponseStream,
);

/// What one etcd watch stream ended with.
enum StreamEnd {
    /// The consumer went away.
    Closed,
    /// The events are gone (compacted): the consumer is told and the watch ends.
    Compacted(Revision),
    /// The connection broke; watch again from `sent`.
    Broken(String),
}

impl EtcdWatch {
    async fn open(&mut self) -> Result<EtcdStreams> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.sent + 1)
            .with_progress_notify();
        let stream = self
            .store
            .client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .watch(self.full_prefix.clone(), Some(options))
            .await
            .map_err(unavailable)?;
        let (sender, mut responses) = stream.split();
        // The first response says whether the watch was created or refused as compacted.
        match responses.message().await.map_err(unavailable)? {
            Some(resp) if resp.compact_revision() > 0 => Err(StorageError::Compacted {
                requested: self.sent + 1,
                compacted: resp.compact_revision(),
            }),
            Some(resp) if resp.canceled() => Err(StorageError::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            ))),
            Some(_) => Ok((sender, responses)),
            None => Err(StorageError::Unavailable("etcd closed the watch".into())),
        }
    }

    /// Opens the stream again after a break, first re-deciding whether progress can be
    /// trusted: the etcd now answering may be another version.
    async fn reopen(&mut self) -> Result<EtcdStreams> {
        self.store.detect_progress_support().await;
        self.open().await
    }

    async fn run(&mut self, first: EtcdStreams) {
        let mut streams = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let current = match streams.take() {
                Some(s) => s,
                None => match self.reopen().await {
                    Ok(s) => {
                        backoff = Duration::from_millis(100);
                        s
                    }
                    Err(e @ StorageError::Compacted { .. }) => {
                        let _ = self.feeder.send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, prefix = %self.full_prefix, "etcd watch reconnecting");
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = self.feeder.tx.closed() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            match self.follow(current).await {
                StreamEnd::Closed => return,
                StreamEnd::Compacted(compacted) => {
                    let err = StorageError::Compacted {
                        requested: self.sent + 1,
                        compacted,
                    };
                    let _ = self.feeder.send(Err(err)).await;
                    return;
                }
                StreamEnd::Broken(reason) => {
                    tracing::warn!(%reason, prefix = %self.full_prefix, sent = self.sent, "etcd watch broke; resuming");
                }
            }
        }
    }

    async fn follow(&mut self, (mut sender, mut responses): EtcdStreams) -> StreamEnd {
        loop {
            tokio::select! {
                msg = responses.message() => {
                    let resp = match msg {
                        Ok(Some(resp)) => resp,
                        Ok(None) => return StreamEnd::Broken("stream ended".into()),
                        Err(e) => return StreamEnd::Broken(e.to_string()),
                    };
                    if let Some(end) = self.handle(resp).await {
                        return end;
                    }
                }
                req = self.feeder.progress_requests.recv() => {
                    if req.is_none() {
                        return StreamEnd::Closed;
                    }
                    if let Err(e) = sender.request_progress().await {
                        return StreamEnd::Broken(e.to_string());
                    }
                }
                () = self.feeder.tx.closed() => return StreamEnd::Closed,
            }
        }
    }

    async fn handle(&mut self, resp: etcd_client::WatchResponse) -> Option<StreamEnd> {
        if resp.compact_revision() > 0 {
            return Some(StreamEnd::Compacted(resp.compact_revision()));
        }
        if resp.canceled() {
            return Some(StreamEnd::Broken(format!(
                "canceled: {}",
                resp.cancel_reason()
            )));
        }
        if resp.events().is_empty() {
            // A progress notification: nothing under the prefix changed up to this revision.
            let revision = revision_of(resp.header());
            self.progressed = self.progressed.max(revision).max(self.sent);
            let ok = self
                .feeder
                .send(Ok(WatchMessage::Progress(self.progressed)))
                .await;
            return (!ok).then_some(StreamEnd::Closed);
        }
        let mut events = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            match self.convert(ev) {
                Ok(Some(event)) if event.revision() > self.sent => events.push(event),
                Ok(_) => {}
                Err(e) => {
                    let _ = self.feeder.send(Err(e)).await;
                    return Some(StreamEnd::Closed);
                }
            }
        }
        let last = events.last().map(Event::revision)?;
        self.sent = last;
        self.progressed = self.progressed.max(last);
        let ok = self.feeder.send(Ok(WatchMessage::Events(events))).await;
        (!ok).then_some(StreamEnd::Closed)
    }

    fn convert(&self, ev: &etcd_client::Event) -> Result<Option<Event>> {
        let Some(kv) = ev.kv() else {
            return Ok(None);
        };
        let kind = match ev.event_type() {
            etcd_client::EventType::Put => EventKind::Put,
            etcd_client::EventType::Delete => EventKind::Delete,
        };
        let mut kv = self.store.kv(kv)?;
        if kind == EventKind::Delete {
            kv.value = Bytes::new();
            kv.create_revision = 0;
        }
        Ok(Some(Event { kind, kv }))
    }
}
