//! Reading a received RTP packet (RFC 3550 5.1): the fixed header, the
//! payload between the CSRCs and header extension (skipped whole, 5.3.1) and
//! the padding (its count in the last octet).
//!
//! Our own reader rather than `rtp::packet::Packet::unmarshal`, which panics
//! on a one- or two-byte header extension (RFC 8285) whose elements run past
//! the packet: one datagram to a call's RTP port, from anyone, before any
//! source check (found by the `rtp` fuzz target). We read no extension
//! elements, and allocate nothing.

/// The parts of a received RTP packet the receiver acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Without the header, CSRCs, extension and padding.
    pub payload: &'a [u8],
}

/// Length of the fixed header.
const FIXED: usize = 12;

impl<'a> RtpView<'a> {
    /// `None` for anything that is not a well-formed version 2 RTP packet.
    pub fn parse(data: &'a [u8]) -> Option<RtpView<'a>> {
        let fixed = data.get(..FIXED)?;
        if fixed[0] >> 6 != 2 {
            return None;
        }
        let padding = fixed[0] & 0x20 != 0;
        let extension = fixed[0] & 0x10 != 0;
        let csrcs = usize::from(fixed[0] & 0x0f);
        let mut start = FIXED + 4 * csrcs;
        if extension {
            let words = data.get(start + 2..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = data.len();
        if padding {
            let count = usize::from(*data.last()?);
            if count == 0 || start + count > end {
                return None;
            }
            end -= count;
        }
        Some(RtpView {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            payload: data.get(start..end)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_header_and_payload() {
        let data = [0x80, 0x80 | 101, 0x12, 0x34, 0, 0, 0x1f, 0x40, 0xab, 0xcd, 0xef, 0x01, 5, 0x8a, 0, 160];
        let view = RtpView::parse(&data).unwrap();
        assert_eq!(
            view,
            RtpView { marker: true, payload_type: 101, sequence_number: 0x1234, timestamp: 8000, ssrc: 0xabcd_ef01, payload: &[5, 0x8a, 0, 160] }
        );
    }

    #[test]
    fn csrcs_extension_and_padding_are_not_payload() {
        // CC = 1, X, P: one CSRC, a one-word extension, 4 octets of padding.
        let mut data = vec![0xB1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xab, 0xcd, 1, 2, 3, 4, 0xbe, 0xde, 0, 1, 0x10, 9, 0, 0];
        data.extend_from_slice(&[0xff; 8]);
        data.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(RtpView::parse(&data).unwrap().payload, &[0xff; 8]);
    }

    #[test]
    fn an_extension_whose_elements_overrun_the_packet_is_malformed_not_a_panic() {
        // The `rtp` fuzz target's reproducer (fuzz/regressions/rtp/): an RFC 8285
        // one-byte extension declaring 1 word, with an element of 10 octets in it.
        let data = [0xB1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xab, 0xcd, 1, 2, 3, 0x5b, 0xbe, 0xde, 0, 1, 9, 9, 9, 9, 0xff, 0, 0, 4];
        let view = RtpView::parse(&data).unwrap();
        assert!(view.payload.is_empty(), "the extension is skipped whole: {view:?}");
        assert_eq!(RtpView::parse(&data[..22]), None, "an extension past the end");
    }

    #[test]
    fn truncated_padded_or_other_versions_are_refused() {
        assert_eq!(RtpView::parse(&[0x80; 11]), None, "shorter than the fixed header");
        assert_eq!(RtpView::parse(&[0x40; 20]), None, "version 1");
        assert_eq!(RtpView::parse(&[0x81; 12]), None, "a CSRC past the end");
        let mut padded = vec![0xA0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
        padded.push(4);
        assert_eq!(RtpView::parse(&padded), None, "more padding than payload");
        *padded.last_mut().unwrap() = 0;
        assert_eq!(RtpView::parse(&padded), None, "a padding count of zero");
        *padded.last_mut().unwrap() = 3;
        assert!(RtpView::parse(&padded).unwrap().payload.is_empty());
    }
}
