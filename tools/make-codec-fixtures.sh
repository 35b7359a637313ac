#!/bin/sh
# Makes the small codec fixtures under tests/data/codecs/ with FFmpeg 9 (tools/fetch-ffmpeg.sh), and
# writes tests/data/codecs/facts.txt with what the tests assert (frame counts per stream, codecs),
# counted by FFmpeg itself with `-f framemd5` since the FFmpeg 9 build we fetch has no ffprobe.
#
#   hevc_aac.flv       Enhanced RTMP `hvc1` (with B-frames) + legacy AAC
#   av1_opus.flv       Enhanced RTMP `av01` + Enhanced audio `Opus`
#   vp9_opus.flv       Enhanced RTMP `vp09` + Enhanced audio `Opus`
#   h264_mp3.flv       legacy H.264 + legacy MP3 (sound format 2; what old encoders send)
#   h264_ac3.flv       legacy H.264 + Enhanced audio `ac-3`
#   multitrack_aac.flv legacy H.264 + two AAC tracks: track 0 legacy, track 1 Enhanced multitrack
#                      (OneTrack form, FourCC `mp4a`), as FFmpeg 9 writes a second audio stream
#
# 3 s each at 160x120, 15 fps, a keyframe every second, low bitrates: a few tens of KB each.
# Single-threaded and bitexact so that reruns on the same FFmpeg build give the same bytes.
#   sh tools/make-codec-fixtures.sh
set -eu

cd "$(dirname "$0")/.."
ffmpeg="$(sh tools/fetch-ffmpeg.sh)"
out=tests/data/codecs
mkdir -p "$out"

dur=3
fps=15
vsrc="testsrc2=size=160x120:rate=${fps}:duration=${dur}"
# Two tones, so the two tracks of the multitrack fixture differ.
a1="sine=frequency=440:sample_rate=48000:duration=${dur}"
a2="sine=frequency=660:sample_rate=48000:duration=${dur}"
common="-hide_banner -loglevel error -y -threads 1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact"
gop="-g $fps -keyint_min $fps"

# make NAME VIDEO_ARGS AUDIO_ARGS [EXTRA_INPUT_ARGS]
make() {
    name=$1 vargs=$2 aargs=$3
    # shellcheck disable=SC2086
    "$ffmpeg" $common -f lavfi -i "$vsrc" -f lavfi -i "$a1" -map 0:v -map 1:a \
        $vargs $aargs -t $dur -f flv "$out/$name.flv"
}

x264="-c:v libx264 -profile:v high -preset medium -pix_fmt yuv420p -bf 2 $gop -sc_threshold 0 \
 -x264-params scenecut=0:open_gop=0:threads=1 -b:v 60k"

make hevc_aac "-c:v libx265 -preset fast -pix_fmt yuv420p $gop -b:v 60k \
 -x265-params log-level=error:bframes=2:scenecut=0:open-gop=0:pools=1:frame-threads=1" \
    "-c:a aac -b:a 32k -ac 1"
SVT_LOG=1 make av1_opus "-c:v libsvtav1 -preset 10 -pix_fmt yuv420p $gop -b:v 60k -svtav1-params lp=1" \
    "-c:a libopus -b:a 24k -ac 1"
make vp9_opus "-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -row-mt 0 -pix_fmt yuv420p $gop -b:v 60k" \
    "-c:a libopus -b:a 24k -ac 1"
make h264_mp3 "$x264" "-c:a libmp3lame -b:a 32k -ar 44100 -ac 1"
make h264_ac3 "$x264" "-c:a ac3 -b:a 64k -ac 1"

# shellcheck disable=SC2086
"$ffmpeg" $common -f lavfi -i "$vsrc" -f lavfi -i "$a1" -f lavfi -i "$a2" -map 0:v -map 1:a -map 2:a \
    $x264 -c:a aac -b:a 32k -ac 1 -t $dur -f flv "$out/multitrack_aac.flv"

# frames FILE: "STREAM_INDEX COUNT" per stream, decoded by FFmpeg (a decode error fails the script).
frames() {
    "$ffmpeg" -hide_banner -v error -xerror -i "$1" -map 0 -f framemd5 - |
        awk -F, '!/^#/ { n[$1 + 0]++ } END { for (s in n) print s, n[s] }' | sort -n
}

# codecs FILE: the codec name of each stream, in stream order, from FFmpeg's input dump.
codecs() {
    "$ffmpeg" -hide_banner -i "$1" 2>&1 | sed -n 's/.*Stream #0:[0-9]*.*: \(Video\|Audio\): \([a-z0-9_]*\).*/\2/p' |
        tr '\n' ' ' | sed 's/ $//'
}

facts="$out/facts.txt"
{
    echo "# Facts about the codec fixtures, written by tools/make-codec-fixtures.sh from FFmpeg 9."
    echo "# name.key=value; frames.N = decoded frames of stream N (video first, then audio)."
    for f in "$out"/*.flv; do
        name=$(basename "$f")
        echo "$name.bytes=$(wc -c < "$f" | tr -d ' ')"
        echo "$name.codecs=$(codecs "$f")"
        frames "$f" | while read -r s n; do echo "$name.frames.$s=$n"; done
    done
} > "$facts"

ls -l "$out"
cat "$facts"
