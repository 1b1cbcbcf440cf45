//! A live call placed by hand: SIP over a UDP socket, and a UDP socket for
//! media that both records what the server sends and sends what a test wants.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::sip::*;

pub const WAIT: Duration = Duration::from_secs(5);

/// A UDP socket for our side's RTP: records what the server sends, sends what we want.
pub struct Media {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Media {
    pub fn bind() -> Media {
        let sock = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = sock.local_addr().unwrap();
        Media { sock, addr }
    }

    /// RTP packets arriving within `window`: (arrival, seq, timestamp, pt, marker, payload).
    pub fn collect(&self, window: Duration) -> Vec<(Instant, u16, u32, u8, Vec<u8>)> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                if n >= 12 && buf[0] >> 6 == 2 {
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    out.push((Instant::now(), seq, ts, buf[1] & 0x7f, buf[12..n].to_vec()));
                }
            }
        }
        out
    }

    pub fn drain(&self) {
        self.sock.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        while self.sock.recv_from(&mut buf).is_ok() {}
        self.sock.set_nonblocking(false).unwrap();
    }
}

pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend(payload);
    p
}

/// An answered and acknowledged call placed from `sip`, media at `media`.
pub struct Dialog {
    pub invite: Request,
    pub to_tag: String,
    pub contact: Option<String>,
    pub server_media: SocketAddr,
    pub cseq: u32,
    /// Our id for the call (the HTTP API's).
    pub id: String,
}

pub fn call(server: &Server, sip: &SipSocket, media: SocketAddr) -> Dialog {
    let invite = sip.request("INVITE").sdp(pcmu_offer(media));
    sip.send(&invite);
    let ok = sip.final_response(&invite, WAIT).unwrap_or_else(|| panic!("no final response to INVITE\n{}", sip.transcript()));
    assert_eq!(ok.msg.status(), Some(200), "{}", sip.transcript());
    let to_tag = ok.msg.to_tag().expect("200 has a To tag");
    let contact = ok.msg.contact_uri();
    let sdp = ok.msg.sdp().expect("200 has SDP").expect("the SDP parses");
    let server_media = sdp.audio_addr().expect("the answer has an audio address");
    sip.send(&invite.in_dialog("ACK", 1, &to_tag, contact.as_deref()));
    let id = server.wait_for_call(&invite.call_id, WAIT, |c| c.state == "active").id;
    Dialog { invite, to_tag, contact, server_media, cseq: 1, id }
}

impl Dialog {
    /// Sends a re-INVITE with `sdp`; returns the 200's SDP body.
    pub fn reinvite(&mut self, sip: &SipSocket, sdp: String) -> Sdp {
        self.cseq += 1;
        let re = self.invite.in_dialog("INVITE", self.cseq, &self.to_tag, self.contact.as_deref()).sdp(sdp);
        sip.send(&re);
        let ok = sip.final_response(&re, WAIT).unwrap_or_else(|| panic!("no answer to re-INVITE\n{}", sip.transcript()));
        assert_eq!(ok.msg.status(), Some(200), "{}", sip.transcript());
        sip.send(&self.invite.in_dialog("ACK", self.cseq, &self.to_tag, self.contact.as_deref()));
        ok.msg.sdp().expect("SDP in the re-INVITE's 200").expect("it parses")
    }

    pub fn bye(&mut self, sip: &SipSocket) {
        self.cseq += 1;
        let bye = self.invite.in_dialog("BYE", self.cseq, &self.to_tag, self.contact.as_deref());
        sip.send(&bye);
        let ok = sip.final_response(&bye, WAIT);
        assert_eq!(ok.map(|r| r.msg.status()), Some(Some(200)));
    }
}

/// GET returning the raw body (the shared client keeps bodies as text).
pub fn get_bytes(http: SocketAddr, path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: audio/wav"), "{head}");
    raw.split_off(split + 4)
}

