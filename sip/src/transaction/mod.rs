//! SIP transactions (RFC 3261 17) over UDP and TCP (no retransmissions and no waits for
//! them over TCP: [`unreliable_only`], [`retransmit_at`]). Each transaction is a state
//! machine with explicit states and named timers; it never reads a clock, it is told `now` and
//! reports its next deadline.
//!
//! Implemented: the INVITE server transaction (17.2.1, with the Accepted state of RFC 6026), the
//! non-INVITE server transaction (17.2.2), the INVITE client transaction (17.1.1 with RFC 6026,
//! our outgoing calls) and the non-INVITE client transaction (17.1.2, our BYE and CANCEL). The
//! client transactions share a shape: `new` takes the request the owner sends, `on_response`
//! and `on_timeout` report an outcome to the owner.

pub(crate) mod client_invite;
pub(crate) mod client_non_invite;
pub(crate) mod server_invite;
pub(crate) mod server_non_invite;

use std::time::{Duration, Instant};

use crate::message::{Method, Request};
use crate::transmit::Transport;

/// T4: maximum duration a message remains in the network (RFC 3261 17.1.2.2, table 4).
pub(crate) const T4: Duration = Duration::from_secs(5);

/// The base timer values an endpoint runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timers {
    /// T1: RTT estimate (500 ms).
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// How long a 2xx is retransmitted waiting for its ACK (64*T1 by default).
    pub ack_timeout: Duration,
}

impl Timers {
    /// 64*T1: Timers B, F, H, J and L, and the 2xx give-up time of 13.3.1.4.
    pub(crate) fn transaction_timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmit interval: doubled, capped at T2.
    pub(crate) fn backoff(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).min(self.t2)
    }
}

/// RFC 3261's T1 and T2, for the transactions' unit tests.
#[cfg(test)]
pub(crate) const RFC_TIMERS: Timers = Timers {
    t1: Duration::from_millis(500),
    t2: Duration::from_secs(4),
    ack_timeout: Duration::from_secs(32),
};

/// A wait for retransmissions (Timers D, I, J, K): zero over a reliable transport, where
/// nothing is retransmitted (RFC 3261 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2).
pub(crate) fn unreliable_only(transport: Transport, wait: Duration) -> Duration {
    if transport.is_reliable() {
        Duration::ZERO
    } else {
        wait
    }
}

/// A retransmission timer (A, E, G) started at `now + interval`: none over a reliable
/// transport.
pub(crate) fn retransmit_at(transport: Transport, now: Instant, interval: Duration) -> Option<Instant> {
    (!transport.is_reliable()).then(|| now + interval)
}

/// The earlier of two optional deadlines.
pub(crate) fn soonest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// True when an optional deadline has passed.
pub(crate) fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// Identifies a server transaction (RFC 3261 17.2.3). ACK maps to its INVITE.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TransactionKey {
    /// Top Via branch with the magic cookie, sent-by and method.
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// Pre-3261 peers: Call-ID, From tag, CSeq number, sent-by and method.
    Rfc2543 {
        call_id: String,
        from_tag: String,
        cseq: u32,
        sent_by: String,
        method: String,
    },
}

impl TransactionKey {
    /// The key of `request`, or of the transaction with method `method` (CANCEL looks up its
    /// INVITE this way, RFC 3261 9.2).
    pub(crate) fn for_request(request: &Request, method: Option<&Method>) -> TransactionKey {
        let method = match method.unwrap_or(&request.method) {
            Method::Ack => "INVITE".to_string(),
            other => other.as_str().to_string(),
        };
        let (branch, sent_by) = match request.top_via() {
            Some(via) => (
                via.is_rfc3261_branch()
                    .then(|| via.branch().unwrap_or_default().to_string()),
                via.sent_by_key(),
            ),
            None => (None, String::new()),
        };
        match branch {
            Some(branch) => TransactionKey::Rfc3261 {
                branch,
                sent_by,
                method,
            },
            None => TransactionKey::Rfc2543 {
                call_id: request.call_id.clone(),
                from_tag: request.from.tag().unwrap_or_default().to_string(),
                cseq: request.cseq.seq,
                sent_by,
                method,
            },
        }
    }
}
