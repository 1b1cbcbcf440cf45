//! Text normalisation before espeak-ng.
//!
//! espeak-ng 1.51 (`en-us`) already reads plain and negative numbers, decimals
//! (`3.5`), thousands (`1,000`), percentages, ordinals (`22nd`), most times
//! (`3:30 pm`), `&`, `@`, `+`, `e.g.`, `etc.`, `Dr.`, `Mr.`, `Mrs.`, `St.`,
//! `U.S.` and e-mail addresses (`bob at example dot com`) the way a caller
//! expects. [`normalize`] only rewrites what it reads wrongly:
//!
//! | input                         | espeak-ng alone                 | after [`normalize`]                 |
//! |-------------------------------|---------------------------------|-------------------------------------|
//! | `$5.99`, `€20`, `£3`, `$5m`   | "dollar five point nine nine"   | "5 dollars and 99 cents", "20 euros", "3 pounds", "5 million dollars" |
//! | `555-123-4567`, `+1 555 …`    | "five hundred fifty five dash…" | "5 5 5, 1 2 3, 4 5 6 7"             |
//! | `in 1995`, `May 5, 2024`      | "nineteen hundred ninety five"  | "in 19 95", "May 5, 20 24"          |
//! | `1990s`, `'90s`               | "nineteen hundred ninety z"     | "19 nineties", "nineties"           |
//! | `6:00`, `10:05`               | "six zero zero", "ten zero five"| "6 o'clock", "10 oh 5"              |
//! | `5/12/2024`, `2024-05-12`     | "five slash twelve slash …"     | "May 12th, 20 24"                   |
//! | `1/2`, `3/4`, `24/7`          | "one slash two"                 | "one half", "three quarters", "24 7"|
//! | `5 km`, `10kg`, `3 hrs`, `20°C`| "five K M", "ten K G", …       | "5 kilometers", "10 kilograms", "3 hours", "20 degrees Celsius" |
//! | `Ms.`, `vs.`, `i.e.`, `Jr.`, `Ave.`, `No. 5`, `Jan. 5` | letters / "no" / "jan" | "Miz", "versus", "that is", "Junior", "Avenue", "number 5", "January 5" |
//! | `#1`, `# of`, `~5`, `.5`      | "hash one", "tilde five", "dot five" | "number 1", "number of", "about 5", "0.5" |
//! | `https://example.com/`        | "H T T P S colon slash slash …" | "example.com" (read "example dot com") |
//! | `**bold**`, `# Heading`, `*`  | "asterisk asterisk bold …"      | "bold", "Heading", "star"           |
//! | emoji, pictographs, arrows, control and format characters | "grinning face", "right arrow" | dropped |
//!
//! The rules are English; for other languages use [`sanitize`] alone. Both are
//! pure functions, linear in the input, and collapse white space to single
//! spaces. They never add `. ? !`, so sentence boundaries are kept; phone
//! numbers gain commas, which become short pauses.

use unicode_normalization::UnicodeNormalization;

use numbers::{
    clock_time, date, decade, money, scale_after_money, slash_word, symbol_prefix, unit, year,
};
use phone::spell_phone_numbers;

mod numbers;
mod phone;

/// Normalises English text for espeak-ng (see the module documentation).
#[must_use]
pub fn normalize(text: &str) -> String {
    let text = spell_phone_numbers(&sanitize(text));
    let tokens: Vec<Token<'_>> = text.split_whitespace().map(Token::new).collect();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for i in 0..tokens.len() {
        let token = &tokens[i];
        let (core, trail) = match rewrite(&tokens, i) {
            Some(Rewrite { core, used_dot }) => {
                // An abbreviation's dot that also ends the text stays a full stop.
                let trail = if used_dot && i + 1 < tokens.len() {
                    &token.trail[1..]
                } else {
                    token.trail
                };
                (core, trail)
            }
            None => (token.core.to_string(), token.trail),
        };
        let piece = [strip_markup(token.lead), core, strip_markup(trail)].concat();
        if !piece.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&piece);
        }
    }
    out
}

/// Language-neutral clean-up: NFC, and no emoji, pictographs, arrows, box
/// drawing, private-use, control or format characters (white space and
/// controls become spaces).
#[must_use]
pub fn sanitize(text: &str) -> String {
    text.nfc()
        .filter_map(|c| match c {
            c if c.is_whitespace() || c.is_control() => Some(' '),
            c if is_dropped_symbol(c) => None,
            '’' | 'ʼ' => Some('\''),
            c => Some(c),
        })
        .collect()
}

/// Characters espeak-ng would read as names ("grinning face", "right arrow")
/// or as nothing useful.
fn is_dropped_symbol(c: char) -> bool {
    matches!(c as u32,
        0x00AD                      // soft hyphen
        | 0x200B..=0x200F           // zero-width spaces, joiners, direction marks
        | 0x2022 | 0x2023 | 0x2043  // bullets
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF // bidi controls, invisible operators, BOM
        | 0x203C | 0x2049           // ‼ ⁉
        | 0x20E3                    // combining enclosing keycap
        | 0x2190..=0x21FF           // arrows
        | 0x2300..=0x23FF           // miscellaneous technical (⌚ ⏰)
        | 0x2460..=0x24FF           // enclosed alphanumerics
        | 0x2500..=0x27BF           // box drawing, blocks, shapes, misc symbols, dingbats
        | 0x27F0..=0x27FF | 0x2900..=0x297F // supplemental arrows
        | 0x2B00..=0x2BFF           // miscellaneous symbols and arrows (⭐)
        | 0x3030 | 0x303D
        | 0xE000..=0xF8FF           // private use
        | 0xFE00..=0xFE0F           // variation selectors
        | 0xFFF0..=0xFFFF           // specials, replacement character
        | 0x1_F000..=0x1_FBFF       // emoji, pictographs, flags, skin tones
        | 0xE_0000..=0xE_01EF       // tags, variation selectors supplement
        | 0xF_0000..=0x10_FFFF      // supplementary private use
    )
}

/// Markdown emphasis and code markers, dropped around words.
const MARKUP: &[char] = &['*', '_', '`'];
/// Opening punctuation kept in front of a token's core.
const LEAD: &[char] = &[
    '"', '\'', '“', '‘', '(', '[', '{', '«', '¿', '¡', '*', '_', '`',
];
/// Closing punctuation kept after a token's core.
const TRAIL: &[char] = &[
    '"', '\'', '”', ')', ']', '}', '»', '.', ',', ';', ':', '!', '?', '…', '*', '_', '`',
];

fn strip_markup(s: &str) -> String {
    s.chars().filter(|c| !MARKUP.contains(c)).collect()
}

/// A white-space-separated token: `lead` + `core` + `trail`.
#[derive(Debug)]
struct Token<'a> {
    lead: &'a str,
    core: &'a str,
    trail: &'a str,
}

impl<'a> Token<'a> {
    fn new(word: &'a str) -> Self {
        let mut core = word.trim_start_matches(LEAD);
        // The apostrophe of `'90s` is part of the word.
        if word[..word.len() - core.len()].ends_with('\'')
            && core.starts_with(|c: char| c.is_ascii_digit())
        {
            core = &word[word.len() - core.len() - 1..];
        }
        let lead = &word[..word.len() - core.len()];
        let body = core.trim_end_matches(TRAIL);
        Token {
            lead,
            core: body,
            trail: &core[body.len()..],
        }
    }
}

/// A replacement core; `used_dot` when it consumed the trail's leading `.`.
struct Rewrite {
    core: String,
    used_dot: bool,
}

impl From<String> for Rewrite {
    fn from(core: String) -> Self {
        Rewrite {
            core,
            used_dot: false,
        }
    }
}

/// The first rule that applies to token `i`, given its neighbours.
fn rewrite(tokens: &[Token<'_>], i: usize) -> Option<Rewrite> {
    let core = tokens[i].core;
    let prev = i.checked_sub(1).map(|j| tokens[j].core);
    let next = tokens.get(i + 1).map(|t| t.core);
    if core.is_empty() {
        // A token of markup only: a lone `*` is the keypad's star.
        let word = [tokens[i].lead, tokens[i].trail].concat();
        return (word == "*" && i > 0).then(|| "star".to_string().into());
    }
    url(core)
        .or_else(|| money(core, next))
        .or_else(|| scale_after_money(core, prev))
        .or_else(|| clock_time(core, next))
        .or_else(|| decade(core))
        .or_else(|| date(core))
        .or_else(|| year(core, i, tokens))
        .or_else(|| slash_word(core))
        .or_else(|| unit(core, prev))
        .or_else(|| symbol_prefix(core, i, next))
        .map(Rewrite::from)
        .or_else(|| abbreviation(&tokens[i], next))
}

/// Drops the scheme and trailing slash of a URL, so espeak-ng reads
/// "example dot com slash a" rather than spelling "H T T P S colon slash slash".
fn url(core: &str) -> Option<String> {
    let rest = ["https://", "http://", "ftp://"]
        .iter()
        .find_map(|s| core.strip_prefix(s))?;
    Some(rest.trim_end_matches('/').to_string())
}

/// Abbreviations with their dot: (abbreviation, expansion).
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("Ms", "Miz"),
    ("vs", "versus"),
    ("i.e", "that is"),
    ("approx", "approximately"),
    ("Jr", "Junior"),
    ("Sr", "Senior"),
    ("Ave", "Avenue"),
    ("Blvd", "Boulevard"),
    ("Rd", "Road"),
    ("Apt", "Apartment"),
    ("Mt", "Mount"),
    ("Ft", "Fort"),
    ("Sgt", "Sergeant"),
    ("Capt", "Captain"),
    ("Gen", "General"),
    ("Gov", "Governor"),
    ("Sen", "Senator"),
    ("Rev", "Reverend"),
    ("ext", "extension"),
    ("Ext", "extension"),
    ("Hwy", "Highway"),
];
/// Abbreviations expanded only before a number, with or without their dot
/// (`No. 5`, but not "No. I won't").
const NUMBER_ABBREVIATIONS: &[(&str, &str)] =
    &[("No", "number"), ("no", "number"), ("Nos", "numbers")];
/// Month abbreviations, expanded before a number (`Jan. 5`, `Feb 5`).
const MONTH_ABBREVIATIONS: &[(&str, &str)] = &[
    ("Jan", "January"),
    ("Feb", "February"),
    ("Mar", "March"),
    ("Apr", "April"),
    ("Jun", "June"),
    ("Jul", "July"),
    ("Aug", "August"),
    ("Sep", "September"),
    ("Sept", "September"),
    ("Oct", "October"),
    ("Nov", "November"),
    ("Dec", "December"),
];
/// Abbreviations expanded even without their dot.
const DOTLESS: &[&str] = &["vs", "Hwy"];

fn abbreviation(token: &Token<'_>, next: Option<&str>) -> Option<Rewrite> {
    let has_dot = token.trail.starts_with('.');
    let before_number = next.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
    let lookup = |table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(a, _)| *a == token.core)
            .map(|&(_, e)| e)
    };
    let expansion = lookup(ABBREVIATIONS)
        .filter(|_| has_dot || DOTLESS.contains(&token.core))
        .or_else(|| {
            lookup(NUMBER_ABBREVIATIONS)
                .or_else(|| lookup(MONTH_ABBREVIATIONS))
                .filter(|_| before_number && (has_dot || token.core != "no"))
        })?;
    Some(Rewrite {
        core: expansion.to_string(),
        used_dot: has_dot,
    })
}

#[cfg(test)]
mod tests;
