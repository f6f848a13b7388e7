//! The store's current revision for consistent reads, fetched once for the readers that
//! arrive together. A consistent read must see a revision read *after* it arrived, so a reader
//! may not reuse a fetch already on its way: it joins the batch that has not fetched yet, or
//! opens one. One fetch at most is on its way: a batch fetches when the fetch before it has
//! answered, gathering every reader that arrives meanwhile. An idle store is asked at once (one
//! round trip per read); a busy one is asked about once per round trip however many readers
//! there are (kube-apiserver sends one request per read). On etcd every fetch is a
//! linearizable read through raft, about 0.5 ms of etcd 3.5's CPU when they come one at a
//! time, which on a small machine is CPU the readers need. Stores that answer from memory are
//! asked directly ([`crate::Store::local_revision`]).
//!
//! Measured (`hack/bench api`, 16 readers, etcd 3.5 on the same 2 cores): about 6 readers
//! share each fetch (0.16 etcd Range per GET). Spacing fetches at least 1 ms apart to gather
//! more readers cut fetches by a third but not the CPU per read, and closed-loop throughput
//! stayed the same: the readers waited longer instead. Yielding to the scheduler before each
//! fetch did worse. Letting a second fetch start while one is on its way (a reader then waits
//! one round trip, not one and a half) did worse too, alternated with this in one session:
//! 10,700–10,800 GETs/s against 11,150–11,330, with 0.046–0.048 ms of etcd CPU per GET against
//! 0.040: client, server and etcd share two cores, so the extra fetches' CPU costs more than
//! the shorter wait gains.

use std::sync::Arc;
use std::sync::Mutex;

use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;

use crate::{Result, Revision, StorageError, Store};

type Answer = std::result::Result<Revision, String>;
type Batch = Shared<oneshot::Receiver<Answer>>;

#[derive(Default)]
pub(crate) struct CurrentRevision {
    state: Arc<Mutex<Fetching>>,
}

#[derive(Default)]
struct Fetching {
    /// The batch that has not started fetching yet: arrivals join it.
    pending: Option<(Batch, oneshot::Sender<Answer>)>,
    /// Whether a fetcher is running; it takes the pending batch when its fetch has answered.
    running: bool,
}

impl CurrentRevision {
    /// A revision the store reached after this call began.
    pub(crate) async fn get(&self, store: &Arc<dyn Store>) -> Result<Revision> {
        let batch = self.join(store);
        match batch.await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(message)) => Err(StorageError::Unavailable(message)),
            // The fetcher went away (the runtime is shutting down) before answering.
            Err(_) => store.current_revision().await,
        }
    }

    /// The pending batch, opened if need be, with a fetcher started if none runs.
    fn join(&self, store: &Arc<dyn Store>) -> Batch {
        let mut state = lock(&self.state);
        if let Some((batch, _)) = state.pending.as_ref() {
            return batch.clone();
        }
        let (tx, rx) = oneshot::channel();
        let batch = rx.shared();
        state.pending = Some((batch.clone(), tx));
        if !state.running {
            state.running = true;
            // A task of its own: the fetch outlives any one reader, whose request may go away.
            tokio::spawn(Fetcher::new(self.state.clone()).run(store.clone()));
        }
        batch
    }
}

fn lock(state: &Mutex<Fetching>) -> std::sync::MutexGuard<'_, Fetching> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fetches for one pending batch after another until none is left.
struct Fetcher {
    state: Arc<Mutex<Fetching>>,
    /// Set when it stopped for want of batches, as opposed to being cancelled.
    finished: bool,
}

impl Fetcher {
    fn new(state: Arc<Mutex<Fetching>>) -> Self {
        Fetcher {
            state,
            finished: false,
        }
    }

    async fn run(mut self, store: Arc<dyn Store>) {
        while let Some(answer) = self.next_batch() {
            // Its readers all joined before the batch was taken: the fetch starts after them.
            let fetched = store.current_revision().await;
            let _ = answer.send(fetched.map_err(|e| e.to_string()));
        }
    }

    /// The pending batch's sender; or none, and then the fetcher stops under the same lock, so
    /// that a reader arriving next starts another.
    fn next_batch(&mut self) -> Option<oneshot::Sender<Answer>> {
        let mut state = lock(&self.state);
        let taken = state.pending.take().map(|(_, answer)| answer);
        if taken.is_none() {
            state.running = false;
            self.finished = true;
        }
        taken
    }
}

impl Drop for Fetcher {
    /// Cancelled mid-fetch (the runtime is shutting down): the readers waiting on it, and on the
    /// batch pending after it, are answered with an error and ask the store directly.
    fn drop(&mut self) {
        if !self.finished {
            let mut state = lock(&self.state);
            state.running = false;
            state.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::embedded::{EmbeddedStore, Options};
    use crate::testing::FaultyStore;

    struct Fetches {
        calls: usize,
        most_at_once: usize,
    }

    /// A store whose revision takes 20 ms to come back, with the temporary directory it lives in.
    fn store_far_away() -> (tempfile::TempDir, Arc<FaultyStore>, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("dir");
        let embedded = EmbeddedStore::open(dir.path(), Options::default()).expect("open");
        let faulty = Arc::new(FaultyStore::new(Arc::new(embedded)));
        faulty.slow_revisions(Duration::from_millis(20));
        let store: Arc<dyn Store> = faulty.clone();
        (dir, faulty, store)
    }

    /// 64 readers, arriving `stagger` apart, one in eight of them after a write of its own, each
    /// checking that the revision it got covers every write acknowledged before it began; the
    /// fetches they needed, against a store 20 ms away.
    async fn readers_after_writes(stagger: Duration) -> Fetches {
        let (_dir, faulty, store) = store_far_away();
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
            if !stagger.is_zero() {
                tokio::time::sleep(stagger).await;
            }
        }
        for r in readers {
            r.await.expect("reader");
        }
        Fetches {
            calls: faulty.revision_calls(),
            most_at_once: faulty.most_revisions_in_flight(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readers_on_many_threads_never_see_a_revision_older_than_their_start() {
        readers_after_writes(Duration::ZERO).await;
    }

    /// Readers arriving while a fetch is on its way wait for the next one, which covers them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readers_arriving_during_a_fetch_never_see_a_revision_older_than_their_start() {
        readers_after_writes(Duration::from_millis(1)).await;
    }

    /// On one thread the interleaving is the scheduler's, not the machine's load: readers that
    /// arrive in the same turn share a fetch.
    #[tokio::test]
    async fn concurrent_readers_share_fetches_that_start_after_them() {
        let fetches = readers_after_writes(Duration::ZERO).await;
        assert!(
            fetches.calls < 16,
            "64 concurrent readers needed {} fetches of the revision",
            fetches.calls
        );
    }

    /// 64 readers over about 64 ms against a store 20 ms away: one fetch at a time, each for
    /// every reader that arrived during the one before, so a handful of fetches in all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_fetch_at_most_is_on_its_way_however_many_readers_arrive() {
        let fetches = readers_after_writes(Duration::from_millis(1)).await;
        assert_eq!(fetches.most_at_once, 1, "fetches overlapped");
        assert!(
            fetches.calls <= 16,
            "64 readers over 64 ms needed {} fetches of 20 ms each",
            fetches.calls
        );
    }

    /// A reader that goes away while waiting takes nobody's fetch with it.
    #[tokio::test]
    async fn a_reader_that_goes_away_leaves_the_fetch_to_the_others() {
        let (_dir, faulty, store) = store_far_away();
        let current = Arc::new(CurrentRevision::default());
        let impatient = tokio::time::timeout(Duration::from_millis(1), current.get(&store)).await;
        assert!(impatient.is_err(), "the first reader should have given up");
        let written = store
            .create("/k/late", bytes::Bytes::from_static(b"{}"))
            .await
            .expect("create");
        let seen = current.get(&store).await.expect("revision");
        assert!(seen >= written, "read {seen} below the write {written}");
        assert_eq!(
            faulty.revision_calls(),
            2,
            "the first fetch and one after the write"
        );
    }
}
