//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;

pub mod agent;
pub mod asr;
pub mod baresip;
pub mod calls;
pub mod chatterbox;
pub mod dispatcher;
pub mod harness;
pub mod http;
pub mod hub;
pub mod kamailio;
pub mod rtp;
pub mod server;
pub mod sip;
pub mod sip_message;
pub mod sip_socket;
pub mod sipp;
pub mod slots;

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The embedded default voice. The test command fetches it before the tests
/// run (`voxline fetch-voice`); a missing voice fails loudly, never skips.
pub fn default_voice() -> PathBuf {
    let dir = std::env::var_os("VOXLINE_MODELS").map(PathBuf::from).unwrap_or_else(|| root().join("models"));
    let p = dir.join("en_US-joe-medium.onnx");
    assert!(
        p.exists(),
        "the default voice is missing at {}; run `cargo run --release -- fetch-voice` first",
        p.display()
    );
    p
}

/// A Piper engine on the CPU for `onnx`, default streaming windows.
pub fn engine_for(onnx: &std::path::Path) -> voxline::synth::PiperEngine {
    use voxline::synth::{PiperEngine, PiperVoice};
    let voice = PiperVoice::load(onnx, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("load {}: {e}", onnx.display()));
    let phonemizer = std::sync::Arc::new(voxline::text::EspeakPhonemizer::new().expect("espeak-ng initialises"));
    PiperEngine::new(voice, phonemizer, voxline::synth::piper::StreamConfig::default()).expect("engine")
}

/// The default voice's engine, loaded once per test binary.
pub fn joe() -> &'static voxline::synth::PiperEngine {
    static E: std::sync::OnceLock<voxline::synth::PiperEngine> = std::sync::OnceLock::new();
    E.get_or_init(|| engine_for(&default_voice()))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Arrays of a numpy `.npz` fixture by name.
pub fn npz(rel: &str) -> HashMap<String, Tensor> {
    Tensor::read_npz(fixture(rel)).expect("read npz fixture").into_iter().collect()
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest absolute difference; panics on length mismatch.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Signal-to-noise ratio of `test` against `reference`, in dB.
pub fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let n = reference.len().min(test.len());
    let sig: f64 = reference[..n].iter().map(|&x| (x as f64).powi(2)).sum();
    let err: f64 = reference[..n].iter().zip(&test[..n]).map(|(&a, &b)| ((a - b) as f64).powi(2)).sum();
    10.0 * (sig / err.max(1e-30)).log10()
}
