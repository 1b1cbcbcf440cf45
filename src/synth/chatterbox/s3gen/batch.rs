//! Several [`S3GenStream`]s stepped together: the streams whose steps have
//! equal shapes run the flow (encoder and meanflow solver) as one batch, and
//! then the vocoder's decode, instead of one computation per stream.
//!
//! A step is prepared per stream ([`S3GenStream::prepare_flow`]: window and
//! noise), the flow runs once per group of equal windows ([`S3Flow::mel_batch`],
//! rows stacked along dimension 0), each stream takes its own row and prepares
//! its vocoder window ([`S3GenStream::prepare_vocode`]: F0 and excitation,
//! which carry per-stream state), the decode runs once per group of equal
//! windows ([`Hift::decode`]), and each stream ends its step with its row
//! ([`S3GenStream::complete`]: crossfade, fade). Each stream gets what its own
//! [`S3GenStream::push`] would give, to float rounding (tests/chatterbox_render_batch.rs).
//!
//! A stream's error stays its own: tokens are checked per stream before a
//! batch is formed, and if a batched computation fails anyway its streams are
//! run one by one.

use std::collections::HashMap;

use candle_core::{Result, Tensor, TensorId};

use super::flow::VoiceConds;
use super::stream::{FlowStep, S3GenStream};
use super::S3Gen;
use crate::synth::chatterbox::hift::stream::HiftStep;
use crate::synth::chatterbox::hift::Hift;

/// Pushes `tokens[i]` into `streams[i]`; answers as [`S3GenStream::push`]
/// would, stream by stream. `s3gen` is the model the streams were made with.
pub fn push_batch(s3gen: &S3Gen, streams: &mut [&mut S3GenStream], tokens: &[&[u32]]) -> Vec<Result<Vec<f32>>> {
    let n = streams.len();
    let mut results: Vec<Option<Result<Vec<f32>>>> = (0..n).map(|_| None).collect();

    // Tokens in; the streams with a complete chunk prepare their flow step.
    let mut flow_steps: Vec<Option<FlowStep>> = (0..n).map(|_| None).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let due = stream.add(tokens.get(i).copied().unwrap_or_default());
        match due.and_then(|due| if due { stream.prepare_flow(false).map(Some) } else { Ok(None) }) {
            Ok(Some(step)) => flow_steps[i] = Some(step),
            Ok(None) => results[i] = Some(Ok(Vec::new())),
            Err(e) => results[i] = Some(Err(e)),
        }
    }

    // The flow, once per group of equal shapes.
    let mut mels: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
    for group in groups(&flow_steps, |i, step| step.x0.as_ref().map(|_| flow_key(streams[i].voice(), streams[i].window(step).len()))) {
        match flow_group(s3gen, streams, &flow_steps, &group) {
            Ok(rows) => group.iter().zip(rows).for_each(|(&i, mel)| mels[i] = Some(mel)),
            Err(_) => {
                for &i in &group {
                    let step = flow_steps[i].as_ref().expect("grouped steps exist");
                    let x0 = step.x0.as_ref().expect("grouped steps have noise");
                    let mel = s3gen.flow.mel(streams[i].voice(), streams[i].window(step), x0, s3gen.config().n_timesteps, false);
                    match mel {
                        Ok(mel) => mels[i] = Some(mel),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
            }
        }
    }

    // Each stream takes its mel and prepares its vocoder window.
    let mut vocode_steps: Vec<Option<HiftStep>> = (0..n).map(|_| None).collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let Some(step) = flow_steps[i].take() else { continue };
        if results[i].is_some() {
            continue;
        }
        match stream.prepare_vocode(&step, mels[i].as_ref()) {
            Ok(v) => vocode_steps[i] = Some(v),
            Err(e) => results[i] = Some(Err(e)),
        }
    }

    // The decode, once per group of equal windows; each stream ends its step.
    let mut audio: Vec<Option<Vec<f32>>> = (0..n).map(|_| None).collect();
    let key = |_: usize, step: &HiftStep| match step {
        HiftStep::Vocode(v) => Some(v.mel.dims().to_vec()),
        HiftStep::Done(_) => None,
    };
    for group in groups(&vocode_steps, key) {
        match decode_group(&s3gen.hift, &vocode_steps, &group) {
            Ok(rows) => group.iter().zip(rows).for_each(|(&i, row)| audio[i] = Some(row)),
            Err(_) => {
                for &i in &group {
                    match decode_group(&s3gen.hift, &vocode_steps, &[i]) {
                        Ok(mut rows) => audio[i] = rows.pop(),
                        Err(e) => results[i] = Some(Err(e)),
                    }
                }
            }
        }
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let Some(step) = vocode_steps[i].take() else { continue };
        if results[i].is_none() {
            results[i] = Some(stream.complete(step, audio[i].as_deref()));
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Ok(Vec::new()))).collect()
}

/// Streams share a flow batch when they share the voice (the same tensors)
/// and their windows have the same number of tokens.
type FlowKey = (TensorId, TensorId, Vec<u32>, usize);

fn flow_key(voice: &VoiceConds, window: usize) -> FlowKey {
    (voice.prompt_feat.id(), voice.embedding.id(), voice.prompt_tokens.clone(), window)
}

/// Indices of the `Some` items, grouped by `key` (items without a key are
/// skipped), in first-appearance order.
fn groups<T, K: std::hash::Hash + Eq>(items: &[Option<T>], key: impl Fn(usize, &T) -> Option<K>) -> Vec<Vec<usize>> {
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(k) = item.as_ref().and_then(|it| key(i, it)) else { continue };
        let g = *index.entry(k).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[g].push(i);
    }
    order
}

/// The flow for one group: its rows `[1, 80, frames]`, in group order.
fn flow_group(s3gen: &S3Gen, streams: &[&mut S3GenStream], steps: &[Option<FlowStep>], group: &[usize]) -> Result<Vec<Tensor>> {
    let mut windows = Vec::with_capacity(group.len());
    let mut x0 = Vec::with_capacity(group.len());
    for &i in group {
        let step = steps[i].as_ref().expect("grouped steps exist");
        windows.push(streams[i].window(step));
        x0.push(step.x0.clone().expect("grouped steps have noise"));
    }
    let voice = streams[group[0]].voice();
    let mel = s3gen.flow.mel_batch(voice, &windows, &Tensor::cat(&x0, 0)?, s3gen.config().n_timesteps, false)?;
    (0..group.len()).map(|r| mel.narrow(0, r, 1)).collect()
}

/// The vocoder decode for one group: each row's samples, in group order.
fn decode_group(hift: &Hift, steps: &[Option<HiftStep>], group: &[usize]) -> Result<Vec<Vec<f32>>> {
    let (mut mels, mut sources) = (Vec::with_capacity(group.len()), Vec::with_capacity(group.len()));
    for &i in group {
        if let Some(HiftStep::Vocode(v)) = &steps[i] {
            mels.push(&v.mel);
            sources.push(&v.source);
        }
    }
    let audio = hift.decode(&Tensor::cat(&mels, 0)?, &Tensor::cat(&sources, 0)?)?;
    audio.to_vec2()
}
