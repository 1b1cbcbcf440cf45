//! Raw SIP over UDP: hand-written requests and responses, and a socket that
//! logs every datagram in and out.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::harness::{tail, unique, LOCALHOST};
use super::sip_message::{header_param, SipMessage};

/// A new Call-ID, unique across processes and runs.
pub fn new_call_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("vxt-{}-{}-{nanos:x}@127.0.0.1", std::process::id(), unique())
}

/// A new RFC 3261 branch (magic cookie prefix).
pub fn new_branch() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("z9hG4bK-vxt{}x{}x{nanos:x}", std::process::id(), unique())
}

pub fn new_tag() -> String {
    format!("t{}x{}", std::process::id(), unique())
}

/// A hand-written request; [`Request::render`] makes the text with CRLFs and
/// a correct Content-Length (unless one is given in `extra`).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub uri: String,
    /// Where Via / Contact / From point (the sending socket).
    pub local: SocketAddr,
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub to_uri: String,
    pub cseq: u32,
    /// Method in CSeq (defaults to `method`).
    pub cseq_method: Option<String>,
    pub extra: Vec<String>,
    pub body: Option<(String, String)>,
}

impl Request {
    /// An out-of-dialog request from `local` to the server at `server`.
    pub fn new(method: &str, local: SocketAddr, server: SocketAddr) -> Request {
        Request {
            method: method.to_string(),
            uri: format!("sip:agent@{server}"),
            local,
            branch: new_branch(),
            call_id: new_call_id(),
            from_tag: new_tag(),
            to_tag: None,
            to_uri: format!("sip:agent@{server}"),
            cseq: 1,
            cseq_method: None,
            extra: Vec::new(),
            body: None,
        }
    }

    pub fn sdp(mut self, sdp: String) -> Request {
        self.body = Some(("application/sdp".into(), sdp));
        self
    }

    pub fn header(mut self, line: &str) -> Request {
        self.extra.push(line.to_string());
        self
    }

    /// The same dialog and transaction fields, another method (CANCEL: same
    /// branch and CSeq number; ACK for a non-2xx: the same).
    pub fn sibling(&self, method: &str) -> Request {
        Request {
            method: method.into(),
            cseq_method: None,
            extra: Vec::new(),
            body: None,
            ..self.clone()
        }
    }

    /// A new in-dialog request (new branch, given CSeq, remote tag set).
    pub fn in_dialog(&self, method: &str, cseq: u32, to_tag: &str, uri: Option<&str>) -> Request {
        Request {
            method: method.into(),
            uri: uri.map(str::to_string).unwrap_or_else(|| self.uri.clone()),
            branch: new_branch(),
            to_tag: Some(to_tag.to_string()),
            cseq,
            cseq_method: None,
            extra: Vec::new(),
            body: None,
            ..self.clone()
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        s.push_str(&format!("Via: SIP/2.0/UDP {};branch={};rport\r\n", self.local, self.branch));
        s.push_str("Max-Forwards: 70\r\n");
        s.push_str(&format!("From: \"tester\" <sip:tester@{}>;tag={}\r\n", self.local, self.from_tag));
        match &self.to_tag {
            Some(t) => s.push_str(&format!("To: <{}>;tag={t}\r\n", self.to_uri)),
            None => s.push_str(&format!("To: <{}>\r\n", self.to_uri)),
        }
        s.push_str(&format!("Call-ID: {}\r\n", self.call_id));
        s.push_str(&format!("CSeq: {} {}\r\n", self.cseq, self.cseq_method.as_deref().unwrap_or(&self.method)));
        if self.method != "CANCEL" && self.method != "ACK" {
            s.push_str(&format!("Contact: <sip:tester@{}>\r\n", self.local));
        }
        s.push_str("User-Agent: voxline-tests\r\n");
        for e in &self.extra {
            s.push_str(e);
            s.push_str("\r\n");
        }
        let has_len = self.extra.iter().any(|e| e.to_ascii_lowercase().starts_with("content-length"));
        match &self.body {
            Some((ct, body)) => {
                s.push_str(&format!("Content-Type: {ct}\r\n"));
                if !has_len {
                    s.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                s.push_str("\r\n");
                s.push_str(body);
            }
            None => {
                if !has_len {
                    s.push_str("Content-Length: 0\r\n");
                }
                s.push_str("\r\n");
            }
        }
        s
    }
}

/// A response to a request the server sent us (e.g. 200 for its BYE).
pub fn response_to(req: &SipMessage, code: u16, reason: &str, local_tag: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
    }
    let from = req.header("From").unwrap_or_default();
    s.push_str(&format!("From: {from}\r\n"));
    let to = req.header("To").unwrap_or_default();
    match local_tag {
        Some(t) if header_param(to, "tag").is_none() => s.push_str(&format!("To: {to};tag={t}\r\n")),
        _ => s.push_str(&format!("To: {to}\r\n")),
    }
    s.push_str(&format!("Call-ID: {}\r\n", req.call_id().unwrap_or_default()));
    s.push_str(&format!("CSeq: {}\r\n", req.header("CSeq").unwrap_or_default()));
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A received message with its arrival time.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub wall: SystemTime,
    pub from: SocketAddr,
    pub msg: SipMessage,
}

/// A UDP socket for hand-written SIP to the server. Every datagram in and out
/// is logged (shown by [`SipSocket::transcript`] and on test failure).
pub struct SipSocket {
    sock: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    log: Mutex<Vec<String>>,
    started: Instant,
}

impl SipSocket {
    pub fn bind(server: SocketAddr) -> SipSocket {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind a UDP socket for SIP");
        let local = sock.local_addr().unwrap();
        SipSocket { sock, local, server, log: Mutex::new(Vec::new()), started: Instant::now() }
    }

    /// A request from this socket to the server.
    pub fn request(&self, method: &str) -> Request {
        Request::new(method, self.local, self.server)
    }

    /// Sends text as it is (no line-ending fix-up).
    pub fn send_raw(&self, data: &[u8]) {
        self.log.lock().unwrap().push(format!(
            "[{:8.3}s] >>> {} bytes\n{}",
            self.started.elapsed().as_secs_f64(),
            data.len(),
            String::from_utf8_lossy(data)
        ));
        self.sock.send_to(data, self.server).expect("send a datagram to the server");
    }

    pub fn send(&self, req: &Request) {
        self.send_raw(req.render().as_bytes());
    }

    /// The next datagram from anyone, parsed; `None` on timeout. Unparsable
    /// datagrams are logged and skipped.
    pub fn recv(&self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let (at, wall) = (Instant::now(), SystemTime::now());
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.log.lock().unwrap().push(format!(
                        "[{:8.3}s] <<< {n} bytes from {from}\n{text}",
                        self.started.elapsed().as_secs_f64()
                    ));
                    if let Some(msg) = SipMessage::parse(&text) {
                        return Some(Received { at, wall, from, msg });
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return None
                }
                // A signal (e.g. SIGCHLD from a sipp another test runs) interrupted the wait.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("recv on the SIP socket: {e}"),
            }
        }
    }

    /// Waits for a message satisfying `pred`, dropping others (they stay in the
    /// transcript). `None` on timeout.
    pub fn recv_until(&self, timeout: Duration, mut pred: impl FnMut(&SipMessage) -> bool) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.recv(left)?;
            if pred(&r.msg) {
                return Some(r);
            }
        }
    }

    /// The final (>= 200) response for this CSeq method and Call-ID.
    pub fn final_response(&self, req: &Request, timeout: Duration) -> Option<Received> {
        let method = req.cseq_method.clone().unwrap_or_else(|| req.method.clone());
        self.recv_until(timeout, |m| {
            m.status().is_some_and(|s| s >= 200)
                && m.call_id() == Some(req.call_id.as_str())
                && m.cseq_method().as_deref() == Some(method.as_str())
        })
    }

    /// Everything that arrives within `window`.
    pub fn recv_all(&self, window: Duration) -> Vec<Received> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(r) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            out.push(r);
        }
        out
    }

    pub fn transcript(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for SipSocket {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== raw SIP socket {} <-> {} ===\n{}", self.local, self.server, tail(&self.transcript(), 400));
        }
    }
}
