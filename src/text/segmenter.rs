//! Streaming segmentation: an agent's LLM tokens in, clauses to speak out.
//!
//! An LLM streams its answer into a live call a token at a time (`"Sure"`,
//! `","`, `" I"`, `" can"`, …). Speech must start at the first clause rather
//! than at the end of the turn, yet never with a fragment that sounds broken.
//! A [`Segmenter`] buffers the tokens and hands back whole clauses as soon as
//! their end is certain. It is sans-IO: no threads, and no clock read inside —
//! the caller passes `now` in and asks [`Segmenter::deadline`] when to call
//! [`Segmenter::poll`].
//!
//! # Where a clause ends
//!
//! The boundaries are those of [`split_clauses`](super::split_clauses)
//! (`clauses.rs`, whose `clause_break` we call), so the synthesizer, which
//! splits each piece again, agrees with us:
//!
//! * `. ? ! …` followed by white space end a sentence; `, ; :` and spaced
//!   dashes end a clause. Titles (`Dr.`), `e.g.`, initials, decimals (`3.5`),
//!   times (`3:30`), URLs and e-mail addresses never split.
//! * A mark is only a boundary once what follows it has arrived: `"3."` may
//!   become `"3.5"`, `"example."` `"example.com"`, `"Dr. "` `"Dr. Smith"`
//!   (after a `.` we wait for the next word, since `.` before a lowercase word
//!   ends nothing). Until then the text waits — for more text, for
//!   [`Segmenter::flush`], or for `max_wait`.
//! * Every newline ends a sentence: LLMs write lists one item a line.
//! * [`Policy::Clause`] speaks at clause marks too, once
//!   [`SegmenterConfig::min_clause_chars`] have gathered — except the first
//!   clause of a turn, which is spoken whatever its length: a short opener
//!   (`"Sure,"`) is exactly what brings the first audio early, and once audio
//!   plays, the rest has its duration to arrive.
//! * Text that waited [`SegmenterConfig::max_wait`] without a boundary (the
//!   LLM stalled, say on a tool call) is spoken up to its last word boundary;
//!   the last word, which may be incomplete, waits another `max_wait`.
//! * Nothing longer than [`SegmenterConfig::max_chars`] is ever handed out: it
//!   is cut at a word boundary (mid-word only in a longer "word", a URL or
//!   unspaced CJK text).
//!
//! # What we hand out
//!
//! Each piece is trimmed and never empty. Apart from white space at the cuts
//! and the line markup below, the pieces and what [`Segmenter::clear`]
//! dropped are, in order, the input.
//!
//! Markdown *line* markup is ours to drop, because only we know where lines
//! begin: bullets (`- `, `* `, `+ `, `• `), numbered items (`1. `, `2) `),
//! headings (`## `) and quotes (`> `) at the start of a line are not spoken.
//! (A numbered item would otherwise be spoken as a sentence of its own, "One."
//! We keep the order, not the numbers.) Emphasis and code marks inside a line
//! (`**bold**`, `` `code` ``) are left to [`normalize`](super::normalize),
//! which already drops them around words and reads a lone `*` as "star"
//! (for English; [`sanitize`](super::sanitize) keeps them).

use std::time::{Duration, Instant};

use super::clauses::{clause_break, CLOSERS, MAX_CLAUSE_LEN};

/// Where a [`Segmenter`] may end a piece of speech.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// At sentence ends, and at clause marks (`, ; : — –`) once
    /// [`SegmenterConfig::min_clause_chars`] have gathered (the first clause
    /// of a turn needs no minimum).
    #[default]
    Clause,
    /// At sentence ends only (and newlines, `max_wait` and `max_chars`).
    Sentence,
}

/// How a [`Segmenter`] cuts; lengths are in bytes of UTF-8, like
/// [`MAX_CLAUSE_LEN`] (the same as characters for English text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Where pieces may end.
    pub policy: Policy,
    /// Under [`Policy::Clause`], the shortest clause spoken at a clause mark
    /// once something was spoken in the turn; shorter ones run on into the
    /// next clause. Default [`Self::DEFAULT_MIN_CLAUSE_CHARS`].
    pub min_clause_chars: usize,
    /// How long text may wait for a boundary, from the arrival of its first
    /// character (or from the previous cut), before it is spoken anyway,
    /// cut at its last word boundary. Default [`Self::DEFAULT_MAX_WAIT`].
    pub max_wait: Duration,
    /// The longest piece handed out; longer text is cut at a word boundary.
    /// Default [`MAX_CLAUSE_LEN`], so the synthesizer never cuts it again.
    pub max_chars: usize,
}

impl SegmenterConfig {
    /// 24 bytes, about five words or 1.5 s of speech. Once the first clause
    /// plays, a later one only has to be ready before the audio ahead of it
    /// ends, so nothing is gained by speaking it in crumbs: each piece is a
    /// sentence of its own to the voice, with its own intonation contour,
    /// and `"taken with food,"` on its own sounds clipped. A clause this long
    /// carries a natural phrase yet arrives in a few hundred milliseconds from
    /// an LLM, which keeps the queue ahead of the audio when the sentence it
    /// belongs to is long.
    pub const DEFAULT_MIN_CLAUSE_CHARS: usize = 24;
    /// 700 ms: well above the gaps between an LLM's streamed tokens (tens of
    /// milliseconds, a few hundred at worst), so it fires only when the model
    /// stalls; well below the second or so of dead air after which a caller
    /// wonders whether the line dropped or starts talking.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(700);
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            min_clause_chars: Self::DEFAULT_MIN_CLAUSE_CHARS,
            max_wait: Self::DEFAULT_MAX_WAIT,
            max_chars: MAX_CLAUSE_LEN,
        }
    }
}

/// Cuts a stream of text into clauses to speak (see the module documentation).
///
/// A turn starts at [`new`](Self::new), [`flush`](Self::flush) and
/// [`clear`](Self::clear).
#[derive(Clone, Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    /// Text not handed out yet; empty or starting with a non-white-space
    /// character.
    buf: String,
    /// Where the next scan of `buf` resumes: every position before it is
    /// settled and is not a boundary.
    scan_from: usize,
    /// When the wait for a boundary of the text in `buf` began.
    waiting_since: Option<Instant>,
    /// Whether anything was handed out in this turn.
    spoken: bool,
    /// Whether `buf` starts a line (its line markup is dropped).
    line_start: bool,
}

/// Marks that may end a stalled text; it is then spoken whole.
const MARKS: &[char] = &[
    '.', '?', '!', '…', ',', ';', ':', '—', '–', '。', '．', '？', '！', '、', '，', '；', '：',
];

impl Segmenter {
    #[must_use]
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            config,
            buf: String::new(),
            scan_from: 0,
            waiting_since: None,
            spoken: false,
            line_start: true,
        }
    }

    #[must_use]
    pub fn config(&self) -> &SegmenterConfig {
        &self.config
    }

    /// Adds `text`, arrived at `now`; returns the clauses ready to speak, in
    /// order (often none).
    #[must_use]
    pub fn push(&mut self, now: Instant, text: &str) -> Vec<String> {
        let was_empty = self.buf.is_empty();
        self.buf.push_str(text);
        let (mut out, cut) = self.segment(false);
        self.restart_wait(now, cut || was_empty);
        // A late timer must not let text wait longer than `max_wait`.
        if self.is_due(now) {
            out.extend(self.cut_stalled(now));
        }
        out
    }

    /// Hands out everything buffered (the agent flushed, or the turn ended)
    /// and starts a new turn.
    #[must_use]
    pub fn flush(&mut self) -> Vec<String> {
        let (out, _) = self.segment(true);
        self.new_turn();
        out
    }

    /// The `max_wait` rule: call at [`deadline`](Self::deadline). Returns
    /// what waited too long, up to its last word boundary.
    #[must_use]
    pub fn poll(&mut self, now: Instant) -> Vec<String> {
        if self.is_due(now) {
            self.cut_stalled(now)
        } else {
            Vec::new()
        }
    }

    /// When [`poll`](Self::poll) should next be called; `None` while nothing
    /// waits.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since?.checked_add(self.config.max_wait)
    }

    /// Barge-in: drops the buffer and returns what was dropped; starts a new
    /// turn.
    pub fn clear(&mut self) -> String {
        let dropped = std::mem::take(&mut self.buf);
        self.new_turn();
        dropped
    }

    /// The text waiting for a boundary.
    #[must_use]
    pub fn pending(&self) -> &str {
        &self.buf
    }

    fn new_turn(&mut self) {
        self.buf.clear();
        self.scan_from = 0;
        self.waiting_since = None;
        self.spoken = false;
        self.line_start = true;
    }

    fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Starts the wait at `now` if `restart`, or if nothing waited before.
    fn restart_wait(&mut self, now: Instant, restart: bool) {
        self.waiting_since = match self.waiting_since {
            _ if self.buf.is_empty() => None,
            Some(since) if !restart => Some(since),
            _ => Some(now),
        };
    }

    /// Cuts `buf` at every settled boundary (every boundary, and the end, if
    /// `end_of_text`); returns the pieces and whether anything was cut.
    fn segment(&mut self, end_of_text: bool) -> (Vec<String>, bool) {
        let text = self.buf.as_str();
        let max = self.config.max_chars.max(1);
        let mut out = Vec::new();
        let mut start = skip_space(text, 0, &mut self.line_start);
        let mut pos = self.scan_from.max(start);
        let mut resume = None;
        while let Some(c) = text[pos..].chars().next() {
            let cut = if pos + c.len_utf8() - start > max {
                word_cut(text, start, pos)
            } else if c == '\n' {
                pos
            } else {
                match clause_break(text, pos, c) {
                    None => {
                        pos += c.len_utf8();
                        continue;
                    }
                    // Closing quotes or a run of marks would take it past `max`.
                    Some(found) if found.end - start > max => {
                        word_cut(text, start, floor_char_boundary(text, start + max))
                    }
                    Some(found) if !end_of_text && !settled(text, c, found.end) => {
                        resume = Some(pos);
                        break;
                    }
                    Some(found) if found.ends_sentence || self.clause_ready(start, found.end) => {
                        found.end
                    }
                    Some(found) => {
                        pos = found.end;
                        continue;
                    }
                }
            };
            self.spoken |= emit(&mut out, &text[start..cut], self.line_start);
            self.line_start = false;
            start = skip_space(text, cut, &mut self.line_start);
            pos = start;
        }
        if end_of_text && start < text.len() {
            self.spoken |= emit(&mut out, &text[start..], self.line_start);
            self.line_start = false;
            start = text.len();
        }
        let cut = start > 0;
        self.scan_from = resume.unwrap_or(text.len()) - start;
        self.buf.drain(..start);
        (out, cut)
    }

    /// Whether the clause `start..end` of `buf`, at a clause mark, is spoken.
    fn clause_ready(&self, start: usize, end: usize) -> bool {
        self.config.policy == Policy::Clause
            && (!self.spoken
                || self.buf[start..end].trim_end().len() >= self.config.min_clause_chars)
    }

    /// `buf` waited `max_wait` without a boundary: speak it up to its last
    /// word boundary, or whole if it ends a word (white space or a mark) or
    /// is a single word.
    fn cut_stalled(&mut self, now: Instant) -> Vec<String> {
        let text = self.buf.as_str();
        let body = text.trim_end();
        let whole = body.len() < text.len() || body.trim_end_matches(CLOSERS).ends_with(MARKS);
        let cut = match text.rfind(char::is_whitespace) {
            Some(i) if i > 0 && !whole => i,
            _ => text.len(),
        };
        let mut out = Vec::new();
        self.spoken |= emit(&mut out, &text[..cut], self.line_start);
        self.line_start = false;
        let start = skip_space(text, cut, &mut self.line_start);
        self.buf.drain(..start);
        self.scan_from = 0;
        self.restart_wait(now, true);
        out
    }
}

/// The first non-white-space position of `text` from `pos`; a newline on the
/// way sets `line_start`.
fn skip_space(text: &str, pos: usize, line_start: &mut bool) -> usize {
    let rest = &text[pos..];
    let body = rest.trim_start();
    if rest[..rest.len() - body.len()].contains('\n') {
        *line_start = true;
    }
    pos + rest.len() - body.len()
}

/// Whether the boundary after the mark `c`, ending at `end`, is certain.
///
/// Something must follow it (a closing quote, another `!`, or the `5` of
/// `3.5` may still come); after a `.`, the next word (before a lowercase word
/// a `.` ends nothing), or a newline.
fn settled(text: &str, c: char, end: usize) -> bool {
    let rest = &text[end..];
    if c == '.' {
        rest.contains(|c: char| !c.is_whitespace() || c == '\n')
    } else {
        !rest.is_empty()
    }
}

/// Where to cut `start..limit` for length: after its last word, or at
/// `limit` in a longer word (at least one character).
fn word_cut(text: &str, start: usize, limit: usize) -> usize {
    match text[start..limit].rfind(char::is_whitespace) {
        Some(i) if i > 0 => start + i,
        _ if limit > start => limit,
        _ => start + text[start..].chars().next().map_or(0, char::len_utf8),
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Adds `piece`, trimmed and without line markup if it starts a line, unless
/// nothing is left; returns whether it was added.
fn emit(out: &mut Vec<String>, piece: &str, line_start: bool) -> bool {
    let mut piece = piece.trim();
    if line_start {
        while let Some(rest) = after_line_marker(piece) {
            piece = rest.trim_start();
        }
    }
    if piece.is_empty() {
        return false;
    }
    out.push(piece.to_owned());
    true
}

/// What follows a Markdown bullet, numbered-item, heading or quote marker at
/// the start of `line`, if it starts with one.
fn after_line_marker(line: &str) -> Option<&str> {
    let rest = if let Some(rest) = line.strip_prefix(['-', '*', '+', '•', '>']) {
        rest
    } else if line.starts_with('#') {
        let rest = line.trim_start_matches('#');
        (line.len() - rest.len() <= 6).then_some(rest)?
    } else {
        let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if !(1..=2).contains(&digits) {
            return None;
        }
        line[digits..].strip_prefix(['.', ')'])?
    };
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

#[cfg(test)]
mod tests;
