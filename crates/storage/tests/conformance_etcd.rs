//! The storage conformance suite against a real etcd, one process per test so that compaction
//! in one test cannot touch another: Debian 12's etcd 3.4.23 (progress untrusted) and Debian
//! trixie's 3.5 (progress trusted), the two paths of the etcd backend.

use std::sync::Arc;

use storage::etcd::{EtcdConfig, EtcdStore};
use storage::testing::EtcdProcess;
use storage::Store;

async fn make_with(start: fn() -> EtcdProcess) -> (Arc<dyn Store>, EtcdProcess) {
    let etcd = tokio::task::spawn_blocking(start)
        .await
        .expect("etcd start task");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io");
    let store = EtcdStore::connect(config).await.expect("connect to etcd");
    (Arc::new(store), etcd)
}

mod v34 {
    use super::*;

    storage::conformance_tests!(make_with(EtcdProcess::start));
}

mod v35 {
    use super::*;

    storage::conformance_tests!(make_with(EtcdProcess::start_v35));
}
