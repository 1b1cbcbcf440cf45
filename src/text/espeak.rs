//! The espeak-ng phonemizer, with Piper's conventions.
//!
//! espeak-ng is linked directly (`libespeak-ng1`, 1.51 on Debian 12), so no
//! process is spawned per clause. The library is one global, non-reentrant
//! instance: it is initialised once per process and every call goes through
//! one mutex, which also remembers the current voice so `SetVoiceByName` only
//! runs when the voice changes. The lock is taken per sentence, so concurrent
//! callers interleave sentence by sentence.
//!
//! Per sentence (see `piper/phonemize_espeak.py`): normalise the text, split
//! it into clauses, phonemize each clause in IPA, drop language-switch flags
//! such as `(en)`, append the clause's terminator (`, : ;` with a space
//! after), and NFD-decompose so that each code point is one phoneme.

use std::ffi::{CStr, CString};
use std::os::raw::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use unicode_normalization::UnicodeNormalization;

use super::clauses::{split_clauses, split_sentences, Sentence};
use super::normalize::{normalize, sanitize};
use super::words::{align, phoneme_groups};
use super::{PhonemeSentence, Phonemizer, TextError};

/// Hand-written bindings for the part of `espeak-ng/speak_lib.h` we use.
mod ffi {
    use std::os::raw::{c_char, c_int, c_void};

    /// `espeak_AUDIO_OUTPUT::AUDIO_OUTPUT_SYNCHRONOUS`.
    pub const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
    /// Return an error instead of calling `exit()` when initialisation fails.
    pub const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
    /// `espeakCHARS_UTF8`.
    pub const ESPEAK_CHARS_UTF8: c_int = 1;
    /// `espeakPHONEMES_IPA`: bit 1 of `phonememode`.
    pub const ESPEAK_PHONEMES_IPA: c_int = 0x02;
    /// `espeak_ERROR::EE_OK`.
    pub const EE_OK: c_int = 0;

    #[link(name = "espeak-ng")]
    extern "C" {
        /// Returns the sample rate, or -1 (`EE_INTERNAL_ERROR`).
        pub fn espeak_Initialize(
            output: c_int,
            buflength: c_int,
            path: *const c_char,
            options: c_int,
        ) -> c_int;
        pub fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
        /// Phonemes of the clause at `*textptr`, in a buffer valid until the
        /// next call; advances `*textptr`, or sets it to NULL at the end.
        pub fn espeak_TextToPhonemes(
            textptr: *mut *const c_void,
            textmode: c_int,
            phonememode: c_int,
        ) -> *const c_char;
    }
}

/// The process-wide espeak-ng instance.
struct Engine {
    /// The data directory given at initialisation (`None`: espeak-ng's default).
    data_dir: Option<PathBuf>,
    state: Mutex<State>,
}

/// What the mutex guards: espeak-ng itself and its current voice.
struct State {
    voice: Option<String>,
}

static ENGINE: OnceLock<Result<Engine, TextError>> = OnceLock::new();

/// Phonemizes with espeak-ng, as Piper does.
///
/// Every `EspeakPhonemizer` shares the one espeak-ng instance of the process;
/// creating one is cheap after the first.
#[derive(Clone, Copy)]
pub struct EspeakPhonemizer {
    engine: &'static Engine,
}

impl std::fmt::Debug for EspeakPhonemizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspeakPhonemizer")
            .field("data_dir", &self.engine.data_dir)
            .finish()
    }
}

impl EspeakPhonemizer {
    /// The process's espeak-ng, initialised if need be with its own data
    /// (`$ESPEAK_DATA_PATH`, else the compiled-in path,
    /// `/usr/lib/x86_64-linux-gnu/espeak-ng-data` on Debian).
    ///
    /// # Errors
    ///
    /// [`TextError::EspeakInit`] if espeak-ng cannot start; the failure is
    /// remembered for the life of the process.
    pub fn new() -> Result<Self, TextError> {
        Self::init(None)
    }

    /// The process's espeak-ng, initialised if need be with the data in `dir`
    /// (the `espeak-ng-data` directory or its parent).
    ///
    /// # Errors
    ///
    /// [`TextError::EspeakInit`] if `dir` holds no espeak-ng data or espeak-ng
    /// cannot start; [`TextError::DataDirConflict`] if espeak-ng already runs
    /// with other data (the first initialisation fixes the directory).
    pub fn with_data_dir(dir: impl AsRef<Path>) -> Result<Self, TextError> {
        Self::init(Some(dir.as_ref()))
    }

    fn init(dir: Option<&Path>) -> Result<Self, TextError> {
        // espeak-ng silently falls back to its default data when the given
        // directory lacks it, so check first (and do not let a wrong
        // directory poison the process-wide instance).
        if let Some(dir) = dir {
            if !(dir.join("phontab").is_file() || dir.join("espeak-ng-data/phontab").is_file()) {
                return Err(TextError::EspeakInit {
                    data_dir: dir.display().to_string(),
                });
            }
        }
        let engine = ENGINE
            .get_or_init(|| Engine::initialize(dir))
            .as_ref()
            .map_err(Clone::clone)?;
        match (dir, &engine.data_dir) {
            (Some(wanted), current) if current.as_deref() != Some(wanted) => {
                Err(TextError::DataDirConflict {
                    current: current
                        .as_ref()
                        .map_or("the default".into(), |d| d.display().to_string()),
                    requested: wanted.display().to_string(),
                })
            }
            _ => Ok(Self { engine }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves espeak-ng usable.
        self.engine
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Phonemizer for EspeakPhonemizer {
    /// Empty or white-space-only text, or text with nothing to say (only
    /// emoji, say), gives `Ok(vec![])`: there is nothing to synthesise and the
    /// caller decides whether that matters.
    fn phonemize(&self, text: &str, voice: &str) -> Result<Vec<PhonemeSentence>, TextError> {
        let rules = Rules::for_voice(voice);
        let mut sentences = Vec::new();
        for sentence in split_sentences(text) {
            let normalized = rules.prepare(sentence.text);
            let phonemized = {
                let mut state = self.lock();
                state.set_voice(voice)?;
                phonemize_sentence(&mut state, rules, &sentence, &normalized)
            };
            sentences.extend(phonemized);
        }
        Ok(sentences)
    }
}

/// Language-specific steps.
#[derive(Clone, Copy)]
struct Rules {
    english: bool,
}

/// Where espeak-ng 1.51's English IPA differs systematically from 1.52's,
/// which Piper's voices were trained on: 1.52 writes the `o@` of "for" and
/// "four" as `ɔːɹ`, 1.51 as `oːɹ` (and 1.52 never writes `oː` in English).
const ENGLISH_1_52_SPELLINGS: &[(&str, &str)] = &[("oːɹ", "ɔːɹ")];

impl Rules {
    fn for_voice(voice: &str) -> Self {
        let language = voice.split(['-', '_']).next().unwrap_or_default();
        Rules {
            english: language.eq_ignore_ascii_case("en"),
        }
    }

    /// Text ready for espeak-ng: [`normalize`] for English, else [`sanitize`].
    fn prepare(self, text: &str) -> String {
        if self.english {
            normalize(text)
        } else {
            sanitize(text)
        }
    }

    /// espeak-ng's IPA, spelt as 1.52 spells it.
    fn respell(self, mut ipa: String) -> String {
        if self.english {
            for (old, new) in ENGLISH_1_52_SPELLINGS {
                if ipa.contains(old) {
                    ipa = ipa.replace(old, new);
                }
            }
        }
        ipa
    }
}

/// One sentence, Piper style; `None` when it has no phonemes.
fn phonemize_sentence(
    state: &mut State,
    rules: Rules,
    sentence: &Sentence<'_>,
    normalized: &str,
) -> Option<PhonemeSentence> {
    let clauses = split_clauses(normalized);
    let mut ipa = String::new();
    let mut groups_per_clause = Vec::with_capacity(clauses.len());
    for clause in &clauses {
        // Lone punctuation is not speech: espeak-ng would read ":" as "colon".
        if !clause.text.chars().any(char::is_alphanumeric) {
            groups_per_clause.push(0);
            continue;
        }
        let phonemes = rules.respell(state.clause_phonemes(clause.text));
        groups_per_clause.push(phoneme_groups(&phonemes.chars().collect::<Vec<_>>()).1);
        if phonemes.is_empty() {
            continue;
        }
        // Piper puts nothing between clauses without a terminator (after an
        // ellipsis, say), running two words together; we keep them apart.
        if !ipa.is_empty() && !ipa.ends_with(' ') {
            ipa.push(' ');
        }
        ipa.push_str(&phonemes);
        if let Some(terminator) = clause.terminator {
            ipa.push(terminator);
            if matches!(terminator, ',' | ':' | ';') {
                ipa.push(' ');
            }
        }
    }
    let phonemes: Vec<char> = ipa.nfd().collect();
    let (groups, group_count) = phoneme_groups(&phonemes);
    if group_count == 0 {
        return None;
    }
    let mut group_phonemes = vec![Vec::new(); group_count];
    for (&p, group) in phonemes.iter().zip(&groups) {
        if let Some(g) = *group {
            group_phonemes[g].push(p);
        }
    }

    // Words clause by clause when the source and the normalised text have as
    // many clauses, else over the whole sentence.
    let by_clause = sentence.clauses.len() == clauses.len()
        && groups_per_clause.iter().sum::<usize>() == group_count;
    let (sources, groups_per_source): (Vec<&str>, Vec<usize>) = if by_clause {
        (
            sentence.clauses.iter().map(|c| c.text).collect(),
            groups_per_clause,
        )
    } else {
        (vec![sentence.text], vec![group_count])
    };
    let mut words = Vec::new();
    let mut group_words = Vec::with_capacity(group_count);
    let mut first_group = 0;
    for (source, count) in sources.into_iter().zip(groups_per_source) {
        let source: Vec<&str> = source.split_whitespace().collect();
        let groups = &group_phonemes[first_group..first_group + count];
        let (source_words, source_group_words) = align(&source, groups, |word| {
            state.clause_phonemes(&rules.prepare(word))
        });
        group_words.extend(source_group_words.into_iter().map(|w| w + words.len()));
        words.extend(source_words);
        first_group += count;
    }
    let phoneme_words = groups.iter().map(|g| g.map(|g| group_words[g])).collect();
    Some(PhonemeSentence {
        text: sentence.text.to_string(),
        phonemes,
        words,
        phoneme_words,
    })
}

impl Engine {
    fn initialize(dir: Option<&Path>) -> Result<Engine, TextError> {
        let failed = || TextError::EspeakInit {
            data_dir: dir.map_or("the default".into(), |d| d.display().to_string()),
        };
        let path = dir
            .map(|d| CString::new(d.as_os_str().as_encoded_bytes()))
            .transpose()
            .map_err(|_| failed())?;
        let path_ptr = path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        // SAFETY: called once (guarded by `ENGINE`), with a valid C string or NULL.
        let sample_rate = unsafe {
            ffi::espeak_Initialize(
                ffi::AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                path_ptr,
                ffi::ESPEAK_INITIALIZE_DONT_EXIT,
            )
        };
        if sample_rate <= 0 {
            return Err(failed());
        }
        tracing::debug!(sample_rate, data_dir = ?dir, "espeak-ng initialised");
        Ok(Engine {
            data_dir: dir.map(Path::to_path_buf),
            state: Mutex::new(State { voice: None }),
        })
    }
}

impl State {
    fn set_voice(&mut self, voice: &str) -> Result<(), TextError> {
        if self.voice.as_deref() == Some(voice) {
            return Ok(());
        }
        self.voice = None;
        let unknown = || TextError::UnknownVoice(voice.to_string());
        let name = CString::new(voice).map_err(|_| unknown())?;
        // SAFETY: espeak-ng is initialised and we hold the lock.
        if unsafe { ffi::espeak_SetVoiceByName(name.as_ptr()) } != ffi::EE_OK {
            return Err(unknown());
        }
        self.voice = Some(voice.to_string());
        Ok(())
    }

    /// IPA for `text`: espeak-ng's clauses joined by spaces, without
    /// language-switch flags. (`&mut self` proves that we hold the lock.)
    fn clause_phonemes(&mut self, text: &str) -> String {
        let Ok(text) = CString::new(text.replace('\0', " ")) else {
            return String::new();
        };
        let end = text.as_bytes().len();
        let start = text.as_ptr().cast::<c_void>();
        let mut cursor = start;
        let mut out = String::new();
        while !cursor.is_null() {
            let before = cursor;
            // SAFETY: espeak-ng is initialised, we hold the lock, and `cursor`
            // points into the NUL-terminated `text`, which outlives the loop;
            // the returned buffer is copied before the next call.
            let phonemes = unsafe {
                let phonemes = ffi::espeak_TextToPhonemes(
                    &raw mut cursor,
                    ffi::ESPEAK_CHARS_UTF8,
                    ffi::ESPEAK_PHONEMES_IPA,
                );
                (!phonemes.is_null())
                    .then(|| CStr::from_ptr(phonemes).to_string_lossy().into_owned())
            };
            if let Some(phonemes) = phonemes {
                for word in strip_language_flags(&phonemes).split_whitespace() {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
            }
            // Never loop without progress, nor past the text.
            let offset = (cursor as usize).wrapping_sub(start as usize);
            if cursor == before || (!cursor.is_null() && offset >= end) {
                break;
            }
        }
        out
    }
}

/// Removes espeak-ng's language-switch flags, such as `(en)` and `(fr)`.
fn strip_language_flags(phonemes: &str) -> String {
    let mut out = String::with_capacity(phonemes.len());
    let mut rest = phonemes;
    while let Some(open) = rest.find('(') {
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
