//! The Via header (RFC 3261 20.42, 18.2.1) with the `received`/`rport` rules of RFC 3581.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::grammar::{self, Param};
use super::uri::{self, Host};

/// The RFC 3261 branch prefix ("magic cookie", 8.1.1.7).
pub(crate) const MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/transport sent-by *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via {
    /// Transport token as written (`UDP`, `TCP`, ...).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// Parses every comma-separated value of one Via header line.
    pub(crate) fn parse_list(value: &str) -> Result<Vec<Via>, &'static str> {
        grammar::split_top_level(value, ',')?
            .into_iter()
            .map(Via::parse)
            .collect()
    }

    /// Parses one value. LWS is allowed around the slashes and the colon (RFC 4475 wsinv).
    pub(crate) fn parse(value: &str) -> Result<Via, &'static str> {
        let (name, rest) = token(value).ok_or("Via has no protocol name")?;
        if !name.eq_ignore_ascii_case("SIP") {
            return Err("Via protocol is not SIP");
        }
        let rest = slash(rest)?;
        let (version, rest) = token(rest).ok_or("Via has no protocol version")?;
        if version != "2.0" {
            return Err("Via protocol version is not 2.0");
        }
        let rest = slash(rest)?;
        let (transport, rest) = token(rest).ok_or("Via has no transport")?;
        if !rest.starts_with(grammar::is_wsp) {
            return Err("Via needs white space before sent-by");
        }
        let rest = grammar::skip_wsp(rest);
        // sent-by = host [ COLON port ]; the colon may be surrounded by LWS.
        let end = rest.find(';').unwrap_or(rest.len());
        let sent_by: String = rest[..end]
            .chars()
            .filter(|c| !grammar::is_wsp(*c))
            .collect();
        if sent_by.is_empty() {
            return Err("Via has no sent-by");
        }
        let (host, port) = uri::host_port(&sent_by)?;
        let params = grammar::params(&rest[end..])?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter value.
    pub(crate) fn branch(&self) -> Option<&str> {
        grammar::find_param(&self.params, "branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie and an identifier after it.
    pub(crate) fn is_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// `sent-by` as `host:port` with the default port filled in, lower case (for matching).
    pub(crate) fn sent_by_key(&self) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(5060))
    }

    /// Applies RFC 3261 18.2.1 and RFC 3581 4 to the top Via of a request received from
    /// `source`: adds `received` when the sent-by is not the source address (always when
    /// `rport` is present) and fills a valueless `rport` with the source port. Returns where
    /// responses go (18.2.2 with 3581): the source address when `rport` was requested, else
    /// the source IP with the sent-by port.
    pub(crate) fn stamp_received(&mut self, source: SocketAddr) -> SocketAddr {
        let wants_rport = matches!(grammar::find_param(&self.params, "rport"), Some(None));
        let differs = self.host.ip() != Some(source.ip());
        if wants_rport || differs {
            self.set_param("received", Some(ip_text(source.ip())));
        }
        if wants_rport {
            self.set_param("rport", Some(source.port().to_string()));
            source
        } else {
            SocketAddr::new(source.ip(), self.port.unwrap_or(5060))
        }
    }

    fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("SIP/2.0/{} {}", self.transport, self.host);
        if let Some(port) = self.port {
            out.push_str(&format!(":{port}"));
        }
        grammar::write_params(&mut out, &self.params);
        f.write_str(&out)
    }
}

/// An IP address as written in `received` (IPv6 without brackets, RFC 3261 20.42).
fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

fn token(s: &str) -> Option<(&str, &str)> {
    let s = grammar::skip_wsp(s);
    let len = s
        .find(|c: char| !grammar::is_token_char(c))
        .unwrap_or(s.len());
    (len > 0).then(|| (&s[..len], &s[len..]))
}

fn slash(s: &str) -> Result<&str, &'static str> {
    grammar::skip_wsp(s)
        .strip_prefix('/')
        .map(grammar::skip_wsp)
        .ok_or("Via sent-protocol needs '/' separators")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_folded_spacing_and_lists() {
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(!v.is_rfc3261_branch());
        let l = Via::parse_list(
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(l[1].sent_by_key(), "192.168.255.111:5060");
    }

    #[test]
    fn rejects_empty_params_and_values() {
        assert!(Via::parse_list("SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(Via::parse("SIP/7.0/UDP c.example.com").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
    }

    #[test]
    fn rport_gets_source_port_and_received() {
        let mut v = Via::parse("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKx;rport").unwrap();
        let dest = v.stamp_received("203.0.113.9:40000".parse().unwrap());
        assert_eq!(dest, "203.0.113.9:40000".parse().unwrap());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKx;rport=40000;received=203.0.113.9"
        );
    }

    #[test]
    fn received_only_when_address_differs() {
        let mut v = Via::parse("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKy").unwrap();
        let dest = v.stamp_received("192.0.2.1:5070".parse().unwrap());
        assert_eq!(dest, "192.0.2.1:5070".parse().unwrap());
        assert_eq!(v.to_string(), "SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKy");

        let mut v = Via::parse("SIP/2.0/UDP pc.example.com;branch=z9hG4bKy").unwrap();
        let dest = v.stamp_received("192.0.2.7:6000".parse().unwrap());
        assert_eq!(dest, "192.0.2.7:5060".parse().unwrap());
        assert!(v.to_string().ends_with(";received=192.0.2.7"));
    }
}
