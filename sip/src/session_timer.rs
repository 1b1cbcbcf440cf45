//! Session timers (RFC 4028): what a call agreed on (the interval and who refreshes), when
//! the refresher refreshes (half the interval) and when the other side gives up on a refresh
//! that never came (`interval - min(32 s, interval / 3)`, RFC 4028 10). The endpoint sends the
//! refreshes and the BYE (`endpoint/session.rs`); this module holds the state and its rules.
//!
//! ```text
//! negotiate (our 2xx, their 2xx) --> SessionTimer { interval, we_refresh }
//!   we refresh:   interval/2 -----------------> Due::Refresh (re-INVITE or UPDATE)
//!   they refresh: interval - min(32, i/3) ----> Due::Expire (BYE, EndReason::SessionExpired)
//! a refresh's 2xx (either way) --reset--> the wait starts again
//! ```

use std::time::{Duration, Instant};

use crate::message::{Refresher, SessionExpires};
use crate::transmit::Transmit;

/// How the endpoint uses session timers: our preferred interval (`None`: off) and the
/// smallest we accept (Min-SE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub interval: Option<u32>,
    pub min_se: u32,
}

/// What an INVITE (or UPDATE) we answer asks about the session timer, read from its headers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Asked {
    pub session_expires: Option<SessionExpires>,
    pub min_se: Option<u32>,
    /// `Supported: timer` (or `Require: timer`).
    pub supports_timer: bool,
}

/// Our answer to a request, as UAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiation {
    /// Session timers are off here (or the request cannot use them).
    Off,
    /// The interval is below our Min-SE: `422 Session Interval Too Small` with this Min-SE.
    TooBrief { min_se: u32 },
    /// Our 2xx carries `Session-Expires: interval;refresher=...`, and `Require: timer` when
    /// the UAC supports it.
    Agreed {
        session_expires: SessionExpires,
        require: bool,
    },
}

impl Policy {
    /// RFC 4028 9: the UAS may lower the interval, never below either Min-SE; the refresher
    /// is the one the UAC chose, else the UAC when it supports timers, else us.
    pub(crate) fn negotiate(&self, asked: &Asked) -> Negotiation {
        let Some(ours) = self.interval else {
            return Negotiation::Off;
        };
        let floor = self.min_se.max(asked.min_se.unwrap_or(0));
        let interval = match asked.session_expires {
            Some(se) if se.interval < self.min_se => {
                return Negotiation::TooBrief {
                    min_se: self.min_se,
                }
            }
            Some(se) => se.interval.min(ours.max(floor)),
            None => ours.max(floor),
        };
        let refresher = match asked.session_expires.and_then(|se| se.refresher) {
            _ if !asked.supports_timer => Refresher::Uas,
            Some(chosen) => chosen,
            None => Refresher::Uac,
        };
        Negotiation::Agreed {
            session_expires: SessionExpires {
                interval,
                refresher: Some(refresher),
            },
            require: asked.supports_timer,
        }
    }

    /// The Session-Expires of an INVITE we send: our interval, raised to a Min-SE asked by a
    /// 422.
    pub(crate) fn request(&self, min_se: Option<u32>) -> Option<SessionExpires> {
        let interval = self.interval?.max(min_se.unwrap_or(0));
        Some(SessionExpires {
            interval,
            refresher: None,
        })
    }
}

/// How we refresh: UPDATE without a body when the peer allows it (RFC 4028 7.4 prefers it),
/// else a re-INVITE with our current SDP (unchanged, same session version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshMethod {
    Invite,
    Update,
}

/// Our refresh in flight.
#[derive(Debug, Clone)]
pub(crate) struct Refresh {
    pub branch: String,
    pub method: RefreshMethod,
    pub cseq: u32,
}

/// What is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// We are the refresher and half the interval passed (or a retry after 491 is due).
    Refresh,
    /// The peer is the refresher and no refresh came in time.
    Expire,
}

/// A running session timer.
#[derive(Debug, Clone)]
pub(crate) struct SessionTimer {
    /// Seconds.
    pub interval: u32,
    pub we_refresh: bool,
    /// The last refresh (or the call's start).
    last: Instant,
    /// Our refresh in flight: no other is sent meanwhile.
    pub refresh: Option<Refresh>,
    /// A refresh to try again (after 491, or when the dialog was busy).
    retry_at: Option<Instant>,
}

impl SessionTimer {
    pub(crate) fn new(now: Instant, interval: u32, we_refresh: bool) -> Self {
        SessionTimer {
            interval,
            we_refresh,
            last: now,
            refresh: None,
            retry_at: None,
        }
    }

    /// A refresh succeeded (a 2xx either way): the wait starts again with what it agreed.
    pub(crate) fn reset(&mut self, now: Instant, interval: u32, we_refresh: bool) {
        *self = SessionTimer::new(now, interval, we_refresh);
    }

    /// Try the refresh again at `at`.
    pub(crate) fn retry(&mut self, at: Instant) {
        self.refresh = None;
        self.retry_at = Some(at);
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let interval = Duration::from_secs(u64::from(self.interval));
        if !self.we_refresh {
            let margin = Duration::from_secs(32).min(interval / 3);
            return Some(self.last + interval - margin);
        }
        if self.refresh.is_some() {
            return None;
        }
        Some(self.retry_at.unwrap_or(self.last + interval / 2))
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) -> Option<Due> {
        if !crate::transaction::due(self.next_deadline(), now) {
            return None;
        }
        if self.we_refresh {
            self.retry_at = None;
            Some(Due::Refresh)
        } else {
            Some(Due::Expire)
        }
    }
}

/// A call's session-timer facts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    /// The SDP we last sent (offer or answer): a re-INVITE refresh offers it again.
    pub local_sdp: Option<String>,
    /// The peer listed UPDATE in Allow.
    pub peer_allows_update: bool,
    /// What our 2xx to the pending INVITE, re-INVITE or UPDATE says (as UAS).
    pub agreed: Option<Negotiation>,
    pub timer: Option<SessionTimer>,
    /// A call we place: the Min-SE a 422 asked for (we retry once).
    pub min_se_asked: Option<u32>,
    /// The ACK of our last refresh re-INVITE's 2xx, for its retransmissions.
    pub refresh_ack: Option<(String, Transmit)>,
}

impl Session {
    /// Starts or resets the timer as our 2xx to a request of the peer says.
    pub(crate) fn answered(&mut self, now: Instant) {
        if let Some(Negotiation::Agreed {
            session_expires, ..
        }) = self.agreed.take()
        {
            let we_refresh = session_expires.refresher == Some(Refresher::Uas);
            self.restart(now, session_expires.interval, we_refresh);
        } else {
            self.again(now);
        }
    }

    /// Starts or resets the timer as a 2xx to our request says (`refresher=uac` or none: us).
    pub(crate) fn confirmed(&mut self, now: Instant, session_expires: Option<SessionExpires>) {
        match session_expires {
            Some(se) => self.restart(now, se.interval, se.refresher != Some(Refresher::Uas)),
            None => self.again(now),
        }
    }

    /// A refresh that did not say otherwise: the same interval and refresher, from now.
    fn again(&mut self, now: Instant) {
        if let Some(timer) = &self.timer {
            let (interval, we_refresh) = (timer.interval, timer.we_refresh);
            self.restart(now, interval, we_refresh);
        }
    }

    fn restart(&mut self, now: Instant, interval: u32, we_refresh: bool) {
        match &mut self.timer {
            Some(timer) => timer.reset(now, interval, we_refresh),
            None => self.timer = Some(SessionTimer::new(now, interval, we_refresh)),
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timer.as_ref().and_then(SessionTimer::next_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        interval: Some(1800),
        min_se: 90,
    };

    fn asked(se: Option<&str>, min_se: Option<u32>, supports_timer: bool) -> Asked {
        Asked {
            session_expires: se.map(|v| SessionExpires::parse(v).unwrap()),
            min_se,
            supports_timer,
        }
    }

    fn agreed(n: Negotiation) -> (String, bool) {
        match n {
            Negotiation::Agreed {
                session_expires,
                require,
            } => (session_expires.to_string(), require),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn below_min_se_is_too_brief() {
        let n = POLICY.negotiate(&asked(Some("60"), None, true));
        assert_eq!(n, Negotiation::TooBrief { min_se: 90 });
    }

    #[test]
    fn the_uac_choice_is_kept_else_uac_when_it_supports_timers_else_uas() {
        let n = POLICY.negotiate(&asked(Some("90;refresher=uas"), Some(90), true));
        assert_eq!(agreed(n), ("90;refresher=uas".into(), true));
        let n = POLICY.negotiate(&asked(Some("600"), None, true));
        assert_eq!(agreed(n), ("600;refresher=uac".into(), true));
        let n = POLICY.negotiate(&asked(Some("600;refresher=uac"), None, false));
        assert_eq!(agreed(n), ("600;refresher=uas".into(), false));
        let n = POLICY.negotiate(&asked(None, None, false));
        assert_eq!(agreed(n), ("1800;refresher=uas".into(), false));
    }

    #[test]
    fn a_long_interval_is_lowered_but_not_below_their_min_se() {
        let n = POLICY.negotiate(&asked(Some("7200"), Some(3600), true));
        assert_eq!(agreed(n), ("3600;refresher=uac".into(), true));
        let n = POLICY.negotiate(&asked(Some("7200"), None, true));
        assert_eq!(agreed(n), ("1800;refresher=uac".into(), true));
    }

    #[test]
    fn off_when_disabled() {
        let off = Policy {
            interval: None,
            min_se: 90,
        };
        assert_eq!(
            off.negotiate(&asked(Some("90"), None, true)),
            Negotiation::Off
        );
    }

    #[test]
    fn refresher_at_half_the_other_side_before_the_end() {
        let t0 = Instant::now();
        let ours = SessionTimer::new(t0, 90, true);
        assert_eq!(ours.next_deadline(), Some(t0 + Duration::from_secs(45)));
        let theirs = SessionTimer::new(t0, 90, false);
        assert_eq!(theirs.next_deadline(), Some(t0 + Duration::from_secs(60)));
        let long = SessionTimer::new(t0, 1800, false);
        assert_eq!(long.next_deadline(), Some(t0 + Duration::from_secs(1768)));
    }
}
