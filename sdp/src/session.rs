//! A whole session description: parsing and printing (RFC 8866, formerly RFC 4566).

use std::fmt;
use std::net::IpAddr;

use crate::connection::{parse_address, Address};
use crate::direction::Direction;
use crate::media::{write_attributes, MediaDescription};

/// Why a body is not usable SDP. Messages name the line (1-based) and quote at most a short
/// excerpt of it, so they can go into a log or a SIP `Warning` header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body has no non-blank line.
    #[error("empty SDP body")]
    Empty,
    /// The first line is not `v=`: the body is something other than SDP.
    #[error("not SDP: the first line must be `v=0`, found `{found}`")]
    NotSdp {
        /// An excerpt of the first line.
        found: String,
    },
    /// `v=` carries something other than 0, the only version (RFC 8866 §5.1).
    #[error("unsupported SDP version `v={version}`; only v=0 exists")]
    UnsupportedVersion {
        /// An excerpt of the version.
        version: String,
    },
    /// A line is not `<letter>=<value>` (RFC 8866 §5).
    #[error("line {line}: not an SDP `<type>=<value>` line: `{text}`")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
        /// An excerpt of the line.
        text: String,
    },
    /// A second `v=` line: two bodies run together, or a multipart body not taken apart.
    #[error("line {line}: a second `v=` line; one SDP body was expected")]
    RepeatedVersion {
        /// 1-based line number.
        line: usize,
    },
    /// No `o=` line before the first `m=` line (RFC 8866 §5.2 makes it mandatory).
    #[error("missing the `o=` (origin) line")]
    MissingOrigin,
    /// A line voxline relies on (`o=`, `c=`, `m=`, `a=rtpmap`, `a=fmtp`, `a=ptime`,
    /// `a=maxptime`, `a=rtcp`) has a value it cannot read.
    #[error("line {line}: invalid {field} `{value}`: {reason}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What was being read, e.g. `m= line` or `a=rtpmap`.
        field: &'static str,
        /// An excerpt of the value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The `o=` line: who created the session, and which version of it this is (RFC 8866 §5.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The creator's login, or `-`. Extra leading fields are joined into it with single
    /// spaces, for peers that put a space in their username.
    pub username: String,
    /// The session id, kept as written: a numeric string by RFC, opaque here.
    pub session_id: String,
    /// Incremented by the creator each time the session changes; an unchanged version in a
    /// re-offer means an unchanged session (RFC 3264 §8).
    pub session_version: u64,
    /// `IN`.
    pub network_type: String,
    /// `IP4` or `IP6`.
    pub address_type: String,
    /// The creator's address as written (an IP literal or a host name; not used to send).
    pub address: String,
}

impl Origin {
    fn parse(value: &str) -> Result<Origin, &'static str> {
        let fields: Vec<&str> = value.split_ascii_whitespace().collect();
        let Some(split) = fields.len().checked_sub(5).filter(|&n| n > 0) else {
            return Err("expected `<username> <sess-id> <sess-version> IN IP4 <address>`");
        };
        let (username, rest) = fields.split_at(split);
        let [session_id, session_version, network_type, address_type, address] = rest else {
            return Err("expected six fields");
        };
        Ok(Origin {
            username: username.join(" "),
            session_id: (*session_id).to_owned(),
            session_version: session_version
                .parse()
                .map_err(|_| "session version is not a non-negative integer")?,
            network_type: (*network_type).to_owned(),
            address_type: (*address_type).to_owned(),
            address: (*address).to_owned(),
        })
    }
}

impl fmt::Display for Origin {
    /// The value of the `o=` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.network_type,
            self.address_type,
            self.address
        )
    }
}

/// A parsed SDP body: session-level fields and the media sections in order.
///
/// [`Display`](fmt::Display) prints it back as SDP with CRLF line endings, `t=0 0` for the
/// timing, and without the lines that are dropped when parsing (`b=`, `i=`, `t=`, `u=`, `e=`,
/// `p=`, `z=`, `k=`, `r=`, lines of unknown type); parsing the printed text gives back an
/// equal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line; `-` when it is missing.
    pub session_name: String,
    /// The session-level `c=` address, the default for media sections without their own.
    pub connection: Option<IpAddr>,
    /// The session-level direction attribute, the default for media sections without their
    /// own (RFC 8866 §6.7).
    pub direction: Option<Direction>,
    /// Other session-level attributes as `(name, value)`, in order.
    pub attributes: Vec<(String, Option<String>)>,
    /// The `m=` sections, in order; answers keep this order (RFC 3264 §6).
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body.
    ///
    /// Lenient where real peers differ and nothing is at stake: CRLF or LF endings,
    /// whitespace around lines and values, blank lines, any order of session-level lines,
    /// missing `s=` and `t=`, lines of unknown type and unknown attributes (kept in
    /// `attributes`), a leading byte-order mark. Strict where voxline depends on the value:
    /// the body must start with `v=0` and have an `o=` line; every line must be
    /// `<letter>=<value>`; `o=`, `c=`, `m=` and the attributes `rtpmap`, `fmtp`, `ptime`,
    /// `maxptime`, `rtcp` must be well formed, and addresses must be IP literals. Lines after
    /// the first `m=` belong to the media sections; session-level lines there are ignored.
    /// Never panics; runs in time linear in the input.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty());

        let (_, first) = lines.next().ok_or(SdpError::Empty)?;
        match first.split_once('=') {
            Some(("v", version)) if version.trim() == "0" => {}
            Some(("v", version)) => {
                return Err(SdpError::UnsupportedVersion {
                    version: excerpt(version.trim()),
                })
            }
            _ => {
                return Err(SdpError::NotSdp {
                    found: excerpt(first),
                })
            }
        }

        let mut origin = None;
        let mut session_name = None;
        let mut connection = None;
        let mut direction = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();

        for (line, text) in lines {
            let (kind, value) = split_line(line, text)?;
            let invalid = |field: &'static str| {
                move |reason: &'static str| SdpError::Invalid {
                    line,
                    field,
                    value: excerpt(value),
                    reason,
                }
            };
            match (kind, media.last_mut()) {
                ('v', _) => return Err(SdpError::RepeatedVersion { line }),
                ('m', _) => media
                    .push(MediaDescription::parse_media_line(value).map_err(invalid("m= line"))?),
                ('c', Some(section)) => {
                    section.connection = Some(parse_address(value).map_err(invalid("c= line"))?);
                }
                ('a', Some(section)) => {
                    let (name, attr_value) = split_attribute(value).map_err(invalid("a= line"))?;
                    section
                        .add_attribute(name, attr_value)
                        .map_err(|(field, reason)| SdpError::Invalid {
                            line,
                            field,
                            value: excerpt(attr_value.unwrap_or_default()),
                            reason,
                        })?;
                }
                // i=, b=, k= and session-level types misplaced after an m= line.
                (_, Some(_)) => {}
                ('o', None) => {
                    if origin.is_none() {
                        origin = Some(Origin::parse(value).map_err(invalid("o= line"))?);
                    }
                }
                ('s', None) => {
                    session_name.get_or_insert_with(|| value.to_owned());
                }
                ('c', None) => {
                    connection = Some(parse_address(value).map_err(invalid("c= line"))?);
                }
                ('a', None) => {
                    let (name, attr_value) = split_attribute(value).map_err(invalid("a= line"))?;
                    match Direction::from_attribute(name) {
                        Some(d) => direction = Some(d),
                        None => attributes.push((name.to_owned(), attr_value.map(str::to_owned))),
                    }
                }
                (_, None) => {}
            }
        }

        Ok(SessionDescription {
            origin: origin.ok_or(SdpError::MissingOrigin)?,
            session_name: session_name.unwrap_or_else(|| "-".to_owned()),
            connection,
            direction,
            attributes,
            media,
        })
    }

    /// The address media of section `index` goes to: its own `c=`, else the session's
    /// (RFC 8866 §5.7). `None` when neither is present or the index is out of range.
    pub fn media_connection(&self, index: usize) -> Option<IpAddr> {
        let section = self.media.get(index)?;
        section.connection.or(self.connection)
    }

    /// The direction of section `index`: its own attribute, else the session's, else
    /// sendrecv (RFC 8866 §6.7). Sendrecv for an out-of-range index.
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(|m| m.direction)
            .or(self.direction)
            .unwrap_or_default()
    }

    /// Whether section `index` is put on hold by its writer: direction sendonly or inactive
    /// (RFC 3264 §8.4), or a connection address of `0.0.0.0` / `::` (the RFC 2543 style that
    /// RFC 3264 §8.4 still asks answerers to understand).
    pub fn media_on_hold(&self, index: usize) -> bool {
        matches!(
            self.media_direction(index),
            Direction::SendOnly | Direction::Inactive
        ) || self
            .media_connection(index)
            .is_some_and(|addr| addr.is_unspecified())
    }

    /// Whether this offer puts the call on hold: it has an active (non-zero port) audio
    /// section and every such section is on hold by [`media_on_hold`](Self::media_on_hold).
    pub fn is_hold(&self) -> bool {
        let mut active_audio = self
            .media
            .iter()
            .enumerate()
            .filter(|(_, m)| m.media.eq_ignore_ascii_case("audio") && !m.is_rejected())
            .peekable();
        active_audio.peek().is_some() && active_audio.all(|(index, _)| self.media_on_hold(index))
    }
}

impl fmt::Display for SessionDescription {
    /// The SDP text, lines ending in CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\no={}\r\ns={}\r\n", self.origin, self.session_name)?;
        if let Some(address) = self.connection {
            write!(f, "c={}\r\n", Address(address))?;
        }
        f.write_str("t=0 0\r\n")?;
        if let Some(direction) = self.direction {
            write!(f, "a={direction}\r\n")?;
        }
        write_attributes(f, &self.attributes)?;
        for section in &self.media {
            write!(f, "{section}")?;
        }
        Ok(())
    }
}

/// Splits `<type>=<value>`; the type must be a single ASCII letter (RFC 8866 §5).
fn split_line(line: usize, text: &str) -> Result<(char, &str), SdpError> {
    let malformed = || SdpError::MalformedLine {
        line,
        text: excerpt(text),
    };
    let (kind, value) = text.split_once('=').ok_or_else(malformed)?;
    let mut chars = kind.chars();
    match (chars.next(), chars.next()) {
        (Some(kind), None) if kind.is_ascii_alphabetic() => Ok((kind, value.trim())),
        _ => Err(malformed()),
    }
}

/// Splits an attribute into its name and optional value: `a=<name>` or `a=<name>:<value>`.
fn split_attribute(value: &str) -> Result<(&str, Option<&str>), &'static str> {
    let (name, value) = match value.split_once(':') {
        Some((name, value)) => (name.trim(), Some(value.trim())),
        None => (value, None),
    };
    if name.is_empty() {
        return Err("empty attribute name");
    }
    Ok((name, value))
}

/// At most 60 characters of `text`, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "v=0\no=- 1 2 IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n";

    #[test]
    fn missing_session_name_and_timing_are_tolerated() {
        let sdp = SessionDescription::parse(MINIMAL).expect("minimal");
        assert_eq!(sdp.session_name, "-");
        assert_eq!(sdp.origin.session_version, 2);
        assert_eq!(sdp.media.len(), 1);
        assert_eq!(sdp.media_connection(0), None);
    }

    #[test]
    fn whitespace_blank_lines_and_crlf_are_tolerated() {
        let text = "\r\n  v=0 \r\no=- 1 2 IN IP4 192.0.2.1\t\r\n\r\ns=call \r\nc=IN IP4 192.0.2.1  \r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 \r\n";
        let sdp = SessionDescription::parse(text).expect("messy");
        assert_eq!(sdp.session_name, "call");
        assert_eq!(
            sdp.media_connection(0),
            Some("192.0.2.1".parse().expect("ip"))
        );
        assert_eq!(sdp.media[0].formats, [0]);
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let text = format!("\u{feff}{MINIMAL}");
        assert_eq!(
            SessionDescription::parse(&text),
            SessionDescription::parse(MINIMAL)
        );
    }

    #[test]
    fn unknown_lines_are_ignored_and_unknown_attributes_kept() {
        let text = format!("{MINIMAL}b=AS:64\ny=whatever\na=x-custom:1\na=ice-lite\n");
        let sdp = SessionDescription::parse(&text).expect("unknown lines");
        assert_eq!(
            sdp.media[0].attributes,
            [
                ("x-custom".to_owned(), Some("1".to_owned())),
                ("ice-lite".to_owned(), None)
            ]
        );
    }

    #[test]
    fn username_with_spaces_is_joined() {
        let text = "v=0\no=Cisco SIP UA 5 6 IN IP4 pbx.example.com\n";
        let sdp = SessionDescription::parse(text).expect("spaced username");
        assert_eq!(sdp.origin.username, "Cisco SIP UA");
        assert_eq!(sdp.origin.address, "pbx.example.com");
        assert!(sdp.media.is_empty());
    }

    #[test]
    fn session_defaults_apply_to_media() {
        let text = "v=0\no=- 1 2 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\na=sendonly\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\nc=IN IP4 192.0.2.2\na=sendrecv\n";
        let sdp = SessionDescription::parse(text).expect("defaults");
        assert_eq!(sdp.media_direction(0), Direction::SendOnly);
        assert_eq!(sdp.media_direction(1), Direction::SendRecv);
        assert_eq!(
            sdp.media_connection(0),
            Some("192.0.2.1".parse().expect("ip"))
        );
        assert_eq!(
            sdp.media_connection(1),
            Some("192.0.2.2".parse().expect("ip"))
        );
        assert_eq!(sdp.media_connection(2), None);
        assert!(sdp.media_on_hold(0));
        assert!(!sdp.media_on_hold(1));
        assert!(!sdp.is_hold(), "one audio stream is still active");
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        type Expected = fn(&SdpError) -> bool;
        let cases: [(&str, Expected); 9] = [
            ("", |e| *e == SdpError::Empty),
            (" \r\n\n", |e| *e == SdpError::Empty),
            ("hello world", |e| matches!(e, SdpError::NotSdp { .. })),
            ("<html><body>", |e| matches!(e, SdpError::NotSdp { .. })),
            ("v=1\no=- 1 1 IN IP4 1.2.3.4", |e| {
                matches!(e, SdpError::UnsupportedVersion { .. })
            }),
            ("v=0\ns=no origin", |e| *e == SdpError::MissingOrigin),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nthis is not sdp", |e| {
                matches!(e, SdpError::MalformedLine { line: 3, .. })
            }),
            ("v=0\no=- 1 1 IN IP4 1.2.3.4\nv=0", |e| {
                matches!(e, SdpError::RepeatedVersion { line: 3 })
            }),
            ("v=0\no=- 1 x IN IP4 1.2.3.4", |e| {
                matches!(
                    e,
                    SdpError::Invalid {
                        line: 2,
                        field: "o= line",
                        ..
                    }
                )
            }),
        ];
        for (text, expected) in cases {
            let err = SessionDescription::parse(text).expect_err(text);
            assert!(expected(&err), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn error_messages_name_line_field_and_reason() {
        let text = format!("{MINIMAL}a=rtpmap:0 PCMU\n");
        let err = SessionDescription::parse(&text).expect_err("bad rtpmap");
        assert_eq!(
            err.to_string(),
            "line 4: invalid a=rtpmap `0 PCMU`: missing clock rate after the encoding name"
        );
        let long = format!("v=0\no=- 1 1 IN IP4 1.2.3.4\n{}", "x".repeat(500));
        let message = SessionDescription::parse(&long)
            .expect_err("long")
            .to_string();
        assert!(message.len() < 120, "{message}");
    }

    #[test]
    fn display_round_trips() {
        let text = "v=0\no=- 1 2 IN IP6 ::1\ns=\nc=IN IP6 2001:db8::1\na=inactive\na=group:BUNDLE 0\nm=audio 4000/2 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101\na=rtcp:4001 IN IP4 192.0.2.1\nm=image 0 udptl t38\na=T38FaxVersion:0\n";
        let sdp = SessionDescription::parse(text).expect("sdp");
        let printed = sdp.to_string();
        assert!(printed.ends_with("\r\n") && !printed.replace("\r\n", "").contains('\n'));
        assert_eq!(SessionDescription::parse(&printed), Ok(sdp));
    }

    #[test]
    fn excerpt_cuts_on_a_char_boundary() {
        let text = "é".repeat(100);
        assert_eq!(excerpt(&text).chars().count(), 61);
        assert_eq!(excerpt("short"), "short");
    }
}
