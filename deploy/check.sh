#!/usr/bin/env bash
# Checks the deployment files without Docker (CI has no daemon): the README's nginx blocks are the files in
# deploy/ and pass `nginx -t` (paths and host names mapped to this machine), and the unquoted regex the
# README once had fails it; docker-compose.yml parses, and every command in it, in the Dockerfile and in
# the systemd unit is one rtmpd accepts (--print-config); then the compose topology (origin, FLV gateway,
# two file gateways, nginx with deploy/nginx.conf) runs on 127.0.0.1 and FFmpeg plays through nginx, and
# the image's HEALTHCHECK commands pass against it. Ends with "N passed, N failed".
# Env: RTMPD_BIN (default target/debug/rtmpd, built when missing), NGINX (default nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

die() { echo "check-deploy: $*" >&2; exit 1; }
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || die "nginx not found (Debian: apt-get install nginx)"
for t in ffmpeg ffprobe curl; do command -v "$t" >/dev/null || die "$t not found"; done
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || die "no python3 with PyYAML (Debian: apt-get install python3-yaml)"
BIN=${RTMPD_BIN:-target/debug/rtmpd}
[ -x "$BIN" ] || cargo build --quiet --bin rtmpd

tmp=$(mktemp -d /tmp/rtmpd-check-deploy.XXXXXX)
# nginx workers run as nobody when started by root: they must reach the cache under here.
chmod 755 "$tmp"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "check-deploy: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@" >"$tmp/check.out" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     | /' "$tmp/check.out" | tail -25
    fi
}

# --- nginx ----------------------------------------------------------------------------------------------
# Every ```nginx block of docs/deployment.md is, byte for byte, a file of deploy/ (so the tested file is the copy).
readme_blocks_are_files() {
    "$PY" - docs/deployment.md deploy <<'EOF'
import os, re, sys
readme, folder = open(sys.argv[1]).read(), sys.argv[2]
blocks = re.findall(r"^```nginx\n(.*?)^```$", readme, re.S | re.M)
files = {n: open(os.path.join(folder, n)).read() for n in os.listdir(folder) if n.endswith(".conf")}
assert blocks, "no nginx block in docs/deployment.md"
for b in blocks:
    match = [n for n, text in files.items() if text == b]
    print("docs/deployment.md block ->", match or "NO FILE")
    assert match, "a docs/deployment.md nginx block differs from every deploy/*.conf:\n" + b[:300]
EOF
}

# `nginx_t FILE [http]`: nginx -t on a copy of deploy/ with the cache path, pid and host names mapped;
# with `http`, FILE is an http-context snippet (the README's) wrapped in a main config.
nginx_t() {
    local file=$1 kind=${2:-main} d
    d=$(mktemp -d "$tmp/nginx.XXXXXX")
    cp deploy/*.conf "$d/"
    mkdir -p "$d/cache"
    [ -f "$file" ] && cp "$file" "$d/"
    sed -i -e "s|/var/cache/nginx|$d/cache|g" -e "s|/tmp/nginx.pid|$d/nginx.pid|g" \
        -e 's/server \(origin\|flv-gateway\|files-[0-9]\):/server 127.0.0.1:/' "$d"/*.conf
    local conf=$d/$(basename "$file")
    if [ "$kind" = http ]; then
        printf 'pid %s/nginx.pid;\nevents {}\nhttp {\n    include %s;\n}\n' "$d" "$(basename "$file")" >"$d/main.conf"
        conf=$d/main.conf
    fi
    "$NGINX" -t -q -p "$d/" -e "$d/error.log" -c "$conf"
}

readme_regex_unquoted_fails() {
    sed 's|location ~ "\(.*\)" {|location ~ \1 {|' deploy/nginx-three-gateways.conf >"$tmp/unquoted.conf"
    grep -q 'location ~ ^/' "$tmp/unquoted.conf" || { echo "the regex line was not found"; return 1; }
    if nginx_t "$tmp/unquoted.conf" http; then
        echo "nginx -t accepted the unquoted regex: this check could not fail"
        return 1
    fi
}

check "docs/deployment.md nginx blocks are deploy/*.conf" readme_blocks_are_files
check "nginx -t: docs/deployment.md's three-gateway example" nginx_t deploy/nginx-three-gateways.conf http
check "nginx -t: the unquoted {1,64} regex is refused (the check can fail)" readme_regex_unquoted_fails
check "nginx -t: deploy/nginx.conf (compose)" nginx_t deploy/nginx.conf

# --- command lines --------------------------------------------------------------------------------------
# `accepts ARGS...`: rtmpd validates them (paths in /var/lib/rtmpd mapped to a folder here).
accepts() {
    mkdir -p "$tmp/var-lib-rtmpd"
    set -- "${@//\/var\/lib\/rtmpd/$tmp/var-lib-rtmpd}"
    "$BIN" "$@" --print-config >"$tmp/print" 2>&1 || { cat "$tmp/print"; return 1; }
    echo "rtmpd $* -> $(head -1 "$tmp/print")"
}

"$PY" - docker-compose.yml >"$tmp/compose.txt" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for name, svc in doc["services"].items():
    if svc.get("image", "").startswith("rtmpd"):
        print(name + "\t" + " ".join(svc["command"]))
EOF
compose_shape() {
    "$PY" - docker-compose.yml deploy/nginx.conf <<'EOF'
import re, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
nginx = open(sys.argv[2]).read()
svc = doc["services"]
assert set(svc) == {"origin", "flv-gateway", "files-1", "files-2", "nginx"}, set(svc)
data = svc["origin"]["command"][svc["origin"]["command"].index("--data-dir") + 1]
assert f"recordings:{data}" in svc["origin"]["volumes"], "the origin's volume is not its --data-dir"
for f in ("files-1", "files-2"):
    c = svc[f]["command"]
    assert c[0] == "file-gateway" and c[3] == data, c
    assert f"recordings:{data}:ro" in svc[f]["volumes"], svc[f]["volumes"]
    assert f"server {f}:{c[2]};" in nginx, f"deploy/nginx.conf does not send files to {f}:{c[2]}"
g = svc["flv-gateway"]["command"]
assert g[:1] == ["flv-gateway"] and g[2] == "http://origin:8501", g
assert f"server flv-gateway:{g[1]};" in nginx
assert "server origin:8501;" in nginx
for name, s in svc.items():
    if name != "nginx":
        assert s.get("stop_signal") == "SIGINT", name
print("services:", ", ".join(svc))
EOF
}
check "docker-compose.yml parses; volumes, ports and nginx upstreams agree" compose_shape
while IFS=$'\t' read -r name cmd; do
    # shellcheck disable=SC2086
    check "compose $name: rtmpd accepts '$cmd'" accepts $cmd
done <"$tmp/compose.txt"

dockerfile_shape() {
    local f=Dockerfile
    grep -Eq '^FROM rust:[^ ]+ AS build' $f && grep -Eq '^FROM debian:[a-z]+-slim' $f &&
        grep -Eq '^USER rtmpd' $f && grep -Eq '^EXPOSE 1935 8501 8000$' $f &&
        grep -Eq '^VOLUME /var/lib/rtmpd' $f && grep -Eq '^HEALTHCHECK .*' $f &&
        grep -Eq '^STOPSIGNAL SIGINT' $f || { echo "a required instruction is missing"; return 1; }
    # The README's build and run lines are the Dockerfile's.
    local build run
    build=$(sed -n 's/^# rtmpd in a container: `\(docker build[^`]*\)`.*/\1/p' $f)
    run=$(sed -n 's/^# `\(docker run[^`]*\)`\.$/\1/p' $f)
    [ -n "$build" ] && [ -n "$run" ] || { echo "the header lines with the commands are missing"; return 1; }
    grep -qF "$build" README.md || { echo "README lacks: $build"; return 1; }
    grep -qF "$run" README.md || { echo "README lacks: $run"; return 1; }
    echo "$build; $run"
}
check "Dockerfile: stages, user, ports, volume, health, stop signal; README has its commands" dockerfile_shape
docker_cmd() {
    local args
    args=$(sed -n 's/^CMD \[\(.*\)\]$/\1/p' Dockerfile | tr -d '",')
    # shellcheck disable=SC2086
    accepts $args
}
check "Dockerfile CMD is accepted" docker_cmd

unit_shape() {
    local u=deploy/rtmpd.service line
    for line in 'Restart=on-failure' 'KillSignal=SIGINT' 'LimitNOFILE=' 'StateDirectory=rtmpd' \
        'ExecStart=/usr/local/bin/rtmpd --data-dir /var/lib/rtmpd'; do
        grep -q "^$line" $u || { echo "missing $line"; return 1; }
    done
    # shellcheck disable=SC2046
    accepts $(sed -n 's|^ExecStart=/usr/local/bin/rtmpd ||p' $u)
    if command -v systemd-analyze >/dev/null; then
        sed "s|/usr/local/bin/rtmpd|$repo/$BIN|" $u >"$tmp/rtmpd.service"
        systemd-analyze verify "$tmp/rtmpd.service"
    fi
}
command -v systemd-analyze >/dev/null || echo "check-deploy: systemd-analyze not found: the unit is checked without it"
check "systemd unit: keys present, ExecStart accepted, systemd-analyze verify" unit_shape

# --- the compose topology on 127.0.0.1 ------------------------------------------------------------------
mkdir -p "$tmp/data"
start() {
    local name=$1
    shift
    "$BIN" "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.log" &
    pids+=($!)
}
addr_of() {
    local i
    for i in $(seq 1 150); do
        if grep -q "$2 listening on " "$tmp/$1.log"; then
            grep -o "$2 listening on [0-9.:]*" "$tmp/$1.log" | head -1 | awk '{print $4}'
            return 0
        fi
        sleep 0.1
    done
    cat "$tmp/$1.log" >&2
    die "$1 did not start"
}
start origin --bind 127.0.0.1 --rtmp-port 0 --http-port 0 --webrtc-port 0 --srt-port 0 --web-port 0 --data-dir "$tmp/data" --hls-fragment 1
rtmp=$(addr_of origin RTMP)
origin=$(addr_of origin HTTP)
start flvgw flv-gateway 0 "http://$origin" --bind 127.0.0.1
flvgw=$(addr_of flvgw HTTP)
start files1 file-gateway 127.0.0.1 0 "$tmp/data"
files1=$(addr_of files1 Web)
start files2 file-gateway 127.0.0.1 0 "$tmp/data"
files2=$(addr_of files2 Web)
front=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/nginx/cache"
cp deploy/nginx.conf deploy/rtmpd_files_proxy.conf "$tmp/nginx/"
sed -i -e "s|/var/cache/nginx|$tmp/nginx/cache|" -e "s|/tmp/nginx.pid|$tmp/nginx/nginx.pid|" \
    -e "s|server flv-gateway:8080;|server $flvgw;|" -e "s|server files-1:8100;|server $files1;|" \
    -e "s|server files-2:8100;|server $files2;|" -e "s|server origin:8501;|server $origin;|" \
    -e "s|listen 80;|listen 127.0.0.1:$front;|" -e "s|worker_processes auto;|worker_processes 1;|" \
    -e "s|access_log /dev/stdout;|access_log $tmp/nginx/access.log;|" "$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx/" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
    >"$tmp/nginx.out" 2>&1 &
pids+=($!)
nginx_url=http://127.0.0.1:$front
for _ in $(seq 1 50); do curl -s -o /dev/null "$nginx_url/api/server" && break; sleep 0.1; done

ffmpeg -nostdin -hide_banner -v error -re -stream_loop -1 -i tests/data/fixture.flv -c copy -f flv \
    "rtmp://$rtmp/live/deploy" >"$tmp/publish.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s "$nginx_url/api/streams" | grep -q '"deploy"' && break; sleep 0.1; done

probe() {
    local s
    s=$(timeout 30 ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$1" | grep -v "^$" | sort -u | tr '\n' ' ')
    echo "$1: $s"
    [ "$s" = "aac h264 " ]
}
status_is() {
    local code
    code=$(curl -s --max-time 10 -o "$tmp/body" -w '%{http_code}' "$2")
    echo "$2: $code"
    [ "$code" = "$1" ]
}
through_gateway() {
    probe "$nginx_url/live/deploy.flv" && grep -q 'live/deploy: upstream .* connected' "$tmp/flvgw.log"
}
ws_through_nginx() {
    "$PY" tools/wsflv.py 127.0.0.1 "$front" /live/deploy.flv 3 "$tmp/ws.flv" && probe "$tmp/ws.flv"
}
hls_through_files() {
    local i
    for i in $(seq 1 100); do
        [ "$(find "$tmp/data/hls" -name 'segment_*.ts' 2>/dev/null | wc -l)" -ge 2 ] && break
        sleep 0.1
    done
    probe "$nginx_url/hls/live/deploy/index.m3u8" || return 1
    # The file gateways answered it, not the origin.
    cat "$tmp/files1.log" "$tmp/files2.log" | grep -q 'GET /hls/live/deploy/'
}
health() {
    # The image's HEALTHCHECK / compose healthcheck command, with its port mapped to this run's.
    local cmd=$1 port=$2
    cmd=${cmd//127.0.0.1\/8501/127.0.0.1\/$port}
    cmd=${cmd//127.0.0.1\/8080/127.0.0.1\/$port}
    cmd=${cmd//127.0.0.1\/8100/127.0.0.1\/$port}
    echo "$cmd"
    bash -c "$cmd"
}
docker_health=$(sed -n 's/^    CMD \["bash", "-c", "\(.*\)"\]$/\1/p' Dockerfile | sed 's/\\\\/\\/g')
compose_health() {
    "$PY" -c 'import sys, yaml; print(yaml.safe_load(open("docker-compose.yml"))["services"][sys.argv[1]]["healthcheck"]["test"][3])' "$1"
}
check "nginx -> origin: /api/streams lists the stream" status_is 200 "$nginx_url/api/streams"
check "nginx -> origin: the home page" status_is 200 "$nginx_url/"
check "nginx -> FLV gateway: HTTP-FLV has H.264 and AAC" through_gateway
check "nginx -> FLV gateway: WS-FLV upgrade and FLV" ws_through_nginx
check "nginx -> file gateways: HLS has H.264 and AAC" hls_through_files
check "nginx: an unknown live stream is 404" status_is 404 "$nginx_url/live/nosuch.flv"
check "Dockerfile HEALTHCHECK passes on the origin" health "$docker_health" "${origin##*:}"
check "compose healthcheck passes on the FLV gateway" health "$(compose_health flv-gateway)" "${flvgw##*:}"
check "compose healthcheck passes on a file gateway" health "$(compose_health files-1)" "${files1##*:}"
check "the Dockerfile HEALTHCHECK fails on a closed port (it can fail)" \
    bash -c "! bash -c \"${docker_health//127.0.0.1\/8501/127.0.0.1\/1}\""

echo "check-deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
