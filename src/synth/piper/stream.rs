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
//! whole-sentence decode (see the `streamed_decode_matches_whole_sentence_decode` test
//! for the measured SNR).
//!
//! Each chunk is (a) a window's latent prepared (sentence start, flow), the
//! decoder run on it, and (b) the samples finished into a chunk (crossfade,
//! alignments). [`Engine::next_chunks`] runs (a) for several streams, one
//! decoder forward over every group of windows of equal length, then (b):
//! the scheduler's batch (`tests/piper_batch.rs` checks it against streams
//! advanced alone).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    /// 1 on the CPU: there a batched decode is no faster than its windows
    /// one after the other (every convolution runs per item, and a batch's
    /// larger activations miss the cache: 0.99x the throughput at 2 streams,
    /// 0.93-0.94x at 8; BENCHMARKS.md, "Piper: batched windows across streams"),
    /// so a scheduler gains nothing by gathering one. [`MAX_BATCH`] elsewhere
    /// (a GPU; not measured yet). `next_chunks` batches whatever it is given.
    fn max_batch(&self) -> usize {
        if self.voice.model.device().is_cpu() {
            1
        } else {
            MAX_BATCH
        }
    }

    /// Step (a) for each stream, one decoder forward per group of windows
    /// of equal shape, step (b) for each. Streams that are not this voice's
    /// live `PiperStream`s (finished, cancelled, another engine's) take
    /// their own `next_chunk`, as do the streams whose step (a) failed.
    fn next_chunks(&self, streams: &mut [&mut dyn SynthStream]) -> Vec<Result<Option<PcmChunk>, SynthError>> {
        let mut answers: Vec<Option<Result<Option<PcmChunk>, SynthError>>> = streams.iter().map(|_| None).collect();
        let mut windows = Vec::new();
        for (i, stream) in streams.iter_mut().enumerate() {
            match stream.as_any_mut().downcast_mut::<PiperStream>() {
                Some(p) if p.batchable(&self.voice) => match p.prepare_window() {
                    Ok(Some(w)) => windows.push((i, w)),
                    Ok(None) => {
                        p.finished = true;
                        answers[i] = Some(Ok(None));
                    }
                    Err(e) => answers[i] = Some(Err(e)),
                },
                _ => answers[i] = Some(stream.next_chunk()),
            }
        }
        self.decode_windows(streams, windows, &mut answers);
        answers.into_iter().map(|a| a.expect("every stream is answered")).collect()
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

    /// Step (a) of a chunk: starts the next sentence when none is in
    /// progress and runs the flow for the next window, giving its latent
    /// frames with their context; `None` once every sentence is done. Only
    /// `finish_window` moves the stream on, so a window whose decode fails
    /// is prepared again by the next call.
    fn prepare_window(&mut self) -> Result<Option<Window>, SynthError> {
        let t0 = Instant::now();
        if self.current.is_none() && !self.begin_sentence()? {
            return Ok(None);
        }
        let cfg = self.config;
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
        Ok(Some(Window { z, g: g.cloned(), start, end, lo, prepare: t0.elapsed() }))
    }

    /// Step (b) of a chunk: the decoded samples of `window` (`decode` spent
    /// on them) become the chunk: crossfaded with the previous window's tail,
    /// with the alignments that start in it. Moves the cursor on.
    fn finish_window(&mut self, window: Window, audio: &[f32], decode: Duration) -> PcmChunk {
        let t0 = Instant::now();
        let cfg = self.config;
        let hop = self.voice.model.decoder.hop_length();
        let st = self.current.as_mut().expect("a sentence is in progress");
        let Window { start, end, lo, .. } = window;
        debug_assert_eq!(st.cursor, start, "a window is finished once, in order");

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
        self.finished = last;
        PcmChunk {
            samples,
            sample_rate: self.voice.sample_rate(),
            start_sample: chunk_start,
            sentence,
            alignments: marks,
            ready_at: Instant::now(),
            compute: window.prepare + decode + t0.elapsed(),
            last,
        }
    }

    /// Whether `next_chunks` can take this stream into a batched decode of
    /// `voice`: a live stream of the same voice.
    fn batchable(&self, voice: &Arc<PiperVoice>) -> bool {
        Arc::ptr_eq(&self.voice, voice) && !self.finished && !self.cancel.is_cancelled()
    }
}

/// A window made ready for the decoder (step (a) of a chunk).
struct Window {
    /// Latent frames `[1, C, hi - lo]` of the window with its context.
    z: Tensor,
    /// Speaker conditioning `[1, G, 1]` of multi-speaker voices.
    g: Option<Tensor>,
    /// Frames `[start, end)` are emitted out of the decoded `[lo, hi)`.
    start: usize,
    end: usize,
    lo: usize,
    /// Time spent preparing it.
    prepare: Duration,
}

impl Window {
    /// Windows that can share one decoder forward: same latent shape, and
    /// speaker conditioning of the same shape (or none).
    fn batches_with(&self, other: &Window) -> bool {
        self.z.dims() == other.z.dims() && self.g.as_ref().map(Tensor::dims) == other.g.as_ref().map(Tensor::dims)
    }
}

/// Windows in one decoder forward, at most: it bounds the batch's
/// activations (the largest about 11 MB per 84-frame window of a medium
/// voice: 32 channels of 21,504 samples, f32, a few alive at once).
const MAX_BATCH: usize = 8;

impl PiperEngine {
    /// Decodes windows of equal shape together (at most [`MAX_BATCH`]) and
    /// finishes each stream's chunk; `windows` pairs a stream index with its
    /// prepared window. A window whose shape no other shares (the ragged
    /// last window of a sentence, usually) decodes alone: padding the latent
    /// to a common length is not exact, because the decoder's every layer
    /// pads its own input with zeros at the window's edge, and zeros in `z`
    /// become non-zero activations after the first layer.
    fn decode_windows(
        &self,
        streams: &mut [&mut dyn SynthStream],
        windows: Vec<(usize, Window)>,
        answers: &mut [Option<Result<Option<PcmChunk>, SynthError>>],
    ) {
        let mut groups: Vec<Vec<(usize, Window)>> = Vec::new();
        for (i, w) in windows {
            match groups.iter_mut().find(|g| g.len() < MAX_BATCH && g[0].1.batches_with(&w)) {
                Some(group) => group.push((i, w)),
                None => groups.push(vec![(i, w)]),
            }
        }
        let model = &self.voice.model;
        for group in groups {
            let t0 = Instant::now();
            let mut batched = if group.len() > 1 { decode_group(model, &group).ok() } else { None };
            let share = t0.elapsed() / group.len() as u32;
            for (k, (i, window)) in group.into_iter().enumerate() {
                let (audio, decode) = match &mut batched {
                    Some(audio) => (Ok(std::mem::take(&mut audio[k])), share),
                    // Alone: a group of one, or a batch that failed (each
                    // window then meets its own error, if it has one).
                    None => {
                        let t1 = Instant::now();
                        (model.decode(&window.z, window.g.as_ref()), t1.elapsed())
                    }
                };
                let stream = streams[i].as_any_mut().downcast_mut::<PiperStream>().expect("a PiperStream (checked)");
                answers[i] = Some(match audio {
                    Ok(audio) => Ok(Some(stream.finish_window(window, &audio, decode))),
                    Err(e) => Err(PiperError::from(e).into()),
                });
            }
        }
    }
}

/// One decoder forward over a group of windows of equal shape.
fn decode_group(model: &super::vits::Vits, group: &[(usize, Window)]) -> candle_core::Result<Vec<Vec<f32>>> {
    let z: Vec<&Tensor> = group.iter().map(|(_, w)| &w.z).collect();
    let z = Tensor::cat(&z, 0)?;
    let g: Option<Vec<&Tensor>> = group.iter().map(|(_, w)| w.g.as_ref()).collect();
    let g = g.map(|g| Tensor::cat(&g, 0)).transpose()?;
    model.decode_batch(&z, g.as_ref())
}

impl SynthStream for PiperStream {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn next_chunk(&mut self) -> Result<Option<PcmChunk>, SynthError> {
        if self.finished {
            return Ok(None);
        }
        if self.cancel.is_cancelled() {
            self.finished = true;
            return Err(SynthError::Cancelled);
        }
        let Some(window) = self.prepare_window()? else {
            self.finished = true;
            return Ok(None);
        };
        let t0 = Instant::now();
        let audio = self.voice.model.decode(&window.z, window.g.as_ref()).map_err(PiperError::from)?;
        Ok(Some(self.finish_window(window, &audio, t0.elapsed())))
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
