//! `voxline bench`: real-time factor and time to first chunk over a fixed
//! sentence set. Printed as one JSON object so `scripts/bench.sh` can put it
//! beside the reference runtime measured in the same invocation.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use voxline::synth::piper::StreamConfig;
use voxline::synth::{CancelToken, Engine, SynthRequest};

use crate::VoiceArgs;

/// Telephone-style sentences: the fixed benchmark set. Keep identical to
/// `SENTENCES` in tests/reference/piper_reference_bench.py (scripts/bench.sh checks).
pub const SENTENCES: &[&str] = &[
    "Thank you for calling, how can I help you today?",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "I can help you with that, please hold on for a moment.",
    "The total comes to forty two dollars and fifteen cents.",
    "Could you please spell your last name for me?",
    "Our office is open Monday through Friday, from nine to five.",
    "I have transferred your request to the billing department.",
    "Is there anything else I can help you with?",
    "Please say or enter your account number, followed by the pound key.",
    "Have a wonderful day, and thank you for choosing us.",
];

/// Clauses as an agent's text arrives at the segmenter: what a call speaks
/// first. Keep identical to `CLAUSES` in tests/reference/piper_reference_bench.py.
pub const CLAUSES: &[&str] = &[
    "Thank you for calling,",
    "I can help you with that,",
    "Sure, let me check.",
    "Your order has shipped,",
    "One moment please.",
    "Is that correct?",
    "I found your account,",
    "The next available slot is Monday,",
    "Got it, thanks.",
    "Let me transfer you now.",
];

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    voice: VoiceArgs,
    /// Passes over the sentence set (after one warm-up pass).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Decode each sentence whole instead of streaming windows.
    #[arg(long)]
    whole_sentence: bool,
    /// Speak the short clauses of `CLAUSES` instead of the sentences.
    #[arg(long)]
    clauses: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let t_load = Instant::now();
    let mut engine = args.voice.engine()?;
    let load_s = t_load.elapsed().as_secs_f64();
    if args.whole_sentence {
        engine = engine.with_config(StreamConfig::whole_sentence())?;
    }
    let rate = engine.info().sample_rate as f64;
    let mut options = args.voice.options();
    options.seed.get_or_insert(1);

    let mut first_chunk_ms = Vec::new();
    let (mut compute_s, mut audio_s) = (0.0f64, 0.0f64);
    for round in 0..=args.rounds {
        for text in if args.clauses { CLAUSES } else { SENTENCES } {
            let t0 = Instant::now();
            let mut stream = engine.start(SynthRequest { text: text.to_string(), options: options.clone() }, CancelToken::new())?;
            let mut first = None;
            let mut samples = 0usize;
            while let Some(chunk) = stream.next_chunk()? {
                first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
                samples += chunk.samples.len();
            }
            if round == 0 {
                continue; // warm-up
            }
            first_chunk_ms.push(first.unwrap_or_default());
            compute_s += t0.elapsed().as_secs_f64();
            audio_s += samples as f64 / rate;
        }
    }
    first_chunk_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| first_chunk_ms[((first_chunk_ms.len() - 1) as f64 * p).round() as usize];
    let threads = match args.voice.threads {
        0 => "all".to_string(),
        n => n.to_string(),
    };
    println!(
        "{}",
        serde_json::json!({
            "runtime": "voxline",
            "mode": if args.whole_sentence { "whole-sentence" } else { "streaming" },
            "units": if args.clauses { "clauses" } else { "sentences" },
            "threads": threads,
            "sentences": first_chunk_ms.len(),
            "load_s": load_s,
            "rtf": compute_s / audio_s,
            "first_chunk_ms_p50": pct(0.5),
            "first_chunk_ms_p90": pct(0.9),
            "first_chunk_ms_max": pct(1.0),
            "audio_s": audio_s,
        })
    );
    Ok(())
}
