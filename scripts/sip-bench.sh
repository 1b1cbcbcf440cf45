#!/usr/bin/env bash
# Benchmarks voxline's SIP/RTP server under N concurrent calls beside a
# reference RTP sender (sipp's own RTP engine) measured the same way, in one
# invocation on one machine, and prints a markdown table per N.
#
#   scripts/sip-bench.sh                       calls 100, 500, 1000; 60 s windows
#   scripts/sip-bench.sh --calls "100 500"     the call counts to measure
#   scripts/sip-bench.sh --seconds 20          length of the measured window
#   scripts/sip-bench.sh --rate 200            calls set up per second (sipp -r)
#   scripts/sip-bench.sh --write               ... and write the section text to
#                                              /tmp/sip-bench-section.md
#   scripts/sip-bench.sh --write-to FILE       ... or to FILE
#   scripts/sip-bench.sh --no-build            use target/release as it is
#   scripts/sip-bench.sh --greeting TEXT       what voxline says to each call
#
# Per N, two runs (their order alternates from one N to the next):
#   voxline   `voxline serve`; sipp (tests/sipp/bench_uac.xml) places N calls
#             whose SDP offers point the media at voxline-rtp-probe.
#   sipp      a sipp UAS (tests/sipp/bench_uas.xml) answers with an SDP that
#             points at the probe; a sipp UAC (tests/sipp/bench_uac_rtp.xml)
#             streams PCMU there with rtp_stream for every call.
# The probe measures over a window that starts once every call is up (it
# receives with kernel timestamps, demuxes by SSRC). CPU is the sender
# process's utime+stime over the window; memory is the growth of its resident
# anonymous memory from before the calls to the window's end (VmRSS too).
# Needs sipp 3.6 built with RTPSTREAM (apt: sip-tester).
# Progress goes to stderr; logs stay in the printed work directory.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

invocation="${CARGO_TARGET_DIR:+CARGO_TARGET_DIR=$CARGO_TARGET_DIR }scripts/sip-bench.sh${*:+ $*}"
calls_list="100 500 1000"
seconds=60
rate=200
write_to=""
build=1
greeting="Hello! You are connected to voxline. This call is part of a concurrency benchmark."
while [ "$#" -gt 0 ]; do
    case "$1" in
        --calls) calls_list="${2:?--calls needs a list, e.g. \"100 500\"}"; shift ;;
        --calls=*) calls_list="${1#--calls=}" ;;
        --seconds) seconds="${2:?--seconds needs a number}"; shift ;;
        --seconds=*) seconds="${1#--seconds=}" ;;
        --rate) rate="${2:?--rate needs a number}"; shift ;;
        --rate=*) rate="${1#--rate=}" ;;
        --write) write_to=/tmp/sip-bench-section.md ;;
        --write-to) write_to="${2:?--write-to needs a file}"; shift ;;
        --write-to=*) write_to="${1#--write-to=}" ;;
        --no-build) build=0 ;;
        --greeting) greeting="${2:?--greeting needs a text}"; shift ;;
        --greeting=*) greeting="${1#--greeting=}" ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "sip-bench: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
for v in "$seconds" "$rate"; do
    case "$v" in '' | *[!0-9]* | 0) echo "sip-bench: --seconds and --rate want positive whole numbers, got '$v'" >&2; exit 2 ;; esac
done
for n in $calls_list; do
    case "$n" in '' | *[!0-9]* | 0) echo "sip-bench: --calls wants positive whole numbers, got '$n'" >&2; exit 2 ;; esac
done
[ -n "$calls_list" ] || { echo "sip-bench: --calls is empty" >&2; exit 2; }

say() { echo "sip-bench: $*" >&2; }
die() { say "$*"; exit 1; }

command -v sipp >/dev/null 2>&1 || die "sipp is missing (apt-get install sip-tester)"
sipp_version="$( (sipp -v 2>&1 || true) | sed -n 's/^ *\(SIPp v[^ ]*[^ .]\).*/\1/p' | head -n1)"
case "$sipp_version" in *RTPSTREAM*) ;; *) die "sipp lacks RTPSTREAM support ('$sipp_version'); the reference needs rtp_stream" ;; esac
for tool in curl python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing"
done
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

bindir="${CARGO_TARGET_DIR:-$root/target}/release"
if [ "$build" = 1 ]; then
    say "building (release)"
    cargo build --release --bin voxline --bin voxline-rtp-probe >&2
fi
bin="$bindir/voxline"
probe="$bindir/voxline-rtp-probe"
{ [ -x "$bin" ] && [ -x "$probe" ]; } || die "no $bin or $probe (build them, or drop --no-build)"
"$bin" serve --help >/dev/null 2>&1 || die "$bin has no 'serve' subcommand"
# sipp sets every call up from one address at --rate: no per-source INVITE
# limit, and room for every call set up at once to be unacknowledged.
max_n="$(printf '%s\n' $calls_list | sort -n | tail -n1)"
max_calls=$((max_n > 2000 ? max_n : 2000))
door=()
if "$bin" serve --help 2>/dev/null | grep -q -- '--invite-rate'; then
    door=(--invite-rate 0 --max-unconfirmed "$((max_n > 4000 ? max_n : 4000))")
fi
export VOXLINE_MODELS="${VOXLINE_MODELS:-$root/models}"
"$bin" fetch-voice >&2

# Sockets: voxline holds 4 per call, sipp's RTP engine 1 in all (plus logs);
# RTP ports: voxline takes 2 per call from --rtp-ports 20000-29999 (5000 calls).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((4 * max_n + 1000)) ] ||
    say "warning: ulimit -n is $(ulimit -n); $max_n calls need about $((4 * max_n + 1000)) descriptors"
[ "$max_n" -le 5000 ] || die "--calls: at most 5000 (voxline's RTP ports 20000-29999 hold 5000 calls)"

work="$(mktemp -d /tmp/sip-bench.XXXXXX)"
results="$work/results.jsonl"
: >"$results"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say "work directory (logs): $work"

clk_tck="$(getconf CLK_TCK)"
nproc_n="$(nproc)"

# `spawn NAME SECONDS CMD...`: CMD in the background under `timeout`, its
# output in $work/NAME.out/.err; sets SPAWNED (timeout's pid, which forwards
# signals) and CHILD (CMD's own pid, for /proc).
spawn() {
    local name="$1" limit="$2"; shift 2
    timeout -k 5 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    SPAWNED=$!
    pids+=("$SPAWNED")
    CHILD=""
    for _ in $(seq 200); do
        CHILD="$( (ps -o pid= --ppid "$SPAWNED" 2>/dev/null || true) | head -n1 | tr -d ' ')"
        [ -n "$CHILD" ] && break
        kill -0 "$SPAWNED" 2>/dev/null || break
        sleep 0.01
    done
    [ -n "$CHILD" ] || die "$name did not start (see $work/$name.err)"
}

# `stop PID`: SIGINT, then TERM/KILL after a grace period.
stop() {
    local p="$1"
    kill -INT "$p" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# Free UDP ports on 127.0.0.1, each the first of SPAN consecutive free ones.
free_ports() { # COUNT SPAN
    python3 - "$1" "$2" <<'EOF'
import socket, sys
count, span = int(sys.argv[1]), int(sys.argv[2])
held, out = [], []
while len(out) < count:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    base = s.getsockname()[1]
    group = [s]
    try:
        for k in range(1, span):
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t.bind(("127.0.0.1", base + k))
            group.append(t)
    except OSError:
        for t in group:
            t.close()
        continue
    held += group
    out.append(base)
print(" ".join(map(str, out)))
EOF
}

cpu_ticks() { # PID -> utime+stime in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
rss_kib() { # PID -> "VmRSS RssAnon" in KiB
    awk '/^VmRSS:/ { v = $2 } /^RssAnon:/ { a = $2 } END { print v + 0, a + 0 }' "/proc/$1/status" 2>/dev/null || echo "0 0"
}
thread_ticks() { # PID -> "name=ticks,..." per thread name (trailing -N dropped)
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$t/comm" 2>/dev/null)" "$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null)"
    done | awk '{ sub(/-[0-9]+$/, "", $1); a[$1] += $2 } END { for (k in a) printf "%s=%d,", k, a[k] }'
}
# Anonymous memory per mapping, as JSON {start address: KiB}.
anon_map() { # PID OUT-FILE
    python3 - "$1" >"$2" <<'EOF' || echo '{}' >"$2"
import json, re, sys
out, key = {}, None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    m = re.match(r"^([0-9a-f]+)-[0-9a-f]+ ", line)
    if m:
        key = m.group(1)
    elif line.startswith("Anonymous:") and key:
        out[key] = out.get(key, 0) + int(line.split()[1])
print(json.dumps(out))
EOF
}
now() { date +%s.%N; }
sleep_until() { # EPOCH-SECONDS
    local d
    d="$(python3 -c "import sys,time; print(max(0.0, float(sys.argv[1]) - time.time()))" "$1")"
    sleep "$d"
}
sipp_counts() { # SCREEN-FILE... -> "successful failed" (the last figures found)
    cat "$@" 2>/dev/null | awk -F'|' '/Successful call/ { s = $3 } /Failed call/ { f = $3 }
        END { gsub(/ /, "", s); gsub(/ /, "", f); print (s == "" ? "?" : s), (f == "" ? "?" : f) }' || echo "? ?"
}
# `wait_sipp TIMEOUT-PID SIPP-PID OUT-FILE`: waits for a sipp to exit. sipp
# 3.6.1 with rtp_stream can hang at exit after its last call: its count of
# RTP threads is changed without a lock, and rtpstream_shutdown() waits for it
# to reach 0. Once the final screen ("Test Terminated") is out, it gets 5 s,
# then SIGKILL. Sets SIPP_RC and SIPP_HUNG.
wait_sipp() {
    local tpid="$1" pid="$2" out="$3"
    SIPP_HUNG=0
    while kill -0 "$pid" 2>/dev/null; do
        if grep -q "Test Terminated" "$out" 2>/dev/null; then
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                SIPP_HUNG=1
                kill -KILL "$pid" 2>/dev/null || true
            fi
            break
        fi
        sleep 0.5
    done
    SIPP_RC=0
    wait "$tpid" || SIPP_RC=$?
    [ "$SIPP_HUNG" = 0 ] || SIPP_RC=0
}
# Sum of the server's per-call counters: calls, active, and each stat.
calls_summary() { # HTTP-ADDR OUT-FILE
    curl -s --max-time 10 "http://$1/calls" >"$2.json" 2>/dev/null || echo '[]' >"$2.json"
    python3 - "$2.json" >"$2" <<'EOF'
import json, sys
try:
    calls = json.load(open(sys.argv[1]))
except Exception:
    calls = []
out = {"calls": len(calls), "active": sum(1 for c in calls if c.get("state") == "active")}
for key in ("packets_sent", "underruns", "late_sends", "skipped_ticks", "send_errors"):
    out[key] = sum(c.get("stats", {}).get(key, 0) for c in calls)
out["by_call"] = {c["id"]: {k: c["stats"].get(k, 0) for k in ("late_sends", "underruns", "skipped_ticks", "packets_sent")} for c in calls}
print(json.dumps(out))
EOF
}

# The reference's audio: raw 8 kHz mu-law (sipp sends the file's bytes as is).
pcmu="$work/reference.pcmu"
"$bin" say "Thank you for calling. This is the reference stream of the concurrency benchmark; it loops for as long as the call lasts." \
    --rate 8000 --mulaw --raw -o "$pcmu" >/dev/null 2>"$work/say.err" || die "voxline say failed (see $work/say.err)"
[ -s "$pcmu" ] || die "voxline say wrote nothing to $pcmu"

# Timeline of one run, from the moment the probe is bound (t0):
#   t0: calls start at --rate; ramp = N / rate seconds
#   t0 + settle: the window opens (settle = ramp + 4 s), for --seconds
#   each call holds for settle + seconds + 3 s, then sends BYE
run_one() { # SENDER N ORDER
    local sender="$1" n="$2" order="$3"
    local ramp=$(((n + rate - 1) / rate))
    local settle=$((ramp + 4))
    local hold_ms=$(((settle + seconds + 3) * 1000))
    local budget=$((settle + seconds + ramp + 60))
    local tag="$sender-$n"
    local load_before
    load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
    local probe_port uac_port uac_media uac_cp uas_port uas_media uas_cp
    read -r probe_port uac_port uac_media uac_cp uas_port uas_media uas_cp <<<"$(free_ports 7 4)"

    local server_pid="" server_child="" http="" sip="" uas="" uas_child=""
    if [ "$sender" = voxline ]; then
        say "[$tag] starting voxline serve"
        spawn "$tag-server" $((budget + 120)) "$bin" serve --sip 127.0.0.1:0 --http 127.0.0.1:0 --rtp-ports 20000-29999 \
            --rtp-timeout 0 --max-calls "$max_calls" --greeting "$greeting" "${door[@]}"
        server_pid="$SPAWNED" server_child="$CHILD"
        for _ in $(seq 1200); do
            grep -q '^ready ' "$work/$tag-server.out" 2>/dev/null && break
            kill -0 "$server_pid" 2>/dev/null || die "[$tag] voxline serve exited: $(tail -n 20 "$work/$tag-server.err")"
            sleep 0.1
        done
        local ready
        ready="$(grep -m1 '^ready ' "$work/$tag-server.out")" || die "[$tag] voxline serve not ready after 120 s"
        sip="$(sed -n 's/.*sip=\([^ ]*\).*/\1/p' <<<"$ready")"
        http="$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$ready")"
        sleep 1
    else
        say "[$tag] starting the sipp UAS"
        spawn "$tag-uas" "$budget" sipp -sf tests/sipp/bench_uas.xml -i 127.0.0.1 -p "$uas_port" -mi 127.0.0.1 -mp "$uas_media" \
            -ci 127.0.0.1 -cp "$uas_cp" -key rtp_ip 127.0.0.1 -key rtp_port "$probe_port" -m "$n" -nostdin \
            -trace_err -error_file "$work/$tag-uas.errors" -trace_screen -screen_file "$work/$tag-uas.screen"
        uas="$SPAWNED" uas_child="$CHILD"
        sip="127.0.0.1:$uas_port"
        sleep 0.5
    fi

    # The caller starts idle (-r 0) so its memory before the calls can be read,
    # then gets its rate over the control socket.
    local scenario keys
    if [ "$sender" = voxline ]; then
        scenario=tests/sipp/bench_uac.xml
        keys=(-key rtp_ip 127.0.0.1 -key rtp_port "$probe_port")
    else
        scenario=tests/sipp/bench_uac_rtp.xml
        keys=(-key pcmu_stream "$pcmu,-1,0")
    fi
    say "[$tag] $n calls at $rate/s, window ${seconds} s after ${settle} s"
    spawn "$tag-uac" "$budget" sipp -sf "$scenario" "$sip" -i 127.0.0.1 -p "$uac_port" -mi 127.0.0.1 -mp "$uac_media" \
        -ci 127.0.0.1 -cp "$uac_cp" "${keys[@]}" -r 0 -l "$n" -m "$n" -d "$hold_ms" -nostdin \
        -trace_err -error_file "$work/$tag-uac.errors" -trace_screen -screen_file "$work/$tag-uac.screen"
    local uac="$SPAWNED" uac_child="$CHILD"
    sleep 1
    local sender_pid
    if [ "$sender" = voxline ]; then sender_pid="$server_child"; else sender_pid="$uac_child"; fi
    # Memory before the calls, once the sender is idle and its memory holds
    # still for 3 s (start-up allocations are sometimes returned late);
    # at most 20 s. The samples go to $work/$tag-idle.log.
    local rss_before stable=0 prev_rss="" prev_cpu="" cpu_now
    for _ in $(seq 80); do
        rss_before="$(rss_kib "$sender_pid")"
        cpu_now="$(cpu_ticks "$sender_pid")"
        echo "$(now) rss=$rss_before cpu=$cpu_now" >>"$work/$tag-idle.log"
        if [ -n "$prev_rss" ] && [ $(( ${rss_before#* } - ${prev_rss#* } )) -le 256 ] &&
            [ $(( ${prev_rss#* } - ${rss_before#* } )) -le 256 ] && [ $(( cpu_now - prev_cpu )) -le 2 ]; then
            stable=$((stable + 1))
        else
            stable=0
        fi
        [ "$stable" -lt 12 ] || break
        prev_rss="$rss_before" prev_cpu="$cpu_now"
        sleep 0.25
    done
    anon_map "$sender_pid" "$work/$tag-anon-before.json"

    # voxline sends RTCP to the probe's port + 1 (a real peer would take it);
    # a sink there keeps ICMP port-unreachables out of the picture.
    spawn "$tag-rtcp-sink" $((settle + seconds + ramp + 60)) python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
n = 0
while True:
    s.recv(2048)
    n += 1
    if n % 100 == 0:
        print(n, flush=True)
' $((probe_port + 1))
    local sink_pid="$SPAWNED"
    rm -f "$work/$tag-probe.ready"
    spawn "$tag-probe" $((settle + seconds + 30)) "$probe" --listen "127.0.0.1:$probe_port" --seconds "$seconds" --settle "$settle" \
        --ready-file "$work/$tag-probe.ready"
    local probe_pid="$SPAWNED" probe_child="$CHILD"
    for _ in $(seq 500); do
        [ -s "$work/$tag-probe.ready" ] && break
        sleep 0.01
    done
    local t0
    t0="$(now)"
    printf 'cset rate %s' "$rate" >"/dev/udp/127.0.0.1/$uac_cp"

    local t_start t_end
    t_start="$(python3 -c "print(float('$t0') + $settle)")"
    t_end="$(python3 -c "print(float('$t0') + $settle + $seconds)")"
    if [ "$sender" = voxline ]; then
        sleep_until "$(python3 -c "print($t_start - 1.5)")"
        calls_summary "$http" "$work/$tag-calls-start"
    fi
    sleep_until "$t_start"
    local cpu0 cpu0_uas=0 w0 threads0 probe_cpu0
    cpu0="$(cpu_ticks "$sender_pid")"
    w0="$(now)"
    probe_cpu0="$(cpu_ticks "$probe_child")"
    [ -z "$uas_child" ] || cpu0_uas="$(cpu_ticks "$uas_child")"
    threads0="$(thread_ticks "$sender_pid")"
    # Sampled in the same order as at the start, ending a little before the
    # probe does (it started a few ms before t0).
    sleep_until "$(python3 -c "print($t_end - 0.5)")"
    local cpu1 cpu1_uas=0 w1 rss_during threads1 probe_cpu1 nthreads
    cpu1="$(cpu_ticks "$sender_pid")"
    w1="$(now)"
    probe_cpu1="$(cpu_ticks "$probe_child")"
    [ -z "$uas_child" ] || cpu1_uas="$(cpu_ticks "$uas_child")"
    threads1="$(thread_ticks "$sender_pid")"
    nthreads="$( (ls "/proc/$sender_pid/task" 2>/dev/null || true) | wc -l)"
    rss_during="$(rss_kib "$sender_pid")"
    anon_map "$sender_pid" "$work/$tag-anon-during.json"
    [ "$sender" != voxline ] || calls_summary "$http" "$work/$tag-calls-end"
    wait "$probe_pid" || say "[$tag] the probe failed: $(tail -n 5 "$work/$tag-probe.err")"
    local load_after
    load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

    # Let every call end with its BYE.
    say "[$tag] window done; waiting for the calls to hang up"
    local uac_rc uac_hung
    wait_sipp "$uac" "$uac_child" "$work/$tag-uac.out"
    uac_rc="$SIPP_RC" uac_hung="$SIPP_HUNG"
    [ "$uac_hung" = 0 ] || say "[$tag] the sipp UAC hung at exit after its last call (killed)"
    local calls_after=""
    if [ "$sender" = voxline ]; then
        sleep 1
        calls_summary "$http" "$work/$tag-calls-after"
        calls_after="$work/$tag-calls-after"
        stop "$server_pid"
    else
        wait_sipp "$uas" "$uas_child" "$work/$tag-uas.out"
        [ "$SIPP_RC" = 0 ] || say "[$tag] the sipp UAS exited with $SIPP_RC"
    fi
    kill "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
    local counts
    counts="$(sipp_counts "$work/$tag-uac.out" "$work/$tag-uac.screen")"

    SIPB_SENDER="$sender" SIPB_N="$n" SIPB_ORDER="$order" SIPB_PROBE="$(cat "$work/$tag-probe.out")" \
    SIPB_CPU="$cpu0 $cpu1 $cpu0_uas $cpu1_uas" SIPB_WALL="$w0 $w1" SIPB_TCK="$clk_tck" \
    SIPB_RSS="$rss_before $rss_during" SIPB_SIPP="$counts $uac_rc $uac_hung" SIPB_LOAD="$load_before $load_after" \
    SIPB_CALLS="$work/$tag-calls-start $work/$tag-calls-end $calls_after" SIPB_LOG="$work/$tag-server.err" \
    SIPB_SETTLE="$settle" SIPB_HOLD="$hold_ms" SIPB_THREADS="$threads0 $threads1" SIPB_NTHREADS="$nthreads" SIPB_PROBE_CPU="$probe_cpu0 $probe_cpu1" SIPB_ANON="$work/$tag-anon-before.json $work/$tag-anon-during.json" \
    python3 - >>"$results" <<'EOF'
import json, os, re
e = os.environ
probe = json.loads(e["SIPB_PROBE"]) if e["SIPB_PROBE"].strip() else {}
c0, c1, u0, u1 = map(float, e["SIPB_CPU"].split())
w0, w1 = map(float, e["SIPB_WALL"].split())
tck = float(e["SIPB_TCK"])
n = int(e["SIPB_N"])
cpu = 100.0 * (c1 - c0) / tck / (w1 - w0)
rss0, anon0, rss1, anon1 = map(int, e["SIPB_RSS"].split())
a0, a1 = (json.load(open(f)) for f in e["SIPB_ANON"].split())
# Memory the calls added: growth of each anonymous mapping; mappings that
# shrank (a malloc arena trimming start-up garbage) are left out and their
# total reported apart.
growth = sum(max(0, v - a0.get(k, 0)) for k, v in a1.items())
shrunk = sum(max(0, v - a1.get(k, 0)) for k, v in a0.items())
t0, t1 = (dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in part.split(",") if kv) for part in e["SIPB_THREADS"].split())
threads = {k: round(100.0 * (t1.get(k, 0) - t0.get(k, 0)) / tck / (w1 - w0), 1) for k in sorted(t1)}
ok, failed, rc, hung = e["SIPB_SIPP"].split()
load = e["SIPB_LOAD"].split()
row = {
    "sender": e["SIPB_SENDER"], "calls": n, "order": int(e["SIPB_ORDER"]), "probe": probe,
    "cpu_pct": round(cpu, 2), "cpu_pct_per_call": round(cpu / n, 4),
    "rss_before_kib": rss0, "rss_during_kib": rss1, "rss_kib_per_call": round((rss1 - rss0) / n, 2),
    "rss_anon_before_kib": anon0, "rss_anon_during_kib": anon1, "rss_anon_kib_per_call": round((anon1 - anon0) / n, 2),
    "thread_cpu_pct": threads, "threads": int(e["SIPB_NTHREADS"]),
    "anon_growth_kib_per_call": round(growth / n, 2), "anon_shrunk_kib": shrunk,
    "probe_cpu_pct": round(100.0 * (lambda a, b: b - a)(*map(float, e["SIPB_PROBE_CPU"].split())) / tck / (w1 - w0), 1),
    "sipp_successful": ok, "sipp_failed": failed, "sipp_rc": int(rc), "sipp_hung_at_exit": hung == "1",
    "settle_s": int(e["SIPB_SETTLE"]), "hold_ms": int(e["SIPB_HOLD"]),
    "load_before": load[:3], "load_after": load[3:],
}
if e["SIPB_SENDER"] != "voxline":
    row["uas_cpu_pct"] = round(100.0 * (u1 - u0) / tck / (w1 - w0), 2)
else:
    files = e["SIPB_CALLS"].split()
    def load_summary(path):
        try:
            return json.load(open(path))
        except Exception:
            return None
    start, end = load_summary(files[0]), load_summary(files[1])
    after = load_summary(files[2]) if len(files) > 2 else None
    server = {}
    if start and end:
        server["calls_at_window_start"] = start["calls"]
        server["active_at_window_start"] = start["active"]
        server["calls_at_window_end"] = end["calls"]
        # Counters over the window: per call, end minus start (calls present in both).
        for key in ("late_sends", "underruns", "skipped_ticks", "packets_sent"):
            server[key + "_window"] = sum(v[key] - start["by_call"][cid][key] for cid, v in end["by_call"].items() if cid in start["by_call"])
        for key in ("late_sends", "underruns", "skipped_ticks", "send_errors"):
            server[key + "_total"] = end[key]
        server["calls_with_late_sends_window"] = sum(
            1 for cid, v in end["by_call"].items() if cid in start["by_call"] and v["late_sends"] > start["by_call"][cid]["late_sends"])
    if after is not None:
        server["calls_left_after_bye"] = after["calls"]
    log = open(e["SIPB_LOG"], errors="replace").read() if os.path.exists(e["SIPB_LOG"]) else ""
    server["log_warnings"] = sum(1 for line in log.splitlines() if re.search(r"\bWARN\b|\bERROR\b", line))
    server["pacer_stalls"] = log.count("pacer stalled")
    row["server"] = server
print(json.dumps(row))
EOF
    tail -n 1 "$results" >&2
}

date_start="$(date -u '+%Y-%m-%d %H:%M UTC')"
# The tree as the run starts (the binaries are what --no-build found there).
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD -- src sip sdp Cargo.toml Cargo.lock 2>/dev/null && [ -z "$(git ls-files --others --exclude-standard src sip sdp 2>/dev/null)" ] ||
    commit="$commit + uncommitted changes"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
order=0
idx=0
for n in $calls_list; do
    if [ $((idx % 2)) = 0 ]; then senders="voxline sipp"; else senders="sipp voxline"; fi
    for s in $senders; do
        order=$((order + 1))
        run_one "$s" "$n" "$order"
    done
    idx=$((idx + 1))
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$( (lscpu 2>/dev/null || true) | sed -n 's/^Model name: *//p' | head -n1)"
[ -n "$cpu" ] || cpu="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)"

section="$(
    SIPB_INVOCATION="$invocation" SIPB_DATE="$date_start" SIPB_CPU="$cpu" SIPB_NPROC="$nproc_n" SIPB_COMMIT="$commit" \
    SIPB_LOAD="$load_start $load_end" SIPB_SIPP_VERSION="$sipp_version" SIPB_SECONDS="$seconds" SIPB_RATE="$rate" \
    SIPB_KERNEL="$(uname -r)" SIPB_BINARY="$(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC')" \
    python3 - "$results" <<'EOF'
import json, os, sys
e = os.environ
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
load = e["SIPB_LOAD"].split()
label = {"voxline": "voxline", "sipp": "sipp rtp_stream"}
def f(x, d=1):
    return "—" if x is None else f"{x:.{d}f}"
print("## SIP concurrency")
print()
print("N concurrent calls, each sending 20 ms PCMU RTP to one receiver that timestamps every packet "
      "in the kernel (`voxline-rtp-probe`, streams told apart by SSRC). voxline's row is `voxline serve` "
      "answering N sipp calls (greeting from the cache, then silence frames, from its pacing threads: one per core, "
      "each pacing its share of the calls). "
      "The reference row is another RTP sender measured the same way in the same invocation: "
      "sipp's own RTP engine (`rtp_stream`, PCMU, looped), N calls from a sipp UAC to a sipp UAS whose answer "
      "points at the probe. Runs alternate voxline-first / sipp-first from one N to the next.")
print()
print("* **interval** — time between consecutive packets of a stream at the receiver, over all streams "
      "(20 ms is perfect pacing); **p99 / max ours/ref** compare voxline with the reference. Ratios travel, "
      "milliseconds describe this machine and its load.")
print("* **drift** — per stream, arrival span minus RTP timestamp span over the window (mean, largest "
      "absolute): a sender whose clock runs slow or fast shows here; single late packets at the window's edges do too.")
print("* **CPU** — the sending process's utime+stime over the window, as % of one core (voxline: the whole "
      "server; reference: the sipp UAC that streams). **RSS KiB/call** — growth of the sender's resident anonymous memory "
      "from before the calls (once idle and steady) to the window's end, over N, summed per mapping over the mappings that grew: "
      "voxline sometimes starts with ~15 MB of start-up garbage in one malloc arena that is trimmed during the run, which would "
      "otherwise cancel the calls' memory (the plain VmRSS before → during is in the notes, the trimmed amount in the raw JSON).")
print("* **The reference's own pattern.** sipp 3.6.1's `rtp_stream` runs 20 streams per thread, wakes on 20 ms "
      "boundaries of a millisecond clock and sends while the stream's RTP timestamp (milliseconds x 8) is behind the clock; "
      "a stream whose phase falls on the boundary misses it by the strict comparison and goes out twice at the next one. "
      "Its intervals are therefore mostly 20.2 ms with regular 40 ms / 0 ms pairs, which sets its p99 near 36-37 ms at any "
      "load; the reference p99 is that engine's signature, the max interval and the drift are where its load shows.")
print("* **late** — voxline's own count of packets sent more than 10 ms after their deadline, over the window "
      "(from `GET /calls`); **drops** — datagrams the kernel dropped at the probe (should be 0, else the probe "
      "could not keep up and the row is not a measurement of the sender).")
print("* Re-run with `scripts/sip-bench.sh --write` (about 9 minutes for the default 100/500/1000 calls and "
      "60 s windows); it writes this section to /tmp/sip-bench-section.md. The block between the markers is generated.")
print()
print("<!-- sip-bench.sh:begin -->")
print(f"Command: `{e['SIPB_INVOCATION']}`  ")
print(f"Date: {e['SIPB_DATE']}; commit {e['SIPB_COMMIT']}; voxline binary built {e['SIPB_BINARY']}  ")
print(f"Machine: {e['SIPB_CPU']}, nproc {e['SIPB_NPROC']}, Linux {e['SIPB_KERNEL']}; load average {' '.join(load[:3])} before, "
      f"{' '.join(load[3:])} after; {e['SIPB_SIPP_VERSION']}  ")
print(f"Workload: per N, N calls set up at {e['SIPB_RATE']}/s, measured over a {e['SIPB_SECONDS']} s window that opens "
      f"4 s after the last call was placed; everything on 127.0.0.1")
def rss_cell(r):
    return f"{r['anon_growth_kib_per_call']:.1f}"
by_n = {}
for r in rows:
    by_n.setdefault(r["calls"], {})[r["sender"]] = r
for n in sorted(by_n):
    group = by_n[n]
    ref = group.get("sipp", {}).get("probe", {})
    print()
    print(f"### {n} calls")
    print()
    print("| sender | streams | packets/s/stream | interval p50 (ms) | p99 | p99.9 | max | seq faults | ts faults | drift mean / max (ms) | drops | CPU % | CPU %/call | RSS KiB/call | p99 ours/ref | max ours/ref |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sender in ("voxline", "sipp"):
        r = group.get(sender)
        if not r:
            continue
        p = r["probe"]
        iv = p.get("interval_ms", {})
        streams = p.get("streams", 0)
        pps = p.get("packets", 0) / streams / p.get("window_s", 1) if streams else 0.0
        if sender == "voxline" and ref.get("interval_ms", {}).get("p99"):
            r99 = f"{iv['p99'] / ref['interval_ms']['p99']:.2f}"
            rmax = f"{iv['max'] / ref['interval_ms']['max']:.2f}"
        else:
            r99 = rmax = "—"
        dr = p.get("drift_ms", {})
        print(f"| {label[sender]} | {streams} | {pps:.1f} | {f(iv.get('p50'), 2)} | {f(iv.get('p99'), 2)} | {f(iv.get('p999'), 2)} | "
              f"{f(iv.get('max'), 2)} | {p.get('seq_faults', '?')} | {p.get('ts_faults', '?')} | {f(dr.get('mean'), 2)} / {f(dr.get('max_abs'), 2)} | "
              f"{p.get('kernel_drops', '?')} | {r['cpu_pct']:.1f} | {r['cpu_pct_per_call']:.3f} | {rss_cell(r)} | {r99} | {rmax} |")
    notes = []
    v = group.get("voxline")
    if v:
        s = v.get("server", {})
        notes.append(f"voxline: {s.get('calls_at_window_start', '?')} calls up at the window's start "
                     f"({s.get('active_at_window_start', '?')} confirmed); over the window {s.get('late_sends_window', '?')} late sends "
                     f"in {s.get('calls_with_late_sends_window', '?')} calls, {s.get('underruns_window', '?')} underruns, "
                     f"{s.get('skipped_ticks_window', '?')} skipped ticks; whole calls {s.get('late_sends_total', '?')} late sends, "
                     f"{s.get('send_errors_total', '?')} send errors, {s.get('pacer_stalls', 0)} pacer stalls logged; "
                     f"sipp: {v['sipp_successful']} calls completed, {v['sipp_failed']} failed; "
                     f"{s.get('calls_left_after_bye', '?')} calls left after the BYEs; CPU by thread: "
                     + ", ".join(f"{k} {x:.1f}%" for k, x in sorted(v.get("thread_cpu_pct", {}).items(), key=lambda kv: -kv[1]) if x > 0)
                     + f"; VmRSS {v['rss_before_kib']} → {v['rss_during_kib']} KiB ({v['rss_kib_per_call']:.1f} KiB/call)"
                     + (f"; {v['anon_shrunk_kib'] // 1024} MiB of start-up memory was returned during the run" if v.get('anon_shrunk_kib', 0) > 4096 else ""))
    probe_cpu = ", ".join(f"{label[k]} run {group[k].get('probe_cpu_pct', 0):.1f}%" for k in ("voxline", "sipp") if k in group)
    r = group.get("sipp")
    if r:
        notes.append(f"reference: sipp {r['sipp_successful']} calls completed, {r['sipp_failed']} failed"
                     + ("; the sipp UAC hung at exit after its last call (a known race in sipp 3.6.1's RTP thread count) and was killed" if r.get("sipp_hung_at_exit") else "")
                     + "; the sipp UAS used "
                     f"{r.get('uas_cpu_pct', 0):.1f}% CPU; the UAC ran {r.get('threads', '?')} threads; VmRSS {r['rss_before_kib']} → {r['rss_during_kib']} KiB ({r['rss_kib_per_call']:.1f} KiB/call)")
    notes.append(f"the probe itself used {probe_cpu} of a core")
    print()
    for note in notes:
        print(f"* {note}")
print()
print("<details><summary>raw JSON, in run order</summary>")
print()
print("```")
for r in sorted(rows, key=lambda r: r["order"]):
    r = dict(r)
    print(json.dumps(r))
print("```")
print()
print("</details>")
print("<!-- sip-bench.sh:end -->")
EOF
)"

echo "$section"
if [ -n "$write_to" ]; then
    printf '%s\n' "$section" >"$write_to"
    say "wrote the section to $write_to"
fi
say "logs: $work"
