//! The storage conformance suite against a real etcd (Debian's etcd-server), one process per
//! test so that compaction in one test cannot touch another.

use std::sync::Arc;

use storage::etcd::{EtcdConfig, EtcdStore};
use storage::testing::EtcdProcess;
use storage::Store;

async fn make() -> (Arc<dyn Store>, EtcdProcess) {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd start task");
    let config = EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io");
    let store = EtcdStore::connect(config).await.expect("connect to etcd");
    (Arc::new(store), etcd)
}

storage::conformance_tests!(make());
