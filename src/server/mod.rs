//! The event loop: one `mio::Poll` drives every socket of the process. This file owns the
//! `Server` (listeners, the connection slab, the timer heap, stats, shutdown) and the loop; one
//! `now` is read per turn and passed down. A token names its source (`source`); each kind of
//! source has its driver (`drive`: readable/writable, timeout, next deadline) and every deadline
//! is an entry in one heap (`timers`). `impl Server` is split by job: `netio` moves bytes (reads,
//! vectored/spliced writes, sendfile, interest), `rtmp` and `http` turn protocol events into
//! requests for the sans-IO `origin` core (which judges publish/play and drives the hub and the
//! recorders), with decisions as functions in `glue`, `actions` carries out what the core
//! answers, `upstream` is the FLV gateway's pulls, `udp` the UDP endpoint, `api` the JSON and
//! metrics, `start` binds the listeners and sets a process up. docs/architecture.md, "The event
//! loop", is the map. A panic is a bug: it ends the process (see `main`).

mod actions;
mod api;
mod conn;
mod drive;
pub mod fs;
pub mod glue;
mod http;
mod ice_tcp;
pub mod limits;
mod llhls;
mod netio;
pub mod outq;
mod proxied;
mod recordings;
pub mod reply;
mod rtmp;
pub mod source;
#[cfg(target_os = "linux")]
mod splice;
mod srt;
mod start;
pub mod timers;
mod tlsio;
pub mod udp;
mod upstream;
mod webrtc;

pub use start::{run_file_gateway, run_origin};
pub use upstream::run_flv_gateway;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;

use crate::config::ViewerConfig;
use crate::http::files::Root;
use crate::hub::HubConfig;
use crate::media::StreamKey;
use crate::origin::Origin;
use conn::{Conn, ConnState, Listener, RtmpRole};
use source::{Ready, Source};
use timers::{TimerHeap, TimerKey};
use tlsio::Listening;

/// Reads per connection per wakeup before others get their turn.
const READS_PER_WAKEUP: usize = 16;
const READ_CHUNK: usize = 64 * 1024;
/// File-body bytes one connection may write per turn of the loop. A fast reader on loopback keeps
/// the socket writable, so without a budget one download would run to its end inside one call
/// and every other client would wait for it (measured: 0.5 s stalls during a 1 GB download).
const FILE_BYTES_PER_TURN: usize = 1 << 20;
/// Viewer-queue bytes one connection may write per turn. A live viewer's flush is far below
/// it; a joiner's cached GOP (~500 KB at 2 Mbps) is not: its first turn carries the keyframe
/// and the rest waits until every other viewer that joined at the same time got its first
/// turn. With 1,000 RTMP viewers joining at once, time to first keyframe p99 went from
/// 130-250 ms to about 80 ms (tools/bench.sh scenario a, 2 Mbps stream).
const VIEWER_BYTES_PER_TURN: usize = crate::hub::queue::WRITE_BYTES;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const STATS_EVERY: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISHER_IDLE: Duration = Duration::from_secs(30);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// An HTTP answer that makes no progress this long (the client stopped reading) is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// A client that does not read its replies (input stopped, see `netio::PRIVATE_OUT_MAX`) and
/// still has not drained them after this long is closed.
const PRIVATE_STALL: Duration = Duration::from_secs(10);
/// How often a publisher held for its recorders is re-checked without a wake-up.
const HELD_RECHECK: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

/// Counters since start, for the API, the metrics and the stats lines.
#[derive(Default)]
pub struct Totals {
    pub accepted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Of `bytes_out`: bytes sent from a copy shared by several viewers (`splice`).
    pub bytes_out_shared: u64,
    pub refused: u64,
    /// Per-connection bounds that bit (a connection closed or its input paused), by name.
    pub bounds: std::collections::BTreeMap<&'static str, u64>,
}

impl Totals {
    /// A per-connection bound bit (`/metrics` `rtmpd_connection_bound_total{bound=...}`).
    pub fn bound(&mut self, name: &'static str) {
        *self.bounds.entry(name).or_insert(0) += 1;
    }
}

pub struct Server {
    poll: Poll,
    listeners: Vec<Listening>,
    conns: Slab<Conn>,
    /// Publish/play policy, the hub and the recordings: the sans-IO core this loop drives.
    core: Origin,
    waker: Arc<Waker>,
    /// The loop's clock, read once per turn (`turn_clock`) and passed down.
    now: Instant,
    now_ms: u64,
    viewer_cfg: ViewerConfig,
    setup: Setup,
    /// `--access-log` file; `None` logs requests to stderr.
    access_log: Option<std::io::BufWriter<std::fs::File>>,
    started: Instant,
    started_wall: std::time::SystemTime,
    scratch: Vec<u8>,
    /// Connections with queued output waiting for the next merged flush.
    dirty: Vec<usize>,
    /// Zero-copy fan-out for merged flushes (None when its pipe could not be made).
    #[cfg(target_os = "linux")]
    splice: Option<splice::Splicer>,
    /// Connections closed this turn; their slots are freed at its end.
    to_free: Vec<usize>,
    /// Connections that still had input when their read budget ran out.
    pending_read: Vec<usize>,
    /// Connections that spent their file-body budget while still writable: continued next turn.
    pending_write: Vec<usize>,
    /// HTTP connections whose answers drained while pipelined requests wait: parsed next turn.
    pending_parse: Vec<usize>,
    shutdown: Arc<AtomicBool>,
    totals: Totals,
    next_flush: Instant,
    /// Every deadline of every machine (`timers`, `drive`).
    timers: TimerHeap,
    /// The timers due this turn (reused).
    due: Vec<TimerKey>,
    /// When each of the loop's own timers is set for (`drive::arm_loop`).
    loop_armed: [Option<u64>; 6],
    /// The generation of the next connection (a reused slab slot gets a new one).
    next_generation: u64,
    /// Viewers whose queue was left non-empty by a write, with their generation: the only
    /// ones that can have skipped, so the only ones the sweep looks at (`log_skips`).
    skip_watch: Vec<(usize, u64)>,
    /// UDP endpoints and the protocol each one serves (none until a UDP protocol is on).
    udp: Vec<udp::UdpPort>,
    /// UDP sockets whose read budget ran out (`Source::Udp` indexes): read again next turn.
    pending_udp: Vec<usize>,
    /// What glue functions list for the loop to do (`glue`), reused.
    effects: Vec<glue::Effect>,
    last_stats: Vec<(StreamKey, u64, u64)>,
    seed: u64,
    /// flv-gateway mode: the upstream pulls (None in the other modes).
    gateway: Option<Box<upstream::Gateway>>,
    /// The certificate of the TLS listeners (None when there are none).
    certs: Option<crate::tls::CertStore>,
    /// Plaintext decrypted from one read (`tlsio`), reused.
    tls_plain: Vec<u8>,
    /// Playback cuts in progress (`recordings`); started with the first one.
    playback: Option<recordings::Playback>,
    /// WHEP playback (origin with a WebRTC port).
    webrtc: Option<Box<webrtc::WebRtc>>,
}

/// What a server process serves besides its listeners.
pub struct Setup {
    pub mode: &'static str,
    pub viewer: ViewerConfig,
    /// Static roots, first match wins: the pages, then the data dir (origin) or one root (file gateway).
    pub roots: Vec<Root>,
    /// Serve `home.html` for `/` (the origin's dashboard); the file gateway serves `/` like any folder.
    pub home_page: bool,
    /// The origin's data dir, for `/api/recordings`.
    pub data_dir: Option<std::path::PathBuf>,
    pub dir_listing: bool,
    pub access_log: Option<std::path::PathBuf>,
    /// `--upload`'s bucket: recordings whose local copy is gone are answered from it.
    pub remote: Option<crate::record::upload::Remote>,
}

/// A panic anywhere (the loop, a recorder worker) is a bug that may have left the hub half
/// updated, so nothing carries on after it: the standard message (with its location), one
/// error line, and the process exits non-zero. The README's systemd unit restarts it, and the
/// recorders' crash repair mends the files at start.
fn stop_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if crate::contain::is_contained() {
                // A third-party protocol library's panic (`contain::run`): its session ends.
                error!("a protocol library failed (its session ends): {info}");
                return;
            }
            default(info);
            error!("internal error (a bug, please report it): {info}; stopping");
            log::logger().flush();
            std::process::exit(101);
        }));
    });
}

/// Seconds since the Unix epoch, for signed URLs' `expires` (0 before 1970: nothing is valid).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hub_config(v: &ViewerConfig) -> HubConfig {
    HubConfig {
        gop_cache: v.gop_cache,
        queue_soft_bytes: v.queue_soft_bytes,
        queue_soft_ms: v.queue_soft_ms,
        queue_hard_bytes: v.queue_hard_bytes,
        queue_hard_ms: v.queue_hard_ms,
        ..HubConfig::default()
    }
}

impl Server {
    fn new(setup: Setup, mut listeners: Vec<Listening>) -> Result<Server, ServerError> {
        let access_log = match &setup.access_log {
            None => None,
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| ServerError(format!("--access-log {}: {e}", path.display())))?,
            )),
        };
        stop_on_panic();
        let poll =
            Poll::new().map_err(|e| ServerError(format!("cannot create the event loop: {e}")))?;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(
                    &mut l.socket,
                    Source::Listener(i).token(),
                    Interest::READABLE,
                )
                .map_err(|e| ServerError(e.to_string()))?;
        }
        let waker = Arc::new(
            Waker::new(poll.registry(), Source::Waker.token())
                .map_err(|e| ServerError(e.to_string()))?,
        );
        let shutdown = Arc::new(AtomicBool::new(false));
        {
            let (flag, waker) = (shutdown.clone(), waker.clone());
            ctrlc::set_handler(move || {
                flag.store(true, Ordering::SeqCst);
                let _ = waker.wake();
            })
            .map_err(|e| ServerError(format!("cannot install the Ctrl-C handler: {e}")))?;
        }
        let now = Instant::now();
        Ok(Server {
            poll,
            listeners,
            conns: Slab::with_capacity(1024),
            core: Origin::new(hub_config(&setup.viewer), None),
            waker,
            now,
            now_ms: 0,
            viewer_cfg: setup.viewer.clone(),
            setup,
            access_log,
            started: now,
            started_wall: std::time::SystemTime::now(),
            scratch: vec![0; READ_CHUNK],
            dirty: Vec::new(),
            #[cfg(target_os = "linux")]
            splice: splice::Splicer::new()
                .map_err(|e| warn!("zero-copy fan-out off: {e}"))
                .ok(),
            to_free: Vec::new(),
            pending_read: Vec::new(),
            pending_write: Vec::new(),
            pending_parse: Vec::new(),
            shutdown,
            totals: Totals::default(),
            next_flush: now,
            timers: TimerHeap::new(),
            due: Vec::new(),
            loop_armed: [None; 6],
            next_generation: 1,
            skip_watch: Vec::new(),
            udp: Vec::new(),
            pending_udp: Vec::new(),
            effects: Vec::new(),
            last_stats: Vec::new(),
            seed: now.elapsed().as_nanos() as u64 ^ std::process::id() as u64,
            gateway: None,
            certs: None,
            tls_plain: Vec::new(),
            playback: None,
            webrtc: None,
        })
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Reads the clock for this turn of the loop: everything in the turn uses this `now`.
    fn turn_clock(&mut self) {
        self.now = Instant::now();
        self.now_ms = self.now.duration_since(self.started).as_millis() as u64;
    }

    /// One turn: poll until the earliest timer (or an event), read the clock, hand each event
    /// to its source's driver (`drive`), finish what budgets left over, run the due timers, set
    /// the machines' next deadlines.
    fn run(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        self.start_timers();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError(format!("event loop failed: {e}")));
            }
            self.turn_clock();
            if self.core.has_held() {
                // A recorder may have drained (its worker woke us) or stalled past its bound.
                self.core.poll_held(self.now_ms);
                self.apply_actions();
            }
            if self.core.hub.bridges_draining() {
                // An ended Opus publish's recordings wait for its audio bridge's last AAC.
                self.core.bridged_audio(self.now_ms);
                self.apply_actions();
            }
            let mut woken = false;
            for event in events.iter() {
                match Source::of(event.token()) {
                    Some(Source::Waker) => woken = true,
                    Some(source) => self.ready(source, Ready::of(event)),
                    None => {}
                }
            }
            if woken {
                // A hook worker may have answered (wakes merge: take every answer).
                self.hook_verdicts();
                self.playback_done();
                // An audio bridge made AAC (Opus streams' RTMP and FLV players).
                let now_ms = self.now_ms();
                self.core.bridged_audio(now_ms);
                self.apply_actions();
            }
            for t in std::mem::take(&mut self.pending_read) {
                self.on_readable(t);
            }
            for t in std::mem::take(&mut self.pending_write) {
                self.write_conn(t);
            }
            for i in std::mem::take(&mut self.pending_udp) {
                let again = Ready {
                    readable: true,
                    writable: false,
                };
                self.ready(Source::Udp(i), again);
            }
            for t in std::mem::take(&mut self.pending_parse) {
                self.http_parse(t);
                self.arm_conn(t);
            }
            // Parked LL-HLS requests go out in the turn of the frame that made their part.
            self.llhls_wake();
            self.run_timers();
            self.webrtc_turn();
            self.arm_machines();
            self.free_closed();
            if self.shutdown.load(Ordering::SeqCst) {
                self.shut_down();
                return Ok(());
            }
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let Some(l) = self.listeners.get(index) else {
                return;
            };
            let (kind, tls) = (l.kind, l.tls);
            match l.socket.accept() {
                Ok((socket, peer)) => self.add_conn(socket, peer, kind, tls),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: log and try again on the next readiness event.
                    error!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, mut socket: TcpStream, peer: SocketAddr, kind: Listener, tls: bool) {
        if let Err(r) = self.core.limits.admit_connection(peer.ip(), self.now_ms) {
            // The newcomer only: an HTTP client gets a 503 if the socket takes it at once.
            if let Some(line) = r.log {
                warn!("{line}");
            }
            if kind != Listener::Rtmp && !tls {
                let _ = socket.write(&crate::server::reply::http_limit(&r.hit));
            }
            self.totals.refused += 1;
            return;
        }
        let _ = socket.set_nodelay(true);
        let session = if tls {
            let Some(s) = self.new_tls_session() else {
                self.core.limits.release_connection(peer.ip());
                return;
            };
            Some(s)
        } else {
            None
        };
        let now = self.now;
        let state = match kind {
            Listener::Rtmp => {
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let session = crate::rtmp::session::ServerSession::new(
                    crate::rtmp::session::SessionConfig::default(),
                    self.seed,
                    self.now_ms() as u32,
                );
                ConnState::Rtmp(Box::new(conn::RtmpConn {
                    session,
                    app: String::new(),
                    tc_url: None,
                    role: RtmpRole::Idle,
                }))
            }
            Listener::Http | Listener::Web => ConnState::HttpHead { served: 0 },
        };
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut socket,
            Source::Conn(token).token(),
            Interest::READABLE,
        ) {
            error!("cannot register a connection from {peer}: {e}");
            self.core.limits.release_connection(peer.ip());
            return;
        }
        let mut conn = Conn::new(socket, peer, kind, session, state, now);
        conn.pre = proxied::pre_stage(&self.core.limits, peer.ip());
        conn.generation = self.next_generation;
        self.next_generation += 1;
        entry.insert(conn);
        self.totals.accepted += 1;
        self.arm_conn(token);
    }

    /// One access-log line: to the `--access-log` file, else to stderr with the other logs.
    fn write_access(&mut self, line: String) {
        match &mut self.access_log {
            Some(f) => {
                let _ = writeln!(f, "{line}");
            }
            None => info!(target: "access", "{line}"),
        }
    }

    /// Closes a connection now: its publish ends, its viewer leaves the hub.
    fn close(&mut self, token: usize, reason: &str) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed {
            return;
        }
        conn.closed = true;
        if let Some(t) = conn.tls.as_mut() {
            // close_notify, if the socket takes it now: the peer sees a clean end.
            t.close();
            let _ = tlsio::flush_transmit(&mut conn.socket, t);
        }
        let _ = self.poll.registry().deregister(&mut conn.socket);
        log::debug!("{} {} closed: {reason}", conn.kind(), conn.peer);
        llhls::cancel(&conn.state, token);
        let viewer = conn.viewer();
        let publishing = match &conn.state {
            ConnState::Rtmp(r) => match r.role {
                RtmpRole::Publisher { handle, .. } => Some(handle),
                _ => None,
            },
            _ => None,
        };
        let peer = conn.peer;
        self.core.limits.release_connection(peer.ip());
        self.core.forget(token);
        if let Some(v) = viewer {
            if let Some(key) = self.core.hub.viewer_ref(v).map(|vw| vw.key.clone()) {
                let c = &self.conns[token];
                let proto = match &c.state {
                    ConnState::WsFlv { .. } => crate::access::Protocol::WsFlv,
                    ConnState::HttpFlv { .. } if self.gateway.is_some() => {
                        crate::access::Protocol::Gateway
                    }
                    ConnState::HttpFlv { .. } => crate::access::Protocol::HttpFlv,
                    _ => crate::access::Protocol::Rtmp,
                };
                self.core.player_left(&key, peer, proto);
                let c = &self.conns[token];
                info!(
                    "{key}: {} player {} left after {:.1} s, {} bytes sent ({reason})",
                    c.kind(),
                    c.peer,
                    (self.now - c.created).as_secs_f64(),
                    c.bytes_out
                );
            }
            self.core.hub.remove_viewer(v);
        }
        if let Some(mut a) = self.conns[token].access.take() {
            // Live responses are logged when they end, with what they carried.
            a.bytes = self.conns[token].bytes_out;
            let line = access_line(self.conns[token].peer, a);
            self.write_access(line);
        }
        if let Some(h) = publishing {
            if let Some(key) = self.core.hub.key(h) {
                info!(
                    "{key}: publisher {} left ({reason})",
                    self.conns[token].peer
                );
            }
            self.end_publish(h, token);
        }
        self.to_free.push(token);
    }

    /// Answers the requests whose hook has spoken.
    fn hook_verdicts(&mut self) {
        for (token, verdict) in self.core.hook_answers() {
            if token >= srt::SRT_CONN_BASE {
                self.udp_judged(token, &verdict);
                continue;
            }
            let Some(conn) = self.conns.get(token) else {
                continue;
            };
            if conn.closed {
                continue;
            }
            if matches!(conn.state, ConnState::Rtmp(_)) {
                self.rtmp_judged(token, &verdict);
            } else {
                self.http_judged(token, &verdict);
            }
            self.arm_conn(token);
        }
    }

    fn free_closed(&mut self) {
        for t in std::mem::take(&mut self.to_free) {
            if self.conns.get(t).is_some_and(|c| c.closed) {
                self.conns.remove(t);
            }
        }
    }

    /// Once a second: slow-viewer lines, certificates and the access file reloaded, the access
    /// log flushed. Connection limits are not here: each is a timer (`drive::arm_conn`).
    fn sweep(&mut self) {
        self.log_skips();
        self.reload_certs();
        match self.core.access.reload() {
            Some(o) if o.is_error() => error!("{o}"),
            Some(o) => info!("{o}"),
            None => {}
        }
        if let Some(f) = &mut self.access_log {
            let _ = f.flush();
        }
    }

    /// One line per slow-viewer episode, with the peer address (the hub counts, we report).
    /// Visits only the viewers a write left behind (`skip_watch`); one that caught up is logged
    /// a last time and leaves the list.
    fn log_skips(&mut self) {
        let mut watch = std::mem::take(&mut self.skip_watch);
        watch.retain(|&(t, generation)| {
            let Some(c) = self.conns.get_mut(t).filter(|c| c.generation == generation) else {
                return false;
            };
            log_conn_skips(c, &self.core.hub);
            let behind = c
                .viewer()
                .and_then(|v| self.core.hub.viewer_ref(v))
                .is_some_and(|vw| !vw.queue.is_empty());
            c.skip_watched = behind && !c.closed;
            c.skip_watched
        });
        self.skip_watch = watch;
    }

    /// `log_skips` for one connection (a slow viewer about to be dropped).
    fn log_skips_of(&mut self, token: usize) {
        if let Some(c) = self.conns.get_mut(token) {
            log_conn_skips(c, &self.core.hub);
        }
    }

    fn log_stats(&mut self) {
        if self.gateway.is_some() {
            return self.log_gateway_stats();
        }
        let now_ms = self.now_ms();
        let mut now_stats = Vec::new();
        for s in self.core.hub.streams() {
            // Rates over the last interval; a stream seen for the first time counts from its start.
            let (prev_in, prev_out, since) =
                match self.last_stats.iter().find(|(k, ..)| *k == s.key) {
                    Some((_, i, o)) => (*i, *o, STATS_EVERY.as_millis() as u64),
                    None => (0, 0, now_ms.saturating_sub(s.started_ms.unwrap_or(now_ms))),
                };
            let kbps = |bytes: u64| bytes as f64 * 8.0 / since.max(1) as f64;
            let peer = s
                .publisher
                .and_then(|t| self.peer_of(t))
                .map(|p| p.to_string())
                .unwrap_or_else(|| "none".into());
            info!(
                "{}: publisher {peer}, players rtmp {} http-flv {} ws-flv {} webrtc {} srt {} (waiting {}), in {:.0} kbps, out {:.0} kbps",
                s.key,
                s.viewers_rtmp,
                s.viewers_http_flv,
                s.viewers_ws_flv,
                self.webrtc_viewers(&s.key),
                self.udp_players(Some(&s.key)),
                s.viewers_waiting,
                kbps(s.bytes_in.saturating_sub(prev_in)),
                kbps(s.bytes_out.saturating_sub(prev_out)),
            );
            now_stats.push((s.key.clone(), s.bytes_in, s.bytes_out));
        }
        self.last_stats = now_stats;
    }

    /// Ctrl-C / SIGTERM: stop accepting, end every player cleanly, let queued bytes go out.
    fn shut_down(&mut self) {
        info!("shutting down");
        for l in &mut self.listeners {
            let _ = self.poll.registry().deregister(&mut l.socket);
        }
        self.listeners.clear();
        // Every publish ends and every player gets its end marker (the core decides who).
        for t in self.core.shut_down() {
            self.close(t, "shutdown");
        }
        self.apply_actions();
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closed && !c.close_after_flush)
            .map(|(t, _)| t)
            .collect();
        for t in idle {
            self.close(t, "shutdown");
        }
        self.free_closed();
        let deadline = self.now + SHUTDOWN_GRACE;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() && self.now < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            self.turn_clock();
            for event in events.iter() {
                if let (Some(Source::Conn(t)), true) =
                    (Source::of(event.token()), event.is_writable())
                {
                    self.write_conn(t);
                }
            }
            self.free_closed();
        }
        self.core.finish_recordings();
        info!("stopped");
    }
}

/// Reports the slow-viewer skips of `c` not yet logged.
fn log_conn_skips(c: &mut Conn, hub: &crate::hub::Hub) {
    let Some(vw) = c.viewer().and_then(|v| hub.viewer_ref(v)) else {
        return;
    };
    let st = &vw.queue.stats;
    if st.skips > c.skips_logged {
        warn!(
            "{}: {} player {} is slow: skipped to the next keyframe {} time(s), {} frames / {} bytes dropped so far",
            vw.key,
            c.kind(),
            c.peer,
            st.skips - c.skips_logged,
            st.frames_dropped,
            st.bytes_dropped
        );
        c.skips_logged = st.skips;
    }
}

fn access_line(peer: SocketAddr, a: conn::Access) -> String {
    crate::http::access_log::access_log_line(
        peer,
        &a.request_line,
        a.status,
        a.bytes,
        a.wall,
        a.started.elapsed(),
    )
}
