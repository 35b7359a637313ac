//! SRT in the origin: the sans-IO `crate::srt::Listener` on a UDP endpoint of the loop, its
//! publish and play requests judged by the origin core like RTMP's, MPEG-TS from publishers
//! demuxed into frames for the hub, and players fed MPEG-TS made from the hub's frames.
//!
//! One protocol object owns the whole listener (it routes by SRT socket id and answers
//! inductions with SYN cookies itself), so every datagram of the SRT port goes to it: it is one
//! `UdpPeers` peer, made on the first datagram, whose deadline is the listener's next one (and a
//! short tick while players have frames queued).
//!
//! - Publish (`m=publish`): `Origin::judge` (protocol `srt`, the stream id's query as the
//!   parameters), then `Origin::publish` (one publisher per key, an idle one is taken over), or
//!   a refusal with the SRT code (1401 no credential, 1403 refused, 1409 busy). Payload goes
//!   into a `TsDemuxer` per connection, its frames into the hub as an RTMP publisher's do. After
//!   a demuxing error (lost packets) video waits for the next keyframe, so recordings and
//!   players never get a broken picture.
//! - Play (`m=request`): judged like a play; the stream must be live (else 1404). The player is
//!   a hub reader primed with the cache, so it starts on the GOP's keyframe; its frames wait in
//!   a bounded queue, are muxed into MPEG-TS and go out through `Listener::send`. When that
//!   queue or the SRT send buffer is full, the player skips to the next keyframe (counted).
//!   When the publish ends, the player is closed once its queue is out.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use log::{debug, info, warn};

use super::udp::{Datagram, PeerId, UdpCx, UdpProtocol};
use crate::access::Refusal;
use crate::access::{self, RefuseKind};
use crate::hub::reader::{Reader, ReaderState};
use crate::hub::StreamHandle;
use crate::media::aac::AudioSpecificConfig;
use crate::media::avc::AvcConfig;
use crate::media::hevc::HevcConfig;
use crate::media::{Codec, Frame, StreamKey, Track};
use crate::mux::ts::{self, Es, Pes, Program, StreamType, TsWriter};
use crate::mux::ts_demux::TsDemuxer;
use crate::origin::{Judged, Proto, PublishRequest, Refused};
use crate::srt::{ConnId, Event, Listener, ListenerConfig, Mode, RejectReason, StreamId};

/// Origin connection ids of SRT connections start here: far above any TCP slab key, so an
/// action the core lists for one of them (hold a publisher, close a taken-over one) never
/// touches a TCP connection.
pub const SRT_CONN_BASE: usize = 1 << 27;
/// How often queued player frames are pushed out when no datagram comes in first.
const PLAYER_TICK: Duration = Duration::from_millis(5);
/// Frames and bytes a player may have queued; beyond it it skips to the next keyframe.
const PLAYER_QUEUE_FRAMES: usize = 4096;
const PLAYER_QUEUE_BYTES: usize = 16 << 20;
/// Media time written into MPEG-TS ahead of stream time (room for B-frames), and the PCR lead.
const TS_OFFSET_MS: u64 = 200;
const PCR_LEAD_MS: u64 = 100;
/// Tables (PAT, PMT) at least this often in frames (audio-only streams have no keyframes).
const TABLES_EVERY: u32 = 100;

/// The cookie secret: 32 bytes from the OS random source.
pub fn secret() -> Result<[u8; 32], String> {
    let mut s = [0u8; 32];
    getrandom::getrandom(&mut s).map_err(|e| format!("no OS random source for SRT: {e}"))?;
    Ok(s)
}

/// The listener's settings from the origin's options: `--srt-*`, and the connection caps in
/// all (`--max-connections`, else the listener's default) and per address (`--max-per-ip`, 0:
/// none).
pub fn listener_config(
    c: &crate::config::SrtConfig,
    limits: &crate::config::LimitsConfig,
) -> ListenerConfig {
    let d = ListenerConfig::default();
    ListenerConfig {
        latency: c.latency,
        passphrase: c.passphrase.as_ref().map(|p| p.as_bytes().to_vec()),
        max_conns: limits.max_connections.unwrap_or(d.max_conns),
        max_per_ip: match limits.max_per_ip {
            0 => usize::MAX,
            n => n,
        },
        ..d
    }
}

/// What a player's reader and its pump share.
#[derive(Default)]
struct PlayQueue {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// Skipping: video and audio wait for the next video keyframe (audio-only: the next frame).
    wait_key: bool,
    seen_video: bool,
    /// The player left: the reader says `Gone` to the hub.
    left: bool,
    skips: u64,
    dropped: u64,
}

impl PlayQueue {
    /// True when `f` may be queued (ends a skip at a resume point).
    fn admits(&mut self, f: &Frame) -> bool {
        if f.config || f.track == Track::Meta {
            return true;
        }
        if f.track == Track::Video {
            self.seen_video = true;
        }
        if self.wait_key {
            let resume = match f.track {
                Track::Video => f.key,
                _ => !self.seen_video,
            };
            if !resume {
                return false;
            }
            self.wait_key = false;
        }
        true
    }

    fn skip(&mut self) {
        if !self.wait_key {
            self.skips += 1;
        }
        self.wait_key = true;
        self.dropped += self.frames.len() as u64;
        self.frames.clear();
        self.bytes = 0;
    }
}

/// The hub's side of an SRT player.
struct PlayReader(Rc<RefCell<PlayQueue>>);

impl Reader for PlayReader {
    fn deliver(&mut self, frame: &Frame) -> ReaderState {
        // An Opus stream's bridged AAC is queued too: `TsOut` carries AAC and drops the Opus,
        // which MPEG-TS players do not read.
        let mut q = self.0.borrow_mut();
        if q.left {
            return ReaderState::Gone;
        }
        if q.frames.len() >= PLAYER_QUEUE_FRAMES || q.bytes >= PLAYER_QUEUE_BYTES {
            q.skip();
        }
        if q.admits(frame) {
            q.bytes += frame.data.len();
            q.frames.push_back(frame.clone());
        } else {
            q.dropped += 1;
        }
        ReaderState::Ready
    }

    fn poll(&mut self, _now_ms: u64) -> ReaderState {
        if self.0.borrow().left {
            ReaderState::Gone
        } else {
            ReaderState::Ready
        }
    }

    fn frames_dropped(&self) -> u64 {
        self.0.borrow().dropped
    }
}

/// Frames to MPEG-TS for one player: the codec framing and the program, as `record::hls`
/// writes segments, but as one endless stream. H.264, H.265 and AAC; other codecs are dropped.
#[derive(Default)]
struct TsOut {
    w: Option<TsWriter>,
    avc: Option<AvcConfig>,
    hevc: Option<HevcConfig>,
    aac: Option<AudioSpecificConfig>,
    /// A video keyframe went out (video before it cannot be decoded).
    started: bool,
    since_tables: u32,
    es: Vec<u8>,
}

impl TsOut {
    fn program(&self) -> Program {
        Program {
            video: if self.avc.is_some() {
                Some(StreamType::H264)
            } else if self.hevc.is_some() {
                Some(StreamType::Hevc)
            } else {
                None
            },
            audio: self.aac.as_ref().map(|_| StreamType::Aac),
        }
    }

    /// Appends the packets of `f` to `out` (nothing for headers and what cannot be carried).
    fn frame(&mut self, f: &Frame, out: &mut Vec<u8>) {
        if f.track == Track::Meta || f.track_id != 0 {
            return;
        }
        if f.config {
            match f.codec {
                Codec::Avc => self.avc = AvcConfig::parse(f.payload()).or(self.avc.take()),
                Codec::Hevc => self.hevc = HevcConfig::parse(f.payload()).or(self.hevc.take()),
                Codec::Aac => {
                    self.aac = AudioSpecificConfig::parse(f.payload()).or(self.aac.take())
                }
                _ => {}
            }
            return;
        }
        self.es.clear();
        let es = match (f.codec, &self.avc, &self.hevc, &self.aac) {
            (Codec::Avc, Some(c), _, _) => {
                ts::avc_access_unit(f.payload(), c, f.key, &mut self.es);
                Es::Video
            }
            (Codec::Hevc, _, Some(c), _) => {
                ts::hevc_access_unit(f.payload(), c, f.key, &mut self.es);
                Es::Video
            }
            (Codec::Aac, _, _, Some(c)) => {
                if !ts::adts_frame(c, f.payload(), &mut self.es) {
                    return;
                }
                Es::Audio
            }
            _ => return,
        };
        if es == Es::Video {
            if !f.key && !self.started {
                return;
            }
            self.started = true;
        }
        let program = self.program();
        let w = self.w.get_or_insert_with(|| TsWriter::new(program));
        let new_program = w.program() != program;
        if new_program {
            w.set_program(program);
        }
        self.since_tables += 1;
        if new_program || (es == Es::Video && f.key) || self.since_tables >= TABLES_EVERY {
            w.write_tables(out);
            self.since_tables = 0;
        }
        let dts_ms = f.time + TS_OFFSET_MS;
        let pts_ms = dts_ms.saturating_add_signed(i64::from(f.cts)).max(dts_ms);
        let carries_pcr = (es == Es::Video) == program.video.is_some();
        let pes = Pes {
            es,
            pts: pts_ms * 90,
            dts: dts_ms * 90,
            random_access: f.key,
            pcr: carries_pcr.then(|| (dts_ms - PCR_LEAD_MS) * 90),
            payload: &self.es,
        };
        w.write_pes(out, &pes);
    }
}

/// After a demuxing error (packets SRT gave up on), a publisher's video waits for its next
/// keyframe: the frames after a gap reference a picture that is broken or missing.
#[derive(Default)]
struct LossGate {
    waiting: bool,
    /// Video frames held back so far.
    dropped: u64,
}

impl LossGate {
    fn error(&mut self) {
        self.waiting = true;
    }

    /// True when `f` goes on into the hub (audio, metadata and configurations always do).
    fn pass(&mut self, f: &Frame) -> bool {
        if !self.waiting || f.track != Track::Video || f.config {
            return true;
        }
        if f.key {
            self.waiting = false;
            return true;
        }
        self.dropped += 1;
        false
    }
}

enum Role {
    Publisher {
        handle: StreamHandle,
        demux: Box<TsDemuxer>,
        gate: LossGate,
        errors_logged: u32,
    },
    Player {
        handle: StreamHandle,
        queue: Rc<RefCell<PlayQueue>>,
        mux: Box<TsOut>,
    },
}

struct SrtConn {
    /// Its id in the origin core.
    conn: usize,
    peer: SocketAddr,
    key: StreamKey,
    role: Role,
}

/// A caller whose request waits for the `--on-publish`/`--on-play` hook: the listener holds it
/// (pending, its repeated conclusions unanswered) until `judged` or its decision timeout.
struct Judging {
    id: ConnId,
    peer: SocketAddr,
    stream: StreamId,
}

/// Demuxing errors logged per publisher (the rest are counted).
const MAX_ERROR_LINES: u32 = 5;

/// The SRT port's protocol on the loop's UDP endpoint; see the module doc.
pub struct SrtProto {
    listener: Listener,
    /// The loop's clock origin: `now_ms` on the loop is milliseconds since this.
    started: Instant,
    peer: Option<PeerId>,
    /// The socket the last IPv4 and IPv6 datagram came in on (the answers go out on it).
    socket_v4: usize,
    socket_v6: usize,
    conns: HashMap<ConnId, SrtConn>,
    /// Requests waiting for a hook's verdict, by origin connection id (bounded by the
    /// listener's connection caps: each is a pending listener entry).
    judging: HashMap<usize, Judging>,
    next_conn: usize,
    /// Player skips and demuxing errors of connections that closed (for `/metrics`).
    skips_closed: u64,
    ts_errors: u64,
    buf: Vec<u8>,
}

impl SrtProto {
    pub fn new(cfg: ListenerConfig, secret: [u8; 32], started: Instant, now: Instant) -> SrtProto {
        SrtProto {
            listener: Listener::new(cfg, secret, now),
            started,
            peer: None,
            socket_v4: 0,
            socket_v6: 0,
            conns: HashMap::new(),
            judging: HashMap::new(),
            next_conn: 0,
            skips_closed: 0,
            ts_errors: 0,
            buf: Vec::new(),
        }
    }

    fn now(&self, now_ms: u64) -> Instant {
        self.started + Duration::from_millis(now_ms)
    }

    /// Handles the listener's events, pushes players' frames, sends, sets the next deadline.
    fn drive(&mut self, cx: &mut UdpCx) {
        let now = self.now(cx.now_ms);
        while let Some(ev) = self.listener.poll_event() {
            match ev {
                Event::Request { id, peer, stream } => self.request(id, peer, stream, cx, now),
                Event::Data { id, data } => {
                    self.data(id, &data, cx, now);
                    self.listener.recycle(data);
                }
                Event::Closed { id, reason, stats } => {
                    let Some(c) = self.conns.remove(&id) else {
                        self.judging_closed(id, cx);
                        continue;
                    };
                    match c.role {
                        Role::Publisher {
                            handle,
                            mut demux,
                            mut gate,
                            ..
                        } => {
                            // A video PES ends at the next one's start, and whether the caller
                            // said goodbye or went silent, it may have dropped what it had not
                            // sent (live mode): the last video PES is taken only when its last
                            // packet is the padded end of a PES (`end_live`), never cut.
                            demux.end_live();
                            while let Some(f) = demux.poll_frame() {
                                if gate.pass(&f) {
                                    cx.core.frame(handle, c.conn, f, cx.now_ms);
                                }
                            }
                            if cx.core.hub.publisher_of(handle) == Some(c.conn) {
                                info!(
                                    "{}: SRT publisher {} left ({reason}; {} packets, {} lost, {} retransmitted)",
                                    c.key, c.peer, stats.pkts_recv, stats.pkts_lost, stats.pkts_recv_rexmit
                                );
                            }
                            cx.core.unpublish(handle, c.conn);
                        }
                        Role::Player { queue, .. } => {
                            let mut q = queue.borrow_mut();
                            q.left = true;
                            q.frames.clear();
                            self.skips_closed += q.skips;
                            info!(
                                "{}: SRT player {} left ({reason}; {} skips)",
                                c.key, c.peer, q.skips
                            );
                            cx.core.player_left(&c.key, c.peer, access::Protocol::Srt);
                        }
                    }
                }
            }
        }
        self.pump_players(cx, now);
        self.transmit(cx);
        let mut at = self.listener.poll_timeout();
        // Players' frames come from whichever publisher (RTMP too), not from our datagrams:
        // while there are players, look at their queues every tick.
        let busy = self
            .conns
            .values()
            .any(|c| matches!(c.role, Role::Player { .. }));
        if busy {
            let tick = now + PLAYER_TICK;
            at = Some(at.map_or(tick, |a| a.min(tick)));
        }
        if let Some(peer) = self.peer {
            // Rounded up: when it fires, `now` is at or past the listener's deadline.
            let ms = at.map(|a| {
                let d = a.saturating_duration_since(self.started);
                d.as_millis() as u64 + u64::from(d.subsec_nanos() % 1_000_000 != 0)
            });
            cx.peers.set_deadline(peer, ms);
        }
    }

    fn transmit(&mut self, cx: &mut UdpCx) {
        let Some(peer) = self.peer else {
            while self.listener.poll_transmit().is_some() {}
            return;
        };
        while let Some(t) = self.listener.poll_transmit() {
            let socket = if t.to.is_ipv4() {
                self.socket_v4
            } else {
                self.socket_v6
            };
            cx.peers.send(peer, socket, t.to, Bytes::from(t.data));
        }
    }

    fn request(&mut self, id: ConnId, peer: SocketAddr, s: StreamId, cx: &mut UdpCx, now: Instant) {
        let action = match s.mode {
            Mode::Publish => access::Action::Publish,
            Mode::Play => access::Action::Play,
        };
        let target = format!("?{}", s.query);
        let req = access::Request::http(
            action,
            access::Protocol::Srt,
            &s.app,
            &s.stream,
            &target,
            None,
            peer,
        );
        let conn = SRT_CONN_BASE + self.next_conn;
        self.next_conn = (self.next_conn + 1) % SRT_CONN_BASE;
        match cx.core.judge(conn, &req, super::unix_now()) {
            Judged::Allow => {}
            Judged::Refuse(r) => {
                self.listener.reject(id, now, reject_reason(&r));
                return;
            }
            Judged::Pending => {
                // The hook runs off the loop; the caller repeats its conclusion meanwhile and
                // gets its answer once the verdict is in (`judged`).
                self.judging.insert(
                    conn,
                    Judging {
                        id,
                        peer,
                        stream: s,
                    },
                );
                return;
            }
        }
        self.admit(id, conn, peer, s, cx, now);
    }

    /// A request the access policy (or its hook) allowed: publish or play, or a refusal.
    fn admit(
        &mut self,
        id: ConnId,
        conn: usize,
        peer: SocketAddr,
        s: StreamId,
        cx: &mut UdpCx,
        now: Instant,
    ) {
        if !self.listener.is_pending(id) {
            // Timed out (or closed) while the hook was thinking: nothing to admit.
            return;
        }
        let sreq = PublishRequest {
            conn,
            peer: Some(peer),
            proto: Proto::Srt,
            app: &s.app,
            name: &s.stream,
        };
        let refused = |why: &Refused| match why {
            Refused::BadName(_) => RejectReason::BadRequest,
            Refused::Busy => RejectReason::Conflict,
            Refused::Limit(_) => RejectReason::Resource,
        };
        match s.mode {
            Mode::Publish => match cx.core.publish(&sreq, cx.now_ms, SystemTime::now()) {
                Ok(ok) => {
                    self.listener.accept(id, now);
                    let latency = self
                        .listener
                        .conn_stats(id)
                        .map_or(0, |st| st.rcv_latency_ms);
                    info!("{}: SRT publish from {peer} (latency {latency} ms)", ok.key);
                    if let Some(old) = ok.took_over_from {
                        info!(
                            "{}: previous publisher (connection {old}) taken over by {peer}",
                            ok.key
                        );
                    }
                    self.conns.insert(
                        id,
                        SrtConn {
                            conn,
                            peer,
                            key: ok.key,
                            role: Role::Publisher {
                                handle: ok.handle,
                                demux: Box::default(),
                                gate: LossGate::default(),
                                errors_logged: 0,
                            },
                        },
                    );
                }
                Err(why) => {
                    warn!("SRT {peer}: publish {}/{} refused: {why}", s.app, s.stream);
                    self.listener.reject(id, now, refused(&why));
                }
            },
            Mode::Play => {
                let key = match StreamKey::new(&s.app, &s.stream) {
                    Ok(k) => k,
                    Err(e) => {
                        warn!("SRT {peer}: play refused: {e}");
                        self.listener.reject(id, now, RejectReason::BadRequest);
                        return;
                    }
                };
                let Some(handle) = cx
                    .core
                    .hub
                    .handle(&key)
                    .filter(|_| cx.core.hub.is_live(&key))
                else {
                    warn!("SRT {peer}: play {key} refused: not live");
                    self.listener.reject(id, now, RejectReason::NotFound);
                    return;
                };
                // --max-players-per-stream over the hub's players and ours.
                let players = cx.core.hub.players(&key) + self.count_players(Some(&key));
                if let Err(r) = cx.core.limits.admit_player(players, cx.now_ms) {
                    if let Some(line) = r.log {
                        warn!("{line}");
                    }
                    self.listener.reject(id, now, RejectReason::Resource);
                    return;
                }
                self.listener.accept(id, now);
                let queue = Rc::new(RefCell::new(PlayQueue::default()));
                cx.core
                    .hub
                    .add_reader_primed(handle, Box::new(PlayReader(queue.clone())));
                info!("{key}: SRT play from {peer}");
                self.conns.insert(
                    id,
                    SrtConn {
                        conn,
                        peer,
                        key,
                        role: Role::Player {
                            handle,
                            queue,
                            mux: Box::default(),
                        },
                    },
                );
            }
        }
    }

    /// The hook's verdict on a waiting caller: allowed ones are admitted, refused ones get the
    /// SRT reject code (the refusal was logged by the origin core).
    fn on_judged(&mut self, conn: usize, verdict: &Judged, cx: &mut UdpCx) -> bool {
        let Some(j) = self.judging.remove(&conn) else {
            return false;
        };
        let now = self.now(cx.now_ms);
        match verdict {
            Judged::Allow => self.admit(j.id, conn, j.peer, j.stream, cx, now),
            Judged::Refuse(r) => self.listener.reject(j.id, now, reject_reason(r)),
            Judged::Pending => {}
        }
        self.drive(cx);
        true
    }

    /// A caller that was waiting for a hook is gone (the listener's decision timeout, or the
    /// server closed it): its verdict, if it still comes, is dropped.
    fn judging_closed(&mut self, id: ConnId, cx: &mut UdpCx) {
        let Some(conn) = self
            .judging
            .iter()
            .find_map(|(c, j)| (j.id == id).then_some(*c))
        else {
            return;
        };
        if let Some(j) = self.judging.remove(&conn) {
            cx.core.forget(conn);
            warn!(
                "SRT {}: {}/{}: refused: no hook verdict before the handshake timed out",
                j.peer, j.stream.app, j.stream.stream
            );
        }
    }

    /// SRT players now, of one stream or of all.
    fn count_players(&self, key: Option<&StreamKey>) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.role, Role::Player { .. }) && key.is_none_or(|k| *k == c.key))
            .count()
    }

    fn count_publishers(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.role, Role::Publisher { .. }))
            .count()
    }

    fn data(&mut self, id: ConnId, data: &[u8], cx: &mut UdpCx, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Role::Publisher {
            handle,
            demux,
            gate,
            errors_logged,
        } = &mut c.role
        else {
            return;
        };
        if cx.core.hub.publisher_of(*handle) != Some(c.conn) {
            info!(
                "{}: SRT publisher {} was taken over; closing it",
                c.key, c.peer
            );
            self.listener.close(id, now);
            return;
        }
        demux.push(data);
        while let Some(e) = demux.poll_error() {
            self.ts_errors += 1;
            gate.error();
            if *errors_logged < MAX_ERROR_LINES {
                *errors_logged += 1;
                warn!("{}: SRT publisher {}: {e}", c.key, c.peer);
            } else {
                debug!("{}: SRT publisher {}: {e}", c.key, c.peer);
            }
        }
        while let Some(f) = demux.poll_frame() {
            if gate.pass(&f) {
                cx.core.frame(*handle, c.conn, f, cx.now_ms);
            }
        }
    }

    /// Muxes and sends what the players have queued; a full send buffer skips to the next
    /// keyframe. A player whose publish ended is closed once its queue is out.
    fn pump_players(&mut self, cx: &mut UdpCx, now: Instant) {
        let mut close = Vec::new();
        for (&id, c) in &mut self.conns {
            let Role::Player { handle, queue, mux } = &mut c.role else {
                continue;
            };
            let mut q = queue.borrow_mut();
            while let Some(f) = q.frames.pop_front() {
                q.bytes = q.bytes.saturating_sub(f.data.len());
                self.buf.clear();
                mux.frame(&f, &mut self.buf);
                if self.buf.is_empty() {
                    continue;
                }
                if self.listener.send(id, now, &self.buf).is_err() {
                    q.skip();
                    debug!(
                        "{}: SRT player {} skipped to the next keyframe",
                        c.key, c.peer
                    );
                    break;
                }
            }
            let ended = Rc::strong_count(queue) == 1 || cx.core.hub.publisher_of(*handle).is_none();
            if ended && q.frames.is_empty() {
                close.push(id);
            }
        }
        for id in close {
            self.listener.close(id, now);
        }
    }

    /// `/metrics` lines: connections, and per connection RTT, loss, retransmits, latency.
    fn write_metrics(&self, m: &mut String) {
        let (mut publishers, mut players) = (0, 0);
        let mut skips = self.skips_closed;
        for c in self.conns.values() {
            match &c.role {
                Role::Publisher { .. } => publishers += 1,
                Role::Player { queue, .. } => {
                    players += 1;
                    skips += queue.borrow().skips;
                }
            }
        }
        let ls = self.listener.stats();
        let _ = writeln!(
            m,
            "# HELP rtmpd_srt_connections SRT connections by role.\n# TYPE rtmpd_srt_connections gauge\n\
             rtmpd_srt_connections{{role=\"publisher\"}} {publishers}\nrtmpd_srt_connections{{role=\"player\"}} {players}"
        );
        let _ = writeln!(
            m,
            "# HELP rtmpd_srt_rejected_total SRT callers refused.\n# TYPE rtmpd_srt_rejected_total counter\nrtmpd_srt_rejected_total {}",
            ls.rejected
        );
        let _ = writeln!(
            m,
            "# HELP rtmpd_srt_inductions_dropped_total SRT inductions not answered (over the rate: a flood).\n# TYPE rtmpd_srt_inductions_dropped_total counter\nrtmpd_srt_inductions_dropped_total {}",
            ls.inductions_dropped
        );
        let _ = writeln!(
            m,
            "# HELP rtmpd_srt_player_skips_total SRT players that skipped to the next keyframe.\n# TYPE rtmpd_srt_player_skips_total counter\nrtmpd_srt_player_skips_total {skips}"
        );
        let _ = writeln!(
            m,
            "# HELP rtmpd_srt_ts_errors_total MPEG-TS errors in SRT publishers' streams.\n# TYPE rtmpd_srt_ts_errors_total counter\nrtmpd_srt_ts_errors_total {}",
            self.ts_errors
        );
        type Field = (&'static str, &'static str, fn(&crate::srt::Stats) -> u64);
        let fields: [Field; 6] = [
            ("rtmpd_srt_rtt_ms", "gauge", |s| u64::from(s.rtt_us) / 1000),
            ("rtmpd_srt_latency_ms", "gauge", |s| {
                u64::from(s.rcv_latency_ms.max(s.snd_latency_ms))
            }),
            ("rtmpd_srt_packets_lost_total", "counter", |s| s.pkts_lost),
            ("rtmpd_srt_packets_dropped_total", "counter", |s| {
                s.pkts_dropped + s.pkts_snd_dropped
            }),
            ("rtmpd_srt_packets_retransmitted_total", "counter", |s| {
                s.pkts_retransmitted + s.pkts_recv_rexmit
            }),
            ("rtmpd_srt_bytes_total", "counter", |s| {
                s.bytes_recv + s.bytes_sent
            }),
        ];
        let mut conns: Vec<(&ConnId, &SrtConn)> = self.conns.iter().collect();
        conns.sort_by_key(|(id, _)| **id);
        for (name, kind, get) in fields {
            let _ = writeln!(m, "# HELP {name} Per SRT connection.\n# TYPE {name} {kind}");
            for (id, c) in &conns {
                let Some(st) = self.listener.conn_stats(**id) else {
                    continue;
                };
                let role = match c.role {
                    Role::Publisher { .. } => "publisher",
                    Role::Player { .. } => "player",
                };
                let _ = writeln!(
                    m,
                    "{name}{{stream=\"{}\",peer=\"{}\",role=\"{role}\"}} {}",
                    c.key,
                    c.peer,
                    get(&st)
                );
            }
        }
    }

    /// `/api/streams`: the SRT connections of `key`.
    fn stream_json(&self, key: &StreamKey) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for (id, c) in &self.conns {
            if &c.key != key {
                continue;
            }
            let st = self.listener.conn_stats(*id).unwrap_or_default();
            out.push(serde_json::json!({
                "role": match c.role { Role::Publisher { .. } => "publisher", Role::Player { .. } => "player" },
                "peer": c.peer.to_string(),
                "rtt_ms": f64::from(st.rtt_us) / 1000.0,
                "latency_ms": st.rcv_latency_ms.max(st.snd_latency_ms),
                "packets_lost": st.pkts_lost,
                "packets_dropped": st.pkts_dropped + st.pkts_snd_dropped,
                "packets_retransmitted": st.pkts_retransmitted + st.pkts_recv_rexmit,
                "bytes_received": st.bytes_recv,
                "bytes_sent": st.bytes_sent,
                "encrypted": st.key_len > 0,
                "skips": match &c.role { Role::Player { queue, .. } => queue.borrow().skips, _ => 0 },
            }));
        }
        out
    }
}

impl UdpProtocol for SrtProto {
    fn route(&mut self, _d: &Datagram) -> Option<PeerId> {
        self.peer
    }

    fn receive(&mut self, _peer: PeerId, d: &Datagram, cx: &mut UdpCx) {
        if d.from.is_ipv4() {
            self.socket_v4 = d.socket;
        } else {
            self.socket_v6 = d.socket;
        }
        let now = self.now(cx.now_ms);
        self.listener.handle_datagram(now, d.from, d.data);
        self.drive(cx);
    }

    fn unknown(&mut self, d: &Datagram, cx: &mut UdpCx) {
        let peer = cx.peers.add_peer();
        self.peer = Some(peer);
        self.receive(peer, d, cx);
    }

    fn timeout(&mut self, _peer: PeerId, cx: &mut UdpCx) {
        let now = self.now(cx.now_ms);
        self.listener.handle_timeout(now);
        self.drive(cx);
    }

    fn metrics(&self, out: &mut String) {
        self.write_metrics(out);
    }

    fn stream_json(&self, key: &StreamKey) -> Vec<serde_json::Value> {
        SrtProto::stream_json(self, key)
    }

    fn judged(&mut self, conn: usize, verdict: &Judged, cx: &mut UdpCx) -> bool {
        self.on_judged(conn, verdict, cx)
    }

    fn players(&self, key: Option<&StreamKey>) -> usize {
        self.count_players(key)
    }

    fn publishers(&self) -> usize {
        self.count_publishers()
    }

    fn peer_of_conn(&self, conn: usize) -> Option<SocketAddr> {
        if conn < SRT_CONN_BASE {
            return None;
        }
        self.conns.values().find(|c| c.conn == conn).map(|c| c.peer)
    }
}

/// The SRT reject code for an access refusal: 1401 when a credential is missing, else 1403.
fn reject_reason(r: &Refusal) -> RejectReason {
    match r.kind {
        RefuseKind::Missing => RejectReason::Unauthorized,
        _ => RejectReason::Forbidden,
    }
}

/// Opens the SRT port (`--srt-port`) on the loop and logs `SRT listening on ADDR`.
pub(super) fn open(
    server: &mut super::Server,
    bind: std::net::IpAddr,
    cfg: &crate::config::SrtConfig,
    limits: &crate::config::LimitsConfig,
) -> Result<(), super::ServerError> {
    let secret = secret().map_err(super::ServerError)?;
    let now = Instant::now();
    let proto = SrtProto::new(listener_config(cfg, limits), secret, server.started, now);
    let addr = SocketAddr::new(bind, cfg.port);
    let index = server
        .open_udp("srt", &[addr], Box::new(proto))
        .map_err(|e| {
            super::ServerError(format!(
                "{e} (choose another port with --srt-port, or 0 to turn SRT off)"
            ))
        })?;
    for a in server.udp[index].endpoint.local_addrs() {
        info!("SRT listening on {a}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_frames() -> Vec<Frame> {
        let path = format!("{}/tests/data/fixture.flv", env!("CARGO_MANIFEST_DIR"));
        let data = std::fs::read(path).unwrap();
        crate::mux::flv_demux::read_all(&data).unwrap().2
    }

    /// An AVC video frame (FLV body: keyframe or inter frame, NALU, no composition offset).
    fn video(key: bool, dts: u32) -> Frame {
        let body = [if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
        Frame::parse(9, dts, Bytes::copy_from_slice(&body)).unwrap()
    }

    #[test]
    fn ts_out_round_trips_the_fixture_through_the_demuxer() {
        let frames = fixture_frames();
        let mut out = TsOut::default();
        let mut ts = Vec::new();
        for f in &frames {
            out.frame(f, &mut ts);
        }
        assert!(ts.len().is_multiple_of(188) && !ts.is_empty());
        let mut d = TsDemuxer::new();
        d.push(&ts);
        d.flush();
        assert_eq!(d.poll_error(), None);
        let got: Vec<Frame> = std::iter::from_fn(|| d.poll_frame()).collect();
        let media = |fs: &[Frame], t: Track| -> Vec<(bool, i32)> {
            fs.iter()
                // The end-of-sequence marker (an empty AVC packet) has no TS form.
                .filter(|f| f.track == t && !f.config && !f.payload().is_empty())
                .map(|f| (f.key, f.cts))
                .collect()
        };
        for t in [Track::Video, Track::Audio] {
            let (want, have) = (media(&frames, t), media(&got, t));
            assert!(!want.is_empty());
            assert_eq!(want, have, "{t:?}: keyframes and composition offsets");
        }
        // Both configurations come back, so a player (and the demuxer) can start.
        assert!(got.iter().any(|f| f.config && f.codec == Codec::Avc));
        assert!(got.iter().any(|f| f.config && f.codec == Codec::Aac));
    }

    #[test]
    fn ts_out_starts_video_at_a_keyframe_and_drops_what_it_cannot_frame() {
        let mut out = TsOut::default();
        let mut ts = Vec::new();
        // No configuration yet: nothing can be framed.
        out.frame(&video(true, 0), &mut ts);
        assert!(ts.is_empty());
        let config = fixture_frames()
            .into_iter()
            .find(|f| f.config && f.codec == Codec::Avc)
            .unwrap();
        out.frame(&config, &mut ts);
        assert!(ts.is_empty(), "a configuration is kept, not written");
        out.frame(&video(false, 40), &mut ts);
        assert!(ts.is_empty(), "an inter frame before any keyframe");
        out.frame(&video(true, 80), &mut ts);
        assert!(!ts.is_empty());
        // Tables first (PAT, then PMT) at a keyframe.
        assert_eq!(ts[0], 0x47);
        assert_eq!((ts[1] & 0x1f, ts[2]), (0, 0), "PAT");
    }

    #[test]
    fn an_opus_stream_plays_with_the_bridges_aac() {
        let (frames, aac) = crate::hub::bridge::testutil::opus_with_bridge(&fixture_frames(), 300);
        let q = Rc::new(RefCell::new(PlayQueue::default()));
        let mut r = PlayReader(q.clone());
        let (mut out, mut ts) = (TsOut::default(), Vec::new());
        for f in &frames {
            r.deliver(f);
            let queued: Vec<Frame> = q.borrow_mut().frames.drain(..).collect();
            for f in &queued {
                out.frame(f, &mut ts);
            }
        }
        let mut d = TsDemuxer::new();
        d.push(&ts);
        d.flush();
        let got: Vec<Frame> = std::iter::from_fn(|| d.poll_frame()).collect();
        let audio = got.iter().filter(|f| f.track == Track::Audio && !f.config);
        assert!(got
            .iter()
            .all(|f| f.track != Track::Audio || f.codec == Codec::Aac));
        assert_eq!(audio.count(), aac, "every AAC frame, no Opus");
    }

    #[test]
    fn a_full_player_queue_skips_to_the_next_keyframe_once() {
        let q = Rc::new(RefCell::new(PlayQueue::default()));
        let mut r = PlayReader(q.clone());
        assert_eq!(r.deliver(&video(true, 0)), ReaderState::Ready);
        for i in 1..PLAYER_QUEUE_FRAMES as u32 + 10 {
            r.deliver(&video(false, i));
        }
        {
            let q = q.borrow();
            assert_eq!(q.skips, 1, "one episode");
            assert!(q.wait_key && q.frames.is_empty());
            assert!(q.dropped >= PLAYER_QUEUE_FRAMES as u64);
        }
        // Inter frames wait; the next keyframe resumes.
        r.deliver(&video(false, 100_000));
        assert!(q.borrow().frames.is_empty());
        r.deliver(&video(true, 100_040));
        r.deliver(&video(false, 100_080));
        let q2 = q.borrow();
        assert!(!q2.wait_key);
        assert_eq!(q2.frames.len(), 2);
        assert!(q2.frames[0].key);
        drop(q2);
        // A second skip while still skipping is the same episode.
        q.borrow_mut().skip();
        q.borrow_mut().skip();
        assert_eq!(q.borrow().skips, 2);
    }

    #[test]
    fn after_lost_packets_video_waits_for_the_next_keyframe() {
        let frames = fixture_frames();
        let mut out = TsOut::default();
        let mut ts = Vec::new();
        for f in &frames {
            out.frame(f, &mut ts);
        }
        // Lose 20 packets (two SRT payloads and more) a third of the way in: mid-GOP.
        let at = (ts.len() / 3 / 188) * 188;
        ts.drain(at..at + 20 * 188);
        let mut d = TsDemuxer::new();
        let mut gate = LossGate::default();
        let mut passed = Vec::new();
        let mut errors = 0;
        for chunk in ts.chunks(1316) {
            d.push(chunk);
            while d.poll_error().is_some() {
                errors += 1;
                gate.error();
            }
            while let Some(f) = d.poll_frame() {
                if gate.pass(&f) {
                    passed.push(f);
                }
            }
        }
        assert!(errors > 0, "the gap is seen");
        assert!(gate.dropped > 0, "inter frames after the gap are held back");
        // In what passed, the video after the gap restarts with a keyframe: the frame after a
        // jump in video time longer than the loss is a keyframe.
        let video: Vec<&Frame> = passed
            .iter()
            .filter(|f| f.track == Track::Video && !f.config)
            .collect();
        let resumed = video
            .windows(2)
            .find(|w| w[1].time > w[0].time + 200)
            .expect("a hole in the video");
        assert!(resumed[1].key, "video resumes on a keyframe");
        assert!(
            passed.iter().any(|f| f.track == Track::Audio
                && f.time > resumed[0].time
                && f.time < resumed[1].time),
            "audio goes on meanwhile"
        );
    }

    #[test]
    fn a_player_that_left_makes_its_reader_gone() {
        let q = Rc::new(RefCell::new(PlayQueue::default()));
        let mut r = PlayReader(q.clone());
        assert_eq!(r.poll(0), ReaderState::Ready);
        q.borrow_mut().left = true;
        assert_eq!(r.deliver(&video(true, 0)), ReaderState::Gone);
        assert_eq!(r.poll(0), ReaderState::Gone);
        assert!(q.borrow().frames.is_empty());
    }
}
