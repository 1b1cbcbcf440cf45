//! The codecs voxline sends, and the static payload types of RFC 3551.

use std::fmt;

use crate::rtpmap::RtpMap;

/// The RTP encoding name of DTMF events (RFC 4733 §7.1.1).
pub const TELEPHONE_EVENT: &str = "telephone-event";

/// The payload type voxline offers telephone-event on; dynamic, as is usual (RFC 4733 §7.1.1
/// gives no static one).
pub const DEFAULT_TELEPHONE_EVENT_PT: u8 = 101;

/// The `a=fmtp` events voxline declares for telephone-event: DTMF 0–9, *, #, A–D and flash
/// (RFC 4733 §3.2).
pub const TELEPHONE_EVENT_FMTP: &str = "0-16";

/// A G.711 codec voxline can send, 8 kHz mono (RFC 3551 §4.5.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// RTP clock rate of both G.711 codecs, in Hz.
    pub const CLOCK_RATE: u32 = 8000;

    /// The RTP encoding name: `PCMU` or `PCMA`.
    pub const fn payload_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The static payload type of RFC 3551 table 4: 0 for PCMU, 8 for PCMA.
    pub const fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The RTP clock rate, 8000 Hz.
    pub const fn clock_rate(self) -> u32 {
        Self::CLOCK_RATE
    }

    /// The codec a payload type stands for in an `m=` line: its `a=rtpmap` when present
    /// (which may also bind a dynamic type to PCMU/8000), else the static assignment.
    pub fn for_payload(pt: u8, rtpmap: Option<&RtpMap>) -> Option<Codec> {
        match rtpmap {
            Some(map) => [Codec::Pcmu, Codec::Pcma]
                .into_iter()
                .find(|codec| map.is(codec.payload_name(), Self::CLOCK_RATE)),
            None => [Codec::Pcmu, Codec::Pcma]
                .into_iter()
                .find(|codec| codec.static_pt() == pt),
        }
    }
}

impl fmt::Display for Codec {
    /// `PCMU/8000` or `PCMA/8000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.payload_name(), self.clock_rate())
    }
}

/// The encoding name and clock rate of a static RTP payload type (RFC 3551 §6, tables 4 and 5).
pub(crate) fn static_payload(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        25 => ("CelB", 90000),
        26 => ("JPEG", 90000),
        28 => ("nv", 90000),
        31 => ("H261", 90000),
        32 => ("MPV", 90000),
        33 => ("MP2T", 90000),
        34 => ("H263", 90000),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> RtpMap {
        RtpMap::parse(text).expect(text)
    }

    #[test]
    fn static_types_without_rtpmap() {
        assert_eq!(Codec::for_payload(0, None), Some(Codec::Pcmu));
        assert_eq!(Codec::for_payload(8, None), Some(Codec::Pcma));
        assert_eq!(Codec::for_payload(18, None), None);
        assert_eq!(Codec::for_payload(96, None), None);
    }

    #[test]
    fn rtpmap_decides_over_the_static_table() {
        assert_eq!(
            Codec::for_payload(112, Some(&map("112 PCMU/8000"))),
            Some(Codec::Pcmu)
        );
        assert_eq!(
            Codec::for_payload(0, Some(&map("0 pcma/8000"))),
            Some(Codec::Pcma)
        );
        assert_eq!(Codec::for_payload(0, Some(&map("0 PCMU/16000"))), None);
        assert_eq!(Codec::for_payload(0, Some(&map("0 PCMU/8000/2"))), None);
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(Codec::Pcmu.to_string(), "PCMU/8000");
        assert_eq!(
            (Codec::Pcma.payload_name(), Codec::Pcma.static_pt()),
            ("PCMA", 8)
        );
        assert_eq!(static_payload(18), Some(("G729", 8000)));
    }
}
