//! Command line -> validated configuration. getopts parses into a raw form; `parse` validates it
//! into a `Config` whose mode says which process runs. Errors carry a one-line reason; the binary
//! maps them to exit status 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

// Access control and limit options (issue 12), apart so the two halves merge easily.
mod access;
use access::AccessSet;
pub use access::{AccessConfig, LimitsConfig};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug)]
pub enum Mode {
    Origin(OriginConfig),
    FileGateway(FileGatewayConfig),
    FlvGateway(FlvGatewayConfig),
    /// `rtmpd merge DIR`: rebuild `stream_full.mp4` from a folder of fMP4 segments.
    Merge(PathBuf),
    Help(String),
    Version,
}

/// The static file service: where files come from and how requests are logged.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// `--web-dir`: player pages from this folder instead of the ones built into the binary.
    pub web_dir: Option<PathBuf>,
    /// `--dir`: folder listings where a folder has no index.html.
    pub dir_listing: bool,
    /// `--access-log`: one line per request to this file instead of stderr.
    pub access_log: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct FileGatewayConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub root: PathBuf,
    pub web: WebConfig,
    pub log: LogConfig,
    /// Only `files_token` applies here.
    pub access: AccessConfig,
    pub limits: LimitsConfig,
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

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            gop_cache: true,
            merge_write: Duration::from_millis(100),
            queue_soft_ms: 4000,
            queue_hard_ms: 15000,
            queue_soft_bytes: 4 << 20,
            queue_hard_bytes: 16 << 20,
        }
    }
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
    /// `None` with `--no-web`.
    pub web_port: Option<u16>,
    pub data_dir: PathBuf,
    pub record: crate::record::RecordConfig,
    pub web: WebConfig,
    pub viewer: ViewerConfig,
    pub log: LogConfig,
    pub access: AccessConfig,
    pub limits: LimitsConfig,
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

fn web_options(opts: &mut Options) {
    opts.optflag("", "dir", "list folders that have no index.html");
    opts.optopt(
        "",
        "access-log",
        "write the access log (Common Log Format + ms) to this file [stderr]",
        "F",
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
        "HTTP-FLV, WS-FLV, /api/*, /metrics and static files; 0 picks a free port [8501]",
        "N",
    );
    opts.optopt(
        "",
        "web-port",
        "static files only: player pages and recordings; 0 picks a free port [8000]",
        "N",
    );
    opts.optflag("", "no-web", "do not open the web port");
    opts.optopt(
        "",
        "data-dir",
        "where flv/, hls/ and mp4/ are written and served from [.]",
        "DIR",
    );
    opts.optopt(
        "",
        "web-dir",
        "serve the player pages from this folder [built into the binary]",
        "DIR",
    );
    opts.optflag("", "no-flv-record", "do not record FLV files");
    opts.optflag("", "no-hls", "do not write HLS (MPEG-TS segments + m3u8)");
    opts.optflag(
        "",
        "no-mp4",
        "do not write fMP4 segments and the merged MP4",
    );
    opts.optopt(
        "",
        "hls-fragment",
        "target HLS segment length in seconds, cut at the next keyframe [4]",
        "SECS",
    );
    opts.optopt(
        "",
        "hls-window",
        "live playlist length in segments, older ones deleted; 0 keeps all [0]",
        "N",
    );
    opts.optopt(
        "",
        "mp4-fragment",
        "target fMP4 segment length in seconds; hard cut at twice it [4]",
        "SECS",
    );
    opts.optopt(
        "",
        "workers",
        "recorder worker threads [number of cores]",
        "N",
    );
    web_options(&mut opts);
    viewer_options(&mut opts);
    access::options(&mut opts, AccessSet::Origin);
    opts
}

fn file_gateway_options() -> Options {
    let mut opts = Options::new();
    common_options(&mut opts);
    web_options(&mut opts);
    access::options(&mut opts, AccessSet::FileGateway);
    opts
}

const FILE_GATEWAY_BRIEF: &str = "Usage: rtmpd file-gateway [HOST [PORT [ROOT]]] [OPTIONS]\n\n\
    A static file server for recordings and pages (defaults: 0.0.0.0, 8100, the current directory).";

fn web_config(m: &getopts::Matches, web_dir: Option<PathBuf>) -> WebConfig {
    WebConfig {
        web_dir,
        dir_listing: m.opt_present("dir"),
        access_log: m.opt_str("access-log").map(PathBuf::from),
    }
}

fn existing_dir(path: &str, what: &str) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(path);
    if p.is_dir() {
        Ok(p)
    } else {
        err(format!("{what}: '{path}' is not a folder"))
    }
}

fn parse_file_gateway(args: &[String]) -> Result<Mode, ConfigError> {
    let opts = file_gateway_options();
    let m = opts.parse(args).map_err(|e| ConfigError(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Mode::Help(usage(&opts, FILE_GATEWAY_BRIEF)));
    }
    if m.opt_present("version") {
        return Ok(Mode::Version);
    }
    if m.free.len() > 3 {
        return err(format!("file-gateway: unexpected argument '{}'", m.free[3]));
    }
    let bind = match m.free.first() {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("file-gateway HOST: '{s}' is not an IP address")))?,
    };
    let port = match m.free.get(1) {
        None => 8100,
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("file-gateway PORT: '{s}' is not a port (0-65535)")))?,
    };
    let root = existing_dir(
        m.free.get(2).map(String::as_str).unwrap_or("."),
        "file-gateway ROOT",
    )?;
    Ok(Mode::FileGateway(FileGatewayConfig {
        bind,
        port,
        root,
        web: web_config(&m, None),
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::FileGateway)?,
        limits: access::limits_config(&m, AccessSet::FileGateway)?,
    }))
}

fn usage(opts: &Options, brief: &str) -> String {
    opts.usage(brief)
}

const ORIGIN_BRIEF: &str = "Usage: rtmpd [OPTIONS]
       rtmpd flv-gateway PORT UPSTREAM [OPTIONS]          (see rtmpd flv-gateway --help)
       rtmpd file-gateway [HOST [PORT [ROOT]]] [OPTIONS]   (see rtmpd file-gateway --help)
       rtmpd merge DIR

The origin: RTMP publish and play; HTTP-FLV, WebSocket-FLV, the API and static files on the
HTTP port; pages and recordings on the web port; FLV, HLS and fMP4/MP4 recordings.";

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

/// Seconds as a positive number (fractions allowed), in milliseconds.
fn seconds_ms(m: &getopts::Matches, name: &str, default_ms: u32) -> Result<u32, ConfigError> {
    match m.opt_str(name) {
        None => Ok(default_ms),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 3600.0 => Ok((v * 1000.0).round() as u32),
            _ => err(format!(
                "--{name}: '{s}' is not a number of seconds between 0 and 3600"
            )),
        },
    }
}

fn record_config(
    m: &getopts::Matches,
    data_dir: &std::path::Path,
) -> Result<crate::record::RecordConfig, ConfigError> {
    let defaults = crate::record::RecordConfig::default();
    let workers = num(m, "workers", defaults.workers)?;
    if workers == 0 || workers > 256 {
        return err("--workers: between 1 and 256");
    }
    Ok(crate::record::RecordConfig {
        data_dir: data_dir.to_path_buf(),
        flv: !m.opt_present("no-flv-record"),
        hls: !m.opt_present("no-hls"),
        mp4: !m.opt_present("no-mp4"),
        mp4_fragment_ms: seconds_ms(m, "mp4-fragment", 4000)?,
        hls_fragment_ms: seconds_ms(m, "hls-fragment", 4000)?,
        hls_window: num(m, "hls-window", 0usize)?,
        workers,
        ..defaults
    })
}

fn port(m: &getopts::Matches, name: &str, default: u16) -> Result<u16, ConfigError> {
    match m.opt_str(name) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("--{name}: '{s}' is not a port (0-65535)"))),
    }
}

// --- flv-gateway mode (owned by the gateway helper) ---

/// `rtmpd flv-gateway PORT UPSTREAM [OPTIONS]`: an HTTP-FLV/WS-FLV relay of `UPSTREAM`.
#[derive(Clone, Debug)]
pub struct FlvGatewayConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub upstream: crate::gateway::flv::UpstreamUrl,
    pub viewer: ViewerConfig,
    pub web: WebConfig,
    pub log: LogConfig,
    /// The gateway's own viewers: play tokens, signatures and hooks (publish options do not apply).
    pub access: AccessConfig,
    pub limits: LimitsConfig,
}

const FLV_GATEWAY_BRIEF: &str = "Usage: rtmpd flv-gateway PORT UPSTREAM [OPTIONS]\n\n\
    An HTTP-FLV and WebSocket-FLV relay: each /{app}/{stream}.flv asked of it is pulled once from\n\
    UPSTREAM/{app}/{stream}.flv (an origin or another gateway) and shared by all its viewers.\n\
    Example: rtmpd flv-gateway 8080 http://10.0.0.5:8501";

fn flv_gateway_options() -> Options {
    let mut opts = Options::new();
    common_options(&mut opts);
    opts.optopt("", "bind", "address to listen on [0.0.0.0]", "ADDR");
    // The gateway serves the built-in pages but no folders, so it has no --dir.
    opts.optopt(
        "",
        "access-log",
        "write the access log (Common Log Format + ms) to this file [stderr]",
        "F",
    );
    viewer_options(&mut opts);
    access::options(&mut opts, AccessSet::FlvGateway);
    opts
}

fn parse_flv_gateway(args: &[String]) -> Result<Mode, ConfigError> {
    let opts = flv_gateway_options();
    let m = opts.parse(args).map_err(|e| ConfigError(e.to_string()))?;
    if m.opt_present("help") {
        return Ok(Mode::Help(usage(&opts, FLV_GATEWAY_BRIEF)));
    }
    if m.opt_present("version") {
        return Ok(Mode::Version);
    }
    let (Some(port), Some(upstream)) = (m.free.first(), m.free.get(1)) else {
        return err(
            "flv-gateway needs PORT and UPSTREAM, e.g. flv-gateway 8080 http://10.0.0.5:8501",
        );
    };
    if let Some(extra) = m.free.get(2) {
        return err(format!("flv-gateway: unexpected argument '{extra}'"));
    }
    let port = port.parse().or_else(|_| {
        err(format!(
            "flv-gateway PORT: '{port}' is not a port (0-65535)"
        ))
    })?;
    let upstream = crate::gateway::flv::UpstreamUrl::parse(upstream)
        .map_err(|e| ConfigError(format!("flv-gateway UPSTREAM '{upstream}': {e}")))?;
    let bind = match m.opt_str("bind") {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(s) => s
            .parse()
            .or_else(|_| err(format!("--bind: '{s}' is not an IP address")))?,
    };
    Ok(Mode::FlvGateway(FlvGatewayConfig {
        bind,
        port,
        upstream,
        viewer: viewer_config(&m)?,
        web: WebConfig {
            web_dir: None,
            dir_listing: false,
            access_log: m.opt_str("access-log").map(PathBuf::from),
        },
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::FlvGateway)?,
        limits: access::limits_config(&m, AccessSet::FlvGateway)?,
    }))
}

// --- end of flv-gateway mode ---

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Mode, ConfigError> {
    if args.first().map(String::as_str) == Some("file-gateway") {
        return parse_file_gateway(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("flv-gateway") {
        return parse_flv_gateway(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("merge") {
        return match &args[1..] {
            [h] if h == "--help" || h == "-h" => Ok(Mode::Help(
                "Usage: rtmpd merge DIR\n\nRebuilds DIR/stream_full.mp4 from the fMP4 segments in DIR \
                 (an output_merge/ folder or the stream folder above it), e.g. after a crash."
                    .into(),
            )),
            [dir] => Ok(Mode::Merge(existing_dir(dir, "merge DIR")?)),
            _ => err("usage: rtmpd merge DIR"),
        };
    }
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
    let web_dir = m
        .opt_str("web-dir")
        .map(|d| existing_dir(&d, "--web-dir"))
        .transpose()?;
    let data_dir = PathBuf::from(m.opt_str("data-dir").unwrap_or_else(|| ".".into()));
    let record = record_config(&m, &data_dir)?;
    Ok(Mode::Origin(OriginConfig {
        bind,
        rtmp_port: port(&m, "rtmp-port", 1935)?,
        http_port: port(&m, "http-port", 8501)?,
        web_port: if m.opt_present("no-web") {
            None
        } else {
            Some(port(&m, "web-port", 8000)?)
        },
        data_dir,
        record,
        web: web_config(&m, web_dir),
        viewer: viewer_config(&m)?,
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::Origin)?,
        limits: access::limits_config(&m, AccessSet::Origin)?,
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
    fn file_gateway_positional_arguments() {
        let Mode::FileGateway(c) = parse(&args("file-gateway 127.0.0.1 8200 .")).unwrap() else {
            panic!()
        };
        assert_eq!((c.bind.to_string().as_str(), c.port), ("127.0.0.1", 8200));
        let Mode::FileGateway(c) = parse(&args("file-gateway")).unwrap() else {
            panic!()
        };
        assert_eq!(c.port, 8100);
        assert!(parse(&args("file-gateway 0.0.0.0 http")).is_err());
        assert!(parse(&args("file-gateway 0.0.0.0 8100 /no/such/dir")).is_err());
    }

    #[test]
    fn flv_gateway_arguments() {
        let Mode::FlvGateway(c) = parse(&args(
            "flv-gateway 8080 http://10.0.0.5:8501 --bind 127.0.0.1 --no-gop-cache",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.port, c.upstream.port, c.bind.to_string().as_str()),
            (8080, 8501, "127.0.0.1")
        );
        assert!(!c.viewer.gop_cache);
        for bad in [
            "flv-gateway",
            "flv-gateway 8080",
            "flv-gateway x http://a:1",
            "flv-gateway 8080 rtmp://a:1",
            "flv-gateway 8080 http://a:1 extra",
            "flv-gateway 8080 http://a:1 --rtmp-port 1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let Mode::Help(h) = parse(&args("flv-gateway --help")).unwrap() else {
            panic!()
        };
        assert!(h.contains("UPSTREAM") && h.contains("--queue-hard-ms"));
    }

    #[test]
    fn help_lists_defaults() {
        let Mode::Help(h) = parse(&args("--help")).unwrap() else {
            panic!()
        };
        assert!(h.contains("--rtmp-port") && h.contains("[1935]"));
    }
}
