//! Choosing what to answer: stream, codec, DTMF, addresses, packet time, direction
//! (RFC 3264 §6, §8.4).

use std::net::SocketAddr;

use crate::codec::{Codec, TELEPHONE_EVENT};
use crate::direction::Direction;
use crate::media::MediaDescription;
use crate::session::SessionDescription;

/// The packet time voxline sends when the offer does not ask for another, in ms.
pub const DEFAULT_PTIME: u32 = 20;

/// What voxline is willing to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// Codecs in voxline's order of preference; the first one the offer lists wins, whatever
    /// the offer's own order (RFC 3264 §6.1 lets the answerer choose). Default PCMU, PCMA.
    pub codecs: Vec<Codec>,
    /// Whether to accept RFC 4733 telephone-event (DTMF) when offered. Default true.
    pub telephone_event: bool,
    /// The packet time voxline sends, in ms (whatever the offer's `a=ptime`). Default 20;
    /// 0 means the default.
    pub ptime: u32,
}

impl Default for AnswerPolicy {
    fn default() -> Self {
        AnswerPolicy {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime: DEFAULT_PTIME,
        }
    }
}

/// The outcome of [`negotiate`]: everything the media path needs to send to this peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec to send.
    pub codec: Codec,
    /// The payload type the offer used for [`codec`](Self::codec): its static type, or a
    /// dynamic one whose `a=rtpmap` names the codec. The answer and our RTP use it.
    pub payload_type: u8,
    /// The offer's telephone-event/8000 payload type, when offered and the policy allows.
    pub telephone_event_pt: Option<u8>,
    /// Where to send RTP: the media-level `c=` address (else session-level) and the `m=` port.
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP: the RTP address when the offer has `a=rtcp-mux` (which voxline
    /// accepts, RFC 5761 §5.1.3), else `a=rtcp` (RFC 3605), else the RTP port + 1
    /// (RFC 3550 §11).
    pub remote_rtcp: SocketAddr,
    /// Whether RTP and RTCP share one port (the offer had `a=rtcp-mux`); the answer echoes it.
    pub rtcp_mux: bool,
    /// The packet time voxline sends (and asks for in the answer's `a=ptime`), in ms: the
    /// policy's. The offer's `a=ptime` is a hint (RFC 8866 6.4) voxline does not follow, since
    /// its packetizer sends 20 ms packets; an offer whose `a=maxptime` is below it is refused.
    pub ptime: u32,
    /// Voxline's direction in the answer: the offer's reversed (RFC 3264 §6.1), without
    /// sending when the offer's address is `0.0.0.0` (RFC 3264 §8.4).
    pub direction: Direction,
    /// Index of the accepted `m=` line in the offer.
    pub media_index: usize,
    /// Whether the offer puts the call on hold: sendonly, inactive, or an unspecified
    /// connection address (RFC 3264 §8.4).
    pub on_hold: bool,
}

/// Why an offer cannot be answered. The message suits a SIP 488 `Warning` header (code 304
/// or 305, RFC 3261 §20.43).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// No `m=audio` line with a non-zero port.
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio is offered over plain RTP, but with none of the policy's codecs.
    #[error(
        "no common audio codec: offered {}; voxline accepts {}",
        list(offered),
        list(accepted)
    )]
    NoCommonCodec {
        /// The offered formats, as `ENCODING/clock` (or `PT <n>`), in order, without repeats.
        offered: Vec<String>,
        /// The policy's codecs.
        accepted: Vec<Codec>,
    },
    /// The chosen audio line has no `c=` address, neither its own nor a session one.
    #[error("the audio stream has no connection address (c= line)")]
    NoConnectionAddress,
    /// Audio is offered only over a transport voxline does not speak (SRTP, DTLS-SRTP, TCP).
    #[error("unsupported offer: {0}")]
    Unsupported(String),
}

/// Joins at most ten items with `, `, saying how many more there are.
fn list<T: ToString>(items: &[T]) -> String {
    const SHOWN: usize = 10;
    let mut text = items
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.is_empty() {
        text.push_str("nothing");
    } else if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

/// Chooses how to answer an offer (RFC 3264 §6.1).
///
/// The accepted stream is the first `m=audio` line with a non-zero port, plain RTP
/// (`RTP/AVP` or `RTP/AVPF`) and a codec of the policy; every other line is to be rejected.
/// Secure profiles (`RTP/SAVP`, `UDP/TLS/RTP/SAVPF`) are skipped, so an offer that also has a
/// plain alternative is answered on it; with only secure audio the result is
/// [`NegotiateError::Unsupported`].
///
/// It also reads an answer to [`build_offer`](crate::build_offer) the same way: the answer
/// lists the codec its writer chose.
pub fn negotiate(
    offer: &SessionDescription,
    policy: &AnswerPolicy,
) -> Result<Negotiated, NegotiateError> {
    let audio: Vec<(usize, &MediaDescription)> = offer
        .media
        .iter()
        .enumerate()
        .filter(|(_, m)| m.media.eq_ignore_ascii_case("audio") && !m.is_rejected())
        .collect();
    if audio.is_empty() {
        return Err(NegotiateError::NoAudio);
    }
    let plain: Vec<(usize, &MediaDescription)> = audio
        .iter()
        .copied()
        .filter(|(_, m)| m.is_plain_rtp())
        .collect();
    if plain.is_empty() {
        let mut protos: Vec<&str> = Vec::new();
        for (_, section) in &audio {
            if !protos.contains(&section.proto.as_str()) {
                protos.push(&section.proto);
            }
        }
        return Err(NegotiateError::Unsupported(format!(
            "audio is offered only over {}; voxline speaks unencrypted RTP/AVP",
            protos.join(", ")
        )));
    }

    let chosen = plain.iter().find_map(|&(index, section)| {
        choose_codec(section, &policy.codecs).map(|(codec, pt)| (index, section, codec, pt))
    });
    let Some((media_index, section, codec, payload_type)) = chosen else {
        let mut offered: Vec<String> = Vec::new();
        for (_, section) in &plain {
            for &pt in &section.formats {
                let name = section.describe_format(pt);
                if !offered.contains(&name) {
                    offered.push(name);
                }
            }
        }
        return Err(NegotiateError::NoCommonCodec {
            offered,
            accepted: policy.codecs.clone(),
        });
    };

    let address = offer
        .media_connection(media_index)
        .ok_or(NegotiateError::NoConnectionAddress)?;
    let remote_rtp = SocketAddr::new(address, section.port);
    let remote_rtcp = match section.rtcp {
        _ if section.rtcp_mux => remote_rtp,
        Some((port, rtcp_address)) => SocketAddr::new(rtcp_address.unwrap_or(address), port),
        None => SocketAddr::new(address, section.port.checked_add(1).unwrap_or(section.port)),
    };

    let telephone_event_pt = policy
        .telephone_event
        .then(|| {
            section.formats.iter().copied().find(|&pt| {
                pt != payload_type
                    && section
                        .rtpmap(pt)
                        .is_some_and(|map| map.is(TELEPHONE_EVENT, codec.clock_rate()))
            })
        })
        .flatten();

    let mut direction = offer.media_direction(media_index).reversed();
    if address.is_unspecified() {
        direction = direction.without_send();
    }

    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event_pt,
        remote_rtp,
        remote_rtcp,
        rtcp_mux: section.rtcp_mux,
        ptime: choose_ptime(section.maxptime, policy.ptime)?,
        direction,
        media_index,
        on_hold: offer.media_on_hold(media_index),
    })
}

/// The first of `codecs` that the section lists, with the offer's payload type for it (the
/// first one, if the codec appears twice).
fn choose_codec(section: &MediaDescription, codecs: &[Codec]) -> Option<(Codec, u8)> {
    codecs.iter().find_map(|&codec| {
        section
            .formats
            .iter()
            .copied()
            .find(|&pt| Codec::for_payload(pt, section.rtpmap(pt)) == Some(codec))
            .map(|pt| (codec, pt))
    })
}

/// The packet time to send; see [`Negotiated::ptime`].
fn choose_ptime(maxptime: Option<u32>, preferred: u32) -> Result<u32, NegotiateError> {
    let ptime = if preferred == 0 { DEFAULT_PTIME } else { preferred };
    match maxptime {
        Some(max) if max < ptime => Err(NegotiateError::Unsupported(format!(
            "a=maxptime:{max} is below the {ptime} ms packets voxline sends"
        ))),
        _ => Ok(ptime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptime_is_what_voxline_sends_and_an_offer_that_cannot_take_it_is_refused() {
        assert_eq!(choose_ptime(None, 20).unwrap(), 20);
        assert_eq!(choose_ptime(Some(150), 20).unwrap(), 20);
        assert_eq!(choose_ptime(Some(20), 20).unwrap(), 20);
        assert_eq!(choose_ptime(None, 0).unwrap(), DEFAULT_PTIME);
        let err = choose_ptime(Some(10), 20).unwrap_err();
        assert!(err.to_string().contains("maxptime:10"), "{err}");
    }

    #[test]
    fn error_lists_are_bounded() {
        let offered: Vec<String> = (0..25).map(|n| format!("PT {n}")).collect();
        let err = NegotiateError::NoCommonCodec {
            offered,
            accepted: vec![Codec::Pcmu],
        };
        let message = err.to_string();
        assert!(message.contains("PT 8, PT 9 and 15 more;"), "{message}");
        assert!(message.ends_with("voxline accepts PCMU/8000"), "{message}");
    }
}
