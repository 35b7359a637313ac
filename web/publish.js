// publish.js: the publish page. Picks a source (camera, microphone, screen, or a clock test pattern) at
// the chosen size, frame rate and bitrate, previews it, and publishes it with whip.js to
// /{app}/{stream}/whip on this server; shows a live badge while frames flow, the sending stats, the
// player links and a QR code of the phone (HLS) link. Query: ?app=&stream= (the stream), ?source=,
// ?size=WxH, ?fps=, ?bitrate= (kbps), ?codec=h264|av1 preselect the choices; ?autostart=1 goes live at once (a kiosk, the
// tests). It does not play anything back: the player pages do.
"use strict";

(() => {
  const R = rtmpd;
  const el = R.el;
  const NAME = /^[A-Za-z0-9_-]{1,64}$/;
  const pub = { state: "idle", framesEncoded: 0, error: null };
  R.state.publish = pub;
  R.header("publish.html", "publish from this browser");

  const $ = R.$;
  const choices = ["source", "camera", "mic", "size", "fps", "bitrate", "codec", "app", "stream", "token"];
  const ui = Object.fromEntries(choices.map(k => [k, $(k)]));
  ui.app.value = R.app;
  ui.stream.value = R.stream;
  for (const k of ["source", "size", "fps", "bitrate", "codec"]) {
    const v = R.params.get(k);
    if (v && [...ui[k].options].some(o => o.value === v)) ui[k].value = v;
  }

  let media = null;   // the MediaStream being previewed or sent
  let session = null; // whip.publish's answer while live
  let statsTimer = null, lastStats = null, apiBase = null;

  function setStatus(text, kind) {
    R.status(text, kind);
    if (kind === "error") pub.error = text;
  }

  function names() {
    const app = ui.app.value.trim(), stream = ui.stream.value.trim();
    if (!NAME.test(app) || !NAME.test(stream)) throw new Error("the app and stream names may hold letters, digits, '-' and '_' (1-64)");
    return { app, stream, path: encodeURIComponent(app) + "/" + encodeURIComponent(stream) };
  }

  // WHIP is on the origin's HTTP and HTTPS ports; a page from the web port sends it to the HTTP port.
  function origin() {
    const u = new URL(apiBase || location.origin);
    const port = u.protocol === "https:" ? R.state.httpsPort : R.state.httpPort;
    if (port && !R.params.get("api")) u.port = String(port);
    return u.origin;
  }
  function whipUrl() { return origin() + "/" + names().path + "/whip"; }

  function playerLinks() {
    let n;
    try { n = names(); } catch (e) { return; }
    const q = "?app=" + encodeURIComponent(n.app) + "&stream=" + encodeURIComponent(n.stream);
    const page = p => new URL(p + q, location.href).href;
    $("players").replaceChildren(
      el("a", { href: page("index.html"), target: "_blank" }, "HTTP-FLV"),
      el("a", { href: page("index.html") + "&transport=ws", target: "_blank" }, "WS-FLV"),
      el("a", { href: page("play.html"), target: "_blank" }, "HLS (phones)"),
      el("a", { href: page("video.html"), target: "_blank" }, "FLV player"));
    $("whip-url").textContent = whipUrl();
    const phone = dash.phoneUrl({ app: n.app, stream: n.stream });
    dash.drawQr($("qr"), phone).catch(e => { $("qr").title = "no QR code: " + e.message; });
  }

  function size() {
    const [w, h] = ui.size.value.split("x").map(Number);
    return { w, h, fps: Number(ui.fps.value) };
  }

  // Mixes several audio tracks into one (a screen's sound and a microphone): one Opus track goes out.
  function mixAudio(tracks) {
    if (tracks.length < 2) return { track: tracks[0] || null, close() {} };
    const ctx = new AudioContext(), dest = ctx.createMediaStreamDestination();
    for (const t of tracks) ctx.createMediaStreamSource(new MediaStream([t])).connect(dest);
    return { track: dest.stream.getAudioTracks()[0], close() { ctx.close().catch(() => {}); } };
  }

  async function getMedia() {
    const { w, h, fps } = size();
    const src = ui.source.value;
    const video = { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: fps } };
    if (ui.camera.value) video.deviceId = { exact: ui.camera.value };
    const audio = { echoCancellation: true, noiseSuppression: true };
    if (ui.mic.value) audio.deviceId = { exact: ui.mic.value };
    if (src === "clock") return clockPattern.stream(w, h, fps, true);
    if (!navigator.mediaDevices) {
      throw new Error("this page is not secure, so the browser offers no camera here: open it over https:// (rtmpd --tls-self-signed) or on this machine itself");
    }
    if (src.startsWith("screen")) {
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: fps } }, audio: true });
      const tracks = screen.getAudioTracks();
      if (src === "screen+mic") {
        const mic = await navigator.mediaDevices.getUserMedia({ audio });
        tracks.push(...mic.getAudioTracks());
      }
      const mixed = mixAudio(tracks);
      const out = new MediaStream(screen.getVideoTracks());
      if (mixed.track) out.addTrack(mixed.track);
      out.stopPattern = () => { for (const t of [...screen.getTracks(), ...tracks]) t.stop(); mixed.close(); };
      // The browser's own "Stop sharing" button ends the publish too.
      screen.getVideoTracks()[0].addEventListener("ended", () => stop("screen sharing ended"));
      return out;
    }
    const s = await navigator.mediaDevices.getUserMedia({
      video: src === "mic" ? false : video,
      audio: src === "camera" ? false : audio,
    });
    fillDevices();
    return s;
  }

  // Device names are readable once the visitor has allowed a device.
  async function fillDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    for (const [sel, kind] of [[ui.camera, "videoinput"], [ui.mic, "audioinput"]]) {
      const keep = sel.value;
      const opts = devices.filter(d => d.kind === kind && d.deviceId);
      sel.replaceChildren(el("option", { value: "" }, "default"),
        ...opts.map((d, i) => el("option", { value: d.deviceId }, d.label || `${kind === "videoinput" ? "camera" : "microphone"} ${i + 1}`)));
      if (opts.some(d => d.deviceId === keep)) sel.value = keep;
    }
  }

  function release() {
    if (!media) return;
    if (media.stopPattern) media.stopPattern();
    else for (const t of media.getTracks()) t.stop();
    media = null;
    $("preview").srcObject = null;
  }

  async function preview() {
    release();
    media = await getMedia();
    $("preview").srcObject = media;
    $("preview").play().catch(() => {});
    return media;
  }

  function lock(live) {
    for (const k of choices) if (k !== "token") ui[k].disabled = live;
    $("start").disabled = live;
    $("try").disabled = live;
    $("stop").disabled = !live;
  }

  async function start() {
    pub.error = null;
    let url;
    try {
      url = whipUrl();
    } catch (e) {
      return setStatus("Cannot publish: " + e.message + ".", "error");
    }
    lock(true);
    pub.state = "starting";
    setStatus("Opening the " + ui.source.selectedOptions[0].textContent.toLowerCase() + "…");
    try {
      if (!media) await preview();
      setStatus("Connecting to " + url + "…");
      const { fps } = size();
      session = await whip.publish(url, media, {
        token: ui.token.value.trim(),
        videoBitrate: Number(ui.bitrate.value) * 1000,
        audioBitrate: 64000,
        frameRate: fps,
        codec: ui.codec.value,
        onState: onState,
      });
      pub.whipUrl = url;
      pub.location = session.location;
      pub.state = "connecting";
      lastStats = null;
      statsTimer = setInterval(showStats, 1000);
      playerLinks();
    } catch (e) {
      pub.state = "failed";
      lock(false);
      release();
      setStatus("Could not go live: " + e.message + ".", "error");
    }
  }

  function onState(s) {
    pub.connection = s;
    if (s === "connected") {
      setStatus("Connected: sending to " + pub.whipUrl + ".", "ok");
    } else if (s === "disconnected") {
      setStatus("The connection is interrupted; waiting for it to come back…", "warn");
    } else if (s === "failed") {
      stop("the connection to the server failed (a firewall on UDP? rtmpd --webrtc-port is UDP and TCP)", true);
    }
  }

  async function showStats() {
    if (!session) return;
    const s = await whip.stats(session.pc, lastStats).catch(() => null);
    if (!s) return;
    const flowing = lastStats && s.framesEncoded > (lastStats.framesEncoded || 0) || (ui.source.value === "mic" && s.bytes > (lastStats ? lastStats.bytes : 0));
    lastStats = s;
    Object.assign(pub, { framesEncoded: s.framesEncoded || 0, codec: s.codec, audioCodec: s.audioCodec, width: s.width, height: s.height, kbps: s.kbps });
    const live = !!session && session.pc.connectionState === "connected" && flowing;
    $("live").classList.toggle("hidden", !live);
    if (live && pub.state !== "live") {
      pub.state = "live";
      setStatus("Live: " + names().app + "/" + names().stream + ". Share the links on the right.", "ok");
    }
    R.facts($("facts"), [
      ["state", session ? session.pc.connectionState : "stopped"],
      ["video", s.codec ? `${s.codec} ${s.width || "?"}×${s.height || "?"} at ${s.fps || 0} fps` : "none"],
      ["audio", s.audioCodec || "none"],
      ["sending", s.kbps !== undefined ? Math.round(s.kbps) + " kbps" : "…"],
      ["keyframes", s.keyFrames !== undefined ? `${s.keyFrames} (the server asked for ${s.pli || 0})` : "…"],
      ["resent", s.nack !== undefined ? `${s.nack} NACKs answered` : "…"],
    ]);
  }

  async function stop(why, failed) {
    clearInterval(statsTimer);
    statsTimer = null;
    if (session) await showStats(); // the final counts, not the last second's
    const s = session;
    session = null;
    if (s) await s.stop();
    release();
    lock(false);
    $("live").classList.add("hidden");
    pub.state = failed ? "failed" : "stopped";
    setStatus(failed ? "Stopped: " + why + "." : "Stopped" + (why ? " (" + why + ")" : "") + ". Go live again when ready.", failed ? "error" : "");
  }

  // Leaving the page ends the publish at once (the server would otherwise wait for its timeout).
  addEventListener("pagehide", () => {
    if (session && session.location) {
      const headers = ui.token.value.trim() ? { Authorization: "Bearer " + ui.token.value.trim() } : {};
      fetch(session.location, { method: "DELETE", headers, keepalive: true }).catch(() => {});
    }
  });

  $("start").onclick = start;
  $("stop").onclick = () => stop();
  $("try").onclick = () => preview().then(() => setStatus("Previewing: not live yet.")).catch(e => setStatus("Cannot open the source: " + e.message + ".", "error"));
  for (const k of ["app", "stream"]) ui[k].addEventListener("input", playerLinks);
  ui.source.addEventListener("change", () => { if (media) $("try").click(); });

  async function init() {
    if (!window.isSecureContext) {
      setStatus("This page is not secure (plain http:// to another machine), so the browser will not give it the camera, the microphone or the screen.", "error");
    } else {
      setStatus("Choose a source, then Go live.");
    }
    try {
      apiBase = await R.api();
    } catch (e) {
      apiBase = null; // an API behind a token: WHIP is still on this page's own origin
    }
    if (!window.isSecureContext && R.state.httpsPort) {
      const u = new URL(location.href);
      u.protocol = "https:";
      u.port = String(R.state.httpsPort);
      R.notice("Open this page over HTTPS instead: " + u.href + " (accept the certificate warning once; rtmpd prints its fingerprint at start).");
    }
    playerLinks();
    if (R.params.get("autostart") === "1") start();
  }
  init();
})();
