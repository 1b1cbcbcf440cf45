//! The configuration file of `voxline serve` (TOML): which section and key
//! hold each flag, and reading a file into checked settings.
//!
//! The flags are the definition: a file's value goes through the same clap
//! parser as the flag it stands for, and a test fails when a `serve` flag has
//! no key here. Layering the file under flags and environment variables is
//! [`super::layers`].

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use toml::Spanned;

/// Where one `serve` flag lives in the file: `[section] key = ...`.
#[derive(Debug, PartialEq, Eq)]
pub struct Key {
    pub section: &'static str,
    pub key: &'static str,
    /// The clap id of the flag (its field name in `ServeArgs`).
    pub arg: &'static str,
}

const fn key(section: &'static str, key: &'static str, arg: &'static str) -> Key {
    Key { section, key, arg }
}

/// Every `serve` flag, by section, in the order `config check` prints them.
/// A key is the flag's name with `_` for `-`, except where the section
/// already says it (`[sip] listen` is `--sip`).
pub const KEYS: &[Key] = &[
    key("sip", "listen", "sip"),
    key("sip", "external_ip", "external_ip"),
    key("sip", "ring_ms", "ring_ms"),
    key("sip", "ack_timeout", "ack_timeout"),
    key("sip", "session_expires", "session_expires"),
    key("sip", "min_se", "min_se"),
    key("sip", "invite_rate", "invite_rate"),
    key("sip", "invite_burst", "invite_burst"),
    key("sip", "max_unconfirmed", "max_unconfirmed"),
    key("sip", "dns_server", "dns_server"),
    key("http", "listen", "http"),
    key("http", "api_token", "api_token"),
    key("http", "public_url", "public_url"),
    key("http", "web_dir", "web_dir"),
    key("http", "header_timeout", "http_header_timeout"),
    key("http", "max_conns_per_ip", "http_max_conns_per_ip"),
    key("media", "rtp_ports", "rtp_ports"),
    key("media", "rtp_timeout", "rtp_timeout"),
    key("media", "nat", "nat"),
    key("media", "no_silence", "no_silence"),
    key("media", "pacer_threads", "pacer_threads"),
    key("calls", "greeting", "greeting"),
    key("calls", "max_calls", "max_calls"),
    key("calls", "decision_timeout_ms", "decision_timeout_ms"),
    key("calls", "drain_timeout", "drain_timeout"),
    key("calls", "call_records", "call_records"),
    key("agent", "url", "agent_url"),
    key("agent", "dialect", "agent_dialect"),
    key("agent", "timeout_ms", "agent_timeout_ms"),
    key("agent", "ca", "agent_ca"),
    key("webhook", "url", "webhook"),
    key("webhook", "token", "webhook_token"),
    key("twilio", "auth_token", "twilio_auth_token"),
    key("webrtc", "stun", "stun"),
    key("webrtc", "turn", "turn"),
    key("webrtc", "turn_username", "turn_username"),
    key("webrtc", "turn_password", "turn_password"),
    key("webrtc", "ip", "webrtc_ip"),
    key("webrtc", "ports", "webrtc_ports"),
    key("speech", "workers", "synth_workers"),
    key("speech", "scheduler", "synth_scheduler"),
    key("speech", "first_audio_target_ms", "first_audio_target_ms"),
    key("speech", "no_admission", "no_admission"),
    key("speech", "preload_voices", "preload_voices"),
    key("voice", "name", "voice"),
    key("voice", "models_dir", "models_dir"),
    key("voice", "speaker", "speaker"),
    key("voice", "noise_scale", "noise_scale"),
    key("voice", "length_scale", "length_scale"),
    key("voice", "noise_w", "noise_w"),
    key("voice", "seed", "seed"),
    key("voice", "preset", "preset"),
    key("engine", "name", "engine"),
    key("engine", "device", "device"),
    key("engine", "threads", "threads"),
    key("engine", "model_dir", "model_dir"),
    key("engine", "model_repo", "model_repo"),
    key("engine", "model_revision", "model_revision"),
    key("engine", "dtype", "dtype"),
    // `[[trunk]]` tables, one per `--trunk` (config_trunks.rs); last, as TOML's array
    // tables take every key up to the next header.
    key("trunk", "[[trunk]]", "trunks"),
];

/// The sections, in the order of [`KEYS`].
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for k in KEYS {
        if !out.contains(&k.section) {
            out.push(k.section);
        }
    }
    out
}

/// A value as the file gives it, before the flag's parser reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A switch (`nat = true`).
    Switch(bool),
    One(String),
    /// A repeatable flag (`stun = ["stun:a", "stun:b"]`).
    Many(Vec<String>),
}

/// One key the file sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: &'static Key,
    /// 1-based line of the key in the file.
    pub line: usize,
    pub value: Value,
}

/// A checked configuration file.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    pub settings: Vec<Setting>,
}

/// Something wrong in a file, at a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

/// The file as TOML sees it: sections of keys, with where each key is.
type Sections = std::collections::BTreeMap<Spanned<String>, std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

impl ConfigFile {
    /// Reads and checks `path` against `serve`'s flags.
    pub fn read(path: &Path, serve: &Command) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text, serve).map_err(|problems| ConfigError::Invalid { path: path.into(), problems })
    }

    /// Checks every key and value of `text`; every problem found, in line order.
    pub fn parse(text: &str, serve: &Command) -> Result<ConfigFile, Vec<Problem>> {
        let (text, trunks) = super::config_trunks::split(text);
        let text = text.as_str();
        let line = |offset: usize| text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1;
        // A key outside any section is reported as such (not as "expected a map").
        let top: std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| vec![Problem { line: e.span().map_or(1, |s| line(s.start)), message: e.message().trim().to_owned() }])?;
        let mut problems = Vec::new();
        for (name, value) in &top {
            if !value.get_ref().is_table() {
                let hint = match KEYS.iter().find(|k| k.key == name.get_ref()) {
                    Some(k) => format!("; it belongs in [{}]", k.section),
                    None => String::new(),
                };
                problems.push(Problem { line: line(name.span().start), message: format!("`{}` is outside any section{hint}", name.get_ref()) });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let file: Sections = toml::from_str(text).map_err(|e| vec![Problem { line: e.span().map_or(1, |s| line(s.start)), message: e.message().trim().to_owned() }])?;
        let mut settings = Vec::new();
        for (section, keys) in &file {
            if !KEYS.iter().any(|k| k.section == section.get_ref()) {
                let message = format!("unknown section [{}]; the sections are {}", section.get_ref(), sections().join(", "));
                problems.push(Problem { line: line(section.span().start), message });
                continue;
            }
            for (name, value) in keys {
                let at = line(name.span().start);
                let Some(key) = KEYS.iter().find(|k| k.section == section.get_ref() && k.key == name.get_ref()) else {
                    problems.push(Problem { line: at, message: unknown_key(section.get_ref(), name.get_ref()) });
                    continue;
                };
                let arg = serve.get_arguments().find(|a| a.get_id() == key.arg).expect("every key names a serve flag (tested)");
                match check(arg, key, value.get_ref()) {
                    Ok(value) => settings.push(Setting { key, line: at, value }),
                    Err(message) => problems.push(Problem { line: at, message }),
                }
            }
        }
        match super::config_trunks::read(&trunks, &line) {
            Ok(Some(setting)) => settings.push(setting),
            Ok(None) => {}
            Err(more) => problems.extend(more),
        }
        if problems.is_empty() {
            settings.sort_by_key(|s| s.line);
            Ok(ConfigFile { settings })
        } else {
            problems.sort_by_key(|p| p.line);
            Err(problems)
        }
    }

    /// The setting for flag `arg`, if the file has one.
    pub fn get(&self, arg: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key.arg == arg)
    }
}

fn unknown_key(section: &str, name: &str) -> String {
    let known: Vec<&str> = KEYS.iter().filter(|k| k.section == section).map(|k| k.key).collect();
    let elsewhere = KEYS.iter().find(|k| k.key == name).map(|k| format!(" (`{name}` belongs in [{}])", k.section)).unwrap_or_default();
    format!("unknown key `{name}` in [{section}]{elsewhere}; [{section}] has {}", known.join(", "))
}

/// The file's value for `arg`, typed as the flag takes it and accepted by
/// the flag's own parser; an error names the key.
fn check(arg: &Arg, key: &Key, value: &toml::Value) -> Result<Value, String> {
    let name = format!("`{}.{}`", key.section, key.key);
    let typed = match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(b)) => return Ok(Value::Switch(*b)),
        (ArgAction::SetTrue, other) => return Err(format!("{name} must be true or false, not {}", describe(other))),
        (ArgAction::Append, toml::Value::Array(items)) => Value::Many(items.iter().map(|v| scalar(v).ok_or_else(|| format!("{name} must be a list of strings, not one holding {}", describe(v)))).collect::<Result<_, _>>()?),
        (_, toml::Value::Array(_)) => return Err(format!("{name} takes one value, not a list")),
        (ArgAction::Append, v) => Value::Many(vec![scalar(v).ok_or_else(|| format!("{name} must be a string or a list of strings, not {}", describe(v)))?]),
        (_, v) => Value::One(scalar(v).ok_or_else(|| format!("{name} must be a string or a number, not {}", describe(v)))?),
    };
    for raw in as_args(arg, &typed) {
        let one = Command::new("file").no_binary_name(true).arg(arg.clone().env(None::<&str>).required(false));
        if let Err(e) = one.try_get_matches_from([raw]) {
            let why = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| first_line(&e.to_string()));
            return Err(format!("{name}: invalid value {}: {why}", value));
        }
    }
    Ok(typed)
}

/// A string or number as the text a flag would be given.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn describe(v: &toml::Value) -> String {
    format!("{} {v}", v.type_str())
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned()
}

/// The command-line arguments that say what `value` says for `arg`.
pub fn as_args(arg: &Arg, value: &Value) -> Vec<OsString> {
    let long = arg.get_long().expect("every serve flag has a long name");
    match value {
        Value::Switch(true) => vec![format!("--{long}").into()],
        Value::Switch(false) => Vec::new(),
        Value::One(v) => vec![format!("--{long}={v}").into()],
        Value::Many(vs) => vs.iter().map(|v| format!("--{long}={v}").into()).collect(),
    }
}

#[cfg(test)]
#[path = "config_file_tests.rs"]
mod tests;
