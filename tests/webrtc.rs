//! Browsers' calls over WebRTC, with a real WebRTC peer: Python aiortc
//! (tests/webrtc/aiortc_client.py) negotiates over `POST /v1/webrtc/offer`,
//! ICE on loopback, DTLS-SRTP, the control protocol on a data channel.
//!
//! * What the client hears is the engine's own phone-band output, sample for
//!   sample (seeded): the same packetizer as SIP calls, no second clock or
//!   codec. That output, rendered at 16 kHz with the same seed, transcribes to
//!   the text (pocketsphinx is wideband; at 8 kHz it is no judge, DESIGN.md).
//! * The client's microphone (a 440 Hz tone) comes back as caller audio.
//! * Bad offers get 400s that say why; data-channel garbage gets error events;
//!   a client that vanishes is cleaned up while a SIP call runs on untouched.
//!
//! Needs python3 with aiortc and numpy (`scripts/setup.sh --test`), pocketsphinx.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::asr::{transcribe, word_edits, words};
use common::agent::Agent;
use common::calls::*;
use common::sip::*;
use serde_json::{json, Value};

const TEXT: &str = "I will send you a text message right now.";
const SEED: &str = "7";

fn client_script() -> PathBuf {
    common::root().join("tests/webrtc/aiortc_client.py")
}

fn require_aiortc() {
    let ok = Command::new("python3").args(["-c", "import aiortc, numpy"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(ok.is_ok_and(|s| s.success()), "python3 cannot import aiortc and numpy: install them with `scripts/setup.sh --test`");
}

/// Runs the aiortc client to the end; its JSON summary.
fn run_client(server: &Server, dir: &Path, extra: &[&str]) -> Value {
    let wav = dir.join("received.wav");
    let out = Command::new("timeout")
        .arg("90")
        .arg("python3")
        .arg(client_script())
        .args(["--http", &server.http.to_string(), "--text", TEXT, "--wav"])
        .arg(&wav)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the aiortc client failed ({}):\n{stdout}\n{}", out.status, tail(&stderr, 30));
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}"))
}

fn read_pcm16(path: &Path) -> Vec<f32> {
    let (samples, rate) = voxline::audio::read_wav(path).expect("read WAV");
    assert_eq!(rate, 8000);
    samples
}

/// `voxline say` with the server's seed.
fn say(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["say", TEXT, "--seed", SEED])
        .args(args)
        .current_dir(common::root())
        .stdin(Stdio::null())
        .output_within(Duration::from_secs(120), "voxline say")
        .expect("run voxline say");
    assert!(out.status.success(), "voxline say failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn types(summary: &Value) -> Vec<String> {
    summary["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap_or_default().to_string()).collect()
}

#[test]
fn a_webrtc_client_hears_the_text_it_sent_on_the_data_channel_sample_for_sample() {
    require_aiortc();
    require_pocketsphinx();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--seed", SEED, "--webrtc-ip", "127.0.0.1"]);
    let dir = scratch_dir("webrtc-hear");
    let summary = run_client(&server, &dir, &[]);
    let kinds = types(&summary);
    assert_eq!(summary["codec"], "audio/PCMU", "{}", summary["answer_sdp"]);

    // The data channel speaks the control protocol: hello, errors for garbage, speech events.
    assert_eq!(kinds.iter().find(|k| !k.starts_with('_')).map(String::as_str), Some("call.attached"), "{kinds:?}");
    let errors: Vec<&str> =
        summary["events"].as_array().unwrap().iter().filter(|e| e["type"] == "error").map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(errors, ["malformed_json", "invalid_message"], "{kinds:?}");
    let started = summary["events"].as_array().unwrap().iter().find(|e| e["type"] == "speech.started").expect("speech.started");
    let ttfa = started["ttfa_ms"].as_f64().unwrap();
    assert!(ttfa > 0.0 && ttfa < 3000.0, "time to first audio {ttfa} ms");
    let done = summary["events"].as_array().unwrap().iter().find(|e| e["type"] == "speech.done").expect("speech.done");
    assert_eq!(done["text"], TEXT);
    assert!(kinds.iter().filter(|k| *k == "word").count() >= 5, "word timings: {kinds:?}");

    // What arrived over SRTP is the engine's phone-band rendering, exactly:
    // sample for sample once silence is set aside (an underrun, synthesis
    // running late on a loaded machine, puts digital silence into the stream
    // and the audio resumes where it was; silence decodes to exactly 0).
    let received = read_pcm16(&dir.join("received.wav"));
    // The call plays the utterance with its edge silence trimmed (10 ms before
    // the first sound, 60 ms after the last).
    let phone = say(&["--rate", "8000", "--mulaw", "--raw", "-o", "-"]);
    let expected: Vec<f32> = voxline::audio::decode_mulaw(voxline::media::trim_edges(&phone));
    let sound = |samples: &[f32]| -> Vec<f32> { samples.iter().copied().filter(|&s| s != 0.0).collect() };
    let (got, want) = (sound(&received), sound(&expected));
    assert!(want.len() > 10_000, "the engine's rendering has {} non-silent samples", want.len());
    assert_eq!(got.len(), want.len(), "non-silent samples received vs the engine's own 8 kHz output");
    let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
    assert_eq!(first_diff, None, "the received audio differs from the engine's own 8 kHz output");
    let underruns = summary["events"].as_array().unwrap().iter().find(|e| e["type"] == "utterance.done").map_or(0, |e| e["underruns"].as_u64().unwrap_or(0));
    eprintln!("{} non-silent samples equal; {underruns} underrun frames", want.len());
    let rms = (got.iter().map(|s| s * s).sum::<f32>() / got.len() as f32).sqrt();
    assert!(rms > 0.02, "voiced (rms {rms})");

    // ... and that rendering, at 16 kHz, says the text.
    let wide = dir.join("wide.wav");
    say(&["--rate", "16000", "-o", wide.to_str().unwrap()]);
    let heard = transcribe(&wide);
    let edits = word_edits(&words(TEXT), &words(&heard));
    assert!(edits * 4 <= words(TEXT).len(), "pocketsphinx heard {heard:?} for {TEXT:?} ({edits} word errors)");

    // The client's microphone came back as caller audio frames (PCM16 on the data channel).
    assert!(summary["binary_frames"].as_u64().unwrap() > 50, "caller audio frames: {}", summary["binary_frames"]);
    let hz = summary["caller_hz"].as_f64().unwrap();
    let caller_rms = summary["caller_rms"].as_f64().unwrap();
    assert!((420.0..460.0).contains(&hz), "the caller's 440 Hz tone arrives ({hz:.0} Hz)");
    assert!((4500.0..6800.0).contains(&caller_rms), "at its level: rms {caller_rms:.0} (sent 5657)");
}

#[test]
fn bad_offers_get_reasons_and_a_vanished_browser_is_cleaned_up_beside_a_running_sip_call() {
    require_aiortc();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--webrtc-ip", "127.0.0.1"]);

    // Bad offers: each a 400 with a code and a reason; nothing is left behind.
    let video_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    let cases: [(&str, &str, &str); 6] = [
        ("{not json", "invalid_json", ""),
        (r#"{"type":"offer"}"#, "invalid_json", "sdp"),
        (r#"{"type":"offer","sdp":"hello"}"#, "invalid_sdp", "v=0"),
        (&json!({"type": "offer", "sdp": video_only}).to_string(), "invalid_sdp", "no audio"),
        (&json!({"type": "answer", "sdp": video_only}).to_string(), "invalid_offer", "offer"),
        (
            &json!({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n", "voice": "nobody"}).to_string(),
            "unknown_voice",
            "nobody",
        ),
    ];
    for (body, code, says) in cases {
        let r = server.post("/v1/webrtc/offer", body);
        assert_eq!(r.status, 400, "{body} -> {} {}", r.status, r.body);
        let v = r.json();
        assert_eq!(v["error"]["code"], code, "{body} -> {}", r.body);
        assert!(v["error"]["message"].as_str().unwrap_or_default().contains(says), "{body} -> {}", r.body);
    }
    // An offer the stack cannot apply (no ICE credentials, no fingerprint).
    let bare = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"});
    let r = server.post("/v1/webrtc/offer", &bare.to_string());
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(server.calls().is_empty(), "no call is left by a refused offer: {:?}", server.calls());

    // A SIP call runs throughout.
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);

    // A browser that disappears two seconds into its speech (no DTLS close, no SCTP abort).
    let dir = scratch_dir("webrtc-vanish");
    let summary = run_client(&server, &dir, &["--vanish-after", "2"]);
    let id = summary["call"].as_str().unwrap().to_string();
    let gone_at = Instant::now();
    let deadline = gone_at + Duration::from_secs(25);
    while server.calls().iter().any(|c| c.id == id) {
        assert!(Instant::now() < deadline, "the vanished browser's call is still listed 25 s later: {:?}", server.calls());
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = gone_at.elapsed();
    assert!(took < Duration::from_secs(20), "cleaned up after {took:?}");

    // The SIP call did not notice.
    let packets = media.collect(Duration::from_millis(600));
    assert!(packets.len() >= 25, "the SIP call's RTP keeps flowing: {} packets in 600 ms", packets.len());
    let calls = server.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].sip_call_id, dialog.invite.call_id);
    dialog.bye(&sip);
}

#[test]
fn a_closed_peer_connection_ends_the_call_at_once_and_our_hangup_says_call_ended_first() {
    require_aiortc();
    let _slot = shared_slot();
    // A configured greeting, which the browser's offer turns off (`greeting: false`).
    let server = Server::start(&["--greeting", "Welcome to voxline. How can I help you today?", "--webrtc-ip", "127.0.0.1"]);
    let mut watcher = Agent::connect(&format!("ws://{}/v1/events", server.http));
    watcher.wait_for("events.attached", Duration::from_secs(5));

    // The browser listens for two seconds, then closes its peer connection.
    let dir = scratch_dir("webrtc-close");
    let (clock_instant, clock_wall) = (Instant::now(), std::time::SystemTime::now());
    let summary = std::thread::scope(|s| {
        let client = s.spawn(|| run_client(&server, &dir, &["--mode", "close"]));
        while !client.is_finished() {
            watcher.pump(Duration::from_millis(20));
        }
        client.join().expect("client thread")
    });
    let id = summary["call"].as_str().unwrap().to_string();
    assert!(summary["frames"].as_u64().unwrap() >= 50, "the track ran while it listened: {summary}");
    assert_eq!(summary["peak"], 0, "`greeting: false` plays no greeting (loudest sample heard in 2 s): {summary}");

    let ended = |w: &Agent| w.events.iter().find(|(_, e)| e["type"] == "call.ended" && e["call"] == id.as_str()).cloned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ended(&watcher).is_none() && Instant::now() < deadline {
        watcher.pump(Duration::from_millis(20));
    }
    let (at, event) = ended(&watcher).expect("call.ended on the events socket");
    assert_eq!(event["reason"], "remote_hangup", "{event}");
    let closed = std::time::UNIX_EPOCH + Duration::from_secs_f64(summary["closed_unix"].as_f64().unwrap());
    let ended_wall = clock_wall + at.duration_since(clock_instant);
    let took = ended_wall.duration_since(closed).unwrap_or_default();
    assert!(took < Duration::from_secs(1), "the call ended {took:?} after the browser closed its peer connection");
    assert!(!server.calls().iter().any(|c| c.id == id), "the closed call is no longer listed");

    // Our hangup: the data channel carries `call.ended` before it closes.
    let dir = scratch_dir("webrtc-hangup");
    let summary = run_client(&server, &dir, &["--mode", "hangup"]);
    assert_eq!(summary["hangup_status"], 202, "{summary}");
    let closed_at = summary["channel_closed_at"].as_f64().unwrap_or_else(|| panic!("the data channel never closed: {summary}"));
    let events = summary["events"].as_array().unwrap();
    let ended = events.iter().find(|e| e["type"] == "call.ended").unwrap_or_else(|| panic!("no call.ended on the data channel: {events:?}"));
    assert_eq!(ended["reason"], "local_hangup");
    assert!(ended["_at"].as_f64().unwrap() <= closed_at, "call.ended came after the channel closed: {events:?}");
    assert!(server.calls().is_empty(), "{:?}", server.calls());
}
