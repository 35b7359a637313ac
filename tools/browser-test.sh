#!/usr/bin/env bash
# Browser tests: plays every page of web/ in Debian's headless Chromium against the real rtmpd binary
# (tests/browser/pages.test.mjs), and publishes from publish.html (tests/browser/publish.test.mjs). Installs playwright-core (tests/browser/package-lock.json) and the
# player libraries (tools/vendor.sh) first. A missing node, npm, chromium or ffmpeg prints
# "skipped: ..." and exits 0, unless RTMPD_REQUIRE_TOOLS=1 (CI), which makes it a failure.
# Usage: tools/browser-test.sh [NAME-PATTERN]
# Env: RTMPD_BIN (default target/debug/rtmpd; built when missing), CHROMIUM (default /usr/bin/chromium).
set -u
cd "$(dirname "$0")/.." || exit 1

skip() {
    if [ "${RTMPD_REQUIRE_TOOLS:-0}" = 1 ]; then
        echo "browser tests: $1 (RTMPD_REQUIRE_TOOLS=1)" >&2
        exit 1
    fi
    echo "skipped: $1"
    exit 0
}

command -v node >/dev/null 2>&1 || skip "node not found"
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || skip "chromium not found"
command -v ffmpeg >/dev/null 2>&1 || skip "ffmpeg not found"
if ! [ tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then
    command -v npm >/dev/null 2>&1 || skip "npm not found (needed for playwright-core)"
    (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) ||
        skip "npm ci failed in tests/browser"
fi
bash tools/vendor.sh || exit 1

# The pages (and web/vendor/) are built into the binary: rebuild it so it has the current ones. Cargo does
# nothing when it is up to date. With RTMPD_BIN set, that binary is tested as it is.
if [ -z "${RTMPD_BIN:-}" ]; then
    cargo build || exit 1
fi
# The files one after another (each shares one server and one browser among its tests, run in order):
# the player pages, then publishing from publish.html with a fake camera (its own browser, with the
# fake-device flags). An argument runs only the tests whose names match it (a regular expression),
# e.g. tools/browser-test.sh WebRTC.
if [ $# -gt 0 ]; then
    exec node --test --test-concurrency=1 --test-name-pattern="$1" tests/browser/pages.test.mjs tests/browser/publish.test.mjs
fi
exec node --test --test-concurrency=1 tests/browser/pages.test.mjs tests/browser/publish.test.mjs
