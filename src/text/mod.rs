//! Text front end: clause splitting, normalisation and phonemes.
//!
//! Text flows, per sentence, through:
//!
//! 1. [`split_sentences`] (`clauses.rs`): sentences and clauses, the way
//!    espeak-ng and Piper see them, minus the false breaks after `Dr.`,
//!    `U.S.` and the like;
//! 2. [`normalize`] (`normalize.rs`): numbers, money, phone numbers, units and
//!    symbols into words where espeak-ng would misread them;
//! 3. [`EspeakPhonemizer`] (`espeak.rs`): espeak-ng over FFI, assembled with
//!    Piper's conventions into one [`PhonemeSentence`] per sentence, with the
//!    source word of each phoneme (`words.rs`);
//! 4. [`PhonemeIdMap`] (`ids.rs`): the voice's model ids, remembering which
//!    phoneme and word each id came from, so per-id durations can become
//!    phoneme and word timings.

mod clauses;
mod espeak;
mod ids;
mod normalize;
pub mod segmenter;
mod words;

pub use clauses::{
    split_clauses, split_sentences, Clause, Sentence, MAX_CLAUSE_LEN, MAX_SENTENCE_LEN,
};
pub use espeak::EspeakPhonemizer;
pub use ids::{PhonemeIdMap, PhonemeIds, BOS, EOS, PAD};
pub use normalize::{normalize, sanitize};
pub use segmenter::{Policy, Segmenter, SegmenterConfig};

/// Text to phonemes, sentence by sentence.
pub trait Phonemizer: Send + Sync {
    /// One entry per sentence of `text`, for the espeak voice `voice` (e.g. "en-us").
    ///
    /// Text with nothing to say (empty, white space, only emoji) gives
    /// `Ok(vec![])`.
    ///
    /// # Errors
    ///
    /// [`TextError::UnknownVoice`] if the phonemizer has no such voice.
    fn phonemize(&self, text: &str, voice: &str) -> Result<Vec<PhonemeSentence>, TextError>;
}

/// The phonemes of one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhonemeSentence {
    /// The source text of the sentence, as given (before normalisation).
    pub text: String,
    /// Phonemes, one Unicode code point each (NFD), with Piper's punctuation
    /// and the spaces between words.
    pub phonemes: Vec<char>,
    /// The sentence's source words, best effort: white-space-separated words
    /// of `text`, where words espeak-ng joined, or that have no phonemes, are
    /// merged with a neighbour.
    pub words: Vec<String>,
    /// Per phoneme: index into `words` (`None` for spaces and punctuation).
    pub phoneme_words: Vec<Option<usize>>,
}

/// Why text could not be phonemized.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// espeak-ng could not start, typically for want of its data.
    #[error("espeak-ng failed to initialise with data directory {data_dir}")]
    EspeakInit { data_dir: String },
    /// espeak-ng is process-wide and was initialised with other data.
    #[error("espeak-ng already uses data directory {current}, not {requested}")]
    DataDirConflict { current: String, requested: String },
    /// espeak-ng has no voice of that name.
    #[error("unknown espeak-ng voice {0:?}")]
    UnknownVoice(String),
    /// A voice's `phoneme_id_map` is malformed.
    #[error("invalid phoneme id map: {0}")]
    InvalidIdMap(String),
}
