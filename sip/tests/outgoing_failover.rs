//! A call we place whose first address never answers goes to the next one (RFC 3263 4.3),
//! with fake time: a new INVITE (new branch, next CSeq, same Call-ID) after `failover_after`;
//! a provisional response keeps the call where it is.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::uac::*;
use common::*;
use voxline_sip::Event;

fn backup() -> SocketAddr {
    "198.51.100.8:5070".parse().unwrap()
}

#[test]
fn a_silent_address_is_left_for_the_next_after_failover_after() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.alternates = vec![backup()];
    r.failover_after = Duration::from_secs(2);
    let (call, invite) = place(&mut ep, now, r);
    assert_eq!(invite.to, peer());
    let sent = run_until(&mut ep, now, Duration::from_secs(2));
    let (at, retry) = sent.last().unwrap();
    assert_eq!((*at, retry.to), (Duration::from_secs(2), backup()));
    assert_eq!(retry.method(), "INVITE");
    assert_ne!(retry.top_branch(), invite.top_branch());
    assert_eq!(retry.cseq().0, invite.cseq().0 + 1);
    assert_eq!(retry.header("Call-ID"), invite.header("Call-ID"));
    assert_eq!(retry.request_uri(), invite.request_uri());
    // The backup answers; the call goes on there.
    let ack = answer(&mut ep, now + *at, retry);
    assert_eq!(
        ack.to,
        "198.51.100.7:5070".parse().unwrap(),
        "the ACK goes to the 200's Contact"
    );
    assert!(events(&mut ep)
        .iter()
        .any(|e| matches!(e, Event::CallAnswered { call: c, .. } if *c == call)));
    // Nothing more goes to the first address.
    assert!(run_until(&mut ep, now, Duration::from_secs(40))
        .iter()
        .all(|(_, s)| s.method() != "INVITE"));
}

#[test]
fn a_provisional_response_keeps_the_call_at_its_address() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.alternates = vec![backup()];
    r.failover_after = Duration::from_secs(2);
    let (_, invite) = place(&mut ep, now, r);
    Resp::to(&invite, 100, "Trying").send(&mut ep, now);
    let sent = run_until(&mut ep, now, Duration::from_secs(10));
    assert!(sent.iter().all(|(_, s)| s.to == peer()), "{sent:?}");
}
