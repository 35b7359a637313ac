#!/bin/sh
# Makes the FLV test fixtures under tests/data/ from FFmpeg's synthetic sources, and writes
# tests/data/fixtures.txt with the facts the integration tests assert (counted by ffprobe).
#
#   fixture.flv        ~10 s, H.264 High with B-frames (2), keyframe every 2 s (GOP 50 at 25 fps),
#                      320x240, AAC-LC 44.1 kHz stereo
#   fixture_audio.flv  the same audio, no video
#   fixture_video.flv  the same video, no audio
#
# Flags are chosen for reproducible output (single thread, bitexact, fixed GOP, no scene cuts), so
# re-running the script on the same FFmpeg build gives the same bytes. Run from anywhere:
#   sh tools/make-fixtures.sh
set -eu

cd "$(dirname "$0")/.."
out=tests/data
mkdir -p "$out"

command -v ffmpeg >/dev/null || { echo "ffmpeg not found" >&2; exit 1; }
command -v ffprobe >/dev/null || { echo "ffprobe not found" >&2; exit 1; }

dur=10
fps=25
size=320x240

# Sources: a moving test pattern (so inter frames cost something and B-frames are used) and two
# sine tones (different per channel, so a channel swap would be visible).
vsrc="testsrc2=size=${size}:rate=${fps}:duration=${dur}"
asrc="sine=frequency=440:sample_rate=44100:duration=${dur}[l];sine=frequency=660:sample_rate=44100:duration=${dur}[r];[l][r]amerge=inputs=2[a]"

venc="-c:v libx264 -profile:v high -preset medium -pix_fmt yuv420p -bf 2 -g 50 -keyint_min 50 \
 -sc_threshold 0 -x264-params scenecut=0:open_gop=0:rc-lookahead=20:threads=1 -threads 1 -b:v 250k -maxrate 300k -bufsize 600k"
aenc="-c:a aac -b:a 64k -ar 44100 -ac 2"
common="-hide_banner -loglevel error -y -threads 1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact"

# shellcheck disable=SC2086
ffmpeg $common -f lavfi -i "$vsrc" -filter_complex "$asrc" -map 0:v -map '[a]' \
    $venc $aenc -t $dur -f flv "$out/fixture.flv"
# shellcheck disable=SC2086
ffmpeg $common -filter_complex "$asrc" -map '[a]' $aenc -t $dur -f flv "$out/fixture_audio.flv"
# shellcheck disable=SC2086
ffmpeg $common -f lavfi -i "$vsrc" -map 0:v $venc -t $dur -f flv "$out/fixture_video.flv"

# probe FILE STREAM KEY: one field of one stream as ffprobe reports it.
probe() {
    ffprobe -v error -count_frames -select_streams "$2" -show_entries "stream=$3" \
        -of default=noprint_wrappers=1:nokey=1 "$1" | head -n 1
}

facts="$out/fixtures.txt"
{
    echo "# Facts about the fixtures, written by tools/make-fixtures.sh from ffprobe. Do not edit."
    echo "# file.key=value; frame counts exclude sequence headers; duration in milliseconds."
    for f in fixture fixture_audio fixture_video; do
        file="$out/$f.flv"
        echo "$f.flv.bytes=$(wc -c < "$file" | tr -d ' ')"
        dur_s=$(ffprobe -v error -show_entries format=duration -of default=noprint_wrappers=1:nokey=1 "$file")
        echo "$f.flv.duration_ms=$(echo "$dur_s" | awk '{ printf "%d", $1 * 1000 + 0.5 }')"
        if [ "$f" != fixture_audio ]; then
            echo "$f.flv.video_codec=$(probe "$file" v:0 codec_name)"
            echo "$f.flv.video_profile=$(probe "$file" v:0 profile)"
            echo "$f.flv.width=$(probe "$file" v:0 width)"
            echo "$f.flv.height=$(probe "$file" v:0 height)"
            echo "$f.flv.video_frames=$(probe "$file" v:0 nb_read_frames)"
            echo "$f.flv.has_b_frames=$(probe "$file" v:0 has_b_frames)"
            echo "$f.flv.keyframes=$(ffprobe -v error -select_streams v:0 -show_entries packet=flags \
                -of csv=p=0 "$file" | grep -c K)"
        fi
        if [ "$f" != fixture_video ]; then
            echo "$f.flv.audio_codec=$(probe "$file" a:0 codec_name)"
            echo "$f.flv.sample_rate=$(probe "$file" a:0 sample_rate)"
            echo "$f.flv.channels=$(probe "$file" a:0 channels)"
            echo "$f.flv.audio_frames=$(probe "$file" a:0 nb_read_frames)"
        fi
    done
} > "$facts"

ls -l "$out"/*.flv
cat "$facts"
