//! `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]` (RFC 8866 §6.6).

use std::fmt;

/// One `a=rtpmap` attribute: what an RTP payload type carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The payload type, 0–127.
    pub pt: u8,
    /// The encoding name as written (`PCMU`, `telephone-event`, `opus`); compare it
    /// case-insensitively (RFC 8866 §6.6, RFC 4855 §3).
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters; for audio the channel count. `None` means one channel.
    pub channels: Option<u16>,
}

impl RtpMap {
    /// Whether this maps `encoding/clock_rate` (name case-insensitive) with one channel.
    pub fn is(&self, encoding: &str, clock_rate: u32) -> bool {
        self.encoding.eq_ignore_ascii_case(encoding)
            && self.clock_rate == clock_rate
            && matches!(self.channels, None | Some(1))
    }

    /// Parses the attribute value, e.g. `0 PCMU/8000` or `96 opus/48000/2`.
    pub(crate) fn parse(value: &str) -> Result<RtpMap, &'static str> {
        let (pt, rest) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or("expected `<payload type> <encoding>/<clock rate>`")?;
        let pt = parse_payload_type(pt)?;
        let mut parts = rest.trim().split('/').map(str::trim);
        let encoding = parts.next().unwrap_or_default();
        if encoding.is_empty() {
            return Err("missing encoding name");
        }
        let clock_rate = parts
            .next()
            .ok_or("missing clock rate after the encoding name")?
            .parse::<u32>()
            .ok()
            .filter(|&rate| rate > 0)
            .ok_or("clock rate is not a positive integer")?;
        let channels = match parts.next() {
            None => None,
            Some(ch) => Some(
                ch.parse::<u16>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("channel count is not a positive integer")?,
            ),
        };
        if parts.next().is_some() {
            return Err("too many `/`-separated fields");
        }
        Ok(RtpMap {
            pt,
            encoding: encoding.to_owned(),
            clock_rate,
            channels,
        })
    }
}

impl fmt::Display for RtpMap {
    /// The attribute value, without `a=rtpmap:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.pt, self.encoding, self.clock_rate)?;
        if let Some(channels) = self.channels {
            write!(f, "/{channels}")?;
        }
        Ok(())
    }
}

/// An RTP payload type: a decimal 0–127 (RFC 3550 §5.1, 7 bits).
pub(crate) fn parse_payload_type(text: &str) -> Result<u8, &'static str> {
    text.parse::<u8>()
        .ok()
        .filter(|&pt| pt <= 127)
        .ok_or("payload type is not a number 0-127")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_with_and_without_channels() {
        for text in ["0 PCMU/8000", "96 opus/48000/2", "101 telephone-event/8000"] {
            let map = RtpMap::parse(text).expect(text);
            assert_eq!(map.to_string(), text);
        }
        let opus = RtpMap::parse("96 opus/48000/2").expect("opus");
        assert_eq!(opus.channels, Some(2));
        assert!(!opus.is("opus", 48000), "two channels is not mono");
    }

    #[test]
    fn encoding_name_matches_case_insensitively() {
        let map = RtpMap::parse("0 pcmu/8000/1").expect("pcmu");
        assert!(map.is("PCMU", 8000));
        assert!(!map.is("PCMU", 16000));
    }

    #[test]
    fn tolerates_spaces_around_fields() {
        let map = RtpMap::parse("8  PCMA / 8000").expect("spaced");
        assert_eq!(
            (map.pt, map.encoding.as_str(), map.clock_rate),
            (8, "PCMA", 8000)
        );
    }

    #[test]
    fn rejects_malformed_values() {
        for text in [
            "",
            "0",
            "0 PCMU",
            "0 /8000",
            "x PCMU/8000",
            "128 PCMU/8000",
            "0 PCMU/0",
            "0 PCMU/eight",
            "0 PCMU/8000/0",
            "0 PCMU/8000/1/2",
        ] {
            assert!(RtpMap::parse(text).is_err(), "{text:?} should be rejected");
        }
    }
}
