//! SDP offer/answer for voxline's telephony calls.
//!
//! A SIP peer (carrier trunk, softphone, sipp, Twilio) sends an SDP offer; voxline answers
//! with G.711 (PCMU preferred, else PCMA) at 8 kHz plus RFC 4733 telephone-event.
//!
//! The flow, in the order the modules are used:
//!
//! 1. [`SessionDescription::parse`] — the offer's text into typed values (RFC 8866, formerly
//!    RFC 4566). Lenient with real-world bodies (CRLF or LF, stray whitespace, unknown lines
//!    and attributes, missing `s=`/`t=`), strict about what voxline relies on, and it never
//!    panics.
//! 2. [`negotiate`] — picks the audio stream, codec, telephone-event payload type, remote
//!    addresses, packet time and direction under an [`AnswerPolicy`].
//! 3. [`build_answer`] — the answer's text (RFC 3264 §6): one `m=` line per offered line,
//!    every line but the accepted one rejected with port 0.
//!
//! [`build_offer`] writes voxline's own offer for outbound calls.
//!
//! Nothing here does I/O.

mod answer;
mod codec;
mod connection;
mod direction;
mod media;
mod negotiate;
mod rtpmap;
mod session;

pub use answer::{build_answer, build_offer, LocalMedia, SESSION_NAME};
pub use codec::{Codec, DEFAULT_TELEPHONE_EVENT_PT, TELEPHONE_EVENT, TELEPHONE_EVENT_FMTP};
pub use direction::Direction;
pub use media::MediaDescription;
pub use negotiate::{
    negotiate, AnswerPolicy, NegotiateError, Negotiated, DEFAULT_PTIME,
};
pub use rtpmap::RtpMap;
pub use session::{Origin, SdpError, SessionDescription};
