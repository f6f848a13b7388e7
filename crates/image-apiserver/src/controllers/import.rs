//! The import controller (spec §14, openshift-controller-manager's image import controller),
//! in the server process. It is a client of the resources layer: it reads streams through the
//! typed registry and imports through [`ImageStreamImports::import`], the code a POST of an
//! ImageStreamImport runs.
//!
//! - A DockerImage spec tag whose generation is newer than what status observed is imported.
//! - A failed import is retried on its own, backing off from `FIRST_RETRY` (doubling, capped at
//!   the scheduled-import interval), instead of waiting for the generation to change.
//! - Scheduled tags are checked every interval, spread over it by a hash of their name and
//!   rate-limited: a HEAD of the tag's manifest first, and an import only when the digest moved.
//!
//! The loop ticks. When the streams' revision moved, it reads the streams changed since its
//! last scan (the watch cache's event window names them; a full list when the window has
//! moved on), so an idle server does nothing but the scheduled checks and a busy one decodes
//! only what changed.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use apimachinery::errors::ApiError;
use apimachinery::options::{FieldValidation, ListOptions, WriteOptions};
use apiserver::registry::{ManagedFields, ReadRevision, WriteContext};
use apiserver::resource::UserInfo;
use image_api::imports::{succeeded, IMPORT_SUCCESS, REPOSITORY_CHECK_ANNOTATION};
use image_api::{ImageImportSpec, ImageStream, ImageStreamImport, TagReference};
use importer::Importer;
use k8s_openapi::api::core::v1::{LocalObjectReference, ObjectReference};
use storage::Revision;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::metrics::ImportMetrics;
use crate::resources::imagestreamimport::ImageStreamImports;
use crate::resources::registries::Registries;

const CONTROLLER_USER: &str = "system:serviceaccount:openshift-infra:image-import-controller";
const FIRST_RETRY: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(250);
/// Scheduled checks in flight at once: each waits on a registry, never on the loop.
const CHECKS_IN_FLIGHT: usize = 16;

#[derive(Clone, Debug)]
pub struct ImportControllerConfig {
    /// `--scheduled-image-import-minimum-interval`.
    pub scheduled_interval: Duration,
    /// `--max-scheduled-image-imports-per-minute`.
    pub max_scheduled_per_minute: u32,
    /// `!--disable-scheduled-import`.
    pub scheduled: bool,
    /// Streams imported at once.
    pub concurrency: usize,
}

/// A spec tag of a stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TagKey {
    namespace: String,
    stream: String,
    tag: String,
}

impl TagKey {
    fn stream_key(&self) -> (String, String) {
        (self.namespace.clone(), self.stream.clone())
    }
}

struct Retry {
    attempts: u32,
    at: Instant,
}

/// What a queued import of a stream covers.
#[derive(Default)]
struct Queued {
    /// The tags whose generations ask for an import when it starts.
    by_generation: bool,
    /// Tags to import regardless (retries, moved scheduled tags).
    tags: HashSet<String>,
}

/// What a background job reports back to the loop.
enum Report {
    Imported(Outcome),
    Checked(Checked),
}

/// The answer of a scheduled check: whether the tag needs an import.
struct Checked {
    key: TagKey,
    /// The digest the registry named, when it answered.
    digest: Option<String>,
    import: bool,
}

/// What an import job reports back to the loop.
struct Outcome {
    stream: (String, String),
    /// Per tag: whether it was imported.
    tags: Vec<(String, bool)>,
}

pub struct ImportController {
    registries: Arc<Registries>,
    imports: Arc<ImageStreamImports>,
    importer: Arc<Importer>,
    metrics: Arc<ImportMetrics>,
    config: ImportControllerConfig,
}

/// The loop's memory.
#[derive(Default)]
struct State {
    scanned: Option<Revision>,
    retries: HashMap<TagKey, Retry>,
    schedule: HashMap<TagKey, Instant>,
    /// The digest a scheduled check last saw, per tag (a manifest list's digest is not the
    /// imported child's, so status alone cannot tell "unchanged").
    digests: HashMap<TagKey, String>,
    in_flight: HashSet<(String, String)>,
    checking: usize,
    /// Streams waiting for an import slot.
    queue: std::collections::BTreeMap<(String, String), Queued>,
    tokens: f64,
    /// The checks and imports running: aborted when the controller stops, so nothing of it
    /// outlives `run` (the store closes after it).
    tasks: tokio::task::JoinSet<()>,
}

impl ImportController {
    pub fn new(
        registries: Arc<Registries>,
        imports: Arc<ImageStreamImports>,
        importer: Arc<Importer>,
        metrics: Arc<ImportMetrics>,
        config: ImportControllerConfig,
    ) -> Self {
        ImportController {
            registries,
            imports,
            importer,
            metrics,
            config,
        }
    }

    /// Runs until `shutdown` fires.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Report>();
        let mut state = State::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    state.tasks.shutdown().await;
                    return;
                }
                Some(report) = done_rx.recv() => {
                    match report {
                        Report::Imported(outcome) => self.settle(&mut state, outcome),
                        Report::Checked(checked) => checked_in(&mut state, checked),
                    }
                    // A freed slot takes the next queued stream at once, not at the next tick.
                    self.dispatch(&mut state, &done_tx);
                }
                _ = tick.tick() => self.step(&mut state, &done_tx).await,
            }
            // Finished tasks reported through `done`; only their handles are left to drop.
            while state.tasks.try_join_next().is_some() {}
            self.importer_metrics(&state);
        }
    }

    fn importer_metrics(&self, state: &State) {
        let stats = self.importer.client().stats();
        self.metrics.sync_registry_requests(stats.by_class);
        self.metrics
            .scheduled_queue
            .set(state.schedule.len() as i64);
    }

    async fn step(self: &Arc<Self>, state: &mut State, done: &mpsc::UnboundedSender<Report>) {
        if !self.registries.streams.is_ready() {
            return;
        }
        let revision = self.registries.streams.revision();
        if state.scanned != Some(revision) {
            match self.scan(state).await {
                Ok(scanned) => state.scanned = Some(scanned),
                Err(e) => tracing::warn!(error = %e, "import controller: reading streams failed"),
            }
        }
        self.retry_due(state);
        if self.config.scheduled {
            self.check_scheduled(state, done);
        }
        self.dispatch(state, done);
    }

    /// Learns what the streams need, reading only those changed since the last scan when the
    /// cache still knows which they are (a full list otherwise): a busy server with many
    /// streams must not decode all of them every tick. Returns the revision scanned up to.
    async fn scan(&self, state: &mut State) -> Result<Revision, ApiError> {
        let streams = &self.registries.streams;
        if let Some(after) = state.scanned {
            if let Some((changed, revision)) = streams.streams_changed_since(after)? {
                let changed: Vec<_> = changed
                    .iter()
                    .map(|c| {
                        let key = (c.namespace.clone().unwrap_or_default(), c.name.clone());
                        (key, c.object.as_ref())
                    })
                    .collect();
                self.observe(state, &changed, false);
                return Ok(revision);
            }
        }
        // The cache's revision first: whatever changes after it is seen by the next scan.
        let revision = streams.revision();
        let (all, _) = streams.list_streams(None, &ListOptions::default()).await?;
        let all: Vec<_> = all.iter().map(|s| (stream_key(s), Some(s))).collect();
        self.observe(state, &all, true);
        Ok(revision)
    }

    /// Takes in the current state of `streams` (`None`: deleted): queues the imports they
    /// need, learns their scheduled tags and forgets what they no longer have. With
    /// `complete`, `streams` is every stream there is, and the rest is forgotten too.
    fn observe(
        &self,
        state: &mut State,
        streams: &[((String, String), Option<&ImageStream>)],
        complete: bool,
    ) {
        let mut scheduled = HashSet::new();
        let mut spec_tags = HashSet::new();
        for (key, stream) in streams {
            let Some(stream) = stream else {
                continue;
            };
            scheduled.extend(scheduled_tags(stream).iter().map(|t| tag_key(key, t)));
            spec_tags.extend(stream.spec.tags.iter().map(|t| tag_key(key, &t.name)));
            let pending = tags_needing_import(stream)
                .iter()
                .any(|t| !state.retries.contains_key(&tag_key(key, t)));
            if pending {
                state.queue.entry(key.clone()).or_default().by_generation = true;
            }
        }
        let seen: HashSet<&(String, String)> = streams.iter().map(|(k, _)| k).collect();
        let covered = |k: &TagKey| complete || seen.contains(&k.stream_key());
        state
            .schedule
            .retain(|k, _| !covered(k) || scheduled.contains(k));
        state
            .digests
            .retain(|k, _| !covered(k) || scheduled.contains(k));
        state
            .retries
            .retain(|k, _| !covered(k) || spec_tags.contains(k));
        let interval = self.config.scheduled_interval;
        for key in scheduled {
            state
                .schedule
                .entry(key.clone())
                .or_insert_with(|| Instant::now() + spread(&key, interval));
        }
    }

    fn retry_due(&self, state: &mut State) {
        let now = Instant::now();
        let due: Vec<TagKey> = state
            .retries
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(r) = state.retries.get_mut(&key) {
                // Not due again until this attempt reports back.
                r.at = now + self.config.scheduled_interval.max(FIRST_RETRY);
            }
            enqueue(state, &key);
        }
    }

    /// Due scheduled tags, as many as the per-minute budget allows: a HEAD first, an import
    /// only for a moved digest.
    fn check_scheduled(self: &Arc<Self>, state: &mut State, done: &mpsc::UnboundedSender<Report>) {
        let per_tick = f64::from(self.config.max_scheduled_per_minute) * TICK.as_secs_f64() / 60.0;
        let burst = f64::from(self.config.max_scheduled_per_minute.max(1));
        state.tokens = (state.tokens + per_tick).min(burst);
        let now = Instant::now();
        let mut due: Vec<TagKey> = state
            .schedule
            .iter()
            .filter(|(k, at)| **at <= now && !state.in_flight.contains(&k.stream_key()))
            .map(|(k, _)| k.clone())
            .collect();
        due.sort();
        for key in due {
            if state.tokens < 1.0 || state.checking >= CHECKS_IN_FLIGHT {
                break;
            }
            state.tokens -= 1.0;
            state.checking += 1;
            state
                .schedule
                .insert(key.clone(), now + self.config.scheduled_interval);
            let seen = state.digests.get(&key).cloned();
            let (this, done) = (self.clone(), done.clone());
            state.tasks.spawn(async move {
                let checked = this.check_one(key, seen).await;
                let _ = done.send(Report::Checked(checked));
            });
        }
    }

    /// A HEAD of the tag's manifest: an import is needed when the digest is neither the
    /// tag's current image nor the one the last check saw, or when the check failed (the
    /// import records why).
    async fn check_one(&self, key: TagKey, seen: Option<String>) -> Checked {
        let skip = |key| Checked {
            key,
            digest: None,
            import: false,
        };
        let Some(stream) = self.stream(&key).await else {
            return skip(key);
        };
        let Some(spec) = stream.spec_tag(&key.tag).filter(|t| importable(Some(t))) else {
            return skip(key);
        };
        let from = spec
            .from
            .as_ref()
            .and_then(|f| f.name.clone())
            .unwrap_or_default();
        let insecure = spec.import_policy.insecure;
        let keyring = self
            .registries
            .cluster
            .as_ref()
            .and_then(|c| c.keyring(&key.namespace));
        let checked = self
            .importer
            .current_digest(&from, insecure, keyring.as_ref())
            .await;
        let digest = match checked {
            Ok(d) => d,
            Err(status) => {
                tracing::debug!(tag = ?key, message = status.message.as_deref().unwrap_or(""),
                    "scheduled check failed; importing to record it");
                return Checked {
                    key,
                    digest: None,
                    import: true,
                };
            }
        };
        let unchanged = Some(digest.as_str()) == current_image(&stream, &key.tag)
            || Some(&digest) == seen.as_ref();
        Checked {
            key,
            digest: Some(digest),
            import: !unchanged,
        }
    }

    async fn stream(&self, key: &TagKey) -> Option<ImageStream> {
        self.registries
            .streams
            .get_stream(&key.namespace, &key.stream, ReadRevision::Any)
            .await
            .ok()
            .flatten()
    }

    /// Starts queued imports while slots are free, one per stream at a time.
    fn dispatch(self: &Arc<Self>, state: &mut State, done: &mpsc::UnboundedSender<Report>) {
        let limit = self.config.concurrency.max(1);
        let ready: Vec<(String, String)> = state
            .queue
            .keys()
            .filter(|k| !state.in_flight.contains(*k))
            .take(limit.saturating_sub(state.in_flight.len()))
            .cloned()
            .collect();
        for key in ready {
            let Some(queued) = state.queue.remove(&key) else {
                continue;
            };
            state.in_flight.insert(key.clone());
            let this = self.clone();
            let done = done.clone();
            state.tasks.spawn(async move {
                let tags = this.import_stream(&key, queued).await;
                let _ = done.send(Report::Imported(Outcome { stream: key, tags }));
            });
        }
    }

    /// Imports what `queued` asks for, judged on the stream as it is now.
    async fn import_stream(&self, key: &(String, String), queued: Queued) -> Vec<(String, bool)> {
        let current = self
            .registries
            .streams
            .get_stream(&key.0, &key.1, ReadRevision::Consistent)
            .await;
        let Ok(Some(stream)) = current else {
            return Vec::new();
        };
        let mut tags = queued.tags;
        if queued.by_generation {
            tags.extend(tags_needing_import(&stream));
        }
        let mut tags: Vec<String> = tags.into_iter().collect();
        tags.sort();
        if tags.is_empty() {
            return Vec::new();
        }
        self.import(&stream, &tags).await
    }

    async fn import(&self, stream: &ImageStream, tags: &[String]) -> Vec<(String, bool)> {
        let isi = import_request(stream, tags);
        let wanted: Vec<String> = isi
            .spec
            .images
            .iter()
            .filter_map(|i| i.to.as_ref().map(|t| t.name.clone()))
            .collect();
        let user = UserInfo {
            name: CONTROLLER_USER.to_string(),
            uid: String::new(),
            groups: vec!["system:serviceaccounts".to_string()],
            ..UserInfo::default()
        };
        let options = WriteOptions {
            dry_run: false,
            field_manager: Some("image-import-controller".to_string()),
            field_validation: FieldValidation::Ignore,
            force: None,
        };
        let ctx = WriteContext {
            namespace: stream.metadata.namespace.as_deref(),
            user: &user,
            user_agent: Some("image-import-controller"),
            options: &options,
            managed_fields: ManagedFields::RecordUpdate,
            expected_revision: None,
        };
        match self.imports.import(&ctx, isi).await {
            Ok(done) => wanted
                .into_iter()
                .zip(done.status.images.iter().map(|i| succeeded(&i.status)))
                .collect(),
            // The stream changed under the import (or went away): the next scan decides again.
            Err(ApiError::Conflict { .. }) | Err(ApiError::NotFound { .. }) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, stream = ?stream_key(stream), "import failed");
                wanted.into_iter().map(|t| (t, false)).collect()
            }
        }
    }

    /// Failed tags back off; imported ones forget their failures.
    fn settle(&self, state: &mut State, outcome: Outcome) {
        state.in_flight.remove(&outcome.stream);
        for (tag, ok) in outcome.tags {
            let key = tag_key(&outcome.stream, &tag);
            if ok {
                state.retries.remove(&key);
                continue;
            }
            let attempts = state.retries.get(&key).map_or(0, |r| r.attempts) + 1;
            let delay = backoff(attempts, self.config.scheduled_interval);
            state.retries.insert(
                key,
                Retry {
                    attempts,
                    at: Instant::now() + delay,
                },
            );
        }
    }
}

/// A scheduled check came back: a moved digest (or a failed check) asks for an import.
fn checked_in(state: &mut State, checked: Checked) {
    state.checking = state.checking.saturating_sub(1);
    if !checked.import {
        return;
    }
    if let Some(digest) = checked.digest {
        state.digests.insert(checked.key.clone(), digest);
    }
    enqueue(state, &checked.key);
}

/// Asks for an import of one tag (merged with what the stream has queued already).
fn enqueue(state: &mut State, key: &TagKey) {
    state
        .queue
        .entry(key.stream_key())
        .or_default()
        .tags
        .insert(key.tag.clone());
}

fn stream_key(s: &ImageStream) -> (String, String) {
    (
        s.metadata.namespace.clone().unwrap_or_default(),
        s.metadata.name.clone().unwrap_or_default(),
    )
}

fn tag_key(stream: &(String, String), tag: &str) -> TagKey {
    TagKey {
        namespace: stream.0.clone(),
        stream: stream.1.clone(),
        tag: tag.to_string(),
    }
}

/// A DockerImage tag that is not a mere reference.
fn importable(tag: Option<&TagReference>) -> bool {
    tag.is_some_and(|t| {
        !t.reference
            && t.from.as_ref().and_then(|f| f.kind.as_deref()) == Some("DockerImage")
            && t.from
                .as_ref()
                .and_then(|f| f.name.as_deref())
                .is_some_and(|n| !n.is_empty())
    })
}

fn scheduled_tags(stream: &ImageStream) -> Vec<String> {
    stream
        .spec
        .tags
        .iter()
        .filter(|t| t.import_policy.scheduled && importable(Some(t)))
        .map(|t| t.name.clone())
        .collect()
}

/// Spec §14: with no repository check yet, every importable tag; afterwards, the tags whose
/// generation is newer than the latest one status observed (an event or an ImportSuccess
/// condition).
fn tags_needing_import(stream: &ImageStream) -> Vec<String> {
    let checked = stream
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(REPOSITORY_CHECK_ANNOTATION));
    stream
        .spec
        .tags
        .iter()
        .filter(|t| importable(Some(t)))
        .filter(|t| !checked || t.generation.unwrap_or(0) > latest_observed(stream, &t.name))
        .map(|t| t.name.clone())
        .collect()
}

fn latest_observed(stream: &ImageStream, tag: &str) -> i64 {
    let Some(list) = stream.status_tag(tag) else {
        return 0;
    };
    let event = list
        .items
        .as_ref()
        .and_then(|i| i.first())
        .map_or(0, |e| e.generation);
    let condition = list
        .conditions
        .iter()
        .filter(|c| c.type_ == IMPORT_SUCCESS)
        .map(|c| c.generation)
        .max()
        .unwrap_or(0);
    event.max(condition)
}

fn current_image<'a>(stream: &'a ImageStream, tag: &str) -> Option<&'a str> {
    stream
        .status_tag(tag)
        .and_then(|l| l.items.as_ref())
        .and_then(|i| i.first())
        .map(|e| e.image.as_str())
}

/// The ImageStreamImport the controller posts: the stream's resourceVersion and uid as guards,
/// one image per tag with the tag's own policies.
fn import_request(stream: &ImageStream, tags: &[String]) -> ImageStreamImport {
    let mut isi = ImageStreamImport::default();
    isi.metadata.name = stream.metadata.name.clone();
    isi.metadata.namespace = stream.metadata.namespace.clone();
    isi.metadata.resource_version = stream.metadata.resource_version.clone();
    isi.metadata.uid = stream.metadata.uid.clone();
    isi.spec.import = true;
    for tag in tags {
        let Some(spec) = stream.spec_tag(tag).filter(|t| importable(Some(t))) else {
            continue;
        };
        isi.spec.images.push(ImageImportSpec {
            from: ObjectReference {
                kind: Some("DockerImage".to_string()),
                name: spec.from.as_ref().and_then(|f| f.name.clone()),
                ..Default::default()
            },
            to: Some(LocalObjectReference { name: tag.clone() }),
            import_policy: spec.import_policy.clone(),
            reference_policy: spec.reference_policy.clone(),
            include_manifest: false,
        });
    }
    isi
}

/// From `FIRST_RETRY`, doubling, never longer than `cap`.
fn backoff(attempts: u32, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    FIRST_RETRY.saturating_mul(factor).min(cap.max(FIRST_RETRY))
}

/// Where in the interval a scheduled tag is first checked: a stable hash of its name, so a
/// fleet of tags created together is spread over the interval instead of checked in a burst.
fn spread(key: &TagKey, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let millis = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % millis)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use image_api::{NamedTagEventList, TagEvent, TagEventCondition};

    fn docker_tag(name: &str, generation: i64) -> TagReference {
        TagReference {
            name: name.into(),
            from: Some(ObjectReference {
                kind: Some("DockerImage".into()),
                name: Some(format!("r/a/b:{name}")),
                ..Default::default()
            }),
            generation: Some(generation),
            ..Default::default()
        }
    }

    fn stream(tags: Vec<TagReference>, checked: bool) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = Some("app".into());
        s.metadata.namespace = Some("ns".into());
        s.spec.tags = tags;
        if checked {
            s.metadata.annotations =
                Some([(REPOSITORY_CHECK_ANNOTATION.to_string(), "x".to_string())].into());
        }
        s
    }

    fn event(generation: i64) -> TagEvent {
        TagEvent {
            created: None,
            docker_image_reference: "r/a/b@sha256:1".into(),
            image: "sha256:1".into(),
            generation,
        }
    }

    #[test]
    fn unchecked_streams_import_every_importable_tag() {
        let mut reference = docker_tag("ref", 1);
        reference.reference = true;
        let mut other = docker_tag("istag", 1);
        other.from.as_mut().unwrap().kind = Some("ImageStreamTag".into());
        let s = stream(vec![docker_tag("v1", 1), reference, other], false);
        assert_eq!(tags_needing_import(&s), ["v1"]);
    }

    #[test]
    fn checked_streams_import_tags_newer_than_observed() {
        let mut s = stream(
            vec![
                docker_tag("v1", 2),
                docker_tag("v2", 2),
                docker_tag("v3", 3),
            ],
            true,
        );
        s.status.tags = vec![
            NamedTagEventList {
                tag: "v1".into(),
                items: Some(vec![event(2)]),
                conditions: vec![],
            },
            NamedTagEventList {
                tag: "v2".into(),
                items: None,
                conditions: vec![TagEventCondition {
                    type_: IMPORT_SUCCESS.into(),
                    status: "False".into(),
                    generation: 2,
                    ..Default::default()
                }],
            },
            NamedTagEventList {
                tag: "v3".into(),
                items: Some(vec![event(2)]),
                conditions: vec![],
            },
        ];
        assert_eq!(tags_needing_import(&s), ["v3"]);
    }

    #[test]
    fn the_request_carries_guards_and_tag_policies() {
        let mut s = stream(vec![docker_tag("v1", 1)], true);
        s.metadata.resource_version = Some("7".into());
        s.metadata.uid = Some("u".into());
        s.spec.tags[0].import_policy.insecure = true;
        let isi = import_request(&s, &["v1".into(), "missing".into()]);
        assert_eq!(isi.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(isi.metadata.uid.as_deref(), Some("u"));
        assert!(isi.spec.import);
        assert_eq!(isi.spec.images.len(), 1);
        assert_eq!(isi.spec.images[0].to.as_ref().unwrap().name, "v1");
        assert_eq!(isi.spec.images[0].from.name.as_deref(), Some("r/a/b:v1"));
        assert!(isi.spec.images[0].import_policy.insecure);
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(2));
        assert_eq!(backoff(2, cap), Duration::from_secs(4));
        assert_eq!(backoff(5, cap), Duration::from_secs(32));
        assert_eq!(backoff(6, cap), cap);
        assert_eq!(backoff(60, cap), cap);
    }

    #[test]
    fn spread_stays_within_the_interval_and_differs_by_tag() {
        let interval = Duration::from_secs(900);
        let offsets: HashSet<Duration> = (0..50)
            .map(|i| {
                let key = tag_key(&("ns".into(), format!("s{i}")), "t");
                let d = spread(&key, interval);
                assert!(d < interval);
                d
            })
            .collect();
        assert!(offsets.len() > 40, "offsets cluster: {}", offsets.len());
    }

    #[test]
    fn scheduled_tags_must_be_importable() {
        let mut t = docker_tag("v1", 1);
        t.import_policy.scheduled = true;
        let mut r = docker_tag("v2", 1);
        r.import_policy.scheduled = true;
        r.reference = true;
        assert_eq!(scheduled_tags(&stream(vec![t, r], true)), ["v1"]);
    }
}
