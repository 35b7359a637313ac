#!/usr/bin/env bash
# Headless Chromium plays an H.264 FLV over WebRTC from tools/whep-demo.rs (src/webrtc driven by a
# plain socket loop on 127.0.0.1): prints the page's getStats lines and the session's events and
# stats, and fails unless Chromium decoded video. The default file is 10 s of High-profile H.264
# without B-frames made by ffmpeg (browsers' WebRTC decoders do not reorder: of a stream with
# B-frames, like tests/data/fixture.flv, src/webrtc/media.rs sends the other pictures only).
# Usage: tools/whep-browser-check.sh [FILE.flv]. Skips (exit 0, "skipped: ...") without chromium
# or ffmpeg unless RTMPD_REQUIRE_TOOLS is set.
set -euo pipefail
cd "$(dirname "$0")/.."
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
    [ -n "${RTMPD_REQUIRE_TOOLS:-}" ] && { echo "whep-browser-check: chromium not found" >&2; exit 1; }
    echo "skipped: whep-browser-check: chromium not found"; exit 0
fi
SECS=${SECS:-15}
HTTP_PORT=${HTTP_PORT:-18189}
UDP_PORT=${UDP_PORT:-18190}
cargo build --quiet --example whep-demo
work=$(mktemp -d)
FILE=${1:-}
if [ -z "$FILE" ]; then
    if ! command -v ffmpeg >/dev/null; then
        [ -n "${RTMPD_REQUIRE_TOOLS:-}" ] && { echo "whep-browser-check: ffmpeg not found" >&2; exit 1; }
        echo "skipped: whep-browser-check: ffmpeg not found"; exit 0
    fi
    FILE="$work/nob.flv"
    ffmpeg -v error -f lavfi -i testsrc=size=320x240:rate=25 -t 10 -c:v libx264 -profile:v high \
        -bf 0 -g 50 -pix_fmt yuv420p -f flv "$FILE"
fi
demo_pid=
chrome_pid=
cleanup() {
    [ -n "$chrome_pid" ] && kill "$chrome_pid" 2>/dev/null || true
    [ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
target/debug/examples/whep-demo "$FILE" "$HTTP_PORT" "$UDP_PORT" "$SECS" >"$work/demo.log" 2>&1 &
demo_pid=$!
sleep 1
"$CHROMIUM" --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$work/profile" \
    --autoplay-policy=no-user-gesture-required --enable-logging=stderr --v=0 \
    "http://127.0.0.1:$HTTP_PORT/" >"$work/chrome.log" 2>&1 &
chrome_pid=$!
wait "$demo_pid" || true
demo_pid=
kill "$chrome_pid" 2>/dev/null || true
wait "$chrome_pid" 2>/dev/null || true
chrome_pid=
grep -o 'WHEP-[A-Z]* [^"]*' "$work/chrome.log" || true
cat "$work/demo.log"
last=$(grep -o 'WHEP-STATS [^"]*' "$work/chrome.log" | tail -1)
decoded=$(sed -n 's/.*framesDecoded=\([0-9]*\).*/\1/p' <<<"$last")
if [ -z "$decoded" ] || [ "$decoded" -lt 25 ]; then
    echo "whep-browser-check: FAILED: Chromium decoded ${decoded:-no} frames" >&2
    exit 1
fi
echo "whep-browser-check: ok, Chromium decoded $decoded frames"
