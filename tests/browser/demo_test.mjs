// Loads voxline's demo page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), connects, types a sentence, presses Enter, and
// reports what the page itself saw: its WebRTC receive statistics, the event
// log, the transcript (words lit by `word` events), the speaking indicator,
// the first-audio times (measured in the page and the server's ttfa_ms), and
// a screenshot. Then it hangs up, connects again without reloading, speaks a
// second sentence, and hangs up again. Prints one JSON line; tests/browser.rs
// asserts on it.
//
//   node demo_test.mjs http://127.0.0.1:8080/ "Text to speak." screenshot.png ["Second text."]
//
// The second screenshot goes next to the first, as NAME_reconnected.png.
import { chromium } from "playwright-core";

const [url, text, screenshot, text2 = "Thanks, that is all for today."] = process.argv.slice(2);
const screenshot2 = screenshot.replace(/(\.png)?$/, "_reconnected.png");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    // ICE on loopback, with real addresses rather than mDNS names.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  ],
});
const result = { ok: false, step: "start" };
const console_lines = [];
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 1000 } });
  page.setDefaultTimeout(10000);
  page.on("console", (m) => console_lines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_lines.push(`pageerror: ${e.message}`));
  const step = (name) => { result.step = name; };
  const until = (fn, arg, timeout = 10000) => page.waitForFunction(fn, arg, { timeout });

  // Connects (no greeting) and waits for the data channel's first event.
  async function connect() {
    await page.click("#connect");
    await until(() => window.voxline.state === "connected", null, 20000);
    await until(() => window.voxline.events.some((e) => e.type === "call.attached"));
  }

  // Types `words`, presses Enter, follows the speaking indicator, waits for
  // speech.done; reports the transcript entry of the turn and the drawing
  // loop's callbacks per second while it spoke.
  async function speak(words) {
    await page.click("#text");
    await page.keyboard.type(words, { delay: 15 });
    const t0 = await page.evaluate(() => ({ frames: window.voxline.frames, at: performance.now() }));
    await page.keyboard.press("Enter");
    const turn = await page.evaluate(() => window.voxline.turns.at(-1)?.turn);
    // The indicator comes on with the turn's first audio...
    const seenOn = await until(() => document.querySelector("#speaking").classList.contains("on"), null, 15000)
      .then(() => true, () => false);
    await until((t) => window.voxline.events.some((e) => e.type === "speech.done" && e.turn === t), turn, 30000);
    const t1 = await page.evaluate(() => ({ frames: window.voxline.frames, at: performance.now() }));
    // ... and is off once the turn is played out.
    const offAfter = await until(() => !document.querySelector("#speaking").classList.contains("on"), null, 3000)
      .then(() => true, () => false);
    const transcript = await page.evaluate((t) => {
      const entry = document.querySelector(`#transcript .turn[data-turn="${t}"]`);
      if (!entry) return null;
      return {
        text: entry.querySelector(".text").innerText,
        words: entry.querySelectorAll(".w").length,
        matched: entry.querySelectorAll(".w.matched").length,   // lit by a `word` event
        heard: entry.querySelectorAll(".w.heard").length,
        dropped: entry.querySelectorAll(".w.dropped").length,
        timing: entry.querySelector(".timing").innerText,
      };
    }, turn);
    const speaking = await page.evaluate(() => window.voxline.speakingLog.map(({ on, why }) => ({ on, why })));
    const framesPerSecond = ((t1.frames - t0.frames) * 1000) / (t1.at - t0.at);
    return { turn, seenOn, offAfter, transcript, speaking, framesPerSecond };
  }

  // Hangs up and waits for the page to show the call ended.
  async function hangup() {
    await page.click("#hangup");
    await until(() => window.voxline.state === "ended", null, 5000);
    await until(() => document.querySelector("#transcript .ended"), null, 3000);
    return page.evaluate(() => ({
      state: window.voxline.state,
      reason: window.voxline.endedReason,
      callEnded: window.voxline.events.find((e) => e.type === "call.ended") || null,
      stateText: document.querySelector("#state").parentElement.innerText,
      transcriptEnded: document.querySelector("#transcript .ended")?.innerText || null,
    }));
  }

  step("load");
  await page.goto(url);
  await until(() => document.querySelector("#voice").options.length > 0);
  await page.uncheck("#greeting");
  await page.check("#mic");

  step("connect");
  await connect();
  const before = await page.evaluate(() => ({ ...window.voxline.stats }));

  step("first call: speak");
  const first = await speak(text);
  await page.waitForTimeout(600); // the stats poll runs every 250 ms
  const after = await page.evaluate(() => ({ ...window.voxline.stats }));
  const events = await page.evaluate(() => window.voxline.events);
  const log = await page.evaluate(() => document.querySelector("#log").innerText);
  const calls = await page.evaluate(() => fetch("/calls").then((r) => r.json()));
  const call = await page.evaluate(() => window.voxline.call);
  Object.assign(first, await page.evaluate(() => ({ turns: window.voxline.turns, p50: window.voxline.p50 })));
  await page.screenshot({ path: screenshot, fullPage: true });

  step("first call: hang up");
  await page.evaluate(() => { window.firstPeerConnection = window.voxline.pc; });
  first.ended = await hangup();

  step("reconnect");
  await connect();
  const second = await page.evaluate(() => ({
    call: window.voxline.call,
    turnCounter: window.voxline.turn,
    firstPeerConnection: window.firstPeerConnection.signalingState,   // "closed" once closed
    turnsBefore: window.voxline.turns.length,
    transcriptEntries: document.querySelectorAll("#transcript .turn").length,
    eventTypes: window.voxline.events.map((e) => e.type),
  }));

  step("second call: speak");
  Object.assign(second, await speak(text2));
  Object.assign(second, await page.evaluate(() => ({
    turns: window.voxline.turns, p50: window.voxline.p50, loops: window.voxline.loops,
    playoutLagMs: window.voxline.playoutLagMs, events: window.voxline.events,
  })));
  await page.waitForTimeout(300); // the last word's highlight fades
  await page.screenshot({ path: screenshot2, fullPage: true });

  step("second call: hang up");
  second.ended = await hangup();

  Object.assign(result, { ok: true, before, after, events, log, calls, call, first, second, screenshot2 });
} catch (e) {
  result.error = String(e);
} finally {
  result.console = console_lines;
  await browser.close();
}
console.log(JSON.stringify(result));
