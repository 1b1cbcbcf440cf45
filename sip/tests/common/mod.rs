//! Helpers shared by the integration tests: a configured endpoint, request builders, and a
//! reader for what the endpoint sends that also checks every message is well formed.
#![allow(dead_code)]

pub mod uac;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use voxline_sip::{CallHandle, Endpoint, EndpointConfig, Event, Transmit};

/// Our address.
pub const LOCAL: &str = "192.0.2.10:5060";
/// The caller's address.
pub const PEER: &str = "198.51.100.7:5070";

pub fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

pub fn config() -> EndpointConfig {
    let mut config = EndpointConfig::new(LOCAL.parse().unwrap());
    config.advertised = Some(("203.0.113.5".to_string(), 5060));
    config
}

pub fn endpoint() -> Endpoint {
    Endpoint::with_seed(config(), 7)
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";
pub const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

/// A request from the peer; `extra` lines are added before Content-Length.
pub struct Req {
    pub method: &'static str,
    pub uri: String,
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub cseq: u32,
    pub cseq_method: Option<&'static str>,
    pub extra: Vec<String>,
    pub body: Option<(String, String)>,
}

impl Req {
    pub fn new(method: &'static str, call_id: &str, branch: &str) -> Req {
        Req {
            method,
            uri: "sip:agent@192.0.2.10".to_string(),
            branch: branch.to_string(),
            call_id: call_id.to_string(),
            from_tag: "caller-tag".to_string(),
            to_tag: None,
            cseq: 1,
            cseq_method: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// An INVITE with an SDP offer and a Contact.
    pub fn invite(call_id: &str, branch: &str) -> Req {
        Req::new("INVITE", call_id, branch)
            .header("Contact: <sip:caller@198.51.100.7:5070>")
            .body("application/sdp", SDP)
    }

    pub fn header(mut self, line: &str) -> Req {
        self.extra.push(line.to_string());
        self
    }

    pub fn body(mut self, content_type: &str, body: &str) -> Req {
        self.body = Some((content_type.to_string(), body.to_string()));
        self
    }

    pub fn with_to_tag(mut self, tag: &str) -> Req {
        self.to_tag = Some(tag.to_string());
        self
    }

    pub fn cseq(mut self, cseq: u32) -> Req {
        self.cseq = cseq;
        self
    }

    pub fn cseq_method(mut self, method: &'static str) -> Req {
        self.cseq_method = Some(method);
        self
    }

    pub fn text(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        s += &format!(
            "Via: SIP/2.0/UDP 198.51.100.7:5070;branch={};rport\r\n",
            self.branch
        );
        s += "Max-Forwards: 70\r\n";
        s += &format!(
            "From: \"Caller\" <sip:caller@example.com>;tag={}\r\n",
            self.from_tag
        );
        match &self.to_tag {
            Some(tag) => s += &format!("To: <sip:agent@example.com>;tag={tag}\r\n"),
            None => s += "To: <sip:agent@example.com>\r\n",
        }
        s += &format!("Call-ID: {}\r\n", self.call_id);
        s += &format!(
            "CSeq: {} {}\r\n",
            self.cseq,
            self.cseq_method.unwrap_or(self.method)
        );
        for line in &self.extra {
            s += line;
            s += "\r\n";
        }
        match &self.body {
            Some((ct, body)) => {
                s += &format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => s += "Content-Length: 0\r\n\r\n",
        }
        s
    }

    pub fn send(&self, ep: &mut Endpoint, now: Instant) {
        ep.handle_datagram(now, peer(), self.text().as_bytes());
    }
}

/// A message the endpoint sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub to: SocketAddr,
    pub text: String,
}

impl Sent {
    fn head(&self) -> &str {
        self.text.split("\r\n\r\n").next().unwrap_or_default()
    }

    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The status code, or 0 for a request.
    pub fn status(&self) -> u16 {
        let line = self.first_line();
        if !line.starts_with("SIP/2.0 ") {
            return 0;
        }
        line[8..11].parse().unwrap()
    }

    pub fn reason(&self) -> &str {
        self.first_line().get(12..).unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        if self.status() != 0 {
            return "";
        }
        self.first_line().split(' ').next().unwrap_or_default()
    }

    pub fn request_uri(&self) -> &str {
        self.first_line().split(' ').nth(1).unwrap_or_default()
    }

    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head()
            .split("\r\n")
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(';').skip(1).find_map(|p| {
            let (name, value) = p.split_once('=')?;
            (name.trim() == "tag").then(|| value.trim().to_string())
        })
    }

    pub fn cseq(&self) -> (u32, String) {
        let cseq = self.header("CSeq").unwrap();
        let (n, m) = cseq.split_once(' ').unwrap();
        (n.parse().unwrap(), m.trim().to_string())
    }

    pub fn top_branch(&self) -> String {
        let via = self.header("Via").unwrap();
        via.split(';')
            .find_map(|p| p.strip_prefix("branch="))
            .unwrap()
            .to_string()
    }
}

/// Checks that a message is well formed: an independent parser (rsip) accepts it, it has
/// the mandatory headers, and Content-Length is the body length.
pub fn check_well_formed(sent: &Sent) {
    rsip::SipMessage::try_from(sent.text.as_str())
        .unwrap_or_else(|e| panic!("rsip cannot parse what we sent ({e}):\n{}", sent.text));
    let len: usize = sent
        .header("Content-Length")
        .unwrap_or_else(|| panic!("no Content-Length:\n{}", sent.text))
        .parse()
        .unwrap();
    assert_eq!(
        len,
        sent.body().len(),
        "Content-Length mismatch:\n{}",
        sent.text
    );
    if sent.status() != 0 {
        for name in ["Via", "From", "To", "Call-ID", "CSeq", "Server"] {
            assert!(
                sent.header(name).is_some(),
                "response without {name}:\n{}",
                sent.text
            );
        }
        if sent.status() > 100 {
            assert!(
                sent.to_tag().is_some(),
                "response without To tag:\n{}",
                sent.text
            );
        }
    } else {
        for name in [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "User-Agent",
        ] {
            assert!(
                sent.header(name).is_some(),
                "request without {name}:\n{}",
                sent.text
            );
        }
    }
}

/// Everything the endpoint wants to send, each checked with [`check_well_formed`].
pub fn drain(ep: &mut Endpoint) -> Vec<Sent> {
    let mut out = Vec::new();
    while let Some(Transmit {
        destination,
        payload,
        ..
    }) = ep.poll_transmit()
    {
        let sent = Sent {
            to: destination,
            text: String::from_utf8(payload).expect("we send UTF-8"),
        };
        check_well_formed(&sent);
        out.push(sent);
    }
    out
}

/// Exactly one message, which must be sent.
pub fn one(ep: &mut Endpoint) -> Sent {
    let mut sent = drain(ep);
    assert_eq!(sent.len(), 1, "expected one message, got {sent:#?}");
    sent.remove(0)
}

pub fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

/// Sends an INVITE and returns the call handle from the IncomingCall event (the 100 is
/// drained).
pub fn incoming_call(ep: &mut Endpoint, now: Instant, call_id: &str) -> CallHandle {
    Req::invite(call_id, &format!("z9hG4bK-{call_id}")).send(ep, now);
    let trying = one(ep);
    assert_eq!(trying.status(), 100);
    match events(ep).as_slice() {
        [Event::IncomingCall { call, .. }] => *call,
        other => panic!("expected IncomingCall, got {other:?}"),
    }
}

/// Answers a call and returns the 200.
pub fn answered_call(ep: &mut Endpoint, now: Instant, call_id: &str) -> (CallHandle, Sent) {
    let call = incoming_call(ep, now, call_id);
    ep.answer(now, call, ANSWER).unwrap();
    let ok = one(ep);
    assert_eq!(ok.status(), 200);
    (call, ok)
}

/// Answers and confirms a call (ACK with the 200's To tag); returns our tag.
pub fn established_call(ep: &mut Endpoint, now: Instant, call_id: &str) -> (CallHandle, String) {
    let (call, ok) = answered_call(ep, now, call_id);
    let tag = ok.to_tag().unwrap();
    Req::new("ACK", call_id, &format!("z9hG4bK-ack-{call_id}"))
        .with_to_tag(&tag)
        .send(ep, now);
    assert!(drain(ep).is_empty());
    assert!(matches!(
        events(ep).as_slice(),
        [Event::CallConfirmed { .. }]
    ));
    (call, tag)
}

/// Advances time to each deadline up to `until`, collecting what was sent and when (offset
/// from `start`).
pub fn run_until(ep: &mut Endpoint, start: Instant, until: Duration) -> Vec<(Duration, Sent)> {
    let mut out = Vec::new();
    while let Some(deadline) = ep.poll_timeout() {
        if deadline > start + until {
            break;
        }
        ep.handle_timeout(deadline);
        for sent in drain(ep) {
            out.push((deadline - start, sent));
        }
    }
    out
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
