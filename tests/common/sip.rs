//! Harness for the SIP call tests (tests/sip_calls.rs): the server under test,
//! sipp as the calling peer, a raw SIP socket, an RTP receiver and the analysis
//! of what it received (timing, sequence, audio, transcription).
//!
//! * [`Server`] runs `voxline serve` on loopback ports the OS picks, waits for
//!   its `ready sip=… http=…` line, keeps its stderr in a file and prints it
//!   when a test fails; it is killed on drop.
//! * [`http_get`] / [`http_post`]: a tiny blocking HTTP/1.1 client (std only).
//! * [`Sipp`] / [`run_sipp`]: one sipp call from a scenario in tests/sipp/,
//!   bounded in time, with its message log parsed ([`SippResult::messages`]).
//! * [`RtpCapture`]: a UDP socket the offers point at; a thread records every
//!   datagram with its arrival time. [`RtpAnalysis`] judges them.
//! * [`SipSocket`] + [`Request`]: hand-written SIP over a plain UDP socket.
//! * [`transcribe_8k`]: PCMU-decoded 8 kHz audio -> 16 kHz -> pocketsphinx.
//!
//! Everything here is bounded in time: no wait is open-ended.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use voxline::audio::{decode_mulaw_i16, write_wav_file, StreamResampler, WavFormat};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// RTP clock ticks in one 20 ms PCMU frame.
pub const FRAME_SAMPLES: usize = 160;
pub const FRAME_MS: f64 = 20.0;
pub const SIPP: &str = "sipp";
pub const POCKETSPHINX: &str = "pocketsphinx_continuous";
pub const POCKETSPHINX_MODEL: &str = "/usr/share/pocketsphinx/model/en-us";
/// How long `voxline serve` may take to print its ready line (voice load).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

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

/// The repository's tests/sipp/NAME.
pub fn scenario_path(name: &str) -> PathBuf {
    super::root().join("tests/sipp").join(name)
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

fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for a sipp UAS).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind((LOCALHOST, 0)).and_then(|s| s.local_addr()).expect("bind a UDP socket").port()
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

pub fn require_sipp() {
    require_tool(SIPP, "install it with `apt-get install sip-tester` (sipp 3.6, built with RTPSTREAM)");
}

pub fn require_pocketsphinx() {
    require_tool(POCKETSPHINX, "install it with `scripts/setup.sh --test` (apt: pocketsphinx pocketsphinx-en-us)");
    assert!(
        Path::new(POCKETSPHINX_MODEL).is_dir(),
        "pocketsphinx's en-us model is missing at {POCKETSPHINX_MODEL} (apt: pocketsphinx-en-us)"
    );
}

// ---------------------------------------------------------------------------
// Scheduling: timing-sensitive tests run alone.
// ---------------------------------------------------------------------------

static GATE: RwLock<()> = RwLock::new(());

/// Held by a test while it runs beside others (most tests).
pub type SharedSlot = RwLockReadGuard<'static, ()>;
/// Held by a test that measures timing (RTP pacing, latency): no other test
/// runs a server meanwhile, so another server's synthesis does not compete for
/// the CPU. std's RwLock on Linux prefers a waiting writer, so these are not
/// starved.
pub type ExclusiveSlot = RwLockWriteGuard<'static, ()>;

pub fn shared_slot() -> SharedSlot {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

pub fn exclusive_slot() -> ExclusiveSlot {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The server under test.
// ---------------------------------------------------------------------------

/// `voxline serve` on loopback. Killed on drop; when the test is panicking its
/// stderr (and what else it printed on stdout) is shown.
pub struct Server {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub dir: PathBuf,
    pub args: Vec<String>,
    stderr_path: PathBuf,
    stdout_rest: Arc<Mutex<String>>,
    notes: Mutex<Vec<String>>,
}

impl Server {
    /// Starts `voxline serve ARGS`. `--sip 127.0.0.1:0`, `--http 127.0.0.1:0`
    /// and `--rtp-timeout 0` (the tests never send RTP to the server) are added
    /// unless ARGS name them.
    pub fn start(args: &[&str]) -> Server {
        super::default_voice(); // fails loudly if the voice is missing
        let dir = scratch_dir("server");
        let stderr_path = dir.join("server.stderr.log");
        let mut full: Vec<String> = vec!["serve".into()];
        let has = |flag: &str| args.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !has("--sip") {
            full.extend(["--sip".into(), "127.0.0.1:0".into()]);
        }
        if !has("--http") {
            full.extend(["--http".into(), "127.0.0.1:0".into()]);
        }
        if !has("--rtp-timeout") {
            full.extend(["--rtp-timeout".into(), "0".into()]);
        }
        full.extend(args.iter().map(|s| s.to_string()));

        let bin = env!("CARGO_BIN_EXE_voxline");
        let mut child = Command::new(bin)
            .args(&full)
            .current_dir(super::root())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&stderr_path).expect("create the server's stderr log")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));

        // stdout: the first `ready` line goes to us; everything else is kept.
        let (tx, rx) = mpsc::channel::<String>();
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let rest = stdout_rest.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && line.starts_with("ready ") {
                    sent = true;
                    let _ = tx.send(line);
                } else {
                    let mut r = rest.lock().unwrap();
                    r.push_str(&line);
                    r.push('\n');
                }
            }
        });

        let command_line = format!("{bin} {}", full.join(" "));
        let deadline = Instant::now() + READY_TIMEOUT;
        let ready = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!(
                        "`{command_line}` exited ({status:?}) without printing its ready line\n--- stderr ---\n{}\n--- stdout ---\n{}",
                        tail(&read_lossy(&stderr_path), 80),
                        stdout_rest.lock().unwrap()
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "`{command_line}` exited ({status}) before it was ready\n--- stderr ---\n{}",
                    tail(&read_lossy(&stderr_path), 80)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "`{command_line}` printed no `ready sip=... http=...` line within {READY_TIMEOUT:?}\n--- stderr ---\n{}",
                    tail(&read_lossy(&stderr_path), 80)
                );
            }
        };
        let field = |key: &str| -> SocketAddr {
            ready
                .split_whitespace()
                .find_map(|tok| tok.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("cannot read `{key}=ADDR:PORT` from the ready line {ready:?}"))
        };
        let (sip, http) = (field("sip"), field("http"));
        assert_ne!(sip.port(), 0, "ready line: {ready}");
        assert_ne!(http.port(), 0, "ready line: {ready}");
        let server = Server { child, sip, http, dir, args: full, stderr_path, stdout_rest, notes: Mutex::new(Vec::new()) };
        let health = server.get("/healthz");
        assert!(health.status == 200, "GET /healthz -> {} {}", health.status, health.body);
        server
    }

    /// Starts a server with a greeting, plus extra arguments.
    pub fn with_greeting(greeting: &str, extra: &[&str]) -> Server {
        let mut args = vec!["--greeting", greeting];
        args.extend_from_slice(extra);
        Server::start(&args)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// A line shown with the server's logs if the test fails.
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().unwrap().push(text.into());
    }

    /// Panics unless the process is still running.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the server exited ({status})");
        }
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http_get(self.http, path)
    }

    pub fn post(&self, path: &str, json: &str) -> HttpResponse {
        http_post(self.http, path, json)
    }

    /// GET /calls, parsed.
    pub fn calls(&self) -> Vec<CallInfo> {
        let r = self.get("/calls");
        assert_eq!(r.status, 200, "GET /calls -> {} {}", r.status, r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET /calls: not JSON ({e}): {}", r.body));
        let arr = v.as_array().unwrap_or_else(|| panic!("GET /calls: not a JSON array: {}", r.body));
        arr.iter().map(CallInfo::from_json).collect()
    }

    /// Polls GET /calls until a call with this SIP Call-ID satisfies `pred`.
    pub fn wait_for_call(&self, sip_call_id: &str, timeout: Duration, pred: impl Fn(&CallInfo) -> bool) -> CallInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.calls();
            if let Some(c) = last.iter().find(|c| c.sip_call_id == sip_call_id && pred(c)) {
                return c.clone();
            }
            if Instant::now() > deadline {
                panic!("no call with Call-ID {sip_call_id} in the wanted state within {timeout:?}; GET /calls: {last:#?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls GET /calls until no call with this SIP Call-ID is listed (an
    /// `ended` entry counts as still listed). Returns how long that took.
    pub fn wait_call_gone(&self, sip_call_id: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let calls = self.calls();
            if !calls.iter().any(|c| c.sip_call_id == sip_call_id) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("the call with Call-ID {sip_call_id} is still listed {timeout:?} later: {calls:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn speak(&self, id: &str, text: &str) -> HttpResponse {
        let body = serde_json::json!({ "text": text }).to_string();
        self.post(&format!("/calls/{id}/speak"), &body)
    }

    pub fn hangup(&self, id: &str) -> HttpResponse {
        self.post(&format!("/calls/{id}/hangup"), "")
    }

    fn diagnostics(&self) -> String {
        let mut out = format!(
            "=== voxline server (sip {} http {}) args: {:?}\n--- server stderr ({}) ---\n{}\n",
            self.sip,
            self.http,
            self.args,
            self.stderr_path.display(),
            tail(&self.stderr(), 150)
        );
        let rest = self.stdout_rest.lock().map(|s| s.clone()).unwrap_or_default();
        if !rest.is_empty() {
            out.push_str(&format!("--- server stdout after the ready line ---\n{}\n", tail(&rest, 50)));
        }
        for n in self.notes.lock().map(|n| n.clone()).unwrap_or_default() {
            out.push_str(&format!("--- note ---\n{n}\n"));
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One entry of GET /calls.
#[derive(Clone, Debug)]
pub struct CallInfo {
    pub id: String,
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    pub state: String,
    pub stats: Value,
    pub raw: Value,
}

impl CallInfo {
    fn from_json(v: &Value) -> CallInfo {
        let s = |k: &str| match v.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        CallInfo {
            id: s("id"),
            sip_call_id: s("sip_call_id"),
            from: s("from"),
            to: s("to"),
            state: s("state"),
            stats: v.get("stats").cloned().unwrap_or(Value::Null),
            raw: v.clone(),
        }
    }

    pub fn stat(&self, key: &str) -> Option<u64> {
        self.stats.get(key).and_then(Value::as_u64)
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client (blocking, std only).
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One request on its own connection (`Connection: close`), 10 s bounds.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> std::io::Result<HttpResponse> {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_http_response(&raw).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn parse_http_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").ok_or("bad chunk")?;
            let size_text = String::from_utf8_lossy(&rest[..eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            if rest.len() < size {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = out;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, None).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

pub fn http_post(addr: SocketAddr, path: &str, json: &str) -> HttpResponse {
    http_request(addr, "POST", path, Some(json)).unwrap_or_else(|e| panic!("POST http://{addr}{path}: {e}"))
}

// ---------------------------------------------------------------------------
// SIP messages and SDP.
// ---------------------------------------------------------------------------

/// A parsed SIP message (request or response).
#[derive(Clone, Debug)]
pub struct SipMessage {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

/// Long form of a compact header name (RFC 3261 7.3.3).
fn long_header_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "m" => "Contact",
        "e" => "Content-Encoding",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "f" => "From",
        "s" => "Subject",
        "k" => "Supported",
        "t" => "To",
        "v" => "Via",
        _ => name,
    }
}

impl SipMessage {
    pub fn parse(text: &str) -> Option<SipMessage> {
        let text_trim = text.trim_start_matches(['\r', '\n']);
        let (head, body) = match text_trim.find("\r\n\r\n") {
            Some(i) => (&text_trim[..i], &text_trim[i + 4..]),
            None => match text_trim.find("\n\n") {
                Some(i) => (&text_trim[..i], &text_trim[i + 2..]),
                None => (text_trim, ""),
            },
        };
        let mut lines = head.lines();
        let start_line = lines.next()?.trim_end().to_string();
        if start_line.is_empty() {
            return None;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((long_header_name(k.trim()).to_string(), v.trim().to_string()));
            }
        }
        Some(SipMessage { start_line, headers, body: body.to_string(), raw: text.to_string() })
    }

    pub fn is_response(&self) -> bool {
        self.start_line.starts_with("SIP/2.0 ")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.start_line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.is_response() {
            None
        } else {
            self.start_line.split_whitespace().next()
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        if self.is_response() {
            None
        } else {
            self.start_line.split_whitespace().nth(1)
        }
    }

    /// First header of this name (case-insensitive; compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = long_header_name(name);
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// All values of this header, comma lists split.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let name = long_header_name(name);
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// (number, method) of CSeq.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_string()))
    }

    pub fn cseq_method(&self) -> Option<String> {
        self.cseq().map(|(_, m)| m)
    }

    pub fn to_tag(&self) -> Option<String> {
        header_param(self.header("To")?, "tag")
    }

    #[allow(clippy::wrong_self_convention)] // the From header's tag, not a conversion
    pub fn from_tag(&self) -> Option<String> {
        header_param(self.header("From")?, "tag")
    }

    /// The branch of the top Via.
    pub fn via_branch(&self) -> Option<String> {
        header_param(self.header("Via")?, "branch")
    }

    /// Methods in Allow (upper-cased).
    pub fn allow(&self) -> BTreeSet<String> {
        self.header_values("Allow").into_iter().map(|m| m.to_ascii_uppercase()).collect()
    }

    /// The URI inside Contact (`<sip:...>` or bare).
    pub fn contact_uri(&self) -> Option<String> {
        let v = self.header("Contact")?;
        Some(match (v.find('<'), v.find('>')) {
            (Some(a), Some(b)) if b > a => v[a + 1..b].to_string(),
            _ => v.split(';').next().unwrap_or(v).trim().to_string(),
        })
    }

    /// The SDP body, if Content-Type says so.
    pub fn sdp(&self) -> Option<Result<Sdp, String>> {
        let ct = self.header("Content-Type")?;
        if !ct.to_ascii_lowercase().starts_with("application/sdp") {
            return None;
        }
        Some(Sdp::parse(&self.body))
    }

    /// Content-Length as declared.
    pub fn content_length(&self) -> Option<usize> {
        self.header("Content-Length")?.trim().parse().ok()
    }
}

/// `;name=value` from a header value (after the URI's closing `>` if any).
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A session description, parsed just enough for the tests.
#[derive(Clone, Debug, Default)]
pub struct Sdp {
    pub lines: Vec<String>,
    pub origin: Option<String>,
    pub connection: Option<IpAddr>,
    pub media: Vec<SdpMedia>,
}

#[derive(Clone, Debug, Default)]
pub struct SdpMedia {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<u8>,
    /// payload type -> "PCMU/8000"
    pub rtpmap: BTreeMap<u8, String>,
    pub fmtp: BTreeMap<u8, String>,
    pub connection: Option<IpAddr>,
    /// Other `a=` lines, without `a=`.
    pub attributes: Vec<String>,
}

impl Sdp {
    pub fn parse(body: &str) -> Result<Sdp, String> {
        let mut sdp = Sdp::default();
        let mut saw_v = false;
        for line in body.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
            sdp.lines.push(line.to_string());
            let (k, v) = line.split_once('=').ok_or_else(|| format!("SDP line without '=': {line:?}"))?;
            match k {
                "v" => {
                    if v != "0" {
                        return Err(format!("v={v}, expected 0"));
                    }
                    saw_v = true;
                }
                "o" => sdp.origin = Some(v.to_string()),
                "c" => {
                    let parts: Vec<&str> = v.split_whitespace().collect();
                    if parts.len() != 3 || parts[0] != "IN" || !(parts[1] == "IP4" || parts[1] == "IP6") {
                        return Err(format!("bad c= line {line:?}"));
                    }
                    let addr: IpAddr = parts[2]
                        .split('/')
                        .next()
                        .unwrap()
                        .parse()
                        .map_err(|_| format!("bad c= address in {line:?}"))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sdp.connection = Some(addr),
                    }
                }
                "m" => {
                    let parts: Vec<&str> = v.split_whitespace().collect();
                    if parts.len() < 4 {
                        return Err(format!("bad m= line {line:?}"));
                    }
                    let port: u16 =
                        parts[1].split('/').next().unwrap().parse().map_err(|_| format!("bad m= port in {line:?}"))?;
                    let formats = parts[3..]
                        .iter()
                        .map(|f| f.parse::<u8>().map_err(|_| format!("bad payload type {f:?} in {line:?}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    sdp.media.push(SdpMedia {
                        kind: parts[0].to_string(),
                        port,
                        proto: parts[2].to_string(),
                        formats,
                        ..Default::default()
                    });
                }
                "a" => {
                    let Some(m) = sdp.media.last_mut() else { continue };
                    if let Some(rest) = v.strip_prefix("rtpmap:") {
                        let (pt, enc) = rest.split_once(' ').ok_or_else(|| format!("bad rtpmap {line:?}"))?;
                        let pt: u8 = pt.parse().map_err(|_| format!("bad rtpmap payload type {line:?}"))?;
                        m.rtpmap.insert(pt, enc.trim().to_string());
                    } else if let Some(rest) = v.strip_prefix("fmtp:") {
                        if let Some((pt, params)) = rest.split_once(' ') {
                            if let Ok(pt) = pt.parse::<u8>() {
                                m.fmtp.insert(pt, params.trim().to_string());
                            }
                        }
                    } else {
                        m.attributes.push(v.to_string());
                    }
                }
                _ => {}
            }
        }
        if !saw_v {
            return Err("no v= line".into());
        }
        Ok(sdp)
    }

    pub fn audio(&self) -> Option<&SdpMedia> {
        self.media.iter().find(|m| m.kind == "audio")
    }

    /// Where the audio stream goes: the media-level c= or else the session's.
    pub fn audio_addr(&self) -> Option<SocketAddr> {
        let m = self.audio()?;
        Some(SocketAddr::new(m.connection.or(self.connection)?, m.port))
    }
}

impl SdpMedia {
    /// The payload type whose rtpmap encoding name is `name` (case-insensitive).
    pub fn payload_type_of(&self, name: &str) -> Option<u8> {
        self.rtpmap
            .iter()
            .find(|(_, enc)| enc.split('/').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .map(|(pt, _)| *pt)
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        self.attributes.iter().any(|a| a == name || a.starts_with(&format!("{name}:")))
    }
}

/// An SDP offer for PCMU (0) + telephone-event (101) at `addr`.
pub fn pcmu_offer(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=tester {n} {n} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        n = 1000 + unique(),
        port = addr.port()
    )
}

/// An SDP offer for G.729 only (18) at `addr`.
pub fn g729_offer(addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=tester 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=ptime:20\r\n",
        ip = addr.ip(),
        port = addr.port()
    )
}

// ---------------------------------------------------------------------------
// Raw SIP over UDP.
// ---------------------------------------------------------------------------

/// A new Call-ID, unique across processes and runs.
pub fn new_call_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("vxt-{}-{}-{nanos:x}@127.0.0.1", std::process::id(), unique())
}

/// A new RFC 3261 branch (magic cookie prefix).
pub fn new_branch() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("z9hG4bK-vxt{}x{}x{nanos:x}", std::process::id(), unique())
}

pub fn new_tag() -> String {
    format!("t{}x{}", std::process::id(), unique())
}

/// A hand-written request; [`Request::render`] makes the text with CRLFs and
/// a correct Content-Length (unless one is given in `extra`).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub uri: String,
    /// Where Via / Contact / From point (the sending socket).
    pub local: SocketAddr,
    pub branch: String,
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: Option<String>,
    pub to_uri: String,
    pub cseq: u32,
    /// Method in CSeq (defaults to `method`).
    pub cseq_method: Option<String>,
    pub extra: Vec<String>,
    pub body: Option<(String, String)>,
}

impl Request {
    /// An out-of-dialog request from `local` to the server at `server`.
    pub fn new(method: &str, local: SocketAddr, server: SocketAddr) -> Request {
        Request {
            method: method.to_string(),
            uri: format!("sip:agent@{server}"),
            local,
            branch: new_branch(),
            call_id: new_call_id(),
            from_tag: new_tag(),
            to_tag: None,
            to_uri: format!("sip:agent@{server}"),
            cseq: 1,
            cseq_method: None,
            extra: Vec::new(),
            body: None,
        }
    }

    pub fn sdp(mut self, sdp: String) -> Request {
        self.body = Some(("application/sdp".into(), sdp));
        self
    }

    pub fn header(mut self, line: &str) -> Request {
        self.extra.push(line.to_string());
        self
    }

    /// The same dialog and transaction fields, another method (CANCEL: same
    /// branch and CSeq number; ACK for a non-2xx: the same).
    pub fn sibling(&self, method: &str) -> Request {
        Request {
            method: method.into(),
            cseq_method: None,
            extra: Vec::new(),
            body: None,
            ..self.clone()
        }
    }

    /// A new in-dialog request (new branch, given CSeq, remote tag set).
    pub fn in_dialog(&self, method: &str, cseq: u32, to_tag: &str, uri: Option<&str>) -> Request {
        Request {
            method: method.into(),
            uri: uri.map(str::to_string).unwrap_or_else(|| self.uri.clone()),
            branch: new_branch(),
            to_tag: Some(to_tag.to_string()),
            cseq,
            cseq_method: None,
            extra: Vec::new(),
            body: None,
            ..self.clone()
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        s.push_str(&format!("Via: SIP/2.0/UDP {};branch={};rport\r\n", self.local, self.branch));
        s.push_str("Max-Forwards: 70\r\n");
        s.push_str(&format!("From: \"tester\" <sip:tester@{}>;tag={}\r\n", self.local, self.from_tag));
        match &self.to_tag {
            Some(t) => s.push_str(&format!("To: <{}>;tag={t}\r\n", self.to_uri)),
            None => s.push_str(&format!("To: <{}>\r\n", self.to_uri)),
        }
        s.push_str(&format!("Call-ID: {}\r\n", self.call_id));
        s.push_str(&format!("CSeq: {} {}\r\n", self.cseq, self.cseq_method.as_deref().unwrap_or(&self.method)));
        if self.method != "CANCEL" && self.method != "ACK" {
            s.push_str(&format!("Contact: <sip:tester@{}>\r\n", self.local));
        }
        s.push_str("User-Agent: voxline-tests\r\n");
        for e in &self.extra {
            s.push_str(e);
            s.push_str("\r\n");
        }
        let has_len = self.extra.iter().any(|e| e.to_ascii_lowercase().starts_with("content-length"));
        match &self.body {
            Some((ct, body)) => {
                s.push_str(&format!("Content-Type: {ct}\r\n"));
                if !has_len {
                    s.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                s.push_str("\r\n");
                s.push_str(body);
            }
            None => {
                if !has_len {
                    s.push_str("Content-Length: 0\r\n");
                }
                s.push_str("\r\n");
            }
        }
        s
    }
}

/// A response to a request the server sent us (e.g. 200 for its BYE).
pub fn response_to(req: &SipMessage, code: u16, reason: &str, local_tag: Option<&str>) -> String {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for (k, v) in &req.headers {
        if k.eq_ignore_ascii_case("Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
    }
    let from = req.header("From").unwrap_or_default();
    s.push_str(&format!("From: {from}\r\n"));
    let to = req.header("To").unwrap_or_default();
    match local_tag {
        Some(t) if header_param(to, "tag").is_none() => s.push_str(&format!("To: {to};tag={t}\r\n")),
        _ => s.push_str(&format!("To: {to}\r\n")),
    }
    s.push_str(&format!("Call-ID: {}\r\n", req.call_id().unwrap_or_default()));
    s.push_str(&format!("CSeq: {}\r\n", req.header("CSeq").unwrap_or_default()));
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

/// A received message with its arrival time.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub wall: SystemTime,
    pub from: SocketAddr,
    pub msg: SipMessage,
}

/// A UDP socket for hand-written SIP to the server. Every datagram in and out
/// is logged (shown by [`SipSocket::transcript`] and on test failure).
pub struct SipSocket {
    sock: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    log: Mutex<Vec<String>>,
    started: Instant,
}

impl SipSocket {
    pub fn bind(server: SocketAddr) -> SipSocket {
        let sock = UdpSocket::bind((LOCALHOST, 0)).expect("bind a UDP socket for SIP");
        let local = sock.local_addr().unwrap();
        SipSocket { sock, local, server, log: Mutex::new(Vec::new()), started: Instant::now() }
    }

    /// A request from this socket to the server.
    pub fn request(&self, method: &str) -> Request {
        Request::new(method, self.local, self.server)
    }

    /// Sends text as it is (no line-ending fix-up).
    pub fn send_raw(&self, data: &[u8]) {
        self.log.lock().unwrap().push(format!(
            "[{:8.3}s] >>> {} bytes\n{}",
            self.started.elapsed().as_secs_f64(),
            data.len(),
            String::from_utf8_lossy(data)
        ));
        self.sock.send_to(data, self.server).expect("send a datagram to the server");
    }

    pub fn send(&self, req: &Request) {
        self.send_raw(req.render().as_bytes());
    }

    /// The next datagram from anyone, parsed; `None` on timeout. Unparsable
    /// datagrams are logged and skipped.
    pub fn recv(&self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let (at, wall) = (Instant::now(), SystemTime::now());
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.log.lock().unwrap().push(format!(
                        "[{:8.3}s] <<< {n} bytes from {from}\n{text}",
                        self.started.elapsed().as_secs_f64()
                    ));
                    if let Some(msg) = SipMessage::parse(&text) {
                        return Some(Received { at, wall, from, msg });
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return None
                }
                // A signal (e.g. SIGCHLD from a sipp another test runs) interrupted the wait.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("recv on the SIP socket: {e}"),
            }
        }
    }

    /// Waits for a message satisfying `pred`, dropping others (they stay in the
    /// transcript). `None` on timeout.
    pub fn recv_until(&self, timeout: Duration, mut pred: impl FnMut(&SipMessage) -> bool) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.recv(left)?;
            if pred(&r.msg) {
                return Some(r);
            }
        }
    }

    /// The final (>= 200) response for this CSeq method and Call-ID.
    pub fn final_response(&self, req: &Request, timeout: Duration) -> Option<Received> {
        let method = req.cseq_method.clone().unwrap_or_else(|| req.method.clone());
        self.recv_until(timeout, |m| {
            m.status().is_some_and(|s| s >= 200)
                && m.call_id() == Some(req.call_id.as_str())
                && m.cseq_method().as_deref() == Some(method.as_str())
        })
    }

    /// Everything that arrives within `window`.
    pub fn recv_all(&self, window: Duration) -> Vec<Received> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(r) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            out.push(r);
        }
        out
    }

    pub fn transcript(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for SipSocket {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== raw SIP socket {} <-> {} ===\n{}", self.local, self.server, tail(&self.transcript(), 400));
        }
    }
}

// ---------------------------------------------------------------------------
// sipp.
// ---------------------------------------------------------------------------

/// How to run one sipp call.
#[derive(Clone, Debug)]
pub struct SippCall {
    pub scenario: String,
    /// The server to call; None runs sipp as a UAS (waiting on `local_port`).
    pub target: Option<SocketAddr>,
    /// `-p`: sipp's own SIP port (default: the first free one from 5060 up).
    pub local_port: Option<u16>,
    pub keys: Vec<(String, String)>,
    /// `-d`: the length of a bare `<pause/>` (ms).
    pub pause_ms: Option<u64>,
    /// sipp's own `-timeout` (it fails the run when reached); we kill it 10 s later.
    pub timeout: Duration,
    pub extra: Vec<String>,
}

impl SippCall {
    pub fn new(scenario: &str, target: SocketAddr) -> SippCall {
        SippCall {
            scenario: scenario.to_string(),
            target: Some(target),
            local_port: None,
            keys: Vec::new(),
            pause_ms: None,
            timeout: Duration::from_secs(30),
            extra: Vec::new(),
        }
    }

    /// sipp as the called side, on 127.0.0.1:`port` (harness self-tests).
    pub fn uas(scenario: &str, port: u16) -> SippCall {
        SippCall { target: None, local_port: Some(port), ..SippCall::new(scenario, SocketAddr::new(LOCALHOST, 0)) }
    }

    pub fn key(mut self, k: &str, v: impl ToString) -> SippCall {
        self.keys.push((k.to_string(), v.to_string()));
        self
    }

    /// `rtp_ip` / `rtp_port` keys: the offer's media address.
    pub fn rtp(self, addr: SocketAddr) -> SippCall {
        self.key("rtp_ip", addr.ip()).key("rtp_port", addr.port())
    }

    pub fn pause_ms(mut self, ms: u64) -> SippCall {
        self.pause_ms = Some(ms);
        self
    }

    pub fn timeout(mut self, t: Duration) -> SippCall {
        self.timeout = t;
        self
    }

    pub fn arg(mut self, a: &str) -> SippCall {
        self.extra.push(a.to_string());
        self
    }

    /// The command line (program first).
    pub fn command_line(&self, dir: &Path) -> Vec<String> {
        let f = |name: &str| dir.join(name).display().to_string();
        let mut v: Vec<String> = vec![SIPP.into()];
        if let Some(t) = self.target {
            v.push(t.to_string());
        }
        if let Some(p) = self.local_port {
            v.extend(["-p".into(), p.to_string()]);
        }
        v.extend([
            "-sf".into(),
            scenario_path(&self.scenario).display().to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-s".into(),
            "agent".into(),
            "-m".into(),
            "1".into(),
            "-l".into(),
            "1".into(),
            "-nostdin".into(),
            "-timeout".into(),
            format!("{}s", self.timeout.as_secs().max(1)),
            "-timeout_error".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            f("messages.log"),
            "-trace_err".into(),
            "-error_file".into(),
            f("errors.log"),
            "-trace_logs".into(),
            "-log_file".into(),
            f("actions.log"),
            "-trace_screen".into(),
            "-screen_file".into(),
            f("screen.log"),
        ]);
        if let Some(ms) = self.pause_ms {
            v.extend(["-d".into(), ms.to_string()]);
        }
        for (k, val) in &self.keys {
            v.extend(["-key".into(), k.clone(), val.clone()]);
        }
        v.extend(self.extra.iter().cloned());
        v
    }

    pub fn spawn(self) -> Sipp {
        require_sipp();
        let path = scenario_path(&self.scenario);
        assert!(path.is_file(), "no sipp scenario at {}", path.display());
        let dir = scratch_dir(self.scenario.trim_end_matches(".xml"));
        let cmd = self.command_line(&dir);
        let stdout = File::create(dir.join("stdout.log")).unwrap();
        let stderr = File::create(dir.join("stderr.log")).unwrap();
        let started_wall = SystemTime::now();
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .current_dir(&dir)
            // Message-log time stamps in UTC, so they compare with SystemTime.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.join(" ")));
        let call_id = format!("1-{}@127.0.0.1", child.id());
        Sipp {
            child: Some(child),
            cmd,
            dir,
            call_id,
            started: Instant::now(),
            started_wall,
            hard_limit: self.timeout + Duration::from_secs(10),
        }
    }

    pub fn run(self) -> SippResult {
        self.spawn().wait()
    }
}

/// A running sipp.
pub struct Sipp {
    child: Option<Child>,
    pub cmd: Vec<String>,
    pub dir: PathBuf,
    /// The Call-ID sipp uses for its call (`-cid_str` default `%u-%p@%s`).
    pub call_id: String,
    pub started: Instant,
    pub started_wall: SystemTime,
    hard_limit: Duration,
}

impl Sipp {
    /// Whether it has exited.
    pub fn is_done(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))) | None)
    }

    /// What it has logged so far (message log).
    pub fn messages_so_far(&self) -> Vec<LoggedMessage> {
        parse_message_log(&read_lossy(&self.dir.join("messages.log")))
    }

    /// Waits for it to exit (killing it past its hard limit).
    pub fn wait(mut self) -> SippResult {
        let mut child = self.child.take().unwrap();
        let mut killed = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => {}
                Err(_) => break None,
            }
            if self.started.elapsed() > self.hard_limit {
                let _ = child.kill();
                killed = true;
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let r = |n: &str| read_lossy(&self.dir.join(n));
        SippResult {
            cmd: self.cmd.clone(),
            dir: self.dir.clone(),
            call_id: self.call_id.clone(),
            status,
            killed,
            elapsed: self.started.elapsed(),
            finished: Instant::now(),
            finished_wall: SystemTime::now(),
            stdout: r("stdout.log"),
            stderr: r("stderr.log"),
            message_log: r("messages.log"),
            errors: r("errors.log"),
            actions: r("actions.log"),
            screen: r("screen.log"),
            shown: AtomicBool::new(false),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!(
                    "=== sipp (still running when the test failed): {}\n--- message log ---\n{}",
                    self.cmd.join(" "),
                    tail(&read_lossy(&self.dir.join("messages.log")), 200)
                );
            }
        }
    }
}

/// `sipp -sf tests/sipp/SCENARIO TARGET -key K V ... -m 1`, bounded by `timeout`.
pub fn run_sipp(scenario: &str, target: SocketAddr, keys: &[(&str, &str)], timeout: Duration) -> SippResult {
    let mut call = SippCall::new(scenario, target).timeout(timeout);
    for (k, v) in keys {
        call = call.key(k, v);
    }
    call.run()
}

/// The outcome of one sipp run. Shown in full (Display) by
/// [`SippResult::assert_success`], and on drop when the test is failing.
pub struct SippResult {
    pub cmd: Vec<String>,
    pub dir: PathBuf,
    pub call_id: String,
    /// None if it could not be waited for.
    pub status: Option<ExitStatus>,
    /// Killed by us past the hard limit.
    pub killed: bool,
    pub elapsed: Duration,
    pub finished: Instant,
    pub finished_wall: SystemTime,
    pub stdout: String,
    pub stderr: String,
    pub message_log: String,
    pub errors: String,
    pub actions: String,
    pub screen: String,
    shown: AtomicBool,
}

impl SippResult {
    /// sipp's exit code: 0 all calls passed, 1 some failed, 97 internal
    /// command, 99 normal exit without calls, 255 (-1) fatal error or global
    /// timeout with -timeout_error, 254 (-2) cannot bind.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.code() == Some(0) && !self.killed
    }

    pub fn assert_success(&self, what: &str) {
        if !self.success() {
            self.shown.store(true, Ordering::Relaxed);
            panic!("sipp failed ({what}):\n{self}");
        }
    }

    /// Every message in the message log, in order.
    pub fn messages(&self) -> Vec<LoggedMessage> {
        parse_message_log(&self.message_log)
    }

    pub fn received(&self) -> Vec<LoggedMessage> {
        self.messages().into_iter().filter(|m| m.direction == Direction::Received).collect()
    }

    pub fn sent(&self) -> Vec<LoggedMessage> {
        self.messages().into_iter().filter(|m| m.direction == Direction::Sent).collect()
    }

    /// Received responses with this status code.
    pub fn responses(&self, code: u16) -> Vec<LoggedMessage> {
        self.received().into_iter().filter(|m| m.msg.status() == Some(code)).collect()
    }

    /// Received requests of this method.
    pub fn requests(&self, method: &str) -> Vec<LoggedMessage> {
        self.received().into_iter().filter(|m| m.msg.method() == Some(method)).collect()
    }

    /// Sent requests of this method.
    pub fn sent_requests(&self, method: &str) -> Vec<LoggedMessage> {
        self.sent().into_iter().filter(|m| m.msg.method() == Some(method)).collect()
    }

    /// Marks the output as shown, so that drop does not print it again.
    pub fn mark_shown(&self) {
        self.shown.store(true, Ordering::Relaxed);
    }
}

impl fmt::Display for SippResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "=== sipp: {}", self.cmd.join(" "))?;
        writeln!(
            f,
            "exit: {:?}{} after {:.2}s; logs in {}",
            self.code(),
            if self.killed { " (killed: past the hard limit)" } else { "" },
            self.elapsed.as_secs_f64(),
            self.dir.display()
        )?;
        if !self.errors.trim().is_empty() {
            writeln!(f, "--- sipp errors ---\n{}", tail(&self.errors, 60))?;
        }
        if !self.actions.trim().is_empty() {
            writeln!(f, "--- sipp <log> actions ---\n{}", tail(&self.actions, 30))?;
        }
        if !self.stderr.trim().is_empty() {
            writeln!(f, "--- sipp stderr ---\n{}", tail(&self.stderr, 30))?;
        }
        // The last screen: the scenario with its counters.
        let screen = self.screen.rsplit("------------------------------ Scenario Screen").next().unwrap_or("");
        if !screen.trim().is_empty() {
            writeln!(f, "--- sipp scenario screen ---\n{}", tail(screen, 40))?;
        }
        writeln!(f, "--- sipp message log ---\n{}", tail(&self.message_log, 250))
    }
}

impl Drop for SippResult {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if !self.shown.load(Ordering::Relaxed) {
                eprintln!("{self}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
    /// Logged by sipp as unexpected (no time stamp).
    Unexpected,
}

#[derive(Clone, Debug)]
pub struct LoggedMessage {
    /// From sipp's time stamp (UTC, as the harness runs sipp with TZ=UTC).
    pub wall: Option<SystemTime>,
    pub direction: Direction,
    pub msg: SipMessage,
}

/// Parses sipp's -trace_msg log: blocks that start with a line of 47 dashes
/// and a time stamp, then "UDP message sent (N bytes):" or "UDP message
/// received [N] bytes :", a blank line and the message.
pub fn parse_message_log(text: &str) -> Vec<LoggedMessage> {
    const SEP: &str = "-----------------------------------------------";
    let mut out = Vec::new();
    let mut blocks: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.split('\n') {
        if let Some(rest) = line.strip_prefix(SEP) {
            if !rest.starts_with('-') {
                blocks.push((rest.trim().to_string(), Vec::new()));
                continue;
            }
        }
        if let Some((_, lines)) = blocks.last_mut() {
            lines.push(line);
        }
    }
    for (stamp, lines) in blocks {
        let Some(desc_idx) = lines.iter().position(|l| !l.trim().is_empty()) else { continue };
        let desc = lines[desc_idx];
        let direction = if desc.contains("message sent") {
            Direction::Sent
        } else if desc.contains("message received") {
            Direction::Received
        } else if desc.contains("Unexpected") {
            Direction::Unexpected
        } else {
            continue;
        };
        let body = lines[desc_idx + 1..].join("\n");
        let Some(msg) = SipMessage::parse(body.trim_start_matches(['\r', '\n'])) else { continue };
        // Trailing blank lines of the log belong to no message body.
        let mut msg = msg;
        let trimmed = msg.body.trim_end_matches(['\r', '\n']).len();
        if let Some(len) = msg.content_length() {
            msg.body.truncate(len.max(trimmed).min(msg.body.len()));
        } else {
            msg.body.truncate(trimmed);
        }
        out.push(LoggedMessage { wall: parse_utc_stamp(&stamp), direction, msg });
    }
    out
}

/// "2026-11-25 09:09:41.520399" (UTC) -> SystemTime.
pub fn parse_utc_stamp(s: &str) -> Option<SystemTime> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hh * 3600 + mm * 60;
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64) + Duration::from_secs_f64(ss))
}

// ---------------------------------------------------------------------------
// RTP reception.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Audio: transcription.
// ---------------------------------------------------------------------------

pub const ASR_RATE: u32 = 16_000;
pub const PHONE_RATE: u32 = 8_000;

/// 8 kHz 16-bit PCM -> 16 kHz f32 with voxline's own resampler.
pub fn upsample_8k_to_16k(pcm: &[i16]) -> Vec<f32> {
    let x: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut r = StreamResampler::new(PHONE_RATE, ASR_RATE).expect("resampler 8 -> 16 kHz");
    let mut out = Vec::with_capacity(x.len() * 2 + r.max_output_len(x.len()));
    r.process(&x, &mut out);
    r.flush(&mut out);
    out
}

/// Level (RMS, full scale 1.0) of the noise [`fill_high_band`] adds: about -48 dBFS.
pub const HIGH_BAND_NOISE_RMS: f32 = 0.004;
/// Lower edge of that noise: just above the phone band.
pub const HIGH_BAND_EDGE_HZ: f32 = 4_200.0;

/// Adds low-level white noise above [`HIGH_BAND_EDGE_HZ`] to 16 kHz audio.
///
/// pocketsphinx's en-us model is wideband (mel filters up to 6.8 kHz); audio
/// that went through the 8 kHz phone path has nothing above 4 kHz, so the top
/// filters see near-zero energy, the log-mel features fall far outside what
/// the model was trained on, and the recognizer mostly answers "what what".
/// Filling the empty band with a little noise (as a real wideband microphone
/// would have) puts the features back in range without touching the speech
/// band: on the phone-path renditions of the test sentences the recognizer
/// goes from almost nothing right to most words right (see tests/sip_calls.rs,
/// GREETING). The noise is seeded: the same input gives the same output.
pub fn fill_high_band(x: &[f32]) -> Vec<f32> {
    // White noise (xorshift, uniform in [-1, 1)), high-passed by a windowed-sinc
    // FIR: delta minus a low-pass at the band edge.
    const TAPS: usize = 129;
    let fc = HIGH_BAND_EDGE_HZ / ASR_RATE as f32; // cycles per sample
    let m = (TAPS - 1) as f32 / 2.0;
    let mut h: Vec<f32> = (0..TAPS)
        .map(|n| {
            let t = n as f32 - m;
            let sinc = if t == 0.0 { 2.0 * fc } else { (2.0 * std::f32::consts::PI * fc * t).sin() / (std::f32::consts::PI * t) };
            let w = 0.42 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / (TAPS - 1) as f32).cos()
                + 0.08 * (4.0 * std::f32::consts::PI * n as f32 / (TAPS - 1) as f32).cos();
            -sinc * w
        })
        .collect();
    h[(TAPS - 1) / 2] += 1.0;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let white: Vec<f32> = (0..x.len() + TAPS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let noise: Vec<f32> = (0..x.len()).map(|i| h.iter().enumerate().map(|(k, hk)| hk * white[i + k]).sum()).collect();
    let level = (noise.iter().map(|v| v * v).sum::<f32>() / noise.len().max(1) as f32).sqrt();
    let gain = if level > 0.0 { HIGH_BAND_NOISE_RMS / level } else { 0.0 };
    x.iter().zip(&noise).map(|(s, n)| s + gain * n).collect()
}

/// Silence put around phone audio before it is transcribed.
const ASR_PAD_MS: usize = 300;

/// pocketsphinx's hypothesis for a 16 kHz mono 16-bit WAV (all utterances,
/// joined). `-dither yes` as well: it also helps with band-limited input.
pub fn transcribe_wav(wav: &Path) -> String {
    require_pocketsphinx();
    let out = Command::new(POCKETSPHINX)
        .args(["-infile".as_ref(), wav.as_os_str(), "-logfn".as_ref(), "/dev/null".as_ref()])
        .args(["-dither", "yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {POCKETSPHINX}: {e}"));
    assert!(out.status.success(), "{POCKETSPHINX} failed on {}: {}", wav.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Transcribes decoded 8 kHz phone audio: upsampled to 16 kHz (pocketsphinx's
/// en-us model is wideband) and its empty high band filled ([`fill_high_band`]). The WAV is kept as
/// `dir/name.wav` for a listen when a test fails.
pub fn transcribe_8k(pcm: &[i16], dir: &Path, name: &str) -> String {
    let wav = dir.join(format!("{name}.wav"));
    // The caller heard the line's silence around the words; a recognizer
    // needs it too (a word that starts on the first sample is often lost).
    let pad = vec![0i16; 8000 * ASR_PAD_MS / 1000];
    let padded: Vec<i16> = pad.iter().chain(pcm).chain(&pad).copied().collect();
    let audio = fill_high_band(&upsample_8k_to_16k(&padded));
    write_wav_file(&wav, &audio, ASR_RATE, WavFormat::Pcm16).expect("write a 16 kHz WAV");
    transcribe_wav(&wav)
}

/// Lower-case words, punctuation dropped (apostrophes kept).
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// How many words of `reference` the hypothesis has, in order (the longest
/// common subsequence of the two word lists).
pub fn words_in_order(reference: &str, hypothesis: &str) -> usize {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev = vec![0usize; h.len() + 1];
    for rw in &r {
        let mut cur = vec![0usize; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = if rw == hw { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        prev = cur;
    }
    prev[h.len()]
}

/// The `wanted` words that occur in `hypothesis`.
pub fn words_found(wanted: &[&str], hypothesis: &str) -> Vec<String> {
    let hyp: BTreeSet<String> = words(hypothesis).into_iter().collect();
    wanted.iter().map(|w| w.to_lowercase()).filter(|w| hyp.contains(w)).collect()
}
