//! Where a call's packets go: the pacer hands each one to the call's leg.
//!
//! - [`MediaLeg::Udp`]: a SIP call's RTP and RTCP sockets; the pacer sends
//!   on them directly (non-blocking). The RTP socket is `connect()`ed to the
//!   caller's media address once that address is the only one accepted
//!   ([`MediaLeg::connect_rtp`], decided by the call): a connected socket's
//!   sends take its cached route instead of a route lookup per `sendto`
//!   (BENCHMARKS.md, "Connected RTP sockets"), and the kernel then drops
//!   datagrams from other addresses before they reach us.
//! - [`MediaLeg::Track`]: a browser's WebRTC track, or a Twilio Media
//!   Stream's WebSocket. The pacer puts the packet in a fixed-size queue (no
//!   allocation, no waiting: a full queue drops its oldest packet) and wakes
//!   the task that writes it on (SRTP on the track, or its payload as a
//!   `media` message; on the tokio runtime). Our RTCP is not sent there: the
//!   WebRTC stack reports for itself, and Twilio's stream has none.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::rtp_out::PACKET_LEN;

/// Packets a track leg holds for its writer (200 ms): the writer normally
/// takes each within a millisecond.
pub const TRACK_QUEUE: usize = 10;

/// A call's way out.
#[derive(Debug)]
pub enum MediaLeg {
    /// `local`: the RTP socket's address as bound (connecting may fill in
    /// the IP of a socket bound to the wildcard address).
    Udp { rtp: UdpSocket, rtcp: UdpSocket, local: Option<SocketAddr> },
    Track(Arc<TrackQueue>),
}

/// One RTP packet, stored inline.
#[derive(Debug, Clone, Copy)]
pub struct QueuedPacket {
    len: usize,
    bytes: [u8; PACKET_LEN],
}

impl QueuedPacket {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The pacer's packets for a track, and the writer's wake-up.
#[derive(Debug)]
pub struct TrackQueue {
    packets: Mutex<VecDeque<QueuedPacket>>,
    ready: Notify,
    closed: AtomicBool,
}

impl TrackQueue {
    /// The next packet; `None` once the call's media is closed.
    pub async fn next(&self) -> Option<QueuedPacket> {
        loop {
            let notified = self.ready.notified();
            if let Some(p) = self.packets.lock().unwrap_or_else(|e| e.into_inner()).pop_front() {
                return Some(p);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Queues a packet (the pacer's side); `false` when an older one had to go.
    fn push(&self, bytes: &[u8]) -> bool {
        let mut packet = QueuedPacket { len: bytes.len().min(PACKET_LEN), bytes: [0; PACKET_LEN] };
        packet.bytes[..packet.len].copy_from_slice(&bytes[..packet.len]);
        let kept = {
            let mut q = self.packets.lock().unwrap_or_else(|e| e.into_inner());
            let full = q.len() >= TRACK_QUEUE;
            if full {
                q.pop_front();
            }
            q.push_back(packet);
            !full
        };
        self.ready.notify_one();
        kept
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }
}

impl MediaLeg {
    /// A SIP call's leg: bound, non-blocking sockets.
    pub fn udp(rtp: UdpSocket, rtcp: UdpSocket) -> Self {
        let local = rtp.local_addr().ok();
        MediaLeg::Udp { rtp, rtcp, local }
    }

    /// A WebRTC track's leg, and the queue its writer reads.
    pub fn track() -> (Self, Arc<TrackQueue>) {
        let queue = Arc::new(TrackQueue {
            packets: Mutex::new(VecDeque::with_capacity(TRACK_QUEUE)),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        });
        (MediaLeg::Track(queue.clone()), queue)
    }

    /// Sends one RTP packet (never blocks). `connected`: the RTP socket is
    /// connected to `dest` ([`MediaLeg::connect_rtp`]), so `send` goes there
    /// without naming it.
    pub fn send_rtp(&self, packet: &[u8], dest: SocketAddr, connected: bool) -> io::Result<()> {
        match self {
            MediaLeg::Udp { rtp, .. } if connected => match rtp.send(packet) {
                // An ICMP "port unreachable" for an earlier packet: a
                // connected socket reports it on its next call, which fails
                // without sending. Reported, the error is cleared; this
                // packet goes out as it would from an unconnected socket.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => rtp.send(packet).map(|_| ()),
                sent => sent.map(|_| ()),
            },
            MediaLeg::Udp { rtp, .. } => rtp.send_to(packet, dest).map(|_| ()),
            MediaLeg::Track(queue) if queue.push(packet) => Ok(()),
            MediaLeg::Track(_) => Err(io::Error::new(io::ErrorKind::WouldBlock, "the track writer is behind; its oldest packet was dropped")),
        }
    }

    /// Sends one RTCP packet (a track's RTCP is the WebRTC stack's).
    pub fn send_rtcp(&self, packet: &[u8], dest: SocketAddr) -> io::Result<()> {
        match self {
            MediaLeg::Udp { rtcp, .. } => rtcp.send_to(packet, dest).map(|_| ()),
            MediaLeg::Track(_) => Ok(()),
        }
    }

    /// Our RTP address (a UDP leg's).
    pub fn local_rtp(&self) -> Option<SocketAddr> {
        match self {
            MediaLeg::Udp { local, .. } => *local,
            MediaLeg::Track(_) => None,
        }
    }

    /// Connects a UDP leg's RTP socket to `peer` (only its datagrams are
    /// received from then on, and [`MediaLeg::send_rtp`] may send without an
    /// address), or, with `None`, disconnects it (datagrams from anyone
    /// again). The socket keeps its port either way. A track leg: nothing.
    pub fn connect_rtp(&self, peer: Option<SocketAddr>) -> io::Result<()> {
        let MediaLeg::Udp { rtp, local, .. } = self else { return Ok(()) };
        match peer {
            Some(peer) => rtp.connect(peer),
            None => disconnect(rtp, *local),
        }
    }

    /// Clones of a UDP leg's sockets, for the receive tasks.
    pub fn sockets(&self) -> Option<io::Result<(UdpSocket, UdpSocket)>> {
        match self {
            MediaLeg::Udp { rtp, rtcp, .. } => Some(rtp.try_clone().and_then(|r| Ok((r, rtcp.try_clone()?)))),
            MediaLeg::Track(_) => None,
        }
    }

    /// The call is over: a track's writer ends.
    pub fn close(&self) {
        if let MediaLeg::Track(queue) = self {
            queue.close();
        }
    }
}

/// Dissolves a UDP socket's connection (`connect` to `AF_UNSPEC`). Linux
/// then also lets go of a port the kernel picked (bound as port 0); the
/// socket is bound to it again, so its SDP port stays valid.
fn disconnect(socket: &UdpSocket, bound: Option<SocketAddr>) -> io::Result<()> {
    let unspec = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    // SAFETY: a valid descriptor and a sockaddr of the length given.
    let r = unsafe { libc::connect(socket.as_raw_fd(), &unspec, std::mem::size_of::<libc::sockaddr>() as libc::socklen_t) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    match bound {
        Some(bound) if socket.local_addr().map_or(true, |now| now.port() != bound.port()) => rebind(socket, bound),
        _ => Ok(()),
    }
}

/// `bind` on a socket that already exists (std only binds new ones).
fn rebind(socket: &UdpSocket, addr: SocketAddr) -> io::Result<()> {
    // SAFETY: zeroed sockaddrs are valid; each is passed with its own length.
    let r = unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_port = a.port().to_be();
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                libc::bind(socket.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sa) as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_port = a.port().to_be();
                sa.sin6_addr.s6_addr = a.ip().octets();
                sa.sin6_scope_id = a.scope_id();
                libc::bind(socket.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sa) as libc::socklen_t)
            }
        }
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        s
    }

    #[test]
    fn a_connected_udp_leg_hears_only_its_peer_survives_refusals_and_keeps_its_port_when_disconnected() {
        let (rtp, rtcp) = (socket(), socket());
        let port = rtp.local_addr().unwrap().port();
        let leg = MediaLeg::udp(rtp, rtcp);
        let (receiving, _) = leg.sockets().unwrap().unwrap();
        let (peer, stranger) = (socket(), socket());
        let ours = leg.local_rtp().unwrap();
        let mut buf = [0u8; 64];

        leg.connect_rtp(Some(peer.local_addr().unwrap())).unwrap();
        assert_eq!(leg.local_rtp().unwrap(), ours);
        leg.send_rtp(&[1; 12], peer.local_addr().unwrap(), true).unwrap();
        assert_eq!(peer.recv_from(&mut buf).unwrap(), (12, ours), "sent without naming the peer");
        stranger.send_to(&[9; 12], ours).unwrap();
        peer.send_to(&[2; 12], ours).unwrap();
        assert_eq!(receiving.recv_from(&mut buf).unwrap(), (12, peer.local_addr().unwrap()), "the stranger's datagram never arrives");
        assert_eq!(buf[0], 2);

        // A peer whose port is closed: ICMP refusals do not fail our sends.
        let gone = socket().local_addr().unwrap();
        leg.connect_rtp(Some(gone)).unwrap();
        for _ in 0..5 {
            leg.send_rtp(&[3; 12], gone, true).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }

        // Disconnected: anyone is heard again, on the same port.
        leg.connect_rtp(None).unwrap();
        assert_eq!(receiving.local_addr().unwrap().port(), port);
        stranger.send_to(&[4; 12], ours).unwrap();
        loop {
            // (a refusal left over from the closed peer may come first)
            match receiving.recv_from(&mut buf) {
                Ok(got) => break assert_eq!(got, (12, stranger.local_addr().unwrap())),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
            }
        }
        leg.send_rtp(&[5; 12], stranger.local_addr().unwrap(), false).unwrap();
        assert_eq!(stranger.recv_from(&mut buf).unwrap(), (12, ours));
    }

    #[tokio::test]
    async fn a_track_leg_hands_packets_over_in_order_drops_the_oldest_when_full_and_ends_on_close() {
        let (leg, queue) = MediaLeg::track();
        let dest: SocketAddr = "0.0.0.0:0".parse().unwrap();
        for i in 0..TRACK_QUEUE as u8 {
            leg.send_rtp(&[i; 20], dest, false).unwrap();
        }
        assert!(leg.send_rtp(&[99; 20], dest, false).is_err(), "full: the oldest goes, and it is counted");
        assert_eq!(queue.next().await.unwrap().bytes(), &[1; 20], "packet 0 was dropped");
        for _ in 1..TRACK_QUEUE - 1 {
            queue.next().await.unwrap();
        }
        assert_eq!(queue.next().await.unwrap().bytes(), &[99; 20]);
        // A writer waiting for the next packet wakes for it.
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.next().await.map(|p| p.bytes().to_vec()) })
        };
        tokio::task::yield_now().await;
        leg.send_rtp(&[7; 172], dest, false).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(vec![7; 172]));
        leg.close();
        assert!(queue.next().await.is_none());
        assert!(leg.send_rtcp(&[0; 28], dest).is_ok(), "a track's RTCP is the stack's; ours is not sent");
    }
}
