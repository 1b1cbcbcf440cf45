//! The HTTP API: list calls, speak into one, hang one up.
//!
//! ```text
//! GET    /healthz                   "ok" (liveness)
//! GET    /metrics                   Prometheus text format (behind the API token)
//! GET    /readyz                    200 "ready", or 503 "draining" after SIGTERM/SIGINT
//! GET    /calls                     [CallInfo]
//! GET    /calls/{id}                CallInfo
//! POST   /calls/{id}/speak          {"text": "..."}  -> 202 {"utterance": N}
//! POST   /calls/{id}/hangup         -> 202
//! DELETE /calls/{id}                same as hangup
//! GET    /calls/{id}/caller-audio   the caller's last 10 s as a 16-bit 8 kHz WAV
//! POST   /v1/audio/speech           OpenAI-compatible TTS, streamed (see `tts_api`)
//! GET    /v1/tts                    streaming TTS WebSocket (see `tts_api::stream`)
//! POST   /v1/warmup                 load and run voices once (see `tts_api::warmup`)
//! GET    /v1/twilio/media-stream    Twilio Media Streams WebSocket (see `twilio`)
//! ```
//! Errors are JSON `{"error": {"code": "...", "message": "..."}}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::calls::Call;
use super::error::ApiError;
use super::state::Server;
use crate::synth::MAX_REQUEST_CHARS;

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 64 * 1024;

pub fn router(server: Arc<Server>) -> Router {
    let protected = Router::new()
        .route("/calls", get(list))
        .route("/calls/{id}", get(show).delete(hangup))
        .route("/calls/{id}/speak", post(speak))
        .route("/calls/{id}/hangup", post(hangup))
        .route("/calls/{id}/caller-audio", get(caller_audio))
        .route("/v1/calls", post(super::outbound::place))
        .route("/v1/trunks", get(super::trunks::list))
        .route("/v1/calls/{id}/control", get(super::control::upgrade))
        .route("/v1/calls/{id}/agent", post(super::control::agent_url::attach))
        .route("/v1/events", get(super::events::upgrade))
        .route("/v1/webrtc/offer", post(super::webrtc::offer))
        .route("/v1/voices", get(voices))
        .route("/v1/audio/speech", post(super::tts_api::speech))
        .route("/v1/tts", get(super::tts_api::stream::upgrade))
        .route("/v1/warmup", post(super::tts_api::warmup::warmup))
        .route("/v1/twilio/media-stream", get(super::twilio::upgrade))
        .route("/v1/capacity", get(capacity))
        .route("/metrics", get(prometheus_metrics))
        .layer(axum::middleware::from_fn_with_state(server.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/", get(super::web::index))
        .route("/app.js", get(super::web::app_js)).merge(protected).layer(DefaultBodyLimit::max(MAX_BODY)).with_state(server)
}

/// With `--api-token` set, every route but `/healthz` needs
/// `Authorization: Bearer TOKEN`, or `?token=TOKEN` (browsers cannot set
/// headers on a WebSocket).
async fn authorize(State(server): State<Arc<Server>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let upgrade = is_websocket_upgrade(request.headers());
    // A web page must not drive the sockets of a server it was not served by
    // (browsers send Origin; other clients do not).
    if upgrade && !origin_allowed(request.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", "WebSocket from another site's page").into_response();
    }
    let Some(expected) = server.config.api_token.as_deref() else { return next.run(request).await };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // `?token=` only where a header cannot be set (browsers' WebSockets): in
    // other URLs it would leak into logs and histories.
    let query = upgrade.then(|| request.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))).flatten();
    let given = bearer.or(query);
    if given.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes())) {
        return next.run(request).await;
    }
    let message = "missing or wrong bearer token (Authorization: Bearer ..., or ?token=... on a WebSocket URL)";
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

fn is_websocket_upgrade(headers: &header::HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// No `Origin` (not a browser), or one whose host is the host the request
/// was sent to (the demo page, or an agent's page served from here).
fn origin_allowed(headers: &header::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// `GET /readyz`: 200 while new calls are taken, 503 while draining (a load
/// balancer stops sending calls here); `/healthz` stays the liveness probe.
async fn readyz(State(server): State<Arc<Server>>) -> (StatusCode, &'static str) {
    if server.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> header::HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_bytes(k.as_bytes()).unwrap(), header::HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn websocket_origins_must_be_the_servers_own_host() {
        assert!(origin_allowed(&headers(&[("host", "127.0.0.1:8080")])), "no Origin: not a browser");
        assert!(origin_allowed(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(origin_allowed(&headers(&[("host", "voice.example.com"), ("origin", "https://voice.example.com")])));
        assert!(!origin_allowed(&headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")])));
        assert!(!origin_allowed(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        assert!(is_websocket_upgrade(&headers(&[("upgrade", "WebSocket")])));
        assert!(!is_websocket_upgrade(&headers(&[])));
    }
}

/// `GET /v1/voices`: the voices and presets a call may pick.
#[derive(Serialize)]
struct Voices {
    default: String,
    voices: Vec<String>,
    presets: Vec<&'static str>,
}

async fn voices(State(server): State<Arc<Server>>) -> Json<Voices> {
    let presets = crate::synth::Preset::ALL.iter().map(|p| p.name()).collect();
    Json(Voices { default: server.speech.voice(), voices: server.speech.voice_names(), presets })
}

/// `202` to `POST /calls/{id}/speak`.
#[derive(Serialize)]
struct Queued {
    utterance: crate::media::UtteranceId,
}

/// `202` to a hangup.
#[derive(Serialize)]
struct HangingUp {
    hangup: String,
}

fn find(server: &Server, id: &str) -> Result<Arc<Call>, ApiError> {
    server.calls.get(id).ok_or_else(|| ApiError::unknown_call(id))
}

async fn list(State(server): State<Arc<Server>>) -> Response {
    Json(server.calls.all().iter().map(|c| c.info()).collect::<Vec<_>>()).into_response()
}

async fn show(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Result<Json<super::calls::CallInfo>, ApiError> {
    Ok(Json(find(&server, &id)?.info()))
}

/// `GET /metrics`: Prometheus text exposition (docs/configuration.md, "Metrics").
async fn prometheus_metrics(State(server): State<Arc<Server>>) -> Response {
    let m = crate::metrics::metrics();
    for transport in ["sip", "webrtc", "twilio"] {
        let n = server.calls.all().iter().filter(|c| c.transport() == transport).count();
        m.calls_active.with_label_values(&[transport]).set(n as i64);
    }
    m.synthesis_queue.set(server.speech.capacity(server.calls.len()).queue as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()).into_response()
}

/// The synthesizer's load, headroom and queue (see docs/configuration.md).
async fn capacity(State(server): State<Arc<Server>>) -> Json<crate::speech::Capacity> {
    Json(server.speech.capacity(server.calls.len()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpeakBody {
    text: String,
}

async fn speak(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: Result<Json<SpeakBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let call = find(&server, &id)?;
    let Json(body) = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let chars = body.text.chars().count();
    if body.text.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "empty_text", "`text` has nothing to say"));
    }
    if chars > MAX_REQUEST_CHARS {
        let message = format!("`text` has {chars} characters; at most {MAX_REQUEST_CHARS}");
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "text_too_long", message));
    }
    let token = call.cancel_token();
    let utterance = server.speech.speak(&call.media, &body.text, None, server.config.synth.clone(), token);
    Ok((StatusCode::ACCEPTED, Json(Queued { utterance })).into_response())
}

async fn hangup(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let call = find(&server, &id)?;
    server.hangup(&call, "api");
    Ok((StatusCode::ACCEPTED, Json(HangingUp { hangup: id })).into_response())
}

async fn caller_audio(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let call = find(&server, &id)?;
    let samples: Vec<f32> = call.media.caller_audio().into_iter().map(crate::audio::i16_to_sample).collect();
    let mut wav = Vec::new();
    crate::audio::write_wav(&mut wav, &samples, crate::media::RATE, crate::audio::WavFormat::Pcm16)
        .map_err(|e| ApiError::internal("internal", e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}
