//! baresip (Debian's `baresip`, 1.0) as a real softphone on loopback: a scratch config
//! directory (config + accounts), no audio device (a 440 Hz sine from `ausine` as the
//! microphone, no player; `sndfile` dumps what it decodes to a WAV file), driven over
//! `ctrl_tcp` (netstring-framed JSON commands; its events come back on the same
//! connection). Bounded twice: baresip's own `-t` quits it, and it is killed on drop;
//! its log (`-s`: every SIP message) is printed when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use voxline_sip::Transport;

use super::harness::{free_tcp_port, free_udp_and_tcp_port, read_lossy, require_tool, scratch_dir, tail, LOCALHOST};
use super::rtp::{rms, FRAME_SAMPLES, VOICED_RMS};

pub const BARESIP: &str = "baresip";

/// How to run one baresip.
#[derive(Clone, Debug)]
pub struct BaresipConfig {
    /// The account's transport: its calls, and its Contact, say `;transport=tcp` over TCP.
    pub transport: Transport,
    /// An outbound proxy every request goes through (the account's `outbound`).
    pub outbound: Option<SocketAddr>,
    /// baresip quits on its own after this long (`-t`).
    pub lifetime: Duration,
}

impl Default for BaresipConfig {
    fn default() -> BaresipConfig {
        BaresipConfig { transport: Transport::Udp, outbound: None, lifetime: Duration::from_secs(60) }
    }
}

impl BaresipConfig {
    /// Over TCP, every request through `proxy`.
    pub fn tcp_via(proxy: SocketAddr) -> BaresipConfig {
        BaresipConfig { transport: Transport::Tcp, outbound: Some(proxy), ..BaresipConfig::default() }
    }

    fn transport_param(&self) -> &'static str {
        match self.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            other => panic!("the baresip harness is set up for UDP and TCP, not {other:?}"),
        }
    }

    /// The `config` file: SIP on `sip` (UDP and TCP), control on `ctrl`, G.711 only, and
    /// loopback as its network (else its SDP offers the host's first address).
    fn config(&self, sip: SocketAddr, ctrl: SocketAddr, dir: &std::path::Path) -> String {
        format!(
            "poll_method epoll\n\
             net_interface 127.0.0.1\n\
             sip_listen {sip}\n\
             call_local_timeout 30\n\
             call_max_calls 4\n\
             audio_source ausine,440\n\
             ausrc_srate 48000\n\
             ausrc_channels 2\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module ausine.so\n\
             module sndfile.so\n\
             module ctrl_tcp.so\n\
             module_app account.so\n\
             module_app menu.so\n\
             ctrl_tcp_listen {ctrl}\n\
             snd_path {}\n",
            dir.display()
        )
    }

    /// The `accounts` file: one account, no registration, answering calls by itself. Call
    /// transfer is left at baresip's default (REFER accepted).
    fn account(&self) -> String {
        let outbound = self.outbound.map(|p| format!(";outbound=\"sip:{p}{};lr\"", self.transport_param())).unwrap_or_default();
        format!("<sip:tester@127.0.0.1{}>;regint=0;answermode=auto;audio_codecs=pcmu{outbound}\n", self.transport_param())
    }
}

/// One event baresip reports on its control connection (`"event": true`).
#[derive(Clone, Debug, Deserialize)]
pub struct BaresipEvent {
    /// `CALL_ESTABLISHED`, `CALL_CLOSED`, `CALL_TRANSFER`, `CALL_RTPESTAB`, `CALL_RTCP`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub peeruri: Option<String>,
    /// The call's SIP Call-ID.
    #[serde(default)]
    pub id: Option<String>,
    /// What the event is about: the close reason, the transfer target, ...
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub rtcp_stats: Option<RtcpStats>,
}

/// `CALL_RTCP`'s statistics (from the RTCP reports).
#[derive(Clone, Debug, Deserialize)]
pub struct RtcpStats {
    pub tx: RtcpDirection,
    pub rx: RtcpDirection,
}

#[derive(Clone, Debug, Deserialize)]
pub struct RtcpDirection {
    /// Packets the sender says it sent.
    pub sent: u64,
    pub lost: i64,
}

/// One SIP message in baresip's trace.
#[derive(Clone, Debug)]
pub struct TracedMessage {
    /// `UDP` or `TCP`.
    pub transport: String,
    pub from: SocketAddr,
    pub to: SocketAddr,
    /// `INVITE sip:... SIP/2.0`, `SIP/2.0 200 OK`, ...
    pub start_line: String,
}

/// A command on the control connection.
#[derive(Serialize)]
struct ControlCommand<'a> {
    command: &'a str,
    params: &'a str,
    token: String,
}

/// What comes back on the control connection: a command's response or an event.
#[derive(Deserialize)]
#[serde(untagged)]
enum ControlMessage {
    Response { response: bool, ok: bool, #[serde(default)] data: String, token: Option<String> },
    Event(BaresipEvent),
}

/// A running baresip.
pub struct Baresip {
    child: Child,
    pub dir: PathBuf,
    /// Its SIP address (UDP and TCP).
    pub sip: SocketAddr,
    ctrl: TcpStream,
    unread: Vec<u8>,
    /// Every event so far, in order.
    pub events: Vec<BaresipEvent>,
    commands: u32,
}

impl Baresip {
    pub fn start(config: BaresipConfig) -> Baresip {
        require_tool(BARESIP, "install it with `scripts/setup.sh --test` (apt: baresip)");
        let dir = scratch_dir("baresip");
        let sip = SocketAddr::new(LOCALHOST, free_udp_and_tcp_port());
        let ctrl_addr = SocketAddr::new(LOCALHOST, free_tcp_port());
        std::fs::write(dir.join("config"), config.config(sip, ctrl_addr, &dir)).expect("write baresip's config");
        std::fs::write(dir.join("accounts"), config.account()).expect("write baresip's accounts");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("create baresip.log");
        let mut child = Command::new(BARESIP)
            .arg("-f")
            .arg(&dir)
            .arg("-s")
            .arg("-t")
            .arg(config.lifetime.as_secs().max(1).to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("run baresip");
        // Ready once its control socket takes a connection.
        let deadline = Instant::now() + Duration::from_secs(10);
        let ctrl = loop {
            if let Ok(stream) = TcpStream::connect(ctrl_addr) {
                break stream;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("baresip exited ({status}) before listening:\n{}", tail(&read_lossy(&dir.join("baresip.log")), 60));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("baresip's control socket {ctrl_addr} did not open within 10 s:\n{}", tail(&read_lossy(&dir.join("baresip.log")), 60));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ctrl.set_read_timeout(Some(Duration::from_millis(20))).expect("set a read timeout");
        Baresip { child, dir, sip, ctrl, unread: Vec::new(), events: Vec::new(), commands: 0 }
    }

    /// Places a call to `uri` (`dial`).
    pub fn dial(&mut self, uri: &str) {
        self.command("dial", uri);
    }

    /// Hangs up the current call (`hangup`).
    pub fn hangup(&mut self) {
        self.command("hangup", "");
    }

    /// Sends a command and waits for its response; panics unless it succeeded.
    fn command(&mut self, command: &str, params: &str) {
        self.commands += 1;
        let token = format!("t{}", self.commands);
        let json = serde_json::to_string(&ControlCommand { command, params, token: token.clone() }).expect("a command encodes");
        self.ctrl.write_all(format!("{}:{json},", json.len()).as_bytes()).expect("write to baresip's control socket");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for message in self.read_messages() {
                match message {
                    ControlMessage::Event(event) => self.events.push(event),
                    ControlMessage::Response { response: true, ok, data, token: Some(t) } if t == token => {
                        assert!(ok, "baresip refused `{command} {params}`: {data}\n{}", self.log_tail());
                        return;
                    }
                    ControlMessage::Response { .. } => {}
                }
            }
            assert!(Instant::now() < deadline, "no response to `{command} {params}` within 5 s\n{}", self.log_tail());
        }
    }

    /// Reads what the control connection has (for up to 20 ms): whole netstrings, decoded.
    fn read_messages(&mut self) -> Vec<ControlMessage> {
        let mut buf = [0u8; 8192];
        match self.ctrl.read(&mut buf) {
            Ok(0) => panic!("baresip closed its control connection\n{}", self.log_tail()),
            Ok(n) => self.unread.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading baresip's control connection: {e}"),
        }
        let mut out = Vec::new();
        // A netstring: LEN ":" DATA ",".
        while let Some(colon) = self.unread.iter().position(|&b| b == b':') {
            let len: usize = std::str::from_utf8(&self.unread[..colon]).ok().and_then(|s| s.parse().ok()).expect("a netstring length");
            if self.unread.len() < colon + 1 + len + 1 {
                break;
            }
            let data: Vec<u8> = self.unread.drain(..colon + 1 + len + 1).skip(colon + 1).take(len).collect();
            let message = serde_json::from_slice(&data).unwrap_or_else(|e| panic!("baresip sent {} ({e})", String::from_utf8_lossy(&data)));
            out.push(message);
        }
        out
    }

    /// Waits (bounded) for an event that `pred` accepts; returns the first such.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&BaresipEvent) -> bool) -> BaresipEvent {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.events.iter().find(|e| pred(e)) {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "baresip reported no {what} within {timeout:?}; its events: {:#?}\n{}",
                self.events.iter().map(|e| (&e.kind, &e.peeruri, &e.param)).collect::<Vec<_>>(),
                self.log_tail()
            );
            let messages = self.read_messages();
            self.events.extend(messages.into_iter().filter_map(|m| match m {
                ControlMessage::Event(e) => Some(e),
                ControlMessage::Response { .. } => None,
            }));
        }
    }

    /// Waits for the first event of `kind`.
    pub fn wait_for_kind(&mut self, kind: &str, timeout: Duration) -> BaresipEvent {
        self.wait_for(kind, timeout, |e| e.kind == kind)
    }

    /// The audio baresip decoded from each call so far (`sndfile`'s dumps, 8 kHz mono), one
    /// recording per call in the order they started. A call's file is complete once the call
    /// has closed.
    pub fn heard(&self) -> Vec<Vec<i16>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("read baresip's directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("dump-") && n.ends_with("-dec.wav")))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| {
                let mut wav = hound::WavReader::open(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                wav.samples::<i16>().map_while(Result::ok).collect()
            })
            .collect()
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("baresip.log"))
    }

    /// The SIP messages baresip sent and received so far, from its trace (`-s`):
    /// (transport, from, to, start line).
    pub fn sip_trace(&self) -> Vec<TracedMessage> {
        let log = strip_colours(&self.log());
        let lines: Vec<&str> = log.lines().collect();
        lines
            .windows(2)
            .filter_map(|pair| {
                let (transport, route) = pair[0].trim().split_once(' ')?;
                if transport != "UDP" && transport != "TCP" {
                    return None;
                }
                let (from, to) = route.split_once(" -> ")?;
                Some(TracedMessage { transport: transport.to_owned(), from: from.parse().ok()?, to: to.trim().parse().ok()?, start_line: pair[1].trim().to_owned() })
            })
            .collect()
    }

    fn log_tail(&self) -> String {
        format!("--- baresip log ({}) ---\n{}", self.dir.display(), tail(&strip_colours(&self.log()), 200))
    }
}

/// Milliseconds of voiced 20 ms frames (RMS above the RTP analysis' threshold) in 8 kHz audio.
pub fn voiced_ms(pcm: &[i16]) -> usize {
    pcm.chunks(FRAME_SAMPLES).filter(|f| rms(f) > VOICED_RMS).count() * 20
}

/// baresip's log without its terminal colour codes.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("=== baresip\n{}", self.log_tail());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
