//! T3 speed at Chatterbox-Nano or -Turbo shapes with random weights: prefill
//! time over a voice-sized prompt (whole, and text only after a cached voice
//! prefix, as the engine runs it), then decode tokens per second (model step +
//! the reference's sampler), printed as one JSON object.
//!
//! `voxline-t3-bench [--preset nano|turbo] [--prompt 375] [--text 24] [--tokens 200] [--cuda]
//!  [--streams "1 2 4 8"] [--stream-tokens 20]`
//!
//! With `--streams`, each count `B` of streams (each its own fork of the voice
//! prefix plus text, its own sampler) then draws `--stream-tokens` tokens two
//! ways in the same run: one stream's step after another (what an engine that
//! does not batch does), and all `B` in one batched step (`T3::step_many`, as
//! `ChatterboxEngine::next_chunks` runs them); aggregate tokens/s of each.
//!
//! Speech tokens are 25 Hz, so real time needs 25 tokens/s per stream.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use voxline::synth::chatterbox::{Gpt2State, Sampler, SamplingParams, T3Cond, T3Config, T3};

struct Args {
    preset: String,
    prompt: usize,
    text: usize,
    tokens: usize,
    cuda: bool,
    streams: Vec<usize>,
    stream_tokens: usize,
}

fn parse() -> Result<Args> {
    let mut a = Args { preset: "nano".into(), prompt: 375, text: 24, tokens: 200, cuda: false, streams: Vec::new(), stream_tokens: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => a.preset = value()?,
            "--prompt" => a.prompt = value()?.parse()?,
            "--text" => a.text = value()?.parse()?,
            "--tokens" => a.tokens = value()?.parse()?,
            "--cuda" => a.cuda = true,
            "--streams" => a.streams = value()?.split_whitespace().map(str::parse).collect::<Result<_, _>>()?,
            "--stream-tokens" => a.stream_tokens = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let args = parse()?;
    let config = match args.preset.as_str() {
        "nano" => T3Config::nano(),
        "turbo" => T3Config::turbo(),
        other => bail!("unknown preset {other} (nano, turbo)"),
    };
    let device = if args.cuda { Device::new_cuda(0)? } else { Device::Cpu };
    let load_start = Instant::now();
    let map = VarMap::new();
    let t3 = T3::load(VarBuilder::from_varmap(&map, DType::F32, &device), &config)?;
    for var in map.all_vars() {
        var.set(&Tensor::randn(0f32, 0.02, var.shape(), &device)?)?;
    }
    let load_s = load_start.elapsed().as_secs_f64();

    let s3 = config.s3_vocab();
    let prompt: Vec<u32> = (0..args.prompt as u32).map(|i| (i * 7919) % s3).collect();
    let cond = T3Cond::new(
        Tensor::randn(0f32, 1.0, (1, config.speaker_embed_size), &device)?,
        Some(Tensor::new(prompt, &device)?.unsqueeze(0)?),
    );
    let text: Vec<u32> = (0..args.text as u32).map(|i| (i * 104_729) % 50_000).collect();

    let mut state = t3.new_state();
    let mut sampler = Sampler::new(SamplingParams::default(), 0);
    // Warm-up (allocations, thread pools), not timed.
    let _ = t3.prefill(&cond, &text[..4.min(text.len())], &mut state)?;

    let t0 = Instant::now();
    let logits = t3.prefill(&cond, &text, &mut state)?;
    let mut row = logits.squeeze(0)?.to_vec1::<f32>()?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let prompt_len = state.seq_len();

    // What a request pays when the voice's prefix was computed once at load.
    let prefix = t3.voice_prefix(&cond)?;
    let t0 = Instant::now();
    let mut forked = prefix.fork()?;
    t3.prefill_text(&text, &mut forked)?.squeeze(0)?.to_vec1::<f32>()?;
    let prefill_text_s = t0.elapsed().as_secs_f64();

    // Decode without stopping (random weights may draw the stop token anywhere).
    let t1 = Instant::now();
    let mut history = vec![config.start_speech_token];
    for i in 0..args.tokens {
        let token = sampler.sample(&mut row, &history).context("all logits masked")?;
        if i == 0 {
            history.clear();
        }
        history.push(token);
        let logits = t3.step(token.min(config.speech_tokens_dict_size as u32 - 1), &mut state)?;
        row = logits.squeeze(0)?.to_vec1::<f32>()?;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let tps = args.tokens as f64 / decode_s;

    let mut batched = Vec::new();
    for &b in &args.streams {
        let (one_s, together_s) = (
            decode_streams(&t3, &prefix, &text, b, args.stream_tokens, false)?,
            decode_streams(&t3, &prefix, &text, b, args.stream_tokens, true)?,
        );
        let tokens = (b * args.stream_tokens) as f64;
        batched.push(serde_json::json!({
            "streams": b,
            "one_at_a_time_tokens_per_s": tokens / one_s,
            "batched_tokens_per_s": tokens / together_s,
            "gain": one_s / together_s,
        }));
    }
    let out = serde_json::json!({
        "preset": args.preset,
        "device": if args.cuda { "cuda" } else { "cpu" },
        "threads": candle_core::utils::get_num_threads(),
        "load_random_s": load_s,
        "prompt_positions": prompt_len,
        "prefill_s": prefill_s,
        "prefill_text_after_voice_prefix_s": prefill_text_s,
        "decode_tokens": args.tokens,
        "decode_s": decode_s,
        "tokens_per_s": tps,
        "real_time_factor": 25.0 / tps,
        "streams": batched,
    });
    println!("{out}");
    Ok(())
}

/// Seconds for `b` streams, each forked from `prefix` and prefilled with
/// `text`, to draw `tokens` tokens each: one step per stream after another,
/// or all streams in one batched step (the prefills are not timed).
fn decode_streams(t3: &T3, prefix: &Gpt2State, text: &[u32], b: usize, tokens: usize, batched: bool) -> Result<f64> {
    let config = t3.config();
    let mut states = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..b {
        let mut state = prefix.fork()?;
        rows.push(t3.prefill_text(text, &mut state)?.squeeze(0)?.to_vec1::<f32>()?);
        states.push(state);
    }
    let mut samplers: Vec<Sampler> = (0..b).map(|i| Sampler::new(SamplingParams::default(), i as u64)).collect();
    let mut histories = vec![vec![config.start_speech_token]; b];
    let top = config.speech_tokens_dict_size as u32 - 1;
    let t0 = Instant::now();
    for i in 0..tokens {
        let mut drawn = Vec::with_capacity(b);
        for ((sampler, row), history) in samplers.iter_mut().zip(&mut rows).zip(&mut histories) {
            let token = sampler.sample(row, history).context("all logits masked")?;
            if i == 0 {
                history.clear();
            }
            history.push(token);
            drawn.push(token.min(top));
        }
        if batched {
            let mut refs: Vec<&mut Gpt2State> = states.iter_mut().collect();
            let logits = t3.step_many(&drawn, &mut refs)?;
            for (j, row) in rows.iter_mut().enumerate() {
                *row = logits.get(j)?.to_vec1::<f32>()?;
            }
        } else {
            for ((state, row), &token) in states.iter_mut().zip(&mut rows).zip(&drawn) {
                *row = t3.step(token, state)?.squeeze(0)?.to_vec1::<f32>()?;
            }
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}
