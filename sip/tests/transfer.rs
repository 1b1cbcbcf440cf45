//! Blind transfer (RFC 5589 6.1): our REFER (Refer-To, Referred-By, in the dialog), the
//! transferee's NOTIFYs (sipfrag) answered 200 and reported, BYE on success; refusals and
//! timeouts leave the call up. And a REFER from the remote party: 403. Time is fake.

mod common;

use std::time::{Duration, Instant};

use common::uac::Resp;
use common::*;
use voxline_sip::{CallHandle, EndReason, Endpoint, Event, SipError, TransferUpdate};

const TARGET: &str = "sip:bob@192.0.2.99:5080";

/// An established call and our REFER for it.
fn referred(ep: &mut Endpoint, now: Instant, call_id: &str) -> (CallHandle, String, Sent) {
    let (call, tag) = established_call(ep, now, call_id);
    ep.transfer(now, call, TARGET).unwrap();
    let refer = one(ep);
    (call, tag, refer)
}

fn notify(call_id: &str, tag: &str, cseq: u32, state: &str, frag: &str) -> Req {
    Req::new("NOTIFY", call_id, &format!("z9hG4bK-n{cseq}-{call_id}"))
        .with_to_tag(tag)
        .cseq(cseq)
        .header("Event: refer")
        .header(&format!("Subscription-State: {state}"))
        .header("Contact: <sip:caller@198.51.100.7:5070>")
        .body("message/sipfrag", frag)
}

fn update(events: &[Event]) -> Vec<TransferUpdate> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Transfer { update, .. } => Some(update.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_refer_names_the_target_and_who_refers() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag, refer) = referred(&mut ep, now, "t1");
    assert_eq!(refer.method(), "REFER");
    assert_eq!(refer.to, peer());
    assert_eq!(refer.request_uri(), "sip:caller@198.51.100.7:5070");
    assert_eq!(refer.header("Refer-To").unwrap(), format!("<{TARGET}>"));
    assert_eq!(
        refer.header("Referred-By").unwrap(),
        "<sip:agent@example.com>"
    );
    assert_eq!(refer.header("Contact").unwrap(), "<sip:203.0.113.5:5060>");
    assert!(refer
        .header("From")
        .unwrap()
        .ends_with(&format!(";tag={tag}")));
    assert_eq!(refer.to_tag().as_deref(), Some("caller-tag"));
    assert_eq!(refer.cseq().1, "REFER");
    assert_eq!(refer.header("Content-Length").unwrap(), "0");
}

#[test]
fn notify_trying_then_ok_reports_progress_and_done_then_bye() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag, refer) = referred(&mut ep, now, "t2");
    Resp::to(&refer, 202, "Accepted").send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        vec![Event::Transfer {
            call,
            update: TransferUpdate::Accepted {
                status: 202,
                reason: "Accepted".into()
            }
        }]
    );
    notify("t2", &tag, 2, "active;expires=60", "SIP/2.0 100 Trying\r\n").send(&mut ep, now);
    let ok = one(&mut ep);
    assert_eq!((ok.status(), ok.cseq().1.as_str()), (200, "NOTIFY"));
    assert_eq!(
        update(&events(&mut ep)),
        vec![TransferUpdate::Progress {
            status: 100,
            reason: "Trying".into()
        }]
    );
    notify(
        "t2",
        &tag,
        3,
        "terminated;reason=noresource",
        "SIP/2.0 200 OK\r\n",
    )
    .send(&mut ep, now);
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].status(), 200);
    assert_eq!(sent[1].method(), "BYE");
    assert_eq!(
        update(&events(&mut ep)),
        vec![TransferUpdate::Succeeded {
            status: 200,
            reason: "OK".into()
        }]
    );
    Resp::to(&sent[1], 200, "OK").send(&mut ep, now);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::Transferred
        }]
    );
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn a_failing_notify_reports_failure_and_the_call_goes_on() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag, refer) = referred(&mut ep, now, "t3");
    Resp::to(&refer, 202, "Accepted").send(&mut ep, now);
    notify(
        "t3",
        &tag,
        2,
        "terminated;reason=noresource",
        "SIP/2.0 503 Service Unavailable\r\n",
    )
    .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200, "no BYE");
    let updates = update(&events(&mut ep));
    assert_eq!(
        updates.last(),
        Some(&TransferUpdate::Failed {
            status: 503,
            reason: "Service Unavailable".into()
        })
    );
    assert_eq!(ep.call_count(), 1);
    // Another transfer may follow; hanging up is an ordinary BYE.
    ep.transfer(now, call, "sip:carol@192.0.2.98").unwrap();
    assert_eq!(one(&mut ep).method(), "REFER");
    ep.hangup(now, call).unwrap();
    let bye = one(&mut ep);
    Resp::to(&bye, 200, "OK").send(&mut ep, now);
    assert_eq!(
        events(&mut ep),
        vec![Event::CallEnded {
            call,
            reason: EndReason::LocalBye
        }]
    );
}

#[test]
fn a_refused_refer_reports_failure_and_the_call_goes_on() {
    for (status, reason) in [
        (403, "Forbidden"),
        (405, "Method Not Allowed"),
        (501, "Not Implemented"),
    ] {
        let mut ep = endpoint();
        let now = Instant::now();
        let (call, _tag, refer) = referred(&mut ep, now, "t4");
        Resp::to(&refer, status, reason).send(&mut ep, now);
        assert!(drain(&mut ep).is_empty());
        assert_eq!(
            events(&mut ep),
            vec![Event::Transfer {
                call,
                update: TransferUpdate::Failed {
                    status,
                    reason: reason.into()
                }
            }]
        );
        assert_eq!(ep.call_count(), 1);
    }
}

#[test]
fn an_unanswered_refer_is_retransmitted_then_fails_after_64_t1() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _tag, _refer) = referred(&mut ep, start, "t5");
    let sent = run_until(&mut ep, start, Duration::from_secs(32));
    let times: Vec<u128> = sent.iter().map(|(t, _)| t.as_millis()).collect();
    assert_eq!(times[..5], [500, 1500, 3500, 7500, 11500]);
    assert!(sent.iter().all(|(_, s)| s.method() == "REFER"));
    match update(&events(&mut ep)).as_slice() {
        [TransferUpdate::Failed { status: 408, .. }] => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.call_count(), 1);
    let _ = call;
}

#[test]
fn no_notify_after_the_202_fails_after_64_t1() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_call, _tag, refer) = referred(&mut ep, start, "t6");
    Resp::to(&refer, 202, "Accepted").send(&mut ep, start);
    events(&mut ep);
    assert_eq!(
        ep.poll_timeout(),
        Some(start + Duration::from_secs(5)),
        "Timer K first"
    );
    run_until(&mut ep, start, Duration::from_secs(31));
    assert!(update(&events(&mut ep)).is_empty());
    run_until(&mut ep, start, Duration::from_secs(32));
    match update(&events(&mut ep)).as_slice() {
        [TransferUpdate::Failed {
            status: 408,
            reason,
        }] => assert!(reason.contains("NOTIFY"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn only_an_established_call_without_a_transfer_under_way_transfers() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (ringing, _) = answered_call(&mut ep, now, "t7a");
    assert!(matches!(
        ep.transfer(now, ringing, TARGET),
        Err(SipError::WrongState { .. })
    ));
    let (call, _tag, _refer) = referred(&mut ep, now, "t7");
    assert!(matches!(
        ep.transfer(now, call, TARGET),
        Err(SipError::WrongState { .. })
    ));
    for bad in ["bob", "http://example.com/", "sip:bob@x>\r\nVia: evil"] {
        assert!(
            matches!(ep.transfer(now, call, bad), Err(SipError::InvalidTarget(_))),
            "{bad:?}"
        );
    }
    assert!(drain(&mut ep).is_empty());
}

#[test]
fn a_refer_from_the_remote_party_gets_403() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag) = established_call(&mut ep, now, "t8");
    Req::new("REFER", "t8", "z9hG4bK-t8r")
        .with_to_tag(&tag)
        .cseq(2)
        .header("Refer-To: <sip:mallory@192.0.2.66>")
        .header("Contact: <sip:caller@198.51.100.7:5070>")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 403);
    Req::new("REFER", "t8-out", "z9hG4bK-t8o")
        .header("Refer-To: <sip:mallory@192.0.2.66>")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 403);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn notifies_without_our_refer_are_refused() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag) = established_call(&mut ep, now, "t9");
    notify("t9", &tag, 2, "active", "SIP/2.0 100 Trying\r\n").send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 481);
    Req::new("NOTIFY", "t9", "z9hG4bK-t9p")
        .with_to_tag(&tag)
        .cseq(3)
        .header("Event: presence")
        .header("Subscription-State: active")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 489);
    assert!(events(&mut ep).is_empty());
}
