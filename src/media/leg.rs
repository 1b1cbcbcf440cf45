//! Where a call's packets go: the pacer hands each one to the call's leg.
//!
//! - [`MediaLeg::Udp`]: a SIP call's RTP and RTCP sockets; the pacer sends
//!   on them directly (non-blocking).
//! - [`MediaLeg::Track`]: a browser's WebRTC track, or a Twilio Media
//!   Stream's WebSocket. The pacer puts the packet in a fixed-size queue (no
//!   allocation, no waiting: a full queue drops its oldest packet) and wakes
//!   the task that writes it on (SRTP on the track, or its payload as a
//!   `media` message; on the tokio runtime). Our RTCP is not sent there: the
//!   WebRTC stack reports for itself, and Twilio's stream has none.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
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
    Udp { rtp: UdpSocket, rtcp: UdpSocket },
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
        MediaLeg::Udp { rtp, rtcp }
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

    /// Sends one RTP packet (never blocks).
    pub fn send_rtp(&self, packet: &[u8], dest: SocketAddr) -> io::Result<()> {
        match self {
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
            MediaLeg::Udp { rtp, .. } => rtp.local_addr().ok(),
            MediaLeg::Track(_) => None,
        }
    }

    /// Clones of a UDP leg's sockets, for the receive tasks.
    pub fn sockets(&self) -> Option<io::Result<(UdpSocket, UdpSocket)>> {
        match self {
            MediaLeg::Udp { rtp, rtcp } => Some(rtp.try_clone().and_then(|r| Ok((r, rtcp.try_clone()?)))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_track_leg_hands_packets_over_in_order_drops_the_oldest_when_full_and_ends_on_close() {
        let (leg, queue) = MediaLeg::track();
        let dest: SocketAddr = "0.0.0.0:0".parse().unwrap();
        for i in 0..TRACK_QUEUE as u8 {
            leg.send_rtp(&[i; 20], dest).unwrap();
        }
        assert!(leg.send_rtp(&[99; 20], dest).is_err(), "full: the oldest goes, and it is counted");
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
        leg.send_rtp(&[7; 172], dest).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(vec![7; 172]));
        leg.close();
        assert!(queue.next().await.is_none());
        assert!(leg.send_rtcp(&[0; 28], dest).is_ok(), "a track's RTCP is the stack's; ours is not sent");
    }
}
