//! How calls end: our BYE (Route, CSeq, tags, Timer E/F, next hop), the ACK timeout,
//! rejection (Timer G/H), hangup in each state, and CANCEL.

mod common;

use std::time::{Duration, Instant};

use common::*;
use voxline_sip::{EndReason, Event, SipError};

#[test]
fn no_ack_within_64_t1_sends_bye_and_ends_with_ack_timeout() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, ok) = answered_call(&mut ep, start, "c5");
    let sent = run_until(&mut ep, start, Duration::from_secs(32));
    let (last_time, bye) = sent.last().unwrap();
    assert_eq!(*last_time, Duration::from_secs(32));
    assert_eq!(bye.method(), "BYE");
    assert_eq!(bye.request_uri(), "sip:caller@198.51.100.7:5070");
    assert_eq!(bye.to_tag().as_deref(), Some("caller-tag"));
    assert!(bye
        .header("From")
        .unwrap()
        .ends_with(&format!(";tag={}", ok.to_tag().unwrap())));
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::AckTimeout
        }]
    );
    assert_eq!(ep.call_count(), 0);
    // The 200 was retransmitted 10 times before that: 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s.
    assert_eq!(sent.iter().filter(|(_, s)| s.status() == 200).count(), 10);
}

#[test]
fn a_shorter_ack_timeout_ends_the_call_sooner() {
    let mut config = config();
    config.ack_timeout = Duration::from_secs(8);
    let mut ep = voxline_sip::Endpoint::with_seed(config, 7);
    let start = Instant::now();
    let (call, _ok) = answered_call(&mut ep, start, "c5s");
    let sent = run_until(&mut ep, start, Duration::from_secs(8));
    let (last_time, bye) = sent.last().unwrap();
    assert_eq!(*last_time, Duration::from_secs(8));
    assert_eq!(bye.method(), "BYE");
    assert_eq!(events(&mut ep), vec![Event::CallEnded { call, reason: EndReason::AckTimeout }]);
    // 0.5, 1.5, 3.5 and 7.5 s.
    assert_eq!(sent.iter().filter(|(_, s)| s.status() == 200).count(), 4);
}

#[test]
fn an_abandoned_call_sends_nothing_more() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _ok) = answered_call(&mut ep, start, "c5a");
    ep.abandon(start + Duration::from_millis(100), call).unwrap();
    assert_eq!(events(&mut ep), vec![Event::CallEnded { call, reason: EndReason::Abandoned }]);
    assert_eq!(ep.call_count(), 0);
    let sent = run_until(&mut ep, start, Duration::from_secs(40));
    assert!(sent.is_empty(), "no 200 retransmission and no BYE: {:?}", sent.iter().map(|(t, _)| t).collect::<Vec<_>>());
    // Only an answered, unacknowledged call can be abandoned.
    assert!(matches!(ep.abandon(start, call), Err(SipError::UnknownCall(_))));
}

#[test]
fn hangup_sends_bye_with_route_cseq_and_tags_retransmitted_until_200() {
    let mut ep = endpoint();
    let start = Instant::now();
    Req::invite("c6", "z9hG4bK-c6")
        .header("Record-Route: <sip:10.1.1.1:5080;lr>, <sip:proxy2.example.com;lr>")
        .header("Record-Route: <sip:10.3.3.3;lr>")
        .cseq(17)
        .send(&mut ep, start);
    drain(&mut ep);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    ep.answer(start, call, ANSWER).unwrap();
    let ok = one(&mut ep);
    assert_eq!(
        ok.headers("Record-Route"),
        ["<sip:10.1.1.1:5080;lr>, <sip:proxy2.example.com;lr>", "<sip:10.3.3.3;lr>"],
        "copied into the 2xx, in order, so the caller's ACK and BYE follow the proxies (RFC 3261 12.1.1)"
    );
    let tag = ok.to_tag().unwrap();
    Req::new("ACK", "c6", "z9hG4bK-ack6")
        .with_to_tag(&tag)
        .cseq(17)
        .send(&mut ep, start);
    events(&mut ep);

    ep.hangup(start, call).unwrap();
    let bye = one(&mut ep);
    assert_eq!(bye.first_line(), "BYE sip:caller@198.51.100.7:5070 SIP/2.0");
    assert_eq!(
        bye.headers("Route"),
        vec![
            "<sip:10.1.1.1:5080;lr>",
            "<sip:proxy2.example.com;lr>",
            "<sip:10.3.3.3;lr>"
        ]
    );
    assert_eq!(
        bye.to,
        "10.1.1.1:5080".parse().unwrap(),
        "first route is the next hop"
    );
    assert_eq!(
        bye.header("To").unwrap(),
        "\"Caller\" <sip:caller@example.com>;tag=caller-tag"
    );
    assert_eq!(
        bye.header("From").unwrap(),
        format!("<sip:agent@example.com>;tag={tag}")
    );
    assert_eq!(bye.header("Call-ID").unwrap(), "c6");
    let (seq, method) = bye.cseq();
    assert_eq!(method, "BYE");
    assert!((1..1 << 31).contains(&seq));
    assert!(bye
        .header("Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK"));
    assert_eq!(bye.header("Max-Forwards").unwrap(), "70");
    assert_eq!(
        ep.call_count(),
        1,
        "the call lasts until the BYE is answered"
    );

    // Timer E: T1, 2T1, 4T1, then T2.
    let sent = run_until(&mut ep, start, ms(11_600));
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 1500, 3500, 7500, 11500]);
    assert!(sent.iter().all(|(_, s)| s.text == bye.text));

    let response = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c6\r\nCSeq: {seq} BYE\r\nContent-Length: 0\r\n\r\n",
        bye.header("Via").unwrap(),
        bye.header("From").unwrap(),
        bye.header("To").unwrap()
    );
    ep.handle_datagram(
        start + ms(12_000),
        "10.1.1.1:5080".parse().unwrap(),
        response.as_bytes(),
    );
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::LocalBye
        }]
    );
    assert!(
        run_until(&mut ep, start, Duration::from_secs(60)).is_empty(),
        "no more BYEs"
    );
    // A retransmitted 200 is absorbed by Timer K's transaction or, later, dropped.
    ep.handle_datagram(
        start + ms(12_100),
        "10.1.1.1:5080".parse().unwrap(),
        response.as_bytes(),
    );
    assert_eq!(ep.stats().unexpected_responses, 1);
}

#[test]
fn bye_ignores_100_and_ends_on_timer_f() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _) = established_call(&mut ep, start, "c7");
    ep.hangup(start, call).unwrap();
    let bye = one(&mut ep);
    let trying = format!(
        "SIP/2.0 100 Trying\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: c7\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
        bye.header("Via").unwrap(),
        bye.header("From").unwrap(),
        bye.header("To").unwrap(),
        bye.cseq().0
    );
    ep.handle_datagram(start + ms(100), peer(), trying.as_bytes());
    assert!(events(&mut ep).is_empty());
    let sent = run_until(&mut ep, start, Duration::from_secs(40));
    // After the 100 the retransmit interval is T2.
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times[..3], [500, 4500, 8500]);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::LocalBye
        }]
    );
}

#[test]
fn no_contact_no_route_symmetric_peer_gets_bye_at_its_source() {
    let mut ep = endpoint();
    let now = Instant::now();
    // Contact says a private address; the Via has rport: the BYE follows the source address.
    Req::new("INVITE", "nat", "z9hG4bK-nat")
        .header("Contact: <sip:caller@10.0.0.9:5060>")
        .send(&mut ep, now);
    drain(&mut ep);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    ep.answer(now, call, ANSWER).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    Req::new("ACK", "nat", "z9hG4bK-nat-ack")
        .with_to_tag(&tag)
        .send(&mut ep, now);
    ep.hangup(now, call).unwrap();
    let bye = drain(&mut ep).pop().unwrap();
    assert_eq!(bye.request_uri(), "sip:caller@10.0.0.9:5060");
    assert_eq!(bye.to, peer());
}

#[test]
fn hangup_before_answer_rejects_with_480() {
    let mut ep = endpoint();
    let now = Instant::now();
    let call = incoming_call(&mut ep, now, "c8");
    ep.hangup(now, call).unwrap();
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 480 Temporarily Unavailable");
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::Rejected
        }]
    );
    assert_eq!(ep.hangup(now, call), Err(SipError::UnknownCall(call)));
}

#[test]
fn hangup_while_waiting_for_ack_sends_bye_after_the_ack() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, ok) = answered_call(&mut ep, now, "c9");
    ep.hangup(now, call).unwrap();
    assert!(
        drain(&mut ep).is_empty(),
        "no BYE before the ACK (RFC 3261 15)"
    );
    let tag = ok.to_tag().unwrap();
    Req::new("ACK", "c9", "z9hG4bK-ack9")
        .with_to_tag(&tag)
        .send(&mut ep, now + ms(300));
    let bye = one(&mut ep);
    assert_eq!(bye.method(), "BYE");
    assert!(matches!(events(&mut ep)[..], [Event::CallConfirmed { .. }]));
}

#[test]
fn reject_retransmits_the_final_response_until_ack() {
    let mut ep = endpoint();
    let start = Instant::now();
    let call = incoming_call(&mut ep, start, "c10");
    ep.reject(start, call, 486, None).unwrap();
    let busy = one(&mut ep);
    assert_eq!(busy.first_line(), "SIP/2.0 486 Busy Here");
    assert!(busy.to_tag().is_some());
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::Rejected
        }]
    );
    assert_eq!(ep.call_count(), 0);

    // Timer G: T1, 2T1, 4T1, T2...
    let sent = run_until(&mut ep, start, ms(7_600));
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 1500, 3500, 7500]);
    // The ACK for a non-2xx reuses the INVITE's branch.
    Req::new("ACK", "c10", "z9hG4bK-c10")
        .with_to_tag(&busy.to_tag().unwrap())
        .send(&mut ep, start + ms(7_600));
    assert!(drain(&mut ep).is_empty());
    assert!(
        run_until(&mut ep, start, Duration::from_secs(60)).is_empty(),
        "ACK stopped Timer G"
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn reject_without_ack_stops_at_timer_h() {
    let mut ep = endpoint();
    let start = Instant::now();
    let call = incoming_call(&mut ep, start, "c11");
    ep.reject(start, call, 603, Some("Go Away")).unwrap();
    assert_eq!(one(&mut ep).first_line(), "SIP/2.0 603 Go Away");
    let sent = run_until(&mut ep, start, Duration::from_secs(100));
    assert!(sent.iter().all(|(t, _)| *t < Duration::from_secs(32)));
    assert_eq!(ep.poll_timeout(), None, "Timer H ended the transaction");
}

#[test]
fn reject_adds_the_headers_its_status_calls_for() {
    let mut ep = endpoint();
    let now = Instant::now();
    let call = incoming_call(&mut ep, now, "r488");
    ep.reject(now, call, 488, Some("No common codec")).unwrap();
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 488 No common codec");
    assert_eq!(
        r.header("Warning").unwrap(),
        "399 203.0.113.5:5060 \"No common codec\""
    );
    events(&mut ep);

    let call = incoming_call(&mut ep, now, "r503");
    ep.reject(now, call, 503, None).unwrap();
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 503 Service Unavailable");
    assert_eq!(r.header("Retry-After").unwrap(), "30");
    events(&mut ep);

    let call = incoming_call(&mut ep, now, "r200");
    assert_eq!(
        ep.reject(now, call, 200, None),
        Err(SipError::InvalidStatus(200))
    );
    ep.answer(now, call, ANSWER).unwrap();
    drain(&mut ep);
    assert!(matches!(
        ep.reject(now, call, 486, None),
        Err(SipError::WrongState { .. })
    ));
    assert!(matches!(
        ep.answer(now, call, ANSWER),
        Err(SipError::WrongState { .. })
    ));
    assert!(drain(&mut ep).is_empty(), "failed actions send nothing");
}

#[test]
fn cancel_before_answer_gets_200_and_the_invite_487() {
    let mut ep = endpoint();
    let now = Instant::now();
    let call = incoming_call(&mut ep, now, "c12");
    ep.ringing(now, call).unwrap();
    let ringing = one(&mut ep);
    let cancel = Req::new("CANCEL", "c12", "z9hG4bK-c12");
    cancel.send(&mut ep, now);
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].first_line(), "SIP/2.0 200 OK");
    assert_eq!(sent[0].cseq(), (1, "CANCEL".to_string()));
    assert_eq!(
        sent[0].to_tag(),
        ringing.to_tag(),
        "same tag as the INVITE's responses"
    );
    assert_eq!(sent[1].first_line(), "SIP/2.0 487 Request Terminated");
    assert_eq!(sent[1].cseq(), (1, "INVITE".to_string()));
    assert_eq!(
        events(&mut ep),
        vec![
            Event::CallCancelled { call },
            Event::CallEnded {
                call,
                reason: EndReason::Cancelled
            }
        ]
    );
    cancel.send(&mut ep, now);
    assert_eq!(
        one(&mut ep).text,
        sent[0].text,
        "retransmitted CANCEL, same 200"
    );
    assert!(events(&mut ep).is_empty());
}

#[test]
fn cancel_for_an_unknown_transaction_gets_481() {
    let mut ep = endpoint();
    Req::new("CANCEL", "nope", "z9hG4bK-nope").send(&mut ep, Instant::now());
    assert_eq!(
        one(&mut ep).first_line(),
        "SIP/2.0 481 Call/Transaction Does Not Exist"
    );
}

#[test]
fn cancel_after_answer_gets_200_and_changes_nothing() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, _ok) = answered_call(&mut ep, now, "c13");
    Req::new("CANCEL", "c13", "z9hG4bK-c13").send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn strict_route_goes_in_the_request_uri_and_the_target_last() {
    let mut ep = endpoint();
    let now = Instant::now();
    Req::invite("strict", "z9hG4bK-strict")
        .header("Record-Route: <sip:10.9.9.9:5066>, <sip:10.8.8.8;lr>")
        .send(&mut ep, now);
    drain(&mut ep);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    ep.answer(now, call, ANSWER).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    Req::new("ACK", "strict", "z9hG4bK-strict-ack")
        .with_to_tag(&tag)
        .send(&mut ep, now);
    events(&mut ep);
    ep.hangup(now, call).unwrap();
    let bye = one(&mut ep);
    assert_eq!(bye.request_uri(), "sip:10.9.9.9:5066");
    assert_eq!(
        bye.headers("Route"),
        vec!["<sip:10.8.8.8;lr>", "<sip:caller@198.51.100.7:5070>"]
    );
    assert_eq!(bye.to, "10.9.9.9:5066".parse().unwrap());
}

#[test]
fn cancel_of_a_pending_reinvite_gets_487_and_the_call_goes_on() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag) = established_call(&mut ep, now, "cre");
    Req::invite("cre", "z9hG4bK-cre-re")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, now);
    drain(&mut ep);
    assert!(matches!(events(&mut ep)[..], [Event::ReInvite { .. }]));
    Req::new("CANCEL", "cre", "z9hG4bK-cre-re")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, now);
    let statuses: Vec<u16> = drain(&mut ep).iter().map(Sent::status).collect();
    assert_eq!(statuses, vec![200, 487]);
    assert!(events(&mut ep).is_empty());
    assert!(matches!(
        ep.answer_reinvite(now, call, ANSWER),
        Err(SipError::WrongState { .. })
    ));
    assert_eq!(ep.call_count(), 1);
}
