//! The storage conformance suite against the embedded (redb) backend.

use std::sync::Arc;

use storage::embedded::{EmbeddedStore, Options};
use storage::Store;

async fn make() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), Options::default()).expect("open store");
    (Arc::new(store), dir)
}

storage::conformance_tests!(make());
