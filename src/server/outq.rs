//! `OutQueue`: the output of a connection that is not a viewer (RTMP publishers, HTTP answers):
//! whole `Bytes` in order, with exact partial-write bookkeeping. Viewers use the hub's queue,
//! which adds the slow-viewer policy; both are written through the `Outbox` trait.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;

/// Something the loop can write to a socket with vectored writes.
pub trait Outbox {
    /// Up to `max` slices from the front, the first one past what was already written.
    fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize);
    /// `n` bytes were written.
    fn consume(&mut self, n: usize);
    fn is_empty(&self) -> bool;
}

#[derive(Default)]
pub struct OutQueue {
    items: VecDeque<Bytes>,
    /// Bytes of the front item already written.
    offset: usize,
    len: usize,
}

impl OutQueue {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.items.push_back(b);
        }
    }

    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.len - self.offset
    }
}

impl Outbox for OutQueue {
    fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        for (i, b) in self.items.iter().take(max).enumerate() {
            let skip = if i == 0 { self.offset } else { 0 };
            out.push(IoSlice::new(&b[skip..]));
        }
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.items.front() else {
                return;
            };
            let left = front.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.len -= front.len();
            self.offset = 0;
            self.items.pop_front();
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_reproduce_the_stream() {
        let parts: Vec<Bytes> = (0..20u8)
            .map(|i| Bytes::from(vec![i; i as usize % 7 + 1]))
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        for step in 1..9 {
            let mut q = OutQueue::default();
            parts.iter().for_each(|p| q.push(p.clone()));
            let mut got = Vec::new();
            while !q.is_empty() {
                let mut v = Vec::new();
                q.slices(&mut v, 3);
                let flat: Vec<u8> = v.iter().flat_map(|s| s.iter().copied()).collect();
                let n = step.min(flat.len());
                got.extend_from_slice(&flat[..n]);
                q.consume(n);
            }
            assert_eq!(got, whole, "step {step}");
            assert_eq!(q.len(), 0);
        }
    }
}

impl Outbox for crate::hub::queue::ViewerQueue {
    fn slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        self.io_slices(out, max)
    }

    fn consume(&mut self, n: usize) {
        self.advance(n)
    }

    fn is_empty(&self) -> bool {
        crate::hub::queue::ViewerQueue::is_empty(self)
    }
}
