//! Where a stream's audio goes once a worker has computed a chunk.
//!
//! | sink | takes | its lead (how far ahead of the listener it is) |
//! | --- | --- | --- |
//! | [`Sink::Call`] | 8 kHz mu-law into the call's playout ([`PcmuStream`]) | the playout's queued audio |
//! | [`Sink::Listener`] | the engine's chunks as they are (the TTS API) | audio handed over less the time since its first chunk, as if heard in real time (plus what an earlier clause of the same stream left unheard) |
//!
//! A listener is scheduled like a call's utterance (earliest deadline first,
//! its deadlines from that lead), so when the workers are idle it gets its
//! chunks as fast as they compute, and when calls need them it waits its
//! turn instead of starving them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::pcmu::PcmuStream;
use super::workers::lock;
use super::StreamId;
use crate::audio::AudioError;
use crate::media::CallMedia;
use crate::synth::PcmChunk;

/// What a listener outside any call receives, in order; the channel closes
/// after the last chunk.
#[derive(Debug)]
pub enum Synthesized {
    Chunk(PcmChunk),
    /// Synthesis could not start or broke off; nothing follows.
    Failed(String),
}

/// A stream's destination.
pub(crate) enum Sink {
    Call { media: Arc<CallMedia>, phone: Option<PcmuStream> },
    Listener(Listener),
}

pub(crate) struct Listener {
    tx: mpsc::UnboundedSender<Synthesized>,
    /// When its first chunk was handed over.
    since: Option<Instant>,
    /// Audio handed over so far.
    audio: Duration,
}

/// What became of a delivered chunk.
pub(crate) struct Delivered {
    /// Someone still wants the stream's audio (not cleared, not gone).
    pub alive: bool,
    /// How far the stream's audio is ahead of its listener.
    pub lead: Duration,
    /// Frames its listener heard as gaps so far (calls only).
    pub starved: Option<u32>,
}

impl Sink {
    pub fn call(media: Arc<CallMedia>) -> Self {
        Sink::Call { media, phone: None }
    }

    /// A listener, and the receiver it reads. `ahead`: audio it already
    /// has and has not heard yet at `now` (an earlier clause of the same
    /// stream); its own audio counts from then, not from its first chunk.
    pub fn listener(ahead: Duration, now: Instant) -> (Self, mpsc::UnboundedReceiver<Synthesized>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let since = (!ahead.is_zero()).then_some(now);
        (Sink::Listener(Listener { tx, since, audio: ahead }), rx)
    }

    /// For logs: the call's id, or `tts` for a listener.
    pub fn name(&self) -> &str {
        match self {
            Sink::Call { media, .. } => &media.id,
            Sink::Listener(_) => "tts",
        }
    }

    /// The call is over, or the listener has gone.
    pub fn closed(&self) -> bool {
        match self {
            Sink::Call { media, .. } => media.is_closed(),
            Sink::Listener(l) => l.tx.is_closed(),
        }
    }

    /// Readies the sink for an engine at `engine_rate`, before its first chunk.
    pub fn prepare(&mut self, engine_rate: u32) -> Result<(), AudioError> {
        if let Sink::Call { phone, .. } = self {
            *phone = Some(PcmuStream::new(engine_rate)?);
        }
        Ok(())
    }

    /// No more audio for stream `id`: a call plays what it has; a
    /// listener's channel closes when the stream is dropped.
    pub fn finish(&self, id: StreamId) {
        if let Sink::Call { media, .. } = self {
            lock(&media.playout).finish(id);
        }
    }

    /// Synthesis failed: as [`Sink::finish`], and a listener is told why.
    pub fn fail(&self, id: StreamId, error: &str) {
        self.finish(id);
        if let Sink::Listener(l) = self {
            let _ = l.tx.send(Synthesized::Failed(error.to_owned()));
        }
    }

    /// A call's utterance waiting for its second chunk, expected at
    /// `ready_at`: when it will start playing (`Playout::cover`).
    pub fn cover(&self, id: StreamId, ready_at: Instant, now: Instant) -> Option<Instant> {
        match self {
            Sink::Call { media, .. } => lock(&media.playout).cover(id, ready_at, now),
            Sink::Listener(_) => None,
        }
    }

    /// Hands stream `id`'s next chunk over. `first`: its first chunk, which a
    /// call holds back for `hold` and gates until its second is under way.
    pub fn deliver(&mut self, id: StreamId, chunk: PcmChunk, first: bool, hold: Duration, now: Instant) -> Delivered {
        match self {
            Sink::Call { media, phone } => {
                let Some(phone) = phone.as_mut() else { return Delivered { alive: false, lead: Duration::ZERO, starved: None } };
                let pcmu = phone.convert(&chunk);
                let mut playout = lock(&media.playout);
                let starved = playout.underruns_of(id);
                playout.words(id, pcmu.words);
                let alive = playout.push(id, &pcmu.pcmu, now);
                if first {
                    playout.hold(id, hold);
                    if !chunk.last {
                        // It starts once its second chunk is under way (`cover`).
                        playout.gate(id);
                    }
                }
                if chunk.last {
                    playout.finish(id);
                }
                Delivered { alive, lead: playout.lead(id, now).unwrap_or_default(), starved }
            }
            Sink::Listener(l) => {
                let since = *l.since.get_or_insert(now);
                l.audio += chunk.duration();
                let alive = l.tx.send(Synthesized::Chunk(chunk)).is_ok();
                Delivered { alive, lead: (since + l.audio).saturating_duration_since(now), starved: None }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ms: u64, last: bool) -> PcmChunk {
        PcmChunk {
            samples: vec![0.0; (16 * ms) as usize],
            sample_rate: 16000,
            start_sample: 0,
            sentence: 0,
            alignments: Vec::new(),
            ready_at: Instant::now(),
            compute: Duration::ZERO,
            last,
        }
    }

    #[test]
    fn a_listener_is_ahead_by_the_audio_it_got_less_the_time_since_its_first_chunk() {
        let t0 = Instant::now();
        let (mut sink, mut rx) = Sink::listener(Duration::ZERO, t0);
        let d = sink.deliver(1, chunk(500, false), true, Duration::ZERO, t0);
        assert!(d.alive);
        assert_eq!(d.lead, Duration::from_millis(500));
        let d = sink.deliver(1, chunk(300, true), false, Duration::ZERO, t0 + Duration::from_millis(200));
        assert_eq!(d.lead, Duration::from_millis(600), "800 ms handed over, 200 ms of it heard");
        assert!(matches!(rx.try_recv(), Ok(Synthesized::Chunk(c)) if !c.last));
        assert!(matches!(rx.try_recv(), Ok(Synthesized::Chunk(c)) if c.last));
        drop(rx);
        assert!(sink.closed(), "the listener hung up");
        assert!(!sink.deliver(1, chunk(20, true), false, Duration::ZERO, t0).alive);
    }

    #[test]
    fn a_later_clause_counts_the_audio_its_listener_has_not_heard_yet() {
        let t0 = Instant::now();
        let (mut sink, _rx) = Sink::listener(Duration::from_millis(900), t0);
        // Queued 100 ms; the earlier clause still plays for 800 ms, then this chunk's 500.
        let d = sink.deliver(2, chunk(500, false), true, Duration::ZERO, t0 + Duration::from_millis(100));
        assert_eq!(d.lead, Duration::from_millis(1300));
    }

    #[test]
    fn a_listener_hears_why_synthesis_failed() {
        let (sink, mut rx) = Sink::listener(Duration::ZERO, Instant::now());
        sink.fail(3, "no voice");
        assert!(matches!(rx.try_recv(), Ok(Synthesized::Failed(m)) if m == "no voice"));
    }
}
