//! Transparent huge pages for the synthesizer's memory, so a call's first
//! chunk after an idle minute costs what it costs on a busy machine.
//!
//! A decoder window walks the voice's weights and a few hundred megabytes of
//! kept activation buffers ([`super::heap`]): tens of thousands of 4 KiB
//! pages. On a virtual machine each TLB miss is a two-level (guest and host)
//! page walk, and while the synthesizer sits idle its page-table entries
//! leave the caches (other tenants use them), so the first chunk after
//! idling pays for those walks again. Measured on a 2-core KVM guest
//! (`examples/piper_idle_first_chunk`, joe-medium, one thread): a first chunk
//! of 62 ms after 0 s idle, 117-136 ms after 1 s, 231-244 ms after 3 s.
//! Spinning the CPU while idle does not help; touching the memory does; in
//! 2 MiB pages the same walk covers 512 times as much, and the first chunk
//! after 3 s idle is 61 ms, after 70 s 73 ms.
//!
//! Kernels ship THP in `madvise` mode (Debian's default), so the process asks
//! for them: [`advise`] marks the anonymous memory that synthesis uses
//! (the main heap, glibc's per-thread arena heaps, large single
//! allocations) `MADV_HUGEPAGE`, so it faults in as huge pages from then on,
//! and collapses what is already resident (`MADV_COLLAPSE`, Linux 6.1+).
//! Thread stacks and small mappings are left alone: a huge page there would
//! turn a few kilobytes per thread into megabytes. The first pass costs a
//! few hundred milliseconds (copying the resident pages), a later one a few
//! milliseconds; call it after the voices are warmed up and now and then
//! after (new arenas appear as threads first allocate).

use std::ops::Range;

const HUGE: usize = 2 << 20;
/// glibc's per-thread arena heaps are reserved at this size and alignment
/// (`HEAP_MAX_SIZE` on 64-bit), readable and writable from their start up to
/// what is in use, the rest reserved (`---p`) for growth.
const ARENA: usize = 64 << 20;
/// Anonymous mappings smaller than this are not advised unless they belong to
/// an arena: besides thread stacks they are small enough not to matter.
const LARGE: usize = 4 << 20;

/// One line of `/proc/self/maps`, what the plan needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    range: Range<usize>,
    writable: bool,
    /// No access at all (`---p`): a guard page, or an arena's reserve.
    reserved: bool,
    private: bool,
    /// The path or `[name]` column, empty for anonymous memory.
    name: String,
}

/// A range to mark for huge pages, and whether to collapse what is resident.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Advice {
    range: Range<usize>,
    collapse: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advised {
    /// Bytes marked `MADV_HUGEPAGE`.
    pub advised: usize,
    /// Bytes in ranges collapsed into huge pages (already-huge ones count).
    pub collapsed: usize,
    /// The process's anonymous memory in huge pages after the pass, KiB.
    pub huge_kib: u64,
}

fn parse(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.as_bytes();
            let name = fields.nth(3).unwrap_or("").to_owned();
            (perms.len() == 4).then_some(())?;
            Some(Mapping {
                range: usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?,
                writable: perms[0] == b'r' && perms[1] == b'w',
                reserved: &perms[..3] == b"---",
                private: perms[3] == b'p',
                name,
            })
        })
        .collect()
}

/// The 2 MiB-aligned part of `range`, if any.
fn aligned(range: &Range<usize>) -> Option<Range<usize>> {
    let start = range.start.next_multiple_of(HUGE);
    let end = range.end / HUGE * HUGE;
    (start < end).then_some(start..end)
}

/// Which ranges to advise, from the process's mappings (see the module docs).
fn plan(mappings: &[Mapping]) -> Vec<Advice> {
    let anonymous = |m: &Mapping| m.private && (m.name.is_empty() || m.name == "[heap]");
    let arenas: Vec<usize> =
        mappings.iter().filter(|m| anonymous(m) && m.writable && m.name.is_empty() && m.range.start % ARENA == 0).map(|m| m.range.start).collect();
    let in_arena = |m: &Mapping| arenas.iter().any(|&base| m.range.start >= base && m.range.end <= base + ARENA);
    let mut advice = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        if !anonymous(m) {
            continue;
        }
        let wanted = if m.name == "[heap]" || in_arena(m) {
            m.writable || m.reserved
        } else {
            // A writable mapping right above a guard page is a thread stack.
            let guarded = i > 0 && {
                let below = &mappings[i - 1];
                below.reserved && anonymous(below) && below.range.end == m.range.start
            };
            m.writable && !guarded && m.range.len() >= LARGE
        };
        if let (true, Some(range)) = (wanted, aligned(&m.range)) {
            advice.push(Advice { range, collapse: m.writable });
        }
    }
    advice
}

/// The process's anonymous memory in huge pages now, KiB (0 where unknown).
pub fn huge_kib() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("AnonHugePages:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Marks the synthesizer's anonymous memory for huge pages and collapses
/// what is resident (see the module docs). Failures of single ranges are
/// skipped (a mapping that changed since it was listed, a kernel without
/// `MADV_COLLAPSE`); an error only where `/proc/self/maps` cannot be read.
/// Blocks for up to a few hundred milliseconds: call it off the runtime.
#[cfg(target_os = "linux")]
pub fn advise() -> std::io::Result<Advised> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut done = Advised::default();
    for Advice { range, collapse } in plan(&parse(&maps)) {
        let (ptr, len) = (range.start as *mut libc::c_void, range.len());
        // SAFETY: madvise with these advices changes how the kernel backs
        // the range, never its contents; the range was mapped when listed,
        // and a range unmapped since then fails with ENOMEM, which is skipped.
        if unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) } != 0 {
            continue;
        }
        done.advised += len;
        #[cfg(target_env = "gnu")]
        if collapse && unsafe { libc::madvise(ptr, len, libc::MADV_COLLAPSE) } == 0 {
            done.collapsed += len;
        }
        #[cfg(not(target_env = "gnu"))]
        let _ = collapse;
    }
    done.huge_kib = huge_kib();
    Ok(done)
}

#[cfg(not(target_os = "linux"))]
pub fn advise() -> std::io::Result<Advised> {
    Ok(Advised::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn line(start: usize, end: usize, perms: &str, name: &str) -> String {
        format!("{start:012x}-{end:012x} {perms} 00000000 00:00 0                          {name}\n")
    }

    #[test]
    fn a_maps_listing_is_read_with_permissions_and_names() {
        let maps = "55d0c4a00000-55d0c4c00000 rw-p 00000000 00:00 0                          [heap]\n\
                    7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n\
                    7f1000000000-7f1000001000 ---p 00000000 00:00 0\n\
                    7f2000000000-7f2000100000 r-xp 00001000 fd:01 1234                       /usr/bin/voxline\n\
                    garbage line\n";
        let mappings = parse(maps);
        assert_eq!(mappings.len(), 4, "{mappings:?}");
        assert_eq!(
            mappings[0],
            Mapping { range: 0x55d0c4a00000..0x55d0c4c00000, writable: true, reserved: false, private: true, name: "[heap]".into() }
        );
        assert!(mappings[1].name.is_empty() && mappings[1].writable);
        assert!(mappings[2].reserved && !mappings[2].writable);
        assert_eq!(mappings[3].name, "/usr/bin/voxline");
    }

    #[test]
    fn the_heap_arenas_and_large_allocations_are_advised_stacks_and_files_are_not() {
        let arena = 0x7f00_0000_0000usize; // 64 MiB aligned
        let big = 0x7f10_0000_1000usize;
        let stack = 0x7f20_0012_3000usize;
        let maps = [
            line(0x5500_0000_0000, 0x5500_0000_0000 + 10 * MIB + 4096, "rw-p", "[heap]"),
            // an arena: 5 MiB in use, the rest of its 64 MiB reserved
            line(arena, arena + 5 * MIB, "rw-p", ""),
            line(arena + 5 * MIB, arena + 64 * MIB, "---p", ""),
            // one large allocation of its own (weights)
            line(big, big + 40 * MIB, "rw-p", ""),
            // a thread stack of 8 MiB above its guard page
            line(stack - 4096, stack, "---p", ""),
            line(stack, stack + 8 * MIB, "rw-p", ""),
            // small anonymous memory, and a file
            line(0x7f30_0000_0000, 0x7f30_0000_0000 + MIB, "rw-p", ""),
            line(0x7f40_0000_0000, 0x7f40_0000_0000 + 64 * MIB, "r--p", "/models/en_US-joe-medium.onnx"),
            line(0x7ffd_0000_0000, 0x7ffd_0000_0000 + 8 * MIB, "rw-p", "[stack]"),
        ]
        .concat();
        let advice = plan(&parse(&maps));
        assert_eq!(
            advice,
            vec![
                Advice { range: 0x5500_0000_0000..0x5500_0000_0000 + 10 * MIB, collapse: true },
                Advice { range: arena..arena + 4 * MIB, collapse: true },
                // the reserve is advised so the arena grows in huge pages
                Advice { range: arena + 6 * MIB..arena + 64 * MIB, collapse: false },
                // the 2 MiB-aligned part of the large allocation
                Advice { range: big + 2 * MIB - 4096..big + 40 * MIB - 4096, collapse: true },
            ]
        );
    }

    #[test]
    fn ranges_shorter_than_a_huge_page_once_aligned_are_skipped() {
        assert_eq!(aligned(&(MIB..3 * MIB)), None);
        assert_eq!(aligned(&(MIB..5 * MIB)), Some(2 * MIB..4 * MIB));
        assert_eq!(aligned(&(2 * MIB..4 * MIB)), Some(2 * MIB..4 * MIB));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn advising_a_live_process_marks_its_large_allocations_and_keeps_their_contents() {
        let mut block = vec![7u8; 16 * MIB];
        block[12345] = 42;
        let done = advise().expect("/proc/self/maps");
        assert!(done.advised >= 12 * MIB, "{done:?}");
        assert_eq!(block[12345], 42);
        assert!(block.iter().enumerate().all(|(i, &b)| b == if i == 12345 { 42 } else { 7 }));
    }
}
