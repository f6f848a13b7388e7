//! The on-disk layout of the embedded backend and the synchronous reads over it.
//!
//! Four redb tables:
//! - `latest`: key → (create revision, mod revision) of every live key;
//! - `versions`: (key, revision) → a put record (create revision + value) or a tombstone, for
//!   every version not yet compacted away; ranges at past revisions read it;
//! - `log`: revision → (key, previous mod revision), one entry per write, the event log that
//!   watches replay from;
//! - `meta`: the current and the compacted revision.
//!
//! Values live once, in `versions`; `latest` is the index of current keys.

use bytes::Bytes;
use redb::{ReadableDatabase, TableDefinition};

use crate::{Event, EventKind, KeyValue, RangeRequest, RangeResponse, Revision, StorageError};

pub(super) const LATEST: TableDefinition<&str, (u64, u64)> = TableDefinition::new("latest");
pub(super) const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
pub(super) const LOG: TableDefinition<u64, (&str, u64)> = TableDefinition::new("log");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub(super) const META_REVISION: &str = "revision";
pub(super) const META_COMPACTED: &str = "compacted";

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// Maps any redb failure to the one storage error it can be: the disk is not answering.
pub(super) fn db_err(e: impl Into<redb::Error>) -> StorageError {
    StorageError::Unavailable(format!("embedded store: {}", e.into()))
}

/// A decoded `versions` record.
pub(super) enum Version {
    Put { create_revision: u64, value: Bytes },
    Tombstone,
}

pub(super) fn encode_put(create_revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + value.len());
    out.push(TAG_PUT);
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn encode_tombstone() -> Vec<u8> {
    vec![TAG_TOMBSTONE]
}

pub(super) fn decode_version(key: &str, raw: &[u8]) -> Result<Version, StorageError> {
    let corrupt = |reason: &str| StorageError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    match raw.split_first() {
        Some((&TAG_TOMBSTONE, [])) => Ok(Version::Tombstone),
        Some((&TAG_PUT, rest)) if rest.len() >= 8 => {
            let (rev, value) = rest.split_at(8);
            let mut buf = [0u8; 8];
            buf.copy_from_slice(rev);
            Ok(Version::Put {
                create_revision: u64::from_be_bytes(buf),
                value: Bytes::copy_from_slice(value),
            })
        }
        _ => Err(corrupt("unknown version record")),
    }
}

pub(super) fn rev(r: u64) -> Revision {
    r as Revision
}

/// A consistent view of the store: every read of one request goes through one snapshot.
pub(super) struct Snapshot {
    txn: redb::ReadTransaction,
}

impl Snapshot {
    pub fn begin(db: &redb::Database) -> Result<Self, StorageError> {
        Ok(Snapshot {
            txn: db.begin_read().map_err(db_err)?,
        })
    }

    pub fn meta(&self, name: &str) -> Result<u64, StorageError> {
        let table = match self.txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(db_err(e)),
        };
        Ok(table
            .get(name)
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    pub fn revision(&self) -> Result<Revision, StorageError> {
        self.meta(META_REVISION).map(rev)
    }

    pub fn compacted(&self) -> Result<Revision, StorageError> {
        self.meta(META_COMPACTED).map(rev)
    }

    /// The version of `key` written at exactly `revision`.
    pub fn version_at(&self, key: &str, revision: u64) -> Result<Option<Version>, StorageError> {
        let versions = self.txn.open_table(VERSIONS).map_err(db_err)?;
        let raw = versions.get((key, revision)).map_err(db_err)?;
        raw.map(|raw| decode_version(key, raw.value())).transpose()
    }

    /// The live value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let latest = self.txn.open_table(LATEST).map_err(db_err)?;
        let Some(entry) = latest.get(key).map_err(db_err)? else {
            return Ok(None);
        };
        let (create_revision, mod_revision) = entry.value();
        self.put_at(key, create_revision, mod_revision)
    }

    fn put_at(&self, key: &str, create: u64, modr: u64) -> Result<Option<KeyValue>, StorageError> {
        match self.version_at(key, modr)? {
            Some(Version::Put { value, .. }) => Ok(Some(KeyValue {
                key: key.to_string(),
                value,
                create_revision: rev(create),
                mod_revision: rev(modr),
            })),
            Some(Version::Tombstone) | None => Err(StorageError::Corrupt {
                key: key.to_string(),
                reason: format!("latest index points at missing version {modr}"),
            }),
        }
    }

    /// A range at the snapshot's own revision, driven by the `latest` index.
    pub fn range_latest(&self, req: &RangeRequest) -> Result<RangeResponse, StorageError> {
        let revision = self.revision()?;
        let latest = self.txn.open_table(LATEST).map_err(db_err)?;
        let (start, end) = range_bounds(req);
        let mut kvs = Vec::new();
        let mut remaining = 0u64;
        for entry in latest.range(start.as_str()..end.as_str()).map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            if req.limit > 0 && kvs.len() == req.limit {
                remaining += 1;
                continue;
            }
            let (create, modr) = value.value();
            if let Some(kv) = self.put_at(key.value(), create, modr)? {
                kvs.push(kv);
            }
        }
        Ok(RangeResponse {
            kvs,
            revision,
            remaining,
            more: remaining > 0,
        })
    }

    /// A range at a past revision, driven by the `versions` table: for each key, the last
    /// version at or before `at`, skipped if it is a tombstone.
    pub fn range_at(
        &self,
        req: &RangeRequest,
        at: Revision,
    ) -> Result<RangeResponse, StorageError> {
        let versions = self.txn.open_table(VERSIONS).map_err(db_err)?;
        let (start, end) = range_bounds(req);
        let at = at as u64;
        let mut kvs = Vec::new();
        let mut remaining = 0u64;
        // The candidate version of the key being scanned: (key, revision, raw record).
        let mut current: Option<(String, u64, Vec<u8>)> = None;
        let flush = |cand: Option<(String, u64, Vec<u8>)>,
                     kvs: &mut Vec<KeyValue>,
                     remaining: &mut u64|
         -> Result<(), StorageError> {
            let Some((key, modr, raw)) = cand else {
                return Ok(());
            };
            if let Version::Put {
                create_revision,
                value,
            } = decode_version(&key, &raw)?
            {
                if req.limit > 0 && kvs.len() == req.limit {
                    *remaining += 1;
                } else {
                    kvs.push(KeyValue {
                        key,
                        value,
                        create_revision: rev(create_revision),
                        mod_revision: rev(modr),
                    });
                }
            }
            Ok(())
        };
        let range = versions
            .range((start.as_str(), 0u64)..(end.as_str(), 0u64))
            .map_err(db_err)?;
        for entry in range {
            let (k, v) = entry.map_err(db_err)?;
            let (key, modr) = k.value();
            if modr > at {
                continue;
            }
            if current.as_ref().is_some_and(|(ck, _, _)| ck != key) {
                flush(current.take(), &mut kvs, &mut remaining)?;
            }
            current = Some((key.to_string(), modr, v.value().to_vec()));
        }
        flush(current.take(), &mut kvs, &mut remaining)?;
        Ok(RangeResponse {
            kvs,
            revision: rev(at),
            remaining,
            more: remaining > 0,
        })
    }

    /// The events under `prefix` with revisions in `(after, ..]`, at most `max` log entries read.
    /// Returns the events and the last revision read (so the caller can continue after it).
    pub fn log_after(
        &self,
        prefix: &str,
        after: u64,
        max: usize,
    ) -> Result<(Vec<Event>, u64), StorageError> {
        let log = self.txn.open_table(LOG).map_err(db_err)?;
        let mut events = Vec::new();
        let mut last = after;
        for entry in log.range(after + 1..).map_err(db_err)?.take(max) {
            let (r, v) = entry.map_err(db_err)?;
            let r = r.value();
            last = r;
            let (key, _superseded) = v.value();
            if key.starts_with(prefix) {
                events.push(self.event_at(key, r)?);
            }
        }
        Ok((events, last))
    }

    fn event_at(&self, key: &str, r: u64) -> Result<Event, StorageError> {
        let missing = || StorageError::Corrupt {
            key: key.to_string(),
            reason: format!("log entry {r} has no version"),
        };
        match self.version_at(key, r)?.ok_or_else(missing)? {
            Version::Put {
                create_revision,
                value,
            } => Ok(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.to_string(),
                    value,
                    create_revision: rev(create_revision),
                    mod_revision: rev(r),
                },
            }),
            Version::Tombstone => Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_string(),
                    value: Bytes::new(),
                    create_revision: 0,
                    mod_revision: rev(r),
                },
            }),
        }
    }
}

/// The `[start, end)` keys of a range request.
pub(super) fn range_bounds(req: &RangeRequest) -> (String, String) {
    let end = crate::prefix_end(&req.prefix);
    let start = match &req.start {
        Some(s) if s.as_str() > req.prefix.as_str() => s.clone(),
        _ => req.prefix.clone(),
    };
    (start, end)
}
