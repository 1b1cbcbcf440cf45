//! Text front end: clause splitting, normalisation and phonemes.
// TEMPORARY stub until the phonemizer lands.
#[derive(Debug, thiserror::Error)]
#[error("text error")]
pub struct TextError;
