#!/usr/bin/env bash
# Installs the pinned player libraries (and the home page's QR code generator) (web/package.json + web/package-lock.json) with `npm ci` into
# web/node_modules/ and copies their browser builds into web/vendor/, which build.rs embeds and the
# server serves at /vendor/. Both folders are git-ignored: no third-party code is committed.
# Without npm (or when the install fails) it says so and exits 0: the build still works, and each
# page then reports that /vendor/ is missing and loads the library's public CDN copy instead.
# RTMPD_REQUIRE_TOOLS=1 turns a missing npm or a failed install into an error (CI).
set -u
cd "$(dirname "$0")/../web" || exit 1

fail() {
    echo "vendor: $1" >&2
    if [ "${RTMPD_REQUIRE_TOOLS:-0}" = 1 ]; then exit 1; fi
    echo "vendor: skipped: pages will fall back to the libraries' public CDN copies" >&2
    exit 0
}

command -v npm >/dev/null 2>&1 || fail "npm not found"
# Skip the install when node_modules is newer than the lock file (npm ci writes node_modules/.package-lock.json).
if ! [ node_modules/.package-lock.json -nt package-lock.json ] &&
    ! npm ci --ignore-scripts --no-audit --no-fund --loglevel=error; then
    fail "npm ci failed"
fi

# name in web/vendor/ <- file in node_modules/
files=(
    "mpegts.js:mpegts.js/dist/mpegts.js"
    "mpegts.js.LICENSE.txt:mpegts.js/LICENSE"
    "hls.min.js:hls.js/dist/hls.min.js"
    "hls.js.LICENSE.txt:hls.js/LICENSE"
    # MIT; its licence is the header of the file itself (the package ships no LICENSE file).
    "qrcode.js:qrcode-generator/dist/qrcode.js"
)
mkdir -p vendor || fail "cannot create web/vendor"
for f in "${files[@]}"; do
    src="node_modules/${f#*:}"
    dst="vendor/${f%%:*}"
    [ -f "$src" ] || fail "$src missing after npm ci"
    # Copy only on change so an unchanged vendor/ does not make cargo rebuild the embedded table.
    cmp -s "$src" "$dst" 2>/dev/null || cp "$src" "$dst" || fail "cannot copy $src"
done
# The builds end with a sourceMappingURL comment; the maps are not shipped, and browsers fetch them
# only with developer tools open, so that is harmless.
echo "vendor: $(cd vendor && ls | tr '\n' ' ')"
