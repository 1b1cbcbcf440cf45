//! The demo page in a real browser: headless Chromium (Debian's `chromium`,
//! driven by playwright-core from npm, tests/browser/demo_test.mjs) loads `/`,
//! connects over WebRTC with its fake microphone (no greeting), types a
//! sentence and presses Enter. Asserted from the page's own state: its RTP
//! receive statistics rise and the audio level with them; the event log shows
//! the utterance with its time to first audio; the transcript lights up the
//! sentence's words from `word` events; the speaking indicator is on while it
//! speaks and off after; the page times the first audio it hears itself (and
//! that is no sooner than the server's `ttfa_ms`); the server received the
//! browser's audio. Then the page hangs up and shows the call ended, connects
//! again without a reload (fresh per-call state, the old peer connection
//! closed, still one drawing loop), speaks a second sentence and hangs up.
//! Screenshots: target/test-artifacts/demo_page.png (the first call) and
//! demo_page_reconnected.png.
//!
//! Needs chromium, node and tests/browser/node_modules (`scripts/setup.sh --test`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::sip::*;
use serde_json::Value;

const TEXT: &str = "Please call us back after six tonight.";
const TEXT2: &str = "Thanks, that is all for today.";

#[test]
fn chromium_hears_text_typed_on_the_demo_page() {
    let dir = common::root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser: run `scripts/setup.sh --test`"
    );
    require_tool("chromium", "install it with `scripts/setup.sh --test` (apt: chromium)");
    require_tool("node", "install it with `scripts/setup.sh --test` (apt: nodejs)");
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--webrtc-ip", "127.0.0.1"]);
    let artifacts = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| common::root().join("target").into()))
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("demo_page.png");
    let shot2 = artifacts.join("demo_page_reconnected.png");
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(&shot2);

    let out = Command::new("timeout")
        .args(["120", "node", "demo_test.mjs", &format!("http://{}/", server.http), TEXT])
        .arg(&shot)
        .arg(TEXT2)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node failed ({}): {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(r["ok"], true, "the page run failed at `{}`: {} (console: {})", r["step"], r["error"], r["console"]);

    // The page's own WebRTC statistics: audio arrived, and it was not silence.
    let bytes = r["after"]["bytesReceived"].as_u64().unwrap() - r["before"]["bytesReceived"].as_u64().unwrap();
    assert!(bytes > 20_000, "RTP payload bytes received while speaking: {bytes}");
    let level = r["after"]["maxLevel"].as_f64().unwrap();
    assert!(level > 0.05, "the received audio level rose (max {level})");

    // The event log shows the utterance, with its time to first audio.
    let events = r["events"].as_array().unwrap();
    let started = events.iter().find(|e| e["type"] == "speech.started").unwrap_or_else(|| panic!("no speech.started: {events:?}"));
    assert_eq!(started["text"], TEXT);
    let server_ttfa = started["ttfa_ms"].as_f64().unwrap_or(-1.0);
    assert!(server_ttfa > 0.0 && server_ttfa < 3000.0, "{started}");
    assert!(events.iter().any(|e| e["type"] == "speech.done" && e["text"] == TEXT), "{events:?}");
    let log = r["log"].as_str().unwrap();
    assert!(log.contains("speech.started") && log.contains("ttfa") && log.contains(TEXT), "the page's event log: {log}");

    let first = &r["first"];
    assert_spoken(first, TEXT, "the first call");
    // The page's own first-audio time: Enter -> the received track's level
    // rising. It includes the server's (first text received -> first packet
    // sent), so it is never less.
    let turn = &first["turns"][0];
    assert_eq!(turn["serverTtfaMs"].as_f64(), Some(server_ttfa), "{turn}");
    let page_ttfa = turn["pageFirstAudioMs"].as_f64().unwrap_or_else(|| panic!("the page timed no first audio: {turn}"));
    assert!(page_ttfa > 0.0 && page_ttfa < 3000.0, "first audio heard in the page after {page_ttfa} ms: {turn}");
    assert!(page_ttfa + 1.0 >= server_ttfa, "the page heard audio ({page_ttfa} ms) before the server sent it ({server_ttfa} ms): {turn}");
    assert_eq!(first["p50"]["pageFirstAudioMs"].as_f64(), Some(page_ttfa), "{}", first["p50"]);
    assert_eq!(first["p50"]["serverTtfaMs"].as_f64(), Some(server_ttfa), "{}", first["p50"]);
    eprintln!("first audio: heard in the page {page_ttfa:.0} ms after Enter; server ttfa {server_ttfa:.0} ms");

    // The server heard the browser's (fake) microphone.
    let calls = r["calls"].as_array().unwrap();
    let call = calls.iter().find(|c| c["id"] == r["call"]).unwrap_or_else(|| panic!("the page's call in /calls: {calls:?}"));
    assert_eq!(call["transport"], "webrtc");
    assert!(call["stats"]["packets_received"].as_u64().unwrap() > 25, "{call}");

    assert_hung_up(&first["ended"], "the first call");

    // Connected again, without a reload: the per-call state starts afresh, the
    // old peer connection is closed, and there is still one drawing loop.
    let second = &r["second"];
    assert_ne!(second["call"], r["call"], "a new call");
    assert_eq!(second["turnCounter"], 0, "{second}");
    assert_eq!(second["turnsBefore"], 0, "{second}");
    assert_eq!(second["transcriptEntries"], 0, "the transcript starts empty: {second}");
    assert_eq!(second["eventTypes"], serde_json::json!(["call.attached"]), "the events start afresh: {second}");
    assert_eq!(second["firstPeerConnection"], "closed", "the first call's peer connection");
    assert_eq!(second["loops"], 1, "drawing loops");
    let (fps1, fps2) = (first["framesPerSecond"].as_f64().unwrap(), second["framesPerSecond"].as_f64().unwrap());
    assert!(fps1 > 5.0 && fps2 > 5.0, "the drawing loop runs: {fps1:.1} and {fps2:.1} callbacks a second");
    assert!(fps2 < fps1 * 1.5, "drawing-loop callbacks a second: {fps1:.1} in the first call, {fps2:.1} after reconnecting (stacked loops?)");
    assert_spoken(second, TEXT2, "the second call");
    assert_eq!(second["turns"].as_array().map(Vec::len), Some(1), "{}", second["turns"]);
    assert_eq!(second["turns"][0]["turn"], "t1", "turn ids start again");
    let page_ttfa2 = second["turns"][0]["pageFirstAudioMs"].as_f64().unwrap_or(-1.0);
    assert!(page_ttfa2 > 0.0 && page_ttfa2 < 3000.0, "{}", second["turns"]);
    eprintln!("after reconnecting: heard in the page {page_ttfa2:.0} ms; server ttfa {:.0} ms", second["turns"][0]["serverTtfaMs"].as_f64().unwrap_or(-1.0));
    assert_hung_up(&second["ended"], "the second call");

    for shot in [&shot, &shot2] {
        assert!(std::fs::metadata(shot).is_ok_and(|m| m.len() > 10_000), "screenshot at {}", shot.display());
        eprintln!("screenshot: {}", shot.display());
    }
}

/// One typed sentence, as the page showed it: the indicator came on and went
/// off, the transcript holds the sentence and `word` events lit its words.
fn assert_spoken(run: &Value, text: &str, what: &str) {
    assert_eq!(run["seenOn"], true, "{what}: the speaking indicator never came on: {}", run["speaking"]);
    assert_eq!(run["offAfter"], true, "{what}: the speaking indicator stayed on after speech.done: {}", run["speaking"]);
    let t = &run["transcript"];
    assert_eq!(t["text"].as_str().map(str::trim), Some(text), "{what}: the transcript: {t}");
    let words = text.split_whitespace().count() as u64;
    assert_eq!(t["words"].as_u64(), Some(words), "{what}: {t}");
    let matched = t["matched"].as_u64().unwrap_or(0);
    assert!(matched * 5 >= words * 4, "{what}: only {matched} of {words} words were lit by `word` events: {t}");
    assert_eq!(t["heard"].as_u64(), Some(words), "{what}: after speech.done every word is heard: {t}");
    assert_eq!(t["dropped"].as_u64(), Some(0), "{what}: {t}");
}

/// After Hang up the page shows the call ended, with the server's reason.
fn assert_hung_up(ended: &Value, what: &str) {
    assert_eq!(ended["state"], "ended", "{what}: {ended}");
    let event = &ended["callEnded"];
    assert_eq!(event["reason"], "local_hangup", "{what}: call.ended on the data channel before it closed: {ended}");
    assert_eq!(ended["reason"], "local_hangup", "{what}: {ended}");
    let line = ended["transcriptEnded"].as_str().unwrap_or_default();
    assert!(line.contains("call ended") && line.contains("local_hangup"), "{what}: the transcript's last line: {ended}");
    assert!(ended["stateText"].as_str().is_some_and(|s| s.contains("ended") && s.contains("local_hangup")), "{what}: {ended}");
}
