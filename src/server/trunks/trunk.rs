//! One trunk's definition: where its calls and REGISTERs go, who we are on it, and its
//! credentials. Written as `name=carrier,host=sip.example.com,...` on the command line
//! (`--trunk`) or as a `[[trunk]]` table in the configuration file.

use std::fmt;
use std::time::Duration;

/// The keys a trunk takes, in the order `config check` prints them.
pub const KEYS: &[&str] = &[
    "name", "host", "port", "transport", "proxy", "username", "password", "register", "from_user", "from_domain", "expires", "retry",
    "timeout",
];

/// Signalling transports: UDP and TCP (TLS is not supported).
pub use voxline_sip::Transport;

/// A named trunk.
#[derive(Clone, PartialEq, Eq)]
pub struct Trunk {
    /// How `POST /v1/calls` and `GET /v1/trunks` name it: letters, digits, `-`, `_`.
    pub name: String,
    /// The carrier's (or PBX's) domain or address: the host of the Request-URI and of the
    /// registrar URI; looked up per RFC 3263 (NAPTR, SRV, A/AAAA) when it is a name.
    pub host: String,
    /// The port; `None`: SRV records for a name, else 5060.
    pub port: Option<u16>,
    pub transport: Transport,
    /// An outbound proxy (`host[:port]`) every request goes to instead of `host`.
    pub proxy: Option<String>,
    pub username: Option<String>,
    /// Never printed (`Debug` and `config check` mask it).
    pub password: Option<String>,
    /// Keep a registration up (REGISTER) for this trunk.
    pub register: bool,
    /// The user part of From (and of the registered AOR): `username`, else `voxline`.
    pub from_user: Option<String>,
    /// The host part of From and of the AOR: `host` when absent.
    pub from_domain: Option<String>,
    /// The registration expiry asked for.
    pub expires: Duration,
    /// The wait after a failed registration, doubled after each further failure (up to 30 min).
    pub retry: Duration,
    /// How long one REGISTER waits for an answer, and an INVITE for any response, before the
    /// next address is tried.
    pub timeout: Duration,
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("proxy", &self.proxy)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("register", &self.register)
            .finish_non_exhaustive()
    }
}

impl Trunk {
    /// Reads `name=...,host=...,key=value,...` (`\,` and `\\` escape a comma or a backslash in
    /// a value). Errors name the key and say what it takes.
    pub fn parse(spec: &str) -> Result<Trunk, String> {
        let mut trunk = Trunk {
            name: String::new(),
            host: String::new(),
            port: None,
            transport: Transport::Udp,
            proxy: None,
            username: None,
            password: None,
            register: false,
            from_user: None,
            from_domain: None,
            expires: Duration::from_secs(3600),
            retry: Duration::from_secs(30),
            timeout: Duration::from_secs(32),
        };
        let mut seen: Vec<String> = Vec::new();
        for item in split_escaped(spec) {
            if item.trim().is_empty() {
                continue;
            }
            let (key, value) = item.split_once('=').ok_or_else(|| format!("`{}` is not key=value", first_chars(&item)))?;
            let (key, value) = (key.trim(), value.trim().to_string());
            if !KEYS.contains(&key) {
                return Err(format!("unknown trunk key `{key}`; the keys are {}", KEYS.join(", ")));
            }
            if seen.iter().any(|k| k == key) {
                return Err(format!("trunk key `{key}` given twice"));
            }
            seen.push(key.to_string());
            let secs = |v: &str| -> Result<Duration, String> {
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err(format!("trunk key `{key}` takes whole seconds above 0, not `{v}`")),
                }
            };
            match key {
                "name" => trunk.name = value,
                "host" => trunk.host = value,
                "port" => trunk.port = Some(value.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("trunk key `port` takes 1-65535, not `{value}`"))?),
                "transport" => {
                    trunk.transport = match Transport::parse(&value) {
                        Some(transport) => transport,
                        None if value.eq_ignore_ascii_case("tls") => return Err(format!("transport `{value}` is not supported: voxline speaks SIP over UDP and TCP; use transport=udp or tcp")),
                        None => return Err(format!("unknown transport `{value}`; use udp or tcp")),
                    }
                }
                "proxy" => trunk.proxy = Some(value),
                "username" => trunk.username = Some(value),
                "password" => trunk.password = Some(value),
                "register" => {
                    trunk.register = match value.to_ascii_lowercase().as_str() {
                        "yes" | "true" | "1" | "on" => true,
                        "no" | "false" | "0" | "off" => false,
                        _ => return Err(format!("trunk key `register` takes yes or no, not `{value}`")),
                    }
                }
                "from_user" => trunk.from_user = Some(value),
                "from_domain" => trunk.from_domain = Some(value),
                "expires" => trunk.expires = secs(&value)?,
                "retry" => trunk.retry = secs(&value)?,
                "timeout" => trunk.timeout = secs(&value)?,
                _ => unreachable!("checked against KEYS"),
            }
        }
        if trunk.name.is_empty() || !trunk.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("a trunk needs name=NAME (letters, digits, - and _), not `{}`", trunk.name));
        }
        if !valid_host(&trunk.host) {
            return Err(format!("trunk `{}` needs host=HOST (a domain name or an IP address), not `{}`", trunk.name, trunk.host));
        }
        if let Some(proxy) = &trunk.proxy {
            host_port(proxy).map_err(|e| format!("trunk `{}`: proxy `{proxy}`: {e}", trunk.name))?;
        }
        if trunk.password.is_some() && trunk.username.is_none() {
            return Err(format!("trunk `{}` has a password but no username", trunk.name));
        }
        for (key, value) in [("username", &trunk.username), ("from_user", &trunk.from_user)] {
            if value.as_deref().is_some_and(|v| v.is_empty() || v.contains(|c: char| c.is_whitespace() || "@:<>;?\"".contains(c))) {
                return Err(format!("trunk `{}`: `{key}` must be a SIP user part (no spaces, @, :, <, >, ;, ?)", trunk.name));
            }
        }
        if trunk.from_domain.as_deref().is_some_and(|d| !valid_host(d)) {
            return Err(format!("trunk `{}`: from_domain must be a domain name or an IP address", trunk.name));
        }
        Ok(trunk)
    }

    /// The user part of From and of the AOR.
    pub fn from_user(&self) -> &str {
        self.from_user.as_deref().or(self.username.as_deref()).unwrap_or("voxline")
    }

    /// The host part of From and of the AOR.
    pub fn from_domain(&self) -> &str {
        self.from_domain.as_deref().unwrap_or(&self.host)
    }

    /// `host[:port]` as it goes into URIs (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        let host = bracketed(&self.host);
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// The Request-URI for calling `user` through this trunk.
    pub fn request_uri(&self, user: &str) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{user}@{}", self.host_port()),
            other => format!("sip:{user}@{};transport={}", self.host_port(), other.param()),
        }
    }

    /// Our address on the trunk, for From (without a tag).
    pub fn from(&self) -> String {
        format!("<sip:{}@{}>", self.from_user(), bracketed(self.from_domain()))
    }

    /// The address of record we register.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.from_user(), bracketed(self.from_domain()))
    }

    /// The registrar's URI: the trunk's domain.
    pub fn registrar(&self) -> String {
        format!("sip:{}", self.host_port())
    }

    /// The credentials for challenges, when the trunk has them.
    pub fn credentials(&self) -> Option<voxline_sip::Credentials> {
        Some(voxline_sip::Credentials { username: self.username.clone()?, password: self.password.clone().unwrap_or_default() })
    }

    /// The trunk as `key=value` pairs (password included: this is for the flag's own syntax),
    /// in [`KEYS`] order, only what differs from the defaults.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("name", self.name.clone()), ("host", self.host.clone())];
        let opt = |out: &mut Vec<(&'static str, String)>, key, v: &Option<String>| {
            if let Some(v) = v {
                out.push((key, v.clone()));
            }
        };
        if let Some(port) = self.port {
            out.push(("port", port.to_string()));
        }
        out.push(("transport", self.transport.param().into()));
        opt(&mut out, "proxy", &self.proxy);
        opt(&mut out, "username", &self.username);
        opt(&mut out, "password", &self.password);
        out.push(("register", if self.register { "yes" } else { "no" }.into()));
        opt(&mut out, "from_user", &self.from_user);
        opt(&mut out, "from_domain", &self.from_domain);
        out.push(("expires", self.expires.as_secs().to_string()));
        out.push(("retry", self.retry.as_secs().to_string()));
        out.push(("timeout", self.timeout.as_secs().to_string()));
        out
    }
}

/// Splits on unescaped commas; `\,` and `\\` stand for `,` and `\`.
fn split_escaped(spec: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut().expect("never empty").extend(chars.next()),
            ',' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

/// Escapes a value for [`Trunk::parse`].
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(',', "\\,")
}

fn first_chars(s: &str) -> String {
    s.chars().take(40).collect()
}

fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// `host[:port]` or `[v6]:port`.
pub fn host_port(text: &str) -> Result<(String, Option<u16>), String> {
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), Some(addr.port())));
    }
    if let Ok(ip) = text.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
        return Ok((ip.to_string(), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port `{p}`"))?)),
        None => (text, None),
    };
    if !valid_host(host) {
        return Err(format!("`{host}` is not a host name or an IP address"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_definition_reads_and_prints_back() {
        let t = Trunk::parse("name=carrier, host=sip.example.com,port=5080,transport=UDP,proxy=192.0.2.1:5060,username=alice,password=a\\,b\\\\c,register=yes,from_user=+15550001,from_domain=example.com,expires=120,retry=5,timeout=2").unwrap();
        assert_eq!(t.name, "carrier");
        assert_eq!(t.password.as_deref(), Some("a,b\\c"));
        assert_eq!(t.request_uri("+15551234567"), "sip:+15551234567@sip.example.com:5080");
        assert_eq!(t.from(), "<sip:+15550001@example.com>");
        assert_eq!(t.aor(), "sip:+15550001@example.com");
        assert_eq!(t.registrar(), "sip:sip.example.com:5080");
        assert_eq!((t.expires.as_secs(), t.retry.as_secs(), t.timeout.as_secs()), (120, 5, 2));
        assert!(t.register);
        let again = t.pairs().iter().map(|(k, v)| format!("{k}={}", escape(v))).collect::<Vec<_>>().join(",");
        assert_eq!(Trunk::parse(&again).unwrap(), t);
        assert!(!format!("{t:?}").contains("a,b"), "Debug hides the password");
    }

    #[test]
    fn defaults_follow_the_host_and_username() {
        let t = Trunk::parse("name=pbx,host=10.0.0.5,username=bob,password=x").unwrap();
        assert_eq!(t.from(), "<sip:bob@10.0.0.5>");
        assert_eq!(t.request_uri("100"), "sip:100@10.0.0.5");
        assert!(!t.register);
        let t = Trunk::parse("name=v6,host=2001:db8::1,port=5062").unwrap();
        assert_eq!(t.request_uri("100"), "sip:100@[2001:db8::1]:5062");
        assert_eq!(Trunk::parse("name=anon,host=pbx.example").unwrap().from(), "<sip:voxline@pbx.example>");
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        for (spec, says) in [
            ("host=a.example", "needs name="),
            ("name=a b,host=x", "needs name="),
            ("name=a", "needs host="),
            ("name=a,host=bad host", "needs host="),
            ("name=a,host=x,transport=tls", "UDP and TCP"),
            ("name=a,host=x,transport=sctp", "unknown transport"),
            ("name=a,host=x,colour=red", "unknown trunk key `colour`"),
            ("name=a,host=x,port=0", "`port`"),
            ("name=a,host=x,register=maybe", "`register`"),
            ("name=a,host=x,expires=0", "`expires`"),
            ("name=a,host=x,password=p", "no username"),
            ("name=a,host=x,proxy=a:b:c", "proxy"),
            ("name=a,host=x,username=a@b", "user part"),
            ("name=a,host=x,host=y", "twice"),
            ("name=a,host", "not key=value"),
        ] {
            let e = Trunk::parse(spec).unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
