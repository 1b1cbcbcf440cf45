//! baresip (Debian's `baresip` 1.0, tests/common/baresip.rs) as a real softphone against
//! voxline: dialling in through a record-routing Kamailio over TCP and hanging up from
//! either side, and being transferred (REFER) by the agent to a sipp target it then calls.
//!
//! Needs baresip, kamailio and sipp (`scripts/setup.sh --test`).

mod common;

use std::time::Duration;

use common::agent::Agent;
use common::baresip::{voiced_ms, Baresip, BaresipConfig, BaresipEvent};
use common::kamailio::Kamailio;
use common::sip::*;
use serde::Serialize;

const WAIT: Duration = Duration::from_secs(10);

/// What the agent sends on the call's control socket.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AgentRequest {
    Transfer { to: String },
}

fn established(e: &BaresipEvent) -> bool {
    e.kind == "CALL_ESTABLISHED"
}

fn closed(e: &BaresipEvent) -> bool {
    e.kind == "CALL_CLOSED"
}

/// voxline behind Kamailio over TCP, and baresip, over TCP too, dialling it through the
/// proxy; built once the call is up on both sides (the events socket attached before).
struct ThroughProxy {
    server: Server,
    proxy: Kamailio,
    phone: Baresip,
    events: Agent,
    /// The call's SIP Call-ID, and voxline's id for it.
    sip_call_id: String,
    call: String,
}

impl ThroughProxy {
    fn call() -> ThroughProxy {
        let server = Server::start(&["--greeting", "Hello, you are talking to voxline through the proxy, over TCP."]);
        let proxy = Kamailio::start_tcp(server.sip);
        let mut events = Agent::connect(&format!("ws://{}/v1/events", server.http));
        events.wait_for("events.attached", Duration::from_secs(5));
        let mut phone = Baresip::start(BaresipConfig::tcp_via(proxy.addr));
        phone.dial(&format!("sip:agent@{}", server.sip));
        let up = phone.wait_for("the call established", WAIT, established);
        let sip_call_id = up.id.expect("CALL_ESTABLISHED names the call");
        let call = server.wait_for_call(&sip_call_id, WAIT, |c| c.state == "active").id;
        ThroughProxy { server, proxy, phone, events, sip_call_id, call }
    }

    /// Waits until voxline has sent `packets` RTP packets, baresip says RTP arrives, and
    /// voxline has taken in half a second of baresip's sine.
    fn wait_for_media(&mut self, packets: u64) {
        self.phone.wait_for("RTP from voxline", WAIT, |e| e.kind == "CALL_RTPESTAB");
        let info = self.server.wait_for_call(&self.sip_call_id, WAIT, |c| c.stat("packets_sent") >= Some(packets) && c.stat("packets_received") >= Some(25));
        assert_eq!(info.stat("packets_rejected"), Some(0), "{:?}", info.stats);
    }

    /// The reason voxline gave for the call's end on the events socket.
    fn ended_reason(&mut self) -> String {
        let (_, ended) = self.events.wait_for("call.ended", WAIT);
        ended["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// Every SIP message baresip sent or received went over TCP, to or from the proxy.
    fn assert_all_through_the_proxy_over_tcp(&self) {
        let trace = self.phone.sip_trace();
        assert!(trace.len() >= 6, "INVITE, 100, 200, ACK, BYE, 200 at least: {trace:#?}");
        let off_route: Vec<_> = trace.iter().filter(|m| m.transport != "TCP" || (m.from != self.proxy.addr && m.to != self.proxy.addr)).collect();
        assert!(off_route.is_empty(), "baresip's SIP all over TCP through the proxy; these were not: {off_route:#?}");
        assert!(!self.proxy.log().contains("without our route"), "the proxy saw in-dialog requests off the route set:\n{}", self.proxy.log());
    }
}

#[test]
fn baresip_calls_through_kamailio_over_tcp_hears_the_greeting_and_hangs_up() {
    let _slot = shared_slot();
    let mut live = ThroughProxy::call();
    live.wait_for_media(100);
    live.phone.hangup();
    let closed = live.phone.wait_for("the call closed", WAIT, closed);
    assert_eq!(closed.id.as_deref(), Some(live.sip_call_id.as_str()));
    assert_eq!(live.ended_reason(), "remote_bye", "baresip's BYE reached voxline through the proxy");
    live.server.wait_call_gone(&live.sip_call_id, WAIT);
    let heard = live.phone.heard();
    assert_eq!(heard.len(), 1, "one call's audio");
    let voiced = voiced_ms(&heard[0]);
    eprintln!("baresip heard {voiced} ms of voiced audio in {} ms", heard[0].len() / 8);
    assert!(voiced >= 1000, "baresip heard at least 1 s of the greeting, got {voiced} ms");
    live.assert_all_through_the_proxy_over_tcp();
}

#[test]
fn voxline_hangs_up_on_baresip_through_kamailio_over_tcp() {
    let _slot = shared_slot();
    let mut live = ThroughProxy::call();
    live.wait_for_media(50);
    let r = live.server.hangup(&live.call);
    assert!(r.is_success(), "hangup -> {} {}", r.status, r.body);
    let closed = live.phone.wait_for("the call closed", WAIT, closed);
    assert_eq!(closed.id.as_deref(), Some(live.sip_call_id.as_str()));
    assert_eq!(live.ended_reason(), "local_bye", "voxline hung up");
    let bye_in = live.phone.sip_trace().iter().any(|m| m.from == live.proxy.addr && m.start_line.starts_with("BYE "));
    assert!(bye_in, "voxline's BYE reached baresip through the proxy");
    live.assert_all_through_the_proxy_over_tcp();
}

#[test]
fn the_agent_transfers_baresip_to_a_sipp_target_that_baresip_then_calls() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    // The target: answers, holds the call for a second, hangs up.
    let target_port = free_udp_port();
    let (capture, _) = RtpCapture::bind();
    let target = SippCall::uas("uas_trunk_hangup.xml", target_port).rtp(capture.addr).timeout(Duration::from_secs(30)).spawn();
    let target_uri = format!("sip:target@127.0.0.1:{target_port}");

    let mut phone = Baresip::start(BaresipConfig::default());
    phone.dial(&format!("sip:agent@{}", server.sip));
    let first = phone.wait_for("the call to voxline established", WAIT, established);
    let sip_call_id = first.id.clone().expect("CALL_ESTABLISHED names the call");
    let call = server.wait_for_call(&sip_call_id, WAIT, |c| c.state == "active").id;
    let mut agent = Agent::attach(&server, &call);
    agent.send(serde_json::to_value(AgentRequest::Transfer { to: target_uri.clone() }).expect("a request encodes"));

    // baresip takes the REFER (its default), calls the target, and reports back.
    let second = phone.wait_for("the call to the target established", WAIT, |e| established(e) && e.peeruri.as_deref().is_some_and(|u| u.contains(&target_uri)));
    let (_, done) = agent.wait_for("transfer.done", WAIT);
    assert_eq!((done["status"].as_u64(), done["reason"].as_str()), (Some(200), Some("OK")), "{done}");
    let (_, ended) = agent.wait_for("call.ended", WAIT);
    assert_eq!(ended["reason"], "transferred");
    phone.wait_for("the call to voxline closed", WAIT, |e| closed(e) && e.id == first.id);
    server.wait_call_gone(&sip_call_id, WAIT);
    let progress: Vec<u64> = agent.all("transfer.progress").iter().filter_map(|e| e["status"].as_u64()).collect();
    assert_eq!(progress.first(), Some(&202), "the REFER's 202 first: {progress:?}");
    assert!(progress.iter().all(|&s| s < 300), "then baresip's sipfrag progress (100 Trying): {progress:?}");
    let trace = phone.sip_trace();
    let exchanged = |from, to, start: &str| trace.iter().any(|m| m.from == from && m.to == to && m.start_line.starts_with(start));
    assert!(exchanged(server.sip, phone.sip, "REFER sip:") && exchanged(phone.sip, server.sip, "SIP/2.0 202"), "voxline's REFER accepted: {trace:#?}");
    assert!(exchanged(phone.sip, server.sip, "NOTIFY sip:"), "baresip's NOTIFYs went to voxline: {trace:#?}");

    // The target really had the call: baresip's INVITE, its audio, and the target's BYE.
    let run = target.wait();
    run.assert_success("the transfer target answers, holds and hangs up");
    let invites = run.requests("INVITE");
    assert_eq!(invites.len(), 1, "one INVITE reached the target");
    let invite = &invites[0].msg;
    assert_eq!(invite.request_uri(), Some(target_uri.as_str()));
    assert!(invite.header("User-Agent").is_some_and(|ua| ua.starts_with("baresip")), "from baresip: {:?}", invite.header("User-Agent"));
    assert_ne!(invite.call_id(), Some(sip_call_id.as_str()), "a new call, not voxline's");
    assert!(capture.count() >= 25, "baresip's audio reached the target: {} packets", capture.count());
    phone.wait_for("the call to the target closed", WAIT, |e| closed(e) && e.id == second.id);
}
