#!/usr/bin/env bash
# Static file benchmark (issue 5): `rtmpd file-gateway` (release build) against nginx with one
# worker, serving the same temporary folder, in the same run, on 127.0.0.1 only.
#   - requests/s for a small HTML file at 100 and 10,000 connections (wrk -t2)
#   - MB/s for a 2 MB segment at 100 connections
#   - idle keep-alive connections held (opened by a small Python client; /proc/PID/fd counted,
#     and the server must still answer a fresh request while they are open)
# Medians of RUNS runs (servers alternate within each run so both see the same machine load).
# Prints a Markdown table and saves it to target/bench-files.md. Kills only the PIDs it started.
#
# Environment: DURATION (seconds per wrk run, default 10), RUNS (default 3), HOLD (idle
# connections to open, default 10000), BIN (rtmpd binary, default target/release/rtmpd, built
# with `cargo build --release` when missing), BASE_BIN (a second rtmpd binary, e.g. an older
# build, measured as "rtmpd-base" for before/after figures), NGINX (default nginx), SKIP_NGINX=1.
# Besides wrk's figures, the server's CPU time per request (utime+stime from /proc/PID/stat over
# the run) is reported: on a shared machine it moves far less with the load than requests/s.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
HOLD=${HOLD:-10000}
BIN=${BIN:-target/release/rtmpd}
NGINX=${NGINX:-nginx}
OUT=target/bench-files.md

# 10,000 wrk connections + 10,000 server sockets; each process needs its own headroom.
ulimit -n 20000 || { echo "bench-files: cannot raise the open-file limit to 20000" >&2; exit 1; }
for tool in wrk python3; do
    command -v "$tool" >/dev/null || { echo "bench-files: $tool not found" >&2; exit 1; }
done
if [ "${SKIP_NGINX:-0}" != 1 ] && ! command -v "$NGINX" >/dev/null; then
    echo "bench-files: nginx not found (SKIP_NGINX=1 to run without it)" >&2
    exit 1
fi
if [ ! -x "$BIN" ]; then
    cargo build --release
fi

TMP=$(mktemp -d /tmp/bench-files.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# The folder both servers serve: a small page like the home page, a 2 MB MPEG-TS-sized segment.
ROOT=$TMP/www
mkdir -p "$ROOT/hls/live/s"
python3 - "$ROOT" <<'EOF'
import os, sys
root = sys.argv[1]
page = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>rtmpd</title></head>\n<body>\n" + \
    "".join(f"<p>line {i}: static file benchmark page</p>\n" for i in range(12)) + "</body></html>\n"
open(os.path.join(root, "index.html"), "w").write(page)
open(os.path.join(root, "hls/live/s/segment_1.ts"), "wb").write(os.urandom(2 * 1024 * 1024))
EOF
# nginx's worker may run as nobody.
chmod -R a+rX "$TMP"
SMALL_BYTES=$(stat -c %s "$ROOT/index.html")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-files: nothing listening on port $1" >&2
    return 1
}

# rtmpd: access log to a file, like nginx's below (buffered, flushed each second, both).
RTMPD_PORT=$(free_port)
# Every client comes from 127.0.0.1: no per-address cap (where the build has one).
open_limits() { if "$1" --help 2>&1 | grep -q -- --max-per-ip; then echo --max-per-ip 0; fi; }
# shellcheck disable=SC2046
"$BIN" file-gateway 127.0.0.1 "$RTMPD_PORT" "$ROOT" --access-log "$TMP/rtmpd-access.log" \
    --log-level warn $(open_limits "$BIN") 2>"$TMP/rtmpd.log" &
RTMPD_PID=$!
PIDS+=("$RTMPD_PID")
wait_port "$RTMPD_PORT"
BASE_PORT=""
if [ -n "${BASE_BIN:-}" ]; then
    BASE_PORT=$(free_port)
    # shellcheck disable=SC2046
    "$BASE_BIN" file-gateway 127.0.0.1 "$BASE_PORT" "$ROOT" --access-log "$TMP/base-access.log" \
        --log-level warn $(open_limits "$BASE_BIN") 2>"$TMP/base.log" &
    BASE_PID=$!
    PIDS+=("$BASE_PID")
    wait_port "$BASE_PORT"
fi

NGINX_PORT=""
NGINX_WORKER=""
if [ "${SKIP_NGINX:-0}" != 1 ]; then
    NGINX_PORT=$(free_port)
    mkdir -p "$TMP/nginx/logs"
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
worker_rlimit_nofile 20000;
events {
    worker_connections 20000;
    use epoll;
    multi_accept on;
}
http {
    types {
        text/html html;
        video/mp2t ts;
        application/vnd.apple.mpegurl m3u8;
    }
    default_type application/octet-stream;
    access_log $TMP/nginx/logs/access.log combined buffer=64k flush=1s;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx/tmp_body;
    proxy_temp_path $TMP/nginx/tmp_proxy;
    fastcgi_temp_path $TMP/nginx/tmp_fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp_uwsgi;
    scgi_temp_path $TMP/nginx/tmp_scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $ROOT;
        add_header Access-Control-Allow-Origin *;
    }
}
EOF
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$NGINX_PORT"
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One wrk run against the server whose (worker) PID is $1; prints
# "<requests/s> <MB/s> <errors> <server CPU us per request>".
run_wrk() {
    local pid=$1 conns=$2 url=$3 out t0 t1
    t0=$(cpu_ticks "$pid")
    out=$(timeout $((DURATION + 60)) wrk -t2 -c"$conns" -d"${DURATION}s" --timeout 10s "$url" 2>&1) || true
    t1=$(cpu_ticks "$pid")
    python3 - "$out" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'EOF'
import re, sys
out = sys.argv[1]
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
done = re.search(r"(\d+) requests in", out)
cpu_us = ticks * 1e6 / hz / int(done.group(1)) if done and int(done.group(1)) else 0
rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
tr = re.search(r"Transfer/sec:\s+([\d.]+)([KMG]?B)", out)
mult = {"B": 1 / 1e6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}
err = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
if m:
    err += sum(int(x) for x in m.groups())
m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if m:
    err += int(m.group(1))
if not rps:
    print("0 0 -1")
    sys.stderr.write("wrk failed:\n" + out + "\n")
else:
    print(rps.group(1), "%.1f" % (float(tr.group(1)) * mult[tr.group(2)]) if tr else "0", err, "%.2f" % cpu_us)
EOF
}

# The idle-connection client: opens N keep-alive connections, one request each, keeps them
# open, then checks a fresh request is still answered. Prints "<opened> <server fds> <ok>".
cat >"$TMP/hold.py" <<'EOF'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n"
socks = []
deadline = time.time() + 120
for i in range(n):
    if time.time() > deadline:
        break
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as e:
        sys.stderr.write(f"connect #{i}: {e}\n")
        break
    s.sendall(req)
    socks.append(s)
# Every connection must get its answer (the server accepted and served it, not just the kernel).
answered = 0
for s in socks:
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HTTP/1.1 200"):
            answered += 1
    except OSError:
        pass
time.sleep(0.5)
fds = len(__import__("os").listdir(f"/proc/{pid}/fd"))
# A fresh client still gets served while they are all held open.
ok = 0
try:
    t = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
    data = s.recv(65536)
    ok = 1 if data.startswith(b"HTTP/1.1 200") else 0
except OSError:
    pass
print(answered, fds, ok)
EOF

hold() {
    timeout 300 python3 "$TMP/hold.py" "$1" "$HOLD" "$2" || echo "0 0 0"
}

declare -A RES
servers=(rtmpd)
[ -n "$BASE_PORT" ] && servers+=(rtmpd-base)
[ -n "$NGINX_PORT" ] && servers+=(nginx)
port_of() {
    case $1 in
        rtmpd) echo "$RTMPD_PORT" ;;
        rtmpd-base) echo "$BASE_PORT" ;;
        *) echo "$NGINX_PORT" ;;
    esac
}
pid_of() {
    case $1 in
        rtmpd) echo "$RTMPD_PID" ;;
        rtmpd-base) echo "$BASE_PID" ;;
        *) echo "$NGINX_WORKER" ;;
    esac
}

echo "bench-files: rtmpd pid $RTMPD_PID on $RTMPD_PORT, nginx ${NGINX_PORT:-skipped}; ${RUNS} runs of ${DURATION}s" >&2
for run in $(seq "$RUNS"); do
    for s in "${servers[@]}"; do
        p=$(port_of "$s")
        pid=$(pid_of "$s")
        RES[$s,small100,$run]=$(run_wrk "$pid" 100 "http://127.0.0.1:$p/index.html")
        RES[$s,small10k,$run]=$(run_wrk "$pid" 10000 "http://127.0.0.1:$p/index.html")
        RES[$s,seg100,$run]=$(run_wrk "$pid" 100 "http://127.0.0.1:$p/hls/live/s/segment_1.ts")
        echo "run $run $s: small/100 ${RES[$s,small100,$run]} | small/10k ${RES[$s,small10k,$run]} | 2MB/100 ${RES[$s,seg100,$run]}" >&2
    done
done
for s in "${servers[@]}"; do
    [ "$s" = rtmpd-base ] && continue
    RES[$s,hold]=$(hold "$(port_of "$s")" "$(pid_of "$s")")
    echo "$s held: ${RES[$s,hold]} (answered, server fds, fresh request ok)" >&2
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$RTMPD_PID/status")

# Medians and the table.
for key in "${!RES[@]}"; do echo "$key ${RES[$key]}"; done >"$TMP/results.txt"
python3 - "$TMP/results.txt" "$SMALL_BYTES" "$DURATION" "$RUNS" "$HOLD" "$RSS_KB" "$(uname -r)" "$(nproc)" "$(cat /proc/loadavg)" >"$OUT" <<'EOF'
import statistics, sys
small, dur, runs, hold, rss, kernel, cores = sys.argv[2:9]
load = sys.argv[9]
res = {}
for line in open(sys.argv[1]):
    parts = line.split()
    res[parts[0]] = parts[1:]
servers = [s for s in ("rtmpd", "rtmpd-base", "nginx") if any(k.startswith(s + ",") for k in res)]
def med(s, test, col):
    vals = [float(v[col]) for k, v in res.items() if k.startswith(f"{s},{test},")]
    return statistics.median(vals) if vals else 0.0
def errs(s, test):
    return sum(max(0, int(float(v[2]))) for k, v in res.items() if k.startswith(f"{s},{test},"))
print(f"### Static files: rtmpd file-gateway vs nginx (1 worker)\n")
print(f"wrk -t2, {dur} s per run, median of {runs} runs; 127.0.0.1, {cores} cores shared with other work "
      f"(load at the end: {load.split()[0]}), kernel {kernel}. Small file: {small} bytes of HTML; segment: 2 MiB.\n")
print("| test | " + " | ".join(servers) + " |")
print("|---|" + "---|" * len(servers))
def row(name, test, col, fmt):
    cells = []
    for s in servers:
        e = errs(s, test)
        cell = fmt.format(med(s, test, col))
        if e:
            cell += f" ({e} errors)"
        cells.append(cell)
    print(f"| {name} | " + " | ".join(cells) + " |")
row("small HTML, 100 connections (requests/s)", "small100", 0, "{:,.0f}")
row("small HTML, 10,000 connections (requests/s)", "small10k", 0, "{:,.0f}")
row("2 MiB segment, 100 connections (MB/s)", "seg100", 1, "{:,.0f}")
row("server CPU per request: small HTML, 100 conns (us)", "small100", 3, "{:.1f}")
row("server CPU per request: small HTML, 10,000 conns (us)", "small10k", 3, "{:.1f}")
row("server CPU per request: 2 MiB segment (us)", "seg100", 3, "{:.0f}")
cells = []
for s in servers:
    if f"{s},hold" not in res:
        cells.append("(not measured)")
        continue
    a, fds, ok = res[f"{s},hold"]
    cells.append(f"{int(a):,} of {int(hold):,} answered, {int(fds):,} fds, fresh request {'served' if ok == '1' else 'FAILED'}")
print("| idle keep-alive connections held | " + " | ".join(cells) + " |")
print(f"\nrtmpd peak RSS over the whole run (VmHWM): {int(rss) / 1024:.1f} MiB.")
EOF
cat "$OUT"
echo "saved to $OUT" >&2
