//! The server-wide events socket and the webhook: incoming calls are
//! announced with caller, callee and the INVITE's `X-` headers, and an agent
//! may accept (with its own greeting, voice and preset), reject, or let the
//! default greeting run (see docs/control.md).
//!
//! `GET /v1/events` upgrades to a WebSocket that receives `call.incoming`,
//! `call.answered` and `call.ended` for every call. Connected with
//! `?decide=true`, the socket's agent is expected to decide: calls ring until
//! an `accept` or `reject` arrives or the decision timeout passes. A webhook
//! (`--webhook URL`) is POSTed `call.incoming` and answers with the same
//! decision in its response body (or nothing for the default); later
//! lifecycle events are POSTed to it too.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::control::MAX_FRAME;
use super::sip::{Decision, SipCommand};
use super::Server;
use crate::synth::Preset;

/// An agent's decision, as JSON (a socket message or a webhook response).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum DecisionMessage {
    Accept {
        call: String,
        /// `true`/absent: the configured greeting; `false`: none; a string: that text.
        #[serde(default)]
        greeting: Option<Value>,
        #[serde(default)]
        voice: Option<String>,
        #[serde(default)]
        preset: Option<String>,
    },
    Reject {
        call: String,
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Reads a decision; errors are `(code, message)` for the agent.
fn parse_decision(server: &Server, value: Value) -> Result<(String, Decision), (&'static str, String)> {
    let message: DecisionMessage = serde_json::from_value(value).map_err(|e| ("invalid_message", e.to_string()))?;
    match message {
        DecisionMessage::Accept { call, greeting, voice, preset } => {
            let greeting = super::parse_greeting(greeting)?;
            if let Some(v) = voice.as_deref().filter(|v| !server.speech.has_voice(v)) {
                return Err(("unknown_voice", format!("no voice `{v}`; available: {}", server.speech.voice_names().join(", "))));
            }
            let preset = match preset.as_deref() {
                None => None,
                Some(name) => Some(Preset::from_name(name).map_err(|e| ("invalid_message", e))?),
            };
            Ok((call, Decision::Accept { greeting, voice, preset }))
        }
        DecisionMessage::Reject { call, status, reason } => {
            let status = status.unwrap_or(486);
            if !(400..=699).contains(&status) {
                return Err(("invalid_message", format!("a rejection's status is 400-699, not {status}")));
            }
            Ok((call, Decision::Reject { status, reason }))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    decide: Option<bool>,
    /// The API token (checked by the HTTP layer).
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

pub async fn upgrade(
    State(server): State<Arc<Server>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(query)) = query else {
        return super::http::error(StatusCode::BAD_REQUEST, "invalid_query", "query parameters: decide=true|false, token");
    };
    let decide = query.decide.unwrap_or(false);
    ws.max_message_size(MAX_FRAME * 4).max_frame_size(MAX_FRAME * 4).on_upgrade(move |socket| run(server, socket, decide)).into_response()
}

fn text(value: Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error(code: &str, message: impl Into<String>) -> Message {
    text(json!({"type": "error", "code": code, "message": message.into()}))
}

/// Counts a deciding socket for as long as it lives.
struct Decider(Arc<Server>);

impl Drop for Decider {
    fn drop(&mut self) {
        self.0.deciders.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(server: Arc<Server>, mut socket: WebSocket, decide: bool) {
    let mut lifecycle = server.lifecycle.subscribe();
    let _decider = decide.then(|| {
        server.deciders.fetch_add(1, Ordering::Relaxed);
        Decider(server.clone())
    });
    let calls: Vec<Value> = server.calls.all().iter().map(|c| json!({"call": c.id, "from": c.from, "to": c.to, "state": c.state()})).collect();
    let hello = json!({"type": "events.attached", "decide": decide, "decision_timeout_ms": server.config.decision_timeout.as_millis() as u64, "calls": calls});
    if socket.send(text(hello)).await.is_err() {
        return;
    }
    loop {
        let out = tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => handle(&server, t.as_str()),
                Some(Ok(Message::Binary(_))) => Some(error("unsupported", "binary frames are not accepted")),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            event = lifecycle.recv() => match event {
                Ok(e) => Some(text(e)),
                Err(RecvError::Lagged(n)) => Some(error("events_dropped", format!("{n} events were dropped because this socket read too slowly"))),
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(m) = out {
            if socket.send(m).await.is_err() {
                break;
            }
        }
    }
}

fn handle(server: &Server, frame: &str) -> Option<Message> {
    if frame.len() > MAX_FRAME {
        return Some(error("frame_too_large", format!("a message is at most {MAX_FRAME} bytes")));
    }
    let value: Value = match serde_json::from_str(frame) {
        Ok(v) => v,
        Err(e) => return Some(error("malformed_json", e.to_string())),
    };
    match parse_decision(server, value) {
        Ok((call, decision)) => {
            if server.calls.get(&call).is_none() {
                return Some(error("unknown_call", format!("no call with id `{call}`")));
            }
            let _ = server.sip.send(SipCommand::Decide { call, decision });
            None
        }
        Err((code, message)) => Some(error(code, message)),
    }
}

/// POSTs `call.incoming` to the webhook and applies the decision in its
/// response, if any. Failures and timeouts leave the call to the default.
pub async fn ask_webhook(server: Arc<Server>, call: String, event: Value, timeout: Duration) {
    let Some(hook) = &server.webhook else { return };
    let response = match hook.post(&event, server.config.webhook_token.as_deref(), timeout).await {
        Ok(Some(body)) => body,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(url = hook.url(), call, error = %e, "webhook failed; the call gets the default");
            return;
        }
    };
    // The response names the action; the call is the one announced.
    let mut value = response;
    if let Some(obj) = value.as_object_mut() {
        if let Some(action) = obj.remove("action") {
            obj.insert("type".into(), action);
        }
        obj.insert("call".into(), Value::String(call.clone()));
    }
    match parse_decision(&server, value) {
        Ok((call, decision)) => {
            let _ = server.sip.send(SipCommand::Decide { call, decision });
        }
        Err((code, message)) => tracing::warn!(url = hook.url(), call, code, message, "webhook answered with an invalid decision; the call gets the default"),
    }
}
