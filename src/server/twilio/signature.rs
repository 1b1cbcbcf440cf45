//! Twilio's request signature (`X-Twilio-Signature`), as its security
//! documentation gives it: the base64 of the HMAC-SHA1, keyed with the
//! account's auth token, of the full URL Twilio requested followed by each
//! POST parameter's name and value, sorted by name (a WebSocket upgrade is a
//! GET: the URL alone).
//!
//! Behind a proxy the URL Twilio requested is not the one voxline sees, so
//! the public URL (`--public-url`) gives its scheme and host; without it the
//! request's `Host` is used with `wss://`. As Twilio's helper libraries do,
//! the URL is tried as it is and with the scheme's default port added or
//! removed, and for a WebSocket with `https`/`wss` (and `http`/`ws`) taken
//! as the same.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The header Twilio signs its requests with.
pub const HEADER: &str = "x-twilio-signature";

/// What a request needs to be let in when a token is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// No `X-Twilio-Signature` header.
    Missing,
    /// A signature that none of the URL's forms gives.
    Invalid,
}

/// The signature of `url` and `params` (name, value) under `auth_token`.
pub fn sign(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

fn mac(auth_token: &str, url: &str, params: &[(&str, &str)]) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    let mut sorted = params.to_vec();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Checks `header` against `url` (and its equivalent forms) in constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(&str, &str)], header: Option<&str>) -> Verdict {
    let Some(header) = header else { return Verdict::Missing };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else { return Verdict::Invalid };
    let valid = url_forms(url).iter().any(|u| mac(auth_token, u, params).verify_slice(&given).is_ok());
    if valid {
        Verdict::Valid
    } else {
        Verdict::Invalid
    }
}

/// The URL as given, with its default port toggled, each under both schemes
/// of its pair (`wss`/`https`, `ws`/`http`).
fn url_forms(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_owned()] };
    let scheme = scheme.to_ascii_lowercase();
    let (secure, schemes): (bool, [&str; 2]) = match scheme.as_str() {
        "https" | "wss" => (true, ["wss", "https"]),
        "http" | "ws" => (false, ["ws", "http"]),
        _ => return vec![url.to_owned()],
    };
    let default_port = if secure { ":443" } else { ":80" };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let toggled = match authority.strip_suffix(default_port) {
        Some(bare) => bare.to_owned(),
        None if !authority.ends_with(']') && authority.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())) => {
            authority.to_owned()
        }
        None => format!("{authority}{default_port}"),
    };
    let mut forms = Vec::new();
    for s in schemes {
        for a in [authority, toggled.as_str()] {
            let form = format!("{s}://{a}{tail}");
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// The URL Twilio requested: `public_url`'s scheme and host (its path, if
/// any, replaced by the request's), or `wss://HOST`, with the request's path
/// and query.
pub fn requested_url(public_url: Option<&str>, host: Option<&str>, path_and_query: &str) -> Option<String> {
    let base = match public_url {
        Some(p) => {
            let p = p.trim();
            let (scheme, rest) = p.split_once("://")?;
            let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            format!("{scheme}://{authority}")
        }
        None => format!("wss://{}", host?),
    };
    Some(format!("{base}{path_and_query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's worked example (its security documentation and helper
    /// libraries' tests): token 12345, this URL and these POST parameters.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PARAMS: [(&str, &str); 5] =
        [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"), ("From", "+12349013030"), ("To", "+18005551212")];
    const SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    #[test]
    fn twilios_example_signs_as_documented() {
        assert_eq!(sign(TOKEN, URL, &PARAMS), SIGNATURE);
        let mut shuffled = PARAMS;
        shuffled.reverse();
        assert_eq!(sign(TOKEN, URL, &shuffled), SIGNATURE, "parameters are sorted by name");
        assert_eq!(verify(TOKEN, URL, &PARAMS, Some(SIGNATURE)), Verdict::Valid);
        // The same request with the default port written out, as Twilio's libraries accept it.
        assert_eq!(verify(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", &PARAMS, Some(SIGNATURE)), Verdict::Valid);
        assert_eq!(verify("54321", URL, &PARAMS, Some(SIGNATURE)), Verdict::Invalid, "another token");
        assert_eq!(verify(TOKEN, "https://mycompany.com/myapp.php?foo=1&bar=3", &PARAMS, Some(SIGNATURE)), Verdict::Invalid);
        assert_eq!(verify(TOKEN, URL, &PARAMS[1..], Some(SIGNATURE)), Verdict::Invalid, "a parameter left out");
        assert_eq!(verify(TOKEN, URL, &PARAMS, Some("not base64 !")), Verdict::Invalid);
        assert_eq!(verify(TOKEN, URL, &PARAMS, None), Verdict::Missing);
    }

    #[test]
    fn a_websocket_upgrade_signs_its_url_alone() {
        let url = "wss://voice.example.com/v1/twilio/media-stream";
        let signature = sign("secret", url, &[]);
        assert_eq!(verify("secret", url, &[], Some(&signature)), Verdict::Valid);
        assert_eq!(verify("secret", "https://voice.example.com/v1/twilio/media-stream", &[], Some(&signature)), Verdict::Valid);
        assert_eq!(verify("secret", "wss://voice.example.com:443/v1/twilio/media-stream", &[], Some(&signature)), Verdict::Valid);
        assert_eq!(verify("secret", "wss://voice.example.com:8443/v1/twilio/media-stream", &[], Some(&signature)), Verdict::Invalid);
        assert_eq!(verify("secret", "wss://evil.example.com/v1/twilio/media-stream", &[], Some(&signature)), Verdict::Invalid);
    }

    #[test]
    fn the_requested_url_comes_from_the_public_url_or_the_host() {
        let path = "/v1/twilio/media-stream?token=t";
        assert_eq!(requested_url(Some("https://voice.example.com"), Some("10.0.0.5:8080"), path).unwrap(), "https://voice.example.com/v1/twilio/media-stream?token=t");
        assert_eq!(requested_url(Some("wss://voice.example.com/ignored/"), None, path).unwrap(), "wss://voice.example.com/v1/twilio/media-stream?token=t");
        assert_eq!(requested_url(None, Some("voice.example.com"), path).unwrap(), "wss://voice.example.com/v1/twilio/media-stream?token=t");
        assert_eq!(requested_url(None, None, path), None);
    }
}
