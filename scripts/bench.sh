#!/usr/bin/env bash
# Benchmarks voxline's Piper engine beside the reference runtime (piper-tts on
# onnxruntime), same voice, same sentences (src/bench.rs SENTENCES), same machine,
# in one invocation, and prints a markdown table.
#
#   scripts/bench.sh                  measure and print the table
#   scripts/bench.sh --write          ... and replace the generated block in BENCHMARKS.md
#   scripts/bench.sh --rounds N       passes over the sentence set per run (default 3, after one warm-up pass)
#   scripts/bench.sh --baseline BIN   also run another voxline binary (e.g. built from the commit before
#                                     a change) right beside each voxline run, as "voxline (baseline)"
#
# For threads = 1 (RAYON_NUM_THREADS=1 / onnxruntime intra_op_num_threads=1) and
# all (RAYON_NUM_THREADS unset / intra_op_num_threads=0) it runs `voxline bench`
# (streaming), the reference, and `voxline bench --whole-sentence` (decoding
# each sentence whole, as piper-tts does), ordering the runs A B C / C B A so
# neither runtime always runs first on a noisy machine; a baseline binary runs
# next to each voxline run, before it and after it in turn. Needs the test tools
# (scripts/setup.sh --test, which this runs). Progress goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

invocation="scripts/bench.sh${*:+ $*}"
rounds=3
write=0
baseline=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        --write) write=1 ;;
        --rounds) rounds="${2:?--rounds needs a number}"; shift ;;
        --rounds=*) rounds="${1#--rounds=}" ;;
        --baseline) baseline="${2:?--baseline needs a voxline binary}"; shift ;;
        --baseline=*) baseline="${1#--baseline=}" ;;
        -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$rounds" in '' | *[!0-9]* | 0) echo "bench: --rounds wants a positive number, got '$rounds'" >&2; exit 2 ;; esac
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
    echo "bench: --baseline $baseline is not an executable" >&2
    exit 2
fi

bash scripts/setup.sh --test --quiet
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

echo "bench: building (release)" >&2
cargo build --release >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/voxline"
export VOXLINE_MODELS="${VOXLINE_MODELS:-$root/models}"
"$bin" fetch-voice >&2
model="$VOXLINE_MODELS/en_US-joe-medium.onnx"
ref=(python3 tests/reference/piper_reference_bench.py --model "$model" --rounds "$rounds")
# Fail before measuring anything if the two sentence lists have drifted apart.
python3 - <<'EOF'
import sys
sys.path.insert(0, "tests/reference")
from piper_reference_bench import SENTENCES, rust_sentences
if rust_sentences("src/bench.rs") != SENTENCES:
    sys.exit("bench: tests/reference/piper_reference_bench.py SENTENCES differ from src/bench.rs; copy them over")
EOF

load_before="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT

baseline_first=0
ours() { # threads mode-args...
    local threads="$1"; shift
    local n=0
    [ "$threads" = all ] || n="$threads"
    run_ours() {
        echo "bench: voxline bench $* (threads $threads)" >&2
        env -u RAYON_NUM_THREADS "$bin" bench --threads "$n" --rounds "$rounds" "$@" >>"$results"
    }
    run_baseline() {
        [ -n "$baseline" ] || return 0
        echo "bench: baseline voxline bench $* (threads $threads)" >&2
        env -u RAYON_NUM_THREADS "$baseline" bench --threads "$n" --rounds "$rounds" "$@" |
            python3 -c 'import json, sys; r = json.load(sys.stdin); r["runtime"] = "voxline (baseline)"; print(json.dumps(r))' >>"$results"
    }
    if [ "$baseline_first" = 1 ]; then run_baseline "$@"; run_ours "$@"; else run_ours "$@"; run_baseline "$@"; fi
    baseline_first=$((1 - baseline_first))
}
theirs() { # threads [--clauses]
    echo "bench: piper-tts reference (threads $1) ${2:-}" >&2
    local n=0
    [ "$1" = all ] || n="$1"
    "${ref[@]}" --threads "$n" --check-sync src/bench.rs ${2:+"$2"} >>"$results"
}

# A B C, then C B A; then the short clauses on one thread.
ours 1
theirs 1
ours 1 --whole-sentence
ours all --whole-sentence
theirs all
ours all
ours 1 --clauses
theirs 1 --clauses

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)"
[ -n "$cpu" ] || cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit + uncommitted changes"

table="$(
    BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" BENCH_CPU="$cpu" BENCH_NPROC="$(nproc)" \
    BENCH_COMMIT="$commit" BENCH_ROUNDS="$rounds" BENCH_INVOCATION="$invocation" BENCH_BASELINE="$baseline" \
    BENCH_LOAD="$load_before $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')" BENCH_RUSTC="$(rustc --version 2>/dev/null || echo '?')" \
    python3 - "$results" <<'EOF'
import json, os, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
units = lambda r: r.get("units", "sentences")
ours = lambda r: r["runtime"].startswith("voxline")
ref = {(r["threads"], units(r)): r for r in rows if not ours(r)}
order = {"1": 0, "all": 1}
rows.sort(key=lambda r: (units(r) != "sentences", order.get(r["threads"], 2), not ours(r), r["mode"] != "streaming", r["runtime"]))
e = os.environ
load = e["BENCH_LOAD"].split()
print(f"Command: `{e['BENCH_INVOCATION']}`  ")
print(f"Date: {e['BENCH_DATE']}; commit {e['BENCH_COMMIT']}  ")
print(f"Machine: {e['BENCH_CPU']}, nproc {e['BENCH_NPROC']}; load average {' '.join(load[:3])} before, "
      f"{' '.join(load[3:])} after; {e['BENCH_RUSTC']}  ")
print(f"Workload: voice en_US-joe-medium (22050 Hz); per run one warm-up pass, then rounds: {e['BENCH_ROUNDS']} "
      f"x the {rows[0]['sentences'] // int(e['BENCH_ROUNDS'])} sentences of src/bench.rs SENTENCES (and its 10 CLAUSES on one thread), one request each")
if e["BENCH_BASELINE"]:
    print(f"Baseline: `{e['BENCH_BASELINE']}`, run beside each voxline run  ")
print()
print("| text | runtime | mode | threads | RTF | first chunk p50 (ms) | first chunk p90 (ms) | RTF ours/ref | first chunk p50 ours/ref | load (s) |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    base = ref.get((r["threads"], units(r)))
    if ours(r) and base:
        ratio_rtf = f"{r['rtf'] / base['rtf']:.2f}"
        ratio_fc = f"{r['first_chunk_ms_p50'] / base['first_chunk_ms_p50']:.2f}"
    else:
        ratio_rtf = ratio_fc = "—"
    print(f"| {units(r)} | {r['runtime']} | {r['mode']} | {r['threads']} | {r['rtf']:.3f} | {r['first_chunk_ms_p50']:.0f} | "
          f"{r['first_chunk_ms_p90']:.0f} | {ratio_rtf} | {ratio_fc} | {r['load_s']:.2f} |")
print()
print("<details><summary>raw JSON, in run order</summary>")
print()
print("```")
for line in open(sys.argv[1]):
    if line.strip():
        print(line.strip())
print("```")
print()
print("</details>")
EOF
)"

echo "$table"

if [ "$write" = 1 ]; then
    BENCH_TABLE="$table" python3 - BENCHMARKS.md <<'EOF'
import os, re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
begin, end = "<!-- bench.sh:cpu:begin -->", "<!-- bench.sh:cpu:end -->"
if begin not in text or end not in text:
    sys.exit(f"bench: {path} lacks the {begin} ... {end} markers to write the table between")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
open(path, "w", encoding="utf-8").write(f"{head}{begin}\n{os.environ['BENCH_TABLE']}\n{end}{tail}")
EOF
    echo "bench: wrote the table into BENCHMARKS.md" >&2
fi
