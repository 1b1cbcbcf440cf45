//! A pacing shard on fake time: its clock's deadlines, stalls, and calls that
//! join or leave while a tick is under way; then a real call (sockets on
//! loopback) on hold and back, driven by the same code on fake time.

use super::*;
use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rtp::packet::Packet;
use webrtc_util::marshal::Unmarshal;

use crate::media::{CallMedia, MediaConfig, MediaLeg, RemoteMedia};

const MS: Duration = Duration::from_millis(1);

/// A deterministic "random" lateness of a wake-up, 0..max.
fn jitter(i: u64, max: Duration) -> Duration {
    let x = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) >> 33;
    Duration::from_nanos(x % max.as_nanos() as u64)
}

#[test]
fn shards_sharing_an_epoch_tick_on_the_same_grid_without_drift() {
    let epoch = Instant::now();
    // Two shards whose threads wake late by different amounts (up to 9 ms,
    // under the catch-up limit), for 100,000 ticks (33 minutes).
    let mut clocks = [ShardClock::new(epoch), ShardClock::new(epoch)];
    let mut seen = [Vec::new(), Vec::new()];
    for (s, clock) in clocks.iter_mut().enumerate() {
        let mut i = 0;
        let mut next_wake = epoch;
        while clock.next_tick() <= 100_000 {
            i += 1;
            let now = next_wake + jitter(i * (s as u64 + 3), 9 * MS);
            match clock.poll(now) {
                Step::Wait(at) => next_wake = at,
                Step::Tick { tick, deadline } => {
                    assert!(deadline <= now && now - deadline <= 9 * MS);
                    seen[s].push((tick, deadline));
                    next_wake = now;
                }
                Step::Skip { .. } => panic!("shard {s} skipped ticks while never stalled"),
            }
        }
    }
    assert_eq!(seen[0].len(), 100_000);
    assert_eq!(seen[0], seen[1], "both shards send the same ticks at the same deadlines");
    for (i, (tick, deadline)) in seen[0].iter().enumerate() {
        assert_eq!(*tick, i as u64 + 1, "no tick missed or repeated");
        assert_eq!(*deadline - epoch, FRAME * (i as u32 + 1), "deadline of tick {tick} is on the grid: no drift");
    }
}

#[test]
fn a_late_wake_sends_the_missed_ticks_at_once_and_returns_to_the_grid() {
    let epoch = Instant::now();
    let mut clock = ShardClock::new(epoch);
    // Woken 70 ms after tick 1 was due: ticks 1-4 are all due and go out now.
    let now = epoch + FRAME + 70 * MS;
    let mut ticks = Vec::new();
    while let Step::Tick { tick, .. } = clock.poll(now) {
        ticks.push(tick);
    }
    assert_eq!(ticks, [1, 2, 3, 4]);
    assert_eq!(clock.poll(now), Step::Wait(epoch + FRAME * 5), "tick 5 keeps its own deadline");
}

#[test]
fn a_stall_skips_the_missed_ticks_and_the_tick_due_now_follows_at_once() {
    let epoch = Instant::now();
    let mut clock = ShardClock::new(epoch);
    assert_eq!(clock.poll(epoch + 5 * MS), Step::Wait(epoch + FRAME));
    assert!(matches!(clock.poll(epoch + FRAME), Step::Tick { tick: 1, .. }));
    // Suspended for about a second: ticks 2..=50 are skipped (their RTP
    // timestamps advance), 51, due 15 ms ago, is sent at once.
    let now = epoch + FRAME * 51 + 15 * MS;
    assert_eq!(clock.poll(now), Step::Skip { from: 2, missed: 49 });
    assert_eq!(clock.poll(now), Step::Tick { tick: 51, deadline: epoch + FRAME * 51 });
    assert_eq!(clock.poll(now), Step::Wait(epoch + FRAME * 52));
}

/// A call that records its ticks, and may do something while it is ticked.
#[derive(Default)]
struct Fake {
    closed: AtomicBool,
    ticks: Mutex<Vec<u64>>,
    skipped: AtomicUsize,
    during_tick: Mutex<Option<Box<dyn FnMut(u64) + Send>>>,
}

impl Paced for Arc<Fake> {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
    fn tick(&self, tick: u64, _deadline: Instant, out: &mut TickOut) {
        lock(&self.ticks).push(tick);
        out.sent += 1;
        if let Some(f) = lock(&self.during_tick).as_mut() {
            f(tick);
        }
    }
    fn skip(&self, ticks: u64) {
        self.skipped.fetch_add(ticks as usize, Ordering::Relaxed);
    }
}

fn ticks(c: &Fake) -> Vec<u64> {
    lock(&c.ticks).clone()
}

#[test]
fn a_call_added_mid_tick_starts_next_tick_and_a_call_closed_mid_tick_gets_no_more() {
    let epoch = Instant::now();
    let mut clock = ShardClock::new(epoch);
    let mut roster = Roster::default();
    let inbox = Arc::new(Inbox::default());
    let (a, b, c) = (Arc::new(Fake::default()), Arc::new(Fake::default()), Arc::new(Fake::default()));
    inbox.push(a.clone());
    inbox.push(b.clone());
    // While a is ticked at tick 2 (b's turn still to come), c is added and b
    // is closed, as a SIP task on another thread would.
    {
        let (inbox, b, c) = (inbox.clone(), b.clone(), c.clone());
        *lock(&a.during_tick) = Some(Box::new(move |tick| {
            if tick == 2 {
                inbox.push(c.clone());
                b.closed.store(true, Ordering::Relaxed);
            }
        }));
    }
    let mut out = TickOut::default();
    for k in 1..=4 {
        let woke = on_wake(&mut clock, &mut roster, &inbox, epoch + FRAME * k, &mut out);
        assert!(matches!(woke, Woke::Ticked { tick, .. } if tick == k as u64));
    }
    assert_eq!(ticks(&a), [1, 2, 3, 4]);
    assert_eq!(ticks(&b), [1], "closed during tick 2 before its turn: not ticked again");
    assert_eq!(ticks(&c), [3, 4], "added during tick 2: ticked from tick 3, once per tick");
    assert_eq!((roster.len(), inbox.load()), (2, 2), "b was dropped at tick 3");
    assert_eq!(out.take_tallies(), (2 + 1 + 2 + 2, 0, 0), "packets tallied per tick, not lost");
    // A call closed before it ever joined never counts.
    let d = Arc::new(Fake::default());
    inbox.push(d.clone());
    d.closed.store(true, Ordering::Relaxed);
    on_wake(&mut clock, &mut roster, &inbox, epoch + FRAME * 5, &mut out);
    assert!(ticks(&d).is_empty());
    assert_eq!((roster.len(), inbox.load()), (2, 2));
}

#[test]
fn after_a_stall_every_call_skips_the_same_ticks_and_joiners_are_taken_in() {
    let epoch = Instant::now();
    let mut clock = ShardClock::new(epoch);
    let mut roster = Roster::default();
    let inbox = Inbox::default();
    let a = Arc::new(Fake::default());
    inbox.push(a.clone());
    let mut out = TickOut::default();
    on_wake(&mut clock, &mut roster, &inbox, epoch + FRAME, &mut out);
    let late = Arc::new(Fake::default());
    inbox.push(late.clone());
    let now = epoch + FRAME * 20 + 3 * MS;
    assert_eq!(on_wake(&mut clock, &mut roster, &inbox, now, &mut out), Woke::Skipped { from: 2, missed: 18 });
    assert!(matches!(on_wake(&mut clock, &mut roster, &inbox, now, &mut out), Woke::Ticked { tick: 20, .. }));
    assert_eq!((a.skipped.load(Ordering::Relaxed), late.skipped.load(Ordering::Relaxed)), (18, 18));
    assert_eq!(ticks(&a), [1, 20]);
    assert_eq!(ticks(&late), [20]);
}

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn received(peer: &UdpSocket) -> Vec<Packet> {
    let mut buf = [0u8; 1500];
    let mut got = Vec::new();
    while let Ok((n, _)) = peer.recv_from(&mut buf) {
        got.push(Packet::unmarshal(&mut &buf[..n]).unwrap());
    }
    got
}

#[test]
fn a_call_on_hold_keeps_its_clock_and_resumes_on_the_same_timeline() {
    let peer = udp();
    let rtcp_sink = udp();
    let remote = RemoteMedia {
        rtp: peer.local_addr().unwrap(),
        rtcp: rtcp_sink.local_addr().unwrap(),
        payload_type: 0,
        dtmf_payload_type: None,
        pcma: false,
        send: true,
    };
    let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
    let call = CallMedia::new("h".into(), MediaLeg::udp(udp(), udp()), remote, MediaConfig::default(), events);
    let (other_peer, other_events) = (udp(), tokio::sync::mpsc::unbounded_channel().0);
    let other_remote = RemoteMedia { rtp: other_peer.local_addr().unwrap(), ..remote };
    let other = CallMedia::new("o".into(), MediaLeg::udp(udp(), udp()), other_remote, MediaConfig::default(), other_events);
    let epoch = Instant::now();
    let mut clock = ShardClock::new(epoch);
    let mut roster = Roster::default();
    let inbox = Inbox::default();
    inbox.push(call.clone());
    inbox.push(other.clone());
    let mut out = TickOut::default();
    let mut k = 0;
    let mut run = |n: u32| {
        for _ in 0..n {
            k += 1;
            on_wake(&mut clock, &mut roster, &inbox, epoch + FRAME * k, &mut out);
        }
    };
    run(3);
    call.update_remote(RemoteMedia { send: false, ..remote });
    run(10);
    call.update_remote(remote);
    run(3);
    std::thread::sleep(Duration::from_millis(20));
    let got = received(&peer);
    assert_eq!(got.len(), 6, "3 packets before hold, none during its 10 ticks, 3 after");
    for w in got.windows(2) {
        assert_eq!(w[1].header.sequence_number, w[0].header.sequence_number.wrapping_add(1), "no sequence gap");
    }
    let gap = got[3].header.timestamp.wrapping_sub(got[2].header.timestamp);
    assert_eq!(gap, 160 * 11, "the held ticks advanced the RTP clock: it resumes where the wall clock is");
    assert_eq!(received(&other_peer).len(), 16, "the other call on the shard went on through the hold");
    call.close();
    other.close();
}
