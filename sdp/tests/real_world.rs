//! Offers from real peers, negotiated and answered as voxline does.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::{answer, crlf, fixture, local, negotiate_default, parse, FIXTURES};
use voxline_sdp::{
    build_answer, negotiate, AnswerPolicy, Codec, Direction, LocalMedia, NegotiateError,
    SessionDescription,
};

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("socket address")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip address")
}

/// The answer's lines, without the CRLFs.
fn lines(text: &str) -> Vec<&str> {
    assert!(text.ends_with("\r\n"), "answer must end in CRLF: {text:?}");
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "answer must use CRLF only: {text:?}"
    );
    text.split_terminator("\r\n").collect()
}

const ANSWER_HEAD: [&str; 5] = [
    "v=0",
    "o=voxline 42 1 IN IP4 203.0.113.5",
    "s=voxline",
    "c=IN IP4 203.0.113.5",
    "t=0 0",
];

#[test]
fn every_offer_parses_alike_with_lf_and_crlf_and_prints_back() {
    for (name, text) in FIXTURES {
        let lf = SessionDescription::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let crlf = SessionDescription::parse(&crlf(text)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(lf, crlf, "{name}");
        let printed = lf.to_string();
        assert_eq!(
            SessionDescription::parse(&printed),
            Ok(lf),
            "{name}: {printed}"
        );
    }
}

#[test]
fn sipp_uac_gets_pcmu_on_its_port() {
    let (neg, text) = answer("sipp-uac");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.telephone_event_pt, None);
    assert_eq!(neg.remote_rtp, addr("127.0.1.1:6000"));
    assert_eq!(neg.remote_rtcp, addr("127.0.1.1:6001"));
    assert_eq!(
        (neg.ptime, neg.direction, neg.media_index),
        (20, Direction::SendRecv, 0)
    );
    assert!(!neg.on_hold && !neg.rtcp_mux);
    let mut expected = ANSWER_HEAD.to_vec();
    expected.extend([
        "m=audio 20000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "a=ptime:20",
        "a=sendrecv",
    ]);
    assert_eq!(lines(&text), expected);
}

#[test]
fn twilio_gets_pcmu_with_telephone_event_101() {
    let (neg, text) = answer("twilio");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.telephone_event_pt, Some(101));
    assert_eq!(neg.remote_rtp, addr("54.172.60.3:17814"));
    assert_eq!(neg.ptime, 20);
    let mut expected = ANSWER_HEAD.to_vec();
    expected.extend([
        "m=audio 20000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]);
    assert_eq!(lines(&text), expected);
}

#[test]
fn baresip_opus_first_still_gets_pcmu_and_rtcp_mux() {
    let offer = parse("baresip");
    assert_eq!(offer.media[0].formats, [96, 9, 0, 8, 101]);
    assert_eq!(
        offer.attributes,
        [("tool".to_owned(), Some("baresip 3.10.1".to_owned()))]
    );
    let (neg, text) = answer("baresip");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.telephone_event_pt, Some(101));
    assert!(neg.rtcp_mux);
    assert_eq!(neg.remote_rtp, addr("192.168.1.50:10266"));
    assert_eq!(
        neg.remote_rtcp, neg.remote_rtp,
        "rtcp-mux sends RTCP to the RTP port"
    );
    let lines = lines(&text);
    assert!(lines.contains(&"m=audio 20000 RTP/AVP 0 101"));
    assert!(lines.contains(&"a=rtcp-mux"));
    assert!(!text.contains("opus") && !text.contains("G722"));
}

#[test]
fn linphone_video_is_rejected_and_a_rtcp_is_honoured() {
    let (neg, text) = answer("linphone-audio-video");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(
        neg.telephone_event_pt,
        Some(100),
        "the 8 kHz telephone-event, not the 48 or 16 kHz ones"
    );
    assert_eq!(neg.remote_rtp, addr("192.168.1.20:7078"));
    assert_eq!(neg.remote_rtcp, addr("192.168.1.20:7079"));
    let lines = lines(&text);
    let media: Vec<&&str> = lines.iter().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        media,
        [&"m=audio 20000 RTP/AVP 0 100", &"m=video 0 RTP/AVP 96 97"]
    );
    assert_eq!(lines.last(), Some(&"m=video 0 RTP/AVP 96 97"));
}

#[test]
fn zoiper_gets_the_8khz_telephone_event() {
    let (neg, _) = answer("zoiper");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.telephone_event_pt, Some(101));
    assert!(neg.rtcp_mux);
    assert_eq!(parse("zoiper").origin.username, "Z");
}

#[test]
fn carrier_order_does_not_override_our_preference() {
    let offer = parse("sonus-carrier");
    let neg = negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.remote_rtp, addr("198.51.100.41:31072"), "c=, not o=");
    assert_eq!(neg.ptime, 20, "the packets voxline sends, whatever the offer's a=ptime:30");
    let pcma_first = AnswerPolicy {
        codecs: vec![Codec::Pcma, Codec::Pcmu],
        ..AnswerPolicy::default()
    };
    let neg = negotiate(&offer, &pcma_first).expect("negotiates");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    let text = build_answer(&offer, &neg, &local());
    assert!(lines(&text).contains(&"m=audio 20000 RTP/AVP 8 101"));
    assert!(lines(&text).contains(&"a=rtpmap:8 PCMA/8000"));
    assert!(lines(&text).contains(&"a=ptime:20"));
}

#[test]
fn freeswitch_rtcp_attribute_and_comfort_noise_left_out() {
    let (neg, text) = answer("freeswitch");
    assert_eq!(neg.remote_rtcp, addr("192.0.2.70:27579"));
    assert!(lines(&text).contains(&"m=audio 20000 RTP/AVP 0 101"));
    assert!(!text.contains("CN/8000"));
}

#[test]
fn g729_only_has_no_common_codec() {
    let err = negotiate_default("g729-only").expect_err("G.729 only");
    assert_eq!(
        err,
        NegotiateError::NoCommonCodec {
            offered: vec!["G729/8000".to_owned()],
            accepted: vec![Codec::Pcmu, Codec::Pcma],
        }
    );
    assert_eq!(
        err.to_string(),
        "no common audio codec: offered G729/8000; voxline accepts PCMU/8000, PCMA/8000"
    );
}

#[test]
fn sendonly_offer_is_hold_and_we_answer_recvonly() {
    let offer = parse("asterisk-hold-sendonly");
    assert!(offer.is_hold());
    let (neg, text) = answer("asterisk-hold-sendonly");
    assert!(neg.on_hold);
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert_eq!(lines(&text).last(), Some(&"a=recvonly"));
}

#[test]
fn rfc2543_hold_with_zero_address_stops_our_sending() {
    let offer = parse("rfc2543-hold");
    assert!(offer.is_hold());
    let (neg, text) = answer("rfc2543-hold");
    assert!(neg.on_hold);
    assert_eq!(neg.remote_rtp, addr("0.0.0.0:49170"));
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert!(lines(&text).contains(&"a=recvonly"));
}

#[test]
fn inactive_offer_gets_inactive() {
    let text = fixture("twilio").replace("a=sendrecv", "a=inactive");
    let offer = SessionDescription::parse(&text).expect("parses");
    let neg = negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
    assert!(neg.on_hold);
    assert_eq!(neg.direction, Direction::Inactive);
}

#[test]
fn recvonly_offer_gets_sendonly_and_is_not_hold() {
    let text = fixture("twilio").replace("a=sendrecv", "a=recvonly");
    let offer = SessionDescription::parse(&text).expect("parses");
    let neg = negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
    assert!(!neg.on_hold);
    assert_eq!(neg.direction, Direction::SendOnly);
}

#[test]
fn ipv6_offer_and_ipv6_answer() {
    let offer = parse("ipv6-trunk");
    let neg = negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 0));
    assert_eq!(neg.remote_rtp, addr("[2001:db8:10::5]:40000"));
    assert_eq!(neg.remote_rtcp, addr("[2001:db8:10::6]:40001"));
    let v6 = LocalMedia::new(ip("2001:db8:ffff::1"), 30000, 7);
    let text = build_answer(&offer, &neg, &v6);
    let lines = lines(&text);
    assert!(lines.contains(&"o=voxline 7 1 IN IP6 2001:db8:ffff::1"));
    assert!(lines.contains(&"c=IN IP6 2001:db8:ffff::1"));
}

#[test]
fn dynamic_payload_type_mapped_to_pcmu() {
    let (neg, text) = answer("dynamic-pcmu");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcmu, 112));
    assert_eq!(neg.telephone_event_pt, Some(113));
    let lines = lines(&text);
    assert!(lines.contains(&"m=audio 20000 RTP/AVP 112 113"));
    assert!(lines.contains(&"a=rtpmap:112 PCMU/8000"));
    assert!(lines.contains(&"a=rtpmap:113 telephone-event/8000"));
}

#[test]
fn media_level_connection_and_session_level_direction() {
    let offer = parse("session-and-media-level");
    let (neg, text) = answer("session-and-media-level");
    assert_eq!(neg.media_index, 1, "the disabled first line is skipped");
    assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
    assert_eq!(
        neg.remote_rtp,
        addr("192.0.2.77:7000"),
        "media c= overrides session c="
    );
    assert_eq!(offer.media_connection(2), Some(ip("192.0.2.1")));
    assert_eq!(
        neg.direction,
        Direction::SendOnly,
        "session-level recvonly applies"
    );
    let media: Vec<&str> = lines(&text)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        media,
        [
            "m=audio 0 RTP/AVP 0",
            "m=audio 20000 RTP/AVP 8",
            "m=audio 0 RTP/AVP 0"
        ]
    );
}

#[test]
fn srtp_only_is_unsupported() {
    let err = negotiate_default("srtp-only").expect_err("SRTP only");
    assert!(matches!(err, NegotiateError::Unsupported(_)));
    assert_eq!(
        err.to_string(),
        "unsupported offer: audio is offered only over RTP/SAVP; voxline speaks unencrypted RTP/AVP"
    );
}

#[test]
fn srtp_with_a_plain_alternative_is_answered_on_the_plain_line() {
    let (neg, text) = answer("srtp-then-rtp");
    assert_eq!(neg.media_index, 1);
    assert_eq!(neg.remote_rtp, addr("192.0.2.51:5030"));
    let media: Vec<&str> = lines(&text)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(media, ["m=audio 0 RTP/SAVP 0 8", "m=audio 20000 RTP/AVP 0"]);
}

#[test]
fn webrtc_offer_is_unsupported() {
    let err = negotiate_default("chrome-webrtc").expect_err("DTLS-SRTP");
    assert!(
        matches!(&err, NegotiateError::Unsupported(m) if m.contains("UDP/TLS/RTP/SAVPF")),
        "{err}"
    );
}

#[test]
fn fax_reinvite_has_no_audio() {
    let offer = parse("t38-reinvite");
    assert_eq!(offer.media[1].other_formats, ["t38"]);
    assert_eq!(
        negotiate(&offer, &AnswerPolicy::default()),
        Err(NegotiateError::NoAudio)
    );
}

#[test]
fn offer_without_any_address_is_refused() {
    let text = fixture("sipp-uac").replace("c=IN IP4 127.0.1.1\n", "");
    let offer = SessionDescription::parse(&text).expect("parses");
    assert_eq!(
        negotiate(&offer, &AnswerPolicy::default()),
        Err(NegotiateError::NoConnectionAddress)
    );
}

#[test]
fn policy_can_refuse_dtmf_and_restrict_codecs() {
    let no_dtmf = AnswerPolicy {
        telephone_event: false,
        ..AnswerPolicy::default()
    };
    let neg = negotiate(&parse("twilio"), &no_dtmf).expect("negotiates");
    assert_eq!(neg.telephone_event_pt, None);
    let alaw_only = AnswerPolicy {
        codecs: vec![Codec::Pcma],
        ..AnswerPolicy::default()
    };
    let err = negotiate(&parse("sipp-uac"), &alaw_only).expect_err("PCMU only offered");
    assert_eq!(
        err.to_string(),
        "no common audio codec: offered PCMU/8000; voxline accepts PCMA/8000"
    );
}

#[test]
fn every_answer_parses_mirrors_the_offer_and_negotiates_back() {
    let mut answered = 0;
    for (name, _) in FIXTURES {
        let offer = parse(name);
        let Ok(neg) = negotiate(&offer, &AnswerPolicy::default()) else {
            continue;
        };
        answered += 1;
        let text = build_answer(&offer, &neg, &local());
        lines(&text);
        let answer = SessionDescription::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.media.len(), offer.media.len(), "{name}");
        for (index, (ours, theirs)) in answer.media.iter().zip(&offer.media).enumerate() {
            assert_eq!(
                (&ours.media, &ours.proto),
                (&theirs.media, &theirs.proto),
                "{name}"
            );
            if index == neg.media_index {
                assert_eq!(ours.port, 20000, "{name}");
                assert_eq!(ours.direction, Some(neg.direction), "{name}");
            } else {
                assert_eq!(ours.port, 0, "{name}: rejected line");
                assert_eq!(
                    (&ours.formats, &ours.other_formats),
                    (&theirs.formats, &theirs.other_formats),
                    "{name}"
                );
            }
        }
        let back = negotiate(&answer, &AnswerPolicy::default())
            .unwrap_or_else(|e| panic!("{name}: answer does not negotiate: {e}"));
        assert_eq!(back.codec, neg.codec, "{name}");
        assert_eq!(back.payload_type, neg.payload_type, "{name}");
        assert_eq!(back.telephone_event_pt, neg.telephone_event_pt, "{name}");
        assert_eq!(back.media_index, neg.media_index, "{name}");
        assert_eq!(back.remote_rtp, addr("203.0.113.5:20000"), "{name}");
    }
    assert_eq!(answered, 13);
}

#[test]
fn reinvite_answer_carries_the_bumped_version() {
    let offer = parse("twilio");
    let neg = negotiate(&offer, &AnswerPolicy::default()).expect("negotiates");
    let mut media = local();
    let first = SessionDescription::parse(&build_answer(&offer, &neg, &media)).expect("first");
    media.bump_version();
    let second = SessionDescription::parse(&build_answer(&offer, &neg, &media)).expect("second");
    assert_eq!(first.origin.session_id, second.origin.session_id);
    assert_eq!(
        second.origin.session_version,
        first.origin.session_version + 1
    );
}
