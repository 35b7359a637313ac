//! The HLS recorder: `hls/{app}/{stream}/segment_N.ts` and `index.m3u8` for the live session.
//! Segments are written under a temp name and renamed when closed; the playlist lists closed
//! segments only and is replaced atomically. On a new session the previous one's files move to a
//! sub-folder named after its start (its playlist completed first); at process start, playlists a
//! killed process left open get their ENDLIST (`repair`). TS bytes come from `mux::ts`, cut and
//! playlist decisions from `mux::hls`, times and jumps from the ingest normaliser (`Frame::time`,
//! `Frame::discontinuity`): a jump cuts the segment at the next keyframe (audio-only: at once)
//! and the next one starts with `#EXT-X-DISCONTINUITY`. TS carries H.264/HEVC and AAC/MP3/AC-3/E-AC-3;
//! a stream with AV1, VP9 or Opus is recorded as fMP4 segments instead (`init.mp4`,
//! `segment_N.m4s`, VERSION 7, via `mux::fmp4`); `meta.json` beside the playlist says which format
//! and lists the tracks skipped (other codecs, second multitrack tracks: logged once, counted).
//! Audio before the first keyframe opens the first segment, as in the FLV and MP4 recordings.
//! Over 800 lines: the two segment formats share the session, prelude, playlist and repair code.

use super::paths::{self, with_path};
use super::{Prelude, Sink};
use crate::codec::json;
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::enhanced::PacketType;
use crate::media::hevc::HevcConfig;
use crate::media::{ac3::SyncFrame, mp3};
use crate::media::{Codec, Frame, StreamKey, Track};
use crate::mux::fmp4::{self as fmp4mux, Fragment, Fragmenter, TrackConfig};
use crate::mux::hls::{self as hlsmux, CutPolicy, Playlist, SegmentEntry};
use crate::mux::ts::{self, Es, Pes, Program, StreamType, TsWriter};
use bytes::Bytes;
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const PLAYLIST: &str = "index.m3u8";

/// Added to every timestamp so that frames sent slightly before the first one, and the PCR lead
/// below, stay positive.
const TS_OFFSET_MS: i64 = 200;
/// The PCR runs this far ahead of the decode time of the frame that carries it.
const PCR_LEAD_MS: i64 = 100;

#[derive(Clone, Copy, Debug)]
pub struct HlsOptions {
    pub fragment_ms: u32,
    /// Segments in the playlist; 0 = all.
    pub window: usize,
}

pub struct HlsSink {
    /// Told of each segment as it closes (`--upload`).
    pub upload: Option<super::upload::Uploader>,
    dir: PathBuf,
    key: String,
    started_ms: i64,
    policy: CutPolicy,
    playlist: Playlist,
    prelude: Option<Prelude>,
    /// The session's time 0 on the stream time (`Frame::time`).
    base: u64,
    avc: Option<AvcConfig>,
    aac: Option<AudioSpecificConfig>,
    hevc: Option<HevcConfig>,
    /// MP3, AC-3 or E-AC-3: known from the first frame, which describes itself.
    framed_audio: Option<StreamType>,
    /// Audio that came before the first video keyframe (bounded): it opens the first segment
    /// with the keyframe, as the FLV and MP4 recorders keep it too.
    early_audio: Vec<(Frame, i64)>,
    /// Frames the prelude may still hold for an MP3/AC-3 track's first frame (`None`: none seen).
    await_framed: Option<u32>,
    ts: TsWriter,
    segment: Option<OpenSegment>,
    next_number: u64,
    /// The next segment starts with `#EXT-X-DISCONTINUITY`, and should start soon.
    pending_discontinuity: bool,
    audio_end: (i64, i64),
    video_end: (i64, i64),
    /// Reused buffers for one frame's elementary stream bytes and its packets.
    es: Vec<u8>,
    packets: Vec<u8>,
    /// Tracks this recorder cannot hold, as "audio track 1 (Flac)": logged and counted once.
    skipped: Vec<String>,
    /// AV1, VP9 or Opus: this session is recorded as fMP4 segments instead of TS.
    fmp4: Option<Fmp4Hls>,
    /// An Opus stream whose audio bridge's AAC (`Frame::bridged`) came: MPEG-TS with that AAC,
    /// the Opus ignored.
    bridged_aac: bool,
}

/// The fMP4 form of an HLS recording: `init.mp4`, `segment_N.m4s`, playlist VERSION 7.
struct Fmp4Hls {
    frag: Fragmenter,
    codecs: Vec<String>,
    /// Media time (ms) at the start of the next segment, for its program date time.
    elapsed_ms: i64,
}

struct OpenSegment {
    number: u64,
    file: BufWriter<File>,
    tmp: PathBuf,
    start: i64,
    discontinuity: bool,
}

impl HlsSink {
    /// Starts a session in `dir`: a previous session's files are archived first.
    pub fn create(
        dir: &Path,
        key: &StreamKey,
        started: SystemTime,
        options: HlsOptions,
    ) -> io::Result<HlsSink> {
        fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
        if let Some(to) = archive_previous(dir)? {
            log::info!("HLS {key}: previous session moved to {}", to.display());
        }
        let started_ms = paths::unix_ms(started);
        Ok(HlsSink {
            upload: None,
            dir: dir.to_path_buf(),
            key: key.to_string(),
            started_ms,
            policy: CutPolicy {
                target_ms: options.fragment_ms.max(1) as i64,
            },
            playlist: Playlist::new(options.window, options.fragment_ms as u64, started_ms),
            prelude: Some(Prelude::default()),
            base: 0,
            avc: None,
            aac: None,
            hevc: None,
            framed_audio: None,
            early_audio: Vec::new(),
            await_framed: None,
            ts: TsWriter::new(Program::default()),
            segment: None,
            next_number: 1,
            pending_discontinuity: false,
            audio_end: (i64::MIN, 0),
            video_end: (i64::MIN, 0),
            es: Vec::new(),
            packets: Vec::new(),
            skipped: Vec::new(),
            fmp4: None,
            bridged_aac: false,
        })
    }

    /// The program the known codec configurations allow.
    fn wanted_program(&self) -> Program {
        Program {
            video: if self.avc.is_some() {
                Some(StreamType::H264)
            } else {
                self.hevc.as_ref().map(|_| StreamType::Hevc)
            },
            audio: if self.aac.is_some() {
                Some(StreamType::Aac)
            } else {
                self.framed_audio
            },
        }
    }

    fn release(&mut self) -> io::Result<()> {
        let Some(mut prelude) = self.prelude.take() else {
            return Ok(());
        };
        let pre = prelude.take();
        self.base = pre.first_time;
        // MP3 and AC-3 are known by their first frame, which may follow the first keyframe:
        // learnt here, so the first segment's program has the audio too.
        let framed = pre.frames.iter().find_map(|f| {
            (f.track == Track::Audio && f.track_id == 0)
                .then(|| framed_audio_type(f))
                .flatten()
        });
        if framed.is_some() {
            self.framed_audio = framed;
        }
        self.choose_fmp4(&pre.frames)?;
        // The first segment's program is chosen at the first keyframe from the configurations
        // known then. An MPEG-TS source (SRT) has no sequence headers up front: its audio
        // configuration comes with its first audio PES, after the first video frames. Taken
        // first, the audio is in the first segment as it is with RTMP.
        let mut frames = pre.frames;
        let bridged = self.fmp4.is_none() && self.bridged_aac;
        if let Some(i) = frames.iter().position(|f| {
            f.track == Track::Audio && f.track_id == 0 && f.config && f.bridged == bridged
        }) {
            let config = frames.remove(i);
            frames.insert(0, config);
        }
        for f in &frames {
            self.media(f)?;
        }
        Ok(())
    }

    /// MPEG-TS cannot carry AV1, VP9 or Opus in a way players read: a stream with one of them
    /// is recorded as fMP4 segments (every track of the stream in them), said in one log line
    /// and in `meta.json`.
    fn choose_fmp4(&mut self, frames: &[Frame]) -> io::Result<()> {
        // Opus goes in MPEG-TS as the audio bridge's AAC when that came.
        let wants = frames.iter().any(|f| {
            f.track_id == 0
                && f.config
                && (matches!(f.codec, Codec::Av1 | Codec::Vp9)
                    || (f.codec == Codec::Opus && !self.bridged_aac))
        });
        if !wants {
            return Ok(());
        }
        let mut video: Option<TrackConfig> = None;
        let mut audio: Option<TrackConfig> = None;
        for f in frames
            .iter()
            .filter(|f| f.track_id == 0 && f.track != Track::Meta && !f.bridged)
        {
            let slot = if f.track == Track::Video {
                &mut video
            } else {
                &mut audio
            };
            if slot.is_none() {
                *slot = crate::mux::fmp4::track_config(f, &Bytes::copy_from_slice(f.payload()));
            }
        }
        let codec = |c: &TrackConfig| match c {
            TrackConfig::Avc(v) => crate::media::avc::AvcConfig::parse(&v.avcc)
                .map_or_else(String::new, |c| c.codec_string()),
            TrackConfig::Aac(a) => {
                AudioSpecificConfig::parse(&a.asc).map_or_else(String::new, |c| c.codec_string())
            }
            TrackConfig::Other(e) => e.codec_string(),
        };
        let codecs: Vec<String> = video.iter().chain(audio.iter()).map(codec).collect();
        log::info!(
            "HLS {}: {} cannot go in MPEG-TS; recording fMP4 segments (init.mp4, segment_N.m4s)",
            self.key,
            codecs.join(",")
        );
        paths::replace_file(
            &self.dir.join(FMP4_INIT),
            &fmp4mux::init_segment_for(video.as_ref(), audio.as_ref()),
        )?;
        self.playlist.set_fmp4(FMP4_INIT);
        self.fmp4 = Some(Fmp4Hls {
            frag: Fragmenter::new(
                self.policy.target_ms.clamp(100, u32::MAX as i64) as u32,
                video.is_some(),
                audio.as_ref().map(|a| a.timescale()),
            ),
            codecs,
            elapsed_ms: 0,
        });
        self.write_meta()
    }

    fn media_fmp4(&mut self, frame: &Frame) -> io::Result<()> {
        if frame.track == Track::Meta || frame.bridged {
            return Ok(());
        }
        let command = frame.enhanced().is_some_and(|t| t.first.is_none());
        if !command && (frame.track_id != 0 || !crate::mux::fmp4::recordable(frame.codec)) {
            return self.skip(frame);
        }
        let Some(data) = crate::mux::fmp4::media_payload(frame) else {
            return Ok(());
        };
        let Some(m) = &mut self.fmp4 else {
            return Ok(());
        };
        match m
            .frag
            .push(frame.track, frame.time, frame.cts, frame.key, data)
        {
            Some(closed) => self.write_m4s(&closed),
            None => Ok(()),
        }
    }

    fn write_m4s(&mut self, f: &Fragment) -> io::Result<()> {
        let runs = f.runs();
        if runs.is_empty() {
            return Ok(());
        }
        let number = self.next_number;
        self.next_number += 1;
        let path = self.dir.join(hlsmux::fmp4_segment_name(number));
        paths::replace_file(&path, &fmp4mux::media_segment(f.sequence, &runs))?;
        let duration_ms = ((f.duration_secs() * 1000.0).round() as u64).max(1);
        let start = self.fmp4.as_mut().map_or(0, |m| {
            let s = m.elapsed_ms;
            m.elapsed_ms += duration_ms as i64;
            s
        });
        let delete = self.playlist.push(SegmentEntry {
            number,
            duration_ms,
            program_date_ms: self.started_ms + start,
            discontinuity: false,
        });
        self.write_playlist()?;
        self.delete_segments(&delete);
        Ok(())
    }

    fn media(&mut self, frame: &Frame) -> io::Result<()> {
        if self.fmp4.is_some() {
            return self.media_fmp4(frame);
        }
        // The publisher's clock jumped (media::time decided): the next segment starts with
        // #EXT-X-DISCONTINUITY, at the next frame that may begin one. Noted before any frame is
        // skipped below, so a jump on a frame HLS does not carry is not lost.
        if frame.discontinuity && self.segment.is_some() {
            self.pending_discontinuity = true;
        }
        if frame.track == Track::Meta {
            return Ok(());
        }
        if frame.track_id != 0 {
            // A second multitrack track: TS here carries one audio and one video stream.
            return self.skip(frame);
        }
        if self.bridged_aac && frame.track == Track::Audio && !frame.bridged {
            // The Opus, carried as the bridge's AAC.
            return Ok(());
        }
        match (frame.track, frame.codec) {
            (Track::Video, Codec::Avc) if frame.config => {
                if let Some(c) = AvcConfig::parse(frame.payload()) {
                    self.avc = Some(c);
                }
                return Ok(());
            }
            (Track::Video, Codec::Hevc) if frame.config => {
                if let Some(c) = HevcConfig::parse(frame.payload()) {
                    self.hevc = Some(c);
                }
                return Ok(());
            }
            (Track::Audio, Codec::Aac) if frame.config => {
                if let Some(c) = AudioSpecificConfig::parse(frame.payload()) {
                    self.aac = Some(c);
                }
                return Ok(());
            }
            // The Enhanced SequenceStart of these holds nothing: each frame describes itself.
            (Track::Audio, Codec::Mp3 | Codec::Ac3 | Codec::Eac3) if frame.config => return Ok(()),
            (Track::Audio, Codec::Mp3 | Codec::Ac3 | Codec::Eac3) => {
                // Not a frame (MultichannelConfig, SequenceEnd, garbage): nothing to play.
                let Some(kind) = framed_audio_type(frame) else {
                    return Ok(());
                };
                self.framed_audio.get_or_insert(kind);
            }
            // Only coded pictures: not end of sequence (AVC packet type 2), nor metadata.
            (Track::Video, Codec::Avc | Codec::Hevc) if !is_picture(frame) => return Ok(()),
            (Track::Video, Codec::Avc | Codec::Hevc) | (Track::Audio, Codec::Aac) => {}
            _ => return self.skip(frame),
        }
        let nal_length_size = match frame.codec {
            Codec::Avc => self.avc.as_ref().map(|c| c.nal_length_size),
            Codec::Hevc => self.hevc.as_ref().map(|c| c.nal_length_size),
            _ => Some(0),
        };
        if let Some(n) = nal_length_size.filter(|n| *n > 0) {
            if crate::media::avc::nal_units(frame.payload(), n)
                .next()
                .is_none()
            {
                // Malformed: nothing a decoder could use.
                return Ok(());
            }
        } else if nal_length_size.is_none() {
            // Before any sequence header: nothing a decoder could use.
            return Ok(());
        }
        // Continuous across jumps (the normaliser rebased them); may be slightly negative for a
        // frame interleaved before the session's first one.
        let t = frame.time.wrapping_sub(self.base) as i64;
        let wanted = self.wanted_program();
        let is_video = frame.track == Track::Video;
        // A frame that may begin a segment: a keyframe when the program has video, else audio.
        let can_start = if wanted.video.is_some() {
            is_video && frame.key
        } else {
            !is_video
        };
        let cut = match &self.segment {
            None => can_start,
            Some(seg) => {
                can_start
                    && (self.pending_discontinuity
                        || wanted != self.ts.program()
                        || self.policy.cut_here(
                            seg.start,
                            t,
                            frame.track,
                            frame.key,
                            self.ts.program().video.is_some(),
                        ))
            }
        };
        if cut {
            self.close_segment(t)?;
            let first = self.next_number == 1;
            // The first segment spans the audio that came before the first keyframe; that
            // audio is written right after the keyframe (a segment starts with video).
            let start = self.early_audio.iter().map(|(_, t)| *t).fold(t, i64::min);
            self.open_segment(if first { start } else { t }, wanted)?;
            if first && wanted.audio.is_some() && !self.early_audio.is_empty() {
                self.write_frame(frame, t)?;
                for (f, ft) in std::mem::take(&mut self.early_audio) {
                    if !(f.codec == Codec::Aac && self.aac.is_none()) {
                        self.write_frame(&f, ft)?;
                    }
                }
                return Ok(());
            }
            self.early_audio.clear();
        }
        if self.segment.is_none() {
            // Before the first keyframe: audio waits (bounded) for it, video cannot start.
            if !is_video && self.early_audio.len() < MAX_EARLY_AUDIO {
                self.early_audio.push((frame.clone(), t));
            }
            return Ok(());
        }
        let program = self.ts.program();
        let in_program = if is_video {
            program.video.is_some()
        } else {
            program.audio == wanted.audio && program.audio.is_some()
        };
        if !in_program {
            // A track that appeared after this segment began waits for the next one.
            return Ok(());
        }
        self.write_frame(frame, t)
    }

    fn write_frame(&mut self, frame: &Frame, t: i64) -> io::Result<()> {
        self.es.clear();
        let es = match frame.codec {
            Codec::Avc => {
                let Some(cfg) = &self.avc else { return Ok(()) };
                ts::avc_access_unit(frame.payload(), cfg, frame.key, &mut self.es);
                Es::Video
            }
            Codec::Hevc => {
                let Some(cfg) = &self.hevc else { return Ok(()) };
                ts::hevc_access_unit(frame.payload(), cfg, frame.key, &mut self.es);
                Es::Video
            }
            Codec::Aac => {
                let Some(cfg) = &self.aac else { return Ok(()) };
                if !ts::adts_frame(cfg, frame.payload(), &mut self.es) {
                    log::warn!(
                        "HLS {}: an AAC frame of {} bytes is longer than ADTS can carry; not written",
                        self.key,
                        frame.payload().len()
                    );
                    return Ok(());
                }
                Es::Audio
            }
            _ => {
                self.es.extend_from_slice(frame.payload());
                Es::Audio
            }
        };
        let end = if es == Es::Video {
            &mut self.video_end
        } else {
            &mut self.audio_end
        };
        if end.0 != i64::MIN && t > end.0 && t - end.0 <= 1000 {
            end.1 = t - end.0;
        }
        end.0 = end.0.max(t);
        let dts_ms = (t + TS_OFFSET_MS).max(0);
        let pts_ms = (dts_ms + frame.cts as i64).max(dts_ms);
        let pcr_pid_is_video = self.ts.program().video.is_some();
        let carries_pcr = (es == Es::Video) == pcr_pid_is_video;
        let pes = Pes {
            es,
            pts: pts_ms as u64 * 90,
            dts: dts_ms as u64 * 90,
            random_access: frame.key,
            pcr: carries_pcr.then(|| (dts_ms - PCR_LEAD_MS).max(0) as u64 * 90),
            payload: &self.es,
        };
        self.packets.clear();
        self.ts.write_pes(&mut self.packets, &pes);
        if let Some(seg) = &mut self.segment {
            seg.file
                .write_all(&self.packets)
                .map_err(|e| with_path(e, &seg.tmp))?;
        }
        Ok(())
    }

    fn open_segment(&mut self, t: i64, program: Program) -> io::Result<()> {
        let number = self.next_number;
        self.next_number += 1;
        let final_path = self.dir.join(hlsmux::segment_name(number));
        let tmp = paths::tmp_path(&final_path);
        let file = File::create(&tmp).map_err(|e| with_path(e, &tmp))?;
        let mut file = BufWriter::with_capacity(64 * 1024, file);
        let discontinuity = self.pending_discontinuity || program != self.ts.program();
        // The very first segment starts the session: no discontinuity before it.
        let discontinuity = discontinuity && number > 1;
        self.pending_discontinuity = false;
        self.ts.set_program(program);
        if number == 1 {
            self.write_meta()?;
        }
        self.packets.clear();
        self.ts.write_tables(&mut self.packets);
        file.write_all(&self.packets)
            .map_err(|e| with_path(e, &tmp))?;
        self.segment = Some(OpenSegment {
            number,
            file,
            tmp,
            start: t,
            discontinuity,
        });
        Ok(())
    }

    /// Closes the open segment (ending at `end`), renames it and publishes the playlist.
    fn close_segment(&mut self, end: i64) -> io::Result<()> {
        let Some(mut seg) = self.segment.take() else {
            return Ok(());
        };
        seg.file.flush().map_err(|e| with_path(e, &seg.tmp))?;
        drop(seg.file);
        let final_path = self.dir.join(hlsmux::segment_name(seg.number));
        fs::rename(&seg.tmp, &final_path).map_err(|e| with_path(e, &final_path))?;
        if let Some(u) = &self.upload {
            let id = paths::local_stamp(paths::from_unix_ms(self.started_ms));
            u.file_final(&final_path, &id);
        }
        let duration_ms = (end - seg.start).max(1) as u64;
        let delete = self.playlist.push(SegmentEntry {
            number: seg.number,
            duration_ms,
            program_date_ms: self.started_ms + seg.start,
            discontinuity: seg.discontinuity,
        });
        self.write_playlist()?;
        self.delete_segments(&delete);
        Ok(())
    }

    fn write_playlist(&self) -> io::Result<()> {
        paths::replace_file(&self.dir.join(PLAYLIST), self.playlist.render().as_bytes())
    }

    fn delete_segments(&self, numbers: &[u64]) {
        for &n in numbers {
            let p = self.dir.join(self.playlist.file_name(n));
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("HLS {}: cannot delete {}: {e}", self.key, p.display());
                }
            }
        }
    }

    /// Where the media written so far ends.
    fn media_end(&self) -> i64 {
        let end = |(last, step): (i64, i64)| {
            if last == i64::MIN {
                i64::MIN
            } else {
                last + step
            }
        };
        end(self.audio_end).max(end(self.video_end))
    }
}

/// A recording lists at most this many skipped tracks (multitrack ids are 0..=255).
const MAX_SKIPPED: usize = 16;

/// The init segment of an fMP4 HLS recording.
pub const FMP4_INIT: &str = "init.mp4";

/// Beside the playlist: what the segments hold and what was skipped.
pub const META_NAME: &str = "meta.json";

/// How a skipped track is named in the log and in `meta.json`: "audio track 1 (Flac)".
pub(crate) fn skipped_name(frame: &Frame) -> String {
    let codec = frame
        .enhanced()
        .and_then(|t| t.first)
        .map_or(frame.codec, |t| t.codec);
    let kind = if frame.track == Track::Video {
        "video"
    } else {
        "audio"
    };
    format!("{kind} track {} ({codec:?})", frame.track_id)
}

/// Audio frames held before the first keyframe: more than 10 s of AAC means no video is coming
/// soon, and the rest is not held.
const MAX_EARLY_AUDIO: usize = 512;

/// How many frames past the prelude's release to wait for an AC-3/MP3 track's first frame.
const AWAIT_FRAMED_AUDIO: u32 = 256;

/// The TS stream type of an MP3 or AC-3/E-AC-3 frame, from its own header.
fn framed_audio_type(frame: &Frame) -> Option<StreamType> {
    match frame.codec {
        Codec::Mp3 => mp3::FrameHeader::parse(frame.payload()).map(|h| StreamType::for_mp3(&h)),
        Codec::Ac3 | Codec::Eac3 => SyncFrame::parse(frame.payload()).map(|f| {
            if f.enhanced {
                StreamType::Eac3
            } else {
                StreamType::Ac3
            }
        }),
        _ => None,
    }
}

/// A video frame that holds a coded picture (not a sequence end, metadata or command).
fn is_picture(frame: &Frame) -> bool {
    match frame.enhanced() {
        Some(tag) => tag.first.is_some_and(|t| {
            matches!(
                t.packet_type,
                PacketType::CodedFrames | PacketType::CodedFramesX
            )
        }),
        // Legacy AVC/HEVC: packet type 1 is a picture.
        None => frame.data.get(1) == Some(&1),
    }
}

impl HlsSink {
    /// A frame TS cannot carry here: said once per stream, with the codec and the track.
    fn skip(&mut self, frame: &Frame) -> io::Result<()> {
        let name = skipped_name(frame);
        if self.skipped.contains(&name) || self.skipped.len() >= MAX_SKIPPED {
            return Ok(());
        }
        log::info!(
            "HLS {}: {name} is not recorded to HLS (MPEG-TS here holds one H.264/HEVC and one AAC/MP3/AC-3 track)",
            self.key
        );
        super::note_skipped_track();
        self.skipped.push(name);
        self.write_meta()
    }

    /// `meta.json` beside the playlist: the codecs of the TS program and the skipped tracks.
    fn write_meta(&self) -> io::Result<()> {
        let mut text = if let Some(m) = &self.fmp4 {
            json::to_string(&Fmp4Meta {
                format: "fmp4",
                init: FMP4_INIT,
                playlist: PLAYLIST,
                codecs: m.codecs.join(","),
                skipped: &self.skipped,
            })
        } else {
            let program = self.wanted_program();
            let name = |t: Option<StreamType>| t.map(|t| format!("{t:?}"));
            json::to_string(&TsMeta {
                format: "mpegts",
                playlist: PLAYLIST,
                video: name(program.video),
                audio: name(program.audio),
                skipped: &self.skipped,
            })
        };
        text.push('\n');
        paths::replace_file(&self.dir.join(META_NAME), text.as_bytes())
    }
}

/// `meta.json` of an HLS recording in fMP4 segments (AV1, VP9, Opus).
#[derive(Serialize)]
struct Fmp4Meta<'a> {
    format: &'static str,
    init: &'static str,
    playlist: &'static str,
    /// RFC 6381, comma-separated.
    codecs: String,
    skipped: &'a [String],
}

/// `meta.json` of an MPEG-TS HLS recording: the stream types of the program (`null` for none).
#[derive(Serialize)]
struct TsMeta<'a> {
    format: &'static str,
    playlist: &'static str,
    video: Option<String>,
    audio: Option<String>,
    skipped: &'a [String],
}

impl Sink for HlsSink {
    fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        let self_described = frame.track == Track::Audio
            && frame.track_id == 0
            && matches!(frame.codec, Codec::Mp3 | Codec::Ac3 | Codec::Eac3);
        if frame.track == Track::Audio && frame.track_id == 0 && self.prelude.is_some() {
            if frame.bridged && frame.config {
                // The audio bridge's AAC: the Opus stream goes in MPEG-TS after all.
                self.bridged_aac = true;
                self.await_framed = Some(0);
            } else if frame.codec == Codec::Opus && frame.config && !self.bridged_aac {
                // An Opus stream: hold the prelude (bounded) for the bridge's AAC, which comes
                // some 300 ms after the Opus; without it, fMP4 segments with the Opus.
                self.await_framed.get_or_insert(AWAIT_FRAMED_AUDIO);
            }
        }
        if frame.bridged && !self.bridged_aac {
            // After the prelude: this session's form is chosen, and it is not the AAC's.
            return Ok(());
        }
        if self_described && self.prelude.is_some() {
            // An AC-3/MP3 SequenceStart says nothing: hold the prelude (bounded) for a frame.
            if framed_audio_type(frame).is_some() {
                self.await_framed = Some(0);
            } else if frame.config && self.await_framed.is_none() {
                self.await_framed = Some(AWAIT_FRAMED_AUDIO);
            }
        }
        let r = match &mut self.prelude {
            Some(prelude) => {
                let ready = prelude.push(frame);
                let hold = match &mut self.await_framed {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                if ready && !hold {
                    self.release()
                } else {
                    Ok(())
                }
            }
            None => self.media(frame),
        };
        if r.is_err() {
            self.abandon_segment();
        }
        r
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.prelude.as_ref().is_some_and(|p| !p.is_empty()) {
            self.release()?;
        }
        self.prelude = None;
        if let Some(last) = self.fmp4.as_mut().and_then(|m| m.frag.finish()) {
            self.write_m4s(&last)?;
        }
        let mut result = Ok(());
        if let Some(start) = self.segment.as_ref().map(|s| s.start) {
            let end = self.media_end().max(start + 1);
            result = self.close_segment(end);
        }
        if self.playlist.is_empty() {
            // Nothing playable was recorded; no playlist rather than an empty one.
            return result;
        }
        let delete = self.playlist.end();
        self.write_playlist()?;
        self.delete_segments(&delete);
        result
    }

    fn takes_bridged(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "HLS recording of {} -> {}",
            self.key,
            self.dir.join(PLAYLIST).display()
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = match &mut self.segment {
            Some(seg) => seg.file.flush().map_err(|e| with_path(e, &seg.tmp)),
            None => Ok(()),
        };
        if r.is_err() {
            self.abandon_segment();
        }
        r
    }
}

impl HlsSink {
    /// After a failed write (disk full, size limit) the recording stops: the open segment can
    /// never be whole, so it is removed (on a full disk it holds the space), and `finish` ends
    /// the playlist with the segments that were.
    fn abandon_segment(&mut self) {
        if let Some(seg) = self.segment.take() {
            let tmp = seg.tmp.clone();
            drop(seg);
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// Moves the files of a previous session in `dir` into `dir/{its start, local time}/`, after
/// making sure its playlist is complete. Folders (earlier archives) stay where they are.
fn archive_previous(dir: &Path) -> io::Result<Option<PathBuf>> {
    let playlist = dir.join(PLAYLIST);
    let mut start = None;
    match fs::read_to_string(&playlist) {
        Ok(text) => {
            start = hlsmux::playlist_start_ms(&text).map(paths::from_unix_ms);
            if !hlsmux::has_endlist(&text) {
                append_endlist(&playlist, &text)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, &playlist)),
    }
    let Some(start) = start.or_else(|| paths::oldest_file_time(dir)) else {
        return Ok(None); // no files at all
    };
    paths::archive_session(dir, &paths::local_stamp(start), |_, ty| ty.is_file())
}

fn append_endlist(playlist: &Path, text: &str) -> io::Result<()> {
    let mut fixed = text.to_string();
    if !fixed.is_empty() && !fixed.ends_with('\n') {
        fixed.push('\n');
    }
    fixed.push_str("#EXT-X-ENDLIST\n");
    paths::replace_file(playlist, fixed.as_bytes())
}

/// Crash repair: every `index.m3u8` under `{data_dir}/hls/{app}/{stream}/` (and its session
/// folders) without ENDLIST gets one; playlist temp files are removed. Returns the repaired paths.
/// Partial segments (`segment_N.ts.tmp`) are left alone: not listed, but not thrown away either.
pub fn repair(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut repaired = Vec::new();
    let root = data_dir.join("hls");
    for app in subdirs(&root)? {
        for stream in subdirs(&app)? {
            let mut dirs = vec![stream.clone()];
            dirs.extend(subdirs(&stream)?);
            for dir in dirs {
                let tmp = paths::tmp_path(&dir.join(PLAYLIST));
                if tmp.exists() {
                    fs::remove_file(&tmp).map_err(|e| with_path(e, &tmp))?;
                }
                let playlist = dir.join(PLAYLIST);
                let text = match fs::read_to_string(&playlist) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(with_path(e, &playlist)),
                };
                if !hlsmux::has_endlist(&text) {
                    append_endlist(&playlist, &text)?;
                    log::info!(
                        "repaired {}: appended #EXT-X-ENDLIST (left open by a previous run)",
                        playlist.display()
                    );
                    repaired.push(playlist);
                }
            }
        }
    }
    Ok(repaired)
}

fn subdirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(with_path(e, dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Normaliser;
    use crate::record::testutil::{check_segment, temp_dir};
    use bytes::Bytes;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn avc_config() -> Frame {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0d, 0xff, 0xe1];
        b.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        b.extend_from_slice(SPS);
        b.push(1);
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(PPS);
        Frame::parse(9, 0, Bytes::from(b)).unwrap()
    }

    fn picture(dts: u32, key: bool) -> Frame {
        let nal = if key { 0x65 } else { 0x41 };
        let first = if key { 0x17 } else { 0x27 };
        let body = vec![first, 1, 0, 0, 0, 0, 0, 0, 3, nal, 0x88, 0x84];
        Frame::parse(9, dts, Bytes::from(body)).unwrap()
    }

    fn aac(dts: u32, config: bool) -> Frame {
        let body = if config {
            vec![0xaf, 0, 0x12, 0x10]
        } else {
            vec![0xaf, 1, 0x21, 0x10, 0x04]
        };
        Frame::parse(8, dts, Bytes::from(body)).unwrap()
    }

    fn sink(dir: &Path, window: usize) -> HlsSink {
        let key = StreamKey::new("live", "t").unwrap();
        let opts = HlsOptions {
            fragment_ms: 2000,
            window,
        };
        HlsSink::create(dir, &key, paths::from_unix_ms(1_795_482_509_000), opts).unwrap()
    }

    /// 25 fps video with a keyframe every second and 40 ms audio, from publisher time `t0`.
    fn feed(s: &mut HlsSink, t0: u32, ms: u32) {
        for t in (0..ms).step_by(40) {
            s.frame(&picture(t0 + t, t % 1000 == 0)).unwrap();
            s.frame(&aac(t0 + t, false)).unwrap();
        }
    }

    fn listed(dir: &Path) -> Vec<String> {
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with(".ts"))
            .map(str::to_string)
            .collect()
    }

    /// PES starts on `pid` in a TS file: one per frame.
    fn pes_count(ts: &[u8], pid: u16) -> usize {
        ts.chunks(188)
            .filter(|p| p.len() == 188 && p[1] & 0x40 != 0)
            .filter(|p| (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == pid)
            .count()
    }

    /// Issue 14: audio before the first video keyframe was dropped from HLS while FLV and MP4
    /// kept it.
    #[test]
    fn audio_before_first_keyframe_is_kept_in_hls() {
        let dir = temp_dir("hls-early-audio");
        let mut s = sink(&dir, 0);
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        let mut audio = 0;
        for t in [0, 23, 46, 69] {
            s.frame(&aac(t, false)).unwrap();
            audio += 1;
        }
        for t in (80..3000).step_by(40) {
            s.frame(&picture(t, (t - 80) % 1000 == 0)).unwrap();
            s.frame(&aac(t + 12, false)).unwrap();
            audio += 1;
        }
        s.finish().unwrap();
        let mut got = 0;
        for name in listed(&dir) {
            got += pes_count(&fs::read(dir.join(name)).unwrap(), ts::PID_AUDIO);
        }
        assert_eq!(got, audio, "every audio frame is in the segments");
        let first = fs::read(dir.join(hlsmux::segment_name(1))).unwrap();
        check_segment(&first, true);
    }

    /// Issue 28: an MPEG-TS source (SRT) has no sequence headers up front; its audio
    /// configuration comes with the first audio PES, after the first video frames. The first
    /// segment was opened video-only and its 2 s of audio were lost (a discontinuity after it).
    #[test]
    fn audio_config_after_the_first_keyframe_is_in_the_first_segment() {
        let dir = temp_dir("hls-late-audio-config");
        let mut s = sink(&dir, 0);
        s.frame(&avc_config()).unwrap();
        for t in (0..200).step_by(40) {
            s.frame(&picture(t, t == 0)).unwrap();
        }
        s.frame(&aac(0, true)).unwrap();
        let mut audio = 0;
        for t in (0..200).step_by(40) {
            s.frame(&aac(t, false)).unwrap();
            audio += 1;
        }
        for t in (200..3000).step_by(40) {
            s.frame(&picture(t, t % 1000 == 0)).unwrap();
            s.frame(&aac(t, false)).unwrap();
            audio += 1;
        }
        s.finish().unwrap();
        let mut got = 0;
        for name in listed(&dir) {
            got += pes_count(&fs::read(dir.join(name)).unwrap(), ts::PID_AUDIO);
        }
        assert_eq!(got, audio, "every audio frame is in the segments");
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
        check_segment(&fs::read(dir.join(hlsmux::segment_name(1))).unwrap(), true);
    }

    /// A second multitrack audio track cannot go in this TS program: logged once, counted,
    /// listed in meta.json; the default tracks are recorded.
    #[test]
    fn second_multitrack_audio_track_is_skipped_in_hls() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let dir = temp_dir("hls-multitrack");
        let before = crate::record::skipped_tracks();
        let mut s = sink(&dir, 0);
        let data = fs::read(root.join("multitrack_aac.flv")).unwrap();
        for f in &crate::record::testutil::read_flv(&data) {
            s.frame(f).unwrap();
        }
        s.finish().unwrap();
        let meta = fs::read_to_string(dir.join(META_NAME)).unwrap();
        assert!(
            meta.contains("\"skipped\":[\"audio track 1 (Aac)\"]"),
            "{meta}"
        );
        assert!(meta.contains("\"audio\":\"Aac\""), "{meta}");
        assert!(crate::record::skipped_tracks() > before);
        let segs = listed(&dir);
        let first = fs::read(dir.join(&segs[0])).unwrap();
        assert!(pes_count(&first, ts::PID_AUDIO) > 0);
    }

    /// AV1+Opus and VP9+Opus cannot go in TS: the HLS recording switches to fMP4 segments,
    /// says so in meta.json, and the playlist plays with every video frame.
    #[test]
    fn av1_vp9_and_opus_switch_hls_to_fmp4_segments() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let facts = fs::read_to_string(root.join("facts.txt")).unwrap();
        let have = crate::record::testutil::have_tool("ffprobe");
        for (name, video) in [("av1_opus.flv", "av01."), ("vp9_opus.flv", "vp09.")] {
            let dir = temp_dir(&format!("hls-fmp4-{name}"));
            let mut s = sink(&dir, 0);
            let data = fs::read(root.join(name)).unwrap();
            for f in &crate::record::testutil::read_flv(&data) {
                s.frame(f).unwrap();
            }
            s.finish().unwrap();
            let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
            assert!(text.contains("#EXT-X-VERSION:7"), "{text}");
            assert!(text.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{text}");
            assert!(
                text.contains("segment_1.m4s") && !text.contains(".ts"),
                "{text}"
            );
            assert!(text.contains("#EXT-X-ENDLIST"));
            let meta = fs::read_to_string(dir.join(META_NAME)).unwrap();
            assert!(meta.contains("\"format\":\"fmp4\""), "{meta}");
            assert!(meta.contains(&format!("\"codecs\":\"{video}")), "{meta}");
            assert!(meta.contains(",opus\""), "{meta}");
            let init = fs::read(dir.join(FMP4_INIT)).unwrap();
            assert!(init.windows(4).any(|w| w == b"Opus"));
            if !have {
                continue;
            }
            let list = dir.join(PLAYLIST);
            let e = crate::record::testutil::decode_errors(&list);
            assert!(e.trim().is_empty(), "{name}: {e}");
            let want = crate::mux::sample_entry::fact(&facts, &format!("{name}.frames.0")) as u64;
            let got = crate::record::testutil::probe_count(&list, "v", "frames");
            assert!(got.abs_diff(want) <= 1, "{name}: {got} of {want} frames");
            let a = crate::record::testutil::probe_count(&list, "a", "packets");
            let want_a = crate::mux::sample_entry::fact(&facts, &format!("{name}.frames.1")) as u64;
            assert!(
                a.abs_diff(want_a) <= 2,
                "{name}: {a} of {want_a} audio packets"
            );
        }
    }

    /// HEVC+AAC, H.264+MP3 and H.264+AC-3 fixtures go to TS with their stream types, and the
    /// segments decode with every frame of the source.
    #[test]
    fn hevc_mp3_and_ac3_fixtures_are_recorded_to_ts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/codecs");
        let facts = fs::read_to_string(root.join("facts.txt")).unwrap();
        let cases = [
            ("hevc_aac.flv", StreamType::Hevc, StreamType::Aac),
            ("h264_mp3.flv", StreamType::H264, StreamType::Mp3),
            ("h264_ac3.flv", StreamType::H264, StreamType::Ac3),
        ];
        let have = crate::record::testutil::have_tool("ffprobe");
        for (name, video, audio) in cases {
            let dir = temp_dir(&format!("hls-codec-{name}"));
            let mut s = sink(&dir, 0);
            let frames = crate::record::testutil::read_flv(&fs::read(root.join(name)).unwrap());
            for f in &frames {
                s.frame(f).unwrap();
            }
            s.finish().unwrap();
            let segs = listed(&dir);
            assert!(!segs.is_empty(), "{name}: no segments");
            let first = fs::read(dir.join(&segs[0])).unwrap();
            let pmt = first
                .chunks(188)
                .find(|p| (u16::from(p[1] & 0x1f) << 8 | u16::from(p[2])) == ts::PID_PMT)
                .unwrap();
            assert!(
                pmt.windows(3).any(|w| w == [video as u8, 0xe1, 0x00]),
                "{name}: video type"
            );
            assert!(
                pmt.windows(3).any(|w| w == [audio as u8, 0xe1, 0x01]),
                "{name}: audio type {pmt:02x?}"
            );
            let mut all = Vec::new();
            let mut audio_pes = 0;
            let mut video_pes = 0;
            for seg in &segs {
                let b = fs::read(dir.join(seg)).unwrap();
                audio_pes += pes_count(&b, ts::PID_AUDIO);
                video_pes += pes_count(&b, ts::PID_VIDEO);
                all.extend_from_slice(&b);
            }
            let want_v = crate::mux::sample_entry::fact(&facts, &format!("{name}.frames.0"));
            assert_eq!(video_pes, want_v, "{name}: video frames");
            let want_a = crate::mux::sample_entry::fact(&facts, &format!("{name}.frames.1"));
            assert_eq!(audio_pes, want_a, "{name}: audio frames");
            if !have {
                continue;
            }
            let joined = dir.join("all.ts");
            fs::write(&joined, &all).unwrap();
            let e = crate::record::testutil::decode_errors(&joined);
            assert!(e.trim().is_empty(), "{name}: {e}");
            let v = crate::record::testutil::probe_count(&joined, "v", "frames");
            assert!(
                v.abs_diff(want_v as u64) <= 1,
                "{name}: decoded {v} of {want_v}"
            );
        }
    }

    #[test]
    fn segments_close_at_keyframes_and_playlist_lists_closed_only() {
        let dir = temp_dir("hls-cut");
        let mut s = sink(&dir, 0);
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        feed(&mut s, 0, 1960);
        // One segment open, none closed: no playlist yet, only the temp file.
        assert!(!dir.join(PLAYLIST).exists());
        assert!(dir.join("segment_1.ts.tmp").is_file());
        feed(&mut s, 2000, 2000);
        assert_eq!(listed(&dir), ["segment_1.ts"]);
        assert!(dir.join("segment_2.ts.tmp").is_file());
        s.finish().unwrap();
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert!(text.contains("#EXTINF:2.000,\nsegment_1.ts\n"), "{text}");
        assert!(
            text.contains("#EXTINF:2.000,\nsegment_2.ts\n#EXT-X-ENDLIST\n"),
            "{text}"
        );
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-24T01:08:29.000Z\n"));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-24T01:08:31.000Z\n"));
        for n in 1..=2 {
            check_segment(
                &fs::read(dir.join(format!("segment_{n}.ts"))).unwrap(),
                true,
            );
        }
        assert!(!dir.join("segment_2.ts.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// `feed` through the ingest normaliser, as the hub gives frames to recorders.
    fn feed_normalised(s: &mut HlsSink, clock: &mut Normaliser, t0: u32, ms: u32) {
        for t in (0..ms).step_by(40) {
            for mut f in [
                picture(t0.wrapping_add(t), t % 1000 == 0),
                aac(t0.wrapping_add(t), false),
            ] {
                clock.normalise(&mut f);
                s.frame(&f).unwrap();
            }
        }
    }

    fn extinfs(text: &str) -> Vec<f64> {
        text.lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|v| v.trim_end_matches(',').parse::<f64>().unwrap())
            .collect()
    }

    #[test]
    fn timestamp_restart_is_a_discontinuity() {
        let dir = temp_dir("hls-disc");
        let mut s = sink(&dir, 0);
        let mut clock = Normaliser::new();
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        feed_normalised(&mut s, &mut clock, 50_000, 3000);
        // The publisher restarts its clock.
        feed_normalised(&mut s, &mut clock, 0, 3000);
        s.finish().unwrap();
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        let i = text.find("#EXT-X-DISCONTINUITY\n").unwrap();
        // The discontinuity comes right where the restart was (after the 3 s of the first run).
        assert!(text[..i].contains("segment_2.ts") && !text[..i].contains("segment_3.ts"));
        // Timestamps stay continuous: no EXTINF is longer than the content.
        let total: f64 = extinfs(&text).iter().sum();
        assert!((total - 6.0).abs() < 0.1, "{total}\n{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 13, hole 5: a publisher whose clock jumped made one 120 s segment (EXTINF 122.6).
    #[test]
    fn jumping_timestamps_cut_hls_segments_not_stretch_them() {
        let dir = temp_dir("hls-jumps");
        let mut s = sink(&dir, 0);
        let mut clock = Normaliser::new();
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        let hours = 5 * 3_600_000;
        // 5 s, a jump forward by hours, 5 s, a jump back to 0, 5 s, a jump to just before the
        // 32-bit wrap and 5 s across it (the wrap itself is no jump).
        for t0 in [10_000, 15_000 + hours, 0, u32::MAX - 2_000] {
            feed_normalised(&mut s, &mut clock, t0, 5000);
        }
        s.finish().unwrap();
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 3, "{text}");
        let durations = extinfs(&text);
        // 2 s target, keyframes every second: no segment longer than 2 s plus one GOP.
        assert!(durations.iter().all(|&d| d > 0.0 && d <= 3.0), "{text}");
        assert!(tag_value(&text, "#EXT-X-TARGETDURATION:") <= 3, "{text}");
        let total: f64 = durations.iter().sum();
        assert!((total - 20.0).abs() < 0.2, "{total}\n{text}");
        // Each discontinuity starts a segment that begins with a keyframe.
        let mut pts = Vec::new();
        for seg in text.lines().filter(|l| l.ends_with(".ts")) {
            let bytes = fs::read(dir.join(seg)).unwrap();
            check_segment(&bytes, true);
            pts.extend(video_dts(&bytes));
        }
        // And the decode times of the whole session only go forward, 40 ms at a time.
        assert_eq!(pts.len(), 4 * 125);
        assert!(
            pts.windows(2)
                .all(|w| w[1] > w[0] && w[1] - w[0] <= 90 * 80),
            "{pts:?}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tag_value(text: &str, tag: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// The DTS (90 kHz) of every video PES in a segment (PID 0x100), in order.
    fn video_dts(ts: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        for p in ts.chunks(188) {
            let pid = ((p[1] as u16 & 0x1f) << 8) | p[2] as u16;
            if pid != 0x100 || p[1] & 0x40 == 0 {
                continue;
            }
            let start = if p[3] & 0x20 != 0 {
                5 + p[4] as usize
            } else {
                4
            };
            let pes = &p[start..];
            assert_eq!(&pes[..3], &[0, 0, 1]);
            let flags = pes[7] >> 6;
            let at = if flags == 3 { 14 } else { 9 };
            let b = &pes[at..at + 5];
            let v = ((b[0] as u64 >> 1) & 7) << 30
                | (b[1] as u64) << 22
                | (b[2] as u64 >> 1) << 15
                | (b[3] as u64) << 7
                | b[4] as u64 >> 1;
            out.push(v);
        }
        out
    }

    #[test]
    fn window_deletes_old_segments_after_grace() {
        let dir = temp_dir("hls-window");
        let mut s = sink(&dir, 2);
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        feed(&mut s, 0, 20_000);
        // Segments 1..=9 closed; 8 and 9 listed; 6 and 7 kept for players mid-download.
        assert_eq!(listed(&dir), ["segment_8.ts", "segment_9.ts"]);
        for n in 1..=5 {
            assert!(!dir.join(format!("segment_{n}.ts")).exists(), "{n}");
        }
        for n in 6..=9 {
            assert!(dir.join(format!("segment_{n}.ts")).exists(), "{n}");
        }
        s.finish().unwrap();
        assert_eq!(listed(&dir), ["segment_9.ts", "segment_10.ts"]);
        assert!(!dir.join("segment_8.ts").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn audio_only_cuts_on_time_and_late_video_joins_with_a_discontinuity() {
        let dir = temp_dir("hls-late");
        let mut s = sink(&dir, 0);
        s.frame(&aac(0, true)).unwrap();
        for t in (0..5000).step_by(23) {
            s.frame(&aac(t, false)).unwrap();
        }
        s.frame(&avc_config()).unwrap();
        for t in (5000..8000).step_by(40) {
            s.frame(&picture(t, t % 1000 == 0)).unwrap();
            s.frame(&aac(t, false)).unwrap();
        }
        s.finish().unwrap();
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        let segs = listed(&dir);
        let first = fs::read(dir.join(&segs[0])).unwrap();
        check_segment(&first, false);
        let last = fs::read(dir.join(segs.last().unwrap())).unwrap();
        check_segment(&last, true);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn previous_session_is_archived_with_endlist() {
        let dir = temp_dir("hls-archive");
        let mut s = sink(&dir, 0);
        s.frame(&avc_config()).unwrap();
        s.frame(&aac(0, true)).unwrap();
        feed(&mut s, 0, 5000);
        // Killed: never finished. The next session archives it anyway, completed.
        drop(s);
        let mut s2 = sink(&dir, 0);
        let stamp = paths::local_stamp(paths::from_unix_ms(1_795_482_509_000));
        let old = dir.join(&stamp);
        let text = fs::read_to_string(old.join(PLAYLIST)).unwrap();
        assert!(has_endlist_line(&text));
        assert!(old.join("segment_1.ts").is_file());
        assert!(
            old.join("segment_3.ts.tmp").is_file(),
            "partial segment kept"
        );
        assert!(!dir.join(PLAYLIST).exists());
        s2.frame(&avc_config()).unwrap();
        s2.frame(&aac(0, true)).unwrap();
        feed(&mut s2, 0, 3000);
        s2.finish().unwrap();
        // A third session started in the same second gets a suffixed folder.
        let _s3 = sink(&dir, 0);
        assert!(dir.join(format!("{stamp}_1")).join(PLAYLIST).is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn has_endlist_line(text: &str) -> bool {
        text.ends_with("#EXT-X-ENDLIST\n")
    }

    #[test]
    fn crash_repair_closes_open_playlists() {
        let data = temp_dir("hls-repair");
        let dir = data.join("hls").join("live").join("cam");
        fs::create_dir_all(dir.join("20260101_000000")).unwrap();
        let open = "#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:4.000,\nsegment_1.ts";
        fs::write(dir.join(PLAYLIST), open).unwrap();
        fs::write(dir.join("index.m3u8.tmp"), "#EXTM3U\n").unwrap();
        let closed = "#EXTM3U\n#EXT-X-ENDLIST\n";
        fs::write(dir.join("20260101_000000").join(PLAYLIST), closed).unwrap();
        let repaired = repair(&data).unwrap();
        assert_eq!(repaired, vec![dir.join(PLAYLIST)]);
        let text = fs::read_to_string(dir.join(PLAYLIST)).unwrap();
        assert_eq!(text, format!("{open}\n#EXT-X-ENDLIST\n"));
        assert!(!dir.join("index.m3u8.tmp").exists());
        assert_eq!(
            fs::read_to_string(dir.join("20260101_000000").join(PLAYLIST)).unwrap(),
            closed
        );
        assert!(repair(&data).unwrap().is_empty());
        assert!(repair(&data.join("missing")).unwrap().is_empty());
        fs::remove_dir_all(&data).unwrap();
    }
}
