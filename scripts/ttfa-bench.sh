#!/usr/bin/env bash
# Time to first audio through the control socket: clause vs whole-sentence
# segmentation, side by side in one invocation (see BENCHMARKS.md).
#
#   scripts/ttfa-bench.sh                    200 turns per policy (about 5 minutes)
#   scripts/ttfa-bench.sh --turns 20         fewer turns
#   scripts/ttfa-bench.sh --write FILE       ... and write the markdown section to FILE
#   scripts/ttfa-bench.sh --no-build         use the release binary as it is
#   scripts/ttfa-bench.sh --token-ms 40      time between streamed tokens (default 25)
#   scripts/ttfa-bench.sh --verbose          print every turn
#
# Starts `voxline serve` on loopback (ports the OS picks, no greeting, no RTP
# timeout) and runs scripts/ttfa_bench.py against it: the driver is the SIP
# caller itself (INVITE over UDP, RTP to its own socket), opens the control
# sockets `?segment=clause` and `?segment=sentence` on its call, streams a
# support agent's replies token by token, and times each turn from its first
# token to its first audio packet at the caller. Turns alternate between the
# two policies in ABBA order. Needs python3 with `websockets` (installed with
# pip when missing). The binary is ${CARGO_TARGET_DIR:-target}/release/voxline.
# Progress goes to stderr; the section to stdout; logs stay in the printed
# work directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

invocation="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }scripts/ttfa-bench.sh${*:+ $*}"
turns=200
token_ms=25
write_to=""
build=1
verbose=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --turns) turns="${2:?--turns needs a number}"; shift ;;
        --turns=*) turns="${1#--turns=}" ;;
        --token-ms) token_ms="${2:?--token-ms needs a number}"; shift ;;
        --token-ms=*) token_ms="${1#--token-ms=}" ;;
        --write) write_to="${2:?--write needs a file}"; shift ;;
        --write=*) write_to="${1#--write=}" ;;
        --no-build) build=0 ;;
        -v | --verbose) verbose=(--verbose) ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "ttfa-bench: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$turns" in '' | *[!0-9]* | 0) echo "ttfa-bench: --turns wants a positive whole number, got '$turns'" >&2; exit 2 ;; esac
case "$token_ms" in '' | *[!0-9.]*) echo "ttfa-bench: --token-ms wants a number of milliseconds, got '$token_ms'" >&2; exit 2 ;; esac

say() { echo "ttfa-bench: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# websockets for the driver (idempotent; Debian's system python needs
# --break-system-packages outside a virtual environment).
if ! python3 -c 'import websockets' 2>/dev/null; then
    say "installing the python package websockets"
    python3 -m pip install --quiet websockets >&2 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages websockets >&2 ||
        die "could not pip install websockets"
    python3 -c 'import websockets' 2>/dev/null || die "websockets is installed but cannot be imported"
fi

bin="${CARGO_TARGET_DIR:-$root/target}/release/voxline"
if [ "$build" = 1 ]; then
    say "building (release)"
    cargo build --release >&2
fi
[ -x "$bin" ] || die "no $bin (build it, or drop --no-build)"
"$bin" serve --help 2>/dev/null | grep -q -- '--greeting' || die "$bin has no 'serve --greeting'"
export VOXLINE_MODELS="${VOXLINE_MODELS:-$root/models}"
"$bin" fetch-voice >&2

work="$(mktemp -d /tmp/ttfa-bench.XXXXXX)"
server_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 30); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "work directory (logs): $work"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# The server: no greeting (each turn starts from silence), no RTP timeout
# (the caller sends no audio), RTP on 30000-30100.
"$bin" serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --rtp-ports 30000-30100 --greeting "" --rtp-timeout 0 \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1200); do
    grep -q '^ready ' "$work/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || die "voxline serve exited: $(tail -n 20 "$work/server.err")"
    sleep 0.1
done
ready="$(grep -m1 '^ready ' "$work/server.out")" || die "voxline serve not ready after 120 s (see $work/server.err)"
sip="$(sed -n 's/.*sip=\([^ ]*\).*/\1/p' <<<"$ready")"
http="$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$ready")"
say "server ready: sip=$sip http=$http (pid $server_pid)"

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src sip sdp Cargo.toml Cargo.lock 2>/dev/null && [ -z "$(git ls-files --others --exclude-standard src sip sdp 2>/dev/null)" ] ||
    commit="$commit + uncommitted changes"
cpu="$( (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p' | head -n1)"
[ -n "$cpu" ] || cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"
meta="$(
    TB_INVOCATION="$invocation" TB_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" TB_COMMIT="$commit" \
    TB_BINARY="$(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')" TB_CPU="$cpu" TB_NPROC="$(nproc)" TB_KERNEL="$(uname -r)" \
    TB_LOAD="$load_before" python3 -c '
import json, os
e = os.environ
print(json.dumps({"invocation": e["TB_INVOCATION"], "date": e["TB_DATE"], "commit": e["TB_COMMIT"],
                  "binary_built": e["TB_BINARY"], "cpu": e["TB_CPU"], "nproc": e["TB_NPROC"],
                  "kernel": e["TB_KERNEL"], "load_before": e["TB_LOAD"]}))'
)"

# Bounded: the driver stops starting turns after 570 s; this is the backstop.
rc=0
timeout -k 5 900 python3 "$root/scripts/ttfa_bench.py" --sip "$sip" --http "$http" --turns "$turns" --token-ms "$token_ms" \
    --meta "$meta" --json "$work/results.json" --markdown "$work/section.md" ${verbose[@]+"${verbose[@]}"} \
    >"$work/driver.out" || rc=$?
[ -s "$work/section.md" ] || die "the driver failed (exit $rc) before writing its results; server log: $work/server.err"
cat "$work/section.md"
if [ -n "$write_to" ]; then
    cp "$work/section.md" "$write_to"
    say "wrote the section to $write_to"
fi
say "per-turn results: $work/results.json; server log: $work/server.err"
[ "$rc" = 0 ] || say "the driver exited with $rc (see the notes in the section)"
exit "$rc"
