//! S3Gen + HiFT rendering several streams as one batch (`S3GenRenderer::push_many`,
//! the seam the Chatterbox engine drives) gives every stream the audio it gets
//! alone. Model: the reduced S3Gen + HiFT parity fixture
//! (tests/fixtures/chatterbox/s3gen/, checked by chatterbox_parity_s3gen.rs)
//! and its built-in voice.
//!
//! Tolerance: batched rows go through the same kernels as single ones except
//! that the linear layers' gemm sees `B·T` rows instead of `T`, which could
//! regroup the sums on another CPU; measured (and printed) max |diff| is 0 on
//! the development machine (bit for bit), the bound is 1e-4 (samples within ±0.99).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use voxline::synth::chatterbox::engine::{RenderStream, SpeechRenderer};
use voxline::synth::chatterbox::model;
use voxline::synth::chatterbox::hift::stream::HiftStreamConfig;
use voxline::synth::chatterbox::render::S3GenRenderer;
use voxline::synth::chatterbox::s3gen::conds::BuiltinVoice;
use voxline::synth::chatterbox::s3gen::flow::VoiceConds;
use voxline::synth::chatterbox::s3gen::stream::{NoiseTape, S3GenStreamConfig};
use voxline::synth::chatterbox::s3gen::{S3Gen, S3GenConfig};
use voxline::synth::chatterbox::{EngineConfig, GenerateParams, SamplingParams, Variant};
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest, SynthStream};

const TOLERANCE: f32 = 1e-4;
/// The fixture's speech vocabulary.
const VOCAB: u32 = 100;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chatterbox/s3gen")
}

fn model() -> (S3Gen, VoiceConds) {
    let cfg: S3GenConfig = serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap();
    let w: HashMap<String, Tensor> = candle_core::safetensors::load(dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let s3gen = S3Gen::load(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).unwrap();
    let voice = BuiltinVoice::load(dir().join("conds.pt"), &Device::Cpu).unwrap().gen;
    (s3gen, voice)
}

/// Small chunks and a short left context, so windows stop growing and
/// streams in step have equal shapes; HiFT with its default lookahead and crossfade.
fn stream_config() -> S3GenStreamConfig {
    S3GenStreamConfig { first_chunk_tokens: 4, chunk_tokens: 6, context_tokens: 8, hift: HiftStreamConfig::default(), seed: 0 }
}

fn renderer() -> S3GenRenderer {
    let (s3gen, voice) = model();
    S3GenRenderer::from_parts(s3gen, voice, stream_config())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn random_tokens(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..VOCAB)).collect()
}

/// The pieces at B = 3: the flow's mel and HiFT's decode of stacked rows equal each row alone.
#[test]
fn batched_flow_and_decode_rows_equal_single_rows() {
    let (s3gen, voice) = model();
    let windows: Vec<Vec<u32>> = (0..3).map(|s| random_tokens(30, 100 + s)).collect();
    let p = voice.prompt_feat.dim(1).unwrap();
    let total = s3gen.flow.total_frames(&voice, 30, false);
    let x0: Vec<Tensor> =
        (0..3).map(|s| NoiseTape::new(80, p, s).x0(0, total - p, &Device::Cpu).unwrap()).collect();
    let refs: Vec<&[u32]> = windows.iter().map(Vec::as_slice).collect();
    let steps = s3gen.config().n_timesteps;
    let batched = s3gen.flow.mel_batch(&voice, &refs, &Tensor::cat(&x0, 0).unwrap(), steps, false).unwrap();
    assert_eq!(batched.dims(), &[3, 80, total - p]);
    let mut worst = 0f32;
    for (r, (w, x)) in windows.iter().zip(&x0).enumerate() {
        let alone = s3gen.flow.mel(&voice, w, x, steps, false).unwrap();
        let row = batched.narrow(0, r, 1).unwrap();
        worst = worst.max(max_diff(&flat(&row), &flat(&alone)));
    }
    eprintln!("flow mel, B=3 vs alone: max |diff| = {worst:.2e}");
    assert!(worst <= TOLERANCE, "flow mel: max |diff| {worst}");

    // HiFT: three mels and excitations of 30 frames.
    let mels: Vec<Tensor> = (0..3).map(|r| batched.narrow(0, r, 1).unwrap().narrow(2, 0, 30).unwrap()).collect();
    let sources: Vec<Tensor> = (0..3)
        .map(|s| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(200 + s);
            let v: Vec<f32> = (0..30 * 480).map(|_| rng.gen_range(-0.1..0.1)).collect();
            Tensor::from_vec(v, (1, 1, 30 * 480), &Device::Cpu).unwrap()
        })
        .collect();
    let batched = s3gen.hift.decode(&Tensor::cat(&mels, 0).unwrap(), &Tensor::cat(&sources, 0).unwrap()).unwrap();
    assert_eq!(batched.dims(), &[3, 30 * 480]);
    let mut worst = 0f32;
    for r in 0..3 {
        let alone = s3gen.hift.decode(&mels[r], &sources[r]).unwrap();
        worst = worst.max(max_diff(&flat(&batched.narrow(0, r, 1).unwrap()), &flat(&alone)));
    }
    eprintln!("HiFT decode, B=3 vs alone: max |diff| = {worst:.2e}");
    assert!(worst <= TOLERANCE, "HiFT decode: max |diff| {worst}");
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// One stream's tokens, pushed `per_call` at a time from call `joins` on.
struct Plan {
    seed: u64,
    tokens: Vec<u32>,
    joins: usize,
    per_call: usize,
}

impl Plan {
    fn part(&self, call: usize) -> Option<&[u32]> {
        let k = call.checked_sub(self.joins)?;
        let from = (k * self.per_call).min(self.tokens.len());
        let to = ((k + 1) * self.per_call).min(self.tokens.len());
        (from < to).then(|| &self.tokens[from..to])
    }
}

/// Each stream alone: pushed as in the plan, then finished.
fn alone(r: &S3GenRenderer, plan: &Plan, calls: usize) -> Vec<f32> {
    let mut s = r.start(plan.seed).unwrap();
    let mut out = Vec::new();
    for call in 0..calls {
        if let Some(part) = plan.part(call) {
            out.extend(s.push(part).unwrap());
        }
    }
    out.extend(s.finish().unwrap());
    out
}

/// Streams with different seeds and lengths, two joining later (so their
/// windows differ in length from the others' for a while): every stream's
/// audio through `push_many` equals its audio pushed alone; calls where
/// streams step together with equal windows happen (so rows were batched).
#[test]
fn push_many_gives_each_stream_its_own_audio() {
    let r = renderer();
    let plans = [
        Plan { seed: 1, tokens: random_tokens(40, 1), joins: 0, per_call: 2 },
        Plan { seed: 2, tokens: random_tokens(40, 2), joins: 0, per_call: 2 },
        Plan { seed: 3, tokens: random_tokens(34, 3), joins: 3, per_call: 2 },
        Plan { seed: 4, tokens: random_tokens(30, 4), joins: 5, per_call: 3 },
        Plan { seed: 5, tokens: random_tokens(40, 5), joins: 0, per_call: 2 },
    ];
    let calls = plans.iter().map(|p| p.joins + p.tokens.len().div_ceil(p.per_call)).max().unwrap();
    let mut streams: Vec<Box<dyn RenderStream>> = plans.iter().map(|p| r.start(p.seed).unwrap()).collect();
    let mut outs: Vec<Vec<f32>> = vec![Vec::new(); plans.len()];
    let mut together = 0;
    for call in 0..calls {
        let mut at = Vec::new();
        let mut parts = Vec::new();
        for (i, p) in plans.iter().enumerate() {
            if let Some(part) = p.part(call) {
                at.push(i);
                parts.push(part);
            }
        }
        let mut batch: Vec<&mut dyn RenderStream> = Vec::new();
        for (i, s) in streams.iter_mut().enumerate() {
            if at.contains(&i) {
                batch.push(s.as_mut());
            }
        }
        let answers = r.push_many(&mut batch, &parts);
        assert_eq!(answers.len(), at.len());
        let stepped = answers.iter().filter(|a| a.as_ref().is_ok_and(|v| !v.is_empty())).count();
        if stepped >= 2 {
            together += 1;
        }
        for (&i, a) in at.iter().zip(answers) {
            outs[i].extend(a.unwrap());
        }
    }
    for (s, out) in streams.iter_mut().zip(&mut outs) {
        out.extend(s.finish().unwrap());
    }
    assert!(together >= 3, "streams stepped together in {together} calls");
    let mut worst = 0f32;
    for (p, out) in plans.iter().zip(&outs) {
        let solo = alone(&r, p, calls);
        assert!(!solo.is_empty());
        worst = worst.max(max_diff(out, &solo));
    }
    eprintln!("push_many vs alone, 5 streams: max |diff| = {worst:.2e} over {} samples", outs.iter().map(Vec::len).sum::<usize>());
    assert!(worst <= TOLERANCE, "max |diff| {worst}");
}

/// A stream given a token outside the vocabulary answers an error in its
/// own slot; the streams batched with it get their usual audio.
#[test]
fn a_failing_stream_does_not_touch_the_others() {
    let r = renderer();
    let plans: Vec<Plan> =
        (0..3).map(|s| Plan { seed: 10 + s, tokens: random_tokens(20, 10 + s), joins: 0, per_call: 4 }).collect();
    let mut streams: Vec<Box<dyn RenderStream>> = plans.iter().map(|p| r.start(p.seed).unwrap()).collect();
    let mut outs: Vec<Vec<f32>> = vec![Vec::new(); 3];
    let mut failed = false;
    for call in 0..5 {
        let mut parts: Vec<Vec<u32>> = plans.iter().map(|p| p.part(call).unwrap().to_vec()).collect();
        if call == 2 {
            parts[1][0] = 5000; // beyond the fixture's 100 tokens
        }
        let refs: Vec<&[u32]> = parts.iter().map(Vec::as_slice).collect();
        let mut batch: Vec<&mut dyn RenderStream> = Vec::new();
        for s in streams.iter_mut() {
            batch.push(s.as_mut());
        }
        let answers = r.push_many(&mut batch, &refs);
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(v) => outs[i].extend(v),
                Err(e) => {
                    assert_eq!(i, 1, "only the stream with the bad token fails: {e}");
                    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
                    failed = true;
                }
            }
        }
    }
    assert!(failed, "the bad token was reported");
    for i in [0, 2] {
        outs[i].extend(streams[i].finish().unwrap());
        let d = max_diff(&outs[i], &alone(&r, &plans[i], 5));
        assert!(d <= TOLERANCE, "stream {i}: max |diff| {d}");
    }
}

/// The whole engine on the fixture model directory: requests of different
/// lengths advanced together (`next_chunks`: T3 batched, then the renders
/// through `push_many`) speak as each does alone (greedy T3, so the same tokens).
#[test]
fn engine_streams_advanced_together_sound_as_alone() {
    let dir = common::chatterbox::tiny_model(&std::env::temp_dir().join(format!("voxline-render-batch-{}", std::process::id())));
    let sampling = SamplingParams { top_k: 1, ..SamplingParams::default() };
    let config = EngineConfig { generate: GenerateParams { sampling, max_gen_len: 30, seed: 0 }, chunk_tokens: 6, ..Default::default() };
    let stream = S3GenStreamConfig { first_chunk_tokens: 6, chunk_tokens: 6, context_tokens: 6, ..Default::default() };
    let engine = model::load_dir(&dir, Variant::Nano, &Device::Cpu, config, stream).expect("load the engine");
    let texts = ["Your order has shipped.", "Hello there.", "Your order has shipped.", "Please hold the line for a moment."];
    let start = |i: usize| {
        let options = SynthOptions { seed: Some(i as u64 + 1), ..Default::default() };
        engine.start(SynthRequest { text: texts[i].into(), options }, CancelToken::new()).expect("start")
    };

    let mut streams: Vec<Box<dyn SynthStream>> = (0..texts.len()).map(start).collect();
    let mut together: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
    let mut done = vec![false; texts.len()];
    while done.iter().any(|d| !d) {
        let at: Vec<usize> = (0..texts.len()).filter(|&i| !done[i]).collect();
        let mut batch: Vec<&mut dyn SynthStream> = Vec::new();
        for (i, s) in streams.iter_mut().enumerate() {
            if !done[i] {
                batch.push(s.as_mut());
            }
        }
        for (&i, answer) in at.iter().zip(engine.next_chunks(&mut batch)) {
            match answer.expect("a chunk") {
                Some(chunk) => together[i].extend(chunk.samples),
                None => done[i] = true,
            }
        }
    }
    let mut worst = 0f32;
    for (i, audio) in together.iter().enumerate() {
        let mut alone = Vec::new();
        let mut s = start(i);
        while let Some(chunk) = s.next_chunk().expect("a chunk") {
            alone.extend(chunk.samples);
        }
        assert!(!alone.is_empty(), "request {i} speaks");
        worst = worst.max(max_diff(audio, &alone));
    }
    eprintln!("engine, {} streams together vs alone: max |diff| = {worst:.2e}", texts.len());
    assert!(worst <= TOLERANCE, "max |diff| {worst}");
    std::fs::remove_dir_all(&dir).ok();
}
