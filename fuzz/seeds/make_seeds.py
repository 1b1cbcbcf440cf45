#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/): the RFC 4475 torture
messages and the real-world SDPs already in the repository, plus a few hand-made call
flows, RTP/RTCP packets and control messages. Run from the repository root; idempotent."""
import os
import struct

OUT = "fuzz/seeds"


def put(target, name, data):
    os.makedirs(f"{OUT}/{target}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"{OUT}/{target}/{name}", "wb") as f:
        f.write(data)


def crlf(text):
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


SDP = crlf("v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n"
           "m=audio 40000 RTP/AVP 0 8 101\na=rtpmap:101 telephone-event/8000\n"
           "a=fmtp:101 0-16\na=ptime:20\na=sendrecv\n")


def invite(call_id="seed-1", branch="z9hG4bK-s1", extra=""):
    return crlf(f"""INVITE sip:agent@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5070;branch={branch};rport
Max-Forwards: 70
From: "Caller" <sip:caller@example.com>;tag=c1
To: <sip:agent@example.com>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:caller@198.51.100.7:5070>
Supported: timer, replaces
Session-Expires: 1800;refresher=uac
{extra}Content-Type: application/sdp
Content-Length: {len(SDP)}

""") + SDP


# SIP messages: the torture tests, a response with SDP, a challenge, a NOTIFY.
torture = "sip/tests/torture"
for name in sorted(os.listdir(torture)):
    with open(f"{torture}/{name}") as f:
        put("sip_message", name, crlf(f.read()))
put("sip_message", "invite.sip", invite())
put("sip_message", "200-sdp.sip", crlf(f"""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o1
From: <sip:agent@192.0.2.10>;tag=a1
To: <sip:bob@198.51.100.7>;tag=b1
Call-ID: out-1
CSeq: 1 INVITE
Contact: <sip:bob@198.51.100.7:5070>
Session-Expires: 90;refresher=uas
Content-Type: application/sdp
Content-Length: {len(SDP)}

""") + SDP)
CHALLENGE = 'WWW-Authenticate: Digest realm="example.com", nonce="84a4cc6f3082121f32b42a2187831a9e", algorithm=SHA-256, qop="auth,auth-int", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
put("sip_message", "401.sip", crlf(f"""SIP/2.0 401 Unauthorized
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o1
From: <sip:agent@192.0.2.10>;tag=a1
To: <sip:bob@198.51.100.7>;tag=b1
Call-ID: out-1
CSeq: 1 INVITE
{CHALLENGE}
Content-Length: 0

"""))
put("sip_message", "notify-sipfrag.sip", crlf("""NOTIFY sip:agent@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-n1
From: <sip:caller@example.com>;tag=c1
To: <sip:agent@example.com>;tag=a1
Call-ID: seed-1
CSeq: 3 NOTIFY
Event: refer;id=2
Subscription-State: terminated;reason=noresource
Content-Type: message/sipfrag;version=2.0
Content-Length: 24

SIP/2.0 200 OK\r
\r
"""))

# Endpoint scripts: steps separated by "\n~~\n" (see voxline_sip::fuzzing::drive_endpoint).
STEP = b"\n~~\n"


def script(*steps):
    return STEP.join(s.encode() if isinstance(s, str) else s for s in steps)


for name in sorted(os.listdir(torture)):
    with open(f"{torture}/{name}") as f:
        put("sip_endpoint", name, script(">" + crlf(f.read())))
put("sip_endpoint", "incoming-call.txt", script(
    ">" + invite(), b"!\x00\x00", b"!\x01\x00", "=ACK 1", "+1000",
    "=INFO 2\r\nContent-Type: application/dtmf-relay\r\n\r\nSignal=5\r\nDuration=160\r\n",
    "=INVITE 3\r\nContent-Type: application/sdp\r\n\r\n" + SDP, b"!\x04\x00", "=ACK 3",
    b"!\x07\x00", "<202", "=NOTIFY 4\r\nEvent: refer\r\nSubscription-State: active;expires=60\r\n"
    "Content-Type: message/sipfrag\r\n\r\nSIP/2.0 180 Ringing\r\n",
    b"!\x08\x00", "<200", "+200", "=BYE 5", "+40000"))
put("sip_endpoint", "incoming-cancel.txt", script(
    ">" + invite("seed-2", "z9hG4bK-s2"), b"!\x00\x00",
    ">" + crlf("""CANCEL sip:agent@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-s2;rport
From: "Caller" <sip:caller@example.com>;tag=c1
To: <sip:agent@example.com>
Call-ID: seed-2
CSeq: 1 CANCEL
Content-Length: 0

"""), "+32000"))
put("sip_endpoint", "outgoing-call.txt", script(
    b"!\x0a\x00", "<100", "<401\r\n" + CHALLENGE, "<180",
    "<200\r\nContact: <sip:bob@198.51.100.7:5070>\r\nSession-Expires: 90;refresher=uas\r\n"
    "Content-Type: application/sdp\r\n\r\n" + SDP,
    "+1000", b"!\x03\x00", "<200", "+40000"))

# SDP: the real-world offers.
for name in sorted(os.listdir("sdp/tests/data")):
    with open(f"sdp/tests/data/{name}", "rb") as f:
        put("sdp", name, f.read())
put("sdp", "offer.sdp", SDP)


# RTP: mode byte, then (length, source, packet)*.
def rtp(pt, seq, ts, ssrc, payload, marker=False):
    return struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def packets(mode, items):
    out = bytes([mode])
    for source, p in items:
        out += bytes([len(p), source]) + p
    return out


audio = [(0, rtp(0, 65534 + i, 160 * i, 0xABCD, b"\xff" * 160)) for i in range(5)]
put("rtp", "audio-strict.bin", packets(0, audio))
put("rtp", "audio-latch-nat-port.bin", packets(1, [(1, p) for _, p in audio]))
dtmf = [(0, rtp(101, 10 + i, 8000, 0xABCD, bytes([5, (0x80 if i >= 2 else 0) | 10]) + struct.pack("!H", 160 * (i + 1)), marker=i == 0))
        for i in range(5)]
put("rtp", "dtmf-5.bin", packets(0, dtmf + [(0, rtp(101, 20, 16000, 0xABCD, b"\x0b\x0a\x00\xa0"))]))
put("rtp", "attacker-first.bin", packets(1, [(2, audio[0][1]), (1, audio[1][1]), (1, audio[2][1]), (1, audio[3][1])]))
put("rtp", "csrc-extension-padding.bin", packets(0, [(0, bytes([0xB1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0xAB, 0xCD, 1, 2, 3, 4, 0xBE, 0xDE, 0, 1, 9, 9, 9, 9]) + b"\xff" * 8 + b"\x00\x00\x00\x04")]))

# RTCP: SR with a block about our SSRC (0x11223344), RR, SDES, BYE.
OUR = 0x11223344
block = struct.pack("!IB3sIIII", OUR, 12, (7).to_bytes(3, "big"), 1000, 40, 0x12345678, 6553)
sr = struct.pack("!BBHIQIII", 0x81, 200, 12, 0xABCD, 0xE0000000_80000000, 160, 10, 1600) + block
rr = struct.pack("!BBHI", 0x81, 201, 7, 0xABCD) + block
cname = b"\x01\x05caller\x00"
sdes_body = struct.pack("!I", 0xABCD) + cname
sdes_body += b"\x00" * (-len(sdes_body) % 4)
sdes = struct.pack("!BBH", 0x81, 202, len(sdes_body) // 4) + sdes_body
bye = struct.pack("!BBHI", 0x81, 203, 1, 0xABCD)
put("rtcp", "sr.bin", sr)
put("rtcp", "rr-sdes.bin", rr + sdes)
put("rtcp", "sr-sdes-bye.bin", sr + sdes + bye)

# Control frames, both dialects.
for i, m in enumerate([
    '{"type":"speak","text":"Sure, your order 12345 costs $12.50 (about 3.5 kg) - call 555-0100.","turn":"t1","last":true}',
    '{"type":"speak","text":"Dr. Smith lives at 221B Baker St. It is 10:30 p.m. on 12/07/2026!","turn":"t2"}',
    '{"type":"send_dtmf","digits":"12w#*AD","duration_ms":100}',
    '{"type":"send_dtmf","digits":"9","method":"info"}',
    '{"type":"configure","voice":"en_US-joe-medium","preset":"balanced","segment":"clause"}',
    '{"type":"caller_audio","enabled":true,"format":"pcmu"}',
    '{"type":"transfer","to":"sip:bob@192.0.2.20"}',
    '{"type":"mark","name":"m1"}', '{"type":"flush"}', '{"type":"clear"}', '{"type":"hangup"}',
    '{"type":"text","token":"Thanks for calling Acme.","last":true,"preemptible":true}',
    '{"type":"sendDigits","digits":"12#"}', '{"type":"end","handoffData":"{\\"x\\":1}"}',
    '{"type":"play","source":"x"}', '{"type":"language","ttsLanguage":"en"}', '{"type":"nope"}', '{"type"',
]):
    put("control", f"frame-{i:02}.json", m)

# Twilio Media Streams messages, as Twilio documents them.
for i, m in enumerate([
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    '{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"k":"v"}},"streamSid":"MZ1"}',
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpy="},"streamSid":"MZ1"}',
    '{"event":"media","media":{"payload":"/////w=="},"streamSid":"MZ1"}',
    '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}',
    '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"my label"}}',
    '{"event":"stop","sequenceNumber":"5","stop":{"accountSid":"AC1","callSid":"CA1"},"streamSid":"MZ1"}',
]):
    put("twilio", f"message-{i}.json", m)
