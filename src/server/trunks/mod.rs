//! Trunks: named carriers or PBXs that voxline calls out through and, when asked, registers
//! with.
//!
//! ```text
//! --trunk / [[trunk]] -> Trunk (trunk.rs) -> Trunks (this table, in ServerConfig)
//!   POST /v1/calls {"trunk": NAME} -> outbound.rs: Request-URI host, From, credentials,
//!                                     outbound proxy from the trunk; destination resolved
//!   register=yes -> resolve.rs (RFC 3263: NAPTR, SRV, A/AAAA) -> registrar.rs in the SIP
//!                   task (Endpoint::register; Event::Registration -> the status here)
//!   GET /v1/trunks <- api.rs (each trunk's registration state, expiry, last error)
//!   shutdown -> unregister() -> REGISTER Expires: 0 for each binding
//! ```

mod api;
pub mod dial;
mod registrar;
pub mod resolve;
pub mod trunk;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use api::list;
pub use registrar::{Registrar, TrunkCommand};
pub use trunk::{Transport, Trunk};

/// The configured trunks and where their registrations stand.
#[derive(Debug, Default)]
pub struct Trunks {
    defs: Vec<Trunk>,
    /// The DNS server for trunk host names (`--dns-server`); the system's resolver otherwise.
    pub dns_server: Option<SocketAddr>,
    status: Mutex<BTreeMap<String, Registration>>,
}

/// A trunk's registration, as `GET /v1/trunks` shows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registration {
    pub state: &'static str,
    pub expires_at: Option<Instant>,
    pub last_error: Option<(u16, String)>,
    pub registrar: Option<SocketAddr>,
    pub failures: u32,
}

impl Trunks {
    pub fn new(defs: Vec<Trunk>, dns_server: Option<SocketAddr>) -> Arc<Trunks> {
        let status = defs.iter().filter(|t| t.register).map(|t| (t.name.clone(), Registration { state: "resolving", ..Default::default() })).collect();
        Arc::new(Trunks { defs, dns_server, status: Mutex::new(status) })
    }

    /// Checks that trunk names are unique.
    pub fn check(defs: &[Trunk]) -> Result<(), String> {
        for (i, t) in defs.iter().enumerate() {
            if defs[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("two trunks are named `{}`", t.name));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Trunk> {
        self.defs.iter().find(|t| t.name == name)
    }

    pub fn all(&self) -> &[Trunk] {
        &self.defs
    }

    pub(crate) fn registration(&self, name: &str) -> Option<Registration> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub(crate) fn update(&self, name: &str, f: impl FnOnce(&mut Registration)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(status.entry(name.to_string()).or_default());
    }
}

/// Removes every registration (REGISTER with `Expires: 0`), waiting at most `within` for the
/// registrars' answers. Called once the calls are drained.
pub async fn unregister(server: &Arc<super::state::Server>, within: Duration) {
    if !server.config.trunks.all().iter().any(|t| t.register) {
        return;
    }
    let (reply, done) = tokio::sync::oneshot::channel();
    if server.sip.send(super::commands::SipCommand::Trunk(TrunkCommand::UnregisterAll { reply })).is_err() {
        return;
    }
    if tokio::time::timeout(within, done).await.is_err() {
        tracing::warn!("unregistering: not every registrar answered in time");
    }
}
