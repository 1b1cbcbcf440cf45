//! `[[trunk]]` tables in the configuration file: one table per `--trunk`, its keys those of
//! the flag (`name = "carrier"`, `host = "..."`, `register = true`, ...). The tables are cut
//! out of the text before the `[section] key` settings are read (line numbers kept), checked
//! by the flag's own parser, and become one setting of `--trunk` values. `config check`
//! prints them back as tables with the password masked.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use toml::Spanned;
use voxline::server::trunks::trunk::{escape, Trunk, KEYS as TRUNK_KEYS};

use super::config_check::MASK;
use super::config_file::{Problem, Setting, Value, KEYS};
use super::Layers;

/// The text without its `[[trunk]]` tables, and the tables alone; both as long as `text`, with
/// the other part blanked and every newline kept, so offsets and lines stay those of `text`.
pub fn split(text: &str) -> (String, String) {
    let (mut rest, mut trunks) = (String::with_capacity(text.len()), String::with_capacity(text.len()));
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = is_trunk_header(t);
        }
        let blank: String = line.chars().map(|c| if c == '\n' { "\n".to_string() } else { " ".repeat(c.len_utf8()) }).collect();
        if inside {
            trunks.push_str(line);
            rest.push_str(&blank);
        } else {
            rest.push_str(line);
            trunks.push_str(&blank);
        }
    }
    (rest, trunks)
}

/// `[[trunk]]`, spaces allowed inside the brackets.
fn is_trunk_header(line: &str) -> bool {
    line.strip_prefix("[[")
        .map(str::trim_start)
        .and_then(|s| s.strip_prefix("trunk"))
        .map(str::trim_start)
        .is_some_and(|s| s.starts_with("]]"))
}

#[derive(Deserialize)]
struct Tables {
    #[serde(default)]
    trunk: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
}

/// The `--trunk` setting the tables stand for; problems name the key and line.
pub fn read(text: &str, line: &dyn Fn(usize) -> usize) -> Result<Option<Setting>, Vec<Problem>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let tables: Tables = toml::from_str(text).map_err(|e| vec![Problem { line: e.span().map_or(1, |s| line(s.start)), message: e.message().trim().to_owned() }])?;
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    let mut first = None;
    for table in &tables.trunk {
        let at = line(table.span().start);
        first.get_or_insert(at);
        let mut spec = Vec::new();
        let before = problems.len();
        for (key, value) in table.get_ref() {
            let key_line = line(key.span().start);
            if !TRUNK_KEYS.contains(&key.get_ref().as_str()) {
                problems.push(Problem { line: key_line, message: format!("unknown key `{}` in [[trunk]]; a trunk has {}", key.get_ref(), TRUNK_KEYS.join(", ")) });
                continue;
            }
            let text = match value.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
                other => {
                    problems.push(Problem { line: key_line, message: format!("`trunk.{}` must be a string, a number or true/false, not {}", key.get_ref(), other.type_str()) });
                    continue;
                }
            };
            spec.push(format!("{}={}", key.get_ref(), escape(&text)));
        }
        if problems.len() > before {
            continue; // the keys' own problems say enough
        }
        let spec = spec.join(",");
        match Trunk::parse(&spec) {
            Ok(_) => specs.push(spec),
            Err(e) => problems.push(Problem { line: at, message: format!("[[trunk]]: {e}") }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let key = KEYS.iter().find(|k| k.arg == "trunks").expect("KEYS has the trunks");
    Ok(first.map(|line| Setting { key, line, value: Value::Many(specs) }))
}

/// The effective trunks as `[[trunk]]` tables, passwords masked.
pub fn render(layers: &Layers, source: &str) -> String {
    let mut out = String::new();
    let trunks: Vec<Trunk> = layers.matches.get_many::<Trunk>("trunks").map(|t| t.cloned().collect()).unwrap_or_default();
    let _ = writeln!(out, "\n{:<48} # {source}", if trunks.is_empty() { "# [[trunk]]" } else { "# trunks" });
    for trunk in trunks {
        let _ = writeln!(out, "[[trunk]]");
        for (key, value) in trunk.pairs() {
            let value = match key {
                "password" => format!("\"{MASK}\""),
                "register" => (value == "yes").to_string(),
                "port" | "expires" | "retry" | "timeout" => value,
                _ => toml::Value::String(value).to_string(),
            };
            let _ = writeln!(out, "{key} = {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::super::config_file::ConfigFile;
    use super::super::serve_command;
    use super::*;

    const FILE: &str = "[sip]\nring_ms = 5\n\n[[trunk]]\nname = \"a\"\nhost = \"sip.example.com\"\nusername = \"u\"\npassword = \"p,w\\\\d\"\nregister = true\nexpires = 120\n\n[[ trunk ]]   # the second\nname = \"b\"\nhost = \"192.0.2.1\"\nport = 5070\n\n[calls]\nmax_calls = 3\n";

    #[test]
    fn trunk_tables_become_trunk_flags_and_leave_the_sections_alone() {
        let file = ConfigFile::parse(FILE, &serve_command()).unwrap();
        assert_eq!(file.get("ring_ms").unwrap().value, Value::One("5".into()));
        assert_eq!(file.get("max_calls").unwrap().line, 18);
        let setting = file.get("trunks").unwrap();
        assert_eq!(setting.line, 4);
        let Value::Many(specs) = &setting.value else { panic!("{setting:?}") };
        let trunks: Vec<Trunk> = specs.iter().map(|s| Trunk::parse(s).unwrap()).collect();
        assert_eq!((trunks[0].name.as_str(), trunks[0].password.as_deref(), trunks[0].register), ("a", Some("p,w\\d"), true));
        assert_eq!((trunks[1].host.as_str(), trunks[1].port), ("192.0.2.1", Some(5070)));
    }

    #[test]
    fn bad_trunk_tables_are_named_with_their_line() {
        let problems = ConfigFile::parse("[[trunk]]\nname = \"a\"\nhots = \"x\"\n", &serve_command()).unwrap_err();
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(problems[0].message.contains("unknown key `hots` in [[trunk]]"), "{problems:?}");
        let problems = ConfigFile::parse("[[trunk]]\nname = \"a\"\nhost = \"x\"\ntransport = \"tls\"\n", &serve_command()).unwrap_err();
        assert_eq!(problems[0].line, 1, "{problems:?}");
        assert!(problems[0].message.contains("UDP and TCP"), "{problems:?}");
    }

    #[test]
    fn config_check_prints_trunks_with_the_password_masked() {
        let path = std::env::temp_dir().join(format!("voxline-trunks-{}.toml", std::process::id()));
        std::fs::write(&path, FILE).unwrap();
        let argv: Vec<OsString> = vec!["serve".into(), "--config".into(), path.clone().into()];
        let layers = Layers::read(argv).unwrap();
        let _ = std::fs::remove_file(&path);
        let text = super::super::config_check::render(&layers);
        assert!(text.contains("[[trunk]]\nname = \"a\"\nhost = \"sip.example.com\""), "{text}");
        assert!(text.contains(&format!("password = \"{MASK}\"")), "{text}");
        assert!(!text.contains("p,w"), "{text}");
        assert!(text.contains("# file, line 4"), "{text}");
        // What config check prints reads back as the same trunks.
        let again = ConfigFile::parse(&text, &serve_command()).unwrap();
        assert!(again.get("trunks").is_some());
    }
}
