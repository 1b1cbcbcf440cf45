use std::ffi::OsString;
use std::io::Write as _;

use super::*;
use crate::cli::config_check::{is_secret, render, MASK};
use crate::cli::{serve_command, Layers, Source};

/// `serve` arguments that have no key: the file itself, and clap's own.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

fn parse(text: &str) -> Result<ConfigFile, Vec<Problem>> {
    ConfigFile::parse(text, &serve_command())
}

/// The one problem `text` has.
fn problem(text: &str) -> Problem {
    let problems = parse(text).expect_err("the file is refused");
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems[0].clone()
}

/// A file with `text` in a scratch folder (kept until the test ends).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("voxline-config-{}-{:x}.toml", std::process::id(), rand::random::<u64>()));
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn layers(file: &TempFile, flags: &[&str]) -> Layers {
    let argv: Vec<OsString> = ["serve", "--config"].iter().map(OsString::from).chain([file.0.clone().into()]).chain(flags.iter().map(OsString::from)).collect();
    Layers::read(argv).unwrap()
}

#[test]
fn every_serve_flag_has_exactly_one_key() {
    let serve = serve_command();
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if NOT_IN_FILE.contains(&id) {
            continue;
        }
        let keys: Vec<_> = KEYS.iter().filter(|k| k.arg == id).collect();
        assert_eq!(keys.len(), 1, "`--{}` needs exactly one key in config_file::KEYS, has {keys:?}", arg.get_long().unwrap_or(id));
    }
    for k in KEYS {
        assert!(serve.get_arguments().any(|a| a.get_id() == k.arg), "{k:?} names no serve flag");
        assert_eq!(KEYS.iter().filter(|o| o.section == k.section && o.key == k.key).count(), 1, "{k:?} twice");
    }
}

#[test]
fn the_documented_example_sets_every_key() {
    let doc = include_str!("../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("docs/configuration.md has a ```toml example") + "```toml\n".len();
    let example = &doc[start..start + doc[start..].find("```").unwrap()];
    let file = parse(example).unwrap_or_else(|p| panic!("the documented example is refused: {p:?}"));
    for k in KEYS {
        assert!(file.get(k.arg).is_some(), "the documented example lacks [{}] {}", k.section, k.key);
    }
}

#[test]
fn values_are_read_as_their_flags_take_them() {
    let file = parse("[sip]\nlisten = \"127.0.0.1:5070\"\nring_ms = 250\n[media]\nnat = true\n[webrtc]\nstun = [\"stun:a:3478\", \"stun:b:3478\"]\n[voice]\nlength_scale = 1.2\n").unwrap();
    assert_eq!(file.get("sip").unwrap().value, Value::One("127.0.0.1:5070".into()));
    assert_eq!(file.get("ring_ms").unwrap().value, Value::One("250".into()));
    assert_eq!(file.get("ring_ms").unwrap().line, 3);
    assert_eq!(file.get("nat").unwrap().value, Value::Switch(true));
    assert_eq!(file.get("stun").unwrap().value, Value::Many(vec!["stun:a:3478".into(), "stun:b:3478".into()]));
    assert_eq!(file.get("length_scale").unwrap().value, Value::One("1.2".into()));
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let p = problem("[sip]\nlisten = \"0.0.0.0:5060\"\n\nlisten_port = 5060\n");
    assert_eq!(p.line, 4);
    assert!(p.message.contains("unknown key `listen_port` in [sip]"), "{p}");
    let p = problem("[sip]\ngreeting = \"hi\"\n");
    assert!(p.message.contains("`greeting` belongs in [calls]"), "{p}");
    let p = problem("# top\n[voices]\nname = \"x\"\n");
    assert_eq!(p.line, 2);
    assert!(p.message.contains("unknown section [voices]"), "{p}");
    let p = problem("greeting = \"hi\"\n");
    assert!(p.message.contains("`greeting` is outside any section; it belongs in [calls]"), "{p}");
}

#[test]
fn a_bad_value_names_its_key() {
    let p = problem("[media]\nrtp_ports = \"20000-10000\"\n");
    assert_eq!(p.line, 2);
    assert!(p.message.starts_with("`media.rtp_ports`: invalid value \"20000-10000\""), "{p}");
    assert!(p.message.contains("empty port range"), "{p}");
    let p = problem("[calls]\nmax_calls = \"many\"\n");
    assert!(p.message.starts_with("`calls.max_calls`"), "{p}");
    let p = problem("[media]\nnat = \"yes\"\n");
    assert!(p.message.contains("`media.nat` must be true or false"), "{p}");
    let p = problem("[sip]\nlisten = [\"a\"]\n");
    assert!(p.message.contains("`sip.listen` takes one value"), "{p}");
    let p = problem("[speech]\nscheduler = \"lifo\"\n");
    assert!(p.message.starts_with("`speech.scheduler`"), "{p}");
    // A syntax error says where.
    let p = problem("[sip]\nlisten = \n");
    assert_eq!(p.line, 2, "{p}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let problems = parse("[sip]\nring_ms = -1\nbogus = 1\n[calls]\nmax_calls = 5\n").unwrap_err();
    assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let file = TempFile::new("[calls]\ngreeting = \"From the file.\"\nmax_calls = 7\n[sip]\nring_ms = 250\n[media]\nnat = true\n[webrtc]\nstun = [\"stun:a:3478\", \"stun:b:3478\"]\n");
    let args = layers(&file, &["--ring-ms", "5", "--stun", "stun:flag:3478"]).serve_args().unwrap();
    assert_eq!(args.greeting, "From the file.");
    assert_eq!(args.max_calls, 7);
    assert!(args.nat);
    assert_eq!(args.ring_ms, 5, "the flag wins");
    assert_eq!(args.stun, vec!["stun:flag:3478".to_string()], "a repeatable flag replaces the file's list");
    assert_eq!(args.rtp_ports, (10000, 20000), "the default stays");
}

#[test]
fn environment_variables_override_the_file() {
    // The only test that sets VOXLINE_DECISION_TIMEOUT_MS, and the only one
    // that reads `decision_timeout_ms`.
    let file = TempFile::new("[calls]\ndecision_timeout_ms = 99\n");
    std::env::set_var("VOXLINE_DECISION_TIMEOUT_MS", "1234");
    let layered = layers(&file, &[]);
    std::env::remove_var("VOXLINE_DECISION_TIMEOUT_MS");
    assert_eq!(layered.serve_args().unwrap().decision_timeout_ms, 1234);
    assert_eq!(layered.source("decision_timeout_ms"), Source::Env("VOXLINE_DECISION_TIMEOUT_MS".into()));
    let from_file = layers(&file, &[]);
    assert_eq!(from_file.serve_args().unwrap().decision_timeout_ms, 99);
    assert_eq!(from_file.source("decision_timeout_ms"), Source::File(2));
}

#[test]
fn config_check_masks_secrets_and_says_where_values_came_from() {
    let serve = serve_command();
    let secrets: Vec<&str> = serve.get_arguments().filter(|a| is_secret(a)).map(|a| a.get_id().as_str()).collect();
    for s in ["api_token", "webhook_token", "turn_password"] {
        assert!(secrets.contains(&s), "`{s}` is masked: {secrets:?}");
    }
    let file = TempFile::new("[http]\napi_token = \"s3cret-api\"\n[webhook]\nurl = \"http://127.0.0.1:9/hook\"\ntoken = \"s3cret-hook\"\n[webrtc]\nturn_password = \"s3cret-turn\"\n");
    let text = render(&layers(&file, &["--greeting", "Hi there"]));
    for secret in ["s3cret-api", "s3cret-hook", "s3cret-turn"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert!(text.contains(&format!("api_token = \"{MASK}\"")), "{text}");
    let line = |key: &str| text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no `{key}` line:\n{text}")).to_owned();
    assert!(line("api_token").ends_with("# file, line 2"), "{text}");
    assert!(line("url = \"http://127.0.0.1:9/hook\"").ends_with("# file, line 4"), "{text}");
    assert!(line("greeting = \"Hi there\"").ends_with("# flag"), "{text}");
    assert!(line("rtp_ports = \"10000-20000\"").ends_with("# default"), "{text}");
    assert!(line("max_calls = 1000").ends_with("# default"), "numbers print bare:\n{text}");
    assert!(line("nat = false").ends_with("# default"), "{text}");
    assert!(text.contains("# external_ip ="), "unset values print commented out:\n{text}");
    // What it prints is itself a valid file.
    let printed = parse(&text).unwrap_or_else(|p| panic!("{p:?}\n{text}"));
    assert_eq!(printed.get("greeting").unwrap().value, Value::One("Hi there".into()));
}
