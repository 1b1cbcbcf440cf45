//! Twilio Media Streams: the WebSocket that `<Connect><Stream
//! url="wss://HOST/v1/twilio/media-stream?token=...">` opens is a call like
//! a SIP or browser one.
//!
//! | step | file |
//! | --- | --- |
//! | Twilio's messages, typed | `messages.rs` |
//! | `connected`, then `start`: the format checked, the call admitted and created | `mod.rs` |
//! | the call: the pacer's frames out as `media` (20 ms each, in real time), our marks as `mark`, `clear` on barge-in; the caller's `media`, `dtmf`, `mark`, `stop` in | `session.rs` |
//! | base64 mu-law <-> RTP | `frames.rs` |
//! | `X-Twilio-Signature` on the upgrade (with `--twilio-auth-token`) | `signature.rs` |
//!
//! The call's leg is a [`MediaLeg::Track`], as a browser's: the pacer queues
//! each packet and the session sends its payload. Silence is not sent
//! (Twilio plays silence itself when no media comes). The call is announced
//! on the events socket (`call.stream_started` with Twilio's ids and the
//! custom parameters, then `call.answered`), driven over the control socket,
//! listed in `GET /calls` (transport `twilio`, `sip_call_id` Twilio's
//! `callSid`, `headers` the custom parameters), and hung up by the API,
//! which closes the stream.

pub(crate) mod frames;
pub(crate) mod messages;
mod session;
pub mod signature;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, Notify};

use super::call_media::start_media;
use super::error::ApiError;
use super::calls::{new_call_id, Call, CallState, Leg};
use super::lifecycle::LifecycleEvent;
use super::state::Server;
use crate::media::{CallMedia, MediaConfig, MediaLeg, RemoteMedia};
use messages::{FromTwilio, Start};

/// Checking Twilio's requests (`--twilio-auth-token`, `--public-url`).
#[derive(Clone, Default)]
pub struct TwilioAuth {
    /// The account's auth token; `None` lets every stream in unsigned.
    pub auth_token: Option<String>,
    /// `SCHEME://HOST[:PORT]` Twilio reaches voxline at; `None`: `wss://` and the request's Host.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for TwilioAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioAuth").field("auth_token", &self.auth_token.as_ref().map(|_| "********")).field("public_url", &self.public_url).finish()
    }
}

impl TwilioAuth {
    /// Checks the public URL: `https`, `wss`, `http` or `ws`, with a host.
    pub fn new(auth_token: Option<String>, public_url: Option<String>) -> Result<Self, String> {
        if let Some(url) = &public_url {
            let host = url.split_once("://").filter(|(s, _)| matches!(s.to_ascii_lowercase().as_str(), "https" | "wss" | "http" | "ws")).map(|(_, rest)| rest);
            if !host.is_some_and(|h| !h.is_empty() && !h.starts_with('/')) {
                return Err(format!("`{url}` is not a URL like https://voice.example.com (https, wss, http or ws, and a host)"));
            }
        }
        Ok(Self { auth_token, public_url })
    }
}

/// How long a stream may take to send `start` after it opens.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message accepted (a `media` message is about 300 bytes; `start`
/// grows with the custom parameters).
const MAX_MESSAGE: usize = 64 * 1024;

/// WebSocket close codes (RFC 6455 7.4.1).
const POLICY_VIOLATION: u16 = 1008;
const UNSUPPORTED_DATA: u16 = 1003;
const TRY_AGAIN_LATER: u16 = 1013;

/// `GET /v1/twilio/media-stream`; with `--twilio-auth-token`, only with
/// Twilio's valid `X-Twilio-Signature` (403 otherwise).
pub async fn upgrade(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri, ws: WebSocketUpgrade) -> Response {
    if let Err(refusal) = check_signature(&server, &headers, &uri) {
        return refusal.into_response();
    }
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| run(server, socket)).into_response()
}

/// Twilio's signature of the upgrade request, when a token is configured.
fn check_signature(server: &Server, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let Some(token) = server.config.twilio.auth_token.as_deref() else { return Ok(()) };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let forbidden = |code, message: &str| Err(ApiError::new(StatusCode::FORBIDDEN, code, message));
    let Some(url) = signature::requested_url(server.config.twilio.public_url.as_deref(), host, path) else {
        return forbidden("invalid_signature", "no Host header to check X-Twilio-Signature against: set --public-url");
    };
    let given = headers.get(signature::HEADER).and_then(|h| h.to_str().ok());
    match signature::verify(token, &url, &[], given) {
        signature::Verdict::Valid => Ok(()),
        signature::Verdict::Missing => {
            tracing::warn!(path = uri.path(), "Twilio Media Stream without X-Twilio-Signature refused");
            forbidden("missing_signature", "X-Twilio-Signature is required (--twilio-auth-token is set)")
        }
        signature::Verdict::Invalid => {
            tracing::warn!(path = uri.path(), "Twilio Media Stream with a wrong X-Twilio-Signature refused (check --twilio-auth-token and --public-url)");
            forbidden("invalid_signature", "X-Twilio-Signature does not match this URL and the auth token")
        }
    }
}

async fn run(server: Arc<Server>, mut socket: WebSocket) {
    let (stream_sid, start) = match tokio::time::timeout(START_TIMEOUT, wait_for_start(&mut socket)).await {
        Ok(Ok(started)) => started,
        Ok(Err(Refused { code, reason })) => return close(socket, code, reason).await,
        Err(_) => return close(socket, POLICY_VIOLATION, format!("no `start` within {} s", START_TIMEOUT.as_secs())).await,
    };
    if !start.media_format.is_mulaw_8k() {
        let f = &start.media_format;
        let reason = format!("media format {} {} Hz x{}: voxline takes audio/x-mulaw 8000 Hz mono", f.encoding, f.sample_rate, f.channels);
        return close(socket, UNSUPPORTED_DATA, reason).await;
    }
    if let Err(refusal) = server.admit("twilio", &stream_sid) {
        return close(socket, TRY_AGAIN_LATER, format!("busy: {}", refusal.reason)).await;
    }
    let (call, events, packets, close_call) = new_call(&server, &stream_sid, &start);
    tracing::info!(call = %call.id, stream = %stream_sid, "Twilio Media Stream started");
    server.lifecycle(LifecycleEvent::StreamStarted {
        call: call.id.clone(),
        call_sid: start.call_sid.clone(),
        stream_sid: stream_sid.clone(),
        account_sid: start.account_sid.clone(),
        custom_parameters: start.custom_parameters.clone(),
    });
    server.lifecycle(LifecycleEvent::Answered { call: call.id.clone() });
    start_media(&server, &call, events, None);
    let reason = session::Session::new(&call, stream_sid, socket, packets).run(&close_call).await;
    if server.calls.remove(&call.id).is_some() {
        tracing::info!(call = %call.id, reason = reason.name(), "Twilio Media Stream ended");
        server.ended(&call, reason.name());
    }
    call.end();
}

/// Why a stream was closed before it became a call.
struct Refused {
    code: u16,
    reason: String,
}

/// Reads `connected` (optional) and `start`.
async fn wait_for_start(socket: &mut WebSocket) -> Result<(String, Start), Refused> {
    let refused = |code, reason: String| Refused { code, reason };
    loop {
        let text = match socket.recv().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => return Err(refused(UNSUPPORTED_DATA, "binary frames: Twilio's messages are JSON text".into())),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Err(refused(POLICY_VIOLATION, "closed before `start`".into())),
            Some(Ok(_)) => continue,
        };
        match serde_json::from_str::<FromTwilio>(text.as_str()) {
            Ok(FromTwilio::Connected { .. }) => continue,
            Ok(FromTwilio::Start { stream_sid, start }) => return Ok((stream_sid, start)),
            Ok(other) => return Err(refused(POLICY_VIOLATION, format!("`{}` before `start`", session::event_name(&other)))),
            Err(e) => return Err(refused(UNSUPPORTED_DATA, format!("not a Media Streams message: {e}"))),
        }
    }
}

/// The call for a started stream, registered; its media events, the
/// pacer's packets for it, and what our hangup notifies.
fn new_call(
    server: &Arc<Server>,
    stream_sid: &str,
    start: &Start,
) -> (Arc<Call>, mpsc::UnboundedReceiver<crate::media::MediaEvent>, Arc<crate::media::TrackQueue>, Arc<Notify>) {
    let (leg, packets) = MediaLeg::track();
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let remote = RemoteMedia { rtp: unspecified, rtcp: unspecified, payload_type: 0, dtmf_payload_type: None, pcma: false, send: true };
    // Twilio plays silence itself: only speech goes over the socket.
    let config = MediaConfig { send_silence: false, ..server.config.media.clone() };
    let id = new_call_id();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let media = CallMedia::new(id.clone(), leg, remote, config, events_tx);
    let close = Arc::new(Notify::new());
    let headers = start.custom_parameters.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let call = Arc::new(Call::new(id, Leg::Twilio(close.clone()), start.call_sid.clone(), "twilio".into(), stream_sid.into(), headers, unspecified, media, 0));
    call.set_state(CallState::Active);
    server.calls.insert(call.clone());
    (call, events_rx, packets, close)
}

async fn close(mut socket: WebSocket, code: u16, reason: String) {
    tracing::info!(code, %reason, "Twilio Media Stream refused");
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}
