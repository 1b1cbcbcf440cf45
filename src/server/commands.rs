//! Requests from the rest of the server to the SIP task.

use super::calls::SipHandle;
use crate::synth::Preset;

/// What the SIP task is asked to do.
#[derive(Debug)]
pub enum SipCommand {
    /// End the call with a BYE.
    Hangup { call: SipHandle, reason: &'static str },
    /// An agent's answer to `call.incoming` (events socket or webhook).
    Decide { call: String, decision: Decision },
}

/// What to do with a ringing call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer now. `greeting`: `None` plays the configured greeting,
    /// `Some("")` none, anything else that text.
    Accept { greeting: Option<String>, voice: Option<String>, preset: Option<Preset> },
    /// Refuse with a final response (4xx-6xx).
    Reject { status: u16, reason: Option<String> },
}
