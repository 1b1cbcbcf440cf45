//! The Twilio ConversationRelay dialect (`?dialect=conversationrelay`):
//! its messages in, voxline's events rendered as its messages out
//! (docs/control.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::protocol::{CallEvent, Interruptible, Request, SpeakRequest};
use super::relay_setup::{self, CallFacts};

/// Messages of Twilio's ConversationRelay protocol an agent sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum RelayInbound {
    Text {
        token: String,
        #[serde(default)]
        last: bool,
        /// Whether a new turn's text cuts this turn off.
        #[serde(default)]
        preemptible: bool,
        #[serde(default, rename = "lang")]
        _lang: Option<String>,
        /// What of the caller's stops this turn's speech (Twilio's names or a boolean).
        #[serde(default)]
        interruptible: Option<Value>,
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

/// The dialect's messages to the agent.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RelayOutbound {
    #[serde(rename_all = "camelCase")]
    Setup {
        session_id: String,
        call_sid: String,
        parent_call_sid: &'static str,
        account_sid: &'static str,
        from: String,
        to: String,
        forwarded_from: &'static str,
        caller_name: String,
        direction: &'static str,
        call_type: &'static str,
        call_status: &'static str,
        custom_parameters: BTreeMap<String, String>,
    },
    #[serde(rename_all = "camelCase")]
    Interrupt { utterance_until_interrupt: String, duration_until_interrupt_ms: u64 },
    Dtmf { digit: String },
    Error { description: String },
    /// Answers voxline's own `mark`, which the dialect also accepts.
    Mark { name: String },
}

/// A ConversationRelay message as a request; `None` when the frame is not
/// one of the dialect's (it is then read as voxline's own).
pub fn parse(frame: &str) -> Option<Result<Request, CallEvent>> {
    let value: Value = serde_json::from_str(frame).ok()?;
    let kind = value["type"].as_str()?;
    if !matches!(kind, "text" | "sendDigits" | "end" | "play" | "language") {
        return None;
    }
    let message: RelayInbound = match serde_json::from_value(value) {
        Ok(m) => m,
        Err(e) => return Some(Err(CallEvent::error("invalid_message", e.to_string()))),
    };
    Some(match message {
        RelayInbound::Text { token, last, preemptible, interruptible, .. } => {
            let interruptible = match interruptible.as_ref().map(Interruptible::from_value).transpose() {
                Ok(i) => i,
                Err(e) => return Some(Err(CallEvent::error("invalid_message", e))),
            };
            Ok(Request::Speak(SpeakRequest { text: token, flush: last, last, preemptible, interruptible, ..Default::default() }))
        }
        RelayInbound::SendDigits { digits } => Ok(Request::SendDtmf { digits, duration_ms: None, method: Default::default() }),
        RelayInbound::End { handoff_data } => Ok(Request::End { handoff_data }),
        RelayInbound::Play {} => Err(CallEvent::error("unsupported", "`play` is not supported: send text")),
        RelayInbound::Language {} => Err(CallEvent::error("unsupported", "`language` is not supported: pick a voice with ?voice=")),
    })
}

/// voxline's event as the dialect's message; `None` when it has no such message.
pub fn render(event: &CallEvent) -> Option<RelayOutbound> {
    Some(match event {
        CallEvent::Attached { call, from, to, headers, transport, direction, twilio_call_sid, .. } => relay_setup::setup(CallFacts {
            call,
            from,
            to,
            headers,
            transport,
            direction: *direction,
            twilio_call_sid: twilio_call_sid.as_deref(),
        }),
        CallEvent::Cleared { heard_text, heard_ms, .. } => {
            RelayOutbound::Interrupt { utterance_until_interrupt: heard_text.clone(), duration_until_interrupt_ms: *heard_ms }
        }
        CallEvent::Dtmf { digit, .. } => RelayOutbound::Dtmf { digit: digit.clone() },
        CallEvent::Error { code, message } => RelayOutbound::Error { description: format!("{code}: {message}") },
        CallEvent::Mark { name } => RelayOutbound::Mark { name: name.clone() },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relay_tokens_are_speak_requests_and_events_render_as_its_messages() {
        let r = parse(r#"{"type":"text","token":"Hi ","last":false,"preemptible":true}"#).unwrap().unwrap();
        assert_eq!(r, Request::Speak(SpeakRequest { text: "Hi ".into(), preemptible: true, ..Default::default() }));
        assert!(parse(r#"{"type":"speak","text":"x"}"#).is_none(), "voxline's own messages fall through");
        assert!(matches!(parse(r#"{"type":"play","source":"x"}"#), Some(Err(CallEvent::Error { code: "unsupported", .. }))));
        let cleared = CallEvent::Cleared { turn: None, heard_text: "Hello".into(), heard_ms: 400, dropped_text: String::new(), dropped_utterances: 1 };
        assert_eq!(
            serde_json::to_value(render(&cleared).unwrap()).unwrap(),
            json!({"type": "interrupt", "utteranceUntilInterrupt": "Hello", "durationUntilInterruptMs": 400})
        );
        assert!(render(&CallEvent::Ended { reason: "x".into() }).is_none());
    }

    #[test]
    fn end_hands_the_call_off_and_interruptible_is_read() {
        let end = parse(r#"{"type":"end","handoffData":"{\"reasonCode\":\"live-agent-handoff\"}"}"#).unwrap().unwrap();
        assert_eq!(end, Request::End { handoff_data: Some(r#"{"reasonCode":"live-agent-handoff"}"#.into()) });
        assert_eq!(parse(r#"{"type":"end"}"#).unwrap().unwrap(), Request::End { handoff_data: None });
        let text = |i: &str| parse(&format!(r#"{{"type":"text","token":"Hi","interruptible":{i}}}"#)).unwrap();
        let interruptible = |i: &str| match text(i) {
            Ok(Request::Speak(s)) => s.interruptible,
            other => panic!("{other:?}"),
        };
        assert_eq!(interruptible(r#""dtmf""#), Some(Interruptible::Dtmf));
        assert_eq!(interruptible("false"), Some(Interruptible::None));
        assert_eq!(interruptible("true"), Some(Interruptible::Any));
        assert!(matches!(text(r#""loud""#), Err(CallEvent::Error { code: "invalid_message", .. })));
    }
}
