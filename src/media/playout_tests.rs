use super::*;

const TICK: Duration = FRAME;

fn speech(n_frames: usize, value: u8) -> Vec<u8> {
    vec![value; n_frames * FRAME_BYTES]
}

#[test]
fn idle_playout_sends_silence_without_marker() {
    let mut p = Playout::new();
    let f = p.tick(Instant::now());
    assert_eq!(f.kind, FrameKind::Silence);
    assert!(!f.marker);
    assert!(f.payload.iter().all(|&b| b == SILENCE_PCMU));
}

#[test]
fn an_utterance_plays_in_order_with_one_marker_and_padding() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    let mut audio = speech(2, 0x10);
    audio.extend([0x20; 40]);
    p.push(1, &audio, t0);
    p.finish(1);
    let f1 = p.tick(t0);
    let f2 = p.tick(t0 + TICK);
    let f3 = p.tick(t0 + 2 * TICK);
    let f4 = p.tick(t0 + 3 * TICK);
    assert!(f1.marker && !f2.marker && !f3.marker);
    assert_eq!([f1.kind, f2.kind, f3.kind, f4.kind], [FrameKind::Speech, FrameKind::Speech, FrameKind::Speech, FrameKind::Silence]);
    assert_eq!(&f3.payload[..40], &[0x20; 40]);
    assert!(f3.payload[40..].iter().all(|&b| b == SILENCE_PCMU));
    let events = p.take_events();
    assert!(matches!(events[0], PlayoutEvent::Started { utterance: 1, .. }));
    assert_eq!(events[1], PlayoutEvent::Finished { utterance: 1, played: 3 * FRAME, underruns: 0 });
}

#[test]
fn an_utterance_waits_for_its_prefill() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(10, 0x10), t0);
    p.hold(1, Duration::from_millis(50));
    assert_eq!(p.tick(t0).kind, FrameKind::Silence);
    assert_eq!(p.tick(t0 + 2 * TICK).kind, FrameKind::Silence);
    let f = p.tick(t0 + 3 * TICK);
    assert_eq!(f.kind, FrameKind::Speech);
    assert!(f.marker);
    match &p.take_events()[0] {
        PlayoutEvent::Started { waited, .. } => assert_eq!(*waited, 3 * TICK),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_complete_utterance_starts_at_once_whatever_the_wait() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.hold(1, Duration::from_secs(1));
    p.push(1, &speech(1, 0x10), t0);
    p.finish(1);
    assert_eq!(p.tick(t0).kind, FrameKind::Speech);
}

#[test]
fn starvation_inside_an_utterance_is_an_underrun_then_resumes() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(7, Instant::now());
    p.push(7, &speech(2, 0x10), t0);
    assert_eq!(p.tick(t0).kind, FrameKind::Speech);
    assert_eq!(p.tick(t0 + TICK).kind, FrameKind::Speech);
    let starved = p.tick(t0 + 2 * TICK);
    assert_eq!(starved.kind, FrameKind::Underrun);
    assert!(starved.payload.iter().all(|&b| b == SILENCE_PCMU));
    p.push(7, &speech(1, 0x30), t0 + 2 * TICK);
    p.finish(7);
    let resumed = p.tick(t0 + 3 * TICK);
    assert_eq!(resumed.kind, FrameKind::Speech);
    assert!(resumed.marker, "speech after a gap is a new talkspurt");
    assert_eq!(p.underruns(), 1);
    let events = p.take_events();
    assert_eq!(events.last(), Some(&PlayoutEvent::Finished { utterance: 7, played: 3 * FRAME, underruns: 1 }));
}

#[test]
fn back_to_back_utterances_form_one_talkspurt() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    for id in [1, 2] {
        p.begin(id, Instant::now());
        p.push(id, &speech(1, id as u8), t0);
        p.finish(id);
    }
    let a = p.tick(t0);
    let b = p.tick(t0 + TICK);
    assert_eq!((a.payload[0], a.marker), (1, true));
    assert_eq!((b.payload[0], b.marker), (2, false));
}

#[test]
fn marks_fire_after_the_audio_before_them() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.mark("m0".into());
    p.begin(1, Instant::now());
    p.push(1, &speech(2, 0x10), t0);
    p.finish(1);
    p.mark("m1".into());
    p.mark("m2".into());
    p.tick(t0);
    let first = p.take_events();
    assert_eq!(first[0], PlayoutEvent::Mark { name: "m0".into() });
    assert!(!first.iter().any(|e| matches!(e, PlayoutEvent::Mark { name } if name == "m1")));
    p.tick(t0 + TICK);
    let names: Vec<_> = p
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            PlayoutEvent::Mark { name } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["m1", "m2"]);
}

#[test]
fn clear_reports_what_was_played_and_silences_the_next_tick() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(5, 0x10), t0);
    p.words(1, [(0, "one".to_string()), (320, "two".to_string())]);
    p.begin(2, Instant::now());
    p.tick(t0);
    p.tick(t0 + TICK);
    let cleared = p.clear();
    assert_eq!(
        cleared,
        vec![
            ClearedUtterance { utterance: 1, played: 2 * FRAME, started: true, heard: vec!["one".into()] },
            ClearedUtterance { utterance: 2, played: Duration::ZERO, started: false, heard: vec![] },
        ]
    );
    assert_eq!(p.tick(t0 + 2 * TICK).kind, FrameKind::Silence);
    assert!(!p.push(1, &speech(1, 0), t0), "a cleared utterance takes no more audio");
}

#[test]
fn the_tally_counts_utterances_heard_and_only_clears_that_cut_speech() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, t0);
    p.push(1, &speech(3, 0x10), t0 + 3 * TICK);
    p.finish(1);
    p.tick(t0 + 3 * TICK);
    p.begin(2, t0 + 10 * TICK);
    p.clear();
    assert_eq!(p.tally().barge_ins, 1, "utterance 1 was playing");
    p.begin(3, t0 + 20 * TICK);
    p.clear();
    assert_eq!(p.tally().barge_ins, 1, "nothing was playing");
    assert_eq!(p.tally().utterances, 1);
    assert_eq!(p.tally().first_audio_max(), Some(3 * TICK), "from the text to its first frame");
}

#[test]
fn words_are_reported_with_the_frame_that_carries_their_start() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(4, 0x10), t0);
    p.words(1, [(0, "hello".to_string()), (200, "there".to_string()), (480, "friend".to_string())]);
    p.finish(1);
    let mut per_tick = Vec::new();
    for i in 0..4 {
        p.tick(t0 + i * TICK);
        let words: Vec<String> = p
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                PlayoutEvent::Word { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        per_tick.push(words);
    }
    assert_eq!(per_tick, vec![vec!["hello"], vec!["there"], vec![], vec!["friend"]]);
}

#[test]
fn an_empty_utterance_is_skipped() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.finish(1);
    p.begin(2, Instant::now());
    p.push(2, &speech(1, 0x22), t0);
    p.finish(2);
    assert_eq!(p.tick(t0).payload[0], 0x22);
}

fn silence(n_bytes: usize) -> Vec<u8> {
    vec![SILENCE_PCMU; n_bytes]
}

#[test]
fn a_talkspurt_starts_with_at_most_20_ms_of_silence_and_the_marker_carries_sound() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    let mut audio = silence(2400); // 300 ms of leading silence
    audio.extend(speech(3, 0x10));
    p.push(1, &audio, t0);
    p.finish(1);
    let f = p.tick(t0);
    assert!(f.marker);
    assert_eq!(f.kind, FrameKind::Speech);
    let quiet = f.payload.iter().take_while(|&&b| b == SILENCE_PCMU).count();
    assert_eq!(quiet as u64, MAX_LEAD_BYTES, "no lead: sound from the marker packet's first byte");
}

#[test]
fn an_utterance_waits_for_its_first_sound_before_starting_a_talkspurt() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &silence(1600), t0);
    assert_eq!(p.tick(t0).kind, FrameKind::Silence, "200 ms of silence so far: nothing to start on");
    p.push(1, &speech(2, 0x10), t0 + TICK);
    let f = p.tick(t0 + TICK);
    assert_eq!((f.kind, f.marker), (FrameKind::Speech, true));
    assert_eq!(f.payload.iter().filter(|&&b| b == SILENCE_PCMU).count() as u64, MAX_LEAD_BYTES);
}

#[test]
fn trailing_silence_is_cut_to_60_ms_and_the_mark_fires_with_it() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    let mut audio = speech(2, 0x10);
    audio.extend(silence(2000)); // 250 ms of trailing silence
    p.push(1, &audio, t0);
    p.finish(1);
    p.mark("end".into());
    let mut frames = 0;
    let mut mark_at = None;
    for i in 0..30 {
        let f = p.tick(t0 + i * TICK);
        if f.kind == FrameKind::Speech {
            frames += 1;
        }
        if p.take_events().iter().any(|e| matches!(e, PlayoutEvent::Mark { .. })) {
            mark_at = Some(i);
            break;
        }
    }
    // 2 frames of sound + 60 ms (3 frames) of tail.
    assert_eq!(frames, 5);
    assert_eq!(mark_at, Some(4), "the mark fires with the frame that ends the 60 ms tail");
}

#[test]
fn pauses_between_utterances_of_one_talkspurt_are_kept() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    for id in [1, 2] {
        p.begin(id, Instant::now());
        let mut audio = silence(400); // 50 ms lead
        audio.extend(speech(1, 0x10));
        audio.extend(silence(1600)); // 200 ms tail
        p.push(id, &audio, t0);
        p.finish(id);
    }
    let mut kinds = Vec::new();
    for i in 0..40 {
        let f = p.tick(t0 + i * TICK);
        kinds.push(f.payload.iter().any(|&b| b != SILENCE_PCMU));
    }
    let sounding: Vec<usize> = kinds.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect();
    // First: its lead trimmed to MAX_LEAD, then 160 sound bytes from frame 0;
    // the 200 ms tail and the second's 50 ms lead play in full, so the
    // second's sound starts 160 + 1600 + 400 bytes later.
    assert_eq!(sounding.first(), Some(&0));
    let second = sounding.iter().copied().find(|&i| i > 1).unwrap();
    assert_eq!(second as u64, (MAX_LEAD_BYTES + 160 + 1600 + 400) / 160, "the natural pause between the clauses: {kinds:?}");
}

#[test]
fn a_partly_filled_frame_mid_utterance_is_an_underrun() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(2, 0x10), t0);
    p.tick(t0);
    p.push(1, &[0x10; 60], t0);
    assert_eq!(p.tick(t0 + TICK).kind, FrameKind::Speech);
    let f = p.tick(t0 + 2 * TICK);
    assert_eq!(f.kind, FrameKind::Underrun, "60 of 160 bytes is a gap, not a speech frame");
    assert_eq!(p.underruns(), 1);
    p.push(1, &[0x10; 100], t0);
    p.finish(1);
    let f = p.tick(t0 + 3 * TICK);
    assert_eq!(f.kind, FrameKind::Speech);
    assert!(f.payload.iter().all(|&b| b == 0x10), "the held bytes go out whole");
}

#[test]
fn lead_counts_audio_ahead_and_the_hold_still_to_come() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(10, 0x10), t0);
    p.begin(2, Instant::now());
    p.hold(2, Duration::from_millis(30));
    p.push(2, &speech(5, 0x10), t0);
    assert_eq!(p.lead(1, t0), Some(Duration::from_millis(200)));
    assert_eq!(p.lead(2, t0), Some(Duration::from_millis(330)));
    assert_eq!(p.lead(9, t0), None);
}

#[test]
fn trim_edges_is_what_a_lone_utterance_plays() {
    let t0 = Instant::now();
    let mut audio = silence(800);
    audio.extend(speech(2, 0x10));
    audio.extend(silence(1200));
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &audio, t0);
    p.finish(1);
    let mut played = Vec::new();
    for i in 0..20 {
        let f = p.tick(t0 + i * TICK);
        if f.kind == FrameKind::Speech {
            played.extend_from_slice(&f.payload);
        }
    }
    let trimmed = trim_edges(&audio);
    assert_eq!(trimmed.len() as u64, MAX_LEAD_BYTES + 320 + MAX_TAIL_BYTES);
    assert_eq!(&played[..trimmed.len()], trimmed);
    assert!(trim_edges(&silence(400)).is_empty());
}

#[test]
fn cover_holds_an_utterance_until_its_next_audio_can_follow() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(5, 0x10), t0); // 100 ms
    p.hold(1, Duration::from_millis(20));
    // The next chunk is only expected 300 ms from now: start 200 ms from now.
    assert_eq!(p.cover(1, t0 + Duration::from_millis(300), t0), Some(t0 + Duration::from_millis(200)));
    assert_eq!(p.tick(t0 + 9 * TICK).kind, FrameKind::Silence);
    assert_eq!(p.tick(t0 + 10 * TICK).kind, FrameKind::Speech);
    // Once started it cannot be held back.
    assert_eq!(p.cover(1, t0 + Duration::from_secs(5), t0), None);
    assert_eq!(p.tick(t0 + 11 * TICK).kind, FrameKind::Speech);
}

#[test]
fn a_gated_utterance_waits_for_word_of_its_next_audio_or_its_end() {
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, Instant::now());
    p.push(1, &speech(5, 0x10), t0);
    p.gate(1);
    assert_eq!(p.tick(t0 + 10 * TICK).kind, FrameKind::Silence, "gated: the next chunk has not been started");
    p.cover(1, t0 + 10 * TICK, t0 + 10 * TICK);
    p.finish(1);
    assert_eq!(p.tick(t0 + 11 * TICK).kind, FrameKind::Speech);
    p.begin(2, Instant::now());
    p.push(2, &speech(5, 0x10), t0);
    p.gate(2);
    p.finish(2);
    for i in 12..16 {
        p.tick(t0 + i * TICK);
    }
    assert_eq!(p.tick(t0 + 16 * TICK).kind, FrameKind::Speech, "a complete utterance is never gated");
}

#[test]
fn only_starvation_after_the_start_counts_against_an_utterance() {
    // Held and gated, an utterance waits in silence: the caller hears no gap.
    let t0 = Instant::now();
    let mut p = Playout::new();
    p.begin(1, t0);
    p.push(1, &speech(3, 0x10), t0);
    p.hold(1, Duration::from_millis(40));
    p.gate(1);
    for i in 0..10 {
        p.tick(t0 + i * TICK);
    }
    assert_eq!(p.underruns_of(1), Some(0), "waiting to start is not an underrun");
    p.cover(1, t0 + 10 * TICK, t0 + 10 * TICK);
    for i in 10..13 {
        assert_eq!(p.tick(t0 + i * TICK).kind, FrameKind::Speech);
    }
    // Started, its three frames played, the next chunk late by two ticks.
    assert_eq!(p.tick(t0 + 13 * TICK).kind, FrameKind::Underrun);
    assert_eq!(p.tick(t0 + 14 * TICK).kind, FrameKind::Underrun);
    assert_eq!(p.underruns_of(1), Some(2));
    assert_eq!(p.underruns_of(2), None, "not queued");
}
