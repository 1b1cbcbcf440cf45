//! Speech for calls: a fixed pool of synthesis workers shared by every call,
//! feeding each call's playout buffer as chunks arrive, and a cache for fixed
//! prompts (the greeting) so a burst of new calls costs no synthesis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::audio::{encode_mulaw_into, StreamResampler};
use crate::media::{ArrivalTracker, CallMedia, JitterEstimator, UtteranceId, RATE};
use crate::synth::{AlignmentKind, CancelToken, Engine, SynthOptions, SynthRequest};

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

/// The default engine and every other voice loaded so far (each once, on
/// first use, by the synthesis thread that needs it).
struct Voices {
    default: Arc<dyn Engine>,
    loaded: Mutex<HashMap<String, Arc<dyn Engine>>>,
    catalog: VoiceCatalog,
}

impl Voices {
    fn engine(&self, voice: Option<&str>) -> Result<Arc<dyn Engine>> {
        let Some(name) = voice.filter(|v| *v != self.default.info().voice) else { return Ok(self.default.clone()) };
        if let Some(engine) = self.loaded.lock().unwrap_or_else(|e| e.into_inner()).get(name) {
            return Ok(engine.clone());
        }
        if !(self.catalog.names)().iter().any(|n| n == name) {
            anyhow::bail!("no voice `{name}`");
        }
        let t0 = Instant::now();
        let engine = (self.catalog.load)(name).with_context(|| format!("loading voice `{name}`"))?;
        tracing::info!(voice = name, ms = t0.elapsed().as_millis() as u64, "voice loaded");
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_insert(engine.clone());
        Ok(engine)
    }
}

/// One utterance to synthesize into one call.
struct Job {
    call: Arc<CallMedia>,
    voice: Option<String>,
    utterance: UtteranceId,
    text: String,
    options: SynthOptions,
    cancel: CancelToken,
    queued: Instant,
}

/// The synthesizer as the calls see it.
pub struct Speech {
    voices: Arc<Voices>,
    jobs: Mutex<Sender<Job>>,
    jitter: Arc<JitterEstimator>,
    cache: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    next_utterance: AtomicU64,
}

impl Speech {
    /// Starts `workers` synthesis threads (at least one).
    pub fn start(engine: Arc<dyn Engine>, catalog: VoiceCatalog, workers: usize) -> Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let jitter = Arc::new(JitterEstimator::new());
        let voices = Arc::new(Voices { default: engine, loaded: Mutex::new(HashMap::new()), catalog });
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let voices = voices.clone();
            let jitter = jitter.clone();
            std::thread::Builder::new()
                .name(format!("voxline-synth-{i}"))
                .spawn(move || worker(&voices, &rx, &jitter))
                .context("starting a synthesis thread")?;
        }
        Ok(Arc::new(Self { voices, jobs: Mutex::new(tx), jitter, cache: Mutex::new(HashMap::new()), next_utterance: AtomicU64::new(1) }))
    }

    /// Whether `name` is a voice a call may pick (the default one or one in the models folder).
    pub fn has_voice(&self, name: &str) -> bool {
        name == self.voice() || (self.voices.catalog.names)().iter().any(|n| n == name)
    }

    /// Every voice a call may pick, the default first.
    pub fn voice_names(&self) -> Vec<String> {
        let default = self.voice();
        let mut names = vec![default.clone()];
        names.extend((self.voices.catalog.names)().into_iter().filter(|n| *n != default));
        names
    }

    /// The estimator every call's playout consults.
    pub fn jitter(&self) -> Arc<JitterEstimator> {
        self.jitter.clone()
    }

    /// The default voice's name.
    pub fn voice(&self) -> String {
        self.voices.default.info().voice
    }

    /// Synthesizes `text` once, now, into the prompt cache (8 kHz mu-law).
    pub fn prepare(&self, text: &str) -> Result<()> {
        let pcmu = self.synthesize_pcmu(text, &SynthOptions::default())?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(text.to_owned(), Arc::new(pcmu));
        Ok(())
    }

    /// Queues `text` on `call` after whatever it is already saying. Cached
    /// prompts are queued whole at once; anything else streams from a worker.
    pub fn speak(&self, call: &Arc<CallMedia>, text: &str, voice: Option<&str>, options: SynthOptions, cancel: CancelToken) -> UtteranceId {
        let utterance = self.next_utterance.fetch_add(1, Ordering::Relaxed);
        call.playout.lock().unwrap_or_else(|e| e.into_inner()).begin(utterance);
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
        if let Some(pcmu) = cached.filter(|_| options == SynthOptions::default() && voice.is_none_or(|v| v == self.voice())) {
            let mut playout = call.playout.lock().unwrap_or_else(|e| e.into_inner());
            playout.push(utterance, &pcmu, Instant::now());
            playout.finish(utterance);
            return utterance;
        }
        let job = Job { call: call.clone(), voice: voice.map(str::to_owned), utterance, text: text.to_owned(), options, cancel, queued: Instant::now() };
        if let Err(mpsc::SendError(job)) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job) {
            // Workers gone (shutting down): end the utterance so nothing waits for it.
            job.call.playout.lock().unwrap_or_else(|e| e.into_inner()).finish(job.utterance);
        }
        utterance
    }

    fn synthesize_pcmu(&self, text: &str, options: &SynthOptions) -> Result<Vec<u8>> {
        let engine = &self.voices.default;
        let rate = engine.info().sample_rate;
        let mut resampler = StreamResampler::new(rate, RATE)?;
        let mut request = SynthRequest::new(text);
        request.options = options.clone();
        let mut stream = engine.start(request, CancelToken::new())?;
        let (mut pcm, mut out) = (Vec::new(), Vec::new());
        let mut tracker = ArrivalTracker::default();
        while let Some(chunk) = stream.next_chunk()? {
            tracker.chunk(Instant::now(), chunk.duration());
            resampler.process(&chunk.samples, &mut pcm);
        }
        resampler.flush(&mut pcm);
        encode_mulaw_into(&pcm, &mut out);
        // Streaming the prompt measured the engine like any utterance.
        if let Some(needed) = tracker.needed() {
            self.jitter.observe(needed);
        }
        Ok(out)
    }

    /// Synthesizes a few sentences through the streaming path once: loads
    /// the model's pages, and gives the jitter estimator a first measurement
    /// of this machine before any call depends on it.
    pub fn warm_up(&self) -> Result<()> {
        const TEXT: &str = "Thank you for calling. This sentence warms the voice up and measures how quickly \
            its audio arrives, so the first call starts on a measured allowance.";
        let t0 = Instant::now();
        self.synthesize_pcmu(TEXT, &SynthOptions::default())?;
        tracing::info!(ms = t0.elapsed().as_millis() as u64, jitter_wait_ms = self.jitter.target().as_millis() as u64, "synthesizer warmed up");
        Ok(())
    }
}

fn worker(voices: &Voices, jobs: &Mutex<Receiver<Job>>, jitter: &JitterEstimator) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let utterance = job.utterance;
        let call = job.call.clone();
        let result = voices.engine(job.voice.as_deref()).and_then(|engine| run_job(&*engine, job, jitter));
        if let Err(e) = result {
            tracing::warn!(call = %call.id, utterance, error = %e, "synthesis failed");
        }
        call.playout.lock().unwrap_or_else(|e| e.into_inner()).finish(utterance);
    }
}

fn run_job(engine: &dyn Engine, job: Job, jitter: &JitterEstimator) -> Result<()> {
    let rate = engine.info().sample_rate;
    if job.cancel.is_cancelled() || job.call.is_closed() {
        return Ok(());
    }
    let waited = job.queued.elapsed();
    let mut resampler = StreamResampler::new(rate, RATE)?;
    let mut request = SynthRequest::new(job.text);
    request.options = job.options;
    let mut stream = engine.start(request, job.cancel.clone())?;
    let mut tracker = ArrivalTracker::default();
    let (mut pcm, mut pcmu) = (Vec::new(), Vec::new());
    loop {
        let chunk = match stream.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(crate::synth::SynthError::Cancelled) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        pcm.clear();
        pcmu.clear();
        resampler.process(&chunk.samples, &mut pcm);
        if chunk.last {
            resampler.flush(&mut pcm);
        }
        encode_mulaw_into(&pcm, &mut pcmu);
        let now = Instant::now();
        tracker.chunk(now, chunk.duration());
        let words = chunk
            .alignments
            .iter()
            .filter(|a| a.kind == AlignmentKind::Word)
            .map(|a| (a.start_sample * RATE as u64 / rate as u64, a.text.clone()));
        let alive = {
            let mut playout = job.call.playout.lock().unwrap_or_else(|e| e.into_inner());
            playout.words(job.utterance, words);
            playout.push(job.utterance, &pcmu, now)
        };
        if !alive || job.call.is_closed() {
            // Cleared (barge-in) or hung up: stop computing audio nobody hears.
            job.cancel.cancel();
            return Ok(());
        }
    }
    if let Some(needed) = tracker.needed() {
        jitter.observe(needed);
        tracing::debug!(call = %job.call.id, utterance = job.utterance, queued_ms = waited.as_millis() as u64, needed_ms = needed.as_millis() as u64, "utterance synthesized");
    }
    Ok(())
}
