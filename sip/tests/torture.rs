//! RFC 4475 torture messages, fed one by one to a fresh endpoint.
//!
//! The fixtures in `tests/torture/*.sip` are typed from RFC 4475 section 3 in its own notation:
//! lines end in LF in the file and become CRLF (section 2: every line of a message ends in
//! CRLF), `<allOneLine>...</allOneLine>` joins the enclosed lines (2.1), and `<hex>..</hex>`
//! stands for the octets it spells (2.2). `mpart01`: the RFC's binary S/MIME body part is not
//! reproduced; a stand-in of the same length, containing NUL, CR and LF octets, keeps the
//! Content-Length of 553 and the framing problem the test is about.
//!
//! What we answer, and why:
//!
//! | message    | RFC 4475 | answer            | why |
//! |------------|----------|-------------------|-----|
//! | wsinv      | 3.1.1.1  | 481               | well formed (folding, LWS, compact forms, escapes all parse); but its To has a tag, so it is an in-dialog INVITE for a dialog we do not have. Without the tag it is a call (tested below). |
//! | intmeth    | 3.1.1.2  | 405 + Allow       | unknown method; the RFC suggests 501 for endpoints, we answer every method we do not implement with 405 and an Allow list |
//! | esc01      | 3.1.1.3  | 100 + call        | valid INVITE with escapes in URIs |
//! | escnull    | 3.1.1.4  | 405               | valid REGISTER; we are not a registrar |
//! | esc02      | 3.1.1.5  | 405               | `RE%47IST%45R` is an unknown method, not REGISTER |
//! | lwsdisp    | 3.1.1.6  | 200               | OPTIONS; `caller<sip:...>` accepted as the RFC asks |
//! | longreq    | 3.1.1.7  | 100 + call        | valid INVITE: 34 Vias in every spelling, long values |
//! | dblreq     | 3.1.1.8  | 405, once         | the REGISTER is answered; the INVITE after its Content-Length is ignored (RFC 3261 18.3) |
//! | semiuri    | 3.1.1.9  | 200               | OPTIONS; `;` and escaped `@` in the user part |
//! | transports | 3.1.1.10 | 200               | OPTIONS; unknown transports in lower Vias |
//! | mpart01    | 3.1.1.11 | 405               | MESSAGE; the binary multipart body is framed by Content-Length |
//! | unreason   | 3.1.1.12 | dropped           | a response matching no transaction of ours |
//! | noreason   | 3.1.1.13 | dropped           | a response matching no transaction of ours |
//! | badinv01   | 3.1.2.1  | 400               | empty Via and Contact parameters |
//! | clerr      | 3.1.2.2  | 400               | Content-Length larger than the datagram |
//! | ncl        | 3.1.2.3  | 400               | negative Content-Length: not a number |
//! | scalar02   | 3.1.2.4  | 400               | CSeq above 2^32-1 |
//! | scalarlg   | 3.1.2.5  | dropped           | a response: discarded |
//! | quotbal    | 3.1.2.6  | 400               | unterminated quote in To |
//! | ltgtruri   | 3.1.2.7  | 400               | Request-URI in `<>` |
//! | lwsruri    | 3.1.2.8  | 400               | LWS inside the Request-URI |
//! | lwsstart   | 3.1.2.9  | 400               | several SPs in the request line |
//! | trws       | 3.1.2.10 | 400               | SPs after SIP-Version |
//! | escruri    | 3.1.2.11 | 400               | headers in the Request-URI |
//! | baddate    | 3.1.2.12 | 100 + call        | non-GMT Date; the RFC asks not to reject unless Date matters, and we ignore Date |
//! | regbadct   | 3.1.2.13 | 400               | Contact URI with `?` outside `<>` |
//! | badaspec   | 3.1.2.14 | 400               | spaces inside `< ... >` in To |
//! | baddn      | 3.1.2.15 | 400               | unquoted display names with commas |
//! | badvers    | 3.1.2.16 | 505               | SIP/7.0 |
//! | mismatch01 | 3.1.2.17 | 400               | CSeq method differs from the request method |
//! | mismatch02 | 3.1.2.18 | 400               | unknown method and a different CSeq method; the RFC allows 400 (or 501) |
//! | bigcode    | 3.1.2.19 | dropped           | status code 4294967301: not a status line |
//! | badbranch  | 3.2.1    | 400               | branch is only `z9hG4bK`; the RFC allows a stateless 400 |
//! | insuf      | 3.3.1    | 400               | no Call-ID, From or To; answered with the Via and CSeq it has, which is what a client matches on |
//! | unkscm     | 3.3.2    | 416               | Request-URI scheme we do not support |
//! | novelsc    | 3.3.3    | 416               | likewise (`soap.beep:`) |
//! | unksm2     | 3.3.4    | 405               | REGISTER (the unknown schemes in To/From/Contact parse) |
//! | bext01     | 3.3.5    | 420 + Unsupported | both Require tags listed; Proxy-Require is for proxies |
//! | invut      | 3.3.6    | 415 + Accept      | INVITE body type we cannot read |
//! | regaut01   | 3.3.7    | 405               | REGISTER; the unknown auth scheme does not matter to us |
//! | multi01    | 3.3.8    | 400               | several From/To/Call-ID/CSeq/Max-Forwards |
//! | mcl01      | 3.3.9    | 400               | two Content-Length headers |
//! | bcast      | 3.3.10   | dropped           | a response |
//! | zeromf     | 3.3.11   | 483               | OPTIONS with Max-Forwards 0 |
//! | cparam01   | 3.3.12   | 405               | REGISTER; `;unknownparam` is a Contact parameter, valid |
//! | cparam02   | 3.3.13   | 405               | REGISTER |
//! | regescrt   | 3.3.14   | 405               | REGISTER; an escaped header inside `<>` is valid |
//! | sdp01      | 3.3.15   | 406               | Accept excludes application/sdp, which our answer must be |
//! | inv2543    | 3.4.1    | 100 + call        | RFC 2543 INVITE: no branch, no From tag, no Content-Length, no Max-Forwards, no Contact |
//!
//! rsip's own parser would reject several valid messages here (unknown methods in intmeth,
//! esc02; folding in wsinv; `Via  :` in longreq); we frame and parse received messages
//! ourselves (see `message/mod.rs`) and use rsip to print, and below, to check that every
//! response we send parses.

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use voxline_sip::{Endpoint, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 100 Trying and an IncomingCall event.
    Call,
    /// Exactly one response with this status, no event.
    Status(u16),
    /// Nothing sent, counted as dropped.
    Dropped,
}

use Expect::*;

const TABLE: &[(&str, Expect)] = &[
    ("wsinv", Status(481)),
    ("intmeth", Status(405)),
    ("esc01", Call),
    ("escnull", Status(405)),
    ("esc02", Status(405)),
    ("lwsdisp", Status(200)),
    ("longreq", Call),
    ("dblreq", Status(405)),
    ("semiuri", Status(200)),
    ("transports", Status(200)),
    ("mpart01", Status(405)),
    ("unreason", Dropped),
    ("noreason", Dropped),
    ("badinv01", Status(400)),
    ("clerr", Status(400)),
    ("ncl", Status(400)),
    ("scalar02", Status(400)),
    ("scalarlg", Dropped),
    ("quotbal", Status(400)),
    ("ltgtruri", Status(400)),
    ("lwsruri", Status(400)),
    ("lwsstart", Status(400)),
    ("trws", Status(400)),
    ("escruri", Status(400)),
    ("baddate", Call),
    ("regbadct", Status(400)),
    ("badaspec", Status(400)),
    ("baddn", Status(400)),
    ("badvers", Status(505)),
    ("mismatch01", Status(400)),
    ("mismatch02", Status(400)),
    ("bigcode", Dropped),
    ("badbranch", Status(400)),
    ("insuf", Status(400)),
    ("unkscm", Status(416)),
    ("novelsc", Status(416)),
    ("unksm2", Status(405)),
    ("bext01", Status(420)),
    ("invut", Status(415)),
    ("regaut01", Status(405)),
    ("multi01", Status(400)),
    ("mcl01", Status(400)),
    ("bcast", Dropped),
    ("zeromf", Status(483)),
    ("cparam01", Status(405)),
    ("cparam02", Status(405)),
    ("regescrt", Status(405)),
    ("sdp01", Status(406)),
    ("inv2543", Call),
];

const SOURCE: &str = "192.0.2.99:5060";

/// Reads a fixture in RFC 4475 notation into the octets of the message.
pub fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/torture/{name}.sip", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // <allOneLine>: the enclosed lines form one line.
    let mut joined = String::new();
    let mut in_one_line = false;
    for line in text.split_inclusive('\n') {
        match line.trim_end_matches('\n') {
            "<allOneLine>" => in_one_line = true,
            "</allOneLine>" => {
                in_one_line = false;
                joined.push('\n');
            }
            content if in_one_line => joined.push_str(content),
            _ => joined.push_str(line),
        }
    }
    // Every line ends in CRLF.
    let crlf = joined.replace('\n', "\r\n");
    // <hex>...</hex> spells octets.
    let mut out = Vec::new();
    let mut rest = crlf.as_str();
    while let Some(start) = rest.find("<hex>") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 5..];
        let end = after.find("</hex>").expect("unterminated <hex>");
        let digits: Vec<char> = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for pair in digits.chunks(2) {
            let s: String = pair.iter().collect();
            out.push(u8::from_str_radix(&s, 16).expect("hex digits"));
        }
        rest = &after[end + 6..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

fn run(name: &str, data: &[u8]) -> (Endpoint, Vec<common::Sent>, Vec<Event>) {
    let mut ep = Endpoint::with_seed(common::config(), 4475);
    let source: SocketAddr = SOURCE.parse().unwrap();
    ep.handle_datagram(Instant::now(), source, data);
    let sent: Vec<common::Sent> = std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| common::Sent {
            to: t.destination,
            text: String::from_utf8(t.payload)
                .unwrap_or_else(|_| panic!("{name}: we sent non-UTF-8")),
        })
        .collect();
    let events = common::events(&mut ep);
    (ep, sent, events)
}

#[test]
fn every_torture_message_gets_the_answer_in_the_table() {
    let dir = format!("{}/tests/torture", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".sip")
                .to_string()
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every fixture has a row in the table and every row a fixture"
    );

    let mut failures = Vec::new();
    for (name, expect) in TABLE {
        let data = load(name);
        let (ep, sent, events) = run(name, &data);
        let got = match (sent.as_slice(), events.as_slice()) {
            ([], []) if ep.stats().dropped == 1 => Dropped,
            ([trying], [Event::IncomingCall { .. }]) if trying.status() == 100 => Call,
            ([response], []) => Status(response.status()),
            _ => {
                failures.push(format!("{name}: sent {sent:#?} events {events:?}"));
                continue;
            }
        };
        if got != *expect {
            failures.push(format!(
                "{name}: expected {expect:?}, got {got:?}: {:?}",
                sent.first().map(|s| s.first_line().to_string())
            ));
            continue;
        }
        for s in &sent {
            rsip::SipMessage::try_from(s.text.as_str()).unwrap_or_else(|e| {
                panic!("{name}: rsip cannot parse our answer ({e}):\n{}", s.text)
            });
            assert!(
                s.header("Via").is_some() && s.header("CSeq").is_some(),
                "{name}:\n{}",
                s.text
            );
            if *name != "insuf" {
                common::check_well_formed(s);
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_fixture_loader_reproduces_the_rfc_octets() {
    // Content-Length values in the RFC match the bodies we load.
    for name in [
        "wsinv", "esc01", "longreq", "unreason", "mpart01", "invut", "multi01",
    ] {
        let data = load(name);
        let text = String::from_utf8_lossy(&data);
        let cl = text
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case("content-length") || n == "l")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap();
        let sep = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert_eq!(data.len() - sep - 4, cl, "{name}");
    }
    let intmeth = load("intmeth");
    assert!(
        intmeth.windows(3).any(|w| w == b"\\\x00 "),
        "NUL in the quoted display name"
    );
}

#[test]
fn valid_invites_are_parsed_into_the_event() {
    let (_, _, events) = run("esc01", &load("esc01"));
    let [Event::IncomingCall {
        call_id,
        request_uri,
        offer,
        ..
    }] = events.as_slice()
    else {
        panic!()
    };
    assert_eq!(call_id, "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(request_uri, "sip:sips%3Auser%40example.com@example.net");
    assert!(offer.as_deref().unwrap().starts_with("v=0\r\n"));

    let (_, sent, events) = run("inv2543", &load("inv2543"));
    assert_eq!(sent[0].to, "192.0.2.99:5060".parse().unwrap());
    assert!(sent[0]
        .header("Via")
        .unwrap()
        .ends_with(";received=192.0.2.99"));
    let [Event::IncomingCall { offer, .. }] = events.as_slice() else {
        panic!()
    };
    assert!(
        offer
            .as_deref()
            .unwrap()
            .ends_with("m=audio 49217 RTP/AVP 0\r\n"),
        "body to the end of the datagram"
    );
}

#[test]
fn wsinv_without_its_to_tag_is_a_call() {
    let data = String::from_utf8(load("wsinv"))
        .unwrap()
        .replace(";   tag    = 1918181833n", "");
    let (_, sent, events) = run("wsinv", data.as_bytes());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 100);
    // The response carries the three Vias; the top one with received added.
    assert_eq!(
        sent[0].headers("Via"),
        vec![
            "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw;received=192.0.2.99",
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8",
            "SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        ]
    );
    assert_eq!(sent[0].header("CSeq").unwrap(), "0009 INVITE");
    let [Event::IncomingCall { from, offer, .. }] = events.as_slice() else {
        panic!()
    };
    assert_eq!(
        from,
        "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8"
    );
    assert_eq!(offer.as_deref().map(str::len), Some(150));
}

#[test]
fn bext01_lists_both_unsupported_extensions() {
    let (_, sent, _) = run("bext01", &load("bext01"));
    assert_eq!(
        sent[0].header("Unsupported").unwrap(),
        "nothingSupportsThis, nothingSupportsThisEither"
    );
}

#[test]
fn insuf_answer_carries_what_the_request_had() {
    let (_, sent, _) = run("insuf", &load("insuf"));
    assert_eq!(sent[0].reason(), "Bad Request - missing From header");
    assert_eq!(sent[0].header("CSeq").unwrap(), "193942 INVITE");
    assert!(sent[0].header("Call-ID").is_none());
}
