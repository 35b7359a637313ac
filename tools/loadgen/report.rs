//! The report: distributions (nearest-rank percentiles), the server's figures, errors by kind,
//! as text or JSON. tools/bench.sh and tools/README.md read this output: keep it stable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rtmpd::codec::json::{self, round, Pairs};
use serde_json::{json, Value};

use crate::args::{Config, Proto};
use crate::stats::Stats;
use crate::sys::{clock_ticks, ProcSample};

pub(crate) struct Dist {
    pub(crate) count: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Dist {
    /// Nearest-rank percentiles of milliseconds.
    pub(crate) fn of(mut v: Vec<f64>) -> Dist {
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        Dist {
            count: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: v.last().copied().unwrap_or(0.0),
        }
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) struct ServerFigures {
    pub(crate) pid: u32,
    pub(crate) cpu_s: f64,
    pub(crate) cpu_s_per_gb: f64,
    pub(crate) rss_start_kib: u64,
    pub(crate) rss_end_kib: u64,
    /// Highest VmRSS seen in the run (sampled every 100 ms).
    pub(crate) rss_peak_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) rss_per_viewer_kib: f64,
}

pub(crate) struct Report {
    pub(crate) url: String,
    pub(crate) proto: Proto,
    pub(crate) duration_s: f64,
    pub(crate) requested: usize,
    pub(crate) connected: usize,
    pub(crate) full: usize,
    pub(crate) failed: usize,
    pub(crate) connect: Dist,
    pub(crate) ttfk: Dist,
    pub(crate) stall: Dist,
    pub(crate) ts_gap: Dist,
    /// What the viewers' protocol parsers got (over TLS: decrypted); CPU s/GB and Mbit/s use it.
    pub(crate) bytes: u64,
    /// What their sockets gave (over TLS: ciphertext and handshakes).
    pub(crate) wire_bytes: u64,
    pub(crate) frames: u64,
    /// Over TLS: the version and cipher suite one viewer negotiated.
    pub(crate) tls_session: Option<String>,
    pub(crate) server: Option<ServerFigures>,
    pub(crate) loadgen_cpu_s: f64,
    pub(crate) errors: BTreeMap<String, usize>,
}

impl Report {
    pub(crate) fn new(
        config: &Config,
        stats: &[(Stats, bool)],
        elapsed: Duration,
        server: Option<(ProcSample, ProcSample)>,
        rss_peak_kib: u64,
        loadgen_cpu_s: f64,
    ) -> Report {
        let connected = stats.iter().filter(|(s, _)| s.ready.is_some()).count();
        let bytes: u64 = stats.iter().map(|(s, _)| s.bytes).sum();
        let mut errors = BTreeMap::new();
        for (s, _) in stats {
            if let Some(e) = &s.error {
                *errors.entry(e.clone()).or_insert(0) += 1;
            }
        }
        let server = server.map(|(a, b)| {
            let cpu_s = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / clock_ticks();
            let gb = bytes as f64 / 1e9;
            ServerFigures {
                pid: config.server_pid.unwrap_or(0),
                cpu_s,
                cpu_s_per_gb: if gb > 0.0 { cpu_s / gb } else { 0.0 },
                rss_start_kib: a.rss_kib,
                rss_end_kib: b.rss_kib,
                rss_peak_kib,
                hwm_kib: b.hwm_kib,
                rss_per_viewer_kib: if connected > 0 {
                    (b.rss_kib as f64 - a.rss_kib as f64) / connected as f64
                } else {
                    0.0
                },
            }
        });
        Report {
            url: config.url.clone(),
            proto: config.target.proto,
            duration_s: elapsed.as_secs_f64(),
            requested: config.viewers,
            connected,
            full: stats.iter().filter(|(_, f)| *f).count(),
            failed: stats.iter().filter(|(s, _)| s.error.is_some()).count(),
            connect: Dist::of(stats.iter().filter_map(|(s, _)| s.ready.map(ms)).collect()),
            ttfk: Dist::of(stats.iter().filter_map(|(s, _)| s.ttfk().map(ms)).collect()),
            stall: Dist::of(
                stats
                    .iter()
                    .filter(|(s, _)| s.last_media.is_some())
                    .map(|(s, _)| ms(s.max_stall))
                    .collect(),
            ),
            ts_gap: Dist::of(
                stats
                    .iter()
                    .filter(|(s, _)| s.last_media.is_some())
                    .map(|(s, _)| s.max_ts_gap as f64)
                    .collect(),
            ),
            bytes,
            wire_bytes: stats.iter().map(|(s, _)| s.wire_bytes).sum(),
            frames: stats.iter().map(|(s, _)| s.frames).sum(),
            tls_session: None,
            server,
            loadgen_cpu_s,
            errors,
        }
    }

    pub(crate) fn mbps(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.bytes as f64 * 8.0 / self.duration_s / 1e6
        } else {
            0.0
        }
    }

    pub(crate) fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "rtmpd-load {} ({}), {:.1} s",
            self.url,
            self.proto.name(),
            self.duration_s
        );
        let _ = writeln!(
            t,
            "viewers       requested {}, connected {}, full stream {}, failed {}",
            self.requested, self.connected, self.full, self.failed
        );
        let dist = |t: &mut String, name: &str, d: &Dist| {
            let _ = writeln!(
                t,
                "{name:<13} p50 {:.1}  p99 {:.1}  max {:.1}  (n={})",
                d.p50, d.p99, d.max, d.count
            );
        };
        dist(&mut t, "connect ms", &self.connect);
        dist(&mut t, "TTFK ms", &self.ttfk);
        dist(&mut t, "max stall ms", &self.stall);
        dist(&mut t, "max ts gap ms", &self.ts_gap);
        let _ = writeln!(
            t,
            "delivered     {:.3} GB, {} frames, {:.1} Mbit/s",
            self.bytes as f64 / 1e9,
            self.frames,
            self.mbps()
        );
        if let Some(session) = &self.tls_session {
            let _ = writeln!(
                t,
                "tls           {session}; {:.3} GB on the wire (the figures above are decrypted)",
                self.wire_bytes as f64 / 1e9
            );
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                t,
                "server        pid {}: CPU {:.2} s, {:.3} CPU s/GB; VmRSS {:.1} -> {:.1} MiB \
                 ({:.1} KiB/viewer), peak in run {:.1} MiB, VmHWM {:.1} MiB",
                s.pid,
                s.cpu_s,
                s.cpu_s_per_gb,
                s.rss_start_kib as f64 / 1024.0,
                s.rss_end_kib as f64 / 1024.0,
                s.rss_per_viewer_kib,
                s.rss_peak_kib as f64 / 1024.0,
                s.hwm_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(t, "loadgen       CPU {:.2} s", self.loadgen_cpu_s);
        for (e, n) in self.errors.iter() {
            let _ = writeln!(t, "error         {n} x {e}");
        }
        t
    }

    /// One flat JSON object (unique keys, so shell scripts can pick fields with sed). Figures
    /// keep the decimals the text shows.
    pub(crate) fn json(&self) -> String {
        let mut j: Vec<(String, Value)> = vec![
            ("url".into(), json!(self.url)),
            ("protocol".into(), json!(self.proto.name())),
            ("duration_s".into(), json!(round(self.duration_s, 3))),
            ("viewers_requested".into(), json!(self.requested)),
            ("viewers_connected".into(), json!(self.connected)),
            ("viewers_full".into(), json!(self.full)),
            ("viewers_failed".into(), json!(self.failed)),
        ];
        for (name, d) in [
            ("connect_ms", &self.connect),
            ("ttfk_ms", &self.ttfk),
            ("max_stall_ms", &self.stall),
            ("max_ts_gap_ms", &self.ts_gap),
        ] {
            j.push((format!("{name}_n"), json!(d.count)));
            j.push((format!("{name}_p50"), json!(round(d.p50, 2))));
            j.push((format!("{name}_p99"), json!(round(d.p99, 2))));
            j.push((format!("{name}_max"), json!(round(d.max, 2))));
        }
        j.extend([
            ("bytes_total".into(), json!(self.bytes)),
            ("bytes_wire_total".into(), json!(self.wire_bytes)),
            ("frames_total".into(), json!(self.frames)),
            ("mbps_total".into(), json!(round(self.mbps(), 1))),
        ]);
        if let Some(session) = &self.tls_session {
            j.push(("tls_session".into(), json!(session)));
        }
        if let Some(s) = &self.server {
            j.extend([
                ("server_pid".into(), json!(s.pid)),
                ("server_cpu_s".into(), json!(round(s.cpu_s, 3))),
                (
                    "server_cpu_s_per_gb".into(),
                    json!(round(s.cpu_s_per_gb, 4)),
                ),
                ("server_rss_start_kib".into(), json!(s.rss_start_kib)),
                ("server_rss_end_kib".into(), json!(s.rss_end_kib)),
                ("server_rss_peak_kib".into(), json!(s.rss_peak_kib)),
                ("server_hwm_kib".into(), json!(s.hwm_kib)),
                (
                    "server_rss_per_viewer_kib".into(),
                    json!(round(s.rss_per_viewer_kib, 2)),
                ),
            ]);
        }
        j.push(("loadgen_cpu_s".into(), json!(round(self.loadgen_cpu_s, 3))));
        j.push(("errors".into(), json!(self.errors)));
        json::to_string(&Pairs(j.iter().map(|(k, v)| (k, v))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let d = Dist::of((1..=200).map(|i| i as f64).collect());
        assert_eq!((d.p50, d.p99, d.max, d.count), (100.0, 198.0, 200.0, 200));
        let e = Dist::of(Vec::new());
        assert_eq!((e.p99, e.count), (0.0, 0));
    }

    /// The JSON is flat and its keys unique, in the order the scripts have always seen; the
    /// figures keep their decimals and the error kinds are escaped.
    #[test]
    fn json_is_one_flat_object() {
        let mut r = Report {
            url: "rtmp://127.0.0.1/live/s".into(),
            proto: Proto::Rtmp,
            duration_s: 10.00049,
            requested: 2,
            connected: 2,
            full: 1,
            failed: 1,
            connect: Dist::of(vec![1.234, 5.0]),
            ttfk: Dist::of(Vec::new()),
            stall: Dist::of(Vec::new()),
            ts_gap: Dist::of(Vec::new()),
            bytes: 1_250_000,
            wire_bytes: 1_300_000,
            frames: 250,
            tls_session: None,
            server: Some(ServerFigures {
                pid: 42,
                cpu_s: 0.5,
                cpu_s_per_gb: 0.79612,
                rss_start_kib: 1000,
                rss_end_kib: 1100,
                rss_peak_kib: 1200,
                hwm_kib: 1300,
                rss_per_viewer_kib: 50.0,
            }),
            loadgen_cpu_s: 0.25,
            errors: BTreeMap::new(),
        };
        r.errors.insert("read \"x\"\n".into(), 1);
        let j = r.json();
        assert!(j.starts_with("{\"url\":\"rtmp://127.0.0.1/live/s\",\"protocol\":\"rtmp\",\"duration_s\":10.0,\"viewers_requested\":2,"), "{j}");
        assert!(j.contains(",\"connect_ms_n\":2,\"connect_ms_p50\":1.23,\"connect_ms_p99\":5.0,\"connect_ms_max\":5.0,"), "{j}");
        assert!(j.contains(",\"mbps_total\":1.0,"), "{j}");
        assert!(!j.contains("tls_session"), "{j}");
        assert!(j.contains(",\"server_cpu_s_per_gb\":0.7961,"), "{j}");
        assert!(
            j.ends_with(",\"loadgen_cpu_s\":0.25,\"errors\":{\"read \\\"x\\\"\\n\":1}}"),
            "{j}"
        );
    }
}
