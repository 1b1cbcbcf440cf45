//! Agent-URL mode: voxline connects out to the agent's WebSocket (here a
//! small tungstenite server in the test) for each call, in voxline's own
//! dialect or ConversationRelay's, reconnects when the connection drops, and
//! hangs up when the agent closes normally or cannot be reached; the agent is
//! named by --agent-url, a call's decision or `POST /v1/calls`. Real binary,
//! real sockets, calls over SIP/UDP by hand (and sipp as a callee). Every
//! wait is bounded.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::calls::*;
use common::sip::*;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};
use voxline::media::playout::is_sound;

/// The agent's WebSocket server: every connection voxline opens, with the URI it asked for.
struct AgentServer {
    url: String,
    connections: mpsc::Receiver<AgentConnection>,
}

struct AgentConnection {
    ws: WebSocket<TcpStream>,
    /// The request's path and query.
    uri: String,
    events: Vec<Value>,
}

impl AgentServer {
    fn start() -> AgentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ws://{}/agent", listener.local_addr().unwrap());
        let (tx, connections) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut uri = String::new();
                let accepted = tungstenite::accept_hdr(stream, |req: &tungstenite::handshake::server::Request, resp| {
                    uri = req.uri().to_string();
                    Ok(resp)
                });
                let Ok(ws) = accepted else { continue };
                ws.get_ref().set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                if tx.send(AgentConnection { ws, uri, events: Vec::new() }).is_err() {
                    return;
                }
            }
        });
        AgentServer { url, connections }
    }

    /// The next connection from voxline.
    fn next(&self, timeout: Duration) -> AgentConnection {
        self.connections.recv_timeout(timeout).unwrap_or_else(|_| panic!("voxline did not connect to the agent within {timeout:?}"))
    }
}

impl AgentConnection {
    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    /// Reads until a `kind` message arrives.
    fn wait_for(&mut self, kind: &str, timeout: Duration) -> Value {
        let end = Instant::now() + timeout;
        loop {
            if let Some(found) = self.events.iter().find(|e| e["type"] == kind) {
                return found.clone();
            }
            assert!(Instant::now() < end, "no `{kind}` within {timeout:?}; got {:#?}", self.events);
            match self.ws.read() {
                Ok(Message::Text(t)) => self.events.push(serde_json::from_str(t.as_str()).expect("messages are JSON")),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("agent socket: {e}"),
            }
        }
    }

    /// Reads until voxline closes the socket; the close code it gave.
    fn closed_with(&mut self, timeout: Duration) -> Option<CloseCode> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("the socket ended without a close frame: {e}"),
            }
        }
        panic!("voxline did not close the agent's socket within {timeout:?}")
    }

    /// Closes with 1000 (the agent is done with the call).
    fn close_normally(mut self) {
        let _ = self.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() }));
        let end = Instant::now() + WAIT;
        while Instant::now() < end && self.ws.read().is_ok_and(|_| true) {}
    }
}

/// Packets with sound in them among what the caller received within `window`.
fn sound_packets(media: &Media, window: Duration) -> usize {
    media.collect(window).iter().filter(|p| p.3 == 0 && p.4.iter().any(|&b| is_sound(b))).count()
}

/// The events socket, watching (not deciding).
fn watcher(server: &Server) -> Agent {
    let mut w = Agent::connect(&format!("ws://{}/v1/events", server.http));
    w.wait_for("events.attached", WAIT);
    w
}

/// Waits for the server's BYE and answers it 200 (the call then ends).
fn answer_bye(sip: &SipSocket, within: Duration) {
    let bye = sip.recv_until(within, |m| m.method() == Some("BYE")).unwrap_or_else(|| panic!("no BYE within {within:?}\n{}", sip.transcript()));
    sip.send_raw(response_to(&bye.msg, 200, "OK", None).as_bytes());
}

fn ended_reason(watcher: &mut Agent, timeout: Duration) -> String {
    let (_, ended) = watcher.wait_for("call.ended", timeout);
    ended["reason"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn voxline_connects_each_call_to_the_agent_url_and_reconnects_after_a_drop() {
    let _slot = shared_slot();
    let agents = AgentServer::start();
    let server = Server::start(&["--greeting", "", "--agent-url", &agents.url, "--agent-timeout-ms", "5000"]);
    let mut events = watcher(&server);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let dialog = call(&server, &sip, media.addr);

    let mut agent = agents.next(WAIT);
    let attached = agent.wait_for("call.attached", WAIT);
    assert_eq!(agent.events[0]["type"], "call.attached", "call.attached comes first: {:?}", agent.events);
    assert_eq!(attached["call"], dialog.id.as_str(), "{attached}");
    assert!(attached["from"].as_str().is_some_and(|f| f.contains("sip:")), "{attached}");
    assert!(agent.uri.starts_with("/agent?call="), "the call id is in the query: {}", agent.uri);
    assert!(agent.uri.ends_with(&dialog.id), "{}", agent.uri);

    agent.send(json!({"type": "speak", "text": "Hello, this is your agent speaking.", "last": true}));
    agent.wait_for("speech.started", Duration::from_secs(10));
    assert!(sound_packets(&media, Duration::from_millis(1500)) > 20, "the caller hears the agent");

    // The agent's connection drops (no close frame): voxline connects again and the call goes on.
    drop(agent);
    let mut again = agents.next(Duration::from_secs(3));
    let attached = again.wait_for("call.attached", WAIT);
    assert_eq!(attached["call"], dialog.id.as_str());
    assert_eq!(server.wait_for_call(&dialog.invite.call_id, WAIT, |_| true).state, "active", "the call stayed up");
    media.drain();
    again.send(json!({"type": "speak", "text": "I am back on the line, still with you.", "last": true}));
    again.wait_for("speech.started", Duration::from_secs(10));
    assert!(sound_packets(&media, Duration::from_millis(1000)) > 10, "the caller hears the reconnected agent");

    // A normal close (1000) is the agent saying it is done: voxline hangs up.
    again.close_normally();
    answer_bye(&sip, WAIT);
    assert_eq!(ended_reason(&mut events, WAIT), "agent_closed");
    server.wait_call_gone(&dialog.invite.call_id, WAIT);
}

#[test]
fn a_decision_names_the_agent_url_and_the_conversation_relay_dialect() {
    let _slot = shared_slot();
    let agents = AgentServer::start();
    let server = Server::start(&["--greeting", "", "--decision-timeout-ms", "3000"]);
    let mut decider = Agent::connect(&format!("ws://{}/v1/events?decide=true", server.http));
    decider.wait_for("events.attached", WAIT);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let invite = sip.request("INVITE").sdp(pcmu_offer(media.addr)).header("X-Account: acme");
    sip.send(&invite);
    let (_, incoming) = decider.wait_for("call.incoming", WAIT);
    let id = incoming["call"].as_str().expect("a call id").to_owned();
    decider.send(json!({"type": "accept", "call": id, "agent_url": agents.url, "agent_dialect": "conversationrelay"}));
    let ok = sip.final_response(&invite, WAIT).expect("answered");
    assert_eq!(ok.msg.status(), Some(200));
    let to_tag = ok.msg.to_tag().expect("a To tag");
    sip.send(&invite.in_dialog("ACK", 1, &to_tag, ok.msg.contact_uri().as_deref()));

    let mut agent = agents.next(WAIT);
    let setup = agent.wait_for("setup", WAIT);
    assert_eq!(agent.events[0]["type"], "setup", "ConversationRelay's setup comes first: {:?}", agent.events);
    assert_eq!(setup["callSid"], id.as_str(), "{setup}");
    assert_eq!(setup["customParameters"]["X-Account"], "acme", "{setup}");
    agent.send(json!({"type": "text", "token": "Thanks for calling Acme, how can I help?", "last": true}));
    assert!(sound_packets(&media, Duration::from_millis(2500)) > 20, "the caller hears the relay agent");
    let mut dialog = Dialog { invite, to_tag, contact: ok.msg.contact_uri(), server_media: ok.msg.sdp().expect("SDP").expect("it parses").audio_addr().expect("an audio address"), cseq: 1, id: id.clone() };

    // A bad agent URL in a decision is refused with a reason.
    decider.send(json!({"type": "accept", "call": id, "agent_url": "wss://agent.example/"}));
    let (_, error) = decider.wait_for("error", WAIT);
    assert_eq!(error["code"], "invalid_message", "{error}");

    // The caller hangs up: the agent's socket is closed with 1000.
    dialog.bye(&sip);
    assert_eq!(agent.closed_with(WAIT), Some(CloseCode::Normal));
}

#[test]
fn a_call_placed_with_an_agent_url_connects_to_the_agent_once_answered() {
    require_sipp();
    let _slot = shared_slot();
    let agents = AgentServer::start();
    let server = Server::start(&["--greeting", ""]);
    let (rtp, _) = RtpCapture::bind();
    let port = free_udp_port();
    let sipp = SippCall::uas("uas_answer.xml", port).rtp(rtp.addr).timeout(Duration::from_secs(60)).spawn();
    std::thread::sleep(Duration::from_millis(300));
    let body = json!({"to": format!("sip:+15551234567@127.0.0.1:{port}"), "agent_url": agents.url});
    let r = server.post("/v1/calls", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["call"].as_str().expect("201 names the call").to_owned();

    let mut agent = agents.next(Duration::from_secs(10));
    let attached = agent.wait_for("call.attached", WAIT);
    assert_eq!(attached["call"], id.as_str(), "{attached}");
    // The agent hangs up: our BYE ends sipp's scenario.
    agent.send(json!({"type": "hangup"}));
    sipp.wait().assert_success("uas_answer: 180, 200, ACK, then our BYE");
    let r = server.post("/v1/calls", &json!({"to": "sip:1@127.0.0.1:9", "agent_url": "http://x/"}).to_string());
    assert_eq!(r.status, 400, "a bad agent_url is refused: {}", r.body);
}

#[test]
fn an_agent_url_nobody_answers_ends_the_call_as_agent_unreachable() {
    let _slot = shared_slot();
    // A port with nothing listening: every connection is refused.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/agent");
    let server = Server::start(&["--greeting", "", "--agent-url", &url, "--agent-timeout-ms", "1500"]);
    let mut events = watcher(&server);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let dialog = call(&server, &sip, media.addr);
    let answered = Instant::now();
    answer_bye(&sip, Duration::from_secs(6));
    let waited = answered.elapsed();
    assert!(waited >= Duration::from_millis(1300), "the call waited for the agent ({waited:?})");
    assert_eq!(ended_reason(&mut events, WAIT), "agent_unreachable");
    server.wait_call_gone(&dialog.invite.call_id, WAIT);
    assert!(server.stderr().contains("could not be reached"), "the log says why: {}", server.stderr());
}
