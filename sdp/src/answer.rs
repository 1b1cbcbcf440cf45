//! Writing voxline's SDP: the answer to an offer (RFC 3264 §6) and an offer of its own.

use std::fmt;
use std::net::IpAddr;

use crate::codec::{Codec, DEFAULT_TELEPHONE_EVENT_PT, TELEPHONE_EVENT, TELEPHONE_EVENT_FMTP};
use crate::connection::Address;
use crate::direction::Direction;
use crate::negotiate::{AnswerPolicy, Negotiated, DEFAULT_PTIME};
use crate::session::SessionDescription;

/// The `s=` line of every description voxline writes.
pub const SESSION_NAME: &str = "voxline";

/// Voxline's side of the media session: what goes into its `o=`, `c=` and `m=` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address peers send RTP to: the external, advertised one behind NAT.
    pub address: IpAddr,
    /// The local RTP port, non-zero (0 would reject the stream); RTCP is on the next port
    /// unless rtcp-mux is negotiated (RFC 3550 §11).
    pub rtp_port: u16,
    /// The `o=` session id; fixed for the life of the call.
    pub session_id: u64,
    /// The `o=` session version. The caller increments it (see [`bump_version`]) before
    /// building the answer to each re-INVITE that changes the session (RFC 3264 §8).
    ///
    /// [`bump_version`]: LocalMedia::bump_version
    pub session_version: u64,
    /// The `o=` username; `voxline` by default. Must not contain whitespace.
    pub username: String,
}

impl LocalMedia {
    /// Media at `address:rtp_port` with the given session id, version 1 and username
    /// `voxline`.
    pub fn new(address: IpAddr, rtp_port: u16, session_id: u64) -> Self {
        LocalMedia {
            address,
            rtp_port,
            session_id,
            session_version: 1,
            username: SESSION_NAME.to_owned(),
        }
    }

    /// Increments the session version, for a description that differs from the previous one.
    pub fn bump_version(&mut self) {
        self.session_version = self.session_version.wrapping_add(1);
    }
}

/// Writes the answer to `offer` as negotiated (RFC 3264 §6).
///
/// It has as many `m=` lines as the offer, in the same order. The accepted line
/// (`neg.media_index`) carries the offer's media type and protocol, voxline's port, exactly
/// the chosen codec's payload type (plus the telephone-event one when negotiated, with
/// `a=fmtp:<pt> 0-16`), an `a=rtpmap` for each, `a=ptime`, `a=rtcp-mux` when negotiated and
/// the direction. Every other line is rejected: port 0 and the offer's format list. The
/// address goes in a session-level `c=` line (`IP6` for an IPv6 address); lines end in CRLF.
///
/// `neg` must come from [`negotiate`](crate::negotiate) on this same offer; with an index
/// past its last line, every line comes out rejected. For a re-INVITE, increment
/// `local.session_version` first ([`LocalMedia::bump_version`]).
pub fn build_answer(offer: &SessionDescription, neg: &Negotiated, local: &LocalMedia) -> String {
    Answer { offer, neg, local }.to_string()
}

/// Writes voxline's offer for an outbound call: one `m=audio` line over `RTP/AVP` with the
/// policy's codecs in order at their static payload types (PCMU 0, PCMA 8 by default; the
/// defaults when the list is empty), telephone-event on payload type 101 with events 0-16
/// when the policy allows, `a=ptime` from the policy and `a=sendrecv`.
pub fn build_offer(local: &LocalMedia, policy: &AnswerPolicy) -> String {
    Offer { local, policy }.to_string()
}

struct Answer<'a> {
    offer: &'a SessionDescription,
    neg: &'a Negotiated,
    local: &'a LocalMedia,
}

impl fmt::Display for Answer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.neg;
        write_session_lines(f, self.local)?;
        for (index, section) in self.offer.media.iter().enumerate() {
            if index != neg.media_index {
                write!(f, "m={} 0 {}", section.media, section.proto)?;
                if section.formats.is_empty() && section.other_formats.is_empty() {
                    // RFC 3264 §6: even a rejected line lists at least one format.
                    f.write_str(" 0")?;
                }
                for pt in &section.formats {
                    write!(f, " {pt}")?;
                }
                for token in &section.other_formats {
                    write!(f, " {token}")?;
                }
                f.write_str("\r\n")?;
                continue;
            }
            write!(
                f,
                "m={} {} {} {}",
                section.media, self.local.rtp_port, section.proto, neg.payload_type
            )?;
            if let Some(pt) = neg.telephone_event_pt {
                write!(f, " {pt}")?;
            }
            f.write_str("\r\n")?;
            write_rtpmap(f, neg.payload_type, neg.codec)?;
            if let Some(pt) = neg.telephone_event_pt {
                write_telephone_event(f, pt, neg.codec.clock_rate())?;
            }
            write!(f, "a=ptime:{}\r\n", neg.ptime)?;
            if neg.rtcp_mux {
                f.write_str("a=rtcp-mux\r\n")?;
            }
            write!(f, "a={}\r\n", neg.direction)?;
        }
        Ok(())
    }
}

struct Offer<'a> {
    local: &'a LocalMedia,
    policy: &'a AnswerPolicy,
}

impl fmt::Display for Offer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let defaults;
        let mut codecs: &[Codec] = &self.policy.codecs;
        if codecs.is_empty() {
            defaults = AnswerPolicy::default().codecs;
            codecs = &defaults;
        }
        let mut unique: Vec<Codec> = Vec::with_capacity(codecs.len());
        for &codec in codecs {
            if !unique.contains(&codec) {
                unique.push(codec);
            }
        }
        let ptime = if self.policy.ptime == 0 {
            DEFAULT_PTIME
        } else {
            self.policy.ptime
        };

        write_session_lines(f, self.local)?;
        write!(f, "m=audio {} RTP/AVP", self.local.rtp_port)?;
        for codec in &unique {
            write!(f, " {}", codec.static_pt())?;
        }
        if self.policy.telephone_event {
            write!(f, " {DEFAULT_TELEPHONE_EVENT_PT}")?;
        }
        f.write_str("\r\n")?;
        for &codec in &unique {
            write_rtpmap(f, codec.static_pt(), codec)?;
        }
        if self.policy.telephone_event {
            write_telephone_event(f, DEFAULT_TELEPHONE_EVENT_PT, Codec::CLOCK_RATE)?;
        }
        write!(f, "a=ptime:{ptime}\r\na={}\r\n", Direction::SendRecv)
    }
}

/// `v=`, `o=`, `s=`, `c=` and `t=`.
fn write_session_lines(f: &mut fmt::Formatter<'_>, local: &LocalMedia) -> fmt::Result {
    let username = if local.username.is_empty() {
        "-"
    } else {
        &local.username
    };
    let address = Address(local.address);
    write!(
        f,
        "v=0\r\no={username} {} {} {address}\r\ns={SESSION_NAME}\r\nc={address}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    )
}

fn write_rtpmap(f: &mut fmt::Formatter<'_>, pt: u8, codec: Codec) -> fmt::Result {
    write!(
        f,
        "a=rtpmap:{pt} {}/{}\r\n",
        codec.payload_name(),
        codec.clock_rate()
    )
}

fn write_telephone_event(f: &mut fmt::Formatter<'_>, pt: u8, clock_rate: u32) -> fmt::Result {
    write!(
        f,
        "a=rtpmap:{pt} {TELEPHONE_EVENT}/{clock_rate}\r\na=fmtp:{pt} {TELEPHONE_EVENT_FMTP}\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::negotiate::negotiate;

    fn local() -> LocalMedia {
        LocalMedia::new("203.0.113.5".parse().expect("ip"), 20000, 42)
    }

    #[test]
    fn offer_text_is_exact() {
        let offer = build_offer(&local(), &AnswerPolicy::default());
        assert_eq!(
            offer,
            "v=0\r\no=voxline 42 1 IN IP4 203.0.113.5\r\ns=voxline\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        );
    }

    #[test]
    fn offer_follows_the_policy() {
        let policy = AnswerPolicy {
            codecs: vec![Codec::Pcma, Codec::Pcma],
            telephone_event: false,
            ptime: 30,
        };
        let offer = build_offer(&local(), &policy);
        assert!(offer.contains("m=audio 20000 RTP/AVP 8\r\n"), "{offer}");
        assert!(!offer.contains("telephone-event"));
        assert!(offer.contains("a=ptime:30\r\n"));
    }

    #[test]
    fn own_offer_negotiates_to_pcmu_with_dtmf() {
        let offer = build_offer(&local(), &AnswerPolicy::default());
        let parsed = SessionDescription::parse(&offer).expect("own offer parses");
        let neg = negotiate(&parsed, &AnswerPolicy::default()).expect("negotiates");
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
        assert_eq!(neg.telephone_event_pt, Some(101));
        assert_eq!(neg.remote_rtp, "203.0.113.5:20000".parse().expect("addr"));
        assert_eq!(neg.remote_rtcp, "203.0.113.5:20001".parse().expect("addr"));
    }

    #[test]
    fn bump_version_increments() {
        let mut media = local();
        media.bump_version();
        assert_eq!(media.session_version, 2);
    }
}
