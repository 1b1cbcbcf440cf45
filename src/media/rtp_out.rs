//! The sending half of a call's RTP session (RFC 3550): one SSRC, a random
//! start for sequence and timestamp, 160-sample frames, and the counters an
//! RTCP sender report carries.

use rand::Rng;

use super::FRAME_BYTES;

/// Sender state.
#[derive(Debug, Clone)]
pub struct RtpSender {
    pub ssrc: u32,
    pub payload_type: u8,
    seq: u16,
    timestamp: u32,
    /// RTP timestamp of the last packet sent (for sender reports).
    last_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

impl RtpSender {
    /// A sender with random SSRC, sequence and timestamp (RFC 3550 5.1).
    pub fn new(payload_type: u8) -> Self {
        let mut rng = rand::thread_rng();
        let timestamp = rng.gen();
        Self { ssrc: rng.gen(), payload_type, seq: rng.gen(), timestamp, last_timestamp: timestamp, packets: 0, octets: 0 }
    }

    /// The next packet, serialized into `buf`; returns its length. Advances
    /// sequence and timestamp.
    pub fn packet(&mut self, payload: &[u8; FRAME_BYTES], marker: bool, buf: &mut [u8]) -> usize {
        self.write(self.payload_type, self.timestamp, marker, payload, buf)
    }

    /// An RFC 4733 telephone-event packet for this tick: payload type
    /// `payload_type`, the event's own timestamp (where it began) in the
    /// header; takes the next sequence number and advances the clock by one
    /// frame like [`RtpSender::packet`], so the audio after it continues on
    /// the same timeline.
    pub fn event_packet(&mut self, payload_type: u8, event_timestamp: u32, marker: bool, payload: &[u8; 4], buf: &mut [u8]) -> usize {
        self.write(payload_type, event_timestamp, marker, payload, buf)
    }

    fn write(&mut self, payload_type: u8, timestamp: u32, marker: bool, payload: &[u8], buf: &mut [u8]) -> usize {
        // The fixed header (RFC 3550 5.1: V=2, no padding, extension or
        // CSRCs), written in place: nothing allocated per packet.
        let n = HEADER_LEN;
        if buf.len() < n + payload.len() {
            return 0;
        }
        buf[0] = 0x80;
        buf[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
        buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        buf[n..n + payload.len()].copy_from_slice(payload);
        // The sender report maps the wall clock to the stream's clock, not to
        // an event's start.
        self.last_timestamp = self.timestamp;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_BYTES as u32);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        n + payload.len()
    }

    /// Advances the clock by one frame without sending (hold): the stream
    /// resumes on the same timeline, sequence numbers stay contiguous.
    pub fn skip(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(FRAME_BYTES as u32);
    }

    /// RTP timestamp of the last packet sent.
    pub fn last_timestamp(&self) -> u32 {
        self.last_timestamp
    }

    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// RTP timestamp of the current tick (what the next audio packet carries).
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
}

/// Size of the RTP header we write (no CSRCs, no extension).
const HEADER_LEN: usize = 12;
/// Size of a PCMU RTP packet.
pub const PACKET_LEN: usize = HEADER_LEN + FRAME_BYTES;

#[cfg(test)]
mod tests {
    use super::*;
    use rtp::packet::Packet;
    use webrtc_util::marshal::Unmarshal;

    #[test]
    fn packets_carry_contiguous_sequence_and_timestamps() {
        let mut tx = RtpSender::new(0);
        let (seq0, ts0) = (tx.next_seq(), tx.timestamp);
        let mut buf = [0u8; 1500];
        let mut seen = Vec::new();
        for i in 0..3 {
            let n = tx.packet(&[0x55; FRAME_BYTES], i == 0, &mut buf);
            assert_eq!(n, PACKET_LEN);
            let p = Packet::unmarshal(&mut &buf[..n]).unwrap();
            seen.push((p.header.sequence_number, p.header.timestamp, p.header.marker, p.header.payload_type, p.header.ssrc));
            assert_eq!(p.payload.len(), FRAME_BYTES);
        }
        assert_eq!(seen[0], (seq0, ts0, true, 0, tx.ssrc));
        assert_eq!(seen[1], (seq0.wrapping_add(1), ts0.wrapping_add(160), false, 0, tx.ssrc));
        assert_eq!(seen[2].1, ts0.wrapping_add(320));
        assert_eq!((tx.packets, tx.octets), (3, 480));
    }

    #[test]
    fn a_skipped_frame_advances_the_timestamp_only() {
        let mut tx = RtpSender::new(8);
        let seq0 = tx.next_seq();
        let ts0 = tx.timestamp;
        tx.skip();
        let mut buf = [0u8; PACKET_LEN];
        tx.packet(&[0; FRAME_BYTES], false, &mut buf);
        let p = Packet::unmarshal(&mut &buf[..]).unwrap();
        assert_eq!(p.header.sequence_number, seq0);
        assert_eq!(p.header.timestamp, ts0.wrapping_add(160));
        assert_eq!(p.header.payload_type, 8);
    }

    #[test]
    fn an_event_packet_keeps_its_timestamp_and_the_clock_runs_on() {
        let mut tx = RtpSender::new(0);
        let (seq0, ts0) = (tx.next_seq(), tx.timestamp());
        let mut buf = [0u8; PACKET_LEN];
        let n = tx.event_packet(101, ts0, true, &[1, 0x0a, 0, 160], &mut buf);
        assert_eq!(n, 16);
        let p = Packet::unmarshal(&mut &buf[..n]).unwrap();
        assert_eq!((p.header.payload_type, p.header.sequence_number, p.header.timestamp, p.header.marker), (101, seq0, ts0, true));
        assert_eq!(&p.payload[..], &[1, 0x0a, 0, 160]);
        tx.event_packet(101, ts0, false, &[1, 0x8a, 1, 64], &mut buf);
        let p = Packet::unmarshal(&mut &buf[..16]).unwrap();
        assert_eq!((p.header.sequence_number, p.header.timestamp), (seq0.wrapping_add(1), ts0));
        let n = tx.packet(&[0xff; FRAME_BYTES], true, &mut buf);
        let p = Packet::unmarshal(&mut &buf[..n]).unwrap();
        assert_eq!((p.header.payload_type, p.header.sequence_number, p.header.timestamp), (0, seq0.wrapping_add(2), ts0.wrapping_add(320)));
        assert_eq!((tx.packets, tx.octets), (3, 4 + 4 + 160));
    }
}
