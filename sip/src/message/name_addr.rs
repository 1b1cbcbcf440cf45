//! `name-addr / addr-spec` with header parameters: the value of From, To, Contact, Route and
//! Record-Route (RFC 3261 20.10, 20.20, 20.39).

use super::grammar::{self, Param};
use super::uri::Uri;

/// One address: optional display name, the URI, and header parameters such as `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAddr {
    /// Display name as written (quotes kept), if any.
    pub display: Option<String>,
    pub uri: Uri,
    /// True when the URI was enclosed in `<>`.
    pub bracketed: bool,
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses one address (a single element of a comma-separated list).
    pub(crate) fn parse(value: &str) -> Result<NameAddr, &'static str> {
        let s = grammar::skip_wsp(value);
        if s.is_empty() {
            return Err("empty address");
        }
        let (display, s) = if s.starts_with('"') {
            let (quoted, rest) = grammar::quoted_string(s)?;
            let rest = grammar::skip_wsp(rest);
            if !rest.starts_with('<') {
                return Err("display name not followed by <URI>");
            }
            (Some(quoted.to_string()), rest)
        } else if let Some(lt) = s.find('<') {
            // display-name = *(token LWS): "Bell, Alexander" is not a display name (RFC 4475
            // baddn). No LWS before '<' is tolerated (RFC 4475 lwsdisp).
            let name = s[..lt].trim_matches(grammar::is_wsp);
            let valid = name
                .split(grammar::is_wsp)
                .filter(|w| !w.is_empty())
                .all(grammar::is_token);
            if !valid {
                return Err("display name must be tokens or a quoted string");
            }
            let display = if name.is_empty() {
                None
            } else {
                Some(name.to_string())
            };
            (display, &s[lt..])
        } else {
            (None, s)
        };

        let (uri_text, rest, bracketed) = if let Some(inner) = s.strip_prefix('<') {
            let gt = inner.find('>').ok_or("unterminated '<'")?;
            (&inner[..gt], &inner[gt + 1..], true)
        } else {
            // addr-spec: a URI with ';', ',' or '?' must be in brackets (RFC 3261 20), so the
            // first ';' starts the header parameters.
            let end = s
                .find(|c: char| c == ';' || grammar::is_wsp(c))
                .unwrap_or(s.len());
            let uri_text = &s[..end];
            if uri_text.contains(['?', ',']) {
                return Err("URI with '?' or ',' must be enclosed in <>");
            }
            (uri_text, &s[end..], false)
        };
        let uri = Uri::parse(uri_text)?;
        let params = grammar::params(rest)?;
        Ok(NameAddr {
            display,
            uri,
            bracketed,
            params,
        })
    }

    /// The `tag` parameter.
    pub(crate) fn tag(&self) -> Option<&str> {
        grammar::find_param(&self.params, "tag").flatten()
    }

    /// The address as `<uri>;params`, without the display name (for Route headers).
    pub(crate) fn route_value(&self) -> String {
        let mut out = format!("<{}>", self.uri.as_str());
        grammar::write_params(&mut out, &self.params);
        out
    }
}

/// Parses a comma-separated list of addresses (Contact, Route, Record-Route).
pub(crate) fn parse_list(value: &str) -> Result<Vec<NameAddr>, &'static str> {
    grammar::split_top_level(value, ',')?
        .into_iter()
        .map(NameAddr::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_torture_forms() {
        let a =
            NameAddr::parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag(), Some("1918181833n"));
        assert!(!a.bracketed);

        let a = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com> ; tag = 98asjd8"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#""J Rosenberg \\\"""#));
        assert_eq!(a.uri.as_str(), "sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some("98asjd8"));

        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display.as_deref(), Some("caller"));

        let a = NameAddr::parse(
            "token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.",
        )
        .unwrap();
        assert_eq!(a.tag(), Some("_token~1'+`*%!-."));

        let a = NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam").unwrap();
        assert_eq!(a.params, vec![("unknownparam".to_string(), None)]);
        assert!(NameAddr::parse("isbn:2983792873").is_ok());
    }

    #[test]
    fn rejects_the_invalid_torture_forms() {
        assert!(NameAddr::parse(r#""Mr. J. User <sip:j.user@example.com>"#).is_err());
        assert!(NameAddr::parse(r#""Watson, Thomas" < sip:t.watson@example.org >"#).is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(NameAddr::parse(r#""Joe" <sip:joe@example.org>;;;;"#).is_err());
    }

    #[test]
    fn lists_split_on_commas_outside_brackets() {
        let l = parse_list("<sip:a@x;lr>, \"B, C\" <sip:b@y>").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].route_value(), "<sip:a@x;lr>");
    }
}
