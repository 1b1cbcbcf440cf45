//! Answers to requests outside a call's normal flow: OPTIONS, methods we do not implement,
//! unknown dialogs, malformed requests, limits; and the Via/rport rules for where responses go.

mod common;

use std::time::Instant;

use common::*;
use voxline_sip::{Endpoint, Event};

fn send(ep: &mut Endpoint, text: &str) {
    ep.handle_datagram(
        Instant::now(),
        peer(),
        text.replace('\n', "\r\n").as_bytes(),
    );
}

#[test]
fn options_outside_a_dialog_gets_our_capabilities() {
    let mut ep = endpoint();
    Req::new("OPTIONS", "o1", "z9hG4bK-o1").send(&mut ep, Instant::now());
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 200 OK");
    assert_eq!(
        r.header("Allow").unwrap(),
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE"
    );
    assert_eq!(r.header("Accept").unwrap(), "application/sdp");
    assert_eq!(r.headers("Supported"), vec!["timer".to_string()]);
    assert!(r.to_tag().is_some());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn options_while_unavailable_gets_503_with_retry_after_until_available_again() {
    // A dispatcher's health probe must see a draining server as down, the answer an
    // INVITE would get (RFC 3261 11.2); calls already up still get their in-dialog answers.
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag) = established_call(&mut ep, now, "o5");
    ep.set_unavailable(Some(5));
    Req::new("OPTIONS", "o4", "z9hG4bK-o4").send(&mut ep, now);
    let r = one(&mut ep);
    assert_eq!(r.status(), 503);
    assert_eq!(r.header("Retry-After").unwrap(), "5");
    Req::new("OPTIONS", "o5", "z9hG4bK-o5o").with_to_tag(&tag).cseq(2).send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200, "in-dialog OPTIONS of a live call");
    ep.set_unavailable(None);
    Req::new("OPTIONS", "o6", "z9hG4bK-o6").send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 200);
}

#[test]
fn retransmitted_stateless_answers_are_identical() {
    let mut ep = endpoint();
    let options = Req::new("OPTIONS", "o2", "z9hG4bK-o2");
    options.send(&mut ep, Instant::now());
    let first = one(&mut ep);
    options.send(&mut ep, Instant::now());
    assert_eq!(
        one(&mut ep).text,
        first.text,
        "same To tag for a retransmission"
    );
}

#[test]
fn options_inside_a_dialog() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_call, tag) = established_call(&mut ep, now, "o3");
    let options = Req::new("OPTIONS", "o3", "z9hG4bK-o3o")
        .with_to_tag(&tag)
        .cseq(2);
    options.send(&mut ep, now);
    let r = one(&mut ep);
    assert_eq!(r.status(), 200);
    assert_eq!(r.to_tag().as_deref(), Some(tag.as_str()));
    options.send(&mut ep, now);
    assert_eq!(
        one(&mut ep).text,
        r.text,
        "a retransmission is not taken for an old CSeq"
    );
    Req::new("OPTIONS", "o3", "z9hG4bK-o3p")
        .with_to_tag("not-ours")
        .cseq(3)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).status(), 481);
}

#[test]
fn methods_we_do_not_implement_get_405_with_allow() {
    let mut ep = endpoint();
    for method in [
        "REGISTER",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
        "PRACK",
        "FOO",
        "invite",
    ] {
        Req::new(method, "m405", &format!("z9hG4bK-{method}")).send(&mut ep, Instant::now());
        let r = one(&mut ep);
        assert_eq!(r.first_line(), "SIP/2.0 405 Method Not Allowed", "{method}");
        assert_eq!(
            r.header("Allow").unwrap(),
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE"
        );
        assert_eq!(r.cseq().1, method);
    }
    assert!(events(&mut ep).is_empty());
}

#[test]
fn requests_for_unknown_dialogs_get_481() {
    let mut ep = endpoint();
    for method in ["BYE", "INFO", "INVITE"] {
        Req::new(method, "gone", &format!("z9hG4bK-gone-{method}"))
            .with_to_tag("t")
            .send(&mut ep, Instant::now());
        assert_eq!(
            one(&mut ep).first_line(),
            "SIP/2.0 481 Call/Transaction Does Not Exist",
            "{method}"
        );
    }
    // Without a To tag BYE and INFO are not in any dialog either.
    Req::new("BYE", "gone", "z9hG4bK-gone-notag").send(&mut ep, Instant::now());
    assert_eq!(one(&mut ep).status(), 481);
}

#[test]
fn ack_is_absorbed_never_answered() {
    let mut ep = endpoint();
    Req::new("ACK", "stray", "z9hG4bK-stray")
        .with_to_tag("x")
        .send(&mut ep, Instant::now());
    Req::new("ACK", "stray", "z9hG4bK-stray2")
        .cseq_method("INVITE")
        .send(&mut ep, Instant::now());
    assert!(drain(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut ep = endpoint();
    for method in ["INVITE", "OPTIONS"] {
        let text = Req::new(method, "mf", &format!("z9hG4bK-mf-{method}"))
            .text()
            .replace("Max-Forwards: 70", "Max-Forwards: 0");
        ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
        assert_eq!(
            one(&mut ep).first_line(),
            "SIP/2.0 483 Too Many Hops",
            "{method}"
        );
    }
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn unsupported_require_gets_420_listing_them() {
    let mut ep = endpoint();
    Req::invite("req", "z9hG4bK-req")
        .header("Require: 100rel, timer, precondition")
        .header("Proxy-Require: ignored-by-uas")
        .send(&mut ep, Instant::now());
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 420 Bad Extension");
    // Session timers are supported (RFC 4028): only the others are listed.
    assert_eq!(r.header("Unsupported").unwrap(), "100rel, precondition");
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn invite_with_a_body_that_is_not_sdp_gets_415_with_accept() {
    let mut ep = endpoint();
    Req::new("INVITE", "ct", "z9hG4bK-ct")
        .body("application/unknownformat", "<audio/>")
        .send(&mut ep, Instant::now());
    let r = one(&mut ep);
    assert_eq!(r.first_line(), "SIP/2.0 415 Unsupported Media Type");
    assert_eq!(r.header("Accept").unwrap(), "application/sdp");
}

#[test]
fn invite_that_cannot_accept_sdp_gets_406() {
    let mut ep = endpoint();
    Req::invite("acc", "z9hG4bK-acc")
        .header("Accept: text/plain")
        .send(&mut ep, Instant::now());
    assert_eq!(one(&mut ep).status(), 406);
}

#[test]
fn non_sip_request_uri_gets_416() {
    let mut ep = endpoint();
    let mut req = Req::new("OPTIONS", "tel", "z9hG4bK-tel");
    req.uri = "tel:+15551234567".to_string();
    req.send(&mut ep, Instant::now());
    assert_eq!(
        one(&mut ep).first_line(),
        "SIP/2.0 416 Unsupported URI Scheme"
    );
}

#[test]
fn malformed_requests_get_400_saying_what_is_wrong() {
    let cases = [
        (
            Req::new("OPTIONS", "b1", "z9hG4bK-b1")
                .text()
                .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"),
            "Bad Request - CSeq number is not a 32-bit number",
        ),
        (
            Req::new("OPTIONS", "b2", "z9hG4bK-b2")
                .text()
                .replace("Call-ID: b2\r\n", ""),
            "Bad Request - missing Call-ID header",
        ),
        (
            Req::new("OPTIONS", "b3", "z9hG4bK-b3")
                .text()
                .replace("Content-Length: 0", "Content-Length: 50"),
            "Bad Request - Content-Length is larger than the datagram",
        ),
        (
            Req::new("OPTIONS", "b4", "z9hG4bK-b4")
                .text()
                .replace("From: \"Caller\"", "From: \"Caller"),
            "Bad Request - malformed From header",
        ),
        (
            Req::new("OPTIONS", "b5", "z9hG4bK-b5")
                .text()
                .replace("Max-Forwards: 70", "Max-Forwards: many"),
            "Bad Request - Max-Forwards is not a number",
        ),
        (
            Req::new("OPTIONS", "b6", "z9hG4bK-b6")
                .text()
                .replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE"),
            "Bad Request - CSeq method does not match the request method",
        ),
        (
            Req::new("OPTIONS", "b7", "z9hG4bK-b7")
                .text()
                .replace("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
            "Bad Request - malformed header line",
        ),
    ];
    let mut ep = endpoint();
    for (text, reason) in cases {
        ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
        let sent: Vec<Sent> = std::iter::from_fn(|| ep.poll_transmit())
            .map(|t| Sent {
                to: t.destination,
                text: String::from_utf8(t.payload).unwrap(),
            })
            .collect();
        assert_eq!(sent.len(), 1, "{reason}");
        assert_eq!(sent[0].status(), 400);
        assert_eq!(sent[0].reason(), reason);
        assert!(sent[0].header("Via").is_some() && sent[0].header("CSeq").is_some());
        rsip::SipMessage::try_from(sent[0].text.as_str()).unwrap();
    }
    assert_eq!(ep.stats().bad_requests, 7);
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn garbage_oversized_and_unexpected_responses_are_dropped_and_counted() {
    let mut ep = endpoint();
    let now = Instant::now();
    ep.handle_datagram(now, peer(), b"\x00\x01\x02 not sip at all");
    ep.handle_datagram(now, peer(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ep.handle_datagram(
        now,
        peer(),
        b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:x@y>\r\n\r\n",
    ); // no Via
    ep.handle_datagram(now, peer(), &vec![b'A'; 70_000]);
    ep.handle_datagram(now, peer(), b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKnotours\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    ep.handle_datagram(now, peer(), b"\r\n\r\n"); // keep-alive: ignored, not counted
    assert!(drain(&mut ep).is_empty());
    let stats = ep.stats();
    assert_eq!(stats.datagrams, 6);
    assert_eq!(stats.malformed, 3);
    assert_eq!(stats.oversized, 1);
    assert_eq!(stats.unexpected_responses, 1);
    assert_eq!(stats.dropped, 5);
}

#[test]
fn max_message_is_configurable() {
    let mut config = config();
    config.max_message = 300;
    let mut ep = Endpoint::new(config);
    Req::invite("big", "z9hG4bK-big").send(&mut ep, Instant::now());
    assert!(ep.poll_transmit().is_none());
    assert_eq!(ep.stats().oversized, 1);
}

#[test]
fn responses_follow_rport_and_stamp_received() {
    let mut ep = endpoint();
    // The Via says 10.0.0.9:5060 with rport; the datagram came from 198.51.100.7:5070.
    let text = Req::new("OPTIONS", "nat1", "z9hG4bK-nat1").text().replace(
        "198.51.100.7:5070;branch=z9hG4bK-nat1;rport",
        "10.0.0.9:5060;branch=z9hG4bK-nat1;rport",
    );
    ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
    let r = one(&mut ep);
    assert_eq!(r.to, peer());
    assert_eq!(
        r.header("Via").unwrap(),
        "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-nat1;rport=5070;received=198.51.100.7"
    );
}

#[test]
fn without_rport_responses_go_to_the_source_ip_and_via_port() {
    let mut ep = endpoint();
    let text = Req::new("OPTIONS", "nat2", "z9hG4bK-nat2").text().replace(
        "198.51.100.7:5070;branch=z9hG4bK-nat2;rport",
        "pc.example.com:5080;branch=z9hG4bK-nat2",
    );
    ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
    let r = one(&mut ep);
    assert_eq!(r.to, "198.51.100.7:5080".parse().unwrap());
    assert_eq!(
        r.header("Via").unwrap(),
        "SIP/2.0/UDP pc.example.com:5080;branch=z9hG4bK-nat2;received=198.51.100.7"
    );

    // Same address in the Via: nothing added.
    let text = Req::new("OPTIONS", "nat3", "z9hG4bK-nat3")
        .text()
        .replace(";branch=z9hG4bK-nat3;rport", ";branch=z9hG4bK-nat3");
    ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
    let r = one(&mut ep);
    assert_eq!(r.to, peer());
    assert_eq!(
        r.header("Via").unwrap(),
        "SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-nat3"
    );
}

#[test]
fn every_via_is_copied_in_order() {
    let mut ep = endpoint();
    let text = Req::new("OPTIONS", "vias", "z9hG4bK-vias").text().replace(
        "Max-Forwards: 70\r\n",
        "Via: SIP/2.0/UDP proxy1.example.com;branch=z9hG4bKp1, SIP/2.0/TCP proxy2.example.com:5061;branch=z9hG4bKp2\r\nMax-Forwards: 70\r\n",
    );
    ep.handle_datagram(Instant::now(), peer(), text.as_bytes());
    let r = one(&mut ep);
    assert_eq!(
        r.headers("Via"),
        vec![
            "SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-vias;rport=5070;received=198.51.100.7",
            "SIP/2.0/UDP proxy1.example.com;branch=z9hG4bKp1",
            "SIP/2.0/TCP proxy2.example.com:5061;branch=z9hG4bKp2",
        ]
    );
}

#[test]
fn rfc2543_invite_without_branch_or_tags_is_matched_by_call_id_and_cseq() {
    let mut ep = endpoint();
    let now = Instant::now();
    let invite = "INVITE sip:agent@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5070\nFrom: <sip:old@example.com>\nTo: <sip:agent@example.com>\nCall-ID: old-1\nCSeq: 3 INVITE\nContent-Length: 0\n\n";
    send(&mut ep, invite);
    assert_eq!(one(&mut ep).status(), 100);
    let [Event::IncomingCall { call, .. }] = events(&mut ep)[..] else {
        panic!()
    };
    send(&mut ep, invite);
    assert_eq!(
        one(&mut ep).status(),
        100,
        "retransmission recognised without a branch"
    );
    assert!(events(&mut ep).is_empty());
    ep.answer(now, call, ANSWER).unwrap();
    let tag = one(&mut ep).to_tag().unwrap();
    send(&mut ep, &format!("ACK sip:agent@192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5070\nFrom: <sip:old@example.com>\nTo: <sip:agent@example.com>;tag={tag}\nCall-ID: old-1\nCSeq: 3 ACK\nContent-Length: 0\n\n"));
    assert!(matches!(events(&mut ep)[..], [Event::CallConfirmed { .. }]));
    ep.hangup(now, call).unwrap();
    let bye = one(&mut ep);
    assert_eq!(
        bye.request_uri(),
        "sip:old@example.com",
        "no Contact: the From URI is the target"
    );
    assert_eq!(
        bye.to,
        peer(),
        "host name target: the BYE follows the source address"
    );
}

#[test]
fn a_request_uri_that_is_not_utf8_gets_400_not_silence() {
    let mut ep = endpoint();
    let text = Req::invite("u8", "z9hG4bK-u8").text();
    let mut data = text.into_bytes();
    // Raw octets in the user part: `INVITE sip:ag\xff\xfeent@...`.
    let at = data.windows(6).position(|w| w == b"sip:ag").expect("a Request-URI") + 6;
    data.splice(at..at, [0xFF, 0xFE]);
    ep.handle_datagram(Instant::now(), peer(), &data);
    let sent = drain(&mut ep);
    assert_eq!(sent.len(), 1, "one answer");
    assert_eq!(sent[0].status(), 400);
    assert_eq!(sent[0].reason(), "Bad Request - start line is not UTF-8");
    assert_eq!(ep.call_count(), 0);
}
