//! The SIP test harness checked without a server: every uac scenario in
//! tests/sipp/ runs against a sipp UAS (tests/sipp/selftest_uas_*.xml), so a
//! failure against voxline is about voxline, not the XML; the RTP analysis is
//! fed a synthetic stream; the HTTP client and the parsers a canned response.
//! Needs sipp (apt: sip-tester).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use common::sip::*;


/// Every uac scenario runs to success against a sipp UAS playing the server's
/// part, so a failure against voxline is about voxline, not the XML.
#[test]
fn harness_scenarios_pass_against_sipp_uas() {
    require_sipp();
    let (cap, _) = RtpCapture::bind();
    let rtp = cap.addr;
    // (uac, uas, uac keys?, -d)
    let pairs: &[(&str, &str, bool, Option<u64>)] = &[
        ("uac_greeting.xml", "selftest_uas_answer.xml", true, Some(300)),
        ("uac_retransmit.xml", "selftest_uas_answer.xml", true, Some(300)),
        ("uac_remote_hangup.xml", "selftest_uas_hangup.xml", true, None),
        ("uac_cancel.xml", "selftest_uas_cancel.xml", true, None),
        ("uac_options.xml", "selftest_uas_options.xml", false, None),
        ("uac_g729.xml", "selftest_uas_reject488.xml", false, None),
        ("uac_no_ack.xml", "selftest_uas_no_ack.xml", true, None),
    ];
    let results: Vec<(String, SippResult, SippResult)> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(uac, uas, keys, pause)| {
                s.spawn(move || {
                    let port = free_udp_port();
                    let server = SippCall::uas(uas, port).timeout(Duration::from_secs(20)).spawn();
                    std::thread::sleep(Duration::from_millis(300));
                    let mut call = SippCall::new(uac, SocketAddr::new(LOCALHOST, port)).timeout(Duration::from_secs(20));
                    if keys {
                        call = call.rtp(rtp);
                    }
                    if let Some(ms) = pause {
                        call = call.pause_ms(ms);
                    }
                    let client = call.run();
                    (format!("{uac} vs {uas}"), client, server.wait())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (what, client, server) in &results {
        eprintln!("{what}: uac exit {:?} in {:.2}s, uas exit {:?}", client.code(), client.elapsed.as_secs_f64(), server.code());
        client.assert_success(what);
        server.assert_success(&format!("{what} (the sipp UAS)"));
    }
    let by = |name: &str| &results.iter().find(|(w, _, _)| w.starts_with(name)).unwrap().1;

    // The message log parses, and the Call-ID is the one the harness predicts.
    let greeting = by("uac_greeting");
    let ok = greeting.invite_ok();
    let sdp = ok.sdp().expect("SDP in the 200").expect("a valid SDP");
    assert!(sdp.audio().unwrap().formats.contains(&0));
    assert_eq!(ok.call_id(), Some(greeting.call_id.as_str()), "the predicted sipp Call-ID");
    let invite = &greeting.sent_requests("INVITE")[0].msg;
    let offer = invite.sdp().unwrap().unwrap();
    assert_eq!(offer.audio_addr(), Some(rtp), "the offer points at the capture socket");
    assert!(greeting.messages().iter().all(|m| m.wall.is_some()));

    // Retransmit: the INVITE went out twice, byte for byte.
    let invites = by("uac_retransmit").sent_requests("INVITE");
    assert_eq!(invites.len(), 2, "uac_retransmit sends the INVITE twice");
    assert_eq!(invites[0].msg.raw, invites[1].msg.raw, "the two INVITEs are identical");

    // Cancel: same branch as the INVITE, CSeq number too; one 487, ACKed on that branch.
    let cancel = by("uac_cancel");
    let inv = &cancel.sent_requests("INVITE")[0].msg;
    let can = &cancel.sent_requests("CANCEL")[0].msg;
    let ack = &cancel.sent_requests("ACK")[0].msg;
    assert_eq!(inv.via_branch(), can.via_branch());
    assert_eq!(inv.via_branch(), ack.via_branch());
    assert_eq!(can.cseq(), Some((1, "CANCEL".into())));
    assert_eq!(cancel.responses(487).len(), 1);

    // No ACK: the sipp UAS's 200 copies all show up in the log, time-stamped.
    let no_ack = by("uac_no_ack");
    assert!(no_ack.responses(200).len() >= 4, "the retransmitted 200s are in the message log");
    assert!(no_ack.sent_requests("ACK").is_empty(), "uac_no_ack never ACKs");
    assert_eq!(no_ack.requests("BYE").len(), 1);
    drop(cap);
}

/// RtpAnalysis on a stream the test sends itself: pacing, a lost packet, a
/// duplicate, a marker, a voiced stretch, a timestamp jump.
#[test]
fn harness_rtp_analysis_on_a_synthetic_stream() {
    let (cap, port) = RtpCapture::bind();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tone: Vec<f32> = (0..160).map(|n| 0.3 * (n as f32 * 0.2).sin()).collect();
    let voiced = voxline::audio::encode_mulaw(&tone);
    let start = Instant::now();
    let mut sent = 0;
    for i in 0u16..60 {
        let seq = 1000 + i;
        let mut ts = 5000 + 160 * i as u32;
        if i >= 50 {
            ts += 80; // one odd step at 50
        }
        let marker = i == 0 || i == 20;
        let payload: &[u8] = if (20..40).contains(&i) { &voiced } else { &[0xFF; 160] };
        let mut pkt = vec![0x80, if marker { 0x80 } else { 0 }];
        pkt.extend(seq.to_be_bytes());
        pkt.extend(ts.to_be_bytes());
        pkt.extend(0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(payload);
        std::thread::sleep((start + Duration::from_millis(20 * i as u64)).saturating_duration_since(Instant::now()));
        if i == 10 {
            continue; // lost
        }
        tx.send_to(&pkt, ("127.0.0.1", port)).unwrap();
        sent += 1;
        if i == 30 {
            tx.send_to(&pkt, ("127.0.0.1", port)).unwrap(); // duplicate
            sent += 1;
        }
    }
    assert!(cap.wait_for(sent, Duration::from_secs(2)));
    let a = RtpAnalysis::new(&cap.stop());
    eprintln!("{}", a.summary());
    assert_eq!(a.len(), 60);
    #[cfg(target_os = "linux")]
    assert!(a.kernel_clock, "kernel receive time stamps (SIOCGSTAMP)");
    for p in &a.packets {
        if let Some(k) = p.kernel {
            let d = secs(k, p.wall);
            assert!((-0.001..0.5).contains(&d), "kernel stamp {d:.4} s before the capture thread's");
        }
    }
    assert_eq!(a.ssrcs.len(), 1);
    assert_eq!(a.seq_lost, 1);
    assert_eq!(a.seq_duplicates, 1);
    assert_eq!(a.seq_reordered, 0);
    assert_eq!(a.payload_types.keys().copied().collect::<Vec<_>>(), vec![0]);
    assert_eq!(a.markers, vec![0, 19]); // index 19: seq 1020 (1010 is missing)
    // 9 frames before the loss -> 2 steps of 320... steps: one 320 (lost), one 0 (dup), one 240 (jump).
    assert_eq!(a.ts_steps.get(&320), Some(&1));
    assert_eq!(a.ts_steps.get(&0), Some(&1));
    assert_eq!(a.ts_steps.get(&240), Some(&1));
    assert_eq!(a.bad_ts_steps(), 3);
    let u = a.utterances();
    assert_eq!(u.len(), 1, "one voiced stretch: {u:?}");
    assert_eq!(u[0].len(), 21, "20 voiced frames + the duplicate");
    assert!(a.interarrival_percentile(50.0) > 10.0 && a.interarrival_percentile(50.0) < 30.0);
    assert_eq!(a.pcm(u[0].clone()).len(), 20 * 160, "pcm() drops the duplicate");
    assert!((a.voiced_rms(u[0].clone()) - rms(&voxline::audio::decode_mulaw_i16(&voiced))).abs() < 1.0);
}

/// The HTTP client (chunked and sized bodies), the SIP parser, the log parser.
#[test]
fn harness_http_client_and_parsers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for (i, conn) in listener.incoming().take(2).enumerate() {
            let mut conn = conn.unwrap();
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut conn, &mut buf);
            let reply: &[u8] = if i == 0 {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{\"id\r\nf\r\n\":\"a\",\"to\":\"b\"}\r\n1\r\n]\r\n0\r\n\r\n"
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
            };
            std::io::Write::write_all(&mut conn, reply).unwrap();
        }
    });
    let r = http_get(addr, "/calls");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["to"], "b");
    let r = http_post(addr, "/x", "{}");
    assert_eq!((r.status, r.body.as_str()), (404, "nope"));
    server.join().unwrap();

    let m = SipMessage::parse(
        "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1;rport=5060\r\nf: <sip:a@b>;tag=x1\r\n\
         t: \"n\" <sip:c@d>;tag=y2\r\ni: abc\r\nCSeq: 7 INVITE\r\nAllow: INVITE, ACK,\r\n BYE\r\nAllow: OPTIONS\r\n\
         m: <sip:srv@127.0.0.1:5070>\r\nc: application/sdp\r\nl: 60\r\n\r\n\
         v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
    )
    .unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.via_branch().as_deref(), Some("z9hG4bK-1"));
    assert_eq!(m.from_tag().as_deref(), Some("x1"));
    assert_eq!(m.to_tag().as_deref(), Some("y2"));
    assert_eq!(m.call_id(), Some("abc"));
    assert_eq!(m.cseq(), Some((7, "INVITE".into())));
    assert_eq!(m.allow().into_iter().collect::<Vec<_>>(), vec!["ACK", "BYE", "INVITE", "OPTIONS"]);
    assert_eq!(m.contact_uri().as_deref(), Some("sip:srv@127.0.0.1:5070"));
    let sdp = m.sdp().unwrap().unwrap();
    assert_eq!(sdp.audio_addr(), Some("127.0.0.1:20000".parse().unwrap()));
    let audio = sdp.audio().unwrap();
    assert_eq!(audio.formats, vec![0, 101]);
    assert_eq!(audio.payload_type_of("telephone-event"), Some(101));
    assert!(audio.has_attribute("sendrecv"));

    let log = "----------------------------------------------- 2026-11-25 09:09:41.520399\n\
               UDP message sent (20 bytes):\n\nOPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n\n\n\
               ----------------------------------------------- 2026-11-25 09:09:42.020399\n\
               UDP message received [20] bytes :\n\nSIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n\n\n";
    let msgs = parse_message_log(log);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].direction, Direction::Sent);
    assert_eq!(msgs[1].msg.status(), Some(200));
    let dt = secs(msgs[0].wall.unwrap(), msgs[1].wall.unwrap());
    assert!((dt - 0.5).abs() < 1e-6, "{dt}");
    assert_eq!(
        parse_utc_stamp("1970-01-02 00:00:01.5").unwrap(),
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(86401.5)
    );
    assert_eq!(words_in_order("Hello and welcome to the voice line", "all and welcome to the boys want"), 4);
}

