//! SIP and SIPS URIs (RFC 3261 19.1) and the shape check for other absolute URIs.
//!
//! Only what the user agent needs is interpreted: scheme, whether a user part exists, host,
//! port, URI parameters and whether `?headers` are present. The text is kept as written so
//! that URIs are echoed byte for byte.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::grammar::{self, Param};

/// A parsed URI: either SIP/SIPS, or any other scheme kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Uri {
    Sip(SipUri),
    Other(String),
}

impl Uri {
    /// Parses one URI with no surrounding white space or angle brackets.
    pub(crate) fn parse(s: &str) -> Result<Uri, &'static str> {
        if s.is_empty() {
            return Err("empty URI");
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
        {
            return Err("URI contains white space, quotes or angle brackets");
        }
        let colon = s.find(':').ok_or("URI has no scheme")?;
        let scheme = &s[..colon];
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return Err("URI scheme is not valid");
        }
        let rest = &s[colon + 1..];
        if rest.is_empty() {
            return Err("URI has nothing after its scheme");
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse(s, scheme.eq_ignore_ascii_case("sips"), rest).map(Uri::Sip)
        } else {
            Ok(Uri::Other(s.to_string()))
        }
    }

    /// The URI as written.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Uri::Sip(sip) => &sip.raw,
            Uri::Other(raw) => raw,
        }
    }

    /// The SIP URI, if this is one.
    pub(crate) fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(sip) => Some(sip),
            Uri::Other(_) => None,
        }
    }
}

/// The host part of a SIP URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// Parses `hostname / IPv4address / IPv6reference`.
    pub(crate) fn parse(s: &str) -> Result<Host, &'static str> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or("unterminated IPv6 reference")?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| "invalid IPv6 address");
        }
        if s.is_empty() {
            return Err("empty host");
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        let valid = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !s.starts_with(['-', '.']);
        if valid {
            Ok(Host::Name(s.to_ascii_lowercase()))
        } else {
            Err("invalid host name")
        }
    }

    /// The IP address when the host is an address literal.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Splits `host[:port]`, where host may be a bracketed IPv6 reference.
pub(crate) fn host_port(s: &str) -> Result<(Host, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']').ok_or("unterminated IPv6 reference")?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (
                host,
                Some(rest.strip_prefix(':').ok_or("text after IPv6 reference")?),
            ),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port out of range")?)
        }
        Some(_) => return Err("port is not a number"),
    };
    Ok((Host::parse(host)?, port))
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SipUri {
    /// The URI as written.
    pub raw: String,
    pub secure: bool,
    pub has_user: bool,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// True when the URI carries `?headers` (not allowed in a Request-URI).
    pub has_headers: bool,
}

impl SipUri {
    fn parse(raw: &str, secure: bool, rest: &str) -> Result<SipUri, &'static str> {
        // userinfo may itself contain ';' and '?' (RFC 4475 semiuri, intmeth), but never an
        // unescaped '@': the last '@' ends it.
        let (has_user, hostpart) = match rest.rfind('@') {
            Some(0) => return Err("empty user part"),
            Some(at) => (true, &rest[at + 1..]),
            None => (false, rest),
        };
        let (before_headers, has_headers) = match hostpart.split_once('?') {
            Some((before, _)) => (before, true),
            None => (hostpart, false),
        };
        let (hostport, params) = match before_headers.find(';') {
            Some(semi) => (
                &before_headers[..semi],
                grammar::params(&before_headers[semi..])?,
            ),
            None => (before_headers, Vec::new()),
        };
        let (host, port) = host_port(hostport)?;
        Ok(SipUri {
            raw: raw.to_string(),
            secure,
            has_user,
            host,
            port,
            params,
            has_headers,
        })
    }

    /// The transport its `transport` parameter names: `Some(None)` for one we do not
    /// support (TLS, SCTP), `None` without the parameter.
    pub(crate) fn transport(&self) -> Option<Option<crate::Transport>> {
        grammar::find_param(&self.params, "transport")
            .flatten()
            .map(crate::Transport::parse)
    }

    /// True when the URI has the loose-routing `lr` parameter.
    pub(crate) fn is_loose_route(&self) -> bool {
        grammar::find_param(&self.params, "lr").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_user_host_port_params() {
        let u = sip("sip:alice@192.0.2.4:5070;transport=udp;lr");
        assert!(u.has_user);
        assert_eq!(u.host, Host::Ip("192.0.2.4".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        assert!(u.is_loose_route());
        assert!(!u.has_headers);
    }

    #[test]
    fn user_part_may_hold_semicolons_and_question_marks() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.host, Host::Name("example.com".into()));
        let u = sip("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert!(u.params.is_empty());
    }

    #[test]
    fn detects_headers_and_ipv6() {
        assert!(sip("sip:user@example.com?Route=%3Csip:example.com%3E").has_headers);
        let u = sip("sips:[2001:db8::10]:5061");
        assert!(u.secure);
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.host.to_string(), "[2001:db8::10]");
    }

    #[test]
    fn other_schemes_are_opaque_and_bad_text_is_rejected() {
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002"),
            Ok(Uri::Other("soap.beep://192.0.2.103:3002".into()))
        );
        assert!(Uri::parse("<sip:user@example.com>").is_err());
        assert!(Uri::parse("sip:user@example.com; lr").is_err());
        assert!(Uri::parse("sip:user@exa mple.com").is_err());
        assert!(Uri::parse("sip:user@host:99999").is_err());
        assert!(Uri::parse("nocolon").is_err());
    }
}
