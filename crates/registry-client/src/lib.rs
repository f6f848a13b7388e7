//! A pull-only client for the OCI distribution API / Docker Registry HTTP API v2, as the
//! OpenShift image importer uses it (spec `openshift-image-behavior.md` §13.3 and §13.4).
//!
//! It knows nothing about Kubernetes, our store or our HTTP server: the importer maps its
//! [`Error`]s to API statuses.
//!
//! - [`Client`]: the two TLS configurations (verified, or not for insecure registries), the
//!   connection pools, the ping cache shared by every request, and request counters.
//! - [`Repository`]: one repository on one registry, with its credentials and its cached token:
//!   manifests by tag or digest (digests verified), config blobs, blob sizes, the tag list.
//! - [`media_types`]: the manifest media types and the `Accept` list.
//!
//! Inside: `auth` (challenges, token exchange), `manifest` (kinds, sniffing, schema 1 canonical
//! payload, digests), `retry` (what is retried and how long to wait), `error` (the mapping of
//! registry answers), `tls` (rustls configurations on the ring provider).
//!
//! Every call goes: ping (cached per registry) → authorization (Bearer token or Basic) → the
//! request, bounded in time (`request_timeout`, body included) and in size → one token renewal
//! on a 401 → retries of temporary failures → [`Error`].

mod auth;
mod error;
mod manifest;
mod retry;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

pub use auth::Credentials;
pub use error::Error;
pub use manifest::{sha256_digest, Manifest, ManifestContent, Schema1};
pub use retry::RetryPolicy;

use auth::Challenge;
use error::{Target, ERROR_BODY_LIMIT};
use retry::{Failure, RetryClass};

/// Manifest media types, and the `Accept` list sent for manifests.
pub mod media_types {
    /// Docker schema 1, signed (JWS).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// Docker schema 1, unsigned.
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 2 image manifest.
    pub const DOCKER_SCHEMA2: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Every manifest type this client reads, as listed in the `Accept` header.
    pub const ACCEPT: &[&str] = &[
        DOCKER_SCHEMA1_SIGNED,
        "application/json",
        DOCKER_SCHEMA2,
        DOCKER_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
    ];
}

/// How a [`Client`] connects and what it accepts.
#[derive(Clone)]
pub struct ClientOptions {
    /// PEM bundles trusted in addition to the system roots.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Bound on every HTTP call, headers and body (default 30 s).
    pub request_timeout: Duration,
    /// Bound on `GET /v2/` (default 15 s).
    pub ping_timeout: Duration,
    /// Bound on opening a connection: TCP connect plus TLS handshake (default 5 s). A server
    /// that accepts connections but never completes a handshake fails after this, so an
    /// insecure registry can still be tried over plain HTTP within a short import deadline.
    pub connect_timeout: Duration,
    /// Retries of temporary failures.
    pub retry: RetryPolicy,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// A manifest (or tag list page) larger than this is [`Error::TooLarge`] (default 4 MiB).
    pub max_manifest_bytes: usize,
    /// A blob larger than this is [`Error::TooLarge`] (default 16 MiB).
    pub max_blob_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_roots_pem: Vec::new(),
            request_timeout: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            user_agent: concat!("registry-client/", env!("CARGO_PKG_VERSION")).to_string(),
            max_manifest_bytes: 4 * 1024 * 1024,
            max_blob_bytes: 16 * 1024 * 1024,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("extra_roots_pem", &self.extra_roots_pem.len())
            .field("request_timeout", &self.request_timeout)
            .field("ping_timeout", &self.ping_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("user_agent", &self.user_agent)
            .field("max_manifest_bytes", &self.max_manifest_bytes)
            .field("max_blob_bytes", &self.max_blob_bytes)
            .finish()
    }
}

/// Requests sent, by outcome: index 0 counts transport errors (no answer), 1 to 5 count
/// answers by status class (1xx to 5xx).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub by_class: [u64; 6],
}

/// A successful ping is trusted this long.
const PING_TTL: Duration = Duration::from_secs(300);
/// Tag lists are followed for at most this many pages.
const MAX_TAG_PAGES: usize = 1000;

/// The registry client: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

pub(crate) struct ClientInner {
    pub(crate) options: ClientOptions,
    secure: reqwest::Client,
    insecure: reqwest::Client,
    accept: HeaderValue,
    pings: Mutex<HashMap<(String, bool), Arc<Ping>>>,
    counters: [AtomicU64; 6],
}

/// What a successful ping taught about a registry.
pub(crate) struct Ping {
    /// `<scheme>://<registry>/`: the scheme that worked.
    base: Url,
    /// The `WWW-Authenticate` challenges of `GET /v2/`.
    challenges: Arc<Vec<Challenge>>,
    at: Instant,
}

/// How much of a body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyLimit {
    /// None of it.
    Skip,
    /// A 2xx body over this size is [`Error::TooLarge`]. Error bodies are truncated to
    /// [`ERROR_BODY_LIMIT`] whatever the limit.
    Strict(usize),
    /// At most this much; the rest is dropped.
    Truncate(usize),
}

/// One HTTP request.
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) timeout: Duration,
    pub(crate) body: BodyLimit,
}

/// An answer, whatever its status, with its (capped) body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// The URL that answered (after redirects).
    pub(crate) url: Url,
}

impl Client {
    /// Builds the TLS configurations and the connection pools; reads the system roots once.
    pub fn new(options: ClientOptions) -> Result<Client, Error> {
        let secure = http_client(&options, tls::secure_config(&options.extra_roots_pem)?)?;
        let insecure = http_client(&options, tls::insecure_config()?)?;
        let accept = HeaderValue::from_str(&media_types::ACCEPT.join(", "))
            .map_err(|e| Error::Malformed(format!("invalid Accept header: {e}")))?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                options,
                secure,
                insecure,
                accept,
                pings: Mutex::new(HashMap::new()),
                counters: Default::default(),
            }),
        })
    }

    /// A handle on one repository. `registry` is `host[:port]` exactly as it must be dialed
    /// (the caller maps docker.io to registry-1.docker.io); `name` is the repository path, e.g.
    /// `library/busybox`. With `insecure`, certificates are not verified and plain HTTP is
    /// tried when HTTPS fails.
    pub fn repository(
        &self,
        registry: &str,
        name: &str,
        insecure: bool,
        credentials: Option<Credentials>,
    ) -> Repository {
        Repository {
            inner: Arc::new(RepoInner {
                client: self.clone(),
                registry: registry.to_string(),
                name: name.to_string(),
                insecure,
                credentials,
                token: tokio::sync::Mutex::new(None),
                challenges: Mutex::new(None),
            }),
        }
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        let mut by_class = [0u64; 6];
        for (slot, counter) in by_class.iter_mut().zip(self.inner.counters.iter()) {
            *slot = counter.load(Ordering::Relaxed);
        }
        Stats { by_class }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn http_client(
    options: &ClientOptions,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(options.user_agent.clone())
        .timeout(options.request_timeout)
        .connect_timeout(options.connect_timeout.min(options.request_timeout))
        .build()
        .map_err(|e| {
            Error::Transport(format!(
                "building the HTTP client: {}",
                error::chain_text(&e)
            ))
        })
}

/// A poisoned lock only means another task panicked while holding it; the data is still sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `<scheme>://<registry><path>`, refusing anything but `host[:port]` as the registry.
fn registry_url(scheme: &str, registry: &str, path: &str) -> Result<Url, Error> {
    let invalid = || Error::Malformed(format!("invalid registry host {registry:?}"));
    let forbidden = |c: char| matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace();
    if registry.is_empty() || registry.contains(forbidden) {
        return Err(invalid());
    }
    let url = Url::parse(&format!("{scheme}://{registry}{path}")).map_err(|_| invalid())?;
    if url.host_str().is_none() {
        return Err(invalid());
    }
    Ok(url)
}

fn status_class(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

enum BodyError {
    TooLarge(usize),
    Transport(reqwest::Error),
}

/// Reads a body chunk by chunk, never holding more than the limit.
async fn read_body(mut response: reqwest::Response, limit: BodyLimit) -> Result<Bytes, BodyError> {
    let (cap, strict) = match limit {
        BodyLimit::Skip => return Ok(Bytes::new()),
        BodyLimit::Strict(cap) => (cap, true),
        BodyLimit::Truncate(cap) => (cap, false),
    };
    let declared = declared_length(response.headers());
    let cap_u64 = u64::try_from(cap).unwrap_or(u64::MAX);
    if strict && declared.is_some_and(|length| length > cap_u64) {
        return Err(BodyError::TooLarge(cap));
    }
    let initial = declared
        .map_or(0, |length| usize::try_from(length).unwrap_or(usize::MAX))
        .min(cap)
        .min(1024 * 1024);
    let mut buffer = BytesMut::with_capacity(initial);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        let room = cap.saturating_sub(buffer.len());
        if chunk.len() > room {
            if strict {
                return Err(BodyError::TooLarge(cap));
            }
            buffer.extend_from_slice(&chunk[..room]);
            break;
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

impl ClientInner {
    fn http(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.secure
        }
    }

    fn count(&self, class: usize) {
        if let Some(counter) = self.counters.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends one request and reads its body, all within `timeout`; counts and logs it.
    pub(crate) async fn exchange(
        &self,
        insecure: bool,
        outgoing: Outgoing,
    ) -> Result<Reply, Failure> {
        let Outgoing {
            method,
            url,
            headers,
            timeout,
            body,
        } = outgoing;
        let started = Instant::now();
        let answered = AtomicBool::new(false);
        let http = self.http(insecure);
        let work = async {
            let response = http
                .request(method.clone(), url.clone())
                .headers(headers)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| error::transport(&e, &method, &url, timeout))?;
            answered.store(true, Ordering::Relaxed);
            let status = response.status();
            self.count(status_class(status));
            let reply_headers = response.headers().clone();
            let final_url = response.url().clone();
            let limit = if method == Method::HEAD {
                BodyLimit::Skip
            } else if status.is_success() {
                body
            } else {
                BodyLimit::Truncate(ERROR_BODY_LIMIT)
            };
            let bytes = read_body(response, limit).await.map_err(|e| match e {
                BodyError::TooLarge(limit) => Failure::fatal(Error::TooLarge { limit }),
                BodyError::Transport(err) => error::transport(&err, &method, &url, timeout),
            })?;
            Ok::<Reply, Failure>(Reply {
                status,
                headers: reply_headers,
                body: bytes,
                url: final_url,
            })
        };
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                error: Error::Timeout(format!("{method} {url}: timed out after {timeout:?}")),
                retry: RetryClass::Network,
                transport: true,
            }),
        };
        if result.is_err() && !answered.load(Ordering::Relaxed) {
            self.count(0);
        }
        let elapsed = started.elapsed();
        match &result {
            Ok(reply) => {
                tracing::debug!(%method, %url, status = reply.status.as_u16(), ?elapsed, "registry request");
            }
            Err(failure) => {
                tracing::debug!(%method, %url, error = %failure.error, ?elapsed, "registry request failed");
            }
        }
        result
    }

    fn cached_ping(&self, registry: &str, insecure: bool) -> Option<Arc<Ping>> {
        let pings = lock(&self.pings);
        let ping = pings.get(&(registry.to_string(), insecure))?;
        if ping.at.elapsed() < PING_TTL {
            Some(Arc::clone(ping))
        } else {
            None
        }
    }

    /// `GET /v2/` over https (and, for an insecure registry whose https fails at the transport
    /// level, over http); successes are cached per registry, failures are not.
    async fn ping(&self, registry: &str, insecure: bool) -> Result<Arc<Ping>, Failure> {
        if let Some(ping) = self.cached_ping(registry, insecure) {
            return Ok(ping);
        }
        let ping = match self.ping_scheme("https", registry, insecure).await {
            Ok(ping) => ping,
            Err(https) if insecure && https.transport => {
                tracing::debug!(registry, error = %https.error, "https ping failed; trying plain http");
                match self.ping_scheme("http", registry, insecure).await {
                    Ok(ping) => ping,
                    Err(http) => return Err(pick_ping_failure(https, http)),
                }
            }
            Err(failure) => return Err(failure),
        };
        let ping = Arc::new(ping);
        lock(&self.pings).insert((registry.to_string(), insecure), Arc::clone(&ping));
        Ok(ping)
    }

    async fn ping_scheme(
        &self,
        scheme: &str,
        registry: &str,
        insecure: bool,
    ) -> Result<Ping, Failure> {
        let url = registry_url(scheme, registry, "/v2/")?;
        let reply = self
            .exchange(
                insecure,
                Outgoing {
                    method: Method::GET,
                    url: url.clone(),
                    headers: HeaderMap::new(),
                    timeout: self.options.ping_timeout,
                    body: BodyLimit::Truncate(ERROR_BODY_LIMIT),
                },
            )
            .await?;
        let status = reply.status.as_u16();
        // A v2 registry without the Docker-Distribution-API-Version header still counts.
        if reply.status.is_success() || status == 401 || status == 403 {
            return Ok(Ping {
                base: registry_url(scheme, registry, "/")?,
                challenges: Arc::new(auth::parse_challenges(&reply.headers)),
                at: Instant::now(),
            });
        }
        Err(Failure {
            error: Error::NotV2 {
                url: url.to_string(),
                status,
            },
            retry: retry::classify_status(status, ""),
            transport: false,
        })
    }
}

/// Which failure an insecure ping reports when https and then http both failed: an answer over
/// http (a status, or bytes that are not HTTP when https only timed out) says more than https;
/// a connection failure over http says less (TLS error, refused, ...).
fn pick_ping_failure(https: Failure, http: Failure) -> Failure {
    let http_unreachable = http.retry == RetryClass::Network;
    let https_timed_out = matches!(https.error, Error::Timeout(_));
    if http.transport && (http_unreachable || !https_timed_out) {
        https
    } else {
        http
    }
}

/// One repository on one registry. Cheap to clone and usable from several tasks at once; the
/// token it obtains is shared by its clones.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<RepoInner>,
}

struct RepoInner {
    client: Client,
    registry: String,
    name: String,
    insecure: bool,
    credentials: Option<Credentials>,
    token: tokio::sync::Mutex<Option<auth::CachedToken>>,
    /// Challenges learnt from a 401 of this repository, preferred over the ping's.
    challenges: Mutex<Option<Arc<Vec<Challenge>>>>,
}

/// One logical call: retried as a whole.
struct Call {
    method: Method,
    url: CallUrl,
    accept: Option<HeaderValue>,
    body: BodyLimit,
    target: Target,
}

enum CallUrl {
    /// A path on the registry (`/v2/...`), joined to the scheme the ping found.
    Path(String),
    /// A URL given by the registry (a `Link` header).
    Absolute(Url),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthScheme {
    Anonymous,
    Basic,
    Bearer,
}

struct Auth {
    header: Option<HeaderValue>,
    scheme: AuthScheme,
    /// The credentials were used (sent as Basic, or to obtain the token).
    credentials_sent: bool,
}

impl Auth {
    fn anonymous() -> Auth {
        Auth {
            header: None,
            scheme: AuthScheme::Anonymous,
            credentials_sent: false,
        }
    }
}

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Repository {
    /// The registry, `host[:port]`.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The repository path.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether certificates go unverified and plain HTTP is tried after HTTPS.
    pub fn insecure(&self) -> bool {
        self.inner.insecure
    }

    /// Whether `reference` (a tag or a `sha256:` digest) is one this client can ask for: the
    /// check `manifest` makes before sending anything.
    pub fn check_reference(reference: &str) -> Result<(), Error> {
        manifest::Reference::parse(reference).map(|_| ())
    }

    /// Whether the registry answers `GET /v2/` as a registry, with the usual retries: what
    /// every call asks first. A success is cached for the client's other calls, a failure is
    /// not, so a caller fetching many images of one registry asks once and shares the answer.
    pub async fn ping(&self) -> Result<(), Error> {
        let repo = &self.inner;
        let client = &repo.client.inner;
        retry::with_retries(&client.options.retry, || async {
            client.ping(&repo.registry, repo.insecure).await.map(|_| ())
        })
        .await
    }

    /// `GET /v2/<name>/manifests/<reference>` (a tag or a `sha256:` digest) with every known
    /// manifest type accepted. A digest reference is verified against the content; for a tag,
    /// the digest is computed from the content (never taken from a header).
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, Error> {
        let repo = &self.inner;
        let parsed = manifest::Reference::parse(reference)?;
        let reply = repo
            .call(Call {
                method: Method::GET,
                url: CallUrl::Path(repo.path("manifests", parsed.as_str())?),
                accept: Some(repo.client.inner.accept.clone()),
                body: BodyLimit::Strict(repo.client.inner.options.max_manifest_bytes),
                target: Target::Manifest,
            })
            .await?;
        let content_type = reply
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        manifest::decode(content_type, reply.body, parsed.digest())
    }

    /// The manifest's digest from `HEAD`'s `Docker-Content-Digest` header; when the header is
    /// absent (or not a sha256 digest), or `HEAD` is not supported, from a `GET` and hashing.
    pub async fn manifest_digest(&self, reference: &str) -> Result<String, Error> {
        let repo = &self.inner;
        let parsed = manifest::Reference::parse(reference)?;
        let head = repo
            .call(Call {
                method: Method::HEAD,
                url: CallUrl::Path(repo.path("manifests", parsed.as_str())?),
                accept: Some(repo.client.inner.accept.clone()),
                body: BodyLimit::Skip,
                target: Target::Manifest,
            })
            .await;
        match head {
            Ok(reply) => {
                let digest = reply
                    .headers
                    .get("docker-content-digest")
                    .and_then(|value| value.to_str().ok())
                    .map(str::trim)
                    .filter(|digest| manifest::check_digest(digest).is_ok());
                if let Some(digest) = digest {
                    return Ok(digest.to_string());
                }
            }
            Err(Error::Status {
                status: 400 | 405, ..
            }) => {}
            Err(error) => return Err(error),
        }
        Ok(self.manifest(reference).await?.digest)
    }

    /// `GET /v2/<name>/blobs/<digest>`: at most `max_blob_bytes`, verified against the digest.
    pub async fn blob(&self, digest: &str) -> Result<Bytes, Error> {
        let repo = &self.inner;
        manifest::check_digest(digest)?;
        let reply = repo
            .call(Call {
                method: Method::GET,
                url: CallUrl::Path(repo.path("blobs", digest)?),
                accept: None,
                body: BodyLimit::Strict(repo.client.inner.options.max_blob_bytes),
                target: Target::Blob,
            })
            .await?;
        let actual = sha256_digest(&reply.body);
        if actual != digest {
            return Err(Error::Malformed(format!(
                "content integrity error: the blob retrieved with digest {digest} does not match the digest calculated from the content {actual}"
            )));
        }
        Ok(reply.body)
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: the blob's `Content-Length`.
    pub async fn blob_size(&self, digest: &str) -> Result<u64, Error> {
        let repo = &self.inner;
        manifest::check_digest(digest)?;
        let reply = repo
            .call(Call {
                method: Method::HEAD,
                url: CallUrl::Path(repo.path("blobs", digest)?),
                accept: None,
                body: BodyLimit::Skip,
                target: Target::Blob,
            })
            .await?;
        declared_length(&reply.headers).ok_or_else(|| {
            Error::Malformed(format!(
                "the registry sent no Content-Length for blob {digest}"
            ))
        })
    }

    /// `GET /v2/<name>/tags/list`, following `Link: <...>; rel="next"` (relative or absolute)
    /// for at most 1000 pages.
    pub async fn tags(&self) -> Result<Vec<String>, Error> {
        let repo = &self.inner;
        let mut tags = Vec::new();
        let mut url = CallUrl::Path(format!("/v2/{}/tags/list", repo.checked_name()?));
        for _ in 0..MAX_TAG_PAGES {
            let reply = repo
                .call(Call {
                    method: Method::GET,
                    url,
                    accept: Some(HeaderValue::from_static("application/json")),
                    body: BodyLimit::Strict(repo.client.inner.options.max_manifest_bytes),
                    target: Target::Tags,
                })
                .await?;
            let page: TagPage = serde_json::from_slice(&reply.body)
                .map_err(|e| Error::Malformed(format!("invalid tag list: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            let Some(next) = next_link(&reply.headers) else {
                return Ok(tags);
            };
            let next_url = reply
                .url
                .join(&next)
                .map_err(|e| Error::Malformed(format!("invalid next page link {next:?}: {e}")))?;
            url = CallUrl::Absolute(next_url);
        }
        tracing::warn!(
            registry = %repo.registry,
            repository = %repo.name,
            pages = MAX_TAG_PAGES,
            "tag list truncated: too many pages"
        );
        Ok(tags)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("registry", &self.inner.registry)
            .field("name", &self.inner.name)
            .field("insecure", &self.inner.insecure)
            .field("credentials", &self.inner.credentials)
            .finish()
    }
}

impl RepoInner {
    /// The repository path, if every component is made of `[A-Za-z0-9._-]` (no `.`/`..`).
    fn checked_name(&self) -> Result<&str, Error> {
        let name = self.name.as_str();
        let valid_component = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !name.is_empty() && name.split('/').all(valid_component) {
            Ok(name)
        } else {
            Err(Error::Malformed(format!(
                "invalid repository name {name:?}"
            )))
        }
    }

    fn path(&self, kind: &str, reference: &str) -> Result<String, Error> {
        Ok(format!("/v2/{}/{kind}/{reference}", self.checked_name()?))
    }

    async fn call(&self, call: Call) -> Result<Reply, Error> {
        let call = &call;
        retry::with_retries(&self.client.inner.options.retry, move || self.attempt(call)).await
    }

    /// One attempt: ping, authorize, send; on a 401, learn the challenges it carries, renew the
    /// token (or start sending Basic credentials) and send once more.
    async fn attempt(&self, call: &Call) -> Result<Reply, Failure> {
        let client = &self.client.inner;
        let ping = client.ping(&self.registry, self.insecure).await?;
        let url = match &call.url {
            CallUrl::Path(path) => ping
                .base
                .join(path)
                .map_err(|e| Error::Malformed(format!("invalid request path {path:?}: {e}")))?,
            CallUrl::Absolute(url) => url.clone(),
        };
        // Credentials only go to the registry itself (not to a host a Link points at).
        let same_origin = url.origin() == ping.base.origin();
        let mut challenges = self.challenges(&ping);
        let mut renewed = false;
        loop {
            let presented = if same_origin {
                self.authorize(&challenges).await?
            } else {
                Auth::anonymous()
            };
            let mut headers = HeaderMap::new();
            if let Some(accept) = &call.accept {
                headers.insert(ACCEPT, accept.clone());
            }
            if let Some(authorization) = &presented.header {
                headers.insert(AUTHORIZATION, authorization.clone());
            }
            let reply = client
                .exchange(
                    self.insecure,
                    Outgoing {
                        method: call.method.clone(),
                        url: url.clone(),
                        headers,
                        timeout: client.options.request_timeout,
                        body: call.body,
                    },
                )
                .await?;
            if reply.status.is_success() {
                return Ok(reply);
            }
            if reply.status == StatusCode::UNAUTHORIZED && same_origin && !renewed {
                renewed = true;
                let fresh = auth::parse_challenges(&reply.headers);
                if !fresh.is_empty() {
                    let fresh = Arc::new(fresh);
                    self.remember_challenges(Arc::clone(&fresh));
                    challenges = fresh;
                }
                if auth::find(&challenges, "bearer").is_some() {
                    self.forget_token().await;
                    continue;
                }
                let basic_offered = auth::find(&challenges, "basic").is_some();
                if presented.scheme == AuthScheme::Anonymous
                    && basic_offered
                    && self.credentials.is_some()
                {
                    continue;
                }
            }
            return Err(error::from_response(
                reply.status,
                &reply.headers,
                &reply.body,
                call.target,
                presented.credentials_sent,
            ));
        }
    }

    /// The `Authorization` header the challenges call for: a Bearer token when there is a
    /// Bearer challenge (anonymous tokens included), Basic when offered and there are credentials.
    async fn authorize(&self, challenges: &[Challenge]) -> Result<Auth, Failure> {
        if let Some(bearer) = auth::find(challenges, "bearer") {
            if let Some(realm) = bearer.param("realm") {
                let service = bearer.param("service").unwrap_or_default();
                let token = self.token(realm, service).await?;
                return Ok(Auth {
                    header: Some(auth::bearer_header(&token)?),
                    scheme: AuthScheme::Bearer,
                    credentials_sent: self.credentials.is_some(),
                });
            }
        }
        if let (Some(credentials), Some(_)) = (&self.credentials, auth::find(challenges, "basic")) {
            return Ok(Auth {
                header: Some(auth::basic_header(credentials)?),
                scheme: AuthScheme::Basic,
                credentials_sent: true,
            });
        }
        Ok(Auth::anonymous())
    }

    /// The cached token for this realm and service, or a new one (fetched once even when
    /// several tasks ask at the same time).
    async fn token(&self, realm: &str, service: &str) -> Result<String, Failure> {
        let mut slot = self.token.lock().await;
        let cached: &Option<auth::CachedToken> = &slot;
        if let Some(token) = cached
            .as_ref()
            .filter(|token| token.usable_for(realm, service))
        {
            return Ok(token.value.clone());
        }
        let scope = format!("repository:{}:pull", self.name);
        let request = auth::TokenRequest {
            realm,
            service,
            scope: &scope,
            credentials: self.credentials.as_ref(),
            insecure: self.insecure,
        };
        let fetched = auth::fetch_token(&self.client.inner, &request).await?;
        let value = fetched.value.clone();
        *slot = Some(fetched);
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    fn challenges(&self, ping: &Ping) -> Arc<Vec<Challenge>> {
        let remembered = lock(&self.challenges).clone();
        remembered.unwrap_or_else(|| Arc::clone(&ping.challenges))
    }

    fn remember_challenges(&self, challenges: Arc<Vec<Challenge>>) {
        *lock(&self.challenges) = Some(challenges);
    }
}

/// The `rel="next"` target of the `Link` headers, if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().find_map(|value| {
        parse_next_link(&String::from_utf8_lossy(value.as_bytes())).map(str::to_string)
    })
}

/// The target of the first link whose `rel` includes `next`, in one `Link` header value
/// (`<url>; rel="next", <url2>; rel="prev"`).
fn parse_next_link(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = after[..close].trim();
        let tail = &after[close + 1..];
        let params_end = tail.find('<').unwrap_or(tail.len());
        if tail[..params_end].split(';').any(is_next_relation) {
            return Some(target);
        }
        rest = &tail[params_end..];
    }
    None
}

fn is_next_relation(param: &str) -> bool {
    let Some((name, value)) = param.split_once('=') else {
        return false;
    };
    name.trim().eq_ignore_ascii_case("rel")
        && value
            .trim()
            .trim_end_matches(',')
            .trim()
            .trim_matches('"')
            .split_whitespace()
            .any(|relation| relation.eq_ignore_ascii_case("next"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            parse_next_link(r#"</v2/library/busybox/tags/list?last=1.36&n=100>; rel="next""#),
            Some("/v2/library/busybox/tags/list?last=1.36&n=100")
        );
        assert_eq!(
            parse_next_link("<https://r.example/v2/a/tags/list?last=b>;rel=next"),
            Some("https://r.example/v2/a/tags/list?last=b")
        );
        assert_eq!(
            parse_next_link(r#"</prev>; rel="prev", </next>; title="x"; rel="next""#),
            Some("/next")
        );
        assert_eq!(parse_next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(parse_next_link("garbage"), None);
        assert_eq!(parse_next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn link_targets_resolve_against_the_page_url() {
        let page = Url::parse("https://r.example:5000/v2/a/b/tags/list").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/a/b/tags/list?last=x&n=2>; rel="next""#),
        );
        let next = next_link(&headers).unwrap();
        assert_eq!(
            page.join(&next).unwrap().as_str(),
            "https://r.example:5000/v2/a/b/tags/list?last=x&n=2"
        );
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<http://other.example/v2/a/b/tags/list?last=y>; rel="next""#,
            ),
        );
        let next = next_link(&headers).unwrap();
        assert_eq!(
            page.join(&next).unwrap().as_str(),
            "http://other.example/v2/a/b/tags/list?last=y"
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn registry_urls() {
        assert_eq!(
            registry_url("https", "quay.io", "/v2/").unwrap().as_str(),
            "https://quay.io/v2/"
        );
        assert_eq!(
            registry_url("http", "localhost:5000", "/")
                .unwrap()
                .as_str(),
            "http://localhost:5000/"
        );
        assert_eq!(
            registry_url("https", "[::1]:5000", "/v2/")
                .unwrap()
                .as_str(),
            "https://[::1]:5000/v2/"
        );
        for bad in ["", "a/b", "user@host", "host?x", "a b"] {
            assert!(registry_url("https", bad, "/v2/").is_err(), "{bad}");
        }
    }

    #[test]
    fn insecure_ping_failure_choice() {
        let failure = |error: Error, retry: RetryClass, transport: bool| Failure {
            error,
            retry,
            transport,
        };
        let timeout = || {
            failure(
                Error::Timeout("timed out".into()),
                RetryClass::Network,
                true,
            )
        };
        let refused = || {
            failure(
                Error::Transport("connection refused".into()),
                RetryClass::Network,
                true,
            )
        };
        let garbage = || {
            failure(
                Error::Transport("invalid HTTP version parsed".into()),
                RetryClass::Never,
                true,
            )
        };
        let tls = || {
            failure(
                Error::Transport("invalid peer certificate".into()),
                RetryClass::Never,
                true,
            )
        };
        let not_v2 = || {
            failure(
                Error::NotV2 {
                    url: "http://r/v2/".into(),
                    status: 404,
                },
                RetryClass::Never,
                false,
            )
        };
        assert_eq!(
            pick_ping_failure(timeout(), garbage()).error,
            garbage().error
        );
        assert_eq!(
            pick_ping_failure(timeout(), refused()).error,
            timeout().error
        );
        assert_eq!(pick_ping_failure(tls(), garbage()).error, tls().error);
        assert_eq!(pick_ping_failure(tls(), refused()).error, tls().error);
        assert_eq!(pick_ping_failure(tls(), not_v2()).error, not_v2().error);
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(StatusCode::OK), 2);
        assert_eq!(status_class(StatusCode::CONTINUE), 1);
        assert_eq!(status_class(StatusCode::NOT_FOUND), 4);
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), 5);
    }

    #[test]
    fn accept_lists_every_manifest_type() {
        assert_eq!(media_types::ACCEPT.len(), 6);
        let client = Client::new(ClientOptions::default()).unwrap();
        let accept = client.inner.accept.to_str().unwrap();
        for media_type in media_types::ACCEPT {
            assert!(accept.contains(media_type), "{media_type}");
        }
        assert_eq!(client.stats(), Stats::default());
    }

    #[test]
    fn repository_names_are_checked() {
        let client = Client::new(ClientOptions::default()).unwrap();
        let path = |name: &str| {
            client
                .repository("r.example", name, false, None)
                .inner
                .path("manifests", "latest")
        };
        assert_eq!(
            path("library/busybox").unwrap(),
            "/v2/library/busybox/manifests/latest"
        );
        assert_eq!(
            path("a/b.c/d_e-f").unwrap(),
            "/v2/a/b.c/d_e-f/manifests/latest"
        );
        for bad in ["", "a//b", "../x", "a/./b", "a?b", "a b", "a%2fb"] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }
}
