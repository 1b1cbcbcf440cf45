//! # voxline-sip
//!
//! A sans-IO SIP user agent core (RFC 3261, RFC 3581, RFC 6026) for voice calls: it answers
//! INVITEs and places calls of its own (with Digest authentication, RFC 7616), keeps the
//! dialogs, and runs the transactions and their timers.
//! It owns no socket and reads no clock. Datagrams and time go in; datagrams, events and the
//! next deadline come out:
//!
//! ```text
//! UDP datagram --handle_datagram--> Endpoint --poll_transmit--> UDP datagram
//! Instant ------handle_timeout----> (frame -> request -> transaction -> dialog/call)
//!                                            --poll_event----> Event (IncomingCall, ...)
//! app action (answer, call, hangup) -->      --poll_timeout--> next Instant to wake up
//! ```
//!
//! A driver loop (the transport lives elsewhere, e.g. on tokio):
//!
//! ```
//! use std::time::Instant;
//! use voxline_sip::{Endpoint, EndpointConfig, Event};
//!
//! let mut endpoint = Endpoint::new(EndpointConfig::new("127.0.0.1:5060".parse().unwrap()));
//! let invite = b"INVITE sip:agent@127.0.0.1 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\r\n\
//!     From: <sip:caller@example.com>;tag=1\r\nTo: <sip:agent@example.com>\r\n\
//!     Call-ID: doc-1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5070>\r\n\
//!     Content-Length: 0\r\n\r\n";
//! endpoint.handle_datagram(Instant::now(), "127.0.0.1:5070".parse().unwrap(), invite);
//! while let Some(transmit) = endpoint.poll_transmit() {
//!     // socket.send_to(&transmit.payload, transmit.destination)
//!     assert!(transmit.payload.starts_with(b"SIP/2.0 100 Trying"));
//! }
//! while let Some(event) = endpoint.poll_event() {
//!     if let Event::IncomingCall { call, .. } = event {
//!         endpoint.answer(Instant::now(), call, "v=0\r\n").unwrap();
//!     }
//! }
//! // sleep until endpoint.poll_timeout(), then endpoint.handle_timeout(now)
//! ```
//!
//! Modules, in the order a message flows through them:
//! - `message`: framing, header parsing into typed values, printing requests and responses
//!   (via rsip);
//! - `transaction`: server and client, INVITE and non-INVITE state machines (RFC 3261 17);
//! - `dialog`: dialog identifiers, CSeq, remote target, route set, in-dialog requests (12);
//! - `digest`: answering `401`/`407` challenges (RFC 7616, MD5 and SHA-256);
//! - `call`, `uac`: one call's state, the 2xx retransmission of the core (13.3.1.4), and for
//!   a call we place, where its INVITE stands;
//! - `session_timer`: RFC 4028 session timers: the interval and refresher a call agreed on,
//!   when we refresh and when a refresh that never came ends the call;
//! - `registration`: keeping a binding at a registrar (REGISTER with Digest, refreshes,
//!   backoff, failover between destinations, removal);
//! - `transfer`, `info_dtmf`: requests we send inside a call's dialog: a blind transfer
//!   (REFER and its NOTIFYs, RFC 3515) and DTMF as INFO (`application/dtmf-relay`);
//! - `endpoint`: routing of datagrams, the RFC 8.2 checks, the application actions
//!   (`incoming`: requests we receive; `outgoing`: calls we place; `transfer`, `info`: REFER
//!   and INFO in a dialog; `session`: session refreshes and UPDATE, RFC 4028 and 3311).
//!
//! UDP and TCP are supported (TLS is not): the application cuts a TCP stream into messages
//! with [`StreamFramer`] and hands each to [`Endpoint::handle_message`]; every [`Transmit`]
//! says which transport it goes on. The core does no DNS: requests go to socket addresses,
//! which the application resolves (voxline's trunks: RFC 3263 NAPTR/SRV/A, then
//! [`RegisterRequest::destinations`] in order).

#![warn(missing_docs)]

mod call;
mod config;
mod dialog;
mod digest;
mod endpoint;
mod error;
mod event;
mod info_dtmf;
mod message;
mod registration;
mod session_timer;
mod transaction;
mod transfer;
mod transmit;
mod uac;

#[doc(hidden)]
pub mod fuzzing;

pub use config::EndpointConfig;
pub use endpoint::{Endpoint, Stats, HANGUP_BEFORE_ANSWER, RETRY_AFTER_SECS};
pub use error::SipError;
pub use event::{CallHandle, EndReason, Event, TransferUpdate};
pub use message::{StreamError, StreamFramer, StreamItem, PONG};
pub use transmit::{Transmit, Transport};
pub use registration::{RegisterRequest, RegistrationHandle, RegistrationState, RegistrationStatus};
pub use uac::{CallRequest, Credentials};
