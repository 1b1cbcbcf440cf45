//! Chatterbox-Turbo's text side: the reference's punctuation clean-up
//! ([`punc_norm`]) and the GPT-2 byte-level BPE ([`TextTokenizer`]).
//!
//! Reference: `chatterbox/tts_turbo.py` (`punc_norm`, and
//! `AutoTokenizer.from_pretrained(ckpt_dir)` on the checkpoint's `vocab.json`,
//! `merges.txt`, `added_tokens.json`, `special_tokens_map.json`,
//! `tokenizer_config.json`; there is no `tokenizer.json`, so transformers
//! converts the slow GPT-2 tokenizer: byte-level pre-tokenizer with GPT-2's
//! split regex, BPE without dropout, no BOS/EOS added).
//!
//! The model's 19 paralinguistic tags (`[laugh]`, `[chuckle]`, `[clear throat]`,
//! ...) are added tokens: matched in the raw text before BPE, each becomes one
//! id, and the text around a tag is tokenized on its own (so `"Hi [laugh] there"`
//! gives `Hi`, `Ġ`, `[laugh]`, `Ġthere`, exactly as transformers does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::ChatterboxError;

/// The reference's `punc_norm`: capitalise the first letter, collapse runs of
/// whitespace, replace punctuation the model rarely saw, and end the text with
/// a sentence ender. Empty text becomes the reference's placeholder sentence
/// (the engine rejects empty text before it gets here).
pub fn punc_norm(text: &str) -> String {
    if text.is_empty() {
        return "You need to add some text for me to talk.".to_string();
    }
    // Capitalise first (before whitespace is collapsed, as the reference does).
    let mut chars = text.chars();
    let first = chars.next().expect("non-empty");
    let text: String = if first.is_lowercase() {
        first.to_uppercase().chain(chars).collect()
    } else {
        text.to_string()
    };
    // `" ".join(text.split())`: Python's split() also breaks at U+001C..U+001F.
    let is_py_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let mut text = text.split(is_py_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");

    const REPLACE: [(&str, &str); 9] = [
        ("…", ", "),
        (":", ","),
        ("—", "-"),
        ("–", "-"),
        (" ,", ","),
        ("“", "\""),
        ("”", "\""),
        ("‘", "'"),
        ("’", "'"),
    ];
    for (from, to) in REPLACE {
        if text.contains(from) {
            text = text.replace(from, to);
        }
    }
    let trimmed_len = text.trim_end_matches(' ').len();
    text.truncate(trimmed_len);
    if !text.ends_with(['.', '!', '?', '-', ',']) {
        text.push('.');
    }
    text
}

/// `tokenizer_config.json`, the fields that change ids.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    add_prefix_space: bool,
    #[serde(default)]
    add_bos_token: bool,
    #[serde(default)]
    model_max_length: Option<f64>,
    /// id -> token with its matching flags (newer transformers write this).
    #[serde(default)]
    added_tokens_decoder: HashMap<String, AddedTokenSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct AddedTokenSpec {
    content: String,
    #[serde(default)]
    lstrip: bool,
    #[serde(default)]
    rstrip: bool,
    #[serde(default = "yes")]
    normalized: bool,
    #[serde(default)]
    single_word: bool,
    #[serde(default)]
    special: bool,
}

fn yes() -> bool {
    true
}

/// A special token in `special_tokens_map.json`: a string or a full spec.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Plain(String),
    Spec { content: String },
    /// `additional_special_tokens`: already registered as added tokens.
    List(#[allow(dead_code)] Vec<serde_json::Value>),
}

/// GPT-2's end-of-text token, which transformers' `GPT2Tokenizer` registers as
/// its BOS, EOS and UNK by default.
const ENDOFTEXT: &str = "<|endoftext|>";

/// The Turbo/Nano text tokenizer.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// `model_max_length`: the reference truncates to it.
    max_len: Option<usize>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("vocab_size", &self.vocab_size()).field("max_len", &self.max_len).finish()
    }
}

impl TextTokenizer {
    /// Files read from a checkpoint directory.
    pub const FILES: [&'static str; 2] = ["vocab.json", "merges.txt"];

    /// Builds the tokenizer from a checkpoint directory: `vocab.json` and
    /// `merges.txt` (required), `added_tokens.json`, `special_tokens_map.json`
    /// and `tokenizer_config.json` (each optional, as for transformers).
    pub fn from_dir(dir: &Path) -> Result<Self, ChatterboxError> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        for p in [&vocab, &merges] {
            if !p.is_file() {
                return Err(ChatterboxError::MissingFile { path: p.clone(), what: "the GPT-2 tokenizer" });
            }
        }
        let bad = |path: &Path, reason: String| ChatterboxError::BadTokenizer { path: path.to_path_buf(), reason };
        let bpe = BPE::from_file(path_str(&vocab)?, path_str(&merges)?)
            .build()
            .map_err(|e| bad(&vocab, format!("cannot build BPE from vocab.json + merges.txt: {e}")))?;

        let config_path = dir.join("tokenizer_config.json");
        let config: TokenizerConfig = read_json_opt(&config_path)?.unwrap_or_default();
        if config.add_bos_token {
            return Err(bad(&config_path, "add_bos_token is set; Chatterbox-Turbo's tokenizer adds no BOS".into()));
        }

        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(config.add_prefix_space, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        inner.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));

        // Added tokens with their ids: tokenizer_config's decoder table first,
        // then added_tokens.json (plain, non-special, as transformers adds them).
        let mut added: Vec<(u32, AddedTokenSpec)> = Vec::new();
        for (id, spec) in &config.added_tokens_decoder {
            let id = id.parse::<u32>().map_err(|_| bad(&config_path, format!("added token id `{id}` is not a number")))?;
            added.push((id, spec.clone()));
        }
        let added_path = dir.join("added_tokens.json");
        let added_json: HashMap<String, u32> = read_json_opt(&added_path)?.unwrap_or_default();
        for (content, id) in added_json {
            if !added.iter().any(|(i, _)| *i == id) {
                let spec = AddedTokenSpec {
                    content,
                    lstrip: false,
                    rstrip: false,
                    normalized: true,
                    single_word: false,
                    special: false,
                };
                added.push((id, spec));
            }
        }
        added.sort_by_key(|(id, _)| *id);
        for (id, spec) in &added {
            let token = AddedToken::from(spec.content.clone(), spec.special)
                .lstrip(spec.lstrip)
                .rstrip(spec.rstrip)
                .single_word(spec.single_word)
                .normalized(spec.normalized && !spec.special);
            let added = if spec.special { inner.add_special_tokens([token]) } else { inner.add_tokens([token]) };
            added.map_err(|e| bad(&added_path, format!("cannot add token `{}`: {e}", spec.content)))?;
            let got = inner.token_to_id(&spec.content);
            if got != Some(*id) {
                return Err(bad(
                    &added_path,
                    format!("added token `{}` should have id {id} but lands at {got:?}: the files disagree", spec.content),
                ));
            }
        }

        // Special tokens (bos/eos/unk/pad) become special added tokens when the
        // vocabulary has them, so the text `<|endoftext|>` maps to its one id.
        let specials_path = dir.join("special_tokens_map.json");
        let specials: HashMap<String, SpecialToken> = read_json_opt(&specials_path)?.unwrap_or_default();
        let mut names: Vec<_> = specials.into_iter().collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let listed = names.into_iter().filter_map(|(_, tok)| match tok {
            SpecialToken::Plain(s) | SpecialToken::Spec { content: s } => Some(s),
            SpecialToken::List(_) => None,
        });
        // GPT2Tokenizer's default bos/eos/unk, special even when no file names it.
        for content in listed.chain(std::iter::once(ENDOFTEXT.to_string())) {
            if inner.token_to_id(&content).is_some() {
                inner
                    .add_special_tokens([AddedToken::from(content.clone(), true)])
                    .map_err(|e| bad(&specials_path, format!("cannot add special token `{content}`: {e}")))?;
            }
        }

        let max_len = config.model_max_length.filter(|n| (1.0..1e12).contains(n)).map(|n| n as usize);
        Ok(Self { inner, max_len })
    }

    /// Token ids of already normalised text (see [`punc_norm`]), as the
    /// reference's `tokenizer(text, truncation=True).input_ids`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ChatterboxError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ChatterboxError::Tokenize(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(max) = self.max_len.filter(|&m| ids.len() > m) {
            tracing::warn!(tokens = ids.len(), max, "text truncated to the tokenizer's model_max_length, as the reference does");
            ids.truncate(max);
        }
        Ok(ids)
    }

    /// The text of `ids` (for logs and tests).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ChatterboxError> {
        self.inner.decode(ids, false).map_err(|e| ChatterboxError::Tokenize(e.to_string()))
    }

    /// Vocabulary size with the added tokens (50276 for Turbo and Nano).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

fn path_str(p: &Path) -> Result<&str, ChatterboxError> {
    p.to_str().ok_or_else(|| ChatterboxError::BadTokenizer { path: p.to_path_buf(), reason: "path is not UTF-8".into() })
}

fn read_json_opt<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ChatterboxError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| ChatterboxError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ChatterboxError::BadTokenizer { path: PathBuf::from(path), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::punc_norm;

    #[test]
    fn punc_norm_follows_the_reference() {
        assert_eq!(punc_norm("hello world"), "Hello world.");
        assert_eq!(punc_norm("  spaced   out\ttext  "), "spaced out text.");
        assert_eq!(punc_norm("wait… what: really — yes"), "Wait,  what, really - yes.");
        assert_eq!(punc_norm("“quoted” and ‘single’"), "\"quoted\" and 'single'.");
        assert_eq!(punc_norm("a , b"), "A, b.");
        assert_eq!(punc_norm("Done!"), "Done!");
        assert_eq!(punc_norm("Trailing dash -"), "Trailing dash -");
        assert_eq!(punc_norm("Hi there [laugh]"), "Hi there [laugh].");
        assert_eq!(punc_norm("   "), ".");
        assert_eq!(punc_norm(""), "You need to add some text for me to talk.");
        assert_eq!(punc_norm("élan vital"), "Élan vital.");
    }
}
