//! Reporting a download's progress.

use std::time::{Duration, Instant};

/// Progress of one [`Hub::snapshot`](super::Hub::snapshot), file by file.
pub trait Progress {
    /// A download begins: `size` bytes in all, `resumed` of them already on disk.
    fn start(&mut self, file: &str, size: u64, resumed: u64);
    /// `done` of the file's bytes are on disk.
    fn advance(&mut self, file: &str, done: u64, size: u64);
    /// The file is present, downloaded now (`fetched`) or found in the cache.
    fn ready(&mut self, file: &str, size: u64, fetched: bool);
}

/// Progress as lines on standard error: one when a download starts, one per
/// tenth of it (at most one every two seconds), one when the file is ready.
pub struct StderrProgress {
    repo: String,
    shown_tenth: u64,
    last_line: Instant,
    started: Instant,
}

impl StderrProgress {
    pub fn new(repo: &str) -> Self {
        Self { repo: repo.to_string(), shown_tenth: 0, last_line: Instant::now(), started: Instant::now() }
    }
}

/// `1.2 GB`, `340 MB`, `12 KB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 3] = [("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (unit, scale) in UNITS {
        if n as f64 >= scale {
            let v = n as f64 / scale;
            return if v < 10.0 { format!("{v:.1} {unit}") } else { format!("{v:.0} {unit}") };
        }
    }
    format!("{n} B")
}

impl Progress for StderrProgress {
    fn start(&mut self, file: &str, size: u64, resumed: u64) {
        self.shown_tenth = (resumed * 10).checked_div(size).unwrap_or(10);
        self.started = Instant::now();
        self.last_line = Instant::now();
        let resume = if resumed > 0 { format!(", resuming at {}", human_bytes(resumed)) } else { String::new() };
        eprintln!("hub: downloading {}/{file} ({}{resume})", self.repo, human_bytes(size));
    }

    fn advance(&mut self, file: &str, done: u64, size: u64) {
        let tenth = (done * 10).checked_div(size).unwrap_or(10);
        if tenth > self.shown_tenth && tenth < 10 && self.last_line.elapsed() >= Duration::from_secs(2) {
            self.shown_tenth = tenth;
            self.last_line = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "hub:   {file}: {}% ({} of {}, {}/s)",
                tenth * 10,
                human_bytes(done),
                human_bytes(size),
                human_bytes(rate as u64)
            );
        }
    }

    fn ready(&mut self, file: &str, size: u64, fetched: bool) {
        if fetched {
            eprintln!("hub:   {file}: done ({} in {:.1} s)", human_bytes(size), self.started.elapsed().as_secs_f64());
        }
    }
}

/// Progress that says nothing.
impl Progress for () {
    fn start(&mut self, _: &str, _: u64, _: u64) {}
    fn advance(&mut self, _: &str, _: u64, _: u64) {}
    fn ready(&mut self, _: &str, _: u64, _: bool) {}
}
