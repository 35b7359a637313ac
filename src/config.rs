//! Command line -> validated configuration. getopts parses into a raw form; `parse` validates it
//! into a `Config` whose mode says which process runs. Errors carry a one-line reason; the binary
//! maps them to exit status 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub enum Mode {
    Origin(OriginConfig),
    Help(String),
    Version,
}

/// Settings shared by every mode that serves viewers.
#[derive(Clone, Debug)]
pub struct ViewerConfig {
    pub gop_cache: bool,
    /// Merged writes: viewers are flushed at most this often (0 = at once).
    pub merge_write: Duration,
    pub queue_soft_ms: u32,
    pub queue_hard_ms: u32,
    pub queue_soft_bytes: usize,
    pub queue_hard_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub level: log::LevelFilter,
    pub file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct OriginConfig {
    pub bind: IpAddr,
    pub rtmp_port: u16,
    pub http_port: u16,
    pub viewer: ViewerConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

fn common_options(opts: &mut Options) {
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
    opts.optopt(
        "",
        "log-level",
        "error, warn, info, debug, trace [info]",
        "L",
    );
    opts.optopt("", "log-file", "also log to this file [none]", "F");
}

fn viewer_options(opts: &mut Options) {
    opts.optflag(
        "",
        "no-gop-cache",
        "new players wait for the next keyframe instead of starting from the cached GOP",
    );
    opts.optopt(
        "",
        "merge-write-ms",
        "flush each viewer at most every N ms; 0 writes at once (more syscalls) [100]",
        "N",
    );
    opts.optopt(
        "",
        "queue-soft-ms",
        "a viewer this far behind skips to the next keyframe [4000]",
        "N",
    );
    opts.optopt(
        "",
        "queue-hard-ms",
        "a viewer this far behind is disconnected [15000]",
        "N",
    );
    opts.optopt(
        "",
        "queue-soft-bytes",
        "a viewer with this much queued skips to the next keyframe [4194304]",
        "N",
    );
    opts.optopt(
        "",
        "queue-hard-bytes",
        "a viewer with this much queued is disconnected [16777216]",
        "N",
    );
}

fn origin_options() -> Options {
    let mut opts = Options::new();
    common_options(&mut opts);
    opts.optopt("", "bind", "address for every listener [0.0.0.0]", "ADDR");
    opts.optopt(
        "",
        "rtmp-port",
        "RTMP publish and play; 0 picks a free port [1935]",
        "N",
    );
    opts.optopt(
        "",
        "http-port",
        "HTTP-FLV, WS-FLV, /api/*, /metrics; 0 picks a free port [8501]",
        "N",
    );
    viewer_options(&mut opts);
    opts
}

fn usage(opts: &Options, brief: &str) -> String {
    opts.usage(brief)
}

const ORIGIN_BRIEF: &str =
    "Usage: rtmpd [OPTIONS]\n\nThe origin: RTMP publish and play, HTTP-FLV and WebSocket-FLV.";

fn num<T: std::str::FromStr>(
    m: &getopts::Matches,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("--{name}: '{s}' is not a valid number"))),
    }
}

fn log_config(m: &getopts::Matches) -> Result<LogConfig, ConfigError> {
    let level = match m.opt_str("log-level").as_deref() {
        None | Some("info") => log::LevelFilter::Info,
        Some("error") => log::LevelFilter::Error,
        Some("warn") => log::LevelFilter::Warn,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        Some(other) => {
            return err(format!(
                "--log-level: '{other}' is not one of error, warn, info, debug, trace"
            ))
        }
    };
    Ok(LogConfig {
        level,
        file: m.opt_str("log-file").map(PathBuf::from),
    })
}

fn viewer_config(m: &getopts::Matches) -> Result<ViewerConfig, ConfigError> {
    let v = ViewerConfig {
        gop_cache: !m.opt_present("no-gop-cache"),
        merge_write: Duration::from_millis(num(m, "merge-write-ms", 100u64)?),
        queue_soft_ms: num(m, "queue-soft-ms", 4000u32)?,
        queue_hard_ms: num(m, "queue-hard-ms", 15000u32)?,
        queue_soft_bytes: num(m, "queue-soft-bytes", 4usize << 20)?,
        queue_hard_bytes: num(m, "queue-hard-bytes", 16usize << 20)?,
    };
    if v.merge_write > Duration::from_millis(1000) {
        return err("--merge-write-ms: at most 1000");
    }
    if v.queue_soft_ms >= v.queue_hard_ms || v.queue_soft_bytes >= v.queue_hard_bytes {
        return err("--queue-soft-*: each soft bound must be below its hard bound");
    }
    Ok(v)
}

fn port(m: &getopts::Matches, name: &str, default: u16) -> Result<u16, ConfigError> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("--{name}: '{s}' is not a port (0-65535)"))),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Mode, ConfigError> {
    let opts = origin_options();
    let m = opts.parse(args).map_err(|e| ConfigError(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Mode::Help(usage(&opts, ORIGIN_BRIEF)));
    }
    if m.opt_present("version") {
        return Ok(Mode::Version);
    }
    if let Some(extra) = m.free.first() {
        return err(format!(
            "unexpected argument '{extra}' (modes: flv-gateway, file-gateway, merge)"
        ));
    }
    let bind = match m.opt_str("bind") {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("--bind: '{s}' is not an IP address")))?,
    };
    Ok(Mode::Origin(OriginConfig {
        bind,
        rtmp_port: port(&m, "rtmp-port", 1935)?,
        http_port: port(&m, "http-port", 8501)?,
        viewer: viewer_config(&m)?,
        log: log_config(&m)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults() {
        let Mode::Origin(c) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!((c.rtmp_port, c.http_port), (1935, 8501));
        assert!(c.viewer.gop_cache);
        assert_eq!(c.viewer.merge_write, Duration::from_millis(100));
    }

    #[test]
    fn bad_values_have_reasons() {
        for bad in [
            "--rtmp-port 70000",
            "--bind nowhere",
            "--log-level loud",
            "--merge-write-ms x",
            "--nope",
            "extra",
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(!e.0.is_empty(), "{bad}");
        }
    }

    #[test]
    fn help_lists_defaults() {
        let Mode::Help(h) = parse(&args("--help")).unwrap() else {
            panic!()
        };
        assert!(h.contains("--rtmp-port") && h.contains("[1935]"));
    }
}
