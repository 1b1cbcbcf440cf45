//! `GET /v1/trunks`: each trunk, and where its registration stands.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::super::state::Server;

/// `200` to `GET /v1/trunks`.
#[derive(Debug, Serialize)]
pub struct TrunkList {
    pub trunks: Vec<TrunkInfo>,
}

/// One trunk (its password never appears).
#[derive(Debug, Serialize)]
pub struct TrunkInfo {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub transport: &'static str,
    pub proxy: Option<String>,
    pub username: Option<String>,
    pub from: String,
    /// `null` when the trunk does not register.
    pub registration: Option<RegistrationInfo>,
}

/// A trunk's registration.
#[derive(Debug, Serialize)]
pub struct RegistrationInfo {
    /// `resolving`, `registering`, `registered`, `failed`, `unregistering` or `unregistered`.
    pub state: &'static str,
    /// The registrar's address the last REGISTER went to.
    pub registrar: Option<String>,
    /// Seconds until the binding expires unless refreshed (`null` when none is known).
    pub expires_in: Option<u64>,
    /// Failed attempts in a row.
    pub failures: u32,
    pub last_error: Option<LastError>,
}

/// The last failure: a SIP status (408 when nothing answered; 0 for a DNS failure) and why.
#[derive(Debug, Serialize)]
pub struct LastError {
    pub status: u16,
    pub reason: String,
}

pub async fn list(State(server): State<Arc<Server>>) -> Json<TrunkList> {
    let trunks = &server.config.trunks;
    let now = Instant::now();
    let trunks = trunks
        .all()
        .iter()
        .map(|t| TrunkInfo {
            name: t.name.clone(),
            host: t.host.clone(),
            port: t.port,
            transport: t.transport.param(),
            proxy: t.proxy.clone(),
            username: t.username.clone(),
            from: t.from(),
            registration: t.register.then(|| {
                let r = trunks.registration(&t.name).unwrap_or_default();
                RegistrationInfo {
                    state: if r.state.is_empty() { "resolving" } else { r.state },
                    registrar: r.registrar.map(|a| a.to_string()),
                    expires_in: r.expires_at.map(|at| at.saturating_duration_since(now).as_secs()),
                    failures: r.failures,
                    last_error: r.last_error.map(|(status, reason)| LastError { status, reason }),
                }
            }),
        })
        .collect();
    Json(TrunkList { trunks })
}
