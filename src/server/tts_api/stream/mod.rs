//! `GET /v1/tts`: streaming text-to-speech over a WebSocket, for agent
//! frameworks that send an LLM's text as it comes and play the audio as
//! it is synthesized (not paced: audio leaves as fast as it is computed).
//!
//! | step | file |
//! | --- | --- |
//! | the messages, typed | `messages.rs` |
//! | text to clauses, clauses to audio, flush/clear/close, word timings (sans-IO) | `session.rs` |
//! | the socket, the clock and the synthesizer ([`crate::speech::Speech::stream`], the calls' scheduler) | `mod.rs` |
//!
//! Admitted like a call (503 before the upgrade when the synthesizer is
//! full or the server drains); behind the API token (`?token=` works on
//! WebSocket URLs). docs/agents.md has the message schema.

mod messages;
mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use tokio::sync::mpsc::UnboundedReceiver;

use super::request::MAX_INPUT_CHARS;
use super::DRAIN_RETRY_AFTER;
use crate::server::error::ApiError;
use crate::server::state::Server;
use crate::speech::Synthesized;
pub use messages::{FromClient, ToClient};
use session::{Action, Session};

/// Largest message accepted: a `text` of [`MAX_INPUT_CHARS`] characters of
/// up to four bytes, JSON-escaped, with room to spare.
const MAX_MESSAGE: usize = 8 * MAX_INPUT_CHARS + 1024;

/// `GET /v1/tts`.
pub async fn upgrade(State(server): State<Arc<Server>>, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    if server.is_draining() {
        return Err(ApiError::busy("shutting down", Some(DRAIN_RETRY_AFTER)));
    }
    server.speech.admit(server.calls.len()).map_err(|r| ApiError::busy(r.reason, Some(r.retry_after)))?;
    Ok(ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| run(server, socket)))
}

async fn run(server: Arc<Server>, mut socket: WebSocket) {
    let mut session = Session::new(server.speech.voice_names(), server.speech.voice(), server.config.synth.clone());
    // The clause being synthesized (one at a time; dropping it cancels it).
    let mut audio: Option<UnboundedReceiver<Synthesized>> = None;
    let t0 = Instant::now();
    loop {
        while let Some(action) = session.poll_output() {
            let frame = match action {
                Action::Send(message) => Message::Text(Utf8Bytes::from(serde_json::to_string(&message).unwrap_or_default())),
                Action::Binary(bytes) => Message::Binary(bytes.into()),
                Action::Synthesize { text, voice, options, ahead } => {
                    audio = Some(server.speech.stream(&text, Some(&voice), options, ahead));
                    continue;
                }
                Action::Cancel => {
                    audio = None;
                    continue;
                }
                Action::Close { code, reason } => {
                    tracing::debug!(ms = t0.elapsed().as_millis() as u64, %reason, "TTS stream closed");
                    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    return;
                }
            };
            if socket.send(frame).await.is_err() {
                return;
            }
        }
        let deadline = session.deadline();
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => session.on_text(Instant::now(), text.as_str()),
                Some(Ok(Message::Binary(_))) => session.on_binary(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            synthesized = next(&mut audio), if audio.is_some() => match synthesized {
                Some(s) => session.on_audio(Instant::now(), s),
                None => {
                    audio = None;
                    session.on_audio_end(Instant::now());
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => session.poll(Instant::now()),
        }
    }
}

async fn next(audio: &mut Option<UnboundedReceiver<Synthesized>>) -> Option<Synthesized> {
    match audio.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
