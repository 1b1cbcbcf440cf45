//! `voxline serve`: SIP over UDP, the media plane, synthesis workers and the
//! HTTP API in one process.
//!
//! Threads: a tokio runtime for signaling, HTTP and media reception; one
//! pacing thread for every call's RTP; a fixed pool of synthesis threads
//! ([`crate::speech`]).

pub mod calls;
pub mod control;
pub mod events;
pub mod http;
pub mod sip;
pub mod web;
pub mod webhook;
pub mod webrtc;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::{broadcast, mpsc};

use crate::media::{MediaConfig, MediaEvent, Pacer, PortAllocator};
use crate::synth::Engine;
use calls::{Call, Calls};
use sip::SipCommand;
use crate::speech::{Speech, SpeechConfig, VoiceCatalog};

/// Everything `voxline serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub sip_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// The address put in SDP and Contact (public address behind NAT).
    pub external_ip: Option<IpAddr>,
    /// Where RTP sockets are bound.
    pub media_ip: IpAddr,
    pub rtp_ports: (u16, u16),
    pub greeting: Option<String>,
    pub max_calls: usize,
    /// Ring (180) this long before answering; zero answers at once.
    pub ring: Duration,
    /// End a call when no RTP arrived for this long.
    pub rtp_timeout: Option<Duration>,
    /// Synthesis workers, scheduling and admission.
    pub speech: SpeechConfig,
    pub media: MediaConfig,
    pub answer_policy: voxline_sdp::AnswerPolicy,
    pub user_agent: String,
    /// Bearer token required by the HTTP API and sockets (none: open).
    pub api_token: Option<String>,
    /// Voice options every call starts with (speaker, scales, preset).
    pub synth: crate::synth::SynthOptions,
    /// Announce incoming calls here (POST) and take its decision.
    pub webhook: Option<String>,
    /// Sent as `Authorization: Bearer` with webhook requests.
    pub webhook_token: Option<String>,
    /// How long a call rings waiting for an agent's accept or reject before
    /// the default (answer, greeting) applies.
    pub decision_timeout: Duration,
    /// How browsers reach us (ICE servers, candidate addresses).
    pub webrtc: webrtc::WebRtcConfig,
    /// Serve the demo page from here (development) instead of the built-in copy.
    pub web_dir: Option<std::path::PathBuf>,
}

/// An event about a call, for whoever listens (logs now; agents' sockets later).
#[derive(Debug, Clone)]
pub struct CallEvent {
    pub call: String,
    pub event: MediaEvent,
}

/// Shared state of a running server.
pub struct Server {
    pub config: ServerConfig,
    pub calls: Calls,
    pub speech: Arc<Speech>,
    pub pacer: Arc<Pacer>,
    pub ports: PortAllocator,
    pub sip: mpsc::UnboundedSender<SipCommand>,
    pub events: broadcast::Sender<CallEvent>,
    /// Call lifecycle events (JSON) for the events socket and the webhook.
    pub lifecycle: broadcast::Sender<serde_json::Value>,
    /// Events sockets connected with `?decide=true`.
    pub deciders: AtomicUsize,
    pub webhook: Option<webhook::Webhook>,
}

impl Server {
    /// Hands a call's media event to subscribers.
    pub fn publish(&self, call: &Call, event: MediaEvent) {
        let _ = self.events.send(CallEvent { call: call.id.clone(), event });
    }

    /// Publishes a lifecycle event to events sockets and the webhook.
    pub fn lifecycle(self: &Arc<Self>, event: serde_json::Value) {
        if let Some(hook) = &self.webhook {
            if event["type"] != "call.incoming" {
                let server = self.clone();
                let event = event.clone();
                let url = hook.url().to_owned();
                tokio::spawn(async move {
                    let Some(hook) = &server.webhook else { return };
                    if let Err(e) = hook.post(&event, server.config.webhook_token.as_deref(), Duration::from_secs(5)).await {
                        tracing::warn!(%url, error = %e, "webhook notification failed");
                    }
                });
            }
        }
        let _ = self.lifecycle.send(event);
    }

    /// A call refused for load: `call.rejected` for the events socket and the webhook.
    pub fn rejected(self: &Arc<Self>, transport: &str, id: &str, refusal: &crate::speech::Refusal) {
        tracing::warn!(transport, id, reason = %refusal.reason, "call refused");
        self.lifecycle(serde_json::json!({"type": "call.rejected", "transport": transport, "id": id,
            "reason": refusal.reason, "retry_after_s": refusal.retry_after.as_secs()}));
    }

    /// Ends a call from our side: BYE for SIP, closing the peer connection for WebRTC.
    pub fn hangup(&self, call: &Call, reason: &'static str) {
        match &call.leg {
            calls::Leg::Sip(handle) => {
                let _ = self.sip.send(SipCommand::Hangup { call: *handle, reason });
            }
            calls::Leg::WebRtc(close) => {
                tracing::info!(call = %call.id, reason, "hanging up the WebRTC call");
                close.notify_one();
            }
        }
    }

    /// The call is over: its sockets hear `call.ended`, and so do the events socket and webhook.
    pub fn ended(self: &Arc<Self>, call: &Call, reason: &str) {
        self.publish(call, MediaEvent::Ended { reason: reason.into() });
        self.lifecycle(serde_json::json!({"type": "call.ended", "call": call.id, "reason": reason}));
    }

    /// Announces a new call. Returns whether an agent may decide on it (a
    /// deciding events socket is connected, or a webhook is configured, whose
    /// answer comes back as a [`SipCommand::Decide`]).
    pub fn announce_incoming(self: &Arc<Self>, call: &Call, request_uri: String, timeout: Duration) -> bool {
        let headers: serde_json::Map<String, serde_json::Value> =
            call.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
        let event = serde_json::json!({"type": "call.incoming", "call": call.id, "sip_call_id": call.sip_call_id,
            "from": call.from, "to": call.to, "request_uri": request_uri, "source": call.signaling_peer.to_string(),
            "headers": headers, "decide_within_ms": timeout.as_millis() as u64});
        let deciding = self.deciders.load(Ordering::Relaxed) > 0 || self.webhook.is_some();
        if self.webhook.is_some() {
            let server = self.clone();
            let (event, id) = (event.clone(), call.id.clone());
            tokio::spawn(async move { events::ask_webhook(server, id, event, timeout).await });
        }
        self.lifecycle(event);
        deciding
    }
}

/// An agent's `greeting` field (call decisions, WebRTC offers): absent or
/// `true` is `None` (the configured greeting), `false` is `Some("")` (none),
/// a string is that text. Errors are `(code, message)`.
pub(crate) fn parse_greeting(value: Option<serde_json::Value>) -> Result<Option<String>, (&'static str, String)> {
    use serde_json::Value;
    match value {
        None | Some(Value::Bool(true)) | Some(Value::Null) => Ok(None),
        Some(Value::Bool(false)) => Ok(Some(String::new())),
        Some(Value::String(text)) if text.chars().count() <= crate::synth::MAX_REQUEST_CHARS => Ok(Some(text)),
        Some(Value::String(_)) => Err(("text_too_long", "the greeting is too long".into())),
        Some(other) => Err(("invalid_message", format!("`greeting` is true, false or a text, not {other}"))),
    }
}

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
    let sip_socket = tokio::net::UdpSocket::bind(config.sip_listen).await.with_context(|| format!("binding SIP to {}", config.sip_listen))?;
    let sip_addr = sip_socket.local_addr()?;
    let http_listener =
        tokio::net::TcpListener::bind(config.http_listen).await.with_context(|| format!("binding HTTP to {}", config.http_listen))?;
    let http_addr = http_listener.local_addr()?;

    let advertised = config.external_ip.map(|ip| (ip.to_string(), sip_addr.port()));
    let mut sip_config = voxline_sip::EndpointConfig::new(sip_addr);
    sip_config.advertised = advertised;
    sip_config.user_agent = config.user_agent.clone();
    let endpoint = voxline_sip::Endpoint::new(sip_config);
    let (sip_tx, sip_rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(1024);
    let (lifecycle, _) = broadcast::channel(1024);
    let webhook = config.webhook.as_deref().map(webhook::Webhook::new).transpose().context("--webhook")?;
    let server = Arc::new(Server {
        lifecycle,
        deciders: AtomicUsize::new(0),
        webhook,
        ports: PortAllocator::new(config.media_ip, config.rtp_ports.0, config.rtp_ports.1),
        pacer: Pacer::start().context("starting the pacing thread")?,
        calls: Calls::default(),
        speech,
        sip: sip_tx,
        events,
        config,
    });
    let sip_task = tokio::spawn(sip::run(server.clone(), sip_socket, endpoint, sip_rx));
    let app = http::router(server.clone());
    let http_task = tokio::spawn(async move { axum::serve(http_listener, app).await });
    ready(Bound { sip: sip_addr, http: http_addr });
    tokio::select! {
        r = sip_task => r.context("SIP task")?,
        r = http_task => r.context("HTTP task")?.context("HTTP server")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
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
