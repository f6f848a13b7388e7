//! The image-apiserver binary: flags → storage backend → registries (with their watch caches)
//! → the generic API server over HTTPS.

mod access;
mod allocator;
mod cluster;
mod config;
mod controllers;
mod credentials;
#[cfg(test)]
mod harness;
mod lifecycle;
mod logging;
mod metrics;
mod openapi;
mod resources;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apiserver::http::{Api, ApiConfig, Health};
use apiserver::metrics::Metrics;
use apiserver::registry::Registry;
use apiserver::resource::Resource;
use apiserver::tls::ServingCerts;
use clap::Parser;
use storage::cache::CacheConfig;
use storage::Store;

use crate::config::ServerConfig;
use crate::resources::image::ImageStrategy;
use crate::resources::imagestream::ImageStreamStrategy;
use crate::resources::ImagePolicy;

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("opening storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] apiserver::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] apiserver::auth::AuthError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialsError),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the protobuf schema compiled into the binary: {0}")]
    Protobuf(#[from] apimachinery::protobuf::ProtoError),
    #[error(transparent)]
    Listen(#[from] lifecycle::ListenError),
    #[error("{flag} {path}: {message}")]
    ImportConfig {
        flag: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
    #[error("registry client: {0}")]
    RegistryClient(#[from] registry_client::Error),
    #[error(transparent)]
    Access(#[from] access::AccessError),
    #[error("--tls-min-version: {0}")]
    TlsVersion(String),
    #[error("--audit-log-path {path}: {source}")]
    AuditLog {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct ServerHealth {
    store: Arc<dyn Store>,
    streams: Arc<Registry<ImageStreamStrategy>>,
    images: Arc<Registry<ImageStrategy>>,
    cluster: Option<Arc<cluster::ClusterReads>>,
}

#[async_trait::async_trait]
impl Health for ServerHealth {
    async fn storage_ok(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.store.current_revision())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn caches_ready(&self) -> bool {
        self.streams.cache().is_ready()
            && self.images.cache().is_ready()
            && self.cluster.as_ref().is_none_or(|c| c.is_synced())
    }
}

fn main() {
    // Before the runtime's threads exist: mimalloc's options are plain globals.
    allocator::configure();
    // Flags first: a bad one is clap's error on standard error, before any logging.
    let config = ServerConfig::parse();
    logging::init(config.logging_format, config.verbosity);
    // The cluster client (kube) builds its TLS from the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "image-apiserver could not start its runtime");
            std::process::exit(1);
        }
    };
    runtime.spawn(allocator::return_idle_memory());
    if let Err(e) = runtime.block_on(run(config)) {
        // The log is the one place it goes, so a JSON log stays one object per line.
        tracing::error!(error = %e, "image-apiserver failed");
        std::process::exit(1);
    }
}

async fn run(config: ServerConfig) -> Result<(), StartError> {
    let mut stop = lifecycle::Stop::listen();
    // A stop during start-up ends it wherever it is (waiting for etcd or for the cluster):
    // nothing is served yet and nothing writes to the store, so it is simply dropped.
    let running = tokio::select! {
        started = start(&config) => started?,
        () = stop.requested() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };
    stop.requested().await;
    running.shut_down().await
}

/// Everything up to serving: the address claimed, credentials, the cluster clients and access
/// decisions, the store (waited for) and its registries, the listener, the controllers.
async fn start(config: &ServerConfig) -> Result<Running, StartError> {
    let metrics = Metrics::default();
    let import_metrics = Arc::new(metrics::ImportMetrics::new(&metrics));
    let importer = Arc::new(build_importer(config)?);
    // Claimed before anything is written: a busy address is the first error, and names itself.
    let port =
        lifecycle::ReservedPort::bind(SocketAddr::new(config.bind_address, config.secure_port))?;
    storage::embedded::create_private_dir(&config.data_dir).map_err(|source| {
        StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        }
    })?;
    let flags = &config.cluster;
    let clients = access::Clients::connect(flags).await?;
    let cluster = clients.reads.clone().map(cluster::ClusterReads::start);
    let (tokens, admin_token) = credentials::tokens(config)?;
    let access = access::Access {
        authentication: access::authentication(flags, tokens, clients.authentication.as_ref())
            .await?,
        authorizer: access::authorization(flags, clients.authorization.as_ref())?,
        cluster,
    };
    let wiring = Wiring {
        policy: image_policy(config, access.cluster.as_ref()),
        cluster: access.cluster.clone(),
        tag_access: Some(access.authorizer.clone()),
    };
    let mut backend = lifecycle::open_backend(config, metrics.clone(), wiring).await?;
    let imports = backend
        .served
        .enable_imports(importer.clone(), import_metrics.clone());
    let certs = serving_certs(config)?;
    access.wait_for_cluster().await;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let stops = StopSignals {
        shutdown: shutdown_rx,
        draining: draining_rx,
    };
    let api = build_api(config, &backend, access, metrics, stops)?;
    let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
    let serve = spawn_server(config, &certs, api, handle.clone(), port)?;
    let Some(local) = handle.listening().await else {
        return Err(StartError::Serve(exit_before_listening(serve).await));
    };
    announce(config, local, &certs, admin_token.as_deref())?;
    let imports = ImportParts {
        imports,
        importer,
        metrics: import_metrics,
    };
    let controllers = Controllers::start(config, &backend, imports, clients.reads.as_ref());
    Ok(Running {
        draining,
        delay: config.shutdown_delay_duration,
        shutdown,
        controllers,
        handle,
        serve,
        backend,
    })
}

/// What a stop winds down.
struct Running {
    /// Turns `/readyz` unready, `delay` before the rest.
    draining: tokio::sync::watch::Sender<bool>,
    delay: Duration,
    /// Ends the watches.
    shutdown: tokio::sync::watch::Sender<bool>,
    controllers: Controllers,
    handle: axum_server::Handle<SocketAddr>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    backend: lifecycle::Backend,
}

impl Running {
    /// readyz turns unready and watches end, the controllers stop, in-flight requests get
    /// time to finish, and then the store closes.
    async fn shut_down(self) -> Result<(), StartError> {
        let _ = self.draining.send(true);
        if !self.delay.is_zero() {
            tracing::info!(delay = ?self.delay, "/readyz fails while load balancers catch up");
            tokio::time::sleep(self.delay).await;
        }
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        self.controllers.stop().await;
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        match self.serve.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Serve(e)),
            Err(e) => tracing::warn!(error = %e, "server task ended abnormally"),
        }
        lifecycle::close_backend(self.backend).await;
        Ok(())
    }
}

/// What the import controller is built from besides the registries.
struct ImportParts {
    imports: Arc<resources::imagestreamimport::ImageStreamImports>,
    importer: Arc<importer::Importer>,
    metrics: Arc<metrics::ImportMetrics>,
}

/// The controllers (unless disabled) and how to stop them.
struct Controllers {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Controllers {
    /// They take `imports` with them (it is dropped here when they are disabled), so nothing
    /// in `run` keeps the store open past the controllers' end.
    fn start(
        config: &ServerConfig,
        backend: &lifecycle::Backend,
        imports: ImportParts,
        cluster: Option<&kube::Client>,
    ) -> Controllers {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        if config.disable_import_controller {
            return Controllers { stop, task: None };
        }
        let controller = Arc::new(controllers::import::ImportController::new(
            backend.served.registries.clone(),
            imports.imports,
            imports.importer,
            imports.metrics,
            import_controller_config(config),
        ));
        let election = controllers::election(config, &backend.store, cluster);
        let task = controllers::run(controller, election, stopped);
        Controllers {
            stop,
            task: Some(task),
        }
    }

    /// Returns once they have stopped, before the leader lock is released, so two replicas
    /// never run them at once.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// What the generic server hears of a stop: first draining (`/readyz` fails), then shutdown.
struct StopSignals {
    shutdown: tokio::sync::watch::Receiver<bool>,
    draining: tokio::sync::watch::Receiver<bool>,
}

/// The generic server over the served resources, with the access decisions and health checks.
fn build_api(
    config: &ServerConfig,
    backend: &lifecycle::Backend,
    access: access::Access,
    metrics: Metrics,
    stops: StopSignals,
) -> Result<Arc<Api>, StartError> {
    let flags = &config.cluster;
    Ok(Api::new(ApiConfig {
        group: image_api::GROUP,
        version: image_api::VERSION,
        resources: backend.served.resources(),
        authentication: access.authentication,
        authorizer: access.authorizer,
        audit_log: audit_log(flags)?,
        namespaces: access
            .cluster
            .clone()
            .map(|c| c as Arc<dyn apiserver::admission::NamespaceLifecycle>),
        health: Arc::new(ServerHealth {
            store: backend.store.clone(),
            streams: backend.served.streams.clone(),
            images: backend.served.images.clone(),
            cluster: access.cluster,
        }),
        openapi: openapi::documents(),
        shutdown: stops.shutdown,
        draining: stops.draining,
        metrics,
        max_requests_inflight: config.max_requests_inflight,
        max_mutating_requests_inflight: config.max_mutating_requests_inflight,
        max_requests_inflight_per_user: flags.max_requests_inflight_per_user,
        protobuf: Some(resources::protobuf_codec()?),
    }))
}

fn audit_log(
    flags: &config::ClusterFlags,
) -> Result<Option<apiserver::http::audit_log::AuditLog>, StartError> {
    let Some(path) = &flags.audit_log_path else {
        return Ok(None);
    };
    apiserver::http::audit_log::AuditLog::open(path)
        .map(Some)
        .map_err(|source| StartError::AuditLog {
            path: path.clone(),
            source,
        })
}

/// The registries of the two stored resources over one store, and the typed interfaces the
/// virtual resources use.
struct Served {
    streams: Arc<Registry<ImageStreamStrategy>>,
    images: Arc<Registry<ImageStrategy>>,
    registries: Arc<resources::registries::Registries>,
    /// `imagestreamimports`, served once an importer is configured.
    imports: Option<Arc<resources::imagestreamimport::ImageStreamImports>>,
}

/// What the served resources are built with besides the store.
#[derive(Default)]
struct Wiring {
    policy: ImagePolicy,
    /// The cluster's Secrets, LimitRanges and Namespaces (`None` standalone).
    cluster: Option<Arc<cluster::ClusterReads>>,
    /// Who may follow streams of other namespaces (`None`: everyone).
    tag_access: Option<Arc<dyn apiserver::auth::Authorizer>>,
}

impl Served {
    fn over(store: Arc<dyn Store>, wiring: Wiring, cache_config: CacheConfig) -> Self {
        let Wiring {
            policy,
            cluster,
            tag_access,
        } = wiring;
        let mut strategy = ImageStreamStrategy::new(policy.clone());
        if let Some(authorizer) = tag_access {
            strategy = strategy.with_tag_access(authorizer);
        }
        let streams = Arc::new(Registry::new(strategy, store.clone(), cache_config.clone()));
        let images = Arc::new(Registry::new(ImageStrategy::default(), store, cache_config));
        let registries = Arc::new(resources::registries::Registries {
            streams: streams.clone(),
            images: images.clone(),
            policy,
            cluster,
        });
        Served {
            streams,
            images,
            registries,
            imports: None,
        }
    }

    fn enable_imports(
        &mut self,
        importer: Arc<importer::Importer>,
        metrics: Arc<metrics::ImportMetrics>,
    ) -> Arc<resources::imagestreamimport::ImageStreamImports> {
        let imports = Arc::new(resources::imagestreamimport::ImageStreamImports::new(
            self.registries.clone(),
            importer,
            metrics,
        ));
        self.imports = Some(imports.clone());
        imports
    }

    /// Every served resource, in discovery order.
    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        let registries = &self.registries;
        let mut served: Vec<Arc<dyn Resource>> = vec![
            self.images.clone(),
            Arc::new(resources::imagesignature::ImageSignatures::new(
                registries.clone(),
            )),
            Arc::new(resources::imagestreamimage::ImageStreamImages::new(
                registries.clone(),
            )),
            Arc::new(resources::imagestreammapping::ImageStreamMappings::new(
                registries.clone(),
            )),
        ];
        if let Some(imports) = &self.imports {
            served.push(imports.clone());
        }
        served.extend([
            Arc::new(resources::imagestream::rest::ImageStreams::new(
                self.streams.clone(),
                registries.clone(),
            )) as Arc<dyn Resource>,
            Arc::new(resources::imagestreamtag::ImageStreamTags::new(
                registries.clone(),
            )),
            Arc::new(resources::imagetag::ImageTags::new(registries.clone())),
        ]);
        served
    }
}

/// The limits come from the namespace's LimitRanges in a cluster, from the flags otherwise.
fn image_policy(
    config: &ServerConfig,
    cluster: Option<&Arc<cluster::ClusterReads>>,
) -> ImagePolicy {
    let limits: Arc<dyn resources::LimitSource> = match cluster {
        Some(cluster) => cluster.clone(),
        None => Arc::new(image_api::limits::StreamLimits {
            image_tags: (config.max_image_tags_per_stream > 0)
                .then_some(config.max_image_tags_per_stream),
            images: (config.max_images_per_stream > 0).then_some(config.max_images_per_stream),
        }),
    };
    ImagePolicy {
        internal: config.internal_registry_hostname.clone(),
        external: config.external_registry_hostname.clone(),
        import_mode: image_api::IMPORT_MODE_LEGACY.to_string(),
        whitelist: image_api::whitelist::RegistryWhitelist::new(
            config
                .allowed_registries_for_import
                .as_ref()
                .map(|entries| {
                    entries
                        .iter()
                        .filter(|e| !e.is_empty())
                        .map(|e| image_api::whitelist::AllowedRegistry::parse(e))
                        .collect()
                }),
            &config.internal_registry_hostname,
        ),
        limits,
    }
}

/// The configured certificate, or one we sign ourselves for the addresses we serve on.
fn serving_certs(config: &ServerConfig) -> Result<ServingCerts, StartError> {
    Ok(
        match (&config.tls_cert_file, &config.tls_private_key_file) {
            (Some(cert), Some(key)) => ServingCerts::from_files(cert, key)?,
            _ => {
                let mut sans = config.tls_sans.clone();
                sans.push(config.bind_address.to_string());
                ServingCerts::self_signed(&config.data_dir, &sans)?
            }
        },
    )
}

fn spawn_server(
    config: &ServerConfig,
    certs: &ServingCerts,
    api: Arc<Api>,
    handle: axum_server::Handle<SocketAddr>,
    port: lifecycle::ReservedPort,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, StartError> {
    let app = apiserver::http::router(api);
    let min_version = apiserver::tls::TlsMinVersion::parse(&config.cluster.tls_min_version)
        .map_err(StartError::TlsVersion)?;
    // Client certificates are asked for (never required): the front proxy and
    // --client-ca-file users present one.
    let tls = certs.server_config_with(min_version, true)?;
    let flags = &config.cluster;
    let limits = apiserver::connections::ConnectionLimits {
        header_read_timeout: flags.http_header_read_timeout,
        idle_timeout: flags.http_idle_timeout,
        max_connections_per_source: flags.max_connections_per_source,
        max_connections: (flags.max_connections > 0).then_some(flags.max_connections),
        http2_max_streams_per_connection: flags.http2_max_streams_per_connection,
        ..Default::default()
    };
    // Connections are taken from here on, when the server can answer them.
    let listener = port.listen()?;
    let server = apiserver::serve::from_listener(listener, tls, &limits).handle(handle);
    Ok(tokio::spawn(server.serve(
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )))
}

/// Why the server stopped before it listened: its own error if it has one.
async fn exit_before_listening(
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
) -> std::io::Error {
    match serve.await {
        Ok(Err(e)) => e,
        _ => std::io::Error::other("server exited before listening"),
    }
}

fn announce(
    config: &ServerConfig,
    local: SocketAddr,
    certs: &ServingCerts,
    admin_token: Option<&str>,
) -> Result<(), StartError> {
    let kubeconfig = credentials::write_kubeconfig(config, local, &certs.ca_pem, admin_token)?;
    tracing::info!(
        url = %format!("https://{local}"),
        kubeconfig = %kubeconfig.display(),
        "serving; the admin kubeconfig is written"
    );
    Ok(())
}

/// The importer from the import flags: credentials (--authfile), registry policy
/// (--registries-conf), extra CAs (--registry-ca-file), limits and the deadline.
fn build_importer(config: &ServerConfig) -> Result<importer::Importer, StartError> {
    let read = |flag: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| StartError::ImportConfig {
            flag,
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    };
    let keyring = match &config.authfile {
        None => importer::Keyring::default(),
        Some(path) => {
            importer::Keyring::from_auth_file(&read("--authfile", path)?).map_err(|e| {
                StartError::ImportConfig {
                    flag: "--authfile",
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?
        }
    };
    let registries = match &config.registries_conf {
        None => importer::RegistriesConf::default(),
        Some(path) => {
            let text = read("--registries-conf", path)?;
            importer::RegistriesConf::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
                StartError::ImportConfig {
                    flag: "--registries-conf",
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?
        }
    };
    let extra_roots_pem = config
        .registry_ca_file
        .iter()
        .map(|p| read("--registry-ca-file", p))
        .collect::<Result<Vec<_>, _>>()?;
    let client = registry_client::Client::new(registry_client::ClientOptions {
        extra_roots_pem,
        user_agent: format!("image-apiserver/{}", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })?;
    let bulk = config.max_images_bulk_imported_per_repository;
    Ok(importer::Importer::new(
        client,
        registries,
        keyring,
        importer::ImporterOptions {
            max_bulk_images: usize::try_from(bulk).ok(),
            concurrency: config.image_import_concurrency,
            deadline: config.image_import_timeout,
            platform: importer::Platform::of_this_machine(),
        },
    ))
}

fn import_controller_config(config: &ServerConfig) -> controllers::import::ImportControllerConfig {
    controllers::import::ImportControllerConfig {
        scheduled_interval: config.scheduled_image_import_minimum_interval,
        max_scheduled_per_minute: config.max_scheduled_image_imports_per_minute,
        scheduled: !config.disable_scheduled_import,
        concurrency: 4,
    }
}
