//! Registration (RFC 3261 10.2) with fake time: the REGISTER and its Digest answer, the
//! refresh at half the granted expiry, wrong credentials failing without a loop, the backoff
//! when the registrar never answers, failover to the next destination, 423, and removal.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::uac::Resp;
use common::*;
use md5::{Digest, Md5};
use voxline_sip::{
    Credentials, Endpoint, Event, RegisterRequest, RegistrationHandle, RegistrationState,
    RegistrationStatus,
};

const REGISTRAR: &str = "sip:trunk.example.com";
const AOR: &str = "sip:alice@trunk.example.com";
const CHALLENGE: &str = "WWW-Authenticate: Digest realm=\"trunk.example.com\", nonce=\"n-1\", qop=\"auth\", algorithm=MD5";

fn request() -> RegisterRequest {
    let mut r = RegisterRequest::new(REGISTRAR, AOR, peer(), Duration::from_secs(600));
    r.credentials = Some(Credentials {
        username: "alice".into(),
        password: "wonderland".into(),
    });
    r.retry = Duration::from_secs(1);
    r.retry_max = Duration::from_secs(60);
    r
}

/// Our address in Via and Contact, as the tests' endpoint advertises it.
fn advertised() -> String {
    let (host, port) = config().advertised.unwrap();
    format!("{host}:{port}")
}

fn statuses(ep: &mut Endpoint) -> Vec<RegistrationStatus> {
    events(ep)
        .into_iter()
        .filter_map(|e| match e {
            Event::Registration { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

fn states(ep: &mut Endpoint) -> Vec<RegistrationState> {
    statuses(ep).into_iter().map(|s| s.state).collect()
}

/// The Digest response the Authorization value should carry for REGISTER.
fn check_answer(value: &str) {
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
    let ha1 = h(format!("alice:{}:wonderland", param("realm")));
    let ha2 = h(format!("REGISTER:{}", param("uri")));
    let expected = h(format!(
        "{ha1}:{}:{}:{}:auth:{ha2}",
        param("nonce"),
        param("nc"),
        param("cnonce")
    ));
    assert_eq!(param("response"), expected, "{value}");
    assert_eq!(param("uri"), REGISTRAR);
}

/// Registers through a 401 and a 200 granting `granted` seconds; returns the handle and the
/// authenticated REGISTER.
fn registered(ep: &mut Endpoint, now: Instant, granted: u32) -> (RegistrationHandle, Sent) {
    let handle = ep.register(now, request()).unwrap();
    let first = one(ep);
    Resp::to(&first, 401, "Unauthorized")
        .tag("reg")
        .header(CHALLENGE)
        .send(ep, now);
    let second = one(ep);
    Resp::to(&second, 200, "OK")
        .tag("reg")
        .header(&format!(
            "Contact: <sip:alice@{}>;expires={granted}",
            advertised()
        ))
        .send(ep, now);
    (handle, second)
}

#[test]
fn register_answers_the_challenge_and_refreshes_at_half_the_granted_expiry() {
    let mut ep = endpoint();
    let now = Instant::now();
    let handle = ep.register(now, request()).unwrap();
    let first = one(&mut ep);
    assert_eq!(first.method(), "REGISTER");
    assert_eq!(first.request_uri(), REGISTRAR);
    assert_eq!(first.to, peer());
    assert_eq!(
        first.header("To").as_deref(),
        Some(format!("<{AOR}>").as_str())
    );
    assert!(first
        .header("From")
        .unwrap()
        .starts_with(&format!("<{AOR}>;tag=")));
    let contact = first.header("Contact").unwrap();
    assert_eq!(
        contact,
        format!("<sip:alice@{}>", advertised()),
        "the AOR's user at our address"
    );
    assert_eq!(first.header("Expires").as_deref(), Some("600"));
    assert_eq!(first.header("Authorization"), None);
    assert_eq!(states(&mut ep), [], "Registering is where it starts");
    assert_eq!(
        ep.registration(handle).unwrap().state,
        RegistrationState::Registering
    );

    Resp::to(&first, 401, "Unauthorized")
        .tag("reg")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let second = one(&mut ep);
    assert_eq!(second.header("Call-ID"), first.header("Call-ID"));
    assert_eq!(second.cseq(), (first.cseq().0 + 1, "REGISTER".into()));
    assert_ne!(second.top_branch(), first.top_branch());
    check_answer(
        &second
            .header("Authorization")
            .expect("the retry carries credentials"),
    );

    Resp::to(&second, 200, "OK")
        .tag("reg")
        .header(&format!("Contact: {contact};expires=60"))
        .send(&mut ep, now);
    let status = statuses(&mut ep);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, RegistrationState::Registered);
    assert_eq!(
        status[0].granted,
        Some(Duration::from_secs(60)),
        "the Contact's expires wins"
    );
    assert_eq!(status[0].expires_at, Some(now + Duration::from_secs(60)));
    assert_eq!(status[0].next_attempt, Some(now + Duration::from_secs(30)));

    // Two refreshes, each at half the granted time, in the same Call-ID with the next CSeq
    // and the credentials (nc moves on for the same nonce).
    let sent = run_until(&mut ep, now, Duration::from_secs(29));
    assert!(sent.is_empty(), "nothing before the refresh: {sent:?}");
    let sent = run_until(&mut ep, now, Duration::from_secs(30));
    assert_eq!(sent.len(), 1);
    let (at, refresh) = &sent[0];
    assert_eq!(*at, Duration::from_secs(30));
    assert_eq!(refresh.header("Call-ID"), first.header("Call-ID"));
    assert_eq!(refresh.cseq().0, second.cseq().0 + 1);
    let auth = refresh.header("Authorization").unwrap();
    assert!(auth.contains("nc=00000002"), "{auth}");
    Resp::to(refresh, 200, "OK")
        .tag("reg")
        .header("Expires: 40")
        .send(&mut ep, now + *at);
    let status = statuses(&mut ep);
    assert_eq!(
        status[0].granted,
        Some(Duration::from_secs(40)),
        "the Expires header when the Contact has none"
    );
    let sent = run_until(&mut ep, now, Duration::from_secs(50));
    assert_eq!(
        sent.iter()
            .map(|(at, s)| (at.as_secs(), s.method().to_string()))
            .collect::<Vec<_>>(),
        [(50, "REGISTER".to_string())]
    );
}

#[test]
fn wrong_credentials_fail_after_one_retry_and_are_retried_only_after_the_backoff() {
    let mut ep = endpoint();
    let now = Instant::now();
    let handle = ep.register(now, request()).unwrap();
    let first = one(&mut ep);
    Resp::to(&first, 401, "Unauthorized")
        .tag("r")
        .header(CHALLENGE)
        .send(&mut ep, now);
    let second = one(&mut ep);
    Resp::to(&second, 401, "Unauthorized")
        .tag("r")
        .header(&CHALLENGE.replace("n-1", "n-2"))
        .send(&mut ep, now);
    assert!(drain(&mut ep).is_empty(), "no third REGISTER: no loop");
    let status = statuses(&mut ep);
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, RegistrationState::Failed);
    let (code, reason) = status[0].last_error.clone().unwrap();
    assert_eq!(code, 401);
    assert!(reason.contains("credentials refused"), "{reason}");
    assert_eq!(
        ep.registration(handle).unwrap().next_attempt,
        Some(now + Duration::from_secs(1))
    );
    // The next round, after the backoff, may answer a challenge again.
    let sent = run_until(&mut ep, now, Duration::from_secs(1));
    assert_eq!(sent.len(), 1);
    let (at, third) = &sent[0];
    Resp::to(third, 401, "Unauthorized")
        .tag("r")
        .header(&CHALLENGE.replace("n-1", "n-3"))
        .send(&mut ep, now + *at);
    assert_eq!(one(&mut ep).method(), "REGISTER");
}

#[test]
fn a_registrar_that_never_answers_is_retried_with_exponential_backoff() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.attempt_timeout = Duration::from_secs(1);
    ep.register(now, r).unwrap();
    let first = one(&mut ep);
    let mut cseqs = vec![(Duration::ZERO, first.cseq().0)];
    for (at, sent) in run_until(&mut ep, now, Duration::from_secs(40)) {
        assert_eq!(sent.method(), "REGISTER");
        if cseqs.last().unwrap().1 != sent.cseq().0 {
            cseqs.push((at, sent.cseq().0));
        }
    }
    // Each attempt waits 1 s for an answer (retransmitted at 0.5 s), then 1, 2, 4, 8, 16 s.
    let starts: Vec<u64> = cseqs.iter().map(|(at, _)| at.as_millis() as u64).collect();
    assert_eq!(starts, [0, 2000, 5000, 10000, 19000, 36000]);
    let failed = statuses(&mut ep);
    assert!(
        failed
            .iter()
            .all(|s| s.state == RegistrationState::Failed
                || s.state == RegistrationState::Registering)
    );
    let last = failed
        .iter()
        .rev()
        .find(|s| s.state == RegistrationState::Failed)
        .unwrap();
    assert_eq!(last.last_error.as_ref().unwrap().0, 408);
    assert_eq!(
        last.failures, 6,
        "the sixth attempt, at 36 s, went unanswered by 37 s"
    );
}

#[test]
fn an_unanswered_destination_fails_over_to_the_next() {
    let mut ep = endpoint();
    let now = Instant::now();
    let backup: SocketAddr = "198.51.100.8:5060".parse().unwrap();
    let mut r = request();
    r.destinations = vec![peer(), backup];
    r.attempt_timeout = Duration::from_secs(2);
    ep.register(now, r).unwrap();
    assert_eq!(one(&mut ep).to, peer());
    let sent = run_until(&mut ep, now, Duration::from_secs(2));
    let (at, last) = sent.last().unwrap();
    assert_eq!(
        (*at, last.to),
        (Duration::from_secs(2), backup),
        "the backup at once when the first is silent"
    );
    Resp::to(last, 200, "OK")
        .tag("b")
        .header("Expires: 120")
        .send(&mut ep, now + *at);
    let status = statuses(&mut ep);
    assert_eq!(
        (status[0].state, status[0].destination),
        (RegistrationState::Registered, backup)
    );
}

#[test]
fn interval_too_brief_is_retried_with_the_min_expires_asked() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.expires = Duration::from_secs(30);
    ep.register(now, r).unwrap();
    let first = one(&mut ep);
    Resp::to(&first, 423, "Interval Too Brief")
        .tag("r")
        .header("Min-Expires: 90")
        .send(&mut ep, now);
    let second = one(&mut ep);
    assert_eq!(second.header("Expires").as_deref(), Some("90"));
}

#[test]
fn unregister_sends_expires_zero_and_forgets_the_registration() {
    let mut ep = endpoint();
    let now = Instant::now();
    let (handle, _) = registered(&mut ep, now, 60);
    statuses(&mut ep);
    ep.unregister(now, handle).unwrap();
    let bye = one(&mut ep);
    assert_eq!(bye.method(), "REGISTER");
    assert_eq!(bye.header("Expires").as_deref(), Some("0"));
    assert!(
        bye.header("Authorization").is_some(),
        "the credentials go along"
    );
    assert_eq!(states(&mut ep), [RegistrationState::Unregistering]);
    Resp::to(&bye, 200, "OK").tag("reg").send(&mut ep, now);
    assert_eq!(states(&mut ep), [RegistrationState::Unregistered]);
    assert!(ep.registration(handle).is_none());
    assert_eq!(ep.registration_count(), 0);
    assert!(ep.poll_timeout().is_none(), "no refresh left behind");
    assert!(ep.unregister(now, handle).is_err());

    // Never registered (refused): nothing to remove, nothing sent.
    let handle = ep.register(now, request()).unwrap();
    let first = one(&mut ep);
    Resp::to(&first, 403, "Forbidden")
        .tag("r")
        .send(&mut ep, now);
    assert_eq!(states(&mut ep), [RegistrationState::Failed]);
    ep.unregister(now, handle).unwrap();
    assert!(drain(&mut ep).is_empty());
    assert_eq!(states(&mut ep), [RegistrationState::Unregistered]);
}

#[test]
fn bad_requests_are_refused_before_anything_is_sent() {
    let mut ep = endpoint();
    let now = Instant::now();
    let mut r = request();
    r.aor = "tel:+1555".into();
    assert!(ep.register(now, r).is_err());
    let mut r = request();
    r.destinations.clear();
    assert!(ep.register(now, r).is_err());
    assert!(drain(&mut ep).is_empty());
}
