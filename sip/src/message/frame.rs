//! Splitting a datagram into start line, headers and body (RFC 3261 7, 7.3.1, 18.3).
//!
//! The framer is liberal where RFC 3261 asks receivers to be (folded lines, LWS around the
//! colon, compact names, any header order) and records the first thing that makes the request
//! invalid as a *defect* instead of failing, so that the user agent can still answer
//! `400 Bad Request` with a reason. Only input that is not recognisably a SIP message at all is
//! refused outright.

use super::fields;
use super::grammar;
use super::headers::Headers;
use super::method::Method;

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: String,
        /// SIP-Version as written, e.g. `SIP/2.0`.
        version: String,
    },
    Response {
        code: u16,
        reason: String,
    },
}

/// A framed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub start: StartLine,
    pub headers: Headers,
    /// The body, cut to Content-Length; octets after it are ignored (RFC 3261 18.3).
    pub body: Vec<u8>,
    /// The first framing problem found; a request with a defect gets `400` with this reason.
    pub defect: Option<&'static str>,
}

/// Why a datagram is not a SIP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Only line breaks or spaces (a keep-alive).
    KeepAlive,
    /// Not recognisable as a SIP request or response.
    Garbage(&'static str),
}

const CRLF: &[u8] = b"\r\n";

/// Frames one datagram.
pub(crate) fn frame(data: &[u8]) -> Result<Frame, FrameError> {
    if data
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
    {
        return Err(FrameError::KeepAlive);
    }
    let line_end = find(data, CRLF, 0).ok_or(FrameError::Garbage("no line break"))?;
    // A start line that is not UTF-8 (a Request-URI with raw octets) is read
    // lossily, so the request is still recognised and answered 400.
    let (line, not_utf8) = match std::str::from_utf8(&data[..line_end]) {
        Ok(line) => (std::borrow::Cow::Borrowed(line), false),
        Err(_) => (String::from_utf8_lossy(&data[..line_end]), true),
    };
    let (start, mut defect) = start_line(&line)?;
    if not_utf8 {
        defect.get_or_insert("start line is not UTF-8");
    }

    let (header_bytes, rest) = match find(data, b"\r\n\r\n", line_end) {
        Some(end) => (&data[(line_end + 2).min(end)..end], &data[end + 4..]),
        None => {
            defect.get_or_insert("missing empty line after the headers");
            let block = &data[line_end + 2..];
            (block.strip_suffix(CRLF).unwrap_or(block), &[][..])
        }
    };
    let header_text = match std::str::from_utf8(header_bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => {
            defect.get_or_insert("header section is not valid UTF-8");
            String::from_utf8_lossy(header_bytes)
        }
    };
    let headers = headers(&header_text, &mut defect);
    let body = body(&headers, rest, &mut defect);
    Ok(Frame {
        start,
        headers,
        body,
        defect,
    })
}

fn start_line(line: &str) -> Result<(StartLine, Option<&'static str>), FrameError> {
    if line
        .as_bytes()
        .get(..4)
        .is_some_and(|b| b.eq_ignore_ascii_case(b"SIP/"))
    {
        return status_line(line).map(|s| (s, None));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between elements.
    let parts: Vec<&str> = line.split(' ').collect();
    if let [method, uri, version] = parts[..] {
        if grammar::is_token(method) && !uri.is_empty() && is_version(version) {
            return Ok((request(method, uri, version), None));
        }
    }
    // Liberal reading so that a request with extra white space (RFC 4475 lwsstart, trws,
    // lwsruri) is recognised and answered with 400 rather than dropped.
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        [method, ref middle @ .., version]
            if !middle.is_empty() && grammar::is_token(method) && looks_like_version(version) =>
        {
            let defect = if is_version(version) {
                "malformed Request-Line (white space)"
            } else {
                "malformed SIP-Version"
            };
            Ok((request(method, &middle.join(" "), version), Some(defect)))
        }
        _ => Err(FrameError::Garbage("not a request or status line")),
    }
}

fn request(method: &str, uri: &str, version: &str) -> StartLine {
    StartLine::Request {
        method: Method::from_token(method),
        uri: uri.to_string(),
        version: version.to_string(),
    }
}

/// `SIP/1*DIGIT.1*DIGIT`.
fn is_version(s: &str) -> bool {
    looks_like_version(s)
        && s[4..].split_once('.').is_some_and(|(a, b)| {
            fields::parse_digits(a).is_some() && fields::parse_digits(b).is_some()
        })
}

fn looks_like_version(s: &str) -> bool {
    s.len() > 4
        && s.as_bytes()
            .get(..4)
            .is_some_and(|b| b.eq_ignore_ascii_case(b"SIP/"))
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (the reason may be empty).
fn status_line(line: &str) -> Result<StartLine, FrameError> {
    let garbage = FrameError::Garbage("malformed status line");
    let (version, rest) = line.split_once(' ').ok_or(garbage)?;
    if !is_version(version) || rest.len() < 3 || !rest.is_char_boundary(3) {
        return Err(garbage);
    }
    let (code, reason) = rest.split_at(3);
    let code = fields::parse_digits(code).ok_or(garbage)?;
    if !(100..=699).contains(&code) || !(reason.is_empty() || reason.starts_with(' ')) {
        return Err(garbage);
    }
    let code = u16::try_from(code).map_err(|_| garbage)?;
    Ok(StartLine::Response {
        code,
        reason: reason.trim_start_matches(' ').to_string(),
    })
}

/// Unfolds continuation lines and splits `name: value`.
fn headers(text: &str, defect: &mut Option<&'static str>) -> Headers {
    let mut headers = Headers::default();
    let mut current: Option<(String, String)> = None;
    for raw_line in text.split("\r\n") {
        // A bare CR or LF is not a line end; it must not reach a header value we echo.
        let cleaned;
        let line = if raw_line.contains(['\r', '\n']) {
            defect.get_or_insert("stray CR or LF in a header line");
            cleaned = raw_line.replace(['\r', '\n'], " ");
            cleaned.as_str()
        } else {
            raw_line
        };
        if line.starts_with(grammar::is_wsp) {
            match current.as_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(line.trim_matches(grammar::is_wsp));
                }
                None => {
                    defect.get_or_insert("continuation line before the first header");
                }
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            headers.push(&name, value.trim_matches(grammar::is_wsp).to_string());
        }
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if grammar::is_token(name.trim_end_matches(grammar::is_wsp)) => {
                let name = name.trim_end_matches(grammar::is_wsp).to_string();
                current = Some((name, value.trim_start_matches(grammar::is_wsp).to_string()));
            }
            _ => {
                defect.get_or_insert("malformed header line");
            }
        }
    }
    if let Some((name, value)) = current {
        headers.push(&name, value.trim_matches(grammar::is_wsp).to_string());
    }
    headers
}

/// Applies Content-Length: over UDP a missing length means "the rest of the datagram".
fn body(headers: &Headers, rest: &[u8], defect: &mut Option<&'static str>) -> Vec<u8> {
    match headers.count("Content-Length") {
        0 => rest.to_vec(),
        1 => {
            let value = headers.first("Content-Length").unwrap_or_default();
            match fields::parse_digits(value.trim_matches(grammar::is_wsp)) {
                Some(len) if (len as usize) <= rest.len() => rest[..len as usize].to_vec(),
                Some(_) => {
                    defect.get_or_insert("Content-Length is larger than the datagram");
                    rest.to_vec()
                }
                None => {
                    defect.get_or_insert("Content-Length is not a number");
                    rest.to_vec()
                }
            }
        }
        _ => {
            defect.get_or_insert("more than one Content-Length header");
            rest.to_vec()
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_str(s: &str) -> Result<Frame, FrameError> {
        frame(s.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn unfolds_and_canonicalises() {
        let f =
            frame_str("INVITE sip:a@b SIP/2.0\nTO :\n sip:a@b ;  tag = 1\ni: x\nl: 0\n\n").unwrap();
        assert_eq!(f.defect, None);
        assert_eq!(f.headers.first("To"), Some("sip:a@b ;  tag = 1"));
        assert_eq!(f.headers.first("Call-ID"), Some("x"));
        assert!(f.body.is_empty());
    }

    #[test]
    fn content_length_frames_the_body() {
        let f = frame_str("OPTIONS sip:a@b SIP/2.0\nContent-Length: 3\n\nabcdef").unwrap();
        assert_eq!(f.body, b"abc");
        let f = frame_str("OPTIONS sip:a@b SIP/2.0\nContent-Length: 9999\n\nabc").unwrap();
        assert_eq!(f.defect, Some("Content-Length is larger than the datagram"));
        let f = frame_str("OPTIONS sip:a@b SIP/2.0\nContent-Length: -999\n\nabc").unwrap();
        assert_eq!(f.defect, Some("Content-Length is not a number"));
        let f = frame_str("OPTIONS sip:a@b SIP/2.0\n\nrest of datagram").unwrap();
        assert_eq!(f.body, b"rest of datagram");
    }

    #[test]
    fn start_line_defects_and_garbage() {
        let f = frame_str("INVITE  sip:a@b  SIP/2.0\nl: 0\n\n").unwrap();
        assert_eq!(f.defect, Some("malformed Request-Line (white space)"));
        assert!(matches!(
            frame_str("hello world\n\n"),
            Err(FrameError::Garbage(_))
        ));
        assert!(matches!(
            frame_str("REG\u{b1}ISTER sip:a SIP/2.0\n\n"),
            Err(FrameError::Garbage(_))
        ));
        assert!(matches!(
            frame_str("\u{52c52}<sip:a>\n\n"),
            Err(FrameError::Garbage(_))
        ));
        assert!(matches!(
            frame_str("SIP/2.0 4294967301 big\n\n"),
            Err(FrameError::Garbage(_))
        ));
        assert_eq!(frame(b"\r\n\r\n"), Err(FrameError::KeepAlive));
        let f = frame_str("SIP/2.0 100 \nl: 0\n\n").unwrap();
        assert_eq!(
            f.start,
            StartLine::Response {
                code: 100,
                reason: String::new()
            }
        );
    }

    #[test]
    fn bare_line_feeds_never_reach_header_values() {
        let f = frame(b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:x@y>\nInjected: 1\r\nl: 0\r\n\r\n")
            .unwrap();
        assert_eq!(f.defect, Some("stray CR or LF in a header line"));
        assert_eq!(f.headers.first("From"), Some("<sip:x@y> Injected: 1"));
    }
}
