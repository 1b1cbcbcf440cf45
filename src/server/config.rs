//! What `voxline serve` is configured with (flags and, later, a file).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::speech::SpeechConfig;
use crate::media::MediaConfig;

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
    /// End an answered call whose ACK has not come within this.
    pub ack_timeout: Duration,
    /// Session timers (RFC 4028): the interval asked for and granted at most (`None`: off),
    /// and the shortest accepted (Min-SE).
    pub session_expires: Option<Duration>,
    pub min_se: Duration,
    /// INVITE rate per source and the cap on calls not yet acknowledged.
    pub flood: super::flood::FloodLimits,
    /// HTTP header-read (and keep-alive idle) timeout and connections per client address.
    pub http_limits: super::listener::HttpLimits,
    /// Where each ended call's record goes ([`super::call_records`]).
    pub call_records: super::call_records::CallRecords,
    /// How long live calls may go on after SIGTERM/SIGINT ([`super::drain`]).
    pub drain_timeout: Duration,
    /// Synthesis workers, scheduling and admission.
    pub speech: SpeechConfig,
    pub media: MediaConfig,
    /// Pacing threads (shards of the calls' RTP clock); 0: one per core.
    pub pacer_threads: usize,
    /// Named trunks (`--trunk`, `[[trunk]]`) and their registrations' state.
    pub trunks: std::sync::Arc<super::trunks::Trunks>,
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
    /// Agent-URL mode: the agent every call connects to, and how long it may be unreachable.
    pub agent: super::control::AgentPolicy,
    /// Checking Twilio's `X-Twilio-Signature` on its requests.
    pub twilio: super::twilio::TwilioAuth,
    /// How browsers reach us (ICE servers, candidate addresses).
    pub webrtc: WebRtcConfig,
    /// Serve the demo page from here (development) instead of the built-in copy.
    pub web_dir: Option<std::path::PathBuf>,
}

/// How browsers reach us.
#[derive(Debug, Clone, Default)]
pub struct WebRtcConfig {
    /// STUN/TURN servers handed to the ICE agent (`stun:host:port`,
    /// `turn:host:port?transport=udp`).
    pub ice_servers: Vec<IceServer>,
    /// Only these local addresses become host candidates (empty: every
    /// interface but loopback). A loopback address here also allows loopback
    /// candidates, for a browser on the same machine.
    pub ips: Vec<IpAddr>,
    /// UDP ports for ICE (empty: any).
    pub ports: Option<(u16, u16)>,
    /// The public address behind a 1:1 NAT (`--external-ip`), advertised as
    /// the host candidates' address.
    pub external_ip: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct IceServer {
    pub url: String,
    pub username: String,
    pub credential: String,
}
