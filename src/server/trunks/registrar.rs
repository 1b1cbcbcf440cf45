//! The SIP task's side of registrations: a registration per trunk with `register=yes` once its
//! addresses are resolved, each [`Event::Registration`](voxline_sip::Event::Registration) into
//! the trunk table, and removal at shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use voxline_sip::{Endpoint, RegisterRequest, RegistrationHandle, RegistrationState, RegistrationStatus};

use super::super::commands::SipCommand;
use super::super::state::Server;
use super::{resolve, Trunks};

/// What the SIP task is asked to do for trunks.
#[derive(Debug)]
pub enum TrunkCommand {
    /// A trunk's addresses are resolved: register there, in this order.
    Register { trunk: String, destinations: Vec<SocketAddr> },
    /// Shutdown: remove every binding; `reply` once all are gone.
    UnregisterAll { reply: oneshot::Sender<()> },
}

/// The registrations the SIP task keeps.
pub struct Registrar {
    trunks: Arc<Trunks>,
    handles: BTreeMap<RegistrationHandle, String>,
    done: Option<oneshot::Sender<()>>,
}

impl Registrar {
    /// Resolves each registering trunk's address (a task per trunk) and asks the SIP task to
    /// register it.
    pub fn start(server: &Arc<Server>) -> Registrar {
        let trunks = server.config.trunks.clone();
        for trunk in trunks.all().iter().filter(|t| t.register).cloned() {
            let server = server.clone();
            tokio::spawn(async move {
                let trunks = &server.config.trunks;
                let (host, port) = match &trunk.proxy {
                    Some(proxy) => super::trunk::host_port(proxy).unwrap_or((proxy.clone(), None)),
                    None => (trunk.host.clone(), trunk.port),
                };
                match resolve::targets(&host, port, trunk.transport, trunks.dns_server).await {
                    Ok(destinations) => {
                        tracing::info!(trunk = %trunk.name, ?destinations, "registering");
                        let _ = server.sip.send(SipCommand::Trunk(TrunkCommand::Register { trunk: trunk.name.clone(), destinations }));
                    }
                    Err(e) => {
                        tracing::warn!(trunk = %trunk.name, error = %e, "cannot resolve the registrar; not registering");
                        trunks.update(&trunk.name, |r| {
                            r.state = "failed";
                            r.last_error = Some((0, e));
                        });
                    }
                }
            });
        }
        Registrar { trunks, handles: BTreeMap::new(), done: None }
    }

    pub fn on_command(&mut self, endpoint: &mut Endpoint, command: TrunkCommand) {
        let now = Instant::now();
        match command {
            TrunkCommand::Register { trunk, destinations } => {
                let Some(t) = self.trunks.get(&trunk) else { return };
                if self.done.is_some() {
                    return; // shutting down
                }
                let Some(&first) = destinations.first() else { return };
                let mut request = RegisterRequest::new(t.registrar(), t.aor(), first, t.expires);
                request.destinations = destinations;
                request.credentials = t.credentials();
                request.retry = t.retry;
                request.retry_max = t.retry.max(Duration::from_secs(1800));
                request.attempt_timeout = t.timeout;
                request.transport = t.transport;
                match endpoint.register(now, request) {
                    Ok(handle) => {
                        self.handles.insert(handle, trunk.clone());
                        self.trunks.update(&trunk, |r| {
                            r.state = "registering";
                            r.registrar = Some(first);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(trunk, error = %e, "cannot register");
                        self.trunks.update(&trunk, |r| {
                            r.state = "failed";
                            r.last_error = Some((0, e.to_string()));
                        });
                    }
                }
            }
            TrunkCommand::UnregisterAll { reply } => {
                self.done = Some(reply);
                for handle in self.handles.keys().copied().collect::<Vec<_>>() {
                    let _ = endpoint.unregister(now, handle);
                }
                self.finish_if_done();
            }
        }
    }

    /// A registration changed state.
    pub fn on_event(&mut self, handle: RegistrationHandle, status: &RegistrationStatus) {
        let Some(trunk) = self.handles.get(&handle).cloned() else { return };
        let state = match status.state {
            RegistrationState::Registering => "registering",
            RegistrationState::Registered => "registered",
            RegistrationState::Failed => "failed",
            RegistrationState::Unregistering => "unregistering",
            _ => "unregistered",
        };
        match &status.last_error {
            Some((code, reason)) if status.state == RegistrationState::Failed => {
                tracing::warn!(trunk, status = code, %reason, failures = status.failures, "registration failed; retrying later")
            }
            _ => tracing::info!(trunk, state, registrar = %status.destination, "registration"),
        }
        self.trunks.update(&trunk, |r| {
            r.state = state;
            r.expires_at = status.expires_at;
            r.registrar = Some(status.destination);
            r.failures = status.failures;
            if status.last_error.is_some() || status.state == RegistrationState::Registered {
                r.last_error = status.last_error.clone();
            }
            if status.state == RegistrationState::Unregistered {
                r.expires_at = None;
            }
        });
        if status.state == RegistrationState::Unregistered {
            self.handles.remove(&handle);
            self.finish_if_done();
        }
    }

    fn finish_if_done(&mut self) {
        if self.handles.is_empty() {
            if let Some(reply) = self.done.take() {
                let _ = reply.send(());
            }
        }
    }
}
