//! The single writer thread of the embedded backend, with group commit.
//!
//! Every write request goes through one channel to one thread. The thread takes whatever
//! requests are waiting (up to [`MAX_BATCH`]), applies them in order inside one redb write
//! transaction (each successful one gets the next revision), commits with an fsync, and only
//! then answers each request and publishes the batch's events. So one fsync acknowledges many
//! concurrent writes, and no write is acknowledged before it is on disk.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use redb::{Durability, ReadableTable};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::tables::{
    db_err, decode_version, encode_put, encode_tombstone, rev, Version, LATEST, LOG, META,
    META_COMPACTED, META_REVISION, VERSIONS,
};
use crate::{Event, EventKind, KeyValue, Revision, StorageError};

/// The most writes one commit carries; bounds the latency a large burst adds to its first write.
const MAX_BATCH: usize = 1024;

pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// What a successful write returns: its revision and, for deletes, the deleted value.
pub(super) struct Written {
    pub revision: Revision,
    pub prev: Option<KeyValue>,
}

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Written, StorageError>>,
}

/// The events of one commit, shared by every watcher.
pub(super) struct Committed {
    pub events: Vec<Event>,
    /// The store revision after this commit.
    pub revision: Revision,
}

/// State shared between the writer thread and readers.
pub(super) struct Shared {
    /// The revision of the last commit that is durable.
    pub revision: AtomicI64,
    pub compacted: AtomicI64,
    pub events: broadcast::Sender<Arc<Committed>>,
}

pub(super) fn run(db: Arc<redb::Database>, shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        commit_batch(&db, &shared, &mut batch);
    }
    tracing::debug!("embedded store writer stopped");
}

fn commit_batch(db: &redb::Database, shared: &Shared, batch: &mut Vec<Request>) {
    let start_revision = shared.revision.load(Ordering::Acquire);
    match apply_batch(db, shared, batch, start_revision) {
        Ok((results, committed)) => {
            shared.revision.store(committed.revision, Ordering::Release);
            for (req, result) in batch.drain(..).zip(results) {
                let _ = req.reply.send(result);
            }
            if !committed.events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = shared.events.send(Arc::new(committed));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded store commit failed");
            for req in batch.drain(..) {
                let _ = req
                    .reply
                    .send(Err(StorageError::Unavailable(e.to_string())));
            }
        }
    }
}

type BatchResult = (Vec<Result<Written, StorageError>>, Committed);

fn apply_batch(
    db: &redb::Database,
    shared: &Shared,
    batch: &[Request],
    start_revision: Revision,
) -> Result<BatchResult, StorageError> {
    let mut txn = db.begin_write().map_err(db_err)?;
    txn.set_durability(Durability::Immediate).map_err(db_err)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let mut revision = start_revision;
    {
        let mut tables = Tables {
            latest: txn.open_table(LATEST).map_err(db_err)?,
            versions: txn.open_table(VERSIONS).map_err(db_err)?,
            log: txn.open_table(LOG).map_err(db_err)?,
            meta: txn.open_table(META).map_err(db_err)?,
        };
        for req in batch {
            let result = match &req.op {
                Op::Compact { revision: target } => {
                    tables.compact(*target, revision).map(|()| Written {
                        revision,
                        prev: None,
                    })
                }
                op => tables.write(op, revision + 1).map(|(written, event)| {
                    revision = written.revision;
                    events.push(event);
                    written
                }),
            };
            // A failed storage operation (not a lost CAS) aborts the whole batch.
            if let Err(e @ (StorageError::Unavailable(_) | StorageError::Corrupt { .. })) = &result
            {
                return Err(StorageError::Unavailable(e.to_string()));
            }
            results.push(result);
        }
        tables
            .meta
            .insert(META_REVISION, revision as u64)
            .map_err(db_err)?;
    }
    txn.commit().map_err(db_err)?;
    if let Some(Ok(_)) = batch
        .iter()
        .zip(&results)
        .find(|(r, _)| matches!(r.op, Op::Compact { .. }))
        .map(|(_, res)| res)
    {
        update_compacted(db, shared)?;
    }
    Ok((results, Committed { events, revision }))
}

fn update_compacted(db: &redb::Database, shared: &Shared) -> Result<(), StorageError> {
    let snap = super::tables::Snapshot::begin(db)?;
    shared.compacted.store(snap.compacted()?, Ordering::Release);
    Ok(())
}

struct Tables<'txn> {
    latest: redb::Table<'txn, &'static str, (u64, u64)>,
    versions: redb::Table<'txn, (&'static str, u64), &'static [u8]>,
    log: redb::Table<'txn, u64, (&'static str, u64)>,
    meta: redb::Table<'txn, &'static str, u64>,
}

impl Tables<'_> {
    /// Applies one write at revision `next`, or fails without touching anything.
    fn write(&mut self, op: &Op, next: Revision) -> Result<(Written, Event), StorageError> {
        match op {
            Op::Create { key, value } => {
                if self.latest.get(key.as_str()).map_err(db_err)?.is_some() {
                    return Err(StorageError::AlreadyExists { key: key.clone() });
                }
                self.put(key, value, next, None)
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                let current = self.current(key)?;
                match current {
                    Some(kv) if kv.mod_revision == *expected => {
                        self.put(key, value, next, Some(kv))
                    }
                    Some(kv) => Err(conflict(key, *expected, Some(kv))),
                    None => Err(StorageError::NotFound { key: key.clone() }),
                }
            }
            Op::Delete { key, expected } => {
                let current = self
                    .current(key)?
                    .ok_or_else(|| StorageError::NotFound { key: key.clone() })?;
                if let Some(expected) = expected {
                    if current.mod_revision != *expected {
                        return Err(conflict(key, *expected, Some(current)));
                    }
                }
                self.tombstone(key, next, current)
            }
            Op::Compact { .. } => unreachable_compact(),
        }
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let Some(entry) = self.latest.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        let (create, modr) = entry.value();
        let raw = self
            .versions
            .get((key, modr))
            .map_err(db_err)?
            .ok_or_else(|| StorageError::Corrupt {
                key: key.to_string(),
                reason: format!("latest index points at missing version {modr}"),
            })?;
        match decode_version(key, raw.value())? {
            Version::Put { value, .. } => Ok(Some(KeyValue {
                key: key.to_string(),
                value,
                create_revision: rev(create),
                mod_revision: rev(modr),
            })),
            Version::Tombstone => Err(StorageError::Corrupt {
                key: key.to_string(),
                reason: "latest index points at a tombstone".to_string(),
            }),
        }
    }

    fn put(
        &mut self,
        key: &str,
        value: &Bytes,
        next: Revision,
        prev: Option<KeyValue>,
    ) -> Result<(Written, Event), StorageError> {
        let n = next as u64;
        let create = prev.as_ref().map_or(n, |p| p.create_revision as u64);
        let prev_rev = prev.as_ref().map_or(0, |p| p.mod_revision as u64);
        self.versions
            .insert((key, n), encode_put(create, value).as_slice())
            .map_err(db_err)?;
        self.latest.insert(key, (create, n)).map_err(db_err)?;
        self.log.insert(n, (key, prev_rev)).map_err(db_err)?;
        let event = Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_string(),
                value: value.clone(),
                create_revision: rev(create),
                mod_revision: next,
            },
        };
        Ok((
            Written {
                revision: next,
                prev: None,
            },
            event,
        ))
    }

    fn tombstone(
        &mut self,
        key: &str,
        next: Revision,
        prev: KeyValue,
    ) -> Result<(Written, Event), StorageError> {
        let n = next as u64;
        self.versions
            .insert((key, n), encode_tombstone().as_slice())
            .map_err(db_err)?;
        self.latest.remove(key).map_err(db_err)?;
        self.log
            .insert(n, (key, prev.mod_revision as u64))
            .map_err(db_err)?;
        let event = Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: key.to_string(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: next,
            },
        };
        Ok((
            Written {
                revision: next,
                prev: Some(prev),
            },
            event,
        ))
    }

    /// Drops the history before `target`: log entries below it, every version they superseded,
    /// and tombstones. The versions that ranges at `target` or later can see are kept (and the
    /// one the write at `target` superseded, until the next compaction).
    fn compact(&mut self, target: Revision, current: Revision) -> Result<(), StorageError> {
        let compacted = self
            .meta
            .get(META_COMPACTED)
            .map_err(db_err)?
            .map_or(0, |v| v.value());
        if target <= compacted as Revision {
            return Err(StorageError::Compacted {
                requested: target,
                compacted: compacted as Revision,
            });
        }
        if target > current {
            return Err(StorageError::FutureRevision {
                requested: target,
                current,
            });
        }
        let doomed: Vec<(u64, String, u64)> = self
            .log
            .range(..target as u64)
            .map_err(db_err)?
            .map(|entry| {
                let (r, v) = entry.map_err(db_err)?;
                let (key, prev) = v.value();
                Ok((r.value(), key.to_string(), prev))
            })
            .collect::<Result<_, StorageError>>()?;
        for (r, key, prev) in doomed {
            if prev > 0 {
                self.versions.remove((key.as_str(), prev)).map_err(db_err)?;
            }
            let is_tombstone = match self.versions.get((key.as_str(), r)).map_err(db_err)? {
                Some(raw) => matches!(decode_version(&key, raw.value())?, Version::Tombstone),
                None => false,
            };
            if is_tombstone {
                self.versions.remove((key.as_str(), r)).map_err(db_err)?;
            }
            self.log.remove(r).map_err(db_err)?;
        }
        self.meta
            .insert(META_COMPACTED, target as u64)
            .map_err(db_err)?;
        Ok(())
    }
}

fn conflict(key: &str, expected: Revision, current: Option<KeyValue>) -> StorageError {
    StorageError::Conflict {
        key: key.to_string(),
        expected,
        current: current.map(Box::new),
    }
}

fn unreachable_compact() -> Result<(Written, Event), StorageError> {
    Err(StorageError::Unavailable(
        "compaction routed to the write path".to_string(),
    ))
}
