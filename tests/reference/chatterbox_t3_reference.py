#!/usr/bin/env python3
"""Reference data for voxline's candle port of Chatterbox-Turbo's text side and T3.

Builds the reference modules from the PyPI package `chatterbox-tts` (0.1.7,
PyTorch, CPU; transformers 5.2.0) and writes what tests/chatterbox_parity_t3.rs
compares against:

tokenizer/ (tests/fixtures/chatterbox/tokenizer/)
    A small GPT-2-style byte-level BPE (vocab.json, merges.txt: trained here with
    the `tokenizers` package on the corpus below, plus `<|endoftext|>` last, as
    in GPT-2), the model's 19 paralinguistic tags in added_tokens.json, and
    tokenizer_config.json / special_tokens_map.json in GPT-2's form. The
    reference path is exactly the one `ChatterboxTurboTTS` uses:
    `AutoTokenizer.from_pretrained(dir)` and `tokenizer(punc_norm(text)).input_ids`.
    tokenizer_config_decoder_table.json: a tokenizer_config.json in the form newer
    transformers write (an added_tokens_decoder table), checked to give the same ids.
    expected.json: for each string, punc_norm's output, the ids of the
    normalised text, and the ids of the raw string (both with truncation=True,
    as the reference tokenizes: one string is past model_max_length).

t3/ (tests/fixtures/chatterbox/t3/)
    T3 built as `ChatterboxTurboTTS.from_local` builds it (input_pos_emb=None,
    no perceiver, no emotion input, GPT-2 backbone), at reduced sizes: a GPT-2 of
    2 layers, width 64, 4 heads, 128 positions; 420 text tokens (the tokenizer fixture's); 131 speech
    tokens (start 129, stop 130). Weights are seeded random normals (larger than
    GPT-2's init so that errors show). Files:
      config.json        voxline's T3Config for these sizes
      weights.safetensors the T3 state dict, less tfmr.wte and text_head (unused at
                         inference: the reference deletes wte after loading)
      conds.pt           a built-in voice file written by the reference's Conditionals.save,
                         with this fixture's speaker embedding and prompt tokens
      io.safetensors     inputs and outputs:
        speaker_emb [1,256], cond_prompt_speech_tokens [1,20] i64, text_tokens [1,12] i64,
        prefill_hidden [1,34,64]   GPT2Model last_hidden_state over the prompt
        prefill_logits [1,131]     speech_head of its last position
        decode_tokens [3] i64, decode_logits [3,131]: three cached steps (HF past_key_values)
        greedy_tokens [n] i64      inference_turbo with top_k=1 (deterministic), max_gen_len=24
        proc_logits [4,6563], proc_history [4,40] i64, proc_out [4,6563]:
                                   the LogitsProcessorList of inference_turbo with the
                                   defaults of tts_turbo.generate, at the real speech vocab

Usage: chatterbox_t3_reference.py [--out tests/fixtures/chatterbox]
(needs `pip install chatterbox-tts==0.1.7`; runs in seconds on a CPU).

`--t3-sizes nano --out DIR` writes the same T3 fixture at Chatterbox-Nano's real
shapes (GPT-2 small, 50276 text and 6563 speech tokens, 8196 positions, a
375-token voice prompt; ~600 MB) into DIR/t3 for the ignored test
`t3_matches_reference_at_real_shapes` (VOXLINE_T3_REAL_FIXTURE=DIR/t3);
`--t3-sizes turbo` the same at Turbo's (GPT-2 medium; ~1.7 GB).
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoTokenizer
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
from chatterbox.tts_turbo import Conditionals, punc_norm

# The tags Chatterbox-Turbo's added_tokens.json registers (ids here are ours).
TAGS = [
    "[laugh]", "[chuckle]", "[sigh]", "[gasp]", "[cough]", "[sniff]", "[groan]", "[clear throat]", "[shush]",
    "[whispering]", "[angry]", "[fear]", "[surprised]", "[crying]", "[happy]", "[sarcastic]", "[dramatic]",
    "[narration]", "[advertisement]",
]

CORPUS = [
    "Hello, this is voxline. How can I help you today?",
    "Your appointment is on Tuesday at 3:45 pm; please don't be late!",
    "The quick brown fox jumps over the lazy dog. It's 42 degrees outside.",
    "We're calling about invoice #12345 — it's overdue by 10 days.",
    "Thank you for calling. Press one for sales, two for support.",
    "I'll transfer you now. Please hold the line... thanks!",
    "They've said they'd call back, but we haven't heard anything.",
    "Café déjà vu: naïve résumé.",
]

STRINGS = [
    "hello world",
    "Hi there, Sarah here from MochaFone calling you back [chuckle], have you got one minute?",
    "[laugh] That's a fair point.",
    "Okay [sigh] let's switch gears [clear throat] now",
    "wait… what: really — yes",
    "“Quoted” and ‘single’ marks",
    "Invoice #12345 is due at 3:45pm; don't be late!",
    "  lots   of\tspace\n\nand new lines  ",
    "Tags glued:[cough]word[sniff].",
    "Café déjà vu, naïve résumé",
    "Emoji 🙂 and 東京 and ümlauts",
    "end of text <|endoftext|> marker",
    "It's they're we've I'll you'd",
    "",
    "Say the long word again " * 120,  # past model_max_length (1024 tokens): truncated
]


def build_tokenizer(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=2, show_progress=False, special_tokens=[])
    bpe.save_model(str(out))  # vocab.json + merges.txt
    vocab = json.loads((out / "vocab.json").read_text())
    vocab["<|endoftext|>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    base = len(vocab)
    (out / "added_tokens.json").write_text(json.dumps({t: base + i for i, t in enumerate(TAGS)}, indent=2))
    specials = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    config = dict(specials, add_prefix_space=False, model_max_length=1024, tokenizer_class="GPT2Tokenizer")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))

    tok = AutoTokenizer.from_pretrained(str(out))
    if tok.pad_token is None:  # as ChatterboxTurboTTS.from_local
        tok.pad_token = tok.eos_token
    cases = []
    for s in STRINGS:
        norm = punc_norm(s)
        cases.append({
            "text": s,
            "normalized": norm,
            "ids": tok(norm, return_tensors="pt", padding=True, truncation=True).input_ids[0].tolist(),
            "raw_ids": tok(s, truncation=True).input_ids,
        })
    # The same ids when tokenizer_config.json has only the class and the length and there
    # is no special_tokens_map.json (GPT2Tokenizer's defaults): the Rust test checks both.
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("vocab.json", "merges.txt", "added_tokens.json"):
            shutil.copy(out / f, tmp)
        minimal = {"model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"}
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(minimal))
        tok2 = AutoTokenizer.from_pretrained(tmp)
        for c in cases:
            assert tok2(c["normalized"], truncation=True).input_ids == c["ids"], c["text"]
        # ... and with the table newer transformers write (added_tokens_decoder).
        table = {str(base - 1): {"content": "<|endoftext|>", "lstrip": False, "rstrip": False,
                                 "normalized": True, "single_word": False, "special": True}}
        for i, t in enumerate(TAGS):
            table[str(base + i)] = {"content": t, "lstrip": False, "rstrip": False, "normalized": False,
                                    "single_word": False, "special": False}
        (out / "tokenizer_config_decoder_table.json").write_text(
            json.dumps(dict(minimal, add_prefix_space=False, added_tokens_decoder=table), indent=1))
        shutil.copy(out / "tokenizer_config_decoder_table.json", Path(tmp) / "tokenizer_config.json")
        tok3 = AutoTokenizer.from_pretrained(tmp)
        for c in cases:
            assert tok3(c["normalized"], truncation=True).input_ids == c["ids"], c["text"]
    expected = {"vocab_size": len(tok), "tokenizer": type(tok).__name__, "cases": cases}
    (out / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1))
    print(f"tokenizer: {len(tok)} tokens ({type(tok).__name__}), {len(cases)} cases")


def randomize(module, gen):
    """Seeded normal weights, scaled so that every block visibly matters."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[0] if ".h." in name else p.shape[-1]
                std = 1.0 if "emb" in name or "wpe" in name or "wte" in name else fan_in ** -0.5
                p.copy_(std * torch.randn(p.shape, generator=gen))


# (text vocab, speech vocab, width, layers, heads, positions, prompt tokens, text tokens)
SIZES = {
    # 420 text tokens: the tokenizer fixture's vocabulary, so the two make a tiny checkpoint.
    "tiny": (420, 131, 64, 2, 4, 128, 20, 12),
    # Chatterbox-Nano's real shapes (GPT2_small, the checkpoint's vocabularies): ~600 MB, not committed.
    "nano": (50276, 6563, 768, 12, 12, 8196, 375, 30),
    # Chatterbox-Turbo's (GPT2_medium): ~1.7 GB, not committed.
    "turbo": (50276, 6563, 1024, 24, 16, 8196, 375, 30),
}


def build_t3(out: Path, sizes: str = "tiny"):
    out.mkdir(parents=True, exist_ok=True)
    text_vocab, speech_vocab, width, layers, heads, positions, n_prompt, n_text = SIZES[sizes]
    LLAMA_CONFIGS["GPT2_tiny"] = dict(
        LLAMA_CONFIGS["GPT2_medium"], n_embd=width, hidden_size=width, n_head=heads, n_layer=layers,
        n_positions=positions, n_ctx=positions, vocab_size=text_vocab,
    )
    hp = T3Config(text_tokens_dict_size=text_vocab)
    hp.llama_config_name = "GPT2_tiny"
    hp.speech_tokens_dict_size = speech_vocab
    hp.start_speech_token = speech_vocab - 2
    hp.stop_speech_token = speech_vocab - 1
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = n_prompt
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False

    torch.manual_seed(0)
    t3 = T3(hp)
    gen = torch.Generator().manual_seed(1234)
    randomize(t3, gen)
    # The checkpoints also hold tfmr.wte and text_head, which inference never reads; left out to keep this small.
    state = {k: v.contiguous() for k, v in t3.state_dict().items() if k not in ("tfmr.wte.weight", "text_head.weight")}
    save_file(state, str(out / "weights.safetensors"))
    del t3.tfmr.wte
    t3.eval()

    config = {
        "text_tokens_dict_size": text_vocab, "speech_tokens_dict_size": speech_vocab,
        "start_speech_token": hp.start_speech_token, "stop_speech_token": hp.stop_speech_token,
        "speaker_embed_size": hp.speaker_embed_size, "speech_cond_prompt_len": hp.speech_cond_prompt_len,
        "gpt2": {"n_embd": width, "n_head": heads, "n_layer": layers, "n_positions": positions,
                 "layer_norm_epsilon": 1e-5},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))

    speaker_emb = torch.randn(1, 256, generator=gen)
    prompt = torch.randint(0, hp.start_speech_token, (1, n_prompt), generator=gen)
    text = torch.randint(0, text_vocab, (1, n_text), generator=gen)
    io = {"speaker_emb": speaker_emb, "cond_prompt_speech_tokens": prompt, "text_tokens": text}

    with torch.inference_mode():
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt)
        start = hp.start_speech_token * torch.ones_like(text[:, :1])
        embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=start, cfg_weight=0.0)
        o = t3.tfmr(inputs_embeds=embeds, use_cache=True)
        io["prefill_hidden"] = o.last_hidden_state
        io["prefill_logits"] = t3.speech_head(o.last_hidden_state[:, -1])
        past = o.past_key_values
        decode_tokens = torch.tensor([5, 77, 3])
        rows = []
        for tok in decode_tokens:
            o = t3.tfmr(inputs_embeds=t3.speech_emb(tok.view(1, 1)), past_key_values=past, use_cache=True)
            past = o.past_key_values
            rows.append(t3.speech_head(o.last_hidden_state[:, -1]))
        io["decode_tokens"] = decode_tokens
        io["decode_logits"] = torch.cat(rows)

        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt)
        greedy = t3.inference_turbo(cond, text, temperature=0.8, top_k=1, top_p=0.95, repetition_penalty=1.2,
                                    max_gen_len=24)
        io["greedy_tokens"] = greedy[0]

        # The processors of inference_turbo with tts_turbo.generate's defaults, at the real vocab size.
        procs = LogitsProcessorList([
            TemperatureLogitsWarper(0.8), TopKLogitsWarper(1000), TopPLogitsWarper(0.95),
            RepetitionPenaltyLogitsProcessor(1.2),
        ])
        logits = 3.0 * torch.randn(4, 6563, generator=gen)
        logits[1] *= 0.2  # flat: top-k decides
        logits[2, 17] = 40.0  # one dominant token: top-p keeps one
        history = torch.randint(0, 6563, (4, 40), generator=gen)
        history[:, 20:] = history[:, :20]  # repeats
        io["proc_logits"] = logits
        io["proc_history"] = history
        io["proc_out"] = torch.cat([procs(history[i:i + 1], logits[i:i + 1].clone()) for i in range(4)])
    save_file({k: v.contiguous() for k, v in io.items()}, str(out / "io.safetensors"))

    if sizes == "tiny":
        # A built-in voice file in the checkpoint's format (`Conditionals.save`, as conds.pt),
        # holding this fixture's T3 conditioning and a small random S3Gen half.
        gen_dict = {
            "prompt_token": torch.randint(0, 6561, (1, 8), generator=gen),
            "prompt_token_len": torch.tensor([8]),
            "prompt_feat": torch.randn(1, 16, 80, generator=gen),
            "prompt_feat_len": None,
            "embedding": torch.randn(1, 192, generator=gen),
        }
        t3_cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt, emotion_adv=0.5 * torch.ones(1, 1, 1))
        Conditionals(t3_cond, gen_dict).save(out / "conds.pt")
    print(f"t3: prompt length {embeds.shape[1]}, greedy {greedy[0].tolist()}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "fixtures" / "chatterbox"))
    ap.add_argument("--t3-sizes", choices=sorted(SIZES), default="tiny",
                    help="nano, turbo: only the T3 fixture, at that model's real shapes, into OUT/t3")
    args = ap.parse_args()
    out = Path(args.out)
    if args.t3_sizes == "tiny":
        build_tokenizer(out / "tokenizer")
    build_t3(out / "t3", args.t3_sizes)


if __name__ == "__main__":
    main()
