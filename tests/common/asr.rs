//! The offline recogniser (pocketsphinx, Debian's en-us model): transcription
//! of 16 kHz WAVs and of 8 kHz phone audio, and word error rates.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use voxline::audio::{write_wav_file, StreamResampler, WavFormat};

use super::harness::{require_tool, OutputWithin};

pub const POCKETSPHINX: &str = "pocketsphinx_continuous";
pub const POCKETSPHINX_MODEL: &str = "/usr/share/pocketsphinx/model/en-us";

pub fn require_pocketsphinx() {
    require_tool(POCKETSPHINX, "install it with `scripts/setup.sh --test` (apt: pocketsphinx pocketsphinx-en-us)");
    assert!(
        Path::new(POCKETSPHINX_MODEL).is_dir(),
        "pocketsphinx's en-us model is missing at {POCKETSPHINX_MODEL} (apt: pocketsphinx-en-us)"
    );
}

pub const ASR_RATE: u32 = 16_000;
pub const PHONE_RATE: u32 = 8_000;

/// 8 kHz 16-bit PCM -> 16 kHz f32 with voxline's own resampler.
pub fn upsample_8k_to_16k(pcm: &[i16]) -> Vec<f32> {
    let x: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut r = StreamResampler::new(PHONE_RATE, ASR_RATE).expect("resampler 8 -> 16 kHz");
    let mut out = Vec::with_capacity(x.len() * 2 + r.max_output_len(x.len()));
    r.process(&x, &mut out);
    r.flush(&mut out);
    out
}

/// Level (RMS, full scale 1.0) of the noise [`fill_high_band`] adds: about -48 dBFS.
pub const HIGH_BAND_NOISE_RMS: f32 = 0.004;
/// Lower edge of that noise: just above the phone band.
pub const HIGH_BAND_EDGE_HZ: f32 = 4_200.0;

/// Adds low-level white noise above [`HIGH_BAND_EDGE_HZ`] to 16 kHz audio.
///
/// pocketsphinx's en-us model is wideband (mel filters up to 6.8 kHz); audio
/// that went through the 8 kHz phone path has nothing above 4 kHz, so the top
/// filters see near-zero energy, the log-mel features fall far outside what
/// the model was trained on, and the recognizer mostly answers "what what".
/// Filling the empty band with a little noise (as a real wideband microphone
/// would have) puts the features back in range without touching the speech
/// band: on the phone-path renditions of the test sentences the recognizer
/// goes from almost nothing right to most words right (see tests/sip_calls.rs,
/// GREETING). The noise is seeded: the same input gives the same output.
pub fn fill_high_band(x: &[f32]) -> Vec<f32> {
    // White noise (xorshift, uniform in [-1, 1)), high-passed by a windowed-sinc
    // FIR: delta minus a low-pass at the band edge.
    const TAPS: usize = 129;
    let fc = HIGH_BAND_EDGE_HZ / ASR_RATE as f32; // cycles per sample
    let m = (TAPS - 1) as f32 / 2.0;
    let mut h: Vec<f32> = (0..TAPS)
        .map(|n| {
            let t = n as f32 - m;
            let sinc = if t == 0.0 { 2.0 * fc } else { (2.0 * std::f32::consts::PI * fc * t).sin() / (std::f32::consts::PI * t) };
            let w = 0.42 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / (TAPS - 1) as f32).cos()
                + 0.08 * (4.0 * std::f32::consts::PI * n as f32 / (TAPS - 1) as f32).cos();
            -sinc * w
        })
        .collect();
    h[(TAPS - 1) / 2] += 1.0;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let white: Vec<f32> = (0..x.len() + TAPS)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let noise: Vec<f32> = (0..x.len()).map(|i| h.iter().enumerate().map(|(k, hk)| hk * white[i + k]).sum()).collect();
    let level = (noise.iter().map(|v| v * v).sum::<f32>() / noise.len().max(1) as f32).sqrt();
    let gain = if level > 0.0 { HIGH_BAND_NOISE_RMS / level } else { 0.0 };
    x.iter().zip(&noise).map(|(s, n)| s + gain * n).collect()
}

/// Silence put around phone audio before it is transcribed.
const ASR_PAD_MS: usize = 300;

/// Runs pocketsphinx on `wav` with `extra` arguments: its hypothesis (all
/// utterances, joined).
fn pocketsphinx(wav: &Path, extra: &[&str]) -> String {
    let out = Command::new(POCKETSPHINX)
        .args(["-infile".as_ref(), wav.as_os_str(), "-logfn".as_ref(), "/dev/null".as_ref()])
        .args(extra)
        .stdin(Stdio::null())
        .output_within(std::time::Duration::from_secs(120), POCKETSPHINX)
        .unwrap_or_else(|e| panic!("cannot run {POCKETSPHINX} (install with `scripts/setup.sh --test`): {e}"));
    assert!(out.status.success(), "{POCKETSPHINX} failed on {}: {}", wav.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// pocketsphinx's hypothesis for a 16 kHz mono 16-bit WAV (all utterances, joined).
pub fn transcribe(wav: &Path) -> String {
    pocketsphinx(wav, &[])
}

/// pocketsphinx's hypothesis for a 16 kHz mono 16-bit WAV (all utterances,
/// joined). `-dither yes` as well: it also helps with band-limited input.
pub fn transcribe_wav(wav: &Path) -> String {
    require_pocketsphinx();
    pocketsphinx(wav, &["-dither", "yes"])
}

/// Transcribes decoded 8 kHz phone audio: upsampled to 16 kHz (pocketsphinx's
/// en-us model is wideband) and its empty high band filled ([`fill_high_band`]). The WAV is kept as
/// `dir/name.wav` for a listen when a test fails.
pub fn transcribe_8k(pcm: &[i16], dir: &Path, name: &str) -> String {
    let wav = dir.join(format!("{name}.wav"));
    // The caller heard the line's silence around the words; a recognizer
    // needs it too (a word that starts on the first sample is often lost).
    let pad = vec![0i16; 8000 * ASR_PAD_MS / 1000];
    let padded: Vec<i16> = pad.iter().chain(pcm).chain(&pad).copied().collect();
    let audio = fill_high_band(&upsample_8k_to_16k(&padded));
    write_wav_file(&wav, &audio, ASR_RATE, WavFormat::Pcm16).expect("write a 16 kHz WAV");
    transcribe_wav(&wav)
}

/// Lower-case words, punctuation dropped (apostrophes kept).
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || c == '\'' { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// How many words of `reference` the hypothesis has, in order (the longest
/// common subsequence of the two word lists).
pub fn words_in_order(reference: &str, hypothesis: &str) -> usize {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev = vec![0usize; h.len() + 1];
    for rw in &r {
        let mut cur = vec![0usize; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = if rw == hw { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        prev = cur;
    }
    prev[h.len()]
}

/// The `wanted` words that occur in `hypothesis`.
pub fn words_found(wanted: &[&str], hypothesis: &str) -> Vec<String> {
    let hyp: BTreeSet<String> = words(hypothesis).into_iter().collect();
    wanted.iter().map(|w| w.to_lowercase()).filter(|w| hyp.contains(w)).collect()
}

/// Word-level Levenshtein distance (substitutions + deletions + insertions).
pub fn word_edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(r != h)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}
