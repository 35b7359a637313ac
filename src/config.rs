//! Command line -> validated configuration. getopts parses into a raw form; `parse` validates it
//! into a `Config` whose mode says which process runs (or, with `--print-config`, its text). Paths that
//! can never work (a log file in a missing folder, a data dir that is a file) are refused here. Errors
//! carry a one-line reason; the binary maps them to exit status 2. Opening files and binding ports is
//! the server's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use getopts::Options;

// The TLS listeners (issue 16 point 1).
pub mod tls;
use tls::{TlsConfig, TlsSet};

/// Kept here for callers that read it as `config::VERSION`; it lives in the crate root so that
/// the gateway can name it without importing `config` (which imports the gateway's URL type).
pub use crate::VERSION;

// Access control and limit options (issue 12), apart so config.rs stays readable.
mod access;
use access::AccessSet;
pub use access::{AccessConfig, LimitsConfig};
// The LL-HLS options (issue 16 point 3).
mod llhls;
mod retention;
mod upload;
mod webrtc;
pub use webrtc::WebRtcConfig;
// `--aac-bitrate` (the audio bridge, Opus to AAC).
mod audio;
// The SRT listener's options.
mod srt;
pub use llhls::LlhlsConfig;
pub use srt::SrtConfig;

#[derive(Clone, Debug)]
pub enum Mode {
    Origin(OriginConfig),
    FileGateway(FileGatewayConfig),
    FlvGateway(FlvGatewayConfig),
    /// `rtmpd merge DIR`: rebuild `stream_full.mp4` from a folder of fMP4 segments.
    Merge(PathBuf),
    Help(String),
    Version,
    /// `--print-config`: the effective settings of the mode the other options chose, as text.
    PrintConfig(String),
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
    /// `--https-port`: the same files over TLS.
    pub tls: TlsConfig,
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
    /// `--hls-low-latency` and its window; `None` when off.
    pub llhls: Option<LlhlsConfig>,
    /// `--rtmps-port`, `--https-port` and the certificate.
    pub tls: TlsConfig,
    /// `--webrtc-port` and `--webrtc-public-ip`; `None` with `--no-webrtc`.
    pub webrtc: Option<WebRtcConfig>,
    /// `--srt-port` and its settings; `None` with `--srt-port 0`.
    pub srt: Option<SrtConfig>,
    /// `--aac-bitrate` in bits per second (Opus streams' RTMP and FLV players).
    pub aac_bitrate: u32,
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
    opts.optflag(
        "",
        "print-config",
        "print the effective settings (defaults included) and exit",
    );
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
    opts.optopt(
        "",
        "record-queue",
        "frames queued per recording; beyond it the publisher is slowed to the disk's pace [4096]",
        "FRAMES",
    );
    retention::options(&mut opts);
    upload::options(&mut opts);
    tls::options(&mut opts, TlsSet::Origin, "everything the HTTP port serves");
    llhls::options(&mut opts);
    webrtc::options(&mut opts);
    audio::options(&mut opts);
    srt::options(&mut opts);
    web_options(&mut opts);
    viewer_options(&mut opts);
    access::options(&mut opts, AccessSet::Origin);
    opts
}

fn file_gateway_options() -> Options {
    let mut opts = Options::new();
    common_options(&mut opts);
    web_options(&mut opts);
    tls::options(&mut opts, TlsSet::HttpsOnly, "the same files");
    access::options(&mut opts, AccessSet::FileGateway);
    opts
}

const FILE_GATEWAY_BRIEF: &str = "Usage: rtmpd file-gateway [HOST [PORT [ROOT]]] [OPTIONS]\n\n\
    A static file server for recordings and pages (defaults: 0.0.0.0, 8100, the current directory).";

fn web_config(m: &getopts::Matches, web_dir: Option<PathBuf>) -> Result<WebConfig, ConfigError> {
    Ok(WebConfig {
        web_dir,
        dir_listing: m.opt_present("dir"),
        access_log: file_option(m, "access-log")?,
    })
}

/// A file we append to (`--log-file`, `--access-log`): its folder must exist, because creating
/// folders from a typo would hide the mistake, and it must not be a folder itself.
fn file_option(m: &getopts::Matches, name: &str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(s) = m.opt_str(name) else {
        return Ok(None);
    };
    let path = PathBuf::from(&s);
    if s.is_empty() || path.is_dir() {
        return err(format!("--{name}: '{s}' is a folder, not a file"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        return err(format!(
            "--{name}: the folder '{}' does not exist",
            parent.display()
        ));
    }
    Ok(Some(path))
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
        web: web_config(&m, None)?,
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::FileGateway)?,
        limits: access::limits_config(&m, AccessSet::FileGateway)?,
        tls: tls::config(&m, TlsSet::HttpsOnly)?,
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
        file: file_option(m, "log-file")?,
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
    let queue_len = num(m, "record-queue", defaults.queue_len)?;
    if !(16..=1_000_000).contains(&queue_len) {
        return err("--record-queue: between 16 and 1000000");
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
        queue_len,
        retention: retention::bounds(m)?,
        upload: upload::config(m)?.map(Box::new),
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
    /// `--https-port`: the same HTTP-FLV and WS-FLV over TLS.
    pub tls: TlsConfig,
    /// `--upstream-ca`: what an https:// upstream is verified against (None: the system's roots).
    pub upstream_ca: Option<std::path::PathBuf>,
}

const FLV_GATEWAY_BRIEF: &str = "Usage: rtmpd flv-gateway PORT UPSTREAM [OPTIONS]\n\n\
    An HTTP-FLV and WebSocket-FLV relay: each /{app}/{stream}.flv asked of it is pulled once from\n\
    UPSTREAM/{app}/{stream}.flv (an origin or another gateway) and shared by all its viewers.\n\
    UPSTREAM is http:// or https:// (verified against the system's roots, or --upstream-ca).\n\
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
    tls::options(
        &mut opts,
        TlsSet::HttpsOnly,
        "HTTP-FLV, WS-FLV and the pages",
    );
    opts.optopt(
        "",
        "upstream-ca",
        "PEM file of the certificates an https:// UPSTREAM is verified against: the CA that signed its certificate, or its own self-signed certificate [the system's roots]",
        "FILE",
    );
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
    let upstream_ca = file_option(&m, "upstream-ca")?;
    if upstream_ca.is_some() && !upstream.tls {
        return err("--upstream-ca is for an https:// UPSTREAM");
    }
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
            access_log: file_option(&m, "access-log")?,
        },
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::FlvGateway)?,
        limits: access::limits_config(&m, AccessSet::FlvGateway)?,
        tls: tls::config(&m, TlsSet::HttpsOnly)?,
        upstream_ca,
    }))
}

// --- end of flv-gateway mode ---

/// Parses the arguments after the program name. With `--print-config` the validated settings come
/// back as `Mode::PrintConfig` instead of the mode, so a bad value still exits 2 with its reason.
pub fn parse(args: &[String]) -> Result<Mode, ConfigError> {
    let mode = parse_mode(args)?;
    let wants_print = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--print-config");
    match render_config(&mode) {
        Some(text) if wants_print => Ok(Mode::PrintConfig(text)),
        _ => Ok(mode),
    }
}

/// `--print-config` text: one `option value` line per setting, defaults included, named as on the
/// command line (`no-hls false`: the flag is not given, HLS is recorded); positional arguments in capitals.
/// `None` for the modes that have no settings (help, version, merge).
pub fn render_config(mode: &Mode) -> Option<String> {
    use std::fmt::Write as _;
    fn line(out: &mut String, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(out, "{name:<18} {value}");
    }
    fn folder(p: &std::path::Path) -> String {
        // The absolute form too: "." is wherever rtmpd was started, which a service manager does not show.
        match std::fs::canonicalize(p) {
            Ok(abs) if abs != p => format!("{}  ({})", p.display(), abs.display()),
            _ => p.display().to_string(),
        }
    }
    fn file(f: &Option<PathBuf>, none: &str) -> String {
        f.as_ref()
            .map_or(none.to_string(), |f| f.display().to_string())
    }
    fn viewer(out: &mut String, v: &ViewerConfig) {
        line(out, "no-gop-cache", !v.gop_cache);
        line(out, "merge-write-ms", v.merge_write.as_millis());
        line(out, "queue-soft-ms", v.queue_soft_ms);
        line(out, "queue-hard-ms", v.queue_hard_ms);
        line(out, "queue-soft-bytes", v.queue_soft_bytes);
        line(out, "queue-hard-bytes", v.queue_hard_bytes);
    }
    fn log(out: &mut String, web: &WebConfig, l: &LogConfig) {
        line(out, "access-log", file(&web.access_log, "(stderr)"));
        line(out, "log-level", l.level.to_string().to_ascii_lowercase());
        line(out, "log-file", file(&l.file, "(none)"));
    }
    let mut out = String::new();
    match mode {
        Mode::Origin(c) => {
            let _ = writeln!(out, "# rtmpd {VERSION} origin: effective settings");
            line(&mut out, "bind", c.bind);
            line(&mut out, "rtmp-port", c.rtmp_port);
            line(&mut out, "http-port", c.http_port);
            match c.web_port {
                Some(p) => line(&mut out, "web-port", p),
                None => line(&mut out, "no-web", true),
            }
            line(&mut out, "data-dir", folder(&c.data_dir));
            match &c.web.web_dir {
                Some(d) => line(&mut out, "web-dir", folder(d)),
                None => line(&mut out, "web-dir", "(built into the binary)"),
            }
            line(&mut out, "dir", c.web.dir_listing);
            let r = &c.record;
            line(&mut out, "no-flv-record", !r.flv);
            line(&mut out, "no-hls", !r.hls);
            line(&mut out, "no-mp4", !r.mp4);
            line(
                &mut out,
                "hls-fragment",
                f64::from(r.hls_fragment_ms) / 1000.0,
            );
            line(&mut out, "hls-window", r.hls_window);
            line(
                &mut out,
                "mp4-fragment",
                f64::from(r.mp4_fragment_ms) / 1000.0,
            );
            line(&mut out, "workers", r.workers);
            line(&mut out, "record-queue", r.queue_len);
            retention::render(&mut |n, v| line(&mut out, n, v), &r.retention);
            upload::render(&mut |n, v| line(&mut out, n, v), r.upload.as_deref());
            tls::render(&mut |n, v| line(&mut out, n, v), TlsSet::Origin, &c.tls);
            llhls::render(&mut |n, v| line(&mut out, n, v), &c.llhls);
            webrtc::render(&mut |n, v| line(&mut out, n, v), &c.webrtc);
            audio::render(&mut |n, v| line(&mut out, n, v), c.aac_bitrate);
            srt::render(&mut |n, v| line(&mut out, n, v), &c.srt);
            viewer(&mut out, &c.viewer);
            log(&mut out, &c.web, &c.log);
            access::render(&mut out, AccessSet::Origin, &c.access, &c.limits);
        }
        Mode::FlvGateway(c) => {
            let _ = writeln!(out, "# rtmpd {VERSION} flv-gateway: effective settings");
            line(&mut out, "PORT", c.port);
            // Display leaves out the query, which may carry a play token.
            line(&mut out, "UPSTREAM", &c.upstream);
            match (&c.upstream_ca, c.upstream.tls) {
                (Some(p), _) => line(&mut out, "upstream-ca", p.display()),
                (None, true) => line(&mut out, "upstream-ca", "(the system's roots)"),
                (None, false) => line(&mut out, "upstream-ca", "(none: an http:// upstream)"),
            }
            line(&mut out, "bind", c.bind);
            tls::render(&mut |n, v| line(&mut out, n, v), TlsSet::HttpsOnly, &c.tls);
            viewer(&mut out, &c.viewer);
            log(&mut out, &c.web, &c.log);
            access::render(&mut out, AccessSet::FlvGateway, &c.access, &c.limits);
        }
        Mode::FileGateway(c) => {
            let _ = writeln!(out, "# rtmpd {VERSION} file-gateway: effective settings");
            line(&mut out, "HOST", c.bind);
            line(&mut out, "PORT", c.port);
            line(&mut out, "ROOT", folder(&c.root));
            line(&mut out, "dir", c.web.dir_listing);
            tls::render(&mut |n, v| line(&mut out, n, v), TlsSet::HttpsOnly, &c.tls);
            log(&mut out, &c.web, &c.log);
            access::render(&mut out, AccessSet::FileGateway, &c.access, &c.limits);
        }
        Mode::Merge(_) | Mode::Help(_) | Mode::Version | Mode::PrintConfig(_) => return None,
    }
    Some(out)
}

fn parse_mode(args: &[String]) -> Result<Mode, ConfigError> {
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
    // A missing data dir is created at start; a file there can never become one.
    if data_dir.exists() && !data_dir.is_dir() {
        return err(format!(
            "--data-dir: '{}' is a file, not a folder",
            data_dir.display()
        ));
    }
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
        web: web_config(&m, web_dir)?,
        viewer: viewer_config(&m)?,
        log: log_config(&m)?,
        access: access::access_config(&m, AccessSet::Origin)?,
        limits: access::limits_config(&m, AccessSet::Origin)?,
        llhls: llhls::config(&m)?,
        tls: tls::config(&m, TlsSet::Origin)?,
        webrtc: webrtc::config(&m)?,
        srt: srt::config(&m)?,
        aac_bitrate: audio::config(&m)?,
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

    /// The long options in a mode's `--help`, e.g. `rtmp-port`.
    fn long_options(help: &str) -> Vec<String> {
        help.split_whitespace()
            .filter_map(|w| w.strip_prefix("--"))
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    }

    /// Every option a mode has shows in its `--print-config` (a new option must say what it is set to).
    #[test]
    fn print_config_names_every_option() {
        let not_settings = ["help", "version", "print-config"];
        for (mode, extra) in [
            ("", ""),
            ("flv-gateway", " 8080 http://127.0.0.1:1"),
            ("file-gateway", ""),
        ] {
            let Mode::Help(help) = parse(&args(&format!("{mode} --help"))).unwrap() else {
                panic!()
            };
            let Mode::PrintConfig(text) =
                parse(&args(&format!("{mode}{extra} --print-config"))).unwrap()
            else {
                panic!("{mode}: --print-config did not print")
            };
            let names: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            for opt in long_options(&help) {
                // `--no-web` prints as `no-web true` only when given; `web-port` stands for both.
                if not_settings.contains(&opt.as_str()) || opt == "no-web" {
                    continue;
                }
                assert!(
                    names.contains(&opt.as_str()),
                    "{mode}: --print-config lacks {opt}:\n{text}"
                );
            }
        }
        let Mode::PrintConfig(text) = parse(&args("--no-web --no-hls --print-config")).unwrap()
        else {
            panic!()
        };
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq(["no-web", "true"])),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq(["no-hls", "true"])),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq(["no-mp4", "false"])),
            "{text}"
        );
    }

    #[test]
    fn llhls_options() {
        let Mode::Origin(c) = parse(&[]).unwrap() else {
            panic!()
        };
        assert_eq!(c.llhls, None, "off by default");
        let Mode::Origin(c) = parse(&args(
            "--hls-low-latency --llhls-part-ms 250 --llhls-segment-ms 1000 --llhls-window 6 \
             --llhls-max-mb 8 --llhls-max-waiting 5",
        ))
        .unwrap() else {
            panic!()
        };
        let l = c.llhls.unwrap();
        assert_eq!(
            (l.window.part_target_ms, l.window.segment_target_ms),
            (250, 1000)
        );
        assert_eq!(
            (l.window.segments, l.window.max_bytes, l.max_waiting),
            (6, 8 << 20, 5)
        );
        for bad in [
            "--llhls-part-ms 100",
            "--llhls-part-ms 501",
            "--llhls-segment-ms 20000",
            "--llhls-window 0",
            "--llhls-max-mb 0",
            "--llhls-max-waiting 0",
            "--llhls-part-ms x",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let Mode::PrintConfig(text) = parse(&args("--hls-low-latency --print-config")).unwrap()
        else {
            panic!()
        };
        assert!(text
            .lines()
            .any(|l| l.split_whitespace().eq(["hls-low-latency", "true"])));
        assert!(text
            .lines()
            .any(|l| l.split_whitespace().eq(["llhls-part-ms", "333"])));
    }

    #[test]
    fn help_lists_defaults() {
        let Mode::Help(h) = parse(&args("--help")).unwrap() else {
            panic!()
        };
        assert!(h.contains("--rtmp-port") && h.contains("[1935]"));
    }
}
