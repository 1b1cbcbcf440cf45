//! Calls out: an agent asks voxline to call a phone.
//!
//! ```text
//! POST /v1/calls {"to": "sip:+15551234567@192.0.2.1:5060", "trunk"?, "from"?, "headers"?, "greeting"?,
//!                 "voice"?, "preset"?, "auth"?: {"username", "password"}}  -> 201 {"call": "c..."}
//! ```
//!
//! The handler checks the request, takes RTP ports and writes voxline's SDP offer; the SIP task
//! sends the INVITE ([`SipCommand::Dial`]) and keeps the call's media events until the answer.
//! Then, on the events socket and the webhook: `call.ringing` per provisional status;
//! `call.answered` once the 200's answer is negotiated and media runs exactly as for an answered
//! incoming call (greeting first, the control socket at `/v1/calls/{id}/control`); or
//! `call.failed` {status, reason} and `call.ended`. Hanging up sends CANCEL while it rings, BYE
//! after.
//!
//! Through a trunk (`"trunk": NAME`, [`super::trunks`]) the Request-URI's host, From, the
//! credentials and the outbound proxy come from the trunk, whose host may be a name (RFC 3263).
//!
//! Limits: UDP; without a trunk the URI's host must be an IP address; a call rings at most
//! [`RING_TIMEOUT`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use voxline_sdp::LocalMedia;
use voxline_sip::{CallRequest, Credentials, Endpoint, Event};

use super::call_media::start_media;
use super::calls::{new_call_id, Call, CallState, Leg, SipHandle};
use super::commands::{Dial, SipCommand};
use super::decision::CallChoices;
use super::error::ApiError;
use super::lifecycle::LifecycleEvent;
use super::sip::{apply_answer, check_family, media_address};
use super::state::Server;
use crate::media::{CallMedia, MediaEvent, MediaLeg, RemoteMedia};

/// How long a call may ring before voxline gives up on it (CANCEL; `call.failed` with 408).
pub const RING_TIMEOUT: Duration = Duration::from_secs(60);

/// `POST /v1/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// A `sip:` URI whose host is an IP address, e.g. `sip:+15551234567@192.0.2.1:5060`; with
    /// `trunk`, a number or user (or a `sip:` URI whose user part is taken).
    to: String,
    /// Call through this trunk (`--trunk`): its host in the Request-URI, its From, credentials
    /// and outbound proxy.
    #[serde(default)]
    trunk: Option<String>,
    /// Our address in From (a `sip:` URI); voxline's own when absent.
    #[serde(default)]
    from: Option<String>,
    /// More INVITE headers, e.g. `{"X-Campaign": "42"}`.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// `true`/absent: the configured greeting; `false`: none; a string: that text.
    #[serde(default)]
    greeting: Option<Value>,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    preset: Option<String>,
    /// For a `401`/`407` challenge (Digest).
    #[serde(default)]
    auth: Option<Auth>,
    /// Agent-URL mode for this call: voxline connects to this `ws://` URL once answered.
    #[serde(default)]
    agent_url: Option<String>,
    /// `native` (default) or `conversationrelay`.
    #[serde(default)]
    agent_dialect: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Auth {
    username: String,
    password: String,
}

/// `201` to `POST /v1/calls`.
#[derive(Serialize)]
struct Placed {
    call: String,
}

pub async fn place(State(server): State<Arc<Server>>, body: Result<Json<PlaceCall>, JsonRejection>) -> Result<Response, ApiError> {
    use ApiError as E;
    let Json(body) = body.map_err(|e| E::bad_request("invalid_json", e.body_text()))?;
    let CallChoices { greeting, voice, preset, agent } = CallChoices::read(&server.speech, body.greeting, body.voice, body.preset.as_deref())
        .and_then(|c| c.with_agent(body.agent_url.as_deref(), body.agent_dialect.as_deref()))
        .map_err(|(code, message)| E::bad_request(code, message))?;
    let to = body.to.trim().trim_start_matches('<').trim_end_matches('>');
    let mut request = match body.trunk.as_deref() {
        Some(trunk) => super::trunks::dial::request(&server.config.trunks, trunk, to).await.map_err(|(code, message)| E::bad_request(code, message))?,
        None => CallRequest::direct(to, String::new()).map_err(|e| E::bad_request("invalid_uri", e.to_string()))?,
    };
    check_family(&server, request.destination).map_err(|e| E::bad_request("invalid_uri", e))?;
    if let Some(from) = body.from {
        request.from = Some(if from.contains('<') { from } else { format!("<{from}>") });
    }
    request.headers = body.headers.into_iter().collect();
    if let Some(auth) = body.auth {
        request.credentials = Some(Credentials { username: auth.username, password: auth.password });
    }
    request.ring_timeout = Some(RING_TIMEOUT);
    server.admit("sip", "outbound").map_err(|r| E::busy(r.reason, Some(r.retry_after)))?;

    let (rtp, rtcp) = server.ports.allocate().map_err(|e| {
        tracing::warn!(error = %e, "no media port for a call out");
        E::busy("no media port free", None)
    })?;
    let rtp_port = rtp.local_addr().map_err(|e| E::internal("internal", e.to_string()))?.port();
    let session = rand::random::<u32>() as u64;
    let local = LocalMedia::new(media_address(&server, request.destination), rtp_port, session);
    request.sdp_offer = voxline_sdp::build_offer(&local, &server.config.answer_policy);
    let id = new_call_id();
    let (events_tx, events) = mpsc::unbounded_channel();
    // Nothing is sent until the answer says where.
    let remote = RemoteMedia::awaiting_answer(request.destination.ip());
    let media = CallMedia::new(id.clone(), MediaLeg::udp(rtp, rtcp), remote, server.config.media.clone(), events_tx);
    let dial = Dial { id: id.clone(), request, media, events, sdp_session: session, greeting, voice, preset, agent };
    let (reply, refused) = oneshot::channel();
    let stopped = || E::internal("sip_stopped", "the SIP task is not running");
    server.sip.send(SipCommand::Dial { call: Box::new(dial), reply }).map_err(|_| stopped())?;
    match refused.await.map_err(|_| stopped())? {
        Ok(()) => Ok((StatusCode::CREATED, Json(Placed { call: id })).into_response()),
        Err(message) => Err(E::bad_request("invalid_call", message)),
    }
}

/// The calls we placed that are not answered yet, in the SIP task: what their answer starts.
#[derive(Default)]
pub struct Outbound {
    dialing: HashMap<SipHandle, Dialing>,
}

struct Dialing {
    events: mpsc::UnboundedReceiver<MediaEvent>,
    greeting: Option<String>,
}

impl Outbound {
    /// Sends the INVITE of a call the HTTP API placed, and lists the call.
    pub fn dial(&mut self, server: &Arc<Server>, endpoint: &mut Endpoint, dial: Dial) -> Result<(), String> {
        let Dial { id, request, media, events, sdp_session, greeting, voice, preset, agent } = dial;
        let (to, from, destination) = (request.request_uri.clone(), request.from.clone(), request.destination);
        let headers = request.headers.clone();
        let handle = endpoint.call(Instant::now(), request).map_err(|e| e.to_string())?;
        let sip_call_id = endpoint.call_id(handle).unwrap_or_default().to_owned();
        let from = from.unwrap_or_else(|| "voxline".into());
        let call = Call::new(id.clone(), Leg::Sip(handle), sip_call_id, from, to, headers, destination, media, sdp_session).outbound();
        call.set_synth(voice, preset);
        call.set_agent(agent);
        server.calls.insert(Arc::new(call));
        self.dialing.insert(handle, Dialing { events, greeting });
        tracing::info!(call = %id, to = %destination, "calling");
        Ok(())
    }

    /// What the SIP core says about calls we placed: ringing, answered, failed.
    pub fn on_event(&mut self, server: &Arc<Server>, event: Event) {
        match event {
            Event::CallRinging { call, status } => {
                let Some(c) = server.calls.by_sip(call) else { return };
                tracing::info!(call = %c.id, status, "ringing");
                server.lifecycle(LifecycleEvent::Ringing { call: c.id.clone(), status });
            }
            Event::CallAnswered { call, answer } => self.answered(server, call, answer),
            Event::CallFailed { call, status, reason } => {
                let Some(c) = server.calls.by_sip(call) else { return };
                tracing::info!(call = %c.id, status, %reason, "call failed");
                server.lifecycle(LifecycleEvent::Failed { call: c.id.clone(), status, reason });
            }
            _ => {}
        }
    }

    /// The 200: its answer negotiated, media starts as for an answered incoming call.
    fn answered(&mut self, server: &Arc<Server>, handle: SipHandle, answer: Option<String>) {
        let (Some(call), Some(dialing)) = (server.calls.by_sip(handle), self.dialing.remove(&handle)) else { return };
        let applied = answer.as_deref().ok_or_else(|| "the 200 carries no SDP answer".to_string()).and_then(|a| apply_answer(server, &call, a));
        if let Err(reason) = applied {
            tracing::info!(call = %call.id, %reason, "answer unusable; hanging up");
            return server.hangup(&call, "bad_answer");
        }
        call.set_state(CallState::Active);
        tracing::info!(call = %call.id, remote_rtp = %call.media.remote().rtp, "answered");
        server.lifecycle(LifecycleEvent::Answered { call: call.id.clone() });
        start_media(server, &call, dialing.events, dialing.greeting);
    }

    /// The call is over.
    pub fn forget(&mut self, handle: SipHandle) {
        self.dialing.remove(&handle);
    }
}
