//! The session against a fake call, with fake time.

use super::*;
use crate::media::CallSignal;

/// A call that records what the session asked of it.
#[derive(Default)]
struct FakeCall {
    spoken: Vec<(UtteranceId, String, Option<String>)>,
    next: UtteranceId,
    queued: Duration,
    marks: Vec<String>,
    cleared: usize,
    hangups: usize,
    caller_audio: Option<bool>,
    /// What `clear` reports (utterances queued in the playout).
    playing: Vec<ClearedUtterance>,
    /// A WebRTC call (no SIP dialog).
    webrtc: bool,
    in_dialog: Vec<InDialog>,
}

impl CallPort for &mut FakeCall {
    fn speak(&mut self, clause: &str, voice: Option<&str>, _options: SynthOptions) -> UtteranceId {
        self.next += 1;
        self.spoken.push((self.next, clause.to_owned(), voice.map(str::to_owned)));
        self.next
    }
    fn clear(&mut self) -> Vec<ClearedUtterance> {
        self.cleared += 1;
        std::mem::take(&mut self.playing)
    }
    fn mark(&mut self, name: String) {
        self.marks.push(name);
    }
    fn queued(&self) -> Duration {
        self.queued
    }
    fn send_dtmf(&mut self, digits: &str, _duration: Duration) -> Result<(), DtmfSendError> {
        if digits == "x" {
            return Err(DtmfSendError::NotNegotiated);
        }
        Ok(())
    }
    fn is_sip(&self) -> bool {
        !self.webrtc
    }
    fn in_dialog(&mut self, request: InDialog) {
        self.in_dialog.push(request);
    }
    fn hangup(&mut self) {
        self.hangups += 1;
    }
    fn caller_audio(&mut self, enabled: bool) {
        self.caller_audio = Some(enabled);
    }
    fn has_voice(&self, voice: &str) -> bool {
        voice == "joe" || voice == "amy"
    }
    fn voice_names(&self) -> Vec<String> {
        vec!["joe".into(), "amy".into()]
    }
    fn default_voice(&self) -> String {
        "joe".into()
    }
}

fn speak(text: &str, last: bool) -> Request {
    Request::Speak(SpeakRequest { text: text.into(), flush: last, last, ..Default::default() })
}

fn started(u: UtteranceId, at: Instant) -> MediaEvent {
    MediaEvent::Playout(Box::new(PlayoutEvent::Started { utterance: u, at, waited: Duration::ZERO, first_audio: None }))
}

fn finished(u: UtteranceId, ms: u64) -> MediaEvent {
    MediaEvent::Playout(Box::new(PlayoutEvent::Finished { utterance: u, played: Duration::from_millis(ms), underruns: 0 }))
}

fn events(out: Vec<Out>) -> Vec<CallEvent> {
    out.into_iter()
        .filter_map(|o| match o {
            Out::Event(e) => Some(e),
            Out::Audio(_) => None,
        })
        .collect()
}

#[test]
fn a_turn_is_started_with_its_ttfa_and_done_once_every_clause_played() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    assert_eq!(s.request(t0, speak("Hello there, how are you? ", false)), vec![]);
    assert_eq!(s.request(t0 + Duration::from_millis(30), speak("Fine.", true)), vec![]);
    let ids: Vec<UtteranceId> = s.port.spoken.iter().map(|u| u.0).collect();
    assert!(ids.len() >= 2, "clauses spoken: {:?}", s.port.spoken);
    let out = events(s.media(started(ids[0], t0 + Duration::from_millis(80))));
    match &out[..] {
        [CallEvent::SpeechStarted { turn, ttfa_ms, .. }] => {
            assert_eq!(turn, "turn-1");
            assert!((ttfa_ms - 80.0).abs() < 1e-6, "{ttfa_ms}");
        }
        other => panic!("{other:?}"),
    }
    // Later utterances of the turn do not start it again.
    assert_eq!(events(s.media(started(ids[1], t0 + Duration::from_millis(900)))), vec![]);
    for (i, id) in ids.iter().enumerate() {
        let out = events(s.media(finished(*id, 500)));
        assert!(matches!(out[0], CallEvent::UtteranceDone { .. }));
        let done = out.iter().any(|e| matches!(e, CallEvent::SpeechDone { .. }));
        assert_eq!(done, i == ids.len() - 1, "speech.done only after the last clause: {out:?}");
        if let Some(CallEvent::SpeechDone { turn, text, played_ms }) = out.last() {
            assert_eq!(turn, "turn-1");
            assert_eq!(*played_ms, 500 * ids.len() as u64);
            assert!(text.contains("Fine."), "{text}");
        }
    }
}

#[test]
fn text_without_a_boundary_waits_for_the_segmenter_deadline_in_fake_time() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    s.request(t0, speak("and then we will see what happens next", false));
    assert!(s.port.spoken.is_empty(), "no clause boundary yet");
    let due = s.deadline().expect("the segmenter waits for a boundary, bounded");
    s.poll(due - Duration::from_millis(1));
    assert!(s.port.spoken.is_empty());
    s.poll(due);
    assert_eq!(s.port.spoken.len(), 1, "released at its deadline");
}

#[test]
fn a_new_turn_id_ends_the_previous_turn_and_clear_reports_what_was_heard() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    let req = |text: &str, turn: &str| Request::Speak(SpeakRequest { text: text.into(), turn: Some(turn.into()), flush: true, ..Default::default() });
    s.request(t0, req("One.", "a"));
    s.request(t0, req("Two.", "b"));
    let (a, b) = (s.port.spoken[0].0, s.port.spoken[1].0);
    s.port.playing = vec![
        ClearedUtterance { utterance: a, played: Duration::from_millis(300), started: true, heard: vec!["One".into()] },
        ClearedUtterance { utterance: b, played: Duration::ZERO, started: false, heard: vec![] },
    ];
    s.request(t0, Request::Speak(SpeakRequest { text: "and a tail".into(), turn: Some("b".into()), ..Default::default() }));
    let out = s.request(t0, Request::Clear);
    assert_eq!(
        out,
        vec![CallEvent::Cleared { turn: Some("a".into()), heard_text: "One".into(), heard_ms: 300, dropped_text: "and a tail".into(), dropped_utterances: 2 }]
    );
    assert_eq!(s.port.cleared, 1);
    // A finish after the clear is not double-counted.
    assert_eq!(events(s.media(finished(a, 300))), vec![]);
}

#[test]
fn bad_requests_get_errors_and_change_nothing() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    let code = |out: Vec<CallEvent>| match &out[..] {
        [CallEvent::Error { code, .. }] => *code,
        other => panic!("{other:?}"),
    };
    let unknown = Request::Speak(SpeakRequest { text: "Hi.".into(), voice: Some("nobody".into()), ..Default::default() });
    assert_eq!(code(s.request(t0, unknown)), "unknown_voice");
    assert_eq!(code(s.request(t0, speak(&"a".repeat(MAX_REQUEST_CHARS + 1), true))), "text_too_long");
    let preset = Request::Configure { voice: None, preset: Some("warp".into()), segment: None };
    assert_eq!(code(s.request(t0, preset)), "invalid_message");
    assert_eq!(code(s.request(t0, Request::SendDtmf { digits: "x".into(), duration_ms: None, method: DtmfMethod::Rfc4733 })), "unsupported");
    let format = Request::CallerAudio { enabled: true, format: Some("opus".into()) };
    assert_eq!(code(s.request(t0, format)), "invalid_message");
    assert!(s.port.spoken.is_empty());
    assert_eq!(s.port.caller_audio, None);
}

#[test]
fn configure_marks_hangup_and_caller_audio_reach_the_call() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    let out = s.request(t0, Request::Configure { voice: Some("amy".into()), preset: Some("fidelity".into()), segment: None });
    assert_eq!(out, vec![CallEvent::Configured { voice: "amy".into(), preset: "fidelity", segment: "sentence" }]);
    s.request(t0, speak("Hi.", true));
    assert_eq!(s.port.spoken[0].2.as_deref(), Some("amy"));
    s.request(t0, Request::Mark { name: "m1".into() });
    s.request(t0, Request::CallerAudio { enabled: true, format: Some("pcm16".into()) });
    let audio = s.media(MediaEvent::CallerAudio { pcmu: vec![0xFF; 160], timestamp: 0 });
    assert!(matches!(&audio[..], [Out::Audio(bytes)] if bytes.len() == 320));
    s.request(t0, Request::Hangup);
    s.close();
    assert_eq!((s.port.marks.len(), s.port.hangups, s.port.caller_audio), (1, 1, Some(false)));
}

#[test]
fn backpressure_pauses_above_the_high_mark_and_resumes_below_the_low_one() {
    let mut call = FakeCall::default();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    s.port.queued = PAUSE_ABOVE + Duration::from_secs(1);
    assert!(matches!(s.backpressure(), Some(CallEvent::Backpressure { paused: true, .. })));
    assert_eq!(s.backpressure(), None, "reported once");
    s.port.queued = RESUME_BELOW + Duration::from_secs(1);
    assert_eq!(s.backpressure(), None, "between the marks: still paused");
    s.port.queued = RESUME_BELOW - Duration::from_secs(1);
    assert!(matches!(s.backpressure(), Some(CallEvent::Backpressure { paused: false, .. })));
}

#[test]
fn an_adopted_greeting_is_reported_as_the_turn_greeting() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    s.adopt(42, "greeting", "Welcome.".into(), t0);
    let out = events(s.media(started(42, t0 + Duration::from_millis(60))));
    assert!(matches!(&out[..], [CallEvent::SpeechStarted { turn, text, .. }] if turn == "greeting" && text == "Welcome."), "{out:?}");
    let out = events(s.media(finished(42, 900)));
    assert!(matches!(out.last(), Some(CallEvent::SpeechDone { turn, played_ms: 900, .. }) if turn == "greeting"), "{out:?}");
    // The agent's own turns are numbered as before.
    s.request(t0, speak("Hi.", true));
    let ids: Vec<UtteranceId> = s.port.spoken.iter().map(|u| u.0).collect();
    let out = events(s.media(started(ids[0], t0)));
    assert!(matches!(&out[..], [CallEvent::SpeechStarted { turn, .. }] if turn == "turn-1"), "{out:?}");
}

#[test]
fn transfer_and_info_dtmf_go_to_the_sip_dialog_and_their_outcomes_come_back() {
    let mut call = FakeCall::default();
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    assert!(s.request(t0, Request::Transfer { to: "sip:bob@192.0.2.1".into() }).is_empty());
    let info = Request::SendDtmf { digits: "1#".into(), duration_ms: None, method: DtmfMethod::Info };
    assert!(s.request(t0, info).is_empty());
    let bad = s.request(t0, Request::Transfer { to: "bob".into() });
    assert!(matches!(&bad[..], [CallEvent::Error { code: "invalid_message", .. }]), "{bad:?}");
    let progress = s.media(MediaEvent::Signal(Box::new(CallSignal::TransferProgress { status: 100, reason: "Trying".into() })));
    assert_eq!(events(progress), vec![CallEvent::TransferProgress { status: 100, reason: "Trying".into() }]);
    let done = s.media(MediaEvent::Signal(Box::new(CallSignal::TransferDone { status: 200, reason: "OK".into() })));
    assert_eq!(events(done), vec![CallEvent::TransferDone { status: 200, reason: "OK".into() }]);
    let failed = s.media(MediaEvent::Signal(Box::new(CallSignal::DtmfFailed { status: 481, reason: "Gone".into(), dropped: "#".into() })));
    assert!(matches!(&events(failed)[..], [CallEvent::Error { code: "dtmf_failed", .. }]));
    assert_eq!(
        s.port.in_dialog,
        vec![
            InDialog::Transfer { to: "sip:bob@192.0.2.1".into() },
            InDialog::Dtmf { digits: "1#".into(), duration: Duration::from_millis(160) }
        ]
    );
}

#[test]
fn a_webrtc_call_cannot_transfer_or_send_info() {
    let mut call = FakeCall { webrtc: true, ..Default::default() };
    let t0 = Instant::now();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    for request in [
        Request::Transfer { to: "sip:bob@192.0.2.1".into() },
        Request::SendDtmf { digits: "1".into(), duration_ms: None, method: DtmfMethod::Info },
    ] {
        match &s.request(t0, request)[..] {
            [CallEvent::Error { code: "unsupported", message }] => assert!(message.contains("SIP call"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(s.port.in_dialog.is_empty());
}

fn digit(d: char) -> MediaEvent {
    MediaEvent::Dtmf { digit: d, duration_ms: 100 }
}

#[test]
fn a_digit_stops_speech_when_the_turn_is_dtmf_interruptible() {
    let t0 = Instant::now();
    let relay = Defaults { interruptible: Some(Interruptible::Any), ..Defaults::default() };
    let turn = |interruptible: Option<Interruptible>| {
        Request::Speak(SpeakRequest { text: "Your balance is forty two dollars.".into(), flush: true, last: true, interruptible, ..Default::default() })
    };
    let playing = |u: UtteranceId| vec![ClearedUtterance { utterance: u, played: Duration::from_millis(400), started: true, heard: vec!["Your".into(), "balance".into()] }];

    // The dialect's default (`any`): the digit cuts the turn off, `cleared` (ConversationRelay's `interrupt`) before `dtmf`.
    let mut call = FakeCall::default();
    let mut s = Session::new(&mut call, SynthOptions::default(), relay.clone());
    s.request(t0, turn(None));
    let u = s.port.spoken[0].0;
    s.port.playing = playing(u);
    let out = events(s.media(digit('5')));
    assert!(
        matches!(&out[..], [CallEvent::Cleared { heard_text, heard_ms: 400, .. }, CallEvent::Dtmf { digit, .. }] if heard_text == "Your balance" && digit == "5"),
        "{out:?}"
    );
    assert_eq!(s.port.cleared, 1);
    // Nothing is being spoken any more: the next digit is only a digit.
    assert!(matches!(&events(s.media(digit('6')))[..], [CallEvent::Dtmf { .. }]));
    assert_eq!(s.port.cleared, 1);

    // `dtmf` interrupts too; `speech` and `none` (false) leave the speech alone.
    for (interruptible, cuts) in [(Interruptible::Dtmf, true), (Interruptible::Speech, false), (Interruptible::None, false)] {
        let mut call = FakeCall::default();
        let mut s = Session::new(&mut call, SynthOptions::default(), relay.clone());
        s.request(t0, turn(Some(interruptible)));
        let u = s.port.spoken[0].0;
        s.port.playing = playing(u);
        let out = events(s.media(digit('1')));
        assert_eq!(matches!(out[0], CallEvent::Cleared { .. }), cuts, "{interruptible:?}: {out:?}");
        assert_eq!(s.port.cleared, usize::from(cuts));
    }

    // voxline's own dialect: digits never clear by themselves (the agent sends `clear`).
    let mut call = FakeCall::default();
    let mut s = Session::new(&mut call, SynthOptions::default(), Defaults::default());
    s.request(t0, turn(None));
    assert!(matches!(&events(s.media(digit('1')))[..], [CallEvent::Dtmf { .. }]));
    assert_eq!(s.port.cleared, 0);
}
