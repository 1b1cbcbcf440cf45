//! Shared pieces of the call-test harness: unique numbers and scratch
//! directories, log tails, free ports and checks for command-line tools.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A number unique within this test process.
pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// A fresh scratch directory under the OS temp dir. Server and sipp logs are
/// removed when their owner drops during a passing test and kept (the failure
/// message points at them) when it fails.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("voxline-sip-{tag}-{}-{}", std::process::id(), unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

/// Last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines]\n"));
    }
    out.push_str(&lines[start..].join("\n"));
    out
}

pub(super) fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for a sipp UAS).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind((LOCALHOST, 0)).and_then(|s| s.local_addr()).expect("bind a UDP socket").port()
}

/// A port on 127.0.0.1 that was free on both UDP and TCP a moment ago (for a peer that
/// listens on both, as SIP peers do).
pub fn free_udp_and_tcp_port() -> u16 {
    (0..20)
        .map(|_| free_udp_port())
        .find(|&port| std::net::TcpListener::bind((LOCALHOST, port)).is_ok())
        .expect("a port free on UDP and TCP in 20 tries")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("bind a TCP listener").port()
}

/// Panics with a clear message when a command-line tool is missing.
pub fn require_tool(name: &str, hint: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(found, "`{name}` is not installed; {hint}");
}

/// `Command::output` with a time limit: a subprocess that hangs is killed and
/// the test fails naming it, instead of eating the CI budget.
pub trait OutputWithin {
    fn output_within(&mut self, limit: std::time::Duration, what: &str) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, limit: std::time::Duration, what: &str) -> std::io::Result<std::process::Output> {
        use std::io::Read;
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let end = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}: killed");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        Ok(std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
    }
}
