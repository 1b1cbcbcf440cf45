//! One control session, sans I/O: the agent's requests and the call's media
//! events in, the events the agent hears out. It owns the clause segmenter,
//! the turns it started and which utterances belong to them; it reaches the
//! call only through [`CallPort`], and takes the time as an argument, so it
//! is tested with a fake call and fake time.
//!
//! Turns: text opens a turn (or continues the current one); `last` ends its
//! text; `speech.done` follows once every utterance of a finished turn has
//! played. `clear` (barge-in) drops queued text and audio and answers with
//! what the caller heard. Backpressure: `paused` once [`PAUSE_ABOVE`] of
//! audio is queued, `resumed` below [`RESUME_BELOW`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::in_dialog::{InDialog, INFO_DTMF_DURATION_MS};
use super::protocol::{CallEvent, DtmfMethod, Interruptible, Request, SpeakRequest};
use crate::media::{ClearedUtterance, DtmfSendError, MediaEvent, PlayoutEvent, UtteranceId};
use crate::synth::{Preset, SynthOptions, MAX_REQUEST_CHARS};
use crate::text::{Policy, Segmenter, SegmenterConfig};

/// Backpressure: `paused` once this much audio is queued, `resumed` below the low mark.
pub const PAUSE_ABOVE: Duration = Duration::from_secs(20);
pub const RESUME_BELOW: Duration = Duration::from_secs(5);
/// Turns remembered (older ones are forgotten).
const MAX_TURNS: usize = 64;

/// What a session may do to its call.
pub trait CallPort {
    /// Queues `clause` for synthesis into the call's playout.
    fn speak(&mut self, clause: &str, voice: Option<&str>, options: SynthOptions) -> UtteranceId;
    /// Drops queued audio and cancels synthesis (barge-in).
    fn clear(&mut self) -> Vec<ClearedUtterance>;
    fn mark(&mut self, name: String);
    /// Audio queued and not yet sent.
    fn queued(&self) -> Duration;
    fn send_dtmf(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfSendError>;
    /// Whether the call is a SIP call (transfer and INFO DTMF need one).
    fn is_sip(&self) -> bool;
    /// Asks the SIP task for a blind transfer (REFER) or DTMF as SIP INFO; the outcome comes
    /// back as [`MediaEvent::Signal`].
    fn in_dialog(&mut self, request: InDialog);
    fn hangup(&mut self);
    fn caller_audio(&mut self, enabled: bool);
    fn has_voice(&self, voice: &str) -> bool;
    fn voice_names(&self) -> Vec<String>;
    /// The server's default voice.
    fn default_voice(&self) -> String;
}

/// How the socket's turns are spoken unless a turn says otherwise.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub voice: Option<String>,
    pub preset: Option<Preset>,
    /// Overrides the preset's segmentation.
    pub segment: Option<Policy>,
    /// What of the caller's stops a turn's speech by itself (ConversationRelay's
    /// `interruptible`); `None`: nothing, the agent sends `clear`.
    pub interruptible: Option<Interruptible>,
}

impl Defaults {
    pub fn new(voice: Option<String>, preset: Option<Preset>) -> Self {
        Self { voice, preset, segment: None, interruptible: None }
    }
}

pub fn parse_segment(name: &str) -> Result<Policy, String> {
    match name {
        "clause" => Ok(Policy::Clause),
        "sentence" => Ok(Policy::Sentence),
        other => Err(format!("unknown segment policy `{other}`: clause or sentence")),
    }
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

/// What a session sends: events, and caller audio as binary frames.
#[derive(Debug, PartialEq)]
pub enum Out {
    Event(CallEvent),
    Audio(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AudioFormat {
    Pcmu,
    Pcm16,
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
    /// ConversationRelay `interruptible`: what of the caller's cuts it off.
    interruptible: Option<Interruptible>,
}

pub struct Session<P: CallPort> {
    port: P,
    /// The server's voice options (speaker, scales, preset).
    base: SynthOptions,
    defaults: Defaults,
    segmenter: Segmenter,
    turns: VecDeque<Turn>,
    /// utterance -> (turn id, text)
    utterances: HashMap<UtteranceId, (String, String)>,
    next_turn: u64,
    audio_format: Option<AudioFormat>,
    paused: bool,
}

impl<P: CallPort> Session<P> {
    pub fn new(port: P, base: SynthOptions, defaults: Defaults) -> Self {
        let preset = defaults.preset.or(base.preset).unwrap_or_default();
        Self {
            port,
            segmenter: Segmenter::new(segmenter_config(preset, defaults.segment)),
            base,
            defaults,
            turns: VecDeque::new(),
            utterances: HashMap::new(),
            next_turn: 1,
            audio_format: None,
            paused: false,
        }
    }

    /// The voice a turn with `voice` set (or not) speaks with.
    pub fn voice(&self, voice: Option<&str>) -> String {
        voice.or(self.defaults.voice.as_deref()).map_or_else(|| self.port.default_voice(), str::to_owned)
    }

    pub fn voice_names(&self) -> Vec<String> {
        self.port.voice_names()
    }

    /// Takes an utterance the call queued before the socket attached (the
    /// greeting) as a finished turn `turn` of this session: its events
    /// (`speech.started`, `word`, `speech.done`) are the agent's too.
    /// `queued`: when it was queued (its `ttfa_ms` counts from there).
    pub fn adopt(&mut self, utterance: UtteranceId, turn: &str, text: String, queued: Instant) {
        self.turns.push_back(Turn {
            id: turn.to_owned(),
            first_text: queued,
            utterances: vec![utterance],
            open: 1,
            started: false,
            last: true,
            done: false,
            heard: Vec::new(),
            heard_ms: 0,
            voice: None,
            options: self.base.clone(),
            preemptible: false,
            interruptible: self.defaults.interruptible,
        });
        self.utterances.insert(utterance, (turn.to_owned(), text));
    }

    /// When the segmenter wants [`Self::poll`] called.
    pub fn deadline(&self) -> Option<Instant> {
        self.segmenter.deadline()
    }

    /// Speaks what the segmenter released by `now` (a clause waited long enough).
    pub fn poll(&mut self, now: Instant) {
        let clauses = self.segmenter.poll(now);
        self.speak_clauses(now, clauses);
    }

    /// The session is over: stop sending caller audio to it.
    pub fn close(&mut self) {
        if self.audio_format.take().is_some() {
            self.port.caller_audio(false);
        }
    }

    fn base_options(&self) -> SynthOptions {
        let mut options = self.base.clone();
        if self.defaults.preset.is_some() {
            options.preset = self.defaults.preset;
        }
        options
    }

    fn check_voice(&self, voice: Option<&str>) -> Result<(), CallEvent> {
        match voice {
            Some(v) if !self.port.has_voice(v) => {
                Err(CallEvent::error("unknown_voice", format!("no voice `{v}`; available: {}", self.port.voice_names().join(", "))))
            }
            _ => Ok(()),
        }
    }

    /// Handles one request from the agent.
    pub fn request(&mut self, now: Instant, request: Request) -> Vec<CallEvent> {
        match self.try_request(now, request) {
            Ok(events) => events,
            Err(e) => vec![e],
        }
    }

    fn try_request(&mut self, now: Instant, request: Request) -> Result<Vec<CallEvent>, CallEvent> {
        let preset = |name: Option<&str>| name.map(Preset::from_name).transpose().map_err(|e| CallEvent::error("invalid_message", e));
        Ok(match request {
            Request::Speak(speak) => {
                self.check_voice(speak.voice.as_deref())?;
                let p = preset(speak.preset.as_deref())?;
                self.speak(now, speak, p)?
            }
            Request::Configure { voice, preset: name, segment } => {
                self.check_voice(voice.as_deref())?;
                let p = preset(name.as_deref())?;
                let segment = segment.as_deref().map(parse_segment).transpose().map_err(|e| CallEvent::error("invalid_message", e))?;
                if voice.is_some() {
                    self.defaults.voice = voice;
                }
                if p.is_some() {
                    self.defaults.preset = p;
                }
                if segment.is_some() {
                    self.defaults.segment = segment;
                }
                let segment = match self.next_segmenter_config().policy {
                    Policy::Clause => "clause",
                    Policy::Sentence => "sentence",
                };
                vec![CallEvent::Configured { voice: self.voice(None), preset: self.base_options().preset.unwrap_or_default().name(), segment }]
            }
            Request::SendDtmf { digits, duration_ms, method: DtmfMethod::Info } => {
                let duration = Duration::from_millis(duration_ms.unwrap_or(INFO_DTMF_DURATION_MS));
                self.in_dialog("DTMF over SIP INFO", InDialog::info_dtmf(digits, duration)?)?
            }
            Request::Transfer { to } => self.in_dialog("transfer", InDialog::transfer(to)?)?,
            Request::SendDtmf { digits, duration_ms, .. } => {
                let duration = Duration::from_millis(duration_ms.unwrap_or(100));
                match self.port.send_dtmf(&digits, duration) {
                    Ok(()) => vec![],
                    Err(DtmfSendError::NotNegotiated) => {
                        vec![CallEvent::error("unsupported", "the caller did not offer telephone-event (RFC 4733), so digits cannot be sent")]
                    }
                    Err(e) => vec![CallEvent::error("invalid_message", e.to_string())],
                }
            }
            Request::Flush => {
                let clauses = self.segmenter.flush();
                self.speak_clauses(now, clauses);
                vec![]
            }
            Request::Clear => vec![self.clear()],
            Request::Mark { name } => {
                self.port.mark(name);
                vec![]
            }
            Request::Hangup => {
                self.port.hangup();
                vec![]
            }
            // The transport's loop hands the call off (`call.handoff`) and detaches.
            Request::End { .. } => vec![],
            Request::CallerAudio { enabled, format } => {
                let format = match format.as_deref() {
                    None | Some("pcmu") => AudioFormat::Pcmu,
                    Some("pcm16") => AudioFormat::Pcm16,
                    Some(other) => return Err(CallEvent::error("invalid_message", format!("unknown audio format `{other}`: use pcmu or pcm16"))),
                };
                self.audio_format = enabled.then_some(format);
                self.port.caller_audio(enabled);
                vec![]
            }
        })
    }

    /// Hands a request for the call's SIP dialog to its port; a WebRTC call has no dialog.
    fn in_dialog(&mut self, what: &str, request: InDialog) -> Result<Vec<CallEvent>, CallEvent> {
        if !self.port.is_sip() {
            return Err(CallEvent::error("unsupported", format!("{what} needs a SIP call; this one is WebRTC")));
        }
        self.port.in_dialog(request);
        Ok(vec![])
    }

    /// The segmentation a turn opened now would get.
    fn next_segmenter_config(&self) -> SegmenterConfig {
        segmenter_config(self.base_options().preset.unwrap_or_default(), self.defaults.segment)
    }

    fn speak(&mut self, now: Instant, request: SpeakRequest, preset: Option<Preset>) -> Result<Vec<CallEvent>, CallEvent> {
        let SpeakRequest { text, turn, flush, last, voice, preemptible, interruptible, .. } = request;
        if text.chars().count() > MAX_REQUEST_CHARS {
            return Err(CallEvent::error("text_too_long", format!("one message carries at most {MAX_REQUEST_CHARS} characters")));
        }
        // A new turn id ends the current turn's text.
        let current = self.turns.back().filter(|t| !t.last).map(|t| t.id.clone());
        match (&turn, &current) {
            (Some(new), Some(cur)) if new != cur => {
                let rest = self.segmenter.flush();
                self.speak_clauses(now, rest);
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
            if interruptible.is_some() {
                t.interruptible = interruptible;
            }
        }
        let mut clauses = self.segmenter.push(now, &text);
        if flush {
            clauses.extend(self.segmenter.flush());
        }
        self.speak_clauses(now, clauses);
        if last {
            self.finish_turn_text();
            return Ok(self.check_done());
        }
        Ok(vec![])
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
            interruptible: self.defaults.interruptible,
        });
        while self.turns.len() > MAX_TURNS {
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

    fn speak_clauses(&mut self, now: Instant, clauses: Vec<String>) {
        if clauses.is_empty() {
            return;
        }
        if self.turns.back().is_none_or(|t| t.last) {
            self.open_turn(None, now, None);
        }
        let (voice, options) = self.turns.back().map(|t| (t.voice.clone().or(self.defaults.voice.clone()), t.options.clone())).unwrap_or_default();
        for clause in clauses {
            let utterance = self.port.speak(&clause, voice.as_deref(), options.clone());
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

    /// Turns one of the call's media events into what the agent hears.
    pub fn media(&mut self, event: MediaEvent) -> Vec<Out> {
        let events = match event {
            MediaEvent::Playout(event) => self.playout(*event),
            MediaEvent::Dtmf { digit, duration_ms } => {
                let mut out = Vec::new();
                if self.dtmf_interrupts() {
                    out.push(self.clear());
                }
                out.push(CallEvent::Dtmf { digit: digit.to_string(), duration_ms });
                out
            }
            MediaEvent::CallerAudio { pcmu, .. } => {
                return match self.audio_format {
                    Some(AudioFormat::Pcmu) => vec![Out::Audio(pcmu)],
                    Some(AudioFormat::Pcm16) => {
                        let pcm = crate::audio::decode_mulaw_i16(&pcmu);
                        vec![Out::Audio(pcm.iter().flat_map(|s| s.to_le_bytes()).collect())]
                    }
                    None => vec![],
                }
            }
            MediaEvent::PeerReport(_) => vec![],
            MediaEvent::Ended { reason } => vec![CallEvent::Ended { reason }],
            MediaEvent::Signal(signal) => vec![CallEvent::signal(*signal)],
        };
        events.into_iter().map(Out::Event).collect()
    }

    /// The agent's events for what the playout did.
    fn playout(&mut self, event: PlayoutEvent) -> Vec<CallEvent> {
        match event {
            PlayoutEvent::Started { utterance, at, waited, .. } => {
                let Some((turn_id, text)) = self.utterances.get(&utterance).cloned() else { return vec![] };
                let Some(turn) = self.turn_mut(&turn_id) else { return vec![] };
                if turn.started {
                    return vec![];
                }
                turn.started = true;
                let ttfa = at.saturating_duration_since(turn.first_text);
                vec![CallEvent::SpeechStarted {
                    turn: turn_id,
                    utterance,
                    text,
                    ttfa_ms: ttfa.as_secs_f64() * 1000.0,
                    jitter_wait_ms: waited.as_secs_f64() * 1000.0,
                }]
            }
            PlayoutEvent::Word { utterance, text, offset } => {
                let Some((turn, _)) = self.utterances.get(&utterance).cloned() else { return vec![] };
                vec![CallEvent::Word { turn, utterance, text, offset_ms: offset.as_millis() as u64 }]
            }
            PlayoutEvent::Finished { utterance, played, underruns } => {
                let Some((turn_id, text)) = self.utterances.remove(&utterance) else { return vec![] };
                if let Some(turn) = self.turn_mut(&turn_id) {
                    turn.open = turn.open.saturating_sub(1);
                    turn.heard.push(text);
                    turn.heard_ms += played.as_millis() as u64;
                }
                let mut out = vec![CallEvent::UtteranceDone { turn: turn_id, utterance, played_ms: played.as_millis() as u64, underruns }];
                out.extend(self.check_done());
                out
            }
            PlayoutEvent::Mark { name } => vec![CallEvent::Mark { name }],
        }
    }

    /// Whether a caller's digit now stops speech: a turn is being spoken
    /// (audio queued or playing) and DTMF may interrupt it.
    fn dtmf_interrupts(&self) -> bool {
        self.turns.iter().any(|t| !t.done && t.open > 0 && t.interruptible.is_some_and(Interruptible::by_dtmf))
    }

    /// `speech.done` for every turn whose text is complete and fully played.
    fn check_done(&mut self) -> Vec<CallEvent> {
        let mut out = Vec::new();
        for turn in self.turns.iter_mut().filter(|t| t.last && t.open == 0 && !t.done) {
            turn.done = true;
            out.push(CallEvent::SpeechDone { turn: turn.id.clone(), text: turn.heard.join(" "), played_ms: turn.heard_ms });
        }
        out
    }

    fn clear(&mut self) -> CallEvent {
        let cleared = self.port.clear();
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
            }
        }
        for turn in self.turns.iter_mut() {
            turn.last = true;
            turn.done = true;
        }
        let (heard_text, heard_ms) = turn_id
            .as_deref()
            .and_then(|id| self.turns.iter().find(|t| t.id == id))
            .map_or((String::new(), 0), |t| (t.heard.join(" "), t.heard_ms));
        CallEvent::Cleared { turn: turn_id, heard_text, heard_ms, dropped_text, dropped_utterances: cleared.len() }
    }

    /// A `backpressure` event when the queued audio crossed a mark.
    pub fn backpressure(&mut self) -> Option<CallEvent> {
        let queued = self.port.queued();
        let flip = if self.paused { queued < RESUME_BELOW } else { queued > PAUSE_ABOVE };
        if !flip {
            return None;
        }
        self.paused = !self.paused;
        Some(CallEvent::Backpressure {
            paused: self.paused,
            queued_s: queued.as_secs_f64(),
            pause_above_s: PAUSE_ABOVE.as_secs_f64(),
            resume_below_s: RESUME_BELOW.as_secs_f64(),
        })
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
