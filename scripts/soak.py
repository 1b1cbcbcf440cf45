#!/usr/bin/env python3
"""Soak: many calls for a long time, looking for what grows.

The driver behind scripts/soak.sh, which starts `voxline serve` and passes
--sip/--http/--server-pid. --calls SIP callers stay up at once; each call lives
a uniform 20-60 s and is then hung up (BYE) and replaced by a new one, so call
set-up and tear-down are soaked too. On each call an agent (control WebSocket)
loops: it speaks, either the server's cached prompt (--prompt, most turns:
no synthesis, so 200 calls fit 2 cores) or a short sentence that is
synthesized; one turn in four is barged in on (`clear`) 0.3-1.0 s after it
starts; then it pauses 1-4 s. Every RTP packet is counted, none is kept.

Every 10 s the server's VmRSS and open file descriptors (/proc/PID) are
sampled, with the live calls (GET /calls). At the end every call is hung up
and GET /calls must be empty within 10 s. Growth = the median of the last half
of the samples after the warm-up (--warmup seconds, default a fifth of the
run) over the median of the first half, for RSS and for descriptors; the soak passes when both are under 5 %, no call is left,
and no turn failed. One JSON summary goes to --json and a line to stderr.
Standard library + websockets only.
"""

import argparse
import asyncio
import json
import os
import random
import selectors
import sys
import threading
import time
from pathlib import Path

import websockets

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ttfa_bench import SipCaller, bind_pair, http_json  # noqa: E402

PHRASES = [
    "One moment please.",
    "Let me check that for you.",
    "Your appointment is on Tuesday.",
    "Thanks, that is all I need.",
]


def log(msg):
    print(f"soak: {msg}", file=sys.stderr, flush=True)


class Sink:
    """Every call's RTP/RTCP sockets, drained by one thread; packets counted."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.packets = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, socks):
        with self.lock:
            for s in socks:
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ)

    def remove(self, socks):
        with self.lock:
            for s in socks:
                try:
                    self.sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    def _run(self):
        while not self.stop:
            with self.lock:
                ready = self.sel.select(timeout=0) if self.sel.get_map() else []
            for key, _ in ready:
                try:
                    while True:
                        key.fileobj.recv(2048)
                        self.packets += 1
                except (BlockingIOError, OSError):
                    pass
            time.sleep(0.005)


def proc_sample(pid):
    rss = None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


async def one_call(args, server, http, sink, stats, stop_at, rng):
    loop = asyncio.get_running_loop()
    rtp, rtcp = bind_pair()
    sink.add([rtp, rtcp])
    caller = SipCaller(server, rtp.getsockname()[1])
    ws = None
    try:
        await loop.run_in_executor(None, caller.invite)
        caller.serve_in_background()
        info = None
        for _ in range(200):
            calls = await loop.run_in_executor(None, http_json, f"http://{http}/calls")
            info = next((c for c in calls if c.get("sip_call_id") == caller.call_id), None)
            if info:
                break
            await asyncio.sleep(0.05)
        if not info:
            raise RuntimeError("the call is not in GET /calls")
        ws = await websockets.connect(f"ws://{http}/v1/calls/{info['id']}/control", ping_interval=None, open_timeout=15)
        stats["calls"] += 1
        life_end = min(stop_at, time.monotonic() + rng.uniform(20, 60))
        turn = 0
        reader = asyncio.create_task(drain(ws, stats))
        while time.monotonic() < life_end and not reader.done():
            turn += 1
            text = rng.choice(PHRASES) if rng.random() < args.synth_share else args.prompt
            await ws.send(json.dumps({"type": "speak", "text": text, "turn": f"t{turn}", "last": True}))
            stats["turns"] += 1
            if rng.random() < 0.25:
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                await ws.send(json.dumps({"type": "clear"}))
                stats["barge_ins"] += 1
            await asyncio.sleep(rng.uniform(1.0, 4.0))
        reader.cancel()
    except Exception as e:  # noqa: BLE001
        stats["failures"] += 1
        stats.setdefault("errors", []).append(f"{type(e).__name__}: {e}"[:200])
    finally:
        if ws is not None:
            await ws.close()
        await loop.run_in_executor(None, caller.bye)
        caller.close()
        sink.remove([rtp, rtcp])


async def drain(ws, stats):
    async for frame in ws:
        if isinstance(frame, str) and '"error"' in frame[:40]:
            stats["error_events"] += 1


async def slot(args, server, http, sink, stats, stop_at, rng):
    await asyncio.sleep(rng.uniform(0, args.ramp))
    while time.monotonic() < stop_at:
        await one_call(args, server, http, sink, stats, stop_at, rng)


async def run(args):
    host, port = args.sip.rsplit(":", 1)
    server, http = ("127.0.0.1" if host in ("0.0.0.0", "") else host, int(port)), args.http
    sink = Sink()
    stats = {"calls": 0, "turns": 0, "barge_ins": 0, "failures": 0, "error_events": 0}
    t0 = time.monotonic()
    stop_at = t0 + args.seconds
    samples = []

    async def sampler():
        while time.monotonic() < stop_at + 1:
            rss, fds = proc_sample(args.server_pid)
            live = len(await asyncio.get_running_loop().run_in_executor(None, http_json, f"http://{http}/calls"))
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_kib": rss, "fds": fds, "calls": live})
            log(f"t={samples[-1]['t']:.0f}s rss={rss} KiB fds={fds} calls={live} turns={stats['turns']} failures={stats['failures']}")
            await asyncio.sleep(10)

    rngs = [random.Random(args.seed * 1000 + i) for i in range(args.calls)]
    sampling = asyncio.create_task(sampler())
    await asyncio.gather(*(slot(args, server, http, sink, stats, stop_at, rng) for rng in rngs))
    sampling.cancel()
    # Every call hung up: none may be left.
    left = None
    for _ in range(100):
        left = len(http_json(f"http://{http}/calls"))
        if left == 0:
            break
        time.sleep(0.1)
    rss, fds = proc_sample(args.server_pid)
    samples.append({"t": round(time.monotonic() - t0, 1), "rss_kib": rss, "fds": fds, "calls": left, "after": True})
    sink.stop = True
    warm = [s for s in samples if s["t"] >= args.warmup and not s.get("after")]
    growth = {}
    if len(warm) >= 2:
        # Medians of the first and the last half of the samples after the
        # warm-up: RSS swings by several percent from one sample to the next
        # (allocator arenas), a leak moves the whole second half.
        half = len(warm) // 2
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        growth = {k: med([s[k] for s in warm[half:]]) / med([s[k] for s in warm[:half]]) - 1.0
                  for k in ("rss_kib", "fds") if med([s[k] for s in warm[:half]])}
    ok = stats["failures"] == 0 and left == 0 and all(g < 0.05 for g in growth.values()) and len(warm) >= 2
    return {"ok": ok, "calls_at_once": args.calls, "seconds": args.seconds, "warmup_s": args.warmup, "packets": sink.packets,
            "calls_left": left, "growth": growth, "samples": samples, **stats}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sip", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--seconds", type=float, default=3600)
    p.add_argument("--warmup", type=float, default=None, help="seconds before growth is measured (default: a fifth of the run)")
    p.add_argument("--ramp", type=float, default=None, help="seconds over which the calls start (default 0.05 s per call)")
    p.add_argument("--prompt", required=True, help="the server's cached prompt (its --greeting)")
    p.add_argument("--synth-share", type=float, default=0.1, help="share of turns that are synthesized (default 0.1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    args.warmup = args.seconds / 5 if args.warmup is None else args.warmup
    args.ramp = 0.05 * args.calls if args.ramp is None else args.ramp
    result = asyncio.run(run(args))
    Path(args.json).write_text(json.dumps(result, indent=1))
    g = result["growth"]
    log(f"{'PASS' if result['ok'] else 'FAIL'}: {result['calls']} calls, {result['turns']} turns, {result['barge_ins']} barge-ins, "
        f"{result['failures']} failures, {result['calls_left']} calls left; growth after warm-up: "
        + ", ".join(f"{k} {v * 100:+.1f} %" for k, v in g.items()))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
