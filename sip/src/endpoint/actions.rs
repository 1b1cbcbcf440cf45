//! What the application does with a call: ring, answer, reject, hang up, and answer or
//! reject a re-INVITE. Every action checks the call's state first and sends nothing when it
//! fails.

use std::time::Instant;

use rsip::headers as h;

use super::Endpoint;
use crate::call::{Call, CallState, InviteContext, PendingAck};
use crate::error::SipError;
use crate::event::{CallHandle, EndReason};
use crate::message::{self, Reply};

/// Retry-After (seconds) sent with a 503 from [`Endpoint::reject`].
pub const RETRY_AFTER_SECS: u32 = 30;

/// The status [`Endpoint::hangup`] uses for a call that was never answered.
pub const HANGUP_BEFORE_ANSWER: u16 = 480;

impl Endpoint {
    pub(super) fn call_in(
        &mut self,
        call: CallHandle,
        action: &'static str,
        ok: impl Fn(&Call) -> bool,
    ) -> Result<&mut Call, SipError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or(SipError::UnknownCall(call))?;
        if ok(c) {
            Ok(c)
        } else {
            Err(SipError::WrongState {
                call,
                action,
                state: c.state.name(),
            })
        }
    }

    /// An incoming call not yet answered: its INVITE and our tag.
    fn unanswered(
        &mut self,
        call: CallHandle,
        action: &'static str,
    ) -> Result<(InviteContext, String), SipError> {
        let c = self.call_in(call, action, |c| c.state == CallState::Early)?;
        let ctx = c.invite().cloned().ok_or(SipError::WrongState {
            call,
            action,
            state: c.state.name(),
        })?;
        Ok((ctx, c.dialog.id.local_tag.clone()))
    }

    /// Sends `180 Ringing` (with our tag and Contact) for a call not yet answered. May be
    /// repeated; a retransmitted INVITE gets the latest provisional response.
    pub fn ringing(&mut self, _now: Instant, call: CallHandle) -> Result<(), SipError> {
        let (ctx, tag) = self.unanswered(call, "send 180 Ringing")?;
        let transmit = Reply::new(180)
            .tag(&tag)
            .header(rsip::Header::Contact(h::Contact::from(self.contact_of(call))))
            .build(&ctx.echo, ctx.source, &self.config.user_agent);
        if let Some(tx) = self.invite_servers.get_mut(&ctx.key) {
            self.transmits.extend(tx.respond_provisional(transmit));
        }
        Ok(())
    }

    /// Answers a call with `200 OK` carrying `sdp` and our Contact. The 200 is retransmitted
    /// at T1, 2*T1, ... capped at T2 until the ACK arrives ([`Event::CallConfirmed`]); after
    /// 64*T1 without ACK the endpoint sends BYE and reports [`EndReason::AckTimeout`].
    ///
    /// [`Event::CallConfirmed`]: crate::Event::CallConfirmed
    pub fn answer(&mut self, now: Instant, call: CallHandle, sdp: &str) -> Result<(), SipError> {
        let (ctx, tag) = self.unanswered(call, "answer")?;
        let transmit =
            self.success(call, &tag, sdp)
                .build(&ctx.echo, ctx.source, &self.config.user_agent);
        if let Some(tx) = self.invite_servers.get_mut(&ctx.key) {
            self.transmits
                .extend(tx.respond_success(now, transmit.clone(), &self.timers));
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.pending_ack = Some(Box::new(PendingAck::new(now, transmit, ctx.cseq, true, &self.timers)));
            c.state = CallState::Accepted;
        }
        self.session_answered(now, call, Some(sdp));
        tracing::debug!(%call, "answered");
        Ok(())
    }

    /// Forgets a call answered but not yet acknowledged: its 2xx is no longer retransmitted
    /// and it ends at once with [`EndReason::Abandoned`], without BYE (RFC 3261 15: no BYE
    /// before the ACK). A server flooded with INVITEs that never complete the handshake
    /// frees their resources this way. An error when the call is not waiting for its ACK.
    pub fn abandon(&mut self, _now: Instant, call: CallHandle) -> Result<(), SipError> {
        let c = self.call_in(call, "abandon", |c| c.state == CallState::Accepted)?;
        c.pending_ack = None;
        self.end_call(call, EndReason::Abandoned);
        Ok(())
    }

    /// Rejects a call not yet answered with a final error `status` (300-699) and an optional
    /// reason phrase (default: the standard one). Extra headers by status: 488 carries
    /// `Warning: 399 <host> "<reason>"`, 503 carries `Retry-After: 30`, 405 carries Allow,
    /// 415/406 carry Accept. The response is retransmitted (Timer G) until the ACK or Timer H;
    /// the call ends at once with [`EndReason::Rejected`].
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
        reason: Option<&str>,
    ) -> Result<(), SipError> {
        if !(300..=699).contains(&status) {
            return Err(SipError::InvalidStatus(status));
        }
        let (ctx, tag) = self.unanswered(call, "reject")?;
        let reply = self.failure(status, reason);
        self.fail_invite(now, &ctx, &tag, reply);
        self.end_call(call, EndReason::Rejected);
        Ok(())
    }

    /// Rejects a call not yet answered with `503 Service Unavailable`, asking
    /// the caller to retry after `retry_after_secs` (overload: RFC 3261 21.5.4,
    /// 20.33); otherwise as [`Endpoint::reject`].
    pub fn reject_busy(
        &mut self,
        now: Instant,
        call: CallHandle,
        reason: Option<&str>,
        retry_after_secs: u32,
    ) -> Result<(), SipError> {
        let (ctx, tag) = self.unanswered(call, "reject")?;
        let mut reply = Reply::new(503);
        if let Some(reason) = reason {
            reply = reply.reason(reason);
        }
        let reply = reply.header(rsip::Header::RetryAfter(h::RetryAfter::from(retry_after_secs.to_string())));
        self.fail_invite(now, &ctx, &tag, reply);
        self.end_call(call, EndReason::Rejected);
        Ok(())
    }

    /// Ends a call.
    ///
    /// * Not yet answered: rejects it with `480 Temporarily Unavailable` (the caller may try
    ///   elsewhere); ends with [`EndReason::Rejected`].
    /// * A call we placed, not yet answered: CANCEL, once a provisional response has come
    ///   (RFC 3261 9.1); ends with [`EndReason::LocalCancel`] when the INVITE gets its final
    ///   response (487), or 64*T1 after the CANCEL. A 2xx that crosses the CANCEL gets ACK and
    ///   BYE.
    /// * Answered, ACK not yet received: BYE goes out when the ACK arrives (RFC 3261 15 forbids
    ///   BYE before it), or at the ACK timeout.
    /// * Established: sends BYE (retransmitted per Timer E); a re-INVITE still unanswered gets
    ///   487. The call ends with [`EndReason::LocalBye`] when the BYE gets any final response
    ///   or times out (Timer F).
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), SipError> {
        let c = self.call_in(call, "hang up", |c| c.state != CallState::Terminating)?;
        match c.state {
            CallState::Early => self.reject(now, call, HANGUP_BEFORE_ANSWER, None),
            CallState::Calling => {
                self.cancel(now, call);
                Ok(())
            }
            CallState::Cancelling => Ok(()),
            CallState::Accepted => {
                c.bye_after_ack = true;
                Ok(())
            }
            CallState::Confirmed | CallState::Terminating => {
                c.pending_ack = None;
                let tag = c.dialog.id.local_tag.clone();
                if let Some(ctx) = c.reinvite.take() {
                    self.fail_invite(now, &ctx, &tag, Reply::new(487));
                }
                self.send_bye(now, call);
                tracing::debug!(%call, "hanging up");
                Ok(())
            }
        }
    }

    /// Answers a pending re-INVITE with `200 OK` and `sdp` (retransmitted until its ACK, like
    /// [`answer`](Self::answer)), or a pending UPDATE's offer with `200 OK` and `sdp`.
    pub fn answer_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        sdp: &str,
    ) -> Result<(), SipError> {
        if self.answer_update(now, call, Ok(sdp)) {
            return Ok(());
        }
        let c = self.call_in(call, "answer a re-INVITE", |c| c.reinvite.is_some())?;
        let Some(ctx) = c.reinvite.take() else {
            return Err(SipError::UnknownCall(call));
        };
        let tag = c.dialog.id.local_tag.clone();
        let transmit =
            self.success(call, &tag, sdp)
                .build(&ctx.echo, ctx.source, &self.config.user_agent);
        if let Some(tx) = self.invite_servers.get_mut(&ctx.key) {
            self.transmits
                .extend(tx.respond_success(now, transmit.clone(), &self.timers));
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.pending_ack = Some(Box::new(PendingAck::new(
                now,
                transmit,
                ctx.cseq,
                false,
                &self.timers,
            )));
        }
        self.session_answered(now, call, Some(sdp));
        Ok(())
    }

    /// Rejects a pending re-INVITE (or UPDATE's offer) with `status` (300-699, typically 488);
    /// the call goes on with the previous session.
    pub fn reject_reinvite(
        &mut self,
        now: Instant,
        call: CallHandle,
        status: u16,
    ) -> Result<(), SipError> {
        if !(300..=699).contains(&status) {
            return Err(SipError::InvalidStatus(status));
        }
        if self.answer_update(now, call, Err(status)) {
            return Ok(());
        }
        let c = self.call_in(call, "reject a re-INVITE", |c| c.reinvite.is_some())?;
        c.session.agreed = None;
        let Some(ctx) = c.reinvite.take() else {
            return Err(SipError::UnknownCall(call));
        };
        let tag = c.dialog.id.local_tag.clone();
        let reply = self.failure(status, None);
        self.fail_invite(now, &ctx, &tag, reply);
        Ok(())
    }

    /// A 200 OK to an INVITE with SDP, and the session timer's headers.
    fn success<'a>(&self, call: CallHandle, tag: &'a str, sdp: &'a str) -> Reply<'a> {
        let mut reply = Reply::new(200)
            .tag(tag)
            .header(rsip::Header::Contact(h::Contact::from(self.contact_of(call))))
            .header(rsip::Header::Allow(h::Allow::from(message::ALLOW)))
            .header(rsip::Header::Supported(h::Supported::from(self.supported())))
            .sdp(sdp);
        for header in self.session_reply_headers(call) {
            reply = reply.header(header);
        }
        reply
    }

    /// A final error response with the headers its status calls for.
    fn failure(&self, status: u16, reason: Option<&str>) -> Reply<'static> {
        let mut reply = Reply::new(status);
        if let Some(reason) = reason {
            reply = reply.reason(reason);
        }
        match status {
            488 => {
                let text = message::one_line(reason.unwrap_or("Incompatible media format"))
                    .replace(['"', '\\'], "");
                let warning = format!("399 {} \"{text}\"", self.config.host_port());
                reply.header(rsip::Header::Warning(h::Warning::from(warning)))
            }
            503 => reply.header(rsip::Header::RetryAfter(h::RetryAfter::from(
                RETRY_AFTER_SECS.to_string(),
            ))),
            405 => reply.header(rsip::Header::Allow(h::Allow::from(message::ALLOW))),
            406 | 415 => reply.header(rsip::Header::Accept(h::Accept::from(message::ACCEPT))),
            _ => reply,
        }
    }
}
