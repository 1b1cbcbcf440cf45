//! Dialogs (RFC 3261 12), ours as UAS (an INVITE we answer, 12.1.1) or as UAC (an INVITE we
//! send, 12.1.2): identifiers, sequence numbers, remote target and route set, and building
//! requests inside them (12.2.1.1).

use std::net::SocketAddr;

use rsip::headers as h;

use crate::config::EndpointConfig;
use crate::message::{self, NameAddr, Request, Response, Uri};
use crate::transmit::{Transmit, Transport};

/// Identifies a dialog from our side: Call-ID, our tag (To of their requests), their tag
/// (From of their requests; empty for RFC 2543 peers without one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an in-dialog request claims to belong to.
    pub(crate) fn of_request(request: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: request.call_id.clone(),
            local_tag: request.to.tag()?.to_string(),
            remote_tag: request.from.tag().unwrap_or_default().to_string(),
        })
    }
}

/// A dialog: created by an incoming INVITE, or prepared for an INVITE we send and established
/// by its 2xx.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub id: DialogId,
    /// Our address with our tag: the To of our responses, the From of our requests.
    pub local_party: String,
    /// Their address with their tag: the From of their requests, the To of ours.
    pub remote_party: String,
    /// Our last CSeq (random start, RFC 3261 8.1.1.5).
    pub local_seq: u32,
    /// Their last CSeq; lower or equal numbers are refused with 500 (12.2.2).
    pub remote_seq: u32,
    /// Where our requests go: their Contact (12.1.1, 12.1.2), or From for RFC 2543 peers with
    /// none; the Request-URI of our INVITE until its 2xx.
    pub remote_target: Uri,
    /// Record-Route of the INVITE, in order (12.1.1), or of the 2xx to ours, reversed (12.1.2).
    pub route_set: Vec<NameAddr>,
    /// The address the INVITE came from, or the one we sent ours to.
    pub peer: SocketAddr,
    /// Without a route set, requests go to `peer`: the caller's top Via asked for `rport`
    /// (RFC 3581: symmetric signalling, typically behind NAT), or our INVITE is unanswered.
    pub symmetric: bool,
    /// The transport the dialog was set up on: our requests use it unless the next hop's URI
    /// names another (`;transport=tcp`).
    pub transport: Transport,
}

/// What a request carries besides the dialog's own headers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    /// Replaces the remote party in To (the ACK of an error response carries its To tag).
    pub to: Option<&'a str>,
    /// Headers after CSeq: Contact, credentials, the application's own.
    pub headers: &'a [rsip::Header],
    /// A body: its Content-Type and text (`application/sdp`, `application/dtmf-relay`).
    pub body: Option<Body<'a>>,
}

/// A request body and its type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Body<'a> {
    pub content_type: &'a str,
    pub text: &'a str,
}

impl<'a> Body<'a> {
    pub(crate) fn sdp(text: &'a str) -> Self {
        Body {
            content_type: "application/sdp",
            text,
        }
    }
}

impl Dialog {
    /// The dialog for an INVITE we are about to answer, with our tag.
    pub(crate) fn from_invite(
        invite: &Request,
        local_tag: &str,
        source: SocketAddr,
        local_seq: u32,
    ) -> Dialog {
        let to = invite.echo.to.clone().unwrap_or_default();
        let remote_target = invite
            .contacts
            .first()
            .map_or_else(|| invite.from.uri.clone(), |c| c.uri.clone());
        let symmetric = invite.top_via().is_some_and(|v| {
            v.params
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("rport"))
        });
        Dialog {
            id: DialogId {
                call_id: invite.call_id.clone(),
                local_tag: local_tag.to_string(),
                remote_tag: invite.from.tag().unwrap_or_default().to_string(),
            },
            local_party: format!("{to};tag={local_tag}"),
            remote_party: invite.echo.from.clone().unwrap_or_default(),
            local_seq,
            remote_seq: invite.cseq.seq,
            remote_target,
            route_set: invite.record_route.clone(),
            peer: source,
            symmetric,
            transport: invite.echo.transport,
        }
    }

    /// The dialog an INVITE we send will create (12.1.2), known but for the callee's tag, its
    /// Contact and the route set until the 2xx. `from` and `to` are name-addr header values.
    pub(crate) fn for_outgoing(
        call_id: String,
        local_tag: &str,
        from: &str,
        to: &str,
        request_uri: Uri,
        destination: SocketAddr,
        local_seq: u32,
    ) -> Dialog {
        Dialog {
            id: DialogId {
                call_id,
                local_tag: local_tag.to_string(),
                remote_tag: String::new(),
            },
            local_party: format!("{from};tag={local_tag}"),
            remote_party: to.to_string(),
            local_seq,
            remote_seq: 0,
            remote_target: request_uri,
            route_set: Vec::new(),
            peer: destination,
            symmetric: true,
            transport: Transport::Udp,
        }
    }

    /// The 2xx to our INVITE establishes the dialog (12.1.2): the callee's tag and To, its
    /// Contact as the remote target, its Record-Route reversed as the route set.
    pub(crate) fn establish(&mut self, response: &Response) {
        self.id.remote_tag = response.to_tag.clone().unwrap_or_default();
        self.remote_party = response.to.clone();
        if let Some(contact) = response.contacts.first() {
            self.remote_target = contact.uri.clone();
        }
        self.route_set = response.record_route.iter().rev().cloned().collect();
        self.symmetric = false;
    }

    /// True when `seq` is higher than the last CSeq from the remote party (12.2.2).
    pub(crate) fn in_order(&self, seq: u32) -> bool {
        seq > self.remote_seq
    }

    /// Accepts the CSeq of a new in-dialog request: it must be higher than the last one.
    pub(crate) fn accept_remote_seq(&mut self, seq: u32) -> bool {
        if self.in_order(seq) {
            self.remote_seq = seq;
            true
        } else {
            false
        }
    }

    /// A target refresh (re-INVITE) replaces the remote target with its Contact (12.2.2).
    pub(crate) fn refresh_target(&mut self, request: &Request) {
        if let Some(contact) = request.contacts.first() {
            self.remote_target = contact.uri.clone();
        }
    }

    /// Builds the next request in the dialog (12.2.1.1): CSeq incremented.
    pub(crate) fn request(
        &mut self,
        method: &str,
        branch: &str,
        extra: Extra<'_>,
        config: &EndpointConfig,
    ) -> (Transmit, u32) {
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        (
            self.build(method, self.local_seq, branch, extra, config),
            self.local_seq,
        )
    }

    /// Prints a request of the dialog with CSeq number `cseq` (the same as the INVITE's for
    /// its ACK and CANCEL): Route from the route set (loose routing; strict routing when the
    /// first route lacks `lr`), then `extra`.
    pub(crate) fn build(
        &self,
        method: &str,
        cseq: u32,
        branch: &str,
        extra: Extra<'_>,
        config: &EndpointConfig,
    ) -> Transmit {
        let loose = self
            .route_set
            .first()
            .is_none_or(|r| r.uri.as_sip().is_some_and(|u| u.is_loose_route()));
        let (uri, routes): (&str, Vec<String>) = match self.route_set.split_first() {
            None => (self.remote_target.as_str(), Vec::new()),
            Some(_) if loose => (
                self.remote_target.as_str(),
                self.route_set.iter().map(NameAddr::route_value).collect(),
            ),
            Some((first, rest)) => {
                let mut routes: Vec<String> = rest.iter().map(NameAddr::route_value).collect();
                routes.push(format!("<{}>", self.remote_target.as_str()));
                (first.uri.as_str(), routes)
            }
        };
        let transport = self.next_transport();
        let mut headers = rsip::Headers::default();
        headers.push(rsip::Header::Via(h::Via::from(format!(
            "SIP/2.0/{} {};branch={branch};rport",
            transport.via_name(),
            config.host_port()
        ))));
        headers.push(rsip::Header::MaxForwards(h::MaxForwards::from("70")));
        for route in routes {
            headers.push(rsip::Header::Route(h::Route::from(route)));
        }
        headers.push(rsip::Header::From(h::From::from(self.local_party.clone())));
        let to = extra.to.unwrap_or(&self.remote_party);
        headers.push(rsip::Header::To(h::To::from(to.to_string())));
        headers.push(rsip::Header::CallId(h::CallId::from(
            self.id.call_id.clone(),
        )));
        headers.push(rsip::Header::CSeq(h::CSeq::from(format!(
            "{cseq} {method}"
        ))));
        for header in extra.headers {
            headers.push(header.clone());
        }
        headers.push(rsip::Header::UserAgent(h::UserAgent::from(
            config.user_agent.clone(),
        )));
        let body = extra.body.map_or("", |b| b.text);
        if let Some(b) = extra.body {
            headers.push(rsip::Header::ContentType(h::ContentType::from(
                b.content_type,
            )));
        }
        headers.push(rsip::Header::ContentLength(h::ContentLength::from(
            body.len().to_string(),
        )));
        Transmit {
            destination: self.next_hop(),
            transport,
            payload: message::print_request(method, uri, headers, body),
        }
    }

    /// The transport of our next request: the one the next hop's URI (first route, or remote
    /// target without a route set) names, else the dialog's. A transport we cannot use
    /// (`tls`) falls back to the dialog's.
    fn next_transport(&self) -> Transport {
        let uri = self.route_set.first().map_or(&self.remote_target, |r| &r.uri);
        uri.as_sip()
            .and_then(|sip| sip.transport().flatten())
            .unwrap_or(self.transport)
    }

    /// Our Contact for this dialog: with `;transport=tcp` when it runs over TCP, so the
    /// peer's in-dialog requests come back over TCP.
    pub(crate) fn contact(&self, config: &EndpointConfig) -> String {
        config.contact_on(self.transport)
    }

    /// Where requests in this dialog go. No DNS here: the first route (or the remote target
    /// when there is no route set) is used when its host is an IP address; otherwise, and
    /// when `symmetric` holds without a route set, `peer`.
    fn next_hop(&self) -> SocketAddr {
        let uri = match self.route_set.first() {
            Some(route) => &route.uri,
            None if self.symmetric => return self.peer,
            None => &self.remote_target,
        };
        uri.as_sip()
            .and_then(|sip| {
                let ip = sip.host.ip()?;
                let default = if sip.secure { 5061 } else { 5060 };
                Some(SocketAddr::new(ip, sip.port.unwrap_or(default)))
            })
            .unwrap_or(self.peer)
    }
}
