//! Call records: one JSON line per ended call, appended to a file
//! (`--call-records FILE`, `-` for standard output) or logged at `info` on the
//! target `voxline::cdr` (docs/configuration.md, "Call records").

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::calls::{Call, CallStats, Direction};

/// The log target records go to without `--call-records`.
pub const LOG_TARGET: &str = "voxline::cdr";

/// One ended call.
#[derive(Debug, Serialize)]
pub struct CallRecord {
    /// Our id for the call (URLs, events).
    pub id: String,
    /// `sip`, `webrtc` or `twilio`.
    pub transport: &'static str,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    /// As in `GET /calls` (`webrtc-ID` for a browser, the Call SID for Twilio).
    pub sip_call_id: String,
    /// When the call arrived or was placed, RFC 3339 in UTC.
    pub start: String,
    /// From `start` to the end, ringing included.
    pub duration_ms: u64,
    /// As in `call.ended`: `remote_bye`, `local_bye`, `cancelled`, `rejected`, ...
    pub end_reason: String,
    /// Text received -> first audio sent, over the utterances the caller
    /// waited for in silence; `null` when there were none.
    pub first_audio_p50_ms: Option<u64>,
    pub first_audio_max_ms: Option<u64>,
    /// Utterances that began to play.
    pub utterances: u64,
    /// Clears that cut speech the caller was hearing.
    pub barge_ins: u64,
    /// The media counters of `GET /calls` (packets, underruns, the peer's
    /// RTCP loss and jitter, ...), as fields of the record.
    #[serde(flatten)]
    pub media: CallStats,
}

impl CallRecord {
    /// The record of `call`, ending now for `reason`.
    pub fn of(call: &Call, reason: &str) -> CallRecord {
        let info = call.info();
        let tally = call.media.playout.lock().unwrap_or_else(|e| e.into_inner()).tally().clone();
        let ms = |d: Duration| d.as_millis() as u64;
        CallRecord {
            id: info.id,
            transport: info.transport,
            direction: info.direction,
            from: info.from,
            to: info.to,
            sip_call_id: info.sip_call_id,
            start: rfc3339(call.started),
            duration_ms: info.duration_ms,
            end_reason: reason.to_owned(),
            first_audio_p50_ms: tally.first_audio_p50().map(ms),
            first_audio_max_ms: tally.first_audio_max().map(ms),
            utterances: tally.utterances,
            barge_ins: tally.barge_ins,
            media: info.stats,
        }
    }
}

/// Where records go.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CallRecords {
    /// `info` on the log target [`LOG_TARGET`].
    #[default]
    Log,
    Stdout,
    /// Appended to this file, opened for each record (so a log rotation that
    /// moves the file away takes effect at the next call).
    File(PathBuf),
}

impl CallRecords {
    /// Records to `path` (`-`: standard output), checking now that it can
    /// be opened for appending; to the log without a path.
    pub fn new(path: Option<&Path>) -> std::io::Result<CallRecords> {
        Ok(match path {
            None => CallRecords::Log,
            Some(p) if p == Path::new("-") => CallRecords::Stdout,
            Some(p) => {
                append(p)?;
                CallRecords::File(p.to_owned())
            }
        })
    }

    /// Writes one record as a line. A file that cannot be written loses the
    /// record, with a warning; the call is over either way.
    pub fn write(&self, record: &CallRecord) {
        let line = match serde_json::to_string(record) {
            Ok(line) => line,
            Err(e) => return tracing::warn!(error = %e, "call record not serialized"),
        };
        match self {
            CallRecords::Log => tracing::info!(target: "voxline::cdr", "{line}"),
            CallRecords::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
            CallRecords::File(path) => {
                if let Err(e) = append(path).and_then(|mut f| f.write_all(format!("{line}\n").as_bytes())) {
                    tracing::warn!(path = %path.display(), error = %e, "call record not written");
                }
            }
        }
    }
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// `2026-12-07T10:38:05.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z", since.subsec_millis())
}

/// The Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789.
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_827_696_789)), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_798_761_599)), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn records_append_one_line_each_to_their_file() {
        let path = std::env::temp_dir().join(format!("voxline-cdr-{}-{:x}.jsonl", std::process::id(), rand::random::<u64>()));
        let sink = CallRecords::new(Some(&path)).unwrap();
        assert_eq!(CallRecords::new(Some(Path::new("-"))).unwrap(), CallRecords::Stdout);
        assert_eq!(CallRecords::new(None).unwrap(), CallRecords::Log);
        assert!(CallRecords::new(Some(Path::new("/nonexistent-dir/x.jsonl"))).is_err(), "an unwritable file is refused at start");
        let record = |id: &str| CallRecord {
            id: id.into(),
            transport: "sip",
            direction: Direction::Inbound,
            from: "<sip:alice@example.com>".into(),
            to: "<sip:voxline@example.com>".into(),
            sip_call_id: "abc@host".into(),
            start: rfc3339(UNIX_EPOCH),
            duration_ms: 1500,
            end_reason: "remote_bye".into(),
            first_audio_p50_ms: Some(120),
            first_audio_max_ms: Some(180),
            utterances: 2,
            barge_ins: 1,
            media: CallStats {
                packets_sent: 75,
                octets_sent: 12_000,
                speech_frames: 60,
                underruns: 0,
                late_sends: 0,
                skipped_ticks: 0,
                send_errors: 0,
                packets_received: 70,
                packets_rejected: 0,
                dtmf_received: 0,
                peer_fraction_lost: None,
                peer_total_lost: None,
                peer_jitter_ms: None,
                rtt_ms: None,
            },
        };
        sink.write(&record("c1"));
        sink.write(&record("c2"));
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1]["id"], "c2");
        assert_eq!(lines[0]["direction"], "inbound");
        assert_eq!(lines[0]["first_audio_p50_ms"], 120);
        assert_eq!(lines[0]["packets_received"], 70, "media counters are fields of the record");
        assert!(lines[0]["peer_jitter_ms"].is_null());
    }
}
