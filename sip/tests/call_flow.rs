//! Calls driven with raw datagrams: INVITE, 100, answer, 2xx retransmission, ACK, remote
//! BYE, re-INVITE, DTMF. How calls end from our side is in `call_end.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use voxline_sip::{EndReason, Event, SipError};

#[test]
fn invite_gets_100_trying_at_once_and_an_incoming_call_event() {
    let mut ep = endpoint();
    let now = Instant::now();
    Req::invite("c1", "z9hG4bK-c1")
        .header("X-Agent-Id: sales")
        .header("x-campaign: spring")
        .header("Subject: hi")
        .send(&mut ep, now);
    let trying = one(&mut ep);
    assert_eq!(trying.first_line(), "SIP/2.0 100 Trying");
    assert_eq!(trying.to_tag(), None);
    assert_eq!(trying.header("Call-ID").unwrap(), "c1");
    assert_eq!(trying.cseq(), (1, "INVITE".to_string()));
    assert_eq!(
        trying.header("From").unwrap(),
        "\"Caller\" <sip:caller@example.com>;tag=caller-tag"
    );
    assert_eq!(trying.header("Server").unwrap(), "voxline/0.1");
    match events(&mut ep).as_slice() {
        [Event::IncomingCall {
            call_id,
            from,
            to,
            request_uri,
            source,
            offer,
            headers,
            ..
        }] => {
            assert_eq!(call_id, "c1");
            assert_eq!(from, "\"Caller\" <sip:caller@example.com>;tag=caller-tag");
            assert_eq!(to, "<sip:agent@example.com>");
            assert_eq!(request_uri, "sip:agent@192.0.2.10");
            assert_eq!(*source, peer());
            assert_eq!(offer.as_deref(), Some(SDP));
            assert_eq!(
                headers,
                &vec![
                    ("X-Agent-Id".to_string(), "sales".to_string()),
                    ("x-campaign".to_string(), "spring".to_string())
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn retransmitted_invite_resends_the_latest_provisional_without_a_second_call() {
    let mut ep = endpoint();
    let now = Instant::now();
    let invite = Req::invite("c2", "z9hG4bK-c2");
    invite.send(&mut ep, now);
    let trying = one(&mut ep);
    let call = match events(&mut ep).as_slice() {
        [Event::IncomingCall { call, .. }] => *call,
        other => panic!("{other:?}"),
    };

    invite.send(&mut ep, now);
    assert_eq!(one(&mut ep).text, trying.text);

    ep.ringing(now, call).unwrap();
    let ringing = one(&mut ep);
    assert_eq!(ringing.first_line(), "SIP/2.0 180 Ringing");
    assert_eq!(ringing.header("Contact").unwrap(), "<sip:203.0.113.5:5060>");
    invite.send(&mut ep, now);
    assert_eq!(one(&mut ep).text, ringing.text);

    ep.answer(now, call, ANSWER).unwrap();
    let ok = one(&mut ep);
    assert_eq!(ok.to_tag(), ringing.to_tag(), "one dialog, one tag");
    // After the 2xx a retransmitted INVITE is absorbed (RFC 6026 7.1); the 2xx goes out
    // again on the core's own timer until the ACK.
    invite.send(&mut ep, now);
    assert!(ep.poll_transmit().is_none(), "no second 200 in answer to the INVITE");

    assert!(events(&mut ep).is_empty(), "no second IncomingCall");
    assert_eq!(ep.call_count(), 1);
    assert_eq!(ep.stats().retransmissions, 3);
}

#[test]
fn answer_sends_200_with_sdp_and_contact_then_retransmits_until_ack() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, ok) = answered_call(&mut ep, start, "c3");
    assert_eq!(ok.first_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.header("Contact").unwrap(), "<sip:203.0.113.5:5060>");
    assert_eq!(ok.header("Content-Type").unwrap(), "application/sdp");
    assert_eq!(ok.body(), ANSWER);
    assert_eq!(
        ok.header("Allow").unwrap(),
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE"
    );
    assert_eq!(ok.to, peer());

    // 13.3.1.4: T1, then doubling, capped at T2.
    let sent = run_until(&mut ep, start, ms(15_600));
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(times, vec![500, 1500, 3500, 7500, 11500, 15500]);
    assert!(sent.iter().all(|(_, s)| s.text == ok.text));

    let tag = ok.to_tag().unwrap();
    let now = start + ms(15_600);
    Req::new("ACK", "c3", "z9hG4bK-ack3")
        .with_to_tag(&tag)
        .send(&mut ep, now);
    assert!(drain(&mut ep).is_empty(), "ACK is never answered");
    assert_eq!(
        events(&mut ep),
        vec![Event::CallConfirmed { call, answer: None }]
    );
    assert!(
        run_until(&mut ep, start, Duration::from_secs(60)).is_empty(),
        "ACK stopped the 200"
    );
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn remote_bye_gets_200_and_ends_the_call_once() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag) = established_call(&mut ep, now, "c4");
    let bye = Req::new("BYE", "c4", "z9hG4bK-bye4")
        .with_to_tag(&tag)
        .cseq(2);
    bye.send(&mut ep, now);
    let ok = one(&mut ep);
    assert_eq!(ok.first_line(), "SIP/2.0 200 OK");
    assert_eq!(ok.cseq(), (2, "BYE".to_string()));
    assert_eq!(ok.to_tag().as_deref(), Some(tag.as_str()));
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    assert_eq!(ep.call_count(), 0);

    bye.send(&mut ep, now + ms(500));
    assert_eq!(
        one(&mut ep).text,
        ok.text,
        "retransmitted BYE gets the same 200"
    );
    assert!(events(&mut ep).is_empty(), "no second CallEnded");

    Req::new("BYE", "c4", "z9hG4bK-bye4b")
        .with_to_tag(&tag)
        .cseq(3)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 481, "a new BYE after the end");
}

#[test]
fn full_call_invite_answer_ack_bye() {
    let mut ep = endpoint();
    let t0 = Instant::now();
    let invite = Req::invite("full", "z9hG4bK-full");
    invite.send(&mut ep, t0);
    assert_eq!(one(&mut ep).status(), 100);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    ep.answer(t0 + ms(200), call, ANSWER).unwrap();
    let ok = one(&mut ep);
    let sent = run_until(&mut ep, t0 + ms(200), ms(7_600));
    let gaps: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(gaps, vec![500, 1500, 3500, 7500]);
    let tag = ok.to_tag().unwrap();
    Req::new("ACK", "full", "z9hG4bK-full-ack")
        .with_to_tag(&tag)
        .send(&mut ep, t0 + ms(8_000));
    assert!(matches!(events(&mut ep)[..], [Event::CallConfirmed { .. }]));
    assert!(run_until(&mut ep, t0, Duration::from_secs(20)).is_empty());
    Req::new("BYE", "full", "z9hG4bK-full-bye")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, t0 + ms(20_000));
    assert_eq!(one(&mut ep).status(), 200);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::RemoteBye
        }]
    );
}

#[test]
fn reinvite_is_offered_to_the_app_and_answered() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, tag) = established_call(&mut ep, start, "c14");
    let reinvite = Req::new("INVITE", "c14", "z9hG4bK-re14")
        .with_to_tag(&tag)
        .cseq(2)
        .header("Contact: <sip:caller@198.51.100.7:5999>")
        .body("application/sdp", SDP);
    reinvite.send(&mut ep, start);
    assert_eq!(one(&mut ep).status(), 100);
    assert_eq!(
        events(&mut ep),
        vec![Event::ReInvite {
            call,
            offer: Some(SDP.to_string())
        }]
    );
    ep.answer_reinvite(start, call, ANSWER).unwrap();
    let ok = one(&mut ep);
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.to_tag().as_deref(), Some(tag.as_str()));
    assert_eq!(ok.cseq(), (2, "INVITE".to_string()));
    assert_eq!(ok.body(), ANSWER);
    let sent = run_until(&mut ep, start, ms(1_600));
    assert_eq!(sent.len(), 2, "re-INVITE 2xx retransmitted like the first");
    Req::new("ACK", "c14", "z9hG4bK-re14-ack")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, start + ms(1_600));
    assert!(run_until(&mut ep, start, Duration::from_secs(40)).is_empty());
    assert!(events(&mut ep).is_empty());
    // Target refresh: the BYE goes to the new Contact (port 5999 is not the source port,
    // but the peer asked for rport, so the request follows the source).
    ep.hangup(start + Duration::from_secs(40), call).unwrap();
    let bye = one(&mut ep);
    assert_eq!(bye.request_uri(), "sip:caller@198.51.100.7:5999");
    assert!(bye.cseq().0 > 0);
}

#[test]
fn reinvite_can_be_rejected_and_the_call_goes_on() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag) = established_call(&mut ep, now, "c15");
    Req::invite("c15", "z9hG4bK-re15")
        .with_to_tag(&tag)
        .cseq(5)
        .send(&mut ep, now);
    drain(&mut ep);
    events(&mut ep);
    assert!(matches!(
        ep.answer(now, call, ANSWER),
        Err(SipError::WrongState { .. })
    ));
    ep.reject_reinvite(now, call, 488).unwrap();
    let r = one(&mut ep);
    assert_eq!(r.status(), 488);
    assert!(r.header("Warning").is_some());
    assert!(matches!(
        ep.reject_reinvite(now, call, 488),
        Err(SipError::WrongState { .. })
    ));
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn second_reinvite_while_one_is_pending_gets_500_retry_after() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag) = established_call(&mut ep, now, "c16");
    Req::invite("c16", "z9hG4bK-re16a")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, now);
    drain(&mut ep);
    let second = Req::invite("c16", "z9hG4bK-re16b")
        .with_to_tag(&tag)
        .cseq(3);
    second.send(&mut ep, now);
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 500 Previous INVITE Pending");
    let retry: u32 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!(retry <= 10);
    second.send(&mut ep, now);
    assert_eq!(
        one(&mut ep).first_line(),
        "SIP/2.0 500 Previous INVITE Pending",
        "same answer to a retransmission"
    );
}

#[test]
fn lower_cseq_in_dialog_gets_500() {
    let mut ep = endpoint();
    let now = Instant::now();
    Req::invite("c17", "z9hG4bK-c17")
        .cseq(10)
        .send(&mut ep, now);
    drain(&mut ep);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    ep.answer(now, call, ANSWER).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    Req::new("ACK", "c17", "z9hG4bK-ack17")
        .with_to_tag(&tag)
        .cseq(10)
        .send(&mut ep, now);
    events(&mut ep);
    Req::new("BYE", "c17", "z9hG4bK-bye17")
        .with_to_tag(&tag)
        .cseq(9)
        .send(&mut ep, now);
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 500 CSeq Out of Order");
    assert!(events(&mut ep).is_empty());
    Req::new("BYE", "c17", "z9hG4bK-bye17b")
        .with_to_tag(&tag)
        .cseq(11)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
}

#[test]
fn delayed_offer_answer_arrives_in_the_ack() {
    let mut ep = endpoint();
    let now = Instant::now();
    Req::new("INVITE", "c18", "z9hG4bK-c18").send(&mut ep, now);
    drain(&mut ep);
    let [Event::IncomingCall {
        call, ref offer, ..
    }] = events(&mut ep)[..]
    else {
        panic!()
    };
    assert_eq!(*offer, None);
    ep.answer(now, call, ANSWER).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    Req::new("ACK", "c18", "z9hG4bK-ack18")
        .with_to_tag(&tag)
        .body("application/sdp", SDP)
        .send(&mut ep, now);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallConfirmed {
            call,
            answer: Some(SDP.to_string())
        }]
    );
}

#[test]
fn remote_bye_before_answer_also_terminates_the_invite() {
    let mut ep = endpoint();
    let now = Instant::now();
    let call = incoming_call(&mut ep, now, "c19");
    ep.ringing(now, call).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    Req::new("BYE", "c19", "z9hG4bK-bye19")
        .with_to_tag(&tag)
        .cseq(2)
        .send(&mut ep, now);
    let sent = drain(&mut ep);
    let statuses: Vec<u16> = sent.iter().map(|s| s.status()).collect();
    assert_eq!(statuses, vec![200, 487]);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::RemoteBye
        }]
    );
}

#[test]
fn dtmf_info_is_answered_and_reported() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag) = established_call(&mut ep, now, "c20");
    Req::new("INFO", "c20", "z9hG4bK-info20")
        .with_to_tag(&tag)
        .cseq(2)
        .body("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
    Req::new("INFO", "c20", "z9hG4bK-info20b")
        .with_to_tag(&tag)
        .cseq(3)
        .body("application/dtmf", "#")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
    Req::new("INFO", "c20", "z9hG4bK-info20c")
        .with_to_tag(&tag)
        .cseq(4)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
    assert_eq!(
        events(&mut ep),
        vec![
            Event::Dtmf { call, digit: '5' },
            Event::Dtmf { call, digit: '#' }
        ]
    );
}

#[test]
fn many_calls_are_independent() {
    let mut ep = endpoint();
    let now = Instant::now();
    let a = incoming_call(&mut ep, now, "m1");
    let b = incoming_call(&mut ep, now, "m2");
    assert_ne!(a, b);
    assert_eq!(ep.call_count(), 2);
    ep.reject(now, a, 486, None).unwrap();
    drain(&mut ep);
    assert_eq!(ep.call_count(), 1);
    ep.answer(now, b, ANSWER).unwrap();
    assert_eq!(one(&mut ep).header("Call-ID").unwrap(), "m2");
}
