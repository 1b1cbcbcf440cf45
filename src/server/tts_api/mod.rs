//! A text-to-speech API for agent frameworks, compatible with OpenAI's:
//!
//! ```text
//! POST /v1/audio/speech  {"model": "...", "input": "...", "voice": "en_US-joe-medium",
//!                         "response_format": "wav" | "pcm" | "ulaw", "speed": 1.0}
//!                     -> 200, the audio streamed (chunked) as it is synthesized
//! ```
//!
//! | step | file |
//! | --- | --- |
//! | the body, checked: voice, input, format, speed | `request.rs` |
//! | admitted like a call (503 when the synthesizer is full or draining) | `mod.rs` |
//! | synthesized by the calls' workers ([`crate::speech::Speech::stream`]) | `src/speech/sink.rs` |
//! | each chunk encoded as it arrives and sent | `format.rs`, [`SpeechBody`] |
//!
//! The response starts with the first synthesized chunk (so a failure to
//! start is still an error status); a client that goes away cancels the
//! synthesis. Behind the API token like every other route.
//!
//! Beside it, for clients that stream text in: `GET /v1/tts`, a WebSocket
//! (`stream/`: text in clause by clause, audio and word timings out), and
//! `POST /v1/warmup` (`warmup.rs`: voices loaded and run once).

mod format;
mod request;
pub mod stream;
pub mod warmup;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::state::Server;
use crate::speech::Synthesized;
pub use format::{ResponseFormat, PCM_RATE, PCM_RATES};
use format::Encoder;
pub use request::{SpeechRequest, MAX_INPUT_CHARS};

/// What a refused request is asked to wait before trying again while the server drains.
const DRAIN_RETRY_AFTER: Duration = Duration::from_secs(5);

/// `POST /v1/audio/speech`.
pub async fn speech(State(server): State<Arc<Server>>, body: Result<Json<SpeechRequest>, JsonRejection>) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| {
        ApiError::bad_request("invalid_json", format!("{}: send {{\"model\", \"input\", \"voice\", \"response_format\"}}", e.body_text()))
    })?;
    let speak = request.check(&server.speech.voice_names(), &server.config.synth)?;
    if server.is_draining() {
        return Err(ApiError::busy("shutting down", Some(DRAIN_RETRY_AFTER)));
    }
    server.speech.admit(server.calls.len()).map_err(|r| ApiError::busy(r.reason, Some(r.retry_after)))?;
    let t0 = Instant::now();
    let mut audio = server.speech.stream(&speak.text, Some(&speak.voice), speak.options, Duration::ZERO);
    let first = match audio.recv().await {
        Some(Synthesized::Chunk(chunk)) => chunk,
        Some(Synthesized::Failed(message)) => return Err(ApiError::internal("synthesis_failed", message)),
        None => return Err(ApiError::internal("synthesis_failed", "the synthesizer produced no audio")),
    };
    tracing::debug!(chars = speak.text.len(), voice = %speak.voice, first_chunk_ms = t0.elapsed().as_millis() as u64, "speech API: first chunk");
    let mut encoder = Encoder::new(speak.format, first.sample_rate).map_err(|e| ApiError::internal("synthesis_failed", e.to_string()))?;
    let head = Bytes::from(encoder.encode(&first));
    let rest = (!first.last).then_some(audio);
    let body = SpeechBody { head: Some(head), audio: rest, encoder };
    Ok(([(header::CONTENT_TYPE, speak.format.content_type())], Body::new(body)).into_response())
}

/// The response body: each chunk encoded as the workers hand it over.
/// Dropping it (the client went away) drops the receiver, which cancels
/// the synthesis.
pub struct SpeechBody {
    head: Option<Bytes>,
    audio: Option<mpsc::UnboundedReceiver<Synthesized>>,
    encoder: Encoder,
}

impl hyper::body::Body for SpeechBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        loop {
            let Some(audio) = self.audio.as_mut() else { return Poll::Ready(None) };
            match audio.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    self.audio = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Synthesized::Failed(message))) => {
                    self.audio = None;
                    // Breaks the chunked response off: the client sees it incomplete.
                    return Poll::Ready(Some(Err(std::io::Error::other(message))));
                }
                Poll::Ready(Some(Synthesized::Chunk(chunk))) => {
                    let bytes = self.encoder.encode(&chunk);
                    if chunk.last {
                        self.audio = None;
                    }
                    if !bytes.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))));
                    }
                }
            }
        }
    }
}
