//! Starting an answered call's media, SIP or WebRTC alike: the pacer takes
//! its RTP, tasks receive the caller's RTP and RTCP, a watcher publishes the
//! call's media events to its subscribers (and ends a call whose media
//! stopped), and the greeting is spoken.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::calls::{Call, Greeting};
use super::rtp_timeout::{next_check, Check, Watched};
use super::state::Server;
use crate::media::{CallMedia, MediaEvent, PlayoutEvent};
use crate::metrics::metrics;

/// Starts an answered call's media (SIP or WebRTC): pacing, reception, the
/// watcher that publishes its events, and the greeting.
pub fn start_media(server: &Arc<Server>, call: &Arc<Call>, events_rx: mpsc::UnboundedReceiver<MediaEvent>, greeting: Option<String>) {
    let (id, media) = (call.id.clone(), call.media.clone());
    // A caller behind NAT sends media from its signalling address (`--nat`).
    if !call.signaling_peer.ip().is_unspecified() {
        media.trust_source(call.signaling_peer.ip());
    }
    server.pacer.add(media.clone());
    match media.sockets() {
        Some(Ok((rtp, rtcp))) => {
            call.add_task(tokio::spawn(receive(media.clone(), rtp)));
            call.add_task(tokio::spawn(receive_rtcp(media.clone(), rtcp)));
        }
        Some(Err(e)) => tracing::warn!(call = %id, error = %e, "cannot receive media"),
        // A WebRTC call's leg receives for itself (its track).
        None => {}
    }
    call.add_task(tokio::spawn(watch(server.clone(), call.clone(), events_rx)));
    let greeting = greeting.or_else(|| server.config.greeting.clone()).filter(|g| !g.trim().is_empty());
    if let Some(greeting) = greeting {
        let token = call.cancel_token();
        let (voice, preset) = call.synth();
        let mut options = server.config.synth.clone();
        if preset.is_some() {
            options.preset = preset;
        }
        // The configured greeting in the default voice comes from the cache.
        let cached = voice.is_none() && preset.is_none() && server.config.greeting.as_deref() == Some(greeting.as_str());
        let options = if cached { Default::default() } else { options };
        let utterance = server.speech.speak(&media, &greeting, voice.as_deref(), options, token);
        call.set_greeting(Greeting { utterance, text: greeting, queued: std::time::Instant::now() });
    }
}

/// Caller media into the call.
async fn receive(media: Arc<CallMedia>, socket: StdUdpSocket) {
    let media2 = media.clone();
    receive_loop(socket, move |from, data| media2.handle_rtp(from, data)).await;
    tracing::trace!(call = %media.id, "RTP receive ended");
}

async fn receive_rtcp(media: Arc<CallMedia>, socket: StdUdpSocket) {
    receive_loop(socket, move |from, data| media.handle_rtcp(from, data)).await;
}

thread_local! {
    static RECEIVE_BUF: std::cell::RefCell<[u8; 2048]> = const { std::cell::RefCell::new([0; 2048]) };
}

/// Reads datagrams as they arrive. The socket is registered for readability
/// only: the pacer sends on the same socket from its own thread, and watching
/// writability would wake this runtime once per packet sent.
async fn receive_loop(socket: StdUdpSocket, mut handle: impl FnMut(SocketAddr, &[u8])) {
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and
    // unchanged for as long as the registration lives.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }) else { return };
    loop {
        let Ok(mut guard) = fd.readable().await else { return };
        loop {
            // One receive buffer per runtime thread, not two per call (4 KiB
            // a call, most of which never receive more than silence).
            let read = guard.try_io(|inner| {
                RECEIVE_BUF.with_borrow_mut(|buf| {
                    let (n, from) = inner.get_ref().recv_from(buf)?;
                    handle(from, &buf[..n]);
                    Ok(())
                })
            });
            match read {
                Ok(Ok(())) => {}
                // ICMP errors from a vanished peer surface here; keep reading.
                Ok(Err(e)) if e.kind() != std::io::ErrorKind::WouldBlock => continue,
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
}

/// Follows a call's media events and ends it when media stops arriving.
async fn watch(server: Arc<Server>, call: Arc<Call>, mut events: mpsc::UnboundedReceiver<MediaEvent>) {
    // The RTP-timeout check wakes only when a call could have gone stale
    // ([`next_check`]), not every second for every call.
    let watched = |call: &Call| Watched {
        limit: server.config.rtp_timeout,
        sip: call.sip().is_some(),
        on_hold: !call.media.remote().send,
        last_received: call.media.last_received(),
    };
    let mut armed = true;
    let check = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(check);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                match &event {
                    MediaEvent::Playout(playout) => match &**playout {
                        PlayoutEvent::Started { utterance, waited, first_audio, .. } => {
                            if let Some(first) = first_audio {
                                metrics().first_audio.observe(first.as_secs_f64());
                            }
                            metrics().jitter_wait.observe(waited.as_secs_f64());
                            tracing::info!(call = %call.id, utterance, waited_ms = waited.as_millis() as u64, "speech started");
                        }
                        PlayoutEvent::Finished { utterance, played, underruns } => {
                            tracing::info!(call = %call.id, utterance, played_ms = played.as_millis() as u64, underruns, "speech done");
                        }
                        _ => {}
                    },
                    MediaEvent::Dtmf { digit, .. } => tracing::info!(call = %call.id, %digit, "DTMF"),
                    _ => {}
                }
                call.events.publish(event);
            }
            _ = &mut check, if armed => match next_check(watched(&call), Instant::now()) {
                Check::Never => armed = false,
                Check::At(at) => check.as_mut().reset(at.into()),
                Check::HangUp => {
                    tracing::info!(call = %call.id, "no RTP for {:?}: ending the call", server.config.rtp_timeout.unwrap_or_default());
                    server.hangup(&call, "rtp-timeout");
                    return;
                }
            },
        }
    }
}
