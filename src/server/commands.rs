//! Requests from the rest of the server to the SIP task.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::calls::SipHandle;
use crate::media::{CallMedia, MediaEvent};
use crate::synth::Preset;

/// What the SIP task is asked to do.
#[derive(Debug)]
pub enum SipCommand {
    /// End the call with a BYE (CANCEL for a call we placed that still rings).
    Hangup { call: SipHandle, reason: &'static str },
    /// An agent's answer to `call.incoming` (events socket or webhook).
    Decide { call: String, decision: Decision },
    /// Place a call (`POST /v1/calls`); the reply is why the SIP core refused it, if it did.
    Dial { call: Box<Dial>, reply: oneshot::Sender<Result<(), String>> },
    /// A transfer or INFO DTMF in the call's dialog (the agent's control socket).
    InDialog { call: SipHandle, request: super::control::InDialog },
    /// A trunk's registration: start it, or remove them all at shutdown.
    Trunk(super::trunks::TrunkCommand),
}

/// A call to place: everything is ready but the INVITE.
#[derive(Debug)]
pub struct Dial {
    /// Our id for the call.
    pub id: String,
    /// The INVITE, with our SDP offer.
    pub request: voxline_sip::CallRequest,
    pub media: Arc<CallMedia>,
    pub events: mpsc::UnboundedReceiver<MediaEvent>,
    pub sdp_session: u64,
    /// Played once answered: `None` the configured greeting, `Some("")` none.
    pub greeting: Option<String>,
    pub voice: Option<String>,
    pub preset: Option<Preset>,
    /// The agent voxline connects to once answered (agent-URL mode).
    pub agent: Option<super::control::AgentTarget>,
}

/// What to do with a ringing call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Answer now. `greeting`: `None` plays the configured greeting,
    /// `Some("")` none, anything else that text.
    /// `agent`: connect to this agent (agent-URL mode) rather than the server's default.
    Accept { greeting: Option<String>, voice: Option<String>, preset: Option<Preset>, agent: Option<super::control::AgentTarget> },
    /// Refuse with a final response (4xx-6xx).
    Reject { status: u16, reason: Option<String> },
}
