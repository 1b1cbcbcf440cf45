//! Two Piper streams synthesized at once on two threads, as a server's two
//! synthesis workers run them: CPU time and page faults per thread, and the
//! first-chunk time. With `glibc-defaults` the allocator keeps glibc's own
//! thresholds instead of `voxline::synth::heap::keep_freed_buffers`, which
//! `voxline` sets at start-up; the two runs side by side are the figure in
//! BENCHMARKS.md ("Synthesis workers and the allocator").
//!
//! ```text
//! cargo run --release --example piper_two_workers -- [glibc-defaults]
//! ```
//! Needs the default voice in `models/` (`voxline fetch-voice`). Each thread
//! speaks the six sentences below four times (each in turn, the threads a
//! sentence apart); the first round is a warm-up for the first-chunk times.

use std::sync::Arc;
use std::time::Instant;

use voxline::synth::piper::{PiperEngine, PiperVoice, StreamConfig};
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest};
use voxline::text::EspeakPhonemizer;

#[path = "common/texts.rs"]
mod texts;
use texts::TEXTS;

/// CPU seconds and minor page faults of the calling thread so far.
fn usage() -> (f64, i64) {
    // SAFETY: getrusage writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_minflt)
}

fn main() {
    let defaults = std::env::args().any(|a| a == "glibc-defaults");
    if !defaults {
        voxline::synth::heap::keep_freed_buffers();
    }
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let models = std::env::var("VOXLINE_MODELS").unwrap_or_else(|_| "models".into());
    let path = std::path::Path::new(&models).join("en_US-joe-medium.onnx");
    let voice = PiperVoice::load(&path, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("{}: {e} (run `voxline fetch-voice`)", path.display()));
    let phonemizer = Arc::new(EspeakPhonemizer::new().expect("espeak-ng"));
    let engine = Arc::new(PiperEngine::new(voice, phonemizer, StreamConfig::default()).expect("engine"));
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut firsts = Vec::new();
                let (cpu0, faults0) = usage();
                for round in 0..4 {
                    for i in 0..TEXTS.len() {
                        let text = TEXTS[(i + k) % TEXTS.len()].to_string();
                        let t0 = Instant::now();
                        let mut stream = engine.start(SynthRequest { text, options: SynthOptions::default() }, CancelToken::new()).expect("start");
                        stream.next_chunk().expect("first chunk");
                        if round > 0 {
                            firsts.push(t0.elapsed().as_secs_f64() * 1e3);
                        }
                        while stream.next_chunk().expect("chunk").is_some() {}
                    }
                }
                let (cpu1, faults1) = usage();
                firsts.sort_by(f64::total_cmp);
                (cpu1 - cpu0, faults1 - faults0, firsts[firsts.len() / 2])
            })
        })
        .collect();
    for (k, t) in threads.into_iter().enumerate() {
        let (cpu, faults, first) = t.join().expect("worker");
        println!(
            "{{\"allocator\": \"{}\", \"thread\": {k}, \"cpu_s\": {cpu:.3}, \"page_faults\": {faults}, \"first_chunk_ms_p50\": {first:.1}}}",
            if defaults { "glibc defaults" } else { "keep_freed_buffers" }
        );
    }
}
