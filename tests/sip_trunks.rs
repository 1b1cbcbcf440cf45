//! Trunks against real peers on loopback: Kamailio (Debian's `kamailio`) as a registrar with
//! Digest authentication and as an authenticating (407), record-routing proxy; sipp as the
//! called party; a plain UDP socket as a registrar that never answers; dnsmasq as the DNS
//! server for trunk host names (RFC 3263 NAPTR -> SRV -> A).
//!
//! * registration: voxline registers through Kamailio (401, then credentials), the binding
//!   is refreshed at least twice (Expires 4 s), a sipp call to the AOR routed by Kamailio's
//!   lookup("location") reaches voxline, and SIGTERM removes the binding (Expires: 0);
//! * 20 calls in to the registered AOR through the same proxy, each caller challenged (407)
//!   and authenticated, every ACK and BYE through the proxy;
//! * 20 calls out through the authenticating proxy (407, then Proxy-Authorization), ten hung
//!   up by voxline and ten by the callee, every ACK and BYE through the proxy;
//! * wrong credentials: 407, one retry, 407 again -> `call.failed`, no third INVITE;
//! * a registrar that never answers: REGISTER attempts 1 s apart, then 2 s, ... (backoff);
//! * DNS: a trunk host by name, its first SRV target silent, registers with the second;
//!   a call through a trunk by name, its first SRV target silent, reaches the sipp the
//!   second SRV record names.
//!
//! Needs kamailio, sipp and dnsmasq (`scripts/setup.sh --test`). Every wait is bounded.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::kamailio::Kamailio;
use common::sip::*;
use serde_json::{json, Value};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const REALM: &str = "voxline.test";
const WAIT: Duration = Duration::from_secs(15);

/// Kamailio as registrar (REGISTER: www_challenge, then save("location")) and as an
/// authenticating proxy (every INVITE: proxy_challenge, then record-routed on: to the
/// registered contact when lookup("location") finds its Request-URI, else to the
/// Request-URI itself).
fn kamailio_config(listen: SocketAddr) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:{listen}
alias="{REALM}"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("rr", "append_fromtag", 1)
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 2)
modparam("registrar", "default_expires", 60)
modparam("auth", "nonce_expire", 300)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_NOTICE", "in-dialog $rm through our route, call $ci\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        xlog("L_WARN", "in-dialog $rm without our route: 404\n");
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("{REALM}", "{PASSWORD}", "0") || $au != "{USER}") {{
            xlog("L_NOTICE", "REGISTER challenged\n");
            www_challenge("{REALM}", "1");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
            exit;
        }}
        xlog("L_NOTICE", "REGISTER saved $tu contact $ct expires=$hdr(Expires)\n");
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!pv_proxy_authenticate("{REALM}", "{PASSWORD}", "0") || $au != "{USER}") {{
            xlog("L_NOTICE", "INVITE challenged\n");
            proxy_challenge("{REALM}", "1");
            exit;
        }}
        consume_credentials();
        record_route();
        if (lookup("location")) {{
            xlog("L_NOTICE", "INVITE to a registered user, to $ru\n");
            t_relay();
            exit;
        }}
        xlog("L_NOTICE", "INVITE authorized, to $ru\n");
    }}
    t_relay();
}}
"#
    )
}

/// Kamailio with [`kamailio_config`] on a free loopback port (tests/common/kamailio.rs runs
/// it, bounded, and stops it on drop).
fn start_kamailio() -> Kamailio {
    let addr = SocketAddr::new(LOCALHOST, free_udp_port());
    Kamailio::launch(scratch_dir("kamailio-registrar"), &kamailio_config(addr), addr, &[])
}

/// How many log lines of `kamailio` contain `text`.
fn count(kamailio: &Kamailio, text: &str) -> usize {
    kamailio.log().matches(text).count()
}

/// dnsmasq serving only the records given, on a free loopback port; killed on drop.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(records: &[String]) -> Dnsmasq {
        require_tool("dnsmasq", "install it with `scripts/setup.sh --test` (apt: dnsmasq-base)");
        let dir = scratch_dir("dnsmasq");
        let port = free_udp_port();
        let log = dir.join("dnsmasq.log");
        let child = Command::new("timeout")
            .args(["120", "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1", "--user=root", "--log-queries", "--log-facility=-"])
            .arg(format!("--port={port}"))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create dnsmasq.log"))
            .spawn()
            .expect("run dnsmasq");
        let d = Dnsmasq { child, addr: SocketAddr::new(LOCALHOST, port), log };
        let end = Instant::now() + Duration::from_secs(5);
        while !d.log().contains("started") {
            assert!(Instant::now() < end, "dnsmasq did not start within 5 s:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn events_socket(server: &Server) -> Agent {
    let mut events = Agent::connect(&format!("ws://{}/v1/events", server.http));
    events.wait_for("events.attached", Duration::from_secs(5));
    events
}

/// The trunk `name` in `GET /v1/trunks`.
fn trunk(server: &Server, name: &str) -> Value {
    let r = server.get("/v1/trunks");
    assert_eq!(r.status, 200, "GET /v1/trunks -> {} {}", r.status, r.body);
    let list = r.json();
    list["trunks"].as_array().and_then(|t| t.iter().find(|t| t["name"] == name).cloned()).unwrap_or_else(|| panic!("no trunk {name} in {list}"))
}

/// Waits until trunk `name`'s registration is in `state`.
fn wait_state(server: &Server, name: &str, state: &str, within: Duration) -> Value {
    let end = Instant::now() + within;
    loop {
        let t = trunk(server, name);
        if t["registration"]["state"] == state {
            return t;
        }
        assert!(Instant::now() < end, "trunk {name} not {state} within {within:?}: {t}\n{}", tail(&server.stderr(), 30));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lifecycle event `kind` for call `id`.
fn event_for(events: &mut Agent, kind: &str, id: &str) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        if let Some(e) = events.all(kind).into_iter().find(|e| e["call"] == id) {
            return e;
        }
        assert!(Instant::now() < end, "no `{kind}` for {id} within {WAIT:?}; got {:#?}", events.all(kind));
        events.pump(Duration::from_millis(20));
    }
}

const TOKEN: &str = "trunk-test-token";

/// `GET path` with `Authorization: Bearer TOKEN` when given: (status, body).
fn get_with_token(server: &Server, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.http).expect("connect to the HTTP API");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n", server.http).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn place(server: &Server, body: Value) -> String {
    let r = server.post("/v1/calls", &body.to_string());
    assert_eq!(r.status, 201, "POST /v1/calls {body} -> {} {}", r.status, r.body);
    r.json()["call"].as_str().expect("201 names the call").to_string()
}

#[test]
fn registration_through_kamailio_survives_refreshes_routes_calls_in_and_is_removed_at_shutdown() {
    require_sipp();
    let _slot = shared_slot();
    let kamailio = start_kamailio();
    let spec = format!("name=carrier,host={REALM},proxy={},username={USER},password={PASSWORD},from_user=agent,register=yes,expires=4", kamailio.addr);
    let mut server = Server::start(&["--greeting", "You reached the registered agent.", "--trunk", &spec]);
    let mut events = events_socket(&server);

    let registered = wait_state(&server, "carrier", "registered", Duration::from_secs(10));
    assert_eq!(registered["registration"]["registrar"], kamailio.addr.to_string());
    assert!(registered["registration"]["expires_in"].as_u64().unwrap() <= 4, "{registered}");
    assert_eq!(registered["registration"]["last_error"], Value::Null);
    assert_eq!(registered["from"], format!("<sip:agent@{REALM}>"));
    assert!(!registered.to_string().contains(PASSWORD), "the password never shows: {registered}");
    assert!(count(&kamailio, "REGISTER challenged") >= 1, "the first REGISTER was challenged:\n{}", kamailio.log());
    let saved = count(&kamailio, "REGISTER saved");
    assert!(saved >= 1);

    // Refreshed at half the 4 s granted: two more within 5 s, and still registered.
    let end = Instant::now() + Duration::from_secs(6);
    while count(&kamailio, "REGISTER saved") < saved + 2 {
        assert!(Instant::now() < end, "fewer than two refreshes in 6 s:\n{}", tail(&kamailio.log(), 30));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(trunk(&server, "carrier")["registration"]["state"], "registered");
    assert!(kamailio.log().contains(&format!("REGISTER saved sip:agent@{REALM} contact <sip:agent@{}>", server.sip)), "{}", tail(&kamailio.log(), 20));

    // A call to the AOR, routed by Kamailio's location lookup, reaches voxline.
    let (capture, _) = RtpCapture::bind();
    let run = caller(&kamailio, capture.addr).run();
    run.assert_success("a call to sip:agent@ through the registrar's location");
    assert!(kamailio.log().contains(&format!("INVITE to a registered user, to sip:agent@{}", server.sip)), "{}", tail(&kamailio.log(), 20));
    let ended = events.wait_for("call.ended", Duration::from_secs(10)).1;
    assert_eq!(ended["reason"], "remote_bye");

    // Shutdown removes the binding.
    server.signal("TERM");
    assert!(server.wait_exit(Duration::from_secs(15)).is_some(), "voxline did not exit after SIGTERM");
    let end = Instant::now() + Duration::from_secs(3);
    while !kamailio.log().contains("expires=0") {
        assert!(Instant::now() < end, "no REGISTER with Expires: 0 at shutdown:\n{}", tail(&kamailio.log(), 20));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sipp caller of sip:agent@ through `kamailio`, with the credentials it asks for.
fn caller(kamailio: &Kamailio, rtp: SocketAddr) -> SippCall {
    SippCall::new("uac_auth_greeting.xml", kamailio.addr)
        .rtp(rtp)
        .pause_ms(1000)
        .timeout(Duration::from_secs(30))
        .arg("-au")
        .arg(USER)
        .arg("-ap")
        .arg(PASSWORD)
}

/// The calls (Call-IDs) whose in-dialog `method` went through the proxy's route: a request
/// retransmitted under load is logged again but counts once.
fn routed(log: &str, method: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!("in-dialog {method} through our route, call ");
    log.lines().filter_map(|l| l.split_once(prefix.as_str()).map(|(_, id)| id.trim().to_string())).collect()
}

#[test]
fn twenty_calls_in_through_an_authenticating_record_routing_kamailio() {
    require_sipp();
    let _slot = shared_slot();
    let kamailio = start_kamailio();
    let spec = format!("name=carrier,host={REALM},proxy={},username={USER},password={PASSWORD},from_user=agent,register=yes,expires=60", kamailio.addr);
    let server = Server::start(&["--greeting", "You reached the registered agent.", "--trunk", &spec]);
    let mut events = events_socket(&server);
    wait_state(&server, "carrier", "registered", Duration::from_secs(10));

    // Twenty callers of the AOR, five at a time: each INVITE challenged (407), sent again
    // with credentials, routed by the location lookup to voxline, record-routed.
    let (capture, _) = RtpCapture::bind();
    let run = caller(&kamailio, capture.addr).calls(20, 5).timeout(Duration::from_secs(60)).run();
    run.assert_success("20 calls to sip:agent@ through the authenticating proxy");
    for _ in 0..20 {
        assert_eq!(events.wait_for("call.ended", WAIT).1["reason"], "remote_bye");
    }
    // Each call's RTP comes from its own voxline socket.
    let sources: std::collections::BTreeSet<SocketAddr> = capture.snapshot().iter().map(|p| p.from).collect();
    assert_eq!(sources.len(), 20, "RTP from 20 calls");
    let log = kamailio.log();
    assert_eq!(log.matches("INVITE challenged").count(), 20, "{}", tail(&log, 40));
    assert_eq!(log.matches(&format!("INVITE to a registered user, to sip:agent@{}", server.sip)).count(), 20, "{}", tail(&log, 40));
    assert_eq!(routed(&log, "ACK").len(), 20, "{}", tail(&log, 40));
    assert_eq!(routed(&log, "BYE").len(), 20, "{}", tail(&log, 40));
    assert!(!log.contains("without our route"), "{}", tail(&log, 40));
    for invite in run.sent_requests("INVITE").iter().filter(|m| m.msg.header("Proxy-Authorization").is_some()) {
        assert!(invite.msg.header("Proxy-Authorization").is_some_and(|a| a.contains("username=\"alice\"")), "{:?}", invite.msg.header("Proxy-Authorization"));
    }
    assert_eq!(run.responses(407).len(), 20, "one challenge per call");
    assert_eq!(run.responses(200).iter().filter(|m| m.msg.header("Record-Route").is_some_and(|rr| rr.contains(&kamailio.addr.to_string()))).count(), 20, "every answer record-routed by the proxy");
}

#[test]
fn twenty_calls_out_through_an_authenticating_record_routing_kamailio_with_bye_from_either_side() {
    require_sipp();
    let _slot = shared_slot();
    let kamailio = start_kamailio();
    let (rtp, _) = RtpCapture::bind();
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let answer = SippCall::uas("uas_trunk_answer.xml", port_a).rtp(rtp.addr).calls(10, 10).timeout(Duration::from_secs(60)).spawn();
    let hangup = SippCall::uas("uas_trunk_hangup.xml", port_b).rtp(rtp.addr).calls(10, 10).timeout(Duration::from_secs(60)).spawn();
    std::thread::sleep(Duration::from_millis(300));
    let trunk = |name: &str, port: u16| format!("name={name},host=127.0.0.1,port={port},proxy={},username={USER},password={PASSWORD},from_user=agent,from_domain={REALM}", kamailio.addr);
    let (a, b) = (trunk("ours", port_a), trunk("theirs", port_b));
    let server = Server::start(&["--greeting", "", "--trunk", &a, "--trunk", &b]);
    let mut events = events_socket(&server);

    // Ten calls that voxline hangs up, ten that the callee hangs up; five at a time each.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for batch in 0..2 {
        let mut placed = Vec::new();
        for i in 0..5 {
            let n = batch * 5 + i;
            placed.push((true, place(&server, json!({"to": format!("+1555000{n:04}"), "trunk": "ours", "greeting": false}))));
            placed.push((false, place(&server, json!({"to": format!("sip:+1555100{n:04}@example.invalid"), "trunk": "theirs", "greeting": false}))));
        }
        for (hang_up, id) in placed {
            event_for(&mut events, "call.answered", &id);
            if hang_up {
                assert_eq!(server.hangup(&id).status, 202);
                ours.push(id);
            } else {
                theirs.push(id);
            }
        }
    }
    for id in &ours {
        assert_eq!(event_for(&mut events, "call.ended", id)["reason"], "local_bye", "{id}");
    }
    for id in &theirs {
        assert_eq!(event_for(&mut events, "call.ended", id)["reason"], "remote_bye", "{id}");
    }
    let (answer, hangup) = (answer.wait(), hangup.wait());
    answer.assert_success("10 calls answered, hung up by voxline");
    hangup.assert_success("10 calls answered, hung up by the callee");

    // Every INVITE was challenged once and authorized once, and arrived record-routed.
    let log = kamailio.log();
    assert_eq!(log.matches("INVITE challenged").count(), 20, "{}", tail(&log, 40));
    assert_eq!(log.matches("INVITE authorized").count(), 20);
    for result in [&answer, &hangup] {
        for invite in result.requests("INVITE") {
            assert!(invite.msg.header("Record-Route").is_some_and(|rr| rr.contains(&kamailio.addr.to_string())), "record-routed");
            assert!(invite.msg.header("Proxy-Authorization").is_none(), "the proxy consumed the credentials");
        }
    }
    let invite = &answer.requests("INVITE")[0].msg;
    assert!(invite.request_uri().is_some_and(|u| u.starts_with("sip:+1555000") && u.ends_with(&format!("@127.0.0.1:{port_a}"))), "{:?}", invite.request_uri());
    assert!(invite.header("From").is_some_and(|f| f.starts_with(&format!("<sip:agent@{REALM}>"))), "{:?}", invite.header("From"));
    // ACKs and BYEs in both directions went through the proxy's route: 10 BYEs from us,
    // 10 to us, 20 ACKs.
    assert_eq!(routed(&log, "BYE").len(), 20, "{}", tail(&log, 40));
    assert_eq!(routed(&log, "ACK").len(), 20, "{}", tail(&log, 40));
    assert!(!log.contains("without our route"), "{}", tail(&log, 40));
}

#[test]
fn wrong_credentials_fail_the_call_after_one_retry() {
    let _slot = shared_slot();
    let kamailio = start_kamailio();
    let spec = format!("name=carrier,host=127.0.0.1,port=9,proxy={},username={USER},password=not-{PASSWORD}", kamailio.addr);
    let server = Server::start(&["--greeting", "", "--trunk", &spec]);
    let mut events = events_socket(&server);
    let id = place(&server, json!({"to": "+15551234567", "trunk": "carrier"}));
    let failed = event_for(&mut events, "call.failed", &id);
    assert_eq!(failed["status"], 407, "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("credentials refused"), "{failed}");
    assert_eq!(event_for(&mut events, "call.ended", &id)["reason"], "failed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&kamailio, "INVITE challenged"), 2, "one retry, then no more:\n{}", tail(&kamailio.log(), 20));
    assert_eq!(count(&kamailio, "INVITE authorized"), 0);
}

#[test]
fn a_registrar_that_never_answers_is_retried_with_exponential_backoff() {
    let _slot = shared_slot();
    let silent = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    silent.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let spec = format!("name=silent,host=127.0.0.1,port={},username={USER},password={PASSWORD},register=yes,timeout=1,retry=1", silent.local_addr().unwrap().port());
    let server = Server::start(&["--greeting", "", "--api-token", TOKEN, "--trunk", &spec]);
    // Each attempt: a REGISTER and its retransmission at 0.5 s, given up after 1 s; then
    // waits of 1, 2, 4 s: attempts start at 0, 2, 5 and 10 s.
    let start = Instant::now();
    let mut attempts: Vec<(Duration, String)> = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_millis(10_800) {
        let Ok((n, _)) = silent.recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("REGISTER sip:127.0.0.1:"), "{text}");
        let cseq = text.lines().find(|l| l.to_ascii_lowercase().starts_with("cseq:")).unwrap_or_default().to_string();
        if attempts.last().is_none_or(|(_, c)| *c != cseq) {
            attempts.push((start.elapsed(), cseq));
        }
    }
    let at: Vec<f64> = attempts.iter().map(|(t, _)| t.as_secs_f64() - attempts[0].0.as_secs_f64()).collect();
    assert_eq!(at.len(), 4, "attempts at {at:?} s");
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, expected) in gaps.iter().zip([2.0, 3.0, 5.0]) {
        assert!((gap - expected).abs() < 0.6, "gaps {gaps:?} s, expected 2, 3, 5 (1 s waiting + 1, 2, 4 s backoff)");
    }
    // GET /v1/trunks is behind the API token.
    assert_eq!(get_with_token(&server, "/v1/trunks", None).0, 401);
    let (status, body) = get_with_token(&server, "/v1/trunks", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let t = list["trunks"][0].clone();
    assert_eq!(t["name"], "silent");
    assert_eq!(t["registration"]["state"], "failed", "{t}");
    assert_eq!(t["registration"]["last_error"]["status"], 408, "{t}");
    assert!(t["registration"]["failures"].as_u64().unwrap() >= 3, "{t}");
}

#[test]
fn trunk_host_names_resolve_by_naptr_srv_and_a_and_fail_over_to_the_next_target() {
    require_sipp();
    let _slot = shared_slot();
    let kamailio = start_kamailio();
    let silent = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    silent.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let silent_callee = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    silent_callee.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (rtp, _) = RtpCapture::bind();
    let callee_port = free_udp_port();
    let callee = SippCall::uas("uas_trunk_answer.xml", callee_port).rtp(rtp.addr).timeout(Duration::from_secs(30)).spawn();
    // reg.voxline.test: NAPTR -> _sip._udp.reg.voxline.test; SRV priority 10 a silent socket,
    // priority 20 Kamailio. calls.voxline.test: no NAPTR; SRV priority 10 a silent socket,
    // priority 20 the sipp callee.
    let dns = Dnsmasq::start(&[
        "--naptr-record=reg.voxline.test,10,10,s,SIP+D2U,,_sip._udp.reg.voxline.test".into(),
        format!("--srv-host=_sip._udp.reg.voxline.test,silent.voxline.test,{},10,10", silent.local_addr().unwrap().port()),
        format!("--srv-host=_sip._udp.reg.voxline.test,kamailio.voxline.test,{},20,10", kamailio.addr.port()),
        format!("--srv-host=_sip._udp.calls.voxline.test,silent.voxline.test,{},10,10", silent_callee.local_addr().unwrap().port()),
        format!("--srv-host=_sip._udp.calls.voxline.test,callee.voxline.test,{callee_port},20,10"),
        "--host-record=silent.voxline.test,127.0.0.1".into(),
        "--host-record=kamailio.voxline.test,127.0.0.1".into(),
        "--host-record=callee.voxline.test,127.0.0.1".into(),
    ]);
    let reg = format!("name=reg,host=reg.voxline.test,username={USER},password={PASSWORD},from_user=agent,register=yes,timeout=1");
    let calls = "name=calls,host=calls.voxline.test,timeout=1";
    let server = Server::start(&["--greeting", "", "--dns-server", &dns.addr.to_string(), "--trunk", &reg, "--trunk", calls]);
    let mut events = events_socket(&server);

    let t = wait_state(&server, "reg", "registered", Duration::from_secs(10));
    assert_eq!(t["registration"]["registrar"], kamailio.addr.to_string(), "registered with the second SRV target: {t}");
    let mut buf = [0u8; 4096];
    let (n, _) = silent.recv_from(&mut buf).expect("the first SRV target got the first REGISTER");
    assert!(buf[..n].starts_with(b"REGISTER sip:reg.voxline.test SIP/2.0"), "{}", String::from_utf8_lossy(&buf[..n]));
    let log = dns.log();
    for query in ["query[NAPTR] reg.voxline.test", "query[SRV] _sip._udp.reg.voxline.test", "query[A] kamailio.voxline.test", "query[SRV] _sip._udp.calls.voxline.test"] {
        if !query.contains("calls") {
            assert!(log.contains(query), "no `{query}` in the DNS log:\n{log}");
        }
    }

    let id = place(&server, json!({"to": "+15557654321", "trunk": "calls"}));
    event_for(&mut events, "call.answered", &id);
    assert_eq!(server.hangup(&id).status, 202);
    event_for(&mut events, "call.ended", &id);
    let result = callee.wait();
    result.assert_success("a call through a trunk found by SRV");
    assert_eq!(result.requests("INVITE")[0].msg.request_uri(), Some("sip:+15557654321@calls.voxline.test"));
    let (n, _) = silent_callee.recv_from(&mut buf).expect("the first SRV target got the first INVITE");
    assert!(buf[..n].starts_with(b"INVITE sip:+15557654321@calls.voxline.test SIP/2.0"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(dns.log().contains("query[SRV] _sip._udp.calls.voxline.test"));
}

#[test]
fn calls_out_through_a_tcp_trunk_with_bye_from_either_side() {
    require_sipp();
    let _slot = shared_slot();
    let (rtp, _) = RtpCapture::bind();
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let tcp = |scenario: &str, port: u16| SippCall::uas(scenario, port).arg("-t").arg("t1").rtp(rtp.addr).calls(3, 3).timeout(Duration::from_secs(30)).spawn();
    let (answer, hangup) = (tcp("uas_trunk_answer.xml", port_a), tcp("uas_trunk_hangup.xml", port_b));
    std::thread::sleep(Duration::from_millis(300));
    let trunk_spec = |name: &str, port: u16| format!("name={name},host=127.0.0.1,port={port},transport=tcp,from_user=agent");
    let (a, b) = (trunk_spec("ours", port_a), trunk_spec("theirs", port_b));
    let server = Server::start(&["--greeting", "", "--trunk", &a, "--trunk", &b]);
    assert_eq!(trunk(&server, "ours")["transport"], "tcp", "GET /v1/trunks shows the transport");
    let mut events = events_socket(&server);

    let mut placed = Vec::new();
    for n in 0..3 {
        placed.push((true, place(&server, json!({"to": format!("+1555200{n:04}"), "trunk": "ours", "greeting": false}))));
        placed.push((false, place(&server, json!({"to": format!("+1555300{n:04}"), "trunk": "theirs", "greeting": false}))));
    }
    for (hang_up, id) in &placed {
        event_for(&mut events, "call.answered", id);
        if *hang_up {
            assert_eq!(server.hangup(id).status, 202);
        }
    }
    for (hang_up, id) in &placed {
        let reason = if *hang_up { "local_bye" } else { "remote_bye" };
        assert_eq!(event_for(&mut events, "call.ended", id)["reason"], reason, "{id}");
    }
    let (answer, hangup) = (answer.wait(), hangup.wait());
    answer.assert_success("3 calls over a TCP trunk, hung up by voxline");
    hangup.assert_success("3 calls over a TCP trunk, hung up by the callee");
    for result in [&answer, &hangup] {
        for invite in result.requests("INVITE") {
            assert!(invite.msg.header("Via").is_some_and(|v| v.starts_with("SIP/2.0/TCP")), "{:?}", invite.msg.header("Via"));
            assert!(invite.msg.request_uri().is_some_and(|u| u.ends_with(";transport=tcp")), "{:?}", invite.msg.request_uri());
            assert!(invite.msg.header("Contact").is_some_and(|c| c.contains(";transport=tcp")), "{:?}", invite.msg.header("Contact"));
        }
    }
    assert_eq!(answer.requests("BYE").len(), 3, "voxline's BYEs reached the callee over TCP");
}
