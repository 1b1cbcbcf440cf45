//! The offline recogniser (pocketsphinx, Debian's en-us model) and word error rates.

use std::path::Path;
use std::process::{Command, Stdio};

use super::sip::POCKETSPHINX;

/// pocketsphinx's hypothesis for a 16 kHz mono 16-bit WAV (all utterances, joined).
pub fn transcribe(wav: &Path) -> String {
    let out = Command::new(POCKETSPHINX)
        .args(["-infile".as_ref(), wav.as_os_str(), "-logfn".as_ref(), "/dev/null".as_ref()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {POCKETSPHINX} (install with `scripts/setup.sh --test`): {e}"));
    assert!(out.status.success(), "{POCKETSPHINX} failed on {}: {}", wav.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
}

#[allow(unused_imports)] // not every test binary uses it
pub use super::sip::words;

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
