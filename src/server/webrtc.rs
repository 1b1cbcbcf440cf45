//! Browsers over WebRTC: HTTP offer/answer, a PCMU track fed by the same
//! packetizer as SIP calls, and the control protocol on a data channel.
//!
//! ```text
//! POST /v1/webrtc/offer   {"type":"offer","sdp":"v=0...", "voice"?, "preset"?, "greeting"?}
//!                      -> {"type":"answer","sdp":"v=0...","call":"c..."}
//! ```
//!
//! One pipeline, two transports: a browser call is a [`Call`] with a
//! [`CallMedia`] like any SIP call, paced by the same clock. Its leg is the
//! WebRTC track ([`MediaLeg::Track`]): the pacer queues each packet (our
//! sequence numbers and timestamps, untouched) without waiting, and a task
//! writes it to the track, which sends it SRTP-protected to the browser
//! (rewriting only SSRC and payload type to the negotiated ones). The
//! browser's RTP goes straight into the call's media, where the same
//! mu-law decoding and caller-audio events as for SIP apply. The pacing
//! thread stays free of async I/O and allocation; the WebRTC stack (ICE,
//! DTLS-SRTP, SCTP) runs on the tokio runtime.
//!
//! The answer carries every candidate (no trickle): the handler waits for ICE
//! gathering to finish (host candidates, plus STUN/TURN ones when
//! configured), bounded by [`GATHER_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_PCMU};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::data_channel_message::DataChannelMessage;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType};
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::{TrackLocal, TrackLocalWriter};
use webrtc_util::marshal::Marshal;

use super::call_media::start_media;
use super::calls::{new_call_id, Call, CallState, Leg};
use super::config::WebRtcConfig;
use super::control::{AgentFrame, AgentMessage, ControlTransport, Defaults, Dialect, Gone};
use super::decision::CallChoices;
use super::error::ApiError;
use super::lifecycle::LifecycleEvent;
use super::state::Server;
use crate::media::{CallMedia, MediaLeg, RemoteMedia};
use crate::synth::Preset;

/// Longest the offer handler waits for ICE gathering before it answers with
/// the candidates it has.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(3);

/// A call whose peer connection does not reach `connected` by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a silent peer connection lasts before the call is ended.
pub const ICE_FAILED: Duration = Duration::from_secs(6);

/// Largest offer accepted (a browser's is 3-8 KB).
const MAX_SDP: usize = 32 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRequest {
    sdp: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    voice: Option<String>,
    #[serde(default)]
    preset: Option<String>,
    /// `true`/absent: the configured greeting; `false`: none; a string: that text.
    #[serde(default)]
    greeting: Option<Value>,
}

/// The answer to an offer.
#[derive(Debug, Serialize)]
struct AnswerResponse {
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: String,
    call: String,
}

/// `POST /v1/webrtc/offer`.
pub async fn offer(State(server): State<Arc<Server>>, body: Result<Json<OfferRequest>, JsonRejection>) -> Result<Response, ApiError> {
    use ApiError as E;
    let Json(request) = body.map_err(|e| {
        E::bad_request("invalid_json", format!("{}: send {{\"type\": \"offer\", \"sdp\": \"...\"}}", e.body_text()))
    })?;
    if request.kind.as_deref().is_some_and(|k| k != "offer") {
        return Err(E::bad_request("invalid_offer", "`type` must be \"offer\" (voxline answers; it does not offer)"));
    }
    if request.sdp.len() > MAX_SDP {
        return Err(E::bad_request("invalid_sdp", format!("the offer is {} bytes; at most {MAX_SDP}", request.sdp.len())));
    }
    check_offer(&request.sdp).map_err(|m| E::bad_request("invalid_sdp", m))?;
    let CallChoices { greeting, voice, preset, .. } = CallChoices::read(&server.speech, request.greeting, request.voice, request.preset.as_deref())
        .map_err(|(code, message)| E::bad_request(code, message))?;
    server.admit("webrtc", "offer").map_err(|refusal| E::busy(refusal.reason, Some(refusal.retry_after)))?;
    match answer(&server, request.sdp, voice, preset, greeting).await {
        Ok((call, sdp)) => Ok(Json(AnswerResponse { kind: "answer", sdp, call }).into_response()),
        Err(Refusal::Offer(message)) => Err(E::bad_request("invalid_sdp", message)),
        Err(Refusal::Internal(message)) => {
            tracing::warn!(error = %message, "WebRTC answer failed");
            Err(E::internal("webrtc_failed", message))
        }
    }
}

/// What the offer needs before the WebRTC stack sees it: an audio section
/// that can carry PCMU. The stack itself checks the rest (ICE credentials,
/// fingerprint) when the offer is applied.
fn check_offer(sdp: &str) -> Result<(), String> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err("not an SDP offer: it must start with `v=0`".into());
    }
    let mut audio = false;
    let mut pcmu = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            audio |= m.starts_with("audio ");
        }
        pcmu |= line.starts_with("a=rtpmap:") && line.to_ascii_uppercase().contains(" PCMU/8000");
    }
    if !audio {
        return Err("the offer has no audio section (m=audio): add an audio transceiver or track".into());
    }
    if !pcmu {
        return Err("the offer's audio does not include PCMU/8000, the only codec voxline sends".into());
    }
    Ok(())
}

enum Refusal {
    /// The offer could not be applied (the browser's fault).
    Offer(String),
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::Internal(e.to_string())
}

fn pcmu() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability { mime_type: MIME_TYPE_PCMU.to_owned(), clock_rate: 8000, channels: 1, ..Default::default() }
}

async fn peer_connection(config: &WebRtcConfig) -> Result<RTCPeerConnection, Refusal> {
    let mut media = MediaEngine::default();
    media
        .register_codec(RTCRtpCodecParameters { capability: pcmu(), payload_type: 0, ..Default::default() }, RTPCodecType::Audio)
        .map_err(internal)?;
    let registry = register_default_interceptors(Registry::new(), &mut media).map_err(internal)?;
    let mut settings = SettingEngine::default();
    // Browsers hide their addresses behind mDNS names; their checks still
    // reach us and become peer-reflexive candidates, so no mDNS is needed.
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    // A browser that vanishes (tab closed, network lost) is noticed within
    // ICE_FAILED: consent checks every 2 s, disconnected after 4 s without
    // an answer, failed 6 s later; the call then ends.
    settings.set_ice_timeouts(Some(Duration::from_secs(4)), Some(ICE_FAILED), Some(Duration::from_secs(2)));
    if !config.ips.is_empty() {
        let ips = config.ips.clone();
        settings.set_include_loopback_candidate(ips.iter().any(IpAddr::is_loopback));
        settings.set_ip_filter(Box::new(move |ip| ips.contains(&ip)));
    }
    if let Some((low, high)) = config.ports {
        settings.set_udp_network(UDPNetwork::Ephemeral(EphemeralUDP::new(low, high).map_err(internal)?));
    }
    if let Some(ip) = config.external_ip {
        settings.set_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
    }
    let api = APIBuilder::new().with_media_engine(media).with_interceptor_registry(registry).with_setting_engine(settings).build();
    let ice_servers = config
        .ice_servers
        .iter()
        .map(|s| RTCIceServer { urls: vec![s.url.clone()], username: s.username.clone(), credential: s.credential.clone() })
        .collect();
    api.new_peer_connection(RTCConfiguration { ice_servers, ..Default::default() }).await.map_err(internal)
}

async fn answer(
    server: &Arc<Server>,
    offer: String,
    voice: Option<String>,
    preset: Option<Preset>,
    greeting: Option<String>,
) -> Result<(String, String), Refusal> {
    let pc = Arc::new(peer_connection(&server.config.webrtc).await?);
    let track = Arc::new(TrackLocalStaticRTP::new(pcmu(), "voxline-audio".into(), "voxline".into()));
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal + Send + Sync>).await.map_err(internal)?;
    // The sender's RTCP (receiver reports) must be read for the interceptors to run.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while sender.read(&mut buf).await.is_ok() {}
    });
    let description = RTCSessionDescription::offer(offer).map_err(|e| Refusal::Offer(format!("malformed SDP: {e}")))?;
    if let Err(e) = pc.set_remote_description(description).await {
        let _ = pc.close().await;
        return Err(Refusal::Offer(format!("the offer cannot be applied: {e}")));
    }
    let answer = match pc.create_answer(None).await {
        Ok(a) => a,
        Err(e) => {
            let _ = pc.close().await;
            return Err(Refusal::Offer(format!("no answer to this offer: {e}")));
        }
    };
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(answer).await.map_err(internal)?;
    let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.recv()).await;
    let Some(local) = pc.local_description().await else {
        let _ = pc.close().await;
        return Err(internal("no local description after gathering"));
    };

    // The call: its leg is the track. The pacer's packets (our sequence
    // numbers and timestamps, untouched) go onto it, sent SRTP-protected with
    // only SSRC and payload type rewritten to the negotiated ones; the
    // browser's RTP comes in from the remote track.
    let (leg, packets) = MediaLeg::track();
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let remote = RemoteMedia { rtp: unspecified, rtcp: unspecified, payload_type: 0, dtmf_payload_type: None, pcma: false, send: true };
    let id = new_call_id();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let media = CallMedia::new(id.clone(), leg, remote, server.config.media.clone(), events_tx);
    let close = Arc::new(Notify::new());
    let call = Arc::new(Call::new(
        id.clone(),
        Leg::WebRtc(close.clone()),
        format!("webrtc-{id}"),
        "browser".into(),
        "voxline".into(),
        Vec::new(),
        unspecified,
        media.clone(),
        0,
    ));
    call.set_synth(voice.clone(), preset);
    server.calls.insert(call.clone());
    tracing::info!(call = %id, "WebRTC call: answer sent");

    // Outbound: the pacer's packets onto the track.
    {
        let track = track.clone();
        call.add_task(tokio::spawn(async move {
            while let Some(packet) = packets.next().await {
                let _ = track.write(packet.bytes()).await;
            }
        }));
    }
    // Inbound: the browser's audio into the call, as from the negotiated peer.
    {
        let media = Arc::downgrade(&media);
        pc.on_track(Box::new(move |remote, _, _| {
            let media = media.clone();
            Box::pin(async move {
                if remote.kind() != RTPCodecType::Audio {
                    return;
                }
                tokio::spawn(async move {
                    while let Ok((packet, _)) = remote.read_rtp().await {
                        let Some(media) = media.upgrade() else { return };
                        if let Ok(bytes) = packet.marshal() {
                            media.handle_leg_rtp(&bytes);
                        }
                    }
                });
            })
        }));
    }
    // The control protocol on any data channel the browser opens. Its
    // sessions are not the call's tasks: on our hangup they send `call.ended`
    // before the channel closes (`supervise` waits for them). A channel the
    // browser closes ends the call: that is how a page's `pc.close()` shows
    // up at once (ICE would take seconds to notice).
    let (gone_tx, gone_rx) = mpsc::unbounded_channel::<()>();
    let sessions: Sessions = Default::default();
    {
        let (server, call_weak, sessions) = (server.clone(), Arc::downgrade(&call), sessions.clone());
        let (voice, preset) = (voice.clone(), preset);
        pc.on_data_channel(Box::new(move |channel: Arc<RTCDataChannel>| {
            let (server, call, sessions, gone) = (server.clone(), call_weak.upgrade(), sessions.clone(), gone_tx.clone());
            let defaults = Defaults::new(voice.clone(), preset);
            Box::pin(async move {
                let Some(call) = call else { return };
                let (tx, rx) = mpsc::unbounded_channel();
                let closed = tx.clone();
                channel.on_message(Box::new(move |message: DataChannelMessage| {
                    let frame = if message.is_string {
                        match String::from_utf8(message.data.to_vec()) {
                            Ok(text) => AgentFrame::Text(text),
                            Err(_) => AgentFrame::Text(String::from("\u{fffd}")),
                        }
                    } else {
                        AgentFrame::Binary
                    };
                    let _ = tx.send(Some(frame));
                    Box::pin(async {})
                }));
                channel.on_close(Box::new(move || {
                    let _ = closed.send(None);
                    let _ = gone.send(());
                    Box::pin(async {})
                }));
                tracing::debug!(call = %call.id, label = channel.label(), "data channel opened");
                let transport = DataChannelTransport { channel, frames: rx };
                let task = tokio::spawn(super::control::run(server, call.clone(), transport, Dialect::Native, defaults));
                sessions.lock().unwrap_or_else(|e| e.into_inner()).push(task);
            })
        }));
    }
    // Lifecycle: media starts once connected; the call ends when the peer
    // connection fails or closes, or when we hang up.
    let (state_tx, state_rx) = mpsc::unbounded_channel();
    pc.on_peer_connection_state_change(Box::new(move |state| {
        let _ = state_tx.send(state);
        Box::pin(async {})
    }));
    let ends = Ends { states: state_rx, close, gone: gone_rx };
    tokio::spawn(supervise(server.clone(), Arc::downgrade(&call), pc.clone(), ends, sessions, events_rx, greeting));
    Ok((id, local.sdp))
}

/// The control sessions on a call's data channels.
type Sessions = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

/// How long a hangup waits for the data channels to carry `call.ended`.
const ENDED_GRACE: Duration = Duration::from_millis(500);

/// What can end a WebRTC call.
struct Ends {
    /// The peer connection's states (failed, closed).
    states: mpsc::UnboundedReceiver<RTCPeerConnectionState>,
    /// Our hangup.
    close: Arc<Notify>,
    /// The browser closed a data channel.
    gone: mpsc::UnboundedReceiver<()>,
}

/// Follows the peer connection: starts the call's media when it connects,
/// ends the call when it fails or closes, when the browser closes its data
/// channel, or when we hang up (then the data channels carry `call.ended`
/// before the peer connection closes).
async fn supervise(
    server: Arc<Server>,
    call: Weak<Call>,
    pc: Arc<RTCPeerConnection>,
    mut ends: Ends,
    sessions: Sessions,
    events_rx: mpsc::UnboundedReceiver<crate::media::MediaEvent>,
    greeting: Option<String>,
) {
    let mut events_rx = Some(events_rx);
    let started = AtomicBool::new(false);
    let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            state = ends.states.recv() => match state {
                Some(RTCPeerConnectionState::Connected) => {
                    let Some(call) = call.upgrade() else { break "ended" };
                    if !started.swap(true, Ordering::Relaxed) {
                        if let Some(rx) = events_rx.take() {
                            tracing::info!(call = %call.id, "WebRTC connected");
                            call.set_state(CallState::Active);
                            server.lifecycle(LifecycleEvent::Answered { call: call.id.clone() });
                            start_media(&server, &call, rx, greeting.clone());
                        }
                    }
                }
                Some(RTCPeerConnectionState::Failed) => break "connection_failed",
                Some(RTCPeerConnectionState::Closed) | None => break "remote_hangup",
                Some(_) => {}
            },
            Some(()) = ends.gone.recv() => break "remote_hangup",
            () = ends.close.notified() => break "local_hangup",
            () = &mut deadline, if !started.load(Ordering::Relaxed) => break "connection_timeout",
        }
    };
    if let Some(call) = call.upgrade() {
        if server.calls.remove(&call.id).is_some() {
            tracing::info!(call = %call.id, reason, "WebRTC call ended");
            server.ended(&call, reason);
        }
        call.end();
    }
    // The sessions send `call.ended` and close their channels; then the
    // peer connection goes.
    let tasks: Vec<_> = sessions.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(ENDED_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    let _ = pc.close().await;
}

/// The control protocol over a WebRTC data channel.
struct DataChannelTransport {
    channel: Arc<RTCDataChannel>,
    /// `None`: the channel closed.
    frames: mpsc::UnboundedReceiver<Option<AgentFrame>>,
}

impl ControlTransport for DataChannelTransport {
    async fn recv(&mut self) -> Option<AgentFrame> {
        self.frames.recv().await.flatten()
    }

    async fn send(&mut self, message: AgentMessage) -> Result<(), Gone> {
        let sent = match message {
            AgentMessage::Text(text) => self.channel.send_text(text).await,
            AgentMessage::Binary(bytes) => self.channel.send(&Bytes::from(bytes)).await,
        };
        sent.map(|_| ()).map_err(|_| Gone)
    }

    /// Closes once what was sent has left (closing resets the stream, which
    /// would cut off a `call.ended` still buffered), waiting at most
    /// [`ENDED_GRACE`].
    async fn close(&mut self) {
        let until = tokio::time::Instant::now() + ENDED_GRACE;
        while self.channel.buffered_amount().await > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.channel.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_without_audio_or_pcmu_are_refused_with_a_reason() {
        let chrome_audio = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(check_offer(chrome_audio), Ok(()));
        let video_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(check_offer(video_only).unwrap_err().contains("no audio"));
        let opus_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(check_offer(opus_only).unwrap_err().contains("PCMU"));
        assert!(check_offer("hello").unwrap_err().contains("v=0"));
        assert!(check_offer("").is_err());
    }
}
