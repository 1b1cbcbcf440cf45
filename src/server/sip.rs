//! The SIP side of the server: a tokio UDP socket and the TCP connections
//! ([`super::sip_tcp`]) around the sans-IO SIP
//! core, and the call control that turns its events into calls with media.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use voxline_sdp::{build_answer, negotiate, LocalMedia, Negotiated, SessionDescription};
use voxline_sip::{Endpoint, Event, Transport};

use super::call_media::start_media;
use super::calls::{new_call_id, Call, CallState, Leg, SipHandle};
use super::commands::{Decision, SipCommand};
use super::flood::{InviteRate, Unconfirmed};
use super::lifecycle::LifecycleEvent;
use super::outbound::Outbound;
use super::sip_tcp::{Inbound, SipTcp};
use super::state::Server;
use crate::media::{CallMedia, MediaEvent, MediaLeg, RemoteMedia};

/// Runs the SIP task: UDP on `socket`, TCP through `tcp` ([`super::sip_tcp`]).
pub async fn run(server: Arc<Server>, socket: UdpSocket, mut tcp: SipTcp, mut endpoint: Endpoint, mut commands: mpsc::UnboundedReceiver<SipCommand>) {
    let mut buf = vec![0u8; 65536];
    let mut ringing: Vec<Pending> = Vec::new();
    let mut outbound = Outbound::default();
    let mut registrar = super::trunks::Registrar::start(&server);
    let mut door = Door { rate: InviteRate::new(&server.config.flood), unconfirmed: Unconfirmed::new(server.config.flood.max_unconfirmed) };
    loop {
        let next_answer = ringing.iter().map(|p| p.at).min();
        let timeout = match (endpoint.poll_timeout(), next_answer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match timeout {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    endpoint.set_unavailable(server.drain_retry_after());
                    endpoint.handle_datagram(Instant::now(), from, &buf[..n]);
                }
                Err(e) => {
                    // ICMP port unreachable from a vanished peer shows up here on Linux; not fatal.
                    tracing::debug!(error = %e, "SIP socket receive error");
                }
            },
            Some(event) = tcp.events.recv() => {
                match tcp.on_event(event) {
                    Some(Inbound::Message { peer, data }) => {
                        endpoint.set_unavailable(server.drain_retry_after());
                        endpoint.handle_message(Instant::now(), peer, Transport::Tcp, &data);
                    }
                    Some(Inbound::Unframed { peer, head, error }) => endpoint.reject_unframed(peer, Transport::Tcp, &head, error),
                    None => {}
                }
            }
            () = sleep => {
                let now = Instant::now();
                endpoint.handle_timeout(now);
                let (due, later): (Vec<Pending>, Vec<Pending>) = ringing.drain(..).partition(|p| p.at <= now);
                ringing = later;
                for pending in due {
                    // Nobody decided in time (or plain ringing): the default.
                    answer_now(&server, &mut endpoint, pending, None);
                }
            }
            Some(command) = commands.recv() => match command {
                SipCommand::Decide { call, decision } => {
                    match ringing.iter().position(|p| p.call.id == call) {
                        Some(i) => {
                            let pending = ringing.swap_remove(i);
                            decide(&server, &mut endpoint, pending, decision);
                        }
                        None => tracing::debug!(call, "decision for a call that is no longer ringing"),
                    }
                }
                SipCommand::Hangup { call, reason } => {
                    tracing::info!(sip = %call, reason, "hanging up");
                    if let Err(e) = endpoint.hangup(Instant::now(), call) {
                        tracing::debug!(sip = %call, error = %e, "hangup of a call the SIP core no longer has");
                        if let Some(call) = server.calls.remove_sip(call) {
                            call.end();
                        }
                    }
                }
                SipCommand::Dial { call, reply } => {
                    let _ = reply.send(outbound.dial(&server, &mut endpoint, *call));
                }
                SipCommand::InDialog { call, request } => super::sip_dialog::request(&server, &mut endpoint, call, request),
                SipCommand::Trunk(command) => registrar.on_command(&mut endpoint, command),
            },
        }
        // Events first (answers queue more datagrams), then everything out.
        while let Some(event) = endpoint.poll_event() {
            if let Event::Registration { registration, status } = &event {
                registrar.on_event(*registration, status);
                continue;
            }
            handle_event(&server, &mut endpoint, event, &mut ringing, &mut outbound, &mut door);
        }
        while let Some(t) = endpoint.poll_transmit() {
            if t.transport == Transport::Tcp {
                tcp.send(t.destination, t.payload);
                continue;
            }
            crate::metrics::metrics().sip_sent(&t.payload);
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(to = %t.destination, error = %e, "SIP send failed");
            }
        }
    }
}

/// What guards the door against INVITE floods ([`super::flood`]).
struct Door {
    rate: InviteRate,
    /// Incoming calls ringing or answered, not yet acknowledged.
    unconfirmed: Unconfirmed<SipHandle>,
}

fn handle_event(server: &Arc<Server>, endpoint: &mut Endpoint, event: Event, ringing: &mut Vec<Pending>, outbound: &mut Outbound, door: &mut Door) {
    let now = Instant::now();
    match event {
        Event::IncomingCall { call, call_id, from, to, request_uri, source, offer, headers } => {
            if !door.rate.allow(source.ip(), now) {
                tracing::info!(sip = %call, %source, "INVITE rate exceeded; 503");
                let retry = door.rate.retry_after(source.ip()).as_secs() as u32;
                if let Err(e) = endpoint.reject_busy(now, call, Some("Busy"), retry) {
                    tracing::debug!(error = %e, "reject failed");
                }
                return;
            }
            for old in door.unconfirmed.make_room() {
                evict(server, endpoint, ringing, old, now);
            }
            match accept_call(server, endpoint, call, call_id, from, to, request_uri, source, offer.as_deref(), headers) {
                Ok(Some(pending)) => {
                    door.unconfirmed.add(call);
                    ringing.push(pending);
                }
                Ok(None) => door.unconfirmed.add(call),
                Err(Rejection::Status(status, reason)) => {
                    tracing::info!(sip = %call, status, reason = %reason, "call rejected");
                    if let Err(e) = endpoint.reject(now, call, status, Some(&reason)) {
                        tracing::debug!(error = %e, "reject failed");
                    }
                }
                Err(Rejection::Busy(refusal)) => {
                    if let Err(e) = endpoint.reject_busy(now, call, Some("Busy"), refusal.retry_after.as_secs() as u32) {
                        tracing::debug!(error = %e, "reject failed");
                    }
                }
            }
        }
        Event::CallConfirmed { call: handle, answer } => {
            door.unconfirmed.remove(handle);
            let Some(call) = server.calls.by_sip(handle) else { return };
            call.set_state(CallState::Active);
            // Media flows from now on (nothing went to an unconfirmed address).
            call.media.confirm();
            tracing::info!(call = %call.id, "call confirmed (ACK)");
            // Delayed offer: the ACK carries the answer to the offer in our 200.
            if call.media.remote().is_awaiting_answer() {
                match answer.as_deref().ok_or_else(|| "the ACK carries no answer to our offer".to_string()).and_then(|a| apply_answer(server, &call, a)) {
                    Ok(()) => tracing::info!(call = %call.id, remote_rtp = %call.media.remote().rtp, "answer in the ACK applied"),
                    Err(reason) => {
                        tracing::info!(call = %call.id, %reason, "delayed offer failed; hanging up");
                        server.hangup(&call, "bad_answer");
                    }
                }
            }
        }
        Event::ReInvite { call, offer } => {
            let Some(c) = server.calls.by_sip(call) else {
                let _ = endpoint.reject_reinvite(now, call, 481);
                return;
            };
            match offer.as_deref().map(|o| reoffer(server, &c, o)) {
                Some(Ok(answer)) => {
                    if let Err(e) = endpoint.answer_reinvite(now, call, &answer) {
                        tracing::debug!(error = %e, "re-INVITE answer failed");
                    }
                }
                Some(Err(reason)) => {
                    tracing::info!(call = %c.id, reason = %reason, "re-INVITE rejected");
                    let _ = endpoint.reject_reinvite(now, call, 488);
                }
                None => {
                    // No offer (asking for ours): answer with the current session.
                    let answer = current_answer(server, &c);
                    let _ = endpoint.answer_reinvite(now, call, &answer);
                }
            }
        }
        Event::CallCancelled { call } => {
            door.unconfirmed.remove(call);
            if let Some(c) = server.calls.remove_sip(call) {
                tracing::info!(call = %c.id, "call cancelled");
                server.ended(&c, "cancelled");
                c.end();
            }
        }
        Event::CallRinging { .. } | Event::CallAnswered { .. } | Event::CallFailed { .. } => outbound.on_event(server, event),
        Event::CallEnded { call, reason } => {
            outbound.forget(call);
            door.unconfirmed.remove(call);
            if let Some(c) = server.calls.remove_sip(call) {
                let reason = match reason {
                    voxline_sip::EndReason::RemoteBye => "remote_bye",
                    voxline_sip::EndReason::LocalBye => "local_bye",
                    voxline_sip::EndReason::AckTimeout => "ack_timeout",
                    voxline_sip::EndReason::Cancelled => "cancelled",
                    voxline_sip::EndReason::Rejected => "rejected",
                    voxline_sip::EndReason::Failed => "failed",
                    voxline_sip::EndReason::LocalCancel => "local_cancel",
                    voxline_sip::EndReason::Abandoned => "abandoned",
                    voxline_sip::EndReason::Transferred => "transferred",
                    voxline_sip::EndReason::SessionExpired => "session_expired",
                    _ => "ended",
                };
                tracing::info!(call = %c.id, reason, "call ended");
                server.ended(&c, reason);
                c.end();
            }
        }
        Event::Dtmf { call, digit } => {
            if let Some(c) = server.calls.by_sip(call) {
                tracing::info!(call = %c.id, %digit, "DTMF (SIP INFO)");
                c.events.publish(MediaEvent::Dtmf { digit, duration_ms: 0 });
            }
        }
        Event::Transfer { .. } | Event::DtmfInfoFailed { .. } => super::sip_dialog::on_event(server, event),
        #[allow(unreachable_patterns)]
        other => tracing::debug!(?other, "SIP event ignored"),
    }
}

/// Makes room for a new INVITE by ending the oldest call that has not
/// completed its handshake: ringing, it gets 503; answered, it is abandoned
/// (no BYE before an ACK).
fn evict(server: &Arc<Server>, endpoint: &mut Endpoint, ringing: &mut Vec<Pending>, old: SipHandle, now: Instant) {
    let result = match ringing.iter().position(|p| p.sip == old) {
        Some(i) => {
            ringing.swap_remove(i);
            endpoint.reject_busy(now, old, Some("Busy"), 5)
        }
        None => endpoint.abandon(now, old),
    };
    if let Err(e) = result {
        tracing::debug!(sip = %old, error = %e, "evicting an unconfirmed call");
    }
    if let Some(c) = server.calls.remove_sip(old) {
        tracing::info!(call = %c.id, "unacknowledged call evicted for a new INVITE");
        server.ended(&c, "unconfirmed_evicted");
        c.end();
    }
}

/// Why an INVITE is not answered.
enum Rejection {
    /// A final status and its reason phrase.
    Status(u16, String),
    /// The synthesizer is at capacity: 503 with the refusal's Retry-After.
    Busy(crate::speech::Refusal),
}

#[allow(clippy::too_many_arguments)]
fn accept_call(
    server: &Arc<Server>,
    endpoint: &mut Endpoint,
    handle: SipHandle,
    sip_call_id: String,
    from: String,
    to: String,
    request_uri: String,
    source: SocketAddr,
    offer: Option<&str>,
    headers: Vec<(String, String)>,
) -> Result<Option<Pending>, Rejection> {
    server.admit("sip", &sip_call_id).map_err(Rejection::Busy)?;
    // With an offer: negotiate it now. Without one (delayed offer): our
    // offer goes in the 200 and the caller's answer comes in the ACK; until
    // then nothing is sent (the greeting waits).
    let offered = match offer {
        Some(offer) => {
            let sdp = SessionDescription::parse(offer).map_err(|e| Rejection::Status(488, format!("malformed SDP: {e}")))?;
            let neg = negotiate(&sdp, &server.config.answer_policy).map_err(|e| Rejection::Status(488, e.to_string()))?;
            check_family(server, neg.remote_rtp).map_err(|e| Rejection::Status(488, e))?;
            Some((sdp, neg))
        }
        None => None,
    };
    let (rtp, rtcp) = server.ports.allocate().map_err(|e| {
        tracing::warn!(error = %e, "no media port for a call");
        Rejection::Status(503, "Service Unavailable".into())
    })?;
    let rtp_port = rtp.local_addr().map_err(|e| Rejection::Status(500, e.to_string()))?.port();
    let session = rand::random::<u32>() as u64;
    let (sdp_body, remote) = match &offered {
        Some((sdp, neg)) => {
            let local = LocalMedia::new(media_address(server, neg.remote_rtp), rtp_port, session);
            (build_answer(sdp, neg, &local), remote_media(neg))
        }
        None => {
            let local = LocalMedia::new(media_address(server, source), rtp_port, session);
            (voxline_sdp::build_offer(&local, &server.config.answer_policy), RemoteMedia::awaiting_answer(source.ip()))
        }
    };

    let id = new_call_id();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let media = CallMedia::new(id.clone(), MediaLeg::udp(rtp, rtcp), remote, server.config.media.clone(), events_tx);
    // Nothing is sent to the offer's address before the caller's ACK proves it is there.
    media.await_confirmation();
    let call = Arc::new(Call::new(id.clone(), Leg::Sip(handle), sip_call_id, from, to, headers, source, media.clone(), session));
    match &offered {
        Some((_, neg)) => {
            tracing::info!(call = %id, from = %call.from, to = %call.to, remote_rtp = %neg.remote_rtp, local_rtp = rtp_port, pt = neg.payload_type, "incoming call")
        }
        None => tracing::info!(call = %id, from = %call.from, to = %call.to, local_rtp = rtp_port, "incoming call without an offer: ours goes in the 200"),
    }
    let answer = sdp_body;
    server.calls.insert(call.clone());
    // With an agent deciding (events socket or webhook), ring until it does
    // or the decision timeout passes; otherwise ring for the configured time.
    let deciding = server.announce_incoming(&call, request_uri, server.config.decision_timeout);
    let wait = if deciding { server.config.decision_timeout.max(server.config.ring) } else { server.config.ring };
    let pending = Pending { at: Instant::now() + wait, call, sip: handle, answer, events: events_rx };
    if wait.is_zero() {
        answer_now(server, endpoint, pending, None);
        return Ok(None);
    }
    let _ = endpoint.ringing(Instant::now(), handle);
    Ok(Some(pending))
}

/// Applies an agent's decision to a ringing call.
fn decide(server: &Arc<Server>, endpoint: &mut Endpoint, pending: Pending, decision: Decision) {
    match decision {
        Decision::Accept { greeting, voice, preset, agent } => {
            tracing::info!(call = %pending.call.id, "accepted by the agent");
            pending.call.set_synth(voice, preset);
            pending.call.set_agent(agent);
            answer_now(server, endpoint, pending, Some(greeting.unwrap_or_else(|| server.config.greeting.clone().unwrap_or_default())));
        }
        Decision::Reject { status, reason } => {
            let (call, sip) = (pending.call, pending.sip);
            tracing::info!(call = %call.id, status, "rejected by the agent");
            if let Err(e) = endpoint.reject(Instant::now(), sip, status, reason.as_deref()) {
                tracing::debug!(error = %e, "reject failed");
            }
            if let Some(c) = server.calls.remove_sip(sip) {
                server.ended(&c, "rejected");
                c.end();
            }
        }
    }
}

/// A call that rings before it is answered (`--ring-ms`).
pub struct Pending {
    at: Instant,
    call: Arc<Call>,
    sip: SipHandle,
    answer: String,
    events: mpsc::UnboundedReceiver<MediaEvent>,
}

/// Sends the 200 and starts media, speech and the call's watchers.
/// `greeting`: what to say first (`None`: the configured greeting; empty: nothing).
fn answer_now(server: &Arc<Server>, endpoint: &mut Endpoint, pending: Pending, greeting: Option<String>) {
    let Pending { call, sip, answer, events: events_rx, .. } = pending;
    if server.calls.by_sip(sip).is_none() {
        return; // cancelled while ringing
    }
    if let Err(e) = endpoint.answer(Instant::now(), sip, &answer) {
        tracing::info!(call = %call.id, error = %e, "cannot answer");
        if let Some(c) = server.calls.remove_sip(sip) {
            c.end();
        }
        return;
    }
    call.set_state(CallState::Answered);
    tracing::info!(call = %call.id, "call answered");
    server.lifecycle(LifecycleEvent::Answered { call: call.id.clone() });
    start_media(server, &call, events_rx, greeting);
}

/// The address to put in our SDP for a peer at `remote`.
pub(super) fn media_address(server: &Server, remote: SocketAddr) -> IpAddr {
    if let Some(ip) = server.config.external_ip {
        return ip;
    }
    let bound = server.config.media_ip;
    if !bound.is_unspecified() {
        return bound;
    }
    // The local address the OS would use toward the peer.
    let probe = if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    StdUdpSocket::bind(probe)
        .and_then(|s| s.connect(remote).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(bound)
}

/// The answer to our offer: the caller's in the ACK (delayed offer), or the
/// callee's in the 200 (a call we placed).
pub(super) fn apply_answer(server: &Server, call: &Call, answer: &str) -> Result<(), String> {
    let sdp = SessionDescription::parse(answer).map_err(|e| format!("malformed SDP in the ACK: {e}"))?;
    let neg = negotiate(&sdp, &server.config.answer_policy).map_err(|e| e.to_string())?;
    check_family(server, neg.remote_rtp)?;
    call.media.update_remote(remote_media(&neg));
    Ok(())
}

/// Media must reach the peer from our RTP sockets: an IPv6 peer needs them
/// bound to IPv6 (`--media-ip`).
pub(super) fn check_family(server: &Server, remote: SocketAddr) -> Result<(), String> {
    if remote.is_ipv6() && server.config.media_ip.is_ipv4() {
        return Err(format!("IPv6 media ({}) is not supported: voxline's RTP is bound to {}", remote.ip(), server.config.media_ip));
    }
    Ok(())
}

fn remote_media(neg: &Negotiated) -> RemoteMedia {
    RemoteMedia {
        rtp: neg.remote_rtp,
        rtcp: neg.remote_rtcp,
        payload_type: neg.payload_type,
        dtmf_payload_type: neg.telephone_event_pt,
        pcma: neg.codec == voxline_sdp::Codec::Pcma,
        send: neg.direction.sends(),
    }
}

fn reoffer(server: &Server, call: &Call, offer: &str) -> Result<String, String> {
    let sdp = SessionDescription::parse(offer).map_err(|e| format!("malformed SDP: {e}"))?;
    let neg = negotiate(&sdp, &server.config.answer_policy).map_err(|e| e.to_string())?;
    check_family(server, neg.remote_rtp)?;
    call.media.update_remote(remote_media(&neg));
    tracing::info!(call = %call.id, remote_rtp = %neg.remote_rtp, hold = neg.on_hold, "re-INVITE applied");
    let mut version = call.sdp_version.lock().unwrap_or_else(|e| e.into_inner());
    *version += 1;
    let port = call.media.local_rtp().map_or(0, |a| a.port());
    let mut local = LocalMedia::new(media_address(server, neg.remote_rtp), port, call.sdp_session);
    local.session_version = *version;
    Ok(build_answer(&sdp, &neg, &local))
}

fn current_answer(server: &Server, call: &Call) -> String {
    let remote = call.media.remote();
    let port = call.media.local_rtp().map_or(0, |a| a.port());
    let mut local = LocalMedia::new(media_address(server, remote.rtp), port, call.sdp_session);
    local.session_version = *call.sdp_version.lock().unwrap_or_else(|e| e.into_inner());
    voxline_sdp::build_offer(&local, &server.config.answer_policy)
}

