//! Bad input never panics: every case below comes back as an error the caller
//! can act on (the right variant, a message that says what is wrong and what
//! to do), and the engine that refused a request still speaks the next one.
//!
//! * engine level: empty, blank, punctuation-only and emoji-only text; junk
//!   characters mixed into a sentence; over-long and long-but-allowed text;
//!   out-of-range scales; unknown speakers;
//! * loading: damaged, empty and foreign model files, missing or broken
//!   configs, configs that do not fit their model;
//! * the CLI: one `voxline: error: ...` line and a non-zero exit, no panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::harness::OutputWithin;
use common::*;
use rand::{RngCore, SeedableRng};
use voxline::synth::piper::StreamConfig;
use voxline::synth::{
    synthesize_all, AlignmentKind, CancelToken, Engine, PiperEngine, PiperError, PiperVoice, SynthError,
    SynthOptions, SynthRequest, MAX_REQUEST_CHARS,
};
use voxline::text::EspeakPhonemizer;

// ---------------------------------------------------------------- helpers


fn tiny_multi_path() -> PathBuf {
    fixture("piper/tiny_medium_multispeaker.onnx")
}

/// The three-speaker tiny voice (alice, bob, carol), loaded once.
fn tiny_multi() -> &'static PiperEngine {
    static E: OnceLock<PiperEngine> = OnceLock::new();
    E.get_or_init(|| engine_for(&tiny_multi_path()))
}

fn request(text: &str) -> SynthRequest {
    SynthRequest { text: text.into(), options: SynthOptions { seed: Some(1), ..Default::default() } }
}

fn with_options(text: &str, options: SynthOptions) -> SynthRequest {
    SynthRequest { text: text.into(), options }
}

/// The error `start` must give; panics (with what came back) if it accepts.
fn start_err(engine: &dyn Engine, req: SynthRequest) -> SynthError {
    let shown = format!("{:?} {:?}", req.text.chars().take(60).collect::<String>(), req.options);
    match engine.start(req, CancelToken::new()) {
        Err(e) => e,
        Ok(mut stream) => {
            // Say what the engine made of it, to make the failure useful.
            let mut samples = 0usize;
            let mut words = Vec::new();
            let mut err = None;
            loop {
                match stream.next_chunk() {
                    Ok(Some(c)) => {
                        samples += c.samples.len();
                        words.extend(c.alignments.iter().filter(|a| a.kind == AlignmentKind::Word).map(|a| a.text.clone()));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e.to_string());
                        break;
                    }
                }
            }
            panic!(
                "start({shown}) was accepted; expected an error. The stream gave {samples} samples \
                 ({:.2} s), words {words:?}, stream error {err:?}",
                samples as f64 / 22050.0
            )
        }
    }
}

/// The engine still speaks a normal sentence after a refusal.
fn still_works(engine: &dyn Engine) {
    let audio = synthesize_all(engine, request("This still works.")).expect("a normal sentence after a failure");
    assert!(audio.len() > 2205, "only {} samples for a normal sentence", audio.len());
    assert!(audio.iter().all(|x| x.is_finite()), "non-finite samples");
    let peak = audio.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(peak > 1e-3, "silent output (peak {peak})");
}

fn assert_empty_text(engine: &dyn Engine, text: &str) {
    let e = start_err(engine, request(text));
    assert!(matches!(e, SynthError::EmptyText), "{text:?}: expected EmptyText, got {e:?} ({e})");
    let msg = e.to_string();
    assert!(msg.contains("nothing to say") && msg.contains("text"), "{text:?}: unclear message: {msg}");
    still_works(engine);
}

fn norm_word(w: &str) -> String {
    w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Samples and spoken words (normalised) of a request.
fn speak(engine: &dyn Engine, req: SynthRequest) -> (usize, Vec<String>) {
    let mut stream = engine.start(req, CancelToken::new()).unwrap_or_else(|e| panic!("start: {e}"));
    let mut n = 0;
    let mut words = Vec::new();
    while let Some(c) = stream.next_chunk().expect("chunk") {
        assert!(c.samples.iter().all(|x| x.is_finite()), "non-finite samples");
        n += c.samples.len();
        words.extend(c.alignments.iter().filter(|a| a.kind == AlignmentKind::Word).map(|a| norm_word(&a.text)));
    }
    (n, words.into_iter().filter(|w| !w.is_empty()).collect())
}

/// A scratch folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("voxline-bad-input-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_err(onnx: &Path) -> PiperError {
    match PiperVoice::load(onnx, &Device::Cpu) {
        Err(e) => e,
        Ok(v) => panic!(
            "{} loaded (voice {}, {} speaker(s)); expected an error",
            onnx.display(),
            v.name,
            v.model.num_speakers()
        ),
    }
}

/// The message names the offending file (by its file name at least).
fn assert_names(e: &PiperError, file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let msg = e.to_string();
    assert!(msg.contains(&name), "the message does not name {name}: {msg}  ({e:?})");
}

fn json_of(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

// ---------------------------------------------------------- engine: text

#[test]
fn empty_text_is_empty_text() {
    assert_empty_text(joe(), "");
}

#[test]
fn whitespace_only_is_empty_text() {
    assert_empty_text(joe(), " \t\n\r  \u{a0}\u{2003}\n");
}

#[test]
fn punctuation_only_is_empty_text() {
    // Every input is tried; the failure lists all that were spoken.
    let mut spoken = Vec::new();
    for text in ["...", "?!", ", ; : - !", ":", "!", "!!!", ";", "\"()\"", "…", "- -", "?!?! ...", "(!)", "—", "–"] {
        match joe().start(request(text), CancelToken::new()) {
            Err(SynthError::EmptyText) => {}
            Err(e) => panic!("{text:?}: expected EmptyText, got {e:?}"),
            Ok(_) => {
                let phonemes: Vec<String> = joe()
                    .sentence_ids(text)
                    .unwrap()
                    .iter()
                    .map(|(s, _)| s.phonemes.iter().collect())
                    .collect();
                spoken.push(format!("{text:?} -> {phonemes:?}"));
            }
        }
        still_works(joe());
    }
    assert!(spoken.is_empty(), "punctuation-only text was spoken instead of refused as EmptyText:\n  {}", spoken.join("\n  "));
}

#[test]
fn emoji_only_is_empty_text() {
    for text in ["🙂🎉", "👍🏽 🇺🇸 ❤️", "\u{200b}\u{feff}\u{fe0f}"] {
        assert_empty_text(joe(), text);
    }
}

#[test]
fn junk_characters_inside_a_sentence_are_skipped_and_the_words_spoken() {
    let clean = "Hello there, this is a simple test.";
    let expected: Vec<String> = clean.split_whitespace().map(norm_word).collect();
    let (clean_len, clean_words) = speak(joe(), request(clean));
    assert_eq!(clean_words, expected, "word alignments of the clean sentence");

    let dirty = [
        "Hello\u{0} there,\u{7} this\u{1b} is a\u{0}\u{0} simple\u{fffd} test.\u{0}",
        "Hello 🙂 there, ☃ this ⌘ is \u{200b}a \u{feff}simple \u{202e}test. 🎉",
        "\u{1}\u{2}Hello\u{8} there,\u{7f} this\u{85} is a\u{fffe} simple test.\u{10ffff}",
    ];
    for text in dirty {
        let (len, words) = speak(joe(), request(text));
        assert_eq!(words, expected, "{text:?}: the words spoken");
        let ratio = len as f64 / clean_len as f64;
        assert!((0.7..1.5).contains(&ratio), "{text:?}: {len} samples vs {clean_len} clean (ratio {ratio:.2})");
        still_works(joe());
    }
}

#[test]
fn over_long_text_is_refused_quickly() {
    let text = "hello ".repeat(100_000 / 6 + 1);
    let text: String = text.chars().take(100_000).collect();
    let t0 = Instant::now();
    let e = start_err(joe(), SynthRequest::new(text));
    let took = t0.elapsed();
    match &e {
        SynthError::TextTooLong { chars, max } => {
            assert_eq!((*chars, *max), (100_000, MAX_REQUEST_CHARS));
        }
        other => panic!("expected TextTooLong, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("100000") && msg.contains(&MAX_REQUEST_CHARS.to_string()) && msg.contains("smaller pieces"),
        "unclear message: {msg}"
    );
    assert!(took < Duration::from_secs(2), "refusing took {took:?}");

    // One character over the limit, counted in characters, not bytes.
    let e = start_err(joe(), SynthRequest::new("é".repeat(MAX_REQUEST_CHARS + 1)));
    assert!(matches!(e, SynthError::TextTooLong { chars, .. } if chars == MAX_REQUEST_CHARS + 1), "{e:?}");
    still_works(joe());
}

/// Starts `text`, takes two chunks, cancels; returns the time to the first chunk.
fn two_chunks_then_cancel(engine: &dyn Engine, text: String) -> Duration {
    let cancel = CancelToken::new();
    let t0 = Instant::now();
    let mut stream = engine
        .start(request(&text), cancel.clone())
        .unwrap_or_else(|e| panic!("{} chars refused: {e}", text.chars().count()));
    let first = stream.next_chunk().expect("first chunk").expect("a first chunk");
    let ttfc = t0.elapsed();
    assert!(!first.last && !first.samples.is_empty());
    let second = stream.next_chunk().expect("second chunk").expect("a second chunk");
    assert_eq!(second.start_sample, first.start_sample + first.samples.len() as u64);
    cancel.cancel();
    match stream.next_chunk() {
        Err(SynthError::Cancelled) | Ok(None) => {}
        Err(e) => panic!("after cancel: {e:?}"),
        Ok(Some(_)) => panic!("a chunk after cancel"),
    }
    ttfc
}

#[test]
fn long_but_allowed_text_streams_without_panicking() {
    // About 3,000 characters of words with no punctuation at all: the worst
    // case for sentence splitting.
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 3_000 {
        text.push_str(words[i % words.len()]);
        text.push(' ');
        i += 1;
    }
    let ttfc = two_chunks_then_cancel(joe(), text.trim_end().to_string());
    eprintln!("3,000 chars without punctuation: first chunk after {ttfc:?}");

    // The same with sentences.
    let sentence = "The weather today is mild with a light breeze from the west. ";
    let text = sentence.repeat(3_000 / sentence.len() + 1);
    let ttfc = two_chunks_then_cancel(joe(), text);
    eprintln!("3,000 chars of sentences: first chunk after {ttfc:?}");

    // Exactly the limit is allowed.
    let text: String = sentence.repeat(MAX_REQUEST_CHARS / sentence.len() + 1).chars().take(MAX_REQUEST_CHARS).collect();
    assert_eq!(text.chars().count(), MAX_REQUEST_CHARS);
    let ttfc = two_chunks_then_cancel(joe(), text);
    eprintln!("{MAX_REQUEST_CHARS} chars (the limit): first chunk after {ttfc:?}");
    still_works(joe());
}

// -------------------------------------------------------- engine: options

#[test]
fn bad_scales_are_invalid_options() {
    let cases: Vec<(&str, SynthOptions)> = vec![
        ("noise_scale", SynthOptions { noise_scale: Some(f32::NAN), ..Default::default() }),
        ("noise_scale", SynthOptions { noise_scale: Some(-0.1), ..Default::default() }),
        ("noise_scale", SynthOptions { noise_scale: Some(1e30), ..Default::default() }),
        ("noise_scale", SynthOptions { noise_scale: Some(f32::INFINITY), ..Default::default() }),
        ("noise_w", SynthOptions { noise_w: Some(f32::NAN), ..Default::default() }),
        ("noise_w", SynthOptions { noise_w: Some(-1.0), ..Default::default() }),
        ("noise_w", SynthOptions { noise_w: Some(f32::MAX), ..Default::default() }),
        ("length_scale", SynthOptions { length_scale: Some(f32::NAN), ..Default::default() }),
        ("length_scale", SynthOptions { length_scale: Some(-1.0), ..Default::default() }),
        ("length_scale", SynthOptions { length_scale: Some(0.0), ..Default::default() }),
        ("length_scale", SynthOptions { length_scale: Some(1e9), ..Default::default() }),
        ("length_scale", SynthOptions { length_scale: Some(f32::NEG_INFINITY), ..Default::default() }),
    ];
    for (name, options) in cases {
        let e = start_err(joe(), with_options("Hello there.", options.clone()));
        assert!(
            matches!(e, SynthError::Piper(PiperError::InvalidOption(_))),
            "{options:?}: expected InvalidOption, got {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(name) && msg.contains("within"),
            "{options:?}: the message should name {name} and its range: {msg}"
        );
        still_works(joe());
    }
}

#[test]
fn unknown_speaker_id_on_a_multi_speaker_voice() {
    let engine = tiny_multi();
    for (id, text) in [("3", "3"), ("7", "7"), ("4294967295", "4294967295")] {
        let e = start_err(engine, with_options("Hello there.", SynthOptions { speaker: Some(id.into()), ..Default::default() }));
        assert!(
            matches!(e, SynthError::Piper(PiperError::UnknownSpeaker { count: 3, .. })),
            "speaker {id}: expected UnknownSpeaker with count 3, got {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(text) && msg.contains('3'), "speaker {id}: unclear message: {msg}");
        still_works(engine);
    }
}

#[test]
fn unknown_speaker_name_lists_the_known_names() {
    let engine = tiny_multi();
    for name in ["dave", "Alice", "-1", "99999999999", "alice bob"] {
        let e = start_err(engine, with_options("Hello there.", SynthOptions { speaker: Some(name.into()), ..Default::default() }));
        assert!(
            matches!(e, SynthError::Piper(PiperError::UnknownSpeakerName { .. })),
            "speaker {name:?}: expected UnknownSpeakerName, got {e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(name) && msg.contains("alice") && msg.contains("bob") && msg.contains("carol"),
            "speaker {name:?}: the message should list alice, bob, carol: {msg}"
        );
        still_works(engine);
    }
    // The names and the ids themselves work.
    for ok in ["alice", "carol", " bob ", "0", "2"] {
        let audio = synthesize_all(engine, with_options("Hello.", SynthOptions { speaker: Some(ok.into()), seed: Some(1), ..Default::default() }))
            .unwrap_or_else(|e| panic!("speaker {ok:?}: {e}"));
        assert!(!audio.is_empty());
    }
}

#[test]
fn a_speaker_for_a_single_speaker_voice() {
    let engine = joe();
    let e = start_err(engine, with_options("Hello there.", SynthOptions { speaker: Some("1".into()), ..Default::default() }));
    assert!(
        matches!(e, SynthError::Piper(PiperError::UnknownSpeaker { id: 1, count: 1 })),
        "expected UnknownSpeaker {{ id: 1, count: 1 }}, got {e:?}"
    );
    still_works(engine);

    let e = start_err(engine, with_options("Hello there.", SynthOptions { speaker: Some("alice".into()), ..Default::default() }));
    assert!(matches!(e, SynthError::Piper(PiperError::UnknownSpeakerName { .. })), "got {e:?}");
    let msg = e.to_string();
    assert!(msg.contains("alice") && msg.contains("single-speaker"), "unclear message: {msg}");
    still_works(engine);

    // Speaker 0 (or none, or blank) is the only speaker: accepted.
    for ok in ["0", "", "  "] {
        let audio = synthesize_all(engine, with_options("Hi.", SynthOptions { speaker: Some(ok.into()), seed: Some(1), ..Default::default() }))
            .unwrap_or_else(|e| panic!("speaker {ok:?} on a single-speaker voice: {e}"));
        assert!(!audio.is_empty());
    }
}

// ---------------------------------------------------------------- loading

#[test]
fn truncated_model_first_megabyte() {
    let dir = TempDir::new("trunc1mb");
    let bytes = std::fs::read(default_voice()).unwrap();
    let onnx = dir.path("joe-cut.onnx");
    std::fs::write(&onnx, &bytes[..1 << 20]).unwrap();
    std::fs::copy(config_of(&default_voice()), dir.path("joe-cut.onnx.json")).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::BadModel { .. }), "expected BadModel, got {e:?}");
    assert_names(&e, &onnx);
    assert!(e.to_string().contains("truncated"), "should suggest the file is truncated: {e}");
}

#[test]
fn truncated_model_sixty_percent() {
    let dir = TempDir::new("trunc60");
    let bytes = std::fs::read(default_voice()).unwrap();
    let onnx = dir.path("joe-60.onnx");
    std::fs::write(&onnx, &bytes[..bytes.len() * 6 / 10]).unwrap();
    std::fs::copy(config_of(&default_voice()), dir.path("joe-60.onnx.json")).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::BadModel { .. }), "expected BadModel, got {e:?}");
    assert_names(&e, &onnx);
}

#[test]
fn random_bytes_named_onnx() {
    let dir = TempDir::new("random");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20240601);
    for (i, len) in [16usize, 4096, 1 << 20].into_iter().enumerate() {
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        let onnx = dir.path(&format!("noise{i}.onnx"));
        std::fs::write(&onnx, &bytes).unwrap();
        std::fs::copy(config_of(&tiny_multi_path()), config_of(&onnx)).unwrap();
        let e = load_err(&onnx);
        assert!(matches!(e, PiperError::BadModel { .. }), "{len} random bytes: expected BadModel, got {e:?}");
        assert_names(&e, &onnx);
    }
}

#[test]
fn empty_model_file() {
    let dir = TempDir::new("empty");
    let onnx = dir.path("empty.onnx");
    std::fs::write(&onnx, b"").unwrap();
    std::fs::copy(config_of(&tiny_multi_path()), config_of(&onnx)).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::BadModel { .. }), "expected BadModel, got {e:?}");
    assert_names(&e, &onnx);
}

#[test]
fn missing_model_file() {
    let dir = TempDir::new("nomodel");
    let onnx = dir.path("absent.onnx");
    std::fs::copy(config_of(&tiny_multi_path()), config_of(&onnx)).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::Io { .. }), "expected Io, got {e:?}");
    assert_names(&e, &onnx);
}

#[test]
fn missing_config() {
    let dir = TempDir::new("nojson");
    let onnx = dir.path("lonely.onnx");
    std::fs::copy(tiny_multi_path(), &onnx).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::MissingConfig { .. }), "expected MissingConfig, got {e:?}");
    assert_names(&e, &config_of(&onnx));
    assert!(e.to_string().contains("NAME.onnx.json"), "should say what is expected: {e}");
}

fn with_config_text(tag: &str, config: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let onnx = dir.path(&format!("{tag}.onnx"));
    std::fs::copy(tiny_multi_path(), &onnx).unwrap();
    std::fs::write(config_of(&onnx), config).unwrap();
    (dir, onnx)
}

#[test]
fn invalid_json_config() {
    for (i, text) in ["{not json", "", "[]", "null", "{\"audio\": {\"sample_rate\": \"fast\"}}"].into_iter().enumerate() {
        let (_dir, onnx) = with_config_text(&format!("badjson{i}"), text);
        let e = load_err(&onnx);
        assert!(matches!(e, PiperError::BadConfig { .. }), "{text:?}: expected BadConfig, got {e:?}");
        assert_names(&e, &config_of(&onnx));
    }
}

#[test]
fn config_missing_required_fields() {
    for field in ["audio", "phoneme_id_map"] {
        let mut j = json_of(&config_of(&tiny_multi_path()));
        j.as_object_mut().unwrap().remove(field);
        let (_dir, onnx) = with_config_text(&format!("no_{field}"), &j.to_string());
        let e = load_err(&onnx);
        assert!(matches!(e, PiperError::BadConfig { .. }), "without {field}: expected BadConfig, got {e:?}");
        assert_names(&e, &config_of(&onnx));
        assert!(e.to_string().contains(field), "the message should name `{field}`: {e}");
    }
    // Present but unusable.
    let mut j = json_of(&config_of(&tiny_multi_path()));
    j["audio"]["sample_rate"] = 0.into();
    let (_dir, onnx) = with_config_text("rate0", &j.to_string());
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::BadConfig { .. }), "sample_rate 0: got {e:?}");
    assert_names(&e, &config_of(&onnx));
}

#[test]
fn phoneme_ids_beyond_the_models_symbols_are_a_mismatch() {
    let mut j = json_of(&config_of(&tiny_multi_path()));
    j["phoneme_id_map"]["ʘ"] = serde_json::json!([300]);
    let (_dir, onnx) = with_config_text("bigids", &j.to_string());
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::Mismatch { .. }), "expected Mismatch, got {e:?}");
    assert!(e.to_string().contains("300"), "should give the offending id: {e}");
    // Which voice? A server loading several must say which file is wrong.
    assert_names(&e, &onnx);
}

#[test]
fn multi_speaker_config_on_a_single_speaker_model_is_a_mismatch() {
    let dir = TempDir::new("cross1");
    let onnx = dir.path("joe-as-tiny.onnx");
    std::os::unix::fs::symlink(default_voice(), &onnx).unwrap();
    std::fs::copy(config_of(&tiny_multi_path()), config_of(&onnx)).unwrap();
    let e = load_err(&onnx);
    assert!(matches!(e, PiperError::Mismatch { .. }), "expected Mismatch, got {e:?}");
    assert!(e.to_string().contains("speakers"), "should say what disagrees: {e}");
    assert_names(&e, &onnx);
}

#[test]
fn single_speaker_config_on_a_multi_speaker_model() {
    // joe's config (num_speakers 1, no speaker names) with the three-speaker
    // tiny model. Either refused as a mismatch naming the file, or loaded and
    // usable: never a panic.
    let dir = TempDir::new("cross2");
    let onnx = dir.path("tiny-as-joe.onnx");
    std::fs::copy(tiny_multi_path(), &onnx).unwrap();
    std::fs::copy(config_of(&default_voice()), config_of(&onnx)).unwrap();
    match PiperVoice::load(&onnx, &Device::Cpu) {
        Err(e) => {
            assert!(matches!(e, PiperError::Mismatch { .. }), "expected Mismatch, got {e:?}");
            assert_names(&e, &onnx);
        }
        Ok(voice) => {
            eprintln!(
                "note: joe's config on the 3-speaker tiny model loads ({} model speakers, config num_speakers {})",
                voice.model.num_speakers(),
                voice.config.num_speakers
            );
            let engine = PiperEngine::new(voice, Arc::new(EspeakPhonemizer::new().unwrap()), StreamConfig::default()).unwrap();
            still_works(&engine);
        }
    }
}

fn config_of(onnx: &Path) -> PathBuf {
    voxline::synth::piper::config_path_for(onnx)
}

// -------------------------------------------------------------------- CLI

/// Runs the binary; returns (exit code, stderr).
fn voxline(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(args)
        .env("VOXLINE_MODELS", root().join("models"))
        .env("RUST_BACKTRACE", "1")
        .env_remove("VOXLINE_LOG")
        .current_dir(std::env::temp_dir())
        .output_within(Duration::from_secs(120), "voxline")
        .expect("run voxline");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_error_line(args: &[&str], expect_in_message: &[&str]) {
    let (code, stderr) = voxline(args);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace") && code != Some(101),
        "{args:?} panicked:\n{stderr}"
    );
    assert!(matches!(code, Some(c) if c != 0), "{args:?}: exit code {code:?}, stderr:\n{stderr}");
    assert_eq!(lines.len(), 1, "{args:?}: expected one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("voxline: error: "), "{args:?}: {stderr}");
    for needle in expect_in_message {
        assert!(lines[0].contains(needle), "{args:?}: the error should mention {needle:?}: {stderr}");
    }
}

#[test]
fn cli_say_empty_text() {
    let dir = TempDir::new("cli-empty");
    let out = dir.path("out.wav");
    assert_one_error_line(&["say", "", "-o", out.to_str().unwrap()], &["nothing to say"]);
    assert!(!out.exists(), "an output file was written for empty text");
}

#[test]
fn cli_say_missing_voice() {
    let dir = TempDir::new("cli-novoice");
    let out = dir.path("out.wav");
    assert_one_error_line(
        &["say", "--voice", "/nonexistent.onnx", "hi", "-o", out.to_str().unwrap()],
        &["/nonexistent.onnx"],
    );
    assert!(!out.exists());
}

#[test]
fn cli_say_bad_options() {
    let dir = TempDir::new("cli-opts");
    let out = dir.path("out.wav");
    let out = out.to_str().unwrap();
    let tiny = tiny_multi_path();
    let tiny = tiny.to_str().unwrap();
    assert_one_error_line(&["say", "--voice", tiny, "--speaker", "dave", "hi", "-o", out], &["dave", "alice", "bob", "carol"]);
    assert_one_error_line(&["say", "--voice", tiny, "--noise-scale", "NaN", "hi", "-o", out], &["noise_scale"]);
    assert_one_error_line(&["say", "--voice", tiny, "--length-scale=-1", "hi", "-o", out], &["length_scale"]);
    assert_one_error_line(&["say", "--voice", tiny, "🙂🎉", "-o", out], &["nothing to say"]);
}

