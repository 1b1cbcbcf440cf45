//! INVITE server transaction (RFC 3261 17.2.1, amended by RFC 6026 7.1).
//!
//! ```text
//!              |INVITE, send 100
//!              V
//!         Proceeding --1xx--> (resend last on INVITE retransmission)
//!          |      |
//!     300-699    2xx
//!          |      V
//!          |   Accepted --Timer L--> Terminated
//!          V
//!      Completed --Timer G: resend final--, --Timer H--> Terminated
//!          | ACK
//!          V
//!      Confirmed --Timer I--> Terminated
//! ```
//! The 2xx itself is retransmitted by the user agent core (13.3.1.4), not here. Over TCP
//! there is no Timer G and Timer I is zero; Timer H still applies.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{due, retransmit_at, soonest, unreliable_only, Timers, T4};
use crate::event::CallHandle;
use crate::transmit::Transmit;

/// States of the INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

impl State {
    /// The allowed transitions.
    fn may_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Proceeding, Completed)
                | (Proceeding, Accepted)
                | (Completed, Confirmed)
                | (Completed, Terminated)
                | (Confirmed, Terminated)
                | (Accepted, Terminated)
        )
    }
}

/// An INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerInviteTransaction {
    state: State,
    /// The call this INVITE belongs to (initial INVITE or re-INVITE).
    pub call: CallHandle,
    last_response: Option<Transmit>,
    /// Timer G: retransmit the final non-2xx response.
    timer_g: Option<Instant>,
    g_interval: Duration,
    /// Timer H: give up waiting for the ACK of a non-2xx.
    timer_h: Option<Instant>,
    /// Timer I: absorb ACK retransmissions.
    timer_i: Option<Instant>,
    /// Timer L: absorb INVITE retransmissions after a 2xx (RFC 6026).
    timer_l: Option<Instant>,
}

impl ServerInviteTransaction {
    pub(crate) fn new(call: CallHandle) -> Self {
        ServerInviteTransaction {
            state: State::Proceeding,
            call,
            last_response: None,
            timer_g: None,
            g_interval: Duration::ZERO,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    fn become_(&mut self, next: State) -> bool {
        if self.state.may_become(next) {
            tracing::trace!(from = ?self.state, to = ?next, "INVITE server transaction");
            self.state = next;
            true
        } else {
            tracing::warn!(from = ?self.state, to = ?next, "refused INVITE server transaction transition");
            false
        }
    }

    /// Sends a provisional response (Proceeding only). Returns what to transmit.
    pub(crate) fn respond_provisional(&mut self, response: Transmit) -> Option<Transmit> {
        if self.state != State::Proceeding {
            return None;
        }
        self.last_response = Some(response.clone());
        Some(response)
    }

    /// Sends a 300-699 final response: Completed, Timers G and H start (17.2.1).
    pub(crate) fn respond_failure(
        &mut self,
        now: Instant,
        response: Transmit,
        timers: &Timers,
    ) -> Option<Transmit> {
        if !self.become_(State::Completed) {
            return None;
        }
        self.g_interval = timers.t1;
        self.timer_g = retransmit_at(response.transport, now, timers.t1);
        self.timer_h = Some(now + timers.transaction_timeout());
        self.last_response = Some(response.clone());
        Some(response)
    }

    /// Sends a 2xx: Accepted, Timer L starts (RFC 6026).
    pub(crate) fn respond_success(
        &mut self,
        now: Instant,
        response: Transmit,
        timers: &Timers,
    ) -> Option<Transmit> {
        if !self.become_(State::Accepted) {
            return None;
        }
        self.timer_l = Some(now + timers.transaction_timeout());
        self.last_response = Some(response.clone());
        Some(response)
    }

    /// A retransmitted INVITE: the latest response goes out again (Proceeding, Completed);
    /// in Accepted (a 2xx was sent) and Confirmed it is absorbed (RFC 6026 7.1: the 2xx is
    /// retransmitted by the user agent core on its own timer until the ACK, not in answer to
    /// INVITE retransmissions, which would send a peer two 200s back to back).
    pub(crate) fn on_invite_retransmission(&self) -> Option<Transmit> {
        match self.state {
            State::Proceeding | State::Completed => self.last_response.clone(),
            State::Accepted | State::Confirmed | State::Terminated => None,
        }
    }

    /// An ACK matching this transaction. True when absorbed here (ACK of a non-2xx); false in
    /// Proceeding/Accepted, where the ACK is the core's business (the 2xx ACK of RFC 2543 peers
    /// matches the INVITE transaction).
    pub(crate) fn on_ack(&mut self, now: Instant) -> bool {
        match self.state {
            State::Completed => {
                self.become_(State::Confirmed);
                self.timer_g = None;
                self.timer_h = None;
                let transport = self.last_response.as_ref().map(|r| r.transport).unwrap_or_default();
                self.timer_i = Some(now + unreliable_only(transport, T4));
                true
            }
            State::Confirmed | State::Terminated => true,
            State::Proceeding | State::Accepted => false,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.timer_g, self.timer_h, self.timer_i, self.timer_l]
            .into_iter()
            .fold(None, soonest)
    }

    /// Runs the timers that are due. Returns true when Timer H fired (no ACK came).
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        timers: &Timers,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        let mut ack_missing = false;
        if due(self.timer_h, now) {
            self.timer_h = None;
            self.timer_g = None;
            self.become_(State::Terminated);
            ack_missing = true;
        }
        if due(self.timer_g, now) {
            if let Some(response) = &self.last_response {
                out.push_back(response.clone());
            }
            self.g_interval = timers.backoff(self.g_interval);
            self.timer_g = Some(now + self.g_interval);
        }
        if due(self.timer_i, now) {
            self.timer_i = None;
            self.become_(State::Terminated);
        }
        if due(self.timer_l, now) {
            self.timer_l = None;
            self.become_(State::Terminated);
        }
        ack_missing
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u8) -> Transmit {
        Transmit {
            destination: "192.0.2.1:5060".parse().unwrap(),
            transport: crate::Transport::Udp,
            payload: vec![n],
        }
    }

    const TIMERS: Timers = super::super::RFC_TIMERS;

    #[test]
    fn final_error_is_retransmitted_until_ack() {
        let start = Instant::now();
        let mut tx = ServerInviteTransaction::new(CallHandle::new(1));
        assert!(tx.respond_provisional(t(1)).is_some());
        assert_eq!(tx.on_invite_retransmission(), Some(t(1)));
        assert!(tx.respond_failure(start, t(2), &TIMERS).is_some());
        let mut out = VecDeque::new();
        let mut fired = Vec::new();
        let mut now = start;
        while let Some(deadline) = tx.next_deadline() {
            if deadline > start + Duration::from_millis(7600) {
                break;
            }
            now = deadline;
            tx.on_timeout(now, &TIMERS, &mut out);
            fired.push((now - start).as_millis());
        }
        assert_eq!(fired, vec![500, 1500, 3500, 7500]);
        assert_eq!(out.len(), 4);
        assert!(tx.on_ack(now));
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(tx.on_invite_retransmission(), None);
        tx.on_timeout(now + T4, &TIMERS, &mut out);
        assert!(tx.is_terminated());
    }

    #[test]
    fn timer_h_reports_a_missing_ack() {
        let start = Instant::now();
        let mut tx = ServerInviteTransaction::new(CallHandle::new(1));
        tx.respond_failure(start, t(2), &TIMERS);
        let mut out = VecDeque::new();
        assert!(tx.on_timeout(start + Duration::from_secs(32), &TIMERS, &mut out));
        assert!(tx.is_terminated());
    }

    #[test]
    fn no_second_final_response() {
        let now = Instant::now();
        let mut tx = ServerInviteTransaction::new(CallHandle::new(1));
        assert!(tx.respond_success(now, t(3), &TIMERS).is_some());
        assert!(tx.respond_failure(now, t(4), &TIMERS).is_none());
        assert_eq!(tx.on_invite_retransmission(), None, "absorbed after the 2xx (RFC 6026 7.1)");
        assert!(!tx.on_ack(now));
    }
}
