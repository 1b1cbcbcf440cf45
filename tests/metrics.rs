//! `GET /metrics` during and after a call: the Prometheus families move as
//! the call does (one first-audio observation per utterance the caller waited
//! for, packets counted, the call counted by how it ended).

mod common;

use std::time::Duration;

use common::agent::Agent;
use common::calls::*;
use common::sip::*;
use serde_json::json;

/// The value of the sample `name` (with its labels as written), if exposed.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn metrics_follow_a_call_from_first_audio_to_its_end() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let before = server.get("/metrics");
    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type").map(|c| c.starts_with("text/plain")), Some(true));
    assert_eq!(sample(&before.body, "voxline_first_audio_seconds_count"), Some(0.0), "{}", before.body);

    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);
    let mut agent = Agent::attach(&server, &dialog.id);
    agent.send(json!({"type": "speak", "text": "Your table is ready.", "last": true}));
    agent.wait_for("speech.done", Duration::from_secs(10));
    let during = server.get("/metrics").body;
    assert_eq!(sample(&during, "voxline_calls_active{transport=\"sip\"}"), Some(1.0), "{during}");
    assert_eq!(sample(&during, "voxline_first_audio_seconds_count"), Some(1.0), "one utterance, waited for in silence: {during}");
    let first = sample(&during, "voxline_first_audio_seconds_sum").unwrap();
    assert!(first > 0.0 && first < 3.0, "first audio {first} s");
    assert!(sample(&during, "voxline_rtp_packets_sent_total").unwrap() > 25.0, "{during}");
    assert!(sample(&during, "voxline_sip_responses_total{code=\"200\"}").unwrap() >= 1.0, "{during}");
    assert!(sample(&during, "voxline_synthesis_rtf_count").unwrap() >= 1.0, "{during}");

    dialog.bye(&sip);
    agent.wait_for("call.ended", Duration::from_secs(5));
    let after = server.get("/metrics").body;
    assert_eq!(sample(&after, "voxline_calls_active{transport=\"sip\"}"), Some(0.0), "{after}");
    assert_eq!(
        sample(&after, "voxline_calls_total{direction=\"inbound\",outcome=\"remote_bye\",transport=\"sip\"}"),
        Some(1.0),
        "{after}"
    );
}
