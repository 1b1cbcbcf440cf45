//! Graceful shutdown, as systemd, `docker stop` and Kubernetes do it: SIGTERM
//! with live calls. New calls are refused (503 with Retry-After) and
//! `/readyz` says so; an idle call gets its BYE at once, a call whose agent
//! is speaking gets it once the speech has played; the process exits 0.

mod common;

use std::time::{Duration, Instant};

use common::agent::Agent;
use common::calls::*;
use common::sip::*;
use serde_json::json;

/// Waits for the server's BYE on `sip` and answers it 200; when it came.
fn answer_bye(sip: &SipSocket, within: Duration) -> Instant {
    let bye = sip.recv_until(within, |m| m.method() == Some("BYE")).unwrap_or_else(|| panic!("no BYE within {within:?}\n{}", sip.transcript()));
    sip.send_raw(response_to(&bye.msg, 200, "OK", None).as_bytes());
    bye.at
}

#[test]
fn sigterm_refuses_new_calls_lets_speech_finish_and_byes_every_caller() {
    let _slot = shared_slot();
    let mut server = Server::start(&["--greeting", "", "--drain-timeout", "20"]);
    assert_eq!(server.get("/readyz").status, 200);
    let (sip_idle, sip_talking) = (SipSocket::bind(server.sip), SipSocket::bind(server.sip));
    let (media_idle, media_talking) = (Media::bind(), Media::bind());
    let _idle = call(&server, &sip_idle, media_idle.addr);
    let talking = call(&server, &sip_talking, media_talking.addr);
    let mut agent = Agent::attach(&server, &talking.id);
    agent.send(json!({"type": "speak", "text": "Thank you for waiting. Your order has shipped and should arrive on Thursday afternoon.", "last": true}));
    agent.wait_for("speech.started", Duration::from_secs(10));

    let signalled = Instant::now();
    server.signal("TERM");
    // The idle call ends at once.
    let idle_bye = answer_bye(&sip_idle, Duration::from_secs(3));
    assert!(idle_bye.duration_since(signalled) < Duration::from_secs(1), "the idle call's BYE took {:?}", idle_bye.duration_since(signalled));
    // Draining: not ready, and a new call is refused with Retry-After.
    assert_eq!(server.get("/readyz").status, 503);
    assert_eq!(server.get("/healthz").status, 200, "still alive");
    let sip_new = SipSocket::bind(server.sip);
    let invite = sip_new.request("INVITE").sdp(pcmu_offer(Media::bind().addr));
    sip_new.send(&invite);
    let refused = sip_new.final_response(&invite, Duration::from_secs(3)).expect("a final response");
    assert_eq!(refused.msg.status(), Some(503), "{}", sip_new.transcript());
    assert!(refused.msg.header("Retry-After").is_some(), "{}", sip_new.transcript());
    // A dispatcher's OPTIONS health probe sees the same answer and stops sending calls here.
    let options = sip_new.request("OPTIONS");
    sip_new.send(&options);
    let probe = sip_new.final_response(&options, Duration::from_secs(3)).expect("an answer to OPTIONS");
    assert_eq!(probe.msg.status(), Some(503), "{}", sip_new.transcript());

    // The talking call ends only once its speech has played.
    let talking_bye = answer_bye(&sip_talking, Duration::from_secs(15));
    agent.pump(Duration::from_millis(300));
    let (done_at, _) = agent.find("speech.done").cloned().expect("the agent's speech played to its end");
    assert!(done_at <= talking_bye + Duration::from_millis(100), "BYE before the speech finished");
    let (_, ended) = agent.wait_for("call.ended", Duration::from_secs(3));
    assert_eq!(ended["reason"], "local_bye", "{ended}");

    let status = server.wait_exit(Duration::from_secs(8)).expect("the server exits once drained");
    assert!(status.success(), "exit status {status}");
}
