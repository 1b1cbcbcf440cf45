//! The allocator settings synthesis wants: freed buffers kept for reuse.
//!
//! Every decoder window allocates its activations afresh (candle tensors),
//! tens of megabytes per second of audio, and frees them a few milliseconds
//! later. glibc's malloc by default hands large freed blocks back to the
//! kernel (blocks it `mmap`s on their own, and the top of a heap past the
//! trim threshold, both adjusted at run time), so the next window faults the
//! same pages in again, each one zeroed by the kernel. With two synthesis
//! workers and utterances of varying length that happened tens of thousands
//! of times per second of compute (perf: 38,000 page faults per CPU-second in
//! `voxline-synth-*`), a tax of several percent on every chunk, and on a
//! virtual machine whose host reclaims freed guest pages, much more.
//!
//! [`keep_freed_buffers`] fixes both thresholds (which also stops glibc from
//! adjusting them), so blocks up to [`MMAP_THRESHOLD`] come from the heap and
//! freed memory stays there for the next window, up to [`TRIM_THRESHOLD`] at
//! the top of a heap. The cost is that the process keeps its peak heap: the
//! working set of the synthesis workers, tens of megabytes.

/// Blocks at least this large still get their own mapping (glibc's maximum
/// for a dynamic threshold on 64-bit).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of a heap beyond this goes back to the kernel.
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// Sets the allocator to keep freed buffers (see the module docs), unless the
/// environment already tunes malloc (`GLIBC_TUNABLES` with a `glibc.malloc`
/// setting, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`): an operator's
/// own setting wins. Call it once, early, before threads start. Returns
/// whether it changed anything. A no-op where the C library is not glibc.
pub fn keep_freed_buffers() -> bool {
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
        || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some();
    if tuned {
        return false;
    }
    set_thresholds()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // the threads that allocate start (and glibc serialises it anyway).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Minor page faults of the calling thread so far.
    fn faults() -> i64 {
        // SAFETY: getrusage writes into the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        usage.ru_minflt
    }

    #[test]
    fn a_windows_worth_of_freed_buffers_is_reused_without_faulting_pages_in() {
        // What a decoder window does: many activation buffers of a megabyte
        // allocated, written and freed together. glibc's defaults give the
        // freed top of the heap back to the kernel (it exceeds twice the
        // largest block), so every round faults its 8,192 pages in again.
        assert!(keep_freed_buffers() || std::env::var_os("GLIBC_TUNABLES").is_some(), "mallopt failed");
        let round = || {
            let blocks: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8 + 1; 1 << 20]).collect();
            std::hint::black_box(&blocks);
        };
        round();
        round();
        let before = faults();
        for _ in 0..4 {
            round();
        }
        let per_round = (faults() - before) / 4;
        assert!(per_round < 256, "{per_round} page faults per round of 32 MiB freed and allocated again (8,192 when glibc trims)");
    }
}
