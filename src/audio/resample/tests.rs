use super::*;
use std::f64::consts::PI;

/// Small deterministic generator for chunk sizes and noise (no extra deps).
struct Lcg(u64);
impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn uniform(&mut self) -> f32 {
        self.next_u32() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
}

fn sine(freq: f64, rate: u32, len: usize, amplitude: f64, phase: f64) -> Vec<f32> {
    (0..len)
        .map(|n| (amplitude * (2.0 * PI * freq * n as f64 / f64::from(rate) + phase).sin()) as f32)
        .collect()
}

fn resample_all(from: u32, to: u32, input: &[f32]) -> Vec<f32> {
    let mut r = StreamResampler::new(from, to).expect("valid rates");
    let mut out = Vec::new();
    r.process(input, &mut out);
    r.flush(&mut out);
    out
}

/// Least-squares fit of `a sin(wt) + b cos(wt)` at a known frequency,
/// with `t` counted from output sample `start`; returns
/// (amplitude, phase, residual rms) for the model `amplitude * sin(w t + phase)`.
fn fit_sine(x: &[f32], freq: f64, rate: f64, start: usize) -> (f64, f64, f64) {
    let w = 2.0 * PI * freq / rate;
    let basis = |i: usize| {
        let t = (start + i) as f64;
        ((w * t).sin(), (w * t).cos())
    };
    let (mut ss, mut cc, mut sc, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &y) in x.iter().enumerate() {
        let (s, c) = basis(i);
        let y = f64::from(y);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        sy += s * y;
        cy += c * y;
    }
    let det = ss * cc - sc * sc;
    let a = (sy * cc - cy * sc) / det;
    let b = (cy * ss - sy * sc) / det;
    let resid: f64 = x
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let (s, c) = basis(i);
            (f64::from(y) - a * s - b * c).powi(2)
        })
        .sum();
    (a.hypot(b), b.atan2(a), (resid / x.len() as f64).sqrt())
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

const PAIRS: [(u32, u32); 9] = [
    (22050, 8000),
    (24000, 8000),
    (16000, 8000),
    (48000, 8000),
    (22050, 16000),
    (24000, 16000),
    (48000, 16000),
    (8000, 16000),
    (44100, 8000),
];

#[test]
fn chunking_does_not_change_the_output() {
    let mut rng = Lcg(7);
    let input: Vec<f32> = (0..22050).map(|_| 0.5 * rng.uniform()).collect();
    for (from, to) in PAIRS {
        let reference = resample_all(from, to, &input);
        for chunk in [1usize, 7, 160, 441, 1000, 0] {
            let mut r = StreamResampler::new(from, to).expect("valid rates");
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < input.len() {
                // chunk 0 stands for random sizes in 0..=2000 (empty chunks included).
                let len = if chunk == 0 { rng.next_u32() as usize % 2001 } else { chunk };
                let end = (pos + len).min(input.len());
                r.process(&input[pos..end], &mut out);
                pos = end;
            }
            r.flush(&mut out);
            assert_eq!(out.len(), reference.len(), "{from}->{to} chunk {chunk}");
            let worst = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{from}->{to} chunk {chunk}: seam error {worst}");
        }
    }
}

#[test]
fn one_khz_sine_keeps_its_shape_at_8k() {
    let input = sine(1000.0, 22050, 22050, 0.5, 0.0);
    let out = resample_all(22050, 8000, &input);
    let edge = 200;
    let body = &out[edge..out.len() - edge];
    let (amplitude, _, resid) = fit_sine(body, 1000.0, 8000.0, edge);
    let snr = 20.0 * (amplitude / std::f64::consts::SQRT_2 / resid).log10();
    assert!(snr > 50.0, "SNR {snr:.1} dB");
    assert!((amplitude - 0.5).abs() < 0.005, "passband gain off: amplitude {amplitude}");
}

#[test]
fn tones_above_nyquist_do_not_alias() {
    for (from, freq) in [(22050u32, 6000.0), (22050, 4500.0), (24000, 6000.0), (48000, 12000.0)] {
        let input = sine(freq, from, from as usize, 0.5, 0.0);
        let out = resample_all(from, 8000, &input);
        let edge = 200;
        let attenuation = 20.0 * (rms(&input) / rms(&out[edge..out.len() - edge])).log10();
        assert!(attenuation > 50.0, "{from} Hz, {freq} Hz tone: only {attenuation:.1} dB");
    }
}

#[test]
fn output_length_is_rounded_ratio() {
    let mut rng = Lcg(11);
    for (from, to) in PAIRS {
        for len in [0usize, 1, 2, 3, 5, 100, 440, 441, 442, 479, 480, 481, 1000, 12345] {
            let input: Vec<f32> = (0..len).map(|_| rng.uniform()).collect();
            let out = resample_all(from, to, &input);
            let expected = ((len as f64) * f64::from(to) / f64::from(from)).round() as usize;
            assert!(
                out.len().abs_diff(expected) <= 1,
                "{from}->{to}, {len} in: {} out, expected {expected}",
                out.len()
            );
            assert_eq!(out.len() as u64, expected_output_len(len as u64, from, to));
        }
    }
}

#[test]
fn output_is_time_aligned_with_input() {
    // A 500 Hz tone's phase at output sample j must match the input's
    // phase at time j/to: any leftover delay shows up as a phase offset.
    for (from, to) in PAIRS {
        let phase0 = 0.7;
        let input = sine(500.0, from, from as usize, 0.5, phase0);
        let out = resample_all(from, to, &input);
        let edge = to as usize / 20;
        let body = &out[edge..out.len() - edge];
        let (_, phase, _) = fit_sine(body, 500.0, f64::from(to), edge);
        let mut dphase = phase - phase0;
        dphase = (dphase + PI).rem_euclid(2.0 * PI) - PI;
        let offset_out_samples = dphase / (2.0 * PI * 500.0) * f64::from(to);
        // Documented bound: within half an input sample.
        let bound = 0.5 * f64::from(to) / f64::from(from) + 1e-3;
        assert!(
            offset_out_samples.abs() <= bound,
            "{from}->{to}: offset {offset_out_samples:.4} output samples"
        );
    }
}

#[test]
fn an_impulse_lands_where_it_was() {
    // A click at input time t must peak at output sample t*to/from.
    let (from, to) = (24000u32, 8000u32);
    let mut input = vec![0.0f32; 4800];
    input[2400] = 1.0;
    let out = resample_all(from, to, &input);
    let peak = out
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i);
    assert_eq!(peak, Some(800));
}

#[test]
fn identity_copies_through() {
    let mut r = StreamResampler::new(16000, 16000).expect("valid rates");
    assert!(r.is_identity());
    assert_eq!(r.compensated_delay(), 0);
    let mut out = Vec::new();
    r.process(&[0.1, 0.2], &mut out);
    r.process(&[0.3], &mut out);
    r.flush(&mut out);
    assert_eq!(out, vec![0.1, 0.2, 0.3]);
}

#[test]
fn flush_resets_for_the_next_stream() {
    let input = sine(300.0, 22050, 5000, 0.5, 0.0);
    let first = resample_all(22050, 8000, &input);
    let mut r = StreamResampler::new(22050, 8000).expect("valid rates");
    let mut out = Vec::new();
    r.process(&sine(2000.0, 22050, 777, 0.9, 0.0), &mut out);
    r.flush(&mut out);
    out.clear();
    r.process(&input, &mut out);
    r.flush(&mut out);
    assert_eq!(out, first);
    assert_eq!(r.input_samples(), 0);
}

#[test]
fn reports_blocks_delay_and_latency() {
    let r = StreamResampler::new(22050, 8000).expect("valid rates");
    assert_eq!((r.block_len_in(), r.block_len_out()), (441, 160));
    assert_eq!(r.compensated_delay(), 80);
    assert_eq!(r.max_latency().as_millis(), 30);
    let r = StreamResampler::new(24000, 8000).expect("valid rates");
    assert_eq!((r.block_len_in(), r.block_len_out()), (480, 160));
    let r = StreamResampler::new(22050, 16000).expect("valid rates");
    assert_eq!((r.block_len_in(), r.block_len_out()), (441, 320));
}

#[test]
fn max_output_len_is_an_upper_bound() {
    let mut rng = Lcg(3);
    let mut r = StreamResampler::new(22050, 8000).expect("valid rates");
    let mut out = Vec::new();
    for _ in 0..200 {
        let len = rng.next_u32() as usize % 3000;
        let before = out.len();
        r.process(&vec![0.1; len], &mut out);
        assert!(out.len() - before <= r.max_output_len(len));
    }
    let before = out.len();
    let bound = r.max_output_len(0);
    r.flush(&mut out);
    assert!(out.len() - before <= bound);
}

#[test]
fn can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<StreamResampler>();
}

#[test]
fn rejects_bad_rates() {
    assert!(matches!(
        StreamResampler::new(0, 8000),
        Err(AudioError::InvalidSampleRate { rate_hz: 0 })
    ));
    assert!(matches!(
        StreamResampler::new(8000, 10_000_000),
        Err(AudioError::InvalidSampleRate { rate_hz: 10_000_000 })
    ));
    let message = StreamResampler::new(0, 8000).unwrap_err().to_string();
    assert!(message.contains("0 Hz"), "{message}");
}
