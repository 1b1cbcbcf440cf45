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
