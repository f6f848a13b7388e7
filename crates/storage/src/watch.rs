//! The watch stream every backend returns: a bounded channel of event batches and progress
//! notifications fed by a backend task, plus a handle to ask that task for progress.

use tokio::sync::mpsc;

use crate::{Event, Result, Revision};

/// What a watch delivers.
#[derive(Clone, Debug)]
pub enum WatchMessage {
    /// Changes at one revision or a run of revisions, in order.
    Events(Vec<Event>),
    /// Every change up to and including `revision` has been delivered.
    Progress(Revision),
}

/// A live watch. Dropping it stops the backend task feeding it.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchMessage>>,
    progress: mpsc::Sender<()>,
}

impl WatchStream {
    /// Creates the two ends: the stream for the consumer and the feeder for the backend task.
    pub(crate) fn channel(capacity: usize) -> (WatchStream, WatchFeeder) {
        let (tx, rx) = mpsc::channel(capacity);
        let (progress_tx, progress_rx) = mpsc::channel(1);
        (
            WatchStream {
                rx,
                progress: progress_tx,
            },
            WatchFeeder {
                tx,
                progress_requests: progress_rx,
            },
        )
    }

    /// The next message; `None` once the watch has ended (after an error, or when the store
    /// shuts down).
    pub async fn next(&mut self) -> Option<Result<WatchMessage>> {
        self.rx.recv().await
    }

    /// Asks the backend to send a [`WatchMessage::Progress`] soon. Best effort: an etcd older
    /// than 3.4.25 may never answer, so callers bound their wait.
    pub fn request_progress(&self) {
        self.progress_requester().request();
    }

    /// A handle that asks for progress without borrowing the stream, for code that does not
    /// own it (the watch cache's readers).
    pub fn progress_requester(&self) -> ProgressRequester {
        ProgressRequester(self.progress.clone())
    }
}

/// Asks a [`WatchStream`]'s backend for a progress notification.
#[derive(Clone, Debug)]
pub struct ProgressRequester(mpsc::Sender<()>);

impl ProgressRequester {
    pub fn request(&self) {
        // A request already pending is as good as a second one.
        let _ = self.0.try_send(());
    }
}

/// The backend side of a [`WatchStream`].
pub(crate) struct WatchFeeder {
    pub tx: mpsc::Sender<Result<WatchMessage>>,
    pub progress_requests: mpsc::Receiver<()>,
}

impl WatchFeeder {
    /// Sends a message; false when the consumer has gone away.
    pub async fn send(&self, msg: Result<WatchMessage>) -> bool {
        self.tx.send(msg).await.is_ok()
    }
}
