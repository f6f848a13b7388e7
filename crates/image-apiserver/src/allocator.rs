//! The server's allocator: mimalloc, returning what it frees to the system soon after.
//!
//! glibc's malloc spent about a tenth of the server's CPU (`perf` of `hack/bench api`), most of
//! it on the tens of kilobytes every update of a large stream allocates on one thread and frees
//! on another. With mimalloc, growing-stream updates cost 12–25% less server CPU, and PATCH and
//! apply of a 1,000-tag stream a fifth less.
//!
//! mimalloc's defaults would have made the server hold what a burst of requests freed: it
//! returns freed pages only once a delay (a second) has passed *and* it next allocates or frees
//! in bulk, which an idle server does not, and it advises the kernel to back its memory with
//! transparent huge pages. Loaded with 10,000 streams, the server then kept 9–11 KB per cached
//! stream (glibc: 2.6 KB). It is built without that advice (the crate's `no_thp`; a kernel set
//! to use huge pages "always" still does), keeps a freed page for [`PURGE_DELAY`], and a task
//! of the runtime ([`return_idle_memory`]) returns the pages whose delay has passed as often,
//! busy or idle. Returning pages at once kept memory as low but made every large response
//! fault its pages in afresh: a LIST of 1,000 streams read from etcd cost 21 ms of server CPU
//! against 12.5 ms.
//!
//! What the task returns is process-wide (mimalloc's arenas); a page that another worker
//! thread emptied but has not yet handed back waits until that thread next allocates, which a
//! busy server's workers do all the time. Collecting on each worker as it parks was tried and
//! left out: alternated in one session, it gave 1.54 and 1.66 KB per cached stream against
//! 2.25 and 1.67 without, runs of one build differing more than the builds did.
#![allow(unsafe_code)]

use std::time::Duration;

use libmimalloc_sys::{mi_collect, mi_option_get, mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h, the same in mimalloc 2 and 3; libmimalloc-sys does
/// not name it. The test below fails if it names something else.
const PURGE_DELAY_OPTION: mi_option_t = 15;

/// How long a freed page stays for reuse before it is returned to the system: long enough for
/// a burst of requests to reuse its pages, short enough that an idle server is back to its
/// size well within a second.
pub const PURGE_DELAY: Duration = Duration::from_millis(100);

/// Sets mimalloc's purge delay to [`PURGE_DELAY`], unless the operator set mimalloc's own
/// `MIMALLOC_PURGE_DELAY`. Call it while the process has one thread: mimalloc's options are
/// plain globals that every thread reads.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(PURGE_DELAY);
    }
}

fn set_purge_delay(delay: Duration) {
    let millis = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: mi_option_set writes an integer into mimalloc's option table and takes no
    // pointer; the write is not synchronised, so callers make it before other threads exist
    // (main, and a test process of one thread).
    unsafe { mi_option_set(PURGE_DELAY_OPTION, millis.into()) };
}

/// Returns the freed pages whose delay has passed to the system, once per purge delay, for as
/// long as the runtime runs: mimalloc only looks for them when it allocates, which an idle
/// server does not. A freed page so stays between one and about two delays. Nothing to do
/// when the operator's `MIMALLOC_PURGE_DELAY` is 0 (pages return at once) or negative (never).
pub async fn return_idle_memory() {
    let Some(delay) = purge_delay() else {
        return;
    };
    let mut ticks = tokio::time::interval(delay);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        return_freed_pages();
    }
}

/// mimalloc's purge delay in force: [`PURGE_DELAY`], or the operator's.
fn purge_delay() -> Option<Duration> {
    // SAFETY: mi_option_get reads an integer from mimalloc's option table and takes no
    // pointer; the options were settled before the runtime's threads began.
    let millis = unsafe { mi_option_get(PURGE_DELAY_OPTION) };
    u64::try_from(millis)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

fn return_freed_pages() {
    // SAFETY: mi_collect takes no pointer and may be called from any thread at any time; the
    // pages it returns are on mimalloc's free lists, referenced by no Rust value. Not forced:
    // forced, it would return every page freed so far, however recently, and the next burst
    // would fault them in again.
    unsafe { mi_collect(false) };
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Read;
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    const CHILD: &str = "ALLOCATOR_TEST_CHILD";

    /// Resident memory of this process, in bytes, read without allocating: an allocation can
    /// make mimalloc return freed pages itself, which would hide whether the task did.
    fn resident() -> u64 {
        let mut status = [0u8; 4096];
        let mut file = std::fs::File::open("/proc/self/status").expect("status");
        let mut len = 0;
        while len < status.len() {
            match file.read(&mut status[len..]).expect("read status") {
                0 => break,
                n => len += n,
            }
        }
        let text = std::str::from_utf8(&status[..len]).expect("status is text");
        let kib: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// Runs `freed_blocks_leave_an_idle_process` in a process of its own, so that no other
    /// test allocates beside it and the option is set while the process has one thread.
    #[test]
    fn memory_freed_in_bulk_leaves_an_idle_process() {
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([
                "--exact",
                "allocator::tests::freed_blocks_leave_an_idle_process",
            ])
            .args(["--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .env_remove("MIMALLOC_PURGE_DELAY")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The shape of an update's garbage: many blocks of tens of kilobytes, touched, then freed,
    /// after which the process allocates nothing. Under mimalloc's defaults they stay resident;
    /// with the delay set and the task running they leave. Runs only as the child of the test
    /// above.
    #[test]
    fn freed_blocks_leave_an_idle_process() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        // mimalloc 3's default purge delay is a second, and no other option of it defaults to
        // 1000: the constant names the option this module means to set.
        assert_eq!(purge_delay(), Some(Duration::from_secs(1)));
        configure();
        assert_eq!(purge_delay(), Some(PURGE_DELAY));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::spawn(return_idle_memory());
            let before = resident();
            let blocks: Vec<Vec<u8>> = (0..2048).map(|i| vec![i as u8 | 1; 64 * 1024]).collect();
            let touched: u64 = blocks.iter().map(|b| u64::from(b[b.len() - 1])).sum();
            assert!(touched > 0);
            let held = resident();
            assert!(
                held > before + 100 * 1024 * 1024,
                "128 MiB of blocks should be resident: {before} -> {held}"
            );
            drop(blocks);
            // Well past the delay, so a loaded machine does not fail it; mimalloc's own
            // default would wait for the next allocation however long that takes.
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut after = resident();
            while after >= before + 16 * 1024 * 1024 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                after = resident();
            }
            assert!(
                after < before + 16 * 1024 * 1024,
                "freed blocks stayed resident: {before} before, {held} held, {after} 3 s after freeing"
            );
        });
    }
}
