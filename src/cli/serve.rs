//! `voxline serve`: its flags, and the server they configure.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use voxline::synth::Engine;

use crate::VoiceArgs;

#[derive(Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file; flags and environment variables
    /// override it (docs/configuration.md, "Configuration file").
    #[arg(long, env = "VOXLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// SIP listen address (UDP).
    #[arg(long, env = "VOXLINE_SIP", default_value = "0.0.0.0:5060")]
    pub sip: std::net::SocketAddr,
    /// HTTP API listen address.
    #[arg(long, env = "VOXLINE_HTTP", default_value = "0.0.0.0:8080")]
    pub http: std::net::SocketAddr,
    /// Address to advertise in SDP and Contact (the public address behind NAT).
    #[arg(long, env = "VOXLINE_EXTERNAL_IP")]
    pub external_ip: Option<std::net::IpAddr>,
    /// RTP port range, LOW-HIGH (an even port for RTP, the next for RTCP).
    #[arg(long, env = "VOXLINE_RTP_PORTS", default_value = "10000-20000", value_parser = parse_range)]
    pub rtp_ports: (u16, u16),
    /// Spoken to every answered call; empty for none.
    #[arg(long, env = "VOXLINE_GREETING", default_value = "Hello! You are connected to voxline.")]
    pub greeting: String,
    /// Ring this many milliseconds (180 Ringing) before answering; 0 answers at once.
    #[arg(long, env = "VOXLINE_RING_MS", default_value_t = 0)]
    pub ring_ms: u64,
    /// Require this bearer token on the HTTP API and WebSockets (recommended
    /// whenever --http is reachable from other machines).
    #[arg(long, env = "VOXLINE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// POST incoming calls (and later lifecycle events) to this http:// URL; its JSON answer may accept or reject the call.
    #[arg(long, env = "VOXLINE_WEBHOOK")]
    pub webhook: Option<String>,
    /// Sent as `Authorization: Bearer` with webhook requests.
    #[arg(long, env = "VOXLINE_WEBHOOK_TOKEN", hide_env_values = true)]
    pub webhook_token: Option<String>,
    /// How long a call rings waiting for an agent's accept/reject (webhook or
    /// events socket with decide=true) before it is answered with the greeting.
    #[arg(long, env = "VOXLINE_DECISION_TIMEOUT_MS", default_value_t = 3000)]
    pub decision_timeout_ms: u64,
    /// Agent-URL mode: connect every answered call to the agent's WebSocket
    /// here (ws:// or wss://), `?call=ID` added; a decision's `agent_url` overrides it.
    #[arg(long, env = "VOXLINE_AGENT_URL")]
    pub agent_url: Option<String>,
    /// What --agent-url speaks: `native` or `conversationrelay`.
    #[arg(long, env = "VOXLINE_AGENT_DIALECT", default_value = "native", value_parser = parse_dialect)]
    pub agent_dialect: voxline::server::control::Dialect,
    /// Hang up a call whose agent (agent-URL mode) is not connected within this
    /// many milliseconds of the answer or of a dropped connection.
    #[arg(long, env = "VOXLINE_AGENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub agent_timeout_ms: u64,
    /// Extra CA certificates (PEM) trusted for wss:// agent URLs, besides the
    /// built-in Mozilla roots (a private CA, a self-signed agent).
    #[arg(long, env = "VOXLINE_AGENT_CA")]
    pub agent_ca: Option<PathBuf>,
    /// Twilio's auth token: Twilio Media Streams need a valid X-Twilio-Signature (403 otherwise).
    #[arg(long, env = "VOXLINE_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// The URL Twilio reaches this server at (https://HOST or wss://HOST), when a
    /// proxy's Host differs; X-Twilio-Signature is checked against it.
    #[arg(long, env = "VOXLINE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// STUN server for browsers' calls (WebRTC ICE), e.g. stun:stun.example.com:3478; repeatable.
    #[arg(long, env = "VOXLINE_STUN", value_delimiter = ',')]
    pub stun: Vec<String>,
    /// TURN server for browsers behind strict NATs, e.g. turn:turn.example.com:3478?transport=udp; repeatable.
    #[arg(long, env = "VOXLINE_TURN", value_delimiter = ',')]
    pub turn: Vec<String>,
    /// TURN user name.
    #[arg(long, env = "VOXLINE_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// TURN password.
    #[arg(long, env = "VOXLINE_TURN_PASSWORD", hide_env_values = true)]
    pub turn_password: Option<String>,
    /// Only these local addresses become WebRTC host candidates (default: every interface but
    /// loopback); a loopback address allows a browser on the same machine. Repeatable.
    #[arg(long, env = "VOXLINE_WEBRTC_IP", value_delimiter = ',')]
    pub webrtc_ip: Vec<std::net::IpAddr>,
    /// UDP ports for WebRTC ICE, LOW-HIGH (default: any).
    #[arg(long, env = "VOXLINE_WEBRTC_PORTS", value_parser = parse_range)]
    pub webrtc_ports: Option<(u16, u16)>,
    /// Serve the demo page from this folder instead of the copy built into the binary.
    #[arg(long, env = "VOXLINE_WEB_DIR")]
    pub web_dir: Option<std::path::PathBuf>,
    /// Calls beyond this get 503.
    #[arg(long, env = "VOXLINE_MAX_CALLS", default_value_t = 1000)]
    pub max_calls: usize,
    /// End a call after this many seconds without RTP from the caller (0: never).
    #[arg(long, env = "VOXLINE_RTP_TIMEOUT", default_value_t = 60)]
    pub rtp_timeout: u64,
    /// End an answered call whose ACK has not come within this many seconds
    /// (RFC 3261's 32 s is for lossy links; a caller that is there ACKs in a round trip).
    #[arg(long, env = "VOXLINE_ACK_TIMEOUT", default_value_t = 8)]
    pub ack_timeout: u64,
    /// Session timers (RFC 4028): the session interval in seconds voxline asks
    /// for and grants at most; the refresher re-INVITEs or UPDATEs at half of
    /// it, and a call whose peer stops refreshing ends. 0: no session timers.
    #[arg(long, env = "VOXLINE_SESSION_EXPIRES", default_value_t = 1800)]
    pub session_expires: u64,
    /// The shortest session interval accepted (Min-SE, seconds): a shorter
    /// Session-Expires gets 422. RFC 4028 says 90; lower only for tests.
    #[arg(long, env = "VOXLINE_MIN_SE", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_se: u64,
    /// New INVITEs per second from one source address; beyond it (after
    /// --invite-burst) they get 503 with Retry-After. 0: no limit (a trusted
    /// proxy in front that limits for us).
    #[arg(long, env = "VOXLINE_INVITE_RATE", default_value_t = 20.0)]
    pub invite_rate: f64,
    /// INVITEs one source may send at once before --invite-rate applies.
    #[arg(long, env = "VOXLINE_INVITE_BURST", default_value_t = 50.0)]
    pub invite_burst: f64,
    /// Calls ringing or answered but not yet acknowledged, at most; a new
    /// INVITE beyond it ends the oldest of them (a flood of INVITEs that
    /// never ACK recycles its own slots, not those of real callers).
    #[arg(long, env = "VOXLINE_MAX_UNCONFIRMED", default_value_t = 64)]
    pub max_unconfirmed: usize,
    /// A SIP trunk to call out through (`"trunk"` in POST /v1/calls) and, with
    /// register=yes, to register with: name=NAME,host=HOST[,port=N][,transport=udp|tcp]
    /// [,proxy=HOST[:PORT]][,username=U,password=P][,register=yes][,from_user=U]
    /// [,from_domain=D][,expires=S][,retry=S][,timeout=S]; `\,` for a comma in a value.
    /// Repeatable (docs/sip.md, "Trunks").
    #[arg(long = "trunk", env = "VOXLINE_TRUNK", hide_env_values = true, value_parser = voxline::server::trunks::Trunk::parse)]
    pub trunks: Vec<voxline::server::trunks::Trunk>,
    /// DNS server (IP[:PORT], port 53 by default) for trunk host names, instead of the
    /// system's resolver (RFC 3263 NAPTR, SRV, A/AAAA lookups).
    #[arg(long, env = "VOXLINE_DNS_SERVER", value_parser = voxline::server::trunks::resolve::parse_server)]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Close an HTTP connection whose request headers have not all arrived
    /// within this many seconds (also a keep-alive connection idle this long).
    #[arg(long, env = "VOXLINE_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    pub http_header_timeout: u64,
    /// Open HTTP connections (WebSockets included) from one client address, at
    /// most; raise it when one agent host drives more calls than this.
    #[arg(long, env = "VOXLINE_HTTP_MAX_CONNS_PER_IP", default_value_t = 256)]
    pub http_max_conns_per_ip: usize,
    /// Append one JSON line per ended call to this file (`-`: standard
    /// output); without it, records are logged on the target `voxline::cdr`.
    #[arg(long, env = "VOXLINE_CALL_RECORDS")]
    pub call_records: Option<PathBuf>,
    /// On SIGTERM/SIGINT, let live calls go on this many seconds (each ends
    /// with BYE once its current speech has played), then end the rest.
    #[arg(long, env = "VOXLINE_DRAIN_TIMEOUT", default_value_t = 30)]
    pub drain_timeout: u64,
    /// NAT handling: latch the caller's media source from its first packet.
    #[arg(long, env = "VOXLINE_NAT")]
    pub nat: bool,
    /// Do not send silence between utterances (RTP stops; timestamps still advance).
    #[arg(long)]
    pub no_silence: bool,
    /// Threads that send the calls' RTP, each pacing its share of the calls
    /// on its own 20 ms clock and pinned to its own CPU (VOXLINE_PACER_PIN=0:
    /// not pinned); 0 = one per core.
    #[arg(long, env = "VOXLINE_PACER_THREADS", default_value_t = 0)]
    pub pacer_threads: usize,
    /// Synthesis threads shared by all calls; 0 = one per core.
    #[arg(long, env = "VOXLINE_SYNTH_WORKERS", default_value_t = 0)]
    pub synth_workers: usize,
    /// How synthesis work is ordered: `deadline` (earliest deadline first,
    /// chunk by chunk, batched across calls) or `fcfs` (whole utterances in
    /// arrival order; kept for comparison).
    #[arg(long, env = "VOXLINE_SYNTH_SCHEDULER", default_value = "deadline", value_parser = voxline::speech::Policy::from_name)]
    pub synth_scheduler: voxline::speech::Policy,
    /// First audio of a new turn should reach the caller within this (p99);
    /// calls that would push it further are refused (503, Retry-After).
    #[arg(long, env = "VOXLINE_FIRST_AUDIO_TARGET_MS", default_value_t = 300)]
    pub first_audio_target_ms: u64,
    /// Take every call however loaded the synthesizer is (no 503 for load).
    #[arg(long, env = "VOXLINE_NO_ADMISSION")]
    pub no_admission: bool,
    /// Voices to load and warm up at start besides the default one (names
    /// from the models folder, comma-separated, or `all`); others load on first use.
    #[arg(long, env = "VOXLINE_PRELOAD_VOICES", value_delimiter = ',')]
    pub preload_voices: Vec<String>,
    #[command(flatten)]
    pub voice: VoiceArgs,
}

pub fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected LOW-HIGH, e.g. 10000-20000")?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|e| format!("{e}"))?, b.trim().parse().map_err(|e| format!("{e}"))?);
    if a > b || (a != 0 && b - a < 1) {
        return Err(format!("empty port range {a}-{b}"));
    }
    Ok((a, b))
}

fn parse_dialect(s: &str) -> Result<voxline::server::control::Dialect, String> {
    voxline::server::control::Dialect::from_name(Some(s))
}

/// Runs the server until it is drained or killed.
pub fn run(args: ServeArgs) -> Result<()> {
    use std::io::Write as _;
    use voxline::media::{rtp_in::SourcePolicy, MediaConfig};
    use voxline::server::{serve, ServerConfig};

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (engine, catalog): (Arc<dyn Engine>, _) = if args.voice.engine == "piper" {
        let engine = args.voice.engine()?;
        let catalog = args.voice.catalog(&engine)?;
        (Arc::new(engine), catalog)
    } else {
        (args.voice.any_engine()?, voxline::speech::VoiceCatalog::none())
    };
    let media_ip = args.sip.ip();
    voxline::server::trunks::Trunks::check(&args.trunks).map_err(anyhow::Error::msg).context("--trunk")?;
    let config = ServerConfig {
        sip_listen: args.sip,
        http_listen: args.http,
        external_ip: args.external_ip,
        media_ip,
        rtp_ports: args.rtp_ports,
        greeting: Some(args.greeting).filter(|g| !g.trim().is_empty()),
        max_calls: args.max_calls,
        ring: std::time::Duration::from_millis(args.ring_ms),
        rtp_timeout: (args.rtp_timeout > 0).then(|| std::time::Duration::from_secs(args.rtp_timeout)),
        ack_timeout: std::time::Duration::from_secs(args.ack_timeout.max(1)),
        session_expires: (args.session_expires > 0).then(|| std::time::Duration::from_secs(args.session_expires)),
        min_se: std::time::Duration::from_secs(args.min_se),
        flood: voxline::server::flood::FloodLimits {
            invite_rate: args.invite_rate.max(0.0),
            invite_burst: args.invite_burst.max(1.0),
            max_unconfirmed: args.max_unconfirmed.max(1),
        },
        http_limits: voxline::server::listener::HttpLimits {
            header_timeout: std::time::Duration::from_secs(args.http_header_timeout.max(1)),
            max_per_ip: args.http_max_conns_per_ip.max(1),
        },
        drain_timeout: std::time::Duration::from_secs(args.drain_timeout),
        call_records: voxline::server::call_records::CallRecords::new(args.call_records.as_deref())
            .with_context(|| format!("--call-records: cannot append to {:?}", args.call_records))?,
        speech: voxline::speech::SpeechConfig {
            workers: if args.synth_workers == 0 { cores } else { args.synth_workers },
            policy: args.synth_scheduler,
            first_audio_target: std::time::Duration::from_millis(args.first_audio_target_ms),
            admission: !args.no_admission,
            preload_voices: args.preload_voices.clone(),
            huge_pages: std::env::var("VOXLINE_HUGE_PAGES").map_or(true, |v| v != "0"),
        },
        media: MediaConfig {
            send_silence: !args.no_silence,
            source_policy: if args.nat { SourcePolicy::Latch { window: std::time::Duration::from_secs(5) } } else { SourcePolicy::Strict },
            connect_rtp: std::env::var("VOXLINE_RTP_CONNECT").map_or(true, |v| v != "0"),
        },
        pacer_threads: args.pacer_threads,
        trunks: voxline::server::trunks::Trunks::new(args.trunks.clone(), args.dns_server),
        answer_policy: voxline_sdp::AnswerPolicy::default(),
        // No version: it would tell an attacker which bugs to try.
        user_agent: "voxline".into(),
        api_token: args.api_token.filter(|t| !t.is_empty()),
        synth: args.voice.options(),
        webhook: args.webhook.filter(|w| !w.is_empty()),
        webhook_token: args.webhook_token.filter(|t| !t.is_empty()),
        decision_timeout: std::time::Duration::from_millis(args.decision_timeout_ms),
        agent: voxline::server::control::AgentPolicy {
            default: match args.agent_url.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => Some(voxline::server::control::AgentTarget::new(url, args.agent_dialect).map_err(anyhow::Error::msg).context("--agent-url")?),
                None => None,
            },
            timeout: std::time::Duration::from_millis(args.agent_timeout_ms.max(1)),
            tls: voxline::server::control::agent_tls::client_config(args.agent_ca.as_deref()).map_err(anyhow::Error::msg).context("--agent-ca")?,
        },
        twilio: voxline::server::twilio::TwilioAuth::new(args.twilio_auth_token.filter(|t| !t.is_empty()), args.public_url.filter(|u| !u.is_empty()))
            .map_err(anyhow::Error::msg)
            .context("--public-url")?,
        webrtc: voxline::server::WebRtcConfig {
            ice_servers: args
                .stun
                .iter()
                .map(|url| voxline::server::IceServer { url: url.clone(), username: String::new(), credential: String::new() })
                .chain(args.turn.iter().map(|url| voxline::server::IceServer {
                    url: url.clone(),
                    username: args.turn_username.clone().unwrap_or_default(),
                    credential: args.turn_password.clone().unwrap_or_default(),
                }))
                .collect(),
            ips: args.webrtc_ip.clone(),
            ports: args.webrtc_ports,
            external_ip: args.external_ip,
        },
        web_dir: args.web_dir.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cores.min(4)).enable_all().build()?;
    runtime.block_on(serve(config, engine, catalog, |bound| {
        // One machine-readable line for scripts and tests, then a human one.
        println!("ready sip={} http={}", bound.sip, bound.http);
        let _ = std::io::stdout().flush();
        eprintln!("voxline: answering SIP on udp and tcp {}, HTTP API on http://{}", bound.sip, bound.http);
    }))
}
