#!/usr/bin/env python3
"""Concurrent calls: first sound per turn, underruns and CPU as N calls talk at once.

The driver behind scripts/load-bench.sh, which starts a fresh `voxline serve`
for every (scheduler, N) run and passes --sip/--http/--server-pid. Two
subcommands:

    load_bench.py run --sip H:P --http H:P --calls N --seconds S --server-pid PID --label L --json OUT
    load_bench.py render --results R1.json R2.json ... [--reference REF.json] [--meta JSON] [--markdown OUT]

`run` is N SIP callers at once (as scripts/ttfa_bench.py, whose SipCaller it
uses: INVITE over UDP on loopback, an SDP offer pointing at an RTP socket this
process owns, so audio is timed where a caller would hear it) and, per call,
an agent on the call's control WebSocket (ws://HTTP/v1/calls/<id>/control).
Each agent loops for --seconds: it sends one whole telephone sentence as one
message {"type":"speak","text":...,"turn":"tK","last":true}, waits for
`speech.done` of that turn, pauses uniformly 0.3-1.2 s and goes on with the
next sentence. The sentences are src/bench.rs `SENTENCES` (read from that
file, so both benchmarks speak the same text); call i starts at sentence
i mod 10, and each agent's first turn starts at a uniform moment of the
ramp (--ramp seconds, default 0.25 s per call and at least 1.2 s: calls
arriving at 4 per second), so turns do not all begin on the same tick.
Turns that begin during the ramp are timed and reported apart (`ramp`):
the figures, underruns and CPU are those of the steady state after it.

* First sound of a turn: from sending its speak message to the first RTP
  packet at that call's socket, after the send, whose payload is sound: the
  mean absolute value of its mu-law samples, decoded to 16-bit linear, is
  above --sound-threshold (default 100, about -50 dBFS). Digital silence
  (0xFF/0x7F bytes only) never counts, nor does the voice's near-silent
  lead-in. Arrival times are the kernel's receive timestamps
  (SO_TIMESTAMPNS), put on time.monotonic_ns()'s clock.
* Underruns: the server's per-call `stats.underruns` (GET /calls: 20 ms
  frames sent as silence inside an utterance because synthesis was late),
  summed over the calls, counted over the measured window; the sum of the
  `underruns` of every `utterance.done` event is kept as a cross-check.
* Caller-side gaps: inside a turn (from its first sound to the arrival of
  `speech.done`), consecutive RTP packets whose sequence numbers skip, or
  that arrive more than 40 ms apart.
* CPU: the server process's utime + stime (/proc/PID/stat) over the window,
  as % of one core; the machine's busy share (/proc/stat) and this driver's
  own CPU too, since it shares the machine.

The window opens once every call is answered and attached (after one
warm-up turn on the first call) and closes once every agent has finished
the turn it was in when --seconds ran out. `run` writes one JSON file;
`render` turns the files of all runs (and the piper-tts reference's JSON
line, from tests/reference/piper_reference_bench.py) into the markdown
section. Standard library + websockets only; progress goes to stderr.
"""

import argparse
import ast
import asyncio
import concurrent.futures
import json
import os
import random
import re
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# ---------------------------------------------------------------------------
# Helpers shared with the time-to-first-audio driver (SIP caller, HTTP).

try:
    import websockets
except ImportError:  # pragma: no cover
    sys.exit("load_bench: the python package `websockets` is missing (pip install websockets)")

sys.path.insert(0, str(HERE))
from ttfa_bench import SipCaller, bind_pair, http_json, percentile  # noqa: E402


def log(msg):
    print(f"load-bench: {msg}", file=sys.stderr, flush=True)


def fmt(x, d=0):
    return "—" if x is None else f"{x:.{d}f}"


def rust_sentences(path, name="SENTENCES"):
    """The string literals of `pub const NAME: &[&str]` in src/bench.rs
    (the same parser as tests/reference/piper_reference_bench.py)."""
    src = Path(path).read_text(encoding="utf-8")
    m = re.search(name + r"\s*:\s*&\[&str\]\s*=\s*&\[(.*?)\];", src, re.S)
    if not m:
        sys.exit(f"load_bench: no `{name}: &[&str]` in {path}")
    return [ast.literal_eval(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', m.group(1))]


# ---------------------------------------------------------------------------
# Mu-law

def ulaw_to_linear(b):
    """G.711 mu-law byte -> 16-bit linear sample."""
    b = ~b & 0xFF
    sign, exponent, mantissa = b & 0x80, (b >> 4) & 0x07, b & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if sign else magnitude


ULAW_ABS = [abs(ulaw_to_linear(b)) for b in range(256)]
SILENCE_BYTES = b"\xff\x7f"


# ---------------------------------------------------------------------------
# RTP: every call's socket pair, read by one thread (selectors/epoll).

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


class CallMedia:
    """One call's RTP socket: every packet as (t_ns, seq, sound)."""

    def __init__(self, index, threshold):
        self.index = index
        self.threshold_sum = threshold * 160  # compared with the sum of |samples| of a 20 ms payload
        self.sock, self.rtcp = bind_pair()
        self.port = self.sock.getsockname()[1]
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.kernel_ts = True
        except OSError:
            self.kernel_ts = False
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.rtcp.setblocking(False)
        self.packets = []
        self.rtcp_packets = 0
        self.not_rtp = 0
        self.lock = threading.Lock()
        self.armed_ns = None
        self.event = None
        self.loop = None
        self.first = None  # (t_ns, index in packets)

    def arm(self, since_ns, event, loop):
        with self.lock:
            self.armed_ns, self.event, self.loop, self.first = since_ns, event, loop, None

    def disarm(self):
        with self.lock:
            self.armed_ns = self.event = None
            return self.first

    def on_datagram(self, data, t):
        if len(data) < 12 or data[0] >> 6 != 2:
            self.not_rtp += 1
            return
        payload = data[12 + 4 * (data[0] & 0x0F):]
        seq = (data[2] << 8) | data[3]
        sound = False
        if payload.translate(None, SILENCE_BYTES):
            n = len(payload)
            sound = n > 0 and sum(map(ULAW_ABS.__getitem__, payload)) * 160 > self.threshold_sum * n
        self.packets.append((t, seq, sound))
        if sound and self.armed_ns is not None and self.first is None:
            with self.lock:
                if self.armed_ns is not None and self.first is None and t > self.armed_ns:
                    self.first = (t, len(self.packets) - 1)
                    self.loop.call_soon_threadsafe(self.event.set)

    def close(self):
        self.sock.close()
        self.rtcp.close()


class Receiver:
    def __init__(self, medias):
        self.sel = selectors.DefaultSelector()
        for m in medias:
            self.sel.register(m.sock, selectors.EVENT_READ, (m, False))
            self.sel.register(m.rtcp, selectors.EVENT_READ, (m, True))
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                media, is_rtcp = key.data
                sock = key.fileobj
                if is_rtcp:
                    try:
                        while True:
                            sock.recv(2048)
                            media.rtcp_packets += 1
                    except (BlockingIOError, OSError):
                        pass
                    continue
                offset = time.time_ns() - time.monotonic_ns()
                while True:
                    try:
                        data, anc, _flags, _addr = sock.recvmsg(2048, 64)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    t = None
                    for level, kind, cdata in anc:
                        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(cdata) >= 16:
                            sec, nsec = struct.unpack("qq", cdata[:16])
                            t = sec * 1_000_000_000 + nsec - offset  # CLOCK_REALTIME -> monotonic
                    media.on_datagram(data, t if t is not None else time.monotonic_ns())

    def close(self):
        self.stop = True
        self.thread.join(timeout=2)
        self.sel.close()


# ---------------------------------------------------------------------------
# Control socket

class Control:
    def __init__(self, url):
        self.url = url
        self.ws = None
        self.queue = asyncio.Queue()
        self.reader = None
        self.closed = False
        self.errors = []

    async def connect(self):
        self.ws = await websockets.connect(self.url, max_size=1 << 22, ping_interval=None, compression=None, open_timeout=15)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        if first.get("type") != "call.attached":
            raise RuntimeError(f"{self.url}: first event was {first}, not call.attached")
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    continue
                ev = json.loads(frame)
                ev["_t"] = time.monotonic_ns()
                if ev.get("type") == "error":
                    self.errors.append(ev)
                await self.queue.put(ev)
        except Exception:  # noqa: BLE001
            pass
        finally:
            self.closed = True
            await self.queue.put({"type": "_closed", "_t": time.monotonic_ns()})

    async def next_event(self, timeout):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def drain(self):
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def close(self):
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except Exception:  # noqa: BLE001
                pass
        if self.reader:
            self.reader.cancel()


# ---------------------------------------------------------------------------
# /proc

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid):
    """utime + stime of a process, in seconds (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of proc(5)


def machine_ticks():
    """(busy, total) jiffies of all CPUs."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def underruns_by_call(http, ids):
    calls = http_json(f"http://{http}/calls", timeout=10)
    return {c["id"]: c.get("stats", {}).get("underruns", 0) for c in calls if c.get("id") in ids}


def call_stats(http, ids):
    calls = http_json(f"http://{http}/calls", timeout=10)
    return {c["id"]: c.get("stats", {}) for c in calls if c.get("id") in ids}


# ---------------------------------------------------------------------------
# One call: SIP, control socket, agent loop

class Call:
    def __init__(self, index, media, server):
        self.index = index
        self.media = media
        self.caller = SipCaller(server, media.port)
        self.id = None
        self.ctl = None
        self.refused = None
        self.rows = []


async def setup_call(call, http, token, loop):
    try:
        await loop.run_in_executor(None, call.caller.invite)
    except Exception as e:  # noqa: BLE001
        call.refused = str(e)
        return
    call.caller.serve_in_background()
    info = await loop.run_in_executor(None, find_call, http, call.caller.call_id)
    call.id = info["id"]
    call.ctl = Control(f"ws://{http}/v1/calls/{call.id}/control{token}")
    await call.ctl.connect()


def find_call(http, sip_call_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in http_json(f"http://{http}/calls", timeout=10):
            if c.get("sip_call_id") == sip_call_id:
                return c
        time.sleep(0.05)
    raise RuntimeError(f"GET /calls has no call with Call-ID {sip_call_id}")


def turn_gaps(packets, start, done_t):
    """(gap events, missing packets, largest spacing ms) between packets[start] and the last packet at or before done_t."""
    gaps = missing = 0
    worst = 0.0
    prev = packets[start]
    for i in range(start + 1, len(packets)):
        p = packets[i]
        if p[0] > done_t:
            break
        dseq = (p[1] - prev[1]) & 0xFFFF
        spacing = (p[0] - prev[0]) / 1e6
        worst = max(worst, spacing)
        lost = dseq - 1 if 1 < dseq < 0x8000 else 0
        missing += lost
        if lost or spacing > 40.0:
            gaps += 1
        prev = p
    return gaps, missing, worst


async def run_turn(call, text, turn_id, args, counted):
    loop = asyncio.get_running_loop()
    ctl, media = call.ctl, call.media
    for ev in ctl.drain():
        if ev.get("type") == "_closed":
            raise RuntimeError(f"call {call.index}: the control socket closed")
    sound = asyncio.Event()
    t0 = time.monotonic_ns()
    media.arm(t0, sound, loop)
    await ctl.send({"type": "speak", "text": text, "turn": turn_id, "last": True})
    row = {"call": call.index, "turn": turn_id, "sentence": text, "counted": counted, "t0": t0, "ok": False,
           "utterances": 0, "underruns": 0}
    deadline = time.monotonic() + args.turn_timeout
    done = None
    while True:
        ev = await ctl.next_event(max(0.0, deadline - time.monotonic()))
        if ev is None:
            row["error"] = f"no speech.done within {args.turn_timeout:.0f} s"
            break
        typ = ev.get("type")
        if typ == "_closed":
            row["error"] = "control socket closed"
            break
        if typ == "error":
            row.setdefault("errors", []).append(ev.get("code"))
        if ev.get("turn") != turn_id:
            continue
        if typ == "speech.started" and "server_ttfa_ms" not in row:
            row["server_ttfa_ms"] = ev.get("ttfa_ms")
            row["jitter_wait_ms"] = ev.get("jitter_wait_ms")
        elif typ == "utterance.done":
            row["utterances"] += 1
            row["underruns"] += int(ev.get("underruns") or 0)
        elif typ == "speech.done":
            done = ev
            row["played_ms"] = ev.get("played_ms")
            break
    if done is not None and not sound.is_set():
        # The first sound may still be in flight behind the event.
        try:
            await asyncio.wait_for(sound.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    first = media.disarm()
    if first is not None:
        t, idx = first
        row["first_sound_ms"] = (t - t0) / 1e6
        if done is not None:
            row["ok"] = True
            row["gaps"], row["missing"], row["max_spacing_ms"] = turn_gaps(media.packets, idx, done["_t"])
    elif done is not None:
        row["error"] = "speech.done without a packet above the sound threshold"
    if done is None:
        await ctl.send({"type": "clear"})
        ev = None
        end = time.monotonic() + 5
        while time.monotonic() < end:
            ev = await ctl.next_event(end - time.monotonic())
            if ev is None or ev.get("type") in ("cleared", "_closed"):
                break
    return row


async def agent(call, sentences, args, steady_from, window_end, rng):
    await asyncio.sleep(rng.uniform(0.0, args.ramp))
    k = 0
    while time.monotonic() < window_end:
        text = sentences[(call.index + k) % len(sentences)]
        k += 1
        row = await run_turn(call, text, f"t{k}", args, counted=time.monotonic() >= steady_from)
        call.rows.append(row)
        if not row["ok"]:
            log(f"call {call.index} turn {row['turn']}: {row.get('error')}")
            if call.ctl.closed:
                return
        await asyncio.sleep(rng.uniform(0.3, 1.2))


async def run_async(args):
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=8))
    sentences = rust_sentences(args.sentences_from)
    sip_host, sip_port = args.sip.rsplit(":", 1)
    if sip_host in ("0.0.0.0", ""):
        sip_host = "127.0.0.1"
    server = (sip_host, int(sip_port))
    http = args.http.replace("0.0.0.0", "127.0.0.1")
    token = f"?token={args.api_token}" if args.api_token else ""

    medias = [CallMedia(i, args.sound_threshold) for i in range(args.calls)]
    rx = Receiver(medias)
    rx.start()
    calls = [Call(i, m, server) for i, m in enumerate(medias)]
    t_setup = time.monotonic()
    sem = asyncio.Semaphore(4)

    async def one(c):
        async with sem:
            await setup_call(c, http, token, loop)

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    failure = None
    for c, r in zip(calls, results):
        if isinstance(r, Exception) and c.refused is None:
            c.refused = f"{type(r).__name__}: {r}"
    live = [c for c in calls if c.refused is None]
    refused = [c for c in calls if c.refused is not None]
    setup_s = time.monotonic() - t_setup
    log(f"[{args.label}] N={args.calls}: {len(live)} calls answered and attached in {setup_s:.1f} s"
        + (f", {len(refused)} refused or failed: {refused[0].refused}" if refused else ""))
    summary = {"label": args.label, "calls": args.calls, "answered": len(live), "refused": [c.refused for c in refused],
               "seconds": args.seconds, "sound_threshold": args.sound_threshold,
               "kernel_timestamps": all(m.kernel_ts for m in medias)}
    if not live:
        failure = "no call was answered"
    warm = None
    if live:
        # One warm-up turn on the first call (not counted).
        warm = await run_turn(live[0], sentences[-1], "warmup", args, counted=False)
        await asyncio.sleep(0.5)
        ids = {c.id for c in live}
        steady_from = time.monotonic() + args.ramp
        window_end = steady_from + args.seconds
        rngs = [random.Random(args.seed * 1000 + c.index) for c in live]
        tasks = [asyncio.create_task(agent(c, sentences, args, steady_from, window_end, rng)) for c, rng in zip(live, rngs)]
        # The window opens when the ramp ends.
        await asyncio.sleep(max(0.0, steady_from - time.monotonic()))
        before_stats = await loop.run_in_executor(None, call_stats, http, ids)
        cpu0, mach0, self0, w0 = proc_cpu_s(args.server_pid), machine_ticks(), time.process_time(), time.monotonic()
        done_results = await asyncio.gather(*tasks, return_exceptions=True)
        for c, r in zip(live, done_results):
            if isinstance(r, Exception):
                failure = failure or f"call {c.index}: {type(r).__name__}: {r}"
                log(f"call {c.index} agent aborted: {type(r).__name__}: {r}")
        w1 = time.monotonic()
        cpu1, mach1, self1 = proc_cpu_s(args.server_pid), machine_ticks(), time.process_time()
        after_stats = await loop.run_in_executor(None, call_stats, http, ids)
        window_s = w1 - w0
        summary["window_s"] = window_s
        summary["server_cpu_pct"] = (cpu1 - cpu0) / window_s * 100 if cpu0 is not None and cpu1 is not None else None
        summary["driver_cpu_pct"] = (self1 - self0) / window_s * 100
        if mach0 and mach1 and mach1[1] > mach0[1]:
            summary["machine_busy_pct"] = (mach1[0] - mach0[0]) / (mach1[1] - mach0[1]) * 100
        summary["machine_cores"] = os.cpu_count()
        und = {cid: after_stats.get(cid, {}).get("underruns", 0) - before_stats.get(cid, {}).get("underruns", 0) for cid in ids}
        summary["underruns"] = sum(und.values())
        summary["underrun_calls"] = sum(1 for v in und.values() if v)
        summary["late_sends"] = sum(after_stats.get(cid, {}).get("late_sends", 0) - before_stats.get(cid, {}).get("late_sends", 0) for cid in ids)
        summary["skipped_ticks"] = sum(after_stats.get(cid, {}).get("skipped_ticks", 0) - before_stats.get(cid, {}).get("skipped_ticks", 0) for cid in ids)
        summary["underruns_per_call_min"] = summary["underruns"] / (len(live) * window_s / 60.0) if window_s > 0 else None
        summary["underruns_per_min"] = summary["underruns"] / (window_s / 60.0) if window_s > 0 else None
    else:
        summary.update(window_s=0, server_cpu_pct=None, driver_cpu_pct=None, underruns=None, underruns_per_call_min=None,
                       underruns_per_min=None, underrun_calls=None, late_sends=None, skipped_ticks=None)

    # Hang up.
    byes = await asyncio.gather(*(loop.run_in_executor(None, c.caller.bye) for c in live), return_exceptions=True)
    for c in live:
        await c.ctl.close()
        c.caller.close()
    for c in refused:
        try:
            c.caller.close()
        except Exception:  # noqa: BLE001
            pass
    rx.close()
    for m in medias:
        m.close()

    every = [r for c in live for r in c.rows]
    rows = [r for r in every if r["counted"]]
    ok = [r for r in rows if r["ok"]]
    fs = [r["first_sound_ms"] for r in ok]
    ramp_fs = [r["first_sound_ms"] for r in every if not r["counted"] and r["ok"]]
    summary.update(
        ramp_s=args.ramp,
        ramp_turns=len(every) - len(rows),
        ramp_first_sound_ms={"p50": percentile(ramp_fs, 50), "max": max(ramp_fs) if ramp_fs else None},
        turns=len(rows),
        turns_ok=len(ok),
        turns_failed=len(rows) - len(ok),
        failures=sorted({r.get("error", "?") for r in rows if not r["ok"]}),
        first_sound_ms={"p50": percentile(fs, 50), "p90": percentile(fs, 90), "p99": percentile(fs, 99),
                        "mean": sum(fs) / len(fs) if fs else None, "max": max(fs) if fs else None},
        server_ttfa_ms_p50=percentile([r["server_ttfa_ms"] for r in ok if r.get("server_ttfa_ms") is not None], 50),
        event_underruns=sum(r["underruns"] for r in rows),
        caller_gaps=sum(r.get("gaps", 0) for r in ok),
        caller_missing=sum(r.get("missing", 0) for r in ok),
        turns_with_gaps=sum(1 for r in ok if r.get("gaps")),
        max_spacing_ms=max((r.get("max_spacing_ms", 0.0) for r in ok), default=None),
        packets=sum(len(m.packets) for m in medias),
        rtcp_packets=sum(m.rtcp_packets for m in medias),
        not_rtp=sum(m.not_rtp for m in medias),
        error_events=sum(len(c.ctl.errors) for c in live if c.ctl),
        byes=sorted({str(b) for b in byes}),
        warmup=warm and {k: warm.get(k) for k in ("ok", "first_sound_ms", "error")},
        failure=failure,
        load_after=" ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?",
    )
    return summary, every


def cmd_run(args):
    if args.ramp is None:
        args.ramp = max(1.2, 0.25 * args.calls)
    try:
        sys.setswitchinterval(0.0005)  # the receive thread gets the GIL quickly
    except Exception:  # noqa: BLE001
        pass
    summary, rows = asyncio.run(run_async(args))
    fsm = summary["first_sound_ms"]
    other = other_cpu_pct(summary)
    if other is not None and other > 20:
        log(f"[{args.label}] N={args.calls}: warning: other processes used {other:.0f}% of a core during the window")
    log(f"[{args.label}] N={args.calls}: {summary['turns_ok']}/{summary['turns']} turns; first sound p50 {fmt(fsm['p50'])} "
        f"p90 {fmt(fsm['p90'])} p99 {fmt(fsm['p99'])} ms; underruns {summary['underruns']}; caller gaps {summary['caller_gaps']}; "
        f"server CPU {fmt(summary.get('server_cpu_pct'))}%")
    with open(args.json, "w") as f:
        json.dump({"summary": summary, "turns": rows}, f, indent=1)
    if summary.get("failure") or summary["turns_ok"] == 0:
        sys.exit(1)


# ---------------------------------------------------------------------------
# Markdown

CAP_P99_MS = 250.0


def other_cpu_pct(r):
    """CPU that neither the server nor the driver used during the window, in % of one core."""
    busy, cores = r.get("machine_busy_pct"), r.get("machine_cores")
    if busy is None or not cores or r.get("server_cpu_pct") is None or r.get("driver_cpu_pct") is None:
        return None
    return max(0.0, busy * cores - r["server_cpu_pct"] - r["driver_cpu_pct"])


def render(runs, reference, meta):
    out = []
    p = out.append
    p("## Concurrent calls (load-bench)")
    p("")
    p("N SIP callers at once on loopback, each with an agent on its control socket that speaks one whole "
      "telephone sentence per turn (one `speak` with `last: true`, the 10 sentences of src/bench.rs `SENTENCES`, "
      "each call starting at a different one), waits for `speech.done`, pauses 0.3-1.2 s (uniform) and goes on, "
      "for a fixed time. The driver (`scripts/load_bench.py`) is every caller itself, with its own RTP socket per call. "
      "The calls' first turns start at uniform moments of a ramp (0.25 s per call, at least 1.2 s: calls arriving at "
      "4 per second); the figures are those of the steady state after it, and the turns begun during the ramp are "
      "reported apart in the notes (`ramp`).")
    p("")
    p(f"* **First sound**: from sending a turn's `speak` to the first RTP packet at that call's socket (kernel "
      f"receive timestamp) whose payload is sound: mean absolute value of the decoded mu-law samples above "
      f"{meta.get('sound_threshold', 100):g} on the 16-bit scale (about -50 dBFS); silence (0xFF/0x7F) never counts. "
      "Percentiles over every turn of every call.")
    p("* **Underruns**: the server's per-call `stats.underruns` (20 ms frames sent as silence inside an utterance "
      "because synthesis was late), summed over the calls over the measured window; per call-minute divides by "
      "calls x window. **Caller gaps**: inside a turn (first sound to `speech.done`), consecutive packets with "
      "a sequence number skipped or more than 40 ms apart.")
    p("* **Server CPU**: utime + stime of the voxline process over the window, in % of one core "
      f"(the machine has {meta.get('nproc', '?')}; the driver runs on the same cores, its share is in the notes).")
    p(f"* **Capacity**: the largest N with first-sound p99 <= {CAP_P99_MS:.0f} ms, zero underruns, every call "
      "answered and no failed turn.")
    p("* A fresh server for each (scheduler, N); the schedulers alternate order from one N to the next.")
    p("")
    p("<!-- load-bench.sh:begin -->")
    p(f"Command: `{meta.get('invocation', '?')}`  ")
    p(f"Date: {meta.get('date', '?')}; commit {meta.get('commit', '?')}; voxline binary built {meta.get('binary_built', '?')}  ")
    p(f"Machine: {meta.get('cpu', '?')}, nproc {meta.get('nproc', '?')}, Linux {meta.get('kernel', '?')}; load average "
      f"{meta.get('load_before', '?')} before; Python {sys.version.split()[0]}, websockets {getattr(websockets, '__version__', '?')}  ")
    secs = sorted({r["seconds"] for r in runs})
    p(f"Workload: {', '.join(f'{s:g}' for s in secs)} s per run after one warm-up turn and the ramp; server "
      f"`{meta.get('server_args', '?')}`; everything on 127.0.0.1")
    ref_p50 = None
    if reference:
        ref_p50 = reference.get("first_chunk_ms_p50")
        p(f"Reference: {reference.get('runtime', 'piper-tts')}, one thread, the same {len(rust_sentences(ROOT / 'src' / 'bench.rs'))} "
          f"sentences whole: p50 **{fmt(ref_p50)} ms** per sentence (p90 {fmt(reference.get('first_chunk_ms_p90'))} ms, "
          f"{reference.get('sentences', '?')} sentences after a warm-up pass; piper-tts yields one chunk per sentence, "
          "so its first chunk is the whole sentence)")
    else:
        p("Reference: piper-tts not run (`--no-reference`)")
    p("")
    labels = []
    for r in runs:
        if r["label"] not in labels:
            labels.append(r["label"])
    for label in labels:
        rs = sorted((r for r in runs if r["label"] == label), key=lambda r: r["calls"])
        p(f"### {label}")
        p("")
        p("| calls | turns | failed | first sound p50 (ms) | p90 | p99 | underruns (frames) | per call-min | caller gaps | server CPU (% of a core) |")
        p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rs:
            f = r["first_sound_ms"]
            calls = f"{r['calls']}" if r["answered"] == r["calls"] else f"{r['calls']} ({r['answered']} answered)"
            p(f"| {calls} | {r['turns_ok']} | {r['turns_failed']} | {fmt(f['p50'])} | {fmt(f['p90'])} | {fmt(f['p99'])} | "
              f"{fmt(r['underruns'])} | {fmt(r['underruns_per_call_min'], 1)} | {r['caller_gaps']} | {fmt(r['server_cpu_pct'])} |")
        p("")
        good = [r for r in rs if r["answered"] == r["calls"] and r["turns_failed"] == 0 and r["turns_ok"] > 0
                and r["first_sound_ms"]["p99"] is not None and r["first_sound_ms"]["p99"] <= CAP_P99_MS and r["underruns"] == 0]
        if good:
            cap = max(r["calls"] for r in good)
            bad_below = [r["calls"] for r in rs if r["calls"] < cap and r not in good]
            note = f" (but N = {', '.join(map(str, bad_below))} did not meet it)" if bad_below else ""
            p(f"Capacity = **{cap} call{'s' if cap != 1 else ''}** (largest N with p99 <= {CAP_P99_MS:.0f} ms and zero underruns){note}.  ")
        else:
            p(f"Capacity = **none of the N measured** (no N with p99 <= {CAP_P99_MS:.0f} ms and zero underruns).  ")
        one = next((r for r in rs if r["calls"] == 1), None)
        sixteen = next((r for r in rs if r["calls"] == 16), None)

        def ratio(a, b):
            return a / b if a is not None and b else None
        if one and sixteen:
            p(f"16 calls vs 1 call: first sound p50 x{fmt(ratio(sixteen['first_sound_ms']['p50'], one['first_sound_ms']['p50']), 2)}, "
              f"p99 x{fmt(ratio(sixteen['first_sound_ms']['p99'], one['first_sound_ms']['p99']), 2)}.  ")
        else:
            p("16 calls vs 1 call: — (not both measured).  ")
        if one and ref_p50:
            p(f"One call's first-sound p50 / piper-tts p50 per sentence: {fmt(ratio(one['first_sound_ms']['p50'], ref_p50), 2)} "
              f"({fmt(one['first_sound_ms']['p50'])} / {fmt(ref_p50)} ms).")
        p("")
    p("Notes:")
    p("")
    few = sorted({r["calls"] for r in runs if 0 < r["turns_ok"] < 100})
    if few:
        p(f"* With fewer than 100 turns (N = {', '.join(map(str, few))}) p99 is about the largest turn's figure.")
    busy = [r for r in runs if (other_cpu_pct(r) or 0) > 20]
    if busy:
        p(f"* **Other processes used CPU during {len(busy)} run(s)** (up to {fmt(max(other_cpu_pct(r) for r in busy))}% of a "
          "core, see below): those figures carry that load.")
    for r in sorted(runs, key=lambda r: (labels.index(r["label"]), r["calls"])):
        extra = []
        if r.get("failure"):
            extra.append(f"**did not complete: {r['failure']}**")
        if r["refused"]:
            extra.append(f"{len(r['refused'])} calls refused or failed to set up ({r['refused'][0]})")
        if r["failures"]:
            extra.append(f"failed turns: {'; '.join(r['failures'])}")
        p(f"* {r['label']}, N={r['calls']}: window {r['window_s']:.0f} s; underruns {fmt(r['underruns'])} in "
          f"{fmt(r['underrun_calls'])} calls ({fmt(r['underruns_per_min'], 1)}/min; `utterance.done` sum {r['event_underruns']}); "
          f"caller gaps {r['caller_gaps']} in {r['turns_with_gaps']} turns, {r['caller_missing']} packets missing, largest "
          f"spacing {fmt(r['max_spacing_ms'])} ms; late sends {fmt(r['late_sends'])}, skipped ticks {fmt(r['skipped_ticks'])}; "
          f"server ttfa_ms p50 {fmt(r['server_ttfa_ms_p50'])}; machine busy {fmt(r.get('machine_busy_pct'))}% of "
          f"{r.get('machine_cores', '?')} cores (% of a core: server {fmt(r['server_cpu_pct'])}, driver "
          f"{fmt(r['driver_cpu_pct'])}, other processes {fmt(other_cpu_pct(r))})"
          + (f"; ramp {r['ramp_s']:g} s: {r['ramp_turns']} turns, first sound p50 {fmt(r['ramp_first_sound_ms']['p50'])}, "
             f"max {fmt(r['ramp_first_sound_ms']['max'])} ms" if r.get("ramp_s") is not None else "")
          + ("; " + "; ".join(extra) if extra else "") + ".")
    p("")
    p("<details><summary>summary JSON</summary>")
    p("")
    p("```")
    for r in runs:
        p(json.dumps(r, sort_keys=True))
    if reference:
        p(json.dumps(reference, sort_keys=True))
    p("```")
    p("")
    p("</details>")
    p("<!-- load-bench.sh:end -->")
    return "\n".join(out) + "\n"


def cmd_render(args):
    runs = []
    for path in args.results:
        try:
            runs.append(json.load(open(path))["summary"])
        except (OSError, ValueError, KeyError) as e:
            log(f"skipping {path}: {e}")
    reference = None
    if args.reference:
        try:
            lines = [ln for ln in Path(args.reference).read_text().splitlines() if ln.strip().startswith("{")]
            reference = json.loads(lines[-1]) if lines else None
        except OSError as e:
            log(f"no reference: {e}")
    meta = json.loads(args.meta) if args.meta else {}
    if runs:
        meta.setdefault("sound_threshold", runs[0].get("sound_threshold", 100))
    md = render(runs, reference, meta)
    if args.markdown:
        Path(args.markdown).write_text(md)
    sys.stdout.write(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one server, N calls")
    r.add_argument("--sip", required=True, help="voxline's SIP address HOST:PORT")
    r.add_argument("--http", required=True, help="voxline's HTTP address HOST:PORT")
    r.add_argument("--calls", type=int, required=True, help="concurrent calls")
    r.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    r.add_argument("--server-pid", type=int, required=True, help="the voxline process, for its CPU time")
    r.add_argument("--label", default="server", help="the scheduler's name in the tables")
    r.add_argument("--json", required=True, help="write the summary and per-turn rows here")
    r.add_argument("--sound-threshold", type=float, default=100.0,
                   help="a packet is sound when the mean |sample| (16-bit scale) of its payload exceeds this (default 100)")
    r.add_argument("--turn-timeout", type=float, default=30.0, help="seconds to wait for a turn's speech.done (default 30)")
    r.add_argument("--sentences-from", default=str(ROOT / "src" / "bench.rs"), help="the file with `SENTENCES` (default src/bench.rs)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--ramp", type=float, default=None,
                   help="seconds over which the calls' first turns start, not measured (default 0.25 s per call, at least 1.2)")
    r.add_argument("--api-token", default=os.environ.get("VOXLINE_API_TOKEN"))
    g = sub.add_parser("render", help="the markdown section from the runs' JSON files")
    g.add_argument("--results", nargs="+", required=True)
    g.add_argument("--reference", help="the piper-tts reference's JSON line (tests/reference/piper_reference_bench.py)")
    g.add_argument("--meta", help="JSON with the section header's facts")
    g.add_argument("--markdown", help="write the section here too")
    args = ap.parse_args()
    if args.cmd == "run":
        if args.calls < 1 or args.seconds <= 0:
            ap.error("--calls >= 1 and --seconds > 0")
        cmd_run(args)
    else:
        cmd_render(args)


if __name__ == "__main__":
    main()
