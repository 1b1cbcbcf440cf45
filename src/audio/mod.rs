//! Pure audio DSP: resampling, G.711 mu-law, WAV files, crossfades.
//!
//! Everything here works on mono `f32` samples in `[-1.0, 1.0]` at an explicit
//! sample rate in Hz; nothing does I/O except the WAV helpers in [`wav`].
//!
//! Read in data-flow order (neural speech at the model's rate -> a phone call):
//!
//! | module        | what it does                                                                 |
//! |---------------|------------------------------------------------------------------------------|
//! | [`crossfade`] | joins overlapping synthesis chunks without clicks; [`Fade`] in/out ramps      |
//! | [`resample`]  | [`StreamResampler`]: streaming, anti-aliased, delay-compensated rate change   |
//! | [`pcm`]       | `f32` <-> 16-bit linear PCM sample conversion (clamping, NaN-safe)            |
//! | [`mulaw`]     | G.711 mu-law (PCMU) encode/decode, `f32` and `i16` variants                  |
//! | [`wav`]       | WAV files: 16-bit PCM and 8-bit mu-law (format tag 7) out; PCM/float/mu-law in |
//!
//! A typical call path is:
//! `model audio (22050 Hz)` -> [`crossfade_into`] at chunk joins ->
//! [`StreamResampler::process`] to 8000 Hz -> [`encode_mulaw_into`] -> RTP payload.
//!
//! Errors from every module are reported as [`AudioError`].

pub mod crossfade;
pub mod mulaw;
pub mod pcm;
pub mod resample;
pub mod wav;

use std::path::PathBuf;

pub use crossfade::{crossfade_into, Fade, FadeCurve, FadeDirection};
pub use mulaw::{
    decode_mulaw, decode_mulaw_i16, decode_mulaw_i16_into, decode_mulaw_into, encode_mulaw,
    encode_mulaw_i16, encode_mulaw_i16_into, encode_mulaw_into, MULAW_SILENCE,
};
pub use pcm::{i16_to_sample, sample_to_i16};
pub use resample::StreamResampler;
pub use wav::{read_wav, read_wav_from, write_wav, write_wav_file, WavFormat};

/// Everything that can go wrong in [`crate::audio`].
///
/// Messages say what was wrong and what to do about it, so they can be shown
/// to an operator as they are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A sample rate was zero or above [`resample::MAX_SAMPLE_RATE_HZ`].
    #[error(
        "unsupported sample rate {rate_hz} Hz: use a rate between 1 and {max_hz} Hz \
         (e.g. 8000, 16000, 22050, 24000 or 48000)",
        max_hz = resample::MAX_SAMPLE_RATE_HZ
    )]
    InvalidSampleRate {
        /// The rejected rate, in Hz.
        rate_hz: u32,
    },

    /// rubato refused to build a resampler for this rate pair.
    #[error("cannot build a resampler from {from_hz} Hz to {to_hz} Hz: {source}")]
    ResamplerSetup {
        /// Input rate, in Hz.
        from_hz: u32,
        /// Output rate, in Hz.
        to_hz: u32,
        /// What rubato reported.
        #[source]
        source: rubato::ResamplerConstructionError,
    },

    /// Reading or writing a WAV file (or stream) failed at the operating-system level.
    #[error("WAV I/O failed for {}: {source}", path.as_ref().map_or_else(|| "<stream>".to_string(), |p| p.display().to_string()))]
    WavIo {
        /// The file involved, when there is one (`None` for plain readers/writers).
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a WAV file this module can read.
    #[error("not a readable WAV file: {reason}; expected RIFF/WAVE with integer PCM, 32-bit float or G.711 mu-law/A-law data")]
    MalformedWav {
        /// What was wrong, e.g. "missing fmt chunk".
        reason: String,
    },

    /// The WAV file is well formed but uses an encoding this module does not decode.
    #[error("unsupported WAV encoding: format tag {format_tag:#06x} with {bits_per_sample} bits per sample; convert it first, e.g. `sox in.wav -b 16 -e signed-integer out.wav`")]
    UnsupportedWavFormat {
        /// The `wFormatTag` of the fmt chunk (1 = PCM, 3 = float, 6 = A-law, 7 = mu-law).
        format_tag: u16,
        /// The `wBitsPerSample` of the fmt chunk.
        bits_per_sample: u16,
    },

    /// hound (used to decode PCM and float WAV data) rejected the file.
    #[error("cannot decode WAV data: {0}")]
    WavDecode(#[from] hound::Error),

    /// The samples do not fit in one WAV file (the RIFF size field is 32 bits).
    #[error("{samples} samples are too many for one WAV file (limit about 4 GiB of data); split the audio into several files")]
    WavTooLong {
        /// How many samples were to be written.
        samples: usize,
    },
}

impl AudioError {
    pub(crate) fn io(path: Option<&std::path::Path>, source: std::io::Error) -> Self {
        AudioError::WavIo {
            path: path.map(|p| p.to_path_buf()),
            source,
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        AudioError::MalformedWav {
            reason: reason.into(),
        }
    }
}
