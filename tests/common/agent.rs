//! An agent's end of voxline's WebSockets (control and events), over tungstenite.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::sip::Server;

pub struct Agent {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    /// Every event received, with its arrival time.
    pub events: Vec<(Instant, Value)>,
    /// Binary frames (caller audio), with arrival times.
    pub audio: Vec<(Instant, Vec<u8>)>,
}

impl Agent {
    /// Attaches to a call's control socket (voxline's own dialect).
    pub fn attach(server: &Server, call: &str) -> Agent {
        Agent::attach_with(server, call, "", "call.attached")
    }

    /// Attaches with `query` (e.g. `dialect=conversationrelay`), waiting for `hello`.
    pub fn attach_with(server: &Server, call: &str, query: &str, hello: &str) -> Agent {
        let mut agent = Agent::connect(&format!("ws://{}/v1/calls/{call}/control?{query}", server.http));
        agent.wait_for(hello, Duration::from_secs(5));
        agent
    }

    /// Any WebSocket of the server, e.g. `ws://HOST/v1/events`.
    pub fn connect(url: &str) -> Agent {
        let (mut ws, _) = tungstenite::connect(url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        }
        Agent { ws, events: Vec::new(), audio: Vec::new() }
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    pub fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).unwrap();
    }

    /// Reads whatever arrives within `window`.
    pub fn pump(&mut self, window: Duration) {
        let end = Instant::now() + window;
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.events.push((Instant::now(), serde_json::from_str(t.as_str()).expect("events are JSON"))),
                Ok(Message::Binary(b)) => self.audio.push((Instant::now(), b.to_vec())),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return,
                Err(e) => panic!("socket error: {e}"),
            }
        }
    }

    pub fn find(&self, kind: &str) -> Option<&(Instant, Value)> {
        self.events.iter().find(|(_, e)| e["type"] == kind)
    }

    pub fn wait_for(&mut self, kind: &str, timeout: Duration) -> (Instant, Value) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find(kind) {
                return found.clone();
            }
            assert!(Instant::now() < end, "no `{kind}` event within {timeout:?}; got {:#?}", self.events.iter().map(|e| &e.1).collect::<Vec<_>>());
            self.pump(Duration::from_millis(20));
        }
    }

    pub fn all(&self, kind: &str) -> Vec<Value> {
        self.events.iter().filter(|(_, e)| e["type"] == kind).map(|(_, e)| e.clone()).collect()
    }
}

