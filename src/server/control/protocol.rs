//! The control protocol's messages: what an agent sends ([`Request`], here
//! read from voxline's own JSON) and the typed events it hears
//! ([`CallEvent`], whose serde form is voxline's own wire format). Dialects
//! (`dialect.rs`) read and render the same types their way. See docs/control.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::media::{CallSignal, UtteranceId};

/// Frames larger than this are refused with an error event.
pub const MAX_FRAME: usize = 64 * 1024;

/// Text to speak, from any dialect.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeakRequest {
    pub text: String,
    /// Groups text into one agent turn (default: the current turn); a new id
    /// ends the current turn's text.
    pub turn: Option<String>,
    /// Speak what is buffered now.
    pub flush: bool,
    /// End of the turn (implies flush).
    pub last: bool,
    /// Voice and preset for this turn (from its next clause on).
    pub voice: Option<String>,
    pub preset: Option<String>,
    /// The next turn's text cuts this one off (ConversationRelay).
    pub preemptible: bool,
    /// What of the caller's may cut this turn off (ConversationRelay's
    /// `interruptible`); `None` keeps the turn's (the socket's default).
    pub interruptible: Option<Interruptible>,
}

/// What of the caller's input stops a turn's speech: ConversationRelay's
/// `interruptible` (`"any"`, `"speech"`, `"dtmf"`, `"none"`; `true` is
/// `"any"` and `false` `"none"`). voxline hears no caller speech of its own,
/// so only a DTMF digit interrupts by itself; speech is the agent's `clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruptible {
    None,
    Speech,
    Dtmf,
    Any,
}

impl Interruptible {
    /// Reads the dialect's value: one of the four names, or a boolean.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bool(true) => Ok(Interruptible::Any),
            Value::Bool(false) => Ok(Interruptible::None),
            Value::String(s) => match s.as_str() {
                "any" | "true" => Ok(Interruptible::Any),
                "speech" => Ok(Interruptible::Speech),
                "dtmf" => Ok(Interruptible::Dtmf),
                "none" | "false" => Ok(Interruptible::None),
                other => Err(format!("`interruptible` is any, speech, dtmf, none or a boolean, not `{other}`")),
            },
            other => Err(format!("`interruptible` is any, speech, dtmf, none or a boolean, not {other}")),
        }
    }

    /// Whether a DTMF digit from the caller stops the speech.
    pub fn by_dtmf(self) -> bool {
        matches!(self, Interruptible::Dtmf | Interruptible::Any)
    }
}

/// What an agent asks of its call.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Speak(SpeakRequest),
    /// Defaults for this socket's later turns.
    Configure { voice: Option<String>, preset: Option<String>, segment: Option<String> },
    /// Digits to the caller (0-9 * # A-D; `w` waits 0.5 s), as RFC 4733
    /// telephone-events in the RTP stream or as SIP INFO requests.
    SendDtmf { digits: String, duration_ms: Option<u64>, method: DtmfMethod },
    Flush,
    /// Barge-in: drop queued text and unplayed audio.
    Clear,
    Mark { name: String },
    Hangup,
    /// Caller audio as binary frames (`pcmu` bytes or `pcm16` little-endian, 8 kHz).
    CallerAudio { enabled: bool, format: Option<String> },
    /// Blind transfer of a SIP call to `to` (REFER).
    Transfer { to: String },
    /// The agent is done with the call but the call goes on (ConversationRelay's
    /// `end`): `call.handoff` with `handoff_data` to the webhook and the events
    /// socket, the agent's socket closed, the call left up for what comes next.
    End { handoff_data: Option<String> },
}

/// How `send_dtmf` sends its digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfMethod {
    /// RFC 4733 telephone-events in the call's RTP stream.
    #[default]
    Rfc4733,
    /// One SIP INFO per digit (`application/dtmf-relay`), SIP calls only.
    Info,
}

/// voxline's own inbound messages.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Inbound {
    Speak {
        text: String,
        #[serde(default)]
        turn: Option<String>,
        #[serde(default)]
        flush: bool,
        #[serde(default)]
        last: bool,
        #[serde(default)]
        voice: Option<String>,
        #[serde(default)]
        preset: Option<String>,
    },
    Configure {
        #[serde(default)]
        voice: Option<String>,
        #[serde(default)]
        preset: Option<String>,
        #[serde(default)]
        segment: Option<String>,
    },
    SendDtmf {
        digits: String,
        #[serde(default)]
        duration_ms: Option<u64>,
        #[serde(default)]
        method: DtmfMethod,
    },
    Flush,
    Clear,
    Mark {
        name: String,
    },
    Hangup,
    CallerAudio {
        enabled: bool,
        #[serde(default)]
        format: Option<String>,
    },
    Transfer {
        to: String,
    },
}

impl From<Inbound> for Request {
    fn from(m: Inbound) -> Self {
        match m {
            Inbound::Speak { text, turn, flush, last, voice, preset } => {
                Request::Speak(SpeakRequest { text, turn, flush: flush || last, last, voice, preset, preemptible: false, interruptible: None })
            }
            Inbound::Configure { voice, preset, segment } => Request::Configure { voice, preset, segment },
            Inbound::SendDtmf { digits, duration_ms, method } => Request::SendDtmf { digits, duration_ms, method },
            Inbound::Flush => Request::Flush,
            Inbound::Clear => Request::Clear,
            Inbound::Mark { name } => Request::Mark { name },
            Inbound::Hangup => Request::Hangup,
            Inbound::CallerAudio { enabled, format } => Request::CallerAudio { enabled, format },
            Inbound::Transfer { to } => Request::Transfer { to },
        }
    }
}

/// Reads one of voxline's own messages. Errors are the event to answer with.
pub fn parse_native(frame: &str) -> Result<Request, CallEvent> {
    serde_json::from_str::<Inbound>(frame).map(Request::from).map_err(|e| {
        let code = if serde_json::from_str::<Value>(frame).is_ok() { "invalid_message" } else { "malformed_json" };
        CallEvent::error(code, e.to_string())
    })
}

/// Everything an agent hears about its call, typed. Serialized, it is
/// voxline's own wire format (`{"type": "speech.started", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum CallEvent {
    /// The socket is attached (first message).
    #[serde(rename = "call.attached")]
    Attached {
        call: String,
        from: String,
        to: String,
        state: super::super::calls::CallState,
        headers: BTreeMap<String, String>,
        voice: String,
        voices: Vec<String>,
        /// `sip`, `webrtc` or `twilio`.
        transport: &'static str,
        /// Who called whom (ConversationRelay's `direction`; not on voxline's wire).
        #[serde(skip)]
        direction: super::super::calls::Direction,
        /// Twilio's `CallSid` of a Twilio Media Streams call (ConversationRelay's
        /// `callSid`; not on voxline's wire).
        #[serde(skip)]
        twilio_call_sid: Option<String>,
    },
    /// A turn's first audio is being sent.
    #[serde(rename = "speech.started")]
    SpeechStarted { turn: String, utterance: UtteranceId, text: String, ttfa_ms: f64, jitter_wait_ms: f64 },
    /// The frame carrying this word's start is being sent.
    #[serde(rename = "word")]
    Word { turn: String, utterance: UtteranceId, text: String, offset_ms: u64 },
    #[serde(rename = "utterance.done")]
    UtteranceDone { turn: String, utterance: UtteranceId, played_ms: u64, underruns: u32 },
    /// A turn's text is complete and all of it was played.
    #[serde(rename = "speech.done")]
    SpeechDone { turn: String, text: String, played_ms: u64 },
    #[serde(rename = "mark")]
    Mark { name: String },
    #[serde(rename = "dtmf")]
    Dtmf { digit: String, duration_ms: u32 },
    /// Barge-in done: what the caller heard of the cut turn and what was dropped.
    #[serde(rename = "cleared")]
    Cleared { turn: Option<String>, heard_text: String, heard_ms: u64, dropped_text: String, dropped_utterances: usize },
    #[serde(rename = "configured")]
    Configured { voice: String, preset: &'static str, segment: &'static str },
    #[serde(rename = "backpressure")]
    Backpressure { paused: bool, queued_s: f64, pause_above_s: f64, resume_below_s: f64 },
    #[serde(rename = "error")]
    Error { code: &'static str, message: String },
    #[serde(rename = "call.ended")]
    Ended { reason: String },
    /// The transferee accepted the REFER (202) or reported the target's
    /// provisional status (100 Trying, 180 Ringing).
    #[serde(rename = "transfer.progress")]
    TransferProgress { status: u16, reason: String },
    /// The target answered; the call ends (`call.ended` with `transferred`).
    #[serde(rename = "transfer.done")]
    TransferDone { status: u16, reason: String },
    /// The transfer did not happen; the call goes on.
    #[serde(rename = "transfer.failed")]
    TransferFailed { status: u16, reason: String },
}

impl CallEvent {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        CallEvent::Error { code, message: message.into() }
    }

    /// What the agent hears of a signalling outcome.
    pub fn signal(signal: CallSignal) -> Self {
        match signal {
            CallSignal::TransferProgress { status, reason } => CallEvent::TransferProgress { status, reason },
            CallSignal::TransferDone { status, reason } => CallEvent::TransferDone { status, reason },
            CallSignal::TransferFailed { status, reason } => CallEvent::TransferFailed { status, reason },
            CallSignal::DtmfFailed { status, reason, dropped } => {
                CallEvent::error("dtmf_failed", format!("the caller answered a DTMF INFO with {status} {reason}; digits not sent: `{dropped}`"))
            }
            CallSignal::Refused { reason } => CallEvent::error("refused", reason),
        }
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_messages_read_into_requests() {
        let r = parse_native(r#"{"type":"speak","text":"Hi.","last":true}"#).unwrap();
        assert_eq!(r, Request::Speak(SpeakRequest { text: "Hi.".into(), flush: true, last: true, ..Default::default() }));
        assert_eq!(parse_native(r#"{"type":"clear"}"#).unwrap(), Request::Clear);
        let bad = |frame: &str| match parse_native(frame) {
            Err(CallEvent::Error { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            parse_native(r#"{"type":"send_dtmf","digits":"12","method":"info"}"#).unwrap(),
            Request::SendDtmf { digits: "12".into(), duration_ms: None, method: DtmfMethod::Info }
        );
        assert_eq!(parse_native(r#"{"type":"transfer","to":"sip:bob@192.0.2.1"}"#).unwrap(), Request::Transfer { to: "sip:bob@192.0.2.1".into() });
        assert_eq!(bad(r#"{"type":"send_dtmf","digits":"1","method":"sms"}"#), "invalid_message");
        assert_eq!(bad("{"), "malformed_json");
        assert_eq!(bad(r#"{"type":"speak"}"#), "invalid_message");
        assert_eq!(bad(r#"{"type":"speak","text":"a","bogus":1}"#), "invalid_message");
    }

    #[test]
    fn interruptible_takes_twilios_names_and_booleans() {
        let read = |v: Value| Interruptible::from_value(&v);
        assert_eq!(read(json!("any")), Ok(Interruptible::Any));
        assert_eq!(read(json!(true)), Ok(Interruptible::Any));
        assert_eq!(read(json!(false)), Ok(Interruptible::None));
        assert_eq!(read(json!("speech")), Ok(Interruptible::Speech));
        assert!(read(json!("dtmf")).unwrap().by_dtmf());
        assert!(!read(json!("speech")).unwrap().by_dtmf());
        assert!(!read(json!("none")).unwrap().by_dtmf());
        assert!(read(json!("sometimes")).unwrap_err().contains("sometimes"));
        assert!(read(json!(3)).is_err());
    }

    #[test]
    fn events_keep_their_wire_form() {
        let e = CallEvent::SpeechDone { turn: "t1".into(), text: "Hello.".into(), played_ms: 640 };
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"type": "speech.done", "turn": "t1", "text": "Hello.", "played_ms": 640}));
        let e = CallEvent::Cleared { turn: None, heard_text: String::new(), heard_ms: 0, dropped_text: "rest".into(), dropped_utterances: 2 };
        assert_eq!(serde_json::to_value(&e).unwrap()["turn"], Value::Null);
        assert_eq!(serde_json::to_string(&CallEvent::Ended { reason: "remote_bye".into() }).unwrap(), r#"{"type":"call.ended","reason":"remote_bye"}"#);
        let e = CallEvent::signal(CallSignal::TransferFailed { status: 503, reason: "Service Unavailable".into() });
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"type": "transfer.failed", "status": 503, "reason": "Service Unavailable"}));
    }
}
