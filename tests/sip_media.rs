//! A live call's media beyond the greeting: what the caller sends (audio, DTMF,
//! strays), re-INVITEs (hold, unhold, a new address), RTP inactivity and
//! capacity. The peer is hand-written SIP over a UDP socket plus a UDP socket
//! for media that both sends and receives, so the tests control every packet.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::calls::*;
use common::sip::*;

fn with_direction(offer: String, direction: &str) -> String {
    offer.replace("a=sendrecv", direction)
}

#[test]
fn caller_audio_and_dtmf_are_taken_only_from_the_negotiated_source() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);
    let id = dialog.id.clone();

    // One second of a loud 500 Hz tone, then DTMF '7' and '#', each with three end packets.
    let tone: Vec<u8> = (0..8000)
        .map(|i| {
            let x = (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 8000.0).sin() * 0.5;
            voxline::audio::mulaw::encode_mulaw_sample(x)
        })
        .collect();
    let ssrc = 0x1234_5678;
    let mut seq = 100u16;
    for (i, frame) in tone.chunks(160).enumerate() {
        media.sock.send_to(&rtp(0, seq, i as u32 * 160, ssrc, i == 0, frame), dialog.server_media).unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    for (digit, ts) in [(7u8, 8000u32), (11, 16000)] {
        for (flags, dur) in [(0x0a, 160u16), (0x0a, 320), (0x8a, 480), (0x8a, 480), (0x8a, 480)] {
            let [d0, d1] = dur.to_be_bytes();
            media.sock.send_to(&rtp(101, seq, ts, ssrc, false, &[digit, flags, d0, d1]), dialog.server_media).unwrap();
            seq += 1;
        }
    }
    // A stranger on another port, sending audio and digits: none of it is taken.
    // (A new SSRC from the caller's own address is the caller's stream restarting:
    // accepted, see rtp_in's unit tests.)
    let stranger = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    for i in 0..10u16 {
        stranger.send_to(&rtp(0, i, i as u32 * 160, 0xdead, false, &[0u8; 160]), dialog.server_media).unwrap();
        stranger.send_to(&rtp(101, 100 + i, 0, 0xdead, false, &[1, 0x8a, 0, 160]), dialog.server_media).unwrap();
    }

    // The RTP socket is connected to the caller's address: the kernel drops
    // the stranger's packets before voxline sees them (not counted in
    // packets_rejected; with VOXLINE_RTP_CONNECT=0 they are, and dropped by voxline).
    server.wait_for_call(&dialog.invite.call_id, WAIT, |c| c.stat("dtmf_received") == Some(2) && c.stat("packets_received") >= Some(60));
    std::thread::sleep(Duration::from_millis(200));
    let info = server.wait_for_call(&dialog.invite.call_id, WAIT, |_| true);
    assert_eq!(info.stat("packets_received"), Some(60), "the tone's 50 packets and 10 DTMF packets, none of the stranger's: {:?}", info.stats);
    assert_eq!(info.stat("dtmf_received"), Some(2), "each digit once, none from the stranger: {:?}", info.stats);

    let wav = get_bytes(server.http, &format!("/calls/{id}/caller-audio"));
    let (samples, rate) = voxline::audio::read_wav_from(std::io::Cursor::new(wav)).expect("a WAV");
    assert_eq!(rate, 8000);
    assert!(samples.len() >= 7900, "about one second kept, got {} samples", samples.len());
    let rms = (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt();
    assert!((0.3..0.4).contains(&rms), "the tone comes back at its level (rms {rms}), not the stranger's silence");
    dialog.bye(&sip);
}

#[test]
fn hold_stops_our_rtp_and_unhold_resumes_it_on_the_same_clock() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);
    let before = media.collect(Duration::from_millis(300));
    assert!(before.len() >= 10, "silence packets flow before hold: {}", before.len());

    let answer = dialog.reinvite(&sip, with_direction(pcmu_offer(media.addr), "a=sendonly"));
    assert!(answer.audio().unwrap().has_attribute("recvonly"), "hold is answered recvonly: {answer:?}");
    std::thread::sleep(Duration::from_millis(100));
    media.drain();
    let held = media.collect(Duration::from_millis(500));
    assert!(held.is_empty(), "{} packets sent while on hold", held.len());

    let answer = dialog.reinvite(&sip, pcmu_offer(media.addr));
    assert!(answer.audio().unwrap().has_attribute("sendrecv"));
    let after = media.collect(Duration::from_millis(300));
    assert!(after.len() >= 10, "unhold resumes: {}", after.len());
    let (last, first) = (before.last().unwrap(), &after[0]);
    assert_eq!(first.1, last.1.wrapping_add(1), "sequence numbers stay contiguous across the hold");
    let elapsed_ms = (first.0 - last.0).as_secs_f64() * 1000.0;
    let ts_ms = first.2.wrapping_sub(last.2) as f64 / 8.0;
    assert!((ts_ms - elapsed_ms).abs() < 60.0, "the timestamp advanced with the clock during hold: {ts_ms} ms of timestamps over {elapsed_ms} ms");
    dialog.bye(&sip);
}

#[test]
fn a_reinvite_moves_media_to_the_new_address_both_ways() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let sip = SipSocket::bind(server.sip);
    let (old, new) = (Media::bind(), Media::bind());
    let mut dialog = call(&server, &sip, old.addr);
    let (call_id, server_media) = (dialog.invite.call_id.clone(), dialog.server_media);
    let received = |n: u64| server.wait_for_call(&call_id, WAIT, |c| c.stat("packets_received") == Some(n));
    let send = |from: &Media, seq: u16, count: u16| {
        for s in seq..seq + count {
            from.sock.send_to(&rtp(0, s, s as u32 * 160, 0xCA11, false, &[0x22; 160]), server_media).unwrap();
        }
    };
    // Both ways with the SDP's address (where the RTP socket is connected).
    assert!(!old.collect(Duration::from_millis(200)).is_empty());
    send(&old, 0, 5);
    received(5);
    dialog.reinvite(&sip, pcmu_offer(new.addr));
    std::thread::sleep(Duration::from_millis(60));
    old.drain();
    assert!(new.collect(Duration::from_millis(300)).len() >= 10, "packets go to the new address");
    assert!(old.collect(Duration::from_millis(200)).is_empty(), "and no longer to the old one");
    // The caller's media from the new address is taken; from the old one no longer.
    send(&new, 5, 5);
    received(10);
    send(&old, 10, 5);
    send(&new, 15, 1);
    received(11);
    std::thread::sleep(Duration::from_millis(100));
    let info = received(11);
    assert_eq!(info.stat("packets_received"), Some(11), "the old address's packets are not taken: {:?}", info.stats);
    dialog.bye(&sip);
}

#[test]
fn a_caller_that_sends_no_rtp_is_hung_up_after_the_timeout() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--rtp-timeout", "2"]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let dialog = call(&server, &sip, media.addr);
    let started = Instant::now();
    let bye = sip
        .recv_until(Duration::from_secs(8), |m| m.method() == Some("BYE"))
        .unwrap_or_else(|| panic!("no BYE after the RTP timeout\n{}", sip.transcript()));
    let waited = bye.at - started;
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5), "BYE after {waited:?} for a 2 s timeout");
    assert_eq!(bye.msg.call_id(), Some(dialog.invite.call_id.as_str()));
    sip.send_raw(response_to(&bye.msg, 200, "OK", None).as_bytes());
    server.wait_call_gone(&dialog.invite.call_id, WAIT);
    media.drain();
    std::thread::sleep(Duration::from_millis(100));
    media.drain();
    assert!(media.collect(Duration::from_millis(300)).is_empty(), "RTP stopped with the call");
}

#[test]
fn calls_beyond_capacity_get_503_and_the_first_keeps_running() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--max-calls", "1"]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();
    let mut dialog = call(&server, &sip, media.addr);

    let other = SipSocket::bind(server.sip);
    let invite = other.request("INVITE").sdp(pcmu_offer(Media::bind().addr));
    other.send(&invite);
    let rejected = other.final_response(&invite, WAIT).expect("a final response");
    assert_eq!(rejected.msg.status(), Some(503), "{}", other.transcript());
    other.send(&invite.sibling("ACK"));

    assert_eq!(server.calls().len(), 1);
    assert!(media.collect(Duration::from_millis(200)).len() >= 5, "the first call still gets its packets");
    dialog.bye(&sip);
}

#[test]
fn a_delayed_offer_gets_our_offer_in_the_200_and_media_starts_with_the_answer_in_the_ack() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "Hello, you reached the agent."]);
    let sip = SipSocket::bind(server.sip);
    let (capture, _) = RtpCapture::bind();

    // INVITE without SDP (as CUCM-style trunks send): our offer comes in the 200.
    let invite = sip.request("INVITE");
    sip.send(&invite);
    let ok = sip.final_response(&invite, WAIT).unwrap_or_else(|| panic!("no final response\n{}", sip.transcript()));
    assert_eq!(ok.msg.status(), Some(200), "{}", sip.transcript());
    let offer = ok.msg.sdp().expect("the 200 carries our offer").expect("it parses");
    let audio = offer.audio().expect("an audio line");
    assert!(offer.lines.iter().any(|l| l == "a=rtpmap:0 PCMU/8000"), "{:?}", offer.lines);
    assert!(offer.lines.iter().any(|l| l.starts_with("a=rtpmap:101 telephone-event")), "{:?}", offer.lines);
    assert!(audio.port > 0);
    // Nothing is sent before the answer says where to.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(capture.count(), 0, "no RTP before the answer");

    // The ACK carries the answer: media starts, the greeting plays.
    let to_tag = ok.msg.to_tag().expect("a To tag");
    let contact = ok.msg.contact_uri();
    sip.send(&invite.in_dialog("ACK", 1, &to_tag, contact.as_deref()).sdp(pcmu_offer(capture.addr)));
    let call = server.wait_for_call(&invite.call_id, WAIT, |c| c.state == "active");
    let remote = server.calls().into_iter().find(|c| c.id == call.id).map(|c| c.raw["remote_rtp"].clone());
    assert_eq!(remote, Some(serde_json::Value::String(capture.addr.to_string())), "the answer's address is the call's peer");
    assert!(capture.wait_for(50, Duration::from_secs(5)), "RTP flows once the ACK's answer arrived");
    let heard = capture.wait_until(Duration::from_secs(10), |p| RtpAnalysis::new(p).voiced_ratio(0..p.len()) > 0.2);
    assert!(heard, "the greeting plays: {}", RtpAnalysis::new(&capture.snapshot()).summary());
    let _ = server.hangup(&call.id);
}

#[test]
fn offers_voxline_cannot_serve_as_asked_are_answered_truthfully() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", ""]);
    let sip = SipSocket::bind(server.sip);
    let media = Media::bind();

    // a=ptime:30 is a hint: the answer states the 20 ms voxline sends.
    let invite = sip.request("INVITE").sdp(pcmu_offer(media.addr).replace("a=ptime:20", "a=ptime:30"));
    sip.send(&invite);
    let ok = sip.final_response(&invite, WAIT).expect("an answer");
    assert_eq!(ok.msg.status(), Some(200));
    let answer = ok.msg.sdp().unwrap().unwrap();
    assert!(answer.lines.iter().any(|l| l == "a=ptime:20"), "{:?}", answer.lines);
    let to_tag = ok.msg.to_tag().unwrap();
    sip.send(&invite.in_dialog("ACK", 1, &to_tag, ok.msg.contact_uri().as_deref()));
    let packets = media.collect(Duration::from_millis(500));
    let sizes: Vec<usize> = packets.iter().map(|p| p.4.len()).collect();
    assert!(!sizes.is_empty() && sizes.iter().all(|&n| n == 160), "20 ms packets: {sizes:?}");
    let call = server.wait_for_call(&invite.call_id, WAIT, |c| c.state == "active");
    let _ = server.hangup(&call.id);

    // An IPv6 media address, with RTP bound to IPv4: 488, not a 200 with media that cannot flow.
    let v6 = sip.request("INVITE").sdp(pcmu_offer("[::1]:40000".parse().unwrap()));
    sip.send(&v6);
    let refused = sip.final_response(&v6, WAIT).expect("a final response");
    assert_eq!(refused.msg.status(), Some(488), "{}", sip.transcript());
    assert!(server.calls().iter().all(|c| c.sip_call_id != v6.call_id), "no call is left behind");
}

#[test]
fn with_nat_a_caller_behind_nat_hears_audio_and_an_off_path_sender_cannot_take_the_stream() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--nat"]);
    let sip = SipSocket::bind(server.sip);
    // The SDP names one port; the caller's NAT sends (and must receive) from another.
    let sdp_port = Media::bind();
    let nat = Media::bind();
    let mut dialog = call(&server, &sip, sdp_port.addr);
    let id = dialog.id.clone();

    // An off-path sender that guessed the RTP port, first and repeatedly.
    let attacker = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    for seq in 0..25u16 {
        attacker.send_to(&rtp(0, seq, seq as u32 * 160, 0xBAD, seq == 0, &[0x11; 160]), dialog.server_media).unwrap();
    }
    // The caller, 0.5 s of a loud constant from its NAT port.
    for seq in 0..25u16 {
        nat.sock.send_to(&rtp(0, seq, seq as u32 * 160, 0xCA11, seq == 0, &[0x22; 160]), dialog.server_media).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Our RTP now goes where the caller's comes from.
    nat.drain();
    let packets = nat.collect(Duration::from_millis(500));
    assert!(packets.len() >= 20, "the NAT'd caller hears the call: {} packets in 500 ms", packets.len());
    let info = server.wait_for_call(&dialog.invite.call_id, WAIT, |c| c.stat("packets_rejected") >= Some(25));
    assert!(info.stat("packets_received").unwrap() >= 20, "{:?}", info.stats);
    // What the agent would hear is the caller's, never the attacker's.
    let wav = get_bytes(server.http, &format!("/calls/{id}/caller-audio"));
    let (samples, _) = voxline::audio::read_wav_from(std::io::Cursor::new(wav)).expect("a WAV");
    let attacker_level = voxline::audio::decode_mulaw(&[0x11])[0];
    assert!(!samples.is_empty() && samples.iter().all(|&s| (s - attacker_level).abs() > 1e-3), "the attacker's audio was taken");
    dialog.bye(&sip);
}
