//! The pacing clock: one thread per shard, every call on one shard for life.
//!
//! Each shard thread sleeps to absolute deadlines `epoch + k * 20 ms` (not
//! "20 ms after the last wake-up", which drifts); all shards share the epoch,
//! so they tick at the same instants, each on its own core. On each tick a
//! shard has every call it owns ([`CallMedia`]) send one packet to its leg. A
//! tick that comes late is still sent at once (and counted); when the thread
//! was stalled for longer than a few packets, the missed ticks are skipped:
//! the RTP timestamps still advance by the elapsed time, so the stream stays
//! on the wall clock instead of bursting. What a shard decides on waking
//! (tick, skip, which calls) is [`super::shard`], tested with fake time; this
//! file only adds the threads, the sleeping and the assignment of calls.
//!
//! A new call goes to the shard carrying the fewest calls. The threads never
//! wait on async I/O and allocate nothing per packet. Each is pinned to its
//! own CPU of those the process may use (`VOXLINE_PACER_PIN=0`: not pinned).
//!
//! Why each packet is its own system call (`send` on the call's socket once
//! it is connected to the caller, `sendto` until then: [`super::leg`]; no
//! `sendmmsg`, no UDP GSO): both
//! batch datagrams of *one* socket, and every call sends from its own socket
//! (the port its SDP gave the peer, which symmetric-RTP peers and NATs check),
//! to its own destination. A shard's packets in one tick share neither.
//! io_uring can submit a tick's sends across sockets in one call; it was
//! tried and measured at 1.00-1.10x the CPU per packet of this loop
//! (BENCHMARKS.md, "io_uring was tried and did not pay"): the system call is
//! about 4 % of a send, the kernel's UDP path the rest, and the ring's own
//! submission and completion work costs more than the 4 %.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::call_media::CallMedia;
use super::shard::{on_wake, Inbox, Roster, ShardClock, TickOut, Woke};
use crate::metrics::metrics;

/// What one shard thread shares with the [`Pacer`].
#[derive(Debug, Default)]
struct ShardShared {
    inbox: Inbox<Arc<CallMedia>>,
    ticks: AtomicU64,
}

/// The pacing clock.
#[derive(Debug)]
pub struct Pacer {
    shards: Vec<Arc<ShardShared>>,
}

/// One shard per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Pacer {
    /// Starts one pacing thread per core; they run until the pacer is dropped.
    pub fn start() -> io::Result<Arc<Self>> {
        Self::with_threads(default_threads())
    }

    /// Starts `threads` pacing threads (at least one; 0 means one per core).
    pub fn with_threads(threads: usize) -> io::Result<Arc<Self>> {
        let threads = if threads == 0 { default_threads() } else { threads };
        let epoch = Instant::now();
        let shards: Vec<Arc<ShardShared>> = (0..threads).map(|_| Arc::new(ShardShared::default())).collect();
        for (i, shard) in shards.iter().enumerate() {
            let weak = Arc::downgrade(shard);
            let name = if threads == 1 { "voxline-pacer".to_owned() } else { format!("voxline-pacer-{i}") };
            let pin = std::env::var("VOXLINE_PACER_PIN").map_or(true, |v| v != "0");
            std::thread::Builder::new().name(name).spawn(move || {
                if pin {
                    pin_to_cpu(i);
                }
                run(weak, epoch)
            })?;
        }
        Ok(Arc::new(Self { shards }))
    }

    /// Starts sending for `call` from its shard's next tick on; the call
    /// stays on the shard that carries the fewest calls now, for life.
    pub fn add(&self, call: Arc<CallMedia>) {
        if let Some(shard) = self.shards.iter().min_by_key(|s| s.inbox.load()) {
            shard.inbox.push(call);
        }
    }

    /// Calls being paced (a closed call counts until its shard's next tick).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.inbox.load()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls per shard.
    pub fn loads(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.inbox.load()).collect()
    }

    /// Pacing threads.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    /// Ticks so far (the slowest shard's).
    pub fn ticks(&self) -> u64 {
        self.shards.iter().map(|s| s.ticks.load(Ordering::Relaxed)).min().unwrap_or(0)
    }
}

/// Pins the calling thread to the `i`-th CPU it may run on (modulo their
/// number), so two real-time pacing threads never queue behind each other on
/// one core. Measured at 3,000 calls (`scripts/sip-bench.sh`, two runs each
/// way): late sends 0.19 -> 0.09 % and 0.63 -> 0.32 %, CPU 1.06 -> 1.06x and
/// 1.17 -> 1.09x sipp's. `VOXLINE_PACER_PIN=0` leaves the threads unpinned.
/// Returns the CPU, if the pinning took.
fn pin_to_cpu(i: usize) -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &allowed)).collect();
        let cpu = *cpus.get(i % cpus.len().max(1))?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
            tracing::debug!(cpu, "pacer: could not pin to the CPU");
            return None;
        }
        tracing::debug!(cpu, "pacer: pinned");
        Some(cpu)
    }
}

fn run(shard: Weak<ShardShared>, epoch: Instant) {
    raise_priority();
    let mut clock = ShardClock::new(epoch);
    let mut roster = Roster::default();
    let mut out = TickOut::default();
    loop {
        let woke = {
            let Some(shared) = shard.upgrade() else { return };
            let woke = on_wake(&mut clock, &mut roster, &shared.inbox, Instant::now(), &mut out);
            if let Woke::Ticked { tick, .. } = woke {
                shared.ticks.store(tick, Ordering::Relaxed);
            }
            woke
        };
        match woke {
            Woke::Slept(at) => {
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
            }
            Woke::Ticked { .. } => {
                let (sent, late, underruns) = out.take_tallies();
                let m = metrics();
                if sent > 0 {
                    m.rtp_packets_sent.inc_by(sent);
                }
                if late > 0 {
                    m.late_sends.inc_by(late);
                }
                if underruns > 0 {
                    m.underruns.inc_by(underruns);
                }
            }
            Woke::Skipped { missed, .. } => {
                tracing::warn!(missed_ticks = missed, calls = roster.len(), "pacer stalled; skipping ahead");
            }
        }
    }
}

/// Media timing must not lose the CPU to batch work (synthesis, other
/// processes): each pacing thread asks for real-time round-robin scheduling
/// at a low real-time priority, and failing that (no CAP_SYS_NICE) for a
/// higher nice level. It sleeps between ticks and its work per tick is
/// bounded, so it cannot starve the machine.
fn raise_priority() {
    // SAFETY: plain scheduler calls on the current thread with valid arguments.
    unsafe {
        let param = libc::sched_param { sched_priority: 10 };
        if libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) == 0 {
            tracing::debug!("pacer: SCHED_RR priority 10");
            return;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, -10) == 0 {
            tracing::debug!("pacer: nice -10");
        } else {
            tracing::debug!("pacer: normal priority (no permission to raise it)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{MediaConfig, MediaLeg, RemoteMedia};
    use std::time::Duration;

    fn call(id: &str) -> Arc<CallMedia> {
        let (leg, _queue) = MediaLeg::track();
        let remote = RemoteMedia::awaiting_answer("127.0.0.1".parse().unwrap());
        CallMedia::new(id.into(), leg, remote, MediaConfig::default(), tokio::sync::mpsc::unbounded_channel().0)
    }

    #[test]
    fn a_call_joins_the_least_loaded_shard_and_a_closed_one_frees_its_place() {
        let pacer = Pacer::with_threads(2).unwrap();
        assert_eq!(pacer.threads(), 2);
        let calls: Vec<_> = (0..3).map(|i| call(&i.to_string())).collect();
        for c in &calls {
            pacer.add(c.clone());
        }
        assert_eq!(pacer.loads(), [2, 1], "0 and 2 on shard 0, 1 on shard 1");
        calls[0].close();
        calls[2].close();
        let t = pacer.ticks();
        while pacer.ticks() < t + 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pacer.loads(), [0, 1], "closed calls leave their shard at its next tick");
        pacer.add(call("3"));
        assert_eq!(pacer.loads(), [1, 1]);
        assert_eq!(pacer.len(), 2);
    }

    #[test]
    fn a_pinned_thread_runs_on_one_allowed_cpu_and_shards_take_different_ones() {
        let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pinned: Vec<Option<usize>> = (0..2)
            .map(|i| {
                std::thread::spawn(move || {
                    let cpu = pin_to_cpu(i);
                    // SAFETY: plain data out of the kernel.
                    let count = unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
                        libc::CPU_COUNT(&set)
                    };
                    assert_eq!(count, 1, "pinned to one CPU");
                    cpu
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(pinned.iter().all(Option::is_some), "{pinned:?}");
        if allowed > 1 {
            assert_ne!(pinned[0], pinned[1], "two shards, two CPUs");
        }
    }
}
