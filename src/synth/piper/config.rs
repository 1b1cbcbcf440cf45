//! A Piper voice's `NAME.onnx.json`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::vits::Scales;
use super::PiperError;

#[derive(Debug, Clone, Deserialize)]
pub struct VoiceConfig {
    pub audio: AudioConfig,
    #[serde(default)]
    pub espeak: EspeakConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default = "default_phoneme_type")]
    pub phoneme_type: String,
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    pub num_symbols: Option<usize>,
    #[serde(default = "one")]
    pub num_speakers: usize,
    #[serde(default)]
    pub speaker_id_map: HashMap<String, u32>,
    #[serde(default)]
    pub language: Option<LanguageConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    pub sample_rate: u32,
    #[serde(default)]
    pub quality: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EspeakConfig {
    pub voice: String,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self { voice: "en-us".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InferenceConfig {
    #[serde(default = "d_noise_scale")]
    pub noise_scale: f32,
    #[serde(default = "d_length_scale")]
    pub length_scale: f32,
    #[serde(default = "d_noise_w")]
    pub noise_w: f32,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        let s = Scales::default();
        Self { noise_scale: s.noise_scale, length_scale: s.length_scale, noise_w: s.noise_w }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LanguageConfig {
    #[serde(default)]
    pub code: Option<String>,
}

fn default_phoneme_type() -> String {
    "espeak".into()
}
fn one() -> usize {
    1
}
fn d_noise_scale() -> f32 {
    Scales::default().noise_scale
}
fn d_length_scale() -> f32 {
    Scales::default().length_scale
}
fn d_noise_w() -> f32 {
    Scales::default().noise_w
}

impl VoiceConfig {
    pub fn read(path: &Path) -> Result<Self, PiperError> {
        let text = std::fs::read_to_string(path).map_err(|source| PiperError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|reason| PiperError::BadConfig { path: path.to_path_buf(), reason })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: VoiceConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if cfg.audio.sample_rate < 4000 || cfg.audio.sample_rate > 192_000 {
            return Err(format!("audio.sample_rate {} is not a plausible rate", cfg.audio.sample_rate));
        }
        if cfg.phoneme_id_map.is_empty() {
            return Err("phoneme_id_map is empty".into());
        }
        if cfg.phoneme_type != "espeak" {
            return Err(format!(
                "phoneme_type `{}` is not supported yet (only espeak voices)",
                cfg.phoneme_type
            ));
        }
        Ok(cfg)
    }

    /// The voice's default scales.
    pub fn scales(&self) -> Scales {
        Scales {
            noise_scale: self.inference.noise_scale,
            length_scale: self.inference.length_scale,
            noise_w: self.inference.noise_w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = VoiceConfig::parse(r#"{"audio":{"sample_rate":22050},"phoneme_id_map":{"_":[0]}}"#).unwrap();
        assert_eq!(c.num_speakers, 1);
        assert_eq!(c.espeak.voice, "en-us");
        assert_eq!(c.scales(), Scales::default());
    }

    #[test]
    fn wrong_configs_say_what_is_wrong() {
        assert!(VoiceConfig::parse("{}").unwrap_err().contains("audio"));
        assert!(VoiceConfig::parse("not json").is_err());
        let e = VoiceConfig::parse(r#"{"audio":{"sample_rate":22050},"phoneme_id_map":{}}"#).unwrap_err();
        assert!(e.contains("phoneme_id_map"), "{e}");
        let e = VoiceConfig::parse(r#"{"audio":{"sample_rate":22050},"phoneme_type":"text","phoneme_id_map":{"a":[1]}}"#)
            .unwrap_err();
        assert!(e.contains("phoneme_type"), "{e}");
    }
}
