//! The loop's timers: one min-heap of `(deadline in ms, TimerKey)` that every machine's next
//! deadline goes into (a connection's handshake, header, keep-alive, send, publisher-idle or
//! private-reply limit; the merged flush; the sweep; a UDP peer's retransmit or consent check).
//! A timer costs nothing until it is due: nothing walks the connections to find out.
//!
//! Cancellation is lazy: an entry names the `(token, generation)` it was set for, and the caller
//! says which generations are current (`live`); a slot reused by a new connection has a new
//! generation, so the old one's entries are skipped when they come up. Entries are never
//! removed early and a machine whose deadline moves later is not rescheduled: when its entry
//! comes due, the machine is asked again (`Server::timeout`) and sets the next one. Times are
//! milliseconds since the loop started (`Server::now_ms`). No clock here: `now` is passed in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer is for, within its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// The token's own machine: ask it what is due (a connection's limits, a UDP peer's
    /// retransmits).
    Machine,
    /// The merged write of every viewer with queued output (`--merge-write-ms`).
    Flush,
    /// Once a second: certificates, the access file, slow-viewer lines, the server's history.
    Sweep,
    /// Every 10 s: the per-stream stats lines.
    Stats,
    /// The FLV gateway's pulls (reconnects, housekeeping, read budget).
    Gateway,
    /// A parked LL-HLS request's deadline.
    Llhls,
    /// Re-check a publisher held for its recorders (bounds a missed wake-up).
    Held,
}

/// Whom a timer belongs to: a token (`server::source`), the generation of what held it when the
/// timer was set, and what for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub token: usize,
    pub generation: u64,
    pub kind: TimerKind,
}

/// A min-heap of deadlines (ms) with lazy cancellation by generation.
#[derive(Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(u64, TimerKey)>>,
}

impl TimerHeap {
    pub fn new() -> TimerHeap {
        TimerHeap::default()
    }

    /// Sets a timer at `at_ms`. The heap's storage grows to the most timers ever pending and is
    /// reused after: no allocation per timer in a steady state.
    pub fn schedule(&mut self, at_ms: u64, key: TimerKey) {
        self.heap.push(Reverse((at_ms, key)));
    }

    /// The earliest deadline of a live timer; stale entries on top are dropped on the way.
    pub fn next_deadline(&mut self, live: impl Fn(&TimerKey) -> bool) -> Option<u64> {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if live(key) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next live timer due at `now_ms` (deadline <= now), earliest first; stale ones are
    /// dropped on the way.
    pub fn pop_due(&mut self, now_ms: u64, live: impl Fn(&TimerKey) -> bool) -> Option<TimerKey> {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if *at > now_ms {
                return None;
            }
            let key = *key;
            self.heap.pop();
            if live(&key) {
                return Some(key);
            }
        }
        None
    }

    /// Entries held, stale ones included (for `/metrics` and tests).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Milliseconds since `start`, rounded up: a timer set for `at` never fires before it.
pub fn ms_ceil(start: std::time::Instant, at: std::time::Instant) -> u64 {
    let d = at.saturating_duration_since(start);
    let ms = d.as_millis() as u64;
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        ms
    } else {
        ms + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: usize, generation: u64) -> TimerKey {
        TimerKey {
            token,
            generation,
            kind: TimerKind::Machine,
        }
    }

    fn all_live(_: &TimerKey) -> bool {
        true
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let mut h = TimerHeap::new();
        h.schedule(30, key(3, 0));
        h.schedule(10, key(1, 0));
        h.schedule(20, key(2, 0));
        assert_eq!(h.next_deadline(all_live), Some(10));
        assert_eq!(h.pop_due(9, all_live), None, "nothing is due before 10");
        assert_eq!(h.pop_due(25, all_live), Some(key(1, 0)));
        assert_eq!(h.pop_due(25, all_live), Some(key(2, 0)));
        assert_eq!(h.pop_due(25, all_live), None, "30 is not due at 25");
        assert_eq!(h.next_deadline(all_live), Some(30));
        assert_eq!(
            h.pop_due(30, all_live),
            Some(key(3, 0)),
            "due at exactly 30"
        );
        assert!(h.is_empty());
        assert_eq!(h.next_deadline(all_live), None);
    }

    #[test]
    fn stale_generations_are_skipped_by_pop_and_next_deadline() {
        let mut h = TimerHeap::new();
        h.schedule(5, key(7, 1));
        h.schedule(8, key(4, 1));
        // Connection 7 closed and its slot went to a new connection (generation 2).
        h.schedule(50, key(7, 2));
        let live = |k: &TimerKey| k.token != 7 || k.generation == 2;
        assert_eq!(
            h.next_deadline(live),
            Some(8),
            "the old 7's entry is not a deadline"
        );
        assert_eq!(h.len(), 2, "and it is gone");
        assert_eq!(h.pop_due(100, live), Some(key(4, 1)));
        assert_eq!(h.pop_due(100, live), Some(key(7, 2)));
        assert_eq!(h.pop_due(100, live), None);
    }

    #[test]
    fn a_cancelled_timer_never_fires_even_when_due() {
        let mut h = TimerHeap::new();
        h.schedule(1, key(1, 1));
        h.schedule(2, key(2, 1));
        let live = |k: &TimerKey| k.token == 2;
        assert_eq!(h.pop_due(10, live), Some(key(2, 1)));
        assert!(h.is_empty());
    }

    #[test]
    fn equal_deadlines_all_fire_and_kinds_are_distinct() {
        let mut h = TimerHeap::new();
        let flush = TimerKey {
            kind: TimerKind::Flush,
            ..key(0, 0)
        };
        let sweep = TimerKey {
            kind: TimerKind::Sweep,
            ..key(0, 0)
        };
        h.schedule(100, sweep);
        h.schedule(100, flush);
        let mut got = vec![h.pop_due(100, all_live), h.pop_due(100, all_live)];
        got.sort();
        assert_eq!(got, vec![Some(flush), Some(sweep)]);
    }

    #[test]
    fn many_timers_come_out_sorted_and_storage_is_reused() {
        let mut h = TimerHeap::new();
        // 10,000 deadlines in a fixed pseudo-random order.
        let mut x: u64 = 12345;
        let mut deadline = Vec::new();
        for t in 0..10_000usize {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 40) % 60_000;
            deadline.push(at);
            h.schedule(at, key(t, 0));
        }
        let cap = h.heap.capacity();
        let (mut last, mut n) = (0, 0);
        while let Some(k) = h.pop_due(u64::MAX, all_live) {
            assert!(deadline[k.token] >= last, "out of order at {n}");
            last = deadline[k.token];
            n += 1;
        }
        assert_eq!(n, 10_000);
        // Filled again: the same storage takes them (no growth).
        for t in 0..10_000usize {
            h.schedule(t as u64, key(t, 0));
        }
        assert_eq!(h.heap.capacity(), cap);
    }

    #[test]
    fn ms_ceil_never_rounds_a_deadline_early() {
        let start = std::time::Instant::now();
        let d = std::time::Duration::from_micros(10_001);
        assert_eq!(ms_ceil(start, start + d), 11);
        assert_eq!(
            ms_ceil(start, start + std::time::Duration::from_millis(7)),
            7
        );
        assert_eq!(ms_ceil(start + d, start), 0, "a past instant is now");
    }
}
