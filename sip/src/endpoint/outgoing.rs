//! Calls we place (RFC 3261 13.2, 17.1.1, 9.1, 22.2): the INVITE and its client transaction,
//! provisional and final responses, the ACK of the 2xx, Digest authentication, CANCEL.
//!
//! ```text
//! call() --INVITE--> 1xx       CallRinging (180, 183: once per status in a row)
//!                    2xx       dialog established (12.1.2), ACK sent, CallAnswered { answer }
//!                              (a retransmitted 2xx gets the ACK again; another fork's: ACK, BYE)
//!                    401/407   INVITE again with credentials (new branch, CSeq+1); the same
//!                              realm challenged again fails the call (stale=true: once more)
//!                    3xx-6xx   CallFailed { status, reason }, then CallEnded(Failed)
//!                    Timer B   CallFailed { 408 }, CallEnded(Failed)
//! hangup() before the 2xx      CANCEL once a 1xx came; 487; CallEnded(LocalCancel)
//! ```

use std::time::Instant;

use rand::Rng;

use super::deadlines::Timed;
use super::Endpoint;
use crate::call::{Call, CallState, Role};
use crate::dialog::{Body, Dialog, Extra};
use crate::digest;
use crate::error::SipError;
use crate::event::{CallHandle, EndReason, Event};
use crate::message::Response;
use crate::transaction::client_invite::{ClientInviteTransaction, Outcome};
use crate::transaction::client_non_invite::ClientNonInviteTransaction;
use crate::transaction::due;
use crate::uac::{Authorization, CallRequest, Uac};

impl Endpoint {
    /// Places a call: sends an INVITE with the request's offer to its destination,
    /// retransmitted (Timer A) until a response comes, for at most 64*T1 (Timer B).
    ///
    /// Then, for the returned handle: [`Event::CallRinging`] per provisional status;
    /// [`Event::CallAnswered`] with the 2xx's SDP (the ACK is sent); or [`Event::CallFailed`]
    /// and [`Event::CallEnded`]. A `401`/`407` is answered with the request's credentials once
    /// per realm. [`hangup`](Self::hangup) before the answer sends CANCEL; after it, BYE.
    ///
    /// Nothing is sent when the request is refused ([`SipError::InvalidCallRequest`]).
    pub fn call(&mut self, now: Instant, request: CallRequest) -> Result<CallHandle, SipError> {
        let (uri, from, headers) = request.checked(&self.config)?;
        let handle = CallHandle::new(self.next_call);
        self.next_call += 1;
        let tag = self.new_tag();
        let call_id = format!("{:016x}@{}", self.rng.gen::<u64>(), self.config.host_port());
        let local_seq = self.rng.gen_range(1..0x8000_0000);
        let mut dialog = Dialog::for_outgoing(
            call_id,
            &tag,
            &from,
            &request.to,
            uri,
            request.destination,
            local_seq,
        );
        dialog.transport = request.transport;
        let uac = Uac::new(now, headers, request);
        self.calls.insert(
            handle,
            Box::new(Call::new(CallState::Calling, dialog, Role::Uac(uac))),
        );
        self.send_invite(now, handle);
        tracing::debug!(%handle, "calling");
        Ok(handle)
    }

    /// Sends the call's next INVITE (the first, or one with credentials): a new branch, the
    /// next CSeq, a new client transaction.
    pub(super) fn send_invite(&mut self, now: Instant, handle: CallHandle) {
        let branch = self.new_branch();
        let session = self.request_session_headers(handle);
        let Some(Placed { dialog, uac, .. }) = placed(&mut self.calls, handle) else {
            return;
        };
        let mut headers = uac.headers.clone();
        headers.extend(session);
        headers.extend(uac.credentials_headers());
        let extra = Extra {
            headers: &headers,
            body: Some(Body::sdp(&uac.sdp_offer)),
            ..Extra::default()
        };
        let (transmit, cseq) = dialog.request("INVITE", &branch, extra, &self.config);
        uac.branch = branch.clone();
        uac.cseq = cseq;
        uac.provisional = false;
        uac.failover_at = (!uac.alternates.is_empty()).then(|| now + uac.failover_after);
        let tx = ClientInviteTransaction::new(now, handle, transmit.clone(), &self.timers);
        self.invite_clients.insert(branch, tx);
        self.transmits.push_back(transmit);
    }

    /// A response to one of our INVITEs.
    pub(super) fn on_invite_response(&mut self, now: Instant, response: Response) {
        let found = response
            .branch
            .as_ref()
            .and_then(|b| self.invite_clients.get(b))
            .map(|tx| tx.call);
        let Some(handle) = found else {
            return self.unexpected_response(&response);
        };
        if self.on_refresh_invite_response(now, handle, &response) {
            return;
        }
        let ack = (300..=699)
            .contains(&response.status)
            .then(|| self.error_ack(handle, &response))
            .flatten();
        let branch = response.branch.as_deref().unwrap_or_default();
        let Some(tx) = self.invite_clients.get_mut(branch) else {
            return;
        };
        match tx.on_response(now, response.status, ack, &self.timers, &mut self.transmits) {
            Some(Outcome::Provisional(status)) => self.on_provisional(now, handle, status),
            Some(Outcome::Success) => self.on_answer(now, handle, &response),
            Some(Outcome::Failure(422)) if self.retry_with_min_se(now, handle, &response) => {}
            Some(Outcome::Failure(status)) => {
                let refused = self.authenticate(now, handle, &response);
                if let Some(reason) = refused {
                    self.attempt_over(handle, status, &reason);
                }
            }
            Some(Outcome::Timeout) | None => {}
        }
    }

    /// The ACK of a final error response to the current INVITE (17.1.1.3): its branch,
    /// Request-URI, From, Call-ID and CSeq number, and the response's To.
    fn error_ack(&self, handle: CallHandle, response: &Response) -> Option<crate::Transmit> {
        let call = self.calls.get(&handle)?;
        let Role::Uac(uac) = &call.role else {
            return None;
        };
        let extra = Extra {
            to: Some(&response.to),
            ..Extra::default()
        };
        Some(
            call.dialog
                .build("ACK", uac.cseq, &uac.branch, extra, &self.config),
        )
    }

    fn on_provisional(&mut self, now: Instant, handle: CallHandle, status: u16) {
        let Some(Placed { state, uac, .. }) = placed(&mut self.calls, handle) else {
            return;
        };
        uac.provisional = true;
        uac.failover_at = None;
        match *state {
            CallState::Cancelling if !uac.cancel_sent => self.send_cancel(now, handle),
            CallState::Calling if status > 100 && uac.reported != Some(status) => {
                uac.reported = Some(status);
                tracing::debug!(%handle, status, "ringing");
                self.events.push_back(Event::CallRinging {
                    call: handle,
                    status,
                });
            }
            _ => {}
        }
    }

    /// A 2xx (13.2.2.4): the first establishes the dialog and is ACKed; its retransmissions
    /// get the same ACK; another fork's 2xx gets an ACK and BYE.
    fn on_answer(&mut self, now: Instant, handle: CallHandle, response: &Response) {
        let (ack_branch, bye_branch) = (self.new_branch(), self.new_branch());
        let Some(Placed { state, dialog, uac }) = placed(&mut self.calls, handle) else {
            return;
        };
        let tag = response.to_tag.clone().unwrap_or_default();
        if let Some(ack) = &uac.ack {
            let again = if tag == dialog.id.remote_tag {
                Some(ack)
            } else {
                uac.forks
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .map(|(_, ack)| ack)
            };
            if let Some(ack) = again {
                self.transmits.push_back(ack.clone());
                return;
            }
            // A fork we do not want: its own dialog gets ACK and BYE.
            let mut fork = dialog.clone();
            fork.establish(response);
            let ack = uac.ack_2xx(&fork, &ack_branch, &self.config);
            let (bye, _) = fork.request("BYE", &bye_branch, Extra::default(), &self.config);
            uac.forks.push((tag, ack.clone()));
            // The BYE's outcome concerns no call of ours.
            let nobody = CallHandle::new(self.next_call);
            self.next_call += 1;
            let tx = ClientNonInviteTransaction::new(now, nobody, "BYE", bye.clone(), &self.timers);
            self.clients.insert(bye_branch, tx);
            self.transmits.extend([ack, bye]);
            tracing::debug!(%handle, "2xx from another fork: ACK and BYE");
            return;
        }
        dialog.establish(response);
        let ack = uac.ack_2xx(dialog, &ack_branch, &self.config);
        uac.ack = Some(ack.clone());
        uac.give_up = None;
        self.transmits.push_back(ack);
        self.dialogs.insert(dialog.id.clone(), handle);
        if *state == CallState::Cancelling {
            tracing::debug!(%handle, "answered after our CANCEL: BYE");
            return self.send_bye(now, handle);
        }
        *state = CallState::Confirmed;
        let offer = uac.sdp_offer.clone();
        self.session_established(now, handle, response, &offer);
        tracing::debug!(%handle, "answered");
        self.events.push_back(Event::CallAnswered {
            call: handle,
            answer: response.sdp(),
        });
    }

    /// A 401/407 (22.2): the INVITE goes again with an answer to each realm's first challenge
    /// we support. Returns why the call fails instead, when it does.
    fn authenticate(
        &mut self,
        now: Instant,
        handle: CallHandle,
        response: &Response,
    ) -> Option<String> {
        let proxy = match response.status {
            401 => false,
            407 => true,
            _ => return Some(response.reason.clone()),
        };
        let Placed { state, dialog, uac } = placed(&mut self.calls, handle)?;
        if *state != CallState::Calling {
            return Some(response.reason.clone());
        }
        let Some(credentials) = uac.credentials.clone() else {
            return Some(format!(
                "{} (no credentials for this call)",
                response.reason
            ));
        };
        let challenges = match digest::challenges_of(&response) {
            Ok(c) => c,
            Err(e) => return Some(e),
        };
        for challenge in &challenges {
            let previous = uac
                .authorization
                .iter_mut()
                .find(|a| a.proxy == proxy && a.realm == challenge.realm);
            match previous {
                // No loops: the same realm again means the credentials were refused, unless
                // only our nonce had expired (once).
                Some(previous) if !challenge.stale || previous.stale_retried => {
                    return Some(format!(
                        "{} (credentials refused for realm \"{}\")",
                        response.reason, challenge.realm
                    ));
                }
                Some(previous) => previous.stale_retried = true,
                None => {}
            }
        }
        for challenge in challenges {
            let slot = uac
                .authorization
                .iter()
                .position(|a| a.proxy == proxy && a.realm == challenge.realm);
            let previous = slot.map(|i| uac.authorization.remove(i));
            let nc = match &previous {
                Some(p) if p.nonce == challenge.nonce => p.nc + 1,
                _ => 1,
            };
            let cnonce = format!("{:016x}", self.rng.gen::<u64>());
            let answer = digest::Answer {
                username: &credentials.username,
                password: &credentials.password,
                method: "INVITE",
                uri: dialog.remote_target.as_str(),
                cnonce: &cnonce,
                nc,
            };
            uac.authorization.push(Authorization {
                proxy,
                value: digest::authorization(&challenge, &answer),
                realm: challenge.realm,
                nonce: challenge.nonce,
                nc,
                stale_retried: previous.is_some_and(|p| p.stale_retried),
            });
        }
        tracing::debug!(%handle, status = response.status, "challenged: INVITE again with credentials");
        self.send_invite(now, handle);
        None
    }

    /// Hangs up a call we placed before its 2xx (9.1): CANCEL now if a provisional response
    /// came, else as soon as one does.
    pub(super) fn cancel(&mut self, now: Instant, handle: CallHandle) {
        let Some(Placed { state, uac, .. }) = placed(&mut self.calls, handle) else {
            return;
        };
        *state = CallState::Cancelling;
        uac.give_up = Some(now + self.timers.transaction_timeout());
        if uac.provisional {
            self.send_cancel(now, handle);
        }
    }

    /// CANCEL (9.1): the INVITE's Request-URI, Call-ID, From, To, CSeq number and top Via.
    fn send_cancel(&mut self, now: Instant, handle: CallHandle) {
        let Some(Placed { dialog, uac, .. }) = placed(&mut self.calls, handle) else {
            return;
        };
        uac.cancel_sent = true;
        uac.give_up = Some(now + self.timers.transaction_timeout());
        let cancel = dialog.build(
            "CANCEL",
            uac.cseq,
            &uac.branch,
            Extra::default(),
            &self.config,
        );
        let tx =
            ClientNonInviteTransaction::new(now, handle, "CANCEL", cancel.clone(), &self.timers);
        self.clients.insert(uac.branch.clone(), tx);
        self.transmits.push_back(cancel);
        tracing::debug!(%handle, "CANCEL");
    }

    /// Runs the INVITE client transactions' timers.
    pub(super) fn on_invite_timers(&mut self, now: Instant) {
        for branch in self.invite_clients.due(now) {
            let Some(tx) = self.invite_clients.get_mut(&branch) else {
                continue;
            };
            let outcome = tx.on_timeout(now, &mut self.transmits);
            let handle = tx.call;
            if tx.is_terminated() {
                self.invite_clients.remove(&branch);
            }
            if outcome == Some(Outcome::Timeout)
                && !self.refresh_timed_out(now, handle, &branch)
                && !self.fail_over(now, handle, true)
            {
                self.attempt_over(handle, 408, "Request Timeout (no response to the INVITE)");
            }
        }
    }

    /// A call's own deadline for a call we placed: the ring timeout (CANCEL, and the call will
    /// fail with 408), or the end of the wait for the INVITE's final response after CANCEL.
    /// Returns whether it was due.
    pub(super) fn on_give_up(&mut self, now: Instant, handle: CallHandle) -> bool {
        if self.fail_over(now, handle, false) {
            return true;
        }
        let Some(Placed { state, uac, .. }) = placed(&mut self.calls, handle) else {
            return false;
        };
        if !due(uac.give_up, now) {
            return false;
        }
        uac.give_up = None;
        if *state == CallState::Calling {
            let waited = uac.ring_timeout.unwrap_or_default().as_secs();
            uac.failure = Some((
                408,
                format!("Request Timeout (no answer within {waited} s)"),
            ));
            self.cancel(now, handle);
        } else {
            self.invite_clients.remove(&uac.branch);
            self.attempt_over(
                handle,
                408,
                "Request Timeout (no final response after CANCEL)",
            );
        }
        true
    }

    /// The current address sent nothing back (no response within `failover_after`, or Timer B
    /// when `timed_out`): the INVITE goes to the next alternate (RFC 3263 4.3). Returns whether
    /// it did.
    fn fail_over(&mut self, now: Instant, handle: CallHandle, timed_out: bool) -> bool {
        let Some(Placed { state, dialog, uac }) = placed(&mut self.calls, handle) else {
            return false;
        };
        let silent = timed_out || due(uac.failover_at, now);
        if !silent || *state != CallState::Calling || uac.provisional {
            return false;
        }
        uac.failover_at = None;
        let Some(next) = uac.alternates.pop_front() else {
            return false;
        };
        tracing::debug!(%handle, from = %dialog.peer, to = %next, "no response to the INVITE; next address");
        self.invite_clients.remove(&uac.branch);
        dialog.peer = next;
        self.send_invite(now, handle);
        true
    }

    /// The INVITE is over without a dialog: the call failed, or it ends as we asked (CANCEL).
    fn attempt_over(&mut self, handle: CallHandle, status: u16, reason: &str) {
        let Some(Placed { state, uac, .. }) = placed(&mut self.calls, handle) else {
            return;
        };
        if !matches!(*state, CallState::Calling | CallState::Cancelling) {
            return;
        }
        let failure = match (uac.failure.take(), *state) {
            (Some(ours), _) => Some(ours),
            (None, CallState::Cancelling) => None,
            (None, _) => Some((status, reason.to_string())),
        };
        match failure {
            Some((status, reason)) => {
                tracing::debug!(%handle, status, %reason, "call failed");
                self.events.push_back(Event::CallFailed {
                    call: handle,
                    status,
                    reason,
                });
                self.end_call(handle, EndReason::Failed);
            }
            None => self.end_call(handle, EndReason::LocalCancel),
        }
    }
}

/// A call we placed, borrowed field by field so that its state, dialog and UAC state can
/// change together.
struct Placed<'a> {
    state: &'a mut CallState,
    dialog: &'a mut Dialog,
    uac: &'a mut Uac,
}

fn placed(calls: &mut Timed<CallHandle, Box<Call>>, handle: CallHandle) -> Option<Placed<'_>> {
    let Call {
        state,
        dialog,
        role,
        ..
    } = &mut **calls.get_mut(&handle)?;
    match role {
        Role::Uac(uac) => Some(Placed { state, dialog, uac }),
        Role::Uas(_) => None,
    }
}
