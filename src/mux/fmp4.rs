//! Fragmented MP4: init segments (`ftyp` + `moov` with `mvex`), media segments (`styp` + `moof` +
//! `mdat`), and the `Fragmenter` that turns frames into per-track sample runs (video, audio, and
//! the extra audio tracks of a multitrack stream) and decides where a segment ends. Frames in,
//! bytes out: no files (the recorder in `record::fmp4` decides where). Over 800 lines: the box
//! writers and the timeline share `Run`/`Sample` and the track ids, and each part is short.

mod line;
mod track;
use super::bmff::{descriptor, BoxWriter};
use super::sample_entry::SampleEntry;
use crate::media::Track;
use bytes::Bytes;
pub(crate) use line::TrackLine;
pub use track::{media_payload, recordable, track_config, track_config_of};

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// Extra audio tracks (the second and later audio tracks of a multitrack stream) take the ids
/// from here on, in the order they are added: 3, 4, ...
pub const FIRST_EXTRA_TRACK_ID: u32 = 3;
/// At most this many extra audio tracks per recording (multitrack ids go to 255; encoders send
/// one or two).
pub const MAX_EXTRA_TRACKS: usize = 8;
/// Video track timescale; RTMP milliseconds map to it exactly (x90).
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Movie timescale (mvhd, tkhd, elst): milliseconds.
pub const MOVIE_TIMESCALE: u32 = 1000;

/// Sample flags: a sync sample (depends on no other: sample_depends_on = 2).
pub const SAMPLE_SYNC: u32 = 0x0200_0000;
/// Sample flags: a non-sync sample (sample_depends_on = 1, sample_is_non_sync_sample = 1).
pub const SAMPLE_NON_SYNC: u32 = 0x0101_0000;

/// What the video sample entry needs: the AVCDecoderConfigurationRecord (the `avcC` body, which
/// is the FLV AVC sequence header payload) and the coded size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoConfig {
    pub avcc: Bytes,
    pub width: u32,
    pub height: u32,
}

/// What the audio sample entry needs: the AudioSpecificConfig (the FLV AAC sequence header
/// payload), its sample rate (the track timescale) and channel count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioConfig {
    pub asc: Bytes,
    pub sample_rate: u32,
    pub channels: u8,
}

/// One sample of a run: duration in track ticks, size in bytes, `SAMPLE_*` flags, and the
/// composition offset in track ticks (signed; trun version 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    pub cto: i32,
}

impl Sample {
    pub fn is_sync(&self) -> bool {
        self.flags & 0x0001_0000 == 0
    }
}

/// The samples of one track in one segment, with their payloads, starting at `decode_time`.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub track_id: u32,
    pub timescale: u32,
    pub decode_time: u64,
    pub samples: Vec<Sample>,
    pub data: Vec<Bytes>,
}

impl Run {
    pub fn duration_ticks(&self) -> u64 {
        self.samples.iter().map(|s| s.duration as u64).sum()
    }

    pub fn duration_secs(&self) -> f64 {
        self.duration_ticks() as f64 / self.timescale.max(1) as f64
    }

    pub fn bytes(&self) -> u64 {
        self.samples.iter().map(|s| s.size as u64).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Boxes shared by the init segment and the progressive merge.

pub(crate) fn write_mvhd(w: &mut BoxWriter, duration: u64, next_track_id: u32) {
    let v1 = duration > u32::MAX as u64;
    let at = w.begin_full(b"mvhd", v1 as u8, 0);
    w.dated(v1, &[MOVIE_TIMESCALE], duration);
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(2 + 8);
    w.matrix();
    w.zeros(24); // pre_defined
    w.u32(next_track_id);
    w.end(at);
}

/// `width`/`height` in pixels (written as 16.16 fixed point); audio passes 0, 0. Every audio
/// track is in alternate group 1: players play the enabled one of a group unless asked for
/// another.
pub(crate) fn write_tkhd(
    w: &mut BoxWriter,
    track_id: u32,
    duration: u64,
    audio: bool,
    (width, height): (u32, u32),
    enabled: bool,
) {
    let v1 = duration > u32::MAX as u64;
    // flags: track_enabled | track_in_movie
    let flags = if enabled { 3 } else { 2 };
    let at = w.begin_full(b"tkhd", v1 as u8, flags);
    w.dated(v1, &[track_id, 0], duration); // track id, reserved
    w.zeros(8);
    w.u16(0); // layer
    w.u16(if audio { 1 } else { 0 }); // alternate_group
    w.u16(if audio { 0x0100 } else { 0 }); // volume
    w.u16(0);
    w.matrix();
    w.u32(width << 16);
    w.u32(height << 16);
    w.end(at);
}

pub(crate) fn write_mdhd(w: &mut BoxWriter, timescale: u32, duration: u64) {
    let v1 = duration > u32::MAX as u64;
    let at = w.begin_full(b"mdhd", v1 as u8, 0);
    w.dated(v1, &[timescale], duration);
    w.u16(0x55c4); // language "und"
    w.u16(0);
    w.end(at);
}

pub(crate) fn write_hdlr(w: &mut BoxWriter, audio: bool) {
    let at = w.begin_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if audio { b"soun" } else { b"vide" });
    w.zeros(12);
    w.bytes(if audio {
        b"SoundHandler\0"
    } else {
        b"VideoHandler\0"
    });
    w.end(at);
}

/// `vmhd` or `smhd`, then `dinf` with a self-contained `url ` reference.
pub(crate) fn write_media_header_and_dinf(w: &mut BoxWriter, audio: bool) {
    if audio {
        let at = w.begin_full(b"smhd", 0, 0);
        w.u32(0);
        w.end(at);
    } else {
        let at = w.begin_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.end(at);
    }
    let dinf = w.begin(b"dinf");
    let dref = w.begin_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.begin_full(b"url ", 0, 1);
    w.end(url);
    w.end(dref);
    w.end(dinf);
}

/// `stsd` with one `avc1` entry.
pub(crate) fn write_stsd_video(w: &mut BoxWriter, v: &VideoConfig) {
    let stsd = w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    let avc1 = crate::mux::bmff::begin_visual_sample_entry(w, b"avc1", v.width, v.height);
    let avcc = w.begin(b"avcC");
    w.bytes(&v.avcc);
    w.end(avcc);
    w.end(avc1);
    w.end(stsd);
}

/// `stsd` with one `mp4a` entry and its `esds`.
pub(crate) fn write_stsd_audio(w: &mut BoxWriter, a: &AudioConfig, track_id: u32) {
    let stsd = w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    let mp4a = w.begin(b"mp4a");
    w.zeros(6);
    w.u16(1);
    w.zeros(8);
    w.u16(a.channels as u16);
    w.u16(16);
    w.u32(0);
    // 16.16 sample rate; rates above 65535 do not fit and the esds ASC is authoritative anyway.
    w.u32(if a.sample_rate <= 0xffff {
        a.sample_rate << 16
    } else {
        0
    });
    let esds = w.begin_full(b"esds", 0, 0);
    let dsi = descriptor(5, &a.asc);
    let mut dcd_body = vec![0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dcd_body.extend_from_slice(&dsi);
    let dcd = descriptor(4, &dcd_body);
    let mut es_body = (track_id as u16).to_be_bytes().to_vec();
    es_body.push(0);
    es_body.extend_from_slice(&dcd);
    es_body.extend_from_slice(&descriptor(6, &[2]));
    w.bytes(&descriptor(3, &es_body));
    w.end(esds);
    w.end(mp4a);
    w.end(stsd);
}

fn write_empty_tables(w: &mut BoxWriter) {
    for kind in [b"stts", b"stsc", b"stco"] {
        let at = w.begin_full(kind, 0, 0);
        w.u32(0);
        w.end(at);
    }
    let at = w.begin_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end(at);
}

/// One track's sample description: H.264 and AAC written here, every other codec by
/// `mux::sample_entry` (hvc1, av01, vp09, Opus, mp4a for MP3, ac-3/ec-3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackConfig {
    Avc(VideoConfig),
    Aac(AudioConfig),
    Other(SampleEntry),
}

impl TrackConfig {
    pub fn is_audio(&self) -> bool {
        match self {
            TrackConfig::Avc(_) => false,
            TrackConfig::Aac(_) => true,
            TrackConfig::Other(e) => e.is_audio(),
        }
    }

    /// The `mdhd` timescale: 90 kHz for video, the sample rate for audio.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Avc(_) => VIDEO_TIMESCALE,
            TrackConfig::Aac(a) => a.sample_rate.max(1),
            TrackConfig::Other(e) => e.timescale().max(1),
        }
    }

    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            TrackConfig::Avc(v) => (v.width, v.height),
            TrackConfig::Aac(_) => (0, 0),
            TrackConfig::Other(e) => e.dimensions(),
        }
    }

    fn write_stsd(&self, w: &mut BoxWriter, track_id: u32) {
        match self {
            TrackConfig::Avc(v) => write_stsd_video(w, v),
            TrackConfig::Aac(a) => write_stsd_audio(w, a, track_id),
            TrackConfig::Other(e) => e.write_stsd(w, track_id),
        }
    }
}

fn write_init_trak(w: &mut BoxWriter, id: u32, config: &TrackConfig, enabled: bool) {
    let is_audio = config.is_audio();
    let trak = w.begin(b"trak");
    write_tkhd(w, id, 0, is_audio, config.dimensions(), enabled);
    let mdia = w.begin(b"mdia");
    write_mdhd(w, config.timescale(), 0);
    write_hdlr(w, is_audio);
    let minf = w.begin(b"minf");
    write_media_header_and_dinf(w, is_audio);
    let stbl = w.begin(b"stbl");
    config.write_stsd(w, id);
    write_empty_tables(w);
    w.end(stbl);
    w.end(minf);
    w.end(mdia);
    w.end(trak);
}

/// An init segment (`ftyp` + `moov` with `mvex`) for the tracks given: both for the muxed form,
/// one for each file of the separate form.
pub fn init_segment(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Vec<u8> {
    init_segment_for(
        video.cloned().map(TrackConfig::Avc).as_ref(),
        audio.cloned().map(TrackConfig::Aac).as_ref(),
    )
}

/// `init_segment` for any codec: the video track (id 1) and the audio track (id 2) given.
pub fn init_segment_for(video: Option<&TrackConfig>, audio: Option<&TrackConfig>) -> Vec<u8> {
    init_segment_with(video, audio, &[])
}

/// `init_segment_for` plus extra audio tracks (ids `FIRST_EXTRA_TRACK_ID`.., in order; at most
/// `MAX_EXTRA_TRACKS`, the rest are not written).
pub fn init_segment_with(
    video: Option<&TrackConfig>,
    audio: Option<&TrackConfig>,
    extra: &[&TrackConfig],
) -> Vec<u8> {
    let extra: Vec<(&TrackConfig, bool)> = extra.iter().map(|e| (*e, true)).collect();
    init_segment_enabled(video, audio, &extra)
}

/// `init_segment_with`, each extra audio track with its `track_enabled` flag (a track not
/// enabled is an alternative players do not play by default: an Opus stream's published Opus
/// beside the audio bridge's AAC).
pub fn init_segment_enabled(
    video: Option<&TrackConfig>,
    audio: Option<&TrackConfig>,
    extra: &[(&TrackConfig, bool)],
) -> Vec<u8> {
    let extra = &extra[..extra.len().min(MAX_EXTRA_TRACKS)];
    let mut w = BoxWriter::with_capacity(1024);
    w.file_type(b"ftyp", b"iso5", 0x200, &[b"iso5", b"iso6", b"mp41"]);
    let moov = w.begin(b"moov");
    write_mvhd(&mut w, 0, FIRST_EXTRA_TRACK_ID + extra.len() as u32);
    if let Some(v) = video {
        write_init_trak(&mut w, VIDEO_TRACK_ID, v, true);
    }
    if let Some(a) = audio {
        write_init_trak(&mut w, AUDIO_TRACK_ID, a, true);
    }
    for (i, (e, enabled)) in extra.iter().enumerate() {
        write_init_trak(&mut w, FIRST_EXTRA_TRACK_ID + i as u32, e, *enabled);
    }
    let mvex = w.begin(b"mvex");
    let extra_ids = (0..extra.len()).map(|i| (true, FIRST_EXTRA_TRACK_ID + i as u32));
    for (present, id) in [
        (video.is_some(), VIDEO_TRACK_ID),
        (audio.is_some(), AUDIO_TRACK_ID),
    ]
    .into_iter()
    .chain(extra_ids)
    {
        if present {
            let trex = w.begin_full(b"trex", 0, 0);
            w.u32(id);
            w.u32(1); // default_sample_description_index
            w.u32(0);
            w.u32(0);
            w.u32(0);
            w.end(trex);
        }
    }
    w.end(mvex);
    w.end(moov);
    w.into_inner()
}
/// One `traf` of a `moof`: `tfhd` (default-base-is-moof), `tfdt`, and a `trun` with every
/// sample's duration, size, flags and (when any is non-zero) composition offset. Returns where
/// the trun's data offset goes, for the caller to patch once the `moof`'s size is known (the
/// recorder's media segments and the playback cutter's fragments share it).
pub fn write_traf(w: &mut BoxWriter, track_id: u32, decode_time: u64, samples: &[Sample]) -> usize {
    let traf = w.begin(b"traf");
    // default-base-is-moof
    let tfhd = w.begin_full(b"tfhd", 0, 0x02_0000);
    w.u32(track_id);
    w.end(tfhd);
    let tfdt = w.begin_full(b"tfdt", 1, 0);
    w.u64(decode_time);
    w.end(tfdt);
    let with_cto = samples.iter().any(|s| s.cto != 0);
    // data-offset | duration | size | flags [| composition offset]
    let flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | if with_cto { 0x000800 } else { 0 };
    let trun = w.begin_full(b"trun", with_cto as u8, flags);
    w.u32(samples.len() as u32);
    let slot = w.len();
    w.u32(0);
    for s in samples {
        w.u32(s.duration);
        w.u32(s.size);
        w.u32(s.flags);
        if with_cto {
            w.i32(s.cto);
        }
    }
    w.end(trun);
    w.end(traf);
    slot
}

/// A media segment: `styp`, one `moof` with a `traf` per run, and one `mdat` holding the runs'
/// payloads in the same order. Every trun carries per-sample duration, size, flags and (when any
/// is non-zero) signed composition offsets; data offsets are relative to the `moof`.
pub fn media_segment(sequence: u32, runs: &[&Run]) -> Vec<u8> {
    let payload: u64 = runs.iter().map(|r| r.bytes()).sum();
    let mut w = BoxWriter::with_capacity(
        256 + runs.iter().map(|r| r.samples.len() * 16).sum::<usize>() + payload as usize,
    );
    w.file_type(b"styp", b"msdh", 0, &[b"msdh", b"msix"]);
    let moof_start = w.len();
    let moof = w.begin(b"moof");
    let mfhd = w.begin_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end(mfhd);
    let mut offset_slots = Vec::with_capacity(runs.len());
    for run in runs {
        offset_slots.push(write_traf(
            &mut w,
            run.track_id,
            run.decode_time,
            &run.samples,
        ));
    }
    w.end(moof);
    let moof_len = (w.len() - moof_start) as u64;
    let header = super::bmff::mdat_header(payload);
    let mut data_offset = moof_len + header.len() as u64;
    for (slot, run) in offset_slots.iter().zip(runs) {
        w.buf[*slot..*slot + 4].copy_from_slice(&(data_offset as u32).to_be_bytes());
        data_offset += run.bytes();
    }
    w.bytes(&header);
    for run in runs {
        for d in &run.data {
            w.bytes(d);
        }
    }
    w.into_inner()
}

// ---------------------------------------------------------------------------------------------
// Timeline and segmenting policy.

/// One closed segment: the runs of each track (a track with no samples in it is `None`).
#[derive(Debug, Default)]
pub struct Fragment {
    /// 1-based, as in `segment_N.m4s`.
    pub sequence: u32,
    pub video: Option<Run>,
    pub audio: Option<Run>,
    /// The runs of the extra audio tracks that have samples in this segment.
    pub extra: Vec<Run>,
}

impl Fragment {
    /// Duration for the muxed playlist: the longest track.
    pub fn duration_secs(&self) -> f64 {
        self.runs()
            .iter()
            .map(|r| r.duration_secs())
            .fold(0.0, f64::max)
    }

    pub fn bytes(&self) -> u64 {
        self.runs().iter().map(|r| r.bytes()).sum()
    }

    /// Every run, in track id order (video, audio, extra audio): the muxed segment's trafs.
    pub fn runs(&self) -> Vec<&Run> {
        self.video
            .iter()
            .chain(self.audio.iter())
            .chain(self.extra.iter())
            .collect()
    }
}

/// Where to cut: before `incoming` (a frame of `track`, keyframe or not) when the segment so far
/// spans `elapsed_ms`. Streams with video cut at the first keyframe at or after the target; any
/// stream cuts hard at twice the target; audio-only streams cut on time.
pub fn should_cut(
    has_video: bool,
    track: Track,
    key: bool,
    elapsed_ms: i64,
    target_ms: u32,
) -> bool {
    let target = target_ms as i64;
    if elapsed_ms >= 2 * target {
        return true;
    }
    if has_video {
        track == Track::Video && key && elapsed_ms >= target
    } else {
        track == Track::Audio && elapsed_ms >= target
    }
}

/// Frames in, closed `Fragment`s out. Decode times start at 0 at the stream's earliest media
/// frame (the first frames are held until every track has shown one, so a frame of one track that
/// arrives after a later-stamped frame of the other still lands at its own time) and never go
/// backwards; each sample's duration comes from the next sample of its track (a
/// track's last sample at a cut is carried into the next segment, so none is guessed until the
/// stream ends, where the previous duration is reused).
#[derive(Debug)]
pub struct Fragmenter {
    target_ms: u32,
    video: Option<TrackLine>,
    audio: Option<TrackLine>,
    /// Extra audio tracks: they follow the segments the main tracks cut, never cut themselves.
    extra: Vec<TrackLine>,
    /// Stream time (ms) of decode time 0.
    base: Option<u64>,
    /// Frames held until the base is fixed.
    lead: Vec<LeadFrame>,
    sequence: u32,
    last_cut_ms: Option<i64>,
}

#[derive(Debug)]
struct LeadFrame {
    track: Track,
    /// For an extra audio track's frame, its index.
    extra: Option<usize>,
    time: u64,
    cts: i32,
    key: bool,
    data: Bytes,
}

/// The lead never spans more than this, nor half the target (so replaying it cannot cut).
const MAX_LEAD_MS: u32 = 1000;
const MAX_LEAD_FRAMES: usize = 512;

impl Fragmenter {
    /// `audio_rate` is the audio track's sample rate (its timescale), `None` without audio.
    pub fn new(target_ms: u32, has_video: bool, audio_rate: Option<u32>) -> Fragmenter {
        Fragmenter {
            target_ms: target_ms.max(1),
            video: has_video.then(|| TrackLine::new(VIDEO_TRACK_ID, VIDEO_TIMESCALE, 3600)),
            audio: audio_rate.map(|r| TrackLine::new(AUDIO_TRACK_ID, r.max(1), 1024)),
            extra: Vec::new(),
            base: None,
            lead: Vec::new(),
            sequence: 0,
            last_cut_ms: None,
        }
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Adds an extra audio track (sample rate `rate`) before the first frame; returns its index
    /// for `push_extra` (its track id is `FIRST_EXTRA_TRACK_ID` + index), `None` past
    /// `MAX_EXTRA_TRACKS`.
    pub fn add_extra_track(&mut self, rate: u32) -> Option<usize> {
        if self.extra.len() >= MAX_EXTRA_TRACKS {
            return None;
        }
        let id = FIRST_EXTRA_TRACK_ID + self.extra.len() as u32;
        self.extra.push(TrackLine::new(id, rate.max(1), 1024));
        Some(self.extra.len() - 1)
    }

    /// Adds one sample of extra audio track `index` (see `push`). Extra tracks never decide a
    /// cut and are not waited for when time 0 is fixed; their samples land in the segment open
    /// when they arrive.
    pub fn push_extra(&mut self, index: usize, time: u64, data: Bytes) {
        if index >= self.extra.len() {
            return;
        }
        if self.base.is_none() {
            self.lead.push(LeadFrame {
                track: Track::Audio,
                extra: Some(index),
                time,
                cts: 0,
                key: true,
                data,
            });
            if self.lead.len() >= MAX_LEAD_FRAMES {
                self.release_lead();
            }
            return;
        }
        self.push_extra_timed(index, time, data);
    }

    fn push_extra_timed(&mut self, index: usize, time: u64, data: Bytes) {
        let Some(base) = self.base else { return };
        let ms = time.wrapping_sub(base) as i64;
        if let Some(line) = self.extra.get_mut(index) {
            line.push(ms, 0, true, data);
        }
    }

    fn has_track(&self, track: Track) -> bool {
        match track {
            Track::Video => self.has_video(),
            Track::Audio => self.has_audio(),
            Track::Meta => false,
        }
    }

    /// Adds one media sample (codec payload only, no FLV header) at the stream time `time` (ms,
    /// `Frame::time`). Returns the segment that this sample closed, if it closed one. Frames of a
    /// track this fragmenter does not have are ignored.
    pub fn push(
        &mut self,
        track: Track,
        time: u64,
        cts: i32,
        key: bool,
        data: Bytes,
    ) -> Option<Fragment> {
        if !self.has_track(track) {
            return None;
        }
        if self.base.is_some() {
            return self.push_timed(track, time, cts, key, data, true);
        }
        self.lead.push(LeadFrame {
            track,
            extra: None,
            time,
            cts,
            key,
            data,
        });
        let first = self.lead[0].time;
        let span = time.saturating_sub(first);
        let seen = |t: Track| self.lead.iter().any(|f| f.track == t && f.extra.is_none());
        let all_seen = (self.video.is_none() || seen(Track::Video))
            && (self.audio.is_none() || seen(Track::Audio));
        let limit = MAX_LEAD_MS.min(self.target_ms / 2) as u64;
        if all_seen || span >= limit || self.lead.len() >= MAX_LEAD_FRAMES {
            self.release_lead();
        }
        None
    }

    /// Fixes time 0 at the earliest frame held and replays them, without cutting: the lead is
    /// shorter than half a segment.
    fn release_lead(&mut self) {
        let lead = std::mem::take(&mut self.lead);
        let Some(min) = lead.iter().map(|f| f.time).min() else {
            return;
        };
        self.base = Some(min);
        for f in lead {
            match f.extra {
                Some(i) => self.push_extra_timed(i, f.time, f.data),
                None => {
                    self.push_timed(f.track, f.time, f.cts, f.key, f.data, false);
                }
            }
        }
    }

    fn push_timed(
        &mut self,
        track: Track,
        time: u64,
        cts: i32,
        key: bool,
        data: Bytes,
        may_cut: bool,
    ) -> Option<Fragment> {
        let base = *self.base.get_or_insert(time);
        let target = self.target_ms;
        if !self.has_track(track) {
            return None;
        }
        // Before the base only for a frame of a track that came after the lead (ticks() clamps).
        let ms = time.wrapping_sub(base) as i64;
        // The segment's clock is the video track's once video flows (a configured video track
        // that never sends a frame does not hold audio hostage); a carried-over sample never
        // counts from before the last cut, so a stalled track cannot force a cut per frame.
        let video_flows = self.video.as_ref().is_some_and(|v| v.last_dt.is_some());
        let start = if video_flows {
            self.video.as_ref().and_then(|v| v.segment_start_ms())
        } else {
            self.audio.as_ref().and_then(|a| a.segment_start_ms())
        };
        let start = match (start, self.last_cut_ms) {
            (Some(s), Some(c)) => Some(s.max(c)),
            (s, _) => s,
        };
        let has_video = video_flows || (track == Track::Video && self.video.is_some());
        let mut closed = None;
        if let (Some(start), true) = (start, may_cut) {
            if should_cut(has_video, track, key, ms - start, target) {
                // The incoming frame settles its own track's last sample; the other track's last
                // sample stays pending and moves on to the next segment.
                let line = match track {
                    Track::Video => self.video.as_mut(),
                    _ => self.audio.as_mut(),
                };
                if let Some(line) = line {
                    let dt = line.ticks(ms);
                    line.settle(Some(dt));
                }
                closed = self.close();
                self.last_cut_ms = Some(ms);
            }
        }
        let sync = track != Track::Video || key;
        let line = match track {
            Track::Video => self.video.as_mut()?,
            _ => self.audio.as_mut()?,
        };
        line.push(ms, cts, sync, data);
        closed
    }

    fn close(&mut self) -> Option<Fragment> {
        let video = self.video.as_mut().and_then(|l| l.take_run());
        let audio = self.audio.as_mut().and_then(|l| l.take_run());
        if video.is_none() && audio.is_none() {
            // Extra tracks alone never make a segment: their samples wait for the next one.
            return None;
        }
        let extra = self.extra.iter_mut().filter_map(|l| l.take_run()).collect();
        self.sequence += 1;
        Some(Fragment {
            sequence: self.sequence,
            video,
            audio,
            extra,
        })
    }

    /// Ends the stream: pending samples take their track's previous duration, and the last
    /// segment is returned.
    pub fn finish(&mut self) -> Option<Fragment> {
        self.release_lead();
        for line in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
            .chain(self.extra.iter_mut())
        {
            if line.last_dt.is_none() {
                line.reset_default();
            }
            line.settle(None);
        }
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Normaliser;
    use crate::mux::bmff::{boxes, find, Reader};

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0xab; n])
    }

    #[test]
    fn mvhd_bytes() {
        let mut w = BoxWriter::new();
        write_mvhd(&mut w, 10_000, 3);
        let m = &w.buf;
        assert_eq!(m.len(), 108);
        assert_eq!(&m[..8], b"\x00\x00\x00\x6cmvhd");
        assert_eq!(&m[8..12], &[0, 0, 0, 0]); // version 0, flags 0
        assert_eq!(&m[20..24], &1000u32.to_be_bytes()); // timescale
        assert_eq!(&m[24..28], &10_000u32.to_be_bytes()); // duration
        assert_eq!(&m[28..34], &[0, 1, 0, 0, 1, 0]); // rate, volume
        assert_eq!(&m[44..48], &[0, 1, 0, 0]); // matrix a
        assert_eq!(&m[76..80], &[0x40, 0, 0, 0]); // matrix w
        assert_eq!(&m[104..108], &3u32.to_be_bytes());
    }

    #[test]
    fn esds_descriptors() {
        let mut w = BoxWriter::new();
        let a = AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        };
        write_stsd_audio(&mut w, &a, 2);
        let esds = find(&w.buf[16..], b"mp4a").unwrap().unwrap();
        let esds = find(&esds[28..], b"esds").unwrap().unwrap();
        assert_eq!(
            esds,
            &[
                0, 0, 0, 0, // version, flags
                3, 25, 0, 2, 0, // ES_Descriptor, ES_ID 2
                4, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // DecoderConfig
                5, 2, 0x12, 0x10, // DecoderSpecificInfo = ASC
                6, 1, 2 // SLConfig
            ][..]
        );
        assert_eq!(descriptor(5, &[0; 200])[..3], [5, 0x81, 0x48]);
    }

    #[test]
    fn tfdt_v1_and_trun_with_flags_bytes() {
        let run = Run {
            track_id: 1,
            timescale: 90_000,
            decode_time: 0x1_0000_0000,
            samples: vec![
                Sample {
                    duration: 3600,
                    size: 3,
                    flags: SAMPLE_SYNC,
                    cto: 7200,
                },
                Sample {
                    duration: 3600,
                    size: 2,
                    flags: SAMPLE_NON_SYNC,
                    cto: -3600,
                },
            ],
            data: vec![b(3), b(2)],
        };
        let seg = media_segment(5, &[&run]);
        let mut it = boxes(&seg);
        let (k, styp) = it.next().unwrap().unwrap();
        assert_eq!(&k, b"styp");
        assert_eq!(styp, b"msdh\0\0\0\0msdhmsix");
        let (k, moof) = it.next().unwrap().unwrap();
        assert_eq!(&k, b"moof");
        let (k, mdat) = it.next().unwrap().unwrap();
        assert_eq!(&k, b"mdat");
        assert_eq!(mdat.len(), 5);
        assert_eq!(
            find(moof, b"mfhd").unwrap().unwrap(),
            &[0, 0, 0, 0, 0, 0, 0, 5]
        );
        let traf = find(moof, b"traf").unwrap().unwrap();
        assert_eq!(
            find(traf, b"tfhd").unwrap().unwrap(),
            &[0, 2, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            find(traf, b"tfdt").unwrap().unwrap(),
            &[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        );
        let trun = find(traf, b"trun").unwrap().unwrap();
        let moof_len = 8 + moof.len() as u32;
        let mut expect = vec![1, 0, 0x0f, 0x01, 0, 0, 0, 2];
        expect.extend_from_slice(&(moof_len + 8).to_be_bytes());
        expect.extend_from_slice(&[0, 0, 0x0e, 0x10, 0, 0, 0, 3, 2, 0, 0, 0, 0, 0, 0x1c, 0x20]);
        expect.extend_from_slice(&[
            0, 0, 0x0e, 0x10, 0, 0, 0, 2, 1, 1, 0, 0, 0xff, 0xff, 0xf1, 0xf0,
        ]);
        assert_eq!(trun, &expect[..]);
        // The data offset points at the first payload byte, counted from the moof.
        let moof_at = 24usize;
        assert_eq!(seg[moof_at + moof_len as usize + 8], 0xab);
    }

    #[test]
    fn init_segment_has_both_tracks_and_trex() {
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff]),
            width: 320,
            height: 240,
        };
        let a = AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        };
        let init = init_segment(Some(&v), Some(&a));
        let mut it = boxes(&init);
        let (k, ftyp) = it.next().unwrap().unwrap();
        assert_eq!(&k, b"ftyp");
        assert_eq!(&ftyp[..4], b"iso5");
        let (k, moov) = it.next().unwrap().unwrap();
        assert_eq!(&k, b"moov");
        let traks: Vec<_> = boxes(moov)
            .filter_map(|b| b.ok())
            .filter(|(k, _)| k == b"trak")
            .collect();
        assert_eq!(traks.len(), 2);
        let mvex = find(moov, b"mvex").unwrap().unwrap();
        assert_eq!(boxes(mvex).count(), 2);
        let tkhd = find(traks[0].1, b"tkhd").unwrap().unwrap();
        let mut r = Reader::new(&tkhd[76..]);
        assert_eq!(r.u32().unwrap(), 320 << 16);
        assert_eq!(r.u32().unwrap(), 240 << 16);
        let only_audio = init_segment(None, Some(&a));
        let moov = find(&only_audio, b"moov").unwrap().unwrap();
        assert_eq!(
            boxes(moov)
                .filter_map(|b| b.ok())
                .filter(|(k, _)| k == b"trak")
                .count(),
            1
        );
    }

    #[test]
    fn init_segment_with_extra_audio_tracks() {
        let v = TrackConfig::Avc(VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff]),
            width: 320,
            height: 240,
        });
        let a = TrackConfig::Aac(AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        });
        let a2 = TrackConfig::Aac(AudioConfig {
            asc: Bytes::from_static(&[0x11, 0x88]),
            sample_rate: 48000,
            channels: 1,
        });
        let init = init_segment_with(Some(&v), Some(&a), &[&a2]);
        let tracks = crate::mux::mp4::parse_init(&init).unwrap();
        let got: Vec<(u32, bool, u32)> = tracks
            .iter()
            .map(|t| (t.track_id, t.audio, t.timescale))
            .collect();
        assert_eq!(
            got,
            [(1, false, 90_000), (2, true, 44_100), (3, true, 48_000)]
        );
        let moov = find(&init, b"moov").unwrap().unwrap();
        let mvex = find(moov, b"mvex").unwrap().unwrap();
        let trex_ids: Vec<u32> = boxes(mvex)
            .filter_map(|b| b.ok())
            .map(|(_, body)| u32::from_be_bytes(body[4..8].try_into().unwrap()))
            .collect();
        assert_eq!(trex_ids, [1, 2, 3]);
        // mvhd next_track_id: after the last track.
        let mvhd = find(moov, b"mvhd").unwrap().unwrap();
        assert_eq!(&mvhd[mvhd.len() - 4..], &4u32.to_be_bytes());
        // No extras: the same bytes as before extras existed.
        assert_eq!(
            init_segment_with(Some(&v), Some(&a), &[]),
            init_segment_for(Some(&v), Some(&a))
        );
        // Past the cap, the rest are not written.
        let many = vec![&a2; MAX_EXTRA_TRACKS + 3];
        let init = init_segment_with(None, Some(&a), &many);
        assert_eq!(
            crate::mux::mp4::parse_init(&init).unwrap().len(),
            1 + MAX_EXTRA_TRACKS
        );
    }

    #[test]
    fn extra_tracks_follow_the_cuts_and_keep_every_sample() {
        let mut f = Fragmenter::new(1000, true, Some(48_000));
        let x = f.add_extra_track(48_000).unwrap();
        assert_eq!(x, 0);
        let mut frags = Vec::new();
        let mut events = Vec::new();
        for i in 0..75u32 {
            events.push((1000 + i * 40, 0u8, i % 30 == 0));
        }
        for i in 0..140u32 {
            let ms = 1000 + i * 1024 * 1000 / 48_000;
            events.push((ms, 1, true));
            events.push((ms + 3, 2, true));
        }
        // The extra track's first frame comes first: the lead still waits for the main tracks.
        events.sort_by_key(|e| (e.0, std::cmp::Reverse(e.1)));
        events.insert(0, (995, 2, true));
        for (ms, kind, key) in events {
            let got = match kind {
                0 => f.push(Track::Video, ms as u64, 0, key, b(10)),
                1 => f.push(Track::Audio, ms as u64, 0, key, b(7)),
                _ => {
                    f.push_extra(x, ms as u64, b(5));
                    None
                }
            };
            frags.extend(got);
        }
        frags.extend(f.finish());
        assert_eq!(frags.len(), 3);
        let mut next = None;
        let mut count = 0;
        for fr in &frags {
            assert_eq!(fr.extra.len(), 1, "every segment has extra samples");
            let e = &fr.extra[0];
            assert_eq!(e.track_id, FIRST_EXTRA_TRACK_ID);
            assert!(e.samples.iter().all(|s| s.size == 5 && s.is_sync()));
            if let Some(n) = next {
                assert_eq!(e.decode_time, n, "contiguous across segments");
            } else {
                // The extra track's 995 ms frame is the earliest held: it is time 0.
                assert_eq!(e.decode_time, 0);
            }
            next = Some(e.decode_time + e.duration_ticks());
            count += e.samples.len();
            // The muxed segment has a traf per track, extra last.
            let ids: Vec<u32> = fr.runs().iter().map(|r| r.track_id).collect();
            assert_eq!(ids, [1, 2, 3]);
        }
        assert_eq!(count, 141);
        // The main tracks start 5 ms later (450 ticks at 90 kHz, 240 at 48 kHz).
        assert_eq!(frags[0].video.as_ref().unwrap().decode_time, 450);
        assert_eq!(frags[0].audio.as_ref().unwrap().decode_time, 240);
        let mut f = Fragmenter::new(1000, false, Some(48_000));
        for _ in 0..MAX_EXTRA_TRACKS {
            assert!(f.add_extra_track(44_100).is_some());
        }
        assert_eq!(f.add_extra_track(44_100), None);
        // An index that was never given out is ignored.
        f.push_extra(MAX_EXTRA_TRACKS, 0, b(1));
    }

    #[test]
    fn cutting_rules() {
        // Video: only at a keyframe once the target is reached; hard cut at twice the target.
        assert!(!should_cut(true, Track::Video, true, 3999, 4000));
        assert!(should_cut(true, Track::Video, true, 4000, 4000));
        assert!(!should_cut(true, Track::Video, false, 7999, 4000));
        assert!(should_cut(true, Track::Video, false, 8000, 4000));
        assert!(!should_cut(true, Track::Audio, true, 5000, 4000));
        // Audio-only: on time.
        assert!(should_cut(false, Track::Audio, true, 4000, 4000));
        assert!(!should_cut(false, Track::Audio, true, 3977, 4000));
    }

    #[test]
    fn fragmenter_cuts_at_keyframes_and_carries_audio() {
        let mut f = Fragmenter::new(1000, true, Some(48_000));
        let mut frags = Vec::new();
        // 25 fps video, keyframe every 30 frames (1.2 s); audio every ~21 ms, starting a bit later.
        let mut events = Vec::new();
        for i in 0..75u32 {
            events.push((i * 40, Track::Video, i % 30 == 0));
        }
        for i in 0..140u32 {
            events.push((5 + i * 1024 * 1000 / 48_000, Track::Audio, true));
        }
        events.sort_by_key(|e| e.0);
        // The publisher's clock wraps past 2^32 ms; the normaliser makes it stream time.
        let mut clock = Normaliser::new();
        for (ms, t, key) in events {
            let time = clock.stamp(t, false, ms.wrapping_add(u32::MAX - 500)).time;
            if let Some(fr) = f.push(t, time, 0, key, b(10)) {
                frags.push(fr);
            }
        }
        frags.extend(f.finish());
        assert_eq!(frags.len(), 3);
        let v: Vec<usize> = frags
            .iter()
            .map(|f| f.video.as_ref().unwrap().samples.len())
            .collect();
        assert_eq!(v, vec![30, 30, 15]);
        for (i, fr) in frags.iter().enumerate() {
            let run = fr.video.as_ref().unwrap();
            assert!(run.samples[0].is_sync());
            assert_eq!(run.decode_time, i as u64 * 30 * 3600);
            assert!(run.samples.iter().all(|s| s.duration == 3600));
            assert_eq!(fr.sequence, i as u32 + 1);
        }
        // Audio: contiguous across segments (each tfdt = previous tfdt + previous durations),
        // all 140 samples present, starting near 0 despite the wrapped input clock.
        let mut next = None;
        let mut count = 0;
        for fr in &frags {
            let a = fr.audio.as_ref().unwrap();
            if let Some(n) = next {
                assert_eq!(a.decode_time, n);
            } else {
                assert_eq!(a.decode_time, 240); // 5 ms at 48 kHz
            }
            next = Some(a.decode_time + a.duration_ticks());
            count += a.samples.len();
        }
        assert_eq!(count, 140);
    }

    #[test]
    fn fragmenter_hard_cut_without_keyframes_and_audio_only() {
        let mut f = Fragmenter::new(1000, true, None);
        let mut frags = Vec::new();
        for i in 0..100u32 {
            frags.extend(f.push(Track::Video, i as u64 * 40, 0, i == 0, b(1)));
        }
        frags.extend(f.finish());
        let v: Vec<usize> = frags
            .iter()
            .map(|f| f.video.as_ref().unwrap().samples.len())
            .collect();
        assert_eq!(v, vec![50, 50]);
        assert!(!frags[1].video.as_ref().unwrap().samples[0].is_sync());

        let mut f = Fragmenter::new(1000, false, Some(44_100));
        let mut n = 0;
        for i in 0..200u32 {
            if let Some(fr) = f.push(Track::Audio, i as u64 * 23, 0, true, b(1)) {
                assert!(fr.video.is_none());
                assert!((fr.duration_secs() - 1.0).abs() < 0.03);
                n += 1;
            }
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn stalled_video_does_not_cut_every_audio_frame() {
        let mut f = Fragmenter::new(1000, true, Some(48_000));
        f.push(Track::Video, 0, 0, true, b(1));
        f.push(Track::Video, 40, 0, false, b(1));
        let mut cuts = 0;
        for i in 0..300u32 {
            cuts += f.push(Track::Audio, i as u64 * 20, 0, true, b(1)).is_some() as u32;
        }
        // 6 s of audio after video stopped at 40 ms: hard cuts every 2 s, not per frame.
        assert_eq!(cuts, 2);
        // A configured video track that never sends frames: audio cuts on time.
        let mut f = Fragmenter::new(1000, true, Some(48_000));
        let cuts: usize = (0..300u32)
            .filter_map(|i| f.push(Track::Audio, i as u64 * 20, 0, true, b(1)))
            .count();
        assert_eq!(cuts, 5);
    }

    #[test]
    fn time_zero_is_the_earliest_frame_even_when_it_arrives_second() {
        let mut f = Fragmenter::new(4000, true, Some(48_000));
        let hour = 3_600_000u64;
        let mut frags = Vec::new();
        for i in 0..250u32 {
            let t = hour + i as u64 * 40;
            frags.extend(f.push(Track::Video, t, 0, i % 50 == 0, b(1)));
            frags.extend(f.push(Track::Audio, t - 20, 0, true, b(1)));
        }
        frags.extend(f.finish());
        let first = &frags[0];
        assert_eq!(first.audio.as_ref().unwrap().decode_time, 0);
        assert_eq!(first.video.as_ref().unwrap().decode_time, 20 * 90);
        let n: usize = frags
            .iter()
            .map(|f| f.video.as_ref().unwrap().samples.len())
            .sum();
        assert_eq!(n, 250);
    }

    #[test]
    fn decode_times_never_go_backwards_nor_stretch_at_a_jump() {
        let mut f = Fragmenter::new(1000, true, None);
        let mut clock = Normaliser::new();
        let raw = [
            100, 140, 120,        // backwards by 20 ms
            50_000_000, // a reset far ahead
            50_000_040,
        ];
        for (i, dts) in raw.into_iter().enumerate() {
            let time = clock.stamp(Track::Video, false, dts).time;
            f.push(Track::Video, time, 0, i == 0, b(1));
        }
        let fr = f.finish().unwrap();
        let run = fr.video.unwrap();
        assert_eq!(run.decode_time, 0);
        assert!(run.samples.iter().all(|s| s.duration >= 1));
        assert!(run.duration_ticks() < 90_000);
    }

    /// The fmp4_mux fuzz target's kept crash (fuzz/regressions/fmp4_mux/crash-1927b33b...): an
    /// audio-only fragmenter (target 17 ms, 44.1 kHz) fed only video frames, the second 4.6 hours
    /// after the first. The frames of a track it does not have are ignored, so there is no
    /// fragment, and the merge refuses the empty movie with an error (the target expected a file).
    #[test]
    fn fuzz_fmp4_mux_crash_1927b33b_no_samples_no_fragment_and_merge_refuses() {
        use crate::mux::mp4::{parse_init, Merger};
        let mut fr = Fragmenter::new(17, false, Some(44_100));
        assert!(fr.push(Track::Video, 33, 0, true, b(30)).is_none());
        assert!(fr
            .push(Track::Video, 16_785_665, 248, false, b(7200))
            .is_none());
        assert!(fr
            .finish()
            .is_none_or(|f| f.runs().iter().all(|r| r.samples.is_empty())));
        let audio = AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44_100,
            channels: 2,
        };
        let init = init_segment(None, Some(&audio));
        let m = Merger::new(parse_init(&init).expect("our init segment parses"));
        let mut out = Vec::new();
        let err = m
            .write(&mut out, |_| Ok(std::io::Cursor::new(Vec::new())))
            .expect_err("an empty movie is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(out.is_empty(), "nothing written before the error");
    }
}
