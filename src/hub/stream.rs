//! One stream's state inside the hub: its publisher, its viewers (ids into the hub's slab),
//! the output forms in use, the late-joiner cache, the monotonic media timeline and what the
//! metadata says. Also `Viewer`, and how a viewer is primed (FLV header, headers, GOP) and fed.
//! No sockets; the hub (mod.rs) owns the maps and reports who needs flushing.

use std::sync::Arc;

use bytes::Bytes;

use super::cache::{Cache, CacheLimits, Cached};
use super::packet::{flv_file_header, OutputForm, Packet, PacketArena};
use super::queue::{QueueStats, Verdict, ViewerQueue};
use super::{ViewerEnd, ViewerId};
use crate::amf::{amf0, Value};
use crate::media::{Codec, StreamKey, Track};

/// A publisher timestamp step larger than this is a jump, not time passing.
const MAX_STEP_MS: i32 = 60_000;
/// Steps back up to this much are audio/video interleaving or jitter, not a restart.
const MAX_JITTER_MS: i32 = 10_000;

/// Maps publisher timestamps (32-bit, wrapping, may jump) to a monotonic media time in ms.
/// Forward steps of up to 60 s advance it; small steps back (interleaving) hold it; a bigger
/// jump either way re-anchors without advancing. The queue policy and the cache caps use
/// this time, so a timestamp jump can never make a viewer look late.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    last: Option<u32>,
    now: u64,
}

impl Timeline {
    /// The current media time.
    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn advance(&mut self, dts: u32) -> u64 {
        match self.last {
            None => self.last = Some(dts),
            Some(last) => {
                let step = dts.wrapping_sub(last) as i32;
                if step > 0 && step <= MAX_STEP_MS {
                    self.now += step as u64;
                    self.last = Some(dts);
                } else if !(-MAX_JITTER_MS..=0).contains(&step) {
                    self.last = Some(dts);
                }
            }
        }
        self.now
    }
}

/// What `onMetaData` says about a stream (every field optional: encoders differ).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaInfo {
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub framerate: Option<f64>,
    pub video_data_rate: Option<f64>,
    pub audio_data_rate: Option<f64>,
    pub audio_sample_rate: Option<f64>,
    pub audio_channels: Option<f64>,
    pub encoder: Option<String>,
    /// From `hasAudio`, else `Some(true)` when `audiocodecid` is present; `None` when the
    /// metadata says nothing about tracks.
    pub has_audio: Option<bool>,
    pub has_video: Option<bool>,
}

impl MetaInfo {
    /// Parses an `onMetaData` body (without `@setDataFrame`). Bad AMF gives an empty info:
    /// the metadata is relayed as it is either way.
    pub fn parse(body: &[u8]) -> MetaInfo {
        let Ok(values) = amf0::decode_all(body) else {
            return MetaInfo::default();
        };
        let Some(obj) = values
            .iter()
            .find(|v| matches!(v, Value::Object(_) | Value::EcmaArray(_)))
        else {
            return MetaInfo::default();
        };
        let num = |name: &str| obj.get(name).and_then(Value::as_f64);
        let flag = |name: &str| match obj.get(name) {
            Some(Value::Boolean(b)) => Some(*b),
            _ => None,
        };
        let track = |has: &str, codec: &str| {
            flag(has).or(obj.get(codec).map(|_| true)).or_else(|| {
                // Metadata that describes the other track but not this one means "none".
                (obj.get("audiocodecid").is_some() || obj.get("videocodecid").is_some())
                    .then_some(false)
            })
        };
        let channels = num("audiochannels").or(match flag("stereo") {
            Some(true) => Some(2.0),
            Some(false) => Some(1.0),
            None => None,
        });
        MetaInfo {
            width: num("width"),
            height: num("height"),
            framerate: num("framerate").or(num("fps")),
            video_data_rate: num("videodatarate"),
            audio_data_rate: num("audiodatarate"),
            audio_sample_rate: num("audiosamplerate"),
            audio_channels: channels,
            encoder: obj
                .get("encoder")
                .and_then(Value::as_str)
                .map(str::to_string),
            has_audio: track("hasAudio", "audiocodecid"),
            has_video: track("hasVideo", "videocodecid"),
        }
    }
}

/// `@setDataFrame` as an AMF0 string: publishers prefix the metadata they want kept with it;
/// players must get plain `onMetaData`.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// The body without a leading `@setDataFrame` (a slice: nothing is copied).
pub fn strip_set_data_frame(data: &Bytes) -> Bytes {
    if data.starts_with(SET_DATA_FRAME) {
        data.slice(SET_DATA_FRAME.len()..)
    } else {
        data.clone()
    }
}

/// True for an `onMetaData` script body (other script data is relayed, not cached).
pub fn is_on_metadata(data: &[u8]) -> bool {
    data.starts_with(ON_METADATA)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ViewerState {
    /// Added; the server has not called `start_viewer` yet.
    Added,
    /// Started, waiting for the stream to go live (or, for FLV forms, for the tracks to be
    /// known so the FLV header can be written).
    Waiting,
    /// Receiving media.
    Live,
}

/// One player attached to a stream.
pub struct Viewer {
    /// The server's connection token.
    pub token: usize,
    pub form: OutputForm,
    pub queue: ViewerQueue,
    pub key: StreamKey,
    /// Set when the hub ended the viewer; it gets no more media.
    pub ended: Option<ViewerEnd>,
    pub joined_ms: u64,
    pub(crate) state: ViewerState,
    /// Index in the stream's viewer list; `usize::MAX` once detached.
    pub(crate) pos: usize,
    pub(crate) form_idx: usize,
    pub(crate) flv_header_sent: bool,
    pub(crate) paused: bool,
    pub(crate) audio_on: bool,
    pub(crate) video_on: bool,
    /// Video was re-enabled: drop video until a keyframe.
    pub(crate) video_wait_key: bool,
}

impl Viewer {
    pub(crate) fn new(
        key: StreamKey,
        form: OutputForm,
        token: usize,
        queue: ViewerQueue,
        now_ms: u64,
    ) -> Viewer {
        Viewer {
            token,
            form,
            queue,
            key,
            ended: None,
            joined_ms: now_ms,
            state: ViewerState::Added,
            pos: usize::MAX,
            form_idx: 0,
            flv_header_sent: false,
            paused: false,
            audio_on: true,
            video_on: true,
            video_wait_key: false,
        }
    }

    /// True once the viewer receives media (primed with the cache).
    pub fn is_playing(&self) -> bool {
        self.state == ViewerState::Live
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Bytes sent, frames and bytes dropped, skips.
    pub fn stats(&self) -> QueueStats {
        self.queue.stats
    }

    /// Feeds one live packet through this viewer's filters (pause, receiveAudio/Video,
    /// waiting for a video keyframe) into its queue. `None` when filtered out.
    pub(crate) fn deliver(&mut self, packet: &Arc<Packet>) -> Option<Verdict> {
        if self.paused || self.ended.is_some() {
            return None;
        }
        match packet.track {
            Track::Audio if !self.audio_on => return None,
            Track::Video if !self.video_on => return None,
            Track::Video if self.video_wait_key => {
                if packet.key {
                    self.video_wait_key = false;
                } else if !packet.header {
                    return None;
                }
            }
            _ => {}
        }
        Some(self.queue.push_media(packet.clone()))
    }
}

pub(crate) struct Publisher {
    pub token: usize,
    pub started_ms: u64,
    pub last_ms: u64,
    pub bytes_in: u64,
    pub frames_in: u64,
}

pub(crate) struct Stream {
    pub key: StreamKey,
    pub publisher: Option<Publisher>,
    pub viewers: Vec<ViewerId>,
    /// Output forms in use and how many attached viewers use each; a slot's index is stable
    /// while any viewer uses it (viewers keep it as `form_idx`).
    pub forms: Vec<(OutputForm, usize)>,
    /// Where each form slot's packets are serialised (same index as `forms`).
    pub arenas: Vec<PacketArena>,
    /// Packets of the current frame, by form slot (reused per frame).
    pub scratch: Vec<Option<Arc<Packet>>>,
    pub cache: Cache,
    pub timeline: Timeline,
    /// Viewers in the `Waiting` state.
    pub waiting: usize,
    pub seen_audio: bool,
    pub seen_video: bool,
    /// An audio or video frame that is not a sequence header was seen: the set of tracks is
    /// as known as it will get without metadata.
    pub seen_media: bool,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
    pub meta: MetaInfo,
    /// Bytes written to viewers that have left.
    pub bytes_out_closed: u64,
}

impl Stream {
    pub fn new(key: StreamKey, limits: CacheLimits) -> Stream {
        Stream {
            key,
            publisher: None,
            viewers: Vec::new(),
            forms: Vec::new(),
            arenas: Vec::new(),
            scratch: Vec::new(),
            cache: Cache::new(limits),
            timeline: Timeline::default(),
            waiting: 0,
            seen_audio: false,
            seen_video: false,
            seen_media: false,
            video_codec: None,
            audio_codec: None,
            meta: MetaInfo::default(),
            bytes_out_closed: 0,
        }
    }

    /// Forgets the previous publish session's media (cache, tracks, metadata).
    pub fn reset_media(&mut self) {
        self.cache.clear();
        self.timeline = Timeline::default();
        self.seen_audio = false;
        self.seen_video = false;
        self.seen_media = false;
        self.video_codec = None;
        self.audio_codec = None;
        self.meta = MetaInfo::default();
    }

    pub fn is_live(&self) -> bool {
        self.publisher.is_some()
    }

    /// The slot for `form`, created (or a free slot reused) if needed; counts one more user.
    pub fn add_form(&mut self, form: OutputForm) -> usize {
        let idx = match self.forms.iter().position(|(f, _)| *f == form) {
            Some(i) => i,
            None => match self.forms.iter().position(|(_, n)| *n == 0) {
                Some(i) => {
                    self.forms[i].0 = form;
                    i
                }
                None => {
                    self.forms.push((form, 0));
                    self.arenas.push(PacketArena::default());
                    self.forms.len() - 1
                }
            },
        };
        self.forms[idx].1 += 1;
        idx
    }

    /// FLV header flags (has audio, has video) once they can be told: from the metadata
    /// when it describes the tracks, else once a media frame (not a sequence header) came.
    pub fn flv_flags(&self) -> Option<(bool, bool)> {
        let meta_known = self.meta.has_audio.is_some() || self.meta.has_video.is_some();
        if !meta_known && !self.seen_media {
            return None;
        }
        Some((
            self.meta.has_audio.unwrap_or(false) || self.seen_audio,
            self.meta.has_video.unwrap_or(false) || self.seen_video,
        ))
    }

    /// Queues what a joining viewer starts with: FLV header (once per viewer, ever),
    /// metadata, video and audio sequence headers, then the cached GOP (or, without one, the
    /// viewer waits for the next resume point). Returns false, leaving the viewer as it is,
    /// when an FLV viewer's header flags cannot be told yet.
    pub fn prime(&mut self, v: &mut Viewer) -> bool {
        if v.form.is_flv() && !v.flv_header_sent {
            let Some((audio, video)) = self.flv_flags() else {
                return false;
            };
            if let Some(h) = flv_file_header(v.form, audio, video) {
                v.queue.push_control(h);
            }
            v.flv_header_sent = true;
        }
        self.push_headers(v, true, true, true);
        let form = v.form;
        if self.cache.has_gop() && !v.paused {
            for c in self.cache.gop() {
                let wanted = match c.frame.track {
                    Track::Audio => v.audio_on,
                    Track::Video => v.video_on,
                    Track::Meta => true,
                };
                if wanted {
                    v.queue.push_primed(c.packet(form));
                }
            }
        } else {
            v.queue.wait_for_key();
        }
        v.state = ViewerState::Live;
        true
    }

    /// Queues the cached metadata and the sequence headers asked for (those of tracks this
    /// viewer receives), exempt from the soft bounds.
    pub fn push_headers(&mut self, v: &mut Viewer, meta: bool, video: bool, audio: bool) {
        let form = v.form;
        let cache = &mut self.cache;
        let items: [(&mut Option<Cached>, bool); 3] = [
            (&mut cache.meta, meta),
            (&mut cache.video_config, video && v.video_on),
            (&mut cache.audio_config, audio && v.audio_on),
        ];
        for (item, wanted) in items {
            if let (Some(c), true) = (item.as_mut(), wanted) {
                v.queue.push_primed(c.packet(form));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_survives_wraps_and_jumps() {
        let mut t = Timeline::default();
        assert_eq!(t.advance(u32::MAX - 20), 0);
        assert_eq!(t.advance(19), 40, "wraps forward");
        assert_eq!(t.advance(10), 40, "interleaving step back holds");
        assert_eq!(t.advance(59), 80);
        assert_eq!(t.advance(5_000_000), 80, "a jump forward does not advance");
        assert_eq!(t.advance(5_000_040), 120);
        assert_eq!(t.advance(0), 120, "a restart at zero does not advance");
        assert_eq!(t.advance(40), 160);
    }

    #[test]
    fn metadata_info() {
        let body = amf0::encode_all(&[
            Value::string("onMetaData"),
            Value::EcmaArray(vec![
                ("width".into(), Value::Number(1280.0)),
                ("height".into(), Value::Number(720.0)),
                ("framerate".into(), Value::Number(30.0)),
                ("videocodecid".into(), Value::Number(7.0)),
                ("encoder".into(), Value::string("obs")),
                ("stereo".into(), Value::Boolean(true)),
            ]),
        ]);
        assert!(is_on_metadata(&body));
        let m = MetaInfo::parse(&body);
        assert_eq!(m.width, Some(1280.0));
        assert_eq!(m.height, Some(720.0));
        assert_eq!(m.framerate, Some(30.0));
        assert_eq!(m.encoder.as_deref(), Some("obs"));
        assert_eq!(m.audio_channels, Some(2.0));
        assert_eq!(m.has_video, Some(true));
        assert_eq!(m.has_audio, Some(false));
        assert_eq!(MetaInfo::parse(b"\x02\x00"), MetaInfo::default());
    }

    #[test]
    fn set_data_frame_is_stripped_without_copy() {
        let mut body = SET_DATA_FRAME.to_vec();
        body.extend_from_slice(ON_METADATA);
        let data = Bytes::from(body);
        let stripped = strip_set_data_frame(&data);
        assert!(is_on_metadata(&stripped));
        assert_eq!(stripped.as_ptr(), data[SET_DATA_FRAME.len()..].as_ptr());
        let plain = Bytes::from_static(ON_METADATA);
        assert_eq!(strip_set_data_frame(&plain), plain);
    }
}
