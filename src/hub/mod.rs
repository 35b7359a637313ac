//! The stream hub: the single-threaded core between protocol inputs and players. Publishers
//! hand it `Frame`s; it keeps each stream's late-joiner cache, serialises each frame once per
//! output form in use, appends the shared packets to every viewer's bounded queue and reports
//! which viewers need flushing or disconnecting. It owns no sockets and no clock (`now_ms` is
//! passed in); the server writes the queues (`Viewer::queue`) and closes connections.
//!
//! Server protocol, per viewer: `add_viewer` -> push its preamble with `queue.push_control`
//! -> `start_viewer` -> flush whenever listed in a `FrameOutcome::flush` (or after any call that
//! queued bytes) with `queue.write_to` / `io_slices` + `advance` -> on end, push the end
//! marker, flush, close, `remove_viewer`.

pub mod cache;
pub mod packet;
pub mod queue;
pub mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use slab::Slab;

pub use cache::{CacheLimits, Cached};
pub use packet::{flv_file_header, FormKind, OutputForm, Packet};
pub use queue::{QueueLimits, QueueStats, SlowReason, Verdict, ViewerQueue};
pub use stream::{MetaInfo, Timeline, Viewer};

use crate::media::{Codec, Frame, StreamKey, Track};
use stream::{is_on_metadata, strip_set_data_frame, Publisher, Stream, ViewerState};

/// Hub settings (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Keep the GOP for joiners (`--no-gop-cache` sets false: headers only, joiners wait).
    pub gop_cache: bool,
    pub gop_max_bytes: usize,
    pub gop_max_ms: u32,
    pub queue_soft_bytes: usize,
    pub queue_soft_ms: u32,
    pub queue_hard_bytes: usize,
    pub queue_hard_ms: u32,
    /// A publisher silent this long may be replaced by a new one on the same key.
    pub takeover_idle_ms: u64,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            gop_cache: true,
            gop_max_bytes: 8 << 20,
            gop_max_ms: 10_000,
            queue_soft_bytes: 4 << 20,
            queue_soft_ms: 4000,
            queue_hard_bytes: 16 << 20,
            queue_hard_ms: 15_000,
            takeover_idle_ms: 5000,
        }
    }
}

impl HubConfig {
    fn cache_limits(&self) -> CacheLimits {
        CacheLimits {
            gop_cache: self.gop_cache,
            max_bytes: self.gop_max_bytes,
            max_ms: self.gop_max_ms,
        }
    }

    fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            soft_bytes: self.queue_soft_bytes,
            soft_ms: self.queue_soft_ms,
            hard_bytes: self.queue_hard_bytes,
            hard_ms: self.queue_hard_ms,
        }
    }
}

/// A viewer's key in the hub (a slab index; reused after `remove_viewer`).
pub type ViewerId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The key has an active publisher.
    Busy,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Busy => f.write_str("stream is already being published"),
        }
    }
}

impl std::error::Error for PublishError {}

#[derive(Debug, PartialEq, Eq)]
pub struct PublishOk {
    /// The idle publisher this one replaced; the server closes that connection.
    pub took_over_from: Option<usize>,
    /// Viewers that waited for a publisher and now start (RTMP ones get Play.PublishNotify).
    pub waiting_viewers: Vec<ViewerId>,
}

/// Why the hub ended a viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewerEnd {
    /// The publisher left: send the end marker, flush, close.
    Unpublished,
    /// Over a hard queue bound: close now.
    TooSlow,
}

/// What one frame did. The lists are the hub's reusable buffers, valid until the next call.
#[derive(Debug)]
pub struct FrameOutcome<'a> {
    /// False when `publisher` is not the stream's current publisher (the frame was ignored).
    pub accepted: bool,
    /// Viewers whose queue went from empty to non-empty: schedule a flush.
    pub flush: &'a [ViewerId],
    /// Viewers over a hard bound, now ended with `ViewerEnd::TooSlow`: disconnect them.
    pub too_slow: &'a [ViewerId],
}

/// One stream, for the API and the periodic log line.
#[derive(Clone, Debug)]
pub struct StreamStats {
    pub key: StreamKey,
    /// The publisher's connection token, when live.
    pub publisher: Option<usize>,
    pub started_ms: Option<u64>,
    pub bytes_in: u64,
    pub frames_in: u64,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
    pub meta: MetaInfo,
    /// The latest `onMetaData` frame as relayed.
    pub metadata: Option<Frame>,
    pub viewers_rtmp: usize,
    pub viewers_http_flv: usize,
    pub viewers_ws_flv: usize,
    /// Viewers attached but not receiving yet (no publisher, or tracks unknown).
    pub viewers_waiting: usize,
    pub bytes_out: u64,
    pub skips: u64,
}

/// Hub-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubTotals {
    pub streams: usize,
    pub publishers: usize,
    pub viewers: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub skips: u64,
    pub frames_dropped: u64,
    pub slow_disconnects: u64,
}

pub struct Hub {
    config: HubConfig,
    streams: HashMap<StreamKey, Stream>,
    viewers: Slab<Viewer>,
    flush: Vec<ViewerId>,
    too_slow: Vec<ViewerId>,
    /// Counters of viewers already removed.
    closed: QueueStats,
    /// Bytes received from publishers that have left.
    closed_bytes_in: u64,
    slow_disconnects: u64,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            streams: HashMap::new(),
            viewers: Slab::new(),
            flush: Vec::new(),
            too_slow: Vec::new(),
            closed: QueueStats::default(),
            closed_bytes_in: 0,
            slow_disconnects: 0,
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Starts a publish of `key` by the connection `publisher`. One publisher per key; a
    /// publisher that sent nothing for `takeover_idle_ms` is replaced (its token is returned
    /// for the server to close) and the viewers stay, waiting for the new keyframe.
    pub fn publish(
        &mut self,
        key: &StreamKey,
        publisher: usize,
        now_ms: u64,
    ) -> Result<PublishOk, PublishError> {
        let limits = self.config.cache_limits();
        let stream = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| Stream::new(key.clone(), limits));
        let mut took_over_from = None;
        if let Some(old) = &stream.publisher {
            if now_ms.saturating_sub(old.last_ms) < self.config.takeover_idle_ms {
                return Err(PublishError::Busy);
            }
            took_over_from = Some(old.token);
            self.closed_bytes_in += old.bytes_in;
            log::info!(
                "{key}: publisher {} idle for {} ms, taken over by {publisher}",
                old.token,
                now_ms.saturating_sub(old.last_ms)
            );
            stream.reset_media();
            // Playing viewers continue with the new session from its first keyframe.
            for &id in &stream.viewers {
                let v = &mut self.viewers[id];
                if v.state == ViewerState::Live {
                    v.queue.wait_for_key();
                }
            }
        }
        stream.publisher = Some(Publisher {
            token: publisher,
            started_ms: now_ms,
            last_ms: now_ms,
            bytes_in: 0,
            frames_in: 0,
        });
        let mut waiting_viewers = Vec::new();
        for i in 0..stream.viewers.len() {
            let id = stream.viewers[i];
            let v = &mut self.viewers[id];
            if v.state == ViewerState::Waiting {
                waiting_viewers.push(id);
                // RTMP viewers start now (the cache is empty: they wait for the first
                // keyframe); FLV viewers wait until their header flags can be told.
                if stream.prime(v) {
                    stream.waiting -= 1;
                }
            }
        }
        Ok(PublishOk {
            took_over_from,
            waiting_viewers,
        })
    }

    /// Ends the publish of `key` by `publisher` (ignored for anyone else, e.g. a publisher
    /// already taken over). Every viewer of the stream is ended with `Unpublished` and
    /// detached, and returned: the server sends each its end marker, flushes, closes, and
    /// calls `remove_viewer`. The stream and its cache are gone.
    pub fn unpublish(&mut self, key: &StreamKey, publisher: usize) -> Vec<ViewerId> {
        let Some(stream) = self.streams.get(key) else {
            return Vec::new();
        };
        if stream.publisher.as_ref().map(|p| p.token) != Some(publisher) {
            return Vec::new();
        }
        let Some(stream) = self.streams.remove(key) else {
            return Vec::new();
        };
        if let Some(p) = &stream.publisher {
            self.closed_bytes_in += p.bytes_in;
        }
        for &id in &stream.viewers {
            let v = &mut self.viewers[id];
            v.ended = Some(ViewerEnd::Unpublished);
            v.pos = usize::MAX;
        }
        stream.viewers
    }

    /// A frame from `publisher` on `key`: updates the cache, appends the frame's packets to
    /// every playing viewer's queue under the slow-viewer policy, and starts viewers that were
    /// waiting for it. Allocation per frame is per form, never per viewer.
    pub fn frame(
        &mut self,
        key: &StreamKey,
        publisher: usize,
        mut frame: Frame,
        now_ms: u64,
    ) -> FrameOutcome<'_> {
        self.flush.clear();
        self.too_slow.clear();
        let accepted = self.frame_inner(key, publisher, &mut frame, now_ms);
        FrameOutcome {
            accepted,
            flush: &self.flush,
            too_slow: &self.too_slow,
        }
    }

    fn frame_inner(
        &mut self,
        key: &StreamKey,
        publisher: usize,
        frame: &mut Frame,
        now_ms: u64,
    ) -> bool {
        let Some(stream) = self.streams.get_mut(key) else {
            return false;
        };
        let Some(p) = stream.publisher.as_mut().filter(|p| p.token == publisher) else {
            return false;
        };
        p.last_ms = now_ms;
        p.bytes_in += frame.data.len() as u64;
        p.frames_in += 1;

        let mut is_metadata = false;
        match frame.track {
            Track::Meta => {
                frame.data = strip_set_data_frame(&frame.data);
                is_metadata = is_on_metadata(&frame.data);
                if is_metadata {
                    stream.meta = MetaInfo::parse(&frame.data);
                }
            }
            Track::Video => {
                stream.seen_video = true;
                stream.video_codec = Some(frame.codec);
                stream.seen_media |= !frame.config;
            }
            Track::Audio => {
                stream.seen_audio = true;
                stream.audio_codec = Some(frame.codec);
                stream.seen_media |= !frame.config;
            }
        }
        let time = stream.timeline.advance(frame.dts);
        let resume = match frame.track {
            Track::Video => frame.key && !frame.config,
            Track::Audio => !stream.seen_video && !frame.config,
            Track::Meta => false,
        };

        // Serialise once per form in use.
        stream.scratch.clear();
        let mut memo = Vec::with_capacity(stream.forms.len());
        for &(form, users) in &stream.forms {
            let packet = (users > 0).then(|| Arc::new(Packet::new(form, frame, time, resume)));
            if let Some(p) = &packet {
                memo.push((form, p.clone()));
            }
            stream.scratch.push(packet);
        }

        // Fan out to the playing viewers.
        for &id in &stream.viewers {
            let v = &mut self.viewers[id];
            if v.state != ViewerState::Live {
                continue;
            }
            let Some(packet) = &stream.scratch[v.form_idx] else {
                continue;
            };
            let was_empty = v.queue.is_empty();
            match v.deliver(packet) {
                None => {}
                Some(Verdict::Ok) => {
                    if was_empty && !v.queue.is_empty() {
                        self.flush.push(id);
                    }
                }
                Some(Verdict::TooSlow(reason)) => {
                    log::info!(
                        "{key}: viewer {} ({:?}) too slow, disconnecting: {reason}",
                        v.token,
                        v.form
                    );
                    v.ended = Some(ViewerEnd::TooSlow);
                    self.slow_disconnects += 1;
                    self.too_slow.push(id);
                }
            }
        }

        let stored = if frame.track == Track::Meta && !is_metadata {
            false
        } else {
            stream
                .cache
                .push(Cached::new(frame.clone(), time, resume, memo))
        };

        // Start the viewers that were waiting for this stream (or for its tracks to be known).
        if stream.waiting > 0 {
            let mut i = 0;
            while i < stream.viewers.len() && stream.waiting > 0 {
                let id = stream.viewers[i];
                i += 1;
                let v = &mut self.viewers[id];
                if v.state != ViewerState::Waiting {
                    continue;
                }
                let was_empty = v.queue.is_empty();
                if !stream.prime(v) {
                    continue;
                }
                stream.waiting -= 1;
                if !stored {
                    // Not in the cache, so not in what the viewer was primed with.
                    if let Some(packet) = &stream.scratch[v.form_idx] {
                        let _ = v.deliver(packet);
                    }
                }
                if was_empty && !v.queue.is_empty() {
                    self.flush.push(id);
                }
            }
        }
        true
    }

    /// A new viewer of `key` in `form`; `token` is the server's connection token. Returns its
    /// id and whether the stream is live. The queue starts empty: push the protocol preamble,
    /// then call `start_viewer`.
    pub fn add_viewer(
        &mut self,
        key: &StreamKey,
        form: OutputForm,
        token: usize,
        now_ms: u64,
    ) -> (ViewerId, bool) {
        let limits = self.config.cache_limits();
        let stream = self
            .streams
            .entry(key.clone())
            .or_insert_with(|| Stream::new(key.clone(), limits));
        let mut v = Viewer::new(
            key.clone(),
            form,
            token,
            ViewerQueue::new(self.config.queue_limits()),
            now_ms,
        );
        v.form_idx = stream.add_form(form);
        v.pos = stream.viewers.len();
        let id = self.viewers.insert(v);
        stream.viewers.push(id);
        (id, stream.is_live())
    }

    /// Starts media for a viewer: when live (and, for FLV forms, once the tracks are known),
    /// queues the FLV header, metadata, sequence headers and GOP; otherwise the viewer waits
    /// and gets all of it when the publisher starts. Flush the viewer afterwards.
    pub fn start_viewer(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        if v.state != ViewerState::Added || v.ended.is_some() {
            return;
        }
        let Some(stream) = self.streams.get_mut(&v.key) else {
            return;
        };
        if !(stream.is_live() && stream.prime(v)) {
            v.state = ViewerState::Waiting;
            stream.waiting += 1;
        }
    }

    /// Forgets a viewer (after the server closed it, or to detach it).
    pub fn remove_viewer(&mut self, id: ViewerId) {
        if !self.viewers.contains(id) {
            return;
        }
        let v = self.viewers.remove(id);
        let stats = v.queue.stats;
        self.closed.bytes_sent += stats.bytes_sent;
        self.closed.frames_dropped += stats.frames_dropped;
        self.closed.bytes_dropped += stats.bytes_dropped;
        self.closed.skips += stats.skips;
        if v.pos == usize::MAX {
            return;
        }
        let Some(stream) = self.streams.get_mut(&v.key) else {
            return;
        };
        stream.viewers.swap_remove(v.pos);
        if let Some(&moved) = stream.viewers.get(v.pos) {
            self.viewers[moved].pos = v.pos;
        }
        stream.forms[v.form_idx].1 -= 1;
        if v.state == ViewerState::Waiting {
            stream.waiting -= 1;
        }
        stream.bytes_out_closed += stats.bytes_sent;
        if !stream.is_live() && stream.viewers.is_empty() {
            self.streams.remove(&v.key);
        }
    }

    pub fn viewer(&mut self, id: ViewerId) -> Option<&mut Viewer> {
        self.viewers.get_mut(id)
    }

    pub fn viewer_ref(&self, id: ViewerId) -> Option<&Viewer> {
        self.viewers.get(id)
    }

    /// RTMP pause: no media while paused; on resume the metadata and sequence headers are
    /// sent again and the viewer waits for the next keyframe.
    pub fn set_paused(&mut self, id: ViewerId, paused: bool) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = v.paused && !paused;
        v.paused = paused;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, true, true);
                v.queue.reset_lag();
                v.queue.wait_for_key();
            });
        }
    }

    /// RTMP receiveAudio: on re-enable, the audio sequence header again.
    pub fn set_receive_audio(&mut self, id: ViewerId, on: bool) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.audio_on && on;
        v.audio_on = on;
        if resumed {
            self.on_resume(id, |stream, v| stream.push_headers(v, false, true));
        }
    }

    /// RTMP receiveVideo: on re-enable, the video sequence header again, then video from the
    /// next keyframe.
    pub fn set_receive_video(&mut self, id: ViewerId, on: bool) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.video_on && on;
        v.video_on = on;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, true, false);
                v.video_wait_key = true;
            });
        }
    }

    /// Runs `resume` for a playing viewer that turned media back on (flush it afterwards).
    fn on_resume(&mut self, id: ViewerId, resume: impl FnOnce(&mut Stream, &mut Viewer)) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        if v.state != ViewerState::Live || v.ended.is_some() {
            return;
        }
        if let Some(stream) = self.streams.get_mut(&v.key) {
            resume(stream, v);
        }
    }

    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.streams.get(key).is_some_and(Stream::is_live)
    }

    /// The latest `onMetaData` frame of a live stream, as relayed.
    pub fn metadata(&self, key: &StreamKey) -> Option<&Frame> {
        self.streams.get(key)?.cache.meta.as_ref().map(|c| &c.frame)
    }

    /// Per-stream stats (streams with a publisher or with waiting viewers).
    pub fn streams(&self) -> impl Iterator<Item = StreamStats> + '_ {
        self.streams.values().map(move |s| {
            let mut st = StreamStats {
                key: s.key.clone(),
                publisher: s.publisher.as_ref().map(|p| p.token),
                started_ms: s.publisher.as_ref().map(|p| p.started_ms),
                bytes_in: s.publisher.as_ref().map_or(0, |p| p.bytes_in),
                frames_in: s.publisher.as_ref().map_or(0, |p| p.frames_in),
                video_codec: s.video_codec,
                audio_codec: s.audio_codec,
                meta: s.meta.clone(),
                metadata: s.cache.meta.as_ref().map(|c| c.frame.clone()),
                viewers_rtmp: 0,
                viewers_http_flv: 0,
                viewers_ws_flv: 0,
                viewers_waiting: 0,
                bytes_out: s.bytes_out_closed,
                skips: 0,
            };
            for &id in &s.viewers {
                let v = &self.viewers[id];
                st.bytes_out += v.queue.stats.bytes_sent;
                st.skips += v.queue.stats.skips;
                if v.state != ViewerState::Live {
                    st.viewers_waiting += 1;
                }
                match v.form.kind() {
                    FormKind::Rtmp => st.viewers_rtmp += 1,
                    FormKind::HttpFlv => st.viewers_http_flv += 1,
                    FormKind::WsFlv => st.viewers_ws_flv += 1,
                }
            }
            st
        })
    }

    pub fn totals(&self) -> HubTotals {
        let mut t = HubTotals {
            streams: self.streams.len(),
            publishers: self.streams.values().filter(|s| s.is_live()).count(),
            viewers: self.viewers.len(),
            bytes_in: self.closed_bytes_in,
            bytes_out: self.closed.bytes_sent,
            skips: self.closed.skips,
            frames_dropped: self.closed.frames_dropped,
            slow_disconnects: self.slow_disconnects,
        };
        for s in self.streams.values() {
            t.bytes_in += s.publisher.as_ref().map_or(0, |p| p.bytes_in);
        }
        for (_, v) in &self.viewers {
            t.bytes_out += v.queue.stats.bytes_sent;
            t.skips += v.queue.stats.skips;
            t.frames_dropped += v.queue.stats.frames_dropped;
        }
        t
    }
}
