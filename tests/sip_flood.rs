//! INVITE floods: spoofed INVITEs that never send an ACK get no media (no
//! amplification towards the address their SDP names) and cannot lock a real
//! caller out; one source sending too many INVITEs gets 503 with Retry-After.
//! The flood comes from many loopback addresses (127.0.0.2 and up), as a
//! spoofing attacker's would, each from its own socket.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::calls::*;
use common::sip::*;

/// An INVITE from a socket bound to `ip`, its SDP pointing at `media`; never acknowledged.
fn spoofed_invite(ip: Ipv4Addr, server: SocketAddr, media: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind((IpAddr::V4(ip), 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    let invite = Request::new("INVITE", sock.local_addr().unwrap(), server).sdp(pcmu_offer(media));
    sock.send_to(invite.render().as_bytes(), server).unwrap();
    sock
}

/// Final responses' status codes that arrived on `sock` within `window`.
fn statuses(sock: &UdpSocket, window: Duration) -> Vec<u16> {
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(status) = SipMessage::parse(&String::from_utf8_lossy(&buf[..n])).and_then(|m| m.status()) {
                if status >= 200 {
                    out.push(status);
                }
            }
        }
    }
    out
}

#[test]
fn a_flood_of_unacknowledged_invites_gets_no_media_and_a_real_caller_still_gets_through() {
    let _slot = shared_slot();
    // 100 port pairs: 250 INVITEs holding a pair each until their ACK timeout
    // would leave none for the real caller.
    let server = Server::start(&["--greeting", "Hello, you are through to the agent.", "--rtp-ports", "41000-41199"]);
    let victim = Media::bind();
    let mut flood = Vec::new();
    for i in 0..250u32 {
        let ip = Ipv4Addr::new(127, 0, (2 + i / 250) as u8, (2 + i % 250) as u8);
        flood.push(spoofed_invite(ip, server.sip, victim.addr));
    }
    // The server answered them (200s went back to the flood's sockets) but sent no media.
    let first = flood[0].try_clone().unwrap();
    assert!(statuses(&first, Duration::from_secs(1)).contains(&200), "the first spoofed INVITE was answered");
    let calls = server.calls().len();
    assert!(calls <= 64, "at most --max-unconfirmed (64) unacknowledged calls are kept, got {calls}");

    // A real caller completes the handshake and hears its greeting.
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);
    let packets = media.collect(Duration::from_secs(3));
    let loud = packets.iter().filter(|p| p.4.iter().any(|&b| voxline::media::playout::is_sound(b))).count();
    assert!(loud >= 25, "the real caller heard {loud} packets with sound of {}", packets.len());
    dialog.bye(&sip);

    let sprayed = victim.collect(Duration::from_millis(200)).len();
    assert_eq!(sprayed, 0, "RTP sent to an address no ACK ever came from");
    let mut server = server;
    server.assert_alive();
}

#[test]
fn one_source_beyond_its_invite_rate_gets_503_with_retry_after() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--invite-rate", "5", "--invite-burst", "10"]);
    let victim = Media::bind();
    let sock = UdpSocket::bind((IpAddr::V4(Ipv4Addr::new(127, 0, 3, 7)), 0)).unwrap();
    let local = sock.local_addr().unwrap();
    for _ in 0..40 {
        let invite = Request::new("INVITE", local, server.sip).sdp(pcmu_offer(victim.addr));
        sock.send_to(invite.render().as_bytes(), server.sip).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let end = Instant::now() + Duration::from_secs(2);
    let (mut ok, mut busy, mut retry_after) = (0, 0, Vec::new());
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let Some(msg) = SipMessage::parse(&String::from_utf8_lossy(&buf[..n])) else { continue };
            match msg.status() {
                Some(200) => ok += 1,
                Some(503) => {
                    busy += 1;
                    retry_after.extend(msg.header("Retry-After").map(str::to_owned));
                }
                _ => {}
            }
        }
    }
    // 200s are retransmitted until the ACK; count each call once.
    assert!(busy >= 25, "40 INVITEs at once with a burst of 10: {busy} got 503 ({ok} 200s incl. retransmissions)");
    assert!(!retry_after.is_empty() && retry_after.iter().all(|v| v.trim().parse::<u32>().is_ok_and(|s| s >= 1)), "{retry_after:?}");
    // Another source is not affected.
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);
    dialog.bye(&sip);
}
