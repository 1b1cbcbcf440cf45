//! Call lifecycle events, server-wide: what the events socket and the
//! webhook hear (docs/control.md, "The events socket").

use std::collections::BTreeMap;

use serde::Serialize;

/// A call came, rang, was answered, failed, ended or was refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum LifecycleEvent {
    /// A call rings; an agent may decide on it within `decide_within_ms`.
    #[serde(rename = "call.incoming")]
    Incoming {
        call: String,
        sip_call_id: String,
        from: String,
        to: String,
        request_uri: String,
        /// Where the INVITE came from.
        source: String,
        /// The INVITE's `X-` headers.
        headers: BTreeMap<String, String>,
        decide_within_ms: u64,
    },
    /// A call we placed rings (180) or progresses (183).
    #[serde(rename = "call.ringing")]
    Ringing { call: String, status: u16 },
    #[serde(rename = "call.answered")]
    Answered { call: String },
    /// A Twilio Media Stream started (`call.answered` follows): Twilio's ids,
    /// and the `<Parameter>`s of its `<Stream>`.
    #[serde(rename = "call.stream_started")]
    StreamStarted {
        call: String,
        call_sid: String,
        stream_sid: String,
        account_sid: String,
        custom_parameters: BTreeMap<String, String>,
    },
    /// A call we placed was refused (the callee's final status) or got no
    /// answer (408); `call.ended` follows.
    #[serde(rename = "call.failed")]
    Failed { call: String, status: u16, reason: String },
    #[serde(rename = "call.ended")]
    Ended { call: String, reason: String },
    /// The call's agent is done with it and the call goes on
    /// (ConversationRelay's `end`): `handoff_data` as the agent gave it.
    #[serde(rename = "call.handoff")]
    Handoff { call: String, handoff_data: Option<String> },
    /// A call refused for load (never answered, so it has no call id; `id`
    /// is its SIP Call-ID or `offer` for a WebRTC offer).
    #[serde(rename = "call.rejected")]
    Rejected { transport: &'static str, id: String, reason: String, retry_after_s: u64 },
}

impl super::fanout::Event for LifecycleEvent {}

impl LifecycleEvent {
    /// The webhook is told of everything but `call.incoming`, which it is
    /// asked about instead.
    pub fn is_incoming(&self) -> bool {
        matches!(self, LifecycleEvent::Incoming { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_events_keep_their_wire_names() {
        let ended = LifecycleEvent::Ended { call: "c1".into(), reason: "remote_bye".into() };
        assert_eq!(serde_json::to_value(&ended).unwrap(), serde_json::json!({"type": "call.ended", "call": "c1", "reason": "remote_bye"}));
        let rejected = LifecycleEvent::Rejected { transport: "sip", id: "x@h".into(), reason: "full".into(), retry_after_s: 5 };
        assert_eq!(serde_json::to_value(&rejected).unwrap()["type"], "call.rejected");
        let failed = LifecycleEvent::Failed { call: "c2".into(), status: 486, reason: "Busy Here".into() };
        assert_eq!(serde_json::to_value(&failed).unwrap(), serde_json::json!({"type": "call.failed", "call": "c2", "status": 486, "reason": "Busy Here"}));
        let handoff = LifecycleEvent::Handoff { call: "c3".into(), handoff_data: Some(r#"{"reason":"human"}"#.into()) };
        assert_eq!(
            serde_json::to_value(&handoff).unwrap(),
            serde_json::json!({"type": "call.handoff", "call": "c3", "handoff_data": "{\"reason\":\"human\"}"})
        );
        let ringing = LifecycleEvent::Ringing { call: "c2".into(), status: 180 };
        assert_eq!(serde_json::to_value(&ringing).unwrap(), serde_json::json!({"type": "call.ringing", "call": "c2", "status": 180}));
    }
}
