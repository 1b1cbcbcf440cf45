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
use std::time::{Duration, Instant};

use super::{FRAME, FRAME_BYTES, SILENCE_PCMU};

/// Identifies an utterance within a call.
pub type UtteranceId = u64;

/// Leading silence kept before the first sound of a talkspurt: under one
/// frame, so the marker packet carries sound.
pub const MAX_LEAD: Duration = Duration::from_millis(10);
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
    Started { utterance: UtteranceId, at: Instant, waited: Duration },
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
    bytes: VecDeque<u8>,
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
        self.bytes.drain(..n);
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
}

impl Playout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a new utterance after everything already queued.
    pub fn begin(&mut self, id: UtteranceId) {
        self.queue.push_back(Item::Utterance(Utterance {
            id,
            bytes: VecDeque::new(),
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
    pub fn cover(&mut self, id: UtteranceId, ready_at: Instant, now: Instant) {
        let Some(lead) = self.lead(id, now) else { return };
        let Some(u) = self.utterance_mut(id) else { return };
        u.gated = false;
        let (false, Some(first)) = (u.started, u.first_audio) else { return };
        let pending_hold = (first + u.hold).saturating_duration_since(now);
        let audio = lead.saturating_sub(pending_hold);
        if let Some(start) = ready_at.checked_sub(audio) {
            u.hold = u.hold.max(start.saturating_duration_since(first));
        }
    }

    /// Adds mu-law audio to utterance `id`; returns false when it is not queued
    /// (it was cleared), so the producer can stop.
    pub fn push(&mut self, id: UtteranceId, pcmu: &[u8], now: Instant) -> bool {
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
                u.bytes.extend(pcmu);
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
        self.queue
            .drain(..)
            .filter_map(|item| match item {
                Item::Utterance(u) => Some(ClearedUtterance { utterance: u.id, played: FRAME * u.sent_frames, started: u.started, heard: u.heard }),
                Item::Mark(_) => None,
            })
            .collect()
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

    /// Whether anything (audio still to come, marks) is queued.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Underrun frames so far.
    pub fn underruns(&self) -> u64 {
        self.underruns
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
                        self.events.push(PlayoutEvent::Started { utterance: u.id, at: now, waited });
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
                    for (dst, src) in frame.payload.iter_mut().zip(u.bytes.drain(..n)) {
                        *dst = src;
                    }
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
mod tests {
    use super::*;

    const TICK: Duration = FRAME;

    fn speech(n_frames: usize, value: u8) -> Vec<u8> {
        vec![value; n_frames * FRAME_BYTES]
    }

    #[test]
    fn idle_playout_sends_silence_without_marker() {
        let mut p = Playout::new();
        let f = p.tick(Instant::now());
        assert_eq!(f.kind, FrameKind::Silence);
        assert!(!f.marker);
        assert!(f.payload.iter().all(|&b| b == SILENCE_PCMU));
    }

    #[test]
    fn an_utterance_plays_in_order_with_one_marker_and_padding() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        let mut audio = speech(2, 0x10);
        audio.extend([0x20; 40]);
        p.push(1, &audio, t0);
        p.finish(1);
        let f1 = p.tick(t0);
        let f2 = p.tick(t0 + TICK);
        let f3 = p.tick(t0 + 2 * TICK);
        let f4 = p.tick(t0 + 3 * TICK);
        assert!(f1.marker && !f2.marker && !f3.marker);
        assert_eq!([f1.kind, f2.kind, f3.kind, f4.kind], [FrameKind::Speech, FrameKind::Speech, FrameKind::Speech, FrameKind::Silence]);
        assert_eq!(&f3.payload[..40], &[0x20; 40]);
        assert!(f3.payload[40..].iter().all(|&b| b == SILENCE_PCMU));
        let events = p.take_events();
        assert!(matches!(events[0], PlayoutEvent::Started { utterance: 1, .. }));
        assert_eq!(events[1], PlayoutEvent::Finished { utterance: 1, played: 3 * FRAME, underruns: 0 });
    }

    #[test]
    fn an_utterance_waits_for_its_prefill() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(10, 0x10), t0);
        p.hold(1, Duration::from_millis(50));
        assert_eq!(p.tick(t0).kind, FrameKind::Silence);
        assert_eq!(p.tick(t0 + 2 * TICK).kind, FrameKind::Silence);
        let f = p.tick(t0 + 3 * TICK);
        assert_eq!(f.kind, FrameKind::Speech);
        assert!(f.marker);
        match &p.take_events()[0] {
            PlayoutEvent::Started { waited, .. } => assert_eq!(*waited, 3 * TICK),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn a_complete_utterance_starts_at_once_whatever_the_wait() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.hold(1, Duration::from_secs(1));
        p.push(1, &speech(1, 0x10), t0);
        p.finish(1);
        assert_eq!(p.tick(t0).kind, FrameKind::Speech);
    }

    #[test]
    fn starvation_inside_an_utterance_is_an_underrun_then_resumes() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(7);
        p.push(7, &speech(2, 0x10), t0);
        assert_eq!(p.tick(t0).kind, FrameKind::Speech);
        assert_eq!(p.tick(t0 + TICK).kind, FrameKind::Speech);
        let starved = p.tick(t0 + 2 * TICK);
        assert_eq!(starved.kind, FrameKind::Underrun);
        assert!(starved.payload.iter().all(|&b| b == SILENCE_PCMU));
        p.push(7, &speech(1, 0x30), t0 + 2 * TICK);
        p.finish(7);
        let resumed = p.tick(t0 + 3 * TICK);
        assert_eq!(resumed.kind, FrameKind::Speech);
        assert!(resumed.marker, "speech after a gap is a new talkspurt");
        assert_eq!(p.underruns(), 1);
        let events = p.take_events();
        assert_eq!(events.last(), Some(&PlayoutEvent::Finished { utterance: 7, played: 3 * FRAME, underruns: 1 }));
    }

    #[test]
    fn back_to_back_utterances_form_one_talkspurt() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        for id in [1, 2] {
            p.begin(id);
            p.push(id, &speech(1, id as u8), t0);
            p.finish(id);
        }
        let a = p.tick(t0);
        let b = p.tick(t0 + TICK);
        assert_eq!((a.payload[0], a.marker), (1, true));
        assert_eq!((b.payload[0], b.marker), (2, false));
    }

    #[test]
    fn marks_fire_after_the_audio_before_them() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.mark("m0".into());
        p.begin(1);
        p.push(1, &speech(2, 0x10), t0);
        p.finish(1);
        p.mark("m1".into());
        p.mark("m2".into());
        p.tick(t0);
        let first = p.take_events();
        assert_eq!(first[0], PlayoutEvent::Mark { name: "m0".into() });
        assert!(!first.iter().any(|e| matches!(e, PlayoutEvent::Mark { name } if name == "m1")));
        p.tick(t0 + TICK);
        let names: Vec<_> = p
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                PlayoutEvent::Mark { name } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["m1", "m2"]);
    }

    #[test]
    fn clear_reports_what_was_played_and_silences_the_next_tick() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(5, 0x10), t0);
        p.words(1, [(0, "one".to_string()), (320, "two".to_string())]);
        p.begin(2);
        p.tick(t0);
        p.tick(t0 + TICK);
        let cleared = p.clear();
        assert_eq!(
            cleared,
            vec![
                ClearedUtterance { utterance: 1, played: 2 * FRAME, started: true, heard: vec!["one".into()] },
                ClearedUtterance { utterance: 2, played: Duration::ZERO, started: false, heard: vec![] },
            ]
        );
        assert_eq!(p.tick(t0 + 2 * TICK).kind, FrameKind::Silence);
        assert!(!p.push(1, &speech(1, 0), t0), "a cleared utterance takes no more audio");
    }

    #[test]
    fn words_are_reported_with_the_frame_that_carries_their_start() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(4, 0x10), t0);
        p.words(1, [(0, "hello".to_string()), (200, "there".to_string()), (480, "friend".to_string())]);
        p.finish(1);
        let mut per_tick = Vec::new();
        for i in 0..4 {
            p.tick(t0 + i * TICK);
            let words: Vec<String> = p
                .take_events()
                .into_iter()
                .filter_map(|e| match e {
                    PlayoutEvent::Word { text, .. } => Some(text),
                    _ => None,
                })
                .collect();
            per_tick.push(words);
        }
        assert_eq!(per_tick, vec![vec!["hello"], vec!["there"], vec![], vec!["friend"]]);
    }

    #[test]
    fn an_empty_utterance_is_skipped() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.finish(1);
        p.begin(2);
        p.push(2, &speech(1, 0x22), t0);
        p.finish(2);
        assert_eq!(p.tick(t0).payload[0], 0x22);
    }

    fn silence(n_bytes: usize) -> Vec<u8> {
        vec![SILENCE_PCMU; n_bytes]
    }

    #[test]
    fn a_talkspurt_starts_with_at_most_20_ms_of_silence_and_the_marker_carries_sound() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        let mut audio = silence(2400); // 300 ms of leading silence
        audio.extend(speech(3, 0x10));
        p.push(1, &audio, t0);
        p.finish(1);
        let f = p.tick(t0);
        assert!(f.marker);
        assert_eq!(f.kind, FrameKind::Speech);
        let quiet = f.payload.iter().take_while(|&&b| b == SILENCE_PCMU).count();
        assert_eq!(quiet as u64, MAX_LEAD_BYTES, "10 ms of lead, then sound in the marker packet");
    }

    #[test]
    fn an_utterance_waits_for_its_first_sound_before_starting_a_talkspurt() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &silence(1600), t0);
        assert_eq!(p.tick(t0).kind, FrameKind::Silence, "200 ms of silence so far: nothing to start on");
        p.push(1, &speech(2, 0x10), t0 + TICK);
        let f = p.tick(t0 + TICK);
        assert_eq!((f.kind, f.marker), (FrameKind::Speech, true));
        assert_eq!(f.payload.iter().filter(|&&b| b == SILENCE_PCMU).count() as u64, MAX_LEAD_BYTES);
    }

    #[test]
    fn trailing_silence_is_cut_to_60_ms_and_the_mark_fires_with_it() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        let mut audio = speech(2, 0x10);
        audio.extend(silence(2000)); // 250 ms of trailing silence
        p.push(1, &audio, t0);
        p.finish(1);
        p.mark("end".into());
        let mut frames = 0;
        let mut mark_at = None;
        for i in 0..30 {
            let f = p.tick(t0 + i * TICK);
            if f.kind == FrameKind::Speech {
                frames += 1;
            }
            if p.take_events().iter().any(|e| matches!(e, PlayoutEvent::Mark { .. })) {
                mark_at = Some(i);
                break;
            }
        }
        // 2 frames of sound + 60 ms (3 frames) of tail.
        assert_eq!(frames, 5);
        assert_eq!(mark_at, Some(4), "the mark fires with the frame that ends the 60 ms tail");
    }

    #[test]
    fn pauses_between_utterances_of_one_talkspurt_are_kept() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        for id in [1, 2] {
            p.begin(id);
            let mut audio = silence(400); // 50 ms lead
            audio.extend(speech(1, 0x10));
            audio.extend(silence(1600)); // 200 ms tail
            p.push(id, &audio, t0);
            p.finish(id);
        }
        let mut kinds = Vec::new();
        for i in 0..40 {
            let f = p.tick(t0 + i * TICK);
            kinds.push(f.payload.iter().any(|&b| b != SILENCE_PCMU));
        }
        let sounding: Vec<usize> = kinds.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect();
        // First: 10 ms lead + 160 sound bytes -> frames 0-1; the 200 ms tail
        // (its last frame padded) and the second's 50 ms lead play in full.
        assert_eq!(sounding.first(), Some(&0));
        let second = sounding.iter().copied().find(|&i| i > 1).unwrap();
        assert_eq!(second, 14, "the natural pause between the clauses: {kinds:?}");
    }

    #[test]
    fn a_partly_filled_frame_mid_utterance_is_an_underrun() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(2, 0x10), t0);
        p.tick(t0);
        p.push(1, &[0x10; 60], t0);
        assert_eq!(p.tick(t0 + TICK).kind, FrameKind::Speech);
        let f = p.tick(t0 + 2 * TICK);
        assert_eq!(f.kind, FrameKind::Underrun, "60 of 160 bytes is a gap, not a speech frame");
        assert_eq!(p.underruns(), 1);
        p.push(1, &[0x10; 100], t0);
        p.finish(1);
        let f = p.tick(t0 + 3 * TICK);
        assert_eq!(f.kind, FrameKind::Speech);
        assert!(f.payload.iter().all(|&b| b == 0x10), "the held bytes go out whole");
    }

    #[test]
    fn lead_counts_audio_ahead_and_the_hold_still_to_come() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(10, 0x10), t0);
        p.begin(2);
        p.hold(2, Duration::from_millis(30));
        p.push(2, &speech(5, 0x10), t0);
        assert_eq!(p.lead(1, t0), Some(Duration::from_millis(200)));
        assert_eq!(p.lead(2, t0), Some(Duration::from_millis(330)));
        assert_eq!(p.lead(9, t0), None);
    }

    #[test]
    fn trim_edges_is_what_a_lone_utterance_plays() {
        let t0 = Instant::now();
        let mut audio = silence(800);
        audio.extend(speech(2, 0x10));
        audio.extend(silence(1200));
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &audio, t0);
        p.finish(1);
        let mut played = Vec::new();
        for i in 0..20 {
            let f = p.tick(t0 + i * TICK);
            if f.kind == FrameKind::Speech {
                played.extend_from_slice(&f.payload);
            }
        }
        let trimmed = trim_edges(&audio);
        assert_eq!(trimmed.len() as u64, MAX_LEAD_BYTES + 320 + MAX_TAIL_BYTES);
        assert_eq!(&played[..trimmed.len()], trimmed);
        assert!(trim_edges(&silence(400)).is_empty());
    }

    #[test]
    fn cover_holds_an_utterance_until_its_next_audio_can_follow() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(5, 0x10), t0); // 100 ms
        p.hold(1, Duration::from_millis(20));
        // The next chunk is only expected 300 ms from now: start 200 ms from now.
        p.cover(1, t0 + Duration::from_millis(300), t0);
        assert_eq!(p.tick(t0 + 9 * TICK).kind, FrameKind::Silence);
        assert_eq!(p.tick(t0 + 10 * TICK).kind, FrameKind::Speech);
        // Once started it cannot be held back.
        p.cover(1, t0 + Duration::from_secs(5), t0);
        assert_eq!(p.tick(t0 + 11 * TICK).kind, FrameKind::Speech);
    }

    #[test]
    fn a_gated_utterance_waits_for_word_of_its_next_audio_or_its_end() {
        let t0 = Instant::now();
        let mut p = Playout::new();
        p.begin(1);
        p.push(1, &speech(5, 0x10), t0);
        p.gate(1);
        assert_eq!(p.tick(t0 + 10 * TICK).kind, FrameKind::Silence, "gated: the next chunk has not been started");
        p.cover(1, t0 + 10 * TICK, t0 + 10 * TICK);
        p.finish(1);
        assert_eq!(p.tick(t0 + 11 * TICK).kind, FrameKind::Speech);
        p.begin(2);
        p.push(2, &speech(5, 0x10), t0);
        p.gate(2);
        p.finish(2);
        for i in 12..16 {
            p.tick(t0 + i * TICK);
        }
        assert_eq!(p.tick(t0 + 16 * TICK).kind, FrameKind::Speech, "a complete utterance is never gated");
    }
}
