// Browser publishing (issue 26 point 6): headless Chromium with a fake camera and microphone
// (--use-fake-device-for-media-stream, --use-fake-ui-for-media-stream grants them) opens publish.html,
// goes live over WHIP for 10 s and stops; FFmpeg reads the stream over HTTP-FLV meanwhile, and then
// decodes that and every recording (FLV, HLS, the merged MP4): no decode errors, and about the frames the
// page says it encoded (10 s x the frame rate). A second case checks the page's refusals (a wrong
// publish token, a second publisher) and that Stop ends the stream at once.
//
// Run: node --test tests/browser/publish.test.mjs (tools/browser-test.sh runs it after pages.test.mjs).
// Env as pages.test.mjs: RTMPD_BIN, CHROMIUM, RTMPD_REQUIRE_TOOLS=1 (a missing tool fails instead of
// skipping), RTMPD_FFMPEG9 (FFmpeg 9, for Opus in FLV; default tools/ffmpeg9/ffmpeg).
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
const FFMPEG9 = process.env.RTMPD_FFMPEG9 || path.join(ROOT, "tools", "ffmpeg9", "ffmpeg");
const SECONDS = 10, FPS = 30;
const FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"];
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--autoplay-policy=no-user-gesture-required", ...FAKE_MEDIA];

let toolProblem = null, chromium = null;
if (!fs.existsSync(CHROMIUM)) toolProblem = "chromium not found";
if (!toolProblem) {
  try {
    chromium = createRequire(path.join(HERE, "package.json"))("playwright-core").chromium;
  } catch (e) {
    toolProblem = "playwright-core not installed (run: cd tests/browser && npm ci)";
  }
}
// Opus in FLV (Enhanced RTMP) needs FFmpeg 8 or later to read back: Debian's 5.1 cannot.
if (!toolProblem && !fs.existsSync(FFMPEG9)) toolProblem = `FFmpeg 9 not found at ${FFMPEG9} (run tools/fetch-ffmpeg.sh)`;
const SKIP = toolProblem && !REQUIRE_TOOLS ? toolProblem : false;
if (SKIP) console.log(`skipped: ${SKIP} (browser publish tests)`);
const browserTest = (name, fn) => test(name, { skip: SKIP }, fn);

const children = [];
let tmp, dataDir, ctx, serverLog = "", origin;
const ports = {};
const sleep = ms => new Promise(r => setTimeout(r, ms));

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

async function live(key) {
  const j = await (await fetch(origin + "/api/streams")).json();
  return j.streams.find(s => s.app + "/" + s.stream === key) || null;
}

before(async () => {
  if (toolProblem) return;
  assert.ok(fs.existsSync(RTMPD_BIN), `rtmpd binary not found at ${RTMPD_BIN}: run cargo build first`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rtmpd-publish-"));
  dataDir = path.join(tmp, "data");
  fs.mkdirSync(dataDir);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const args = ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0",
    "--srt-port", "0", "--no-web", "--data-dir", dataDir, "--web-dir", WEB, "--hls-fragment", "2",
    "--mp4-fragment", "2", "--publish-token", "sesame"];
  const server = startChild(RTMPD_BIN, args, "rtmpd");
  server.stderr.on("data", d => { serverLog += d; });
  server.stdout.on("data", d => { serverLog += d; });
  await waitFor("rtmpd to listen", () => {
    for (const m of serverLog.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) ports[m[1].toLowerCase()] = Number(m[2]);
    return ports.rtmp && ports.http;
  }, 10000);
  origin = `http://127.0.0.1:${ports.http}`;
  ctx = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1100, height: 900 },
  });
  await ctx.route(/\/__test\/whep\.html/, r => r.fulfill({ contentType: "text/html", body: WHEP_PAGE }));
});

// A bare WHEP player (served by the browser context itself, on the origin's address): window.pc.
const WHEP_PAGE = `<!doctype html><meta charset="utf-8"><title>WHEP</title><video muted autoplay playsinline></video>
<script>
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const ms = new MediaStream();
  document.querySelector("video").srcObject = ms;
  pc.ontrack = e => ms.addTrack(e.track);
  await pc.setLocalDescription(await pc.createOffer());
  const key = new URLSearchParams(location.search).get("key");
  const r = await fetch("/" + key + "/whep", { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error("WHEP " + r.status);
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  window.pc = pc;
})();
</script>`;

after(async () => {
  if (ctx) await ctx.close().catch(() => {});
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await Promise.all(children.map(c => Promise.race([c.exited, sleep(6000)])));
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (tmp && !process.env.RTMPD_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

// Decodes the first video stream of `input` with FFmpeg 9: { frames, errors } (errors: FFmpeg's own lines).
function decode(input) {
  const r = spawnSync(FFMPEG9, ["-nostdin", "-hide_banner", "-v", "error", "-i", input, "-map", "0:v:0",
    "-f", "framemd5", "-"], { encoding: "utf8", maxBuffer: 64 << 20 });
  const frames = r.stdout.split("\n").filter(l => l && !l.startsWith("#")).length;
  return { frames, errors: (r.stderr || "").trim(), status: r.status };
}

async function openPublish(query) {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error") errors.push("console error: " + m.text()); });
  page.on("response", r => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`); });
  await page.goto(origin + "/publish.html?" + new URLSearchParams(query).toString());
  return { page, errors };
}

const PUB = () => Object.assign({}, window.rtmpdState.publish, { status: document.getElementById("status").textContent });

browserTest("publish.html publishes the fake camera for 10 s: HTTP-FLV and every recording decode with its frames", async () => {
  await publishTenSeconds({ stream: "cam", codec: "h264", expect: /H264/i });
});

// AV1 chosen on the page (setCodecPreferences puts it first): rtmpd depacketizes it into Enhanced RTMP av01
// frames with the av1C record from the sequence header; the same outputs decode with the same frames.
browserTest("publish.html publishes AV1 when chosen: HTTP-FLV and every recording decode with its frames", async () => {
  await publishTenSeconds({ stream: "cam-av1", codec: "av1", expect: /AV1/i });
});

async function publishTenSeconds({ stream, codec, expect }) {
  const key = "live/" + stream;
  const { page, errors } = await openPublish({ app: "live", stream, source: "camera+mic", size: "640x360", fps: String(FPS), bitrate: "1000", codec });
  // The home page links here, and the header has it.
  await page.fill("#token", "sesame");
  await page.click("#start");
  let pub;
  try {
    pub = await page.waitForFunction(() => window.rtmpdState.publish.state === "live" && window.rtmpdState.publish, null, { timeout: 20000 })
      .then(h => h.jsonValue());
  } catch (e) {
    await page.screenshot({ path: path.join(ARTIFACTS, "publish-failed.png") }).catch(() => {});
    assert.fail(`publish.html did not go live: ${JSON.stringify(await page.evaluate(PUB))}; ${errors.join("; ")}\n${serverLog.slice(-3000)}`);
  }
  const startedAt = Date.now();
  assert.match(pub.codec || "", expect, `the page sends ${codec}`);
  const s = await waitFor("the stream in /api/streams", () => live(key), 10000);
  // FFmpeg reads HTTP-FLV from now until the stream ends.
  const flvOut = path.join(tmp, `httpflv-${stream}.flv`);
  const reader = startChild(FFMPEG9, ["-nostdin", "-hide_banner", "-v", "error", "-i", `${origin}/${key}.flv`,
    "-c", "copy", "-f", "flv", "-y", flvOut], "http-flv reader");
  // A WebRTC viewer of the browser's stream keeps getting frames (not just the cached GOP: a WHIP
  // publisher's frames once reached the hub while the WebRTC state was borrowed, and its viewers'
  // feed skipped them).
  const viewer = await ctx.newPage();
  await viewer.goto(`${origin}/__test/whep.html?key=${key}`);
  const decoded = () => viewer.evaluate(async () => {
    let n = 0;
    if (window.pc) (await window.pc.getStats()).forEach(s => { if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0; });
    return n;
  });
  await waitFor("the WHEP viewer to decode", async () => (await decoded()) > 0, 10000);
  const d1 = await decoded();
  await sleep(3000);
  const d2 = await decoded();
  console.log(`# WHEP viewer: ${d2 - d1} frames decoded in 3 s`);
  assert.ok(d2 - d1 >= 3 * FPS * 0.5, `the WHEP viewer decoded ${d2 - d1} frames in 3 s`);
  await viewer.close();
  await sleep(SECONDS * 1000 - (Date.now() - startedAt));
  const before = await page.evaluate(PUB);
  assert.ok(await page.isVisible("#live"), "the LIVE badge shows while live");
  await page.screenshot({ path: path.join(ARTIFACTS, `publish-live-${codec}.png`) });
  await page.click("#stop");
  await page.waitForFunction(() => window.rtmpdState.publish.state !== "live", null, { timeout: 5000 });
  const after = await page.evaluate(PUB);
  assert.equal(after.state, "stopped");
  assert.ok(!(await page.isVisible("#live")), "no LIVE badge after Stop");
  // Stop sends DELETE: the stream ends at once, not after the silence timeout.
  await waitFor("the stream to end after Stop", async () => !(await live(key)), 5000);
  await Promise.race([reader.exited, sleep(10000)]);
  await page.close();
  assert.deepEqual(errors, [], "no page errors");

  const sent = after.framesEncoded || before.framesEncoded;
  console.log(`# publish.html (${codec}): ${sent} frames encoded (${pub.codec} ${pub.width}x${pub.height}), api video ${JSON.stringify(s.video || null)}`);
  // The fake camera runs at the asked rate, but a loaded 2-core machine makes the encoder skip some.
  assert.ok(sent >= SECONDS * FPS * 0.6, `the fake camera gave ${sent} frames in ${SECONDS} s at ${FPS} fps`);

  // What each output holds: all decode cleanly; the recordings hold what was sent (the first frames
  // before the first keyframe aside), the HTTP-FLV reader what followed its start.
  await waitFor("the merged MP4", () => fs.existsSync(path.join(dataDir, "mp4", key, "output_merge", "stream_full.mp4")), 15000);
  const flvDir = path.join(dataDir, "flv", key);
  const flvFiles = fs.readdirSync(flvDir).filter(f => f.endsWith(".flv")).map(f => path.join(flvDir, f));
  assert.equal(flvFiles.length, 1, "one FLV recording");
  const outputs = [
    ["HTTP-FLV", flvOut, 0.7],
    ["FLV recording", flvFiles[0], 0.85],
    ["HLS recording", path.join(dataDir, "hls", key, "index.m3u8"), 0.85],
    ["merged MP4", path.join(dataDir, "mp4", key, "output_merge", "stream_full.mp4"), 0.85],
  ];
  for (const [what, file, share] of outputs) {
    const d = decode(file);
    console.log(`# ${what}: ${d.frames} frames decoded of ${sent} sent${d.errors ? "; errors: " + d.errors.slice(0, 300) : ""}`);
    assert.equal(d.status, 0, `${what}: ffmpeg failed: ${d.errors}`);
    assert.equal(d.errors, "", `${what}: decode errors`);
    assert.ok(d.frames >= sent * share && d.frames <= sent + FPS, `${what}: ${d.frames} frames, ${sent} sent`);
  }
}

browserTest("publish.html says why it cannot go live: a wrong token, a second publisher", async () => {
  const wrong = await openPublish({ app: "live", stream: "twice", source: "clock", size: "640x360", fps: "25" });
  await wrong.page.fill("#token", "not-the-token");
  await wrong.page.click("#start");
  const refused = await wrong.page.waitForFunction(() => window.rtmpdState.publish.state === "failed" && window.rtmpdState.publish, null, { timeout: 15000 }).then(h => h.jsonValue());
  assert.match(refused.error, /HTTP 40[13]/, refused.error);
  await wrong.page.close();

  const first = await openPublish({ app: "live", stream: "twice", source: "clock", size: "640x360", fps: "25" });
  await first.page.fill("#token", "sesame");
  await first.page.click("#start");
  await first.page.waitForFunction(() => window.rtmpdState.publish.state === "live", null, { timeout: 20000 });
  const second = await openPublish({ app: "live", stream: "twice", source: "clock", size: "640x360", fps: "25" });
  await second.page.fill("#token", "sesame");
  await second.page.click("#start");
  const busy = await second.page.waitForFunction(() => window.rtmpdState.publish.state === "failed" && window.rtmpdState.publish, null, { timeout: 15000 }).then(h => h.jsonValue());
  assert.match(busy.error, /HTTP 409: someone is already publishing/, busy.error);
  // The first publisher is unharmed.
  await sleep(1500);
  const still = await first.page.evaluate(PUB);
  assert.equal(still.state, "live", JSON.stringify(still));
  await first.page.click("#stop");
  await first.page.close();
  await second.page.close();
});

// A LAN address is not a secure origin over plain HTTP: the page says so and names the HTTPS link; over the
// HTTPS port with --tls-self-signed's certificate (Chromium trusts exactly its key, nothing else) it publishes.
browserTest("--tls-self-signed: publish.html from a LAN address over HTTPS, plain HTTP refused by the browser", async t => {
  const lan = Object.values(os.networkInterfaces()).flat().find(a => a && a.family === "IPv4" && !a.internal);
  if (!lan) {
    if (REQUIRE_TOOLS) assert.fail("no non-loopback IPv4 address to test a LAN page with");
    return t.skip("skipped: no non-loopback IPv4 address");
  }
  const data = path.join(tmp, "tls-data");
  const server = startChild(RTMPD_BIN, ["--bind", "0.0.0.0", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0",
    "--srt-port", "0", "--no-web", "--data-dir", data, "--web-dir", WEB, "--tls-self-signed", "--https-port", "0"], "rtmpd tls");
  const p = await waitFor("rtmpd --tls-self-signed to listen", () => {
    const m = {};
    for (const x of server.output.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) m[x[1].toLowerCase()] = Number(x[2]);
    const fp = /SHA-256 fingerprint ([0-9A-F:]+)/.exec(server.output);
    return m.https && m.http && fp ? { ...m, fingerprint: fp[1] } : null;
  }, 10000);
  const { X509Certificate, createHash } = await import("node:crypto");
  const cert = new X509Certificate(fs.readFileSync(path.join(data, ".tls", "self-signed-cert.pem")));
  assert.equal(cert.fingerprint256, p.fingerprint, "the printed fingerprint is the certificate's");
  assert.equal(cert.checkIP(lan.address), lan.address, `the certificate names ${lan.address}`);
  assert.equal(cert.checkHost(os.hostname().toLowerCase()), os.hostname().toLowerCase(), "and the host name");
  const spki = createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest("base64");
  const ctx2 = await chromium.launchPersistentContext(path.join(tmp, "profile-tls"), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1100, height: 900 },
    args: [...CHROMIUM_FLAGS, `--ignore-certificate-errors-spki-list=${spki}`],
  });
  try {
    const page = await ctx2.newPage();
    await page.goto(`http://${lan.address}:${p.http}/publish.html`);
    const plain = await page.waitForFunction(() => document.querySelector(".notice") && {
      secure: window.isSecureContext, status: document.getElementById("status").textContent,
      notice: document.querySelector(".notice").textContent }, null, { timeout: 10000 }).then(h => h.jsonValue());
    assert.equal(plain.secure, false);
    assert.match(plain.status, /not secure/);
    assert.ok(plain.notice.includes(`https://${lan.address}:${p.https}/publish.html`), plain.notice);

    await page.goto(`https://${lan.address}:${p.https}/publish.html?stream=lan&source=camera%2Bmic&size=640x360`);
    await page.click("#start");
    const pub = await page.waitForFunction(() => ["live", "failed"].includes(window.rtmpdState.publish.state) && window.rtmpdState.publish,
      null, { timeout: 20000 }).then(h => h.jsonValue());
    assert.equal(pub.state, "live", JSON.stringify(pub));
    assert.equal(pub.whipUrl, `https://${lan.address}:${p.https}/live/lan/whip`);
    await page.click("#stop");
  } finally {
    await ctx2.close().catch(() => {});
    server.kill("SIGTERM");
    await Promise.race([server.exited, sleep(6000)]);
  }
});
