//! Conversion between `f32` samples and 16-bit linear PCM.
//!
//! The scale is 32768: `i16 -> f32 -> i16` is exact, `-1.0` maps to `-32768`
//! and `+1.0` clips to `32767` (one LSB short of full scale). Values outside
//! `[-1.0, 1.0]` (and `±inf`) are clamped, and `NaN` becomes silence, so a
//! misbehaving model can never make these functions panic or wrap around.

/// Full-scale factor between `f32` samples and 16-bit PCM.
pub const I16_SCALE: f32 = 32768.0;

/// Converts one `f32` sample to 16-bit PCM, rounding to nearest, clamping
/// out-of-range values and mapping `NaN` to 0.
#[inline]
pub fn sample_to_i16(sample: f32) -> i16 {
    if sample.is_nan() {
        return 0;
    }
    // Clamp in the float domain first so the cast never saturates by accident
    // of rounding; `as` would saturate anyway, this just makes it explicit.
    let scaled = (sample * I16_SCALE).round();
    scaled.clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// Converts one 16-bit PCM sample to `f32` in `[-1.0, 1.0)`.
#[inline]
pub fn i16_to_sample(pcm: i16) -> f32 {
    f32::from(pcm) / I16_SCALE
}

/// Appends the 16-bit PCM form of `samples` to `out` (see [`sample_to_i16`]).
pub fn samples_to_i16_into(samples: &[f32], out: &mut Vec<i16>) {
    out.extend(samples.iter().map(|&s| sample_to_i16(s)));
}

/// Appends the `f32` form of `pcm` to `out` (see [`i16_to_sample`]).
pub fn i16_to_samples_into(pcm: &[i16], out: &mut Vec<f32>) {
    out.extend(pcm.iter().map(|&p| i16_to_sample(p)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_round_trip_is_exact() {
        for pcm in i16::MIN..=i16::MAX {
            assert_eq!(sample_to_i16(i16_to_sample(pcm)), pcm);
        }
    }

    #[test]
    fn clamps_out_of_range_and_non_finite() {
        assert_eq!(sample_to_i16(1.0), i16::MAX);
        assert_eq!(sample_to_i16(-1.0), i16::MIN);
        assert_eq!(sample_to_i16(7.5), i16::MAX);
        assert_eq!(sample_to_i16(-7.5), i16::MIN);
        assert_eq!(sample_to_i16(f32::INFINITY), i16::MAX);
        assert_eq!(sample_to_i16(f32::NEG_INFINITY), i16::MIN);
        assert_eq!(sample_to_i16(f32::NAN), 0);
        assert_eq!(sample_to_i16(0.0), 0);
        assert_eq!(sample_to_i16(-0.0), 0);
    }

    #[test]
    fn slice_helpers_append() {
        let mut pcm = vec![1i16];
        samples_to_i16_into(&[0.5, -0.5], &mut pcm);
        assert_eq!(pcm, vec![1, 16384, -16384]);
        let mut samples = Vec::new();
        i16_to_samples_into(&pcm[1..], &mut samples);
        assert_eq!(samples, vec![0.5, -0.5]);
    }
}
