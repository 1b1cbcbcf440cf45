//! The streaming socket's messages, typed: what a client sends (JSON text
//! frames) and what voxline answers (JSON text frames, and the audio as
//! binary frames unless the client asked for base64).

use serde::{Deserialize, Serialize};

/// A client's message (`{"type": "...", ...}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromClient {
    /// The stream's settings; first, and once.
    #[serde(alias = "config")]
    Start(StartFields),
    /// More text; spoken clause by clause as clauses complete.
    Text { text: String },
    /// Speak what is buffered now; `flushed` (with this `id`) follows its audio.
    Flush {
        #[serde(default)]
        id: Option<String>,
    },
    /// Drop the buffered text and stop the audio being synthesized.
    Clear,
    /// Speak what is buffered, send `done`, close.
    Close,
}

/// `start`'s fields; all optional but `format`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StartFields {
    /// A voice of `GET /v1/voices`; the default voice when absent.
    #[serde(default)]
    pub voice: Option<String>,
    /// `ulaw` (8 kHz G.711) or `pcm` (16-bit little-endian mono).
    pub format: String,
    /// `pcm`'s rate (24000 when absent); `ulaw` is 8000.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// `binary` (the default: one binary frame per chunk) or `base64` (`audio` messages).
    #[serde(default)]
    pub encoding: Option<String>,
    /// 0.25..=4.0, as `/v1/audio/speech`'s.
    #[serde(default)]
    pub speed: Option<f32>,
    /// `realtime`, `balanced` or `fidelity`.
    #[serde(default)]
    pub preset: Option<String>,
}

/// How audio travels to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Binary,
    Base64,
}

impl Encoding {
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name.unwrap_or("binary") {
            "binary" => Ok(Self::Binary),
            "base64" => Ok(Self::Base64),
            other => Err(format!("unknown `encoding` \"{other}\": \"binary\" (binary frames) or \"base64\" (`audio` messages)")),
        }
    }
}

/// Where a stream's word timings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    /// The engine's phoneme durations (Piper's duration predictor): each
    /// word from its first phoneme's start to its last phoneme's end.
    Phonemes,
    /// The engine gave none: the clause's audio shared among its words by
    /// their length in characters.
    Clause,
}

/// One word's place in the stream's audio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordTiming {
    pub text: String,
    /// Milliseconds from the stream's first audio sample.
    pub start_ms: f64,
    pub end_ms: f64,
}

/// What voxline sends (`{"type": "...", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToClient {
    /// `start` accepted: the audio that will come.
    Ready { voice: String, format: &'static str, sample_rate: u32, encoding: Encoding },
    /// A chunk of audio (only with `encoding: "base64"`; otherwise a binary frame).
    Audio { audio: String },
    /// Words whose audio has been sent (or is in the audio that follows at once).
    Words { source: TimingSource, words: Vec<WordTiming> },
    /// Everything before the `flush` with this `id` has been sent.
    Flushed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        audio_ms: f64,
    },
    /// `clear` done: nothing of the text before it follows.
    Cleared { audio_ms: f64 },
    /// `close`: every audio sent; the socket closes next.
    Done { audio_ms: f64 },
    /// A message was refused; the socket stays open.
    Error { code: &'static str, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_read_as_documented() {
        let start: FromClient = serde_json::from_str(r#"{"type": "start", "voice": "en_US-joe-medium", "format": "pcm", "sample_rate": 16000, "encoding": "base64"}"#).unwrap();
        let FromClient::Start(fields) = start else { panic!("{start:?}") };
        assert_eq!((fields.format.as_str(), fields.sample_rate, fields.encoding.as_deref()), ("pcm", Some(16000), Some("base64")));
        assert!(matches!(serde_json::from_str(r#"{"type": "config", "format": "ulaw"}"#), Ok(FromClient::Start(_))));
        assert_eq!(serde_json::from_str::<FromClient>(r#"{"type": "text", "text": "Hi, "}"#).unwrap(), FromClient::Text { text: "Hi, ".into() });
        assert_eq!(serde_json::from_str::<FromClient>(r#"{"type": "flush"}"#).unwrap(), FromClient::Flush { id: None });
        assert_eq!(serde_json::from_str::<FromClient>(r#"{"type": "flush", "id": "t1"}"#).unwrap(), FromClient::Flush { id: Some("t1".into()) });
        assert_eq!(serde_json::from_str::<FromClient>(r#"{"type": "clear"}"#).unwrap(), FromClient::Clear);
        assert!(serde_json::from_str::<FromClient>(r#"{"type": "speak", "text": "x"}"#).is_err());
    }

    #[test]
    fn server_messages_are_tagged_by_type() {
        let words = ToClient::Words { source: TimingSource::Phonemes, words: vec![WordTiming { text: "Hi".into(), start_ms: 0.0, end_ms: 250.0 }] };
        assert_eq!(serde_json::to_string(&words).unwrap(), r#"{"type":"words","source":"phonemes","words":[{"text":"Hi","start_ms":0.0,"end_ms":250.0}]}"#);
        let flushed = ToClient::Flushed { id: None, audio_ms: 1.5 };
        assert_eq!(serde_json::to_string(&flushed).unwrap(), r#"{"type":"flushed","audio_ms":1.5}"#);
        let error = ToClient::Error { code: "unknown_voice", message: "no voice".into() };
        assert_eq!(serde_json::to_string(&error).unwrap(), r#"{"type":"error","code":"unknown_voice","message":"no voice"}"#);
    }
}
