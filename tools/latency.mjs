// Glass-to-glass latency in headless Chromium, WebRTC next to HTTP-FLV and LL-HLS in the same run
// (run by tools/latency.sh, which starts rtmpd and the time-stamped publisher). Opens three pages on the
// same live stream at once, each with ?measure=1 (web/measure.js reads the publisher's time out of every
// presented frame), plays WARMUP s, then collects SECS s of samples and prints each transport's median.
// Usage: node tools/latency.mjs HTTP_BASE APP/STREAM [SECS] [WARMUP]
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { chromium } = createRequire(path.join(ROOT, "tests", "browser", "package.json"))("playwright-core");
const [base, key, secsArg, warmArg] = process.argv.slice(2);
const [app, stream] = key.split("/");
const SECS = Number(secsArg || 20), WARMUP = Number(warmArg || 8);
const q = `app=${app}&stream=${stream}&measure=1`;
const PAGES = [
  ["WebRTC", `/index.html?${q}&transport=webrtc`],
  ["HTTP-FLV", `/index.html?${q}&transport=http`],
  ["LL-HLS", `/play.html?${q}&ll=1`],
];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
    // three pages play at once: none may be throttled as a background page
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
});
let failed = false;
try {
  const pages = [];
  for (const [name, p] of PAGES) {
    // A context (a window) each: a page in a background tab would get its frames throttled.
    const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
    const page = await ctx.newPage();
    page.on("pageerror", e => console.error(`${name}: page error: ${e.message}`));
    await page.goto(base + p);
    pages.push([name, page]);
  }
  await new Promise(r => setTimeout(r, WARMUP * 1000));
  // Forget the start-up (the cached GOP, players catching up): only the steady state counts.
  for (const [, page] of pages) await page.evaluate(() => { const m = window.rtmpdState.measure; m.samples = []; m.frames = 0; m.unreadable = 0; });
  await new Promise(r => setTimeout(r, SECS * 1000));
  console.log(`glass-to-glass latency, ${SECS} s after ${WARMUP} s of play, same stream, same browser:`);
  for (const [name, page] of pages) {
    const r = await page.evaluate(() => {
      const m = window.rtmpdState.measure, s = [...m.samples].sort((a, b) => a - b);
      const at = f => s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))] : null;
      return { n: s.length, frames: m.frames, unreadable: m.unreadable, p50: at(0.5), p10: at(0.1), p90: at(0.9),
        page: window.rtmpdState.latency, status: (document.getElementById("status") || {}).textContent };
    });
    if (!r.n) {
      failed = true;
      console.log(`  ${name.padEnd(8)} no frames measured (${r.frames} presented, ${r.unreadable} unreadable): ${r.status}`);
      continue;
    }
    const pageFig = typeof r.page === "number" ? `; the page's own latency figure ${(r.page * 1000).toFixed(0)} ms` : "";
    console.log(`  ${name.padEnd(8)} median ${String(r.p50).padStart(5)} ms  (p10 ${r.p10}, p90 ${r.p90}; ` +
      `${r.n} frames, ${r.unreadable} unreadable${pageFig})`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
