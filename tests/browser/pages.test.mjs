// Browser tests for the player pages: the real rtmpd binary, FFmpeg publishing the fixtures, and Debian's
// headless Chromium (driven by playwright-core) playing every page until its <video> has played 3 s, with no
// page errors and no console errors. Screenshots go to tests/artifacts/ (look at them).
//
// Run: node --test tests/browser/pages.test.mjs   (or tools/browser-test.sh, which also installs and builds)
// Env: RTMPD_BIN (default target/debug/rtmpd), CHROMIUM (default /usr/bin/chromium),
//      RTMPD_REQUIRE_TOOLS=1 turns "skipped: ..." into a failure (CI).
//
// A failure whose server side has not landed yet (static files, a recorder, /api/recordings) says
// "BLOCKED (server side): ..." with the request that failed, so it is not mistaken for a page bug.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const WEB = path.join(ROOT, "web");
const ARTIFACTS = path.join(ROOT, "tests", "artifacts");
const REQUIRE_TOOLS = process.env.RTMPD_REQUIRE_TOOLS === "1";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const RTMPD_BIN = path.resolve(ROOT, process.env.RTMPD_BIN || "target/debug/rtmpd");
const FIXTURE = path.join(ROOT, "tests", "data", "fixture.flv");
const FIXTURE_AUDIO = path.join(ROOT, "tests", "data", "fixture_audio.flv");
// HEVC over Enhanced RTMP: Debian's FFmpeg 5.1 cannot publish it, FFmpeg 9 (tools/fetch-ffmpeg.sh) can.
const FIXTURE_HEVC = path.join(ROOT, "tests", "data", "codecs", "hevc_aac.flv");
const FFMPEG9 = process.env.RTMPD_FFMPEG9 || path.join(ROOT, "tools", "ffmpeg9", "ffmpeg");
const HAVE_FFMPEG9 = fs.existsSync(FFMPEG9);
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run",
  // Headless pages play muted anyway; this keeps play() from waiting for a user gesture.
  "--autoplay-policy=no-user-gesture-required"];
const PLAY_SECONDS = 3;

// ---- skip logic: a missing tool skips the browser tests (and says so), unless RTMPD_REQUIRE_TOOLS=1

let toolProblem = null;
const missing = what => what;
let chromium = null;
if (!fs.existsSync(CHROMIUM)) toolProblem = missing("chromium not found");
if (!toolProblem) {
  try {
    chromium = createRequire(path.join(HERE, "package.json"))("playwright-core").chromium;
  } catch (e) {
    toolProblem = missing("playwright-core not installed (run: cd tests/browser && npm ci)");
  }
}
if (!toolProblem && spawnSync("ffmpeg", ["-version"]).status !== 0) toolProblem = missing("ffmpeg not found");
// Without a tool the browser tests are skipped, saying why; with RTMPD_REQUIRE_TOOLS=1 they fail instead.
const SKIP = toolProblem && !REQUIRE_TOOLS ? toolProblem : false;
if (SKIP) console.log(`skipped: ${SKIP} (browser tests)`);
// `browserTest` is `test` for the tests that need Chromium: skipped (with the reason) when a tool is missing.
const browserTest = (name, fn) => test(name, { skip: SKIP }, fn);

// ---- the server, the publishers and the browser

const children = [];
let devServer = null;
let tmp, dataDir, server, originBase, pageBase, ctx, serverLog = "";
const ports = {};

function startChild(cmd, args, name) {
  const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  c.name = name;
  c.output = "";
  const keep = d => { c.output = (c.output + d).slice(-20000); };
  c.stdout.on("data", keep);
  c.stderr.on("data", keep);
  c.exited = new Promise(r => c.on("exit", code => r(code)));
  children.push(c);
  return c;
}

function publish(file, stream, loop, ffmpeg = "ffmpeg") {
  const args = ["-hide_banner", "-loglevel", "error", "-re"];
  if (loop) args.push("-stream_loop", "-1");
  args.push("-i", file, "-c", "copy", "-f", "flv", `rtmp://127.0.0.1:${ports.rtmp}/live/${stream}`);
  return startChild(ffmpeg, args, "ffmpeg " + stream);
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}` + (last instanceof Error ? ` (${last.message})` : ""));
}

async function liveStreams() {
  const r = await fetch(originBase + "/api/streams");
  return (await r.json()).streams.map(s => s.app + "/" + s.stream);
}

async function status(urlPath, method) {
  try {
    return (await fetch(pageBase + urlPath, { method: method || "HEAD" })).status;
  } catch (e) {
    return "unreachable: " + e.message;
  }
}

before(async () => {
  if (toolProblem) return;
  assert.ok(fs.existsSync(RTMPD_BIN), `rtmpd binary not found at ${RTMPD_BIN}: run cargo build first (or set RTMPD_BIN)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rtmpd-browser-"));
  dataDir = path.join(tmp, "data");
  fs.mkdirSync(dataDir);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  // Only pass the options this build has: the tests run against every stage of the server.
  const help = spawnSync(RTMPD_BIN, ["--help"], { encoding: "utf8" });
  const has = opt => (help.stdout + help.stderr).includes(opt);
  const args = ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0", "--srt-port", "0"];
  if (has("--data-dir")) args.push("--data-dir", dataDir);
  if (has("--web-port")) args.push("--web-port", "0");
  if (has("--web-dir")) args.push("--web-dir", WEB); // the pages as they are now, not as last embedded
  if (has("--hls-fragment")) args.push("--hls-fragment", "2");
  if (has("--mp4-fragment")) args.push("--mp4-fragment", "2");
  if (has("--hls-low-latency")) args.push("--hls-low-latency");
  // HTTPS (and RTMPS) with the tests' self-signed certificate; Chromium is told to accept it.
  if (has("--https-port")) {
    args.push("--https-port", "0", "--rtmps-port", "0",
      "--tls-cert", path.join(ROOT, "tests", "data", "tls", "cert.pem"),
      "--tls-key", path.join(ROOT, "tests", "data", "tls", "key.pem"));
  }
  server = startChild(RTMPD_BIN, args, "rtmpd");
  server.stderr.on("data", d => { serverLog += d; });
  server.stdout.on("data", d => { serverLog += d; });
  await waitFor("rtmpd to listen", () => {
    for (const m of serverLog.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) ports[m[1].toLowerCase()] = Number(m[2]);
    return ports.rtmp && ports.http;
  }, 10000);
  originBase = `http://127.0.0.1:${ports.http}`;
  pageBase = originBase; // the pages as the origin's HTTP port serves them (it serves the web port's files too)
  console.log(`# rtmpd ${args.join(" ")}: ports ${JSON.stringify(ports)}`);
  if (process.env.RTMPD_TEST_PAGES === "local") {
    // Developer aid before the static service is wired in: pages from web/, recordings from the data
    // directory, the rest passed through to the origin. Never the default.
    const { startDevServer } = await import("./devserver.mjs");
    const roots = { "/hls": path.join(dataDir, "hls"), "/mp4": path.join(dataDir, "mp4"), "/flv": path.join(dataDir, "flv"), "/": WEB };
    const dev = await startDevServer(roots, ports.http, dataDir);
    devServer = dev.server;
    pageBase = `http://127.0.0.1:${dev.port}`;
    console.log(`# RTMPD_TEST_PAGES=local: pages served by tests/browser/devserver.mjs at ${pageBase}, not by the origin`);
  }

  publish(FIXTURE, "stream", true);
  publish(FIXTURE_AUDIO, "audio", true);
  // The dashboard's red case: 10 s of video with a single keyframe, looped (a keyframe every 10 s).
  const slowGop = path.join(tmp, "gop10.flv");
  const made = spawnSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
    "testsrc2=size=320x240:rate=25:duration=10", "-c:v", "libx264", "-preset", "ultrafast", "-g", "250",
    "-keyint_min", "250", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "flv", slowGop]);
  assert.equal(made.status, 0, "making the 10 s GOP fixture: " + made.stderr);
  publish(slowGop, "slowgop", true);
  publish(FIXTURE, "vod", false); // one 10 s publish that ends: the recordings tests use it
  await waitFor("the streams to be live", async () => {
    const l = await liveStreams();
    return l.includes("live/stream") && l.includes("live/audio");
  }, 15000);

  const profile = path.join(tmp, "chromium-profile"); // a fresh profile every run
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1100, height: 860 },
    ignoreHTTPSErrors: true, // the HTTPS tests' certificate is self-signed
  });
});

after(async () => {
  if (ctx) await ctx.close().catch(() => {});
  if (devServer) devServer.close();
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await Promise.all(children.map(c => Promise.race([c.exited, sleep(6000)])));
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- one page: open, wait until its <video> has played PLAY_SECONDS, screenshot, check for errors

// What the server must have for a page to work: the page itself, the library, and the media it plays.
async function blockedBy(page, needs) {
  const out = [];
  const pagePath = "/" + page.split("?")[0];
  const s = await status(pagePath);
  if (s !== 200) out.push(`static serving not wired into the origin (GET ${pagePath} -> ${s})`);
  for (const lib of ["/vendor/mpegts.js", "/vendor/hls.min.js"]) {
    const v = await status(lib);
    if (s === 200 && v !== 200) out.push(`${lib} -> ${v}: the binary was built without web/vendor (run tools/vendor.sh, then cargo build)`);
  }
  for (const [what, urlPath] of needs || []) {
    const n = await status(urlPath, "GET");
    if (n !== 200) out.push(`${what} not available (GET ${urlPath} -> ${n})`);
  }
  return out;
}

async function open(name, urlPath) {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error") errors.push("console error: " + m.text() + " " + JSON.stringify(m.location())); });
  await page.goto(pageBase + urlPath);
  return { page, errors, name, urlPath };
}

async function shot(p) {
  await p.page.screenshot({ path: path.join(ARTIFACTS, p.name + ".png"), fullPage: true }).catch(() => {});
}

// Seconds actually played (the sum of video.played), not the position: recordings and live streams do not
// start at 0, so currentTime alone could pass without a single frame played.
const PLAYED = () => {
  const v = document.querySelector("video");
  if (!v) return null;
  let played = 0;
  for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
  const st = document.getElementById("status");
  return { played, currentTime: v.currentTime, status: st ? st.textContent : "", state: window.rtmpdState || {} };
};

const PLAYED_OVER_1S = () => {
  const v = document.querySelector("video");
  let played = 0;
  for (let i = 0; v && i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
  return played > 1;
};

async function playPage(name, urlPath, needs, timeoutMs = 30000, extra = null) {
  // A recording the server has not made (or cannot serve) fails fast, after a screenshot of the page's message.
  if (needs && needs.length) {
    const missingNeeds = await waitFor("the media the page plays", async () => {
      const out = [];
      for (const [what, u] of needs) if ((await status(u, "GET")) !== 200) out.push(what);
      return out.length ? false : [];
    }, 15000).catch(() => null);
    if (missingNeeds === null) {
      const p = await open(name, urlPath);
      await p.page.waitForTimeout(3000);
      const info = await p.page.evaluate(PLAYED).catch(() => null);
      await shot(p);
      await p.page.close();
      const blocked = await blockedBy(urlPath.slice(1), needs);
      assert.fail(`BLOCKED (server side): ${blocked.join("; ")}. The page says "${info ? info.status : "?"}"`);
    }
  }
  const p = await open(name, urlPath);
  let info = null;
  try {
    await p.page.waitForFunction(min => {
      const v = document.querySelector("video");
      if (!v) return false;
      let played = 0;
      for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
      return v.currentTime >= min && played >= min;
    }, PLAY_SECONDS, { timeout: timeoutMs, polling: 250 });
    info = await p.page.evaluate(PLAYED);
  } catch (e) {
    info = await p.page.evaluate(PLAYED).catch(() => null);
    await shot(p);
    await p.page.close();
    const blocked = await blockedBy(urlPath.slice(1), needs);
    const where = `${name}: played ${info ? info.played.toFixed(1) : "?"} s; page says "${info ? info.status : "?"}"` +
      (p.errors.length ? "; " + [...new Set(p.errors)].slice(0, 5).join("; ") : "");
    if (blocked.length) assert.fail(`BLOCKED (server side): ${blocked.join("; ")}. ${where}`);
    assert.fail(`did not play ${PLAY_SECONDS} s: ${where}`);
  }
  if (extra) await extra(p.page);
  await shot(p);
  await p.page.close();
  if (p.errors.length && p.errors.every(e => e.includes("/api/recordings"))) {
    assert.fail(`BLOCKED (server side): /api/recordings is not implemented (${name} played ${info.played.toFixed(1)} s ` +
      `but its request for the recordings list failed): ${p.errors[0]}`);
  }
  assert.deepEqual(p.errors, [], `${name}: errors while playing`);
  console.log(`# ${name}: played ${info.played.toFixed(1)} s, currentTime ${info.currentTime.toFixed(1)}` +
    (typeof info.state.latency === "number" ? `, latency to live edge ${info.state.latency.toFixed(2)} s` : ""));
  return info;
}

function skipIfNoTools() {
  if (toolProblem) assert.fail(`RTMPD_REQUIRE_TOOLS=1 and ${toolProblem}`);
}

// ---- the tests, in order: live pages first, recordings after the 10 s "vod" publish has ended

test("no page names 127.0.0.1 or localhost", () => {
  const bad = [];
  const walk = dir => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name === "vendor" || e.name === "node_modules") continue;
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else if (/127\.0\.0\.1|localhost/i.test(fs.readFileSync(f, "latin1"))) bad.push(path.relative(ROOT, f));
    }
  };
  walk(WEB);
  assert.deepEqual(bad, [], "pages must build URLs from location");
  assert.ok(fs.existsSync(path.join(WEB, "home.html")), "web/home.html exists");
});

test("the CDN fallbacks name the versions pinned in web/package.json", () => {
  const pinned = JSON.parse(fs.readFileSync(path.join(WEB, "package.json"), "utf8")).dependencies;
  const common = fs.readFileSync(path.join(WEB, "common.js"), "utf8");
  const cdn = [...common.matchAll(/cdn\.jsdelivr\.net\/npm\/([^@/]+)@([^/]+)\//g)].map(m => [m[1], m[2]]);
  assert.equal(cdn.length, 2);
  for (const [name, version] of cdn) assert.equal(version, pinned[name], `${name} in common.js vs package.json`);
  const home = fs.readFileSync(path.join(WEB, "home.js"), "utf8");
  const qr = [...home.matchAll(/cdn\.jsdelivr\.net\/npm\/([^@/]+)@([^/]+)\//g)].map(m => [m[1], m[2]]);
  assert.deepEqual(qr, [["qrcode-generator", pinned["qrcode-generator"]]], "home.js's QR library vs package.json");
});

browserTest("home page lists the live stream", async () => {
  skipIfNoTools();
  const p = await open("home", "/");
  try {
    await p.page.waitForSelector('[data-stream="live/stream"] a[href*="index.html"]', { timeout: 10000 });
  } catch (e) {
    await shot(p);
    await p.page.close();
    const blocked = await blockedBy("home.html");
    const root = await fetch(pageBase + "/").then(r => r.status + " " + r.headers.get("content-type")).catch(e => e.message);
    assert.fail((blocked.length ? `BLOCKED (server side): ${blocked.join("; ")}; ` : "") +
      `the home page (GET / -> ${root}) does not list live/stream (the server must answer / with web/home.html)`);
  }
  await p.page.waitForTimeout(500); // let the recordings request settle so its errors are seen
  await shot(p);
  await p.page.close();
  const notRecordings = p.errors.filter(e => !e.includes("/api/recordings"));
  assert.deepEqual(notRecordings, [], "errors on the home page");
  if (p.errors.length) assert.fail(`BLOCKED (server side): /api/recordings is not implemented: ${p.errors.join("; ")}`);
});

browserTest("index.html plays HTTP-FLV live", async () => {
  skipIfNoTools();
  // After the first 3 s, play 5 s more: the start-up burst (the cached GOP) is behind us, and the latency
  // the page settles at is the one worth reporting. Its catch-up keeps it under the 4 s jump threshold.
  let settled = null;
  const info = await playPage("index-http-flv", "/index.html?app=live&stream=stream", null, 30000, async page => {
    await page.waitForFunction(() => {
      const v = document.querySelector("video");
      let played = 0;
      for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
      return played >= 8;
    }, null, { timeout: 20000, polling: 250 });
    settled = await page.evaluate(() => window.rtmpdState.latency);
  });
  assert.equal(info.state.transport, "http");
  assert.ok(typeof info.state.latency === "number", "the page measures latency");
  console.log(`# index-http-flv: latency to live edge after 8 s played: ${settled.toFixed(2)} s`);
  assert.ok(settled < 4, `latency after 8 s is ${settled} s: the page did not catch up`);
});

browserTest("index.html plays WS-FLV live", async () => {
  skipIfNoTools();
  const info = await playPage("index-ws-flv", "/index.html?app=live&stream=stream&transport=ws");
  assert.equal(info.state.transport, "ws");
});

// ---- WebRTC (WHEP) in index.html: frames decoded (requestVideoFrameCallback over 5 s), the latency figure

// A 10 s H.264 file made for the WebRTC tests (looped by the publisher): testsrc2 640x360 at 25 fps.
function makeH264(name, x264Args) {
  const file = path.join(tmp, name);
  const made = spawnSync("ffmpeg", ["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
    "testsrc2=size=640x360:rate=25:duration=10", "-c:v", "libx264", "-preset", "veryfast", "-g", "50",
    ...x264Args, "-pix_fmt", "yuv420p", "-f", "flv", file]);
  assert.equal(made.status, 0, `making ${name}: ${made.stderr}`);
  return file;
}

// The share of a file's video pictures that are not B-frames (what WebRTC viewers are sent, docs/webrtc.md).
function nonBShare(file) {
  const r = spawnSync("ffprobe", ["-v", "error", "-select_streams", "v", "-show_entries", "frame=pict_type",
    "-of", "csv=p=0", file], { encoding: "utf8" });
  const types = r.stdout.split("\n").map(l => l.trim().split(",")[0]).filter(Boolean);
  return types.filter(t => t !== "B").length / types.length;
}

// Publishes `file` looped as live/`stream` for the duration of `fn` only (the dashboard tests never see it).
async function withPublish(file, stream, fn, ffmpeg) {
  const pub = publish(file, stream, true, ffmpeg);
  try {
    await waitFor(`live/${stream} to be live`, async () => (await liveStreams()).includes("live/" + stream), 15000);
    return await fn();
  } finally {
    pub.kill("SIGTERM");
    await Promise.race([pub.exited, sleep(5000)]);
    await waitFor(`live/${stream} to end`, async () => !(await liveStreams()).includes("live/" + stream), 15000);
  }
}

// Opens index.html in WebRTC mode on live/`stream`, waits for decoded frames, then counts the frames the
// <video> presents in 5 s (requestVideoFrameCallback) and reads the page's latency figure and WebRTC counters.
async function playWebrtc(stream, name) {
  const p = await open(name, `/index.html?app=live&stream=${stream}&transport=webrtc`);
  try {
    await p.page.waitForFunction(() => {
      const w = window.rtmpdState.webrtc;
      return w && w.framesDecoded > 10 && window.rtmpdState.latency !== null;
    }, null, { timeout: 30000, polling: 250 });
    const before = await p.page.evaluate(() => window.rtmpdState.webrtc);
    const presented = await p.page.evaluate(() => new Promise(done => {
      const v = document.querySelector("video");
      let n = 0, counting = true;
      const cb = () => { if (counting) { n++; v.requestVideoFrameCallback(cb); } };
      v.requestVideoFrameCallback(cb);
      setTimeout(() => { counting = false; done(n); }, 5000);
    }));
    await sleep(1100); // one more sample of the page's statistics
    const st = await p.page.evaluate(() => ({ ...window.rtmpdState, status: document.getElementById("status").textContent }));
    const api = (await (await fetch(originBase + "/api/streams")).json()).streams.find(s => s.stream === stream);
    const metrics = await (await fetch(originBase + "/metrics")).text();
    const history = (await (await fetch(originBase + "/api/streams/history")).json()).streams
      .find(s => s.stream === stream);
    await shot(p);
    return { presented, before, st, api, metrics, history, errors: p.errors };
  } catch (e) {
    const st = await p.page.evaluate(() => ({ ...window.rtmpdState, status: document.getElementById("status").textContent }))
      .catch(() => null);
    await shot(p);
    assert.fail(`${name}: ${e.message}; page state ${JSON.stringify(st)}; errors ${JSON.stringify(p.errors)}`);
  } finally {
    await p.page.close();
  }
}

function reportWebrtc(name, r, expectedFps) {
  const w = r.st.webrtc;
  console.log(`# ${name}: ${r.presented} frames presented in 5 s (source ${expectedFps.toFixed(1)} fps sent), ` +
    `${w.framesDecoded} decoded, ${w.plis} PLIs, ${w.codec} ${w.width}x${w.height}; latency to live edge ` +
    `${(r.st.latency * 1000).toFixed(0)} ms (RTT/2 ${w.rtt === null ? "?" : (w.rtt * 500).toFixed(1)} ms + jitter buffer ` +
    `${(w.jitterBuffer * 1000).toFixed(0)} ms + decode ${(w.decode * 1000).toFixed(1)} ms)`);
}

browserTest("index.html plays WebRTC (WHEP) live, and /api/streams and /metrics count it", async () => {
  skipIfNoTools();
  const file = makeH264("webrtc_nob.flv", ["-bf", "0"]);
  const r = await withPublish(file, "webrtc_nob", () => playWebrtc("webrtc_nob", "index-webrtc"));
  reportWebrtc("index-webrtc (H.264, no B-frames)", r, 25);
  assert.equal(r.st.transport, "webrtc");
  assert.match(r.st.status, /over WebRTC \(WHEP\)/);
  assert.deepEqual(r.errors, [], "errors while playing");
  // 5 s at 25 fps is 125 frames; a loaded machine presents fewer, a broken stream next to none.
  assert.ok(r.presented >= 70, `${r.presented} frames presented in 5 s, want about 125`);
  assert.equal(r.st.webrtc.width, 640);
  assert.ok(r.st.latency > 0 && r.st.latency < 5, `latency ${r.st.latency}`);
  // The dashboard's sources: the stream's WebRTC viewer and its figures, and the server's totals.
  assert.equal(r.api.viewers.webrtc, 1, JSON.stringify(r.api.viewers));
  assert.equal(Math.max(...r.history.viewers.webrtc), 1, "the dashboard's history: " + JSON.stringify(r.history.viewers));
  assert.ok(r.api.webrtc && r.api.webrtc.sessions === 1 && r.api.webrtc.bytes > 100000 && r.api.webrtc.frames > 100,
    JSON.stringify(r.api.webrtc));
  for (const m of ["rtmpd_webrtc_sessions 1", "rtmpd_webrtc_bytes_total", "rtmpd_webrtc_nacks_total",
    "rtmpd_webrtc_plis_total", "rtmpd_webrtc_dropped_total", "rtmpd_webrtc_reorder_dropped_total"]) {
    assert.ok(r.metrics.split("\n").some(l => l.startsWith(m)), `/metrics has ${m}`);
  }
});

browserTest("index.html plays WebRTC from a source with B-frames at the rate of the pictures sent", async () => {
  skipIfNoTools();
  // x264 -bf 2 -b-pyramid none: the B-frames are not references; rtmpd drops them for WebRTC (browsers do not
  // reorder: without the drop Chromium decodes the keyframes only and sends PLIs) and sends the rest in order.
  const file = makeH264("webrtc_bf2.flv", ["-bf", "2", "-b-pyramid", "none"]);
  const fps = 25 * nonBShare(file);
  const r = await withPublish(file, "webrtc_bf2", () => playWebrtc("webrtc_bf2", "index-webrtc-bframes"));
  reportWebrtc("index-webrtc-bframes (H.264 -bf 2 -b-pyramid none)", r, fps);
  assert.deepEqual(r.errors, [], "errors while playing");
  assert.ok(fps < 20, `the source has B-frames (${fps} fps of non-B pictures)`);
  // Every picture sent is decoded and shown: near the rate of the non-B pictures, not a keyframe every 2 s.
  assert.ok(r.presented >= 0.75 * fps * 5, `${r.presented} frames presented in 5 s, want about ${(fps * 5).toFixed(0)}`);
  const plis = r.st.webrtc.plis - r.before.plis;
  assert.ok(plis <= 2, `${plis} PLIs while playing: the decoder failed on something sent`);
  assert.ok(/rtmpd_webrtc_reorder_dropped_total [1-9]/.test(r.metrics), "B-frames dropped are counted");
});

browserTest("index.html plays VP9 and AV1 with Opus over WebRTC (Enhanced RTMP publishes)", async t => {
  skipIfNoTools();
  if (!HAVE_FFMPEG9) {
    const why = `FFmpeg 9 not found at ${FFMPEG9} (sh tools/fetch-ffmpeg.sh): nothing can publish VP9 or AV1`;
    if (REQUIRE_TOOLS) assert.fail(`RTMPD_REQUIRE_TOOLS=1 and ${why}`);
    t.skip(why);
    return;
  }
  // tests/data/codecs/facts.txt: 160x120 at 15 fps, Opus 48 kHz mono, 3 s (looped by the publisher).
  for (const [file, codec] of [["vp9_opus.flv", "VP9"], ["av1_opus.flv", "AV1"]]) {
    const stream = "webrtc_" + codec.toLowerCase();
    const r = await withPublish(path.join(ROOT, "tests", "data", "codecs", file), stream,
      () => playWebrtc(stream, "index-webrtc-" + codec.toLowerCase()), FFMPEG9);
    reportWebrtc(`index-webrtc-${codec.toLowerCase()} (${file})`, r, 15);
    const w = r.st.webrtc;
    console.log(`# index-webrtc-${codec.toLowerCase()}: audio ${JSON.stringify(w.audio)}`);
    assert.equal(w.codec, "video/" + codec);
    assert.ok(r.presented >= 35, `${r.presented} ${codec} frames presented in 5 s, want about 75`);
    assert.ok(w.audio && w.audio.codec === "audio/opus" && w.audio.packets > 100, `Opus: ${JSON.stringify(w.audio)}`);
    assert.deepEqual(r.errors, [], "errors while playing");
  }
});

browserTest("index.html plays HEVC over WebRTC where Chromium receives it", async t => {
  skipIfNoTools();
  const page = await ctx.newPage();
  await page.goto(pageBase + "/index.html?stream=nobody_here");
  const caps = await page.evaluate(() => [...rtmpdWhep.receivable("video")]);
  await page.close();
  if (!caps.includes("H265")) {
    // Chromium receives H.265 over WebRTC only with a hardware decoder (there is no software one for WebRTC).
    const why = `this Chromium cannot receive H.265 over WebRTC (RTCRtpReceiver.getCapabilities lists ${caps.join(", ")})`;
    console.log(`# skipped HEVC over WebRTC: ${why}`);
    t.skip(why);
    return;
  }
  if (!HAVE_FFMPEG9) {
    const why = `FFmpeg 9 not found at ${FFMPEG9} (sh tools/fetch-ffmpeg.sh): nothing can publish HEVC`;
    if (REQUIRE_TOOLS) assert.fail(`RTMPD_REQUIRE_TOOLS=1 and ${why}`);
    t.skip(why);
    return;
  }
  const r = await withPublish(FIXTURE_HEVC, "webrtc_hevc", () => playWebrtc("webrtc_hevc", "index-webrtc-hevc"), FFMPEG9);
  reportWebrtc("index-webrtc-hevc", r, 25);
  assert.match(r.st.webrtc.codec || "", /H265/i);
  assert.ok(r.presented >= 30, `${r.presented} HEVC frames presented in 5 s`);
});

// Issue 16: a page served over HTTPS plays HTTPS-FLV and WSS-FLV from the HTTPS port (a plain http:/ws: URL
// would be blocked as mixed content), and the home page over HTTPS shows the RTMPS publish URL.
browserTest("pages over HTTPS play HTTPS-FLV and WSS-FLV and show the RTMPS URL", async () => {
  skipIfNoTools();
  assert.ok(ports.https && ports.rtmps, "rtmpd listens on HTTPS and RTMPS: " + JSON.stringify(ports));
  const httpsBase = `https://127.0.0.1:${ports.https}`;
  for (const [name, query, scheme] of [["https-flv", "", "https:"], ["wss-flv", "&transport=ws", "wss:"]]) {
    const page = await ctx.newPage();
    const errors = [];
    const urls = [];
    page.on("pageerror", e => errors.push("page error: " + e.message));
    page.on("console", m => { if (m.type() === "error") errors.push("console error: " + m.text()); });
    page.on("request", r => urls.push(r.url()));
    page.on("websocket", w => urls.push(w.url()));
    const p = { page, errors, name: "index-" + name };
    try {
      await page.goto(httpsBase + "/index.html?app=live&stream=stream" + query);
      await page.waitForFunction(min => {
        const v = document.querySelector("video");
        if (!v) return false;
        let played = 0;
        for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
        return played >= min;
      }, PLAY_SECONDS, { timeout: 30000, polling: 250 });
    } finally {
      await shot(p);
      await page.close();
    }
    const live = urls.filter(u => u.includes("/live/stream.flv"));
    assert.ok(live.length > 0 && live.every(u => u.startsWith(`${scheme}//127.0.0.1:${ports.https}/`)),
      `${name}: the stream came from ${JSON.stringify(live)}`);
    assert.deepEqual(urls.filter(u => /^(http|ws):/.test(u)), [], `${name}: plain requests from an HTTPS page`);
    assert.deepEqual(errors, [], `${name}: errors while playing`);
    console.log(`# index-${name}: played ${PLAY_SECONDS} s from ${live[0]}`);
  }
  {
    // WebRTC from a page over HTTPS: the WHEP offer goes to the HTTPS port.
    const page = await ctx.newPage();
    const posts = [];
    page.on("request", r => { if (r.method() === "POST") posts.push(r.url()); });
    try {
      await page.goto(httpsBase + "/index.html?app=live&stream=stream&transport=webrtc");
      await page.waitForFunction(() => (window.rtmpdState.webrtc || {}).framesDecoded > 5, null, { timeout: 30000, polling: 250 });
    } finally {
      await shot({ page, name: "index-https-webrtc" });
      await page.close();
    }
    assert.deepEqual(posts, [`${httpsBase}/live/stream/whep`], "the WHEP offer of a page over HTTPS");
    console.log(`# index-https-webrtc: played from ${posts[0]}`);
  }
  const page = await ctx.newPage();
  try {
    await page.goto(httpsBase + "/");
    await page.waitForFunction(want => document.getElementById("publish-url").textContent.startsWith(want),
      `rtmps://127.0.0.1:${ports.rtmps}/live`, { timeout: 10000 });
  } finally {
    await shot({ page, name: "home-https" });
    await page.close();
  }
});

browserTest("index.html from the web port plays HTTP-FLV from the HTTP port (CORS)", async () => {
  skipIfNoTools();
  if (!ports.web) assert.fail("BLOCKED (server side): this rtmpd has no --web-port");
  // The web port serves files only; ?api= names the HTTP port (the pages would try :8501 on their own).
  const viaWeb = `http://127.0.0.1:${ports.web}/index.html?stream=stream&api=${encodeURIComponent(originBase)}`;
  const save = pageBase;
  pageBase = `http://127.0.0.1:${ports.web}`;
  try {
    await playPage("index-web-port", viaWeb.slice(pageBase.length));
  } finally {
    pageBase = save;
  }
});

browserTest("without /vendor/ a page says so and loads the library's CDN copy", async () => {
  skipIfNoTools();
  // Nothing leaves the machine: /vendor/ is made to answer 404, and the CDN request is answered here with
  // the same file, so this checks the page's fallback, not the CDN.
  const lib = path.join(WEB, "vendor", "mpegts.js");
  assert.ok(fs.existsSync(lib), "web/vendor/mpegts.js (run tools/vendor.sh)");
  const page = await ctx.newPage();
  const cdnAsked = [];
  await page.route("**/vendor/**", r => r.fulfill({ status: 404, body: "Not found." }));
  await page.route(/^https:\/\/cdn\.jsdelivr\.net\//, r => {
    cdnAsked.push(r.request().url());
    r.fulfill({ status: 200, contentType: "text/javascript", body: fs.readFileSync(lib) });
  });
  await page.goto(pageBase + "/index.html?stream=stream");
  try {
    await page.waitForFunction(() => document.querySelector("video").currentTime >= 2, null, { timeout: 20000 });
  } finally {
    await page.screenshot({ path: path.join(ARTIFACTS, "index-cdn-fallback.png"), fullPage: true }).catch(() => {});
  }
  const notices = await page.evaluate(() => window.rtmpdState.notices);
  await page.close();
  assert.deepEqual(cdnAsked, ["https://cdn.jsdelivr.net/npm/mpegts.js@1.8.2/dist/mpegts.js"]);
  assert.ok(notices.some(n => n.includes("/vendor/mpegts.js is missing") && n.includes("CDN")), JSON.stringify(notices));
});

browserTest("index.html says when the stream is not live", async () => {
  skipIfNoTools();
  const p = await open("index-not-live", "/index.html?stream=nobody_here");
  let st = "";
  try {
    await p.page.waitForFunction(() => /is not live/.test(document.getElementById("status").textContent), null, { timeout: 10000 });
    st = await p.page.evaluate(() => document.getElementById("status").textContent);
  } finally {
    await shot(p);
    await p.page.close();
  }
  assert.match(st, /live\/nobody_here is not live \(publish to rtmp:\/\/.*\/live\/nobody_here\)/);
  assert.deepEqual(p.errors, [], "asking /api/streams first means no failed request");
});

browserTest("index.html plays an audio-only stream", async () => {
  skipIfNoTools();
  await playPage("index-audio-only", "/index.html?stream=audio");
});

browserTest("mpegts.js reads HEVC HTTP-FLV (and plays it where Chromium decodes HEVC)", async t => {
  skipIfNoTools();
  if (!HAVE_FFMPEG9) {
    const why = `FFmpeg 9 not found at ${FFMPEG9} (sh tools/fetch-ffmpeg.sh): nothing can publish HEVC`;
    if (REQUIRE_TOOLS) assert.fail(`RTMPD_REQUIRE_TOOLS=1 and ${why}`);
    t.skip(why);
    return;
  }
  // Published for this test only, so the other pages (the home page's tiles) never see it.
  const hevc = publish(FIXTURE_HEVC, "hevc", true, FFMPEG9);
  try {
    await waitFor("live/hevc to be live", async () => (await liveStreams()).includes("live/hevc"), 15000);
    await readHevc();
  } finally {
    hevc.kill("SIGTERM");
    await Promise.race([hevc.exited, sleep(5000)]);
    await waitFor("live/hevc to end", async () => !(await liveStreams()).includes("live/hevc"), 15000);
  }
});

async function readHevc() {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push("page error: " + e.message));
  // A bare page on the origin, so the test reads mpegts.js itself, not a page's codec policy.
  await page.route("**/__hevc_probe.html", r => r.fulfill({
    status: 200, contentType: "text/html",
    body: '<!doctype html><video muted playsinline></video><script src="/vendor/mpegts.js"></script>',
  }));
  await page.goto(pageBase + "/__hevc_probe.html");
  const r = await page.evaluate(async flvUrl => {
    const out = { decodable: MediaSource.isTypeSupported('video/mp4; codecs="hvc1.1.6.L93.B0"'), errors: [] };
    const video = document.querySelector("video");
    mpegts.LoggingControl.enableAll = false;
    const player = mpegts.createPlayer({ type: "flv", isLive: true, url: flvUrl }, { enableStashBuffer: false });
    player.on(mpegts.Events.MEDIA_INFO, mi => {
      out.mediaInfo = { videoCodec: mi.videoCodec, audioCodec: mi.audioCodec, mimeType: mi.mimeType,
        width: mi.width, height: mi.height };
    });
    player.on(mpegts.Events.ERROR, (type, detail, data) => out.errors.push(`${type} ${detail} ${data && data.msg || ""}`));
    player.attachMediaElement(video);
    player.load();
    video.play().catch(() => {});
    const end = Date.now() + 20000;
    while (Date.now() < end) {
      if (out.mediaInfo && (!out.decodable || video.currentTime >= 3)) break;
      await new Promise(res => setTimeout(res, 250));
    }
    out.currentTime = video.currentTime;
    player.destroy();
    return out;
  }, "/live/hevc.flv");
  await page.screenshot({ path: path.join(ARTIFACTS, "mpegts-hevc.png") }).catch(() => {});
  await page.close();
  assert.ok(r.mediaInfo, `mpegts.js reported no MediaInfo for HEVC HTTP-FLV (errors: ${JSON.stringify(r.errors)})`);
  assert.match(r.mediaInfo.videoCodec || "", /^hvc1\./, JSON.stringify(r.mediaInfo));
  assert.match(r.mediaInfo.audioCodec || "", /^mp4a\.40\./, JSON.stringify(r.mediaInfo));
  assert.ok(r.mediaInfo.width > 0 && r.mediaInfo.height > 0, JSON.stringify(r.mediaInfo));
  if (r.decodable) {
    assert.deepEqual([...r.errors, ...errors], [], "errors while playing HEVC");
    assert.ok(r.currentTime >= 3, `HEVC HTTP-FLV played only ${r.currentTime} s`);
    console.log(`# mpegts-hevc: played ${r.currentTime.toFixed(1)} s of HEVC, MediaInfo ${JSON.stringify(r.mediaInfo)}`);
  } else {
    console.log("# mpegts-hevc: this Chromium cannot decode HEVC (MediaSource.isTypeSupported(hvc1) is false), " +
      `so playback is not tested; checked instead that mpegts.js parses the HEVC HTTP-FLV: MediaInfo ${JSON.stringify(r.mediaInfo)}`);
  }
}

browserTest("video.html plays live FLV", async () => {
  skipIfNoTools();
  await playPage("video-live", "/video.html?app=live&stream=stream");
});

browserTest("play.html plays HLS live", async () => {
  skipIfNoTools();
  await playPage("play-hls-live", "/play.html?app=live&stream=stream", [["HLS recorder playlist", "/hls/live/stream/index.m3u8"]], 40000);
});

// Issue 16 point 4: play.html with &ll=1 plays the origin's LL-HLS with hls.js's low-latency mode. The latency to
// the live edge after 8 s played is reported for LL-HLS and, in the same run, regular HLS (a figure, not a bound).
browserTest("play.html plays LL-HLS in hls.js's low-latency mode (latency against regular HLS)", async () => {
  skipIfNoTools();
  const latency = {};
  for (const [name, query] of [["play-llhls", "&ll=1"], ["play-hls-8s", ""]]) {
    const info = await playPage(name, "/play.html?app=live&stream=stream" + query, null, 45000, async page => {
      await page.waitForFunction(() => {
        const v = document.querySelector("video");
        let played = 0;
        for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
        return played >= 8 && typeof window.rtmpdState.latency === "number";
      }, null, { timeout: 30000, polling: 250 });
      latency[name] = await page.evaluate(() => window.rtmpdState.latency);
    });
    if (query) {
      assert.equal(info.state.lowLatency, true);
      assert.match(info.state.url, /\/llhls\/live\/stream\/index\.m3u8/, info.state.url);
    }
  }
  console.log(`# latency to the live edge after 8 s played: LL-HLS ${latency["play-llhls"].toFixed(2)} s, ` +
    `regular HLS ${latency["play-hls-8s"].toFixed(2)} s (hls.js, headless Chromium, --hls-fragment 2)`);
});

browserTest("play_merge.html follows a live fMP4 recording", async () => {
  skipIfNoTools();
  await playPage("play-merge-live", "/play_merge.html?app=live&stream=stream&mode=muxed",
    [["fMP4 recorder playlist (live)", "/mp4/live/stream/output_merge/index.m3u8"]], 40000);
});

browserTest("index.html reconnects when the stream comes back", async () => {
  skipIfNoTools();
  let pub = publish(FIXTURE, "flap", true);
  await waitFor("live/flap", async () => (await liveStreams()).includes("live/flap"), 15000);
  const p = await open("index-reconnect", "/index.html?stream=flap");
  try {
    await p.page.waitForFunction(() => document.querySelector("video").currentTime > 1, null, { timeout: 20000 });
    pub.kill("SIGTERM");
    await pub.exited;
    await waitFor("live/flap to end", async () => !(await liveStreams()).includes("live/flap"), 10000);
    await p.page.waitForFunction(() => /not live|ended|stopped|failed/i.test(document.getElementById("status").textContent), null, { timeout: 15000 });
    pub = publish(FIXTURE, "flap", true);
    await p.page.waitForFunction(() => window.rtmpdState.reconnects >= 1 && window.rtmpdState.playing, null, { timeout: 30000 });
    // The new connection plays on: 2 more seconds (a reconnect starts a new MediaSource, so measure from here).
    const from = await p.page.evaluate(() => document.querySelector("video").currentTime);
    await p.page.waitForFunction(at => document.querySelector("video").currentTime > at + 2, from, { timeout: 15000 });
    await shot(p);
  } catch (e) {
    const st = await p.page.evaluate(() => document.getElementById("status").textContent).catch(() => "?");
    await shot(p);
    await p.page.close();
    const blocked = await blockedBy("index.html");
    assert.fail((blocked.length ? `BLOCKED (server side): ${blocked.join("; ")}. ` : "") + `${e.message}; page says "${st}"`);
  } finally {
    pub.kill("SIGTERM");
  }
  await p.page.close();
  // While the stream was gone the player's requests may have been refused (404): that is the point of the test.
  const errs = p.errors.filter(e => !/status of 404/.test(e));
  assert.deepEqual(errs, [], "errors other than the expected 404s while the stream was away");
});

// The "vod" publish lasts 10 s; its recordings are finished a moment after it ends.
let vodDone = null;
function vodEnded() {
  vodDone = vodDone || waitVod();
  return vodDone;
}
async function waitVod() {
  await waitFor("the vod publish to end", async () => !(await liveStreams()).includes("live/vod"), 30000);
  const full = path.join(dataDir, "mp4", "live", "vod", "output_merge", "stream_full.mp4");
  await waitFor("stream_full.mp4", () => fs.existsSync(full), 10000).catch(() => {});
}

browserTest("mp4.html plays the merged MP4 after the publish ended", async () => {
  skipIfNoTools();
  await vodEnded();
  const f = "/mp4/live/vod/output_merge/stream_full.mp4";
  // Then seek: the merged file is progressive (moov first) and served with Range, so a jump plays at once.
  await playPage("mp4-merged", "/mp4.html?app=live&stream=vod", [["merged MP4 (fMP4 recorder)", f]], 30000, async page => {
    await page.evaluate(() => { document.querySelector("video").currentTime = 7; });
    await page.waitForFunction(() => {
      const v = document.querySelector("video");
      return !v.seeking && v.currentTime > 7.5;
    }, null, { timeout: 10000, polling: 250 });
  });
});

browserTest("play_merge.html plays muxed fMP4 segments", async () => {
  skipIfNoTools();
  await vodEnded();
  await playPage("play-merge-muxed", "/play_merge.html?app=live&stream=vod&mode=muxed",
    [["fMP4 recorder meta.json", "/mp4/live/vod/output_merge/meta.json"], ["fMP4 playlist", "/mp4/live/vod/output_merge/index.m3u8"]]);
});

// An Opus publish (FFmpeg 9, Enhanced RTMP): output_merge holds the audio bridge's AAC as its
// audio track and the Opus beside it (not enabled); meta.json names both, so the page's one
// SourceBuffer declares every codec of the init segment, and Chromium plays it with sound.
browserTest("play_merge.html plays an Opus stream's muxed fMP4 (the bridge's AAC beside the Opus)", async t => {
  skipIfNoTools();
  if (!HAVE_FFMPEG9) {
    const why = `FFmpeg 9 not found at ${FFMPEG9} (sh tools/fetch-ffmpeg.sh): nothing can publish Opus`;
    if (REQUIRE_TOOLS) assert.fail(`RTMPD_REQUIRE_TOOLS=1 and ${why}`);
    t.skip(why);
    return;
  }
  const stream = "opusvod";
  const c = startChild(FFMPEG9, ["-hide_banner", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
    "-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "50", "-pix_fmt", "yuv420p",
    "-c:a", "libopus", "-ac", "2", "-f", "flv", `rtmp://127.0.0.1:${ports.rtmp}/live/${stream}`], "ffmpeg9 " + stream);
  assert.equal(await c.exited, 0, c.output);
  const metaUrl = `/mp4/live/${stream}/output_merge/meta.json`;
  const meta = await waitFor("the Opus recording to finish", async () => {
    const r = await fetch(`http://127.0.0.1:${ports.http}${metaUrl}`);
    const m = r.ok ? await r.json() : null;
    return m && m.complete ? m : false;
  }, 30000);
  assert.ok(meta.audio_bridged && /mp4a\.40\.2,opus$/.test(meta.codecs), JSON.stringify(meta));
  await playPage("play-merge-opus", `/play_merge.html?app=live&stream=${stream}&mode=muxed`,
    [["fMP4 recorder meta.json", metaUrl], ["fMP4 playlist", `/mp4/live/${stream}/output_merge/index.m3u8`]], 30000,
    async page => {
      const audio = await page.evaluate(() => document.querySelector("video").webkitAudioDecodedByteCount);
      assert.ok(audio > 0, `no audio decoded (${audio} bytes)`);
    });
});

browserTest("play_merge.html plays separate fMP4 segments (two SourceBuffers)", async () => {
  skipIfNoTools();
  await vodEnded();
  const info = await playPage("play-merge-separate", "/play_merge.html?app=live&stream=vod&mode=separate",
    [["fMP4 recorder meta.json", "/mp4/live/vod/output_separate/meta.json"], ["fMP4 playlist", "/mp4/live/vod/output_separate/video.m3u8"]]);
  assert.deepEqual(Object.keys(info.state.tracks).sort(), ["audio", "video"]);
});

browserTest("play.html plays the finished HLS recording", async () => {
  skipIfNoTools();
  await vodEnded();
  await playPage("play-hls-vod", "/play.html?app=live&stream=vod", [["HLS recorder playlist", "/hls/live/vod/index.m3u8"]]);
});

browserTest("video.html plays the FLV recording", async () => {
  skipIfNoTools();
  await vodEnded();
  const dir = path.join(dataDir, "flv", "live", "vod");
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter(f => f.endsWith(".flv")) : [];
  if (!files.length) assert.fail(`BLOCKED (server side): no FLV recording in ${dir} (FLV recorder or --data-dir not merged)`);
  await playPage("video-flv-recording", `/video.html?app=live&stream=vod&file=${files[0]}`, [["FLV recording", `/flv/live/vod/${files[0]}`]]);
});

browserTest("home page lists the recordings", async () => {
  skipIfNoTools();
  await vodEnded();
  const api = await status("/api/recordings", "GET");
  const p = await open("home-recordings", "/");
  try {
    await p.page.waitForSelector('[data-recordings="live/vod"] a[href*="mp4.html"]', { timeout: 10000 });
  } catch (e) {
    await shot(p);
    await p.page.close();
    assert.fail((api !== 200 ? `BLOCKED (server side): GET /api/recordings -> ${api}. ` : "") +
      "the home page does not list the recordings of live/vod with a link to mp4.html");
  }
  await shot(p);
  await p.page.close();
  assert.deepEqual(p.errors, [], "errors on the home page");
});

browserTest("recordings.html lists the sessions and plays a cut of one in place", async () => {
  skipIfNoTools();
  await vodEnded();
  const api = await status("/api/recordings/live/vod", "GET");
  const p = await open("recordings-page", "/recordings.html");
  const row = '[data-recordings="live/vod"] tr[data-session]';
  try {
    await p.page.waitForSelector(row, { timeout: 15000 });
    // The default cut (from 0 s, at most 60 s): its link, then played in the page's own <video>.
    await p.page.click(`${row} .cut button`);
    await p.page.click(`${row} .cut span button`);
    await p.page.waitForFunction(min => {
      const v = document.querySelector("#player video");
      if (!v) return false;
      let played = 0;
      for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
      return played >= min;
    }, PLAY_SECONDS, { timeout: 30000, polling: 250 });
  } catch (e) {
    await shot(p);
    await p.page.close();
    assert.fail((api !== 200 ? `BLOCKED (server side): GET /api/recordings/live/vod -> ${api}. ` : "") +
      "the recordings page did not list live/vod or play its cut: " + e.message + "; " + p.errors.join("; "));
  }
  const playing = await p.page.evaluate(() => window.rtmpdState.playing);
  assert.match(playing.url, /^\/playback\/live\/vod\.mp4\?start=.+&duration=\d+$/);
  await shot(p);
  await p.page.close();
  assert.deepEqual(p.errors, [], "errors on the recordings page");
});

// ---- the dashboard (issue 17), against the origin's real /api/streams `health` and /api/streams/history:
// "stream" (the fixture: a keyframe every 2 s) is green, "slowgop" (one keyframe per 10 s loop) red with the
// advice, "audio" shows a level meter.

const SCREENSHOTS = path.join(ROOT, "target", "screenshots");

browserTest("home page dashboard: playing tiles, health badges, graphs, a QR code that decodes", async () => {
  skipIfNoTools();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error" && !/api\/recordings/.test(m.text())) errors.push("console error: " + m.text()); });
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  try {
    await page.goto(pageBase + "/");
    for (const t of ["live/stream", "live/audio", "live/slowgop"]) await page.waitForSelector(`[data-tile="${t}"]`, { timeout: 15000 });
    // Both kinds of tile play: the video tile's currentTime advances, the audio tile's level meter moves.
    await page.waitForFunction(() => (window.rtmpdState.tiles["live/stream"] || {}).currentTime > 2, null, { timeout: 20000, polling: 250 });
    const t0 = await page.evaluate(() => window.rtmpdState.tiles["live/stream"].currentTime);
    await page.waitForFunction(t => window.rtmpdState.tiles["live/stream"].currentTime > t + 1, t0, { timeout: 10000, polling: 250 });
    await page.waitForFunction(() => (window.rtmpdState.tiles["live/audio"] || {}).levelTicks > 10, null, { timeout: 20000, polling: 250 });

    // The server's verdicts, as the page shows them (it refreshes the list every few seconds).
    const badge = sel => page.$eval(sel, e => ({ level: e.dataset.health, text: e.textContent }));
    await page.waitForFunction(() => {
      const e = document.querySelector('[data-tile="live/slowgop"] [data-health]');
      return e && e.dataset.health === "red" && /keyframe every 10 s/.test(e.textContent);
    }, null, { timeout: 45000, polling: 500 }).catch(() => {});
    const red = await badge('[data-tile="live/slowgop"] [data-health]');
    assert.equal(red.level, "red", `slowgop: ${red.text}`);
    assert.match(red.text, /keyframe every 10 s: set your encoder's keyframe interval to 2 s/);
    const green = await badge('[data-tile="live/stream"] [data-health]');
    assert.equal(green.level, "green", `stream: ${green.text}`);
    assert.match(green.text, /keyframe every 2 s/);

    // One history point per 5 s since each stream went live: a line with at least two points.
    const count = sel => page.$eval(sel, e => e.getAttribute("points").trim().split(/\s+/).length).catch(() => 0);
    await page.waitForFunction(() => {
      const e = document.querySelector('[data-tile="live/stream"] [data-chart="bitrate in / out"] polyline.in');
      return e && e.getAttribute("points").trim().split(/\s+/).length >= 2;
    }, null, { timeout: 30000, polling: 500 }).catch(() => {});
    const points = await count('[data-tile="live/stream"] [data-chart="bitrate in / out"] polyline.in');
    assert.ok(points >= 2, `bitrate graph points: ${points}`);
    const serverPoints = await count('#server-graphs [data-chart="CPU"] polyline');
    assert.ok(serverPoints >= 2, `CPU graph points: ${serverPoints}`);
    console.log(`# dashboard: slowgop "${red.text}", stream "${green.text}", ${points} bitrate points, ${serverPoints} CPU points`);

    // The QR code, decoded with jsQR from a screenshot of its canvas.
    await page.waitForFunction(() => document.querySelector('[data-tile="live/stream"] canvas.qr').dataset.text, null, { timeout: 10000 });
    const png = await (await page.$('[data-tile="live/stream"] canvas.qr')).screenshot();
    await page.addScriptTag({ path: createRequire(path.join(HERE, "package.json")).resolve("jsqr") });
    const decoded = await page.evaluate(async b64 => {
      const img = new Image();
      img.src = "data:image/png;base64," + b64;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const code = window.jsQR(g.getImageData(0, 0, c.width, c.height).data, c.width, c.height);
      return code ? code.data : null;
    }, png.toString("base64"));
    assert.equal(decoded, `${pageBase}/play.html?app=live&stream=stream`);
    await page.waitForTimeout(500);
  } finally {
    await page.screenshot({ path: path.join(SCREENSHOTS, "home.png"), fullPage: true }).catch(() => {});
    await page.close();
  }
  assert.deepEqual(errors, [], "errors on the dashboard");
});

// A server without the dashboard fields (an older origin, or a gateway in front of one): the page still lists
// and plays, and shows no badge and no graph. The API answers are the origin's with `health` taken out.
browserTest("home page dashboard works against an API without health or history", async () => {
  skipIfNoTools();
  const { startDevServer } = await import("./devserver.mjs");
  const stubs = {
    "/api/streams": async () => {
      const j = await (await fetch(originBase + "/api/streams")).json();
      return { streams: j.streams.map(({ health, ...rest }) => rest) };
    },
  };
  const dev = await startDevServer({ "/": WEB }, ports.http, null, stubs);
  const base = `http://127.0.0.1:${dev.server.address().port}`;
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error") errors.push("console error: " + m.text()); });
  const p = { page, errors, name: "home-plain-api" };
  try {
    await page.goto(`${base}/?api=${encodeURIComponent(base)}`);
    await p.page.waitForSelector('[data-tile="live/stream"]', { timeout: 10000 });
    await p.page.waitForFunction(() => (window.rtmpdState.tiles["live/stream"] || {}).currentTime > 1, null, { timeout: 20000, polling: 250 });
    assert.equal(await p.page.$$eval("[data-health]", e => e.length), 0, "no badge without health");
    assert.equal(await p.page.$$eval("#server-graphs svg", e => e.length), 0, "no graph without history");
  } finally {
    await shot(p);
    await p.page.close();
    dev.server.close();
  }
  assert.deepEqual(p.errors.filter(e => !e.includes("/api/recordings") && !e.includes("/api/streams/history")), [], "errors on the home page");
});

// A server with --api-token (issue 12 point 9, issue 17 point 5): without the token the home page lists what is
// live (names only) and says it is in viewer mode; with the token typed into its prompt, it shows the codecs and
// the recordings again.
browserTest("home page with --api-token: viewer mode without the token, everything with it", async () => {
  skipIfNoTools();
  const TOKEN = "apiTok3n";
  const args = ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0", "--srt-port", "0", "--no-web", "--web-dir", WEB,
    "--data-dir", fs.mkdtempSync(path.join(tmp, "api-")), "--api-token", TOKEN];
  const srv = startChild(RTMPD_BIN, args, "rtmpd --api-token");
  const own = {};
  await waitFor("rtmpd --api-token to listen", () => {
    for (const m of srv.output.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) own[m[1].toLowerCase()] = Number(m[2]);
    return own.rtmp && own.http;
  }, 10000);
  const base = `http://127.0.0.1:${own.http}`;
  startChild("ffmpeg", ["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", FIXTURE, "-c", "copy",
    "-f", "flv", `rtmp://127.0.0.1:${own.rtmp}/live/guarded`], "ffmpeg guarded");
  assert.equal((await fetch(base + "/api/server")).status, 401, "the API needs the token");
  for (const answer of [null, TOKEN]) {
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", e => errors.push("page error: " + e.message));
    page.on("dialog", d => (answer ? d.accept(answer) : d.dismiss()));
    const p = { page, errors, name: answer ? "home-api-token" : "home-viewer-mode" };
    try {
      await page.goto(base + "/");
      await page.waitForSelector('[data-stream="live/guarded"]', { timeout: 20000 });
      if (answer) await page.waitForFunction(() => !/viewer mode/.test(document.getElementById("status").textContent), null, { timeout: 10000 }).catch(() => {});
      const text = await page.$eval("#status", e => e.textContent);
      const row = await page.$eval('[data-stream="live/guarded"]', e => e.textContent);
      const rec = await page.$eval("#rec-status", e => e.textContent);
      if (answer) {
        assert.doesNotMatch(text, /viewer mode/, text);
        assert.match(row, /H\.?264/i, row);
        assert.doesNotMatch(rec, /needs the API token/, rec);
      } else {
        assert.match(text, /viewer mode/, text);
        assert.doesNotMatch(row, /0 kbps|none/, "no made-up figures without the token: " + row);
        // The publish hint names the server's RTMP port, learnt from the restricted /api/streams.
        const hint = await page.$eval("#publish-url", e => e.textContent);
        assert.ok(hint.includes(`:${own.rtmp}/live/`), "publish hint: " + hint);
        await page.waitForFunction(() => /needs the API token/.test(document.getElementById("rec-status").textContent), null, { timeout: 10000 });
      }
      console.log(`# ${p.name}: status "${text}"`);
    } finally {
      await shot(p);
      await page.close();
    }
    assert.deepEqual(errors, [], "errors on the home page");
  }
  assert.ok(!srv.output.includes(TOKEN), "the token in rtmpd's log");
});

// A server with --play-token: the live page plays when its own URL carries &token=, and not without it.
browserTest("live page with --play-token: plays with &token= in its URL, not without", async () => {
  skipIfNoTools();
  const TOKEN = "playTok3n";
  const args = ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0", "--srt-port", "0", "--no-web", "--web-dir", WEB,
    "--data-dir", fs.mkdtempSync(path.join(tmp, "play-")), "--play-token", TOKEN];
  const srv = startChild(RTMPD_BIN, args, "rtmpd --play-token");
  const own = {};
  await waitFor("rtmpd --play-token to listen", () => {
    for (const m of srv.output.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) own[m[1].toLowerCase()] = Number(m[2]);
    return own.rtmp && own.http;
  }, 10000);
  const base = `http://127.0.0.1:${own.http}`;
  startChild("ffmpeg", ["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", FIXTURE, "-c", "copy",
    "-f", "flv", `rtmp://127.0.0.1:${own.rtmp}/live/tokened`], "ffmpeg tokened");
  await waitFor("the stream to be live", async () => (await fetch(`${base}/live/tokened.flv?token=${TOKEN}`, { method: "HEAD" })).status === 200, 15000);
  const played = {};
  for (const q of [`&token=${TOKEN}`, ""]) {
    const page = await ctx.newPage();
    const name = q ? "live-with-token" : "live-without-token";
    try {
      await page.goto(`${base}/index.html?app=live&stream=tokened${q}`);
      if (q) await page.waitForFunction(() => { const v = document.querySelector("video"); return v && v.played.length && v.played.end(0) - v.played.start(0) > 1; }, null, { timeout: 30000, polling: 250 });
      else await page.waitForTimeout(6000);
      played[name] = await page.evaluate(PLAYED);
    } finally {
      await shot({ page, name });
      await page.close();
    }
  }
  console.log(`# play token: with ${played["live-with-token"].played.toFixed(1)} s, without ${played["live-without-token"].played.toFixed(1)} s ("${played["live-without-token"].status}")`);
  assert.ok(played["live-with-token"].played > 1);
  assert.equal(played["live-without-token"].played, 0);
  // The WebRTC mode passes the token on with its WHEP offer, and without it is refused.
  const webrtc = {};
  for (const q of [`&token=${TOKEN}`, ""]) {
    const page = await ctx.newPage();
    const name = q ? "live-webrtc-with-token" : "live-webrtc-without-token";
    try {
      await page.goto(`${base}/index.html?app=live&stream=tokened&transport=webrtc${q}`);
      if (q) await page.waitForFunction(() => (window.rtmpdState.webrtc || {}).framesDecoded > 5, null, { timeout: 30000, polling: 250 });
      else await page.waitForTimeout(6000);
      webrtc[name] = await page.evaluate(() => ({ decoded: (window.rtmpdState.webrtc || {}).framesDecoded || 0,
        status: document.getElementById("status").textContent }));
    } finally {
      await shot({ page, name });
      await page.close();
    }
  }
  console.log(`# play token over WebRTC: ${JSON.stringify(webrtc)}`);
  assert.ok(webrtc["live-webrtc-with-token"].decoded > 5);
  assert.equal(webrtc["live-webrtc-without-token"].decoded, 0);
  assert.match(webrtc["live-webrtc-without-token"].status, /HTTP 40[13]/);
  assert.ok(!srv.output.includes(TOKEN), "the token in rtmpd's log");
});

// Issue 24 item 2: with --api-token, --play-token and --no-public-list, a visitor without the API token is told the
// stream list is not public and gets the form to open a stream by name; the live page opened by that name (with
// &token=) plays although /api/streams does not name the stream.
browserTest("issue24 item2: --no-public-list: the home page asks for the name, the live page plays it", async () => {
  skipIfNoTools();
  const API = "apiTok24b", PLAY = "playTok24b";
  const args = ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0", "--srt-port", "0", "--no-web", "--web-dir", WEB,
    "--data-dir", fs.mkdtempSync(path.join(tmp, "nolist-")), "--api-token", API, "--play-token", PLAY, "--no-public-list"];
  const srv = startChild(RTMPD_BIN, args, "rtmpd --no-public-list");
  const own = {};
  await waitFor("rtmpd --no-public-list to listen", () => {
    for (const m of srv.output.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) own[m[1].toLowerCase()] = Number(m[2]);
    return own.rtmp && own.http;
  }, 10000);
  const base = `http://127.0.0.1:${own.http}`;
  startChild("ffmpeg", ["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", FIXTURE, "-c", "copy",
    "-f", "flv", `rtmp://127.0.0.1:${own.rtmp}/live/hidden`], "ffmpeg hidden");
  await waitFor("the stream to be live", async () => (await fetch(`${base}/live/hidden.flv?token=${PLAY}`, { method: "HEAD" })).status === 200, 15000);
  const list = await (await fetch(base + "/api/streams")).json();
  assert.equal(list.public_list, false);
  assert.deepEqual(list.streams, []);
  const errors = [];
  let page = await ctx.newPage();
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("dialog", d => d.dismiss());
  try {
    await page.goto(base + "/");
    await page.waitForFunction(() => /not public/.test(document.getElementById("status").textContent), null, { timeout: 10000 });
    assert.ok(await page.$eval("#viewer", e => !e.classList.contains("hidden")), "the form to open a stream by name");
    assert.equal(await page.$$eval('[data-stream]', e => e.length), 0, "no stream named");
  } finally {
    await shot({ page, name: "home-no-public-list" });
    await page.close();
  }
  page = await ctx.newPage();
  page.on("pageerror", e => errors.push("page error: " + e.message));
  let played;
  try {
    await page.goto(`${base}/index.html?app=live&stream=hidden&token=${PLAY}`);
    // Every played range counts: the page jumps to the live edge once, which starts a new one.
    await page.waitForFunction(PLAYED_OVER_1S, null, { timeout: 30000, polling: 250 });
    played = await page.evaluate(PLAYED);
    assert.doesNotMatch(played.status, /audio only/, "the restricted list says nothing about the tracks");
  } finally {
    await shot({ page, name: "live-unlisted" });
    await page.close();
  }
  console.log(`# unlisted stream played ${played.played.toFixed(1)} s`);
  assert.ok(played.played > 1);
  assert.deepEqual(errors, [], "errors on the pages");
});
