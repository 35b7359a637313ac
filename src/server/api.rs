//! `/api/streams`, `/api/server` (JSON) and `/metrics` (Prometheus text), built by hand: the
//! shapes are small and fixed, and a JSON crate would be the largest dependency we have.

use std::fmt::Write;

use super::conn::ConnState;
use super::{limits, Server};
use crate::hub::StreamStats;
use crate::media::Codec;

pub use crate::codec::json::json_str;

fn codec_name(c: Codec) -> String {
    match c {
        Codec::Avc => "H264".into(),
        Codec::Hevc => "H265".into(),
        Codec::Av1 => "AV1".into(),
        Codec::Vp9 => "VP9".into(),
        Codec::Vp8 => "VP8".into(),
        Codec::Aac => "AAC".into(),
        Codec::Mp3 => "MP3".into(),
        Codec::Opus => "Opus".into(),
        Codec::Ac3 => "AC-3".into(),
        Codec::Eac3 => "E-AC-3".into(),
        Codec::Flac => "FLAC".into(),
        Codec::OtherVideo(id) => format!("video-{id}"),
        Codec::OtherAudio(id) => format!("audio-{id}"),
        Codec::Script => "script".into(),
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(n) if n.is_finite() => format!("{}", n.round() as i64),
        _ => "null".into(),
    }
}

fn video_json(s: &StreamStats) -> String {
    match s.video_codec {
        None => "null".into(),
        Some(c) => format!(
            "{{\"codec\":{},\"width\":{},\"height\":{},\"fps\":{}}}",
            json_str(&codec_name(c)),
            num(s.meta.width),
            num(s.meta.height),
            num(s.meta.framerate)
        ),
    }
}

fn audio_json(s: &StreamStats) -> String {
    match s.audio_codec {
        None => "null".into(),
        Some(c) => format!(
            "{{\"codec\":{},\"sample_rate\":{},\"channels\":{}}}",
            json_str(&codec_name(c)),
            num(s.meta.audio_sample_rate),
            num(s.meta.audio_channels)
        ),
    }
}

/// Every per-connection bound counted in `/metrics` (listed even at 0, so a dashboard sees them).
const BOUNDS: [&str; 8] = [
    "private-output",
    "http-pending-input",
    "http-head-bytes",
    "ws-message-bytes",
    "rtmp-message-bytes",
    "rtmp-chunk-size",
    "rtmp-chunk-streams",
    "rtmp-partial-bytes",
];

impl Server {
    fn conn_counts(&self) -> (usize, usize, usize, usize) {
        let (mut rtmp, mut http_flv, mut ws_flv, mut publishers) = (0, 0, 0, 0);
        for (_, c) in self.conns.iter() {
            match &c.state {
                ConnState::Rtmp(r) => match r.role {
                    super::conn::RtmpRole::Player { .. } => rtmp += 1,
                    super::conn::RtmpRole::Publisher { .. } => publishers += 1,
                    _ => {}
                },
                ConnState::HttpFlv { .. } => http_flv += 1,
                ConnState::WsFlv { .. } => ws_flv += 1,
                ConnState::HttpHead { .. }
                | ConnState::Pending { .. }
                | ConnState::Judging { .. }
                | ConnState::LlhlsWait(_) => {}
            }
        }
        (rtmp, http_flv, ws_flv, publishers)
    }

    /// `/api/streams` for a caller without the `--api-token`: only what a viewer may see, the
    /// live streams' names and the listeners' ports (the pages build the player and publish URLs
    /// from them), and a flag saying so.
    pub(super) fn api_streams_public(&self) -> String {
        let mut out = format!(
            "{{\"restricted\":true,\"ports\":{},\"streams\":[",
            self.ports_json()
        );
        let live = self.core.hub.streams().filter(|s| s.publisher.is_some());
        for (i, s) in live.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"app\":{},\"stream\":{},\"live\":true}}",
                json_str(&s.key.app),
                json_str(&s.key.stream)
            );
        }
        out.push_str("]}");
        out
    }

    pub(super) fn api_streams(&self) -> String {
        let now_ms = self.now_ms();
        let mut out = String::from("{\"streams\":[");
        for (i, s) in self.core.hub.streams().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let peer = s
                .publisher
                .and_then(|t| self.conns.get(t))
                .map(|c| c.peer.to_string());
            let uptime = s
                .started_ms
                .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
                .unwrap_or(0.0);
            let kbps = if uptime > 0.0 {
                s.bytes_in as f64 * 8.0 / 1000.0 / uptime
            } else {
                0.0
            };
            let _ = write!(
                out,
                "{{\"app\":{},\"stream\":{},\"live\":{},\"publisher\":{},\"uptime_s\":{:.1},\"bitrate_in_kbps\":{:.0},\
                 \"bytes_in\":{},\"bytes_out\":{},\"video\":{},\"audio\":{},\
                 \"viewers\":{{\"rtmp\":{},\"http_flv\":{},\"ws_flv\":{},\"total\":{}}},\"health\":{}{}}}",
                json_str(&s.key.app),
                json_str(&s.key.stream),
                s.publisher.is_some(),
                peer.map(|p| json_str(&p)).unwrap_or_else(|| "null".into()),
                uptime,
                kbps,
                s.bytes_in,
                s.bytes_out,
                video_json(&s),
                audio_json(&s),
                s.viewers_rtmp,
                s.viewers_http_flv,
                s.viewers_ws_flv,
                s.viewers_rtmp + s.viewers_http_flv + s.viewers_ws_flv,
                self.core
                    .hub
                    .health_json(&s.key, now_ms)
                    .unwrap_or_else(|| "null".into()),
                self.upstream_json(&s.key),
            );
        }
        out.push_str("]}");
        out
    }

    /// `/api/streams/history` (schema in docs/dashboard.md).
    pub(super) fn api_history(&self) -> String {
        self.core
            .hub
            .history_json(self.now_ms(), &self.core.server_history)
    }

    pub(super) fn api_server(&self) -> String {
        let (rtmp, http_flv, ws_flv, publishers) = self.conn_counts();
        let uptime = self.started.elapsed().as_secs_f64();
        format!(
            "{{\"name\":\"rtmpd\",\"version\":{},\"mode\":{},\"started_unix\":{},\"uptime_s\":{:.1},\"pid\":{},\
             \"connections\":{},\"publishers\":{},\"players\":{{\"rtmp\":{},\"http_flv\":{},\"ws_flv\":{}}},\
             \"bytes_in\":{},\"bytes_out\":{},\"cpu_seconds\":{:.2},\"rss_bytes\":{},\"ports\":{}}}",
            json_str(crate::config::VERSION),
            json_str(self.setup.mode),
            self.started_wall.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            uptime,
            std::process::id(),
            self.conns.len(),
            publishers,
            rtmp,
            http_flv,
            ws_flv,
            self.totals.bytes_in,
            self.totals.bytes_out,
            limits::cpu_seconds(),
            limits::rss_bytes().map(|r| r.to_string()).unwrap_or_else(|| "null".into()),
            self.ports_json(),
        )
    }

    /// The listeners' real ports, so pages can build RTMP and HTTP-FLV URLs for this server.
    fn ports_json(&self) -> String {
        let mut parts = Vec::new();
        for l in &self.listeners {
            if let Ok(addr) = l.socket.local_addr() {
                parts.push(format!("\"{}\":{}", l.port_name(), addr.port()));
            }
        }
        format!("{{{}}}", parts.join(","))
    }

    pub(super) fn metrics(&self) -> String {
        let (rtmp, http_flv, ws_flv, publishers) = self.conn_counts();
        let t = self.core.hub.totals();
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, String)]| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(m, "{name}{labels} {value}");
            }
        };
        metric(
            "rtmpd_connections",
            "gauge",
            "Open connections.",
            &[("", self.conns.len().to_string())],
        );
        metric(
            "rtmpd_connections_accepted_total",
            "counter",
            "Accepted connections.",
            &[("", self.totals.accepted.to_string())],
        );
        metric(
            "rtmpd_streams",
            "gauge",
            "Live streams.",
            &[("", publishers.to_string())],
        );
        metric(
            "rtmpd_players",
            "gauge",
            "Connected players by protocol.",
            &[
                ("{protocol=\"rtmp\"}", rtmp.to_string()),
                ("{protocol=\"http_flv\"}", http_flv.to_string()),
                ("{protocol=\"ws_flv\"}", ws_flv.to_string()),
            ],
        );
        if let Some(ll) = &self.core.llhls {
            metric(
                "rtmpd_llhls_waiting",
                "gauge",
                "LL-HLS blocking requests parked.",
                &[("", ll.waiting().to_string())],
            );
        }
        metric(
            "rtmpd_bytes_in_total",
            "counter",
            "Bytes received.",
            &[("", self.totals.bytes_in.to_string())],
        );
        metric(
            "rtmpd_bytes_out_total",
            "counter",
            "Bytes sent.",
            &[("", self.totals.bytes_out.to_string())],
        );
        metric(
            "rtmpd_bytes_out_shared_total",
            "counter",
            "Of the bytes sent, those sent to live viewers from one copy shared among them (Linux).",
            &[("", self.totals.bytes_out_shared.to_string())],
        );
        metric(
            "rtmpd_recorder_skipped_tracks_total",
            "counter",
            "Tracks a recorder could not hold (codec or second track), once per recording.",
            &[("", crate::record::skipped_tracks().to_string())],
        );
        let deleted: Vec<(String, String)> = crate::record::retention::Reason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.as_str()),
                    crate::record::retention::deleted(*r).to_string(),
                )
            })
            .collect();
        let deleted: Vec<(&str, String)> = deleted
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        metric(
            "rtmpd_recordings_deleted_total",
            "counter",
            "Recording sessions deleted, by why: keep-days, max-size, min-free (retention) or api.",
            &deleted,
        );
        metric(
            "rtmpd_recordings_deleted_bytes_total",
            "counter",
            "Bytes freed by deleting recording sessions.",
            &[("", crate::record::retention::freed_bytes().to_string())],
        );
        metric(
            "rtmpd_recordings_low_space",
            "gauge",
            "1 while the data dir's file system is under --record-min-free with nothing left to delete.",
            &[("", u8::from(crate::record::retention::low_space()).to_string())],
        );
        metric(
            "rtmpd_slow_viewer_skips_total",
            "counter",
            "Times a slow viewer skipped to the next keyframe.",
            &[("", t.skips.to_string())],
        );
        metric(
            "rtmpd_slow_viewer_dropped_frames_total",
            "counter",
            "Frames dropped for slow viewers.",
            &[("", t.frames_dropped.to_string())],
        );
        metric(
            "rtmpd_slow_viewer_disconnects_total",
            "counter",
            "Slow viewers disconnected.",
            &[("", t.slow_disconnects.to_string())],
        );
        metric(
            "rtmpd_publisher_holds_total",
            "counter",
            "Times a publisher was held back (not read) because a recording was behind.",
            &[("", self.core.holds().to_string())],
        );
        metric(
            "rtmpd_recorder_dropped_frames_total",
            "counter",
            "Frames a recording could not queue (over twice its queue while held back).",
            &[("", t.reader_frames_dropped.to_string())],
        );
        metric(
            "rtmpd_refused_total",
            "counter",
            "Refused requests (access checks, limits, busy streams).",
            &[("", self.totals.refused.to_string())],
        );
        metric(
            "rtmpd_cpu_seconds_total",
            "counter",
            "CPU time used.",
            &[("", format!("{:.3}", limits::cpu_seconds()))],
        );
        if let Some(rss) = limits::rss_bytes() {
            metric(
                "rtmpd_resident_memory_bytes",
                "gauge",
                "Resident memory.",
                &[("", rss.to_string())],
            );
        }
        m.push_str(
            "# HELP rtmpd_connection_bound_total Per-connection bounds that bit (input paused or connection closed).\n\
             # TYPE rtmpd_connection_bound_total counter\n",
        );
        for name in BOUNDS {
            let n = self.totals.bounds.get(name).copied().unwrap_or(0);
            let _ = writeln!(m, "rtmpd_connection_bound_total{{bound=\"{name}\"}} {n}");
        }
        let meta = t.metadata_dropped;
        let _ = writeln!(
            m,
            "rtmpd_connection_bound_total{{bound=\"metadata-bytes\"}} {meta}"
        );
        m.push_str(&self.core.limits.metrics());
        m.push_str(&self.upstream_metrics());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
