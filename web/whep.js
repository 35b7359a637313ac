// whep.js: a small WHEP client (WebRTC-HTTP Egress Protocol): one POST of the browser's SDP offer, the answer
// in the 201, DELETE on its Location to end. rtmpd is ICE-lite and lists its candidates in the answer, so the
// offer goes at once (no trickle ICE, no waiting for the browser's own candidates). No library: the browser's
// RTCPeerConnection does the rest.
//
//   const s = await rtmpdWhep.play(url, video, { token, onState });
//   await s.sample();   // { latency, jitterBuffer, decode, rtt, framesDecoded, ... } since the last sample
//   s.close();          // DELETE the session, close the connection
"use strict";

const rtmpdWhep = (() => {
  // The codecs this browser can receive over WebRTC, by rtmpd's names ("H264", "H265", "AV1", ...).
  function receivable(kind) {
    const caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities(kind);
    const names = new Set();
    for (const c of (caps && caps.codecs) || []) {
      const n = c.mimeType.split("/")[1].toUpperCase();
      names.add(n === "HEVC" ? "H265" : n);
    }
    return names;
  }

  async function play(url, video, opts) {
    opts = opts || {};
    if (!window.RTCPeerConnection) throw new Error("this browser has no WebRTC (RTCPeerConnection)");
    const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = e => {
      media.addTrack(e.track);
      if (video.srcObject !== media) video.srcObject = media;
    };
    if (opts.onState) pc.onconnectionstatechange = () => opts.onState(pc.connectionState);
    let location = null;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      const headers = { "Content-Type": "application/sdp" };
      if (opts.token) headers.Authorization = "Bearer " + opts.token;
      const r = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp, cache: "no-store" });
      const body = await r.text();
      if (r.status !== 201) {
        const e = new Error(`WHEP offer refused: HTTP ${r.status}${body ? ": " + body.trim().slice(0, 200).replace(/\.$/, "") : ""}`);
        e.status = r.status;
        throw e;
      }
      if (r.headers.get("Location")) location = new URL(r.headers.get("Location"), url).href;
      await pc.setRemoteDescription({ type: "answer", sdp: body });
    } catch (e) {
      pc.close();
      throw e;
    }

    let last = null; // the previous sample's counters
    // The latency figure, from the browser's own statistics over the interval since the previous sample:
    // one-way network (RTT/2 of the ICE pair) + time in the jitter buffer + decode time per frame. It is how far
    // the picture on screen is behind the newest frame the server sent, not counting the capture and encoder
    // before rtmpd (the same scope as the HTTP-FLV figure, which is media buffered ahead of the play head).
    async function sample() {
      let v = null, a = null, selected = null;
      const byId = {}, pairs = [];
      (await pc.getStats()).forEach(s => {
        byId[s.id] = s;
        if (s.type === "inbound-rtp" && s.kind === "video") v = s;
        if (s.type === "inbound-rtp" && s.kind === "audio") a = s;
        if (s.type === "candidate-pair") pairs.push(s);
        if (s.type === "transport" && s.selectedCandidatePairId) selected = s.selectedCandidatePairId;
      });
      // The pair in use: the transport names it (Chromium); else the nominated one that works (Firefox).
      const pair = byId[selected] || pairs.find(p => p.nominated && p.state === "succeeded") || null;
      if (!v) return null;
      const now = {
        jbDelay: v.jitterBufferDelay || 0, jbCount: v.jitterBufferEmittedCount || 0,
        decodeTime: v.totalDecodeTime || 0, decoded: v.framesDecoded || 0,
      };
      const rtt = pair && typeof pair.currentRoundTripTime === "number" ? pair.currentRoundTripTime : null;
      const out = {
        framesDecoded: v.framesDecoded || 0, framesDropped: v.framesDropped || 0, fps: v.framesPerSecond || 0,
        keyFramesDecoded: v.keyFramesDecoded || 0, bytes: v.bytesReceived || 0, packetsLost: v.packetsLost || 0,
        nacks: v.nackCount || 0, plis: v.pliCount || 0, width: v.frameWidth || 0, height: v.frameHeight || 0,
        codec: v.codecId && byId[v.codecId] ? byId[v.codecId].mimeType : null,
        rtt, jitterBuffer: null, decode: null, latency: null,
        audio: a ? { codec: a.codecId && byId[a.codecId] ? byId[a.codecId].mimeType : null,
          packets: a.packetsReceived || 0, samples: a.totalSamplesReceived || 0 } : null,
      };
      if (last && now.jbCount > last.jbCount) {
        out.jitterBuffer = (now.jbDelay - last.jbDelay) / (now.jbCount - last.jbCount);
        out.decode = now.decoded > last.decoded ? (now.decodeTime - last.decodeTime) / (now.decoded - last.decoded) : 0;
        out.latency = out.jitterBuffer + out.decode + (rtt || 0) / 2;
      }
      last = now;
      return out;
    }

    function close() {
      pc.close();
      if (location) fetch(location, { method: "DELETE", keepalive: true }).catch(() => {});
      location = null;
    }

    return { pc, sample, close, get location() { return location; } };
  }

  return { play, receivable };
})();
