//! Chatterbox end to end on fixture checkpoints: text -> the tiny T3 (its
//! parity with the reference: chatterbox_parity_t3.rs) -> speech tokens in
//! chunks -> the reduced S3Gen + HiFT (chatterbox_parity_s3gen.rs) through
//! `S3GenRenderer`, the engine's real renderer -> 24 kHz chunks -> the phone
//! path the packetizer takes (8 kHz, mu-law).
//!
//! The reduced S3Gen fixture has a 100-token vocabulary; the engine speaks
//! the full 6561 (its silence token is 4299), so the test widens the fixture's
//! token embedding with seeded random rows and leaves every other weight as
//! the parity test checked it.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use common::fixture;
use rand::{Rng, SeedableRng};
use voxline::audio::{encode_mulaw, StreamResampler};
use voxline::synth::chatterbox::s3gen::conds::BuiltinVoice;
use voxline::synth::chatterbox::s3gen::stream::S3GenStreamConfig;
use voxline::synth::chatterbox::s3gen::{S3Gen, S3GenConfig};
use voxline::synth::chatterbox::{ChatterboxEngine, EngineConfig, GenerateParams, S3GenRenderer, SamplingParams, T3Config};
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest};

const SPEECH_VOCAB: usize = 6561;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxline-chatterbox-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The model directory in the layout of ResembleAI/chatterbox-turbo, with
/// the fixtures' tokenizer, T3 and voice.
fn model_dir() -> PathBuf {
    let dir = scratch();
    for f in ["vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("chatterbox/tokenizer").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(fixture("chatterbox/t3/weights.safetensors"), dir.join("t3_turbo_v1.safetensors")).unwrap();
    std::fs::copy(fixture("chatterbox/t3/conds.pt"), dir.join("conds.pt")).unwrap();
    dir
}

/// The reduced S3Gen with its token embedding widened to the full vocabulary.
fn s3gen(dir: &std::path::Path) -> S3Gen {
    let mut cfg: S3GenConfig = serde_json::from_str(&std::fs::read_to_string(fixture("chatterbox/s3gen/config.json")).unwrap()).unwrap();
    let mut weights: HashMap<String, Tensor> = candle_core::safetensors::load(fixture("chatterbox/s3gen/model.safetensors"), &Device::Cpu).unwrap();
    let name = "flow.input_embedding.weight";
    let old = weights[name].clone();
    let (rows, width) = old.dims2().unwrap();
    assert_eq!(rows, cfg.vocab_size);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let extra: Vec<f32> = (0..(SPEECH_VOCAB - rows) * width).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let extra = Tensor::from_vec(extra, (SPEECH_VOCAB - rows, width), &Device::Cpu).unwrap().to_dtype(old.dtype()).unwrap();
    weights.insert(name.into(), Tensor::cat(&[&old, &extra], 0).unwrap());
    cfg.vocab_size = SPEECH_VOCAB;
    let path = dir.join("s3gen_meanflow.safetensors");
    candle_core::safetensors::save(&weights, &path).unwrap();
    S3Gen::from_safetensors(&cfg, &path, &Device::Cpu).expect("load the widened S3Gen")
}

#[test]
fn text_becomes_streamed_24k_audio_through_t3_s3gen_and_hift_and_then_phone_audio() {
    let dir = model_dir();
    let s3gen = s3gen(&dir);
    let voice = BuiltinVoice::load(fixture("chatterbox/s3gen/conds.pt"), &Device::Cpu).expect("the S3Gen voice").gen;
    let stream = S3GenStreamConfig { first_chunk_tokens: 4, chunk_tokens: 6, ..Default::default() };
    let renderer = S3GenRenderer::from_parts(s3gen, voice, stream);
    let t3: T3Config = serde_json::from_str(&std::fs::read_to_string(fixture("chatterbox/t3/config.json")).unwrap()).unwrap();
    let sampling = SamplingParams { top_k: 1, ..SamplingParams::default() };
    let config = EngineConfig { generate: GenerateParams { sampling, max_gen_len: 24, seed: 0 }, chunk_tokens: 4, ..Default::default() };
    let engine = ChatterboxEngine::load_with(&dir, "chatterbox-test", "t3_turbo_v1.safetensors", &t3, Arc::new(renderer), &Device::Cpu, config)
        .expect("load the engine");
    assert_eq!(engine.info().sample_rate, 24_000);

    let run = |seed: u64| {
        let request = SynthRequest { text: "Your order has shipped.".into(), options: SynthOptions { seed: Some(seed), ..Default::default() } };
        let mut stream = engine.start(request, CancelToken::new()).expect("start");
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next_chunk().expect("a chunk") {
            chunks.push(chunk);
        }
        chunks
    };
    let chunks = run(1);
    let audio: Vec<f32> = chunks.iter().flat_map(|c| c.samples.iter().copied()).collect();
    assert!(chunks.iter().filter(|c| !c.samples.is_empty()).count() >= 2, "streamed in several chunks: {}", chunks.len());
    assert!(chunks.last().is_some_and(|c| c.last), "the last chunk says so");
    // Offsets tile the utterance.
    let mut at = 0u64;
    for c in &chunks {
        assert_eq!(c.start_sample, at);
        at += c.samples.len() as u64;
    }
    // 24 tokens at most plus the 3 silence tokens, 960 samples each (25 Hz at 24 kHz).
    assert!(audio.len() >= 960 && audio.len() <= 27 * 960 + 960, "{} samples", audio.len());
    assert!(audio.iter().all(|s| s.is_finite()), "finite samples");
    let rms = (audio.iter().map(|s| s * s).sum::<f32>() / audio.len() as f32).sqrt();
    assert!(rms > 1e-4, "not silence (rms {rms})");
    // The same seed gives the same audio; the engine is deterministic per request.
    let again: Vec<f32> = run(1).iter().flat_map(|c| c.samples.iter().copied()).collect();
    assert_eq!(audio, again);

    // The packetizer's input: 8 kHz mu-law, a third of the samples.
    let mut resampler = StreamResampler::new(24_000, 8_000).unwrap();
    let mut phone = Vec::new();
    for c in &chunks {
        resampler.process(&c.samples, &mut phone);
    }
    resampler.flush(&mut phone);
    let pcmu = encode_mulaw(&phone);
    assert!((pcmu.len() as i64 - (audio.len() / 3) as i64).abs() <= 160, "{} mu-law bytes for {} samples", pcmu.len(), audio.len());
    std::fs::remove_dir_all(&dir).ok();
}
