#!/usr/bin/env bash
# tools/bench-webrtc.sh (`make bench-webrtc`): WebRTC (WHEP) viewers of the ~232 kbps stream on one
# core, next to HTTP-FLV viewers of the same stream in the same run. rtmpd is pinned to one core
# (taskset), rtmpd-load to another. For each viewer count (250, 500, 1000) and each protocol:
#
# - the server's CPU share in the steady state (sampled from /proc once every viewer has joined
#   and settled, over a window of BENCH_WINDOW seconds): viewers per core = viewers / share;
# - CPU s per GB of media delivered over the whole run (joins included), as rtmpd-load reports it;
# - the share of viewers that got the full stream (rtmpd-load's rule: no stall, no frame skipped).
#
# The anchor: SRS 8, 1,152 WHEP viewers per vCPU at 61% (its own benchmark, 232 kbps).
# Traffic goes to 127.0.0.1 only; the script kills only the processes it started.
# Settings (environment): BENCH_COUNTS ["250 500 1000"], BENCH_DURATION [34] s per run,
# BENCH_RAMP [50] joins/s, BENCH_WINDOW [8] s, BENCH_SERVER_CORE [0], BENCH_LOAD_CORE [1],
# BENCH_LOAD_THREADS [1], BENCH_PROTOS ["whep http"], BENCH_SKIP_BUILD [0], BENCH_RTMPD_ARGS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

COUNTS=${BENCH_COUNTS:-250 500 1000}
DURATION=${BENCH_DURATION:-34}
RAMP=${BENCH_RAMP:-50}
WINDOW=${BENCH_WINDOW:-8}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
LOAD_CORE=${BENCH_LOAD_CORE:-1}
LOAD_THREADS=${BENCH_LOAD_THREADS:-1}
PROTOS=${BENCH_PROTOS:-whep http}
PAUSE=${BENCH_PAUSE:-3}
WATCHDOG=${BENCH_WATCHDOG:-900}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
FFMPEG9=${RTMPD_FFMPEG9:-$ROOT/tools/ffmpeg9/ffmpeg}

MEDIA=$ROOT/target/bench-media
RESULTS=$ROOT/target/bench-webrtc-results.md
RTMPD=$ROOT/target/release/rtmpd
LOAD=$ROOT/target/release/rtmpd-load

log() { printf '[bench-webrtc %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

TMP=$(mktemp -d /tmp/rtmpd-bench-webrtc.XXXXXX)
PIDS=()
LOAD_PID=
WATCHDOG_PID=
cleanup() {
    local p
    if [ -n "$LOAD_PID" ]; then kill -TERM "$LOAD_PID" 2>/dev/null || true; fi
    if [ -n "$WATCHDOG_PID" ]; then pkill -TERM -P "$WATCHDOG_PID" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
( sleep "$WATCHDOG"; log "watchdog: ${WATCHDOG}s passed, stopping"; kill -TERM $$ ) 2>/dev/null &
WATCHDOG_PID=$!
PIDS+=($WATCHDOG_PID)

command -v curl >/dev/null || die "curl not found"
command -v taskset >/dev/null || die "taskset not found (apt-get install -y util-linux)"
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (one for rtmpd, one for the load generator)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release --bins"
    cargo build --release --bins >&2
fi
[ -x "$RTMPD" ] && [ -x "$LOAD" ] || die "build the release binaries first"

# --- the stream --------------------------------------------------------------------------------
# tools/bench.sh's ~230 kbps stream (426x240p25 H.264 High, 160 kbps CBR video, 64 kbps audio,
# a keyframe every 2 s) with two changes WebRTC needs: Opus instead of AAC (browsers take no
# AAC over WebRTC; Enhanced RTMP carries Opus, FFmpeg 9 writes it) and no B-frames. Without
# FFmpeg 9, AAC: the WebRTC viewers then get the video only (CPU s/GB still compares).
make_media() {
    local out=$1 acodec=$2 ff=$3
    [ -s "$out" ] && return 0
    mkdir -p "$MEDIA"
    log "making $out"
    "$ff" -nostdin -v error -y -f lavfi -i "testsrc2=size=426x240:rate=25" \
        -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -bf 0 \
        -g 50 -keyint_min 50 -sc_threshold 0 \
        -b:v 160k -minrate 160k -maxrate 160k -bufsize 160k -x264-params nal-hrd=cbr \
        -c:a "$acodec" -b:a 64k -ar 48000 -f flv "$out.tmp"
    mv "$out.tmp" "$out"
}
if [ -x "$FFMPEG9" ]; then
    STREAM_FILE=$MEDIA/s232k-opus.flv
    make_media "$STREAM_FILE" libopus "$FFMPEG9"
    PUBLISHER=$FFMPEG9
    AUDIO=Opus
else
    command -v ffmpeg >/dev/null || die "ffmpeg not found"
    log "FFmpeg 9 not found ($FFMPEG9; sh tools/fetch-ffmpeg.sh): AAC audio, WebRTC viewers get the video only"
    STREAM_FILE=$MEDIA/s232k-aac.flv
    make_media "$STREAM_FILE" aac ffmpeg
    PUBLISHER=ffmpeg
    AUDIO=AAC
fi

wait_for_line() { # file regex seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}
jf() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"'; }
ticks() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
metric() { { curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT/metrics" || true; } | awk -v k="$1" '$1 == k && !done { print $2; done = 1 }'; }
# The machine's UDP receive-buffer overflows (the load generator's sockets, when it falls behind).
rcvbuf_errors() { awk '/^Udp:/ { n++; if (n == 2) print $6 }' /proc/net/snmp; }

# --- the server --------------------------------------------------------------------------------
ARGS=(--bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0
    --no-flv-record --no-mp4 --no-hls --no-web --max-per-ip 0 --data-dir "$TMP/data")
read -r -a EXTRA <<<"${BENCH_RTMPD_ARGS:-}"
ARGS+=("${EXTRA[@]}")
mkdir -p "$TMP/data"
log "taskset -c $SERVER_CORE rtmpd ${ARGS[*]}"
taskset -c "$SERVER_CORE" "$RTMPD" "${ARGS[@]}" >"$TMP/rtmpd.log" 2>&1 &
RTMPD_PID=$!
PIDS+=($RTMPD_PID)
line=$(wait_for_line "$TMP/rtmpd.log" 'RTMP listening on' 10) || die "rtmpd did not start: $(tail -5 "$TMP/rtmpd.log")"
RTMP_PORT=$(sed -n 's/.*RTMP listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
line=$(wait_for_line "$TMP/rtmpd.log" 'HTTP listening on' 10) || die "no HTTP listener"
HTTP_PORT=$(sed -n 's/.*HTTP listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
wait_for_line "$TMP/rtmpd.log" 'WebRTC listening on' 10 >/dev/null || die "no WebRTC listener"
log "rtmpd pid $RTMPD_PID on core $SERVER_CORE: RTMP $RTMP_PORT, HTTP $HTTP_PORT"

"$PUBLISHER" -nostdin -v error -re -stream_loop -1 -i "$STREAM_FILE" -c copy -f flv \
    "rtmp://127.0.0.1:$RTMP_PORT/live/s232k" >"$TMP/ffmpeg.log" 2>&1 &
PIDS+=($!)
URL_WHEP=whep://127.0.0.1:$HTTP_PORT/live/s232k
URL_HTTP=http://127.0.0.1:$HTTP_PORT/live/s232k.flv
for i in $(seq 20); do
    if timeout 15 "$LOAD" --url "$URL_WHEP" --viewers 1 --duration 3 --json >"$TMP/probe.json" 2>/dev/null &&
        [ "$(jf "$TMP/probe.json" ttfk_ms_n)" = 1 ]; then
        break
    fi
    [ "$i" = 20 ] && die "the stream never played over WHEP: $(tail -3 "$TMP/ffmpeg.log") $(tail -3 "$TMP/rtmpd.log")"
    sleep 1
done
log "stream is live ($AUDIO audio); idle RSS $(awk '/^VmRSS:/ { print $2 }' "/proc/$RTMPD_PID/status") KiB"

# --- runs --------------------------------------------------------------------------------------
# One run: rtmpd-load in the background; the steady window starts once every viewer has joined
# (count / ramp seconds) plus 3 s, and ends 2 s before the run does.
run() { # proto count
    local proto=$1 n=$2 url
    case $proto in
    whep) url=$URL_WHEP ;;
    http) url=$URL_HTTP ;;
    esac
    local name=$proto-$n out=$TMP/$proto-$n.json
    local cmd=(taskset -c "$LOAD_CORE" "$LOAD" --url "$url" --viewers "$n" --duration "$DURATION"
        --ramp "$RAMP" --server-pid "$RTMPD_PID" --json)
    if [ "$proto" = whep ]; then cmd+=(--threads "$LOAD_THREADS"); fi
    echo "${cmd[*]}" | sed "s|$ROOT/||" >>"$TMP/commands"
    "${cmd[@]}" >"$out" 2>>"$TMP/load.err" &
    LOAD_PID=$!
    local settle
    settle=$(awk -v n="$n" -v r="$RAMP" 'BEGIN { printf "%.1f", n / r + 3 }')
    sleep "$settle"
    local t0 c0 t1 c1 rss b0 b1 e0 e1 counter
    # What the server sent in the window, from its own counters: WebRTC's bytes (SRTP
    # datagrams), or every output's for HTTP-FLV (nothing else plays then).
    counter=rtmpd_bytes_out_total
    [ "$proto" = whep ] && counter=rtmpd_webrtc_bytes_total
    e0=$(rcvbuf_errors)
    b0=$(metric "$counter")
    t0=$(date +%s.%N)
    c0=$(ticks "$RTMPD_PID")
    sleep "$WINDOW"
    c1=$(ticks "$RTMPD_PID")
    t1=$(date +%s.%N)
    b1=$(metric "$counter")
    e1=$(rcvbuf_errors)
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$RTMPD_PID/status")
    wait "$LOAD_PID" || echo '{}' >"$out"
    LOAD_PID=
    local share
    share=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN { printf "%.1f", 100 * (b - a) / hz / (t1 - t0) }')
    local sgb
    sgb=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v x="$b0" -v y="$b1" 'BEGIN { if (y > x) printf "%.1f", (b - a) / hz / ((y - x) / 1e9); else print "n/a" }')
    echo "$name $share $rss $sgb $((e1 - e0))" >>"$TMP/steady"
    log "$name: full $(jf "$out" viewers_full)/$n, steady CPU ${share}% = ${sgb} s/GB sent, UDP receive-buffer drops $((e1 - e0)), run CPU $(jf "$out" server_cpu_s) s = $(jf "$out" server_cpu_s_per_gb) s/GB, $(jf "$out" mbps_total) Mbit/s, RSS ${rss} KiB, loadgen CPU $(jf "$out" loadgen_cpu_s) s"
    sleep "$PAUSE"
}
[ "$((DURATION))" -gt 0 ] || die "BENCH_DURATION must be a whole number of seconds"
for n in $COUNTS; do
    need=$(awk -v n="$n" -v r="$RAMP" -v w="$WINDOW" 'BEGIN { printf "%d", n / r + 3 + w + 2 }')
    [ "$DURATION" -ge "$need" ] || die "BENCH_DURATION $DURATION is too short for $n viewers (at least $need)"
done
for n in $COUNTS; do
    for p in $PROTOS; do run "$p" "$n"; done
done

# --- report ------------------------------------------------------------------------------------
steady() { awk -v k="$1" '$1 == k { print $'"$2"' }' "$TMP/steady"; }
{
    echo "## WebRTC (WHEP) against HTTP-FLV, one core, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); rtmpd $(git rev-parse --short HEAD 2>/dev/null || echo '?') on core $SERVER_CORE, rtmpd-load on core $LOAD_CORE."
    echo "Stream: 426x240p25 H.264 High (no B-frames) 160 kbps CBR + $AUDIO 64 kbps, keyframe every 2 s, looped. Runs of ${DURATION} s, joins at ${RAMP}/s, steady window ${WINDOW} s."
    echo
    echo "| protocol | viewers | full stream | steady CPU % of the core | viewers per core (at 100%) | steady CPU s/GB sent | run CPU s | CPU s/GB received (run) | Mbit/s received (media) | UDP rcvbuf drops | RSS MiB | loadgen CPU s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for n in $COUNTS; do
        for p in $PROTOS; do
            f=$TMP/$p-$n.json
            share=$(steady "$p-$n" 2)
            per=$(awk -v n="$n" -v s="$share" 'BEGIN { if (s > 0) printf "%d", n * 100 / s; else print "n/a" }')
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$p" "$n" "$(jf "$f" viewers_full)" "$share" "$per" \
                "$(steady "$p-$n" 4)" "$(jf "$f" server_cpu_s)" "$(jf "$f" server_cpu_s_per_gb)" "$(jf "$f" mbps_total)" "$(steady "$p-$n" 5)" \
                "$(awk -v k="$(steady "$p-$n" 3)" 'BEGIN { printf "%.1f", k / 1024 }')" "$(jf "$f" loadgen_cpu_s)"
        done
    done
    echo
    echo "Steady CPU: rtmpd's utime+stime over the window once every viewer had joined, as a share of the one core it is pinned to."
    echo "Viewers per core: viewers / steady share (linear; the loop is single-threaded, so it saturates at 100%). SRS 8's anchor: 1,152 WHEP viewers per vCPU at 61%, about 1,890 at 100%."
    echo "Steady CPU s/GB sent: the window's CPU over the bytes the server says it sent in it (rtmpd_webrtc_bytes_total: SRTP datagrams; rtmpd_bytes_out_total for HTTP-FLV): the cost per byte, whatever the viewers lost."
    echo "UDP rcvbuf drops: the machine's UDP receive-buffer overflows in the window (/proc/net/snmp): datagrams the load generator was too slow to take (it shares the machine)."
    echo "CPU s/GB (run): rtmpd's CPU over the whole run (the joins: HTTP, ICE, DTLS handshakes included) per GB of media the viewers got (WebRTC: depacketized frames; HTTP-FLV: FLV bytes)."
    echo
    echo "Commands:"
    echo
    echo '```'
    cat "$TMP/commands"
    echo '```'
    if [ -s "$TMP/load.err" ]; then
        echo
        echo "rtmpd-load errors:"
        echo '```'
        sort "$TMP/load.err" | uniq -c | awk 'NR <= 20'
        echo '```'
    fi
    echo
    echo "Per-run errors (count x reason):"
    for f in "$TMP"/*-*.json; do
        e=$(sed -n 's/.*"errors":{\(.*\)}}.*/\1/p' "$f")
        [ -n "$e" ] && echo "- $(basename "$f" .json): $e"
    done
    true
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
log "saved $RESULTS"
