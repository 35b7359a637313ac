//! Live media to WHEP viewers: a hub `Reader` per publish (`FeedReader`) queues the stream's
//! frames (bounded), and once per loop turn `webrtc_media` packages them (one `Packager` per
//! stream) into units, packetizes each once (`Packetizers`: the RTP payloads every viewer of
//! the stream shares), and every connected session of the stream `send_rtp`s them; an AAC stream's audio goes
//! through the audio bridge (`crate::audio::Bridge`, AAC to Opus) on its way. It does not make
//! or end sessions (`whep.rs`, `session.rs`): it closes those of a stream whose publisher left.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use log::{debug, info, warn};

use super::session::drain;
use super::{Counters, Feed, State};
use crate::audio::worker::Wake;
use crate::audio::{Bridge, BridgeOutput};
use crate::hub::reader::{Reader, ReaderState};
use crate::media::frame::{Codec, Track};
use crate::media::{Frame, StreamKey};
use crate::server::udp::PeerId;
use crate::server::Server;
use crate::webrtc::{MediaUnit, RtpUnit, UnitKind};

/// Frames a stream's feed queues between two loop turns; more are dropped (and counted).
const FEED_QUEUE: usize = 4096;

/// The codecs a WHEP offer is answered with: an AAC or MP3 stream's audio goes out as Opus (the
/// bridge).
pub(super) fn bridged(codecs: &crate::webrtc::StreamCodecs) -> crate::webrtc::StreamCodecs {
    let mut c = codecs.clone();
    if matches!(c.audio, Some(Codec::Aac | Codec::Mp3)) {
        c.audio = Some(Codec::Opus);
    }
    c
}

/// The default track's AAC (configuration or coded frame) or MP3: the bridge's input.
fn is_aac(frame: &Frame) -> bool {
    frame.track == Track::Audio
        && matches!(frame.codec, Codec::Aac | Codec::Mp3)
        && frame.track_id == 0
}

pub(super) fn last_aac_config(frames: &[Frame]) -> Option<Frame> {
    frames.iter().rev().find(|f| is_aac(f) && f.config).cloned()
}

/// One AAC frame of a feed: kept when it is the configuration, and handed to the stream's
/// bridge, which starts with the first frame that has a viewer to hear it.
fn bridge_frame(
    feed: &mut Feed,
    key: &StreamKey,
    frame: &Frame,
    bitrate: Option<u32>,
    waker: &Arc<mio::Waker>,
    counters: &mut Counters,
) {
    if frame.config {
        feed.aac_config = Some(frame.clone());
    }
    if feed.sessions.is_empty() {
        return;
    }
    if feed.bridge.is_none() {
        let waker = waker.clone();
        let wake: Wake = Arc::new(move || {
            let _ = waker.wake();
        });
        match Bridge::start(key.to_string(), bitrate, wake) {
            Ok(b) => {
                debug!("{key}: audio bridge (AAC to Opus) started for its WebRTC viewers");
                counters.bridges_started += 1;
                if !frame.config {
                    if let Some(c) = &feed.aac_config {
                        b.push(c);
                    }
                }
                feed.bridge = Some(b);
            }
            Err(e) => {
                warn!("{key}: no audio bridge for WebRTC viewers (no thread: {e})");
                return;
            }
        }
    }
    if let Some(b) = &feed.bridge {
        b.push(frame);
    }
}

/// A stopping bridge's counters into the totals.
pub(super) fn bridge_counts(c: &mut Counters, b: &Bridge) {
    use std::sync::atomic::Ordering::Relaxed;
    let sh = b.shared();
    c.bridge_frames += sh.frames_in.load(Relaxed);
    c.bridge_packets += sh.packets_out.load(Relaxed);
    c.bridge_dropped += sh.dropped_in.load(Relaxed) + sh.dropped_out.load(Relaxed);
}

/// A stream's frames for its feed: queued for the next turn, never blocking the publisher.
pub(super) struct FeedReader {
    pub(super) state: Rc<RefCell<State>>,
    pub(super) key: StreamKey,
    pub(super) feed: u64,
}

impl Reader for FeedReader {
    fn deliver(&mut self, frame: &Frame) -> ReaderState {
        if frame.bridged {
            // WebRTC viewers get the Opus as published.
            return ReaderState::Ready;
        }
        if let Ok(mut st) = self.state.try_borrow_mut() {
            let mut dropped = false;
            if let Some(f) = st.feeds.get_mut(&self.key).filter(|f| f.id == self.feed) {
                if f.sessions.is_empty() && !frame.config {
                    // No viewer now: only the codec configuration is kept up to date.
                } else if f.frames.len() < FEED_QUEUE {
                    f.frames.push_back(frame.clone());
                } else {
                    dropped = true;
                }
            }
            if dropped {
                st.counters.feed_dropped += 1;
            }
        }
        ReaderState::Ready
    }

    fn poll(&mut self, _now_ms: u64) -> ReaderState {
        ReaderState::Ready
    }

    fn frames_dropped(&self) -> u64 {
        0
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            if let Some(f) = st.feeds.get_mut(&self.key).filter(|f| f.id == self.feed) {
                f.ended = true;
            }
        }
    }
}

impl Server {
    pub(super) fn webrtc_media(&mut self) {
        let Some(w) = self.webrtc.as_ref() else {
            return;
        };
        let (state, endpoint) = (w.state.clone(), w.endpoint);
        let Some(port) = self.udp.get_mut(endpoint) else {
            return;
        };
        let mut st = state.borrow_mut();
        if st.feeds.is_empty() {
            return;
        }
        let now = self.now;
        let keys: Vec<StreamKey> = st.feeds.keys().cloned().collect();
        let mut touched: Vec<PeerId> = Vec::new();
        for key in keys {
            let Some(mut feed) = st.feeds.remove(&key) else {
                continue;
            };
            if feed.ended || !self.core.hub.is_live(&key) {
                for peer in feed.sessions.clone() {
                    if let Some(s) = st.sessions.get_mut(&peer) {
                        s.session.close(now, "the publisher left");
                    }
                    touched.push(peer);
                }
                feed.sessions.clear();
                feed.frames.clear();
                feed.ended = true;
            }
            let drops_before = feed.packager.reorder_drops();
            let opus_bitrate = st.opus_bitrate;
            // The turn's units, each packetized once for every viewer of the stream (when one
            // is connected to take it), with the time of the frame it came from.
            let any_connected = feed.sessions.iter().any(|p| {
                st.sessions
                    .get(p)
                    .is_some_and(|s| s.feed == feed.id && s.session.is_connected())
            });
            let mut turn: Vec<(Option<u64>, RtpUnit)> = Vec::new();
            while let Some(frame) = feed.frames.pop_front() {
                if is_aac(&frame) {
                    bridge_frame(
                        &mut feed,
                        &key,
                        &frame,
                        opus_bitrate,
                        &self.waker,
                        &mut st.counters,
                    );
                }
                let Some(unit) = feed.packager.push(&frame) else {
                    continue;
                };
                if any_connected {
                    turn.push((Some(frame.time), feed.packetizers.packetize(unit)));
                }
            }
            let drops = feed.packager.reorder_drops();
            st.counters.reorder_dropped += drops.pictures - drops_before.pictures;
            if drops.references > drops_before.references && feed.told_b_frames < 2 {
                feed.told_b_frames = 2;
                warn!(
                    "{key}: WebRTC drops reference B-frames (B-pyramid) to keep pictures in order: \
                     WebRTC viewers may see errors until each next keyframe (publish without \
                     B-frames or with b-pyramid off)"
                );
            } else if drops.pictures > drops_before.pictures && feed.told_b_frames < 1 {
                feed.told_b_frames = 1;
                info!(
                    "{key}: the stream has B-frames; WebRTC viewers get the pictures without them \
                     (browsers do not reorder): publish without B-frames for their full frame rate"
                );
            }
            // The bridge's Opus packets, as if published.
            while let Some(BridgeOutput::Packet(p)) = feed.bridge.as_ref().and_then(|b| b.poll()) {
                let unit = MediaUnit {
                    kind: UnitKind::Audio,
                    codec: Codec::Opus,
                    key: true,
                    pts_ms: p.time_ms,
                    data: p.data.into(),
                };
                if any_connected {
                    turn.push((None, feed.packetizers.packetize(unit)));
                }
            }
            // Each viewer queues the turn's units (the shared packets), then sends them at once.
            if !turn.is_empty() {
                for &peer in &feed.sessions {
                    let Some(s) = st.sessions.get_mut(&peer) else {
                        continue;
                    };
                    if s.feed != feed.id || !s.session.is_connected() {
                        continue;
                    }
                    for (time, rtp) in &turn {
                        // Frames the cached GOP gave it on connecting are not sent twice.
                        if time.is_some_and(|t| s.replayed_until.is_some_and(|r| t <= r)) {
                            continue;
                        }
                        s.session.send_rtp(rtp, now);
                    }
                    s.session.flush(now);
                    touched.push(peer);
                }
            }
            // The last viewer left (or the publish ended): the bridge's thread ends with it.
            if feed.sessions.is_empty() || feed.ended {
                if let Some(b) = feed.bridge.take() {
                    bridge_counts(&mut st.counters, &b);
                    debug!("{key}: audio bridge stopped (no WebRTC viewer)");
                }
            }
            // A feed stays with its reader until the publish ends (one reader per publish, however
            // many viewers come and go); without viewers it only follows the codec configuration.
            if !feed.ended {
                st.feeds.insert(key, feed);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for peer in touched {
            drain(
                &mut st,
                peer,
                &mut port.endpoint.peers,
                &self.core.hub,
                &mut self.core.limits,
                now,
            );
        }
        drop(st);
        port.endpoint.flush(self.poll.registry(), endpoint);
    }
}
