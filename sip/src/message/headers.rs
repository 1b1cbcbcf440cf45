//! The header list of a received message: names canonicalised (compact forms expanded, case
//! normalised for known headers), values unfolded and trimmed, order kept.

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Canonical name for known headers, the name as written otherwise.
    pub name: String,
    pub value: String,
}

/// Headers in message order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<Header>);

/// Known header names, and the compact forms of RFC 3261 7.3.3 and later RFCs.
const KNOWN: &[(&str, &str)] = &[
    ("accept", "Accept"),
    ("accept-encoding", "Accept-Encoding"),
    ("accept-language", "Accept-Language"),
    ("allow", "Allow"),
    ("call-id", "Call-ID"),
    ("i", "Call-ID"),
    ("contact", "Contact"),
    ("m", "Contact"),
    ("content-encoding", "Content-Encoding"),
    ("e", "Content-Encoding"),
    ("content-length", "Content-Length"),
    ("l", "Content-Length"),
    ("content-type", "Content-Type"),
    ("c", "Content-Type"),
    ("cseq", "CSeq"),
    ("from", "From"),
    ("f", "From"),
    ("max-forwards", "Max-Forwards"),
    ("proxy-require", "Proxy-Require"),
    ("record-route", "Record-Route"),
    ("require", "Require"),
    ("route", "Route"),
    ("subject", "Subject"),
    ("s", "Subject"),
    ("supported", "Supported"),
    ("k", "Supported"),
    ("to", "To"),
    ("t", "To"),
    ("via", "Via"),
    ("v", "Via"),
    ("event", "Event"),
    ("o", "Event"),
    ("refer-to", "Refer-To"),
    ("session-expires", "Session-Expires"),
    ("x", "Session-Expires"),
    ("min-se", "Min-SE"),
    ("r", "Refer-To"),
];

/// The canonical spelling of a header name.
pub(crate) fn canonical_name(name: &str) -> String {
    KNOWN
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map_or_else(
            || name.to_string(),
            |(_, canonical)| (*canonical).to_string(),
        )
}

impl Headers {
    pub(crate) fn push(&mut self, name: &str, value: String) {
        self.0.push(Header {
            name: canonical_name(name),
            value,
        });
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Values of every header line called `name` (canonical spelling).
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// The first value of `name`.
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    pub(crate) fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|h| h.name == name).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_mixed_case_names_are_canonical() {
        assert_eq!(canonical_name("i"), "Call-ID");
        assert_eq!(canonical_name("MaX-fOrWaRdS"), "Max-Forwards");
        assert_eq!(canonical_name("L"), "Content-Length");
        assert_eq!(canonical_name("C%6Fntact"), "C%6Fntact");
        assert_eq!(canonical_name("X-Agent-Id"), "X-Agent-Id");
    }
}
