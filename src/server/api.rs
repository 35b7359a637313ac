//! `/api/streams`, `/api/server` (JSON, written by serde_json from the structs below) and
//! `/metrics` (Prometheus text, by hand: a few fixed lines).

use std::fmt::Write;

use serde::Serialize;

use super::conn::ConnState;
use super::upstream::UpstreamReport;
use super::{limits, Server};
use crate::codec::json::{self, round, Pairs};
use crate::hub::StreamStats;
use crate::media::Codec;
use crate::stats::health::HealthReport;

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

/// A metadata number as a whole number, `null` when unknown or not finite.
fn whole(v: Option<f64>) -> Option<i64> {
    v.filter(|n| n.is_finite()).map(|n| n.round() as i64)
}

/// An `/api/streams` entry for a caller without the `--api-token`.
#[derive(Serialize)]
struct PublicStream {
    app: String,
    stream: String,
    live: bool,
}

#[derive(Serialize)]
struct PublicStreams<P: Serialize> {
    restricted: bool,
    public_list: bool,
    ports: P,
    streams: Vec<PublicStream>,
}

#[derive(Serialize)]
struct Video {
    codec: String,
    width: Option<i64>,
    height: Option<i64>,
    fps: Option<i64>,
}

impl Video {
    fn of(s: &StreamStats) -> Option<Video> {
        // The metadata's size, else the sequence header's (publishers without onMetaData: WHIP, SRT).
        let from_config = || {
            let f = s.video_config.as_ref()?;
            let config =
                crate::mux::fmp4::track_config(f, &bytes::Bytes::copy_from_slice(f.payload()))?;
            let (w, h) = config.dimensions();
            (w > 0 && h > 0).then_some((f64::from(w), f64::from(h)))
        };
        let (width, height) = match (s.meta.width, s.meta.height) {
            (Some(w), Some(h)) => (Some(w), Some(h)),
            _ => from_config().map_or((None, None), |(w, h)| (Some(w), Some(h))),
        };
        s.video_codec.map(|c| Video {
            codec: codec_name(c),
            width: whole(width),
            height: whole(height),
            fps: whole(s.meta.framerate),
        })
    }
}

#[derive(Serialize)]
struct Audio {
    codec: String,
    sample_rate: Option<i64>,
    channels: Option<i64>,
}

impl Audio {
    fn of(s: &StreamStats) -> Option<Audio> {
        s.audio_codec.map(|c| Audio {
            codec: codec_name(c),
            sample_rate: whole(s.meta.audio_sample_rate),
            channels: whole(s.meta.audio_channels),
        })
    }
}

#[derive(Serialize)]
struct Viewers {
    rtmp: usize,
    http_flv: usize,
    ws_flv: usize,
    /// WHEP sessions.
    webrtc: usize,
    /// SRT players (`m=request`).
    srt: usize,
    total: usize,
}

/// An `/api/streams` entry (schema in docs/api.md; `health` in the module doc of `stats`).
#[derive(Serialize)]
struct StreamEntry {
    app: String,
    stream: String,
    live: bool,
    publisher: Option<String>,
    /// One decimal.
    uptime_s: f64,
    bitrate_in_kbps: u64,
    bytes_in: u64,
    bytes_out: u64,
    video: Option<Video>,
    audio: Option<Audio>,
    viewers: Viewers,
    health: Option<HealthReport>,
    /// Gateway streams only.
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<UpstreamReport>,
    /// The stream's SRT connections (publisher, players), with RTT, loss and latency.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    srt: Vec<serde_json::Value>,
    /// The stream's open WHEP sessions: how many, bytes, packets, frames, NACKs, PLIs, drops.
    #[serde(skip_serializing_if = "Option::is_none")]
    webrtc: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Streams {
    streams: Vec<StreamEntry>,
}

#[derive(Serialize)]
struct Players {
    rtmp: usize,
    http_flv: usize,
    ws_flv: usize,
    webrtc: usize,
    srt: usize,
}

#[derive(Serialize)]
struct ServerInfo<P: Serialize> {
    name: &'static str,
    version: &'static str,
    mode: &'static str,
    started_unix: u64,
    /// One decimal.
    uptime_s: f64,
    pid: u32,
    connections: usize,
    publishers: usize,
    players: Players,
    bytes_in: u64,
    bytes_out: u64,
    /// Two decimals.
    cpu_seconds: f64,
    rss_bytes: Option<u64>,
    ports: P,
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
    /// Players on the UDP protocols (SRT), of one stream or of all.
    pub(super) fn udp_players(&self, key: Option<&crate::media::StreamKey>) -> usize {
        self.udp.iter().map(|p| p.protocol.players(key)).sum()
    }

    /// Publishers on the UDP protocols (SRT, WHIP).
    fn udp_publishers(&self) -> usize {
        self.udp.iter().map(|p| p.protocol.publishers()).sum()
    }

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

    /// `/api/streams` for a caller without the `--api-token`: only what an anonymous viewer may
    /// see, the names of the live streams it may play without any credential (none with
    /// `--no-public-list`, then `"public_list":false`) and the listeners' ports (the pages build
    /// the player and publish URLs from them), and a flag saying so. A private platform's stream
    /// names are not public: its viewers type the name in.
    pub(super) fn api_streams_public(&self) -> String {
        let access = &self.core.access;
        let live = self.core.hub.streams().filter(|s| {
            s.publisher.is_some()
                && access.public_list()
                && access.anonymous_play(&s.key.app, &s.key.stream)
        });
        let streams = live
            .map(|s| PublicStream {
                app: s.key.app,
                stream: s.key.stream,
                live: true,
            })
            .collect();
        json::to_string(&PublicStreams {
            restricted: true,
            public_list: access.public_list(),
            ports: Pairs(self.ports().iter().copied()),
            streams,
        })
    }

    pub(super) fn api_streams(&self) -> String {
        let now_ms = self.now_ms();
        let mut streams = Vec::new();
        for s in self.core.hub.streams() {
            let srt: Vec<serde_json::Value> = self
                .udp
                .iter()
                .flat_map(|p| p.protocol.stream_json(&s.key))
                .collect();
            let peer = s
                .publisher
                .and_then(|t| self.peer_of(t))
                .map(|p| p.to_string());
            let uptime = s
                .started_ms
                .map(|t| now_ms.saturating_sub(t) as f64 / 1000.0)
                .unwrap_or(0.0);
            let kbps = if uptime > 0.0 {
                s.bytes_in as f64 * 8.0 / 1000.0 / uptime
            } else {
                0.0
            };
            let srt_players = self.udp_players(Some(&s.key));
            streams.push(StreamEntry {
                live: s.publisher.is_some(),
                publisher: peer,
                uptime_s: round(uptime, 1),
                bitrate_in_kbps: kbps.round() as u64,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                video: Video::of(&s),
                audio: Audio::of(&s),
                viewers: Viewers {
                    rtmp: s.viewers_rtmp,
                    http_flv: s.viewers_http_flv,
                    ws_flv: s.viewers_ws_flv,
                    webrtc: self.webrtc_viewers(&s.key),
                    srt: srt_players,
                    total: s.viewers_rtmp
                        + s.viewers_http_flv
                        + s.viewers_ws_flv
                        + self.webrtc_viewers(&s.key)
                        + srt_players,
                },
                health: self.core.hub.health_report(&s.key, now_ms),
                upstream: self.upstream_report(&s.key),
                srt,
                webrtc: self.webrtc_stream_stats(&s.key),
                app: s.key.app,
                stream: s.key.stream,
            });
        }
        json::to_string(&Streams { streams })
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
        json::to_string(&ServerInfo {
            name: "rtmpd",
            version: crate::config::VERSION,
            mode: self.setup.mode,
            started_unix: self
                .started_wall
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            uptime_s: round(uptime, 1),
            pid: std::process::id(),
            connections: self.conns.len(),
            publishers: publishers + self.udp_publishers(),
            players: Players {
                rtmp,
                http_flv,
                ws_flv,
                webrtc: self.webrtc_sessions(),
                srt: self.udp_players(None),
            },
            bytes_in: self.totals.bytes_in,
            bytes_out: self.totals.bytes_out,
            cpu_seconds: round(limits::cpu_seconds(), 2),
            rss_bytes: limits::rss_bytes(),
            ports: Pairs(self.ports().iter().copied()),
        })
    }

    /// The listeners' real ports by name (`rtmp`, `http`, ...), so pages can build RTMP and
    /// HTTP-FLV URLs for this server.
    fn ports(&self) -> Vec<(&'static str, u16)> {
        let mut out = Vec::new();
        for l in &self.listeners {
            if let Ok(addr) = l.socket.local_addr() {
                out.push((l.port_name(), addr.port()));
            }
        }
        out
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
            &[("", (publishers + self.udp_publishers()).to_string())],
        );
        metric(
            "rtmpd_players",
            "gauge",
            "Connected players by protocol.",
            &[
                ("{protocol=\"rtmp\"}", rtmp.to_string()),
                ("{protocol=\"http_flv\"}", http_flv.to_string()),
                ("{protocol=\"ws_flv\"}", ws_flv.to_string()),
                ("{protocol=\"webrtc\"}", self.webrtc_sessions().to_string()),
                ("{protocol=\"srt\"}", self.udp_players(None).to_string()),
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
        if let Some((files, bytes, failures, queued)) = crate::record::upload::stats() {
            metric(
                "rtmpd_upload_files_total",
                "counter",
                "Recording files stored in the --upload bucket.",
                &[("", files.to_string())],
            );
            metric(
                "rtmpd_upload_bytes_total",
                "counter",
                "Bytes stored in the --upload bucket.",
                &[("", bytes.to_string())],
            );
            metric(
                "rtmpd_upload_failures_total",
                "counter",
                "Upload tries that failed (each is retried with back-off).",
                &[("", failures.to_string())],
            );
            metric(
                "rtmpd_upload_queued",
                "gauge",
                "Recording files waiting to be stored in the bucket (queued or being sent).",
                &[("", queued.to_string())],
            );
        }
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
            "rtmpd_audio_bridge_aac_started_total",
            "counter",
            "Audio bridges (Opus to AAC, for the RTMP and FLV players and HLS of Opus streams) started.",
            &[("", t.bridges.started.to_string())],
        );
        metric(
            "rtmpd_audio_bridge_aac_frames_total",
            "counter",
            "AAC frames the Opus to AAC bridges made.",
            &[("", t.bridges.frames.to_string())],
        );
        metric(
            "rtmpd_audio_bridge_aac_dropped_total",
            "counter",
            "Opus frames and AAC frames the Opus to AAC bridges' queues dropped.",
            &[("", t.bridges.dropped.to_string())],
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
        m.push_str(&super::udp::metrics(&self.udp));
        m.push_str(&self.webrtc_metrics());
        let _ = writeln!(
            m,
            "# HELP rtmpd_loop_timers Timer entries pending in the event loop (stale ones included).\n\
             # TYPE rtmpd_loop_timers gauge\nrtmpd_loop_timers {}",
            self.timers.len()
        );
        m
    }
}
