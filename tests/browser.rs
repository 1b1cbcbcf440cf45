//! The demo page in a real browser: headless Chromium (Debian's `chromium`,
//! driven by playwright-core from npm, tests/browser/demo_test.mjs) loads `/`,
//! connects over WebRTC with its fake microphone, types a sentence and presses
//! Enter. Asserted from the page's own state: its RTP receive statistics rise
//! and the audio level with them, the event log shows the utterance with its
//! time to first audio, and the server received the browser's audio. The
//! screenshot is kept at target/test-artifacts/demo_page.png.
//!
//! Needs chromium, node and tests/browser/node_modules (`scripts/setup.sh --test`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::sip::*;
use serde_json::Value;

const TEXT: &str = "Please call us back after six tonight.";

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
    let _ = std::fs::remove_file(&shot);

    let out = Command::new("timeout")
        .args(["120", "node", "demo_test.mjs", &format!("http://{}/", server.http), TEXT])
        .arg(&shot)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node failed ({}): {stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(r["ok"], true, "the page run failed: {} (console: {})", r["error"], r["console"]);

    // The page's own WebRTC statistics: audio arrived, and it was not silence.
    let bytes = r["after"]["bytesReceived"].as_u64().unwrap() - r["before"]["bytesReceived"].as_u64().unwrap();
    assert!(bytes > 20_000, "RTP payload bytes received while speaking: {bytes}");
    let level = r["after"]["maxLevel"].as_f64().unwrap();
    assert!(level > 0.05, "the received audio level rose (max {level})");

    // The event log shows the utterance, with its time to first audio.
    let events = r["events"].as_array().unwrap();
    let started = events.iter().find(|e| e["type"] == "speech.started").unwrap_or_else(|| panic!("no speech.started: {events:?}"));
    assert_eq!(started["text"], TEXT);
    assert!(started["ttfa_ms"].as_f64().is_some_and(|t| t > 0.0 && t < 3000.0), "{started}");
    assert!(events.iter().any(|e| e["type"] == "speech.done" && e["text"] == TEXT), "{events:?}");
    let log = r["log"].as_str().unwrap();
    assert!(log.contains("speech.started") && log.contains("ttfa") && log.contains(TEXT), "the page's event log: {log}");

    // The server heard the browser's (fake) microphone.
    let calls = r["calls"].as_array().unwrap();
    let call = calls.iter().find(|c| c["id"] == r["call"]).unwrap_or_else(|| panic!("the page's call in /calls: {calls:?}"));
    assert_eq!(call["transport"], "webrtc");
    assert!(call["stats"]["packets_received"].as_u64().unwrap() > 25, "{call}");

    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());
}
