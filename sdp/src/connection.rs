//! Addresses in `c=IN IP4 <addr>` (RFC 8866 §5.7) and `a=rtcp:<port> IN IP4 <addr>`
//! (RFC 3605).

use std::fmt;
use std::net::IpAddr;

/// Parses `<nettype> <addrtype> <address>[/<ttl>[/<count>]]`.
///
/// Only `IN` with `IP4` or `IP6` and an IP literal are accepted: a host name cannot be used
/// to send RTP without a resolver, so it is an error rather than a silently missing address.
/// The multicast TTL / count suffix is dropped. The address family is not checked against
/// `addrtype` (some peers write `IP4` before an IPv6 literal).
pub(crate) fn parse_address(value: &str) -> Result<IpAddr, &'static str> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(nettype), Some(addrtype), Some(address), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `IN IP4 <address>` or `IN IP6 <address>`");
    };
    if !nettype.eq_ignore_ascii_case("IN") {
        return Err("network type is not IN");
    }
    if !(addrtype.eq_ignore_ascii_case("IP4") || addrtype.eq_ignore_ascii_case("IP6")) {
        return Err("address type is not IP4 or IP6");
    }
    let literal = address.split('/').next().unwrap_or_default();
    literal
        .parse::<IpAddr>()
        .map_err(|_| "address is not an IP literal (host names are not supported)")
}

/// Writes `IN IP4 <addr>` or `IN IP6 <addr>`.
pub(crate) struct Address(pub IpAddr);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "IN IP4 {v4}"),
            IpAddr::V6(v6) => write!(f, "IN IP6 {v6}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_ipv6_and_multicast_ttl() {
        assert_eq!(
            parse_address("IN IP4 192.0.2.10"),
            Ok("192.0.2.10".parse().expect("ip"))
        );
        assert_eq!(
            parse_address("in ip6 2001:db8::1"),
            Ok("2001:db8::1".parse().expect("ip"))
        );
        assert_eq!(
            parse_address("IN IP4 224.2.1.1/127/3"),
            Ok("224.2.1.1".parse().expect("ip"))
        );
    }

    #[test]
    fn rejects_host_names_and_other_networks() {
        for value in [
            "",
            "IN IP4",
            "IN IP4 host.example.com",
            "ATM NSAP 47.0005",
            "IN IPX 1.2.3.4",
            "IN IP4 1.2.3.4 extra",
        ] {
            assert!(parse_address(value).is_err(), "{value:?}");
        }
    }

    #[test]
    fn prints_family_from_the_address() {
        let v6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(Address(v6).to_string(), "IN IP6 ::1");
    }
}
