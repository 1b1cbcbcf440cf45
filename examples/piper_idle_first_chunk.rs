//! A sentence's first chunk after the synthesis thread sat idle: how long a
//! turn-taking call's next turn waits for the engine, by how long the engine
//! slept before it (0, 1 and 3 s), first on the 4 KiB pages the process gets
//! by default, then after `voxline::synth::huge_pages::advise` (what
//! `voxline serve` does once warmed up). Prints one JSON line per page size
//! and idle time with the median and the worst first chunk, and the
//! process's anonymous huge pages.
//!
//! ```text
//! cargo run --release --example piper_idle_first_chunk
//! ```
//! Needs the default voice in `models/` (`voxline fetch-voice`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use voxline::synth::piper::{PiperEngine, PiperVoice, StreamConfig};
use voxline::synth::{CancelToken, Engine, SynthOptions, SynthRequest};
use voxline::text::EspeakPhonemizer;

#[path = "common/texts.rs"]
mod texts;
use texts::TEXTS;

fn main() {
    voxline::synth::heap::keep_freed_buffers();
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let models = std::env::var("VOXLINE_MODELS").unwrap_or_else(|_| "models".into());
    let path = std::path::Path::new(&models).join("en_US-joe-medium.onnx");
    let voice = PiperVoice::load(&path, &candle_core::Device::Cpu).unwrap_or_else(|e| panic!("{}: {e} (run `voxline fetch-voice`)", path.display()));
    let phonemizer = Arc::new(EspeakPhonemizer::new().expect("espeak-ng"));
    let engine = Arc::new(PiperEngine::new(voice, phonemizer, StreamConfig::default()).expect("engine"));
    let speak = |text: &str| -> f64 {
        let t0 = Instant::now();
        let mut stream = engine.start(SynthRequest { text: text.into(), options: SynthOptions::default() }, CancelToken::new()).expect("start");
        stream.next_chunk().expect("first chunk");
        let first = t0.elapsed().as_secs_f64() * 1e3;
        while stream.next_chunk().expect("chunk").is_some() {}
        first
    };
    for text in TEXTS {
        speak(text);
    }
    for pages in ["4k", "huge"] {
        if pages == "huge" {
            voxline::synth::huge_pages::advise().expect("advising huge pages");
        }
        for idle in [0u64, 1000, 3000] {
            let mut firsts: Vec<f64> = Vec::new();
            for round in 0..2 {
                for text in TEXTS {
                    std::thread::sleep(Duration::from_millis(idle));
                    let first = speak(text);
                    if round > 0 || idle > 0 {
                        firsts.push(first);
                    }
                }
            }
            firsts.sort_by(f64::total_cmp);
            println!(
            "{{\"pages\": \"{pages}\", \"idle_ms\": {idle}, \"first_chunk_ms_p50\": {:.1}, \"first_chunk_ms_max\": {:.1}, \"anon_huge_kib\": {}}}",
            firsts[firsts.len() / 2],
            firsts[firsts.len() - 1],
            voxline::synth::huge_pages::huge_kib()
        );
        }
    }
}
