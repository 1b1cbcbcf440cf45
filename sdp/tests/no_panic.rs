//! Malformed, truncated and random bodies: parsing, negotiating and answering never panic,
//! and whatever parses prints back to an equal value. Deterministic and bounded.

mod common;

use common::{local, FIXTURES};
use voxline_sdp::{build_answer, negotiate, AnswerPolicy, SessionDescription};

/// Runs the whole pipeline on `bytes`, checking the invariants that must hold for any input.
fn check(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let offer = match SessionDescription::parse(&text) {
        Ok(offer) => offer,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let printed = offer.to_string();
    assert_eq!(
        SessionDescription::parse(&printed).as_ref(),
        Ok(&offer),
        "printing changed the description of {text:?}"
    );
    let neg = match negotiate(&offer, &AnswerPolicy::default()) {
        Ok(neg) => neg,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let answer_text = build_answer(&offer, &neg, &local());
    let answer = SessionDescription::parse(&answer_text)
        .unwrap_or_else(|e| panic!("answer {answer_text:?} to {text:?} does not parse: {e}"));
    assert_eq!(answer.media.len(), offer.media.len());
    let back = negotiate(&answer, &AnswerPolicy::default())
        .unwrap_or_else(|e| panic!("answer {answer_text:?} does not negotiate: {e}"));
    assert_eq!(
        (back.codec, back.payload_type),
        (neg.codec, neg.payload_type)
    );
}

/// xorshift64*: a small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the grammar, to hit parser branches more often than random bytes.
const SIGNIFICANT: &[u8] = b"=:/ .\r\n\t0123456789-vomcatsAIPN\x00\xff";

#[test]
fn truncation_at_every_byte() {
    for (_, text) in FIXTURES {
        let bytes = text.as_bytes();
        for end in 0..=bytes.len() {
            check(&bytes[..end]);
            check(&bytes[end..]);
        }
    }
}

#[test]
fn byte_flips_and_insertions() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (_, text) in FIXTURES {
        for _ in 0..400 {
            let mut bytes = text.as_bytes().to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                let byte = if rng.below(2) == 0 {
                    SIGNIFICANT[rng.below(SIGNIFICANT.len())]
                } else {
                    rng.next() as u8
                };
                match rng.below(3) {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            check(&bytes);
        }
    }
}

#[test]
fn lines_dropped_duplicated_and_swapped() {
    for (_, text) in FIXTURES {
        let lines: Vec<&str> = text.lines().collect();
        for i in 0..lines.len() {
            let mut dropped = lines.clone();
            dropped.remove(i);
            check(dropped.join("\r\n").as_bytes());
            let mut duplicated = lines.clone();
            duplicated.insert(i, lines[i]);
            check(duplicated.join("\n").as_bytes());
            if i + 1 < lines.len() {
                let mut swapped = lines.clone();
                swapped.swap(i, i + 1);
                check(swapped.join("\n").as_bytes());
            }
        }
    }
}

#[test]
fn random_bytes_and_random_lines() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&bytes);
    }
    // Bodies that start like SDP, built from fragments of real lines.
    let fragments: Vec<&str> = FIXTURES
        .iter()
        .flat_map(|(_, text)| text.lines())
        .flat_map(|line| line.split([' ', ':', '/']))
        .collect();
    let kinds = [
        "o=",
        "c=",
        "m=",
        "a=",
        "a=rtpmap:",
        "a=fmtp:",
        "a=rtcp:",
        "s=",
        "x",
    ];
    for _ in 0..3000 {
        let mut body = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        for _ in 0..rng.below(12) {
            body.push_str(kinds[rng.below(kinds.len())]);
            for _ in 0..rng.below(6) {
                body.push_str(fragments[rng.below(fragments.len())]);
                body.push([' ', '/', ':', ' '][rng.below(4)]);
            }
            body.push_str("\r\n");
        }
        check(body.as_bytes());
    }
}

#[test]
fn huge_values_are_bounded_in_errors() {
    let long = "9".repeat(10_000);
    for body in [
        format!("v=0\no=- 1 {long} IN IP4 1.2.3.4\n"),
        format!("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio {long} RTP/AVP 0\n"),
        format!("{long}\n"),
    ] {
        let err = SessionDescription::parse(&body).expect_err("rejected");
        assert!(err.to_string().len() < 200, "{err}");
    }
}
