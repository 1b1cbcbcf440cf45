#!/usr/bin/env python3
"""The reference Piper runtime (piper-tts 1.8 on onnxruntime), for the tests and
the benchmark to compare voxline against.

Library use (tests/reference/piper_reference_bench.py imports it):

    load_voice(model, threads) -> piper.PiperVoice whose onnxruntime session
    runs with `threads` intra-op threads (0 = onnxruntime's default, all cores).

Command line (tests/intelligibility.rs calls it):

    piper_reference.py synth --model VOICE.onnx --out-dir DIR [--threads N] < sentences.txt

reads one sentence per line on stdin and writes DIR/ref_00.wav, DIR/ref_01.wav, ...
(mono 16-bit PCM at the voice's rate, exactly what `piper.PiperVoice.synthesize_wav`
writes), with the voice's default scales and piper-tts's default peak
normalisation. The model's noise is onnxruntime's unseeded RandomNormalLike, so
the audio differs from run to run, as it does for every piper-tts user.
"""

import argparse
import json
import sys
import wave
from pathlib import Path

import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig


def load_voice(model, threads=0):
    """Loads a Piper voice like `PiperVoice.load(model)` (CPU), but with the
    onnxruntime session's thread count set.

    piper-tts 1.8's `PiperVoice.load` builds its session with a default
    `onnxruntime.SessionOptions()` and offers no way to pass options, so the
    session is built here the same way (same .onnx path, CPUExecutionProvider)
    with `intra_op_num_threads = threads` and handed to the `PiperVoice`
    dataclass; phonemization, ids and synthesis are piper-tts's own code.
    """
    model = Path(model)
    with open(f"{model}.json", "r", encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads)  # 0: onnxruntime picks (all physical cores)
    if int(threads) == 1:
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def synth(args):
    voice = load_voice(args.model, args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sentences = [line.strip() for line in sys.stdin if line.strip()]
    if not sentences:
        sys.exit("piper_reference: no sentences on stdin")
    for i, text in enumerate(sentences):
        path = out_dir / f"ref_{i:02}.wav"
        with wave.open(str(path), "wb") as wav:
            voice.synthesize_wav(text, wav)
        print(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("synth", help="one WAV per stdin line")
    p.add_argument("--model", required=True, help="Piper voice .onnx (its .onnx.json beside it)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = all")
    p.set_defaults(func=synth)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
