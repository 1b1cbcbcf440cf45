//! Registration with a registrar (RFC 3261 10.2): what the application asks for
//! ([`RegisterRequest`]), where one registration stands ([`RegistrationStatus`]), and the
//! rules it follows ([`Registration`]; the endpoint sends its REGISTERs, `endpoint/register.rs`).
//!
//! ```text
//! register() --REGISTER--> 2xx       Registered; refreshed at half the granted expiry
//!                          401/407   REGISTER again with credentials (once per realm and round;
//!                                    the same realm challenged again: Failed, no loop)
//!                          423       REGISTER again with the Min-Expires asked (once)
//!                          3xx-6xx   Failed; retried after the backoff
//!                          no answer the next destination at once (RFC 3263 failover); after
//!                                    the last one: Failed (408); retried after the backoff
//! unregister() --REGISTER Expires: 0--> any final response or none: Unregistered
//! ```
//!
//! The backoff after the n-th failure in a row is `retry * 2^(n-1)`, at most `retry_max`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::headers as h;

use crate::config::EndpointConfig;
use crate::dialog::{Dialog, Extra};
use crate::digest::{self, Challenge};
use crate::error::SipError;
use crate::message::{NameAddr, Response, Uri};
use crate::transaction::client_non_invite::ClientNonInviteTransaction;
use crate::transmit::Transmit;
use crate::uac::{Authorization, Credentials};

/// A registration to keep up with [`Endpoint::register`](crate::Endpoint::register).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegisterRequest {
    /// The Request-URI: the registrar's domain, e.g. `sip:trunk.example.com`.
    pub registrar: String,
    /// The address of record, in To and From: e.g. `sip:alice@trunk.example.com`.
    pub aor: String,
    /// Where the REGISTERs go (the registrar, or an outbound proxy), in order of preference:
    /// an attempt without an answer moves on to the next (RFC 3263 4.3). At least one.
    pub destinations: Vec<SocketAddr>,
    /// The Contact URI to bind; `sip:USER@OUR_HOST:PORT` (the AOR's user) when `None`.
    pub contact: Option<String>,
    /// For `401`/`407` challenges.
    pub credentials: Option<Credentials>,
    /// The expiry asked for (whole seconds; the registrar may grant less).
    pub expires: Duration,
    /// How long one REGISTER waits for a final response before the next destination is
    /// tried (at most 64*T1, the transaction's own Timer F).
    pub attempt_timeout: Duration,
    /// The wait after the first failure in a row; doubled after each further one.
    pub retry: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
    /// The transport the REGISTERs go on (UDP by default); over TCP the default Contact
    /// carries `;transport=tcp`.
    pub transport: crate::Transport,
}

impl RegisterRequest {
    /// Registers `aor` with `registrar` at `destination`, asking for `expires`; retries after
    /// 30 s, doubling up to 30 min (RFC 5626 4.5's base and cap).
    pub fn new(
        registrar: impl Into<String>,
        aor: impl Into<String>,
        destination: SocketAddr,
        expires: Duration,
    ) -> Self {
        RegisterRequest {
            registrar: registrar.into(),
            aor: aor.into(),
            destinations: vec![destination],
            contact: None,
            credentials: None,
            expires,
            attempt_timeout: Duration::from_secs(32),
            retry: Duration::from_secs(30),
            retry_max: Duration::from_secs(1800),
            transport: crate::Transport::Udp,
        }
    }
}

/// Identifies one registration of an endpoint; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationHandle(u64);

impl RegistrationHandle {
    /// The number behind the handle.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// The first REGISTER (or one after a failure) is out, no answer yet.
    Registering,
    /// The registrar accepted the binding; it is refreshed before it expires.
    Registered,
    /// The last attempt failed (refused, or unanswered); another follows after the backoff, and
    /// the state stays until one succeeds.
    Failed,
    /// The REGISTER with `Expires: 0` is out.
    Unregistering,
    /// Removed (or never registered); the handle is no longer valid.
    Unregistered,
}

/// One registration's state, for [`Event::Registration`](crate::Event::Registration) and
/// [`Endpoint::registration`](crate::Endpoint::registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// The state.
    pub state: RegistrationState,
    /// The expiry the registrar granted, in the last 2xx.
    pub granted: Option<Duration>,
    /// When the binding runs out, unless refreshed.
    pub expires_at: Option<Instant>,
    /// When the next REGISTER goes out (a refresh, or a retry).
    pub next_attempt: Option<Instant>,
    /// The last error: a final status and its reason, or 408 when none came.
    pub last_error: Option<(u16, String)>,
    /// The destination the last REGISTER went to.
    pub destination: SocketAddr,
    /// Failures in a row since the last success.
    pub failures: u32,
}

/// What the endpoint does after a registration saw a response or a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send the next REGISTER now.
    Send,
    /// Nothing to send now.
    Wait,
}

/// One registration: its REGISTER "dialog" (Call-ID, From tag, CSeq kept across refreshes,
/// RFC 3261 10.2.4) and the policy above.
#[derive(Debug)]
pub(crate) struct Registration {
    request: RegisterRequest,
    dialog: Dialog,
    contact: String,
    /// The REGISTER in flight: its branch and transaction, and when we stop waiting for it.
    pub tx: Option<(String, ClientNonInviteTransaction)>,
    attempt_deadline: Option<Instant>,
    /// The index of the destination in use.
    target: usize,
    /// Destinations tried without an answer in this round.
    unanswered: usize,
    /// The challenges answered so far, each with the requests sent with its nonce (nc); every
    /// REGISTER answers them afresh.
    challenges: Vec<Answered>,
    /// Challenges answered in this round (proxy, realm), and whether a stale nonce was.
    answered: Vec<(bool, String)>,
    stale_retried: bool,
    expires: u32,
    raised_expires: bool,
    status: RegistrationStatus,
}

impl Registration {
    /// Checks the request; the first REGISTER goes out when the endpoint calls
    /// [`Registration::build`].
    pub(crate) fn new(
        request: RegisterRequest,
        call_id: String,
        tag: &str,
        local_seq: u32,
        config: &EndpointConfig,
    ) -> Result<Registration, SipError> {
        let invalid = |why: String| SipError::InvalidRegistration(why);
        let registrar = match Uri::parse(&request.registrar) {
            Ok(uri @ Uri::Sip(_)) => uri,
            _ => {
                return Err(invalid(format!(
                    "`{}` is not a sip: URI",
                    request.registrar
                )))
            }
        };
        let aor = match Uri::parse(&request.aor) {
            Ok(Uri::Sip(sip)) => sip,
            _ => return Err(invalid(format!("`{}` is not a sip: URI", request.aor))),
        };
        let Some(&first) = request.destinations.first() else {
            return Err(invalid("no destination to send the REGISTER to".into()));
        };
        let user = aor
            .has_user
            .then(|| {
                aor.raw
                    .split_once(':')
                    .map(|(_, rest)| rest)
                    .unwrap_or_default()
            })
            .and_then(|rest| rest.split_once('@').map(|(user, _)| user.to_string()));
        let contact = match &request.contact {
            Some(c) => c.clone(),
            None => {
                let params = match request.transport {
                    crate::Transport::Udp => String::new(),
                    other => format!(";transport={}", other.param()),
                };
                match user {
                    Some(user) => format!("sip:{user}@{}{params}", config.host_port()),
                    None => format!("sip:{}{params}", config.host_port()),
                }
            }
        };
        NameAddr::parse(&format!("<{contact}>"))
            .map_err(|e| invalid(format!("Contact `{contact}`: {e}")))?;
        let to = format!("<{}>", request.aor);
        let mut dialog = Dialog::for_outgoing(call_id, tag, &to, &to, registrar, first, local_seq);
        dialog.transport = request.transport;
        let expires = secs(request.expires);
        Ok(Registration {
            dialog,
            contact,
            tx: None,
            attempt_deadline: None,
            target: 0,
            unanswered: 0,
            challenges: Vec::new(),
            answered: Vec::new(),
            stale_retried: false,
            expires,
            raised_expires: false,
            status: RegistrationStatus {
                state: RegistrationState::Registering,
                granted: None,
                expires_at: None,
                next_attempt: None,
                last_error: None,
                destination: first,
                failures: 0,
            },
            request,
        })
    }

    pub(crate) fn status(&self) -> &RegistrationStatus {
        &self.status
    }

    /// The next REGISTER (a new CSeq; `Expires: 0` when unregistering), to `destination()`.
    pub(crate) fn build(
        &mut self,
        now: Instant,
        branch: &str,
        cnonce: &str,
        config: &EndpointConfig,
    ) -> Transmit {
        let expires = if self.status.state == RegistrationState::Unregistering {
            0
        } else {
            self.expires
        };
        self.dialog.peer = self.request.destinations[self.target];
        self.status.destination = self.dialog.peer;
        let mut headers = vec![
            rsip::Header::Contact(h::Contact::from(format!("<{}>", self.contact))),
            rsip::Header::Expires(h::Expires::from(expires.to_string())),
        ];
        if let Some(credentials) = &self.request.credentials {
            let uri = self.dialog.remote_target.as_str();
            for answered in &mut self.challenges {
                answered.nc += 1;
                let answer = digest::Answer {
                    username: &credentials.username,
                    password: &credentials.password,
                    method: "REGISTER",
                    uri,
                    cnonce,
                    nc: answered.nc,
                };
                let value = digest::authorization(&answered.challenge, &answer);
                headers.push(
                    Authorization {
                        proxy: answered.proxy,
                        realm: String::new(),
                        nonce: String::new(),
                        nc: answered.nc,
                        stale_retried: false,
                        value,
                    }
                    .header(),
                );
            }
        }
        let extra = Extra {
            headers: &headers,
            ..Extra::default()
        };
        let (transmit, _) = self.dialog.request("REGISTER", branch, extra, config);
        let timeout = self.request.attempt_timeout.max(Duration::from_millis(1));
        self.attempt_deadline = Some(now + timeout);
        self.status.next_attempt = None;
        transmit
    }

    /// The earliest of the transaction's timers, our wait for its answer, and the next attempt.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let tx = self.tx.as_ref().and_then(|(_, tx)| tx.next_deadline());
        [tx, self.attempt_deadline, self.status.next_attempt]
            .into_iter()
            .fold(None, crate::transaction::soonest)
    }

    /// Our wait for the REGISTER's answer is over.
    pub(crate) fn attempt_expired(&self, now: Instant) -> bool {
        self.tx.is_some() && crate::transaction::due(self.attempt_deadline, now)
    }

    /// The next REGISTER is due (a refresh or a retry).
    pub(crate) fn attempt_due(&self, now: Instant) -> bool {
        self.tx.is_none() && crate::transaction::due(self.status.next_attempt, now)
    }

    /// A new round of attempts (a refresh or a retry) starts: challenges may be answered again.
    pub(crate) fn new_round(&mut self) {
        self.answered.clear();
        self.stale_retried = false;
        self.raised_expires = false;
        self.unanswered = 0;
    }

    /// The REGISTER in flight got no final response in time: the next destination, or a
    /// failure when every one was tried.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Step {
        self.tx = None;
        self.attempt_deadline = None;
        if self.status.state == RegistrationState::Unregistering {
            self.status.state = RegistrationState::Unregistered;
            return Step::Wait;
        }
        self.unanswered += 1;
        let count = self.request.destinations.len();
        self.target = (self.target + 1) % count;
        if self.unanswered < count {
            tracing::debug!(next = %self.request.destinations[self.target], "no answer to REGISTER; next destination");
            return Step::Send;
        }
        self.fail(now, 408, "Request Timeout (no response to REGISTER)".into());
        Step::Wait
    }

    /// A final response to the REGISTER in flight. `cnonce` is a fresh client nonce.
    pub(crate) fn on_final(&mut self, now: Instant, response: &Response) -> Step {
        self.tx = None;
        self.attempt_deadline = None;
        self.unanswered = 0;
        if self.status.state == RegistrationState::Unregistering {
            self.status.state = RegistrationState::Unregistered;
            return Step::Wait;
        }
        match response.status {
            200..=299 => {
                let granted = self.granted(response);
                self.status.state = RegistrationState::Registered;
                self.status.granted = Some(Duration::from_secs(granted.into()));
                self.status.expires_at = Some(now + Duration::from_secs(granted.into()));
                // Refresh at half the granted time (at least a second from now).
                let half =
                    Duration::from_millis(u64::from(granted) * 500).max(Duration::from_secs(1));
                self.status.next_attempt = Some(now + half);
                self.status.failures = 0;
                self.status.last_error = None;
                Step::Wait
            }
            401 | 407 => match self.answer_challenge(response) {
                Ok(()) => Step::Send,
                Err(reason) => {
                    self.fail(now, response.status, reason);
                    Step::Wait
                }
            },
            423 if !self.raised_expires => {
                let min = response
                    .headers
                    .first("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires => {
                        self.expires = min;
                        self.raised_expires = true;
                        Step::Send
                    }
                    _ => {
                        self.fail(
                            now,
                            423,
                            format!("{} (no usable Min-Expires)", response.reason),
                        );
                        Step::Wait
                    }
                }
            }
            status => {
                self.fail(now, status, response.reason.clone());
                Step::Wait
            }
        }
    }

    /// The expiry granted to our Contact: its `expires` parameter in the 2xx, else the
    /// Expires header, else what we asked for (10.2.4).
    fn granted(&self, response: &Response) -> u32 {
        let ours = response
            .contacts
            .iter()
            .find(|c| c.uri.as_str() == self.contact);
        let param = ours.and_then(|c| {
            c.params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("expires"))
                .and_then(|(_, v)| v.as_deref()?.parse().ok())
        });
        let header = response
            .headers
            .first("Expires")
            .and_then(|v| v.trim().parse().ok());
        param.or(header).unwrap_or(self.expires)
    }

    /// Answers each realm's challenge once per round (a stale nonce once more). Errors say
    /// why the registration fails instead.
    fn answer_challenge(&mut self, response: &Response) -> Result<(), String> {
        let proxy = response.status == 407;
        if self.request.credentials.is_none() {
            return Err(format!(
                "{} (no credentials for this trunk)",
                response.reason
            ));
        };
        let challenges = digest::challenges_of(response)?;
        for challenge in &challenges {
            let key = (proxy, challenge.realm.clone());
            if self.answered.contains(&key) {
                if challenge.stale && !self.stale_retried {
                    self.stale_retried = true;
                    continue;
                }
                return Err(format!(
                    "{} (credentials refused for realm \"{}\")",
                    response.reason, challenge.realm
                ));
            }
        }
        for challenge in challenges {
            self.answered.push((proxy, challenge.realm.clone()));
            let slot = self
                .challenges
                .iter()
                .position(|a| a.proxy == proxy && a.challenge.realm == challenge.realm);
            let nc = match slot.map(|i| self.challenges.remove(i)) {
                Some(previous) if previous.challenge.nonce == challenge.nonce => previous.nc,
                _ => 0,
            };
            self.challenges.push(Answered {
                proxy,
                challenge,
                nc,
            });
        }
        Ok(())
    }

    /// This round failed: `Failed`, and the next attempt after the backoff.
    fn fail(&mut self, now: Instant, status: u16, reason: String) {
        tracing::debug!(status, %reason, "registration failed");
        self.status.failures += 1;
        self.status.state = RegistrationState::Failed;
        self.status.last_error = Some((status, reason));
        if self.status.expires_at.is_some_and(|at| at <= now) {
            self.status.expires_at = None;
        }
        self.status.next_attempt = Some(now + self.backoff());
    }

    /// `retry * 2^(failures-1)`, at most `retry_max`.
    fn backoff(&self) -> Duration {
        let doublings = self.status.failures.saturating_sub(1).min(20);
        self.request
            .retry
            .saturating_mul(1 << doublings)
            .min(self.request.retry_max.max(self.request.retry))
    }

    /// Asks for the binding to be removed. Returns whether a REGISTER with `Expires: 0` must
    /// go out (a binding may exist); otherwise the registration is over at once.
    pub(crate) fn unregister(&mut self, now: Instant) -> bool {
        let bound = self.status.expires_at.is_some_and(|at| at > now) || self.tx.is_some();
        self.tx = None;
        self.attempt_deadline = None;
        self.status.next_attempt = None;
        self.status.state = if bound {
            RegistrationState::Unregistering
        } else {
            RegistrationState::Unregistered
        };
        bound
    }
}

/// A challenge we answer in every REGISTER, and how many did with its nonce.
#[derive(Debug)]
struct Answered {
    proxy: bool,
    challenge: Challenge,
    nc: u32,
}

/// Whole seconds, at least 1.
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

impl RegistrationHandle {
    pub(crate) fn new(id: u64) -> Self {
        RegistrationHandle(id)
    }
}
