//! Calls we place that are challenged (401/407): Digest answers (MD5, SHA-256), one retry
//! per realm, a stale nonce, and the challenges that fail the call.

mod common;

use std::time::Instant;

use common::uac::*;
use common::*;
use md5::{Digest, Md5};
use voxline_sip::{EndReason, Event};

/// `H(H(user:realm:password):nonce:nc:cnonce:auth:H(INVITE:uri))` from the Authorization value.
fn check_md5_answer(value: &str, password: &str) {
    let param = |name: &str| -> String {
        value
            .split(", ")
            .find_map(|p| {
                p.trim_start_matches("Digest ")
                    .strip_prefix(&format!("{name}="))
            })
            .unwrap_or_else(|| panic!("no {name} in {value}"))
            .trim_matches('"')
            .to_string()
    };
    let h = |s: String| format!("{:x}", Md5::digest(s.as_bytes()));
    let ha1 = h(format!(
        "{}:{}:{password}",
        param("username"),
        param("realm")
    ));
    let ha2 = h(format!("INVITE:{}", param("uri")));
    let expected = h(format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        param("nonce"),
        param("nc"),
        param("cnonce")
    ));
    assert_eq!(param("response"), expected, "{value}");
}

const CHALLENGE: &str = "WWW-Authenticate: Digest realm=\"voxline.test\", nonce=\"n-1\", qop=\"auth\", algorithm=MD5, opaque=\"op\"";

#[test]
fn challenge_401_is_answered_once_with_a_new_branch_and_cseq_then_answered() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, with_credentials("alice", "wonderland"));
    assert_eq!(invite.header("Authorization"), None);
    Resp::to(&invite, 401, "Unauthorized")
        .tag("proxy")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let sent = drain(&mut ep);
    assert_eq!(
        sent.iter().map(|s| s.method()).collect::<Vec<_>>(),
        ["ACK", "INVITE"]
    );
    let (ack, retry) = (&sent[0], &sent[1]);
    assert_eq!(ack.top_branch(), invite.top_branch());
    assert_ne!(retry.top_branch(), invite.top_branch());
    assert_eq!(retry.cseq(), (invite.cseq().0 + 1, "INVITE".to_string()));
    assert_eq!(retry.header("Call-ID"), invite.header("Call-ID"));
    assert_eq!(retry.header("From"), invite.header("From"));
    assert_eq!(
        retry.header("To"),
        invite.header("To"),
        "no To tag: still outside a dialog"
    );
    assert_eq!(retry.body(), OFFER);
    let authorization = retry.header("Authorization").unwrap();
    assert!(
        authorization
            .starts_with("Digest username=\"alice\", realm=\"voxline.test\", nonce=\"n-1\""),
        "{authorization}"
    );
    assert!(authorization.contains(&format!("uri=\"{CALLEE}\"")));
    assert!(authorization.contains("qop=auth, nc=00000001, cnonce=\""));
    assert!(authorization.contains("opaque=\"op\""));
    check_md5_answer(&authorization, "wonderland");
    assert!(
        events(&mut ep).is_empty(),
        "a challenge answered is no failure"
    );

    let ack = answer(&mut ep, now, retry);
    assert_eq!(
        ack.header("Authorization").as_deref(),
        Some(authorization.as_str()),
        "22.4: the ACK carries the INVITE's credentials"
    );
    assert_eq!(ack.cseq().0, retry.cseq().0);
    assert!(matches!(events(&mut ep)[..], [Event::CallAnswered { call: c, .. }] if c == call));
}

#[test]
fn wrong_credentials_get_one_retry_then_the_call_fails() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, with_credentials("alice", "wrong"));
    Resp::to(&invite, 401, "Unauthorized")
        .tag("uas")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let retry = drain(&mut ep).pop().unwrap();
    Resp::to(&retry, 401, "Unauthorized")
        .tag("uas")
        .header(&CHALLENGE.replace("n-1", "n-2"))
        .send(&mut ep, now);
    let sent = drain(&mut ep);
    assert_eq!(
        sent.iter().map(|s| s.method()).collect::<Vec<_>>(),
        ["ACK"],
        "no third INVITE"
    );
    assert_eq!(
        events(&mut ep),
        [
            Event::CallFailed {
                call,
                status: 401,
                reason: "Unauthorized (credentials refused for realm \"voxline.test\")".into()
            },
            Event::CallEnded {
                call,
                reason: EndReason::Failed
            }
        ]
    );
}

#[test]
fn stale_nonce_gets_one_more_try_with_the_new_nonce() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, invite) = place(&mut ep, now, with_credentials("alice", "wonderland"));
    Resp::to(&invite, 401, "Unauthorized")
        .tag("uas")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let retry = drain(&mut ep).pop().unwrap();
    let stale = format!("{}, stale=true", CHALLENGE.replace("n-1", "n-2"));
    Resp::to(&retry, 401, "Unauthorized")
        .tag("uas")
        .header(&stale)
        .send(&mut ep, now);
    let third = drain(&mut ep).pop().unwrap();
    assert_eq!(third.method(), "INVITE");
    assert!(third
        .header("Authorization")
        .unwrap()
        .contains("nonce=\"n-2\""));
    Resp::to(&third, 401, "Unauthorized")
        .tag("uas")
        .header(&stale.replace("n-2", "n-3"))
        .send(&mut ep, now);
    assert_eq!(
        drain(&mut ep)
            .iter()
            .map(|s| s.method())
            .collect::<Vec<_>>(),
        ["ACK"],
        "stale once, not forever"
    );
}

#[test]
fn proxy_challenge_with_sha256_gets_proxy_authorization() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (_, invite) = place(&mut ep, now, with_credentials("alice", "wonderland"));
    Resp::to(&invite, 407, "Proxy Authentication Required")
        .tag("proxy")
        .header("Proxy-Authenticate: Digest realm=\"proxy.test\", nonce=\"p-1\", algorithm=SHA-256, qop=\"auth\"")
        .header("Proxy-Authenticate: Digest realm=\"proxy.test\", nonce=\"p-1\", algorithm=MD5, qop=\"auth\"")
        .send(&mut ep, now);
    let retry = drain(&mut ep).pop().unwrap();
    let values = retry.headers("Proxy-Authorization");
    assert_eq!(
        values.len(),
        1,
        "one answer per realm: the first challenge we support"
    );
    assert!(values[0].contains("algorithm=SHA-256"));
    assert_eq!(
        values[0].split("response=\"").nth(1).unwrap().find('"'),
        Some(64)
    );
    assert_eq!(retry.header("Authorization"), None);
    // Then the callee's own challenge: both credentials go out.
    Resp::to(&retry, 401, "Unauthorized")
        .tag("uas")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let third = drain(&mut ep).pop().unwrap();
    assert_eq!(third.headers("Proxy-Authorization").len(), 1);
    check_md5_answer(&third.header("Authorization").unwrap(), "wonderland");
}

#[test]
fn a_challenge_without_credentials_or_that_cannot_be_answered_fails_the_call() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (call, invite) = place(&mut ep, now, request());
    Resp::to(&invite, 401, "Unauthorized")
        .tag("uas")
        .header(CHALLENGE)
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "ACK");
    assert!(
        matches!(&events(&mut ep)[0], Event::CallFailed { call: c, status: 401, reason } if *c == call && reason.contains("no credentials"))
    );

    let (call, invite) = place(&mut ep, now, with_credentials("alice", "wonderland"));
    Resp::to(&invite, 401, "Unauthorized")
        .tag("uas")
        .header("WWW-Authenticate: Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256")
        .send(&mut ep, now);
    assert_eq!(one(&mut ep).method(), "ACK");
    assert!(
        matches!(&events(&mut ep)[0], Event::CallFailed { call: c, status: 401, reason } if *c == call && reason.contains("no Digest challenge"))
    );
}
