//! Scale-out as docker-compose.yml deploys it, on loopback: Kamailio with the
//! compose file's dispatcher config (tests/common/dispatcher.rs) in front of
//! two voxline instances. Calls spread over both; one instance is drained with
//! SIGTERM while calls are up: its live calls end with its BYE, new calls go
//! to the other instance, and no caller sees a failed call.
//!
//! Needs kamailio and sipp (`scripts/setup.sh --test`).

mod common;

use std::time::{Duration, Instant};

use common::agent::Agent;
use common::sip::*;

const CALLS: usize = 40;

/// `call.answered` events that arrived after `since`.
fn answered_after(events: &Agent, since: Instant) -> usize {
    events.events.iter().filter(|(at, e)| e["type"] == "call.answered" && *at > since).count()
}

fn count(events: &Agent, kind: &str) -> usize {
    events.all(kind).len()
}

#[test]
fn forty_calls_over_two_instances_and_one_drained_mid_way_without_a_failed_call() {
    require_sipp();
    let _slot = shared_slot();
    // As the compose file runs them: every INVITE comes from the dispatcher's address.
    let args = ["--greeting", "Hello.", "--drain-timeout", "20", "--invite-rate", "200", "--invite-burst", "400"];
    let mut a = Server::start(&args);
    let b = Server::start(&args);
    let proxy = common::dispatcher::start(&common::root().join("docker-compose.yml"), &[a.sip, b.sip]);
    let mut events_a = Agent::connect(&format!("ws://{}/v1/events", a.http));
    let mut events_b = Agent::connect(&format!("ws://{}/v1/events", b.http));
    events_a.wait_for("events.attached", Duration::from_secs(5));
    events_b.wait_for("events.attached", Duration::from_secs(5));
    let (capture, _) = RtpCapture::bind();

    // 40 calls, 4 new ones a second, each up for 4 s unless the server hangs up first.
    let mut sipp = SippCall::new("uac_either_hangs_up.xml", proxy.addr)
        .rtp(capture.addr)
        .calls(CALLS as u32, 16)
        .arg("-r")
        .arg("4")
        .timeout(Duration::from_secs(90))
        .spawn();

    // Drain instance A once both carry calls and A has some up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        events_a.pump(Duration::from_millis(25));
        events_b.pump(Duration::from_millis(25));
        let live_a = count(&events_a, "call.answered") - count(&events_a, "call.ended");
        if live_a >= 2 && count(&events_b, "call.answered") >= 2 && count(&events_a, "call.answered") + count(&events_b, "call.answered") >= 10 {
            break;
        }
        assert!(!sipp.is_done(), "sipp ended before the calls spread over both instances\n{}", proxy.log());
        assert!(Instant::now() < deadline, "the calls did not spread over both instances within 30 s: A answered {}, B {}\n{}", count(&events_a, "call.answered"), count(&events_b, "call.answered"), proxy.log());
    }
    let live_at_signal = count(&events_a, "call.answered") - count(&events_a, "call.ended");
    let signalled = Instant::now();
    a.signal("TERM");

    let deadline = Instant::now() + Duration::from_secs(100);
    while !sipp.is_done() {
        assert!(Instant::now() < deadline, "sipp still running 100 s after the drain began");
        events_a.pump(Duration::from_millis(25));
        events_b.pump(Duration::from_millis(25));
    }
    let run = sipp.wait();
    run.assert_success("40 calls through the dispatcher while instance A drained");

    let status = a.wait_exit(Duration::from_secs(25)).expect("the drained instance exits within its drain timeout");
    assert!(status.success(), "the drained instance exited with {status}");
    events_a.pump(Duration::from_millis(200));
    events_b.pump(Duration::from_millis(500));

    let (answered_a, answered_b) = (count(&events_a, "call.answered"), count(&events_b, "call.answered"));
    assert_eq!(answered_a + answered_b, CALLS, "every call answered once, by one instance (A {answered_a}, B {answered_b})");
    // A drain takes effect at once: a call answered by A more than half a second after
    // the signal would be a new call let in.
    assert_eq!(answered_after(&events_a, signalled + Duration::from_millis(500)), 0, "A took new calls while draining");
    assert!(answered_after(&events_b, signalled) > 0, "calls placed after the drain went to B");
    // A's calls that were up at the signal ended with A's own BYE, none by the caller's
    // (those wait 4 s) nor by a timeout.
    let ended_a: Vec<(Instant, String)> = events_a
        .events
        .iter()
        .filter(|(_, e)| e["type"] == "call.ended")
        .map(|(at, e)| (*at, e["reason"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(ended_a.len(), answered_a, "every call A answered ended: {ended_a:?}");
    let drained: Vec<&String> = ended_a.iter().filter(|(at, _)| *at > signalled).map(|(_, r)| r).collect();
    assert!(drained.len() >= live_at_signal.min(2), "A's live calls ended after the signal: {drained:?}");
    assert!(drained.iter().all(|r| *r == "local_bye"), "A ended its live calls with its own BYE: {drained:?}");
    let byes_from_server = run.received().iter().filter(|m| m.msg.method() == Some("BYE")).count();
    assert!(byes_from_server >= drained.len(), "the callers received A's BYEs ({byes_from_server} BYEs for {} drained calls)", drained.len());
    assert!(!proxy.log().contains("no voxline instance is up"), "the dispatcher ran out of instances:\n{}", proxy.log());
}
