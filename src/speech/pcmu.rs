//! The one adapter from an engine's chunks to telephone audio: resampled to
//! 8 kHz, mu-law encoded, word timings moved to 8 kHz sample offsets.

use crate::audio::{encode_mulaw_into, AudioError, StreamResampler};
use crate::media::RATE;
use crate::synth::{AlignmentKind, PcmChunk};

/// One utterance's way from the engine's rate to 8 kHz mu-law.
pub struct PcmuStream {
    rate: u32,
    resampler: StreamResampler,
    pcm: Vec<f32>,
}

/// A chunk as the playout takes it.
#[derive(Debug, Default)]
pub struct PcmuChunk {
    pub pcmu: Vec<u8>,
    /// Words starting in the chunk: (offset in 8 kHz samples from the utterance start, text).
    pub words: Vec<(u64, String)>,
}

impl PcmuStream {
    pub fn new(engine_rate: u32) -> Result<Self, AudioError> {
        Ok(Self { rate: engine_rate, resampler: StreamResampler::new(engine_rate, RATE)?, pcm: Vec::new() })
    }

    /// Converts `chunk` (the utterance's last one flushes the resampler).
    pub fn convert(&mut self, chunk: &PcmChunk) -> PcmuChunk {
        self.pcm.clear();
        self.resampler.process(&chunk.samples, &mut self.pcm);
        if chunk.last {
            self.resampler.flush(&mut self.pcm);
        }
        let mut out = PcmuChunk { pcmu: Vec::with_capacity(self.pcm.len()), words: Vec::new() };
        encode_mulaw_into(&self.pcm, &mut out.pcmu);
        out.words = chunk
            .alignments
            .iter()
            .filter(|a| a.kind == AlignmentKind::Word)
            .map(|a| (a.start_sample * RATE as u64 / self.rate as u64, a.text.clone()))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Alignment;
    use std::time::{Duration, Instant};

    fn chunk(samples: Vec<f32>, last: bool, words: &[(u64, &str)]) -> PcmChunk {
        PcmChunk {
            samples,
            sample_rate: 16000,
            start_sample: 0,
            sentence: 0,
            alignments: words
                .iter()
                .map(|(s, t)| Alignment { kind: AlignmentKind::Word, text: t.to_string(), start_sample: *s, end_sample: s + 10 })
                .collect(),
            ready_at: Instant::now(),
            compute: Duration::ZERO,
            last,
        }
    }

    #[test]
    fn a_16_khz_utterance_comes_out_at_half_the_samples_with_words_moved() {
        let mut phone = PcmuStream::new(16000).unwrap();
        let tone: Vec<f32> = (0..3200).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let a = phone.convert(&chunk(tone[..1600].to_vec(), false, &[(0, "one"), (800, "two")]));
        let b = phone.convert(&chunk(tone[1600..].to_vec(), true, &[]));
        assert_eq!(a.pcmu.len() + b.pcmu.len(), 1600, "every input sample accounted for once flushed");
        assert_eq!(a.words, vec![(0, "one".to_string()), (400, "two".to_string())]);
    }
}
