//! T3's sampler for Turbo and Nano: the reference's logits processors, in its
//! order, then a draw from the softmax with a seedable generator.
//!
//! Reference: `chatterbox/models/t3/t3.py::inference_turbo`, which chains HF
//! `TemperatureLogitsWarper` -> `TopKLogitsWarper` -> `TopPLogitsWarper` ->
//! `RepetitionPenaltyLogitsProcessor` (`transformers/generation/logits_process.py`),
//! each only when it would change something, then `softmax` and
//! `torch.multinomial`. Defaults from `tts_turbo.py::generate`.
//!
//! The processed logits match the reference to float rounding; the draw uses
//! our own generator (`StdRng`), so a seed reproduces our output, not torch's.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Sampling settings. Turbo ignores min-p, CFG and exaggeration (the reference
/// warns and drops them), so they are not here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Divides the logits; `0` or `1` leaves them as they are (as the reference).
    pub temperature: f32,
    /// Keeps the `top_k` largest logits (ties with the k-th kept); `0` = off.
    pub top_k: usize,
    /// Keeps the smallest set of tokens whose probability reaches `top_p`; `1` = off.
    pub top_p: f32,
    /// HF repetition penalty on every token already generated; `1` = off.
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: 1000, top_p: 0.95, repetition_penalty: 1.2 }
    }
}

impl SamplingParams {
    /// Checks the ranges the reference's processors accept.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be >= 0, got {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(format!("repetition_penalty must be > 0, got {}", self.repetition_penalty));
        }
        Ok(())
    }

    /// Applies the reference's processors in place to one row of logits.
    /// `history` is what the reference passes as `input_ids`: the start-of-speech
    /// token before the first draw, then every token generated so far.
    pub fn process(&self, logits: &mut [f32], history: &[u32], scratch: &mut Vec<(f32, u32)>) {
        if self.temperature > 0.0 && self.temperature != 1.0 {
            logits.iter_mut().for_each(|l| *l /= self.temperature);
        }
        if self.top_k > 0 {
            top_k(logits, self.top_k, scratch);
        }
        if self.top_p < 1.0 {
            top_p(logits, self.top_p, scratch);
        }
        if self.repetition_penalty != 1.0 {
            let p = self.repetition_penalty;
            // A token repeated in the history is penalised once, as HF's scatter does.
            let mut seen = history.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &id in &seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l < 0.0 { *l * p } else { *l / p };
                }
            }
        }
    }
}

/// HF `TopKLogitsWarper`: everything below the k-th largest value becomes `-inf`.
fn top_k(logits: &mut [f32], k: usize, scratch: &mut Vec<(f32, u32)>) {
    let k = k.max(1);
    if k >= logits.len() {
        return;
    }
    scratch.clear();
    scratch.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    // Partition so that index k-1 holds the k-th largest.
    scratch.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let threshold = scratch[k - 1].0;
    logits.iter_mut().filter(|l| **l < threshold).for_each(|l| *l = f32::NEG_INFINITY);
}

/// HF `TopPLogitsWarper`: sort ascending, softmax, cumulative sum; drop the
/// tokens whose cumulative probability is `<= 1 - top_p`, always keeping the largest.
fn top_p(logits: &mut [f32], top_p: f32, scratch: &mut Vec<(f32, u32)>) {
    scratch.clear();
    scratch.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
    scratch.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max = scratch.last().map_or(0.0, |s| s.0);
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f32 = scratch.iter().map(|s| (s.0 - max).exp()).sum();
    let cut = (1.0 - f64::from(top_p)) as f32;
    let mut cum = 0f32;
    let last = scratch.len() - 1;
    for (rank, &(l, i)) in scratch.iter().enumerate() {
        cum += (l - max).exp() / sum;
        if cum > cut || rank == last {
            break;
        }
        logits[i as usize] = f32::NEG_INFINITY;
    }
}

/// Draws token ids from processed logits.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    scratch: Vec<(f32, u32)>,
    probs: Vec<f64>,
}

impl Sampler {
    /// A sampler with its own generator; the same seed gives the same draws.
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self { params, rng: StdRng::seed_from_u64(seed), scratch: Vec::new(), probs: Vec::new() }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Processes `logits` in place and draws one id, or `None` when every logit
    /// is `-inf` or NaN (the reference stops generating then).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Option<u32> {
        self.params.process(logits, history, &mut self.scratch);
        let max = logits.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return None;
        }
        self.probs.clear();
        self.probs.extend(logits.iter().map(|&l| if l.is_nan() { 0.0 } else { f64::from(l - max).exp() }));
        let total: f64 = self.probs.iter().sum();
        let mut u = self.rng.gen::<f64>() * total;
        let mut last_nonzero = 0;
        for (i, &p) in self.probs.iter().enumerate() {
            if p > 0.0 {
                if u < p {
                    return Some(i as u32);
                }
                u -= p;
                last_nonzero = i;
            }
        }
        Some(last_nonzero as u32) // rounding left u a hair above the total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processed(params: &SamplingParams, logits: &[f32], history: &[u32]) -> Vec<f32> {
        let mut l = logits.to_vec();
        params.process(&mut l, history, &mut Vec::new());
        l
    }

    #[test]
    fn top_k_keeps_ties_with_the_kth_value() {
        let p = SamplingParams { temperature: 1.0, top_k: 2, top_p: 1.0, repetition_penalty: 1.0 };
        let out = processed(&p, &[1.0, 3.0, 2.0, 2.0, 0.5], &[]);
        assert_eq!(out, vec![f32::NEG_INFINITY, 3.0, 2.0, 2.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        // probabilities 0.6, 0.3, 0.1 (in log space)
        let l = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.85, repetition_penalty: 1.0 };
        let out = processed(&p, &l, &[]);
        assert!(out[0].is_finite() && out[1].is_finite() && out[2] == f32::NEG_INFINITY, "{out:?}");
        // top_p = 0 still keeps the most likely token.
        let p = SamplingParams { top_p: 0.0, ..p };
        let out = processed(&p, &l, &[]);
        assert!(out[0].is_finite() && out[1] == f32::NEG_INFINITY && out[2] == f32::NEG_INFINITY);
    }

    #[test]
    fn repetition_penalty_pushes_seen_tokens_down_once() {
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 2.0 };
        let out = processed(&p, &[4.0, -4.0, 1.0], &[0, 1, 0, 0]);
        assert_eq!(out, vec![2.0, -8.0, 1.0]);
    }

    #[test]
    fn same_seed_same_draws_and_only_kept_tokens_are_drawn() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams { top_k: 5, ..SamplingParams::default() };
        let draw = |seed| {
            let mut s = Sampler::new(params.clone(), seed);
            (0..200).map(|_| s.sample(&mut logits.clone(), &[]).unwrap()).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let mut kept = logits.clone();
        params.process(&mut kept, &[], &mut Vec::new());
        assert!(a.iter().all(|&t| kept[t as usize].is_finite()));
    }

    #[test]
    fn all_masked_logits_stop_the_draw() {
        let mut s = Sampler::new(SamplingParams::default(), 0);
        assert_eq!(s.sample(&mut [f32::NEG_INFINITY; 4], &[]), None);
    }
}
