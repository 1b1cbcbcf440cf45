//! The endpoint's deadline index (issue 19): `poll_timeout` and `handle_timeout` take the calls'
//! and transactions' deadlines from an ordered index instead of asking each of them. This
//! crate's tests run with the `check-deadlines` feature, under which every `poll_timeout` also
//! checks the index against asking each entity; here the endpoint goes through many changes of
//! deadline (fake time), and a wake-up must come exactly when something is due.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use voxline_sip::{CallHandle, Event};

/// An answered call whose ACK comes: its 200's retransmission timer goes away, so the
/// endpoint does not wake for it.
#[test]
fn a_call_whose_timer_moves_later_is_not_woken_early() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_, ok) = answered_call(&mut ep, start, "later");
    assert_eq!(ep.poll_timeout(), Some(start + ms(500)), "the 200 goes again at T1");
    Req::new("ACK", "later", "z9hG4bK-ack-later")
        .with_to_tag(&ok.to_tag().unwrap())
        .send(&mut ep, start + ms(100));
    let next = ep.poll_timeout().expect("the INVITE transaction's Timer L");
    assert!(next >= start + Duration::from_secs(32), "woken at {:?}", next - start);
    assert!(run_until(&mut ep, start, Duration::from_secs(40)).is_empty());
    assert!(ep.poll_timeout() > Some(start + Duration::from_secs(40)), "the session timer's");
}

/// An established call with no timer of its own answers a re-INVITE: its 200's retransmission
/// timer (T1) comes before everything else, and the endpoint wakes for it.
#[test]
fn a_call_whose_timer_moves_earlier_is_woken() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (call, tag) = established_call(&mut ep, start, "earlier");
    let at = start + Duration::from_secs(5);
    assert!(ep.poll_timeout() > Some(at));
    Req::new("INVITE", "earlier", "z9hG4bK-re-earlier")
        .with_to_tag(&tag)
        .cseq(2)
        .body("application/sdp", SDP)
        .send(&mut ep, at);
    assert_eq!(one(&mut ep).status(), 100);
    ep.answer_reinvite(at, call, ANSWER).unwrap();
    assert_eq!(one(&mut ep).status(), 200);
    assert_eq!(ep.poll_timeout(), Some(at + ms(500)));
    ep.handle_timeout(at + ms(500));
    assert_eq!(one(&mut ep).status(), 200, "the re-INVITE's 200 again at T1");
}

/// A BYE ends a call whose 200 was still being retransmitted: the call leaves the index, so no
/// wake-up (and no 200) comes for it.
#[test]
fn a_removed_call_leaves_the_index() {
    let mut ep = endpoint();
    let start = Instant::now();
    let (_, ok) = answered_call(&mut ep, start, "gone");
    Req::new("BYE", "gone", "z9hG4bK-bye-gone")
        .with_to_tag(&ok.to_tag().unwrap())
        .cseq(2)
        .send(&mut ep, start + ms(100));
    assert_eq!(one(&mut ep).status(), 200);
    assert_eq!(ep.call_count(), 0);
    let next = ep.poll_timeout().expect("the transactions' own timers");
    assert!(next > start + ms(500), "woken at {:?}", next - start);
    assert!(run_until(&mut ep, start, Duration::from_secs(40)).is_empty());
    assert_eq!(ep.poll_timeout(), None);
}

/// A deterministic pseudo-random walk (seeded, 600 steps) through incoming calls, answers,
/// ACKs, re-INVITEs, BYEs both ways, hang-ups, DTMF and the passing of time. Every
/// `poll_timeout` checks the index against a full scan; each wake-up at that deadline must
/// find its work done (the next deadline is later: an early one would wake the endpoint again
/// and again); at the end every call is hung up and every timer runs out.
#[test]
fn the_index_agrees_with_a_full_scan_through_random_calls() {
    let mut ep = endpoint();
    let start = Instant::now();
    let mut now = start;
    let mut rng = StdRng::seed_from_u64(19);
    let mut next = move |n: u64| rng.gen_range(0..n);
    // Calls we know of: handle, Call-ID, our tag once answered, the peer's next CSeq.
    let mut calls: Vec<(CallHandle, String, Option<String>, u32)> = Vec::new();
    let mut made = 0;
    for _ in 0..600 {
        let pick = (!calls.is_empty()).then(|| next(calls.len() as u64) as usize);
        match next(8) {
            0 => {
                made += 1;
                let id = format!("walk-{made}");
                let call = incoming_call(&mut ep, now, &id);
                calls.push((call, id, None, 2));
            }
            1 => {
                if let Some(i) = pick.filter(|&i| calls[i].2.is_none()) {
                    if ep.answer(now, calls[i].0, ANSWER).is_ok() {
                        calls[i].2 = drain(&mut ep).last().and_then(|ok| ok.to_tag());
                    }
                }
            }
            2 => {
                if let Some(i) = pick {
                    let (_, id, tag, _) = &calls[i];
                    if let Some(tag) = tag {
                        Req::new("ACK", id, &format!("z9hG4bK-ack-{}", next(1 << 30)))
                            .with_to_tag(tag)
                            .send(&mut ep, now);
                    }
                }
            }
            3 => {
                if let Some(i) = pick {
                    let (call, id, tag, cseq) = &mut calls[i];
                    if let Some(tag) = tag {
                        Req::new("INVITE", id, &format!("z9hG4bK-re-{}", next(1 << 30)))
                            .with_to_tag(tag)
                            .cseq(*cseq)
                            .body("application/sdp", SDP)
                            .send(&mut ep, now);
                        *cseq += 1;
                        let _ = ep.answer_reinvite(now, *call, ANSWER);
                    }
                }
            }
            4 => {
                if let Some(i) = pick {
                    let (_, id, tag, cseq) = &mut calls[i];
                    let mut bye = Req::new("BYE", id, &format!("z9hG4bK-bye-{}", next(1 << 30)));
                    if let Some(tag) = tag {
                        bye = bye.with_to_tag(tag);
                    }
                    bye.cseq(*cseq).send(&mut ep, now);
                    *cseq += 1;
                }
            }
            5 => {
                if let Some(i) = pick {
                    let call = calls[i].0;
                    let _ = ep.hangup(now, call);
                    let _ = ep.send_dtmf_info(now, call, "1w2", ms(100));
                }
            }
            _ => {
                now += ms(next(3_000));
                while let Some(deadline) = ep.poll_timeout().filter(|&d| d <= now) {
                    ep.handle_timeout(deadline);
                    drain(&mut ep);
                    let then = ep.poll_timeout();
                    assert!(then.is_none_or(|d| d > deadline), "woken again at {deadline:?}");
                }
            }
        }
        drain(&mut ep);
        for event in events(&mut ep) {
            if let Event::CallEnded { call, .. } = event {
                calls.retain(|c| c.0 != call);
            }
        }
        assert_eq!(ep.call_count(), calls.len());
        ep.poll_timeout();
    }
    assert!(made > 50, "only {made} calls");
    for (call, ..) in &calls {
        let _ = ep.hangup(now, *call);
        let _ = ep.abandon(now, *call);
    }
    run_until(&mut ep, start, now - start + Duration::from_secs(600));
    assert_eq!(ep.call_count(), 0);
    assert_eq!(ep.poll_timeout(), None, "a timer is still pending");
}
