//! What the benchmark binaries share: a closed-loop load driver and its report line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `p` quantile of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

/// What one load run measured.
pub struct Load {
    pub ops: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub errors: u64,
}

impl Load {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn line(&self, label: &str) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        format!(
            "{label:<38} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
            self.ops as f64 / self.elapsed.as_secs_f64(),
            percentile(&l, 0.50),
            percentile(&l, 0.99),
            self.errors
        )
    }
}

/// Runs `clients` loops of `op` for `seconds`, collecting latencies.
pub async fn load<F, Fut>(clients: usize, seconds: u64, op: F) -> Load
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let op = op.clone();
        let stop = stop.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if !op(i, n).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    Load {
        ops: latencies.len() as u64,
        elapsed: start.elapsed(),
        latencies,
        errors: errors.load(Ordering::Relaxed),
    }
}
