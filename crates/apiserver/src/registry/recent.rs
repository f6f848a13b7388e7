//! The objects a registry wrote last, kept typed for the next update of each. An update
//! starts from the one kept here, assumed current, without reading the store; its
//! compare-and-swap proves the assumption (kube's `GuaranteedUpdate` starts from the watch
//! cache's decoded object for the same reason). A read that finds the stored revision kept
//! here also starts from this object instead of decoding the stored bytes. Decoding a stream
//! of a hundred tags costs more than the rest of an update's bookkeeping, and on etcd the
//! read is a round trip carrying the whole object.
//!
//! Bounded by count and by the size of the objects' bytes, so hot objects stay and the memory
//! stays small; an object is taken out when used, so concurrent writers of one object read.
//! Room is made by dropping the object kept longest ago: an object written again is kept
//! again, so the ones still written stay, and a server's many other objects, each written
//! once, pass through. (Dropping "any" object, the first a `HashMap` yields, dropped the same
//! few slots again and again: on a server with more than [`MAX_OBJECTS`] written objects,
//! hot objects lost their slot to objects never written again, and every update of them
//! decoded.)

use std::collections::HashMap;

use bytes::Bytes;
use storage::Revision;

/// At most this many objects are kept.
const MAX_OBJECTS: usize = 64;
/// An object whose stored bytes and JSON come to more than this is not kept (a stream of a
/// thousand tags is about half a megabyte of each).
const MAX_OBJECT_BYTES: usize = 2 << 20;
/// The bytes of all kept objects stay under this.
const MAX_TOTAL_BYTES: usize = 16 << 20;

pub(super) struct Recent<O> {
    objects: HashMap<String, Slot<O>>,
    /// The size of the kept objects' bytes.
    bytes: usize,
    /// How many objects were kept so far: the age of each slot.
    kept: u64,
}

struct Slot<O> {
    kept: Kept<O>,
    /// When it was kept ([`Recent::kept`] then).
    at: u64,
}

/// One written object.
pub(super) struct Kept<O> {
    pub revision: Revision,
    /// The bytes stored (shared with the write that stored them).
    pub stored: Bytes,
    /// The object's wire JSON (shared with the reply that carried it).
    pub json: Bytes,
    pub object: O,
}

impl<O> Kept<O> {
    fn size(&self) -> usize {
        self.stored.len() + self.json.len()
    }

    /// What the store holds under `key` if this is still current (debug builds check a kept
    /// object against its stored bytes decoded).
    #[cfg(debug_assertions)]
    pub fn as_stored(&self, key: &str) -> storage::KeyValue {
        storage::KeyValue {
            key: key.to_string(),
            value: self.stored.clone(),
            create_revision: 0,
            mod_revision: self.revision,
        }
    }
}

impl<O> Default for Recent<O> {
    fn default() -> Self {
        Recent {
            objects: HashMap::new(),
            bytes: 0,
            kept: 0,
        }
    }
}

impl<O> Recent<O> {
    /// The object kept under `key` and its JSON, if it is the one stored at `revision`; it is
    /// taken out either way (one at another revision is out of date).
    pub(super) fn take(&mut self, key: &str, revision: Revision) -> Option<(O, Bytes)> {
        let kept = self.take_latest(key, None)?;
        (kept.revision == revision).then_some((kept.object, kept.json))
    }

    /// The object kept under `key`, taken out, unless `wanted` is given and is not its
    /// revision: a write held to another revision is most likely stale and answered 409 after
    /// a read, so it leaves the object to the next writer instead of using it up.
    pub(super) fn take_latest(&mut self, key: &str, wanted: Option<Revision>) -> Option<Kept<O>> {
        let revision = self.objects.get(key)?.kept.revision;
        if wanted.is_some_and(|w| w != revision) {
            return None;
        }
        self.remove(key)
    }

    /// Keeps `kept`, stored under `key`, making room by dropping the objects kept longest ago
    /// when the bounds require. An object kept at a later revision stays: writes of one object
    /// may finish their replies out of order.
    pub(super) fn keep(&mut self, key: &str, kept: Kept<O>) {
        if self
            .objects
            .get(key)
            .is_some_and(|slot| slot.kept.revision > kept.revision)
        {
            return;
        }
        self.remove(key);
        let bytes = kept.size();
        if bytes > MAX_OBJECT_BYTES {
            return;
        }
        while self.objects.len() >= MAX_OBJECTS || self.bytes + bytes > MAX_TOTAL_BYTES {
            if self.drop_oldest().is_none() {
                break;
            }
        }
        self.bytes += bytes;
        self.kept += 1;
        let at = self.kept;
        self.objects.insert(key.to_string(), Slot { kept, at });
    }

    /// Drops what is kept under `key` (the object is gone).
    pub(super) fn forget(&mut self, key: &str) {
        self.remove(key);
    }

    fn remove(&mut self, key: &str) -> Option<Kept<O>> {
        let slot = self.objects.remove(key)?;
        self.bytes -= slot.kept.size();
        Some(slot.kept)
    }

    /// Drops the object kept longest ago. A scan: there are at most [`MAX_OBJECTS`], and room
    /// is made only when a new object comes in.
    fn drop_oldest(&mut self) -> Option<Kept<O>> {
        let oldest = self
            .objects
            .iter()
            .min_by_key(|(_, slot)| slot.at)
            .map(|(key, _)| key.clone())?;
        self.remove(&oldest)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Bytes {
        Bytes::from(vec![b' '; len])
    }

    /// `object` at `revision`, its stored bytes and JSON `len` bytes each.
    fn kept<O>(revision: Revision, len: usize, object: O) -> Kept<O> {
        Kept {
            revision,
            stored: bytes(len),
            json: bytes(len),
            object,
        }
    }

    #[test]
    fn an_object_is_taken_once_and_only_at_its_revision() {
        let mut recent = Recent::default();
        recent.keep("/s/a", kept(5, 10, "a@5"));
        assert_eq!(recent.take("/s/a", 5).map(|(o, _)| o), Some("a@5"));
        assert!(recent.take("/s/a", 5).is_none(), "taken out when used");
        recent.keep("/s/a", kept(6, 10, "a@6"));
        assert_eq!(
            recent.take("/s/a", 7),
            None,
            "another revision is out of date"
        );
        assert!(recent.take("/s/a", 6).is_none(), "and is dropped");
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn the_latest_is_taken_whatever_its_revision() {
        let mut recent = Recent::default();
        recent.keep("/s/a", kept(5, 10, "a@5"));
        assert!(
            recent.take_latest("/s/a", Some(4)).is_none(),
            "not for a write held to another revision"
        );
        let latest = recent.take_latest("/s/a", Some(5)).expect("kept");
        assert_eq!((latest.revision, latest.object), (5, "a@5"));
        assert!(
            recent.take_latest("/s/a", None).is_none(),
            "taken out when used"
        );
        recent.keep("/s/a", kept(6, 10, "a@6"));
        let latest = recent.take_latest("/s/a", None).expect("kept");
        assert_eq!((latest.revision, latest.object), (6, "a@6"));
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn a_newer_write_replaces_the_kept_object_and_an_older_one_does_not() {
        let mut recent = Recent::default();
        recent.keep("/s/a", kept(5, 10, "a@5"));
        recent.keep("/s/a", kept(8, 30, "a@8"));
        assert_eq!(recent.len(), 1);
        assert_eq!(recent.bytes, 60);
        recent.keep("/s/a", kept(7, 20, "a@7"));
        assert_eq!(recent.bytes, 60, "a reply that finished late keeps nothing");
        assert_eq!(
            recent.take("/s/a", 8).map(|(o, j)| (o, j.len())),
            Some(("a@8", 30))
        );
    }

    #[test]
    fn a_forgotten_object_is_gone() {
        let mut recent = Recent::default();
        recent.keep("/s/a", kept(5, 10, "a@5"));
        recent.keep("/s/b", kept(6, 10, "b@6"));
        recent.forget("/s/a");
        assert!(recent.take_latest("/s/a", None).is_none());
        assert_eq!((recent.len(), recent.bytes), (1, 20));
    }

    #[test]
    fn the_bounds_hold() {
        let mut recent = Recent::default();
        for i in 0..MAX_OBJECTS * 2 {
            recent.keep(&format!("/s/{i}"), kept(1, 10, i));
        }
        assert_eq!(recent.len(), MAX_OBJECTS);
        assert_eq!(recent.bytes, MAX_OBJECTS * 20);

        let mut recent = Recent::default();
        let half = MAX_OBJECT_BYTES / 2;
        for i in 0..20 {
            recent.keep(&format!("/s/{i}"), kept(1, half, i));
            assert!(recent.bytes <= MAX_TOTAL_BYTES);
        }
        assert_eq!(recent.len(), MAX_TOTAL_BYTES / MAX_OBJECT_BYTES);

        recent.keep("/s/huge", kept(1, half + 1, 99));
        assert!(recent.take("/s/huge", 1).is_none(), "too large to keep");
    }

    /// A server's hot objects are written again and again among many written once: the hot
    /// ones keep their slots, whichever way the keys hash.
    #[test]
    fn objects_written_again_outlast_objects_written_once() {
        let mut recent = Recent::default();
        for i in 0..MAX_OBJECTS * 4 {
            recent.keep(&format!("/s/once-{i}"), kept(1, 10, 0));
        }
        let hot: Vec<String> = (0..MAX_OBJECTS / 2)
            .map(|i| format!("/s/hot-{i}"))
            .collect();
        for key in &hot {
            recent.keep(key, kept(2, 10, 0));
        }
        for revision in 3..50 {
            for key in &hot {
                assert!(
                    recent.take_latest(key, None).is_some(),
                    "{key} lost its slot before revision {revision}"
                );
                recent.keep(key, kept(revision, 10, 0));
                // Objects written once keep coming between the hot ones' writes.
                recent.keep(&format!("/s/once-{revision}-{key}"), kept(1, 10, 0));
            }
        }
        assert_eq!(recent.len(), MAX_OBJECTS);
    }

    #[test]
    fn room_is_made_by_dropping_the_object_kept_longest_ago() {
        let mut recent = Recent::default();
        for i in 0..MAX_OBJECTS {
            recent.keep(&format!("/s/{i}"), kept(1, 10, i));
        }
        recent.keep("/s/0", kept(2, 10, 0));
        recent.keep("/s/new", kept(1, 10, 99));
        assert!(
            recent.take_latest("/s/1", None).is_none(),
            "kept longest ago"
        );
        assert!(
            recent.take_latest("/s/0", None).is_some(),
            "kept again lately"
        );
        assert!(recent.take_latest("/s/2", None).is_some());
    }
}
