//! Scalar and list header values: CSeq, Max-Forwards, Content-Length, Content-Type, Accept,
//! and option-tag lists (Require, Supported).

use super::grammar;
use super::method::Method;

/// `CSeq: number method` (RFC 3261 20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`; leading zeros are fine, values above 2^32-1 are not.
    pub(crate) fn parse(value: &str) -> Result<CSeq, &'static str> {
        let value = value.trim_matches(grammar::is_wsp);
        let split = value
            .find(grammar::is_wsp)
            .ok_or("CSeq needs a number and a method")?;
        let (number, method) = (&value[..split], grammar::skip_wsp(&value[split..]));
        let seq = parse_digits(number).ok_or("CSeq number is not a 32-bit number")?;
        if !grammar::is_token(method) {
            return Err("CSeq method is not a token");
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

/// `1*DIGIT` that fits a `u32`.
pub(crate) fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok()
}

/// Max-Forwards (RFC 3261 20.22). Values above 255 are treated as 255, as RFC 4475
/// (scalar02) allows; text that is not a number is an error.
pub(crate) fn max_forwards(value: &str) -> Result<u32, &'static str> {
    let value = value.trim_matches(grammar::is_wsp);
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Max-Forwards is not a number");
    }
    Ok(value.parse::<u32>().map_or(255, |v| v.min(255)))
}

/// `type/subtype *(;param)` with the type and subtype lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaType {
    pub kind: String,
    pub subtype: String,
}

impl MediaType {
    pub(crate) fn parse(value: &str) -> Result<MediaType, &'static str> {
        let value = value.trim_matches(grammar::is_wsp);
        let end = value.find(';').unwrap_or(value.len());
        let (kind, subtype) = value[..end]
            .split_once('/')
            .ok_or("media type needs type/subtype")?;
        let (kind, subtype) = (
            kind.trim_matches(grammar::is_wsp),
            subtype.trim_matches(grammar::is_wsp),
        );
        if !grammar::is_token(kind) || !grammar::is_token(subtype) {
            return Err("media type is not token/token");
        }
        grammar::params(&value[end..])?;
        Ok(MediaType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
        })
    }

    /// True for `application/sdp`.
    pub(crate) fn is_sdp(&self) -> bool {
        self.kind == "application" && self.subtype == "sdp"
    }

    /// True when this media range (from Accept) covers `kind/subtype`.
    fn covers(&self, kind: &str, subtype: &str) -> bool {
        (self.kind == "*" || self.kind == kind) && (self.subtype == "*" || self.subtype == subtype)
    }
}

/// True when an Accept header value admits `kind/subtype`. An unparsable range is skipped;
/// an empty value admits nothing.
pub(crate) fn accept_allows(value: &str, kind: &str, subtype: &str) -> bool {
    grammar::split_top_level(value, ',')
        .unwrap_or_default()
        .into_iter()
        .filter_map(|range| MediaType::parse(range).ok())
        .any(|range| range.covers(kind, subtype))
}

/// The option tags of a Require/Supported value.
pub(crate) fn option_tags(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(|t| t.trim_matches(grammar::is_wsp))
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_accepts_leading_zeros_and_rejects_overflow() {
        let c = CSeq::parse("0009 INVITE").unwrap();
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("8").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        let c = CSeq::parse("139122385 !interesting-Method0123456789_*+`.%indeed'~").unwrap();
        assert_eq!(
            c.method,
            Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
        );
    }

    #[test]
    fn max_forwards_clamps_and_rejects_text() {
        assert_eq!(max_forwards("0068"), Ok(68));
        assert_eq!(max_forwards("300"), Ok(255));
        assert!(max_forwards("five").is_err());
    }

    #[test]
    fn media_types_and_accept() {
        assert!(MediaType::parse("Application/SDP ; charset=utf-8")
            .unwrap()
            .is_sdp());
        assert!(MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").is_ok());
        assert!(MediaType::parse("sdp").is_err());
        assert!(accept_allows(
            "application/sdp, application/pkcs7-mime",
            "application",
            "sdp"
        ));
        assert!(accept_allows("*/*", "application", "sdp"));
        assert!(!accept_allows("text/nobodyKnowsThis", "application", "sdp"));
    }

    #[test]
    fn option_tags_split() {
        assert_eq!(
            option_tags("nothingSupportsThis, nothingSupportsThisEither"),
            vec!["nothingSupportsThis", "nothingSupportsThisEither"]
        );
    }
}
