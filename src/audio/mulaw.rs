//! G.711 mu-law (PCMU, RTP payload type 0), via the `audio-codec-algorithms` crate.
//!
//! mu-law maps 14-bit linear audio onto 8-bit codes with a logarithmic step
//! size (about 38 dB SNR for speech at any level). Codes are the on-the-wire
//! bytes, already bit-inverted as G.711 specifies: `0xFF` is the positive zero
//! ([`MULAW_SILENCE`]), `0x80` the largest positive value and `0x00` the
//! largest negative value.
//!
//! `f32` input is converted to 16-bit PCM first (see [`crate::audio::pcm`]):
//! values outside `[-1.0, 1.0]` and `±inf` are clamped, `NaN` becomes silence.
//! The largest magnitude mu-law can carry is 32124/32768 ≈ 0.980, so louder
//! samples clip there.
//!
//! The `*_into` variants append to a caller-owned `Vec`; reuse it (after
//! `clear()`) to encode packet after packet without allocating.

use audio_codec_algorithms::{decode_ulaw, encode_ulaw};

use super::pcm::{i16_to_sample, sample_to_i16};

/// The mu-law code for digital silence (linear 0). Fill comfort-noise-free
/// gaps and jitter-buffer underruns with it.
pub const MULAW_SILENCE: u8 = 0xFF;

/// Encodes one `f32` sample to a mu-law code.
#[inline]
pub fn encode_mulaw_sample(sample: f32) -> u8 {
    encode_ulaw(sample_to_i16(sample))
}

/// Decodes one mu-law code to an `f32` sample in `[-0.981, 0.981]`.
#[inline]
pub fn decode_mulaw_sample(code: u8) -> f32 {
    i16_to_sample(decode_ulaw(code))
}

/// Encodes `f32` samples to mu-law codes (one byte per sample).
pub fn encode_mulaw(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len());
    encode_mulaw_into(samples, &mut out);
    out
}

/// Appends the mu-law codes of `samples` to `out`.
pub fn encode_mulaw_into(samples: &[f32], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| encode_mulaw_sample(s)));
}

/// Encodes 16-bit linear PCM samples to mu-law codes.
pub fn encode_mulaw_i16(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pcm.len());
    encode_mulaw_i16_into(pcm, &mut out);
    out
}

/// Appends the mu-law codes of 16-bit linear PCM `pcm` to `out`.
pub fn encode_mulaw_i16_into(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&p| encode_ulaw(p)));
}

/// Decodes mu-law codes to `f32` samples.
pub fn decode_mulaw(codes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(codes.len());
    decode_mulaw_into(codes, &mut out);
    out
}

/// Appends the `f32` samples of mu-law `codes` to `out`.
pub fn decode_mulaw_into(codes: &[u8], out: &mut Vec<f32>) {
    out.extend(codes.iter().map(|&c| decode_mulaw_sample(c)));
}

/// Decodes mu-law codes to 16-bit linear PCM (values in `[-32124, 32124]`).
pub fn decode_mulaw_i16(codes: &[u8]) -> Vec<i16> {
    let mut out = Vec::with_capacity(codes.len());
    decode_mulaw_i16_into(codes, &mut out);
    out
}

/// Appends the 16-bit linear PCM samples of mu-law `codes` to `out`.
pub fn decode_mulaw_i16_into(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| decode_ulaw(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // Silence and the ends of the scale, as G.711 defines them.
        assert_eq!(encode_mulaw(&[0.0]), vec![0xFF]);
        assert_eq!(MULAW_SILENCE, 0xFF);
        assert_eq!(decode_mulaw_i16(&[0xFF, 0x7F, 0x80, 0x00]), vec![0, 0, 32124, -32124]);
        assert_eq!(encode_mulaw_i16(&[0, 32767, -32768]), vec![0xFF, 0x80, 0x00]);
        // A few mid-scale values from the G.711 tables.
        assert_eq!(encode_mulaw_i16(&[1000, -1000]), vec![0xCE, 0x4E]);
        assert_eq!(decode_mulaw_i16(&[0xCE, 0x4E]), vec![988, -988]);
    }

    #[test]
    fn silence_block_encodes_to_ff() {
        let silence = vec![0.0f32; 160];
        assert!(encode_mulaw(&silence).iter().all(|&c| c == MULAW_SILENCE));
        assert!(decode_mulaw(&[MULAW_SILENCE; 160]).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn clipping_and_non_finite_input_do_not_panic() {
        let codes = encode_mulaw(&[1.0, 1.5, f32::INFINITY, -1.0, -3.0, f32::NEG_INFINITY, f32::NAN]);
        assert_eq!(codes, vec![0x80, 0x80, 0x80, 0x00, 0x00, 0x00, 0xFF]);
        let max = decode_mulaw_sample(0x80);
        assert!((max - 32124.0 / 32768.0).abs() < 1e-7);
    }

    #[test]
    fn every_code_round_trips() {
        // decode -> encode is the identity on all codes except negative zero (0x7F),
        // which encodes back as positive zero (0xFF).
        for code in 0..=255u8 {
            let again = encode_mulaw_sample(decode_mulaw_sample(code));
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(again, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn round_trip_error_is_within_the_segment_step() {
        // Quantisation error is at most half a step; the step doubles per segment,
        // so the error is bounded by about |x|/32 plus a small floor near zero.
        // Above 32124 (0.980) the codec clips, so stop there.
        let mut worst_rel: f32 = 0.0;
        for i in -32124..=32124i32 {
            let x = i as f32 / 32768.0;
            let y = decode_mulaw_sample(encode_mulaw_sample(x));
            let err = (x - y).abs();
            let bound = x.abs() / 30.0 + 5.0 / 32768.0;
            assert!(err <= bound, "x={x} y={y} err={err} bound={bound}");
            if x.abs() >= 0.1 {
                worst_rel = worst_rel.max(err / x.abs());
            }
        }
        // From segment 5 up the half step is at most 32 / (1024 - 33) of the value.
        assert!(worst_rel < 0.0325, "worst relative error {worst_rel}");
    }

    #[test]
    fn sine_round_trip_snr_is_g711_quality() {
        // G.711 mu-law gives roughly 38 dB SNR over a wide range of levels.
        for &amplitude in &[0.5f32, 0.1, 0.01] {
            let x: Vec<f32> = (0..8000)
                .map(|n| amplitude * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 8000.0 + 0.3).sin())
                .collect();
            let y = decode_mulaw(&encode_mulaw(&x));
            let signal: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
            let noise: f64 = x.iter().zip(&y).map(|(&a, &b)| ((a - b) as f64).powi(2)).sum();
            let snr = 10.0 * (signal / noise).log10();
            assert!(snr > 33.0, "amplitude {amplitude}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn into_variants_append() {
        let mut codes = vec![0x12];
        encode_mulaw_into(&[0.0], &mut codes);
        encode_mulaw_i16_into(&[0], &mut codes);
        assert_eq!(codes, vec![0x12, 0xFF, 0xFF]);
        let mut samples = vec![9.0];
        decode_mulaw_into(&[0xFF], &mut samples);
        assert_eq!(samples, vec![9.0, 0.0]);
        let mut pcm = vec![7];
        decode_mulaw_i16_into(&[0x80], &mut pcm);
        assert_eq!(pcm, vec![7, 32124]);
    }
}
