//! Call records: a SIP call that heard its greeting and sent some RTP ends
//! with a BYE, and `--call-records FILE` holds one JSON line describing it;
//! without the flag the record is logged on the target `voxline::cdr`.

mod common;

use std::time::{Duration, Instant};

use common::calls::*;
use common::sip::*;
use serde_json::Value;

/// Polls until `read` gives a line.
fn wait_for_line(within: Duration, read: impl Fn() -> Option<String>) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = read() {
            return line;
        }
        assert!(Instant::now() < deadline, "no call record within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A call that hears the greeting, sends `packets` RTP packets and hangs up.
fn short_call(server: &Server, packets: u16) -> Dialog {
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(server, &sip, media.addr);
    for seq in 0..packets {
        let packet = rtp(0, seq, u32::from(seq) * 160, 0x1234, seq == 0, &[0xFF; 160]);
        media.sock.send_to(&packet, dialog.server_media).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // The greeting plays out (about a second) before the caller hangs up.
    let heard = media.collect(Duration::from_millis(2500));
    assert!(heard.len() > 50, "the greeting's RTP: {} packets", heard.len());
    dialog.bye(&sip);
    dialog
}

#[test]
fn an_ended_call_leaves_one_json_line_in_the_records_file() {
    let _slot = shared_slot();
    let records = scratch_dir("cdr").join("calls.jsonl");
    let server = Server::with_greeting("Hello there.", &["--call-records", records.to_str().unwrap()]);
    let dialog = short_call(&server, 10);

    let text = wait_for_line(Duration::from_secs(3), || std::fs::read_to_string(&records).ok().filter(|t| t.ends_with('\n')));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one record per call:\n{text}");
    let r: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]));
    assert_eq!(r["id"], dialog.id.as_str(), "{r}");
    assert_eq!(r["transport"], "sip");
    assert_eq!(r["direction"], "inbound");
    assert_eq!(r["sip_call_id"], dialog.invite.call_id.as_str());
    assert!(r["from"].as_str().is_some_and(|f| !f.is_empty()), "{r}");
    assert!(r["to"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    let start = r["start"].as_str().unwrap_or_default();
    assert!(start.len() == 24 && start.ends_with('Z') && start.as_bytes()[10] == b'T', "RFC 3339: {start}");
    assert!(r["duration_ms"].as_u64().is_some_and(|d| (2000..20_000).contains(&d)), "{r}");
    assert_eq!(r["end_reason"], "remote_bye");
    assert_eq!(r["utterances"], 1, "the greeting: {r}");
    let (p50, max) = (r["first_audio_p50_ms"].as_u64(), r["first_audio_max_ms"].as_u64());
    assert!(p50.is_some() && p50 == max, "one wait, so p50 = max: {r}");
    assert_eq!(r["barge_ins"], 0);
    assert_eq!(r["underruns"], 0, "{r}");
    assert!(r["packets_sent"].as_u64().is_some_and(|n| n > 50), "{r}");
    assert_eq!(r["packets_received"], 10, "{r}");
    for key in ["peer_fraction_lost", "peer_total_lost", "peer_jitter_ms", "rtt_ms"] {
        assert!(r.get(key).is_some_and(|v| v.is_null()), "no RTCP from this caller, so `{key}` is null: {r}");
    }
}

#[test]
fn without_a_file_records_are_logged_on_voxline_cdr() {
    let _slot = shared_slot();
    let server = Server::with_greeting("Hello there.", &[]);
    let dialog = short_call(&server, 3);
    let line = wait_for_line(Duration::from_secs(3), || server.stderr().lines().find(|l| l.contains("voxline::cdr")).map(str::to_owned));
    let json = &line[line.find('{').unwrap_or_else(|| panic!("no JSON in {line}"))..];
    let r: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    assert_eq!(r["id"], dialog.id.as_str(), "{r}");
    assert_eq!(r["packets_received"], 3, "{r}");
}
