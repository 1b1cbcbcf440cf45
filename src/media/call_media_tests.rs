//! The call's media against a real peer socket, ticked by hand or by the pacer.

use super::*;
use crate::media::leg::MediaLeg;
use crate::media::pacer::Pacer;
use crate::media::rtp_out::PACKET_LEN;
use std::net::UdpSocket;
use rtp::packet::Packet;
use webrtc_util::marshal::Unmarshal;

fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn the_pacer_sends_steady_contiguous_packets_and_the_utterance() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (rtp, rtcp) = pair();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let remote = RemoteMedia {
        rtp: peer.local_addr().unwrap(),
        rtcp: peer.local_addr().unwrap(),
        payload_type: 0,
        dtmf_payload_type: Some(101),
        pcma: false,
        send: true,
    };
    let call = CallMedia::new("t".into(), MediaLeg::udp(rtp, rtcp), remote, MediaConfig::default(), events_tx);
    {
        let mut p = call.playout.lock().unwrap();
        p.begin(1, Instant::now());
        p.push(1, &[0x11; 160 * 5], Instant::now());
        p.finish(1);
    }
    let pacer = Pacer::start().unwrap();
    pacer.add(call.clone());
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while got.len() < 25 {
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        if n == PACKET_LEN {
            got.push((Instant::now(), Packet::unmarshal(&mut &buf[..n]).unwrap()));
        }
    }
    call.close();
    for w in got.windows(2) {
        assert_eq!(w[1].1.header.sequence_number, w[0].1.header.sequence_number.wrapping_add(1));
        assert_eq!(w[1].1.header.timestamp, w[0].1.header.timestamp.wrapping_add(160));
    }
    let span = got.last().unwrap().0 - got[0].0;
    assert!(span > Duration::from_millis(400) && span < Duration::from_millis(600), "24 intervals took {span:?}");
    let speech: Vec<_> = got.iter().filter(|(_, p)| p.payload[0] == 0x11).collect();
    assert_eq!(speech.len(), 5);
    assert!(speech[0].1.header.marker);
    assert_eq!(got.iter().filter(|(_, p)| p.header.marker).count(), 1);
    let mut started = false;
    while let Ok(e) = events.try_recv() {
        started |= matches!(&e, MediaEvent::Playout(p) if matches!(**p, PlayoutEvent::Started { utterance: 1, .. }));
    }
    assert!(started);
    assert_eq!(call.stats.speech_frames.load(Ordering::Relaxed), 5);
}

#[test]
fn on_hold_nothing_is_sent() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (rtp, rtcp) = pair();
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let addr = peer.local_addr().unwrap();
    let remote = RemoteMedia { rtp: addr, rtcp: addr, payload_type: 0, dtmf_payload_type: None, pcma: false, send: false };
    let call = CallMedia::new("h".into(), MediaLeg::udp(rtp, rtcp), remote, MediaConfig::default(), events_tx);
    let pacer = Pacer::start().unwrap();
    pacer.add(call.clone());
    let mut buf = [0u8; 1500];
    assert!(peer.recv_from(&mut buf).is_err(), "a held call sends nothing");
    call.update_remote(RemoteMedia { send: true, ..remote });
    assert!(peer.recv_from(&mut buf).is_ok(), "unhold resumes");
    call.close();
}

#[test]
fn nothing_is_sent_before_the_handshake_completes_and_the_greeting_then_plays_whole() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (rtp, rtcp) = pair();
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let addr = peer.local_addr().unwrap();
    let remote = RemoteMedia { rtp: addr, rtcp: addr, payload_type: 0, dtmf_payload_type: None, pcma: false, send: true };
    let call = CallMedia::new("a".into(), MediaLeg::udp(rtp, rtcp), remote, MediaConfig::default(), events_tx);
    call.await_confirmation();
    {
        let mut p = call.playout.lock().unwrap();
        p.begin(1, Instant::now());
        p.push(1, &[0x11; 160 * 3], Instant::now());
        p.finish(1);
    }
    let pacer = Pacer::start().unwrap();
    pacer.add(call.clone());
    let mut buf = [0u8; 1500];
    assert!(peer.recv_from(&mut buf).is_err(), "no RTP (nor RTCP) before the ACK");
    call.confirm();
    let mut speech = 0;
    while speech < 3 {
        let (n, _) = peer.recv_from(&mut buf).expect("media after the ACK");
        if n == PACKET_LEN && Packet::unmarshal(&mut &buf[..n]).unwrap().payload[0] == 0x11 {
            speech += 1;
        }
    }
    call.close();
}

/// A call ticked by hand (no pacer thread), its packets read back from a
/// local socket: one packet per tick while the call sends silence.
struct Rig {
    call: Arc<CallMedia>,
    peer: UdpSocket,
    _rtcp_sink: UdpSocket,
    k: u64,
    out: crate::media::shard::TickOut,
    got: Vec<Packet>,
}

const DTMF_PT: u8 = 101;

impl Rig {
    fn new(dtmf_payload_type: Option<u8>, config: MediaConfig) -> Self {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_nonblocking(true).unwrap();
        let rtcp_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (rtp, rtcp) = pair();
        let (events_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let remote = RemoteMedia {
            rtp: peer.local_addr().unwrap(),
            rtcp: rtcp_sink.local_addr().unwrap(),
            payload_type: 0,
            dtmf_payload_type,
            pcma: false,
            send: true,
        };
        let call = CallMedia::new("d".into(), MediaLeg::udp(rtp, rtcp), remote, config, events_tx);
        Self { call, peer, _rtcp_sink: rtcp_sink, k: 0, out: Default::default(), got: Vec::new() }
    }

    fn speak(&self, frames: usize) {
        let mut p = self.call.playout.lock().unwrap();
        p.begin(1, Instant::now());
        p.push(1, &vec![0x11; 160 * frames], Instant::now());
        p.finish(1);
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            self.k += 1;
            self.call.tick(self.k, Instant::now(), &mut self.out);
            self.drain(false);
        }
    }

    /// Ticks until the DTMF queue and the playout are both done.
    fn tick_until_quiet(&mut self) {
        for _ in 0..1000 {
            self.tick(1);
            if lock(&self.call.tx).dtmf.is_idle() && self.call.playout.lock().unwrap().is_idle() {
                return;
            }
        }
        panic!("DTMF never finished");
    }

    fn drain(&mut self, wait: bool) {
        let mut buf = [0u8; 1500];
        if wait {
            self.peer.set_nonblocking(false).unwrap();
            self.peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        while let Ok((n, _)) = self.peer.recv_from(&mut buf) {
            self.got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
        }
        if wait {
            self.peer.set_nonblocking(true).unwrap();
        }
    }

    fn packets(&mut self) -> Vec<Packet> {
        self.drain(true);
        std::mem::take(&mut self.got)
    }
}

/// (event code, end bit, volume, duration) of a telephone-event payload.
fn event(p: &Packet) -> (u8, bool, u8, u16) {
    assert_eq!(p.header.payload_type, DTMF_PT);
    assert_eq!(p.payload.len(), 4);
    (p.payload[0], p.payload[1] & 0x80 != 0, p.payload[1] & 0x3f, u16::from_be_bytes([p.payload[2], p.payload[3]]))
}

/// The events in `packets`, each as (timestamp, its packets), in order.
fn events(packets: &[Packet]) -> Vec<(u32, Vec<&Packet>)> {
    let mut out: Vec<(u32, Vec<&Packet>)> = Vec::new();
    for p in packets.iter().filter(|p| p.header.payload_type == DTMF_PT) {
        match out.last_mut() {
            Some((ts, ps)) if *ts == p.header.timestamp => ps.push(p),
            _ => out.push((p.header.timestamp, vec![p])),
        }
    }
    out
}

/// One packet per tick, contiguous sequence numbers, one SSRC; returns
/// the timestamp of tick 0.
fn assert_one_stream(packets: &[Packet]) -> u32 {
    let ts0 = packets[0].header.timestamp;
    for (i, w) in packets.windows(2).enumerate() {
        assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1), "packet {i}");
        assert_eq!(w[1].header.ssrc, w[0].header.ssrc);
    }
    for (i, p) in packets.iter().enumerate().filter(|(_, p)| p.header.payload_type == 0) {
        assert_eq!(p.header.timestamp, ts0.wrapping_add(160 * i as u32), "audio packet {i} is on the clock");
    }
    ts0
}

#[test]
fn dtmf_interrupts_the_audio_as_telephone_events_and_the_audio_resumes() {
    let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    rig.speak(10);
    rig.tick(3);
    rig.call.send_dtmf("1#", Duration::from_millis(100)).unwrap();
    assert_eq!(rig.call.dtmf_pending(), 2);
    rig.tick_until_quiet();
    let packets = rig.packets();
    assert_eq!(packets.len() as u64, rig.k, "one packet per tick");
    let ts0 = assert_one_stream(&packets);

    // audio 3 | '1' 5 + 2 repeats | gap silence 1 | '#' 5 + 2 repeats | audio 7
    let kinds: String = packets
        .iter()
        .map(|p| match (p.header.payload_type, p.payload.first()) {
            (DTMF_PT, _) => 'e',
            (0, Some(0x11)) => 's',
            (0, Some(0xFF)) => '_',
            _ => '?',
        })
        .collect();
    assert_eq!(kinds, "sss".to_owned() + "eeeeeee" + "_" + "eeeeeee" + "sssssss");
    assert_eq!(kinds.matches('s').count(), 10, "the utterance is played whole, around the digits");

    let events = events(&packets);
    assert_eq!(events.len(), 2);
    for ((ts, ps), (code, start_tick)) in events.iter().zip([(1u8, 3u32), (11, 11)]) {
        assert_eq!(*ts, ts0.wrapping_add(160 * start_tick), "an event carries the timestamp of its first tick");
        let fields: Vec<_> = ps.iter().map(|p| event(p)).collect();
        assert_eq!(
            fields,
            [
                (code, false, 10, 160),
                (code, false, 10, 320),
                (code, false, 10, 480),
                (code, false, 10, 640),
                (code, true, 10, 800),
                (code, true, 10, 800),
                (code, true, 10, 800),
            ]
        );
        let markers: Vec<_> = ps.iter().map(|p| p.header.marker).collect();
        assert_eq!(markers, [true, false, false, false, false, false, false]);
    }
    // 60 ms from the end of '1' to the start of '#'.
    assert_eq!(events[1].0.wrapping_sub(events[0].0.wrapping_add(800)), 480);
    // After each digit the first audio-PT packet starts a talkspurt.
    let markers: Vec<usize> = packets.iter().enumerate().filter(|(_, p)| p.header.marker).map(|(i, _)| i).collect();
    assert_eq!(markers, [0, 3, 10, 11, 18]);
    assert_eq!(packets[18].payload[0], 0x11);
    assert_eq!(rig.call.stats.dtmf_sent.load(Ordering::Relaxed), 2);
    assert_eq!(rig.call.stats.speech_frames.load(Ordering::Relaxed), 10);
    assert_eq!(rig.call.stats.underruns.load(Ordering::Relaxed), 0, "held audio is not an underrun");
}

#[test]
fn every_key_has_its_event_code() {
    let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    rig.call.send_dtmf("0123456789*#ABCDabcd", Duration::from_millis(40)).unwrap();
    rig.tick_until_quiet();
    let packets = rig.packets();
    assert_one_stream(&packets);
    let events = events(&packets);
    let codes: Vec<u8> = events.iter().map(|(_, ps)| event(ps[0]).0).collect();
    assert_eq!(codes, (0..16).chain(12..16).collect::<Vec<u8>>());
    for (_, ps) in &events {
        let durations: Vec<_> = ps.iter().map(|p| event(p).3).collect();
        assert_eq!(durations, [160, 320, 320, 320]);
        assert_eq!(ps.iter().filter(|p| event(p).1).count(), 3);
    }
    // Each digit: 40 ms tone, 60 ms gap; the stream clock advances 160 per tick.
    for w in events.windows(2) {
        assert_eq!(w[1].0.wrapping_sub(w[0].0), 800);
    }
}

#[test]
fn pauses_put_time_without_events_between_digits() {
    for (digits, pause) in [("1w2", 4000u32), ("1W2", 8000), ("1,2", 8000), ("12", 480)] {
        let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
        rig.call.send_dtmf(digits, Duration::from_millis(100)).unwrap();
        rig.tick_until_quiet();
        let packets = rig.packets();
        let ts0 = assert_one_stream(&packets);
        let events = events(&packets);
        assert_eq!(events.len(), 2, "{digits}");
        assert_eq!(events[0].0, ts0);
        assert_eq!(events[1].0.wrapping_sub(events[0].0.wrapping_add(800)), pause, "{digits}");
        // Only silence (and the end repeats) between the tones.
        let first_of_second = packets.iter().position(|p| p.header.payload_type == DTMF_PT && p.header.timestamp == events[1].0).unwrap();
        let between = packets[..first_of_second].iter().filter(|p| p.header.payload_type == 0).count();
        assert_eq!(between as u32, pause / 160 - 2, "{digits}");
        assert!(packets.iter().filter(|p| p.header.payload_type == 0).all(|p| p.payload.iter().all(|&b| b == SILENCE_PCMU)));
    }
    // A leading pause delays the first digit.
    let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    rig.call.send_dtmf("w5", Duration::from_millis(100)).unwrap();
    rig.tick_until_quiet();
    let packets = rig.packets();
    let ts0 = assert_one_stream(&packets);
    assert_eq!(events(&packets)[0].0, ts0.wrapping_add(4000));
}

#[test]
fn digits_queued_while_sending_follow_after_the_gap() {
    let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    rig.call.send_dtmf("1", Duration::from_millis(100)).unwrap();
    rig.tick(2);
    rig.call.send_dtmf("2", Duration::from_millis(100)).unwrap();
    rig.tick_until_quiet();
    let packets = rig.packets();
    assert_one_stream(&packets);
    let events = events(&packets);
    assert_eq!(events.iter().map(|(_, ps)| event(ps[0]).0).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[1].0.wrapping_sub(events[0].0), 1280);
}

#[test]
fn bad_digits_and_peers_without_telephone_event_are_refused() {
    let rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    assert_eq!(rig.call.send_dtmf("12x4", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit('x')));
    assert_eq!(rig.call.send_dtmf("E", Duration::from_millis(100)), Err(DtmfSendError::InvalidDigit('E')));
    assert_eq!(rig.call.dtmf_pending(), 0, "nothing of a refused string is queued");
    assert_eq!(rig.call.send_dtmf(&"9".repeat(65), Duration::from_millis(100)), Err(DtmfSendError::TooLong));
    rig.call.send_dtmf(&"9".repeat(64), Duration::from_millis(100)).unwrap();
    assert_eq!(rig.call.send_dtmf("1", Duration::from_millis(100)), Err(DtmfSendError::TooLong));

    let mut rig = Rig::new(None, MediaConfig::default());
    assert_eq!(rig.call.send_dtmf("1", Duration::from_millis(100)), Err(DtmfSendError::NotNegotiated));
    rig.tick(5);
    assert!(rig.packets().iter().all(|p| p.header.payload_type == 0));
    assert!(DtmfSendError::NotNegotiated.to_string().contains("telephone-event"));
}

#[test]
fn digits_wait_while_the_call_is_on_hold() {
    let mut rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    let remote = rig.call.remote();
    rig.call.update_remote(RemoteMedia { send: false, ..remote });
    rig.call.send_dtmf("4", Duration::from_millis(60)).unwrap();
    rig.tick(10);
    assert!(rig.packets().is_empty());
    assert_eq!(rig.call.dtmf_pending(), 1);
    rig.call.update_remote(remote);
    rig.tick_until_quiet();
    let packets = rig.packets();
    let events = events(&packets);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.iter().map(|p| event(p).3).collect::<Vec<_>>(), [160, 320, 480, 480, 480]);
    assert!(events[0].1[0].header.marker);
}

#[test]
fn without_silence_packets_the_gaps_are_skipped_on_the_clock() {
    let config = MediaConfig { send_silence: false, ..MediaConfig::default() };
    let mut rig = Rig::new(Some(DTMF_PT), config);
    rig.call.send_dtmf("1w2", Duration::from_millis(100)).unwrap();
    rig.tick_until_quiet();
    rig.speak(2);
    rig.tick(3);
    let packets = rig.packets();
    assert!(packets.iter().all(|p| p.payload.first() != Some(&SILENCE_PCMU)), "no silence packets");
    let events = events(&packets);
    assert_eq!(events[1].0.wrapping_sub(events[0].0), 800 + 4000);
    let speech: Vec<_> = packets.iter().filter(|p| p.header.payload_type == 0).collect();
    assert_eq!(speech.len(), 2);
    assert!(speech[0].header.marker && !speech[1].header.marker);
    // Ticks: 5 + 25 for '1' and the pause, 7 for '2', the idle tick, then the speech.
    assert_eq!(speech[0].header.timestamp.wrapping_sub(events[0].0), 160 * 38);
    for w in packets.windows(2) {
        assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1));
    }
}

#[test]
fn the_pacer_thread_sends_dtmf() {
    let rig = Rig::new(Some(DTMF_PT), MediaConfig::default());
    rig.peer.set_nonblocking(false).unwrap();
    rig.peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    rig.call.send_dtmf("*", Duration::from_millis(40)).unwrap();
    let pacer = Pacer::start().unwrap();
    pacer.add(rig.call.clone());
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    while got.iter().filter(|p: &&Packet| p.header.payload_type == DTMF_PT && event(p).1).count() < 3 {
        let (n, _) = rig.peer.recv_from(&mut buf).unwrap();
        got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
    }
    let (n, _) = rig.peer.recv_from(&mut buf).unwrap();
    got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
    rig.call.close();
    let events = events(&got);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.iter().map(|p| event(p)).collect::<Vec<_>>(), [(10, false, 10, 160), (10, true, 10, 320), (10, true, 10, 320), (10, true, 10, 320)]);
    let last = got.last().unwrap();
    assert_eq!((last.header.payload_type, last.header.marker), (0, true), "audio resumes with a marker");
    for w in got.windows(2) {
        assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1));
    }
}

#[test]
fn the_prebuilt_silence_is_each_codecs_zero() {
    assert_eq!(audio_codec_algorithms::convert_ulaw_to_alaw(SILENCE_PCMU), SILENCE_PCMA);
    // A-law has no zero code: 0xD5 is the quietest, +8 of 32768.
    assert_eq!(audio_codec_algorithms::decode_alaw(SILENCE_PCMA), 8);
    assert!(SILENCE_FRAME_PCMA.iter().chain(&SILENCE_FRAME_PCMU).all(|&b| b == SILENCE_PCMA || b == SILENCE_PCMU));
}
