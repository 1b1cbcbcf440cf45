//! Phone numbers, read digit by digit.

/// Reads phone numbers digit by digit in comma-separated groups:
/// `(555) 123-4567` -> "5 5 5, 1 2 3, 4 5 6 7", `+44 20 7946 0958` ->
/// "plus 4 4, 2 0, 7 9 4 6, 0 9 5 8".
///
/// Recognised shapes: North American `555-1234`, `555-123-4567`,
/// `555.123.4567`, `(555) 123-4567`, `1-800-555-1234`, and `+` followed by
/// 8 to 15 digits in groups separated by spaces, dashes or dots.
pub(super) fn spell_phone_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(c) = text[pos..].chars().next() {
        let boundary =
            !text[..pos].ends_with(|p: char| p.is_alphanumeric() || "$€£¥₹.,/-:".contains(p));
        if boundary && (c == '+' || c == '(' || c.is_ascii_digit()) {
            if let Some((len, spoken)) = phone_number(&text[pos..]) {
                out.push_str(&spoken);
                pos += len;
                continue;
            }
        }
        out.push(c);
        pos += c.len_utf8();
    }
    out
}

/// The phone number at the start of `s`: its length in bytes and spoken form.
fn phone_number(s: &str) -> Option<(usize, String)> {
    const MAX_GROUPS: usize = 6;
    let bytes = s.as_bytes();
    let plus = bytes.first() == Some(&b'+');
    let mut pos = usize::from(plus);
    let mut groups: Vec<&str> = Vec::new();
    let mut separators: Vec<u8> = Vec::new();
    let mut parenthesised = false;
    loop {
        let open = bytes.get(pos) == Some(&b'(') && groups.is_empty() && !plus;
        let start = pos + usize::from(open);
        let end = start
            + bytes[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
        if end == start || end - start > 6 {
            return None;
        }
        groups.push(&s[start..end]);
        pos = end;
        if open {
            if bytes.get(pos) != Some(&b')') {
                return None;
            }
            parenthesised = true;
            pos += 1;
            if bytes.get(pos) == Some(&b' ') {
                pos += 1;
            }
            separators.push(b')');
            continue;
        }
        let separator = bytes
            .get(pos)
            .copied()
            .filter(|b| matches!(b, b'-' | b'.' | b' '));
        match separator {
            Some(sep)
                if groups.len() < MAX_GROUPS
                    && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit) =>
            {
                separators.push(sep);
                pos += 1;
            }
            _ => break,
        }
    }
    if s[pos..].starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let total: usize = lengths.iter().sum();
    let uniform = |allowed: &[u8]| separators.iter().all(|s| allowed.contains(s));
    let north_american = match lengths[..] {
        [3, 4] => uniform(b"-"),
        [3, 3, 4] => uniform(b"-.") || (parenthesised && uniform(b")-. ")),
        [1, 3, 3, 4] => groups[0] == "1" && (uniform(b"-") || uniform(b" ")),
        _ => false,
    } && !plus;
    let international =
        plus && groups.len() >= 2 && (8..=15).contains(&total) && lengths.iter().all(|&l| l <= 5);
    if !(north_american || international) {
        return None;
    }
    let spelled: Vec<String> = groups
        .iter()
        .map(|g| g.chars().map(String::from).collect::<Vec<_>>().join(" "))
        .collect();
    let prefix = if plus { "plus " } else { "" };
    Some((pos, format!("{prefix}{}", spelled.join(", "))))
}
