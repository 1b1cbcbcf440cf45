//! `voxline bench`: real-time factor and time to first chunk over a fixed
//! sentence set. Printed as one JSON object so `scripts/bench.sh` can put it
//! beside the reference runtime measured in the same invocation.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use voxline::synth::piper::StreamConfig;
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest, SynthStream};

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
    /// Batched synthesis across streams: for each N given (e.g. `1,2,4,8`),
    /// N streams speak the set in lockstep through `Engine::next_chunks`,
    /// against the same N streams' requests run one at a time; one JSON
    /// line per N.
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
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
    if !args.batch.is_empty() {
        let texts = if args.clauses { CLAUSES } else { SENTENCES };
        for &n in &args.batch {
            batch(&engine, texts, &options, n.max(1), args.rounds.max(1))?;
        }
        return Ok(());
    }

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

/// CPU time of the calling thread, in seconds: the bench's compute, which
/// other processes on the machine do not inflate (wall time is reported too).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The requests of `n` streams: stream `k` speaks every text once, starting
/// at text `k` (so the streams are at different points of different
/// sentences), with its own seed.
fn stream_requests(texts: &[&str], options: &SynthOptions, n: usize) -> Vec<Vec<SynthRequest>> {
    (0..n)
        .map(|k| {
            (0..texts.len())
                .map(|i| {
                    let mut options = options.clone();
                    options.seed = options.seed.map(|s| s + k as u64);
                    SynthRequest { text: texts[(i + k) % texts.len()].to_string(), options }
                })
                .collect()
        })
        .collect()
}

/// `n` streams in lockstep through `next_chunks` vs the same requests one
/// at a time with `next_chunk`, both on this thread, alternating per round
/// (after a warm-up of each). Prints audio seconds per compute second of both.
fn batch(engine: &dyn Engine, texts: &[&str], options: &SynthOptions, n: usize, rounds: usize) -> Result<()> {
    let rate = engine.info().sample_rate as f64;
    let requests = stream_requests(texts, options, n);
    // Samples of every request, one at a time.
    let alone = || -> Result<usize> {
        let mut samples = 0;
        for req in requests.iter().flatten() {
            let mut stream = engine.start(req.clone(), CancelToken::new())?;
            while let Some(chunk) = stream.next_chunk()? {
                samples += chunk.samples.len();
            }
        }
        Ok(samples)
    };
    // Samples of every request, the streams in lockstep: each step advances
    // every stream by one chunk in one `next_chunks`; a stream whose request
    // is done starts its next one.
    let together = || -> Result<(usize, usize, usize)> {
        let mut queues: Vec<std::slice::Iter<SynthRequest>> = requests.iter().map(|r| r.iter()).collect();
        let mut streams: Vec<Option<Box<dyn SynthStream>>> = Vec::new();
        for q in &mut queues {
            streams.push(q.next().map(|r| engine.start(r.clone(), CancelToken::new())).transpose()?);
        }
        let (mut samples, mut steps, mut chunks) = (0, 0, 0);
        while streams.iter().any(Option::is_some) {
            let mut live: Vec<&mut dyn SynthStream> = streams.iter_mut().flatten().map(|s| &mut **s as &mut dyn SynthStream).collect();
            let answers = engine.next_chunks(&mut live);
            drop(live);
            steps += 1;
            let mut answers = answers.into_iter();
            for (slot, queue) in streams.iter_mut().zip(&mut queues) {
                if slot.is_none() {
                    continue;
                }
                match answers.next().expect("one answer per live stream")? {
                    Some(chunk) => {
                        samples += chunk.samples.len();
                        chunks += 1;
                        if chunk.last {
                            *slot = queue.next().map(|r| engine.start(r.clone(), CancelToken::new())).transpose()?;
                        }
                    }
                    None => *slot = queue.next().map(|r| engine.start(r.clone(), CancelToken::new())).transpose()?,
                }
            }
        }
        Ok((samples, steps, chunks))
    };
    alone()?;
    together()?;
    let (mut alone_cpu, mut alone_wall, mut together_cpu, mut together_wall) = (0.0, 0.0, 0.0, 0.0);
    let (mut audio, mut steps, mut chunks) = (0, 0, 0);
    for _ in 0..rounds {
        let (c0, t0) = (thread_cpu_s(), Instant::now());
        let a = alone()?;
        alone_cpu += thread_cpu_s() - c0;
        alone_wall += t0.elapsed().as_secs_f64();
        let (c0, t0) = (thread_cpu_s(), Instant::now());
        let (b, s, c) = together()?;
        together_cpu += thread_cpu_s() - c0;
        together_wall += t0.elapsed().as_secs_f64();
        anyhow::ensure!(a == b, "the batched streams gave {b} samples, one at a time {a}");
        (audio, steps, chunks) = (audio + a, steps + s, chunks + c);
    }
    let audio_s = audio as f64 / rate;
    println!(
        "{}",
        serde_json::json!({
            "runtime": "voxline",
            "mode": "batched-streams",
            "batch": n,
            "max_batch": engine.max_batch(),
            "utterances": rounds * requests.iter().map(Vec::len).sum::<usize>(),
            "audio_s": audio_s,
            "chunks_per_step": chunks as f64 / steps.max(1) as f64,
            "alone_audio_s_per_cpu_s": audio_s / alone_cpu,
            "batched_audio_s_per_cpu_s": audio_s / together_cpu,
            "speedup_cpu": alone_cpu / together_cpu,
            "alone_audio_s_per_wall_s": audio_s / alone_wall,
            "batched_audio_s_per_wall_s": audio_s / together_wall,
            "speedup_wall": alone_wall / together_wall,
        })
    );
    Ok(())
}
