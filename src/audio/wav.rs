//! Mono WAV files: write 16-bit PCM or 8-bit G.711 mu-law; read PCM,
//! 32-bit float, mu-law and A-law.
//!
//! Writing builds the header by hand (the sizes are known up front, since the
//! whole clip is passed in), so any [`Write`] works, including stdout and
//! pipes; hound's writer needs [`std::io::Seek`]. The layouts are the
//! canonical ones:
//!
//! * [`WavFormat::Pcm16`]: `RIFF`/`WAVE`, 16-byte `fmt ` chunk (tag 1, 16 bits),
//!   `data` with little-endian `i16` samples. 44-byte header.
//! * [`WavFormat::MuLaw`]: `RIFF`/`WAVE`, 18-byte `fmt ` chunk (tag 7,
//!   `WAVE_FORMAT_MULAW`, 8 bits, block align 1, `cbSize` 0), a `fact` chunk
//!   holding the sample count (required for non-PCM formats), then `data`
//!   with one mu-law code per sample and a pad byte if the count is odd.
//!   58-byte header. `sox`, `ffmpeg` and telephony tools read it as PCMU.
//!
//! Reading is meant for tests and tooling: [`read_wav`] decodes the whole
//! file to `f32`, averaging channels to mono. PCM and float data go through
//! hound; mu-law and A-law (which hound does not know) are decoded here.

use std::fs::File;
use std::io::{BufReader, BufWriter, Cursor, Read, Write};
use std::path::Path;

use audio_codec_algorithms::decode_alaw;
use hound::SampleFormat;

use super::mulaw::{decode_mulaw_sample, encode_mulaw_sample};
use super::pcm::{i16_to_sample, sample_to_i16};
use super::AudioError;

/// `wFormatTag` values this module writes or reads.
const TAG_PCM: u16 = 0x0001;
const TAG_IEEE_FLOAT: u16 = 0x0003;
const TAG_ALAW: u16 = 0x0006;
const TAG_MULAW: u16 = 0x0007;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

/// How samples are stored in a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WavFormat {
    /// 16-bit signed linear PCM (format tag 1), 2 bytes per sample.
    Pcm16,
    /// 8-bit G.711 mu-law (format tag 7), 1 byte per sample: exactly what
    /// goes into a PCMU call, so listening to it is listening to the call.
    MuLaw,
}

impl WavFormat {
    fn bytes_per_sample(self) -> usize {
        match self {
            WavFormat::Pcm16 => 2,
            WavFormat::MuLaw => 1,
        }
    }
}

/// Writes `samples` (mono, `f32` in `[-1.0, 1.0]`, clamped) at `rate_hz` as a
/// WAV file to `writer`, which need not be seekable (stdout works).
///
/// The writer is not flushed beyond what `write_all` does; wrap unbuffered
/// writers in a [`BufWriter`] for speed and flush it afterwards.
///
/// # Errors
/// [`AudioError::InvalidSampleRate`] for a rate of 0,
/// [`AudioError::WavTooLong`] if the data would exceed the 4 GiB RIFF limit,
/// [`AudioError::WavIo`] if writing fails.
pub fn write_wav<W: Write>(
    mut writer: W,
    samples: &[f32],
    rate_hz: u32,
    format: WavFormat,
) -> Result<(), AudioError> {
    write_wav_inner(&mut writer, samples, rate_hz, format).map_err(|e| match e {
        WriteError::Audio(e) => e,
        WriteError::Io(e) => AudioError::io(None, e),
    })
}

/// Writes `samples` as a WAV file at `path` (created or truncated); see
/// [`write_wav`].
///
/// # Errors
/// As [`write_wav`]; I/O errors name the path.
pub fn write_wav_file(
    path: impl AsRef<Path>,
    samples: &[f32],
    rate_hz: u32,
    format: WavFormat,
) -> Result<(), AudioError> {
    let path = path.as_ref();
    let file = File::create(path).map_err(|e| AudioError::io(Some(path), e))?;
    let mut writer = BufWriter::new(file);
    let result = write_wav_inner(&mut writer, samples, rate_hz, format)
        .and_then(|()| writer.flush().map_err(WriteError::Io));
    result.map_err(|e| match e {
        WriteError::Audio(e) => e,
        WriteError::Io(e) => AudioError::io(Some(path), e),
    })
}

enum WriteError {
    Audio(AudioError),
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

fn write_wav_inner<W: Write>(
    writer: &mut W,
    samples: &[f32],
    rate_hz: u32,
    format: WavFormat,
) -> Result<(), WriteError> {
    if rate_hz == 0 {
        return Err(WriteError::Audio(AudioError::InvalidSampleRate { rate_hz }));
    }
    let too_long = || WriteError::Audio(AudioError::WavTooLong { samples: samples.len() });
    let data_len = samples
        .len()
        .checked_mul(format.bytes_per_sample())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(too_long)?;
    let pad = data_len % 2; // RIFF chunks are word aligned.
    let bytes_per_sample = format.bytes_per_sample() as u32;

    let mut header = Vec::with_capacity(58);
    let fmt_len: u32 = match format {
        WavFormat::Pcm16 => 16,
        WavFormat::MuLaw => 18,
    };
    let fact_len: u32 = match format {
        WavFormat::Pcm16 => 0,
        WavFormat::MuLaw => 8 + 4,
    };
    let riff_len = (4 + 8 + fmt_len + fact_len + 8)
        .checked_add(data_len)
        .and_then(|n| n.checked_add(pad))
        .ok_or_else(too_long)?;
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&riff_len.to_le_bytes());
    header.extend_from_slice(b"WAVE");
    header.extend_from_slice(b"fmt ");
    header.extend_from_slice(&fmt_len.to_le_bytes());
    let tag = match format {
        WavFormat::Pcm16 => TAG_PCM,
        WavFormat::MuLaw => TAG_MULAW,
    };
    header.extend_from_slice(&tag.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes()); // channels
    header.extend_from_slice(&rate_hz.to_le_bytes());
    let byte_rate = rate_hz.checked_mul(bytes_per_sample).ok_or(WriteError::Audio(
        AudioError::InvalidSampleRate { rate_hz },
    ))?;
    header.extend_from_slice(&byte_rate.to_le_bytes());
    header.extend_from_slice(&(bytes_per_sample as u16).to_le_bytes()); // block align
    header.extend_from_slice(&(bytes_per_sample as u16 * 8).to_le_bytes()); // bits per sample
    if format == WavFormat::MuLaw {
        header.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        header.extend_from_slice(b"fact");
        header.extend_from_slice(&4u32.to_le_bytes());
        header.extend_from_slice(&data_len.to_le_bytes()); // samples per channel
    }
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_len.to_le_bytes());
    writer.write_all(&header)?;

    // Encode through a fixed buffer: few write calls, no allocation per sample.
    let mut buf = [0u8; 4096];
    match format {
        WavFormat::Pcm16 => {
            for chunk in samples.chunks(buf.len() / 2) {
                for (bytes, &s) in buf.chunks_exact_mut(2).zip(chunk) {
                    bytes.copy_from_slice(&sample_to_i16(s).to_le_bytes());
                }
                writer.write_all(&buf[..chunk.len() * 2])?;
            }
        }
        WavFormat::MuLaw => {
            for chunk in samples.chunks(buf.len()) {
                for (byte, &s) in buf.iter_mut().zip(chunk) {
                    *byte = encode_mulaw_sample(s);
                }
                writer.write_all(&buf[..chunk.len()])?;
            }
        }
    }
    if pad == 1 {
        writer.write_all(&[0])?;
    }
    Ok(())
}

/// Reads a WAV file and returns its samples as mono `f32` (channels averaged)
/// and its sample rate in Hz.
///
/// Supported: integer PCM (8, 16, 24, 32 bits), 32-bit float, G.711 mu-law and
/// A-law, in plain or `WAVE_FORMAT_EXTENSIBLE` headers.
///
/// # Errors
/// [`AudioError::WavIo`] naming the path if it cannot be read,
/// [`AudioError::MalformedWav`] / [`AudioError::UnsupportedWavFormat`] /
/// [`AudioError::WavDecode`] if its contents cannot be decoded.
pub fn read_wav(path: impl AsRef<Path>) -> Result<(Vec<f32>, u32), AudioError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| AudioError::io(Some(path), e))?;
    let mut bytes = Vec::new();
    BufReader::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| AudioError::io(Some(path), e))?;
    decode_wav_bytes(&bytes)
}

/// Reads a whole WAV stream from `reader` (e.g. stdin); see [`read_wav`].
///
/// # Errors
/// As [`read_wav`].
pub fn read_wav_from<R: Read>(mut reader: R) -> Result<(Vec<f32>, u32), AudioError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| AudioError::io(None, e))?;
    decode_wav_bytes(&bytes)
}

/// What the `fmt ` chunk says, with `WAVE_FORMAT_EXTENSIBLE` resolved to the
/// tag of its sub-format.
struct FmtChunk {
    format_tag: u16,
    channels: u16,
    rate_hz: u32,
    bits_per_sample: u16,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Walks the RIFF chunks; returns the fmt chunk and the data chunk's bytes.
/// A data size larger than the file (streamed or truncated files) is taken to
/// mean "until the end".
fn scan_riff(bytes: &[u8]) -> Result<(FmtChunk, &[u8]), AudioError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(AudioError::malformed("missing RIFF/WAVE header"));
    }
    let mut fmt = None;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = le_u32(bytes, at + 4).unwrap_or(0) as usize;
        let body_start = at + 8;
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                let field = |at| le_u16(body, at).ok_or_else(|| AudioError::malformed("fmt chunk too short"));
                let mut format_tag = field(0)?;
                let channels = field(2)?;
                let rate_hz =
                    le_u32(body, 4).ok_or_else(|| AudioError::malformed("fmt chunk too short"))?;
                let bits_per_sample = field(14)?;
                if format_tag == TAG_EXTENSIBLE {
                    // The sub-format GUID starts at offset 24; its first two
                    // bytes are the plain format tag.
                    format_tag = le_u16(body, 24).ok_or_else(|| {
                        AudioError::malformed("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
                    })?;
                }
                fmt = Some(FmtChunk {
                    format_tag,
                    channels,
                    rate_hz,
                    bits_per_sample,
                });
            }
            b"data" => {
                let fmt = fmt.ok_or_else(|| AudioError::malformed("data chunk before fmt chunk"))?;
                return Ok((fmt, body));
            }
            _ => {}
        }
        at = body_start.saturating_add(len).saturating_add(len % 2);
    }
    Err(AudioError::malformed(if fmt.is_some() {
        "missing data chunk"
    } else {
        "missing fmt chunk"
    }))
}

fn decode_wav_bytes(bytes: &[u8]) -> Result<(Vec<f32>, u32), AudioError> {
    let (fmt, data) = scan_riff(bytes)?;
    if fmt.channels == 0 {
        return Err(AudioError::malformed("fmt chunk declares 0 channels"));
    }
    if fmt.rate_hz == 0 {
        return Err(AudioError::malformed("fmt chunk declares a sample rate of 0"));
    }
    let channels = usize::from(fmt.channels);
    match (fmt.format_tag, fmt.bits_per_sample) {
        (TAG_MULAW, 8) => Ok((downmix(data.iter().map(|&c| decode_mulaw_sample(c)), channels), fmt.rate_hz)),
        (TAG_ALAW, 8) => Ok((
            downmix(data.iter().map(|&c| i16_to_sample(decode_alaw(c))), channels),
            fmt.rate_hz,
        )),
        (TAG_PCM | TAG_IEEE_FLOAT, _) => decode_with_hound(bytes),
        (format_tag, bits_per_sample) => Err(AudioError::UnsupportedWavFormat {
            format_tag,
            bits_per_sample,
        }),
    }
}

fn decode_with_hound(bytes: &[u8]) -> Result<(Vec<f32>, u32), AudioError> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<f32> = match spec.sample_format {
        SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()?
        }
    };
    Ok((downmix(samples.into_iter(), channels), spec.sample_rate))
}

/// Averages interleaved frames of `channels` samples to mono; a trailing
/// partial frame is dropped.
fn downmix(samples: impl Iterator<Item = f32>, channels: usize) -> Vec<f32> {
    if channels == 1 {
        return samples.collect();
    }
    let interleaved: Vec<f32> = samples.collect();
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_signal(len: usize) -> Vec<f32> {
        (0..len)
            .map(|n| 0.6 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 8000.0).sin())
            .collect()
    }

    fn bytes_of(samples: &[f32], rate: u32, format: WavFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_wav(&mut bytes, samples, rate, format).expect("write to Vec");
        bytes
    }

    #[test]
    fn mulaw_header_layout() {
        let bytes = bytes_of(&[0.0, 0.5, -0.5], 8000, WavFormat::MuLaw);
        // 58-byte header + 3 data bytes + 1 pad byte.
        assert_eq!(bytes.len(), 62);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(le_u32(&bytes, 4), Some(62 - 8));
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(le_u32(&bytes, 16), Some(18)); // fmt chunk size
        assert_eq!(le_u16(&bytes, 20), Some(7)); // WAVE_FORMAT_MULAW
        assert_eq!(le_u16(&bytes, 22), Some(1)); // channels
        assert_eq!(le_u32(&bytes, 24), Some(8000)); // sample rate
        assert_eq!(le_u32(&bytes, 28), Some(8000)); // byte rate
        assert_eq!(le_u16(&bytes, 32), Some(1)); // block align
        assert_eq!(le_u16(&bytes, 34), Some(8)); // bits per sample
        assert_eq!(le_u16(&bytes, 36), Some(0)); // cbSize
        assert_eq!(&bytes[38..42], b"fact");
        assert_eq!(le_u32(&bytes, 42), Some(4));
        assert_eq!(le_u32(&bytes, 46), Some(3)); // sample count
        assert_eq!(&bytes[50..54], b"data");
        assert_eq!(le_u32(&bytes, 54), Some(3));
        assert_eq!(bytes[58], 0xFF); // silence
        assert_eq!(bytes[61], 0); // pad
    }

    #[test]
    fn pcm16_header_is_canonical_and_hound_reads_it() {
        let samples = test_signal(1001);
        let bytes = bytes_of(&samples, 8000, WavFormat::Pcm16);
        assert_eq!(bytes.len(), 44 + 2 * 1001);
        let mut reader = hound::WavReader::new(Cursor::new(&bytes)).expect("hound accepts the header");
        let spec = reader.spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 8000, 16));
        let pcm: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>().expect("samples");
        let expected: Vec<i16> = samples.iter().map(|&s| sample_to_i16(s)).collect();
        assert_eq!(pcm, expected);
    }

    #[test]
    fn round_trips() {
        let samples = test_signal(8000);
        let (pcm, rate) = read_wav_from(Cursor::new(bytes_of(&samples, 16000, WavFormat::Pcm16)))
            .expect("read PCM16");
        assert_eq!(rate, 16000);
        assert_eq!(pcm.len(), samples.len());
        assert!(samples.iter().zip(&pcm).all(|(a, b)| (a - b).abs() <= 1.0 / 32768.0));

        let (mulaw, rate) = read_wav_from(Cursor::new(bytes_of(&samples, 8000, WavFormat::MuLaw)))
            .expect("read mu-law");
        assert_eq!(rate, 8000);
        let expected: Vec<f32> = samples.iter().map(|&s| decode_mulaw_sample(encode_mulaw_sample(s))).collect();
        assert_eq!(mulaw, expected);
    }

    #[test]
    fn file_round_trip_and_float_input() {
        let dir = std::env::temp_dir().join(format!("voxline-wav-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let samples = test_signal(777);

        let mulaw_path = dir.join("t.ulaw.wav");
        write_wav_file(&mulaw_path, &samples, 8000, WavFormat::MuLaw).expect("write mu-law file");
        let (back, rate) = read_wav(&mulaw_path).expect("read mu-law file");
        assert_eq!((back.len(), rate), (777, 8000));

        // A 32-bit float stereo file written by hound reads back as mono.
        let float_path = dir.join("t.f32.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 22050,
            bits_per_sample: 32,
            sample_format: SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&float_path, spec).expect("hound writer");
        for &s in &samples {
            w.write_sample(s).expect("sample");
            w.write_sample(0.0f32).expect("sample");
        }
        w.finalize().expect("finalize");
        let (back, rate) = read_wav(&float_path).expect("read float file");
        assert_eq!((back.len(), rate), (777, 22050));
        assert!(samples.iter().zip(&back).all(|(a, b)| (a / 2.0 - b).abs() < 1e-7));

        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn empty_clip_is_valid() {
        for format in [WavFormat::Pcm16, WavFormat::MuLaw] {
            let (samples, rate) = read_wav_from(Cursor::new(bytes_of(&[], 8000, format))).expect("read");
            assert!(samples.is_empty());
            assert_eq!(rate, 8000);
        }
    }

    #[test]
    fn errors_are_descriptive() {
        let missing = read_wav("/nonexistent/dir/x.wav").unwrap_err();
        assert!(matches!(missing, AudioError::WavIo { .. }));
        assert!(missing.to_string().contains("/nonexistent/dir/x.wav"), "{missing}");

        let garbage = read_wav_from(Cursor::new(b"not a wav file at all".to_vec())).unwrap_err();
        assert!(matches!(garbage, AudioError::MalformedWav { .. }), "{garbage}");

        // G.722 (tag 0x0064) is well formed but not decoded here.
        let mut bytes = bytes_of(&[0.0; 4], 8000, WavFormat::MuLaw);
        bytes[20..22].copy_from_slice(&0x0064u16.to_le_bytes());
        let unsupported = read_wav_from(Cursor::new(bytes)).unwrap_err();
        assert!(matches!(unsupported, AudioError::UnsupportedWavFormat { format_tag: 0x64, .. }));
        assert!(unsupported.to_string().contains("sox"), "{unsupported}");

        let mut sink = Vec::new();
        assert!(matches!(
            write_wav(&mut sink, &[0.0], 0, WavFormat::Pcm16),
            Err(AudioError::InvalidSampleRate { rate_hz: 0 })
        ));
    }

    #[test]
    fn writer_errors_surface() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = write_wav(Broken, &[0.0; 10], 8000, WavFormat::MuLaw).unwrap_err();
        assert!(matches!(err, AudioError::WavIo { path: None, .. }));
        assert!(err.to_string().contains("pipe closed"), "{err}");
    }
}
