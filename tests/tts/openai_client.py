"""The official `openai` Python client streaming voxline's POST /v1/audio/speech.

Usage: openai_client.py BASE_URL API_KEY VOICE TEXT OUT.pcm
Prints one JSON line: {"bytes": N, "first_byte_s": T, "total_s": T, "version": "..."}.
"""
import json
import sys
import time

import openai


def main():
    base_url, api_key, voice, text, out = sys.argv[1:6]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=60.0, max_retries=0)
    t0 = time.monotonic()
    first = None
    total = 0
    with open(out, "wb") as f:
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice=voice, input=text, response_format="pcm"
        ) as response:
            for chunk in response.iter_bytes(chunk_size=1024):
                if first is None:
                    first = time.monotonic() - t0
                total += len(chunk)
                f.write(chunk)
    print(json.dumps({"bytes": total, "first_byte_s": first, "total_s": time.monotonic() - t0, "version": openai.__version__}))


if __name__ == "__main__":
    main()
