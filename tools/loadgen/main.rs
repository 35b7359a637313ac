//! rtmpd-load: opens N viewers of one live stream over RTMP, HTTP-FLV or WS-FLV from one thread
//! (one `mio::Poll`) and reports per run: viewers that received the full stream, time to first
//! keyframe, stalls, bytes, and the server's CPU time and memory read from /proc. Not a player:
//! media is parsed only as far as counting frames and spotting keyframes.
//!
//! "Full stream" means: the viewer got its first keyframe (audio-only: first audio frame), no
//! gap between two reads carrying media exceeded 2 s, no frame was missing (no jump of more than
//! 500 ms between the timestamps of consecutive frames of a track, which a skip to the next
//! keyframe would cause), its last media arrived within 1 s of the end of the run, and the
//! connection saw no error or close before the end.

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use rtmpd::media::Track;
use rtmpd::mux::flv_demux::{FlvDemuxer, FlvItem};
use rtmpd::rtmp::client::{ClientEvent, ClientSession};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Default connect schedule when `--ramp` is not given: this many viewers every `BATCH_EVERY`,
/// so the listen backlog of neither server overflows while 10,000 viewers still start in 2 s.
const BATCH: usize = 500;
const BATCH_EVERY: Duration = Duration::from_millis(100);
/// A gap between media reads above this means the viewer did not get the full stream.
const STALL_LIMIT: Duration = Duration::from_secs(2);
/// The last media must have arrived within this of the end of the run.
const TAIL_LIMIT: Duration = Duration::from_secs(1);
/// A larger step between the timestamps of consecutive frames of one track means frames were
/// dropped (frames are 20-40 ms apart in any stream this tool is pointed at).
const TS_GAP_LIMIT_MS: u32 = 500;
/// One read buffer shared by all viewers: per-viewer buffers would cost memory per connection.
const READ_BUF: usize = 256 * 1024;
/// Caps on what a viewer buffers: a response head, and one FLV tag.
const HEAD_CAP: usize = 16 * 1024;
const TAG_CAP: usize = 16 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtmpd-load: {e}");
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    match run(&config) {
        Ok(report) => {
            if config.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtmpd-load: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    Rtmp,
    HttpFlv,
    WsFlv,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Rtmp => "rtmp",
            Proto::HttpFlv => "http-flv",
            Proto::WsFlv => "ws-flv",
        }
    }
}

#[derive(Debug)]
struct Target {
    proto: Proto,
    addr: SocketAddr,
    /// `host:port` as written in the URL, for the Host header and the tcUrl.
    authority: String,
    /// HTTP request target, `/app/stream.flv?query`.
    path: String,
    /// RTMP: the app and the play name (with its query, which carries tokens).
    app: String,
    stream: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("bad --url {url:?}: no scheme"))?;
    let (proto, default_port) = match scheme {
        "rtmp" => (Proto::Rtmp, 1935),
        "http" => (Proto::HttpFlv, 80),
        "ws" => (Proto::WsFlv, 80),
        _ => {
            return Err(format!(
                "bad --url {url:?}: scheme must be rtmp, http or ws"
            ))
        }
    };
    let slash = rest
        .find('/')
        .ok_or_else(|| format!("bad --url {url:?}: no /app/stream path"))?;
    let (authority, path) = rest.split_at(slash);
    let has_port = !authority.ends_with(']')
        && authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    let host_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("bad --url {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad --url {url:?}: host has no address"))?;
    let (app, stream) = path[1..]
        .split_once('/')
        .filter(|(a, s)| !a.is_empty() && !s.is_empty())
        .ok_or_else(|| format!("bad --url {url:?}: path must be /app/stream"))?;
    Ok(Target {
        proto,
        addr,
        authority: authority.to_string(),
        path: path.to_string(),
        app: app.to_string(),
        stream: stream.to_string(),
    })
}

#[derive(Debug)]
struct Config {
    url: String,
    target: Target,
    viewers: usize,
    duration: Duration,
    /// Connects per second; `None`: `BATCH` every `BATCH_EVERY`.
    ramp: Option<f64>,
    server_pid: Option<u32>,
    connect_timeout: Duration,
    json: bool,
}

impl Config {
    fn options() -> getopts::Options {
        let mut o = getopts::Options::new();
        o.optopt(
            "",
            "url",
            "stream to watch: rtmp://HOST:PORT/app/stream, http://HOST:PORT/app/stream.flv \
             or ws://HOST:PORT/app/stream.flv (required)",
            "URL",
        );
        o.optopt("", "viewers", "number of viewers [1]", "N");
        o.optopt("", "duration", "length of the run in seconds [30]", "SECS");
        o.optopt(
            "",
            "ramp",
            "connects per second [all at once, in batches of 500 every 100 ms]",
            "PER_SEC",
        );
        o.optopt(
            "",
            "server-pid",
            "sample this process's CPU time and memory from /proc at start and end",
            "PID",
        );
        o.optopt(
            "",
            "connect-timeout",
            "seconds a viewer may take to start playing [10]",
            "SECS",
        );
        o.optflag("", "json", "print the report as one line of JSON");
        o.optflag("h", "help", "print this help");
        o
    }

    /// `Ok(None)` when `--help` was printed.
    fn parse(args: &[String]) -> Result<Option<Config>, String> {
        let opts = Self::options();
        let m = opts.parse(args).map_err(|e| e.to_string())?;
        if m.opt_present("help") {
            print!(
                "{}",
                opts.usage("Usage: rtmpd-load --url URL [OPTIONS]\n\nOpens N viewers of one live stream and reports what they received and what the server spent.")
            );
            return Ok(None);
        }
        if !m.free.is_empty() {
            return Err(format!("unexpected argument {:?}", m.free[0]));
        }
        let url = m.opt_str("url").ok_or("--url is required")?;
        let target = parse_url(&url)?;
        let viewers = match m.opt_str("viewers") {
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0 && n <= 1_000_000)
                .ok_or_else(|| format!("bad --viewers {v:?}: want 1..1000000"))?,
            None => 1,
        };
        let secs = |name: &str, default: f64| -> Result<f64, String> {
            match m.opt_str(name) {
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| format!("bad --{name} {v:?}: want seconds > 0")),
                None => Ok(default),
            }
        };
        let duration = Duration::from_secs_f64(secs("duration", 30.0)?);
        let connect_timeout = Duration::from_secs_f64(secs("connect-timeout", 10.0)?);
        let ramp = match m.opt_str("ramp") {
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| format!("bad --ramp {v:?}: want connects per second > 0"))?,
            ),
            None => None,
        };
        let server_pid = match m.opt_str("server-pid") {
            Some(v) => {
                let pid = v
                    .parse::<u32>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("bad --server-pid {v:?}"))?;
                // Fail now rather than print a report without the server's figures.
                ProcSample::read(pid).map_err(|e| format!("--server-pid {pid}: {e}"))?;
                Some(pid)
            }
            None => None,
        };
        Ok(Some(Config {
            url,
            target,
            viewers,
            duration,
            ramp,
            server_pid,
            connect_timeout,
            json: m.opt_present("json"),
        }))
    }

    /// How many viewers should have been started `elapsed` into the run.
    fn due(&self, elapsed: Duration) -> usize {
        let n = match self.ramp {
            Some(rate) => (elapsed.as_secs_f64() * rate).floor() as usize + 1,
            None => (elapsed.as_millis() / BATCH_EVERY.as_millis()) as usize * BATCH + BATCH,
        };
        n.min(self.viewers)
    }

    /// When the next connect is due after `elapsed` (only while some are left).
    fn next_due(&self, elapsed: Duration) -> Duration {
        match self.ramp {
            Some(rate) => {
                let started = (elapsed.as_secs_f64() * rate).floor() + 1.0;
                Duration::from_secs_f64(started / rate)
            }
            None => {
                let step = elapsed.as_millis() / BATCH_EVERY.as_millis() + 1;
                BATCH_EVERY * step as u32
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Process sampling (/proc) and limits

#[derive(Clone, Copy, Debug)]
struct ProcSample {
    /// utime + stime in clock ticks.
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

impl ProcSample {
    fn read(pid: u32) -> io::Result<ProcSample> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| bad("no ')' in /proc/PID/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
        let tick = |i: usize| -> io::Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("short /proc/PID/stat"))
        };
        let cpu_ticks = tick(11)? + tick(12)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcSample {
            cpu_ticks,
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        })
    }
}

#[cfg(unix)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(not(unix))]
fn clock_ticks() -> f64 {
    100.0
}

/// CPU seconds this process has used (user + system).
#[cfg(unix)]
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(not(unix))]
fn own_cpu_seconds() -> f64 {
    0.0
}

/// Every viewer is a socket: raise the soft open-file limit to the hard one.
#[cfg(unix)]
fn raise_nofile_limit() {
    // SAFETY: plain get/setrlimit on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(not(unix))]
fn raise_nofile_limit() {}

/// Close with RST instead of FIN: ten thousand sockets per run would otherwise sit in
/// TIME_WAIT and use up the ephemeral ports for the next run.
#[cfg(unix)]
fn set_linger_zero(sock: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the linger struct we pass with its exact size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(not(unix))]
fn set_linger_zero(_sock: &TcpStream) {}

// ---------------------------------------------------------------------------------------------
// Per-viewer statistics

#[derive(Debug)]
struct Stats {
    start: Instant,
    /// Until the protocol said "playing": Play.Start, HTTP 200, WebSocket 101, or first media.
    ready: Option<Duration>,
    first_video_key: Option<Duration>,
    first_audio: Option<Duration>,
    saw_video: bool,
    bytes: u64,
    frames: u64,
    last_media: Option<Instant>,
    max_stall: Duration,
    /// Last timestamp per track (audio, video), from the first frame after the sequence headers.
    last_dts: [Option<u32>; 2],
    /// Largest forward step between consecutive timestamps of one track, in ms.
    max_ts_gap: u32,
    /// Set by the frame callbacks, consumed per read to measure stalls between reads.
    media_in_read: bool,
    error: Option<String>,
}

impl Stats {
    fn new(start: Instant) -> Stats {
        Stats {
            start,
            ready: None,
            first_video_key: None,
            first_audio: None,
            saw_video: false,
            bytes: 0,
            frames: 0,
            last_media: None,
            max_stall: Duration::ZERO,
            last_dts: [None, None],
            max_ts_gap: 0,
            media_in_read: false,
            error: None,
        }
    }

    fn mark_ready(&mut self, now: Instant) {
        if self.ready.is_none() {
            self.ready = Some(now - self.start);
        }
    }

    fn on_frame(&mut self, track: Track, key: bool, config: bool, dts: u32, now: Instant) {
        let slot = match track {
            Track::Audio => 0,
            Track::Video => 1,
            Track::Meta => return,
        };
        // Sequence headers may carry any timestamp (a late joiner's are from the stream start).
        if !config {
            if let Some(prev) = self.last_dts[slot] {
                // Wrapping, as RTMP time wraps at 2^32 ms; a step back counts as no gap.
                let step = dts.wrapping_sub(prev);
                if step < u32::MAX / 2 {
                    self.max_ts_gap = self.max_ts_gap.max(step);
                }
            }
            self.last_dts[slot] = Some(dts);
        }
        match track {
            Track::Video => {
                self.saw_video = true;
                self.frames += 1;
                self.media_in_read = true;
                if key && !config && self.first_video_key.is_none() {
                    self.first_video_key = Some(now - self.start);
                }
            }
            Track::Audio => {
                self.frames += 1;
                self.media_in_read = true;
                if !config && self.first_audio.is_none() {
                    self.first_audio = Some(now - self.start);
                }
            }
            Track::Meta => {}
        }
    }

    /// After each read: a read that carried media ends the current gap.
    fn end_read(&mut self, now: Instant) {
        if !std::mem::take(&mut self.media_in_read) {
            return;
        }
        self.mark_ready(now);
        if let Some(last) = self.last_media {
            self.max_stall = self.max_stall.max(now - last);
        }
        self.last_media = Some(now);
    }

    /// Time to first keyframe; first audio frame for a stream without video.
    fn ttfk(&self) -> Option<Duration> {
        if self.saw_video {
            self.first_video_key
        } else {
            self.first_audio
        }
    }

    fn full(&self, end: Instant) -> bool {
        self.error.is_none()
            && self.ttfk().is_some()
            && self.max_stall <= STALL_LIMIT
            && self.max_ts_gap <= TS_GAP_LIMIT_MS
            && self
                .last_media
                .is_some_and(|t| end.saturating_duration_since(t) <= TAIL_LIMIT)
    }
}

// ---------------------------------------------------------------------------------------------
// FLV tags, from HTTP-FLV bodies and WS-FLV frames

/// FLV bytes to frames, with the crate's demuxer; only the track and the key/config flags are
/// looked at.
struct FlvReader {
    buf: BytesMut,
    demux: FlvDemuxer,
}

impl FlvReader {
    fn new() -> FlvReader {
        FlvReader {
            buf: BytesMut::new(),
            demux: FlvDemuxer::with_max_tag(TAG_CAP as u32),
        }
    }

    fn feed(&mut self, data: &[u8], stats: &mut Stats, now: Instant) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        loop {
            match self.demux.next(&mut self.buf) {
                Ok(Some(FlvItem::Frame(f))) => stats.on_frame(f.track, f.key, f.config, f.dts, now),
                Ok(Some(FlvItem::Header { .. })) => {}
                Ok(None) => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        // Room for the whole pending tag at once, rather than growing step by step as a large
        // keyframe trickles in.
        if self.buf.len() >= 11 {
            let body = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let total = 11 + body + 4;
            if total > self.buf.len() && total <= TAG_CAP + 15 {
                self.buf.reserve(total - self.buf.len());
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: the response head and the chunked body

enum Body {
    Chunked(Dechunk),
    Length(u64),
    Close,
}

/// Incremental `Transfer-Encoding: chunked` decoder; hands data bytes to `sink` in slices.
#[derive(Default)]
struct Dechunk {
    state: ChunkState,
    size: u64,
    digits: u8,
}

#[derive(Default, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    /// Chunk extension: skipped up to the line end.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// The last chunk came: the server ended the stream.
    Done,
}

impl Dechunk {
    fn feed(
        &mut self,
        mut data: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<bool, String> {
        while !data.is_empty() {
            if self.state == ChunkState::Data {
                let n = (self.size as usize).min(data.len());
                sink(&data[..n])?;
                data = &data[n..];
                self.size -= n as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let b = data[0];
            data = &data[1..];
            self.state = match self.state {
                ChunkState::Size => match (b as char).to_digit(16) {
                    Some(d) if self.digits < 15 => {
                        self.size = self.size * 16 + d as u64;
                        self.digits += 1;
                        ChunkState::Size
                    }
                    None if self.digits > 0 && b == b';' => ChunkState::Ext,
                    None if self.digits > 0 && b == b'\r' => ChunkState::SizeLf,
                    _ => return Err("bad chunk size".into()),
                },
                ChunkState::Ext => {
                    if b == b'\r' {
                        ChunkState::SizeLf
                    } else {
                        ChunkState::Ext
                    }
                }
                ChunkState::SizeLf if b == b'\n' => {
                    self.digits = 0;
                    if self.size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data
                    }
                }
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::Size,
                ChunkState::Done => return Ok(true),
                _ => return Err("bad chunk framing".into()),
            };
        }
        Ok(self.state == ChunkState::Done)
    }
}

/// The parts of a response head this tool needs.
struct Head {
    len: usize,
    status: u16,
    chunked: bool,
    content_length: Option<u64>,
    accept: Option<String>,
}

/// `Ok(None)`: the head is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > HEAD_CAP => {
            return Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let mut head = Head {
        len,
        status: resp.code.unwrap_or(0),
        chunked: false,
        content_length: None,
        accept: None,
    };
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.trim().parse().ok();
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            head.accept = Some(value.trim().to_string());
        }
    }
    Ok(Some(head))
}

// ---------------------------------------------------------------------------------------------
// WebSocket frames (client side: read unmasked frames, write masked ones)

#[derive(Default)]
struct WsReader {
    hdr: [u8; 14],
    have: usize,
    opcode: u8,
    remaining: u64,
    in_payload: bool,
    /// Payload of a control frame (at most 125 bytes by the RFC).
    control: Vec<u8>,
}

/// What a fed slice of WebSocket bytes asks for.
#[derive(Default)]
struct WsOutcome {
    pongs: Vec<Vec<u8>>,
    closed: bool,
}

impl WsReader {
    fn feed(
        &mut self,
        mut data: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<WsOutcome, String> {
        let mut out = WsOutcome::default();
        while !data.is_empty() && !out.closed {
            if self.in_payload {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                match self.opcode {
                    0 | 2 => sink(&data[..n])?,
                    8..=10 => self.control.extend_from_slice(&data[..n]),
                    _ => {}
                }
                data = &data[n..];
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.end_frame(&mut out);
                }
                continue;
            }
            // Header: 2 bytes, then 0/2/8 length bytes; a server never masks.
            let need = match self.have {
                0 | 1 => 2,
                _ => match self.hdr[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                },
            };
            let n = (need - self.have).min(data.len());
            self.hdr[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < need || (self.have == 2 && need == 2 && self.hdr[1] & 0x7f >= 126) {
                continue;
            }
            if self.hdr[1] & 0x80 != 0 {
                return Err("masked frame from the server".into());
            }
            self.opcode = self.hdr[0] & 0x0f;
            self.remaining = match self.hdr[1] & 0x7f {
                126 => u16::from_be_bytes([self.hdr[2], self.hdr[3]]) as u64,
                127 => u64::from_be_bytes(self.hdr[2..10].try_into().unwrap_or([0xff; 8])),
                n => n as u64,
            };
            if self.opcode >= 8 && self.remaining > 125 {
                return Err("oversized control frame".into());
            }
            if self.remaining > TAG_CAP as u64 * 4 {
                return Err(format!("WebSocket frame of {} bytes", self.remaining));
            }
            self.have = 0;
            self.in_payload = true;
            self.control.clear();
            if self.remaining == 0 {
                self.end_frame(&mut out);
            }
        }
        Ok(out)
    }

    fn end_frame(&mut self, out: &mut WsOutcome) {
        self.in_payload = false;
        match self.opcode {
            8 => out.closed = true,
            9 => out.pongs.push(std::mem::take(&mut self.control)),
            _ => {}
        }
    }
}

/// A masked client frame (FIN set).
fn ws_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

// ---------------------------------------------------------------------------------------------
// Viewers

#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Connecting,
    Active,
    Done,
}

enum ProtoState {
    Rtmp {
        session: ClientSession,
    },
    Http {
        head: Vec<u8>,
        body: Option<Body>,
        flv: FlvReader,
    },
    Ws {
        key: String,
        head: Vec<u8>,
        upgraded: bool,
        frames: WsReader,
        flv: FlvReader,
    },
}

struct Viewer {
    sock: Option<TcpStream>,
    phase: Phase,
    proto: ProtoState,
    out: Vec<u8>,
    out_pos: usize,
    write_interest: bool,
    token: Token,
    stats: Stats,
    rng: u64,
}

impl Viewer {
    fn start(
        target: &Target,
        token: Token,
        registry: &Registry,
        seed: u64,
    ) -> Result<Viewer, String> {
        let now = Instant::now();
        let proto = match target.proto {
            Proto::Rtmp => ProtoState::Rtmp {
                session: ClientSession::new(seed),
            },
            Proto::HttpFlv => ProtoState::Http {
                head: Vec::new(),
                body: None,
                flv: FlvReader::new(),
            },
            Proto::WsFlv => ProtoState::Ws {
                key: tungstenite::handshake::client::generate_key(),
                head: Vec::new(),
                upgraded: false,
                frames: WsReader::default(),
                flv: FlvReader::new(),
            },
        };
        let mut sock = match TcpStream::connect(target.addr) {
            Ok(s) => s,
            Err(e) => return Err(format!("connect: {e}")),
        };
        if let Err(e) = registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            return Err(format!("register: {e}"));
        }
        Ok(Viewer {
            sock: Some(sock),
            phase: Phase::Connecting,
            proto,
            out: Vec::new(),
            out_pos: 0,
            write_interest: true,
            token,
            stats: Stats::new(now),
            rng: seed | 1,
        })
    }

    fn fail(&mut self, registry: &Registry, why: String) {
        if self.stats.error.is_none() {
            self.stats.error = Some(why);
        }
        self.close(registry);
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut sock) = self.sock.take() {
            let _ = registry.deregister(&mut sock);
            set_linger_zero(&sock);
        }
        self.phase = Phase::Done;
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift64: masks only need to vary, not to be secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_be_bytes()
    }

    fn on_event(
        &mut self,
        ev: &mio::event::Event,
        target: &Target,
        buf: &mut [u8],
        registry: &Registry,
    ) {
        if self.phase == Phase::Done {
            return;
        }
        if self.phase == Phase::Connecting {
            match self.finish_connect(target) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(registry, e),
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            if let Err(e) = self.read_all(buf, ev.is_read_closed(), target) {
                return self.fail(registry, e);
            }
        }
        if let Err(e) = self.flush() {
            return self.fail(registry, e);
        }
        self.update_interest(registry);
    }

    /// `Ok(false)` while the connect is still in progress (a spurious wakeup).
    fn finish_connect(&mut self, target: &Target) -> Result<bool, String> {
        let Some(sock) = self.sock.as_ref() else {
            return Ok(false);
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return Err(format!("connect: {e}"));
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(format!("connect: {e}")),
        }
        let _ = sock.set_nodelay(true);
        self.phase = Phase::Active;
        match &mut self.proto {
            ProtoState::Rtmp { session } => {
                session.connect(
                    &target.app,
                    &format!("rtmp://{}/{}", target.authority, target.app),
                );
                self.out.extend_from_slice(&session.take_output());
            }
            ProtoState::Http { .. } => {
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd-load\r\nAccept: */*\r\n\r\n",
                    target.path, target.authority
                );
                self.out.extend_from_slice(req.as_bytes());
            }
            ProtoState::Ws { key, .. } => {
                let req = format!(
                    "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd-load\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    target.path, target.authority
                );
                self.out.extend_from_slice(req.as_bytes());
            }
        }
        Ok(true)
    }

    fn read_all(
        &mut self,
        buf: &mut [u8],
        peer_closed: bool,
        target: &Target,
    ) -> Result<(), String> {
        loop {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(());
            };
            match sock.read(buf) {
                Ok(0) => return Err(self.eof_reason()),
                Ok(n) => {
                    let now = Instant::now();
                    self.stats.bytes += n as u64;
                    self.feed(&buf[..n], now, target)?;
                    self.stats.end_read(now);
                    if self.phase == Phase::Done {
                        return Ok(());
                    }
                    // A short read emptied the socket; epoll reports the next arrival. This
                    // halves the read syscalls, which matters when the loadgen shares the CPU.
                    if n < buf.len() && !peer_closed {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn eof_reason(&self) -> String {
        if self.stats.ready.is_some() {
            "closed by the server while playing".into()
        } else {
            "closed by the server before playing".into()
        }
    }

    fn feed(&mut self, data: &[u8], now: Instant, target: &Target) -> Result<(), String> {
        let stats = &mut self.stats;
        let out = &mut self.out;
        let ws = match &mut self.proto {
            ProtoState::Rtmp { session } => {
                return feed_rtmp(session, data, &target.stream, stats, out, now)
            }
            ProtoState::Http { head, body, flv } => {
                return feed_http(head, body, flv, data, stats, now)
            }
            ProtoState::Ws {
                key,
                head,
                upgraded,
                frames,
                flv,
            } => feed_ws(key, head, upgraded, frames, flv, data, stats, now)?,
        };
        for payload in ws.pongs {
            let mask = self.next_mask();
            self.out.extend_from_slice(&ws_frame(10, &payload, mask));
        }
        if ws.closed {
            return Err("WebSocket close from the server".into());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match sock.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err("write: connection closed".into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// WRITABLE only while connecting or while output is queued.
    fn update_interest(&mut self, registry: &Registry) {
        let want = self.phase == Phase::Connecting || self.out_pos < self.out.len();
        if want == self.write_interest {
            return;
        }
        if let Some(sock) = self.sock.as_mut() {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if registry.reregister(sock, self.token, interest).is_ok() {
                self.write_interest = want;
            }
        }
    }

    /// End of the run: a WebSocket viewer says goodbye with a masked close frame (best effort)
    /// and a FIN, so that the server reads the frame; everyone else resets (see
    /// `set_linger_zero`).
    fn finish(&mut self, registry: &Registry) {
        if let ProtoState::Ws { upgraded: true, .. } = self.proto {
            let mask = self.next_mask();
            let frame = ws_frame(8, &1000u16.to_be_bytes(), mask);
            if let Some(mut sock) = self.sock.take() {
                let _ = sock.write(&frame);
                let _ = registry.deregister(&mut sock);
            }
        }
        self.close(registry);
    }
}

fn feed_rtmp(
    session: &mut ClientSession,
    data: &[u8],
    stream: &str,
    stats: &mut Stats,
    out: &mut Vec<u8>,
    now: Instant,
) -> Result<(), String> {
    session
        .handle_input(data)
        .map_err(|e| format!("rtmp: {e}"))?;
    while let Some(ev) = session.poll_event() {
        match ev {
            ClientEvent::Connected => session.create_stream(),
            ClientEvent::StreamCreated { stream_id } => session.play(stream_id, stream),
            ClientEvent::Status { level, code, .. } => {
                if code == "NetStream.Play.Start" {
                    stats.mark_ready(now);
                } else if level == "error" || code == "NetStream.Play.UnpublishNotify" {
                    return Err(format!("rtmp status {code}"));
                }
            }
            ClientEvent::Media { frame, .. } => {
                stats.on_frame(frame.track, frame.key, frame.config, frame.dts, now)
            }
            ClientEvent::Error(e) => return Err(format!("rtmp _error: {e}")),
        }
    }
    out.extend_from_slice(&session.take_output());
    Ok(())
}

fn feed_http(
    head: &mut Vec<u8>,
    body: &mut Option<Body>,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<(), String> {
    let Some(b) = body else {
        head.extend_from_slice(data);
        let Some(h) = parse_head(head)? else {
            return Ok(());
        };
        if h.status != 200 {
            return Err(format!("HTTP {}", h.status));
        }
        stats.mark_ready(now);
        let rest = std::mem::take(head).split_off(h.len);
        *head = Vec::new();
        let b = body.insert(if h.chunked {
            Body::Chunked(Dechunk::default())
        } else if let Some(n) = h.content_length {
            Body::Length(n)
        } else {
            Body::Close
        });
        return feed_body(b, flv, &rest, stats, now);
    };
    feed_body(b, flv, data, stats, now)
}

fn feed_body(
    body: &mut Body,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<(), String> {
    let ended = match body {
        Body::Chunked(d) => d.feed(data, |part| flv.feed(part, stats, now))?,
        Body::Length(left) => {
            let n = (*left).min(data.len() as u64) as usize;
            flv.feed(&data[..n], stats, now)?;
            *left -= n as u64;
            *left == 0
        }
        Body::Close => {
            flv.feed(data, stats, now)?;
            false
        }
    };
    if ended {
        return Err("response ended by the server".into());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn feed_ws(
    key: &str,
    head: &mut Vec<u8>,
    upgraded: &mut bool,
    frames: &mut WsReader,
    flv: &mut FlvReader,
    data: &[u8],
    stats: &mut Stats,
    now: Instant,
) -> Result<WsOutcome, String> {
    if *upgraded {
        return frames.feed(data, |d| flv.feed(d, stats, now));
    }
    head.extend_from_slice(data);
    let Some(h) = parse_head(head)? else {
        return Ok(WsOutcome::default());
    };
    if h.status != 101 {
        return Err(format!("HTTP {} instead of 101", h.status));
    }
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if h.accept.as_deref() != Some(want.as_str()) {
        return Err("bad Sec-WebSocket-Accept".into());
    }
    *upgraded = true;
    stats.mark_ready(now);
    let rest = std::mem::take(head).split_off(h.len);
    frames.feed(&rest, |d| flv.feed(d, stats, now))
}

// ---------------------------------------------------------------------------------------------
// The run

fn run(config: &Config) -> Result<Report, String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let mut viewers: Vec<Viewer> = Vec::with_capacity(config.viewers);
    let mut early_failures: Vec<(Stats, String)> = Vec::new();
    let server_start = match config.server_pid {
        Some(pid) => Some(ProcSample::read(pid).map_err(|e| format!("server {pid}: {e}"))?),
        None => None,
    };
    let cpu_start = own_cpu_seconds();
    let seed_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let end = start + config.duration;
    let mut started = 0usize;
    let mut next_sweep = start;
    // VmHWM is the peak of the server's whole life; this is the peak within the run.
    let mut rss_peak_kib = server_start.map_or(0, |s| s.rss_kib);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = config.due(now - start);
        while started < due {
            let token = Token(viewers.len());
            let seed = seed_base ^ (started as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            match Viewer::start(&config.target, token, poll.registry(), seed) {
                Ok(v) => viewers.push(v),
                Err(e) => early_failures.push((Stats::new(now), e)),
            }
            started += 1;
        }
        if now >= next_sweep {
            sweep_timeouts(&mut viewers, config.connect_timeout, now, poll.registry());
            if let Some(sample) = config.server_pid.and_then(|p| ProcSample::read(p).ok()) {
                rss_peak_kib = rss_peak_kib.max(sample.rss_kib);
            }
            next_sweep = now + Duration::from_millis(100);
        }
        let mut wake = end.min(next_sweep);
        if started < config.viewers {
            wake = wake.min(start + config.next_due(now - start));
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in events.iter() {
            if let Some(v) = viewers.get_mut(ev.token().0) {
                v.on_event(ev, &config.target, &mut buf, poll.registry());
            }
        }
    }
    let run_end = Instant::now();
    // Sample before closing: the memory figure is for connected viewers.
    let server_end = match config.server_pid {
        Some(pid) => ProcSample::read(pid).ok(),
        None => None,
    };
    let loadgen_cpu = own_cpu_seconds() - cpu_start;
    for v in viewers.iter_mut() {
        v.finish(poll.registry());
    }
    let mut stats: Vec<(Stats, bool)> = viewers
        .into_iter()
        .map(|v| {
            let full = v.stats.full(run_end);
            (v.stats, full)
        })
        .collect();
    for (mut s, e) in early_failures {
        s.error = Some(e);
        stats.push((s, false));
    }
    Ok(Report::new(
        config,
        &stats,
        run_end - start,
        server_start.zip(server_end),
        rss_peak_kib.max(server_end.map_or(0, |s| s.rss_kib)),
        loadgen_cpu,
    ))
}

/// Viewers that have not started playing within the connect timeout give up.
fn sweep_timeouts(viewers: &mut [Viewer], limit: Duration, now: Instant, registry: &Registry) {
    for v in viewers.iter_mut() {
        if v.phase != Phase::Done
            && v.stats.ready.is_none()
            && now.saturating_duration_since(v.stats.start) > limit
        {
            let what = if v.phase == Phase::Connecting {
                "timeout connecting"
            } else {
                "timeout waiting to play"
            };
            v.fail(registry, what.into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report

struct Dist {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Dist {
    /// Nearest-rank percentiles of milliseconds.
    fn of(mut v: Vec<f64>) -> Dist {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct ServerFigures {
    pid: u32,
    cpu_s: f64,
    cpu_s_per_gb: f64,
    rss_start_kib: u64,
    rss_end_kib: u64,
    /// Highest VmRSS seen in the run (sampled every 100 ms).
    rss_peak_kib: u64,
    hwm_kib: u64,
    rss_per_viewer_kib: f64,
}

struct Report {
    url: String,
    proto: Proto,
    duration_s: f64,
    requested: usize,
    connected: usize,
    full: usize,
    failed: usize,
    connect: Dist,
    ttfk: Dist,
    stall: Dist,
    ts_gap: Dist,
    bytes: u64,
    frames: u64,
    server: Option<ServerFigures>,
    loadgen_cpu_s: f64,
    errors: BTreeMap<String, usize>,
}

impl Report {
    fn new(
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
            frames: stats.iter().map(|(s, _)| s.frames).sum(),
            server,
            loadgen_cpu_s,
            errors,
        }
    }

    fn mbps(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.bytes as f64 * 8.0 / self.duration_s / 1e6
        } else {
            0.0
        }
    }

    fn text(&self) -> String {
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

    /// One flat JSON object (unique keys, so shell scripts can pick fields with sed).
    fn json(&self) -> String {
        let mut j = String::from("{");
        let _ = write!(
            j,
            "\"url\":{},\"protocol\":\"{}\",\"duration_s\":{:.3},\"viewers_requested\":{},\
             \"viewers_connected\":{},\"viewers_full\":{},\"viewers_failed\":{}",
            json_str(&self.url),
            self.proto.name(),
            self.duration_s,
            self.requested,
            self.connected,
            self.full,
            self.failed
        );
        for (name, d) in [
            ("connect_ms", &self.connect),
            ("ttfk_ms", &self.ttfk),
            ("max_stall_ms", &self.stall),
            ("max_ts_gap_ms", &self.ts_gap),
        ] {
            let _ = write!(
                j,
                ",\"{name}_n\":{},\"{name}_p50\":{:.2},\"{name}_p99\":{:.2},\"{name}_max\":{:.2}",
                d.count, d.p50, d.p99, d.max
            );
        }
        let _ = write!(
            j,
            ",\"bytes_total\":{},\"frames_total\":{},\"mbps_total\":{:.1}",
            self.bytes,
            self.frames,
            self.mbps()
        );
        if let Some(s) = &self.server {
            let _ = write!(
                j,
                ",\"server_pid\":{},\"server_cpu_s\":{:.3},\"server_cpu_s_per_gb\":{:.4},\
                 \"server_rss_start_kib\":{},\"server_rss_end_kib\":{},\"server_rss_peak_kib\":{},\
                 \"server_hwm_kib\":{},\"server_rss_per_viewer_kib\":{:.2}",
                s.pid,
                s.cpu_s,
                s.cpu_s_per_gb,
                s.rss_start_kib,
                s.rss_end_kib,
                s.rss_peak_kib,
                s.hwm_kib,
                s.rss_per_viewer_kib
            );
        }
        let _ = write!(
            j,
            ",\"loadgen_cpu_s\":{:.3},\"errors\":{{",
            self.loadgen_cpu_s
        );
        for (i, (e, n)) in self.errors.iter().enumerate() {
            let _ = write!(j, "{}{}:{n}", if i > 0 { "," } else { "" }, json_str(e));
        }
        j.push_str("}}");
        j
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtmpd::media::Frame;
    use rtmpd::mux::flv;

    #[test]
    fn urls() {
        let t = parse_url("rtmp://127.0.0.1:1936/live/cam?token=x").unwrap();
        assert_eq!(t.proto, Proto::Rtmp);
        assert_eq!(t.addr.port(), 1936);
        assert_eq!((t.app.as_str(), t.stream.as_str()), ("live", "cam?token=x"));
        let t = parse_url("rtmp://127.0.0.1/live/cam").unwrap();
        assert_eq!(t.addr.port(), 1935);
        let t = parse_url("ws://127.0.0.1:8501/live/cam.flv").unwrap();
        assert_eq!((t.proto, t.path.as_str()), (Proto::WsFlv, "/live/cam.flv"));
        assert_eq!(t.authority, "127.0.0.1:8501");
        assert!(parse_url("rtsp://127.0.0.1/live/cam").is_err());
        assert!(parse_url("http://127.0.0.1:80/live").is_err());
        assert!(parse_url("http://127.0.0.1:80").is_err());
    }

    #[test]
    fn options_reject_bad_values() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Config::parse(&args(&["--viewers", "3"])).is_err());
        let u = "--url=http://127.0.0.1:1/a/b.flv";
        assert!(Config::parse(&args(&[u, "--viewers", "0"])).is_err());
        assert!(Config::parse(&args(&[u, "--duration", "-1"])).is_err());
        assert!(Config::parse(&args(&[u, "--ramp", "x"])).is_err());
        let c = Config::parse(&args(&[u, "--viewers", "1200", "--duration", "2.5"]))
            .unwrap()
            .unwrap();
        assert_eq!(c.viewers, 1200);
        assert_eq!(c.duration, Duration::from_millis(2500));
    }

    #[test]
    fn connect_schedule() {
        let c = Config::parse(&["--url=rtmp://127.0.0.1/a/b".into(), "--viewers=1200".into()])
            .unwrap()
            .unwrap();
        assert_eq!(c.due(Duration::ZERO), 500);
        assert_eq!(c.due(Duration::from_millis(150)), 1000);
        assert_eq!(c.due(Duration::from_secs(5)), 1200);
        assert_eq!(
            c.next_due(Duration::from_millis(150)),
            Duration::from_millis(200)
        );
        let r = Config::parse(&[
            "--url=rtmp://127.0.0.1/a/b".into(),
            "--viewers=100".into(),
            "--ramp=10".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.due(Duration::ZERO), 1);
        assert_eq!(r.due(Duration::from_millis(1050)), 11);
        assert_eq!(
            r.next_due(Duration::from_millis(1050)),
            Duration::from_millis(1100)
        );
    }

    /// Feeds `data` in pieces split at every position (and byte by byte) to `run`, which must
    /// give the same result each time.
    fn every_split<T: PartialEq + std::fmt::Debug>(data: &[u8], run: impl Fn(&[&[u8]]) -> T) -> T {
        let whole = run(&[data]);
        for i in 0..=data.len() {
            assert_eq!(run(&[&data[..i], &data[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn dechunk_any_split() {
        let input = b"5\r\nhello\r\n3;name=v\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        let (data, ended) = every_split(input, |parts| {
            let mut d = Dechunk::default();
            let mut got = Vec::new();
            let mut ended = false;
            for p in parts {
                ended = d
                    .feed(p, |x| {
                        got.extend_from_slice(x);
                        Ok(())
                    })
                    .unwrap();
            }
            (got, ended)
        });
        assert_eq!(data, b"helloabc0123456789");
        assert!(ended);
    }

    #[test]
    fn dechunk_rejects_garbage() {
        let mut d = Dechunk::default();
        assert!(d.feed(b"zz\r\n", |_| Ok(())).is_err());
        let mut d = Dechunk::default();
        assert!(d.feed(b"3\r\nabcXY", |_| Ok(())).is_err());
        let mut d = Dechunk::default();
        assert!(d.feed(b"ffffffffffffffffff\r\n", |_| Ok(())).is_err());
    }

    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn websocket_frames_any_split() {
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut input = server_frame(2, b"FLV");
        input.extend(server_frame(9, b"hi"));
        input.extend(server_frame(2, &big[..300]));
        input.extend(server_frame(2, &[]));
        input.extend(server_frame(2, &big));
        input.extend(server_frame(8, &1000u16.to_be_bytes()));
        let (data, pongs, closed) = every_split(&input, |parts| {
            let mut r = WsReader::default();
            let mut got = Vec::new();
            let mut pongs = Vec::new();
            let mut closed = false;
            for p in parts {
                let o = r
                    .feed(p, |x| {
                        got.extend_from_slice(x);
                        Ok(())
                    })
                    .unwrap();
                pongs.extend(o.pongs);
                closed |= o.closed;
            }
            (got, pongs, closed)
        });
        let mut want = b"FLV".to_vec();
        want.extend_from_slice(&big[..300]);
        want.extend_from_slice(&big);
        assert_eq!(data, want);
        assert_eq!(pongs, vec![b"hi".to_vec()]);
        assert!(closed);
    }

    #[test]
    fn websocket_refuses_masked_and_oversized_control() {
        let mut r = WsReader::default();
        assert!(r.feed(&[0x82, 0x81, 1, 2, 3, 4, 5], |_| Ok(())).is_err());
        let mut r = WsReader::default();
        assert!(r.feed(&[0x89, 126, 0, 200], |_| Ok(())).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mask = [1, 2, 3, 4];
        let f = ws_frame(2, &payload, mask);
        assert_eq!(f[0], 0x82);
        assert_eq!(f[1], 0x80 | 126);
        assert_eq!(&f[4..8], &mask);
        let unmasked: Vec<u8> = f[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, payload);
    }

    fn flv_fixture() -> Vec<u8> {
        let mut v = flv::file_header(true, true).to_vec();
        for (t, ts, body) in [
            (18u8, 0u32, &[2u8, 0, 10][..]),
            (9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64][..]),
            (8, 0, &[0xaf, 0, 0x12, 0x10][..]),
            (9, 40, &[0x27, 1, 0, 0, 0, 9][..]),
            (9, 80, &[0x17, 1, 0, 0, 0, 9][..]),
            (8, 23, &[0xaf, 1, 0x21][..]),
        ] {
            let f = Frame::parse(t, ts, Bytes::copy_from_slice(body)).unwrap();
            flv::write_tag(&mut v, &f);
        }
        v
    }

    #[test]
    fn flv_frames_and_first_keyframe_any_split() {
        let input = flv_fixture();
        let (frames, key_seen, saw_video) = every_split(&input, |parts| {
            let mut r = FlvReader::new();
            let mut s = Stats::new(Instant::now());
            for p in parts {
                r.feed(p, &mut s, Instant::now()).unwrap();
            }
            (s.frames, s.first_video_key.is_some(), s.saw_video)
        });
        // Five audio/video tags (sequence headers included), metadata not counted.
        assert_eq!(frames, 5);
        assert!(key_seen && saw_video);
    }

    #[test]
    fn flv_sequence_header_is_not_the_first_keyframe() {
        let input = flv_fixture();
        let mut r = FlvReader::new();
        let mut s = Stats::new(Instant::now());
        // Up to and including the inter frame: header tags only, no picture keyframe yet.
        let upto = 13 + (11 + 3 + 4) + (11 + 7 + 4) + (11 + 4 + 4) + (11 + 6 + 4);
        r.feed(&input[..upto], &mut s, Instant::now()).unwrap();
        assert!(s.first_video_key.is_none());
        assert!(FlvReader::new()
            .feed(b"NOTFLV-AT-ALL", &mut s, Instant::now())
            .is_err());
    }

    #[test]
    fn full_stream_rules() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.on_frame(Track::Video, true, false, 0, t0 + Duration::from_millis(10));
        s.end_read(t0 + Duration::from_millis(10));
        s.on_frame(
            Track::Video,
            false,
            false,
            0,
            t0 + Duration::from_millis(1500),
        );
        s.end_read(t0 + Duration::from_millis(1500));
        assert!(s.full(t0 + Duration::from_millis(2000)));
        // The last media is more than a second before the end.
        assert!(!s.full(t0 + Duration::from_millis(2600)));
        // A stall over 2 s.
        s.on_frame(
            Track::Video,
            false,
            false,
            0,
            t0 + Duration::from_millis(3600),
        );
        s.end_read(t0 + Duration::from_millis(3600));
        assert_eq!(s.max_stall, Duration::from_millis(2100));
        assert!(!s.full(t0 + Duration::from_millis(3700)));
    }

    #[test]
    fn dropped_frames_are_not_the_full_stream() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        let at = |s: &mut Stats, track, key, config, dts, ms| {
            let now = t0 + Duration::from_millis(ms);
            s.on_frame(track, key, config, dts, now);
            s.end_read(now);
        };
        // A late joiner's sequence header carries the stream's first timestamp: no gap.
        at(&mut s, Track::Video, true, true, 0, 1);
        at(&mut s, Track::Video, true, false, 90_000, 2);
        at(&mut s, Track::Audio, true, false, 90_010, 3);
        at(&mut s, Track::Video, false, false, 90_040, 40);
        at(&mut s, Track::Audio, true, false, 90_033, 41);
        assert_eq!(s.max_ts_gap, 40);
        assert!(s.full(t0 + Duration::from_millis(100)));
        // A skip to the next keyframe two seconds on.
        at(&mut s, Track::Video, true, false, 92_000, 80);
        assert_eq!(s.max_ts_gap, 1960);
        assert!(!s.full(t0 + Duration::from_millis(100)));
        // Timestamps wrap at 2^32 ms without counting as a gap.
        let mut w = Stats::new(t0);
        at(&mut w, Track::Audio, true, false, u32::MAX - 10, 1);
        at(&mut w, Track::Audio, true, false, 13, 2);
        assert_eq!(w.max_ts_gap, 24);
    }

    #[test]
    fn audio_only_ttfk_is_first_audio() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.on_frame(Track::Audio, true, true, 0, t0 + Duration::from_millis(5));
        assert!(s.ttfk().is_none());
        s.on_frame(Track::Audio, true, false, 0, t0 + Duration::from_millis(7));
        assert_eq!(s.ttfk(), Some(Duration::from_millis(7)));
    }

    #[test]
    fn percentiles_nearest_rank() {
        let d = Dist::of((1..=200).map(|i| i as f64).collect());
        assert_eq!((d.p50, d.p99, d.max, d.count), (100.0, 198.0, 200.0, 200));
        let e = Dist::of(Vec::new());
        assert_eq!((e.p99, e.count), (0.0, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_sample_of_self() {
        let s = ProcSample::read(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    /// A stand-in HTTP-FLV / WS-FLV server on a std thread per viewer: a frame every 20 ms,
    /// a keyframe every 25, until the client goes away (or 10 s).
    fn stand_in_server(ws: bool) -> SocketAddr {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut reader = io::BufReader::new(conn.try_clone().unwrap());
                    let mut key = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.strip_prefix("Sec-WebSocket-Key:") {
                            key = v.trim().to_string();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let send = |conn: &mut std::net::TcpStream, data: &[u8]| -> io::Result<()> {
                        if ws {
                            conn.write_all(&server_frame(2, data))
                        } else {
                            conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
                            conn.write_all(data)?;
                            conn.write_all(b"\r\n")
                        }
                    };
                    let head = if ws {
                        format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                             Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                            tungstenite::handshake::derive_accept_key(key.as_bytes())
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\
                         Transfer-Encoding: chunked\r\n\r\n"
                            .to_string()
                    };
                    if conn.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let _ = send(&mut conn, &flv::file_header(true, true));
                    for i in 0..500u32 {
                        let video: &[u8] = if i % 25 == 0 {
                            &[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]
                        } else {
                            &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]
                        };
                        let mut tags = Vec::new();
                        for (t, body) in [(9u8, video), (8, &[0xaf, 1, 0x21][..])] {
                            let f = Frame::parse(t, i * 20, Bytes::copy_from_slice(body)).unwrap();
                            flv::write_tag(&mut tags, &f);
                        }
                        if send(&mut conn, &tags).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                });
            }
        });
        addr
    }

    fn run_against_stand_in(scheme: &str, ws: bool) -> Report {
        let addr = stand_in_server(ws);
        let args: Vec<String> = vec![
            format!("--url={scheme}://{addr}/live/s.flv"),
            "--viewers=20".into(),
            "--duration=1.2".into(),
        ];
        let config = Config::parse(&args).unwrap().unwrap();
        run(&config).unwrap()
    }

    #[test]
    fn http_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("http", false);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        // 1.2 s of 50 video + 50 audio frames per second, give or take scheduling.
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
        assert!(r.stall.max < 1000.0);
    }

    #[test]
    fn ws_flv_viewers_get_the_full_stream() {
        let r = run_against_stand_in("ws", true);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.connected, r.full, r.ttfk.count), (20, 20, 20));
        assert!(r.frames > 20 * 80, "{} frames", r.frames);
    }

    #[test]
    fn refused_connections_are_counted_as_failed() {
        // A port that was just free: bind, learn it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args: Vec<String> = vec![
            format!("--url=http://127.0.0.1:{port}/live/s.flv"),
            "--viewers=3".into(),
            "--duration=0.3".into(),
        ];
        let r = run(&Config::parse(&args).unwrap().unwrap()).unwrap();
        assert_eq!((r.connected, r.full, r.failed), (0, 0, 3));
        assert!(
            r.errors.keys().all(|e| e.starts_with("connect")),
            "{:?}",
            r.errors
        );
    }
}
