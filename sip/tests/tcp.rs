//! SIP over TCP in the core (RFC 3261 17, 18.2.2): responses go back on the request's
//! transport to its connection, nothing is retransmitted, waits for retransmissions are
//! zero, a dialog set up over TCP keeps using it (Via `SIP/2.0/TCP`, Contact
//! `;transport=tcp`), and a stream cut by the framer feeds the endpoint message by message.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{config, SDP};
use voxline_sip::{
    CallRequest, Endpoint, Event, StreamFramer, StreamItem, Transmit, Transport,
};

/// The connection's address: not the Via's sent-by port (5070), as for a client whose
/// connection comes from an ephemeral port.
fn connection() -> SocketAddr {
    "198.51.100.7:40123".parse().unwrap()
}

fn invite(call_id: &str) -> String {
    format!(
        "INVITE sip:agent@192.0.2.10 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=caller-tag\r\n\
         To: <sip:agent@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@198.51.100.7:5070;transport=tcp>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// The ACK of a 2xx (its own branch) or of an error (`branch`: the INVITE's, 17.1.1.3).
fn ack(call_id: &str, to_tag: &str, branch: &str) -> String {
    format!(
        "ACK sip:agent@192.0.2.10 SIP/2.0\r\n\
         Via: SIP/2.0/TCP 198.51.100.7:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:caller@example.com>;tag=caller-tag\r\n\
         To: <sip:agent@example.com>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn sent(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.payload).into_owned()
}

fn header(t: &Transmit, name: &str) -> String {
    text(t)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
        .unwrap_or_default()
}

fn to_tag(t: &Transmit) -> String {
    header(t, "To").split(";tag=").nth(1).unwrap_or_default().to_string()
}

/// Feeds the endpoint as a server does: the stream through a framer, then each message.
fn feed(ep: &mut Endpoint, now: Instant, bytes: &[u8]) {
    let mut framer = StreamFramer::new(ep.config().max_message);
    framer.push(bytes);
    while let Some(item) = framer.next().unwrap() {
        if let StreamItem::Message(message) = item {
            ep.handle_message(now, connection(), Transport::Tcp, &message);
        }
    }
}

/// Runs the endpoint's timers from `start` for `span`, returning what it sent.
fn run(ep: &mut Endpoint, start: Instant, span: Duration) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(at) = ep.poll_timeout().filter(|&at| at <= start + span) {
        ep.handle_timeout(at);
        out.extend(sent(ep));
    }
    out
}

fn incoming(ep: &mut Endpoint) -> voxline_sip::CallHandle {
    std::iter::from_fn(|| ep.poll_event())
        .find_map(|e| match e {
            Event::IncomingCall { call, .. } => Some(call),
            _ => None,
        })
        .expect("an incoming call")
}

#[test]
fn a_call_over_tcp_is_answered_on_its_connection_and_ends_with_a_tcp_bye() {
    let mut ep = Endpoint::with_seed(config(), 7);
    let start = Instant::now();
    feed(&mut ep, start, invite("t1").as_bytes());
    let trying = sent(&mut ep);
    assert_eq!(trying.len(), 1);
    assert_eq!((trying[0].transport, trying[0].destination), (Transport::Tcp, connection()));
    let call = incoming(&mut ep);
    ep.answer(start, call, common::ANSWER).unwrap();
    let ok = sent(&mut ep).pop().unwrap();
    assert_eq!((ok.transport, ok.destination), (Transport::Tcp, connection()));
    assert_eq!(header(&ok, "Contact"), "<sip:203.0.113.5:5060;transport=tcp>");
    feed(&mut ep, start, ack("t1", &to_tag(&ok), "z9hG4bK-ack-t1").as_bytes());
    assert!(matches!(ep.poll_event(), Some(Event::CallConfirmed { .. })));

    ep.hangup(start, call).unwrap();
    let bye = sent(&mut ep);
    assert_eq!(bye.len(), 1);
    assert!(text(&bye[0]).starts_with("BYE sip:caller@198.51.100.7:5070;transport=tcp SIP/2.0"));
    assert!(header(&bye[0], "Via").starts_with("SIP/2.0/TCP 203.0.113.5:5060;branch="));
    assert_eq!(bye[0].transport, Transport::Tcp);
    // No Timer E over TCP: nothing more for 31 s, then Timer F ends the wait.
    assert_eq!(run(&mut ep, start, Duration::from_secs(31)), []);
    assert_eq!(ep.poll_timeout(), Some(start + Duration::from_secs(32)));
}

#[test]
fn a_rejection_over_tcp_is_sent_once_and_its_transaction_ends_on_the_ack() {
    let mut ep = Endpoint::with_seed(config(), 7);
    let start = Instant::now();
    feed(&mut ep, start, invite("t2").as_bytes());
    sent(&mut ep);
    let call = incoming(&mut ep);
    ep.reject(start, call, 486, None).unwrap();
    let busy = sent(&mut ep).pop().unwrap();
    assert!(text(&busy).starts_with("SIP/2.0 486"));
    // No Timer G: nothing is sent again while waiting for the ACK.
    assert_eq!(run(&mut ep, start, Duration::from_secs(5)), []);
    feed(&mut ep, start + Duration::from_secs(5), ack("t2", &to_tag(&busy), "z9hG4bK-t2").as_bytes());
    // Timer I is zero: nothing is left to wait for.
    run(&mut ep, start + Duration::from_secs(5), Duration::ZERO);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn two_options_and_a_keep_alive_in_one_read_are_answered_on_the_connection() {
    let mut ep = Endpoint::with_seed(config(), 7);
    let start = Instant::now();
    let options = "OPTIONS sip:agent@192.0.2.10 SIP/2.0\r\n\
        Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bK-o1\r\nMax-Forwards: 70\r\n\
        From: <sip:caller@example.com>;tag=a\r\nTo: <sip:agent@example.com>\r\n\
        Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    // Two requests and a keep-alive in one read.
    let stream = format!("{options}\r\n\r\n{}", options.replace("o1", "o2"));
    feed(&mut ep, start, stream.as_bytes());
    let answers = sent(&mut ep);
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|t| t.transport == Transport::Tcp && t.destination == connection()));
    // Answered statelessly: nothing waits for retransmissions.
    assert_eq!(ep.poll_timeout(), None);
}

/// Feeds a stream that breaks the framing as a server does: the framer's rejected header
/// section goes to `reject_unframed`; returns what the endpoint sent.
fn feed_unframed(ep: &mut Endpoint, bytes: &[u8]) -> Vec<Transmit> {
    let mut framer = StreamFramer::new(ep.config().max_message);
    framer.push(bytes);
    let error = loop {
        match framer.next() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the framer waits for more"),
            Err(e) => break e,
        }
    };
    let head = framer.take_rejected().expect("the rejected header section");
    assert_eq!(framer.take_rejected(), None, "handed over once");
    ep.reject_unframed(connection(), Transport::Tcp, &head, error);
    sent(ep)
}

#[test]
fn a_request_without_content_length_on_a_stream_gets_400_on_its_connection() {
    let mut ep = Endpoint::with_seed(config(), 7);
    let options = "OPTIONS sip:agent@192.0.2.10 SIP/2.0\r\n\
        Via: SIP/2.0/TCP 198.51.100.7:5070;branch=z9hG4bK-nl\r\nMax-Forwards: 70\r\n\
        From: <sip:caller@example.com>;tag=a\r\nTo: <sip:agent@example.com>\r\n\
        Call-ID: nl\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let answers = feed_unframed(&mut ep, options.as_bytes());
    assert_eq!(answers.len(), 1, "one answer");
    let answer = &answers[0];
    assert_eq!((answer.transport, answer.destination), (Transport::Tcp, connection()));
    assert!(text(answer).starts_with("SIP/2.0 400 Bad Request - message without Content-Length on a stream\r\n"), "{}", text(answer));
    assert_eq!(header(answer, "Call-ID"), "nl");
    assert_eq!(header(answer, "CSeq"), "1 OPTIONS");
    assert!(header(answer, "Via").contains("branch=z9hG4bK-nl"));
    assert!(!to_tag(answer).is_empty(), "a stateless To tag");

    // Two Content-Length values: 400 too.
    let twice = options.replace("CSeq: 1 OPTIONS\r\n", "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\nl: 5\r\n");
    let answers = feed_unframed(&mut ep, twice.as_bytes());
    assert!(answers.len() == 1 && text(&answers[0]).starts_with("SIP/2.0 400 Bad Request - Content-Length"), "{answers:?}");

    // Neither an ACK nor a response is answered.
    let ack = options.replace("OPTIONS sip", "ACK sip").replace("1 OPTIONS", "1 ACK");
    assert!(feed_unframed(&mut ep, ack.as_bytes()).is_empty());
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bK-x\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert!(feed_unframed(&mut ep, response.as_bytes()).is_empty());
}

#[test]
fn a_call_placed_over_tcp_sends_no_retransmission_and_times_out_by_timer_b() {
    let mut ep = Endpoint::with_seed(config(), 7);
    let start = Instant::now();
    let mut request = CallRequest::new(
        "sip:+15551234567@198.51.100.7;transport=tcp",
        "198.51.100.7:5060".parse().unwrap(),
        SDP,
    );
    request.transport = Transport::Tcp;
    ep.call(start, request).unwrap();
    let invite = sent(&mut ep).pop().unwrap();
    assert_eq!(invite.transport, Transport::Tcp);
    assert!(header(&invite, "Via").starts_with("SIP/2.0/TCP "));
    assert_eq!(header(&invite, "Contact"), "<sip:203.0.113.5:5060;transport=tcp>");
    // No Timer A; Timer B (64*T1) still fails the call, with a CANCEL-free end.
    let later = run(&mut ep, start, Duration::from_secs(31));
    assert_eq!(later, []);
    run(&mut ep, start, Duration::from_secs(33));
    let failed = std::iter::from_fn(|| ep.poll_event())
        .any(|e| matches!(e, Event::CallFailed { status: 408, .. }));
    assert!(failed, "Timer B fails the call with 408");
}
