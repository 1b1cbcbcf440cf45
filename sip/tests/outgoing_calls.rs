//! Calls we place, driven with fake time and the callee's responses written by hand: the INVITE
//! and Timer A/B, ringing and answer with the ACK of the 2xx, final errors ACKed by the
//! transaction, CANCEL, and the dialog afterwards (Digest challenges: outgoing_auth.rs).

mod common;

use std::time::{Duration, Instant};

use common::uac::*;
use common::*;
use voxline_sip::{CallRequest, EndReason, Event, SipError};

#[test]
fn invite_carries_the_offer_and_is_retransmitted_on_timer_a_until_timer_b_fails_it() {
    let mut ep = endpoint();
    let start = Instant::now();
    let mut r = request();
    r.headers = vec![("X-Campaign".into(), "spring".into())];
    let (call, invite) = place(&mut ep, start, r);
    assert_eq!(invite.first_line(), format!("INVITE {CALLEE} SIP/2.0"));
    assert_eq!(invite.to, peer());
    assert_eq!(invite.header("To").unwrap(), format!("<{CALLEE}>"));
    assert!(invite
        .header("From")
        .unwrap()
        .starts_with("<sip:voxline@203.0.113.5:5060>;tag="));
    assert_eq!(invite.header("Contact").unwrap(), "<sip:203.0.113.5:5060>");
    assert_eq!(invite.header("X-Campaign").unwrap(), "spring");
    assert_eq!(invite.header("Content-Type").unwrap(), "application/sdp");
    assert_eq!(invite.body(), OFFER);
    assert!(invite.top_branch().starts_with("z9hG4bK"));
    assert_eq!(ep.call_id(call), invite.header("Call-ID").as_deref());

    let sent = run_until(&mut ep, start, Duration::from_secs(40));
    let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
    assert_eq!(
        times,
        [500, 1500, 3500, 7500, 15500, 31500],
        "Timer A: T1, doubling, no cap"
    );
    assert!(
        sent.iter().all(|(_, s)| s.text == invite.text),
        "the same INVITE, byte for byte"
    );
    assert_eq!(
        events(&mut ep),
        [
            Event::CallFailed {
                call,
                status: 408,
                reason: "Request Timeout (no response to the INVITE)".into()
            },
            Event::CallEnded {
                call,
                reason: EndReason::Failed
            }
        ]
    );
    assert_eq!(ep.call_count(), 0);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn ringing_then_200_is_acked_in_the_dialog_and_reported_with_the_answer() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    Resp::to(&invite, 100, "Trying").send(&mut ep, now);
    Resp::to(&invite, 180, "Ringing")
        .tag("callee")
        .send(&mut ep, now);
    Resp::to(&invite, 180, "Ringing")
        .tag("callee")
        .send(&mut ep, now);
    Resp::to(&invite, 183, "Session Progress")
        .tag("callee")
        .send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        [
            Event::CallRinging { call, status: 180 },
            Event::CallRinging { call, status: 183 }
        ]
    );
    assert_eq!(
        run_until(&mut ep, now, Duration::from_secs(60)).len(),
        0,
        "no retransmission and no Timer B once a provisional response came"
    );

    Resp::to(&invite, 200, "OK")
        .tag("callee")
        .header("Record-Route: <sip:10.1.1.1:5080;lr>, <sip:10.2.2.2;lr>")
        .header("Contact: <sip:bob@198.51.100.9:5072>")
        .sdp(&mut ep, now, SDP);
    let ack = one(&mut ep);
    assert_eq!(ack.first_line(), "ACK sip:bob@198.51.100.9:5072 SIP/2.0");
    assert_eq!(
        ack.headers("Route"),
        ["<sip:10.2.2.2;lr>", "<sip:10.1.1.1:5080;lr>"],
        "Record-Route reversed (12.1.2)"
    );
    assert_eq!(ack.to, "10.2.2.2:5060".parse().unwrap());
    assert_eq!(ack.cseq(), (invite.cseq().0, "ACK".to_string()));
    assert_ne!(
        ack.top_branch(),
        invite.top_branch(),
        "the 2xx ACK is a new transaction"
    );
    assert_eq!(ack.to_tag().as_deref(), Some("callee"));
    assert_eq!(ack.header("From"), invite.header("From"));
    assert_eq!(
        events(&mut ep),
        [Event::CallAnswered {
            call,
            answer: Some(SDP.to_string())
        }]
    );

    ep.hangup(now, call).unwrap();
    let bye = one(&mut ep);
    assert_eq!(bye.first_line(), "BYE sip:bob@198.51.100.9:5072 SIP/2.0");
    assert_eq!(bye.cseq(), (invite.cseq().0 + 1, "BYE".to_string()));
    assert_eq!(bye.headers("Route"), ack.headers("Route"));
    Resp::to(&bye, 200, "OK").send(&mut ep, now);
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            call,
            reason: EndReason::LocalBye
        }]
    );
}

#[test]
fn retransmitted_200_gets_the_ack_again_and_a_second_fork_gets_ack_and_bye() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    let ack = answer(&mut ep, now, &invite);
    events(&mut ep);
    Resp::to(&invite, 200, "OK")
        .tag("callee")
        .header("Contact: <sip:bob@198.51.100.7:5070>")
        .sdp(&mut ep, now, SDP);
    assert_eq!(
        one(&mut ep).text,
        ack.text,
        "the same ACK for the retransmitted 200"
    );
    assert!(events(&mut ep).is_empty(), "answered once");

    Resp::to(&invite, 200, "OK")
        .tag("fork2")
        .header("Contact: <sip:carol@198.51.100.8:5070>")
        .sdp(&mut ep, now, SDP);
    let sent = drain(&mut ep);
    let methods: Vec<&str> = sent.iter().map(|s| s.method()).collect();
    assert_eq!(methods, ["ACK", "BYE"]);
    assert!(sent
        .iter()
        .all(|s| s.request_uri() == "sip:carol@198.51.100.8:5070"
            && s.to_tag().as_deref() == Some("fork2")));
    Resp::to(&sent[1], 200, "OK").send(&mut ep, now);
    assert!(
        events(&mut ep).is_empty(),
        "the fork's BYE does not end our call"
    );
    assert_eq!(ep.call_count(), 1);

    // The callee hangs up the dialog that stands.
    let our_tag = invite
        .header("From")
        .unwrap()
        .rsplit("tag=")
        .next()
        .unwrap()
        .to_string();
    let mut bye = Req::new(
        "BYE",
        &invite.header("Call-ID").unwrap(),
        "z9hG4bK-callee-bye",
    )
    .with_to_tag(&our_tag);
    bye.from_tag = "callee".into();
    bye.send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            call,
            reason: EndReason::RemoteBye
        }]
    );
}

#[test]
fn busy_here_is_acked_by_the_transaction_and_fails_the_call() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    Resp::to(&invite, 486, "Busy Here")
        .tag("callee")
        .send(&mut ep, now);
    let ack = one(&mut ep);
    assert_eq!(ack.first_line(), format!("ACK {CALLEE} SIP/2.0"));
    assert_eq!(
        ack.top_branch(),
        invite.top_branch(),
        "17.1.1.3: the INVITE's branch"
    );
    assert_eq!(ack.cseq(), (invite.cseq().0, "ACK".to_string()));
    assert_eq!(ack.to_tag().as_deref(), Some("callee"));
    assert_eq!(
        events(&mut ep),
        [
            Event::CallFailed {
                call,
                status: 486,
                reason: "Busy Here".into()
            },
            Event::CallEnded {
                call,
                reason: EndReason::Failed
            }
        ]
    );
    Resp::to(&invite, 486, "Busy Here")
        .tag("callee")
        .send(&mut ep, now);
    assert_eq!(
        one(&mut ep).text,
        ack.text,
        "a retransmitted 486 gets the ACK again"
    );
    assert!(events(&mut ep).is_empty());
    assert!(run_until(&mut ep, now, Duration::from_secs(33)).is_empty());
    assert_eq!(ep.poll_timeout(), None, "Timer D ended the transaction");
}

#[test]
fn hangup_while_ringing_sends_cancel_and_487_ends_the_call() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    Resp::to(&invite, 180, "Ringing")
        .tag("callee")
        .send(&mut ep, now);
    events(&mut ep);
    ep.hangup(now, call).unwrap();
    let cancel = one(&mut ep);
    assert_eq!(cancel.first_line(), format!("CANCEL {CALLEE} SIP/2.0"));
    assert_eq!(
        cancel.header("Via"),
        invite.header("Via"),
        "9.1: the INVITE's top Via"
    );
    assert_eq!(cancel.cseq(), (invite.cseq().0, "CANCEL".to_string()));
    assert_eq!(cancel.header("To"), invite.header("To"));
    assert_eq!(cancel.header("From"), invite.header("From"));
    ep.hangup(now, call).unwrap();
    assert!(drain(&mut ep).is_empty(), "one CANCEL");
    Resp::to(&cancel, 200, "OK")
        .tag("callee")
        .send(&mut ep, now);
    Resp::to(&invite, 487, "Request Terminated")
        .tag("callee")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "ACK");
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            call,
            reason: EndReason::LocalCancel
        }]
    );
}

#[test]
fn hangup_before_any_provisional_waits_for_one_to_cancel() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    ep.hangup(now, call).unwrap();
    assert!(
        drain(&mut ep).is_empty(),
        "9.1: no CANCEL before a provisional response"
    );
    Resp::to(&invite, 100, "Trying").send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "CANCEL");
    assert!(
        events(&mut ep).is_empty(),
        "no ringing reported for a call being cancelled"
    );
    // The callee never answers the INVITE: 64*T1 after the CANCEL the call is over anyway.
    run_until(&mut ep, now, Duration::from_secs(33));
    assert_eq!(
        events(&mut ep),
        [Event::CallEnded {
            call,
            reason: EndReason::LocalCancel
        }]
    );
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn a_200_that_crosses_our_cancel_gets_ack_and_bye() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    Resp::to(&invite, 180, "Ringing")
        .tag("callee")
        .send(&mut ep, now);
    ep.hangup(now, call).unwrap();
    assert_eq!(one(&mut ep).method(), "CANCEL");
    Resp::to(&invite, 200, "OK")
        .tag("callee")
        .header("Contact: <sip:bob@198.51.100.7:5070>")
        .sdp(&mut ep, now, SDP);
    let sent = drain(&mut ep);
    assert_eq!(
        sent.iter().map(|s| s.method()).collect::<Vec<_>>(),
        ["ACK", "BYE"]
    );
    Resp::to(&sent[1], 200, "OK").send(&mut ep, now);
    let ev = events(&mut ep);
    assert_eq!(
        ev,
        [
            Event::CallRinging { call, status: 180 },
            Event::CallEnded {
                call,
                reason: EndReason::LocalBye
            }
        ]
    );
}

#[test]
fn ring_timeout_cancels_and_fails_with_408() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.ring_timeout = Some(Duration::from_secs(20));
    let (call, invite) = place(&mut ep, now, r);
    Resp::to(&invite, 180, "Ringing")
        .tag("callee")
        .send(&mut ep, now);
    let sent = run_until(&mut ep, now, Duration::from_secs(20));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0, sent[0].1.method()),
        (Duration::from_secs(20), "CANCEL")
    );
    Resp::to(&invite, 487, "Request Terminated")
        .tag("callee")
        .send(&mut ep, now);
    assert_eq!(
        events(&mut ep)[1..],
        [
            Event::CallFailed {
                call,
                status: 408,
                reason: "Request Timeout (no answer within 20 s)".into()
            },
            Event::CallEnded {
                call,
                reason: EndReason::Failed
            }
        ]
    );
}

#[test]
fn requests_that_cannot_be_sent_are_refused_and_send_nothing() {
    let mut ep = endpoint();
    let now = Instant::now();
    for uri in ["tel:+15551234567", "sips:bob@198.51.100.7", "sip:bob@"] {
        let r = CallRequest::new(uri, peer(), OFFER);
        assert!(
            matches!(ep.call(now, r), Err(SipError::InvalidCallRequest(_))),
            "{uri}"
        );
    }
    let mut r = request();
    r.headers = vec![("Via".into(), "SIP/2.0/UDP evil".into())];
    assert!(ep.call(now, r).is_err());
    assert!(drain(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn a_placed_call_cannot_be_answered_or_rejected_like_an_incoming_one() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, _) = place(&mut ep, now, request());
    assert!(matches!(
        ep.answer(now, call, ANSWER),
        Err(SipError::WrongState { .. })
    ));
    assert!(matches!(
        ep.reject(now, call, 486, None),
        Err(SipError::WrongState { .. })
    ));
    assert!(matches!(
        ep.ringing(now, call),
        Err(SipError::WrongState { .. })
    ));
    assert!(drain(&mut ep).is_empty());
}
