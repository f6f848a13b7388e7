//! Controllers that run in the server process, as clients of the resources layer.

pub mod import;

use std::sync::Arc;

use apiserver::leader::{ElectionTiming, LeaderElector, LockBackend};
use storage::Store;

use crate::config::ServerConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The lock the controllers' leader holds: a Lease in the cluster, or a key in our store.
pub fn election(
    config: &ServerConfig,
    store: &Arc<dyn Store>,
    cluster: Option<&kube::Client>,
) -> Option<Election> {
    let flags = &config.cluster;
    if !flags.leader_elect {
        return None;
    }
    let backend: Arc<dyn apiserver::leader::LockBackend> = match cluster {
        Some(client) => Arc::new(apiserver::leader::LeaseLock::new(
            client.clone(),
            &flags.leader_elect_resource_namespace,
            &flags.leader_elect_resource_name,
        )),
        None => Arc::new(apiserver::leader::StoreLock::new(
            store.clone(),
            format!("/leases/{}", flags.leader_elect_resource_name),
        )),
    };
    Some(Election {
        backend,
        timing: apiserver::leader::ElectionTiming {
            lease_duration: flags.leader_elect_lease_duration,
            renew_deadline: flags.leader_elect_renew_deadline,
            retry_period: flags.leader_elect_retry_period,
        },
    })
}

/// How the controllers' leader is chosen when several replicas run.
pub struct Election {
    pub backend: Arc<dyn LockBackend>,
    pub timing: ElectionTiming,
}

/// Runs the import controller: always (no election), or only while this replica holds the
/// lock. `stop` ends it; the lock is released only after the controller has stopped, so two
/// replicas never import at once.
pub fn run(
    controller: Arc<import::ImportController>,
    election: Option<Election>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let Some(election) = election else {
        return tokio::spawn(controller.run(stop));
    };
    tokio::spawn(async move {
        let identity = identity();
        let elector = match LeaderElector::new(election.backend, identity.clone(), election.timing)
        {
            Ok(elector) => elector,
            Err(e) => {
                tracing::error!(error = %e, "leader election timing; the controllers do not run");
                return;
            }
        };
        tracing::info!(identity = %identity, "leader election for the controllers");
        let (release_tx, release) = watch::channel(false);
        let (leading, elector_task) = elector.run(release);
        apiserver::leader::run_while_leading(leading, stop, move |stop_one| {
            controller.clone().run(stop_one)
        })
        .await;
        let _ = release_tx.send(true);
        let _ = elector_task.await;
    })
}

/// This replica's name in the lock: the host (the pod's name in a cluster) and a random
/// suffix, as kube-controller-manager's `<hostname>_<uuid>`.
fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "image-apiserver".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}
