//! The HTTP listener: hyper's HTTP/1.1 server with the limits a public
//! address needs and `axum::serve` does not set.
//!
//! * **Header-read timeout**: a client that sends its request headers slowly,
//!   or nothing at all, is dropped after [`HttpLimits::header_timeout`]; the
//!   same timer runs while a keep-alive connection waits for its next request,
//!   so an idle connection is closed after it too. A WebSocket, once
//!   upgraded, is no longer HTTP and is not timed (its own protocol is).
//! * **Connections per client address** ([`HttpLimits::max_per_ip`]): one
//!   address cannot hold every file descriptor; beyond the cap a new
//!   connection is closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The HTTP side's limits (`--http-header-timeout`, `--http-max-conns-per-ip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(10), max_per_ip: 256 }
    }
}

/// Open connections per client address (HTTP's, and SIP over TCP's in [`super::sip_tcp`]).
#[derive(Debug, Default)]
pub(super) struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection; counted while it lives.
pub(super) struct Slot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub(super) fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { table: self.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until accepting fails for good.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) -> io::Result<()> {
    let per_ip = Arc::new(PerIp::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient(&e) => {
                // Out of file descriptors or a connection reset before accept: back off a moment.
                tracing::warn!(error = %e, "HTTP accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(slot) = per_ip.acquire(peer.ip(), limits.max_per_ip) else {
            tracing::info!(%peer, max = limits.max_per_ip, "too many HTTP connections from one address; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut app = app.clone();
                async move { Ok::<_, Infallible>(tower_service::Service::call(&mut app, request.map(Body::new)).await.unwrap_or_else(|e| match e {})) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
        || e.raw_os_error().is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_a_closed_connection_gives_its_slot_back() {
        let table = Arc::new(PerIp::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| table.acquire(a, 3).expect("under the cap")).collect();
        assert!(table.acquire(a, 3).is_none(), "the fourth from one address");
        assert!(table.acquire(b, 3).is_some(), "another address has its own count");
        drop(held);
        assert!(table.acquire(a, 3).is_some(), "slots come back when connections close");
        assert!(table.open.lock().unwrap().is_empty(), "nothing left for closed connections");
    }
}
