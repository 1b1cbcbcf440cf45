//! Lexical rules of RFC 3261 section 25.1 shared by the header parsers: tokens, linear white
//! space, quoted strings, generic parameters, and splitting comma-separated header values.

/// A `generic-param` (`name [= value]`) as written; quoted values keep their quotes.
pub(crate) type Param = (String, Option<String>);

/// `token` characters: alphanumerics and `-.!%*_+`'~` (RFC 3261 25.1).
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// True when `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Space or horizontal tab.
pub(crate) fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Drops leading spaces and tabs (`SWS`; folding is already undone by the framer).
pub(crate) fn skip_wsp(s: &str) -> &str {
    s.trim_start_matches(is_wsp)
}

/// Reads a `quoted-string` at the start of `s` (after optional white space). Returns the text
/// with its quotes and backslash escapes as written, and the rest of the input.
pub(crate) fn quoted_string(s: &str) -> Result<(&str, &str), &'static str> {
    let s = skip_wsp(s);
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '"')) => {}
        _ => return Err("expected a quoted string"),
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                match chars.next() {
                    Some((_, e)) if e.is_ascii() && e != '\n' && e != '\r' => {}
                    _ => return Err("invalid escape in quoted string"),
                }
            }
            '"' => return Ok((&s[..=i], &s[i + 1..])),
            '\r' | '\n' => return Err("line break in quoted string"),
            _ => {}
        }
    }
    Err("unterminated quoted string")
}

/// Splits a header value on `sep` where it is not inside a quoted string or `<...>`.
/// Each piece is trimmed. Fails on an unterminated quote or angle bracket.
pub(crate) fn split_top_level(value: &str, sep: char) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' if !in_angle => in_quotes = true,
            '<' if !in_angle => in_angle = true,
            '>' if in_angle => in_angle = false,
            c if c == sep && !in_angle => {
                parts.push(value[start..i].trim_matches(is_wsp));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quoted string");
    }
    if in_angle {
        return Err("unterminated '<'");
    }
    parts.push(value[start..].trim_matches(is_wsp));
    Ok(parts)
}

/// Parses `*( SEMI generic-param )`: the input must be empty (after white space) or start with
/// `;`. Parameter names are tokens; values are tokens, hosts or quoted strings.
pub(crate) fn params(mut s: &str) -> Result<Vec<Param>, &'static str> {
    let mut out = Vec::new();
    loop {
        s = skip_wsp(s);
        if s.is_empty() {
            return Ok(out);
        }
        s = s
            .strip_prefix(';')
            .ok_or("unexpected text after a parameter")?;
        s = skip_wsp(s);
        let name_len = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
        if name_len == 0 {
            return Err("empty parameter");
        }
        let name = &s[..name_len];
        s = skip_wsp(&s[name_len..]);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = skip_wsp(rest);
            if rest.starts_with('"') {
                let (quoted, after) = quoted_string(rest)?;
                s = after;
                quoted.to_string()
            } else {
                let len = rest
                    .find(|c: char| !is_param_value_char(c))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return Err("parameter without a value after '='");
                }
                s = &rest[len..];
                rest[..len].to_string()
            }
        } else {
            String::new()
        };
        let value = if value.is_empty() { None } else { Some(value) };
        out.push((name.to_string(), value));
    }
}

/// Characters of an unquoted parameter value: token characters plus the `:[]` of IPv6 hosts.
fn is_param_value_char(c: char) -> bool {
    is_token_char(c) || c == ':' || c == '[' || c == ']'
}

/// Looks a parameter up by name, ignoring case. `Some(None)` means present without a value.
pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Writes parameters back as `;name=value`.
pub(crate) fn write_params(out: &mut String, params: &[Param]) {
    for (name, value) in params {
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_string_keeps_escapes_and_returns_rest() {
        let (q, rest) = quoted_string(r#" "J Rosenberg \\\""  <sip:a@b>"#).unwrap();
        assert_eq!(q, r#""J Rosenberg \\\"""#);
        assert_eq!(rest, "  <sip:a@b>");
        assert!(quoted_string(r#""Mr. J. User <sip:j@x>"#).is_err());
    }

    #[test]
    fn split_ignores_separators_in_quotes_and_brackets() {
        let parts = split_top_level(r#""a, b" <sip:x;y=1,2>, <sip:z>"#, ',').unwrap();
        assert_eq!(parts, vec![r#""a, b" <sip:x;y=1,2>"#, "<sip:z>"]);
        assert!(split_top_level("<sip:x", ',').is_err());
    }

    #[test]
    fn params_accept_lws_and_valueless_names() {
        let p = params(" ;   tag    = 1918181833n ; lr ;q = 0.33").unwrap();
        assert_eq!(
            p,
            vec![
                ("tag".to_string(), Some("1918181833n".to_string())),
                ("lr".to_string(), None),
                ("q".to_string(), Some("0.33".to_string())),
            ]
        );
        assert_eq!(find_param(&p, "TAG"), Some(Some("1918181833n")));
        assert_eq!(find_param(&p, "lr"), Some(None));
    }

    #[test]
    fn params_reject_empty_names_and_stray_text() {
        assert_eq!(params(";;"), Err("empty parameter"));
        assert!(params("junk").is_err());
        assert!(params(";a=").is_err());
    }
}
