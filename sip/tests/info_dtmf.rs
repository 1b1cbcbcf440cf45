//! DTMF sent as SIP INFO (`application/dtmf-relay`): one INFO transaction at a time, in the
//! dialog, `w` pausing; a refused or unanswered INFO drops the rest. Time is fake.

mod common;

use std::time::{Duration, Instant};

use common::uac::Resp;
use common::*;
use voxline_sip::{Event, SipError};

const D: Duration = Duration::from_millis(160);

#[test]
fn digits_go_one_info_at_a_time() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, tag) = established_call(&mut ep, now, "i1");
    ep.send_dtmf_info(now, call, "5#", D).unwrap();
    let first = one(&mut ep);
    assert_eq!(first.method(), "INFO");
    assert_eq!(first.request_uri(), "sip:caller@198.51.100.7:5070");
    assert!(first
        .header("From")
        .unwrap()
        .ends_with(&format!(";tag={tag}")));
    assert_eq!(
        first.header("Content-Type").unwrap(),
        "application/dtmf-relay"
    );
    assert_eq!(first.body(), "Signal=5\r\nDuration=160\r\n");
    assert!(
        drain(&mut ep).is_empty(),
        "the second digit waits for the first's response"
    );
    Resp::to(&first, 200, "OK").send(&mut ep, now);
    let second = one(&mut ep);
    assert_eq!(second.body(), "Signal=#\r\nDuration=160\r\n");
    assert_eq!(second.cseq().0, first.cseq().0 + 1);
    Resp::to(&second, 200, "OK").send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn w_waits_half_a_second_between_digits() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _tag) = established_call(&mut ep, start, "i2");
    ep.send_dtmf_info(start, call, "1w2", D).unwrap();
    let first = one(&mut ep);
    let answered = start + Duration::from_millis(40);
    Resp::to(&first, 200, "OK").send(&mut ep, answered);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        ep.poll_timeout(),
        Some(answered + Duration::from_millis(500))
    );
    ep.handle_timeout(answered + Duration::from_millis(500));
    assert_eq!(one(&mut ep).body(), "Signal=2\r\nDuration=160\r\n");
}

#[test]
fn a_refused_info_drops_the_rest_and_says_so() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, _tag) = established_call(&mut ep, now, "i3");
    ep.send_dtmf_info(now, call, "123", D).unwrap();
    let first = one(&mut ep);
    Resp::to(&first, 415, "Unsupported Media Type").send(&mut ep, now);
    assert!(drain(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        vec![Event::DtmfInfoFailed {
            call,
            status: 415,
            reason: "Unsupported Media Type".into(),
            dropped: "23".into()
        }]
    );
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn an_unanswered_info_is_retransmitted_then_fails() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, _tag) = established_call(&mut ep, start, "i4");
    ep.send_dtmf_info(start, call, "9", D).unwrap();
    one(&mut ep);
    let sent = run_until(&mut ep, start, Duration::from_secs(32));
    assert_eq!(sent.first().map(|(t, _)| t.as_millis()), Some(500));
    assert!(sent.iter().all(|(_, s)| s.method() == "INFO"));
    match events(&mut ep).as_slice() {
        [Event::DtmfInfoFailed {
            status: 408,
            dropped,
            ..
        }] => assert_eq!(dropped, ""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_digits_on_an_established_call() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (ringing, _) = answered_call(&mut ep, now, "i5a");
    assert!(matches!(
        ep.send_dtmf_info(now, ringing, "1", D),
        Err(SipError::WrongState { .. })
    ));
    let (call, _tag) = established_call(&mut ep, now, "i5");
    assert_eq!(
        ep.send_dtmf_info(now, call, "12x", D),
        Err(SipError::InvalidDigit('x'))
    );
    assert!(drain(&mut ep).is_empty());
}
