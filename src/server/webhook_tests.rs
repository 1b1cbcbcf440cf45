use super::*;

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Bytes as AxumBytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::json;

fn header(headers: &HeaderMap, name: &str) -> serde_json::Value {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(serde_json::Value::Null, |v| json!(v))
}

/// Echoes what arrived, as a decision.
async fn decide(headers: HeaderMap, uri: Uri, body: AxumBytes) -> impl IntoResponse {
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(json!(null));
    axum::Json(json!({
        "action": "answer",
        "path_and_query": uri.path_and_query().map(|pq| pq.as_str()),
        "content_type": header(&headers, "content-type"),
        "authorization": header(&headers, "authorization"),
        "user_agent": header(&headers, "user-agent"),
        "host": header(&headers, "host"),
        "body": body,
    }))
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/decide", post(decide))
        .route("/hooks/decide", post(decide))
        .route("/nocontent", post(|| async { AxumStatus::NO_CONTENT }))
        .route("/empty", post(|| async { AxumStatus::OK }))
        .route("/blank", post(|| async { " \r\n" }))
        .route(
            "/fail",
            post(|| async { (AxumStatus::INTERNAL_SERVER_ERROR, "{\"oops\":1}") }),
        )
        .route("/garbage", post(|| async { "this is { not json" }))
        .route(
            "/big",
            post(|| async { format!("\"{}\"", "x".repeat(MAX_RESPONSE_BYTES)) }),
        )
        .route("/redirect", post(|| async { (AxumStatus::FOUND, [("location", "/decide")]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn returns_the_json_decision_and_sends_the_right_request() {
    let addr = server().await;
    let hook = Webhook::new(&format!("http://{addr}/hooks/decide?call=abc&x=1#frag")).unwrap();
    let event = json!({"event": "incoming_call", "from": "sip:alice@example.com"});
    let answer = hook.post(&event, Some("s3cret"), TIMEOUT).await.unwrap().unwrap();
    assert_eq!(answer["action"], "answer");
    assert_eq!(answer["path_and_query"], "/hooks/decide?call=abc&x=1");
    assert_eq!(answer["content_type"], "application/json");
    assert_eq!(answer["authorization"], "Bearer s3cret");
    assert_eq!(answer["user_agent"], USER_AGENT);
    assert_eq!(answer["host"], addr.to_string());
    assert_eq!(answer["body"], event);

    // No bearer: no Authorization header.
    let answer = hook.post(&event, None, TIMEOUT).await.unwrap().unwrap();
    assert_eq!(answer["authorization"], serde_json::Value::Null);
}

#[tokio::test]
async fn resolves_dns_names() {
    let addr = server().await;
    let hook = Webhook::new(&format!("http://localhost:{}/decide", addr.port())).unwrap();
    let answer = hook.post(&json!({}), None, TIMEOUT).await.unwrap().unwrap();
    assert_eq!(answer["action"], "answer");
    assert_eq!(answer["host"], format!("localhost:{}", addr.port()));
}

#[tokio::test]
async fn ipv6_literal() {
    let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/decide", post(decide));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hook = Webhook::new(&format!("http://[::1]:{}/decide", addr.port())).unwrap();
    let answer = hook.post(&json!({}), None, TIMEOUT).await.unwrap().unwrap();
    assert_eq!(answer["host"], format!("[::1]:{}", addr.port()));
}

#[tokio::test]
async fn no_content_and_empty_bodies_are_none() {
    let addr = server().await;
    for path in ["nocontent", "empty", "blank"] {
        let hook = Webhook::new(&format!("http://{addr}/{path}")).unwrap();
        let answer = hook.post(&json!({}), None, TIMEOUT).await;
        assert!(matches!(answer, Ok(None)), "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn non_2xx_is_a_status_error() {
    let addr = server().await;
    let hook = Webhook::new(&format!("http://{addr}/fail")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Status(500)), "{err:?}");
    assert!(err.to_string().contains("500"));

    let hook = Webhook::new(&format!("http://{addr}/redirect")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Status(302)), "{err:?}");

    let hook = Webhook::new(&format!("http://{addr}/no/such/route")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Status(404)), "{err:?}");
}

#[tokio::test]
async fn bad_bodies_are_body_errors() {
    let addr = server().await;
    let hook = Webhook::new(&format!("http://{addr}/garbage")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Body(_)), "{err:?}");

    let hook = Webhook::new(&format!("http://{addr}/big")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Body(_)), "{err:?}");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn silent_server_times_out_within_the_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept, read nothing, answer nothing, keep the sockets open.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let hook = Webhook::new(&format!("http://{addr}/")).unwrap();
    let bound = Duration::from_millis(300);
    let start = Instant::now();
    let err = hook.post(&json!({}), None, bound).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, WebhookError::Timeout), "{err:?}");
    assert!(elapsed >= bound, "{elapsed:?}");
    assert!(elapsed < bound + Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn server_closing_without_answer_is_an_http_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let hook = Webhook::new(&format!("http://{addr}/")).unwrap();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Http(_)), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_a_quick_connect_error() {
    // A port that was just free and is now closed.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let hook = Webhook::new(&format!("http://{addr}/")).unwrap();
    let start = Instant::now();
    let err = hook.post(&json!({}), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Connect(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn bad_bearer_token_is_refused_before_connecting() {
    let hook = Webhook::new("http://127.0.0.1:1/").unwrap();
    let err = hook.post(&json!({}), Some("bad\ntoken"), TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WebhookError::Request(_)), "{err:?}");
}

#[test]
fn https_is_unsupported() {
    for url in ["https://agent.example.com/hook", "HTTPS://10.0.0.1:8443/"] {
        let err = Webhook::new(url).unwrap_err();
        assert!(matches!(err, WebhookError::Unsupported(_)), "{url}: {err:?}");
        assert!(err.to_string().contains("TLS-terminating proxy"));
    }
}

#[test]
fn malformed_urls_are_invalid() {
    for url in [
        "",
        "   ",
        "localhost:8080/hook",
        "ftp://example.com/",
        "http:/example.com/",
        "http://",
        "http:///path",
        "http://:8080/",
        "http://example.com:/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:+80/",
        "http://example.com:http/",
        "http://user:pw@example.com/",
        "http://::1/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[not-ipv6]/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/\u{7f}",
        "http://exa%6dple.com/",
        "http://.example.com/",
    ] {
        let err = Webhook::new(url).unwrap_err();
        assert!(matches!(err, WebhookError::InvalidUrl(_)), "{url:?}: {err:?}");
    }
}

#[test]
fn parses_hosts_ports_and_targets() {
    let cases = [
        ("http://example.com", "example.com", 80, "example.com", "/"),
        ("  http://example.com/  ", "example.com", 80, "example.com", "/"),
        ("HTTP://Agent.local:8080?x=1", "Agent.local", 8080, "Agent.local:8080", "/?x=1"),
        ("http://10.0.0.7:80/a/b?c=d#e", "10.0.0.7", 80, "10.0.0.7", "/a/b?c=d"),
        ("http://[::1]:8080/hook", "::1", 8080, "[::1]:8080", "/hook"),
        ("http://[2001:db8::1]/x#y", "2001:db8::1", 80, "[2001:db8::1]", "/x"),
        ("http://h_1-a/p%20q", "h_1-a", 80, "h_1-a", "/p%20q"),
    ];
    for (url, host, port, authority, target) in cases {
        let hook = Webhook::new(url).unwrap();
        assert_eq!(hook.url(), url.trim());
        assert_eq!(hook.host, host, "{url}");
        assert_eq!(hook.port, port, "{url}");
        assert_eq!(hook.authority, authority, "{url}");
        assert_eq!(hook.path_and_query.as_str(), target, "{url}");
    }
}
