//! Real-time factor of S3Gen (meanflow) + HiFT on the CPU at the real
//! Chatterbox-Turbo/Nano shapes, with random weights (no checkpoint needed:
//! the cost does not depend on the values).
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example chatterbox_s3gen_bench -- [PROMPT_TOKENS] [TOKENS] [STEPS] [ROUNDS] [stream|batch]
//! ```
//! Defaults: a 250-token (10 s) voice prompt, 100 new tokens (4 s of audio),
//! 2 meanflow steps, 3 rounds after one warm-up. With `stream`, the tokens go
//! one at a time into an `S3GenStream` (default chunking: 10, then 25) and the
//! compute time of each step that returns audio is reported. With `batch`,
//! B = 1, 2, 4 streams are brought to steady state (a full left context, so
//! every step has the same window) and then each round times one step of
//! every stream pushed one at a time, then one step of all of them through
//! `S3GenRenderer::push_many` (batched), alternating; TOKENS is ignored.

use std::time::Instant;

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use voxline::synth::chatterbox::engine::{RenderStream, SpeechRenderer};
use voxline::synth::chatterbox::hift::source::Noise;
use voxline::synth::chatterbox::render::S3GenRenderer;
use voxline::synth::chatterbox::s3gen::flow::VoiceConds;
use voxline::synth::chatterbox::s3gen::stream::{S3GenStream, S3GenStreamConfig};
use voxline::synth::chatterbox::s3gen::{gaussian, S3Gen, S3GenConfig};

/// Any tensor asked for, random with a fan-in scale (1 ± 0.1 for vectors).
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, _name: &str, _h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let dims = s.dims().to_vec();
        let t = if dims.len() == 1 {
            (Tensor::randn(0f32, 0.1, s, dev)? + 1.0)?
        } else {
            let fan_in: usize = dims[1..].iter().product();
            Tensor::randn(0f32, (1.0 / fan_in as f64).sqrt() as f32, s, dev)?
        };
        t.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("no shape for {name}")
    }
    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

fn main() -> Result<()> {
    let stream = std::env::args().any(|a| a == "stream");
    let batch = std::env::args().any(|a| a == "batch");
    let args: Vec<usize> =
        std::env::args().skip(1).filter(|a| a != "stream" && a != "batch").map(|a| a.parse().expect("numbers")).collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (prompt_tokens, tokens, steps, rounds) = (arg(0, 250), arg(1, 100), arg(2, 2), arg(3, 3));
    let dev = Device::Cpu;
    let mut cfg = S3GenConfig::nano();
    cfg.n_timesteps = steps;
    let t = Instant::now();
    let s3gen = S3Gen::load(&cfg, VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, dev.clone()))?;
    eprintln!("built S3Gen+HiFT (Nano/Turbo shapes, random weights) in {:.2} s", t.elapsed().as_secs_f64());

    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let voice = VoiceConds {
        prompt_tokens: (0..prompt_tokens).map(|i| (i * 7919 % 6561) as u32).collect(),
        prompt_feat: (gaussian(1, 2 * prompt_tokens * 80, &mut rng, &dev)?.reshape((1, 2 * prompt_tokens, 80))? - 5.0)?,
        embedding: gaussian(1, 192, &mut rng, &dev)?.squeeze(0)?,
    };
    let ids: Vec<u32> = (0..tokens).map(|i| (i * 104_729 % 6561) as u32).collect();
    let audio_s = (tokens * cfg.samples_per_token()) as f64 / cfg.hift.sample_rate as f64;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "prompt {prompt_tokens} tokens, {tokens} new tokens ({audio_s:.2} s of audio), {steps} meanflow steps, {threads} thread(s)"
    );
    if stream {
        return bench_stream(&s3gen, &voice, &ids, rounds, audio_s);
    }
    if batch {
        return bench_batch(s3gen, voice, rounds);
    }
    let mut all = voice.prompt_tokens.clone();
    all.extend(&ids);
    for round in 0..=rounds {
        let x0 = gaussian(80, 2 * (prompt_tokens + tokens), &mut rng, &dev)?;
        // The encoder alone, then the whole token-to-mel path (encoder again + solver).
        let t = Instant::now();
        s3gen.flow.encode(&all)?;
        let t_enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mel = s3gen.flow.mel(&voice, &ids, &x0, steps, true)?;
        let t_flow = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut sine = s3gen.hift.sine_state(round as u64);
        s3gen.hift.forward(&mel, &mut sine, Noise::Drawn)?;
        let t_hift = t.elapsed().as_secs_f64();
        let total = t_flow + t_hift;
        let label = if round == 0 { "warm-up".to_string() } else { format!("round {round}") };
        println!(
            "{label}: encoder {t_enc:.3} s, solver ({steps} steps) {:.3} s, HiFT {t_hift:.3} s; total {total:.3} s, RTF {:.3}",
            t_flow - t_enc,
            total / audio_s
        );
    }
    Ok(())
}

/// Tokens one at a time into a stream; per-step compute and the first audio.
fn bench_stream(s3gen: &S3Gen, voice: &VoiceConds, ids: &[u32], rounds: usize, audio_s: f64) -> Result<()> {
    let cfg = S3GenStreamConfig::default();
    println!(
        "streaming: chunks of {} then {} tokens, {} tokens of left context, HiFT lookahead {} frames",
        cfg.first_chunk_tokens, cfg.chunk_tokens, cfg.context_tokens, cfg.hift.lookahead
    );
    for round in 0..=rounds {
        let mut stream = S3GenStream::new(s3gen, voice.clone(), cfg)?;
        let (mut steps, mut samples, mut first) = (Vec::new(), 0usize, None);
        let start = Instant::now();
        for (i, &t) in ids.iter().enumerate() {
            let t0 = Instant::now();
            let out = stream.push(&[t])?;
            if !out.is_empty() {
                steps.push(format!("{:.2}", t0.elapsed().as_secs_f64()));
                first.get_or_insert((i + 1, t0.elapsed().as_secs_f64(), out.len()));
            }
            samples += out.len();
        }
        let t0 = Instant::now();
        samples += stream.finish()?.len();
        steps.push(format!("{:.2}", t0.elapsed().as_secs_f64()));
        let total = start.elapsed().as_secs_f64();
        let label = if round == 0 { "warm-up".to_string() } else { format!("round {round}") };
        let (tok, secs, n) = first.unwrap_or((0, 0.0, 0));
        println!(
            "{label}: first audio after token {tok}: {secs:.2} s compute for {:.0} ms of audio; steps (s) [{}]; total {total:.2} s for {samples} samples, RTF {:.2}",
            n as f64 / 24.0,
            steps.join(", "),
            total / audio_s
        );
    }
    Ok(())
}

/// Steady-state steps of B streams, one at a time versus batched.
fn bench_batch(s3gen: S3Gen, voice: VoiceConds, rounds: usize) -> Result<()> {
    let cfg = S3GenStreamConfig::default();
    let spt = s3gen.config().samples_per_token();
    let renderer = S3GenRenderer::from_parts(s3gen, voice, cfg);
    let err = |e: voxline::synth::chatterbox::ChatterboxError| candle_core::Error::Msg(e.to_string());
    // The first chunk, then chunks until the left context is full (the window stops growing).
    let warm_up = 1 + cfg.context_tokens.div_ceil(cfg.chunk_tokens) + 1;
    println!(
        "batched across streams: chunks of {} then {} tokens, {} tokens of left context; {warm_up} warm-up steps, then steady-state steps ({} s of audio per stream)",
        cfg.first_chunk_tokens,
        cfg.chunk_tokens,
        cfg.context_tokens,
        (cfg.chunk_tokens * spt) as f64 / 24_000.0
    );
    println!("| B | one at a time (s) | batched (s) | speed-up |");
    println!("|---|---|---|---|");
    for b in [1usize, 2, 4] {
        let mut streams: Vec<Box<dyn RenderStream>> = (0..b).map(|i| renderer.start(i as u64)).collect::<std::result::Result<_, _>>().map_err(err)?;
        let mut next = 0usize;
        let mut chunk = |n: usize| -> Vec<u32> {
            next += n;
            (next - n..next).map(|i| (i * 104_729 % 6561) as u32).collect()
        };
        let push_all = |streams: &mut Vec<Box<dyn RenderStream>>, parts: &[Vec<u32>]| -> Result<usize> {
            let mut refs: Vec<&mut dyn RenderStream> = Vec::new();
            for s in streams.iter_mut() {
                refs.push(s.as_mut());
            }
            let tokens: Vec<&[u32]> = parts.iter().map(Vec::as_slice).collect();
            let mut samples = 0;
            for a in renderer.push_many(&mut refs, &tokens) {
                samples += a.map_err(err)?.len();
            }
            Ok(samples)
        };
        for step in 0..warm_up {
            let n = if step == 0 { cfg.first_chunk_tokens } else { cfg.chunk_tokens };
            let parts: Vec<Vec<u32>> = (0..b).map(|_| chunk(n)).collect();
            push_all(&mut streams, &parts)?;
        }
        let (mut alone, mut batched) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            let parts: Vec<Vec<u32>> = (0..b).map(|_| chunk(cfg.chunk_tokens)).collect();
            let t = Instant::now();
            for (s, p) in streams.iter_mut().zip(&parts) {
                if s.push(p).map_err(err)?.is_empty() {
                    candle_core::bail!("a steady-state step returned no audio");
                }
            }
            alone.push(t.elapsed().as_secs_f64());
            let parts: Vec<Vec<u32>> = (0..b).map(|_| chunk(cfg.chunk_tokens)).collect();
            let t = Instant::now();
            let samples = push_all(&mut streams, &parts)?;
            batched.push(t.elapsed().as_secs_f64());
            if samples == 0 {
                candle_core::bail!("a steady-state batch returned no audio");
            }
        }
        let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!("| {b} | {} | {} | {:.2}x |", fmt(&alone), fmt(&batched), mean(&alone) / mean(&batched));
    }
    Ok(())
}
