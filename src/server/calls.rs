//! The calls a server has, and what it tells about them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::task::JoinHandle;

use super::fanout::{self, Fanout};
use crate::media::{CallMedia, MediaEvent};
use crate::synth::{CancelToken, Preset};

/// The SIP core's handle for a call.
pub type SipHandle = voxline_sip::CallHandle;

/// How the call reached us, and so how it is hung up.
#[derive(Debug, Clone)]
pub enum Leg {
    /// SIP over UDP: the SIP task sends the BYE.
    Sip(SipHandle),
    /// A browser over WebRTC: notifying this closes the peer connection.
    WebRtc(Arc<tokio::sync::Notify>),
    /// A Twilio Media Stream: notifying this closes the WebSocket.
    Twilio(Arc<tokio::sync::Notify>),
}

/// Who called whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The caller called us (SIP INVITE, a browser's offer).
    Inbound,
    /// We called (`POST /v1/calls`).
    Outbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// 180 sent; answered after the configured ring time. A call we placed:
    /// not answered yet.
    Ringing,
    /// Answered, waiting for the caller's ACK.
    Answered,
    /// ACK received.
    Active,
    /// BYE sent or received; media stopped.
    Ended,
}

/// Caller audio may be dropped for a slow control socket; every other
/// event reaches it.
impl fanout::Event for MediaEvent {
    fn droppable(&self) -> bool {
        matches!(self, MediaEvent::CallerAudio { .. })
    }
}

/// The greeting the call was answered with, for the sockets that attach
/// (its events are theirs as turn `greeting`).
#[derive(Debug, Clone)]
pub struct Greeting {
    pub utterance: crate::media::UtteranceId,
    pub text: String,
    /// When it was queued: its `ttfa_ms` counts from here.
    pub queued: Instant,
}

/// One call.
pub struct Call {
    /// Our id for the call (URLs, events).
    pub id: String,
    pub leg: Leg,
    pub direction: Direction,
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    /// The INVITE's `X-` headers.
    pub headers: Vec<(String, String)>,
    pub signaling_peer: SocketAddr,
    pub media: Arc<CallMedia>,
    /// The call's media events, for its control sockets (see [`Fanout`]'s drop policy).
    pub events: Fanout<MediaEvent>,
    pub started: SystemTime,
    pub started_at: Instant,
    state: Mutex<CallState>,
    /// Every synthesis job of the call, cancelled on hangup.
    cancels: Mutex<Vec<CancelToken>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Our SDP session version (bumped per re-INVITE answer).
    pub sdp_version: Mutex<u64>,
    pub sdp_session: u64,
    /// Voice and preset chosen for the call when it was accepted.
    synth: Mutex<(Option<String>, Option<Preset>)>,
    greeting: Mutex<Option<Greeting>>,
    /// The agent voxline connects to for this call (a decision's `agent_url`).
    agent: Mutex<Option<super::control::AgentTarget>>,
    /// Why we ended the call, when that says more than our hangup did (`agent_unreachable`).
    end_cause: Mutex<Option<&'static str>>,
    /// Notified when the call's speech is cleared (Twilio's leg sends `clear`).
    pub speech_cleared: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        leg: Leg,
        sip_call_id: String,
        from: String,
        to: String,
        headers: Vec<(String, String)>,
        signaling_peer: SocketAddr,
        media: Arc<CallMedia>,
        sdp_session: u64,
    ) -> Self {
        Self {
            id,
            leg,
            direction: Direction::Inbound,
            sip_call_id,
            from,
            to,
            headers,
            signaling_peer,
            media,
            events: Fanout::default(),
            started: SystemTime::now(),
            started_at: Instant::now(),
            state: Mutex::new(CallState::Ringing),
            cancels: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            sdp_version: Mutex::new(1),
            sdp_session,
            synth: Mutex::new((None, None)),
            greeting: Mutex::new(None),
            agent: Mutex::new(None),
            end_cause: Mutex::new(None),
            speech_cleared: tokio::sync::Notify::new(),
        }
    }

    /// The same call, placed by us.
    pub fn outbound(self) -> Self {
        Self { direction: Direction::Outbound, ..self }
    }

    /// The call's voice and preset (the server's defaults where `None`).
    pub fn synth(&self) -> (Option<String>, Option<Preset>) {
        lock(&self.synth).clone()
    }

    pub fn set_synth(&self, voice: Option<String>, preset: Option<Preset>) {
        *lock(&self.synth) = (voice, preset);
    }

    pub fn agent(&self) -> Option<super::control::AgentTarget> {
        lock(&self.agent).clone()
    }

    pub fn set_agent(&self, agent: Option<super::control::AgentTarget>) {
        *lock(&self.agent) = agent;
    }

    /// The reason `call.ended` gives instead of the transport's own.
    pub fn end_cause(&self) -> Option<&'static str> {
        *lock(&self.end_cause)
    }

    pub fn set_end_cause(&self, cause: &'static str) {
        *lock(&self.end_cause) = Some(cause);
    }

    pub fn greeting(&self) -> Option<Greeting> {
        lock(&self.greeting).clone()
    }

    pub fn set_greeting(&self, greeting: Greeting) {
        *lock(&self.greeting) = Some(greeting);
    }

    /// The SIP handle of a SIP call.
    pub fn sip(&self) -> Option<SipHandle> {
        match self.leg {
            Leg::Sip(handle) => Some(handle),
            Leg::WebRtc(_) | Leg::Twilio(_) => None,
        }
    }

    /// `"sip"`, `"webrtc"` or `"twilio"`.
    pub fn transport(&self) -> &'static str {
        match self.leg {
            Leg::Sip(_) => "sip",
            Leg::WebRtc(_) => "webrtc",
            Leg::Twilio(_) => "twilio",
        }
    }

    pub fn state(&self) -> CallState {
        *lock(&self.state)
    }

    pub fn set_state(&self, state: CallState) {
        *lock(&self.state) = state;
    }

    /// A cancel token for a new synthesis job of this call.
    pub fn cancel_token(&self) -> CancelToken {
        let token = CancelToken::new();
        let mut all = lock(&self.cancels);
        all.retain(|t| !t.is_cancelled());
        all.push(token.clone());
        token
    }

    /// Cancels every synthesis job of the call (barge-in, hangup), and
    /// tells a leg that buffers audio downstream to drop it ([`Call::speech_cleared`]).
    pub fn cancel_speech(&self) {
        for token in lock(&self.cancels).drain(..) {
            token.cancel();
        }
        self.speech_cleared.notify_one();
    }

    pub fn add_task(&self, task: JoinHandle<()>) {
        lock(&self.tasks).push(task);
    }

    /// Stops media, synthesis and the call's tasks.
    pub fn end(&self) {
        self.set_state(CallState::Ended);
        self.media.close();
        self.cancel_speech();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    pub fn info(&self) -> CallInfo {
        let s = &self.media.stats;
        let peer = self.media.peer_report();
        let remote = self.media.remote();
        CallInfo {
            id: self.id.clone(),
            transport: self.transport(),
            direction: self.direction,
            sip_call_id: self.sip_call_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            headers: self.headers.iter().cloned().collect(),
            state: self.state(),
            started_unix_ms: self.started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            duration_ms: self.started_at.elapsed().as_millis() as u64,
            remote_rtp: remote.rtp.to_string(),
            local_rtp: self.media.local_rtp().map(|a| a.to_string()).unwrap_or_default(),
            payload_type: remote.payload_type,
            on_hold: !remote.send,
            stats: CallStats {
                packets_sent: s.packets_sent.load(Ordering::Relaxed),
                octets_sent: s.octets_sent.load(Ordering::Relaxed),
                speech_frames: s.speech_frames.load(Ordering::Relaxed),
                underruns: s.underruns.load(Ordering::Relaxed),
                late_sends: s.late_sends.load(Ordering::Relaxed),
                skipped_ticks: s.skipped_ticks.load(Ordering::Relaxed),
                send_errors: s.send_errors.load(Ordering::Relaxed),
                packets_received: s.packets_received.load(Ordering::Relaxed),
                packets_rejected: s.packets_rejected.load(Ordering::Relaxed),
                dtmf_received: s.dtmf_received.load(Ordering::Relaxed),
                peer_fraction_lost: peer.fraction_lost,
                peer_total_lost: peer.total_lost,
                peer_jitter_ms: peer.jitter_ms,
                rtt_ms: peer.rtt.map(|d| d.as_secs_f32() * 1000.0),
            },
        }
    }
}

/// A call as the HTTP API shows it.
#[derive(Debug, Serialize)]
pub struct CallInfo {
    pub id: String,
    /// `sip` or `webrtc`.
    pub transport: &'static str,
    /// `inbound` or `outbound`.
    pub direction: Direction,
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    pub headers: HashMap<String, String>,
    pub state: CallState,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
    pub remote_rtp: String,
    pub local_rtp: String,
    pub payload_type: u8,
    pub on_hold: bool,
    pub stats: CallStats,
}

/// Per-call counters.
#[derive(Debug, Serialize)]
pub struct CallStats {
    pub packets_sent: u64,
    pub octets_sent: u64,
    pub speech_frames: u64,
    /// Frames sent as silence inside an utterance because synthesis was late.
    pub underruns: u64,
    /// Packets sent more than 10 ms after their deadline.
    pub late_sends: u64,
    /// Ticks skipped after the pacer was stalled for more than 100 ms.
    pub skipped_ticks: u64,
    pub send_errors: u64,
    pub packets_received: u64,
    /// Packets from a source other than the negotiated one.
    pub packets_rejected: u64,
    pub dtmf_received: u64,
    /// From the peer's RTCP receiver reports about our stream.
    pub peer_fraction_lost: Option<f32>,
    pub peer_total_lost: Option<u32>,
    pub peer_jitter_ms: Option<f32>,
    pub rtt_ms: Option<f32>,
}

/// Calls by our id, and our id by SIP handle.
type CallMaps = (HashMap<String, Arc<Call>>, HashMap<SipHandle, String>);

/// Every live call, by our id and by SIP handle.
#[derive(Default)]
pub struct Calls {
    inner: Mutex<CallMaps>,
}

impl Calls {
    pub fn insert(&self, call: Arc<Call>) {
        let mut inner = lock(&self.inner);
        if let Some(handle) = call.sip() {
            inner.1.insert(handle, call.id.clone());
        }
        inner.0.insert(call.id.clone(), call);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Call>> {
        lock(&self.inner).0.get(id).cloned()
    }

    pub fn by_sip(&self, handle: SipHandle) -> Option<Arc<Call>> {
        let inner = lock(&self.inner);
        inner.1.get(&handle).and_then(|id| inner.0.get(id)).cloned()
    }

    pub fn remove_sip(&self, handle: SipHandle) -> Option<Arc<Call>> {
        let mut inner = lock(&self.inner);
        let id = inner.1.remove(&handle)?;
        inner.0.remove(&id)
    }

    /// Removes a call that has no SIP handle (WebRTC).
    pub fn remove(&self, id: &str) -> Option<Arc<Call>> {
        let mut inner = lock(&self.inner);
        let call = inner.0.remove(id)?;
        if let Some(handle) = call.sip() {
            inner.1.remove(&handle);
        }
        Some(call)
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Arc<Call>> {
        let mut calls: Vec<_> = lock(&self.inner).0.values().cloned().collect();
        calls.sort_by_key(|c| c.started_at);
        calls
    }
}

/// A short random id for URLs.
pub fn new_call_id() -> String {
    format!("c{:016x}", rand::random::<u64>())
}
