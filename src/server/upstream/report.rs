//! The FLV gateway's reports: the 10 s stats line per pulled stream, its `/api` JSON and its
//! `/metrics` lines. Reads the pulls; changes nothing.

use log::info;
use serde::Serialize;

use super::super::Server;
use super::{secs, shown};
use crate::codec::json::round;
use crate::media::StreamKey;

/// The `upstream` object of a gateway stream in `/api/streams`.
#[derive(Serialize)]
pub(in crate::server) struct UpstreamReport {
    url: String,
    state: &'static str,
    /// One decimal, like `age_s`.
    up_s: f64,
    age_s: f64,
    last_status: Option<u16>,
    connects: u64,
    sessions: u64,
    bytes_in: u64,
    frames_in: u64,
    config_changes: u64,
    pending_viewers: usize,
}

impl Server {
    /// Every 10 s, one line per pulled stream.
    pub(in crate::server) fn log_gateway_stats(&mut self) {
        let now = self.now;
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let period = super::super::STATS_EVERY.as_secs_f64();
        for (_, p) in g.pulls.iter_mut() {
            let state = match (&p.conn, p.up_since) {
                (Some(_), Some(since)) => format!("up {:.0} s", secs(now - since)),
                (Some(_), None) => "connecting".into(),
                (None, _) => match p.last_status {
                    Some(404) => "down (404)".into(),
                    Some(0) | None => "down (unreachable)".into(),
                    Some(s) => format!("down ({s})"),
                },
            };
            let kbps =
                |now: u64, then: u64| now.saturating_sub(then) as f64 * 8.0 / 1000.0 / period;
            info!(
                "{}: upstream {state}, viewers {} (waiting {}, pending {}), in {} B ({:.0} kbps), out {} B ({:.0} kbps), uptime {:.0} s, reconnects {}",
                p.key,
                p.viewers,
                p.waiting,
                p.pending.len(),
                p.bytes_in,
                kbps(p.bytes_in, p.logged.0),
                p.bytes_out,
                kbps(p.bytes_out, p.logged.1),
                secs(now - p.created),
                p.sessions.saturating_sub(1),
            );
            p.logged = (p.bytes_in, p.bytes_out);
        }
    }

    /// The `upstream` object of a gateway stream in `/api/streams`; `None` for anything else.
    pub(in crate::server) fn upstream_report(&self, key: &StreamKey) -> Option<UpstreamReport> {
        let g = self.gateway.as_ref()?;
        let p = g.by_key.get(key).and_then(|&i| g.pulls.get(i))?;
        let now = self.now;
        let state = match (&p.conn, p.up_since) {
            (Some(_), Some(_)) => "up",
            (Some(_), None) => "connecting",
            (None, _) => "down",
        };
        Some(UpstreamReport {
            url: format!("{}{}", g.url, shown(&p.path)),
            state,
            up_s: round(p.up_since.map_or(0.0, |s| secs(now - s)), 1),
            age_s: round(secs(now - p.created), 1),
            last_status: p.last_status,
            connects: p.connects,
            sessions: p.sessions,
            bytes_in: p.bytes_in,
            frames_in: p.frames_in,
            config_changes: p.relay.config_changes,
            pending_viewers: p.pending.len(),
        })
    }

    /// Gateway gauges and counters for `/metrics` (empty in the other modes).
    pub(in crate::server) fn upstream_metrics(&self) -> String {
        let Some(g) = &self.gateway else {
            return String::new();
        };
        let up = g.pulls.iter().filter(|(_, p)| p.up_since.is_some()).count();
        let bytes: u64 = g.pulls.iter().map(|(_, p)| p.bytes_in).sum();
        let pending: usize = g.pulls.iter().map(|(_, p)| p.pending.len()).sum();
        format!(
            "# HELP rtmpd_upstreams Upstream pulls by state.\n# TYPE rtmpd_upstreams gauge\n\
             rtmpd_upstreams{{state=\"up\"}} {up}\nrtmpd_upstreams{{state=\"down\"}} {}\n\
             # HELP rtmpd_upstream_pending_viewers Viewers waiting for an upstream to answer.\n\
             # TYPE rtmpd_upstream_pending_viewers gauge\nrtmpd_upstream_pending_viewers {pending}\n\
             # HELP rtmpd_upstream_bytes_in Bytes received by the current upstream pulls.\n\
             # TYPE rtmpd_upstream_bytes_in gauge\nrtmpd_upstream_bytes_in {bytes}\n",
            g.pulls.len() - up
        )
    }
}
