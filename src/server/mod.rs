//! `voxline serve`: SIP over UDP, the media plane, synthesis workers and the
//! HTTP API in one process.
//!
//! Threads: a tokio runtime for signaling, HTTP and media reception; pacing
//! threads for the calls' RTP (one per core, each with its share of the
//! calls, [`crate::media::Pacer`]); a fixed pool of synthesis threads
//! ([`crate::speech`]).

//!
//! Modules, leaves first (each imports only those above it):
//! `config`, `error`, `fanout`, `lifecycle`, `webhook`, `calls`, `commands`,
//! `decision`, `call_records` (the leaves); `state` (the shared [`Server`]); `drain`; `call_media`
//! (starting an answered call's media); the transports and sockets that use
//! them: `sip` (and `outbound`, the calls we place, which it drives), `control`,
//! `webrtc`, `twilio` (Media Streams), `events`, `web`, `tts_api` (OpenAI-compatible speech); `http` (the router).
//! This file only starts them.

pub mod call_media;
pub mod call_records;
pub mod calls;
pub mod commands;
pub mod config;
pub mod control;
pub mod decision;
pub mod drain;
pub mod error;
pub mod events;
pub mod fanout;
pub mod flood;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod outbound;
pub mod rtp_timeout;
pub mod sip;
pub mod sip_dialog;
pub mod sip_tcp;
pub mod state;
pub mod trunks;
pub mod tts_api;
pub mod twilio;
pub mod web;
pub mod webhook;
pub mod webrtc;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use crate::media::{Pacer, PortAllocator};
use crate::speech::{Speech, VoiceCatalog};
use crate::synth::Engine;
pub use config::{IceServer, ServerConfig, WebRtcConfig};
pub use state::Server;
use calls::Calls;

/// Addresses actually bound (port 0 in the config picks a free one).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub sip: SocketAddr,
    pub http: SocketAddr,
}

/// Binds everything, prepares the greeting, and runs until the process ends.
/// `ready` is called once the sockets are bound and the greeting is cached.
pub async fn serve(config: ServerConfig, engine: Arc<dyn Engine>, catalog: VoiceCatalog, ready: impl FnOnce(Bound)) -> Result<()> {
    raise_fd_limit();
    let speech = Speech::start(engine, catalog, config.speech.clone())?;
    {
        let speech = speech.clone();
        tokio::task::spawn_blocking(move || speech.warm_up()).await?.context("warming up the synthesizer")?;
    }
    if let Some(greeting) = &config.greeting {
        let speech = speech.clone();
        let greeting = greeting.clone();
        tokio::task::spawn_blocking(move || speech.prepare(&greeting)).await?.context("synthesizing the greeting")?;
    }
    let (sip_socket, sip_tcp_listener) = bind_sip(config.sip_listen).await?;
    let sip_addr = sip_socket.local_addr()?;
    let http_listener =
        tokio::net::TcpListener::bind(config.http_listen).await.with_context(|| format!("binding HTTP to {}", config.http_listen))?;
    let http_addr = http_listener.local_addr()?;

    let advertised = config.external_ip.map(|ip| (ip.to_string(), sip_addr.port()));
    let mut sip_config = voxline_sip::EndpointConfig::new(sip_addr);
    sip_config.advertised = advertised;
    sip_config.user_agent = config.user_agent.clone();
    sip_config.ack_timeout = config.ack_timeout;
    sip_config.session_expires = config.session_expires;
    sip_config.min_se = config.min_se;
    let endpoint = voxline_sip::Endpoint::new(sip_config);
    let (sip_tx, sip_rx) = mpsc::unbounded_channel();
    let webhook = config.webhook.as_deref().map(webhook::Webhook::new).transpose().context("--webhook")?;
    let server = Arc::new(Server {
        lifecycle: Default::default(),
        deciders: AtomicUsize::new(0),
        webhook,
        ports: PortAllocator::new(config.media_ip, config.rtp_ports.0, config.rtp_ports.1),
        pacer: Pacer::with_threads(config.pacer_threads).context("starting the pacing threads")?,
        calls: Calls::default(),
        speech,
        sip: sip_tx,
        draining: Default::default(),
        config,
    });
    let mut signals = drain::Signals::new().context("listening for SIGTERM/SIGINT")?;
    let sip_tcp = sip_tcp::SipTcp::start(sip_tcp_listener, endpoint.config().max_message);
    let mut sip_task = tokio::spawn(sip::run(server.clone(), sip_socket, sip_tcp, endpoint, sip_rx));
    let app = http::router(server.clone());
    let http_limits = server.config.http_limits;
    let mut http_task = tokio::spawn(listener::serve(http_listener, app, http_limits));
    ready(Bound { sip: sip_addr, http: http_addr });
    tokio::select! {
        r = &mut sip_task => r.context("SIP task")?,
        r = &mut http_task => r.context("HTTP task")?.context("HTTP server")?,
        which = signals.next() => {
            tracing::info!(signal = which, "stopping");
            let timeout = server.config.drain_timeout;
            drain::drain(&server, &mut signals, timeout).await;
            trunks::unregister(&server, std::time::Duration::from_secs(3)).await;
        }
    }
    Ok(())
}

/// Each call holds four sockets; lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// SIP's UDP socket and TCP listener on one address and port. With port 0 the OS picks
/// the UDP port, which may be taken on TCP by someone else: then another pick, a few
/// times. A port given explicitly must be free on both.
async fn bind_sip(listen: std::net::SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut attempts = 0;
    loop {
        let udp = tokio::net::UdpSocket::bind(listen).await.with_context(|| format!("binding SIP to {listen}"))?;
        let addr = udp.local_addr()?;
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && attempts < 20 => attempts += 1,
            Err(e) => return Err(e).with_context(|| format!("binding SIP over TCP to {addr}")),
        }
    }
}
