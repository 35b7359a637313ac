//! `ViewerQueue`: one viewer's bounded output queue (shared media packets and its own control
//! bytes) with exact partial-write bookkeeping, and the slow-viewer policy. No sockets: the
//! server asks for `IoSlice`s (or calls `write_to`) and reports how much was written.
//!
//! Policy, applied on every media push:
//! - Backlog = live media queued (bytes, and the media-time span from the oldest live entry to
//!   the newest). Entries pushed by `push_primed` (the cached GOP and headers a joiner starts
//!   with) are exempt: a late joiner legitimately starts a GOP behind live.
//! - Backlog over `soft_bytes` or `soft_ms` -> SKIP: every queued media entry that has not
//!   started being written is dropped (an entry with a partial write stays whole, or the byte
//!   stream would break; control bytes, metadata and sequence headers stay too, a new config
//!   must reach the viewer before the next keyframe), then incoming media is dropped until the
//!   next resume point (`Packet::key`: a video keyframe, or any audio frame on an audio-only
//!   stream). If the packet that tipped the balance is itself a resume point it is kept and the
//!   viewer resumes at it at once. Each skip counts once; dropped frames and bytes are counted.
//! - Lag = newest media enqueued minus the last media entry fully written (or, before any, the
//!   first one enqueued; a viewer that wrote everything it had is caught up). Lag over
//!   `hard_ms`, or queued bytes over `hard_bytes`, -> the push returns `Verdict::TooSlow` and
//!   the hub reports the viewer for disconnection.
//! - Times are the stream's monotonic media time (`Packet::time`), not raw dts: a publisher's
//!   timestamp jump or 32-bit wrap does not advance it, so it cannot make everyone look late.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use bytes::Bytes;

use super::packet::Packet;

/// The per-viewer bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub soft_bytes: usize,
    pub soft_ms: u32,
    pub hard_bytes: usize,
    pub hard_ms: u32,
}

impl Default for QueueLimits {
    fn default() -> QueueLimits {
        QueueLimits {
            soft_bytes: 4 << 20,
            soft_ms: 4000,
            hard_bytes: 16 << 20,
            hard_ms: 15_000,
        }
    }
}

/// Result of a media push.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Over a hard bound: the viewer must be disconnected.
    TooSlow(SlowReason),
}

/// Which hard bound a viewer crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowReason {
    /// Media time between the newest queued frame and the last one written, in ms.
    Lag(u64),
    /// Bytes queued.
    Bytes(usize),
}

impl std::fmt::Display for SlowReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlowReason::Lag(ms) => write!(f, "{ms} ms behind live"),
            SlowReason::Bytes(b) => write!(f, "{b} bytes queued"),
        }
    }
}

/// Counters of one viewer's queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub bytes_sent: u64,
    pub frames_dropped: u64,
    pub bytes_dropped: u64,
    pub skips: u64,
}

/// Identifies a queue of whole media packets (see `ViewerQueue::run`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Run {
    hash: u64,
    count: usize,
    /// The queued bytes.
    pub bytes: usize,
}

impl std::hash::Hash for Run {
    /// The run's own hash of its packets is hash enough (see `server::splice`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

enum Entry {
    /// `primed`: exempt from the soft bounds: pushed as part of a join (cached GOP, headers),
    /// a header, or kept through a skip.
    Media { packet: Arc<Packet>, primed: bool },
    /// Protocol bytes (command replies, HTTP head, WS control, chunk terminator): never dropped.
    Control(Bytes),
}

impl Entry {
    fn len(&self) -> usize {
        match self {
            Entry::Media { packet, .. } => packet.len(),
            Entry::Control(b) => b.len(),
        }
    }

    fn bytes(&self) -> &Bytes {
        match self {
            Entry::Media { packet, .. } => &packet.data,
            Entry::Control(b) => b,
        }
    }

    /// The packet's address: an identity while the entry holds it, never dereferenced.
    fn packet_addr(&self) -> Option<usize> {
        match self {
            Entry::Media { packet, .. } => Some(Arc::as_ptr(packet) as usize),
            Entry::Control(_) => None,
        }
    }

    fn live(&self) -> Option<&Packet> {
        match self {
            Entry::Media {
                packet,
                primed: false,
            } => Some(packet),
            _ => None,
        }
    }
}

/// Slices handed to one `write_vectored` by `write_to`: one per queued message (Linux takes up
/// to 1024). A live viewer has about 8 messages per 100 ms flush; a joiner's cached GOP goes
/// out in a few calls of 64 messages. The array is on the stack and set up per call, so it
/// stays small.
pub const WRITE_SLICES: usize = 64;
/// Bytes one `write_to` call takes from the queue: whole messages up to the one that reaches
/// this. A joining viewer's first call carries its headers and the GOP's keyframe; the rest
/// of the cached GOP follows in later turns, after other joiners got their keyframes.
pub const WRITE_BYTES: usize = 64 * 1024;

/// An emptied queue with room for more entries than this gives the memory back.
const SHRINK_ABOVE: usize = 512;

pub struct ViewerQueue {
    entries: VecDeque<Entry>,
    /// Bytes of the front entry already written.
    offset: usize,
    /// Bytes not yet written.
    queued: usize,
    /// Of those, protocol replies (control entries): private bytes no other viewer shares,
    /// bounded by the server (it stops reading a client that does not read its replies).
    control: usize,
    /// Live (non-primed) media entries queued, and their bytes.
    live_count: usize,
    live_bytes: usize,
    /// Time of the oldest live media entry queued (valid while `live_count > 0`).
    oldest_live: u64,
    /// Time of the newest media entry enqueued.
    newest: Option<u64>,
    /// Progress reference for the lag: time of the last media entry fully written.
    written: Option<u64>,
    /// The queue was emptied by writes (not by a skip): the viewer is caught up.
    drained: bool,
    /// Dropping media until the next resume point.
    skipping: bool,
    /// The drops of this skipping phase are counted (a slow-viewer skip, not a join or resume).
    counting: bool,
    limits: QueueLimits,
    pub stats: QueueStats,
}

impl ViewerQueue {
    pub fn new(limits: QueueLimits) -> ViewerQueue {
        ViewerQueue {
            entries: VecDeque::new(),
            offset: 0,
            queued: 0,
            control: 0,
            live_count: 0,
            live_bytes: 0,
            oldest_live: 0,
            newest: None,
            written: None,
            drained: false,
            skipping: false,
            counting: false,
            limits,
            stats: QueueStats::default(),
        }
    }

    /// Queues protocol bytes; they are never dropped.
    pub fn push_control(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.queued += bytes.len();
        self.control += bytes.len();
        self.entries.push_back(Entry::Control(bytes));
    }

    /// Control (protocol reply) bytes queued, counted until their entry is fully written.
    pub fn control_bytes(&self) -> usize {
        self.control
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// True while media is being dropped until the next resume point.
    pub fn is_skipping(&self) -> bool {
        self.skipping
    }

    /// True when writes emptied the queue (the viewer is caught up).
    pub fn is_drained(&self) -> bool {
        self.drained && self.entries.is_empty()
    }

    /// Live packets written straight to the socket, `bytes` in all, the newest of media time
    /// `newest`, without passing through the queue (a follower at the live edge,
    /// `Hub::edge_written`): the counters and the lag reference end as pushing them with
    /// `push_media` and writing them all would leave them. Only for a drained queue that is not
    /// skipping, with packets within the soft bounds (so that no push would have dropped any).
    pub fn wrote_through(&mut self, bytes: usize, newest: u64) {
        debug_assert!(self.is_drained() && !self.skipping);
        self.stats.bytes_sent += bytes as u64;
        // The first push into a drained queue sets the reference to its time, and each packet
        // written moves it to the latest written: the newest of the packets.
        self.written = Some(newest);
        self.newest = Some(self.newest.map_or(newest, |n| n.max(newest)));
        self.drained = true;
    }

    /// Starts dropping media until the next resume point (headers still pass), without
    /// counting a skip: for a viewer that resumes after a pause or joins without a GOP.
    pub fn wait_for_key(&mut self) {
        if !self.skipping {
            self.skipping = true;
            self.counting = false;
        }
    }

    /// Forgets the lag reference (after a pause, when nothing was sent on purpose).
    pub fn reset_lag(&mut self) {
        self.written = None;
        self.drained = false;
    }

    /// Queues a packet a joining (or resuming) viewer starts with: no soft bound applies, and
    /// the lag reference moves to it, so the join backlog is not held against the viewer.
    pub fn push_primed(&mut self, packet: Arc<Packet>) {
        if !packet.header {
            self.written = Some(self.written.map_or(packet.time, |w| w.max(packet.time)));
        }
        self.newest = Some(self.newest.map_or(packet.time, |n| n.max(packet.time)));
        self.drained = false;
        self.queued += packet.len();
        self.entries.push_back(Entry::Media {
            packet,
            primed: true,
        });
    }

    /// Queues a live media packet, applying the policy described in the module doc.
    pub fn push_media(&mut self, packet: Arc<Packet>) -> Verdict {
        if self.skipping {
            if packet.key {
                self.skipping = false;
            } else if !packet.header {
                if self.counting {
                    self.stats.frames_dropped += 1;
                    self.stats.bytes_dropped += packet.len() as u64;
                }
                return Verdict::Ok;
            }
        }
        let time = packet.time;
        let key = packet.key;
        if self.entries.is_empty() && self.drained {
            // Everything given was written: the viewer is at live.
            self.written = Some(time);
        }
        self.drained = false;
        if self.written.is_none() {
            self.written = Some(time);
        }
        let newest = self.newest.map_or(time, |n| n.max(time));
        self.newest = Some(newest);
        if !packet.header {
            if self.live_count == 0 {
                self.oldest_live = time;
            }
            self.live_count += 1;
            self.live_bytes += packet.len();
        }
        self.queued += packet.len();
        // Headers can never be dropped, so they are no backlog either.
        let primed = packet.header;
        self.entries.push_back(Entry::Media { packet, primed });

        // One frame alone is never a backlog, however large.
        let over_soft = self.live_count > 1
            && (self.live_bytes > self.limits.soft_bytes
                || newest.saturating_sub(self.oldest_live) > self.limits.soft_ms as u64);
        if over_soft {
            self.skip(key);
        }
        self.hard_verdict()
    }

    fn hard_verdict(&self) -> Verdict {
        let lag = match (self.newest, self.written) {
            (Some(n), Some(w)) => n.saturating_sub(w),
            _ => 0,
        };
        if lag > self.limits.hard_ms as u64 {
            Verdict::TooSlow(SlowReason::Lag(lag))
        } else if self.queued > self.limits.hard_bytes {
            Verdict::TooSlow(SlowReason::Bytes(self.queued))
        } else {
            Verdict::Ok
        }
    }

    /// Drops every unstarted live media entry except headers; keeps the newest entry when
    /// `keep_last` (it is a resume point), else waits for the next resume point.
    fn skip(&mut self, keep_last: bool) {
        self.stats.skips += 1;
        self.skipping = !keep_last;
        self.counting = true;
        let last = self.entries.len() - 1;
        let started = self.offset > 0;
        let mut dropped_frames = 0u64;
        let mut dropped_bytes = 0usize;
        let mut index = 0;
        self.entries.retain_mut(|e| {
            let i = index;
            index += 1;
            let keep = match e {
                Entry::Control(_) => true,
                Entry::Media { packet, primed } => {
                    if i == last && keep_last {
                        true
                    } else if packet.header || (i == 0 && started) {
                        // Kept, but no longer backlog: it must not anchor the next span.
                        *primed = true;
                        true
                    } else {
                        false
                    }
                }
            };
            if !keep {
                dropped_frames += 1;
                dropped_bytes += e.len();
            }
            keep
        });
        self.stats.frames_dropped += dropped_frames;
        self.stats.bytes_dropped += dropped_bytes as u64;
        self.queued -= dropped_bytes;
        self.recount_live();
    }

    fn recount_live(&mut self) {
        self.live_count = 0;
        self.live_bytes = 0;
        for e in &self.entries {
            if let Some(p) = e.live() {
                if self.live_count == 0 {
                    self.oldest_live = p.time;
                }
                self.live_count += 1;
                self.live_bytes += p.len();
            }
        }
    }

    /// Fills `out` with up to `max` slices from the front, starting after the bytes of the
    /// front entry already written.
    pub fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        let max = max.saturating_sub(out.len());
        self.each_slice(max, usize::MAX, |s| out.push(IoSlice::new(s)));
    }

    /// Calls `f` with up to `max` slices from the front, stopping after the slice that brings
    /// the total to `max_bytes`.
    fn each_slice<'a>(&'a self, max: usize, max_bytes: usize, mut f: impl FnMut(&'a [u8])) {
        let mut skip = self.offset;
        let mut total = 0;
        for e in self.entries.iter().take(max) {
            let b = &e.bytes()[skip..];
            f(b);
            skip = 0;
            total += b.len();
            if total >= max_bytes {
                return;
            }
        }
    }

    /// Consumes `n` written bytes. A partly written entry stays at the front with an offset.
    pub fn advance(&mut self, mut n: usize) {
        self.stats.bytes_sent += n as u64;
        while let Some(front) = self.entries.front() {
            let rest = front.len() - self.offset;
            if n < rest {
                self.offset += n;
                self.queued -= n;
                return;
            }
            n -= rest;
            self.queued -= rest;
            self.offset = 0;
            match self.entries.pop_front() {
                Some(Entry::Control(b)) => self.control -= b.len(),
                Some(Entry::Media { packet, primed }) => {
                    self.written = Some(self.written.map_or(packet.time, |w| w.max(packet.time)));
                    if !primed {
                        self.live_count -= 1;
                        self.live_bytes -= packet.len();
                        if self.live_count > 0 {
                            self.oldest_live = self
                                .entries
                                .iter()
                                .find_map(|e| e.live().map(|p| p.time))
                                .unwrap_or(0);
                        }
                    }
                }
                None => {}
            }
            if self.entries.is_empty() {
                self.drained = true;
                // A burst (a join, a slow spell) must not pin its capacity to the viewer.
                if self.entries.capacity() > SHRINK_ABOVE {
                    self.entries.shrink_to(SHRINK_ABOVE / 4);
                }
            }
        }
        debug_assert_eq!(n, 0, "advanced past the queued bytes");
    }

    /// What the queue holds when it is nothing but whole media packets, none started. Viewers
    /// of one form that hold the same packets have byte-identical queues and may be sent one
    /// shared copy (see `server::splice`); equal runs are a hint, `holds_packets` confirms.
    /// None when control bytes or a partly written packet are queued, or when it is empty.
    pub fn run(&self) -> Option<Run> {
        if self.offset != 0 || self.entries.is_empty() {
            return None;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for e in &self.entries {
            let addr = e.packet_addr()?;
            hash = (hash ^ addr as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Some(Run {
            hash,
            count: self.entries.len(),
            bytes: self.queued,
        })
    }

    /// The identities of the queued packets (see `run`), appended to `out`.
    pub fn packet_addrs(&self, out: &mut Vec<usize>) {
        out.extend(self.entries.iter().filter_map(Entry::packet_addr));
    }

    /// True when the queue is exactly the packets `addrs` names, none started.
    pub fn holds_packets(&self, addrs: &[usize]) -> bool {
        self.offset == 0
            && self.entries.len() == addrs.len()
            && self
                .entries
                .iter()
                .zip(addrs)
                .all(|(e, &a)| e.packet_addr() == Some(a))
    }

    /// Every queued slice, for a caller that writes the whole queue elsewhere.
    pub fn each_queued<'a>(&'a self, f: impl FnMut(&'a [u8])) {
        self.each_slice(usize::MAX, usize::MAX, f);
    }

    /// One vectored write of the front of the queue (up to `WRITE_SLICES` messages and about
    /// `WRITE_BYTES`) into `w`; consumes what was written.
    /// Returns the bytes written (0 only when the queue is empty or the writer took nothing).
    pub fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let mut k = 0;
        self.each_slice(WRITE_SLICES, WRITE_BYTES, |s| {
            slices[k] = IoSlice::new(s);
            k += 1;
        });
        if k == 0 {
            return Ok(0);
        }
        let n = w.write_vectored(&slices[..k])?;
        self.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Track;

    fn packet(time: u64, len: usize, key: bool, header: bool, fill: u8) -> Arc<Packet> {
        let data: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        Arc::new(Packet {
            data: Bytes::from(data),
            dts: time as u32,
            time,
            track: Track::Video,
            key,
            header,
        })
    }

    fn contents(q: &ViewerQueue) -> Vec<u8> {
        let mut v = Vec::new();
        q.each_slice(usize::MAX, usize::MAX, |s| v.extend_from_slice(s));
        v
    }

    fn media_times(q: &ViewerQueue) -> Vec<u64> {
        q.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Media { packet, .. } => Some(packet.time),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn partial_writes_reproduce_the_byte_stream() {
        // Every split size from 1 to 40, with slice caps from 1 to 7: the bytes taken from
        // io_slices and consumed with advance must be the concatenated stream, exactly.
        for split in 1..=40usize {
            for max in 1..=7usize {
                let mut q = ViewerQueue::new(QueueLimits::default());
                let mut want = Vec::new();
                q.push_control(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"));
                want.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
                for i in 0..6u64 {
                    let p = packet(i * 40, 7 + i as usize * 5, i == 0, false, i as u8 * 31);
                    want.extend_from_slice(&p.data);
                    assert_eq!(q.push_media(p), Verdict::Ok);
                    if i == 3 {
                        q.push_control(Bytes::from_static(b"\r\n"));
                        want.extend_from_slice(b"\r\n");
                    }
                }
                assert_eq!(q.queued_bytes(), want.len());
                assert_eq!(q.control_bytes(), 21, "the private replies");
                let mut got = Vec::new();
                while !q.is_empty() {
                    let mut slices = Vec::new();
                    q.io_slices(&mut slices, max);
                    assert!(!slices.is_empty() && slices.len() <= max);
                    let mut budget = split;
                    let mut taken = 0;
                    for s in &slices {
                        let n = s.len().min(budget);
                        got.extend_from_slice(&s[..n]);
                        budget -= n;
                        taken += n;
                    }
                    q.advance(taken);
                    assert_eq!(q.queued_bytes(), want.len() - got.len());
                }
                assert_eq!(got, want, "split {split} max {max}");
                assert_eq!(q.stats.bytes_sent, want.len() as u64);
                assert_eq!(q.control_bytes(), 0);
            }
        }
    }

    #[test]
    fn write_to_short_writer() {
        struct Short(Vec<u8>);
        impl Write for Short {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let n = buf.len().min(5);
                self.0.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = ViewerQueue::new(QueueLimits::default());
        for i in 0..4 {
            let _ = q.push_media(packet(i * 10, 23, true, false, i as u8));
        }
        let want = contents(&q);
        let mut w = Short(Vec::new());
        while q.write_to(&mut w).unwrap() > 0 {}
        assert!(q.is_empty());
        assert_eq!(w.0, want);
    }

    fn limits() -> QueueLimits {
        QueueLimits {
            soft_bytes: 1000,
            soft_ms: 400,
            hard_bytes: 5000,
            hard_ms: 1500,
        }
    }

    #[test]
    fn soft_span_skips_to_next_keyframe_keeping_partial_entry() {
        let mut q = ViewerQueue::new(limits());
        // Keyframe every 200 ms, a frame every 40 ms; the viewer writes 3 bytes and stops.
        let _ = q.push_media(packet(0, 10, true, false, 0));
        q.advance(3);
        let mut t = 40;
        while t <= 400 {
            let _ = q.push_media(packet(t, 10, t % 200 == 0, false, 0));
            t += 40;
        }
        // Span 0..400 is not over 400 yet.
        assert_eq!(q.stats.skips, 0);
        let _ = q.push_media(packet(440, 10, false, false, 0));
        assert_eq!(q.stats.skips, 1);
        // Only the partly written first entry survives; the stream of bytes stays whole.
        assert_eq!(media_times(&q), vec![0]);
        assert!(q.is_skipping());
        assert_eq!(q.stats.frames_dropped, 11);
        for t in [480u64, 520, 560] {
            let _ = q.push_media(packet(t, 10, false, false, 0));
        }
        assert_eq!(media_times(&q), vec![0]);
        // A sequence header is not dropped while skipping.
        let _ = q.push_media(packet(570, 10, false, true, 0));
        let _ = q.push_media(packet(600, 10, true, false, 0));
        let _ = q.push_media(packet(640, 10, false, false, 0));
        assert_eq!(media_times(&q), vec![0, 570, 600, 640]);
        assert!(!q.is_skipping());
        assert_eq!(q.stats.frames_dropped, 14);
        assert_eq!(q.stats.skips, 1);
    }

    #[test]
    fn soft_bytes_on_a_keyframe_resumes_at_it() {
        let mut q = ViewerQueue::new(limits());
        for i in 0..4 {
            let _ = q.push_media(packet(i * 10, 300, i == 0, false, 0));
        }
        assert_eq!(q.stats.skips, 1, "1200 bytes > 1000");
        assert!(q.is_skipping());
        assert!(q.is_empty());
        let _ = q.push_media(packet(50, 300, false, false, 0));
        let _ = q.push_media(packet(60, 300, true, false, 0));
        let _ = q.push_media(packet(70, 300, false, false, 0));
        let _ = q.push_media(packet(80, 300, false, false, 0));
        // Over the bytes again, but the tipping packet is not a key: skip, wait.
        let _ = q.push_media(packet(90, 300, true, false, 0));
        // ...and that one was: the viewer resumes right at it.
        assert_eq!(media_times(&q), vec![90]);
        assert!(!q.is_skipping());
        assert_eq!(q.stats.skips, 2);
    }

    #[test]
    fn never_reading_viewer_hits_the_hard_lag() {
        let mut q = ViewerQueue::new(limits());
        let mut verdict = Verdict::Ok;
        let mut t = 0;
        while verdict == Verdict::Ok && t < 10_000 {
            verdict = q.push_media(packet(t, 10, t % 200 == 0, false, 0));
            t += 40;
        }
        // Keys at 0, 600, 1200 were queued after skips; 1520 - 0 > 1500.
        assert_eq!(verdict, Verdict::TooSlow(SlowReason::Lag(1520)));
        assert!(q.stats.skips > 0);
    }

    #[test]
    fn reading_viewer_is_never_too_slow() {
        let mut q = ViewerQueue::new(limits());
        for i in 0..1000u64 {
            assert_eq!(
                q.push_media(packet(i * 40, 100, i % 5 == 0, false, 0)),
                Verdict::Ok
            );
            let n = q.queued_bytes();
            q.advance(n);
        }
        assert_eq!(q.stats.skips, 0);
        assert_eq!(q.stats.frames_dropped, 0);
    }

    #[test]
    fn caught_up_viewer_waiting_for_a_key_is_not_lagging() {
        let mut q = ViewerQueue::new(limits());
        let _ = q.push_media(packet(0, 10, true, false, 0));
        q.advance(10);
        q.wait_for_key();
        for i in 1..100u64 {
            let _ = q.push_media(packet(i * 40, 10, false, false, 0));
        }
        assert!(q.is_empty());
        assert_eq!(q.push_media(packet(4000, 10, true, false, 0)), Verdict::Ok);
        // Waiting for a key after a join or a resume is not a skip and drops nothing counted.
        assert_eq!(
            q.stats,
            QueueStats {
                bytes_sent: 10,
                ..QueueStats::default()
            }
        );
    }

    #[test]
    fn hard_bytes() {
        let mut q = ViewerQueue::new(limits());
        q.push_control(Bytes::from(vec![0u8; 6000]));
        assert_eq!(
            q.push_media(packet(0, 10, true, false, 0)),
            Verdict::TooSlow(SlowReason::Bytes(6010))
        );
    }

    #[test]
    fn primed_backlog_is_exempt_from_soft_bounds() {
        let mut q = ViewerQueue::new(limits());
        for i in 0..25u64 {
            q.push_primed(packet(i * 40, 10, i == 0, false, 0));
        }
        let _ = q.push_media(packet(1000, 10, false, false, 0));
        assert_eq!(q.stats.skips, 0);
        assert_eq!(q.entries.len(), 26);
    }
}
