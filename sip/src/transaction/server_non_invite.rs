//! Non-INVITE server transaction (RFC 3261 17.2.2). This user agent answers non-INVITE
//! requests at once with a final response, so the transaction goes Trying -> Completed; in
//! Completed a retransmitted request gets the same response again, until Timer J (zero over TCP).

use std::time::Instant;

use super::{due, unreliable_only, Timers};
use crate::transmit::Transmit;

/// States of the non-INVITE server transaction (Proceeding is unused: no provisional
/// responses are sent to non-INVITE requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Trying,
    Completed,
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct ServerNonInviteTransaction {
    state: State,
    last_response: Option<Transmit>,
    /// Timer J: how long to answer retransmissions (64*T1 over UDP, zero over TCP).
    timer_j: Option<Instant>,
}

impl ServerNonInviteTransaction {
    pub(crate) fn new() -> Self {
        ServerNonInviteTransaction {
            state: State::Trying,
            last_response: None,
            timer_j: None,
        }
    }

    /// Sends the final response: Completed, Timer J starts.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        response: Transmit,
        timers: &Timers,
    ) -> Option<Transmit> {
        if self.state != State::Trying {
            return None;
        }
        self.state = State::Completed;
        self.timer_j = Some(now + unreliable_only(response.transport, timers.transaction_timeout()));
        self.last_response = Some(response.clone());
        Some(response)
    }

    /// A retransmitted request: the final response again (absorbed while Trying).
    pub(crate) fn on_retransmission(&self) -> Option<Transmit> {
        match self.state {
            State::Completed => self.last_response.clone(),
            State::Trying | State::Terminated => None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timer_j
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if due(self.timer_j, now) {
            self.timer_j = None;
            self.state = State::Terminated;
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_retransmissions_until_timer_j() {
        let timers = Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            ack_timeout: Duration::from_secs(32),
        };
        let now = Instant::now();
        let mut tx = ServerNonInviteTransaction::new();
        assert_eq!(tx.on_retransmission(), None);
        let t = Transmit {
            destination: "192.0.2.1:5060".parse().unwrap(),
            transport: crate::Transport::Udp,
            payload: b"200".to_vec(),
        };
        assert!(tx.respond(now, t.clone(), &timers).is_some());
        assert!(tx.respond(now, t.clone(), &timers).is_none());
        assert_eq!(tx.on_retransmission(), Some(t));
        assert_eq!(tx.next_deadline(), Some(now + Duration::from_secs(32)));
        tx.on_timeout(now + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }
}
