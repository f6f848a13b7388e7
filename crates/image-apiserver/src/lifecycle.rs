//! Start-up and stop as kube-apiserver does them: the serving address is claimed before
//! anything is written, etcd is waited for however long it takes, a stop is listened for from
//! the first moment, and the embedded store closes once everything that held it is gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::metrics::{InstrumentedStore, Metrics};
use storage::cache::CacheConfig;
use storage::embedded::{EmbeddedStore, Options};
use storage::etcd::{EtcdConfig, EtcdStore};
use storage::Store;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::SignalKind;
use tokio::sync::watch;

use crate::config::{ServerConfig, StorageBackend};
use crate::{Served, StartError, Wiring};

/// kube-apiserver's storage retries: the first one soon, then doubling up to a ceiling.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// A failure is logged at most this often, so a long wait does not flood the log.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// One attempt's limit: an endpoint that swallows packets is retried rather than waited on
/// for the whole request timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the kernel queues before they are accepted: what `TcpListener::bind` uses.
const LISTEN_BACKLOG: u32 = 128;

/// A request to stop (SIGTERM, or Ctrl-C on a terminal), listened for from the start.
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Starts listening. Must be called inside a tokio runtime.
    pub fn listen() -> Stop {
        let (tx, rx) = watch::channel(false);
        // Registered now rather than when first awaited: until then SIGTERM would kill the
        // process with its default disposition instead of stopping it cleanly.
        let term = tokio::signal::unix::signal(SignalKind::terminate());
        tokio::spawn(async move {
            match term {
                Ok(mut term) => tokio::select! {
                    _ = term.recv() => {}
                    Ok(()) = tokio::signal::ctrl_c() => {}
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    if tokio::signal::ctrl_c().await.is_err() {
                        // Nothing to listen to: only a kill stops us.
                        std::future::pending::<()>().await;
                    }
                }
            }
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Resolves once a stop has been asked for (at once if it already has).
    pub async fn requested(&mut self) {
        // The sender goes away only after sending, so an error means a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The serving address, bound but not listening: a busy address fails here, before anything
/// is written, and connections are refused (not queued unanswered) until the server listens.
pub struct ReservedPort {
    socket: TcpSocket,
    addr: SocketAddr,
}

/// Binding or listening on the serving address failed; the message names the address.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ListenError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

impl ReservedPort {
    pub fn bind(addr: SocketAddr) -> Result<ReservedPort, ListenError> {
        let failed = |source| ListenError { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(failed)?;
        // As tokio's, std's and Go's listeners: a restart rebinds at once while the previous
        // run's connections linger in TIME_WAIT.
        socket.set_reuseaddr(true).map_err(failed)?;
        socket.bind(addr).map_err(failed)?;
        Ok(ReservedPort { socket, addr })
    }

    /// Starts taking connections.
    pub fn listen(self) -> Result<TcpListener, ListenError> {
        let addr = self.addr;
        self.socket
            .listen(LISTEN_BACKLOG)
            .map_err(|source| ListenError { addr, source })
    }
}

/// Waits until etcd answers, however long that takes (kube-apiserver waits for its storage
/// too), logging the failures at most every few seconds. A stop cancels the wait.
pub async fn wait_for_etcd(store: &EtcdStore, endpoints: &[String]) {
    let endpoints = endpoints.join(",");
    let mut retry = Retry::default();
    loop {
        let error = match tokio::time::timeout(ATTEMPT_TIMEOUT, store.current_revision()).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
        };
        let delay = retry.next_delay();
        if retry.should_log(Instant::now()) {
            tracing::warn!(retry_in = ?delay, "waiting for etcd at {endpoints}: {error}");
        }
        tokio::time::sleep(delay).await;
    }
}

/// The store, and the embedded one again to close it at the end.
async fn open_store(
    config: &ServerConfig,
) -> Result<(Arc<dyn Store>, Option<EmbeddedStore>), StartError> {
    Ok(match config.storage_backend {
        StorageBackend::Embedded => {
            let options = Options {
                defrag: config.embedded_defrag,
                ..Options::default()
            };
            let store = EmbeddedStore::open(&config.data_dir, options)?;
            tracing::info!(path = %store.path().display(), "embedded store open");
            (Arc::new(store.clone()), Some(store))
        }
        StorageBackend::Etcd => {
            let mut etcd = EtcdConfig::new(config.etcd_servers.clone(), config.etcd_prefix.clone());
            etcd.watch_progress = config.etcd_watch_progress;
            // Only a malformed endpoint fails here; an etcd that is not up yet is waited for.
            let store = EtcdStore::new(etcd).await?;
            wait_for_etcd(&store, &config.etcd_servers).await;
            store.detect_progress_support().await;
            tracing::info!(servers = ?config.etcd_servers, prefix = %config.etcd_prefix, "connected to etcd");
            (Arc::new(store), None)
        }
    })
}

/// The store and the registries (with their watch caches) that serve from it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    embedded: Option<EmbeddedStore>,
    compactor: tokio::task::JoinHandle<()>,
    pub served: Served,
}

/// The store (instrumented), its compactor and the registries over it.
pub async fn open_backend(
    config: &ServerConfig,
    metrics: Metrics,
    wiring: Wiring,
) -> Result<Backend, StartError> {
    let (store, embedded) = open_store(config).await?;
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
    let compactor = tokio::spawn(storage::compactor::run(
        store.clone(),
        config.etcd_compaction_interval,
    ));
    let cache_config = CacheConfig {
        history_capacity: config.default_watch_cache_size.max(1),
        ..CacheConfig::default()
    };
    let served = Served::over(store.clone(), wiring, cache_config);
    metrics.count_objects(&served.streams);
    metrics.count_objects(&served.images);
    Ok(Backend {
        store,
        embedded,
        compactor,
        served,
    })
}

/// Closes the embedded store once every holder of it is gone. The server and the controllers
/// have ended by now; what is left holding the store is dropped here: the compactor, the
/// registries (whose watch caches' reflectors end with them) and the typed views and imports
/// over them.
pub async fn close_backend(backend: Backend) {
    let Backend {
        store,
        embedded,
        compactor,
        served,
    } = backend;
    compactor.abort();
    // Aborting only asks; awaiting the task makes sure its clone of the store is gone.
    let _ = compactor.await;
    drop((served, store));
    if let Some(store) = embedded {
        // Let in-flight writes finish and release the data directory. Waits only for holders
        // still letting go (cancelled tasks drop theirs asynchronously); the limit is a
        // backstop against a holder that never does.
        if let Err(e) = store.close(Duration::from_secs(5)).await {
            tracing::warn!(error = %e, "embedded store did not close cleanly");
        }
    }
}

/// When to try again and whether a failure is worth a log line (pure, tested without
/// waiting).
#[derive(Debug)]
struct Retry {
    next: Duration,
    logged: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            next: FIRST_RETRY,
            logged: None,
        }
    }
}

impl Retry {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(MAX_RETRY);
        delay
    }

    /// The first failure is logged, then one at most every [`LOG_EVERY`].
    fn should_log(&mut self, now: Instant) -> bool {
        if self
            .logged
            .is_some_and(|at| now.saturating_duration_since(at) < LOG_EVERY)
        {
            return false;
        }
        self.logged = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_at_100ms_and_double_up_to_5s() {
        let mut retry = Retry::default();
        let delays: Vec<u128> = (0..9).map(|_| retry.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn failures_are_logged_at_most_every_five_seconds() {
        let start = Instant::now();
        let mut retry = Retry::default();
        assert!(retry.should_log(start), "the first failure");
        assert!(!retry.should_log(start + Duration::from_secs(1)));
        assert!(!retry.should_log(start + Duration::from_millis(4900)));
        assert!(retry.should_log(start + Duration::from_secs(5)));
        assert!(!retry.should_log(start + Duration::from_secs(6)));
        assert!(retry.should_log(start + Duration::from_secs(11)));
    }

    #[tokio::test]
    async fn a_busy_address_is_named_in_the_error() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("local address");
        let Err(error) = ReservedPort::bind(addr) else {
            panic!("{addr} was bound twice");
        };
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("listening on {addr}: ")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_reserved_port_refuses_connections_until_it_listens() {
        let reserved =
            ReservedPort::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("reserve a port");
        let addr = reserved.socket.local_addr().expect("local address");
        let refused = std::net::TcpStream::connect(addr).expect_err("connected before listen");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        let listener = reserved.listen().expect("listen");
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        connected.expect("connect after listen");
        accepted.expect("accept");
    }

    #[tokio::test]
    async fn an_absent_etcd_is_waited_for_not_an_error() {
        // A port nobody listens on (a tiny race with other processes remains).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let endpoints = vec![format!("http://127.0.0.1:{port}")];
        let config = EtcdConfig::new(endpoints.clone(), "openshift.io");
        let store = EtcdStore::new(config).await.expect("a lazy client");
        // Several attempts fail within this time; the wait goes on through them.
        let waited =
            tokio::time::timeout(Duration::from_secs(1), wait_for_etcd(&store, &endpoints)).await;
        assert!(waited.is_err(), "the wait ended with etcd still absent");
    }
}
