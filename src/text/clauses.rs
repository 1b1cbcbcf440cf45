//! Sentence and clause splitting.
//!
//! Piper learns where each clause ended from espeak-ng 1.52's
//! `espeak_TextToPhonemesWithTerminator`; Debian's 1.51 lacks it, so we find
//! the clauses ourselves, following espeak-ng's `ReadClause` rules
//! (`readclause.c`) as Piper reports them:
//!
//! * `, ; :` end a clause when followed by white space; `. ? !` end a
//!   sentence. A run such as `?!` counts as its first mark; closing quotes and
//!   brackets after the mark belong to the clause.
//! * `.` before a lowercase word does not end anything (espeak-ng's rule).
//! * A spaced en or em dash is a `;` clause (espeak-ng's `CLAUSE_SEMICOLON`);
//!   an ellipsis (`…`, `...`) ends a clause that Piper gives no terminator.
//! * A blank line ends a sentence without a terminator.
//!
//! Unlike espeak-ng we do not end a sentence after titles (`Dr.`, `Mr.`,
//! `St.`), `e.g.`/`i.e.`, initials (`J.`), initialisms (`U.S.`) or `No.`
//! before a number; decimals, URLs and e-mail addresses never split because a
//! mark only counts when white space follows it.
//!
//! Over-long clauses are cut at a word boundary every [`MAX_CLAUSE_LEN`] bytes
//! and sentences end at the first clause boundary after [`MAX_SENTENCE_LEN`]
//! bytes, which bounds the work of each espeak-ng call and of each model call.
//! Every step looks at a bounded window, so splitting is linear in the input.

use std::ops::Range;

/// Longest clause handed to espeak-ng, in bytes; longer ones are cut at a space.
pub const MAX_CLAUSE_LEN: usize = 160;
/// Length in bytes after which a sentence ends at the next clause boundary.
/// The model works a sentence at a time and its text encoder's cost grows
/// with the square of the sentence, so this bounds the time to first audio
/// of unpunctuated text (about 500 phoneme ids at most).
pub const MAX_SENTENCE_LEN: usize = 200;

/// How far back (bytes) we look for the word before a `.`.
const MAX_WORD_LOOKBACK: usize = 32;
/// How far ahead (bytes) we look for the word after a `.`.
const MAX_LOOKAHEAD: usize = 16;

/// Closing quotes and brackets that stay with the clause they close.
pub(crate) const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '}', '»'];
/// Opening quotes and brackets skipped when looking at a neighbouring word.
const OPENERS: &[char] = &['"', '\'', '“', '‘', '(', '[', '{', '«', '¿', '¡'];

/// Words whose `.` never ends a sentence: titles and Latin abbreviations.
const NON_TERMINAL_ABBREVIATIONS: &[&str] = &[
    "Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "St", "Mt", "Ft", "Rev", "Hon", "Gen", "Col", "Capt",
    "Lt", "Sgt", "Gov", "Sen", "Rep", "Pres", "Fr", "e.g", "i.e", "E.g", "I.e", "cf", "vs",
    "approx", "ca",
];
/// Words whose `.` does not end a sentence when a number follows (`No. 5`, `Jan. 3`).
const ABBREVIATIONS_BEFORE_NUMBERS: &[&str] = &[
    "No", "no", "Nos", "nos", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept",
    "Oct", "Nov", "Dec", "p", "pp", "vol", "Vol", "ch", "Ch", "fig", "Fig",
];

/// A clause: the unit espeak-ng phonemizes, with Piper's view of its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause<'a> {
    /// The clause's text, trimmed, with its punctuation and closing quotes.
    pub text: &'a str,
    /// Where `text` lies in the input, in bytes.
    pub range: Range<usize>,
    /// Piper's terminator: one of `. ? ! , : ;`, or `None` (ellipsis, cut,
    /// blank line, end of text).
    pub terminator: Option<char>,
    /// Whether a sentence ends here (Piper's `end_of_sentence`).
    pub ends_sentence: bool,
}

/// A sentence: consecutive clauses, the last one ending the sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence<'a> {
    /// The sentence's text in the input, from its first clause to its last.
    pub text: &'a str,
    /// Its clauses, in order; never empty.
    pub clauses: Vec<Clause<'a>>,
}

/// Splits `text` into clauses; white-space-only stretches yield none.
#[must_use]
pub fn split_clauses(text: &str) -> Vec<Clause<'_>> {
    let mut clauses = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while let Some(c) = text[pos..].chars().next() {
        if pos - start >= MAX_CLAUSE_LEN {
            let cut = cut_point(text, start, pos);
            // A forced cut also ends the sentence: the model works a sentence
            // at a time, so this bounds the time to first audio.
            push_clause(&mut clauses, text, start..cut, None, true);
            start = cut;
            pos = cut;
            continue;
        }
        match clause_break(text, pos, c) {
            Some(found) => {
                push_clause(
                    &mut clauses,
                    text,
                    start..found.end,
                    found.terminator,
                    found.ends_sentence,
                );
                start = found.end;
                pos = found.end;
            }
            None => pos += c.len_utf8(),
        }
    }
    push_clause(&mut clauses, text, start..text.len(), None, true);
    if let Some(last) = clauses.last_mut() {
        last.ends_sentence = true;
    }
    clauses
}

/// Splits `text` into sentences (see the module documentation).
#[must_use]
pub fn split_sentences(text: &str) -> Vec<Sentence<'_>> {
    let mut sentences = Vec::new();
    let mut current: Vec<Clause<'_>> = Vec::new();
    for clause in split_clauses(text) {
        let ends = clause.ends_sentence;
        current.push(clause);
        let len = current[current.len() - 1].range.end - current[0].range.start;
        if ends || len >= MAX_SENTENCE_LEN {
            let clauses = std::mem::take(&mut current);
            let range = clauses[0].range.start..clauses[clauses.len() - 1].range.end;
            sentences.push(Sentence {
                text: &text[range],
                clauses,
            });
        }
    }
    sentences
}

/// A clause boundary found at some position.
pub(crate) struct Break {
    /// Byte offset just after the terminator and any closing quotes.
    pub(crate) end: usize,
    pub(crate) terminator: Option<char>,
    pub(crate) ends_sentence: bool,
}

/// Whether the character `c` at byte `pos` ends a clause, and how.
///
/// The end of `text` counts as white space, so a mark at the very end is a
/// boundary here; the streaming [`super::segmenter`] waits for what follows.
pub(crate) fn clause_break(text: &str, pos: usize, c: char) -> Option<Break> {
    let after = pos + c.len_utf8();
    let rest = &text[after..];
    let spaced = |end: usize| text[end..].chars().next().is_none_or(char::is_whitespace);
    let clause = |end: usize, terminator: Option<char>, ends_sentence: bool| {
        spaced(end).then_some(Break {
            end,
            terminator,
            ends_sentence,
        })
    };
    match c {
        '.' if rest.starts_with('.') => {
            let end = after + rest.len() - rest.trim_start_matches('.').len();
            clause(skip_closers(text, end), None, false)
        }
        '.' => {
            let end = skip_closers(text, after);
            if !spaced(end) || !period_ends_sentence(text, pos, end) {
                return None;
            }
            clause(end, Some('.'), true)
        }
        '?' | '!' => {
            let end = after + rest.len() - rest.trim_start_matches(['?', '!']).len();
            clause(skip_closers(text, end), Some(c), true)
        }
        ',' | ';' | ':' => clause(skip_closers(text, after), Some(c), false),
        '…' => clause(skip_closers(text, after), None, false),
        '–' | '—' => clause(after, Some(';'), false),
        // Full-width and ideographic marks need no following space.
        '。' | '．' => Some(Break {
            end: skip_closers(text, after),
            terminator: Some('.'),
            ends_sentence: true,
        }),
        '？' | '！' => Some(Break {
            end: skip_closers(text, after),
            terminator: Some(if c == '？' { '?' } else { '!' }),
            ends_sentence: true,
        }),
        '、' | '，' | '；' | '：' => Some(Break {
            end: after,
            terminator: Some(match c {
                '；' => ';',
                '：' => ':',
                _ => ',',
            }),
            ends_sentence: false,
        }),
        '\n' => {
            let blank = rest
                .char_indices()
                .take(MAX_LOOKAHEAD)
                .find(|&(_, c)| !c.is_whitespace() || c == '\n');
            matches!(blank, Some((_, '\n'))).then_some(Break {
                end: after,
                terminator: None,
                ends_sentence: true,
            })
        }
        _ => None,
    }
}

/// Whether the `.` at byte `dot` (followed by white space from `end`) ends a
/// sentence.
fn period_ends_sentence(text: &str, dot: usize, end: usize) -> bool {
    let next = text[end..]
        .chars()
        .take(MAX_LOOKAHEAD)
        .find(|c| !c.is_whitespace() && !OPENERS.contains(c));
    if next.is_some_and(char::is_lowercase) {
        return false;
    }
    let word = word_before(text, dot);
    if NON_TERMINAL_ABBREVIATIONS.contains(&word) {
        return false;
    }
    if next.is_some_and(|c| c.is_ascii_digit()) && ABBREVIATIONS_BEFORE_NUMBERS.contains(&word) {
        return false;
    }
    let is_initial = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
    // `U.S`, `Ph.D` but not `p.m` (which may end a sentence) or `acme.com`.
    let is_initialism = word.contains('.')
        && word.chars().any(char::is_uppercase)
        && word.split('.').all(|part| {
            (1..=2).contains(&part.chars().count()) && part.chars().all(char::is_alphabetic)
        });
    !(is_initial || is_initialism)
}

/// The word that ends at byte `end` (exclusive), without opening quotes; empty
/// when it is longer than [`MAX_WORD_LOOKBACK`].
fn word_before(text: &str, end: usize) -> &str {
    let head = &text[..end];
    let start = head
        .char_indices()
        .rev()
        .take_while(|&(i, c)| !c.is_whitespace() && end - i <= MAX_WORD_LOOKBACK)
        .last()
        .map_or(end, |(i, _)| i);
    let word = &head[start..];
    if start > 0 && !head[..start].ends_with(char::is_whitespace) {
        return "";
    }
    word.trim_start_matches(OPENERS)
}

fn skip_closers(text: &str, pos: usize) -> usize {
    let rest = &text[pos..];
    pos + rest.len() - rest.trim_start_matches(CLOSERS).len()
}

/// Where to cut an over-long clause `start..limit`: after its last space, or
/// at `limit` when it has none.
fn cut_point(text: &str, start: usize, limit: usize) -> usize {
    match text[start..limit].rfind(char::is_whitespace) {
        Some(i) if i > 0 => start + i,
        _ => limit,
    }
}

fn push_clause<'a>(
    clauses: &mut Vec<Clause<'a>>,
    text: &'a str,
    range: Range<usize>,
    terminator: Option<char>,
    ends_sentence: bool,
) {
    let raw = &text[range.clone()];
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        if ends_sentence {
            if let Some(last) = clauses.last_mut() {
                last.ends_sentence = true;
            }
        }
        return;
    }
    let start = range.start + (raw.len() - raw.trim_start().len());
    clauses.push(Clause {
        text: trimmed,
        range: start..start + trimmed.len(),
        terminator,
        ends_sentence,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(text, terminator, ends_sentence)` for each clause.
    fn clauses(text: &str) -> Vec<(&str, Option<char>, bool)> {
        split_clauses(text)
            .into_iter()
            .map(|c| (c.text, c.terminator, c.ends_sentence))
            .collect()
    }

    fn sentences(text: &str) -> Vec<&str> {
        split_sentences(text).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_like_piper() {
        assert_eq!(
            clauses("Hello, world. How are you? Fine: thanks; bye!"),
            vec![
                ("Hello,", Some(','), false),
                ("world.", Some('.'), true),
                ("How are you?", Some('?'), true),
                ("Fine:", Some(':'), false),
                ("thanks;", Some(';'), false),
                ("bye!", Some('!'), true),
            ]
        );
        assert_eq!(
            clauses("Really?! Yes!!!"),
            vec![("Really?!", Some('?'), true), ("Yes!!!", Some('!'), true)]
        );
        assert_eq!(
            clauses("no terminator"),
            vec![("no terminator", None, true)]
        );
    }

    #[test]
    fn dashes_ellipses_and_blank_lines() {
        assert_eq!(
            clauses("Yes — no"),
            vec![("Yes —", Some(';'), false), ("no", None, true)]
        );
        assert_eq!(
            clauses("Wait... what?"),
            vec![("Wait...", None, false), ("what?", Some('?'), true)]
        );
        assert_eq!(
            clauses("Wait… what"),
            vec![("Wait…", None, false), ("what", None, true)]
        );
        assert_eq!(
            clauses("first\n\nsecond"),
            vec![("first", None, true), ("second", None, true)]
        );
        assert_eq!(
            clauses("line one\nline two"),
            vec![("line one\nline two", None, true)]
        );
        assert_eq!(
            clauses("5–10 people, well-known"),
            vec![
                ("5–10 people,", Some(','), false),
                ("well-known", None, true)
            ]
        );
    }

    #[test]
    fn closing_quotes_stay_with_their_clause() {
        assert_eq!(
            sentences("He said \"stop.\" Then (quietly.) Left"),
            vec!["He said \"stop.\"", "Then (quietly.)", "Left"]
        );
    }

    #[test]
    fn does_not_split_abbreviations_numbers_or_addresses() {
        for text in [
            "Dr. Smith and Mr. Jones met Mrs. Brown on St. Patrick's day.",
            "Use e.g. this, i.e. that.",
            "Pi is 3.5 or 3.14 today.",
            "The U.S. Army and the U.K. Navy.",
            "Visit https://example.com/a.b?c=d or www.acme.co.uk today.",
            "Write to john.smith@acme.com now.",
            "It is No. 5 on the list.",
            "John F. Kennedy spoke.",
            "It was 5 p.m. and late.",
            "Ratio 3:2 and 1,000 items.",
        ] {
            assert_eq!(sentences(text), vec![text], "{text}");
        }
    }

    #[test]
    fn does_split_at_real_ends() {
        assert_eq!(
            sentences("It is 5 p.m. Then we go."),
            vec!["It is 5 p.m.", "Then we go."]
        );
        assert_eq!(
            sentences("Go to acme.com. Bye."),
            vec!["Go to acme.com.", "Bye."]
        );
        assert_eq!(sentences("Pi is 3.5. Next"), vec!["Pi is 3.5.", "Next"]);
        assert_eq!(
            sentences("I saw it. it was red. OK"),
            vec!["I saw it. it was red.", "OK"]
        );
        assert_eq!(sentences("what? no"), vec!["what?", "no"]);
        assert_eq!(sentences("这是。好的"), vec!["这是。", "好的"]);
    }

    #[test]
    fn empty_and_blank_text_have_no_clauses() {
        assert!(split_clauses("").is_empty());
        assert!(split_sentences(" \n\t ").is_empty());
        assert_eq!(
            clauses(". , ?"),
            vec![
                (".", Some('.'), true),
                (",", Some(','), false),
                ("?", Some('?'), true)
            ]
        );
    }

    #[test]
    fn long_clauses_are_cut_at_words_and_sentences_are_bounded() {
        let text = "word ".repeat(20_000);
        let clauses = split_clauses(&text);
        assert!(clauses.iter().all(|c| c.text.len() <= MAX_CLAUSE_LEN));
        assert!(clauses
            .iter()
            .all(|c| c.text.split(' ').all(|w| w == "word")));
        assert_eq!(
            clauses
                .iter()
                .map(|c| c.text.split(' ').count())
                .sum::<usize>(),
            20_000
        );
        let sentences = split_sentences(&text);
        assert!(sentences
            .iter()
            .all(|s| s.text.len() <= MAX_SENTENCE_LEN + MAX_CLAUSE_LEN));

        let unbroken = "é".repeat(50_000);
        let pieces = split_clauses(&unbroken);
        assert_eq!(
            pieces.iter().map(|c| c.text.len()).sum::<usize>(),
            unbroken.len()
        );
        // Initials never end a sentence, so only the length limit cuts these.
        let initials = "A. ".repeat(30_000);
        let pieces = split_clauses(&initials);
        assert!(pieces
            .iter()
            .all(|c| c.text.len() <= MAX_CLAUSE_LEN && c.terminator.is_none()));
        assert_eq!(
            pieces
                .iter()
                .map(|c| c.text.split(' ').count())
                .sum::<usize>(),
            30_000
        );
    }
}
