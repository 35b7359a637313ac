#!/usr/bin/env python3
"""tools/bench-srt.py (`make bench-srt`): what SRT ingest costs and how it holds up, one run.

1. CPU per GB of ingest: ONE rtmpd (recorders off) takes the same high-bitrate MPEG-TS file by SRT
   (FFmpeg/libsrt) and by RTMP (FFmpeg), alternating, each `-re`; rtmpd's CPU seconds (from
   /proc/PID/stat) per GB on the wire (rtmpd_udp_bytes_in_total{endpoint="srt"} and
   rtmpd_bytes_in_total).
2. Glass-to-glass latency over SRT: this script paces a 2 Mbit/s MPEG-TS file into
   srt-live-transmit (stdin -> SRT, 120 ms latency) itself, noting the wall-clock time at which
   each video PES starts leaving, and reads the stream back over HTTP-FLV, noting when each video
   tag arrives. A tag is matched to its PES by media time (the reader joins within the first GOP,
   so both count from the same first keyframe). Latency = arrival - departure, for frames sent
   after the reader joined: it covers SRT (latency buffer, retransmissions), the TS demuxer (a
   video PES ends when the next begins: one frame interval), the hub and HTTP-FLV. It leaves out
   an encoder and a player's buffer, which are not ours.
3. Loss sweep: a 2 Mbit/s publish (FFmpeg, `latency=120000`, `linger`) through a UDP relay in this
   script that drops the given share of datagrams each way and delays each by LINK_DELAY_MS (the
   kernels here have no netem); "whole" = no MPEG-TS error at the server and the FLV recording
   decodes with every video frame of the source. Loss rises until a trial fails; the largest
   passing rate is reported.

Traffic stays on 127.0.0.1; only processes this script started are stopped. Settings (environment):
RTMPD_BIN (default target/release/rtmpd, built if missing), BENCH_SRT_INGEST_SECS [5],
BENCH_SRT_INGEST_KBPS [16000], BENCH_SRT_LATENCY_SECS [6], BENCH_SRT_TRIAL_SECS [3],
BENCH_SRT_LOSSES [0.5,1,2,3,5,8,12] (percent, tried in order), LINK_DELAY_MS [20],
BENCH_SRT_PARTS [cpu,latency,sweep].
Results: a Markdown table on stdout and in target/bench-srt-results.md.
"""

import json
import os
import random
import re
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTMPD = os.environ.get("RTMPD_BIN", os.path.join(ROOT, "target/release/rtmpd"))
INGEST_SECS = int(os.environ.get("BENCH_SRT_INGEST_SECS", "5"))
INGEST_KBPS = int(os.environ.get("BENCH_SRT_INGEST_KBPS", "16000"))
LATENCY_SECS = int(os.environ.get("BENCH_SRT_LATENCY_SECS", "6"))
TRIAL_SECS = int(os.environ.get("BENCH_SRT_TRIAL_SECS", "3"))
LOSSES = [float(x) for x in os.environ.get("BENCH_SRT_LOSSES", "0.5,1,2,3,5,8,12").split(",")]
LINK_DELAY_MS = int(os.environ.get("LINK_DELAY_MS", "20"))
PARTS = os.environ.get("BENCH_SRT_PARTS", "cpu,latency,sweep").split(",")
MEDIA = os.path.join(ROOT, "target/bench-srt-media")
RESULTS = os.path.join(ROOT, "target/bench-srt-results.md")

started = []  # processes this script started


def log(msg):
    print(f"[bench-srt {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spawn(args, **kw):
    p = subprocess.Popen(args, stdout=kw.pop("stdout", subprocess.DEVNULL),
                         stderr=kw.pop("stderr", subprocess.PIPE), **kw)
    started.append(p)
    return p


def stop_all():
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_source(path, secs, kbps, size):
    if os.path.exists(path):
        return
    log(f"making {path} ({secs} s, {kbps} kbit/s, {size})")
    b = f"{kbps}k"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
                    "-t", str(secs), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60",
                    "-b:v", b, "-minrate", b, "-maxrate", b, "-bufsize", b,
                    "-x264-params", "nal-hrd=cbr", "-c:a", "aac", "-b:a", "96k",
                    "-f", "mpegts", path], check=True)


class Rtmpd:
    def __init__(self, data_dir, extra):
        self.srt_port = free_udp_port()
        self.proc = spawn([RTMPD, "--bind", "127.0.0.1", "--rtmp-port", "0", "--http-port", "0",
                           "--no-web", "--webrtc-port", "0", "--max-per-ip", "0",
                           "--srt-port", str(self.srt_port), "--data-dir", data_dir] + extra,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.rtmp = self.http = None
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 10
        while (self.rtmp is None or self.http is None) and time.time() < deadline:
            time.sleep(0.05)
        if self.rtmp is None or self.http is None:
            raise SystemExit("rtmpd did not start:\n" + "\n".join(self.lines))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = re.search(r"(RTMP|HTTP) listening on 127\.0\.0\.1:(\d+)", line)
            if m and m.group(1) == "RTMP":
                self.rtmp = int(m.group(2))
            elif m:
                self.http = int(m.group(2))

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def wait_log(self, needle, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(needle in l for l in self.lines):
                return True
            time.sleep(0.05)
        return False


def cpu_per_gb(media):
    src = os.path.join(media, f"ingest-{INGEST_KBPS}k-{INGEST_SECS}s.ts")
    make_source(src, INGEST_SECS, INGEST_KBPS, "1920x1080")
    with tempfile.TemporaryDirectory() as d:
        srv = Rtmpd(d, ["--no-flv-record", "--no-hls", "--no-mp4"])
        rows = {"SRT": [0.0, 0.0], "RTMP": [0.0, 0.0]}
        for rep in range(2):
            for proto in ("SRT", "RTMP"):
                name = f"{proto.lower()}{rep}"
                if proto == "SRT":
                    url = f"srt://127.0.0.1:{srv.srt_port}?streamid=publish:live/{name}"
                    fmt, key = "mpegts", 'rtmpd_udp_bytes_in_total{endpoint="srt"}'
                else:
                    url, fmt, key = f"rtmp://127.0.0.1:{srv.rtmp}/live/{name}", "flv", "rtmpd_bytes_in_total"
                b0, c0 = srv.metrics().get(key, 0.0), srv.cpu()
                p = spawn(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-i", src,
                           "-c", "copy", "-f", fmt, url])
                p.wait(timeout=INGEST_SECS + 60)
                time.sleep(0.3)
                b1, c1 = srv.metrics().get(key, 0.0), srv.cpu()
                rows[proto][0] += c1 - c0
                rows[proto][1] += b1 - b0
                log(f"{proto} ingest: {(b1 - b0) / 1e6:.1f} MB, {c1 - c0:.2f} CPU s")
        srv.proc.kill()
    return {k: (cpu / (b / 1e9) if b else float("nan"), b) for k, (cpu, b) in rows.items()}


def ts_video_pes(data):
    """(byte offset of each 188-byte packet that starts a video PES, its DTS in 90 kHz)."""
    out = []
    for off in range(0, len(data) - 187, 188):
        p = data[off:off + 188]
        if p[0] != 0x47 or not p[1] & 0x40:
            continue
        at = 4
        if p[3] & 0x20:
            at = 5 + p[4]
        pes = p[at:]
        if len(pes) < 14 or pes[:3] != b"\x00\x00\x01" or pes[3] != 0xE0:
            continue
        flags, hdr = pes[7], pes[9:]

        def ts(b):
            return ((b[0] >> 1) & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1

        pts = ts(hdr[0:5])
        dts = ts(hdr[5:10]) if flags & 0x40 else pts
        out.append((off, dts))
    return out


def read_flv(port, path, stop_at, arrivals):
    """HTTP-FLV reader: (dts ms, arrival wall time) of each video tag until `stop_at`."""
    while time.time() < stop_at:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            s.close()
            time.sleep(0.05)
            continue
        arrivals.append(("joined", time.time()))
        chunked = b"chunked" in head.lower()
        raw, body = buf, b""
        s.settimeout(0.5)
        pos = 13  # FLV header + first PreviousTagSize
        while time.time() < stop_at:
            if chunked:
                while True:
                    m = re.match(rb"([0-9a-fA-F]+)\r\n", raw)
                    if not m:
                        break
                    n = int(m.group(1), 16)
                    if len(raw) < m.end() + n + 2:
                        break
                    body += raw[m.end():m.end() + n]
                    raw = raw[m.end() + n + 2:]
            else:
                body, raw = body + raw, b""
            now = time.time()
            while len(body) >= pos + 11:
                tag, size = body[pos], int.from_bytes(body[pos + 1:pos + 4], "big")
                if len(body) < pos + 11 + size + 4:
                    break
                ts = int.from_bytes(body[pos + 4:pos + 7], "big") | body[pos + 7] << 24
                if tag == 9 and size > 2 and body[pos + 12] == 1:  # AVC NALUs, not the config
                    arrivals.append((ts, now))
                pos += 11 + size + 4
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            raw += chunk
        s.close()
        return


def glass_to_glass(media):
    src = os.path.join(media, f"latency-2000k-{LATENCY_SECS + 4}s.ts")
    make_source(src, LATENCY_SECS + 4, 2000, "1280x720")
    data = open(src, "rb").read()
    pes = ts_video_pes(data)
    d0 = pes[0][1]
    with tempfile.TemporaryDirectory() as d:
        srv = Rtmpd(d, ["--no-flv-record", "--no-hls", "--no-mp4"])
        slt = spawn(["srt-live-transmit", "-q", "-chunk", "1316", "file://con",
                     f"srt://127.0.0.1:{srv.srt_port}?streamid=publish:live/lat&latency=120"],
                    stdin=subprocess.PIPE)
        time.sleep(0.5)  # the handshake
        arrivals = []
        reader = threading.Thread(target=read_flv, args=(srv.http, "/live/lat.flv",
                                                         time.time() + LATENCY_SECS + 6, arrivals))
        reader.start()
        departures = {}
        by_offset = {off: dts for off, dts in pes}
        t0 = time.time()
        clock = d0
        chunk = 1316
        for off in range(0, len(data), chunk):
            for p in range(off, min(off + chunk, len(data)), 188):
                if p in by_offset:
                    clock = by_offset[p]
            due = t0 + (clock - d0) / 90000.0
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            for p in range(off, min(off + chunk, len(data)), 188):
                if p in by_offset:
                    departures[round((by_offset[p] - d0) / 90)] = time.time()
            try:
                slt.stdin.write(data[off:off + chunk])
                slt.stdin.flush()
            except BrokenPipeError:
                break
            if time.time() - t0 > LATENCY_SECS + 3:
                break
        reader.join()
        slt.stdin.close()
        srv.proc.kill()
    joined = next((t for k, t in arrivals if k == "joined"), None)
    tags = [(k, t) for k, t in arrivals if k != "joined"]
    if not tags or joined is None:
        return None
    first = tags[0][0]
    lat = []
    for ts, t in tags:
        rel = ts - first
        for r in (rel, rel - 1, rel + 1):  # ms rounding on both sides
            sent = departures.get(r)
            if sent is not None and sent > joined + 0.5:
                lat.append((t - sent) * 1000)
                break
    if not lat:
        return None
    lat.sort()
    return statistics.median(lat), lat[int(len(lat) * 0.95) - 1], len(lat)


class Relay(threading.Thread):
    """UDP relay: one caller <-> target, dropping `loss` (0..1) each way, holding `delay` s."""

    def __init__(self, target, loss, delay, seed):
        super().__init__(daemon=True)
        self.outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.outer.bind(("127.0.0.1", 0))
        self.inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inner.bind(("127.0.0.1", 0))
        self.inner.connect(target)
        self.port = self.outer.getsockname()[1]
        self.loss, self.delay, self.rng = loss, delay, random.Random(seed)
        self.stop = False
        self.dropped = self.passed = 0

    def run(self):
        caller, held = None, []
        while not self.stop:
            now = time.time()
            timeout = max(0.0, min([h[0] for h in held], default=now + 0.01) - now)
            r, _, _ = select.select([self.outer, self.inner], [], [], min(timeout, 0.01))
            for s in r:
                data, frm = s.recvfrom(2048)
                back = s is self.inner
                if not back:
                    caller = frm
                if self.rng.random() < self.loss:
                    self.dropped += 1
                else:
                    held.append((time.time() + self.delay, back, data))
            now = time.time()
            due = [h for h in held if h[0] <= now]
            held = [h for h in held if h[0] > now]
            for _, back, data in sorted(due, key=lambda h: h[0]):
                if back and caller:
                    self.outer.sendto(data, caller)
                elif not back:
                    self.inner.send(data)
                self.passed += 1


def frames(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path],
                         capture_output=True, text=True).stdout
    lines = [l.strip().rstrip(",") for l in out.splitlines() if l.strip()]
    return int(lines[-1]) if lines and lines[-1].isdigit() else 0


def loss_sweep(media):
    src = os.path.join(media, f"sweep-2000k-{TRIAL_SECS}s.ts")
    make_source(src, TRIAL_SECS, 2000, "1280x720")
    want = frames(src)
    results = []
    with tempfile.TemporaryDirectory() as d:
        srv = Rtmpd(d, ["--no-hls", "--no-mp4"])
        for i, pct in enumerate(LOSSES):
            relay = Relay(("127.0.0.1", srv.srt_port), pct / 100, LINK_DELAY_MS / 1000, 1000 + i)
            relay.start()
            err0 = srv.metrics().get("rtmpd_srt_ts_errors_total", 0)
            name = f"loss{i}"
            url = (f"srt://127.0.0.1:{relay.port}?streamid=publish:live/{name}"
                   f"&latency=120000&linger=3")
            p = spawn(["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-i", src,
                       "-c", "copy", "-f", "mpegts", url])
            try:
                p.wait(timeout=TRIAL_SECS + 20)
            except subprocess.TimeoutExpired:
                p.kill()
            deadline = time.time() + 10
            while time.time() < deadline and not any(
                    f"FLV recording of live/{name} ->" in l and "finished" in l for l in srv.lines):
                time.sleep(0.1)
            relay.stop = True
            relay.join()
            errs = srv.metrics().get("rtmpd_srt_ts_errors_total", 0) - err0
            fdir = os.path.join(d, "flv", "live", name)
            files = [os.path.join(fdir, f) for f in os.listdir(fdir)] if os.path.isdir(fdir) else []
            got = frames(files[0]) if files else 0
            stats = next((l.split("left (", 1)[1] for l in srv.lines
                          if f"live/{name}: SRT publisher" in l and "left (" in l), "")
            whole = errs == 0 and got == want
            log(f"loss {pct}%: relay dropped {relay.dropped}, TS errors {errs:.0f}, "
                f"FLV {got}/{want} frames: {'whole' if whole else 'NOT whole'} ({stats}")
            results.append((pct, whole, got, want, errs, stats.rstrip(")")))
            if not whole:
                break
        srv.proc.kill()
    return results


def main():
    for tool in ("ffmpeg", "ffprobe", "srt-live-transmit"):
        if not shutil.which(tool):
            raise SystemExit(f"bench-srt needs {tool}")
    if not os.path.exists(RTMPD):
        log("building the release binary")
        subprocess.run(["cargo", "build", "--release", "--bin", "rtmpd"], cwd=ROOT, check=True)
    os.makedirs(MEDIA, exist_ok=True)
    t = time.time()
    try:
        cpu = cpu_per_gb(MEDIA) if "cpu" in PARTS else {}
        g2g = glass_to_glass(MEDIA) if "latency" in PARTS else None
        sweep = loss_sweep(MEDIA) if "sweep" in PARTS else []
    finally:
        stop_all()
    passing = [r[0] for r in sweep if r[1]]
    out = ["# bench-srt", "",
           f"rtmpd: {RTMPD}; {os.cpu_count()} CPUs; took {time.time() - t:.0f} s", "",
           "| ingest | MB on the wire | rtmpd CPU s per GB |", "|---|---|---|"]
    for k, (per_gb, b) in cpu.items():
        out.append(f"| {k} ({INGEST_KBPS} kbit/s, 2 x {INGEST_SECS} s) | {b / 1e6:.0f} | {per_gb:.1f} |")
    out += ["", "| glass-to-glass over SRT (120 ms latency) | ms |", "|---|---|"]
    if g2g:
        out += [f"| median | {g2g[0]:.0f} |", f"| 95th percentile | {g2g[1]:.0f} |",
                f"| frames measured | {g2g[2]} |"]
    else:
        out.append("| (no frames matched) | |")
    out += ["", f"| loss each way (delay {LINK_DELAY_MS} ms each way, 120 ms latency, 2 Mbit/s, "
            f"{TRIAL_SECS} s) | whole | FLV frames | TS errors | publisher's counters |",
            "|---|---|---|---|---|"]
    for pct, whole, got, want, errs, stats in sweep:
        out.append(f"| {pct}% | {'yes' if whole else 'no'} | {got}/{want} | {errs:.0f} | {stats} |")
    out += ["", "Largest loss that arrived whole: "
            + (f"{max(passing)}%" if passing else "none of those tried")]
    text = "\n".join(out) + "\n"
    print(text)
    with open(RESULTS, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
