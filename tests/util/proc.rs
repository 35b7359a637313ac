//! Child processes for tests: output captured by drain threads (so a chatty child never blocks
//! on a full pipe), waits with a deadline, SIGKILL on drop whether the test passed or not.
//! Also the FFmpeg/ffprobe command lines the tests share.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fixture_path;

pub struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drains: Vec<JoinHandle<()>>,
}

fn drain(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr captured.
    pub fn spawn(mut cmd: Command) -> Proc {
        let name = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drains = vec![
            drain(child.stdout.take().unwrap(), stdout.clone()),
            drain(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Proc {
            name,
            child,
            status: None,
            stdout,
            stderr,
            drains,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child ended within `timeout`; output is complete once this is Some.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits at most `timeout`, panicking with the child's output if it is still running.
    pub fn wait_or_panic(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(s) => s,
            None => {
                self.kill();
                panic!(
                    "{} still running after {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                // The pipes are at EOF once the child is gone: collect the rest of the output.
                for d in self.drains.drain(..) {
                    let _ = d.join();
                }
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// SIGKILL (on Unix) and reap.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
            for d in self.drains.drain(..) {
                let _ = d.join();
            }
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `ffmpeg -re [input_args] -i tests/data/FIXTURE -c copy [output_args] -f flv URL`: publishes a
/// fixture in real time. Errors only on stderr (`-v error`).
pub fn ffmpeg_publish_with(
    fixture: &str,
    url: &str,
    input_args: &[&str],
    output_args: &[&str],
) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-re"])
        .args(input_args)
        .arg("-i")
        .arg(fixture_path(fixture))
        .args(["-c", "copy"])
        .args(output_args)
        .args(["-f", "flv", url]);
    Proc::spawn(cmd)
}

/// `ffmpeg_publish_with` without input options; `extra_args` are output options (for example
/// `-output_ts_offset 16770`).
pub fn ffmpeg_publish(fixture: &str, url: &str, extra_args: &[&str]) -> Proc {
    ffmpeg_publish_with(fixture, url, &[], extra_args)
}

/// `ffmpeg -v error -i URL -t SECS -f null -`: decodes what the server sends; a healthy stream
/// leaves stderr empty.
pub fn ffmpeg_pull_null(url: &str, secs: u32) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-i", url])
        .args(["-t", &secs.to_string(), "-f", "null", "-"]);
    Proc::spawn(cmd)
}

/// ffprobe's view of the streams at `url`, as `key=value` lines
/// (codec_type, codec_name, profile, width, height, sample_rate, channels).
pub fn ffprobe_streams(url: &str) -> Proc {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-hide_banner", "-v", "error", "-show_entries"])
        .arg("stream=codec_type,codec_name,profile,width,height,sample_rate,channels")
        .args(["-of", "default=noprint_wrappers=1", url]);
    Proc::spawn(cmd)
}

/// Sends SIGTERM (graceful shutdown) to a process.
#[cfg(unix)]
pub fn sigterm(pid: u32) {
    // SAFETY: kill(2) on a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}
