//! Periodic compaction, as kube-apiserver does it (`--etcd-compaction-interval`): every interval,
//! compact to the revision that was current one interval earlier, so that watches and continue
//! tokens stay valid for at least one interval while history does not grow without bound.

use std::sync::Arc;
use std::time::Duration;

use crate::{Revision, StorageError, Store};

/// Runs forever (until the task is dropped or aborted). An interval of zero disables it, for
/// deployments where another server (kube-apiserver) compacts a shared etcd.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut seen_last_time: Option<Revision> = None;
    loop {
        ticker.tick().await;
        seen_last_time = compact_once(&*store, seen_last_time).await;
    }
}

/// One round: compacts to `target` (if any) and returns the revision to compact to next time.
pub async fn compact_once(store: &dyn Store, target: Option<Revision>) -> Option<Revision> {
    if let Some(target) = target.filter(|r| *r > 0) {
        match store.compact(target).await {
            Ok(()) => tracing::info!(revision = target, "compacted storage"),
            // Someone (another server, an earlier round) already compacted this far.
            Err(StorageError::Compacted { .. }) => {}
            Err(e) => tracing::warn!(revision = target, error = %e, "compaction failed"),
        }
    }
    match store.current_revision().await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "compaction: cannot read the current revision");
            target
        }
    }
}
