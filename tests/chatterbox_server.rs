//! `voxline serve --engine chatterbox-nano`: a SIP call whose agent streams
//! text over the control socket is answered in Chatterbox's voice through the
//! same pipeline as Piper's (24 kHz -> 8 kHz -> PCMU -> the 20 ms pacer). The
//! model is the reduced fixture model (`common::chatterbox`), so the sound is
//! noise-like; what is checked is what the caller's phone would notice: one
//! steady PCMU stream, the speech in it, the events the agent relies on.

mod common;

use std::time::Duration;

use common::agent::Agent;
use common::calls::call;
use common::sip::*;
use serde_json::json;

/// A server on the reduced model with one answered call and its agent.
struct Live {
    work: std::path::PathBuf,
    server: Server,
    sip: SipSocket,
    capture: RtpCapture,
    dialog: common::calls::Dialog,
    agent: Agent,
}

impl Live {
    fn start(tag: &str) -> Live {
        let work = scratch_dir(tag);
        let model = common::chatterbox::tiny_model(&work.join("model"));
        let server = Server::start(&["--greeting", "", "--engine", "chatterbox-nano", "--model-dir", model.to_str().unwrap()]);
        let sip = SipSocket::bind(server.sip);
        let (capture, _) = RtpCapture::bind();
        let dialog = call(&server, &sip, capture.addr);
        let agent = Agent::attach(&server, &dialog.id);
        Live { work, server, sip, capture, dialog, agent }
    }
}

#[test]
fn a_sip_call_is_spoken_to_by_chatterbox_through_the_same_packetizer_as_piper() {
    let _slot = shared_slot();
    let Live { work, server, sip, capture, mut dialog, mut agent } = Live::start("chatterbox-server");

    for (i, token) in ["Hello ", "there. ", "How can ", "I help?"].iter().enumerate() {
        agent.send(json!({"type": "speak", "text": token, "turn": "t1", "last": i == 3}));
        agent.pump(Duration::from_millis(30));
    }
    let (_, started) = agent.wait_for("speech.started", Duration::from_secs(30));
    assert_eq!(started["turn"], "t1", "{started}");
    let (_, done) = agent.wait_for("speech.done", Duration::from_secs(60));
    assert_eq!(done["turn"], "t1", "{done}");
    std::thread::sleep(Duration::from_millis(400));
    dialog.bye(&sip);
    let a = RtpAnalysis::new(&capture.stop());
    eprintln!("{}", a.summary());
    server.note(a.summary());

    // One PCMU stream of 20 ms packets with no holes in sequence or time.
    assert_eq!(a.payload_types.keys().copied().collect::<Vec<_>>(), vec![0], "{}", a.summary());
    assert_eq!(a.payload_sizes.keys().copied().collect::<Vec<_>>(), vec![160], "{}", a.summary());
    assert_eq!(a.ssrcs.len(), 1, "{}", a.summary());
    assert_eq!(a.seq_lost, 0, "{}", a.summary());
    assert_eq!(a.bad_ts_steps(), 0, "{}", a.summary());
    assert!((a.mean_interval_ms() - 20.0).abs() < 1.5, "paced at 20 ms: {}", a.summary());
    // The utterance is in it, and it ended before the call did.
    let u = a.utterances();
    assert!(!u.is_empty(), "no speech reached the caller: {}", a.envelope());
    let last = u.last().unwrap().end;
    assert!(last < a.len(), "silence follows the utterance: {}", a.envelope());
    std::fs::remove_dir_all(&work).ok();
}

#[test]
fn a_piper_voice_asked_of_chatterbox_gets_an_error_event_and_the_call_keeps_going() {
    let _slot = shared_slot();
    let Live { work, server: _server, sip, capture, mut dialog, mut agent } = Live::start("chatterbox-server-options");

    agent.send(json!({"type": "speak", "text": "Hi.", "turn": "bad", "last": true, "voice": "en_US-joe-medium"}));
    let (_, err) = agent.wait_for("error", Duration::from_secs(20));
    assert!(err.to_string().contains("en_US-joe-medium"), "the error names the voice: {err}");
    agent.send(json!({"type": "speak", "text": "Hello.", "turn": "good", "last": true}));
    let (_, done) = agent.wait_for("speech.done", Duration::from_secs(60));
    assert_eq!(done["turn"], "good", "{done}");
    dialog.bye(&sip);
    drop(capture);
    std::fs::remove_dir_all(&work).ok();
}

/// Four calls whose agents speak at once: every caller hears its own
/// utterance, and the scheduler handed the engine batches of several calls'
/// streams (the `voxline_synthesis_batch_size` histogram has observations
/// above 1), so T3's decoding steps ran across calls.
#[test]
fn calls_speaking_at_once_are_synthesized_in_batches_and_each_hears_its_speech() {
    let _slot = shared_slot();
    let work = scratch_dir("chatterbox-server-batch");
    let model = common::chatterbox::tiny_model(&work.join("model"));
    let server = Server::start(&["--greeting", "", "--engine", "chatterbox-nano", "--model-dir", model.to_str().unwrap()]);
    let mut calls = Vec::new();
    for _ in 0..4 {
        let sip = SipSocket::bind(server.sip);
        let (capture, _) = RtpCapture::bind();
        let dialog = call(&server, &sip, capture.addr);
        let agent = Agent::attach(&server, &dialog.id);
        calls.push((sip, capture, dialog, agent));
    }
    let text = "Hello there, this is a longer sentence so that every call keeps its synthesis busy for a while.";
    for (i, (_, _, _, agent)) in calls.iter_mut().enumerate() {
        agent.send(json!({"type": "speak", "text": text, "turn": format!("t{i}"), "last": true}));
    }
    for (i, (_, _, _, agent)) in calls.iter_mut().enumerate() {
        let (_, done) = agent.wait_for("speech.done", Duration::from_secs(90));
        assert_eq!(done["turn"], format!("t{i}"), "{done}");
    }
    let metrics = server.get("/metrics").body;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    };
    let (alone, all) = (sample("voxline_synthesis_batch_size_bucket{le=\"1\"}"), sample("voxline_synthesis_batch_size_count"));
    assert!(all > alone, "no batch of more than one stream: {alone} of {all} engine calls had one stream");
    for (sip, capture, mut dialog, _) in calls {
        dialog.bye(&sip);
        let a = RtpAnalysis::new(&capture.stop());
        assert!(!a.utterances().is_empty(), "a caller heard no speech: {}", a.envelope());
        assert_eq!(a.seq_lost, 0, "{}", a.summary());
    }
    std::fs::remove_dir_all(&work).ok();
}
