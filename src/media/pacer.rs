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

use super::dtmf::{DtmfQueue, DtmfSendError, DtmfTick};
use super::playout::{FrameKind, Playout, PlayoutEvent};
use super::rtcp::{self, OurReception, PeerReport};
use super::rtp_in::{Inbound, RtpReceiver, SourcePolicy};
use super::rtp_out::{RtpSender, PACKET_LEN};
use super::{FRAME, FRAME_BYTES, RATE, SILENCE_PCMU};

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
    /// DTMF digits whose first telephone-event packet was sent.
    pub dtmf_sent: AtomicU64,
}

#[derive(Debug)]
struct TxState {
    sender: RtpSender,
    remote: RemoteMedia,
    /// The peer's last SR (SSRC, middle NTP bits) and when it arrived.
    peer_sr: Option<(u32, u32, Instant)>,
    peer: PeerReport,
    /// Digits to send (RFC 4733).
    dtmf: DtmfQueue,
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
            tx: Mutex::new(TxState {
                sender: RtpSender::new(remote.payload_type),
                remote,
                peer_sr: None,
                peer: PeerReport::default(),
                dtmf: DtmfQueue::default(),
            }),
            rx: Mutex::new(rx),
            caller_audio: Mutex::new(VecDeque::new()),
            stats: MediaStats::default(),
            events,
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

    /// Sends DTMF digits to the caller as RFC 4733 telephone-events, in
    /// order, after any digits already queued.
    ///
    /// `digits`: `0-9 * # A-D` (letters in either case) are keys; `w` is a
    /// 500 ms pause, `W` or `,` a 1 s pause (Twilio `sendDigits` style).
    /// `duration` is each tone's length, clamped to 40..=2000 ms (100 ms,
    /// [`super::dtmf::DTMF_DEFAULT_DURATION`], is the usual choice); tones are
    /// separated by [`super::dtmf::DTMF_GAP`] (60 ms) of silence, which a
    /// pause replaces.
    ///
    /// The digits go out on the call's RTP stream from the next tick of the
    /// pacer: same SSRC and sequence numbers as the audio, the payload type
    /// the peer gave telephone-event. Each digit is one event: one RTP
    /// timestamp (the tick where it began), a packet every 20 ms with the
    /// duration growing, the marker bit on the first packet, volume 10, and
    /// the final packet (E bit) sent three times; the stream's clock keeps
    /// advancing 160 samples per tick. While digits, gaps and pauses are
    /// being sent the call's audio is held: the playout buffer is not ticked
    /// (no audio, no playout events), silence packets fill the gaps (if the
    /// call sends silence), and whatever was playing resumes afterwards, its
    /// first packet carrying the marker bit. While the call is on hold the
    /// digits wait; a tone cut by hold is sent again in full.
    ///
    /// All or nothing: an invalid character ([`DtmfSendError::InvalidDigit`]),
    /// more than [`super::dtmf::DTMF_MAX_QUEUED`] characters waiting
    /// ([`DtmfSendError::TooLong`]) or a peer without telephone-event
    /// ([`DtmfSendError::NotNegotiated`]) queue nothing.
    pub fn send_dtmf(&self, digits: &str, duration: Duration) -> Result<(), DtmfSendError> {
        let mut tx = lock(&self.tx);
        if tx.remote.dtmf_payload_type.is_none() {
            return Err(DtmfSendError::NotNegotiated);
        }
        tx.dtmf.queue(digits, duration)
    }

    /// DTMF characters not yet sent (see [`CallMedia::send_dtmf`]).
    pub fn dtmf_pending(&self) -> usize {
        lock(&self.tx).dtmf.pending()
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
            Inbound::Audio { mut payload, timestamp, .. } => {
                // Agents get mu-law whatever the call negotiated.
                if lock(&self.tx).remote.pcma {
                    payload.iter_mut().for_each(|b| *b = audio_codec_algorithms::convert_alaw_to_ulaw(*b));
                }
                {
                    let mut kept = lock(&self.caller_audio);
                    kept.extend(crate::audio::decode_mulaw_i16(&payload));
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
    fn tick(&self, tick: u64, deadline: Instant, buf: &mut [u8; PACKET_LEN]) {
        let mut tx = lock(&self.tx);
        if !tx.remote.send {
            // On hold: the clock runs on, nothing is sent or consumed; DTMF waits.
            tx.dtmf.hold();
            tx.sender.skip();
            return;
        }
        let n = match Self::dtmf_tick(&mut tx, &self.id) {
            DtmfTick::Event { timestamp, marker, payload } => {
                if marker {
                    self.stats.dtmf_sent.fetch_add(1, Ordering::Relaxed);
                }
                // `dtmf_tick` only yields events while the PT is negotiated.
                let pt = tx.remote.dtmf_payload_type.unwrap_or(tx.remote.payload_type);
                tx.sender.event_packet(pt, timestamp, marker, &payload, buf)
            }
            DtmfTick::Hold => {
                // Between digits, or a pause: the audio stays where it is.
                if !self.config.send_silence {
                    tx.sender.skip();
                    return;
                }
                let marker = tx.dtmf.take_marker();
                Self::audio_packet(&mut tx, [SILENCE_PCMU; FRAME_BYTES], marker, buf)
            }
            DtmfTick::Idle => {
                let frame = {
                    let mut playout = lock(&self.playout);
                    let frame = playout.tick(deadline);
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
                        tracing::debug!(call = %self.id, "underrun: the utterance's next 20 ms had not arrived");
                    }
                    FrameKind::Silence if !self.config.send_silence => {
                        tx.sender.skip();
                        return;
                    }
                    FrameKind::Silence => {}
                }
                // The first audio after telephone-events starts a talkspurt.
                let marker = tx.dtmf.take_marker() || frame.marker;
                Self::audio_packet(&mut tx, frame.payload, marker, buf)
            }
        };
        let dest = tx.remote.rtp;
        match self.rtp.send_to(&buf[..n], dest) {
            Ok(_) => {
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.octets_sent.fetch_add(n.saturating_sub(12) as u64, Ordering::Relaxed);
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

    /// This tick's DTMF share (sending, not on hold). Digits left over after
    /// a re-INVITE dropped telephone-event are discarded.
    fn dtmf_tick(tx: &mut TxState, id: &str) -> DtmfTick {
        if tx.remote.dtmf_payload_type.is_none() {
            if !tx.dtmf.is_idle() {
                tracing::warn!(call = %id, pending = tx.dtmf.pending(), "telephone-event no longer negotiated; DTMF dropped");
                tx.dtmf.clear();
            }
            return DtmfTick::Idle;
        }
        let timestamp = tx.sender.timestamp();
        tx.dtmf.tick(timestamp)
    }

    /// An audio packet (mu-law in, converted for A-law calls) into `buf`.
    fn audio_packet(tx: &mut TxState, mut payload: [u8; FRAME_BYTES], marker: bool, buf: &mut [u8]) -> usize {
        if tx.remote.pcma {
            payload.iter_mut().for_each(|b| *b = audio_codec_algorithms::convert_ulaw_to_alaw(*b));
        }
        tx.sender.packet(&payload, marker, buf)
    }

    fn skip(&self, ticks: u64) {
        let mut tx = lock(&self.tx);
        for _ in 0..ticks {
            // DTMF under way goes on as if these ticks' packets were lost:
            // an event keeps its timestamp and its duration covers the stall.
            if tx.remote.send {
                let _ = Self::dtmf_tick(&mut tx, &self.id);
            } else {
                tx.dtmf.hold();
            }
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
        for call in &calls {
            call.tick(k, deadline, &mut buf);
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
        let call = CallMedia::new("t".into(), rtp, rtcp, remote, MediaConfig::default(), events_tx);
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
        let call = CallMedia::new("h".into(), rtp, rtcp, remote, MediaConfig::default(), events_tx);
        let pacer = Pacer::start().unwrap();
        pacer.add(call.clone());
        let mut buf = [0u8; 1500];
        assert!(peer.recv_from(&mut buf).is_err(), "a held call sends nothing");
        call.update_remote(RemoteMedia { send: true, ..remote });
        assert!(peer.recv_from(&mut buf).is_ok(), "unhold resumes");
        call.close();
    }

    /// A call ticked by hand (no pacer thread), its packets read back from a
    /// local socket: one packet per tick while the call sends silence.
    struct Rig {
        call: Arc<CallMedia>,
        peer: UdpSocket,
        _rtcp_sink: UdpSocket,
        k: u64,
        buf: [u8; PACKET_LEN],
        got: Vec<Packet>,
    }

    const DTMF_PT: u8 = 101;

    impl Rig {
        fn new(dtmf_payload_type: Option<u8>, config: MediaConfig) -> Self {
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_nonblocking(true).unwrap();
            let rtcp_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
            let (rtp, rtcp) = pair();
            let (events_tx, _) = tokio::sync::mpsc::unbounded_channel();
            let remote = RemoteMedia {
                rtp: peer.local_addr().unwrap(),
                rtcp: rtcp_sink.local_addr().unwrap(),
                payload_type: 0,
                dtmf_payload_type,
                pcma: false,
                send: true,
            };
            let call = CallMedia::new("d".into(), rtp, rtcp, remote, config, events_tx);
            Self { call, peer, _rtcp_sink: rtcp_sink, k: 0, buf: [0; PACKET_LEN], got: Vec::new() }
        }

        fn speak(&self, frames: usize) {
            let mut p = self.call.playout.lock().unwrap();
            p.begin(1);
            p.push(1, &vec![0x11; 160 * frames], Instant::now());
            p.finish(1);
        }

        fn tick(&mut self, n: usize) {
            for _ in 0..n {
                self.k += 1;
                self.call.tick(self.k, Instant::now(), &mut self.buf);
                self.drain(false);
            }
        }

        /// Ticks until the DTMF queue and the playout are both done.
        fn tick_until_quiet(&mut self) {
            for _ in 0..1000 {
                self.tick(1);
                if lock(&self.call.tx).dtmf.is_idle() && self.call.playout.lock().unwrap().is_idle() {
                    return;
                }
            }
            panic!("DTMF never finished");
        }

        fn drain(&mut self, wait: bool) {
            let mut buf = [0u8; 1500];
            if wait {
                self.peer.set_nonblocking(false).unwrap();
                self.peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            }
            while let Ok((n, _)) = self.peer.recv_from(&mut buf) {
                self.got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
            }
            if wait {
                self.peer.set_nonblocking(true).unwrap();
            }
        }

        fn packets(&mut self) -> Vec<Packet> {
            self.drain(true);
            std::mem::take(&mut self.got)
        }
    }

    /// (event code, end bit, volume, duration) of a telephone-event payload.
    fn event(p: &Packet) -> (u8, bool, u8, u16) {
        assert_eq!(p.header.payload_type, DTMF_PT);
        assert_eq!(p.payload.len(), 4);
        (p.payload[0], p.payload[1] & 0x80 != 0, p.payload[1] & 0x3f, u16::from_be_bytes([p.payload[2], p.payload[3]]))
    }

    /// The events in `packets`, each as (timestamp, its packets), in order.
    fn events(packets: &[Packet]) -> Vec<(u32, Vec<&Packet>)> {
        let mut out: Vec<(u32, Vec<&Packet>)> = Vec::new();
        for p in packets.iter().filter(|p| p.header.payload_type == DTMF_PT) {
            match out.last_mut() {
                Some((ts, ps)) if *ts == p.header.timestamp => ps.push(p),
                _ => out.push((p.header.timestamp, vec![p])),
            }
        }
        out
    }

    /// One packet per tick, contiguous sequence numbers, one SSRC; returns
    /// the timestamp of tick 0.
    fn assert_one_stream(packets: &[Packet]) -> u32 {
        let ts0 = packets[0].header.timestamp;
        for (i, w) in packets.windows(2).enumerate() {
            assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1), "packet {i}");
            assert_eq!(w[1].header.ssrc, w[0].header.ssrc);
        }
        for (i, p) in packets.iter().enumerate().filter(|(_, p)| p.header.payload_type == 0) {
            assert_eq!(p.header.timestamp, ts0.wrapping_add(160 * i as u32), "audio packet {i} is on the clock");
        }
        ts0
    }

    #[test]
    fn dtmf_interrupts_the_audio_as_telephone_events_and_the_audio_resumes() {
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.speak(10);
        rig.tick(3);
        rig.call.send_dtmf("1#", Duration::from_millis(100)).unwrap();
        assert_eq!(rig.call.dtmf_pending(), 2);
        rig.tick_until_quiet();
        let packets = rig.packets();
        assert_eq!(packets.len() as u64, rig.k, "one packet per tick");
        let ts0 = assert_one_stream(&packets);

        // audio 3 | '1' 5 + 2 repeats | gap silence 1 | '#' 5 + 2 repeats | audio 7
        let kinds: String = packets
            .iter()
            .map(|p| match (p.header.payload_type, p.payload.first()) {
                (DTMF_PT, _) => 'e',
                (0, Some(0x11)) => 's',
                (0, Some(0xFF)) => '_',
                _ => '?',
            })
            .collect();
        assert_eq!(kinds, "sss".to_owned() + "eeeeeee" + "_" + "eeeeeee" + "sssssss");
        assert_eq!(kinds.matches('s').count(), 10, "the utterance is played whole, around the digits");

        let events = events(&packets);
        assert_eq!(events.len(), 2);
        for ((ts, ps), (code, start_tick)) in events.iter().zip([(1u8, 3u32), (11, 11)]) {
            assert_eq!(*ts, ts0.wrapping_add(160 * start_tick), "an event carries the timestamp of its first tick");
            let fields: Vec<_> = ps.iter().map(|p| event(p)).collect();
            assert_eq!(
                fields,
                [
                    (code, false, 10, 160),
                    (code, false, 10, 320),
                    (code, false, 10, 480),
                    (code, false, 10, 640),
                    (code, true, 10, 800),
                    (code, true, 10, 800),
                    (code, true, 10, 800),
                ]
            );
            let markers: Vec<_> = ps.iter().map(|p| p.header.marker).collect();
            assert_eq!(markers, [true, false, false, false, false, false, false]);
        }
        // 60 ms from the end of '1' to the start of '#'.
        assert_eq!(events[1].0.wrapping_sub(events[0].0.wrapping_add(800)), 480);
        // After each digit the first audio-PT packet starts a talkspurt.
        let markers: Vec<usize> = packets.iter().enumerate().filter(|(_, p)| p.header.marker).map(|(i, _)| i).collect();
        assert_eq!(markers, [0, 3, 10, 11, 18]);
        assert_eq!(packets[18].payload[0], 0x11);
        assert_eq!(rig.call.stats.dtmf_sent.load(Ordering::Relaxed), 2);
        assert_eq!(rig.call.stats.speech_frames.load(Ordering::Relaxed), 10);
        assert_eq!(rig.call.stats.underruns.load(Ordering::Relaxed), 0, "held audio is not an underrun");
    }

    #[test]
    fn every_key_has_its_event_code() {
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.call.send_dtmf("0123456789*#ABCDabcd", Duration::from_millis(40)).unwrap();
        rig.tick_until_quiet();
        let packets = rig.packets();
        assert_one_stream(&packets);
        let events = events(&packets);
        let codes: Vec<u8> = events.iter().map(|(_, ps)| event(ps[0]).0).collect();
        assert_eq!(codes, (0..16).chain(12..16).collect::<Vec<u8>>());
        for (_, ps) in &events {
            let durations: Vec<_> = ps.iter().map(|p| event(p).3).collect();
            assert_eq!(durations, [160, 320, 320, 320]);
            assert_eq!(ps.iter().filter(|p| event(p).1).count(), 3);
        }
        // Each digit: 40 ms tone, 60 ms gap; the stream clock advances 160 per tick.
        for w in events.windows(2) {
            assert_eq!(w[1].0.wrapping_sub(w[0].0), 800);
        }
    }

    #[test]
    fn pauses_put_time_without_events_between_digits() {
        for (digits, pause) in [("1w2", 4000u32), ("1W2", 8000), ("1,2", 8000), ("12", 480)] {
            let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
            rig.call.send_dtmf(digits, Duration::from_millis(100)).unwrap();
            rig.tick_until_quiet();
            let packets = rig.packets();
            let ts0 = assert_one_stream(&packets);
            let events = events(&packets);
            assert_eq!(events.len(), 2, "{digits}");
            assert_eq!(events[0].0, ts0);
            assert_eq!(events[1].0.wrapping_sub(events[0].0.wrapping_add(800)), pause, "{digits}");
            // Only silence (and the end repeats) between the tones.
            let first_of_second = packets.iter().position(|p| p.header.payload_type == DTMF_PT && p.header.timestamp == events[1].0).unwrap();
            let between = packets[..first_of_second].iter().filter(|p| p.header.payload_type == 0).count();
            assert_eq!(between as u32, pause / 160 - 2, "{digits}");
            assert!(packets.iter().filter(|p| p.header.payload_type == 0).all(|p| p.payload.iter().all(|&b| b == SILENCE_PCMU)));
        }
        // A leading pause delays the first digit.
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.call.send_dtmf("w5", Duration::from_millis(100)).unwrap();
        rig.tick_until_quiet();
        let packets = rig.packets();
        let ts0 = assert_one_stream(&packets);
        assert_eq!(events(&packets)[0].0, ts0.wrapping_add(4000));
    }

    #[test]
    fn digits_queued_while_sending_follow_after_the_gap() {
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.call.send_dtmf("1", Duration::from_millis(100)).unwrap();
        rig.tick(2);
        rig.call.send_dtmf("2", Duration::from_millis(100)).unwrap();
        rig.tick_until_quiet();
        let packets = rig.packets();
        assert_one_stream(&packets);
        let events = events(&packets);
        assert_eq!(events.iter().map(|(_, ps)| event(ps[0]).0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(events[1].0.wrapping_sub(events[0].0), 1280);
    }

    #[test]
    fn bad_digits_and_peers_without_telephone_event_are_refused() {
        let rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        assert_eq!(rig.call.send_dtmf("12x4", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit('x')));
        assert_eq!(rig.call.send_dtmf("E", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit('E')));
        assert_eq!(rig.call.dtmf_pending(), 0, "nothing of a refused string is queued");
        assert_eq!(rig.call.send_dtmf(&"9".repeat(65), Duration::from_millis(100)), Err(DtmfSendError::TooLong));
        rig.call.send_dtmf(&"9".repeat(64), Duration::from_millis(100)).unwrap();
        assert_eq!(rig.call.send_dtmf("1", Duration::from_millis(100)), Err(DtmfSendError::TooLong));

        let mut rig = Rig::new(None, MediaConfig::default());
        assert_eq!(rig.call.send_dtmf("1", Duration::from_millis(100)), Err(DtmfSendError::NotNegotiated));
        rig.tick(5);
        assert!(rig.packets().iter().all(|p| p.header.payload_type == 0));
        assert!(DtmfSendError::NotNegotiated.to_string().contains("telephone-event"));
    }

    #[test]
    fn digits_wait_while_the_call_is_on_hold() {
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        let remote = rig.call.remote();
        rig.call.update_remote(RemoteMedia { send: false, ..remote });
        rig.call.send_dtmf("4", Duration::from_millis(60)).unwrap();
        rig.tick(10);
        assert!(rig.packets().is_empty());
        assert_eq!(rig.call.dtmf_pending(), 1);
        rig.call.update_remote(remote);
        rig.tick_until_quiet();
        let packets = rig.packets();
        let events = events(&packets);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.iter().map(|p| event(p).3).collect::<Vec<_>>(), [160, 320, 480, 480, 480]);
        assert!(events[0].1[0].header.marker);
    }

    #[test]
    fn without_silence_packets_the_gaps_are_skipped_on_the_clock() {
        let config = MediaConfig { send_silence: false, ..MediaConfig::default() };
        let mut rig = Rig::new(Some(DTMF_PT), config);
        rig.call.send_dtmf("1w2", Duration::from_millis(100)).unwrap();
        rig.tick_until_quiet();
        rig.speak(2);
        rig.tick(3);
        let packets = rig.packets();
        assert!(packets.iter().all(|p| p.payload.first() != Some(&SILENCE_PCMU)), "no silence packets");
        let events = events(&packets);
        assert_eq!(events[1].0.wrapping_sub(events[0].0), 800 + 4000);
        let speech: Vec<_> = packets.iter().filter(|p| p.header.payload_type == 0).collect();
        assert_eq!(speech.len(), 2);
        assert!(speech[0].header.marker && !speech[1].header.marker);
        // Ticks: 5 + 25 for '1' and the pause, 7 for '2', the idle tick, then the speech.
        assert_eq!(speech[0].header.timestamp.wrapping_sub(events[0].0), 160 * 38);
        for w in packets.windows(2) {
            assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1));
        }
    }

    #[test]
    fn the_pacer_thread_sends_dtmf() {
        let rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.peer.set_nonblocking(false).unwrap();
        rig.peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        rig.call.send_dtmf("*", Duration::from_millis(40)).unwrap();
        let pacer = Pacer::start().unwrap();
        pacer.add(rig.call.clone());
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        while got.iter().filter(|p: &&Packet| p.header.payload_type == DTMF_PT && event(p).1).count() < 3 {
            let (n, _) = rig.peer.recv_from(&mut buf).unwrap();
            got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
        }
        let (n, _) = rig.peer.recv_from(&mut buf).unwrap();
        got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
        rig.call.close();
        let events = events(&got);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.iter().map(|p| event(p)).collect::<Vec<_>>(), [(10, false, 10, 160), (10, true, 10, 320), (10, true, 10, 320), (10, true, 10, 320)]);
        let last = got.last().unwrap();
        assert_eq!((last.header.payload_type, last.header.marker), (0, true), "audio resumes with a marker");
        for w in got.windows(2) {
            assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1));
        }
    }
}
