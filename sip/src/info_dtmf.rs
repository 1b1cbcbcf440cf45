//! DTMF we send as SIP INFO (RFC 6086 carrying `application/dtmf-relay`, the body Cisco
//! introduced and PBXs read: `Signal=5\r\nDuration=160\r\n`). Digits go one INFO transaction at
//! a time, in order: the next leaves when the previous one has its final response. `w` waits
//! [`PAUSE`] before the next digit. A refused or unanswered INFO drops the digits still queued.
//! The endpoint sends the INFOs (`endpoint/info.rs`); this module holds the queue, with the
//! time passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What `w` waits (as for RFC 4733 digits).
pub(crate) const PAUSE: Duration = Duration::from_millis(500);

/// True for a character `send_dtmf_info` takes: a digit, or `w`.
pub(crate) fn is_dtmf_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d' | 'w' | 'W')
}

/// The `application/dtmf-relay` body of one digit.
pub(crate) fn relay_body(digit: char, duration: Duration) -> String {
    format!(
        "Signal={}\r\nDuration={}\r\n",
        digit.to_ascii_uppercase(),
        duration.as_millis()
    )
}

/// One call's digits to send.
#[derive(Debug, Default)]
pub(crate) struct InfoDtmf {
    queue: VecDeque<(char, Duration)>,
    /// The branch of the INFO in flight.
    in_flight: Option<String>,
    /// After a `w`: the next digit waits until then.
    resume_at: Option<Instant>,
}

impl InfoDtmf {
    /// Queues `digits` (checked with [`is_dtmf_char`] by the caller), each lasting `duration`.
    pub(crate) fn push(&mut self, digits: &str, duration: Duration) {
        self.queue.extend(digits.chars().map(|c| (c, duration)));
    }

    /// The next digit to send now, if one may go: none in flight, no pause running. A `w` at
    /// the head starts a pause instead.
    pub(crate) fn next(&mut self, now: Instant) -> Option<(char, Duration)> {
        if self.in_flight.is_some() {
            return None;
        }
        loop {
            if let Some(until) = self.resume_at {
                if until > now {
                    return None;
                }
                self.resume_at = None;
            }
            match self.queue.pop_front()? {
                ('w' | 'W', _) => self.resume_at = Some(now + PAUSE),
                digit => return Some(digit),
            }
        }
    }

    /// The digit's INFO is out on `branch`.
    pub(crate) fn sent(&mut self, branch: String) {
        self.in_flight = Some(branch);
    }

    /// The INFO on `branch` is over. On failure the queued digits are dropped and returned.
    /// `None` when `branch` is not ours (a stale transaction).
    pub(crate) fn on_outcome(&mut self, branch: &str, success: bool) -> Option<String> {
        if self.in_flight.as_deref() != Some(branch) {
            return None;
        }
        self.in_flight = None;
        if success {
            return Some(String::new());
        }
        self.resume_at = None;
        Some(self.queue.drain(..).map(|(c, _)| c).collect())
    }

    /// When a pause ends, while digits wait for it.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.resume_at
            .filter(|_| self.in_flight.is_none() && !self.queue.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(160);

    #[test]
    fn one_digit_at_a_time() {
        let t0 = Instant::now();
        let mut q = InfoDtmf::default();
        q.push("1#", D);
        assert_eq!(q.next(t0), Some(('1', D)));
        q.sent("b1".into());
        assert_eq!(q.next(t0), None, "the first INFO is in flight");
        assert_eq!(q.on_outcome("other", true), None);
        assert_eq!(q.on_outcome("b1", true), Some(String::new()));
        assert_eq!(q.next(t0), Some(('#', D)));
        q.sent("b2".into());
        q.on_outcome("b2", true);
        assert_eq!(q.next(t0), None);
    }

    #[test]
    fn w_pauses_half_a_second() {
        let t0 = Instant::now();
        let mut q = InfoDtmf::default();
        q.push("w5", D);
        assert_eq!(q.next(t0), None);
        assert_eq!(q.next_deadline(), Some(t0 + PAUSE));
        assert_eq!(q.next(t0 + PAUSE - Duration::from_millis(1)), None);
        assert_eq!(q.next(t0 + PAUSE), Some(('5', D)));
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn a_failure_drops_the_rest() {
        let t0 = Instant::now();
        let mut q = InfoDtmf::default();
        q.push("12w3", D);
        q.next(t0);
        q.sent("b1".into());
        assert_eq!(q.on_outcome("b1", false).as_deref(), Some("2w3"));
        assert_eq!(q.next(t0), None);
    }

    #[test]
    fn bodies_are_dtmf_relay() {
        assert_eq!(relay_body('5', D), "Signal=5\r\nDuration=160\r\n");
        assert_eq!(
            relay_body('a', Duration::from_millis(100)),
            "Signal=A\r\nDuration=100\r\n"
        );
        assert!("0123456789*#ABCDabcdwW".chars().all(is_dtmf_char));
        assert!(!"xE ,".chars().any(is_dtmf_char));
    }
}
