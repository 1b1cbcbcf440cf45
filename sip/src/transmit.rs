//! What the endpoint sends: one message, its destination and the transport to send it on.

use std::net::SocketAddr;

/// The transport a message arrived on or is sent on (RFC 3261 18). TLS is not supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Transport {
    /// One message per datagram; the transactions retransmit.
    #[default]
    Udp,
    /// A byte stream framed by Content-Length ([`StreamFramer`](crate::StreamFramer)); the
    /// transactions rely on it and do not retransmit (RFC 3261 17).
    Tcp,
}

impl Transport {
    /// Whether the transport delivers reliably: no retransmission timers (A, E, G), and no
    /// waiting for retransmissions (D, I, J, K are zero).
    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }

    /// The name in a Via (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The value of a URI's `transport` parameter, lower case (`udp`, `tcp`).
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    /// Reads a `transport` parameter or Via protocol name (case-insensitive); `None` for the
    /// ones not supported.
    pub fn parse(name: &str) -> Option<Transport> {
        if name.eq_ignore_ascii_case("udp") {
            Some(Transport::Udp)
        } else if name.eq_ignore_ascii_case("tcp") {
            Some(Transport::Tcp)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.param())
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it. Over TCP: the connection with this peer address, or a new one to it.
    pub destination: SocketAddr,
    /// The transport: a response goes back on the one its request came on (RFC 3261 18.2.2).
    pub transport: Transport,
    /// The SIP message.
    pub payload: Vec<u8>,
}
