//! Streaming synthesis with a Piper voice.
//!
//! Text is phonemized per sentence when the request starts (cheap, and it
//! validates the request before any audio). Each sentence then runs the text
//! encoder, duration predictor and flow in one go — they work at phoneme and
//! frame rate and take a few milliseconds — and the HiFi-GAN, where the time
//! goes, decodes the latent in windows: a short first window so the first
//! chunk leaves early, then longer ones. Each window is decoded with
//! `padding_frames` of context on both sides (thrown away), and consecutive
//! windows overlap by `crossfade_samples`, crossfaded, so the stream matches a
//! whole-sentence decode (see the `streamed_decode_matches_whole_decode` test
//! for the measured SNR).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::vits::{Prepared, Scales};
use super::{PiperError, PiperVoice};
use crate::audio::{crossfade_into, FadeCurve};
use crate::synth::{
    Preset,
    Alignment, AlignmentKind, CancelToken, Engine, EngineInfo, PcmChunk, SynthError, SynthRequest, SynthStream,
    MAX_REQUEST_CHARS,
};
use crate::text::{PhonemeIdMap, PhonemeIds, PhonemeSentence, Phonemizer};

/// How the decoder is windowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Latent frames in a sentence's first window (one frame is `hop` samples,
    /// 256 for Piper voices: 11.6 ms at 22.05 kHz).
    pub first_chunk_frames: usize,
    /// Latent frames in every later window.
    pub chunk_frames: usize,
    /// Context frames decoded on each side of a window and discarded.
    pub padding_frames: usize,
    /// Samples shared by consecutive windows and crossfaded.
    pub crossfade_samples: usize,
    /// Context frames for the flow when it runs on the first window alone
    /// (the rest of the sentence then goes through the flow in one pass).
    pub flow_context_frames: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        // Piper's own streaming experiment used 45-frame chunks with 10 frames
        // of padding. A shorter first window brings the first audio forward;
        // longer later windows waste less on padding (64 vs 45 frames: 8% less
        // compute), and 10 frames cover the decoder's receptive field (SNR
        // against a whole-sentence decode > 100 dB; 4 frames: 38 dB).
        Self { first_chunk_frames: 16, chunk_frames: 64, padding_frames: 10, crossfade_samples: 128, flow_context_frames: 16 }
    }
}

impl StreamConfig {
    /// The `realtime` preset: a first window of 8 frames (93 ms of audio at
    /// 22.05 kHz) so the first chunk leaves sooner; later windows of 32. The
    /// padding stays at 10 frames, so the seams are as clean as the default's.
    pub fn realtime() -> Self {
        Self { first_chunk_frames: 8, chunk_frames: 32, ..Self::default() }
    }

    /// Decodes each sentence in one window (no streaming within a sentence).
    pub fn whole_sentence() -> Self {
        Self {
            first_chunk_frames: usize::MAX / 4,
            chunk_frames: usize::MAX / 4,
            padding_frames: 0,
            crossfade_samples: 0,
            flow_context_frames: 0,
        }
    }

    fn validate(&self) -> Result<(), PiperError> {
        if self.first_chunk_frames == 0 || self.chunk_frames == 0 {
            return Err(PiperError::InvalidOption("chunk sizes must be at least one frame".into()));
        }
        Ok(())
    }
}

/// A Piper voice with its phonemizer: an [`Engine`].
pub struct PiperEngine {
    voice: Arc<PiperVoice>,
    phonemizer: Arc<dyn Phonemizer>,
    id_map: PhonemeIdMap,
    config: StreamConfig,
}

impl PiperEngine {
    pub fn new(voice: PiperVoice, phonemizer: Arc<dyn Phonemizer>, config: StreamConfig) -> Result<Self, PiperError> {
        config.validate()?;
        let map_json = serde_json::to_value(&voice.config.phoneme_id_map)
            .map_err(|e| PiperError::BadConfig { path: Default::default(), reason: e.to_string() })?;
        let id_map = PhonemeIdMap::from_json(&map_json)
            .map_err(|e| PiperError::BadConfig { path: Default::default(), reason: e.to_string() })?;
        Ok(Self { voice: Arc::new(voice), phonemizer, id_map, config })
    }

    pub fn voice(&self) -> &PiperVoice {
        &self.voice
    }

    pub fn config(&self) -> StreamConfig {
        self.config
    }

    /// Same voice, other windowing.
    /// The phonemizer, to share with other voices.
    pub fn phonemizer(&self) -> Arc<dyn Phonemizer> {
        self.phonemizer.clone()
    }

    pub fn with_config(&self, config: StreamConfig) -> Result<Self, PiperError> {
        config.validate()?;
        Ok(Self { voice: self.voice.clone(), phonemizer: self.phonemizer.clone(), id_map: self.id_map.clone(), config })
    }

    /// Phoneme ids per sentence, as the model will see them.
    pub fn sentence_ids(&self, text: &str) -> Result<Vec<(PhonemeSentence, PhonemeIds)>, SynthError> {
        let sentences = self.phonemizer.phonemize(text, &self.voice.config.espeak.voice)?;
        Ok(sentences
            .into_iter()
            .map(|s| {
                let ids = self.id_map.sentence_ids(&s);
                (s, ids)
            })
            // BOS, PAD, EOS alone: nothing the voice can say (emoji, unknown symbols).
            .filter(|(_, ids)| ids.phoneme_index.iter().any(Option::is_some))
            .collect())
    }

    fn scales(&self, request: &SynthRequest) -> Result<Scales, PiperError> {
        let d = self.voice.config.scales();
        let o = &request.options;
        let s = Scales {
            noise_scale: o.noise_scale.unwrap_or(d.noise_scale),
            length_scale: o.length_scale.unwrap_or(d.length_scale),
            noise_w: o.noise_w.unwrap_or(d.noise_w),
        };
        let ok = |v: f32, lo: f32, hi: f32| v.is_finite() && v >= lo && v <= hi;
        if !ok(s.noise_scale, 0.0, 2.0) || !ok(s.noise_w, 0.0, 2.0) {
            return Err(PiperError::InvalidOption("noise_scale and noise_w must be within 0..=2".into()));
        }
        if !ok(s.length_scale, 0.1, 10.0) {
            return Err(PiperError::InvalidOption("length_scale must be within 0.1..=10".into()));
        }
        Ok(s)
    }
}

impl Engine for PiperEngine {
    fn info(&self) -> EngineInfo {
        let mut speakers: Vec<(u32, String)> =
            self.voice.config.speaker_id_map.iter().map(|(k, v)| (*v, k.clone())).collect();
        speakers.sort();
        EngineInfo {
            engine: "piper",
            voice: self.voice.name.clone(),
            sample_rate: self.voice.sample_rate(),
            speakers: speakers.into_iter().map(|(_, n)| n).collect(),
        }
    }

    fn start(&self, request: SynthRequest, cancel: CancelToken) -> Result<Box<dyn SynthStream>, SynthError> {
        let chars = request.text.chars().count();
        if chars > MAX_REQUEST_CHARS {
            return Err(SynthError::TextTooLong { chars, max: MAX_REQUEST_CHARS });
        }
        let scales = self.scales(&request)?;
        let speaker = self.voice.speaker_id(request.options.speaker.as_deref())?;
        let sentences = self.sentence_ids(&request.text)?;
        if sentences.is_empty() {
            return Err(SynthError::EmptyText);
        }
        let rng = match request.options.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        Ok(Box::new(PiperStream {
            voice: self.voice.clone(),
            config: match request.options.preset {
                Some(Preset::Realtime) => StreamConfig::realtime(),
                Some(Preset::Fidelity) => StreamConfig::whole_sentence(),
                Some(Preset::Balanced) | None => self.config,
            },
            scales,
            speaker,
            rng,
            cancel,
            sentences: sentences.into_iter().enumerate().collect(),
            current: None,
            emitted: 0,
            finished: false,
        }))
    }
}

/// One sentence being decoded.
struct SentenceState {
    index: usize,
    /// The prior sample `z_p` in `z`, and the speaker conditioning.
    prepared: Prepared,
    /// The flow's output from frame `.1` to the sentence end, once computed.
    z_rest: Option<(Tensor, usize)>,
    frames: usize,
    /// Next latent frame to emit.
    cursor: usize,
    /// Samples decoded past the last emitted window, to crossfade with the next.
    tail: Vec<f32>,
    /// Phoneme and word spans in sentence samples, by start.
    alignments: VecDeque<Alignment>,
    /// Utterance sample where the sentence starts.
    start_sample: u64,
}

struct PiperStream {
    voice: Arc<PiperVoice>,
    config: StreamConfig,
    scales: Scales,
    speaker: Option<u32>,
    rng: StdRng,
    cancel: CancelToken,
    sentences: VecDeque<(usize, (PhonemeSentence, PhonemeIds))>,
    current: Option<SentenceState>,
    /// Samples emitted so far in the utterance.
    emitted: u64,
    finished: bool,
}

impl PiperStream {
    fn begin_sentence(&mut self) -> Result<bool, SynthError> {
        let Some((index, (sentence, ids))) = self.sentences.pop_front() else {
            return Ok(false);
        };
        let prepared = self.voice.model.prepare_prior(&ids.ids, self.speaker, self.scales, &mut self.rng)?;
        let hop = self.voice.model.decoder.hop_length() as u64;
        let frames = prepared.z.dim(2).map_err(PiperError::from)?;
        let alignments = alignments(&sentence, &ids, &prepared.durations, hop, self.emitted);
        self.current = Some(SentenceState {
            index,
            prepared,
            z_rest: None,
            frames,
            cursor: 0,
            tail: Vec::new(),
            alignments,
            start_sample: self.emitted,
        });
        Ok(true)
    }

    /// Decodes the next window of the current sentence.
    fn decode_window(&mut self) -> Result<PcmChunk, SynthError> {
        let t0 = Instant::now();
        let cfg = self.config;
        let hop = self.voice.model.decoder.hop_length();
        let st = self.current.as_mut().expect("a sentence is in progress");
        let size = if st.cursor == 0 { cfg.first_chunk_frames } else { cfg.chunk_frames };
        let start = st.cursor;
        let end = start.saturating_add(size).min(st.frames);
        let lo = start.saturating_sub(cfg.padding_frames);
        let hi = end.saturating_add(cfg.padding_frames).min(st.frames);
        let model = &self.voice.model;
        let g = st.prepared.g.as_ref();
        let z = if start == 0 {
            // First window: the flow on just enough frames for it.
            let ctx = if end == st.frames { 0 } else { cfg.flow_context_frames };
            model.flow_window(&st.prepared.z, lo, hi, ctx, g)
        } else {
            if st.z_rest.is_none() {
                let z = model.flow_window(&st.prepared.z, lo, st.frames, cfg.flow_context_frames, g);
                st.z_rest = Some((z.map_err(PiperError::from)?, lo));
            }
            let (z_rest, from) = st.z_rest.as_ref().expect("set above");
            z_rest.narrow(2, lo - from, hi - lo)
        }
        .map_err(PiperError::from)?;
        let audio = self.voice.model.decode(&z, st.prepared.g.as_ref()).map_err(PiperError::from)?;

        // Samples of [start, end) plus, if more follows, a crossfade tail.
        let from = (start - lo) * hop;
        let to = (end - lo) * hop;
        let last_in_sentence = end == st.frames;
        let tail_len = if last_in_sentence { 0 } else { cfg.crossfade_samples.min(audio.len() - to) };
        let mut samples = audio[from..to].to_vec();
        if !st.tail.is_empty() {
            crossfade_into(&st.tail, &mut samples, FadeCurve::Linear);
        }
        st.tail = audio[to..to + tail_len].to_vec();
        st.cursor = end;

        let chunk_start = st.start_sample + (start * hop) as u64;
        let chunk_end = chunk_start + samples.len() as u64;
        let mut marks = Vec::new();
        while st.alignments.front().is_some_and(|a| a.start_sample < chunk_end) {
            marks.extend(st.alignments.pop_front());
        }
        let sentence = st.index;
        if last_in_sentence {
            self.current = None;
        }
        self.emitted = chunk_end;
        let last = last_in_sentence && self.sentences.is_empty();
        Ok(PcmChunk {
            samples,
            sample_rate: self.voice.sample_rate(),
            start_sample: chunk_start,
            sentence,
            alignments: marks,
            ready_at: Instant::now(),
            compute: t0.elapsed(),
            last,
        })
    }
}

impl SynthStream for PiperStream {
    fn next_chunk(&mut self) -> Result<Option<PcmChunk>, SynthError> {
        if self.finished {
            return Ok(None);
        }
        if self.cancel.is_cancelled() {
            self.finished = true;
            return Err(SynthError::Cancelled);
        }
        if self.current.is_none() {
            let t0 = Instant::now();
            if !self.begin_sentence()? {
                self.finished = true;
                return Ok(None);
            }
            let mut chunk = self.decode_window()?;
            chunk.compute = t0.elapsed();
            self.finished = chunk.last;
            return Ok(Some(chunk));
        }
        let chunk = self.decode_window()?;
        self.finished = chunk.last;
        Ok(Some(chunk))
    }
}

/// Phoneme and word spans of a sentence, in utterance samples.
fn alignments(sentence: &PhonemeSentence, ids: &PhonemeIds, durations: &[u32], hop: u64, offset: u64) -> VecDeque<Alignment> {
    let mut out: Vec<Alignment> = Vec::new();
    let mut pos = offset;
    let mut word: Option<(usize, u64, u64)> = None; // (index, start, end)
    let mut words: Vec<Alignment> = Vec::new();
    let flush_word = |word: &mut Option<(usize, u64, u64)>, words: &mut Vec<Alignment>| {
        if let Some((w, s, e)) = word.take() {
            if let Some(text) = sentence.words.get(w) {
                words.push(Alignment { kind: AlignmentKind::Word, text: text.clone(), start_sample: s, end_sample: e });
            }
        }
    };
    let mut last_phoneme: Option<usize> = None;
    for (i, &d) in durations.iter().enumerate() {
        let len = d as u64 * hop;
        let (start, end) = (pos, pos + len);
        pos = end;
        if let Some(p) = ids.phoneme_index.get(i).copied().flatten() {
            if last_phoneme == Some(p) {
                if let Some(a) = out.last_mut() {
                    a.end_sample = end; // the PAD after a phoneme belongs to it
                }
            } else if let Some(ch) = sentence.phonemes.get(p) {
                out.push(Alignment { kind: AlignmentKind::Phoneme, text: ch.to_string(), start_sample: start, end_sample: end });
                last_phoneme = Some(p);
            }
        }
        match (ids.word_index.get(i).copied().flatten(), &mut word) {
            (Some(w), Some((cur, _, e))) if *cur == w => *e = end,
            (Some(w), _) => {
                flush_word(&mut word, &mut words);
                word = Some((w, start, end));
            }
            (None, _) => {}
        }
    }
    flush_word(&mut word, &mut words);
    out.extend(words);
    out.sort_by_key(|a| (a.start_sample, a.kind == AlignmentKind::Phoneme));
    out.into()
}

/// Decodes `z` whole (the reference for the streaming tests).
pub fn decode_whole(voice: &PiperVoice, z: &Tensor, g: Option<&Tensor>) -> Result<Vec<f32>, PiperError> {
    Ok(voice.model.decode(z, g)?)
}
