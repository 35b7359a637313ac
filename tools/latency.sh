#!/usr/bin/env bash
# Glass-to-glass latency of WebRTC, HTTP-FLV and LL-HLS in headless Chromium, in the same run (`make latency`).
# FFmpeg publishes a lavfi picture with the wall-clock time (ms mod 2^24) at which each frame was made drawn
# into it as 24 blocks (web/measure.js reads them back on every presented frame), encoded as x264
# -tune zerolatency, 25 fps, a keyframe a second; rtmpd (--hls-low-latency) serves it; tools/latency.mjs
# opens the three players at once and prints each one's median delay from "frame made" to "frame shown".
# Env: SECS [20] measured after WARMUP [8] s; RTMPD_BIN (default target/debug/rtmpd, built when unset);
# CHROMIUM [/usr/bin/chromium]; KBPS [800] the video bitrate.
# A missing node, chromium or ffmpeg prints "skipped: ..." and exits 0, unless RTMPD_REQUIRE_TOOLS=1.
set -u
cd "$(dirname "$0")/.." || exit 1

skip() {
    if [ "${RTMPD_REQUIRE_TOOLS:-0}" = 1 ]; then
        echo "latency: $1 (RTMPD_REQUIRE_TOOLS=1)" >&2
        exit 1
    fi
    echo "skipped: latency: $1"
    exit 0
}
command -v node >/dev/null 2>&1 || skip "node not found"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "chromium not found"
command -v ffmpeg >/dev/null 2>&1 || skip "ffmpeg not found"
if ! [ tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then
    command -v npm >/dev/null 2>&1 || skip "npm not found (needed for playwright-core)"
    (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
        skip "npm ci failed in tests/browser"
fi
bash tools/vendor.sh || exit 1
if [ -z "${RTMPD_BIN:-}" ]; then
    cargo build || exit 1
fi
BIN=${RTMPD_BIN:-target/debug/rtmpd}

work=$(mktemp -d)
rtmpd_pid=
ffmpeg_pid=
cleanup() {
    [ -n "$ffmpeg_pid" ] && kill "$ffmpeg_pid" 2>/dev/null
    [ -n "$rtmpd_pid" ] && kill "$rtmpd_pid" 2>/dev/null
    [ -n "$ffmpeg_pid" ] && wait "$ffmpeg_pid" 2>/dev/null
    [ -n "$rtmpd_pid" ] && wait "$rtmpd_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$BIN" --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --no-web \
    --web-dir web --data-dir "$work" --hls-low-latency >"$work/rtmpd.log" 2>&1 &
rtmpd_pid=$!
for _ in $(seq 50); do
    grep -q "HTTP listening" "$work/rtmpd.log" && break
    sleep 0.2
done
port() { sed -n "s/.*$1 listening on [^ ]*:\([0-9]*\).*/\1/p" "$work/rtmpd.log" | head -1; }
rtmp=$(port RTMP)
http=$(port HTTP)
[ -n "$rtmp" ] && [ -n "$http" ] || { echo "latency: rtmpd did not start:" >&2; cat "$work/rtmpd.log" >&2; exit 1; }

# The stamp: pts set to the wall clock in ms (RTCTIME) while a frame is made, bit i of it drawn as a white
# block, then the pts made regular again for the encoder.
filter="color=c=black:s=640x360:r=25,settb=1/1000,setpts=RTCTIME/1000"
for i in $(seq 0 23); do
    filter="$filter,drawbox=x=$(((i % 12) * 40)):y=$(((i / 12) * 40)):w=40:h=40:color=white:t=fill"
    filter="$filter:enable='mod(floor(t*1000/$((1 << i))),2)'"
done
filter="$filter,setpts=N/(25*TB)"
ffmpeg -hide_banner -loglevel error -re -probesize 32 -analyzeduration 0 -f lavfi -i "$filter" \
    -c:v libx264 -preset veryfast -tune zerolatency -b:v "${KBPS:-800}k" -g 25 -keyint_min 25 \
    -pix_fmt yuv420p -f flv "rtmp://127.0.0.1:$rtmp/live/latency" >"$work/ffmpeg.log" 2>&1 &
ffmpeg_pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$http/api/streams" | grep -q '"stream":"latency"' && break
    sleep 0.2
done
echo "rtmpd $(sed -n 's/.*\(WebRTC listening.*\)/\1/p' "$work/rtmpd.log"); FFmpeg publishing live/latency"
node tools/latency.mjs "http://127.0.0.1:$http" live/latency "${SECS:-20}" "${WARMUP:-8}"
rc=$?
if [ $rc -ne 0 ]; then
    tail -20 "$work/rtmpd.log" >&2
    cat "$work/ffmpeg.log" >&2
fi
exit $rc
