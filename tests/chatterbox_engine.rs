//! `ChatterboxEngine` on a tiny checkpoint directory assembled from the
//! fixtures (tests/fixtures/chatterbox: the tokenizer files, the reduced T3
//! weights, the built-in voice file), with a stand-in renderer that turns each
//! speech token into 960 samples of a value that identifies it. The T3 side is
//! proven against the reference in chatterbox_parity_t3.rs; this checks the
//! plumbing: text normalisation and tokens in, chunking, the silence tail,
//! seeds, cancellation and errors.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use common::fixture;
use voxline::synth::chatterbox::{
    punc_norm, ChatterboxEngine, ChatterboxError, EngineConfig, GenerateParams, RenderStream, SamplingParams,
    SpeechRenderer, T3Cond, T3Config, TextTokenizer, WholeUtterance, T3,
};
use voxline::synth::{synthesize_all, CancelToken, Engine, SynthError, SynthOptions, SynthRequest};

const SAMPLES_PER_TOKEN: usize = 960; // 24 kHz / 25 Hz

fn token_audio(tokens: &[u32]) -> Vec<f32> {
    tokens.iter().flat_map(|&t| std::iter::repeat_n(t as f32 / 6561.0, SAMPLES_PER_TOKEN)).collect()
}

/// Renders each pushed token at once, and logs the pushes.
struct Immediate(Arc<Mutex<Vec<Vec<u32>>>>);
struct ImmediateStream(Arc<Mutex<Vec<Vec<u32>>>>);

impl SpeechRenderer for Immediate {
    fn sample_rate(&self) -> u32 {
        24_000
    }
    fn start(&self, _seed: u64) -> Result<Box<dyn RenderStream>, ChatterboxError> {
        Ok(Box::new(ImmediateStream(self.0.clone())))
    }
}

impl RenderStream for ImmediateStream {
    fn push(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ChatterboxError> {
        self.0.lock().unwrap().push(tokens.to_vec());
        Ok(token_audio(tokens))
    }
    fn finish(&mut self) -> Result<Vec<f32>, ChatterboxError> {
        Ok(Vec::new())
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// A checkpoint directory in the layout of ResembleAI/chatterbox-turbo.
fn checkpoint_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("voxline-chatterbox-engine-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("chatterbox/tokenizer").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(fixture("chatterbox/t3/weights.safetensors"), dir.join("t3_turbo_v1.safetensors")).unwrap();
    std::fs::copy(fixture("chatterbox/t3/conds.pt"), dir.join("conds.pt")).unwrap();
    dir
}

fn tiny_config() -> T3Config {
    serde_json::from_str(&std::fs::read_to_string(fixture("chatterbox/t3/config.json")).unwrap()).unwrap()
}

fn greedy() -> EngineConfig {
    let sampling = SamplingParams { top_k: 1, ..SamplingParams::default() };
    EngineConfig { generate: GenerateParams { sampling, max_gen_len: 30, seed: 0 }, chunk_tokens: 8, ..Default::default() }
}

fn engine(renderer: Arc<dyn SpeechRenderer>, config: EngineConfig) -> ChatterboxEngine {
    let dir = checkpoint_dir();
    let t3 = tiny_config();
    let engine =
        ChatterboxEngine::load_with(&dir, "chatterbox-test", "t3_turbo_v1.safetensors", &t3, renderer, &Device::Cpu, config)
            .expect("load engine");
    std::fs::remove_dir_all(&dir).unwrap(); // mapped weights stay readable
    engine
}

const TEXT: &str = "hello there [laugh] how are you";

/// What T3 alone generates for `TEXT` with the built-in voice.
fn expected_tokens(params: &GenerateParams) -> Vec<u32> {
    let dir = checkpoint_dir();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("t3_turbo_v1.safetensors")],
            candle_core::DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let t3 = T3::load(vb, &tiny_config()).unwrap();
    let voice = T3Cond::from_pth(&dir.join("conds.pt"), &Device::Cpu).unwrap();
    let ids = tok.encode(&punc_norm(TEXT)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let s3 = t3.config().s3_vocab();
    let mut tokens: Vec<u32> = t3.generate(&voice, &ids, params).unwrap().into_iter().filter(|&t| t < s3).collect();
    tokens.extend([4299; 3]);
    tokens
}

#[test]
fn streams_t3_tokens_through_the_renderer_in_chunks() {
    let pushes = Arc::new(Mutex::new(Vec::new()));
    let config = greedy();
    let e = engine(Arc::new(Immediate(pushes.clone())), config.clone());
    assert_eq!(e.info().engine, "chatterbox-test");
    assert_eq!(e.info().sample_rate, 24_000);

    let mut stream = e.start(SynthRequest::new(TEXT), CancelToken::new()).unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = stream.next_chunk().unwrap() {
        chunks.push(c);
    }
    let want = expected_tokens(&config.generate);
    let audio: Vec<f32> = chunks.iter().flat_map(|c| c.samples.clone()).collect();
    assert_eq!(audio, token_audio(&want), "the renderer saw T3's tokens, then three silence tokens");
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(chunks.iter().rev().skip(1).all(|c| !c.last) && chunks.last().unwrap().last);
    let mut offset = 0;
    for c in &chunks {
        assert_eq!(c.start_sample, offset);
        offset += c.samples.len() as u64;
    }
    let pushes = pushes.lock().unwrap();
    assert!(pushes[..pushes.len() - 1].iter().all(|p| p.len() == config.chunk_tokens), "{pushes:?}");
}

#[test]
fn whole_utterance_renderer_gets_the_reference_sequence_once() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let renderer = WholeUtterance::new(24_000, move |tokens, seed| {
        log.lock().unwrap().push((tokens.to_vec(), seed));
        Ok(token_audio(tokens))
    });
    let config = greedy();
    let e = engine(Arc::new(renderer), config.clone());
    let request = seeded(TEXT, 5);
    let audio = synthesize_all(&e, request).unwrap();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0], (expected_tokens(&config.generate), 5));
    assert_eq!(audio, token_audio(&calls[0].0));
}

/// An engine that samples (the reference's defaults) with the immediate renderer.
fn sampling(max_gen_len: usize, chunk_tokens: usize) -> ChatterboxEngine {
    let generate = GenerateParams { max_gen_len, ..GenerateParams::default() };
    engine(Arc::new(Immediate(Default::default())), EngineConfig { generate, chunk_tokens, ..Default::default() })
}

fn seeded(text: &str, seed: u64) -> SynthRequest {
    SynthRequest { text: text.into(), options: SynthOptions { seed: Some(seed), ..Default::default() } }
}

#[test]
fn a_seed_reproduces_sampled_speech() {
    let e = sampling(20, 5);
    let run = |seed| synthesize_all(&e, seeded(TEXT, seed)).unwrap();
    let a = run(1);
    assert_eq!(a, run(1));
    assert_ne!(a, run(2));
}

#[test]
fn cancel_stops_between_chunks() {
    let e = engine(Arc::new(Immediate(Default::default())), greedy());
    let cancel = CancelToken::new();
    let mut stream = e.start(SynthRequest::new(TEXT), cancel.clone()).unwrap();
    assert!(stream.next_chunk().unwrap().is_some());
    cancel.cancel();
    assert!(matches!(stream.next_chunk(), Err(SynthError::Cancelled)));
    assert!(stream.next_chunk().unwrap().is_none());
}

#[test]
fn bad_requests_and_files_are_reported() {
    let e = engine(Arc::new(Immediate(Default::default())), greedy());
    assert!(matches!(e.start(SynthRequest::new("  \n"), CancelToken::new()), Err(SynthError::EmptyText)));
    let with = |options| SynthRequest { text: "hi".into(), options };
    let err = e.start(with(SynthOptions { speaker: Some("2".into()), ..Default::default() }), CancelToken::new());
    assert!(err.err().unwrap().to_string().contains("built-in voice"));
    let err = e.start(with(SynthOptions { length_scale: Some(1.2), ..Default::default() }), CancelToken::new());
    assert!(err.err().unwrap().to_string().contains("Piper options"));

    let dir = checkpoint_dir();
    std::fs::remove_file(dir.join("conds.pt")).unwrap();
    let renderer: Arc<dyn SpeechRenderer> = Arc::new(Immediate(Default::default()));
    let t3 = tiny_config();
    let err = ChatterboxEngine::load_with(&dir, "x", "t3_turbo_v1.safetensors", &t3, renderer.clone(), &Device::Cpu, greedy())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("conds.pt") && err.contains("built-in voice") && err.contains("--model-dir"), "{err}");
    let err = ChatterboxEngine::load(&dir.join("nope"), voxline::synth::chatterbox::Variant::Nano, renderer, &Device::Cpu, greedy())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model directory"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Streams run together through `next_chunks` (T3's decoding steps batched
/// across them) hear what each hears alone: the same chunks, token for token
/// (the batched step's logits are within 1e-5 of one stream's, the gpt2 unit
/// test's bound, far from moving a sampled draw), however the streams start
/// and finish at different moments.
#[test]
fn streams_batched_together_speak_as_each_does_alone() {
    let e = sampling(40, 6);
    assert!(e.max_batch() > 1, "Chatterbox batches its decoding steps");
    let requests = [(TEXT, 1), ("a short one", 2), ("hello there, how are you doing today?", 3), (TEXT, 4)];
    let start = |(text, seed): (&str, u64)| e.start(seeded(text, seed), CancelToken::new()).unwrap();
    let alone: Vec<Vec<(Vec<f32>, u64, bool)>> = requests
        .iter()
        .map(|&r| {
            let mut stream = start(r);
            let mut chunks = Vec::new();
            while let Some(c) = stream.next_chunk().unwrap() {
                chunks.push((c.samples, c.start_sample, c.last));
            }
            chunks
        })
        .collect();
    assert!(alone.iter().all(|c| c.len() >= 2), "every utterance has several chunks");

    // Together: the fourth stream joins after two rounds, so the batch's
    // members are at different positions in their sequences.
    let mut streams: Vec<Box<dyn voxline::synth::SynthStream>> = requests[..3].iter().map(|&r| start(r)).collect();
    let mut together: Vec<Vec<(Vec<f32>, u64, bool)>> = vec![Vec::new(); requests.len()];
    let mut live: Vec<usize> = (0..3).collect();
    let mut rounds = 0;
    while !live.is_empty() {
        if rounds == 2 {
            streams.push(start(requests[3]));
            live.push(3);
        }
        rounds += 1;
        let mut batch: Vec<&mut dyn voxline::synth::SynthStream> = Vec::new();
        for (i, s) in streams.iter_mut().enumerate() {
            if live.contains(&i) {
                batch.push(s.as_mut());
            }
        }
        let answers = e.next_chunks(&mut batch);
        let mut still = Vec::new();
        for (&i, answer) in live.iter().zip(answers) {
            if let Some(c) = answer.unwrap() {
                together[i].push((c.samples, c.start_sample, c.last));
                still.push(i);
            }
        }
        live = still;
        assert!(rounds < 100, "the batch never finished");
    }
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "stream {i}: batched chunks differ from the stream alone");
    }
}

/// A stream cancelled while it is batched with others ends with `Cancelled`;
/// the others go on to their normal ends.
#[test]
fn a_cancelled_stream_leaves_its_batch() {
    let e = engine(Arc::new(Immediate(Default::default())), greedy());
    let cancel = CancelToken::new();
    let mut a = e.start(SynthRequest::new(TEXT), cancel.clone()).unwrap();
    let mut b = e.start(SynthRequest::new(TEXT), CancelToken::new()).unwrap();
    let first = e.next_chunks(&mut [a.as_mut(), b.as_mut()]);
    assert!(first.iter().all(|r| matches!(r, Ok(Some(_)))));
    cancel.cancel();
    let second = e.next_chunks(&mut [a.as_mut(), b.as_mut()]);
    assert!(matches!(second[0], Err(SynthError::Cancelled)), "{:?}", second[0].as_ref().err());
    assert!(matches!(second[1], Ok(Some(_))));
    let mut rest = vec![first.into_iter().nth(1).unwrap().unwrap().unwrap().samples, second.into_iter().nth(1).unwrap().unwrap().unwrap().samples];
    while let Some(c) = b.next_chunk().unwrap() {
        rest.push(c.samples);
    }
    assert_eq!(rest.concat(), token_audio(&expected_tokens(&greedy().generate)), "the other stream spoke its whole utterance");
}
