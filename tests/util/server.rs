//! The server under test: the real `rtmpd` binary on port 0, with its stderr drained into a
//! shared list of lines so tests can wait for readiness and assert on log lines. Killed (SIGKILL)
//! and its data directory removed on drop, whether the test passed or not; when the test failed,
//! the server's log is printed so the failure can be read next to it.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the server may take to print its listening lines (a loaded 2-core machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rtmpd")
}

/// The options this build of the binary knows, from `--help` (asked once). Lets the helper pass
/// `--web-port 0` and `--data-dir` only once the issues that add them have landed: an option the
/// binary does not know would make it exit 2, one it knows but we left at its default would
/// bind a fixed port and break parallel tests.
fn help_text() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(binary())
            .arg("--help")
            .output()
            .expect("running rtmpd --help");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    })
}

pub fn binary_knows(option: &str) -> bool {
    help_text().contains(option)
}

type Log = Arc<(Mutex<Vec<String>>, Condvar)>;

pub struct Server {
    child: Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    /// The static web listener, when this build has one and it was not turned off.
    pub web: Option<SocketAddr>,
    /// A fresh directory under the system temp dir; passed as `--data-dir` when supported.
    pub data_dir: PathBuf,
    log: Log,
    status: Option<ExitStatus>,
}

pub struct ServerBuilder {
    args: Vec<String>,
    no_web: bool,
}

impl ServerBuilder {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Pass `--no-web` (when the binary knows it) instead of `--web-port 0`.
    pub fn no_web(mut self) -> Self {
        self.no_web = true;
        self
    }

    pub fn start(self) -> Server {
        Server::spawn(self)
    }
}

/// The address printed after `marker` in a log line. An unspecified bind address (0.0.0.0)
/// becomes loopback, which is where the tests connect.
fn parse_listen(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let token = rest.split_whitespace().next()?;
    let mut addr: SocketAddr = token.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    Some(addr)
}

fn drain_lines(r: impl Read + Send + 'static, log: Log) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line).trim_end().to_string();
                    let (lines, cv) = &*log;
                    lines.lock().unwrap().push(s);
                    cv.notify_all();
                }
            }
        }
    });
}

impl Server {
    /// The origin with defaults (loopback, port 0 everywhere).
    pub fn start() -> Server {
        Server::builder().start()
    }

    /// The origin with extra options.
    pub fn start_args(args: &[&str]) -> Server {
        Server::builder().args(args.iter().copied()).start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            no_web: false,
        }
    }

    fn spawn(b: ServerBuilder) -> Server {
        let has = |opt: &str| b.args.iter().any(|a| a == opt);
        let mut args: Vec<String> = Vec::new();
        // Defaults the test did not override (getopts refuses an option given twice).
        for (opt, val) in [
            ("--bind", "127.0.0.1"),
            ("--rtmp-port", "0"),
            ("--http-port", "0"),
        ] {
            if !has(opt) {
                args.extend([opt.to_string(), val.to_string()]);
            }
        }
        // Many servers run at once: none takes the default WebRTC port.
        if binary_knows("--webrtc-port") && !has("--webrtc-port") && !has("--no-webrtc") {
            args.extend(["--webrtc-port".into(), "0".into()]);
        }
        // Tests run many servers at once: none takes SRT's default UDP port 8890.
        if binary_knows("--srt-port") && !has("--srt-port") {
            args.extend(["--srt-port".into(), "0".into()]);
        }
        let mut want_web = false;
        if binary_knows("--web-port") && !has("--web-port") && !has("--no-web") {
            if b.no_web && binary_knows("--no-web") {
                args.push("--no-web".into());
            } else {
                args.extend(["--web-port".into(), "0".into()]);
                want_web = true;
            }
        } else if has("--web-port") {
            want_web = true;
        }
        // Removed by `Server`'s drop (or below when the start fails).
        let data_dir = super::TempDir::new("srv").keep();
        if binary_knows("--data-dir") && !has("--data-dir") {
            args.extend(["--data-dir".into(), data_dir.display().to_string()]);
        }
        args.extend(b.args);

        let mut child = Command::new(binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning rtmpd");
        let log: Log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        drain_lines(child.stderr.take().unwrap(), log.clone());
        drain_lines(child.stdout.take().unwrap(), log.clone());

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (lines, cv) = &*log;
        let mut guard = lines.lock().unwrap();
        loop {
            let find = |m: &str| guard.iter().find_map(|l| parse_listen(l, m));
            let rtmp = find("RTMP listening on ");
            let http = find("HTTP listening on ");
            let web = find("Web listening on ");
            if let (Some(rtmp), Some(http)) = (rtmp, http) {
                if !want_web || web.is_some() {
                    drop(guard);
                    return Server {
                        child,
                        rtmp,
                        http,
                        web,
                        data_dir,
                        log,
                        status: None,
                    };
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = guard.join("\n");
                let _ = std::fs::remove_dir_all(&data_dir);
                panic!("rtmpd {args:?} exited with {status} before listening; log:\n{text}");
            }
            let now = Instant::now();
            if now >= deadline {
                let text = guard.join("\n");
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&data_dir);
                panic!("rtmpd {args:?} did not print its listening lines in {STARTUP_TIMEOUT:?}; log:\n{text}");
            }
            // Short waits: the exit check above needs polling too.
            guard = cv
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(100)))
                .unwrap()
                .0;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rtmp://127.0.0.1:PORT/{path}` where path is `app/stream`.
    pub fn rtmp_url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    /// `http://127.0.0.1:PORT/{path}` for the HTTP port.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}/{}", self.http, path.trim_start_matches('/'))
    }

    /// `http://127.0.0.1:PORT/{path}` for the web port (panics when this server has none).
    pub fn web_url(&self, path: &str) -> String {
        let web = self.web.expect("this server has no web listener");
        format!("http://{web}/{}", path.trim_start_matches('/'))
    }

    /// The address of another listener from its startup line (`"RTMPS"`, `"HTTPS"`), waited
    /// for: `start` returns as soon as the RTMP and HTTP lines are read.
    pub fn listener(&self, label: &str) -> SocketAddr {
        let marker = format!("{label} listening on ");
        self.wait_for_log(&marker, Duration::from_secs(5))
            .and_then(|l| parse_listen(&l, &marker))
            .unwrap_or_else(|| panic!("no '{marker}' line in the log"))
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }

    pub fn log_contains(&self, substr: &str) -> bool {
        self.log
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(substr))
    }

    /// The first log line containing `substr`, waiting at most `timeout` for it.
    pub fn wait_for_log(&self, substr: &str, timeout: Duration) -> Option<String> {
        self.wait_for_log_where(|l| l.contains(substr), timeout)
    }

    pub fn wait_for_log_where(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Whether the process is still running (it must survive everything the tests throw at it).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status.is_none()
    }

    /// Panics with the log when the server has died.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "rtmpd died ({:?}); log:\n{}",
                self.status,
                self.logs().join("\n")
            );
        }
    }

    /// SIGTERM, then the exit status if it came within `timeout`.
    #[cfg(unix)]
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::proc::sigterm(self.child.id());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- rtmpd log ({} lines) ----\n{}\n---- end of rtmpd log ----",
                self.logs().len(),
                self.logs().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
