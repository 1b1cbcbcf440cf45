//! The control protocol: an agent attaches to a live call, streams text in,
//! and hears back exactly what the caller heard (see docs/control.md).
//!
//! `GET /v1/calls/{id}/control` upgrades to a WebSocket (a WebRTC call's
//! data channel speaks the same protocol). Text frames carry one JSON
//! message each; binary frames carry caller audio when asked for.
//!
//! - `protocol`: the messages in ([`Request`]) and out ([`CallEvent`]);
//!   `relay`: the ConversationRelay dialect of both (`relay_setup`: its
//!   `setup` from a call); `dialect`: which one a socket speaks.
//! - `session`: the turns, sans I/O.
//! - `transport`: what carries the frames.
//! - `agent_url`: agent-URL mode, the same loop over a socket voxline opens
//!   to the agent, with its reconnect policy; `agent_tls`: TLS for `wss://`.
//! - here: the upgrade and the loop that joins a transport, the call's
//!   events and a session. The socket subscribes to its own call's events
//!   only; a slow agent may miss caller audio (counted, `events_dropped`)
//!   but never a speech or lifecycle event, and never holds up the call's
//!   audio or another call.

pub mod agent_tls;
pub mod agent_url;
pub mod dialect;
pub mod in_dialog;
pub mod protocol;
mod relay;
mod relay_setup;
pub mod session;
pub mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::calls::Call;
use super::error::ApiError;
use super::state::Server;
use crate::media::{ClearedUtterance, DtmfSendError, UtteranceId};
use crate::synth::{Preset, SynthOptions};
pub use agent_url::{AgentPolicy, AgentTarget};
pub use dialect::Dialect;
pub use in_dialog::InDialog;
pub use protocol::{CallEvent, Request, MAX_FRAME};
pub use session::{CallPort, Defaults, Out, Session};
pub use transport::{AgentFrame, AgentMessage, ControlTransport, Gone};

/// Query parameters of the control socket's URL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlQuery {
    #[serde(default)]
    dialect: Option<String>,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    segment: Option<String>,
    /// The API token (checked by the HTTP layer).
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

impl ControlQuery {
    fn read(self, server: &Server) -> Result<(Dialect, Defaults), String> {
        let dialect = Dialect::from_name(self.dialect.as_deref())?;
        let mut defaults = Defaults::default();
        if let Some(voice) = self.voice {
            if !server.speech.has_voice(&voice) {
                return Err(format!("unknown voice `{voice}`: {}", server.speech.voice_names().join(", ")));
            }
            defaults.voice = Some(voice);
        }
        defaults.preset = self.preset.as_deref().map(Preset::from_name).transpose()?;
        defaults.segment = self.segment.as_deref().map(session::parse_segment).transpose()?;
        Ok((dialect, defaults))
    }
}

/// `GET /v1/calls/{id}/control`.
pub async fn upgrade(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    query: Result<Query<ControlQuery>, axum::extract::rejection::QueryRejection>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let bad = |message: String| ApiError::bad_request("invalid_query", message);
    let Query(query) = query.map_err(|_| bad("unknown query parameter: use dialect, voice, preset, segment or token".into()))?;
    let (dialect, defaults) = query.read(&server).map_err(bad)?;
    let call = server.calls.get(&id).ok_or_else(|| ApiError::unknown_call(&id))?;
    Ok(ws
        .max_message_size(MAX_FRAME * 4)
        .max_frame_size(MAX_FRAME * 4)
        .on_upgrade(move |socket| run(server, call, socket, dialect, defaults))
        .into_response())
}

/// The live call as a session sees it.
struct LiveCall {
    server: Arc<Server>,
    call: Arc<Call>,
}

impl CallPort for LiveCall {
    fn speak(&mut self, clause: &str, voice: Option<&str>, options: SynthOptions) -> UtteranceId {
        let token = self.call.cancel_token();
        self.server.speech.speak(&self.call.media, clause, voice, options, token)
    }

    fn clear(&mut self) -> Vec<ClearedUtterance> {
        let cleared = self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.call.cancel_speech();
        cleared
    }

    fn mark(&mut self, name: String) {
        self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).mark(name);
    }

    fn queued(&self) -> Duration {
        self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).queued()
    }

    fn send_dtmf(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfSendError> {
        self.call.media.send_dtmf(digits, duration)
    }

    fn is_sip(&self) -> bool {
        self.call.sip().is_some()
    }

    fn in_dialog(&mut self, request: InDialog) {
        if let Some(call) = self.call.sip() {
            let _ = self.server.sip.send(super::commands::SipCommand::InDialog { call, request });
        }
    }

    fn hangup(&mut self) {
        self.server.hangup(&self.call, "agent");
    }

    fn caller_audio(&mut self, enabled: bool) {
        self.call.media.subscribe_caller_audio(enabled);
    }

    fn has_voice(&self, voice: &str) -> bool {
        self.server.speech.has_voice(voice)
    }

    fn voice_names(&self) -> Vec<String> {
        self.server.speech.voice_names()
    }

    fn default_voice(&self) -> String {
        self.server.speech.voice()
    }
}

/// Why [`drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// The call ended (the agent heard `call.ended` if it was still there).
    CallEnded,
    /// The agent closed the socket with a normal close (1000).
    AgentClosed,
    /// The agent went away otherwise: dropped, an error, another close code.
    AgentLost,
    /// The agent handed the call off (ConversationRelay's `end`): `call.handoff`
    /// went out, its socket is closed, the call goes on without it.
    HandedOff,
}

/// Runs the control protocol for `call` over `socket` until either ends.
pub async fn run<T: ControlTransport>(server: Arc<Server>, call: Arc<Call>, socket: T, dialect: Dialect, defaults: Defaults) {
    drive(server, call, socket, dialect, defaults).await;
}

/// [`run`], saying which side ended it: any socket, the agent's inbound
/// one or the one voxline opened to it ([`agent_url`]).
pub async fn drive<T: ControlTransport>(server: Arc<Server>, call: Arc<Call>, mut socket: T, dialect: Dialect, mut defaults: Defaults) -> Detached {
    if dialect == Dialect::ConversationRelay {
        // Twilio's default: a caller's digit (or speech) stops the speech.
        defaults.interruptible.get_or_insert(protocol::Interruptible::Any);
    }
    let mut events = call.events.subscribe();
    let port = LiveCall { server: server.clone(), call: call.clone() };
    let mut session = Session::new(port, server.config.synth.clone(), defaults);
    if let Some(greeting) = call.greeting() {
        session.adopt(greeting.utterance, "greeting", greeting.text, greeting.queued);
    }
    let hello = CallEvent::Attached {
        call: call.id.clone(),
        from: call.from.clone(),
        to: call.to.clone(),
        state: call.state(),
        headers: call.headers.iter().cloned().collect(),
        voice: session.voice(None),
        voices: session.voice_names(),
        transport: call.transport(),
        direction: call.direction,
        twilio_call_sid: (call.transport() == "twilio").then(|| call.sip_call_id.clone()),
    };
    let mut outcome = send(&mut socket, dialect, vec![Out::Event(hello)]).await;
    // A call that ended before the socket subscribed has nothing more to say.
    if server.calls.get(&call.id).is_none() && outcome == Ok(false) {
        outcome = send(&mut socket, dialect, vec![Out::Event(CallEvent::Ended { reason: "ended".into() })]).await;
    }
    let mut backpressure = tokio::time::interval(Duration::from_millis(200));
    let mut detached = Detached::AgentLost;
    while outcome == Ok(false) {
        let deadline = session.deadline();
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let out: Vec<Out> = tokio::select! {
            frame = socket.recv() => match frame {
                Some(AgentFrame::Text(text)) => {
                    let events = match dialect.parse(&text) {
                        Ok(Request::End { handoff_data }) => {
                            hand_off(&server, &call, handoff_data);
                            detached = Detached::HandedOff;
                            break;
                        }
                        Ok(request) => session.request(Instant::now(), request),
                        Err(e) => vec![e],
                    };
                    events.into_iter().map(Out::Event).collect()
                }
                Some(AgentFrame::Binary) => vec![Out::Event(CallEvent::error("unsupported", "binary frames from the agent are not accepted"))],
                Some(AgentFrame::Other) => vec![],
                Some(AgentFrame::Closed { normal: true }) => {
                    detached = Detached::AgentClosed;
                    break;
                }
                Some(AgentFrame::Closed { normal: false }) | None => break,
            },
            event = events.recv() => match event {
                Some(e) => {
                    let mut out = session.media(e);
                    let dropped = events.take_dropped();
                    if dropped > 0 {
                        let message = format!("{dropped} caller-audio frames were dropped because this socket read too slowly");
                        out.push(Out::Event(CallEvent::error("events_dropped", message)));
                    }
                    out
                }
                None => {
                    detached = Detached::CallEnded;
                    break;
                }
            },
            () = wait => {
                session.poll(Instant::now());
                vec![]
            }
            _ = backpressure.tick() => session.backpressure().map(Out::Event).into_iter().collect(),
        };
        outcome = send(&mut socket, dialect, out).await;
    }
    if outcome == Ok(true) {
        socket.close().await;
        detached = Detached::CallEnded;
    } else if detached == Detached::HandedOff {
        socket.close().await;
    }
    session.close();
    detached
}

/// The agent is done and the call goes on: `call.handoff` to the webhook
/// and the events socket, whose listener takes the next step (a transfer, a
/// hangup, another agent on the control socket).
fn hand_off(server: &Arc<Server>, call: &Call, handoff_data: Option<String>) {
    tracing::info!(call = %call.id, "the agent handed the call off");
    server.lifecycle(super::lifecycle::LifecycleEvent::Handoff { call: call.id.clone(), handoff_data });
}

/// Sends a batch of outputs; `Ok(true)` once `call.ended` went out.
async fn send<T: ControlTransport>(socket: &mut T, dialect: Dialect, out: Vec<Out>) -> Result<bool, Gone> {
    let mut ended = false;
    for o in out {
        let message = match o {
            Out::Audio(bytes) => AgentMessage::Binary(bytes),
            Out::Event(event) => {
                ended |= matches!(event, CallEvent::Ended { .. });
                let Some(text) = dialect.render(&event) else { continue };
                AgentMessage::Text(text)
            }
        };
        socket.send(message).await?;
    }
    Ok(ended)
}
