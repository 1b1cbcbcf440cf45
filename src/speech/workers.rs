//! The synthesis threads: each takes the most urgent work from the shared
//! [`Queue`], runs one chunk (or one batch of chunks) without holding any
//! lock, hands the audio to the call's playout, and puts the stream back with
//! its next deadline.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::admission::Admission;
use super::pacing::{Pacing, MARGIN};
use super::scheduler::{Policy, Queue};
use super::sink::Sink;
use super::voices::Voices;
use super::StreamId;
use crate::synth::{CancelToken, Engine, PcmChunk, SynthError, SynthRequest, SynthStream};

/// One live utterance.
pub(crate) struct Job {
    pub id: StreamId,
    /// Where its audio goes: a call, or a listener outside any (the TTS API).
    pub sink: Sink,
    /// The voice's name (the batching group).
    pub voice: String,
    pub request: Option<SynthRequest>,
    pub cancel: CancelToken,
    /// When its text arrived.
    pub arrived: Instant,
    /// Its call was silent when it arrived (a new turn: the caller is waiting).
    pub fresh: bool,
    started: Option<Started>,
    chunks: u32,
    /// Underrun frames of its utterance already reported to the pacing model.
    starved: u32,
    /// When its first chunk was due (its second chunk keeps that deadline:
    /// [`Pacing::deadline`]).
    first_due: Instant,
}

struct Started {
    engine: Arc<dyn Engine>,
    stream: Box<dyn SynthStream>,
}

impl Job {
    pub fn new(id: StreamId, sink: Sink, voice: String, request: SynthRequest, cancel: CancelToken, arrived: Instant, fresh: bool) -> Self {
        Self { id, sink, voice, request: Some(request), cancel, arrived, fresh, started: None, chunks: 0, starved: 0, first_due: arrived }
    }

    fn dead(&self) -> bool {
        self.cancel.is_cancelled() || self.sink.closed()
    }

    /// No more audio for it: the playout plays what it has.
    fn finish(&self) {
        self.sink.finish(self.id);
    }

    /// It failed: finished, and a listener told why.
    fn fail(&self, error: &dyn std::fmt::Display) {
        self.sink.fail(self.id, &error.to_string());
    }
}

pub(crate) struct State {
    pub queue: Queue<String>,
    pub jobs: HashMap<StreamId, Job>,
    pub pacing: Pacing,
    pub admission: Admission,
    /// Batch size per voice, learnt when its engine first runs.
    pub batch: HashMap<String, usize>,
    shutdown: bool,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    wake: Condvar,
    pub voices: Voices,
    pub policy: Policy,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(voices: Voices, policy: Policy, workers: usize, admission: Admission) -> Self {
        Self {
            state: Mutex::new(State {
                queue: Queue::new(),
                jobs: HashMap::new(),
                pacing: Pacing::new(workers),
                admission,
                batch: HashMap::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
            voices,
            policy,
        }
    }

    /// Queues a new utterance with its first chunk due at `deadline`.
    pub fn submit(&self, job: Job, deadline: Instant) {
        let mut state = lock(&self.state);
        // First come, first served: the arrival order is the only order.
        let deadline = if self.policy == Policy::Fcfs { job.arrived } else { deadline };
        let mut job = job;
        job.first_due = deadline;
        state.queue.push(job.id, job.voice.clone(), deadline, false);
        state.jobs.insert(job.id, job);
        drop(state);
        self.wake.notify_one();
    }

    pub fn stopped(&self) -> bool {
        lock(&self.state).shutdown
    }

    pub fn shutdown(&self) {
        lock(&self.state).shutdown = true;
        self.wake.notify_all();
    }

    /// The next work: the most urgent live streams (one batch). `None` at shutdown.
    fn take(&self) -> Option<Vec<Job>> {
        let mut state = lock(&self.state);
        loop {
            if state.shutdown {
                return None;
            }
            let now = Instant::now();
            let policy = self.policy;
            let State { queue, batch, pacing, .. } = &mut *state;
            let per_item = pacing.batch_item();
            let ids = queue.take(now, |voice| if policy == Policy::Fcfs { 1 } else { batch.get(voice).copied().unwrap_or(1) }, per_item);
            let mut jobs = Vec::with_capacity(ids.len());
            for id in ids {
                let Some(job) = state.jobs.remove(&id) else { continue };
                if job.dead() {
                    // Cleared or hung up while waiting: dropped without computing.
                    job.finish();
                } else {
                    jobs.push(job);
                }
            }
            if !jobs.is_empty() {
                return Some(jobs);
            }
            if state.queue.is_empty() {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// One synthesis thread.
pub(crate) fn run(shared: Arc<Shared>) {
    while let Some(mut jobs) = shared.take() {
        loop {
            let continuing = step(&shared, std::mem::take(&mut jobs));
            if shared.policy == Policy::Fcfs && !continuing.is_empty() {
                // A worker keeps its utterance to the end.
                jobs = continuing.into_iter().map(|(job, _)| job).collect();
                continue;
            }
            if !continuing.is_empty() {
                let mut state = lock(&shared.state);
                for (job, deadline) in continuing {
                    // Past its second chunk an utterance is playing (it starts once that is under way).
                    state.queue.push(job.id, job.voice.clone(), deadline, job.chunks >= 2);
                    state.jobs.insert(job.id, job);
                }
                drop(state);
                shared.wake.notify_all();
            }
            break;
        }
    }
}

/// Starts a job's engine stream on its first turn; false (and the utterance
/// finished) when it cannot start.
fn start(shared: &Shared, job: &mut Job) -> bool {
    if job.started.is_some() {
        return true;
    }
    let Some(request) = job.request.take() else { return false };
    let sink = &mut job.sink;
    let started = shared.voices.engine(Some(&job.voice)).and_then(|engine| {
        let stream = engine.start(request, job.cancel.clone())?;
        sink.prepare(engine.info().sample_rate)?;
        Ok(Started { engine, stream })
    });
    match started {
        Ok(s) => {
            let batch = s.engine.max_batch();
            lock(&shared.state).batch.insert(job.voice.clone(), batch);
            job.started = Some(s);
            true
        }
        Err(e) => {
            tracing::warn!(call = %job.sink.name(), utterance = job.id, error = %e, "synthesis failed to start");
            job.fail(&e);
            false
        }
    }
}

/// Runs one chunk of each job (one batch); returns those that go on, with
/// their next deadlines.
fn step(shared: &Shared, mut jobs: Vec<Job>) -> Vec<(Job, Instant)> {
    jobs.retain_mut(|job| {
        start(shared, job)
    });
    if jobs.is_empty() {
        return Vec::new();
    }
    let t0 = Instant::now();
    let mut first_audio = Vec::new();
    {
        // An utterance whose second chunk starts only now: if it has not begun
        // playing, it waits until that chunk can follow its first without a gap.
        let (second, batch_item) = {
            let state = lock(&shared.state);
            (state.pacing.compute_of(1), state.pacing.batch_item())
        };
        // The batch's other members are costed as chunks of their own.
        let ready_at = t0 + second + batch_item * (jobs.len() as u32 - 1) + MARGIN / 2;
        for job in jobs.iter().filter(|j| j.chunks == 1) {
            let starts = job.sink.cover(job.id, ready_at, t0);
            if let Some(starts) = starts.filter(|_| job.fresh) {
                // Its first audio is now known: admission's measure of load.
                first_audio.push(starts.saturating_duration_since(job.arrived));
            }
        }
    }
    let results: Vec<Result<Option<PcmChunk>, SynthError>> = if jobs.len() == 1 {
        vec![jobs[0].started.as_mut().map_or(Ok(None), |s| s.stream.next_chunk())]
    } else {
        let engine = jobs[0].started.as_ref().map(|s| s.engine.clone()).expect("started");
        let mut streams: Vec<&mut dyn SynthStream> =
            jobs.iter_mut().filter_map(|j| j.started.as_mut().map(|s| &mut *s.stream as &mut dyn SynthStream)).collect();
        engine.next_chunks(&mut streams)
    };
    let compute = t0.elapsed();
    let results_len = results.len();
    crate::metrics::metrics().synthesis_batch.observe(results_len as f64);
    let now = Instant::now();
    // The pacing model, read once for the batch.
    let hold = lock(&shared.state).pacing.hold(now);
    let total_audio: Duration = results.iter().filter_map(|r| r.as_ref().ok().and_then(|c| c.as_ref())).map(|c| c.duration()).sum();
    let mut observed = Vec::new();
    let mut going_on = Vec::new();
    for (mut job, result) in jobs.into_iter().zip(results) {
        let chunk = match result {
            Ok(Some(chunk)) => chunk,
            Ok(None) | Err(SynthError::Cancelled) => {
                job.finish();
                continue;
            }
            Err(e) => {
                tracing::warn!(call = %job.sink.name(), utterance = job.id, error = %e, "synthesis failed");
                job.fail(&e);
                continue;
            }
        };
        let first = job.chunks == 0;
        job.chunks += 1;
        let (audio, last) = (chunk.duration(), chunk.last);
        let delivered = job.sink.deliver(job.id, chunk, first, hold, now);
        let (alive, lead) = (delivered.alive, delivered.lead);
        // Frames the caller heard as gaps while this chunk was computed.
        let starved = delivered.starved.unwrap_or(job.starved);
        // A share of the batch's time, by audio.
        let share = if total_audio.is_zero() { compute } else { compute.mul_f64(audio.as_secs_f64() / total_audio.as_secs_f64()) };
        if !audio.is_zero() {
            crate::metrics::metrics().synthesis_rtf.observe(share.as_secs_f64() / audio.as_secs_f64());
        }
        // Late only if the caller heard it: an utterance that has not started
        // (held for its prefill or gated until this chunk) cannot be.
        let late = (starved > job.starved).then(|| crate::media::FRAME * (starved - job.starved));
        job.starved = starved;
        if let Some(late) = late {
            tracing::debug!(call = %job.sink.name(), utterance = job.id, chunk = job.chunks, late_ms = late.as_millis() as u64,
                compute_ms = share.as_millis() as u64, batch = total_audio.as_millis() as u64, "chunk arrived after its audio ran out");
        }
        if first && job.fresh {
            tracing::debug!(call = %job.sink.name(), utterance = job.id, queued_ms = t0.saturating_duration_since(job.arrived).as_millis() as u64,
                compute_ms = compute.as_millis() as u64, batch = results_len, hold_ms = hold.as_millis() as u64,
                audio_ms = audio.as_millis() as u64, "first chunk of a new turn");
            if last {
                // Complete at once: it plays now.
                first_audio.push(now.saturating_duration_since(job.arrived));
            }
        }
        observed.push((job.chunks - 1, audio, share, late));
        if !alive || job.dead() {
            // Cleared (barge-in) or hung up: stop computing audio nobody hears.
            job.cancel.cancel();
            continue;
        }
        if last {
            continue;
        }
        going_on.push((job, lead));
    }
    let mut state = lock(&shared.state);
    for (index, audio, share, late) in observed {
        state.pacing.chunk_done(now, index, audio, share);
        if let Some(late) = late {
            state.pacing.late(now, late);
        }
    }
    for latency in first_audio {
        state.admission.first_audio(now, latency);
    }
    going_on.into_iter().map(|(job, lead)| {
        let deadline = state.pacing.deadline(now, lead, job.chunks, job.first_due);
        (job, deadline)
    }).collect()
}
