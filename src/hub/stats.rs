//! What the hub reports: per-stream and hub-wide counters for the API, `/metrics` and the
//! periodic log line, and each stream's health and 10-minute history (`stats`), sampled on the
//! loop's timer. Reads the hub's state; never changes what viewers get.

use super::stream::ViewerState;
use super::{FormKind, Hub, MetaInfo};
use crate::media::{Codec, Frame, StreamKey};
use crate::stats::health::{HealthReport, ViewerCounters};
use crate::stats::history::{self, ServerHistory, Viewers};

/// One stream, for the API and the periodic log line.
#[derive(Clone, Debug)]
pub struct StreamStats {
    pub key: StreamKey,
    /// The publisher's connection token, when live.
    pub publisher: Option<usize>,
    pub started_ms: Option<u64>,
    pub bytes_in: u64,
    pub frames_in: u64,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
    pub meta: MetaInfo,
    /// The latest `onMetaData` frame as relayed.
    pub metadata: Option<Frame>,
    /// The video sequence header in force (its picture size when no metadata says it: WHIP, SRT).
    pub video_config: Option<Frame>,
    pub viewers_rtmp: usize,
    pub viewers_http_flv: usize,
    pub viewers_ws_flv: usize,
    /// Viewers attached but not receiving yet (no publisher, or tracks unknown).
    pub viewers_waiting: usize,
    pub bytes_out: u64,
    pub skips: u64,
}

/// Hub-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubTotals {
    pub streams: usize,
    pub publishers: usize,
    pub viewers: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub skips: u64,
    pub frames_dropped: u64,
    pub slow_disconnects: u64,
    /// Frames that readers (recorders) could not take, summed over every reader so far.
    pub reader_frames_dropped: u64,
    /// Script messages over `MAX_METADATA_BYTES`, dropped.
    pub metadata_dropped: u64,
    /// The Opus to AAC bridges: started, AAC frames made, frames their queues dropped.
    pub bridges: super::bridge::BridgeCounts,
}

impl Hub {
    /// Per-stream stats (streams with a publisher or with waiting viewers).
    pub fn streams(&self) -> impl Iterator<Item = StreamStats> + '_ {
        self.streams.iter().map(move |(_, slot)| {
            let s = &slot.stream;
            let mut st = StreamStats {
                key: s.key.clone(),
                publisher: s.publisher.as_ref().map(|p| p.token),
                started_ms: s.publisher.as_ref().map(|p| p.started_ms),
                bytes_in: s.publisher.as_ref().map_or(0, |p| p.bytes_in),
                frames_in: s.publisher.as_ref().map_or(0, |p| p.frames_in),
                video_codec: s.video_codec,
                audio_codec: s.audio_codec,
                meta: s.meta.clone(),
                metadata: s.cache.meta.as_ref().map(|c| c.frame.clone()),
                video_config: s.cache.video_config.as_ref().map(|c| c.frame.clone()),
                viewers_rtmp: 0,
                viewers_http_flv: 0,
                viewers_ws_flv: 0,
                viewers_waiting: 0,
                bytes_out: s.bytes_out_closed,
                skips: 0,
            };
            for &id in &s.viewers {
                let v = &self.viewers[id];
                st.bytes_out += v.queue.stats.bytes_sent;
                st.skips += v.queue.stats.skips;
                if v.state != ViewerState::Live {
                    st.viewers_waiting += 1;
                }
                match v.form.kind() {
                    FormKind::Rtmp => st.viewers_rtmp += 1,
                    FormKind::HttpFlv => st.viewers_http_flv += 1,
                    FormKind::WsFlv => st.viewers_ws_flv += 1,
                }
            }
            st
        })
    }

    pub fn totals(&self) -> HubTotals {
        let mut t = HubTotals {
            streams: self.streams.len(),
            publishers: self
                .streams
                .iter()
                .filter(|(_, s)| s.stream.is_live())
                .count(),
            viewers: self.viewers.len(),
            bytes_in: self.closed_bytes_in,
            bytes_out: self.closed.bytes_sent,
            skips: self.closed.skips,
            frames_dropped: self.closed.frames_dropped,
            slow_disconnects: self.slow_disconnects,
            reader_frames_dropped: self.reader_frames_dropped,
            metadata_dropped: self.metadata_dropped,
            bridges: self.bridges,
        };
        for (_, s) in &self.streams {
            if let Some(b) = &s.bridge {
                t.bridges.add(b.as_ref());
            }
            t.bytes_in += s.stream.publisher.as_ref().map_or(0, |p| p.bytes_in);
            for r in &s.readers {
                t.reader_frames_dropped += r.frames_dropped();
            }
        }
        for d in &self.draining {
            t.bridges.add(d.bridge.as_ref());
        }
        for (_, v) in &self.viewers {
            t.bytes_out += v.queue.stats.bytes_sent;
            t.skips += v.queue.stats.skips;
            t.frames_dropped += v.queue.stats.frames_dropped;
        }
        t
    }

    /// Feeds each stream's health and history with the counters they need (the slow-viewer
    /// counters, the recorders' state, bytes and viewers); the loop calls it once a second.
    pub fn sample_stats(&mut self, now_ms: u64) {
        self.sample_stats_with(now_ms, &|_| 0);
    }

    /// `sample_stats`, with the viewers the hub does not count itself: a stream's WHEP
    /// sessions (`webrtc`), which share one hub reader per stream.
    pub fn sample_stats_with(&mut self, now_ms: u64, webrtc: &dyn Fn(&StreamKey) -> u32) {
        for (_, slot) in self.streams.iter_mut() {
            let s = &mut slot.stream;
            let mut counters = ViewerCounters {
                skips: s.closed_skips,
                frames_dropped: s.closed_frames_dropped,
                slow_disconnects: s.slow_disconnects,
            };
            let mut viewers = Viewers {
                webrtc: webrtc(&s.key),
                ..Viewers::default()
            };
            let mut bytes_out = s.bytes_out_closed;
            for &id in &s.viewers {
                let v = &self.viewers[id];
                counters.skips += v.queue.stats.skips;
                counters.frames_dropped += v.queue.stats.frames_dropped;
                bytes_out += v.queue.stats.bytes_sent;
                match v.form.kind() {
                    FormKind::Rtmp => viewers.rtmp += 1,
                    FormKind::HttpFlv => viewers.http_flv += 1,
                    FormKind::WsFlv => viewers.ws_flv += 1,
                }
            }
            s.health.set_viewer_counters(counters, now_ms);
            for r in &slot.readers {
                for (name, state) in r.recorders() {
                    s.health.set_recorder(name, state);
                }
            }
            let bytes_in =
                s.closed_session_bytes_in + s.publisher.as_ref().map_or(0, |p| p.bytes_in);
            s.history.sample(now_ms, bytes_in, bytes_out, viewers);
        }
    }

    /// The `health` object of a live stream for `/api/streams` (`None` without a publisher).
    pub fn health_report(&self, key: &StreamKey, now_ms: u64) -> Option<HealthReport> {
        let s = self.stream(key)?;
        s.is_live().then(|| s.health.report(now_ms))
    }

    /// The whole `/api/streams/history` answer: the server's rings and every stream's.
    pub fn history_json(&self, now_ms: u64, server: &ServerHistory) -> String {
        history::history_json(
            now_ms,
            server,
            self.streams
                .iter()
                .map(|(_, slot)| (&slot.stream.key, &slot.stream.history)),
        )
    }
}
