//! Entry points for the fuzz targets (`fuzz/`) and the test that replays what they found
//! (`tests/fuzz_regressions.rs` in the voxline crate). Not an API: the parsers stay
//! crate-private, this only runs them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::digest::Challenge;
use crate::message::{
    frame, FragStatus, NameAddr, Request, Response, StartLine, SubscriptionState, Uri,
};
use crate::{CallHandle, CallRequest, Credentials, Endpoint, EndpointConfig, Event};

/// Parses one datagram as [`Endpoint::handle_datagram`](crate::Endpoint::handle_datagram)
/// does before routing it (framing, then the request or response), then every header value
/// through the typed parsers that read headers of a message in a dialog (Digest challenges,
/// name-addrs, URIs, Subscription-State) and the body as a sipfrag. Returns whether the
/// message parsed; the point is that nothing panics.
pub fn parse_message(data: &[u8]) -> bool {
    let Ok(frame) = frame(data) else {
        return false;
    };
    for header in frame.headers.iter() {
        let _ = Challenge::parse(&header.value);
        let _ = NameAddr::parse(&header.value);
        let _ = Uri::parse(&header.value);
        let _ = SubscriptionState::parse(&header.value);
    }
    let _ = FragStatus::parse(&frame.body);
    match frame.start {
        StartLine::Response { .. } => Response::from_frame(frame)
            .map(|response| response.sdp())
            .is_some(),
        StartLine::Request { .. } => match Request::from_frame(frame) {
            Ok(request) => {
                let _ = (request.top_via(), request.sdp());
                true
            }
            Err(_) => false,
        },
    }
}

/// Our address in [`drive_endpoint`].
const LOCAL: &str = "192.0.2.10:5060";
/// The peer that sends most datagrams, and the one we call.
const PEER: &str = "198.51.100.7:5070";
/// A second peer (IPv6).
const OTHER: &str = "[2001:db8::7]:5060";
const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
/// Steps of a script are separated by this line.
pub const STEP: &[u8] = b"\n~~\n";

/// Runs a script against an [`Endpoint`] on a fake clock, draining its transmits and events
/// after every step. Steps are separated by [`STEP`]; the first byte says what a step is:
///
/// - `>` the rest is a datagram from the peer, `}` from another peer;
/// - `<` a response to the last request we sent: `<NNN` then header lines and an optional
///   blank line and body, with Via, From, To (tagged), Call-ID and CSeq copied from it;
/// - `=` a request from the peer in the dialog of the last response we sent: `=METHOD CSEQ`
///   then header lines and body, with Via, From, To and Call-ID copied from that response;
/// - `+` time passes: the decimal milliseconds that follow (at most 100 s), then the timers;
/// - `!` an application action: the next byte picks it, the one after the call.
///
/// Invariants: everything we send is UTF-8 with a Content-Length equal to its body, a call
/// ends at most once and only if it began, and once every call is hung up and five minutes
/// pass, nothing is left: no call, no timer.
pub fn drive_endpoint(script: &[u8]) {
    let mut driver = Driver::new();
    for step in split(script, STEP) {
        driver.step(step);
    }
    driver.finish();
}

fn split<'a>(data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let data = rest?;
        match data.windows(separator.len()).position(|w| w == separator) {
            Some(at) => {
                rest = Some(&data[at + separator.len()..]);
                Some(&data[..at])
            }
            None => {
                rest = None;
                Some(data)
            }
        }
    })
}

struct Driver {
    endpoint: Endpoint,
    now: Instant,
    /// Calls begun (incoming or placed) and not yet ended, in the order they began.
    live: Vec<CallHandle>,
    ended: BTreeSet<CallHandle>,
    last_request: Option<String>,
    last_response: Option<String>,
}

impl Driver {
    fn new() -> Driver {
        let config = EndpointConfig::new(LOCAL.parse().unwrap());
        Driver {
            endpoint: Endpoint::with_seed(config, 7),
            now: Instant::now(),
            live: Vec::new(),
            ended: BTreeSet::new(),
            last_request: None,
            last_response: None,
        }
    }

    fn step(&mut self, step: &[u8]) {
        let Some((&kind, rest)) = step.split_first() else { return };
        match kind {
            b'>' => self.endpoint.handle_datagram(self.now, PEER.parse().unwrap(), rest),
            b'}' => self.endpoint.handle_datagram(self.now, OTHER.parse().unwrap(), rest),
            b'<' => {
                if let Some(request) = self.last_request.clone() {
                    let datagram = reply(&request, rest);
                    self.endpoint.handle_datagram(self.now, PEER.parse().unwrap(), &datagram);
                }
            }
            b'=' => {
                if let Some(response) = self.last_response.clone() {
                    let datagram = in_dialog(&response, rest);
                    self.endpoint.handle_datagram(self.now, PEER.parse().unwrap(), &datagram);
                }
            }
            b'+' => {
                let ms: u64 = std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(500);
                self.now += Duration::from_millis(ms.min(100_000));
                self.endpoint.handle_timeout(self.now);
            }
            b'!' => self.action(rest),
            _ => {}
        }
        self.drain();
    }

    fn action(&mut self, rest: &[u8]) {
        let what = rest.first().copied().unwrap_or(0);
        let which = rest.get(1).copied().unwrap_or(0) as usize;
        if what % 11 == 10 {
            let mut request = CallRequest::new(format!("sip:bob@{PEER}"), PEER.parse().unwrap(), OFFER);
            request.credentials = Some(Credentials { username: "u".into(), password: "p".into() });
            request.ring_timeout = Some(Duration::from_secs(30));
            if let Ok(call) = self.endpoint.call(self.now, request) {
                self.live.push(call);
            }
            return;
        }
        let Some(&call) = self.live.get(which % self.live.len().max(1)) else { return };
        let now = self.now;
        let ep = &mut self.endpoint;
        // Errors are fine (the call is not in a state for it); panics are not.
        let _ = match what % 11 {
            0 => ep.ringing(now, call),
            1 => ep.answer(now, call, OFFER),
            2 => ep.reject(now, call, 300 + which as u16, Some("Busy Here")),
            3 => ep.hangup(now, call),
            4 => ep.answer_reinvite(now, call, OFFER),
            5 => ep.reject_reinvite(now, call, 488),
            6 => ep.abandon(now, call),
            7 => ep.transfer(now, call, "sip:carol@192.0.2.99"),
            8 => ep.send_dtmf_info(now, call, "1#", Duration::from_millis(100)),
            _ => ep.reject_busy(now, call, Some("Busy Here"), 30),
        };
    }

    fn drain(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            let text = check_framing(&transmit.payload);
            if text.starts_with("SIP/2.0 ") {
                self.last_response = Some(text);
            } else {
                self.last_request = Some(text);
            }
        }
        while let Some(event) = self.endpoint.poll_event() {
            match event {
                Event::IncomingCall { call, .. } => {
                    assert!(!self.live.contains(&call) && !self.ended.contains(&call), "{call} began twice");
                    self.live.push(call);
                }
                Event::CallEnded { call, .. } => {
                    let at = self.live.iter().position(|&c| c == call);
                    let at = at.unwrap_or_else(|| panic!("{call} ended but was not live"));
                    self.live.remove(at);
                    assert!(self.ended.insert(call), "{call} ended twice");
                }
                _ => {}
            }
        }
    }

    /// Hangs up every call and lets five minutes pass: nothing may be left.
    fn finish(mut self) {
        for call in self.live.clone() {
            let _ = self.endpoint.hangup(self.now, call);
            let _ = self.endpoint.abandon(self.now, call);
        }
        for _ in 0..300 {
            self.now += Duration::from_secs(1);
            self.endpoint.handle_timeout(self.now);
            self.drain();
        }
        assert!(self.live.is_empty(), "calls never ended: {:?}", self.live);
        assert_eq!(self.endpoint.call_count(), 0, "calls left in the endpoint");
        assert_eq!(self.endpoint.poll_timeout(), None, "a timer is still pending");
    }
}

/// Checks something we send: UTF-8, a head and a body, Content-Length equal to the body.
fn check_framing(payload: &[u8]) -> String {
    let text = String::from_utf8(payload.to_vec()).expect("we send UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let length: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a number in Content-Length");
    assert_eq!(length, body.len(), "Content-Length of\n{text}");
    text
}

/// The header lines of `message` named in `names`.
fn copied<'a>(message: &'a str, names: &'a [&str]) -> impl Iterator<Item = &'a str> + 'a {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter(move |line| names.iter().any(|name| line.starts_with(name)))
}

/// Appends the fuzzer's header lines (and body, after a blank line) and a Content-Length.
fn finish_message(mut out: Vec<u8>, extra: &[u8]) -> Vec<u8> {
    let (headers, body) = match extra.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (&extra[..at], &extra[at + 4..]),
        None => (extra, &b""[..]),
    };
    if !headers.is_empty() {
        out.extend_from_slice(headers);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// A response to our `request`: `NNN` then the fuzzer's lines.
fn reply(request: &str, rest: &[u8]) -> Vec<u8> {
    let (status, extra) = rest.split_at(rest.len().min(3));
    let status = std::str::from_utf8(status).unwrap_or("200");
    let mut out = format!("SIP/2.0 {status} Fuzz\r\n");
    for line in copied(request, &["Via:", "From:", "Call-ID:", "CSeq:"]) {
        out += line;
        out += "\r\n";
    }
    for line in copied(request, &["To:"]) {
        out += line;
        if !line.contains(";tag=") {
            out += ";tag=peer";
        }
        out += "\r\n";
    }
    finish_message(out.into_bytes(), extra.strip_prefix(b"\r\n").unwrap_or(extra))
}

/// A request from the peer in the dialog of our `response`: `METHOD CSEQ` then the fuzzer's
/// lines.
fn in_dialog(response: &str, rest: &[u8]) -> Vec<u8> {
    let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(rest.len());
    let first = String::from_utf8_lossy(&rest[..line_end]);
    let mut words = first.split(' ');
    let method = words.next().filter(|m| !m.is_empty()).unwrap_or("BYE");
    let cseq = words.next().unwrap_or("2");
    let mut out = format!("{method} sip:agent@{LOCAL} SIP/2.0\r\n");
    for line in copied(response, &["Via:", "From:", "To:", "Call-ID:"]) {
        out += line;
        out += "\r\n";
    }
    out += &format!("CSeq: {cseq} {method}\r\n");
    let extra = rest.get(line_end + 2..).unwrap_or(b"");
    finish_message(out.into_bytes(), extra)
}
