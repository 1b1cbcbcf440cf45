//! `GET /v1/tts`, the streaming TTS WebSocket, and `POST /v1/warmup`,
//! against `voxline serve` on loopback with a real WebSocket client
//! (tungstenite): text sent in pieces is synthesized from its first clause
//! on, its audio is `voxline say`'s for the same text, word timings cover
//! it in order, `clear` stops it, bad input gets typed errors while the
//! socket (and other sockets) go on, and warm-up loads voices.
//!
//! Noise is off (`--noise-scale 0 --noise-w 0`) on both sides, so the
//! stream and `voxline say` compute the same samples.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::harness::{scratch_dir, tail, OutputWithin};
use common::server::Server;
use common::slots::shared_slot;
use serde::{Deserialize, Serialize};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const TOKEN: &str = "tts-stream-secret";
const VOICE: &str = "en_US-joe-medium";
const NO_NOISE: [&str; 4] = ["--noise-scale", "0", "--noise-w", "0"];
/// Three sentences, sent as three pieces; the first ends a clause.
const PIECES: [&str; 3] = ["Your order has shipped today! ", "The driver will call you before delivery. ", "Thank you for calling and have a wonderful day."];
/// How long any one message may take to come.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client sends (docs/agents.md, "Streaming: GET /v1/tts").
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Send<'a> {
    Start {
        format: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        sample_rate: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        voice: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'a str>,
    },
    Text { text: &'a str },
    Flush { id: &'a str },
    Clear,
    Close,
}

/// What voxline answers, as documented.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply {
    Ready { voice: String, format: String, sample_rate: u32, encoding: String },
    Audio { audio: String },
    Words { source: String, words: Vec<Word> },
    Flushed { id: Option<String>, audio_ms: f64 },
    Cleared { audio_ms: f64 },
    Done { audio_ms: f64 },
    Error { code: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
struct Word {
    text: String,
    start_ms: f64,
    end_ms: f64,
}

/// One thing off the socket.
#[derive(Debug)]
enum Got {
    Reply(Reply),
    /// A binary frame.
    Audio(Vec<u8>),
    Closed { code: u16, reason: String },
    /// Nothing within the wait.
    Nothing,
}

struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Client, tungstenite::Error> {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        let (ws, _) = tungstenite::connect(format!("ws://{addr}/v1/tts{query}"))?;
        Ok(Client { ws })
    }

    fn send(&mut self, message: &Send) {
        let text = serde_json::to_string(message).unwrap();
        self.ws.send(Message::text(text)).expect("send to /v1/tts");
    }

    fn send_raw(&mut self, message: Message) {
        self.ws.send(message).expect("send to /v1/tts");
    }

    /// The next message, or `Nothing` after `wait`.
    fn next(&mut self, wait: Duration) -> Got {
        if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            s.set_read_timeout(Some(wait)).unwrap();
        }
        match self.ws.read() {
            Ok(Message::Text(t)) => Got::Reply(serde_json::from_str(t.as_str()).unwrap_or_else(|e| panic!("undocumented message ({e}): {t}"))),
            Ok(Message::Binary(b)) => Got::Audio(b.to_vec()),
            Ok(Message::Close(frame)) => {
                Got::Closed { code: frame.as_ref().map_or(1005, |f| u16::from(f.code)), reason: frame.map(|f| f.reason.to_string()).unwrap_or_default() }
            }
            Ok(_) => self.next(wait),
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Got::Nothing,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Got::Closed { code: 1006, reason: String::new() },
            Err(e) => panic!("reading /v1/tts: {e}"),
        }
    }

    /// The next JSON reply, skipping audio and words; panics on a close or a timeout.
    fn reply(&mut self) -> Reply {
        loop {
            match self.next(READ_TIMEOUT) {
                Got::Reply(Reply::Audio { .. } | Reply::Words { .. }) | Got::Audio(_) => {}
                Got::Reply(r) => return r,
                other => panic!("waiting for a reply, got {other:?}"),
            }
        }
    }

    fn error_code(&mut self) -> String {
        match self.reply() {
            Reply::Error { code, message } => {
                assert!(!message.is_empty(), "{code} without a message");
                code
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn start(&mut self, format: &str, sample_rate: Option<u32>, encoding: Option<&str>) {
        self.send(&Send::Start { format, sample_rate, voice: Some(VOICE), encoding });
        match self.reply() {
            Reply::Ready { voice, format: f, sample_rate: rate, encoding: e } => {
                assert_eq!((voice.as_str(), f.as_str()), (VOICE, format));
                assert_eq!(rate, sample_rate.unwrap_or(if format == "ulaw" { 8000 } else { 24000 }));
                assert_eq!(e, encoding.unwrap_or("binary"));
            }
            other => panic!("expected ready, got {other:?}"),
        }
    }
}

/// Everything a stream sent until `done` and its close.
#[derive(Default)]
struct Heard {
    audio: Vec<u8>,
    words: Vec<Word>,
    sources: Vec<String>,
    done_ms: Option<f64>,
    close: Option<(u16, String)>,
}

impl Heard {
    fn take(&mut self, got: Got) -> bool {
        match got {
            Got::Audio(bytes) => self.audio.extend(bytes),
            Got::Reply(Reply::Audio { audio }) => self.audio.extend(base64::engine::general_purpose::STANDARD.decode(audio).expect("base64 audio")),
            Got::Reply(Reply::Words { source, words }) => {
                self.sources.push(source);
                self.words.extend(words);
            }
            Got::Reply(Reply::Done { audio_ms }) => self.done_ms = Some(audio_ms),
            Got::Reply(other) => panic!("unexpected {other:?}"),
            Got::Closed { code, reason } => {
                self.close = Some((code, reason));
                return false;
            }
            Got::Nothing => panic!("nothing for {READ_TIMEOUT:?}"),
        }
        true
    }

    fn until_closed(mut self, client: &mut Client) -> Heard {
        while self.take(client.next(READ_TIMEOUT)) {}
        self
    }
}

/// `voxline say TEXT` with `args` and no noise, raw to stdout.
fn say(text: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .arg("say")
        .arg(text)
        .args(args)
        .args(NO_NOISE)
        .args(["--raw", "-o", "-"])
        .current_dir(common::root())
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(120), "voxline say")
        .expect("run voxline say");
    assert!(out.status.success(), "voxline say failed: {}", tail(&String::from_utf8_lossy(&out.stderr), 20));
    out.stdout
}

fn i16s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect()
}

/// Lower-case letters and digits of each word.
fn plain_words(text: &str) -> Vec<String> {
    text.split_whitespace().map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>().to_lowercase()).filter(|w| !w.is_empty()).collect()
}

fn assert_timings_cover(heard: &Heard, text: &str, audio_ms: f64) {
    let words = &heard.words;
    assert_eq!(heard.sources.iter().filter(|s| *s != "phonemes").count(), 0, "Piper's timings come from its phoneme durations: {:?}", heard.sources);
    let said: Vec<String> = words.iter().flat_map(|w| plain_words(&w.text)).collect();
    assert_eq!(said, plain_words(text), "the timed words are the text's, in order");
    for pair in words.windows(2) {
        assert!(pair[1].start_ms >= pair[0].end_ms - 0.1, "timings overlap or go back: {:?} then {:?}", pair[0], pair[1]);
    }
    for w in words {
        assert!(w.end_ms > w.start_ms, "an empty word: {w:?}");
    }
    let (first, last) = (&words[0], &words[words.len() - 1]);
    assert!(first.start_ms < 400.0, "the first word starts at {} ms", first.start_ms);
    assert!(last.end_ms <= audio_ms + 1.0 && last.end_ms > audio_ms - 1500.0, "the last word ends at {} ms of {audio_ms} ms", last.end_ms);
}

#[test]
fn text_in_pieces_streams_from_its_first_clause_and_is_the_audio_of_voxline_say() {
    let _slot = shared_slot();
    let mut args = vec!["--greeting", "", "--api-token", TOKEN];
    args.extend(NO_NOISE);
    let server = Server::start(&args);
    let text = PIECES.concat();

    // 16-bit PCM at 16 kHz in binary frames.
    let mut client = Client::connect(server.http, Some(TOKEN)).expect("connect with ?token=");
    client.start("pcm", Some(16000), None);
    let t0 = Instant::now();
    client.send(&Send::Text { text: PIECES[0] });
    let mut heard = Heard::default();
    // Audio comes for the first piece alone: the rest is not sent yet.
    let first_audio = loop {
        match client.next(READ_TIMEOUT) {
            Got::Audio(bytes) => {
                heard.audio.extend(bytes);
                break t0.elapsed();
            }
            Got::Nothing => panic!("no audio within {READ_TIMEOUT:?} of the first clause: synthesis waited for more text"),
            got => assert!(heard.take(got)),
        }
    };
    client.send(&Send::Text { text: PIECES[1] });
    client.send(&Send::Text { text: PIECES[2] });
    client.send(&Send::Close);
    let heard = heard.until_closed(&mut client);
    let total = t0.elapsed();
    assert_eq!(heard.close.as_ref().map(|(c, _)| *c), Some(1000), "closed normally after `done`");
    let audio_ms = heard.audio.len() as f64 / 2.0 / 16.0;
    let done_ms = heard.done_ms.expect("done before the close");
    assert!((done_ms - audio_ms).abs() < 1.0, "done says {done_ms} ms, {audio_ms} ms came");
    server.note(format!("first audio {first_audio:?} after the first piece; all {audio_ms:.0} ms of audio after {total:?}"));

    // The same samples as `voxline say` of the whole text.
    let reference = say(&text, &["--rate", "16000"]);
    assert_eq!(heard.audio.len(), reference.len(), "{} bytes streamed, `voxline say` wrote {}", heard.audio.len(), reference.len());
    let snr = common::snr_db(&i16s(&reference), &i16s(&heard.audio));
    assert!(heard.audio == reference, "the stream differs from `voxline say` (SNR {snr:.1} dB)");
    assert_timings_cover(&heard, &text, audio_ms);

    // mu-law, base64 in JSON: `voxline say --rate 8000 --mulaw`'s bytes.
    let mut client = Client::connect(server.http, Some(TOKEN)).unwrap();
    client.start("ulaw", None, Some("base64"));
    for piece in PIECES {
        client.send(&Send::Text { text: piece });
    }
    client.send(&Send::Close);
    let heard = Heard::default().until_closed(&mut client);
    let reference = say(&text, &["--rate", "8000", "--mulaw"]);
    assert!(heard.audio == reference, "mu-law: {} bytes streamed, {} from `voxline say`, not equal", heard.audio.len(), reference.len());
    assert_timings_cover(&heard, &text, heard.audio.len() as f64 / 8.0);

    // Behind the API token.
    match Client::connect(server.http, None) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        Err(e) => panic!("expected 401, got {e}"),
        Ok(_) => panic!("a socket without the token was accepted"),
    }
}

#[test]
fn clear_stops_the_audio_and_the_stream_goes_on() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let mut client = Client::connect(server.http, None).unwrap();
    client.start("pcm", None, None);
    // About half a minute of speech: far more than arrives before the clear.
    let long = PIECES.concat().repeat(6);
    client.send(&Send::Text { text: &long });
    client.send(&Send::Flush { id: "long" });
    let mut before = 0usize;
    while before == 0 {
        match client.next(READ_TIMEOUT) {
            Got::Audio(bytes) => before += bytes.len(),
            Got::Reply(Reply::Words { .. }) => {}
            other => panic!("waiting for audio, got {other:?}"),
        }
    }
    client.send(&Send::Clear);
    loop {
        match client.next(READ_TIMEOUT) {
            // Sent before the clear was read.
            Got::Audio(bytes) => before += bytes.len(),
            Got::Reply(Reply::Words { .. }) => {}
            Got::Reply(Reply::Cleared { audio_ms }) => {
                assert!((audio_ms - before as f64 / 48.0).abs() < 1.0, "cleared at {audio_ms} ms, {before} bytes came");
                break;
            }
            other => panic!("waiting for cleared, got {other:?}"),
        }
    }
    let seconds = before as f64 / 48000.0;
    assert!(seconds < 10.0, "{seconds:.1} s of audio came before the clear: not stopped");
    // Nothing more of the cleared text, and no `flushed` for its flush.
    match client.next(Duration::from_millis(1500)) {
        Got::Nothing => {}
        other => panic!("after `cleared`: {other:?}"),
    }
    // The socket goes on.
    client.send(&Send::Text { text: "Still here." });
    client.send(&Send::Flush { id: "again" });
    let mut after = 0usize;
    loop {
        match client.next(READ_TIMEOUT) {
            Got::Audio(bytes) => after += bytes.len(),
            Got::Reply(Reply::Words { .. }) => {}
            Got::Reply(Reply::Flushed { id, audio_ms }) => {
                assert_eq!(id.as_deref(), Some("again"));
                assert!((audio_ms - (before + after) as f64 / 48.0).abs() < 1.0, "flushed at {audio_ms} ms");
                break;
            }
            other => panic!("waiting for flushed, got {other:?}"),
        }
    }
    let seconds = after as f64 / 48000.0;
    assert!((0.4..3.0).contains(&seconds), "{seconds:.2} s for \"Still here.\"");
    server.note(format!("{:.2} s of audio before the clear stopped it; {seconds:.2} s after", before as f64 / 48000.0));
}

#[test]
fn bad_input_gets_typed_errors_and_other_streams_are_unaffected() {
    let _slot = shared_slot();
    let mut args = vec!["--greeting", ""];
    args.extend(NO_NOISE);
    let server = Server::start(&args);
    let text = PIECES.concat();

    // A good stream, open throughout.
    let mut good = Client::connect(server.http, None).unwrap();
    good.start("ulaw", None, None);
    good.send(&Send::Text { text: PIECES[0] });

    let mut bad = Client::connect(server.http, None).unwrap();
    bad.send(&Send::Text { text: "Hello." });
    assert_eq!(bad.error_code(), "not_started");
    bad.send_raw(Message::text("{\"type\": \"start\", \"format\":"));
    assert_eq!(bad.error_code(), "invalid_json");
    bad.send_raw(Message::text("{\"type\": \"speak\", \"text\": \"Hello.\"}"));
    assert_eq!(bad.error_code(), "invalid_message");
    bad.send_raw(Message::binary(vec![0u8; 320]));
    assert_eq!(bad.error_code(), "binary_not_accepted");
    bad.send(&Send::Start { format: "pcm", sample_rate: None, voice: Some("alloy"), encoding: None });
    assert_eq!(bad.error_code(), "unknown_voice");
    bad.send(&Send::Start { format: "mp3", sample_rate: None, voice: None, encoding: None });
    assert_eq!(bad.error_code(), "unsupported_format");
    bad.send(&Send::Start { format: "pcm", sample_rate: Some(11025), voice: None, encoding: None });
    assert_eq!(bad.error_code(), "unsupported_sample_rate");
    // Still usable: a good start, then limits on the text.
    bad.start("pcm", Some(8000), None);
    bad.send(&Send::Text { text: "" });
    assert_eq!(bad.error_code(), "empty_text");
    bad.send(&Send::Text { text: &"word ".repeat(1000) });
    assert_eq!(bad.error_code(), "input_too_long");
    bad.send(&Send::Text { text: "Still speaking." });
    bad.send(&Send::Flush { id: "ok" });
    let mut audio = 0;
    loop {
        match bad.next(READ_TIMEOUT) {
            Got::Audio(bytes) => audio += bytes.len(),
            Got::Reply(Reply::Words { .. }) => {}
            Got::Reply(Reply::Flushed { id, .. }) => {
                assert_eq!(id.as_deref(), Some("ok"));
                break;
            }
            other => panic!("waiting for flushed, got {other:?}"),
        }
    }
    assert!(audio > 8000, "{audio} bytes of 8 kHz audio after the errors");

    // The good stream heard none of it: the same bytes as `voxline say`.
    good.send(&Send::Text { text: PIECES[1] });
    good.send(&Send::Text { text: PIECES[2] });
    good.send(&Send::Close);
    let heard = Heard::default().until_closed(&mut good);
    let reference = say(&text, &["--rate", "8000", "--mulaw"]);
    assert!(heard.audio == reference, "{} bytes streamed, {} from `voxline say`", heard.audio.len(), reference.len());
}

/// A models folder with the default voice and a second name for it, so
/// there is a voice that is not loaded at start.
fn two_voice_models() -> std::path::PathBuf {
    let dir = scratch_dir("tts_stream_models");
    let voice = common::default_voice();
    for name in [VOICE, "en_US-second-medium"] {
        for ext in ["onnx", "onnx.json"] {
            let from = voice.with_extension(ext);
            let to = dir.join(format!("{name}.{ext}"));
            if !to.exists() {
                std::os::unix::fs::symlink(&from, &to).unwrap_or_else(|e| panic!("link {} -> {}: {e}", to.display(), from.display()));
            }
        }
    }
    dir
}

#[test]
fn warmup_loads_a_voice_once_and_preload_loads_it_at_start() {
    let _slot = shared_slot();
    let models = two_voice_models();
    let models_arg = models.to_str().unwrap();
    let server = Server::start(&["--greeting", "", "--models-dir", models_arg]);
    let warm = |body: &str| {
        let r = server.post("/v1/warmup", body);
        assert_eq!(r.status, 200, "{body}: {}", r.body);
        r.json()
    };
    let first = warm(r#"{"voices": ["en_US-second-medium"]}"#);
    let v = &first["voices"][0];
    assert_eq!(v["voice"], "en_US-second-medium");
    assert_eq!(v["loaded"], true, "loaded by this warm-up: {first}");
    assert!(v["load_ms"].as_f64().unwrap() > 0.0 && v["audio_ms"].as_f64().unwrap() > 300.0, "{first}");
    let again = warm(r#"{"voices": ["en_US-second-medium"]}"#);
    assert_eq!(again["voices"][0]["loaded"], false, "already loaded: {again}");
    assert_eq!(again["voices"][0]["load_ms"], 0.0);
    server.note(format!("warm-up: first {first}, again {again}"));
    // No body: the default voice.
    let default = warm("");
    assert_eq!(default["voices"][0]["voice"], VOICE);
    let unknown = server.post("/v1/warmup", r#"{"voices": ["alloy"]}"#);
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json()["error"]["code"], "unknown_voice");
    drop(server);

    // --preload-voices: loaded before the server says it is ready.
    let server = Server::start(&["--greeting", "", "--models-dir", models_arg, "--preload-voices", "en_US-second-medium"]);
    let r = server.post("/v1/warmup", r#"{"voices": ["en_US-second-medium"]}"#);
    assert_eq!((r.status, &r.json()["voices"][0]["loaded"]), (200, &serde_json::Value::Bool(false)), "preloaded: {}", r.body);
    drop(server);
    // A voice that is not there stops the start with a message that names it.
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["serve", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--greeting", "", "--models-dir", models_arg, "--preload-voices", "nosuch"])
        .current_dir(common::root())
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(90), "voxline serve --preload-voices nosuch")
        .expect("run voxline serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--preload-voices") && stderr.contains("nosuch"), "{}: {stderr}", out.status);
    assert!(!Path::new(&models).join("nosuch.onnx").exists());
}

#[test]
fn the_documented_python_example_streams_audio_and_word_timings() {
    let _slot = shared_slot();
    let script = common::root().join("tests/tts/stream_client.py");
    let doc = std::fs::read_to_string(common::root().join("docs/agents.md")).unwrap();
    let example = std::fs::read_to_string(&script).unwrap();
    assert!(doc.contains(&format!("```python\n{example}```")), "docs/agents.md's /v1/tts example and {} differ", script.display());
    let ok = Command::new("python3").args(["-c", "import websockets"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "python3 cannot import websockets: install it with `scripts/setup.sh --test`");
    let server = Server::start(&["--greeting", "", "--api-token", TOKEN]);
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("ws://{}/v1/tts?token={TOKEN}", server.http))
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(90), "tests/tts/stream_client.py")
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the example failed ({}):\n{}", out.status, tail(&stderr, 30));
    let seconds = out.stdout.len() as f64 / 48000.0;
    assert!((2.0..10.0).contains(&seconds), "{seconds:.2} s of 24 kHz audio:\n{stderr}");
    assert!(stderr.contains("'type': 'ready'") && stderr.contains("'type': 'done'"), "{stderr}");
    for word in ["Your", "driver", "delivery."] {
        assert!(stderr.lines().any(|l| l.trim_end().ends_with(&format!("  {word}"))), "no timing for {word}:\n{stderr}");
    }
}
