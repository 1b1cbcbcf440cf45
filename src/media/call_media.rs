//! One call's media state: its playout buffer, RTP sender and receiver,
//! DTMF queue, RTCP, caller audio and counters. The pacer ([`super::Pacer`])
//! ticks it every 20 ms; each tick builds one packet and hands it to the
//! call's leg ([`MediaLeg`]: UDP sockets for SIP, a WebRTC track).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use super::dtmf::{DtmfQueue, DtmfSendError, DtmfTick};
use super::leg::MediaLeg;
use super::playout::{FrameKind, Playout, PlayoutEvent};
use super::rtcp::{self, OurReception, PeerReport};
use super::rtp_in::{Inbound, RtpReceiver, SourcePolicy};
use super::rtp_out::RtpSender;
use super::shard::{Paced, TickOut};
use super::{FRAME_BYTES, RATE, SILENCE_PCMU};

/// Silence, prebuilt per codec (mu-law's zero, and A-law's).
const SILENCE_FRAME_PCMU: [u8; FRAME_BYTES] = [SILENCE_PCMU; FRAME_BYTES];
const SILENCE_FRAME_PCMA: [u8; FRAME_BYTES] = [SILENCE_PCMA; FRAME_BYTES];
/// A-law code of a zero sample (G.711: 0x80 with the even bits inverted).
const SILENCE_PCMA: u8 = 0xD5;

/// A tick later than this after its deadline counts as a late send.
const LATE: Duration = Duration::from_millis(10);
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
    /// Connect a SIP call's RTP socket to the caller's media address once
    /// it is the only one accepted (cheaper sends; see [`MediaLeg`]).
    /// `VOXLINE_RTP_CONNECT=0` turns it off (`voxline serve`).
    pub connect_rtp: bool,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self { send_silence: true, source_policy: SourcePolicy::Strict, connect_rtp: true }
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

impl RemoteMedia {
    /// Before the peer's answer to our offer (delayed offer): nowhere to
    /// send (port 0, which no negotiated stream has) and not sending.
    pub fn awaiting_answer(ip: std::net::IpAddr) -> Self {
        let nowhere = SocketAddr::new(ip, 0);
        RemoteMedia { rtp: nowhere, rtcp: nowhere, payload_type: 0, dtmf_payload_type: None, pcma: false, send: false }
    }

    pub fn is_awaiting_answer(&self) -> bool {
        self.rtp.port() == 0
    }
}

/// What a call's media reports to its owner.
///
/// The larger variants are boxed: every call's event channel allocates a
/// block of 32 of these up front, so each byte here is 32 per call (64-byte
/// events made it 2 KiB; 32-byte ones 1 KiB).
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    Playout(Box<PlayoutEvent>),
    Dtmf { digit: char, duration_ms: u32 },
    /// Caller audio (PCMU payload as received), only while subscribed.
    CallerAudio { pcmu: Vec<u8>, timestamp: u32 },
    /// The peer's view of our stream from its RTCP.
    PeerReport(Box<PeerReport>),
    /// The call is over (published by the call's owner, not the media plane).
    Ended { reason: String },
    /// A transfer's progress, a failed DTMF INFO (published by the SIP task).
    Signal(Box<super::CallSignal>),
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
    /// Where the RTP socket is connected to ([`CallMedia::reconnect`]).
    connected: Option<SocketAddr>,
}

/// A call's media: its leg, playout buffer, RTP state and counters.
#[derive(Debug)]
pub struct CallMedia {
    pub id: String,
    leg: MediaLeg,
    pub playout: Mutex<Playout>,
    tx: Mutex<TxState>,
    rx: Mutex<RtpReceiver>,
    caller_audio: Mutex<VecDeque<i16>>,
    pub stats: MediaStats,
    events: UnboundedSender<MediaEvent>,
    config: MediaConfig,
    subscribe_audio: AtomicBool,
    closed: AtomicBool,
    /// Media may flow: false for an incoming SIP call until its ACK.
    confirmed: AtomicBool,
    created: Instant,
    /// Spreads the calls' RTCP reports over the interval.
    rtcp_phase: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CallMedia {
    /// A UDP leg's sockets are bound and non-blocking (see [`super::PortAllocator`]).
    pub fn new(
        id: String,
        leg: MediaLeg,
        remote: RemoteMedia,
        config: MediaConfig,
        events: UnboundedSender<MediaEvent>,
    ) -> Arc<Self> {
        let now = Instant::now();
        let rx = RtpReceiver::new(remote.rtp, config.source_policy, remote.payload_type, remote.dtmf_payload_type, now);
        let call = Arc::new(Self {
            rtcp_phase: rand::random::<u64>() % RTCP_TICKS,
            id,
            leg,
            playout: Mutex::new(Playout::new()),
            tx: Mutex::new(TxState {
                sender: RtpSender::new(remote.payload_type),
                remote,
                peer_sr: None,
                peer: PeerReport::default(),
                dtmf: DtmfQueue::default(),
                connected: None,
            }),
            rx: Mutex::new(rx),
            caller_audio: Mutex::new(VecDeque::new()),
            stats: MediaStats::default(),
            events,
            config,
            subscribe_audio: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            confirmed: AtomicBool::new(true),
            created: now,
        });
        call.reconnect(&mut lock(&call.tx));
        call
    }

    /// Connects the RTP socket to the one address the caller's media is
    /// accepted from ([`RtpReceiver::only_source`]) when our RTP goes there
    /// too, and disconnects it when there is none (latching starts over
    /// after a re-INVITE, or no address yet). Called with the transmit state
    /// locked, so the pacer's next send sees the socket as it is.
    fn reconnect(&self, tx: &mut TxState) {
        let only = lock(&self.rx).only_source();
        let usable = |a: &SocketAddr| a.port() != 0 && !a.ip().is_unspecified() && *a == tx.remote.rtp;
        let want = only.filter(|a| self.config.connect_rtp && matches!(self.leg, MediaLeg::Udp { .. }) && usable(a));
        if want == tx.connected {
            return;
        }
        if let Err(e) = self.leg.connect_rtp(want) {
            // Sends name their address again; the socket may still be
            // connected to the last peer (Linux keeps it on a failed connect).
            tracing::warn!(call = %self.id, to = ?want, error = %e, "RTP socket (dis)connect failed");
            let _ = self.leg.connect_rtp(None);
            tx.connected = None;
            return;
        }
        tx.connected = want;
    }

    /// Sends nothing until [`CallMedia::confirm`]: an incoming SIP call
    /// answered but not acknowledged may come from a spoofed address, and
    /// media to it would make us an amplifier. The clock runs on meanwhile
    /// and the playout waits (the greeting starts when the ACK comes).
    pub fn await_confirmation(&self) {
        self.confirmed.store(false, Ordering::Relaxed);
    }

    /// The handshake completed (ACK): media may flow.
    pub fn confirm(&self) {
        self.confirmed.store(true, Ordering::Relaxed);
    }

    /// Our RTP address (a SIP call's).
    pub fn local_rtp(&self) -> Option<SocketAddr> {
        self.leg.local_rtp()
    }

    /// Clones of a SIP call's sockets, for its receive tasks.
    pub fn sockets(&self) -> Option<io::Result<(std::net::UdpSocket, std::net::UdpSocket)>> {
        self.leg.sockets()
    }

    /// Another IP the caller's media may come from when latching (`--nat`):
    /// the signalling source.
    pub fn trust_source(&self, ip: std::net::IpAddr) {
        lock(&self.rx).trust(ip);
    }

    /// New negotiation (re-INVITE): address, codec or hold state changed.
    pub fn update_remote(&self, remote: RemoteMedia) {
        let mut tx = lock(&self.tx);
        if tx.remote.rtp != remote.rtp || tx.remote.payload_type != remote.payload_type || tx.remote.dtmf_payload_type != remote.dtmf_payload_type {
            lock(&self.rx).retarget(remote.rtp, remote.payload_type, remote.dtmf_payload_type, Instant::now());
        }
        tx.sender.payload_type = remote.payload_type;
        tx.remote = remote;
        self.reconnect(&mut tx);
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
        self.leg.close();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// An RTP packet the leg itself received (a WebRTC track's, decrypted):
    /// from the negotiated peer by construction.
    pub fn handle_leg_rtp(&self, data: &[u8]) {
        let from = lock(&self.tx).remote.rtp;
        self.handle_rtp(from, data);
    }

    /// A datagram on the RTP port.
    pub fn handle_rtp(&self, from: SocketAddr, data: &[u8]) {
        let (inbound, moved, latched) = {
            let mut rx = lock(&self.rx);
            let inbound = rx.handle(from, data, Instant::now());
            (inbound, rx.take_new_latch(), rx.take_latch().is_some())
        };
        if moved.is_some() || latched {
            let mut tx = lock(&self.tx);
            if let Some(addr) = moved {
                // A caller behind NAT: send where its media comes from.
                tracing::info!(call = %self.id, sdp = %tx.remote.rtp, latched = %addr, "media latched");
                if tx.remote.rtcp == tx.remote.rtp {
                    tx.remote.rtcp = addr;
                }
                tx.remote.rtp = addr;
            }
            self.reconnect(&mut tx);
        }
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
        let _ = self.events.send(MediaEvent::PeerReport(Box::new(report)));
    }

    /// One tick of the pacing clock: sends this call's next packet. The
    /// packet is built in `out.buf`; the server-wide counters are tallied in
    /// `out` and added up once per tick by the shard.
    pub(super) fn tick(&self, tick: u64, deadline: Instant, out: &mut TickOut) {
        let mut tx = lock(&self.tx);
        if !self.confirmed.load(Ordering::Relaxed) {
            // Not acknowledged yet: nothing goes out, nothing is consumed.
            tx.sender.skip();
            return;
        }
        if !tx.remote.send {
            // On hold: the clock runs on, nothing is sent or consumed; DTMF waits.
            tx.dtmf.hold();
            tx.sender.skip();
            return;
        }
        let buf = &mut out.buf;
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
                Self::silence_packet(&mut tx, marker, buf)
            }
            DtmfTick::Idle => {
                let frame = {
                    let mut playout = lock(&self.playout);
                    let frame = playout.tick(deadline);
                    if playout.has_events() {
                        for event in playout.take_events() {
                            let _ = self.events.send(MediaEvent::Playout(Box::new(event)));
                        }
                    }
                    frame
                };
                match frame.kind {
                    FrameKind::Speech => {
                        self.stats.speech_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    FrameKind::Underrun => {
                        self.stats.underruns.fetch_add(1, Ordering::Relaxed);
                        out.underruns += 1;
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
                if frame.kind == FrameKind::Speech {
                    Self::audio_packet(&mut tx, frame.payload, marker, buf)
                } else {
                    Self::silence_packet(&mut tx, marker, buf)
                }
            }
        };
        let dest = tx.remote.rtp;
        match self.leg.send_rtp(&buf[..n], dest, tx.connected == Some(dest)) {
            Ok(_) => {
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                out.sent += 1;
                self.stats.octets_sent.fetch_add(n.saturating_sub(12) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(call = %self.id, %dest, error = %e, "RTP send failed");
            }
        }
        if Instant::now().saturating_duration_since(deadline) > LATE {
            self.stats.late_sends.fetch_add(1, Ordering::Relaxed);
            out.late += 1;
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

    /// A silence packet from the prebuilt frame of the call's codec.
    fn silence_packet(tx: &mut TxState, marker: bool, buf: &mut [u8]) -> usize {
        let payload = if tx.remote.pcma { &SILENCE_FRAME_PCMA } else { &SILENCE_FRAME_PCMU };
        tx.sender.packet(payload, marker, buf)
    }

    pub(super) fn skip(&self, ticks: u64) {
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
        if let Err(e) = self.leg.send_rtcp(&bytes, tx.remote.rtcp) {
            tracing::debug!(call = %self.id, error = %e, "RTCP send failed");
        }
    }
}

impl Paced for Arc<CallMedia> {
    fn is_closed(&self) -> bool {
        CallMedia::is_closed(self)
    }

    fn tick(&self, tick: u64, deadline: Instant, out: &mut TickOut) {
        CallMedia::tick(self, tick, deadline, out);
    }

    fn skip(&self, ticks: u64) {
        CallMedia::skip(self, ticks);
    }
}

#[cfg(test)]
#[path = "call_media_tests.rs"]
mod tests;
