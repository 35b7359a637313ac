//! HTTP hooks: `--on-publish`/`--on-play` POST a JSON description of the request to the operator's
//! service and its answer (2xx allows; anything else, a timeout or no connection refuses) comes back
//! keyed by the request id; `--on-unpublish`/`--on-stop` are fire-and-forget notices. The calls run
//! on a few std worker threads with blocking sockets and a deadline, fed by a bounded queue; answers
//! go on a channel and the loop is woken by a callback (`server` passes its `mio::Waker`). Never on
//! the loop; plain `http://` only (put a local TLS proxy in front of an https service).

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::policy::after_hook;
use super::{Decision, Refusal, RefuseKind, Request};
use crate::codec::json::{self, Pairs};

/// Worker threads: hooks are short calls to one service; four in flight is plenty.
pub const WORKERS: usize = 4;
/// Calls waiting for a worker; more are refused at once (publish/play) or dropped (notices).
pub const QUEUE: usize = 256;
/// The hook's answer is read up to its status line; a longer first line is a bad answer.
const MAX_STATUS_LINE: usize = 1024;

/// A parsed `http://host[:port][/path][?query]` hook URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HookUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, sent as the request-target.
    pub target: String,
}

impl HookUrl {
    pub fn parse(url: &str) -> Result<HookUrl, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(if url.starts_with("https://") {
                "only http:// hooks (put a local TLS proxy in front of an https service)".into()
            } else {
                "not an http:// URL".into()
            });
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        if authority.contains('@') {
            return Err("user:password@ is not supported in a hook URL".into());
        }
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) || target.contains('#') {
            return Err("the path has spaces, control characters or a #fragment".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err("junk after the IPv6 host".into()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err("no host, or a host with characters a host name cannot have".into());
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("'{p}' is not a port (1-65535)"))?,
        };
        Ok(HookUrl {
            host: host.to_string(),
            port,
            target,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Shown with any `token`/`sign` in its query masked: hook URLs go to logs and `--print-config`.
impl fmt::Display for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http://{}{}",
            self.host_header(),
            super::query::mask(&self.target)
        )
    }
}

impl fmt::Debug for HookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookUrl({self})")
    }
}

/// What a hook is told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Publish,
    Play,
    /// A publisher left (`--on-unpublish`).
    Unpublish,
    /// A player left (`--on-stop`).
    Stop,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Publish => "publish",
            Event::Play => "play",
            Event::Unpublish => "unpublish",
            Event::Stop => "stop",
        }
    }
}

#[derive(Serialize)]
struct Body<'a, Q: Serialize> {
    action: &'static str,
    app: &'a str,
    stream: &'a str,
    client: String,
    ip: String,
    protocol: &'static str,
    query: Q,
}

/// The JSON body: `{"action", "app", "stream", "client", "ip", "protocol", "query": {..}}`, with
/// the values of `token` and `sign` as `***` (the hook decides on who and what, not on secrets).
pub fn body(event: Event, req: &Request) -> String {
    let query: Vec<(&str, &str)> = req.query.masked().collect();
    json::to_string(&Body {
        action: event.as_str(),
        app: &req.app,
        stream: &req.stream,
        client: req.peer.to_string(),
        ip: req.peer.ip().to_string(),
        protocol: req.protocol.as_str(),
        query: Pairs(query.iter().copied()),
    })
}

/// Why a hook call did not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookError {
    /// The service answered with a status outside 2xx.
    Status(u16),
    /// No answer within `--hook-timeout`.
    Timeout,
    /// No connection (refused, no route, name not found).
    Unreachable(String),
    /// The answer did not start with an HTTP status line.
    BadAnswer,
    /// The queue of waiting calls is full (or the workers are gone): refused without a call.
    Overloaded,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::Status(s) => write!(f, "hook answered {s}"),
            HookError::Timeout => f.write_str("hook timed out"),
            HookError::Unreachable(e) => write!(f, "hook unreachable: {e}"),
            HookError::BadAnswer => f.write_str("hook sent no HTTP status line"),
            HookError::Overloaded => f.write_str("too many hook calls waiting"),
        }
    }
}

/// The answer to `HookPool::ask` for request `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookAnswer {
    pub id: u64,
    /// The 2xx status, or why not.
    pub result: Result<u16, HookError>,
}

impl HookAnswer {
    /// The final decision on the request: a 2xx allows, anything else refuses (kind `Hook`).
    pub fn decision(&self) -> Decision {
        after_hook(match &self.result {
            Ok(_) => Ok(()),
            Err(e) => Err(Cow::Owned(e.to_string())),
        })
    }
}

/// Called by a worker after it queued an answer; the server passes a `mio::Waker::wake`.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

struct Job {
    /// `None` for a notice: nobody waits for it.
    id: Option<u64>,
    event: Event,
    url: Arc<HookUrl>,
    body: String,
    /// Set when asked, so time spent waiting for a worker counts against `--hook-timeout`.
    deadline: Instant,
}

/// The hook workers. Dropping the pool lets the workers finish their current call and exit.
pub struct HookPool {
    jobs: SyncSender<Job>,
    answers: Receiver<HookAnswer>,
    timeout: Duration,
    dropped_notices: u64,
}

impl HookPool {
    /// Starts `workers` threads with a queue of `queue` calls; each call is answered within
    /// `timeout` of being asked, queueing included (name lookup of a host name excepted: use an IP
    /// address for a strict bound).
    pub fn new(
        workers: usize,
        queue: usize,
        timeout: Duration,
        wake: Wake,
    ) -> std::io::Result<HookPool> {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (answer_tx, answers) = mpsc::channel();
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&job_rx);
            let tx = answer_tx.clone();
            let wake = Arc::clone(&wake);
            std::thread::Builder::new()
                .name(format!("hook-{i}"))
                .spawn(move || worker(&rx, &tx, &*wake))?;
        }
        Ok(HookPool {
            jobs,
            answers,
            timeout,
            dropped_notices: 0,
        })
    }

    /// Asks the hook about `req` (after `Access::decide` said `NeedsHook`); the answer comes back
    /// from `poll_answer` with `id`. A full queue refuses at once: waiting would hold the client
    /// for longer than the hook timeout promises.
    pub fn ask(
        &self,
        id: u64,
        url: &Arc<HookUrl>,
        event: Event,
        req: &Request,
    ) -> Result<(), Refusal> {
        let job = Job {
            id: Some(id),
            event,
            url: Arc::clone(url),
            body: body(event, req),
            deadline: Instant::now() + self.timeout,
        };
        self.jobs
            .try_send(job)
            .map_err(|_| Refusal::new(RefuseKind::Hook, HookError::Overloaded.to_string()))
    }

    /// Sends a notice (`Unpublish`, `Stop`); with a full queue it is dropped and counted.
    pub fn notify(&mut self, url: &Arc<HookUrl>, event: Event, req: &Request) {
        let job = Job {
            id: None,
            event,
            url: Arc::clone(url),
            body: body(event, req),
            deadline: Instant::now() + self.timeout,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.jobs.try_send(job)
        {
            self.dropped_notices += 1;
        }
    }

    /// The next answer, if one is ready. The loop calls this until `None` after each wake, and
    /// ignores answers for ids it no longer waits for (the client left).
    pub fn poll_answer(&self) -> Option<HookAnswer> {
        self.answers.try_recv().ok()
    }

    /// Notices dropped because the queue was full (for `/metrics`).
    pub fn dropped_notices(&self) -> u64 {
        self.dropped_notices
    }
}

fn worker(
    jobs: &Mutex<Receiver<Job>>,
    answers: &mpsc::Sender<HookAnswer>,
    wake: &(dyn Fn() + Send + Sync),
) {
    loop {
        // The lock is held only while waiting for a job, never during a call.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // the pool was dropped
        };
        let result = post(&job.url, &job.body, job.deadline);
        match job.id {
            Some(id) => {
                if answers.send(HookAnswer { id, result }).is_err() {
                    return;
                }
                wake();
            }
            None => {
                if let Err(e) = result {
                    log::warn!("on-{} hook {}: {e}", job.event.as_str(), job.url);
                }
            }
        }
    }
}

fn io_error(e: std::io::Error) -> HookError {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => HookError::Timeout,
        _ => HookError::Unreachable(e.to_string()),
    }
}

/// One POST that ends by `deadline`; returns the status if it is 2xx.
fn post(url: &HookUrl, body: &str, deadline: Instant) -> Result<u16, HookError> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HookError::Timeout)
    };
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| HookError::Unreachable(e.to_string()))?;
    let mut last = HookError::Unreachable("the host name has no address".into());
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = io_error(e),
        }
    }
    let mut s = stream.ok_or(last)?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.target,
        url.host_header(),
        crate::VERSION,
        body.len()
    );
    s.set_write_timeout(Some(left()?)).map_err(io_error)?;
    s.write_all(request.as_bytes()).map_err(io_error)?;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        // Re-armed before each read, so a service that drips bytes still meets the deadline.
        s.set_read_timeout(Some(left()?)).map_err(io_error)?;
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err(HookError::BadAnswer),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let status = status_code(&buf[..end]).ok_or(HookError::BadAnswer)?;
            return if (200..300).contains(&status) {
                Ok(status)
            } else {
                Err(HookError::Status(status))
            };
        }
        if buf.len() > MAX_STATUS_LINE {
            return Err(HookError::BadAnswer);
        }
    }
}

/// `HTTP/1.x NNN ...` -> NNN.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Protocol};
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn url_parsing() {
        let u = HookUrl::parse("http://127.0.0.1:8080/auth/publish?key=k&token=T").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.target, "/auth/publish?key=k&token=T");
        assert_eq!(
            u.to_string(),
            "http://127.0.0.1:8080/auth/publish?key=k&token=***"
        );
        assert!(!format!("{u:?}").contains("=T"));
        let u = HookUrl::parse("http://hooks.example").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header()),
            (80, "/", "hooks.example".into())
        );
        let u = HookUrl::parse("http://[::1]:9000?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.target.as_str()), ("::1", "/?x=1"));
        assert_eq!(u.host_header(), "[::1]:9000");
        for bad in [
            "https://h/",
            "ftp://h/",
            "h:80/x",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://h/a#f",
            "http://[::1/",
            "http://h\r\nX: y/",
        ] {
            assert!(HookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    fn request() -> Request {
        Request::rtmp(
            Action::Publish,
            "live?token=s3cret",
            Some("rtmp://h/live?token=s3cret"),
            "cam?token=s3cret&who=\"me\"\n",
            "203.0.113.9:5555".parse().unwrap(),
        )
    }

    #[test]
    fn body_is_json_with_credentials_masked() {
        let b = body(Event::Publish, &request());
        assert_eq!(
            b,
            r#"{"action":"publish","app":"live","stream":"cam","client":"203.0.113.9:5555","ip":"203.0.113.9","protocol":"rtmp","query":{"token":"***","who":"\"me\"\n"}}"#
        );
        let mut r = request();
        r.protocol = Protocol::WsFlv;
        r.query = Default::default();
        assert!(body(Event::Stop, &r).ends_with(r#""protocol":"ws-flv","query":{}}"#));
    }

    #[test]
    fn status_lines() {
        for (line, want) in [
            (&b"HTTP/1.1 200 OK\r"[..], Some(200)),
            (b"HTTP/1.0 403", Some(403)),
            (b"HTTP/1.1 99 x", None),
            (b"HTTP/1.1 2000 x", None),
            (b"HTTP/2 200", None),
            (b"SSH-2.0", None),
            (b"\xff\xfe", None),
        ] {
            assert_eq!(status_code(line), want, "{line:?}");
        }
    }

    /// A hook service on 127.0.0.1: `/allow` 200, `/deny` 403, `/slow` answers after 2 s,
    /// `/garbage` no HTTP; every request's body goes to the channel.
    fn service() -> (u16, Receiver<(String, String)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let (target, body) = loop {
                        let Ok(n) = c.read(&mut chunk) else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("Content-Length: "))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0);
                            if body.len() >= len {
                                let target = head.split(' ').nth(1).unwrap_or("").to_string();
                                break (target, body.to_string());
                            }
                        }
                    };
                    let _ = tx.send((target.clone(), body));
                    let answer: &[u8] = match target.as_str() {
                        "/allow" => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                        "/deny" => b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                        "/slow" => {
                            std::thread::sleep(Duration::from_secs(2));
                            b"HTTP/1.1 200 OK\r\n\r\n"
                        }
                        _ => b"hello\n",
                    };
                    let _ = c.write_all(answer);
                });
            }
        });
        (port, rx)
    }

    fn url(port: u16, path: &str) -> Arc<HookUrl> {
        Arc::new(HookUrl::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap())
    }

    /// Collects `n` answers, waiting on the wake callback's counter rather than sleeping blind.
    fn answers(pool: &HookPool, n: usize) -> Vec<HookAnswer> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            match pool.poll_answer() {
                Some(a) => got.push(a),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        got
    }

    #[test]
    fn allow_deny_timeout_unreachable() {
        let (port, bodies) = service();
        // A port nothing listens on: bound, then closed.
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&wakes);
        let pool = HookPool::new(
            4,
            16,
            Duration::from_millis(400),
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        let req = request();
        for (id, path) in [(1, "/allow"), (2, "/deny"), (3, "/slow"), (5, "/garbage")] {
            pool.ask(id, &url(port, path), Event::Publish, &req)
                .unwrap();
        }
        pool.ask(4, &url(dead, "/allow"), Event::Play, &req)
            .unwrap();
        let mut got = answers(&pool, 5);
        got.sort_by_key(|a| a.id);
        let results: Vec<_> = got.iter().map(|a| a.result.clone()).collect();
        assert_eq!(results[0], Ok(200));
        assert_eq!(results[1], Err(HookError::Status(403)));
        assert_eq!(results[2], Err(HookError::Timeout));
        assert!(
            matches!(results[3], Err(HookError::Unreachable(_))),
            "{:?}",
            results[3]
        );
        assert_eq!(results[4], Err(HookError::BadAnswer));
        // The wake follows the send, so give the last one a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while wakes.load(Ordering::SeqCst) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 5, "one wake per answer");
        assert_eq!(got[0].decision(), Decision::Allow);
        for a in &got[1..] {
            let Decision::Refuse(r) = a.decision() else {
                panic!("{a:?}")
            };
            assert_eq!(r.kind, RefuseKind::Hook);
        }
        let Decision::Refuse(r) = got[3].decision() else {
            panic!()
        };
        assert!(r.reason.starts_with("hook unreachable: "), "{}", r.reason);
        // What the service received: the JSON body, the token masked.
        let (target, body) = bodies.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(target.starts_with('/'));
        assert!(
            body.starts_with(r#"{"action":"publish","app":"live","stream":"cam""#),
            "{body}"
        );
        assert!(!body.contains("s3cret"));
    }

    #[test]
    fn a_slow_hook_does_not_hold_up_the_others() {
        let (port, _bodies) = service();
        let pool = HookPool::new(2, 16, Duration::from_secs(5), Arc::new(|| {})).unwrap();
        let req = request();
        let started = Instant::now();
        pool.ask(1, &url(port, "/slow"), Event::Play, &req).unwrap();
        pool.ask(2, &url(port, "/allow"), Event::Play, &req)
            .unwrap();
        let first = answers(&pool, 1);
        assert_eq!(first[0].id, 2, "the fast answer comes first");
        assert!(started.elapsed() < Duration::from_millis(1500));
        let second = answers(&pool, 1);
        assert_eq!((second[0].id, second[0].result.clone()), (1, Ok(200)));
    }

    /// Regression: the timeout ran from when a worker took the call, so calls queued behind slow
    /// ones waited a multiple of `--hook-timeout`.
    #[test]
    fn queued_calls_are_answered_within_the_timeout_of_their_ask() {
        let (port, _bodies) = service();
        let pool = HookPool::new(1, 16, Duration::from_millis(300), Arc::new(|| {})).unwrap();
        let req = request();
        let started = Instant::now();
        for id in 0..4 {
            pool.ask(id, &url(port, "/slow"), Event::Play, &req)
                .unwrap();
        }
        let got = answers(&pool, 4);
        assert_eq!(got.len(), 4);
        assert!(
            got.iter().all(|a| a.result == Err(HookError::Timeout)),
            "{got:?}"
        );
        // One worker taking 300 ms per call would need 1200 ms.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        // A call whose time ran out in the queue does not reach the service.
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            post(&url(port, "/allow"), "{}", past),
            Err(HookError::Timeout)
        );
    }

    #[test]
    fn answers_wake_the_loop() {
        let (port, _bodies) = service();
        let (tx, rx) = mpsc::channel();
        let wake: Wake = Arc::new(move || {
            let _ = tx.send(());
        });
        let pool = HookPool::new(1, 4, Duration::from_secs(3), wake).unwrap();
        pool.ask(42, &url(port, "/allow"), Event::Publish, &request())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        assert_eq!(
            pool.poll_answer().map(|a| (a.id, a.result)),
            Some((42, Ok(200)))
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_notices_are_counted() {
        let (port, bodies) = service();
        let mut pool = HookPool::new(1, 1, Duration::from_secs(3), Arc::new(|| {})).unwrap();
        let req = request();
        let slow = url(port, "/slow");
        // One worker and one queue slot: of three calls at least one finds no room.
        let refused = (0..3)
            .filter_map(|id| pool.ask(id, &slow, Event::Play, &req).err())
            .collect::<Vec<_>>();
        assert!(!refused.is_empty());
        assert_eq!(refused[0].kind, RefuseKind::Hook);
        assert_eq!(refused[0].reason, "too many hook calls waiting");
        pool.notify(&slow, Event::Stop, &req);
        pool.notify(&slow, Event::Stop, &req);
        assert!(pool.dropped_notices() >= 1);
        drop(pool);
        // The worker still made its call: a dropped pool is not a cancelled request.
        assert!(bodies.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn notices_are_sent() {
        let (port, bodies) = service();
        let mut pool = HookPool::new(1, 4, Duration::from_secs(3), Arc::new(|| {})).unwrap();
        let mut req = request();
        req.action = Action::Play;
        pool.notify(&url(port, "/allow"), Event::Unpublish, &req);
        let (target, body) = bodies.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(target, "/allow");
        assert!(body.starts_with(r#"{"action":"unpublish""#));
        assert_eq!(pool.poll_answer(), None, "a notice has no answer");
        assert_eq!(pool.dropped_notices(), 0);
    }
}
