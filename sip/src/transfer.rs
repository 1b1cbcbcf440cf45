//! A blind transfer we asked for (RFC 3515, RFC 5589 6.1): our REFER, then the NOTIFYs of the
//! implicit `refer` subscription, each carrying the transferee's progress toward the target as
//! a sipfrag status line. The endpoint sends and answers the messages (`endpoint/transfer.rs`);
//! this module decides what each one means, with the time passed in.
//!
//! ```text
//! Referring --2xx--> Subscribed --NOTIFY 1xx--> Subscribed (Progress)
//!     |                  |   \----NOTIFY 2xx--> Done (Succeeded: the endpoint sends BYE)
//!  3xx-6xx,              |    \---NOTIFY 3xx-6xx, or terminated without one --> Done (Failed)
//!  Timer F               `--no NOTIFY by the deadline------------------------> Done (Failed 408)
//!     `--> Done (Failed)
//! ```
//!
//! A NOTIFY may overtake the REFER's 2xx; it counts all the same.

use std::time::{Duration, Instant};

use crate::event::TransferUpdate;
use crate::message::{FragStatus, SubState, SubscriptionState};

/// How long the subscription lasts when a NOTIFY names no `expires` (RFC 3515 leaves it to the
/// notifier; Asterisk and FreeSWITCH use 60 s).
pub(crate) const DEFAULT_EXPIRES: Duration = Duration::from_secs(60);

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The REFER is out, no final response and no NOTIFY yet.
    Referring,
    /// The REFER was accepted (or a NOTIFY came): waiting for the final sipfrag.
    Subscribed,
    /// The target answered: the transfer worked.
    Succeeded,
    /// Over without success.
    Failed,
}

/// A transfer of one call.
#[derive(Debug, Clone)]
pub(crate) struct Transfer {
    pub stage: Stage,
    /// The branch of the REFER's client transaction.
    pub branch: String,
    /// When we stop waiting for the next NOTIFY.
    deadline: Option<Instant>,
    /// The wait for the first NOTIFY after the 2xx (64*T1).
    first_notify: Duration,
}

impl Transfer {
    /// A transfer whose REFER went out on `branch`; `first_notify` bounds the wait for the
    /// first NOTIFY once the REFER is accepted.
    pub(crate) fn new(branch: String, first_notify: Duration) -> Self {
        Transfer {
            stage: Stage::Referring,
            branch,
            deadline: None,
            first_notify,
        }
    }

    /// Still waiting for an outcome.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.stage, Stage::Referring | Stage::Subscribed)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.is_pending())
    }

    /// The REFER's final response (`None`: Timer F fired).
    pub(crate) fn on_refer_response(
        &mut self,
        now: Instant,
        response: Option<(u16, &str)>,
    ) -> Option<TransferUpdate> {
        if self.stage != Stage::Referring {
            return None;
        }
        match response {
            Some((status @ 200..=299, reason)) => {
                self.stage = Stage::Subscribed;
                self.deadline = Some(now + self.first_notify);
                Some(TransferUpdate::Accepted {
                    status,
                    reason: reason.to_string(),
                })
            }
            Some((status, reason)) => self.fail(status, reason.to_string()),
            None => self.fail(408, "Request Timeout (no response to the REFER)".into()),
        }
    }

    /// A NOTIFY of the subscription: its sipfrag status (if the body has one) and its
    /// Subscription-State (if it has one).
    pub(crate) fn on_notify(
        &mut self,
        now: Instant,
        frag: Option<FragStatus>,
        state: Option<&SubscriptionState>,
    ) -> Option<TransferUpdate> {
        if !self.is_pending() {
            return None;
        }
        self.stage = Stage::Subscribed;
        let terminated = state.is_some_and(|s| s.state == SubState::Terminated);
        match frag {
            Some(FragStatus { status, reason }) if status >= 300 => self.fail(status, reason),
            Some(FragStatus { status, reason }) if status >= 200 => {
                self.stage = Stage::Succeeded;
                self.deadline = None;
                Some(TransferUpdate::Succeeded { status, reason })
            }
            _ if terminated => {
                let why = state
                    .and_then(|s| s.reason.clone())
                    .unwrap_or_else(|| "no reason given".into());
                self.fail(
                    487,
                    format!("Request Terminated (the transferee ended the subscription: {why})"),
                )
            }
            frag => {
                let expires = state
                    .and_then(|s| s.expires)
                    .map_or(DEFAULT_EXPIRES, |s| Duration::from_secs(s.into()));
                self.deadline = Some(now + expires);
                frag.map(|FragStatus { status, reason }| TransferUpdate::Progress {
                    status,
                    reason,
                })
            }
        }
    }

    /// The deadline passed without a final NOTIFY.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Option<TransferUpdate> {
        if !crate::transaction::due(self.next_deadline(), now) {
            return None;
        }
        self.fail(
            408,
            "Request Timeout (no final NOTIFY from the transferee)".into(),
        )
    }

    fn fail(&mut self, status: u16, reason: String) -> Option<TransferUpdate> {
        self.stage = Stage::Failed;
        self.deadline = None;
        Some(TransferUpdate::Failed { status, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Duration = Duration::from_secs(32);

    fn frag(text: &str) -> Option<FragStatus> {
        FragStatus::parse(text.as_bytes())
    }

    fn state(text: &str) -> SubscriptionState {
        SubscriptionState::parse(text).unwrap()
    }

    #[test]
    fn accepted_then_trying_then_ok_succeeds() {
        let t0 = Instant::now();
        let mut t = Transfer::new("b".into(), FIRST);
        let accepted = t.on_refer_response(t0, Some((202, "Accepted")));
        assert!(matches!(
            accepted,
            Some(TransferUpdate::Accepted { status: 202, .. })
        ));
        assert_eq!(t.next_deadline(), Some(t0 + FIRST));
        let active = state("active;expires=90");
        let progress = t.on_notify(t0, frag("SIP/2.0 100 Trying"), Some(&active));
        assert!(matches!(
            progress,
            Some(TransferUpdate::Progress { status: 100, .. })
        ));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(90)));
        let done = state("terminated;reason=noresource");
        let ok = t.on_notify(t0, frag("SIP/2.0 200 OK"), Some(&done));
        assert_eq!(
            ok,
            Some(TransferUpdate::Succeeded {
                status: 200,
                reason: "OK".into()
            })
        );
        assert_eq!(t.stage, Stage::Succeeded);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(
            t.on_notify(t0, frag("SIP/2.0 200 OK"), None),
            None,
            "reported once"
        );
    }

    #[test]
    fn a_refused_refer_or_target_fails() {
        let t0 = Instant::now();
        let mut t = Transfer::new("b".into(), FIRST);
        let refused = t.on_refer_response(t0, Some((403, "Forbidden")));
        assert_eq!(
            refused,
            Some(TransferUpdate::Failed {
                status: 403,
                reason: "Forbidden".into()
            })
        );
        assert!(!t.is_pending());

        let mut t = Transfer::new("b".into(), FIRST);
        t.on_refer_response(t0, Some((202, "Accepted")));
        let busy = t.on_notify(t0, frag("SIP/2.0 503 Service Unavailable"), None);
        assert!(matches!(
            busy,
            Some(TransferUpdate::Failed { status: 503, .. })
        ));
    }

    #[test]
    fn a_notify_may_overtake_the_2xx() {
        let t0 = Instant::now();
        let mut t = Transfer::new("b".into(), FIRST);
        let p = t.on_notify(t0, frag("SIP/2.0 100 Trying"), None);
        assert!(matches!(
            p,
            Some(TransferUpdate::Progress { status: 100, .. })
        ));
        assert_eq!(t.on_refer_response(t0, Some((202, "Accepted"))), None);
        assert_eq!(t.next_deadline(), Some(t0 + DEFAULT_EXPIRES));
    }

    #[test]
    fn timeouts_fail_the_transfer() {
        let t0 = Instant::now();
        let mut t = Transfer::new("b".into(), FIRST);
        let timeout = t.on_refer_response(t0, None);
        assert!(matches!(
            timeout,
            Some(TransferUpdate::Failed { status: 408, .. })
        ));

        let mut t = Transfer::new("b".into(), FIRST);
        t.on_refer_response(t0, Some((202, "Accepted")));
        assert_eq!(t.on_timeout(t0 + FIRST - Duration::from_millis(1)), None);
        let late = t.on_timeout(t0 + FIRST);
        assert!(matches!(
            late,
            Some(TransferUpdate::Failed { status: 408, .. })
        ));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_subscription_ended_without_a_final_status_fails() {
        let t0 = Instant::now();
        let mut t = Transfer::new("b".into(), FIRST);
        t.on_refer_response(t0, Some((202, "Accepted")));
        let ended = t.on_notify(t0, None, Some(&state("terminated;reason=timeout")));
        match ended {
            Some(TransferUpdate::Failed {
                status: 487,
                reason,
            }) => assert!(reason.contains("timeout"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
