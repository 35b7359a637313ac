#!/bin/sh
# Makes the MPEG-TS fixtures of the TS demuxer's tests (tests/data/ts/*.ts) with Debian's FFmpeg,
# and prints the per-stream frame counts that `mux::ts_demux` tests assert (recorded there by hand,
# with this command, once: the fixtures are committed, so the counts stay true).
#
#   h264_aac.ts   H.264 High with B-frames + AAC-LC 48 kHz stereo
#   hevc_aac.ts   H.265 Main with B-frames + AAC-LC 44.1 kHz mono
#   h264_mp3.ts   H.264 + MP3 44.1 kHz stereo (stream type 0x03)
#   h264_ac3.ts   H.264 + AC-3 48 kHz stereo (stream type 0x81)
#   h264_opus.ts  H.264 + Opus 48 kHz stereo (stream type 0x06, registration descriptor 'Opus')
#   eac3.ts       audio only, 1 s of E-AC-3 48 kHz stereo (stream type 0x87)
#   ac3_dvb.ts    audio only, 1 s of AC-3 48 kHz mono the DVB way (-mpegts_flags system_b: stream
#                 type 0x06 with the AC-3 descriptor 0x6a)
#
# Each is 2 s of a 160x120 test pattern at 25 fps (keyframe every second) and a sine tone.
# Run from anywhere: sh tools/make-ts-fixtures.sh
set -eu
cd "$(dirname "$0")/.."
out=tests/data/ts
mkdir -p "$out"
command -v ffmpeg >/dev/null || { echo "ffmpeg not found" >&2; exit 1; }

common="-hide_banner -loglevel error -y -threads 1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact"
vsrc="testsrc2=size=160x120:rate=25:duration=2"
h264="-c:v libx264 -profile:v high -preset fast -bf 2 -g 25 -keyint_min 25 -sc_threshold 0 -x264-params threads=1 -b:v 100k"
hevc="-c:v libx265 -preset fast -x265-params bframes=2:keyint=25:min-keyint=25:scenecut=0:pools=none:frame-threads=1:log-level=error -b:v 100k"

make() {
    name=$1 venc=$2 rate=$3 ch=$4 aenc=$5
    # shellcheck disable=SC2086
    ffmpeg $common -f lavfi -i "$vsrc" -f lavfi -i "sine=frequency=440:sample_rate=$rate:duration=2" \
        -map 0:v -map 1:a $venc -ar "$rate" -ac "$ch" $aenc -t 2 -f mpegts "$out/$name.ts"
}

make h264_aac "$h264" 48000 2 "-c:a aac -b:a 48k"
make hevc_aac "$hevc" 44100 1 "-c:a aac -b:a 32k"
make h264_mp3 "$h264" 44100 2 "-c:a libmp3lame -b:a 64k"
make h264_ac3 "$h264" 48000 2 "-c:a ac3 -b:a 96k"
make h264_opus "$h264" 48000 2 "-c:a libopus -b:a 48k"
# shellcheck disable=SC2086
ffmpeg $common -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1" -ac 2 -c:a eac3 -b:a 96k \
    -f mpegts "$out/eac3.ts"
# shellcheck disable=SC2086
ffmpeg $common -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=1" -ac 1 -c:a ac3 -b:a 64k \
    -mpegts_flags system_b -f mpegts "$out/ac3_dvb.ts"

# count FILE STREAM WHAT: ffprobe's count of one stream (nb_read_packets or nb_read_frames).
count() {
    ffprobe -v error "-count_${3#nb_read_}" -select_streams "$2" -show_entries "stream=$3" \
        -of default=noprint_wrappers=1:nokey=1 "$1" | head -n 1
}
for f in h264_aac hevc_aac h264_mp3 h264_ac3 h264_opus eac3 ac3_dvb; do
    t="$out/$f.ts"
    echo "$f.ts bytes=$(wc -c <"$t" | tr -d ' ')" \
        "video packets=$(count "$t" v:0 nb_read_packets) frames=$(count "$t" v:0 nb_read_frames)" \
        "audio packets=$(count "$t" a:0 nb_read_packets) frames=$(count "$t" a:0 nb_read_frames)"
done
