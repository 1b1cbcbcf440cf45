//! Streaming synthesis with a Piper voice.
//!
//! Text is phonemized per sentence when the request starts (cheap, and it
//! validates the request before any audio). Each sentence then runs the text
//! encoder and the duration predictor in one go (attention is global; they
//! work at the phoneme rate and take a few milliseconds), and the flow and
//! the HiFi-GAN, where the time goes, stream the sentence out in windows: a
//! short first window so the first chunk leaves early, then longer ones.
//! Both stream ([`Vits::synth_push`]): each convolution keeps the input
//! tail its next outputs need and holds back the outputs whose right
//! context has not arrived, so every activation is computed once and the
//! stream equals the whole-sentence synthesis up to float summation order
//! (`tests/piper_streaming_cache.rs`). To emit a window's samples, the
//! frames up to the window's end go in plus the few the hold-back needs
//! (about 32 for the flow and 10 for the decoder of a medium voice); the
//! samples computed past the window wait for the next one.
//!
//! Each chunk is (a) the window's new frames prepared (sentence start),
//! the flow and decoder pushed on, and (b) the samples finished into a
//! chunk (alignments). [`Engine::next_chunks`] runs (a) for several
//! streams, one push over every group of windows whose new frames and
//! caches have equal shapes (the caches stacked into one batch, and split
//! again after), then (b): the scheduler's batch (`tests/piper_batch.rs`
//! checks it against streams advanced alone).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::vits::streaming::StreamState;
use super::vits::{Prepared, Scales, Vits};
use super::{PiperError, PiperVoice};
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
    /// Latent frames in later windows at most (they grow to it: [`StreamConfig::window_at`]).
    pub chunk_frames: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        // A short first window brings the first audio forward; later windows
        // are longer so that the per-window overhead (one push through some
        // 60 layers) stays small. Every activation is computed once
        // whatever the windows.
        Self { first_chunk_frames: 16, chunk_frames: 64 }
    }
}

impl StreamConfig {
    /// The `realtime` preset: a first window of 8 frames (93 ms of audio at
    /// 22.05 kHz) so the first chunk leaves sooner; later windows of 32. The
    /// output is the same as the default's (the windows only set when
    /// samples leave).
    pub fn realtime() -> Self {
        Self { first_chunk_frames: 8, chunk_frames: 32 }
    }

    /// Decodes each sentence in one window (no streaming within a sentence).
    pub fn whole_sentence() -> Self {
        Self {
            first_chunk_frames: usize::MAX / 4,
            chunk_frames: usize::MAX / 4,
        }
    }

    /// Frames in the window that starts at frame `cursor` of a sentence:
    /// the first window, then windows as long as everything before them
    /// (16, 16, 32, 64, 64... by default) up to `chunk_frames`. Each window
    /// then costs a fraction of the audio already buffered ahead of it, so
    /// the utterance can start as soon as its second window is under way,
    /// and the first sound waits for two short windows, not a long one.
    pub fn window_at(&self, cursor: usize) -> usize {
        if cursor == 0 {
            self.first_chunk_frames
        } else {
            cursor.clamp(self.first_chunk_frames.min(self.chunk_frames), self.chunk_frames)
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

    /// Step (a) for each stream, one push per group of windows of equal
    /// shapes (new frames and caches), step (b) for each. Streams that are not this voice's
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
    frames: usize,
    /// Next latent frame to emit.
    cursor: usize,
    /// The flow's and the decoder's caches, and the frames they have been given.
    caches: StreamState,
    fed: usize,
    /// Samples decoded past the last emitted window.
    pending: Vec<f32>,
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
            frames,
            cursor: 0,
            caches: StreamState::default(),
            fed: 0,
            pending: Vec::new(),
            alignments,
            start_sample: self.emitted,
        });
        Ok(true)
    }

    /// Step (a) of a chunk: starts the next sentence when none is in
    /// progress and takes the frames of the prior sample the flow and the
    /// decoder have yet to be given for the next window (`Window::z`);
    /// `None` once every sentence is done. Only `finish_window` moves the
    /// stream on (the window is pushed through a copy of the caches), so a
    /// window whose decode fails is prepared again by the next call.
    fn prepare_window(&mut self) -> Result<Option<Window>, SynthError> {
        let t0 = Instant::now();
        if self.current.is_none() && !self.begin_sentence()? {
            return Ok(None);
        }
        let cfg = self.config;
        let model = &self.voice.model;
        let st = self.current.as_mut().expect("a sentence is in progress");
        let size = cfg.window_at(st.cursor);
        let start = st.cursor;
        let end = start.saturating_add(size).min(st.frames);
        // The frames whose push makes the window's samples final.
        let hop = model.decoder.hop_length();
        let to = (end..st.frames).find(|&n| model.ready_samples(n) >= end * hop).unwrap_or(st.frames).max(st.fed);
        let z = (to > st.fed).then(|| st.prepared.z.narrow(2, st.fed, to - st.fed)).transpose().map_err(PiperError::from)?;
        Ok(Some(Window {
            z,
            g: st.prepared.g.clone(),
            caches: st.caches.clone(),
            last: to == st.frames,
            start,
            end,
            to,
            prepare: t0.elapsed(),
        }))
    }

    /// Step (b) of a chunk: `window` decoded (`audio`, what its push gave;
    /// `decode` spent on it) becomes the chunk: the window's samples with
    /// the alignments that start in them. Moves the cursor on.
    fn finish_window(&mut self, window: Window, audio: &[f32], decode: Duration) -> PcmChunk {
        let t0 = Instant::now();
        let hop = self.voice.model.decoder.hop_length();
        let st = self.current.as_mut().expect("a sentence is in progress");
        let Window { start, end, to, caches, .. } = window;
        debug_assert_eq!(st.cursor, start, "a window is finished once, in order");
        st.caches = caches;
        st.fed = to;
        st.pending.extend_from_slice(audio);
        let n = (end - start) * hop;
        debug_assert!(st.pending.len() >= n, "{} samples pending for a window of {n}", st.pending.len());
        let samples: Vec<f32> = st.pending.drain(..n.min(st.pending.len())).collect();
        st.cursor = end;
        let last_in_sentence = end == st.frames;
        debug_assert!(!last_in_sentence || st.pending.is_empty(), "samples left past the sentence end");

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
    /// The frames `[1, C, to - fed]` of the prior sample the flow has yet
    /// to be given for this window (`None`: it has them all).
    z: Option<Tensor>,
    /// Speaker conditioning `[1, G, 1]` of multi-speaker voices.
    g: Option<Tensor>,
    /// A copy of the sentence's flow and decoder caches, pushed on.
    caches: StreamState,
    /// Whether `z` ends the sentence.
    last: bool,
    /// Frames `[start, end)` are emitted once the first `to` have gone in.
    start: usize,
    end: usize,
    to: usize,
    /// Time spent preparing it.
    prepare: Duration,
}

impl Window {
    /// Windows that can share one push: the same number of new
    /// frames, speaker conditioning of the same shape (or none), both or
    /// neither ending a sentence, and caches of the same shapes.
    fn batches_with(&self, other: &Window) -> bool {
        let dims = |t: &Option<Tensor>| t.as_ref().map(|t| t.dims().to_vec());
        self.z.is_some()
            && dims(&self.z) == dims(&other.z)
            && dims(&self.g) == dims(&other.g)
            && self.last == other.last
            && self.caches.batches_with(&other.caches)
    }

    /// Pushes the window's frames through its copy of the caches alone:
    /// the samples that became final.
    fn decode(&mut self, model: &Vits) -> candle_core::Result<Vec<f32>> {
        let Some(z) = &self.z else { return Ok(Vec::new()) };
        Ok(model.synth_push(&mut self.caches, z, self.g.as_ref(), self.last)?.pop().unwrap_or_default())
    }
}

/// Windows in one push, at most: it bounds the batch's activations (the
/// largest 2 MB per 64-frame window of a medium voice: 32 channels of
/// 16,384 samples, f32, a few alive at once).
const MAX_BATCH: usize = 8;

impl PiperEngine {
    /// Decodes windows of equal shapes together (at most [`MAX_BATCH`]) and
    /// finishes each stream's chunk; `windows` pairs a stream index with its
    /// prepared window. A window whose shapes no other shares (a sentence's
    /// first or ragged last window, usually) decodes alone: padding the
    /// latent to a common length is not exact, because the decoder's every
    /// layer pads its own input with zeros at the sentence's edge, and zeros
    /// in `z` become non-zero activations after the first layer.
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
        for mut group in groups {
            let t0 = Instant::now();
            let mut batched = if group.len() > 1 { decode_group(model, &mut group).ok() } else { None };
            let share = t0.elapsed() / group.len() as u32;
            for (k, (i, mut window)) in group.into_iter().enumerate() {
                let (audio, decode) = match &mut batched {
                    Some(audio) => (Ok(std::mem::take(&mut audio[k])), share),
                    // Alone: a group of one, or a batch that failed (each
                    // window then meets its own error, if it has one).
                    None => {
                        let t1 = Instant::now();
                        (window.decode(model), t1.elapsed())
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

/// One push over a group of windows that batch together; on
/// success each window's caches are its part of the batch's.
fn decode_group(model: &Vits, group: &mut [(usize, Window)]) -> candle_core::Result<Vec<Vec<f32>>> {
    let z: Option<Vec<&Tensor>> = group.iter().map(|(_, w)| w.z.as_ref()).collect();
    let z = Tensor::cat(&z.ok_or_else(|| candle_core::Error::Msg("a window without frames in a batch".into()))?, 0)?;
    let g: Option<Vec<&Tensor>> = group.iter().map(|(_, w)| w.g.as_ref()).collect();
    let g = g.map(|g| Tensor::cat(&g, 0)).transpose()?;
    let states: Vec<&StreamState> = group.iter().map(|(_, w)| &w.caches).collect();
    let mut state = StreamState::stack(&states)?;
    let audio = model.synth_push(&mut state, &z, g.as_ref(), group[0].1.last)?;
    for ((_, w), s) in group.iter_mut().zip(state.split(audio.len())?) {
        w.caches = s;
    }
    Ok(audio)
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
        let Some(mut window) = self.prepare_window()? else {
            self.finished = true;
            return Ok(None);
        };
        let t0 = Instant::now();
        let audio = window.decode(&self.voice.model).map_err(PiperError::from)?;
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

#[cfg(test)]
mod tests {
    use super::StreamConfig;

    #[test]
    fn windows_grow_to_the_chunk_size() {
        let cfg = StreamConfig::default();
        let mut cursor = 0;
        let mut sizes = Vec::new();
        while cursor < 300 {
            let n = cfg.window_at(cursor);
            sizes.push(n);
            cursor += n;
        }
        assert_eq!(sizes, [16, 16, 32, 64, 64, 64, 64]);
        let rt = StreamConfig::realtime();
        assert_eq!([0, 8, 16, 32, 64].map(|c| rt.window_at(c)), [8, 8, 16, 32, 32]);
        // A first window longer than the rest: the rest keep their size.
        let odd = StreamConfig { first_chunk_frames: 3, chunk_frames: 2 };
        assert_eq!([0, 3, 5].map(|c| odd.window_at(c)), [3, 2, 2]);
        let whole = StreamConfig::whole_sentence();
        assert!(whole.window_at(0) > 1_000_000);
    }
}
