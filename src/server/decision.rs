//! An agent's decision on a ringing call, from the events socket or the
//! webhook's answer (docs/control.md), and the greeting field both use.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use super::commands::{Decision, SipCommand};
use super::control::AgentTarget;
use super::lifecycle::LifecycleEvent;
use super::webhook::Webhook;
use crate::speech::Speech;
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
        /// Agent-URL mode for this call: voxline connects to this `ws://` URL.
        #[serde(default)]
        agent_url: Option<String>,
        /// `native` (default) or `conversationrelay`.
        #[serde(default)]
        agent_dialect: Option<String>,
    },
    Reject {
        call: String,
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A decision an agent may not make, as `(code, message)`.
pub type Invalid = (&'static str, String);

/// How an agent asked a call to start: its greeting, voice and preset
/// (a decision's `accept`, a WebRTC offer, a call placed with `POST /v1/calls`),
/// and the agent voxline connects to (a decision's `agent_url`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallChoices {
    /// `None`: the configured greeting; `Some("")`: none; else that text.
    pub greeting: Option<String>,
    pub voice: Option<String>,
    pub preset: Option<Preset>,
    /// `None`: the server's `--agent-url`, if any.
    pub agent: Option<AgentTarget>,
}

impl CallChoices {
    /// Reads the three fields as JSON gave them; an unknown voice or preset,
    /// or a bad greeting, is an error naming what is available.
    pub fn read(speech: &Speech, greeting: Option<Value>, voice: Option<String>, preset: Option<&str>) -> Result<Self, Invalid> {
        let greeting = parse_greeting(greeting)?;
        if let Some(v) = voice.as_deref().filter(|v| !speech.has_voice(v)) {
            return Err(("unknown_voice", format!("no voice `{v}`; available: {}", speech.voice_names().join(", "))));
        }
        let preset = preset.map(Preset::from_name).transpose().map_err(|e| ("invalid_message", e))?;
        Ok(Self { greeting, voice, preset, agent: None })
    }

    /// Adds the agent a decision named (`agent_url`, `agent_dialect`).
    pub fn with_agent(self, url: Option<&str>, dialect: Option<&str>) -> Result<Self, Invalid> {
        let agent = AgentTarget::read(url, dialect).map_err(|e| ("invalid_message", e))?;
        Ok(Self { agent, ..self })
    }
}

/// Reads a decision for the call it names.
pub fn parse_decision(speech: &Speech, value: Value) -> Result<(String, Decision), Invalid> {
    let message: DecisionMessage = serde_json::from_value(value).map_err(|e| ("invalid_message", e.to_string()))?;
    match message {
        DecisionMessage::Accept { call, greeting, voice, preset, agent_url, agent_dialect } => {
            let choices = CallChoices::read(speech, greeting, voice, preset.as_deref())?;
            let CallChoices { greeting, voice, preset, agent } = choices.with_agent(agent_url.as_deref(), agent_dialect.as_deref())?;
            Ok((call, Decision::Accept { greeting, voice, preset, agent }))
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

/// An agent's `greeting` field (call decisions, WebRTC offers): absent or
/// `true` is `None` (the configured greeting), `false` is `Some("")` (none),
/// a string is that text.
pub fn parse_greeting(value: Option<Value>) -> Result<Option<String>, Invalid> {
    match value {
        None | Some(Value::Bool(true)) | Some(Value::Null) => Ok(None),
        Some(Value::Bool(false)) => Ok(Some(String::new())),
        Some(Value::String(text)) if text.chars().count() <= crate::synth::MAX_REQUEST_CHARS => Ok(Some(text)),
        Some(Value::String(_)) => Err(("text_too_long", "the greeting is too long".into())),
        Some(other) => Err(("invalid_message", format!("`greeting` is true, false or a text, not {other}"))),
    }
}

/// POSTs `call.incoming` to the webhook and hands the decision in its
/// response, if any, to the SIP task. Failures and timeouts leave the call
/// to the default.
pub async fn ask_webhook(
    hook: &Webhook,
    token: Option<&str>,
    speech: &Speech,
    sip: &mpsc::UnboundedSender<SipCommand>,
    event: &LifecycleEvent,
    timeout: Duration,
) {
    let LifecycleEvent::Incoming { call, .. } = event else { return };
    let response = match hook.post(event, token, timeout).await {
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
    match parse_decision(speech, value) {
        Ok((call, decision)) => {
            let _ = sip.send(SipCommand::Decide { call, decision });
        }
        Err((code, message)) => {
            tracing::warn!(url = hook.url(), call, code, message, "webhook answered with an invalid decision; the call gets the default")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn greeting_true_false_text_and_nonsense() {
        assert_eq!(parse_greeting(None), Ok(None));
        assert_eq!(parse_greeting(Some(json!(true))), Ok(None));
        assert_eq!(parse_greeting(Some(json!(false))), Ok(Some(String::new())));
        assert_eq!(parse_greeting(Some(json!("Hi."))), Ok(Some("Hi.".into())));
        assert_eq!(parse_greeting(Some(json!(3))).unwrap_err().0, "invalid_message");
    }

    #[test]
    fn an_accept_may_name_the_agent_to_connect_to() {
        let message: DecisionMessage =
            serde_json::from_value(json!({"type": "accept", "call": "c1", "agent_url": "ws://127.0.0.1:9/a", "agent_dialect": "conversationrelay"})).unwrap();
        let DecisionMessage::Accept { agent_url, agent_dialect, .. } = message else { panic!("an accept") };
        let choices = CallChoices::default().with_agent(agent_url.as_deref(), agent_dialect.as_deref()).unwrap();
        let agent = choices.agent.expect("an agent");
        assert_eq!((agent.url.as_str(), agent.dialect), ("ws://127.0.0.1:9/a", crate::server::control::Dialect::ConversationRelay));
        assert_eq!(CallChoices::default().with_agent(None, None).unwrap().agent, None);
        let wss = CallChoices::default().with_agent(Some("wss://agent.example/"), None).unwrap().agent.expect("a wss agent");
        assert_eq!(wss.url, "wss://agent.example/");
        let (code, message) = CallChoices::default().with_agent(Some("http://agent.example/"), None).unwrap_err();
        assert_eq!(code, "invalid_message");
        assert!(message.contains("ws://"), "{message}");
    }
}
