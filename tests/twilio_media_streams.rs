//! `GET /v1/twilio/media-stream`: a client written from Twilio's documented
//! Media Streams messages plays Twilio's part (`connected`, `start`,
//! caller `media`, `dtmf`, our marks echoed, `stop`) against `voxline
//! serve` on loopback. The stream is a call: announced on the events socket,
//! listed in GET /calls, driven over the control socket; the agent's speech
//! comes back as `media` frames paced 20 ms apart in real time, its mark as
//! `mark` after them, barge-in as `clear`; `stop` ends the call, and the API's
//! hangup closes the stream. Bad streams are closed with a reason.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::server::Server;
use common::slots::shared_slot;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const CALL_SID: &str = "CA5f0e3b2a1c9d8e7f6a5b4c3d2e1f0a9b";

/// Twilio's end of a Media Stream.
struct Twilio {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    /// Every message received, with its arrival time.
    got: Vec<(Instant, Value)>,
    closed: Option<(u16, String)>,
    sequence: u64,
}

impl Twilio {
    fn connect(server: &Server) -> Twilio {
        let url = format!("ws://{}/v1/twilio/media-stream", server.http);
        let (mut ws, _) = tungstenite::connect(&url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        }
        Twilio { ws, got: Vec::new(), closed: None, sequence: 0 }
    }

    /// `connected` and `start`, as Twilio sends them for `<Connect><Stream>`.
    fn start(server: &Server, media_format: Value) -> Twilio {
        let mut t = Twilio::connect(server);
        t.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}));
        t.send(json!({
            "event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
            "start": {
                "accountSid": "AC0123456789abcdef0123456789abcdef", "streamSid": STREAM_SID, "callSid": CALL_SID,
                "tracks": ["inbound"], "mediaFormat": media_format,
                "customParameters": {"FirstName": "Jane", "order": "1234"}
            }
        }));
        t
    }

    fn mulaw() -> Value {
        json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
    }

    fn send(&mut self, mut message: Value) {
        self.sequence += 1;
        if message.get("sequenceNumber").is_none() && message["event"] != "connected" {
            message["sequenceNumber"] = json!(self.sequence.to_string());
        }
        self.ws.send(Message::text(message.to_string())).unwrap();
    }

    /// The caller's 20 ms frame number `chunk` (from 1).
    fn send_caller_frame(&mut self, chunk: u32) {
        let payload = base64(&[0xffu8; 160]);
        self.send(json!({"event": "media", "streamSid": STREAM_SID,
            "media": {"track": "inbound", "chunk": chunk.to_string(), "timestamp": ((chunk - 1) * 20).to_string(), "payload": payload}}));
    }

    /// Reads for `window` (or until the socket closes).
    fn pump(&mut self, window: Duration) {
        let end = Instant::now() + window;
        while Instant::now() < end && self.closed.is_none() {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.got.push((Instant::now(), serde_json::from_str(t.as_str()).expect("JSON"))),
                Ok(Message::Close(frame)) => self.closed = Some(frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()))),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => self.closed = Some((1006, String::new())),
            }
        }
    }

    fn wait(&mut self, what: &str, timeout: Duration, done: impl Fn(&Twilio) -> bool) {
        let end = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < end, "no {what} within {timeout:?}; closed {:?}, got {} messages", self.closed, self.got.len());
            self.pump(Duration::from_millis(10));
        }
    }

    fn events(&self, name: &str) -> Vec<(Instant, Value)> {
        self.got.iter().filter(|(_, m)| m["event"] == name).cloned().collect()
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    bytes
        .chunks(3)
        .flat_map(|g| {
            let n = (g[0] as u32) << 16 | (*g.get(1).unwrap_or(&0) as u32) << 8 | *g.get(2).unwrap_or(&0) as u32;
            (0..4).map(move |i| if i <= g.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' })
        })
        .collect()
}

fn unbase64(text: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for g in text.as_bytes().chunks(4) {
        let pad = g.iter().filter(|&&c| c == b'=').count();
        let n = g.iter().take(4 - pad).fold(0u32, |n, &c| n << 6 | A.iter().position(|&a| a == c).expect("base64") as u32) << (6 * pad);
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

/// The events socket, and a stream started after it:
/// the stream's `call.stream_started`.
fn stream(server: &Server) -> (Agent, Twilio, Value) {
    let mut events = Agent::connect(&format!("ws://{}/v1/events", server.http));
    events.wait_for("events.attached", Duration::from_secs(5));
    let twilio = Twilio::start(server, Twilio::mulaw());
    let (_, started) = events.wait_for("call.stream_started", Duration::from_secs(5));
    (events, twilio, started)
}

#[test]
fn a_media_stream_is_a_call_whose_speech_comes_back_paced_with_marks_and_clear() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let (mut events, mut twilio, started) = stream(&server);

    // Announced with Twilio's ids and the custom parameters; listed as a call.
    assert_eq!((started["call_sid"].as_str(), started["stream_sid"].as_str()), (Some(CALL_SID), Some(STREAM_SID)), "{started}");
    assert_eq!(started["custom_parameters"], json!({"FirstName": "Jane", "order": "1234"}));
    let call = started["call"].as_str().unwrap().to_owned();
    events.wait_for("call.answered", Duration::from_secs(2));
    let listed = server.calls().into_iter().find(|c| c.id == call).expect("GET /calls lists the stream's call");
    assert_eq!((listed.raw["transport"].as_str(), listed.sip_call_id.as_str()), (Some("twilio"), CALL_SID));

    // The caller's audio reaches the call.
    for chunk in 1..=10 {
        twilio.send_caller_frame(chunk);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.calls().iter().find(|c| c.id == call).map_or(0, |c| c.stats["packets_received"].as_u64().unwrap_or(0)) < 10 {
        assert!(Instant::now() < deadline, "the caller's 10 frames did not reach the call");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The agent speaks and marks; Twilio gets paced media, then the mark.
    let mut agent = Agent::connect(&format!("ws://{}/v1/calls/{call}/control", server.http));
    agent.wait_for("call.attached", Duration::from_secs(5));
    agent.send(json!({"type": "speak", "text": "Your order has shipped and will arrive on Tuesday.", "turn": "t1", "last": true}));
    agent.send(json!({"type": "mark", "name": "answer-done"}));
    twilio.wait("our mark", Duration::from_secs(20), |t| !t.events("mark").is_empty());
    let media = twilio.events("media");
    let (mark_at, mark) = twilio.events("mark")[0].clone();
    assert_eq!(mark, json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "answer-done"}}));
    assert!(media.len() > 50, "{} frames for a sentence", media.len());
    assert!(media.iter().all(|(at, _)| *at <= mark_at), "the mark follows the audio it marks");
    let frames: Vec<Vec<u8>> = media.iter().map(|(_, m)| unbase64(m["media"]["payload"].as_str().unwrap())).collect();
    assert!(frames.iter().all(|f| f.len() == 160), "20 ms of mu-law per message");
    assert!(media.iter().all(|(_, m)| m["streamSid"] == STREAM_SID));
    let loud = frames.iter().flatten().filter(|&&b| b & 0x7f < 0x60).count();
    assert!(loud > frames.len() * 20, "speech, not silence ({loud} loud samples)");

    // Paced in real time: never more than two frames ahead of a 20 ms clock,
    // and the whole sentence takes as long to arrive as it lasts.
    let t0 = media[0].0;
    for (i, (at, _)) in media.iter().enumerate() {
        let due = Duration::from_millis(20) * i as u32;
        assert!(at.duration_since(t0) + Duration::from_millis(40) >= due, "frame {i} arrived {:?} early: a burst", due - at.duration_since(t0));
    }
    let span = media.last().unwrap().0.duration_since(t0).as_secs_f64();
    let lasts = (media.len() - 1) as f64 * 0.020;
    let mut gaps: Vec<f64> = media.windows(2).map(|w| w[1].0.duration_since(w[0].0).as_secs_f64() * 1000.0).collect();
    gaps.sort_by(f64::total_cmp);
    let pacing = format!("{} frames over {span:.3} s (audio {lasts:.3} s); spacing p1 {:.1} / p50 {:.1} / p99 {:.1} ms",
        media.len(), gaps[gaps.len() / 100], gaps[gaps.len() / 2], gaps[gaps.len() * 99 / 100]);
    eprintln!("pacing: {pacing}");
    server.note(pacing);
    assert!(span >= lasts * 0.95 && span <= lasts * 1.15 + 0.2, "{} frames arrived over {span:.3} s; they last {lasts:.3} s", media.len());
    // Twilio echoes the mark once played (voxline takes it quietly).
    twilio.send(json!({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "answer-done"}}));

    // The caller presses a key: the agent hears it.
    twilio.send(json!({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": "5"}}));
    let (_, dtmf) = agent.wait_for("dtmf", Duration::from_secs(2));
    assert_eq!(dtmf["digit"], "5");

    // Barge-in: the agent clears a long answer mid-way; Twilio is told to drop what it holds.
    let before = twilio.events("media").len();
    agent.send(json!({"type": "speak", "text": "Let me read you the whole list of items in your order, one by one, slowly and carefully.", "turn": "t2", "last": true}));
    twilio.wait("the second answer's audio", Duration::from_secs(10), |t| t.events("media").len() > before + 10);
    agent.send(json!({"type": "clear"}));
    twilio.wait("clear", Duration::from_secs(2), |t| !t.events("clear").is_empty());
    twilio.pump(Duration::from_millis(300));
    let (clear_at, _) = twilio.events("clear")[0].clone();
    let after_clear = twilio.events("media").iter().filter(|(at, _)| at.duration_since(clear_at) > Duration::from_millis(60)).count();
    assert_eq!(after_clear, 0, "no speech after the clear");

    // `stop` ends the call.
    twilio.send(json!({"event": "stop", "streamSid": STREAM_SID, "stop": {"accountSid": "AC0123456789abcdef0123456789abcdef", "callSid": CALL_SID}}));
    let (_, ended) = events.wait_for("call.ended", Duration::from_secs(5));
    assert_eq!((ended["call"].as_str(), ended["reason"].as_str()), (Some(call.as_str()), Some("remote_hangup")));
    agent.wait_for("call.ended", Duration::from_secs(2));
    assert!(server.calls().iter().all(|c| c.id != call), "the call is gone");
}

#[test]
fn hanging_up_by_the_api_closes_the_stream() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let (mut events, mut twilio, started) = stream(&server);
    let call = started["call"].as_str().unwrap().to_owned();
    let r = server.hangup(&call);
    assert_eq!(r.status, 202, "{}", r.body);
    twilio.wait("the close", Duration::from_secs(5), |t| t.closed.is_some());
    assert_eq!(twilio.closed.as_ref().map(|c| c.0), Some(1000), "{:?}", twilio.closed);
    let (_, ended) = events.wait_for("call.ended", Duration::from_secs(5));
    assert_eq!(ended["reason"], "local_hangup");
}

#[test]
fn bad_streams_are_closed_with_a_reason_and_other_calls_go_on() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let mut silent = Twilio::connect(&server);
    silent.send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}));
    let mut good = Twilio::start(&server, Twilio::mulaw());

    let closed = |mut t: Twilio| {
        t.wait("the close", Duration::from_secs(15), |t| t.closed.is_some());
        t.closed.unwrap()
    };
    let mut malformed = Twilio::connect(&server);
    malformed.ws.send(Message::text("{\"event\": \"start\", ")).unwrap();
    let (code, reason) = closed(malformed);
    assert_eq!(code, u16::from(CloseCode::Unsupported), "{reason}");
    assert!(reason.contains("not a Media Streams message"), "{reason}");

    let (code, reason) = closed(Twilio::start(&server, json!({"encoding": "audio/l16", "sampleRate": 16000, "channels": 1})));
    assert_eq!(code, u16::from(CloseCode::Unsupported));
    assert!(reason.contains("audio/x-mulaw 8000"), "{reason}");

    let mut early = Twilio::connect(&server);
    early.send_caller_frame(1);
    let (code, reason) = closed(early);
    assert_eq!((code, reason.as_str()), (u16::from(CloseCode::Policy), "`media` before `start`"));

    // No `start` at all: closed after the start timeout.
    let (code, reason) = closed(silent);
    assert_eq!(code, u16::from(CloseCode::Policy));
    assert!(reason.contains("no `start`"), "{reason}");

    // The good stream's call lived through all of it.
    good.pump(Duration::from_millis(50));
    assert!(good.closed.is_none());
    assert_eq!(server.calls().iter().filter(|c| c.raw["transport"] == "twilio").count(), 1);
}
