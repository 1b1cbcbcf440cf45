#!/usr/bin/env python3
"""`voxline bench` for the reference runtime: piper-tts 1.8 on onnxruntime, same
voice, same sentences, same measurements, same JSON fields.

    piper_reference_bench.py [--model VOICE.onnx] [--threads N] [--rounds N] [--check-sync src/bench.rs]

One warm-up pass over the sentences, then --rounds passes. Per sentence: the
time from calling `PiperVoice.synthesize(text)` to its first yielded chunk
(piper-tts yields one chunk per sentence, so that is the whole sentence's
phonemization + onnxruntime run + normalisation), and the total compute and
audio. Prints one JSON line:

    rtf                  total compute / total audio
    first_chunk_ms_p50   /p90/max over all measured sentences (same percentile rule as src/bench.rs)
    load_s               time to build the onnxruntime session and read the config
    threads              "1" or "all" (onnxruntime intra_op_num_threads 1 / 0)

SENTENCES must stay identical to `SENTENCES` in src/bench.rs; --check-sync
(scripts/bench.sh passes it) fails if they drift apart.
"""

import argparse
import ast
import json
import math
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from piper_reference import load_voice  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Keep in sync with `SENTENCES` in src/bench.rs (checked by --check-sync).
SENTENCES = [
    "Thank you for calling, how can I help you today?",
    "Your appointment is confirmed for Tuesday at three thirty in the afternoon.",
    "I can help you with that, please hold on for a moment.",
    "The total comes to forty two dollars and fifteen cents.",
    "Could you please spell your last name for me?",
    "Our office is open Monday through Friday, from nine to five.",
    "I have transferred your request to the billing department.",
    "Is there anything else I can help you with?",
    "Please say or enter your account number, followed by the pound key.",
    "Have a wonderful day, and thank you for choosing us.",
]


# Keep in sync with `CLAUSES` in src/bench.rs (checked by --check-sync).
CLAUSES = [
    "Thank you for calling,",
    "I can help you with that,",
    "Sure, let me check.",
    "Your order has shipped,",
    "One moment please.",
    "Is that correct?",
    "I found your account,",
    "The next available slot is Monday,",
    "Got it, thanks.",
    "Let me transfer you now.",
]


def rust_sentences(path, name="SENTENCES"):
    """The string literals of `pub const NAME` in src/bench.rs."""
    src = Path(path).read_text(encoding="utf-8")
    m = re.search(name + r"\s*:\s*&\[&str\]\s*=\s*&\[(.*?)\];", src, re.S)
    if not m:
        sys.exit(f"piper_reference_bench: no `{name}: &[&str]` in {path}")
    return [ast.literal_eval(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', m.group(1))]


def pct(sorted_values, p):
    # src/bench.rs: values[((n - 1) * p).round()], f64::round = half away from zero.
    return sorted_values[int(math.floor((len(sorted_values) - 1) * p + 0.5))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "en_US-joe-medium.onnx"))
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = all")
    parser.add_argument("--rounds", type=int, default=3, help="passes after one warm-up pass")
    parser.add_argument("--check-sync", metavar="BENCH_RS", help="fail unless src/bench.rs has the same sentences")
    parser.add_argument("--clauses", action="store_true", help="speak the short CLAUSES instead of SENTENCES")
    args = parser.parse_args()

    if args.check_sync:
        if rust_sentences(args.check_sync, "CLAUSES") != CLAUSES:
            sys.exit(f"piper_reference_bench: CLAUSES differ from {args.check_sync}")
        theirs = rust_sentences(args.check_sync)
        if theirs != SENTENCES:
            sys.exit(
                f"piper_reference_bench: SENTENCES differ from {args.check_sync}; copy them over so both "
                f"runtimes read the same text\n  rust:   {theirs}\n  python: {SENTENCES}"
            )

    import onnxruntime

    t_load = time.perf_counter()
    voice = load_voice(args.model, args.threads)
    load_s = time.perf_counter() - t_load
    rate = voice.config.sample_rate

    first_chunk_ms = []
    compute_s = audio_s = 0.0
    for rnd in range(args.rounds + 1):
        for text in CLAUSES if args.clauses else SENTENCES:
            t0 = time.perf_counter()
            first = None
            samples = 0
            for chunk in voice.synthesize(text):
                if first is None:
                    first = (time.perf_counter() - t0) * 1e3
                samples += len(chunk.audio_float_array)
            if rnd == 0:
                continue  # warm-up
            first_chunk_ms.append(first or 0.0)
            compute_s += time.perf_counter() - t0
            audio_s += samples / rate
    first_chunk_ms.sort()
    print(
        json.dumps(
            {
                "runtime": f"piper-tts (onnxruntime {onnxruntime.__version__})",
                "mode": "whole-sentence",
                "units": "clauses" if args.clauses else "sentences",
                "threads": "all" if args.threads == 0 else str(args.threads),
                "sentences": len(first_chunk_ms),
                "load_s": load_s,
                "rtf": compute_s / audio_s,
                "first_chunk_ms_p50": pct(first_chunk_ms, 0.5),
                "first_chunk_ms_p90": pct(first_chunk_ms, 0.9),
                "first_chunk_ms_max": pct(first_chunk_ms, 1.0),
                "audio_s": audio_s,
            }
        )
    )


if __name__ == "__main__":
    main()
