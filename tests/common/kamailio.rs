//! Kamailio (Debian's `kamailio`) as a record-routing proxy in front of the
//! server under test: it record-routes every INVITE, relays it to the
//! server, and routes in-dialog requests (ACK, BYE in both directions) by
//! their Route headers, answering 404 to any that bypass its route set's
//! rules, as a carrier SBC or a PBX would. Over UDP ([`Kamailio::start`]) or
//! over TCP ([`Kamailio::start_tcp`]: it listens on TCP too, on the same port,
//! and relays to the server over TCP).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use voxline_sip::Transport;

use super::harness::{free_udp_and_tcp_port, free_udp_port, require_tool, scratch_dir, tail, LOCALHOST};

pub const KAMAILIO: &str = "kamailio";

pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// The proxy's routing script: record-route, relay to `target` over `transport`, loose
/// routing in dialogs. Over TCP it listens on UDP and TCP.
fn config(listen: SocketAddr, target: SocketAddr, transport: Transport) -> String {
    let (tcp_listen, target_param) = match transport {
        Transport::Udp => (String::new(), ""),
        Transport::Tcp => (format!("listen=tcp:{listen}\n"), ";transport=tcp"),
        other => panic!("the test proxy is set up for UDP and TCP, not {other:?}"),
    };
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:{listen}
{tcp_listen}alias="{listen}"
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "nathelper.so"
modparam("rr", "append_fromtag", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # A caller on TCP is reached on its connection: its Contact gets an ;alias of the
    # connection's address, which routes requests to it back there (Kamailio's default
    # config does this for clients behind NAT and on TCP).
    if (proto == TCP && is_method("INVITE") && !has_totag()) {{
        add_contact_alias();
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            handle_ruri_alias();
            t_relay();
            exit;
        }}
        if (is_method("ACK") && t_check_trans()) {{
            t_relay();
            exit;
        }}
        xlog("L_WARN", "in-dialog $rm without our route: 404\n");
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    $du = "sip:{target}{target_param}";
    t_relay();
}}
"#
    )
}

impl Kamailio {
    /// Starts the proxy in front of `target` (the server's SIP address), over UDP.
    pub fn start(target: SocketAddr) -> Kamailio {
        let dir = scratch_dir("kamailio");
        let addr = SocketAddr::new(LOCALHOST, free_udp_port());
        Kamailio::launch(dir, &config(addr, target, Transport::Udp), addr, &[])
    }

    /// Starts the proxy in front of `target`, listening on UDP and TCP (one port) and
    /// relaying to the server over TCP (`;transport=tcp`); its Record-Route says TCP.
    pub fn start_tcp(target: SocketAddr) -> Kamailio {
        let dir = scratch_dir("kamailio-tcp");
        let addr = SocketAddr::new(LOCALHOST, free_udp_and_tcp_port());
        Kamailio::launch(dir, &config(addr, target, Transport::Tcp), addr, &[])
    }

    /// Runs kamailio on the config text `cfg` (written into `dir`) that listens on
    /// `addr`, with preprocessor `defines` (`kamailio -A NAME=VALUE`); returns once it
    /// listens.
    pub fn launch(dir: PathBuf, cfg: &str, addr: SocketAddr, defines: &[String]) -> Kamailio {
        require_tool(KAMAILIO, "install it with `scripts/setup.sh --test` (apt: kamailio)");
        let cfg_path = dir.join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).expect("write kamailio.cfg");
        let log = std::fs::File::create(dir.join("kamailio.log")).expect("create kamailio.log");
        let mut command = Command::new(KAMAILIO);
        command.arg("-f").arg(&cfg_path).args(["-DD", "-E", "-m", "32", "-M", "8", "-Y"]).arg(&dir);
        for define in defines {
            command.arg("-A").arg(define);
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("run kamailio");
        let mut proxy = Kamailio { child, addr, dir };
        proxy.wait_ready(Duration::from_secs(10));
        proxy
    }

    /// Waits until the proxy says it listens (bounded).
    fn wait_ready(&mut self, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let log = self.log();
            // Its last start-up line, once the UDP socket is bound.
            if log.contains("SO_RCVBUF is finally") {
                // Give the worker processes a moment after the main one reports.
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kamailio exited ({status}) before listening:\n{}", tail(&log, 40));
            }
            assert!(Instant::now() < end, "kamailio did not start within {within:?}:\n{}", tail(&log, 40));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kamailio's workers are the main process's children; -DD keeps them in its group.
        let _ = Command::new("pkill").args(["-f", &self.dir.join("kamailio.cfg").display().to_string()]).status();
    }
}
