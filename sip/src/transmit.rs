//! What the endpoint sends: one datagram and its destination.

use std::net::SocketAddr;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The SIP message.
    pub payload: Vec<u8>,
}
