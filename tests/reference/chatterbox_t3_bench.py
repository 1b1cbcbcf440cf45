#!/usr/bin/env python3
"""The reference T3 (PyPI chatterbox-tts 0.1.7, PyTorch, CPU) at Nano or Turbo
shapes with random weights: the same measurement as `voxline-t3-bench` —
prefill over a voice-sized prompt, then decode steps (GPT-2 with HF
past_key_values + speech head + inference_turbo's logits processors and
multinomial), without stopping. Prints one JSON object.

Usage: chatterbox_t3_bench.py [--preset nano|turbo] [--prompt 375] [--text 24] [--tokens 200] [--threads 2]
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from chatterbox.models.t3 import T3
from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
from chatterbox.models.t3.modules.cond_enc import T3Cond
from chatterbox.models.t3.modules.t3_config import T3Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="nano", choices=["nano", "turbo"])
    ap.add_argument("--prompt", type=int, default=375)
    ap.add_argument("--text", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    # As ChatterboxTurboTTS.from_local builds it (Nano: GPT2_small).
    hp = T3Config(text_tokens_dict_size=50276)
    small = dict(LLAMA_CONFIGS["GPT2_medium"], n_embd=768, hidden_size=768, n_head=12, n_layer=12)
    LLAMA_CONFIGS.setdefault("GPT2_small", small)
    hp.llama_config_name = "GPT2_small" if a.preset == "nano" else "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    t0 = time.perf_counter()
    t3 = T3(hp)
    del t3.tfmr.wte
    t3.eval()
    load_s = time.perf_counter() - t0

    cond = T3Cond(
        speaker_emb=torch.randn(1, 256),
        cond_prompt_speech_tokens=(torch.arange(a.prompt) * 7919 % 6561).view(1, -1),
    )
    text = (torch.arange(a.text) * 104729 % 50000).view(1, -1)
    procs = LogitsProcessorList([
        TemperatureLogitsWarper(0.8), TopKLogitsWarper(1000), TopPLogitsWarper(0.95),
        RepetitionPenaltyLogitsProcessor(1.2),
    ])
    start = hp.start_speech_token * torch.ones_like(text[:, :1])
    with torch.inference_mode():
        embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text[:, :4], speech_tokens=start)
        t3.tfmr(inputs_embeds=embeds, use_cache=True)  # warm-up
        t0 = time.perf_counter()
        cond = T3Cond(speaker_emb=cond.speaker_emb, cond_prompt_speech_tokens=cond.cond_prompt_speech_tokens)
        embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=start)
        out = t3.tfmr(inputs_embeds=embeds, use_cache=True)
        past = out.past_key_values
        logits = t3.speech_head(out.last_hidden_state[:, -1])
        prefill_s = time.perf_counter() - t0
        history = start
        generated = []
        t1 = time.perf_counter()
        for _ in range(a.tokens):
            probs = F.softmax(procs(history, logits), dim=-1)
            token = torch.multinomial(probs, num_samples=1)
            generated.append(token)
            history = torch.cat(generated, dim=1)
            out = t3.tfmr(inputs_embeds=t3.speech_emb(token), past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = t3.speech_head(out.last_hidden_state[:, -1])
        decode_s = time.perf_counter() - t1
    tps = a.tokens / decode_s
    print(json.dumps({
        "runtime": f"torch {torch.__version__}", "preset": a.preset, "threads": a.threads,
        "load_random_s": load_s, "prompt_positions": embeds.shape[1], "prefill_s": prefill_s,
        "decode_tokens": a.tokens, "decode_s": decode_s, "tokens_per_s": tps, "real_time_factor": 25.0 / tps,
    }))


if __name__ == "__main__":
    main()
