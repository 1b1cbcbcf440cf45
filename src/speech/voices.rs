//! The voices a call may pick: the default engine and others from the models
//! folder, each loaded once, on first use, by the worker that needs it (or
//! ahead of it: `--preload-voices`, `POST /v1/warmup`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::synth::Engine;

/// Loads a voice by name (a name from [`VoiceCatalog::names`]).
pub type VoiceLoader = Box<dyn Fn(&str) -> Result<Arc<dyn Engine>> + Send + Sync>;

/// The voices calls may pick besides the default one.
pub struct VoiceCatalog {
    /// Names of the voices that can be loaded (the models folder's).
    pub names: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    pub load: VoiceLoader,
}

impl VoiceCatalog {
    /// Only the default voice.
    pub fn none() -> Self {
        Self { names: Box::new(Vec::new), load: Box::new(|name| Err(anyhow::anyhow!("no voice `{name}`"))) }
    }
}

/// The default engine and every other voice loaded so far.
pub(crate) struct Voices {
    pub default: Arc<dyn Engine>,
    loaded: Mutex<HashMap<String, Arc<dyn Engine>>>,
    pub catalog: VoiceCatalog,
}

impl Voices {
    pub fn new(default: Arc<dyn Engine>, catalog: VoiceCatalog) -> Self {
        Self { default, loaded: Mutex::new(HashMap::new()), catalog }
    }

    /// The default voice's name.
    pub fn default_name(&self) -> String {
        self.default.info().voice
    }

    /// The engine for `voice` (the default one for `None`), loading it on first use.
    pub fn engine(&self, voice: Option<&str>) -> Result<Arc<dyn Engine>> {
        self.load(voice).map(|(engine, _)| engine)
    }

    /// As [`Voices::engine`], and how long loading took when this call
    /// loaded it (`None`: it was loaded already, or is the default).
    pub fn load(&self, voice: Option<&str>) -> Result<(Arc<dyn Engine>, Option<Duration>)> {
        let Some(name) = voice.filter(|v| *v != self.default_name()) else { return Ok((self.default.clone(), None)) };
        if let Some(engine) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok((engine.clone(), None));
        }
        if !(self.catalog.names)().iter().any(|n| n == name) {
            anyhow::bail!("no voice `{name}`");
        }
        let t0 = Instant::now();
        let engine = (self.catalog.load)(name).with_context(|| format!("loading voice `{name}`"))?;
        let took = t0.elapsed();
        tracing::info!(voice = name, ms = took.as_millis() as u64, "voice loaded");
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_insert(engine.clone());
        Ok((engine, Some(took)))
    }

    /// Whether `name` is a voice a call may pick.
    pub fn has(&self, name: &str) -> bool {
        name == self.default_name() || (self.catalog.names)().iter().any(|n| n == name)
    }

    /// Every voice a call may pick, the default first.
    pub fn names(&self) -> Vec<String> {
        let default = self.default_name();
        let mut names = vec![default.clone()];
        names.extend((self.catalog.names)().into_iter().filter(|n| *n != default));
        names
    }
}
