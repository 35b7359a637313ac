#!/usr/bin/env bash
# tools/bench-tls.sh: what TLS costs rtmpd per byte delivered. ONE rtmpd serves the 2 Mbps test
# stream on its HTTP and its HTTPS port; rtmpd-load drives 1,000 HTTP-FLV viewers, then 1,000
# HTTPS-FLV viewers (the same stream, the same URL path), alternating within every repetition so
# that the shared machine's drift hits both alike. Reports rtmpd's CPU s/GB per protocol
# (medians), the ratio HTTPS/HTTP, and the floor: AES-GCM alone on this CPU (openssl speed).
# Traffic goes to 127.0.0.1 only; the script kills only the processes it started.
# Results: a Markdown table on stdout and in target/bench-tls-results.md.
# Settings (environment): see tools/README.md. BENCH_QUICK=1 runs a ~2 minute version.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    D_REPS=1 D_DURATION=10 D_VIEWERS=200
else
    D_REPS=3 D_DURATION=30 D_VIEWERS=1000
fi
REPS=${BENCH_REPS:-$D_REPS}             # repetitions of each protocol (median reported)
DURATION=${BENCH_DURATION:-$D_DURATION} # seconds per run
VIEWERS=${BENCH_VIEWERS:-$D_VIEWERS}    # viewers per run
PAUSE=${BENCH_PAUSE:-3}                 # seconds between runs, for sockets to drain
WATCHDOG=${BENCH_WATCHDOG:-$((REPS * 2 * (DURATION + PAUSE + 70) + 600))} # cap on the script, s
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
FLOOR=${BENCH_FLOOR:-1}                 # also measure AES-GCM alone with openssl speed
CERT=${BENCH_TLS_CERT:-$ROOT/tests/data/tls/cert.pem}
KEY=${BENCH_TLS_KEY:-$ROOT/tests/data/tls/key.pem}

MEDIA=$ROOT/target/bench-media
RESULTS=$ROOT/target/bench-tls-results.md
RTMPD=$ROOT/target/release/rtmpd
LOAD=$ROOT/target/release/rtmpd-load

log() { printf '[bench-tls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes we own --------------------------------------------------------------------------
TMP=$(mktemp -d /tmp/rtmpd-bench-tls.XXXXXX)
PIDS=()     # the server, the publisher, the watchdog: alive until the end
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
[ -f "$CERT" ] && [ -f "$KEY" ] || die "no certificate/key at $CERT / $KEY"

# 1,000 viewers need 1,000 descriptors in the server and 1,000 in the load generator.
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ]; then
    ulimit -n "$HARD"
    if [ $((VIEWERS + 200)) -gt "$HARD" ]; then
        log "open-file hard limit is $HARD: $((HARD - 200)) viewers instead of $VIEWERS"
        VIEWERS=$((HARD - 200))
    fi
else
    ulimit -n 1048576 2>/dev/null || true
fi

if [ "$SKIP_BUILD" != 1 ]; then
    log "cargo build --release --bins"
    cargo build --release --bins >&2
fi
[ -x "$RTMPD" ] || die "$RTMPD missing"
[ -x "$LOAD" ] || die "$LOAD missing"
"$LOAD" --help | grep -q 'https://' || die "$LOAD has no https:// viewers (rebuild it)"

# --- the test stream (cached; the same file and settings as tools/bench.sh) ---------------------
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

# --- helpers (as in tools/bench.sh) -------------------------------------------------------------
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
minimum() { printf '%s\n' "$@" | awk 'NF && (m == "" || $1 < m) { m = $1 } END { print m }'; }
maximum() { printf '%s\n' "$@" | awk 'NF && (m == "" || $1 > m) { m = $1 } END { print m }'; }
isnum() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# One load run; the JSON goes to $TMP/runs/NAME.json and a one-line summary to stderr.
run_load() { # name url
    local name=$1 url=$2
    mkdir -p "$TMP/runs"
    local out=$TMP/runs/$name.json
    echo "$LOAD --url $url --viewers $VIEWERS --duration $DURATION --server-pid $RTMPD_PID --json" >>"$TMP/commands"
    # In the background and waited for, so a signal to the script is handled at once.
    timeout $((DURATION + 60)) "$LOAD" --url "$url" --viewers "$VIEWERS" --duration "$DURATION" \
        --server-pid "$RTMPD_PID" --json >"$out" 2>>"$TMP/load.err" &
    LOAD_PID=$!
    local ok=1
    wait "$LOAD_PID" || ok=0
    LOAD_PID=
    if [ "$ok" = 0 ]; then
        log "$name: rtmpd-load failed: $(tail -1 "$TMP/load.err")"
        echo '{}' >"$out"
    fi
    log "$name: full $(jf "$out" viewers_full)/$VIEWERS, $(jf "$out" mbps_total) Mbit/s, server CPU $(jf "$out" server_cpu_s) s = $(jf "$out" server_cpu_s_per_gb) s/GB, loadgen CPU $(jf "$out" loadgen_cpu_s) s"
    sleep "$PAUSE"
}

wait_playable() { # url: until one viewer gets a keyframe
    local i
    for i in $(seq 15); do
        if timeout 20 "$LOAD" --url "$1" --viewers 1 --duration 3 --json >"$TMP/probe.json" 2>/dev/null &&
            [ "$(jf "$TMP/probe.json" ttfk_ms_n)" = 1 ]; then
            return 0
        fi
        sleep 1
    done
    die "$1 never became playable (see $TMP/ffmpeg.log, $TMP/rtmpd.log)"
}

# --- the server --------------------------------------------------------------------------------
RTMPD_ARGS=(--bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --https-port 0 --tls-cert "$CERT" --tls-key "$KEY"
    --no-web --no-flv-record --no-mp4 --no-hls --max-per-ip 0)
mkdir -p "$TMP/rtmpd-data"
RTMPD_ARGS+=(--data-dir "$TMP/rtmpd-data")
# Extra options for rtmpd, e.g. BENCH_RTMPD_ARGS="--merge-write-ms 200".
read -r -a EXTRA_ARGS <<<"${BENCH_RTMPD_ARGS:-}"
RTMPD_ARGS+=("${EXTRA_ARGS[@]}")
log "starting rtmpd ${RTMPD_ARGS[*]}"
"$RTMPD" "${RTMPD_ARGS[@]}" >"$TMP/rtmpd.log" 2>&1 &
RTMPD_PID=$!
PIDS+=($RTMPD_PID)
port_of() { # label -> the port of "LABEL listening on ADDR:PORT"
    local line
    line=$(wait_for_line "$TMP/rtmpd.log" "$1 listening on" 10) || die "rtmpd has no $1 listener: $(tail -5 "$TMP/rtmpd.log")"
    sed -n "s/.*$1 listening on [^ ]*:\([0-9][0-9]*\).*/\1/p" <<<"$line"
}
RTMPD_RTMP=$(port_of RTMP)
RTMPD_HTTP=$(port_of HTTP)
RTMPD_HTTPS=$(port_of HTTPS)
[ -n "$RTMPD_RTMP" ] && [ -n "$RTMPD_HTTP" ] && [ -n "$RTMPD_HTTPS" ] ||
    die "cannot read rtmpd's ports from: $(head -8 "$TMP/rtmpd.log")"
log "rtmpd pid $RTMPD_PID: RTMP $RTMPD_RTMP, HTTP $RTMPD_HTTP, HTTPS $RTMPD_HTTPS"

ffmpeg -nostdin -v error -re -stream_loop -1 -i "$MEDIA/s2m.flv" -c copy -f flv \
    "rtmp://127.0.0.1:$RTMPD_RTMP/live/s2m" >>"$TMP/ffmpeg.log" 2>&1 &
PIDS+=($!)
U_HTTP=http://127.0.0.1:$RTMPD_HTTP/live/s2m.flv
U_HTTPS=https://127.0.0.1:$RTMPD_HTTPS/live/s2m.flv
wait_playable "$U_HTTP"
wait_playable "$U_HTTPS"
TLS_SESSION=$(jf "$TMP/probe.json" tls_session)
log "stream is live; TLS: ${TLS_SESSION:-?}; $REPS repetition(s) of $VIEWERS viewers, ${DURATION}s per run"

# --- runs --------------------------------------------------------------------------------------
# Within a repetition both protocols run back to back; the order flips every repetition
# (http, https | https, http | ...) so that neither always runs second.
for ((r = 1; r <= REPS; r++)); do
    if [ $((r % 2)) = 1 ]; then
        run_load "http-$r" "$U_HTTP"
        run_load "https-$r" "$U_HTTPS"
    else
        run_load "https-$r" "$U_HTTPS"
        run_load "http-$r" "$U_HTTP"
    fi
done

# --- the floor: AES-GCM alone ------------------------------------------------------------------
# openssl speed, one core, 16 KiB buffers (a full TLS record), CPU user time as the divisor:
# bytes/s encrypted, as CPU s/GB. Not rustls's code (ring's), but the same AES-NI + CLMUL kind.
FLOOR_128=n/a FLOOR_256=n/a
aes_s_per_gb() { # openssl cipher -> CPU s per 1e9 bytes
    local bps
    bps=$(timeout 30 openssl speed -mr -evp "$1" -bytes 16384 -seconds 3 2>/dev/null |
        awk -F: '/^\+F:/ { print $4 }' || true)
    if isnum "$bps" && [ "${bps%%.*}" -gt 0 ]; then
        awk -v b="$bps" 'BEGIN { printf "%.4f", 1e9 / b }'
    else
        echo n/a
    fi
}
if [ "$FLOOR" = 1 ] && command -v openssl >/dev/null; then
    FLOOR_128=$(aes_s_per_gb aes-128-gcm)
    FLOOR_256=$(aes_s_per_gb aes-256-gcm)
    log "AES-GCM alone (openssl speed): 128 $FLOOR_128 s/GB, 256 $FLOOR_256 s/GB"
fi

# --- report ------------------------------------------------------------------------------------
rm -rf "$ROOT/target/bench-tls-runs"
cp -r "$TMP/runs" "$ROOT/target/bench-tls-runs"
field() { # prefix key -> values over the repetitions
    local f v
    for f in "$TMP/runs/$1"-*.json; do
        [ -f "$f" ] || continue
        v=$(jf "$f" "$2")
        if [ -n "$v" ]; then echo "$v"; fi
    done
}
GB_HTTP=$(median $(field http server_cpu_s_per_gb))
GB_HTTPS=$(median $(field https server_cpu_s_per_gb))
RATIO=n/a
if isnum "$GB_HTTP" && isnum "$GB_HTTPS"; then
    RATIO=$(awk -v a="$GB_HTTPS" -v b="$GB_HTTP" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
fi
# Per repetition: HTTPS s/GB over the HTTP s/GB of the same repetition.
PER_REP=
for ((r = 1; r <= REPS; r++)); do
    a=$(jf "$TMP/runs/https-$r.json" server_cpu_s_per_gb)
    b=$(jf "$TMP/runs/http-$r.json" server_cpu_s_per_gb)
    if isnum "$a" && isnum "$b"; then
        PER_REP="$PER_REP $(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')"
    fi
done
# The negotiated suite picks the floor: AES-256-GCM or AES-128-GCM.
case $TLS_SESSION in
*AES_128*) FLOOR_USED=$FLOOR_128 FLOOR_NAME=AES-128-GCM ;;
*) FLOOR_USED=$FLOOR_256 FLOOR_NAME=AES-256-GCM ;;
esac
FLOOR_RATIO=n/a
if isnum "$FLOOR_USED" && isnum "$GB_HTTP"; then
    FLOOR_RATIO=$(awk -v f="$FLOOR_USED" -v b="$GB_HTTP" 'BEGIN { if (b > 0) printf "%.2f", (b + f) / b; else print "n/a" }')
fi
row() { # protocol prefix ratio
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$1" "$(maximum $(field "$2" viewers_requested))" "$(minimum $(field "$2" viewers_full))" \
        "$(num "$(median $(field "$2" mbps_total))" 0)" "$(num "$(median $(field "$2" server_cpu_s))" 2)" \
        "$(num "$(median $(field "$2" server_cpu_s_per_gb))" 3)" "$3" \
        "$(awk -v k="$(maximum $(field "$2" server_rss_peak_kib))" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(num "$(median $(field "$2" loadgen_cpu_s))" 2)"
}
{
    echo "## rtmpd TLS cost, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr); rtmpd $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Stream: 60 s testsrc2+sine looped, H.264 High + AAC, 2 Mbps (1280x720p30), keyframe every 2 s; one rtmpd, HTTP and HTTPS ports."
    echo "Runs: $REPS repetition(s) per protocol, $VIEWERS viewers, ${DURATION} s each, alternating (medians; \"full\" is the minimum). TLS: ${TLS_SESSION:-?}, certificate tests/data/tls (EC P-256)."
    echo
    echo "| protocol | viewers | full stream | Mbit/s | server CPU s | CPU s/GB | vs HTTP-FLV | RSS peak MiB | loadgen CPU s |"
    echo "|---|---|---|---|---|---|---|---|---|"
    row HTTP-FLV http 1.00
    row HTTPS-FLV https "$RATIO"
    echo
    echo "HTTPS/HTTP CPU s/GB (ratio of the medians): **$RATIO**; per repetition:${PER_REP:- n/a}."
    echo "GB and Mbit/s count the HTTP response bytes the viewers got (for HTTPS: decrypted, without TLS record overhead), so both rows divide by the same quantity."
    echo "Floor (AES-GCM alone, \`openssl speed -evp\`, 16 KiB buffers, one core): AES-128-GCM $(num "$FLOOR_128" 3) CPU s/GB, AES-256-GCM $(num "$FLOOR_256" 3) CPU s/GB."
    echo "With the negotiated $FLOOR_NAME, HTTP-FLV's cost plus the cipher alone would be $FLOOR_RATIO x HTTP-FLV: the lowest ratio any TLS server could reach on this CPU."
    echo "The load generator shares the $(nproc) cores with the server (and decrypts its HTTPS viewers); its CPU time is in the last column."
    echo
    echo "Server: \`$(sed "s|$ROOT/||g" <<<"$RTMPD ${RTMPD_ARGS[*]}" | sed "s|$TMP|TMP|g")\`"
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
