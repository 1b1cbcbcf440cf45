#!/usr/bin/env bash
# Concurrent calls: first sound per turn, underruns and server CPU for N calls
# at once, per synthesis scheduler, beside piper-tts on one thread.
#
#   scripts/load-bench.sh                      N = 1 2 4 8 16 24 32, 60 s each, per scheduler (about 20 minutes)
#   scripts/load-bench.sh --calls "1 4"        these N only
#   scripts/load-bench.sh --seconds 15         measured seconds per run (default 60)
#   scripts/load-bench.sh --write FILE         ... and write the markdown section to FILE
#   scripts/load-bench.sh --no-build           use the release binary as it is
#   scripts/load-bench.sh --no-reference       skip the piper-tts reference
#
# For every N and scheduler it starts a fresh `voxline serve` on loopback
# (ports the OS picks, no greeting, no RTP timeout; `--no-admission` when the
# build has it, so calls beyond capacity are measured rather than refused)
# and runs `scripts/load_bench.py run` against it: the driver is every SIP
# caller itself (INVITE over UDP, RTP to its own socket per call, kernel
# receive timestamps) with an agent on each call's control socket that speaks
# one whole sentence of src/bench.rs SENTENCES per turn (`last: true`), waits
# for `speech.done`, pauses 0.3-1.2 s and repeats (the first turns start over a
# ramp of 0.25 s per call, reported apart from the steady state). When `voxline serve --help`
# lists `--synth-scheduler`, both `fcfs` and `deadline` run for each N, their
# order alternating from one N to the next; otherwise the one scheduler of
# the build runs, labelled as such. Before the servers, the piper-tts
# reference (tests/reference/piper_reference_bench.py, one thread) times the
# same sentences whole. Needs python3 with `websockets` (and onnxruntime +
# piper-tts for the reference), installed with pip when missing. The binary
# is ${CARGO_TARGET_DIR:-target}/release/voxline. Progress goes to stderr; the
# section to stdout; logs stay in the printed work directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

invocation="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }scripts/load-bench.sh"
for arg in "$@"; do
    case "$arg" in
        *[[:space:]]* | '') invocation="$invocation \"$arg\"" ;;
        *) invocation="$invocation $arg" ;;
    esac
done
calls="1 2 4 8 16 24 32"
seconds=60
write_to=""
build=1
reference=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --calls) calls="${2:?--calls needs a list, e.g. \"1 2 4\"}"; shift ;;
        --calls=*) calls="${1#--calls=}" ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
        --seconds=*) seconds="${1#--seconds=}" ;;
        --write) write_to="${2:?--write needs a file}"; shift ;;
        --write=*) write_to="${1#--write=}" ;;
        --no-build) build=0 ;;
        --no-reference) reference=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "load-bench: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
calls="$(tr ',' ' ' <<<"$calls" | xargs)"
[ -n "$calls" ] || { echo "load-bench: --calls wants a list of numbers, e.g. \"1 2 4\"" >&2; exit 2; }
for n in $calls; do
    case "$n" in '' | *[!0-9]* | 0) echo "load-bench: --calls wants positive whole numbers, got '$n'" >&2; exit 2 ;; esac
    [ "$n" -le 400 ] || { echo "load-bench: at most 400 calls (the RTP port range), got $n" >&2; exit 2; }
done
case "$seconds" in '' | *[!0-9]* | 0) echo "load-bench: --seconds wants a positive whole number, got '$seconds'" >&2; exit 2 ;; esac

say() { echo "load-bench: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

pip_install() { # packages... (Debian's system python needs --break-system-packages outside a virtual environment)
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 python3 -m pip install --quiet "$@" >&2 2>/dev/null ||
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 python3 -m pip install --quiet --break-system-packages "$@" >&2
}
if ! python3 -c 'import websockets' 2>/dev/null; then
    say "installing the python package websockets"
    pip_install websockets || die "could not pip install websockets"
    python3 -c 'import websockets' 2>/dev/null || die "websockets is installed but cannot be imported"
fi
if [ "$reference" = 1 ] && ! python3 -c 'import onnxruntime, piper' 2>/dev/null; then
    # The versions scripts/setup.sh --test pins for the reference runtime.
    say "installing onnxruntime and piper-tts for the reference (pip)"
    pip_install onnxruntime==1.32.0 piper-tts==1.8.0 || die "could not pip install onnxruntime piper-tts (or pass --no-reference)"
    python3 -c 'import onnxruntime, piper' 2>/dev/null || die "onnxruntime/piper-tts do not import (or pass --no-reference)"
fi

bin="${CARGO_TARGET_DIR:-$root/target}/release/voxline"
if [ "$build" = 1 ]; then
    say "building (release)"
    cargo build --release >&2
fi
[ -x "$bin" ] || die "no $bin (build it, or drop --no-build)"
serve_help="$("$bin" serve --help 2>/dev/null)" || die "$bin serve --help failed"
grep -q -- '--greeting' <<<"$serve_help" || die "$bin has no 'serve --greeting'"
export VOXLINE_MODELS="${VOXLINE_MODELS:-$root/models}"
timeout 900 "$bin" fetch-voice >&2 || die "could not fetch the default voice into $VOXLINE_MODELS"

# Which schedulers this build has.
if grep -q -- '--synth-scheduler' <<<"$serve_help"; then
    schedulers=(fcfs deadline)
else
    schedulers=(fcfs)
fi
admission=()
grep -q -- '--no-admission' <<<"$serve_help" && admission=(--no-admission)
# Every caller is this machine's one address: no per-source INVITE limit.
grep -q -- '--invite-rate' <<<"$serve_help" && admission+=(--invite-rate 0)
label() { # scheduler
    if [ "${#schedulers[@]}" = 1 ]; then
        echo "fcfs (only scheduler in this build)"
    else
        echo "$1"
    fi
}

work="$(mktemp -d /tmp/load-bench.XXXXXX)"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
driver_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$driver_pid" ]; then
        kill "$driver_pid" 2>/dev/null || true # timeout(1) passes it on to the driver
        wait "$driver_pid" 2>/dev/null || true
    fi
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "work directory (logs): $work"
say "schedulers: ${schedulers[*]}${admission[*]:+; with ${admission[*]}}; calls: $calls; $seconds s each"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# The reference first, on an idle machine: piper-tts, one thread, the same sentences whole.
ref_json=""
if [ "$reference" = 1 ]; then
    model="$VOXLINE_MODELS/en_US-joe-medium.onnx"
    say "piper-tts reference (one thread, src/bench.rs SENTENCES whole)"
    timeout -k 5 900 python3 tests/reference/piper_reference_bench.py --model "$model" --threads 1 --rounds 3 \
        --check-sync src/bench.rs >"$work/reference.json" 2>"$work/reference.err" ||
        die "the piper-tts reference failed: $(tail -n 5 "$work/reference.err")"
    ref_json="$work/reference.json"
    say "reference: $(cat "$ref_json")"
fi

# No greeting (each turn starts from silence), no RTP timeout (the callers send no audio).
server_base=(serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --rtp-ports 32000-32999 --greeting "" --rtp-timeout 0)
start_server() { # scheduler logname
    local args=("${server_base[@]}")
    [ "${#schedulers[@]}" = 1 ] || args+=(--synth-scheduler "$1")
    args+=(${admission[@]+"${admission[@]}"})
    "$bin" "${args[@]}" >"$work/$2.server.out" 2>"$work/$2.server.err" &
    server_pid=$!
    for _ in $(seq 1200); do
        grep -q '^ready ' "$work/$2.server.out" 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || die "voxline serve exited: $(tail -n 20 "$work/$2.server.err")"
        sleep 0.1
    done
    ready="$(grep -m1 '^ready ' "$work/$2.server.out")" || die "voxline serve not ready after 120 s (see $work/$2.server.err)"
    sip="$(sed -n 's/.*sip=\([^ ]*\).*/\1/p' <<<"$ready")"
    http="$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$ready")"
}
server_args_text="voxline serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --rtp-ports 32000-32999 --greeting \"\" --rtp-timeout 0"
[ "${#schedulers[@]}" = 1 ] || server_args_text="$server_args_text --synth-scheduler fcfs|deadline"
[ "${#admission[@]}" = 0 ] || server_args_text="$server_args_text ${admission[*]}"

results=()
rc=0
i=0
for n in $calls; do
    order=("${schedulers[@]}")
    if [ $((i % 2)) = 1 ] && [ "${#schedulers[@]}" = 2 ]; then
        order=("${schedulers[1]}" "${schedulers[0]}")
    fi
    for sched in "${order[@]}"; do
        name="$sched-$n"
        start_server "$sched" "$name"
        say "[$sched] N=$n: server ready, sip=$sip http=$http (pid $server_pid)"
        run_rc=0
        # Bounded: setup, the window, the last turns (30 s timeout each) and the hang-ups.
        # In the background, so that an interrupt reaches the EXIT trap at once.
        timeout -k 5 $((seconds + 180)) python3 "$root/scripts/load_bench.py" run --sip "$sip" --http "$http" \
            --calls "$n" --seconds "$seconds" --server-pid "$server_pid" --label "$(label "$sched")" \
            --json "$work/$name.json" &
        driver_pid=$!
        wait "$driver_pid" || run_rc=$?
        driver_pid=""
        stop_server
        if [ -s "$work/$name.json" ]; then
            results+=("$work/$name.json")
        else
            say "[$sched] N=$n: the driver failed (exit $run_rc) before writing its results; server log: $work/$name.server.err"
        fi
        [ "$run_rc" = 0 ] || rc=$run_rc
    done
    i=$((i + 1))
done
[ "${#results[@]}" -gt 0 ] || die "no run produced results (see $work)"

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src sip sdp Cargo.toml Cargo.lock 2>/dev/null && [ -z "$(git ls-files --others --exclude-standard src sip sdp 2>/dev/null)" ] ||
    commit="$commit + uncommitted changes"
cpu="$( (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p' | head -n1)"
[ -n "$cpu" ] || cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
meta="$(
    LB_INVOCATION="$invocation" LB_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" LB_COMMIT="$commit" \
    LB_BINARY="$(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')" LB_CPU="$cpu" LB_NPROC="$(nproc)" LB_KERNEL="$(uname -r)" \
    LB_LOAD="$load_before" LB_SERVER="$server_args_text" python3 -c '
import json, os
e = os.environ
print(json.dumps({"invocation": e["LB_INVOCATION"], "date": e["LB_DATE"], "commit": e["LB_COMMIT"],
                  "binary_built": e["LB_BINARY"], "cpu": e["LB_CPU"], "nproc": e["LB_NPROC"],
                  "kernel": e["LB_KERNEL"], "load_before": e["LB_LOAD"], "server_args": e["LB_SERVER"]}))'
)"
python3 "$root/scripts/load_bench.py" render --results "${results[@]}" ${ref_json:+--reference "$ref_json"} \
    --meta "$meta" --markdown "$work/section.md" >/dev/null || die "rendering the section failed"
cat "$work/section.md"
if [ -n "$write_to" ]; then
    cp "$work/section.md" "$write_to"
    say "wrote the section to $write_to"
fi
say "per-turn results: $work/*.json; server logs: $work/*.server.err"
[ "$rc" = 0 ] || say "a driver exited with $rc (see the notes in the section)"
exit "$rc"
