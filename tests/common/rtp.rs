//! RTP reception: a socket that records every datagram with its arrival time,
//! and the analysis of what it received (timing, sequence, audio).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxline::audio::decode_mulaw_i16;

use super::harness::LOCALHOST;

/// RTP clock ticks in one 20 ms PCMU frame.
pub const FRAME_SAMPLES: usize = 160;
pub const FRAME_MS: f64 = 20.0;

#[derive(Clone, Debug)]
pub struct RtpPacket {
    /// When the capture thread got it.
    pub at: Instant,
    pub wall: SystemTime,
    /// When the kernel received it (Linux SIOCGSTAMP), free of the capture
    /// thread's own scheduling delays; None where unavailable.
    pub kernel: Option<SystemTime>,
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

/// The kernel's receive time of the last datagram read from `sock`
/// (SIOCGSTAMP). The first call on a socket switches time stamping on (and
/// returns None); call it once right after binding.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn kernel_stamp(sock: &UdpSocket) -> Option<SystemTime> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Timeval {
        sec: i64,
        usec: i64,
    }
    extern "C" {
        fn ioctl(fd: i32, request: u64, ...) -> i32;
    }
    const SIOCGSTAMP: u64 = 0x8906;
    let mut tv = Timeval { sec: 0, usec: 0 };
    // SAFETY: SIOCGSTAMP writes one struct timeval (64-bit fields on 64-bit
    // Linux) through the pointer, which points at a live Timeval.
    let rc = unsafe { ioctl(sock.as_raw_fd(), SIOCGSTAMP, &mut tv as *mut Timeval) };
    (rc == 0 && tv.sec > 0).then(|| UNIX_EPOCH + Duration::new(tv.sec as u64, (tv.usec * 1000) as u32))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn kernel_stamp(_sock: &UdpSocket) -> Option<SystemTime> {
    None
}

/// A UDP socket on 127.0.0.1 recording every datagram with its arrival time,
/// on a thread of its own, until stopped (or dropped).
pub struct RtpCapture {
    pub addr: SocketAddr,
    packets: Arc<Mutex<Vec<RtpPacket>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpCapture {
    /// Binds 127.0.0.1 on a free even port (RTP convention; odd for RTCP) and
    /// starts recording. Returns the capture and its port.
    pub fn bind() -> (RtpCapture, u16) {
        let sock = (0..50)
            .find_map(|_| UdpSocket::bind((LOCALHOST, 0)).ok().filter(|s| s.local_addr().is_ok_and(|a| a.port() % 2 == 0)))
            .unwrap_or_else(|| UdpSocket::bind((LOCALHOST, 0)).expect("bind a UDP socket for RTP"));
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let _ = kernel_stamp(&sock); // switches kernel time stamps on
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st) = (packets.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("rtp-capture-{}", addr.port()))
            .spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !st.load(Ordering::Relaxed) {
                    match sock.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            let (at, wall, kernel) = (Instant::now(), SystemTime::now(), kernel_stamp(&sock));
                            let pkt = RtpPacket { at, wall, kernel, from, data: buf[..n].to_vec() };
                            p.lock().unwrap().push(pkt);
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            })
            .expect("start the RTP capture thread");
        let port = addr.port();
        (RtpCapture { addr, packets, stop, thread: Some(thread) }, port)
    }

    pub fn count(&self) -> usize {
        self.packets.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<RtpPacket> {
        self.packets.lock().unwrap().clone()
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        self.packets.lock().unwrap().last().map(|p| p.at)
    }

    /// Waits until at least `n` packets are in; false on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits until `pred` holds for the packets so far (judged on a copy, so
    /// the capture thread is never held up); false on timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[RtpPacket]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.snapshot()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Packets that arrived after `t`.
    pub fn count_after(&self, t: Instant) -> usize {
        self.packets.lock().unwrap().iter().filter(|p| p.at > t).count()
    }

    /// Stops recording; returns every packet.
    pub fn stop(mut self) -> Vec<RtpPacket> {
        self.halt();
        std::mem::take(&mut *self.packets.lock().unwrap())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtpCapture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One RTP packet, parsed (RFC 3550 fixed header, CSRCs and extension skipped).
#[derive(Clone, Debug)]
pub struct Rtp {
    pub at: Instant,
    pub wall: SystemTime,
    pub kernel: Option<SystemTime>,
    pub from: SocketAddr,
    pub version: u8,
    pub padding: bool,
    pub extension: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

pub fn parse_rtp(p: &RtpPacket) -> Option<Rtp> {
    let d = &p.data;
    if d.len() < 12 {
        return None;
    }
    let version = d[0] >> 6;
    let padding = d[0] & 0x20 != 0;
    let extension = d[0] & 0x10 != 0;
    let cc = (d[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if extension {
        if d.len() < off + 4 {
            return None;
        }
        let words = u16::from_be_bytes([d[off + 2], d[off + 3]]) as usize;
        off += 4 + 4 * words;
    }
    let mut end = d.len();
    if padding {
        let pad = *d.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    if off > end {
        return None;
    }
    Some(Rtp {
        at: p.at,
        wall: p.wall,
        kernel: p.kernel,
        from: p.from,
        version,
        padding,
        extension,
        marker: d[1] & 0x80 != 0,
        payload_type: d[1] & 0x7f,
        seq: u16::from_be_bytes([d[2], d[3]]),
        timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        payload: d[off..end].to_vec(),
    })
}

/// What a stream of received RTP looks like.
#[derive(Clone, Debug)]
pub struct RtpAnalysis {
    /// Parsed packets in arrival order.
    pub packets: Vec<Rtp>,
    /// Datagrams that were not RTP version 2.
    pub invalid: usize,
    pub payload_types: BTreeMap<u8, usize>,
    pub payload_sizes: BTreeMap<usize, usize>,
    pub ssrcs: BTreeSet<u32>,
    pub sources: BTreeSet<SocketAddr>,
    /// Packets missing from the sequence (sum of forward gaps - 1).
    pub seq_lost: u64,
    pub seq_duplicates: usize,
    /// Packets that arrived with a lower sequence number than one before them.
    pub seq_reordered: usize,
    /// Timestamp step between consecutive packets (arrival order) -> count.
    pub ts_steps: BTreeMap<i64, usize>,
    /// Inter-arrival gaps, ms, arrival order: from the kernel's receive time
    /// stamps when every packet has one (`kernel_clock`), else from the
    /// capture thread's clock.
    pub interarrival_ms: Vec<f64>,
    pub kernel_clock: bool,
    /// Indices (arrival order) of packets with the marker bit.
    pub markers: Vec<usize>,
    /// RMS of each packet's decoded PCMU payload (16-bit units; 0 for other PTs).
    pub frame_rms: Vec<f64>,
}

/// A frame counts as voiced above this RMS (16-bit units; about -50 dBFS).
/// Silence frames (0xFF) decode to exact zeros; speech through mu-law is in
/// the thousands, the quiet gaps between words of a neural voice in the tens.
pub const VOICED_RMS: f64 = 100.0;

impl RtpAnalysis {
    pub fn new(raw: &[RtpPacket]) -> RtpAnalysis {
        let mut a = RtpAnalysis {
            packets: Vec::new(),
            invalid: 0,
            payload_types: BTreeMap::new(),
            payload_sizes: BTreeMap::new(),
            ssrcs: BTreeSet::new(),
            sources: BTreeSet::new(),
            seq_lost: 0,
            seq_duplicates: 0,
            seq_reordered: 0,
            ts_steps: BTreeMap::new(),
            interarrival_ms: Vec::new(),
            kernel_clock: false,
            markers: Vec::new(),
            frame_rms: Vec::new(),
        };
        for p in raw {
            match parse_rtp(p) {
                Some(r) if r.version == 2 => a.packets.push(r),
                _ => a.invalid += 1,
            }
        }
        let mut seen: BTreeSet<(u32, u64)> = BTreeSet::new();
        let mut highest: BTreeMap<u32, u64> = BTreeMap::new();
        let mut last_ext: BTreeMap<u32, u64> = BTreeMap::new();
        for (i, r) in a.packets.iter().enumerate() {
            *a.payload_types.entry(r.payload_type).or_default() += 1;
            *a.payload_sizes.entry(r.payload.len()).or_default() += 1;
            a.ssrcs.insert(r.ssrc);
            a.sources.insert(r.from);
            if r.marker {
                a.markers.push(i);
            }
            // Extended sequence number per SSRC (wrap-aware, near the last one).
            let ext = match last_ext.get(&r.ssrc) {
                None => r.seq as u64 + (1 << 16),
                Some(&prev) => {
                    let base = prev & !0xffff;
                    let cands = [base.wrapping_sub(1 << 16) | r.seq as u64, base | r.seq as u64, (base + (1 << 16)) | r.seq as u64];
                    *cands.iter().min_by_key(|&&c| (c as i64 - prev as i64).unsigned_abs()).unwrap()
                }
            };
            last_ext.insert(r.ssrc, ext);
            if !seen.insert((r.ssrc, ext)) {
                a.seq_duplicates += 1;
                continue;
            }
            match highest.get(&r.ssrc).copied() {
                None => {
                    highest.insert(r.ssrc, ext);
                }
                Some(h) if ext > h => {
                    a.seq_lost += ext - h - 1;
                    highest.insert(r.ssrc, ext);
                }
                Some(_) => {
                    a.seq_reordered += 1;
                    a.seq_lost = a.seq_lost.saturating_sub(1); // it was counted as lost
                }
            }
        }
        a.frame_rms = a
            .packets
            .iter()
            .map(|r| if r.payload_type == 0 { rms(&decode_mulaw_i16(&r.payload)) } else { 0.0 })
            .collect();
        for w in a.packets.windows(2) {
            if w[0].ssrc == w[1].ssrc {
                let step = w[1].timestamp.wrapping_sub(w[0].timestamp) as i32 as i64;
                *a.ts_steps.entry(step).or_default() += 1;
            }
        }
        a.kernel_clock = !a.packets.is_empty() && a.packets.iter().all(|p| p.kernel.is_some());
        a.interarrival_ms = a
            .packets
            .windows(2)
            .map(|w| match (a.kernel_clock, w[0].kernel, w[1].kernel) {
                (true, Some(k0), Some(k1)) => secs(k0, k1) * 1000.0,
                _ => w[1].at.duration_since(w[0].at).as_secs_f64() * 1000.0,
            })
            .collect();
        a
    }

    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Timestamp steps other than one 20 ms frame.
    pub fn bad_ts_steps(&self) -> usize {
        self.ts_steps.iter().filter(|(s, _)| **s != FRAME_SAMPLES as i64).map(|(_, n)| n).sum()
    }

    /// Inter-arrival percentile (0..=100), ms.
    pub fn interarrival_percentile(&self, p: f64) -> f64 {
        percentile(&self.interarrival_ms, p)
    }

    pub fn interarrival_max(&self) -> f64 {
        self.interarrival_ms.iter().cloned().fold(0.0, f64::max)
    }

    /// First to last arrival (on the same clock as `interarrival_ms`).
    pub fn span(&self) -> Duration {
        match (self.packets.first(), self.packets.last()) {
            (Some(a), Some(b)) => match (self.kernel_clock, a.kernel, b.kernel) {
                (true, Some(k0), Some(k1)) => Duration::from_secs_f64(secs(k0, k1).max(0.0)),
                _ => b.at.duration_since(a.at),
            },
            _ => Duration::ZERO,
        }
    }

    /// Mean packet interval over the whole stream, ms.
    pub fn mean_interval_ms(&self) -> f64 {
        if self.packets.len() < 2 {
            return f64::NAN;
        }
        self.span().as_secs_f64() * 1000.0 / (self.packets.len() - 1) as f64
    }

    pub fn voiced(&self) -> Vec<bool> {
        self.frame_rms.iter().map(|&r| r > VOICED_RMS).collect()
    }

    /// Fraction of voiced frames in `range` (packet indices).
    pub fn voiced_ratio(&self, range: Range<usize>) -> f64 {
        let v = self.voiced();
        let range = range.start.min(v.len())..range.end.min(v.len());
        if range.is_empty() {
            return 0.0;
        }
        v[range.clone()].iter().filter(|&&x| x).count() as f64 / range.len() as f64
    }

    /// Runs of voice: voiced frames joined across gaps of up to `max_gap`
    /// frames; runs shorter than `min_len` frames dropped. Packet indices.
    pub fn voiced_regions(&self, max_gap: usize, min_len: usize) -> Vec<Range<usize>> {
        let v = self.voiced();
        let mut regions: Vec<Range<usize>> = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if !v[i] {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i + 1; // exclusive, after the last voiced frame
            let mut j = i + 1;
            while j < v.len() && j - end <= max_gap {
                if v[j] {
                    end = j + 1;
                }
                j += 1;
            }
            regions.push(start..end);
            i = end.max(j);
        }
        regions.retain(|r| r.len() >= min_len);
        regions
    }

    /// Utterances as the tests see them: voice joined across pauses up to
    /// 600 ms, at least 200 ms long.
    pub fn utterances(&self) -> Vec<Range<usize>> {
        self.voiced_regions(30, 10)
    }

    /// RMS (16-bit units) over the voiced frames of `range`.
    pub fn voiced_rms(&self, range: Range<usize>) -> f64 {
        let v: Vec<f64> = range.filter(|&i| i < self.frame_rms.len() && self.frame_rms[i] > VOICED_RMS).map(|i| self.frame_rms[i]).collect();
        if v.is_empty() {
            return 0.0;
        }
        (v.iter().map(|r| r * r).sum::<f64>() / v.len() as f64).sqrt()
    }

    /// Decoded PCMU (8 kHz, 16-bit) of the packets in `range`, in sequence
    /// order with duplicates dropped; other payload types skipped.
    pub fn pcm(&self, range: Range<usize>) -> Vec<i16> {
        let range = range.start.min(self.packets.len())..range.end.min(self.packets.len());
        let mut pkts: Vec<&Rtp> = self.packets[range].iter().filter(|r| r.payload_type == 0).collect();
        // Arrival order is sequence order unless reordered; sort by extended seq.
        let mut ext = Vec::with_capacity(pkts.len());
        let mut prev: Option<i64> = None;
        for r in &pkts {
            let e = match prev {
                None => r.seq as i64,
                Some(p) => {
                    let d = (r.seq as i64 - (p & 0xffff) + 32768).rem_euclid(65536) - 32768;
                    p + d
                }
            };
            ext.push(e);
            prev = Some(e);
        }
        let mut idx: Vec<usize> = (0..pkts.len()).collect();
        idx.sort_by_key(|&i| ext[i]);
        idx.dedup_by_key(|i| ext[*i]);
        let ordered: Vec<&Rtp> = idx.iter().map(|&i| pkts[i]).collect();
        pkts = ordered;
        let mut out = Vec::with_capacity(pkts.len() * FRAME_SAMPLES);
        for r in pkts {
            out.extend(decode_mulaw_i16(&r.payload));
        }
        out
    }

    pub fn all_pcm(&self) -> Vec<i16> {
        self.pcm(0..self.packets.len())
    }

    /// A compact voiced/silent map, one character per 100 ms ('#' voiced in
    /// most of it, '.' silent, '|' where a marker bit is).
    pub fn envelope(&self) -> String {
        let v = self.voiced();
        let mut s = String::new();
        for (k, chunk) in v.chunks(5).enumerate() {
            let marker = self.markers.iter().any(|&m| m / 5 == k);
            let voiced = chunk.iter().filter(|&&x| x).count() * 2 >= chunk.len();
            s.push(if marker { '|' } else if voiced { '#' } else { '.' });
        }
        s
    }

    pub fn summary(&self) -> String {
        format!(
            "{} packets ({} not RTP) over {:.2}s from {:?}; PTs {:?}; payload sizes {:?}; SSRCs {:?}; \
             seq lost {} dup {} reordered {}; ts steps {:?}; inter-arrival ({}) p50 {:.1} p99 {:.1} max {:.1} ms, mean {:.2} ms; \
             markers at {:?}; utterances (packet idx) {:?}\nenvelope (100 ms/char, | marker): {}",
            self.packets.len(),
            self.invalid,
            self.span().as_secs_f64(),
            self.sources,
            self.payload_types,
            self.payload_sizes,
            self.ssrcs.iter().map(|s| format!("{s:#010x}")).collect::<Vec<_>>(),
            self.seq_lost,
            self.seq_duplicates,
            self.seq_reordered,
            self.ts_steps,
            if self.kernel_clock { "kernel receive stamps" } else { "capture thread clock" },
            self.interarrival_percentile(50.0),
            self.interarrival_percentile(99.0),
            self.interarrival_max(),
            self.mean_interval_ms(),
            self.markers,
            self.utterances(),
            self.envelope()
        )
    }
}

/// Seconds from `a` to `b` (negative if `b` is earlier).
pub fn secs(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

pub fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

/// Nearest-rank percentile of unsorted values (NaN when empty).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
