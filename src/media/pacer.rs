//! One pacing clock for every call, and the per-call media state it drives.
//!
//! The pacer thread sleeps to absolute deadlines `start + k * 20 ms` (not
//! "20 ms after the last wake-up", which drifts) and on each tick sends one
//! packet for every call. A tick that comes late is still sent at once (and
//! counted); when the thread was stalled for longer than a few packets, the
//! missed ticks are skipped: the RTP timestamps still advance by the elapsed
//! time, so the stream stays on the wall clock instead of bursting.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use super::jitter::JitterEstimator;
use super::playout::{FrameKind, Playout, PlayoutEvent};
use super::rtcp::{self, OurReception, PeerReport};
use super::rtp_in::{Inbound, RtpReceiver, SourcePolicy};
use super::rtp_out::{RtpSender, PACKET_LEN};
use super::{FRAME, RATE};

/// A tick later than this after its deadline counts as a late send.
const LATE: Duration = Duration::from_millis(10);
/// Stalled longer than this: skip the missed ticks instead of bursting them.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// Sender reports every 5 s (RFC 3550's minimum interval).
const RTCP_TICKS: u64 = 250;
/// Caller audio kept per call (decoded, 8 kHz).
const CALLER_AUDIO_KEEP: usize = 10 * RATE as usize;

/// Media settings shared by the calls of one server.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Send silence packets between utterances (keeps carriers' RTP timers happy).
    pub send_silence: bool,
    /// How the caller's media source is accepted.
    pub source_policy: SourcePolicy,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { send_silence: true, source_policy: SourcePolicy::Strict }
    }
}

/// Where and how to send, from the SDP negotiation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteMedia {
    pub rtp: SocketAddr,
    pub rtcp: SocketAddr,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    /// G.711 A-law instead of mu-law (the playout holds mu-law; converted per packet).
    pub pcma: bool,
    /// We may send (the peer did not put us on hold).
    pub send: bool,
}

/// What a call's media reports to its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Playout(PlayoutEvent),
    Dtmf { digit: char, duration_ms: u32 },
    /// Caller audio (PCMU payload as received), only while subscribed.
    CallerAudio { pcmu: Vec<u8>, timestamp: u32 },
    /// The peer's view of our stream from its RTCP.
    PeerReport(PeerReport),
    /// The call is over (published by the call's owner, not the media plane).
    Ended { reason: String },
}

/// Counters, readable while the call runs.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub packets_sent: AtomicU64,
    pub octets_sent: AtomicU64,
    pub speech_frames: AtomicU64,
    pub underruns: AtomicU64,
    pub late_sends: AtomicU64,
    pub skipped_ticks: AtomicU64,
    pub send_errors: AtomicU64,
    pub packets_received: AtomicU64,
    pub packets_rejected: AtomicU64,
    pub dtmf_received: AtomicU64,
}

#[derive(Debug)]
struct TxState {
    sender: RtpSender,
    remote: RemoteMedia,
    /// The peer's last SR (SSRC, middle NTP bits) and when it arrived.
    peer_sr: Option<(u32, u32, Instant)>,
    peer: PeerReport,
}

/// A call's media: its sockets, playout buffer, RTP state and counters.
#[derive(Debug)]
pub struct CallMedia {
    pub id: String,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    pub playout: Mutex<Playout>,
    tx: Mutex<TxState>,
    rx: Mutex<RtpReceiver>,
    caller_audio: Mutex<VecDeque<i16>>,
    pub stats: MediaStats,
    events: UnboundedSender<MediaEvent>,
    jitter: Arc<JitterEstimator>,
    config: MediaConfig,
    subscribe_audio: AtomicBool,
    closed: AtomicBool,
    created: Instant,
    /// Spreads the calls' RTCP reports over the interval.
    rtcp_phase: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CallMedia {
    /// `rtp`/`rtcp` are bound non-blocking sockets (see [`super::PortAllocator`]).
    pub fn new(
        id: String,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        remote: RemoteMedia,
        config: MediaConfig,
        jitter: Arc<JitterEstimator>,
        events: UnboundedSender<MediaEvent>,
    ) -> Arc<Self> {
        let now = Instant::now();
        let rx = RtpReceiver::new(remote.rtp, config.source_policy, remote.payload_type, remote.dtmf_payload_type, now);
        Arc::new(Self {
            rtcp_phase: rand::random::<u64>() % RTCP_TICKS,
            id,
            rtp,
            rtcp,
            playout: Mutex::new(Playout::new()),
            tx: Mutex::new(TxState { sender: RtpSender::new(remote.payload_type), remote, peer_sr: None, peer: PeerReport::default() }),
            rx: Mutex::new(rx),
            caller_audio: Mutex::new(VecDeque::new()),
            stats: MediaStats::default(),
            events,
            jitter,
            config,
            subscribe_audio: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            created: now,
        })
    }

    /// Our RTP port.
    pub fn local_rtp(&self) -> io::Result<SocketAddr> {
        self.rtp.local_addr()
    }

    /// Clones of the sockets for a receive task.
    pub fn sockets(&self) -> io::Result<(UdpSocket, UdpSocket)> {
        Ok((self.rtp.try_clone()?, self.rtcp.try_clone()?))
    }

    /// New negotiation (re-INVITE): address, codec or hold state changed.
    pub fn update_remote(&self, remote: RemoteMedia) {
        let mut tx = lock(&self.tx);
        if tx.remote.rtp != remote.rtp || tx.remote.payload_type != remote.payload_type || tx.remote.dtmf_payload_type != remote.dtmf_payload_type {
            lock(&self.rx).retarget(remote.rtp, remote.payload_type, remote.dtmf_payload_type, Instant::now());
        }
        tx.sender.payload_type = remote.payload_type;
        tx.remote = remote;
    }

    pub fn remote(&self) -> RemoteMedia {
        lock(&self.tx).remote
    }

    /// SSRC of our stream.
    pub fn ssrc(&self) -> u32 {
        lock(&self.tx).sender.ssrc
    }

    /// The peer's latest RTCP view of our stream.
    pub fn peer_report(&self) -> PeerReport {
        lock(&self.tx).peer.clone()
    }

    /// Turns caller-audio events on or off.
    pub fn subscribe_caller_audio(&self, on: bool) {
        self.subscribe_audio.store(on, Ordering::Relaxed);
    }

    /// The last seconds of the caller's audio, decoded (8 kHz).
    pub fn caller_audio(&self) -> Vec<i16> {
        lock(&self.caller_audio).iter().copied().collect()
    }

    /// When media was last received (or when the call started, if never).
    pub fn last_received(&self) -> Instant {
        lock(&self.rx).last_packet.unwrap_or(self.created)
    }

    /// Stops sending; the pacer forgets the call at its next tick.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A datagram on the RTP port.
    pub fn handle_rtp(&self, from: SocketAddr, data: &[u8]) {
        let inbound = lock(&self.rx).handle(from, data, Instant::now());
        match inbound {
            Inbound::Rejected(reason) => {
                self.stats.packets_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(call = %self.id, %from, ?reason, "RTP dropped");
                return;
            }
            Inbound::Audio { payload, timestamp, .. } => {
                {
                    let mut kept = lock(&self.caller_audio);
                    if lock(&self.tx).remote.pcma {
                        kept.extend(payload.iter().map(|&b| audio_codec_algorithms::decode_alaw(b)));
                    } else {
                        kept.extend(crate::audio::decode_mulaw_i16(&payload));
                    }
                    let excess = kept.len().saturating_sub(CALLER_AUDIO_KEEP);
                    kept.drain(..excess);
                }
                if self.subscribe_audio.load(Ordering::Relaxed) {
                    let _ = self.events.send(MediaEvent::CallerAudio { pcmu: payload, timestamp });
                }
            }
            Inbound::Dtmf { digit, duration_ms } => {
                self.stats.dtmf_received.fetch_add(1, Ordering::Relaxed);
                let _ = self.events.send(MediaEvent::Dtmf { digit, duration_ms });
            }
            Inbound::Nothing => {}
        }
        self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram on the RTCP port.
    pub fn handle_rtcp(&self, from: SocketAddr, data: &[u8]) {
        let mut tx = lock(&self.tx);
        if from.ip() != tx.remote.rtcp.ip() && from.ip() != lock(&self.rx).source().ip() {
            return;
        }
        let Some(report) = rtcp::parse(data, tx.sender.ssrc, SystemTime::now()) else { return };
        if let Some((ssrc, mid)) = report.sender_report {
            tx.peer_sr = Some((ssrc, mid, Instant::now()));
        }
        if report.fraction_lost.is_some() {
            tx.peer = report.clone();
        }
        drop(tx);
        let _ = self.events.send(MediaEvent::PeerReport(report));
    }

    /// One tick of the pacing clock: sends this call's next packet.
    fn tick(&self, tick: u64, deadline: Instant, wait: Duration, buf: &mut [u8; PACKET_LEN]) {
        let mut tx = lock(&self.tx);
        if !tx.remote.send {
            // On hold: the clock runs on, nothing is sent or consumed.
            tx.sender.skip();
            return;
        }
        let frame = {
            let mut playout = lock(&self.playout);
            let frame = playout.tick(deadline, wait);
            for event in playout.take_events() {
                let _ = self.events.send(MediaEvent::Playout(event));
            }
            frame
        };
        match frame.kind {
            FrameKind::Speech => {
                self.stats.speech_frames.fetch_add(1, Ordering::Relaxed);
            }
            FrameKind::Underrun => {
                self.stats.underruns.fetch_add(1, Ordering::Relaxed);
            }
            FrameKind::Silence if !self.config.send_silence => {
                tx.sender.skip();
                return;
            }
            FrameKind::Silence => {}
        }
        let mut payload = frame.payload;
        if tx.remote.pcma {
            payload.iter_mut().for_each(|b| *b = audio_codec_algorithms::convert_ulaw_to_alaw(*b));
        }
        let n = tx.sender.packet(&payload, frame.marker, buf);
        let dest = tx.remote.rtp;
        match self.rtp.send_to(&buf[..n], dest) {
            Ok(_) => {
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.octets_sent.fetch_add((n - 12) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(call = %self.id, %dest, error = %e, "RTP send failed");
            }
        }
        if Instant::now().saturating_duration_since(deadline) > LATE {
            self.stats.late_sends.fetch_add(1, Ordering::Relaxed);
        }
        if tick % RTCP_TICKS == self.rtcp_phase {
            self.send_report(&tx);
        }
    }

    fn skip(&self, ticks: u64) {
        let mut tx = lock(&self.tx);
        for _ in 0..ticks {
            tx.sender.skip();
        }
        self.stats.skipped_ticks.fetch_add(ticks, Ordering::Relaxed);
    }

    fn send_report(&self, tx: &TxState) {
        let reception = {
            let mut rx = lock(&self.rx);
            let stats = &mut rx.stats;
            stats.ssrc_seen.then(|| OurReception {
                remote_ssrc: tx.peer_sr.map_or(0, |s| s.0),
                fraction_lost: stats.fraction_lost_interval(),
                total_lost: stats.lost() as u32,
                extended_max_seq: stats.extended_max(),
                jitter: stats.jitter as u32,
                last_sr: tx.peer_sr.map(|(_, mid, at)| (mid, at.elapsed())),
            })
        };
        let s = &tx.sender;
        let bytes = rtcp::sender_report(s.ssrc, SystemTime::now(), s.last_timestamp(), s.packets, s.octets, reception);
        if let Err(e) = self.rtcp.send_to(&bytes, tx.remote.rtcp) {
            tracing::debug!(call = %self.id, error = %e, "RTCP send failed");
        }
    }
}

/// The pacing clock.
#[derive(Debug)]
pub struct Pacer {
    calls: Mutex<Vec<Arc<CallMedia>>>,
    ticks: AtomicU64,
}

impl Pacer {
    /// Starts the pacing thread; it runs for the life of the process.
    pub fn start() -> io::Result<Arc<Self>> {
        let pacer = Arc::new(Self { calls: Mutex::new(Vec::new()), ticks: AtomicU64::new(0) });
        let weak = Arc::downgrade(&pacer);
        std::thread::Builder::new().name("voxline-pacer".into()).spawn(move || run(weak))?;
        Ok(pacer)
    }

    /// Starts sending for `call` from the next tick on.
    pub fn add(&self, call: Arc<CallMedia>) {
        lock(&self.calls).push(call);
    }

    /// Calls being paced.
    pub fn len(&self) -> usize {
        lock(&self.calls).iter().filter(|c| !c.is_closed()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

fn run(pacer: std::sync::Weak<Pacer>) {
    raise_priority();
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut buf = [0u8; PACKET_LEN];
    loop {
        k += 1;
        let deadline = start + FRAME * k as u32;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
        let Some(pacer) = pacer.upgrade() else { return };
        let calls: Vec<Arc<CallMedia>> = {
            let mut calls = lock(&pacer.calls);
            calls.retain(|c| !c.is_closed());
            calls.clone()
        };
        let behind = Instant::now().saturating_duration_since(deadline);
        if behind > MAX_CATCH_UP {
            // Stalled (suspended, starved of CPU): the ticks whose deadlines
            // have passed are skipped, their timestamps advanced, and sending
            // resumes with the tick that is due now.
            let missed = (behind.as_micros() / FRAME.as_micros()) as u64;
            tracing::warn!(missed_ticks = missed, "pacer stalled; skipping ahead");
            for call in &calls {
                call.skip(missed);
            }
            k += missed - 1;
            continue;
        }
        // One estimate per tick for every call.
        let wait = calls.first().map(|c| c.jitter.target()).unwrap_or_default();
        for call in &calls {
            call.tick(k, deadline, wait, &mut buf);
        }
        pacer.ticks.store(k, Ordering::Relaxed);
    }
}

/// Media timing must not lose the CPU to batch work (synthesis, other
/// processes): the pacer asks for real-time round-robin scheduling at a low
/// real-time priority, and failing that (no CAP_SYS_NICE) for a higher nice
/// level. It sleeps between ticks and its work per tick is bounded, so it
/// cannot starve the machine.
fn raise_priority() {
    // SAFETY: plain scheduler calls on the current thread with valid arguments.
    unsafe {
        let param = libc::sched_param { sched_priority: 10 };
        if libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_RR, &param) == 0 {
            tracing::debug!("pacer: SCHED_RR priority 10");
            return;
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, -10) == 0 {
            tracing::debug!("pacer: nice -10");
        } else {
            tracing::debug!("pacer: normal priority (no permission to raise it)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp::packet::Packet;
    use webrtc_util::marshal::Unmarshal;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn the_pacer_sends_steady_contiguous_packets_and_the_utterance() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (rtp, rtcp) = pair();
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let remote = RemoteMedia {
            rtp: peer.local_addr().unwrap(),
            rtcp: peer.local_addr().unwrap(),
            payload_type: 0,
            dtmf_payload_type: Some(101),
            pcma: false,
            send: true,
        };
        let call = CallMedia::new("t".into(), rtp, rtcp, remote, MediaConfig::default(), Arc::new(JitterEstimator::new()), events_tx);
        {
            let mut p = call.playout.lock().unwrap();
            p.begin(1);
            p.push(1, &[0x11; 160 * 5], Instant::now());
            p.finish(1);
        }
        let pacer = Pacer::start().unwrap();
        pacer.add(call.clone());
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        while got.len() < 25 {
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            if n == PACKET_LEN {
                got.push((Instant::now(), Packet::unmarshal(&mut &buf[..n]).unwrap()));
            }
        }
        call.close();
        for w in got.windows(2) {
            assert_eq!(w[1].1.header.sequence_number, w[0].1.header.sequence_number.wrapping_add(1));
            assert_eq!(w[1].1.header.timestamp, w[0].1.header.timestamp.wrapping_add(160));
        }
        let span = got.last().unwrap().0 - got[0].0;
        assert!(span > Duration::from_millis(400) && span < Duration::from_millis(600), "24 intervals took {span:?}");
        let speech: Vec<_> = got.iter().filter(|(_, p)| p.payload[0] == 0x11).collect();
        assert_eq!(speech.len(), 5);
        assert!(speech[0].1.header.marker);
        assert_eq!(got.iter().filter(|(_, p)| p.header.marker).count(), 1);
        let mut started = false;
        while let Ok(e) = events.try_recv() {
            started |= matches!(e, MediaEvent::Playout(PlayoutEvent::Started { utterance: 1, .. }));
        }
        assert!(started);
        assert_eq!(call.stats.speech_frames.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn on_hold_nothing_is_sent() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (rtp, rtcp) = pair();
        let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
        let addr = peer.local_addr().unwrap();
        let remote = RemoteMedia { rtp: addr, rtcp: addr, payload_type: 0, dtmf_payload_type: None, pcma: false, send: false };
        let call = CallMedia::new("h".into(), rtp, rtcp, remote, MediaConfig::default(), Arc::new(JitterEstimator::new()), events_tx);
        let pacer = Pacer::start().unwrap();
        pacer.add(call.clone());
        let mut buf = [0u8; 1500];
        assert!(peer.recv_from(&mut buf).is_err(), "a held call sends nothing");
        call.update_remote(RemoteMedia { send: true, ..remote });
        assert!(peer.recv_from(&mut buf).is_ok(), "unhold resumes");
        call.close();
    }
}
