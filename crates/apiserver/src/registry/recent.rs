//! The objects a registry wrote last, kept typed for the next update of each: a
//! read-modify-write that finds the stored revision it reads here starts from this object
//! instead of decoding the stored bytes (kube's `GuaranteedUpdate` starts from the watch
//! cache's decoded object for the same reason; our cache keeps compressed JSON). Decoding a
//! stream of a hundred tags costs more than the rest of an update's bookkeeping.
//!
//! Bounded by count and by the size of the objects' JSON, so hot objects stay and the memory
//! stays small; an object is taken out when used, so concurrent writers of one object decode.

use std::collections::HashMap;

use bytes::Bytes;
use storage::Revision;

/// At most this many objects are kept.
const MAX_OBJECTS: usize = 64;
/// An object whose JSON is larger than this is not kept.
const MAX_OBJECT_BYTES: usize = 1 << 20;
/// The JSON of all kept objects stays under this.
const MAX_TOTAL_BYTES: usize = 8 << 20;

pub(super) struct Recent<O> {
    objects: HashMap<String, Kept<O>>,
    /// The JSON size of the kept objects.
    bytes: usize,
}

struct Kept<O> {
    revision: Revision,
    /// The object's wire JSON (shared with the reply that carried it).
    json: Bytes,
    object: O,
}

impl<O> Default for Recent<O> {
    fn default() -> Self {
        Recent {
            objects: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<O> Recent<O> {
    /// The object kept under `key` and its JSON, if it is the one stored at `revision`; it is
    /// taken out either way (one at another revision is out of date).
    pub(super) fn take(&mut self, key: &str, revision: Revision) -> Option<(O, Bytes)> {
        let kept = self.objects.remove(key)?;
        self.bytes -= kept.json.len();
        (kept.revision == revision).then_some((kept.object, kept.json))
    }

    /// Keeps `object`, stored under `key` at `revision`, with its wire JSON, making room by
    /// dropping others (in no particular order) when the bounds require.
    pub(super) fn keep(&mut self, key: &str, revision: Revision, json: Bytes, object: O) {
        if let Some(old) = self.objects.remove(key) {
            self.bytes -= old.json.len();
        }
        let bytes = json.len();
        if bytes > MAX_OBJECT_BYTES {
            return;
        }
        while self.objects.len() >= MAX_OBJECTS || self.bytes + bytes > MAX_TOTAL_BYTES {
            let Some(victim) = self.objects.keys().next().cloned() else {
                break;
            };
            if let Some(gone) = self.objects.remove(&victim) {
                self.bytes -= gone.json.len();
            }
        }
        self.bytes += bytes;
        self.objects.insert(
            key.to_string(),
            Kept {
                revision,
                json,
                object,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(len: usize) -> Bytes {
        Bytes::from(vec![b' '; len])
    }

    #[test]
    fn an_object_is_taken_once_and_only_at_its_revision() {
        let mut recent = Recent::default();
        recent.keep("/s/a", 5, json(10), "a@5");
        assert_eq!(recent.take("/s/a", 5).map(|(o, _)| o), Some("a@5"));
        assert!(recent.take("/s/a", 5).is_none(), "taken out when used");
        recent.keep("/s/a", 6, json(10), "a@6");
        assert_eq!(
            recent.take("/s/a", 7),
            None,
            "another revision is out of date"
        );
        assert!(recent.take("/s/a", 6).is_none(), "and is dropped");
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn a_newer_write_replaces_the_kept_object() {
        let mut recent = Recent::default();
        recent.keep("/s/a", 5, json(10), "a@5");
        recent.keep("/s/a", 8, json(30), "a@8");
        assert_eq!(recent.len(), 1);
        assert_eq!(recent.bytes, 30);
        assert_eq!(
            recent.take("/s/a", 8).map(|(o, j)| (o, j.len())),
            Some(("a@8", 30))
        );
    }

    #[test]
    fn the_bounds_hold() {
        let mut recent = Recent::default();
        for i in 0..MAX_OBJECTS * 2 {
            recent.keep(&format!("/s/{i}"), 1, json(10), i);
        }
        assert_eq!(recent.len(), MAX_OBJECTS);
        assert_eq!(recent.bytes, MAX_OBJECTS * 10);

        let mut recent = Recent::default();
        for i in 0..20 {
            recent.keep(&format!("/s/{i}"), 1, json(MAX_OBJECT_BYTES), i);
            assert!(recent.bytes <= MAX_TOTAL_BYTES);
        }
        assert_eq!(recent.len(), MAX_TOTAL_BYTES / MAX_OBJECT_BYTES);

        recent.keep("/s/huge", 1, json(MAX_OBJECT_BYTES + 1), 99);
        assert!(recent.take("/s/huge", 1).is_none(), "too large to keep");
    }
}
