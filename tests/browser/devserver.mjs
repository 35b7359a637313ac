// A stand-in for the origin's static service, for trying the pages before it is wired in
// (RTMPD_TEST_PAGES=local): serves web/ and the data directory (with single Range requests), answers
// /api/recordings from the data directory (the proposed shape, below), and passes
// everything else (/api/*, /{app}/{stream}.flv, WebSocket upgrades) through to the origin's HTTP port.
// The default test run never uses it: it tests the pages exactly as the origin serves them.
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t",
  ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".flv": "video/x-flv" };

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const SESSION = /^\d{8}_\d{6}(_\d+)?$/;
const dirs = d => (fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }).filter(e => e.isDirectory()).map(e => e.name) : []);

// The proposed GET /api/recordings?app=&stream=, computed from the data directory, newest session first.
// This is a sketch for trying the pages (the origin implements the real one); the shape is the contract:
// {"recordings":[{"app","stream","flv":[url...],"hls":[url...],"mp4":[{"session","merged","muxed","separate"}]}]}
export function listRecordings(dataDir, onlyApp, onlyStream) {
  const keys = new Set();
  for (const kind of ["flv", "hls", "mp4"]) {
    for (const app of dirs(path.join(dataDir, kind))) {
      for (const stream of dirs(path.join(dataDir, kind, app))) if (NAME.test(app) && NAME.test(stream)) keys.add(app + "/" + stream);
    }
  }
  const out = [];
  for (const key of [...keys].sort()) {
    const [app, stream] = key.split("/");
    if ((onlyApp && app !== onlyApp) || (onlyStream && stream !== onlyStream)) continue;
    const d = kind => path.join(dataDir, kind, app, stream);
    const has = (...p) => fs.existsSync(path.join(...p));
    const flvDir = d("flv");
    const flv = fs.existsSync(flvDir) ? fs.readdirSync(flvDir).filter(f => /^\d{8}_\d{6}(_\d+)?\.flv$/.test(f)).sort().reverse()
      .map(f => `/flv/${app}/${stream}/${f}`) : [];
    const hls = [];
    if (has(d("hls"), "index.m3u8")) hls.push(`/hls/${app}/${stream}/index.m3u8`);
    for (const s of dirs(d("hls")).filter(s => SESSION.test(s)).sort().reverse()) {
      if (has(d("hls"), s, "index.m3u8")) hls.push(`/hls/${app}/${stream}/${s}/index.m3u8`);
    }
    const mp4 = [];
    const session = (name, sub) => {
      const base = `/mp4/${app}/${stream}/${sub}`;
      const local = path.join(d("mp4"), sub);
      if (!has(local, "output_merge") && !has(local, "output_separate")) return;
      mp4.push({ session: name,
        merged: has(local, "output_merge", "stream_full.mp4") ? base + "output_merge/stream_full.mp4" : null,
        muxed: has(local, "output_merge", "index.m3u8") ? base + "output_merge/index.m3u8" : null,
        separate: has(local, "output_separate", "master.m3u8") ? base + "output_separate/master.m3u8" : null });
    };
    session("current", "");
    for (const s of dirs(d("mp4")).filter(s => SESSION.test(s)).sort().reverse()) session(s, s + "/");
    out.push({ app, stream, flv, hls, mp4 });
  }
  return { recordings: out };
}

// Resolves to the server and its port. `roots` maps a URL prefix to a folder; "/" is the pages.
// `stubs` (optional) maps an API path to an async function returning the JSON to answer with: the
// dashboard tests use it for API fields the origin does not serve yet (health, history).
export function startDevServer(roots, originPort, dataDir, stubs) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://x");
    if (stubs && stubs[url.pathname]) {
      try {
        const body = JSON.stringify(await stubs[url.pathname](url));
        res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*" });
        return res.end(body);
      } catch (e) {
        res.writeHead(502, { "Content-Type": "text/plain" });
        return res.end(String(e.message));
      }
    }
    if (url.pathname === "/api/recordings" && dataDir) {
      const body = JSON.stringify(listRecordings(dataDir, url.searchParams.get("app"), url.searchParams.get("stream")));
      res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache" });
      return res.end(body);
    }
    let file = null;
    for (const [prefix, dir] of Object.entries(roots)) {
      if (prefix !== "/" && !url.pathname.startsWith(prefix + "/")) continue;
      let rel = decodeURIComponent(prefix === "/" ? url.pathname : url.pathname.slice(prefix.length));
      if (rel === "/") rel = "/home.html";
      const f = path.join(dir, path.normalize(rel));
      if (f.startsWith(dir) && fs.existsSync(f) && fs.statSync(f).isFile()) { file = f; break; }
      if (prefix !== "/") break;
    }
    if (!file && (url.pathname.startsWith("/api/") || /^\/[^/]+\/[^/]+\.flv$/.test(url.pathname))) {
      const up = http.request({ host: "127.0.0.1", port: originPort, path: req.url, method: req.method, headers: req.headers }, r => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on("error", () => { res.destroy(); });
      req.pipe(up);
      res.on("close", () => up.destroy());
      return;
    }
    if (!file) {
      res.writeHead(404, { "Content-Type": "text/plain" });
      return res.end("Not found.");
    }
    const size = fs.statSync(file).size;
    const headers = { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream", "Accept-Ranges": "bytes",
      "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*" };
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || "");
    let start = 0, end = size - 1, code = 200;
    if (m) {
      if (m[1] === "") { start = Math.max(0, size - Number(m[2])); } else { start = Number(m[1]); if (m[2] !== "") end = Math.min(end, Number(m[2])); }
      if (start > end) { res.writeHead(416, { "Content-Range": `bytes */${size}` }); return res.end(); }
      code = 206;
      headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    }
    headers["Content-Length"] = end - start + 1;
    res.writeHead(code, headers);
    if (req.method === "HEAD") return res.end();
    fs.createReadStream(file, { start, end }).pipe(res);
  });
  // WebSocket-FLV: hand the upgrade request and the socket to the origin unchanged.
  server.on("upgrade", (req, socket, head) => {
    const up = net.connect(originPort, "127.0.0.1", () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + "\r\n");
      if (head && head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  return new Promise(resolve => server.listen(0, "127.0.0.1", () => resolve({ server, port: server.address().port })));
}
