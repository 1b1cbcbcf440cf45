//! A call out through a trunk: `POST /v1/calls {"to": ..., "trunk": NAME}`.

use voxline_sip::CallRequest;

use super::{resolve, Trunks};

/// The INVITE's request for calling `to` through trunk `name`: the Request-URI
/// `sip:USER@TRUNK_HOST[:PORT]` (USER: `to` itself, or the user part of a `sip:` URI), sent to
/// the outbound proxy or the trunk's host (resolved: the first address, the others tried in
/// turn when one sends nothing back within the trunk's `timeout`), From and the credentials
/// of the trunk. Errors: (API error code, message).
pub async fn request(trunks: &Trunks, name: &str, to: &str) -> Result<CallRequest, (&'static str, String)> {
    let Some(trunk) = trunks.get(name) else {
        let names: Vec<&str> = trunks.all().iter().map(|t| t.name.as_str()).collect();
        let known = if names.is_empty() { "no trunks are configured (--trunk)".to_string() } else { format!("the trunks are {}", names.join(", ")) };
        return Err(("unknown_trunk", format!("no trunk named `{name}`; {known}")));
    };
    let user = user_part(to).ok_or_else(|| ("invalid_uri", format!("`{to}`: give a number or user (e.g. +15551234567) or a sip: URI to call through a trunk")))?;
    let (host, port) = match &trunk.proxy {
        Some(proxy) => super::trunk::host_port(proxy).map_err(|e| ("invalid_trunk", e))?,
        None => (trunk.host.clone(), trunk.port),
    };
    let destinations = resolve::targets(&host, port, trunk.transport, trunks.dns_server).await.map_err(|e| ("unresolved_trunk", format!("trunk `{name}`: {e}")))?;
    let mut request = CallRequest::new(trunk.request_uri(&user), destinations[0], String::new());
    request.from = Some(trunk.from());
    request.credentials = trunk.credentials();
    request.alternates = destinations[1..].to_vec();
    request.failover_after = trunk.timeout;
    request.transport = trunk.transport;
    Ok(request)
}

/// `+15551234567`, `sip:+15551234567@anywhere` or `<sip:...>` -> `+15551234567`.
fn user_part(to: &str) -> Option<String> {
    let to = to.trim().trim_start_matches('<').trim_end_matches('>');
    let user = match to.strip_prefix("sip:") {
        Some(rest) => rest.split_once('@')?.0,
        None if to.contains(':') || to.contains('@') => return None,
        None => to,
    };
    let ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "+-_.!~*'()&=$,;?/%".contains(c));
    ok.then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_comes_from_a_number_or_a_uri() {
        assert_eq!(user_part("+15551234567").as_deref(), Some("+15551234567"));
        assert_eq!(user_part("<sip:bob@elsewhere.example:5070>").as_deref(), Some("bob"));
        assert_eq!(user_part("sip:pbx.example"), None);
        assert_eq!(user_part("tel:+1555"), None);
        assert_eq!(user_part("a b"), None);
    }
}
