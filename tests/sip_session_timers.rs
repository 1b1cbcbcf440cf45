//! Session timers (RFC 4028) end to end: the real binary with a short interval
//! (`--session-expires 4 --min-se 4`, a floor RFC 4028 puts at 90 s and that only tests
//! lower) and a hand-written SIP peer on a UDP socket as the caller. voxline refuses an
//! interval below its Min-SE with 422, refreshes a call it was asked to refresh
//! (`refresher=uas`) every half interval with a re-INVITE carrying its SDP unchanged, and
//! hangs up a call whose caller was to refresh and did not. Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::calls::*;
use common::sip::*;

/// The interval the server runs with and the caller asks for, in seconds.
const SE: u64 = 4;

fn server() -> Server {
    let se = SE.to_string();
    Server::start(&["--greeting", "", "--session-expires", &se, "--min-se", &se])
}

/// An INVITE with the caller's session-timer headers, answered and acknowledged; returns it,
/// the 200 and voxline's tag.
fn timed_call(sip: &SipSocket, media: &Media, session_expires: &str) -> (Request, SipMessage, String) {
    let invite = sip
        .request("INVITE")
        .header("Supported: timer")
        .header(&format!("Session-Expires: {session_expires}"))
        .header(&format!("Min-SE: {SE}"))
        .sdp(pcmu_offer(media.addr));
    sip.send(&invite);
    let ok = sip.final_response(&invite, WAIT).unwrap_or_else(|| panic!("no answer\n{}", sip.transcript())).msg;
    assert_eq!(ok.status(), Some(200), "{}", sip.transcript());
    let tag = ok.to_tag().expect("a To tag");
    sip.send(&invite.in_dialog("ACK", 1, &tag, ok.contact_uri().as_deref()));
    (invite, ok, tag)
}

/// Our 200 to a request voxline sent, with extra header lines and an SDP body.
fn ok_with(req: &SipMessage, tag: &str, lines: &[&str], sdp: &str) -> String {
    let head = response_to(req, 200, "OK", Some(tag));
    let head = head.trim_end_matches("Content-Length: 0\r\n\r\n");
    let mut s = head.to_string();
    for line in lines {
        s += line;
        s += "\r\n";
    }
    s + &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len())
}

#[test]
fn an_interval_below_min_se_gets_422() {
    let server = server();
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let invite = sip
        .request("INVITE")
        .header("Supported: timer")
        .header("Session-Expires: 2")
        .sdp(pcmu_offer(media.addr));
    sip.send(&invite);
    let refused = sip.final_response(&invite, WAIT).expect("a final response").msg;
    assert_eq!(refused.status(), Some(422), "{}", sip.transcript());
    assert_eq!(refused.header("Min-SE"), Some("4"));
}

#[test]
fn voxline_refreshes_by_reinvite_every_half_interval_when_it_is_the_refresher() {
    let server = server();
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let (invite, ok, tag) = timed_call(&sip, &media, &format!("{SE};refresher=uas"));
    assert_eq!(ok.header("Session-Expires"), Some("4;refresher=uas"));
    assert_eq!(ok.header("Require"), Some("timer"));
    assert!(ok.allow().contains("UPDATE"), "{}", ok.raw);
    let answered = Instant::now();
    let our_sdp = pcmu_offer(media.addr);
    // Two refreshes: each a re-INVITE (the caller did not allow UPDATE) with the 200's SDP.
    for n in 1..=2 {
        let wait = Duration::from_secs(SE / 2 + 3);
        let reinvite = sip
            .recv_until(wait, |m| m.method() == Some("INVITE"))
            .unwrap_or_else(|| panic!("no refresh {n} within {wait:?}\n{}", sip.transcript()))
            .msg;
        let after = answered.elapsed();
        assert!(after >= Duration::from_secs(n * SE / 2) - Duration::from_millis(300), "refresh {n} after {after:?}");
        assert_eq!(reinvite.call_id(), Some(invite.call_id.as_str()));
        assert_eq!(reinvite.body, ok.body, "the same SDP, same session version");
        assert_eq!(reinvite.header("Session-Expires"), Some("4;refresher=uac"));
        sip.send_raw(ok_with(&reinvite, &invite.from_tag, &["Session-Expires: 4;refresher=uac"], &our_sdp).as_bytes());
        let ack = sip.recv_until(WAIT, |m| m.method() == Some("ACK")).unwrap_or_else(|| panic!("no ACK\n{}", sip.transcript()));
        assert_eq!(ack.msg.cseq().map(|c| c.0), reinvite.cseq().map(|c| c.0));
    }
    server.wait_for_call(&invite.call_id, WAIT, |c| c.state == "active");
    let mut dialog = Dialog { invite, to_tag: tag, contact: ok.contact_uri(), server_media: media.addr, cseq: 1, id: String::new() };
    dialog.bye(&sip);
}

#[test]
fn a_caller_that_does_not_refresh_is_hung_up_before_the_interval_ends() {
    let server = server();
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let (invite, ok, _) = timed_call(&sip, &media, &format!("{SE};refresher=uac"));
    assert_eq!(ok.header("Session-Expires"), Some("4;refresher=uac"));
    let answered = Instant::now();
    let bye = sip
        .recv_until(Duration::from_secs(SE + 3), |m| m.method() == Some("BYE"))
        .unwrap_or_else(|| panic!("no BYE\n{}", sip.transcript()))
        .msg;
    // 4 - min(32, 4/3) = 2.67 s after the 200.
    let after = answered.elapsed();
    assert!(after >= Duration::from_millis(2400) && after < Duration::from_secs(SE + 1), "BYE after {after:?}");
    sip.send_raw(response_to(&bye, 200, "OK", None).as_bytes());
    server.wait_call_gone(&invite.call_id, WAIT);
    let deadline = Instant::now() + WAIT;
    while !server.stderr().contains("session_expired") {
        assert!(Instant::now() < deadline, "no session_expired call record\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}
