//! The fMP4 recorder sink: waits for the sequence headers, slices frames into segments (via
//! `mux::fmp4::Fragmenter`), writes the muxed (`output_merge/`) and separate (`output_separate/`)
//! forms with their playlists and `meta.json`, rotates the previous session away at start, builds
//! `stream_full.mp4` at the end, and repairs sessions a crash left unmerged. Runs on a recorder
//! worker, never on the event loop. Every codec with a sample entry (H.264, HEVC, AV1, VP9, AAC,
//! Opus, MP3, AC-3/E-AC-3; `track_config`) of the default track, and the further audio tracks
//! of a multitrack stream as extra `trak`s of the muxed form and `stream_full.mp4` (listed in
//! `output_merge/meta.json` as `extra_audio`; the separate form holds the default tracks only);
//! other tracks are logged once, counted and listed in `meta.json` as skipped. An Opus stream
//! with an audio bridge is recorded with the bridge's AAC as its audio track (the one every
//! player plays, and the separate form's audio) and the published Opus beside it in the muxed
//! form and `stream_full.mp4`, as an extra `trak` that is not enabled (`hub::bridge::PreferAac`
//! decides at the start; `extra_audio` lists it as track 0). Over 800 lines:
//! session, playlists, meta.json and repair belong together here and are each short.

mod repair;
use super::merge::merge_dir;
use super::paths::{self, local_stamp, replace_file};
use super::{Prelude, Sink};
use crate::codec::json;
use crate::hub::bridge::{AudioChoice, PreferAac};
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::enhanced::{PacketType, TrackPacket};
use crate::media::vp9;
use crate::media::{Codec, Frame, Track};
use crate::mux::fmp4::{self, media_payload, recordable, track_config, track_config_of};
use crate::mux::fmp4::{Fragment, Fragmenter, TrackConfig};
use crate::mux::m3u8::{Header, MediaPlaylist, Segment};
use crate::mux::sample_entry::SampleEntry;
use bytes::Bytes;
pub use repair::repair;
use repair::rotate;
use serde::Serialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

// The layout (folder and file names) lives in `paths`, shared with `merge`.
use super::paths::{
    segment_name, AUDIO_INIT_NAME, AUDIO_PLAYLIST, AUDIO_PREFIX, INIT_NAME, MASTER_PLAYLIST,
    META_NAME, MUXED_PLAYLIST, MUXED_PREFIX, VIDEO_INIT_NAME, VIDEO_PLAYLIST, VIDEO_PREFIX,
};
pub use super::paths::{FULL_NAME, MERGE_DIR, SEPARATE_DIR};

struct VideoTrack {
    config: TrackConfig,
    /// The configuration payload it was built from (a change mid-stream is reported).
    source: Bytes,
    codec: String,
    width: u32,
    height: u32,
}

struct AudioTrack {
    config: TrackConfig,
    source: Bytes,
    codec: String,
    sample_rate: u32,
    channels: u8,
}

impl AudioTrack {
    /// The track `config` describes; `source` is the sequence header it came from (empty for
    /// the self-describing MP3 and AC-3).
    fn new(config: TrackConfig, payload: &Bytes, is_header: bool) -> AudioTrack {
        let codec = match &config {
            TrackConfig::Aac(_) => AudioSpecificConfig::parse(payload).map(|c| c.codec_string()),
            TrackConfig::Other(e) => Some(e.codec_string()),
            TrackConfig::Avc(_) => None,
        }
        .unwrap_or_default();
        let (sample_rate, channels) = match &config {
            TrackConfig::Aac(a) => (a.sample_rate, a.channels),
            TrackConfig::Other(SampleEntry::Opus(h)) => (config.timescale(), h.channels),
            TrackConfig::Other(SampleEntry::Mp3(h)) => (h.sample_rate, h.channels),
            TrackConfig::Other(SampleEntry::Ac3(f)) => (f.sample_rate, f.channels()),
            _ => (config.timescale(), 2),
        };
        AudioTrack {
            config,
            source: if is_header {
                payload.clone()
            } else {
                Bytes::new()
            },
            codec,
            sample_rate,
            channels,
        }
    }
}

/// A further audio track recorded as its own trak: of a multitrack stream (multitrack id != 0),
/// or an Opus stream's published Opus beside the audio bridge's AAC (id 0, not enabled).
struct ExtraAudio {
    /// The multitrack track id.
    track_id: u8,
    track: AudioTrack,
}

impl ExtraAudio {
    /// Players play it by default (`tkhd` `track_enabled`): all but the Opus beside the AAC.
    fn enabled(&self) -> bool {
        self.track_id != 0
    }
}

/// One closed segment as the playlists list it.
#[derive(Clone, Copy)]
struct SegInfo {
    sequence: u32,
    secs: f64,
    bytes: u64,
}

enum State {
    /// Sequence headers not all known yet: frames wait here (bounded by `Prelude`).
    Waiting(Prelude),
    Running(Box<Fragmenter>),
    Done,
}

pub struct Fmp4Sink {
    /// Told of each muxed segment as it is written (`--upload`).
    pub upload: Option<super::upload::Uploader>,
    merge_dir: PathBuf,
    separate_dir: PathBuf,
    fragment_ms: u32,
    started: String,
    state: State,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// In the order of their fMP4 track ids (`fmp4::FIRST_EXTRA_TRACK_ID` on).
    extra: Vec<ExtraAudio>,
    muxed: Vec<SegInfo>,
    video_segs: Vec<SegInfo>,
    audio_segs: Vec<SegInfo>,
    config_changed: bool,
    late_track: bool,
    /// Frames still to hold in the prelude for a self-describing audio track's first frame.
    awaiting_audio_frame: u32,
    /// Tracks not recorded, as `hls::skipped_name` names them.
    skipped: Vec<String>,
    merged: bool,
    /// A write failed (disk full, size limit, permissions): the recording stopped there. The
    /// end writes no further media, only closes the playlists and merges what was whole.
    failed: bool,
    /// An Opus stream: the audio bridge's AAC as the audio track, the Opus beside it.
    bridge: PreferAac,
    /// Reused: the frames `bridge` passes on.
    passed: Vec<Frame>,
    /// The prelude waits (bounded) for the bridge's first AAC frame after its header.
    awaiting_bridged: u32,
}

impl Fmp4Sink {
    /// Starts a session in `stream_dir` (`data_dir/mp4/{app}/{stream}`): the previous session's
    /// folders move into `stream_dir/{its start}/` first, then fresh folders are created.
    pub fn create(
        stream_dir: &Path,
        fragment_ms: u32,
        started: SystemTime,
    ) -> io::Result<Fmp4Sink> {
        fs::create_dir_all(stream_dir).map_err(|e| paths::with_path(e, stream_dir))?;
        rotate(stream_dir)?;
        let merge_dir = stream_dir.join(MERGE_DIR);
        let separate_dir = stream_dir.join(SEPARATE_DIR);
        for d in [&merge_dir, &separate_dir] {
            fs::create_dir_all(d).map_err(|e| paths::with_path(e, d))?;
        }
        let sink = Fmp4Sink {
            upload: None,
            merge_dir,
            separate_dir,
            fragment_ms: fragment_ms.max(100),
            started: local_stamp(started),
            state: State::Waiting(Prelude::default()),
            video: None,
            audio: None,
            extra: Vec::new(),
            muxed: Vec::new(),
            video_segs: Vec::new(),
            audio_segs: Vec::new(),
            config_changed: false,
            late_track: false,
            awaiting_audio_frame: 0,
            skipped: Vec::new(),
            merged: false,
            failed: false,
            bridge: PreferAac::new(true),
            passed: Vec::new(),
            awaiting_bridged: 0,
        };
        // The session start is recorded at once, so a rotation after a crash names it right.
        sink.write_meta(false)?;
        Ok(sink)
    }

    fn take_config(&mut self, frame: &Frame) {
        // The tracks are fixed once the init segments are written; a track whose sequence
        // header comes later is left out (and said so in `describe`).
        let started = !matches!(self.state, State::Waiting(_));
        if frame.track_id != 0 {
            return;
        }
        let payload = Bytes::copy_from_slice(frame.payload());
        if frame.config && matches!(frame.codec, Codec::Mp3 | Codec::Ac3 | Codec::Eac3) {
            if !started && self.audio.is_none() {
                self.awaiting_audio_frame = AWAIT_AUDIO_FRAMES;
            }
            return;
        }
        let known = match frame.track {
            Track::Video => self.video.as_ref().map(|v| &v.source),
            _ => self.audio.as_ref().map(|a| &a.source),
        };
        if let Some(known) = known {
            // MP3 and AC-3 describe themselves in every frame: only a real header counts.
            if frame.config && *known != payload {
                self.config_changed = true;
            }
            return;
        }
        let Some(config) = track_config(frame, &payload) else {
            return;
        };
        if started {
            self.late_track = true;
            return;
        }
        if config.is_audio() {
            self.audio = Some(AudioTrack::new(config, &payload, frame.config));
        } else {
            let codec = match &config {
                TrackConfig::Avc(_) => AvcConfig::parse(&payload).map(|c| c.codec_string()),
                TrackConfig::Other(e) => Some(e.codec_string()),
                TrackConfig::Aac(_) => None,
            }
            .unwrap_or_default();
            let (width, height) = config.dimensions();
            self.video = Some(VideoTrack {
                config,
                source: payload,
                codec,
                width,
                height,
            });
        }
    }

    /// A further multitrack audio track's description: its SequenceStart, or for MP3 and AC-3
    /// its first frame. Taken until the first segment is written: its header follows the
    /// default track's in the same burst, often after the default tracks have started the
    /// recording, and until a segment exists `init.mp4` may still be rewritten with the extra
    /// trak (no playlist lists a segment yet). Later, the track stays skipped.
    fn take_extra_config(&mut self, frame: &Frame) -> io::Result<()> {
        if !self.extra_open() {
            return Ok(());
        }
        for t in other_tracks(frame) {
            let known = self.extra.iter().any(|e| e.track_id == t.track_id);
            if known || self.extra.len() >= fmp4::MAX_EXTRA_TRACKS {
                continue;
            }
            let framed = matches!(t.codec, Codec::Mp3 | Codec::Ac3 | Codec::Eac3);
            let usable = match t.packet_type {
                PacketType::SequenceStart => !framed,
                PacketType::CodedFrames => framed,
                _ => false,
            };
            if !usable {
                continue;
            }
            let payload = frame.data.slice(t.payload.clone());
            let Some(config) = track_config_of(t.codec, t.is_config(), &payload) else {
                continue;
            };
            if !config.is_audio() {
                continue;
            }
            let rate = config.timescale();
            self.extra.push(ExtraAudio {
                track_id: t.track_id,
                track: AudioTrack::new(config, &payload, t.is_config()),
            });
            if let State::Running(frag) = &mut self.state {
                // Same cap as `self.extra`, so the indices stay in step.
                frag.add_extra_track(rate);
                self.write_muxed_init()?;
            }
        }
        Ok(())
    }

    /// True while an extra track may still join (no segment written yet).
    fn extra_open(&self) -> bool {
        match self.state {
            State::Waiting(_) => true,
            State::Running(_) => self.muxed.is_empty(),
            State::Done => false,
        }
    }

    /// The published Opus of a bridged stream (the bridge's AAC is the audio track).
    fn is_opus_beside(&self, frame: &Frame) -> bool {
        self.bridge.choice() == AudioChoice::Aac
            && !frame.bridged
            && frame.track == Track::Audio
            && frame.track_id == 0
    }

    /// The OpusHead of a bridged stream: the Opus becomes an extra trak, not enabled.
    fn take_opus_beside(&mut self, frame: &Frame) -> io::Result<()> {
        let known = self.extra.iter().any(|e| e.track_id == 0);
        if !frame.config
            || known
            || !self.extra_open()
            || self.extra.len() >= fmp4::MAX_EXTRA_TRACKS
        {
            return Ok(());
        }
        let payload = Bytes::copy_from_slice(frame.payload());
        let Some(config) = track_config(frame, &payload) else {
            return Ok(());
        };
        let rate = config.timescale();
        self.extra.push(ExtraAudio {
            track_id: 0,
            track: AudioTrack::new(config, &payload, true),
        });
        if let State::Running(frag) = &mut self.state {
            frag.add_extra_track(rate);
            self.write_muxed_init()?;
        }
        Ok(())
    }

    /// `output_merge/init.mp4`: the default tracks and the extra audio tracks.
    fn write_muxed_init(&self) -> io::Result<()> {
        let video = self.video.as_ref().map(|v| &v.config);
        let audio = self.audio.as_ref().map(|a| &a.config);
        let extra: Vec<(&TrackConfig, bool)> = self
            .extra
            .iter()
            .map(|e| (&e.track.config, e.enabled()))
            .collect();
        replace_file(
            &self.merge_dir.join(INIT_NAME),
            &fmp4::init_segment_enabled(video, audio, &extra),
        )
    }

    /// The coded payloads of the extra audio tracks in a frame (one for FFmpeg's OneTrack
    /// messages, several for a ManyTracks message), with each track's index.
    fn extra_payloads(&self, frame: &Frame) -> Vec<(usize, Bytes)> {
        if self.extra.is_empty() {
            return Vec::new();
        }
        other_tracks(frame)
            .into_iter()
            .filter(|t| t.packet_type == PacketType::CodedFrames && !t.payload.is_empty())
            .filter_map(|t| {
                let index = self.extra.iter().position(|e| e.track_id == t.track_id)?;
                Some((index, frame.data.slice(t.payload)))
            })
            .collect()
    }

    /// Leaves `Waiting`: writes the init segments and replays the buffered frames.
    fn start(&mut self, frames: Vec<Frame>) -> io::Result<()> {
        if let Some(v) = &mut self.video {
            if let TrackConfig::Other(SampleEntry::Vp9 { width, height, .. }) = &mut v.config {
                // vpcC has no picture size; the first keyframe in the prelude has it.
                let size = frames
                    .iter()
                    .filter(|f| f.track == Track::Video && f.key && !f.config)
                    .find_map(|f| vp9::keyframe_dimensions(f.payload()));
                if let Some((w, h)) = size {
                    (*width, *height, v.width, v.height) = (w, h, w, h);
                }
            }
        }
        self.write_muxed_init()?;
        let video = self.video.as_ref().map(|v| &v.config);
        let audio = self.audio.as_ref().map(|a| &a.config);
        if let Some(v) = video {
            replace_file(
                &self.separate_dir.join(VIDEO_INIT_NAME),
                &fmp4::init_segment_for(Some(v), None),
            )?;
        }
        if let Some(a) = audio {
            replace_file(
                &self.separate_dir.join(AUDIO_INIT_NAME),
                &fmp4::init_segment_for(None, Some(a)),
            )?;
        }
        let mut frag = Fragmenter::new(
            self.fragment_ms,
            video.is_some(),
            audio.map(|a| a.timescale()),
        );
        for e in &self.extra {
            // Indices follow `self.extra`: both are capped at MAX_EXTRA_TRACKS.
            frag.add_extra_track(e.track.config.timescale());
        }
        self.state = State::Running(Box::new(frag));
        self.write_playlists(false)?;
        for f in frames {
            self.push(&f)?;
        }
        Ok(())
    }

    fn push(&mut self, frame: &Frame) -> io::Result<()> {
        if self.is_opus_beside(frame) {
            let index = self.extra.iter().position(|e| e.track_id == 0);
            if let (Some(index), Some(data), State::Running(frag)) =
                (index, media_payload(frame), &mut self.state)
            {
                frag.push_extra(index, frame.time, data);
            }
            return Ok(());
        }
        let extra = self.extra_payloads(frame);
        let State::Running(frag) = &mut self.state else {
            return Ok(());
        };
        for (index, data) in extra {
            frag.push_extra(index, frame.time, data);
        }
        let Some(data) = media_payload(frame) else {
            return Ok(());
        };
        if let Some(closed) = frag.push(frame.track, frame.time, frame.cts, frame.key, data) {
            self.write_fragment(&closed)?;
        }
        Ok(())
    }

    fn write_fragment(&mut self, f: &Fragment) -> io::Result<()> {
        let runs = f.runs();
        if runs.is_empty() {
            return Ok(());
        }
        let name = segment_name(MUXED_PREFIX, f.sequence);
        let path = self.merge_dir.join(name);
        replace_file(&path, &fmp4::media_segment(f.sequence, &runs))?;
        if let Some(u) = &self.upload {
            u.file_final(&path, &self.started);
        }
        self.muxed.push(SegInfo {
            sequence: f.sequence,
            secs: f.duration_secs(),
            bytes: f.bytes(),
        });
        let separate = [
            (VIDEO_PREFIX, f.video.as_ref(), &mut self.video_segs),
            (AUDIO_PREFIX, f.audio.as_ref(), &mut self.audio_segs),
        ];
        for (prefix, run, segs) in separate {
            let Some(run) = run else { continue };
            let name = segment_name(prefix, f.sequence);
            replace_file(
                &self.separate_dir.join(name),
                &fmp4::media_segment(f.sequence, &[run]),
            )?;
            segs.push(SegInfo {
                sequence: f.sequence,
                secs: run.duration_secs(),
                bytes: run.bytes(),
            });
        }
        self.write_playlists(false)?;
        self.write_meta(false)
    }

    fn target_secs(&self) -> u32 {
        let longest = self
            .muxed
            .iter()
            .chain(&self.video_segs)
            .chain(&self.audio_segs)
            .map(|s| s.secs)
            .fold(0.0, f64::max);
        (longest.ceil() as u32)
            .max(self.fragment_ms.div_ceil(1000))
            .max(1)
    }

    fn write_playlists(&self, ended: bool) -> io::Result<()> {
        let target = self.target_secs();
        replace_file(
            &self.merge_dir.join(MUXED_PLAYLIST),
            media_playlist(INIT_NAME, MUXED_PREFIX, &self.muxed, target, ended).as_bytes(),
        )?;
        if self.video.is_some() {
            replace_file(
                &self.separate_dir.join(VIDEO_PLAYLIST),
                media_playlist(
                    VIDEO_INIT_NAME,
                    VIDEO_PREFIX,
                    &self.video_segs,
                    target,
                    ended,
                )
                .as_bytes(),
            )?;
        }
        if self.audio.is_some() {
            replace_file(
                &self.separate_dir.join(AUDIO_PLAYLIST),
                media_playlist(
                    AUDIO_INIT_NAME,
                    AUDIO_PREFIX,
                    &self.audio_segs,
                    target,
                    ended,
                )
                .as_bytes(),
            )?;
        }
        replace_file(
            &self.separate_dir.join(MASTER_PLAYLIST),
            self.master().as_bytes(),
        )
    }

    fn master(&self) -> String {
        let peak = |segs: &[SegInfo]| {
            segs.iter()
                .filter(|s| s.secs > 0.0)
                .map(|s| (s.bytes as f64 * 8.0 / s.secs) as u64)
                .max()
        };
        // Container overhead is small; 10% on top of the payload peak covers it.
        let bandwidth = peak(&self.muxed).map_or(1_000_000, |b| b + b / 10 + 1000);
        let codecs: Vec<&str> = self
            .video
            .iter()
            .map(|v| v.codec.as_str())
            .chain(self.audio.iter().map(|a| a.codec.as_str()))
            .collect();
        let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let mut inf = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
            bandwidth,
            codecs.join(",")
        );
        if let Some(v) = &self.video {
            if v.width > 0 && v.height > 0 {
                inf.push_str(&format!(",RESOLUTION={}x{}", v.width, v.height));
            }
        }
        match (&self.video, &self.audio) {
            (Some(_), Some(_)) => {
                m.push_str("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio.m3u8\"\n");
                m.push_str(&inf);
                m.push_str(",AUDIO=\"audio\"\nvideo.m3u8\n");
            }
            (Some(_), None) => {
                m.push_str(&inf);
                m.push_str("\nvideo.m3u8\n");
            }
            (None, Some(_)) => {
                m.push_str(&inf);
                m.push_str("\naudio.m3u8\n");
            }
            (None, None) => {}
        }
        m
    }

    fn write_meta(&self, complete: bool) -> io::Result<()> {
        let common = MetaCommon {
            started: &self.started,
            tracks: self
                .video
                .iter()
                .map(|_| "video")
                .chain(self.audio.iter().map(|_| "audio"))
                .collect(),
            codecs: self
                .video
                .iter()
                .map(|v| v.codec.as_str())
                .chain(self.audio.iter().map(|a| a.codec.as_str()))
                .collect::<Vec<_>>()
                .join(","),
            video: self.video.as_ref().map(|v| VideoMeta {
                video_codec: &v.codec,
                width: v.width,
                height: v.height,
            }),
            audio: self.audio.as_ref().map(|a| AudioMeta {
                audio_codec: &a.codec,
                sample_rate: a.sample_rate,
                channels: a.channels,
            }),
            audio_bridged: self.bridge.choice() == AudioChoice::Aac && self.audio.is_some(),
            skipped: &self.skipped,
            complete,
        };
        // The muxed form names every codec it holds (the Opus beside a bridged AAC too): a
        // player declares them all (MSE's SourceBuffer type).
        let mut merge_codecs = common.codecs.clone();
        for e in &self.extra {
            if !e.track.codec.is_empty() && !merge_codecs.split(',').any(|c| c == e.track.codec) {
                merge_codecs.push(',');
                merge_codecs.push_str(&e.track.codec);
            }
        }
        let merge_common = MetaCommon {
            codecs: merge_codecs,
            ..common.clone()
        };
        let ms =
            |segs: &[SegInfo]| (segs.iter().map(|s| s.secs).sum::<f64>() * 1000.0).round() as u64;
        let merge = MergeMeta {
            common: &merge_common,
            extra_audio: self
                .extra
                .iter()
                .zip(fmp4::FIRST_EXTRA_TRACK_ID..)
                .map(|(e, mp4_track_id)| ExtraMeta {
                    track: e.track_id,
                    mp4_track_id,
                    codec: &e.track.codec,
                    sample_rate: e.track.sample_rate,
                    channels: e.track.channels,
                    alternate: !e.enabled(),
                })
                .collect(),
            segments: self.muxed.len(),
            duration_ms: ms(&self.muxed),
            init: INIT_NAME,
            playlist: MUXED_PLAYLIST,
            full: self.merged.then_some(FULL_NAME),
        };
        replace_file(
            &self.merge_dir.join(META_NAME),
            meta_text(&merge).as_bytes(),
        )?;

        let separate = SeparateMeta {
            common: &common,
            segments: self.muxed.len(),
            video_segments: self.video_segs.len(),
            audio_segments: self.audio_segs.len(),
            duration_ms: ms(&self.video_segs).max(ms(&self.audio_segs)),
            video: self.video.is_some().then_some(VideoFiles {
                video_init: VIDEO_INIT_NAME,
                video_playlist: VIDEO_PLAYLIST,
            }),
            audio: self.audio.is_some().then_some(AudioFiles {
                audio_init: AUDIO_INIT_NAME,
                audio_playlist: AUDIO_PLAYLIST,
            }),
            playlist: MASTER_PLAYLIST,
        };
        replace_file(
            &self.separate_dir.join(META_NAME),
            meta_text(&separate).as_bytes(),
        )
    }
}

/// `meta.json`'s text: one line of JSON.
fn meta_text(meta: &impl Serialize) -> String {
    let mut text = json::to_string(meta);
    text.push('\n');
    text
}

/// What both folders' `meta.json` say about the session.
#[derive(Clone, Serialize)]
struct MetaCommon<'a> {
    /// The session's start, `YYYYMMDD_HHMMSS` local time (`repair` reads it back).
    started: &'a str,
    tracks: Vec<&'static str>,
    /// RFC 6381, comma-separated.
    codecs: String,
    #[serde(flatten)]
    video: Option<VideoMeta<'a>>,
    #[serde(flatten)]
    audio: Option<AudioMeta<'a>>,
    /// The audio track is the audio bridge's AAC of the published Opus (which the muxed form
    /// holds as `extra_audio` track 0).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audio_bridged: bool,
    skipped: &'a [String],
    complete: bool,
}

#[derive(Clone, Serialize)]
struct VideoMeta<'a> {
    video_codec: &'a str,
    width: u32,
    height: u32,
}

#[derive(Clone, Serialize)]
struct AudioMeta<'a> {
    audio_codec: &'a str,
    sample_rate: u32,
    channels: u8,
}

/// A further audio track in the merged file.
#[derive(Serialize)]
struct ExtraMeta<'a> {
    track: u8,
    mp4_track_id: u32,
    codec: &'a str,
    sample_rate: u32,
    channels: u8,
    /// Not enabled in its `tkhd`: players play it only when asked (an Opus stream's Opus,
    /// beside the audio bridge's AAC).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    alternate: bool,
}

/// `output_merge/meta.json`.
#[derive(Serialize)]
struct MergeMeta<'a> {
    #[serde(flatten)]
    common: &'a MetaCommon<'a>,
    extra_audio: Vec<ExtraMeta<'a>>,
    segments: usize,
    duration_ms: u64,
    init: &'static str,
    playlist: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    full: Option<&'static str>,
}

/// `output_separate/meta.json`.
#[derive(Serialize)]
struct SeparateMeta<'a> {
    #[serde(flatten)]
    common: &'a MetaCommon<'a>,
    segments: usize,
    video_segments: usize,
    audio_segments: usize,
    duration_ms: u64,
    #[serde(flatten)]
    video: Option<VideoFiles>,
    #[serde(flatten)]
    audio: Option<AudioFiles>,
    playlist: &'static str,
}

#[derive(Serialize)]
struct VideoFiles {
    video_init: &'static str,
    video_playlist: &'static str,
}

#[derive(Serialize)]
struct AudioFiles {
    audio_init: &'static str,
    audio_playlist: &'static str,
}

impl Sink for Fmp4Sink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.bridge.push(frame, &mut self.passed);
        let r = self.take_passed();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn takes_bridged(&self) -> bool {
        true
    }

    fn finish(&mut self) -> io::Result<()> {
        self.bridge.finish(&mut self.passed);
        if !self.failed && self.take_passed().is_err() {
            self.failed = true;
        }
        if self.failed {
            // After a failed write nothing more goes to the disk as media: a segment written
            // now would follow a gap, and the merged file would pass off the tail as the whole.
            self.state = State::Done;
            self.write_playlists(true)?;
            if !self.muxed.is_empty() {
                merge_dir(&self.merge_dir)?;
                self.merged = true;
            }
            return self.write_meta(true);
        }
        self.finish_clean()
    }

    fn describe(&self) -> String {
        self.description()
    }
}

impl Fmp4Sink {
    /// The frames `bridge` passed on, in order; stops at the first error.
    fn take_passed(&mut self) -> io::Result<()> {
        let mut passed = std::mem::take(&mut self.passed);
        let mut r = Ok(());
        for f in passed.drain(..) {
            if r.is_ok() {
                r = self.take_frame(&f);
            }
        }
        self.passed = passed;
        r
    }

    fn take_frame(&mut self, frame: &Frame) -> io::Result<()> {
        if frame.track == Track::Meta {
            return Ok(());
        }
        if self.is_opus_beside(frame) {
            self.take_opus_beside(frame)?;
            return match &mut self.state {
                State::Waiting(prelude) => {
                    // Held with the rest; the prelude releases on the AAC.
                    prelude.push(frame);
                    Ok(())
                }
                State::Running(_) => self.push(frame),
                State::Done => Ok(()),
            };
        }
        if frame.bridged && frame.track == Track::Audio && matches!(self.state, State::Waiting(_)) {
            // The bridge's AAC comes some 300 ms behind the video: the prelude holds until its
            // first frame, so that time 0 and the first segment have the audio from its start.
            self.awaiting_bridged = if frame.config { AWAIT_AUDIO_FRAMES } else { 0 };
        }
        if frame.track == Track::Audio {
            self.take_extra_config(frame)?;
        }
        self.note_skip(frame)?;
        // MP3 and AC-3 have no sequence header: their first frame describes the track.
        if frame.config || (frame.track == Track::Audio && self.audio.is_none()) {
            self.take_config(frame);
        }
        match &mut self.state {
            State::Done => Ok(()),
            State::Running(_) => self.push(frame),
            State::Waiting(prelude) => {
                if !prelude.push(frame) {
                    return Ok(());
                }
                // An AC-3/MP3 SequenceStart holds no description: wait (bounded) for the first
                // audio frame, which has it, so that the init carries the audio track.
                if self.audio.is_none() && self.awaiting_audio_frame > 0 {
                    self.awaiting_audio_frame -= 1;
                    return Ok(());
                }
                if self.awaiting_bridged > 0 {
                    self.awaiting_bridged -= 1;
                    return Ok(());
                }
                let mut out = prelude.take();
                if self.bridge.choice() == AudioChoice::Aac {
                    // The bridge's AAC arrived behind the frames of its time: replayed in time
                    // order (each track's own order kept) for the fragmenter's time 0.
                    out.frames.sort_by_key(|f| f.time);
                }
                if self.video.is_none() && self.audio.is_none() {
                    // Nothing recordable yet (no H.264/AAC sequence header): keep waiting; the
                    // prelude has been emptied, so memory stays bounded.
                    return Ok(());
                }
                self.start(out.frames)
            }
        }
    }

    /// A track this recorder cannot hold (another codec, a second multitrack track that came
    /// too late, also inside a ManyTracks message): one log line, one count, and a line in
    /// `meta.json`'s `skipped`.
    fn note_skip(&mut self, frame: &Frame) -> io::Result<()> {
        let command = frame.enhanced().is_some_and(|t| t.first.is_none());
        let is_extra = |id: u8| self.extra.iter().any(|e| e.track_id == id);
        let extra = frame.track_id != 0 && frame.track == Track::Audio && is_extra(frame.track_id);
        let mut names = Vec::new();
        if !(command || extra || (frame.track_id == 0 && recordable(frame.codec))) {
            names.push(super::hls::skipped_name(frame));
        }
        for t in other_tracks(frame) {
            if t.track_id != frame.track_id && !is_extra(t.track_id) {
                names.push(format!("audio track {} ({:?})", t.track_id, t.codec));
            }
        }
        for name in names {
            if self.skipped.contains(&name) || self.skipped.len() >= MAX_SKIPPED {
                continue;
            }
            log::info!(
                "fMP4 {}: {name} is not recorded to fMP4/MP4",
                self.merge_dir.display()
            );
            super::note_skipped_track();
            self.skipped.push(name);
            self.write_meta(false)?;
        }
        Ok(())
    }

    fn finish_clean(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => return Ok(()),
            State::Waiting(mut prelude) => {
                if self.video.is_none() && self.audio.is_none() {
                    return self.write_meta(true);
                }
                self.start(prelude.take().frames)?;
                return self.finish_clean();
            }
            State::Running(mut frag) => {
                if let Some(last) = frag.finish() {
                    self.write_fragment(&last)?;
                }
            }
        }
        self.write_playlists(true)?;
        if !self.muxed.is_empty() {
            merge_dir(&self.merge_dir)?;
            self.merged = true;
        }
        self.write_meta(true)
    }

    fn description(&self) -> String {
        let mut s = format!(
            "fmp4 {} ({} segments)",
            self.merge_dir.parent().unwrap_or(&self.merge_dir).display(),
            self.muxed.len()
        );
        if self.config_changed {
            s.push_str(", sequence header changed mid-stream (kept the first)");
        }
        if self.late_track {
            s.push_str(", a track whose sequence header came after the start was left out");
        }
        s
    }
}

/// A recording lists at most this many skipped tracks.
const MAX_SKIPPED: usize = 16;

/// How many frames past the prelude's release to wait for an AC-3/MP3 track's first frame.
const AWAIT_AUDIO_FRAMES: u32 = 256;

/// The tracks other than the default one (id != 0) of a multitrack audio message, with their
/// payload ranges checked against the frame; none for anything else or a malformed message.
fn other_tracks(frame: &Frame) -> Vec<TrackPacket> {
    if frame.track != Track::Audio {
        return Vec::new();
    }
    let Some(tag) = frame.enhanced() else {
        return Vec::new();
    };
    if tag.header.multitrack.is_none() {
        return Vec::new();
    }
    tag.header
        .tracks(&frame.data)
        .filter_map(Result::ok)
        .filter(|t| t.track_id != 0 && t.payload.end <= frame.data.len())
        .collect()
}

/// A media playlist with `EXT-X-MAP` for `{prefix}_N.m4s` segments.
fn media_playlist(map: &str, prefix: &str, segs: &[SegInfo], target: u32, ended: bool) -> String {
    let mut p = MediaPlaylist::new(
        &Header {
            version: 7,
            target_duration: target as u64,
            media_sequence: segs.first().map_or(1, |s| s.sequence as u64),
            event: true,
            independent_segments: true,
            map: Some(map),
            ..Header::default()
        },
        segs.len(),
    );
    for s in segs {
        p.segment(&Segment {
            duration_secs: s.secs,
            uri: &format!("{prefix}_{}.m4s", s.sequence),
            discontinuity: false,
            program_date_time: None,
        });
    }
    p.finish(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::TAG_VIDEO;
    use crate::mux::sample_entry;
    use std::process::Command;

    /// ffmpeg and ffprobe present? Without them the end-to-end tests skip, unless
    /// RTMPD_REQUIRE_TOOLS=1 makes that a failure.
    fn tools() -> bool {
        let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
            Command::new(t)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        if !ok {
            assert!(
                std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "ffmpeg/ffprobe required (RTMPD_REQUIRE_TOOLS=1)"
            );
            println!("skipped: ffmpeg not found");
        }
        ok
    }

    use crate::testutil::temp_dir as tmpdir;

    fn run(cmd: &str, args: &[&str]) -> (String, String) {
        let o = Command::new(cmd).args(args).output().unwrap();
        assert!(
            o.status.success() || cmd == "ffmpeg",
            "{cmd} {args:?} failed"
        );
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn make_flv(dir: &Path, inputs: &[&str]) -> PathBuf {
        let out = dir.join("fixture.flv");
        let mut args = vec!["-v", "error", "-y"];
        args.extend_from_slice(inputs);
        args.extend_from_slice(&["-f", "flv", out.to_str().unwrap()]);
        let o = Command::new("ffmpeg").args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    }

    const AV: &[&str] = &[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-bf",
        "2",
        "-g",
        "50",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
    ];

    /// A tiny FLV reader for the fixture: header, then tags, each followed by PreviousTagSize.
    fn read_flv(path: &Path) -> Vec<Frame> {
        let b = fs::read(path).unwrap();
        assert_eq!(&b[..3], b"FLV");
        let mut pos = u32::from_be_bytes(b[5..9].try_into().unwrap()) as usize + 4;
        let mut frames = Vec::new();
        while pos + 11 <= b.len() {
            let t = b[pos];
            let size = u32::from_be_bytes([0, b[pos + 1], b[pos + 2], b[pos + 3]]) as usize;
            let ts = u32::from_be_bytes([b[pos + 7], b[pos + 4], b[pos + 5], b[pos + 6]]);
            let body = Bytes::copy_from_slice(&b[pos + 11..pos + 11 + size]);
            if let Some(f) = Frame::parse(t, ts, body) {
                frames.push(f);
            }
            pos += 11 + size + 4;
        }
        frames
    }

    fn errors(input: &Path) -> String {
        run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-i",
                input.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ],
        )
        .1
    }

    fn concat(out: &Path, parts: &[PathBuf]) -> PathBuf {
        let mut all = Vec::new();
        for p in parts {
            all.extend_from_slice(&fs::read(p).unwrap());
        }
        fs::write(out, all).unwrap();
        out.to_path_buf()
    }

    fn video_frames(path: &Path) -> u64 {
        let (o, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
                path.to_str().unwrap(),
            ],
        );
        o.trim().parse().unwrap_or(0)
    }

    fn stream_field(path: &Path, sel: &str, field: &str) -> f64 {
        let (o, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                sel,
                "-show_entries",
                &format!("stream={field}"),
                "-of",
                "csv=p=0",
                path.to_str().unwrap(),
            ],
        );
        o.trim().parse().unwrap_or(f64::NAN)
    }

    fn top_level_boxes(path: &Path) -> Vec<String> {
        let b = fs::read(path).unwrap();
        crate::mux::bmff::boxes(&b)
            .map(|r| String::from_utf8_lossy(&r.unwrap().0).into_owned())
            .collect()
    }

    fn record(stream_dir: &Path, frames: &[Frame], fragment_ms: u32, started: SystemTime) {
        let mut sink = Fmp4Sink::create(stream_dir, fragment_ms, started).unwrap();
        for f in frames {
            sink.frame(f).unwrap();
        }
        sink.finish().unwrap();
    }

    /// Counts the packets of the first stream of `sel` ("v:0", "a:0") without decoding.
    fn packets(path: &Path, sel: &str) -> u64 {
        let (o, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                sel,
                "-count_packets",
                "-show_entries",
                "stream=nb_read_packets",
                "-of",
                "csv=p=0",
                path.to_str().unwrap(),
            ],
        );
        // Side data makes ffprobe print "94,".
        o.trim().trim_end_matches(',').parse().unwrap_or(0)
    }

    /// Issue 14: the merged MP4 of a 30 fps H.264 source held 301 of its 302 frames.
    #[test]
    fn merged_mp4_of_30fps_source_keeps_the_last_frame() {
        if !tools() {
            return;
        }
        let dir = tmpdir("fmp4-last-frame");
        let flv = make_flv(
            &dir,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
                "-frames:v",
                "302",
                "-c:v",
                "libx264",
                "-g",
                "60",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
            ],
        );
        let source = packets(&flv, "v:0");
        assert!(source >= 300, "fixture has {source} frames");
        let frames = read_flv(&flv);
        let stream_dir = dir.join("rec");
        record(&stream_dir, &frames, 2000, SystemTime::now());
        let full = stream_dir.join(MERGE_DIR).join(FULL_NAME);
        assert_eq!(
            packets(&full, "v:0"),
            source,
            "merged MP4 lost video frames"
        );
        assert_eq!(
            video_frames(&full),
            source,
            "merged MP4 decodes fewer frames"
        );
        assert_eq!(packets(&full, "a:0"), packets(&flv, "a:0"), "audio packets");
    }

    /// A second multitrack audio track (FFmpeg 9's OneTrack form, track 1) becomes a third trak
    /// (id 3) of the muxed form and of the merged MP4, with every frame; nothing is skipped and
    /// the separate form keeps the default tracks.
    #[test]
    fn second_multitrack_audio_track_is_an_extra_trak() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let dir = tmpdir("fmp4-multitrack");
        record(
            &dir,
            &read_flv(&root.join("multitrack_aac.flv")),
            1000,
            SystemTime::now(),
        );
        let merge = dir.join(MERGE_DIR);
        let meta = fs::read_to_string(merge.join(META_NAME)).unwrap();
        assert!(meta.contains("\"skipped\":[]"), "{meta}");
        assert!(meta.contains("\"tracks\":[\"video\",\"audio\"]"), "{meta}");
        assert!(
            meta.contains(
                "\"extra_audio\":[{\"track\":1,\"mp4_track_id\":3,\"codec\":\"mp4a.40.2\""
            ),
            "{meta}"
        );
        let init = fs::read(merge.join(INIT_NAME)).unwrap();
        let tracks = crate::mux::mp4::parse_init(&init).unwrap();
        let ids: Vec<(u32, bool)> = tracks.iter().map(|t| (t.track_id, t.audio)).collect();
        assert_eq!(ids, [(1, false), (2, true), (3, true)]);
        let sep_init = fs::read(dir.join(SEPARATE_DIR).join(AUDIO_INIT_NAME)).unwrap();
        assert_eq!(crate::mux::mp4::parse_init(&sep_init).unwrap().len(), 1);
        if !tools() {
            return;
        }
        let full = merge.join(FULL_NAME);
        assert_eq!(errors(&full), "", "merged MP4 decodes clean");
        let facts = fs::read_to_string(root.join("facts.txt")).unwrap();
        let fact = |k: &str| -> u64 {
            facts
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                .unwrap()
        };
        assert_eq!(packets(&full, "v:0"), fact("multitrack_aac.flv.frames.0"));
        assert_eq!(packets(&full, "a:0"), fact("multitrack_aac.flv.frames.1"));
        assert_eq!(packets(&full, "a:1"), fact("multitrack_aac.flv.frames.2"));
        let _ = fs::remove_dir_all(&dir);
    }

    /// An Opus stream with an audio bridge (its AAC 300 ms behind): the bridge's AAC is the
    /// audio track (id 2, enabled; the separate form's audio), the Opus an extra trak (id 3)
    /// that is not enabled, in the muxed form and the merged MP4, every frame of both at its
    /// time. `meta.json` names all three.
    #[test]
    fn an_opus_streams_bridged_aac_is_the_audio_track_and_the_opus_an_alternate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let source = read_flv(&root.join("fixture.flv"));
        let (frames, aac) = crate::hub::bridge::testutil::opus_with_bridge(&source, 300);
        let video = source
            .iter()
            .filter(|f| f.track == Track::Video && media_payload(f).is_some())
            .count() as u64;
        let dir = tmpdir("fmp4-bridged");
        record(&dir, &frames, 2000, SystemTime::now());
        let merge = dir.join(MERGE_DIR);
        let meta = fs::read_to_string(merge.join(META_NAME)).unwrap();
        assert!(meta.contains("\"audio_codec\":\"mp4a.40.2\""), "{meta}");
        assert!(meta.contains("\"audio_bridged\":true"), "{meta}");
        assert!(meta.contains(",mp4a.40.2,opus\""), "codecs: {meta}");
        assert!(
            meta.contains("\"extra_audio\":[{\"track\":0,\"mp4_track_id\":3,\"codec\":\"opus\",\"sample_rate\":48000,\"channels\":2,\"alternate\":true}]"),
            "{meta}"
        );
        let sep_meta = fs::read_to_string(dir.join(SEPARATE_DIR).join(META_NAME)).unwrap();
        assert!(sep_meta.contains(",mp4a.40.2\""), "{sep_meta}");
        assert!(!sep_meta.contains("opus"), "{sep_meta}");
        let entry = |t: &crate::mux::mp4::TrackInit| t.stsd[20..24].to_vec();
        let init = fs::read(merge.join(INIT_NAME)).unwrap();
        let tracks = crate::mux::mp4::parse_init(&init).unwrap();
        let got: Vec<(u32, bool, Vec<u8>)> = tracks
            .iter()
            .map(|t| (t.track_id, t.enabled, entry(t)))
            .collect();
        assert_eq!(
            got,
            [
                (1, true, b"avc1".to_vec()),
                (2, true, b"mp4a".to_vec()),
                (3, false, b"Opus".to_vec())
            ]
        );
        let sep_init = fs::read(dir.join(SEPARATE_DIR).join(AUDIO_INIT_NAME)).unwrap();
        let sep = crate::mux::mp4::parse_init(&sep_init).unwrap();
        assert_eq!(sep.len(), 1);
        assert_eq!(entry(&sep[0]), b"mp4a");
        let full = merge.join(FULL_NAME);
        let moov = crate::mux::mp4::parse_init(&fs::read(&full).unwrap()).unwrap();
        let enabled: Vec<bool> = moov.iter().map(|t| t.enabled).collect();
        assert_eq!(enabled, [true, true, false], "stream_full.mp4's tkhd flags");
        if !tools() {
            return;
        }
        assert_eq!(packets(&full, "v:0"), video);
        assert_eq!(packets(&full, "a:0"), aac as u64, "every AAC frame");
        assert_eq!(packets(&full, "a:1"), aac as u64, "every Opus packet");
        // Both audio tracks start with the video (the AAC came 300 ms behind it); FFmpeg
        // takes the enabled one as the default.
        let (o, _) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,start_time:stream_disposition=default",
                "-of",
                "csv=p=0",
                full.to_str().unwrap(),
            ],
        );
        let rows: Vec<Vec<&str>> = o.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{o}");
        let start = |i: usize| rows[i][1].parse::<f64>().unwrap();
        assert_eq!((rows[1][0], rows[2][0]), ("aac", "opus"), "{o}");
        assert!((start(1) - start(0)).abs() < 0.05, "{o}");
        assert!((start(2) - start(0)).abs() < 0.05, "{o}");
        assert_eq!(
            (rows[1][2], rows[2][2]),
            ("1", "0"),
            "default disposition: {o}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// The same two AAC tracks sent as ManyTracks messages (both tracks in one message, as the
    /// spec allows): track 1 is still an extra trak with every frame.
    #[test]
    fn many_tracks_messages_record_both_tracks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let frames = read_flv(&root.join("multitrack_aac.flv"));
        // (packet type, payload) of each track, in order; track 1's channel layout is dropped.
        let payloads = |id: u8| -> Vec<(u8, Vec<u8>)> {
            frames
                .iter()
                .filter(|f| f.track == Track::Audio && f.track_id == id)
                .filter_map(|f| match f.enhanced() {
                    Some(t) => {
                        let p = t.first?;
                        let pt = match p.packet_type {
                            PacketType::SequenceStart => 0,
                            PacketType::CodedFrames => 1,
                            _ => return None,
                        };
                        Some((pt, f.data[p.payload].to_vec()))
                    }
                    None => Some((f.data[1], f.data[2..].to_vec())),
                })
                .collect()
        };
        let (t0, t1) = (payloads(0), payloads(1));
        assert_eq!((t0.len(), t1.len()), (143, 143));
        let times: Vec<u32> = frames
            .iter()
            .filter(|f| f.track == Track::Audio && f.track_id == 0)
            .map(|f| f.time as u32)
            .collect();
        let mut combined: Vec<Frame> = frames
            .iter()
            .filter(|f| f.track != Track::Audio)
            .cloned()
            .collect();
        for ((a, b), ts) in t0.iter().zip(&t1).zip(times) {
            assert_eq!(a.0, b.0);
            let mut body = vec![0x95, 0x10 | a.0];
            body.extend_from_slice(b"mp4a");
            for (id, data) in [(0u8, &a.1), (1, &b.1)] {
                body.push(id);
                body.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                body.extend_from_slice(data);
            }
            combined.push(Frame::parse(8, ts, Bytes::from(body)).unwrap());
        }
        combined.sort_by_key(|f| f.time);
        let dir = tmpdir("fmp4-manytracks");
        record(&dir, &combined, 1000, SystemTime::now());
        let merge = dir.join(MERGE_DIR);
        let meta = fs::read_to_string(merge.join(META_NAME)).unwrap();
        assert!(meta.contains("\"skipped\":[]"), "{meta}");
        assert!(meta.contains("\"extra_audio\":[{\"track\":1,"), "{meta}");
        if tools() {
            let full = merge.join(FULL_NAME);
            assert_eq!(errors(&full), "", "merged MP4 decodes clean");
            assert_eq!(packets(&full, "a:0"), 142);
            assert_eq!(packets(&full, "a:1"), 142);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// A second track whose header comes after the first segment is written cannot join the
    /// init segment any more: listed as skipped, counted, and the default tracks are recorded.
    #[test]
    fn late_second_multitrack_audio_track_is_listed_as_skipped() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let dir = tmpdir("fmp4-multitrack-late");
        let before = crate::record::skipped_tracks();
        let (late, mut frames): (Vec<Frame>, Vec<Frame>) =
            read_flv(&root.join("multitrack_aac.flv"))
                .into_iter()
                .partition(|f| f.track_id == 1);
        let at = frames.iter().position(|f| f.time >= 2500).unwrap();
        frames.splice(at..at, late);
        record(&dir, &frames, 1000, SystemTime::now());
        let meta = fs::read_to_string(dir.join(MERGE_DIR).join(META_NAME)).unwrap();
        assert!(
            meta.contains("\"skipped\":[\"audio track 1 (Aac)\"]"),
            "{meta}"
        );
        assert!(meta.contains("\"tracks\":[\"video\",\"audio\"]"), "{meta}");
        assert!(meta.contains("\"extra_audio\":[]"), "{meta}");
        assert!(crate::record::skipped_tracks() > before);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Every fixture of tests/data/codecs (HEVC, AV1, VP9, Opus, MP3, AC-3) is recorded with its
    /// sample entry and codec string, and the merged MP4 holds every packet of the source.
    #[test]
    fn every_codec_fixture_is_recorded_with_its_sample_entry() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let facts = fs::read_to_string(root.join("facts.txt")).unwrap();
        let cases = [
            ("hevc_aac.flv", "hvc1.", "mp4a.40.2", &b"hvc1"[..]),
            ("av1_opus.flv", "av01.", "opus", b"av01"),
            ("vp9_opus.flv", "vp09.", "opus", b"vp09"),
            ("h264_mp3.flv", "avc1.", "mp4a.6B", b"avc1"),
            ("h264_ac3.flv", "avc1.", "ac-3", b"avc1"),
        ];
        let have = tools();
        for (name, video, audio, entry) in cases {
            let dir = tmpdir(&format!("fmp4-codec-{name}"));
            let frames = read_flv(&root.join(name));
            record(&dir, &frames, 1000, SystemTime::now());
            let merge = dir.join(MERGE_DIR);
            let meta = fs::read_to_string(merge.join(META_NAME)).unwrap();
            assert!(
                meta.contains(&format!("\"video_codec\":\"{video}")),
                "{name}: {meta}"
            );
            assert!(
                meta.contains(&format!("\"audio_codec\":\"{audio}\"")),
                "{name}: {meta}"
            );
            let init = fs::read(merge.join(INIT_NAME)).unwrap();
            assert!(
                init.windows(4).any(|w| w == entry),
                "{name}: no {entry:?} entry"
            );
            let playlist =
                fs::read_to_string(dir.join(SEPARATE_DIR).join(MASTER_PLAYLIST)).unwrap();
            assert!(playlist.contains(audio), "{name}: {playlist}");
            if !have {
                continue;
            }
            let full = merge.join(FULL_NAME);
            let e = errors(&full);
            assert!(e.trim().is_empty(), "{name}: {e}");
            let want_v = sample_entry::fact(&facts, &format!("{name}.frames.0")) as u64;
            let want_a = sample_entry::fact(&facts, &format!("{name}.frames.1")) as u64;
            let got_v = packets(&full, "v:0");
            let got_a = packets(&full, "a:0");
            assert!(
                got_v.abs_diff(want_v) <= 1,
                "{name}: video {got_v} of {want_v}"
            );
            // Decoded audio frames may differ from packets (priming); packets within a frame or two.
            assert!(
                got_a.abs_diff(want_a) <= 2,
                "{name}: audio {got_a} of {want_a}"
            );
        }
    }

    fn segments(dir: &Path, prefix: &str, init: &str) -> Vec<PathBuf> {
        let mut v = vec![dir.join(init)];
        v.extend(
            super::super::merge::segment_files(dir, prefix)
                .unwrap()
                .into_iter()
                .map(|(_, p)| p),
        );
        v
    }

    #[test]
    fn playlist_text() {
        let segs = [
            SegInfo {
                sequence: 1,
                secs: 4.0,
                bytes: 10,
            },
            SegInfo {
                sequence: 2,
                secs: 4.48,
                bytes: 10,
            },
        ];
        let p = media_playlist("init.mp4", "segment", &segs, 5, true);
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:1\n\
             #EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n\
             #EXTINF:4.000,\nsegment_1.m4s\n#EXTINF:4.480,\nsegment_2.m4s\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn waits_for_both_sequence_headers() {
        let dir = tmpdir("wait");
        let mut sink = Fmp4Sink::create(&dir, 1000, SystemTime::now()).unwrap();
        // A video frame before any sequence header, then the headers: nothing lost.
        let avcc = [
            1u8, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0, 0x1e, 1, 0, 2, 0x68, 0xce,
        ];
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend_from_slice(&avcc);
        let key = Frame::parse(
            TAG_VIDEO,
            0,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
        )
        .unwrap();
        sink.frame(&key).unwrap();
        assert!(!dir.join(MERGE_DIR).join("init.mp4").exists());
        sink.frame(&Frame::parse(TAG_VIDEO, 0, Bytes::from(seq)).unwrap())
            .unwrap();
        assert!(
            !dir.join(MERGE_DIR).join("init.mp4").exists(),
            "still waiting for audio"
        );
        sink.frame(&Frame::parse(8, 0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap())
            .unwrap();
        assert!(dir.join(MERGE_DIR).join("init.mp4").exists());
        assert!(dir.join(SEPARATE_DIR).join("audio_init.mp4").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    fn tfdts(segment: &Path) -> Vec<u64> {
        use crate::mux::bmff::{boxes, find, Reader};
        let b = fs::read(segment).unwrap();
        let moof = find(&b, b"moof").unwrap().unwrap();
        boxes(moof)
            .filter_map(|r| r.ok())
            .filter(|(k, _)| k == b"traf")
            .map(|(_, traf)| {
                let mut r = Reader::new(find(traf, b"tfdt").unwrap().unwrap());
                r.full_header().unwrap();
                r.u64().unwrap()
            })
            .collect()
    }

    /// Sequence headers at time 0, media an hour later (a relayed stream): the recording still
    /// starts at 0, and the audio that came first in time is not pulled back to the video.
    #[test]
    fn decode_times_start_near_zero_whatever_the_publisher_clock() {
        let dir = tmpdir("clock");
        let mut sink = Fmp4Sink::create(&dir, 1000, SystemTime::now()).unwrap();
        let avcc = [
            1u8, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0, 0x1e, 1, 0, 2, 0x68, 0xce,
        ];
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend_from_slice(&avcc);
        sink.frame(&Frame::parse(TAG_VIDEO, 0, Bytes::from(seq)).unwrap())
            .unwrap();
        let asc = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]);
        sink.frame(&Frame::parse(8, 0, asc).unwrap()).unwrap();
        let hour = 3_600_000u32;
        for i in 0..100u32 {
            let t = hour + i * 40;
            let first = if i % 25 == 0 { 0x17 } else { 0x27 };
            let v = Bytes::from(vec![first, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
            sink.frame(&Frame::parse(TAG_VIDEO, t, v).unwrap()).unwrap();
            let a = Bytes::from_static(&[0xaf, 1, 0x21, 0x00]);
            sink.frame(&Frame::parse(8, t - 20, a).unwrap()).unwrap();
        }
        sink.finish().unwrap();
        let t = tfdts(&dir.join(MERGE_DIR).join("segment_1.m4s"));
        // Video starts 20 ms after the earliest audio; audio starts at 0.
        assert_eq!(t, vec![20 * 90, 0]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sink_end_to_end_with_b_frames() {
        if !tools() {
            return;
        }
        let root = tmpdir("av");
        let flv = make_flv(&root, AV);
        let frames = read_flv(&flv);
        let input_frames = video_frames(&flv);
        assert!(input_frames >= 249, "fixture has {input_frames} frames");
        let data = root.join("data");
        let stream_dir = data.join("mp4/live/s");
        let started = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
        record(&stream_dir, &frames, 2000, started);
        let merge = stream_dir.join(MERGE_DIR);
        let sep = stream_dir.join(SEPARATE_DIR);

        // Segments: concatenated after their init, both forms decode cleanly.
        let muxed = segments(&merge, "segment", "init.mp4");
        assert!(muxed.len() >= 5, "{} files", muxed.len());
        let all = concat(&root.join("muxed.mp4"), &muxed);
        assert_eq!(errors(&all), "");
        assert_eq!(video_frames(&all), input_frames);
        let v = concat(
            &root.join("v.mp4"),
            &segments(&sep, "video", "video_init.mp4"),
        );
        assert_eq!(errors(&v), "");
        assert_eq!(video_frames(&v), input_frames);
        let a = concat(
            &root.join("a.mp4"),
            &segments(&sep, "audio", "audio_init.mp4"),
        );
        assert_eq!(errors(&a), "");

        // Playlists play.
        for p in [
            merge.join("index.m3u8"),
            sep.join("master.m3u8"),
            sep.join("video.m3u8"),
            sep.join("audio.m3u8"),
        ] {
            assert_eq!(errors(&p), "", "{}", p.display());
            assert!(
                fs::read_to_string(&p).unwrap().contains("#EXT-X-ENDLIST")
                    || p.ends_with("master.m3u8")
            );
        }
        let master = fs::read_to_string(sep.join("master.m3u8")).unwrap();
        assert!(
            master.contains("TYPE=AUDIO") && master.contains("RESOLUTION=320x240"),
            "{master}"
        );

        // meta.json
        let meta = fs::read_to_string(merge.join("meta.json")).unwrap();
        assert!(
            meta.contains("\"codecs\":\"avc1.") && meta.contains(",mp4a.40.2\""),
            "{meta}"
        );
        assert!(
            meta.contains("\"width\":320") && meta.contains("\"sample_rate\":44100"),
            "{meta}"
        );
        assert!(
            meta.contains("\"complete\":true") && meta.contains("\"full\":\"stream_full.mp4\"")
        );
        assert!(meta.contains(&format!("\"started\":\"{}\"", local_stamp(started))));

        // The merged MP4: faststart, every frame, right duration, tracks start together.
        let full = merge.join(FULL_NAME);
        assert_eq!(top_level_boxes(&full), ["ftyp", "moov", "mdat"]);
        assert_eq!(errors(&full), "");
        assert_eq!(video_frames(&full), input_frames);
        let vdur = stream_field(&full, "v:0", "duration");
        assert!(
            (vdur - input_frames as f64 / 25.0).abs() <= 0.04 + 1e-6,
            "video duration {vdur}"
        );
        let vstart = stream_field(&full, "v:0", "start_time");
        let astart = stream_field(&full, "a:0", "start_time");
        assert!(
            (vstart - astart).abs() <= 0.04 + 1e-6,
            "starts {vstart} {astart}"
        );

        // `rtmpd merge` on a copy gives the same bytes; a stale temp segment is ignored.
        let copy = root.join("copy");
        fs::create_dir_all(&copy).unwrap();
        for p in &muxed {
            fs::copy(p, copy.join(p.file_name().unwrap())).unwrap();
        }
        fs::write(copy.join("segment_999.m4s.tmp"), b"\0\0\0\x08junk").unwrap();
        let report = super::super::merge::merge_dir(&copy).unwrap();
        assert_eq!(report.segments, muxed.len() - 1);
        assert_eq!(report.dropped_samples, 0);
        assert_eq!(
            fs::read(copy.join(FULL_NAME)).unwrap(),
            fs::read(&full).unwrap()
        );

        // A last segment cut short by a crash: trimmed to whole samples, still clean.
        let last = copy.join(muxed.last().unwrap().file_name().unwrap());
        let len = fs::metadata(&last).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(len * 2 / 3)
            .unwrap();
        let report = super::super::merge::merge_dir(&copy).unwrap();
        assert!(
            report.dropped_samples > 0 && report.damaged.len() == 1,
            "{report:?}"
        );
        let cut = copy.join(FULL_NAME);
        assert_eq!(errors(&cut), "");
        let n = video_frames(&cut);
        assert!(n > 0 && n < input_frames, "{n}");

        // Re-publish: the previous session moves to its start time, nothing is lost.
        let mut again = Fmp4Sink::create(&stream_dir, 2000, SystemTime::now()).unwrap();
        let rotated = stream_dir.join(local_stamp(started));
        assert!(rotated.join(MERGE_DIR).join(FULL_NAME).is_file());
        assert!(rotated.join(SEPARATE_DIR).join("master.m3u8").is_file());
        assert!(!merge.join("init.mp4").exists());
        for f in &frames[..frames.len() / 4] {
            again.frame(f).unwrap();
        }
        // Crash: no finish. Restart repairs the unmerged session, and the rotated one after a
        // second re-publish (a name clash gets _1).
        drop(again);
        let lines = repair(&data);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(merge.join(FULL_NAME).is_file());
        assert_eq!(errors(&merge.join(FULL_NAME)), "");
        assert!(fs::read_to_string(merge.join("index.m3u8"))
            .unwrap()
            .contains("#EXT-X-ENDLIST"));
        assert!(repair(&data).is_empty(), "nothing left to repair");

        let _ = fs::remove_dir_all(&root);
    }

    fn single_track(name: &str, inputs: &[&str], want_video: bool) {
        if !tools() {
            return;
        }
        let root = tmpdir(name);
        let flv = make_flv(&root, inputs);
        let frames = read_flv(&flv);
        let stream_dir = root.join("mp4/live/s");
        record(&stream_dir, &frames, 1000, SystemTime::now());
        let merge = stream_dir.join(MERGE_DIR);
        let sep = stream_dir.join(SEPARATE_DIR);
        let all = concat(
            &root.join("all.mp4"),
            &segments(&merge, "segment", "init.mp4"),
        );
        assert_eq!(errors(&all), "");
        assert!(segments(&merge, "segment", "init.mp4").len() >= 4);
        let full = merge.join(FULL_NAME);
        assert_eq!(errors(&full), "");
        assert_eq!(errors(&merge.join("index.m3u8")), "");
        assert_eq!(errors(&sep.join("master.m3u8")), "");
        let (video, audio) = (sep.join("video_init.mp4"), sep.join("audio_init.mp4"));
        assert_eq!(video.exists(), want_video);
        assert_eq!(audio.exists(), !want_video);
        let dur = stream_field(&full, if want_video { "v:0" } else { "a:0" }, "duration");
        assert!((dur - 5.0).abs() < 0.1, "duration {dur}");
        let meta = fs::read_to_string(merge.join("meta.json")).unwrap();
        let tracks = if want_video {
            "[\"video\"]"
        } else {
            "[\"audio\"]"
        };
        assert!(meta.contains(tracks), "{meta}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn audio_only_stream() {
        single_track(
            "audio",
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=sample_rate=48000",
                "-t",
                "5",
                "-c:a",
                "aac",
            ],
            false,
        );
    }

    #[test]
    fn video_only_stream() {
        single_track(
            "video",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=160x120:rate=30",
                "-t",
                "5",
                "-c:v",
                "libx264",
                "-g",
                "30",
                "-pix_fmt",
                "yuv420p",
            ],
            true,
        );
    }
}

/// Benchmark, run by hand: `RTMPD_BENCH_FLV=rec.flv cargo test --release --lib
/// record::fmp4::bench -- --ignored --nocapture`. Prints CPU seconds for slicing and for the
/// merge, merge throughput, and the peak resident memory after each phase.
#[cfg(all(test, unix))]
mod bench {
    use super::*;
    use std::io::{BufReader, Read};

    fn cpu_secs() -> f64 {
        // SAFETY: getrusage fills the struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }

    fn peak_rss_mb() -> f64 {
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        ru.ru_maxrss as f64 / 1024.0
    }

    #[test]
    #[ignore]
    fn bench() {
        let Ok(path) = std::env::var("RTMPD_BENCH_FLV") else {
            println!("set RTMPD_BENCH_FLV to an FLV file");
            return;
        };
        let out = crate::testutil::temp_dir("fmp4-bench");
        let mut r = BufReader::with_capacity(1 << 20, fs::File::open(&path).unwrap());
        let mut head = [0u8; 13];
        r.read_exact(&mut head).unwrap();
        let mut sink = Fmp4Sink::create(&out, 4000, SystemTime::now()).unwrap();
        let (mut frames, mut last_dts, mut first_dts) = (0u64, 0u32, None);
        let cpu0 = cpu_secs();
        let mut tag = [0u8; 11];
        while r.read_exact(&mut tag).is_ok() {
            let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
            let ts = u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]);
            let mut body = vec![0u8; size + 4];
            if r.read_exact(&mut body).is_err() {
                break;
            }
            body.truncate(size);
            if let Some(f) = Frame::parse(tag[0], ts, Bytes::from(body)) {
                first_dts.get_or_insert(ts);
                last_dts = ts;
                frames += 1;
                sink.frame(&f).unwrap();
            }
        }
        // Close the last segment without merging: the merge is measured on its own.
        if let State::Running(frag) = &mut sink.state {
            if let Some(last) = frag.finish() {
                sink.write_fragment(&last).unwrap();
            }
        }
        sink.state = State::Done;
        let slice_cpu = cpu_secs() - cpu0;
        let media_h = last_dts.wrapping_sub(first_dts.unwrap_or(0)) as f64 / 3_600_000.0;
        let rss_slice = peak_rss_mb();
        let cpu1 = cpu_secs();
        let wall = std::time::Instant::now();
        let report = merge_dir(&out.join(MERGE_DIR)).unwrap();
        let merge_cpu = cpu_secs() - cpu1;
        let secs = wall.elapsed().as_secs_f64();
        println!(
            "frames {frames}, media {:.3} h, {} segments, {:.1} MB",
            media_h,
            report.segments,
            report.bytes as f64 / 1e6
        );
        println!(
            "slicer: {:.2} CPU s ({:.2} CPU s per media hour); peak RSS {:.1} MB",
            slice_cpu,
            slice_cpu / media_h,
            rss_slice
        );
        println!(
            "merge: {:.2} CPU s ({:.2} per media hour), {:.2} s wall, {:.0} MB/s; peak RSS {:.1} MB",
            merge_cpu,
            merge_cpu / media_h,
            secs,
            report.bytes as f64 / 1e6 / secs,
            peak_rss_mb()
        );
        let _ = fs::remove_dir_all(&out);
    }
}
