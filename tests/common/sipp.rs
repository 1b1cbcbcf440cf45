//! sipp as the calling (or called) peer: one call from a scenario in
//! tests/sipp/, bounded in time, with its message log parsed.

use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::harness::{read_lossy, require_tool, scratch_dir, tail, LOCALHOST};
use super::server::Server;
use super::sip_message::SipMessage;

pub const SIPP: &str = "sipp";

/// The repository's tests/sipp/NAME.
pub fn scenario_path(name: &str) -> PathBuf {
    super::root().join("tests/sipp").join(name)
}

pub fn require_sipp() {
    require_tool(SIPP, "install it with `apt-get install sip-tester` (sipp 3.6, built with RTPSTREAM)");
}

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
    /// `-m` / `-l`: calls in all, and at most this many at once (1 and 1).
    pub calls: (u32, u32),
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
            calls: (1, 1),
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

    /// Places `total` calls, at most `at_once` at a time.
    pub fn calls(mut self, total: u32, at_once: u32) -> SippCall {
        self.calls = (total, at_once);
        self
    }

    pub fn arg(mut self, a: &str) -> SippCall {
        self.extra.push(a.to_string());
        self
    }

    /// `-t t1`: every call over one TCP connection.
    pub fn over_tcp(self) -> SippCall {
        self.arg("-t").arg("t1")
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
            self.calls.0.to_string(),
            "-l".into(),
            self.calls.1.to_string(),
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

/// Calls to `server` over TCP, sent to `target` (the server or a proxy in front of it), media
/// to `rtp`: ten on one connection, five at a time, each hung up by sipp after 1.5 s; then
/// five hung up by the server over the API. Both runs must succeed (`what` names the path);
/// returns them in that order.
pub fn tcp_calls_hung_up_by_either_side(server: &Server, target: SocketAddr, rtp: SocketAddr, what: &str) -> (SippResult, SippResult) {
    let by_caller =
        SippCall::new("uac_greeting.xml", target).over_tcp().rtp(rtp).pause_ms(1500).calls(10, 5).timeout(Duration::from_secs(60)).run();
    by_caller.assert_success(&format!("10 calls {what}, the caller hanging up"));
    let sipp = SippCall::new("uac_remote_hangup.xml", target).over_tcp().rtp(rtp).calls(5, 5).timeout(Duration::from_secs(30)).spawn();
    server.hang_up_active(5, Duration::from_secs(15), &format!("calls {what}"));
    let by_server = sipp.wait();
    by_server.assert_success(&format!("5 calls {what}, voxline hanging up"));
    (by_caller, by_server)
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
    /// The 200 OK for the INVITE in the run's message log.
    pub fn invite_ok(&self) -> SipMessage {
        self.received()
            .into_iter()
            .find(|m| m.msg.status() == Some(200) && m.msg.cseq_method().as_deref() == Some("INVITE"))
            .unwrap_or_else(|| panic!("no 200 for the INVITE in sipp's message log"))
            .msg
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
