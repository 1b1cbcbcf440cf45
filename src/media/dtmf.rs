//! Sending DTMF to the caller as RFC 4733 telephone-events.
//!
//! [`super::CallMedia::send_dtmf`] queues digits here; the pacer asks the
//! queue once per 20 ms tick ([`DtmfQueue::tick`]) what that tick carries:
//!
//! * a telephone-event packet: a digit, or the repeat of a digit's end packet;
//! * a held tick (the gap between two digits, or a `w`/`W`/`,` pause): no
//!   event, and the call's audio stays held (silence is sent, if the call
//!   sends silence at all);
//! * nothing to do: the playout buffer is ticked as usual.
//!
//! Each digit is one event (RFC 4733 section 2.5.1.2): every packet of it
//! carries the RTP timestamp of the tick where it began, the duration field
//! grows by 160 samples per packet up to the tone's length, the first packet
//! has the marker bit, the volume is 10 (-10 dBm0), and the final packet
//! (E bit set) is sent three times in all (section 2.5.1.4), one tick apart.
//! Those three are separate RTP packets, so each takes the next sequence
//! number like every other packet of the stream (section 2.5.1.6, and
//! RFC 3550 section 5.1), with the same timestamp and duration.
//!
//! Between two digits there are [`DTMF_GAP`] of silence (the end repeats are
//! sent inside it); a pause character replaces that gap with its own length.

use std::collections::VecDeque;
use std::time::Duration;

use super::{FRAME, FRAME_BYTES, RATE};

/// Silence between two digits (from the end of one tone to the start of the next).
pub const DTMF_GAP: Duration = Duration::from_millis(60);
/// Shortest tone; shorter requests are lengthened to it.
pub const DTMF_MIN_DURATION: Duration = Duration::from_millis(40);
/// Longest tone; longer requests are shortened to it.
pub const DTMF_MAX_DURATION: Duration = Duration::from_millis(2000);
/// Tone length callers use when they have no preference.
pub const DTMF_DEFAULT_DURATION: Duration = Duration::from_millis(100);
/// Most characters (digits and pauses) waiting to be sent for one call.
pub const DTMF_MAX_QUEUED: usize = 64;
/// `w`: a half-second pause.
const SHORT_PAUSE: Duration = Duration::from_millis(500);
/// `W` or `,`: a one-second pause.
const LONG_PAUSE: Duration = Duration::from_secs(1);
/// Volume field: -10 dBm0.
const VOLUME: u8 = 10;
/// End packets sent after the first one (three in all).
const END_REPEATS: u8 = 2;

/// Why [`super::CallMedia::send_dtmf`] refused digits (nothing was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfSendError {
    /// The peer's SDP offered no telephone-event payload type.
    #[error("the peer did not negotiate telephone-event (RFC 4733)")]
    NotNegotiated,
    /// Not one of `0-9 * # A-D w W ,`.
    #[error("invalid DTMF digit {0:?} (expected 0-9, *, #, A-D, w, W or ,)")]
    InvalidDigit(char),
    /// More than [`DTMF_MAX_QUEUED`] characters would be waiting.
    #[error("too many DTMF digits queued (at most {DTMF_MAX_QUEUED})")]
    TooLong,
}

/// One queued character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A tone: the RFC 4733 event code and its length in 8 kHz samples.
    Tone { event: u8, samples: u32 },
    /// No event for this many ticks.
    Pause { ticks: u32 },
}

/// The tone being sent.
#[derive(Debug, Clone, Copy)]
struct Tone {
    event: u8,
    samples: u32,
    /// RTP timestamp of the tick where it began.
    timestamp: u32,
    /// Packets sent so far.
    sent: u32,
}

/// What one tick carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfTick {
    /// No DTMF: send the call's audio.
    Idle,
    /// Between digits or in a pause: no event, audio held.
    Hold,
    /// A telephone-event packet: header timestamp, marker bit and the 4-byte payload.
    Event { timestamp: u32, marker: bool, payload: [u8; 4] },
}

/// RFC 4733 event code of a key (case-insensitive letters).
pub fn event_code(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        d @ 'A'..='D' => d as u8 - b'A' + 12,
        _ => return None,
    })
}

/// The telephone-event payload (RFC 4733 section 2.3): event, E|R|volume, duration.
pub fn event_payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let [d0, d1] = duration.to_be_bytes();
    [event, if end { 0x80 } else { 0 } | VOLUME, d0, d1]
}

fn ticks(d: Duration) -> u32 {
    d.as_micros().div_ceil(FRAME.as_micros()) as u32
}

fn parse(digits: &str, duration: Duration) -> Result<Vec<Step>, DtmfSendError> {
    let tone = duration.clamp(DTMF_MIN_DURATION, DTMF_MAX_DURATION);
    let samples = (tone.as_micros() * RATE as u128 / 1_000_000) as u32;
    digits
        .chars()
        .map(|c| match c {
            'w' => Ok(Step::Pause { ticks: ticks(SHORT_PAUSE) }),
            'W' | ',' => Ok(Step::Pause { ticks: ticks(LONG_PAUSE) }),
            c => event_code(c).map(|event| Step::Tone { event, samples }).ok_or(DtmfSendError::InvalidDigit(c)),
        })
        .collect()
}

/// A call's outgoing DTMF: queued characters and the state of the one being sent.
#[derive(Debug)]
pub struct DtmfQueue {
    steps: VecDeque<Step>,
    tone: Option<Tone>,
    /// The last tone's end packet still to be repeated: (timestamp, payload, repeats left).
    end: Option<(u32, [u8; 4], u8)>,
    /// Ticks since the last tone ended (while more may follow).
    quiet: Option<u32>,
    gap_ticks: u32,
    /// A run of digits is under way (audio held).
    active: bool,
    /// The next audio packet starts a new talkspurt (marker bit).
    marker_due: bool,
}

impl Default for DtmfQueue {
    fn default() -> Self {
        Self::new(DTMF_GAP)
    }
}

impl DtmfQueue {
    /// `gap`: silence between two tones (at least the two end repeats, 40 ms).
    pub fn new(gap: Duration) -> Self {
        Self {
            steps: VecDeque::new(),
            tone: None,
            end: None,
            quiet: None,
            gap_ticks: ticks(gap).max(END_REPEATS as u32),
            active: false,
            marker_due: false,
        }
    }

    /// Appends `digits` (see [`super::CallMedia::send_dtmf`]); all or nothing.
    pub fn queue(&mut self, digits: &str, duration: Duration) -> Result<(), DtmfSendError> {
        let steps = parse(digits, duration)?;
        if self.pending() + steps.len() > DTMF_MAX_QUEUED {
            return Err(DtmfSendError::TooLong);
        }
        self.steps.extend(steps);
        Ok(())
    }

    /// Characters not yet sent (the tone under way included).
    pub fn pending(&self) -> usize {
        self.steps.len() + usize::from(self.tone.is_some())
    }

    /// Nothing queued or under way (the call's audio is not held).
    pub fn is_idle(&self) -> bool {
        !self.active && self.steps.is_empty() && self.tone.is_none() && self.end.is_none()
    }

    /// Drops everything queued; a tone under way is cut short.
    pub fn clear(&mut self) {
        self.steps.clear();
        self.tone = None;
        self.end = None;
        self.quiet = None;
        if self.active {
            self.active = false;
            self.marker_due = true;
        }
    }

    /// The call stopped sending (hold): a tone under way starts over when
    /// sending resumes, its pending end repeats are dropped; the rest waits.
    pub fn hold(&mut self) {
        if let Some(tone) = self.tone.take() {
            self.steps.push_front(Step::Tone { event: tone.event, samples: tone.samples });
        }
        self.end = None;
    }

    /// Whether the next audio packet must carry the marker bit (the first
    /// after telephone-events); clears it.
    pub fn take_marker(&mut self) -> bool {
        std::mem::take(&mut self.marker_due)
    }

    /// This tick's share; `timestamp` is the RTP timestamp of the tick (the
    /// stream's clock, advancing 160 per tick whatever is sent).
    pub fn tick(&mut self, timestamp: u32) -> DtmfTick {
        if self.tone.is_some() {
            return self.tone_packet();
        }
        let mut hold = false;
        loop {
            match self.steps.front_mut() {
                None => break,
                Some(Step::Pause { ticks }) => {
                    if *ticks > 0 {
                        *ticks -= 1;
                        hold = true;
                    }
                    if *ticks == 0 {
                        self.steps.pop_front();
                    }
                    if hold {
                        break;
                    }
                }
                Some(&mut Step::Tone { event, samples }) => {
                    if self.end.is_some() || self.quiet.is_some_and(|q| q < self.gap_ticks) {
                        // The gap after the previous tone.
                        hold = true;
                        break;
                    }
                    self.steps.pop_front();
                    self.quiet = None;
                    self.active = true;
                    self.tone = Some(Tone { event, samples, timestamp, sent: 0 });
                    return self.tone_packet();
                }
            }
        }
        if let Some((timestamp, payload, left)) = self.end.as_mut() {
            let out = DtmfTick::Event { timestamp: *timestamp, marker: false, payload: *payload };
            *left -= 1;
            if *left == 0 {
                self.end = None;
            }
            self.quiet = self.quiet.map(|q| q + 1);
            self.marker_due = true;
            return out;
        }
        if hold {
            self.active = true;
            self.quiet = self.quiet.map(|q| q + 1);
            return DtmfTick::Hold;
        }
        if self.active {
            // The run is over: the audio that follows is a new talkspurt.
            self.active = false;
            self.marker_due = true;
        }
        self.quiet = None;
        DtmfTick::Idle
    }

    /// The next packet of the tone under way.
    fn tone_packet(&mut self) -> DtmfTick {
        let Some(tone) = self.tone.as_mut() else { return DtmfTick::Idle };
        tone.sent += 1;
        let duration = (tone.sent * FRAME_BYTES as u32).min(tone.samples);
        let end = duration >= tone.samples;
        // At most 2000 ms = 16000 samples: no long-event segmentation (section 2.5.1.3).
        let payload = event_payload(tone.event, end, duration.min(u16::MAX as u32) as u16);
        let out = DtmfTick::Event { timestamp: tone.timestamp, marker: tone.sent == 1, payload };
        if end {
            self.end = (END_REPEATS > 0).then_some((tone.timestamp, payload, END_REPEATS));
            self.quiet = Some(0);
            self.tone = None;
        }
        self.marker_due = true;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the queue until idle: per tick, what it produced (timestamps 160 apart from 0).
    fn run(q: &mut DtmfQueue) -> Vec<DtmfTick> {
        let mut out = Vec::new();
        for i in 0..10_000u32 {
            let t = q.tick(i * 160);
            if t == DtmfTick::Idle {
                return out;
            }
            out.push(t);
        }
        panic!("never idle");
    }

    fn fields(t: &DtmfTick) -> (u32, bool, u8, bool, u16) {
        match *t {
            DtmfTick::Event { timestamp, marker, payload } => {
                (timestamp, marker, payload[0], payload[1] & 0x80 != 0, u16::from_be_bytes([payload[2], payload[3]]))
            }
            _ => panic!("not an event: {t:?}"),
        }
    }

    #[test]
    fn event_codes() {
        let codes: Vec<_> = "0123456789*#ABCDabcd".chars().map(|c| event_code(c).unwrap()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15]);
        assert_eq!(event_code('E'), None);
        assert_eq!(event_code('w'), None);
        assert_eq!(event_payload(11, true, 800), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(event_payload(1, false, 160), [1, 0x0a, 0x00, 0xa0]);
    }

    #[test]
    fn one_digit_is_one_event_with_three_end_packets() {
        let mut q = DtmfQueue::default();
        q.queue("5", Duration::from_millis(100)).unwrap();
        let ticks = run(&mut q);
        let f: Vec<_> = ticks.iter().map(fields).collect();
        assert_eq!(
            f,
            [
                (0, true, 5, false, 160),
                (0, false, 5, false, 320),
                (0, false, 5, false, 480),
                (0, false, 5, false, 640),
                (0, false, 5, true, 800),
                (0, false, 5, true, 800),
                (0, false, 5, true, 800),
            ]
        );
        assert!(q.take_marker());
        assert!(q.is_idle());
    }

    #[test]
    fn a_tone_length_off_the_frame_grid_ends_exactly() {
        let mut q = DtmfQueue::default();
        q.queue("1", Duration::from_millis(50)).unwrap();
        let durations: Vec<_> = run(&mut q).iter().map(|t| fields(t).4).collect();
        assert_eq!(durations, [160, 320, 400, 400, 400]);
    }

    #[test]
    fn digits_are_separated_by_the_gap_and_pauses_replace_it() {
        let mut q = DtmfQueue::default();
        q.queue("12w3", Duration::from_millis(100)).unwrap();
        let ticks = run(&mut q);
        let starts: Vec<(usize, u32)> =
            ticks.iter().enumerate().filter(|(_, t)| matches!(t, DtmfTick::Event { marker: true, .. })).map(|(i, t)| (i, fields(t).0)).collect();
        // '1' at tick 0 (ends at 800), 60 ms gap, '2' at tick 8 (ends at 2080), 500 ms pause, '3'.
        assert_eq!(starts, [(0, 0), (8, 1280), (38, 6080)]);
        assert_eq!(ticks[7], DtmfTick::Hold);
        assert_eq!(ticks.iter().filter(|t| **t == DtmfTick::Hold).count(), 1 + 23);
        assert_eq!(ticks.len(), 38 + 7);
    }

    #[test]
    fn pauses_alone_hold_without_events() {
        let mut q = DtmfQueue::default();
        q.queue("w,", Duration::from_millis(100)).unwrap();
        let ticks = run(&mut q);
        assert_eq!(ticks.len(), 25 + 50);
        assert!(ticks.iter().all(|t| *t == DtmfTick::Hold));
        assert!(q.take_marker(), "audio after the run is a new talkspurt");
    }

    #[test]
    fn invalid_input_queues_nothing() {
        let mut q = DtmfQueue::default();
        assert_eq!(q.queue("12e", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit('e')));
        assert_eq!(q.queue("1 2", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit(' ')));
        assert_eq!(q.pending(), 0);
        q.queue(&"1".repeat(60), Duration::from_millis(100)).unwrap();
        assert_eq!(q.queue("12345", Duration::from_millis(100)), Err(DtmfSendError::TooLong));
        q.queue("1234", Duration::from_millis(100)).unwrap();
        assert_eq!(q.pending(), DTMF_MAX_QUEUED);
        assert!(q.queue("", Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn tone_lengths_are_clamped() {
        let mut q = DtmfQueue::default();
        q.queue("1", Duration::from_millis(1)).unwrap();
        assert_eq!(run(&mut q).iter().map(|t| fields(t).4).max(), Some(320));
        q.queue("1", Duration::from_secs(10)).unwrap();
        let ticks = run(&mut q);
        assert_eq!(ticks.iter().map(|t| fields(t).4).max(), Some(16000));
        assert_eq!(ticks.len(), 100 + 2);
    }

    #[test]
    fn hold_restarts_the_tone_under_way() {
        let mut q = DtmfQueue::default();
        q.queue("7", Duration::from_millis(100)).unwrap();
        q.tick(0);
        q.tick(160);
        q.hold();
        assert_eq!(q.pending(), 1);
        let first = q.tick(10 * 160);
        assert_eq!(fields(&first), (1600, true, 7, false, 160));
    }
}
