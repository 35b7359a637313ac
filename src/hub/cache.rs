//! The late-joiner cache of one stream: the latest metadata, the video and audio sequence
//! headers, and the GOP since the last video keyframe (audio-only: the last second of audio),
//! capped in bytes and duration. Stores `Frame`s, plus the packets already serialised for them
//! per output form, so a join serialises each cached frame at most once per form.
//! Which viewers get what, and when, is decided by the stream, not here.

use std::collections::VecDeque;
use std::sync::Arc;

use super::packet::{OutputForm, Packet, TrackSet};
use crate::media::enhanced::PacketType;
use crate::media::{Frame, Track};

/// Sequence headers kept for the other tracks of a multitrack stream (Enhanced RTMP v2): more
/// tracks than this per stream are relayed live but not replayed to joiners.
pub const MAX_TRACK_CONFIGS: usize = 16;

/// Cache caps (from `HubConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Keep a GOP at all (`--no-gop-cache` turns this off: headers only).
    pub gop_cache: bool,
    pub max_bytes: usize,
    pub max_ms: u32,
}

/// How much audio an audio-only stream keeps for joiners.
pub const AUDIO_ONLY_MS: u64 = 1000;

/// A frame in the cache with its stream time, resume flag and the packets made for it so far.
#[derive(Debug)]
pub struct Cached {
    pub frame: Frame,
    /// The stream's monotonic media time of the frame.
    pub time: u64,
    /// Resume point (see `Packet::key`).
    pub key: bool,
    /// `None` for a form that gets nothing of this frame (see `Packet::new`).
    packets: Vec<(OutputForm, Option<Arc<Packet>>)>,
}

impl Cached {
    /// `packets`: those already made for the live fan-out, reused by joiners of those forms.
    pub fn new(
        frame: Frame,
        time: u64,
        key: bool,
        packets: Vec<(OutputForm, Option<Arc<Packet>>)>,
    ) -> Cached {
        Cached {
            frame,
            time,
            key,
            packets,
        }
    }

    /// The frame serialised for `form`, made on first use and kept (`None`: nothing of this
    /// frame for that form).
    pub fn packet(&mut self, form: OutputForm, tracks: &TrackSet) -> Option<Arc<Packet>> {
        if let Some((_, p)) = self.packets.iter().find(|(f, _)| *f == form) {
            return p.clone();
        }
        let p = Packet::new(form, &self.frame, tracks, self.time, self.key).map(Arc::new);
        self.packets.push((form, p.clone()));
        p
    }
}

pub struct Cache {
    limits: CacheLimits,
    pub meta: Option<Cached>,
    pub video_config: Option<Cached>,
    pub audio_config: Option<Cached>,
    /// The audio bridge's AAC sequence header of an Opus stream (`Frame::bridged`).
    pub bridged_audio_config: Option<Cached>,
    /// The configurations of the other tracks of a multitrack stream (track id not 0), one per
    /// (kind, track id, packet type), in arrival order; a joiner gets them after the default
    /// track's.
    pub track_configs: Vec<(Track, (u8, PacketType), Cached)>,
    gop: VecDeque<Cached>,
    gop_bytes: usize,
    /// A GOP is being collected: it started at a keyframe and stayed within the caps.
    gop_open: bool,
    /// Video was seen: from then on only video keyframes start a GOP.
    seen_video: bool,
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Cache {
        Cache {
            limits,
            meta: None,
            video_config: None,
            audio_config: None,
            bridged_audio_config: None,
            track_configs: Vec::new(),
            gop: VecDeque::new(),
            gop_bytes: 0,
            gop_open: false,
            seen_video: false,
        }
    }

    /// Forgets everything (a publish ended or was taken over).
    pub fn clear(&mut self) {
        *self = Cache::new(self.limits);
    }

    /// Forgets the GOP but keeps metadata and sequence headers: the same publisher restarted
    /// its media (a relay's upstream came back), so the old pictures must not reach joiners;
    /// collection resumes at the next keyframe.
    pub fn restart_gop(&mut self) {
        self.drop_gop();
        self.gop_open = false;
    }

    /// The cached GOP, oldest first.
    pub fn gop(&mut self) -> impl Iterator<Item = &mut Cached> {
        self.gop.iter_mut()
    }

    /// The cached GOP's frames, oldest first.
    pub fn gop_frames(&self) -> impl Iterator<Item = &Frame> {
        self.gop.iter().map(|c| &c.frame)
    }

    pub fn gop_len(&self) -> usize {
        self.gop.len()
    }

    /// True when a joiner can start from the cache without waiting for a keyframe.
    pub fn has_gop(&self) -> bool {
        !self.gop.is_empty()
    }

    fn drop_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
    }

    /// Adds a frame (`Track::Meta` frames must be `onMetaData`). Returns true when the frame
    /// was kept (as a header or in the GOP), so a joiner primed now already has it.
    pub fn push(&mut self, c: Cached) -> bool {
        let frame = &c.frame;
        if let Some(id) = frame.other_track_config() {
            let track = frame.track;
            let known = self
                .track_configs
                .iter()
                .position(|(t, i, _)| *t == track && *i == id);
            match known {
                Some(n) => self.track_configs[n].2 = c,
                None if self.track_configs.len() < MAX_TRACK_CONFIGS => {
                    self.track_configs.push((track, id, c));
                }
                None => return false,
            }
            return true;
        }
        match frame.track {
            Track::Audio if frame.bridged && frame.config => {
                self.bridged_audio_config = Some(c);
                true
            }
            Track::Meta => {
                self.meta = Some(c);
                true
            }
            Track::Video if frame.config => {
                let changed = self
                    .video_config
                    .as_ref()
                    .is_some_and(|old| old.frame.data != frame.data);
                if changed || !self.seen_video {
                    // Frames before a new config do not decode with it: restart at a key.
                    self.drop_gop();
                    self.gop_open = false;
                }
                self.seen_video = true;
                self.video_config = Some(c);
                true
            }
            Track::Audio if frame.config => {
                let changed = self
                    .audio_config
                    .as_ref()
                    .is_some_and(|old| old.frame.data != frame.data);
                if changed {
                    self.drop_gop();
                    self.gop_open = !self.seen_video;
                }
                self.audio_config = Some(c);
                true
            }
            Track::Video => {
                if !self.seen_video {
                    // Audio kept for an audio-only stream is no start for a video GOP.
                    self.seen_video = true;
                    self.drop_gop();
                    self.gop_open = false;
                }
                if frame.key {
                    self.drop_gop();
                    self.gop_open = true;
                }
                self.append(c)
            }
            Track::Audio => {
                if !self.seen_video {
                    self.gop_open = true;
                }
                self.append(c)
            }
        }
    }

    fn append(&mut self, c: Cached) -> bool {
        if !self.limits.gop_cache || !self.gop_open {
            return false;
        }
        let time = c.time;
        self.gop_bytes += c.frame.data.len();
        self.gop.push_back(c);
        if !self.seen_video {
            // Audio-only: a sliding window of the last second, within the byte cap.
            while let Some(front) = self.gop.front() {
                let too_old = time.saturating_sub(front.time) > AUDIO_ONLY_MS;
                if !too_old && self.gop_bytes <= self.limits.max_bytes {
                    break;
                }
                self.gop_bytes -= front.frame.data.len();
                self.gop.pop_front();
            }
            return !self.gop.is_empty();
        }
        let first = self.gop.front().map_or(time, |f| f.time);
        if self.gop_bytes > self.limits.max_bytes
            || time.saturating_sub(first) > self.limits.max_ms as u64
        {
            // Over a cap: a broken GOP is useless, so keep nothing until the next keyframe.
            self.drop_gop();
            self.gop_open = false;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
    use bytes::Bytes;

    fn limits() -> CacheLimits {
        CacheLimits {
            gop_cache: true,
            max_bytes: 1000,
            max_ms: 2000,
        }
    }

    fn cached(tag: u8, time: u64, data: &[u8]) -> Cached {
        let f = Frame::parse(tag, time as u32, Bytes::copy_from_slice(data)).unwrap();
        let key = f.track == Track::Video && f.key && !f.config;
        Cached::new(f, time, key, Vec::new())
    }

    fn vkey(t: u64) -> Cached {
        cached(TAG_VIDEO, t, &[0x17, 1, 0, 0, 0, 9])
    }
    fn vinter(t: u64) -> Cached {
        cached(TAG_VIDEO, t, &[0x27, 1, 0, 0, 0, 9])
    }
    fn aframe(t: u64) -> Cached {
        cached(TAG_AUDIO, t, &[0xaf, 1, 5])
    }

    fn gop_times(c: &mut Cache) -> Vec<u64> {
        c.gop().map(|c| c.time).collect()
    }

    #[test]
    fn restart_gop_keeps_headers() {
        let mut c = Cache::new(limits());
        c.push(cached(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]));
        c.push(vkey(0));
        c.push(vinter(40));
        assert!(c.has_gop());
        c.restart_gop();
        assert!(!c.has_gop() && c.video_config.is_some());
        // A picture that is not a keyframe does not reopen the GOP; the next keyframe does.
        c.push(vinter(80));
        assert!(!c.has_gop());
        c.push(vkey(120));
        assert!(c.has_gop());
    }

    #[test]
    fn keyframe_resets_the_gop() {
        let mut c = Cache::new(limits());
        assert!(c.push(cached(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1])));
        assert!(!c.push(vinter(0)), "no GOP before the first keyframe");
        assert!(c.push(vkey(40)));
        c.push(aframe(50));
        c.push(vinter(80));
        assert_eq!(gop_times(&mut c), vec![40, 50, 80]);
        c.push(vkey(120));
        c.push(aframe(130));
        assert_eq!(gop_times(&mut c), vec![120, 130]);
        assert!(c.video_config.is_some());
    }

    #[test]
    fn byte_cap_drops_to_next_keyframe() {
        let mut c = Cache::new(limits());
        c.push(vkey(0));
        let big = [0x27u8; 600];
        c.push(cached(TAG_VIDEO, 40, &big));
        assert_eq!(gop_times(&mut c), vec![0, 40]);
        assert!(!c.push(cached(TAG_VIDEO, 80, &big)));
        assert!(!c.has_gop());
        assert!(!c.push(vinter(120)), "stays empty until a keyframe");
        assert!(!c.push(aframe(130)));
        assert!(c.push(vkey(160)));
        assert_eq!(gop_times(&mut c), vec![160]);
    }

    #[test]
    fn duration_cap_drops_to_next_keyframe() {
        let mut c = Cache::new(limits());
        c.push(vkey(0));
        c.push(vinter(2000));
        assert_eq!(c.gop_len(), 2);
        assert!(!c.push(vinter(2040)));
        assert!(!c.has_gop());
        c.push(vinter(2080));
        assert!(!c.has_gop());
        c.push(vkey(2120));
        assert_eq!(gop_times(&mut c), vec![2120]);
    }

    #[test]
    fn audio_only_keeps_the_last_second() {
        let mut c = Cache::new(limits());
        c.push(cached(TAG_AUDIO, 0, &[0xaf, 0, 0x12, 0x10]));
        for t in (0..=3000).step_by(100) {
            assert!(c.push(aframe(t)));
        }
        assert_eq!(
            gop_times(&mut c),
            (2000..=3000).step_by(100).collect::<Vec<_>>()
        );
        assert!(c.audio_config.is_some());
        // Video appears: the audio window goes, the next video keyframe starts a GOP.
        assert!(!c.push(vinter(3100)));
        assert!(!c.has_gop());
        assert!(!c.push(aframe(3120)));
        c.push(vkey(3200));
        c.push(aframe(3220));
        assert_eq!(gop_times(&mut c), vec![3200, 3220]);
    }

    #[test]
    fn no_gop_cache_keeps_headers_only() {
        let mut c = Cache::new(CacheLimits {
            gop_cache: false,
            ..limits()
        });
        assert!(c.push(cached(TAG_SCRIPT, 0, &[2, 0, 10])));
        assert!(c.push(cached(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1])));
        assert!(c.push(cached(TAG_AUDIO, 0, &[0xaf, 0, 0x12, 0x10])));
        assert!(!c.push(vkey(0)));
        assert!(!c.push(aframe(10)));
        assert!(!c.has_gop());
        assert!(c.meta.is_some() && c.video_config.is_some() && c.audio_config.is_some());
    }

    #[test]
    fn new_video_config_restarts_the_gop() {
        let mut c = Cache::new(limits());
        c.push(cached(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0, 1]));
        c.push(vkey(0));
        c.push(vinter(40));
        // Same config again (some encoders repeat it): the GOP stays.
        c.push(cached(TAG_VIDEO, 60, &[0x17, 0, 0, 0, 0, 1]));
        assert_eq!(c.gop_len(), 2);
        c.push(cached(TAG_VIDEO, 80, &[0x17, 0, 0, 0, 0, 2]));
        assert!(!c.has_gop());
        assert!(!c.push(vinter(120)));
    }

    #[test]
    fn packets_are_memoised_per_form() {
        let mut k = vkey(0);
        let form = OutputForm::WsFlv {
            track: 0,
            aac: false,
        };
        let a = k.packet(form, &TrackSet::default()).unwrap();
        let b = k.packet(form, &TrackSet::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = k
            .packet(
                OutputForm::HttpFlv {
                    chunked: false,
                    track: 0,
                    aac: false,
                },
                &TrackSet::default(),
            )
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
