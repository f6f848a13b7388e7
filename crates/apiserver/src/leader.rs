//! Leader election for the in-process controllers: one replica runs them at a time.
//!
//! The algorithm is client-go's `leaderelection`: a lock record names its holder, how long the
//! lease lasts and when it was last renewed. A candidate takes the lock when it is absent,
//! already its own, released (no holder), or expired. Expiry is judged on the candidate's own
//! clock, from the moment it last *saw the record change*, never from the times written in the
//! record: replicas with skewed clocks still agree. The leader renews every retry period and
//! steps down when it could not renew for the renew deadline, which is shorter than the lease,
//! so it stops before anyone else may start.
//!
//! Two places can hold the record ([`LockBackend`]): a `coordination.k8s.io/v1` Lease
//! ([`LeaseLock`], when the server runs in a cluster) or a key of our own store
//! ([`StoreLock`], etcd or the embedded file).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use storage::{Revision, StorageError, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else wrote the record since it was read (or created it first).
    #[error("the lock record was changed by someone else")]
    Conflict,
    #[error("{0}")]
    Other(String),
}

/// The lock record (client-go's `LeaderElectionRecord`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Empty when the lock was released.
    pub holder_identity: String,
    pub lease_duration_seconds: i32,
    #[serde(with = "micro_time")]
    pub acquire_time: Timestamp,
    #[serde(with = "micro_time")]
    pub renew_time: Timestamp,
    /// How many times the lock changed hands.
    pub lease_transitions: i32,
}

/// RFC 3339 with microseconds, the MicroTime format of Lease objects.
mod micro_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{time:.6}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the lock record lives. Writes are compare-and-swap on an opaque version.
#[async_trait]
pub trait LockBackend: Send + Sync {
    /// The record and its version, or `None` when there is none yet.
    async fn get(&self) -> Result<Option<(LeaderRecord, String)>, LockError>;
    /// Creates the record; [`LockError::Conflict`] if it already exists.
    async fn create(&self, record: &LeaderRecord) -> Result<(), LockError>;
    /// Replaces the record if it is still at `version`; [`LockError::Conflict`] otherwise.
    async fn update(&self, record: &LeaderRecord, version: &str) -> Result<(), LockError>;
    /// The lock's name for logs.
    fn describe(&self) -> String;
}

/// The record as JSON under one key of our store; the version is the key's mod revision.
pub struct StoreLock {
    store: Arc<dyn Store>,
    key: String,
}

impl StoreLock {
    pub fn new(store: Arc<dyn Store>, key: impl Into<String>) -> StoreLock {
        StoreLock {
            store,
            key: key.into(),
        }
    }

    fn encode(record: &LeaderRecord) -> Result<Bytes, LockError> {
        serde_json::to_vec(record)
            .map(Bytes::from)
            .map_err(|e| LockError::Other(format!("encoding the leader record: {e}")))
    }
}

/// Lost compare-and-swaps (and a record deleted under us) are conflicts; the rest is not.
fn store_lock_error(error: StorageError) -> LockError {
    match error {
        StorageError::AlreadyExists { .. }
        | StorageError::Conflict { .. }
        | StorageError::NotFound { .. } => LockError::Conflict,
        other => LockError::Other(other.to_string()),
    }
}

#[async_trait]
impl LockBackend for StoreLock {
    async fn get(&self) -> Result<Option<(LeaderRecord, String)>, LockError> {
        let response = self.store.get(&self.key).await.map_err(store_lock_error)?;
        let Some(kv) = response.kv else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&kv.value).map_err(|e| {
            LockError::Other(format!("decoding the leader record at {}: {e}", self.key))
        })?;
        Ok(Some((record, kv.mod_revision.to_string())))
    }

    async fn create(&self, record: &LeaderRecord) -> Result<(), LockError> {
        let value = Self::encode(record)?;
        self.store
            .create(&self.key, value)
            .await
            .map(drop)
            .map_err(store_lock_error)
    }

    async fn update(&self, record: &LeaderRecord, version: &str) -> Result<(), LockError> {
        let expected: Revision = version
            .parse()
            .map_err(|_| LockError::Other(format!("invalid lock version {version:?}")))?;
        let value = Self::encode(record)?;
        self.store
            .update(&self.key, value, expected)
            .await
            .map(drop)
            .map_err(store_lock_error)
    }

    fn describe(&self) -> String {
        format!("store key {}", self.key)
    }
}

/// The record as a `coordination.k8s.io/v1` Lease; the version is its resourceVersion.
pub struct LeaseLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
}

impl LeaseLock {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> LeaseLock {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    fn lease(&self, record: &LeaderRecord, resource_version: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: resource_version.map(str::to_string),
                ..ObjectMeta::default()
            },
            spec: Some(lease_spec_of(record)),
        }
    }
}

fn lease_lock_error(error: kube::Error) -> LockError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LockError::Conflict,
        other => LockError::Other(other.to_string()),
    }
}

/// client-go's `LeaderElectionRecordToLeaseSpec`.
fn lease_spec_of(record: &LeaderRecord) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(record.holder_identity.clone()),
        lease_duration_seconds: Some(record.lease_duration_seconds),
        acquire_time: Some(MicroTime(record.acquire_time)),
        renew_time: Some(MicroTime(record.renew_time)),
        lease_transitions: Some(record.lease_transitions),
        ..LeaseSpec::default()
    }
}

/// client-go's `LeaseSpecToLeaderElectionRecord`: missing fields read as a released lock.
fn record_of_lease_spec(spec: Option<&LeaseSpec>) -> LeaderRecord {
    let empty = LeaseSpec::default();
    let spec = spec.unwrap_or(&empty);
    let time = |t: &Option<MicroTime>| t.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    LeaderRecord {
        holder_identity: spec.holder_identity.clone().unwrap_or_default(),
        lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        acquire_time: time(&spec.acquire_time),
        renew_time: time(&spec.renew_time),
        lease_transitions: spec.lease_transitions.unwrap_or(0),
    }
}

#[async_trait]
impl LockBackend for LeaseLock {
    async fn get(&self) -> Result<Option<(LeaderRecord, String)>, LockError> {
        let lease = match self.api.get(&self.name).await {
            Ok(lease) => lease,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            Err(e) => return Err(lease_lock_error(e)),
        };
        let version = lease.metadata.resource_version.ok_or_else(|| {
            LockError::Other(format!("{} has no resourceVersion", self.describe()))
        })?;
        Ok(Some((record_of_lease_spec(lease.spec.as_ref()), version)))
    }

    async fn create(&self, record: &LeaderRecord) -> Result<(), LockError> {
        self.api
            .create(&PostParams::default(), &self.lease(record, None))
            .await
            .map(drop)
            .map_err(lease_lock_error)
    }

    async fn update(&self, record: &LeaderRecord, version: &str) -> Result<(), LockError> {
        let lease = self.lease(record, Some(version));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(drop)
            .map_err(lease_lock_error)
    }

    fn describe(&self) -> String {
        format!("lease {}/{}", self.namespace, self.name)
    }
}

/// How long a lease lasts and how often it is tried and renewed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionTiming {
    /// How long others wait, from the last change they saw, before taking the lock over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often candidates try and the leader renews.
    pub retry_period: Duration,
}

impl Default for ElectionTiming {
    /// kube-controller-manager's defaults.
    fn default() -> Self {
        ElectionTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings under which two replicas could lead at once (client-go's checks).
#[derive(Debug, thiserror::Error)]
pub enum InvalidTiming {
    #[error("the lease duration must be greater than the renew deadline")]
    LeaseNotLongerThanDeadline,
    #[error("the renew deadline must be greater than 1.2 times the retry period")]
    DeadlineTooShortForRetries,
    #[error("the retry period must be positive")]
    NoRetryPeriod,
    #[error("the lease duration must be a whole number of seconds that fits an i32")]
    LeaseNotWholeSeconds,
}

impl ElectionTiming {
    pub fn validate(&self) -> Result<(), InvalidTiming> {
        if self.retry_period.is_zero() {
            return Err(InvalidTiming::NoRetryPeriod);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(InvalidTiming::LeaseNotLongerThanDeadline);
        }
        if self.renew_deadline <= self.retry_period.mul_f64(1.2) {
            return Err(InvalidTiming::DeadlineTooShortForRetries);
        }
        if self.lease_seconds().is_none() {
            return Err(InvalidTiming::LeaseNotWholeSeconds);
        }
        Ok(())
    }

    fn lease_seconds(&self) -> Option<i32> {
        if self.lease_duration.subsec_nanos() != 0 {
            return None;
        }
        i32::try_from(self.lease_duration.as_secs()).ok()
    }
}

/// One candidate for the lock.
pub struct LeaderElector {
    backend: Arc<dyn LockBackend>,
    identity: String,
    /// The lease duration, as written into the record.
    lease_seconds: i32,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl LeaderElector {
    /// `identity` must be unique per replica (e.g. the host name and a random suffix).
    pub fn new(
        backend: Arc<dyn LockBackend>,
        identity: impl Into<String>,
        timing: ElectionTiming,
    ) -> Result<LeaderElector, InvalidTiming> {
        timing.validate()?;
        let lease_seconds = timing
            .lease_seconds()
            .ok_or(InvalidTiming::LeaseNotWholeSeconds)?;
        Ok(LeaderElector {
            backend,
            identity: identity.into(),
            lease_seconds,
            renew_deadline: timing.renew_deadline,
            retry_period: timing.retry_period,
        })
    }

    /// Campaigns until `shutdown` fires (or its sender goes away). The returned receiver is
    /// true while this replica leads; on shutdown a leader turns it false, then releases the
    /// lock so another replica takes over within a retry period.
    pub fn run(self, shutdown: watch::Receiver<bool>) -> (watch::Receiver<bool>, JoinHandle<()>) {
        let (leading_tx, leading_rx) = watch::channel(false);
        let election = Election {
            elector: self,
            observed: None,
        };
        let handle = tokio::spawn(election.run(leading_tx, shutdown));
        (leading_rx, handle)
    }
}

/// The last version of the record seen, and when (on our clock) it was first seen.
struct Observed {
    version: String,
    at: Instant,
}

/// The outcome of one try.
enum Attempt {
    /// The lock is ours (acquired or renewed).
    Held,
    /// Someone else holds a lease that has not expired.
    HeldByOther(String),
    Failed(LockError),
}

/// How a term of leadership ended.
enum TermEnd {
    Shutdown,
    Lost,
}

struct Election {
    elector: LeaderElector,
    observed: Option<Observed>,
}

impl Election {
    async fn run(mut self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let lock = self.elector.backend.describe();
        let identity = self.elector.identity.clone();
        loop {
            if !self.acquire(&mut shutdown).await {
                return;
            }
            if shutdown_fired(&shutdown) {
                // Won just as the server stops: hand the lock straight back.
                self.release().await;
                return;
            }
            leading.send_replace(true);
            tracing::info!(%identity, %lock, "became leader");
            let end = self.renew_until_lost(&mut shutdown).await;
            // Controllers stop first, so the next leader does not overlap them for long.
            leading.send_replace(false);
            match end {
                TermEnd::Shutdown => {
                    self.release().await;
                    return;
                }
                TermEnd::Lost => tracing::warn!(%identity, %lock, "lost leadership"),
            }
        }
    }

    /// Tries every retry period (jittered so candidates do not move in lockstep) until the
    /// lock is ours (true) or shutdown (false).
    async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if shutdown_fired(shutdown) {
                return false;
            }
            // Not raced against shutdown: a write cut off halfway could leave the lock ours
            // without our knowing, and nobody could take it before it expires.
            let attempt =
                tokio::time::timeout(self.elector.renew_deadline, self.try_acquire_or_renew())
                    .await;
            match attempt {
                Ok(Attempt::Held) => return true,
                Ok(Attempt::HeldByOther(holder)) => {
                    tracing::debug!(%holder, "the leader lock is held by another replica");
                }
                Ok(Attempt::Failed(error)) => {
                    tracing::debug!(%error, "acquiring the leader lock failed");
                }
                Err(_) => tracing::debug!("acquiring the leader lock timed out"),
            }
            tokio::select! {
                _ = signalled(shutdown) => return false,
                _ = tokio::time::sleep(jittered(self.elector.retry_period)) => {}
            }
        }
    }

    /// Renews every retry period until shutdown, or until no renewal succeeded for the renew
    /// deadline, or someone else took the lock.
    async fn renew_until_lost(&mut self, shutdown: &mut watch::Receiver<bool>) -> TermEnd {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = signalled(shutdown) => return TermEnd::Shutdown,
                _ = tokio::time::sleep(self.elector.retry_period) => {}
            }
            let deadline = renewed + self.elector.renew_deadline;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Attempt::Held) => renewed = Instant::now(),
                Ok(Attempt::HeldByOther(holder)) => {
                    tracing::warn!(%holder, "the leader lock was taken over");
                    return TermEnd::Lost;
                }
                Ok(Attempt::Failed(error)) => {
                    tracing::warn!(%error, "renewing the leader lock failed");
                    if Instant::now() >= deadline {
                        return TermEnd::Lost;
                    }
                }
                Err(_) => {
                    tracing::warn!("renewing the leader lock timed out");
                    return TermEnd::Lost;
                }
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let now = Timestamp::now();
        let current = match self.elector.backend.get().await {
            Ok(current) => current,
            Err(error) => return Attempt::Failed(error),
        };
        let Some((record, version)) = current else {
            let fresh = self.fresh_record(now, 0);
            return match self.elector.backend.create(&fresh).await {
                Ok(()) => Attempt::Held,
                Err(error) => Attempt::Failed(error),
            };
        };
        let seen_at = self.observe(version.as_str());
        let held_by_other =
            !record.holder_identity.is_empty() && record.holder_identity != self.elector.identity;
        if held_by_other && !expired(&record, seen_at) {
            return Attempt::HeldByOther(record.holder_identity);
        }
        let desired = if record.holder_identity == self.elector.identity {
            LeaderRecord {
                acquire_time: record.acquire_time,
                ..self.fresh_record(now, record.lease_transitions)
            }
        } else {
            self.fresh_record(now, record.lease_transitions.saturating_add(1))
        };
        match self.elector.backend.update(&desired, &version).await {
            Ok(()) => Attempt::Held,
            Err(error) => Attempt::Failed(error),
        }
    }

    /// Notes the record's version; returns when (on our clock) this version was first seen.
    fn observe(&mut self, version: &str) -> Instant {
        match &self.observed {
            Some(seen) if seen.version == version => seen.at,
            _ => {
                let at = Instant::now();
                self.observed = Some(Observed {
                    version: version.to_string(),
                    at,
                });
                at
            }
        }
    }

    fn fresh_record(&self, now: Timestamp, lease_transitions: i32) -> LeaderRecord {
        LeaderRecord {
            holder_identity: self.elector.identity.clone(),
            lease_duration_seconds: self.elector.lease_seconds,
            acquire_time: now,
            renew_time: now,
            lease_transitions,
        }
    }

    /// client-go's `ReleaseOnCancel`: no holder and a one-second lease, so the next candidate
    /// takes over at its next try instead of waiting for the lease to run out.
    async fn release(&mut self) {
        let lock = self.elector.backend.describe();
        match tokio::time::timeout(self.elector.renew_deadline, self.try_release()).await {
            Ok(Ok(true)) => tracing::info!(%lock, "released the leader lock"),
            Ok(Ok(false)) => tracing::info!(%lock, "the leader lock was no longer ours"),
            Ok(Err(error)) => tracing::warn!(%lock, %error, "releasing the leader lock failed"),
            Err(_) => tracing::warn!(%lock, "releasing the leader lock timed out"),
        }
    }

    async fn try_release(&self) -> Result<bool, LockError> {
        let Some((record, version)) = self.elector.backend.get().await? else {
            return Ok(false);
        };
        if record.holder_identity != self.elector.identity {
            return Ok(false);
        }
        let now = Timestamp::now();
        let released = LeaderRecord {
            holder_identity: String::new(),
            lease_duration_seconds: 1,
            acquire_time: now,
            renew_time: now,
            lease_transitions: record.lease_transitions,
        };
        self.elector.backend.update(&released, &version).await?;
        Ok(true)
    }
}

/// Whether the lease of `record`, unchanged since `seen_at`, has run out on our clock.
fn expired(record: &LeaderRecord, seen_at: Instant) -> bool {
    let lease = Duration::from_secs(u64::try_from(record.lease_duration_seconds).unwrap_or(0));
    seen_at + lease <= Instant::now()
}

/// `period` plus up to 20 % more.
fn jittered(period: Duration) -> Duration {
    // The low 53 bits of a v4 UUID are random (its version and variant bits are higher up);
    // 53 bits make a uniform f64 in [0, 1).
    let bits = (uuid::Uuid::new_v4().as_u128() as u64) & ((1u64 << 53) - 1);
    let fraction = bits as f64 / (1u64 << 53) as f64;
    period + period.mul_f64(0.2 * fraction)
}

fn shutdown_fired(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once shutdown fires; a dropped sender counts as shutdown (as in the controllers).
async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|fired| *fired).await;
}

/// Waits until leading is `want`; false when the elector has gone away. A gone elector's last
/// value (possibly true) must not count: it would restart the controller forever.
async fn leadership_is(leading: &mut watch::Receiver<bool>, want: bool) -> bool {
    if leading.has_changed().is_err() {
        return false;
    }
    // The guard wait_for returns is dropped here, never held across an await.
    leading.wait_for(|leads| *leads == want).await.is_ok()
}

/// Runs a controller only while this replica leads: `start(stop)` is spawned each time
/// leadership is gained, and `stop` fires (turns true) when it is lost or on shutdown; the
/// task is awaited before the next start, so two runs never overlap. Returns after shutdown
/// once the running task has finished, or when the elector has gone away.
///
/// For strictly no overlap with the next leader at shutdown, fire the elector's own shutdown
/// only after this returns (the elector releases the lock when it stops).
pub async fn run_while_leading<F, Fut>(
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    mut start: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            gained = leadership_is(&mut leading, true) => {
                if !gained {
                    return;
                }
            }
            _ = signalled(&mut shutdown) => return,
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(start(stop_rx));
        let shutting_down = tokio::select! {
            // An elector gone away leads no more either.
            _ = leadership_is(&mut leading, false) => false,
            _ = signalled(&mut shutdown) => true,
        };
        stop_tx.send_replace(true);
        if let Err(error) = task.await {
            tracing::error!(%error, "a leader-only task failed");
        }
        if shutting_down {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// An in-memory lock with failures on demand.
    #[derive(Default)]
    struct MemoryLock {
        slot: Mutex<Slot>,
        unavailable: AtomicBool,
    }

    #[derive(Default)]
    struct Slot {
        record: Option<LeaderRecord>,
        version: u64,
        /// Written instead of the next write, which then loses with a conflict (a racing
        /// replica that got there first).
        rival_write: Option<LeaderRecord>,
    }

    impl MemoryLock {
        fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
            self.slot.lock().expect("lock slot")
        }

        fn holder(&self) -> Option<String> {
            self.slot()
                .record
                .as_ref()
                .map(|r| r.holder_identity.clone())
        }

        fn transitions(&self) -> Option<i32> {
            self.slot().record.as_ref().map(|r| r.lease_transitions)
        }

        fn check_available(&self) -> Result<(), LockError> {
            if self.unavailable.load(Ordering::SeqCst) {
                return Err(LockError::Other("unavailable".into()));
            }
            Ok(())
        }

        fn write(&self, record: &LeaderRecord, expected: Option<u64>) -> Result<(), LockError> {
            self.check_available()?;
            let mut slot = self.slot();
            if let Some(rival) = slot.rival_write.take() {
                slot.record = Some(rival);
                slot.version += 1;
                return Err(LockError::Conflict);
            }
            let current = slot.record.as_ref().map(|_| slot.version);
            if current != expected {
                return Err(LockError::Conflict);
            }
            slot.record = Some(record.clone());
            slot.version += 1;
            Ok(())
        }
    }

    #[async_trait]
    impl LockBackend for MemoryLock {
        async fn get(&self) -> Result<Option<(LeaderRecord, String)>, LockError> {
            self.check_available()?;
            let slot = self.slot();
            Ok(slot.record.clone().map(|r| (r, slot.version.to_string())))
        }

        async fn create(&self, record: &LeaderRecord) -> Result<(), LockError> {
            self.write(record, None)
        }

        async fn update(&self, record: &LeaderRecord, version: &str) -> Result<(), LockError> {
            let expected = version.parse().expect("numeric version");
            self.write(record, Some(expected))
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    struct Candidate {
        leading: watch::Receiver<bool>,
        handle: JoinHandle<()>,
        shutdown: watch::Sender<bool>,
    }

    impl Candidate {
        fn start(lock: &Arc<MemoryLock>, identity: &str) -> Candidate {
            let (shutdown, shutdown_rx) = watch::channel(false);
            let elector = LeaderElector::new(lock.clone(), identity, ElectionTiming::default())
                .expect("valid timing");
            let (leading, handle) = elector.run(shutdown_rx);
            Candidate {
                leading,
                handle,
                shutdown,
            }
        }

        fn leads(&self) -> bool {
            *self.leading.borrow()
        }

        async fn stop(self) {
            self.shutdown.send_replace(true);
            self.handle.await.expect("elector task");
        }
    }

    async fn sleep_ms(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// Waits (in 100 ms steps, at most `limit`) until `done`; returns how long it took.
    async fn time_until(limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() <= limit, "not within {limit:?}");
            sleep_ms(100).await;
        }
        start.elapsed()
    }

    fn rival_record() -> LeaderRecord {
        // Records keep microseconds (MicroTime), so compare like with like.
        let micros = Timestamp::now().as_microsecond();
        let now = Timestamp::from_microsecond(micros).expect("a valid time");
        LeaderRecord {
            holder_identity: "rival".into(),
            lease_duration_seconds: 15,
            acquire_time: now,
            renew_time: now,
            lease_transitions: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_single_candidate_leads_renews_and_releases_on_shutdown() {
        let lock = Arc::new(MemoryLock::default());
        let a = Candidate::start(&lock, "a");
        sleep_ms(100).await;
        assert!(a.leads());
        assert_eq!(lock.holder().as_deref(), Some("a"));
        let version_before = lock.slot().version;
        sleep_ms(60_000).await;
        assert!(a.leads());
        assert!(
            lock.slot().version >= version_before + 25,
            "renewed every 2 s"
        );
        assert_eq!(lock.transitions(), Some(0));
        let leading = a.leading.clone();
        a.stop().await;
        assert!(!*leading.borrow());
        let slot = lock.slot();
        let record = slot.record.as_ref().expect("record");
        assert_eq!(record.holder_identity, "");
        assert_eq!(record.lease_duration_seconds, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn of_two_candidates_exactly_one_leads() {
        let lock = Arc::new(MemoryLock::default());
        let a = Candidate::start(&lock, "a");
        let b = Candidate::start(&lock, "b");
        sleep_ms(100).await;
        for _ in 0..120 {
            assert!(a.leads() ^ b.leads(), "exactly one leader");
            sleep_ms(500).await;
        }
        let leader = if a.leads() { "a" } else { "b" };
        assert_eq!(lock.holder().as_deref(), Some(leader));
        assert_eq!(lock.transitions(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_leader_is_replaced_after_the_lease_duration() {
        let lock = Arc::new(MemoryLock::default());
        let a = Candidate::start(&lock, "a");
        sleep_ms(100).await;
        let b = Candidate::start(&lock, "b");
        sleep_ms(10_000).await;
        assert!(a.leads() && !b.leads());
        // Death: no more renewals, no release.
        a.handle.abort();
        let took = time_until(Duration::from_secs(30), || b.leads()).await;
        // The last renewal was at most one retry period before; the lease counts from when
        // b saw it, and b tries every 2-2.4 s.
        assert!(took >= Duration::from_secs(13), "took over after {took:?}");
        assert!(took <= Duration::from_secs(21), "took over after {took:?}");
        assert_eq!(lock.holder().as_deref(), Some("b"));
        assert_eq!(lock.transitions(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_clean_shutdown_hands_over_within_a_retry_period() {
        let lock = Arc::new(MemoryLock::default());
        let a = Candidate::start(&lock, "a");
        sleep_ms(100).await;
        let b = Candidate::start(&lock, "b");
        sleep_ms(5_000).await;
        assert!(a.leads() && !b.leads());
        a.stop().await;
        let took = time_until(Duration::from_secs(10), || b.leads()).await;
        assert!(took <= Duration::from_secs(3), "took over after {took:?}");
        assert_eq!(lock.holder().as_deref(), Some("b"));
        assert_eq!(lock.transitions(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_loses_the_round() {
        let lock = Arc::new(MemoryLock::default());
        lock.slot().rival_write = Some(rival_record());
        let a = Candidate::start(&lock, "a");
        sleep_ms(100).await;
        assert!(!a.leads());
        assert_eq!(lock.holder().as_deref(), Some("rival"));
        sleep_ms(10_000).await;
        assert!(!a.leads(), "the rival's lease still runs");
        // The rival never renews: its lease runs out 15 s after a first saw it.
        time_until(Duration::from_secs(15), || a.leads()).await;
        assert_eq!(lock.holder().as_deref(), Some("a"));
        assert_eq!(lock.transitions(), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_steps_down_at_the_deadline_and_comes_back() {
        let lock = Arc::new(MemoryLock::default());
        let a = Candidate::start(&lock, "a");
        sleep_ms(100).await;
        assert!(a.leads());
        lock.unavailable.store(true, Ordering::SeqCst);
        let took = time_until(Duration::from_secs(20), || !a.leads()).await;
        assert!(
            took >= Duration::from_secs(8),
            "stepped down after {took:?}"
        );
        assert!(
            took <= Duration::from_millis(12_500),
            "stepped down after {took:?}"
        );
        lock.unavailable.store(false, Ordering::SeqCst);
        // The record still names a: it is taken back at once, without waiting for expiry.
        let took = time_until(Duration::from_secs(5), || a.leads()).await;
        assert!(took <= Duration::from_secs(3), "led again after {took:?}");
        assert_eq!(lock.transitions(), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn leader_only_tasks_start_on_gain_and_stop_on_loss_and_shutdown() {
        let (leading_tx, leading) = watch::channel(false);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let starts = Arc::new(AtomicUsize::new(0));
        let stops = Arc::new(AtomicUsize::new(0));
        let (s1, s2) = (starts.clone(), stops.clone());
        let runner = tokio::spawn(run_while_leading(leading, shutdown, move |mut stop| {
            s1.fetch_add(1, Ordering::SeqCst);
            let stops = s2.clone();
            async move {
                let _ = stop.changed().await;
                stops.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let counts = || (starts.load(Ordering::SeqCst), stops.load(Ordering::SeqCst));
        sleep_ms(10).await;
        assert_eq!(counts(), (0, 0));
        leading_tx.send_replace(true);
        sleep_ms(10).await;
        assert_eq!(counts(), (1, 0));
        leading_tx.send_replace(false);
        sleep_ms(10).await;
        assert_eq!(counts(), (1, 1));
        leading_tx.send_replace(true);
        sleep_ms(10).await;
        assert_eq!(counts(), (2, 1));
        shutdown_tx.send_replace(true);
        runner.await.expect("runner");
        assert_eq!(counts(), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn leader_only_tasks_stop_for_good_when_the_elector_goes_away() {
        let (leading_tx, leading) = watch::channel(false);
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let starts = Arc::new(AtomicUsize::new(0));
        let started = starts.clone();
        let runner = tokio::spawn(run_while_leading(leading, shutdown, move |mut stop| {
            started.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = stop.changed().await;
            }
        }));
        leading_tx.send_replace(true);
        sleep_ms(10).await;
        // The elector dies while leading: its last value stays true.
        drop(leading_tx);
        tokio::time::timeout(Duration::from_secs(1), runner)
            .await
            .expect("the runner returns")
            .expect("runner");
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn timings_are_checked_like_client_go() {
        assert!(ElectionTiming::default().validate().is_ok());
        let t = |lease, renew, retry_ms| ElectionTiming {
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(renew),
            retry_period: Duration::from_millis(retry_ms),
        };
        assert!(matches!(
            t(10, 10, 2_000).validate(),
            Err(InvalidTiming::LeaseNotLongerThanDeadline)
        ));
        assert!(matches!(
            t(15, 2, 2_000).validate(),
            Err(InvalidTiming::DeadlineTooShortForRetries)
        ));
        assert!(matches!(
            t(15, 10, 0).validate(),
            Err(InvalidTiming::NoRetryPeriod)
        ));
        let mut fractional = t(15, 10, 2_000);
        fractional.lease_duration += Duration::from_millis(500);
        assert!(matches!(
            fractional.validate(),
            Err(InvalidTiming::LeaseNotWholeSeconds)
        ));
    }

    #[test]
    fn records_round_trip_through_json_and_lease_specs() {
        let record = LeaderRecord {
            holder_identity: "replica-1".into(),
            lease_duration_seconds: 15,
            acquire_time: Timestamp::from_second(1_700_000_000).expect("time"),
            renew_time: Timestamp::new(1_700_000_010, 123_456_000).expect("time"),
            lease_transitions: 3,
        };
        let json = serde_json::to_value(&record).expect("encode");
        assert_eq!(
            json,
            serde_json::json!({
                "holderIdentity": "replica-1",
                "leaseDurationSeconds": 15,
                "acquireTime": "2023-11-14T22:13:20.000000Z",
                "renewTime": "2023-11-14T22:13:30.123456Z",
                "leaseTransitions": 3,
            })
        );
        let back: LeaderRecord = serde_json::from_value(json).expect("decode");
        assert_eq!(back, record);
        assert_eq!(record_of_lease_spec(Some(&lease_spec_of(&record))), record);
        let empty = record_of_lease_spec(None);
        assert_eq!(empty.holder_identity, "");
        assert_eq!(empty.renew_time, Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let period = Duration::from_secs(2);
        for _ in 0..100 {
            let d = jittered(period);
            assert!(d >= period && d < Duration::from_millis(2_400), "{d:?}");
        }
    }

    #[tokio::test]
    async fn store_lock_is_compare_and_swap_over_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = storage::embedded::EmbeddedStore::open(
            dir.path(),
            storage::embedded::Options::default(),
        )
        .expect("store");
        let lock = StoreLock::new(Arc::new(store), "/leases/test");
        assert!(lock.get().await.expect("get").is_none());
        let first = rival_record();
        lock.create(&first).await.expect("create");
        assert!(matches!(
            lock.create(&first).await,
            Err(LockError::Conflict)
        ));
        let (got, v1) = lock.get().await.expect("get").expect("record");
        assert_eq!(got, first);
        let second = LeaderRecord {
            holder_identity: "a".into(),
            lease_transitions: 1,
            ..first.clone()
        };
        lock.update(&second, &v1).await.expect("update");
        assert!(matches!(
            lock.update(&first, &v1).await,
            Err(LockError::Conflict)
        ));
        let (got, v2) = lock.get().await.expect("get").expect("record");
        assert_eq!(got, second);
        assert_ne!(v1, v2);
        assert_eq!(lock.describe(), "store key /leases/test");
    }
}
