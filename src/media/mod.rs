//! The media plane: playout buffers, the pacing clock, RTP and RTCP.
//!
//! Synthesized audio (already 8 kHz mu-law) goes into a call's [`Playout`];
//! the [`Pacer`]'s threads (one shard of the calls each, one per core by
//! default, [`shard`]) wake on absolute 20 ms deadlines and send each call's
//! next frame as an RTP packet, so packets never drift
//! against the monotonic clock and a slow synthesizer shows up as counted
//! silence, never as a gap in the RTP timeline. The same clock sends DTMF
//! to the caller as RFC 4733 telephone-events ([`CallMedia::send_dtmf`]),
//! holding the call's audio while the digits go out.

pub mod audio_queue;
pub mod call_media;
pub mod dtmf;
pub mod leg;
pub mod pacer;
pub mod playout;
pub mod ports;
pub mod rtcp;
pub mod rtp_header;
pub mod rtp_in;
pub mod rtp_out;
pub mod shard;
pub mod speech_tally;
pub mod signal;

use std::time::Duration;

pub use dtmf::{DtmfSendError, DTMF_DEFAULT_DURATION, DTMF_GAP};
pub use call_media::{CallMedia, MediaConfig, MediaEvent, MediaStats, RemoteMedia};
pub use leg::{MediaLeg, TrackQueue};
pub use pacer::Pacer;
pub use playout::{trim_edges, ClearedUtterance, FrameKind, Playout, PlayoutEvent, UtteranceId, MAX_LEAD, MAX_TAIL};
pub use ports::PortAllocator;
pub use signal::CallSignal;

/// One packet's worth of time.
pub const FRAME: Duration = Duration::from_millis(20);
/// Samples (= PCMU bytes) in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// Mu-law code of a zero sample.
pub const SILENCE_PCMU: u8 = 0xFF;
/// The telephony sample rate.
pub const RATE: u32 = 8000;
