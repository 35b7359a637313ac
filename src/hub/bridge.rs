//! The hub's side of the audio bridge (Opus to AAC): an Opus stream's audio, made AAC by a
//! worker off the loop, for the viewers that cannot take Opus (`OutputForm::aac`). The hub
//! hands the stream's Opus to the stream's one `AudioBridge` as it arrives and fans the AAC
//! frames it gets back out to the AAC forms, once per form like any frame. How the AAC is made
//! (a thread, bounded queues) is the bridge's own business: `audio::worker::AacBridge`.

use super::{FrameOutcome, Reader};
use crate::media::{Codec, Frame, StreamKey, Track};

/// One stream's Opus to AAC bridge, as the hub drives it. Neither call blocks.
pub trait AudioBridge {
    /// One frame of the stream's default audio track (Opus: its OpusHead or a packet),
    /// normalised. False when it was dropped (the worker is behind; counted by the bridge).
    fn push(&mut self, frame: &Frame) -> bool;
    /// The next AAC frame made (`Frame::bridged`: an AAC sequence header, then AAC frames, in
    /// stream time), if any.
    fn poll(&mut self) -> Option<Frame>;
    /// The publish ended: code what the bridge still holds, hand it over through `poll`, then
    /// stop. False when it cannot be asked (its tail is then lost; the default).
    fn finish(&mut self) -> bool {
        false
    }
    /// After `finish`: true once the last frame is queued (what `poll` gives after this
    /// returned true is the whole tail), or the bridge cannot make more.
    fn finished(&self) -> bool {
        true
    }
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

/// For an output that takes the audio bridge's AAC of an Opus stream instead of the Opus (the
/// FLV recording, LL-HLS) or beside it (fMP4): the reader's frames in, the frames it should
/// take out. The bridge's AAC sequence header comes some 300 ms after the OpusHead, after the
/// first video: from the OpusHead on, frames are held (bounded: `HOLD_FRAMES`, `HOLD_BYTES`)
/// until it comes, so the output never starts with the Opus and then switches. Then the AAC
/// header goes out first, the held frames after it. If it does not come (no bridge), the held
/// frames go out as published and the bridge's frames are ignored from then on.
#[derive(Debug)]
pub struct PreferAac {
    /// Keep the published Opus next to the AAC (the output holds two audio tracks).
    keep_opus: bool,
    state: Gate,
}

#[derive(Debug)]
enum Gate {
    /// No Opus seen yet: every published frame passes.
    Published,
    /// The OpusHead came: frames wait for the bridge's AAC sequence header.
    Holding { frames: Vec<Frame>, bytes: usize },
    /// The bridge runs: its AAC is the audio (and the Opus, when kept).
    Aac,
    /// No AAC came in time: the Opus as published.
    Opus,
}

/// What a `PreferAac` decided, for logs and `meta.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioChoice {
    /// Not decided yet, or not an Opus stream.
    Published,
    /// The bridge's AAC.
    Aac,
    /// The Opus as published: the bridge's AAC did not come in time.
    Opus,
}

impl PreferAac {
    /// Frames held at most for the AAC header (about 3 s of 25 fps video with its audio, as
    /// the HLS recorder waits; the bridge's header comes after some 15).
    pub const HOLD_FRAMES: usize = 256;
    pub const HOLD_BYTES: usize = 16 << 20;

    pub fn new(keep_opus: bool) -> PreferAac {
        PreferAac {
            keep_opus,
            state: Gate::Published,
        }
    }

    pub fn choice(&self) -> AudioChoice {
        match self.state {
            Gate::Aac => AudioChoice::Aac,
            Gate::Opus => AudioChoice::Opus,
            Gate::Published | Gate::Holding { .. } => AudioChoice::Published,
        }
    }

    /// True while frames are held for the AAC header.
    pub fn holding(&self) -> bool {
        matches!(self.state, Gate::Holding { .. })
    }

    /// Takes `frame`; appends to `out` the frames to pass on now, in order.
    pub fn push(&mut self, frame: &Frame, out: &mut Vec<Frame>) {
        let default_audio = frame.track == Track::Audio && frame.track_id == 0;
        let bridged_header = frame.bridged && default_audio && frame.config;
        match &mut self.state {
            Gate::Published => {
                if bridged_header {
                    self.state = Gate::Aac;
                    out.push(frame.clone());
                } else if frame.bridged {
                    // A bridged frame before its header: nothing to decode it with.
                } else if default_audio && frame.config && frame.codec == Codec::Opus {
                    self.state = Gate::Holding {
                        frames: vec![frame.clone()],
                        bytes: frame.data.len(),
                    };
                } else {
                    out.push(frame.clone());
                }
            }
            Gate::Holding { frames, bytes } => {
                if bridged_header {
                    let held = std::mem::take(frames);
                    self.state = Gate::Aac;
                    out.push(frame.clone());
                    for f in held {
                        if self.keeps(&f) {
                            out.push(f);
                        }
                    }
                } else if !frame.bridged {
                    *bytes += frame.data.len();
                    frames.push(frame.clone());
                    if frames.len() >= Self::HOLD_FRAMES || *bytes >= Self::HOLD_BYTES {
                        out.append(frames);
                        self.state = Gate::Opus;
                    }
                }
            }
            Gate::Aac => {
                if default_audio && !frame.bridged && frame.codec != Codec::Opus {
                    // The publisher's audio is no longer Opus: its bridge ended.
                    self.state = Gate::Published;
                    out.push(frame.clone());
                } else if self.keeps(frame) {
                    out.push(frame.clone());
                }
            }
            Gate::Opus => {
                if !frame.bridged {
                    out.push(frame.clone());
                }
            }
        }
    }

    /// The stream ended: the frames still held, as published.
    pub fn finish(&mut self, out: &mut Vec<Frame>) {
        if let Gate::Holding { frames, .. } = &mut self.state {
            out.append(frames);
            self.state = Gate::Opus;
        }
    }

    /// Whether a frame passes once the AAC is the audio.
    fn keeps(&self, f: &Frame) -> bool {
        let opus = !f.bridged && f.track == Track::Audio && f.track_id == 0;
        !opus || self.keep_opus
    }
}

/// The recorders of a publish that ended while its audio bridge still held AAC (up to a block
/// of the encoder): kept until the bridge hands that tail over (`poll_bridges`), so recordings
/// end with the last of the audio, not 277 ms before it.
pub(super) struct Draining {
    key: StreamKey,
    pub(super) bridge: Box<dyn AudioBridge>,
    readers: Vec<Box<dyn Reader>>,
    /// When `poll_bridges` first saw it (loop time), for `DRAIN_GIVE_UP_MS`.
    since_ms: Option<u64>,
}

/// How long a finished publish's recorders wait for its audio bridge's tail before they end
/// without it (the bridge codes it in a few milliseconds; this bounds a stuck one).
pub const DRAIN_GIVE_UP_MS: u64 = 2_000;

impl super::Hub {
    /// How Opus streams get their audio bridge (to AAC, for the viewers that cannot take
    /// Opus); without one, every viewer gets the Opus.
    pub fn set_bridge_factory(&mut self, f: BridgeFactory) {
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
    pub(super) fn drain_bridge(&mut self, i: usize) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::TAG_AUDIO;
    use bytes::Bytes;

    fn opus(time: u64, config: bool) -> Frame {
        let data: &'static [u8] = if config {
            b"\x90OpusOpusHead"
        } else {
            b"\x91Opus\xfc\x00"
        };
        let mut f = Frame::parse(TAG_AUDIO, time as u32, Bytes::from_static(data)).unwrap();
        f.time = time;
        f
    }

    fn aac(time: u64, config: bool) -> Frame {
        let b = if config { 0 } else { 1 };
        let mut f = Frame::parse(
            TAG_AUDIO,
            time as u32,
            Bytes::from(vec![0xaf, b, 0x11, 0x90]),
        )
        .unwrap();
        f.time = time;
        f.bridged = true;
        f
    }

    fn video(time: u64, config: bool) -> Frame {
        let b = if config { 0 } else { 1 };
        let mut f = Frame::parse(9, time as u32, Bytes::from(vec![0x17, b, 0, 0, 0])).unwrap();
        f.time = time;
        f
    }

    /// (time, is video, is bridged, is config) of what came out.
    fn run(gate: &mut PreferAac, frames: &[Frame]) -> Vec<(u64, bool, bool, bool)> {
        let mut out = Vec::new();
        for f in frames {
            gate.push(f, &mut out);
        }
        out.iter()
            .map(|f| (f.time, f.track == Track::Video, f.bridged, f.config))
            .collect()
    }

    #[test]
    fn an_opus_stream_starts_with_the_aac_header_and_drops_or_keeps_the_opus() {
        let frames = [
            video(0, true),
            opus(0, true),
            video(0, false),
            opus(0, false),
            video(40, false),
            opus(20, false),
            aac(0, true),
            aac(0, false),
            video(80, false),
            opus(40, false),
            aac(21, false),
        ];
        let mut g = PreferAac::new(false);
        let out = run(&mut g, &frames);
        assert_eq!(g.choice(), AudioChoice::Aac);
        assert_eq!(
            out,
            [
                (0, true, false, true),
                (0, false, true, true),
                (0, true, false, false),
                (40, true, false, false),
                (0, false, true, false),
                (80, true, false, false),
                (21, false, true, false),
            ]
        );
        let mut g = PreferAac::new(true);
        let out = run(&mut g, &frames);
        // The AAC header first, then every held frame (the Opus too), then both as they come.
        assert_eq!(out.len(), frames.len());
        assert_eq!(out[1], (0, false, true, true));
        assert_eq!(out[2], (0, false, false, true), "the OpusHead, held");
        assert_eq!(out.iter().filter(|f| f.2).count(), 3);
    }

    #[test]
    fn without_a_bridge_the_opus_goes_out_after_the_bounded_wait() {
        let mut g = PreferAac::new(false);
        let mut frames = vec![video(0, true), opus(0, true)];
        // The OpusHead and the frames after it, up to the bound.
        for i in 0..PreferAac::HOLD_FRAMES as u64 - 1 {
            frames.push(video(i * 40, false));
        }
        let out = run(&mut g, &frames[..frames.len() - 1]);
        assert_eq!(out.len(), 1, "held: {out:?}");
        assert!(g.holding());
        let out = run(&mut g, &frames[frames.len() - 1..]);
        assert_eq!(out.len(), PreferAac::HOLD_FRAMES);
        assert_eq!(g.choice(), AudioChoice::Opus);
        // A late AAC is ignored: the output keeps the form it started with.
        assert!(run(&mut g, &[aac(0, true), aac(0, false)]).is_empty());
        assert_eq!(run(&mut g, &[opus(9000, false)]).len(), 1);
        // At the end, what is held goes out as published.
        let mut g = PreferAac::new(false);
        run(&mut g, &[opus(0, true), video(0, false)]);
        let mut out = Vec::new();
        g.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(g.choice(), AudioChoice::Opus);
    }

    #[test]
    fn an_aac_stream_passes_untouched_and_a_switch_to_aac_ends_the_bridged_form() {
        let mut g = PreferAac::new(false);
        let mut plain = aac(0, true);
        plain.bridged = false;
        assert_eq!(run(&mut g, &[video(0, true), plain.clone()]).len(), 2);
        assert_eq!(g.choice(), AudioChoice::Published);
        // Bridged then published AAC: the bridge ended, the publisher's AAC is the audio.
        let mut g = PreferAac::new(false);
        run(&mut g, &[opus(0, true), aac(0, true)]);
        assert_eq!(g.choice(), AudioChoice::Aac);
        assert_eq!(run(&mut g, &[plain]).len(), 1);
        assert_eq!(g.choice(), AudioChoice::Published);
        assert!(run(&mut g, &[aac(50, false)]).is_empty());
    }
}

/// Test streams as an Opus publisher and its bridge make them.
#[cfg(test)]
pub(crate) mod testutil {
    use crate::media::frame::TAG_AUDIO;
    use crate::media::{Codec, Frame, Track};
    use bytes::Bytes;

    /// A 48 kHz stereo OpusHead (Enhanced RTMP SequenceStart) at `time`.
    pub fn opus_head(time: u64) -> Frame {
        let data = b"\x90OpusOpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00".to_vec();
        let mut f = Frame::parse(TAG_AUDIO, time as u32, Bytes::from(data)).unwrap();
        f.time = time;
        f
    }

    /// One 20 ms Opus packet (CodedFrames) at `time`.
    pub fn opus_packet(time: u64) -> Frame {
        let mut f = Frame::parse(
            TAG_AUDIO,
            time as u32,
            Bytes::from_static(b"\x91Opus\xfc\xff\xfe"),
        )
        .unwrap();
        f.time = time;
        f
    }

    /// `frames` (an AAC stream) as the hub hands an Opus stream with a bridge to its readers:
    /// the AAC becomes Opus (one packet per AAC frame, at its time, the OpusHead for the AAC
    /// header), and the AAC comes as the bridge's (`bridged`), `lag_ms` behind in arrival
    /// order. Returns the frames and how many AAC frames (header excluded) there were.
    pub fn opus_with_bridge(frames: &[Frame], lag_ms: u64) -> (Vec<Frame>, usize) {
        let mut out = Vec::new();
        let mut pending: std::collections::VecDeque<Frame> = Default::default();
        let mut aac = 0;
        for f in frames {
            if f.track == Track::Audio && f.codec == Codec::Aac {
                out.push(if f.config {
                    opus_head(f.time)
                } else {
                    aac += 1;
                    opus_packet(f.time)
                });
                let mut b = f.clone();
                b.bridged = true;
                pending.push_back(b);
                continue;
            }
            while pending
                .front()
                .is_some_and(|b| b.time + lag_ms <= f.time && !f.config)
            {
                out.extend(pending.pop_front());
            }
            out.push(f.clone());
        }
        out.extend(pending);
        (out, aac)
    }
}
