//! A configuration file drives `voxline serve`; flags override it; `voxline
//! config check` refuses a bad file naming the key and line, and prints a
//! good one's effective configuration with its secrets masked.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::sip::*;

/// A file in a scratch folder.
fn write_config(text: &str) -> PathBuf {
    let path = scratch_dir("config").join("voxline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The status of GET `path`, with the bearer token if given.
fn status(http: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n{auth}\r\n").unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no HTTP status in {raw:?}"))
}

/// `voxline config check FILE`: (exit success, stdout, stderr).
fn config_check(file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_voxline"))
        .args(["config", "check"])
        .arg(file)
        .env_remove("VOXLINE_API_TOKEN")
        .output()
        .expect("run voxline config check");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_runs_with_the_file_and_flags_override_it() {
    let _slot = shared_slot();
    // The file asks for SIP on 127.0.0.2; the test server's own `--sip 127.0.0.1:0` wins.
    let file = write_config("[http]\napi_token = \"from-the-file\"\n\n[sip]\nlisten = \"127.0.0.2:5099\"\n\n[calls]\ngreeting = \"\"\n");
    let config = file.to_str().unwrap();
    let server = Server::start(&["--config", config]);
    assert_eq!(server.sip.ip().to_string(), "127.0.0.1", "the --sip flag overrides [sip] listen");
    assert_eq!(status(server.http, "/calls", None), 401, "the file's API token applies");
    assert_eq!(status(server.http, "/calls", Some("from-the-file")), 200);
    drop(server);

    let server = Server::start(&["--config", config, "--api-token", "from-the-flag"]);
    assert_eq!(status(server.http, "/calls", Some("from-the-file")), 401, "the flag's token replaces the file's");
    assert_eq!(status(server.http, "/calls", Some("from-the-flag")), 200);
}

#[test]
fn config_check_names_bad_keys_and_masks_secrets() {
    let bad = write_config("[calls]\ngreeting = \"Hi.\"\ngreting = \"Hi.\"\n\n[media]\nrtp_ports = \"20000-10000\"\n");
    let (ok, _, stderr) = config_check(&bad);
    assert!(!ok, "a bad file fails: {stderr}");
    assert!(stderr.contains("line 3: unknown key `greting` in [calls]"), "{stderr}");
    assert!(stderr.contains("line 6: `media.rtp_ports`: invalid value \"20000-10000\""), "{stderr}");

    let good = write_config("[http]\nlisten = \"127.0.0.1:9000\"\napi_token = \"s3cret\"\n\n[webhook]\nurl = \"http://127.0.0.1:9/hook\"\ntoken = \"hook-s3cret\"\n");
    let (ok, stdout, stderr) = config_check(&good);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("s3cret"), "a secret is printed:\n{stdout}");
    assert!(stdout.contains("api_token = \"********\""), "{stdout}");
    let http = stdout.split("[http]").nth(1).unwrap_or_default();
    assert!(http.trim_start().starts_with("listen = \"127.0.0.1:9000\""), "{stdout}");
    assert!(stdout.contains("# file, line 2"), "{stdout}");
}
