//! Digest access authentication for the requests we send (RFC 3261 22.4 on RFC 2617, with the
//! SHA-256 of RFC 7616 and RFC 8760): read a `WWW-Authenticate`/`Proxy-Authenticate`
//! challenge, answer it with an `Authorization`/`Proxy-Authorization` value.
//!
//! Supported: algorithms `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`; `qop=auth` (with a
//! client nonce and nonce count) or no `qop` at all (RFC 2069 style); `opaque` echoed;
//! `userhash`. Not supported: `auth-int` alone, `SHA-512-256`, other schemes.

use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::message::{one_line, split_top_level};

/// The hash of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(token: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.name().eq_ignore_ascii_case(token))
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// `H(data)` as lower-case hex (RFC 7616 3.4.1).
    fn hash(self, data: &str) -> String {
        let bytes = match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One `Digest` challenge we can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (we then send cnonce and nc).
    pub qop_auth: bool,
    /// The previous nonce expired but the credentials were right (RFC 7616 3.3).
    pub stale: bool,
    /// The username goes out hashed (RFC 7616 3.4.4).
    pub userhash: bool,
}

/// The Digest challenges of a 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`)
/// answer, one per realm (the first of each); the error says the answer has none voxline
/// can answer.
pub(crate) fn challenges_of(response: &crate::message::Response) -> Result<Vec<Challenge>, String> {
    let header = if response.status == 407 { "Proxy-Authenticate" } else { "WWW-Authenticate" };
    let mut challenges: Vec<Challenge> = Vec::new();
    for c in response.headers.all(header).filter_map(|v| Challenge::parse(v).ok()) {
        if !challenges.iter().any(|o| o.realm == c.realm) {
            challenges.push(c);
        }
    }
    if challenges.is_empty() {
        return Err(format!("{} (no Digest challenge voxline can answer)", response.reason));
    }
    Ok(challenges)
}

impl Challenge {
    /// Parses one challenge header value. Errors say why it cannot be answered.
    pub(crate) fn parse(value: &str) -> Result<Challenge, &'static str> {
        let value = value.trim();
        let (scheme, params) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err("not a Digest challenge");
        }
        let params = auth_params(params)?;
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(token) => Algorithm::parse(token).ok_or("unsupported Digest algorithm")?,
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                true
            }
            Some(_) => return Err("unsupported qop (only auth)"),
        };
        Ok(Challenge {
            realm: get("realm")
                .ok_or("Digest challenge without realm")?
                .to_string(),
            nonce: get("nonce")
                .ok_or("Digest challenge without nonce")?
                .to_string(),
            opaque: get("opaque").map(str::to_string),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            userhash: get("userhash").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// The request being authorized and the client's share of the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    /// The Request-URI, as `uri` (the digest-uri).
    pub uri: &'a str,
    /// Our nonce, used with `qop` and the `-sess` algorithms.
    pub cnonce: &'a str,
    /// How many requests used this nonce, this one included (from 1).
    pub nc: u32,
}

/// The `response` value: `KD(H(A1), nonce:nc:cnonce:qop:H(A2))`, or `KD(H(A1), nonce:H(A2))`
/// without `qop` (RFC 7616 3.4.1, RFC 2617 3.2.2.1).
pub(crate) fn response(challenge: &Challenge, answer: &Answer<'_>) -> String {
    let h = |data: &str| challenge.algorithm.hash(data);
    let mut ha1 = h(&format!(
        "{}:{}:{}",
        answer.username, challenge.realm, answer.password
    ));
    if challenge.algorithm.is_session() {
        ha1 = h(&format!("{ha1}:{}:{}", challenge.nonce, answer.cnonce));
    }
    let ha2 = h(&format!("{}:{}", answer.method, answer.uri));
    if challenge.qop_auth {
        h(&format!(
            "{ha1}:{}:{:08x}:{}:auth:{ha2}",
            challenge.nonce, answer.nc, answer.cnonce
        ))
    } else {
        h(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    }
}

/// The `Authorization` (or `Proxy-Authorization`) header value answering `challenge`.
pub(crate) fn authorization(challenge: &Challenge, answer: &Answer<'_>) -> String {
    let username = if challenge.userhash {
        challenge
            .algorithm
            .hash(&format!("{}:{}", answer.username, challenge.realm))
    } else {
        answer.username.to_string()
    };
    let mut value = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{}\", algorithm={}",
        quote(&username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(answer.uri),
        response(challenge, answer),
        challenge.algorithm.name(),
    );
    if challenge.qop_auth {
        value += &format!(
            ", qop=auth, nc={:08x}, cnonce={}",
            answer.nc,
            quote(answer.cnonce)
        );
    } else if challenge.algorithm.is_session() {
        value += &format!(", cnonce={}", quote(answer.cnonce));
    }
    if let Some(opaque) = &challenge.opaque {
        value += &format!(", opaque={}", quote(opaque));
    }
    if challenge.userhash {
        value += ", userhash=true";
    }
    value
}

/// A quoted-string, with `"` and `\` escaped and control characters dropped.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in one_line(text).chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `auth-param *(COMMA auth-param)` with quoted values unquoted.
fn auth_params(text: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    for part in split_top_level(text, ',')? {
        if part.is_empty() {
            continue;
        }
        let (name, value) = part.split_once('=').ok_or("auth-param without '='")?;
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(inner) => unquote(
                inner
                    .strip_suffix('"')
                    .ok_or("unterminated quoted string")?,
            ),
            None => value.to_string(),
        };
        out.push((name.trim().to_string(), value));
    }
    Ok(out)
}

fn unquote(inner: &str) -> String {
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 3.9.1: the MD5 and SHA-256 challenges of the example, and their answers.
    const RFC7616_MD5: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    fn rfc7616_answer() -> Answer<'static> {
        Answer {
            username: "Mufasa",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        }
    }

    #[test]
    fn rfc7616_md5_example() {
        let challenge = Challenge::parse(RFC7616_MD5).unwrap();
        assert_eq!(challenge.algorithm, Algorithm::Md5);
        assert!(challenge.qop_auth);
        assert_eq!(
            response(&challenge, &rfc7616_answer()),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let header = authorization(&challenge, &rfc7616_answer());
        assert_eq!(
            header,
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", uri=\"/dir/index.html\", \
             response=\"8ca523f5e9506fed4657c9700eebdbec\", algorithm=MD5, qop=auth, nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let challenge = Challenge::parse(&RFC7616_MD5.replace("MD5", "SHA-256")).unwrap();
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        assert_eq!(
            response(&challenge, &rfc7616_answer()),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc2617_example() {
        let challenge = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let answer = Answer {
            password: "Circle Of Life",
            cnonce: "0a4f113b",
            ..rfc7616_answer()
        };
        assert_eq!(
            response(&challenge, &answer),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    /// Values from Python's hashlib (the formulas of RFC 7616 3.4.1, typed out independently).
    #[test]
    fn no_qop_sess_and_userhash() {
        let sip = Answer {
            username: "alice",
            password: "wonderland",
            method: "INVITE",
            uri: "sip:+15551234567@192.0.2.1:5060",
            cnonce: "c0ffee",
            nc: 1,
        };
        let plain = Challenge::parse("Digest realm=\"voxline.test\", nonce=\"abc123\"").unwrap();
        assert!(!plain.qop_auth);
        assert_eq!(response(&plain, &sip), "66678f7b61cb381bcc3607cc9a3ad079");
        let header = authorization(&plain, &sip);
        assert!(
            !header.contains("qop") && !header.contains("cnonce") && !header.contains("nc="),
            "{header}"
        );

        let sess = Challenge::parse(
            "Digest realm=\"voxline.test\",nonce=\"abc123\",qop=auth,algorithm=MD5-sess",
        )
        .unwrap();
        assert_eq!(response(&sess, &sip), "656596a7877d187abc57a70f8c7221dd");
        let sha_sess = Challenge::parse("Digest realm=\"voxline.test\", nonce=\"abc123\", qop=\"auth\", algorithm=sha-256-sess, userhash=true").unwrap();
        assert_eq!(
            response(&sha_sess, &Answer { nc: 2, ..sip }),
            "885114fec7c6b48de530803ab2b69053e20c61ac3961b52326b506fc671fa33f"
        );
        assert!(authorization(&sha_sess, &sip).starts_with(
            "Digest username=\"cdbed05f24b142d6e76d8aee32cad168491cb611a235f23611d0dfdc1f7bb500\""
        ));
    }

    #[test]
    fn what_cannot_be_answered_says_why() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err("not a Digest challenge")
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256"),
            Err("unsupported Digest algorithm")
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\""),
            Err("unsupported qop (only auth)")
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\""),
            Err("Digest challenge without nonce")
        );
        let stale =
            Challenge::parse("Digest realm=\"a \\\"b\\\"\", nonce=\"n\", stale=TRUE").unwrap();
        assert!(stale.stale);
        assert_eq!(stale.realm, "a \"b\"");
        assert!(authorization(&stale, &rfc7616_answer()).contains(r#"realm="a \"b\"""#));
    }
}
