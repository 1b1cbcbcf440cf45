// voxline demo page: a WebRTC call to the server, text over the data channel.
// No build step; plain browser JavaScript. The page's own state is exposed as
// `window.voxline` (used by the browser test and handy in the console).
"use strict";

const $ = (id) => document.getElementById(id);

// First audio, measured here: the received track's RMS (AnalyserNode, read in
// the drawing loop once per animation frame) rising to this level (about
// -50 dBFS; the silence between utterances is digital zero).
const FIRST_AUDIO_RMS = 0.003;

const state = {
  pc: null, channel: null, call: null, turn: 0, sentUpTo: 0,
  sentAt: new Map(),                       // turn -> time its first text was sent
  stats: newStats(),
  events: [],                              // every event received, in order
  state: "idle",
  endedReason: null,                       // call.ended's reason (or why the page ended the call)
  // This call's turns, as the page sent them: when, the server's ttfa_ms, and
  // the first audio the page itself heard (ms after the turn's first text was sent).
  turns: [],                               // [{turn, text, sentAt, serverTtfaMs, pageFirstAudioMs, overlapped, done}]
  p50: { serverTtfaMs: null, pageFirstAudioMs: null },
  speaking: false,                         // the agent-speaking indicator
  speakingLog: [],                         // [{on, why, at}] every change of it
  level: 0,                                // the received track's RMS, last animation frame
  playoutLagMs: 0,                         // event sent -> its audio heard (see updateLag)
  frames: 0,                               // drawing-loop callbacks so far (one loop, ~60 a second)
  loops: 0,                                // drawing loops running (always 1)
  generation: 0,                           // which connect() the handlers belong to
};
window.voxline = state;

function newStats() {
  return { bytesReceived: 0, packetsReceived: 0, audioLevel: 0, maxLevel: 0, jitter: 0, jitterBufferMs: 0, rttMs: 0 };
}

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
  $("ended-reason").textContent = s === "ended" && state.endedReason ? `(${state.endedReason})` : "";
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

// ---------------------------------------------------------------------------
// The agent-speaking indicator: on at speech.started or a turn's first word,
// off when the utterance is played out (utterance.done, unless the next one
// follows at once), at speech.done, cleared and call.ended.

let quietTimer = 0;
function setSpeaking(on, why) {
  clearTimeout(quietTimer);
  if (state.speaking === on) return;
  state.speaking = on;
  state.speakingLog.push({ on, why, at: performance.now() });
  $("speaking").classList.toggle("on", on);
  $("speaking-text").textContent = on ? "agent speaking" : "agent quiet";
}
function quietSoon(why) {
  clearTimeout(quietTimer);
  quietTimer = setTimeout(() => setSpeaking(false, why), 150);
}

// ---------------------------------------------------------------------------
// The transcript: one entry per turn. The page's own turns show their text as
// it is sent; `word` events light the words up in order as they are heard;
// words of a cleared turn that were never heard stay struck through.

const transcript = new Map();              // turn -> entry
const key = (word) => word.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
// Text the server says differently ("6" -> "six", "$5" -> "five dollars").
const spokenDifferently = (word) => /[\p{N}$€£%&@#+=/]/u.test(word);

const GREETING_NOTE = " greeting";        // the entry shown for a greeting heard without events
function transcriptEntry(turn, who) {
  let entry = transcript.get(turn);
  if (entry) return entry;
  if (who === "greeting" && transcript.has(GREETING_NOTE)) {
    transcript.get(GREETING_NOTE).el.remove();
    transcript.delete(GREETING_NOTE);
  }
  const empty = $("transcript").querySelector(".empty");
  if (empty) empty.remove();
  const el = document.createElement("div");
  el.className = `turn ${who}`;
  el.dataset.turn = turn;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who === "greeting" ? "greeting" : "agent";
  const text = document.createElement("span");
  text.className = "text";
  const timing = document.createElement("span");
  timing.className = "timing";
  el.append(label, text, timing);
  $("transcript").appendChild(el);
  entry = { turn, el, text, timing, words: [], cursor: 0, now: null, ours: who === "agent", done: false };
  transcript.set(turn, entry);
  return entry;
}

function scrollTranscript() { $("transcript").scrollTop = $("transcript").scrollHeight; }

function appendWords(entry, text) {
  for (const part of text.split(/(\s+)/)) {
    if (!part) continue;
    if (/^\s+$/.test(part)) { entry.text.append(" "); continue; }
    if (entry.words.length && !entry.text.lastChild?.textContent?.endsWith(" ")) entry.text.append(" ");
    const span = document.createElement("span");
    span.className = "w";
    span.textContent = part;
    entry.text.appendChild(span);
    entry.words.push({ el: span, raw: part, key: key(part) });
  }
  scrollTranscript();
}

function hear(entry, upTo) {
  for (let i = entry.cursor; i <= upTo; i++) entry.words[i].el.classList.add("heard", "matched");
  if (entry.now) entry.now.classList.remove("now");
  entry.now = entry.words[upTo].el;
  entry.now.classList.add("now");
  entry.cursor = upTo + 1;
}

function onWord(event) {
  const entry = transcript.get(event.turn) || transcriptEntry(event.turn, otherTurnKind());
  if (entry.done) return;
  for (const word of event.text.split(/\s+/)) if (word) hearWord(entry, word);   // "on the" is two
}
function hearWord(entry, word) {
  const k = key(word);
  let at = -1;
  for (let i = entry.cursor; i < Math.min(entry.words.length, entry.cursor + 6); i++) {
    if (k && entry.words[i].key === k) { at = i; break; }
  }
  if (at < 0 && entry.cursor < entry.words.length && spokenDifferently(entry.words[entry.cursor].raw)) at = entry.cursor;
  if (at < 0 && !entry.ours && entry.cursor >= entry.words.length) {
    appendWords(entry, word);              // a turn the page did not send: its words are its text
    at = entry.words.length - 1;
  }
  if (at >= 0) hear(entry, at);
}

// A turn the page did not send: the greeting when it comes first.
function otherTurnKind() { return state.turns.length === 0 ? "greeting" : "other"; }

function finishEntry(entry, how) {
  if (!entry || entry.done) return;
  entry.done = true;
  if (entry.now) entry.now.classList.remove("now");
  entry.now = null;
  for (let i = entry.cursor; i < entry.words.length; i++) {
    entry.words[i].el.classList.add(how === "played" ? "heard" : "dropped");
  }
  if (how === "played") entry.cursor = entry.words.length;
}

function noteOn(entry, text) {
  let note = entry.el.querySelector(".note");
  if (!note) { note = document.createElement("span"); note.className = "note"; entry.el.insertBefore(note, entry.timing); }
  note.textContent = ` ${text}`;
}

function showTiming(record) {
  const entry = transcript.get(record.turn);
  if (!entry) return;
  const page = record.pageFirstAudioMs != null ? `<b>${record.pageFirstAudioMs.toFixed(0)} ms</b>`
    : record.overlapped ? "– (sent while audio was playing)" : "…";
  const server = record.serverTtfaMs != null ? `${record.serverTtfaMs.toFixed(0)} ms` : "…";
  entry.timing.innerHTML = `first audio: heard here ${page} · server ttfa ${server}`;
}

function median(values) {
  const v = values.filter((x) => typeof x === "number").sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = (v.length - 1) / 2;
  return (v[Math.floor(mid)] + v[Math.ceil(mid)]) / 2;
}
function updateP50() {
  state.p50 = {
    serverTtfaMs: median(state.turns.map((t) => t.serverTtfaMs)),
    pageFirstAudioMs: median(state.turns.map((t) => t.pageFirstAudioMs)),
  };
  const fmt = (v) => (v == null ? "–" : `${v.toFixed(0)} ms`);
  $("p50-page").textContent = fmt(state.p50.pageFirstAudioMs);
  $("p50-server").textContent = fmt(state.p50.serverTtfaMs);
}

const record = (turn) => state.turns.find((t) => t.turn === turn);

// Events leave the server with the packet they describe and reach the page
// before that packet is heard: the jitter buffer and the audio output lie in
// between. So what they show (the lit words, the indicator) waits for the
// playout lag: the page's first audio less the server's ttfa less half the
// round trip (the text's way to the server), from the latest turn timed.
function updateLag(r) {
  if (r.pageFirstAudioMs == null || r.serverTtfaMs == null) return;
  const lag = r.pageFirstAudioMs - r.serverTtfaMs - (state.stats.rttMs || 0) / 2;
  state.playoutLagMs = Math.round(Math.min(1000, Math.max(0, lag)));
}
let lastDue = 0;
function later(fn) {
  const gen = state.generation, now = performance.now();
  const due = Math.max(now + state.playoutLagMs, lastDue);   // in order, whatever the lag did
  lastDue = due;
  setTimeout(() => { if (gen === state.generation) fn(); }, due - now);
}

// ---------------------------------------------------------------------------

function onEvent(event) {
  state.events.push(event);
  switch (event.type) {
    case "speech.started": {
      log(`speech.started  ttfa ${event.ttfa_ms.toFixed(0)} ms  "${event.text}"`, "ttfa");
      const r = record(event.turn);
      if (r) { r.serverTtfaMs = event.ttfa_ms; showTiming(r); updateP50(); updateLag(r); }
      later(() => {
        const entry = transcript.get(event.turn) || transcriptEntry(event.turn, otherTurnKind());
        if (!entry.ours && entry.words.length === 0) appendWords(entry, event.text);
        setSpeaking(true, "speech.started");
      });
      break;
    }
    case "word":                           // too many for the log; kept in window.voxline.events
      later(() => { onWord(event); setSpeaking(true, "word"); });
      break;
    case "utterance.done":
      log(`${event.type} ${JSON.stringify(event, (k, v) => (k === "type" ? undefined : v))}`);
      later(() => quietSoon("utterance.done"));
      break;
    case "speech.done": {
      log(`${event.type} ${JSON.stringify(event, (k, v) => (k === "type" ? undefined : v))}`);
      const r = record(event.turn);
      if (r) r.done = true;
      later(() => { finishEntry(transcript.get(event.turn), "played"); setSpeaking(false, "speech.done"); });
      break;
    }
    case "cleared":
      log(`${event.type} ${JSON.stringify(event, (k, v) => (k === "type" ? undefined : v))}`);
      for (const r of state.turns) r.done = true;
      state.armed = null;
      later(() => {
        for (const entry of transcript.values()) {
          if (!entry.done) { finishEntry(entry, "cleared"); noteOn(entry, "(cleared)"); }
        }
        setSpeaking(false, "cleared");
      });
      break;
    case "call.ended":
      log(`call.ended ${event.reason}`, "error");
      ended(event.reason);
      break;
    case "error":
      log(`error ${event.code}: ${event.message}`, "error");
      break;
    default:
      log(`${event.type} ${JSON.stringify(event, (k, v) => (k === "type" ? undefined : v))}`);
  }
}

// The call is over (call.ended, our hangup, or the connection went away).
function ended(reason) {
  if (state.state === "ended" || state.state === "failed") return;
  state.endedReason = reason;
  state.armed = null;
  setState("ended");
  later(() => {                            // after what was still playing
    for (const entry of transcript.values()) {
      if (!entry.done) { finishEntry(entry, "cleared"); noteOn(entry, "(call ended)"); }
    }
    const line = document.createElement("div");
    line.className = "ended";
    line.textContent = `call ended: ${reason}`;
    $("transcript").querySelector(".empty")?.remove();
    $("transcript").appendChild(line);
    scrollTranscript();
    setSpeaking(false, "call.ended");
  });
  const gen = state.generation;
  setTimeout(() => { if (gen === state.generation) teardown(); }, 300);
}

function waitForIce(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

// Closes the previous call's channel, peer connection, microphone and audio.
function teardown() {
  const { channel, pc, mic } = state;
  state.channel = null; state.pc = null; state.mic = null;
  if (channel) { channel.onmessage = null; channel.onopen = null; channel.onclose = null; try { channel.close(); } catch { /* closed */ } }
  if (pc) { pc.ontrack = null; pc.onconnectionstatechange = null; pc.close(); }
  if (mic) for (const track of mic.getTracks()) track.stop();
  detachAudio();
}

// Everything that belongs to one call starts afresh.
function resetCall() {
  clearTimeout(quietTimer);
  Object.assign(state, {
    call: null, turn: 0, sentUpTo: 0, events: [], turns: [], stats: newStats(),
    endedReason: null, armed: null, greetingHeard: false,
  });
  state.sentAt.clear();
  transcript.clear();
  $("transcript").innerHTML = "";
  updateP50();
  setSpeaking(false, "connect");
  state.speakingLog = [];
  $("stats").textContent = "no audio yet";
}

async function connect() {
  teardown();
  resetCall();
  const gen = ++state.generation;
  setState("connecting");
  const pc = new RTCPeerConnection({ iceServers: [] });
  state.pc = pc;
  // Handlers of an earlier call, or of one hung up while connecting, do nothing.
  const current = () => gen === state.generation && state.pc === pc;
  if ($("mic").checked) {
    try {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      if (!current()) { for (const track of mic.getTracks()) track.stop(); return; }
      state.mic = mic;
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
  // The server closes the channel after call.ended; a channel that closes
  // without it still ends the call here.
  channel.onclose = () => {
    if (!current()) return;
    log("data channel closed");
    ended(state.state === "hanging up" ? "hung up" : "data channel closed");
  };
  channel.onmessage = (m) => { if (current() && typeof m.data === "string") onEvent(JSON.parse(m.data)); };
  pc.ontrack = (e) => { if (current()) attachAudio(e.streams[0] || new MediaStream([e.track])); };
  pc.onconnectionstatechange = () => {
    if (!current()) return;
    log(`peer connection ${pc.connectionState}`);
    if (pc.connectionState === "connected") setState("connected");
    if (pc.connectionState === "failed") { ended("connection failed"); setState("failed"); }
    if (["closed", "disconnected"].includes(pc.connectionState)) ended(`peer connection ${pc.connectionState}`);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc, 2000);
  if (!current()) return;
  const body = { type: "offer", sdp: pc.localDescription.sdp, voice: $("voice").value || undefined, preset: $("preset").value };
  if (!$("greeting").checked) body.greeting = false;
  const r = await fetch("/v1/webrtc/offer", { method: "POST", headers: { "content-type": "application/json", ...authHeaders() }, body: JSON.stringify(body) });
  const answer = await r.json();
  if (!current()) {
    // Hung up while the offer was on its way: the server's call goes too.
    if (r.ok) fetch(`/calls/${answer.call}/hangup`, { method: "POST", headers: authHeaders() }).catch(() => {});
    return;
  }
  if (!r.ok) { log(`offer refused: ${answer.error.code}: ${answer.error.message}`, "error"); teardown(); setState("failed"); return; }
  state.call = answer.call;
  log(`call ${answer.call}`);
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
}

// Asks the server to hang up and waits (at most 1.5 s) for its call.ended on
// the data channel, so the reason is shown; then closes the peer connection.
function hangup() {
  const gen = state.generation;
  const open = state.channel && state.channel.readyState === "open";
  if (open) { send({ type: "hangup" }); setState("hanging up"); }
  setTimeout(() => {
    if (gen !== state.generation) return;
    ended("hung up");
    teardown();
  }, open ? 1500 : 0);
}

// ---------------------------------------------------------------------------
// What is played: a level meter and a scrolling waveform from the track. One
// drawing loop for the page's lifetime; each call only swaps the analyser it
// reads. The same loop times the page's first audio of each turn.

const audio = { ctx: null, source: null, analyser: null, samples: null };
function attachAudio(stream) {
  $("player").srcObject = stream;           // Chrome only feeds Web Audio from a playing remote stream
  audio.ctx = audio.ctx || new AudioContext();
  if (audio.ctx.state === "suspended") audio.ctx.resume().catch(() => {});
  detachAudio(false);
  audio.source = audio.ctx.createMediaStreamSource(stream);
  audio.analyser = audio.ctx.createAnalyser();
  audio.analyser.fftSize = 1024;
  audio.source.connect(audio.analyser);
  audio.samples = new Float32Array(audio.analyser.fftSize);
}
function detachAudio(player = true) {
  if (audio.source) audio.source.disconnect();
  audio.source = audio.analyser = null;
  if (player) $("player").srcObject = null;
}

function draw() {
  state.frames += 1;
  const canvas = $("wave"), g = canvas.getContext("2d");
  let rms = 0;
  if (audio.analyser) {
    audio.analyser.getFloatTimeDomainData(audio.samples);
    let sum = 0;
    for (const s of audio.samples) sum += s * s;
    rms = Math.sqrt(sum / audio.samples.length);
  }
  state.level = rms;
  if (rms >= FIRST_AUDIO_RMS) firstAudio(performance.now());
  $("meter-bar").style.width = `${Math.min(100, rms * 400)}%`;
  if (audio.analyser) {
    g.drawImage(canvas, -2, 0);
    g.fillStyle = "#111827"; g.fillRect(canvas.width - 2, 0, 2, canvas.height);
    const h = Math.min(canvas.height, rms * canvas.height * 6);
    g.fillStyle = "#6ee7b7"; g.fillRect(canvas.width - 2, (canvas.height - h) / 2, 2, Math.max(1, h));
  }
  requestAnimationFrame(draw);
}
function startDrawing() {
  if (state.loops > 0) return;
  state.loops = 1;
  requestAnimationFrame(draw);
}

// Audio rose above the threshold: the armed turn's first audio, as heard here.
function firstAudio(now) {
  const r = state.armed;
  if (r) {
    state.armed = null;
    r.pageFirstAudioMs = now - r.sentAt;
    updateLag(r);
    log(`first audio heard in the page: ${r.pageFirstAudioMs.toFixed(0)} ms after ${r.turn} was sent`, "ttfa");
    showTiming(r);
    updateP50();
  } else if (!state.greetingHeard && transcript.size === 0 && state.state === "connected") {
    // Audio before the page said anything, and no events for it (yet): the
    // greeting. Its words replace this note if its events come.
    state.greetingHeard = true;
    const entry = transcriptEntry(GREETING_NOTE, "greeting");
    entry.done = true;
    noteOn(entry, "♪ the server's greeting is playing");
  }
}

// The browser's own receive statistics (what the test reads).
setInterval(async () => {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  if (pc !== state.pc) return;
  const stats = state.stats;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      stats.bytesReceived = s.bytesReceived || 0;
      stats.packetsReceived = s.packetsReceived || 0;
      stats.audioLevel = s.audioLevel || 0;
      stats.maxLevel = Math.max(stats.maxLevel, s.audioLevel || 0);
      stats.jitter = s.jitter || 0;
      stats.jitterBufferMs = s.jitterBufferEmittedCount ? (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount : 0;
    }
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) stats.rttMs = 1000 * s.currentRoundTripTime;
  });
  $("stats").textContent = `received ${stats.packetsReceived} packets, ${stats.bytesReceived} bytes; level ${stats.audioLevel.toFixed(3)} (max ${stats.maxLevel.toFixed(3)}); jitter ${(stats.jitter * 1000).toFixed(1)} ms; jitter buffer ${stats.jitterBufferMs.toFixed(0)} ms; events shown ${state.playoutLagMs} ms late, as heard`;
}, 250);

// ---------------------------------------------------------------------------
// Text: Enter speaks the box and ends the turn; "stream as I type" sends each
// finished word at once, as an LLM would stream tokens.

function turnId() { return `t${state.turn}`; }
function newTurnIfNeeded() {
  if (state.sentUpTo !== 0) return;
  state.turn += 1;
  const now = performance.now();
  state.sentAt.set(turnId(), now);
  // The page times this turn's first audio only when nothing is playing:
  // otherwise the earlier audio would be taken for it.
  const busy = state.speaking || state.level >= FIRST_AUDIO_RMS || state.turns.some((t) => !t.done);
  const r = { turn: turnId(), text: "", sentAt: now, serverTtfaMs: null, pageFirstAudioMs: null, overlapped: busy, done: false };
  state.turns.push(r);
  state.armed = busy ? null : r;
  transcriptEntry(r.turn, "agent");
  showTiming(r);
}
function sendText(text, last) {
  send(last ? { type: "speak", text, turn: turnId(), last: true } : { type: "speak", text, turn: turnId() });
  const r = record(turnId());
  r.text += text;
  appendWords(transcript.get(r.turn), text);
}
$("text").addEventListener("input", () => {
  if (!$("stream").checked || state.state !== "connected") return;
  const text = $("text").value;
  const upTo = text.lastIndexOf(" ") + 1;           // whole words only
  if (upTo > state.sentUpTo) {
    newTurnIfNeeded();
    sendText(text.slice(state.sentUpTo, upTo), false);
    state.sentUpTo = upTo;
  }
});
function speakBox() {
  if (state.state !== "connected") return;
  const text = $("text").value;
  if (!text.trim() && state.sentUpTo === 0) return;
  newTurnIfNeeded();
  sendText(text.slice(state.sentUpTo), true);
  log(`> ${text.trim()}`);
  $("text").value = "";
  state.sentUpTo = 0;
}
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); speakBox(); }
});
$("speak").onclick = speakBox;
$("clear").onclick = () => send({ type: "clear" });
$("connect").onclick = () => connect().catch((e) => { log(`connect: ${e}`, "error"); teardown(); setState("failed"); });
$("hangup").onclick = hangup;
$("token").addEventListener("change", loadVoices);
setState("idle");
startDrawing();
loadVoices();
