//! Phonemes to model ids, as Piper's `phoneme_ids.py::phonemes_to_ids`.
//!
//! `^` (BOS), `_` (PAD), then each phoneme's ids followed by PAD, then `$`
//! (EOS). Phonemes missing from the voice's map are skipped and reported in
//! [`PhonemeIds::skipped`]. Each id also records the phoneme and word it
//! belongs to; like Piper's alignments, a phoneme owns the PAD after it, and
//! BOS with its PAD and EOS belong to nothing.

use std::collections::HashMap;

use serde::Deserialize;

use super::words::phoneme_groups;
use super::{PhonemeSentence, TextError};

/// Beginning of sentence.
pub const BOS: char = '^';
/// Padding between phonemes.
pub const PAD: char = '_';
/// End of sentence.
pub const EOS: char = '$';

/// A voice's `phoneme_id_map`: phoneme (one code point) to model ids.
///
/// Deserialises from the voice config's JSON object. Keys of more than one
/// code point (Piper's optional `vowel_clusters`) are ignored, since each of
/// our phonemes is one code point.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "HashMap<String, Vec<i64>>")]
pub struct PhonemeIdMap {
    ids: HashMap<char, Vec<i64>>,
}

/// Ids for one sentence, with each id's provenance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhonemeIds {
    /// The model's input ids.
    pub ids: Vec<i64>,
    /// Per id: index of the phoneme it comes from (its ids and the PAD after).
    pub phoneme_index: Vec<Option<usize>>,
    /// Per id: index of the word it comes from (`None` for spaces and
    /// punctuation, BOS and EOS).
    pub word_index: Vec<Option<usize>>,
    /// Phonemes missing from the map, in order, with repeats.
    pub skipped: Vec<char>,
}

impl PhonemeIdMap {
    /// Builds the map from a voice config's `phoneme_id_map` value.
    ///
    /// # Errors
    ///
    /// [`TextError::InvalidIdMap`] if `value` is not an object of arrays of
    /// integers, or lacks `^`, `_` or `$`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, TextError> {
        let map = HashMap::<String, Vec<i64>>::deserialize(value)
            .map_err(|e| TextError::InvalidIdMap(e.to_string()))?;
        Self::try_from(map)
    }

    /// The ids of one phoneme, if the voice knows it.
    pub fn get(&self, phoneme: char) -> Option<&[i64]> {
        self.ids.get(&phoneme).map(Vec::as_slice)
    }

    /// Ids for a sentence from the phonemizer, with its word provenance.
    #[must_use]
    pub fn sentence_ids(&self, sentence: &PhonemeSentence) -> PhonemeIds {
        self.build(&sentence.phonemes, |i| {
            sentence.phoneme_words.get(i).copied().flatten()
        })
    }

    /// Ids for bare phonemes; words are the runs of phonemes between spaces.
    #[must_use]
    pub fn phonemes_to_ids(&self, phonemes: &[char]) -> PhonemeIds {
        let (groups, _) = phoneme_groups(phonemes);
        self.build(phonemes, |i| groups[i])
    }

    fn build(&self, phonemes: &[char], word_of: impl Fn(usize) -> Option<usize>) -> PhonemeIds {
        let mut out = PhonemeIds::default();
        let mut push = |ids: &[i64], phoneme: Option<usize>, word: Option<usize>| {
            out.ids.extend_from_slice(ids);
            out.phoneme_index
                .extend(std::iter::repeat_n(phoneme, ids.len()));
            out.word_index.extend(std::iter::repeat_n(word, ids.len()));
        };
        // `TryFrom` makes sure BOS, PAD and EOS are present.
        let [bos, pad, eos] = [BOS, PAD, EOS].map(|c| self.get(c).unwrap_or_default());
        push(bos, None, None);
        push(pad, None, None);
        let mut skipped = Vec::new();
        for (i, &phoneme) in phonemes.iter().enumerate() {
            match self.get(phoneme) {
                Some(ids) => {
                    let word = word_of(i);
                    push(ids, Some(i), word);
                    push(pad, Some(i), word);
                }
                None => skipped.push(phoneme),
            }
        }
        push(eos, None, None);
        if !skipped.is_empty() {
            tracing::debug!(?skipped, "phonemes missing from the voice's id map");
        }
        out.skipped = skipped;
        out
    }
}

impl TryFrom<HashMap<String, Vec<i64>>> for PhonemeIdMap {
    type Error = TextError;

    fn try_from(map: HashMap<String, Vec<i64>>) -> Result<Self, TextError> {
        let ids: HashMap<char, Vec<i64>> = map
            .into_iter()
            .filter_map(|(key, ids)| {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, ids)),
                    _ => None,
                }
            })
            .collect();
        for special in [BOS, PAD, EOS] {
            if !ids.contains_key(&special) {
                return Err(TextError::InvalidIdMap(format!("no id for {special:?}")));
            }
        }
        Ok(Self { ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_map() -> PhonemeIdMap {
        let json = serde_json::json!({
            "_": [0], "^": [1], "$": [2], " ": [3], ".": [10], ",": [8],
            "h": [20], "i": [21], "ˈ": [120], "a": [14], "aɪ": [161], "x": [30, 31]
        });
        PhonemeIdMap::from_json(&json).expect("valid map")
    }

    #[test]
    fn ids_follow_piper() {
        let map = small_map();
        let phonemes: Vec<char> = "hˈi a.".chars().collect();
        let ids = map.phonemes_to_ids(&phonemes);
        assert_eq!(
            ids.ids,
            vec![1, 0, 20, 0, 120, 0, 21, 0, 3, 0, 14, 0, 10, 0, 2]
        );
        assert_eq!(
            ids.phoneme_index,
            [
                None,
                None,
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(3),
                Some(4),
                Some(4),
                Some(5),
                Some(5),
                None
            ]
        );
        assert_eq!(
            ids.word_index,
            [
                None,
                None,
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                Some(1),
                Some(1),
                None,
                None,
                None
            ]
        );
        assert!(ids.skipped.is_empty());
    }

    #[test]
    fn missing_phonemes_are_skipped_and_reported() {
        let ids = small_map().phonemes_to_ids(&['h', 'ʒ', 'x', 'ʒ']);
        assert_eq!(ids.ids, vec![1, 0, 20, 0, 30, 31, 0, 2]);
        assert_eq!(
            ids.phoneme_index,
            [
                None,
                None,
                Some(0),
                Some(0),
                Some(2),
                Some(2),
                Some(2),
                None
            ]
        );
        assert_eq!(ids.skipped, vec!['ʒ', 'ʒ']);
        assert_eq!(small_map().phonemes_to_ids(&[]).ids, vec![1, 0, 2]);
    }

    #[test]
    fn sentence_ids_use_the_sentences_words() {
        let sentence = PhonemeSentence {
            text: "hi a".into(),
            phonemes: "hi a".chars().collect(),
            words: vec!["hi a".into()],
            phoneme_words: vec![Some(0), Some(0), None, Some(0)],
        };
        let ids = small_map().sentence_ids(&sentence);
        assert_eq!(
            ids.word_index,
            [
                None,
                None,
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                Some(0),
                Some(0),
                None
            ]
        );
    }

    #[test]
    fn rejects_bad_maps() {
        assert!(PhonemeIdMap::from_json(&serde_json::json!({"_": [0], "^": [1]})).is_err());
        assert!(PhonemeIdMap::from_json(&serde_json::json!({"_": "zero"})).is_err());
        assert!(PhonemeIdMap::from_json(&serde_json::json!([1, 2])).is_err());
        let map: PhonemeIdMap =
            serde_json::from_str(r#"{"_": [0], "^": [1], "$": [2], "a": [14]}"#)
                .expect("deserialises");
        assert_eq!(map.get('a'), Some(&[14][..]));
    }
}
