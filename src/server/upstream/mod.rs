//! The FLV gateway's upstream pulls, in the mio loop: one non-blocking upstream GET per stream
//! key, shared by every viewer of that key; its frames go into the hub under a synthetic
//! publisher token, so viewers get exactly what origin viewers get. Also: viewers parked until
//! the upstream answers (`ConnState::Pending`) and reconnects every 2 s (with jitter) while
//! anyone watches. The clocks (the grace period after the last viewer, the 30 s no-data end,
//! the stats line) are in `timers`, the API's `upstream` object in `report`. An https://
//! upstream puts a client `tls::Session` between the socket and the response parser (verified
//! per `tls::client`). The HTTP and FLV parsing is `gateway::flv` (sans-IO).

use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};
use slab::Slab;

mod report;
pub(super) use report::UpstreamReport;
mod timers;

use super::conn::ConnState;
use super::start::{bind, print_listeners};
use super::tlsio::{flush_transmit, Listening};
use super::{limits, Server, ServerError, Setup};
use crate::config::FlvGatewayConfig;
use crate::gateway::flv::{self, Event, Relay, Response, Status, UpstreamUrl};
use crate::http::files::Root;
use crate::http::request::Request;
use crate::http::response;
use crate::hub::StreamHandle;
use crate::media::StreamKey;
use crate::origin::{Proto, PublishRequest};
use crate::tls::{Session, TlsError};

/// Upstream sockets' tokens are `Source::Upstream(pull)`: `TOKEN_BASE + pull`. The same number
/// is the stream's publisher id in the hub, which no connection token can ever equal.
pub(super) const TOKEN_BASE: usize = super::source::Source::Upstream(0).token().0;

/// Pause between upstream attempts while someone watches, plus or minus `JITTER_MS / 2`
/// (so that many gateways do not hammer a restarted origin in lockstep).
const RETRY: Duration = Duration::from_secs(2);
const JITTER_MS: u64 = 1000;
/// After the last viewer leaves the upstream stays open this long (a page reload keeps it).
const GRACE: Duration = Duration::from_secs(5);
/// A viewer of a stream the upstream does not have gets 404 after this much retrying, in
/// case the publisher is about to start.
const NOT_FOUND_WAIT: Duration = Duration::from_secs(3);
/// Retry pause after a 404 while viewers wait to be answered: the publisher may be seconds
/// away, and a cascade of gateways each waiting `RETRY` would add up.
const NOT_FOUND_RETRY: Duration = Duration::from_millis(500);
/// Viewers get a clean end after this long without a frame.
const NO_DATA: Duration = Duration::from_secs(30);
/// An upstream that has not answered (connected and sent a head) in this long is retried.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Housekeeping period (viewer counts, grace, timeouts).
const TICK: Duration = Duration::from_millis(500);
/// Reads per upstream per wakeup before the others get their turn.
const READS_PER_WAKEUP: usize = 64;

/// The gateway's pulls and where they pull from.
pub(super) struct Gateway {
    url: UpstreamUrl,
    /// For an https:// upstream: the verifying client config and the name to verify.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    addrs: Vec<SocketAddr>,
    pulls: Slab<Pull>,
    by_key: HashMap<StreamKey, usize>,
    next_tick: Instant,
    /// Pulls whose read budget ran out: read again without waiting for readiness.
    again: Vec<usize>,
    rng: u64,
    addr_turn: usize,
}

/// One stream pulled from the upstream.
struct Pull {
    key: StreamKey,
    conn: Option<Upstream>,
    /// When to try the upstream again.
    retry_at: Option<Instant>,
    /// The path asked for (the stream's path, or where a redirect pointed).
    path: String,
    redirects: u8,
    /// Connections parked in `ConnState::Pending` for this key.
    pending: Vec<usize>,
    /// The stream as published in the hub (from the first 200 until the pull ends).
    published: Option<StreamHandle>,
    relay: Relay,
    created: Instant,
    up_since: Option<Instant>,
    last_data: Instant,
    idle_since: Option<Instant>,
    /// The last answer: an HTTP status, or 0 when the upstream could not be reached.
    last_status: Option<u16>,
    /// The last attempt ended on the upstream's certificate: waiting viewers get 502 now.
    cert_refused: bool,
    connects: u64,
    sessions: u64,
    bytes_in: u64,
    frames_in: u64,
    /// From the last housekeeping: viewers in the hub (all forms) and how many wait.
    viewers: usize,
    waiting: usize,
    bytes_out: u64,
    /// Byte counters at the last stats line.
    logged: (u64, u64),
}

/// One upstream connection attempt and its response.
struct Upstream {
    socket: TcpStream,
    /// https://: the request went into it at connect; socket bytes are its ciphertext.
    tls: Option<Box<Session>>,
    connected: bool,
    request: Vec<u8>,
    sent: usize,
    response: Response,
    started: Instant,
    got_head: bool,
    /// The attempt ended on the upstream's certificate (see `Pull::cert_refused`).
    cert_refused: bool,
}

impl Gateway {
    fn new(
        url: UpstreamUrl,
        tls: Option<(
            Arc<rustls::ClientConfig>,
            rustls::pki_types::ServerName<'static>,
        )>,
        addrs: Vec<SocketAddr>,
        seed: u64,
    ) -> Gateway {
        Gateway {
            url,
            tls,
            addrs,
            pulls: Slab::new(),
            by_key: HashMap::new(),
            next_tick: Instant::now(),
            again: Vec::new(),
            rng: seed | 1,
            addr_turn: 0,
        }
    }

    /// The earliest time the loop must wake for the pulls.
    pub(super) fn next_deadline(&self, now: Instant) -> Instant {
        if !self.again.is_empty() {
            return now;
        }
        let mut next = self.next_tick;
        for (_, p) in &self.pulls {
            if let Some(r) = p.retry_at {
                next = next.min(r);
            }
        }
        next
    }

    fn retry_delay(&mut self) -> Duration {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = (self.rng >> 33) % JITTER_MS;
        RETRY - Duration::from_millis(JITTER_MS / 2) + Duration::from_millis(jitter)
    }
}

/// Runs the FLV gateway until Ctrl-C or SIGTERM: the origin's server with only the HTTP
/// listener, where a stream that is not live is pulled from the upstream.
pub fn run_flv_gateway(cfg: FlvGatewayConfig) -> Result<(), ServerError> {
    let nofile = limits::raise_nofile();
    if let Some(n) = nofile {
        info!("open-file limit {n}");
    }
    // Resolved once: a DNS lookup blocks, and the loop must not.
    let addrs: Vec<SocketAddr> = (cfg.upstream.bare_host(), cfg.upstream.port)
        .to_socket_addrs()
        .map_err(|e| ServerError(format!("cannot resolve the upstream {}: {e}", cfg.upstream)))?
        .collect();
    if addrs.is_empty() {
        return Err(ServerError(format!(
            "the upstream {} has no address",
            cfg.upstream
        )));
    }
    let upstream_tls = upstream_tls(&cfg)?;
    let http = bind(
        SocketAddr::new(cfg.bind, cfg.port),
        "HTTP",
        "the PORT argument",
    )?;
    let setup = Setup {
        mode: "flv-gateway",
        viewer: cfg.viewer.clone(),
        // The built-in player pages, so `/index.html?app=&stream=` plays from the gateway.
        roots: vec![Root::Embedded],
        home_page: false,
        data_dir: None,
        dir_listing: false,
        access_log: cfg.web.access_log.clone(),
        remote: None,
    };
    let certs = super::tlsio::open_certs(&cfg.tls)?;
    let mut listeners = vec![Listening::plain(http, super::conn::Listener::Http)];
    if let Some(port) = cfg.tls.https_port {
        let addr = SocketAddr::new(cfg.bind, port);
        listeners.push(Listening::tls(
            bind(addr, "HTTPS", "--https-port")?,
            super::conn::Listener::Http,
        ));
    }
    let mut server = Server::new(setup, listeners)?;
    server.set_certs(certs);
    server.set_access(&cfg.access, &cfg.limits, nofile)?;
    let seed = server.seed;
    server.gateway = Some(Box::new(Gateway::new(
        cfg.upstream.clone(),
        upstream_tls,
        addrs,
        seed,
    )));
    print_listeners(&server)?;
    info!("FLV gateway upstream {}", cfg.upstream);
    server.run()
}

/// The TLS client for an https:// upstream (None for http://); no usable roots is fatal at start.
#[allow(clippy::type_complexity)]
fn upstream_tls(
    cfg: &FlvGatewayConfig,
) -> Result<
    Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    ServerError,
> {
    if !cfg.upstream.tls {
        return Ok(None);
    }
    let fail = |e: TlsError| ServerError(format!("https upstream {}: {e}", cfg.upstream));
    let name = crate::tls::client::server_name(cfg.upstream.bare_host()).map_err(fail)?;
    let (config, roots) =
        crate::tls::client::upstream_config(cfg.upstream_ca.as_deref()).map_err(fail)?;
    info!(
        "upstream TLS: verifying {} against {roots}",
        cfg.upstream.bare_host()
    );
    Ok(Some((config, name)))
}

/// A request target for logs and the API: without its query (which may hold a token).
fn shown(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Server {
    /// A viewer asked for `key`, which is not live here: park it and start (or join) the pull.
    pub(super) fn upstream_wait(&mut self, token: usize, req: &Request, key: StreamKey) {
        let now = self.now;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let peer = conn.peer;
        conn.head.clear();
        conn.state = ConnState::Pending {
            key: key.clone(),
            req: Box::new(req.clone()),
            since: now,
            access: conn.access.take(),
        };
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let idx = match g.by_key.get(&key) {
            Some(&i) => i,
            None => {
                let path = g.url.path_for(&key);
                let i = g.pulls.insert(Pull {
                    key: key.clone(),
                    conn: None,
                    retry_at: None,
                    path,
                    redirects: 0,
                    pending: Vec::new(),
                    published: None,
                    relay: Relay::default(),
                    created: now,
                    up_since: None,
                    last_data: now,
                    idle_since: None,
                    last_status: None,
                    cert_refused: false,
                    connects: 0,
                    sessions: 0,
                    bytes_in: 0,
                    frames_in: 0,
                    viewers: 0,
                    waiting: 0,
                    bytes_out: 0,
                    logged: (0, 0),
                });
                g.by_key.insert(key.clone(), i);
                info!(
                    "{key}: first viewer; pulling {}{}",
                    g.url,
                    shown(&g.url.path_for(&key))
                );
                i
            }
        };
        let p = &mut g.pulls[idx];
        if !p.pending.contains(&token) {
            p.pending.push(token);
        }
        p.idle_since = None;
        debug!("{key}: viewer {peer} waits for the upstream");
        if p.conn.is_none() && p.retry_at.is_none() {
            self.upstream_connect(idx);
        }
    }

    /// Opens a non-blocking connection for pull `idx`.
    fn upstream_connect(&mut self, idx: usize) {
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let addr = g.addrs[g.addr_turn % g.addrs.len()];
        let url = g.url.clone();
        let Some(p) = g.pulls.get_mut(idx) else {
            return;
        };
        p.retry_at = None;
        p.connects += 1;
        let request = flv::request(&url, &p.path);
        // https://: the request waits in the session until the handshake is done.
        let tls = match &g.tls {
            None => None,
            Some((config, name)) => match Session::client(config.clone(), name.clone()) {
                Ok(mut t) => {
                    if t.encrypt(&[IoSlice::new(&request)]) < request.len() {
                        return self.upstream_lost(idx, "request too large for TLS", Some(0));
                    }
                    Some(Box::new(t))
                }
                Err(e) => {
                    let reason = format!("cannot start TLS: {e}");
                    return self.upstream_lost(idx, &reason, Some(0));
                }
            },
        };
        let result = TcpStream::connect(addr).and_then(|mut socket| {
            self.poll.registry().register(
                &mut socket,
                Token(TOKEN_BASE + idx),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(socket)
        });
        match result {
            Ok(socket) => {
                let _ = socket.set_nodelay(true);
                debug!("{}: connecting to {addr} for {}", p.key, shown(&p.path));
                let sent = if tls.is_some() { request.len() } else { 0 };
                p.conn = Some(Upstream {
                    socket,
                    tls,
                    connected: false,
                    request,
                    sent,
                    response: Response::new(),
                    started: self.now,
                    got_head: false,
                    cert_refused: false,
                });
            }
            Err(e) => {
                let reason = format!("cannot connect to {addr}: {e}");
                self.upstream_lost(idx, &reason, Some(0));
            }
        }
    }

    /// Readiness on the socket of pull `idx` (spurious events are fine: every step stops at
    /// WouldBlock).
    pub(super) fn upstream_ready(&mut self, idx: usize) {
        self.upstream_io(idx);
    }

    fn upstream_io(&mut self, idx: usize) {
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let Some(p) = g.pulls.get_mut(idx) else {
            return;
        };
        let Some(up) = p.conn.as_mut() else {
            return;
        };
        if !up.connected {
            match up.socket.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let reason = format!("cannot connect: {e}");
                    return self.upstream_lost(idx, &reason, Some(0));
                }
            }
            match up.socket.peer_addr() {
                Ok(_) => up.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let reason = format!("cannot connect: {e}");
                    return self.upstream_lost(idx, &reason, Some(0));
                }
            }
        }
        if let Some(t) = up.tls.as_mut() {
            // Handshake flights and the request; the socket stays registered for both.
            if let Err(e) = flush_transmit(&mut up.socket, t) {
                let reason = format!("write error: {e}");
                return self.upstream_lost(idx, &reason, Some(0));
            }
        } else if up.sent < up.request.len() {
            while up.sent < up.request.len() {
                match up.socket.write(&up.request[up.sent..]) {
                    Ok(0) => return self.upstream_lost(idx, "request not sent", Some(0)),
                    Ok(n) => up.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let reason = format!("write error: {e}");
                        return self.upstream_lost(idx, &reason, Some(0));
                    }
                }
            }
            let _ = self.poll.registry().reregister(
                &mut up.socket,
                Token(TOKEN_BASE + idx),
                Interest::READABLE,
            );
        }
        let mut buf = std::mem::take(&mut self.scratch);
        let mut plain = std::mem::take(&mut self.tls_plain);
        let mut events = Vec::new();
        let mut end: Option<String> = None;
        let mut cert_refused = false;
        let mut budget_left = false;
        for _ in 0..READS_PER_WAKEUP {
            match up.socket.read(&mut buf) {
                Ok(0) => {
                    end = Some("closed by the upstream".into());
                    break;
                }
                Ok(n) => {
                    p.bytes_in += n as u64;
                    self.totals.bytes_in += n as u64;
                    let body = match up.tls.as_mut() {
                        None => &buf[..n],
                        Some(t) => {
                            plain.clear();
                            let fed = t.handle_input(&buf[..n], &mut plain);
                            // Handshake answers, alerts; a full socket is retried on WRITABLE.
                            let sent = flush_transmit(&mut up.socket, t);
                            if let Err(e) = fed {
                                cert_refused = matches!(
                                    e,
                                    TlsError::Protocol(rustls::Error::InvalidCertificate(_))
                                );
                                end = Some(e.to_string());
                                break;
                            }
                            if let Err(e) = sent {
                                end = Some(format!("write error: {e}"));
                                break;
                            }
                            if t.peer_closed() && plain.is_empty() {
                                end = Some("closed by the upstream (close_notify)".into());
                                break;
                            }
                            &plain[..]
                        }
                    };
                    if let Err(e) = up.response.feed(body, &mut events) {
                        end = Some(e.to_string());
                        break;
                    }
                    if up.response.is_done() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    budget_left = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(format!("read error: {e}"));
                    break;
                }
            }
        }
        if !budget_left && end.is_none() && !up.response.is_done() {
            g.again.push(idx);
        }
        if cert_refused && !p.cert_refused {
            warn!(
                "{}: upstream {} certificate not accepted: {}; give the gateway --upstream-ca FILE if the origin's certificate is private or self-signed",
                p.key,
                g.url,
                end.as_deref().unwrap_or("")
            );
        }
        up.cert_refused = cert_refused;
        self.scratch = buf;
        self.tls_plain = plain;
        // Events before an error are still good frames: relay them, then handle the end.
        if self.upstream_events(idx, events) {
            if let Some(reason) = end {
                self.upstream_lost(idx, &reason, None);
            }
        }
    }

    /// Handles what the response produced. False when the connection was ended here.
    fn upstream_events(&mut self, idx: usize, events: Vec<Event>) -> bool {
        let Some(key) = self
            .gateway
            .as_ref()
            .and_then(|g| g.pulls.get(idx))
            .map(|p| p.key.clone())
        else {
            return false;
        };
        let now = self.now;
        for event in events {
            let Some(g) = self.gateway.as_mut() else {
                return false;
            };
            let url = &g.url;
            let Some(p) = g.pulls.get_mut(idx) else {
                return false;
            };
            match event {
                Event::Head(Status::Ok) => {
                    p.last_status = Some(200);
                    p.cert_refused = false;
                    p.up_since = Some(now);
                    p.sessions += 1;
                    if let Some(up) = p.conn.as_mut() {
                        up.got_head = true;
                    }
                    if p.sessions > 1 {
                        info!("{key}: upstream {url}{} is back", shown(&p.path));
                    } else {
                        info!("{key}: upstream {url}{} connected", shown(&p.path));
                    }
                    p.relay.new_session();
                    if p.sessions > 1 {
                        self.core.hub.restart_gop(&key);
                    }
                    if p.published.is_none() {
                        self.gateway_publish(idx);
                    }
                }
                Event::Head(Status::NotFound) => {
                    debug!("{key}: upstream has no such stream (404)");
                    self.upstream_lost(idx, "404 from the upstream", Some(404));
                    return false;
                }
                Event::Head(Status::Redirect(location)) => {
                    let path = url.redirect_path(&location);
                    match path {
                        Some(path) if p.redirects < flv::MAX_REDIRECTS => {
                            debug!("{key}: upstream redirects to {}", shown(&path));
                            p.redirects += 1;
                            p.path = path;
                            self.upstream_drop_conn(idx);
                            self.upstream_connect(idx);
                        }
                        _ => {
                            warn!("{key}: upstream redirect to {location} not followed (another host, or too many)");
                            self.upstream_lost(idx, "redirect not followed", Some(302));
                        }
                    }
                    return false;
                }
                Event::Head(Status::Other(code)) => {
                    if code == 401 || code == 403 {
                        warn!("{key}: upstream answered {code}: give the gateway its play token as UPSTREAM?token=T");
                    } else {
                        warn!("{key}: upstream answered {code}");
                    }
                    self.upstream_lost(idx, "unexpected status", Some(code));
                    return false;
                }
                Event::Header {
                    has_audio,
                    has_video,
                } => debug!("{key}: upstream FLV header audio {has_audio} video {has_video}"),
                Event::Frame(frame) => {
                    let before = p.relay.config_changes;
                    let Some(frame) = p.relay.process(frame) else {
                        continue;
                    };
                    if p.relay.config_changes != before {
                        info!(
                            "{key}: upstream {:?} configuration changed; new headers go to viewers",
                            frame.track
                        );
                    }
                    p.last_data = now;
                    p.frames_in += 1;
                    if let Some(h) = p.published {
                        self.publish_frame(h, TOKEN_BASE + idx, frame);
                    }
                }
                Event::End => {
                    self.upstream_lost(idx, "the upstream ended the stream", None);
                    return false;
                }
            }
        }
        true
    }

    /// The stream goes live in the hub; parked viewers become viewers.
    fn gateway_publish(&mut self, idx: usize) {
        let now_ms = self.now_ms();
        let Some(p) = self.gateway.as_mut().and_then(|g| g.pulls.get_mut(idx)) else {
            return;
        };
        let key = p.key.clone();
        let req = PublishRequest {
            conn: TOKEN_BASE + idx,
            peer: None,
            proto: Proto::Upstream,
            app: &key.app,
            name: &key.stream,
        };
        match self
            .core
            .publish(&req, now_ms, std::time::SystemTime::now())
        {
            Ok(ok) => {
                p.published = Some(ok.handle);
                // A fresh hub stream: every header must go through again.
                p.relay = Relay::default();
                p.last_data = self.now;
                let pending = std::mem::take(&mut p.pending);
                for t in pending {
                    self.resolve_pending(t, &key);
                }
            }
            Err(e) => warn!("{key}: cannot publish the upstream stream: {e}"),
        }
    }

    /// Answers a parked connection now that the stream is live here.
    fn resolve_pending(&mut self, token: usize, key: &StreamKey) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed || !matches!(&conn.state, ConnState::Pending { key: k, .. } if k == key) {
            return;
        }
        let ConnState::Pending { req, access, .. } =
            std::mem::replace(&mut conn.state, ConnState::HttpHead { served: 1 })
        else {
            return;
        };
        conn.access = access;
        self.http_live_allowed(token, &req, key.clone());
        self.arm_conn(token);
    }

    /// Refuses a parked connection (404 or 503) and closes it after the answer.
    fn refuse_pending(&mut self, token: usize, status: u16, body: &str) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closed {
            return;
        }
        let ConnState::Pending { access, .. } =
            std::mem::replace(&mut conn.state, ConnState::HttpHead { served: 1 })
        else {
            return;
        };
        conn.access = access;
        self.http_reply(token, response::simple(status, body, false), false);
        self.write_conn(token);
    }

    fn upstream_drop_conn(&mut self, idx: usize) {
        let Some(p) = self.gateway.as_mut().and_then(|g| g.pulls.get_mut(idx)) else {
            return;
        };
        if let Some(mut up) = p.conn.take() {
            let _ = self.poll.registry().deregister(&mut up.socket);
        }
    }

    /// The upstream connection is over (error, end, refusal): viewers stay; retry later while
    /// anyone watches. `status` records what the upstream said (0: unreachable).
    fn upstream_lost(&mut self, idx: usize, reason: &str, status: Option<u16>) {
        if let Some(p) = self.gateway.as_mut().and_then(|g| g.pulls.get_mut(idx)) {
            // Every attempt that ends decides it (a redirect, a 404, a refused connect, ...).
            p.cert_refused = p.conn.as_ref().is_some_and(|u| u.cert_refused);
        }
        self.upstream_drop_conn(idx);
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let delay = g.retry_delay();
        g.addr_turn = g.addr_turn.wrapping_add(1);
        let base = g.pulls.get(idx).map(|p| g.url.path_for(&p.key));
        let Some(p) = g.pulls.get_mut(idx) else {
            return;
        };
        if let Some(s) = status {
            p.last_status = Some(s);
        }
        if let Some(since) = p.up_since.take() {
            info!(
                "{}: upstream lost after {:.1} s ({reason}); viewers stay, retrying every {} s",
                p.key,
                secs(since.elapsed()),
                RETRY.as_secs()
            );
        } else {
            debug!("{}: upstream attempt failed: {reason}", p.key);
        }
        // Redirects are followed afresh on every attempt.
        if let Some(b) = base {
            p.path = b;
        }
        p.redirects = 0;
        let delay = if status == Some(404) && p.published.is_none() && !p.pending.is_empty() {
            NOT_FOUND_RETRY
        } else {
            delay
        };
        p.retry_at = Some(self.now + delay);
    }
}
