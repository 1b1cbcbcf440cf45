//! Session timers (RFC 4028) and UPDATE (RFC 3311) in a call's dialog: what our 2xx and
//! INVITEs say about the session interval, the refreshes we send when we are the refresher
//! (UPDATE without a body when the peer allows it, else a re-INVITE with our SDP), the BYE when
//! the peer's refresh never comes, and UPDATEs we receive. The timer's rules are
//! `session_timer`'s; here they meet the transactions.
//!
//! ```text
//! INVITE  Session-Expires < Min-SE --------------------> 422 + Min-SE
//!         otherwise                 --------------------> 2xx Session-Expires;refresher=..
//! refresher = us:   SE/2 --> UPDATE / re-INVITE --2xx--> reset (491: again in 2.1-4 s)
//! refresher = peer: SE - min(32, SE/3) without refresh -> BYE, CallEnded(SessionExpired)
//! UPDATE  no body -> 200 (reset); offer -> Event::ReInvite, answer_reinvite -> 200 + SDP;
//!         an offer while one is pending -> 491
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rsip::headers as h;

use super::Endpoint;
use crate::call::{CallState, InviteContext};
use crate::dialog::{Body, Extra};
use crate::event::{CallHandle, EndReason, Event};
use crate::message::{self, Refresher, Reply, Request, Response, SessionExpires};
use crate::session_timer::{Asked, Due, Negotiation, Refresh, RefreshMethod};
use crate::transaction::client_invite::{ClientInviteTransaction, Outcome};
use crate::transaction::client_non_invite::ClientNonInviteTransaction;
use crate::transaction::server_non_invite::ServerNonInviteTransaction;
use crate::transaction::TransactionKey;
use crate::transmit::Transmit;

/// The option tag of session timers.
const TIMER: &str = "timer";

/// Waits before another try: the dialog was busy when a refresh was due.
const BUSY_RETRY: Duration = Duration::from_secs(2);

fn other(name: &str, value: String) -> rsip::Header {
    rsip::Header::Other(name.into(), value)
}

fn lists(headers: &message::Headers, name: &str, token: &str) -> bool {
    headers
        .all(name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn session_expires(headers: &message::Headers) -> Option<SessionExpires> {
    headers
        .first("Session-Expires")
        .and_then(|v| SessionExpires::parse(v).ok())
}

/// What a request asks about the session timer.
fn asked(request: &Request) -> Asked {
    Asked {
        session_expires: session_expires(&request.headers),
        min_se: request.headers.first("Min-SE").and_then(message::min_se),
        supports_timer: lists(&request.headers, "Supported", TIMER)
            || lists(&request.headers, "Require", TIMER),
    }
}

impl Endpoint {
    /// The option tags we support (Supported, and what Require may ask of us).
    pub(super) fn supported(&self) -> &'static str {
        if self.config.session_expires.is_some() {
            TIMER
        } else {
            ""
        }
    }

    /// Our answer to an INVITE's (or UPDATE's) session-timer headers, or the 422 refusing it.
    pub(super) fn negotiate_session(
        &self,
        request: &Request,
    ) -> Result<Negotiation, Reply<'static>> {
        match self.config.session_policy().negotiate(&asked(request)) {
            Negotiation::TooBrief { min_se } => Err(Reply::new(422)
                .header(other("Min-SE", min_se.to_string()))
                .header(rsip::Header::Supported(h::Supported::from(TIMER)))),
            agreed => Ok(agreed),
        }
    }

    /// Keeps what the peer's request said for our coming 2xx.
    pub(super) fn keep_session(
        &mut self,
        handle: CallHandle,
        agreed: Negotiation,
        request: &Request,
    ) {
        if let Some(c) = self.calls.get_mut(&handle) {
            c.session.agreed = Some(agreed);
            if request.headers.count("Allow") > 0 {
                c.session.peer_allows_update = lists(&request.headers, "Allow", "UPDATE");
            }
        }
    }

    /// The session-timer headers of our 2xx to the peer's pending request.
    pub(super) fn session_reply_headers(&self, handle: CallHandle) -> Vec<rsip::Header> {
        let Some(c) = self.calls.get(&handle) else {
            return Vec::new();
        };
        let agreed = match (c.session.agreed, &c.session.timer) {
            (
                Some(Negotiation::Agreed {
                    session_expires,
                    require,
                }),
                _,
            ) => (session_expires, require),
            // A refresh that did not say: the session goes on as agreed.
            (_, Some(timer)) => {
                let refresher = if timer.we_refresh {
                    Refresher::Uas
                } else {
                    Refresher::Uac
                };
                let se = SessionExpires {
                    interval: timer.interval,
                    refresher: Some(refresher),
                };
                (se, false)
            }
            _ => return Vec::new(),
        };
        let mut headers = vec![other("Session-Expires", agreed.0.to_string())];
        if agreed.1 {
            headers.push(other("Require", TIMER.into()));
        }
        headers
    }

    /// Our 2xx to the peer's INVITE, re-INVITE or UPDATE went out with `sdp`: the session
    /// timer starts or is reset.
    pub(super) fn session_answered(&mut self, now: Instant, handle: CallHandle, sdp: Option<&str>) {
        if let Some(c) = self.calls.get_mut(&handle) {
            if let Some(sdp) = sdp {
                c.session.local_sdp = Some(sdp.to_string());
            }
            c.session.answered(now);
        }
    }

    /// The session headers of an INVITE we place: `Supported: timer`, our interval, Min-SE.
    pub(super) fn request_session_headers(&self, handle: CallHandle) -> Vec<rsip::Header> {
        let policy = self.config.session_policy();
        let asked = self.calls.get(&handle).and_then(|c| c.session.min_se_asked);
        let Some(se) = policy.request(asked) else {
            return Vec::new();
        };
        let min_se = policy.min_se.max(asked.unwrap_or(0)).min(se.interval);
        vec![
            rsip::Header::Supported(h::Supported::from(TIMER)),
            other("Session-Expires", se.to_string()),
            other("Min-SE", min_se.to_string()),
        ]
    }

    /// A 422 to a call we place: once, the INVITE goes again with the Min-SE it asks for.
    pub(super) fn retry_with_min_se(
        &mut self,
        now: Instant,
        handle: CallHandle,
        response: &Response,
    ) -> bool {
        let min_se = response.headers.first("Min-SE").and_then(message::min_se);
        let Some(c) = self.calls.get_mut(&handle) else {
            return false;
        };
        let (Some(min_se), None, CallState::Calling) = (min_se, c.session.min_se_asked, c.state)
        else {
            return false;
        };
        if self.config.session_expires.is_none() {
            return false;
        }
        c.session.min_se_asked = Some(min_se);
        tracing::debug!(%handle, min_se, "422: INVITE again with the Min-SE asked");
        self.send_invite(now, handle);
        true
    }

    /// The 2xx to a call we placed: its Session-Expires (and refresher) start the timer.
    pub(super) fn session_established(
        &mut self,
        now: Instant,
        handle: CallHandle,
        response: &Response,
        sdp: &str,
    ) {
        let Some(c) = self.calls.get_mut(&handle) else {
            return;
        };
        c.session.local_sdp = Some(sdp.to_string());
        c.session.peer_allows_update = lists(&response.headers, "Allow", "UPDATE");
        if self.config.session_expires.is_some() {
            if let Some(se) = session_expires(&response.headers) {
                c.session.confirmed(now, Some(se));
            }
        }
    }

    /// A call's session timer fired: refresh, or give up on the peer's refresh.
    pub(super) fn on_session_timer(&mut self, now: Instant, handle: CallHandle) {
        let Some(c) = self.calls.get_mut(&handle) else {
            return;
        };
        if c.state == CallState::Terminating {
            return;
        }
        match c.session.timer.as_mut().and_then(|t| t.on_timeout(now)) {
            Some(Due::Refresh) => self.send_refresh(now, handle),
            Some(Due::Expire) => self.session_expired(now, handle),
            None => {}
        }
    }

    fn session_expired(&mut self, now: Instant, handle: CallHandle) {
        tracing::debug!(%handle, "session expired: BYE");
        if let Some(c) = self.calls.get_mut(&handle) {
            c.pending_ack = None;
        }
        self.send_bye(now, handle);
        self.end_call(handle, EndReason::SessionExpired);
    }

    /// Sends our refresh (RFC 4028 7.4): UPDATE without a body if the peer allows it, else a
    /// re-INVITE with our current SDP. A busy dialog tries again shortly.
    fn send_refresh(&mut self, now: Instant, handle: CallHandle) {
        let branch = self.new_branch();
        let min_se = self.config.session_policy().min_se;
        let contact = self.contact_of(handle);
        let Some(c) = self.calls.get_mut(&handle) else {
            return;
        };
        let busy = c.state != CallState::Confirmed
            || c.reinvite.is_some()
            || c.update.is_some()
            || c.pending_ack.is_some();
        let Some(interval) = c.session.timer.as_ref().map(|t| t.interval) else {
            return;
        };
        if busy {
            if let Some(timer) = c.session.timer.as_mut() {
                timer.retry(now + BUSY_RETRY);
            }
            return;
        }
        let method = match &c.session.local_sdp {
            Some(_) if !c.session.peer_allows_update => RefreshMethod::Invite,
            _ => RefreshMethod::Update,
        };
        let se = SessionExpires {
            interval,
            refresher: Some(Refresher::Uac),
        };
        let headers = [
            rsip::Header::Contact(h::Contact::from(contact)),
            rsip::Header::Supported(h::Supported::from(TIMER)),
            other("Session-Expires", se.to_string()),
            other("Min-SE", min_se.min(interval).to_string()),
        ];
        let sdp = c.session.local_sdp.clone().unwrap_or_default();
        let (name, body) = match method {
            RefreshMethod::Invite => ("INVITE", Some(Body::sdp(&sdp))),
            RefreshMethod::Update => ("UPDATE", None),
        };
        let extra = Extra {
            headers: &headers,
            body,
            ..Extra::default()
        };
        let (transmit, cseq) = c.dialog.request(name, &branch, extra, &self.config);
        if let Some(timer) = c.session.timer.as_mut() {
            timer.refresh = Some(Refresh {
                branch: branch.clone(),
                method,
                cseq,
            });
        }
        match method {
            RefreshMethod::Invite => {
                let tx = ClientInviteTransaction::new(now, handle, transmit.clone(), &self.timers);
                self.invite_clients.insert(branch, tx);
            }
            RefreshMethod::Update => {
                let tx = ClientNonInviteTransaction::new(
                    now,
                    handle,
                    "UPDATE",
                    transmit.clone(),
                    &self.timers,
                );
                self.clients.insert(branch, tx);
            }
        }
        tracing::debug!(%handle, method = name, "session refresh");
        self.transmits.push_back(transmit);
    }

    /// A response to our refresh re-INVITE (true when it was one): ACK, then the outcome.
    pub(super) fn on_refresh_invite_response(
        &mut self,
        now: Instant,
        handle: CallHandle,
        response: &Response,
    ) -> bool {
        let branch = response.branch.as_deref().unwrap_or_default();
        let Some(c) = self.calls.get(&handle) else {
            return false;
        };
        if let Some((acked, ack)) = &c.session.refresh_ack {
            if acked == branch {
                if (200..300).contains(&response.status) {
                    self.transmits.push_back(ack.clone());
                }
                return true;
            }
        }
        let refresh = c.session.timer.as_ref().and_then(|t| t.refresh.as_ref());
        let Some(cseq) = refresh
            .filter(|r| r.branch == branch && r.method == RefreshMethod::Invite)
            .map(|r| r.cseq)
        else {
            return false;
        };
        let error_ack = (300..=699).contains(&response.status).then(|| {
            let extra = Extra {
                to: Some(&response.to),
                ..Extra::default()
            };
            c.dialog.build("ACK", cseq, branch, extra, &self.config)
        });
        let ack_branch = self.new_branch();
        let Some(tx) = self.invite_clients.get_mut(branch) else {
            return true;
        };
        match tx.on_response(
            now,
            response.status,
            error_ack,
            &self.timers,
            &mut self.transmits,
        ) {
            Some(Outcome::Success) => {
                if let Some(c) = self.calls.get_mut(&handle) {
                    let ack: Transmit =
                        c.dialog
                            .build("ACK", cseq, &ack_branch, Extra::default(), &self.config);
                    c.session.refresh_ack = Some((branch.to_string(), ack.clone()));
                    self.transmits.push_back(ack);
                }
                self.on_refresh_result(now, handle, Some(response.status), Some(response));
            }
            Some(Outcome::Failure(status)) => {
                self.on_refresh_result(now, handle, Some(status), Some(response))
            }
            _ => {}
        }
        true
    }

    /// Timer B of a refresh re-INVITE (true when it was one).
    pub(super) fn refresh_timed_out(
        &mut self,
        now: Instant,
        handle: CallHandle,
        branch: &str,
    ) -> bool {
        let ours = self
            .calls
            .get(&handle)
            .and_then(|c| c.session.timer.as_ref())
            .and_then(|t| t.refresh.as_ref())
            .is_some_and(|r| r.branch == branch);
        if ours {
            self.on_refresh_result(now, handle, None, None);
        }
        ours
    }

    /// Our refresh is over (`None`: no response). A 2xx resets the timer as it says; 491 tries
    /// again in 2.1-4 s (RFC 3261 14.1); an UPDATE refused with 405/501 falls back to a
    /// re-INVITE; a 422 raises the interval; any other failure ends the call (RFC 4028 10).
    pub(super) fn on_refresh_result(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: Option<u16>,
        response: Option<&Response>,
    ) {
        let glare = Duration::from_millis(self.rng.gen_range(2100..=4000));
        let min_se = response
            .and_then(|r| r.headers.first("Min-SE"))
            .and_then(message::min_se);
        let Some(c) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some(timer) = c.session.timer.as_mut() else {
            return;
        };
        let Some(refresh) = timer.refresh.take() else {
            return;
        };
        match status {
            Some(200..=299) => {
                let se = response.and_then(|r| session_expires(&r.headers));
                c.session.confirmed(now, se);
                tracing::debug!(%handle, "session refreshed");
            }
            Some(491) => timer.retry(now + glare),
            Some(405 | 501) if refresh.method == RefreshMethod::Update => {
                c.session.peer_allows_update = false;
                timer.retry(now);
            }
            Some(422) if min_se.is_some_and(|m| m > timer.interval) => {
                timer.interval = min_se.unwrap_or(timer.interval);
                timer.retry(now);
            }
            _ => {
                tracing::debug!(%handle, ?status, "session refresh failed");
                self.session_expired(now, handle);
            }
        }
    }

    /// UPDATE (RFC 3311) in a dialog: a refresh without a body gets 200 at once; an offer
    /// goes to the application as [`Event::ReInvite`], or gets 491 while another offer is
    /// pending.
    pub(super) fn on_update(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let Some(handle) = self.in_dialog(source, request) else {
            return;
        };
        let agreed = match self.negotiate_session(request) {
            Ok(agreed) => agreed,
            Err(reply) => return self.respond_in_transaction(now, source, request, reply),
        };
        let offer = request.sdp();
        if offer.is_some() {
            if let Some(reply) = Self::offer_problem(request) {
                return self.respond_in_transaction(now, source, request, reply);
            }
        }
        let Some(c) = self.calls.get_mut(&handle) else {
            return;
        };
        c.dialog.refresh_target(request);
        let our_offer = c
            .session
            .timer
            .as_ref()
            .and_then(|t| t.refresh.as_ref())
            .is_some_and(|r| r.method == RefreshMethod::Invite);
        let pending = c.state != CallState::Confirmed
            || c.reinvite.is_some()
            || c.update.is_some()
            || c.pending_ack.is_some()
            || our_offer;
        if offer.is_some() && pending {
            return self.respond_in_transaction(now, source, request, Reply::new(491));
        }
        self.keep_session(handle, agreed, request);
        let Some(offer) = offer else {
            let reply = self.update_ok(handle, None);
            self.respond_in_transaction(now, source, request, reply);
            self.session_answered(now, handle, None);
            return;
        };
        let key = TransactionKey::for_request(request, None);
        self.servers
            .insert(key.clone(), ServerNonInviteTransaction::new());
        if let Some(c) = self.calls.get_mut(&handle) {
            c.update = Some(Box::new(InviteContext {
                key,
                echo: request.echo.clone(),
                source,
                cseq: request.cseq.seq,
            }));
        }
        tracing::debug!(%handle, "UPDATE with an offer");
        self.events.push_back(Event::ReInvite {
            call: handle,
            offer: Some(offer),
        });
    }

    /// The 200 to an UPDATE: our Contact, the session headers, our answer if any.
    fn update_ok<'a>(&self, handle: CallHandle, sdp: Option<&'a str>) -> Reply<'a> {
        let mut reply = Reply::new(200)
            .header(rsip::Header::Contact(h::Contact::from(self.contact_of(handle))))
            .header(rsip::Header::Supported(h::Supported::from(
                self.supported(),
            )));
        for header in self.session_reply_headers(handle) {
            reply = reply.header(header);
        }
        match sdp {
            Some(sdp) => reply.sdp(sdp),
            None => reply,
        }
    }

    /// Answers a pending UPDATE's offer (from [`answer_reinvite`](Self::answer_reinvite) or
    /// [`reject_reinvite`](Self::reject_reinvite)): 200 with `sdp`, or the error `status`.
    /// False when no UPDATE is pending.
    pub(super) fn answer_update(
        &mut self,
        now: Instant,
        handle: CallHandle,
        answer: Result<&str, u16>,
    ) -> bool {
        let Some(ctx) = self.calls.get_mut(&handle).and_then(|c| c.update.take()) else {
            return false;
        };
        let reply = match answer {
            Ok(sdp) => self.update_ok(handle, Some(sdp)),
            Err(status) => Reply::new(status),
        };
        let transmit = reply.build(&ctx.echo, ctx.source, &self.config.user_agent);
        if let Some(tx) = self.servers.get_mut(&ctx.key) {
            self.transmits
                .extend(tx.respond(now, transmit, &self.timers));
        }
        match answer {
            Ok(sdp) => self.session_answered(now, handle, Some(sdp)),
            Err(_) => {
                if let Some(c) = self.calls.get_mut(&handle) {
                    c.session.agreed = None;
                }
            }
        }
        true
    }

    /// A re-INVITE while our refresh re-INVITE is out: glare, 491 (RFC 3261 14.2).
    pub(super) fn our_offer_pending(&self, handle: CallHandle) -> bool {
        self.calls
            .get(&handle)
            .and_then(|c| c.session.timer.as_ref())
            .and_then(|t| t.refresh.as_ref())
            .is_some_and(|r| r.method == RefreshMethod::Invite)
    }
}
