// Loads voxline's demo page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core), connects, types a sentence, presses Enter, and
// reports what the page itself saw: its WebRTC receive statistics, the event
// log, and a screenshot. Prints one JSON line; tests/browser.rs asserts on it.
//
//   node demo_test.mjs http://127.0.0.1:8080/ "Text to speak." screenshot.png
import { chromium } from "playwright-core";

const [url, text, screenshot] = process.argv.slice(2);
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
const result = { ok: false };
try {
  const page = await browser.newPage();
  const console_lines = [];
  page.on("console", (m) => console_lines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console_lines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector("#voice").options.length > 0, null, { timeout: 10000 });
  await page.uncheck("#greeting");
  await page.check("#mic");
  await page.click("#connect");
  await page.waitForFunction(() => window.voxline.state === "connected", null, { timeout: 20000 });
  await page.waitForFunction(() => window.voxline.events.some((e) => e.type === "call.attached"), null, { timeout: 10000 });
  const before = await page.evaluate(() => ({ ...window.voxline.stats }));
  await page.click("#text");
  await page.keyboard.type(text, { delay: 15 });
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => window.voxline.events.some((e) => e.type === "speech.done"), null, { timeout: 30000 });
  await page.waitForTimeout(600); // the stats poll runs every 250 ms
  const after = await page.evaluate(() => ({ ...window.voxline.stats }));
  const events = await page.evaluate(() => window.voxline.events);
  const log = await page.evaluate(() => document.querySelector("#log").innerText);
  const calls = await page.evaluate(() => fetch("/calls").then((r) => r.json()));
  await page.screenshot({ path: screenshot, fullPage: true });
  await page.click("#hangup");
  await page.waitForTimeout(500);
  Object.assign(result, { ok: true, before, after, events, log, calls, call: await page.evaluate(() => window.voxline.call), console: console_lines });
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
