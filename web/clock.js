// clock.js: a test pattern that carries the time it was drawn, for measuring latency end to end. `draw`
// paints the wall clock (Date.now()) as text for people and as 32 black/white blocks (milliseconds mod
// 2^32, two rows of 16 across the top sixth) that survive video compression; `read` takes the blocks back
// from a decoded frame drawn into a canvas. publish.html's "Test pattern with clock" source draws it;
// tools/publish-latency.mjs reads it in each player. Both ends share one machine's clock.
"use strict";

const clockPattern = (() => {
  const BITS = 32, COLS = 16;

  function blocks(w, h) {
    return { bw: w / COLS, bh: h / 12 };
  }

  function draw(g, w, h, now) {
    const t = now === undefined ? Date.now() : now;
    g.fillStyle = "#1d2430";
    g.fillRect(0, 0, w, h);
    const { bw, bh } = blocks(w, h);
    const v = t % 4294967296;
    for (let i = 0; i < BITS; i++) {
      const bit = Math.floor(v / 2 ** i) % 2;
      g.fillStyle = bit ? "#fff" : "#000";
      g.fillRect((i % COLS) * bw, Math.floor(i / COLS) * bh, bw, bh);
    }
    // A bar that sweeps once a second: motion, so the encoder has something to do.
    g.fillStyle = "#1f6feb";
    g.fillRect(((t % 1000) / 1000) * w, h * 0.85, w / 20, h * 0.1);
    const d = new Date(t);
    const pad = (n, k) => String(n).padStart(k, "0");
    g.fillStyle = "#fff";
    g.font = `bold ${Math.round(h / 7)}px ui-monospace, monospace`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(`${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`, w / 2, h * 0.55);
  }

  // The time drawn into the frame now in `g` (w x h), or null when the blocks are not clean black and white
  // (no frame yet, or not this pattern). Each block is sampled over its middle half.
  function read(g, w, h) {
    const { bw, bh } = blocks(w, h);
    const img = g.getImageData(0, 0, w, Math.ceil(bh * 2)).data;
    let v = 0;
    for (let i = 0; i < BITS; i++) {
      const x0 = Math.floor((i % COLS) * bw + bw / 4), y0 = Math.floor(Math.floor(i / COLS) * bh + bh / 4);
      let sum = 0, n = 0;
      for (let y = y0; y < y0 + bh / 2; y += 2) for (let x = x0; x < x0 + bw / 2; x += 2) {
        const p = (y * w + x) * 4;
        sum += (img[p] + img[p + 1] + img[p + 2]) / 3;
        n++;
      }
      const luma = sum / n;
      if (luma > 90 && luma < 165) return null; // neither black nor white
      if (luma >= 165) v += 2 ** i;
    }
    return v;
  }

  // Milliseconds from the time `code` was drawn to `now` (Date.now() mod 2^32 arithmetic).
  function age(code, now) {
    const n = (now === undefined ? Date.now() : now) % 4294967296;
    return (n - code + 4294967296) % 4294967296;
  }

  // A MediaStream of the pattern (w x h at fps), with a quiet 440 Hz tone as its audio (so the stream has
  // Opus like a camera with a microphone), and a stop() that ends both.
  function stream(w, h, fps, withAudio) {
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const g = canvas.getContext("2d");
    draw(g, w, h);
    const s = canvas.captureStream(fps);
    const timer = setInterval(() => draw(g, w, h), 1000 / fps);
    let audio = null;
    if (withAudio && window.AudioContext) {
      audio = new AudioContext();
      const osc = audio.createOscillator(), gain = audio.createGain(), dest = audio.createMediaStreamDestination();
      osc.frequency.value = 440;
      gain.gain.value = 0.05;
      osc.connect(gain).connect(dest);
      osc.start();
      audio.resume().catch(() => {});
      for (const t of dest.stream.getAudioTracks()) s.addTrack(t);
    }
    s.stopPattern = () => {
      clearInterval(timer);
      for (const t of s.getTracks()) t.stop();
      if (audio) audio.close().catch(() => {});
    };
    return s;
  }

  return { draw, read, age, stream };
})();
