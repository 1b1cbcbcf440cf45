//! Parts of the command line that grew past `main.rs`: `serve`'s flags, and
//! its configuration file layered under them.
//!
//! Flow: argv -> clap (flags, then environment variables) -> [`layers`]
//! (the file fills what neither gave) -> [`serve::ServeArgs`] -> the server.
//! `voxline config check` prints the same layers ([`config_check`]).

pub mod config_check;
pub mod config_file;
pub mod config_trunks;
pub mod serve;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};

use config_file::ConfigFile;
use serve::ServeArgs;

/// `serve`'s command, as clap defines it.
pub fn serve_command() -> Command {
    ServeArgs::augment_args(Command::new("serve"))
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Flag,
    Env(String),
    /// The configuration file, at this line.
    File(usize),
    Default,
    Unset,
}

/// `serve`'s arguments in layers: flags over environment variables (clap's
/// own order) over the configuration file over the defaults.
pub struct Layers {
    /// The effective values.
    pub matches: ArgMatches,
    /// Flags and environment variables alone.
    given: ArgMatches,
    pub file: Option<(PathBuf, ConfigFile)>,
}

impl Layers {
    /// Reads `argv` (its first item is the program's name) and the file
    /// that `--config` or `VOXLINE_CONFIG` names.
    pub fn read(argv: impl IntoIterator<Item = OsString>) -> Result<Layers> {
        let serve = serve_command();
        let argv: Vec<OsString> = argv.into_iter().collect();
        let given = serve.clone().try_get_matches_from(&argv)?;
        let Some(path) = given.get_one::<PathBuf>("config").cloned() else {
            return Ok(Layers { matches: given.clone(), given, file: None });
        };
        let file = ConfigFile::read(&path, &serve)?;
        let mut all = argv;
        for setting in &file.settings {
            if !matches!(given.value_source(setting.key.arg), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
                let arg = serve.get_arguments().find(|a| a.get_id() == setting.key.arg).expect("checked by ConfigFile::read");
                all.extend(config_file::as_args(arg, &setting.value));
            }
        }
        let matches = serve.try_get_matches_from(all)?;
        Ok(Layers { matches, given, file: Some((path, file)) })
    }

    /// Where the value of flag `arg` came from.
    pub fn source(&self, arg: &str) -> Source {
        match self.given.value_source(arg) {
            Some(ValueSource::CommandLine) => return Source::Flag,
            Some(ValueSource::EnvVariable) => {
                let serve = serve_command();
                let env = serve.get_arguments().find(|a| a.get_id() == arg).and_then(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned());
                return Source::Env(env.unwrap_or_default());
            }
            _ => {}
        }
        if let Some(setting) = self.file.as_ref().and_then(|(_, f)| f.get(arg)) {
            return Source::File(setting.line);
        }
        match self.matches.value_source(arg) {
            Some(ValueSource::DefaultValue) => Source::Default,
            _ => Source::Unset,
        }
    }

    pub fn serve_args(&self) -> Result<ServeArgs> {
        Ok(ServeArgs::from_arg_matches(&self.matches)?)
    }
}
