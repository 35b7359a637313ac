//! One stream's state inside the hub: its publisher, its viewers (ids into the hub's slab),
//! the output forms in use, the late-joiner cache, its ingest normaliser (`media::time`) and what
//! the metadata says. Also `Viewer`, and how a viewer is primed (FLV header, headers, GOP) and fed.
//! No sockets; the hub (mod.rs) owns the maps and reports who needs flushing.

use std::collections::VecDeque;
use std::sync::Arc;

use super::cache::{Cache, CacheLimits, Cached};
use super::packet::{flv_file_header, OutputForm, Packet, PacketArena, TrackSet};
use super::queue::{QueueStats, Verdict, ViewerQueue};
use super::{ViewerEnd, ViewerId};
use crate::media::{Codec, MetaInfo, Normaliser, StreamKey, Track};
use crate::stats::health::StreamHealth;
use crate::stats::history::StreamHistory;

/// One history sample per 5 s: 120 of them are the dashboard's 10 minutes.
const HISTORY_INTERVAL_MS: u64 = 5_000;

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
    /// The stream's slot in the hub (valid while `pos` is not `usize::MAX`).
    pub(crate) stream: usize,
    /// Following its form's `FormLog` from this sequence number (see `FormLog`); `None` while
    /// the hub pushes every packet into the queue (behind, paused, or not yet drained).
    pub(crate) follow: Option<u64>,
    /// Index in `Stream::pushed` (not following) or in its log's `idle` list (following and
    /// nothing new since); meaningless for a follower with packets pending.
    pub(crate) list_pos: usize,
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
            stream: usize::MAX,
            follow: None,
            list_pos: usize::MAX,
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

/// Packets a form slot's followers have not had yet, and the followers waiting at its end.
///
/// A viewer at the live edge (its queue written out) follows the log with a cursor instead of
/// getting each packet pushed: `Hub::frame` appends a frame's packet once per form and lists
/// the idle followers for a flush (they leave `idle`: they now have `pending` packets), at a
/// cost per form, not per viewer. At the flush, a follower with no filter on is written
/// straight from the log and follows on (`Hub::edge`, `hub::edge`). Otherwise, when the server
/// next touches such a viewer (`Hub::viewer`, before it writes), the packets from its cursor on
/// go into its queue in order, through the same filters and slow-viewer policy as if they had
/// been pushed one by one (`Hub::settle`), and the viewer is pushed again until its queue drains
/// (`Hub::follow`). The log is emptied whenever no follower has packets pending (at every
/// merged flush, normally).
#[derive(Default)]
pub(crate) struct FormLog {
    /// Packets `base`, `base + 1`, ...
    pub packets: VecDeque<Arc<Packet>>,
    pub base: u64,
    /// Followers with nothing pending (cursor == `head()`).
    pub idle: Vec<ViewerId>,
    /// Followers with packets pending (cursor < `head()`).
    pub pending: usize,
}

/// Packets a log keeps for a follower that is never settled (a bug elsewhere, never a slow
/// client: followers are flushed within the merge interval): past it, the oldest are dropped
/// and that follower is ended as too slow when it is next touched.
pub(crate) const LOG_MAX: usize = 4096;

impl FormLog {
    /// The sequence number the next packet gets.
    pub fn head(&self) -> u64 {
        self.base + self.packets.len() as u64
    }

    pub fn has_followers(&self) -> bool {
        !self.idle.is_empty() || self.pending > 0
    }

    /// Appends a packet of the form, if anyone follows; the idle followers become pending and
    /// are appended to `flush`.
    pub fn append(&mut self, packet: &Arc<Packet>, flush: &mut Vec<ViewerId>) {
        if !self.has_followers() {
            return;
        }
        self.packets.push_back(packet.clone());
        self.pending += self.idle.len();
        flush.append(&mut self.idle);
        if self.packets.len() > LOG_MAX {
            self.packets.pop_front();
            self.base += 1;
        }
    }

    /// One pending follower is gone (settled or removed): with none left, the log empties.
    pub fn unpend(&mut self) {
        self.pending -= 1;
        if self.pending == 0 {
            self.base = self.head();
            self.packets.clear();
        }
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
    /// Each form slot's log for the viewers that follow it (same index as `forms`).
    pub logs: Vec<FormLog>,
    /// Playing viewers that do not follow a log: `Hub::frame` pushes each packet to them.
    pub pushed: Vec<ViewerId>,
    pub cache: Cache,
    /// The tracks of a multitrack stream announced so far (what a `?track=N` viewer gets).
    pub tracks: TrackSet,
    /// The one timestamp policy, applied to every frame the publisher sends.
    pub clock: Normaliser,
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
    /// What viewers that have left skipped and dropped, and how many were too slow to keep.
    pub closed_skips: u64,
    pub closed_frames_dropped: u64,
    pub slow_disconnects: u64,
    /// Bytes in from publishers taken over, so the history's rate never goes backwards.
    pub closed_session_bytes_in: u64,
    /// The publish session's health (reset with the media) and the stream's 10-minute history.
    pub health: StreamHealth,
    pub history: StreamHistory,
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
            logs: Vec::new(),
            pushed: Vec::new(),
            cache: Cache::new(limits),
            tracks: TrackSet::default(),
            clock: Normaliser::new(),
            waiting: 0,
            seen_audio: false,
            seen_video: false,
            seen_media: false,
            video_codec: None,
            audio_codec: None,
            meta: MetaInfo::default(),
            bytes_out_closed: 0,
            closed_skips: 0,
            closed_frames_dropped: 0,
            slow_disconnects: 0,
            closed_session_bytes_in: 0,
            health: StreamHealth::new(),
            history: StreamHistory::new(HISTORY_INTERVAL_MS),
        }
    }

    /// Forgets the previous publish session's media (cache, tracks, metadata).
    pub fn reset_media(&mut self) {
        self.cache.clear();
        self.tracks = TrackSet::default();
        self.clock = Normaliser::new();
        self.seen_audio = false;
        self.seen_video = false;
        self.seen_media = false;
        self.video_codec = None;
        self.audio_codec = None;
        self.meta = MetaInfo::default();
        self.health = StreamHealth::new();
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
                    self.logs.push(FormLog::default());
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
        let (form, tracks) = (v.form, self.tracks);
        if self.cache.has_gop() && !v.paused {
            for c in self.cache.gop() {
                let wanted = match c.frame.track {
                    Track::Audio => v.audio_on,
                    Track::Video => v.video_on,
                    Track::Meta => true,
                };
                if wanted {
                    if let Some(p) = c.packet(form, &tracks) {
                        v.queue.push_primed(p);
                    }
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
        let (form, tracks) = (v.form, self.tracks);
        let cache = &mut self.cache;
        let items: [(&mut Option<Cached>, bool); 4] = [
            (&mut cache.meta, meta),
            (&mut cache.video_config, video && v.video_on),
            (&mut cache.audio_config, audio && v.audio_on),
            (&mut cache.bridged_audio_config, audio && v.audio_on),
        ];
        for (item, wanted) in items {
            if let (Some(c), true) = (item.as_mut(), wanted) {
                if let Some(p) = c.packet(form, &tracks) {
                    v.queue.push_primed(p);
                }
            }
        }
        for (track, _, c) in &mut cache.track_configs {
            let wanted = match track {
                Track::Video => video && v.video_on,
                Track::Audio => audio && v.audio_on,
                Track::Meta => false,
            };
            if wanted {
                if let Some(p) = c.packet(form, &tracks) {
                    v.queue.push_primed(p);
                }
            }
        }
    }
}
