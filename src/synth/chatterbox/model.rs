//! Chatterbox model repositories: what they hold, where they come from (a local
//! directory or the Hugging Face hub, [`crate::hub`]) and loading one into a
//! [`ChatterboxEngine`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::Deserialize;

use super::engine::{ChatterboxEngine, EngineConfig, Variant};
use super::render::{S3GenRenderer, CONDS_FILE, S3GEN_FILE};
use super::s3gen::stream::S3GenStreamConfig;
use super::s3gen::S3GenConfig;
use super::t3::T3Config;
use super::ChatterboxError;
use crate::hub::{FileSet, Hub, Progress};

/// An optional file of a model directory (or repository) giving the model's
/// shapes, for checkpoints whose sizes differ from the published Turbo and
/// Nano (fine-tunes, reduced test models): `{"t3": T3Config, "s3gen": S3GenConfig}`,
/// either part optional. The published repositories have none.
pub const SHAPES_FILE: &str = "voxline-chatterbox.json";

const TOKENIZER_OPTIONAL: [&str; 4] = ["added_tokens.json", "tokenizer_config.json", "special_tokens_map.json", SHAPES_FILE];
const TURBO_REQUIRED: [&str; 5] = ["t3_turbo_v1.safetensors", S3GEN_FILE, CONDS_FILE, "vocab.json", "merges.txt"];
const NANO_REQUIRED: [&str; 5] = ["t3_nano_v1.safetensors", S3GEN_FILE, CONDS_FILE, "vocab.json", "merges.txt"];

impl Variant {
    /// The files the engine reads from the model repository. The voice
    /// encoder (`ve.safetensors`, for cloning) is not among them.
    pub fn files(self) -> FileSet<'static> {
        let required: &'static [&'static str] = match self {
            Self::Turbo => &TURBO_REQUIRED,
            Self::Nano => &NANO_REQUIRED,
        };
        FileSet { required, optional: &TOKENIZER_OPTIONAL }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shapes {
    t3: Option<T3Config>,
    s3gen: Option<S3GenConfig>,
}

/// The shapes of the model in `dir`: the variant's, or those of its [`SHAPES_FILE`].
pub fn shapes(dir: &Path, variant: Variant) -> Result<(T3Config, S3GenConfig), ChatterboxError> {
    let path = dir.join(SHAPES_FILE);
    let shapes: Shapes = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ChatterboxError::BadCheckpoint {
            path: path.clone(),
            model: variant.engine_name().into(),
            reason: format!("not a shapes file: {e}"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Shapes::default(),
        Err(source) => return Err(ChatterboxError::Io { path, source }),
    };
    let s3gen_default = match variant {
        Variant::Turbo => S3GenConfig::turbo(),
        Variant::Nano => S3GenConfig::nano(),
    };
    Ok((shapes.t3.unwrap_or_else(|| variant.t3_config()), shapes.s3gen.unwrap_or(s3gen_default)))
}

/// Loads the engine from a model directory: T3, the tokenizer, S3Gen + HiFT
/// and the built-in voice.
pub fn load_dir(
    dir: &Path,
    variant: Variant,
    device: &Device,
    config: EngineConfig,
    stream: S3GenStreamConfig,
) -> Result<ChatterboxEngine, ChatterboxError> {
    if !dir.is_dir() {
        return Err(ChatterboxError::MissingFile { path: dir.to_path_buf(), what: "the model directory" });
    }
    let (t3, s3gen) = shapes(dir, variant)?;
    let renderer = S3GenRenderer::load_with(dir, &s3gen, device, stream)?;
    ChatterboxEngine::load_with(dir, variant.engine_name(), variant.t3_file(), &t3, Arc::new(renderer), device, config)
}

/// The model repository from the hub, downloaded into its cache where it is
/// not there yet: `repo` (the variant's own when `None`) at `revision`.
pub fn fetch(
    hub: &Hub,
    variant: Variant,
    repo: Option<&str>,
    revision: &str,
    progress: &mut dyn Progress,
) -> Result<PathBuf, ChatterboxError> {
    Ok(hub.snapshot(repo.unwrap_or(variant.repo_id()), revision, variant.files(), progress)?)
}
