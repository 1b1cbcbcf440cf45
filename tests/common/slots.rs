//! Scheduling: timing-sensitive tests run alone.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

/// Held by a test while it runs beside others (most tests).
pub type SharedSlot = RwLockReadGuard<'static, ()>;
/// Held by a test that measures timing (RTP pacing, latency): no other test
/// runs a server meanwhile, so another server's synthesis does not compete for
/// the CPU. std's RwLock on Linux prefers a waiting writer, so these are not
/// starved.
pub type ExclusiveSlot = RwLockWriteGuard<'static, ()>;

pub fn shared_slot() -> SharedSlot {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive_slot() -> ExclusiveSlot {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}
