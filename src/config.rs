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
    access_options(&mut opts, AccessSet::Origin);
    opts
}

fn file_gateway_options() -> Options {
    let mut opts = Options::new();
    common_options(&mut opts);
    web_options(&mut opts);
    access_options(&mut opts, AccessSet::FileGateway);
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
        access: access_config(&m, AccessSet::FileGateway)?,
        limits: limits_config(&m, AccessSet::FileGateway)?,
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
    access_options(&mut opts, AccessSet::FlvGateway);
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
        access: access_config(&m, AccessSet::FlvGateway)?,
        limits: limits_config(&m, AccessSet::FlvGateway)?,
    }))
}

// --- end of flv-gateway mode ---

// --- access control and limits (issue 12; owned by the access helper) ---

/// Who may publish, play, fetch recordings and read the API (SPEC section 6). All off by default.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// `--publish-token`: `?token=T` on the stream name, the connect app/tcUrl or the URL.
    pub publish_token: Option<crate::access::Secret>,
    /// `--play-token`.
    pub play_token: Option<crate::access::Secret>,
    /// `--auth-file`: per-stream tokens, re-read when it changes.
    pub auth_file: Option<PathBuf>,
    /// `--publish-sign-secret` (or `--sign-secret`): signed, expiring publish URLs.
    pub publish_sign_secret: Option<crate::access::Secret>,
    /// `--play-sign-secret` (or `--sign-secret`): signed, expiring play URLs.
    pub play_sign_secret: Option<crate::access::Secret>,
    pub on_publish: Option<crate::access::hook::HookUrl>,
    pub on_play: Option<crate::access::hook::HookUrl>,
    pub on_unpublish: Option<crate::access::hook::HookUrl>,
    pub on_stop: Option<crate::access::hook::HookUrl>,
    /// `--hook-timeout`: a hook call's whole budget; no answer in time refuses.
    pub hook_timeout: Duration,
    /// `--api-token`: protects `/api/*` and `/metrics`.
    pub api_token: Option<crate::access::Secret>,
    /// `--files-token`: protects recordings on the static service.
    pub files_token: Option<crate::access::Secret>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            publish_token: None,
            play_token: None,
            auth_file: None,
            publish_sign_secret: None,
            play_sign_secret: None,
            on_publish: None,
            on_play: None,
            on_unpublish: None,
            on_stop: None,
            hook_timeout: Duration::from_secs(3),
            api_token: None,
            files_token: None,
        }
    }
}

/// Caps that keep one client from crowding out the rest; 0 means no cap (except connections).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `--max-connections`; `None`: three quarters of the open-file limit
    /// (`access::limits::max_connections`).
    pub max_connections: Option<usize>,
    pub max_per_ip: usize,
    pub max_streams: usize,
    pub max_players_per_stream: usize,
    pub max_publishers_per_ip: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: None,
            max_per_ip: 200,
            max_streams: 1000,
            max_players_per_stream: 0,
            max_publishers_per_ip: 32,
        }
    }
}

/// Which process the access and limit options are for: each takes only what it can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AccessSet {
    Origin,
    FlvGateway,
    FileGateway,
}

fn access_options(opts: &mut Options, set: AccessSet) {
    use AccessSet::*;
    let all = [Origin, FlvGateway, FileGateway];
    let viewers = [Origin, FlvGateway];
    let rows: &[(&[AccessSet], &str, &str, &str)] = &[
        (&[Origin], "publish-token", "publishers must give ?token=T (stream key, app or tcUrl) [none]", "T"),
        (&viewers, "play-token", "players must give ?token=T (RTMP, HTTP-FLV, WS-FLV) [none]", "T"),
        (&viewers, "auth-file", "per-stream tokens, lines 'app/stream publish_token [play_token]', re-read on change [none]", "F"),
        (&viewers, "sign-secret", "accept ?expires=UNIX&sign=HMAC-SHA256(S, \"app/stream:expires\") for publish and play [none]", "S"),
        (&[Origin], "publish-sign-secret", "the signing secret for publish only [--sign-secret]", "S"),
        (&viewers, "play-sign-secret", "the signing secret for play only [--sign-secret]", "S"),
        (&[Origin], "on-publish", "POST each publish as JSON to this http:// URL; 2xx allows [none]", "URL"),
        (&viewers, "on-play", "POST each play as JSON to this http:// URL; 2xx allows [none]", "URL"),
        (&[Origin], "on-unpublish", "POST a notice when a publisher leaves [none]", "URL"),
        (&viewers, "on-stop", "POST a notice when a player leaves [none]", "URL"),
        (&viewers, "hook-timeout", "seconds a hook may take; no answer in time refuses [3]", "SECS"),
        (&viewers, "api-token", "/api/* and /metrics need Authorization: Bearer T or ?token=T [none]", "T"),
        (&[Origin, FileGateway], "files-token", "recordings on the static service need ?token=T [none]", "T"),
        (&all, "max-connections", "connections in all, newcomers over it closed [3/4 of the open-file limit]", "N"),
        (&all, "max-per-ip", "connections from one address; 0 = no cap [200]", "N"),
        (&viewers, "max-streams", "live streams (gateway: upstream pulls); 0 = no cap [1000]", "N"),
        (&viewers, "max-players-per-stream", "players of one stream; 0 = no cap [0]", "N"),
        (&[Origin], "max-publishers-per-ip", "streams published from one address; 0 = no cap [32]", "N"),
    ];
    for &(sets, name, help, hint) in rows {
        if sets.contains(&set) {
            opts.optopt("", name, help, hint);
        }
    }
}

/// The value of an option that only some sets define (getopts panics on an undefined name).
fn opt_in(m: &getopts::Matches, set: AccessSet, origin_only: bool, name: &str) -> Option<String> {
    if origin_only && set != AccessSet::Origin {
        return None;
    }
    m.opt_str(name)
}

/// A token or secret: non-empty, at most 1024 bytes, no spaces or control characters (it has to
/// survive a URL, an encoder's stream-key field and the auth file). Never echoed in the error.
fn secret_opt(
    value: Option<String>,
    name: &str,
) -> Result<Option<crate::access::Secret>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > 1024 => {
            err(format!("--{name}: between 1 and 1024 bytes"))
        }
        Some(v) if v.bytes().any(|b| b <= b' ' || b == 0x7f) => {
            err(format!("--{name}: no spaces or control characters"))
        }
        Some(v) => Ok(Some(crate::access::Secret::new(v))),
    }
}

fn hook_opt(
    value: Option<String>,
    name: &str,
) -> Result<Option<crate::access::hook::HookUrl>, ConfigError> {
    value
        .map(|u| {
            crate::access::hook::HookUrl::parse(&u)
                .map_err(|e| ConfigError(format!("--{name} '{}': {e}", crate::access::mask(&u))))
        })
        .transpose()
}

fn access_config(m: &getopts::Matches, set: AccessSet) -> Result<AccessConfig, ConfigError> {
    let origin = |name| opt_in(m, set, true, name);
    let viewers = |name| {
        if set == AccessSet::FileGateway {
            None
        } else {
            m.opt_str(name)
        }
    };
    let both_sign = secret_opt(viewers("sign-secret"), "sign-secret")?;
    let auth_file = viewers("auth-file").map(PathBuf::from);
    if let Some(f) = &auth_file {
        // Checked now so a bad file stops the start with its line number; the server loads it again.
        crate::access::authfile::load(f).map_err(|e| ConfigError(format!("--auth-file: {e}")))?;
    }
    let hook_timeout = match viewers("hook-timeout") {
        None => Duration::from_secs(3),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if (0.1..=60.0).contains(&v) => {
                Duration::from_millis((v * 1000.0).round() as u64)
            }
            _ => {
                return err(format!(
                    "--hook-timeout: '{s}' is not a number of seconds between 0.1 and 60"
                ))
            }
        },
    };
    Ok(AccessConfig {
        publish_token: secret_opt(origin("publish-token"), "publish-token")?,
        play_token: secret_opt(viewers("play-token"), "play-token")?,
        auth_file,
        publish_sign_secret: secret_opt(origin("publish-sign-secret"), "publish-sign-secret")?
            .or_else(|| {
                if set == AccessSet::Origin {
                    both_sign.clone()
                } else {
                    None
                }
            }),
        play_sign_secret: secret_opt(viewers("play-sign-secret"), "play-sign-secret")?
            .or(both_sign),
        on_publish: hook_opt(origin("on-publish"), "on-publish")?,
        on_play: hook_opt(viewers("on-play"), "on-play")?,
        on_unpublish: hook_opt(origin("on-unpublish"), "on-unpublish")?,
        on_stop: hook_opt(viewers("on-stop"), "on-stop")?,
        hook_timeout,
        api_token: secret_opt(viewers("api-token"), "api-token")?,
        files_token: secret_opt(
            if set == AccessSet::FlvGateway {
                None
            } else {
                m.opt_str("files-token")
            },
            "files-token",
        )?,
    })
}

fn limits_config(m: &getopts::Matches, set: AccessSet) -> Result<LimitsConfig, ConfigError> {
    let d = LimitsConfig::default();
    let count = |name: &str, default: usize, defined: bool| -> Result<usize, ConfigError> {
        if !defined {
            return Ok(default);
        }
        match m.opt_str(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= 100_000_000)
                .ok_or_else(|| {
                    ConfigError(format!("--{name}: '{s}' is not a count (0-100000000)"))
                }),
        }
    };
    let viewers = set != AccessSet::FileGateway;
    let max_connections = match m.opt_str("max-connections") {
        None => None,
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|&n| (1..=100_000_000).contains(&n))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--max-connections: '{s}' is not a count (1-100000000)"
                    ))
                })?,
        ),
    };
    Ok(LimitsConfig {
        max_connections,
        max_per_ip: count("max-per-ip", d.max_per_ip, true)?,
        max_streams: count("max-streams", d.max_streams, viewers)?,
        max_players_per_stream: count("max-players-per-stream", d.max_players_per_stream, viewers)?,
        max_publishers_per_ip: count(
            "max-publishers-per-ip",
            d.max_publishers_per_ip,
            set == AccessSet::Origin,
        )?,
    })
}

// --- end of access control and limits ---

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
        access: access_config(&m, AccessSet::Origin)?,
        limits: limits_config(&m, AccessSet::Origin)?,
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

    // --- access control and limits ---

    fn origin(a: &[&str]) -> Result<OriginConfig, ConfigError> {
        let v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        parse(&v).map(|m| match m {
            Mode::Origin(c) => c,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn access_is_off_by_default() {
        let c = origin(&[]).unwrap();
        let a = &c.access;
        assert!(a.publish_token.is_none() && a.play_token.is_none() && a.auth_file.is_none());
        assert!(a.publish_sign_secret.is_none() && a.play_sign_secret.is_none());
        assert!(a.on_publish.is_none() && a.on_play.is_none() && a.api_token.is_none());
        assert!(a.files_token.is_none());
        assert_eq!(a.hook_timeout, Duration::from_secs(3));
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(
            (
                c.limits.max_connections,
                c.limits.max_per_ip,
                c.limits.max_streams
            ),
            (None, 200, 1000)
        );
    }

    #[test]
    fn access_options_parse() {
        let c = origin(&[
            "--publish-token",
            "pub",
            "--play-token",
            "watch",
            "--sign-secret",
            "both",
            "--play-sign-secret",
            "viewers",
            "--on-publish",
            "http://127.0.0.1:8080/on_publish",
            "--on-play",
            "http://hooks.local/play?key=k",
            "--on-unpublish",
            "http://[::1]:9/u",
            "--on-stop",
            "http://127.0.0.1:9/stop",
            "--hook-timeout",
            "0.5",
            "--api-token",
            "api",
            "--files-token",
            "files",
            "--max-connections",
            "500",
            "--max-per-ip",
            "0",
            "--max-streams",
            "7",
            "--max-players-per-stream",
            "100",
            "--max-publishers-per-ip",
            "2",
        ])
        .unwrap();
        let a = &c.access;
        let s = |x: &Option<crate::access::Secret>| x.as_ref().map(|v| v.as_str().to_string());
        assert_eq!(s(&a.publish_token).as_deref(), Some("pub"));
        assert_eq!(s(&a.play_token).as_deref(), Some("watch"));
        assert_eq!(s(&a.publish_sign_secret).as_deref(), Some("both"));
        assert_eq!(
            s(&a.play_sign_secret).as_deref(),
            Some("viewers"),
            "the separate one wins"
        );
        assert_eq!(s(&a.api_token).as_deref(), Some("api"));
        assert_eq!(s(&a.files_token).as_deref(), Some("files"));
        assert_eq!(a.on_publish.as_ref().unwrap().port, 8080);
        assert_eq!(a.on_play.as_ref().unwrap().target, "/play?key=k");
        assert_eq!(a.on_unpublish.as_ref().unwrap().host, "::1");
        assert!(a.on_stop.is_some());
        assert_eq!(a.hook_timeout, Duration::from_millis(500));
        assert_eq!(
            c.limits,
            LimitsConfig {
                max_connections: Some(500),
                max_per_ip: 0,
                max_streams: 7,
                max_players_per_stream: 100,
                max_publishers_per_ip: 2,
            }
        );
        let printed = format!("{c:?}");
        for secret in ["pub\"", "watch", "both", "viewers", "\"api\"", "\"files\""] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn bad_access_values_exit_with_one_line() {
        let dir = std::env::temp_dir().join(format!("rtmpd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad_file = dir.join("auth.txt");
        std::fs::write(&bad_file, "live/cam k\nlive/cam2\n").unwrap();
        let bad_file = bad_file.to_str().unwrap().to_string();
        for (a, words) in [
            (
                vec!["--publish-token", ""],
                "--publish-token: between 1 and 1024",
            ),
            (vec!["--play-token", "s3 cret"], "--play-token: no spaces"),
            (vec!["--sign-secret", "a\tb"], "--sign-secret: no spaces"),
            (
                vec!["--on-publish", "https://h/x?token=s3cret"],
                "only http://",
            ),
            (
                vec!["--on-play", "h:80"],
                "--on-play 'h:80': not an http:// URL",
            ),
            (vec!["--on-stop", "http://h:0/"], "not a port"),
            (vec!["--hook-timeout", "0"], "--hook-timeout: '0'"),
            (vec!["--hook-timeout", "61"], "between 0.1 and 60"),
            (vec!["--hook-timeout", "x"], "between 0.1 and 60"),
            (vec!["--max-connections", "0"], "--max-connections: '0'"),
            (
                vec!["--max-per-ip", "-1"],
                "--max-per-ip: '-1' is not a count",
            ),
            (vec!["--max-streams", "lots"], "--max-streams"),
            (
                vec!["--auth-file", "/no/such/file"],
                "--auth-file: /no/such/file: ",
            ),
            (
                vec!["--auth-file", bad_file.as_str()],
                "--auth-file: line 2: no publish token",
            ),
        ] {
            let e = origin(&a).unwrap_err().0;
            assert!(e.contains(words), "{a:?}: {e}");
            assert!(
                !e.contains('\n') && !e.contains("s3cret") && !e.contains("s3 cret"),
                "{e}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gateways_take_the_access_options_they_enforce() {
        let Mode::FlvGateway(c) = parse(&args(
            "flv-gateway 8080 http://o:8501?token=up --play-token v --sign-secret s \
             --on-play http://127.0.0.1:1/p --max-per-ip 5 --max-streams 3",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.access.play_token.as_ref().unwrap().as_str(), "v");
        assert_eq!(c.access.play_sign_secret.as_ref().unwrap().as_str(), "s");
        assert!(
            c.access.publish_sign_secret.is_none(),
            "nobody publishes to a gateway"
        );
        assert!(c.access.on_play.is_some());
        assert_eq!((c.limits.max_per_ip, c.limits.max_streams), (5, 3));
        for bad in [
            "flv-gateway 8080 http://o:1 --publish-token x",
            "flv-gateway 8080 http://o:1 --on-publish http://h/",
            "flv-gateway 8080 http://o:1 --files-token x",
            "flv-gateway 8080 http://o:1 --max-publishers-per-ip 1",
            "file-gateway --play-token x",
            "file-gateway --max-streams 1",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
        let Mode::FileGateway(c) =
            parse(&args("file-gateway --files-token f --max-connections 9")).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.access.files_token.as_ref().unwrap().as_str(), "f");
        assert_eq!(c.limits.max_connections, Some(9));
    }

    #[test]
    fn help_lists_access_options_and_defaults() {
        let Mode::Help(h) = parse(&args("--help")).unwrap() else {
            panic!()
        };
        for opt in [
            "--publish-token",
            "--play-token",
            "--auth-file",
            "--sign-secret",
            "--publish-sign-secret",
            "--play-sign-secret",
            "--on-publish",
            "--on-play",
            "--on-unpublish",
            "--on-stop",
            "--hook-timeout",
            "--api-token",
            "--files-token",
            "--max-connections",
            "--max-per-ip",
            "--max-streams",
            "--max-players-per-stream",
            "--max-publishers-per-ip",
        ] {
            assert!(h.contains(opt), "{opt}");
        }
        assert!(h.contains("[200]") && h.contains("[3]") && h.contains("open-file limit"));
        let Mode::Help(g) = parse(&args("flv-gateway --help")).unwrap() else {
            panic!()
        };
        assert!(g.contains("--play-token") && !g.contains("--publish-token"));
    }
}
