//! What an agent integrates with beyond the basic control socket: the events
//! socket and webhook that announce incoming calls (accept, reject, or let the
//! greeting run), the ConversationRelay dialect, DTMF both ways, caller audio,
//! and voices and presets per call and per turn. Real binary, real sockets,
//! calls placed over SIP/UDP by hand or by sipp.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent::*;
use common::calls::*;
use common::sip::*;
use serde_json::{json, Value};

/// Arrival times of speech packets (payload not all silence) in a capture.
fn speech(capture: &RtpCapture) -> Vec<Instant> {
    capture.snapshot().iter().filter_map(parse_rtp).filter(|p| p.payload_type == 0 && p.payload.iter().any(|&b| b != 0xFF)).map(|p| p.at).collect()
}

/// Sends an INVITE with extra header lines; returns it (the answer is the caller's to read).
fn invite(sip: &SipSocket, media: SocketAddr, headers: &[&str]) -> Request {
    let mut invite = sip.request("INVITE").sdp(pcmu_offer(media));
    for h in headers {
        invite = invite.header(h);
    }
    sip.send(&invite);
    invite
}

/// ACKs a 200 to `invite`; returns (to-tag, contact).
fn ack(sip: &SipSocket, invite: &Request, ok: &Received) -> (String, Option<String>) {
    let to_tag = ok.msg.to_tag().expect("200 has a To tag");
    let contact = ok.msg.contact_uri();
    sip.send(&invite.in_dialog("ACK", 1, &to_tag, contact.as_deref()));
    (to_tag, contact)
}

/// A packet from [`Media::collect`]: (arrival, seq, timestamp, payload type, payload).
type Packet = (Instant, u16, u32, u8, Vec<u8>);

/// RFC 4733 events in captured packets: (event code, end bit, duration, timestamp) per packet.
fn telephone_events(packets: &[Packet], pt: u8) -> Vec<(u8, bool, u16, u32)> {
    packets
        .iter()
        .filter(|p| p.3 == pt && p.4.len() >= 4)
        .map(|p| (p.4[0], p.4[1] & 0x80 != 0, u16::from_be_bytes([p.4[2], p.4[3]]), p.2))
        .collect()
}

/// Distinct digits in RFC 4733 packets (one per event timestamp).
fn digits_sent(events: &[(u8, bool, u16, u32)]) -> String {
    let mut out = String::new();
    let mut last_ts = None;
    for &(code, _, _, ts) in events {
        if last_ts != Some(ts) {
            last_ts = Some(ts);
            out.push(match code {
                0..=9 => (b'0' + code) as char,
                10 => '*',
                11 => '#',
                12..=15 => (b'A' + code - 12) as char,
                _ => '?',
            });
        }
    }
    out
}

#[test]
fn the_events_socket_announces_calls_and_the_agent_accepts_rejects_or_lets_the_greeting_run() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Hello from voxline.", "--decision-timeout-ms", "1500", "--seed", "1"]);
    let mut watcher = Agent::connect(&format!("ws://{}/v1/events?decide=true", server.http));
    watcher.wait_for("events.attached", WAIT);

    // 1. Accepted with the agent's own greeting; the X- headers reach the agent.
    let sip = SipSocket::bind(server.sip);
    let (capture, _) = RtpCapture::bind();
    let inv = invite(&sip, capture.addr, &["X-Customer-Id: 42", "X-Campaign: spring"]);
    let (_, incoming) = watcher.wait_for("call.incoming", WAIT);
    assert_eq!(incoming["headers"]["X-Customer-Id"], "42", "{incoming}");
    assert_eq!(incoming["headers"]["X-Campaign"], "spring");
    assert!(incoming["from"].as_str().unwrap_or_default().contains("sip:"), "{incoming}");
    assert!(sip.recv_until(WAIT, |m| m.status() == Some(180)).is_some(), "the call rings while the agent decides");
    let id = incoming["call"].as_str().expect("call id").to_string();
    watcher.send(json!({"type": "accept", "call": id, "greeting": "Welcome back. Your appointment is on Tuesday."}));
    let ok = sip.final_response(&inv, WAIT).expect("an answer");
    assert_eq!(ok.msg.status(), Some(200));
    let (to_tag, contact) = ack(&sip, &inv, &ok);
    watcher.wait_for("call.answered", WAIT);
    // An agent attached while the greeting plays hears its events as turn `greeting`.
    let mut agent = Agent::attach(&server, &id);
    let (_, done) = agent.wait_for("speech.done", Duration::from_secs(15));
    assert_eq!(done["turn"], "greeting", "{done}");
    assert_eq!(done["text"], "Welcome back. Your appointment is on Tuesday.");
    assert!(agent.all("word").iter().all(|w| w["turn"] == "greeting"), "{:?}", agent.all("word"));
    capture.wait_until(Duration::from_secs(10), |pkts| pkts.iter().filter_map(parse_rtp).filter(|p| p.payload.iter().any(|&b| b != 0xFF)).count() > 50);
    let voiced = speech(&capture).len();
    assert!(voiced > 50, "the agent's greeting was spoken ({voiced} speech packets)");
    let pcm = RtpAnalysis::new(&capture.snapshot()).all_pcm();
    let text = transcribe_8k(&pcm, &scratch_dir("accept"), "greeting");
    // Any two of its words in order: the configured greeting ("Hello from
    // voxline.") shares none of them.
    let heard = words_in_order("Welcome back. Your appointment is on Tuesday.", &text);
    assert!(heard >= 2, "the agent's greeting, not the default one: {text:?} ({heard} of its words)");
    let bye = inv.in_dialog("BYE", 2, &to_tag, contact.as_deref());
    sip.send(&bye);
    assert_eq!(sip.final_response(&bye, WAIT).and_then(|r| r.msg.status()), Some(200));
    let (_, ended) = watcher.wait_for("call.ended", WAIT);
    assert_eq!(ended["call"], id.as_str());
    assert_eq!(ended["reason"], "remote_bye");

    // 2. Rejected with the agent's status.
    watcher.events.clear();
    let sip2 = SipSocket::bind(server.sip);
    let inv2 = invite(&sip2, capture.addr, &[]);
    let (_, incoming2) = watcher.wait_for("call.incoming", WAIT);
    watcher.send(json!({"type": "reject", "call": incoming2["call"], "status": 486, "reason": "Agent busy"}));
    let busy = sip2.final_response(&inv2, WAIT).expect("a final response");
    assert_eq!(busy.msg.status(), Some(486), "{}", sip2.transcript());
    let (_, ended2) = watcher.wait_for("call.ended", WAIT);
    assert_eq!(ended2["reason"], "rejected");
    assert!(server.calls().is_empty(), "a rejected call leaves nothing behind");

    // 3. Nobody decides: the default (answer, configured greeting) after the timeout.
    watcher.events.clear();
    let sip3 = SipSocket::bind(server.sip);
    let (capture3, _) = RtpCapture::bind();
    let sent = Instant::now();
    let inv3 = invite(&sip3, capture3.addr, &[]);
    watcher.wait_for("call.incoming", WAIT);
    let ok3 = sip3.final_response(&inv3, WAIT).expect("answered by default");
    let waited = sent.elapsed();
    assert_eq!(ok3.msg.status(), Some(200));
    assert!(waited >= Duration::from_millis(1300) && waited < Duration::from_millis(3500), "answered after the decision timeout: {waited:?}");
    ack(&sip3, &inv3, &ok3);
    capture3.wait_until(Duration::from_secs(10), |pkts| pkts.iter().filter_map(parse_rtp).filter(|p| p.payload.iter().any(|&b| b != 0xFF)).count() > 30);
    assert!(speech(&capture3).len() > 30, "the default greeting played");

    // Bad decisions are errors, not crashes.
    watcher.send_raw("{oops");
    watcher.send(json!({"type": "accept", "call": "c-none"}));
    watcher.send(json!({"type": "reject", "call": "c-none", "status": 200}));
    watcher.pump(Duration::from_millis(300));
    let codes: Vec<String> = watcher.all("error").iter().map(|e| e["code"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(codes, ["malformed_json", "unknown_call", "invalid_message"], "{:#?}", watcher.all("error"));
}

/// A one-thread HTTP server standing in for an agent's webhook endpoint: it
/// records every request body and answers `call.incoming` from `decisions`.
struct Hook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    fn start(decisions: Vec<Value>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/voice?src=test", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            let mut decisions = decisions.into_iter();
            for stream in listener.incoming().take(32) {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut length, mut head) = (String::new(), 0usize, String::new());
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                assert!(head.starts_with("POST /hooks/voice?src=test HTTP/1.1"), "{head}");
                assert!(head.to_ascii_lowercase().contains("authorization: bearer hook-secret"), "{head}");
                let answer = if value["type"] == "call.incoming" { decisions.next().map(|d| d.to_string()) } else { None };
                seen.lock().unwrap().push(value);
                let reply = match answer {
                    Some(a) => format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{a}", a.len()),
                    None => "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Hook { url, bodies }
    }

    fn wait_for(&self, kind: &str, n: usize) -> Vec<Value> {
        let end = Instant::now() + WAIT;
        loop {
            let found: Vec<Value> = self.bodies.lock().unwrap().iter().filter(|b| b["type"] == kind).cloned().collect();
            if found.len() >= n || Instant::now() > end {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_webhook_decides_on_incoming_calls_and_hears_how_they_end() {
    let _slot = shared_slot();
    let hook = Hook::start(vec![
        json!({"action": "reject", "status": 603, "reason": "Declined by policy"}),
        json!({"action": "accept", "greeting": false}),
    ]);
    let server = Server::start(&["--greeting", "Hello from voxline.", "--webhook", &hook.url, "--webhook-token", "hook-secret"]);
    let sip = SipSocket::bind(server.sip);
    let (capture, _) = RtpCapture::bind();

    let first = invite(&sip, capture.addr, &["X-Order: 1234"]);
    let declined = sip.final_response(&first, WAIT).expect("a final response");
    assert_eq!(declined.msg.status(), Some(603), "{}", sip.transcript());
    let incoming = hook.wait_for("call.incoming", 1);
    assert_eq!(incoming[0]["headers"]["X-Order"], "1234", "{:#?}", incoming);

    let second = invite(&sip, capture.addr, &[]);
    let ok = sip.final_response(&second, WAIT).expect("answered");
    assert_eq!(ok.msg.status(), Some(200));
    let (to_tag, contact) = ack(&sip, &second, &ok);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(speech(&capture).is_empty(), "`greeting: false` means no greeting");
    let bye = second.in_dialog("BYE", 2, &to_tag, contact.as_deref());
    sip.send(&bye);
    assert_eq!(sip.final_response(&bye, WAIT).and_then(|r| r.msg.status()), Some(200));
    let ended = hook.wait_for("call.ended", 2);
    let reasons: Vec<&str> = ended.iter().map(|e| e["reason"].as_str().unwrap_or_default()).collect();
    assert_eq!(reasons, ["rejected", "remote_bye"], "{ended:#?}");
    assert_eq!(hook.wait_for("call.answered", 1).len(), 1);
}

/// RTP payloads of a classic pcap file of Ethernet/IPv4/UDP packets.
fn pcap_rtp_payloads(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("read the pcap");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let packet = &data[off + 16..off + 16 + caplen];
        off += 16 + caplen;
        let ip = &packet[14..];
        let ihl = (ip[0] & 15) as usize * 4;
        out.push(ip[ihl + 8 + 12..].to_vec());
    }
    out
}

#[test]
fn a_sipp_caller_sends_dtmf_and_audio_that_the_agent_receives() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let mut watcher = Agent::connect(&format!("ws://{}/v1/events", server.http));
    watcher.wait_for("events.attached", WAIT);
    // INVITE (PCMA + telephone-event, X-Order header) -> ACK -> 2.5 s -> 7 s of
    // A-law speech from a pcap -> the digit 1 (RFC 2833 pcap) -> BYE.
    let media_port = (0..20).map(|_| free_udp_port()).find(|p| p % 2 == 0).unwrap_or(free_udp_port());
    let sipp = SippCall::new("uac_agent_media.xml", server.sip).timeout(Duration::from_secs(30)).arg("-mp").arg(&media_port.to_string()).spawn();
    let (_, incoming) = watcher.wait_for("call.incoming", Duration::from_secs(10));
    assert_eq!(incoming["headers"]["X-Order"], "A-7", "{incoming}");
    let id = incoming["call"].as_str().unwrap().to_string();
    watcher.wait_for("call.answered", WAIT);
    let mut agent = Agent::attach(&server, &id);
    agent.send(json!({"type": "caller_audio", "enabled": true, "format": "pcm16"}));
    let (_, dtmf) = agent.wait_for("dtmf", Duration::from_secs(20));
    assert_eq!(dtmf["digit"], "1", "{dtmf}");
    assert!(agent.audio.len() > 100, "caller audio frames: {}", agent.audio.len());
    assert!(agent.audio.iter().all(|(_, f)| f.len() % 2 == 0), "16-bit samples");
    let samples: Vec<i16> = agent.audio.iter().flat_map(|(_, f)| f.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]))).collect();
    let rms = (samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    // The capture's A-law decoded: the same level (A-law read as mu-law would be four times louder).
    let sent: Vec<i16> = pcap_rtp_payloads("/usr/share/sip-tester/g711a.pcap").concat().into_iter().map(audio_codec_algorithms::decode_alaw).collect();
    let sent_rms = (sent.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / sent.len() as f64).sqrt();
    let energy_ratio = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / sent.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
    assert!((0.9..1.1).contains(&energy_ratio), "the caller's speech arrives decoded at its level: rms {rms:.0}, sent {sent_rms:.0}");
    agent.wait_for("call.ended", Duration::from_secs(20));
    sipp.wait().assert_success("the sipp caller");
}

#[test]
fn the_conversation_relay_dialect_drives_a_call_like_twilio_does() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let inv = invite(&sip, media.addr, &["X-Account: acme"]);
    let ok = sip.final_response(&inv, WAIT).expect("answered");
    assert_eq!(ok.msg.status(), Some(200));
    let answer = ok.msg.sdp().expect("SDP").expect("parses");
    let server_media = answer.audio_addr().expect("audio address");
    let (to_tag, contact) = ack(&sip, &inv, &ok);
    let id = server.wait_for_call(&inv.call_id, WAIT, |c| c.state == "active").id;

    let mut agent = Agent::attach_with(&server, &id, "dialect=conversationrelay", "setup");
    let setup = agent.find("setup").unwrap().1.clone();
    assert_eq!(setup["callSid"], format!("CA0000000000000000{}", &id[1..]), "Twilio-shaped, holding the call id: {setup}");
    assert_eq!(setup["customParameters"]["Account"], "acme", "the X- header without its prefix: {setup}");

    // Tokens the way a ConversationRelay agent streams them.
    for token in ["Thanks for calling Acme", ", your order", " is on its way", " and should arrive", " on Thursday", "."] {
        agent.send(json!({"type": "text", "token": token, "last": false}));
        std::thread::sleep(Duration::from_millis(30));
    }
    agent.send(json!({"type": "text", "token": " Anything else I can do for you today?", "last": true}));
    let packets = media.collect(Duration::from_millis(1800));
    let voiced = packets.iter().filter(|p| p.3 == 0 && p.4.iter().any(|&b| b != 0xFF)).count();
    assert!(voiced > 20, "the tokens were spoken ({voiced} speech packets)");
    // Barge-in: answered with an `interrupt` carrying what was heard.
    agent.send(json!({"type": "clear"}));
    let (_, interrupt) = agent.wait_for("interrupt", WAIT);
    let heard = interrupt["utteranceUntilInterrupt"].as_str().unwrap_or_default();
    assert!(heard.starts_with("Thanks for calling Acme"), "{interrupt}");
    assert!(!heard.contains("today?"), "the unplayed end is not reported: {interrupt}");
    assert!(interrupt["durationUntilInterruptMs"].as_u64().is_some_and(|ms| ms > 500), "{interrupt}");
    // Only ConversationRelay messages come back (no voxline events).
    let kinds: Vec<&str> = agent.events.iter().map(|(_, e)| e["type"].as_str().unwrap_or_default()).collect();
    assert!(kinds.iter().all(|k| ["setup", "interrupt"].contains(k)), "{kinds:?}");

    // The caller presses 5 (RFC 4733 from the caller's media address).
    let ssrc = 0x5151;
    for (i, (end, dur)) in [(false, 160u16), (false, 320), (true, 480), (true, 480), (true, 480)].iter().enumerate() {
        let payload = [5u8, if *end { 0x80 | 10 } else { 10 }, (dur >> 8) as u8, *dur as u8];
        media.sock.send_to(&rtp(101, 100 + i as u16, 8000, ssrc, i == 0, &payload), server_media).unwrap();
    }
    let (_, dtmf) = agent.wait_for("dtmf", WAIT);
    assert_eq!(dtmf, json!({"type": "dtmf", "digit": "5"}));

    // sendDigits: RFC 4733 events to the caller.
    media.drain();
    agent.send(json!({"type": "sendDigits", "digits": "12#"}));
    let sent = media.collect(Duration::from_millis(1200));
    let events = telephone_events(&sent, 101);
    assert_eq!(digits_sent(&events), "12#", "{events:?}");
    assert!(events.iter().filter(|e| e.1).count() >= 9, "three end packets per digit: {events:?}");

    // interruptible (Twilio's default `any`): a key press while the agent speaks stops the
    // speech at once; the agent hears `interrupt` (what was heard), then the digit.
    agent.send(json!({"type": "text", "token": "Our opening hours are nine to five on weekdays, and ten to two on Saturdays.", "last": true}));
    let speaking = media.collect(Duration::from_millis(1500));
    assert!(speaking.iter().filter(|p| p.3 == 0 && p.4.iter().any(|&b| b != 0xFF)).count() > 10, "the agent speaks");
    for (i, (end, dur)) in [(false, 160u16), (false, 320), (true, 480), (true, 480), (true, 480)].iter().enumerate() {
        let payload = [7u8, if *end { 0x80 | 10 } else { 10 }, (dur >> 8) as u8, *dur as u8];
        media.sock.send_to(&rtp(101, 200 + i as u16, 24000, ssrc, i == 0, &payload), server_media).unwrap();
    }
    let pressed = Instant::now();
    agent.wait_for("dtmf", WAIT);
    while agent.all("dtmf").len() < 2 {
        assert!(pressed.elapsed() < WAIT, "no dtmf for the 7: {:?}", agent.events);
        agent.pump(Duration::from_millis(20));
    }
    let kinds: Vec<&str> = agent.events.iter().map(|(_, e)| e["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(&kinds[kinds.len() - 2..], ["interrupt", "dtmf"], "the digit interrupts, then is reported: {kinds:?}");
    let cut = agent.all("interrupt").pop().unwrap();
    assert!(cut["utteranceUntilInterrupt"].as_str().is_some_and(|h| h.starts_with("Our opening hours")), "{cut}");
    std::thread::sleep(Duration::from_millis(100));
    media.drain();
    let after = media.collect(Duration::from_millis(800));
    assert!(after.iter().filter(|p| p.3 == 0 && p.4.iter().any(|&b| b != 0xFF)).count() <= 2, "the speech stopped on the key press");

    // Unsupported verbs get ConversationRelay errors; `end` hands the call off: the
    // socket closes and the call stays up until something else ends it.
    agent.send(json!({"type": "play", "source": "https://example.com/a.mp3"}));
    let (_, err) = agent.wait_for("error", WAIT);
    assert!(err["description"].as_str().unwrap_or_default().contains("play"), "{err}");
    agent.send(json!({"type": "end", "handoffData": "{\"reason\":\"done\"}"}));
    let end = Instant::now() + WAIT;
    loop {
        match agent.ws.read() {
            Ok(tungstenite::Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the socket ended without a close: {e}"),
        }
        assert!(Instant::now() < end, "voxline did not close the socket after `end`");
    }
    assert!(sip.recv_until(Duration::from_secs(1), |m| m.method() == Some("BYE")).is_none(), "`end` does not hang up");
    assert_eq!(server.wait_for_call(&inv.call_id, WAIT, |_| true).state, "active");
    assert_eq!(server.hangup(&id).status, 202);
    let bye = sip.recv_until(WAIT, |m| m.method() == Some("BYE")).expect("the API's hangup ends the handed-off call");
    let _ = (to_tag, contact, bye);
}

/// A models folder with the default voice under its own name and a second name.
fn two_voice_dir() -> std::path::PathBuf {
    let dir = scratch_dir("voices");
    let voice = common::default_voice();
    for name in ["en_US-joe-medium", "en_US-joe2-medium"] {
        std::os::unix::fs::symlink(&voice, dir.join(format!("{name}.onnx"))).unwrap();
        std::os::unix::fs::symlink(voice.with_extension("onnx.json"), dir.join(format!("{name}.onnx.json"))).unwrap();
    }
    dir
}

#[test]
fn voices_and_presets_are_chosen_per_call_and_per_turn_and_dtmf_goes_out() {
    let _slot = shared_slot();
    let dir = two_voice_dir();
    let server = Server::start(&["--greeting", "", "--models-dir", dir.to_str().unwrap()]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);

    // Bad query values are refused before the upgrade.
    for query in ["voice=nope", "preset=turbo", "segment=word", "dialect=klingon", "colour=red"] {
        match tungstenite::connect(format!("ws://{}/v1/calls/{}/control?{query}", server.http, dialog.id)) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400, "{query}"),
            other => panic!("{query}: expected 400, got {:?}", other.map(|_| ())),
        }
    }
    let mut agent = Agent::attach_with(&server, &dialog.id, "preset=realtime", "call.attached");
    let attached = agent.find("call.attached").unwrap().1.clone();
    assert_eq!(attached["voices"], json!(["en_US-joe-medium", "en_US-joe2-medium"]), "{attached}");

    agent.send(json!({"type": "configure", "segment": "sentence"}));
    let (_, configured) = agent.wait_for("configured", WAIT);
    assert_eq!(configured, json!({"type": "configured", "voice": "en_US-joe-medium", "preset": "realtime", "segment": "sentence"}));
    agent.send(json!({"type": "speak", "text": "Hi.", "voice": "nobody"}));
    agent.send(json!({"type": "speak", "text": "Hi.", "preset": "warp"}));
    agent.pump(Duration::from_millis(200));
    let codes: Vec<String> = agent.all("error").iter().map(|e| e["code"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(codes, ["unknown_voice", "invalid_message"]);

    // A turn in the second voice (loaded on first use), then one at fidelity.
    agent.send(json!({"type": "speak", "text": "This turn uses the second voice.", "turn": "v2", "voice": "en_US-joe2-medium", "last": true}));
    agent.send(json!({"type": "speak", "text": "This turn is decoded whole.", "turn": "fi", "preset": "fidelity", "last": true}));
    let end = Instant::now() + Duration::from_secs(30);
    while agent.all("speech.done").len() < 2 && Instant::now() < end {
        agent.pump(Duration::from_millis(50));
    }
    let done: Vec<Value> = agent.all("speech.done");
    assert_eq!(done.iter().map(|d| d["turn"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["v2", "fi"], "{done:#?}");
    assert!(done.iter().all(|d| d["played_ms"].as_u64().unwrap_or(0) > 800), "{done:#?}");

    // DTMF to the caller: RFC 4733 on the negotiated payload type, then audio resumes.
    agent.events.clear();
    media.drain();
    agent.send(json!({"type": "send_dtmf", "digits": "9*", "duration_ms": 120}));
    agent.send(json!({"type": "send_dtmf", "digits": "9x"}));
    let sent = media.collect(Duration::from_millis(1000));
    let events = telephone_events(&sent, 101);
    assert_eq!(digits_sent(&events), "9*", "{events:?}");
    let longest = events.iter().map(|e| e.2).max().unwrap_or(0);
    assert!((960..=1120).contains(&longest), "a 120 ms tone lasts 960 samples: {longest}");
    let (_, err) = agent.wait_for("error", WAIT);
    assert_eq!(err["code"], "invalid_message", "{err}");
    let seqs: Vec<u16> = sent.iter().map(|p| p.1).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one sequence across audio and digits");
    dialog.bye(&sip);
}
