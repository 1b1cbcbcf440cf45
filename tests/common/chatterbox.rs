//! A complete Chatterbox model directory at reduced sizes, in the layout of
//! ResembleAI/chatterbox-nano, built from the parity fixtures: the tokenizer,
//! the tiny T3 (tests/chatterbox_parity_t3.rs), the reduced S3Gen + HiFT
//! (tests/chatterbox_parity_s3gen.rs) and a built-in voice, plus the
//! `voxline-chatterbox.json` that gives the reduced shapes.
//!
//! The reduced S3Gen fixture has a 100-token vocabulary; the engine speaks
//! the full 6561 (its silence token is 4299), so the token embedding is
//! widened with seeded random rows; every other weight is as the parity test
//! checked it. The built-in voice is the T3 fixture's `conds.pt`, whose S3Gen
//! part fits the reduced S3Gen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::fixture;

pub const SPEECH_VOCAB: usize = 6561;
pub const TOKENIZER_FILES: [&str; 5] =
    ["vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json", "tokenizer_config.json"];

/// The reduced S3Gen configuration at the full speech vocabulary.
pub fn s3gen_config() -> Value {
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("chatterbox/s3gen/config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = SPEECH_VOCAB.into();
    cfg
}

/// Writes the model into `dir` (created) and returns it.
pub fn tiny_model(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in TOKENIZER_FILES {
        std::fs::copy(fixture("chatterbox/tokenizer").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(fixture("chatterbox/t3/weights.safetensors"), dir.join("t3_nano_v1.safetensors")).unwrap();
    std::fs::copy(fixture("chatterbox/t3/conds.pt"), dir.join("conds.pt")).unwrap();

    let mut weights: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("chatterbox/s3gen/model.safetensors"), &Device::Cpu).unwrap();
    let name = "flow.input_embedding.weight";
    let old = weights[name].clone();
    let (rows, width) = old.dims2().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let extra: Vec<f32> = (0..(SPEECH_VOCAB - rows) * width).map(|_| rng.gen_range(-0.5..0.5)).collect();
    let extra = Tensor::from_vec(extra, (SPEECH_VOCAB - rows, width), &Device::Cpu).unwrap().to_dtype(old.dtype()).unwrap();
    weights.insert(name.into(), Tensor::cat(&[&old, &extra], 0).unwrap());
    candle_core::safetensors::save(&weights, dir.join("s3gen_meanflow.safetensors")).unwrap();

    let t3: Value = serde_json::from_str(&std::fs::read_to_string(fixture("chatterbox/t3/config.json")).unwrap()).unwrap();
    let shapes = serde_json::json!({ "t3": t3, "s3gen": s3gen_config() });
    std::fs::write(dir.join("voxline-chatterbox.json"), serde_json::to_string_pretty(&shapes).unwrap()).unwrap();
    dir.to_path_buf()
}
