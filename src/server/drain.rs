//! Graceful shutdown. On SIGTERM or SIGINT (what systemd, `docker stop` and
//! Kubernetes send) the server drains: `/readyz` answers 503, new calls are
//! refused (SIP `503` with `Retry-After`, WebRTC offers `503 busy`), and each
//! live call ends with a BYE once its current speech has played, within
//! `--drain-timeout`; whatever is left then is ended at once. A second
//! signal ends every call at once. Either way every caller gets a BYE
//! before the process exits 0, and every events socket its last events and
//! a close frame (1001, going away).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::state::Server;

/// How often the drain looks at the live calls.
const POLL: Duration = Duration::from_millis(100);
/// How long the BYEs sent at the end are given to complete.
const BYE_GRACE: Duration = Duration::from_secs(3);
/// How long the events sockets are given to send their last events and close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// SIGTERM and SIGINT.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Drains `server` (the SIP task and HTTP server keep running meanwhile).
pub async fn drain(server: &Arc<Server>, signals: &mut Signals, timeout: Duration) {
    server.draining.store(true, Ordering::Relaxed);
    let live = server.calls.len();
    tracing::info!(live, timeout_s = timeout.as_secs(), "draining: new calls are refused; live ones end when their speech has played");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ended = HashSet::new();
    loop {
        for call in server.calls.all() {
            let idle = call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).is_idle();
            if idle && ended.insert(call.id.clone()) {
                tracing::info!(call = %call.id, "drain: ending the call");
                server.hangup(&call, "shutdown");
            }
        }
        if server.calls.is_empty() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(left = server.calls.len(), "drain timeout: ending the remaining calls");
                break;
            }
            which = signals.next() => {
                tracing::warn!(signal = which, left = server.calls.len(), "second signal: ending every call now");
                break;
            }
        }
    }
    for call in server.calls.all() {
        if ended.insert(call.id.clone()) {
            server.hangup(&call, "shutdown");
        }
    }
    let grace = tokio::time::Instant::now() + BYE_GRACE;
    while !server.calls.is_empty() && tokio::time::Instant::now() < grace {
        tokio::time::sleep(POLL).await;
    }
    // Events sockets get the last call.ended events, then a close frame (1001).
    server.lifecycle.close();
    let grace = tokio::time::Instant::now() + CLOSE_GRACE;
    while server.lifecycle.closing() > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(left = server.calls.len(), "drained; exiting");
}
