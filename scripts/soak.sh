#!/usr/bin/env bash
# Soak: 200 calls at once for an hour (by default), agents speaking and barging
# in, calls hung up and replaced all along; voxline's memory (VmRSS) and open
# file descriptors sampled every 10 s must stay flat after the warm-up (growth
# under 5 %) and no call may be left afterwards.
#
#   scripts/soak.sh                         200 calls, 60 minutes
#   scripts/soak.sh --short                 50 calls, 3 minutes (to try it)
#   scripts/soak.sh --calls N --minutes M   other sizes
#   scripts/soak.sh --no-build              use the release binary as it is
#
# The server runs on loopback with admission off (the soak looks for leaks,
# not latency), no per-source INVITE limit and room for every control socket
# from this one address. The driver is scripts/soak.py (python3 + websockets,
# installed with pip when missing). Everything is bounded: the driver gets
# the run's length plus 5 minutes. Prints the summary; exits non-zero when
# the soak fails. Logs and the JSON summary stay in the printed directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
calls=200
minutes=60
build=1
while [ "$#" -gt 0 ]; do
    case "$1" in
        --short) calls=50; minutes=3 ;;
        --calls) calls="${2:?--calls needs a number}"; shift ;;
        --minutes) minutes="${2:?--minutes needs a number}"; shift ;;
        --no-build) build=0 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "soak: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in "$calls" "$minutes"; do
    case "$v" in '' | *[!0-9]* | 0) echo "soak: --calls and --minutes want positive whole numbers, got '$v'" >&2; exit 2 ;; esac
done

python3 -c 'import websockets' 2>/dev/null || python3 -m pip install --quiet 'websockets>=12' >&2
if [ "$build" = 1 ]; then
    timeout 1800 cargo build --release >&2
fi
bin="${CARGO_TARGET_DIR:-target}/release/voxline"
[ -x "$bin" ] || { echo "soak: $bin is missing (build it, or drop --no-build)" >&2; exit 1; }

work="$(mktemp -d /tmp/voxline-soak.XXXXXX)"
prompt="Thank you for holding, your call is important to us."
server_pid=""
cleanup() { [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT
"$bin" serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --rtp-ports 30000-39999 --rtp-timeout 0 \
    --greeting "$prompt" --no-admission --max-calls $((calls * 2)) --invite-rate 0 \
    --max-unconfirmed $((calls * 2)) --http-max-conns-per-ip $((calls * 4)) \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1200); do
    grep -q '^ready ' "$work/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "soak: voxline serve exited: $(tail -n 20 "$work/server.err")" >&2; exit 1; }
    sleep 0.1
done
ready="$(grep -m1 '^ready ' "$work/server.out")" || { echo "soak: voxline serve not ready after 120 s" >&2; exit 1; }
sip="$(sed -n 's/.*sip=\([^ ]*\).*/\1/p' <<<"$ready")"
http="$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$ready")"
echo "soak: $calls calls for $minutes min against $sip / $http (pid $server_pid); work in $work" >&2

rc=0
timeout -k 10 $((minutes * 60 + 300)) python3 scripts/soak.py --sip "$sip" --http "$http" --server-pid "$server_pid" \
    --calls "$calls" --seconds $((minutes * 60)) --prompt "$prompt" --json "$work/soak.json" || rc=$?
[ -s "$work/soak.json" ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("samples"); print(json.dumps(d))' "$work/soak.json"
exit "$rc"
