//! Errors returned by the application-facing actions of [`Endpoint`](crate::Endpoint).

use crate::event::CallHandle;
use crate::registration::RegistrationHandle;

/// Why an action on a call was refused. Nothing is sent when an action fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The handle is unknown: the call ended (see [`Event::CallEnded`](crate::Event::CallEnded))
    /// or never existed.
    #[error("{0} does not exist or has ended")]
    UnknownCall(CallHandle),
    /// The call is not in a state where the action makes sense, e.g. `answer` twice, or
    /// `answer_reinvite` with no re-INVITE pending.
    #[error("{call}: cannot {action} while the call is {state}")]
    WrongState {
        /// The call.
        call: CallHandle,
        /// What was attempted, e.g. `"answer"`.
        action: &'static str,
        /// Where the call stands, e.g. `"established"`.
        state: &'static str,
    },
    /// A rejection needs a final error status, 300-699.
    #[error("{0} is not a final error status; use a code from 300 to 699")]
    InvalidStatus(u16),
    /// [`Endpoint::call`](crate::Endpoint::call) cannot send this request: the reason says
    /// which value is wrong.
    #[error("cannot place the call: {0}")]
    InvalidCallRequest(String),
    /// [`Endpoint::transfer`](crate::Endpoint::transfer) needs a `sip:`, `sips:` or `tel:`
    /// URI as the target.
    #[error("cannot transfer to `{0}`: use a sip:, sips: or tel: URI")]
    InvalidTarget(String),
    /// [`Endpoint::send_dtmf_info`](crate::Endpoint::send_dtmf_info) sends `0-9 * # A-D` and
    /// waits on `w`; nothing else.
    #[error("`{0}` is not a DTMF digit: use 0-9, *, #, A-D, or w to wait")]
    InvalidDigit(char),
    /// [`Endpoint::register`](crate::Endpoint::register) cannot send this request: the reason
    /// says which value is wrong.
    #[error("cannot register: {0}")]
    InvalidRegistration(String),
    /// The registration handle is unknown: it was unregistered, or never existed.
    #[error("registration {} does not exist or was removed", .0.get())]
    UnknownRegistration(RegistrationHandle),
}
