//! When a call's RTP-timeout check (`--rtp-timeout`) next has to look, decided
//! without I/O so it is tested with fake time.
//!
//! The check used to wake every call's watcher once a second, whether or not
//! there was a timeout to enforce (`--rtp-timeout 0`, WebRTC calls): at 3,000
//! calls, 3,000 timer wake-ups a second on the runtime for nothing. A call's
//! RTP cannot go stale before `last received + limit`, so the watcher sleeps
//! until then (one wake-up per `limit` for a call that is sending), and not at
//! all when there is nothing to enforce. On hold it looks once a second, as
//! before: the hold may end at any moment, and then the timeout applies again.

use std::time::{Duration, Instant};

/// How often a call on hold is looked at.
pub const HOLD_RECHECK: Duration = Duration::from_secs(1);

/// What the watcher does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing to enforce: no timer.
    Never,
    /// Look again at this instant.
    At(Instant),
    /// No RTP for longer than the limit: end the call.
    HangUp,
}

/// The call as the check sees it at `now`.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// `--rtp-timeout` (`None`: 0, never).
    pub limit: Option<Duration>,
    /// A SIP call (a browser may send no audio at all; ICE consent tells
    /// whether it is still there).
    pub sip: bool,
    /// The peer put us on hold: it may legitimately be silent.
    pub on_hold: bool,
    /// The last RTP received (the call's start, if none yet).
    pub last_received: Instant,
}

/// The next step at `now`.
pub fn next_check(call: Watched, now: Instant) -> Check {
    let Some(limit) = call.limit else { return Check::Never };
    if !call.sip {
        return Check::Never;
    }
    if call.on_hold {
        return Check::At(now + HOLD_RECHECK);
    }
    if now.saturating_duration_since(call.last_received) > limit {
        return Check::HangUp;
    }
    // Just past the instant it would be stale, so the next look decides.
    Check::At(call.last_received + limit + Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_call_is_ended_just_after_the_limit_and_not_looked_at_before() {
        let start = Instant::now();
        let limit = Duration::from_secs(60);
        let mut call = Watched { limit: Some(limit), sip: true, on_hold: false, last_received: start };
        let Check::At(first) = next_check(call, start) else { panic!("a timer") };
        assert_eq!(first, start + limit + Duration::from_millis(1), "one wake-up at the deadline, not one a second");
        assert_eq!(next_check(call, start + limit), Check::At(first), "not yet stale at the limit itself");
        assert_eq!(next_check(call, first), Check::HangUp);
        // RTP kept arriving meanwhile: the deadline moves with it.
        call.last_received = start + Duration::from_secs(50);
        assert_eq!(next_check(call, first), Check::At(start + Duration::from_secs(110) + Duration::from_millis(1)));
    }

    #[test]
    fn a_call_on_hold_is_looked_at_each_second_and_ended_once_unheld_if_still_silent() {
        let start = Instant::now();
        let limit = Duration::from_secs(2);
        let mut call = Watched { limit: Some(limit), sip: true, on_hold: true, last_received: start };
        let late = start + Duration::from_secs(30);
        assert_eq!(next_check(call, late), Check::At(late + HOLD_RECHECK), "silence on hold is fine");
        call.on_hold = false;
        assert_eq!(next_check(call, late + HOLD_RECHECK), Check::HangUp, "as before: unheld and silent past the limit");
    }

    #[test]
    fn without_a_limit_or_for_a_browser_there_is_no_timer() {
        let now = Instant::now();
        let call = Watched { limit: None, sip: true, on_hold: false, last_received: now - Duration::from_secs(3600) };
        assert_eq!(next_check(call, now), Check::Never);
        let browser = Watched { limit: Some(Duration::from_secs(1)), sip: false, ..call };
        assert_eq!(next_check(browser, now), Check::Never);
    }
}
