//! `--twilio-auth-token`: `GET /v1/twilio/media-stream` takes only Twilio's
//! signed upgrades. The signature is computed here from Twilio's documented
//! algorithm (HMAC-SHA1 of the URL it requested, keyed with the auth token,
//! base64) for the public URL voxline is told it is reached at; a missing or
//! wrong one gets 403, a right one upgrades and the stream becomes a call.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::server::Server;
use common::slots::shared_slot;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

const TOKEN: &str = "b7c4e1f0a9d8c7b6a5f4e3d2c1b0a9f8";
const PUBLIC: &str = "https://voice.example.com";

/// Twilio's signature of a GET (no POST parameters): the URL alone.
fn twilio_signature(token: &str, url: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Opens the stream with `signature`; the HTTP status of a refusal, or the socket.
fn open(server: &Server, signature: Option<&str>) -> Result<tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>, u16> {
    let mut request = format!("ws://{}/v1/twilio/media-stream", server.http).into_client_request().unwrap();
    if let Some(s) = signature {
        request.headers_mut().insert("X-Twilio-Signature", s.parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connecting to the media stream: {e}"),
    }
}

#[test]
fn only_streams_signed_with_the_auth_token_for_the_public_url_are_taken() {
    let _slot = shared_slot();
    let server = Server::start(&["--greeting", "", "--twilio-auth-token", TOKEN, "--public-url", PUBLIC]);
    // The URL Twilio was given in <Stream url="...">, which it signs.
    let signed_url = "wss://voice.example.com/v1/twilio/media-stream";

    assert_eq!(open(&server, None).err(), Some(403), "no signature");
    assert_eq!(open(&server, Some(&twilio_signature("another-token", signed_url))).err(), Some(403), "another account's token");
    let elsewhere = twilio_signature(TOKEN, "wss://attacker.example.com/v1/twilio/media-stream");
    assert_eq!(open(&server, Some(&elsewhere)).err(), Some(403), "a signature for another URL");
    assert_eq!(open(&server, Some("garbage")).err(), Some(403));
    assert!(server.stderr().contains("X-Twilio-Signature"), "the log says why: {}", server.stderr());

    let mut ws = open(&server, Some(&twilio_signature(TOKEN, signed_url))).expect("a signed stream is taken");
    let call_sid = "CA5f0e3b2a1c9d8e7f6a5b4c3d2e1f0a9b";
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ00000000000000000000000000000001",
        "start": {"streamSid": "MZ00000000000000000000000000000001", "accountSid": "AC00000000000000000000000000000001", "callSid": call_sid,
                  "tracks": ["inbound"], "customParameters": {}, "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    ws.send(Message::text(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string())).unwrap();
    ws.send(Message::text(start.to_string())).unwrap();
    server.wait_for_call(call_sid, Duration::from_secs(5), |c| c.state == "active");
}
