//! Streaming without recompute: the flow and the HiFi-GAN decoder, pushed a
//! window at a time with their caches in a `StreamState`, give what the
//! whole-sentence synthesis gives, whatever the windows: pushes of 1, 2 or
//! 3 frames, mixed sizes, the engine's windows, a sentence shorter than one
//! window; on every architecture Piper exports (en_US-joe-medium: ResBlock2,
//! upsampling 8·8·4; the tiny high-quality voice: ResBlock1, 8·8·2·2; the
//! tiny multi-speaker voice: speaker conditioning). Between pushes, exactly
//! `ready_samples` samples have come out. A sentence's caches end with it:
//! a state pushed to the end, or a stream cancelled mid-sentence, leaves
//! nothing in the next sentence.
//!
//! The bound asserted, `MAX_DIFF`: each activation is computed once, by the
//! same products as in the whole decode; what differs is only where a sum
//! is split at a push's edge (the upsamplers' overlap-add; the products of
//! a convolution over a handful of output steps, which `gemm` may order
//! otherwise), so the difference is float rounding. Measured (CPU, AVX-512):
//! 0 (bit-identical) for pushes of 3 frames or more, except a few at 3e-7;
//! up to 3.8e-6 on joe and 1.7e-5 on the tiny random-weight voices for
//! pushes of 1 frame (SNR ≥ 111 dB); the engine's default windows 3.0e-7
//! (139 dB). With the direct AVX-512 kernel (`vits/direct_conv.rs`, whose
//! outputs do not depend on where a window starts; the upsamplers'
//! overlap-add still splits sums): joe 0 for the first 1-2 frames in any
//! pieces, up to 6.6e-7 for 144 frames in pushes of 1-3 (119 dB), the
//! engine's default windows 4.8e-7 (128 dB).

mod common;

use candle_core::{Device, Tensor};
use common::*;
use rand::SeedableRng;
use voxline::synth::piper::onnx::OnnxWeights;
use voxline::synth::piper::vits::streaming::StreamState;
use voxline::synth::piper::{Scales, StreamConfig, Vits};
use voxline::synth::{CancelToken, Engine, PcmChunk, SynthOptions, SynthRequest};

/// Largest |difference| allowed between a streamed and a whole-sentence
/// sample (see above), and the lowest SNR.
const MAX_DIFF: f32 = 3e-5;
const MIN_SNR_DB: f64 = 105.0;

const NO_NOISE: Scales = Scales { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0 };

fn load(path: &std::path::Path) -> Vits {
    let w = OnnxWeights::read(path).expect("read weights");
    Vits::load(&w, &Device::Cpu).expect("build model")
}

/// The latent (and speaker conditioning) of the fixture's phoneme ids.
fn latent(vits: &Vits, npz_name: &str, speaker: Option<u32>) -> (Tensor, Option<Tensor>) {
    let f = npz(npz_name);
    let ids: Vec<i64> = f["ids"].flatten_all().unwrap().to_vec1().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let p = vits.prepare(&ids, speaker, Scales { noise_scale: 0.667, ..NO_NOISE }, &mut rng).unwrap();
    (p.z, p.g)
}

/// `z` pushed through a fresh state in pieces of `sizes` (cycled); checks
/// the samples out after each push against `ready_samples`.
fn streamed(vits: &Vits, z: &Tensor, g: Option<&Tensor>, sizes: &[usize]) -> Vec<f32> {
    let frames = z.dim(2).unwrap();
    let mut state = StreamState::default();
    let mut out = Vec::new();
    let mut fed = 0;
    for &size in sizes.iter().cycle() {
        let n = size.min(frames - fed);
        let last = fed + n == frames;
        let piece = z.narrow(2, fed, n).unwrap();
        out.extend(vits.decode_push(&mut state, &piece, g, last).unwrap().remove(0));
        fed += n;
        if last {
            break;
        }
        assert_eq!(out.len(), vits.decoder.ready_samples(fed), "samples out after {fed} of {frames} frames, pieces {sizes:?}");
    }
    out
}

/// Streams `z` with each of `pieces` against its whole decode; gives the
/// worst max |diff| and SNR.
fn check_pieces(name: &str, vits: &Vits, z: &Tensor, g: Option<&Tensor>, pieces: &[&[usize]]) -> (f32, f64) {
    let whole = vits.decode(z, g).unwrap();
    let (mut worst, mut worst_snr) = (0f32, f64::INFINITY);
    for sizes in pieces {
        let s = streamed(vits, z, g, sizes);
        assert_eq!(s.len(), whole.len(), "{name}, pieces {sizes:?}: length");
        let d = max_abs_diff(&whole, &s);
        let snr = if d == 0.0 { f64::INFINITY } else { snr_db(&whole, &s) };
        eprintln!("{name}: {} frames in pieces of {sizes:?}: max |diff| {d:.2e}, SNR {snr:.1} dB", z.dim(2).unwrap());
        assert!(d <= MAX_DIFF && snr >= MIN_SNR_DB, "{name}, pieces {sizes:?}: max |diff| {d:e}, SNR {snr:.1} dB");
        worst = worst.max(d);
        worst_snr = worst_snr.min(snr);
    }
    (worst, worst_snr)
}

const PIECES: &[&[usize]] = &[&[1], &[2], &[3], &[1, 2, 3, 5, 8], &[16, 64], &[8, 32], &[45], &[100_000]];

#[test]
fn streamed_decoder_equals_the_whole_decode_on_every_architecture() {
    let joe = load(&default_voice());
    let (z, g) = latent(&joe, "piper/joe_parity.npz", None);
    let (d, snr) = check_pieces("joe", &joe, &z, g.as_ref(), PIECES);
    eprintln!("joe: worst max |diff| {d:.2e}, lowest SNR {snr:.1} dB");

    let high = load(&fixture("piper/tiny_high.onnx"));
    let (z, g) = latent(&high, "piper/tiny_high_ref.npz", None);
    check_pieces("tiny_high", &high, &z, g.as_ref(), PIECES);

    let multi = load(&fixture("piper/tiny_medium_multispeaker.onnx"));
    for sid in [0, 2] {
        let (z, g) = latent(&multi, "piper/tiny_medium_multispeaker_ref.npz", Some(sid));
        assert!(g.is_some());
        check_pieces(&format!("multispeaker sid {sid}"), &multi, &z, g.as_ref(), PIECES);
    }
}

#[test]
fn a_sentence_shorter_than_one_window() {
    let joe = load(&default_voice());
    let (z, _) = latent(&joe, "piper/joe_parity.npz", None);
    // Shorter than the decoder's hold-back (about 10 frames) and than any window.
    for frames in [1, 2, 5, 12] {
        let short = z.narrow(2, 0, frames).unwrap();
        check_pieces(&format!("joe, first {frames} frames"), &joe, &short, None, &[&[1], &[3], &[16]]);
    }
}

#[test]
fn a_sentence_leaves_nothing_in_the_next() {
    let joe = load(&default_voice());
    let (z, _) = latent(&joe, "piper/joe_parity.npz", None);
    let frames = z.dim(2).unwrap();
    let a = z.narrow(2, 0, frames / 2).unwrap();
    let b = z.narrow(2, frames / 2, frames - frames / 2).unwrap();
    let b_whole = joe.decode(&b, None).unwrap();

    // A state pushed to a sentence's end is empty again.
    let mut state = StreamState::default();
    joe.decode_push(&mut state, &a, None, true).unwrap();
    let again = joe.decode_push(&mut state, &b, None, true).unwrap().remove(0);
    assert_eq!(again, b_whole, "a state reused after its sentence's end");

    // The engine drops a sentence's state when the sentence or the stream
    // ends: with the noise off, two sentences stream as each alone, and a
    // stream cancelled mid-sentence changes nothing for the next request.
    let engine = joe_engine(StreamConfig { first_chunk_frames: 3, chunk_frames: 2 });
    let one = |text: &str| audio(&chunks(&engine, text, None));
    let (first, second) = (one("The first sentence is here."), one("And this one follows it."));
    let both = chunks(&engine, "The first sentence is here. And this one follows it.", None);
    let by_sentence = |i: usize| audio(&both.iter().filter(|c| c.sentence == i).cloned().collect::<Vec<_>>());
    assert_eq!(by_sentence(0), first, "sentence 0 of two");
    assert_eq!(by_sentence(1), second, "sentence 1 of two: the first sentence's caches leaked into it");

    let cancel = CancelToken::new();
    let mut stream = engine.start(request("And this one follows it."), cancel.clone()).unwrap();
    for _ in 0..3 {
        stream.next_chunk().unwrap().unwrap();
    }
    cancel.cancel();
    assert!(stream.next_chunk().is_err());
    drop(stream);
    assert_eq!(one("And this one follows it."), second, "after a cancelled stream");
}

/// The engine (flow and decoder streaming) against its `whole_sentence`
/// windows, on two sentences; 1000-frame windows are longer than either.
#[test]
fn engine_windows_equal_the_whole_sentence_synthesis() {
    let text = "The quick brown fox jumps over the lazy dog, and then it runs far away. Nobody saw where it went.";
    let whole = audio(&chunks(&joe_engine(StreamConfig::whole_sentence()), text, Some(42)));
    for (first, rest) in [(1, 1), (2, 3), (3, 2), (8, 32), (16, 64), (1000, 1000)] {
        let cfg = StreamConfig { first_chunk_frames: first, chunk_frames: rest };
        let cs = chunks(&joe_engine(cfg), text, Some(42));
        // Chunks are the windows (`first` frames, then growing to `rest`:
        // `StreamConfig::window_at`), up to a sentence's ragged end.
        let mut cursor = 0;
        for (i, c) in cs.iter().enumerate() {
            let starts = i == 0 || cs[i - 1].sentence != c.sentence;
            let ends = i + 1 == cs.len() || cs[i + 1].sentence != c.sentence;
            if starts {
                cursor = 0;
            }
            if !ends {
                assert_eq!(c.samples.len(), cfg.window_at(cursor) * 256, "{first}/{rest}: chunk {i}");
            }
            cursor += c.samples.len() / 256;
        }
        let a = audio(&cs);
        assert_eq!(a.len(), whole.len(), "{first}/{rest}: length");
        let d = max_abs_diff(&whole, &a);
        let snr = if d == 0.0 { f64::INFINITY } else { snr_db(&whole, &a) };
        eprintln!("engine, windows {first}/{rest}: {} chunks, max |diff| {d:.2e}, SNR {snr:.1} dB", cs.len());
        assert!(d <= MAX_DIFF && snr >= MIN_SNR_DB, "{first}/{rest}: max |diff| {d:e}, SNR {snr:.1} dB");
    }
}

fn joe_engine(cfg: StreamConfig) -> voxline::synth::PiperEngine {
    joe().with_config(cfg).unwrap()
}

fn request(text: &str) -> SynthRequest {
    SynthRequest { text: text.into(), options: SynthOptions { noise_scale: Some(0.0), noise_w: Some(0.0), ..Default::default() } }
}

/// Every chunk of `text` (noise off without a seed).
fn chunks(engine: &dyn Engine, text: &str, seed: Option<u64>) -> Vec<PcmChunk> {
    let req = match seed {
        Some(seed) => SynthRequest { text: text.into(), options: SynthOptions { seed: Some(seed), ..Default::default() } },
        None => request(text),
    };
    let mut stream = engine.start(req, CancelToken::new()).expect("start");
    std::iter::from_fn(|| stream.next_chunk().expect("chunk")).collect()
}

fn audio(chunks: &[PcmChunk]) -> Vec<f32> {
    chunks.iter().flat_map(|c| c.samples.iter().copied()).collect()
}
