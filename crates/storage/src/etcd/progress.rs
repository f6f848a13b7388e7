//! Whether etcd's watch progress notifications can be trusted, decided from its version as
//! kube-apiserver's storage feature checker does: a progress revision from etcd before the fix
//! of etcd#15220 (and the related watch-progress fixes of 3.4.31 / 3.5.13) may run ahead of
//! events not yet sent, so a cache that trusted it could answer a consistent read stale.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use etcd_client::{Client, ConnectOptions};

/// `--etcd-watch-progress`: detect from the servers' versions, or force either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressTrust {
    /// Trust progress when every endpoint runs a version with the fixes.
    #[default]
    Detect,
    Trusted,
    Untrusted,
}

impl std::str::FromStr for ProgressTrust {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressTrust::Detect),
            "trusted" => Ok(ProgressTrust::Trusted),
            "untrusted" => Ok(ProgressTrust::Untrusted),
            other => Err(format!(
                "unknown value {other:?}: expected auto, trusted or untrusted"
            )),
        }
    }
}

/// The first etcd releases of each line whose progress notifications kube trusts
/// (`ConsistentListFromCache`: v3.4.31+, v3.5.13+, and every 3.6).
const FIXED_IN: [(u64, u64, u64); 2] = [(3, 4, 31), (3, 5, 13)];

/// Whether an etcd server of `version` (as its Status reports it, e.g. `3.5.16`) sends
/// progress only after every event up to it. Unparsable versions are not trusted.
pub fn version_has_reliable_progress(version: &str) -> bool {
    let Some((major, minor, patch)) = parse_version(version) else {
        return false;
    };
    match FIXED_IN
        .iter()
        .find(|(ma, mi, _)| (*ma, *mi) == (major, minor))
    {
        Some((_, _, fixed)) => patch >= *fixed,
        // Lines after the last listed one (3.6 and later) have the fixes; earlier ones never will.
        None => (major, minor) > (3, 5),
    }
}

fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// The current decision, shared by the store and its watches; re-taken when a watch
/// reconnects, since the etcd behind an endpoint may have been upgraded or replaced.
#[derive(Clone, Debug)]
pub(crate) struct ProgressSupport {
    mode: ProgressTrust,
    endpoints: Vec<String>,
    connect_timeout: std::time::Duration,
    reliable: Arc<AtomicBool>,
}

impl ProgressSupport {
    pub(crate) fn new(
        mode: ProgressTrust,
        endpoints: Vec<String>,
        connect_timeout: std::time::Duration,
    ) -> Self {
        ProgressSupport {
            reliable: Arc::new(AtomicBool::new(mode == ProgressTrust::Trusted)),
            mode,
            endpoints,
            connect_timeout,
        }
    }

    pub(crate) fn reliable(&self) -> bool {
        self.reliable.load(Ordering::Acquire)
    }

    /// Asks every endpoint for its version (etcd's Status API). All must have the fixes: a
    /// client may be balanced to any of them. An endpoint that does not answer counts as
    /// unfixed, which only costs reads from etcd instead of the cache.
    pub(crate) async fn detect(&self) -> bool {
        let reliable = match self.mode {
            ProgressTrust::Trusted => true,
            ProgressTrust::Untrusted => false,
            ProgressTrust::Detect => {
                let mut versions = Vec::with_capacity(self.endpoints.len());
                for endpoint in &self.endpoints {
                    versions.push(self.version_of(endpoint).await);
                }
                let reliable = versions
                    .iter()
                    .all(|v| v.as_deref().is_some_and(version_has_reliable_progress));
                let previous = self.reliable.load(Ordering::Acquire);
                if previous != reliable || versions.iter().any(Option::is_none) {
                    tracing::info!(?versions, reliable, "etcd watch progress support");
                }
                reliable
            }
        };
        self.reliable.store(reliable, Ordering::Release);
        reliable
    }

    async fn version_of(&self, endpoint: &str) -> Option<String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.connect_timeout);
        let mut client = Client::connect([endpoint], Some(options)).await.ok()?;
        let status = client.status().await.ok()?;
        Some(status.version().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_trusts_progress_from_the_fixed_releases() {
        for (version, trusted) in [
            ("3.4.23", false),
            ("3.4.30", false),
            ("3.4.31", true),
            ("3.4.35", true),
            ("3.5.8", false),
            ("3.5.12", false),
            ("3.5.13", true),
            ("3.5.16", true),
            ("3.6.0", true),
            ("3.6.5", true),
            ("3.7.1", true),
            ("4.0.0", true),
            ("3.3.27", false),
            ("2.3.8", false),
            ("v3.5.16", true),
            ("3.6.0-rc.1", true),
            ("3.5", false),
            ("", false),
            ("banana", false),
        ] {
            assert_eq!(version_has_reliable_progress(version), trusted, "{version}");
        }
    }

    #[test]
    fn the_flag_values() {
        assert_eq!("auto".parse(), Ok(ProgressTrust::Detect));
        assert_eq!("trusted".parse(), Ok(ProgressTrust::Trusted));
        assert_eq!("untrusted".parse(), Ok(ProgressTrust::Untrusted));
        assert!("yes".parse::<ProgressTrust>().is_err());
    }
}
