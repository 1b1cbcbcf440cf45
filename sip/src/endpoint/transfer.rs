//! Blind transfer (RFC 5589 6.1, RFC 3515): REFER in the call's dialog, the NOTIFYs of its
//! implicit subscription answered 200 and reported, BYE once the target answered. And the
//! policy for a REFER we receive: `403`, voxline does not let the remote party transfer it.
//!
//! ```text
//! transfer() --REFER (Refer-To, Referred-By)--> 202           Transfer(Accepted)
//!            <--NOTIFY sipfrag "SIP/2.0 100 Trying"-- 200     Transfer(Progress)
//!            <--NOTIFY sipfrag "SIP/2.0 200 OK"------ 200     Transfer(Succeeded), BYE,
//!                                                             CallEnded(Transferred)
//!            3xx-6xx to the REFER, a failing sipfrag, no NOTIFY: Transfer(Failed), the call goes on
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use rsip::headers as h;

use super::{Completed, Endpoint};
use crate::call::CallState;
use crate::dialog::Extra;
use crate::error::SipError;
use crate::event::{CallHandle, Event, TransferUpdate};
use crate::message::{self, FragStatus, NameAddr, Reply, Request, SubscriptionState, Uri};
use crate::transaction::client_non_invite::ClientNonInviteTransaction;
use crate::transfer::Transfer;

impl Endpoint {
    /// Asks the remote party to call `target` instead (blind transfer): sends REFER with
    /// `Refer-To: <target>` and `Referred-By: <our URI>` in the call's dialog.
    ///
    /// Then [`Event::Transfer`] for the REFER's 2xx and for each NOTIFY's status line; when
    /// the target answers, BYE follows and the call ends with
    /// [`EndReason::Transferred`](crate::EndReason::Transferred). A refused REFER, a failing
    /// status or no news in time give [`TransferUpdate::Failed`] and the call goes on.
    ///
    /// Only an established call, with no other transfer under way, can be transferred.
    pub fn transfer(
        &mut self,
        now: Instant,
        call: CallHandle,
        target: &str,
    ) -> Result<(), SipError> {
        let target = refer_target(target)?;
        let branch = self.new_branch();
        let first_notify = self.timers.transaction_timeout();
        self.call_in(call, "transfer", |c| {
            c.state == CallState::Confirmed
                && !c.transfer.as_deref().is_some_and(Transfer::is_pending)
        })?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(SipError::UnknownCall(call));
        };
        let headers = [
            rsip::Header::Other("Refer-To".into(), format!("<{}>", target.as_str())),
            rsip::Header::Other("Referred-By".into(), referred_by(&c.dialog.local_party)),
            rsip::Header::Contact(h::Contact::from(c.dialog.contact(&self.config))),
        ];
        let extra = Extra {
            headers: &headers,
            ..Extra::default()
        };
        let (transmit, _) = c.dialog.request("REFER", &branch, extra, &self.config);
        c.transfer = Some(Box::new(Transfer::new(branch.clone(), first_notify)));
        let tx =
            ClientNonInviteTransaction::new(now, call, "REFER", transmit.clone(), &self.timers);
        self.clients.insert(branch, tx);
        self.transmits.push_back(transmit);
        tracing::debug!(%call, "REFER");
        Ok(())
    }

    /// Our REFER got its final response, or none.
    pub(super) fn on_refer_outcome(&mut self, now: Instant, done: Completed<'_>) {
        let update = self
            .calls
            .get_mut(&done.call)
            .and_then(|c| c.transfer.as_mut())
            .filter(|t| t.branch == done.branch)
            .and_then(|t| t.on_refer_response(now, done.response));
        if let Some(update) = update {
            self.report_transfer(now, done.call, update);
        }
    }

    /// NOTIFY (RFC 6665, RFC 3515 2.4.5): 200 for the `refer` subscription of a transfer we
    /// asked for; 489 for another event package, 481 when there is no transfer.
    pub(super) fn on_notify(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let Some(handle) = self.in_dialog(source, request) else {
            return;
        };
        if !request
            .headers
            .first("Event")
            .is_some_and(message::is_refer_event)
        {
            let reply = Reply::new(489).reason("Bad Event");
            return self.respond_in_transaction(now, source, request, reply);
        }
        let state = request
            .headers
            .first("Subscription-State")
            .and_then(|v| SubscriptionState::parse(v).ok());
        let sipfrag = request
            .content_type
            .as_ref()
            .is_some_and(|ct| ct.kind == "message" && ct.subtype == "sipfrag");
        let frag = sipfrag.then(|| FragStatus::parse(&request.body)).flatten();
        let transfer = self
            .calls
            .get_mut(&handle)
            .and_then(|c| c.transfer.as_mut());
        let Some(transfer) = transfer else {
            let reply = Reply::new(481).reason("Subscription Does Not Exist");
            return self.respond_in_transaction(now, source, request, reply);
        };
        let update = transfer.on_notify(now, frag, state.as_ref());
        self.respond_in_transaction(now, source, request, Reply::new(200));
        if let Some(update) = update {
            self.report_transfer(now, handle, update);
        }
    }

    /// REFER from the remote party: refused with 403 (in its dialog, or outside any).
    pub(super) fn on_refer_request(&mut self, now: Instant, source: SocketAddr, request: &Request) {
        let reply = Reply::new(403).reason("Forbidden (voxline does not accept transfer requests)");
        if request.to.tag().is_none() {
            return self.respond_stateless(request, source, reply);
        }
        if let Some(handle) = self.in_dialog(source, request) {
            tracing::debug!(%handle, "REFER from the remote party refused");
            self.respond_in_transaction(now, source, request, reply);
        }
    }

    /// Tells the application; the target answered: BYE.
    fn report_transfer(&mut self, now: Instant, call: CallHandle, update: TransferUpdate) {
        tracing::debug!(%call, ?update, "transfer");
        let succeeded = matches!(update, TransferUpdate::Succeeded { .. });
        self.events.push_back(Event::Transfer { call, update });
        if succeeded {
            if let Err(e) = self.hangup(now, call) {
                tracing::debug!(%call, error = %e, "no BYE after the transfer");
            }
        }
    }

    /// A transfer's wait for its next NOTIFY ran out.
    pub(super) fn on_transfer_timeout(&mut self, now: Instant, call: CallHandle) {
        let update = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.transfer.as_mut())
            .and_then(|t| t.on_timeout(now));
        if let Some(update) = update {
            self.report_transfer(now, call, update);
        }
    }
}

/// The transfer target: a `sip:`, `sips:` or `tel:` URI, sent in angle brackets (so its own
/// parameters and `?headers` stay the URI's).
fn refer_target(target: &str) -> Result<Uri, SipError> {
    let invalid = || SipError::InvalidTarget(message::one_line(target));
    let uri = Uri::parse(target.trim()).map_err(|_| invalid())?;
    match &uri {
        Uri::Sip(_) => Ok(uri),
        Uri::Other(raw) if raw.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("tel:")) => Ok(uri),
        Uri::Other(_) => Err(invalid()),
    }
}

/// Referred-By (RFC 3892): our address in the dialog, without its tag.
fn referred_by(local_party: &str) -> String {
    match NameAddr::parse(local_party) {
        Ok(addr) => format!("<{}>", addr.uri.as_str()),
        Err(_) => local_party.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_sip_or_tel_uris() {
        assert_eq!(
            refer_target("sip:bob@192.0.2.1:5080").unwrap().as_str(),
            "sip:bob@192.0.2.1:5080"
        );
        assert!(refer_target("sips:bob@pbx.example.com").is_ok());
        assert!(refer_target("tel:+15551234567").is_ok());
        assert!(refer_target("sip:bob@example.com?Replaces=abc").is_ok());
        for bad in [
            "",
            "bob",
            "http://example.com",
            "sip:bob@example.com>\r\nVia: x",
            "<sip:bob@x>",
        ] {
            assert!(refer_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn referred_by_drops_the_tag() {
        assert_eq!(
            referred_by("\"Agent\" <sip:agent@example.com>;tag=abc"),
            "<sip:agent@example.com>"
        );
    }
}
