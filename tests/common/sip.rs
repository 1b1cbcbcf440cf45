//! Harness for the SIP call tests (tests/sip_calls.rs and the other call
//! tests): the server under test, sipp as the calling peer, a raw SIP socket,
//! an RTP receiver and the analysis of what it received (timing, sequence,
//! audio, transcription). Each part is a module of its own; this one
//! re-exports them all, for `use common::sip::*`.
//!
//! * [`Server`] (server.rs) runs `voxline serve` on loopback ports the OS
//!   picks, waits for its `ready sip=… http=…` line, keeps its stderr in a
//!   file and prints it when a test fails; it is killed on drop.
//! * [`http_get`] / [`http_post`] (http.rs): a tiny blocking HTTP/1.1 client
//!   (std only).
//! * [`Sipp`] / [`run_sipp`] (sipp.rs): one sipp call from a scenario in
//!   tests/sipp/, bounded in time, with its message log parsed
//!   ([`SippResult::messages`]).
//! * [`RtpCapture`] (rtp.rs): a UDP socket the offers point at; a thread
//!   records every datagram with its arrival time. [`RtpAnalysis`] judges them.
//! * [`SipSocket`] + [`Request`] (sip_socket.rs): hand-written SIP over a plain
//!   UDP socket; [`SipMessage`] and [`Sdp`] (sip_message.rs) parse what comes
//!   back.
//! * [`transcribe_8k`] (asr.rs): PCMU-decoded 8 kHz audio -> 16 kHz ->
//!   pocketsphinx.
//! * [`shared_slot`] / [`exclusive_slot`] (slots.rs): timing-sensitive tests
//!   run alone; harness.rs: scratch directories, log tails, tool checks.
//!
//! Everything here is bounded in time: no wait is open-ended.
#![allow(unused_imports)] // not every test binary uses every part

pub use super::asr::*;
pub use super::harness::*;
pub use super::http::*;
pub use super::rtp::*;
pub use super::server::*;
pub use super::sip_message::*;
pub use super::sip_socket::*;
pub use super::sipp::*;
pub use super::slots::*;
