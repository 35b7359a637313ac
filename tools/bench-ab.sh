#!/usr/bin/env bash
# tools/bench-ab.sh: two rtmpd builds side by side under the same load, same run: A (e.g. the
# build before a change) and B (after it). Both serve the same 2 Mbps file; rtmpd-load (B's)
# drives 1,000 viewers at each in turn, alternating A and B within every repetition so that the
# shared machine's drift hits both alike. Reports CPU s/GB per protocol, medians and the ratio B/A.
# Traffic goes to 127.0.0.1 only; the script ends only the processes it started.
#
#   tools/bench-ab.sh OLD_RTMPD NEW_RTMPD        (AB_REPS=3 AB_DURATION=20 AB_VIEWERS=1000)
#
# AB_MEDIA=s230k serves the ~230 kbps stream of tools/bench.sh instead (scenario d: with
# AB_VIEWERS=10000 AB_RAMP=1000); AB_FLOOR=1 adds the bare fan-out (tools/bare-fanout.rs) as a third
# server F in the same rotation, for HTTP-FLV, and reports A/F and B/F.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
A_BIN=${1:?usage: bench-ab.sh A_RTMPD B_RTMPD}
B_BIN=${2:?usage: bench-ab.sh A_RTMPD B_RTMPD}
REPS=${AB_REPS:-3}
DURATION=${AB_DURATION:-20}
VIEWERS=${AB_VIEWERS:-1000}
PROTOCOLS=${AB_PROTOCOLS:-"rtmp httpflv"}
LOAD=${AB_LOAD:-$ROOT/target/release/rtmpd-load}
MEDIA_NAME=${AB_MEDIA:-s2m}
MEDIA=$ROOT/target/bench-media/$MEDIA_NAME.flv
RAMP=${AB_RAMP:-}
FLOOR=${AB_FLOOR:-0}
FANOUT=${AB_FANOUT:-$ROOT/target/release/examples/bare-fanout}
RESULTS=$ROOT/target/bench-ab-results.md

log() { printf '[bench-ab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

TMP=$(mktemp -d /tmp/rtmpd-ab.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
( sleep $((REPS * 3 * DURATION * 2 + 300)); log "watchdog: stopping"; kill -TERM $$ ) 2>/dev/null &
PIDS+=($!)

[ -x "$A_BIN" ] && [ -x "$B_BIN" ] || die "both binaries must exist"
[ -x "$LOAD" ] || die "$LOAD missing (cargo build --release --bins)"
command -v ffmpeg >/dev/null || die "ffmpeg not found"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$FLOOR" = 1 ] && [ ! -x "$FANOUT" ]; then
    die "$FANOUT missing (cargo build --release --example bare-fanout)"
fi
# The media of tools/bench.sh: name size fps video_kbps audio_kbps.
case $MEDIA_NAME in
s2m) SPEC="1280x720 30 1870 128" ;;
s230k) SPEC="426x240 25 160 64" ;;
*) die "AB_MEDIA is s2m or s230k" ;;
esac
if [ ! -s "$MEDIA" ]; then
    mkdir -p "$(dirname "$MEDIA")"
    log "making $MEDIA"
    read -r size fps vk ak <<<"$SPEC"
    ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=$size:rate=$fps" \
        -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
        -g $((fps * 2)) -keyint_min $((fps * 2)) -sc_threshold 0 \
        -b:v "${vk}k" -minrate "${vk}k" -maxrate "${vk}k" -bufsize "${vk}k" -x264-params nal-hrd=cbr \
        -c:a aac -b:a "${ak}k" -ar 44100 -f flv "$MEDIA.tmp"
    mv "$MEDIA.tmp" "$MEDIA"
fi

start() { # name binary -> sets NAME_PID NAME_RTMP NAME_HTTP
    local name=$1 bin=$2 log=$TMP/$1.log i line
    mkdir -p "$TMP/$name-data"
    # Every viewer comes from 127.0.0.1: lift the per-address cap where the build has one.
    local open=()
    # (Captured first: `grep -q` in a pipe would end the writer early, failing the pipe.)
    local help
    help=$("$bin" --help 2>&1 || true)
    if grep -q -- --max-per-ip <<<"$help"; then open=(--max-per-ip 0); fi
    if grep -q -- --webrtc-port <<<"$help"; then open+=(--webrtc-port 0); fi
    if grep -q -- --srt-port <<<"$help"; then open+=(--srt-port 0); fi
    "$bin" --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --no-web --no-flv-record --no-mp4 --no-hls \
        --data-dir "$TMP/$name-data" "${open[@]}" >"$log" 2>&1 &
    local pid=$!
    PIDS+=($pid)
    for ((i = 0; i < 100; i++)); do
        grep -q 'HTTP listening on' "$log" && break
        sleep 0.1
    done
    line=$(grep -m1 'RTMP listening on' "$log") || die "$name did not start: $(tail -3 "$log")"
    printf -v "${name}_RTMP" '%s' "$(sed -n 's/.*RTMP listening on [^ ]*:\([0-9]*\).*/\1/p' <<<"$line")"
    line=$(grep -m1 'HTTP listening on' "$log")
    printf -v "${name}_HTTP" '%s' "$(sed -n 's/.*HTTP listening on [^ ]*:\([0-9]*\).*/\1/p' <<<"$line")"
    printf -v "${name}_PID" '%s' "$pid"
    ffmpeg -nostdin -v error -re -stream_loop -1 -i "$MEDIA" -c copy -f flv \
        "rtmp://127.0.0.1:$(eval echo "\$${name}_RTMP")/live/$MEDIA_NAME" >>"$TMP/ffmpeg.log" 2>&1 &
    PIDS+=($!)
}
start A "$A_BIN"
start B "$B_BIN"
SERVERS="A B"
if [ "$FLOOR" = 1 ]; then
    "$FANOUT" "$MEDIA" 100 >"$TMP/F.log" 2>&1 &
    F_PID=$!
    PIDS+=($F_PID)
    for ((i = 0; i < 50; i++)); do
        grep -q '^port ' "$TMP/F.log" && break
        sleep 0.1
    done
    F_HTTP=$(sed -n 's/^port \([0-9]*\)/\1/p' "$TMP/F.log")
    [ -n "$F_HTTP" ] || die "bare-fanout did not start: $(tail -3 "$TMP/F.log")"
    SERVERS="A B F"
fi
sleep 4

jf() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"'; }
# Failed runs (no figure, or 0 when no viewer got anything) are left out of the medians.
median() { printf '%s\n' "$@" | awk '$1 > 0' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
url() { # name protocol
    local r h
    if [ "$1" = F ]; then
        echo "http://127.0.0.1:$F_HTTP/live/$MEDIA_NAME.flv"
        return
    fi
    r=$(eval echo "\$${1}_RTMP")
    h=$(eval echo "\$${1}_HTTP")
    case $2 in
    rtmp) echo "rtmp://127.0.0.1:$r/live/$MEDIA_NAME" ;;
    httpflv) echo "http://127.0.0.1:$h/live/$MEDIA_NAME.flv" ;;
    wsflv) echo "ws://127.0.0.1:$h/live/$MEDIA_NAME.flv" ;;
    esac
}
echo >"$TMP/runs"
for ((r = 1; r <= REPS; r++)); do
    for p in $PROTOCOLS; do
        for s in $SERVERS; do
            # The floor serves HTTP-FLV only.
            if [ "$s" = F ] && [ "$p" != httpflv ]; then continue; fi
            pid=$(eval echo "\$${s}_PID")
            out=$TMP/$s-$p-$r.json
            ramp=()
            if [ -n "$RAMP" ]; then ramp=(--ramp "$RAMP"); fi
            timeout $((DURATION + 60)) "$LOAD" --url "$(url $s "$p")" --viewers "$VIEWERS" \
                --duration "$DURATION" --server-pid "$pid" "${ramp[@]}" --json >"$out" 2>>"$TMP/load.err" || echo '{}' >"$out"
            log "$s $p rep $r: full $(jf "$out" viewers_full)/$VIEWERS, $(jf "$out" server_cpu_s_per_gb) s/GB, TTFK p99 $(jf "$out" ttfk_ms_p99) ms"
            echo "$s $p $(jf "$out" server_cpu_s_per_gb) $(jf "$out" viewers_full) $(jf "$out" ttfk_ms_p99)" >>"$TMP/runs"
            sleep 3
        done
    done
done
{
    echo "## rtmpd A/B, $(date -u '+%Y-%m-%d %H:%M UTC'): $REPS x ${DURATION} s, $VIEWERS viewers of $MEDIA_NAME${RAMP:+ (connects at $RAMP/s)}"
    echo
    echo "A: $A_BIN; B: $B_BIN${F_PID:+; F: the bare fan-out (tools/bare-fanout.rs, 100 ms)}"
    echo
    echo "| protocol | A s/GB (median) | B s/GB (median) | B/A | A runs | B runs | full A / B (min) |"
    echo "|---|---|---|---|---|---|---|"
    for p in $PROTOCOLS; do
        a=$(awk -v p="$p" '$1 == "A" && $2 == p { print $3 }' "$TMP/runs")
        b=$(awk -v p="$p" '$1 == "B" && $2 == p { print $3 }' "$TMP/runs")
        ma=$(median $a)
        mb=$(median $b)
        fa=$(awk -v p="$p" '$1 == "A" && $2 == p { print $4 }' "$TMP/runs" | sort -n | awk 'NR == 1')
        fb=$(awk -v p="$p" '$1 == "B" && $2 == p { print $4 }' "$TMP/runs" | sort -n | awk 'NR == 1')
        ratio=$(awk -v a="$ma" -v b="$mb" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "n/a" }')
        echo "| $p | $ma | $mb | $ratio | $(echo $a) | $(echo $b) | $fa / $fb |"
    done
    if [ "$FLOOR" = 1 ]; then
        f=$(awk '$1 == "F" && $2 == "httpflv" { print $3 }' "$TMP/runs")
        mf=$(median $f)
        ff=$(awk '$1 == "F" && $2 == "httpflv" { print $4 }' "$TMP/runs" | sort -n | awk 'NR == 1')
        ma=$(median $(awk '$1 == "A" && $2 == "httpflv" { print $3 }' "$TMP/runs"))
        mb=$(median $(awk '$1 == "B" && $2 == "httpflv" { print $3 }' "$TMP/runs"))
        echo
        echo "| floor (HTTP-FLV) | F s/GB (median) | F runs | full F (min) | A/F | B/F |"
        echo "|---|---|---|---|---|---|"
        echo "| bare fan-out | $mf | $(echo $f) | $ff | $(awk -v a="$ma" -v f="$mf" 'BEGIN { if (f > 0) printf "%.3f", a / f; else print "n/a" }') | $(awk -v b="$mb" -v f="$mf" 'BEGIN { if (f > 0) printf "%.3f", b / f; else print "n/a" }') |"
    fi
} >"$RESULTS"
cat "$RESULTS"
