#!/bin/sh
# Fetches a static FFmpeg 9 (the binary shipped inside the `imageio-ffmpeg` Python wheel, from the
# Python package registry pip is configured for) into tools/ffmpeg9/ (git-ignored) and prints the
# path of the binary. Idempotent: a binary already there that runs is kept. The wheel has no
# ffprobe; tests probe with `ffmpeg -v error -i X -f null -` (decode errors) and
# `ffmpeg -i X -f framemd5 -` (frame counts per stream).
#
#   sh tools/fetch-ffmpeg.sh            -> prints /abs/path/tools/ffmpeg9/ffmpeg
#   FFMPEG9="$(sh tools/fetch-ffmpeg.sh)"
set -eu

cd "$(dirname "$0")"
dir="$(pwd)/ffmpeg9"
bin="$dir/ffmpeg"

if [ -x "$bin" ] && "$bin" -hide_banner -version >/dev/null 2>&1; then
    echo "$bin"
    exit 0
fi

command -v python3 >/dev/null || { echo "fetch-ffmpeg: python3 not found" >&2; exit 1; }
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

# Only the wheel for this platform; progress goes to stderr so stdout is just the path.
python3 -m pip download --quiet --no-deps --only-binary=:all: imageio-ffmpeg -d "$tmp" >&2

wheel="$(ls "$tmp"/imageio_ffmpeg-*.whl | head -n 1)"
[ -n "$wheel" ] || { echo "fetch-ffmpeg: no wheel downloaded" >&2; exit 1; }

# The wheel is a zip; python's zipfile avoids depending on unzip being installed.
python3 - "$wheel" "$tmp/bin" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if n.startswith("imageio_ffmpeg/binaries/ffmpeg-") and not n.endswith((".md", ".py"))]
    if not names:
        sys.exit("fetch-ffmpeg: no ffmpeg binary in the wheel")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        dst.write(src.read())
PY

chmod +x "$tmp/bin"
"$tmp/bin" -hide_banner -version >/dev/null 2>&1 || { echo "fetch-ffmpeg: the binary does not run" >&2; exit 1; }
# Rename last, so an interrupted fetch never leaves a half-written binary at the final path.
mv "$tmp/bin" "$bin"
echo "$bin"
