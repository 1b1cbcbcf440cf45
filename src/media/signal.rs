//! What a call's signalling tells its agent, carried on the call's event channel beside the
//! media's own events (published by the SIP task, like [`MediaEvent::Ended`]): how a transfer
//! goes, and DTMF sent as SIP INFO that the peer refused.
//!
//! [`MediaEvent::Ended`]: super::MediaEvent::Ended

/// A signalling outcome for the call's control sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSignal {
    /// The transferee accepted the REFER (`202`), or reported the target's provisional status
    /// (`100 Trying`, `180 Ringing`).
    TransferProgress { status: u16, reason: String },
    /// The target answered (the NOTIFY's `200 OK`); the call ends with BYE.
    TransferDone { status: u16, reason: String },
    /// The REFER was refused or unanswered, the target refused the call, or no final status
    /// came in time; the call goes on.
    TransferFailed { status: u16, reason: String },
    /// An INFO carrying a digit got an error (or no) response; `dropped` digits were not sent.
    DtmfFailed { status: u16, reason: String, dropped: String },
    /// The SIP core refused the request before sending anything (a transfer already under
    /// way, a call not yet established); `reason` says why.
    Refused { reason: String },
}
