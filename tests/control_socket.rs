//! The control WebSocket driving a live SIP call: streamed text, time to first
//! audio, barge-in with what was heard, marks, bad input, isolation between calls.
//! Real binary, real sockets: the call is placed over SIP/UDP and its RTP captured.

mod common;

use std::time::{Duration, Instant};

use common::agent::*;
use common::calls::*;
use common::sip::*;
use serde_json::json;

/// A server without greeting, one call placed by hand with its RTP captured,
/// and an agent attached to it.
struct Live {
    server: Server,
    sip: SipSocket,
    capture: RtpCapture,
    dialog: Dialog,
    agent: Agent,
}

impl Live {
    fn start() -> Live {
        let server = Server::start(&["--greeting", ""]);
        let sip = SipSocket::bind(server.sip);
        let (capture, _) = RtpCapture::bind();
        let dialog = call(&server, &sip, capture.addr);
        let agent = Agent::attach(&server, &dialog.id);
        Live { server, sip, capture, dialog, agent }
    }
}

/// Arrival times of speech packets (payload not all silence) in a capture.
fn speech(capture: &RtpCapture) -> Vec<Instant> {
    capture.snapshot().iter().filter_map(parse_rtp).filter(|p| p.payload.iter().any(|&b| b != 0xFF)).map(|p| p.at).collect()
}

const PARAGRAPH: &str = "Thanks for waiting. Your order shipped this morning, and it should arrive on Thursday. \
     The tracking number is in your e-mail. Is there anything else I can help you with today?";

#[test]
fn streamed_tokens_are_spoken_before_the_turn_ends_and_marks_follow_their_audio() {
    let _slot = exclusive_slot();
    let Live { server: _server, sip, capture, mut dialog, mut agent } = Live::start();

    // An LLM's pace: a token every 40 ms.
    let tokens: Vec<&str> = PARAGRAPH.split_inclusive(' ').collect();
    let sent_first = Instant::now();
    let mut sent_last = sent_first;
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        agent.send(json!({"type": "speak", "text": token, "turn": "t1", "last": last}));
        if i == 3 {
            agent.send(json!({"type": "mark", "name": "after-first-sentence"}));
        }
        sent_last = Instant::now();
        agent.pump(Duration::from_millis(40));
    }
    agent.send(json!({"type": "mark", "name": "end"}));
    let (started_at, started) = agent.wait_for("speech.started", Duration::from_secs(10));
    assert!(started_at < sent_last, "speech started before the turn's last token was sent");
    let ttfa = started["ttfa_ms"].as_f64().expect("ttfa_ms");
    let observed = (started_at - sent_first).as_secs_f64() * 1000.0;
    assert!(ttfa > 0.0 && ttfa < observed + 50.0, "ttfa {ttfa} ms, event seen {observed} ms after the first token");
    let first_speech = *speech(&capture).first().expect("speech reached the caller");
    assert!(first_speech < sent_last, "the caller heard speech before the turn ended");

    let (_, done) = agent.wait_for("speech.done", Duration::from_secs(30));
    assert_eq!(done["turn"], "t1");
    let end = Instant::now() + Duration::from_secs(5);
    while agent.all("mark").len() < 2 && Instant::now() < end {
        agent.pump(Duration::from_millis(20));
    }
    let marks: Vec<(Instant, String)> = agent
        .events
        .iter()
        .filter(|(_, e)| e["type"] == "mark")
        .map(|(t, e)| (*t, e["name"].as_str().unwrap_or_default().to_string()))
        .collect();
    let names: Vec<&str> = marks.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(names, ["after-first-sentence", "end"], "marks in order");
    let speech_times = speech(&capture);
    let last_speech = *speech_times.last().unwrap();
    assert!(marks[1].0 + Duration::from_millis(30) >= last_speech, "`end` came after the last audio before it left");
    assert!(marks[0].0 < last_speech, "the first mark came before the rest of the turn was played");
    let words = agent.all("word");
    assert!(words.len() >= 25, "word timings from the RTP clock: {}", words.len());
    let heard = done["text"].as_str().unwrap_or_default();
    assert!(heard.contains("Thursday") && heard.contains("today?"), "speech.done carries the turn's text: {heard}");
    dialog.bye(&sip);
}

#[test]
fn clear_silences_the_call_within_two_packets_and_reports_what_was_heard() {
    let _slot = exclusive_slot();
    let Live { server: _server, sip, capture, mut dialog, mut agent } = Live::start();

    agent.send(json!({"type": "speak", "text": PARAGRAPH, "turn": "long", "last": true}));
    let (started_at, _) = agent.wait_for("speech.started", Duration::from_secs(10));
    while Instant::now() < started_at + Duration::from_millis(1500) {
        agent.pump(Duration::from_millis(10));
    }
    agent.send(json!({"type": "clear"}));
    let cleared_sent = Instant::now();
    let (_, cleared) = agent.wait_for("cleared", Duration::from_secs(2));
    agent.pump(Duration::from_millis(500));

    let speech_times = speech(&capture);
    let after: Vec<_> = speech_times.iter().filter(|t| **t > cleared_sent + Duration::from_millis(40)).collect();
    assert!(after.is_empty(), "{} speech packets arrived more than 40 ms after clear", after.len());
    let heard_ms = cleared["heard_ms"].as_u64().expect("heard_ms");
    // Talkspurts: from each marker packet to the last speech packet before the next marker.
    let packets: Vec<Rtp> = capture.snapshot().iter().filter_map(parse_rtp).collect();
    let is_speech = |p: &Rtp| p.payload.iter().any(|&b| b != 0xFF);
    let markers: Vec<usize> = packets.iter().enumerate().filter(|(_, p)| p.marker).map(|(i, _)| i).collect();
    assert!(!markers.is_empty(), "a talkspurt began");
    let mut captured_ms = 0;
    for (k, &m) in markers.iter().enumerate() {
        let next = markers.get(k + 1).copied().unwrap_or(packets.len());
        if let Some(last) = (m..next).rev().find(|&i| is_speech(&packets[i])) {
            captured_ms += (last + 1 - m) as u64 * 20;
        }
    }
    assert!(heard_ms.abs_diff(captured_ms) <= 40, "heard_ms {heard_ms} vs {captured_ms} ms of talkspurt captured");
    let heard = cleared["heard_text"].as_str().unwrap_or_default();
    assert!(heard.starts_with("Thanks for waiting."), "heard text starts at the beginning: {heard:?}");
    assert!(!heard.contains("anything else"), "the unplayed end is not reported as heard: {heard:?}");
    assert!(agent.find("speech.done").is_none(), "an interrupted turn is not `done`");
    // The call goes on: silence packets keep flowing, and new text is spoken.
    agent.send(json!({"type": "speak", "text": "Okay.", "last": true}));
    agent.wait_for("speech.done", Duration::from_secs(10));
    dialog.bye(&sip);
}

#[test]
fn bad_messages_get_error_events_and_the_call_keeps_running() {
    let _slot = shared_slot();
    let Live { server, sip, capture, mut dialog, mut agent } = Live::start();

    agent.send_raw("{not json");
    agent.send_raw(r#"{"type": "dance"}"#);
    agent.send_raw(r#"{"type": "speak"}"#);
    agent.send_raw(&format!(r#"{{"type": "speak", "text": "{}"}}"#, "a".repeat(70_000)));
    agent.pump(Duration::from_millis(300));
    let codes: Vec<String> = agent.all("error").iter().map(|e| e["code"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(codes, ["malformed_json", "invalid_message", "invalid_message", "frame_too_large"], "{:#?}", agent.all("error"));
    let before = capture.count();
    agent.send(json!({"type": "speak", "text": "Still here.", "last": true}));
    agent.wait_for("speech.done", Duration::from_secs(10));
    assert!(capture.count() > before + 10, "RTP kept flowing");

    // An unknown call id is refused before the upgrade.
    let err = tungstenite::connect(format!("ws://{}/v1/calls/nope/control", server.http)).expect_err("no such call");
    match err {
        tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 404),
        other => panic!("expected an HTTP 404, got {other}"),
    }
    dialog.bye(&sip);
    agent.wait_for("call.ended", Duration::from_secs(5));
}

#[test]
fn two_agents_on_two_calls_see_only_their_own_events() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let (sip_a, sip_b) = (SipSocket::bind(server.sip), SipSocket::bind(server.sip));
    let (cap_a, _) = RtpCapture::bind();
    let (cap_b, _) = RtpCapture::bind();
    let mut a = call(&server, &sip_a, cap_a.addr);
    let mut b = call(&server, &sip_b, cap_b.addr);
    let mut agent_a = Agent::attach(&server, &a.id);
    let mut agent_b = Agent::attach(&server, &b.id);
    agent_a.send(json!({"type": "speak", "text": "This is call A.", "turn": "a1", "last": true}));
    agent_a.send(json!({"type": "mark", "name": "a-mark"}));
    agent_a.wait_for("speech.done", Duration::from_secs(10));
    agent_a.pump(Duration::from_millis(200));
    agent_b.pump(Duration::from_millis(200));
    let b_types: Vec<String> = agent_b.events.iter().map(|(_, e)| e["type"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(b_types, ["call.attached"], "agent B saw another call's events");
    assert!(speech(&cap_b).is_empty(), "call B stayed silent");
    assert!(!speech(&cap_a).is_empty());
    a.bye(&sip_a);
    agent_a.wait_for("call.ended", Duration::from_secs(5));
    agent_b.pump(Duration::from_millis(200));
    assert!(agent_b.find("call.ended").is_none(), "B's call is still up");
    b.bye(&sip_b);
}

#[test]
fn an_api_token_protects_the_api_and_the_sockets() {
    use tungstenite::client::IntoClientRequest;
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--api-token", "s3cret"]);
    assert_eq!(server.get("/healthz").status, 200, "health checks stay open");
    let denied = server.get("/calls");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(server.get("/calls?token=wrong").status, 401);
    assert_eq!(server.get("/calls?token=s3cret").status, 401, "?token= only on WebSocket URLs (it would leak into logs)");

    let url = format!("ws://{}/v1/calls/nope/control", server.http);
    let status = |request| match tungstenite::connect(request) {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    assert_eq!(status(url.clone().into_client_request().unwrap()), 401, "a socket without the token is refused");
    let mut with_header = url.clone().into_client_request().unwrap();
    with_header.headers_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert_eq!(status(with_header), 404, "with the token the request gets through (to an unknown call)");
    assert_eq!(status(format!("{url}?token=s3cret").into_client_request().unwrap()), 404, "?token= works on a WebSocket URL");
    let mut foreign = format!("{url}?token=s3cret").into_client_request().unwrap();
    foreign.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(status(foreign), 403, "a page from another site cannot drive the sockets");
}

#[test]
fn an_agent_that_stops_reading_holds_up_no_other_call_and_loses_no_speech_event_of_its_own() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let (sip_a, sip_b) = (SipSocket::bind(server.sip), SipSocket::bind(server.sip));
    let media_a = Media::bind();
    let (cap_b, _) = RtpCapture::bind();
    let mut a = call(&server, &sip_a, media_a.addr);
    let mut b = call(&server, &sip_b, cap_b.addr);
    let mut agent_a = Agent::attach(&server, &a.id);
    let mut agent_b = Agent::attach(&server, &b.id);

    // A asks for caller audio and a turn, then reads nothing while its
    // caller talks (50 frames a second) and B's agent runs a turn.
    agent_a.send(json!({"type": "caller_audio", "enabled": true, "format": "pcm16"}));
    agent_a.send(json!({"type": "speak", "text": "This is call A, speaking.", "turn": "a1", "last": true}));
    let sent = Instant::now();
    agent_b.send(json!({"type": "speak", "text": "This is call B.", "turn": "b1", "last": true}));
    let mut seq = 0u16;
    let mut b_done = None;
    while sent.elapsed() < Duration::from_secs(4) {
        let payload = [0x55u8; 160];
        media_a.sock.send_to(&rtp(0, seq, seq as u32 * 160, 0xA1, seq == 0, &payload), a.server_media).unwrap();
        seq = seq.wrapping_add(1);
        agent_b.pump(Duration::from_millis(20));
        if b_done.is_none() {
            b_done = agent_b.find("speech.done").map(|(at, _)| at.duration_since(sent));
        }
    }
    let b_done = b_done.expect("B's speech.done while A's agent read nothing");
    assert!(b_done < Duration::from_secs(3), "B's turn took {b_done:?}");

    // A reads at last: its own speech events are all there, in order.
    agent_a.pump(Duration::from_millis(500));
    let kinds: Vec<&str> = agent_a.events.iter().map(|(_, e)| e["type"].as_str().unwrap_or_default()).filter(|k| *k != "word").collect();
    let order: Vec<&str> = kinds.iter().copied().filter(|k| ["speech.started", "utterance.done", "speech.done"].contains(k)).collect();
    assert_eq!(order.first(), Some(&"speech.started"), "{kinds:?}");
    assert_eq!(order.last(), Some(&"speech.done"), "{kinds:?}");
    assert!(agent_a.audio.len() >= 100, "caller audio reached A's agent: {} frames", agent_a.audio.len());
    a.bye(&sip_a);
    agent_a.wait_for("call.ended", Duration::from_secs(5));
    b.bye(&sip_b);
}
