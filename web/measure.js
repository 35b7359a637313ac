// measure.js: glass-to-glass latency, on a page opened with ?measure=1 and a stream from tools/latency.sh.
// That publisher draws the wall-clock time at which each frame was made (milliseconds modulo 2^24) into the
// picture as 24 white-or-black blocks of 40x40 pixels (bit i at x = 40*(i%12), y = 40*floor(i/12)). On every
// frame the <video> presents (requestVideoFrameCallback), this reads the blocks back from a canvas and computes
// the delay: the frame's expected display time (wall clock) minus the time drawn in it. Publisher and browser
// must share a clock (the same machine, or NTP-synced ones).
//
// window.rtmpdState.measure: { samples: [ms...] (the last 2000), frames, unreadable, median }.
"use strict";

(() => {
  if (new URLSearchParams(location.search).get("measure") !== "1") return;
  const BITS = 24, MOD = 2 ** BITS, BLOCK = 40, PER_ROW = 12;
  const state = (window.rtmpdState = window.rtmpdState || {});
  const m = (state.measure = { samples: [], frames: 0, unreadable: 0, median: null });
  const canvas = document.createElement("canvas");
  canvas.width = BLOCK * PER_ROW;
  canvas.height = BLOCK * Math.ceil(BITS / PER_ROW);
  const g = canvas.getContext("2d", { willReadFrequently: true });

  // The blocks' value, or null when a block is neither clearly white nor clearly black (a frame mid-change).
  function read() {
    const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let v = 0;
    for (let i = 0; i < BITS; i++) {
      const x = (i % PER_ROW) * BLOCK + BLOCK / 2, y = Math.floor(i / PER_ROW) * BLOCK + BLOCK / 2;
      const o = (y * canvas.width + x) * 4;
      const luma = (px[o] + px[o + 1] + px[o + 2]) / 3;
      if (luma > 40 && luma < 215) return null;
      if (luma >= 215) v += 2 ** i;
    }
    return v;
  }

  function median(a) {
    if (!a.length) return null;
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  function watch(video) {
    const onFrame = (now, meta) => {
      video.requestVideoFrameCallback(onFrame);
      if (!video.videoWidth) return;
      m.frames++;
      // The blocks are at the top left of the source picture: draw that corner at its own scale.
      const sx = video.videoWidth / 640, sy = video.videoHeight / 360;
      g.drawImage(video, 0, 0, canvas.width * sx, canvas.height * sy, 0, 0, canvas.width, canvas.height);
      const stamp = read();
      if (stamp === null) { m.unreadable++; return; }
      const shown = performance.timeOrigin + (meta && meta.expectedDisplayTime ? meta.expectedDisplayTime : now);
      const delay = (((Math.round(shown) % MOD) - stamp) % MOD + MOD) % MOD;
      if (delay > 60000) { m.unreadable++; return; } // not a stamped stream, or clocks apart
      m.samples.push(delay);
      if (m.samples.length > 2000) m.samples.shift();
    };
    video.requestVideoFrameCallback(onFrame);
    setInterval(() => {
      m.median = median(m.samples);
      const box = document.getElementById("measure");
      if (box) box.textContent = m.median === null ? "measuring…" :
        `glass-to-glass ${m.median.toFixed(0)} ms (median of ${m.samples.length} frames)`;
    }, 500);
  }

  const start = () => {
    const video = document.querySelector("video");
    if (!video || !video.requestVideoFrameCallback) return;
    const box = document.createElement("div");
    box.id = "measure";
    box.className = "status";
    box.textContent = "measuring…";
    video.after(box);
    watch(video);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
