//! The receiving half of a call's RTP session: which packets are accepted,
//! reception statistics (RFC 3550 A.1, A.3, A.8), RFC 4733 DTMF and PCMU
//! decoding of the caller's audio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp_header::RtpView;

/// What to do with a datagram that arrived on the call's RTP port.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Caller audio (the codec's payload, undecoded).
    Audio { payload: Vec<u8>, timestamp: u32, marker: bool },
    /// A DTMF digit finished (reported once per event).
    Dtmf { digit: char, duration_ms: u32 },
    /// Accepted, nothing to act on (DTMF continuation, comfort noise, unknown PT).
    Nothing,
    /// Dropped: not from the negotiated source, or not RTP.
    Rejected(RejectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Malformed,
    WrongSource,
}

/// How the source of the caller's media is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePolicy {
    /// Only from the address in the SDP (the default).
    Strict,
    /// NAT handling: within the latch window, the caller's media may come
    /// from another port (or address) than its SDP names, as long as its IP
    /// is the SDP's or the signalling's ([`RtpReceiver::trust`]) and
    /// [`LATCH_PACKETS`] consecutive packets of one stream come from it; that
    /// address is then the source (and where our RTP goes) for the rest of
    /// the call. Never re-latched; no other address is accepted.
    Latch { window: Duration },
}

/// Consecutive packets of one stream from one address before it is latched.
pub const LATCH_PACKETS: u8 = 3;

/// Reception state for one call.
#[derive(Debug)]
pub struct RtpReceiver {
    expected: SocketAddr,
    policy: SourcePolicy,
    started: Instant,
    latched: Option<(SocketAddr, u32)>,
    /// IPs a NAT'd caller's media may come from (the SDP's, the signalling's).
    trusted: Vec<std::net::IpAddr>,
    /// Latch mode: the address being confirmed, its SSRC and packets so far.
    candidate: Option<(SocketAddr, u32, u8)>,
    /// Latched to another address than the SDP's, not yet taken by the sender.
    new_latch: Option<SocketAddr>,
    /// Latch mode: latched (to any address) since [`RtpReceiver::take_latch`].
    just_latched: bool,
    audio_pt: u8,
    dtmf_pt: Option<u8>,
    dtmf: DtmfDecoder,
    pub stats: ReceptionStats,
    pub last_packet: Option<Instant>,
}

impl RtpReceiver {
    pub fn new(expected: SocketAddr, policy: SourcePolicy, audio_pt: u8, dtmf_pt: Option<u8>, now: Instant) -> Self {
        Self {
            expected,
            policy,
            started: now,
            latched: None,
            trusted: vec![expected.ip()],
            candidate: None,
            new_latch: None,
            just_latched: false,
            audio_pt,
            dtmf_pt,
            dtmf: DtmfDecoder::default(),
            stats: ReceptionStats::default(),
            last_packet: None,
        }
    }

    /// The peer moved (re-INVITE): a new expected address, latching starts over.
    pub fn retarget(&mut self, expected: SocketAddr, audio_pt: u8, dtmf_pt: Option<u8>, now: Instant) {
        self.expected = expected;
        self.audio_pt = audio_pt;
        self.dtmf_pt = dtmf_pt;
        self.latched = None;
        self.candidate = None;
        self.new_latch = None;
        self.just_latched = false;
        self.trusted.truncate(1);
        self.trusted[0] = expected.ip();
        self.started = now;
    }

    /// Another IP the caller's media may come from when latching (the
    /// signalling source: a caller behind NAT sends from its public address).
    pub fn trust(&mut self, ip: std::net::IpAddr) {
        if !self.trusted.contains(&ip) {
            self.trusted.push(ip);
        }
    }

    /// The address latched since the last call, when it is not the SDP's:
    /// our RTP should go there.
    pub fn take_new_latch(&mut self) -> Option<SocketAddr> {
        self.new_latch.take()
    }

    /// Latch mode: the address just latched (the SDP's or another), once;
    /// from then on it is [`RtpReceiver::only_source`].
    pub fn take_latch(&mut self) -> Option<SocketAddr> {
        std::mem::take(&mut self.just_latched).then(|| self.source())
    }

    /// The one address packets are accepted from for now, if there is one:
    /// the SDP's under [`SourcePolicy::Strict`], the latched one once
    /// latched; none while a NAT'd caller's media may still be latched.
    pub fn only_source(&self) -> Option<SocketAddr> {
        match (self.policy, self.latched) {
            (SourcePolicy::Strict, _) => Some(self.expected),
            (SourcePolicy::Latch { .. }, latched) => latched.map(|(addr, _)| addr),
        }
    }

    /// Where the caller's media comes from now (after latching, the latched address).
    pub fn source(&self) -> SocketAddr {
        self.latched.map_or(self.expected, |(addr, _)| addr)
    }

    pub fn handle(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> Inbound {
        let Some(packet) = RtpView::parse(data) else {
            self.stats.rejected += 1;
            return Inbound::Rejected(RejectReason::Malformed);
        };
        let ssrc = packet.ssrc;
        match (self.policy, self.latched) {
            (_, Some((addr, latched_ssrc))) => {
                if from != addr {
                    self.stats.rejected += 1;
                    return Inbound::Rejected(RejectReason::WrongSource);
                }
                // The address is the check; a new SSRC from it is the same
                // caller's stream restarting (a transfer, an SBC re-anchoring
                // media, a gateway sending RFC 4733 events as their own
                // stream). Audio under a new SSRC takes over the statistics
                // (RFC 3550 6.4: a new source); events under their own SSRC
                // are accepted without disturbing them.
                if ssrc != latched_ssrc && packet.payload_type == self.audio_pt {
                    self.latched = Some((addr, ssrc));
                    self.stats.restart();
                }

            }
            (SourcePolicy::Strict, None) => {
                if from != self.expected {
                    self.stats.rejected += 1;
                    return Inbound::Rejected(RejectReason::WrongSource);
                }
                self.latched = Some((from, ssrc));
            }
            (SourcePolicy::Latch { window }, None) => {
                // The negotiated address is always good; another only early
                // on, from a trusted IP, once a few packets in a row confirm it.
                if from != self.expected {
                    let early = now.saturating_duration_since(self.started) <= window;
                    if !early || !self.trusted.contains(&from.ip()) {
                        self.stats.rejected += 1;
                        return Inbound::Rejected(RejectReason::WrongSource);
                    }
                    let count = match self.candidate {
                        Some((addr, s, n)) if addr == from && s == ssrc => n.saturating_add(1),
                        _ => 1,
                    };
                    self.candidate = Some((from, ssrc, count));
                    if count < LATCH_PACKETS {
                        self.stats.rejected += 1;
                        return Inbound::Rejected(RejectReason::WrongSource);
                    }
                    self.new_latch = Some(from);
                }
                self.candidate = None;
                self.latched = Some((from, ssrc));
                self.just_latched = true;
            }
        }
        self.last_packet = Some(now);
        if self.latched.is_some_and(|(_, latched)| latched == ssrc) {
            self.stats.update(packet.sequence_number, packet.timestamp, data.len(), now);
        }
        let pt = packet.payload_type;
        if pt == self.audio_pt {
            Inbound::Audio { payload: packet.payload.to_vec(), timestamp: packet.timestamp, marker: packet.marker }
        } else if Some(pt) == self.dtmf_pt {
            match self.dtmf.packet(packet.timestamp, packet.payload) {
                Some((digit, duration)) => Inbound::Dtmf { digit, duration_ms: duration / 8 },
                None => Inbound::Nothing,
            }
        } else {
            Inbound::Nothing
        }
    }
}

/// RFC 3550 reception statistics.
#[derive(Debug, Default, Clone)]
pub struct ReceptionStats {
    pub ssrc_seen: bool,
    pub packets: u64,
    pub octets: u64,
    pub rejected: u64,
    /// Times the caller's audio came under a new SSRC.
    pub ssrc_changes: u64,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    /// Interarrival jitter in timestamp units (8 kHz), RFC 3550 A.8.
    pub jitter: f64,
    transit: Option<i64>,
    epoch: Option<Instant>,
    expected_prior: u32,
    received_prior: u64,
}

impl ReceptionStats {
    /// A new SSRC: sequence and jitter start over; the counts go on.
    fn restart(&mut self) {
        *self = ReceptionStats { packets: self.packets, octets: self.octets, rejected: self.rejected, ssrc_changes: self.ssrc_changes + 1, ..Default::default() };
    }

    fn update(&mut self, seq: u16, timestamp: u32, _len: usize, now: Instant) {
        if !self.ssrc_seen {
            self.ssrc_seen = true;
            self.base_seq = seq as u32;
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
        }
        self.packets += 1;
        self.octets += 160;
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.duration_since(epoch).as_micros() as i64) * 8 / 1000;
        let transit = arrival - timestamp as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs() as f64;
            if d < 8000.0 * 10.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.transit = Some(transit);
    }

    /// Extended highest sequence number received.
    pub fn extended_max(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    /// Packets lost so far (may be negative with duplicates; clamped at 0).
    pub fn lost(&self) -> u64 {
        if !self.ssrc_seen {
            return 0;
        }
        let expected = (self.extended_max() - self.base_seq + 1) as u64;
        expected.saturating_sub(self.packets)
    }

    /// Fraction lost since the previous call, in 1/256 (RFC 3550 A.3); advances the interval.
    pub fn fraction_lost_interval(&mut self) -> u8 {
        let expected = self.extended_max().wrapping_sub(self.base_seq).wrapping_add(1);
        let expected_interval = expected.wrapping_sub(self.expected_prior) as i64;
        self.expected_prior = expected;
        let received_interval = (self.packets - self.received_prior) as i64;
        self.received_prior = self.packets;
        let lost = expected_interval - received_interval;
        if expected_interval <= 0 || lost <= 0 {
            0
        } else {
            ((lost << 8) / expected_interval).min(255) as u8
        }
    }
}

/// RFC 4733 telephone-event decoding: each event once, when it ends (or when
/// the next one starts and its end packets were all lost).
#[derive(Debug, Default)]
struct DtmfDecoder {
    /// (timestamp, event, reported)
    current: Option<(u32, u8, bool)>,
}

impl DtmfDecoder {
    fn packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<(char, u32)> {
        let [event, flags, d0, d1, ..] = *payload else { return None };
        let end = flags & 0x80 != 0;
        let duration = u16::from_be_bytes([d0, d1]) as u32;
        let mut out = None;
        match self.current {
            Some((ts, _, _)) if ts == timestamp => {}
            Some((_, prev, false)) => {
                // The previous event ended without an end packet reaching us.
                out = event_char(prev).map(|c| (c, 0));
                self.current = Some((timestamp, event, false));
            }
            _ => self.current = Some((timestamp, event, false)),
        }
        if let Some((_, ev, reported)) = self.current.as_mut() {
            if end && !*reported {
                *reported = true;
                return event_char(*ev).map(|c| (c, duration)).or(out);
            }
        }
        out
    }
}

fn event_char(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtp::header::Header;
    use rtp::packet::Packet;
    use webrtc_util::marshal::Marshal;

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        Packet {
            header: Header { version: 2, payload_type: pt, sequence_number: seq, timestamp: ts, ssrc, ..Default::default() },
            payload: Bytes::copy_from_slice(payload),
        }
        .marshal()
        .unwrap()
        .to_vec()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn strict_policy_accepts_only_the_negotiated_source() {
        let now = Instant::now();
        let mut rx = RtpReceiver::new(addr("127.0.0.1:4000"), SourcePolicy::Strict, 0, Some(101), now);
        let p = packet(0, 1, 0, 42, &[0xff; 160]);
        assert_eq!(rx.handle(addr("127.0.0.1:4001"), &p, now), Inbound::Rejected(RejectReason::WrongSource));
        assert!(matches!(rx.handle(addr("127.0.0.1:4000"), &p, now), Inbound::Audio { .. }));
        assert_eq!(rx.stats.rejected, 1);
        assert_eq!(rx.only_source(), Some(addr("127.0.0.1:4000")), "from the start");
        assert_eq!(rx.take_latch(), None, "strict: nothing is latched");
    }

    #[test]
    fn a_new_ssrc_from_the_callers_address_restarts_the_stream_and_events_may_have_their_own() {
        let now = Instant::now();
        let from = addr("127.0.0.1:4000");
        let mut rx = RtpReceiver::new(from, SourcePolicy::Strict, 0, Some(101), now);
        for seq in 1..=5 {
            assert!(matches!(rx.handle(from, &packet(0, seq, seq as u32 * 160, 42, &[0xff; 160]), now), Inbound::Audio { .. }));
        }
        // RFC 4733 events under their own SSRC: decoded, statistics untouched.
        let event = packet(101, 9000, 80_000, 77, &[1, 0x80, 0, 160]);
        assert_eq!(rx.handle(from, &event, now), Inbound::Dtmf { digit: '1', duration_ms: 20 });
        assert_eq!((rx.stats.extended_max(), rx.stats.lost()), (5, 0));
        // The caller's audio restarts under a new SSRC far away in sequence space: no loss counted.
        for seq in 30_000..30_003 {
            assert!(matches!(rx.handle(from, &packet(0, seq, 0, 43, &[0xff; 160]), now), Inbound::Audio { .. }));
        }
        assert_eq!((rx.stats.lost(), rx.stats.ssrc_changes, rx.stats.packets), (0, 1, 8));
        // Another address is still refused.
        assert_eq!(rx.handle(addr("127.0.0.1:4001"), &packet(0, 1, 0, 43, &[0xff; 160]), now), Inbound::Rejected(RejectReason::WrongSource));
    }

    #[test]
    fn latching_takes_a_trusted_ip_confirmed_by_a_few_packets_once_and_early() {
        let now = Instant::now();
        let policy = SourcePolicy::Latch { window: Duration::from_secs(2) };
        let mut rx = RtpReceiver::new(addr("10.0.0.1:4000"), policy, 0, None, now);
        rx.trust("203.0.113.5".parse().unwrap()); // the caller's signalling (public) address
        let wrong = Inbound::Rejected(RejectReason::WrongSource);
        // An off-path sender that guessed the port, first: never latched.
        for seq in 0..10 {
            assert_eq!(rx.handle(addr("198.51.100.1:1"), &packet(0, seq, 0, 8, &[0x11; 160]), now), wrong);
        }
        // The caller behind NAT: its public IP, another port; latched on the third packet in a row.
        let p = |seq| packet(0, seq, seq as u32 * 160, 7, &[0xff; 160]);
        assert_eq!(rx.handle(addr("203.0.113.5:30000"), &p(1), now), wrong);
        assert_eq!(rx.handle(addr("203.0.113.5:30000"), &p(2), now), wrong);
        assert!(matches!(rx.handle(addr("203.0.113.5:30000"), &p(3), now), Inbound::Audio { .. }));
        assert_eq!(rx.source(), addr("203.0.113.5:30000"));
        assert_eq!(rx.take_new_latch(), Some(addr("203.0.113.5:30000")), "our RTP goes there now");
        assert_eq!(rx.take_new_latch(), None);
        assert_eq!(rx.take_latch(), Some(addr("203.0.113.5:30000")), "and only its packets are taken");
        assert_eq!((rx.take_latch(), rx.only_source()), (None, Some(addr("203.0.113.5:30000"))));
        // Latched: another port of the same IP, or the attacker, get nothing.
        assert_eq!(rx.handle(addr("203.0.113.5:30002"), &p(4), now), wrong);
        assert_eq!(rx.handle(addr("198.51.100.1:1"), &packet(0, 11, 0, 8, &[0x11; 160]), now), wrong);
        // A re-INVITE: latching starts over, any trusted source may be latched again.
        rx.retarget(addr("10.0.0.1:5000"), 0, None, now);
        assert_eq!((rx.only_source(), rx.take_latch()), (None, None));
        // Interleaved sources do not add up to a latch.
        let mut mixed = RtpReceiver::new(addr("10.0.0.1:4000"), policy, 0, None, now);
        mixed.trust("203.0.113.5".parse().unwrap());
        for seq in 0..6 {
            let port = if seq % 2 == 0 { 30000 } else { 30002 };
            assert_eq!(mixed.handle(SocketAddr::new("203.0.113.5".parse().unwrap(), port), &p(seq), now), wrong);
        }
        // Too late to latch.
        let mut late = RtpReceiver::new(addr("10.0.0.1:4000"), policy, 0, None, now);
        late.trust("203.0.113.5".parse().unwrap());
        for seq in 0..5 {
            assert_eq!(late.handle(addr("203.0.113.5:30000"), &p(seq), now + Duration::from_secs(3)), wrong);
        }
        // The SDP's own address is taken at once, as without NAT.
        let mut direct = RtpReceiver::new(addr("10.0.0.1:4000"), policy, 0, None, now);
        assert_eq!(direct.only_source(), None, "not before its first packet");
        assert!(matches!(direct.handle(addr("10.0.0.1:4000"), &p(1), now), Inbound::Audio { .. }));
        assert_eq!(direct.take_new_latch(), None);
        assert_eq!(direct.take_latch(), Some(addr("10.0.0.1:4000")), "latched all the same: only its packets from now on");
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        let now = Instant::now();
        let mut rx = RtpReceiver::new(addr("127.0.0.1:4000"), SourcePolicy::Strict, 0, None, now);
        for data in [&[][..], &[0x80][..], &[0u8; 12][..], &[0xff; 40][..]] {
            assert!(matches!(rx.handle(addr("127.0.0.1:4000"), data, now), Inbound::Rejected(_)));
        }
    }

    #[test]
    fn a_header_extension_overrunning_the_packet_from_anyone_is_not_a_panic() {
        // The `rtp` fuzz target's reproducer (fuzz/regressions/rtp/): the rtp crate's
        // reader panicked on it, before the source check.
        let now = Instant::now();
        let mut rx = RtpReceiver::new(addr("127.0.0.1:4000"), SourcePolicy::Strict, 0, None, now);
        let data = [0xB1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xab, 0xcd, 1, 2, 3, 0x5b, 0xbe, 0xde, 0, 1, 9, 9, 9, 9, 0xff, 0, 0, 4];
        assert!(matches!(rx.handle(addr("203.0.113.66:4000"), &data, now), Inbound::Rejected(RejectReason::WrongSource)));
        assert!(matches!(rx.handle(addr("127.0.0.1:4000"), &data, now), Inbound::Audio { ref payload, .. } if payload.is_empty()));
    }

    #[test]
    fn each_dtmf_digit_is_reported_once() {
        let now = Instant::now();
        let mut rx = RtpReceiver::new(addr("127.0.0.1:4000"), SourcePolicy::Strict, 0, Some(101), now);
        let from = addr("127.0.0.1:4000");
        let mut digits = Vec::new();
        let mut seq = 10;
        // '5': three progress packets, three redundant end packets.
        for (flags, dur) in [(0x0a, 160), (0x0a, 320), (0x0a, 480), (0x8a, 640), (0x8a, 640), (0x8a, 640)] {
            seq += 1;
            if let Inbound::Dtmf { digit, duration_ms } = rx.handle(from, &packet(101, seq, 8000, 1, &[5, flags, (dur >> 8) as u8, dur as u8]), now) {
                digits.push((digit, duration_ms));
            }
        }
        // '#' whose end packets were lost, then '1'.
        for (ev, ts, flags) in [(11u8, 16000, 0x0a), (11, 16000, 0x0a), (1, 24000, 0x0a), (1, 24000, 0x8a)] {
            seq += 1;
            if let Inbound::Dtmf { digit, .. } = rx.handle(from, &packet(101, seq, ts, 1, &[ev, flags, 0, 160]), now) {
                digits.push((digit, 0));
            }
        }
        assert_eq!(digits.iter().map(|d| d.0).collect::<String>(), "5#1");
        assert_eq!(digits[0].1, 80);
    }

    #[test]
    fn loss_is_counted_across_a_sequence_wrap() {
        let now = Instant::now();
        let mut rx = RtpReceiver::new(addr("127.0.0.1:4000"), SourcePolicy::Strict, 0, None, now);
        let from = addr("127.0.0.1:4000");
        for seq in [65533u16, 65534, 0, 1, 3] {
            rx.handle(from, &packet(0, seq, 0, 1, &[0xff; 160]), now);
        }
        assert_eq!(rx.stats.extended_max(), 65536 + 3);
        assert_eq!(rx.stats.lost(), 2);
        assert_eq!(rx.stats.fraction_lost_interval(), (2 * 256 / 7) as u8);
    }
}
