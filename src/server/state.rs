//! The running server's shared state, and what any part of it may ask of
//! the whole: publish a lifecycle event, hang a call up, end it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::calls::{Call, Calls, Leg};
use super::commands::SipCommand;
use super::config::ServerConfig;
use super::fanout::Fanout;
use super::lifecycle::LifecycleEvent;
use super::webhook::Webhook;
use crate::media::{MediaEvent, Pacer, PortAllocator};
use crate::metrics::metrics;
use crate::speech::{Refusal, Speech};

/// Shared state of a running server.
pub struct Server {
    pub config: ServerConfig,
    pub calls: Calls,
    pub speech: Arc<Speech>,
    pub pacer: Arc<Pacer>,
    pub ports: PortAllocator,
    pub sip: mpsc::UnboundedSender<SipCommand>,
    /// Call lifecycle events for the events sockets (the webhook is posted
    /// directly).
    pub lifecycle: Fanout<LifecycleEvent>,
    /// Events sockets connected with `?decide=true`.
    pub deciders: AtomicUsize,
    pub webhook: Option<Webhook>,
    /// Set on SIGTERM/SIGINT: new calls are refused while live ones finish.
    pub draining: AtomicBool,
}

/// What a draining server tells new callers: try again (elsewhere) shortly.
const DRAIN_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Server {
    /// Publishes a lifecycle event to events sockets and the webhook.
    /// An answered call is connected to its agent in agent-URL mode here, whatever its transport.
    pub fn lifecycle(self: &Arc<Self>, event: LifecycleEvent) {
        if let LifecycleEvent::Answered { call } = &event {
            if let Some(call) = self.calls.get(call) {
                super::control::agent_url::connect(self, call);
            }
        }
        if let Some(hook) = &self.webhook {
            if !event.is_incoming() {
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
        self.lifecycle.publish(event);
    }

    /// Whether a new call may be taken (`transport`, `id`: for the
    /// `call.rejected` event): not while draining, not beyond `--max-calls`,
    /// not when the synthesizer cannot keep its first-audio target.
    pub fn admit(self: &Arc<Self>, transport: &'static str, id: &str) -> Result<(), Refusal> {
        let refusal = if self.is_draining() {
            Refusal { reason: "shutting down".into(), retry_after: DRAIN_RETRY_AFTER }
        } else if self.calls.len() >= self.config.max_calls {
            Refusal { reason: "at capacity".into(), retry_after: DRAIN_RETRY_AFTER }
        } else {
            match self.speech.admit(self.calls.len()) {
                Ok(()) => return Ok(()),
                Err(refusal) => refusal,
            }
        };
        self.rejected(transport, id, &refusal);
        Err(refusal)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// While draining, the Retry-After (seconds) new callers and health probes are told.
    pub fn drain_retry_after(&self) -> Option<u32> {
        self.is_draining().then_some(DRAIN_RETRY_AFTER.as_secs() as u32)
    }

    /// A call refused for load: `call.rejected` for the events socket and the webhook.
    pub fn rejected(self: &Arc<Self>, transport: &'static str, id: &str, refusal: &Refusal) {
        tracing::warn!(transport, id, reason = %refusal.reason, "call refused");
        metrics().calls_total.with_label_values(&[transport, "inbound", "rejected"]).inc();
        self.lifecycle(LifecycleEvent::Rejected {
            transport,
            id: id.to_owned(),
            reason: refusal.reason.clone(),
            retry_after_s: refusal.retry_after.as_secs(),
        });
    }

    /// Ends a call from our side: BYE for SIP, closing the peer connection
    /// for WebRTC, closing the WebSocket for a Twilio Media Stream.
    pub fn hangup(&self, call: &Call, reason: &'static str) {
        match &call.leg {
            Leg::Sip(handle) => {
                let _ = self.sip.send(SipCommand::Hangup { call: *handle, reason });
            }
            Leg::WebRtc(close) | Leg::Twilio(close) => {
                tracing::info!(call = %call.id, transport = call.transport(), reason, "hanging up");
                close.notify_one();
            }
        }
    }

    /// The call is over: its record is written, its sockets hear
    /// `call.ended`, and so do the events socket and webhook.
    /// A cause the call recorded ([`Call::set_end_cause`]) replaces `reason`.
    pub fn ended(self: &Arc<Self>, call: &Call, reason: &str) {
        let reason = call.end_cause().unwrap_or(reason);
        metrics().calls_total.with_label_values(&[call.transport(), call.direction.name(), reason]).inc();
        self.config.call_records.write(&super::call_records::CallRecord::of(call, reason));
        call.events.publish(MediaEvent::Ended { reason: reason.into() });
        self.lifecycle(LifecycleEvent::Ended { call: call.id.clone(), reason: reason.into() });
    }

    /// Announces a new call. Returns whether an agent may decide on it (a
    /// deciding events socket is connected, or a webhook is configured, whose
    /// answer comes back as a [`SipCommand::Decide`]).
    pub fn announce_incoming(self: &Arc<Self>, call: &Call, request_uri: String, timeout: Duration) -> bool {
        let event = LifecycleEvent::Incoming {
            call: call.id.clone(),
            sip_call_id: call.sip_call_id.clone(),
            from: call.from.clone(),
            to: call.to.clone(),
            request_uri,
            source: call.signaling_peer.to_string(),
            headers: call.headers.iter().cloned().collect(),
            decide_within_ms: timeout.as_millis() as u64,
        };
        let deciding = self.deciders.load(Ordering::Relaxed) > 0 || self.webhook.is_some();
        if self.webhook.is_some() {
            let server = self.clone();
            let event = event.clone();
            tokio::spawn(async move {
                let Some(hook) = &server.webhook else { return };
                let token = server.config.webhook_token.as_deref();
                super::decision::ask_webhook(hook, token, &server.speech, &server.sip, &event, timeout).await
            });
        }
        self.lifecycle(event);
        deciding
    }
}
