//! The endpoint: one SIP address's worth (UDP and TCP). Messages and time go in
//! ([`Endpoint::handle_datagram`], [`Endpoint::handle_message`], [`Endpoint::handle_timeout`]); messages, events and the
//! next deadline come out ([`Endpoint::poll_transmit`], [`Endpoint::poll_event`],
//! [`Endpoint::poll_timeout`]).

mod actions;

pub use actions::{HANGUP_BEFORE_ANSWER, RETRY_AFTER_SECS};
mod deadlines;
mod incoming;
mod info;
mod outgoing;
mod register;
mod session;
mod transfer;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::call::Call;
use crate::config::EndpointConfig;
use crate::dialog::{DialogId, Extra};
use crate::event::{CallHandle, EndReason, Event};
use crate::message::{self, Echo, FrameError, Reply, Request, Response, StartLine};
use crate::registration::{Registration, RegistrationHandle};
use crate::transaction::client_invite::ClientInviteTransaction;
use crate::transaction::client_non_invite::{ClientNonInviteTransaction, Outcome};
use crate::transaction::server_invite::ServerInviteTransaction;
use crate::transaction::server_non_invite::ServerNonInviteTransaction;
use crate::transaction::{soonest, Timers, TransactionKey};
use crate::transmit::{Transmit, Transport};
use deadlines::{DeadlineIndex, Timed};

/// Counters of what the endpoint received and did not process normally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed to [`Endpoint::handle_datagram`] or [`Endpoint::handle_message`].
    pub datagrams: u64,
    /// Datagrams dropped without any answer: `oversized + malformed + unexpected_responses`.
    pub dropped: u64,
    /// Datagrams larger than [`EndpointConfig::max_message`].
    pub oversized: u64,
    /// Datagrams that are not SIP, or requests too broken to answer (no Via).
    pub malformed: u64,
    /// Responses that match no transaction of ours.
    pub unexpected_responses: u64,
    /// Requests answered with an error because they broke the syntax rules (400, 505).
    pub bad_requests: u64,
    /// Retransmitted requests absorbed by an existing transaction.
    pub retransmissions: u64,
}

/// A sans-IO SIP user agent for one address (UDP and TCP): it answers calls and places them.
///
/// Drive it with one loop: feed every received datagram and every expired deadline, then
/// drain [`poll_transmit`](Self::poll_transmit) and [`poll_event`](Self::poll_event), and
/// sleep until [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    timers: Timers,
    rng: StdRng,
    /// Mixed into stateless To tags so they cannot be predicted.
    secret: u64,
    next_call: u64,
    // The maps of entities with timers are `Timed`: each keeps its entries' deadlines in
    // order, so a wake-up costs O(log n) and not a scan of every call (`deadlines`).
    /// Boxed: a map node holds eleven values inline, mostly empty slots.
    calls: Timed<CallHandle, Box<Call>>,
    dialogs: BTreeMap<DialogId, CallHandle>,
    invite_servers: Timed<TransactionKey, ServerInviteTransaction>,
    servers: Timed<TransactionKey, ServerNonInviteTransaction>,
    /// INVITE client transactions (our calls) by branch.
    invite_clients: Timed<String, ClientInviteTransaction>,
    /// Non-INVITE client transactions (BYE, CANCEL, REFER, INFO) by branch.
    clients: Timed<String, ClientNonInviteTransaction>,
    /// Registrations with registrars (REGISTER, RFC 3261 10.2).
    registrations: Timed<RegistrationHandle, Registration>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Taking no new calls (draining): OPTIONS outside a dialog gets `503` with this
    /// Retry-After (seconds), as an INVITE would (RFC 3261 11.2), so a dispatcher's health
    /// probe sees it.
    unavailable: Option<u32>,
}

impl Endpoint {
    /// An endpoint with tags and branches drawn from the operating system's randomness.
    pub fn new(config: EndpointConfig) -> Self {
        Self::with_rng(config, StdRng::from_entropy())
    }

    /// An endpoint whose tags and branches come from a seeded generator: the same inputs give
    /// the same outputs (tests, simulations). Do not use in production: tags become guessable.
    pub fn with_seed(config: EndpointConfig, seed: u64) -> Self {
        Self::with_rng(config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(config: EndpointConfig, mut rng: StdRng) -> Self {
        if config.advertised.is_none() && config.local_addr.ip().is_unspecified() {
            tracing::warn!("endpoint bound to a wildcard address without an advertised address; Via and Contact will be unroutable");
        }
        let timers = Timers {
            t1: config.t1,
            t2: config.t2,
            ack_timeout: config.ack_timeout,
        };
        Endpoint {
            config,
            timers,
            secret: rng.gen(),
            rng,
            next_call: 1,
            calls: Timed::default(),
            dialogs: BTreeMap::new(),
            invite_servers: Timed::default(),
            servers: Timed::default(),
            invite_clients: Timed::default(),
            clients: Timed::default(),
            registrations: Timed::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            unavailable: None,
        }
    }

    /// Whether new calls are taken: `Some(retry_after_secs)` while the application refuses
    /// them (draining), so out-of-dialog OPTIONS answer `503` like the INVITEs do.
    pub fn set_unavailable(&mut self, retry_after_secs: Option<u32>) {
        self.unavailable = retry_after_secs;
    }

    /// Processes one received UDP datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.handle_message(now, from, Transport::Udp, data);
    }

    /// Processes one received message: a UDP datagram, or over TCP one message cut from the
    /// connection's stream by a [`StreamFramer`](crate::StreamFramer). `from` is the peer's
    /// address (over TCP, the connection's); responses to a request go back on `transport`
    /// to `from` (RFC 3261 18.2.2), and a dialog it sets up sends its requests on it.
    pub fn handle_message(&mut self, now: Instant, from: SocketAddr, transport: Transport, data: &[u8]) {
        self.stats.datagrams += 1;
        if data.len() > self.config.max_message {
            self.stats.oversized += 1;
            self.stats.dropped += 1;
            tracing::debug!(len = data.len(), "dropped oversized datagram");
            return;
        }
        let frame = match message::frame(data) {
            Ok(frame) => frame,
            Err(FrameError::KeepAlive) => return,
            Err(FrameError::Garbage(why)) => {
                self.stats.malformed += 1;
                self.stats.dropped += 1;
                tracing::debug!(why, "dropped datagram that is not SIP");
                return;
            }
        };
        match frame.start {
            StartLine::Response { .. } => {
                if let Some(response) = Response::from_frame(frame) {
                    self.on_response(now, response);
                }
            }
            StartLine::Request { .. } => {
                let is_ack = matches!(
                    &frame.start,
                    StartLine::Request {
                        method: message::Method::Ack,
                        ..
                    }
                );
                match Request::from_frame(frame) {
                    Ok(mut request) => {
                        request.echo.transport = transport;
                        self.on_request(now, from, request)
                    }
                    Err(mut invalid) => {
                        invalid.echo.transport = transport;
                        self.on_bad_request(from, is_ack, invalid.rejection, &invalid.echo)
                    }
                }
            }
        }
    }

    /// A message on a stream whose end cannot be found (`head`, its header section, from
    /// [`StreamFramer::take_rejected`](crate::StreamFramer::take_rejected)): a request gets
    /// `400` with the framing error as its reason, queued for the connection it came on
    /// (RFC 3261 18.3), which is then closed; a response or an ACK is dropped.
    pub fn reject_unframed(&mut self, from: SocketAddr, transport: Transport, head: &[u8], error: crate::StreamError) {
        self.stats.datagrams += 1;
        let Ok(frame) = message::frame(head) else {
            self.stats.malformed += 1;
            self.stats.dropped += 1;
            return;
        };
        let is_ack = match &frame.start {
            StartLine::Request { method, .. } => *method == message::Method::Ack,
            StartLine::Response { .. } => {
                self.stats.dropped += 1;
                return;
            }
        };
        let mut echo = match Request::from_frame(frame) {
            Ok(request) => request.echo,
            Err(invalid) => invalid.echo,
        };
        echo.transport = transport;
        let rejection = message::Rejection { status: 400, reason: error.to_string().into() };
        self.on_bad_request(from, is_ack, rejection, &echo);
    }

    /// Processes every timer that is due at `now`.
    ///
    /// Each kind's due entities come from its deadline index (`Timed::due`, which first takes
    /// in what the kinds before changed), not from asking every call and transaction.
    pub fn handle_timeout(&mut self, now: Instant) {
        for key in self.invite_servers.due(now) {
            if let Some(tx) = self.invite_servers.get_mut(&key) {
                if tx.on_timeout(now, &self.timers, &mut self.transmits) {
                    tracing::debug!(call = %tx.call, "no ACK for a final error response (Timer H)");
                }
                if tx.is_terminated() {
                    self.invite_servers.remove(&key);
                }
            }
        }
        for key in self.servers.due(now) {
            if let Some(tx) = self.servers.get_mut(&key) {
                tx.on_timeout(now);
                if tx.is_terminated() {
                    self.servers.remove(&key);
                }
            }
        }
        self.on_invite_timers(now);
        self.on_registration_timers(now);
        for branch in self.clients.due(now) {
            let Some(tx) = self.clients.get_mut(&branch) else {
                continue;
            };
            let outcome = tx.on_timeout(now, &self.timers, &mut self.transmits);
            let (call, method) = (tx.call, tx.method);
            if tx.is_terminated() {
                self.clients.remove(&branch);
            }
            if let Some(outcome) = outcome {
                self.on_client_outcome(now, call, method, &branch, outcome, "");
            }
        }
        for handle in self.calls.due(now) {
            if self.on_give_up(now, handle) {
                continue;
            }
            self.on_transfer_timeout(now, handle);
            self.send_next_info(now, handle);
            self.on_session_timer(now, handle);
            let Some(call) = self.calls.get_mut(&handle) else {
                continue;
            };
            if call.on_timeout(now, &self.timers, &mut self.transmits) {
                // 13.3.1.4: no ACK within 64*T1 (or the configured ACK timeout) -> end the
                // dialog with BYE.
                tracing::debug!(%handle, "no ACK for 2xx; sending BYE");
                call.pending_ack = None;
                self.send_bye(now, handle);
                self.end_call(handle, EndReason::AckTimeout);
            }
        }
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) has work:
    /// O(log n) in the calls and transactions, from their deadline index. `&mut` because
    /// it first brings the index up to date with the entities changed since the last call.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        #[cfg(feature = "check-deadlines")]
        self.check_deadlines();
        self.indexes()
            .into_iter()
            .map(DeadlineIndex::earliest)
            .fold(None, soonest)
    }

    /// The deadline index of every kind of entity with timers.
    fn indexes(&mut self) -> [&mut dyn DeadlineIndex; 6] {
        [
            &mut self.invite_servers,
            &mut self.servers,
            &mut self.invite_clients,
            &mut self.clients,
            &mut self.calls,
            &mut self.registrations,
        ]
    }

    /// Panics unless every deadline index equals its entities' deadlines, and the earliest
    /// indexed deadline the one found by asking every entity (what `poll_timeout` did before
    /// the index). Run on each `poll_timeout` in this crate's tests (they turn the
    /// `check-deadlines` feature on), so a change that slipped past an index fails them.
    #[cfg(any(test, feature = "check-deadlines"))]
    fn check_deadlines(&mut self) {
        let mut indexed = None;
        let mut scanned = None;
        for index in self.indexes() {
            index.check();
            indexed = soonest(indexed, index.earliest());
            scanned = soonest(scanned, index.scan());
        }
        assert_eq!(indexed, scanned, "deadline index and full scan disagree");
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Calls that have not ended (ringing, answered, established or hanging up).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The Call-ID of a call that has not ended.
    pub fn call_id(&self, call: CallHandle) -> Option<&str> {
        self.calls.get(&call).map(|c| c.dialog.id.call_id.as_str())
    }

    /// Counters since the endpoint was created.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The configuration in use.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// A request that broke the syntax rules: answered statelessly when there is a Via to
    /// answer to (never for ACK), dropped otherwise.
    fn on_bad_request(
        &mut self,
        source: SocketAddr,
        is_ack: bool,
        rejection: message::Rejection,
        echo: &Echo,
    ) {
        if is_ack || echo.vias.is_empty() {
            self.stats.malformed += 1;
            self.stats.dropped += 1;
            tracing::debug!(reason = %rejection.reason, "dropped malformed request");
            return;
        }
        self.stats.bad_requests += 1;
        tracing::debug!(status = rejection.status, reason = %rejection.reason, "rejected malformed request");
        let tag = self.stateless_tag(echo);
        let mut reply = Reply::new(rejection.status).tag(&tag);
        if rejection.status == 400 {
            reply = reply.reason(&format!("Bad Request - {}", rejection.reason));
        }
        let transmit = reply.build(echo, source, &self.config.user_agent);
        self.transmits.push_back(transmit);
    }

    /// A response: only the ones matching our client transactions are processed (17.1.3).
    fn on_response(&mut self, now: Instant, response: Response) {
        let method = response.cseq.as_ref().map(|c| &c.method);
        if method == Some(&message::Method::Invite) {
            return self.on_invite_response(now, response);
        }
        if method == Some(&message::Method::Register) && self.on_register_response(now, &response) {
            return;
        }
        let tx = response
            .branch
            .as_ref()
            .and_then(|b| self.clients.get_mut(b))
            .filter(|tx| method.is_some_and(|m| m.as_str() == tx.method));
        let Some(tx) = tx else {
            return self.unexpected_response(&response);
        };
        let (call, method) = (tx.call, tx.method);
        if let Some(outcome) = tx.on_response(now, response.status) {
            if method == "UPDATE" {
                let status = matches!(outcome, Outcome::Final(_)).then_some(response.status);
                return self.on_refresh_result(now, call, status, Some(&response));
            }
            let branch = response.branch.clone().unwrap_or_default();
            self.on_client_outcome(now, call, method, &branch, outcome, &response.reason);
        }
    }

    /// A non-INVITE client transaction of `call` finished: to its method's owner.
    fn on_client_outcome(
        &mut self,
        now: Instant,
        call: CallHandle,
        method: &str,
        branch: &str,
        outcome: Outcome,
        reason: &str,
    ) {
        let response = match outcome {
            Outcome::Final(status) => Some((status, reason)),
            Outcome::Timeout => None,
        };
        let done = Completed {
            call,
            branch,
            response,
        };
        match method {
            "REFER" => self.on_refer_outcome(now, done),
            "INFO" => self.on_info_outcome(now, done),
            "UPDATE" => self.on_refresh_result(now, call, done.response.map(|r| r.0), None),
            _ => self.on_bye_outcome(call, outcome),
        }
    }

    fn unexpected_response(&mut self, response: &Response) {
        self.stats.unexpected_responses += 1;
        self.stats.dropped += 1;
        tracing::trace!(
            status = response.status,
            "dropped response matching no transaction"
        );
    }

    /// Our BYE (or CANCEL) finished: the call ends now if it was waiting for that.
    fn on_bye_outcome(&mut self, call: CallHandle, outcome: Outcome) {
        tracing::debug!(%call, ?outcome, "BYE transaction finished");
        let Some(c) = self
            .calls
            .get(&call)
            .filter(|c| c.state == crate::call::CallState::Terminating)
        else {
            return;
        };
        let reason = if c.transferred() {
            EndReason::Transferred
        } else {
            EndReason::LocalBye
        };
        self.end_call(call, reason);
    }

    /// Sends BYE in the call's dialog through a new client transaction.
    fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        let branch = self.new_branch();
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let (transmit, _) = call
            .dialog
            .request("BYE", &branch, Extra::default(), &self.config);
        call.state = crate::call::CallState::Terminating;
        let tx =
            ClientNonInviteTransaction::new(now, handle, "BYE", transmit.clone(), &self.timers);
        self.clients.insert(branch, tx);
        self.transmits.push_back(transmit);
    }

    /// Forgets a call and tells the application.
    fn end_call(&mut self, handle: CallHandle, reason: EndReason) {
        if let Some(call) = self.calls.remove(&handle) {
            self.dialogs.remove(&call.dialog.id);
            tracing::debug!(%handle, ?reason, "call ended");
            self.events.push_back(Event::CallEnded {
                call: handle,
                reason,
            });
        }
    }

    /// Our Contact in `call`'s dialog (`;transport=tcp` when it runs over TCP).
    fn contact_of(&self, call: CallHandle) -> String {
        self.calls
            .get(&call)
            .map_or_else(|| self.config.contact(), |c| c.dialog.contact(&self.config))
    }

    /// A fresh To tag.
    fn new_tag(&mut self) -> String {
        format!("{:016x}", self.rng.gen::<u64>())
    }

    /// A fresh RFC 3261 branch.
    fn new_branch(&mut self) -> String {
        format!("{}{:016x}", message::MAGIC_COOKIE, self.rng.gen::<u64>())
    }

    /// The To tag of a stateless response: the same for every retransmission of a request.
    fn stateless_tag(&self, echo: &Echo) -> String {
        let mut hasher = DefaultHasher::new();
        self.secret.hash(&mut hasher);
        echo.call_id.hash(&mut hasher);
        echo.from.hash(&mut hasher);
        echo.cseq.hash(&mut hasher);
        echo.vias.first().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Sends a stateless response.
    fn reply(&mut self, echo: &Echo, source: SocketAddr, reply: Reply<'_>) {
        let transmit = reply.build(echo, source, &self.config.user_agent);
        self.transmits.push_back(transmit);
    }
}

/// A REFER or INFO client transaction that finished.
struct Completed<'a> {
    call: CallHandle,
    branch: &'a str,
    /// The final response's status and reason phrase; `None` when Timer F fired.
    response: Option<(u16, &'a str)>,
}

