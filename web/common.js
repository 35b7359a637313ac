// common.js: what every rtmpd page shares: the stream name from the query, the header and status line,
// finding the API, building URLs from `location` (never a fixed host), and loading a player library from
// /vendor/ with the public CDN copy as the fallback.
"use strict";

const rtmpd = (() => {
  const params = new URLSearchParams(location.search);
  const NAME = /^[A-Za-z0-9_-]{1,64}$/; // SPEC section 2: anything else is refused by the server
  const HTTP_PORT = "8501"; // the origin's default HTTP-FLV/API port, tried when this origin has no API
  const RTMP_PORT = "1935";

  // Pages and tests read this: what the page is doing right now (latency, reconnects, errors).
  const state = { errors: [], notices: [] };
  window.rtmpdState = state;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    // Strings become text nodes: names from the server or the query never turn into HTML.
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function $(id) { return document.getElementById(id); }

  // The stream this page is about. A bad name is shown as an error instead of being sent anywhere.
  function name(key, fallback) {
    const v = params.get(key);
    if (v === null || v === "") return fallback;
    if (!NAME.test(v)) throw new Error(`"${key}" must match ${NAME.source}, got "${v}"`);
    return v;
  }
  let app = "live", stream = "stream", nameError = null;
  try {
    app = name("app", "live");
    stream = name("stream", "stream");
  } catch (e) {
    nameError = e.message;
  }
  const path = encodeURIComponent(app) + "/" + encodeURIComponent(stream);

  function status(text, kind) {
    const s = $("status");
    if (!s) return;
    s.className = "status" + (kind ? " " + kind : "");
    s.textContent = text;
    if (kind === "error") state.lastError = text;
  }

  function notice(text) {
    state.notices.push(text);
    const box = $("notices");
    if (box) box.append(el("div", { class: "notice" }, text));
  }

  // Shared header: the same links on every page, keeping the stream the visitor chose.
  const PAGES = [
    ["home.html", "Home", "/"],
    ["index.html", "HTTP-FLV live"],
    ["play.html", "HLS"],
    ["video.html", "FLV player"],
    ["mp4.html", "MP4"],
    ["play_merge.html", "fMP4 (MSE)"],
    ["publish.html", "Publish"],
  ];
  function header(current, subtitle) {
    const h = document.querySelector("header");
    if (!h) return;
    const q = "?app=" + encodeURIComponent(app) + "&stream=" + encodeURIComponent(stream);
    const nav = el("nav", {});
    for (const [file, label, href] of PAGES) {
      const a = el("a", { href: href || file + q }, label);
      if (file === current) a.className = "here";
      nav.append(a);
    }
    h.replaceChildren(el("h1", {}, el("a", { href: "/" }, "rtmpd")), nav);
    if (subtitle) h.append(el("span", { class: "sub" }, subtitle));
    if (nameError) status("Bad stream name: " + nameError, "error");
  }

  // A small form to switch to another app/stream on the same page.
  function streamForm() {
    const a = el("input", { type: "text", name: "app", value: app, "aria-label": "app", pattern: NAME.source });
    const s = el("input", { type: "text", name: "stream", value: stream, "aria-label": "stream", pattern: NAME.source });
    return el("form", { method: "get" }, a, "/", s, el("button", { type: "submit" }, "Open"));
  }

  // The API (and HTTP-FLV) live on the origin's HTTP port. A page served from that port finds it on its own
  // origin; a page served from the web port (8000) or a file gateway tries the same host on 8501.
  // `?api=http://host:port` overrides both.
  let apiPromise = null;
  function candidates() {
    const c = [];
    if (params.get("api")) c.push(params.get("api").replace(/\/+$/, ""));
    c.push(location.origin);
    // A page over HTTPS must not fetch plain HTTP (mixed content): only its own origin then.
    if (location.port !== HTTP_PORT && location.protocol !== "https:") c.push(location.protocol + "//" + location.hostname + ":" + HTTP_PORT);
    return c;
  }
  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
    return r.json();
  }
  // Resolves to { base, streams } from the first candidate that answers /api/streams.
  function api() {
    if (!apiPromise) {
      apiPromise = (async () => {
        let last = null;
        for (const base of candidates()) {
          try {
            const j = await getJSON(base + "/api/streams");
            if (j && Array.isArray(j.streams)) {
              usePorts(j.ports); // the restricted answer says them too (viewer mode has no /api/server)
              await learnPorts(base);
              return base;
            }
          } catch (e) {
            last = e;
          }
        }
        apiPromise = null; // try every candidate again next time: the server may come back elsewhere
        throw new Error("cannot reach /api/streams (" + (last ? last.message : "no answer") + ")");
      })();
    }
    return apiPromise;
  }
  // When /api/server (or a restricted /api/streams) reports the listeners ("ports": {"rtmp", "http", "web",
  // "rtmps", "https"}), use them: the RTMP(S) URL shown to publishers, and HTTP-FLV on the HTTP port (HTTPS-FLV
  // on the HTTPS port for a page over HTTPS) even when this page came from the web port (which may answer
  // /api/* but never serves live FLV). Older servers do not say: then 1935 and the API's own origin.
  function usePorts(p) {
    if (!p) return;
    for (const [k, field] of [["rtmp", "rtmpPort"], ["http", "httpPort"], ["rtmps", "rtmpsPort"], ["https", "httpsPort"]]) {
      if (Number(p[k]) > 0) state[field] = Number(p[k]);
    }
  }
  async function learnPorts(base) {
    try {
      const srv = await getJSON(base + "/api/server");
      usePorts(srv && srv.ports);
    } catch (e) {
      // not fatal (viewer mode answers 401): the ports from /api/streams or the defaults apply
    }
  }
  async function streams() {
    const base = await api();
    const j = await getJSON(base + "/api/streams");
    return j.streams || [];
  }
  // This page's stream from /api/streams: the object, or null when it is not live. The list a visitor
  // without the API token gets names only the streams anyone may play (none with --no-public-list): a
  // stream it leaves out may still play with the token in this page's URL, so the name typed in is tried.
  async function liveInfo() {
    const base = await api();
    const j = await getJSON(base + "/api/streams");
    const found = (j.streams || []).find(s => s.app === app && s.stream === stream);
    if (!found && j.restricted) return { app, stream, live: true, unlisted: true };
    return found || null;
  }

  // What only the origin serves (live FLV, LL-HLS), on the API's origin: over HTTPS from the HTTPS port,
  // else from the HTTP port (a page from the web port or a file gateway has neither on its own origin).
  function originUrl(base, p) {
    const u = new URL(base + p);
    const port = u.protocol === "https:" ? state.httpsPort : state.httpPort;
    if (port && !params.get("api")) u.port = String(port);
    return u;
  }
  // HTTP-FLV / WS-FLV on the API's origin.
  function liveUrl(base, transport, otherApp, otherStream) {
    const p = otherApp ? encodeURIComponent(otherApp) + "/" + encodeURIComponent(otherStream) : path;
    const u = originUrl(base, "/" + p + ".flv");
    if (transport === "ws") u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    // A play token (rtmpd --play-token) or a signed link given to this page goes on to the server; a
    // signature covers one stream, so it is passed only for this page's own.
    if (params.get("token")) u.searchParams.set("token", params.get("token"));
    if (!otherApp && params.get("sign")) {
      u.searchParams.set("expires", params.get("expires") || "");
      u.searchParams.set("sign", params.get("sign"));
    }
    return u.href;
  }
  // The WHEP endpoint of this page's stream (WebRTC playback), with its play token or signed link.
  function whepUrl(base) {
    const u = originUrl(base, "/" + path + "/whep");
    if (params.get("token")) u.searchParams.set("token", params.get("token"));
    if (params.get("sign")) {
      u.searchParams.set("expires", params.get("expires") || "");
      u.searchParams.set("sign", params.get("sign"));
    }
    return u.href;
  }
  // The Low-Latency HLS playlist (rtmpd --hls-low-latency), with this page's play token or signed link.
  function llhlsUrl(base) {
    const u = originUrl(base, "/llhls/" + path + "/index.m3u8");
    if (params.get("token")) u.searchParams.set("token", params.get("token"));
    if (params.get("sign")) {
      u.searchParams.set("expires", params.get("expires") || "");
      u.searchParams.set("sign", params.get("sign"));
    }
    return u.href;
  }
  // Recordings are static files served beside the pages (web port, HTTP port and file gateway alike).
  function fileUrl(p) { return new URL(p, location.origin).href; }
  // Where publishers and RTMP players connect: RTMPS when this page came over HTTPS and the server has an
  // RTMPS port, else RTMP (the port the server reports, or 1935).
  function rtmpBase() {
    if (location.protocol === "https:" && state.rtmpsPort) return "rtmps://" + location.hostname + ":" + state.rtmpsPort;
    return "rtmp://" + location.hostname + ":" + (state.rtmpPort || RTMP_PORT);
  }
  function rtmpUrl() { return rtmpBase() + "/" + path; }

  // Loads a player library: /vendor/ first; when that is missing, says so and loads the public CDN copy.
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = el("script", { src });
      s.onload = resolve;
      s.onerror = () => { s.remove(); reject(new Error("could not load " + src)); };
      document.head.append(s);
    });
  }
  async function loadLib(lib) {
    if (window[lib.global]) return window[lib.global];
    try {
      await loadScript(lib.local);
      if (window[lib.global]) return window[lib.global];
    } catch (e) {
      // fall through to the CDN
    }
    notice(`${lib.name} is not installed on this server (${lib.local} is missing: run "make vendor"); ` +
      `loading the public CDN copy instead.`);
    try {
      await loadScript(lib.cdn);
    } catch (e) {
      throw new Error(`${lib.name} is missing: neither ${lib.local} nor the CDN copy could be loaded.`);
    }
    if (!window[lib.global]) throw new Error(`${lib.name} loaded but did not define ${lib.global}.`);
    return window[lib.global];
  }
  const MPEGTS = { name: "mpegts.js", global: "mpegts", local: "/vendor/mpegts.js",
    cdn: "https://cdn.jsdelivr.net/npm/mpegts.js@1.8.2/dist/mpegts.js" };
  const HLS = { name: "hls.js", global: "Hls", local: "/vendor/hls.min.js",
    cdn: "https://cdn.jsdelivr.net/npm/hls.js@1.7.4/dist/hls.min.js" };

  // Seconds of media buffered ahead of the play head: how far behind the newest received frame we are.
  function bufferAhead(video) {
    const b = video.buffered;
    if (!b.length) return null;
    return Math.max(0, b.end(b.length - 1) - video.currentTime);
  }

  // Human-readable reasons for <video> errors.
  function mediaError(video) {
    const e = video.error;
    if (!e) return "unknown media error";
    const why = { 1: "aborted", 2: "network error", 3: "decode error", 4: "format or codec not supported" }[e.code];
    return (why || "media error " + e.code) + (e.message ? " (" + e.message + ")" : "");
  }

  // Browsers allow autoplay only when muted; an Unmute button gives the sound back.
  function muteButton(video) {
    const b = el("button", { type: "button" }, "Unmute");
    b.onclick = () => {
      video.muted = !video.muted;
      b.textContent = video.muted ? "Unmute" : "Mute";
    };
    return b;
  }

  // Starts playing, reporting a refused play() instead of throwing an unhandled rejection.
  function play(video) {
    const p = video.play();
    if (p && p.catch) p.catch(e => { if (e.name !== "AbortError") notice("Press play to start (" + e.message + ")."); });
  }

  function fmtBytes(n) {
    n = Number(n) || 0;
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function fmtUptime(s) {
    s = Math.max(0, Math.floor(Number(s) || 0));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }
  function describeVideo(v) {
    if (!v) return "none";
    return (v.codec || "?") + (v.width && v.height ? " " + v.width + "×" + v.height : "") + (v.fps ? " " + v.fps + " fps" : "");
  }
  function describeAudio(a) {
    if (!a) return "none";
    return (a.codec || "?") + (a.sample_rate ? " " + a.sample_rate + " Hz" : "") + (a.channels ? " " + a.channels + " ch" : "");
  }

  // Fills a <dl class="facts"> from [label, value] pairs.
  function facts(dl, rows) {
    dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
  }

  window.addEventListener("error", e => state.errors.push(String(e.message)));

  return {
    params, app, stream, path, nameError, state, el, $, status, notice, header, streamForm, api, getJSON, streams,
    liveInfo, liveUrl, whepUrl, llhlsUrl, fileUrl, rtmpBase, rtmpUrl, loadLib, MPEGTS, HLS, bufferAhead, mediaError, muteButton, play, fmtBytes,
    fmtUptime, describeVideo, describeAudio, facts,
  };
})();
