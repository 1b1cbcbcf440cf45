//! Deterministic no-panic fuzzing: mutated torture messages, mutated call-flow requests
//! (so that mutations hit live dialogs and transactions), responses to our own BYEs, random
//! application actions and jumps in time. Checks that everything we send is well framed,
//! that every call ends exactly once, and that nothing leaks once all calls are hung up.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;
use voxline_sip::{CallHandle, Endpoint, Event};

/// Rounds per run; `VOXLINE_SIP_FUZZ_ROUNDS` overrides it for longer runs
/// (e.g. `VOXLINE_SIP_FUZZ_ROUNDS=1000000 cargo test --release -p voxline-sip --test fuzz`).
const ROUNDS: usize = 8_000;

fn rounds() -> usize {
    std::env::var("VOXLINE_SIP_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
}

/// The seed; `VOXLINE_SIP_FUZZ_SEED` picks another.
fn seed() -> u64 {
    std::env::var("VOXLINE_SIP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_4475)
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/torture", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes()
        })
        .collect();
    for i in 0..3 {
        let id = format!("fz{i}");
        let branch = format!("z9hG4bK-fz{i}");
        out.push(Req::invite(&id, &branch).text().into_bytes());
        out.push(Req::new("CANCEL", &id, &branch).text().into_bytes());
        out.push(
            Req::new("ACK", &id, &branch)
                .with_to_tag("x")
                .text()
                .into_bytes(),
        );
        out.push(
            Req::new("BYE", &id, "z9hG4bK-b")
                .with_to_tag("x")
                .cseq(2)
                .text()
                .into_bytes(),
        );
        out.push(
            Req::new("INFO", &id, "z9hG4bK-i")
                .with_to_tag("x")
                .cseq(3)
                .body("application/dtmf-relay", "Signal=1\r\n")
                .text()
                .into_bytes(),
        );
        out.push(
            Req::invite(&id, "z9hG4bK-re")
                .with_to_tag("x")
                .cseq(4)
                .text()
                .into_bytes(),
        );
        out.push(Req::new("OPTIONS", &id, "z9hG4bK-o").text().into_bytes());
    }
    out
}

const INTERESTING: &[u8] = b":;,<>\"\\ \r\n\t09=@%[]?*/z";

fn mutate(rng: &mut StdRng, base: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if data.is_empty() {
            data.push(rng.gen());
        }
        let len = data.len();
        let at = rng.gen_range(0..len);
        match rng.gen_range(0..9) {
            0 => data[at] = rng.gen(),
            1 => data[at] = INTERESTING[rng.gen_range(0..INTERESTING.len())],
            2 => {
                let end = (at + rng.gen_range(1..32)).min(len);
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.gen_range(1..64)).min(len);
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            4 => data.truncate(at),
            5 => {
                let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                data.splice(at..at, extra);
            }
            6 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let from = rng.gen_range(0..other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            7 => {
                // Change a digit (CSeq, Content-Length, ports...).
                if let Some(pos) = data.iter().skip(at).position(u8::is_ascii_digit) {
                    data[at + pos] = b'0' + rng.gen_range(0..10);
                }
            }
            _ => data = (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
        }
    }
    data
}

/// Checks the framing of something we send: UTF-8, a start line, CRLF-only line ends in the
/// head, Content-Length equal to the body.
fn check_framing(payload: &[u8]) {
    let text = std::str::from_utf8(payload).expect("we send UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    for line in head.split("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "bare line break in {line:?}\n{text}"
        );
    }
    let first = head.lines().next().unwrap();
    assert!(
        first.starts_with("SIP/2.0 ") || first.starts_with("BYE "),
        "unexpected start line {first:?}"
    );
    let cl: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(cl, body.len());
}

/// Turns a BYE we sent into a response to it.
fn answer_bye(text: &str, status: u16) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status} Whatever\r\n");
    for line in text.split("\r\n").skip(1) {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            out += line;
            out += "\r\n";
        }
    }
    out += "Content-Length: 0\r\n\r\n";
    out.into_bytes()
}

#[test]
fn random_and_mutated_datagrams_never_panic_and_calls_end_once() {
    let mut rng = StdRng::seed_from_u64(seed());
    let rounds = rounds();
    let mut corpus = corpus();
    let base_len = corpus.len();
    let mut ep = Endpoint::with_seed(config(), 99);
    let start = Instant::now();
    let mut now = start;
    let mut live: BTreeSet<CallHandle> = BTreeSet::new();
    let mut ended: BTreeSet<CallHandle> = BTreeSet::new();

    for round in 0..rounds {
        let base = corpus[rng.gen_range(0..corpus.len())].clone();
        let data = if rng.gen_bool(0.2) {
            base
        } else {
            mutate(&mut rng, &base, &corpus)
        };
        let source = if rng.gen_bool(0.8) {
            peer()
        } else {
            "[2001:db8::7]:5060".parse().unwrap()
        };
        ep.handle_datagram(now, source, &data);

        if rng.gen_bool(0.05) {
            now += Duration::from_millis(rng.gen_range(0..5_000));
            ep.handle_timeout(now);
        }
        while let Some(t) = ep.poll_transmit() {
            check_framing(&t.payload);
            if t.payload.starts_with(b"BYE ") && corpus.len() < base_len + 50 {
                let text = String::from_utf8(t.payload).unwrap();
                corpus.push(answer_bye(&text, [100, 200, 481, 500][round % 4]));
            }
        }
        while let Some(event) = ep.poll_event() {
            match event {
                Event::IncomingCall { call, .. } => {
                    assert!(live.insert(call), "{call} started twice")
                }
                Event::CallEnded { call, .. } => {
                    assert!(live.remove(&call), "{call} ended but was not live");
                    assert!(ended.insert(call), "{call} ended twice");
                }
                _ => {}
            }
        }
        assert_eq!(ep.call_count(), live.len());
        if let Some(&call) = live.iter().nth(rng.gen_range(0..live.len().max(1))) {
            // Random application actions; errors are fine, panics are not.
            let _ = match rng.gen_range(0..8) {
                0 => ep.ringing(now, call),
                1 | 2 => ep.answer(now, call, ANSWER),
                3 => ep.reject(now, call, rng.gen_range(250..750), Some("x\r\ny")),
                4 => ep.hangup(now, call),
                5 => ep.answer_reinvite(now, call, ANSWER),
                6 => ep.reject_reinvite(now, call, 488),
                _ => Ok(()),
            };
        }
    }

    // Hang up everything and let every timer run out: nothing may be left behind.
    for &call in &live {
        let _ = ep.hangup(now, call);
    }
    for _ in 0..200 {
        now += Duration::from_secs(1);
        ep.handle_timeout(now);
        while let Some(t) = ep.poll_transmit() {
            check_framing(&t.payload);
        }
    }
    while let Some(event) = ep.poll_event() {
        if let Event::CallEnded { call, .. } = event {
            assert!(live.remove(&call));
        }
    }
    assert!(live.is_empty(), "calls never ended: {live:?}");
    assert_eq!(ep.call_count(), 0);
    assert_eq!(ep.poll_timeout(), None, "a timer is still pending");
    let stats = ep.stats();
    eprintln!("{stats:?}, calls: {}", ended.len());
    assert_eq!(stats.datagrams, rounds as u64);
    assert!(
        stats.malformed > 0 && stats.bad_requests > 0 && !ended.is_empty(),
        "{stats:?}"
    );
}
