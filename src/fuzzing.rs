//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz, outside the
//! workspace) and for `tests/fuzz_regressions.rs`, which replays every input
//! they found a bug with. Not an API: each function takes the raw bytes an
//! attacker controls and runs them through what the server does with them;
//! the only assertions are the invariants a fuzzer should hold us to.
//!
//! | target | what the bytes are | runs |
//! | --- | --- | --- |
//! | `sip_message` | a SIP datagram | `voxline_sip::fuzzing::parse_message` |
//! | `sip_endpoint` | a script of datagrams, replies, time and app actions | `voxline_sip::fuzzing::drive_endpoint` |
//! | `sdp` | an SDP offer | parse, negotiate, answer (the answer must parse again) |
//! | `rtp` | packets on a call's RTP port | [`RtpReceiver`] (audio, RFC 4733 events, loss stats) |
//! | `rtcp` | an RTCP compound packet | [`rtcp::parse`](crate::media::rtcp::parse) |
//! | `control` | a control-socket text frame | both dialects, then DTMF and text as the call would take them |
//! | `twilio` | a Media Streams message | the message, then its caller frame as RTP |

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use voxline_sdp::{build_answer, negotiate, AnswerPolicy, LocalMedia, SessionDescription};

use crate::media::dtmf::{DtmfQueue, DtmfTick};
use crate::media::rtcp;
use crate::media::rtp_in::{RtpReceiver, SourcePolicy};
use crate::server::control::dialect::Dialect;
use crate::server::control::protocol::Request;
use crate::server::twilio::frames::caller_media_packet;
use crate::server::twilio::messages::FromTwilio;
use crate::text::{normalize, sanitize, split_sentences, Segmenter, SegmenterConfig};

pub use voxline_sip::fuzzing::{drive_endpoint, parse_message as sip_message};

/// The SSRC our RTCP parser is told is ours (seeds use it so reports about
/// our stream are reached).
pub const OUR_SSRC: u32 = 0x1122_3344;

/// An SDP offer: parsed, negotiated with the default policy, answered; an
/// answer we write to an offer we accepted must parse and negotiate itself.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = SessionDescription::parse(text) else { return };
    for i in 0..offer.media.len() {
        let _ = (offer.media_connection(i), offer.media_direction(i), offer.media_on_hold(i));
    }
    let _ = offer.is_hold();
    let Ok(negotiated) = negotiate(&offer, &AnswerPolicy::default()) else { return };
    let local = LocalMedia::new([192, 0, 2, 10].into(), 30_000, 1);
    let answer = build_answer(&offer, &negotiated, &local);
    let reparsed = SessionDescription::parse(&answer).unwrap_or_else(|e| panic!("our answer does not parse ({e}):\n{answer}"));
    negotiate(&reparsed, &AnswerPolicy::default()).unwrap_or_else(|e| panic!("our answer does not negotiate ({e}):\n{answer}"));
}

/// Packets on a call's RTP port. The first byte picks the source policy;
/// then each packet is a length byte, a source byte (the caller's address,
/// its IP on another port, or a stranger) and that many bytes.
pub fn rtp(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let caller: SocketAddr = ([198, 51, 100, 7], 40_000).into();
    let sources = [caller, ([198, 51, 100, 7], 41_234).into(), ([203, 0, 113, 66], 40_000).into()];
    let policy = if mode & 1 == 0 { SourcePolicy::Strict } else { SourcePolicy::Latch { window: Duration::from_secs(5) } };
    let start = Instant::now();
    let mut receiver = RtpReceiver::new(caller, policy, 0, Some(101), start);
    receiver.trust(caller.ip());
    let mut now = start;
    while let [len, source, tail @ ..] = rest {
        let (packet, next) = tail.split_at((*len as usize).min(tail.len()));
        rest = next;
        now += Duration::from_millis(20);
        let _ = receiver.handle(sources[*source as usize % sources.len()], packet, now);
        let _ = receiver.take_new_latch();
    }
    let _ = (receiver.stats.extended_max(), receiver.stats.lost(), receiver.stats.fraction_lost_interval(), receiver.source());
}

/// An RTCP compound packet from the peer.
pub fn rtcp(data: &[u8]) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(3_000_000_000);
    let _ = rtcp::parse(data, OUR_SSRC, now);
}

/// One control-socket text frame, read in both dialects; digits to send are
/// queued and played out as RFC 4733 events, text to speak goes through the
/// text front end as far as it runs without a voice.
pub fn control(data: &[u8]) {
    let Ok(frame) = std::str::from_utf8(data) else { return };
    for dialect in [Dialect::Native, Dialect::ConversationRelay] {
        match dialect.parse(frame) {
            Ok(Request::SendDtmf { digits, duration_ms, .. }) => dtmf(&digits, Duration::from_millis(duration_ms.unwrap_or(100))),
            Ok(Request::Speak(speak)) => text(&speak.text),
            Ok(_) => {}
            Err(event) => {
                let _ = dialect.render(&event);
            }
        }
    }
}

/// Digits queued to send, ticked until the queue is idle (bounded).
fn dtmf(digits: &str, duration: Duration) {
    let mut queue = DtmfQueue::default();
    if queue.queue(digits, duration).is_err() {
        return;
    }
    let mut timestamp = 0u32;
    for _ in 0..100_000 {
        if matches!(queue.tick(timestamp), DtmfTick::Idle) && queue.is_idle() {
            return;
        }
        timestamp = timestamp.wrapping_add(160);
    }
    panic!("{digits:?} at {duration:?} still sending after 100000 frames (2000 s)");
}

/// An agent's text: sanitized, normalized, split, and segmented as streamed.
fn text(text: &str) {
    let clean = sanitize(text);
    for sentence in split_sentences(&clean) {
        let _ = normalize(sentence.text);
    }
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let now = Instant::now();
    let _ = segmenter.push(now, text);
    let _ = segmenter.poll(now + Duration::from_secs(10));
    let _ = segmenter.flush();
}

/// One message from Twilio's Media Streams; a `media` message's frame
/// becomes the RTP packet the call receives.
pub fn twilio(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(message) = serde_json::from_str::<FromTwilio>(text) else { return };
    if let FromTwilio::Media { media } = message {
        if let Some(packet) = caller_media_packet(&media, 1) {
            let start = Instant::now();
            let unspecified: SocketAddr = ([0, 0, 0, 0], 0).into();
            let mut receiver = RtpReceiver::new(unspecified, SourcePolicy::Strict, 0, None, start);
            let _ = receiver.handle(unspecified, &packet, start);
        }
    }
}
