//! Which protocol a socket speaks, and the one place that reads and renders
//! frames in it: voxline's own messages, or Twilio ConversationRelay's
//! (`relay.rs`) with voxline's own accepted too.

use super::protocol::{parse_native, CallEvent, Request, MAX_FRAME};
use super::relay;

/// Which protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// voxline's own messages (docs/control.md).
    Native,
    /// Twilio ConversationRelay: `text` tokens in; `setup`, `interrupt`,
    /// `dtmf` and `error` out. voxline's own messages are accepted too.
    ConversationRelay,
}

impl Dialect {
    pub fn from_name(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("native" | "voxline") => Ok(Dialect::Native),
            Some("conversationrelay" | "twilio") => Ok(Dialect::ConversationRelay),
            Some(other) => Err(format!("unknown dialect `{other}`: native or conversationrelay")),
        }
    }

    /// Reads one text frame. Errors are the event to answer with.
    pub fn parse(self, frame: &str) -> Result<Request, CallEvent> {
        if frame.len() > MAX_FRAME {
            return Err(CallEvent::error("frame_too_large", format!("a message is at most {MAX_FRAME} bytes; this one is {}", frame.len())));
        }
        if self == Dialect::ConversationRelay {
            if let Some(request) = relay::parse(frame) {
                return request;
            }
        }
        parse_native(frame)
    }

    /// An event as this dialect sends it; `None` when it has no such message.
    pub fn render(self, event: &CallEvent) -> Option<String> {
        match self {
            Dialect::Native => serde_json::to_string(event).ok(),
            Dialect::ConversationRelay => relay::render(event).and_then(|m| serde_json::to_string(&m).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_and_rendered_per_dialect() {
        let big = "x".repeat(MAX_FRAME + 1);
        assert!(matches!(Dialect::Native.parse(&big), Err(CallEvent::Error { code: "frame_too_large", .. })));
        let token = r#"{"type":"text","token":"Hi","last":true}"#;
        assert!(Dialect::ConversationRelay.parse(token).is_ok());
        assert!(Dialect::Native.parse(token).is_err(), "voxline's own dialect has no `text`");
        assert!(Dialect::ConversationRelay.parse(r#"{"type":"clear"}"#).is_ok(), "voxline's own messages in the relay dialect");
        let ended = CallEvent::Ended { reason: "x".into() };
        assert!(Dialect::Native.render(&ended).is_some());
        assert!(Dialect::ConversationRelay.render(&ended).is_none());
        assert_eq!(Dialect::from_name(Some("twilio")), Ok(Dialect::ConversationRelay));
        assert!(Dialect::from_name(Some("sip")).is_err());
    }
}
