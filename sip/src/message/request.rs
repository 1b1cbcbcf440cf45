//! A received request, checked against the syntax rules of RFC 3261 (8.1.1, 20) and parsed
//! into typed values once; and [`Echo`], the header values every response copies.
//!
//! Checks, in order (the first failure decides the answer):
//! 1. framing defects (request line, header lines, Content-Length) -> 400;
//! 2. SIP-Version other than 2.0 -> 505;
//! 3. a missing Via, From, To, Call-ID or CSeq -> 400;
//! 4. repeated single-valued headers (From, To, Call-ID, CSeq, Max-Forwards, Content-Type) -> 400;
//! 5. CSeq syntax and range, CSeq method equal to the request method -> 400;
//! 6. Via syntax; a branch that is only the magic cookie -> 400;
//! 7. From/To syntax, Call-ID syntax, Max-Forwards syntax -> 400;
//! 8. Request-URI syntax, and no `?headers` in it -> 400;
//! 9. Contact, Record-Route and Content-Type syntax, a body without Content-Type -> 400.
//!
//! Semantic answers (405, 416, 420, 415, 406, 483, 481, ...) are the endpoint's business.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::fields::{self, CSeq, MediaType};
use super::frame::{Frame, StartLine};
use super::grammar;
use super::headers::Headers;
use super::method::Method;
use super::name_addr::{self, NameAddr};
use super::uri::Uri;
use super::via::{self, Via};
use crate::transmit::Transport;

/// A status code and reason phrase for a request that cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: u16,
    pub reason: Cow<'static, str>,
}

impl Rejection {
    pub(crate) fn bad_request(reason: &'static str) -> Rejection {
        Rejection {
            status: 400,
            reason: Cow::Borrowed(reason),
        }
    }
}

/// The header values a response to a request copies (RFC 3261 8.2.6.2): Via (all values),
/// From, To, Call-ID and CSeq, as received. Built even for malformed requests, with whatever
/// could be read, so that a 400 can still be routed and matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Echo {
    /// The top Via, parsed, when it parses.
    pub top_via: Option<Via>,
    /// Every Via value as written, top first.
    pub vias: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// True when To already carries a tag (the response must not add one).
    pub to_has_tag: bool,
    pub call_id: Option<String>,
    pub cseq: Option<String>,
    /// Record-Route values as written, in order: copied into the responses
    /// that establish a dialog (RFC 3261 12.1.1).
    pub record_route: Vec<String>,
    /// The transport the request came on: its responses go back on it (RFC 3261 18.2.2).
    pub transport: Transport,
}

impl Echo {
    /// Reads the echo headers from a framed message, tolerating errors.
    pub(crate) fn from_headers(headers: &Headers) -> Echo {
        let mut vias = Vec::new();
        for line in headers.all("Via") {
            match grammar::split_top_level(line, ',') {
                Ok(values) => vias.extend(
                    values
                        .into_iter()
                        .filter(|v| !v.is_empty())
                        .map(str::to_string),
                ),
                Err(_) => vias.push(line.to_string()),
            }
        }
        let top_via = vias.first().and_then(|v| Via::parse(v).ok());
        let to = headers.first("To").map(str::to_string);
        let to_has_tag = to
            .as_deref()
            .and_then(|t| NameAddr::parse(t).ok())
            .is_some_and(|t| t.tag().is_some());
        Echo {
            top_via,
            vias,
            from: headers.first("From").map(str::to_string),
            to,
            to_has_tag,
            call_id: headers.first("Call-ID").map(str::to_string),
            cseq: headers.first("CSeq").map(str::to_string),
            record_route: headers.all("Record-Route").map(str::to_string).collect(),
            transport: Transport::Udp,
        }
    }

    /// Whether a response with `status` establishes a dialog: a 101-299 to
    /// an INVITE (the only dialog-creating request this user agent accepts).
    pub(crate) fn establishes_dialog(&self, status: u16) -> bool {
        let invite = self.cseq.as_deref().and_then(|c| c.split_whitespace().nth(1)).is_some_and(|m| m.eq_ignore_ascii_case("INVITE"));
        invite && (101..300).contains(&status)
    }

    /// The Via values for a response to a request from `source`, with the top one stamped
    /// (RFC 3581), and where the response goes. An unparsable top Via is copied as written
    /// and the response goes back to the source address.
    /// Over TCP the response goes back to the connection the request came on (18.2.2), so to
    /// `source` whatever the Via says.
    pub(crate) fn response_vias(&self, source: SocketAddr) -> (Vec<String>, SocketAddr) {
        let mut vias = self.vias.clone();
        match (&self.top_via, vias.first_mut()) {
            (Some(top), Some(slot)) => {
                let mut top = top.clone();
                let destination = top.stamp_received(source);
                *slot = top.to_string();
                match self.transport {
                    Transport::Udp => (vias, destination),
                    Transport::Tcp => (vias, source),
                }
            }
            _ => (vias, source),
        }
    }
}

/// A request that failed the syntax checks: the answer to give, and what to copy into it.
#[derive(Debug, Clone)]
pub(crate) struct Invalid {
    pub rejection: Rejection,
    pub echo: Echo,
}

/// A request that passed the syntax checks.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub vias: Vec<Via>,
    pub from: NameAddr,
    pub to: NameAddr,
    pub call_id: String,
    pub cseq: CSeq,
    pub max_forwards: Option<u32>,
    pub contacts: Vec<NameAddr>,
    pub record_route: Vec<NameAddr>,
    pub content_type: Option<MediaType>,
    pub echo: Echo,
}

/// Headers that may appear once only.
const SINGLE: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Type",
];

impl Request {
    /// Checks a framed request. On failure returns the echo headers too, for the answer.
    pub(crate) fn from_frame(frame: Frame) -> Result<Request, Box<Invalid>> {
        let echo = Echo::from_headers(&frame.headers);
        match Self::check(frame, echo.clone()) {
            Ok(request) => Ok(request),
            Err(rejection) => Err(Box::new(Invalid { rejection, echo })),
        }
    }

    fn check(frame: Frame, echo: Echo) -> Result<Request, Rejection> {
        let bad = Rejection::bad_request;
        let StartLine::Request {
            method,
            uri,
            version,
        } = frame.start
        else {
            return Err(bad("not a request"));
        };
        if let Some(defect) = frame.defect {
            return Err(bad(defect));
        }
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(Rejection {
                status: 505,
                reason: Cow::Borrowed("Version Not Supported"),
            });
        }
        let headers = frame.headers;
        for (name, reason) in [
            ("Via", "missing Via header"),
            ("From", "missing From header"),
            ("To", "missing To header"),
            ("Call-ID", "missing Call-ID header"),
            ("CSeq", "missing CSeq header"),
        ] {
            if headers.count(name) == 0 {
                return Err(bad(reason));
            }
        }
        if let Some(name) = SINGLE.iter().find(|name| headers.count(name) > 1) {
            return Err(Rejection {
                status: 400,
                reason: Cow::Owned(format!("more than one {name} header")),
            });
        }
        let one = |name| headers.first(name).unwrap_or_default();

        let cseq = CSeq::parse(one("CSeq")).map_err(bad)?;
        if cseq.method != method {
            return Err(bad("CSeq method does not match the request method"));
        }
        let mut vias = Vec::new();
        for line in headers.all("Via") {
            vias.extend(Via::parse_list(line).map_err(bad)?);
        }
        if vias.iter().any(|v| v.branch() == Some(via::MAGIC_COOKIE)) {
            return Err(bad("Via branch has the magic cookie but no identifier"));
        }
        let from = NameAddr::parse(one("From")).map_err(|_| bad("malformed From header"))?;
        let to = NameAddr::parse(one("To")).map_err(|_| bad("malformed To header"))?;
        let call_id = one("Call-ID").to_string();
        if call_id.is_empty() || call_id.contains(char::is_whitespace) {
            return Err(bad("malformed Call-ID header"));
        }
        let max_forwards = match headers.first("Max-Forwards") {
            Some(value) => Some(fields::max_forwards(value).map_err(bad)?),
            None => None,
        };
        let uri = Uri::parse(&uri).map_err(|_| bad("malformed Request-URI"))?;
        if uri.as_sip().is_some_and(|u| u.has_headers) {
            return Err(bad("Request-URI must not contain headers"));
        }
        let mut contacts = Vec::new();
        for line in headers.all("Contact") {
            if line == "*" {
                continue;
            }
            contacts
                .extend(name_addr::parse_list(line).map_err(|_| bad("malformed Contact header"))?);
        }
        let mut record_route = Vec::new();
        for line in headers.all("Record-Route") {
            record_route.extend(
                name_addr::parse_list(line).map_err(|_| bad("malformed Record-Route header"))?,
            );
        }
        let content_type = match headers.first("Content-Type") {
            Some(value) => {
                Some(MediaType::parse(value).map_err(|_| bad("malformed Content-Type header"))?)
            }
            None => None,
        };
        if content_type.is_none() && !frame.body.is_empty() {
            return Err(bad("body without Content-Type"));
        }
        Ok(Request {
            method,
            uri,
            headers,
            body: frame.body,
            vias,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            contacts,
            record_route,
            content_type,
            echo,
        })
    }

    /// The top Via (there is always one).
    pub(crate) fn top_via(&self) -> Option<&Via> {
        self.vias.first()
    }

    /// The body as text when it is an SDP body.
    pub(crate) fn sdp(&self) -> Option<String> {
        sdp_body(self.content_type.as_ref(), &self.body)
    }
}

/// A message body as text when it is a non-empty `application/sdp` body.
pub(crate) fn sdp_body(content_type: Option<&MediaType>, body: &[u8]) -> Option<String> {
    let is_sdp = content_type.is_some_and(MediaType::is_sdp);
    (is_sdp && !body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::frame::frame;
    use super::*;

    fn parse(text: &str) -> Result<Request, Box<Invalid>> {
        let f = frame(text.replace('\n', "\r\n").as_bytes()).unwrap();
        Request::from_frame(f)
    }

    const OK: &str = "OPTIONS sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:b@example.com>;tag=1\nTo: <sip:a@example.com>\nCall-ID: c1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n";

    #[test]
    fn accepts_a_plain_request() {
        let r = parse(OK).unwrap();
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.from.tag(), Some("1"));
        assert_eq!(r.cseq.seq, 1);
    }

    #[test]
    fn reports_what_is_wrong() {
        let reason = |t: String| {
            parse(&t)
                .err()
                .map(|e| (e.rejection.status, e.rejection.reason.into_owned()))
        };
        assert_eq!(
            reason(OK.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE")),
            Some((400, "CSeq method does not match the request method".into()))
        );
        assert_eq!(
            reason(OK.replace("Call-ID: c1\n", "")),
            Some((400, "missing Call-ID header".into()))
        );
        assert_eq!(
            reason(OK.replace("SIP/2.0\nVia", "SIP/7.0\nVia")),
            Some((505, "Version Not Supported".into()))
        );
        assert_eq!(
            reason(OK.replace("Call-ID: c1\n", "Call-ID: c1\nCall-ID: c2\n")),
            Some((400, "more than one Call-ID header".into()))
        );
        assert_eq!(
            reason(OK.replace("branch=z9hG4bK1", "branch=z9hG4bK")),
            Some((
                400,
                "Via branch has the magic cookie but no identifier".into()
            ))
        );
    }

    #[test]
    fn echo_survives_a_broken_request() {
        let echo = parse(&OK.replace("CSeq: 1 OPTIONS", "CSeq: x"))
            .unwrap_err()
            .echo;
        assert_eq!(
            echo.vias,
            vec!["SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1".to_string()]
        );
        assert_eq!(echo.cseq.as_deref(), Some("x"));
        assert!(!echo.to_has_tag);
    }
}
