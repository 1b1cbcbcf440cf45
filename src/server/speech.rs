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

/// One utterance to synthesize into one call.
struct Job {
    call: Arc<CallMedia>,
    utterance: UtteranceId,
    text: String,
    options: SynthOptions,
    cancel: CancelToken,
    queued: Instant,
}

/// The synthesizer as the calls see it.
pub struct Speech {
    engine: Arc<dyn Engine>,
    jobs: Mutex<Sender<Job>>,
    jitter: Arc<JitterEstimator>,
    cache: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    next_utterance: AtomicU64,
}

impl Speech {
    /// Starts `workers` synthesis threads (at least one).
    pub fn start(engine: Arc<dyn Engine>, workers: usize) -> Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let jitter = Arc::new(JitterEstimator::new());
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let engine = engine.clone();
            let jitter = jitter.clone();
            std::thread::Builder::new()
                .name(format!("voxline-synth-{i}"))
                .spawn(move || worker(&*engine, &rx, &jitter))
                .context("starting a synthesis thread")?;
        }
        Ok(Arc::new(Self { engine, jobs: Mutex::new(tx), jitter, cache: Mutex::new(HashMap::new()), next_utterance: AtomicU64::new(1) }))
    }

    /// The estimator every call's playout consults.
    pub fn jitter(&self) -> Arc<JitterEstimator> {
        self.jitter.clone()
    }

    pub fn voice(&self) -> String {
        self.engine.info().voice
    }

    /// Synthesizes `text` once, now, into the prompt cache (8 kHz mu-law).
    pub fn prepare(&self, text: &str) -> Result<()> {
        let pcmu = self.synthesize_pcmu(text, &SynthOptions::default())?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(text.to_owned(), Arc::new(pcmu));
        Ok(())
    }

    /// Queues `text` on `call` after whatever it is already saying. Cached
    /// prompts are queued whole at once; anything else streams from a worker.
    pub fn speak(&self, call: &Arc<CallMedia>, text: &str, options: SynthOptions, cancel: CancelToken) -> UtteranceId {
        let utterance = self.next_utterance.fetch_add(1, Ordering::Relaxed);
        call.playout.lock().unwrap_or_else(|e| e.into_inner()).begin(utterance);
        let cached = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
        if let Some(pcmu) = cached.filter(|_| options == SynthOptions::default()) {
            let mut playout = call.playout.lock().unwrap_or_else(|e| e.into_inner());
            playout.push(utterance, &pcmu, Instant::now());
            playout.finish(utterance);
            return utterance;
        }
        let job = Job { call: call.clone(), utterance, text: text.to_owned(), options, cancel, queued: Instant::now() };
        if let Err(mpsc::SendError(job)) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job) {
            // Workers gone (shutting down): end the utterance so nothing waits for it.
            job.call.playout.lock().unwrap_or_else(|e| e.into_inner()).finish(job.utterance);
        }
        utterance
    }

    fn synthesize_pcmu(&self, text: &str, options: &SynthOptions) -> Result<Vec<u8>> {
        let rate = self.engine.info().sample_rate;
        let mut resampler = StreamResampler::new(rate, RATE)?;
        let mut request = SynthRequest::new(text);
        request.options = options.clone();
        let mut stream = self.engine.start(request, CancelToken::new())?;
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

fn worker(engine: &dyn Engine, jobs: &Mutex<Receiver<Job>>, jitter: &JitterEstimator) {
    let rate = engine.info().sample_rate;
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
        if let Err(e) = run_job(engine, rate, job, jitter) {
            tracing::warn!(call = %call.id, utterance, error = %e, "synthesis failed");
        }
        call.playout.lock().unwrap_or_else(|e| e.into_inner()).finish(utterance);
    }
}

fn run_job(engine: &dyn Engine, rate: u32, job: Job, jitter: &JitterEstimator) -> Result<()> {
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
