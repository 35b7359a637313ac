//! Writing a follower straight from its form's log. A viewer at the live edge
//! (`stream::FormLog`) with no filter on (not paused, both media on, not waiting for a keyframe
//! or skipping) gets exactly the log's packets from its cursor on: the server writes those
//! packets to its socket as they are (`Hub::edge`), with no copy into its queue, and reports how
//! much went (`Hub::edge_written`). All of it: the viewer's counters and lag reference move as if
//! the packets had been pushed and written, and it follows on from the log's head. Part of it:
//! the viewer is settled the ordinary way (the packets into its queue through the slow-viewer
//! policy) and the part written is taken off, so what a socket could not take waits in the
//! queue as before. Per viewer and flush this is a cursor compare and one write, whatever the
//! number of viewers or frames.

use std::collections::vec_deque;
use std::io::IoSlice;
use std::sync::Arc;

use super::packet::Packet;
use super::stream::ViewerState;
use super::{settle, Hub, ViewerEnd, ViewerId};

/// Names the exact packets of an edge write within one flush (no frame comes in during a
/// flush): followers with equal keys are sent the same bytes, which the server may share
/// (`server::splice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EdgeKey {
    stream: usize,
    generation: u64,
    form: usize,
    cursor: u64,
    head: u64,
}

/// A follower's packets not yet written (see the module doc).
pub struct Edge<'a> {
    pub key: EdgeKey,
    packets: vec_deque::Iter<'a, Arc<Packet>>,
    /// Other followers of the same log have packets pending: a shared copy may pay.
    pub shared: bool,
}

impl<'a> Edge<'a> {
    /// The bytes to write.
    pub fn bytes(&self) -> usize {
        self.packets.clone().map(|p| p.len()).sum()
    }

    /// Packets to write.
    pub fn count(&self) -> usize {
        self.packets.len()
    }

    /// The packets' bytes into `out` (one slice per packet, in order, at most `out.len()`);
    /// returns how many slices were set.
    pub fn slices(&self, out: &mut [IoSlice<'a>]) -> usize {
        let mut k = 0;
        for (slot, p) in out.iter_mut().zip(self.packets.clone()) {
            *slot = IoSlice::new(&p.data);
            k += 1;
        }
        k
    }
}

impl Hub {
    /// The packets follower `id` has not had, to write straight to its socket, when it follows
    /// its form's log with packets pending, no filter on and a caught-up queue, and they are
    /// within the soft bounds (so per-packet pushes would have queued them all, unchanged).
    /// None: reach it through `viewer` (which settles it) and write its queue.
    pub fn edge(&self, id: ViewerId) -> Option<Edge<'_>> {
        let v = self.viewers.get(id)?;
        let cursor = v.follow?;
        if v.paused
            || v.ended.is_some()
            || !v.audio_on
            || !v.video_on
            || v.video_wait_key
            || v.state != ViewerState::Live
            || !v.queue.is_empty()
            || !v.queue.is_drained()
            || v.queue.is_skipping()
        {
            return None;
        }
        let slot = self.streams.get(v.stream)?;
        let log = slot.stream.logs.get(v.form_idx)?;
        if cursor < log.base || cursor >= log.head() {
            return None;
        }
        let packets = log.packets.range((cursor - log.base) as usize..);
        let (mut bytes, mut first, mut last) = (0usize, u64::MAX, 0u64);
        for p in packets.clone() {
            bytes += p.len();
            first = first.min(p.time);
            last = last.max(p.time);
        }
        let limits = self.config.queue_limits();
        if bytes > limits.soft_bytes || last.saturating_sub(first) > limits.soft_ms as u64 {
            return None;
        }
        Some(Edge {
            key: EdgeKey {
                stream: v.stream,
                generation: slot.generation,
                form: v.form_idx,
                cursor,
                head: log.head(),
            },
            packets,
            shared: log.pending > 1,
        })
    }

    /// The server wrote `n` bytes of what `edge` gave for `id` (`total` in all). All of it: the
    /// viewer follows on from the log's head, counted as if the packets had gone through its
    /// queue. Less: it is settled (the packets into its queue) and the `n` bytes taken off, so
    /// the queue holds the rest; write it (and call `follow` once it drains) as usual.
    pub fn edge_written(&mut self, id: ViewerId, n: usize, total: usize) {
        let Some(v) = self.viewers.get(id) else {
            return;
        };
        let Some(cursor) = v.follow else {
            return;
        };
        let Some(slot) = self.streams.get_mut(v.stream) else {
            return;
        };
        let stream = &mut slot.stream;
        if n < total {
            if let Some(reason) = settle(stream, &mut self.viewers, id) {
                // Within the soft bounds this cannot happen; kept for the hard bounds' sake.
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
            if n > 0 {
                self.viewers[id].queue.advance(n);
            }
            return;
        }
        let log = &mut stream.logs[v.form_idx];
        if cursor < log.base || cursor >= log.head() {
            return;
        }
        let newest = log
            .packets
            .range((cursor - log.base) as usize..)
            .map(|p| p.time)
            .max()
            .unwrap_or(0);
        let head = log.head();
        let v = &mut self.viewers[id];
        v.queue.wrote_through(n, newest);
        v.follow = Some(head);
        v.list_pos = log.idle.len();
        log.idle.push(id);
        log.unpend();
    }
}
