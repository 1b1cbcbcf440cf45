//! What the endpoint tells the application.

use std::fmt;
use std::net::SocketAddr;

/// A stable identifier for one call (one INVITE dialog), incoming or placed by us, assigned by
/// the endpoint.
/// Handles are never reused by an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(u64);

impl CallHandle {
    pub(crate) fn new(id: u64) -> Self {
        CallHandle(id)
    }

    /// The number behind the handle, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The remote party sent BYE (we answered 200).
    RemoteBye,
    /// Our BYE (from [`Endpoint::hangup`](crate::Endpoint::hangup)) got a final response or
    /// timed out (Timer F).
    LocalBye,
    /// Our 2xx to the INVITE (or re-INVITE) was never acknowledged within the ACK timeout
    /// ([`EndpointConfig::ack_timeout`](crate::EndpointConfig::ack_timeout), RFC 3261's 64*T1
    /// by default); we sent BYE.
    AckTimeout,
    /// The caller cancelled before we answered (we sent 200 to the CANCEL and 487 to the
    /// INVITE).
    Cancelled,
    /// We answered the INVITE with a final error: [`Endpoint::reject`](crate::Endpoint::reject),
    /// or [`Endpoint::hangup`](crate::Endpoint::hangup) before answering.
    Rejected,
    /// A call we placed got a final error response, or none ([`Event::CallFailed`] says which).
    Failed,
    /// We hung up a call we placed before it was answered (CANCEL).
    LocalCancel,
    /// We gave up on a call answered but not acknowledged
    /// ([`Endpoint::abandon`](crate::Endpoint::abandon)): no more 2xx retransmissions, and no
    /// BYE (the dialog was never confirmed).
    Abandoned,
    /// A transfer we asked for ([`Endpoint::transfer`](crate::Endpoint::transfer)) reached its
    /// target, and the call ended with a BYE (ours, or the transferee's).
    Transferred,
    /// The session timer ran out (RFC 4028): the peer was to refresh the session and did not
    /// in time, or our own refresh failed; we sent BYE.
    SessionExpired,
}

/// How a transfer we asked for ([`Endpoint::transfer`](crate::Endpoint::transfer)) goes:
/// the REFER's response, then the status lines of the transferee's call to the target
/// (`message/sipfrag` NOTIFYs, RFC 3515).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferUpdate {
    /// The transferee accepted the REFER (2xx, normally `202 Accepted`) and calls the target.
    Accepted {
        /// The REFER's status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A NOTIFY reported a provisional response of the target (`100 Trying`, `180 Ringing`).
    Progress {
        /// The target's status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A NOTIFY reported the target's 2xx: the transfer worked. The endpoint sends BYE; the
    /// call ends with [`EndReason::Transferred`].
    Succeeded {
        /// The target's status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The REFER was refused or unanswered (408), the target refused the call (the NOTIFY's
    /// status), the transferee ended the subscription without a final status (487), or no
    /// NOTIFY came in time (408). The call goes on.
    Failed {
        /// The status.
        status: u16,
        /// Its reason phrase, or what happened instead.
        reason: String,
    },
}

/// Something the application should know or act on. Every [`Event::IncomingCall`], and every
/// handle [`Endpoint::call`](crate::Endpoint::call) returns, is followed, eventually, by exactly
/// one [`Event::CallEnded`] for the same handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new INVITE arrived; `100 Trying` is already sent. Answer with
    /// [`Endpoint::answer`](crate::Endpoint::answer), [`Endpoint::ringing`](crate::Endpoint::ringing)
    /// first if it takes time, or [`Endpoint::reject`](crate::Endpoint::reject).
    IncomingCall {
        /// The new call's handle.
        call: CallHandle,
        /// The Call-ID header value.
        call_id: String,
        /// The From header value as received (display name, URI, parameters).
        from: String,
        /// The To header value as received.
        to: String,
        /// The Request-URI (the number or address that was called).
        request_uri: String,
        /// The address the INVITE came from.
        source: SocketAddr,
        /// The SDP offer, when the INVITE has an `application/sdp` body.
        offer: Option<String>,
        /// Every header whose name starts with `X-` (any case), name as written, in order.
        headers: Vec<(String, String)>,
    },
    /// A call we placed got a provisional response (101-199): `180 Ringing`, `183 Session
    /// Progress`. Reported once per status in a row.
    CallRinging {
        /// The call.
        call: CallHandle,
        /// The status code.
        status: u16,
    },
    /// A call we placed was answered: the dialog is established and the ACK sent.
    CallAnswered {
        /// The call.
        call: CallHandle,
        /// The SDP answer carried by the 2xx.
        answer: Option<String>,
    },
    /// A call we placed failed: a final error response, or 408 when none came (Timer B, or
    /// the ring timeout). [`Event::CallEnded`] with [`EndReason::Failed`] follows.
    CallFailed {
        /// The call.
        call: CallHandle,
        /// The final status code.
        status: u16,
        /// Its reason phrase, or what happened instead.
        reason: String,
    },
    /// The ACK for our 2xx arrived: the call is established.
    CallConfirmed {
        /// The call.
        call: CallHandle,
        /// The SDP answer carried by the ACK, when the INVITE had no offer (our 2xx carried
        /// the offer).
        answer: Option<String>,
    },
    /// A CANCEL arrived before we answered; 200 (CANCEL) and 487 (INVITE) are already sent.
    /// [`Event::CallEnded`] with [`EndReason::Cancelled`] follows.
    CallCancelled {
        /// The call.
        call: CallHandle,
    },
    /// An INVITE inside the dialog (session refresh or new offer; `100 Trying` is sent), or an
    /// UPDATE carrying an SDP offer (RFC 3311; an UPDATE without one is answered at once).
    /// Answer with [`Endpoint::answer_reinvite`](crate::Endpoint::answer_reinvite) or
    /// [`Endpoint::reject_reinvite`](crate::Endpoint::reject_reinvite).
    ReInvite {
        /// The call.
        call: CallHandle,
        /// The SDP offer, if the re-INVITE has one (an UPDATE always has).
        offer: Option<String>,
    },
    /// The call is over; the handle is no longer valid.
    CallEnded {
        /// The call.
        call: CallHandle,
        /// Why it ended.
        reason: EndReason,
    },
    /// A DTMF digit arrived in a SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    Dtmf {
        /// The call.
        call: CallHandle,
        /// One of `0-9`, `*`, `#`, `A-D`.
        digit: char,
    },
    /// A transfer we asked for moved on; see [`TransferUpdate`].
    Transfer {
        /// The call.
        call: CallHandle,
        /// What happened.
        update: TransferUpdate,
    },
    /// A DTMF INFO we sent ([`Endpoint::send_dtmf_info`](crate::Endpoint::send_dtmf_info)) got
    /// an error response or none (408); the digits still queued were dropped.
    DtmfInfoFailed {
        /// The call.
        call: CallHandle,
        /// The INFO's final status, or 408.
        status: u16,
        /// Its reason phrase, or what happened instead.
        reason: String,
        /// The digits that were not sent, in order (the refused one not included).
        dropped: String,
    },
    /// A registration ([`Endpoint::register`](crate::Endpoint::register)) changed state: registered
    /// (or refreshed), failed, unregistered.
    Registration {
        /// The registration.
        registration: crate::registration::RegistrationHandle,
        /// Where it stands now.
        status: crate::registration::RegistrationStatus,
    },
}
