//! The hub's side of the audio bridge (Opus to AAC): an Opus stream's audio, made AAC by a
//! worker off the loop, for the viewers that cannot take Opus (`OutputForm::aac`). The hub
//! hands the stream's Opus to the stream's one `AudioBridge` as it arrives and fans the AAC
//! frames it gets back out to the AAC forms, once per form like any frame. How the AAC is made
//! (a thread, bounded queues) is the bridge's own business: `audio::worker::AacBridge`.

use crate::media::{Frame, StreamKey};

/// One stream's Opus to AAC bridge, as the hub drives it. Neither call blocks.
pub trait AudioBridge {
    /// One frame of the stream's default audio track (Opus: its OpusHead or a packet),
    /// normalised. False when it was dropped (the worker is behind; counted by the bridge).
    fn push(&mut self, frame: &Frame) -> bool;
    /// The next AAC frame made (`Frame::bridged`: an AAC sequence header, then AAC frames, in
    /// stream time), if any.
    fn poll(&mut self) -> Option<Frame>;
    /// AAC frames made so far (handed to the hub or dropped).
    fn frames_made(&self) -> u64 {
        0
    }
    /// Frames the bridge's queues dropped so far (either way).
    fn frames_dropped(&self) -> u64 {
        0
    }
}

/// The bridges' counts, for `/metrics`: those of ended bridges, kept by the hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeCounts {
    pub started: u64,
    pub frames: u64,
    pub dropped: u64,
}

impl BridgeCounts {
    /// Adds a bridge's counts (it ended, or for a total with the running ones).
    pub fn add(&mut self, b: &dyn AudioBridge) {
        self.frames += b.frames_made();
        self.dropped += b.frames_dropped();
    }
}

/// Starts a stream's bridge when its first Opus configuration arrives (`None`: no bridge,
/// every viewer then gets the Opus as published).
pub type BridgeFactory = Box<dyn FnMut(&StreamKey) -> Option<Box<dyn AudioBridge>>>;
