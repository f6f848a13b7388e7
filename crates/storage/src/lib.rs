//! Storage: one small trait shaped like etcd's KV API, two backends behind it, and the watch
//! cache on top.
//!
//! The trait ([`Store`]) is deliberately the subset of etcd v3 that kube-apiserver's `etcd3`
//! storage uses (spec `k8s-apiserver-semantics.md` §9): point reads, prefix ranges at a revision
//! with paging, create-if-absent, compare-and-swap on the key's mod revision, watch from a
//! revision, the current revision, and compaction. Revisions are global to
//! the store and strictly increase with every write; an object's resourceVersion is its mod
//! revision.
//!
//! - [`embedded`]: the default backend, a redb file with group-committed, fsynced writes.
//! - [`etcd`]: etcd v3 through `etcd-client`, with kube's key layout.
//! - [`cache`]: the per-resource watch cache (kube's cacher), generic over the value codec.
//!
//! This crate knows nothing about Kubernetes objects beyond "a value is JSON with a
//! `metadata` object" in the cache's default codec.

use std::fmt;

use bytes::Bytes;

pub mod cache;
pub mod compactor;
#[cfg(feature = "testing")]
pub mod conformance;
pub mod embedded;
pub mod etcd;
#[cfg(feature = "testing")]
pub mod testing;
mod watch;

pub use watch::{ProgressRequester, WatchMessage, WatchStream};

/// A store revision. Revision 0 means "no revision" (an absent key, an empty store).
pub type Revision = i64;

/// One stored key with its value and the revisions etcd keeps for it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// The revision of the write that created the key (since it was last absent).
    pub create_revision: Revision,
    /// The revision of the last write to the key: the object's resourceVersion.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key, as seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written; `kv.create_revision == kv.mod_revision` tells a create.
    Put,
    /// The key was deleted; `kv.mod_revision` is the deletion revision and `kv.value` is empty.
    Delete,
}

/// One change to one key.
///
/// An event carries no previous value, unlike kube's etcd3 watcher, which asks etcd for one
/// (`prev_kv`) to filter its uncached watches. Etcd reads that value from its history for every
/// event and sends it along with the new one, doubling the bytes of every update's event; the
/// watch cache, the only reader of these events, keeps each key's last state itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.kv.create_revision == self.kv.mod_revision
    }
}

/// The answer to a point read: the key (if present) and the store revision the read saw.
#[derive(Clone, Debug)]
pub struct GetResponse {
    pub kv: Option<KeyValue>,
    pub revision: Revision,
}

/// A prefix range read, the shape kube-apiserver's lists use.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    /// Every key that starts with this prefix is in range.
    pub prefix: String,
    /// Start at this key (inclusive) instead of the prefix; used by continue tokens.
    pub start: Option<String>,
    /// Read at this revision instead of the current one.
    pub revision: Option<Revision>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

#[derive(Clone, Debug)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at: all pages of one list use it.
    pub revision: Revision,
    /// Keys in range after the ones returned (0 when `more` is false).
    pub remaining: u64,
    pub more: bool,
}

/// Errors every backend reports, typed so the API layer can map them to a Status once.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key not found: {key}")]
    NotFound { key: String },
    #[error("key already exists: {key}")]
    AlreadyExists { key: String },
    /// A compare-and-swap lost: `current` is what is stored now (absent if the key is gone).
    #[error("revision conflict on {key}: expected mod revision {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the compacted revision.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record for {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The storage API every backend provides.
///
/// All writes are durable when they return `Ok`. Each write gets its own revision, strictly
/// greater than every revision before it.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<GetResponse>;

    /// Reads the keys under a prefix in key order.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Writes `value` under `key` only if the key is absent; returns the new revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces `key`'s value only if its mod revision is still `expected`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision>;

    /// Deletes `key`, only if its mod revision is `expected` when one is given. Returns the
    /// deletion revision and the deleted value.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Streams every change under `prefix` with a revision greater than `after`, in revision
    /// order. Fails with [`StorageError::Compacted`] if events after
    /// `after` are no longer kept.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The store's current revision (the revision of its last write).
    async fn current_revision(&self) -> Result<Revision>;

    /// Forgets history before `revision`: ranges below it and watches from before it fail
    /// with [`StorageError::Compacted`] afterwards.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Whether [`WatchMessage::Progress`] revisions can be trusted: every change up to them has
    /// been delivered. Etcd before 3.4.25 / 3.5.8 may send progress ahead of events
    /// (etcd#15220), so readers must not rely on it there.
    fn reliable_progress(&self) -> bool {
        true
    }

    /// Whether [`Store::current_revision`] is answered from this process's memory (no round
    /// trip): readers then ask it each, rather than gather to share a fetch.
    fn local_revision(&self) -> bool {
        false
    }
}

/// The exclusive end of the range of keys that start with `prefix` (etcd's `GetPrefixRangeEnd`).
///
/// ```
/// assert_eq!(storage::prefix_end("/registry/imagestreams/"), "/registry/imagestreams0");
/// ```
pub fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            // Keys are ASCII paths, so incrementing the last byte stays valid UTF-8.
            return String::from_utf8_lossy(&end).into_owned();
        }
    }
    // An all-0xff prefix has no end: etcd uses "\0" to mean "to the end of the keyspace".
    "\0".to_string()
}

/// Checks a key before it reaches a backend: non-empty, no NUL byte (the embedded backend uses
/// NUL to separate a key from its revision).
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason: "empty key",
        });
    }
    if key.as_bytes().contains(&0) {
        return Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason: "key contains a NUL byte",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        let cases = [
            ("/a/", "/a0"),
            ("a", "b"),
            ("/registry/images/", "/registry/images0"),
        ];
        for (prefix, want) in cases {
            assert_eq!(prefix_end(prefix), want, "prefix {prefix:?}");
        }
    }

    #[test]
    fn validate_key_rejects_empty_and_nul() {
        assert!(validate_key("/a/b").is_ok());
        assert!(matches!(
            validate_key(""),
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(matches!(
            validate_key("a\0b"),
            Err(StorageError::InvalidKey { .. })
        ));
    }
}
