//! voxline behind a record-routing proxy, as carriers' SBCs and PBXs put it:
//! Kamailio (Debian's `kamailio`, tests/common/kamailio.rs) record-routes
//! every INVITE and answers 404 to an in-dialog request that does not carry
//! its route. sipp calls through it. Every call must complete: the caller's
//! ACK and BYE follow the Record-Route voxline copies into its responses
//! (RFC 3261 12.1.1), and voxline's own BYE follows the route set back. Over
//! UDP, and over TCP end to end (sipp `-t t1` to the proxy, the proxy to voxline).
//!
//! Needs kamailio and sipp (`scripts/setup.sh --test`).

mod common;

use std::time::{Duration, Instant};

use common::agent::Agent;
use common::kamailio::Kamailio;
use common::sip::*;

#[test]
fn twenty_calls_through_a_record_routing_kamailio_with_bye_from_either_side() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Hello, you are through the proxy."]);
    let proxy = Kamailio::start(server.sip);
    let mut events = Agent::connect(&format!("ws://{}/v1/events", server.http));
    events.wait_for("events.attached", Duration::from_secs(5));
    let (capture, _) = RtpCapture::bind();

    // Twenty calls, five at a time, each hung up by the caller after 1.5 s.
    let run = SippCall::new("uac_greeting.xml", proxy.addr)
        .rtp(capture.addr)
        .pause_ms(1500)
        .calls(20, 5)
        .timeout(Duration::from_secs(60))
        .run();
    run.assert_success("20 calls through the proxy, the caller hanging up");
    let ended = |events: &Agent| -> Vec<String> { events.all("call.ended").iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ended(&events).len() < 20 && Instant::now() < deadline {
        events.pump(Duration::from_millis(50));
    }
    let reasons = ended(&events);
    assert_eq!(reasons.len(), 20, "{reasons:?}");
    assert!(reasons.iter().all(|r| r == "remote_bye"), "every call ended by the caller's BYE through the proxy, none by ACK timeout: {reasons:?}");
    let messages = run.messages();
    let with_route = messages.iter().filter(|m| m.msg.method() == Some("ACK") && m.msg.header("Route").is_some()).count();
    assert_eq!(with_route, 20, "each ACK carries the proxy's route");

    // Five calls hung up by voxline: its BYE goes back through the proxy.
    let sipp = SippCall::new("uac_remote_hangup.xml", proxy.addr).rtp(capture.addr).calls(5, 5).timeout(Duration::from_secs(30)).spawn();
    server.hang_up_active(5, Duration::from_secs(15), "calls through the proxy");
    sipp.wait().assert_success("5 calls through the proxy, voxline hanging up");
    assert!(!proxy.log().contains("without our route"), "the proxy saw in-dialog requests off the route set:\n{}", proxy.log());
}

#[test]
fn calls_through_a_record_routing_kamailio_over_tcp_with_bye_from_either_side() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Hello, you are through the proxy over TCP."]);
    let proxy = Kamailio::start_tcp(server.sip);
    let (capture, _) = RtpCapture::bind();
    let came_over_tcp = |m: &LoggedMessage| m.msg.header("Via").is_some_and(|v| v.starts_with("SIP/2.0/TCP"));

    // Ten calls on sipp's TCP connection to the proxy, hung up by the caller; then five
    // hung up by voxline, its BYE going back through the proxy, over TCP both ways.
    let (run, result) = tcp_calls_hung_up_by_either_side(&server, proxy.addr, capture.addr, "through the proxy over TCP");
    let ok = run.invite_ok();
    let record_route = ok.header("Record-Route").unwrap_or_else(|| panic!("the 200 carries the proxy's Record-Route: {ok:?}"));
    assert!(record_route.contains(&proxy.addr.to_string()) && record_route.contains("transport=tcp"), "{record_route}");
    let sent = run.sent();
    for method in ["ACK", "BYE"] {
        let routed = sent.iter().filter(|m| m.msg.method() == Some(method) && m.msg.header("Route").is_some_and(|r| r.contains(&proxy.addr.to_string()))).count();
        assert_eq!(routed, 10, "each {method} follows the proxy's route");
    }
    assert!(run.received().iter().all(came_over_tcp), "every answer came back over TCP");
    assert!(capture.wait_until(Duration::from_secs(5), |p| p.iter().map(|p| p.from).collect::<std::collections::HashSet<_>>().len() >= 10), "RTP from at least the 10 calls the caller hung up");

    let byes = result.requests("BYE");
    assert_eq!(byes.len(), 5, "sipp got voxline's 5 BYEs");
    for bye in &byes {
        let vias = bye.msg.header_values("Via");
        assert!(vias.len() == 2 && vias.iter().all(|v| v.starts_with("SIP/2.0/TCP")), "voxline's BYE came through the proxy over TCP: {vias:?}");
    }
    let log = proxy.log();
    assert!(!log.contains("without our route"), "the proxy saw in-dialog requests off the route set:\n{log}");
}
