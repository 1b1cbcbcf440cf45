//! Chatterbox end to end on fixture checkpoints: text -> the tiny T3 (its
//! parity with the reference: chatterbox_parity_t3.rs) -> speech tokens in
//! chunks -> the reduced S3Gen + HiFT (chatterbox_parity_s3gen.rs) through
//! `S3GenRenderer`, the engine's real renderer -> 24 kHz chunks -> the phone
//! path the packetizer takes (8 kHz, mu-law).
//!
//! The model directory is `common::chatterbox::tiny_model` (the fixtures in
//! the layout of ResembleAI/chatterbox-nano, with the shapes file), loaded the
//! way `voxline --engine chatterbox-nano --model-dir DIR` loads it.

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device};
use voxline::audio::{encode_mulaw, StreamResampler};
use voxline::synth::chatterbox::model;
use voxline::synth::chatterbox::s3gen::stream::S3GenStreamConfig;
use voxline::synth::chatterbox::{EngineConfig, GenerateParams, SamplingParams, Variant};
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest};

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("voxline-chatterbox-pipeline-{}", std::process::id()))
}

#[test]
fn text_becomes_streamed_24k_audio_through_t3_s3gen_and_hift_and_then_phone_audio() {
    let dir = common::chatterbox::tiny_model(&scratch().join("stream"));
    let stream = S3GenStreamConfig { first_chunk_tokens: 4, chunk_tokens: 6, ..Default::default() };
    let sampling = SamplingParams { top_k: 1, ..SamplingParams::default() };
    let config = EngineConfig { generate: GenerateParams { sampling, max_gen_len: 24, seed: 0 }, chunk_tokens: 4, ..Default::default() };
    let engine = model::load_dir(&dir, Variant::Nano, &Device::Cpu, config, stream).expect("load the engine");
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

/// T3 in bf16 or f16 (`--dtype`): on the tiny model the greedy draw picks the
/// same speech tokens as in f32, so the audio (S3Gen stays f32) is the same.
#[test]
fn half_precision_t3_draws_the_same_greedy_tokens_as_f32() {
    let dir = common::chatterbox::tiny_model(&scratch().join("half"));
    let audio = |dtype: DType| {
        let sampling = SamplingParams { top_k: 1, ..SamplingParams::default() };
        let config = EngineConfig { generate: GenerateParams { sampling, max_gen_len: 24, seed: 0 }, chunk_tokens: 4, dtype };
        let engine = model::load_dir(&dir, Variant::Nano, &Device::Cpu, config, S3GenStreamConfig::default()).expect("load");
        let request = SynthRequest { text: "Your order has shipped.".into(), options: SynthOptions { seed: Some(4), ..Default::default() } };
        let mut stream = engine.start(request, CancelToken::new()).expect("start");
        let mut out = Vec::new();
        while let Some(chunk) = stream.next_chunk().expect("a chunk") {
            out.extend(chunk.samples);
        }
        out
    };
    let full = audio(DType::F32);
    assert!(full.len() >= 960);
    for dtype in [DType::BF16, DType::F16] {
        assert_eq!(audio(dtype), full, "{dtype:?}");
    }
    std::fs::remove_dir_all(scratch().join("half")).ok();
}
