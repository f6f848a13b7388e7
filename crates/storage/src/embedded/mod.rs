//! The embedded backend (the default): one redb file in a data directory.
//!
//! - One global revision, advanced by one per successful write ([`writer`]).
//! - Writes are group-committed: concurrent writers share one fsynced transaction, and none is
//!   acknowledged before the commit is durable.
//! - History (old versions and the event log) is kept until [`Store::compact`], so ranges at
//!   past revisions and watches from past revisions work like etcd's.
//! - Watches replay the durable log, then follow commits live ([`watch`]).

mod tables;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::tables::{db_err, Snapshot};
use self::writer::{Op, Request, Shared, Written};
use crate::{
    validate_key, GetResponse, KeyValue, RangeRequest, RangeResponse, Result, Revision,
    StorageError, Store, WatchStream,
};

/// The file inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// The store holds every object, so only its owner may read it (as the keys and tokens that
/// sit beside it).
const DB_FILE_MODE: u32 = 0o600;

/// A data directory the store creates is its owner's alone.
const DATA_DIR_MODE: u32 = 0o700;

/// Tuning for the embedded backend.
#[derive(Clone, Debug)]
pub struct Options {
    /// redb's page cache; the OS page cache sits behind it, so it need not hold everything.
    pub cache_bytes: usize,
    /// Shrink the file on open (etcd's defrag): compaction frees pages for reuse, so the file
    /// levels off, but only this gives the space back to the filesystem.
    pub defrag: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_bytes: 64 << 20,
            defrag: false,
        }
    }
}

/// The embedded store. Cheap to clone; all clones share one database and one writer thread.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<redb::Database>,
    shared: Arc<Shared>,
    writes: mpsc::Sender<Request>,
    writer: std::thread::JoinHandle<()>,
    path: PathBuf,
}

/// Rewrites the live pages into the front of the file and truncates the rest, logging the sizes.
fn defrag(db: &mut redb::Database, path: &Path) -> Result<()> {
    let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    db.compact()
        .map_err(|e| StorageError::Unavailable(format!("defragmenting {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), before, after = size(), "defragmented the embedded store");
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, creating the directory if needed. Must be called
    /// inside a tokio runtime.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self> {
        let dir = dir.as_ref();
        create_private_dir(dir).map_err(|e| {
            StorageError::Unavailable(format!("creating data directory {}: {e}", dir.display()))
        })?;
        let path = dir.join(DB_FILE);
        make_private_file(&path)
            .map_err(|e| StorageError::Unavailable(format!("securing {}: {e}", path.display())))?;
        let mut db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .create(&path)
            .map_err(db_err)?;
        if options.defrag {
            defrag(&mut db, &path)?;
        }
        let db = Arc::new(db);
        ensure_tables(&db)?;
        let snap = Snapshot::begin(&db)?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(snap.revision()?),
            compacted: AtomicI64::new(snap.compacted()?),
            events,
        });
        drop(snap);
        let (writes, rx) = mpsc::channel(8192);
        let (db2, shared2) = (db.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("embedded-writer".into())
            .spawn(move || writer::run(db2, shared2, rx))
            .map_err(|e| StorageError::Unavailable(format!("starting writer thread: {e}")))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                shared,
                writes,
                writer,
                path,
            }),
        })
    }

    /// Finishes the writes in flight and releases the database file, so another process (or a
    /// new [`EmbeddedStore::open`]) can open it. Waits up to `timeout` for other clones of this
    /// store and its watches to go away (tasks being cancelled let go asynchronously).
    pub async fn close(self, timeout: std::time::Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let inner = wait_unshared(self.inner, deadline).await?;
        let Inner {
            db, writes, writer, ..
        } = inner;
        drop(writes);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|e| StorageError::Unavailable(format!("joining writer: {e}")))?
            .map_err(|_| StorageError::Unavailable("writer thread panicked".into()))?;
        drop(wait_unshared(db, deadline).await?);
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn submit(&self, op: Op) -> Result<Written> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .writes
            .send(Request { op, reply })
            .await
            .map_err(|_| StorageError::Unavailable("embedded store writer stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Unavailable("embedded store writer stopped".into()))?
    }

    /// Runs a read against one snapshot on the blocking pool (redb reads are synchronous).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshot) -> Result<T> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&Snapshot::begin(&db)?))
            .await
            .map_err(|e| StorageError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// Takes sole ownership of an `Arc`, waiting for its other holders until `deadline`.
async fn wait_unshared<T>(mut shared: Arc<T>, deadline: tokio::time::Instant) -> Result<T> {
    loop {
        match Arc::try_unwrap(shared) {
            Ok(owned) => return Ok(owned),
            Err(still) if tokio::time::Instant::now() < deadline => {
                shared = still;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(_) => {
                return Err(StorageError::Unavailable(
                    "embedded store is still in use; cannot close".into(),
                ))
            }
        }
    }
}

/// Creates `dir` and any missing parents owner-only (0700): the data directory holds the store,
/// keys and tokens. An existing directory is left as it is (it is the operator's).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
}

/// Creates the database file owner-only before redb opens it (redb would create it with the
/// umask's mode, world-readable by default), and tightens a file an earlier version created.
/// redb initializes an empty file as a new database.
fn make_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(DB_FILE_MODE)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(DB_FILE_MODE))
}

fn ensure_tables(db: &redb::Database) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(tables::LATEST).map_err(db_err)?;
    txn.open_table(tables::VERSIONS).map_err(db_err)?;
    txn.open_table(tables::LOG).map_err(db_err)?;
    txn.open_table(tables::META).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<GetResponse> {
        validate_key(key)?;
        let key = key.to_string();
        self.read(move |snap| {
            Ok(GetResponse {
                kv: snap.get(&key)?,
                revision: snap.revision()?,
            })
        })
        .await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        self.read(move |snap| {
            let current = snap.revision()?;
            match req.revision {
                None => snap.range_latest(&req),
                Some(r) if r == current || r == 0 => snap.range_latest(&req),
                Some(r) if r > current => Err(StorageError::FutureRevision {
                    requested: r,
                    current,
                }),
                Some(r) => {
                    let compacted = snap.compacted()?;
                    if r < compacted {
                        return Err(StorageError::Compacted {
                            requested: r,
                            compacted,
                        });
                    }
                    snap.range_at(&req, r)
                }
            }
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        validate_key(key)?;
        let op = Op::Create {
            key: key.to_string(),
            value,
        };
        Ok(self.submit(op).await?.revision)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        validate_key(key)?;
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected,
        };
        Ok(self.submit(op).await?.revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        validate_key(key)?;
        let op = Op::Delete {
            key: key.to_string(),
            expected,
        };
        let written = self.submit(op).await?;
        let prev = written.prev.ok_or_else(|| StorageError::Corrupt {
            key: key.to_string(),
            reason: "delete returned no previous value".to_string(),
        })?;
        Ok((written.revision, prev))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.inner.shared.compacted.load(Ordering::Acquire);
        if after + 1 < compacted {
            return Err(StorageError::Compacted {
                requested: after + 1,
                compacted,
            });
        }
        Ok(watch::start(
            self.inner.db.clone(),
            self.inner.shared.clone(),
            prefix.to_string(),
            after,
        ))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.revision.load(Ordering::Acquire))
    }

    fn local_revision(&self) -> bool {
        true
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn the_store_file_and_the_directory_it_creates_are_owner_only() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("new").join("data");
        let store = EmbeddedStore::open(&dir, Options::default()).expect("open");
        let file = store.path().to_path_buf();
        assert_eq!(mode(&file), 0o600);
        // Group and other bits are gone whatever the umask; the owner's are the umask's call.
        assert_eq!(mode(&dir) & 0o077, 0);
        assert_eq!(mode(&tmp.path().join("new")) & 0o077, 0);
        store
            .create("/k", Bytes::from_static(b"v"))
            .await
            .expect("write");
        store.close(Duration::from_secs(5)).await.expect("close");

        // A file an earlier version left readable to all is tightened, and its data kept.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let store = EmbeddedStore::open(&dir, Options::default()).expect("reopen");
        assert_eq!(mode(&file), 0o600);
        let got = store.get("/k").await.expect("read");
        assert_eq!(got.kv.map(|kv| kv.value), Some(Bytes::from_static(b"v")));
    }

    #[tokio::test]
    async fn an_existing_data_directory_keeps_its_mode() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let store = EmbeddedStore::open(tmp.path(), Options::default()).expect("open");
        assert_eq!(mode(tmp.path()), 0o755);
        assert_eq!(mode(store.path()), 0o600);
    }
}
