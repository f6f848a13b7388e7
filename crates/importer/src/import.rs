//! The import algorithm (spec §13.3). One run plans every image the request names (single
//! images and a repository's tags), fetches each distinct image once, concurrently up to a
//! bound, all under one deadline, and assembles the per-image statuses in request order.
//! Unlike upstream there is no per-request rate limiter: the concurrency bound and the
//! deadline are what keep a slow or hostile registry from holding the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use image_api::reference::DockerImageReference;
use image_api::{
    Image, ImageImportSpec, ImageImportStatus, ImageStream, ImageStreamImportSpec,
    ImageStreamImportStatus, RepositoryImportSpec, RepositoryImportStatus,
    IMPORT_MODE_PRESERVE_ORIGINAL,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use registry_client::{Client, Error as RegistryError, Manifest, ManifestContent, Repository};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::registries_conf::{PullPlan, PullSource};
use crate::status::{self, blames_credentials, is_unauthorized};
use crate::{convert, order, Keyring, RegistriesConf};

const PREFER_ARCH: &str = "importer.image.openshift.io/prefer-arch";
const PREFER_OS: &str = "importer.image.openshift.io/prefer-os";
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Upstream's shared layer-size cache holds this many entries.
const LAYER_SIZE_CACHE: usize = 2048;

/// A CPU architecture and OS, named as Go names them (`amd64`, `linux`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

impl Platform {
    /// This server's own platform: upstream prefers the apiserver's GOARCH/GOOS.
    pub fn of_this_machine() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: std::env::consts::OS.to_string(),
        }
    }
}

pub struct ImporterOptions {
    /// `maxImagesBulkImportedPerRepository`; `None` is unlimited.
    pub max_bulk_images: Option<usize>,
    /// Images fetched at once within one request.
    pub concurrency: usize,
    /// The whole import (listing and every fetch) ends by then.
    pub deadline: Duration,
    pub platform: Platform,
}

/// The importer, shared by every request (its registry client caches pings and connections).
pub struct Importer {
    client: Client,
    registries: RegistriesConf,
    keyring: Keyring,
    options: ImporterOptions,
    layer_sizes: Mutex<HashMap<String, u64>>,
}

/// One request's import.
pub struct ImportInput<'a> {
    pub spec: &'a ImageStreamImportSpec,
    /// The target stream, when it exists: its spec tags' annotations choose platforms.
    pub stream: Option<&'a ImageStream>,
    /// The request's own credentials (a namespace's pull secrets), tried before the file's.
    pub keyring: Option<&'a Keyring>,
    /// RFC 3339: the creation time of manifest-list images.
    pub now: &'a str,
}

/// A per-image failure answer (boxed: a `Status` is large).
type Refusal = Box<Status>;

/// One distinct image to fetch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Job {
    target: Target,
    /// A tag or a digest.
    reference: String,
    insecure: bool,
    preserve_original: bool,
    prefer: Platform,
    /// How errors name the image: as the request wrote it.
    display: String,
}

/// A repository: where it is dialed, and how the request wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Target {
    /// host[:port], with Docker Hub defaulted.
    registry: String,
    /// The path on that registry (`library/busybox` for Docker Hub's short names).
    path: String,
    /// The repository as written (registry not defaulted): imported images are named by it.
    written: String,
}

impl Target {
    fn of(r: &DockerImageReference) -> Target {
        let registry = if r.registry.is_empty() {
            DOCKER_HUB.to_string()
        } else {
            r.registry.clone()
        };
        let path = match (registry.as_str(), r.namespace.is_empty()) {
            (DOCKER_HUB, true) => format!("library/{}", r.name),
            (_, true) => r.name.clone(),
            (_, false) => format!("{}/{}", r.namespace, r.name),
        };
        Target {
            registry,
            path,
            written: r.repository(),
        }
    }

    fn full(&self) -> String {
        format!("{}/{}", self.registry, self.path)
    }
}

struct Imported {
    image: Image,
    manifests: Vec<Image>,
}

enum FetchError {
    Registry(RegistryError),
    Invalid(String),
}

impl From<RegistryError> for FetchError {
    fn from(e: RegistryError) -> Self {
        FetchError::Registry(e)
    }
}

impl FetchError {
    fn status(&self, job: &Job) -> Status {
        match self {
            FetchError::Registry(e) => {
                status::from_registry_error(e, &job.display, &job.target.written)
            }
            FetchError::Invalid(detail) => status::internal(&job.display, detail),
        }
    }
}

/// What one run shares: credentials (or none, for the anonymous retry), the deadline, each
/// registry's answer to its ping, and each repository's handle (with its token).
struct Run<'a> {
    keyring: Option<Keyring>,
    deadline: Instant,
    now: &'a str,
    pings: Pings,
    repositories: Repositories,
}

/// The run's handle on each repository, shared by its images so that they share its Bearer
/// token and the challenges it taught (spec §13.4: credentials are cached per repository for
/// the request); a handle per image asked the token service once per image.
#[derive(Default)]
struct Repositories(Mutex<HashMap<(String, String, bool), Repository>>);

impl Repositories {
    fn get_or_make(
        &self,
        key: (&str, &str, bool),
        make: impl FnOnce() -> Repository,
    ) -> Repository {
        let (registry, name, insecure) = key;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((registry.to_string(), name.to_string(), insecure))
            .or_insert_with(make)
            .clone()
    }
}

/// Each registry's ping, asked once per run however many images (and tag listings) it
/// serves, as upstream's importer does: a registry that is down, unknown or failing its ping
/// fails all its images with its own error after one ping and its retries, instead of each
/// image paying them (300 tags of an unresolvable registry took the whole deadline, many of
/// them ending in Timeout). A failed ping stays failed for the run; the next run asks again.
#[derive(Default)]
struct Pings(Mutex<HashMap<(String, bool), Arc<Answer>>>);

/// A registry's answer to its ping, set by the first image to ask (keyed by `host[:port]`
/// and whether it is insecure).
type Answer = OnceCell<Result<(), RegistryError>>;

impl Pings {
    /// The registry's answer: pinged by the first image that asks, awaited by the others.
    async fn reachable(&self, repo: &Repository) -> Result<(), RegistryError> {
        let key = (repo.registry().to_string(), repo.insecure());
        let cell = Arc::clone(
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default(),
        );
        cell.get_or_init(|| repo.ping()).await.clone()
    }
}

/// Where one spec entry stands before the fetches: answered already, or waiting for a job.
enum Slot {
    Done(Box<ImageImportStatus>),
    Pending { job: Job, tag: String },
}

impl Importer {
    pub fn new(
        client: Client,
        registries: RegistriesConf,
        keyring: Keyring,
        options: ImporterOptions,
    ) -> Importer {
        Importer {
            client,
            registries,
            keyring,
            options,
            layer_sizes: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Imports what `input.spec` names. A failure that blames the credentials makes the whole
    /// import run again without any (public images behind a stale secret); images that are
    /// still refused keep their first answer.
    pub async fn import(&self, input: &ImportInput<'_>) -> ImageStreamImportStatus {
        let keyring = self.request_keyring(input.keyring);
        let first = self.run(input, keyring).await;
        if !any_status(&first, blames_credentials) {
            return first;
        }
        let second = self.run(input, None).await;
        keep_unauthorized_answers(first, second)
    }

    /// The current digest of `reference` (a tag), by a HEAD of its manifest: what a scheduled
    /// re-import asks before doing anything more.
    /// `keyring`: the namespace's pull secrets, tried before the file's (as in an import).
    pub async fn current_digest(
        &self,
        from: &str,
        insecure: bool,
        keyring: Option<&Keyring>,
    ) -> Result<String, Refusal> {
        let r = DockerImageReference::parse(from)
            .map_err(|e| Box::new(status::invalid_name(from, &e.to_string())))?;
        let target = Target::of(&r);
        let reference = reference_of(&r);
        let keyring = self.request_keyring(keyring);
        let deadline = Instant::now() + self.options.deadline;
        let run = Run {
            keyring,
            deadline,
            now: "",
            pings: Pings::default(),
            repositories: Repositories::default(),
        };
        let sources = self.sources(&target, &reference, from)?;
        let mut last = None;
        for source in &sources {
            let repo = self.repository(&run, source, insecure);
            let head = tokio::time::timeout_at(deadline, repo.manifest_digest(&reference));
            match head.await {
                Ok(Ok(digest)) => return Ok(digest),
                Ok(Err(e)) => last = Some(status::from_registry_error(&e, from, &target.written)),
                Err(_) => last = Some(status::deadline_exceeded(from, self.options.deadline)),
            }
        }
        Err(Box::new(last.unwrap_or_else(|| {
            status::internal(from, "no pull source")
        })))
    }

    fn request_keyring(&self, request: Option<&Keyring>) -> Option<Keyring> {
        Some(match request {
            Some(k) => k.clone().merged_with(self.keyring.clone()),
            None => self.keyring.clone(),
        })
    }

    async fn run(
        &self,
        input: &ImportInput<'_>,
        keyring: Option<Keyring>,
    ) -> ImageStreamImportStatus {
        let run = Run {
            keyring,
            deadline: Instant::now() + self.options.deadline,
            now: input.now,
            pings: Pings::default(),
            repositories: Repositories::default(),
        };
        let mut slots: Vec<Slot> = input
            .spec
            .images
            .iter()
            .map(|spec| self.plan_image(spec, input.stream))
            .collect();
        let repository = match &input.spec.repository {
            Some(spec) => Some(self.plan_repository(&run, spec, input, &slots).await),
            None => None,
        };
        let mut jobs: Vec<Job> = slots
            .iter()
            .chain(repository.iter().flat_map(|(_, slots)| slots.iter()))
            .filter_map(|slot| match slot {
                Slot::Pending { job, .. } => Some(job.clone()),
                Slot::Done(_) => None,
            })
            .collect();
        jobs.sort_by(|a, b| a.display.cmp(&b.display));
        jobs.dedup();
        let results = self.fetch_all(&run, jobs).await;
        let images = slots.drain(..).map(|s| assemble(s, &results)).collect();
        let repository = repository.map(|(mut status, slots)| {
            status.images = slots.into_iter().map(|s| assemble(s, &results)).collect();
            if status.status.status.is_none() {
                status.status = repository_status(&status.images);
            }
            status
        });
        ImageStreamImportStatus {
            import: None,
            repository,
            images,
        }
    }

    fn plan_image(&self, spec: &ImageImportSpec, stream: Option<&ImageStream>) -> Slot {
        if spec.from.kind.as_deref() != Some("DockerImage") {
            return Slot::Done(Box::default());
        }
        let name = spec.from.name.as_deref().unwrap_or("");
        let r = match DockerImageReference::parse(name) {
            Ok(r) => r,
            Err(e) => return done(status::invalid_name(name, &e.to_string())),
        };
        let target = Target::of(&r);
        let reference = reference_of(&r);
        if let Err(s) = self.sources(&target, &reference, name) {
            return done(*s);
        }
        let tag = if r.id.is_empty() {
            reference.clone()
        } else {
            String::new()
        };
        let target_tag = spec.to.as_ref().map_or(tag.as_str(), |t| t.name.as_str());
        let job = Job {
            insecure: spec.import_policy.insecure
                || self.registries.is_insecure_registry(&target.registry),
            preserve_original: spec.import_policy.import_mode == IMPORT_MODE_PRESERVE_ORIGINAL,
            prefer: self.preferred_platform(stream, target_tag),
            display: name.to_string(),
            target,
            reference,
        };
        Slot::Pending { job, tag }
    }

    /// Lists the repository's tags and plans the first N in priority order; the status is
    /// final already when listing failed.
    async fn plan_repository(
        &self,
        run: &Run<'_>,
        spec: &RepositoryImportSpec,
        input: &ImportInput<'_>,
        image_slots: &[Slot],
    ) -> (RepositoryImportStatus, Vec<Slot>) {
        let name = spec.from.name.as_deref().unwrap_or("");
        let mut result = RepositoryImportStatus::default();
        let r = match DockerImageReference::parse(name) {
            Ok(r) => r,
            Err(e) => {
                result.status = status::invalid_name(name, &e.to_string());
                return (result, Vec::new());
            }
        };
        let target = Target::of(&r);
        let tags = match self
            .list_tags(run, &target, spec.import_policy.insecure, name)
            .await
        {
            Ok(tags) => order::prioritize_tags(&tags),
            Err(s) => {
                result.status = *s;
                return (result, Vec::new());
            }
        };
        let limit = self.options.max_bulk_images.unwrap_or(usize::MAX);
        let requested = |tag: &str| {
            image_slots.iter().any(|s| {
                matches!(s, Slot::Pending { job, .. }
                if job.target == target && job.reference == tag)
            })
        };
        let mut slots = Vec::new();
        for (i, tag) in tags.into_iter().enumerate() {
            if i >= limit && !requested(&tag) {
                result.additional_tags.push(tag);
                continue;
            }
            let job = Job {
                target: target.clone(),
                reference: tag.clone(),
                insecure: spec.import_policy.insecure
                    || self.registries.is_insecure_registry(&target.registry),
                preserve_original: spec.import_policy.import_mode == IMPORT_MODE_PRESERVE_ORIGINAL,
                prefer: self.preferred_platform(input.stream, &tag),
                display: format!("{}:{tag}", target.written),
            };
            slots.push(Slot::Pending { job, tag });
        }
        (result, slots)
    }

    async fn list_tags(
        &self,
        run: &Run<'_>,
        target: &Target,
        insecure: bool,
        display: &str,
    ) -> Result<Vec<String>, Refusal> {
        let sources = self.sources(target, "latest", display)?;
        let insecure = insecure || self.registries.is_insecure_registry(&target.registry);
        let mut last = None;
        for source in &sources {
            let repo = self.repository(run, source, insecure);
            let listed = async {
                run.pings.reachable(&repo).await?;
                repo.tags().await
            };
            match tokio::time::timeout_at(run.deadline, listed).await {
                Ok(Ok(tags)) => return Ok(tags),
                Ok(Err(e)) => {
                    last = Some(status::from_registry_error(&e, display, &target.written))
                }
                Err(_) => last = Some(status::deadline_exceeded(display, self.options.deadline)),
            }
        }
        Err(Box::new(last.unwrap_or_else(|| {
            status::internal(display, "no pull source")
        })))
    }

    /// Where `target` may be pulled from (mirrors first), or the answer for a blocked one.
    fn sources(
        &self,
        target: &Target,
        reference: &str,
        shown: &str,
    ) -> Result<Vec<PullSource>, Refusal> {
        let by_digest = reference.contains(':');
        match self.registries.pull_sources(&target.full(), by_digest) {
            PullPlan::Blocked => {
                tracing::debug!(image = shown, "registry blocked");
                Err(Box::new(status::blocked(&target.registry)))
            }
            PullPlan::Sources(sources) => Ok(sources),
        }
    }

    fn preferred_platform(&self, stream: Option<&ImageStream>, tag: &str) -> Platform {
        let annotations = stream
            .and_then(|s| s.spec_tag(tag))
            .and_then(|t| t.annotations.as_ref());
        let pick = |key: &str, default: &str| {
            annotations
                .and_then(|a| a.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        Platform {
            architecture: pick(PREFER_ARCH, &self.options.platform.architecture),
            os: pick(PREFER_OS, &self.options.platform.os),
        }
    }

    async fn fetch_all(
        &self,
        run: &Run<'_>,
        jobs: Vec<Job>,
    ) -> HashMap<Job, Result<Imported, Refusal>> {
        let concurrency = self.options.concurrency.max(1);
        stream::iter(jobs)
            .map(|job| async move {
                let fetched = tokio::time::timeout_at(run.deadline, self.fetch(run, &job)).await;
                let result = fetched.unwrap_or_else(|_| {
                    Err(Box::new(status::deadline_exceeded(
                        &job.display,
                        self.options.deadline,
                    )))
                });
                (job, result)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    /// Tries each pull source in turn (mirrors, then the source); the first success wins.
    async fn fetch(&self, run: &Run<'_>, job: &Job) -> Result<Imported, Refusal> {
        let sources = self.sources(&job.target, &job.reference, &job.display)?;
        // A reference no registry could be asked for fails as it is, not behind a ping.
        Repository::check_reference(&job.reference)
            .map_err(|e| Box::new(FetchError::Registry(e).status(job)))?;
        let mut last = None;
        for source in &sources {
            let repo = self.repository(run, source, job.insecure);
            // A source that does not answer is passed over, as one that fails the fetch.
            let fetched = match run.pings.reachable(&repo).await {
                Ok(()) => self.fetch_from(run, &repo, job).await,
                Err(e) => Err(FetchError::Registry(e)),
            };
            match fetched {
                Ok(imported) => return Ok(imported),
                Err(e) => {
                    let status = e.status(job);
                    tracing::debug!(image = %job.display, source = %source.repository,
                        message = status.message.as_deref().unwrap_or(""), "pull source failed");
                    last = Some(status);
                }
            }
        }
        Err(Box::new(last.unwrap_or_else(|| {
            status::internal(&job.display, "no pull source")
        })))
    }

    fn repository(&self, run: &Run<'_>, source: &PullSource, insecure: bool) -> Repository {
        let (host, path) = source
            .repository
            .split_once('/')
            .unwrap_or((source.repository.as_str(), ""));
        let dial = if host == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            host
        };
        let insecure = insecure || source.insecure;
        // Keyed by the host as written: docker.io and registry-1.docker.io dial the same host
        // but may hold different credentials.
        run.repositories.get_or_make((host, path, insecure), || {
            let credentials = run.keyring.as_ref().and_then(|k| k.lookup(host, path));
            self.client.repository(dial, path, insecure, credentials)
        })
    }

    async fn fetch_from(
        &self,
        run: &Run<'_>,
        repo: &Repository,
        job: &Job,
    ) -> Result<Imported, FetchError> {
        let manifest = repo.manifest(&job.reference).await?;
        let ManifestContent::Index(index) = &manifest.content else {
            let image = self.single(run, repo, job, &manifest).await?;
            return Ok(Imported {
                image,
                manifests: Vec::new(),
            });
        };
        if job.preserve_original {
            return self.preserve_list(run, repo, job, &manifest, index).await;
        }
        let digest = choose_child(index, &job.prefer)?;
        let child = repo.manifest(&digest).await?;
        Ok(Imported {
            image: self.single(run, repo, job, &child).await?,
            manifests: Vec::new(),
        })
    }

    /// PreserveOriginal: the list as an image of its own, and every child image; one failed
    /// child fails the entry.
    async fn preserve_list(
        &self,
        run: &Run<'_>,
        repo: &Repository,
        job: &Job,
        manifest: &Manifest,
        index: &oci_index::ImageIndex,
    ) -> Result<Imported, FetchError> {
        let reference = format!("{}@{}", job.target.written, manifest.digest);
        let image =
            convert::image(manifest, None, reference, run.now).map_err(FetchError::Invalid)?;
        let children = index.manifests().iter().map(|d| async move {
            let child = repo.manifest(d.digest().as_ref()).await?;
            self.single(run, repo, job, &child).await
        });
        let manifests = futures::future::try_join_all(children).await?;
        Ok(Imported { image, manifests })
    }

    /// One platform image: its config fetched, layer sizes the manifest lacks asked for.
    async fn single(
        &self,
        run: &Run<'_>,
        repo: &Repository,
        job: &Job,
        manifest: &Manifest,
    ) -> Result<Image, FetchError> {
        let config = match &manifest.content {
            ManifestContent::Image(m) => Some(repo.blob(m.config().digest().as_ref()).await?),
            ManifestContent::Schema1(_) => None,
            ManifestContent::Index(_) => {
                return Err(FetchError::Invalid(
                    "a manifest list inside a manifest list is not supported".to_string(),
                ))
            }
        };
        let reference = format!("{}@{}", job.target.written, manifest.digest);
        let mut image = convert::image(manifest, config.as_deref(), reference, run.now)
            .map_err(FetchError::Invalid)?;
        let missing = convert::unsized_layers(&image);
        if !missing.is_empty() {
            let mut sizes = HashMap::new();
            for digest in missing {
                let size = match self.cached_layer_size(&digest) {
                    Some(size) => size,
                    None => repo.blob_size(&digest).await?,
                };
                self.remember_layer_size(&digest, size);
                sizes.insert(digest, size);
            }
            convert::set_layer_sizes(&mut image, |d| sizes.get(d).copied());
        }
        Ok(image)
    }

    fn cached_layer_size(&self, digest: &str) -> Option<u64> {
        self.layer_sizes.lock().ok()?.get(digest).copied()
    }

    fn remember_layer_size(&self, digest: &str, size: u64) {
        if let Ok(mut cache) = self.layer_sizes.lock() {
            // A crude bound instead of an LRU: sizes are cheap to learn again.
            if cache.len() >= LAYER_SIZE_CACHE {
                cache.clear();
            }
            cache.insert(digest.to_string(), size);
        }
    }
}

use oci_spec::image as oci_index;

/// Legacy mode's choice of one child: the preferred platform, else linux/amd64, else the first.
fn choose_child(index: &oci_index::ImageIndex, prefer: &Platform) -> Result<String, FetchError> {
    let entries = index.manifests();
    let matches = |arch: &str, os: &str| {
        entries.iter().find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| p.architecture().to_string() == arch && p.os().to_string() == os)
        })
    };
    matches(&prefer.architecture, &prefer.os)
        .or_else(|| matches("amd64", "linux"))
        .or_else(|| entries.first())
        .map(|d| d.digest().to_string())
        .ok_or_else(|| FetchError::Invalid("no manifests in manifest list".to_string()))
}

fn reference_of(r: &DockerImageReference) -> String {
    if !r.id.is_empty() {
        r.id.clone()
    } else if !r.tag.is_empty() {
        r.tag.clone()
    } else {
        image_api::DEFAULT_IMAGE_TAG.to_string()
    }
}

fn done(status: Status) -> Slot {
    Slot::Done(Box::new(ImageImportStatus {
        status,
        ..Default::default()
    }))
}

fn assemble(slot: Slot, results: &HashMap<Job, Result<Imported, Refusal>>) -> ImageImportStatus {
    let (job, tag) = match slot {
        Slot::Done(status) => return *status,
        Slot::Pending { job, tag } => (job, tag),
    };
    match results.get(&job) {
        Some(Ok(imported)) => ImageImportStatus {
            status: status::success(),
            image: Some(imported.image.clone()),
            tag,
            manifests: imported.manifests.clone(),
        },
        Some(Err(status)) => ImageImportStatus {
            status: (**status).clone(),
            tag,
            ..Default::default()
        },
        None => ImageImportStatus {
            status: status::internal(&job.display, "the image was not fetched"),
            tag,
            ..Default::default()
        },
    }
}

fn repository_status(images: &[ImageImportStatus]) -> Status {
    let failed = images
        .iter()
        .filter(|i| !image_api::imports::succeeded(&i.status))
        .count();
    match failed {
        0 => status::success(),
        1 => status::failure(
            500,
            "ImportFailed",
            "one of the images from this repository failed to import".to_string(),
        ),
        n => status::failure(
            500,
            "ImportFailed",
            format!("{n} of the images from this repository failed to import"),
        ),
    }
}

fn any_status(status: &ImageStreamImportStatus, test: fn(&Status) -> bool) -> bool {
    status
        .images
        .iter()
        .chain(status.repository.iter().flat_map(|r| r.images.iter()))
        .any(|i| test(&i.status))
}

/// After the anonymous retry: an image refused again keeps the first run's answer.
fn keep_unauthorized_answers(
    first: ImageStreamImportStatus,
    mut second: ImageStreamImportStatus,
) -> ImageStreamImportStatus {
    let restore = |new: &mut Vec<ImageImportStatus>, old: &[ImageImportStatus]| {
        for (n, o) in new.iter_mut().zip(old) {
            if is_unauthorized(&n.status) {
                *n = o.clone();
            }
        }
    };
    restore(&mut second.images, &first.images);
    if let (Some(new), Some(old)) = (second.repository.as_mut(), first.repository.as_ref()) {
        restore(&mut new.images, &old.images);
    }
    second
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Target {
        Target::of(&DockerImageReference::parse(s).expect("valid"))
    }

    #[test]
    fn targets_default_docker_hub_but_keep_what_was_written() {
        let t = parse("busybox:1");
        assert_eq!(
            (t.registry.as_str(), t.path.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(t.written, "busybox");
        let t = parse("quay.io/org/app:1");
        assert_eq!(
            (t.registry.as_str(), t.path.as_str()),
            ("quay.io", "org/app")
        );
        let t = parse("localhost:5000/a/b/c@sha256:0000000000000000000000000000000000000000000000000000000000000000");
        assert_eq!(t.path, "a/b/c");
        assert_eq!(t.written, "localhost:5000/a/b/c");
    }

    fn status_of(reason: &str, message: &str) -> ImageImportStatus {
        ImageImportStatus {
            status: status::failure(401, reason, message.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn the_anonymous_retry_keeps_first_answers_for_refused_images() {
        let first = ImageStreamImportStatus {
            images: vec![
                status_of(
                    "Unauthorized",
                    "incorrect username or password for image \"a\"",
                ),
                status_of(
                    "Unauthorized",
                    "incorrect username or password for image \"b\"",
                ),
            ],
            ..Default::default()
        };
        let second = ImageStreamImportStatus {
            images: vec![
                ImageImportStatus {
                    status: status::success(),
                    ..Default::default()
                },
                status_of(
                    "Unauthorized",
                    "you may not have access to the container image \"b\"",
                ),
            ],
            ..Default::default()
        };
        assert!(any_status(&first, blames_credentials));
        let merged = keep_unauthorized_answers(first, second);
        assert_eq!(merged.images[0].status.status.as_deref(), Some("Success"));
        assert!(merged.images[1]
            .status
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("incorrect")));
    }

    #[test]
    fn repository_status_counts_failures() {
        let ok = ImageImportStatus {
            status: status::success(),
            ..Default::default()
        };
        let bad = status_of("NotFound", "x");
        assert_eq!(
            repository_status(std::slice::from_ref(&ok))
                .status
                .as_deref(),
            Some("Success")
        );
        assert_eq!(
            repository_status(&[ok.clone(), bad.clone()])
                .message
                .as_deref(),
            Some("one of the images from this repository failed to import")
        );
        assert_eq!(
            repository_status(&[bad.clone(), bad]).message.as_deref(),
            Some("2 of the images from this repository failed to import")
        );
    }
}
