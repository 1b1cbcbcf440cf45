//! A started Media Stream, for as long as its call lasts: one loop over the
//! socket, the pacer's packets, the call's events and our hangup.
//!
//! | in | out |
//! | --- | --- |
//! | a packet from the pacer (every 20 ms while speech plays) | `media` with its payload |
//! | the playout reached an agent's mark | `mark` (Twilio echoes it once played) |
//! | the agent cleared the call's speech (barge-in) | `clear` |
//! | Twilio's `media` | the caller's audio, into the call as RTP |
//! | Twilio's `dtmf` | a `dtmf` event on the control sockets |
//! | Twilio's `stop`, or the socket closed | the call ends (`remote_hangup`) |
//! | our hangup (API, agent, drain) | the socket closes (`local_hangup`) |

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::Notify;

use super::frames::{base64_encode, caller_media_packet, payload_of};
use super::messages::{FromTwilio, MarkName, OutMedia, ToTwilio};
use crate::media::{MediaEvent, PlayoutEvent, TrackQueue};
use crate::server::calls::Call;
use crate::server::fanout::Subscription;

/// How a stream's call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Twilio sent `stop` or closed the socket.
    Remote,
    /// We hung up.
    Local,
}

impl End {
    /// The `call.ended` reason.
    pub fn name(self) -> &'static str {
        match self {
            End::Remote => "remote_hangup",
            End::Local => "local_hangup",
        }
    }
}

/// The name Twilio gives a message, for errors.
pub fn event_name(message: &FromTwilio) -> &'static str {
    match message {
        FromTwilio::Connected { .. } => "connected",
        FromTwilio::Start { .. } => "start",
        FromTwilio::Media { .. } => "media",
        FromTwilio::Dtmf { .. } => "dtmf",
        FromTwilio::Mark { .. } => "mark",
        FromTwilio::Stop { .. } => "stop",
    }
}

pub struct Session<'a> {
    call: &'a Arc<Call>,
    stream_sid: String,
    socket: WebSocket,
    packets: Arc<TrackQueue>,
    events: Subscription<MediaEvent>,
    events_open: bool,
    /// The caller's frames so far (numbers the RTP packets when Twilio's `chunk` is missing).
    heard: u32,
    bad_media: u64,
}

impl<'a> Session<'a> {
    pub fn new(call: &'a Arc<Call>, stream_sid: String, socket: WebSocket, packets: Arc<TrackQueue>) -> Self {
        let events = call.events.subscribe();
        Self { call, stream_sid, socket, packets, events, events_open: true, heard: 0, bad_media: 0 }
    }

    /// Runs until the stream or the call ends.
    pub async fn run(mut self, hangup: &Notify) -> End {
        let end = loop {
            // Biased, in this order: a frame the pacer has sent goes out before an event
            // that is ready at the same time, so a mark never overtakes the audio it marks.
            let out = tokio::select! {
                biased;
                packet = self.packets.next() => match packet {
                    Some(packet) => payload_of(packet.bytes()).map(|payload| ToTwilio::Media {
                        stream_sid: &self.stream_sid,
                        media: OutMedia { payload: base64_encode(payload) },
                    }),
                    // The call's media closed: it is over.
                    None => break End::Local,
                },
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => match self.inbound(text.as_str()) {
                        Some(end) => break end,
                        None => None,
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break End::Remote,
                    Some(Ok(_)) => None,
                },
                event = self.events.recv(), if self.events_open => match event {
                    Some(MediaEvent::Playout(playout)) => match *playout {
                        PlayoutEvent::Mark { name } => Some(ToTwilio::Mark { stream_sid: &self.stream_sid, mark: MarkName { name } }),
                        _ => None,
                    },
                    Some(_) => None,
                    None => {
                        self.events_open = false;
                        None
                    }
                },
                () = self.call.speech_cleared.notified() => Some(ToTwilio::Clear { stream_sid: &self.stream_sid }),
                () = hangup.notified() => break End::Local,
            };
            if let Some(message) = out {
                let text = Utf8Bytes::from(serde_json::to_string(&message).unwrap_or_default());
                if self.socket.send(Message::Text(text)).await.is_err() {
                    break End::Remote;
                }
            }
        };
        if end == End::Local {
            let frame = CloseFrame { code: 1000, reason: "call ended".into() };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
        end
    }

    /// One message from Twilio; `Some` when it ends the stream.
    fn inbound(&mut self, text: &str) -> Option<End> {
        let message = match serde_json::from_str::<FromTwilio>(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(call = %self.call.id, error = %e, "not a Media Streams message; ignored");
                return None;
            }
        };
        match message {
            FromTwilio::Media { media } => {
                self.heard += 1;
                let Some(packet) = caller_media_packet(&media, self.heard) else {
                    self.bad_media += 1;
                    if self.bad_media == 1 {
                        tracing::warn!(call = %self.call.id, "a `media` payload is not base64; such frames are dropped");
                    }
                    return None;
                };
                self.call.media.handle_leg_rtp(&packet);
            }
            FromTwilio::Dtmf { dtmf } => {
                if let Some(digit) = dtmf.digit.chars().next() {
                    self.call.media.stats.dtmf_received.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(call = %self.call.id, %digit, "DTMF");
                    self.call.events.publish(MediaEvent::Dtmf { digit, duration_ms: 0 });
                }
            }
            FromTwilio::Mark { mark } => tracing::debug!(call = %self.call.id, mark = %mark.name, "Twilio played up to the mark"),
            FromTwilio::Stop { .. } => return Some(End::Remote),
            other @ (FromTwilio::Connected { .. } | FromTwilio::Start { .. }) => {
                tracing::warn!(call = %self.call.id, event = event_name(&other), "repeated; ignored");
            }
        }
        None
    }
}
