//! The store's current revision for consistent reads, fetched once for the readers that
//! arrive together. A consistent read must see a revision read *after* it arrived, so a reader
//! may not reuse a fetch already on its way: it joins a batch that has not fetched yet, or opens
//! one. A batch stays open for one turn of the scheduler, gathering the readers that arrive
//! meanwhile, then fetches at once, whatever other fetches are on their way: about one store
//! round trip of latency per read, and far fewer fetches than reads under load
//! (kube-apiserver sends one per read). Stores that answer from memory are asked directly
//! ([`crate::Store::local_revision`]).

use std::sync::Arc;
use std::sync::Mutex;

use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;

use crate::{Result, Revision, StorageError, Store};

type Answer = std::result::Result<Revision, String>;
type Batch = Shared<oneshot::Receiver<Answer>>;

#[derive(Default)]
pub(crate) struct CurrentRevision {
    /// The batch that has not started fetching yet: arrivals join it.
    pending: Mutex<Option<Batch>>,
}

impl CurrentRevision {
    /// A revision the store reached after this call began.
    pub(crate) async fn get(&self, store: &Arc<dyn Store>) -> Result<Revision> {
        let (batch, leader) = self.join();
        if let Some(answer) = leader {
            // Closes the batch when dropped: after one turn of the scheduler, in which the
            // readers arriving at the same moment join it, or when the reading request goes
            // away while waiting, so that nobody joins a batch no one will fetch for.
            let close = CloseBatch(&self.pending);
            tokio::task::yield_now().await;
            // From here on, arrivals must wait for a fetch that starts after them.
            drop(close);
            let fetched = store.current_revision().await;
            let _ = answer.send(fetched.as_ref().map(|r| *r).map_err(|e| e.to_string()));
            return fetched;
        }
        match batch.await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(message)) => Err(StorageError::Unavailable(message)),
            // The leader went away (its request was dropped) before answering: ask directly.
            Err(_) => store.current_revision().await,
        }
    }

    /// The pending batch, and its sender when this caller opened it (and so fetches for it).
    fn join(&self) -> (Batch, Option<oneshot::Sender<Answer>>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(batch) = pending.as_ref() {
            return (batch.clone(), None);
        }
        let (tx, rx) = oneshot::channel();
        let batch = rx.shared();
        *pending = Some(batch.clone());
        (batch, Some(tx))
    }
}

struct CloseBatch<'a>(&'a Mutex<Option<Batch>>);

impl Drop for CloseBatch<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::embedded::{EmbeddedStore, Options};
    use crate::testing::FaultyStore;

    /// 64 readers, one in eight of them after a write of its own, each checking that the
    /// revision it got covers every write acknowledged before it began; the number of fetches
    /// they needed.
    async fn readers_after_writes() -> usize {
        let dir = tempfile::tempdir().expect("dir");
        let embedded = EmbeddedStore::open(dir.path(), Options::default()).expect("open");
        let faulty = Arc::new(FaultyStore::new(Arc::new(embedded)));
        faulty.slow_revisions(std::time::Duration::from_millis(20));
        let store: Arc<dyn Store> = faulty.clone();
        let current = Arc::new(CurrentRevision::default());
        let written = Arc::new(AtomicI64::new(0));
        let mut readers = Vec::new();
        for i in 0..64u64 {
            let (store, current, written) = (store.clone(), current.clone(), written.clone());
            readers.push(tokio::spawn(async move {
                if i % 8 == 0 {
                    let rev = store
                        .create(&format!("/k/{i}"), bytes::Bytes::from_static(b"{}"))
                        .await
                        .expect("create");
                    written.fetch_max(rev, Ordering::SeqCst);
                }
                // Every write acknowledged before this read began must be covered.
                let floor = written.load(Ordering::SeqCst);
                let seen = current.get(&store).await.expect("revision");
                assert!(
                    seen >= floor,
                    "read {seen} below a write acknowledged before it ({floor})"
                );
            }));
        }
        for r in readers {
            r.await.expect("reader");
        }
        faulty.revision_calls()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readers_on_many_threads_never_see_a_revision_older_than_their_start() {
        readers_after_writes().await;
    }

    /// On one thread the interleaving is the scheduler's, not the machine's load: readers that
    /// arrive in the same turn share a fetch.
    #[tokio::test]
    async fn concurrent_readers_share_fetches_that_start_after_them() {
        let fetches = readers_after_writes().await;
        assert!(
            fetches < 16,
            "64 concurrent readers needed {fetches} fetches of the revision"
        );
    }
}
