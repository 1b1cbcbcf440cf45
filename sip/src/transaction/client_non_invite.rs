//! Non-INVITE client transaction (RFC 3261 17.1.2). Over UDP: Timer E retransmits the request
//! starting at T1 and doubling up to T2 (at T2 once a provisional arrived), Timer F gives up
//! after 64*T1, Timer K absorbs response retransmissions for T4. Over TCP only Timer F runs
//! (and a zero Timer K).
//!
//! ```text
//!   Trying --1xx--> Proceeding
//!     |   \            |
//!     |    final      final
//!     |      \         |
//!  Timer F    `--> Completed --Timer K--> Terminated
//!     `--------------------------------------^
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{due, retransmit_at, soonest, unreliable_only, Timers, T4};
use crate::event::CallHandle;
use crate::transmit::Transmit;

/// States of the non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// How a client transaction ended, for its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A final response with this status arrived.
    Final(u16),
    /// Timer F fired without a final response.
    Timeout,
}

/// A non-INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientNonInviteTransaction {
    state: State,
    /// The call that sent the request.
    pub call: CallHandle,
    /// The method, for response matching (17.1.3).
    pub method: &'static str,
    request: Transmit,
    /// Timer E: retransmit the request.
    timer_e: Option<Instant>,
    e_interval: Duration,
    /// Timer F: transaction timeout.
    timer_f: Option<Instant>,
    /// Timer K: wait for response retransmissions.
    timer_k: Option<Instant>,
}

impl ClientNonInviteTransaction {
    /// Starts the transaction; the caller sends `request` now.
    pub(crate) fn new(
        now: Instant,
        call: CallHandle,
        method: &'static str,
        request: Transmit,
        timers: &Timers,
    ) -> Self {
        ClientNonInviteTransaction {
            state: State::Trying,
            call,
            method,
            timer_e: retransmit_at(request.transport, now, timers.t1),
            e_interval: timers.t1,
            timer_f: Some(now + timers.transaction_timeout()),
            timer_k: None,
            request,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, now: Instant, status: u16) -> Option<Outcome> {
        match (self.state, status) {
            (State::Trying, 100..=199) => {
                self.state = State::Proceeding;
                None
            }
            (State::Trying | State::Proceeding, 200..=699) => {
                self.state = State::Completed;
                self.timer_e = None;
                self.timer_f = None;
                self.timer_k = Some(now + unreliable_only(self.request.transport, T4));
                Some(Outcome::Final(status))
            }
            _ => None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.timer_e, self.timer_f, self.timer_k]
            .into_iter()
            .fold(None, soonest)
    }

    /// Runs the timers that are due; reports a timeout to the owner.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        timers: &Timers,
        out: &mut VecDeque<Transmit>,
    ) -> Option<Outcome> {
        if due(self.timer_f, now) {
            self.state = State::Terminated;
            self.timer_e = None;
            self.timer_f = None;
            return Some(Outcome::Timeout);
        }
        if due(self.timer_e, now) {
            out.push_back(self.request.clone());
            self.e_interval = match self.state {
                State::Proceeding => timers.t2,
                _ => timers.backoff(self.e_interval),
            };
            self.timer_e = Some(now + self.e_interval);
        }
        if due(self.timer_k, now) {
            self.timer_k = None;
            self.state = State::Terminated;
        }
        None
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMERS: Timers = super::super::RFC_TIMERS;

    fn request() -> Transmit {
        Transmit {
            destination: "192.0.2.1:5060".parse().unwrap(),
            transport: crate::Transport::Udp,
            payload: b"BYE".to_vec(),
        }
    }

    #[test]
    fn timer_e_backs_off_and_timer_f_gives_up() {
        let start = Instant::now();
        let mut tx =
            ClientNonInviteTransaction::new(start, CallHandle::new(1), "BYE", request(), &TIMERS);
        let mut out = VecDeque::new();
        let mut fired = Vec::new();
        while let Some(deadline) = tx.next_deadline() {
            if let Some(outcome) = tx.on_timeout(deadline, &TIMERS, &mut out) {
                assert_eq!(outcome, Outcome::Timeout);
                break;
            }
            fired.push((deadline - start).as_millis());
        }
        assert_eq!(fired[..6], [500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(out.len(), fired.len());
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_keeps_it_alive_and_final_completes() {
        let start = Instant::now();
        let mut tx =
            ClientNonInviteTransaction::new(start, CallHandle::new(1), "BYE", request(), &TIMERS);
        assert_eq!(tx.on_response(start, 100), None);
        assert_eq!(tx.state(), State::Proceeding);
        let mut out = VecDeque::new();
        tx.on_timeout(start + TIMERS.t1, &TIMERS, &mut out);
        assert_eq!(tx.next_deadline(), Some(start + TIMERS.t1 + TIMERS.t2));
        assert_eq!(tx.on_response(start, 200), Some(Outcome::Final(200)));
        assert_eq!(tx.on_response(start, 200), None);
        tx.on_timeout(start + T4, &TIMERS, &mut out);
        assert!(tx.is_terminated());
    }
}
