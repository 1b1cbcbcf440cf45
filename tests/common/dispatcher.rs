//! The scale-out front door of docker-compose.yml, run on loopback: Kamailio
//! (Debian's `kamailio`) with the `kamailio.cfg` text of the compose file's
//! `configs:` section, unchanged, dispatching to the given voxline instances.
//! Only the listen address and the dispatcher list's path are set, through
//! the defines the config provides for that (`kamailio -A`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use super::harness::{free_udp_port, scratch_dir, LOCALHOST};
use super::kamailio::Kamailio;

/// A config text from docker-compose.yml's top-level `configs:` (`NAME:` then
/// `content: |`), with compose's `$$` escapes undone.
pub fn compose_config(compose: &str, name: &str) -> String {
    let lines: Vec<&str> = compose.lines().collect();
    let configs = lines.iter().position(|l| *l == "configs:").expect("docker-compose.yml has a top-level `configs:` section");
    let entry = lines[configs..]
        .iter()
        .position(|l| *l == format!("  {name}:"))
        .map(|i| i + configs)
        .unwrap_or_else(|| panic!("no `{name}` under `configs:` in docker-compose.yml"));
    assert_eq!(lines.get(entry + 1).map(|l| l.trim()), Some("content: |"), "`{name}` is not an inline `content: |` text");
    let mut text = String::new();
    for line in &lines[entry + 2..] {
        if !line.trim().is_empty() && !line.starts_with("      ") {
            break;
        }
        text.push_str(line.get(6..).unwrap_or(""));
        text.push('\n');
    }
    text.trim_end().replace("$$", "$") + "\n"
}

/// Kamailio with docker-compose.yml's dispatcher config in front of `instances`
/// (one dispatcher set, each probed with OPTIONS every 2 s).
pub fn start(compose_file: &Path, instances: &[SocketAddr]) -> Kamailio {
    let compose = std::fs::read_to_string(compose_file).unwrap_or_else(|e| panic!("read {}: {e}", compose_file.display()));
    let dir = scratch_dir("dispatcher");
    let list = dir.join("dispatcher.list");
    let destinations: String = instances.iter().map(|a| format!("1 sip:{a}\n")).collect();
    std::fs::write(&list, destinations).expect("write dispatcher.list");
    let addr = SocketAddr::new(LOCALHOST, free_udp_port());
    let defines = [format!("LISTEN=udp:{addr}"), format!("DISPATCHER_LIST=\"{}\"", list.display())];
    Kamailio::launch(dir, &compose_config(&compose, "kamailio.cfg"), addr, &defines)
}
