#!/usr/bin/env bash
# tools/bench-gateway.sh: the FLV gateway's fan-out next to the origin's, in the same run, with the
# same load generator (rtmpd-load) and the same 2 Mbps stream: CPU seconds per GB delivered and
# viewers served, per process. Then a three-level cascade (origin -> gateway -> gateway) with the
# viewers on the leaf. Traffic goes to 127.0.0.1 only; the script kills only what it started.
# Settings: GW_VIEWERS [1000], GW_DURATION [30], GW_REPS [3], BENCH_SKIP_BUILD [0].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VIEWERS=${GW_VIEWERS:-1000}
DURATION=${GW_DURATION:-30}
REPS=${GW_REPS:-3}
MEDIA=$ROOT/target/bench-media
RTMPD=$ROOT/target/release/rtmpd
LOAD=$ROOT/target/release/rtmpd-load
RESULTS=$ROOT/target/bench-gateway.md
log() { printf '[bench-gateway %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

TMP=$(mktemp -d /tmp/rtmpd-bench-gw.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
( sleep 1200; log "watchdog: 1200 s passed, stopping"; kill -TERM $$ ) 2>/dev/null &
PIDS+=($!)

command -v ffmpeg >/dev/null || { log "ffmpeg not found"; exit 1; }
ulimit -n "$(ulimit -Hn)"
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --bins >&2
mkdir -p "$MEDIA"
if ! [ -s "$MEDIA/s2m.flv" ]; then
    log "making $MEDIA/s2m.flv"
    ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 \
        -b:v 1870k -minrate 1870k -maxrate 1870k -bufsize 1870k -x264-params nal-hrd=cbr \
        -c:a aac -b:a 128k -ar 44100 -f flv "$MEDIA/s2m.tmp.flv"
    mv "$MEDIA/s2m.tmp.flv" "$MEDIA/s2m.flv"
fi

# start NAME ARGS...: starts rtmpd, waits for its HTTP line, sets PORT_<NAME> and PID_<NAME>.
start() {
    local name=$1; shift
    # Every viewer comes from 127.0.0.1: no per-address cap.
    "$RTMPD" "$@" --max-per-ip 0 >"$TMP/$name.log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    for _ in $(seq 100); do
        grep -q "HTTP listening on" "$TMP/$name.log" && break
        sleep 0.1
    done
    local port
    port=$(grep -ao "HTTP listening on [0-9.:]*" "$TMP/$name.log" | head -1 | sed 's/.*://')
    [ -n "$port" ] || { log "$name did not start: $(cat "$TMP/$name.log")"; exit 1; }
    eval "PORT_$name=$port PID_$name=$pid"
    if grep -q "RTMP listening on" "$TMP/$name.log"; then
        eval "RTMP_$name=$(grep -ao 'RTMP listening on [0-9.:]*' "$TMP/$name.log" | sed 's/.*://')"
    fi
}

start origin --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --no-web --no-flv-record --no-hls --no-mp4
start gw1 flv-gateway 0 "http://127.0.0.1:$PORT_origin" --bind 127.0.0.1
start gw2 flv-gateway 0 "http://127.0.0.1:$PORT_gw1" --bind 127.0.0.1
ffmpeg -nostdin -v error -re -stream_loop -1 -i "$MEDIA/s2m.flv" -c copy -f flv "rtmp://127.0.0.1:$RTMP_origin/live/s2m" \
    >"$TMP/ffmpeg.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$PORT_origin/live/s2m.flv" 2>/dev/null | grep -q 200 && break
    sleep 0.2
done

# field JSON NAME: a number from rtmpd-load's one-line JSON report.
field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"; }
declare -A CPU FULL MBPS
run() { # label port pid
    local out
    out=$("$LOAD" --url "http://127.0.0.1:$2/live/s2m.flv" --viewers "$VIEWERS" --duration "$DURATION" \
        --server-pid "$3" --json 2>>"$TMP/load.err")
    echo "$1 $out" >>"$TMP/runs.txt"
    CPU[$1]="${CPU[$1]:-} $(field "$out" server_cpu_s_per_gb)"
    FULL[$1]="${FULL[$1]:-} $(field "$out" viewers_full)"
    MBPS[$1]="${MBPS[$1]:-} $(field "$out" mbps_total)"
    sleep 3
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
minimum() { tr ' ' '\n' | grep -v '^$' | sort -g | head -1; }

for r in $(seq "$REPS"); do
    log "repetition $r/$REPS: $VIEWERS HTTP-FLV viewers for ${DURATION}s on the origin, the gateway, the leaf"
    run origin "$PORT_origin" "$PID_origin"
    run gateway "$PORT_gw1" "$PID_gw1"
    run leaf "$PORT_gw2" "$PID_gw2"
done

o=$(median <<<"${CPU[origin]}")
{
    echo "## FLV gateway fan-out next to the origin, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "$VIEWERS HTTP-FLV viewers of one 2 Mbps stream, ${DURATION} s, $REPS repetitions (medians; \"full\" is the worst)."
    echo "The gateway pulls from the origin; the leaf is a gateway of that gateway (a cascade of three)."
    echo
    echo "| process | viewers with the full stream | Mbit/s delivered | CPU s per GB | vs the origin |"
    echo "|---|---|---|---|---|"
    for k in origin gateway leaf; do
        c=$(median <<<"${CPU[$k]}")
        echo "| $k | $(minimum <<<"${FULL[$k]}") / $VIEWERS | $(median <<<"${MBPS[$k]}") | $c | $(awk -v a="$c" -v b="$o" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}') |"
    done
    echo
    echo "Commands: \`$LOAD --url http://127.0.0.1:PORT/live/s2m.flv --viewers $VIEWERS --duration $DURATION --server-pid PID --json\`"
    echo "against the origin, the gateway (\`rtmpd flv-gateway 0 http://127.0.0.1:ORIGIN\`) and the leaf (\`rtmpd flv-gateway 0 http://127.0.0.1:GATEWAY\`)."
} | tee "$RESULTS"
