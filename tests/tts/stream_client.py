# python3 stream_client.py ws://localhost:8080/v1/tts?token=TOKEN > out.pcm   (pip install websockets)
import asyncio, json, sys
import websockets

async def main(url):
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "format": "pcm", "sample_rate": 24000}))
        print(json.loads(await ws.recv()), file=sys.stderr)  # ready
        for piece in ["Your order has shipped! ", "The driver will call ", "you before delivery."]:
            await ws.send(json.dumps({"type": "text", "text": piece}))  # e.g. as an LLM streams it
        await ws.send(json.dumps({"type": "close"}))
        async for message in ws:  # ends with the server's close
            if isinstance(message, bytes):
                sys.stdout.buffer.write(message)  # 24 kHz 16-bit mono, as synthesized
            else:
                event = json.loads(message)
                if event["type"] == "words":
                    for w in event["words"]:
                        print(f'{w["start_ms"]:8.1f} {w["end_ms"]:8.1f}  {w["text"]}', file=sys.stderr)
                elif event["type"] in ("done", "error"):
                    print(event, file=sys.stderr)

asyncio.run(main(sys.argv[1]))
