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

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calls::CallState;
use super::commands::SipCommand;
use super::control::protocol::MAX_FRAME;
use super::decision::parse_decision;
use super::error::ApiError;
use super::state::Server;

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
        return ApiError::bad_request("invalid_query", "query parameters: decide=true|false, token").into_response();
    };
    let decide = query.decide.unwrap_or(false);
    ws.max_message_size(MAX_FRAME * 4).max_frame_size(MAX_FRAME * 4).on_upgrade(move |socket| run(server, socket, decide)).into_response()
}

/// What the events socket sends besides lifecycle events.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Reply {
    #[serde(rename = "events.attached")]
    Attached { decide: bool, decision_timeout_ms: u64, calls: Vec<CallSummary> },
    #[serde(rename = "error")]
    Error { code: &'static str, message: String },
}

#[derive(Debug, Serialize)]
struct CallSummary {
    call: String,
    from: String,
    to: String,
    state: CallState,
}

fn text(value: &impl Serialize) -> Message {
    Message::Text(Utf8Bytes::from(serde_json::to_string(value).unwrap_or_default()))
}

fn error(code: &'static str, message: impl Into<String>) -> Message {
    text(&Reply::Error { code, message: message.into() })
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
    let calls = server.calls.all().iter().map(|c| CallSummary { call: c.id.clone(), from: c.from.clone(), to: c.to.clone(), state: c.state() }).collect();
    let hello = Reply::Attached { decide, decision_timeout_ms: server.config.decision_timeout.as_millis() as u64, calls };
    if socket.send(text(&hello)).await.is_err() {
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
                Some(e) => Some(text(&e)),
                None => {
                    if lifecycle.overflowed() {
                        let _ = socket.send(error("too_slow", "this socket left too many events unread and is closed")).await;
                    } else {
                        // The server is shutting down (after the drain): say so.
                        let close = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                        let _ = socket.send(Message::Close(Some(close))).await;
                    }
                    break;
                }
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
    match parse_decision(&server.speech, value) {
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
