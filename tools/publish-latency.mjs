// Camera-to-viewer latency, measured in Chromium (issue 26 benchmark). Two publishers into one rtmpd, the
// same run: publish.html's "Test pattern with clock" source over WHIP (a canvas that draws Date.now() as
// 32 black/white blocks, web/clock.js, captured with canvas.captureStream) and FFmpeg over RTMP (the same
// blocks drawn from the wall clock by drawbox filters, x264 zerolatency). Two players for each: index.html
// (HTTP-FLV, mpegts.js, the page's own latency policy) and a plain WHEP player (RTCPeerConnection). In every
// player each presented frame (requestVideoFrameCallback) is drawn into a canvas, its blocks read back, and
// Date.now() minus the time they carry is one sample. Prints the median, p10 and p90 per pair.
//
// One machine, one clock: what the samples include is capture/drawing, encoding, the network to rtmpd,
// rtmpd, the network to the player, its buffer, decoding and presentation.
// Usage: node tools/publish-latency.mjs   (tools/bench-publish-latency.sh installs and builds first)
// Env: RTMPD_BIN (default target/release/rtmpd if built, else target/debug/rtmpd), CHROMIUM, SECS (20),
// SOURCES (whip,rtmp), RTMPD_ARGS (more server options), DEBUG=1 (player stats and the server log).
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const release = path.join(ROOT, "target/release/rtmpd");
const RTMPD_BIN = path.resolve(ROOT, process.env.RTMPD_BIN || (fs.existsSync(release) ? release : "target/debug/rtmpd"));
const SECS = Number(process.env.SECS || 20), WARMUP = 6;
// SOURCES=rtmp measures the RTMP publisher alone (a server without WHIP).
const SOURCES = (process.env.SOURCES || "whip,rtmp").split(",");
const W = 640, H = 360, FPS = 30;
const { chromium } = createRequire(path.join(ROOT, "tests/browser/package.json"))("playwright-core");

const sleep = ms => new Promise(r => setTimeout(r, ms));
const children = [];
function run(cmd, args) {
  const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  c.log = "";
  c.stdout.on("data", d => { c.log = (c.log + d).slice(-50000); });
  c.stderr.on("data", d => { c.log = (c.log + d).slice(-50000); });
  children.push(c);
  return c;
}
async function waitFor(what, fn, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await Promise.resolve().then(fn).catch(() => null);
    if (v) return v;
    await sleep(200);
  }
  throw new Error("timed out waiting for " + what);
}

// FFmpeg's side of the pattern: the wall clock (RTCTIME, microseconds) as the frame time while the boxes
// are drawn, then regular timestamps again for the encoder. Bit i of the milliseconds is box i (white = 1).
function rtmpFilter() {
  const bw = W / 16, bh = H / 12;
  const f = ["settb=AVTB", "setpts=RTCTIME", `drawbox=x=0:y=0:w=${W}:h=${2 * bh}:color=black:t=fill`];
  for (let i = 0; i < 32; i++) {
    f.push(`drawbox=x=${(i % 16) * bw}:y=${Math.floor(i / 16) * bh}:w=${bw}:h=${bh}:color=white:t=fill:` +
      `enable='eq(mod(floor(floor(t*1000)/${2 ** i})\\,2)\\,1)'`);
  }
  f.push(`setpts=N/${FPS}/TB`);
  return f.join(",");
}

const WHEP_PAGE = `<!doctype html><meta charset="utf-8"><title>WHEP latency</title>
<video id="video" muted autoplay playsinline></video>
<script>
"use strict";
(async () => {
  const key = new URLSearchParams(location.search).get("key");
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const v = document.getElementById("video");
  const ms = new MediaStream();
  v.srcObject = ms;
  pc.ontrack = e => { ms.addTrack(e.track); v.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  const r = await fetch("/" + key + "/whep", { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
  if (r.status !== 201) throw new Error("WHEP " + r.status + " " + await r.text());
  await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  window.pc = pc;
})().catch(e => { window.whepError = String(e); console.log("WHEP error " + e); });
</script>`;

const HARNESS_PAGE = `<!doctype html><meta charset="utf-8"><title>latency</title>
<style>body { margin: 0; display: flex; flex-wrap: wrap; } iframe { width: 440px; height: 330px; border: 0; }</style>`;

// Runs in each player page: one sample per presented frame whose blocks read cleanly.
const MEASURE = () => {
  window.samples = [];
  window.unreadable = 0;
  const c = document.createElement("canvas");
  const g = c.getContext("2d", { willReadFrequently: true });
  const onFrame = () => {
    const v = document.querySelector("video");
    if (v && v.videoWidth) {
      if (c.width !== v.videoWidth || c.height !== v.videoHeight) { c.width = v.videoWidth; c.height = v.videoHeight; }
      g.drawImage(v, 0, 0);
      const now = Date.now();
      const code = clockPattern.read(g, c.width, c.height);
      if (code === null) window.unreadable++;
      else {
        const age = clockPattern.age(code, now);
        if (age < 30000) window.samples.push(age);
        else window.unreadable++;
      }
    }
    if (v) v.requestVideoFrameCallback(onFrame);
    else setTimeout(onFrame, 100);
  };
  const start = () => {
    const v = document.querySelector("video");
    if (!v) return setTimeout(start, 100);
    v.requestVideoFrameCallback(onFrame);
  };
  start();
};

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = p => s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
  return { n: s.length, median: q(0.5), p10: q(0.1), p90: q(0.9) };
}

async function main() {
  if (!fs.existsSync(RTMPD_BIN)) throw new Error(`no rtmpd at ${RTMPD_BIN}: cargo build first`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rtmpd-latency-"));
  const server = run(RTMPD_BIN, ["--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0", "--webrtc-port", "0",
    "--srt-port", "0", "--no-web", "--data-dir", tmp, "--web-dir", path.join(ROOT, "web"), "--max-per-ip", "0", ...(process.env.RTMPD_ARGS ? process.env.RTMPD_ARGS.split(" ") : [])]);
  const ports = await waitFor("rtmpd's ports", () => {
    const p = {};
    for (const m of server.log.matchAll(/(\w+) listening on [^\s]*:(\d+)/g)) p[m[1].toLowerCase()] = Number(m[2]);
    return p.rtmp && p.http ? p : null;
  }, 10000);
  const origin = `http://127.0.0.1:${ports.http}`;
  const ctx = await chromium.launchPersistentContext(path.join(tmp, "profile"), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1320, height: 700 },
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
      "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
  });
  await ctx.route(/\/__latency\/whep\.html/, r => r.fulfill({ contentType: "text/html", body: WHEP_PAGE }));
  await ctx.route(`${origin}/__latency/harness.html`, r => r.fulfill({ contentType: "text/html", body: HARNESS_PAGE }));
  try {
    // Everything in one visible page (frames of a harness page): a background tab would have its video
    // callbacks and timers throttled, the publisher's canvas included.
    const page = await ctx.newPage();
    page.on("pageerror", e => console.log(`# page error ${e.message}`));
    await page.goto(`${origin}/__latency/harness.html`);
    const addFrame = (name, url) => page.evaluate(([n, u]) => new Promise(resolve => {
      const f = document.createElement("iframe");
      f.name = n;
      f.src = u;
      f.allow = "camera; microphone; autoplay";
      f.onload = resolve;
      document.body.append(f);
    }), [name, url]);
    const frame = name => page.frames().find(f => f.name() === name);
    let pubFrame = null;
    if (SOURCES.includes("whip")) {
      await addFrame("publisher", `${origin}/publish.html?app=live&stream=whip&source=clock&size=${W}x${H}&fps=${FPS}&bitrate=1000&autostart=1`);
      pubFrame = frame("publisher");
      await pubFrame.waitForFunction(() => window.rtmpdState.publish && window.rtmpdState.publish.state === "live", null, { timeout: 20000 })
        .catch(async () => { throw new Error("publish.html did not go live: " + JSON.stringify(await pubFrame.evaluate(() => window.rtmpdState.publish))); });
    }
    const ffmpeg = SOURCES.includes("rtmp") ? run("ffmpeg", ["-hide_banner", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", `color=c=0x1d2430:s=${W}x${H}:r=${FPS}`,
      "-vf", rtmpFilter(), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", String(2 * FPS),
      "-b:v", "1M", "-pix_fmt", "yuv420p", "-f", "flv", `rtmp://127.0.0.1:${ports.rtmp}/live/rtmp`]) : null;
    await waitFor("the streams live", async () => {
      const j = await (await fetch(origin + "/api/streams")).json();
      const keys = j.streams.map(s => s.app + "/" + s.stream);
      return SOURCES.every(src => keys.includes("live/" + src));
    }, 15000);

    // The players: for each source, our HTTP-FLV page and a WHEP player.
    const players = [];
    for (const src of SOURCES) {
      for (const [kind, url] of [["HTTP-FLV (index.html)", `${origin}/index.html?app=live&stream=${src}`],
        ["WebRTC (WHEP)", `${origin}/__latency/whep.html?key=live/${src}`]]) {
        const name = `${src}-${players.length}`;
        await addFrame(name, url);
        const f = frame(name);
        await f.addScriptTag({ url: "/clock.js" });
        await f.evaluate(MEASURE);
        players.push({ src, kind, page: f });
      }
    }
    await sleep(WARMUP * 1000);
    for (const p of players) await p.page.evaluate(() => { window.samples = []; window.unreadable = 0; });
    await sleep(SECS * 1000);
    const pub = pubFrame ? await pubFrame.evaluate(() => window.rtmpdState.publish) : {};
    console.log(`# rtmpd ${path.relative(ROOT, RTMPD_BIN)}; ${W}x${H} at ${FPS} fps, 1 Mbps; ${SECS} s measured after ${WARMUP} s; ` +
      `WHIP publisher ${pub.codec} ${pub.width}x${pub.height}; load average ${os.loadavg().map(x => x.toFixed(1)).join(" ")}`);
    console.log("source -> player                          frames  median    p10    p90 (ms)");
    const results = [];
    for (const p of players) {
      const { samples, unreadable, debug } = await p.page.evaluate(() => ({ samples: window.samples, unreadable: window.unreadable,
        debug: { whepError: window.whepError, pc: window.pc && window.pc.connectionState, w: document.querySelector("video").videoWidth, t: document.querySelector("video").currentTime } }));
      if (process.env.DEBUG && debug.pc) {
        debug.inbound = await p.page.evaluate(async () => {
          const out = [];
          (await window.pc.getStats()).forEach(s => { if (s.type === "inbound-rtp") out.push({ kind: s.kind, packets: s.packetsReceived, lost: s.packetsLost, framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, keyFramesDecoded: s.keyFramesDecoded, dropped: s.framesDropped, pli: s.pliCount, nack: s.nackCount, decoder: s.decoderImplementation, freeze: s.freezeCount }); });
          return out;
        });
      }
      if (process.env.DEBUG) console.log(JSON.stringify(debug));
      const s = stats(samples);
      results.push({ src: p.src, kind: p.kind, ...s, unreadable });
      const name = (p.src === "whip" ? "browser WHIP" : "FFmpeg RTMP") + " -> " + p.kind;
      console.log(`${name.padEnd(40)} ${String(s.n).padStart(6)} ${String(s.median).padStart(7)} ${String(s.p10).padStart(6)} ${String(s.p90).padStart(6)}` +
        (unreadable ? `   (${unreadable} frames unreadable)` : ""));
    }
    if (ffmpeg) ffmpeg.kill("SIGTERM");
    if (process.env.DEBUG) fs.writeFileSync(path.join(os.tmpdir(), "publish-latency-server.log"), server.log);
    if (process.env.DEBUG) console.log(server.log.split("\n").filter(l => !/\[INFO\].*"(GET|HEAD) /.test(l)).slice(-40).join("\n"));
    if (results.some(r => r.n < SECS * FPS * 0.3)) {
      console.log("some player presented too few readable frames to trust its figure (see above)");
      process.exitCode = 1;
    }
  } finally {
    await ctx.close().catch(() => {});
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    await sleep(500);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch(e => {
  console.error("publish-latency: " + e.message);
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  process.exit(1);
});
