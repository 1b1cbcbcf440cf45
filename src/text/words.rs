//! Which source word each phoneme belongs to (best effort).
//!
//! espeak-ng writes one phoneme *group* per spoken word, separated by `' '`,
//! but groups and source words need not match one to one: `$5.99` becomes six
//! groups ("faɪv dɑːlɚz ænd naɪnti naɪn sɛnts") and espeak-ng joins some
//! function words ("ɪnðə" for "in the"). When the counts agree and every
//! word is plain letters, [`align`] pairs them in order; otherwise it
//! phonemizes each source word alone and
//! aligns those phonemes with the sentence's by edit distance, so each group
//! goes to the word whose phonemes it matches. Source words that own no group
//! are merged into a neighbour, so every entry of the resulting word list owns
//! at least one group.

/// Piper's clause terminators; they belong to no word.
pub const TERMINATORS: &[char] = &['.', ',', ':', ';', '!', '?'];

/// For each phoneme, the index of its group (run of phonemes between spaces);
/// `None` for spaces and terminators. Also returns the number of groups.
pub fn phoneme_groups(phonemes: &[char]) -> (Vec<Option<usize>>, usize) {
    let mut groups = Vec::with_capacity(phonemes.len());
    let mut count = 0;
    let mut in_group = false;
    for &p in phonemes {
        if p == ' ' {
            in_group = false;
            groups.push(None);
        } else if TERMINATORS.contains(&p) {
            groups.push(None);
        } else {
            if !in_group {
                in_group = true;
                count += 1;
            }
            groups.push(Some(count - 1));
        }
    }
    (groups, count)
}

/// Maps phoneme `groups` onto `source` words; `phonemize` gives a word's
/// phonemes on its own (called unless the words pair up one to one).
///
/// Returns the word list (source words, with neighbours that own no group
/// merged in, joined by a space) and, for each group, its index in that list,
/// in non-decreasing order. Groups without any source words map to one empty
/// word.
pub fn align(
    source: &[&str],
    groups: &[Vec<char>],
    phonemize: impl FnMut(&str) -> String,
) -> (Vec<String>, Vec<usize>) {
    if groups.is_empty() {
        return (Vec::new(), Vec::new());
    }
    if source.is_empty() {
        return (vec![String::new()], vec![0; groups.len()]);
    }
    let owners = if source.len() == groups.len() && source.iter().all(|w| is_plain(w)) {
        (0..source.len()).collect()
    } else {
        let expected: Vec<String> = source.iter().copied().map(phonemize).collect();
        owners_by_edit_distance(&expected, groups)
    };
    merge_unowned(source, &owners)
}

/// Whether espeak-ng reads `word` as one group: letters and apostrophes only,
/// punctuation around them aside. (Digits and symbols expand, and
/// abbreviations such as `i.e.` may.)
fn is_plain(word: &str) -> bool {
    let core = word.trim_matches(|c: char| !c.is_alphanumeric());
    !core.is_empty() && core.chars().all(|c| c.is_alphabetic() || c == '\'')
}

/// Builds the word list from each group's source word.
fn merge_unowned(source: &[&str], owners: &[usize]) -> (Vec<String>, Vec<usize>) {
    let mut owns = vec![false; source.len()];
    for &owner in owners {
        owns[owner] = true;
    }
    let mut words: Vec<String> = Vec::new();
    let mut entry = vec![0; source.len()];
    let mut orphans: Vec<&str> = Vec::new();
    for (i, &word) in source.iter().enumerate() {
        match words.last_mut() {
            Some(last) if !owns[i] => {
                last.push(' ');
                last.push_str(word);
            }
            _ if !owns[i] => orphans.push(word),
            _ => {
                orphans.push(word);
                words.push(orphans.join(" "));
                orphans.clear();
            }
        }
        entry[i] = words.len().saturating_sub(1);
    }
    if !orphans.is_empty() {
        // Only reachable if no word owns a group, which `owners` rules out.
        words.push(orphans.join(" "));
    }
    (words, owners.iter().map(|&owner| entry[owner]).collect())
}

/// Marks that carry no sound of their own and are left out of the alignment.
fn is_mark(c: char) -> bool {
    matches!(c, 'ˈ' | 'ˌ' | 'ː' | 'ˑ' | ' ' | '\u{300}'..='\u{36F}') || TERMINATORS.contains(&c)
}

/// For each group, the source word (index into `expected`) whose phonemes
/// its own are aligned with, by Levenshtein alignment over code points.
fn owners_by_edit_distance(expected: &[String], groups: &[Vec<char>]) -> Vec<usize> {
    // Backtrace steps.
    const DIAGONAL: u8 = 0; // a phoneme matched or substituted
    const UP: u8 = 1; // a wanted phoneme we lack
    const LEFT: u8 = 2; // an extra phoneme we have

    let want: Vec<(char, usize)> = expected
        .iter()
        .enumerate()
        .flat_map(|(word, phonemes)| {
            phonemes
                .chars()
                .filter(|&c| !is_mark(c))
                .map(move |c| (c, word))
        })
        .collect();
    let have: Vec<(char, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(group, phonemes)| {
            phonemes
                .iter()
                .filter(|&&c| !is_mark(c))
                .map(move |&c| (c, group))
        })
        .collect();

    // Edit distance with a backtrace matrix (one byte per cell).
    let width = have.len() + 1;
    let mut step = vec![LEFT; (want.len() + 1) * width];
    let mut row: Vec<usize> = (0..width).collect();
    for i in 1..=want.len() {
        let mut diagonal = row[0];
        row[0] = i;
        step[i * width] = UP;
        for j in 1..width {
            let substitute = diagonal + usize::from(want[i - 1].0 != have[j - 1].0);
            let (up, left) = (row[j] + 1, row[j - 1] + 1);
            let (cost, from) = if substitute <= up && substitute <= left {
                (substitute, DIAGONAL)
            } else if up <= left {
                (up, UP)
            } else {
                (left, LEFT)
            };
            diagonal = row[j];
            row[j] = cost;
            step[i * width + j] = from;
        }
    }

    // Votes: each of our phonemes for the word of the phoneme it aligns with.
    let mut votes: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    let (mut i, mut j) = (want.len(), have.len());
    while i > 0 && j > 0 {
        match step[i * width + j] {
            DIAGONAL => {
                votes[have[j - 1].1].push(want[i - 1].1);
                i -= 1;
                j -= 1;
            }
            UP => i -= 1,
            _ => j -= 1,
        }
    }

    // The most voted word per group (earliest on ties), kept monotonic; a
    // group without votes follows the previous one.
    let mut owners = Vec::with_capacity(groups.len());
    let mut last = 0;
    for group_votes in &votes {
        let winner = group_votes
            .iter()
            .copied()
            .max_by_key(|&w| {
                (
                    group_votes.iter().filter(|&&v| v == w).count(),
                    std::cmp::Reverse(w),
                )
            })
            .unwrap_or(last);
        last = winner.max(last).min(expected.len() - 1);
        owners.push(last);
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(phonemes: &str) -> Vec<Vec<char>> {
        phonemes.split(' ').map(|g| g.chars().collect()).collect()
    }

    /// A stand-in for espeak-ng, from a fixed lexicon.
    fn lexicon(word: &str) -> String {
        match word.trim_end_matches([',', '.']) {
            "It" => "ɪt",
            "costs" => "kˈɔsts",
            "$5.99" => "fˈaɪv dˈɑːlɚz ænd nˈaɪnti nˈaɪn sˈɛnts",
            "in" => "ˈɪn",
            "the" => "ðə",
            "house" => "hˈaʊs",
            "hi" => "hˈaɪ",
            "there" => "ðˈɛɹ",
            "Call" => "kˈɔːl",
            "(555)" => "fˈaɪv fˈaɪv fˈaɪv",
            "123-4567" => "wˈʌn tˈuː θɹˈiː fˈoːɹ fˈaɪv sˈɪks sˈɛvən",
            "now" => "nˈaʊ",
            _ => "",
        }
        .to_string()
    }

    #[test]
    fn groups_split_on_spaces_and_skip_terminators() {
        let phonemes: Vec<char> = "ab, cd ef.".chars().collect();
        let (groups, count) = phoneme_groups(&phonemes);
        assert_eq!(count, 3);
        assert_eq!(
            groups,
            vec![
                Some(0),
                Some(0),
                None,
                None,
                Some(1),
                Some(1),
                None,
                Some(2),
                Some(2),
                None
            ]
        );
    }

    #[test]
    fn equal_counts_map_one_to_one_without_phonemizing() {
        let (words, map) = align(
            &["Hello,", "world."],
            &groups("həlˈoʊ wˈɜːld"),
            |_| unreachable!(),
        );
        assert_eq!(words, vec!["Hello,", "world."]);
        assert_eq!(map, vec![0, 1]);
    }

    #[test]
    fn expansions_share_their_source_word() {
        let sentence = groups("ɪt kˈɔsts fˈaɪv dˈɑːlɚz ænd nˈaɪnti nˈaɪn sˈɛnts ɪnðə hˈaʊs");
        let (words, map) = align(
            &["It", "costs", "$5.99,", "in", "the", "house."],
            &sentence,
            lexicon,
        );
        assert_eq!(words, vec!["It", "costs", "$5.99,", "in the", "house."]);
        assert_eq!(map, vec![0, 1, 2, 2, 2, 2, 2, 2, 3, 4]);

        let phone = groups("kˈɔːl fˈaɪv fˈaɪv fˈaɪv wˈʌn tˈuː θɹˈiː fˈɔːɹ fˈaɪv sˈɪks sˈɛvən nˈaʊ");
        let (words, map) = align(&["Call", "(555)", "123-4567", "now."], &phone, lexicon);
        assert_eq!(words, vec!["Call", "(555)", "123-4567", "now."]);
        assert_eq!(map, vec![0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3]);
    }

    #[test]
    fn equal_counts_with_expansions_are_aligned() {
        // "in the 1990s": a join and an expansion cancel out.
        let lexicon = |word: &str| match word {
            "in" => "ˈɪn".to_string(),
            "the" => "ðə".to_string(),
            _ => "nˈaɪntiːn nˈaɪntiz".to_string(),
        };
        let (words, map) = align(
            &["in", "the", "1990s"],
            &groups("ɪnðə nˈaɪntiːn nˈaɪntiz"),
            lexicon,
        );
        assert_eq!(words, vec!["in the", "1990s"]);
        assert_eq!(map, vec![0, 1, 1]);
    }

    #[test]
    fn silent_words_join_a_neighbour() {
        let (words, map) = align(&["😀", "hi", "there", "🙂"], &groups("hˈaɪ ðˈɛɹ"), lexicon);
        assert_eq!(words, vec!["😀 hi", "there 🙂"]);
        assert_eq!(map, vec![0, 1]);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(align(&["a"], &[], lexicon), (vec![], vec![]));
        assert_eq!(
            align(&[], &groups("a b"), lexicon),
            (vec![String::new()], vec![0, 0])
        );
        // Nothing matches: everything goes to the first word.
        let (words, map) = align(&["—", "…"], &groups("a b c"), lexicon);
        assert_eq!(words, vec!["— …"]);
        assert_eq!(map, vec![0, 0, 0]);
    }
}
