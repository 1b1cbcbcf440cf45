//! S3Gen + HiFT fed speech tokens as T3 produces them.
//!
//! Tokens are gathered into chunks (`first_chunk_tokens`, then
//! `chunk_tokens`, as chatterbox.cpp's `--stream-first-chunk-tokens` /
//! `--stream-chunk-tokens`). Each step re-runs the encoder and the meanflow solver over the voice's
//! prompt, up to `context_tokens` tokens whose mel was already emitted, and
//! every token not yet vocoded; all but the last `pre_lookahead_len ·
//! token_mel_ratio` (6) mel frames are then final for this stream and go to a
//! [`HiftStream`]. The end (`finish`) runs with `finalize` and emits the rest.
//! This is the scheme of chatterbox.cpp and chatterbox-streaming: the encoder
//! and estimator attend over the whole window, so a frame emitted early is
//! computed without the tokens that come after it and differs (a little) from
//! the whole-utterance mel; when `finish` runs the only step the output equals
//! [`S3Gen::synthesize`] on the same noise.
//!
//! The solver's starting noise is a [`NoiseTape`]: one fixed draw per mel
//! frame (and one for the prompt), so re-running a frame reuses its noise.

use candle_core::{Device, Result, Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::flow::VoiceConds;
use super::S3Gen;
use crate::synth::chatterbox::hift::stream::{HiftStep, HiftStream, HiftStreamConfig};

/// Starting noise for the solver, fixed per mel frame.
#[derive(Debug, Clone)]
pub struct NoiseTape {
    n_mels: usize,
    rng: StdRng,
    prompt: Vec<f32>,
    /// `[frame][mel]` for generated frames drawn so far.
    frames: Vec<f32>,
}

impl NoiseTape {
    /// The prompt's noise is drawn first, then generated frames in order.
    pub fn new(n_mels: usize, prompt_frames: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let prompt = (0..n_mels * prompt_frames).map(|_| rng.sample(StandardNormal)).collect();
        Self { n_mels, rng, prompt, frames: Vec::new() }
    }

    /// `x₀` `[1, n_mels, prompt + (to − from)]` for generated frames `from..to`.
    pub fn x0(&mut self, from: usize, to: usize, device: &Device) -> Result<Tensor> {
        while self.frames.len() < to * self.n_mels {
            let z: f32 = self.rng.sample(StandardNormal);
            self.frames.push(z);
        }
        let prompt_frames = self.prompt.len() / self.n_mels;
        let prompt = Tensor::from_slice(&self.prompt, (1, prompt_frames, self.n_mels), device)?;
        let gen = Tensor::from_slice(&self.frames[from * self.n_mels..to * self.n_mels], (1, to - from, self.n_mels), device)?;
        Tensor::cat(&[prompt, gen], 1)?.transpose(1, 2)?.contiguous()
    }
}

/// Step sizes, window and seed of an [`S3GenStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3GenStreamConfig {
    /// Tokens gathered before the first step (a smaller first chunk means earlier audio).
    pub first_chunk_tokens: usize,
    /// Tokens gathered before each later step.
    pub chunk_tokens: usize,
    /// Already-emitted tokens re-encoded as left context (bounds the work per step).
    pub context_tokens: usize,
    pub hift: HiftStreamConfig,
    /// Seeds the solver noise and (plus one) the vocoder's excitation.
    pub seed: u64,
}

impl Default for S3GenStreamConfig {
    fn default() -> Self {
        Self { first_chunk_tokens: 10, chunk_tokens: 25, context_tokens: 50, hift: HiftStreamConfig::default(), seed: 0 }
    }
}

/// A step's input to the flow, from [`S3GenStream::prepare_flow`].
#[derive(Debug)]
pub struct FlowStep {
    finalize: bool,
    /// First token of the window.
    w0: usize,
    /// Generated mel frames `first..end` the solver covers.
    first: usize,
    end: usize,
    /// `x₀` `[1, 80, prompt + end − first]`; `None` when no frame is new (no flow to run).
    pub x0: Option<Tensor>,
}

/// One utterance.
#[derive(Debug)]
/// Owns a clone of the model (shared tensors), so it can be boxed and sent
/// to a synthesis thread.
pub struct S3GenStream {
    s3gen: S3Gen,
    voice: VoiceConds,
    cfg: S3GenStreamConfig,
    tokens: Vec<u32>,
    /// Tokens already seen by a step.
    stepped: usize,
    /// Generated mel frames handed to the vocoder.
    mel_done: usize,
    noise: NoiseTape,
    hift: HiftStream,
    /// Output samples so far, and the utterance-start fade.
    position: usize,
    fade: Vec<f32>,
    finished: bool,
}

impl S3GenStream {
    pub fn new(s3gen: &S3Gen, voice: VoiceConds, cfg: S3GenStreamConfig) -> Result<Self> {
        let prompt_frames = voice.prompt_feat.dim(1)?;
        let noise = NoiseTape::new(s3gen.config().n_mels, prompt_frames, cfg.seed);
        let sine = s3gen.hift.sine_state(cfg.seed.wrapping_add(1));
        let hift = HiftStream::new(&s3gen.hift, cfg.hift, sine);
        let fade = super::trim_fade(s3gen.config().hift.sample_rate);
        Ok(Self { s3gen: s3gen.clone(), voice, cfg, tokens: Vec::new(), stepped: 0, mel_done: 0, noise, hift, position: 0, fade, finished: false })
    }

    /// Adds speech tokens; once a chunk's worth has gathered, runs a step and
    /// returns the audio (24 kHz) that became final. Often none.
    pub fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if !self.add(tokens)? {
            return Ok(Vec::new());
        }
        self.step(false)
    }

    /// Adds speech tokens without stepping; true when a chunk's worth has
    /// gathered, so that [`Self::push`] would run a step now.
    pub fn add(&mut self, tokens: &[u32]) -> Result<bool> {
        if self.finished {
            candle_core::bail!("push after finish");
        }
        self.tokens.extend_from_slice(tokens);
        let chunk = if self.stepped == 0 { self.cfg.first_chunk_tokens } else { self.cfg.chunk_tokens };
        Ok(self.tokens.len() - self.stepped >= chunk.max(1))
    }

    /// No more tokens (Turbo's trailing silence tokens included): the rest of the audio.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        if self.finished {
            return Ok(Vec::new());
        }
        self.finished = true;
        self.step(true)
    }

    /// One step, in the three parts that [`super::batch`] runs across streams:
    /// [`Self::prepare_flow`], the flow (here alone), [`Self::prepare_vocode`],
    /// the vocoder (here alone), [`Self::complete`].
    fn step(&mut self, finalize: bool) -> Result<Vec<f32>> {
        let step = self.prepare_flow(finalize)?;
        let mel = match &step.x0 {
            Some(x0) => Some(self.s3gen.flow.mel(&self.voice, self.window(&step), x0, self.s3gen.config().n_timesteps, finalize)?),
            None => None,
        };
        let vocode = self.prepare_vocode(&step, mel.as_ref())?;
        let audio = match &vocode {
            HiftStep::Vocode(v) => Some(self.s3gen.hift.decode(&v.mel, &v.source)?.flatten_all()?.to_vec1()?),
            HiftStep::Done(_) => None,
        };
        self.complete(vocode, audio.as_deref())
    }

    /// The per-stream start of a step: which tokens the window holds and the
    /// solver's starting noise for them.
    pub fn prepare_flow(&mut self, finalize: bool) -> Result<FlowStep> {
        self.stepped = self.tokens.len();
        let flow = &self.s3gen.flow;
        let stride = self.s3gen.config().mel_frames_per_token();
        let w0 = (self.mel_done / stride).saturating_sub(self.cfg.context_tokens);
        let window = &self.tokens[w0..];
        // Checked here, so that a bad token fails its own stream and not a batch.
        flow.check_tokens(window)?;
        let prompt = self.voice.prompt_feat.dim(1)?;
        let total = flow.total_frames(&self.voice, window.len(), finalize);
        let first = w0 * stride;
        let end = first + total.saturating_sub(prompt);
        let x0 = if end > self.mel_done { Some(self.noise.x0(first, end, self.voice.prompt_feat.device())?) } else { None };
        Ok(FlowStep { finalize, w0, first, end, x0 })
    }

    /// The tokens `step`'s flow runs over (after the voice's prompt).
    pub fn window(&self, step: &FlowStep) -> &[u32] {
        &self.tokens[step.w0..]
    }

    /// The voice the flow conditions on.
    pub fn voice(&self) -> &VoiceConds {
        &self.voice
    }

    /// Hands the flow's mel for `step` (`[1, 80, frames]`, `None` when
    /// `step.x0` is) to the vocoder and prepares its window.
    pub fn prepare_vocode(&mut self, step: &FlowStep, mel: Option<&Tensor>) -> Result<HiftStep> {
        if let Some(mel) = mel {
            let new = mel.narrow(D::Minus1, self.mel_done - step.first, step.end - self.mel_done)?;
            self.mel_done = step.end;
            self.hift.append(&new)?;
        }
        self.hift.prepare(step.finalize)
    }

    /// Ends a step: `audio` is [`crate::synth::chatterbox::hift::Hift::decode`]
    /// of the window when `step` has one. Returns the step's audio.
    pub fn complete(&mut self, step: HiftStep, audio: Option<&[f32]>) -> Result<Vec<f32>> {
        let mut out = match step {
            HiftStep::Done(out) => out,
            HiftStep::Vocode(v) => match audio {
                Some(audio) => self.hift.complete(v, audio)?,
                None => candle_core::bail!("S3Gen step: the vocoder window was not decoded"),
            },
        };
        self.fade(&mut out);
        Ok(out)
    }

    /// The utterance-start trim fade, on whichever samples it covers.
    fn fade(&mut self, audio: &mut [f32]) {
        for (s, w) in audio.iter_mut().zip(self.fade.iter().skip(self.position)) {
            *s *= w;
        }
        self.position += audio.len();
    }
}
