#!/usr/bin/env bash
# Soak benchmark (issue 13 point 4; `make soak`, never part of `make test`): the release origin on
# 127.0.0.1 with every recorder on for SOAK_SECS, a publisher (FFmpeg -re, the fixture looped)
# that reconnects every RECONNECT_SECS, and up to VIEWERS viewers joining and leaving at random,
# a quarter each over RTMP, HTTP-FLV, WS-FLV (rtmpd-load runs of random size and length) and HLS
# (poller threads in python3). VmRSS and open fds of the server are sampled every 10 s.
# Prints RSS after warm-up vs at the end and fds at the start vs the end, then ffprobes every
# recording of every session. Exits 1 when RSS grew over 10%, an fd leaked, or a recording is
# missing or does not read clean. Everything lives in target/soak/ (the recordings are removed at
# the end unless KEEP=1; the logs and samples stay). Kills only the processes it started, by PID.
# Knobs: SOAK_SECS (1800), VIEWERS (1000), RECONNECT_SECS (120), WARMUP_SECS (a third of the run,
# at least RECONNECT_SECS + 30), SLOTS (rtmpd-load loops per protocol, 5), PIPE_POOL_FDS (66).
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS=${SOAK_SECS:-1800}
VIEWERS=${VIEWERS:-1000}
RECONNECT_SECS=${RECONNECT_SECS:-120}
# Warm-up: a third of the run (at least one publisher reconnect), so that the allocator has seen
# several sessions end (each ends with its MP4 merge) and the random churn's peaks. A 30-minute run
# on 2026-12-03 with a 150 s warm-up: 8.3 MB at 150 s, 11.5 MB from 364 s (the second and third
# sessions' ends), then 11,480 -> 11,544 kB over the last 24 minutes and 12 sessions: a plateau,
# which a leak check must not count, and what it must watch is the growth after it.
WARMUP_SECS=${WARMUP_SECS:-$((SOAK_SECS / 3 > RECONNECT_SECS + 30 ? SOAK_SECS / 3 : RECONNECT_SECS + 30))}
SLOTS=${SLOTS:-5}
OUT=target/soak
BIN=target/release/rtmpd
LOAD=target/release/rtmpd-load
FIXTURE=tests/data/fixture.flv
STREAM=live/soak

for tool in ffmpeg ffprobe python3 timeout curl; do
    command -v "$tool" >/dev/null || { echo "soak: $tool not found" >&2; exit 1; }
done
cargo build --release --quiet --bin rtmpd --bin rtmpd-load
rm -rf "$OUT"
mkdir -p "$OUT/data"
# 1,000 viewers need as many descriptors here and in the server (which raises its own).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log() { echo "soak: $*" | tee -a "$OUT/events.log" >&2; }

SERVER_PID=
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        # The loops' current children (rtmpd-load, ffmpeg) first, then the loop itself.
        pkill -KILL -P "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$OUT/data"; fi
}
trap cleanup EXIT

"$BIN" --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --no-web --max-per-ip 0 --data-dir "$OUT/data" \
    >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 150); do
    grep -q "HTTP listening on" "$OUT/server.log" && break
    sleep 0.1
done
RTMP=$(grep -o "RTMP listening on [0-9.:]*" "$OUT/server.log" | awk '{print $4}')
HTTP=$(grep -o "HTTP listening on [0-9.:]*" "$OUT/server.log" | awk '{print $4}')
[ -n "$RTMP" ] && [ -n "$HTTP" ] || { echo "soak: server did not start:" >&2; cat "$OUT/server.log" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
fds() { ls "/proc/$SERVER_PID/fd" | wc -l; }
# Pipes are the splice pool (src/server/splice.rs: at most 32 loaded pipes plus a scratch one,
# two fds each), kept for reuse; every other fd (sockets, files) must come back to its count.
pipes() { find "/proc/$SERVER_PID/fd" -lname 'pipe:*' 2>/dev/null | wc -l; }
PIPE_POOL_FDS=${PIPE_POOL_FDS:-66}
# The file service keeps an O_PATH fd per root it has served (src/server/fs.rs, at most 8): one
# request first, so that this cache is in the count at the start as it is at the end.
curl -s -o /dev/null "http://$HTTP/hls/$STREAM/index.m3u8" || true
FD_START=$(fds)
PIPES_START=$(pipes)
START=$EPOCHSECONDS
END=$((START + SOAK_SECS))
log "server pid $SERVER_PID, RTMP $RTMP, HTTP $HTTP; ${SOAK_SECS} s, up to $VIEWERS viewers," \
    "publisher reconnecting every ${RECONNECT_SECS} s, warm-up ${WARMUP_SECS} s; fds at start $FD_START"

# The publisher: one FFmpeg per session, stopped with SIGINT (a polite unpublish), then again.
publisher_loop() {
    local n=0 ff stop_at
    while [ "$EPOCHSECONDS" -lt $((END - 5)) ]; do
        n=$((n + 1))
        ffmpeg -nostdin -v error -re -stream_loop -1 -i "$FIXTURE" -c copy -f flv \
            "rtmp://$RTMP/$STREAM" >>"$OUT/ffmpeg.log" 2>&1 &
        ff=$!
        echo "$(date -u +%T) session $n" >>"$OUT/sessions.log"
        stop_at=$((EPOCHSECONDS + RECONNECT_SECS))
        [ "$stop_at" -gt "$END" ] && stop_at=$END
        while [ "$EPOCHSECONDS" -lt "$stop_at" ] && kill -0 "$ff" 2>/dev/null; do sleep 1; done
        kill -INT "$ff" 2>/dev/null || true
        wait "$ff" || true
        sleep 2
    done
}

# One protocol's churn slot: rtmpd-load runs of 1..MAX viewers for 10..60 s, a pause of 0..4 s
# between them, until the end. A run that finds no stream (between sessions) just fails.
slot_loop() { # name url max
    local name=$1 url=$2 max=$3 left n d
    while :; do
        left=$((END - EPOCHSECONDS))
        [ "$left" -lt 5 ] && break
        n=$((RANDOM % max + 1))
        d=$((RANDOM % 51 + 10))
        [ "$d" -gt "$left" ] && d=$left
        timeout $((d + 30)) "$LOAD" --url "$url" --viewers "$n" --duration "$d" --ramp 200 \
            --json >>"$OUT/load-$name.jsonl" 2>>"$OUT/load.err" || echo "{\"failed\":$n}" >>"$OUT/load-$name.jsonl"
        sleep $((RANDOM % 5))
    done
}

# HLS viewers: each thread joins for 10..60 s (playlist every 2 s, every new segment fetched),
# leaves for 0..4 s, and so on until the end.
cat >"$OUT/hls_viewers.py" <<'EOF'
import http.client, random, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
threads, end, path = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
stats = {"joins": 0, "playlists": 0, "segments": 0, "errors": 0}
lock = threading.Lock()
def count(k):
    with lock:
        stats[k] += 1
def viewer():
    while time.time() < end - 5:
        leave = min(end, time.time() + random.uniform(10, 60))
        count("joins")
        seen = set()
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=10)
            while time.time() < leave:
                c.request("GET", path + "index.m3u8")
                r = c.getresponse()
                body = r.read()
                if r.status == 200:
                    count("playlists")
                    uris = [l for l in body.decode("latin-1").splitlines() if l and not l.startswith("#")]
                    for u in uris[-2:]:
                        if u not in seen:
                            seen.add(u)
                            c.request("GET", path + u)
                            s = c.getresponse()
                            s.read()
                            count("segments" if s.status == 200 else "errors")
                time.sleep(2)
            c.close()
        except Exception:
            count("errors")
        time.sleep(random.uniform(0, 4))
ts = [threading.Thread(target=viewer, daemon=True) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(" ".join(f"{k}={v}" for k, v in stats.items()))
EOF

publisher_loop &
PIDS+=($!)
sleep 3
share=$((VIEWERS / 4))
per_slot=$((share / SLOTS))
[ "$per_slot" -lt 1 ] && per_slot=1
for s in $(seq 1 "$SLOTS"); do
    slot_loop rtmp "rtmp://$RTMP/$STREAM" "$per_slot" &
    PIDS+=($!)
    slot_loop http "http://$HTTP/$STREAM.flv" "$per_slot" &
    PIDS+=($!)
    slot_loop ws "ws://$HTTP/$STREAM.flv" "$per_slot" &
    PIDS+=($!)
done
python3 "$OUT/hls_viewers.py" "$HTTP" "$share" "$END" "/hls/$STREAM/" >"$OUT/hls.txt" 2>&1 &
PIDS+=($!)

# Samples every 10 s while the load runs: elapsed s, VmRSS kB, fds.
echo "secs,rss_kb,fds" >"$OUT/samples.csv"
while [ "$EPOCHSECONDS" -lt "$END" ]; do
    sleep 10
    kill -0 "$SERVER_PID" 2>/dev/null || { log "the server died"; tail -20 "$OUT/server.log" >&2; exit 1; }
    echo "$((EPOCHSECONDS - START)),$(rss_kb),$(fds)" >>"$OUT/samples.csv"
    if [ $(((EPOCHSECONDS - START) % 60)) -lt 10 ]; then
        log "$(tail -1 "$OUT/samples.csv" | awk -F, '{printf "%d s: VmRSS %d kB, %d fds", $1, $2, $3}')"
    fi
done

# Every loop checks the end itself; wait for them (rtmpd-load runs end with their duration).
for p in "${PIDS[@]}"; do
    timeout 90 tail --pid="$p" -f /dev/null || log "pid $p did not end"
done
PIDS=()
# Warm-up RSS: the highest sample up to WARMUP_SECS (the allocator has seen full churn by then);
# the end: the highest of the last three samples.
RSS_WARM=$(awk -F, -v w="$WARMUP_SECS" 'NR > 1 && $1 <= w + 10 && $2 > m {m = $2} END {print m + 0}' "$OUT/samples.csv")
RSS_END=$(tail -3 "$OUT/samples.csv" | awk -F, '$2 > m {m = $2} END {print m + 0}')
RSS_MAX=$(awk -F, 'NR > 1 && $2 > m {m = $2} END {print m + 0}' "$OUT/samples.csv")
FD_PEAK=$(awk -F, 'NR > 1 && $3 > m {m = $3} END {print m + 0}' "$OUT/samples.csv")
# Viewers and the publisher are gone: the fds should come back to the start once the server
# has closed its side and the recorders their files.
FD_END=$(fds)
PIPES_END=$(pipes)
for _ in $(seq 1 30); do
    [ $((FD_END - PIPES_END)) -le $((FD_START - PIPES_START)) ] && break
    sleep 1
    FD_END=$(fds)
    PIPES_END=$(pipes)
done
# What is open at the end, for a leak hunt: descriptors and the server's sockets.
ls -l "/proc/$SERVER_PID/fd" >"$OUT/fds-end.txt" 2>&1 || true
if command -v ss >/dev/null; then ss -tanp 2>/dev/null | grep "pid=$SERVER_PID," >>"$OUT/fds-end.txt" || true; fi
SESSIONS=$(wc -l <"$OUT/sessions.log")
kill -INT "$SERVER_PID"
for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then log "server still running 15 s after SIGINT"; fi
wait "$SERVER_PID" || true
SERVER_PID=

# The viewers' own figures.
runs() { wc -l <"$OUT/load-$1.jsonl" 2>/dev/null || echo 0; }
connected() { grep -ho '"viewers_connected":[0-9]*' "$OUT"/load-"$1".jsonl 2>/dev/null | awk -F: '{s += $2} END {print s + 0}'; }
failed() { grep -ho '"failed":[0-9]*' "$OUT"/load-"$1".jsonl 2>/dev/null | awk -F: '{s += $2} END {print s + 0}'; }
for p in rtmp http ws; do
    log "$p: $(runs "$p") rtmpd-load runs, $(connected "$p") viewers connected, $(failed "$p") in failed runs"
done
log "hls: $(cat "$OUT/hls.txt")"

# Every recording of every session: FLV files, HLS playlists (ENDLIST, then ffprobe), merged MP4s.
FAIL=0
check() { # file
    local err
    if ! err=$(timeout 120 ffprobe -hide_banner -v error -show_format -show_streams "$1" 2>&1 >/dev/null) || [ -n "$err" ]; then
        log "recording FAILS ffprobe: $1: $err"
        FAIL=1
    fi
}
mapfile -t FLVS < <(find "$OUT/data/flv" -name '*.flv' | sort)
mapfile -t M3U8S < <(find "$OUT/data/hls" -name index.m3u8 | sort)
mapfile -t MP4S < <(find "$OUT/data/mp4" -name stream_full.mp4 | sort)
for f in "${FLVS[@]}" "${MP4S[@]}"; do check "$f"; done
for f in "${M3U8S[@]}"; do
    if grep -q '#EXT-X-ENDLIST' "$f"; then check "$f"; else log "no ENDLIST: $f"; FAIL=1; fi
done
for kind in "FLV ${#FLVS[@]}" "HLS ${#M3U8S[@]}" "MP4 ${#MP4S[@]}"; do
    set -- $kind
    if [ "$2" -lt "$SESSIONS" ]; then
        log "$1: $2 recordings for $SESSIONS sessions"
        FAIL=1
    fi
done
ERRORS=$(grep -c '\[ERROR\]' "$OUT/server.log" || true)

echo "## rtmpd soak, $(date -u '+%Y-%m-%d %H:%M UTC'), ${SOAK_SECS} s"
echo "sessions (publisher reconnects): $SESSIONS"
echo "VmRSS after warm-up (${WARMUP_SECS} s): $RSS_WARM kB; at the end: $RSS_END kB; highest: $RSS_MAX kB"
echo "fds at start: $FD_START ($PIPES_START pipes); at the end: $FD_END ($PIPES_END pipes, the splice pool); highest: $FD_PEAK"
echo "recordings checked with ffprobe: ${#FLVS[@]} FLV, ${#M3U8S[@]} HLS, ${#MP4S[@]} MP4"
echo "server [ERROR] lines: $ERRORS (target/soak/server.log); samples: target/soak/samples.csv"
if [ "$RSS_WARM" -le 0 ] || [ "$RSS_END" -gt $((RSS_WARM * 110 / 100)) ]; then
    echo "FAIL: VmRSS grew over 10% ($RSS_WARM -> $RSS_END kB)"
    FAIL=1
fi
if [ $((FD_END - PIPES_END)) -ne $((FD_START - PIPES_START)) ]; then
    echo "FAIL: fds other than pipes: $((FD_START - PIPES_START)) at start, $((FD_END - PIPES_END)) at the end (target/soak/fds-end.txt)"
    FAIL=1
fi
if [ $((PIPES_END - PIPES_START)) -gt "$PIPE_POOL_FDS" ]; then
    echo "FAIL: $((PIPES_END - PIPES_START)) pipe fds at the end, over the splice pool's $PIPE_POOL_FDS"
    FAIL=1
fi
[ "$FAIL" = 0 ] && echo "soak: pass" || echo "soak: FAIL"
exit "$FAIL"
