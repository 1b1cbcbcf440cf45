//! The Piper engine's batch (`Engine::next_chunks`) gives every stream the
//! chunks it would have got alone: streams of different texts, seeds,
//! lengths and presets advanced together (first, middle and ragged last
//! windows; streams finishing at different times) against independent
//! streams of the same requests advanced with `next_chunk`. Also: a
//! cancelled stream in a batch errors while the others go on; a
//! multi-speaker voice batches windows of different speakers.
//!
//! Measured on the CPU (en_US-joe-medium and the tiny multi-speaker
//! fixture): the batched chunks equal the lone ones bit for bit (max |diff|
//! 0, so no SNR to speak of): every convolution runs each batch item through
//! the same products as alone (`cpu_conv::conv1d`; the transposed ones item
//! by item, `layers::Conv`), and the rest is element-wise. So the bound
//! asserted, `MAX_DIFF`, is 0: a change that sums a batch in another order
//! (folding items into one product, a GPU backend) has to come here and
//! state its own.

mod common;

use common::*;
use voxline::synth::piper::StreamConfig;
use voxline::synth::{CancelToken, Engine, PcmChunk, Preset, SynthError, SynthOptions, SynthRequest, SynthStream};

/// Largest difference allowed between a batched and a lone sample (see above).
const MAX_DIFF: f32 = 0.0;


fn request(text: &str, seed: u64, preset: Option<Preset>, speaker: Option<&str>) -> SynthRequest {
    SynthRequest {
        text: text.into(),
        options: SynthOptions { seed: Some(seed), preset, speaker: speaker.map(Into::into), ..Default::default() },
    }
}

/// The chunks of `req` from a stream advanced alone.
fn alone(engine: &dyn Engine, req: SynthRequest) -> Vec<PcmChunk> {
    let mut stream = engine.start(req, CancelToken::new()).expect("start");
    let mut out = Vec::new();
    while let Some(c) = stream.next_chunk().expect("chunk") {
        out.push(c);
    }
    out
}

/// The chunks of each of `reqs`, the streams advanced together through
/// `next_chunks` until every one is done (finished streams stay in the batch
/// and answer `None`). Also the number of streams that emitted a middle
/// window (`middle_samples` long) at each step.
fn together(engine: &dyn Engine, reqs: &[SynthRequest], middle_samples: usize) -> (Vec<Vec<PcmChunk>>, Vec<usize>) {
    let mut streams: Vec<Box<dyn SynthStream>> =
        reqs.iter().map(|r| engine.start(r.clone(), CancelToken::new()).expect("start")).collect();
    let mut out: Vec<Vec<PcmChunk>> = vec![Vec::new(); reqs.len()];
    let mut done = vec![false; reqs.len()];
    let mut middles = Vec::new();
    while done.iter().any(|d| !d) {
        let mut batch: Vec<&mut dyn SynthStream> = streams.iter_mut().map(|s| &mut **s as &mut dyn SynthStream).collect();
        let answers = engine.next_chunks(&mut batch);
        assert_eq!(answers.len(), reqs.len());
        let mut middle = 0;
        for (i, a) in answers.into_iter().enumerate() {
            match a.unwrap_or_else(|e| panic!("stream {i}: {e}")) {
                Some(c) => {
                    assert!(!done[i], "stream {i} gave a chunk after it was done");
                    middle += usize::from(c.samples.len() == middle_samples);
                    out[i].push(c);
                }
                None => done[i] = true,
            }
        }
        middles.push(middle);
    }
    (out, middles)
}

/// Compares each stream's batched chunks with its lone ones; gives the max
/// |diff| and the lowest SNR (dB) over the streams (`inf` when identical).
fn compare(names: &[String], lone: &[Vec<PcmChunk>], batched: &[Vec<PcmChunk>]) -> (f32, f64) {
    let (mut worst_diff, mut worst_snr) = (0f32, f64::INFINITY);
    for ((name, a), b) in names.iter().zip(lone).zip(batched) {
        assert_eq!(a.len(), b.len(), "{name}: {} chunks alone, {} batched", a.len(), b.len());
        for (j, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x.samples.len(), y.samples.len(), "{name}, chunk {j}: sample count");
            assert_eq!(x.start_sample, y.start_sample, "{name}, chunk {j}: start");
            assert_eq!(x.sentence, y.sentence, "{name}, chunk {j}: sentence");
            assert_eq!(x.last, y.last, "{name}, chunk {j}: last");
            assert_eq!(x.sample_rate, y.sample_rate, "{name}, chunk {j}: rate");
            assert_eq!(x.alignments, y.alignments, "{name}, chunk {j}: alignments");
            let diff = max_abs_diff(&x.samples, &y.samples);
            assert!(diff <= MAX_DIFF, "{name}, chunk {j}: max |diff| {diff:e} > {MAX_DIFF:e}");
            worst_diff = worst_diff.max(diff);
        }
        let whole = |c: &[PcmChunk]| c.iter().flat_map(|c| c.samples.iter().copied()).collect::<Vec<f32>>();
        let (a, b) = (whole(a), whole(b));
        if a != b {
            worst_snr = worst_snr.min(snr_db(&a, &b));
        }
    }
    (worst_diff, worst_snr)
}

#[test]
fn batched_streams_match_streams_advanced_alone() {
    let engine = joe();
    let long = "Your appointment is confirmed for Tuesday at three thirty in the afternoon. \
                Please arrive ten minutes early, and bring your insurance card with you. Goodbye.";
    let cases: Vec<(&str, SynthRequest)> = vec![
        ("short", request("Hello.", 1, None, None)),
        ("long", request(long, 2, None, None)),
        // Same request twice: equal windows all the way, the ragged last
        // ones included, so those batch too.
        ("long again", request(long, 2, None, None)),
        ("long, other seed", request(long, 3, None, None)),
        ("medium", request("I can help you with that, please hold on for a moment.", 4, None, None)),
        ("two sentences", request("Is there anything else? Have a wonderful day.", 5, None, None)),
        // Other window sizes: batch among themselves, not with the others.
        ("realtime", request("The total comes to forty two dollars and fifteen cents.", 6, Some(Preset::Realtime), None)),
        ("fidelity", request("Could you please spell your last name for me?", 7, Some(Preset::Fidelity), None)),
    ];
    let names: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
    let reqs: Vec<SynthRequest> = cases.into_iter().map(|(_, r)| r).collect();
    let lone: Vec<Vec<PcmChunk>> = reqs.iter().map(|r| alone(engine, r.clone())).collect();
    let cfg = StreamConfig::default();
    let (batched, middles) = together(engine, &reqs, cfg.chunk_frames * 256);

    let counts: Vec<usize> = lone.iter().map(Vec::len).collect();
    eprintln!("chunks per stream: {:?}", names.iter().zip(&counts).collect::<Vec<_>>());
    eprintln!("streams emitting a middle window, per step: {middles:?}");
    // The streams do finish at different times, and several middle windows
    // share a step (so a decoder forward of batch > 1 ran).
    assert!(counts.iter().min() != counts.iter().max(), "all streams have {} chunks", counts[0]);
    assert!(middles.iter().any(|&m| m >= 3), "never three middle windows in one step: {middles:?}");

    let (diff, snr) = compare(&names, &lone, &batched);
    eprintln!("batched vs alone, {} streams: max |diff| {diff:e}, lowest SNR {snr:.1} dB", reqs.len());
}

#[test]
fn speakers_of_a_multi_speaker_voice_batch_together() {
    let engine = engine_for(&fixture("piper/tiny_medium_multispeaker.onnx"));
    let text = "Hello, this is voxline. It speaks in windows, and they overlap.";
    let cases: Vec<(String, SynthRequest)> = ["alice", "bob", "carol", "alice"]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{s} #{i}"), request(text, 10 + i as u64 % 2, None, Some(s))))
        .collect();
    let names: Vec<String> = cases.iter().map(|(n, _)| n.clone()).collect();
    let reqs: Vec<SynthRequest> = cases.into_iter().map(|(_, r)| r).collect();
    let lone: Vec<Vec<PcmChunk>> = reqs.iter().map(|r| alone(&engine, r.clone())).collect();
    let hop = 256;
    let (batched, middles) = together(&engine, &reqs, StreamConfig::default().chunk_frames * hop);
    eprintln!("streams emitting a middle window, per step: {middles:?}");
    let (diff, snr) = compare(&names, &lone, &batched);
    eprintln!("multi-speaker batched vs alone: max |diff| {diff:e}, lowest SNR {snr:.1} dB");
    // Speakers differ (so a shared `g` would have shown).
    let first = |c: &[PcmChunk]| c[0].samples.clone();
    assert_ne!(first(&lone[0]), first(&lone[1]), "alice and bob sound the same");
}

#[test]
fn a_cancelled_stream_errors_while_the_others_go_on() {
    let engine = joe();
    let texts = [
        "Thank you for calling, how can I help you today?",
        "Our office is open Monday through Friday, from nine to five.",
        "I have transferred your request to the billing department.",
    ];
    let reqs: Vec<SynthRequest> = texts.iter().enumerate().map(|(i, t)| request(t, 20 + i as u64, None, None)).collect();
    let lone: Vec<Vec<PcmChunk>> = reqs.iter().map(|r| alone(engine, r.clone())).collect();

    let cancels: Vec<CancelToken> = reqs.iter().map(|_| CancelToken::new()).collect();
    let mut streams: Vec<Box<dyn SynthStream>> =
        reqs.iter().zip(&cancels).map(|(r, c)| engine.start(r.clone(), c.clone()).expect("start")).collect();
    let mut got: Vec<Vec<PcmChunk>> = vec![Vec::new(); 3];
    let mut step = 0;
    loop {
        if step == 1 {
            cancels[1].cancel();
        }
        let mut batch: Vec<&mut dyn SynthStream> = streams.iter_mut().map(|s| &mut **s as &mut dyn SynthStream).collect();
        let answers = engine.next_chunks(&mut batch);
        let mut live = false;
        for (i, a) in answers.into_iter().enumerate() {
            match (i, step, a) {
                (1, 1, a) => assert!(matches!(a, Err(SynthError::Cancelled)), "step 1: the cancelled stream gave {a:?}"),
                (1, s, a) if s > 1 => assert!(matches!(a, Ok(None)), "step {s}: the cancelled stream gave {a:?}"),
                (i, s, Err(e)) => panic!("step {s}, stream {i}: {e}"),
                (i, _, Ok(Some(c))) => {
                    live = true;
                    got[i].push(c);
                }
                (_, _, Ok(None)) => {}
            }
        }
        step += 1;
        if !live {
            break;
        }
    }
    assert_eq!(got[1].len(), 1, "the cancelled stream gave its first chunk only");
    let names: Vec<String> = ["first", "second (cut)", "third"].map(String::from).to_vec();
    let cut = vec![lone[0].clone(), lone[1][..1].to_vec(), lone[2].clone()];
    compare(&names, &cut, &got);
}
