//! A small HTTP/1 webhook client: announces an event (an incoming call) to an
//! agent's endpoint as a JSON POST and reads its JSON decision back.
//!
//! One TCP connection per request, which is simple and cheap at call-setup
//! rates. Plain `http` only: there is no TLS stack in voxline, so `https`
//! endpoints are refused with a hint to put a TLS-terminating proxy in front.
//! Every exchange (resolve, connect, send, read) is bounded by one timeout and
//! the response body by [`MAX_RESPONSE_BYTES`].

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The most response body read from a webhook; a larger one is an error.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

const USER_AGENT: &str = concat!("voxline/", env!("CARGO_PKG_VERSION"));

/// Why a webhook could not be configured or did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL could not be parsed, or uses something not supported.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// A well-formed URL this client cannot use (`https`).
    #[error("{0}")]
    Unsupported(String),
    /// The request could not be built (e.g. a bearer token that is not a
    /// valid header value).
    #[error("could not build the webhook request: {0}")]
    Request(String),
    /// Resolving the host or opening the TCP connection failed.
    #[error("could not connect to the webhook: {0}")]
    Connect(#[source] std::io::Error),
    /// The whole exchange did not finish within the timeout.
    #[error("the webhook did not answer in time")]
    Timeout,
    /// The HTTP exchange failed (connection closed early, malformed
    /// response, ...).
    #[error("webhook HTTP error: {0}")]
    Http(#[source] hyper::Error),
    /// The webhook answered with a status other than 2xx.
    #[error("the webhook answered with HTTP status {0}")]
    Status(u16),
    /// A 2xx answer whose body is too large or not JSON.
    #[error("unusable webhook response body: {0}")]
    Body(String),
}

/// A parsed `http://` webhook endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The URL as configured (surrounding whitespace trimmed).
    url: String,
    /// What to connect to: a DNS name or an IP literal, without brackets.
    host: String,
    port: u16,
    /// The `Host` header: the host as written (brackets kept), with the port
    /// unless it is 80.
    authority: String,
    /// The request target: path and query, never empty, no fragment.
    path_and_query: PathAndQuery,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Webhook").field(&self.url).finish()
    }
}

impl Webhook {
    /// Parses `http://host[:port][/path][?query][#fragment]`. The host may be
    /// an IPv4 address, a bracketed IPv6 address or a DNS name. Credentials in
    /// the URL are refused (use the bearer token), and so is `https`.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        let url = url.trim();
        let invalid = |why: &str| WebhookError::InvalidUrl(format!("{why}: {url:?}"));

        if url.is_empty() {
            return Err(WebhookError::InvalidUrl("empty URL".into()));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("whitespace or control characters"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid("expected http://host[:port]/path"));
        };
        if scheme.eq_ignore_ascii_case("https") {
            return Err(WebhookError::Unsupported(
                "https webhooks are not supported yet: put a TLS-terminating proxy in \
                 front, or use http on a private network"
                    .into(),
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(invalid("only http:// URLs are supported"));
        }

        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported (use a bearer token)",
            ));
        }

        let (host, host_written, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((inside, after)) = bracketed.split_once(']') else {
                return Err(invalid("unterminated [IPv6] address"));
            };
            if inside.parse::<Ipv6Addr>().is_err() {
                return Err(invalid("bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return Err(invalid("unexpected text after the IPv6 address")),
                },
            };
            (inside, &authority[..inside.len() + 2], port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err(invalid("IPv6 addresses must be in brackets"));
            }
            if host.is_empty() {
                return Err(invalid("missing host"));
            }
            let host_ok = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !host_ok || host.starts_with(['.', '-']) {
                return Err(invalid("bad host name"));
            }
            (host, host, port)
        };

        let port = match port {
            None => 80,
            // Digits only (`u16::from_str` would also take a leading '+').
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(p) if p != 0 => p,
                    _ => return Err(invalid("bad port")),
                }
            }
            Some(_) => return Err(invalid("bad port")),
        };

        // Drop the fragment; an empty path is "/".
        let target = target.split_once('#').map_or(target, |(t, _)| t);
        let target = if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("/{target}")
        };
        let path_and_query = PathAndQuery::try_from(target.as_str())
            .map_err(|e| invalid(&format!("bad path or query ({e})")))?;

        let authority = if port == 80 {
            host_written.to_owned()
        } else {
            format!("{host_written}:{port}")
        };
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            authority,
            path_and_query,
        })
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` as `application/json` (with `Authorization: Bearer
    /// <token>` when `bearer` is given) and returns the response's JSON body:
    /// `Ok(None)` for 204 or a 2xx with an empty body, `Err(Status)` for any
    /// other status, `Err(Body)` for a 2xx body that is not JSON or is larger
    /// than [`MAX_RESPONSE_BYTES`]. Redirects are not followed. The whole
    /// exchange is bounded by `timeout`.
    pub async fn post(
        &self,
        body: &impl serde::Serialize,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>, WebhookError> {
        let request = self.request(body, bearer)?;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .unwrap_or(Err(WebhookError::Timeout))
    }

    fn request(
        &self,
        body: &impl serde::Serialize,
        bearer: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, WebhookError> {
        let body = serde_json::to_vec(body).map_err(|e| WebhookError::Request(e.to_string()))?;
        let host = HeaderValue::from_str(&self.authority)
            .map_err(|e| WebhookError::Request(format!("bad Host header: {e}")))?;
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.path_and_query.clone())
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::CONNECTION, "close");
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                WebhookError::Request("the bearer token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WebhookError::Request(e.to_string()))
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Option<serde_json::Value>, WebhookError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(WebhookError::Connect)?;
        // Small requests and answers: don't wait on Nagle.
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(WebhookError::Http)?;

        let response = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(WebhookError::Http)?;
            let status = response.status();
            if !status.is_success() {
                return Err(WebhookError::Status(status.as_u16()));
            }
            if status == StatusCode::NO_CONTENT {
                return Ok(None);
            }
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(WebhookError::Http)?;
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > MAX_RESPONSE_BYTES {
                        return Err(WebhookError::Body(format!(
                            "larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| WebhookError::Body(format!("not JSON: {e}")))
        };

        // Drive the connection in this task rather than spawning it, so that
        // a timeout (dropping this future) also closes the socket.
        tokio::pin!(response, conn);
        let mut conn_done = false;
        loop {
            tokio::select! {
                // The response first: when it is complete, a late error on
                // the connection does not matter.
                biased;
                result = &mut response => return result,
                result = &mut conn, if !conn_done => {
                    conn_done = true;
                    // A failed connection fails the pending response too;
                    // report it directly. On a clean close, the response
                    // already has everything it needs.
                    result.map_err(WebhookError::Http)?;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "webhook_tests.rs"]
mod tests;
