//! Where a trunk's requests go (RFC 3263 4): its host (or outbound proxy) as socket addresses,
//! in the order to try them.
//!
//! ```text
//! IP address            -> IP:port (5060)
//! name with a port      -> A/AAAA of the name, that port                   (4.2)
//! name                  -> NAPTR: SIP+D2U (UDP) or SIP+D2T (TCP) records, by order then
//!                          preference -> SRV name (none: _sip._udp.NAME or _sip._tcp.NAME) (4.1)
//!                       -> SRV: by priority, weighted within one (RFC 2782) -> target:port
//!                          (none: A/AAAA of the name, port 5060)
//!                       -> A/AAAA of each target
//! ```
//!
//! Lookups go to `--dns-server` when given, else to the system's resolvers
//! (`/etc/resolv.conf`), through hickory-resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use rand::Rng;
use voxline_sip::Transport;

/// How long one DNS query waits for its answer (twice).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The addresses for `host` (`port` when given), in the order to try them.
pub async fn targets(host: &str, port: Option<u16>, transport: Transport, dns_server: Option<SocketAddr>) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port.unwrap_or(5060))]);
    }
    let resolver = resolver(dns_server)?;
    let fqdn = if host.ends_with('.') { host.to_string() } else { format!("{host}.") };
    if let Some(port) = port {
        return addresses(&resolver, &fqdn, port).await;
    }
    let srv_name = match naptr(&resolver, &fqdn, transport).await {
        Some(name) => name,
        None => format!("_sip._{}.{fqdn}", transport.param()),
    };
    let services = srv(&resolver, &srv_name).await;
    if services.is_empty() {
        tracing::debug!(host, "no SRV records; A/AAAA at port 5060");
        return addresses(&resolver, &fqdn, 5060).await;
    }
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for (target, port) in services {
        match addresses(&resolver, &target, port).await {
            Ok(found) => out.extend(found.into_iter().filter(|a| !out.contains(a)).collect::<Vec<_>>()),
            Err(e) => failures.push(e),
        }
    }
    if out.is_empty() {
        return Err(format!("the SRV targets of `{srv_name}` have no addresses: {}", failures.join("; ")));
    }
    tracing::debug!(host, ?out, "resolved (RFC 3263)");
    Ok(out)
}

fn resolver(dns_server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match dns_server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            ns.connections.retain(|c| c.port == server.port());
            let _: &Vec<ConnectionConfig> = &ns.connections;
            Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), TokioRuntimeProvider::default())
        }
        None => Resolver::builder_tokio().map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
    };
    builder.options_mut().timeout = QUERY_TIMEOUT;
    builder.options_mut().attempts = 2;
    builder.build().map_err(|e| format!("cannot start a DNS resolver: {e}"))
}

/// The SRV name of the best NAPTR record for `transport` (flag `s`, service `SIP+D2U` for
/// UDP, `SIP+D2T` for TCP), if any.
async fn naptr(resolver: &TokioResolver, fqdn: &str, transport: Transport) -> Option<String> {
    let service: &[u8] = match transport {
        Transport::Tcp => b"SIP+D2T",
        _ => b"SIP+D2U",
    };
    let lookup = resolver.lookup(fqdn, RecordType::NAPTR).await.ok()?;
    let mut records: Vec<(u16, u16, String)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::NAPTR(n) if n.flags.eq_ignore_ascii_case(b"s") && n.services.eq_ignore_ascii_case(service) => {
                Some((n.order, n.preference, n.replacement.to_string()))
            }
            _ => None,
        })
        .collect();
    records.sort();
    records.into_iter().next().map(|(_, _, name)| name)
}

/// `(target, port)` of the SRV records of `name`: by priority, and within one priority in
/// RFC 2782's weighted random order.
async fn srv(resolver: &TokioResolver, name: &str) -> Vec<(String, u16)> {
    let Ok(lookup) = resolver.lookup(name, RecordType::SRV).await else {
        return Vec::new();
    };
    let records: Vec<(u16, u16, String, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.target.to_string(), s.port)),
            _ => None,
        })
        .filter(|(_, _, target, _)| target != ".")
        .collect();
    order_srv(records, &mut rand::thread_rng())
}

/// RFC 2782: ascending priority; within a priority, pick by weight at random, repeatedly.
fn order_srv(mut records: Vec<(u16, u16, String, u16)>, rng: &mut impl Rng) -> Vec<(String, u16)> {
    records.sort_by_key(|r| r.0);
    let mut out = Vec::new();
    while !records.is_empty() {
        let priority = records[0].0;
        let end = records.iter().position(|r| r.0 != priority).unwrap_or(records.len());
        let mut group: Vec<_> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.1)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut n = rng.gen_range(0..=total);
                group.iter().position(|r| {
                    if n <= u32::from(r.1) && r.1 > 0 {
                        true
                    } else {
                        n = n.saturating_sub(u32::from(r.1));
                        false
                    }
                })
                .unwrap_or(0)
            };
            let (_, _, target, port) = group.remove(pick);
            out.push((target, port));
        }
    }
    out
}

/// A and AAAA records of `name`, at `port`.
async fn addresses(resolver: &TokioResolver, name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let found = resolver.lookup_ip(name).await.map_err(|e| format!("`{}`: {e}", name.trim_end_matches('.')))?;
    let out: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if out.is_empty() {
        return Err(format!("`{}` has no A or AAAA record", name.trim_end_matches('.')));
    }
    Ok(out)
}

/// `--dns-server`: `IP` or `IP:PORT` (53 by default).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("`{text}` is not an IP address or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn srv_records_go_by_priority_then_weight() {
        let records = vec![
            (20, 0, "c.example.".to_string(), 5062),
            (10, 0, "b.example.".to_string(), 5061),
            (10, 100, "a.example.".to_string(), 5060),
        ];
        // Weight 100 against 0: a first almost always (a 0-weight record only when n == 0).
        let mut first_a = 0;
        for seed in 0..200 {
            let order = order_srv(records.clone(), &mut rand::rngs::StdRng::seed_from_u64(seed));
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], ("c.example.".to_string(), 5062), "the higher priority number comes last");
            first_a += usize::from(order[0].0 == "a.example.");
        }
        assert!(first_a >= 190, "{first_a}");
    }

    #[test]
    fn dns_server_takes_an_ip_with_or_without_a_port() {
        assert_eq!(parse_server("127.0.0.1:5353").unwrap(), "127.0.0.1:5353".parse().unwrap());
        assert_eq!(parse_server("10.0.0.2").unwrap(), "10.0.0.2:53".parse().unwrap());
        assert!(parse_server("ns.example").is_err());
    }
}
