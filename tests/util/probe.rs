//! What the fault tests and the soak check in a recording from outside: ffprobe's verdict and
//! durations, an HLS playlist's EXTINF/ENDLIST, the numbers in an FLV's `onMetaData`, a timed
//! HTTP-FLV reader that measures the longest silence, and signals by PID. Knows no server
//! internals; ffprobe must be on PATH (callers check with `require_tool`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Proc;

/// `ffmpeg -f framemd5` of the first video stream of `input`: one hash per decoded frame, in
/// order (a cut or an upload is checked as a run of the original's frames).
pub fn frame_hashes(input: &Path) -> Vec<String> {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args([
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "framemd5",
            "-",
        ]);
    let mut p = Proc::spawn(c);
    assert!(
        p.wait_or_panic(Duration::from_secs(120)).success(),
        "{}",
        p.stderr()
    );
    p.stdout()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_string()))
        .collect()
}

/// `ffprobe -v error -show_format -show_streams FILE` exits 0 and prints no error, or panics
/// naming `what` with ffprobe's output.
pub fn assert_probes_clean(file: &Path, what: &str) {
    let mut c = Command::new("ffprobe");
    c.args([
        "-hide_banner",
        "-v",
        "error",
        "-show_format",
        "-show_streams",
    ])
    .arg(file);
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(Duration::from_secs(60));
    assert!(
        status.success() && p.stderr().trim().is_empty(),
        "{what}: ffprobe {} printed:\n{}",
        file.display(),
        p.stderr()
    );
}

/// ffprobe's container duration of `file` in seconds (`format=duration`); panics when it has
/// none.
pub fn probe_duration(file: &Path) -> f64 {
    let mut c = Command::new("ffprobe");
    c.args([
        "-hide_banner",
        "-v",
        "error",
        "-show_entries",
        "format=duration",
    ])
    .args(["-of", "default=noprint_wrappers=1:nokey=1"])
    .arg(file);
    let mut p = Proc::spawn(c);
    let status = p.wait_or_panic(Duration::from_secs(60));
    let out = p.stdout();
    assert!(
        status.success(),
        "ffprobe {}: {}",
        file.display(),
        p.stderr()
    );
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {}: no duration in {out:?}", file.display()))
}

/// The parts of a media playlist the fault tests judge.
#[derive(Debug, Default)]
pub struct MediaPlaylist {
    pub target: f64,
    pub extinf: Vec<f64>,
    pub uris: Vec<String>,
    pub endlist: bool,
    pub discontinuities: usize,
}

impl MediaPlaylist {
    pub fn total(&self) -> f64 {
        self.extinf.iter().sum()
    }
}

pub fn parse_media_playlist(text: &str) -> MediaPlaylist {
    let mut p = MediaPlaylist::default();
    for l in text.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = v.parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let v = v.split(',').next().unwrap_or("");
            p.extinf.push(v.parse().unwrap_or(f64::NAN));
        } else if l == "#EXT-X-ENDLIST" {
            p.endlist = true;
        } else if l == "#EXT-X-DISCONTINUITY" {
            p.discontinuities += 1;
        } else if !l.is_empty() && !l.starts_with('#') {
            p.uris.push(l.to_string());
        }
    }
    p
}

/// Reads and parses a playlist, panicking with the path when it is missing.
pub fn read_media_playlist(path: &Path) -> MediaPlaylist {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_media_playlist(&text)
}

/// The AMF0 number our `onMetaData` stores after the key `name` (`duration`, `filesize`).
pub fn flv_meta_number(bytes: &[u8], name: &str) -> Option<f64> {
    let mut key = (name.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    Some(f64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Every file under `dir` (not recursive) whose name ends with `ext`, sorted.
pub fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file() && p.to_string_lossy().ends_with(ext));
    v.sort();
    v
}

/// Polls `cond` every 50 ms for at most `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` to a process this test spawned.
#[cfg(unix)]
pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// What a timed HTTP-FLV read saw: the bytes (head included) and the longest wait between two
/// reads that returned data, counted from the first body byte.
#[derive(Debug)]
pub struct TimedRead {
    pub bytes: Vec<u8>,
    pub max_gap: Duration,
    /// Where in the run (since the first byte) the longest gap ended.
    pub max_gap_at: Duration,
    pub eof: bool,
}

/// `GET path` then reads for `duration`, timing every read: a stalled viewer shows as a long
/// `max_gap`. Retries while the answer is not 200 for up to `wait`.
pub fn timed_http_read(
    addr: SocketAddr,
    path: &str,
    wait: Duration,
    duration: Duration,
) -> io::Result<TimedRead> {
    let give_up = Instant::now() + wait;
    loop {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.write_all(&super::request_bytes("GET", path, 1, &[]))?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = TimedRead {
            bytes: Vec::new(),
            max_gap: Duration::ZERO,
            max_gap_at: Duration::ZERO,
            eof: false,
        };
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let mut end = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => {
                    out.eof = true;
                    break;
                }
                Ok(n) => {
                    let now = Instant::now();
                    if out.bytes.is_empty() && !buf[..n].starts_with(b"HTTP/1.1 200") {
                        break;
                    }
                    out.bytes.extend_from_slice(&buf[..n]);
                    match first {
                        None => {
                            first = Some(now);
                            end = now + duration;
                        }
                        Some(f) if now - last > out.max_gap => {
                            out.max_gap = now - last;
                            out.max_gap_at = now - f;
                        }
                        Some(_) => {}
                    }
                    last = now;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        if first.is_some() || Instant::now() >= give_up {
            // A gap still open at the end counts too.
            if first.is_some() && !out.eof && last.elapsed() > out.max_gap {
                out.max_gap = last.elapsed();
                out.max_gap_at = first.map(|f| f.elapsed()).unwrap_or_default();
            }
            return Ok(out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The FLV body of a chunked HTTP/1.1 response read whole or in part (`bytes` from
/// `timed_http_read`): the head is skipped and the chunk framing removed; a cut last chunk
/// keeps the bytes it has.
pub fn dechunk_http_body(bytes: &[u8]) -> Vec<u8> {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut rest = &bytes[head_end + 4..];
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let Some(size) = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
        else {
            return body;
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return body;
        }
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if take < size || rest.len() < take + 2 {
            return body;
        }
        rest = &rest[take + 2..];
    }
}
