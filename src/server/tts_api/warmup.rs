//! `POST /v1/warmup`: loads voices and runs one short synthesis with each,
//! so a framework's first real request pays neither the model load nor a
//! first run.
//!
//! ```text
//! POST /v1/warmup  {"voices": ["en_US-joe-medium"]}   (body optional: the default voice)
//!              ->  200 {"voices": [{"voice", "loaded", "load_ms", "first_chunk_ms", "synth_ms", "audio_ms"}], "ms"}
//! ```

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::request::check_voice;
use crate::server::error::ApiError;
use crate::server::state::Server;
use crate::speech::VoiceWarmup;

/// The request body; absent or `{}` warms the default voice.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupRequest {
    #[serde(default)]
    pub voices: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct Warmed {
    pub voices: Vec<VoiceWarmup>,
    /// The whole request.
    pub ms: f64,
}

/// `POST /v1/warmup`.
pub async fn warmup(State(server): State<Arc<Server>>, body: Bytes) -> Result<Json<Warmed>, ApiError> {
    let request: WarmupRequest = if body.iter().all(u8::is_ascii_whitespace) {
        WarmupRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid_json", format!("{e}: send {{\"voices\": [\"NAME\", ...]}} or nothing")))?
    };
    let known = server.speech.voice_names();
    let voices = request.voices.unwrap_or_else(|| vec![server.speech.voice()]);
    for voice in &voices {
        check_voice(voice, &known)?;
    }
    let t0 = Instant::now();
    let speech = server.speech.clone();
    let warmed = tokio::task::spawn_blocking(move || voices.iter().map(|v| speech.warm_voice(v)).collect::<anyhow::Result<Vec<_>>>())
        .await
        .map_err(|e| ApiError::internal("warmup_failed", e.to_string()))?
        .map_err(|e| ApiError::internal("warmup_failed", format!("{e:#}")))?;
    let ms = (t0.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    Ok(Json(Warmed { voices: warmed, ms }))
}
