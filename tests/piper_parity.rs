//! The candle VITS matches Piper's reference runtime (onnxruntime on the same
//! `.onnx`), module by module and end to end, with the noise scales at 0.
//! Fixtures: tests/fixtures/piper/ (see its README for the generating script).

mod common;

use candle_core::{Device, Tensor};
use common::harness::OutputWithin;
use common::*;
use rand::SeedableRng;
use voxline::synth::piper::onnx::OnnxWeights;
use voxline::synth::piper::{Scales, Vits};

const NO_NOISE: Scales = Scales { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0 };

fn ids(f: &std::collections::HashMap<String, Tensor>) -> Vec<i64> {
    f["ids"].flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn load(path: &std::path::Path) -> Vits {
    let w = OnnxWeights::read(path).expect("read weights");
    Vits::load(&w, &Device::Cpu).expect("build model")
}

fn check(name: &str, ours: &Tensor, reference: &Tensor, tol: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let d = max_abs_diff(&flat(ours), &flat(reference));
    eprintln!("{name}: max |diff| = {d:.2e}");
    assert!(d <= tol, "{name}: max |diff| {d} > {tol}");
}

#[test]
fn joe_modules_match_onnxruntime() {
    let f = npz("piper/joe_parity.npz");
    let vits = load(&default_voice());
    let ids = ids(&f);
    let t = ids.len();
    let ids_t = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), (1, t), &Device::Cpu).unwrap();

    // Text encoder.
    let enc = vits.encoder.forward(&ids_t).unwrap();
    check("enc_x", &enc.x, &f["enc_x"], 2e-4);
    check("m_p", &enc.m_p, &f["m_p"], 2e-4);
    check("logs_p", &enc.logs_p, &f["logs_p"], 2e-4);

    // Stochastic duration predictor, reverse, zero noise; on the reference's encoder states.
    let zeros = Tensor::zeros((1, 2, t), candle_core::DType::F32, &Device::Cpu).unwrap();
    let logw = vits.duration.forward(&f["enc_x"], None, &zeros).unwrap();
    check("logw", &logw, &f["logw"], 2e-4);

    // Flow, reverse, on the reference's prior sample.
    let z = vits.flow.reverse(&f["z_p"], None).unwrap();
    check("flow z", &z, &f["z"], 2e-4);

    // HiFi-GAN decoder on the reference's latent.
    let audio = vits.decoder.forward(&f["z"], None).unwrap();
    check("decoder audio", &audio.flatten_all().unwrap(), &f["audio"].flatten_all().unwrap(), 1e-4);
}

#[test]
fn joe_end_to_end_matches_onnxruntime() {
    let f = npz("piper/joe_parity.npz");
    let vits = load(&default_voice());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ids = ids(&f);

    let p = vits.prepare(&ids, None, NO_NOISE, &mut rng).unwrap();
    let w_ceil: Vec<f32> = flat(&f["w_ceil"]);
    assert_eq!(p.durations.iter().map(|&d| d as f32).collect::<Vec<_>>(), w_ceil, "durations");
    let audio = vits.decode(&p.z, None).unwrap();
    let reference = flat(&f["audio"]);
    let d = max_abs_diff(&audio, &reference);
    let snr = snr_db(&reference, &audio);
    eprintln!("end to end: max |diff| = {d:.2e}, SNR = {snr:.1} dB");
    assert!(d < 1e-3 && snr > 50.0, "max |diff| {d}, SNR {snr} dB");

    // length_scale stretches every phoneme.
    let slow = Scales { length_scale: 1.3, ..NO_NOISE };
    let p = vits.prepare(&ids, None, slow, &mut rng).unwrap();
    assert_eq!(p.durations.iter().map(|&d| d as f32).collect::<Vec<_>>(), flat(&f["w_ceil_ls13"]));
    let audio = vits.decode(&p.z, None).unwrap();
    let snr = snr_db(&flat(&f["audio_ls13"]), &audio);
    assert!(snr > 50.0, "length_scale 1.3: SNR {snr} dB");
}

/// Every architecture Piper exports: a high-quality decoder (ResBlock1,
/// upsampling 8·8·2·2) and a multi-speaker voice (speaker embedding
/// conditioning the duration predictor, the flow and the decoder). Tiny
/// random-weight voices exported by Piper's own code (gen_tiny_voices.py).
#[test]
fn tiny_high_quality_voice_matches_onnxruntime() {
    let f = npz("piper/tiny_high_ref.npz");
    let vits = load(&fixture("piper/tiny_high.onnx"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let p = vits.prepare(&ids(&f), None, NO_NOISE, &mut rng).unwrap();
    assert_eq!(p.durations.iter().map(|&d| d as f32).collect::<Vec<_>>(), flat(&f["w_ceil"]));
    check("tiny_high z", &p.z, &f["z"], 1e-4);
    let audio = vits.decode(&p.z, None).unwrap();
    let snr = snr_db(&flat(&f["audio"]), &audio);
    eprintln!("tiny_high: SNR {snr:.1} dB");
    assert!(snr > 50.0, "SNR {snr}");
}

#[test]
fn tiny_multispeaker_voice_matches_onnxruntime_per_speaker() {
    let f = npz("piper/tiny_medium_multispeaker_ref.npz");
    let vits = load(&fixture("piper/tiny_medium_multispeaker.onnx"));
    assert!(vits.num_speakers() >= 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let ids = ids(&f);
    for sid in [0u32, 2] {
        let p = vits.prepare(&ids, Some(sid), NO_NOISE, &mut rng).unwrap();
        assert_eq!(
            p.durations.iter().map(|&d| d as f32).collect::<Vec<_>>(),
            flat(&f[&format!("w_ceil_sid{sid}")]),
            "speaker {sid} durations"
        );
        let audio = vits.decode(&p.z, p.g.as_ref()).unwrap();
        let snr = snr_db(&flat(&f[&format!("audio_sid{sid}")]), &audio);
        eprintln!("multispeaker sid {sid}: SNR {snr:.1} dB");
        assert!(snr > 50.0, "speaker {sid}: SNR {snr}");
    }
    // An id past the table is a clear error.
    let err = vits.prepare(&ids, Some(99), NO_NOISE, &mut rng).err().expect("unknown speaker");
    assert!(err.to_string().contains("speaker 99"), "{err}");
}

/// The tests above run the direct AVX-512 convolution kernel where the CPU has
/// it; a CPU without AVX-512 takes the portable path (im2col + gemm). This
/// runs them again in a child process with `VOXLINE_DIRECT_CONV=0`, so both
/// paths are held to the reference on every machine.
#[test]
fn the_portable_convolution_path_matches_onnxruntime_too() {
    if std::env::var_os("VOXLINE_DIRECT_CONV").is_some() {
        return; // this is the child run
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(&exe)
        .env("VOXLINE_DIRECT_CONV", "0")
        .args(["--exact", "--test-threads", "1", "joe_modules_match_onnxruntime", "joe_end_to_end_matches_onnxruntime", "tiny_high_quality_voice_matches_onnxruntime", "tiny_multispeaker_voice_matches_onnxruntime_per_speaker"])
        .output_within(std::time::Duration::from_secs(300), "the parity tests on the portable path")
        .expect("run the parity tests again");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the portable path fails parity:\n{text}");
    assert!(text.contains("4 passed"), "all four parity tests ran on the portable path:\n{text}");
}
