//! RTP/RTCP port pairs from a configured range.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Hands out (RTP, RTCP) socket pairs on an even port and the odd one above it.
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    low: u16,
    high: u16,
}

impl PortAllocator {
    /// `low..=high`; an odd `low` is rounded up. Port 0 as `low` lets the OS
    /// pick (RTCP then on any free port).
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = if low % 2 == 1 { low.saturating_add(1) } else { low };
        Self { ip, low, high }
    }

    /// Binds a free pair (non-blocking sockets).
    pub fn allocate(&self) -> io::Result<(UdpSocket, UdpSocket)> {
        if self.low == 0 {
            let rtp = UdpSocket::bind(SocketAddr::new(self.ip, 0))?;
            let rtcp = UdpSocket::bind(SocketAddr::new(self.ip, 0))?;
            return Self::ready(rtp, rtcp);
        }
        let pairs = ((self.high.saturating_sub(self.low)) as u32 / 2).max(1);
        // A random pair each time: the next call's port cannot be guessed
        // from the last one's (the rest of the range is tried after it).
        let start = rand::random::<u32>() % pairs;
        for k in 0..pairs {
            let i = (start + k) % pairs;
            let port = self.low as u32 + 2 * i;
            let Ok(port) = u16::try_from(port) else { continue };
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(self.ip, port)) else { continue };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.ip, port + 1)) else { continue };
            return Self::ready(rtp, rtcp);
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, format!("no free RTP port pair in {}-{}", self.low, self.high)))
    }

    fn ready(rtp: UdpSocket, rtcp: UdpSocket) -> io::Result<(UdpSocket, UdpSocket)> {
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        Ok((rtp, rtcp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_adjacent_and_distinct() {
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), 41000, 41100);
        let (a, ac) = alloc.allocate().unwrap();
        let (b, _bc) = alloc.allocate().unwrap();
        let (pa, pac) = (a.local_addr().unwrap().port(), ac.local_addr().unwrap().port());
        assert_eq!(pa % 2, 0);
        assert_eq!(pac, pa + 1);
        assert_ne!(pa, b.local_addr().unwrap().port());
    }

    #[test]
    fn successive_pairs_are_not_in_order() {
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), 42000, 42998);
        let held: Vec<_> = (0..8).map(|_| alloc.allocate().unwrap()).collect();
        let ports: Vec<u16> = held.iter().map(|(r, _)| r.local_addr().unwrap().port()).collect();
        let ascending_by_two = ports.windows(2).all(|w| w[1] == w[0] + 2);
        assert!(!ascending_by_two, "the next call's port is not the last one's + 2: {ports:?}");
    }

    #[test]
    fn an_exhausted_range_is_an_error() {
        let alloc = PortAllocator::new("127.0.0.1".parse().unwrap(), 41200, 41201);
        let _held = alloc.allocate().unwrap();
        assert!(alloc.allocate().is_err());
    }
}
