//! One streaming TTS socket, sans-IO: client messages, synthesized chunks
//! and time go in; messages, audio and "synthesize this clause" come out.
//!
//! Text is cut into clauses by the calls' [`Segmenter`] (the default,
//! `balanced` configuration), so the first clause is synthesized as soon as
//! it is complete, not when the text ends. Clauses are synthesized one at a
//! time, in order (the driver runs each through [`crate::speech::Speech::stream`]);
//! the next starts when the last chunk of the one before has arrived.
//! Their audio is one signal: one encoder (resampler) runs across clauses
//! and is flushed only at a `flush` or `close`, so the audio of text sent
//! in pieces is the audio of the same sentences sent whole.
//!
//! Time in the stream (word timings, `audio_ms`) is the audio sent: the
//! output samples before the current segment (everything up to the last
//! `flush` or `clear`) plus, within it, the engine's samples, which the
//! flushed resampler turns into exactly `round(n * rate / engine_rate)`
//! output samples.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::messages::{Encoding, FromClient, StartFields, TimingSource, ToClient, WordTiming};
use crate::server::tts_api::format::{Encoder, ResponseFormat, PCM_RATE, PCM_RATES};
use crate::server::tts_api::request::{check_voice, synth_options, MAX_INPUT_CHARS};
use crate::speech::Synthesized;
use crate::synth::{AlignmentKind, PcmChunk, Preset, SynthOptions};
use crate::text::{Segmenter, SegmenterConfig};

/// The close code of a stream that ended as asked (RFC 6455 7.4.1).
pub const NORMAL_CLOSURE: u16 = 1000;

/// What the driver does for the session.
#[derive(Debug)]
pub enum Action {
    /// A JSON text frame.
    Send(ToClient),
    /// Audio as a binary frame.
    Binary(Vec<u8>),
    /// Synthesize `text` (the audio comes back through [`Session::on_audio`]);
    /// `ahead`: audio the client has and has not played yet.
    Synthesize { text: String, voice: String, options: SynthOptions, ahead: Duration },
    /// Drop the clause being synthesized (its receiver: that cancels it).
    Cancel,
    /// Close the socket; nothing follows.
    Close { code: u16, reason: String },
}

/// The stream's settings, from `start`.
#[derive(Debug, Clone)]
struct Settings {
    voice: String,
    options: SynthOptions,
    format: ResponseFormat,
    rate: u32,
    encoding: Encoding,
}

impl Settings {
    fn bytes_per_sample(&self) -> u64 {
        if self.format == ResponseFormat::Pcm {
            2
        } else {
            1
        }
    }
}

#[derive(Debug)]
enum Queued {
    Clause(String),
    Flush(Option<String>),
    Close,
}

/// The clause being synthesized.
struct Clause {
    text: String,
    /// Engine samples received so far.
    samples: u64,
    /// Whether the engine gave word timings for it.
    timed: bool,
}

pub struct Session {
    voices: Vec<String>,
    default_voice: String,
    base: SynthOptions,
    settings: Option<Settings>,
    segmenter: Segmenter,
    queue: VecDeque<Queued>,
    current: Option<Clause>,
    encoder: Option<Encoder>,
    /// The engine's rate (from its first chunk).
    engine_rate: u32,
    /// Output samples sent.
    sent: u64,
    /// `sent` when the current segment began (start, each flush, each clear).
    segment_base: u64,
    /// Engine samples of the segment's finished clauses.
    segment_samples: u64,
    /// When the client's audio began to play, as if in real time, and `sent` then.
    playing: Option<(Instant, u64)>,
    closing: bool,
    closed: bool,
    out: VecDeque<Action>,
}

impl Session {
    /// `voices`: those a stream may pick; `default_voice` when `start` names
    /// none; `base`: the server's synthesis options.
    pub fn new(voices: Vec<String>, default_voice: String, base: SynthOptions) -> Self {
        Self {
            voices,
            default_voice,
            base,
            settings: None,
            segmenter: Segmenter::new(SegmenterConfig::default()),
            queue: VecDeque::new(),
            current: None,
            encoder: None,
            engine_rate: 0,
            sent: 0,
            segment_base: 0,
            segment_samples: 0,
            playing: None,
            closing: false,
            closed: false,
            out: VecDeque::new(),
        }
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`Session::poll`] is due: text waiting for a clause end is
    /// spoken after the segmenter's `max_wait`.
    pub fn deadline(&self) -> Option<Instant> {
        self.settings.as_ref().and(self.segmenter.deadline()).filter(|_| !self.closed)
    }

    pub fn poll(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let clauses = self.segmenter.poll(now);
        self.enqueue(clauses);
        self.advance(now);
    }

    /// A text frame from the client.
    pub fn on_text(&mut self, now: Instant, raw: &str) {
        if self.closed {
            return;
        }
        let message = match serde_json::from_str::<FromClient>(raw) {
            Ok(m) => m,
            Err(e) if e.is_syntax() || e.is_eof() => return self.error("invalid_json", format!("not JSON: {e}")),
            Err(e) => {
                let hint = "{\"type\": \"start\" | \"text\" | \"flush\" | \"clear\" | \"close\", ...}";
                return self.error("invalid_message", format!("{e}: send {hint}"));
            }
        };
        let started = self.settings.is_some();
        match message {
            FromClient::Start(fields) => self.start(fields),
            FromClient::Close if !started => self.close_now(),
            _ if !started => self.error("not_started", "send `start` first: {\"type\": \"start\", \"format\": \"pcm\", \"sample_rate\": 24000}"),
            _ if self.closing => self.error("closing", "`close` was sent: the stream takes nothing more"),
            FromClient::Text { text } => self.text(now, &text),
            FromClient::Flush { id } => {
                let clauses = self.segmenter.flush();
                self.enqueue(clauses);
                self.queue.push_back(Queued::Flush(id));
                self.advance(now);
            }
            FromClient::Clear => self.clear(),
            FromClient::Close => {
                let clauses = self.segmenter.flush();
                self.enqueue(clauses);
                self.queue.push_back(Queued::Close);
                self.closing = true;
                self.advance(now);
            }
        }
    }

    /// A binary frame from the client: refused, the socket stays open.
    pub fn on_binary(&mut self) {
        if !self.closed {
            self.error("binary_not_accepted", "binary frames are not accepted: send JSON text messages");
        }
    }

    /// What the synthesizer handed over for the current clause.
    pub fn on_audio(&mut self, now: Instant, synthesized: Synthesized) {
        if self.closed || self.current.is_none() {
            return;
        }
        match synthesized {
            Synthesized::Chunk(chunk) => self.chunk(now, chunk),
            Synthesized::Failed(message) => {
                self.current = None;
                self.error("synthesis_failed", message);
                self.advance(now);
            }
        }
    }

    /// The current clause's audio ended without its last chunk.
    pub fn on_audio_end(&mut self, now: Instant) {
        if !self.closed && self.current.is_some() {
            self.finish_clause(now);
        }
    }

    fn start(&mut self, fields: StartFields) {
        if self.settings.is_some() {
            return self.error("already_started", "`start` comes once per stream: open another socket for other settings");
        }
        match self.settings_from(fields) {
            Ok(settings) => {
                let format = if settings.format == ResponseFormat::Pcm { "pcm" } else { "ulaw" };
                let ready = ToClient::Ready { voice: settings.voice.clone(), format, sample_rate: settings.rate, encoding: settings.encoding };
                self.settings = Some(settings);
                self.send(ready);
            }
            Err((code, message)) => self.error(code, message),
        }
    }

    fn settings_from(&self, fields: StartFields) -> Result<Settings, (&'static str, String)> {
        let voice = fields.voice.unwrap_or_else(|| self.default_voice.clone());
        check_voice(&voice, &self.voices).map_err(|e| (e.code, e.message))?;
        let (format, rate) = match fields.format.as_str() {
            "pcm" => (ResponseFormat::Pcm, fields.sample_rate.unwrap_or(PCM_RATE)),
            "ulaw" | "mulaw" => (ResponseFormat::Ulaw, fields.sample_rate.unwrap_or(crate::media::RATE)),
            other => return Err(("unsupported_format", format!("`format` \"{other}\": \"pcm\" (16-bit at `sample_rate`) or \"ulaw\" (8 kHz)"))),
        };
        let rates: &[u32] = if format == ResponseFormat::Pcm { &PCM_RATES } else { &[crate::media::RATE] };
        if !rates.contains(&rate) {
            return Err(("unsupported_sample_rate", format!("`sample_rate` {rate} for \"{}\": one of {rates:?}", fields.format)));
        }
        let encoding = Encoding::parse(fields.encoding.as_deref()).map_err(|m| ("unsupported_encoding", m))?;
        if let Some(preset) = &fields.preset {
            Preset::from_name(preset).map_err(|m| ("unknown_preset", m))?;
        }
        let options = synth_options(&self.base, fields.preset.as_deref(), fields.speed).map_err(|e| (e.code, e.message))?;
        Ok(Settings { voice, options, format, rate, encoding })
    }

    fn text(&mut self, now: Instant, text: &str) {
        let chars = text.chars().count();
        if chars == 0 {
            return self.error("empty_text", "`text` is empty");
        }
        if chars > MAX_INPUT_CHARS {
            return self.error("input_too_long", format!("`text` has {chars} characters; at most {MAX_INPUT_CHARS} a message (split it)"));
        }
        let queued: usize = self.queue.iter().map(|q| if let Queued::Clause(c) = q { c.chars().count() } else { 0 }).sum();
        let waiting = queued + self.segmenter.pending().chars().count();
        if waiting + chars > MAX_INPUT_CHARS {
            let message = format!("{waiting} characters already wait for synthesis; at most {MAX_INPUT_CHARS} may (send it once audio has come)");
            return self.error("input_too_long", message);
        }
        let clauses = self.segmenter.push(now, text);
        self.enqueue(clauses);
        self.advance(now);
    }

    fn clear(&mut self) {
        self.segmenter.clear();
        self.queue.clear();
        if self.current.take().is_some() {
            self.out.push_back(Action::Cancel);
        }
        // What the resampler held back is dropped with it.
        self.encoder = None;
        self.segment_base = self.sent;
        self.segment_samples = 0;
        self.playing = None;
        let audio_ms = self.sent_ms();
        self.send(ToClient::Cleared { audio_ms });
    }

    fn close_now(&mut self) {
        self.closed = true;
        self.out.push_back(Action::Close { code: NORMAL_CLOSURE, reason: "done".into() });
    }

    fn enqueue(&mut self, clauses: Vec<String>) {
        self.queue.extend(clauses.into_iter().map(Queued::Clause));
    }

    /// Starts the next clause, or answers the flushes and the close it reaches.
    fn advance(&mut self, now: Instant) {
        while self.current.is_none() && !self.closed {
            let Some(settings) = self.settings.clone() else { return };
            match self.queue.pop_front() {
                None => return,
                Some(Queued::Clause(text)) => {
                    let ahead = self.ahead(now, &settings);
                    self.current = Some(Clause { text: text.clone(), samples: 0, timed: false });
                    self.out.push_back(Action::Synthesize { text, voice: settings.voice, options: settings.options, ahead });
                }
                Some(Queued::Flush(id)) => {
                    self.release_tail(now);
                    let audio_ms = self.sent_ms();
                    self.send(ToClient::Flushed { id, audio_ms });
                }
                Some(Queued::Close) => {
                    self.release_tail(now);
                    let audio_ms = self.sent_ms();
                    self.send(ToClient::Done { audio_ms });
                    self.close_now();
                }
            }
        }
    }

    fn chunk(&mut self, now: Instant, mut chunk: PcmChunk) {
        let Some(settings) = self.settings.clone() else { return };
        self.engine_rate = chunk.sample_rate;
        if self.encoder.is_none() {
            match Encoder::at(settings.format, chunk.sample_rate, settings.rate) {
                Ok(encoder) => self.encoder = Some(encoder),
                Err(e) => {
                    self.current = None;
                    self.out.push_back(Action::Cancel);
                    self.error("synthesis_failed", e.to_string());
                    return self.advance(now);
                }
            }
        }
        let clause_start = self.segment_samples;
        let words: Vec<WordTiming> = chunk
            .alignments
            .iter()
            .filter(|a| a.kind == AlignmentKind::Word)
            .map(|a| WordTiming { text: a.text.clone(), start_ms: self.segment_ms(clause_start + a.start_sample), end_ms: self.segment_ms(clause_start + a.end_sample) })
            .collect();
        let last = chunk.last;
        // Clauses are one signal: the resampler is flushed at `flush` and `close` only.
        chunk.last = false;
        let bytes = self.encoder.as_mut().map(|e| e.encode(&chunk)).unwrap_or_default();
        if let Some(clause) = self.current.as_mut() {
            clause.samples += chunk.samples.len() as u64;
            clause.timed |= !words.is_empty();
        }
        self.audio(now, bytes, &settings);
        if !words.is_empty() {
            self.send(ToClient::Words { source: TimingSource::Phonemes, words });
        }
        if last {
            self.finish_clause(now);
        }
    }

    fn finish_clause(&mut self, now: Instant) {
        let Some(clause) = self.current.take() else { return };
        let start = self.segment_samples;
        self.segment_samples += clause.samples;
        if !clause.timed && clause.samples > 0 {
            let words = share_by_length(&clause.text, self.segment_ms(start), self.segment_ms(self.segment_samples));
            self.send(ToClient::Words { source: TimingSource::Clause, words });
        }
        self.advance(now);
    }

    /// Sends what the resampler holds and starts a new segment.
    fn release_tail(&mut self, now: Instant) {
        let Some(settings) = self.settings.clone() else { return };
        if let Some(encoder) = self.encoder.as_mut() {
            let end = PcmChunk {
                samples: Vec::new(),
                sample_rate: self.engine_rate,
                start_sample: 0,
                sentence: 0,
                alignments: Vec::new(),
                ready_at: now,
                compute: Duration::ZERO,
                last: true,
            };
            let bytes = encoder.encode(&end);
            self.audio(now, bytes, &settings);
        }
        self.segment_base = self.sent;
        self.segment_samples = 0;
    }

    fn audio(&mut self, now: Instant, bytes: Vec<u8>, settings: &Settings) {
        if bytes.is_empty() {
            return;
        }
        self.playing.get_or_insert((now, self.sent));
        self.sent += bytes.len() as u64 / settings.bytes_per_sample();
        self.out.push_back(match settings.encoding {
            Encoding::Binary => Action::Binary(bytes),
            Encoding::Base64 => Action::Send(ToClient::Audio { audio: base64::engine::general_purpose::STANDARD.encode(&bytes) }),
        });
    }

    /// Audio sent and not yet played, were the client playing it in real time.
    fn ahead(&self, now: Instant, settings: &Settings) -> Duration {
        let Some((since, sent_then)) = self.playing else { return Duration::ZERO };
        let audio = Duration::from_secs_f64((self.sent - sent_then) as f64 / settings.rate as f64);
        (since + audio).saturating_duration_since(now)
    }

    fn sent_ms(&self) -> f64 {
        let rate = self.settings.as_ref().map_or(1, |s| s.rate);
        round_ms(self.sent as f64 * 1000.0 / rate as f64)
    }

    /// Stream time of engine sample `n` of the current segment.
    fn segment_ms(&self, n: u64) -> f64 {
        let rate = self.settings.as_ref().map_or(1, |s| s.rate);
        round_ms(self.segment_base as f64 * 1000.0 / rate as f64 + n as f64 * 1000.0 / self.engine_rate.max(1) as f64)
    }

    fn send(&mut self, message: ToClient) {
        self.out.push_back(Action::Send(message));
    }

    fn error(&mut self, code: &'static str, message: impl Into<String>) {
        self.send(ToClient::Error { code, message: message.into() });
    }
}

/// Milliseconds to a tenth.
fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// A clause's words over its audio, each a share by its length in characters.
fn share_by_length(text: &str, start_ms: f64, end_ms: f64) -> Vec<WordTiming> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let total: usize = words.iter().map(|w| w.chars().count()).sum();
    let mut at = start_ms;
    words
        .into_iter()
        .map(|w| {
            let end = at + (end_ms - start_ms) * w.chars().count() as f64 / total.max(1) as f64;
            let timing = WordTiming { text: w.to_owned(), start_ms: round_ms(at), end_ms: round_ms(end) };
            at = end;
            timing
        })
        .collect()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
