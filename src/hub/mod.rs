//! The stream hub: the single-threaded core between protocol inputs and players. Publishers
//! hand it `Frame`s; it normalises each at entry with the stream's ingest normaliser
//! (`media::time`, `media::meta`), keeps each stream's late-joiner cache, serialises each frame once per
//! output form in use, appends the shared packets once per form to a log that the viewers at
//! the live edge follow (`stream::FormLog`) and to the bounded queue of each viewer that is
//! not at the edge, then hands the frame to the stream's readers (recorders, `reader`), and
//! reports which viewers need flushing or disconnecting and whether a reader asks to hold the
//! publisher. Publishers hold a
//! `StreamHandle` (slab index + generation): no key is hashed or cloned per frame. It owns no
//! sockets and no clock (`now_ms` is passed in); the server writes the queues
//! (`Viewer::queue`) and closes connections.
//!
//! Server protocol, per viewer: `add_viewer` -> push its preamble with `queue.push_control`
//! -> `start_viewer` -> flush whenever listed in a `FrameOutcome::flush` (or after any call that
//! queued bytes) with `queue.write_to` / `io_slices` + `advance`, reaching the queue through
//! `viewer` (it settles a follower first), and call `follow` when a write emptied the queue
//! (a follower with packets pending may instead be written straight from its log: `edge` and
//! `edge_written`, see `edge`) ->
//! on end, push the end marker, flush, close, `remove_viewer`.

pub mod bridge;
pub mod cache;
mod edge;
pub mod packet;
pub mod queue;
pub mod reader;
pub mod stats;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use slab::Slab;

pub use crate::media::MetaInfo;
pub use cache::{CacheLimits, Cached};
pub use edge::{Edge, EdgeKey};
pub use packet::{flv_file_header, FormKind, OutputForm, Packet};
pub use queue::{QueueLimits, QueueStats, SlowReason, Verdict, ViewerQueue};
pub use reader::{Reader, ReaderState};
pub use stats::{HubTotals, StreamStats};
pub use stream::Viewer;

use crate::media::{meta, Frame, StreamKey, Track};
use stream::{Publisher, Stream, ViewerState};

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

/// A live stream as its publisher holds it: a slab index plus a generation, so the per-frame
/// path neither hashes nor clones the key, and a handle kept past its session finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHandle {
    index: usize,
    generation: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PublishOk {
    /// What the publisher passes to `frame` and `unpublish`.
    pub handle: StreamHandle,
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
    /// A reader (a recorder) is over its bound: stop reading the publisher until
    /// `readers_ready` says it drained.
    pub hold_publisher: bool,
}

/// A stream and the readers that are not players (recorders) attached to its publish session.
struct Slot {
    stream: Stream,
    readers: Vec<Box<dyn Reader>>,
    /// The Opus to AAC bridge of an Opus stream (`bridge`), for its publish session.
    bridge: Option<Box<dyn bridge::AudioBridge>>,
    generation: u64,
}

/// The largest `onMetaData` (or other script message) a publisher may send: real ones are a
/// few hundred bytes, and every joining viewer gets the cached one.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

impl Slot {
    /// Drops the readers (ending their recordings), keeping what they dropped in the totals.
    fn end_readers(&mut self, dropped: &mut u64) {
        for r in self.readers.drain(..) {
            *dropped += r.frames_dropped();
        }
    }
}

/// The recorders of a publish that ended while its audio bridge still held AAC (up to a block
/// of the encoder): kept until the bridge hands that tail over (`poll_bridges`), so recordings
/// end with the last of the audio, not 277 ms before it.
struct Draining {
    key: StreamKey,
    bridge: Box<dyn bridge::AudioBridge>,
    readers: Vec<Box<dyn Reader>>,
    /// When `poll_bridges` first saw it (loop time), for `DRAIN_GIVE_UP_MS`.
    since_ms: Option<u64>,
}

/// How long a finished publish's recorders wait for its audio bridge's tail before they end
/// without it (the bridge codes it in a few milliseconds; this bounds a stuck one).
pub const DRAIN_GIVE_UP_MS: u64 = 2_000;

pub struct Hub {
    config: HubConfig,
    /// Streams by slab index; `index` finds one by key (join, API), handles skip the lookup.
    streams: Slab<Slot>,
    index: HashMap<StreamKey, usize>,
    next_generation: u64,
    viewers: Slab<Viewer>,
    flush: Vec<ViewerId>,
    too_slow: Vec<ViewerId>,
    /// Followers found over a hard bound when they were settled outside `frame`: reported
    /// with the next frame's `too_slow`.
    late_slow: Vec<ViewerId>,
    /// Counters of viewers already removed.
    closed: QueueStats,
    /// Bytes received from publishers that have left.
    closed_bytes_in: u64,
    slow_disconnects: u64,
    /// Script frames over `MAX_METADATA_BYTES`, dropped.
    metadata_dropped: u64,
    reader_frames_dropped: u64,
    /// Starts an Opus stream's audio bridge (`set_bridge_factory`); none in tests and gateways.
    bridge_factory: Option<bridge::BridgeFactory>,
    /// Bridges started, and the counts of those that ended.
    bridges: bridge::BridgeCounts,
    /// Ended publishes' recorders waiting for their bridge's tail.
    draining: Vec<Draining>,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            streams: Slab::new(),
            index: HashMap::new(),
            next_generation: 1,
            viewers: Slab::new(),
            flush: Vec::new(),
            too_slow: Vec::new(),
            late_slow: Vec::new(),
            closed: QueueStats::default(),
            closed_bytes_in: 0,
            slow_disconnects: 0,
            metadata_dropped: 0,
            reader_frames_dropped: 0,
            bridge_factory: None,
            bridges: bridge::BridgeCounts::default(),
            draining: Vec::new(),
        }
    }

    /// How Opus streams get their audio bridge (to AAC, for the viewers that cannot take
    /// Opus); without one, every viewer gets the Opus.
    pub fn set_bridge_factory(&mut self, f: bridge::BridgeFactory) {
        self.bridge_factory = Some(f);
    }

    /// The AAC frames the streams' audio bridges made since the last call, fanned out to
    /// their viewers like a publisher's frames (call when the bridges' workers woke the loop).
    pub fn poll_bridges(&mut self, now_ms: u64) -> FrameOutcome<'_> {
        self.flush.clear();
        self.too_slow.clear();
        self.too_slow.append(&mut self.late_slow);
        let bridged: Vec<usize> = self
            .streams
            .iter()
            .filter(|(_, s)| s.bridge.is_some())
            .map(|(i, _)| i)
            .collect();
        for i in bridged {
            // Bounded per call by what the bridge's queue holds.
            while let Some(mut frame) = self.streams[i].bridge.as_mut().and_then(|b| b.poll()) {
                frame.bridged = true;
                let stream = &self.streams[i].stream;
                let resume = !stream.seen_video && !frame.config;
                self.fan_out(i, frame, resume, false, now_ms);
            }
        }
        self.poll_draining(now_ms, false);
        FrameOutcome {
            accepted: true,
            flush: &self.flush,
            too_slow: &self.too_slow,
            hold_publisher: false,
        }
    }

    /// True while an ended publish's recorders wait for its audio bridge's tail: the loop then
    /// calls `poll_bridges` on its wake-ups and a short timer.
    pub fn bridges_draining(&self) -> bool {
        !self.draining.is_empty()
    }

    /// Hands the ended publishes' recorders what their bridges made, and ends those whose
    /// bridge finished (or gave up: `DRAIN_GIVE_UP_MS`; `all`, at shutdown, ends every one).
    fn poll_draining(&mut self, now_ms: u64, all: bool) {
        let mut k = 0;
        while k < self.draining.len() {
            let d = &mut self.draining[k];
            let since = *d.since_ms.get_or_insert(now_ms);
            // Asked before taking the frames: once finished, the queue holds the whole tail.
            let done = d.bridge.finished();
            while let Some(mut frame) = d.bridge.poll() {
                frame.bridged = true;
                for r in &mut d.readers {
                    r.deliver(&frame);
                }
            }
            if !(done || all || now_ms.saturating_sub(since) >= DRAIN_GIVE_UP_MS) {
                k += 1;
                continue;
            }
            let d = self.draining.swap_remove(k);
            if !done {
                log::warn!(
                    "{}: the audio bridge did not hand over its last AAC in time; the recordings end without it",
                    d.key
                );
            }
            self.bridges.add(d.bridge.as_ref());
            for r in d.readers {
                self.reader_frames_dropped += r.frames_dropped();
            }
        }
    }

    /// Shutdown: waits (at most `DRAIN_GIVE_UP_MS`) for the ended publishes' bridges to hand
    /// over their tails, then ends their recorders. Called before the recorders stop.
    pub fn finish_draining(&mut self) {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(DRAIN_GIVE_UP_MS);
        while self.draining.iter().any(|d| !d.bridge.finished())
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.poll_draining(0, true);
    }

    /// An ending publish session's bridge and recorders: when the bridge can be asked to
    /// finish, they wait in `draining` for its tail; otherwise the bridge ends now (the
    /// recorders are ended by the caller).
    fn drain_bridge(&mut self, i: usize) {
        let slot = &mut self.streams[i];
        let Some(mut b) = slot.bridge.take() else {
            return;
        };
        if slot.readers.is_empty() || !b.finish() {
            self.bridges.add(b.as_ref());
            return;
        }
        self.draining.push(Draining {
            key: slot.stream.key.clone(),
            bridge: b,
            readers: std::mem::take(&mut slot.readers),
            since_ms: None,
        });
    }

    /// The slot of `key`, created empty when there is none.
    fn slot_for(&mut self, key: &StreamKey) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let i = self.streams.insert(Slot {
            stream: Stream::new(key.clone(), self.config.cache_limits()),
            readers: Vec::new(),
            bridge: None,
            generation,
        });
        self.index.insert(key.clone(), i);
        i
    }

    fn stream_mut(&mut self, key: &StreamKey) -> Option<&mut Stream> {
        let &i = self.index.get(key)?;
        self.streams.get_mut(i).map(|s| &mut s.stream)
    }

    fn stream(&self, key: &StreamKey) -> Option<&Stream> {
        let &i = self.index.get(key)?;
        self.streams.get(i).map(|s| &s.stream)
    }

    fn slot(&mut self, h: StreamHandle) -> Option<&mut Slot> {
        self.streams
            .get_mut(h.index)
            .filter(|s| s.generation == h.generation)
    }

    fn remove_slot(&mut self, i: usize) -> Slot {
        let mut slot = self.streams.remove(i);
        self.index.remove(&slot.stream.key);
        slot.end_readers(&mut self.reader_frames_dropped);
        slot
    }

    /// The handle of `key`'s stream, if it exists (tests, and callers that only know the key).
    pub fn handle(&self, key: &StreamKey) -> Option<StreamHandle> {
        let &i = self.index.get(key)?;
        let generation = self.streams.get(i)?.generation;
        Some(StreamHandle {
            index: i,
            generation,
        })
    }

    /// The key of a handle's stream, for logs.
    pub fn key(&self, h: StreamHandle) -> Option<&StreamKey> {
        self.streams
            .get(h.index)
            .filter(|s| s.generation == h.generation)
            .map(|s| &s.stream.key)
    }

    /// Attaches a reader that is not a player (a recorder) to the live stream of `h`: it gets
    /// every frame after the players do, until the publish ends (then it is dropped).
    pub fn add_reader(&mut self, h: StreamHandle, reader: Box<dyn Reader>) {
        if let Some(slot) = self.slot(h) {
            slot.readers.push(reader);
        }
    }

    /// `add_reader` for a reader that joins a live stream (an SRT player): it first gets the
    /// cache (metadata, sequence headers, the GOP from its keyframe), so it starts on a picture.
    /// A reader whose `deliver` says `Gone` is dropped (its player left).
    pub fn add_reader_primed(&mut self, h: StreamHandle, mut reader: Box<dyn Reader>) {
        let Some(slot) = self.slot(h) else {
            return;
        };
        let c = &mut slot.stream.cache;
        // The bridge's AAC header too: a reader that takes the AAC of an Opus stream starts
        // with it (the others ignore bridged frames).
        let headers = [
            &c.meta,
            &c.video_config,
            &c.audio_config,
            &c.bridged_audio_config,
        ];
        for cached in headers.into_iter().flatten() {
            let _ = reader.deliver(&cached.frame);
        }
        for cached in c.gop() {
            let _ = reader.deliver(&cached.frame);
        }
        slot.readers.push(reader);
    }

    /// The connection publishing `h` (None when the publish ended or was taken over).
    pub fn publisher_of(&self, h: StreamHandle) -> Option<usize> {
        let slot = self
            .streams
            .get(h.index)
            .filter(|s| s.generation == h.generation)?;
        slot.stream.publisher.as_ref().map(|p| p.token)
    }

    /// While the publisher of `h` is held back: true once every reader is under its bound
    /// again. A reader whose disk stalled past its bound gives up (it logs why) and is dropped,
    /// which also releases the publisher.
    pub fn readers_ready(&mut self, h: StreamHandle, now_ms: u64) -> bool {
        let mut dropped = 0;
        let Some(slot) = self.slot(h) else {
            return true;
        };
        let mut ready = true;
        slot.readers.retain_mut(|r| match r.poll(now_ms) {
            ReaderState::Ready => true,
            ReaderState::Behind => {
                ready = false;
                true
            }
            ReaderState::Gone => {
                dropped += r.frames_dropped();
                false
            }
        });
        self.reader_frames_dropped += dropped;
        ready
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
        let i = self.slot_for(key);
        let idle_publisher = self.streams[i]
            .stream
            .publisher
            .as_ref()
            .is_some_and(|old| now_ms.saturating_sub(old.last_ms) >= self.config.takeover_idle_ms);
        if idle_publisher {
            // The viewers switch sessions below: what they follow of the old one first.
            self.settle_all(i);
        }
        let slot = &mut self.streams[i];
        let handle = StreamHandle {
            index: i,
            generation: slot.generation,
        };
        let stream = &mut slot.stream;
        let mut took_over_from = None;
        if let Some(old) = &stream.publisher {
            if now_ms.saturating_sub(old.last_ms) < self.config.takeover_idle_ms {
                return Err(PublishError::Busy);
            }
            took_over_from = Some(old.token);
            self.closed_bytes_in += old.bytes_in;
            stream.closed_session_bytes_in += old.bytes_in;
            log::info!(
                "{key}: publisher {} idle for {} ms, taken over by {publisher}",
                old.token,
                now_ms.saturating_sub(old.last_ms)
            );
            stream.reset_media();
            // The old session's recordings and bridge end with it (the recordings once the
            // bridge handed over its tail, as at an unpublish); the newcomer opens its own.
            if let Some(mut b) = slot.bridge.take() {
                if !slot.readers.is_empty() && b.finish() {
                    self.draining.push(Draining {
                        key: key.clone(),
                        bridge: b,
                        readers: std::mem::take(&mut slot.readers),
                        since_ms: None,
                    });
                } else {
                    self.bridges.add(b.as_ref());
                }
            }
            for r in slot.readers.drain(..) {
                self.reader_frames_dropped += r.frames_dropped();
            }
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
                    join_pushed(stream, v, id);
                }
            }
        }
        Ok(PublishOk {
            handle,
            took_over_from,
            waiting_viewers,
        })
    }

    /// Ends the publish of `key` by `publisher` (ignored for anyone else, e.g. a publisher
    /// already taken over). Every viewer of the stream is ended with `Unpublished` and
    /// detached, and returned: the server sends each its end marker, flushes, closes, and
    /// calls `remove_viewer`. The stream and its cache are gone.
    pub fn unpublish(&mut self, h: StreamHandle, publisher: usize) -> Vec<ViewerId> {
        let Some(slot) = self.slot(h) else {
            return Vec::new();
        };
        if slot.stream.publisher.as_ref().map(|p| p.token) != Some(publisher) {
            return Vec::new();
        }
        // The logs go with the stream: every follower gets what it has not had yet.
        self.settle_all(h.index);
        self.drain_bridge(h.index);
        let slot = self.remove_slot(h.index);
        let stream = slot.stream;
        self.late_slow.retain(|id| !stream.viewers.contains(id));
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

    /// A frame from `publisher` on `key`: normalises it (the stream's ingest normaliser: stream
    /// time, discontinuity, player timestamp, metadata), updates the cache, appends the frame's
    /// packets once per form to the log its edge viewers follow (listing those that were idle
    /// for a flush) and to the queue of every other playing viewer under the slow-viewer
    /// policy, and starts viewers that were waiting for it. Allocation per frame is per form,
    /// never per viewer, and so is the work for viewers at the live edge.
    pub fn frame(
        &mut self,
        h: StreamHandle,
        publisher: usize,
        frame: Frame,
        now_ms: u64,
    ) -> FrameOutcome<'_> {
        self.flush.clear();
        self.too_slow.clear();
        self.too_slow.append(&mut self.late_slow);
        let (accepted, hold_publisher) = self.frame_inner(h, publisher, frame, now_ms);
        FrameOutcome {
            accepted,
            flush: &self.flush,
            too_slow: &self.too_slow,
            hold_publisher,
        }
    }

    /// (accepted, hold the publisher).
    fn frame_inner(
        &mut self,
        h: StreamHandle,
        publisher: usize,
        mut frame: Frame,
        now_ms: u64,
    ) -> (bool, bool) {
        let Some(slot) = self
            .streams
            .get_mut(h.index)
            .filter(|s| s.generation == h.generation)
        else {
            return (false, false);
        };
        let stream = &mut slot.stream;
        let key = &stream.key;
        let Some(p) = stream.publisher.as_mut().filter(|p| p.token == publisher) else {
            return (false, false);
        };
        p.last_ms = now_ms;
        p.bytes_in += frame.data.len() as u64;
        p.frames_in += 1;
        if frame.track == Track::Meta && frame.data.len() > MAX_METADATA_BYTES {
            // Cached as a header and sent to every joiner: a publisher cannot make that big.
            if self.metadata_dropped == 0 {
                log::warn!(
                    "{key}: a script message of {} bytes dropped (the cap is {MAX_METADATA_BYTES})",
                    frame.data.len()
                );
            }
            self.metadata_dropped += 1;
            return (true, false);
        }

        // The one ingest normaliser: stream time, discontinuity, the timestamp players get, and
        // `onMetaData` without `@setDataFrame`.
        stream.clock.normalise(&mut frame);
        let mut is_metadata = false;
        match frame.track {
            Track::Meta => {
                if let Some(body) = meta::on_metadata(&frame.data) {
                    stream.meta = MetaInfo::parse(&body);
                    frame.data = body;
                    is_metadata = true;
                }
            }
            // The stream's codecs are those of the default track (another track of a
            // multitrack stream names no codec of its own in `Frame::codec`).
            Track::Video => {
                stream.seen_video = true;
                if frame.track_id == 0 {
                    stream.video_codec = Some(frame.codec);
                }
                stream.seen_media |= !frame.config;
            }
            Track::Audio => {
                stream.seen_audio = true;
                if frame.track_id == 0 {
                    stream.audio_codec = Some(frame.codec);
                }
                stream.seen_media |= !frame.config;
            }
        }
        // An Opus stream's audio goes to its bridge too (started with the first OpusHead);
        // another codec on the default track ends the bridge.
        if frame.track == Track::Audio && frame.track_id == 0 {
            if frame.codec != crate::media::Codec::Opus {
                if let Some(b) = slot.bridge.take() {
                    self.bridges.add(b.as_ref());
                }
            } else if frame.config && slot.bridge.is_none() {
                slot.bridge = self.bridge_factory.as_mut().and_then(|f| f(&stream.key));
                self.bridges.started += u64::from(slot.bridge.is_some());
            }
            stream.tracks.bridged = slot.bridge.is_some();
            if let Some(b) = &mut slot.bridge {
                b.push(&frame);
            }
        }
        stream.health.on_frame(&frame, now_ms);
        if let Some((id, _)) = frame.other_track_config() {
            stream.tracks.add(frame.track, id);
        }
        let resume = match frame.track {
            Track::Video => frame.key && !frame.config,
            Track::Audio => !stream.seen_video && !frame.config,
            Track::Meta => false,
        };
        let hold = self.fan_out(h.index, frame, resume, is_metadata, now_ms);
        (true, hold)
    }

    /// A normalised frame (a publisher's, or its bridge's AAC) to the stream's viewers, readers
    /// and cache, and the waiting viewers started. True when a reader asks to hold the
    /// publisher. Readers get bridged frames too (`Frame::bridged`: each decides; the
    /// recorders, LL-HLS and SRT players take the AAC, `bridge::PreferAac`).
    fn fan_out(
        &mut self,
        index: usize,
        frame: Frame,
        resume: bool,
        is_metadata: bool,
        now_ms: u64,
    ) -> bool {
        let slot = &mut self.streams[index];
        let stream = &mut slot.stream;
        let key = &stream.key;
        let time = frame.time;

        // Serialise once per form in use.
        stream.scratch.clear();
        let mut memo = Vec::with_capacity(stream.forms.len());
        for (&(form, users), arena) in stream.forms.iter().zip(stream.arenas.iter_mut()) {
            if users == 0 {
                stream.scratch.push(None);
                continue;
            }
            let packet =
                Packet::new_in(arena, form, &frame, &stream.tracks, time, resume).map(Arc::new);
            memo.push((form, packet.clone()));
            stream.scratch.push(packet);
        }

        // Fan out: once per form to the viewers at the live edge (their logs), then to each
        // viewer that is not (behind, paused, or not drained since it was touched).
        for (log, packet) in stream.logs.iter_mut().zip(&stream.scratch) {
            if let Some(packet) = packet {
                log.append(packet, &mut self.flush);
            }
        }
        for &id in &stream.pushed {
            let v = &mut self.viewers[id];
            if v.state != ViewerState::Live {
                continue;
            }
            let Some(packet) = &stream.scratch[v.form_idx] else {
                continue;
            };
            let was_empty = v.queue.is_empty();
            match v.deliver(packet) {
                Some(Verdict::Ok) if was_empty && !v.queue.is_empty() => self.flush.push(id),
                None | Some(Verdict::Ok) => {}
                Some(Verdict::TooSlow(reason)) => {
                    log::info!(
                        "{key}: viewer {} ({:?}) too slow, disconnecting: {reason}",
                        v.token,
                        v.form
                    );
                    v.ended = Some(ViewerEnd::TooSlow);
                    self.slow_disconnects += 1;
                    stream.slow_disconnects += 1;
                    self.too_slow.push(id);
                }
            }
        }

        // Then to the readers (recorders), in the same order the players got it.
        let mut hold = false;
        let mut gone = false;
        for r in &mut slot.readers {
            match r.deliver(&frame) {
                ReaderState::Behind => hold = true,
                ReaderState::Gone => gone = true,
                ReaderState::Ready => {}
            }
        }
        if gone {
            let mut dropped = 0;
            slot.readers.retain_mut(|r| {
                let keep = r.poll(now_ms) != ReaderState::Gone;
                if !keep {
                    dropped += r.frames_dropped();
                }
                keep
            });
            self.reader_frames_dropped += dropped;
        }

        let stored = if frame.track == Track::Meta && !is_metadata {
            false
        } else {
            stream.cache.push(Cached::new(frame, time, resume, memo))
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
                join_pushed(stream, v, id);
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
        hold
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
        let i = self.slot_for(key);
        let stream = &mut self.streams[i].stream;
        let mut v = Viewer::new(
            key.clone(),
            form,
            token,
            ViewerQueue::new(self.config.queue_limits()),
            now_ms,
        );
        v.form_idx = stream.add_form(form);
        v.stream = i;
        v.pos = stream.viewers.len();
        let id = self.viewers.insert(v);
        stream.viewers.push(id);
        (id, stream.is_live())
    }

    /// The publisher of `key` restarted its media without leaving (a relay's upstream came
    /// back): drop the cached GOP so joiners never start on the previous session's pictures.
    pub fn restart_gop(&mut self, key: &StreamKey) {
        if let Some(stream) = self.stream_mut(key) {
            stream.cache.restart_gop();
        }
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
        let Some(stream) = self
            .index
            .get(&v.key)
            .and_then(|&i| self.streams.get_mut(i))
            .map(|s| &mut s.stream)
        else {
            return;
        };
        if stream.is_live() && stream.prime(v) {
            join_pushed(stream, v, id);
        } else {
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
        if !self.late_slow.is_empty() {
            self.late_slow.retain(|&l| l != id);
        }
        let stats = v.queue.stats;
        self.closed.bytes_sent += stats.bytes_sent;
        self.closed.frames_dropped += stats.frames_dropped;
        self.closed.bytes_dropped += stats.bytes_dropped;
        self.closed.skips += stats.skips;
        if v.pos == usize::MAX {
            return;
        }
        let Some(&i) = self.index.get(&v.key) else {
            return;
        };
        let stream = &mut self.streams[i].stream;
        if v.state == ViewerState::Live {
            match v.follow {
                Some(cursor) => {
                    let log = &mut stream.logs[v.form_idx];
                    if cursor == log.head() {
                        list_remove(&mut log.idle, &mut self.viewers, v.list_pos);
                    } else {
                        log.unpend();
                    }
                }
                None => list_remove(&mut stream.pushed, &mut self.viewers, v.list_pos),
            }
        }
        stream.viewers.swap_remove(v.pos);
        if let Some(&moved) = stream.viewers.get(v.pos) {
            self.viewers[moved].pos = v.pos;
        }
        stream.forms[v.form_idx].1 -= 1;
        if v.state == ViewerState::Waiting {
            stream.waiting -= 1;
        }
        stream.bytes_out_closed += stats.bytes_sent;
        stream.closed_skips += stats.skips;
        stream.closed_frames_dropped += stats.frames_dropped;
        if !stream.is_live() && stream.viewers.is_empty() {
            self.remove_slot(i);
        }
    }

    /// Viewers the hub has not ended (at shutdown, each gets its end marker).
    pub fn viewer_ids(&self) -> Vec<ViewerId> {
        self.viewers
            .iter()
            .filter(|(_, v)| v.ended.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    /// A viewer, to write its queue or queue bytes for it. A viewer that follows its form's log
    /// is settled first (the packets it has not had go into its queue), so the queue is
    /// exactly what per-packet pushes would have made it.
    pub fn viewer(&mut self, id: ViewerId) -> Option<&mut Viewer> {
        self.settle_id(id);
        self.viewers.get_mut(id)
    }

    /// The server wrote all that `id` had queued: while nothing else touches it, it follows
    /// its form's log instead of getting each packet pushed (see `stream::FormLog`). Paused,
    /// ended and detached viewers, and those with bytes left, stay as they are.
    pub fn follow(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get(id) else {
            return;
        };
        if v.follow.is_some()
            || v.state != ViewerState::Live
            || v.ended.is_some()
            || v.paused
            || v.pos == usize::MAX
            || !v.queue.is_empty()
        {
            return;
        }
        let (form_idx, pos) = (v.form_idx, v.list_pos);
        let Some(slot) = self.streams.get_mut(v.stream) else {
            return;
        };
        let stream = &mut slot.stream;
        list_remove(&mut stream.pushed, &mut self.viewers, pos);
        let log = &mut stream.logs[form_idx];
        let v = &mut self.viewers[id];
        v.follow = Some(log.head());
        v.list_pos = log.idle.len();
        log.idle.push(id);
    }

    /// True when `id` follows its form's log (tests, stats).
    pub fn is_following(&self, id: ViewerId) -> bool {
        self.viewers.get(id).is_some_and(|v| v.follow.is_some())
    }

    /// Settles `id` if it follows a log (see `settle`); a hard bound crossed on the way ends
    /// it, reported with the next frame's `too_slow`.
    fn settle_id(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get(id) else {
            return;
        };
        if v.follow.is_none() {
            return;
        }
        let Some(slot) = self.streams.get_mut(v.stream) else {
            return;
        };
        let stream = &mut slot.stream;
        if let Some(reason) = settle(stream, &mut self.viewers, id) {
            let v = &mut self.viewers[id];
            log::info!(
                "{}: viewer {} ({:?}) too slow, disconnecting: {reason}",
                stream.key,
                v.token,
                v.form
            );
            v.ended = Some(ViewerEnd::TooSlow);
            self.slow_disconnects += 1;
            stream.slow_disconnects += 1;
            self.late_slow.push(id);
        }
    }

    /// Settles every follower of the stream in slot `i` (before its session changes or ends).
    fn settle_all(&mut self, i: usize) {
        let n = self.streams[i].stream.viewers.len();
        for k in 0..n {
            let id = self.streams[i].stream.viewers[k];
            self.settle_id(id);
        }
    }

    pub fn viewer_ref(&self, id: ViewerId) -> Option<&Viewer> {
        self.viewers.get(id)
    }

    /// RTMP pause: no media while paused; on resume the metadata and sequence headers are
    /// sent again and the viewer waits for the next keyframe.
    pub fn set_paused(&mut self, id: ViewerId, paused: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = v.paused && !paused;
        v.paused = paused;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, true, true, true);
                v.queue.reset_lag();
                v.queue.wait_for_key();
            });
        }
    }

    /// RTMP receiveAudio: on re-enable, the audio sequence header again.
    pub fn set_receive_audio(&mut self, id: ViewerId, on: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.audio_on && on;
        v.audio_on = on;
        if resumed {
            self.on_resume(id, |stream, v| stream.push_headers(v, false, false, true));
        }
    }

    /// RTMP receiveVideo: on re-enable, the video sequence header again, then video from the
    /// next keyframe.
    pub fn set_receive_video(&mut self, id: ViewerId, on: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.video_on && on;
        v.video_on = on;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, false, true, false);
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
        let stream = self
            .index
            .get(&v.key)
            .and_then(|&i| self.streams.get_mut(i));
        if let Some(slot) = stream {
            resume(&mut slot.stream, v);
        }
    }

    pub fn is_live(&self, key: &StreamKey) -> bool {
        self.stream(key).is_some_and(Stream::is_live)
    }

    /// Players of `key` now, waiting ones included (for `--max-players-per-stream`).
    pub fn players(&self, key: &StreamKey) -> usize {
        self.stream(key).map_or(0, |s| s.viewers.len())
    }

    /// Streams with a publisher now (for `--max-streams`).
    pub fn live_streams(&self) -> usize {
        self.streams
            .iter()
            .filter(|(_, s)| s.stream.is_live())
            .count()
    }

    /// What a joiner outside the player path (a WHEP viewer) starts from: the cached sequence
    /// headers, then the cached GOP, oldest first (empty when the stream is not known).
    pub fn cached_frames(&self, key: &StreamKey) -> Vec<Frame> {
        let Some(s) = self.stream(key) else {
            return Vec::new();
        };
        let c = &s.cache;
        let headers = [&c.video_config, &c.audio_config];
        let headers = headers.into_iter().flatten().map(|c| c.frame.clone());
        headers.chain(c.gop_frames().cloned()).collect()
    }

    /// The latest `onMetaData` frame of a live stream, as relayed.
    pub fn metadata(&self, key: &StreamKey) -> Option<&Frame> {
        self.stream(key)?.cache.meta.as_ref().map(|c| &c.frame)
    }
}

/// Adds a viewer that starts playing to the pushed list.
fn join_pushed(stream: &mut Stream, v: &mut Viewer, id: ViewerId) {
    v.list_pos = stream.pushed.len();
    stream.pushed.push(id);
}

/// Removes the entry at `pos` of a list whose viewers keep their index in `list_pos`.
fn list_remove(list: &mut Vec<ViewerId>, viewers: &mut Slab<Viewer>, pos: usize) {
    list.swap_remove(pos);
    if let Some(&moved) = list.get(pos) {
        viewers[moved].list_pos = pos;
    }
}

/// Takes follower `id` off its form's log: the packets from its cursor on go into its queue
/// in order, through `Viewer::deliver` (filters and slow-viewer policy) exactly as per-packet
/// pushes would have, and it joins the pushed list. Returns the hard bound it crossed, if any
/// (also when the log dropped packets it had not had: see `stream::LOG_MAX`).
fn settle(stream: &mut Stream, viewers: &mut Slab<Viewer>, id: ViewerId) -> Option<SlowReason> {
    let v = &mut viewers[id];
    let cursor = v.follow.take()?;
    let log = &mut stream.logs[v.form_idx];
    let mut slow = None;
    if cursor == log.head() {
        let pos = v.list_pos;
        list_remove(&mut log.idle, viewers, pos);
    } else {
        if cursor < log.base {
            let span = match (log.packets.front(), log.packets.back()) {
                (Some(a), Some(b)) => b.time.saturating_sub(a.time),
                _ => 0,
            };
            slow = Some(SlowReason::Lag(span));
        } else {
            for packet in log.packets.range((cursor - log.base) as usize..) {
                if let Some(Verdict::TooSlow(reason)) = v.deliver(packet) {
                    slow = Some(reason);
                    break;
                }
            }
        }
        log.unpend();
    }
    join_pushed(stream, &mut viewers[id], id);
    slow
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::{amf0, Value};
    use crate::media::frame::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
    use crate::media::{enhanced, Codec};
    use bytes::Bytes;

    const FLV: OutputForm = OutputForm::HttpFlv {
        chunked: false,
        track: 0,
        aac: false,
    };
    const RTMP: OutputForm = OutputForm::Rtmp {
        chunk_size: 4096,
        stream_id: 1,
        aac: false,
    };

    fn key() -> StreamKey {
        StreamKey::new("live", "s").unwrap()
    }

    fn frame(tag: u8, dts: u32, data: Vec<u8>) -> Frame {
        Frame::parse(tag, dts, Bytes::from(data)).unwrap()
    }
    fn meta(fields: Vec<(&str, Value)>) -> Frame {
        let mut body = amf0::encode_all(&[Value::string("@setDataFrame")]);
        body.extend(amf0::encode_all(&[
            Value::string("onMetaData"),
            Value::EcmaArray(fields.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        ]));
        frame(TAG_SCRIPT, 0, body)
    }
    fn av_meta() -> Frame {
        meta(vec![
            ("videocodecid", Value::Number(7.0)),
            ("audiocodecid", Value::Number(10.0)),
            ("width", Value::Number(640.0)),
        ])
    }
    fn vseq(t: u32) -> Frame {
        frame(TAG_VIDEO, t, vec![0x17, 0, 0, 0, 0, 1, 0x64])
    }
    fn aseq(t: u32) -> Frame {
        frame(TAG_AUDIO, t, vec![0xaf, 0, 0x12, 0x10])
    }
    fn vkey(t: u32) -> Frame {
        frame(TAG_VIDEO, t, vec![0x17, 1, 0, 0, 0, 0xaa, (t / 40) as u8])
    }
    fn vinter(t: u32) -> Frame {
        frame(TAG_VIDEO, t, vec![0x27, 1, 0, 0, 0, 0xbb, (t / 40) as u8])
    }
    fn audio(t: u32) -> Frame {
        frame(TAG_AUDIO, t, vec![0xaf, 1, 0xcc, (t / 23) as u8])
    }

    /// Everything queued, as the server would write it.
    fn drain(hub: &mut Hub, id: ViewerId) -> Vec<u8> {
        let q = &mut hub.viewer(id).unwrap().queue;
        let mut out = Vec::new();
        while q.write_to(&mut out).unwrap() > 0 {}
        out
    }

    #[derive(Debug, PartialEq)]
    struct Tag {
        tag: u8,
        ts: u32,
        body: Vec<u8>,
    }

    /// Splits plain FLV bytes into (file header flags, tags), checking every PreviousTagSize.
    fn parse_flv(mut b: &[u8], expect_header: bool) -> (Option<u8>, Vec<Tag>) {
        let mut flags = None;
        if expect_header {
            assert_eq!(&b[..3], b"FLV");
            flags = Some(b[4]);
            b = &b[13..];
        }
        let mut tags = Vec::new();
        while !b.is_empty() {
            let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
            let ts = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
            let body = b[11..11 + len].to_vec();
            let pts = u32::from_be_bytes(b[11 + len..15 + len].try_into().unwrap());
            assert_eq!(pts as usize, len + 11);
            tags.push(Tag {
                tag: b[0],
                ts,
                body,
            });
            b = &b[15 + len..];
        }
        (flags, tags)
    }

    fn tag_of(f: &Frame) -> Tag {
        Tag {
            tag: f.tag_type(),
            ts: f.dts,
            body: meta::on_metadata(&f.data)
                .unwrap_or_else(|| f.data.clone())
                .to_vec(),
        }
    }

    fn send(hub: &mut Hub, f: Frame) -> (Vec<ViewerId>, Vec<ViewerId>) {
        let out = hub.frame(hub.handle(&key()).unwrap(), 1, f, 0);
        assert!(out.accepted);
        (out.flush.to_vec(), out.too_slow.to_vec())
    }

    /// (dts, data) of every frame a test reader got.
    type Got = std::rc::Rc<std::cell::RefCell<Vec<(u32, Vec<u8>)>>>;
    type Flag = std::rc::Rc<std::cell::Cell<bool>>;

    /// A reader that records what it got and when it was dropped.
    struct Rec {
        got: Got,
        dropped: Flag,
        behind_after: usize,
    }

    impl Reader for Rec {
        fn deliver(&mut self, f: &Frame) -> ReaderState {
            self.got.borrow_mut().push((f.dts, f.data.to_vec()));
            if self.got.borrow().len() > self.behind_after {
                ReaderState::Behind
            } else {
                ReaderState::Ready
            }
        }
        fn poll(&mut self, _: u64) -> ReaderState {
            ReaderState::Ready
        }
        fn frames_dropped(&self) -> u64 {
            3
        }
    }

    impl Drop for Rec {
        fn drop(&mut self) {
            self.dropped.set(true);
        }
    }

    fn rec(behind_after: usize) -> (Rec, Got, Flag) {
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
        let r = Rec {
            got: got.clone(),
            dropped: dropped.clone(),
            behind_after,
        };
        (r, got, dropped)
    }

    /// A reader that reports one recorder, as the recording pool does.
    struct OneRecorder;

    impl Reader for OneRecorder {
        fn deliver(&mut self, _: &Frame) -> ReaderState {
            ReaderState::Ready
        }
        fn poll(&mut self, _: u64) -> ReaderState {
            ReaderState::Ready
        }
        fn frames_dropped(&self) -> u64 {
            0
        }
        fn recorders(&self) -> Vec<(&'static str, crate::stats::health::RecorderState)> {
            vec![(
                "flv",
                crate::stats::health::RecorderState::Writing { bytes: 99 },
            )]
        }
    }

    #[test]
    fn sampled_health_and_history_describe_the_stream() {
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        hub.add_reader(h, Box::new(OneRecorder));
        let (_viewer, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.frame(h, 1, av_meta(), 0);
        hub.frame(h, 1, vseq(0), 0);
        hub.frame(h, 1, aseq(0), 0);
        // A keyframe every 10 s at 25 fps, sent in real time, sampled once a second.
        for t in (0..=10_000u32).step_by(40) {
            let f = if t % 10_000 == 0 { vkey(t) } else { vinter(t) };
            hub.frame(h, 1, f, u64::from(t));
            hub.frame(h, 1, audio(t), u64::from(t));
            if t % 1000 == 0 {
                hub.sample_stats(u64::from(t));
            }
        }
        let j = crate::codec::json::to_string(&hub.health_report(&key(), 10_000).unwrap());
        assert!(j.contains("\"keyframe_interval_ms\":10000"), "{j}");
        assert!(j.contains("\"level\":\"red\""), "{j}");
        assert!(j.contains("\"name\":\"flv\""), "{j}");
        assert!(j.contains("\"bytes\":99"), "{j}");
        assert!(hub
            .health_report(&StreamKey::new("live", "none").unwrap(), 0)
            .is_none());
        let server = crate::stats::history::ServerHistory::new(5_000);
        let hist = hub.history_json(10_000, &server);
        assert!(hist.contains("\"stream\":\"s\""), "{hist}");
        assert!(hist.contains("\"ago_s\":[5,0]"), "{hist}");
        // The viewer is counted per protocol in every sample.
        assert!(hist.contains("\"http_flv\":[1,1]"), "{hist}");
    }

    #[test]
    fn metadata_over_the_cap_is_dropped_and_counted() {
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        let (r, got, _) = rec(100);
        hub.add_reader(h, Box::new(r));
        let big = meta(vec![(
            "blob",
            Value::String("x".repeat(MAX_METADATA_BYTES)),
        )]);
        assert!(big.data.len() > MAX_METADATA_BYTES);
        hub.frame(h, 1, big, 0);
        hub.frame(h, 1, av_meta(), 0);
        assert_eq!(
            got.borrow().len(),
            1,
            "only the small metadata went through"
        );
        assert_eq!(hub.totals().metadata_dropped, 1);
        assert_eq!(hub.stream(&key()).unwrap().meta.width, Some(640.0));
    }

    #[test]
    fn readers_get_every_frame_in_order_and_end_with_their_session() {
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        let (r, got, dropped) = rec(5);
        hub.add_reader(h, Box::new(r));
        let frames = [av_meta(), vseq(0), aseq(0), vkey(0), audio(23)];
        for f in &frames {
            assert!(!hub.frame(h, 1, f.clone(), 0).hold_publisher);
        }
        // Over its bound the reader asks for the publisher to be held.
        assert!(hub.frame(h, 1, vinter(40), 40).hold_publisher);
        let got = got.borrow();
        assert_eq!(got.len(), 6);
        // The hub's normalised metadata (no @setDataFrame), then the media unchanged.
        assert_eq!(
            got[0].1,
            crate::media::meta::on_metadata(&frames[0].data)
                .unwrap()
                .to_vec()
        );
        for (g, f) in got[1..].iter().zip(&frames[1..]) {
            assert_eq!(g, &(f.dts, f.data.to_vec()));
        }
        // A publisher taking over an idle one starts with no readers: the old session's end.
        assert!(!dropped.get());
        let h2 = hub.publish(&key(), 2, 60_000).unwrap().handle;
        assert!(dropped.get());
        assert_eq!(h2, h, "the stream (and its players) stay");
        assert_eq!(hub.totals().reader_frames_dropped, 3);
        let (r, _, dropped) = rec(100);
        hub.add_reader(h2, Box::new(r));
        hub.unpublish(h2, 2);
        assert!(dropped.get(), "unpublish drops the readers");
    }

    #[test]
    fn a_primed_reader_starts_from_the_cache_and_is_dropped_when_gone() {
        use std::cell::RefCell;
        use std::rc::Rc;
        /// Frames seen (dts, key, config), and whether its player left.
        type Seen = Rc<RefCell<(Vec<(u32, bool, bool)>, bool)>>;
        struct Late(Seen);
        impl Reader for Late {
            fn deliver(&mut self, f: &Frame) -> ReaderState {
                let mut s = self.0.borrow_mut();
                if s.1 {
                    return ReaderState::Gone;
                }
                s.0.push((f.dts, f.key, f.config));
                ReaderState::Ready
            }
            fn poll(&mut self, _now_ms: u64) -> ReaderState {
                if self.0.borrow().1 {
                    ReaderState::Gone
                } else {
                    ReaderState::Ready
                }
            }
            fn frames_dropped(&self) -> u64 {
                0
            }
        }
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        assert_eq!(hub.publisher_of(h), Some(1));
        for f in [
            av_meta(),
            vseq(0),
            aseq(0),
            vinter(0),
            vkey(40),
            audio(63),
            vinter(80),
        ] {
            hub.frame(h, 1, f, 0);
        }
        let seen: Seen = Rc::default();
        hub.add_reader_primed(h, Box::new(Late(seen.clone())));
        {
            let s = seen.borrow();
            // Metadata, both sequence headers, then the GOP from its keyframe (not the inter
            // frame before it).
            assert_eq!(s.0.len(), 6, "{:?}", s.0);
            assert!(s.0[1].2 && s.0[2].2, "headers first");
            assert_eq!(s.0[3], (40, true, false), "the GOP's keyframe");
            assert_eq!(s.0[5].0, 80);
        }
        hub.frame(h, 1, vinter(120), 120);
        assert_eq!(seen.borrow().0.len(), 7, "then live frames");
        seen.borrow_mut().1 = true;
        hub.frame(h, 1, vinter(160), 160);
        assert!(
            hub.slot(h).unwrap().readers.is_empty(),
            "a gone reader is dropped"
        );
        hub.unpublish(h, 1);
        assert_eq!(hub.publisher_of(h), None);
    }

    #[test]
    fn a_handle_of_an_ended_session_finds_nothing() {
        let mut hub = Hub::new(HubConfig::default());
        let old = hub.publish(&key(), 1, 0).unwrap().handle;
        hub.unpublish(old, 1);
        let new = hub.publish(&key(), 1, 10).unwrap().handle;
        assert_ne!(old, new);
        // Same key, same publisher token, same slab slot: the generation tells them apart.
        assert!(!hub.frame(old, 1, vseq(0), 20).accepted);
        assert!(hub.unpublish(old, 1).is_empty());
        assert!(hub.is_live(&key()));
        assert!(hub.frame(new, 1, vseq(0), 20).accepted);
        assert_eq!(hub.key(new), Some(&key()));
        assert_eq!(hub.key(old), None);
    }

    #[test]
    fn late_joiner_gets_header_meta_configs_gop_in_order() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let frames = [
            av_meta(),
            vseq(0),
            aseq(0),
            vkey(0),
            audio(0),
            vinter(40),
            audio(23),
            vkey(80),
            audio(46),
            vinter(120),
        ];
        for f in frames.iter().cloned() {
            send(&mut hub, f);
        }
        let (id, live) = hub.add_viewer(&key(), FLV, 7, 0);
        assert!(live);
        hub.start_viewer(id);
        let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
        assert_eq!(flags, Some(5));
        let want: Vec<Tag> = [0, 1, 2, 7, 8, 9]
            .iter()
            .map(|&i| tag_of(&frames[i]))
            .collect();
        assert_eq!(tags, want);
        assert!(tags[0].body.starts_with(b"\x02\x00\x0aonMetaData"));
        // Then live frames follow, once.
        let (flush, _) = send(&mut hub, audio(69));
        assert_eq!(flush, vec![id]);
        let (_, tags) = parse_flv(&drain(&mut hub, id), false);
        assert_eq!(tags, vec![tag_of(&audio(69))]);
        let st = hub.streams().next().unwrap();
        assert_eq!(st.viewers_http_flv, 1);
        assert_eq!(st.meta.width, Some(640.0));
        assert_eq!(st.video_codec, Some(Codec::Avc));
        assert_eq!(st.frames_in, 11);
        assert!(st.bytes_out > 0);
        assert_eq!(hub.totals().bytes_out, st.bytes_out);
    }

    /// Enhanced RTMP v2 multitrack: the second audio track's sequence header (OneTrack,
    /// SequenceStart, mp4a, track 1, as FFmpeg 9 writes it) reaches a late RTMP joiner after
    /// the default track's, and a newer one replaces it; FLV viewers get the default track
    /// alone.
    #[test]
    fn late_joiner_gets_every_tracks_sequence_header() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let track1 = |b: &'static [u8]| frame(TAG_AUDIO, 0, b.to_vec());
        let seq1 = track1(b"\x95\x00mp4a\x01\x11\x88\x56\xe5\x00");
        let seq1b = track1(b"\x95\x00mp4a\x01\x12\x10\x56\xe5\x00");
        let frame1 = track1(b"\x95\x01mp4a\x01\x21\x22");
        assert_eq!((seq1.track_id, seq1.config), (1, false));
        let frames = [av_meta(), vseq(0), aseq(0), seq1, seq1b.clone(), vkey(0)];
        for f in frames.iter().cloned() {
            send(&mut hub, f);
        }
        let (rtmp, _) = hub.add_viewer(&key(), RTMP, 7, 0);
        hub.start_viewer(rtmp);
        let got = drain(&mut hub, rtmp);
        // The metadata as the hub relays it (without @setDataFrame), then the headers.
        let mut relayed_meta = frames[0].clone();
        relayed_meta.data = meta::on_metadata(&frames[0].data).unwrap();
        let want: Vec<u8> = [&relayed_meta, &frames[1], &frames[2], &seq1b, &frames[5]]
            .iter()
            .flat_map(|f| {
                Packet::new(RTMP, f, &packet::TrackSet::default(), 0, false)
                    .unwrap()
                    .data
                    .to_vec()
            })
            .collect();
        assert_eq!(got, want);

        let (flv, _) = hub.add_viewer(&key(), FLV, 8, 0);
        hub.start_viewer(flv);
        let (_, tags) = parse_flv(&drain(&mut hub, flv), true);
        let want: Vec<Tag> = [&frames[0], &frames[1], &frames[2], &frames[5]]
            .iter()
            .map(|f| tag_of(f))
            .collect();
        assert_eq!(tags, want);
        // Live: RTMP gets track 1's frame as published; FLV nothing of it.
        let (flush, _) = send(&mut hub, frame1.clone());
        assert_eq!(flush, vec![rtmp]);
        assert!(hub.viewer(flv).unwrap().queue.is_empty());
        assert_eq!(hub.streams().next().unwrap().audio_codec, Some(Codec::Aac));
    }

    /// `?track=N`: an FLV viewer of track 1 gets audio track 1 in plain form (its header and
    /// frames, none of track 0's audio) and the stream's one video track; a viewer of a track
    /// the stream does not have gets the default tracks, like a viewer without `?track`.
    #[test]
    fn flv_viewer_of_track_1_gets_that_audio_track_and_the_one_video_track() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let track1 = |ts: u32, b: &'static [u8]| frame(TAG_AUDIO, ts, b.to_vec());
        let seq1 = track1(0, b"\x95\x00mp4a\x01\x12\x10\x56\xe5\x00");
        let frame1 = track1(40, b"\x95\x01mp4a\x01\x21\x22");
        let plain = |f: &Frame| Frame {
            data: enhanced::single_track(enhanced::Media::Audio, &f.data, 1)
                .unwrap()
                .unwrap(),
            ..f.clone()
        };
        for f in [av_meta(), vseq(0), aseq(0), seq1.clone(), vkey(0)] {
            send(&mut hub, f);
        }
        let form = |track| OutputForm::HttpFlv {
            chunked: false,
            track,
            aac: false,
        };
        let (one, _) = hub.add_viewer(&key(), form(1), 7, 0);
        let (absent, _) = hub.add_viewer(&key(), form(5), 8, 0);
        let (default, _) = hub.add_viewer(&key(), FLV, 9, 0);
        for id in [one, absent, default] {
            hub.start_viewer(id);
        }
        let (_, tags) = parse_flv(&drain(&mut hub, one), true);
        let want: Vec<Tag> = [av_meta(), vseq(0), plain(&seq1), vkey(0)]
            .iter()
            .map(tag_of)
            .collect();
        assert_eq!(tags, want);
        assert_eq!(tags[2].body[0] >> 4, 9, "a plain Ex audio tag");
        let default_tags = parse_flv(&drain(&mut hub, default), true).1;
        assert_eq!(parse_flv(&drain(&mut hub, absent), true).1, default_tags);
        assert_eq!(default_tags[2], tag_of(&aseq(0)));
        // Live: track 0's audio goes to the default viewers only, track 1's to the track-1 one.
        let (flush, _) = send(&mut hub, audio(20));
        assert_eq!(flush, vec![absent, default]);
        let (flush, _) = send(&mut hub, frame1.clone());
        assert_eq!(flush, vec![one]);
        assert_eq!(
            parse_flv(&drain(&mut hub, one), false).1,
            vec![tag_of(&plain(&frame1))]
        );
        for id in [absent, default] {
            assert_eq!(
                parse_flv(&drain(&mut hub, id), false).1,
                vec![tag_of(&audio(20))]
            );
        }
        let (flush, _) = send(&mut hub, vinter(40));
        assert_eq!(
            flush,
            vec![one, absent, default],
            "video reaches every viewer"
        );
    }

    #[test]
    fn flv_header_flags_for_audio_only_and_video_only() {
        // From metadata that describes the tracks: known before any media.
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, meta(vec![("audiocodecid", Value::Number(10.0))]));
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        assert_eq!(parse_flv(&drain(&mut hub, id), true).0, Some(4));

        // Without metadata: from the tracks seen once a media frame comes.
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, vseq(0));
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        assert!(
            hub.viewer(id).unwrap().queue.is_empty(),
            "tracks not known yet"
        );
        let (flush, _) = send(&mut hub, vkey(0));
        assert_eq!(flush, vec![id]);
        let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
        assert_eq!(flags, Some(1));
        assert_eq!(tags, vec![tag_of(&vseq(0)), tag_of(&vkey(0))]);
        send(&mut hub, vinter(40));
        assert_eq!(
            parse_flv(&drain(&mut hub, id), false).1,
            vec![tag_of(&vinter(40))]
        );
    }

    #[test]
    fn audio_only_joiner_gets_the_last_second() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, aseq(0));
        for i in 0..100 {
            send(&mut hub, audio(i * 23));
        }
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
        assert_eq!(flags, Some(4));
        assert_eq!(tags[0], tag_of(&aseq(0)));
        let first = tags[1].ts;
        assert_eq!(tags.last().unwrap().ts, 99 * 23);
        assert!(99 * 23 - first <= 1000 && 99 * 23 - first > 950);
    }

    #[test]
    fn no_gop_cache_joiner_waits_for_the_next_keyframe() {
        let mut hub = Hub::new(HubConfig {
            gop_cache: false,
            ..HubConfig::default()
        });
        hub.publish(&key(), 1, 0).unwrap();
        for f in [av_meta(), vseq(0), aseq(0), vkey(0), audio(0), vinter(40)] {
            send(&mut hub, f);
        }
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        for f in [audio(23), vinter(80), audio(46), vkey(120), audio(69)] {
            send(&mut hub, f);
        }
        let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
        assert_eq!(flags, Some(5));
        let want: Vec<Tag> = [av_meta(), vseq(0), aseq(0), vkey(120), audio(69)]
            .iter()
            .map(tag_of)
            .collect();
        assert_eq!(tags, want);
        assert_eq!(hub.viewer(id).unwrap().queue.stats.frames_dropped, 0);
    }

    #[test]
    fn waiting_viewers_get_everything_when_the_publisher_starts() {
        let mut hub = Hub::new(HubConfig::default());
        let (flv, live) = hub.add_viewer(&key(), FLV, 7, 0);
        assert!(!live);
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n");
        hub.viewer(flv).unwrap().queue.push_control(head.clone());
        hub.start_viewer(flv);
        assert_eq!(drain(&mut hub, flv), head);
        let (rtmp, _) = hub.add_viewer(&key(), RTMP, 8, 0);
        hub.start_viewer(rtmp);
        assert!(!hub.is_live(&key()));
        let ok = hub.publish(&key(), 1, 0).unwrap();
        assert_eq!(ok.took_over_from, None);
        assert_eq!(ok.waiting_viewers, vec![flv, rtmp]);
        let frames = [av_meta(), vseq(0), aseq(0), vkey(0), audio(0)];
        let mut flushed = Vec::new();
        for f in frames.iter().cloned() {
            flushed.extend(send(&mut hub, f).0);
        }
        assert!(flushed.contains(&flv) && flushed.contains(&rtmp));
        let (flags, tags) = parse_flv(&drain(&mut hub, flv), true);
        assert_eq!(flags, Some(5));
        assert_eq!(tags, frames.iter().map(tag_of).collect::<Vec<_>>());
        assert!(!drain(&mut hub, rtmp).is_empty());
    }

    #[test]
    fn second_publisher_is_busy_and_an_idle_one_is_taken_over() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, vseq(0));
        send(&mut hub, vkey(0));
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        drain(&mut hub, id);
        assert!(
            hub.frame(hub.handle(&key()).unwrap(), 1, vinter(40), 1000)
                .accepted
        );
        assert_eq!(hub.publish(&key(), 2, 5999), Err(PublishError::Busy));
        let ok = hub.publish(&key(), 2, 6000).unwrap();
        assert_eq!(ok.took_over_from, Some(1));
        assert!(ok.waiting_viewers.is_empty());
        // The old publisher is ignored now; the viewer stays and resumes at the new keyframe.
        assert!(
            !hub.frame(hub.handle(&key()).unwrap(), 1, vinter(80), 6001)
                .accepted
        );
        assert!(hub.unpublish(hub.handle(&key()).unwrap(), 1).is_empty());
        assert!(
            hub.frame(hub.handle(&key()).unwrap(), 2, vinter(0), 6002)
                .accepted
        );
        assert!(
            hub.frame(hub.handle(&key()).unwrap(), 2, vseq(0), 6002)
                .accepted
        );
        assert!(
            hub.frame(hub.handle(&key()).unwrap(), 2, vkey(40), 6003)
                .accepted
        );
        let (_, tags) = parse_flv(&drain(&mut hub, id), false);
        assert_eq!(
            tags,
            vec![tag_of(&vinter(40)), tag_of(&vseq(0)), tag_of(&vkey(40))]
        );
    }

    #[test]
    fn unpublish_ends_and_returns_the_viewers() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(a);
        let (b, _) = hub.add_viewer(&key(), RTMP, 8, 0);
        hub.start_viewer(b);
        let mut ended = hub.unpublish(hub.handle(&key()).unwrap(), 1);
        ended.sort();
        assert_eq!(ended, vec![a, b]);
        assert_eq!(hub.viewer(a).unwrap().ended, Some(ViewerEnd::Unpublished));
        assert!(!hub.is_live(&key()));
        assert_eq!(hub.streams().count(), 0);
        hub.remove_viewer(a);
        hub.remove_viewer(b);
        assert_eq!(hub.totals().viewers, 0);
        // The key is free again.
        hub.publish(&key(), 3, 10).unwrap();
    }

    #[test]
    fn slow_viewer_skips_then_is_disconnected_and_others_get_everything() {
        let mut hub = Hub::new(HubConfig {
            queue_soft_ms: 1000,
            queue_hard_ms: 3000,
            ..HubConfig::default()
        });
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, vseq(0));
        let (slow, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(slow);
        let (good, _) = hub.add_viewer(&key(), FLV, 8, 0);
        hub.start_viewer(good);
        drain(&mut hub, good);
        let mut sent = Vec::new();
        let mut slow_tags = Vec::new();
        let mut t = 0;
        let mut disconnected = false;
        let mut good_tags = Vec::new();
        // Keyframe every 400 ms, a frame every 40 ms. The slow viewer writes its FLV header,
        // the sequence header and 5 bytes of the first keyframe's tag, then stops reading.
        while t < 6000 && !disconnected {
            let f = if t % 400 == 0 { vkey(t) } else { vinter(t) };
            sent.push(tag_of(&f));
            let (_, too_slow) = send(&mut hub, f);
            if t == 0 {
                hub.viewer(slow).unwrap().queue.advance(13 + 22 + 5);
            }
            if too_slow == vec![slow] {
                disconnected = true;
                assert_eq!(hub.viewer(slow).unwrap().ended, Some(ViewerEnd::TooSlow));
                // What the slow viewer would still write: the rest of its partly written
                // tag, then only whole GOPs starting at keyframes.
                let bytes = drain(&mut hub, slow);
                let mut first = Vec::new();
                crate::mux::flv::write_tag(&mut first, &vkey(0));
                assert_eq!(&bytes[..first.len() - 5], &first[5..]);
                slow_tags = parse_flv(&bytes[first.len() - 5..], false).1;
            }
            let (_, tags) = parse_flv(&drain(&mut hub, good), t == 0);
            assert_eq!(tags.last(), sent.last());
            good_tags.extend(tags);
            t += 40;
        }
        assert!(disconnected, "the never-reading viewer must be reported");
        // Skips at 1080 and 2240 (span over 1000 ms), resumes at 1200 and 2400; the lag,
        // measured from the frame at 0 it started with, first exceeds 3000 ms at 3040.
        assert_eq!(t - 40, 3040);
        let mut want = vec![tag_of(&vseq(0))];
        want.extend(sent);
        assert_eq!(good_tags, want, "the reading viewer got every frame");
        let stats = hub.viewer(slow).unwrap().queue.stats;
        assert!(stats.skips >= 2 && stats.frames_dropped > 0 && stats.bytes_dropped > 0);
        assert_eq!(hub.viewer(good).unwrap().queue.stats.skips, 0);
        // Remaining queue after the partial tag: from a keyframe on, contiguous frames:
        // never a partial GOP.
        assert_eq!(slow_tags[0].ts, 2400);
        assert_eq!(slow_tags[0].body[0], 0x17);
        for w in slow_tags.windows(2) {
            assert_eq!(w[1].ts, w[0].ts + 40);
        }
        assert_eq!(hub.totals().slow_disconnects, 1);
        // No more media for an ended viewer.
        send(&mut hub, vinter(t));
        assert!(hub.viewer(slow).unwrap().queue.is_empty());
    }

    #[test]
    fn packets_are_shared_by_viewers_of_a_form_and_the_cache() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(a);
        let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
        hub.start_viewer(b);
        let (c, _) = hub.add_viewer(&key(), RTMP, 9, 0);
        hub.start_viewer(c);
        send(&mut hub, vseq(0));
        send(&mut hub, vkey(0));
        // A late joiner of the same form gets the cached packets, not new copies.
        let (d, _) = hub.add_viewer(&key(), FLV, 10, 0);
        hub.start_viewer(d);
        let mut starts = |id: ViewerId| -> Vec<usize> {
            let mut slices = Vec::new();
            hub.viewer(id).unwrap().queue.io_slices(&mut slices, 100);
            slices.iter().map(|s| s.as_ptr() as usize).collect()
        };
        let (sa, sb, sc, sd) = (starts(a), starts(b), starts(c), starts(d));
        // FLV viewers: file header (their own), sequence header, keyframe.
        assert_eq!(sa.len(), 3);
        assert_eq!(sa[1..], sb[1..]);
        assert_eq!(sa[1..], sd[1..]);
        // Another form has packets of its own.
        assert!(sc.iter().all(|p| !sa.contains(p)));
    }

    #[test]
    fn pause_and_receive_video() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(id);
        for f in [vseq(0), aseq(0), vkey(0), audio(0)] {
            send(&mut hub, f);
        }
        drain(&mut hub, id);
        hub.set_paused(id, true);
        send(&mut hub, vinter(40));
        assert!(hub.viewer(id).unwrap().queue.is_empty());
        hub.set_paused(id, false);
        for f in [vinter(80), audio(90), vkey(120)] {
            send(&mut hub, f);
        }
        let (_, tags) = parse_flv(&drain(&mut hub, id), false);
        assert_eq!(
            tags,
            [vseq(0), aseq(0), vkey(120)]
                .iter()
                .map(tag_of)
                .collect::<Vec<_>>()
        );
        hub.set_receive_video(id, false);
        send(&mut hub, vinter(160));
        send(&mut hub, audio(170));
        hub.set_receive_video(id, true);
        send(&mut hub, vinter(200));
        send(&mut hub, audio(210));
        send(&mut hub, vkey(240));
        let (_, tags) = parse_flv(&drain(&mut hub, id), false);
        assert_eq!(
            tags,
            [audio(170), vseq(0), audio(210), vkey(240)]
                .iter()
                .map(tag_of)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_viewer_is_small() {
        // Per-viewer memory beyond the shared packets: the struct, its key and the queue's
        // entries (40 bytes each).
        assert!(
            std::mem::size_of::<Viewer>() <= 400,
            "{}",
            std::mem::size_of::<Viewer>()
        );
    }

    #[test]
    fn removing_viewers_keeps_the_lists_consistent() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        let ids: Vec<_> = (0..5)
            .map(|t| {
                let (id, _) = hub.add_viewer(&key(), FLV, t, 0);
                hub.start_viewer(id);
                id
            })
            .collect();
        send(&mut hub, vseq(0));
        send(&mut hub, vkey(0));
        hub.remove_viewer(ids[1]);
        hub.remove_viewer(ids[0]);
        let (flush, _) = send(&mut hub, vinter(40));
        assert!(flush.is_empty(), "queues were not drained");
        for &id in &ids[2..] {
            let (_, tags) = parse_flv(&drain(&mut hub, id), true);
            assert_eq!(tags.len(), 3);
        }
        let (flush, _) = send(&mut hub, vinter(80));
        let mut flush = flush;
        flush.sort();
        assert_eq!(flush, ids[2..].to_vec());
        assert_eq!(hub.streams().next().unwrap().viewers_http_flv, 3);
        // A stream without publisher disappears with its last viewer.
        hub.unpublish(hub.handle(&key()).unwrap(), 1);
        for &id in &ids[2..] {
            hub.remove_viewer(id);
        }
        let (w, _) = hub.add_viewer(&key(), FLV, 9, 0);
        assert_eq!(hub.streams().count(), 1);
        hub.remove_viewer(w);
        assert_eq!(hub.streams().count(), 0);
    }

    /// Writes up to `n` bytes of `id`'s queue (all of it for `usize::MAX`), as a socket would.
    fn write_some(hub: &mut Hub, id: ViewerId, n: usize) -> Vec<u8> {
        let q = &mut hub.viewer(id).unwrap().queue;
        let mut out = Vec::new();
        let mut slices = Vec::new();
        q.io_slices(&mut slices, usize::MAX);
        for s in &slices {
            let k = s.len().min(n - out.len());
            out.extend_from_slice(&s[..k]);
        }
        q.advance(out.len());
        out
    }

    #[test]
    fn a_viewer_that_follows_the_log_gets_what_per_packet_pushes_give() {
        // Two viewers of one form see the same frames, writes, pauses and track switches; one
        // follows the log whenever it drained, the other is pushed every packet. Their bytes,
        // counters and verdicts must be the same at every step.
        let mut hub = Hub::new(HubConfig {
            queue_soft_ms: 600,
            queue_hard_ms: 2500,
            ..HubConfig::default()
        });
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        for f in [av_meta(), vseq(0), aseq(0), vkey(0)] {
            hub.frame(h, 1, f, 0);
        }
        let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(a);
        let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
        hub.start_viewer(b);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut followed, mut flushed_edge, mut stall_until) = (0, 0, 0);
        for step in 1..3000u32 {
            let t = step * 20;
            let f = if step % 2 == 1 {
                audio(t)
            } else if t % 800 == 0 {
                vkey(t)
            } else {
                vinter(t)
            };
            let out = hub.frame(h, 1, f, u64::from(t));
            let (flush, slow) = (out.flush.to_vec(), out.too_slow.to_vec());
            flushed_edge += usize::from(flush.contains(&a) && hub.is_following(a));
            assert_eq!(slow.contains(&a), slow.contains(&b), "step {step}");
            if slow.contains(&a) {
                break;
            }
            let action = if step < stall_until { 99 } else { next(40) };
            match action {
                // A stall: neither reads for a while (long ones make both skip).
                0 | 99 => {
                    if action == 0 && step < 2000 {
                        stall_until = step + 10 + next(60) as u32;
                    }
                }
                1 => {
                    let on = next(2) == 0;
                    hub.set_paused(a, on);
                    hub.set_paused(b, on);
                }
                2 => {
                    let on = next(3) != 0;
                    hub.set_receive_video(a, on);
                    hub.set_receive_video(b, on);
                }
                3 => {
                    let on = next(3) != 0;
                    hub.set_receive_audio(a, on);
                    hub.set_receive_audio(b, on);
                }
                k => {
                    let n = if k < 10 {
                        next(40) as usize
                    } else {
                        usize::MAX
                    };
                    let (wa, wb) = (write_some(&mut hub, a, n), write_some(&mut hub, b, n));
                    assert_eq!(wa, wb, "step {step}");
                    hub.follow(a);
                    followed += usize::from(hub.is_following(a));
                }
            }
            let sa = hub.viewer(a).unwrap().stats();
            assert_eq!(sa, hub.viewer_ref(b).unwrap().stats(), "step {step}");
            assert!(!hub.is_following(a), "touched: settled");
            hub.follow(a);
            assert!(!hub.is_following(b));
        }
        assert!(
            followed > 500 && flushed_edge > 500,
            "{followed} {flushed_edge}"
        );
        let st = hub.viewer(a).unwrap().stats();
        assert!(st.skips > 0 && st.frames_dropped > 0, "{st:?}");
        assert_eq!(
            write_some(&mut hub, a, usize::MAX),
            write_some(&mut hub, b, usize::MAX)
        );
    }

    #[test]
    fn followers_cost_nothing_per_frame_and_settle_in_order() {
        let mut hub = Hub::new(HubConfig::default());
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        send(&mut hub, vseq(0));
        send(&mut hub, vkey(0));
        let ids: Vec<_> = (0..4)
            .map(|t| {
                let (id, _) = hub.add_viewer(&key(), FLV, t, 0);
                hub.start_viewer(id);
                drain(&mut hub, id);
                hub.follow(id);
                assert!(hub.is_following(id));
                id
            })
            .collect();
        let s = |hub: &Hub| {
            let st = hub.stream(&key()).unwrap();
            (st.pushed.len(), st.logs[0].idle.len(), st.logs[0].pending)
        };
        assert_eq!(s(&hub), (0, 4, 0), "no viewer is pushed");
        // The first frame lists every follower once; later ones list nobody.
        let (mut flush, _) = send(&mut hub, vinter(40));
        flush.sort();
        assert_eq!(flush, ids);
        assert!(send(&mut hub, audio(50)).0.is_empty());
        assert!(send(&mut hub, vinter(80)).0.is_empty());
        assert_eq!(s(&hub), (0, 0, 4));
        // A follower removed while pending, one settled: the others keep the log.
        hub.remove_viewer(ids[0]);
        let (_, tags) = parse_flv(&drain(&mut hub, ids[1]), false);
        assert_eq!(
            tags,
            [vinter(40), audio(50), vinter(80)]
                .iter()
                .map(tag_of)
                .collect::<Vec<_>>()
        );
        assert_eq!(s(&hub), (1, 0, 2));
        assert_eq!(hub.stream(&key()).unwrap().logs[0].packets.len(), 3);
        hub.follow(ids[1]);
        // The publisher leaves: the pending followers get their packets before the end.
        let ended = hub.unpublish(h, 1);
        assert_eq!(ended.len(), 3);
        for &id in &ids[2..] {
            let (_, tags) = parse_flv(&drain(&mut hub, id), false);
            assert_eq!(tags.len(), 3, "viewer {id}");
        }
        assert!(drain(&mut hub, ids[1]).is_empty());
    }

    #[test]
    fn a_follower_never_settled_is_ended_when_the_log_overflows() {
        let mut hub = Hub::new(HubConfig::default());
        hub.publish(&key(), 1, 0).unwrap();
        send(&mut hub, vseq(0));
        send(&mut hub, vkey(0));
        let (stuck, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(stuck);
        drain(&mut hub, stuck);
        hub.follow(stuck);
        let mut t = 0;
        for _ in 0..stream::LOG_MAX + 1 {
            t += 10;
            let (_, slow) = send(&mut hub, audio(t));
            assert!(slow.is_empty());
        }
        assert_eq!(
            hub.stream(&key()).unwrap().logs[0].packets.len(),
            stream::LOG_MAX
        );
        // Touched at last: ended, reported with the next frame, its log emptied.
        assert_eq!(hub.viewer(stuck).unwrap().ended, Some(ViewerEnd::TooSlow));
        assert_eq!(send(&mut hub, audio(t + 10)).1, vec![stuck]);
        assert!(send(&mut hub, audio(t + 20)).1.is_empty());
        assert!(hub.stream(&key()).unwrap().logs[0].packets.is_empty());
        assert_eq!(hub.totals().slow_disconnects, 1);
    }

    /// Writes up to `n` bytes of what `id` has, as a socket would: straight from its log when
    /// `hub.edge` allows (reported with `edge_written`), else from its queue. Returns the bytes
    /// and whether they came from the log.
    fn write_edge_some(hub: &mut Hub, id: ViewerId, n: usize) -> (Vec<u8>, bool) {
        let Some(edge) = hub.edge(id) else {
            return (write_some(hub, id, n), false);
        };
        let mut slices = vec![std::io::IoSlice::new(&[]); edge.count()];
        let k = edge.slices(&mut slices);
        assert_eq!(k, edge.count());
        let total = edge.bytes();
        let mut out = Vec::new();
        for s in &slices[..k] {
            let m = s.len().min(n - out.len());
            out.extend_from_slice(&s[..m]);
        }
        assert_eq!(slices[..k].iter().map(|s| s.len()).sum::<usize>(), total);
        hub.edge_written(id, out.len(), total);
        (out, true)
    }

    #[test]
    fn a_follower_written_from_the_log_gets_what_per_packet_pushes_give() {
        // As above, but the follower is written straight from its log whenever `edge` allows
        // (whole or in part), and is touched only by writes and filter changes: runs of several
        // packets build up between writes. Bytes, counters and verdicts must match the pushed
        // viewer's at every write.
        let mut hub = Hub::new(HubConfig {
            queue_soft_ms: 600,
            queue_hard_ms: 2500,
            ..HubConfig::default()
        });
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        for f in [av_meta(), vseq(0), aseq(0), vkey(0)] {
            hub.frame(h, 1, f, 0);
        }
        let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
        hub.start_viewer(a);
        let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
        hub.start_viewer(b);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut whole, mut part, mut stall_until) = (0, 0, 0);
        for step in 1..4000u32 {
            let t = step * 20;
            let f = if step % 2 == 1 {
                audio(t)
            } else if t % 800 == 0 {
                vkey(t)
            } else {
                vinter(t)
            };
            let out = hub.frame(h, 1, f, u64::from(t));
            let slow = out.too_slow.to_vec();
            assert_eq!(slow.contains(&a), slow.contains(&b), "step {step}");
            if slow.contains(&a) {
                break;
            }
            let action = if step < stall_until { 99 } else { next(30) };
            match action {
                // A stall: neither reads for a while (long ones make both skip).
                99 => {}
                0 if step < 3000 => stall_until = step + 10 + next(60) as u32,
                1 if next(4) == 0 => {
                    let on = next(2) == 0;
                    hub.set_paused(a, on);
                    hub.set_paused(b, on);
                }
                2 if next(4) == 0 => {
                    let on = next(3) != 0;
                    hub.set_receive_video(a, on);
                    hub.set_receive_video(b, on);
                }
                3 if next(4) == 0 => {
                    let on = next(3) != 0;
                    hub.set_receive_audio(a, on);
                    hub.set_receive_audio(b, on);
                }
                k @ 8..30 => {
                    let n = if k < 18 {
                        next(300) as usize
                    } else {
                        usize::MAX
                    };
                    let (wa, edge) = write_edge_some(&mut hub, a, n);
                    let wb = write_some(&mut hub, b, n);
                    assert_eq!(wa, wb, "step {step}");
                    if edge {
                        if hub.is_following(a) {
                            whole += 1;
                        } else {
                            part += 1;
                        }
                    }
                    if hub.is_following(a) {
                        // Still following: nothing of it is queued.
                        assert!(hub.viewer_ref(a).unwrap().queue.is_empty());
                        assert_eq!(hub.viewer_ref(b).unwrap().queue.queued_bytes(), 0);
                    } else {
                        hub.follow(a);
                    }
                    assert_eq!(
                        hub.viewer_ref(a).unwrap().stats(),
                        hub.viewer_ref(b).unwrap().stats(),
                        "step {step}"
                    );
                }
                _ => {}
            }
            assert!(!hub.is_following(b));
        }
        assert!(whole > 200 && part > 10, "{whole} {part}");
        let st = hub.viewer(a).unwrap().stats();
        assert!(st.skips > 0 && st.frames_dropped > 0, "{st:?}");
        assert_eq!(
            write_some(&mut hub, a, usize::MAX),
            write_some(&mut hub, b, usize::MAX)
        );
    }

    #[test]
    fn an_ended_opus_publishs_recorders_get_the_bridges_tail_before_they_end() {
        use std::cell::{Cell, RefCell};
        use std::rc::Rc;
        #[derive(Default)]
        struct Shared {
            made: RefCell<Vec<Frame>>,
            asked: Cell<bool>,
            done: Cell<bool>,
            got: RefCell<Vec<(u32, bool)>>,
            dropped: Cell<bool>,
        }
        struct Fake(Rc<Shared>);
        impl bridge::AudioBridge for Fake {
            fn push(&mut self, _f: &Frame) -> bool {
                true
            }
            fn poll(&mut self) -> Option<Frame> {
                let mut m = self.0.made.borrow_mut();
                (!m.is_empty()).then(|| m.remove(0))
            }
            fn finish(&mut self) -> bool {
                self.0.asked.set(true);
                true
            }
            fn finished(&self) -> bool {
                self.0.done.get()
            }
        }
        struct Rec(Rc<Shared>);
        impl Reader for Rec {
            fn deliver(&mut self, f: &Frame) -> ReaderState {
                self.0.got.borrow_mut().push((f.dts, f.bridged));
                ReaderState::Ready
            }
            fn poll(&mut self, _now_ms: u64) -> ReaderState {
                ReaderState::Ready
            }
            fn frames_dropped(&self) -> u64 {
                0
            }
        }
        impl Drop for Rec {
            fn drop(&mut self) {
                self.0.dropped.set(true);
            }
        }
        let aac = |t: u32| frame(TAG_AUDIO, t, vec![0xaf, 1, 0x11, 0x90]);
        for finishes in [true, false] {
            let sh = Rc::new(Shared::default());
            let mut hub = Hub::new(HubConfig::default());
            let b = sh.clone();
            hub.set_bridge_factory(Box::new(move |_| Some(Box::new(Fake(b.clone())))));
            let h = hub.publish(&key(), 1, 0).unwrap().handle;
            hub.add_reader(h, Box::new(Rec(sh.clone())));
            hub.frame(h, 1, vseq(0), 0);
            hub.frame(
                h,
                1,
                frame(TAG_AUDIO, 0, b"\x90OpusOpusHead\x01\x02\x38\x01".to_vec()),
                0,
            );
            hub.frame(
                h,
                1,
                frame(TAG_AUDIO, 20, b"\x91Opus\xfc\xff\xfe".to_vec()),
                20,
            );
            hub.unpublish(h, 1);
            assert!(sh.asked.get(), "the bridge is asked to finish");
            assert!(!sh.dropped.get(), "the recorder waits for the tail");
            assert!(hub.bridges_draining());
            hub.poll_bridges(100);
            assert!(!sh.dropped.get(), "nothing came yet");
            if finishes {
                // The tail, then the bridge says it is done: the recorder gets it, then ends.
                sh.made.borrow_mut().extend([aac(0), aac(21)]);
                sh.done.set(true);
                hub.poll_bridges(150);
                let got = sh.got.borrow().clone();
                assert_eq!(&got[got.len() - 2..], &[(0, true), (21, true)], "{got:?}");
            } else {
                // A bridge that never finishes is given up on after DRAIN_GIVE_UP_MS.
                hub.poll_bridges(100 + DRAIN_GIVE_UP_MS - 1);
                assert!(!sh.dropped.get());
                hub.poll_bridges(100 + DRAIN_GIVE_UP_MS);
            }
            assert!(sh.dropped.get(), "the recorder ended");
            assert!(!hub.bridges_draining());
            assert_eq!(hub.totals().bridges.started, 1);
        }
    }

    #[test]
    fn an_opus_streams_bridged_aac_reaches_the_aac_viewers_and_only_them() {
        use std::cell::RefCell;
        use std::collections::VecDeque;
        use std::rc::Rc;
        type Q = Rc<RefCell<VecDeque<Frame>>>;
        struct Fake {
            pushed: Q,
            made: Q,
        }
        impl bridge::AudioBridge for Fake {
            fn push(&mut self, f: &Frame) -> bool {
                self.pushed.borrow_mut().push_back(f.clone());
                true
            }
            fn poll(&mut self) -> Option<Frame> {
                self.made.borrow_mut().pop_front()
            }
        }
        let (pushed, made): (Q, Q) = Default::default();
        let mut hub = Hub::new(HubConfig::default());
        let (p, m) = (pushed.clone(), made.clone());
        let mut started = 0;
        hub.set_bridge_factory(Box::new(move |_| {
            started += 1;
            assert_eq!(started, 1, "one bridge per stream");
            Some(Box::new(Fake {
                pushed: p.clone(),
                made: m.clone(),
            }))
        }));
        hub.publish(&key(), 1, 0).unwrap();
        let flv = |aac| OutputForm::HttpFlv {
            chunked: false,
            track: 0,
            aac,
        };
        let (aac, _) = hub.add_viewer(&key(), flv(true), 7, 0);
        let (opus, _) = hub.add_viewer(&key(), flv(false), 8, 0);
        for id in [aac, opus] {
            hub.start_viewer(id);
        }
        let head = frame(TAG_AUDIO, 0, b"\x90OpusOpusHead\x01\x02\x38\x01".to_vec());
        let packet = |t| frame(TAG_AUDIO, t, b"\x91Opus\xfc\xff\xfe".to_vec());
        // What the worker would hand back: an AAC sequence header, then AAC frames.
        let aac_frame = |t, cfg: bool| frame(TAG_AUDIO, t, vec![0xaf, u8::from(!cfg), 0x11, 0x90]);
        send(&mut hub, vseq(0));
        send(&mut hub, head.clone());
        send(&mut hub, vkey(0));
        for t in [20, 40, 60] {
            send(&mut hub, packet(t));
        }
        let audio_of = |hub: &mut Hub, id, first| -> Vec<Vec<u8>> {
            parse_flv(&drain(hub, id), first)
                .1
                .into_iter()
                .filter(|t| t.tag == TAG_AUDIO)
                .map(|t| t.body)
                .collect()
        };
        // Before the bridge's AAC: the Opus viewer got the Opus, the AAC viewer no audio.
        let a = audio_of(&mut hub, aac, true);
        assert!(a.is_empty(), "{a:?}");
        let o = audio_of(&mut hub, opus, true);
        assert_eq!(o.len(), 4, "{o:?}");
        assert!(o.iter().all(|b| b[0] >> 4 == 9), "{o:?}");
        let got: Vec<u32> = pushed.borrow().iter().map(|f| f.dts).collect();
        assert_eq!(
            got,
            vec![0, 20, 40, 60],
            "the bridge gets the Opus in order"
        );
        // In stream time, from the input's (the normaliser's, not the publisher's).
        let base = pushed.borrow()[0].time;
        made.borrow_mut()
            .extend([(0, true), (0, false), (21, false)].map(|(t, cfg)| Frame {
                time: base + t as u64,
                ..aac_frame(t, cfg)
            }));
        let out = hub.poll_bridges(0);
        assert_eq!(out.flush, &[aac][..]);
        // The AAC viewer gets the AAC, the Opus viewer nothing of it.
        let a = audio_of(&mut hub, aac, false);
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(a.iter().all(|b| b[0] == 0xaf), "{a:?}");
        assert_eq!(a[0][1], 0, "the AAC sequence header first");
        assert!(audio_of(&mut hub, opus, false).is_empty());
        // A late AAC joiner gets the bridged sequence header and the cached AAC, no Opus.
        let (late, _) = hub.add_viewer(&key(), flv(true), 9, 0);
        hub.start_viewer(late);
        let l = audio_of(&mut hub, late, true);
        assert!(!l.is_empty() && l.iter().all(|b| b[0] == 0xaf), "{l:?}");
        assert_eq!(l[0][1], 0);
        // The stream's audio stops being Opus: its bridge ends and the AAC viewers get the
        // published AAC.
        send(&mut hub, aseq(100));
        send(&mut hub, audio(120));
        assert!(hub.streams.iter().all(|(_, s)| s.bridge.is_none()));
        assert_eq!(hub.totals().bridges.started, 1);
        assert_eq!(audio_of(&mut hub, aac, false).len(), 2);
    }
}
