//! Watches on the embedded backend.
//!
//! A watch task subscribes to the writer's commit broadcast *before* replaying the durable log
//! from the requested revision, so no commit can fall between replay and live delivery. Commits
//! already covered by the replay are skipped by revision. If the task falls behind the
//! broadcast (it lagged), it replays the gap from the log again: the log, not memory, is the
//! source of truth, so a slow watch never misses an event while history is kept.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::tables::Snapshot;
use super::writer::{Committed, Shared};
use crate::watch::WatchFeeder;
use crate::{Result, Revision, StorageError, WatchMessage, WatchStream};

/// Log entries read per replay step; bounds the memory one catching-up watch holds.
const REPLAY_CHUNK: usize = 1024;

pub(super) fn start(
    db: Arc<redb::Database>,
    shared: Arc<Shared>,
    prefix: String,
    after: Revision,
) -> WatchStream {
    let (stream, feeder) = WatchStream::channel(64);
    let live = shared.events.subscribe();
    tokio::spawn(async move {
        let task = WatchTask {
            db,
            shared,
            prefix,
            sent: after,
            feeder,
        };
        task.run(live).await;
    });
    stream
}

struct WatchTask {
    db: Arc<redb::Database>,
    shared: Arc<Shared>,
    prefix: String,
    /// Every event with a revision up to this one has been delivered (or did not match).
    sent: Revision,
    feeder: WatchFeeder,
}

impl WatchTask {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Committed>>) {
        if let Err(e) = self.replay().await {
            let _ = self.feeder.send(Err(e)).await;
            return;
        }
        loop {
            tokio::select! {
                msg = live.recv() => match msg {
                    Ok(committed) => {
                        if !self.deliver(&committed).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        if let Err(e) = self.replay().await {
                            let _ = self.feeder.send(Err(e)).await;
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                req = self.feeder.progress_requests.recv() => {
                    if req.is_none() {
                        return;
                    }
                    if !self.answer_progress(&mut live).await {
                        return;
                    }
                }
                () = self.feeder.tx.closed() => return,
            }
        }
    }

    /// Sends the log from `sent` up to the current revision.
    async fn replay(&mut self) -> Result<()> {
        loop {
            let compacted = self.shared.compacted.load(Ordering::Acquire);
            if self.sent + 1 < compacted {
                return Err(StorageError::Compacted {
                    requested: self.sent + 1,
                    compacted,
                });
            }
            let (db, prefix, after) = (self.db.clone(), self.prefix.clone(), self.sent as u64);
            let (events, last, current) = tokio::task::spawn_blocking(move || {
                let snap = Snapshot::begin(&db)?;
                let (events, last) = snap.log_after(&prefix, after, REPLAY_CHUNK)?;
                Ok::<_, StorageError>((events, last, snap.revision()?))
            })
            .await
            .map_err(|e| StorageError::Unavailable(format!("replay task failed: {e}")))??;
            if !events.is_empty() && !self.feeder.send(Ok(WatchMessage::Events(events))).await {
                return Ok(());
            }
            // An empty chunk means the log is read up to the snapshot's revision.
            self.sent = self.sent.max(last as Revision);
            if last as Revision >= current || last == after {
                self.sent = self.sent.max(current);
                return Ok(());
            }
        }
    }

    async fn deliver(&mut self, committed: &Committed) -> bool {
        if committed.revision <= self.sent {
            return true;
        }
        let events: Vec<_> = committed
            .events
            .iter()
            .filter(|e| e.revision() > self.sent && e.kv.key.starts_with(&self.prefix))
            .cloned()
            .collect();
        self.sent = committed.revision;
        events.is_empty() || self.feeder.send(Ok(WatchMessage::Events(events))).await
    }

    /// Drains commits already broadcast, then promises everything up to `sent`.
    async fn answer_progress(&mut self, live: &mut broadcast::Receiver<Arc<Committed>>) -> bool {
        loop {
            match live.try_recv() {
                Ok(committed) => {
                    if !self.deliver(&committed).await {
                        return false;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if let Err(e) = self.replay().await {
                        let _ = self.feeder.send(Err(e)).await;
                        return false;
                    }
                }
                Err(_) => break,
            }
        }
        // Commits that are durable but not yet broadcast are covered by a replay of the log.
        if self.shared.revision.load(Ordering::Acquire) > self.sent {
            if let Err(e) = self.replay().await {
                let _ = self.feeder.send(Err(e)).await;
                return false;
            }
        }
        self.feeder
            .send(Ok(WatchMessage::Progress(self.sent)))
            .await
    }
}
