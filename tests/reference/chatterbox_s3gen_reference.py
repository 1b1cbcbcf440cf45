#!/usr/bin/env python3
"""Parity fixtures for voxline's candle port of Chatterbox's S3Gen (meanflow)
and HiFT vocoder, from the reference PyTorch modules of the PyPI package
`chatterbox-tts` (0.1.7, CPU), at reduced sizes with seeded random weights.

    /work/venv-cb/bin/python tests/reference/chatterbox_s3gen_reference.py [OUT_DIR] [--full]

OUT_DIR defaults to tests/fixtures/chatterbox/s3gen/. With `--full` the model is the
reference's own `S3Token2Wav(meanflow=True)` at the real Turbo/Nano sizes (about
200 MB of weights; not committed: `CHATTERBOX_S3GEN_FULL_DIR=OUT_DIR cargo test
--release --test chatterbox_parity_s3gen -- --ignored` checks it, and that voxline's
`S3GenConfig::turbo()` is the reference constructor's). Writes:

* `config.json`        the reduced sizes (voxline's `S3GenConfig` fields)
* `model.safetensors`  the state dict of a reduced `S3Token2Wav` (prefixes `flow.`,
                       `mel2wav.`; weight norm as `parametrizations.weight.original0/1`),
                       stored as float16; every weight is rounded to float16 *before*
                       the reference runs, so float32 reads of it are exact.
* `io.safetensors`     inputs, captured random draws and outputs (float32 / int64):
    - `hift.*`      HiFT on a random mel: `mel`, `f0`, `phase` (SineGen's initial
                    phases, [1, 9, 1]), `sine_noise` (SineGen's standard normal draw,
                    [1, 9, L]), `source`, `audio`
    - `enc.*`       conformer encoder: `tokens`, `h` (after `after_norm`), `mu` (after
                    `encoder_proj`, [1, 80, 2T])
    - `step.*`      one estimator call: `x`, `mu`, `spks`, `cond`, `t`, `r` -> `out`
    - `e2e.*`       `S3Token2Wav.inference` (2 meanflow steps, finalize=True) from speech
                    tokens and the voice in `conds.pt`: `tokens`, `z` (the CFM's
                    randn_like(mu)), `noised_mels`, `mel`, `phase`, `sine_noise`, `audio`
    - `e2e1.*`      the same tokens through `flow_inference` with one meanflow step:
                    `z`, `noised_mels`, `mel`
* `conds.pt`           a built-in-voice file in the layout `Conditionals.save` writes
                       (`{"t3": T3Cond.__dict__, "gen": ref_dict}`), small random tensors

The random draws are captured by wrapping `torch.randn`, `torch.randn_like` and
`torch.distributions.uniform.Uniform.sample` while the reference code runs; the
reference code itself runs unmodified.

Not covered: `flow.inference(finalize=False)`. In chatterbox-tts 0.1.7 it crops `h`
by `pre_lookahead_len * token_mel_ratio` frames but builds the estimator's mask from
the uncropped lengths, so it fails with a shape mismatch (CosyVoice, where the code
comes from, rebuilds the mask from the cropped length). voxline follows CosyVoice.
"""

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file

import chatterbox.models.s3gen.hifigan as hifigan_mod
from chatterbox.models.s3gen.configs import CFM_PARAMS
from chatterbox.models.s3gen.decoder import ConditionalDecoder
from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
from chatterbox.models.s3gen.hifigan import HiFTGenerator
from chatterbox.models.s3gen.s3gen import S3Token2Wav
from chatterbox.models.s3gen.transformer.upsample_encoder import (
    PreLookaheadLayer,
    Upsample1D,
    UpsampleConformerEncoder,
)

ROOT = Path(__file__).resolve().parents[2]
ARGS = [a for a in sys.argv[1:] if a != "--full"]
FULL = "--full" in sys.argv[1:]
OUT = Path(ARGS[0]) if ARGS else ROOT / "tests/fixtures/chatterbox/s3gen"

# Reduced sizes. Everything else (80 mels, 192-d x-vector, token/mel ratio 2,
# lookahead 3, HiFT rates [8,5,3] and kernels, n_fft 16 / hop 4, 9 harmonics) is real.
CFG = dict(
    vocab_size=100,
    encoder=dict(input_size=32, output_size=32, attention_heads=2, linear_units=64,
                 num_blocks=2, num_up_blocks=4),
    decoder=dict(in_channels=320, out_channels=80, channels=32, attention_head_dim=24,
                 n_blocks=1, num_mid_blocks=2, num_heads=2),
    hift=dict(in_channels=80, base_channels=32, f0_channels=32),
)
# What `S3Token2Wav(meanflow=True)` builds (for --full).
FULL_CFG = dict(
    vocab_size=6561,
    encoder=dict(input_size=512, output_size=512, attention_heads=8, linear_units=2048,
                 num_blocks=6, num_up_blocks=4),
    decoder=dict(in_channels=320, out_channels=80, channels=256, attention_head_dim=64,
                 n_blocks=4, num_mid_blocks=12, num_heads=8),
    hift=dict(in_channels=80, base_channels=512, f0_channels=512),
)


def build():
    """A reduced `S3Token2Wav(meanflow=True)` whose flow and vocoder are swapped for
    small instances of the same reference classes."""
    e, d, h = CFG["encoder"], CFG["decoder"], CFG["hift"]
    encoder = UpsampleConformerEncoder(
        input_size=e["input_size"], output_size=e["output_size"], attention_heads=e["attention_heads"],
        linear_units=e["linear_units"], num_blocks=e["num_blocks"], dropout_rate=0.1,
        positional_dropout_rate=0.1, attention_dropout_rate=0.1, normalize_before=True,
        input_layer="linear", pos_enc_layer_type="rel_pos_espnet", selfattention_layer_type="rel_selfattn",
        use_cnn_module=False, macaron_style=False,
    )
    # The reference hard-codes 512 channels for these two layers.
    encoder.pre_lookahead_layer = PreLookaheadLayer(channels=e["output_size"], pre_lookahead_len=3)
    encoder.up_layer = Upsample1D(channels=e["output_size"], out_channels=e["output_size"], stride=2)
    assert len(encoder.up_encoders) == e["num_up_blocks"]
    estimator = ConditionalDecoder(
        in_channels=d["in_channels"], out_channels=d["out_channels"], causal=True, channels=[d["channels"]],
        dropout=0.0, attention_head_dim=d["attention_head_dim"], n_blocks=d["n_blocks"],
        num_mid_blocks=d["num_mid_blocks"], num_heads=d["num_heads"], act_fn="gelu", meanflow=True,
    )
    decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
    flow = CausalMaskedDiffWithXvec(input_size=e["input_size"], vocab_size=CFG["vocab_size"],
                                    encoder=encoder, decoder=decoder)
    hift = HiFTGenerator(
        in_channels=h["in_channels"], base_channels=h["base_channels"], sampling_rate=24000,
        upsample_rates=[8, 5, 3], upsample_kernel_sizes=[16, 11, 7],
        source_resblock_kernel_sizes=[7, 7, 11], source_resblock_dilation_sizes=[[1, 3, 5]] * 3,
        f0_predictor=ConvRNNF0Predictor(in_channels=h["in_channels"], cond_channels=h["f0_channels"]),
    )
    model = S3Token2Wav(meanflow=True)
    model.flow = flow
    model.mel2wav = hift
    # Drop the full-size front end (tokenizer, CAMPPlus) from what gets saved;
    # `device`/`dtype` read the tokenizer's and the flow's parameters.
    model.speaker_encoder = None
    return model.eval()


def randomize(model, g):
    """Seeded weights at scales that keep activations in a realistic range."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("tokenizer."):
                continue
            if "original0" in name or name.endswith("alpha"):  # weight-norm gain, Snake alpha
                v = 0.6 + 0.8 * torch.rand(p.shape, generator=g)
            elif p.ndim == 1 and ("norm" in name or "out.1." in name or ".block.2." in name):  # LayerNorm
                v = (1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g)
            elif p.ndim == 1 or "pos_bias" in name:
                v = 0.05 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5
            p.copy_(v)
        hift = model.mel2wav
        # F0 in Hz: 0..~300, with some frames below the 10 Hz voicing threshold.
        hift.f0_predictor.classifier.weight.mul_(80.0)
        hift.f0_predictor.classifier.bias.fill_(0.0)
        # Keep exp(magnitude) well below its 1e2 clip.
        hift.conv_post.parametrizations.weight.original0.mul_(0.1)
        # Round every weight to float16 so the stored file reproduces it exactly.
        for _, p in model.named_parameters():
            p.copy_(p.half().float())


@contextmanager
def capture():
    """Records the reference's random draws (in call order) without changing them."""
    draws = {"randn": [], "randn_like": [], "uniform": []}
    randn, randn_like, sample = torch.randn, torch.randn_like, hifigan_mod.Uniform.sample

    def rec_randn(*a, **k):
        out = randn(*a, **k)
        draws["randn"].append(out.clone())
        return out

    def rec_randn_like(*a, **k):
        out = randn_like(*a, **k)
        draws["randn_like"].append(out.clone())
        return out

    def rec_sample(self, *a, **k):
        out = sample(self, *a, **k)
        draws["uniform"].append(out.clone())
        return out

    torch.randn, torch.randn_like, hifigan_mod.Uniform.sample = rec_randn, rec_randn_like, rec_sample
    try:
        yield draws
    finally:
        torch.randn, torch.randn_like, hifigan_mod.Uniform.sample = randn, randn_like, sample


def hift_draws(draws):
    """SineGen's initial phases and its standard normal draw ([1, 9, L])."""
    (phase,) = draws["uniform"]
    sine_noise = [d for d in draws["randn_like"] if d.dim() == 3 and d.shape[1] == 9]
    assert len(sine_noise) == 1
    return phase, sine_noise[0]


def smooth_mel(g, frames):
    """A log-mel-like random signal: smooth in time and frequency, -10..1."""
    x = torch.randn(1, 80, frames + 4, generator=g)
    x = torch.nn.functional.avg_pool1d(x, 5, 1)
    x = x + torch.linspace(0.5, -1.0, 80)[None, :, None]
    return (x * 2.5 - 4.0).clamp(-10.0, 1.0)


def main():
    global CFG
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(20260603)
    if FULL:
        CFG = FULL_CFG
        model = S3Token2Wav(meanflow=True)
        model.speaker_encoder = None
        model.eval()
    else:
        model = build()
    randomize(model, g)
    io = {}

    # --- HiFT on a random mel -------------------------------------------------
    mel = smooth_mel(g, 12)
    with torch.no_grad():  # centre the F0 classifier so some frames fall below 10 Hz (unvoiced)
        f0p = model.mel2wav.f0_predictor
        pre = f0p.classifier(f0p.condnet(mel).transpose(1, 2))
        f0p.classifier.bias.copy_((f0p.classifier.bias - pre.median() + 20.0).half().float())
    torch.manual_seed(1)
    with capture() as draws:
        audio, source = model.mel2wav.inference(speech_feat=mel)
    phase, sine_noise = hift_draws(draws)
    f0 = model.mel2wav.f0_predictor(mel)
    voiced = (f0 > 10).float().mean().item()
    print(f"hift: audio {tuple(audio.shape)} peak {audio.abs().max():.3f} clipped {(audio.abs() >= 0.99).float().mean():.3f} rms {audio.pow(2).mean().sqrt():.3f}, f0 {f0.min():.1f}..{f0.max():.1f} Hz, "
          f"voiced {voiced:.2f}")
    io.update({"hift.mel": mel, "hift.f0": f0, "hift.phase": phase, "hift.sine_noise": sine_noise,
               "hift.source": source, "hift.audio": audio})

    # --- the built-in voice (conds.pt) --------------------------------------
    n_prompt = 6
    gen = dict(
        prompt_token=torch.randint(0, CFG["vocab_size"], (1, n_prompt), generator=g),
        prompt_token_len=torch.tensor([n_prompt]),
        # (1, T, 80) as a transposed view, the layout `embed_ref` leaves it in.
        prompt_feat=smooth_mel(g, 2 * n_prompt).transpose(1, 2),
        prompt_feat_len=None,
        embedding=torch.randn(1, 192, generator=g),
    )
    t3 = dict(speaker_emb=torch.randn(1, 256, generator=g), clap_emb=None,
              cond_prompt_speech_tokens=torch.randint(0, 6561, (1, 10), generator=g),
              cond_prompt_speech_emb=None, emotion_adv=0.5)
    torch.save({"t3": t3, "gen": gen}, OUT / "conds.pt")

    # --- conformer encoder ----------------------------------------------------
    flow = model.flow
    tokens = torch.randint(0, CFG["vocab_size"], (1, 8), generator=g)
    all_tokens = torch.cat([gen["prompt_token"], tokens], dim=1)
    with torch.inference_mode():
        emb = flow.input_embedding(all_tokens)
        h, _ = flow.encoder(emb, torch.tensor([all_tokens.shape[1]]))
        mu = flow.encoder_proj(h).transpose(1, 2)
    io.update({"enc.tokens": all_tokens, "enc.h": h, "enc.mu": mu})

    # --- one estimator (meanflow decoder) call --------------------------------
    est = flow.decoder.estimator
    T = mu.shape[2]
    spks = flow.spk_embed_affine_layer(torch.nn.functional.normalize(gen["embedding"], dim=1)).detach()
    cond = torch.zeros(1, 80, T)
    cond[:, :, : 2 * n_prompt] = gen["prompt_feat"].transpose(1, 2)
    x = torch.randn(1, 80, T, generator=g)
    t, r = torch.tensor([0.25]), torch.tensor([0.75])
    with torch.inference_mode():
        out = est(x, torch.ones(1, 1, T), mu, t, spks=spks, cond=cond, r=r)
    io.update({"step.x": x, "step.mu": mu, "step.spks": spks, "step.cond": cond, "step.t": t, "step.r": r,
               "step.out": out})

    # --- end to end: S3Token2Wav.inference ------------------------------------
    torch.manual_seed(2)
    with capture() as draws:
        wav, _ = model.inference(speech_tokens=tokens[0], ref_dict=dict(gen), n_cfm_timesteps=2)
    (noised_mels,) = draws["randn"]
    z = draws["randn_like"][0]
    assert z.shape == (1, 80, T) and noised_mels.shape == (1, 80, 2 * tokens.shape[1])
    phase, sine_noise = hift_draws({"uniform": draws["uniform"], "randn_like": draws["randn_like"][1:]})
    torch.manual_seed(2)
    mel_e2e = model.flow_inference(tokens[0], ref_dict=dict(gen), n_cfm_timesteps=2, finalize=True)
    print(f"e2e: mel {tuple(mel_e2e.shape)} audio {tuple(wav.shape)} peak {wav.abs().max():.3f}")
    io.update({"e2e.tokens": tokens, "e2e.z": z, "e2e.noised_mels": noised_mels, "e2e.mel": mel_e2e,
               "e2e.phase": phase, "e2e.sine_noise": sine_noise, "e2e.audio": wav})

    # --- the same with one meanflow step (the README's count) ------------------
    torch.manual_seed(4)
    with capture() as draws:
        mel_1 = model.flow_inference(tokens[0], ref_dict=dict(gen), n_cfm_timesteps=1, finalize=True)
    io.update({"e2e1.z": draws["randn_like"][0], "e2e1.noised_mels": draws["randn"][0], "e2e1.mel": mel_1})

    # --- write ----------------------------------------------------------------
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()
             if k.startswith(("flow.", "mel2wav.")) and v.is_floating_point()}
    save_file(state, OUT / "model.safetensors")
    save_file({k: v.detach().contiguous() for k, v in io.items()}, OUT / "io.safetensors")
    (OUT / "config.json").write_text(json.dumps(CFG, indent=2) + "\n")
    n = sum(v.numel() for v in state.values())
    print(f"wrote {OUT}: {len(state)} weights ({n} values), {len(io)} io tensors")


if __name__ == "__main__":
    main()
