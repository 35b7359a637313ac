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
mod viewers;
use viewers::{join_pushed, settle};

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
    draining: Vec<bridge::Draining>,
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
            // The viewers switch sessions below: what they follow of the old one first. The old
            // session's recordings and bridge end with it (the recordings once the bridge
            // handed over its tail, as at an unpublish); the newcomer opens its own.
            self.settle_all(i);
            self.drain_bridge(i);
            self.streams[i].end_readers(&mut self.reader_frames_dropped);
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

#[cfg(test)]
mod tests;
