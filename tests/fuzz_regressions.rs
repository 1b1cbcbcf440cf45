//! Replays every input the fuzz targets (`fuzz/`, scripts/fuzz.sh) found a bug with,
//! through the same entry points, on stable Rust: fuzz/regressions/<target>/*. Also
//! replays the seeds, so a seed that starts to panic shows up here before a fuzzing run.

use std::path::{Path, PathBuf};

use voxline::fuzzing;

const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("sip_message", |d| {
        fuzzing::sip_message(d);
    }),
    ("sip_endpoint", fuzzing::drive_endpoint),
    ("sdp", fuzzing::sdp),
    ("rtp", fuzzing::rtp),
    ("rtcp", fuzzing::rtcp),
    ("control", fuzzing::control),
    ("twilio", fuzzing::twilio),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind);
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for file in files(&root.join(target)) {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panics again", file.display());
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn inputs_the_fuzzers_found_bugs_with_stay_fixed() {
    let replayed = replay("regressions");
    eprintln!("replayed {replayed} reproducers");
}

#[test]
fn seeds_run_clean() {
    assert!(replay("seeds") > 100, "the seed corpora are missing (python3 fuzz/seeds/make_seeds.py)");
}
