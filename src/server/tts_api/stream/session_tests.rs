//! The streaming session with made-up chunks and a fake clock.

use super::*;
use crate::synth::Alignment;

const VOICE: &str = "en_US-joe-medium";
const ENGINE_RATE: u32 = 16_000;

fn session() -> Session {
    Session::new(vec![VOICE.into(), "en_GB-alan-low".into()], VOICE.into(), SynthOptions::default())
}

fn drain(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn messages(actions: &[Action]) -> Vec<&ToClient> {
    actions.iter().filter_map(|a| if let Action::Send(m) = a { Some(m) } else { None }).collect()
}

fn error_codes(actions: &[Action]) -> Vec<&'static str> {
    messages(actions).into_iter().filter_map(|m| if let ToClient::Error { code, .. } = m { Some(*code) } else { None }).collect()
}

fn synthesized(actions: &[Action]) -> Vec<&str> {
    actions.iter().filter_map(|a| if let Action::Synthesize { text, .. } = a { Some(text.as_str()) } else { None }).collect()
}

fn audio_bytes(actions: &[Action]) -> usize {
    actions.iter().map(|a| if let Action::Binary(b) = a { b.len() } else { 0 }).sum()
}

/// `ms` of a tone at the engine's rate, with `words` starting at the given ms.
fn chunk(ms: u64, last: bool, words: &[(&str, u64, u64)]) -> Synthesized {
    let per_ms = u64::from(ENGINE_RATE / 1000);
    let alignments = words
        .iter()
        .map(|(w, s, e)| Alignment { kind: AlignmentKind::Word, text: w.to_string(), start_sample: s * per_ms, end_sample: e * per_ms })
        .collect();
    Synthesized::Chunk(PcmChunk {
        samples: (0..ms * per_ms).map(|i| (i as f32 * 0.05).sin() * 0.3).collect(),
        sample_rate: ENGINE_RATE,
        start_sample: 0,
        sentence: 0,
        alignments,
        ready_at: Instant::now(),
        compute: Duration::ZERO,
        last,
    })
}

fn started(format: &str) -> (Session, Instant) {
    let mut s = session();
    let t0 = Instant::now();
    let rate = if format == "pcm" { 16_000 } else { 8_000 };
    s.on_text(t0, &format!(r#"{{"type": "start", "format": "{format}", "sample_rate": {rate}}}"#));
    let out = drain(&mut s);
    assert!(matches!(messages(&out)[..], [ToClient::Ready { sample_rate, .. }] if *sample_rate == rate), "{out:?}");
    (s, t0)
}

#[test]
fn nothing_before_start_and_a_bad_start_can_be_corrected() {
    let mut s = session();
    let t0 = Instant::now();
    s.on_text(t0, r#"{"type": "text", "text": "Hello."}"#);
    s.on_text(t0, r#"{"type": "start", "format": "pcm", "voice": "alloy"}"#);
    s.on_text(t0, r#"{"type": "start", "format": "mp3"}"#);
    s.on_text(t0, r#"{"type": "start", "format": "pcm", "sample_rate": 11025}"#);
    s.on_text(t0, r#"{"type": "start", "format": "ulaw", "sample_rate": 16000}"#);
    s.on_text(t0, r#"{"type": "start", "format": "pcm", "encoding": "hex"}"#);
    s.on_text(t0, r#"{"type": "start", "format": "pcm", "speed": 9}"#);
    s.on_text(t0, r#"{"type": "start", "format": "pcm", "preset": "turbo"}"#);
    s.on_text(t0, r#"{"type": "start""#);
    s.on_text(t0, r#"{"type": "speak"}"#);
    s.on_binary();
    let out = drain(&mut s);
    assert_eq!(
        error_codes(&out),
        [
            "not_started", "unknown_voice", "unsupported_format", "unsupported_sample_rate", "unsupported_sample_rate",
            "unsupported_encoding", "invalid_speed", "unknown_preset", "invalid_json", "invalid_message", "binary_not_accepted"
        ]
    );
    s.on_text(t0, r#"{"type": "start", "format": "ulaw", "voice": "en_GB-alan-low", "encoding": "base64"}"#);
    let out = drain(&mut s);
    let ready = ToClient::Ready { voice: "en_GB-alan-low".into(), format: "ulaw", sample_rate: 8000, encoding: Encoding::Base64 };
    assert_eq!(messages(&out), [&ready]);
    s.on_text(t0, r#"{"type": "start", "format": "pcm"}"#);
    assert_eq!(error_codes(&drain(&mut s)), ["already_started"]);
}

#[test]
fn the_first_clause_is_synthesized_before_the_text_ends_and_the_next_after_it() {
    let (mut s, t0) = started("pcm");
    s.on_text(t0, r#"{"type": "text", "text": "Sure, I can "}"#);
    let out = drain(&mut s);
    assert_eq!(synthesized(&out), ["Sure,"], "the first clause goes at once");
    s.on_text(t0, r#"{"type": "text", "text": "help you with that today. "}"#);
    s.on_text(t0, r#"{"type": "text", "text": "What is "}"#);
    assert!(synthesized(&drain(&mut s)).is_empty(), "one clause at a time");
    s.on_audio(t0, chunk(300, false, &[("Sure", 0, 280)]));
    let out = drain(&mut s);
    assert_eq!(audio_bytes(&out), 300 * 16 * 2, "16-bit at 16 kHz, the engine's rate");
    s.on_audio(t0, chunk(100, true, &[]));
    let out = drain(&mut s);
    assert_eq!(synthesized(&out), ["I can help you with that today."], "the next clause once the first is done");
}

#[test]
fn word_timings_run_on_across_clauses_in_stream_time() {
    let (mut s, t0) = started("pcm");
    s.on_text(t0, r#"{"type": "text", "text": "Hello there. How are you? "}"#);
    s.on_text(t0, r#"{"type": "flush"}"#);
    drain(&mut s);
    s.on_audio(t0, chunk(500, false, &[("Hello", 10, 200), ("there", 200, 480)]));
    s.on_audio(t0, chunk(100, true, &[]));
    s.on_audio(t0, chunk(400, true, &[("How", 0, 100), ("are", 100, 200), ("you", 200, 390)]));
    let out = drain(&mut s);
    let words: Vec<(String, f64, f64)> = messages(&out)
        .into_iter()
        .filter_map(|m| if let ToClient::Words { words, .. } = m { Some(words.clone()) } else { None })
        .flatten()
        .map(|w| (w.text, w.start_ms, w.end_ms))
        .collect();
    let expected = [("Hello", 10.0, 200.0), ("there", 200.0, 480.0), ("How", 600.0, 700.0), ("are", 700.0, 800.0), ("you", 800.0, 990.0)];
    assert_eq!(words, expected.map(|(w, a, b)| (w.to_string(), a, b)));
    let flushed = messages(&out).into_iter().find_map(|m| if let ToClient::Flushed { audio_ms, .. } = m { Some(*audio_ms) } else { None });
    assert_eq!(flushed, Some(1000.0), "a second of engine audio is a second of stream");
    assert_eq!(audio_bytes(&out), 16000 * 2);
}

#[test]
fn a_flush_releases_the_resamplers_tail_and_then_says_flushed_with_its_id() {
    let (mut s, t0) = started("ulaw");
    s.on_text(t0, r#"{"type": "text", "text": "One moment please"}"#);
    s.on_text(t0, r#"{"type": "flush", "id": "turn-1"}"#);
    let out = drain(&mut s);
    assert_eq!(synthesized(&out), ["One moment please"], "flush speaks what waits for a clause end");
    s.on_audio(t0, chunk(250, false, &[]));
    s.on_audio(t0, chunk(250, true, &[]));
    let out = drain(&mut s);
    assert_eq!(audio_bytes(&out), 4000, "half a second at 8 kHz, every sample once the tail is out");
    let sent: Vec<&ToClient> = messages(&out);
    assert!(matches!(sent.last(), Some(ToClient::Flushed { id: Some(id), audio_ms }) if id == "turn-1" && *audio_ms == 500.0), "{sent:?}");
    // Without word timings from the engine, the clause's are shared by length.
    let clause_words = sent.iter().find_map(|m| if let ToClient::Words { source: TimingSource::Clause, words } = m { Some(words.clone()) } else { None });
    let clause_words = clause_words.expect("clause-level timings");
    assert_eq!(clause_words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(), ["One", "moment", "please"]);
    assert_eq!((clause_words[0].start_ms, clause_words[2].end_ms), (0.0, 500.0));
    // A flush with nothing buffered still answers.
    s.on_text(t0, r#"{"type": "flush"}"#);
    assert!(matches!(messages(&drain(&mut s))[..], [ToClient::Flushed { id: None, .. }]));
}

#[test]
fn clear_cancels_the_clause_drops_the_rest_and_late_chunks_are_not_sent() {
    let (mut s, t0) = started("pcm");
    s.on_text(t0, r#"{"type": "text", "text": "First, a long answer. Then more. "}"#);
    s.on_text(t0, r#"{"type": "flush", "id": "a"}"#);
    drain(&mut s);
    s.on_audio(t0, chunk(200, false, &[]));
    drain(&mut s);
    s.on_text(t0, r#"{"type": "clear"}"#);
    let out = drain(&mut s);
    assert!(matches!(out[..], [Action::Cancel, Action::Send(ToClient::Cleared { .. })]), "{out:?}");
    s.on_audio(t0, chunk(200, true, &[]));
    assert!(drain(&mut s).is_empty(), "the cancelled clause's chunks are dropped; no `flushed` for a cleared flush");
    // The stream goes on with new text.
    s.on_text(t0, r#"{"type": "text", "text": "New turn"}"#);
    s.on_text(t0, r#"{"type": "flush"}"#);
    assert_eq!(synthesized(&drain(&mut s)), ["New turn"]);
}

#[test]
fn text_limits_and_close() {
    let (mut s, t0) = started("pcm");
    s.on_text(t0, r#"{"type": "text", "text": ""}"#);
    let long = "word ".repeat(MAX_INPUT_CHARS / 5 + 1);
    s.on_text(t0, &format!(r#"{{"type": "text", "text": "{long}"}}"#));
    let half = "word ".repeat(MAX_INPUT_CHARS / 10);
    s.on_text(t0, &format!(r#"{{"type": "text", "text": "{half}"}}"#));
    s.on_text(t0, &format!(r#"{{"type": "text", "text": "{half}"}}"#));
    s.on_text(t0, &format!(r#"{{"type": "text", "text": "{half}"}}"#));
    assert_eq!(error_codes(&drain(&mut s)), ["empty_text", "input_too_long", "input_too_long"]);
    s.on_text(t0, r#"{"type": "close"}"#);
    let out = drain(&mut s);
    assert!(!out.iter().any(|a| matches!(a, Action::Close { .. })), "close speaks what is buffered first: {out:?}");
    s.on_text(t0, r#"{"type": "text", "text": "more"}"#);
    assert_eq!(error_codes(&drain(&mut s)), ["closing"]);
    s.on_audio(t0, chunk(100, true, &[]));
    let mut out = drain(&mut s);
    // The rest of the buffered text, clause by clause, then done and the close.
    while let Some(text) = synthesized(&out).first().map(|t| t.to_string()) {
        assert!(!text.is_empty());
        s.on_audio(t0, chunk(100, true, &[]));
        out = drain(&mut s);
    }
    assert!(matches!(out[out.len() - 2..], [Action::Send(ToClient::Done { .. }), Action::Close { code: 1000, .. }]), "{out:?}");
    s.on_text(t0, r#"{"type": "text", "text": "late"}"#);
    assert!(drain(&mut s).is_empty(), "closed: nothing more");
}

#[test]
fn a_later_clause_is_scheduled_behind_the_audio_the_client_has() {
    let (mut s, t0) = started("pcm");
    s.on_text(t0, r#"{"type": "text", "text": "One. Two. "}"#);
    s.on_text(t0, r#"{"type": "flush"}"#);
    drain(&mut s);
    s.on_audio(t0, chunk(1000, true, &[]));
    let out = drain(&mut s);
    let ahead = out.iter().find_map(|a| if let Action::Synthesize { ahead, .. } = a { Some(*ahead) } else { None });
    assert_eq!(ahead, Some(Duration::from_secs(1)), "a second sent, none of it played yet");
}
