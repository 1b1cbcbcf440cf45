//! `POST /v1/audio/speech`, OpenAI's text-to-speech API, against `voxline
//! serve` on loopback: the audio streams back while it is synthesized, says
//! the text (pocketsphinx), comes in each format at its documented rate,
//! `speed` shortens it, bad requests get 400 with what to change, the API
//! token guards it, and the official `openai` Python client streams it.
//!
//! Needs pocketsphinx, and python3 with `openai` (`scripts/setup.sh --test`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::asr::{transcribe_wav, words_in_order, ASR_RATE};
use common::harness::{scratch_dir, tail, OutputWithin};
use common::server::Server;
use common::slots::shared_slot;
use serde_json::{json, Value};

const TOKEN: &str = "tts-secret";
const VOICE: &str = "en_US-joe-medium";
const TEXT: &str = "Your order has shipped and will arrive on Tuesday. \
    The driver will call you thirty minutes before delivery. \
    Thank you for calling, and have a wonderful day.";

/// A response as it arrived: when its first body bytes came, when it ended.
struct Streamed {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    first_body: Option<Duration>,
    done: Duration,
}

impl Streamed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn error(&self) -> Value {
        serde_json::from_slice::<Value>(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))["error"].clone()
    }
}

/// POSTs `body` to /v1/audio/speech and reads the answer as it streams,
/// noting when each read returned.
fn speech(addr: SocketAddr, token: Option<&str>, body: &Value) -> Streamed {
    let body = body.to_string();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /v1/audio/speech HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let t0 = Instant::now();
    s.write_all(request.as_bytes()).unwrap();
    let (mut raw, mut reads) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf).expect("read the response");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        reads.push((t0.elapsed(), raw.len()));
    }
    let done = t0.elapsed();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header end") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let headers: Vec<(String, String)> =
        head.lines().skip(1).filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&raw[split..]) } else { raw[split..].to_vec() };
    // More than a chunk-size line past the header: audio had arrived.
    let first_body = reads.iter().find(|(_, len)| *len > split + 8).map(|(t, _)| *t);
    Streamed { status, headers, body, first_body, done }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).expect("a hex chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn request(format: &str, text: &str) -> Value {
    json!({"model": "tts-1", "input": text, "voice": VOICE, "response_format": format})
}

fn i16s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

#[test]
fn a_wav_streams_back_while_it_is_synthesized_and_says_the_text() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--api-token", TOKEN, "--seed", "1"]);
    let wav = speech(server.http, Some(TOKEN), &request("wav", TEXT));
    assert_eq!(wav.status, 200, "{}", String::from_utf8_lossy(&wav.body));
    assert_eq!(wav.header("content-type"), Some("audio/wav"));
    assert_eq!(wav.header("transfer-encoding"), Some("chunked"), "streamed, its length unknown when it starts");

    // A 16-bit mono WAV at the voice's rate; sizes unknown while streaming.
    let b = &wav.body;
    assert!(b.len() > 44 && &b[..4] == b"RIFF" && &b[8..16] == b"WAVEfmt " && &b[36..40] == b"data", "not a WAV header: {:?}", &b[..b.len().min(44)]);
    let field16 = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let rate = u32::from_le_bytes(b[24..28].try_into().unwrap());
    assert_eq!((field16(20), field16(22), field16(34), rate), (1, 1, 16, 22050), "PCM, mono, 16-bit, the voice's rate");
    let samples = i16s(&b[44..]);
    let seconds = samples.len() as f64 / rate as f64;
    assert!((5.0..20.0).contains(&seconds), "{seconds:.2} s of audio for three sentences");
    assert!(rms(&samples) > 0.02, "speech has energy (RMS {:.4})", rms(&samples));

    // Streaming: audio left with the first chunk, long before the end.
    let first = wav.first_body.expect("a body");
    server.note(format!("first audio bytes after {first:?}, whole response after {:?}, {seconds:.2} s of audio", wav.done));
    assert!(first < wav.done / 3, "first bytes at {first:?} of {:?}: not streamed", wav.done);

    // It says the text (pocketsphinx judges the engine's own audio, at 16 kHz).
    let mut resampler = voxline::audio::StreamResampler::new(rate, ASR_RATE).unwrap();
    let mut wide = Vec::new();
    resampler.process(&samples, &mut wide);
    resampler.flush(&mut wide);
    let path = scratch_dir("tts_api").join("speech.wav");
    voxline::audio::write_wav_file(&path, &wide, ASR_RATE, voxline::audio::WavFormat::Pcm16).unwrap();
    let heard = transcribe_wav(&path);
    let found = words_in_order(TEXT, &heard);
    assert!(found >= 10, "pocketsphinx heard {found} of the text's 27 words in order: {heard:?}");
}

#[test]
fn each_format_comes_at_its_rate_speed_shortens_it_and_bad_requests_say_what_to_change() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--api-token", TOKEN]);
    let addr = server.http;
    let text = "Please hold while I look that up.";

    // pcm: OpenAI's 24 kHz 16-bit; ulaw: 8 kHz, one byte a sample.
    let pcm = speech(addr, Some(TOKEN), &request("pcm", text));
    assert_eq!((pcm.status, pcm.header("content-type")), (200, Some("audio/pcm")));
    let pcm_seconds = pcm.body.len() as f64 / 2.0 / 24000.0;
    let ulaw = speech(addr, Some(TOKEN), &request("ulaw", text));
    assert_eq!(ulaw.status, 200);
    let ulaw_seconds = ulaw.body.len() as f64 / 8000.0;
    assert!((1.0..6.0).contains(&pcm_seconds), "{pcm_seconds:.2} s");
    assert!((ulaw_seconds / pcm_seconds - 1.0).abs() < 0.2, "ulaw {ulaw_seconds:.2} s against pcm {pcm_seconds:.2} s");
    assert!(rms(&i16s(&pcm.body)) > 0.02);

    // speed 2: about half as long (Piper's length_scale 0.5).
    let mut fast = request("pcm", text);
    fast["speed"] = json!(2.0);
    let fast = speech(addr, Some(TOKEN), &fast);
    assert_eq!(fast.status, 200);
    let ratio = fast.body.len() as f64 / pcm.body.len() as f64;
    assert!((0.35..0.7).contains(&ratio), "speed 2 gave {ratio:.2} of the length");

    // Bad requests: 400 with a code and a message that says what to change.
    let refused = |body: Value, code: &str| {
        let r = speech(addr, Some(TOKEN), &body);
        assert_eq!(r.status, 400, "{body}: {}", String::from_utf8_lossy(&r.body));
        let error = r.error();
        assert_eq!(error["code"], code, "{body}: {error}");
        error["message"].as_str().unwrap_or_default().to_owned()
    };
    let mut alloy = request("wav", text);
    alloy["voice"] = json!("alloy");
    assert!(refused(alloy, "unknown_voice").contains(VOICE), "the message names the voices there are");
    refused(request("wav", "   "), "empty_input");
    refused(request("wav", &"word ".repeat(1000)), "input_too_long");
    assert!(refused(request("mp3", text), "unsupported_format").contains("pcm"));
    refused(json!({"model": "tts-1", "input": text, "response_format": "wav"}), "invalid_json");
    let mut slow = request("wav", text);
    slow["speed"] = json!(0.1);
    refused(slow, "invalid_speed");

    // Behind the API token.
    let anonymous = speech(addr, None, &request("wav", text));
    assert_eq!(anonymous.status, 401);
}

#[test]
fn the_official_openai_client_streams_speech() {
    let _slot = shared_slot();
    let ok = Command::new("python3").args(["-c", "import openai"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "python3 cannot import openai: install it with `scripts/setup.sh --test`");
    let server = Server::start(&["--greeting", "", "--api-token", TOKEN]);
    let out_path = scratch_dir("tts_api_openai").join("speech.pcm");
    let script = common::root().join("tests/tts/openai_client.py");
    let base_url = format!("http://{}/v1", server.http);
    let out = Command::new("python3")
        .arg(&script)
        .args([&base_url, TOKEN, VOICE, TEXT])
        .arg(&out_path)
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(90), "the openai client")
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the openai client failed ({}):\n{stdout}\n{}", out.status, tail(&String::from_utf8_lossy(&out.stderr), 30));
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    server.note(format!("openai client: {summary}"));
    let bytes = summary["bytes"].as_u64().unwrap_or_default();
    let seconds = bytes as f64 / 2.0 / 24000.0;
    assert!((5.0..20.0).contains(&seconds), "{seconds:.2} s of 24 kHz audio: {summary}");
    let (first, total) = (summary["first_byte_s"].as_f64().unwrap_or(f64::MAX), summary["total_s"].as_f64().unwrap_or_default());
    assert!(first < total / 3.0, "the client got its first bytes at {first:.3} s of {total:.3} s: not streamed");
    assert!(rms(&i16s(&std::fs::read(&out_path).unwrap())) > 0.02, "speech has energy");
}
