//! The Twilio ConversationRelay dialect (`?dialect=conversationrelay`):
//! its messages in, voxline's events rendered as its messages out
//! (docs/control.md).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, Out, Session};

/// Messages of Twilio's ConversationRelay protocol an agent sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(super) enum RelayInbound {
    Text {
        token: String,
        #[serde(default)]
        last: bool,
        /// Whether a new turn's text cuts this turn off.
        #[serde(default)]
        preemptible: bool,
        #[serde(default, rename = "lang")]
        _lang: Option<String>,
        #[serde(default, rename = "interruptible")]
        _interruptible: Option<Value>,
    },
    #[serde(rename_all = "camelCase")]
    SendDigits { digits: String },
    #[serde(rename_all = "camelCase")]
    End {
        #[serde(default)]
        handoff_data: Option<String>,
    },
    Play {},
    Language {},
}

/// voxline's event as the dialect's message; `None` when it has no such message.
pub(super) fn render(value: Value) -> Option<Value> {
    Some(match value["type"].as_str().unwrap_or_default() {
        "cleared" => json!({"type": "interrupt", "utteranceUntilInterrupt": value["heard_text"],
            "durationUntilInterruptMs": value["heard_ms"]}),
        "dtmf" => json!({"type": "dtmf", "digit": value["digit"]}),
        "error" => json!({"type": "error", "description": format!("{}: {}",
            value["code"].as_str().unwrap_or_default(), value["message"].as_str().unwrap_or_default())}),
        // Answers to voxline's own messages, which the dialect also accepts.
        "mark" => value,
        _ => return None,
    })
}

impl Session {
    /// A ConversationRelay message, or `None` to read it as voxline's own.
    pub(super) fn handle_relay(&mut self, text: &str) -> Option<Vec<Out>> {
        let value: Value = serde_json::from_str(text).ok()?;
        let kind = value["type"].as_str()?;
        if !matches!(kind, "text" | "sendDigits" | "end" | "play" | "language") {
            return None;
        }
        let message: RelayInbound = match serde_json::from_value(value) {
            Ok(m) => m,
            Err(e) => return Some(vec![error("invalid_message", e.to_string())]),
        };
        Some(match message {
            RelayInbound::Text { token, last, preemptible, .. } => self.speak(token, None, last, last, None, None, preemptible),
            RelayInbound::SendDigits { digits } => self.send_dtmf(&digits, None),
            RelayInbound::End { handoff_data } => {
                tracing::info!(call = %self.call.id, handoff = handoff_data.as_deref().unwrap_or(""), "agent ended the session");
                self.server.hangup(&self.call, "agent");
                vec![]
            }
            RelayInbound::Play {} => vec![error("unsupported", "`play` is not supported: send text")],
            RelayInbound::Language {} => vec![error("unsupported", "`language` is not supported: pick a voice with ?voice=")],
        })
    }

}
