//! Shared by the integration tests: the real-world offers in `tests/data/`, each named after
//! the peer that produced it, and voxline's side of the call.

#![allow(dead_code)]

use voxline_sdp::{
    build_answer, negotiate, AnswerPolicy, LocalMedia, NegotiateError, Negotiated,
    SessionDescription,
};

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        /// Every offer in `tests/data/`, as `(file stem, text)`.
        pub const FIXTURES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../data/", $name, ".sdp")))),*
        ];
    };
}

fixtures!(
    "sipp-uac",
    "twilio",
    "baresip",
    "linphone-audio-video",
    "zoiper",
    "sonus-carrier",
    "freeswitch",
    "g729-only",
    "asterisk-hold-sendonly",
    "rfc2543-hold",
    "ipv6-trunk",
    "dynamic-pcmu",
    "session-and-media-level",
    "srtp-only",
    "srtp-then-rtp",
    "chrome-webrtc",
    "t38-reinvite",
);

/// The text of the fixture `name`.
pub fn fixture(name: &str) -> &'static str {
    FIXTURES
        .iter()
        .find(|(stem, _)| *stem == name)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// The fixture with CRLF line endings, as it arrives on the wire.
pub fn crlf(text: &str) -> String {
    text.replace('\n', "\r\n")
}

/// Parses a fixture, failing the test with the error if it does not parse.
pub fn parse(name: &str) -> SessionDescription {
    SessionDescription::parse(&crlf(fixture(name)))
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

/// Negotiates a fixture under the default policy.
pub fn negotiate_default(name: &str) -> Result<Negotiated, NegotiateError> {
    negotiate(&parse(name), &AnswerPolicy::default())
}

/// Voxline's media: 203.0.113.5:20000, session id 42, version 1.
pub fn local() -> LocalMedia {
    LocalMedia::new("203.0.113.5".parse().expect("ip"), 20000, 42)
}

/// The answer voxline gives to a fixture under the default policy.
pub fn answer(name: &str) -> (Negotiated, String) {
    let offer = parse(name);
    let neg = negotiate(&offer, &AnswerPolicy::default())
        .unwrap_or_else(|e| panic!("{name} does not negotiate: {e}"));
    let text = build_answer(&offer, &neg, &local());
    (neg, text)
}
