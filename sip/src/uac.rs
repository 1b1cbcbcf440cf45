//! A call we place: what the application asks for ([`CallRequest`], [`Credentials`]), and
//! where its INVITE stands ([`Uac`]: the current attempt, the credentials sent, CANCEL, the ACK
//! of the 2xx). The endpoint drives it (`endpoint/outgoing.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::headers as h;

use crate::config::EndpointConfig;
use crate::dialog::{Dialog, Extra};
use crate::error::SipError;
use crate::message::{self, NameAddr, Uri};
use crate::transmit::{Transmit, Transport};

/// A username and password for Digest authentication (RFC 7616), given per call.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username, as the server knows it.
    pub username: String,
    /// The password; never logged.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// A call to place with [`Endpoint::call`](crate::Endpoint::call).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CallRequest {
    /// Who is called: the Request-URI, e.g. `sip:+15551234567@192.0.2.1:5060`.
    pub request_uri: String,
    /// Where the INVITE goes: the callee's address, or an outbound proxy's. No DNS here: the
    /// application resolves names (RFC 3263) and gives the address.
    pub destination: SocketAddr,
    /// The To header value; `<request_uri>` by default.
    pub to: String,
    /// The From header value without a tag (ours is added); `<sip:voxline@HOST:PORT>` with
    /// our advertised address when `None`.
    pub from: Option<String>,
    /// The Contact header value; our own address when `None`.
    pub contact: Option<String>,
    /// More headers for the INVITE, e.g. `("X-Campaign", "42")`, in order. The headers the
    /// endpoint writes itself (Via, From, To, Call-ID, CSeq, Contact, ...) are refused.
    pub headers: Vec<(String, String)>,
    /// The SDP offer the INVITE carries.
    pub sdp_offer: String,
    /// For a `401`/`407` challenge. Without them a challenge fails the call.
    pub credentials: Option<Credentials>,
    /// Give up when no final response came this long after the INVITE: CANCEL, and the call
    /// fails with 408. `None`: ring for as long as the callee does.
    pub ring_timeout: Option<Duration>,
    /// Where the INVITE goes next, in order, when `destination` (then each of these) sends
    /// no response at all within `failover_after` (RFC 3263 4.3): a new INVITE (new branch,
    /// next CSeq) to the next address.
    pub alternates: Vec<SocketAddr>,
    /// How long an address may stay silent before the next alternate is tried (64*T1, Timer B,
    /// at most).
    pub failover_after: Duration,
    /// The transport the INVITE and the call's requests go on (UDP by default); over TCP our
    /// Via says `SIP/2.0/TCP` and our Contact `;transport=tcp`.
    pub transport: Transport,
}

impl CallRequest {
    /// A call to `request_uri`, sent to `destination`, offering `sdp_offer`.
    pub fn new(
        request_uri: impl Into<String>,
        destination: SocketAddr,
        sdp_offer: impl Into<String>,
    ) -> Self {
        let request_uri = request_uri.into();
        CallRequest {
            to: format!("<{request_uri}>"),
            request_uri,
            destination,
            from: None,
            contact: None,
            headers: Vec::new(),
            sdp_offer: sdp_offer.into(),
            credentials: None,
            ring_timeout: None,
            alternates: Vec::new(),
            failover_after: Duration::from_secs(32),
            transport: Transport::Udp,
        }
    }

    /// A call sent straight to the host of `uri`, a `sip:` URI whose host is an IP address
    /// (port 5060 when it names none).
    pub fn direct(uri: &str, sdp_offer: impl Into<String>) -> Result<Self, SipError> {
        let sip = sip_uri(uri)?;
        let Some(ip) = sip.host.ip() else {
            return Err(invalid(format!(
                "`{}` is a host name; a direct call goes to IP addresses only (the endpoint does no DNS): \
                 resolve it first, or call through a trunk whose host it is",
                sip.host
            )));
        };
        Ok(CallRequest::new(
            uri,
            SocketAddr::new(ip, sip.port.unwrap_or(5060)),
            sdp_offer,
        ))
    }

    /// Checks the request and returns what every INVITE of the call carries: the
    /// Request-URI, the From value and the headers after CSeq (Contact, Allow, the
    /// application's).
    pub(crate) fn checked(
        &self,
        config: &EndpointConfig,
    ) -> Result<(Uri, String, Vec<rsip::Header>), SipError> {
        let uri = Uri::Sip(sip_uri(&self.request_uri)?);
        NameAddr::parse(&self.to).map_err(|e| invalid(format!("To `{}`: {e}", self.to)))?;
        let from = self
            .from
            .clone()
            .unwrap_or_else(|| format!("<sip:voxline@{}>", config.host_port()));
        let parsed = NameAddr::parse(&from).map_err(|e| invalid(format!("From `{from}`: {e}")))?;
        if parsed.tag().is_some() {
            return Err(invalid(format!(
                "From `{from}` has a tag; the endpoint adds its own"
            )));
        }
        let contact = self
            .contact
            .clone()
            .unwrap_or_else(|| config.contact_on(self.transport));
        NameAddr::parse(&contact).map_err(|e| invalid(format!("Contact `{contact}`: {e}")))?;
        let mut headers = vec![
            rsip::Header::Contact(h::Contact::from(contact)),
            rsip::Header::Allow(h::Allow::from(message::ALLOW)),
        ];
        for (name, value) in &self.headers {
            let canonical = message::canonical_name(name);
            if !message::is_token(name) || RESERVED.contains(&canonical.as_str()) {
                return Err(invalid(format!("header `{name}` cannot be set (a name the endpoint writes itself, or not a token)")));
            }
            if message::one_line(value) != *value {
                return Err(invalid(format!(
                    "header `{name}` has control characters in its value"
                )));
            }
            headers.push(rsip::Header::Other(name.clone(), value.clone()));
        }
        Ok((uri, from, headers))
    }
}

/// Headers the endpoint writes into an INVITE itself.
const RESERVED: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Contact",
    "Route",
    "Record-Route",
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "User-Agent",
    "Allow",
    "Authorization",
    "Proxy-Authorization",
];

fn invalid(reason: String) -> SipError {
    SipError::InvalidCallRequest(reason)
}

/// A `sip:` URI fit for a Request-URI (no `sips:`: UDP only).
fn sip_uri(uri: &str) -> Result<message::SipUri, SipError> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(sip)) if sip.secure => Err(invalid(format!(
            "`{uri}` is a sips: URI; only sip: over UDP is supported"
        ))),
        Ok(Uri::Sip(sip)) if sip.has_headers => Err(invalid(format!(
            "`{uri}` has ?headers, not allowed in a Request-URI"
        ))),
        Ok(Uri::Sip(sip)) => Ok(sip),
        Ok(Uri::Other(_)) => Err(invalid(format!("`{uri}` is not a sip: URI"))),
        Err(e) => Err(invalid(format!("`{uri}`: {e}"))),
    }
}

/// An `Authorization` or `Proxy-Authorization` value we send, per realm.
#[derive(Debug, Clone)]
pub(crate) struct Authorization {
    /// Answers a `407` (Proxy-Authorization) rather than a `401`.
    pub proxy: bool,
    pub realm: String,
    pub nonce: String,
    /// Requests sent with this nonce.
    pub nc: u32,
    /// A `stale=true` challenge was answered once already.
    pub stale_retried: bool,
    pub value: String,
}

impl Authorization {
    pub(crate) fn header(&self) -> rsip::Header {
        if self.proxy {
            rsip::Header::ProxyAuthorization(h::ProxyAuthorization::from(self.value.clone()))
        } else {
            rsip::Header::Authorization(h::Authorization::from(self.value.clone()))
        }
    }
}

/// Where a call we placed stands, besides its dialog.
#[derive(Debug)]
pub(crate) struct Uac {
    /// The current INVITE (the first, or the one with credentials): its branch, reused by its
    /// CANCEL and by the ACK of an error response, and its CSeq.
    pub branch: String,
    pub cseq: u32,
    /// What every INVITE of the call carries after CSeq (credentials come on top).
    pub headers: Vec<rsip::Header>,
    pub sdp_offer: String,
    pub credentials: Option<Credentials>,
    /// The credentials of the current INVITE; the ACK of its 2xx carries them too (22.4).
    pub authorization: Vec<Authorization>,
    /// The current INVITE got a provisional response, so CANCEL may go out (9.1).
    pub provisional: bool,
    /// The last provisional status reported to the application.
    pub reported: Option<u16>,
    pub cancel_sent: bool,
    pub ring_timeout: Option<Duration>,
    /// Why the call fails when we gave up on it ourselves (the ring timeout).
    pub failure: Option<(u16, String)>,
    /// The ACK of the 2xx, sent again for each retransmission of it (13.2.2.4).
    pub ack: Option<Transmit>,
    /// Other forks' 2xx (their To tag) and our ACK to each; they got BYE.
    pub forks: Vec<(String, Transmit)>,
    /// The ring timeout; after CANCEL, the 64*T1 wait for the INVITE's final response (9.1).
    pub give_up: Option<Instant>,
    /// Addresses not tried yet, and when the current one counts as silent.
    pub alternates: std::collections::VecDeque<SocketAddr>,
    pub failover_after: Duration,
    pub failover_at: Option<Instant>,
}

impl Uac {
    pub(crate) fn new(now: Instant, headers: Vec<rsip::Header>, request: CallRequest) -> Self {
        Uac {
            branch: String::new(),
            cseq: 0,
            headers,
            sdp_offer: request.sdp_offer,
            credentials: request.credentials,
            authorization: Vec::new(),
            provisional: false,
            reported: None,
            cancel_sent: false,
            ring_timeout: request.ring_timeout,
            failure: None,
            ack: None,
            forks: Vec::new(),
            give_up: request.ring_timeout.map(|d| now + d),
            alternates: request.alternates.into_iter().collect(),
            failover_after: request.failover_after,
            failover_at: None,
        }
    }

    /// The credentials headers of the current INVITE.
    pub(crate) fn credentials_headers(&self) -> Vec<rsip::Header> {
        self.authorization
            .iter()
            .map(Authorization::header)
            .collect()
    }

    /// The ACK of a 2xx establishing `dialog` (13.2.2.4): a request of the dialog on a new
    /// branch, with the INVITE's CSeq number and credentials.
    pub(crate) fn ack_2xx(
        &self,
        dialog: &Dialog,
        branch: &str,
        config: &EndpointConfig,
    ) -> Transmit {
        let credentials = self.credentials_headers();
        let extra = Extra {
            headers: &credentials,
            ..Extra::default()
        };
        dialog.build("ACK", self.cseq, branch, extra, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_calls_need_an_ip_address() {
        let r = CallRequest::direct("sip:+15551234567@192.0.2.1", "v=0").unwrap();
        assert_eq!(r.destination, "192.0.2.1:5060".parse().unwrap());
        assert_eq!(r.to, "<sip:+15551234567@192.0.2.1>");
        let r = CallRequest::direct("sip:bob@[2001:db8::1]:5080;transport=udp", "v=0").unwrap();
        assert_eq!(r.destination, "[2001:db8::1]:5080".parse().unwrap());
        let e = CallRequest::direct("sip:bob@pbx.example.com", "v=0").unwrap_err();
        assert!(e.to_string().contains("IP addresses only"), "{e}");
        assert!(CallRequest::direct("sips:bob@192.0.2.1", "v=0").is_err());
        assert!(CallRequest::direct("tel:+15551234567", "v=0").is_err());
        assert!(CallRequest::direct("sip:bob@192.0.2.1:99999", "v=0").is_err());
    }

    #[test]
    fn headers_the_endpoint_writes_are_refused() {
        let config = EndpointConfig::new("192.0.2.10:5060".parse().unwrap());
        let mut r = CallRequest::direct("sip:bob@192.0.2.1", "v=0").unwrap();
        r.headers = vec![("X-Campaign".into(), "42".into())];
        let (_, from, headers) = r.checked(&config).unwrap();
        assert_eq!(from, "<sip:voxline@192.0.2.10:5060>");
        assert_eq!(headers.last().unwrap().to_string(), "X-Campaign: 42");
        for (name, value) in [
            ("call-id", "x"),
            ("i", "x"),
            ("X Bad", "x"),
            ("X-Ok", "a\r\nVia: evil"),
        ] {
            r.headers = vec![(name.into(), value.into())];
            assert!(r.checked(&config).is_err(), "{name}: {value}");
        }
        r.headers.clear();
        r.from = Some("<sip:a@b>;tag=1".into());
        assert!(r.checked(&config).is_err());
    }
}
