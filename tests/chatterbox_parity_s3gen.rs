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
use voxline::synth::chatterbox::hift::stream::{HiftStream, HiftStreamConfig};
use voxline::synth::chatterbox::hift::{Hift, HiftConfig};
use voxline::synth::chatterbox::s3gen::conds::BuiltinVoice;
use voxline::synth::chatterbox::s3gen::flow::S3Flow;
use voxline::synth::chatterbox::s3gen::stream::{NoiseTape, S3GenStream, S3GenStreamConfig};
use voxline::synth::chatterbox::s3gen::{prepare_tokens, S3Gen, S3GenConfig, SILENCE_TOKEN};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chatterbox/s3gen")
}

fn io() -> HashMap<String, Tensor> {
    io_in(&dir())
}

fn weights() -> HashMap<String, Tensor> {
    weights_in(&dir())
}

fn io_in(dir: &std::path::Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).expect("io.safetensors")
}

fn weights_in(dir: &std::path::Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).expect("model.safetensors")
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
    s3gen_config_in(&dir())
}

fn s3gen_config_in(dir: &std::path::Path) -> S3GenConfig {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).expect("config.json as S3GenConfig")
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect()
}

#[test]
fn missing_weights_name_the_file() {
    let err = S3Gen::from_safetensors(&S3GenConfig::turbo(), std::path::Path::new("/nonexistent/s3gen.safetensors"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/s3gen.safetensors"), "{err}");
    // A checkpoint at other sizes is refused with the tensor's name.
    let path = dir().join("model.safetensors");
    let err = S3Gen::from_safetensors(&S3GenConfig::turbo(), &path, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("shape mismatch") && err.contains("flow."), "{err}");
}

#[test]
fn t3_tokens_are_prepared_as_turbo_does() {
    assert_eq!(prepare_tokens(&[6561, 5, 6000, 6562]), vec![5, 6000, SILENCE_TOKEN, SILENCE_TOKEN, SILENCE_TOKEN]);
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

/// One meanflow step (the count Turbo's README states; its code runs two).
#[test]
fn one_meanflow_step_matches_reference() {
    let io = io();
    let flow = S3Flow::load(&s3gen_config(), vb(weights()).pp("flow")).unwrap();
    let voice = BuiltinVoice::load(dir().join("conds.pt"), &Device::Cpu).unwrap().gen;
    let p = voice.prompt_feat.dim(1).unwrap();
    let x0 = Tensor::cat(&[io["e2e1.z"].narrow(2, 0, p).unwrap(), io["e2e1.noised_mels"].clone()], 2).unwrap();
    let mel = flow.mel(&voice, &ids(&io["e2e.tokens"]), &x0, 1, true).unwrap();
    check("mel (1 meanflow step)", &mel, &io["e2e1.mel"], 2e-5);
}

// ---- streaming ---------------------------------------------------------------

/// A longer mel than the fixture's (60 frames, 1.2 s), deterministic.
fn long_mel() -> Tensor {
    let v: Vec<f32> = (0..80 * 60)
        .map(|i| {
            let (c, t) = ((i / 60) as f32, (i % 60) as f32);
            -4.0 + 2.5 * ((0.21 * t + 0.13 * c).sin() + 0.5 * (0.05 * t * c).cos()) - 0.03 * c
        })
        .collect();
    Tensor::from_vec(v, (1, 80, 60), &Device::Cpu).unwrap()
}

fn stream_hift(hift: &Hift, mel: &Tensor, chunks: &[usize], cfg: HiftStreamConfig) -> Vec<f32> {
    let mut stream = HiftStream::new(hift, cfg, hift.sine_state(7));
    let (mut out, mut at, mut i) = (Vec::new(), 0, 0);
    let total = mel.dim(2).unwrap();
    while at < total {
        let n = chunks[i % chunks.len()].min(total - at);
        out.extend(stream.push(&mel.narrow(2, at, n).unwrap()).unwrap());
        at += n;
        i += 1;
    }
    out.extend(stream.finish().unwrap());
    out
}

/// With left context and lookahead covering HiFT's receptive field, vocoding
/// chunk by chunk (excitation state carried) is vocoding the whole mel.
#[test]
fn hift_stream_with_full_context_equals_whole() {
    let hift = Hift::load(&hift_config(), vb(weights()).pp("mel2wav")).unwrap();
    let mel = long_mel();
    let mut sine = hift.sine_state(7);
    let whole = flat(&hift.forward(&mel, &mut sine, Noise::Drawn).unwrap().audio);
    for chunks in [&[1usize][..], &[3], &[7, 2, 11], &[60]] {
        let streamed = stream_hift(&hift, &mel, chunks, HiftStreamConfig::exact());
        assert_eq!(streamed.len(), whole.len(), "chunks {chunks:?}: length");
        let d = whole.iter().zip(&streamed).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("hift stream, chunks {chunks:?}: max |diff| vs whole = {d:.2e}");
        assert!(d < 1e-5, "chunks {chunks:?}: max |diff| {d}");
    }
}

/// With a shorter lookahead the last frames of each step lack right context:
/// the stream is an approximation, crossfaded at the seams. The length is exact
/// and the error shrinks as the lookahead grows (these random weights are far
/// more sensitive to context than a trained vocoder; the numbers are reported).
#[test]
fn hift_stream_error_shrinks_with_lookahead() {
    let hift = Hift::load(&hift_config(), vb(weights()).pp("mel2wav")).unwrap();
    let mel = long_mel();
    let mut sine = hift.sine_state(7);
    let whole = flat(&hift.forward(&mel, &mut sine, Noise::Drawn).unwrap().audio);
    let sig: f64 = whole.iter().map(|a| (*a as f64).powi(2)).sum();
    let mut last_snr = f64::NEG_INFINITY;
    for lookahead in [4usize, 8, 14] {
        let cfg = HiftStreamConfig { lookahead, ..HiftStreamConfig::default() };
        let streamed = stream_hift(&hift, &mel, &[10], cfg);
        assert_eq!(streamed.len(), whole.len());
        let err: f64 = whole.iter().zip(&streamed).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let snr = 10.0 * (sig / err.max(1e-30)).log10();
        eprintln!("hift stream, lookahead {lookahead} frames, 10-frame chunks: SNR vs whole {snr:.1} dB");
        assert!(snr > last_snr, "lookahead {lookahead}: SNR {snr} dB not above {last_snr} dB");
        last_snr = snr;
    }
}

/// A stream whose only step is `finish` is the whole-utterance path on the same
/// noise; a chunked stream emits the same number of samples.
#[test]
fn s3gen_stream_matches_whole_utterance() {
    let cfg = s3gen_config();
    let s3gen = S3Gen::load(&cfg, vb(weights())).unwrap();
    let voice = BuiltinVoice::load(dir().join("conds.pt"), &Device::Cpu).unwrap().gen;
    let tokens: Vec<u32> = (0..30).map(|i| (i * 37 % 100) as u32).collect();
    let scfg = S3GenStreamConfig {
        first_chunk_tokens: usize::MAX,
        context_tokens: usize::MAX,
        hift: HiftStreamConfig::exact(),
        seed: 11,
        ..S3GenStreamConfig::default()
    };

    let mut one = S3GenStream::new(&s3gen, voice.clone(), scfg).unwrap();
    let mut a = one.push(&tokens).unwrap();
    assert!(a.is_empty(), "no step before a chunk has gathered");
    a.extend(one.finish().unwrap());

    let p = voice.prompt_feat.dim(1).unwrap();
    let mut tape = NoiseTape::new(80, p, scfg.seed);
    let x0 = tape.x0(0, 2 * tokens.len(), &Device::Cpu).unwrap();
    let mut sine = s3gen.hift.sine_state(scfg.seed + 1);
    let whole = flat(&s3gen.synthesize(&voice, &tokens, &x0, &mut sine, Noise::Drawn).unwrap());
    assert_eq!(s3gen.generate(&voice, &tokens, scfg.seed).unwrap(), whole, "generate draws the stream's noise");
    assert_eq!(a.len(), whole.len());
    let d = whole.iter().zip(&a).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    eprintln!("s3gen stream, one push: max |diff| vs synthesize = {d:.2e}");
    assert!(d < 1e-5, "max |diff| {d}");

    // Eight tokens at a time, a bounded window: every sample arrives, in order.
    let chunked = S3GenStreamConfig { first_chunk_tokens: 8, chunk_tokens: 8, context_tokens: 10, ..S3GenStreamConfig::default() };
    let mut stream = S3GenStream::new(&s3gen, voice, chunked).unwrap();
    let mut b = Vec::new();
    let mut sizes = Vec::new();
    for part in tokens.chunks(8) {
        let got = stream.push(part).unwrap();
        sizes.push(got.len());
        b.extend(got);
    }
    b.extend(stream.finish().unwrap());
    eprintln!("s3gen stream, 8-token pushes: samples per push {sizes:?}, total {}", b.len());
    assert_eq!(b.len(), whole.len());
    // 8 tokens = 16 frames, less 6 held back by the encoder's lookahead, 4 by
    // HiFT's and a 240-sample crossfade: 2640 samples; then 16 frames a step;
    // the last 6 tokens do not make a chunk and wait for `finish`.
    assert_eq!(sizes, vec![2640, 7680, 7680, 0]);
    assert!(b.iter().all(|s| s.is_finite() && s.abs() <= 0.99));
}

// ---- full size (not committed: ~270 MB) ---------------------------------------

/// The reference's own `S3Token2Wav(meanflow=True)` at Turbo/Nano sizes with
/// random weights, written by `chatterbox_s3gen_reference.py OUT_DIR --full`:
/// `CHATTERBOX_S3GEN_FULL_DIR=OUT_DIR cargo test --release --test
/// chatterbox_parity_s3gen -- --ignored`. Also checks that `S3GenConfig::turbo()`
/// is what the reference constructor builds.
#[test]
#[ignore = "needs the full-size fixture (CHATTERBOX_S3GEN_FULL_DIR)"]
fn full_size_turbo_matches_reference() {
    let Some(dir) = std::env::var_os("CHATTERBOX_S3GEN_FULL_DIR").map(PathBuf::from) else {
        panic!("set CHATTERBOX_S3GEN_FULL_DIR to the output of chatterbox_s3gen_reference.py --full");
    };
    let cfg = S3GenConfig::turbo();
    assert_eq!(s3gen_config_in(&dir), cfg, "Turbo preset = the reference constructor's sizes");
    assert_eq!(S3GenConfig::nano(), cfg);
    let io = io_in(&dir);
    let s3gen = S3Gen::from_safetensors(&cfg, &dir.join("model.safetensors"), &Device::Cpu).unwrap();

    let h = s3gen.flow.encode(&ids(&io["enc.tokens"])).unwrap();
    check("full encoder h", &h, &io["enc.h"], 1e-4);
    check("full encoder mu", &s3gen.flow.project(&h).unwrap(), &io["enc.mu"], 1e-4);

    let scalar = |k: &str| flat(&io[k])[0];
    let out = s3gen
        .flow
        .estimator
        .forward(&io["step.x"], &io["step.mu"], scalar("step.t"), scalar("step.r"), &io["step.spks"], &io["step.cond"])
        .unwrap();
    check("full estimator output", &out, &io["step.out"], 1e-4);

    let mel = &io["hift.mel"];
    check("full hift f0 (Hz)", &s3gen.hift.f0(mel).unwrap(), &io["hift.f0"], 2e-3);
    check("full hift audio (reference source)", &s3gen.hift.decode(mel, &io["hift.source"]).unwrap(), &io["hift.audio"], 1e-4);

    let voice = BuiltinVoice::load(dir.join("conds.pt"), &Device::Cpu).unwrap().gen;
    let tokens = ids(&io["e2e.tokens"]);
    let p = voice.prompt_feat.dim(1).unwrap();
    let x0 = Tensor::cat(&[io["e2e.z"].narrow(2, 0, p).unwrap(), io["e2e.noised_mels"].clone()], 2).unwrap();
    check("full e2e mel", &s3gen.flow.mel(&voice, &tokens, &x0, cfg.n_timesteps, true).unwrap(), &io["e2e.mel"], 2e-4);
    let noise = flat(&io["e2e.sine_noise"]);
    let mut sine = SineState::with_phases(&flat(&io["e2e.phase"]), 0);
    let audio = s3gen.synthesize(&voice, &tokens, &x0, &mut sine, Noise::Given(&noise)).unwrap();
    check("full e2e audio", &audio, &io["e2e.audio"], 1e-3);
}
