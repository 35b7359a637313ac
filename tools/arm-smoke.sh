#!/usr/bin/env bash
# The ARM64 Linux smoke run: cross-builds the binary (smoke profile: release without LTO) for aarch64-unknown-linux-gnu (linked by
# Debian's gcc-aarch64-linux-gnu) and runs it under qemu-user on 127.0.0.1 with every port 0: FFmpeg
# publishes, RTMP and HTTP-FLV play, /api/streams answers, Ctrl-C (SIGINT, which qemu passes on) exits 0
# with the HLS playlist ended and stream_full.mp4 decodable. Emulation, not a Raspberry Pi: it proves the
# ARM build links and runs, not how fast. Installs nothing (tools/windows-setup.sh does). Ends with
# "N passed, N failed". Env: RTMPD_ARM=path skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

die() { echo "arm-smoke: $*" >&2; exit 1; }
for t in aarch64-linux-gnu-gcc qemu-aarch64 ffmpeg ffprobe curl; do
    command -v "$t" >/dev/null || die "$t not found (tools/windows-setup.sh installs it)"
done
if [ -z "${RTMPD_ARM:-}" ]; then
    echo "arm-smoke: building rtmpd for aarch64 (profile smoke: release without LTO)"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        cargo build --quiet --profile smoke --target aarch64-unknown-linux-gnu --bin rtmpd
    RTMPD_ARM=target/aarch64-unknown-linux-gnu/smoke/rtmpd
fi
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu

work=$repo/target/arm-smoke
rm -rf "$work"
mkdir -p "$work/data"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@" >"$work/check.out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     | /' "$work/check.out" | tail -20
    fi
}
is_aarch64() { file "$RTMPD_ARM" | tee /dev/stderr | grep -q 'ARM aarch64'; }
version() { qemu-aarch64 "$RTMPD_ARM" --version | grep -q '^rtmpd '; }
probe() {
    local s
    s=$(timeout 30 ffprobe -v error -rw_timeout 10000000 -show_entries stream=codec_name -of csv=p=0 "$1" |
        grep -v '^$' | sort -u | tr '\n' ' ')
    echo "$1: $s"
    [ "$s" = "aac h264 " ]
}
decodes() {
    local err
    err=$(ffmpeg -nostdin -hide_banner -v error -i "$1" -f null - 2>&1) && [ -z "$err" ] || {
        echo "$err"
        return 1
    }
}
api() { curl -s --max-time 10 "$1/api/streams" | tee /dev/stderr | grep -q '"stream":"arm"'; }
ctrl_c() {
    local pid=$1 status=0
    kill -INT "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then echo "still running 10 s after Ctrl-C"; return 1; fi
    wait "$pid" || status=$?
    echo "exit status $status"
    [ "$status" = 0 ]
}

check "the binary is ARM64" is_aarch64
check "--version under qemu-aarch64" version

(cd "$work" && exec qemu-aarch64 "$repo/$RTMPD_ARM" --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --no-web \
    --data-dir data --hls-fragment 1 --mp4-fragment 1 </dev/null 2>"$work/origin.log") &
origin_pid=$!
pids+=("$origin_pid")
for _ in $(seq 1 300); do grep -q 'HTTP listening on' "$work/origin.log" 2>/dev/null && break; sleep 0.1; done
rtmp=$(grep -o 'RTMP listening on [0-9.:]*' "$work/origin.log" | awk '{print $4}') || true
http=http://$(grep -o 'HTTP listening on [0-9.:]*' "$work/origin.log" | awk '{print $4}') || true
[ -n "$rtmp" ] || { cat "$work/origin.log"; die "the origin did not start"; }
echo "arm-smoke: rtmpd (aarch64, pid $origin_pid) on rtmp://$rtmp $http"

ffmpeg -nostdin -hide_banner -v error -re -stream_loop -1 -i tests/data/fixture.flv -c copy -f flv \
    "rtmp://$rtmp/live/arm" >"$work/publish.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s --max-time 2 "$http/api/streams" | grep -q '"arm"' && break; sleep 0.1; done

check "/api/streams lists the stream" api "$http"
check "HTTP-FLV play has H.264 and AAC" probe "$http/live/arm.flv"
check "RTMP play has H.264 and AAC" probe "rtmp://$rtmp/live/arm"
for _ in $(seq 1 200); do
    [ "$(find "$work/data/hls" -name 'segment_*.ts' 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.1
done
check "Ctrl-C exits 0 within 10 s" ctrl_c "$origin_pid"
check "HLS playlist is ended" grep -q EXT-X-ENDLIST "$work/data/hls/live/arm/index.m3u8"
check "merged stream_full.mp4 decodes" decodes "$work/data/mp4/live/arm/output_merge/stream_full.mp4"

echo "arm-smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
