//! The candle S3Gen (meanflow) and HiFT match the reference PyTorch modules of
//! `chatterbox-tts` 0.1.7 on reduced, seeded random weights, module by module
//! and end to end. Fixtures: tests/fixtures/chatterbox/s3gen/, written by
//! tests/reference/chatterbox_s3gen_reference.py (its docstring lists them).
//!
//! Tolerances are absolute, on float32: the weights are exact (stored as f16,
//! rounded before the reference ran); what remains is summation order (matmul,
//! FFT versus DFT) and libm differences, amplified by depth.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use voxline::synth::chatterbox::hift::source::{Noise, SineState};
use voxline::synth::chatterbox::hift::{Hift, HiftConfig};
use voxline::synth::chatterbox::s3gen::conds::BuiltinVoice;
use voxline::synth::chatterbox::s3gen::flow::S3Flow;
use voxline::synth::chatterbox::s3gen::{S3Gen, S3GenConfig};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chatterbox/s3gen")
}

fn io() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("io.safetensors"), &Device::Cpu).expect("io.safetensors")
}

fn weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("model.safetensors"), &Device::Cpu).expect("model.safetensors")
}

fn vb(w: HashMap<String, Tensor>) -> VarBuilder<'static> {
    VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)
}

fn fixture_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap()
}

fn hift_config() -> HiftConfig {
    let c = &fixture_config()["hift"];
    let n = |k: &str| c[k].as_u64().unwrap() as usize;
    HiftConfig {
        in_channels: n("in_channels"),
        base_channels: n("base_channels"),
        f0_channels: n("f0_channels"),
        ..HiftConfig::chatterbox()
    }
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn check(name: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let (a, b) = (flat(ours), flat(reference));
    let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let peak = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    eprintln!("{name}: max |diff| = {d:.2e} (reference peak {peak:.2e})");
    assert!(d <= tol, "{name}: max |diff| {d} > {tol}");
}

#[test]
fn hift_matches_reference() {
    let io = io();
    let hift = Hift::load(&hift_config(), vb(weights()).pp("mel2wav")).unwrap();
    let mel = &io["hift.mel"];

    let f0 = hift.f0(mel).unwrap();
    check("hift f0 (Hz)", &f0, &io["hift.f0"], 2e-3);

    // The excitation from the reference's F0, initial phases and noise.
    let mut state = SineState::with_phases(&flat(&io["hift.phase"]), 0);
    let noise = flat(&io["hift.sine_noise"]);
    let source = hift.source(&io["hift.f0"], &mut state, Noise::Given(&noise)).unwrap();
    check("hift source", &source, &io["hift.source"], 2e-5);

    // The filter on the reference's source.
    let audio = hift.decode(mel, &io["hift.source"]).unwrap();
    check("hift audio (reference source)", &audio, &io["hift.audio"], 2e-5);

    // Everything from the mel. The F0 differs from the reference by ~1e-4 Hz
    // (f32 summation order); integrated into nine harmonic phases over the
    // utterance that shows up as ~1e-4 in the audio.
    let mut state = SineState::with_phases(&flat(&io["hift.phase"]), 0);
    let out = hift.forward(mel, &mut state, Noise::Given(&noise)).unwrap();
    check("hift audio", &out.audio, &io["hift.audio"], 5e-4);
}

/// Checkpoints saved before torch 2.1 name weight norm `weight_g`/`weight_v`.
#[test]
fn hift_reads_old_weight_norm_names() {
    let io = io();
    let cfg = hift_config();
    let renamed: HashMap<String, Tensor> = weights()
        .into_iter()
        .map(|(k, v)| {
            let k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v");
            (k, v)
        })
        .collect();
    assert!(renamed.keys().any(|k| k.ends_with("conv_pre.weight_g")));
    let new = Hift::load(&cfg, vb(weights()).pp("mel2wav")).unwrap();
    let old = Hift::load(&cfg, vb(renamed).pp("mel2wav")).unwrap();
    let mel = &io["hift.mel"];
    let a = new.decode(mel, &io["hift.source"]).unwrap();
    let b = old.decode(mel, &io["hift.source"]).unwrap();
    assert_eq!(flat(&a), flat(&b));
}

fn s3gen_config() -> S3GenConfig {
    serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).expect("config.json as S3GenConfig")
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect()
}

#[test]
fn fixture_config_reads_as_s3gen_config() {
    let cfg = s3gen_config();
    assert_eq!(cfg.hift, hift_config());
    assert_eq!(cfg.encoder.output_size, 32);
    assert_eq!(cfg.decoder.num_mid_blocks, 2);
    assert_eq!(cfg.n_timesteps, 2, "unset fields keep Turbo's values");
}

#[test]
fn conformer_encoder_matches_reference() {
    let io = io();
    let flow = S3Flow::load(&s3gen_config(), vb(weights()).pp("flow")).unwrap();
    let h = flow.encode(&ids(&io["enc.tokens"])).unwrap();
    check("encoder h", &h, &io["enc.h"], 1e-5);
    let mu = flow.project(&h).unwrap();
    check("encoder mu", &mu, &io["enc.mu"], 1e-5);
}

#[test]
fn meanflow_decoder_step_matches_reference() {
    let io = io();
    let flow = S3Flow::load(&s3gen_config(), vb(weights()).pp("flow")).unwrap();
    let scalar = |k: &str| flat(&io[k])[0];
    let out = flow
        .estimator
        .forward(&io["step.x"], &io["step.mu"], scalar("step.t"), scalar("step.r"), &io["step.spks"], &io["step.cond"])
        .unwrap();
    check("estimator output", &out, &io["step.out"], 2e-5);
}

#[test]
fn builtin_voice_reads_from_conds_pt() {
    let voice = BuiltinVoice::load(dir().join("conds.pt"), &Device::Cpu).unwrap();
    let io = io();
    let tokens = ids(&io["enc.tokens"]);
    // The encoder fixture's tokens are the voice's prompt followed by the new tokens.
    assert_eq!(voice.gen.prompt_tokens, tokens[..voice.gen.prompt_tokens.len()]);
    assert_eq!(voice.gen.prompt_feat.dims(), &[1, 2 * voice.gen.prompt_tokens.len(), 80]);
    assert_eq!(voice.gen.embedding.dims(), &[1, 192]);
    // The prompt mel is the estimator's condition in the step fixture.
    let cond = io["step.cond"].narrow(2, 0, voice.gen.prompt_feat.dim(1).unwrap()).unwrap();
    check("conds prompt_feat", &voice.gen.prompt_feat.transpose(1, 2).unwrap(), &cond, 0.0);
    assert_eq!(voice.t3.speaker_emb.dims(), &[1, 256]);
    assert_eq!(voice.t3.cond_prompt_speech_tokens.as_ref().map(Vec::len), Some(10));
    assert!(voice.t3.emotion_adv.is_none(), "a plain float is not a tensor");
}

#[test]
fn tokens_to_audio_matches_reference() {
    let io = io();
    let cfg = s3gen_config();
    let s3gen = S3Gen::load(&cfg, vb(weights())).unwrap();
    let voice = BuiltinVoice::load(dir().join("conds.pt"), &Device::Cpu).unwrap().gen;
    let tokens = ids(&io["e2e.tokens"]);
    // The CFM's start: its randn_like(mu) over the prompt, the caller's noise after.
    let p = voice.prompt_feat.dim(1).unwrap();
    let x0 = Tensor::cat(&[io["e2e.z"].narrow(2, 0, p).unwrap(), io["e2e.noised_mels"].clone()], 2).unwrap();
    assert_eq!(x0.dim(2).unwrap(), s3gen.flow.total_frames(&voice, tokens.len(), true));

    let mel = s3gen.flow.mel(&voice, &tokens, &x0, cfg.n_timesteps, true).unwrap();
    check("e2e mel (2 meanflow steps)", &mel, &io["e2e.mel"], 2e-5);

    let noise = flat(&io["e2e.sine_noise"]);
    let mut sine = SineState::with_phases(&flat(&io["e2e.phase"]), 0);
    let audio = s3gen.synthesize(&voice, &tokens, &x0, &mut sine, Noise::Given(&noise)).unwrap();
    check("e2e audio", &audio, &io["e2e.audio"], 5e-4);
    // The trim fade silences the first 20 ms.
    assert!(flat(&audio)[..480].iter().all(|&s| s == 0.0));
}
