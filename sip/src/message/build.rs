//! Writing responses and requests. Headers are rsip values (`rsip::Header`), the status line
//! and header block are printed by rsip; the values themselves are ours, copied from the
//! request as received so that nothing is lost in a parse/print round trip.

use std::borrow::Cow;
use std::net::SocketAddr;

use rsip::headers as h;

use super::request::Echo;
use crate::transmit::Transmit;

/// The methods this user agent accepts, for Allow (RFC 3261 20.5).
pub(crate) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE";
/// The body types it accepts, for Accept (RFC 3261 20.1).
pub(crate) const ACCEPT: &str = "application/sdp";

/// The standard reason phrase for a status code (RFC 3261 21).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => class_phrase(status),
    }
}

/// A phrase for codes without a standard one, by class.
fn class_phrase(status: u16) -> &'static str {
    match status / 100 {
        1 => "Progress",
        2 => "Success",
        3 => "Redirection",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    }
}

/// Keeps only characters allowed in a reason phrase or quoted text on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// A response under construction.
#[derive(Debug, Clone)]
pub(crate) struct Reply<'a> {
    status: u16,
    reason: Cow<'a, str>,
    to_tag: Option<&'a str>,
    headers: Vec<rsip::Header>,
    sdp: Option<&'a str>,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(status: u16) -> Self {
        Reply {
            status,
            reason: Cow::Borrowed(reason_phrase(status)),
            to_tag: None,
            headers: Vec::new(),
            sdp: None,
        }
    }

    /// Replaces the reason phrase (control characters are removed).
    pub(crate) fn reason(mut self, reason: &str) -> Self {
        self.reason = Cow::Owned(one_line(reason));
        self
    }

    /// The To tag to add when the request's To has none.
    pub(crate) fn tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    pub(crate) fn header(mut self, header: rsip::Header) -> Self {
        self.headers.push(header);
        self
    }

    /// An `application/sdp` body.
    pub(crate) fn sdp(mut self, sdp: &'a str) -> Self {
        self.sdp = Some(sdp);
        self
    }

    /// Prints the response to a request received from `source`.
    pub(crate) fn build(self, echo: &Echo, source: SocketAddr, server: &str) -> Transmit {
        let (vias, destination) = echo.response_vias(source);
        let mut headers = rsip::Headers::default();
        for via in vias {
            headers.push(rsip::Header::Via(h::Via::from(via)));
        }
        if let Some(from) = &echo.from {
            headers.push(rsip::Header::From(h::From::from(from.clone())));
        }
        if let Some(to) = &echo.to {
            let to = match self.to_tag {
                Some(tag) if !echo.to_has_tag => format!("{to};tag={tag}"),
                _ => to.clone(),
            };
            headers.push(rsip::Header::To(h::To::from(to)));
        }
        if let Some(call_id) = &echo.call_id {
            headers.push(rsip::Header::CallId(h::CallId::from(call_id.clone())));
        }
        if let Some(cseq) = &echo.cseq {
            headers.push(rsip::Header::CSeq(h::CSeq::from(cseq.clone())));
        }
        // RFC 3261 12.1.1: the dialog's route set goes back to the caller, so
        // its ACK and BYE pass through the proxies that record-routed.
        if echo.establishes_dialog(self.status) {
            for route in &echo.record_route {
                headers.push(rsip::Header::RecordRoute(h::RecordRoute::from(route.clone())));
            }
        }
        for header in self.headers {
            headers.push(header);
        }
        headers.push(rsip::Header::Server(h::Server::from(server.to_string())));
        let body = match self.sdp {
            Some(sdp) => {
                headers.push(rsip::Header::ContentType(h::ContentType::from(
                    "application/sdp",
                )));
                sdp.as_bytes().to_vec()
            }
            None => Vec::new(),
        };
        headers.push(rsip::Header::ContentLength(h::ContentLength::from(
            body.len().to_string(),
        )));
        let response = rsip::Response {
            status_code: rsip::StatusCode::Other(self.status, self.reason.into_owned()),
            version: rsip::Version::V2,
            headers,
            body,
        };
        Transmit {
            destination,
            transport: echo.transport,
            payload: response.to_string().into_bytes(),
        }
    }
}

/// Prints a request (the Request-URI is kept as written); `headers` end with Content-Length.
pub(crate) fn request(method: &str, uri: &str, headers: rsip::Headers, body: &str) -> Vec<u8> {
    format!("{method} {uri} SIP/2.0\r\n{headers}\r\n{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::Headers;

    fn echo() -> Echo {
        let mut headers = Headers::default();
        headers.push(
            "Via",
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport".into(),
        );
        headers.push(
            "Via",
            "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKb".into(),
        );
        headers.push("From", "<sip:a@example.com>;tag=f".into());
        headers.push("To", "<sip:b@example.com>".into());
        headers.push("Call-ID", "cid".into());
        headers.push("CSeq", "1 INVITE".into());
        Echo::from_headers(&headers)
    }

    #[test]
    fn response_copies_headers_and_stamps_via() {
        let t = Reply::new(486).tag("abc").build(
            &echo(),
            "198.51.100.2:7000".parse().unwrap(),
            "voxline/0.1",
        );
        assert_eq!(t.destination, "198.51.100.2:7000".parse().unwrap());
        let text = String::from_utf8(t.payload).unwrap();
        assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"), "{text}");
        assert!(text.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=7000;received=198.51.100.2\r\n"
        ));
        assert!(text.contains("Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKb\r\n"));
        assert!(text.contains("To: <sip:b@example.com>;tag=abc\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn record_route_is_copied_in_order_into_responses_that_establish_a_dialog() {
        let mut headers = Headers::default();
        headers.push("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa".into());
        headers.push("Record-Route", "<sip:p1.example.com;lr>".into());
        headers.push("Record-Route", "<sip:p2.example.com;lr;ftag=x>, <sip:p3.example.com;lr>".into());
        headers.push("CSeq", "1 INVITE".into());
        let echo = Echo::from_headers(&headers);
        let source = "10.0.0.1:5060".parse().unwrap();
        let ok = String::from_utf8(Reply::new(200).tag("t").build(&echo, source, "ua").payload).unwrap();
        let routes: Vec<&str> = ok.lines().filter(|l| l.starts_with("Record-Route:")).collect();
        assert_eq!(
            routes,
            ["Record-Route: <sip:p1.example.com;lr>", "Record-Route: <sip:p2.example.com;lr;ftag=x>, <sip:p3.example.com;lr>"]
        );
        let ringing = String::from_utf8(Reply::new(180).tag("t").build(&echo, source, "ua").payload).unwrap();
        assert!(ringing.contains("Record-Route: <sip:p1.example.com;lr>"));
        for status in [100, 486] {
            let text = String::from_utf8(Reply::new(status).build(&echo, source, "ua").payload).unwrap();
            assert!(!text.contains("Record-Route"), "{status}: {text}");
        }
        let mut headers = Headers::default();
        headers.push("Record-Route", "<sip:p1.example.com;lr>".into());
        headers.push("CSeq", "2 BYE".into());
        let text = String::from_utf8(Reply::new(200).build(&Echo::from_headers(&headers), source, "ua").payload).unwrap();
        assert!(!text.contains("Record-Route"), "not for requests inside a dialog: {text}");
    }

    #[test]
    fn reason_phrases_lose_line_breaks() {
        let t = Reply::new(400).reason("bad\r\nInjected: yes").build(
            &echo(),
            "10.0.0.1:5060".parse().unwrap(),
            "ua",
        );
        let text = String::from_utf8(t.payload).unwrap();
        assert!(text.starts_with("SIP/2.0 400 badInjected: yes\r\n"));
    }
}
