//! Measures the pacing of RTP streams arriving at one UDP port (benchmarks).
//!
//! `voxline-rtp-probe --listen 127.0.0.1:40000 --seconds 60 --settle 5`
//! receives every stream sent to the port, tells them apart by SSRC, and after
//! the run prints one JSON object: streams, packets, inter-arrival p50/p99/
//! p99.9/max over all streams, sequence and timestamp faults, and clock drift
//! (arrival time span minus RTP timestamp span) per stream over the window.
//! Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the
//! probe's own scheduling does not show up as sender jitter.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Stream {
    first: Option<(i64, u32)>,
    last: Option<(i64, u16, u32)>,
    packets: u64,
    seq_faults: u64,
    ts_faults: u64,
    payload_types: Vec<u8>,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: voxline-rtp-probe --listen ADDR [--seconds N] [--settle N] [--ready-file PATH]");
        return;
    }
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:40000".into());
    let seconds: f64 = arg(&args, "--seconds").and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let settle: f64 = arg(&args, "--settle").and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let socket = match UdpSocket::bind(&listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("voxline-rtp-probe: cannot bind {listen}: {e}");
            std::process::exit(1);
        }
    };
    let fd = socket.as_raw_fd();
    // SAFETY: plain setsockopt calls on our own socket with correctly sized values.
    unsafe {
        let on: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &on as *const _ as *const libc::c_void, 4);
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &on as *const _ as *const libc::c_void, 4);
        // SO_RCVBUF is capped at net.core.rmem_max (often 208 KiB: a few ms
        // of 1000 streams); SO_RCVBUFFORCE lifts the cap when privileged.
        let size: libc::c_int = 32 << 20;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size as *const _ as *const libc::c_void, 4) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size as *const _ as *const libc::c_void, 4);
        }
    }
    let rcvbuf = {
        let mut v: libc::c_int = 0;
        let mut len: libc::socklen_t = 4;
        // SAFETY: reads one int into `v`.
        unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &mut v as *mut _ as *mut libc::c_void, &mut len) };
        v
    };
    socket.set_read_timeout(Some(Duration::from_millis(200))).ok();
    if let Some(path) = arg(&args, "--ready-file") {
        let _ = std::fs::write(path, socket.local_addr().map(|a| a.to_string()).unwrap_or_default());
    }
    let start = Instant::now();
    let window_start = Duration::from_secs_f64(settle);
    let end = Duration::from_secs_f64(settle + seconds);
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    let mut intervals_us: Vec<u32> = Vec::with_capacity(4 << 20);
    let mut buf = [0u8; 2048];
    let mut not_rtp = 0u64;
    // The kernel's count of datagrams dropped on this socket (full buffer),
    // as carried by SO_RXQ_OVFL: at the window's start and latest.
    let mut drops_latest = 0u32;
    let mut drops_at_window: Option<u32> = None;
    while start.elapsed() < end {
        let Some((n, t_ns, drops)) = recv_timestamped(fd, &mut buf) else { continue };
        if let Some(d) = drops {
            drops_latest = d;
        }
        if start.elapsed() < window_start {
            continue;
        }
        drops_at_window.get_or_insert(drops_latest);
        if n < 12 || buf[0] >> 6 != 2 {
            not_rtp += 1;
            continue;
        }
        let pt = buf[1] & 0x7f;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let s = streams.entry(ssrc).or_insert_with(|| Stream { first: None, last: None, packets: 0, seq_faults: 0, ts_faults: 0, payload_types: Vec::new() });
        s.packets += 1;
        if !s.payload_types.contains(&pt) {
            s.payload_types.push(pt);
        }
        s.first.get_or_insert((t_ns, ts));
        if let Some((prev_t, prev_seq, prev_ts)) = s.last {
            if seq != prev_seq.wrapping_add(1) {
                s.seq_faults += 1;
            } else {
                intervals_us.push(((t_ns - prev_t).max(0) / 1000) as u32);
                if ts != prev_ts.wrapping_add(160) {
                    s.ts_faults += 1;
                }
            }
        }
        s.last = Some((t_ns, seq, ts));
    }
    intervals_us.sort_unstable();
    let q = |p: f64| -> f64 {
        if intervals_us.is_empty() {
            return 0.0;
        }
        let i = ((intervals_us.len() - 1) as f64 * p).round() as usize;
        intervals_us[i] as f64 / 1000.0
    };
    let mut drifts: Vec<f64> = Vec::new();
    for s in streams.values() {
        if let (Some((t0, ts0)), Some((t1, _, ts1))) = (s.first, s.last) {
            let media = ts1.wrapping_sub(ts0) as f64 / 8.0; // ms
            let wall = (t1 - t0) as f64 / 1e6;
            if wall > 1000.0 {
                drifts.push(wall - media);
            }
        }
    }
    let max_abs_drift = drifts.iter().fold(0.0f64, |m, d| m.max(d.abs()));
    let mean_drift = if drifts.is_empty() { 0.0 } else { drifts.iter().sum::<f64>() / drifts.len() as f64 };
    let packets: u64 = streams.values().map(|s| s.packets).sum();
    let seq_faults: u64 = streams.values().map(|s| s.seq_faults).sum();
    let ts_faults: u64 = streams.values().map(|s| s.ts_faults).sum();
    let mut pts: Vec<u8> = streams.values().flat_map(|s| s.payload_types.iter().copied()).collect();
    pts.sort_unstable();
    pts.dedup();
    println!(
        "{{\"streams\":{},\"packets\":{},\"window_s\":{:.1},\"interval_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}},\"seq_faults\":{},\"ts_faults\":{},\"drift_ms\":{{\"mean\":{:.3},\"max_abs\":{:.3}}},\"payload_types\":{:?},\"not_rtp\":{},\"kernel_drops\":{},\"rcvbuf\":{}}}",
        streams.len(),
        packets,
        seconds,
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        seq_faults,
        ts_faults,
        mean_drift,
        max_abs_drift,
        pts,
        not_rtp,
        drops_latest.wrapping_sub(drops_at_window.unwrap_or(drops_latest)),
        rcvbuf
    );
}

/// One datagram, its kernel receive time in nanoseconds, and the socket's
/// drop counter when the kernel sent one (SO_RXQ_OVFL, only once nonzero).
fn recv_timestamped(fd: i32, buf: &mut [u8]) -> Option<(usize, i64, Option<u32>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at our buffers, which outlive the call; the
    // control messages are read within the length the kernel reports.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return None;
        }
        let mut t = None;
        let mut drops = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                t = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const u32));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let t = t.unwrap_or_else(|| {
            let mut now: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
            now.tv_sec * 1_000_000_000 + now.tv_nsec
        });
        Some((n as usize, t, drops))
    }
}
