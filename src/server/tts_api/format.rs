//! The audio formats `POST /v1/audio/speech` answers in, and the encoder
//! that turns the engine's chunks into each, chunk by chunk.
//!
//! | `response_format` | bytes | rate |
//! | --- | --- | --- |
//! | `wav` | RIFF/WAVE header, then 16-bit LE mono; the sizes are `0xFFFFFFFF` (the length is not known while streaming, as OpenAI's) | the voice's own (Piper: 22050 or 16000 Hz) |
//! | `pcm` | raw 16-bit LE mono | 24 kHz, as OpenAI's (resampled) |
//! | `ulaw` | raw G.711 mu-law | 8 kHz (the phone path's adapter) |
//!
//! The streaming socket (`GET /v1/tts`) takes `pcm` at any of [`PCM_RATES`].

use crate::audio::{sample_to_i16, AudioError, StreamResampler};
use crate::speech::PcmuStream;
use crate::synth::PcmChunk;

/// OpenAI's `pcm` rate.
pub const PCM_RATE: u32 = 24_000;
/// The `pcm` rates the streaming socket offers (the resampler takes any
/// pair; these are the ones with 20 ms blocks and players that expect them).
pub const PCM_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Wav,
    Pcm,
    Ulaw,
}

impl ResponseFormat {
    /// `Err` says which formats there are.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "wav" => Ok(Self::Wav),
            "pcm" => Ok(Self::Pcm),
            "ulaw" | "mulaw" => Ok(Self::Ulaw),
            "mp3" | "opus" | "aac" | "flac" => Err(format!(
                "`response_format` \"{name}\" is not supported: voxline streams \"wav\", \"pcm\" (24 kHz 16-bit) or \"ulaw\" (8 kHz); \
                 OpenAI's default is mp3, so set it explicitly"
            )),
            other => Err(format!("unknown `response_format` \"{other}\": \"wav\", \"pcm\" or \"ulaw\"")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
            Self::Ulaw => "audio/basic",
        }
    }
}

/// One response's way from the engine's chunks to its format.
pub enum Encoder {
    /// The header goes out with the first chunk.
    Wav { header_sent: bool },
    Pcm(StreamResampler),
    Ulaw(PcmuStream),
}

impl Encoder {
    pub fn new(format: ResponseFormat, engine_rate: u32) -> Result<Self, AudioError> {
        Self::at(format, engine_rate, PCM_RATE)
    }

    /// As [`Encoder::new`], with `pcm` at `pcm_rate` instead of OpenAI's.
    pub fn at(format: ResponseFormat, engine_rate: u32, pcm_rate: u32) -> Result<Self, AudioError> {
        Ok(match format {
            ResponseFormat::Wav => Encoder::Wav { header_sent: false },
            ResponseFormat::Pcm => Encoder::Pcm(StreamResampler::new(engine_rate, pcm_rate)?),
            ResponseFormat::Ulaw => Encoder::Ulaw(PcmuStream::new(engine_rate)?),
        })
    }

    /// The bytes for `chunk` (the last one flushes what a resampler holds).
    pub fn encode(&mut self, chunk: &PcmChunk) -> Vec<u8> {
        match self {
            Encoder::Wav { header_sent } => {
                let mut out = Vec::with_capacity(44 + chunk.samples.len() * 2);
                if !std::mem::replace(header_sent, true) {
                    out.extend_from_slice(&streaming_wav_header(chunk.sample_rate));
                }
                push_i16(&chunk.samples, &mut out);
                out
            }
            Encoder::Pcm(resampler) => {
                let mut pcm = Vec::with_capacity(resampler.max_output_len(chunk.samples.len()));
                resampler.process(&chunk.samples, &mut pcm);
                if chunk.last {
                    resampler.flush(&mut pcm);
                }
                let mut out = Vec::with_capacity(pcm.len() * 2);
                push_i16(&pcm, &mut out);
                out
            }
            Encoder::Ulaw(phone) => phone.convert(chunk).pcmu,
        }
    }
}

fn push_i16(samples: &[f32], out: &mut Vec<u8>) {
    out.extend(samples.iter().flat_map(|&s| sample_to_i16(s).to_le_bytes()));
}

/// A 16-bit mono PCM WAV header whose RIFF and data sizes say "unknown"
/// (`0xFFFFFFFF`): the audio follows as it is synthesized.
pub fn streaming_wav_header(rate: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"RIFF");
    put(4, &u32::MAX.to_le_bytes());
    put(8, b"WAVEfmt ");
    put(16, &16u32.to_le_bytes());
    put(20, &1u16.to_le_bytes()); // PCM
    put(22, &1u16.to_le_bytes()); // mono
    put(24, &rate.to_le_bytes());
    put(28, &(rate * 2).to_le_bytes()); // bytes per second
    put(32, &2u16.to_le_bytes()); // block align
    put(34, &16u16.to_le_bytes()); // bits per sample
    put(36, b"data");
    put(40, &u32::MAX.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn chunk(samples: Vec<f32>, rate: u32, last: bool) -> PcmChunk {
        PcmChunk { samples, sample_rate: rate, start_sample: 0, sentence: 0, alignments: Vec::new(), ready_at: Instant::now(), compute: Duration::ZERO, last }
    }

    fn tone(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.05).sin() * 0.5).collect()
    }

    #[test]
    fn wav_starts_with_one_header_then_samples() {
        let mut wav = Encoder::new(ResponseFormat::Wav, 22050).unwrap();
        let a = wav.encode(&chunk(tone(100), 22050, false));
        let b = wav.encode(&chunk(tone(50), 22050, true));
        assert_eq!(a.len(), 44 + 200);
        assert_eq!(b.len(), 100, "the header only once");
        assert_eq!(&a[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(a[24..28].try_into().unwrap()), 22050);
        // The rest reads back as the same file once the sizes are known.
        let mut file = a.clone();
        file.extend(&b);
        let data = (file.len() - 44) as u32;
        file[40..44].copy_from_slice(&data.to_le_bytes());
        file[4..8].copy_from_slice(&(data + 36).to_le_bytes());
        let (samples, rate) = crate::audio::read_wav_from(std::io::Cursor::new(file)).unwrap();
        assert_eq!((samples.len(), rate), (150, 22050));
    }

    #[test]
    fn pcm_is_24_khz_whatever_the_voice_and_every_sample_arrives_once_flushed() {
        let mut pcm = Encoder::new(ResponseFormat::Pcm, 16000).unwrap();
        let total: usize = [pcm.encode(&chunk(tone(8000), 16000, false)), pcm.encode(&chunk(tone(8000), 16000, true))].iter().map(Vec::len).sum();
        assert_eq!(total, 24000 * 2, "one second at 24 kHz, two bytes a sample");
    }

    #[test]
    fn ulaw_is_8_khz_mu_law() {
        let mut ulaw = Encoder::new(ResponseFormat::Ulaw, 16000).unwrap();
        assert_eq!(ulaw.encode(&chunk(tone(16000), 16000, true)).len(), 8000);
    }

    #[test]
    fn formats_openai_has_and_voxline_does_not_are_refused_by_name() {
        assert_eq!(ResponseFormat::parse("pcm"), Ok(ResponseFormat::Pcm));
        assert!(ResponseFormat::parse("mp3").unwrap_err().contains("\"wav\", \"pcm\""));
        assert!(ResponseFormat::parse("ogg").unwrap_err().starts_with("unknown"));
    }
}
