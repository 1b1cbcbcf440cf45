//! A media description: the `m=` line and the `c=` and `a=` lines under it (RFC 8866 §5.14).

use std::fmt;
use std::net::IpAddr;

use crate::connection::{parse_address, Address};
use crate::direction::Direction;
use crate::rtpmap::{parse_payload_type, RtpMap};

/// One `m=` section of a session description.
///
/// Attributes voxline uses are parsed into fields; every other attribute is kept, in order, in
/// [`attributes`](Self::attributes). `b=`, `i=` and `k=` lines are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// The media type: `audio`, `video`, `image`, `application`, ….
    pub media: String,
    /// The transport port; 0 means the stream is disabled or rejected (RFC 3264 §5.1, §6).
    pub port: u16,
    /// The `/<number of ports>` suffix of the port, when present.
    pub port_count: Option<u16>,
    /// The transport protocol: `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udptl`, ….
    pub proto: String,
    /// RTP payload types in the offerer's order of preference, when [`proto`](Self::proto) is
    /// RTP-based; empty otherwise.
    pub formats: Vec<u8>,
    /// The format tokens of a non-RTP protocol (`t38`, `webrtc-datachannel`); empty for RTP.
    pub other_formats: Vec<String>,
    /// Media-level `c=` address; it overrides the session-level one (RFC 8866 §5.7).
    pub connection: Option<IpAddr>,
    /// `a=rtpmap` attributes (RTP protocols only).
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:<pt> <parameters>` attributes (RTP protocols only).
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime` in milliseconds; a fractional value is rounded to the nearest millisecond.
    pub ptime: Option<u32>,
    /// `a=maxptime` in milliseconds (RFC 4566 §6), rounded like `ptime`.
    pub maxptime: Option<u32>,
    /// The media-level direction attribute; the last one wins if several are present.
    pub direction: Option<Direction>,
    /// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux`: RTP and RTCP share the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Every other attribute as `(name, value)`; `a=name` has no value, `a=name:` an empty one.
    pub attributes: Vec<(String, Option<String>)>,
}

impl MediaDescription {
    /// Whether the protocol carries RTP (`RTP/AVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`, …).
    pub fn is_rtp(&self) -> bool {
        proto_is_rtp(&self.proto)
    }

    /// Whether the protocol is plain, unencrypted RTP over UDP: `RTP/AVP`, or `RTP/AVPF`
    /// (the feedback profile, whose peers also accept an endpoint that sends no feedback).
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }

    /// Whether the port is 0: the stream is disabled (offer) or rejected (answer).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// The `a=rtpmap` for a payload type, if any.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|map| map.pt == pt)
    }

    /// The `a=fmtp` parameters for a payload type, if any.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, params)| params.as_str())
    }

    /// A generic attribute by name (case-insensitive): `Some(None)` for a flag such as
    /// `a=ice-lite`, `Some(Some(value))` for `a=name:value`, `None` when absent.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_deref())
    }

    /// What a payload type carries, as `ENCODING/clock[/channels]`: from its `a=rtpmap`, else
    /// from the static table of RFC 3551 §6, else `PT <n>`. For messages and logs.
    pub fn describe_format(&self, pt: u8) -> String {
        match self.rtpmap(pt) {
            Some(map) => match map.channels {
                Some(channels) => format!("{}/{}/{channels}", map.encoding, map.clock_rate),
                None => format!("{}/{}", map.encoding, map.clock_rate),
            },
            None => match crate::codec::static_payload(pt) {
                Some((name, clock)) => format!("{name}/{clock}"),
                None => format!("PT {pt}"),
            },
        }
    }

    /// Parses the value of an `m=` line:
    /// `<media> <port>[/<count>] <proto> <fmt> ...`.
    pub(crate) fn parse_media_line(value: &str) -> Result<MediaDescription, &'static str> {
        let mut fields = value.split_ascii_whitespace();
        let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err("expected `<media> <port> <proto> <format> ...`");
        };
        let (port, port_count) = match port.split_once('/') {
            Some((port, count)) => (port, Some(count)),
            None => (port, None),
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| "port is not a number 0-65535")?;
        let port_count = port_count
            .map(|count| count.parse::<u16>().ok().filter(|&n| n > 0))
            .map(|count| count.ok_or("port count is not a positive number"))
            .transpose()?;
        let mut formats = Vec::new();
        let mut other_formats = Vec::new();
        let rtp = proto_is_rtp(proto);
        for fmt in fields {
            if rtp {
                formats.push(parse_payload_type(fmt)?);
            } else {
                other_formats.push(fmt.to_owned());
            }
        }
        if formats.is_empty() && other_formats.is_empty() {
            return Err("no media formats listed");
        }
        Ok(MediaDescription {
            media: media.to_owned(),
            port,
            port_count,
            proto: proto.to_owned(),
            formats,
            other_formats,
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime: None,
            maxptime: None,
            direction: None,
            rtcp: None,
            rtcp_mux: false,
            attributes: Vec::new(),
        })
    }

    /// Records one media-level `a=` line. On error returns the attribute (`"a=rtpmap"`) and
    /// the reason.
    pub(crate) fn add_attribute(
        &mut self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), (&'static str, &'static str)> {
        if let Some(direction) = Direction::from_attribute(name) {
            self.direction = Some(direction);
            return Ok(());
        }
        let value_or_empty = value.unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "rtpmap" if self.is_rtp() => {
                let map = RtpMap::parse(value_or_empty).map_err(|e| ("a=rtpmap", e))?;
                self.rtpmaps.push(map);
            }
            "fmtp" if self.is_rtp() => {
                let (pt, params) = value_or_empty
                    .split_once(|c: char| c.is_ascii_whitespace())
                    .unwrap_or((value_or_empty, ""));
                let pt = parse_payload_type(pt).map_err(|e| ("a=fmtp", e))?;
                self.fmtps.push((pt, params.trim().to_owned()));
            }
            "ptime" => self.ptime = Some(parse_millis(value_or_empty).map_err(|e| ("a=ptime", e))?),
            "maxptime" => {
                self.maxptime = Some(parse_millis(value_or_empty).map_err(|e| ("a=maxptime", e))?);
            }
            "rtcp" => self.rtcp = Some(parse_rtcp(value_or_empty).map_err(|e| ("a=rtcp", e))?),
            "rtcp-mux" => self.rtcp_mux = true,
            _ => self
                .attributes
                .push((name.to_owned(), value.map(str::to_owned))),
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    /// The section's lines, each ending in CRLF: `m=`, `c=`, then the attributes (parsed
    /// ones first, in a fixed order, then the others in their original order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for pt in &self.formats {
            write!(f, " {pt}")?;
        }
        for token in &self.other_formats {
            write!(f, " {token}")?;
        }
        f.write_str("\r\n")?;
        if let Some(address) = self.connection {
            write!(f, "c={}\r\n", Address(address))?;
        }
        for map in &self.rtpmaps {
            write!(f, "a=rtpmap:{map}\r\n")?;
        }
        for (pt, params) in &self.fmtps {
            if params.is_empty() {
                write!(f, "a=fmtp:{pt}\r\n")?;
            } else {
                write!(f, "a=fmtp:{pt} {params}\r\n")?;
            }
        }
        if let Some(ptime) = self.ptime {
            write!(f, "a=ptime:{ptime}\r\n")?;
        }
        if let Some(maxptime) = self.maxptime {
            write!(f, "a=maxptime:{maxptime}\r\n")?;
        }
        match self.rtcp {
            Some((port, Some(address))) => write!(f, "a=rtcp:{port} {}\r\n", Address(address))?,
            Some((port, None)) => write!(f, "a=rtcp:{port}\r\n")?,
            None => {}
        }
        if self.rtcp_mux {
            f.write_str("a=rtcp-mux\r\n")?;
        }
        if let Some(direction) = self.direction {
            write!(f, "a={direction}\r\n")?;
        }
        write_attributes(f, &self.attributes)
    }
}

/// Writes generic attributes as `a=name` or `a=name:value` lines.
pub(crate) fn write_attributes(
    f: &mut fmt::Formatter<'_>,
    attributes: &[(String, Option<String>)],
) -> fmt::Result {
    for (name, value) in attributes {
        match value {
            Some(value) => write!(f, "a={name}:{value}\r\n")?,
            None => write!(f, "a={name}\r\n")?,
        }
    }
    Ok(())
}

/// Whether a transport protocol has an `RTP` component (RFC 8866 §5.14).
fn proto_is_rtp(proto: &str) -> bool {
    proto
        .split('/')
        .any(|part| part.eq_ignore_ascii_case("RTP"))
}

/// A positive time in milliseconds; RFC 8866 §6.4 allows a decimal such as `20.0`, which is
/// rounded to the nearest millisecond.
fn parse_millis(text: &str) -> Result<u32, &'static str> {
    const REASON: &str = "expected a positive number of milliseconds";
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(REASON);
    }
    let whole = if whole.is_empty() {
        0
    } else {
        whole.parse::<u32>().map_err(|_| REASON)?
    };
    let round_up = fraction.as_bytes().first().is_some_and(|&d| d >= b'5');
    whole
        .checked_add(u32::from(round_up))
        .filter(|&ms| ms > 0)
        .ok_or(REASON)
}

/// `<port> [IN IP4 <address>]` (RFC 3605 §2.1).
fn parse_rtcp(value: &str) -> Result<(u16, Option<IpAddr>), &'static str> {
    let (port, address) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((port, address)) => (port, Some(address.trim())),
        None => (value, None),
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| "port is not a number 0-65535")?;
    let address = address.map(parse_address).transpose()?;
    Ok((port, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio() -> MediaDescription {
        MediaDescription::parse_media_line("audio 4000 RTP/AVP 0 8 101").expect("m= line")
    }

    #[test]
    fn media_line_with_port_count_and_non_rtp_formats() {
        let m = MediaDescription::parse_media_line("audio 4000/2 RTP/AVP 0").expect("count");
        assert_eq!((m.port, m.port_count), (4000, Some(2)));
        let fax = MediaDescription::parse_media_line("image 5004 udptl t38").expect("t38");
        assert!(fax.formats.is_empty());
        assert_eq!(fax.other_formats, ["t38"]);
        assert!(!fax.is_rtp());
    }

    #[test]
    fn media_line_errors() {
        for value in [
            "",
            "audio",
            "audio 4000",
            "audio 4000 RTP/AVP",
            "audio 70000 RTP/AVP 0",
            "audio -1 RTP/AVP 0",
            "audio 4000/0 RTP/AVP 0",
            "audio 4000 RTP/AVP 0 PCMU",
            "audio 4000 RTP/AVP 200",
        ] {
            assert!(
                MediaDescription::parse_media_line(value).is_err(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn profiles() {
        let mut m = audio();
        for (proto, rtp, plain) in [
            ("RTP/AVP", true, true),
            ("rtp/avpf", true, true),
            ("RTP/SAVP", true, false),
            ("UDP/TLS/RTP/SAVPF", true, false),
            ("TCP/RTP/AVP", true, false),
            ("udptl", false, false),
        ] {
            m.proto = proto.to_owned();
            assert_eq!((m.is_rtp(), m.is_plain_rtp()), (rtp, plain), "{proto}");
        }
    }

    #[test]
    fn known_attributes_fill_fields_and_others_are_kept() {
        let mut m = audio();
        let lines: [(&str, Option<&str>); 9] = [
            ("rtpmap", Some("101 telephone-event/8000")),
            ("fmtp", Some("101 0-16")),
            ("ptime", Some("20.0")),
            ("maxptime", Some("150")),
            ("rtcp", Some("4001 IN IP4 192.0.2.1")),
            ("rtcp-mux", None),
            ("SENDONLY", None),
            ("silenceSupp", Some("off - - - -")),
            ("label", Some("")),
        ];
        for (name, value) in lines {
            m.add_attribute(name, value).expect(name);
        }
        assert_eq!(
            m.rtpmap(101).map(|r| r.encoding.as_str()),
            Some("telephone-event")
        );
        assert_eq!(m.fmtp(101), Some("0-16"));
        assert_eq!((m.ptime, m.maxptime), (Some(20), Some(150)));
        assert_eq!(m.rtcp, Some((4001, Some("192.0.2.1".parse().expect("ip")))));
        assert!(m.rtcp_mux);
        assert_eq!(m.direction, Some(Direction::SendOnly));
        assert_eq!(m.attribute("silencesupp"), Some(Some("off - - - -")));
        assert_eq!(m.attribute("label"), Some(Some("")));
        assert_eq!(m.attribute("absent"), None);
    }

    #[test]
    fn rtpmap_under_a_non_rtp_protocol_is_a_generic_attribute() {
        let mut m = MediaDescription::parse_media_line("application 9 DTLS/SCTP 5000")
            .expect("datachannel");
        m.add_attribute("fmtp", Some("5000 max-message-size=262144"))
            .expect("kept as generic");
        assert!(m.fmtps.is_empty());
        assert_eq!(m.attributes.len(), 1);
    }

    #[test]
    fn malformed_known_attributes_are_errors() {
        let cases: [(&str, Option<&str>, &str); 6] = [
            ("rtpmap", Some("0 PCMU"), "a=rtpmap"),
            ("fmtp", Some("x 0-16"), "a=fmtp"),
            ("ptime", Some("twenty"), "a=ptime"),
            ("ptime", Some("0"), "a=ptime"),
            ("maxptime", None, "a=maxptime"),
            ("rtcp", Some("4001 IN IP4 nowhere"), "a=rtcp"),
        ];
        for (name, value, field) in cases {
            let err = audio().add_attribute(name, value).expect_err(name);
            assert_eq!(err.0, field);
        }
    }

    #[test]
    fn millis_round_to_nearest() {
        assert_eq!(parse_millis("20"), Ok(20));
        assert_eq!(parse_millis("20."), Ok(20));
        assert_eq!(parse_millis("19.5"), Ok(20));
        assert_eq!(parse_millis(".7"), Ok(1));
        for bad in ["", ".", "0.2", "1e3", "-20", "20.0.0", "99999999999"] {
            assert!(parse_millis(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn describe_format_uses_rtpmap_then_static_table() {
        let mut m =
            MediaDescription::parse_media_line("audio 4000 RTP/AVP 18 96 120").expect("m= line");
        m.add_attribute("rtpmap", Some("96 opus/48000/2"))
            .expect("rtpmap");
        assert_eq!(m.describe_format(18), "G729/8000");
        assert_eq!(m.describe_format(96), "opus/48000/2");
        assert_eq!(m.describe_format(120), "PT 120");
    }
}
