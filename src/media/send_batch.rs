//! A tick's RTP datagrams, sent together.
//!
//! Every call sends from its own socket to its own peer, so `sendmmsg` (one
//! socket, many datagrams) does not apply; what a tick of a thousand calls
//! can share is the system call itself. A shard queues each call's packet
//! here ([`SendBatch::push`]) and sends the tick's packets at its end
//! ([`SendBatch::flush`]) through an io_uring: one `io_uring_enter` carries up
//! to [`RING_ENTRIES`] `sendmsg`s on as many sockets, and the kernel runs them
//! inline (the sockets are non-blocking, so a full one fails with `EAGAIN`
//! instead of waiting). That halves the sending thread's CPU per packet on
//! this project's benchmark machine (0.85 against 1.5 µs, `BENCHMARKS.md`).
//! Where io_uring is unavailable (an old kernel, a container whose seccomp
//! profile forbids it, `kernel.io_uring_disabled`), the packets go out one
//! `sendto` each, in the same order; [`SendBatch::uses_ring`] says which.
//!
//! Nothing is allocated per packet: slots are reused from tick to tick.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::SockAddr;

use super::rtp_out::PACKET_LEN;

/// Submission queue size: the most packets one `io_uring_enter` carries.
pub const RING_ENTRIES: u32 = 1024;

/// One queued datagram.
struct Slot {
    fd: RawFd,
    dest: SockAddr,
    len: usize,
    bytes: [u8; PACKET_LEN],
    /// Whose packet it is (the shard's index of the call).
    owner: usize,
}

/// The datagrams of one tick, and how they leave.
pub struct SendBatch {
    slots: Vec<Slot>,
    queued: usize,
    ring: Option<io_uring::IoUring>,
    /// Per flush: the `sendmsg` headers and buffers the ring points into.
    headers: Vec<libc::msghdr>,
    iovecs: Vec<libc::iovec>,
    results: Vec<i32>,
}

// SAFETY: the raw pointers in `headers` and `iovecs` point into `slots` only
// during `flush` (they are rebuilt each time); between flushes they are dead
// values, and the batch is owned by one shard thread.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("queued", &self.queued).field("uses_ring", &self.uses_ring()).finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// A batch that sends through an io_uring when the kernel allows one.
    pub fn new() -> Self {
        let ring = match io_uring::IoUring::new(RING_ENTRIES) {
            Ok(ring) => Some(ring),
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable: RTP goes out one sendto per packet");
                None
            }
        };
        Self::with_ring(ring)
    }

    /// A batch that sends one `sendto` per packet.
    pub fn without_ring() -> Self {
        Self::with_ring(None)
    }

    fn with_ring(ring: Option<io_uring::IoUring>) -> Self {
        Self { slots: Vec::new(), queued: 0, ring, headers: Vec::new(), iovecs: Vec::new(), results: Vec::new() }
    }

    /// Whether packets leave through the io_uring.
    pub fn uses_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Packets queued since the last flush.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues `packet` (at most [`PACKET_LEN`] bytes) for `socket` to send to
    /// `dest` at the next [`flush`](Self::flush). The socket must stay open
    /// until then (the shard holds its call for the whole tick).
    pub fn push(&mut self, socket: &UdpSocket, dest: SocketAddr, packet: &[u8], owner: usize) {
        let len = packet.len().min(PACKET_LEN);
        if self.queued == self.slots.len() {
            self.slots.push(Slot { fd: -1, dest: SockAddr::from(dest), len: 0, bytes: [0; PACKET_LEN], owner: 0 });
        }
        let slot = &mut self.slots[self.queued];
        slot.fd = socket.as_raw_fd();
        slot.dest = SockAddr::from(dest);
        slot.len = len;
        slot.bytes[..len].copy_from_slice(&packet[..len]);
        slot.owner = owner;
        self.queued += 1;
    }

    /// Sends everything queued, in order, and reports each packet to `done`
    /// (its owner, its length, and whether the kernel took it).
    pub fn flush(&mut self, mut done: impl FnMut(usize, usize, io::Result<()>)) {
        let n = std::mem::take(&mut self.queued);
        if n == 0 {
            return;
        }
        self.results.clear();
        self.results.resize(n, 0);
        let ring_failed = match self.ring.as_mut() {
            Some(ring) => send_on_ring(ring, &self.slots[..n], &mut self.headers, &mut self.iovecs, &mut self.results).err(),
            None => {
                send_each(&self.slots[..n], &mut self.results);
                None
            }
        };
        if let Some(e) = ring_failed {
            // The ring itself failed (not one send): go on without it.
            tracing::warn!(error = %e, "io_uring failed; RTP goes out one sendto per packet from now on");
            self.ring = None;
            send_each(&self.slots[..n], &mut self.results);
        }
        for (slot, &result) in self.slots[..n].iter().zip(&self.results) {
            let outcome = if result >= 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-result)) };
            done(slot.owner, slot.len, outcome);
        }
    }
}

/// One `sendto` per slot; results as the ring gives them (bytes, or `-errno`).
fn send_each(slots: &[Slot], results: &mut [i32]) {
    for (slot, result) in slots.iter().zip(results.iter_mut()) {
        // SAFETY: the buffer and address are valid for the call; the
        // descriptor is open (the caller's contract).
        let sent = unsafe {
            libc::sendto(slot.fd, slot.bytes.as_ptr().cast(), slot.len, libc::MSG_DONTWAIT, slot.dest.as_ptr().cast(), slot.dest.len())
        };
        *result = if sent >= 0 { sent as i32 } else { -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) };
    }
}

/// The slots as `sendmsg`s through `ring`, [`RING_ENTRIES`] per enter,
/// each one's result in `results`. An error means the ring failed before
/// anything was submitted (the caller then sends them one by one); once some
/// have gone out, a failure marks the rest as failed instead, so that no
/// packet is sent twice.
fn send_on_ring(
    ring: &mut io_uring::IoUring,
    slots: &[Slot],
    headers: &mut Vec<libc::msghdr>,
    iovecs: &mut Vec<libc::iovec>,
    results: &mut [i32],
) -> io::Result<()> {
    // The headers point into the slots, which do not move during the flush.
    iovecs.clear();
    iovecs.extend(slots.iter().map(|s| libc::iovec { iov_base: s.bytes.as_ptr() as *mut libc::c_void, iov_len: s.len }));
    headers.clear();
    for (slot, iov) in slots.iter().zip(iovecs.iter_mut()) {
        // SAFETY: msghdr is plain data; zeroed is its empty value.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_name = slot.dest.as_ptr() as *mut libc::c_void;
        h.msg_namelen = slot.dest.len();
        h.msg_iov = iov;
        h.msg_iovlen = 1;
        headers.push(h);
    }
    let mut start = 0;
    while start < slots.len() {
        let end = (start + RING_ENTRIES as usize).min(slots.len());
        {
            let mut sq = ring.submission();
            for (i, (slot, h)) in slots[start..end].iter().zip(&headers[start..end]).enumerate() {
                let entry = io_uring::opcode::SendMsg::new(io_uring::types::Fd(slot.fd), h).build().user_data((start + i) as u64);
                // SAFETY: the header, its iovec, address and buffer stay
                // valid and unmoved until the entry completes (below).
                if unsafe { sq.push(&entry) }.is_err() {
                    return Err(io::Error::other("io_uring submission queue full"));
                }
            }
        }
        let count = end - start;
        let mut completed = 0;
        while completed < count {
            match ring.submit_and_wait(count - completed) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if completed == 0 && start == 0 => return Err(e),
                Err(e) => {
                    // Some went out: report the rest as failed rather than send twice.
                    for r in &mut results[start..end] {
                        if *r == 0 {
                            *r = -e.raw_os_error().unwrap_or(libc::EIO);
                        }
                    }
                    return Ok(());
                }
            }
            for cqe in ring.completion() {
                if let Some(r) = results.get_mut(cqe.user_data() as usize) {
                    *r = cqe.result();
                }
                completed += 1;
            }
        }
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let r = UdpSocket::bind("127.0.0.1:0").unwrap();
        r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        r
    }

    fn exercise(mut batch: SendBatch) {
        let rx = receiver();
        let dest = rx.local_addr().unwrap();
        let senders: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        // A destination that refuses: a port with no socket on an address family the sender lacks.
        let v6 = "[::1]:9".parse().unwrap();
        for round in 0..3u8 {
            for (i, s) in senders.iter().enumerate() {
                batch.push(s, dest, &[round, i as u8, 7, 7], i);
            }
            batch.push(&senders[0], v6, &[9; 4], 99);
            assert_eq!(batch.len(), 4);
            let mut reports = Vec::new();
            batch.flush(|owner, len, result| reports.push((owner, len, result.is_ok())));
            assert!(batch.is_empty());
            assert_eq!(reports, [(0, 4, true), (1, 4, true), (2, 4, true), (99, 4, false)], "round {round}");
            let mut got = Vec::new();
            for _ in 0..3 {
                let mut buf = [0u8; 64];
                let (n, from) = rx.recv_from(&mut buf).unwrap();
                got.push((buf[..n].to_vec(), from));
            }
            for (i, s) in senders.iter().enumerate() {
                assert_eq!(got[i], (vec![round, i as u8, 7, 7], s.local_addr().unwrap()), "in order, from each call's own socket");
            }
        }
    }

    #[test]
    fn a_ticks_packets_leave_in_order_from_their_own_sockets_through_the_ring() {
        let batch = SendBatch::new();
        // Where the kernel has io_uring (this project's CI machine does), it is used.
        if std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|v| v.trim() == "0") {
            assert!(batch.uses_ring(), "io_uring is enabled on this kernel but the batch did not set one up");
        }
        exercise(batch);
    }

    #[test]
    fn without_a_ring_the_same_packets_leave_one_sendto_each() {
        exercise(SendBatch::without_ring());
    }

    #[test]
    fn more_packets_than_one_submission_carries() {
        let mut batch = SendBatch::new();
        let rx = receiver();
        let dest = rx.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let n = RING_ENTRIES as usize * 2 + 5;
        for i in 0..n {
            batch.push(&tx, dest, &(i as u32).to_be_bytes(), i);
        }
        let mut ok = 0;
        let mut owners = Vec::new();
        batch.flush(|owner, _, r| {
            ok += r.is_ok() as usize;
            owners.push(owner);
        });
        assert_eq!(ok, n);
        assert_eq!(owners, (0..n).collect::<Vec<_>>());
        // The first and the last arrive (the receive buffer holds a few thousand small datagrams).
        let mut buf = [0u8; 16];
        let (len, _) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], &0u32.to_be_bytes());
    }
}
