#!/usr/bin/env bash
# Camera-to-viewer latency (issue 26): browser WHIP and FFmpeg RTMP in, HTTP-FLV (index.html) and WHEP
# players out, all measured in headless Chromium from a clock drawn into the video (tools/publish-latency.mjs).
# Installs playwright-core (tests/browser) when missing; builds the release binary unless RTMPD_BIN is set.
# Env: SECS (measured seconds, default 20), SOURCES (whip,rtmp), CHROMIUM, RTMPD_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "bench-publish-latency: node not found" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "bench-publish-latency: chromium not found" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "bench-publish-latency: ffmpeg not found" >&2; exit 1; }
if ! [ tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then
    (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
if [ -z "${RTMPD_BIN:-}" ]; then
    cargo build --release --quiet
    export RTMPD_BIN=target/release/rtmpd
fi
exec node tools/publish-latency.mjs
