//! Session timers (RFC 4028) and UPDATE (RFC 3311): the 422 below our Min-SE, the headers of
//! our 2xx, our refreshes at half the interval (re-INVITE or UPDATE), the BYE when the peer's
//! refresh never comes, incoming refreshes resetting the wait, 491 on glare, and a call we
//! place offering timers and retrying once after 422. Time is fake.

mod common;

use std::time::{Duration, Instant};

use common::uac::{self, Resp};
use common::*;
use voxline_sip::{CallHandle, EndReason, Endpoint, Event};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An INVITE asking for session timers with `headers`.
fn timed_invite(call_id: &str, headers: &[&str]) -> Req {
    headers
        .iter()
        .fold(Req::invite(call_id, &format!("z9hG4bK-{call_id}")), |r, h| r.header(h))
}

/// Answers and confirms an INVITE with `headers`; returns the call, our tag and the 200.
fn established(ep: &mut Endpoint, now: Instant, call_id: &str, headers: &[&str]) -> (CallHandle, String, Sent) {
    timed_invite(call_id, headers).send(ep, now);
    assert_eq!(one(ep).status(), 100);
    let call = match events(ep).as_slice() {
        [Event::IncomingCall { call, .. }] => *call,
        other => panic!("{other:?}"),
    };
    ep.answer(now, call, ANSWER).unwrap();
    let ok = one(ep);
    assert_eq!(ok.status(), 200);
    let tag = ok.to_tag().unwrap();
    Req::new("ACK", call_id, &format!("z9hG4bK-ack-{call_id}"))
        .with_to_tag(&tag)
        .send(ep, now);
    assert!(drain(ep).is_empty());
    assert!(matches!(events(ep).as_slice(), [Event::CallConfirmed { .. }]));
    (call, tag, ok)
}

const WE_REFRESH: &[&str] = &["Supported: timer", "Session-Expires: 90;refresher=uas", "Min-SE: 90"];
const THEY_REFRESH: &[&str] = &["Supported: timer", "Session-Expires: 90;refresher=uac"];

#[test]
fn session_expires_below_our_min_se_gets_422_with_min_se() {
    let mut ep = endpoint();
    let now = Instant::now();
    timed_invite("s1", &["Supported: timer", "Session-Expires: 60"]).send(&mut ep, now);
    let refused = one(&mut ep);
    assert_eq!(refused.status(), 422);
    assert_eq!(refused.header("Min-SE").as_deref(), Some("90"));
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn the_2xx_says_the_interval_and_refresher_and_requires_timer_of_a_uac_that_supports_it() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, _, ok) = established(&mut ep, now, "s2", WE_REFRESH);
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("90;refresher=uas"));
    assert_eq!(ok.header("Require").as_deref(), Some("timer"));
    assert_eq!(ok.header("Supported").as_deref(), Some("timer"));
    assert!(ok.header("Allow").unwrap().contains("UPDATE"));

    // The caller did not choose: the UAC refreshes when it supports timers, else we do.
    let (_, _, ok) = established(&mut ep, now, "s3", &["Supported: timer", "Session-Expires: 600"]);
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("600;refresher=uac"));
    let (_, _, ok) = established(&mut ep, now, "s4", &["Session-Expires: 600"]);
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("600;refresher=uas"));
    assert_eq!(ok.header("Require"), None);
    // No Session-Expires at all: ours (1800 s), and we refresh.
    let (_, _, ok) = established(&mut ep, now, "s5", &[]);
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("1800;refresher=uas"));
}

#[test]
fn require_timer_gets_420_when_timers_are_off() {
    let mut config = config();
    config.session_expires = None;
    let mut ep = Endpoint::with_seed(config, 7);
    timed_invite("s6", &["Require: timer", "Session-Expires: 90"]).send(&mut ep, Instant::now());
    let refused = one(&mut ep);
    assert_eq!(refused.status(), 420);
    assert_eq!(refused.header("Unsupported").as_deref(), Some("timer"));
}

#[test]
fn we_refresh_at_half_the_interval_by_reinvite_with_the_same_sdp() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_, _, _) = established(&mut ep, start, "r1", WE_REFRESH);
    let sent = run_until(&mut ep, start, secs(45));
    let [(at, reinvite)] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    assert_eq!(*at, secs(45));
    assert_eq!(reinvite.method(), "INVITE");
    assert_eq!(reinvite.body(), ANSWER, "our current SDP, same session version");
    assert_eq!(reinvite.header("Session-Expires").as_deref(), Some("90;refresher=uac"));
    assert_eq!(reinvite.header("Supported").as_deref(), Some("timer"));
    let now = start + secs(45);
    Resp::to(reinvite, 200, "OK")
        .header("Session-Expires: 90;refresher=uac")
        .header("Contact: <sip:caller@198.51.100.7:5070>")
        .sdp(&mut ep, now, SDP);
    let ack = one(&mut ep);
    assert_eq!((ack.method(), ack.cseq().0), ("ACK", reinvite.cseq().0));
    // A retransmitted 2xx gets the same ACK.
    Resp::to(reinvite, 200, "OK").sdp(&mut ep, now, SDP);
    assert_eq!(one(&mut ep).text, ack.text);
    // The next refresh comes half an interval after this one.
    let sent = run_until(&mut ep, now, secs(45));
    let refreshes: Vec<_> = sent.iter().filter(|(_, s)| s.method() == "INVITE").collect();
    assert_eq!(refreshes.len(), 1, "{sent:#?}");
    assert_eq!(refreshes[0].0, secs(45));
    assert!(events(&mut ep).is_empty());
}

#[test]
fn we_refresh_by_update_without_a_body_when_the_peer_allows_it() {
    let mut ep = endpoint();
    let start = Instant::now();
    let mut headers = WE_REFRESH.to_vec();
    headers.push("Allow: INVITE, ACK, CANCEL, BYE, UPDATE");
    established(&mut ep, start, "r2", &headers);
    let sent = run_until(&mut ep, start, secs(45));
    let [(at, update)] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    assert_eq!((*at, update.method(), update.body()), (secs(45), "UPDATE", ""));
    assert_eq!(update.header("Session-Expires").as_deref(), Some("90;refresher=uac"));
    let now = start + secs(45);
    Resp::to(update, 200, "OK").header("Session-Expires: 90;refresher=uac").send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    let sent = run_until(&mut ep, now, secs(45));
    assert!(sent.iter().any(|(at, s)| *at == secs(45) && s.method() == "UPDATE"), "{sent:#?}");
}

#[test]
fn a_peer_refresher_that_stops_gets_bye_at_the_deadline() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _, _) = established(&mut ep, start, "e1", THEY_REFRESH);
    assert!(run_until(&mut ep, start, secs(59)).is_empty());
    // 90 - min(32, 90/3) = 60 s.
    let sent = run_until(&mut ep, start, secs(60));
    let [(at, bye)] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    assert_eq!((*at, bye.method()), (secs(60), "BYE"));
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded { call, reason: EndReason::SessionExpired }]
    );
}

#[test]
fn an_incoming_update_or_reinvite_resets_the_deadline() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, tag, _) = established(&mut ep, start, "e2", THEY_REFRESH);
    let at = start + secs(50);
    Req::new("UPDATE", "e2", "z9hG4bK-e2u")
        .with_to_tag(&tag)
        .cseq(2)
        .header("Supported: timer")
        .header("Session-Expires: 90;refresher=uac")
        .send(&mut ep, at);
    let ok = one(&mut ep);
    assert_eq!((ok.status(), ok.cseq().1.as_str()), (200, "UPDATE"));
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("90;refresher=uac"));
    assert_eq!(ok.body(), "");
    assert!(run_until(&mut ep, start, secs(109)).is_empty());

    let at = start + secs(100);
    timed_invite("e2", THEY_REFRESH).with_to_tag(&tag).cseq(3).send(&mut ep, at);
    assert_eq!(one(&mut ep).status(), 100);
    assert!(matches!(events(&mut ep).as_slice(), [Event::ReInvite { offer: Some(_), .. }]));
    ep.answer_reinvite(at, call, ANSWER).unwrap();
    let ok = one(&mut ep);
    assert_eq!(ok.header("Session-Expires").as_deref(), Some("90;refresher=uac"));
    Req::new("ACK", "e2", "z9hG4bK-e2a").with_to_tag(&tag).cseq(3).send(&mut ep, at);
    let sent = run_until(&mut ep, at, secs(60));
    let byes: Vec<_> = sent.iter().filter(|(_, s)| s.method() == "BYE").collect();
    assert_eq!(byes.len(), 1, "{sent:#?}");
    assert_eq!(byes[0].0, secs(60));
}

#[test]
fn a_refresh_below_our_min_se_gets_422_and_the_call_goes_on() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, tag, _) = established(&mut ep, start, "m1", THEY_REFRESH);
    let at = start + secs(30);
    Req::new("UPDATE", "m1", "z9hG4bK-m1u")
        .with_to_tag(&tag)
        .cseq(2)
        .header("Session-Expires: 30")
        .send(&mut ep, at);
    let refused = one(&mut ep);
    assert_eq!((refused.status(), refused.header("Min-SE").as_deref()), (422, Some("90")));
    assert!(events(&mut ep).is_empty());
    // The refused refresh reset nothing: BYE at 60 s as before.
    let sent = run_until(&mut ep, start, secs(60));
    assert!(sent.iter().any(|(at, s)| *at == secs(60) && s.method() == "BYE"), "{sent:#?}");
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded { call, reason: EndReason::SessionExpired }]
    );
}

#[test]
fn an_update_offer_is_answered_like_a_reinvite_and_a_second_offer_meanwhile_gets_491() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag, _) = established(&mut ep, now, "u1", THEY_REFRESH);
    let update = Req::new("UPDATE", "u1", "z9hG4bK-u1a")
        .with_to_tag(&tag)
        .cseq(2)
        .header("Contact: <sip:caller@198.51.100.7:5070>")
        .body("application/sdp", SDP);
    update.send(&mut ep, now);
    assert!(drain(&mut ep).is_empty(), "the offer waits for the application");
    assert_eq!(
        events(&mut ep),
        vec![Event::ReInvite { call, offer: Some(SDP.to_string()) }]
    );
    // A retransmission while we think is absorbed.
    update.send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    let second = Req::new("UPDATE", "u1", "z9hG4bK-u1b")
        .with_to_tag(&tag)
        .cseq(3)
        .body("application/sdp", SDP);
    second.send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 491);
    ep.answer_reinvite(now, call, ANSWER).unwrap();
    let ok = one(&mut ep);
    assert_eq!((ok.status(), ok.cseq().1.as_str(), ok.body()), (200, "UPDATE", ANSWER));
    // The retransmission now gets the same 200.
    update.send(&mut ep, now);
    assert_eq!(one(&mut ep).text, ok.text);
}

#[test]
fn an_offer_while_our_refresh_reinvite_is_out_gets_491_and_our_491_retries() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_, tag, _) = established(&mut ep, start, "g1", WE_REFRESH);
    let sent = run_until(&mut ep, start, secs(45));
    let [(_, reinvite)] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    let now = start + secs(45);
    timed_invite("g1", &[]).with_to_tag(&tag).cseq(2).send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 491);
    Req::new("UPDATE", "g1", "z9hG4bK-g1u")
        .with_to_tag(&tag)
        .cseq(3)
        .body("application/sdp", SDP)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 491);
    // Their 491 to ours: ACK, and another refresh 2.1-4 s later.
    Resp::to(reinvite, 491, "Request Pending").tag("caller-tag").send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "ACK");
    let sent = run_until(&mut ep, now, secs(4));
    let again: Vec<_> = sent.iter().filter(|(_, s)| s.method() == "INVITE").collect();
    assert_eq!(again.len(), 1, "{sent:#?}");
    assert!(again[0].0 >= ms(2100) && again[0].0 <= secs(4), "{:?}", again[0].0);
    assert!(events(&mut ep).is_empty(), "the call goes on");
}

#[test]
fn a_call_we_place_offers_timers_and_retries_once_after_422() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = uac::place(&mut ep, now, uac::request());
    assert_eq!(invite.header("Supported").as_deref(), Some("timer"));
    assert_eq!(invite.header("Session-Expires").as_deref(), Some("1800"));
    assert_eq!(invite.header("Min-SE").as_deref(), Some("90"));
    Resp::to(&invite, 422, "Session Interval Too Small")
        .tag("callee")
        .header("Min-SE: 2000")
        .send(&mut ep, now);
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].method(), "ACK");
    let retry = &sent[1];
    assert_eq!(retry.method(), "INVITE");
    assert_eq!(retry.cseq().0, invite.cseq().0 + 1);
    assert_eq!(retry.header("Session-Expires").as_deref(), Some("2000"));
    assert_eq!(retry.header("Min-SE").as_deref(), Some("2000"));
    // Once only: a second 422 fails the call.
    Resp::to(retry, 422, "Session Interval Too Small")
        .tag("callee")
        .header("Min-SE: 4000")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "ACK");
    assert!(events(&mut ep).iter().any(|e| matches!(e, Event::CallFailed { call: c, status: 422, .. } if *c == call)));
}

#[test]
fn a_call_we_place_follows_the_refresher_its_2xx_names() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_, invite) = uac::place(&mut ep, start, uac::request());
    Resp::to(&invite, 200, "OK")
        .tag("callee")
        .header("Contact: <sip:bob@198.51.100.7:5070>")
        .header("Session-Expires: 120;refresher=uac")
        .sdp(&mut ep, start, SDP);
    assert_eq!(one(&mut ep).method(), "ACK");
    let sent = run_until(&mut ep, start, secs(60));
    let [(at, refresh)] = sent.as_slice() else {
        panic!("{sent:#?}")
    };
    assert_eq!((*at, refresh.method(), refresh.body()), (secs(60), "INVITE", uac::OFFER));

    let (call, invite) = uac::place(&mut ep, start, uac::request());
    Resp::to(&invite, 200, "OK")
        .tag("callee")
        .header("Contact: <sip:bob@198.51.100.7:5070>")
        .header("Session-Expires: 120;refresher=uas")
        .sdp(&mut ep, start, SDP);
    assert_eq!(one(&mut ep).method(), "ACK");
    events(&mut ep);
    let sent = run_until(&mut ep, start + secs(60), secs(28));
    assert!(sent.iter().any(|(at, s)| *at == secs(28) && s.method() == "BYE"), "{sent:#?}");
    assert!(events(&mut ep).contains(&Event::CallEnded { call, reason: EndReason::SessionExpired }));
}
