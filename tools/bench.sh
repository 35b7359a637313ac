#!/usr/bin/env bash
# tools/bench.sh: rtmpd against nginx + libnginx-mod-rtmp under the same load generator
# (rtmpd-load), same stream, same run. Traffic goes to 127.0.0.1 only; the script kills only the
# processes it started. Results: a Markdown table on stdout and in target/bench-results.md.
# Settings (environment): see tools/README.md. BENCH_QUICK=1 runs a ~3 minute version.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    D_REPS=1 D_DURATION=10 D_BIG_DURATION=20 D_TTFK_DURATION=6
else
    D_REPS=3 D_DURATION=30 D_BIG_DURATION=40 D_TTFK_DURATION=8
fi
REPS=${BENCH_REPS:-$D_REPS}                     # repetitions of each CPU scenario (median reported)
DURATION=${BENCH_DURATION:-$D_DURATION}         # seconds per run, scenarios a-c
VIEWERS=${BENCH_VIEWERS:-1000}                  # viewers of the 2 Mbps stream, scenarios a-c
BIG_VIEWERS=${BENCH_BIG_VIEWERS:-10000}         # viewers of the ~230 kbps stream, scenario d
BIG_DURATION=${BENCH_BIG_DURATION:-$D_BIG_DURATION} # includes the BIG_VIEWERS/BIG_RAMP s of connects
BIG_NGINX=${BENCH_BIG_NGINX:-1}                 # also run scenario d as RTMP against nginx
BIG_RAMP=${BENCH_BIG_RAMP:-1000}               # connects per second in scenario d
BIG_FLOOR=${BENCH_BIG_FLOOR:-1}                 # also run scenario d against the bare fan-out (the floor)
TTFK_VIEWERS=${BENCH_TTFK_VIEWERS:-100}         # scenario e
TTFK_RAMP=${BENCH_TTFK_RAMP:-25}                # connects per second in scenario e
TTFK_DURATION=${BENCH_TTFK_DURATION:-$D_TTFK_DURATION}
PAUSE=${BENCH_PAUSE:-3}                         # seconds between runs, for sockets to drain
WATCHDOG=${BENCH_WATCHDOG:-1500}                # hard cap on the whole script, seconds
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}

MEDIA=$ROOT/target/bench-media
RESULTS=$ROOT/target/bench-results.md
RTMPD=$ROOT/target/release/rtmpd
LOAD=$ROOT/target/release/rtmpd-load
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
NGINX_MODULE=${NGINX_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}
FANOUT=$ROOT/target/release/examples/bare-fanout

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes we own --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rtmpd-bench.XXXXXX)
PIDS=()     # servers, publishers, the watchdog: alive until the end
LOAD_PID=   # the load generator run in progress, if any
WATCHDOG_PID=
cleanup() {
    local p
    if [ -n "$LOAD_PID" ]; then kill -TERM "$LOAD_PID" 2>/dev/null || true; fi
    # The watchdog is a subshell; its sleep is its only child.
    if [ -n "$WATCHDOG_PID" ]; then pkill -TERM -P "$WATCHDOG_PID" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The whole script is bounded in time even if something hangs.
( sleep "$WATCHDOG"; log "watchdog: ${WATCHDOG}s passed, stopping"; kill -TERM $$ ) 2>/dev/null &
WATCHDOG_PID=$!
PIDS+=($WATCHDOG_PID)

# --- prerequisites -----------------------------------------------------------------------------
command -v ffmpeg >/dev/null || die "ffmpeg not found (apt-get install -y ffmpeg)"
[ -x "$NGINX" ] || die "nginx not found (apt-get install -y nginx libnginx-mod-rtmp)"
[ -f "$NGINX_MODULE" ] || die "$NGINX_MODULE not found (apt-get install -y libnginx-mod-rtmp)"

# 10,000 viewers need 10,000 descriptors in the server and 10,000 in the load generator.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ]; then
    ulimit -n "$HARD"
    if [ $((BIG_VIEWERS + 200)) -gt "$HARD" ]; then
        log "open-file hard limit is $HARD: scenario d uses $((HARD - 200)) viewers instead of $BIG_VIEWERS"
        BIG_VIEWERS=$((HARD - 200))
    fi
else
    ulimit -n 1048576 2>/dev/null || true
fi

if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release --bins --example bare-fanout"
    cargo build --release --bins --example bare-fanout >&2
fi
[ -x "$RTMPD" ] || die "$RTMPD missing"
if [ "$BIG_FLOOR" = 1 ] && [ ! -x "$FANOUT" ]; then die "$FANOUT missing"; fi
[ -x "$LOAD" ] || die "$LOAD missing"

# --- test streams (cached) ---------------------------------------------------------------------
# 60 s of testsrc2 + sine, H.264 High + AAC, a keyframe every 2 s, constant bit rate (x264
# nal-hrd=cbr pads with filler so the easy test picture still costs the nominal rate).
make_media() { # name size fps video_kbps audio_kbps
    local out=$MEDIA/$1.flv
    [ -s "$out" ] && return 0
    mkdir -p "$MEDIA"
    log "making $out"
    ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=$2:rate=$3" \
        -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
        -g $(($3 * 2)) -keyint_min $(($3 * 2)) -sc_threshold 0 \
        -b:v "${4}k" -minrate "${4}k" -maxrate "${4}k" -bufsize "${4}k" -x264-params nal-hrd=cbr \
        -c:a aac -b:a "${5}k" -ar 44100 -f flv "$out.tmp"
    mv "$out.tmp" "$out"
}
make_media s2m 1280x720 30 1870 128
make_media s230k 426x240 25 160 64

# --- helpers -----------------------------------------------------------------------------------
free_port() { # below the ephemeral range, so the load generator's sockets never take it
    local p
    for _ in $(seq 100); do
        p=$((RANDOM % 20000 + 10000))
        if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    die "no free port"
}

wait_for_line() { # file regex seconds -> prints the first matching line
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

jf() { # json-file key -> value (the load generator prints flat JSON with unique keys)
    sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | tr -d '"'
}

num() { # value decimals: numbers rounded, anything else as it is
    awk -v v="$1" -v d="$2" 'BEGIN { if (v ~ /^-?[0-9]+(\.[0-9]+)?$/) printf("%." d "f", v); else printf("%s", v) }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
# No `head` in pipelines: under pipefail, the writer's SIGPIPE would end the script.
minimum() { printf '%s\n' "$@" | awk 'NF && (m == "" || $1 < m) { m = $1 } END { print m }'; }
maximum() { printf '%s\n' "$@" | awk 'NF && (m == "" || $1 > m) { m = $1 } END { print m }'; }

publish() { # file url
    ffmpeg -nostdin -v error -re -stream_loop -1 -i "$1" -c copy -f flv "$2" \
        >>"$TMP/ffmpeg.log" 2>&1 &
    PIDS+=($!)
}

# One load run; the JSON goes to $TMP/runs/NAME.json and a one-line summary to stderr.
run_load() { # name url viewers duration server-pid [extra options...]
    local name=$1 url=$2 n=$3 dur=$4 pid=$5
    shift 5
    mkdir -p "$TMP/runs"
    local out=$TMP/runs/$name.json
    echo "$LOAD --url $url --viewers $n --duration $dur --server-pid $pid${*:+ $*} --json" >>"$TMP/commands"
    # In the background and waited for, so a signal to the script is handled at once.
    timeout $((dur + 60)) "$LOAD" --url "$url" --viewers "$n" --duration "$dur" \
        --server-pid "$pid" "$@" --json >"$out" 2>>"$TMP/load.err" &
    LOAD_PID=$!
    local ok=1
    wait "$LOAD_PID" || ok=0
    LOAD_PID=
    if [ "$ok" = 0 ]; then
        log "$name: rtmpd-load failed: $(tail -1 "$TMP/load.err")"
        echo '{}' >"$out"
    fi
    # Memory per viewer against the server's idle RSS (taken once the streams were live), not
    # against the start of this run: an earlier run's freed memory stays in the allocator.
    local base=$RTMPD_IDLE_KIB
    [ "$pid" = "$NGINX_WORKER" ] && base=$NGINX_IDLE_KIB
    [ "$pid" = "${FANOUT_PID:-}" ] && base=$FANOUT_IDLE_KIB
    local end conn
    end=$(jf "$out" server_rss_end_kib)
    conn=$(jf "$out" viewers_connected)
    if [ -n "$end" ] && [ "${conn:-0}" -gt 0 ]; then
        echo "$name rss_per_viewer_kib $(awk -v e="$end" -v b="$base" -v n="$conn" 'BEGIN { printf "%.2f", (e - b) / n }')" >>"$TMP/derived"
    fi
    log "$name: full $(jf "$out" viewers_full)/$n, TTFK p99 $(jf "$out" ttfk_ms_p99) ms, $(jf "$out" mbps_total) Mbit/s, server CPU $(jf "$out" server_cpu_s) s = $(jf "$out" server_cpu_s_per_gb) s/GB, loadgen CPU $(jf "$out" loadgen_cpu_s) s"
    sleep "$PAUSE"
}

wait_playable() { # url server-pid label: until one viewer gets a keyframe
    local i
    for i in $(seq 15); do
        if timeout 20 "$LOAD" --url "$1" --viewers 1 --duration 3 --json >"$TMP/probe.json" 2>/dev/null &&
            [ "$(jf "$TMP/probe.json" ttfk_ms_n)" = 1 ]; then
            return 0
        fi
        sleep 1
    done
    die "$3: $1 never became playable (see $TMP/ffmpeg.log)"
}

# --- servers -----------------------------------------------------------------------------------
RTMPD_HELP=$("$RTMPD" --help 2>&1 || true)
RTMPD_ARGS=(--bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0)
has_opt() { grep -q -- "$1" <<<"$RTMPD_HELP"; }
# Recorders and the static web port are not what this measures; turn off what exists.
for o in --no-flv-record --no-mp4 --no-hls --no-web; do
    if has_opt "$o"; then RTMPD_ARGS+=("$o"); fi
done
if has_opt --data-dir; then
    mkdir -p "$TMP/rtmpd-data"
    RTMPD_ARGS+=(--data-dir "$TMP/rtmpd-data")
fi
if has_opt --web-port && ! has_opt --no-web; then RTMPD_ARGS+=(--web-port 0); fi
# Every viewer comes from 127.0.0.1: the per-address cap (200 by default) would refuse most of them.
if has_opt --max-per-ip; then RTMPD_ARGS+=(--max-per-ip 0); fi
# Extra options for rtmpd, e.g. BENCH_RTMPD_ARGS="--merge-write-ms 200".
read -r -a EXTRA_ARGS <<<"${BENCH_RTMPD_ARGS:-}"
RTMPD_ARGS+=("${EXTRA_ARGS[@]}")
log "starting rtmpd ${RTMPD_ARGS[*]}"
"$RTMPD" "${RTMPD_ARGS[@]}" >"$TMP/rtmpd.log" 2>&1 &
RTMPD_PID=$!
PIDS+=($RTMPD_PID)
line=$(wait_for_line "$TMP/rtmpd.log" 'RTMP listening on' 10) || die "rtmpd did not start: $(tail -5 "$TMP/rtmpd.log")"
RTMPD_RTMP=$(sed -n 's/.*RTMP listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
line=$(wait_for_line "$TMP/rtmpd.log" 'HTTP listening on' 10) || die "rtmpd has no HTTP listener"
RTMPD_HTTP=$(sed -n 's/.*HTTP listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' <<<"$line")
[ -n "$RTMPD_RTMP" ] && [ -n "$RTMPD_HTTP" ] || die "cannot read rtmpd's ports from: $(head -5 "$TMP/rtmpd.log")"
log "rtmpd pid $RTMPD_PID: RTMP $RTMPD_RTMP, HTTP $RTMPD_HTTP"

NGINX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
sed -e "s|@MODULE@|$NGINX_MODULE|" -e "s|@PREFIX@|$TMP/nginx|g" -e "s|@PORT@|$NGINX_PORT|" \
    "$ROOT/tools/nginx-rtmp.conf.in" >"$TMP/nginx/nginx.conf"
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=($NGINX_PID)
NGINX_WORKER=
for _ in $(seq 50); do
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | awk 'NR == 1' || true)
    [ -n "$NGINX_WORKER" ] && ss -Hltn "sport = :$NGINX_PORT" | grep -q . && break
    sleep 0.1
done
[ -n "$NGINX_WORKER" ] || die "nginx did not start: $(cat "$TMP/nginx/error.log" 2>/dev/null | tail -5)"
log "nginx master $NGINX_PID, worker $NGINX_WORKER: RTMP $NGINX_PORT"

# The floor for scenario d: the ~230 kbps file as a live HTTP-FLV stream, every viewer written
# once per 100 ms (tools/bare-fanout.rs; no hub, no queues, no policy).
if [ "$BIG_FLOOR" = 1 ]; then
    "$FANOUT" "$MEDIA/s230k.flv" 100 >"$TMP/fanout.log" 2>&1 &
    FANOUT_PID=$!
    PIDS+=($FANOUT_PID)
    line=$(wait_for_line "$TMP/fanout.log" '^port ' 10) || die "bare-fanout did not start: $(tail -3 "$TMP/fanout.log")"
    FANOUT_PORT=${line#port }
    log "bare fan-out pid $FANOUT_PID: HTTP $FANOUT_PORT"
fi

# The same files to both servers.
publish "$MEDIA/s2m.flv" "rtmp://127.0.0.1:$RTMPD_RTMP/live/s2m"
publish "$MEDIA/s230k.flv" "rtmp://127.0.0.1:$RTMPD_RTMP/live/s230k"
publish "$MEDIA/s2m.flv" "rtmp://127.0.0.1:$NGINX_PORT/live/s2m"
publish "$MEDIA/s230k.flv" "rtmp://127.0.0.1:$NGINX_PORT/live/s230k"
R_RTMP=rtmp://127.0.0.1:$RTMPD_RTMP/live
R_HTTP=http://127.0.0.1:$RTMPD_HTTP/live
R_WS=ws://127.0.0.1:$RTMPD_HTTP/live
N_RTMP=rtmp://127.0.0.1:$NGINX_PORT/live
for s in s2m s230k; do
    wait_playable "$R_RTMP/$s" "$RTMPD_PID" rtmpd
    wait_playable "$N_RTMP/$s" "$NGINX_WORKER" nginx
done
hwm_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo '?'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
RTMPD_IDLE_KIB=$(rss_kib "$RTMPD_PID")
NGINX_IDLE_KIB=$(rss_kib "$NGINX_WORKER")
FANOUT_IDLE_KIB=$(if [ "$BIG_FLOOR" = 1 ]; then rss_kib "$FANOUT_PID"; else echo 0; fi)
log "streams are live (idle RSS: rtmpd $RTMPD_IDLE_KIB KiB, nginx worker $NGINX_IDLE_KIB KiB); $REPS repetition(s), ${DURATION}s per run"

# --- scenarios ---------------------------------------------------------------------------------
# Repetitions alternate between the servers so background load on this shared machine hits
# both alike.
for ((r = 1; r <= REPS; r++)); do
    run_load "a-rtmpd-rtmp-$r" "$R_RTMP/s2m" "$VIEWERS" "$DURATION" "$RTMPD_PID"
    run_load "a-nginx-rtmp-$r" "$N_RTMP/s2m" "$VIEWERS" "$DURATION" "$NGINX_WORKER"
    run_load "b-rtmpd-httpflv-$r" "$R_HTTP/s2m.flv" "$VIEWERS" "$DURATION" "$RTMPD_PID"
    run_load "c-rtmpd-wsflv-$r" "$R_WS/s2m.flv" "$VIEWERS" "$DURATION" "$RTMPD_PID"
done
# Ten thousand connects are spread over BIG_VIEWERS/BIG_RAMP seconds: in one burst they overflow
# listen backlogs, and the SYN retries (1 s, 3 s, 7 s) would be measured instead of the server.
run_load "d-rtmpd-httpflv-1" "$R_HTTP/s230k.flv" "$BIG_VIEWERS" "$BIG_DURATION" "$RTMPD_PID" --ramp "$BIG_RAMP"
if [ "$BIG_FLOOR" = 1 ]; then
    run_load "d-floor-httpflv-1" "http://127.0.0.1:$FANOUT_PORT/live/s230k.flv" "$BIG_VIEWERS" "$BIG_DURATION" "$FANOUT_PID" --ramp "$BIG_RAMP"
fi
if [ "$BIG_NGINX" = 1 ]; then
    run_load "d-nginx-rtmp-1" "$N_RTMP/s230k" "$BIG_VIEWERS" "$BIG_DURATION" "$NGINX_WORKER" --ramp "$BIG_RAMP"
fi
for p in rtmp httpflv wsflv; do
    case $p in
    rtmp) u=$R_RTMP/s2m ;;
    httpflv) u=$R_HTTP/s2m.flv ;;
    wsflv) u=$R_WS/s2m.flv ;;
    esac
    run_load "e-rtmpd-$p-1" "$u" "$TTFK_VIEWERS" "$TTFK_DURATION" "$RTMPD_PID" --ramp "$TTFK_RAMP"
done
run_load "e-nginx-rtmp-1" "$N_RTMP/s2m" "$TTFK_VIEWERS" "$TTFK_DURATION" "$NGINX_WORKER" --ramp "$TTFK_RAMP"

# --- report ------------------------------------------------------------------------------------
# Every run's JSON is kept for a closer look.
rm -rf "$ROOT/target/bench-runs"
cp -r "$TMP/runs" "$ROOT/target/bench-runs"
field() { # prefix key -> values over the repetitions
    local f v
    if [ "$2" = rss_per_viewer_kib ]; then
        awk -v p="$1-" 'index($1, p) == 1 { print $3 }' "$TMP/derived" 2>/dev/null
        return 0
    fi
    for f in "$TMP/runs/$1"-*.json; do
        [ -f "$f" ] || continue
        v=$(jf "$f" "$2")
        if [ -n "$v" ]; then echo "$v"; fi
    done
}
NGINX_A=$(median $(field a-nginx-rtmp server_cpu_s_per_gb))
NGINX_D=$(median $(field d-nginx-rtmp server_cpu_s_per_gb))
row() { # scenario server protocol prefix
    local p=$4
    local gb req ref=n/a ratio=n/a mem=-
    gb=$(median $(field "$p" server_cpu_s_per_gb))
    req=$(maximum $(field "$p" viewers_requested))
    case $1 in
    a | b | c) ref=$NGINX_A ;;
    d) ref=$NGINX_D ;;
    esac
    # Memory per viewer means little for the small runs of e, after the big run of d.
    if [ "$1" != e ]; then mem=$(num "$(median $(field "$p" rss_per_viewer_kib))" 1); fi
    if [[ "$gb" =~ ^[0-9.]+$ && "$ref" =~ ^[0-9.]+$ ]]; then
        ratio=$(awk -v a="$gb" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    fi
    printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$1" "$2" "$3" "${req:-?}" "$(minimum $(field "$p" viewers_full))" \
        "$(num "$(median $(field "$p" ttfk_ms_p50))" 1)" "$(num "$(median $(field "$p" ttfk_ms_p99))" 1)" \
        "$(num "$(median $(field "$p" max_stall_ms_p99))" 0)" "$(num "$(median $(field "$p" mbps_total))" 0)" \
        "$(num "$(median $(field "$p" server_cpu_s))" 2)" "$(num "$gb" 3)" "$ratio" \
        "$(awk -v k="$(maximum $(field "$p" server_rss_peak_kib))" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$mem" "$(num "$(median $(field "$p" loadgen_cpu_s))" 2)"
}
{
    echo "## rtmpd-load benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr);"
    echo "$("$NGINX" -v 2>&1) with libnginx-mod-rtmp (1 worker); rtmpd $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Streams: 60 s testsrc2+sine looped, H.264 High + AAC, keyframe every 2 s: 2 Mbps (1280x720p30) and ~230 kbps (426x240p25)."
    echo "Runs: $REPS repetition(s) of a-c, ${DURATION} s each (medians; \"full\" is the minimum); d ${BIG_DURATION} s at ${BIG_RAMP} connects/s; e ${TTFK_DURATION} s at ${TTFK_RAMP} connects/s."
    echo
    echo "| | server | protocol | viewers | full stream | TTFK p50 / p99 ms | max stall p99 ms | Mbit/s | server CPU s | CPU s/GB | vs nginx RTMP | RSS peak MiB | KiB/viewer | loadgen CPU s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    row a rtmpd RTMP a-rtmpd-rtmp
    row a nginx-rtmp RTMP a-nginx-rtmp
    row b rtmpd HTTP-FLV b-rtmpd-httpflv
    row c rtmpd WS-FLV c-rtmpd-wsflv
    row d rtmpd HTTP-FLV d-rtmpd-httpflv
    if [ "$BIG_FLOOR" = 1 ]; then row d "bare fan-out (floor)" HTTP-FLV d-floor-httpflv; fi
    if [ "$BIG_NGINX" = 1 ]; then row d nginx-rtmp RTMP d-nginx-rtmp; fi
    row e rtmpd RTMP e-rtmpd-rtmp
    row e rtmpd HTTP-FLV e-rtmpd-httpflv
    row e rtmpd WS-FLV e-rtmpd-wsflv
    row e nginx-rtmp RTMP e-nginx-rtmp
    echo
    echo "a-c: 1 stream of 2 Mbps to $VIEWERS viewers; d: ~230 kbps to $BIG_VIEWERS viewers; e: $TTFK_VIEWERS viewers joining at $TTFK_RAMP/s."
    echo "\"vs nginx RTMP\" divides CPU s/GB by nginx-rtmp's RTMP figure at the same load (a-c: scenario a; d: scenario d). Target: at most 0.20."
    if [ "$BIG_FLOOR" = 1 ]; then
        d_r=$(median $(field d-rtmpd-httpflv server_cpu_s_per_gb))
        d_f=$(median $(field d-floor-httpflv server_cpu_s_per_gb))
        echo "d against the floor (tools/bare-fanout.rs: one write(2) per viewer per 100 ms, no hub, no queues, no policy): rtmpd / floor = $(awk -v a="$d_r" -v b="$d_f" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }') (target: at most 1.05)."
    fi
    echo "RSS peak: the server's highest VmRSS within the runs of that row (sampled every 100 ms). Lifetime peak (VmHWM) at the end: rtmpd $(hwm_mib "$RTMPD_PID") MiB, nginx worker $(hwm_mib "$NGINX_WORKER") MiB."
    echo "KiB/viewer: server VmRSS at the end of the run (viewers still connected) minus its idle VmRSS with the streams live, per connected viewer (includes any per-viewer queue the run built up)."
    echo "The load generator shares the $(nproc) cores with the server; its CPU time is in the last column."
    echo
    echo "Commands (rtmpd-load, in order):"
    echo
    echo '```'
    sed "s|$ROOT/||" "$TMP/commands"
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
    echo
    for f in "$TMP"/runs/*.json; do
        e=$(sed -n 's/.*"errors":{\(.*\)}}.*/\1/p' "$f")
        [ -n "$e" ] && echo "- $(basename "$f" .json): $e"
    done
    true
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
log "saved $RESULTS"
