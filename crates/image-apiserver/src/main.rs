//! The image-apiserver binary: flags → storage backend → watch caches → HTTP server.
//!
//! This first cut opens the configured store, keeps a watch cache per stored resource
//! (`imagestreams`, `images`) and serves the health endpoints; the API itself, TLS and
//! authentication come with the API machinery.

mod config;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use storage::cache::{CacheConfig, JsonCodec, WatchCache};
use storage::embedded::{EmbeddedStore, Options};
use storage::etcd::{EtcdConfig, EtcdStore};
use storage::Store;

use crate::config::{ServerConfig, StorageBackend};

/// The stored resources and their key prefixes (openshift-apiserver's layout).
const RESOURCES: [&str; 2] = ["imagestreams", "images"];

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("opening storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    caches: Arc<Vec<WatchCache<JsonCodec>>>,
    shutting_down: Arc<AtomicBool>,
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.current_revision().await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable"),
    }
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "shutting down");
    }
    if !state.caches.iter().all(WatchCache::is_ready) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "watch caches loading");
    }
    healthz(State(state)).await
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = ServerConfig::parse();
    if let Err(e) = run(config).await {
        tracing::error!(error = %e, "image-apiserver failed");
        std::process::exit(1);
    }
}

async fn run(config: ServerConfig) -> Result<(), StartError> {
    let (store, embedded): (Arc<dyn Store>, Option<EmbeddedStore>) = match config.storage_backend {
        StorageBackend::Embedded => {
            let store = EmbeddedStore::open(&config.data_dir, Options::default())?;
            tracing::info!(path = %store.path().display(), "embedded store open");
            (Arc::new(store.clone()), Some(store))
        }
        StorageBackend::Etcd => {
            let etcd = EtcdConfig::new(config.etcd_servers.clone(), config.etcd_prefix.clone());
            let store = EtcdStore::connect(etcd).await?;
            tracing::info!(servers = ?config.etcd_servers, prefix = %config.etcd_prefix, "connected to etcd");
            (Arc::new(store), None)
        }
    };
    let compactor = tokio::spawn(storage::compactor::run(
        store.clone(),
        config.etcd_compaction_interval,
    ));
    let caches: Vec<_> = RESOURCES
        .iter()
        .map(|r| {
            WatchCache::new(
                store.clone(),
                format!("/{r}/"),
                JsonCodec,
                CacheConfig::default(),
            )
        })
        .collect();
    let state = AppState {
        store,
        caches: Arc::new(caches),
        shutting_down: Arc::new(AtomicBool::new(false)),
    };
    let addr = std::net::SocketAddr::new(config.bind_address, config.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(address = %local, "serving");
    println!("image-apiserver listening on http://{local}");
    let shutting_down = state.shutting_down.clone();
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutting_down.store(true, Ordering::Release);
            tracing::info!("shutting down");
        })
        .await
        .map_err(StartError::Serve)?;
    drop(state);
    compactor.abort();
    if let Some(store) = embedded {
        // Let in-flight writes finish and release the data directory.
        if let Err(e) = store.close(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "embedded store did not close cleanly");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
