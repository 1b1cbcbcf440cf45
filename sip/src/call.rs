//! One call, incoming or placed by us: the dialog, where the INVITE stands, and the core's 2xx
//! retransmission (RFC 3261 13.3.1.4). The endpoint drives it; this module holds the state and
//! its rules.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::dialog::Dialog;
use crate::info_dtmf::InfoDtmf;
use crate::message::Echo;
use crate::session_timer::Session;
use crate::transaction::{due, soonest, Timers, TransactionKey};
use crate::transfer::Transfer;
use crate::transmit::Transmit;
use crate::uac::Uac;

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallState {
    /// INVITE received, no final response yet (100/180 sent).
    Early,
    /// Our INVITE is out, no 2xx yet (provisional responses may have come).
    Calling,
    /// We hung up before the 2xx: CANCEL sent, or waiting for a provisional response to send
    /// it (9.1).
    Cancelling,
    /// 2xx sent, waiting for the ACK.
    Accepted,
    /// ACK received: the call is up.
    Confirmed,
    /// Our BYE is in flight.
    Terminating,
}

impl CallState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            CallState::Early => "not yet answered",
            CallState::Calling => "calling and not yet answered",
            CallState::Cancelling => "being cancelled",
            CallState::Accepted => "answered and waiting for the ACK",
            CallState::Confirmed => "established",
            CallState::Terminating => "hanging up",
        }
    }
}

/// An INVITE (initial or re-INVITE) we still have to answer or acknowledge.
#[derive(Debug, Clone)]
pub(crate) struct InviteContext {
    pub key: TransactionKey,
    pub echo: Echo,
    pub source: SocketAddr,
    pub cseq: u32,
}

/// The core retransmits a 2xx to INVITE itself: T1, doubling up to T2, until the ACK or
/// 64*T1 (13.3.1.4).
#[derive(Debug, Clone)]
pub(crate) struct PendingAck {
    pub response: Transmit,
    /// CSeq of the INVITE; the ACK carries the same number.
    pub cseq: u32,
    /// True for the initial INVITE (its ACK confirms the call).
    pub initial: bool,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

impl PendingAck {
    pub(crate) fn new(
        now: Instant,
        response: Transmit,
        cseq: u32,
        initial: bool,
        timers: &Timers,
    ) -> Self {
        PendingAck {
            response,
            cseq,
            initial,
            next: now + timers.t1,
            interval: timers.t1,
            give_up: now + timers.ack_timeout,
        }
    }

    pub(crate) fn next_deadline(&self) -> Instant {
        self.next.min(self.give_up)
    }

    /// Retransmits when due. True when the ACK timeout passed without an ACK.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        timers: &Timers,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        if now >= self.give_up {
            return true;
        }
        if now >= self.next {
            out.push_back(self.response.clone());
            self.interval = timers.backoff(self.interval);
            self.next = now + self.interval;
        }
        false
    }
}

/// Which side of the call we are.
#[derive(Debug)]
pub(crate) enum Role {
    /// We answer: the initial INVITE we received.
    Uas(InviteContext),
    /// We called.
    Uac(Uac),
}

/// A call.
#[derive(Debug)]
pub(crate) struct Call {
    pub state: CallState,
    pub dialog: Dialog,
    pub role: Role,
    /// A re-INVITE waiting for the application's answer. (This and the other
    /// rarely-set parts are boxed: a call spends its life without them, and
    /// inline they made every call 1.9 KB.)
    pub reinvite: Option<Box<InviteContext>>,
    /// A 2xx waiting for its ACK.
    pub pending_ack: Option<Box<PendingAck>>,
    /// `hangup` was called while waiting for the ACK: BYE goes out when it arrives
    /// (RFC 3261 15: no BYE before the ACK or its timeout).
    pub bye_after_ack: bool,
    /// Our REFER and what its NOTIFYs said (the latest transfer).
    pub transfer: Option<Box<Transfer>>,
    /// DTMF digits to send as INFO.
    pub info_dtmf: InfoDtmf,
    /// An UPDATE with an SDP offer waiting for the application's answer (RFC 3311).
    pub update: Option<Box<InviteContext>>,
    /// Session timer (RFC 4028) and what a refresh needs.
    pub session: Session,
}

impl Call {
    pub(crate) fn new(state: CallState, dialog: Dialog, role: Role) -> Self {
        Call {
            state,
            dialog,
            role,
            reinvite: None,
            pending_ack: None,
            bye_after_ack: false,
            transfer: None,
            info_dtmf: InfoDtmf::default(),
            update: None,
            session: Session::default(),
        }
    }

    /// True once a transfer of the call succeeded (its end is the transfer's).
    pub(crate) fn transferred(&self) -> bool {
        self.transfer
            .as_deref()
            .is_some_and(|t| t.stage == crate::transfer::Stage::Succeeded)
    }

    /// The INVITE of a call we answer.
    pub(crate) fn invite(&self) -> Option<&InviteContext> {
        match &self.role {
            Role::Uas(invite) => Some(invite),
            Role::Uac(_) => None,
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let give_up = match &self.role {
            Role::Uac(uac) => soonest(uac.give_up, uac.failover_at),
            Role::Uas(_) => None,
        };
        [
            self.pending_ack.as_deref().map(PendingAck::next_deadline),
            self.transfer.as_deref().and_then(Transfer::next_deadline),
            self.info_dtmf.next_deadline(),
            self.session.next_deadline(),
        ]
        .into_iter()
        .fold(give_up, soonest)
    }

    /// Runs the 2xx retransmission; true when the ACK never came.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        timers: &Timers,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        match self.pending_ack.as_mut() {
            Some(pending) if due(Some(pending.next_deadline()), now) => {
                pending.on_timeout(now, timers, out)
            }
            _ => false,
        }
    }
}
