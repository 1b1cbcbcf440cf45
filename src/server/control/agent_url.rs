//! Agent-URL mode: voxline connects out to the agent's WebSocket
//! (`--agent-url`, or a decision's `agent_url`) instead of waiting for the
//! agent to attach to `GET /v1/calls/{id}/control`. The connection runs the
//! same loop as an inbound control socket ([`super::drive`]) in the chosen
//! dialect, so the agent first hears `call.attached` (native) or `setup`
//! (ConversationRelay), then everything an attached agent hears.
//!
//! | the agent's socket | voxline |
//! |---|---|
//! | refused, or dropped (no close, a close code other than 1000) | retries after 0.2, 0.5, 1, 2, 2, ... s; the call stays up |
//! | not connected within the agent timeout of the call's answer or of the drop | hangs up: `call.ended` `agent_unreachable` |
//! | closed with code 1000 | hangs up: `call.ended` `agent_closed` |
//! | the call ends | `call.ended` to the agent, then close |
//!
//! `ws://` or `wss://`: TLS with the Mozilla roots and `--agent-ca`'s
//! (`agent_tls.rs`). `POST /v1/calls/{id}/agent` connects a live call to an
//! agent later, e.g. the next one after a ConversationRelay handoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::dialect::Dialect;
use super::session::Defaults;
use super::transport::{AgentFrame, AgentMessage, ControlTransport, Gone};
use super::{drive, Detached, MAX_FRAME};
use crate::server::calls::{Call, CallState};
use crate::server::error::ApiError;
use crate::server::state::Server;

/// Waits between connection attempts; the last one repeats.
pub const BACKOFF: [Duration; 4] = [Duration::from_millis(200), Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];
/// How long a call waits for its agent by default (`--agent-timeout-ms`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a call's agent is and which dialect it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTarget {
    /// A `ws://` or `wss://` URL.
    pub url: String,
    pub dialect: Dialect,
}

impl AgentTarget {
    /// Checks `url` (`ws://` or `wss://HOST[:PORT]/PATH`).
    pub fn new(url: &str, dialect: Dialect) -> Result<Self, String> {
        let url = url.trim();
        let Some(rest) = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://")) else {
            return Err(format!("`{url}` is not a ws:// or wss:// URL"));
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err(format!("`{url}` has no host"));
        }
        Ok(Self { url: url.to_owned(), dialect })
    }

    /// A decision's `agent_url` and `agent_dialect` fields.
    pub fn read(url: Option<&str>, dialect: Option<&str>) -> Result<Option<Self>, String> {
        match (url, dialect) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err("`agent_dialect` needs an `agent_url`".into()),
            (Some(url), dialect) => Self::new(url, Dialect::from_name(dialect)?).map(Some),
        }
    }

    /// The URL the call connects to: the agent's with `call=ID` added to its query.
    fn url_for(&self, call: &str) -> String {
        let (base, fragment) = self.url.split_once('#').map_or((self.url.as_str(), None), |(b, f)| (b, Some(f)));
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{sep}call={call}");
        if let Some(f) = fragment {
            url.push('#');
            url.push_str(f);
        }
        url
    }
}

/// Agent-URL mode for the server: the default agent and how long a call waits for it.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    /// Every answered call's agent (`--agent-url`) unless its decision names another.
    pub default: Option<AgentTarget>,
    /// A call whose agent is not connected this long after the answer, or
    /// after a drop, is hung up.
    pub timeout: Duration,
    /// TLS for `wss://` agents (the Mozilla roots and `--agent-ca`'s).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        Self { default: None, timeout: DEFAULT_TIMEOUT, tls: super::agent_tls::default_config() }
    }
}

/// Starts connecting an answered call to its agent, if it has one.
pub fn connect(server: &Arc<Server>, call: Arc<Call>) {
    let Some(target) = call.agent().or_else(|| server.config.agent.default.clone()) else { return };
    tokio::spawn(supervise(server.clone(), call, target));
}

/// The body of `POST /v1/calls/{id}/agent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRequest {
    agent_url: String,
    #[serde(default)]
    agent_dialect: Option<String>,
}

#[derive(Debug, Serialize)]
struct Connecting {
    call: String,
    agent_url: String,
}

/// `POST /v1/calls/{id}/agent` `{"agent_url": "ws(s)://...", "agent_dialect"?}`:
/// connects the call to that agent as `--agent-url` would (a ringing call
/// once it is answered). 202; 400 for a bad URL, 404 for no such call.
pub async fn attach(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: Result<Json<AgentRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("invalid_json", e.body_text()))?;
    let bad = |e: String| ApiError::bad_request("invalid_agent_url", e);
    let target = AgentTarget::new(&body.agent_url, Dialect::from_name(body.agent_dialect.as_deref()).map_err(bad)?).map_err(bad)?;
    let call = server.calls.get(&id).ok_or_else(|| ApiError::unknown_call(&id))?;
    call.set_agent(Some(target.clone()));
    match call.state() {
        CallState::Ringing => {}
        CallState::Ended => return Err(ApiError::unknown_call(&id)),
        CallState::Answered | CallState::Active => {
            tracing::info!(call = %call.id, "connecting the call to the agent named by the API");
            tokio::spawn(supervise(server.clone(), call, target.clone()));
        }
    }
    Ok((StatusCode::ACCEPTED, Json(Connecting { call: id, agent_url: target.url })).into_response())
}

/// Keeps the call connected to its agent until the call ends, the agent
/// closes normally, or it stays unreachable past the timeout.
async fn supervise(server: Arc<Server>, call: Arc<Call>, target: AgentTarget) {
    let timeout = server.config.agent.timeout;
    let url = target.url_for(&call.id);
    let mut outage = Instant::now();
    let mut tries = 0usize;
    loop {
        if server.calls.get(&call.id).is_none() {
            return;
        }
        let left = timeout.saturating_sub(outage.elapsed());
        match tokio::time::timeout(left.max(Duration::from_millis(1)), open(&url, &server.config.agent.tls)).await {
            Ok(Ok(socket)) => {
                tracing::info!(call = %call.id, dialect = ?target.dialect, "connected to the agent");
                let (voice, preset) = call.synth();
                match drive(server.clone(), call.clone(), socket, target.dialect, Defaults::new(voice, preset)).await {
                    Detached::CallEnded => return,
                    Detached::HandedOff => {
                        tracing::info!(call = %call.id, "the agent handed the call off; not reconnecting");
                        return;
                    }
                    Detached::AgentClosed => {
                        tracing::info!(call = %call.id, "the agent closed its socket (1000): hanging up");
                        return end(&server, &call, "agent_closed");
                    }
                    Detached::AgentLost => {
                        tracing::warn!(call = %call.id, "lost the agent's socket; reconnecting");
                        (outage, tries) = (Instant::now(), 0);
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!(call = %call.id, error = %e, tries, "agent connection failed"),
            Err(_) => tracing::debug!(call = %call.id, tries, "agent connection timed out"),
        }
        let left = timeout.saturating_sub(outage.elapsed());
        if left.is_zero() {
            tracing::warn!(
                call = %call.id,
                timeout_ms = timeout.as_millis() as u64,
                "the agent's WebSocket could not be reached: hanging up (check --agent-url or the decision's agent_url)"
            );
            return end(&server, &call, "agent_unreachable");
        }
        tokio::time::sleep(BACKOFF[tries.min(BACKOFF.len() - 1)].min(left)).await;
        tries += 1;
    }
}

fn end(server: &Server, call: &Call, cause: &'static str) {
    call.set_end_cause(cause);
    server.hangup(call, cause);
}

async fn open(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<AgentSocket, tokio_tungstenite::tungstenite::Error> {
    let config = WebSocketConfig::default().max_message_size(Some(MAX_FRAME * 4)).max_frame_size(Some(MAX_FRAME * 4));
    let connector = Connector::Rustls(tls.clone());
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector)).await?;
    Ok(AgentSocket(socket))
}

/// The agent's WebSocket, as voxline's client.
struct AgentSocket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl ControlTransport for AgentSocket {
    async fn recv(&mut self) -> Option<AgentFrame> {
        use futures_util::StreamExt as _;
        match self.0.next().await {
            Some(Ok(Message::Text(text))) => Some(AgentFrame::Text(text.as_str().to_owned())),
            Some(Ok(Message::Binary(_))) => Some(AgentFrame::Binary),
            Some(Ok(Message::Close(frame))) => Some(AgentFrame::Closed { normal: frame.is_some_and(|f| f.code == CloseCode::Normal) }),
            None | Some(Err(_)) => None,
            Some(Ok(_)) => Some(AgentFrame::Other),
        }
    }

    async fn send(&mut self, message: AgentMessage) -> Result<(), Gone> {
        use futures_util::SinkExt as _;
        let message = match message {
            AgentMessage::Text(text) => Message::text(text),
            AgentMessage::Binary(bytes) => Message::binary(bytes),
        };
        self.0.send(message).await.map_err(|_| Gone)
    }

    /// Closes with 1000: the call is over.
    async fn close(&mut self) {
        let _ = self.0.close(Some(CloseFrame { code: CloseCode::Normal, reason: "call ended".into() })).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_urls_are_ws_or_wss_with_a_host_and_get_the_call_id() {
        let t = AgentTarget::new("ws://127.0.0.1:9000/agent", Dialect::Native).unwrap();
        assert_eq!(t.url_for("c1"), "ws://127.0.0.1:9000/agent?call=c1");
        let t = AgentTarget::new("ws://agent.example/a?k=v#x", Dialect::Native).unwrap();
        assert_eq!(t.url_for("c1"), "ws://agent.example/a?k=v&call=c1#x");
        let t = AgentTarget::new("wss://agent.example/relay", Dialect::ConversationRelay).unwrap();
        assert_eq!(t.url_for("c1"), "wss://agent.example/relay?call=c1");
        assert!(AgentTarget::new("http://agent.example/", Dialect::Native).unwrap_err().contains("wss://"));
        assert!(AgentTarget::new("wss://", Dialect::Native).is_err());
        assert!(AgentTarget::new("ws:///path", Dialect::Native).is_err());
    }

    #[test]
    fn a_decisions_agent_fields() {
        assert_eq!(AgentTarget::read(None, None), Ok(None));
        let t = AgentTarget::read(Some("ws://a/"), Some("conversationrelay")).unwrap().unwrap();
        assert_eq!(t.dialect, Dialect::ConversationRelay);
        assert_eq!(AgentTarget::read(Some("ws://a/"), None).unwrap().unwrap().dialect, Dialect::Native);
        assert!(AgentTarget::read(None, Some("native")).is_err());
        assert!(AgentTarget::read(Some("ws://a/"), Some("sip")).is_err());
    }
}
