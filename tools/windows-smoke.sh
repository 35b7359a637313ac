#!/usr/bin/env bash
# The Windows smoke suite: builds rtmpd.exe (the smoke profile: release without LTO, x86_64-pc-windows-gnu, linked by mingw-w64), runs it
# under Wine on 127.0.0.1 with every port 0, and drives it with Linux FFmpeg, curl and a small WS client:
# publish, RTMP / HTTP-FLV / WS-FLV play, /api/streams, the home page, path traversal with backslashes
# and drive letters, Ctrl-C (SIGINT, which Wine delivers to the console control handler as CTRL_C_EVENT)
# with every recording finalised and decoded by ffprobe/FFmpeg; an FLV gateway pulling from it (HTTP-FLV,
# WS-FLV, Ctrl-C), and a file gateway over the recordings.
# It installs nothing: .ci/run (or tools/windows-setup.sh) does. Ends with "N passed, N failed".
#
# Env: RTMPD_EXE=path skips the build; KEEP=1 keeps target/windows-smoke/ for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

die() { echo "windows-smoke: $*" >&2; exit 1; }

WINE=${WINE:-}
if [ -z "$WINE" ]; then
    for w in /usr/lib/wine/wine64 "$(command -v wine64 || true)" "$(command -v wine || true)"; do
        if [ -n "$w" ] && [ -x "$w" ]; then WINE=$w; break; fi
    done
fi
[ -n "$WINE" ] || die "wine64 not found (Debian: apt-get install wine64; tools/windows-setup.sh does it)"
for t in x86_64-w64-mingw32-gcc ffmpeg ffprobe curl python3; do
    command -v "$t" >/dev/null || die "$t not found (tools/windows-setup.sh installs it)"
done

if [ -z "${RTMPD_EXE:-}" ]; then
    rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu \
        || die "the Rust target x86_64-pc-windows-gnu is not installed (rustup target add x86_64-pc-windows-gnu)"
    echo "windows-smoke: building rtmpd.exe (profile smoke: release without LTO)"
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
        cargo build --quiet --profile smoke --target x86_64-pc-windows-gnu --bin rtmpd
    RTMPD_EXE=target/x86_64-pc-windows-gnu/smoke/rtmpd.exe
fi

work=$repo/target/windows-smoke
rm -rf "$work"
mkdir -p "$work/data"
cp "$RTMPD_EXE" "$work/rtmpd.exe"
# Wine 8 has no bcryptprimitives.dll, whose ProcessPrng Rust's std imports; the DLL next to the .exe wins.
x86_64-w64-mingw32-gcc -shared -O2 -Wall -o "$work/bcryptprimitives.dll" \
    tools/windows-bcryptprimitives.c -ladvapi32

export WINEPREFIX=${WINEPREFIX:-$repo/target/wine-prefix}
export WINEDEBUG=-all
# No Mono or Gecko prompts: a console server needs neither.
export WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    echo "windows-smoke: creating the Wine prefix $WINEPREFIX"
    "$WINE" wineboot -i >/dev/null 2>&1 || true
fi

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" != 1 ] && [ "${passed_all:-0}" = 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

passed=0
failed=0
check() {
    local name=$1
    shift
    echo "== $name" >>"$work/checks.log"
    if "$@" >"$work/check.out" 2>&1; then
        cat "$work/check.out" >>"$work/checks.log"
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        cat "$work/check.out" >>"$work/checks.log"
        sed 's/^/     | /' "$work/check.out" | tail -20
    fi
}

# Starts `rtmpd.exe ARGS...` under Wine in $work, logging to $work/$1.log; sets $started_pid.
start_exe() {
    local name=$1
    shift
    (cd "$work" && exec "$WINE" ./rtmpd.exe "$@" </dev/null >"$work/$name.out" 2>"$work/$name.log") &
    started_pid=$!
    pids+=("$started_pid")
}

# The address in a startup line ("HTTP listening on 127.0.0.1:PORT") of $1.log, waiting for it.
listen_addr() {
    local log=$work/$1.log what=$2 i
    for i in $(seq 1 600); do
        if grep -q "$what listening on " "$log" 2>/dev/null; then
            grep -o "$what listening on [0-9.:]*" "$log" | head -1 | awk '{print $4}'
            return 0
        fi
        kill -0 "$started_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$log" >&2
    die "$1 did not print '$what listening on'"
}

# SIGINT to the Wine process: Wine raises CTRL_C_EVENT in it, as Ctrl-C in a Windows console does.
# Waits up to 10 s; prints the exit status.
ctrl_c() {
    local pid=$1 i
    kill -INT "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "still running 10 s after Ctrl-C"
        return 1
    fi
    local status=0
    wait "$pid" || status=$?
    echo "exit status $status"
    [ "$status" = 0 ]
}

http_status() { curl -s --path-as-is --max-time 10 -o "$work/body" -w '%{http_code}' "$1"; }

# `decodes FILE-OR-URL`: FFmpeg reads every packet and decodes it without an error.
decodes() {
    local err
    err=$(ffmpeg -nostdin -hide_banner -v error -rw_timeout 10000000 -i "$1" -f null - 2>&1) || {
        echo "$err"
        return 1
    }
    if [ -n "$err" ]; then
        echo "$err"
        return 1
    fi
}

# `has_streams URL-OR-FILE`: ffprobe finds H.264 video and AAC audio.
has_streams() {
    local s
    s=$(ffprobe -v error -rw_timeout 10000000 -show_entries stream=codec_name -of csv=p=0 "$1" | grep -v "^$" | sort -u | tr '\n' ' ')
    echo "streams: $s"
    [ "$s" = "aac h264 " ]
}

# `plays URL`: two seconds of the live stream decode.
plays() {
    local err
    err=$(timeout 30 ffmpeg -nostdin -hide_banner -v error -rw_timeout 10000000 -i "$1" -t 2 -f null - 2>&1) || {
        echo "$err"
        return 1
    }
}

home_page() {
    local code
    code=$(http_status "$1/")
    echo "status $code"
    [ "$code" = 200 ] && grep -qi '<html' "$work/body"
}

api_streams() {
    # The stream is listed from the publish command on, its codecs only once the sequence headers came
    # (under Wine that can take seconds), so poll for up to 10 s, then judge and print the last answer.
    local i
    for i in $(seq 1 50); do
        curl -s --max-time 10 "$1/api/streams" >"$work/streams.json"
        [ "$(grep -o '"codec"' "$work/streams.json" | wc -l)" -ge 2 ] && break
        sleep 0.2
    done
    python3 - "$work/streams.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
s = [x for x in doc["streams"] if (x["app"], x["stream"]) == ("live", "smoke")]
print(s)
assert s and s[0]["live"] and s[0]["video"]["codec"] == "H264" and s[0]["audio"]["codec"] == "AAC"
EOF
}

http_flv_headers() {
    curl -s --max-time 3 -D "$work/headers" -o /dev/null "$1/live/smoke.flv" || true
    cat "$work/headers"
    grep -qi '^content-type: video/x-flv' "$work/headers" && grep -q '^HTTP/1.1 200' "$work/headers"
}

unknown_stream_404() {
    local code
    code=$(http_status "$1/live/nosuchstream.flv")
    echo "status $code"
    [ "$code" = 404 ]
}

ws_flv() {
    python3 tools/wsflv.py 127.0.0.1 "${1##*:}" /live/smoke.flv 3 "$work/ws.flv" && has_streams "$work/ws.flv"
}

# Every spelling that tries to leave the root with backslashes, drive letters (Wine maps Z: to /) or
# Windows device and stream names gets 4xx, and none returns the marker file one folder above the root.
# Backslash and drive-letter forms must be 403 exactly, as on Linux.
traversal() {
    local base=$1 rootname=$2 code p bad=0
    local winabs
    winabs=$(printf '%s' "$work/secret.txt" | sed 's|/|%5c|g')
    local must403=(
        '/..\secret.txt' "/..%5csecret.txt" "/%5c..%5csecret.txt" "/$rootname/..%5c..%5csecret.txt"
        "/C:/windows/win.ini" "/c:%5cwindows%5cwin.ini" "/Z:secret.txt" "/x/Z:secret.txt"
        "/flv/Z:..%5csecret.txt" "/Z:$winabs" "/z:%2f..%2fsecret.txt" "/%5c%5c127.0.0.1%5cc\$%5cwindows"
        "/index.html::\$DATA" "/flv/C:" '/\\?\Z:\etc\passwd'
    )
    local any4xx=(
        "/../secret.txt" "/%2e%2e/secret.txt" "/..%2fsecret.txt" "/%2e%2e%5csecret.txt" "/NUL" "/CON"
        "/COM1" "/flv/AUX.flv" "/secret.txt." "/..../secret.txt" "/...%5csecret.txt"
    )
    for p in "${must403[@]}"; do
        code=$(http_status "$base$p")
        echo "$code $p"
        if [ "$code" != 403 ] || grep -q rtmpd-smoke-secret "$work/body"; then bad=1; fi
    done
    for p in "${any4xx[@]}"; do
        code=$(http_status "$base$p")
        echo "$code $p"
        case $code in 400 | 403 | 404) ;; *) bad=1 ;; esac
        if grep -q rtmpd-smoke-secret "$work/body"; then bad=1; fi
    done
    [ "$bad" = 0 ]
}

echo 'rtmpd-smoke-secret: must never be served' >"$work/secret.txt"

# --- the origin -----------------------------------------------------------------------------------------
start_exe origin --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --web-port 0 --data-dir data \
    --hls-fragment 1 --mp4-fragment 1
origin_pid=$started_pid
rtmp=$(listen_addr origin RTMP)
http=http://$(listen_addr origin HTTP)
web=http://$(listen_addr origin Web)
echo "windows-smoke: rtmpd.exe (pid $origin_pid) on rtmp://$rtmp $http $web"

ffmpeg -nostdin -hide_banner -v error -re -stream_loop -1 -i tests/data/fixture.flv -c copy -f flv \
    "rtmp://$rtmp/live/smoke" >"$work/publish.log" 2>&1 &
publisher=$!
pids+=("$publisher")
for _ in $(seq 1 100); do
    curl -s --max-time 2 "$http/api/streams" | grep -q '"smoke"' && break
    sleep 0.1
done

check "home page on the HTTP port" home_page "$http"
check "home page on the web port" home_page "$web"
check "/api/streams lists the published stream" api_streams "$http"
check "RTMP play decodes" plays "rtmp://$rtmp/live/smoke"
check "RTMP play has H.264 and AAC" has_streams "rtmp://$rtmp/live/smoke"
check "HTTP-FLV answers 200 video/x-flv" http_flv_headers "$http"
check "HTTP-FLV play decodes" plays "$http/live/smoke.flv"
check "WS-FLV gives FLV with H.264 and AAC" ws_flv "$http"
check "an unknown stream is 404" unknown_stream_404 "$http"
check "traversal refused on the HTTP port" traversal "$http" data
check "traversal refused on the web port" traversal "$web" data

# --- the FLV gateway, pulling from the origin -------------------------------------------------------
start_exe flvgw flv-gateway 0 "$http" --bind 127.0.0.1
flvgw_pid=$started_pid
flvgw=http://$(listen_addr flvgw HTTP)
echo "windows-smoke: flv-gateway (pid $flvgw_pid) on $flvgw"
check "FLV gateway: HTTP-FLV through it has H.264 and AAC" has_streams "$flvgw/live/smoke.flv"
check "FLV gateway: WS-FLV through it" ws_flv "$flvgw"
check "FLV gateway: Ctrl-C exits 0" ctrl_c "$flvgw_pid"

# Ctrl-C while the publisher is still live: every recording must be finalised by the shutdown itself.
for _ in $(seq 1 200); do
    [ "$(find "$work/data/hls" -name 'segment_*.ts' 2>/dev/null | wc -l)" -ge 3 ] && break
    sleep 0.1
done
check "the publisher is still live at Ctrl-C" kill -0 "$publisher"
check "Ctrl-C exits 0 within 10 s" ctrl_c "$origin_pid"
kill "$publisher" 2>/dev/null || true
wait "$publisher" 2>/dev/null || true
check "the log says the recordings were finalised" grep -q "finalising recordings" "$work/origin.log"

rec=$work/data
one() { find "$rec/$1" -name "$2" | sort | head -1; }
flv=$(one flv/live/smoke '*.flv')
check "FLV recording decodes" decodes "$flv"
check "FLV recording has H.264 and AAC" has_streams "$flv"
check "HLS playlist is ended" grep -q EXT-X-ENDLIST "$rec/hls/live/smoke/index.m3u8"
check "HLS recording decodes" decodes "$rec/hls/live/smoke/index.m3u8"
check "fMP4 muxed playlist decodes" decodes "$rec/mp4/live/smoke/output_merge/index.m3u8"
check "fMP4 separate video decodes" decodes "$rec/mp4/live/smoke/output_separate/video.m3u8"
check "fMP4 separate audio decodes" decodes "$rec/mp4/live/smoke/output_separate/audio.m3u8"
check "merged stream_full.mp4 decodes" decodes "$rec/mp4/live/smoke/output_merge/stream_full.mp4"
check "merged stream_full.mp4 has H.264 and AAC" has_streams "$rec/mp4/live/smoke/output_merge/stream_full.mp4"
check "meta.json parses" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' \
    "$rec/mp4/live/smoke/output_merge/meta.json"
# Names Windows accepts: none of <>:"|?* or control characters, no trailing dot or space, no device name.
windows_names() {
    find "$rec" -mindepth 1 -printf '%f\n' | python3 -c '
import re, sys
bad = [n for n in sys.stdin.read().split("\n") if n and (re.search(r"[<>:\"|?*\x00-\x1f\\\\]", n)
       or n[-1] in ". " or re.match(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)", n))]
print(bad or "all names valid on Windows")
sys.exit(1 if bad else 0)'
}
check "every recorded file name is valid on Windows" windows_names

# --- the file gateway over the recordings ---------------------------------------------------------------
start_exe files file-gateway 127.0.0.1 0 data
files_pid=$started_pid
files=http://$(listen_addr files Web)
echo "windows-smoke: file-gateway (pid $files_pid) on $files"
range_206() {
    local code
    code=$(curl -s --max-time 10 -r 0-99 -o "$work/body" -w '%{http_code}' "$files/mp4/live/smoke/output_merge/stream_full.mp4")
    echo "status $code, $(wc -c <"$work/body") bytes"
    [ "$code" = 206 ] && [ "$(wc -c <"$work/body")" = 100 ]
}
check "file gateway: stream_full.mp4 decodes over HTTP" decodes "$files/mp4/live/smoke/output_merge/stream_full.mp4"
check "file gateway: HLS decodes over HTTP" decodes "$files/hls/live/smoke/index.m3u8"
check "file gateway: a Range request is 206" range_206
check "file gateway: traversal refused" traversal "$files" flv
check "file gateway: Ctrl-C exits 0" ctrl_c "$files_pid"

echo "windows-smoke: $passed passed, $failed failed"
if [ "$failed" = 0 ]; then passed_all=1; fi
[ "$failed" = 0 ]
