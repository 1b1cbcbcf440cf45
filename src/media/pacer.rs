//! One pacing clock for every call.
//!
//! The pacer thread sleeps to absolute deadlines `start + k * 20 ms` (not
//! "20 ms after the last wake-up", which drifts) and on each tick has every
//! call ([`CallMedia`]) send one packet to its leg. A tick that comes late is
//! still sent at once (and counted); when the thread was stalled for longer
//! than a few packets, the missed ticks are skipped: the RTP timestamps still
//! advance by the elapsed time, so the stream stays on the wall clock instead
//! of bursting. The thread never waits on async I/O and allocates nothing
//! per packet.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::call_media::CallMedia;
use super::rtp_out::PACKET_LEN;
use super::FRAME;

/// Stalled longer than this: skip the missed ticks instead of bursting them.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pacing clock.
#[derive(Debug)]
pub struct Pacer {
    calls: Mutex<Vec<Arc<CallMedia>>>,
    ticks: AtomicU64,
}

impl Pacer {
    /// Starts the pacing thread; it runs for the life of the process.
    pub fn start() -> io::Result<Arc<Self>> {
        let pacer = Arc::new(Self { calls: Mutex::new(Vec::new()), ticks: AtomicU64::new(0) });
        let weak = Arc::downgrade(&pacer);
        std::thread::Builder::new().name("voxline-pacer".into()).spawn(move || run(weak))?;
        Ok(pacer)
    }

    /// Starts sending for `call` from the next tick on.
    pub fn add(&self, call: Arc<CallMedia>) {
        lock(&self.calls).push(call);
    }

    /// Calls being paced.
    pub fn len(&self) -> usize {
        lock(&self.calls).iter().filter(|c| !c.is_closed()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

fn run(pacer: std::sync::Weak<Pacer>) {
    raise_priority();
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut buf = [0u8; PACKET_LEN];
    loop {
        k += 1;
        let deadline = start + FRAME * k as u32;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        let Some(pacer) = pacer.upgrade() else { return };
        let calls: Vec<Arc<CallMedia>> = {
            let mut calls = lock(&pacer.calls);
            calls.retain(|c| !c.is_closed());
            calls.clone()
        };
        let behind = Instant::now().saturating_duration_since(deadline);
        if behind > MAX_CATCH_UP {
            // Stalled (suspended, starved of CPU): the ticks whose deadlines
            // have passed are skipped, their timestamps advanced, and sending
            // resumes with the tick that is due now.
            let missed = (behind.as_micros() / FRAME.as_micros()) as u64;
            tracing::warn!(missed_ticks = missed, "pacer stalled; skipping ahead");
            for call in &calls {
                call.skip(missed);
            }
            k += missed - 1;
            continue;
        }
        for call in &calls {
            call.tick(k, deadline, &mut buf);
        }
        pacer.ticks.store(k, Ordering::Relaxed);
    }
}

/// Media timing must not lose the CPU to batch work (synthesis, other
/// processes): the pacer asks for real-time round-robin scheduling at a low
/// real-time priority, and failing that (no CAP_SYS_NICE) for a higher nice
/// level. It sleeps between ticks and its work per tick is bounded, so it
/// cannot starve the machine.
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

