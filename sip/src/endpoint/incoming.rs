//! Requests from the network (RFC 3261 8.2, 12.2.2, 13.3, 15, 9.2, 11).
//!
//! Order of processing for a request that passed the syntax checks:
//! ACK and CANCEL first (they match an INVITE transaction); then retransmissions of a request
//! we already answer in a transaction; then method (405), Request-URI scheme (416), Require
//! (420), Max-Forwards 0 on INVITE/OPTIONS (483); then the method's own handling, where
//! in-dialog requests for an unknown dialog get 481 and out-of-order CSeqs get 500.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use rsip::headers as h;

use super::Endpoint;
use crate::call::{Call, CallState, InviteContext, Role};
use crate::dialog::{Dialog, DialogId};
use crate::event::{CallHandle, Event};
use crate::message::{self, Method, Reply, Request, Uri};
use crate::transaction::server_invite::ServerInviteTransaction;
use crate::transaction::server_non_invite::ServerNonInviteTransaction;
use crate::transaction::TransactionKey;

impl Endpoint {
    pub(super) fn on_request(&mut self, now: Instant, source: SocketAddr, request: Request) {
        tracing::trace!(method = %request.method, "request");
        match request.method {
            Method::Ack => return self.on_ack(now, &request),
            Method::Cancel => return self.on_cancel(now, source, &request),
            _ => {}
        }
        let key = TransactionKey::for_request(&request, None);
        let retransmission = if request.method == Method::Invite {
            self.invite_servers
                .get(&key)
                .map(ServerInviteTransaction::on_invite_retransmission)
        } else {
            self.servers
                .get(&key)
                .map(ServerNonInviteTransaction::on_retransmission)
        };
        if let Some(response) = retransmission {
            self.stats.retransmissions += 1;
            self.transmits.extend(response);
            return;
        }
        if let Some(reply) = self.precheck(&request) {
            return self.respond_stateless(&request, source, reply);
        }
        match request.method {
            Method::Invite if request.to.tag().is_some() => self.on_reinvite(now, source, &request),
            Method::Invite => self.on_invite(now, source, &request),
            Method::Bye => self.on_bye(now, source, &request),
            Method::Info => self.on_info(now, source, &request),
            Method::Update => self.on_update(now, source, &request),
            Method::Notify => self.on_notify(now, source, &request),
            Method::Refer => self.on_refer_request(now, source, &request),
            _ => self.on_options(now, source, &request),
        }
    }

    /// Method, Request-URI, Require and Max-Forwards checks (8.2.1, 8.2.2).
    fn precheck(&self, request: &Request) -> Option<Reply<'static>> {
        if !matches!(
            request.method,
            Method::Invite
                | Method::Bye
                | Method::Options
                | Method::Info
                | Method::Notify
                | Method::Refer
                | Method::Update
        ) {
            return Some(
                Reply::new(405).header(rsip::Header::Allow(h::Allow::from(message::ALLOW))),
            );
        }
        if !matches!(request.uri, Uri::Sip(_)) {
            return Some(Reply::new(416));
        }
        let unsupported: Vec<&str> = request
            .headers
            .all("Require")
            .flat_map(message::option_tags)
            .filter(|tag| !self.supported().eq_ignore_ascii_case(tag))
            .collect();
        if !unsupported.is_empty() {
            let value = unsupported.join(", ");
            return Some(
                Reply::new(420).header(rsip::Header::Unsupported(h::Unsupported::from(value))),
            );
        }
        let hop_limited = matches!(request.method, Method::Invite | Method::Options);
        if hop_limited && request.max_forwards == Some(0) {
            return Some(Reply::new(483));
        }
        None
    }

    /// Answers statelessly, adding a To tag when the request has none.
    pub(super) fn respond_stateless(
        &mut self,
        request: &Request,
        source: SocketAddr,
        reply: Reply<'_>,
    ) {
        tracing::debug!(method = %request.method, "stateless response");
        let tag = self.stateless_tag(&request.echo);
        let reply = reply.tag(&tag);
        self.reply(&request.echo, source, reply);
    }

    /// The call whose dialog an in-dialog request names.
    fn dialog_call(&self, request: &Request) -> Option<CallHandle> {
        DialogId::of_request(request).and_then(|id| self.dialogs.get(&id).copied())
    }

    /// Body checks for an INVITE we would answer with SDP (8.2.3, 21.4.7, 21.4.13).
    pub(super) fn offer_problem(request: &Request) -> Option<Reply<'static>> {
        if let Some(ct) = &request.content_type {
            if !request.body.is_empty() && !ct.is_sdp() {
                return Some(
                    Reply::new(415).header(rsip::Header::Accept(h::Accept::from(message::ACCEPT))),
                );
            }
        }
        if std::str::from_utf8(&request.body).is_err() {
            return Some(Reply::new(400).reason("Bad Request - SDP body is not UTF-8"));
        }
        match request.headers.first("Accept") {
            Some(accept) if !message::accept_allows(accept, "application", "sdp") => {
                Some(Reply::new(406))
            }
            _ => None,
        }
    }

    /// A new INVITE: 100 Trying, a call, and an event (13.3.1).
    fn on_invite(&mut self, _now: Instant, source: SocketAddr, request: &Request) {
        if let Some(reply) = Self::offer_problem(request) {
            return self.respond_stateless(request, source, reply);
        }
        let agreed = match self.negotiate_session(request) {
            Ok(agreed) => agreed,
            Err(reply) => return self.respond_stateless(request, source, reply),
        };
        let handle = CallHandle::new(self.next_call);
        self.next_call += 1;
        let tag = self.new_tag();
        let local_seq = self.rng.gen_range(1..0x8000_0000);
        let dialog = Dialog::from_invite(request, &tag, source, local_seq);
        let key = TransactionKey::for_request(request, None);
        let mut tx = ServerInviteTransaction::new(handle);
        let trying = Reply::new(100).build(&request.echo, source, &self.config.user_agent);
        self.transmits.extend(tx.respond_provisional(trying));
        self.invite_servers.insert(key.clone(), tx);
        self.dialogs.insert(dialog.id.clone(), handle);
        let role = Role::Uas(InviteContext {
            key,
            echo: request.echo.clone(),
            source,
            cseq: request.cseq.seq,
        });
        self.calls
            .insert(handle, Box::new(Call::new(CallState::Early, dialog, role)));
        self.keep_session(handle, agreed, request);
        tracing::debug!(%handle, "incoming call");
        let headers = request
            .headers
            .iter()
            .filter(|h| h.name.len() > 2 && h.name.as_bytes()[..2].eq_ignore_ascii_case(b"x-"))
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        self.events.push_back(Event::IncomingCall {
            call: handle,
            call_id: request.call_id.clone(),
            from: request.echo.from.clone().unwrap_or_default(),
            to: request.echo.to.clone().unwrap_or_default(),
            request_uri: request.uri.as_str().to_string(),
            source,
            offer: request.sdp(),
            headers,
        });
    }

    /// An INVITE inside a dialog (14.2). Refusals leave the remote CSeq alone, so that a
    /// retransmission of a refused re-INVITE gets the same refusal.
    fn on_reinvite(&mut self, _now: Instant, source: SocketAddr, request: &Request) {
        let Some(handle) = self.dialog_call(request) else {
            return self.respond_stateless(request, source, Reply::new(481));
        };
        let retry_after: u32 = self.rng.gen_range(0..=10);
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        if call.state == CallState::Terminating {
            return self.respond_stateless(request, source, Reply::new(481));
        }
        if !call.dialog.in_order(request.cseq.seq) {
            return self.respond_stateless(
                request,
                source,
                Reply::new(500).reason("CSeq Out of Order"),
            );
        }
        if self.our_offer_pending(handle) {
            return self.respond_stateless(request, source, Reply::new(491));
        }
        let Some(call) = self.calls.get(&handle) else {
            return;
        };
        let busy = call.state != CallState::Confirmed
            || call.update.is_some()
            || call.reinvite.is_some()
            || call.pending_ack.is_some();
        if busy {
            // 14.2: an INVITE while another is unanswered gets 500 with Retry-After 0-10 s.
            let reply =
                Reply::new(500)
                    .reason("Previous INVITE Pending")
                    .header(rsip::Header::RetryAfter(h::RetryAfter::from(
                        retry_after.to_string(),
                    )));
            return self.respond_stateless(request, source, reply);
        }
        if let Some(reply) = Self::offer_problem(request) {
            return self.respond_stateless(request, source, reply);
        }
        let agreed = match self.negotiate_session(request) {
            Ok(agreed) => agreed,
            Err(reply) => return self.respond_stateless(request, source, reply),
        };
        self.keep_session(handle, agreed, request);
        let key = TransactionKey::for_request(request, None);
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        call.dialog.accept_remote_seq(request.cseq.seq);
        call.dialog.refresh_target(request);
        call.reinvite = Some(Box::new(InviteContext {
            key: key.clone(),
            echo: request.echo.clone(),
            source,
            cseq: request.cseq.seq,
        }));
        let mut tx = ServerInviteTransaction::new(handle);
        let trying = Reply::new(100).build(&request.echo, source, &self.config.user_agent);
        self.transmits.extend(tx.respond_provisional(trying));
        self.invite_servers.insert(key, tx);
        tracing::debug!(%handle, "re-INVITE");
        self.events.push_back(Event::ReInvite {
            call: handle,
            offer: request.sdp(),
        });
    }

    /// Answers a non-INVITE request inside a transaction, so retransmissions get the same
    /// response.
    pub(super) fn respond_in_transaction(
        &mut self,
        now: Instant,
        source: SocketAddr,
        request: &Request,
        reply: Reply<'_>,
    ) {
        let key = TransactionKey::for_request(request, None);
        let mut tx = ServerNonInviteTransaction::new();
        let transmit = reply.build(&request.echo, source, &self.config.user_agent);
        self.transmits
            .extend(tx.respond(now, transmit, &self.timers));
        self.servers.insert(key, tx);
    }

    /// Checks that an in-dialog request names a live dialog and is in order; answers 481 or
    /// 500 otherwise.
    pub(super) fn in_dialog(&mut self, source: SocketAddr, request: &Request) -> Option<CallHandle> {
        let Some(handle) = self.dialog_call(request) else {
            self.respond_stateless(request, source, Reply::new(481));
            return None;
        };
        let in_order = self
            .calls
            .get_mut(&handle)
            .is_some_and(|call| call.dialog.accept_remote_seq(request.cseq.seq));
        if !in_order {
            self.respond_stateless(request, source, Reply::new(500).reason("CSeq Out of Order"));
            return None;
        }
        Some(handle)
    }

    /// BYE (15.1.2): 200, and the call ends. Before our final response, the INVITE also gets
    /// 487; a pending re-INVITE likewise.
    fn on_bye(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let Some(handle) = self.in_dialog(source, request) else {
            return;
        };
        self.respond_in_transaction(now, source, request, Reply::new(200));
        if let Some(call) = self.calls.get_mut(&handle) {
            let tag = call.dialog.id.local_tag.clone();
            let mut unanswered = call.reinvite.take();
            if call.state == CallState::Early {
                unanswered = call.invite().cloned().map(Box::new);
            }
            call.pending_ack = None;
            if let Some(ctx) = unanswered {
                self.fail_invite(now, &ctx, &tag, Reply::new(487));
            }
        }
        let reason = match self.calls.get(&handle) {
            Some(call) if call.transferred() => crate::event::EndReason::Transferred,
            _ => crate::event::EndReason::RemoteBye,
        };
        self.end_call(handle, reason);
    }

    /// INFO (RFC 6086): 200; DTMF digits become events.
    fn on_info(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let Some(handle) = self.in_dialog(source, request) else {
            return;
        };
        self.respond_in_transaction(now, source, request, Reply::new(200));
        if let Some(digit) = dtmf_digit(request) {
            self.events.push_back(Event::Dtmf {
                call: handle,
                digit,
            });
        }
    }

    /// OPTIONS (11.2): our capabilities. Outside a dialog the answer is stateless (a
    /// retransmission gets the same bytes); inside one it goes through a transaction, since
    /// the request moved the dialog's CSeq. While new calls are refused (draining) an
    /// out-of-dialog OPTIONS gets the `503` an INVITE would, which takes us out of a
    /// dispatcher's rotation.
    fn on_options(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        if let (None, Some(retry)) = (request.to.tag(), self.unavailable) {
            let reply = Reply::new(503).header(rsip::Header::RetryAfter(h::RetryAfter::from(retry.to_string())));
            return self.respond_stateless(request, source, reply);
        }
        let reply = Reply::new(200)
            .header(rsip::Header::Allow(h::Allow::from(message::ALLOW)))
            .header(rsip::Header::Accept(h::Accept::from(message::ACCEPT)))
            .header(rsip::Header::Supported(h::Supported::from(
                self.supported(),
            )));
        if request.to.tag().is_none() {
            return self.respond_stateless(request, source, reply);
        }
        if self.in_dialog(source, request).is_some() {
            self.respond_in_transaction(now, source, request, reply);
        }
    }

    /// ACK (17.2.1, 13.3.1.4): absorbed by the INVITE transaction after a non-2xx; after a
    /// 2xx it stops the retransmissions and confirms the call. Never answered.
    fn on_ack(&mut self, now: Instant, request: &Request) {
        let key = TransactionKey::for_request(request, None);
        if self
            .invite_servers
            .get_mut(&key)
            .is_some_and(|tx| tx.on_ack(now))
        {
            return;
        }
        let Some(handle) = self.dialog_call(request) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(pending) = call.pending_ack.take_if(|p| p.cseq == request.cseq.seq) else {
            return;
        };
        if !pending.initial {
            return;
        }
        call.state = CallState::Confirmed;
        let bye = call.bye_after_ack;
        tracing::debug!(%handle, "call confirmed");
        self.events.push_back(Event::CallConfirmed {
            call: handle,
            answer: request.sdp(),
        });
        if bye {
            self.send_bye(now, handle);
        }
    }

    /// CANCEL (9.2): 200 when the INVITE transaction exists (481 otherwise); if the INVITE is
    /// still unanswered it gets 487 and the call ends.
    fn on_cancel(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let own = TransactionKey::for_request(request, None);
        if let Some(response) = self
            .servers
            .get(&own)
            .map(ServerNonInviteTransaction::on_retransmission)
        {
            self.stats.retransmissions += 1;
            self.transmits.extend(response);
            return;
        }
        let invite_key = TransactionKey::for_request(request, Some(&Method::Invite));
        let Some(invite_tx) = self.invite_servers.get(&invite_key) else {
            return self.respond_stateless(request, source, Reply::new(481));
        };
        let handle = invite_tx.call;
        let unanswered = invite_tx.state() == crate::transaction::server_invite::State::Proceeding;
        let tag = match self.calls.get(&handle) {
            Some(call) => call.dialog.id.local_tag.clone(),
            None => self.stateless_tag(&request.echo),
        };
        self.respond_in_transaction(now, source, request, Reply::new(200).tag(&tag));
        if !unanswered {
            return;
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let initial = call.invite().filter(|i| i.key == invite_key).cloned();
        if let Some(ctx) = initial.filter(|_| call.state == CallState::Early) {
            self.fail_invite(now, &ctx, &tag, Reply::new(487));
            tracing::debug!(%handle, "call cancelled");
            self.events.push_back(Event::CallCancelled { call: handle });
            self.end_call(handle, crate::event::EndReason::Cancelled);
        } else if let Some(ctx) = call.reinvite.take_if(|r| r.key == invite_key) {
            self.fail_invite(now, &ctx, &tag, Reply::new(487));
        }
    }

    /// Sends a final non-2xx response to an INVITE through its transaction (Timer G/H).
    pub(super) fn fail_invite(
        &mut self,
        now: Instant,
        ctx: &InviteContext,
        tag: &str,
        reply: Reply<'_>,
    ) {
        let transmit = reply
            .tag(tag)
            .build(&ctx.echo, ctx.source, &self.config.user_agent);
        if let Some(tx) = self.invite_servers.get_mut(&ctx.key) {
            self.transmits
                .extend(tx.respond_failure(now, transmit, &self.timers));
        }
    }
}

/// The digit of a DTMF INFO: `application/dtmf-relay` (`Signal=5`) or `application/dtmf`.
fn dtmf_digit(request: &Request) -> Option<char> {
    let ct = request.content_type.as_ref()?;
    if ct.kind != "application" {
        return None;
    }
    let body = std::str::from_utf8(&request.body).ok()?;
    let signal = match ct.subtype.as_str() {
        "dtmf-relay" => body.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "dtmf" => body.trim(),
        _ => return None,
    };
    let mut chars = signal.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d') => {
            Some(c.to_ascii_uppercase())
        }
        _ => None,
    }
}
