#!/usr/bin/env python3
"""Time to first audio through the control socket, clause vs sentence policy.

The driver behind scripts/ttfa-bench.sh (which starts the server and passes
--sip/--http). It is the SIP caller itself: one call over UDP on loopback,
whose SDP offer points at an RTP socket this process owns, so the audio is
timed where a caller would hear it. Two control WebSockets attach to that
call, `?segment=clause` and `?segment=sentence`; turns alternate between them
in pairs (ABBA order), and both turns of a pair speak the same reply.

One turn: the reply is streamed token by token (GPT-style tokens: words with
their leading space, punctuation apart) every --token-ms, as
{"type":"speak","text":tok,"turn":"tN"}, then {"type":"speak","text":"",
"turn":"tN","last":true}. The turn's TTFA is the time from sending its first
token to the arrival of its first audio packet: the first RTP packet, after
that send, that carries the marker bit or a payload other than silence
(0xFF/0x7F). Arrival times are the kernel's receive timestamps
(SO_TIMESTAMPNS), put on time.monotonic_ns()'s clock; user-space receipt
times are kept too. Streaming stops once audio arrives; the driver waits
briefly for `speech.started` (the server's own ttfa_ms), sends {"type":"clear"},
waits for `cleared`, and pauses --pause-ms before the next turn.

Standard library + websockets only. Writes a JSON summary (--json) and the
markdown section (--markdown) when asked; progress goes to stderr.
"""

import argparse
import asyncio
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.request
import uuid

try:
    import websockets
except ImportError:  # pragma: no cover
    sys.exit("ttfa_bench: the python package `websockets` is missing (pip install websockets)")

# ---------------------------------------------------------------------------
# What the agent says: support-agent replies, 1-3 sentences, with commas.

REPLIES = [
    "Sure, I can help with that. Your order shipped on Tuesday, and it should arrive by Friday.",
    "Thanks for waiting, I found your account. The last payment was received on March third.",
    "Of course, let me check that for you. It looks like the refund was issued yesterday.",
    "I'm sorry about the trouble, that's not what we want. I've reset your password, so you can sign in again now.",
    "Got it, you'd like to change the delivery address. Could you tell me the new street address, including the zip code?",
    "Yes, that plan includes unlimited calls and texts. Data is capped at twenty gigabytes, after which speeds are reduced.",
    "No problem, I've cancelled the appointment. Would you like me to book a new one for next week?",
    "Right, so the charge you're seeing is a temporary hold. It will drop off your statement within three to five business days.",
    "Unfortunately, that item is out of stock at the moment. I can notify you when it's back, or suggest a similar model.",
    "Okay, I see two open tickets on your account. The first one, about the router, was resolved this morning.",
    "Absolutely, I can transfer you to billing. Before I do, is there anything else I can help you with today?",
    "Great news, your claim has been approved. The payment will be sent to the card on file, usually within a week.",
    "Let me look into that, it'll just take a moment. Thanks for your patience.",
    "I understand, and I'm sorry for the delay. Your technician is running about twenty minutes late, but he's on his way.",
    "To confirm, you want the premium plan, billed monthly. Is that correct?",
    "Hmm, I'm not seeing a reservation under that name. Could you spell the last name for me, please?",
    "Your balance is forty two dollars and fifty cents. The next payment is due on the fifteenth, and autopay is turned on.",
    "Sure thing, I've added a note to your file. If you call back, any of our agents will see it.",
    "Well, the warranty covers parts and labor for one year. After that, repairs are billed at a flat rate.",
    "Alright, you're all set. You'll get a confirmation email shortly, and the tracking number will follow once it ships.",
]

# GPT-2's pre-tokenizer pattern (ASCII classes): contractions, words and
# numbers with their leading space, runs of punctuation, white space.
TOKEN_RE = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")
SENTENCE_END = re.compile(r"[.?!…]['\")\]]*$")
CLAUSE_END = re.compile(r"[,;:—–]['\")\]]*$")


def tokenize(text):
    toks = TOKEN_RE.findall(text)
    assert "".join(toks) == text, text
    return toks


def first_sentence_has_clause_mark(text):
    m = re.search(r"[.?!]", text)
    head = text[: m.start()] if m else text
    return bool(re.search(r"[,;:]", head))


# ---------------------------------------------------------------------------
# Statistics

def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(values):
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None, "min": None, "max": None}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
    }


def log(msg):
    print(f"ttfa-bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# RTP receiver: a thread that timestamps every datagram.

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


def is_silence(payload):
    return all(b in (0xFF, 0x7F) for b in payload)


def bind_pair():
    """An even RTP port and the next (RTCP) on 127.0.0.1."""
    for _ in range(500):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        if port % 2 or port >= 65535:
            a.close()
            continue
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind(("127.0.0.1", port + 1))
        except OSError:
            a.close()
            b.close()
            continue
        return a, b
    raise RuntimeError("no free even/odd UDP port pair on 127.0.0.1")


class RtpReceiver:
    def __init__(self, loop):
        self.loop = loop
        self.sock, self.rtcp = bind_pair()
        self.port = self.sock.getsockname()[1]
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.kernel_ts = True
        except OSError:
            self.kernel_ts = False
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(0.2)
        self.rtcp.settimeout(0.2)
        self.packets = []  # (t_ns, user_ns, marker, seq, ts, pt, silent)
        self.rtcp_packets = 0
        self.not_rtp = 0
        self.lock = threading.Lock()
        # Armed per turn: the first audio packet after `armed_ns` fires `event`.
        self.armed_ns = None
        self.event = None
        self.first = None
        self.stop = False
        self.threads = [threading.Thread(target=self._run, daemon=True), threading.Thread(target=self._run_rtcp, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def arm(self, since_ns, event):
        with self.lock:
            self.armed_ns = since_ns
            self.event = event
            self.first = None

    def disarm(self):
        with self.lock:
            self.armed_ns = None
            self.event = None

    def _run(self):
        while not self.stop:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            except OSError:
                break
            user = time.monotonic_ns()
            t = user
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    # Kernel time is CLOCK_REALTIME: move it onto the monotonic clock.
                    offset = time.time_ns() - time.monotonic_ns()
                    t = sec * 1_000_000_000 + nsec - offset
            if len(data) < 12 or data[0] >> 6 != 2:
                self.not_rtp += 1
                continue
            cc = data[0] & 0x0F
            marker = bool(data[1] & 0x80)
            pt = data[1] & 0x7F
            seq, ts = struct.unpack("!HI", data[2:8])
            payload = data[12 + 4 * cc:]
            silent = is_silence(payload)
            rec = (t, user, marker, seq, ts, pt, silent)
            self.packets.append(rec)
            if not silent or marker:
                with self.lock:
                    if self.armed_ns is not None and self.first is None and t > self.armed_ns:
                        self.first = rec
                        ev = self.event
                        self.loop.call_soon_threadsafe(ev.set)

    def _run_rtcp(self):
        while not self.stop:
            try:
                self.rtcp.recv(2048)
                self.rtcp_packets += 1
            except socket.timeout:
                continue
            except OSError:
                break

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join(timeout=1)
        self.sock.close()
        self.rtcp.close()


# ---------------------------------------------------------------------------
# SIP UAC over UDP (just enough for one call).

class SipCaller:
    T1 = 0.5

    def __init__(self, server, rtp_port):
        self.server = server  # (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.lport = self.sock.getsockname()[1]
        self.rtp_port = rtp_port
        self.call_id = f"{uuid.uuid4().hex[:16]}@127.0.0.1"
        self.tag = uuid.uuid4().hex[:10]
        self.to_tag = None
        self.remote_target = f"sip:voxline@{server[0]}:{server[1]}"
        self.answer_sdp = None
        self.final_200 = None
        self.log = []
        self.stop = False
        self.thread = None
        self.bye_ok = threading.Event()
        self.remote_bye = threading.Event()
        self.ack = None

    def _from(self):
        return f'"ttfa-bench" <sip:bench@127.0.0.1:{self.lport}>;tag={self.tag}'

    def _to(self):
        base = f"<sip:voxline@{self.server[0]}:{self.server[1]}>"
        return base + (f";tag={self.to_tag}" if self.to_tag else "")

    def _send(self, text):
        self.sock.sendto(text.encode(), self.server)

    @staticmethod
    def parse(data):
        text = data.decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        return lines[0], headers, body

    def invite(self, timeout=10.0):
        sdp = (
            "v=0\r\n"
            f"o=ttfa-bench {random.randint(1, 1 << 30)} 1 IN IP4 127.0.0.1\r\n"
            "s=-\r\n"
            "c=IN IP4 127.0.0.1\r\n"
            "t=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-16\r\n"
            "a=ptime:20\r\n"
            "a=sendrecv\r\n"
        )
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"INVITE {self.remote_target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {self._from()}\r\n"
            f"To: {self._to()}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:bench@127.0.0.1:{self.lport}>\r\n"
            "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
            "User-Agent: voxline ttfa-bench\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
        )
        deadline = time.monotonic() + timeout
        next_tx, interval, provisional = time.monotonic(), self.T1, False
        while time.monotonic() < deadline:
            if time.monotonic() >= next_tx and not provisional:
                self._send(msg)
                next_tx = time.monotonic() + interval
                interval = min(interval * 2, 4.0)
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            start, h, body = self.parse(data)
            self.log.append(start)
            if not start.startswith("SIP/2.0 "):
                self._answer_request(start, h)
                continue
            code = int(start.split()[1])
            if h.get("call-id", [""])[0] != self.call_id:
                continue
            if code < 200:
                provisional = True  # no more retransmissions once 1xx arrived
                continue
            if code != 200:
                raise RuntimeError(f"INVITE answered with {start!r}")
            to = h.get("to", [""])[0]
            m = re.search(r";\s*tag=([^;>\s]+)", to)
            self.to_tag = m.group(1) if m else None
            contact = h.get("contact", h.get("m", [""]))[0]
            m = re.search(r"<([^>]+)>", contact)
            if m:
                self.remote_target = m.group(1)
            elif contact:
                self.remote_target = contact.split(";")[0].strip()
            self.answer_sdp = body
            self.final_200 = start
            self._send_ack()
            return body
        raise RuntimeError(f"no final answer to the INVITE within {timeout:.0f} s (got: {self.log})")

    def _send_ack(self):
        if self.ack is None:
            branch = "z9hG4bK" + uuid.uuid4().hex[:16]
            self.ack = (
                f"ACK {self.remote_target} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};branch={branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: {self._from()}\r\n"
                f"To: {self._to()}\r\n"
                f"Call-ID: {self.call_id}\r\n"
                "CSeq: 1 ACK\r\n"
                "Content-Length: 0\r\n\r\n"
            )
        self._send(self.ack)

    def _answer_request(self, start, h):
        method = start.split()[0]
        if method == "ACK":
            return
        resp = "SIP/2.0 200 OK\r\n"
        for v in h.get("via", []) or h.get("v", []):
            resp += f"Via: {v}\r\n"
        for k in ("from", "to", "call-id", "cseq"):
            for v in h.get(k, []):
                resp += f"{k.title() if k != 'call-id' else 'Call-ID'}: {v}\r\n"
        resp += "Content-Length: 0\r\n\r\n"
        self._send(resp)
        if method == "BYE":
            self.remote_bye.set()

    def serve_in_background(self):
        """Answers 200 retransmissions (with the ACK) and in-dialog requests."""
        def run():
            while not self.stop:
                try:
                    data, _ = self.sock.recvfrom(65535)
                except socket.timeout:
                    continue
                except OSError:
                    break
                start, h, _ = self.parse(data)
                self.log.append(start)
                if start.startswith("SIP/2.0 "):
                    cseq = h.get("cseq", [""])[0]
                    if "INVITE" in cseq and start.split()[1] == "200":
                        self._send_ack()
                    elif "BYE" in cseq and int(start.split()[1]) >= 200:
                        self.bye_ok.set()
                else:
                    self._answer_request(start, h)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def bye(self, timeout=5.0):
        if self.remote_bye.is_set():
            return "remote_bye"
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"BYE {self.remote_target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: {self._from()}\r\n"
            f"To: {self._to()}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            "CSeq: 2 BYE\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        deadline = time.monotonic() + timeout
        interval = self.T1
        while time.monotonic() < deadline:
            self._send(msg)
            if self.bye_ok.wait(min(interval, max(0.0, deadline - time.monotonic()))):
                return "ok"
            interval = min(interval * 2, 4.0)
        return "no answer"

    def close(self):
        self.stop = True
        if self.thread:
            self.thread.join(timeout=1)
        self.sock.close()


# ---------------------------------------------------------------------------
# HTTP

def http_json(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def find_call(http, sip_call_id, timeout=5.0):
    deadline = time.monotonic() + timeout
    calls = []
    while time.monotonic() < deadline:
        calls = http_json(f"http://{http}/calls")
        for c in calls:
            if c.get("sip_call_id") == sip_call_id:
                return c
        time.sleep(0.05)
    if len(calls) == 1:
        log(f"no call has sip_call_id {sip_call_id}; taking the only call, {calls[0].get('id')}")
        return calls[0]
    raise RuntimeError(f"GET /calls has no call with Call-ID {sip_call_id} (saw {len(calls)} calls)")


# ---------------------------------------------------------------------------
# Control sockets

class Control:
    """One control WebSocket; events go to a queue."""

    def __init__(self, policy, url):
        self.policy = policy
        self.url = url
        self.ws = None
        self.queue = asyncio.Queue()
        self.reader = None
        self.errors = []
        self.closed = False
        self.attached = None
        self.all_events = 0

    async def connect(self):
        try:
            self.ws = await websockets.connect(self.url, max_size=1 << 22, ping_interval=None, compression=None, open_timeout=10)
        except Exception as e:  # noqa: BLE001 - report whatever the library raised
            status = getattr(getattr(e, "response", None), "status_code", None) or getattr(e, "status_code", None)
            body = getattr(getattr(e, "response", None), "body", b"") or b""
            if isinstance(body, (bytes, bytearray)):
                body = body.decode(errors="replace")
            detail = f"HTTP {status}: {body.strip()}" if status else f"{type(e).__name__}: {e}"
            raise RuntimeError(f"the control socket {self.url} was refused ({detail})") from e
        first = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
        if first.get("type") != "call.attached":
            raise RuntimeError(f"{self.url}: first event was {first}, not call.attached")
        self.attached = first
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    continue
                ev = json.loads(frame)
                ev["_t"] = time.monotonic_ns()
                self.all_events += 1
                if ev.get("type") == "error":
                    self.errors.append(ev)
                    log(f"[{self.policy}] server error event: {ev}")
                await self.queue.put(ev)
        except Exception as e:  # noqa: BLE001
            log(f"[{self.policy}] socket closed: {type(e).__name__}: {e}")
        finally:
            self.closed = True
            await self.queue.put({"type": "_closed", "_t": time.monotonic_ns()})

    def drain(self):
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    async def wait_for(self, pred, timeout):
        """Next event matching pred within timeout (others are returned too)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, seen
            try:
                ev = await asyncio.wait_for(self.queue.get(), left)
            except asyncio.TimeoutError:
                return None, seen
            seen.append(ev)
            if pred(ev) or ev.get("type") == "_closed":
                return ev, seen

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
# One turn

async def run_turn(ctl, rtp, turn_id, reply, args, warmup):
    tokens = tokenize(reply)
    stale = ctl.drain()
    loop = asyncio.get_running_loop()
    audio = asyncio.Event()
    row = {"policy": ctl.policy, "turn": turn_id, "reply": REPLIES.index(reply), "warmup": warmup,
           "ok": False, "tokens": len(tokens), "stale_events": len(stale)}
    n_before = len(rtp.packets)
    step = args.token_ms * 1_000_000
    t0 = None
    sent = 0
    last_sent = False
    # Stream tokens on a fixed schedule until audio arrives.
    for i, tok in enumerate(tokens):
        if t0 is not None:
            delay = (t0 + i * step - time.monotonic_ns()) / 1e9
            if delay > 0:
                try:
                    await asyncio.wait_for(audio.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            if audio.is_set():
                break
        msg = json.dumps({"type": "speak", "text": tok, "turn": turn_id})
        if t0 is None:
            t0 = time.monotonic_ns()
            rtp.arm(t0, audio)
            await ctl.ws.send(msg)
        else:
            await ctl.ws.send(msg)
        sent += 1
    if not audio.is_set():
        delay = (t0 + len(tokens) * step - time.monotonic_ns()) / 1e9
        if delay > 0:
            try:
                await asyncio.wait_for(audio.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if not audio.is_set():
            await ctl.send({"type": "speak", "text": "", "turn": turn_id, "last": True})
            last_sent = True
    row["tokens_sent"] = sent
    row["chars_sent"] = len("".join(tokens[:sent]))
    row["last_sent"] = last_sent
    remaining = args.turn_timeout - (time.monotonic_ns() - t0) / 1e9
    if not audio.is_set():
        try:
            await asyncio.wait_for(audio.wait(), max(0.0, remaining))
        except asyncio.TimeoutError:
            pass
    first = rtp.first
    rtp.disarm()
    # The server's speech.started (it may already be queued).
    started = None
    events = []
    ev, seen = await ctl.wait_for(lambda e: e.get("type") == "speech.started" and e.get("turn") == turn_id,
                                  0.3 if first else 0.05)
    events += seen
    started = ev if ev and ev.get("type") == "speech.started" else None
    if first:
        t, user, marker, seq, ts, pt, silent = first
        row.update(ok=True, ttfa_ms=(t - t0) / 1e6, ttfa_user_ms=(user - t0) / 1e6, rx_lag_ms=(user - t) / 1e6,
                   marker=marker, silent_payload=silent, seq=seq, rtp_ts=ts, pt=pt)
        # Packets between the first token and the first audio (the stream keeps going with silence).
        row["packets_before_audio"] = sum(1 for p in rtp.packets[n_before:] if t0 < p[0] < t)
    else:
        row["error"] = f"no audio within {args.turn_timeout:.0f} s"
    if started:
        row["server_ttfa_ms"] = started.get("ttfa_ms")
        row["jitter_wait_ms"] = started.get("jitter_wait_ms")
        row["first_text"] = started.get("text")
        row["speech_started_ms"] = (started["_t"] - t0) / 1e6
    # Cut the turn short and wait for `cleared`.
    t_clear = time.monotonic_ns()
    await ctl.send({"type": "clear"})
    ev, seen = await ctl.wait_for(lambda e: e.get("type") == "cleared", 3.0)
    events += seen
    if ev and ev.get("type") == "cleared":
        row["cleared_ms"] = (ev["_t"] - t_clear) / 1e6
    else:
        row["ok"] = False
        row["error"] = row.get("error") or "no `cleared` within 3 s"
    if started is None:
        # speech.started can arrive after `cleared` (or not at all when the
        # clear was handled before the playout event): look once more.
        for e in events + ctl.drain():
            if e.get("type") == "speech.started" and e.get("turn") == turn_id:
                row["server_ttfa_ms"] = e.get("ttfa_ms")
                row["jitter_wait_ms"] = e.get("jitter_wait_ms")
                row["first_text"] = e.get("text")
                break
    row["error_events"] = [e for e in events if e.get("type") == "error"]
    if not row["error_events"]:
        del row["error_events"]
    # Audio that arrives while idle would be a leak from this turn.
    pause_from = time.monotonic_ns()
    await asyncio.sleep(args.pause_ms / 1000.0)
    n_after = len(rtp.packets)
    stray = [p for p in rtp.packets[n_before:n_after] if p[0] > pause_from + 40_000_000 and (not p[6] or p[2])]
    row["stray_audio_packets"] = len(stray)
    for e in ctl.drain():
        if e.get("type") == "error":
            row.setdefault("error_events", []).append(e)
    return row


# ---------------------------------------------------------------------------
# Main

def fmt(x, d=1):
    return "—" if x is None else f"{x:.{d}f}"


def render_markdown(summary, meta):
    s = summary
    pol = s["policies"]
    out = []
    p = out.append
    p("## Time to first audio (control socket)")
    p("")
    p("An agent streams an LLM answer into a live call token by token; **TTFA** is the time from sending the turn's "
      "first token on the control WebSocket to the arrival, at the caller's RTP socket, of the turn's first audio "
      "packet (the first packet after that send with the marker bit or a non-silence payload; kernel receive "
      "timestamps). The driver (`scripts/ttfa_bench.py`) is the SIP caller itself, on loopback, and opens two control "
      "sockets on one call: `?segment=clause` (speak at the first clause) and `?segment=sentence` (buffer until a "
      "sentence ends). Turns alternate between the two in ABBA order, both turns of a pair speaking the same reply, "
      "so machine noise hits both policies alike.")
    p("")
    p("* **Workload.** 20 support-agent replies of 1-3 sentences with commas (`REPLIES` in the driver), cut into "
      "GPT-style tokens (words with their leading space, punctuation apart) sent one every "
      f"{meta['token_ms']} ms, as an LLM streams. Once the first audio arrives, the turn is cut with `clear`, the "
      f"driver waits for `cleared` and pauses {meta['pause_ms']} ms: every turn starts from an idle line (silence frames).")
    p("* **clause/sentence** is the ratio of the two policies' figures: below 1, speaking at clauses brings "
      "the first audio earlier. It includes the time the LLM needs to produce the first clause or sentence "
      "(token rate), which is what a caller waits for; absolute times describe this machine and its load.")
    p("* **server ttfa_ms** is the server's own `speech.started` figure (first text received -> the tick that "
      "started the utterance); wire minus server is the WebSocket, scheduling and loopback delay.")
    p("* The server's jitter allowance (docs/sip.md) adapts to the last 24 utterances of both policies alike, "
      "since their turns interleave; the `jitter_wait_ms` it reports is in the notes.")
    p("* Re-run with `scripts/ttfa-bench.sh --write FILE` (about 5 minutes for 200 + 200 turns); the block between "
      "the markers is generated.")
    p("")
    p("<!-- ttfa-bench.sh:begin -->")
    p(f"Command: `{meta['invocation']}`  ")
    p(f"Date: {meta['date']}; commit {meta['commit']}; voxline binary built {meta['binary_built']}  ")
    p(f"Machine: {meta['cpu']}, nproc {meta['nproc']}, Linux {meta['kernel']}; load average {meta['load_before']} before, "
      f"{s['load_after']} after; Python {meta['python']}, websockets {meta['websockets']}  ")
    p(f"Workload: {s['turns_per_policy']} turns per policy (+{s['warmup_per_policy']} warm-up each, not counted), "
      f"one token every {meta['token_ms']} ms, ABBA order in pairs, turn timeout {meta['turn_timeout']:.0f} s; "
      f"server `--greeting \"\" --rtp-timeout 0`, everything on 127.0.0.1; run took {s['elapsed_s']:.0f} s")
    p("")
    p("| policy | turns ok | failed | TTFA p50 (ms) | p90 | p99 | mean | max | server ttfa_ms p50 | server p99 | "
      "first utterance cut at a clause mark | chars sent before audio (p50) |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("clause", "sentence"):
        r = pol[name]
        w, sv = r["wire_ms"], r["server_ms"]
        chk = r["policy_check"]
        cut = f"{chk['clause_cut']}/{chk['eligible']}" if chk["eligible"] else "—"
        p(f"| {name} | {w['n']} | {r['failed']} | {fmt(w['p50'])} | {fmt(w['p90'])} | {fmt(w['p99'])} | {fmt(w['mean'])} | "
          f"{fmt(w['max'])} | {fmt(sv['p50'])} | {fmt(sv['p99'])} | {cut} | {fmt(r['chars_before_audio_p50'], 0)} |")
    rt = s["ratio"]
    p(f"| **clause/sentence** | | | **{fmt(rt.get('p50'), 2)}** | {fmt(rt.get('p90'), 2)} | **{fmt(rt.get('p99'), 2)}** | "
      f"{fmt(rt.get('mean'), 2)} | {fmt(rt.get('max'), 2)} | {fmt(rt.get('server_p50'), 2)} | {fmt(rt.get('server_p99'), 2)} | | |")
    p("")
    for note in s["notes"]:
        p(f"* {note}")
    p("")
    p("<details><summary>summary JSON</summary>")
    p("")
    p("```")
    p(json.dumps({k: v for k, v in s.items() if k != "notes"}, sort_keys=True))
    p("```")
    p("")
    p("</details>")
    p("<!-- ttfa-bench.sh:end -->")
    return "\n".join(out) + "\n"


async def main_async(args):
    loop = asyncio.get_running_loop()
    sip_host, sip_port = args.sip.rsplit(":", 1)
    if sip_host in ("0.0.0.0", ""):
        sip_host = "127.0.0.1"
    http = args.http.replace("0.0.0.0", "127.0.0.1")
    rtp = RtpReceiver(loop)
    rtp.start()
    caller = SipCaller((sip_host, int(sip_port)), rtp.port)
    t_start = time.monotonic()
    log(f"calling sip:{sip_host}:{sip_port} (media to 127.0.0.1:{rtp.port}, kernel timestamps {'on' if rtp.kernel_ts else 'off'})")
    answer = await loop.run_in_executor(None, caller.invite)
    caller.serve_in_background()
    m = re.search(r"^m=audio (\d+) RTP/AVP ([0-9 ]+)", answer, re.M)
    log(f"answered: {caller.final_200}; media {m.group(0) if m else '?'}")
    call = await loop.run_in_executor(None, find_call, http, caller.call_id)
    call_id = call["id"]
    log(f"call id {call_id}")
    token = f"&token={args.api_token}" if args.api_token else ""
    controls = {
        pol: Control(pol, f"ws://{http}/v1/calls/{call_id}/control?segment={pol}{token}") for pol in ("clause", "sentence")
    }
    rows = []
    summary = {}
    failure = None
    try:
        for ctl in controls.values():
            await ctl.connect()
            log(f"[{ctl.policy}] attached: {ctl.url}")
        # Let the greeting (if any) and the start of the stream pass.
        await asyncio.sleep(0.5)
        rng = random.Random(args.seed)
        order_pairs = []
        total_pairs = args.warmup + args.turns
        for k in range(total_pairs):
            reply = REPLIES[(k + rng.randrange(len(REPLIES))) % len(REPLIES)] if args.shuffle else REPLIES[k % len(REPLIES)]
            pols = ("clause", "sentence") if k % 2 == 0 else ("sentence", "clause")
            order_pairs.append((k, reply, pols))
        deadline = time.monotonic() + args.max_seconds
        n = 0
        for k, reply, pols in order_pairs:
            if time.monotonic() > deadline:
                failure = f"stopped after {k - args.warmup} pairs: --max-seconds {args.max_seconds} reached"
                log(failure)
                break
            for pol in pols:
                n += 1
                ctl = controls[pol]
                if ctl.closed:
                    raise RuntimeError(f"the {pol} control socket closed")
                row = await run_turn(ctl, rtp, f"t{n}", reply, args, warmup=k < args.warmup)
                row["pair"] = k
                rows.append(row)
                if args.verbose or not row["ok"]:
                    log(json.dumps(row))
            if (k + 1) % 20 == 0 or k + 1 == total_pairs:
                done = [r for r in rows if not r["warmup"]]
                med = {p_: percentile([r["ttfa_ms"] for r in done if r["ok"] and r["policy"] == p_], 50) for p_ in ("clause", "sentence")}
                log(f"{k + 1}/{total_pairs} pairs; p50 so far clause {fmt(med['clause'])} ms, sentence {fmt(med['sentence'])} ms")
    except Exception as e:  # noqa: BLE001
        failure = f"{type(e).__name__}: {e}"
        log(f"aborted: {failure}")
    # Call stats before hanging up.
    try:
        info = await loop.run_in_executor(None, http_json, f"http://{http}/calls/{call_id}")
    except Exception as e:  # noqa: BLE001
        info = {"error": str(e)}
    bye = await loop.run_in_executor(None, caller.bye)
    ended = {}
    for pol, ctl in controls.items():
        if ctl.ws is not None:
            ev, _ = await ctl.wait_for(lambda e: e.get("type") == "call.ended", 2.0)
            ended[pol] = ev.get("reason") if ev and ev.get("type") == "call.ended" else None
        await ctl.close()
    caller.close()
    rtp.close()
    elapsed = time.monotonic() - t_start

    # ---- summary
    measured = [r for r in rows if not r["warmup"]]
    pol_summary = {}
    for pol in ("clause", "sentence"):
        rs = [r for r in measured if r["policy"] == pol]
        ok = [r for r in rs if r["ok"]]
        eligible = [r for r in ok if r.get("first_text") and first_sentence_has_clause_mark(REPLIES[r["reply"]])]
        clause_cut = [r for r in eligible if CLAUSE_END.search(r["first_text"].strip())]
        pol_summary[pol] = {
            "turns": len(rs),
            "failed": len(rs) - len(ok),
            "failures": sorted({r.get("error", "?") for r in rs if not r["ok"]}),
            "wire_ms": summarize([r["ttfa_ms"] for r in ok]),
            "wire_user_ms": summarize([r["ttfa_user_ms"] for r in ok]),
            "server_ms": summarize([r["server_ttfa_ms"] for r in ok if r.get("server_ttfa_ms") is not None]),
            "wire_minus_server_ms": summarize([r["ttfa_ms"] - r["server_ttfa_ms"] for r in ok if r.get("server_ttfa_ms") is not None]),
            "jitter_wait_ms": summarize([r["jitter_wait_ms"] for r in ok if r.get("jitter_wait_ms") is not None]),
            "speech_started_missing": sum(1 for r in ok if r.get("server_ttfa_ms") is None),
            "marker_on_first": sum(1 for r in ok if r.get("marker")),
            "silent_first_payload": sum(1 for r in ok if r.get("silent_payload")),
            "stray_audio_packets": sum(r.get("stray_audio_packets", 0) for r in rs),
            "error_events": sum(len(r.get("error_events", [])) for r in rs),
            "chars_before_audio_p50": percentile([r["chars_sent"] for r in ok], 50),
            "all_tokens_sent_before_audio": sum(1 for r in ok if r.get("last_sent")),
            "rx_lag_ms_max": max((r["rx_lag_ms"] for r in ok), default=None),
            "policy_check": {"eligible": len(eligible), "clause_cut": len(clause_cut)},
        }
    c, s_ = pol_summary["clause"], pol_summary["sentence"]

    def ratio(a, b):
        return a / b if a is not None and b else None

    ratios = {q: ratio(c["wire_ms"][q], s_["wire_ms"][q]) for q in ("p50", "p90", "p99", "mean", "max")}
    ratios["server_p50"] = ratio(c["server_ms"]["p50"], s_["server_ms"]["p50"])
    ratios["server_p99"] = ratio(c["server_ms"]["p99"], s_["server_ms"]["p99"])
    # Paired: same reply, same pair, both ok.
    by_pair = {}
    for r in measured:
        if r["ok"]:
            by_pair.setdefault(r["pair"], {})[r["policy"]] = r["ttfa_ms"]
    paired = [v["clause"] / v["sentence"] for v in by_pair.values() if "clause" in v and "sentence" in v and v["sentence"] > 0]
    ratios["paired_p50"] = percentile(paired, 50)

    notes = []
    if failure:
        notes.append(f"**The run did not complete:** {failure}.")
    chk_s, chk_c = s_["policy_check"], c["policy_check"]
    segment_ignored = chk_s["eligible"] > 0 and chk_s["clause_cut"] * 2 > chk_s["eligible"]
    if segment_ignored:
        notes.append(f"**`segment=sentence` did not take effect:** in {chk_s['clause_cut']} of {chk_s['eligible']} sentence-policy "
                     "turns whose first sentence has a comma, the first utterance still ended at a clause mark; the server "
                     "probably ignores the `segment` query parameter, so both rows measure the clause policy.")
    notes.append(f"Policy check (from `speech.started.text`, turns whose first sentence has a clause mark): the first utterance ended at "
                 f"a clause mark in {chk_c['clause_cut']}/{chk_c['eligible']} clause turns and {chk_s['clause_cut']}/{chk_s['eligible']} "
                 "sentence turns.")
    notes.append(f"Median paired ratio (same reply, same pair) clause/sentence: {fmt(ratios['paired_p50'], 2)}; "
                 f"wire minus server ttfa_ms p50: clause {fmt(c['wire_minus_server_ms']['p50'])} ms, sentence "
                 f"{fmt(s_['wire_minus_server_ms']['p50'])} ms; jitter allowance waited (server) p50 clause "
                 f"{fmt(c['jitter_wait_ms']['p50'])} ms, sentence {fmt(s_['jitter_wait_ms']['p50'])} ms.")
    notes.append(f"First audio packet: marker bit set in {c['marker_on_first']}/{c['wire_ms']['n']} clause and "
                 f"{s_['marker_on_first']}/{s_['wire_ms']['n']} sentence turns; its payload was digital silence (the voice's "
                 f"leading silence, so only the marker bit tells it apart) in {c['silent_first_payload'] + s_['silent_first_payload']}; audio packets during the pauses between turns "
                 f"(a leak from a cleared turn): {c['stray_audio_packets'] + s_['stray_audio_packets']}; `speech.started` missing in "
                 f"{c['speech_started_missing'] + s_['speech_started_missing']} turns; error events "
                 f"{c['error_events'] + s_['error_events']}; kernel-to-user receive lag max "
                 f"{fmt(max([x for x in (c['rx_lag_ms_max'], s_['rx_lag_ms_max']) if x is not None], default=None), 2)} ms.")
    st = info.get("stats", {}) if isinstance(info, dict) else {}
    notes.append(f"Call: {st.get('packets_sent', '?')} packets sent, {st.get('speech_frames', '?')} speech frames, "
                 f"{st.get('underruns', '?')} underruns, {st.get('late_sends', '?')} late sends, {st.get('skipped_ticks', '?')} "
                 f"skipped ticks; {len(rtp.packets)} RTP packets received, {rtp.rtcp_packets} RTCP; BYE: {bye}; "
                 f"call.ended on the sockets: {', '.join(f'{k} {v}' for k, v in ended.items())}.")
    for pol in ("clause", "sentence"):
        if pol_summary[pol]["failures"]:
            notes.append(f"{pol} failures: {'; '.join(pol_summary[pol]['failures'])}.")

    summary = {
        "turns_per_policy": args.turns,
        "warmup_per_policy": args.warmup,
        "token_ms": args.token_ms,
        "pause_ms": args.pause_ms,
        "elapsed_s": elapsed,
        "load_after": " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?",
        "policies": pol_summary,
        "ratio": ratios,
        "segment_ignored": segment_ignored,
        "failure": failure,
        "call_stats": st,
        "notes": notes,
    }
    return summary, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sip", required=True, help="voxline's SIP address HOST:PORT")
    ap.add_argument("--http", required=True, help="voxline's HTTP address HOST:PORT")
    ap.add_argument("--turns", type=int, default=200, help="measured turns per policy (default 200)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up turns per policy, not counted (default 2)")
    ap.add_argument("--token-ms", type=float, default=25.0, help="time between tokens (default 25)")
    ap.add_argument("--pause-ms", type=float, default=200.0, help="pause after `cleared` (default 200)")
    ap.add_argument("--turn-timeout", type=float, default=10.0, help="seconds to wait for a turn's audio (default 10)")
    ap.add_argument("--max-seconds", type=float, default=570.0, help="stop starting new pairs after this long (default 570)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shuffle", action="store_true", help="pick replies at random instead of in turn")
    ap.add_argument("--api-token", default=os.environ.get("VOXLINE_API_TOKEN"))
    ap.add_argument("--json", help="write the summary and per-turn rows as JSON here")
    ap.add_argument("--markdown", help="write the markdown section here")
    ap.add_argument("--meta", help="JSON with the section header's facts (invocation, commit, ...)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.turns < 1 or args.token_ms < 0 or args.turn_timeout <= 0:
        ap.error("--turns >= 1, --token-ms >= 0, --turn-timeout > 0")
    try:
        sys.setswitchinterval(0.0005)  # the receive thread gets the GIL quickly
    except Exception:  # noqa: BLE001
        pass
    summary, rows = asyncio.run(main_async(args))
    meta = json.loads(args.meta) if args.meta else {}
    meta.setdefault("invocation", "scripts/ttfa_bench.py " + " ".join(sys.argv[1:]))
    for k in ("date", "commit", "binary_built", "cpu", "nproc", "kernel", "load_before"):
        meta.setdefault(k, "?")
    meta.update(token_ms=f"{args.token_ms:g}", pause_ms=f"{args.pause_ms:g}", turn_timeout=args.turn_timeout,
                python=sys.version.split()[0], websockets=getattr(websockets, "__version__", "?"))
    md = render_markdown(summary, meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "meta": meta, "turns": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    sys.stdout.write(md)
    ok = summary["policies"]["clause"]["wire_ms"]["n"] > 0 and summary["policies"]["sentence"]["wire_ms"]["n"] > 0
    if summary.get("failure") or not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
