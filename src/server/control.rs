//! The control WebSocket: an agent attaches to a live call, streams text in,
//! and hears back exactly what the caller heard (see docs/control.md).
//!
//! `GET /v1/calls/{id}/control` upgrades to a WebSocket. Text frames carry one
//! JSON message each; binary frames carry caller audio when asked for.
//!
//! One session per socket: its own clause segmenter, the turns it started and
//! which utterances belong to them. The call's media events arrive through the
//! server's broadcast channel; the socket only ever reads shared state, so a
//! slow or vanished agent cannot hold up the call's audio (the pacer and the
//! synthesizer never wait for it).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::calls::Call;
use super::Server;
use crate::media::{MediaEvent, PlayoutEvent, UtteranceId};
use crate::synth::{Preset, SynthOptions, MAX_REQUEST_CHARS};
use crate::text::{Policy, Segmenter, SegmenterConfig};

mod relay;

/// Frames larger than this are refused with an error event.
pub const MAX_FRAME: usize = 64 * 1024;
/// Backpressure: `paused` once this much audio is queued, `resumed` below the low mark.
const PAUSE_ABOVE: Duration = Duration::from_secs(20);
const RESUME_BELOW: Duration = Duration::from_secs(5);

/// Messages an agent sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Inbound {
    /// Text to speak: whole sentences or single tokens. `turn` groups text
    /// into one agent turn (default: the current turn).
    Speak {
        text: String,
        #[serde(default)]
        turn: Option<String>,
        /// Speak what is buffered now.
        #[serde(default)]
        flush: bool,
        /// End of the turn (implies flush).
        #[serde(default)]
        last: bool,
        /// Voice and preset for this turn (from its next clause on).
        #[serde(default)]
        voice: Option<String>,
        #[serde(default)]
        preset: Option<String>,
    },
    /// Defaults for this socket's later turns.
    Configure {
        #[serde(default)]
        voice: Option<String>,
        #[serde(default)]
        preset: Option<String>,
        #[serde(default)]
        segment: Option<String>,
    },
    /// RFC 4733 digits to the caller (0-9 * # A-D; `w` waits 0.5 s).
    SendDtmf {
        digits: String,
        #[serde(default)]
        duration_ms: Option<u64>,
    },
    Flush,
    /// Barge-in: drop queued text and unplayed audio.
    Clear,
    Mark { name: String },
    Hangup,
    /// Caller audio as binary frames (`pcmu` bytes or `pcm16` little-endian, 8 kHz).
    CallerAudio {
        enabled: bool,
        #[serde(default)]
        format: Option<String>,
    },
}

/// Which protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// voxline's own messages (docs/control.md).
    Native,
    /// Twilio ConversationRelay: `text` tokens in; `setup`, `interrupt`,
    /// `dtmf` and `error` out. voxline's own messages are accepted too.
    ConversationRelay,
}

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

/// How the socket's turns are spoken unless a turn says otherwise.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    voice: Option<String>,
    preset: Option<Preset>,
    /// Overrides the preset's segmentation.
    segment: Option<Policy>,
}

impl Defaults {
    pub fn new(voice: Option<String>, preset: Option<Preset>) -> Self {
        Self { voice, preset, segment: None }
    }
}

fn parse_segment(name: &str) -> Result<Policy, String> {
    match name {
        "clause" => Ok(Policy::Clause),
        "sentence" => Ok(Policy::Sentence),
        other => Err(format!("unknown segment policy `{other}`: clause or sentence")),
    }
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::from_name(name)
}

/// How text is cut for a preset (and a policy override).
fn segmenter_config(preset: Preset, policy: Option<Policy>) -> SegmenterConfig {
    let mut config = SegmenterConfig::default();
    match preset {
        Preset::Realtime => {
            config.min_clause_chars = 12;
            config.max_wait = Duration::from_millis(400);
        }
        Preset::Balanced => {}
        Preset::Fidelity => {
            config.policy = Policy::Sentence;
            config.max_wait = Duration::from_millis(2000);
        }
    }
    if let Some(policy) = policy {
        config.policy = policy;
    }
    config
}

#[derive(Debug)]
struct Turn {
    id: String,
    /// When the turn's first text arrived.
    first_text: Instant,
    utterances: Vec<UtteranceId>,
    /// Utterances of the turn not yet finished or cleared.
    open: usize,
    started: bool,
    last: bool,
    done: bool,
    /// Text of the finished utterances and heard words of cut ones.
    heard: Vec<String>,
    heard_ms: u64,
    voice: Option<String>,
    options: SynthOptions,
    /// ConversationRelay `preemptible`: the next turn's text cuts this one off.
    preemptible: bool,
}

struct Session {
    dialect: Dialect,
    defaults: Defaults,
    server: Arc<Server>,
    call: Arc<Call>,
    segmenter: Segmenter,
    turns: VecDeque<Turn>,
    /// utterance -> (turn id, text)
    utterances: HashMap<UtteranceId, (String, String)>,
    next_turn: u64,
    audio_format: Option<AudioFormat>,
    paused: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AudioFormat {
    Pcmu,
    Pcm16,
}

pub async fn upgrade(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    query: Result<Query<ControlQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let bad = |message: String| super::http::error(StatusCode::BAD_REQUEST, "invalid_query", message);
    let Ok(Query(query)) = query else {
        return bad("unknown query parameter: use dialect, voice, preset, segment or token".into());
    };
    let dialect = match query.dialect.as_deref() {
        None | Some("native" | "voxline") => Dialect::Native,
        Some("conversationrelay" | "twilio") => Dialect::ConversationRelay,
        Some(other) => return bad(format!("unknown dialect `{other}`: native or conversationrelay")),
    };
    let mut defaults = Defaults::default();
    if let Some(voice) = query.voice {
        if !server.speech.has_voice(&voice) {
            return bad(format!("unknown voice `{voice}`: {}", server.speech.voice_names().join(", ")));
        }
        defaults.voice = Some(voice);
    }
    match query.preset.as_deref().map(parse_preset).transpose() {
        Ok(p) => defaults.preset = p,
        Err(e) => return bad(e),
    }
    match query.segment.as_deref().map(parse_segment).transpose() {
        Ok(p) => defaults.segment = p,
        Err(e) => return bad(e),
    }
    let Some(call) = server.calls.get(&id) else {
        return super::http::error(StatusCode::NOT_FOUND, "unknown_call", format!("no call with id `{id}`"));
    };
    ws.max_message_size(MAX_FRAME * 4)
        .max_frame_size(MAX_FRAME * 4)
        .on_upgrade(move |socket| run(server, call, socket, dialect, defaults))
        .into_response()
}

/// A frame from the agent, whatever carries it.
#[derive(Debug)]
pub enum AgentFrame {
    Text(String),
    Binary,
    /// Anything else (pings): nothing to do.
    Other,
}

/// A frame to the agent.
#[derive(Debug)]
pub enum AgentMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// What carries the control protocol: the control WebSocket or a WebRTC
/// data channel. `recv` answers `None` once the agent is gone.
pub trait ControlTransport: Send {
    fn recv(&mut self) -> impl std::future::Future<Output = Option<AgentFrame>> + Send;
    /// `Err` once the agent is gone.
    fn send(&mut self, message: AgentMessage) -> impl std::future::Future<Output = Result<(), ()>> + Send;
    fn close(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

impl ControlTransport for WebSocket {
    async fn recv(&mut self) -> Option<AgentFrame> {
        match WebSocket::recv(self).await {
            Some(Ok(Message::Text(text))) => Some(AgentFrame::Text(text.as_str().to_owned())),
            Some(Ok(Message::Binary(_))) => Some(AgentFrame::Binary),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
            Some(Ok(_)) => Some(AgentFrame::Other),
        }
    }

    async fn send(&mut self, message: AgentMessage) -> Result<(), ()> {
        let message = match message {
            AgentMessage::Text(text) => Message::Text(Utf8Bytes::from(text)),
            AgentMessage::Binary(bytes) => Message::Binary(bytes.into()),
        };
        WebSocket::send(self, message).await.map_err(|_| ())
    }

    async fn close(&mut self) {
        let _ = WebSocket::send(self, Message::Close(None)).await;
    }
}

/// What a session sends: events in voxline's own form (rendered in the
/// socket's dialect on the way out) and caller audio.
#[derive(Debug)]
enum Out {
    Event(Value),
    Audio(Vec<u8>),
}

fn event(value: Value) -> Out {
    Out::Event(value)
}

fn error(code: &str, message: impl Into<String>) -> Out {
    event(json!({"type": "error", "code": code, "message": message.into()}))
}

fn text(value: Value) -> AgentMessage {
    AgentMessage::Text(value.to_string())
}

/// Runs the control protocol for `call` over `socket` until either ends.
pub async fn run<T: ControlTransport>(server: Arc<Server>, call: Arc<Call>, mut socket: T, dialect: Dialect, defaults: Defaults) {
    let mut events = server.events.subscribe();
    let base_preset = defaults.preset.or(server.config.synth.preset).unwrap_or_default();
    let mut session = Session {
        dialect,
        segmenter: Segmenter::new(segmenter_config(base_preset, defaults.segment)),
        defaults,
        server: server.clone(),
        call: call.clone(),
        turns: VecDeque::new(),
        utterances: HashMap::new(),
        next_turn: 1,
        audio_format: None,
        paused: false,
    };
    let headers: serde_json::Map<String, Value> = call.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let hello = match dialect {
        Dialect::Native => json!({"type": "call.attached", "call": call.id, "from": call.from, "to": call.to, "state": call.state(),
            "headers": headers, "voice": session.voice(None), "voices": server.speech.voice_names()}),
        Dialect::ConversationRelay => json!({"type": "setup", "sessionId": format!("VX{}", call.id), "callSid": call.id,
            "parentCallSid": "", "accountSid": "", "from": call.from, "to": call.to, "forwardedFrom": "", "callerName": "",
            "direction": "inbound", "callType": if call.sip().is_some() { "SIP" } else { "WebRTC" }, "callStatus": "in-progress", "customParameters": headers}),
    };
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    let mut backpressure = tokio::time::interval(Duration::from_millis(200));
    loop {
        let deadline = session.segmenter.deadline();
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let out: Vec<Out> = tokio::select! {
            msg = socket.recv() => match msg {
                Some(AgentFrame::Text(text)) => session.handle_text(&text),
                Some(AgentFrame::Binary) => vec![error("unsupported", "binary frames from the agent are not accepted")],
                Some(AgentFrame::Other) => vec![],
                None => break,
            },
            received = events.recv() => match received {
                Ok(e) if e.call == call.id => session.handle_media(e.event),
                Ok(_) => vec![],
                Err(RecvError::Lagged(n)) => vec![error("events_dropped", format!("{n} events were dropped because this socket read too slowly"))],
                Err(RecvError::Closed) => break,
            },
            () = wait => {
                let clauses = session.segmenter.poll(Instant::now());
                session.speak_clauses(clauses);
                vec![]
            }
            _ = backpressure.tick() => session.backpressure(),
        };
        let ended = out.iter().any(|m| matches!(m, Out::Event(e) if e["type"] == "call.ended"));
        for m in out {
            let Some(m) = session.render(m) else { continue };
            if socket.send(m).await.is_err() {
                return;
            }
        }
        if ended {
            socket.close().await;
            break;
        }
    }
    if session.audio_format.is_some() {
        call.media.subscribe_caller_audio(false);
    }
}

impl Session {
    /// The voice a turn with `voice` set (or not) speaks with.
    fn voice(&self, voice: Option<&str>) -> String {
        voice.or(self.defaults.voice.as_deref()).map_or_else(|| self.server.speech.voice(), str::to_owned)
    }

    fn base_options(&self) -> SynthOptions {
        let mut options = self.server.config.synth.clone();
        if self.defaults.preset.is_some() {
            options.preset = self.defaults.preset;
        }
        options
    }

    /// Renders an event in the socket's dialect; `None` when the dialect has no such event.
    fn render(&self, out: Out) -> Option<AgentMessage> {
        let value = match out {
            Out::Audio(bytes) => return Some(AgentMessage::Binary(bytes)),
            Out::Event(value) => value,
        };
        match self.dialect {
            Dialect::Native => Some(text(value)),
            Dialect::ConversationRelay => relay::render(value).map(text),
        }
    }

    fn handle_text(&mut self, text: &str) -> Vec<Out> {
        if text.len() > MAX_FRAME {
            return vec![error("frame_too_large", format!("a message is at most {MAX_FRAME} bytes; this one is {}", text.len()))];
        }
        if self.dialect == Dialect::ConversationRelay {
            if let Some(out) = self.handle_relay(text) {
                return out;
            }
        }
        let message: Inbound = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                let code = if serde_json::from_str::<Value>(text).is_ok() { "invalid_message" } else { "malformed_json" };
                return vec![error(code, e.to_string())];
            }
        };
        match message {
            Inbound::Speak { text, turn, flush, last, voice, preset } => {
                if let Err(e) = self.check_voice(voice.as_deref()) {
                    return vec![e];
                }
                let preset = match preset.as_deref().map(parse_preset).transpose() {
                    Ok(p) => p,
                    Err(e) => return vec![error("invalid_message", e)],
                };
                self.speak(text, turn, flush || last, last, voice, preset, false)
            }
            Inbound::Configure { voice, preset, segment } => {
                if let Err(e) = self.check_voice(voice.as_deref()) {
                    return vec![e];
                }
                let preset = match preset.as_deref().map(parse_preset).transpose() {
                    Ok(p) => p,
                    Err(e) => return vec![error("invalid_message", e)],
                };
                let segment = match segment.as_deref().map(parse_segment).transpose() {
                    Ok(p) => p,
                    Err(e) => return vec![error("invalid_message", e)],
                };
                if voice.is_some() {
                    self.defaults.voice = voice;
                }
                if preset.is_some() {
                    self.defaults.preset = preset;
                }
                if segment.is_some() {
                    self.defaults.segment = segment;
                }
                vec![event(json!({"type": "configured", "voice": self.voice(None),
                    "preset": self.base_options().preset.unwrap_or_default().name(),
                    "segment": match self.next_segmenter_config().policy { Policy::Clause => "clause", Policy::Sentence => "sentence" }}))]
            }
            Inbound::SendDtmf { digits, duration_ms } => self.send_dtmf(&digits, duration_ms),
            Inbound::Flush => {
                let clauses = self.segmenter.flush();
                self.speak_clauses(clauses);
                vec![]
            }
            Inbound::Clear => vec![self.clear()],
            Inbound::Mark { name } => {
                self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).mark(name);
                vec![]
            }
            Inbound::Hangup => {
                self.server.hangup(&self.call, "agent");
                vec![]
            }
            Inbound::CallerAudio { enabled, format } => {
                let format = match format.as_deref() {
                    None | Some("pcmu") => AudioFormat::Pcmu,
                    Some("pcm16") => AudioFormat::Pcm16,
                    Some(other) => return vec![error("invalid_message", format!("unknown audio format `{other}`: use pcmu or pcm16"))],
                };
                self.audio_format = enabled.then_some(format);
                self.call.media.subscribe_caller_audio(enabled);
                vec![]
            }
        }
    }

    fn check_voice(&self, voice: Option<&str>) -> Result<(), Out> {
        match voice {
            Some(v) if !self.server.speech.has_voice(v) => {
                Err(error("unknown_voice", format!("no voice `{v}`; available: {}", self.server.speech.voice_names().join(", "))))
            }
            _ => Ok(()),
        }
    }

    fn send_dtmf(&mut self, digits: &str, duration_ms: Option<u64>) -> Vec<Out> {
        let duration = Duration::from_millis(duration_ms.unwrap_or(100));
        match self.call.media.send_dtmf(digits, duration) {
            Ok(()) => vec![],
            Err(crate::media::DtmfSendError::NotNegotiated) => {
                vec![error("unsupported", "the caller did not offer telephone-event (RFC 4733), so digits cannot be sent")]
            }
            Err(e) => vec![error("invalid_message", e.to_string())],
        }
    }

    /// The segmentation a turn opened now would get.
    fn next_segmenter_config(&self) -> SegmenterConfig {
        segmenter_config(self.base_options().preset.unwrap_or_default(), self.defaults.segment)
    }

    #[allow(clippy::too_many_arguments)]
    fn speak(
        &mut self,
        text: String,
        turn: Option<String>,
        flush: bool,
        last: bool,
        voice: Option<String>,
        preset: Option<Preset>,
        preemptible: bool,
    ) -> Vec<Out> {
        if text.chars().count() > MAX_REQUEST_CHARS {
            return vec![error("text_too_long", format!("one message carries at most {MAX_REQUEST_CHARS} characters"))];
        }
        let now = Instant::now();
        let mut out = Vec::new();
        // A new turn id ends the current turn's text.
        let current = self.turns.back().filter(|t| !t.last).map(|t| t.id.clone());
        match (&turn, &current) {
            (Some(new), Some(cur)) if new != cur => {
                let rest = self.segmenter.flush();
                self.speak_clauses(rest);
                self.finish_turn_text();
                self.preempt();
                self.open_turn(Some(new.clone()), now, preset);
            }
            (_, None) => {
                self.preempt();
                self.open_turn(turn, now, preset);
            }
            _ => {}
        }
        if let Some(t) = self.turns.back_mut() {
            if voice.is_some() {
                t.voice = voice;
            }
            if preset.is_some() {
                t.options.preset = preset;
            }
            t.preemptible |= preemptible;
        }
        let mut clauses = self.segmenter.push(now, &text);
        if flush {
            clauses.extend(self.segmenter.flush());
        }
        self.speak_clauses(clauses);
        if last {
            self.finish_turn_text();
            out.extend(self.check_done());
        }
        out
    }

    /// ConversationRelay: a new turn cuts off a still-playing preemptible one
    /// (no `interrupt` event: the caller did not interrupt).
    fn preempt(&mut self) {
        if self.turns.iter().any(|t| t.preemptible && !t.done) {
            let _ = self.clear();
        }
    }

    fn open_turn(&mut self, id: Option<String>, now: Instant, preset: Option<Preset>) {
        let id = id.unwrap_or_else(|| {
            let n = self.next_turn;
            self.next_turn += 1;
            format!("turn-{n}")
        });
        let mut options = self.base_options();
        if preset.is_some() {
            options.preset = preset;
        }
        // The segmenter is empty between turns: give it the turn's cutting rules.
        let config = segmenter_config(options.preset.unwrap_or_default(), self.defaults.segment);
        if self.segmenter.pending().is_empty() && *self.segmenter.config() != config {
            self.segmenter = Segmenter::new(config);
        }
        self.turns.push_back(Turn {
            id,
            first_text: now,
            utterances: Vec::new(),
            open: 0,
            started: false,
            last: false,
            done: false,
            heard: Vec::new(),
            heard_ms: 0,
            voice: None,
            options,
            preemptible: false,
        });
        // Keep the bookkeeping bounded.
        while self.turns.len() > 64 {
            if let Some(old) = self.turns.pop_front() {
                for u in old.utterances {
                    self.utterances.remove(&u);
                }
            }
        }
    }

    fn finish_turn_text(&mut self) {
        if let Some(t) = self.turns.back_mut() {
            t.last = true;
        }
    }

    fn speak_clauses(&mut self, clauses: Vec<String>) {
        if clauses.is_empty() {
            return;
        }
        if self.turns.back().is_none_or(|t| t.last) {
            self.open_turn(None, Instant::now(), None);
        }
        let (voice, options) = self.turns.back().map(|t| (t.voice.clone().or(self.defaults.voice.clone()), t.options.clone())).unwrap_or_default();
        for clause in clauses {
            let token = self.call.cancel_token();
            let utterance = self.server.speech.speak(&self.call.media, &clause, voice.as_deref(), options.clone(), token);
            if let Some(turn) = self.turns.back_mut() {
                turn.utterances.push(utterance);
                turn.open += 1;
                self.utterances.insert(utterance, (turn.id.clone(), clause));
            }
        }
    }

    fn turn_mut(&mut self, id: &str) -> Option<&mut Turn> {
        self.turns.iter_mut().find(|t| t.id == id)
    }

    fn handle_media(&mut self, media: MediaEvent) -> Vec<Out> {
        match media {
            MediaEvent::Playout(PlayoutEvent::Started { utterance, at, waited }) => {
                let Some((turn_id, text)) = self.utterances.get(&utterance).cloned() else { return vec![] };
                let Some(turn) = self.turn_mut(&turn_id) else { return vec![] };
                let mut out = Vec::new();
                if !turn.started {
                    turn.started = true;
                    let ttfa = at.saturating_duration_since(turn.first_text);
                    out.push(event(json!({"type": "speech.started", "turn": turn_id, "utterance": utterance, "text": text,
                        "ttfa_ms": ttfa.as_secs_f64() * 1000.0, "jitter_wait_ms": waited.as_secs_f64() * 1000.0})));
                }
                out
            }
            MediaEvent::Playout(PlayoutEvent::Word { utterance, text, offset }) => {
                let Some((turn_id, _)) = self.utterances.get(&utterance).cloned() else { return vec![] };
                vec![event(json!({"type": "word", "turn": turn_id, "utterance": utterance, "text": text, "offset_ms": offset.as_millis() as u64}))]
            }
            MediaEvent::Playout(PlayoutEvent::Finished { utterance, played, underruns }) => {
                let Some((turn_id, text)) = self.utterances.remove(&utterance) else { return vec![] };
                if let Some(turn) = self.turn_mut(&turn_id) {
                    turn.open = turn.open.saturating_sub(1);
                    turn.heard.push(text);
                    turn.heard_ms += played.as_millis() as u64;
                }
                let mut out = vec![event(json!({"type": "utterance.done", "turn": turn_id, "utterance": utterance,
                    "played_ms": played.as_millis() as u64, "underruns": underruns}))];
                out.extend(self.check_done());
                out
            }
            MediaEvent::Playout(PlayoutEvent::Mark { name }) => vec![event(json!({"type": "mark", "name": name}))],
            MediaEvent::Dtmf { digit, duration_ms } => vec![event(json!({"type": "dtmf", "digit": digit.to_string(), "duration_ms": duration_ms}))],
            MediaEvent::CallerAudio { pcmu, .. } => match self.audio_format {
                Some(AudioFormat::Pcmu) => vec![Out::Audio(pcmu)],
                Some(AudioFormat::Pcm16) => {
                    let pcm = crate::audio::decode_mulaw_i16(&pcmu);
                    vec![Out::Audio(pcm.iter().flat_map(|s| s.to_le_bytes()).collect())]
                }
                None => vec![],
            },
            MediaEvent::PeerReport(_) => vec![],
            MediaEvent::Ended { reason } => vec![event(json!({"type": "call.ended", "reason": reason}))],
        }
    }

    /// `speech.done` for every turn whose text is complete and fully played.
    fn check_done(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        for turn in self.turns.iter_mut().filter(|t| t.last && t.open == 0 && !t.done) {
            turn.done = true;
            out.push(event(json!({"type": "speech.done", "turn": turn.id, "text": turn.heard.join(" "), "played_ms": turn.heard_ms})));
        }
        out
    }

    fn clear(&mut self) -> Out {
        let cleared = self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.call.cancel_speech();
        let dropped_text = self.segmenter.clear();
        let mut turn_id = self.turns.back().map(|t| t.id.clone());
        for c in &cleared {
            let Some((tid, _)) = self.utterances.remove(&c.utterance) else { continue };
            if c.started {
                turn_id = Some(tid.clone());
            }
            if let Some(turn) = self.turn_mut(&tid) {
                turn.open = turn.open.saturating_sub(1);
                turn.heard.extend(c.heard.iter().cloned());
                turn.heard_ms += c.played.as_millis() as u64;
                turn.last = true;
                turn.done = true;
            }
        }
        for turn in self.turns.iter_mut() {
            turn.last = true;
            turn.done = true;
        }
        let (heard, heard_ms) = turn_id
            .as_deref()
            .and_then(|id| self.turns.iter().find(|t| t.id == id))
            .map_or((String::new(), 0), |t| (t.heard.join(" "), t.heard_ms));
        event(json!({"type": "cleared", "turn": turn_id, "heard_text": heard, "heard_ms": heard_ms,
            "dropped_text": dropped_text, "dropped_utterances": cleared.len()}))
    }

    fn backpressure(&mut self) -> Vec<Out> {
        let queued = self.call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).queued();
        let flip = if self.paused { queued < RESUME_BELOW } else { queued > PAUSE_ABOVE };
        if !flip {
            return vec![];
        }
        self.paused = !self.paused;
        vec![event(json!({"type": "backpressure", "paused": self.paused, "queued_s": queued.as_secs_f64(),
            "pause_above_s": PAUSE_ABOVE.as_secs_f64(), "resume_below_s": RESUME_BELOW.as_secs_f64()}))]
    }
}
