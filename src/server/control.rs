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
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::calls::Call;
use super::sip::SipCommand;
use super::Server;
use crate::media::{MediaEvent, PlayoutEvent, UtteranceId};
use crate::synth::MAX_REQUEST_CHARS;
use crate::text::{Segmenter, SegmenterConfig};

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
}

struct Session {
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

pub async fn upgrade(State(server): State<Arc<Server>>, Path(id): Path<String>, ws: WebSocketUpgrade) -> Response {
    let Some(call) = server.calls.get(&id) else {
        return super::http::error(axum::http::StatusCode::NOT_FOUND, "unknown_call", format!("no call with id `{id}`"));
    };
    ws.max_message_size(MAX_FRAME * 4).max_frame_size(MAX_FRAME * 4).on_upgrade(move |socket| run(server, call, socket)).into_response()
}

fn event(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error(code: &str, message: impl Into<String>) -> Message {
    event(json!({"type": "error", "code": code, "message": message.into()}))
}

async fn run(server: Arc<Server>, call: Arc<Call>, mut socket: WebSocket) {
    let mut events = server.events.subscribe();
    let mut session = Session {
        server: server.clone(),
        call: call.clone(),
        segmenter: Segmenter::new(SegmenterConfig::default()),
        turns: VecDeque::new(),
        utterances: HashMap::new(),
        next_turn: 1,
        audio_format: None,
        paused: false,
    };
    let hello = json!({"type": "call.attached", "call": call.id, "from": call.from, "to": call.to, "state": call.state()});
    if socket.send(event(hello)).await.is_err() {
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
        let out: Vec<Message> = tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => session.handle_text(text.as_str()),
                Some(Ok(Message::Binary(_))) => vec![error("unsupported", "binary frames from the agent are not accepted")],
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => vec![],
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
        let ended = out.iter().any(|m| matches!(m, Message::Text(t) if t.as_str().contains("\"call.ended\"")));
        for m in out {
            if socket.send(m).await.is_err() {
                return;
            }
        }
        if ended {
            let _ = socket.send(Message::Close(None)).await;
            break;
        }
    }
    if session.audio_format.is_some() {
        call.media.subscribe_caller_audio(false);
    }
}

impl Session {
    fn handle_text(&mut self, text: &str) -> Vec<Message> {
        if text.len() > MAX_FRAME {
            return vec![error("frame_too_large", format!("a message is at most {MAX_FRAME} bytes; this one is {}", text.len()))];
        }
        let message: Inbound = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                let code = if serde_json::from_str::<Value>(text).is_ok() { "invalid_message" } else { "malformed_json" };
                return vec![error(code, e.to_string())];
            }
        };
        match message {
            Inbound::Speak { text, turn, flush, last } => self.speak(text, turn, flush || last, last),
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
                let _ = self.server.sip.send(SipCommand::Hangup { call: self.call.sip, reason: "agent" });
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

    fn speak(&mut self, text: String, turn: Option<String>, flush: bool, last: bool) -> Vec<Message> {
        if text.chars().count() > MAX_REQUEST_CHARS {
            return vec![error("text_too_long", format!("one message carries at most {MAX_REQUEST_CHARS} characters"))];
        }
        let now = Instant::now();
        // A new turn id ends the current turn's text.
        let current = self.turns.back().filter(|t| !t.last).map(|t| t.id.clone());
        match (&turn, &current) {
            (Some(new), Some(cur)) if new != cur => {
                let rest = self.segmenter.flush();
                self.speak_clauses(rest);
                self.finish_turn_text();
                self.open_turn(Some(new.clone()), now);
            }
            (_, None) => self.open_turn(turn, now),
            _ => {}
        }
        let mut clauses = self.segmenter.push(now, &text);
        if flush {
            clauses.extend(self.segmenter.flush());
        }
        self.speak_clauses(clauses);
        let mut out = Vec::new();
        if last {
            self.finish_turn_text();
            out.extend(self.check_done());
        }
        out
    }

    fn open_turn(&mut self, id: Option<String>, now: Instant) {
        let id = id.unwrap_or_else(|| {
            let n = self.next_turn;
            self.next_turn += 1;
            format!("turn-{n}")
        });
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
            self.open_turn(None, Instant::now());
        }
        for clause in clauses {
            let token = self.call.cancel_token();
            let utterance = self.server.speech.speak(&self.call.media, &clause, Default::default(), token);
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

    fn handle_media(&mut self, media: MediaEvent) -> Vec<Message> {
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
                Some(AudioFormat::Pcmu) => vec![Message::Binary(pcmu.into())],
                Some(AudioFormat::Pcm16) => {
                    let pcm = crate::audio::decode_mulaw_i16(&pcmu);
                    vec![Message::Binary(pcm.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>().into())]
                }
                None => vec![],
            },
            MediaEvent::PeerReport(_) => vec![],
            MediaEvent::Ended { reason } => vec![event(json!({"type": "call.ended", "reason": reason}))],
        }
    }

    /// `speech.done` for every turn whose text is complete and fully played.
    fn check_done(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        for turn in self.turns.iter_mut().filter(|t| t.last && t.open == 0 && !t.done) {
            turn.done = true;
            out.push(event(json!({"type": "speech.done", "turn": turn.id, "text": turn.heard.join(" "), "played_ms": turn.heard_ms})));
        }
        out
    }

    fn clear(&mut self) -> Message {
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

    fn backpressure(&mut self) -> Vec<Message> {
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
