//! Calls out: `POST /v1/calls` places a SIP call, with sipp as the called party
//! (tests/sipp/uas_*.xml) and the test process itself receiving the RTP at the
//! address in sipp's SDP answer.
//!
//! * answered: `call.ringing` then `call.answered` on the events socket, the
//!   greeting's RTP at sipp's media address, `GET /calls` lists the call as
//!   outbound, an agent on the control socket speaks (`speech.done`), and our
//!   hangup is a BYE that sipp answers;
//! * busy: 486 -> `call.failed` with status 486, then `call.ended`;
//! * challenged: 401 -> the INVITE again with Digest credentials (checked by
//!   sipp's verifyauth) -> answered;
//! * refused requests: a host name, a bad URI, an unknown voice -> 400.
//!
//! Needs sipp (apt: sip-tester). Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::agent::Agent;
use common::sip::*;
use serde_json::{json, Value};

const GREETING: &str = "Hello, this is voxline calling you back.";
const WAIT: Duration = Duration::from_secs(15);

fn events_socket(server: &Server) -> Agent {
    let mut events = Agent::connect(&format!("ws://{}/v1/events", server.http));
    events.wait_for("events.attached", Duration::from_secs(5));
    events
}

/// sipp waiting for a call on a free port, its SDP pointing at `rtp`.
fn callee(scenario: &str, rtp: SocketAddr) -> (Sipp, u16) {
    let port = free_udp_port();
    let sipp = SippCall::uas(scenario, port).rtp(rtp).timeout(Duration::from_secs(60)).spawn();
    std::thread::sleep(Duration::from_millis(300));
    (sipp, port)
}

/// `POST /v1/calls`; returns the new call's id.
fn place(server: &Server, body: Value) -> String {
    let r = server.post("/v1/calls", &body.to_string());
    assert_eq!(r.status, 201, "POST /v1/calls {body} -> {} {}", r.status, r.body);
    r.json()["call"].as_str().expect("201 names the call").to_string()
}

/// The lifecycle event `kind` for call `id` (others are skipped).
fn event_for(events: &mut Agent, kind: &str, id: &str) -> Value {
    let end = std::time::Instant::now() + WAIT;
    loop {
        if let Some(e) = events.all(kind).into_iter().find(|e| e["call"] == id) {
            return e;
        }
        assert!(std::time::Instant::now() < end, "no `{kind}` for {id} within {WAIT:?}; got {:#?}", events.events);
        events.pump(Duration::from_millis(20));
    }
}

#[test]
fn a_call_out_is_answered_plays_the_greeting_takes_an_agent_and_hangs_up_with_bye() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::with_greeting(GREETING, &[]);
    let mut events = events_socket(&server);
    let (rtp, _) = RtpCapture::bind();
    let (sipp, port) = callee("uas_answer.xml", rtp.addr);

    let id = place(&server, json!({"to": format!("sip:+15551234567@127.0.0.1:{port}"), "headers": {"X-Campaign": "spring"}}));
    let ringing = event_for(&mut events, "call.ringing", &id);
    assert_eq!(ringing["status"], 180);
    event_for(&mut events, "call.answered", &id);
    let info = server.calls().into_iter().find(|c| c.id == id).expect("GET /calls lists the call");
    assert_eq!((info.raw["direction"].as_str(), info.raw["transport"].as_str()), (Some("outbound"), Some("sip")));
    assert_eq!(info.raw["remote_rtp"], rtp.addr.to_string(), "media goes where sipp's answer says");

    // The greeting reaches the address in sipp's SDP.
    let heard = rtp.wait_until(WAIT, |p| !RtpAnalysis::new(p).utterances().is_empty());
    let a = RtpAnalysis::new(&rtp.snapshot());
    assert!(heard, "no greeting at {}: {}", rtp.addr, a.summary());
    assert_eq!(a.payload_types.keys().collect::<Vec<_>>(), [&0], "PCMU, as sipp answered");
    assert_eq!(a.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(), [info.raw["local_rtp"].as_str().unwrap()]);

    // An agent attaches as for an incoming call and speaks.
    let mut agent = Agent::attach(&server, &id);
    agent.send(json!({"type": "speak", "text": "Your table is booked for eight.", "turn": "t1", "last": true}));
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while !agent.all("speech.done").iter().any(|d| d["turn"] == "t1") {
        assert!(std::time::Instant::now() < end, "no speech.done for the agent's turn: {:#?}", agent.events);
        agent.pump(Duration::from_millis(20));
    }

    let r = server.hangup(&id);
    assert_eq!(r.status, 202, "{}", r.body);
    let ended = event_for(&mut events, "call.ended", &id);
    assert_eq!(ended["reason"], "local_bye");
    let result = sipp.wait();
    result.assert_success("uas_answer: 180, 200, ACK, then our BYE");
    let invite = result.requests("INVITE").into_iter().next().expect("sipp got the INVITE").msg;
    assert_eq!(invite.request_uri(), Some(format!("sip:+15551234567@127.0.0.1:{port}").as_str()));
    assert_eq!(invite.header("X-Campaign"), Some("spring"));
    let offer = invite.sdp().expect("the INVITE offers SDP").expect("the offer parses");
    assert_eq!(offer.audio().map(|m| m.formats[0]), Some(0), "PCMU first");
    assert_eq!(result.requests("BYE").len(), 1);
    server.wait_call_gone(&info.sip_call_id, Duration::from_secs(5));
}

#[test]
fn a_busy_callee_fails_the_call_and_a_challenge_is_answered_with_credentials() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::with_greeting(GREETING, &[]);
    let mut events = events_socket(&server);
    let (rtp, _) = RtpCapture::bind();

    // 486: call.failed, then call.ended; the 486 is ACKed.
    let (sipp, port) = callee("uas_busy.xml", rtp.addr);
    let id = place(&server, json!({"to": format!("sip:bob@127.0.0.1:{port}"), "greeting": false}));
    let failed = event_for(&mut events, "call.failed", &id);
    assert_eq!((failed["status"].as_u64(), failed["reason"].as_str()), (Some(486), Some("Busy Here")));
    assert_eq!(event_for(&mut events, "call.ended", &id)["reason"], "failed");
    assert!(events.all("call.answered").iter().all(|e| e["call"] != id));
    sipp.wait().assert_success("uas_busy: 486 and its ACK");
    assert!(server.calls().iter().all(|c| c.id != id), "a failed call is not listed");

    // 401: the INVITE again with credentials sipp verifies, then answered.
    let (sipp, port) = callee("uas_auth.xml", rtp.addr);
    let id = place(
        &server,
        json!({"to": format!("sip:bob@127.0.0.1:{port}"), "from": "sip:agent@voxline.test", "greeting": false,
               "auth": {"username": "alice", "password": "wonderland"}}),
    );
    event_for(&mut events, "call.answered", &id);
    assert_eq!(server.hangup(&id).status, 202);
    event_for(&mut events, "call.ended", &id);
    let result = sipp.wait();
    result.assert_success("uas_auth: 401, then the authenticated INVITE answered");
    let invites = result.requests("INVITE");
    assert_eq!(invites.len(), 2, "one retry");
    assert!(invites[0].msg.header("Authorization").is_none());
    let authorization = invites[1].msg.header("Authorization").expect("the retry carries credentials");
    assert!(authorization.contains("username=\"alice\"") && authorization.contains("qop=auth"), "{authorization}");
    assert!(invites[0].msg.header("From").is_some_and(|f| f.starts_with("<sip:agent@voxline.test>;tag=")));
    assert!(result.sent().iter().all(|m| m.msg.status() != Some(403)), "sipp's verifyauth accepted the answer");

    // Requests voxline cannot place.
    for (body, code) in [
        (json!({"to": "sip:bob@pbx.example.com"}), "invalid_uri"),
        (json!({"to": "tel:+15551234567"}), "invalid_uri"),
        (json!({"to": "sip:bob@127.0.0.1:5060", "voice": "nobody"}), "unknown_voice"),
        (json!({"to": "sip:bob@127.0.0.1:5060", "headers": {"Call-ID": "x"}}), "invalid_call"),
        (json!({"too": "sip:bob@127.0.0.1"}), "invalid_json"),
    ] {
        let r = server.post("/v1/calls", &body.to_string());
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(code)), "{body}: {}", r.body);
    }
    let r = server.post("/v1/calls", &json!({"to": "sip:bob@pbx.example.com"}).to_string());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("IP addresses only"), "{}", r.body);
}
