//! The GPT-2 decoder stack (Radford et al. 2019, "Language Models are
//! Unsupervised Multitask Learners") as T3 uses it: HF
//! `transformers.GPT2Model` fed with `inputs_embeds`.
//!
//! Reference: `transformers/models/gpt2/modeling_gpt2.py`; configs in
//! `chatterbox/models/t3/llama_configs.py` (`GPT2_MEDIUM_CONFIG` for Turbo,
//! `GPT2_SMALL_CONFIG` for Nano).
//!
//! * The token table `wte` is never used (T3 supplies its own embeddings; the
//!   reference deletes it after loading), but the learned absolute position
//!   table `wpe` is added to the inputs, at positions counted over the whole
//!   prompt and continuing through decoding.
//! * Pre-LN blocks: `x + attn(ln_1(x))`, `x + mlp(ln_2(x))`, then `ln_f`.
//! * Linear layers are GPT-2's `Conv1D`: weights stored `[in, out]`, `y = x W + b`.
//! * MLP activation `gelu_new` is the tanh approximation of GELU.
//!
//! The model holds only weights; per-utterance state (the key/value cache)
//! lives in [`Gpt2State`], so one loaded model serves many streams.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::kv_cache::KvCache;
use candle_nn::{LayerNorm, VarBuilder};
use serde::{Deserialize, Serialize};

/// The backbone's hyper-parameters (the fields of HF's `GPT2Config` that
/// change the computation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_layer: usize,
    /// Rows of `wpe`: the longest prompt plus generated tokens.
    pub n_positions: usize,
    pub layer_norm_epsilon: f64,
}

impl Gpt2Config {
    /// GPT-2 medium (Chatterbox-Turbo): 24 layers of width 1024, 16 heads.
    pub fn medium() -> Self {
        Self { n_embd: 1024, n_head: 16, n_layer: 24, n_positions: 8196, layer_norm_epsilon: 1e-5 }
    }

    /// GPT-2 small (Chatterbox-Nano): 12 layers of width 768, 12 heads.
    pub fn small() -> Self {
        Self { n_embd: 768, n_head: 12, n_layer: 12, n_positions: 8196, layer_norm_epsilon: 1e-5 }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// GPT-2's `Conv1D`: a linear layer with its weight stored `[in, out]`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(vb: VarBuilder, d_in: usize, d_out: usize) -> Result<Self> {
        Ok(Self { weight: vb.get((d_in, d_out), "weight")?, bias: vb.get(d_out, "bias")? })
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d_in) = x.dims3()?;
        let y = x.reshape((b * t, d_in))?.matmul(&self.weight)?.broadcast_add(&self.bias)?;
        y.reshape((b, t, ()))
    }
}

/// Causal self-attention with a fused query/key/value projection.
struct Attention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &Gpt2Config) -> Result<Self> {
        let d = cfg.n_embd;
        Ok(Self {
            c_attn: Conv1D::load(vb.pp("c_attn"), d, 3 * d)?,
            c_proj: Conv1D::load(vb.pp("c_proj"), d, d)?,
            n_head: cfg.n_head,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x`: `[B, T, D]` after what `caches` hold; `mask`: additive `[T, S]`
    /// (None when `T == 1`). One cache: every row of `x` continues it (the
    /// prompt, one sequence). One cache per row (`T == 1`): a decoding step
    /// of `B` sequences at once; the projections run once over the batch and
    /// each row attends over its own cache.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let qkv = self.c_attn.forward(x)?;
        let y = match caches {
            [cache] => self.attend(&qkv, mask, cache)?,
            caches => {
                let rows = caches
                    .iter_mut()
                    .enumerate()
                    .map(|(i, cache)| self.attend(&qkv.narrow(0, i, 1)?, None, cache))
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&rows, 0)?
            }
        };
        self.c_proj.forward(&y)
    }

    /// Attention of the projected `qkv` `[B, T, 3D]` over `cache` (which the
    /// new keys and values join); the heads merged again, `[B, T, D]`.
    fn attend(&self, qkv: &Tensor, mask: Option<&Tensor>, cache: &mut KvCache) -> Result<Tensor> {
        let (b, t, d3) = qkv.dims3()?;
        let d = d3 / 3;
        let heads = |i: usize| -> Result<Tensor> {
            qkv.narrow(D::Minus1, i * d, d)?
                .reshape((b, t, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
        let (k, v) = cache.append(&k, &v)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut att = (q.matmul(&k.t()?)? * scale)?; // [B, H, T, S]
        if let Some(mask) = mask {
            att = att.broadcast_add(mask)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))
    }
}

struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &Gpt2Config) -> Result<Self> {
        let d = cfg.n_embd;
        Ok(Self { c_fc: Conv1D::load(vb.pp("c_fc"), d, 4 * d)?, c_proj: Conv1D::load(vb.pp("c_proj"), 4 * d, d)? })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // `gelu_new`: the tanh approximation, which is candle's `gelu`.
        self.c_proj.forward(&self.c_fc.forward(x)?.gelu()?)
    }
}

struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn load(vb: VarBuilder, cfg: &Gpt2Config) -> Result<Self> {
        let eps = cfg.layer_norm_epsilon;
        Ok(Self {
            ln_1: candle_nn::layer_norm(cfg.n_embd, eps, vb.pp("ln_1"))?,
            attn: Attention::load(vb.pp("attn"), cfg)?,
            ln_2: candle_nn::layer_norm(cfg.n_embd, eps, vb.pp("ln_2"))?,
            mlp: Mlp::load(vb.pp("mlp"), cfg)?,
        })
    }

    fn forward(&self, x: &Tensor, mask: Option<&Tensor>, caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln_1.forward(x)?, mask, caches)?)?;
        &x + self.mlp.forward(&self.ln_2.forward(&x)?)?
    }
}

/// The key/value cache of one sequence: what the model has seen so far.
pub struct Gpt2State {
    layers: Vec<KvCache>,
}

/// Positions a cache holds before it grows (by as many again): a voice
/// prompt (up to 376 positions) plus text fits in the first block.
const CACHE_BLOCK: usize = 512;

impl Gpt2State {
    /// Positions consumed so far (the next input starts at this position).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::current_seq_len)
    }

    /// Forgets everything; the next forward starts at position 0.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(KvCache::reset);
    }

    /// An independent copy (its own buffers) that continues from the same
    /// positions: a shared prefix computed once, extended per sequence.
    pub fn fork(&self) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|cache| {
                let block = cache.k_cache().max_seq_len();
                let mut copy = KvCache::new(2, block);
                if let (Some(k), Some(v)) = (cache.k()?, cache.v()?) {
                    copy.append(&k.contiguous()?, &v.contiguous()?)?;
                }
                Ok(copy)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }
}

/// GPT-2 without its token table: embeddings in, final hidden states out.
pub struct Gpt2 {
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    config: Gpt2Config,
}

impl Gpt2 {
    /// Loads from a `GPT2Model` state dict (`wpe`, `h.{i}.*`, `ln_f`); `wte` is ignored.
    pub fn load(vb: VarBuilder, config: &Gpt2Config) -> Result<Self> {
        if config.n_head == 0 || !config.n_embd.is_multiple_of(config.n_head) {
            candle_core::bail!("n_embd {} is not a multiple of n_head {}", config.n_embd, config.n_head);
        }
        let wpe = vb.pp("wpe").get((config.n_positions, config.n_embd), "weight")?;
        let blocks = (0..config.n_layer)
            .map(|i| Block::load(vb.pp("h").pp(i.to_string()), config))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = candle_nn::layer_norm(config.n_embd, config.layer_norm_epsilon, vb.pp("ln_f"))?;
        Ok(Self { wpe, blocks, ln_f, config: config.clone() })
    }

    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        self.wpe.device()
    }

    pub fn dtype(&self) -> DType {
        self.wpe.dtype()
    }

    /// A fresh, empty cache for one sequence.
    pub fn new_state(&self) -> Gpt2State {
        self.new_state_with_block(CACHE_BLOCK)
    }

    /// A cache that allocates `block` positions at a time.
    pub fn new_state_with_block(&self, block: usize) -> Gpt2State {
        Gpt2State { layers: (0..self.config.n_layer).map(|_| KvCache::new(2, block.max(1))).collect() }
    }

    /// Runs `embeds` `[B, T, D]` after what `state` holds and returns the final
    /// hidden states `[B, T, D]` (after `ln_f`); `state` grows by `T`.
    pub fn forward(&self, embeds: &Tensor, state: &mut Gpt2State) -> Result<Tensor> {
        self.run(embeds, &mut [state])
    }

    /// One decoding step of several sequences at once: row `b` of `embeds`
    /// `[B, 1, D]` follows what `states[b]` holds, at that sequence's own
    /// position; the final hidden states `[B, 1, D]`, and each state grows by
    /// one. The linear layers run once over the batch, so the weights, which
    /// bound a decoding step, are read once for `B` sequences; attention runs
    /// per sequence over its own cache. Each row is what [`forward`](Self::forward)
    /// gives that sequence alone, up to float rounding (a matrix product of
    /// `B` rows may sum in another order than one of one row).
    pub fn step_many(&self, embeds: &Tensor, states: &mut [&mut Gpt2State]) -> Result<Tensor> {
        let (b, t, _) = embeds.dims3()?;
        if t != 1 || b != states.len() || b == 0 {
            candle_core::bail!("a batched step takes one position per sequence: input [{b}, {t}] for {} sequences", states.len());
        }
        self.run(embeds, states)
    }

    /// `embeds` after `states`: one state for all rows, or one per row.
    fn run(&self, embeds: &Tensor, states: &mut [&mut Gpt2State]) -> Result<Tensor> {
        let (_, t, d) = embeds.dims3()?;
        if d != self.config.n_embd {
            candle_core::bail!("GPT-2 input width {d}, the model has {}", self.config.n_embd);
        }
        // Checked for every sequence before any cache grows.
        for state in states.iter() {
            let past = state.seq_len();
            if past + t > self.config.n_positions {
                candle_core::bail!(
                    "sequence of {} positions exceeds the model's {} (wpe rows)",
                    past + t,
                    self.config.n_positions
                );
            }
        }
        let (pos, mask) = match &*states {
            [state] => {
                let past = state.seq_len();
                let mask = if t > 1 { Some(causal_mask(t, past, embeds.dtype(), embeds.device())?) } else { None };
                (self.wpe.narrow(0, past, t)?, mask)
            }
            states => {
                let at: Vec<u32> = states.iter().map(|s| s.seq_len() as u32).collect();
                (self.wpe.index_select(&Tensor::new(at.as_slice(), self.wpe.device())?, 0)?.unsqueeze(1)?, None)
            }
        };
        let mut x = embeds.broadcast_add(&pos)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let mut caches: Vec<&mut KvCache> = states.iter_mut().map(|s| &mut s.layers[layer]).collect();
            x = block.forward(&x, mask.as_ref(), &mut caches)?;
        }
        self.ln_f.forward(&x)
    }
}

/// Additive mask `[T, past + T]`: query `i` (at position `past + i`) sees keys `0..=past + i`.
fn causal_mask(t: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let s = past + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, s), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny() -> (Gpt2, Gpt2Config) {
        let cfg = Gpt2Config { n_embd: 16, n_head: 2, n_layer: 2, n_positions: 32, layer_norm_epsilon: 1e-5 };
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let model = Gpt2::load(vb, &cfg).unwrap();
        // The VarMap created every tensor as zeros: give them random values.
        for var in map.all_vars() {
            let r = Tensor::randn(0f32, 0.3, var.shape(), &Device::Cpu).unwrap();
            var.set(&r).unwrap();
        }
        (model, cfg)
    }

    #[test]
    fn cached_decoding_matches_one_full_pass() {
        let (model, cfg) = tiny();
        let x = Tensor::randn(0f32, 1.0, (1, 7, cfg.n_embd), &Device::Cpu).unwrap();
        let mut full_state = model.new_state();
        let full = model.forward(&x, &mut full_state).unwrap();

        // Blocks of 3 positions: the cache grows twice on the way.
        let mut state = model.new_state_with_block(3);
        let head = model.forward(&x.narrow(1, 0, 4).unwrap(), &mut state).unwrap();
        let mut parts = vec![head];
        for i in 4..7 {
            parts.push(model.forward(&x.narrow(1, i, 1).unwrap(), &mut state).unwrap());
        }
        assert_eq!(state.seq_len(), 7);
        let stepped = Tensor::cat(&parts, 1).unwrap();
        let diff = (full - stepped).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "max diff {diff}");
    }

    #[test]
    fn forked_prefix_continues_like_one_pass_and_leaves_the_prefix_intact() {
        let (model, cfg) = tiny();
        let x = Tensor::randn(0f32, 1.0, (1, 6, cfg.n_embd), &Device::Cpu).unwrap();
        let full = model.forward(&x, &mut model.new_state()).unwrap().narrow(1, 3, 3).unwrap();
        let mut prefix = model.new_state_with_block(4);
        model.forward(&x.narrow(1, 0, 3).unwrap(), &mut prefix).unwrap();
        for _ in 0..2 {
            let mut state = prefix.fork().unwrap();
            let rest = model.forward(&x.narrow(1, 3, 3).unwrap(), &mut state).unwrap();
            let diff = (&full - rest).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "max diff {diff}");
        }
        assert_eq!(prefix.seq_len(), 3);
    }

    #[test]
    fn a_batched_step_gives_each_sequence_what_it_gets_alone() {
        let (model, cfg) = tiny();
        // Three sequences at different positions (prompts of 5, 2 and 7).
        let mut alone = Vec::new();
        let mut batched = Vec::new();
        for len in [5, 2, 7] {
            let mut state = model.new_state_with_block(4);
            let prompt = Tensor::randn(0f32, 1.0, (1, len, cfg.n_embd), &Device::Cpu).unwrap();
            model.forward(&prompt, &mut state).unwrap();
            batched.push(state.fork().unwrap());
            alone.push(state);
        }
        // Four steps: the caches grow past their first block on the way.
        for _ in 0..4 {
            let x = Tensor::randn(0f32, 1.0, (3, 1, cfg.n_embd), &Device::Cpu).unwrap();
            let mut states: Vec<&mut Gpt2State> = batched.iter_mut().collect();
            let together = model.step_many(&x, &mut states).unwrap();
            for (i, state) in alone.iter_mut().enumerate() {
                let one = model.forward(&x.narrow(0, i, 1).unwrap(), state).unwrap();
                let diff = (one - together.narrow(0, i, 1).unwrap()).unwrap().abs().unwrap().max_all().unwrap();
                let diff = diff.to_scalar::<f32>().unwrap();
                assert!(diff < 1e-5, "sequence {i}: max diff {diff}");
            }
        }
        let lens: Vec<usize> = batched.iter().map(Gpt2State::seq_len).collect();
        assert_eq!(lens, [9, 6, 11]);
    }

    #[test]
    fn a_batched_step_checks_every_sequence_before_touching_any() {
        let (model, cfg) = tiny();
        let mut short = model.new_state();
        let mut full = model.new_state();
        let prompt = Tensor::zeros((1, cfg.n_positions, cfg.n_embd), DType::F32, &Device::Cpu).unwrap();
        model.forward(&prompt, &mut full).unwrap();
        let x = Tensor::zeros((2, 1, cfg.n_embd), DType::F32, &Device::Cpu).unwrap();
        assert!(model.step_many(&x, &mut [&mut short, &mut full]).is_err());
        assert_eq!(short.seq_len(), 0, "the sequence with room was not advanced");
        // One position per sequence, one row per sequence.
        let two = Tensor::zeros((1, 2, cfg.n_embd), DType::F32, &Device::Cpu).unwrap();
        assert!(model.step_many(&two, &mut [&mut short]).is_err());
        assert!(model.step_many(&x, &mut [&mut short]).is_err());
    }

    #[test]
    fn refuses_to_run_past_the_position_table() {
        let (model, cfg) = tiny();
        let mut state = model.new_state();
        let x = Tensor::zeros((1, cfg.n_positions, cfg.n_embd), DType::F32, &Device::Cpu).unwrap();
        model.forward(&x, &mut state).unwrap();
        let one = Tensor::zeros((1, 1, cfg.n_embd), DType::F32, &Device::Cpu).unwrap();
        assert!(model.forward(&one, &mut state).is_err());
    }
}
