//! Speech for calls: every live utterance of every call is a stream, and a
//! pool of synthesis workers takes the most urgent chunk of any of them.
//!
//! | step | file |
//! | --- | --- |
//! | a call asks to speak: [`Speech::speak`] queues an utterance | `mod.rs` |
//! | which chunk runs next: earliest deadline first, batched by voice | [`scheduler`] |
//! | deadlines and prefill from the engine's speed and the load | [`pacing`] |
//! | the threads that run chunks and feed each call's playout | `workers.rs` |
//! | where a chunk goes: a call's playout, or a listener outside any call ([`Speech::stream`]) | `sink.rs` |
//! | engine chunk -> 8 kHz mu-law and word offsets | [`pcmu`] |
//! | whether one more call fits, and `GET /v1/capacity` | [`admission`] |
//! | the voices a call may pick | `voices.rs` |
//!
//! Fixed prompts (the greeting) are synthesized once into a cache, so a
//! burst of new calls costs no synthesis; every call playing one shares its
//! bytes by reference (no copy per call).

pub mod admission;
pub mod pacing;
pub mod pcmu;
pub mod scheduler;
mod sink;
mod voices;
mod workers;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::media::{CallMedia, UtteranceId};
use crate::synth::{CancelToken, SynthOptions, SynthRequest};
pub use admission::{Capacity, Refusal};
use admission::{Admission, Load};
pub use pcmu::PcmuStream;
pub use scheduler::Policy;
pub use sink::Synthesized;
use sink::Sink;
pub use voices::{VoiceCatalog, VoiceLoader};
use workers::{lock, Job, Shared};

/// A stream is an utterance.
pub type StreamId = UtteranceId;

/// How synthesis is scheduled and admitted.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// Synthesis threads (at least one).
    pub workers: usize,
    pub policy: Policy,
    /// First audio a new turn should get within (p99); calls beyond what
    /// keeps it are refused.
    pub first_audio_target: Duration,
    /// Refuse calls over capacity (off: take every call, let latency grow).
    pub admission: bool,
    /// Voices loaded and warmed up at start besides the default one
    /// (`all`: every voice of the models folder); the others load on first use.
    pub preload_voices: Vec<String>,
    /// Back the synthesizer's memory with transparent huge pages once it is
    /// warmed up, and keep new memory so ([`crate::synth::huge_pages`]).
    pub huge_pages: bool,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self { workers: 1, policy: Policy::Deadline, first_audio_target: Duration::from_millis(300), admission: true, preload_voices: Vec::new(), huge_pages: true }
    }
}

/// A voice made ready by [`Speech::warm_voice`] (`POST /v1/warmup`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VoiceWarmup {
    pub voice: String,
    /// Loaded by this warm-up (false: it was loaded already).
    pub loaded: bool,
    /// Reading the model (0 when it was loaded already).
    pub load_ms: f64,
    /// The warm-up sentence through the scheduler: its first chunk, and all of it.
    pub first_chunk_ms: f64,
    pub synth_ms: f64,
    pub audio_ms: f64,
}

/// How often memory that appeared since the last pass is put on huge pages.
const HUGE_PAGES_EVERY: Duration = Duration::from_secs(10);

/// What a warm-up says: short, one sentence, every stage of the engine.
const WARM_UP_TEXT: &str = "Hello, this voice is ready.";

/// The synthesizer as the calls see it.
pub struct Speech {
    shared: Arc<Shared>,
    cache: Mutex<HashMap<String, Arc<[u8]>>>,
    next_utterance: AtomicU64,
    preload: Vec<String>,
    huge_pages: bool,
}

impl Drop for Speech {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl Speech {
    /// Starts the synthesis threads.
    pub fn start(engine: Arc<dyn crate::synth::Engine>, catalog: VoiceCatalog, config: SpeechConfig) -> Result<Arc<Self>> {
        let workers = config.workers.max(1);
        let admission = Admission::new(config.first_audio_target, config.admission);
        let shared = Arc::new(Shared::new(voices::Voices::new(engine, catalog), config.policy, workers, admission));
        for i in 0..workers {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("voxline-synth-{i}"))
                .spawn(move || workers::run(shared))
                .context("starting a synthesis thread")?;
        }
        Ok(Arc::new(Self { shared, cache: Mutex::new(HashMap::new()), next_utterance: AtomicU64::new(1), preload: config.preload_voices, huge_pages: config.huge_pages }))
    }

    /// Whether `name` is a voice a call may pick (the default one or one in the models folder).
    pub fn has_voice(&self, name: &str) -> bool {
        self.shared.voices.has(name)
    }

    /// Every voice a call may pick, the default first.
    pub fn voice_names(&self) -> Vec<String> {
        self.shared.voices.names()
    }

    /// The default voice's name.
    pub fn voice(&self) -> String {
        self.shared.voices.default_name()
    }

    /// Synthesizes `text` once, now, into the prompt cache (8 kHz mu-law).
    pub fn prepare(&self, text: &str) -> Result<()> {
        let pcmu = self.synthesize_pcmu(text)?;
        lock(&self.cache).insert(text.to_owned(), Arc::from(pcmu));
        Ok(())
    }

    /// Queues `text` on `call` after whatever it is already saying. Cached
    /// prompts are queued whole at once; anything else becomes a stream for
    /// the workers, its first chunk due now if the call is silent.
    pub fn speak(&self, call: &Arc<CallMedia>, text: &str, voice: Option<&str>, options: SynthOptions, cancel: CancelToken) -> UtteranceId {
        let utterance = self.next_utterance.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let ahead = {
            let mut playout = lock(&call.playout);
            playout.begin(utterance, Instant::now());
            playout.lead(utterance, now).unwrap_or_default()
        };
        let default = self.voice();
        let cached = lock(&self.cache).get(text).cloned();
        if let Some(pcmu) = cached.filter(|_| options == SynthOptions::default() && voice.is_none_or(|v| v == default)) {
            let mut playout = lock(&call.playout);
            playout.push_shared(utterance, pcmu, now);
            playout.finish(utterance);
            return utterance;
        }
        let mut request = SynthRequest::new(text);
        request.options = options;
        let voice = voice.map_or(default, str::to_owned);
        let job = Job::new(utterance, Sink::call(call.clone()), voice, request, cancel, now, ahead.is_zero());
        let deadline = lock(&self.shared.state).pacing.first_deadline(now, ahead);
        self.shared.submit(job, deadline);
        utterance
    }

    /// Synthesizes `text` for a listener outside any call (the TTS API): the
    /// engine's chunks at its own rate, in order, as the workers compute
    /// them. The stream is scheduled with the calls' utterances (its first
    /// chunk due now, later ones as if it were heard in real time), so it
    /// takes its turn and cannot starve a call. Dropping the receiver
    /// cancels it.
    /// `ahead`: audio the listener already has and has not heard (the
    /// clauses before this one on a streaming socket); zero for a new one.
    pub fn stream(&self, text: &str, voice: Option<&str>, options: SynthOptions, ahead: Duration) -> tokio::sync::mpsc::UnboundedReceiver<Synthesized> {
        let id = self.next_utterance.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (sink, rx) = Sink::listener(ahead, now);
        let mut request = SynthRequest::new(text);
        request.options = options;
        let voice = voice.map_or_else(|| self.voice(), str::to_owned);
        // Not a caller's turn: its first audio is not admission's measure.
        let job = Job::new(id, sink, voice, request, CancelToken::new(), now, false);
        let deadline = lock(&self.shared.state).pacing.first_deadline(now, ahead);
        self.shared.submit(job, deadline);
        rx
    }

    /// Whether one more call may come in (`live_calls` are up now).
    pub fn admit(&self, live_calls: usize) -> Result<(), Refusal> {
        let now = Instant::now();
        let state = lock(&self.shared.state);
        let load = load(&state, now, live_calls);
        state.admission.admit(now, &load)
    }

    /// The load, the headroom and the queue, for `GET /v1/capacity`.
    pub fn capacity(&self, live_calls: usize) -> Capacity {
        let now = Instant::now();
        let state = lock(&self.shared.state);
        let load = load(&state, now, live_calls);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Capacity {
            scheduler: self.shared.policy.name(),
            workers: state.pacing.workers(),
            admission: state.admission.enabled,
            calls: live_calls,
            load: load.utilization,
            max_load: state.admission.max_utilization(&load),
            load_per_call: state.admission.per_call(&load),
            headroom_calls: state.admission.headroom(&load),
            queue: state.queue.len(),
            queue_due: state.queue.due_by(now),
            rtf: state.pacing.rtf(),
            first_audio_target_ms: ms(state.admission.target),
            first_audio_p50_ms: state.admission.percentile(now, 0.5).map(ms),
            first_audio_p99_ms: state.admission.percentile(now, 0.99).map(ms),
            first_audio_samples: state.admission.samples(now),
        }
    }

    /// The whole utterance, streamed through the engine like any call's (and
    /// measured: the pacing model learns the engine's speed from it).
    fn synthesize_pcmu(&self, text: &str) -> Result<Vec<u8>> {
        let engine = &self.shared.voices.default;
        let mut phone = PcmuStream::new(engine.info().sample_rate)?;
        let mut stream = engine.start(SynthRequest::new(text), CancelToken::new())?;
        let mut out = Vec::new();
        let mut index = 0;
        let mut t0 = Instant::now();
        while let Some(chunk) = stream.next_chunk()? {
            let now = Instant::now();
            lock(&self.shared.state).pacing.chunk_done(now, index, chunk.duration(), now - t0);
            out.extend(phone.convert(&chunk).pcmu);
            index += 1;
            t0 = Instant::now();
        }
        Ok(out)
    }

    /// Synthesizes a few sentences through the streaming path once: loads
    /// the model's pages, and gives the pacing model a first measurement of
    /// this machine before any call depends on it. Then loads and warms
    /// the voices of `--preload-voices` ([`Speech::warm_voice`]), and moves
    /// what they use onto huge pages ([`Speech::keep_huge_pages`]).
    pub fn warm_up(&self) -> Result<()> {
        const TEXT: &str = "Thank you for calling. This sentence warms the voice up and measures how quickly \
            its audio arrives, so the first call starts on a measured allowance.";
        let t0 = Instant::now();
        self.synthesize_pcmu(TEXT)?;
        {
            let state = lock(&self.shared.state);
            tracing::info!(ms = t0.elapsed().as_millis() as u64, rtf = state.pacing.rtf(),
                first_chunk_ms = state.pacing.first_compute().as_millis() as u64, "synthesizer warmed up");
        }
        let names = if self.preload.iter().any(|n| n == "all") { self.voice_names() } else { self.preload.clone() };
        for name in names.iter().filter(|n| **n != self.voice()) {
            let warm = self.warm_voice(name).context("--preload-voices")?;
            tracing::info!(voice = %warm.voice, load_ms = warm.load_ms, synth_ms = warm.synth_ms, "voice preloaded");
        }
        if self.huge_pages {
            // An optimisation only: a host that refuses it still serves.
            if let Err(e) = self.keep_huge_pages() {
                tracing::warn!(error = %e, "not using huge pages");
            }
        }
        Ok(())
    }

    /// Puts the synthesizer's resident memory on transparent huge pages now,
    /// so a call's first chunk after the machine sat idle is not slowed by
    /// page walks (see [`crate::synth::huge_pages`]), and starts a thread that
    /// advises what appears later (a synthesis thread's first buffers, a
    /// voice loaded on first use) every [`HUGE_PAGES_EVERY`]; it ends with
    /// the speech.
    fn keep_huge_pages(&self) -> Result<()> {
        let t0 = Instant::now();
        let done = crate::synth::huge_pages::advise().context("advising huge pages")?;
        tracing::info!(ms = t0.elapsed().as_millis() as u64, advised_mib = done.advised >> 20, huge_mib = done.huge_kib >> 10, "huge pages");
        let shared = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("voxline-pages".into())
            .spawn(move || loop {
                std::thread::sleep(HUGE_PAGES_EVERY);
                if shared.upgrade().is_none_or(|s| s.stopped()) {
                    return;
                }
                if let Err(e) = crate::synth::huge_pages::advise() {
                    tracing::warn!(error = %e, "advising huge pages; not trying again");
                    return;
                }
            })
            .context("starting the huge-page thread")?;
        Ok(())
    }

    /// Loads `voice` if it is not yet, and synthesizes a short sentence
    /// with it through the scheduler, so the first real request pays
    /// neither the load nor a first run. Blocks: call it off the runtime.
    pub fn warm_voice(&self, voice: &str) -> Result<VoiceWarmup> {
        if !self.has_voice(voice) {
            anyhow::bail!("no voice `{voice}`; voices: {}", self.voice_names().join(", "));
        }
        let (_, loaded) = self.shared.voices.load(Some(voice))?;
        let t0 = Instant::now();
        let mut audio = self.stream(WARM_UP_TEXT, Some(voice), SynthOptions::default(), Duration::ZERO);
        let (mut first, mut length) = (None, Duration::ZERO);
        while let Some(synthesized) = audio.blocking_recv() {
            match synthesized {
                Synthesized::Chunk(chunk) => {
                    first.get_or_insert_with(|| t0.elapsed());
                    length += chunk.duration();
                }
                Synthesized::Failed(message) => anyhow::bail!("warming up voice `{voice}`: {message}"),
            }
        }
        let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
        Ok(VoiceWarmup {
            voice: voice.to_owned(),
            loaded: loaded.is_some(),
            load_ms: ms(loaded.unwrap_or_default()),
            first_chunk_ms: ms(first.unwrap_or_default()),
            synth_ms: ms(t0.elapsed()),
            audio_ms: ms(length),
        })
    }
}

fn load(state: &workers::State, now: Instant, live_calls: usize) -> Load {
    Load {
        utilization: state.pacing.utilization(now),
        live_calls,
        first_compute: state.pacing.first_compute(),
        rtf: state.pacing.rtf(),
        workers: state.pacing.workers(),
    }
}
