//! One established SRT connection in live mode, sans-IO: datagrams from the peer and `now` in;
//! datagrams for the peer, in-order payloads (released at their TSBPD time) and the next deadline
//! out. Receive side: the reorder buffer, full ACKs every 10 ms, NAKs on a gap and periodically,
//! too-late packet drop. Send side: the retransmission buffer, ACK/ACKACK, NAK-driven resends,
//! the sender's drop of packets older than the latency allows. Both buffers are bounded.
//! The handshake is not here (`listener.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::Keys;
use super::packet::{
    ctrl, parse_loss_list, seq_add, seq_diff, simple_control, write_loss_list, Ack, ControlHeader,
    DataHeader, Packet, HEADER_LEN, PP_SOLO,
};

/// The payload of one data packet: seven 188-byte TS packets, as every SRT tool sends.
pub const PAYLOAD_SIZE: usize = 1316;
const ACK_PERIOD: Duration = Duration::from_millis(10);
const NAK_MIN_PERIOD: Duration = Duration::from_millis(20);
const KEEPALIVE_PERIOD: Duration = Duration::from_secs(1);
/// Ranges in one NAK (fits a 1500-byte datagram) and ranges read from a peer's NAK.
const MAX_NAK_RANGES: usize = 160;
/// ACK numbers remembered for ACKACK round trips.
const ACK_HISTORY: usize = 64;
const DRIFT_SAMPLES: i64 = 1000;
const REXMIT_GUARD: Duration = Duration::from_millis(10);
/// Packets that may leave back to back (42 KB: far below a default 208 KB socket buffer).
const PACE_BURST: f64 = 32.0;
const MAX_DRIFT_US: u64 = 5000;

/// Sizes and times a connection runs with, settled in the handshake.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// The TSBPD latency of what we receive.
    pub rcv_latency: Duration,
    /// The TSBPD latency the peer applies to what we send (drives our sender drop).
    pub snd_latency: Duration,
    /// Receive buffer, in packets.
    pub rcv_cap: usize,
    /// Send buffer, in packets.
    pub snd_cap: usize,
    /// Silence from the peer after which the connection is dead.
    pub peer_idle: Duration,
    /// The first sequence number in both directions (libsrt's listener adopts the caller's).
    pub isn: u32,
    /// Our time base for the timestamps we send.
    pub start: Instant,
    /// Pacing of what we send, packets per second.
    pub pace_pps: u32,
    /// Payload bytes per packet we send: 1316, or fewer whole TS packets for a small peer MTU.
    pub payload_size: usize,
    /// The instant the peer's timestamp 0 maps to.
    pub peer_start: Instant,
}

/// Counters for `/metrics` and `/api/streams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub rtt_us: u32,
    pub rtt_var_us: u32,
    pub rcv_latency_ms: u32,
    pub snd_latency_ms: u32,
    /// AES key length in bytes, 0 when in the clear.
    pub key_len: usize,
    pub pkts_recv: u64,
    pub bytes_recv: u64,
    /// Data packets that arrived with the retransmitted flag.
    pub pkts_recv_rexmit: u64,
    /// Sequence numbers found missing (each counted once).
    pub pkts_lost: u64,
    /// Packets never delivered: still missing at their play time, or dropped by the sender.
    pub pkts_dropped: u64,
    /// Duplicates, too-late arrivals, packets beyond the buffer, undecryptable ones.
    pub pkts_discarded: u64,
    pub pkts_sent: u64,
    pub bytes_sent: u64,
    pub pkts_retransmitted: u64,
    /// Packets we dropped from the send buffer unacknowledged (too old for the peer's latency).
    pub pkts_snd_dropped: u64,
    pub naks_sent: u64,
    pub naks_recv: u64,
    pub rcv_buffered: usize,
    pub snd_buffered: usize,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent SHUTDOWN.
    Shutdown,
    /// Nothing from the peer for the idle timeout.
    Timeout,
    /// The server closed it (`Listener::close`).
    Local,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Shutdown => "peer closed",
            CloseReason::Timeout => "peer timed out",
            CloseReason::Local => "closed by the server",
        })
    }
}

/// The send buffer is full: the caller drops media (to the next keyframe, as for any player).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFull;

#[derive(Debug)]
enum Slot {
    Empty,
    /// The sender said it will never come (DROPREQ).
    Dropped,
    Ready {
        due: Instant,
        data: Vec<u8>,
    },
}

#[derive(Debug)]
struct Sent {
    seq: u32,
    msgno: u32,
    timestamp: u32,
    /// Encrypted when the connection is.
    payload: Vec<u8>,
    key: u8,
    first_sent: Instant,
    last_sent: Instant,
    lost: bool,
}

/// One connection; see the module doc.
pub struct Conn {
    pub peer: SocketAddr,
    pub peer_id: u32,
    p: ConnParams,
    keys: Option<Keys>,
    passphrase: Option<Vec<u8>>,
    // Receive side.
    rcv_next: u32,
    rcv_buf: VecDeque<Slot>,
    last_ts: Option<(u32, i64)>,
    last_ack_next: u32,
    /// Data arrived since the last ACK: only then is there an ACK to send (and a timer to wake).
    data_since_ack: bool,
    /// A gap was seen and no periodic NAK has found the buffer whole since.
    maybe_holes: bool,
    ack_no: u32,
    acks_sent: VecDeque<(u32, Instant)>,
    next_ack: Instant,
    next_nak: Instant,
    rate_window: (Instant, u64, u64),
    rates: (u32, u32),
    /// Sum and count of clock offsets in the current drift window.
    drift: (i64, i64),
    // Send side.
    snd_next: u32,
    msgno: u32,
    /// Packets at the back of `sent` not yet transmitted (pacing).
    unsent: usize,
    /// Pacing credit in packets, and when it was last topped up.
    pace: (f64, Instant),
    /// The last time an ACK advanced or new data left: the tail-loss probe counts from it.
    last_progress: Instant,
    sent: VecDeque<Sent>,
    lost_count: usize,
    // Both.
    last_recv: Instant,
    last_send: Instant,
    rtt: u32,
    rtt_var: u32,
    rtt_measured: bool,
    stats: Stats,
    out: Vec<Vec<u8>>,
    delivered: Vec<Vec<u8>>,
    closed: Option<CloseReason>,
}

impl Conn {
    pub fn new(
        peer: SocketAddr,
        peer_id: u32,
        p: ConnParams,
        keys: Option<Keys>,
        passphrase: Option<Vec<u8>>,
        now: Instant,
    ) -> Conn {
        let stats = Stats {
            rcv_latency_ms: p.rcv_latency.as_millis() as u32,
            snd_latency_ms: p.snd_latency.as_millis() as u32,
            key_len: keys.as_ref().map_or(0, |k| k.key_len),
            ..Stats::default()
        };
        Conn {
            peer,
            peer_id,
            keys,
            passphrase,
            rcv_next: p.isn,
            rcv_buf: VecDeque::new(),
            last_ts: None,
            last_ack_next: p.isn,
            data_since_ack: false,
            maybe_holes: false,
            ack_no: 0,
            acks_sent: VecDeque::new(),
            next_ack: now + ACK_PERIOD,
            next_nak: now + NAK_MIN_PERIOD,
            rate_window: (now, 0, 0),
            rates: (0, 0),
            drift: (0, 0),
            snd_next: p.isn,
            msgno: 1,
            unsent: 0,
            pace: (PACE_BURST, now),
            last_progress: now,
            sent: VecDeque::new(),
            lost_count: 0,
            last_recv: now,
            last_send: now,
            rtt: 100_000,
            rtt_var: 50_000,
            rtt_measured: false,
            stats,
            out: Vec::new(),
            delivered: Vec::new(),
            closed: None,
            p,
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.rtt_us = self.rtt;
        s.rtt_var_us = self.rtt_var;
        s.rcv_buffered = self
            .rcv_buf
            .iter()
            .filter(|s| matches!(s, Slot::Ready { .. }))
            .count();
        s.snd_buffered = self.sent.len();
        s
    }

    pub fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Datagrams for the peer queued since the last call (the queue keeps its memory).
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.out.drain(..)
    }

    /// Payloads released in order since the last call (the queue keeps its memory).
    pub fn drain_delivered(&mut self) -> std::vec::Drain<'_, Vec<u8>> {
        self.delivered.drain(..)
    }

    fn timestamp(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.p.start).as_micros() as u32
    }

    fn push_out(&mut self, now: Instant, datagram: Vec<u8>) {
        self.last_send = now;
        self.out.push(datagram);
    }

    fn control(&mut self, now: Instant, kind: u16, info: u32, body: &[u8]) {
        let mut d = Vec::with_capacity(HEADER_LEN + body.len());
        ControlHeader::new(kind, info, self.timestamp(now), self.peer_id).write(&mut d);
        d.extend_from_slice(body);
        self.push_out(now, d);
    }

    /// One datagram from the peer (already routed to us by socket id and address). A payload
    /// kept is copied into a buffer from `spare` (emptied payloads handed back by the server)
    /// when there is one, so a packet costs no allocation.
    pub fn handle(&mut self, now: Instant, pkt: &Packet<'_>, spare: &mut Vec<Vec<u8>>) {
        if self.closed.is_some() {
            return;
        }
        self.last_recv = now;
        match *pkt {
            Packet::Data(h, payload) => self.on_data(now, h, payload, spare),
            Packet::Control(h, body) => self.on_control(now, h, body),
        }
        self.deliver(now);
    }

    // ---- receive side ----

    /// The peer timestamp extended past its 32-bit wrap (about 71 minutes).
    fn extend_ts(&mut self, ts: u32) -> i64 {
        match self.last_ts {
            None => {
                self.last_ts = Some((ts, i64::from(ts)));
                i64::from(ts)
            }
            Some((last, ext)) => {
                let e = ext + i64::from(ts.wrapping_sub(last) as i32);
                if e > ext {
                    self.last_ts = Some((ts, e));
                }
                e
            }
        }
    }

    fn on_data(&mut self, now: Instant, h: DataHeader, payload: &[u8], spare: &mut Vec<Vec<u8>>) {
        self.data_since_ack = true;
        self.stats.pkts_recv += 1;
        self.stats.bytes_recv += payload.len() as u64;
        self.rate_window.1 += 1;
        self.rate_window.2 += payload.len() as u64;
        if h.rexmit {
            self.stats.pkts_recv_rexmit += 1;
        }
        let offset = seq_diff(h.seq, self.rcv_next);
        if offset < 0 || offset as usize >= self.p.rcv_cap {
            self.stats.pkts_discarded += 1;
            return;
        }
        let offset = offset as usize;
        let ext = self.extend_ts(h.timestamp);
        if !h.rexmit {
            self.trace_drift(now, ext);
        }
        let mut data = spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(payload);
        if h.key != 0 {
            let ok = self
                .keys
                .as_ref()
                .is_some_and(|k| k.apply(h.key, h.seq, &mut data));
            if !ok {
                self.stats.pkts_discarded += 1;
                return;
            }
        }
        // A sender stamps a packet when it sends it, so it can never be due later than the latency
        // from now: a timestamp from the future (a glitch, a hostile peer) must not stall the
        // packets behind it.
        let latest = now + self.p.rcv_latency;
        let due = self
            .p
            .peer_start
            .checked_add(Duration::from_micros(ext.max(0) as u64) + self.p.rcv_latency)
            .map_or(latest, |due| due.min(latest));
        let old_len = self.rcv_buf.len();
        if offset >= old_len {
            let gap = offset - old_len;
            self.rcv_buf.resize_with(offset + 1, || Slot::Empty);
            if gap > 0 {
                if !self.maybe_holes {
                    self.maybe_holes = true;
                    self.next_nak = now + self.nak_period();
                }
                self.stats.pkts_lost += gap as u64;
                let first = seq_add(self.rcv_next, old_len as u32);
                let last = seq_add(self.rcv_next, (offset - 1) as u32);
                self.send_nak(now, &[(first, last)]);
            }
        }
        match &self.rcv_buf[offset] {
            Slot::Empty => self.rcv_buf[offset] = Slot::Ready { due, data },
            _ => self.stats.pkts_discarded += 1,
        }
    }

    /// Follows the peer's clock: every 1000 first transmissions, the mean of arrival minus
    /// (base + timestamp) moves the base when it exceeds 5 ms, as libsrt's drift tracer does, so
    /// the latency stays what was agreed over hours between clocks that differ by 100 ppm.
    fn trace_drift(&mut self, now: Instant, ext_us: i64) {
        // Checked: a peer can push its extended timestamps centuries ahead, one jump at a time.
        let Some(expected) = self
            .p
            .peer_start
            .checked_add(Duration::from_micros(ext_us.max(0) as u64))
        else {
            return;
        };
        let offset = if now >= expected {
            now.duration_since(expected).as_micros() as i64
        } else {
            -(expected.duration_since(now).as_micros() as i64)
        };
        // Drift is milliseconds per second; a sample a second off is a glitch, not drift.
        if offset.unsigned_abs() > 1_000_000 {
            return;
        }
        self.drift.0 += offset;
        self.drift.1 += 1;
        if self.drift.1 >= DRIFT_SAMPLES {
            let mean = self.drift.0 / DRIFT_SAMPLES;
            self.drift = (0, 0);
            if mean.unsigned_abs() > MAX_DRIFT_US {
                let shift = Duration::from_micros(mean.unsigned_abs());
                self.p.peer_start = if mean > 0 {
                    self.p.peer_start + shift
                } else {
                    self.p
                        .peer_start
                        .checked_sub(shift)
                        .unwrap_or(self.p.peer_start)
                };
            }
        }
    }

    /// Releases every packet whose play time has come; a missing packet whose successor is due
    /// is given up (too-late packet drop), as live mode wants.
    fn deliver(&mut self, now: Instant) {
        loop {
            match self.rcv_buf.front() {
                Some(Slot::Ready { due, .. }) if *due <= now => {
                    if let Some(Slot::Ready { data, .. }) = self.rcv_buf.pop_front() {
                        self.delivered.push(data);
                    }
                    self.rcv_next = seq_add(self.rcv_next, 1);
                }
                Some(Slot::Dropped) => {
                    self.rcv_buf.pop_front();
                    self.rcv_next = seq_add(self.rcv_next, 1);
                }
                Some(Slot::Empty) => {
                    let next_ready = self.rcv_buf.iter().find_map(|s| match s {
                        Slot::Ready { due, .. } => Some(*due),
                        _ => None,
                    });
                    if next_ready.is_none_or(|due| due > now) {
                        return;
                    }
                    while matches!(self.rcv_buf.front(), Some(Slot::Empty | Slot::Dropped)) {
                        if matches!(self.rcv_buf.pop_front(), Some(Slot::Empty)) {
                            self.stats.pkts_dropped += 1;
                        }
                        self.rcv_next = seq_add(self.rcv_next, 1);
                    }
                }
                _ => return,
            }
        }
    }

    /// The peer closed: what it sent and we hold is released now, in order, without waiting for
    /// its play time (the tail of a stream up to the latency; a recording wants it). Holes can no
    /// longer be filled and are given up.
    fn deliver_all(&mut self) {
        while let Some(slot) = self.rcv_buf.pop_front() {
            match slot {
                Slot::Ready { data, .. } => self.delivered.push(data),
                Slot::Empty => self.stats.pkts_dropped += 1,
                Slot::Dropped => {}
            }
            self.rcv_next = seq_add(self.rcv_next, 1);
        }
    }

    /// The first sequence number not received in order.
    fn ack_point(&self) -> u32 {
        let n = self
            .rcv_buf
            .iter()
            .take_while(|s| !matches!(s, Slot::Empty))
            .count();
        seq_add(self.rcv_next, n as u32)
    }

    /// A full ACK, when data came since the last one; the same ACK point goes again at most once
    /// per RTT (a repeated packet means our ACK was lost).
    fn send_ack(&mut self, now: Instant) {
        if !self.data_since_ack {
            return;
        }
        let next = self.ack_point();
        if next == self.last_ack_next
            && self.acks_sent.back().is_some_and(|(_, t)| {
                now < *t + Duration::from_micros(u64::from(self.rtt.max(10_000)))
            })
        {
            return;
        }
        self.last_ack_next = next;
        self.data_since_ack = false;
        self.ack_no = self.ack_no.wrapping_add(1).max(1);
        let ack = Ack {
            next,
            rtt_us: self.rtt,
            rtt_var_us: self.rtt_var,
            avail: self.p.rcv_cap.saturating_sub(self.rcv_buf.len()).max(2) as u32,
            pkt_rate: self.rates.0,
            capacity: self.rates.0.max(1),
            byte_rate: self.rates.1,
        };
        let mut body = Vec::with_capacity(28);
        ack.write(&mut body);
        self.control(now, ctrl::ACK, self.ack_no, &body);
        if self.acks_sent.len() >= ACK_HISTORY {
            self.acks_sent.pop_front();
        }
        self.acks_sent.push_back((self.ack_no, now));
    }

    fn send_nak(&mut self, now: Instant, ranges: &[(u32, u32)]) {
        if ranges.is_empty() {
            return;
        }
        let mut body = Vec::new();
        write_loss_list(ranges, &mut body);
        self.control(now, ctrl::NAK, 0, &body);
        self.stats.naks_sent += 1;
    }

    /// Every hole in the receive buffer, as ranges.
    fn holes(&self) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        let mut run: Option<(usize, usize)> = None;
        for (i, s) in self.rcv_buf.iter().enumerate() {
            if matches!(s, Slot::Empty) {
                run = Some(run.map_or((i, i), |(a, _)| (a, i)));
            } else if let Some((a, b)) = run.take() {
                out.push((
                    seq_add(self.rcv_next, a as u32),
                    seq_add(self.rcv_next, b as u32),
                ));
                if out.len() >= MAX_NAK_RANGES {
                    return out;
                }
            }
        }
        out
    }

    /// libsrt's period, (RTT + 4 RTTVar) / 2, but at least three tries within the latency.
    fn nak_period(&self) -> Duration {
        let rtt = Duration::from_micros((u64::from(self.rtt) + 4 * u64::from(self.rtt_var)) / 2);
        rtt.min(self.p.rcv_latency / 3).max(NAK_MIN_PERIOD)
    }

    fn on_ackack(&mut self, now: Instant, ack_no: u32) {
        if let Some(&(_, sent)) = self.acks_sent.iter().find(|(n, _)| *n == ack_no) {
            let sample = now
                .saturating_duration_since(sent)
                .as_micros()
                .min(10_000_000) as u32;
            self.update_rtt(sample);
        }
    }

    fn update_rtt(&mut self, sample: u32) {
        if !self.rtt_measured {
            // The first sample replaces the 100 ms guess, as in libsrt.
            self.rtt_measured = true;
            self.rtt = sample;
            self.rtt_var = sample / 2;
            return;
        }
        let diff = self.rtt.abs_diff(sample);
        self.rtt_var = (3 * u64::from(self.rtt_var) / 4 + u64::from(diff) / 4) as u32;
        self.rtt = (7 * u64::from(self.rtt) / 8 + u64::from(sample) / 8) as u32;
    }

    fn on_dropreq(&mut self, body: &[u8]) {
        if body.len() < 8 {
            return;
        }
        let first = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7FFF_FFFF;
        let last = u32::from_be_bytes([body[4], body[5], body[6], body[7]]) & 0x7FFF_FFFF;
        let from = seq_diff(first, self.rcv_next).max(0) as usize;
        let to = seq_diff(last, self.rcv_next);
        if to < 0 || seq_diff(last, first) < 0 {
            return;
        }
        let to = (to as usize).min(self.p.rcv_cap - 1);
        if self.rcv_buf.len() <= to {
            // Slots between the old end and `from` stay missing.
            self.maybe_holes = true;
            self.rcv_buf.resize_with(to + 1, || Slot::Empty);
        }
        for i in from..=to {
            if matches!(self.rcv_buf[i], Slot::Empty) {
                self.rcv_buf[i] = Slot::Dropped;
                self.stats.pkts_dropped += 1;
            }
        }
    }

    // ---- send side ----

    /// Queues `data` as packets of at most `payload_size` bytes; they go out paced (see `transmit`). All or
    /// nothing: when the send buffer cannot take every packet, nothing is queued.
    pub fn send(&mut self, now: Instant, data: &[u8]) -> Result<(), SendFull> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.drop_old(now);
        let size = self.p.payload_size.clamp(188, PAYLOAD_SIZE);
        let n = data.len().div_ceil(size);
        if self.sent.len() + n > self.p.snd_cap {
            return Err(SendFull);
        }
        for chunk in data.chunks(size) {
            let mut payload = chunk.to_vec();
            let key = match &self.keys {
                Some(k) => {
                    let kk = k.send_kk();
                    k.apply(kk, self.snd_next, &mut payload);
                    kk
                }
                None => 0,
            };
            self.sent.push_back(Sent {
                seq: self.snd_next,
                msgno: self.msgno,
                timestamp: 0,
                payload,
                key,
                first_sent: now,
                last_sent: now,
                lost: false,
            });
            self.snd_next = seq_add(self.snd_next, 1);
            self.msgno = (self.msgno % 0x03FF_FFFF) + 1;
            self.unsent += 1;
        }
        self.transmit(now);
        Ok(())
    }

    /// Sends queued packets as the pacing credit allows: `pace_pps` a second with bursts of at
    /// most `PACE_BURST`, so a cached GOP handed over at once does not overrun the player's socket
    /// buffer. A packet is stamped when it leaves, so its play time counts from then.
    fn transmit(&mut self, now: Instant) {
        let rate = f64::from(self.p.pace_pps.max(1));
        let elapsed = now.saturating_duration_since(self.pace.1).as_secs_f64();
        self.pace = ((self.pace.0 + elapsed * rate).min(PACE_BURST), now);
        let timestamp = self.timestamp(now);
        while self.unsent > 0 && self.pace.0 >= 1.0 {
            self.pace.0 -= 1.0;
            let i = self.sent.len() - self.unsent;
            self.unsent -= 1;
            let s = &mut self.sent[i];
            s.timestamp = timestamp;
            s.first_sent = now;
            s.last_sent = now;
            let d = self.data_datagram(&self.sent[i], false);
            self.last_progress = now;
            self.stats.pkts_sent += 1;
            self.stats.bytes_sent += (d.len() - HEADER_LEN) as u64;
            self.push_out(now, d);
        }
    }

    /// The sequence number after the last packet put on the wire.
    fn tx_next(&self) -> u32 {
        seq_add(self.snd_next, 0u32.wrapping_sub(self.unsent as u32))
    }

    fn data_datagram(&self, s: &Sent, rexmit: bool) -> Vec<u8> {
        let mut d = Vec::with_capacity(HEADER_LEN + s.payload.len());
        DataHeader {
            seq: s.seq,
            position: PP_SOLO,
            in_order: false,
            key: s.key,
            rexmit,
            msgno: s.msgno,
            timestamp: s.timestamp,
            dest: self.peer_id,
        }
        .write(&mut d);
        d.extend_from_slice(&s.payload);
        d
    }

    fn on_ack(&mut self, now: Instant, info: u32, body: &[u8]) {
        let Ok((ack, full)) = Ack::parse(body) else {
            return;
        };
        let acked = seq_diff(ack.next, self.sent.front().map_or(self.snd_next, |s| s.seq));
        if seq_diff(ack.next, self.tx_next()) <= 0 && acked > 0 {
            for s in self.sent.drain(..(acked as usize).min(self.sent.len())) {
                if s.lost {
                    self.lost_count -= 1;
                }
            }
            self.last_progress = now;
        }
        if full {
            let mut ackack = Vec::with_capacity(HEADER_LEN + 4);
            ControlHeader::new(ctrl::ACKACK, info, self.timestamp(now), self.peer_id)
                .write(&mut ackack);
            ackack.extend_from_slice(&[0; 4]);
            self.push_out(now, ackack);
            if ack.rtt_us > 0 && ack.rtt_us < 10_000_000 {
                self.rtt_measured = true;
                self.rtt = ack.rtt_us;
                self.rtt_var = ack.rtt_var_us.min(10_000_000);
            }
        }
    }

    fn on_nak(&mut self, now: Instant, body: &[u8]) {
        let Ok(ranges) = parse_loss_list(body, MAX_NAK_RANGES) else {
            return;
        };
        self.stats.naks_recv += 1;
        let Some(base) = self.sent.front().map(|s| s.seq) else {
            return;
        };
        let len = (self.sent.len() - self.unsent) as i64;
        // The first NAK of a packet is always served; after that a packet goes again at most
        // every 10 ms (libsrt NAKs again no sooner than 20 ms), so NAK floods cannot multiply our
        // output. One NAK makes at most one pass over the buffer, however its ranges overlap.
        let mut budget = len;
        for (first, last) in ranges {
            let a = i64::from(seq_diff(first, base)).max(0);
            let b = i64::from(seq_diff(last, base)).min(len - 1);
            for i in a..=b {
                budget -= 1;
                if budget < 0 {
                    break;
                }
                let s = &mut self.sent[i as usize];
                let again_ok = s.last_sent == s.first_sent
                    || now.saturating_duration_since(s.last_sent) >= REXMIT_GUARD;
                if !s.lost && again_ok {
                    s.lost = true;
                    self.lost_count += 1;
                }
            }
        }
        self.retransmit(now);
    }

    fn retransmit(&mut self, now: Instant) {
        if self.lost_count == 0 {
            return;
        }
        let mut resend = Vec::new();
        for s in self.sent.iter_mut().filter(|s| s.lost) {
            s.lost = false;
            s.last_sent = now;
            resend.push(s.seq);
        }
        self.lost_count = 0;
        for seq in resend {
            let base = self.sent.front().map_or(seq, |s| s.seq);
            let d = self.data_datagram(&self.sent[seq_diff(seq, base) as usize], true);
            self.stats.pkts_retransmitted += 1;
            self.push_out(now, d);
        }
    }

    /// How long unacknowledged data may sit without an ACK moving or new data leaving before the
    /// last packet is sent again: in live mode only a later packet reveals a lost last one, and
    /// when the source pauses there is none.
    fn probe_after(&self) -> Duration {
        Duration::from_micros(2 * u64::from(self.rtt) + 4 * u64::from(self.rtt_var))
            .max(Duration::from_millis(20))
    }

    fn transmitted(&self) -> usize {
        self.sent.len() - self.unsent
    }

    /// The tail-loss probe: the last packet on the wire again (one packet, once per period).
    fn probe_tail(&mut self, now: Instant) {
        if self.transmitted() == 0 || now < self.last_progress + self.probe_after() {
            return;
        }
        self.last_progress = now;
        let i = self.transmitted() - 1;
        self.sent[i].last_sent = now;
        let d = self.data_datagram(&self.sent[i], true);
        self.stats.pkts_retransmitted += 1;
        self.push_out(now, d);
    }

    /// Packets the peer can no longer play (older than its latency allows) leave the send buffer;
    /// a DROPREQ tells the peer to stop waiting for them.
    fn drop_old(&mut self, now: Instant) {
        let limit = (self.p.snd_latency + self.p.snd_latency / 4).max(Duration::from_secs(1));
        let mut dropped: Option<(u32, u32, u32)> = None;
        while let Some(s) = self.sent.front() {
            if now.saturating_duration_since(s.first_sent) <= limit {
                break;
            }
            let (seq, msgno, lost) = (s.seq, s.msgno, s.lost);
            self.sent.pop_front();
            if lost {
                self.lost_count -= 1;
            }
            // Never sent: only a burst longer than the drop limit gets here.
            self.unsent = self.unsent.min(self.sent.len());
            self.stats.pkts_snd_dropped += 1;
            dropped = Some(dropped.map_or((msgno, seq, seq), |(m, f, _)| (m, f, seq)));
        }
        if let Some((msgno, first, last)) = dropped {
            let mut body = Vec::with_capacity(8);
            body.extend_from_slice(&first.to_be_bytes());
            body.extend_from_slice(&last.to_be_bytes());
            self.control(now, ctrl::DROPREQ, msgno, &body);
        }
    }

    // ---- control and timers ----

    fn on_control(&mut self, now: Instant, h: ControlHeader, body: &[u8]) {
        match h.kind {
            ctrl::ACK => self.on_ack(now, h.info, body),
            ctrl::ACKACK => self.on_ackack(now, h.info),
            ctrl::NAK => self.on_nak(now, body),
            ctrl::DROPREQ => self.on_dropreq(body),
            ctrl::SHUTDOWN => {
                self.deliver_all();
                self.closed = Some(CloseReason::Shutdown);
            }
            ctrl::EXT if h.subtype == super::handshake::CMD_KMREQ => self.on_km_refresh(now, body),
            _ => {}
        }
    }

    /// An in-stream key refresh (the sender re-keys every 2^25 packets): take the new keys and
    /// echo the message as KMRSP, as libsrt does.
    fn on_km_refresh(&mut self, now: Instant, body: &[u8]) {
        let Some(pass) = &self.passphrase else {
            return;
        };
        match Keys::from_km(body, pass) {
            Ok(keys) => {
                self.keys = Some(keys);
                let mut d = Vec::with_capacity(HEADER_LEN + body.len());
                let mut h = ControlHeader::new(ctrl::EXT, 0, self.timestamp(now), self.peer_id);
                h.subtype = super::handshake::CMD_KMRSP;
                h.write(&mut d);
                d.extend_from_slice(body);
                self.push_out(now, d);
            }
            Err(e) => log::warn!("srt: {} from {}: key refresh ignored", e, self.peer),
        }
    }

    /// Runs whatever is due at `now`: delivery, ACK, periodic NAK, keep-alive, drops, timeout.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if now.saturating_duration_since(self.last_recv) >= self.p.peer_idle {
            self.closed = Some(CloseReason::Timeout);
            return;
        }
        self.deliver(now);
        if now >= self.next_ack {
            self.send_ack(now);
            self.next_ack = now + ACK_PERIOD;
        }
        if now >= self.next_nak && self.maybe_holes {
            let holes = self.holes();
            self.maybe_holes = !holes.is_empty();
            self.send_nak(now, &holes);
            self.next_nak = now + self.nak_period();
        }
        if now.saturating_duration_since(self.rate_window.0) >= Duration::from_secs(1) {
            let secs = now
                .saturating_duration_since(self.rate_window.0)
                .as_secs_f64();
            self.rates = (
                (self.rate_window.1 as f64 / secs) as u32,
                (self.rate_window.2 as f64 / secs) as u32,
            );
            self.rate_window = (now, 0, 0);
        }
        self.drop_old(now);
        self.transmit(now);
        self.probe_tail(now);
        if now.saturating_duration_since(self.last_send) >= KEEPALIVE_PERIOD {
            let ka = simple_control(ctrl::KEEPALIVE, 0, self.timestamp(now), self.peer_id);
            self.push_out(now, ka);
        }
    }

    /// The next instant `on_timeout` has work to do.
    pub fn next_deadline(&self) -> Instant {
        // An idle player costs one wake-up a second (keep-alive), not one per ACK period.
        let mut t = (self.last_send + KEEPALIVE_PERIOD).min(self.last_recv + self.p.peer_idle);
        if self.data_since_ack {
            t = t.min(self.next_ack);
        }
        if self.maybe_holes {
            t = t.min(self.next_nak);
        }
        if !self.rcv_buf.is_empty() {
            if let Some(due) = self.rcv_buf.iter().find_map(|s| match s {
                Slot::Ready { due, .. } => Some(*due),
                _ => None,
            }) {
                t = t.min(due);
            }
        }
        if self.unsent > 0 {
            // Wake when a batch of up to 8 packets is allowed, not for every packet.
            let want = (self.unsent as f64).min(8.0) - self.pace.0;
            let wait = Duration::from_secs_f64(want.max(0.0) / f64::from(self.p.pace_pps.max(1)));
            t = t.min(self.pace.1 + wait);
        }
        if self.transmitted() > 0 {
            t = t.min(self.last_progress + self.probe_after());
        }
        if let Some(s) = self.sent.front() {
            let limit = (self.p.snd_latency + self.p.snd_latency / 4).max(Duration::from_secs(1));
            t = t.min(s.first_sent + limit + Duration::from_millis(1));
        }
        t
    }

    /// Closes from our side: SHUTDOWN goes out, nothing more is sent.
    pub fn close(&mut self, now: Instant) {
        if self.closed.is_none() {
            let d = simple_control(ctrl::SHUTDOWN, 0, self.timestamp(now), self.peer_id);
            self.push_out(now, d);
            self.closed = Some(CloseReason::Local);
        }
    }
}
