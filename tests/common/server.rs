//! The server under test: `voxline serve` on loopback ports the OS picks, and
//! its HTTP API (GET /calls, speak, hangup).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::{read_lossy, scratch_dir, tail};
use super::http::{http_get, http_post, HttpResponse};

/// How long `voxline serve` may take to print its ready line (voice load).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

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

    /// Hangs up `n` calls over the API as each becomes active; fails when fewer than `n`
    /// became active `within` (`what` names them). Returns their ids.
    pub fn hang_up_active(&self, n: usize, within: Duration, what: &str) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut hung_up: Vec<String> = Vec::new();
        while hung_up.len() < n {
            assert!(Instant::now() < deadline, "only {} of {n} {what} became active: {:?}", hung_up.len(), self.calls());
            let active: Vec<_> = self.calls().into_iter().filter(|c| c.state == "active" && !hung_up.contains(&c.id)).collect();
            for call in active {
                let r = self.hangup(&call.id);
                assert!(r.is_success(), "hangup {} -> {} {}", call.id, r.status, r.body);
                hung_up.push(call.id);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        hung_up
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

impl Server {
    /// Sends `signal` (e.g. `TERM`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.child.id());
    }

    /// Waits (bounded) for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
