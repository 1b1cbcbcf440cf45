//! `voxline config check FILE`: the configuration `voxline serve --config
//! FILE` would run with, printed as a configuration file, each value's
//! source beside it and secrets masked.

use std::fmt::Write as _;

use clap::builder::ValueParser;
use clap::{Arg, ArgAction};

use super::config_file::{sections, KEYS};
use super::{serve_command, Layers, Source};

/// What a secret prints as.
pub const MASK: &str = "********";

/// A secret is a flag whose environment variable clap keeps out of `--help`
/// (API token, webhook token, TURN password, and any SIP password to come).
pub fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// The effective configuration as TOML, secrets masked.
pub fn render(layers: &Layers) -> String {
    let serve = serve_command();
    let mut out = String::new();
    if let Some((path, _)) = &layers.file {
        let _ = writeln!(out, "# The configuration `voxline serve --config {}` runs with", path.display());
        let _ = writeln!(out, "# (flags given to `serve` override it; secrets masked).");
    }
    for section in sections() {
        if section == "trunk" {
            out += &super::config_trunks::render(layers, &describe(&layers.source("trunks")));
            continue;
        }
        let _ = writeln!(out, "\n[{section}]");
        for key in KEYS.iter().filter(|k| k.section == section) {
            let arg = serve.get_arguments().find(|a| a.get_id() == key.arg).expect("every key names a serve flag (tested)");
            let source = layers.source(key.arg);
            let line = match value(layers, arg) {
                Some(v) if is_secret(arg) && v != "\"\"" => format!("{} = \"{MASK}\"", key.key),
                Some(v) => format!("{} = {v}", key.key),
                None => format!("# {} =", key.key),
            };
            let _ = writeln!(out, "{line:<48} # {}", describe(&source));
        }
    }
    out
}

fn describe(source: &Source) -> String {
    match source {
        Source::Flag => "flag".into(),
        Source::Env(name) => format!("environment ({name})"),
        Source::File(line) => format!("file, line {line}"),
        Source::Default => "default".into(),
        Source::Unset => "not set".into(),
    }
}

/// The effective value of `arg` as a TOML value; `None` when it has none.
fn value(layers: &Layers, arg: &Arg) -> Option<String> {
    let id = arg.get_id().as_str();
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return Some(layers.matches.get_flag(id).to_string());
    }
    let raw: Vec<String> = layers.matches.get_raw(id)?.map(|v| v.to_string_lossy().into_owned()).collect();
    let numeric = is_numeric(arg);
    let item = |v: &String| if numeric && !v.is_empty() { v.clone() } else { toml::Value::String(v.clone()).to_string() };
    match arg.get_action() {
        ArgAction::Append => Some(format!("[{}]", raw.iter().map(item).collect::<Vec<_>>().join(", "))),
        _ => raw.first().map(item),
    }
}

/// Whether the flag's parser reads a number (printed bare, not quoted).
fn is_numeric(arg: &Arg) -> bool {
    let id = arg.get_value_parser().type_id();
    [
        ValueParser::from(clap::value_parser!(u16)).type_id(),
        ValueParser::from(clap::value_parser!(u32)).type_id(),
        ValueParser::from(clap::value_parser!(u64)).type_id(),
        ValueParser::from(clap::value_parser!(usize)).type_id(),
        ValueParser::from(clap::value_parser!(i64)).type_id(),
        ValueParser::from(clap::value_parser!(f32)).type_id(),
        ValueParser::from(clap::value_parser!(f64)).type_id(),
    ]
    .contains(&id)
}
