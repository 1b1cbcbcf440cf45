//! A received response, read leniently: only what a client transaction and the user agent act
//! on (RFC 3261 8.1.3, 13.2.2, 12.1.2, 22.2) is parsed, and a header that does not parse is
//! treated as absent rather than losing the response.

use super::fields::{CSeq, MediaType};
use super::frame::{Frame, StartLine};
use super::headers::Headers;
use super::name_addr::{self, NameAddr};
use super::via::Via;

/// A response to one of our requests.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// The top Via's branch: which client transaction it answers (17.1.3).
    pub branch: Option<String>,
    pub cseq: Option<CSeq>,
    /// The To header as received (with the callee's tag on a 2xx).
    pub to: String,
    pub to_tag: Option<String>,
    pub contacts: Vec<NameAddr>,
    pub record_route: Vec<NameAddr>,
    pub content_type: Option<MediaType>,
}

impl Response {
    /// Reads a framed response; `None` for a request.
    pub(crate) fn from_frame(frame: Frame) -> Option<Response> {
        let StartLine::Response { code, reason } = frame.start else {
            return None;
        };
        let headers = frame.headers;
        let branch = headers
            .first("Via")
            .and_then(|v| Via::parse_list(v).ok())
            .and_then(|vias| vias.into_iter().next())
            .and_then(|via| via.branch().map(str::to_string));
        let list = |name| -> Vec<NameAddr> {
            headers
                .all(name)
                .filter_map(|line| name_addr::parse_list(line).ok())
                .flatten()
                .collect()
        };
        let to = headers.first("To").unwrap_or_default().to_string();
        Some(Response {
            status: code,
            reason,
            branch,
            cseq: headers.first("CSeq").and_then(|c| CSeq::parse(c).ok()),
            to_tag: NameAddr::parse(&to)
                .ok()
                .and_then(|t| t.tag().map(str::to_string)),
            to,
            contacts: list("Contact"),
            record_route: list("Record-Route"),
            content_type: headers
                .first("Content-Type")
                .and_then(|c| MediaType::parse(c).ok()),
            body: frame.body,
            headers,
        })
    }

    /// The body as text when it is an SDP body.
    pub(crate) fn sdp(&self) -> Option<String> {
        super::request::sdp_body(self.content_type.as_ref(), &self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::frame;
    use super::*;

    #[test]
    fn reads_what_the_client_acts_on_and_shrugs_off_the_rest() {
        let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx;rport=5060\r\n\
            To: <sip:bob@192.0.2.1>;tag=b1\r\nCSeq: 7 INVITE\r\n\
            Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRecord-Route: <sip:p3;lr>\r\n\
            Contact: not an address\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";
        let r = Response::from_frame(frame(text.as_bytes()).unwrap()).unwrap();
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.branch.as_deref(), Some("z9hG4bKx"));
        assert_eq!(r.cseq.as_ref().map(|c| c.seq), Some(7));
        assert_eq!(r.to_tag.as_deref(), Some("b1"));
        assert_eq!(r.record_route.len(), 3);
        assert!(r.contacts.is_empty());
        assert_eq!(r.sdp().as_deref(), Some("v=0\n"));
    }
}
