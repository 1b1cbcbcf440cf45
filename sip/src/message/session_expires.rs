//! `Session-Expires` and `Min-SE` (RFC 4028 4, 5): the session interval in seconds, who
//! refreshes (`refresher=uac|uas`, relative to the transaction that carries it), and the
//! smallest interval a party accepts.

use std::fmt;

use super::grammar;

/// Who refreshes the session, named by role in the transaction carrying the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionExpires {
    /// Seconds.
    pub interval: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses `delta-seconds *( SEMI se-params )`; an unknown `refresher` value counts as none.
    pub(crate) fn parse(value: &str) -> Result<SessionExpires, &'static str> {
        let (seconds, rest) = value.split_at(value.find(';').unwrap_or(value.len()));
        let interval = delta_seconds(seconds).ok_or("Session-Expires is not a number")?;
        let params = grammar::params(rest)?;
        let refresher = match grammar::find_param(&params, "refresher").flatten() {
            Some(v) if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(v) if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            _ => None,
        };
        Ok(SessionExpires {
            interval,
            refresher,
        })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        if let Some(refresher) = self.refresher {
            write!(f, ";refresher={}", refresher.as_str())?;
        }
        Ok(())
    }
}

/// A `Min-SE` value (its parameters, if any, ignored).
pub(crate) fn min_se(value: &str) -> Option<u32> {
    delta_seconds(value.split(';').next().unwrap_or_default())
}

fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim_matches(grammar::is_wsp);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Larger than any sensible interval: saturate rather than refuse.
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_session_expires() {
        let se = SessionExpires::parse("1800 ; refresher=UAS").unwrap();
        assert_eq!(se.interval, 1800);
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(se.to_string(), "1800;refresher=uas");
        let bare = SessionExpires::parse("90").unwrap();
        assert_eq!((bare.interval, bare.refresher), (90, None));
        assert_eq!(bare.to_string(), "90");
        assert!(SessionExpires::parse("soon").is_err());
        assert!(SessionExpires::parse("").is_err());
    }

    #[test]
    fn parses_min_se() {
        assert_eq!(min_se("90"), Some(90));
        assert_eq!(min_se(" 120;x=1"), Some(120));
        assert_eq!(min_se("-1"), None);
    }
}
