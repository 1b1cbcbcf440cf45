// voxline demo page: a WebRTC call to the server, text over the data channel.
// No build step; plain browser JavaScript. The page's own state is exposed as
// `window.voxline` (used by the browser test and handy in the console).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  pc: null, channel: null, call: null, turn: 0, sentUpTo: 0,
  sentAt: new Map(),                       // turn -> time its first text was sent
  stats: { bytesReceived: 0, packetsReceived: 0, audioLevel: 0, maxLevel: 0, jitter: 0 },
  events: [],                              // every event received, in order
  state: "idle",
};
window.voxline = state;

function log(text, cls) {
  const line = document.createElement("div");
  line.textContent = `${new Date().toISOString().slice(11, 23)}  ${text}`;
  if (cls) line.className = cls;
  $("log").appendChild(line);
  $("log").scrollTop = $("log").scrollHeight;
}

function setState(s) {
  state.state = s;
  $("state").textContent = s;
  const live = s === "connected";
  $("connect").disabled = s !== "idle" && s !== "ended" && s !== "failed";
  $("hangup").disabled = !(live || s === "connecting");
  $("speak").disabled = !live;
  $("clear").disabled = !live;
}

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function loadVoices() {
  try {
    const r = await fetch("/v1/voices", { headers: authHeaders() });
    if (!r.ok) { log(`voices: HTTP ${r.status} (set the token?)`, "error"); return; }
    const v = await r.json();
    $("voice").innerHTML = "";
    for (const name of v.voices) {
      const o = document.createElement("option");
      o.textContent = name; o.selected = name === v.default;
      $("voice").appendChild(o);
    }
  } catch (e) { log(`voices: ${e}`, "error"); }
}

function send(message) {
  if (state.channel && state.channel.readyState === "open") state.channel.send(JSON.stringify(message));
}

function onEvent(event) {
  state.events.push(event);
  switch (event.type) {
    case "speech.started":
      log(`speech.started  ttfa ${event.ttfa_ms.toFixed(0)} ms  "${event.text}"`, "ttfa");
      break;
    case "word":
      break; // too many for the log; kept in window.voxline.events
    case "error":
      log(`error ${event.code}: ${event.message}`, "error");
      break;
    default:
      log(`${event.type} ${JSON.stringify(event, (k, v) => (k === "type" ? undefined : v))}`);
  }
}

function waitForIce(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

async function connect() {
  setState("connecting");
  state.events = [];
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  if ($("mic").checked) {
    try {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
    } catch (e) {
      log(`microphone: ${e.message}; receiving only`, "error");
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
  } else {
    pc.addTransceiver("audio", { direction: "recvonly" });
  }
  const channel = pc.createDataChannel("control");
  state.channel = channel;
  channel.onopen = () => log("data channel open");
  channel.onmessage = (m) => { if (typeof m.data === "string") onEvent(JSON.parse(m.data)); };
  pc.ontrack = (e) => attachAudio(e.streams[0] || new MediaStream([e.track]));
  pc.onconnectionstatechange = () => {
    log(`peer connection ${pc.connectionState}`);
    if (pc.connectionState === "connected") setState("connected");
    if (["failed", "closed", "disconnected"].includes(pc.connectionState)) setState(pc.connectionState === "failed" ? "failed" : "ended");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc, 2000);
  const body = { type: "offer", sdp: pc.localDescription.sdp, voice: $("voice").value || undefined, preset: $("preset").value };
  if (!$("greeting").checked) body.greeting = false;
  const r = await fetch("/v1/webrtc/offer", { method: "POST", headers: { "content-type": "application/json", ...authHeaders() }, body: JSON.stringify(body) });
  const answer = await r.json();
  if (!r.ok) { log(`offer refused: ${answer.error.code}: ${answer.error.message}`, "error"); pc.close(); setState("failed"); return; }
  state.call = answer.call;
  log(`call ${answer.call}`);
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
}

function hangup() {
  if (state.channel) send({ type: "hangup" });
  setTimeout(() => { if (state.pc) state.pc.close(); setState("ended"); }, 200);
}

// What is played: a level meter and a scrolling waveform from the track.
let audioCtx = null;
function attachAudio(stream) {
  $("player").srcObject = stream;           // Chrome only feeds Web Audio from a playing remote stream
  audioCtx = audioCtx || new AudioContext();
  const source = audioCtx.createMediaStreamSource(stream);
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const canvas = $("wave"), g = canvas.getContext("2d");
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    $("meter-bar").style.width = `${Math.min(100, rms * 400)}%`;
    g.drawImage(canvas, -2, 0);
    g.fillStyle = "#111827"; g.fillRect(canvas.width - 2, 0, 2, canvas.height);
    const h = Math.min(canvas.height, rms * canvas.height * 6);
    g.fillStyle = "#6ee7b7"; g.fillRect(canvas.width - 2, (canvas.height - h) / 2, 2, Math.max(1, h));
    requestAnimationFrame(draw);
  };
  draw();
}

// The browser's own receive statistics (what the test reads).
setInterval(async () => {
  if (!state.pc) return;
  const report = await state.pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      state.stats.bytesReceived = s.bytesReceived || 0;
      state.stats.packetsReceived = s.packetsReceived || 0;
      state.stats.audioLevel = s.audioLevel || 0;
      state.stats.maxLevel = Math.max(state.stats.maxLevel, s.audioLevel || 0);
      state.stats.jitter = s.jitter || 0;
    }
  });
  $("stats").textContent = `received ${state.stats.packetsReceived} packets, ${state.stats.bytesReceived} bytes; level ${state.stats.audioLevel.toFixed(3)} (max ${state.stats.maxLevel.toFixed(3)}); jitter ${(state.stats.jitter * 1000).toFixed(1)} ms`;
}, 250);

// Text: Enter speaks the box and ends the turn; "stream as I type" sends each
// finished word at once, as an LLM would stream tokens.
function turnId() { return `t${state.turn}`; }
function newTurnIfNeeded() {
  if (state.sentUpTo === 0) { state.turn += 1; state.sentAt.set(turnId(), performance.now()); }
}
$("text").addEventListener("input", () => {
  if (!$("stream").checked) return;
  const text = $("text").value;
  const upTo = text.lastIndexOf(" ") + 1;           // whole words only
  if (upTo > state.sentUpTo) {
    newTurnIfNeeded();
    send({ type: "speak", text: text.slice(state.sentUpTo, upTo), turn: turnId() });
    state.sentUpTo = upTo;
  }
});
function speakBox() {
  const text = $("text").value;
  if (!text.trim() && state.sentUpTo === 0) return;
  newTurnIfNeeded();
  send({ type: "speak", text: text.slice(state.sentUpTo), turn: turnId(), last: true });
  log(`> ${text.trim()}`);
  $("text").value = "";
  state.sentUpTo = 0;
}
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); speakBox(); }
});
$("speak").onclick = speakBox;
$("clear").onclick = () => send({ type: "clear" });
$("connect").onclick = () => connect().catch((e) => { log(`connect: ${e}`, "error"); setState("failed"); });
$("hangup").onclick = hangup;
$("token").addEventListener("change", loadVoices);
setState("idle");
loadVoices();
