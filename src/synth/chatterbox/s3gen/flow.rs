//! Tokens to mel: embedding, encoder, conditioning and the meanflow solver.
//!
//! Reference: `CausalMaskedDiffWithXvec.inference` (chatterbox
//! `src/chatterbox/models/s3gen/flow.py`) and `CausalConditionalCFM.forward` /
//! `basic_euler` (`flow_matching.py`):
//!
//! * the voice's prompt tokens are prepended to the new tokens, embedded and
//!   encoded to `mu` (`[1, 80, 2·(P + N)]`);
//! * the x-vector is L2-normalised and projected to 80;
//! * `cond` is the prompt mel in its frames, zeros after;
//! * from noise `x₀`, `n` Euler steps over `t = 0, 1/n, …, 1`:
//!   `x ← x + (r − t)·v(x, mu, t, r)` (no classifier-free guidance: the
//!   meanflow checkpoints are distilled). Chatterbox-Turbo's code runs
//!   `n = 2` (its README says one step);
//! * the prompt frames are cropped off.
//!
//! Unless `finalize`, the last `pre_lookahead_len · token_mel_ratio` frames of
//! `mu` are dropped first: they depend on tokens not yet generated. (The
//! reference's `finalize=False` path builds its mask from the uncropped length
//! and fails; this follows CosyVoice, which masks the cropped length.)

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};

use super::decoder::ConditionalDecoder;
use super::encoder::UpsampleConformerEncoder;
use super::S3GenConfig;

/// The built-in (or a cloned) voice as S3Gen uses it.
#[derive(Debug, Clone)]
pub struct VoiceConds {
    /// S3 speech tokens of the reference clip.
    pub prompt_tokens: Vec<u32>,
    /// Its 24 kHz mel, `[1, 2·P, 80]` (time-major, as stored).
    pub prompt_feat: Tensor,
    /// CAMPPlus x-vector `[1, 192]`.
    pub embedding: Tensor,
}

/// Token-to-mel half of S3Gen.
#[derive(Debug, Clone)]
pub struct S3Flow {
    cfg: S3GenConfig,
    input_embedding: Embedding,
    spk_affine: Linear,
    pub encoder: UpsampleConformerEncoder,
    encoder_proj: Linear,
    pub estimator: ConditionalDecoder,
}

impl S3Flow {
    /// Loads `flow.*` (pass `vb.pp("flow")`).
    pub fn load(cfg: &S3GenConfig, vb: VarBuilder) -> Result<Self> {
        let e = &cfg.encoder;
        Ok(Self {
            cfg: cfg.clone(),
            input_embedding: embedding(cfg.vocab_size, e.input_size, vb.pp("input_embedding"))?,
            spk_affine: linear(cfg.spk_embed_dim, cfg.n_mels, vb.pp("spk_embed_affine_layer"))?,
            encoder: UpsampleConformerEncoder::load(e, vb.pp("encoder"))?,
            encoder_proj: linear(e.output_size, cfg.n_mels, vb.pp("encoder_proj"))?,
            estimator: ConditionalDecoder::load(&cfg.decoder, vb.pp("decoder.estimator"))?,
        })
    }

    /// Mel frames that `finalize = false` holds back.
    pub fn held_back_frames(&self) -> usize {
        self.cfg.encoder.pre_lookahead_len * self.cfg.encoder.upsample_stride
    }

    /// Encoder output `[1, 2T, d]` for token ids (prompt included).
    pub fn encode(&self, tokens: &[u32]) -> Result<Tensor> {
        self.encode_batch(&[tokens])
    }

    /// Encoder output `[B, 2T, d]` for `B` token sequences of one length `T`.
    pub fn encode_batch(&self, rows: &[&[u32]]) -> Result<Tensor> {
        let dev = self.spk_affine.weight().device();
        let len = rows.first().map_or(0, |r| r.len());
        if rows.iter().any(|r| r.len() != len) {
            candle_core::bail!("encoder batch rows differ in length");
        }
        for row in rows {
            self.check_tokens(row)?;
        }
        let ids: Vec<u32> = rows.concat();
        let ids = Tensor::from_vec(ids, (rows.len(), len), dev)?;
        self.encoder.forward(&self.input_embedding.forward(&ids)?)
    }

    /// Fails on a token outside the vocabulary (the embedding would read past its table).
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            candle_core::bail!("speech token {bad} is outside the vocabulary of {}", self.cfg.vocab_size);
        }
        Ok(())
    }

    /// `mu` `[B, 80, 2T]` from the encoder output.
    pub fn project(&self, h: &Tensor) -> Result<Tensor> {
        self.encoder_proj.forward(h)?.transpose(1, 2)?.contiguous()
    }

    /// The projected speaker embedding `[1, 80]`.
    pub fn speaker(&self, xvector: &Tensor) -> Result<Tensor> {
        // F.normalize: x / max(‖x‖, 1e-12).
        let norm = xvector.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
        self.spk_affine.forward(&xvector.broadcast_div(&norm)?)
    }

    /// Frames of `x₀` that [`Self::mel`] needs for `tokens` new tokens.
    pub fn total_frames(&self, voice: &VoiceConds, tokens: usize, finalize: bool) -> usize {
        let all = (voice.prompt_tokens.len() + tokens) * self.cfg.encoder.upsample_stride;
        if finalize {
            all
        } else {
            all.saturating_sub(self.held_back_frames())
        }
    }

    /// Mel `[1, 80, frames]` of the new `tokens` (prompt frames cropped).
    /// `x0` is the starting noise over prompt and new frames,
    /// `[1, 80, total_frames(..)]`.
    pub fn mel(&self, voice: &VoiceConds, tokens: &[u32], x0: &Tensor, steps: usize, finalize: bool) -> Result<Tensor> {
        self.mel_batch(voice, &[tokens], x0, steps, finalize)
    }

    /// [`Self::mel`] for `B` token windows of one length, in one computation:
    /// `x0` `[B, 80, total_frames(..)]` (row `i` the noise of `windows[i]`)
    /// -> `[B, 80, frames]`. Every row is what `mel` gives it alone, to float
    /// rounding: all rows have the same length, so no padding or mask is needed.
    pub fn mel_batch(&self, voice: &VoiceConds, windows: &[&[u32]], x0: &Tensor, steps: usize, finalize: bool) -> Result<Tensor> {
        let rows: Vec<Vec<u32>> = windows.iter().map(|w| [voice.prompt_tokens.as_slice(), w].concat()).collect();
        let rows: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        let mut mu = self.project(&self.encode_batch(&rows)?)?;
        if !finalize {
            let keep = mu.dim(D::Minus1)?.saturating_sub(self.held_back_frames());
            mu = mu.narrow(D::Minus1, 0, keep)?;
        }
        let (b, _, total) = mu.dims3()?;
        let prompt = voice.prompt_feat.dim(1)?;
        if prompt > total {
            candle_core::bail!("prompt mel ({prompt} frames) is longer than prompt + tokens ({total})");
        }
        if x0.dims() != [b, self.cfg.n_mels, total] {
            candle_core::bail!("x0 is {:?}, expected [{b}, {}, {total}]", x0.dims(), self.cfg.n_mels);
        }
        let spks = self.speaker(&voice.embedding)?;
        let cond = voice.prompt_feat.transpose(1, 2)?.pad_with_zeros(D::Minus1, 0, total - prompt)?;
        let cond = if b == 1 { cond } else { cond.broadcast_as((b, self.cfg.n_mels, total))?.contiguous()? };
        let x = self.solve(x0, &mu, &spks, &cond, steps)?;
        x.narrow(D::Minus1, prompt, total - prompt)
    }

    /// `steps` Euler steps of the mean velocity from `t = 0` to `1`.
    pub fn solve(&self, x0: &Tensor, mu: &Tensor, spks: &Tensor, cond: &Tensor, steps: usize) -> Result<Tensor> {
        let steps = steps.max(1);
        // torch.linspace(0, 1, n + 1) in f32: from the start for the first half, from the end after.
        let step = 1.0 / steps as f32;
        let t_span: Vec<f32> =
            (0..=steps).map(|i| if i < steps.div_ceil(2) { i as f32 * step } else { 1.0 - (steps - i) as f32 * step }).collect();
        let mut x = x0.clone();
        for w in t_span.windows(2) {
            let (t, r) = (w[0], w[1]);
            let v = self.estimator.forward(&x, mu, t, r, spks, cond)?;
            x = (x + (v * (r - t) as f64)?)?;
        }
        Ok(x)
    }
}
