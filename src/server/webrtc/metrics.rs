//! WebRTC's figures: the `webrtc` object and viewer counts of `/api/streams`, and the `/metrics`
//! lines of WHEP viewers, WHIP publishers and the audio bridges. Reads the shared `State`;
//! changes nothing.

use super::feed::bridge_counts;
use crate::media::StreamKey;
use crate::server::Server;

impl Server {
    /// WHEP sessions of `key` now (for `/api/streams`).
    pub(in crate::server) fn webrtc_viewers(&self, key: &StreamKey) -> usize {
        self.webrtc
            .as_ref()
            .map_or(0, |w| w.state.borrow().viewers_of(key))
    }

    /// `/api/streams`' `webrtc` object of a stream: its open sessions' figures (None when
    /// WebRTC is off).
    pub(in crate::server) fn webrtc_stream_stats(
        &self,
        key: &StreamKey,
    ) -> Option<serde_json::Value> {
        let w = self.webrtc.as_ref()?;
        let c = w.state.borrow().stream_totals(key);
        Some(serde_json::json!({
            "sessions": c.sessions_total,
            "bytes": c.bytes,
            "packets": c.packets,
            "frames": c.frames_sent,
            "nacks": c.nacks,
            "plis": c.plis + c.firs,
            "dropped": c.frames_dropped,
        }))
    }

    /// WHEP sessions now, every stream.
    pub(in crate::server) fn webrtc_sessions(&self) -> usize {
        self.webrtc
            .as_ref()
            .map_or(0, |w| w.state.borrow().sessions())
    }

    /// The `/metrics` lines of WHEP (nothing when it is off).
    pub(in crate::server) fn webrtc_metrics(&self) -> String {
        use std::fmt::Write;
        let Some(w) = self.webrtc.as_ref() else {
            return String::new();
        };
        let st = w.state.borrow();
        let c = st.totals();
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        metric(
            "rtmpd_webrtc_sessions",
            "gauge",
            "WHEP sessions now.",
            st.sessions() as u64,
        );
        metric(
            "rtmpd_webrtc_sessions_total",
            "counter",
            "WHEP sessions answered since start.",
            c.sessions_total,
        );
        metric(
            "rtmpd_webrtc_bytes_total",
            "counter",
            "RTP and RTCP bytes sent to WHEP viewers.",
            c.bytes,
        );
        metric(
            "rtmpd_webrtc_packets_total",
            "counter",
            "RTP packets sent to WHEP viewers.",
            c.packets,
        );
        metric(
            "rtmpd_webrtc_frames_total",
            "counter",
            "Frames sent to WHEP viewers.",
            c.frames_sent,
        );
        metric(
            "rtmpd_webrtc_nacks_total",
            "counter",
            "NACKs from WHEP viewers.",
            c.nacks,
        );
        metric(
            "rtmpd_webrtc_plis_total",
            "counter",
            "PLIs and FIRs from WHEP viewers.",
            c.plis + c.firs,
        );
        metric(
            "rtmpd_webrtc_keyframe_requests_total",
            "counter",
            "Keyframe requests from WHEP viewers (the next GOP answers).",
            c.keyframe_requests,
        );
        metric(
            "rtmpd_webrtc_dropped_total",
            "counter",
            "Frames not sent to WHEP viewers (before connecting, refused, or a full feed).",
            c.frames_dropped + c.feed_dropped,
        );
        metric(
            "rtmpd_webrtc_reorder_dropped_total",
            "counter",
            "B-frames not sent to WHEP viewers (browsers do not reorder pictures).",
            c.reorder_dropped,
        );
        let mut w = st.whip_counters;
        for p in st.whip.values() {
            w.add(&p.session.stats());
        }
        metric(
            "rtmpd_whip_publishers",
            "gauge",
            "WHIP publishers now.",
            st.whip.len() as u64,
        );
        metric(
            "rtmpd_whip_sessions_total",
            "counter",
            "WHIP offers answered since start.",
            w.sessions_total,
        );
        metric(
            "rtmpd_whip_frames_total",
            "counter",
            "Frames from WHIP publishers into the hub.",
            w.frames,
        );
        metric(
            "rtmpd_whip_bytes_total",
            "counter",
            "RTP payload bytes from WHIP publishers.",
            w.bytes,
        );
        metric(
            "rtmpd_whip_nacks_total",
            "counter",
            "NACKs sent to WHIP publishers.",
            w.nacks,
        );
        metric(
            "rtmpd_whip_keyframe_requests_total",
            "counter",
            "PLIs and FIRs sent to WHIP publishers (the keyframe clock and broken pictures).",
            w.plis,
        );
        metric(
            "rtmpd_whip_dropped_total",
            "counter",
            "WHIP video frames dropped (lost packets until the next keyframe, too large).",
            w.dropped,
        );
        // The running bridges' counters on top of the stopped ones'.
        let mut b = c;
        for f in st.feeds.values() {
            if let Some(br) = &f.bridge {
                bridge_counts(&mut b, br);
            }
        }
        metric(
            "rtmpd_webrtc_bridges_total",
            "counter",
            "Audio bridges (AAC to Opus for WHEP viewers) started.",
            b.bridges_started,
        );
        metric(
            "rtmpd_webrtc_bridge_packets_total",
            "counter",
            "Opus packets the audio bridges made.",
            b.bridge_packets,
        );
        metric(
            "rtmpd_webrtc_bridge_dropped_total",
            "counter",
            "AAC frames and Opus packets the audio bridges' queues dropped.",
            b.bridge_dropped,
        );
        m
    }
}
