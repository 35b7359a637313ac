// home.js: the home page's dashboard part: one tile per live stream (a muted mpegts.js preview over HTTP-FLV
// while the tile is visible and the tab is shown, or an audio level meter), its health badge (the `health`
// field of /api/streams), bitrate and viewer graphs (plain SVG from /api/streams/history), and a QR code of
// its phone page. Fields the server does not send yet are simply not drawn. It does not list recordings.
"use strict";

const dash = (() => {
  const R = rtmpd;
  const el = R.el;
  const SVG = "http://www.w3.org/2000/svg";
  const QR = { name: "qrcode-generator", global: "qrcode", local: "/vendor/qrcode.js",
    cdn: "https://cdn.jsdelivr.net/npm/qrcode-generator@2.0.4/dist/qrcode.js" };
  const tiles = new Map(); // "app/stream" -> tile
  const state = R.state;
  state.tiles = {};

  // The phone link: the HLS page (plays natively on phones), built from this page's own location.
  function phoneUrl(s) {
    return new URL("play.html?app=" + encodeURIComponent(s.app) + "&stream=" + encodeURIComponent(s.stream), location.href).href;
  }

  async function drawQr(canvas, text) {
    const qrcode = await R.loadLib(QR);
    const qr = qrcode(0, "M");
    qr.addData(text);
    qr.make();
    const n = qr.getModuleCount(), quiet = 4, scale = 3;
    canvas.width = canvas.height = (n + 2 * quiet) * scale;
    const g = canvas.getContext("2d");
    g.fillStyle = "#fff";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = "#000";
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) {
      if (qr.isDark(r, c)) g.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale);
    }
    canvas.dataset.text = text;
  }

  // A polyline of the last 10 minutes; `series` is [[values, class]], x from ago_s (600 s wide).
  function graph(title, ago, series, unit) {
    const w = 240, h = 48, svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("class", "graph");
    const max = Math.max(1, ...series.flatMap(([v]) => v.map(Number).filter(Number.isFinite)));
    for (const [values, cls] of series) {
      const pts = [];
      values.forEach((v, i) => {
        const a = Number(ago[i]), y = Number(v);
        if (!Number.isFinite(a) || !Number.isFinite(y)) return;
        pts.push(((600 - Math.min(600, a)) / 600 * w).toFixed(1) + "," + (h - 2 - y / max * (h - 4)).toFixed(1));
      });
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", pts.join(" "));
      line.setAttribute("class", cls);
      svg.append(line);
    }
    const last = series[0][0].length ? Number(series[0][0][series[0][0].length - 1]) : null;
    return el("div", { class: "chart", "data-chart": title }, el("div", { class: "sub" }, title + (last !== null ? ": " + Math.round(last) + " " + unit : "")), svg);
  }

  function badge(health) {
    if (!health || !["green", "amber", "red"].includes(health.level)) return null;
    return el("div", { class: "health " + health.level, "data-health": health.level, title: (health.reasons || []).map(r => r.text).join("\n") },
      el("span", { class: "dot" }), String(health.reason || health.level));
  }

  // Audio-only: WebAudio analyser on the muted element's output (muted elements still feed captureStream).
  function meter(tile) {
    const bar = el("div", { class: "meter-bar" });
    tile.media.append(el("div", { class: "meter" }, bar));
    tile.level = 0;
    // Tried on every timeupdate until the element has an audio track to analyse.
    tile.startMeter = () => {
      if (tile.analyser || !tile.video.captureStream) return;
      const stream = tile.video.captureStream();
      if (!stream.getAudioTracks().length) return;
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(stream);
      tile.analyser = ctx.createAnalyser();
      tile.analyser.fftSize = 512;
      src.connect(tile.analyser);
      const buf = new Uint8Array(tile.analyser.fftSize);
      const tick = () => {
        if (!tile.analyser) return;
        tile.analyser.getByteTimeDomainData(buf);
        let peak = 0;
        for (const b of buf) peak = Math.max(peak, Math.abs(b - 128));
        tile.level = peak / 128;
        state.tiles[tile.key].level = tile.level;
        state.tiles[tile.key].levelTicks = (state.tiles[tile.key].levelTicks || 0) + (tile.level > 0.01 ? 1 : 0);
        bar.style.width = Math.min(100, tile.level * 140).toFixed(0) + "%";
        requestAnimationFrame(tick);
      };
      tick();
      tile.audioCtx = ctx;
    };
  }

  async function start(tile) {
    if (tile.player || document.hidden || !tile.visible) return;
    try {
      const mpegts = await R.loadLib(R.MPEGTS);
      const base = await R.api();
      tile.player = mpegts.createPlayer({ type: "flv", isLive: true, hasVideo: tile.hasVideo, hasAudio: tile.hasAudio,
        url: R.liveUrl(base, "http", tile.app, tile.stream) }, { enableStashBuffer: false, liveBufferLatencyChasing: true });
      tile.player.attachMediaElement(tile.video);
      tile.player.load();
      R.play(tile.video);
    } catch (e) {
      tile.status.textContent = "preview failed: " + e.message;
    }
  }

  function stop(tile) {
    if (!tile.player) return;
    tile.player.destroy();
    tile.player = null;
    if (tile.audioCtx) tile.audioCtx.close();
    tile.audioCtx = tile.analyser = null;
  }

  function makeTile(s) {
    const key = s.app + "/" + s.stream;
    const video = el("video", { muted: true, playsinline: true, autoplay: true });
    video.muted = true;
    // A restricted answer (no API token) has no codec fields: assume both tracks.
    const unknown = !("video" in s);
    const tile = { key, app: s.app, stream: s.stream, video, hasVideo: unknown || !!s.video, hasAudio: unknown || !!s.audio || !s.video, visible: false };
    state.tiles[key] = { playing: false };
    tile.media = el("div", { class: "media" }, video, el("span", { class: "badge live" }, "LIVE"));
    if (!tile.hasVideo) { video.classList.add("hidden"); meter(tile); }
    tile.info = el("div", { class: "tile-info" });
    tile.status = el("div", { class: "sub" });
    tile.healthBox = el("div", {});
    tile.graphs = el("div", { class: "graphs" });
    tile.qr = el("canvas", { class: "qr", title: "Scan to open on a phone" });
    const open = el("a", { class: "tile-open", href: "index.html?app=" + encodeURIComponent(s.app) + "&stream=" + encodeURIComponent(s.stream), title: "Open the player" }, tile.media);
    tile.node = el("div", { class: "tile", "data-tile": key }, open,
      el("div", { class: "tile-body" }, el("div", { class: "tile-name" }, key), tile.info, tile.healthBox, tile.status, tile.graphs),
      el("div", { class: "tile-qr" }, tile.qr, el("a", { class: "sub", href: phoneUrl(s) }, "phone link")));
    video.addEventListener("timeupdate", () => {
      state.tiles[key].playing = true;
      state.tiles[key].currentTime = video.currentTime;
      if (tile.startMeter) tile.startMeter();
    });
    drawQr(tile.qr, phoneUrl(s)).catch(e => { tile.status.textContent = "no QR code: " + e.message; });
    observer.observe(tile.node);
    return tile;
  }

  function update(tile, s, hist) {
    const v = s.viewers || {};
    const total = v.total !== undefined ? v.total : (v.rtmp || 0) + (v.http_flv || 0) + (v.ws_flv || 0) + (v.webrtc || 0);
    if (!s.viewers) { tile.info.textContent = "live"; } else tile.info.textContent = `${total} watching · ${Number(s.bitrate_in_kbps) || 0} kbps · ${R.describeVideo(s.video)} / ${R.describeAudio(s.audio)}`;
    tile.healthBox.replaceChildren(...[badge(s.health)].filter(Boolean));
    if (hist && Array.isArray(hist.ago_s)) {
      const vw = hist.viewers || {};
      tile.graphs.replaceChildren(
        graph("bitrate in / out", hist.ago_s, [[hist.bitrate_in_kbps || [], "in"], [hist.bitrate_out_kbps || [], "out"]], "kbps"),
        graph("viewers rtmp / flv / ws / webrtc", hist.ago_s, [[vw.rtmp || [], "rtmp"], [vw.http_flv || [], "flv"], [vw.ws_flv || [], "ws"],
          [vw.webrtc || [], "webrtc"]], ""));
    } else {
      tile.graphs.replaceChildren();
    }
  }

  const observer = new IntersectionObserver(entries => {
    for (const e of entries) {
      const tile = [...tiles.values()].find(t => t.node === e.target);
      if (!tile) continue;
      tile.visible = e.isIntersecting;
      if (tile.visible) start(tile); else stop(tile);
    }
  });
  document.addEventListener("visibilitychange", () => {
    for (const t of tiles.values()) {
      if (document.hidden) { stop(t); } else if (t.visible) { start(t); }
    }
  });

  function serverGraphs(box, h) {
    if (!box) return;
    if (!h || !h.server || !Array.isArray(h.server.ago_s)) { box.replaceChildren(); return; }
    const s = h.server;
    box.replaceChildren(
      graph("CPU", s.ago_s, [[s.cpu_percent || [], "in"]], "%"),
      graph("memory", s.ago_s, [[(s.rss_bytes || []).map(b => b === null ? null : b / 1048576), "out"]], "MiB"),
      graph("connections", s.ago_s, [[s.connections || [], "rtmp"]], ""));
  }

  // Called by home.html with each /api/streams answer and the history answer (or null).
  function render(list, history) {
    const box = R.$("tiles");
    const seen = new Set();
    const byKey = new Map(((history && history.streams) || []).map(h => [h.app + "/" + h.stream, h]));
    for (const s of list.filter(s => s.live !== false)) {
      const key = s.app + "/" + s.stream;
      seen.add(key);
      let t = tiles.get(key);
      if (!t) { t = makeTile(s); tiles.set(key, t); box.append(t.node); }
      update(t, s, byKey.get(key));
    }
    for (const [key, t] of tiles) {
      if (seen.has(key)) continue;
      stop(t);
      observer.unobserve(t.node);
      t.node.remove();
      tiles.delete(key);
      delete state.tiles[key];
    }
    serverGraphs(R.$("server-graphs"), history);
  }

  return { render, phoneUrl, drawQr, QR };
})();

// The API with the token the visitor gave (sessionStorage, asked once per tab on the first 401).
const dashApi = (() => {
  const KEY = "rtmpd-api-token";
  let asked = false;
  async function get(base, p) {
    const tok = sessionStorage.getItem(KEY);
    const u = new URL(base + p);
    if (tok) u.searchParams.set("token", tok);
    const r = await fetch(u.href, { cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      if (!asked) {
        asked = true;
        const t = window.prompt("This server's API needs a token (rtmpd --api-token). Leave empty to continue as a viewer.");
        if (t) { sessionStorage.setItem(KEY, t); return get(base, p); }
      }
      const e = new Error("the API needs a token");
      e.auth = true;
      throw e;
    }
    if (!r.ok) throw new Error(`GET ${p}: HTTP ${r.status}`);
    const j = await r.json();
    // A protected server still lists its live streams ("restricted": names only): offer the token once.
    // (A token typed into the prompt of a request that ran at the same time: use it now.)
    if (j && j.restricted && !tok && sessionStorage.getItem(KEY)) return get(base, p);
    if (j && j.restricted && !asked) {
      asked = true;
      const t = window.prompt("This server's API needs a token (rtmpd --api-token) for publishers, health and recordings. Leave empty to continue as a viewer.");
      if (t) { sessionStorage.setItem(KEY, t); return get(base, p); }
    }
    return j;
  }
  return { get, KEY };
})();
