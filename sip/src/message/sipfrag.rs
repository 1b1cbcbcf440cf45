//! `message/sipfrag` bodies (RFC 3420) as the NOTIFYs of a REFER carry them (RFC 3515 2.4.5):
//! the status line of the transferee's call to the target, e.g. `SIP/2.0 180 Ringing`. Only
//! the status line is read; headers that may follow it are ignored.

/// The status line of a sipfrag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FragStatus {
    pub status: u16,
    pub reason: String,
}

impl FragStatus {
    /// Reads the first line of `body`: `SIP/2.0 <3 digits> <reason>`. `None` when the body is
    /// not a response fragment (a request line, or garbage).
    pub(crate) fn parse(body: &[u8]) -> Option<FragStatus> {
        let text = std::str::from_utf8(body).ok()?;
        let line = text.lines().next()?.trim();
        let rest = line.strip_prefix("SIP/2.0")?;
        let rest = rest.strip_prefix([' ', '\t'])?.trim_start();
        let (code, reason) = rest.split_at(rest.find([' ', '\t']).unwrap_or(rest.len()));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let status: u16 = code.parse().ok()?;
        if !(100..=699).contains(&status) {
            return None;
        }
        Some(FragStatus {
            status,
            reason: super::one_line(reason.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_of_rfc_3515_notifies() {
        let frag = FragStatus::parse(b"SIP/2.0 100 Trying\r\n").unwrap();
        assert_eq!((frag.status, frag.reason.as_str()), (100, "Trying"));
        let frag = FragStatus::parse(b"SIP/2.0 200 OK").unwrap();
        assert_eq!((frag.status, frag.reason.as_str()), (200, "OK"));
        // Headers after the status line (RFC 3420 allows them) are ignored.
        let frag = FragStatus::parse(b"SIP/2.0 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n");
        assert_eq!(frag.unwrap().status, 503);
        assert_eq!(FragStatus::parse(b"SIP/2.0 486").unwrap().reason, "");
    }

    #[test]
    fn anything_else_is_no_status() {
        for body in [
            &b""[..],
            b"INVITE sip:bob@example.com SIP/2.0",
            b"SIP/2.0 99 Low",
            b"SIP/2.0 700 High",
            b"SIP/2.0 2OO OK",
            b"SIP/3.0 200 OK",
            b"\xff\xfe",
        ] {
            assert_eq!(FragStatus::parse(body), None, "{body:?}");
        }
    }
}
