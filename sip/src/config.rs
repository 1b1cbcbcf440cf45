//! Endpoint configuration.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How an [`Endpoint`](crate::Endpoint) identifies itself and times its retransmissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// The address the transports (UDP, TCP) are bound to.
    pub local_addr: SocketAddr,
    /// Host and port to put in Via and Contact instead of `local_addr`: the public address
    /// when behind NAT, or when bound to a wildcard address (`0.0.0.0`), which must not be
    /// advertised.
    pub advertised: Option<(String, u16)>,
    /// Sent as `Server` in responses and `User-Agent` in requests, e.g. `voxline/0.1`.
    pub user_agent: String,
    /// T1, the round-trip estimate (RFC 3261: 500 ms).
    pub t1: Duration,
    /// T2, the retransmit interval cap (RFC 3261: 4 s).
    pub t2: Duration,
    /// Datagrams larger than this are dropped unread (65 535 covers any UDP datagram).
    pub max_message: usize,
    /// How long a 2xx waits for its ACK before the call ends (RFC 3261 13.3.1.4: 64*T1,
    /// 32 s). A server on a public address shortens it, so INVITEs that never complete
    /// the handshake (spoofed or abandoned) hold nothing for long.
    pub ack_timeout: Duration,
    /// Session timers (RFC 4028): the interval we ask for and grant, at most (whole seconds;
    /// 1800 s by default). `None` turns them off: no `Supported: timer`, a `Require: timer`
    /// gets 420, and Session-Expires is ignored.
    pub session_expires: Option<Duration>,
    /// The shortest session interval we accept (Min-SE; RFC 4028's 90 s by default): a
    /// shorter Session-Expires gets `422` with this Min-SE.
    pub min_se: Duration,
}

impl EndpointConfig {
    /// The RFC 3261 defaults (T1 500 ms, T2 4 s, ACK timeout 64*T1), 64 KiB messages,
    /// `voxline/0.1`.
    pub fn new(local_addr: SocketAddr) -> Self {
        EndpointConfig {
            local_addr,
            advertised: None,
            user_agent: "voxline/0.1".to_string(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            max_message: 64 * 1024,
            ack_timeout: Duration::from_secs(32),
            session_expires: Some(Duration::from_secs(1800)),
            min_se: Duration::from_secs(90),
        }
    }

    /// `host:port` for Via sent-by and the Contact URI (IPv6 in brackets).
    pub(crate) fn host_port(&self) -> String {
        match &self.advertised {
            Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{port}")
            }
            Some((host, port)) => format!("{host}:{port}"),
            None => match self.local_addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]:{}", self.local_addr.port()),
                IpAddr::V4(ip) => format!("{ip}:{}", self.local_addr.port()),
            },
        }
    }

    /// The session-timer policy in whole seconds.
    pub(crate) fn session_policy(&self) -> crate::session_timer::Policy {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1);
        crate::session_timer::Policy {
            interval: self.session_expires.map(|d| secs(d).max(secs(self.min_se))),
            min_se: secs(self.min_se),
        }
    }

    /// Our Contact header value (UDP).
    pub(crate) fn contact(&self) -> String {
        self.contact_on(crate::Transport::Udp)
    }

    /// Our Contact header value for messages on `transport`: `;transport=tcp` over TCP.
    pub(crate) fn contact_on(&self, transport: crate::Transport) -> String {
        match transport {
            crate::Transport::Udp => format!("<sip:{}>", self.host_port()),
            other => format!("<sip:{};transport={}>", self.host_port(), other.param()),
        }
    }
}
