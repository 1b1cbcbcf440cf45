//! The SIP task's side of what an agent asks of a call's dialog: a blind transfer (REFER) and
//! DTMF as SIP INFO go to the SIP core; how they go comes back to the call's control sockets
//! as [`CallSignal`]s (`transfer.progress`, `transfer.done`, `transfer.failed`, or an `error`).

use std::time::Instant;

use voxline_sip::{Endpoint, Event, TransferUpdate};

use super::calls::SipHandle;
use super::control::InDialog;
use super::state::Server;
use crate::media::{CallSignal, MediaEvent};

/// Sends the agent's request in the call's dialog; a refusal of the SIP core (no such call,
/// not established, a transfer already under way, a bad URI) is told to the call's sockets.
pub fn request(server: &Server, endpoint: &mut Endpoint, call: SipHandle, request: InDialog) {
    let now = Instant::now();
    let sent = match &request {
        InDialog::Transfer { to } => endpoint.transfer(now, call, to),
        InDialog::Dtmf { digits, duration } => endpoint.send_dtmf_info(now, call, digits, *duration),
    };
    match sent {
        Ok(()) => tracing::info!(sip = %call, ?request, "in-dialog request sent"),
        Err(e) => {
            tracing::info!(sip = %call, error = %e, "in-dialog request refused");
            publish(server, call, CallSignal::Refused { reason: e.to_string() });
        }
    }
}

/// Relays a transfer's progress or a failed DTMF INFO. Other events are not ours.
pub fn on_event(server: &Server, event: Event) {
    let (call, signal) = match event {
        Event::Transfer { call, update } => (call, transfer_signal(update)),
        Event::DtmfInfoFailed { call, status, reason, dropped } => (call, CallSignal::DtmfFailed { status, reason, dropped }),
        _ => return,
    };
    publish(server, call, signal);
}

fn transfer_signal(update: TransferUpdate) -> CallSignal {
    match update {
        TransferUpdate::Accepted { status, reason } | TransferUpdate::Progress { status, reason } => CallSignal::TransferProgress { status, reason },
        TransferUpdate::Succeeded { status, reason } => CallSignal::TransferDone { status, reason },
        TransferUpdate::Failed { status, reason } => CallSignal::TransferFailed { status, reason },
        other => CallSignal::TransferProgress { status: 0, reason: format!("{other:?}") },
    }
}

fn publish(server: &Server, call: SipHandle, signal: CallSignal) {
    if let Some(c) = server.calls.by_sip(call) {
        tracing::info!(call = %c.id, ?signal, "call signal");
        c.events.publish(MediaEvent::Signal(Box::new(signal)));
    }
}
