//! The Piper engine's stream behaves as a packetizer needs: it matches a
//! whole-sentence decode, its chunks tile the utterance, the first one comes
//! early, cancellation stops it, alignments are usable, and seeds and
//! speakers do what they say.
//!
//! The tests in this file take one lock so that they run one at a time: the
//! first-chunk timing is a ratio, but it should not be measured while another
//! test decodes beside it.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use voxline::synth::piper::StreamConfig;
use voxline::synth::{synthesize_all, AlignmentKind, CancelToken, Engine, PcmChunk, SynthError, SynthOptions, SynthRequest};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}


fn seeded(text: &str, seed: u64) -> SynthRequest {
    SynthRequest { text: text.into(), options: SynthOptions { seed: Some(seed), ..Default::default() } }
}

fn chunks(engine: &dyn Engine, req: SynthRequest) -> Vec<PcmChunk> {
    let mut stream = engine.start(req, CancelToken::new()).expect("start");
    let mut out = Vec::new();
    while let Some(c) = stream.next_chunk().expect("chunk") {
        out.push(c);
    }
    out
}

fn concat(chunks: &[PcmChunk]) -> Vec<f32> {
    chunks.iter().flat_map(|c| c.samples.iter().copied()).collect()
}

const SNR_TEXT: &str =
    "The quick brown fox jumps over the lazy dog, and then it runs far away. Nobody saw where it went.";

#[test]
fn streamed_decode_matches_whole_sentence_decode() {
    let _g = serial();
    let base = joe();
    let whole_engine = base.with_config(StreamConfig::whole_sentence()).unwrap();
    let seed = 42;
    let reference = concat(&chunks(&whole_engine, seeded(SNR_TEXT, seed)));
    assert!(reference.len() > 22050 * 3, "reference is only {} samples", reference.len());

    let windows = |first, chunk| StreamConfig { first_chunk_frames: first, chunk_frames: chunk };
    let configs: Vec<(&str, StreamConfig)> = vec![
        ("16/64 (default)", StreamConfig::default()),
        ("8/32 (realtime)", StreamConfig::realtime()),
        ("45/45", windows(45, 45)),
        ("3/2", windows(3, 2)),
        ("1/1", windows(1, 1)),
    ];
    let mut table = Vec::new();
    for (name, cfg) in configs {
        let engine = base.with_config(cfg).unwrap();
        let streamed = chunks(&engine, seeded(SNR_TEXT, seed));
        let audio = concat(&streamed);
        assert_eq!(audio.len(), reference.len(), "{name}: length differs from the whole-sentence decode");
        let snr = snr_db(&reference, &audio);
        let diff = max_abs_diff(&reference, &audio);
        table.push((name, cfg, streamed.len(), snr, diff));
    }
    eprintln!("streamed vs whole-sentence decode, {} samples, seed {seed}:", reference.len());
    eprintln!("  {:<24} {:>6} {:>9} {:>10}", "first/chunk frames", "chunks", "SNR dB", "max|diff|");
    for (name, _, n, snr, diff) in &table {
        eprintln!("  {name:<24} {n:>6} {snr:>9.1} {diff:>10.2e}");
    }
    // Every activation is computed once whatever the windows: the stream
    // differs from the whole only by float rounding (see
    // tests/piper_streaming_cache.rs; 16/64: 3e-7, 139 dB; 1/1: 3.6e-6).
    for (name, _, _, snr, diff) in &table {
        assert!(*diff <= 1e-5 && *snr >= 100.0, "{name}: SNR {snr:.1} dB, max |diff| {diff:e}");
    }
}

#[test]
fn chunks_tile_the_utterance() {
    let _g = serial();
    let text = "Hello there. How are you doing today? I am fine, thank you very much for asking.";
    let cs = chunks(joe(), seeded(text, 3));
    assert!(cs.len() > 3, "only {} chunks", cs.len());
    let mut pos = 0u64;
    for (i, c) in cs.iter().enumerate() {
        assert_eq!(c.sample_rate, 22050, "chunk {i}: sample rate");
        assert!(!c.samples.is_empty(), "chunk {i} is empty");
        assert_eq!(c.start_sample, pos, "chunk {i} does not start where chunk {} ended", i.wrapping_sub(1));
        assert_eq!(c.last, i + 1 == cs.len(), "chunk {i} of {}: last = {}", cs.len(), c.last);
        assert!(c.samples.iter().all(|x| x.is_finite() && x.abs() <= 1.0), "chunk {i}: samples outside [-1, 1]");
        let end = c.start_sample + c.samples.len() as u64;
        for a in &c.alignments {
            assert!(
                a.start_sample >= c.start_sample && a.start_sample < end,
                "chunk {i} [{}, {end}) carries {:?} `{}` starting at {}",
                c.start_sample,
                a.kind,
                a.text,
                a.start_sample
            );
        }
        if i > 0 {
            assert!(c.sentence >= cs[i - 1].sentence, "sentence index went back at chunk {i}");
            assert!(c.ready_at >= cs[i - 1].ready_at);
        }
        pos = end;
    }
    assert_eq!(cs.iter().filter(|c| c.last).count(), 1, "exactly one last chunk");
    assert_eq!(cs[0].sentence, 0);
    let mut sentences: Vec<usize> = cs.iter().map(|c| c.sentence).collect();
    sentences.dedup();
    assert!(sentences.len() > 1, "three sentences gave sentence indices {sentences:?}");
    assert_eq!(sentences, (0..sentences.len()).collect::<Vec<_>>(), "sentence indices skip");
    eprintln!("{} chunks, {} sentences, {:.2} s", cs.len(), sentences.len(), pos as f64 / 22050.0);

    // A stream that has ended stays ended.
    let mut s = joe().start(seeded("Done.", 1), CancelToken::new()).unwrap();
    while s.next_chunk().unwrap().is_some() {}
    assert!(s.next_chunk().unwrap().is_none());
    assert!(s.next_chunk().unwrap().is_none());
}

#[test]
fn first_chunk_arrives_well_before_the_whole() {
    // A ratio, not a time budget; the median of three runs, since the machine
    // may be shared.
    let _g = serial();
    let engine = joe();
    synthesize_all(engine, seeded("Warm up.", 1)).unwrap();
    let text = "On a bright and windy morning the old fisherman walked slowly down to the harbor to check on his boats";
    let mut ratios = Vec::new();
    for run in 0..3 {
        let t0 = Instant::now();
        let mut stream = engine.start(seeded(text, 5), CancelToken::new()).unwrap();
        let mut first = None;
        let mut samples = 0usize;
        let mut sentences = std::collections::BTreeSet::new();
        while let Some(c) = stream.next_chunk().unwrap() {
            first.get_or_insert_with(|| t0.elapsed());
            samples += c.samples.len();
            sentences.insert(c.sentence);
        }
        let total = t0.elapsed();
        let first = first.unwrap();
        let audio_s = samples as f64 / 22050.0;
        let ratio = first.as_secs_f64() / total.as_secs_f64();
        eprintln!(
            "run {run}: {audio_s:.2} s of audio in {} sentence(s): first chunk {first:?}, all {total:?} \
             (ratio {ratio:.3}, RTF {:.3})",
            sentences.len(),
            total.as_secs_f64() / audio_s
        );
        assert!(sentences.len() == 1, "the text should be one sentence");
        assert!(audio_s > 3.0, "the sentence is only {audio_s:.2} s long; the test needs ~4 s");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[1];
    assert!(median < 1.0 / 3.0, "time to first chunk / total time: median {median:.3} of {ratios:?}");
}

#[test]
fn cancellation_stops_the_stream() {
    let _g = serial();
    let engine = joe();
    let text = "This sentence is long enough to need several chunks of audio. And here is a second sentence.";

    // Cancel after the first chunk.
    let cancel = CancelToken::new();
    let mut stream = engine.start(seeded(text, 9), cancel.clone()).unwrap();
    let first = stream.next_chunk().unwrap().expect("first chunk");
    assert!(!first.last);
    cancel.cancel();
    assert!(cancel.is_cancelled());
    let t0 = Instant::now();
    let r = stream.next_chunk();
    let took = t0.elapsed();
    assert!(matches!(r, Err(SynthError::Cancelled) | Ok(None)), "after cancel: {:?}", r.map(|c| c.map(|c| c.start_sample)));
    assert!(took < Duration::from_millis(250), "cancel took {took:?} to take effect");
    for _ in 0..3 {
        match stream.next_chunk() {
            Ok(None) | Err(SynthError::Cancelled) => {}
            Ok(Some(c)) => panic!("a chunk at {} after the stream was cancelled", c.start_sample),
            Err(e) => panic!("after cancel: {e:?}"),
        }
    }

    // A token cancelled before the first chunk: no audio at all.
    let cancel = CancelToken::new();
    cancel.cancel();
    match engine.start(seeded(text, 9), cancel) {
        Err(SynthError::Cancelled) => {}
        Err(e) => panic!("pre-cancelled start: {e:?}"),
        Ok(mut s) => match s.next_chunk() {
            Err(SynthError::Cancelled) | Ok(None) => {}
            Ok(Some(_)) => panic!("a chunk from a pre-cancelled request"),
            Err(e) => panic!("pre-cancelled: {e:?}"),
        },
    }

    // Cancel from another thread while a consumer pulls.
    let cancel = CancelToken::new();
    let mut stream = engine.start(seeded(text, 9), cancel.clone()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let puller = std::thread::spawn(move || {
        let mut n = 0;
        loop {
            match stream.next_chunk() {
                Ok(Some(_)) => {
                    n += 1;
                    let _ = tx.send(n);
                    // Give the main thread time to cancel before the next pull.
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => return (n, false),
                Err(SynthError::Cancelled) => return (n, true),
                Err(e) => panic!("{e:?}"),
            }
        }
    });
    rx.recv().unwrap();
    cancel.cancel();
    let (n, cancelled) = puller.join().unwrap();
    assert!(cancelled && n <= 2, "the stream went on for {n} chunks after cancel (cancelled: {cancelled})");

    // Dropping a stream mid-way is fine.
    let mut stream = engine.start(seeded(text, 9), CancelToken::new()).unwrap();
    stream.next_chunk().unwrap().unwrap();
    drop(stream);

    // And the engine takes new requests, with the same output as before.
    let a = synthesize_all(engine, seeded(text, 9)).unwrap();
    let b = synthesize_all(engine, seeded(text, 9)).unwrap();
    assert!(a.len() > 22050);
    assert_eq!(a, b);
    assert_eq!(&a[..first.samples.len()], &first.samples[..], "the cancelled stream's first chunk differs");
}

#[test]
fn word_and_phoneme_alignments() {
    let _g = serial();
    let cs = chunks(joe(), seeded("Hello world, this is a test.", 7));
    let total: u64 = cs.iter().map(|c| c.samples.len() as u64).sum();
    let all: Vec<_> = cs.iter().flat_map(|c| c.alignments.iter().cloned()).collect();
    let words: Vec<_> = all.iter().filter(|a| a.kind == AlignmentKind::Word).collect();
    let phonemes: Vec<_> = all.iter().filter(|a| a.kind == AlignmentKind::Phoneme).collect();
    for w in &words {
        eprintln!(
            "  {:<8} {:>6}..{:<6} {:>4.0} ms",
            w.text,
            w.start_sample,
            w.end_sample,
            (w.end_sample - w.start_sample) as f64 / 22.05
        );
    }
    let texts: Vec<String> = words
        .iter()
        .map(|w| w.text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect())
        .collect();
    assert_eq!(texts, ["hello", "world", "this", "is", "a", "test"], "word texts: {:?}", words);

    let mut prev_end = 0;
    for w in &words {
        assert!(w.start_sample < w.end_sample, "{w:?}: empty span");
        assert!(w.end_sample <= total, "{w:?} ends after the utterance ({total} samples)");
        assert!(w.start_sample >= prev_end, "{w:?} overlaps the previous word (ends {prev_end})");
        prev_end = w.end_sample;
        let ms = (w.end_sample - w.start_sample) as f64 * 1000.0 / 22050.0;
        assert!((40.0..=1500.0).contains(&ms), "{w:?}: implausible duration {ms:.0} ms");
    }

    assert!(phonemes.len() >= 15, "only {} phonemes", phonemes.len());
    let mut prev_end = 0;
    for p in &phonemes {
        assert!(p.start_sample < p.end_sample, "{p:?}: empty span");
        assert!(p.start_sample >= prev_end, "{p:?} starts before the previous phoneme ends ({prev_end})");
        assert!(p.end_sample <= total, "{p:?} ends after the utterance ({total} samples)");
        assert_eq!(p.text.chars().count(), 1, "{p:?}: one code point per phoneme");
        prev_end = p.end_sample;
    }
    // Every word spans at least one phoneme that starts inside it.
    for w in &words {
        assert!(
            phonemes.iter().any(|p| p.start_sample >= w.start_sample && p.start_sample < w.end_sample),
            "{w:?} holds no phoneme"
        );
    }
    let ipa: String = phonemes.iter().map(|p| p.text.as_str()).collect();
    eprintln!("  phonemes: {ipa}");
}

#[test]
fn seeds_make_output_reproducible() {
    let _g = serial();
    let engine = joe();
    let text = "Reproducible speech, please.";
    let a = synthesize_all(engine, seeded(text, 11)).unwrap();
    let b = synthesize_all(engine, seeded(text, 11)).unwrap();
    let c = synthesize_all(engine, seeded(text, 12)).unwrap();
    assert_eq!(a, b, "the same seed gave different samples");
    assert!(a.len() != c.len() || a != c, "seeds 11 and 12 gave identical samples");
    if a.len() == c.len() {
        eprintln!("seeds 11 vs 12: same length, SNR {:.1} dB", snr_db(&a, &c));
    } else {
        eprintln!("seeds 11 vs 12: {} vs {} samples", a.len(), c.len());
    }
}

#[test]
fn speakers_of_a_multi_speaker_voice_differ() {
    let _g = serial();
    let engine = engine_for(&fixture("piper/tiny_medium_multispeaker.onnx"));
    assert_eq!(engine.info().speakers, ["alice", "bob", "carol"]);
    let say = |speaker: &str| {
        let req = SynthRequest {
            text: "Hello, this is voxline.".into(),
            options: SynthOptions { speaker: Some(speaker.into()), seed: Some(4), ..Default::default() },
        };
        synthesize_all(&engine, req).unwrap_or_else(|e| panic!("speaker {speaker}: {e}"))
    };
    let s0 = say("0");
    let s2 = say("2");
    assert!(!s0.is_empty() && !s2.is_empty());
    assert!(s0.len() != s2.len() || s0 != s2, "speakers 0 and 2 gave identical audio");
    if s0.len() == s2.len() {
        let snr = snr_db(&s0, &s2);
        eprintln!("speaker 0 vs 2: same length, SNR {snr:.1} dB");
        assert!(snr < 20.0, "speakers 0 and 2 are nearly the same (SNR {snr:.1} dB)");
    } else {
        eprintln!("speaker 0 vs 2: {} vs {} samples", s0.len(), s2.len());
    }
    // Names resolve to the same speakers as their ids.
    assert_eq!(say("alice"), s0);
    assert_eq!(say("carol"), s2);
}

/// Time to the first chunk of `text` (request start to first chunk).
fn time_to_first_chunk(engine: &dyn Engine, text: &str) -> Duration {
    let t0 = Instant::now();
    let mut stream = engine.start(seeded(text, 1), CancelToken::new()).unwrap();
    stream.next_chunk().unwrap().expect("a first chunk");
    t0.elapsed()
}

#[test]
fn unpunctuated_text_starts_about_as_early_as_punctuated_text() {
    // An agent's LLM may stream long text without sentence punctuation. The
    // first audio must not wait for a whole punctuation-free run to go through
    // the text encoder. Compared as a ratio with the same amount of text
    // written in sentences; 10x is generous.
    let _g = serial();
    let engine = joe();
    synthesize_all(engine, seeded("Warm up.", 1)).unwrap();
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
    let mut plain = String::new();
    let mut i = 0;
    while plain.len() < 3_000 {
        plain.push_str(words[i % words.len()]);
        plain.push(' ');
        i += 1;
    }
    let sentence = "The weather today is mild with a light breeze from the west. ";
    let punctuated = sentence.repeat(3_000 / sentence.len() + 1);
    let with = time_to_first_chunk(engine, &punctuated);
    let without = time_to_first_chunk(engine, plain.trim_end());
    let ratio = without.as_secs_f64() / with.as_secs_f64();
    let first_sentence = engine.sentence_ids(plain.trim_end()).unwrap().into_iter().next().unwrap();
    eprintln!(
        "first chunk of 3,000 chars: {with:?} in sentences, {without:?} without punctuation ({ratio:.1}x); \
         the unpunctuated first 'sentence' is {} chars, {} phoneme ids",
        first_sentence.0.text.chars().count(),
        first_sentence.1.ids.len()
    );
    assert!(ratio < 10.0, "without punctuation the first chunk takes {ratio:.1}x longer ({without:?} vs {with:?})");
}
