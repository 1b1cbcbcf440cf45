//! DTMF as SIP INFO (RFC 6086, `application/dtmf-relay`): one INFO transaction per digit, one at
//! a time, in the call's dialog. The queue and its pauses are `info_dtmf`'s; here they meet
//! the transactions.

use std::time::{Duration, Instant};

use super::{Completed, Endpoint};
use crate::call::CallState;
use crate::dialog::{Body, Extra};
use crate::error::SipError;
use crate::event::{CallHandle, Event};
use crate::info_dtmf::{is_dtmf_char, relay_body};
use crate::transaction::client_non_invite::ClientNonInviteTransaction;

impl Endpoint {
    /// Sends `digits` (`0-9 * # A-D`; `w` waits 0.5 s) to the remote party as INFO requests
    /// with `application/dtmf-relay` bodies (`Signal=5`, `Duration=<duration in ms>`), one
    /// transaction at a time; digits from a later call queue behind these.
    ///
    /// An INFO refused or unanswered drops the digits still queued and gives
    /// [`Event::DtmfInfoFailed`]. Only an established call sends INFO.
    pub fn send_dtmf_info(
        &mut self,
        now: Instant,
        call: CallHandle,
        digits: &str,
        duration: Duration,
    ) -> Result<(), SipError> {
        if let Some(bad) = digits.chars().find(|&c| !is_dtmf_char(c)) {
            return Err(SipError::InvalidDigit(bad));
        }
        let c = self.call_in(call, "send INFO", |c| c.state == CallState::Confirmed)?;
        c.info_dtmf.push(digits, duration);
        self.send_next_info(now, call);
        Ok(())
    }

    /// Sends the call's next digit, if one may go now.
    pub(super) fn send_next_info(&mut self, now: Instant, call: CallHandle) {
        let branch = self.new_branch();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Confirmed {
            return;
        }
        let Some((digit, duration)) = c.info_dtmf.next(now) else {
            return;
        };
        let body = relay_body(digit, duration);
        let extra = Extra {
            body: Some(Body {
                content_type: "application/dtmf-relay",
                text: &body,
            }),
            ..Extra::default()
        };
        let (transmit, _) = c.dialog.request("INFO", &branch, extra, &self.config);
        c.info_dtmf.sent(branch.clone());
        let tx = ClientNonInviteTransaction::new(now, call, "INFO", transmit.clone(), &self.timers);
        self.clients.insert(branch, tx);
        self.transmits.push_back(transmit);
        tracing::trace!(%call, %digit, "DTMF INFO");
    }

    /// A digit's INFO is over: the next digit goes, or the rest is dropped.
    pub(super) fn on_info_outcome(&mut self, now: Instant, done: Completed<'_>) {
        let (call, branch) = (done.call, done.branch);
        let (success, status, reason) = match done.response {
            Some((status, reason)) => ((200..300).contains(&status), status, reason.to_string()),
            None => (
                false,
                408,
                "Request Timeout (no response to the INFO)".into(),
            ),
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.info_dtmf.on_outcome(branch, success) {
            None => {}
            Some(_) if success => self.send_next_info(now, call),
            Some(dropped) => {
                tracing::debug!(%call, status, "DTMF INFO failed");
                self.events.push_back(Event::DtmfInfoFailed {
                    call,
                    status,
                    reason,
                    dropped,
                });
            }
        }
    }
}
