//! RTCP (RFC 3550 section 6): our sender reports, and the peer's reception
//! reports about our stream turned into per-call statistics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use webrtc_util::marshal::Marshal;

/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// 64-bit NTP timestamp of a wall-clock time.
pub fn ntp_time(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (the LSR/DLSR unit: 1/65536 s).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// What our side says in a report about the caller's stream.
#[derive(Debug, Clone, Copy)]
pub struct OurReception {
    pub remote_ssrc: u32,
    pub fraction_lost: u8,
    pub total_lost: u32,
    pub extended_max_seq: u32,
    pub jitter: u32,
    /// Middle bits of the last SR received from the peer, and how long ago.
    pub last_sr: Option<(u32, Duration)>,
}

/// A sender report for our stream, with a reception block when we receive media.
pub fn sender_report(ssrc: u32, now: SystemTime, rtp_time: u32, packets: u32, octets: u32, reception: Option<OurReception>) -> Vec<u8> {
    let reports = reception.map(|r| vec![reception_block(&r)]).unwrap_or_default();
    let sr = SenderReport { ssrc, ntp_time: ntp_time(now), rtp_time, packet_count: packets, octet_count: octets, reports, ..Default::default() };
    sr.marshal().map(|b| b.to_vec()).unwrap_or_default()
}

/// A receiver report (when we are not sending, e.g. on hold).
pub fn receiver_report(ssrc: u32, reception: OurReception) -> Vec<u8> {
    let rr = ReceiverReport { ssrc, reports: vec![reception_block(&reception)], ..Default::default() };
    rr.marshal().map(|b| b.to_vec()).unwrap_or_default()
}

fn reception_block(r: &OurReception) -> ReceptionReport {
    let (lsr, dlsr) = r.last_sr.map_or((0, 0), |(lsr, ago)| (lsr, (ago.as_secs_f64() * 65536.0) as u32));
    ReceptionReport {
        ssrc: r.remote_ssrc,
        fraction_lost: r.fraction_lost,
        total_lost: r.total_lost.min(0x7f_ffff),
        last_sequence_number: r.extended_max_seq,
        jitter: r.jitter,
        last_sender_report: lsr,
        delay: dlsr,
    }
}

/// What the peer told us in one compound RTCP packet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerReport {
    /// The peer's view of our stream.
    pub fraction_lost: Option<f32>,
    pub total_lost: Option<u32>,
    /// In milliseconds.
    pub jitter_ms: Option<f32>,
    pub rtt: Option<Duration>,
    /// The peer's own SR: (its SSRC, middle NTP bits) for our LSR field.
    pub sender_report: Option<(u32, u32)>,
    pub goodbye: bool,
}

/// RTCP packet types (RFC 3550 12.1).
const SR: u8 = 200;
const RR: u8 = 201;
const BYE: u8 = 203;
/// Octets of one reception report block (RFC 3550 6.4.1).
const BLOCK: usize = 24;

/// Parses a compound RTCP packet from the peer; `None` for anything that is not RTCP.
///
/// Our own reader of the few parts we use (SR, RR, BYE; other packets skipped by their
/// length) rather than `rtcp::packet::unmarshal`, which panics on a short transport-layer
/// NACK, and others, from anyone who can reach the port (found by the `rtcp` fuzz target).
pub fn parse(data: &[u8], our_ssrc: u32, now: SystemTime) -> Option<PeerReport> {
    let mut out = PeerReport::default();
    let now_mid = ntp_middle(ntp_time(now));
    let mut rest = data;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        // V=2, P, RC/FMT (5 bits); PT; length in 32-bit words minus one (6.4.1).
        let header = rest.get(..4)?;
        if header[0] >> 6 != 2 {
            return None;
        }
        let count = usize::from(header[0] & 0x1f);
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let body = rest.get(4..len)?;
        rest = &rest[len..];
        let blocks = match header[1] {
            SR => {
                let sr = body.get(..24)?;
                out.sender_report = Some((be32(&sr[0..4]), be32(&sr[6..10])));
                body.get(24..24 + count * BLOCK)?
            }
            RR => body.get(4..4 + count * BLOCK)?,
            BYE => {
                out.goodbye = true;
                continue;
            }
            _ => continue,
        };
        for b in blocks.chunks_exact(BLOCK).filter(|b| be32(&b[0..4]) == our_ssrc) {
            out.fraction_lost = Some(f32::from(b[4]) / 256.0);
            out.total_lost = Some(u32::from_be_bytes([0, b[5], b[6], b[7]]));
            out.jitter_ms = Some(be32(&b[12..16]) as f32 / 8.0);
            let (lsr, dlsr) = (be32(&b[16..20]), be32(&b[20..24]));
            if lsr != 0 {
                let rtt = now_mid.wrapping_sub(lsr).wrapping_sub(dlsr);
                if rtt < 65536 * 60 {
                    out.rtt = Some(Duration::from_secs_f64(rtt as f64 / 65536.0));
                }
            }
        }
    }
    Some(out)
}

/// A big-endian u32 from 4 octets.
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_time_of_the_unix_epoch() {
        assert_eq!(ntp_time(UNIX_EPOCH) >> 32, NTP_UNIX_OFFSET);
        let half = UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_time(half) & 0xffff_ffff, 1 << 31);
    }

    #[test]
    fn a_peer_receiver_report_about_our_stream_becomes_stats() {
        let now = SystemTime::now();
        let sent_at = now - Duration::from_millis(300);
        let lsr = ntp_middle(ntp_time(sent_at));
        let rr = ReceiverReport {
            ssrc: 99,
            reports: vec![ReceptionReport {
                ssrc: 1234,
                fraction_lost: 64,
                total_lost: 10,
                last_sequence_number: 5000,
                jitter: 80,
                last_sender_report: lsr,
                delay: 65536 / 10, // the peer held our SR for 100 ms
            }],
            ..Default::default()
        };
        let bytes = rr.marshal().unwrap();
        let report = parse(&bytes, 1234, now).unwrap();
        assert_eq!(report.fraction_lost, Some(0.25));
        assert_eq!(report.total_lost, Some(10));
        assert_eq!(report.jitter_ms, Some(10.0));
        let rtt = report.rtt.unwrap().as_millis();
        assert!((195..=205).contains(&rtt), "rtt {rtt} ms");
        // Reports about other streams are not ours.
        assert_eq!(parse(&bytes, 1, now).unwrap().fraction_lost, None);
    }

    #[test]
    fn our_sender_report_round_trips() {
        let now = SystemTime::now();
        let bytes = sender_report(
            7,
            now,
            16000,
            100,
            16000,
            Some(OurReception { remote_ssrc: 8, fraction_lost: 128, total_lost: 0x01_0203, extended_max_seq: 42, jitter: 16, last_sr: None }),
        );
        let packets = rtcp::packet::unmarshal(&mut &bytes[..]).unwrap();
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
        assert_eq!((sr.ssrc, sr.rtp_time, sr.packet_count, sr.octet_count), (7, 16000, 100, 16000));
        assert_eq!(sr.reports[0].last_sequence_number, 42);
        let parsed = parse(&bytes, 8, now).unwrap();
        assert_eq!(parsed.sender_report, Some((7, ntp_middle(ntp_time(now)))));
        assert_eq!((parsed.fraction_lost, parsed.total_lost, parsed.jitter_ms, parsed.rtt), (Some(0.5), Some(0x01_0203), Some(2.0), None));
        assert!(!parsed.goodbye);
    }

    #[test]
    fn garbage_is_not_rtcp() {
        assert!(parse(&[], 1, SystemTime::now()).is_none());
        assert!(parse(&[0x80, 0xc8, 0, 50, 1, 2], 1, SystemTime::now()).is_none());
    }

    #[test]
    fn a_short_transport_layer_nack_is_skipped_not_a_panic() {
        // The `rtcp` fuzz target's reproducer (fuzz/regressions/rtcp/): a one-word NACK
        // (PT 205) ahead of an SR; the rtcp crate's reader panicked on it.
        let data = [
            0x81, 0xcd, 0, 1, 0, 7, 0xfd, 0, 0x80, 0xc8, 0x12, 0x34, 0x56, 0x78, 0, 0x33, 0x19, 0x99, 0x81, 0x36, 0xff, 0xfb, 0xff, 0xff, 0x54, 0x32,
            0x12, 0, 0x0c, 0, 0x25, 0xab, 6, 0xcd,
        ];
        assert_eq!(parse(&data, 1, SystemTime::now()), None, "the SR's length runs past the end");
        let nack_then_bye = [0x81, 0xcd, 0, 1, 0, 7, 0xfd, 0, 0x81, 0xcb, 0, 1, 0, 0, 0, 9];
        assert!(parse(&nack_then_bye, 1, SystemTime::now()).unwrap().goodbye);
    }
}
