//! SIP over TCP (RFC 3261 18), end to end with sipp over one TCP connection (`-t t1`):
//! voxline listens on TCP on its SIP address and port, answers on the connection a request
//! came on, and sends its own BYE on it too; a connection that breaks the framing is closed
//! without disturbing anything else (a request without Content-Length first gets its 400).
//!
//! Needs sipp (`scripts/setup.sh --test`).

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::sip::*;

/// Reads until the server closes the connection (`true`) or 5 s pass (`false`).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true, // reset
        }
    }
    false
}

#[test]
fn ten_calls_over_one_tcp_connection_hear_audio_and_bye_works_from_both_sides() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Hello over TCP."]);
    let (capture, _) = RtpCapture::bind();

    // Ten calls, five at a time, on sipp's single TCP connection, hung up by the caller; then
    // five hung up by voxline, its BYE reaching sipp over the TCP connection.
    let (run, result) = tcp_calls_hung_up_by_either_side(&server, server.sip, capture.addr, "over TCP");
    let received = run.received();
    assert_eq!(received.iter().filter(|m| m.msg.status() == Some(200) && m.msg.header("CSeq").is_some_and(|c| c.ends_with("INVITE"))).count(), 10, "ten 200s to INVITE");
    assert!(
        received.iter().all(|m| m.msg.header("Via").is_some_and(|v| v.starts_with("SIP/2.0/TCP"))),
        "every response came back with the TCP Via"
    );
    let ok = run.invite_ok();
    assert!(ok.header("Contact").is_some_and(|c| c.contains(";transport=tcp")), "our Contact asks for TCP: {:?}", ok.header("Contact"));
    // Each call heard audio: RTP from ten different media sockets of voxline.
    assert!(capture.wait_until(Duration::from_secs(5), |p| p.iter().map(|p| p.from).collect::<HashSet<_>>().len() >= 10), "RTP from at least the 10 calls the caller hung up");
    assert!(capture.count() >= 10 * 25, "at least half a second of audio per call, got {} packets", capture.count());

    let byes = result.requests("BYE");
    assert_eq!(byes.len(), 5, "sipp got voxline's 5 BYEs");
    assert!(byes.iter().all(|m| m.msg.header("Via").is_some_and(|v| v.starts_with("SIP/2.0/TCP"))), "voxline's BYEs went over TCP");
}

#[test]
fn a_broken_tcp_stream_closes_only_its_connection() {
    require_sipp();
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Still here."]);

    // Not SIP, and no Content-Length: closed.
    let mut garbage = TcpStream::connect(server.sip).unwrap();
    garbage.write_all(b"hello there\r\nwho: me\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut garbage), "a stream without Content-Length is closed");

    // A request without Content-Length: answered 400 on its connection (RFC 3261 18.3), then closed.
    let mut unframed = TcpStream::connect(server.sip).unwrap();
    unframed
        .write_all(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKnolength\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@b>\r\nCall-ID: nolength\r\nCSeq: 1 OPTIONS\r\n\r\n")
        .unwrap();
    unframed.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    let _ = unframed.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("SIP/2.0 400 Bad Request"), "a request without Content-Length is answered 400: {answer:?}");
    assert!(answer.contains("Call-ID: nolength"), "{answer}");

    // Larger than the 64 KiB message cap without ever ending its headers: closed.
    let mut oversized = TcpStream::connect(server.sip).unwrap();
    let mut big = b"INVITE sip:agent@127.0.0.1 SIP/2.0\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'X', 70 * 1024));
    let _ = oversized.write_all(&big);
    assert!(closed_by_server(&mut oversized), "an oversized message closes the connection");

    // A body shorter than its Content-Length, then the client closes: nothing is answered.
    let mut short = TcpStream::connect(server.sip).unwrap();
    short
        .write_all(b"OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKshort\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@b>\r\nCall-ID: short\r\nCSeq: 1 OPTIONS\r\nContent-Length: 100\r\n\r\nonly ten..")
        .unwrap();
    short.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    short.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = short.read_to_end(&mut answer);
    assert!(answer.is_empty(), "a message cut short is not answered: {}", String::from_utf8_lossy(&answer));

    // The server still takes calls over UDP and over TCP.
    let (capture, _) = RtpCapture::bind();
    SippCall::new("uac_greeting.xml", server.sip).rtp(capture.addr).pause_ms(500).timeout(Duration::from_secs(20)).run().assert_success("a UDP call after the broken streams");
    SippCall::new("uac_greeting.xml", server.sip)
        .over_tcp()
        .rtp(capture.addr)
        .pause_ms(500)
        .timeout(Duration::from_secs(20))
        .run()
        .assert_success("a TCP call after the broken streams");
}
