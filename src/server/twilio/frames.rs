//! Between Twilio's `media` payloads (base64 mu-law, no RTP) and the RTP
//! packets the call's media plane speaks: the pacer's packets lose their
//! header on the way out; the caller's frames get one on the way in, so the
//! same reception path (caller audio, last-heard time) as for SIP applies.
//! Base64 (RFC 4648, standard alphabet, padded) by the `base64` crate.

use base64::Engine as _;
use super::messages::Media;
use crate::media::{FRAME, RATE};

/// Our RTP header (no CSRCs, no extension: the pacer writes none).
const RTP_HEADER: usize = 12;
/// PCMU's static payload type.
const PCMU: u8 = 0;
/// The SSRC given to a Twilio caller's frames.
const TWILIO_SSRC: u32 = 0x7477_696c;

/// The mu-law payload of one of our RTP packets; `None` for anything but
/// PCMU audio (telephone-events: Twilio's stream carries audio only).
pub fn payload_of(packet: &[u8]) -> Option<&[u8]> {
    let audio = packet.len() > RTP_HEADER && packet[0] >> 6 == 2 && packet[1] & 0x7f == PCMU;
    audio.then(|| &packet[RTP_HEADER..])
}

/// An RTP packet carrying the caller's frame number `chunk` (from 1), sent
/// `timestamp_ms` after the stream started.
pub fn caller_packet(chunk: u32, timestamp_ms: u32, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(RTP_HEADER + payload.len());
    packet.extend_from_slice(&[0x80, PCMU]);
    packet.extend_from_slice(&(chunk as u16).to_be_bytes());
    packet.extend_from_slice(&timestamp_ms.wrapping_mul(RATE / 1000).to_be_bytes());
    packet.extend_from_slice(&TWILIO_SSRC.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// The RTP packet for Twilio's `media` message, the caller's `heard`-th
/// (numbers it when Twilio's `chunk` is missing); `None` when its payload is
/// not base64.
pub fn caller_media_packet(media: &Media, heard: u32) -> Option<Vec<u8>> {
    let payload = base64_decode(&media.payload)?;
    let chunk = media.chunk.as_deref().and_then(|c| c.parse().ok()).unwrap_or(heard);
    // Without Twilio's timestamp, the chunk's place on a 20 ms grid; like the RTP
    // timestamp it becomes, it wraps (any u32 `chunk` is Twilio's to send).
    let frame_ms = FRAME.as_millis() as u32;
    let at_ms = media.timestamp.as_deref().and_then(|t| t.parse().ok()).unwrap_or(chunk.saturating_sub(1).wrapping_mul(frame_ms));
    Some(caller_packet(chunk, at_ms, &payload))
}

/// Twilio's `media` payloads: standard, padded base64.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `None` when `text` is not padded standard base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648s_test_vectors() {
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        let frame: Vec<u8> = (0..160u16).map(|i| (i * 7) as u8).collect();
        assert_eq!(base64_decode(&base64_encode(&frame)), Some(frame));
        assert_eq!(base64_decode("Zm9"), None, "not a multiple of 4");
        assert_eq!(base64_decode("Zm9v!A=="), None, "not in the alphabet");
        assert_eq!(base64_decode("Zg==Zm9v"), None, "padding only at the end");
    }

    #[test]
    fn our_pcmu_packets_lose_their_header_and_the_callers_frames_get_one() {
        let packet = caller_packet(3, 40, &[0xff; 160]);
        assert_eq!(packet.len(), 172);
        assert_eq!(&packet[2..4], &[0, 3], "sequence number from the chunk");
        assert_eq!(u32::from_be_bytes(packet[4..8].try_into().unwrap()), 320, "40 ms at 8 kHz");
        assert_eq!(payload_of(&packet), Some(&[0xff; 160][..]));
        let mut event = packet.clone();
        event[1] = 101;
        assert_eq!(payload_of(&event), None, "telephone-events stay off the stream");
    }

    #[test]
    fn a_huge_chunk_number_without_a_timestamp_wraps_instead_of_overflowing() {
        // Found by the `twilio` fuzz target (fuzz/regressions/twilio/): chunk * 20 ms
        // overflowed u32 and panicked in builds with overflow checks.
        let media = Media { track: None, chunk: Some("4294967295".into()), timestamp: None, payload: "/////w==".into() };
        let packet = caller_media_packet(&media, 1).unwrap();
        assert_eq!(&packet[2..4], &[0xff, 0xff], "sequence number: the chunk's low 16 bits");
        let at_ms = (u32::MAX - 1).wrapping_mul(20);
        assert_eq!(u32::from_be_bytes(packet[4..8].try_into().unwrap()), at_ms.wrapping_mul(8));
    }
}
