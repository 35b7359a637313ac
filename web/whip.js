// whip.js: a small WHIP client (RFC 9725) for publish.html: one RTCPeerConnection that only sends, its
// offer POSTed as application/sdp to /{app}/{stream}/whip (201 Created, the answer, and a Location that
// DELETE ends), H.264 put first with setCodecPreferences so every rtmpd output (RTMP, FLV, HLS,
// recordings, WebRTC viewers) can carry the video as it comes. No trickle ICE: rtmpd is ICE-lite and
// names its candidates in the answer, so the offer goes out once its own candidates are gathered (or
// after a short wait). No library, no build step.
"use strict";

const whip = (() => {
  // H.264 first: packetization-mode=1 (FU-A, what every depacketizer expects) and Constrained Baseline
  // (no B-frames) ahead of the other profiles; then whatever else the browser has, in its own order.
  function preferH264(codecs) {
    const score = c => {
      if (!/^video\/h264$/i.test(c.mimeType)) return 0;
      const f = c.sdpFmtpLine || "";
      return 1 + (/packetization-mode=1/.test(f) ? 2 : 0) + (/profile-level-id=42e0/i.test(f) ? 1 : 0);
    };
    return codecs.map((c, i) => [c, i]).sort((a, b) => score(b[0]) - score(a[0]) || a[1] - b[1]).map(([c]) => c);
  }

  // AV1 first (profile 0, what OBS and the browsers send), then H.264 as above for a server that
  // takes no AV1; the rest in the browser's order.
  function preferAv1(codecs) {
    const h264 = preferH264(codecs);
    const av1 = h264.filter(c => /^video\/av1$/i.test(c.mimeType));
    return av1.concat(h264.filter(c => !/^video\/av1$/i.test(c.mimeType)));
  }

  function gathered(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise(resolve => {
      const t = setTimeout(resolve, ms);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
      });
    });
  }

  function headers(token, extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  // What the server said, as one line for the page.
  async function refusal(r) {
    const text = (await r.text().catch(() => "")).trim().slice(0, 300);
    const why = {
      401: "the server wants a publish token (fill in the token field)",
      403: "the publish token was refused",
      404: "this server has no WHIP endpoint (WebRTC is off: rtmpd --webrtc-port)",
      405: "this server or port takes no WHIP publish (an older rtmpd, or the web port: use the HTTP or HTTPS port)",
      409: "someone is already publishing this stream",
      429: "too many publishers",
    }[r.status];
    return `HTTP ${r.status}` + (why ? `: ${why}` : "") + (text ? ` (${text})` : "");
  }

  // Publishes `stream` (a MediaStream) to `url`. opts: { token, videoBitrate (bps), audioBitrate (bps),
  // frameRate, codec ("h264", the default, or "av1"), onState(state) }. Resolves to { pc, location, stop() } once the server answered; the
  // connection then comes up on its own (opts.onState follows it).
  async function publish(url, stream, opts) {
    const o = opts || {};
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    if (o.onState) pc.addEventListener("connectionstatechange", () => o.onState(pc.connectionState));
    for (const track of stream.getTracks()) {
      const enc = {};
      if (track.kind === "video" && o.videoBitrate) enc.maxBitrate = o.videoBitrate;
      if (track.kind === "video" && o.frameRate) enc.maxFramerate = o.frameRate;
      if (track.kind === "audio" && o.audioBitrate) enc.maxBitrate = o.audioBitrate;
      const tr = pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings: [enc] });
      if (track.kind === "video" && tr.setCodecPreferences && window.RTCRtpSender && RTCRtpSender.getCapabilities) {
        const caps = RTCRtpSender.getCapabilities("video");
        if (caps) tr.setCodecPreferences(o.codec === "av1" ? preferAv1(caps.codecs) : preferH264(caps.codecs));
      }
    }
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 1500);
      const r = await fetch(url, {
        method: "POST",
        headers: headers(o.token, { "Content-Type": "application/sdp" }),
        body: pc.localDescription.sdp,
      });
      if (r.status !== 201) throw new Error(await refusal(r));
      const loc = r.headers.get("Location");
      const location = loc ? new URL(loc, url).href : null;
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      let stopped = false;
      return {
        pc,
        location,
        async stop() {
          if (stopped) return;
          stopped = true;
          // DELETE first: closing the connection first would end the session from the server's side
          // (DTLS close), and the DELETE would find nothing. A server that does not answer within 2 s
          // still ends a silent session on its own.
          if (location) {
            const ctl = new AbortController();
            const t = setTimeout(() => ctl.abort(), 2000);
            await fetch(location, { method: "DELETE", headers: headers(o.token), signal: ctl.signal }).catch(() => {});
            clearTimeout(t);
          }
          pc.close();
        },
      };
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  // The sending side's numbers from getStats: codec, size, frame rate, bitrate since the last call.
  async function stats(pc, last) {
    const out = { at: performance.now(), bytes: 0 };
    const report = await pc.getStats();
    report.forEach(s => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.bytes += s.bytesSent || 0;
        out.width = s.frameWidth;
        out.height = s.frameHeight;
        out.fps = s.framesPerSecond;
        out.framesEncoded = s.framesEncoded;
        out.keyFrames = s.keyFramesEncoded;
        out.pli = s.pliCount;
        out.nack = s.nackCount;
        const c = s.codecId && report.get(s.codecId);
        if (c) out.codec = c.mimeType.replace(/^video\//, "");
      } else if (s.type === "outbound-rtp" && s.kind === "audio") {
        out.bytes += s.bytesSent || 0;
        const c = s.codecId && report.get(s.codecId);
        if (c) out.audioCodec = c.mimeType.replace(/^audio\//, "");
      }
    });
    if (last) out.kbps = Math.max(0, (out.bytes - last.bytes) * 8 / (out.at - last.at));
    return out;
  }

  return { publish, stats, preferH264, preferAv1 };
})();
