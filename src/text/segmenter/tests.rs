use super::*;
use crate::text::split_sentences;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn segmenter(policy: Policy) -> Segmenter {
    Segmenter::new(SegmenterConfig {
        policy,
        ..SegmenterConfig::default()
    })
}

/// Pushes `tokens` 30 ms apart; returns `(token, pieces)` for every push
/// that returned something, then `("<flush>", pieces)`.
fn stream<'a>(seg: &mut Segmenter, tokens: &[&'a str]) -> Vec<(&'a str, Vec<String>)> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let out = seg.push(t0 + ms(30) * i as u32, token);
        if !out.is_empty() {
            got.push((*token, out));
        }
    }
    got.push(("<flush>", seg.flush()));
    got
}

fn expect<'a>(pairs: &[(&'a str, &[&str])]) -> Vec<(&'a str, Vec<String>)> {
    pairs
        .iter()
        .map(|(token, pieces)| (*token, pieces.iter().map(|p| (*p).to_owned()).collect()))
        .collect()
}

/// A deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `text` cut at random character boundaries into tokens of 1 to
/// `longest` characters.
fn random_tokens<'a>(rng: &mut Rng, text: &'a str, longest: usize) -> Vec<&'a str> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let take = 1 + rng.below(longest);
        let end = rest.char_indices().nth(take).map_or(rest.len(), |(i, _)| i);
        tokens.push(&rest[..end]);
        rest = &rest[end..];
    }
    tokens
}

fn without_space(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Every piece is trimmed, not empty and within `max_chars` (or a
/// single character).
#[track_caller]
fn check_pieces(pieces: &[String], max_chars: usize) {
    for piece in pieces {
        assert!(!piece.is_empty(), "empty piece in {pieces:?}");
        assert_eq!(piece.trim(), piece, "untrimmed piece");
        assert!(
            piece.len() <= max_chars || piece.chars().count() == 1,
            "{piece:?} longer than {max_chars}"
        );
    }
}

/// An LLM's answer as it streams, token by token.
#[rustfmt::skip]
const ANSWER: &[&str] = &[
    "Sure", ",", " I", " can", " help", " with", " that", ".", " Dr", ".", " Smith",
    " recommends", " 3", ".", "5", " mg", " of", " vitamin", " D", " daily", ",", " taken",
    " with", " food", ",", " ideally", " at", " breakfast", ".", " Read", " more", " at",
    " https", "://", "example", ".", "com", "/", "vitamin", "-d", ".", "html", " or",
    " write", " to", " care", "@", "example", ".", "com", ".", " Have", " a", " great",
    " day", "!",
];

#[test]
fn llm_answer_is_spoken_clause_by_clause_as_it_streams() {
    let mut seg = segmenter(Policy::Clause);
    assert_eq!(
        stream(&mut seg, ANSWER),
        expect(&[
            // The first clause of a turn needs no minimum length.
            (" I", &["Sure,"]),
            (" Dr", &["I can help with that."]),
            (
                " taken",
                &["Dr. Smith recommends 3.5 mg of vitamin D daily,"]
            ),
            // "taken with food," is shorter than 24 bytes: it runs on.
            (" Read", &["taken with food, ideally at breakfast."]),
            (
                " Have",
                &["Read more at https://example.com/vitamin-d.html or write to care@example.com."],
            ),
            // A final "!" could still be followed by "!" or a quote.
            ("<flush>", &["Have a great day!"]),
        ])
    );
    assert_eq!(seg.pending(), "");
    assert_eq!(seg.deadline(), None);
}

#[test]
fn sentence_policy_never_cuts_at_clause_marks() {
    let mut seg = segmenter(Policy::Sentence);
    assert_eq!(
        stream(&mut seg, ANSWER),
        expect(&[
            (" Dr", &["Sure, I can help with that."]),
            (
                " Read",
                &["Dr. Smith recommends 3.5 mg of vitamin D daily, taken with food, ideally at breakfast."],
            ),
            (
                " Have",
                &["Read more at https://example.com/vitamin-d.html or write to care@example.com."],
            ),
            ("<flush>", &["Have a great day!"]),
        ])
    );
    let text = "Well, yes; no: maybe — perhaps, and then, of course, the rest, which is long, long, long, very long indeed.";
    let mut rng = Rng(7);
    let t = Instant::now();
    for _ in 0..50 {
        let mut seg = segmenter(Policy::Sentence);
        let mut pieces = Vec::new();
        for token in random_tokens(&mut rng, text, 4) {
            pieces.extend(seg.push(t, token));
        }
        assert!(pieces.is_empty(), "{pieces:?}");
        assert_eq!(seg.flush(), vec![text.to_owned()]);
    }
}

#[test]
fn a_final_mark_waits_for_what_follows() {
    let t = Instant::now();
    let mut seg = segmenter(Policy::Clause);
    for token in ["Pi", " is", " 3", ".", "5", " today", ".", " "] {
        assert_eq!(seg.push(t, token), Vec::<String>::new(), "{token:?}");
    }
    // After a "." we wait for the next word: "p.m. and" is one sentence.
    assert_eq!(seg.push(t, "Next"), vec!["Pi is 3.5 today."]);
    assert_eq!(seg.pending(), "Next");

    let mut seg = segmenter(Policy::Clause);
    for token in [
        "Ask", " Dr", ".", " ", "Smith", " or", " e", ".", "g", ".", " bob", "@", "acme", ".",
        "com", " at", " 3", ":", "30", ".", "5",
    ] {
        assert_eq!(seg.push(t, token), Vec::<String>::new(), "{token:?}");
    }
    assert_eq!(seg.push(t, " Then"), Vec::<String>::new());
    assert_eq!(seg.push(t, " go"), Vec::<String>::new());
    assert_eq!(
        seg.flush(),
        vec!["Ask Dr. Smith or e.g. bob@acme.com at 3:30.5 Then go"]
    );

    let mut seg = segmenter(Policy::Clause);
    assert!(seg.push(t, "It was 5 p.m.").is_empty());
    assert!(seg.push(t, " and").is_empty());
    assert_eq!(
        seg.push(t, " late. He said \"stop."),
        vec!["It was 5 p.m. and late."]
    );
    assert!(seg.push(t, "\"").is_empty());
    assert_eq!(seg.push(t, " Yes"), vec!["He said \"stop.\""]);
    assert!(seg.push(t, "?").is_empty());
    assert!(seg.push(t, "!").is_empty());
    assert_eq!(seg.push(t, " OK"), vec!["Yes?!"]);
}

#[test]
fn max_wait_speaks_a_stalled_stream_up_to_its_last_word() {
    let t0 = Instant::now();
    let mut seg = segmenter(Policy::Clause);
    assert_eq!(seg.deadline(), None);
    for (i, token) in ["let", " me", " check", " the", " records", " for", " you"]
        .iter()
        .enumerate()
    {
        assert!(seg.push(t0 + ms(20) * i as u32, token).is_empty());
    }
    // The wait runs from the first character.
    assert_eq!(seg.deadline(), Some(t0 + ms(700)));
    assert!(seg.poll(t0 + ms(699)).is_empty());
    assert_eq!(seg.poll(t0 + ms(700)), vec!["let me check the records for"]);
    // "you" may be half a word: it waits another max_wait.
    assert_eq!(seg.pending(), "you");
    assert_eq!(seg.deadline(), Some(t0 + ms(1400)));
    assert!(seg.poll(t0 + ms(1000)).is_empty());
    assert_eq!(seg.poll(t0 + ms(1400)), vec!["you"]);
    assert_eq!(seg.deadline(), None);
    assert!(seg.poll(t0 + ms(5000)).is_empty());

    // A late timer: the next push speaks what is overdue.
    let mut seg = segmenter(Policy::Clause);
    assert!(seg.push(t0, "I think").is_empty());
    assert_eq!(seg.push(t0 + ms(800), " that"), vec!["I think"]);
    assert_eq!(seg.pending(), "that");
    assert_eq!(seg.deadline(), Some(t0 + ms(1500)));

    // A final mark is spoken whole once it has waited: "3." was a number.
    let mut seg = segmenter(Policy::Clause);
    assert_eq!(seg.push(t0, "Okay, the total is"), vec!["Okay,"]);
    assert!(seg.push(t0 + ms(300), " 3.").is_empty());
    assert_eq!(seg.deadline(), Some(t0 + ms(700)));
    assert_eq!(seg.poll(t0 + ms(700)), vec!["the total is 3."]);
    assert_eq!(seg.deadline(), None);
    // A boundary restarts the wait for the text after it.
    assert_eq!(seg.push(t0 + ms(900), "Bye. See"), vec!["Bye."]);
    assert_eq!(seg.deadline(), Some(t0 + ms(1600)));
}

#[test]
fn flush_speaks_the_rest_and_starts_a_turn() {
    let t = Instant::now();
    let mut seg = segmenter(Policy::Clause);
    assert_eq!(seg.push(t, "Hello there, how are"), vec!["Hello there,"]);
    assert_eq!(seg.flush(), vec!["how are"]);
    assert_eq!(seg.flush(), Vec::<String>::new());
    // A new turn: the first clause is short again.
    assert_eq!(seg.push(t, "Yes, and more, "), vec!["Yes,"]);
    assert_eq!(seg.flush(), vec!["and more,"]);
    assert!(seg.push(t, "  \n\t ").is_empty());
    assert_eq!(seg.flush(), Vec::<String>::new());
    assert_eq!(seg.deadline(), None);
}

#[test]
fn clear_drops_the_buffer() {
    let t = Instant::now();
    let mut seg = segmenter(Policy::Clause);
    assert_eq!(seg.push(t, "First, some text without"), vec!["First,"]);
    assert_eq!(seg.pending(), "some text without");
    assert_eq!(seg.clear(), "some text without");
    assert_eq!(seg.pending(), "");
    assert_eq!(seg.deadline(), None);
    assert!(seg.poll(t + ms(10_000)).is_empty());
    assert!(seg.flush().is_empty());
    assert_eq!(seg.push(t, "Oh, sorry. "), vec!["Oh,"]);
}

#[test]
fn newlines_end_sentences_and_list_markup_is_dropped() {
    let text = "Here are the steps:\n\n1. Unplug the router.\n2) wait ten seconds\n- Plug it back in\n* **Done** - 5 minutes\n## Notes\n> 10 people -3 degrees\n100. Not a marker\n-5 is cold\nok";
    let expected = [
        "Here are the steps:",
        "Unplug the router.",
        "wait ten seconds",
        "Plug it back in",
        "**Done** - 5 minutes",
        "Notes",
        "10 people -3 degrees",
        "100.",
        "Not a marker",
        "-5 is cold",
        "ok",
    ];
    let mut rng = Rng(3);
    let t = Instant::now();
    for (longest, policy) in [1, 2, 3, 5, 1000]
        .into_iter()
        .zip([Policy::Sentence, Policy::Clause].into_iter().cycle())
    {
        let mut seg = segmenter(policy);
        let mut pieces = Vec::new();
        for token in random_tokens(&mut rng, text, longest) {
            pieces.extend(seg.push(t, token));
        }
        pieces.extend(seg.flush());
        assert_eq!(pieces, expected, "tokens of up to {longest}");
    }
}

#[test]
fn sentences_match_split_sentences() {
    for text in [
        "Dr. Smith and Mr. Jones met Mrs. Brown on St. Patrick's day.",
        "Use e.g. this, i.e. that. Pi is 3.5 or 3.14 today.",
        "The U.S. Army and the U.K. Navy. John F. Kennedy spoke.",
        "Visit https://example.com/a.b?c=d or www.acme.co.uk today. Write to john.smith@acme.com now.",
        "It is 5 p.m. Then we go. It was 5 p.m. and late.",
        "Go to acme.com. Bye. I saw it. it was red. OK what? no",
        "He said \"stop.\" Then (quietly.) Left. Really?! Yes!!! Wait... what?",
        "这是。好的！你好？",
    ] {
        let mut seg = segmenter(Policy::Sentence);
        let mut pieces = seg.push(Instant::now(), text);
        pieces.extend(seg.flush());
        let expected: Vec<&str> = split_sentences(text).iter().map(|s| s.text).collect();
        assert_eq!(pieces, expected, "{text}");
    }
}

#[test]
fn huge_unpunctuated_input_is_cut_at_words() {
    let config = SegmenterConfig::default();
    let max = config.max_chars;
    let t = Instant::now();
    let mut seg = Segmenter::new(config.clone());
    let mut pieces = Vec::new();
    for _ in 0..5000 {
        pieces.extend(seg.push(t, " word"));
    }
    pieces.extend(seg.flush());
    check_pieces(&pieces, max);
    assert!(pieces.iter().all(|p| p.split(' ').all(|w| w == "word")));
    assert_eq!(
        pieces.iter().map(|p| p.split(' ').count()).sum::<usize>(),
        5000
    );
    assert!(pieces[..pieces.len() - 1]
        .iter()
        .all(|p| p.len() > max - "word ".len()));

    // One push of it all, and words longer than `max_chars`.
    for text in [
        "word ".repeat(20_000),
        "x".repeat(1000),
        "é".repeat(1001),
        "😀中".repeat(999),
    ] {
        let mut seg = Segmenter::new(config.clone());
        let mut pieces = seg.push(t, &text);
        assert!(seg.pending().len() <= max);
        pieces.extend(seg.flush());
        check_pieces(&pieces, max);
        assert_eq!(without_space(&pieces.concat()), without_space(&text));
    }
}

#[test]
fn multibyte_text_never_splits_a_character() {
    let text = "你好，世界。今天天气很好！😀👍🏽 ça va? Ünïcödé… «Très» bien — oui; e\u{301}té. 🇺🇸🇺🇸 مرحبا، كيف الحال؟";
    let mut rng = Rng(11);
    for max_chars in [1, 2, 3, 5, 7, 13, 160] {
        for longest in [1, 2, 4] {
            let mut seg = Segmenter::new(SegmenterConfig {
                max_chars,
                ..SegmenterConfig::default()
            });
            let t0 = Instant::now();
            let mut pieces = Vec::new();
            for (i, token) in random_tokens(&mut rng, text, longest)
                .into_iter()
                .enumerate()
            {
                let now = t0 + ms(100) * i as u32;
                pieces.extend(seg.push(now, token));
                pieces.extend(seg.poll(now));
            }
            pieces.extend(seg.flush());
            check_pieces(&pieces, max_chars);
            assert_eq!(without_space(&pieces.concat()), without_space(text));
        }
    }
}

const PARAGRAPHS: &str = "Sure, I can help with that. Dr. Smith recommends 3.5 mg daily, \
    taken with food; ideally at 7:30 a.m. before work. See https://example.com/a.b?c=d, \
    or e-mail care@example.com. The U.S. team, e.g. Mr. Jones, agreed — mostly.\n\n\
    Your order No. 5 shipped on Jan. 3 and costs $5.99, i.e. less than before! \
    It weighs 2.5 kg… about 5 lbs. Will it arrive by Friday? Probably, yes. \
    \"Great,\" she said. (It was.) Then: nothing more to say\n\
    After that we talked for a long while about nothing in particular and the words just \
    kept on coming without any punctuation at all because that is what happens sometimes \
    when a model rambles on and on\nOK.";

#[test]
fn random_token_splits_lose_and_repeat_nothing() {
    let mut rng = Rng(0x5EED);
    for round in 0..300 {
        let policy = if round % 2 == 0 {
            Policy::Clause
        } else {
            Policy::Sentence
        };
        let max_chars = [160, 40, 17][round % 3];
        let config = SegmenterConfig {
            policy,
            max_chars,
            ..SegmenterConfig::default()
        };
        let mut seg = Segmenter::new(config);
        let t0 = Instant::now();
        let mut now = t0;
        let mut pieces = Vec::new();
        // Everything handed out or dropped, in order.
        let mut said = String::new();
        let tokens = random_tokens(&mut rng, PARAGRAPHS, 1 + round % 9);
        let clear_at = (round % 5 == 0).then(|| rng.below(tokens.len()));
        for (i, token) in tokens.iter().enumerate() {
            // Mostly LLM pace, with stalls past `max_wait` now and then.
            now += match rng.below(20) {
                0 => ms(1500),
                1 => ms(650),
                _ => ms(rng.below(60) as u64),
            };
            if rng.below(4) == 0 {
                if let Some(deadline) = seg.deadline() {
                    if deadline <= now {
                        let out = seg.poll(deadline);
                        said.extend(out.iter().map(String::as_str));
                        pieces.extend(out);
                    }
                }
            }
            let out = seg.push(now, token);
            said.extend(out.iter().map(String::as_str));
            pieces.extend(out);
            if clear_at == Some(i) {
                said.push_str(&seg.clear());
            }
            assert!(seg.deadline().is_none_or(|d| d > now), "round {round}");
        }
        let out = seg.flush();
        said.extend(out.iter().map(String::as_str));
        pieces.extend(out);
        check_pieces(&pieces, max_chars);
        assert_eq!(
            without_space(&said),
            without_space(PARAGRAPHS),
            "round {round}"
        );
    }
}

#[test]
fn streaming_matches_pushing_the_whole_text() {
    let t = Instant::now();
    let whole = |policy| {
        let mut seg = segmenter(policy);
        let mut pieces = seg.push(t, PARAGRAPHS);
        pieces.extend(seg.flush());
        pieces
    };
    let mut rng = Rng(42);
    for policy in [Policy::Clause, Policy::Sentence] {
        let expected = whole(policy);
        assert!(expected.len() > 10);
        for longest in 1..=12 {
            let mut seg = segmenter(policy);
            let mut pieces = Vec::new();
            for token in random_tokens(&mut rng, PARAGRAPHS, longest) {
                pieces.extend(seg.push(t, token));
            }
            pieces.extend(seg.flush());
            assert_eq!(pieces, expected, "{policy:?}, tokens of up to {longest}");
        }
    }
}

#[test]
fn random_input_never_panics() {
    const ALPHABET: &[char] = &[
        'a', 'Z', 'é', '中', '😀', '\u{301}', '\u{200B}', '.', '.', ',', '?', '!', ':', ';', '…',
        '—', '–', '-', '*', '#', '>', '+', '•', '1', '2', '。', '，', '？', '"', '”', ')', '(',
        '@', '/', ' ', ' ', ' ', '\n', '\t', '\r', '\0',
    ];
    let mut rng = Rng(0xF00D);
    for round in 0..2000 {
        let text: String = if round % 2 == 0 {
            (0..rng.below(200))
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect()
        } else {
            let bytes: Vec<u8> = (0..rng.below(200))
                .map(|_| match rng.below(4) {
                    0 => b" .,!?\n-*1"[rng.below(9)],
                    _ => rng.next() as u8,
                })
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let max_chars = [0, 1, 3, 8, 24, 160][rng.below(6)];
        let mut seg = Segmenter::new(SegmenterConfig {
            policy: if rng.below(2) == 0 {
                Policy::Clause
            } else {
                Policy::Sentence
            },
            min_clause_chars: rng.below(30),
            max_wait: ms(rng.below(50) as u64),
            max_chars,
        });
        let t0 = Instant::now();
        let mut pieces = Vec::new();
        for (i, token) in random_tokens(&mut rng, &text, 6).into_iter().enumerate() {
            let now = t0 + ms(10) * i as u32;
            pieces.extend(seg.push(now, token));
            match rng.below(10) {
                0 => pieces.extend(seg.poll(now)),
                1 => pieces.extend(seg.flush()),
                2 => {
                    let _ = seg.clear();
                }
                _ => {}
            }
        }
        pieces.extend(seg.flush());
        check_pieces(&pieces, max_chars.max(1));
        assert!(without_space(&pieces.concat()).len() <= without_space(&text).len());
    }
}
