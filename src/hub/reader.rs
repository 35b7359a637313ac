//! Hub readers that are not players (recorders): the trait the hub feeds each live frame to
//! after the players, and the back-pressure states it reports. The hub owns the readers of a
//! publish session and drops them when it ends; what a reader does with frames (a worker
//! thread, files) is its own business, and it never blocks the loop.

use crate::media::Frame;
use crate::stats::health::RecorderState;

/// What a reader says about its backlog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderState {
    /// Under its bound: the publisher may be read.
    Ready,
    /// Over its bound: hold the publisher (stop reading its socket) until `poll` says `Ready`.
    /// Players see the publisher slowed down to the reader's pace, nothing else.
    Behind,
    /// The reader gave up (its disk made no progress for too long, it logged why): drop it.
    Gone,
}

/// A bounded consumer of a stream's frames (MediaMTX's stream readers): the hub hands it every
/// normalised frame in order; it queues it without blocking and counts what it had to drop.
pub trait Reader {
    /// Takes one frame (a `Frame::bridged` one too: the audio bridge's AAC of an Opus stream,
    /// for a reader that wants it; others return `Ready`). `Behind` asks the hub to hold the publisher; frames delivered while
    /// behind are still queued up to a hard bound, past which they are dropped and counted.
    fn deliver(&mut self, frame: &Frame) -> ReaderState;
    /// Asked while the publisher is held (on the loop's wake-ups and timer): has the backlog
    /// drained? `now_ms` is the loop's clock, for the stall bound.
    fn poll(&mut self, now_ms: u64) -> ReaderState;
    /// Frames dropped so far (over the hard bound).
    fn frames_dropped(&self) -> u64;
    /// The recorders behind this reader and their state, for the stream's health. A reader
    /// that records nothing has none.
    fn recorders(&self) -> Vec<(&'static str, RecorderState)> {
        Vec::new()
    }
}
