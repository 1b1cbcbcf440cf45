//! Registrations (RFC 3261 10.2): the endpoint sends each [`Registration`]'s REGISTERs through
//! a non-INVITE client transaction, routes their responses back, and reports every change of
//! state as [`Event::Registration`].

use std::time::Instant;

use rand::Rng;

use super::Endpoint;
use crate::error::SipError;
use crate::event::Event;
use crate::message::Response;
use crate::registration::{
    RegisterRequest, Registration, RegistrationHandle, RegistrationState, RegistrationStatus, Step,
};
use crate::transaction::client_non_invite::{ClientNonInviteTransaction, Outcome};
use crate::CallHandle;

impl Endpoint {
    /// Starts a registration: the first REGISTER goes out now. Then [`Event::Registration`]
    /// at each change of state; the binding is refreshed at half the granted expiry, and
    /// retried with backoff after a failure, until [`unregister`](Self::unregister).
    ///
    /// Nothing is sent when the request is refused ([`SipError::InvalidRegistration`]).
    pub fn register(
        &mut self,
        now: Instant,
        request: RegisterRequest,
    ) -> Result<RegistrationHandle, SipError> {
        let call_id = format!("{:016x}@{}", self.rng.gen::<u64>(), self.config.host_port());
        let tag = self.new_tag();
        let seq = self.rng.gen_range(1..0x8000_0000);
        let registration = Registration::new(request, call_id, &tag, seq, &self.config)?;
        let handle = RegistrationHandle::new(self.next_call);
        self.next_call += 1;
        self.registrations.insert(handle, registration);
        self.send_register(now, handle);
        Ok(handle)
    }

    /// Removes the binding: a REGISTER with `Expires: 0` when one may exist, then
    /// [`Event::Registration`] with [`RegistrationState::Unregistered`] once it is answered
    /// or unanswered (at once when nothing was registered).
    pub fn unregister(&mut self, now: Instant, handle: RegistrationHandle) -> Result<(), SipError> {
        let registration = self
            .registrations
            .get_mut(&handle)
            .ok_or(SipError::UnknownRegistration(handle))?;
        if registration.status().state == RegistrationState::Unregistering {
            return Ok(());
        }
        if registration.unregister(now) {
            self.send_register(now, handle);
        }
        self.report_registration(handle);
        Ok(())
    }

    /// Where a registration stands; `None` once it is unregistered.
    pub fn registration(&self, handle: RegistrationHandle) -> Option<&RegistrationStatus> {
        self.registrations.get(&handle).map(Registration::status)
    }

    /// Registrations not yet unregistered.
    pub fn registration_count(&self) -> usize {
        self.registrations.len()
    }

    /// Sends the registration's next REGISTER through a new transaction.
    fn send_register(&mut self, now: Instant, handle: RegistrationHandle) {
        let branch = self.new_branch();
        let cnonce = format!("{:016x}", self.rng.gen::<u64>());
        let Some(registration) = self.registrations.get_mut(&handle) else {
            return;
        };
        let transmit = registration.build(now, &branch, &cnonce, &self.config);
        // The transaction's owner is the registration, not a call.
        let owner = CallHandle::new(0);
        let tx =
            ClientNonInviteTransaction::new(now, owner, "REGISTER", transmit.clone(), &self.timers);
        registration.tx = Some((branch, tx));
        self.transmits.push_back(transmit);
    }

    /// A response whose CSeq says REGISTER. Returns false when it answers none of ours.
    pub(super) fn on_register_response(&mut self, now: Instant, response: &Response) -> bool {
        let Some(branch) = response.branch.as_deref() else {
            return false;
        };
        let found = self
            .registrations
            .iter()
            .find(|(_, r)| r.tx.as_ref().is_some_and(|(b, _)| b == branch))
            .map(|(h, _)| *h);
        let Some(handle) = found else {
            return false;
        };
        let Some(registration) = self.registrations.get_mut(&handle) else {
            return false;
        };
        let Some((_, tx)) = registration.tx.as_mut() else {
            return false;
        };
        if let Some(Outcome::Final(_)) = tx.on_response(now, response.status) {
            let before = registration.status().clone();
            let step = registration.on_final(now, response);
            self.after_step(now, handle, step, before);
        }
        true
    }

    /// Runs the timers of the registrations due: retransmissions, attempts unanswered,
    /// refreshes and retries.
    pub(super) fn on_registration_timers(&mut self, now: Instant) {
        for handle in self.registrations.due(now) {
            let Some(registration) = self.registrations.get_mut(&handle) else {
                continue;
            };
            let before = registration.status().clone();
            let mut timed_out = registration.attempt_expired(now);
            if let Some((_, tx)) = registration.tx.as_mut() {
                if tx.on_timeout(now, &self.timers, &mut self.transmits) == Some(Outcome::Timeout) {
                    timed_out = true;
                }
            }
            if timed_out {
                let step = registration.on_timeout(now);
                self.after_step(now, handle, step, before);
            } else if registration.attempt_due(now) {
                registration.new_round();
                self.send_register(now, handle);
                self.report_if_changed(handle, &before);
            }
        }
    }

    fn after_step(
        &mut self,
        now: Instant,
        handle: RegistrationHandle,
        step: Step,
        before: RegistrationStatus,
    ) {
        if step == Step::Send {
            self.send_register(now, handle);
        }
        self.report_if_changed(handle, &before);
    }

    fn report_if_changed(&mut self, handle: RegistrationHandle, before: &RegistrationStatus) {
        let changed = self.registrations.get(&handle).is_some_and(|r| {
            let now = r.status();
            now.state != before.state
                || now.expires_at != before.expires_at
                || now.last_error != before.last_error
                || now.failures != before.failures
        });
        if changed {
            self.report_registration(handle);
        }
    }

    /// Tells the application where the registration stands; forgets it once unregistered.
    fn report_registration(&mut self, handle: RegistrationHandle) {
        let Some(registration) = self.registrations.get(&handle) else {
            return;
        };
        let status = registration.status().clone();
        if status.state == RegistrationState::Unregistered {
            self.registrations.remove(&handle);
        }
        tracing::debug!(registration = handle.get(), state = ?status.state, "registration");
        self.events.push_back(Event::Registration {
            registration: handle,
            status,
        });
    }
}
