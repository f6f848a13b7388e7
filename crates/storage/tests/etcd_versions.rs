//! The etcd backend decides from etcd's version whether its watch progress can be trusted, and
//! the flag forces either way; the conformance suite also runs on etcd 3.5.

use storage::etcd::{EtcdConfig, EtcdStore, ProgressTrust};
use storage::testing::EtcdProcess;
use storage::Store;

async fn store_on(etcd: &EtcdProcess, trust: ProgressTrust) -> EtcdStore {
    let mut config = EtcdConfig::new(vec![etcd.endpoint.clone()], "openshift.io");
    config.watch_progress = trust;
    EtcdStore::connect(config).await.expect("connect")
}

#[tokio::test]
async fn debian_12_etcd_is_not_trusted_unless_forced() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    assert!(!store_on(&etcd, ProgressTrust::Detect)
        .await
        .reliable_progress());
    assert!(store_on(&etcd, ProgressTrust::Trusted)
        .await
        .reliable_progress());
}

#[tokio::test]
async fn etcd_35_is_trusted_unless_forced_off() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start_v35)
        .await
        .expect("etcd 3.5");
    assert!(store_on(&etcd, ProgressTrust::Detect)
        .await
        .reliable_progress());
    assert!(!store_on(&etcd, ProgressTrust::Untrusted)
        .await
        .reliable_progress());
}

#[tokio::test]
async fn an_unanswering_endpoint_is_not_trusted() {
    let etcd = tokio::task::spawn_blocking(EtcdProcess::start_v35)
        .await
        .expect("etcd 3.5");
    let dead = format!("http://127.0.0.1:{}", storage::testing::free_port());
    let mut config = EtcdConfig::new(vec![etcd.endpoint.clone(), dead], "openshift.io");
    config.dial_timeout = std::time::Duration::from_millis(500);
    let store = EtcdStore::new(config).await.expect("store");
    assert!(!store.detect_progress_support().await);
}

/// After an upgrade from 3.4.23 to 3.5 under a running watch, the reconnected watch decides
/// again and progress becomes trusted.
#[tokio::test]
async fn a_reconnected_watch_decides_again() {
    let mut etcd = tokio::task::spawn_blocking(EtcdProcess::start)
        .await
        .expect("etcd");
    let store = store_on(&etcd, ProgressTrust::Detect).await;
    assert!(!store.reliable_progress());
    let mut watch = store.watch("/things/", 0).await.expect("watch");
    let v35 = storage::testing::etcd35_binary();
    let etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_with(v35);
        etcd
    })
    .await
    .expect("upgrade");
    // Written after the upgrade: it reaches the watch only through a reconnected stream.
    let written = store
        .create("/things/a", bytes::Bytes::from_static(b"{}"))
        .await
        .expect("create");
    let events = storage::conformance::collect_events(&mut watch, 1).await;
    assert_eq!(events[0].revision(), written);
    assert!(store.reliable_progress(), "decided again on reconnect");
    drop(etcd);
}
