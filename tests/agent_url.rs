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

    /// Whether voxline connects again within `window`.
    fn connects_within(&self, window: Duration) -> bool {
        self.connections.recv_timeout(window).is_ok()
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
    assert_eq!(setup["callSid"], format!("CA0000000000000000{}", &id[1..]), "the call id inside a Twilio-shaped SID: {setup}");
    assert_eq!(setup["customParameters"]["Account"], "acme", "custom parameters without the X-: {setup}");
    agent.send(json!({"type": "text", "token": "Thanks for calling Acme, how can I help?", "last": true}));
    assert!(sound_packets(&media, Duration::from_millis(2500)) > 20, "the caller hears the relay agent");
    let mut dialog = Dialog { invite, to_tag, contact: ok.msg.contact_uri(), server_media: ok.msg.sdp().expect("SDP").expect("it parses").audio_addr().expect("an audio address"), cseq: 1, id: id.clone() };

    // A bad agent URL in a decision is refused with a reason.
    decider.send(json!({"type": "accept", "call": id, "agent_url": "http://agent.example/"}));
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

#[test]
fn a_conversation_relay_agent_gets_twilios_setup_and_end_hands_the_call_off() {
    require_sipp();
    let _slot = shared_slot();
    let agents = AgentServer::start();
    let server = Server::start(&["--greeting", "", "--agent-url", &agents.url, "--agent-dialect", "conversationrelay"]);
    let mut events = watcher(&server);
    let media = Media::bind();
    // From: "Alice" <sip:+14155550100@...>;tag=..., To: <sip:+18005550101@...>, X-Call-Reference: bar.
    let sipp = SippCall::new("uac_relay_caller.xml", server.sip).rtp(media.addr).timeout(Duration::from_secs(40)).spawn();

    let mut agent = agents.next(Duration::from_secs(10));
    let setup = agent.wait_for("setup", WAIT);
    assert_eq!(agent.events[0]["type"], "setup", "setup comes first: {:?}", agent.events);
    assert_eq!(setup["from"], "+14155550100", "E.164, no display name or tag: {setup}");
    assert_eq!(setup["to"], "+18005550101", "{setup}");
    assert_eq!(setup["callerName"], "Alice", "{setup}");
    assert_eq!(setup["direction"], "inbound", "{setup}");
    assert_eq!(setup["callType"], "SIP", "{setup}");
    assert_eq!(setup["customParameters"], json!({"Call-Reference": "bar"}), "{setup}");
    let sid = setup["callSid"].as_str().unwrap_or_default();
    assert!(sid.len() == 34 && sid.starts_with("CA") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()), "a Twilio-shaped callSid: {setup}");
    assert!(setup["sessionId"].as_str().is_some_and(|s| s.starts_with("VX") && s.len() == 34), "{setup}");
    let id = format!("c{}", &sid[18..]);
    assert!(agent.uri.ends_with(&id), "callSid holds voxline's call id ({id}): {}", agent.uri);

    // The app says goodbye and hands off, as a Twilio app does before a transfer.
    agent.send(json!({"type": "text", "token": "Let me get someone who can help with that.", "last": true}));
    let handoff_data = r#"{"reasonCode":"live-agent-handoff","reason":"The caller wants a person"}"#;
    agent.send(json!({"type": "end", "handoffData": handoff_data}));
    let (_, handoff) = events.wait_for("call.handoff", WAIT);
    assert_eq!(handoff["call"], id.as_str(), "{handoff}");
    assert_eq!(handoff["handoff_data"], handoff_data, "{handoff}");
    assert_eq!(agent.closed_with(WAIT), Some(CloseCode::Normal), "voxline closes the app's socket after `end`");

    // The call stays up for the next step: the goodbye is heard, nobody reconnects, nothing ends.
    assert!(sound_packets(&media, Duration::from_millis(2500)) > 20, "the caller hears the goodbye");
    assert!(!agents.connects_within(Duration::from_millis(1500)), "a handed-off call is not reconnected to the agent");
    let call = server.wait_for_call(&sipp.call_id, WAIT, |_| true);
    assert_eq!(call.state, "active", "the call stays up after the handoff: {call:?}");
    assert!(events.find("call.ended").is_none(), "nothing ended the call");

    // The next step here is another agent, named over the API; it hangs up: our BYE ends sipp's scenario.
    let bad = server.post(&format!("/v1/calls/{id}/agent"), &json!({"agent_url": "http://x/"}).to_string());
    assert_eq!(bad.status, 400, "{}", bad.body);
    let r = server.post(&format!("/v1/calls/{id}/agent"), &json!({"agent_url": agents.url, "agent_dialect": "native"}).to_string());
    assert_eq!(r.status, 202, "{}", r.body);
    let mut next = agents.next(WAIT);
    let attached = next.wait_for("call.attached", WAIT);
    assert_eq!(attached["call"], id.as_str(), "the next agent gets the same call: {attached}");
    next.send(json!({"type": "hangup"}));
    sipp.wait().assert_success("uac_relay_caller: INVITE, 200, ACK, then our BYE");
    let reason = ended_reason(&mut events, WAIT);
    assert!(!reason.starts_with("agent_"), "the next agent hung up; the handoff ended nothing: {reason}");
}

/// A `wss://` agent: a TLS WebSocket server whose certificate a CA made here
/// signed; the CA's PEM, for `--agent-ca`. The server takes one connection.
struct TlsAgent {
    url: String,
    ca_pem: std::path::PathBuf,
    connection: mpsc::Receiver<(WebSocket<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>, String)>,
}

impl TlsAgent {
    fn start() -> TlsAgent {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "voxline test agent CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
        let ca_pem = std::env::temp_dir().join(format!("voxline-agent-ca-{}-{}.pem", std::process::id(), rand_suffix()));
        std::fs::write(&ca_pem, ca.pem()).unwrap();

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        let config = std::sync::Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("wss://{}/agent", listener.local_addr().unwrap());
        let (tx, connection) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), stream);
                let mut uri = String::new();
                let accepted = tungstenite::accept_hdr(tls, |req: &tungstenite::handshake::server::Request, resp| {
                    uri = req.uri().to_string();
                    Ok(resp)
                });
                // A handshake that fails (voxline not trusting us) is simply not a connection.
                let Ok(ws) = accepted else { continue };
                ws.get_ref().sock.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                let _ = tx.send((ws, uri));
                return;
            }
        });
        TlsAgent { url, ca_pem, connection }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64)
}

#[test]
fn a_wss_agent_signed_by_the_agent_ca_gets_the_call() {
    let _slot = shared_slot();
    let agent = TlsAgent::start();
    let ca = agent.ca_pem.display().to_string();
    let server = Server::start(&["--greeting", "", "--agent-url", &agent.url, "--agent-ca", &ca, "--agent-timeout-ms", "8000"]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let dialog = call(&server, &sip, media.addr);

    let (mut ws, uri) = agent.connection.recv_timeout(Duration::from_secs(10)).expect("voxline connected over TLS, trusting --agent-ca");
    assert!(uri.ends_with(&dialog.id), "the call id is in the query: {uri}");
    let mut events: Vec<Value> = Vec::new();
    let end = Instant::now() + WAIT;
    while !events.iter().any(|e| e["type"] == "call.attached") {
        assert!(Instant::now() < end, "no call.attached over wss: {events:?}");
        match ws.read() {
            Ok(Message::Text(t)) => events.push(serde_json::from_str(t.as_str()).unwrap()),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the wss agent socket: {e}"),
        }
    }
    assert_eq!(events[0]["call"], dialog.id.as_str());
    ws.send(Message::text(json!({"type": "speak", "text": "Hello from an agent behind TLS.", "last": true}).to_string())).unwrap();
    assert!(sound_packets(&media, Duration::from_millis(2500)) > 20, "the caller hears the wss agent");
    let _ = std::fs::remove_file(&agent.ca_pem);
}
