#!/usr/bin/env bash
# Recording-cost benchmarks (issues 3 and 4), against the real release binary on 127.0.0.1:
#   1. CPU seconds per hour of media for each recorder (FLV, HLS, fMP4 slicer) and for the merge:
#      a 2 Mbps test stream (made once with FFmpeg, cached in target/bench-media/) is pushed as
#      fast as FFmpeg can send it through the origin with one recorder on at a time; the server's
#      CPU (utime+stime from /proc/PID/stat) over the push, minus a run with every recorder off.
#   2. `rtmpd merge` on a 1-hour 2 Mbps recording (and on the 10-minute one): throughput in MB/s
#      and peak RSS (/usr/bin/time -v), which must not grow with the recording's length.
#   3. Live fan-out with all recorders on versus off in the same run: N HTTP-FLV viewers (curl)
#      on a real-time publish; bytes delivered, event-loop thread CPU and process CPU.
# Bounded: every wait has a timeout; all data lives under target/bench-record/ (removed at the
# end unless KEEP=1). Usage: tools/bench-record.sh [all|recorders|merge|fanout]
# Knobs: MINUTES (length of the cached test stream, 10), HOUR_LOOPS (copies pushed for the
# "1-hour" recording, 6), PUSH_RATE (x real time, 20), VIEWERS (200), FANOUT_SECS (30), RUNS (fan-out rounds, 2).
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${1:-all}
MINUTES=${MINUTES:-10}
HOUR_LOOPS=${HOUR_LOOPS:-6}
VIEWERS=${VIEWERS:-200}
FANOUT_SECS=${FANOUT_SECS:-30}
RUNS=${RUNS:-2}
PUSH_RATE=${PUSH_RATE:-20}
MEDIA_DIR=target/bench-media
OUT=target/bench-record
BIN=target/release/rtmpd
SECS=$((MINUTES * 60))
MEDIA=$MEDIA_DIR/stream-2mbps-${SECS}s.flv
TCK=$(getconf CLK_TCK)

for tool in ffmpeg ffprobe curl /usr/bin/time; do
    command -v "$tool" > /dev/null || { echo "bench-record: $tool not found" >&2; exit 1; }
done

cargo build --release --quiet
mkdir -p "$MEDIA_DIR" "$OUT"

if [ ! -f "$MEDIA" ]; then
    echo "making $MEDIA (${SECS} s, 640x360 30 fps H.264 High with B-frames, 2 Mbps CBR + AAC 128k)"
    ffmpeg -hide_banner -nostdin -v error -y \
        -f lavfi -i "testsrc2=size=640x360:rate=30,noise=alls=20:allf=t" \
        -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$SECS" \
        -c:v libx264 -preset veryfast -profile:v high -bf 2 -g 60 \
        -b:v 1900k -minrate 1900k -maxrate 1900k -bufsize 2M -pix_fmt yuv420p \
        -c:a aac -b:a 128k -ac 2 -f flv "$MEDIA.part"
    mv "$MEDIA.part" "$MEDIA"
fi
MEDIA_BYTES=$(stat -c %s "$MEDIA")

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -9 "$SERVER_PID" 2> /dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$OUT"; fi
}
trap cleanup EXIT

# start_server DIR ARGS...: sets SERVER_PID, RTMP, HTTP; log in DIR.log.
start_server() {
    local dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    : > "$dir.log"
    "$BIN" --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --no-web --max-per-ip 0 --data-dir "$dir" "$@" \
        > "$dir.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 150); do
        if grep -q "HTTP listening on" "$dir.log"; then break; fi
        sleep 0.1
    done
    RTMP=$(grep -o "RTMP listening on [0-9.:]*" "$dir.log" | awk '{print $4}')
    HTTP=$(grep -o "HTTP listening on [0-9.:]*" "$dir.log" | awk '{print $4}')
    [ -n "$RTMP" ] && [ -n "$HTTP" ] || { echo "server did not start:" >&2; cat "$dir.log" >&2; exit 1; }
}

stop_server() {
    kill -INT "$SERVER_PID"
    for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
}

# CPU ticks (user+system) of the process, or of one of its threads.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
thread_ticks() { awk '{print $14 + $15}' "/proc/$1/task/$2/stat"; }
# The event loop is the main thread: its tid is the pid.
secs() { awk -v t="$1" -v k="$TCK" 'BEGIN {printf "%.2f", t / k}'; }

# wait_log FILE PATTERN COUNT TIMEOUT_SECS
wait_log() {
    local n
    for _ in $(seq 1 $(($4 * 10))); do
        n=$(grep -cE -- "$2" "$1" || true)
        if [ "$n" -ge "$3" ]; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $3 x '$2' in $1" >&2
    tail -20 "$1" >&2
    exit 1
}

# push_fast URL [LOOPS]: the test stream at PUSH_RATE x real time. Not unthrottled: FFmpeg would
# fill the socket buffers and close, and the reset from its close discards megabytes the server
# had not read yet (the recording would miss the end).
push_fast() {
    local loops=${2:-1}
    timeout 3600 ffmpeg -hide_banner -nostdin -v error -readrate "$PUSH_RATE" \
        -stream_loop $((loops - 1)) -i "$MEDIA" -c copy -f flv "$1"
}

declare -A COST
recorders() {
    echo
    echo "== CPU per hour of media, one recorder at a time (${MINUTES}-min 2 Mbps stream pushed at ${PUSH_RATE}x)"
    local mode args expect dir t0 t1
    for mode in off flv hls mp4; do
        case $mode in
            off) args="--no-flv-record --no-hls --no-mp4"; expect=0 ;;
            flv) args="--no-hls --no-mp4"; expect=1 ;;
            hls) args="--no-flv-record --no-mp4"; expect=1 ;;
            mp4) args="--no-flv-record --no-hls"; expect=1 ;;
        esac
        dir=$OUT/rec-$mode
        # shellcheck disable=SC2086
        start_server "$dir" $args
        t0=$(proc_ticks "$SERVER_PID")
        push_fast "rtmp://$RTMP/live/bench"
        wait_log "$dir.log" "publisher .* (unpublished|left)" 1 60
        # The recorder finishes on its worker after the unpublish (the fMP4 one merges too).
        wait_log "$dir.log" "finished" "$expect" 600
        t1=$(proc_ticks "$SERVER_PID")
        COST[$mode]=$((t1 - t0))
        stop_server
    done
    local base=${COST[off]}
    printf "%-28s %10s %14s\n" "run" "CPU s" "CPU s/media-h"
    printf "%-28s %10s %14s\n" "all recorders off (ingest)" "$(secs "$base")" \
        "$(secs $((base * 60 / MINUTES)))"
    for mode in flv hls mp4; do
        local d=$((COST[$mode] - base))
        local label
        case $mode in
            flv) label="FLV recorder" ;;
            hls) label="HLS recorder" ;;
            mp4) label="fMP4 slicer + merge" ;;
        esac
        printf "%-28s %10s %14s\n" "$label" "$(secs "$d")" "$(secs $((d * 60 / MINUTES)))"
    done
    MP4_TICKS=$((COST[mp4] - base))
}

# merge_run DIR LABEL MINUTES_OF_MEDIA: `rtmpd merge` on a hard-linked copy of DIR's segments.
merge_run() {
    local src=$1 label=$2 minutes=$3 copy=$OUT/merge-copy-$2
    rm -rf "$copy"
    mkdir -p "$copy"
    cp -l "$src"/init.mp4 "$src"/segment_*.m4s "$copy"/
    /usr/bin/time -v "$BIN" merge "$copy" > "$copy.out" 2> "$copy.time"
    local size user sys wall rss
    size=$(stat -c %s "$copy/stream_full.mp4")
    user=$(awk -F': ' '/User time/ {print $2}' "$copy.time")
    sys=$(awk -F': ' '/System time/ {print $2}' "$copy.time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$copy.time" |
        awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s}')
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$copy.time")
    cmp -s "$copy/stream_full.mp4" "$src/stream_full.mp4" && same=identical || same=DIFFERENT
    awk -v l="$label" -v m="$minutes" -v b="$size" -v u="$user" -v s="$sys" -v w="$wall" \
        -v r="$rss" -v same="$same" 'BEGIN {
            cpu = u + s
            printf "%-8s %8.1f MB %7.2f s wall %7.2f s CPU %8.1f MB/s %8.2f CPU s/media-h %7.1f MB max RSS  (vs server: %s)\n",
                l, b / 1e6, w, cpu, (w > 0 ? b / 1e6 / w : 0), cpu * 60 / m, r / 1024, same
        }'
    MERGE_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')
    rm -rf "$copy"
}

merge() {
    echo
    echo "== rtmpd merge (fMP4 segments -> stream_full.mp4), warm page cache"
    local dir=$OUT/merge
    start_server "$dir" --no-flv-record --no-hls
    push_fast "rtmp://$RTMP/live/m10"
    wait_log "$dir.log" "publisher .* (unpublished|left)" 1 60
    wait_log "$dir.log" "finished" 1 600
    push_fast "rtmp://$RTMP/live/m60" "$HOUR_LOOPS"
    wait_log "$dir.log" "publisher .* (unpublished|left)" 2 3600
    wait_log "$dir.log" "finished" 2 3600
    stop_server
    merge_run "$dir/mp4/live/m10/output_merge" "${MINUTES}min" "$MINUTES"
    local m10=$MERGE_CPU
    merge_run "$dir/mp4/live/m60/output_merge" "$((MINUTES * HOUR_LOOPS))min" "$((MINUTES * HOUR_LOOPS))"
    if [ -n "${MP4_TICKS:-}" ]; then
        awk -v t="$MP4_TICKS" -v k="$TCK" -v m="$m10" -v min="$MINUTES" 'BEGIN {
            slicer = t / k - m
            printf "fMP4 slicer alone: %.2f CPU s per %d min = %.2f CPU s/media-h (slicer + merge run minus the merge)\n",
                slicer, min, slicer * 60 / min
        }'
    fi
    rm -rf "$dir"
}

fanout_round() {
    local label=$1 dir=$OUT/fan-$1
    shift
    start_server "$dir" "$@"
    local url="http://$HTTP/live/fan.flv"
    timeout $((FANOUT_SECS + 60)) ffmpeg -hide_banner -nostdin -v error -re -i "$MEDIA" \
        -t "$FANOUT_SECS" -c copy -f flv "rtmp://$RTMP/live/fan" &
    local ff=$!
    for _ in $(seq 1 100); do
        # A live stream never ends: curl times out (exit 28) after printing the status.
        { curl -s -o /dev/null -m 0.5 -w '%{http_code}' "$url" 2> /dev/null || true; } |
            grep -q 200 && break
        sleep 0.1
    done
    local p0 l0 p1 l1 i
    p0=$(proc_ticks "$SERVER_PID")
    l0=$(thread_ticks "$SERVER_PID" "$SERVER_PID")
    for i in $(seq 1 "$VIEWERS"); do
        curl -s -o /dev/null -m $((FANOUT_SECS + 30)) -w '%{size_download}\n' "$url" \
            > "$dir.viewer$i" 2> /dev/null &
    done
    wait "$ff" || true
    p1=$(proc_ticks "$SERVER_PID")
    l1=$(thread_ticks "$SERVER_PID" "$SERVER_PID")
    # Viewers end when the stream does.
    for _ in $(seq 1 300); do
        [ "$(jobs -rp | wc -l)" -le 1 ] && break
        sleep 0.1
    done
    local bytes
    bytes=$(cat "$dir".viewer* | awk '{s += $1} END {printf "%.1f", s / 1e6}')
    printf "%-14s %6d viewers %9s MB delivered  loop thread %7s CPU s  process %7s CPU s\n" \
        "$label" "$VIEWERS" "$bytes" "$(secs $((l1 - l0)))" "$(secs $((p1 - p0)))"
    rm -f "$dir".viewer*
    stop_server
}

fanout() {
    echo
    echo "== Live fan-out: $VIEWERS HTTP-FLV viewers (curl), ${FANOUT_SECS} s of the 2 Mbps stream in real time"
    local r
    for r in $(seq 1 "$RUNS"); do
        fanout_round "recorders-off" --no-flv-record --no-hls --no-mp4
        fanout_round "recorders-on"
    done
}

echo "rtmpd $("$BIN" --version | awk '{print $2}'), $(nproc) cores, media $MEDIA ($((MEDIA_BYTES / 1000000)) MB)"
case $WHAT in
    all) recorders; merge; fanout ;;
    recorders) recorders ;;
    merge) merge ;;
    fanout) fanout ;;
    *) echo "usage: $0 [all|recorders|merge|fanout]" >&2; exit 2 ;;
esac
