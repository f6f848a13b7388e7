//! The server's allocator: mimalloc, returning what it frees to the system at once.
//!
//! glibc's malloc spent about a tenth of the server's CPU (`perf` of `hack/bench api`), most of
//! it on the tens of kilobytes every update of a large stream allocates on one thread and frees
//! on another. With mimalloc, growing-stream updates cost 12–25% less server CPU, and PATCH and
//! apply of a 1,000-tag stream a fifth less.
//!
//! mimalloc's defaults would have made the server hold what a burst of requests freed: it
//! returns freed pages only once a delay has passed and it next frees or allocates, which an
//! idle server does not, and it advises the kernel to back its memory with transparent huge
//! pages. Loaded with 10,000 streams, the server then kept 9–11 KB per cached stream (glibc:
//! 2.6 KB). Built without that advice (the crate's `no_thp`; a kernel set to use huge pages
//! "always" still does) and returning freed pages at once, it keeps 1.5 KB, and an empty
//! server is no larger than with glibc; the updates keep their gain. The price is paid by
//! responses of megabytes, whose pages are faulted in afresh each time.
#![allow(unsafe_code)]

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h, the same in mimalloc 2 and 3; libmimalloc-sys does
/// not name it. The test below fails if it names something else.
const PURGE_DELAY: mi_option_t = 15;

/// Makes mimalloc return freed pages to the system when they are freed, unless the operator set
/// mimalloc's own `MIMALLOC_PURGE_DELAY`. Call it while the process has one thread: mimalloc's
/// options are plain globals that every thread reads.
pub fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(0);
    }
}

fn set_purge_delay(millis: i32) {
    // SAFETY: mi_option_set writes an integer into mimalloc's option table and takes no
    // pointer; the write is not synchronised, so callers make it before other threads exist
    // (main, and a test process of one thread).
    unsafe { mi_option_set(PURGE_DELAY, millis.into()) };
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::process::Command;

    use super::*;

    const CHILD: &str = "ALLOCATOR_TEST_CHILD";

    /// Resident memory of this process, in bytes.
    fn resident() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// Runs `freed_blocks_leave_a_fresh_process` in a process of its own, so that no other
    /// test allocates beside it and the option is set while the process has one thread.
    #[test]
    fn memory_freed_in_bulk_leaves_the_process_at_once() {
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([
                "--exact",
                "allocator::tests::freed_blocks_leave_a_fresh_process",
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

    /// The shape of an update's garbage: many blocks of tens of kilobytes, touched, then freed.
    /// Under mimalloc's default delay they stay resident. Runs only as the child of the test
    /// above.
    #[test]
    fn freed_blocks_leave_a_fresh_process() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        return_freed_memory_at_once();
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
        let after = resident();
        assert!(
            after < before + 16 * 1024 * 1024,
            "freed blocks stayed resident: {before} before, {held} held, {after} after freeing"
        );
    }
}
