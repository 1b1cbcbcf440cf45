//! Messages on the wire: framing and header parsing for what we receive, printing (through
//! rsip) for what we send.
//!
//! Received messages are parsed by our own code rather than `rsip::SipMessage::try_from`,
//! because rsip 0.4 refuses or mangles valid messages a user agent must accept (RFC 4475):
//! it rejects unknown methods and any SIP version other than 1/2 outright, does not unfold
//! continuation lines, requires the colon right after the header name, does not expand compact
//! header names, parses a Via only in the exact `SIP/2.0/UDP host` spelling, and drops URI
//! headers. We frame the message, keep every header value as received, and parse into typed
//! values only the headers the user agent acts on.

mod build;
mod fields;
mod frame;
mod grammar;
mod headers;
mod method;
mod name_addr;
mod request;
mod response;
mod session_expires;
mod sipfrag;
mod stream;
mod subscription_state;
mod uri;
mod via;

pub(crate) use build::{one_line, request as print_request, Reply, ACCEPT, ALLOW};
pub(crate) use fields::{accept_allows, option_tags};
pub(crate) use frame::{frame, FrameError, StartLine};
pub(crate) use grammar::{is_token, split_top_level};
pub(crate) use headers::{canonical_name, Headers};
pub(crate) use method::Method;
pub(crate) use name_addr::NameAddr;
pub(crate) use request::{Echo, Rejection, Request};
pub(crate) use response::Response;
pub(crate) use session_expires::{min_se, Refresher, SessionExpires};
pub(crate) use sipfrag::FragStatus;
pub use stream::{StreamError, StreamFramer, StreamItem, PONG};
pub(crate) use subscription_state::{is_refer_event, SubState, SubscriptionState};
pub(crate) use uri::{SipUri, Uri};
pub(crate) use via::MAGIC_COOKIE;
