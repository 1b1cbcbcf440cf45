//! The callee's side of calls we place: the request we make, its responses
//! written by hand, and the answer that completes it.

#![allow(dead_code)]

use std::time::Instant;

use voxline_sip::{CallHandle, CallRequest, Credentials, Endpoint};

use super::*;

pub const CALLEE: &str = "sip:+15551234567@198.51.100.7:5070";
pub const OFFER: &str = "v=0\r\no=- 3 3 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n";

pub fn request() -> CallRequest {
    CallRequest::direct(CALLEE, OFFER).unwrap()
}

pub fn with_credentials(username: &str, password: &str) -> CallRequest {
    let mut r = request();
    r.credentials = Some(Credentials {
        username: username.into(),
        password: password.into(),
    });
    r
}

/// Places a call and returns it with the INVITE that went out.
pub fn place(ep: &mut Endpoint, now: Instant, request: CallRequest) -> (CallHandle, Sent) {
    let call = ep.call(now, request).unwrap();
    let invite = one(ep);
    assert_eq!(invite.method(), "INVITE");
    (call, invite)
}

/// The callee's response to one of our requests.
pub struct Resp {
    pub text: String,
}

impl Resp {
    pub fn to(request: &Sent, status: u16, reason: &str) -> Resp {
        let mut text = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for value in request.headers(name) {
                text += &format!("{name}: {value}\r\n");
            }
        }
        Resp { text }
    }

    pub fn tag(mut self, tag: &str) -> Resp {
        self.text = self.text.replacen("\r\nTo: ", "\r\nTo: TAGGED", 1);
        let start = self.text.find("TAGGED").unwrap();
        let end = start + self.text[start..].find("\r\n").unwrap();
        let to = self.text[start + 6..end].to_string();
        self.text
            .replace_range(start..end, &format!("{to};tag={tag}"));
        self
    }

    pub fn header(mut self, line: &str) -> Resp {
        self.text += line;
        self.text += "\r\n";
        self
    }

    pub fn send(self, ep: &mut Endpoint, now: Instant) {
        self.send_with(ep, now, None);
    }

    pub fn sdp(self, ep: &mut Endpoint, now: Instant, sdp: &str) {
        self.send_with(ep, now, Some(sdp));
    }

    pub fn send_with(self, ep: &mut Endpoint, now: Instant, sdp: Option<&str>) {
        let text = match sdp {
            Some(sdp) => format!(
                "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                self.text,
                sdp.len()
            ),
            None => format!("{}Content-Length: 0\r\n\r\n", self.text),
        };
        ep.handle_datagram(now, peer(), text.as_bytes());
    }
}

/// A 200 with a Contact and SDP, from the callee; returns the ACK we sent.
pub fn answer(ep: &mut Endpoint, now: Instant, invite: &Sent) -> Sent {
    Resp::to(invite, 200, "OK")
        .tag("callee")
        .header("Contact: <sip:bob@198.51.100.7:5070>")
        .sdp(ep, now, SDP);
    let ack = one(ep);
    assert_eq!(ack.method(), "ACK");
    ack
}
