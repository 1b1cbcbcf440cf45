//! INVITE client transaction (RFC 3261 17.1.1, amended by RFC 6026 7.2). Over TCP there is
//! no Timer A and Timer D is zero.
//!
//! ```text
//!            | INVITE sent
//!            V
//!         Calling --Timer A: resend the INVITE (T1, 2*T1, 4*T1, ...)
//!          |   | \--Timer B (64*T1)--> Terminated (timeout)
//!          |  1xx
//!          |   V
//!          | Proceeding --1xx--> (to the core)
//!          |   |     \
//!      300-699 |      2xx (from Calling or Proceeding)
//!          V   V       V
//!        Completed   Accepted --2xx--> (to the core, which ACKs every 2xx)
//!        (ACK sent,     |
//!         sent again    Timer M (64*T1)
//!         per final)    V
//!          |         Terminated
//!        Timer D (32 s)
//!          V
//!        Terminated
//! ```
//! The ACK of a final error response is the transaction's (17.1.1.3); the ACK of a 2xx is a
//! request of the dialog, sent by the core (13.2.2.4).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{due, retransmit_at, soonest, unreliable_only, Timers};
use crate::event::CallHandle;
use crate::transmit::Transmit;

/// Timer D: how long a completed transaction absorbs retransmitted final responses over an
/// unreliable transport (at least 32 s, 17.1.1.2).
pub(crate) const TIMER_D: Duration = Duration::from_secs(32);

/// States of the INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

impl State {
    /// The allowed transitions.
    fn may_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Calling, Proceeding)
                | (Calling | Proceeding, Completed | Accepted)
                | (Calling | Completed | Accepted, Terminated)
        )
    }
}

/// What a response or a timer means for the owner of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A provisional response (100-199).
    Provisional(u16),
    /// A 2xx: the first, a retransmission, or another fork's. The core ACKs each one.
    Success,
    /// The first final error response (300-699); its ACK is already sent.
    Failure(u16),
    /// Timer B fired: no response at all.
    Timeout,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub(crate) struct ClientInviteTransaction {
    state: State,
    /// The call that sent the INVITE.
    pub call: CallHandle,
    request: Transmit,
    /// The ACK of the final error response, sent again for each retransmission of it.
    ack: Option<Transmit>,
    /// Timer A: retransmit the INVITE.
    timer_a: Option<Instant>,
    a_interval: Duration,
    /// Timer B: give up without any response.
    timer_b: Option<Instant>,
    /// Timer D: absorb retransmitted final error responses.
    timer_d: Option<Instant>,
    /// Timer M: pass retransmitted 2xx responses to the core (RFC 6026).
    timer_m: Option<Instant>,
}

impl ClientInviteTransaction {
    /// Starts the transaction; the caller sends `request` now.
    pub(crate) fn new(now: Instant, call: CallHandle, request: Transmit, timers: &Timers) -> Self {
        ClientInviteTransaction {
            state: State::Calling,
            call,
            ack: None,
            timer_a: retransmit_at(request.transport, now, timers.t1),
            a_interval: timers.t1,
            timer_b: Some(now + timers.transaction_timeout()),
            timer_d: None,
            timer_m: None,
            request,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> State {
        self.state
    }

    fn become_(&mut self, next: State) -> bool {
        if self.state.may_become(next) {
            tracing::trace!(from = ?self.state, to = ?next, "INVITE client transaction");
            self.state = next;
            true
        } else {
            false
        }
    }

    /// A response matched this transaction. `ack` is the ACK for a final error response (it
    /// carries the response's To tag), sent when that response completes the transaction.
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        status: u16,
        ack: Option<Transmit>,
        timers: &Timers,
        out: &mut VecDeque<Transmit>,
    ) -> Option<Outcome> {
        match (self.state, status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.state == State::Calling {
                    self.become_(State::Proceeding);
                    self.timer_a = None;
                    self.timer_b = None;
                }
                Some(Outcome::Provisional(status))
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.become_(State::Accepted);
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(now + timers.transaction_timeout());
                Some(Outcome::Success)
            }
            (State::Accepted, 200..=299) => Some(Outcome::Success),
            (State::Calling | State::Proceeding, 300..=699) => {
                self.become_(State::Completed);
                self.timer_a = None;
                self.timer_b = None;
                self.timer_d = Some(now + unreliable_only(self.request.transport, TIMER_D));
                out.extend(ack.clone());
                self.ack = ack;
                Some(Outcome::Failure(status))
            }
            (State::Completed, 300..=699) => {
                out.extend(self.ack.clone());
                None
            }
            _ => None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [self.timer_a, self.timer_b, self.timer_d, self.timer_m]
            .into_iter()
            .fold(None, soonest)
    }

    /// Runs the timers that are due; reports Timer B to the owner.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Transmit>,
    ) -> Option<Outcome> {
        if due(self.timer_b, now) {
            self.become_(State::Terminated);
            self.timer_a = None;
            self.timer_b = None;
            return Some(Outcome::Timeout);
        }
        if due(self.timer_a, now) {
            // 17.1.1.2: doubled every time, with no T2 cap, until Timer B.
            out.push_back(self.request.clone());
            self.a_interval = self.a_interval.saturating_mul(2);
            self.timer_a = Some(now + self.a_interval);
        }
        for timer in [&mut self.timer_d, &mut self.timer_m] {
            if due(*timer, now) {
                *timer = None;
                self.state = State::Terminated;
            }
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

    fn t(text: &str) -> Transmit {
        Transmit {
            destination: "192.0.2.1:5060".parse().unwrap(),
            transport: crate::Transport::Udp,
            payload: text.as_bytes().to_vec(),
        }
    }

    fn tx(now: Instant) -> ClientInviteTransaction {
        ClientInviteTransaction::new(now, CallHandle::new(1), t("INVITE"), &TIMERS)
    }

    #[test]
    fn timer_a_doubles_without_cap_until_timer_b() {
        let start = Instant::now();
        let mut tx = tx(start);
        let mut out = VecDeque::new();
        let mut fired = Vec::new();
        while let Some(deadline) = tx.next_deadline() {
            if let Some(outcome) = tx.on_timeout(deadline, &mut out) {
                assert_eq!(outcome, Outcome::Timeout);
                assert_eq!(deadline - start, Duration::from_secs(32));
                break;
            }
            fired.push((deadline - start).as_millis());
        }
        assert_eq!(fired, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(out.len(), 6);
        assert!(tx.is_terminated());
    }

    #[test]
    fn provisional_stops_retransmissions_and_timer_b() {
        let start = Instant::now();
        let mut tx = tx(start);
        let mut out = VecDeque::new();
        let provisional = tx.on_response(start, 180, None, &TIMERS, &mut out);
        assert_eq!(provisional, Some(Outcome::Provisional(180)));
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(
            tx.next_deadline(),
            None,
            "a ringing call may ring for as long as it likes"
        );
    }

    #[test]
    fn final_error_is_acked_once_per_copy_until_timer_d() {
        let start = Instant::now();
        let mut tx = tx(start);
        let mut out = VecDeque::new();
        assert_eq!(
            tx.on_response(start, 486, Some(t("ACK")), &TIMERS, &mut out),
            Some(Outcome::Failure(486))
        );
        assert_eq!(out.drain(..).collect::<Vec<_>>(), [t("ACK")]);
        assert_eq!(tx.on_response(start, 486, None, &TIMERS, &mut out), None);
        assert_eq!(
            out.drain(..).collect::<Vec<_>>(),
            [t("ACK")],
            "a retransmitted 486 gets the ACK again"
        );
        assert_eq!(tx.on_response(start, 200, None, &TIMERS, &mut out), None);
        tx.on_timeout(start + TIMER_D, &mut out);
        assert!(tx.is_terminated());
        assert!(out.is_empty());
    }

    #[test]
    fn every_2xx_goes_to_the_core_until_timer_m() {
        let start = Instant::now();
        let mut tx = tx(start);
        let mut out = VecDeque::new();
        assert_eq!(
            tx.on_response(start, 200, None, &TIMERS, &mut out),
            Some(Outcome::Success)
        );
        assert_eq!(
            tx.on_response(start, 200, None, &TIMERS, &mut out),
            Some(Outcome::Success)
        );
        assert_eq!(tx.on_response(start, 180, None, &TIMERS, &mut out), None);
        assert_eq!(tx.state(), State::Accepted);
        assert!(out.is_empty(), "the 2xx ACK is the core's");
        tx.on_timeout(start + Duration::from_secs(32), &mut out);
        assert!(tx.is_terminated());
    }
}
