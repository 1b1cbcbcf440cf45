//! OpenAI's `POST /v1/audio/speech` body, checked into what voxline will say.

use serde::Deserialize;

use super::format::ResponseFormat;
use crate::server::error::ApiError;
use crate::synth::SynthOptions;

/// OpenAI's limit on `input`, kept so a client written for it behaves alike.
pub const MAX_INPUT_CHARS: usize = 4096;
/// `speed` as OpenAI accepts it.
pub const SPEED_RANGE: std::ops::RangeInclusive<f32> = 0.25..=4.0;

/// The request body as OpenAI documents it. Fields OpenAI has and voxline
/// does not use (`instructions`) are accepted and ignored, as are unknown
/// ones, so newer clients keep working.
#[derive(Debug, Deserialize)]
pub struct SpeechRequest {
    /// Any name (`tts-1`, `gpt-4o-mini-tts`, ...); a preset name
    /// (`realtime`, `balanced`, `fidelity`) picks that preset.
    pub model: String,
    pub input: String,
    pub voice: String,
    #[serde(default)]
    pub response_format: Option<String>,
    #[serde(default)]
    pub speed: Option<f32>,
    /// `audio` (the default) or `sse`, which voxline does not offer.
    #[serde(default)]
    pub stream_format: Option<String>,
}

/// A request voxline can serve.
#[derive(Debug, PartialEq)]
pub struct Speak {
    pub text: String,
    pub voice: String,
    pub format: ResponseFormat,
    pub options: SynthOptions,
}

impl SpeechRequest {
    /// Checks the request against the voices there are; `base` is the
    /// server's synthesis options (`--length-scale` and the like).
    pub fn check(self, voices: &[String], base: &SynthOptions) -> Result<Speak, ApiError> {
        use ApiError as E;
        let chars = self.input.chars().count();
        if self.input.trim().is_empty() {
            return Err(E::bad_request("empty_input", "`input` has nothing to say"));
        }
        if chars > MAX_INPUT_CHARS {
            return Err(E::bad_request("input_too_long", format!("`input` has {chars} characters; at most {MAX_INPUT_CHARS} (split it)")));
        }
        check_voice(&self.voice, voices)?;
        let format = ResponseFormat::parse(self.response_format.as_deref().unwrap_or("mp3")).map_err(|m| E::bad_request("unsupported_format", m))?;
        if self.stream_format.as_deref().is_some_and(|f| f != "audio") {
            return Err(E::bad_request("unsupported_stream_format", "`stream_format` must be \"audio\" (voxline streams raw audio, not SSE)"));
        }
        let options = synth_options(base, Some(&self.model), self.speed)?;
        Ok(Speak { text: self.input, voice: self.voice, format, options })
    }
}

/// `voice` is one of `voices`, or an `unknown_voice` error that lists them.
pub fn check_voice(voice: &str, voices: &[String]) -> Result<(), ApiError> {
    if voices.iter().any(|v| v == voice) {
        return Ok(());
    }
    Err(ApiError::bad_request("unknown_voice", format!("no voice `{voice}`; voices: {}", voices.join(", "))))
}

/// The server's options (`base`) with a request's preset (`model`, when it
/// names one) and `speed` applied.
pub fn synth_options(base: &SynthOptions, model: Option<&str>, speed: Option<f32>) -> Result<SynthOptions, ApiError> {
    let mut options = base.clone();
    if let Some(preset) = model.and_then(crate::synth::Preset::parse) {
        options.preset = Some(preset);
    }
    if let Some(speed) = speed {
        if !SPEED_RANGE.contains(&speed) {
            return Err(ApiError::bad_request("invalid_speed", format!("`speed` is {speed}; it must be within 0.25..=4.0")));
        }
        if speed != 1.0 {
            // Piper's length_scale is the inverse of speed (1.0 is every
            // bundled voice's default).
            options.length_scale = Some(options.length_scale.unwrap_or(1.0) / speed);
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> SpeechRequest {
        serde_json::from_str(body).unwrap()
    }

    fn voices() -> Vec<String> {
        vec!["en_US-joe-medium".into(), "en_GB-alan-low".into()]
    }

    fn code(body: &str) -> &'static str {
        request(body).check(&voices(), &SynthOptions::default()).unwrap_err().code
    }

    #[test]
    fn an_openai_client_request_becomes_what_to_say() {
        let body = r#"{"model": "tts-1", "input": "Hello there.", "voice": "en_US-joe-medium", "response_format": "pcm", "speed": 2.0, "instructions": "cheerful"}"#;
        let speak = request(body).check(&voices(), &SynthOptions::default()).unwrap();
        assert_eq!(speak.text, "Hello there.");
        assert_eq!(speak.format, ResponseFormat::Pcm);
        assert_eq!(speak.options.length_scale, Some(0.5), "twice as fast: half the length");
        assert_eq!(speak.options.preset, None);
        let fidelity = r#"{"model": "fidelity", "input": "Hi.", "voice": "en_GB-alan-low", "response_format": "wav"}"#;
        assert_eq!(request(fidelity).check(&voices(), &SynthOptions::default()).unwrap().options.preset, Some(crate::synth::Preset::Fidelity));
    }

    #[test]
    fn bad_requests_say_what_to_change() {
        assert_eq!(code(r#"{"model": "tts-1", "input": "  ", "voice": "en_US-joe-medium", "response_format": "wav"}"#), "empty_input");
        let long = format!(r#"{{"model": "tts-1", "input": "{}", "voice": "en_US-joe-medium", "response_format": "wav"}}"#, "a".repeat(MAX_INPUT_CHARS + 1));
        assert_eq!(code(&long), "input_too_long");
        let unknown = request(r#"{"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "wav"}"#).check(&voices(), &SynthOptions::default()).unwrap_err();
        assert_eq!(unknown.code, "unknown_voice");
        assert!(unknown.message.contains("en_US-joe-medium, en_GB-alan-low"), "{}", unknown.message);
        assert_eq!(code(r#"{"model": "tts-1", "input": "Hi.", "voice": "en_US-joe-medium"}"#), "unsupported_format", "OpenAI's default is mp3");
        assert_eq!(code(r#"{"model": "tts-1", "input": "Hi.", "voice": "en_US-joe-medium", "response_format": "wav", "speed": 5}"#), "invalid_speed");
        assert_eq!(code(r#"{"model": "tts-1", "input": "Hi.", "voice": "en_US-joe-medium", "response_format": "wav", "stream_format": "sse"}"#), "unsupported_stream_format");
    }
}
