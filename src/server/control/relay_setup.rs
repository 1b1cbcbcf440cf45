//! ConversationRelay's `setup` message from a voxline call: the fields as
//! Twilio sends them, mapped from SIP (docs/agents.md, "ConversationRelay").
//!
//! | `setup` field | from |
//! |---|---|
//! | `from`, `to` | the From / To header: `+` and the digits when the user part is a global number (`+1 415 555-0100`, `tel:+1...`), else `sip:user@host`; never a display name, tag or parameter |
//! | `callerName` | the From header's display name |
//! | `callSid`, `sessionId` | `CA` / `VX` and 32 hex digits: zeros, then voxline's call id's 16 (`c1a2b...` is `CA0000000000000000` `1a2b...`); a Twilio Media Streams call keeps Twilio's `CallSid` |
//! | `direction` | `inbound`, or `outbound-api` for a call placed with `POST /v1/calls` |
//! | `callType` | `SIP`, `WebRTC`, or `PSTN` for a Twilio Media Streams call |
//! | `callStatus` | `IN-PROGRESS` (the agent is connected once the call is answered) |
//! | `customParameters` | the INVITE's `X-` headers without the `X-` (`X-Account: acme` is `"Account": "acme"`); a Media Stream's own `<Parameter>`s as they are |

use std::collections::BTreeMap;

use super::relay::RelayOutbound;
use crate::server::calls::Direction;

/// The call as `setup` describes it.
pub struct CallFacts<'a> {
    pub call: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub headers: &'a BTreeMap<String, String>,
    pub transport: &'static str,
    pub direction: Direction,
    pub twilio_call_sid: Option<&'a str>,
}

/// The `setup` message for a call.
pub fn setup(facts: CallFacts<'_>) -> RelayOutbound {
    let (from, caller_name) = address(facts.from);
    let (to, _) = address(facts.to);
    RelayOutbound::Setup {
        session_id: sid("VX", facts.call),
        call_sid: facts.twilio_call_sid.map_or_else(|| sid("CA", facts.call), str::to_owned),
        parent_call_sid: "",
        account_sid: "",
        from,
        to,
        forwarded_from: "",
        caller_name,
        direction: match facts.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound-api",
        },
        call_type: match facts.transport {
            "sip" => "SIP",
            "twilio" => "PSTN",
            _ => "WebRTC",
        },
        call_status: "IN-PROGRESS",
        custom_parameters: custom_parameters(facts.headers, facts.transport == "twilio"),
    }
}

/// A Twilio-shaped SID: `prefix` and 32 hex digits holding voxline's call id
/// (`c` and 16 hex digits) in its last 16; an id of another shape follows the prefix as it is.
pub fn sid(prefix: &str, call: &str) -> String {
    match call.strip_prefix('c') {
        Some(hex) if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => format!("{prefix}{:0>32}", hex.to_ascii_lowercase()),
        _ => format!("{prefix}{call}"),
    }
}

/// The custom parameters: `X-` headers without their prefix (a Media
/// Stream's `<Parameter>`s, `as_is`, unchanged).
fn custom_parameters(headers: &BTreeMap<String, String>, as_is: bool) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = match name.get(..2) {
                Some(p) if !as_is && p.eq_ignore_ascii_case("x-") && name.len() > 2 => &name[2..],
                _ => name.as_str(),
            };
            (name.to_owned(), value.clone())
        })
        .collect()
}

/// A From or To header value as Twilio gives an address, and its display name.
///
/// `"Alice" <sip:+14155550100@host>;tag=1` is `+14155550100` and `Alice`;
/// `<sip:alice@host:5060;transport=udp>` is `sip:alice@host:5060`; a value
/// that is no SIP or tel URI (a WebRTC or Media Streams call's) is kept.
pub fn address(header: &str) -> (String, String) {
    let header = header.trim();
    let (display, uri) = match (header.find('<'), header.find('>')) {
        (Some(open), Some(close)) if open < close => (unquote(&header[..open]), &header[open + 1..close]),
        // No angle brackets: the URI ends at the header's parameters.
        _ => (String::new(), header.split(';').next().unwrap_or_default().trim()),
    };
    let Some((scheme, rest)) = uri.split_once(':') else { return (uri.to_owned(), display) };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "tel" {
        let number = rest.split(';').next().unwrap_or_default();
        return (global_number(number).unwrap_or_else(|| format!("tel:{number}")), display);
    }
    if scheme != "sip" && scheme != "sips" {
        return (uri.to_owned(), display);
    }
    // The URI's own parameters and headers go.
    let bare = rest.split([';', '?']).next().unwrap_or_default();
    let user = bare.rsplit_once('@').map(|(user, _)| user);
    match user.and_then(global_number) {
        Some(number) => (number, display),
        None => (format!("{scheme}:{bare}"), display),
    }
}

/// `+` and the digits of a global number (RFC 3966: `+`, digits and the
/// visual separators `-` `.` `(` `)`); `None` for anything else.
fn global_number(user: &str) -> Option<String> {
    let digits = user.strip_prefix('+')?;
    let mut out = String::from("+");
    for c in digits.chars() {
        match c {
            '0'..='9' => out.push(c),
            '-' | '.' | '(' | ')' | ' ' => {}
            _ => return None,
        }
    }
    (out.len() > 1).then_some(out)
}

fn unquote(display: &str) -> String {
    let d = display.trim();
    d.strip_prefix('"').and_then(|d| d.strip_suffix('"')).unwrap_or(d).replace("\\\"", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sip_addresses_map_to_twilios_e164_or_sip_uris() {
        let a = |h: &str| address(h);
        assert_eq!(a(r#""Alice" <sip:+14155550100@pbx.example.com>;tag=8f3a"#), ("+14155550100".into(), "Alice".into()));
        assert_eq!(a("<sip:+1-415-555-0100@10.0.0.1:5060;user=phone>;tag=x"), ("+14155550100".into(), String::new()));
        assert_eq!(a("sip:+442071838750@trunk.example;tag=1"), ("+442071838750".into(), String::new()));
        assert_eq!(a("<tel:+1.415.555.0100;phone-context=x>"), ("+14155550100".into(), String::new()));
        // Not a global number: the SIP URI, without display name, parameters or tag.
        assert_eq!(a(r#"Bob <sip:bob@example.com:5070;transport=udp>;tag=77"#), ("sip:bob@example.com:5070".into(), "Bob".into()));
        assert_eq!(a("<sip:1001@pbx.local>;tag=2"), ("sip:1001@pbx.local".into(), String::new()));
        assert_eq!(a("<sips:+1x5@h>"), ("sips:+1x5@h".into(), String::new()));
        assert_eq!(a("<sip:example.com>"), ("sip:example.com".into(), String::new()));
        assert_eq!(a(r#""Carol \"CJ\" Jones" <sip:carol@h>"#).1, r#"Carol "CJ" Jones"#);
        // A WebRTC or Media Streams call's from/to is no URI: kept.
        assert_eq!(a("browser"), ("browser".into(), String::new()));
    }

    #[test]
    fn sids_are_twilio_shaped_and_hold_the_call_id() {
        assert_eq!(sid("CA", "c0123456789abcdef"), "CA00000000000000000123456789abcdef");
        assert_eq!(sid("CA", "c0123456789abcdef").len(), 34);
        assert_eq!(sid("VX", "c0123456789ABCDEF"), "VX00000000000000000123456789abcdef");
        assert_eq!(sid("CA", "odd-id"), "CAodd-id");
    }

    #[test]
    fn setup_carries_twilios_fields() {
        let headers: BTreeMap<String, String> = [("X-Call-Reference".to_owned(), "bar".to_owned()), ("x-tier".to_owned(), "gold".to_owned())].into();
        let facts = CallFacts {
            call: "c00000000000000ff",
            from: r#""Alice" <sip:+14155550100@192.0.2.1:5060>;tag=abc"#,
            to: "<sip:+18005550101@voxline.example>",
            headers: &headers,
            transport: "sip",
            direction: Direction::Inbound,
            twilio_call_sid: None,
        };
        let v = serde_json::to_value(setup(facts)).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "setup",
                "sessionId": "VX000000000000000000000000000000ff",
                "callSid": "CA000000000000000000000000000000ff",
                "parentCallSid": "",
                "accountSid": "",
                "from": "+14155550100",
                "to": "+18005550101",
                "forwardedFrom": "",
                "callerName": "Alice",
                "direction": "inbound",
                "callType": "SIP",
                "callStatus": "IN-PROGRESS",
                "customParameters": {"Call-Reference": "bar", "tier": "gold"}
            })
        );
        let params: BTreeMap<String, String> = [("X-Keep".to_owned(), "1".to_owned())].into();
        let twilio = CallFacts {
            call: "c1",
            from: "twilio",
            to: "MZ1",
            headers: &params,
            transport: "twilio",
            direction: Direction::Outbound,
            twilio_call_sid: Some("CAabc"),
        };
        let v = serde_json::to_value(setup(twilio)).unwrap();
        assert_eq!((v["callSid"].as_str(), v["direction"].as_str(), v["callType"].as_str()), (Some("CAabc"), Some("outbound-api"), Some("PSTN")));
        assert_eq!(v["customParameters"], json!({"X-Keep": "1"}), "a Media Stream's parameters are its own names");
    }
}
