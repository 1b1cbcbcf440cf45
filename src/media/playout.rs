//! A call's playout buffer: what the packetizer sends next.
//!
//! Synthesis pushes mu-law bytes into utterances; the pacing clock asks for
//! exactly one 20 ms frame per tick ([`Playout::tick`]) and always gets one, so
//! the RTP timestamp never jumps: silence between utterances, silence while an
//! utterance waits for its prefill, silence (counted as an underrun) when
//! synthesis falls behind inside an utterance.
//!
//! Edge silence is trimmed where the caller would hear it as waiting: an
//! utterance that starts a talkspurt skips its leading silence down to
//! [`MAX_LEAD`], so the marker packet carries sound; an utterance with nothing
//! queued behind it (or only marks) ends [`MAX_TAIL`] after its last sound, so
//! a mark fires when the speech before it ends. Between utterances that follow
//! each other in one talkspurt (the clauses of one turn) the voice's own pauses
//! are kept.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::audio_queue::AudioQueue;

use super::speech_tally::SpeechTally;
use super::{FRAME, FRAME_BYTES, SILENCE_PCMU};

/// Identifies an utterance within a call.
pub type UtteranceId = u64;

/// Leading silence kept before the first sound of a talkspurt: none. The
/// talkspurt starts at its first sample above [`SOUND_THRESHOLD`] (what comes
/// before it is below -50 dBFS, and the step from silence to it is too), so
/// the marker packet is all voice. With 10 ms kept, the first packet of a
/// soft onset (half silence, half the voice rising) was still near-silent in
/// 6 of 10 test sentences: the caller heard the turn 20 ms later.
pub const MAX_LEAD: Duration = Duration::ZERO;
/// Trailing silence kept after the last sound when nothing follows.
pub const MAX_TAIL: Duration = Duration::from_millis(60);
/// A mu-law sample whose magnitude is above this (16-bit scale, about
/// -50 dBFS) is sound; the voices' silences sit well below it.
const SOUND_THRESHOLD: i16 = 100;

const MAX_LEAD_BYTES: u64 = MAX_LEAD.as_millis() as u64 * 8;
const MAX_TAIL_BYTES: u64 = MAX_TAIL.as_millis() as u64 * 8;

/// Whether a mu-law sample is sound (not the voice's silence or noise floor).
pub fn is_sound(pcmu: u8) -> bool {
    audio_codec_algorithms::decode_ulaw(pcmu).unsigned_abs() > SOUND_THRESHOLD as u16
}

/// What of a lone utterance's audio a caller hears: from [`MAX_LEAD`] before
/// its first sound to [`MAX_TAIL`] after its last (the whole of it when it
/// has no sound).
pub fn trim_edges(pcmu: &[u8]) -> &[u8] {
    let Some(first) = pcmu.iter().position(|&b| is_sound(b)) else { return &[] };
    let last = pcmu.iter().rposition(|&b| is_sound(b)).unwrap_or(first);
    let from = first.saturating_sub(MAX_LEAD_BYTES as usize);
    let to = (last + 1 + MAX_TAIL_BYTES as usize).min(pcmu.len());
    &pcmu[from..to]
}

/// What one tick produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Nothing to say.
    Silence,
    /// Speech (the last frame of an utterance is padded with silence).
    Speech,
    /// An utterance is under way but its next 20 ms have not all arrived yet.
    Underrun,
}

/// One 20 ms frame to packetize.
#[derive(Debug, Clone)]
pub struct Frame {
    pub payload: [u8; FRAME_BYTES],
    pub kind: FrameKind,
    /// First frame of a talkspurt (RTP marker bit).
    pub marker: bool,
}

/// Things the call's owner wants to hear about, in send order.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayoutEvent {
    /// The utterance's first frame is being sent now; `waited` is how long
    /// it held back after its first audio arrived (the prefill).
    /// `first_audio`: from its `begin` (the text's arrival) to now, when the
    /// caller was waiting in silence for it (`None` when it follows speech).
    Started { utterance: UtteranceId, at: Instant, waited: Duration, first_audio: Option<Duration> },
    /// The utterance's last frame is being sent now.
    Finished { utterance: UtteranceId, played: Duration, underruns: u32 },
    /// Every frame queued before the mark has been sent.
    Mark { name: String },
    /// The frame carrying the start of this word is being sent now;
    /// `offset` is where the word starts in the utterance.
    Word { utterance: UtteranceId, text: String, offset: Duration },
}

/// An utterance that was removed by [`Playout::clear`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClearedUtterance {
    pub utterance: UtteranceId,
    /// Audio of it already sent.
    pub played: Duration,
    /// Whether any of it was sent.
    pub started: bool,
    /// The words whose start was sent (what the caller heard), in order.
    pub heard: Vec<String>,
}

#[derive(Debug)]
struct Utterance {
    id: UtteranceId,
    /// When it was begun (its text arrived).
    queued: Instant,
    bytes: AudioQueue,
    /// Utterance position (in 8 kHz samples) of `bytes[0]`.
    base: u64,
    /// Position of the first sound, and one past the last sound, so far.
    first_sound: Option<u64>,
    sound_end: u64,
    /// No more audio will be pushed.
    complete: bool,
    first_audio: Option<Instant>,
    /// How long to hold back after the first audio arrives (the prefill).
    hold: Duration,
    /// Held until the synthesizer says when its next audio comes ([`Playout::cover`]).
    gated: bool,
    started: bool,
    sent_frames: u32,
    underruns: u32,
    /// Words not yet reached: (start in 8 kHz samples, text).
    words: VecDeque<(u64, String)>,
    heard: Vec<String>,
}

impl Utterance {
    /// Position one past the last byte pushed.
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Drops queued bytes up to position `to`.
    fn skip_to(&mut self, to: u64) {
        let n = to.saturating_sub(self.base).min(self.bytes.len() as u64) as usize;
        self.bytes.skip(n);
        self.base += n as u64;
    }
}

#[derive(Debug)]
enum Item {
    Utterance(Utterance),
    Mark(String),
}

/// Per-call playout state. Not thread-safe by itself; the call keeps it behind a mutex.
#[derive(Debug, Default)]
pub struct Playout {
    queue: VecDeque<Item>,
    events: Vec<PlayoutEvent>,
    /// The previous frame was speech (so the next utterance needs no marker).
    in_talkspurt: bool,
    underruns: u64,
    tally: SpeechTally,
}

impl Playout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a new utterance after everything already queued.
    pub fn begin(&mut self, id: UtteranceId, now: Instant) {
        self.queue.push_back(Item::Utterance(Utterance {
            id,
            queued: now,
            bytes: AudioQueue::default(),
            base: 0,
            first_sound: None,
            sound_end: 0,
            complete: false,
            first_audio: None,
            hold: Duration::ZERO,
            gated: false,
            started: false,
            sent_frames: 0,
            underruns: 0,
            words: VecDeque::new(),
            heard: Vec::new(),
        }));
    }

    /// Word timings for utterance `id`: start offsets in 8 kHz samples from
    /// the utterance's start, in order. Reported as [`PlayoutEvent::Word`]
    /// when the frame carrying them is sent.
    pub fn words(&mut self, id: UtteranceId, words: impl IntoIterator<Item = (u64, String)>) {
        if let Some(u) = self.utterance_mut(id) {
            u.words.extend(words);
        }
    }

    /// Sets how long utterance `id` holds back after its first audio arrives
    /// before it starts (unless it is complete by then, which starts it at once).
    pub fn hold(&mut self, id: UtteranceId, wait: Duration) {
        if let Some(u) = self.utterance_mut(id) {
            u.hold = wait;
        }
    }

    /// Utterance `id` does not start (unless it completes) until
    /// [`Playout::cover`] says when its next audio comes.
    pub fn gate(&mut self, id: UtteranceId) {
        if let Some(u) = self.utterance_mut(id) {
            u.gated = !u.started;
        }
    }

    /// The next audio for utterance `id` is expected at `ready_at`: if it has
    /// not started, hold it at least until its buffered audio (and what is
    /// queued before it) lasts until then, so it does not start only to stall.
    /// Returns when it may start (its hold's end), if it had not started.
    pub fn cover(&mut self, id: UtteranceId, ready_at: Instant, now: Instant) -> Option<Instant> {
        let lead = self.lead(id, now)?;
        let u = self.utterance_mut(id)?;
        u.gated = false;
        let (false, Some(first)) = (u.started, u.first_audio) else { return None };
        let pending_hold = (first + u.hold).saturating_duration_since(now);
        let audio = lead.saturating_sub(pending_hold);
        if let Some(start) = ready_at.checked_sub(audio) {
            u.hold = u.hold.max(start.saturating_duration_since(first));
        }
        Some((first + u.hold).max(now))
    }

    /// Adds mu-law audio to utterance `id`; returns false when it is not queued
    /// (it was cleared), so the producer can stop.
    pub fn push(&mut self, id: UtteranceId, pcmu: &[u8], now: Instant) -> bool {
        self.add(id, pcmu, now, |q| q.push(pcmu))
    }

    /// Adds a cached prompt to utterance `id` by reference: every call
    /// playing it shares the one copy. Returns false as [`Playout::push`] does.
    pub fn push_shared(&mut self, id: UtteranceId, pcmu: Arc<[u8]>, now: Instant) -> bool {
        let shared = pcmu.clone();
        self.add(id, &pcmu, now, move |q| q.push_shared(shared))
    }

    fn add(&mut self, id: UtteranceId, pcmu: &[u8], now: Instant, store: impl FnOnce(&mut AudioQueue)) -> bool {
        match self.utterance_mut(id) {
            Some(u) if !u.complete => {
                if !pcmu.is_empty() {
                    u.first_audio.get_or_insert(now);
                }
                let at = u.end();
                if let Some(first) = pcmu.iter().position(|&b| is_sound(b)) {
                    u.first_sound.get_or_insert(at + first as u64);
                    let last = pcmu.iter().rposition(|&b| is_sound(b)).unwrap_or(first);
                    u.sound_end = at + last as u64 + 1;
                }
                store(&mut u.bytes);
                true
            }
            _ => false,
        }
    }

    /// No more audio for utterance `id`; it plays out whatever it has.
    pub fn finish(&mut self, id: UtteranceId) {
        if let Some(u) = self.utterance_mut(id) {
            u.complete = true;
        }
    }

    /// Queues a mark, reported once everything queued before it has been sent.
    pub fn mark(&mut self, name: String) {
        self.queue.push_back(Item::Mark(name));
    }

    /// Drops every queued utterance and mark (barge-in); the next tick is silence.
    pub fn clear(&mut self) -> Vec<ClearedUtterance> {
        self.in_talkspurt = false;
        let cleared: Vec<ClearedUtterance> = self
            .queue
            .drain(..)
            .filter_map(|item| match item {
                Item::Utterance(u) => Some(ClearedUtterance { utterance: u.id, played: FRAME * u.sent_frames, started: u.started, heard: u.heard }),
                Item::Mark(_) => None,
            })
            .collect();
        self.queue = VecDeque::new();
        // A started utterance still queued was being heard: the caller was cut off.
        if cleared.iter().any(|c| c.started) {
            self.tally.barge_in();
        }
        cleared
    }

    /// Utterances played, first-audio waits and barge-ins so far (the call record's).
    pub fn tally(&self) -> &SpeechTally {
        &self.tally
    }

    /// Audio queued and not yet sent.
    pub fn queued(&self) -> Duration {
        let bytes: usize = self
            .queue
            .iter()
            .map(|item| match item {
                Item::Utterance(u) => u.bytes.len(),
                Item::Mark(_) => 0,
            })
            .sum();
        Duration::from_micros(bytes as u64 * 125)
    }

    /// How long from `now` until playout runs out of the audio queued up to
    /// and including utterance `id` (its own buffered audio, what is queued
    /// before it, and any hold still to come); `None` when `id` is not queued.
    /// A synthesizer that adds to `id` before then causes no underrun.
    pub fn lead(&self, id: UtteranceId, now: Instant) -> Option<Duration> {
        let mut bytes = 0u64;
        let mut hold = Duration::ZERO;
        for item in &self.queue {
            let Item::Utterance(u) = item else { continue };
            bytes += u.bytes.len() as u64;
            if !u.started {
                // Leading silence past MAX_LEAD may be skipped when it starts.
                let skippable = match u.first_sound {
                    Some(first) => first.saturating_sub(MAX_LEAD_BYTES).saturating_sub(u.base),
                    None if u.complete => 0,
                    None => u.bytes.len() as u64,
                };
                bytes -= skippable.min(u.bytes.len() as u64);
                if let Some(first) = u.first_audio {
                    hold = hold.max((first + u.hold).saturating_duration_since(now));
                }
            }
            if u.id == id {
                return Some(Duration::from_micros(bytes * 125) + hold);
            }
        }
        None
    }

    /// Frames utterance `id` has been starved of so far (sent as underruns
    /// after it started); `None` when it is not queued.
    pub fn underruns_of(&self, id: UtteranceId) -> Option<u32> {
        self.queue.iter().find_map(|item| match item {
            Item::Utterance(u) if u.id == id => Some(u.underruns),
            _ => None,
        })
    }

    /// Whether anything (audio still to come, marks) is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Underrun frames so far.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Whether events are waiting for [`Playout::take_events`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Events since the last call, in order.
    pub fn take_events(&mut self) -> Vec<PlayoutEvent> {
        std::mem::take(&mut self.events)
    }

    /// The frame for the tick at `now`.
    pub fn tick(&mut self, now: Instant) -> Frame {
        let mut frame = Frame { payload: [SILENCE_PCMU; FRAME_BYTES], kind: FrameKind::Silence, marker: false };
        loop {
            // Whether an utterance follows the front one (its pauses then stay).
            let followed = self.queue.iter().skip(1).any(|i| matches!(i, Item::Utterance(_)));
            match self.queue.front_mut() {
                None => break,
                Some(Item::Mark(_)) => {
                    if let Some(Item::Mark(name)) = self.queue.pop_front() {
                        self.events.push(PlayoutEvent::Mark { name });
                    }
                }
                Some(Item::Utterance(u)) => {
                    if !u.started {
                        if !self.in_talkspurt {
                            // Starting a talkspurt: no more than MAX_LEAD of silence before the sound.
                            match u.first_sound {
                                Some(first) => u.skip_to(first.saturating_sub(MAX_LEAD_BYTES)),
                                None if !u.complete => u.skip_to(u.end().saturating_sub(MAX_LEAD_BYTES)),
                                None => u.skip_to(u.end()),
                            }
                        }
                        if u.complete && u.bytes.is_empty() {
                            // Nothing was ever said (or everything was cut): skip it quietly.
                            let id = u.id;
                            self.queue.pop_front();
                            self.events.push(PlayoutEvent::Finished { utterance: id, played: Duration::ZERO, underruns: 0 });
                            continue;
                        }
                        let ready = match u.first_audio {
                            None => false,
                            Some(first) => {
                                u.complete
                                    || !u.gated
                                        && (u.first_sound.is_some() || self.in_talkspurt)
                                        && u.bytes.len() >= 2 * FRAME_BYTES
                                        && now >= first + u.hold
                            }
                        };
                        if !ready {
                            break;
                        }
                        u.started = true;
                        let waited = u.first_audio.map_or(Duration::ZERO, |f| now.saturating_duration_since(f));
                        let first_audio = (!self.in_talkspurt).then(|| now.saturating_duration_since(u.queued));
                        self.tally.started(first_audio);
                        self.events.push(PlayoutEvent::Started { utterance: u.id, at: now, waited, first_audio });
                    }
                    if u.complete && !followed {
                        // Nothing queued behind: end MAX_TAIL after the last sound.
                        let keep = u.first_sound.map_or(u.base, |_| u.sound_end + MAX_TAIL_BYTES);
                        if keep < u.end() {
                            let n = keep.saturating_sub(u.base) as usize;
                            u.bytes.truncate(n);
                        }
                    }
                    let finishing = u.complete && u.bytes.len() <= FRAME_BYTES;
                    if u.bytes.is_empty() && !u.complete || !finishing && u.bytes.len() < FRAME_BYTES {
                        // Started, incomplete, starved (wholly or for part of the
                        // frame): the caller hears a gap either way. The bytes wait
                        // for the rest of their frame.
                        u.underruns += 1;
                        self.underruns += 1;
                        frame.kind = FrameKind::Underrun;
                        self.in_talkspurt = false;
                        return frame;
                    }
                    let n = u.bytes.len().min(FRAME_BYTES);
                    u.bytes.pop_into(&mut frame.payload[..n]);
                    u.base += n as u64;
                    frame.kind = FrameKind::Speech;
                    frame.marker = !self.in_talkspurt;
                    u.sent_frames += 1;
                    let sent = u.base;
                    while u.words.front().is_some_and(|(start, _)| *start < sent) {
                        if let Some((start, text)) = u.words.pop_front() {
                            let offset = Duration::from_micros(start * 125);
                            self.events.push(PlayoutEvent::Word { utterance: u.id, text: text.clone(), offset });
                            u.heard.push(text);
                        }
                    }
                    if u.complete && u.bytes.is_empty() {
                        let done = PlayoutEvent::Finished { utterance: u.id, played: FRAME * u.sent_frames, underruns: u.underruns };
                        self.queue.pop_front();
                        self.events.push(done);
                        // Marks right behind the utterance are due with its last frame.
                        while let Some(Item::Mark(_)) = self.queue.front() {
                            if let Some(Item::Mark(name)) = self.queue.pop_front() {
                                self.events.push(PlayoutEvent::Mark { name });
                            }
                        }
                        if self.queue.is_empty() {
                            // Silent from here: a call between turns holds no queue.
                            self.queue = VecDeque::new();
                        }
                    }
                    self.in_talkspurt = true;
                    return frame;
                }
            }
        }
        self.in_talkspurt = false;
        frame
    }

    fn utterance_mut(&mut self, id: UtteranceId) -> Option<&mut Utterance> {
        self.queue.iter_mut().find_map(|item| match item {
            Item::Utterance(u) if u.id == id => Some(u),
            _ => None,
        })
    }
}

#[cfg(test)]
#[path = "playout_tests.rs"]
mod tests;
