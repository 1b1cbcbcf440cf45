#!/usr/bin/env python3
"""A WebRTC caller for voxline's integration tests, built on aiortc (PyPI).

Negotiates with `POST /v1/webrtc/offer` (loopback ICE candidates only), sends a
440 Hz tone as its microphone, opens the `control` data channel, sends a few bad
messages (each must come back as an `error` event), asks for caller audio, speaks
TEXT with `last: true`, and records the server's PCMU track until `speech.done`
(plus a second). Writes the received audio as a 16-bit 8 kHz WAV and prints one
JSON summary line on stdout: the events, binary frame count, packet timing.

    aiortc_client.py --http 127.0.0.1:8080 --text "Hello there." --wav out.wav
    aiortc_client.py ... --vanish-after 2    (exit abruptly 2 s after speech starts)
    aiortc_client.py ... --mode close        (listen 2 s without speaking, then pc.close())
    aiortc_client.py ... --mode hangup       (ask the server to hang up; watch the data channel)

`--mode close` reports the loudest sample heard before closing (a greeting
turned off must leave it 0) and `closed_unix`, the wall-clock time of
`pc.close()`. `--mode hangup` reports the events and `channel_closed_at`, when
the data channel closed (`call.ended` must come before it).
"""
import argparse
import asyncio
import fractions
import json
import os
import sys
import time
import urllib.error
import urllib.request
import wave

import aioice.ice
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from av import AudioFrame

# Loopback only: the tests never leave 127.0.0.0/8.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

RATE = 8000
FRAME = 160


class Tone(MediaStreamTrack):
    """A paced 440 Hz tone, 20 ms per frame."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        t = np.arange(self.n, self.n + FRAME)
        x = (np.sin(2 * np.pi * 440 * t / RATE) * 8000).astype(np.int16)
        frame = AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, RATE)
        self.n += FRAME
        return frame


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


async def negotiate(pc, http, on_frame):
    """Records the server's track through `on_frame`, offers with no greeting
    and applies the answer; the answer (its `call`), or None after printing
    the refusal."""

    async def record(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            on_frame(frame)

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            asyncio.ensure_future(record(track))

    await pc.setLocalDescription(await pc.createOffer())
    status, answer = await asyncio.get_running_loop().run_in_executor(
        None, post, f"http://{http}/v1/webrtc/offer", {"type": "offer", "sdp": pc.localDescription.sdp, "greeting": False})
    if status != 200:
        print(json.dumps({"error": answer, "status": status}))
        return None
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return answer


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--wav", required=True)
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--vanish-after", type=float, default=None)
    ap.add_argument("--mode", choices=["hear", "close", "hangup"], default="hear")
    args = ap.parse_args()
    if args.mode != "hear":
        return await lifecycle(args)

    pc = RTCPeerConnection()
    pc.addTrack(Tone())
    channel = pc.createDataChannel("control")
    events, binary, caller = [], [0], []
    audio, arrivals = [], []
    done = asyncio.Event()
    started = asyncio.Event()
    t0 = time.monotonic()

    @channel.on("open")
    def on_open():
        channel.send("this is not json")
        channel.send(json.dumps({"type": "no_such_message"}))
        channel.send(json.dumps({"type": "caller_audio", "enabled": True, "format": "pcm16"}))
        channel.send(json.dumps({"type": "speak", "text": args.text, "turn": "t1", "last": True}))
        events.append({"type": "_sent", "at": time.monotonic() - t0})

    @channel.on("message")
    def on_message(message):
        if isinstance(message, (bytes, bytearray)):
            binary[0] += 1
            caller.append(np.frombuffer(bytes(message), dtype="<i2"))
            return
        event = json.loads(message)
        event["_at"] = time.monotonic() - t0
        events.append(event)
        if event["type"] == "speech.started":
            started.set()
        if event["type"] in ("speech.done", "call.ended"):
            done.set()

    def on_frame(frame):
        if frame.sample_rate != RATE:
            raise SystemExit(f"unexpected decoded rate {frame.sample_rate}")
        audio.append(frame.to_ndarray().reshape(-1).astype(np.int16))
        arrivals.append(time.monotonic() - t0)

    answer = await negotiate(pc, args.http, on_frame)
    if answer is None:
        return 1

    if args.vanish_after is not None:
        await asyncio.wait_for(started.wait(), args.timeout)
        await asyncio.sleep(args.vanish_after)
        print(json.dumps({"call": answer["call"], "vanished": True}), flush=True)
        os._exit(0)  # no DTLS close, no SCTP abort: the peer just disappears

    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(1.0)
    codec = None
    for t in pc.getTransceivers():
        if t.kind == "audio" and t.receiver and getattr(t.receiver, "_track", None) is not None:
            codec = getattr(t, "_codecs", [None])[0]
    await pc.close()

    pcm = np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)
    with wave.open(args.wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    # Our tone as the server decoded it (caller audio frames on the data channel).
    tone = np.concatenate(caller).astype(np.float64) if caller else np.zeros(0)
    tone = tone[RATE // 2:]  # past the start (jitter buffer fill, codec start-up)
    tone_rms = float(np.sqrt(np.mean(tone ** 2))) if tone.size else 0.0
    crossings = int(np.sum((tone[:-1] < 0) & (tone[1:] >= 0))) if tone.size else 0
    tone_hz = crossings * RATE / tone.size if tone.size else 0.0
    print(json.dumps({"call": answer["call"], "events": events, "binary_frames": binary[0], "frames": len(audio),
                      "caller_rms": tone_rms, "caller_hz": tone_hz,
                      "samples": int(pcm.size), "codec": getattr(codec, "mimeType", None), "answer_sdp": answer["sdp"]}))
    return 0


async def lifecycle(args):
    """--mode close / hangup: no speech; how the call ends."""
    pc = RTCPeerConnection()
    pc.addTrack(Tone())
    channel = pc.createDataChannel("control")
    events, audio = [], []
    attached, ended = asyncio.Event(), asyncio.Event()
    closed_at = [None]
    t0 = time.monotonic()

    @channel.on("message")
    def on_message(message):
        if isinstance(message, (bytes, bytearray)):
            return
        event = json.loads(message)
        event["_at"] = time.monotonic() - t0
        events.append(event)
        if event["type"] == "call.attached":
            attached.set()

    @channel.on("close")
    def on_close():
        closed_at[0] = time.monotonic() - t0
        ended.set()

    answer = await negotiate(pc, args.http, lambda frame: audio.append(frame.to_ndarray().reshape(-1).astype(np.int16)))
    if answer is None:
        return 1
    await asyncio.wait_for(attached.wait(), args.timeout)
    summary = {"call": answer["call"]}
    if args.mode == "close":
        await asyncio.sleep(2.0)
        pcm = np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)
        summary.update(frames=len(audio), peak=int(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0)
        summary["closed_unix"] = time.time()
        await pc.close()
    else:
        status, _ = await asyncio.get_running_loop().run_in_executor(
            None, post, f"http://{args.http}/calls/{answer['call']}/hangup", {})
        summary["hangup_status"] = status
        try:
            await asyncio.wait_for(ended.wait(), 5)
        except asyncio.TimeoutError:
            pass
        summary["channel_closed_at"] = closed_at[0]
        await pc.close()
    summary["events"] = events
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
