//! The listener driven in memory by a scripted caller on a fake clock: the handshake (induction,
//! conclusion, cookies, reject codes), the receive path (ACK, NAK, retransmission, TSBPD, too-late
//! drop), encryption, the send path, timeouts, and hostile input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{build_km, Keys};
use super::handshake::*;
use super::packet::*;
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const PASS: &[u8] = b"correct-horse-battery";

/// A caller acting as libsrt's does, one packet at a time.
struct Caller {
    addr: SocketAddr,
    id: u32,
    isn: u32,
    start: Instant,
    /// The listener's socket id for us, after the conclusion answer.
    dest: u32,
    keys: Option<Keys>,
    km: Option<Vec<u8>>,
    latency_ms: u16,
    next_seq: u32,
}

impl Caller {
    fn new(addr: &str, t0: Instant) -> Caller {
        Caller {
            addr: addr.parse().unwrap(),
            id: 0x1111,
            isn: 0x7FFF_FFF0, // wraps during the tests
            start: t0,
            dest: 0,
            keys: None,
            km: None,
            latency_ms: 80,
            next_seq: 0x7FFF_FFF0,
        }
    }

    fn with_key(mut self, pass: &[u8], len: usize) -> Caller {
        let even: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7)).collect();
        let km = build_km(pass, [0x5A; 16], &even, None).unwrap();
        // The caller encrypts with the key it made (the passphrase only wraps it).
        self.keys = Some(Keys::from_km(&km, pass).unwrap());
        self.km = Some(km);
        self
    }

    fn ts(&self, now: Instant) -> u32 {
        now.duration_since(self.start).as_micros() as u32
    }

    fn induction(&self, now: Instant) -> Vec<u8> {
        Handshake {
            version: VERSION_4,
            extension: UDT_DGRAM,
            isn: self.isn,
            mtu: 1500,
            flow_window: 8192,
            hs_type: TYPE_INDUCTION,
            socket_id: self.id,
            ..Handshake::default()
        }
        .to_packet(self.ts(now), 0)
    }

    fn conclusion_hs(&self, cookie: u32, sid: &[u8]) -> Handshake {
        Handshake {
            version: VERSION_5,
            encryption: self.keys.as_ref().map_or(0, |k| (k.key_len / 8) as u16),
            extension: EXT_HSREQ | EXT_CONFIG | if self.km.is_some() { EXT_KMREQ } else { 0 },
            isn: self.isn,
            mtu: 1500,
            flow_window: 8192,
            hs_type: TYPE_CONCLUSION,
            socket_id: self.id,
            cookie,
            srt: Some(SrtHs {
                version: 0x010501,
                flags: OPT_TSBPDSND
                    | OPT_TSBPDRCV
                    | OPT_HAICRYPT
                    | OPT_TLPKTDROP
                    | OPT_NAKREPORT
                    | OPT_REXMITFLG,
                recv_delay_ms: self.latency_ms,
                send_delay_ms: self.latency_ms,
            }),
            km: self.km.clone(),
            stream_id: Some(sid.to_vec()),
            request: true,
            ..Handshake::default()
        }
    }

    fn data(&mut self, now: Instant, payload: &[u8]) -> (u32, Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq = seq_add(seq, 1);
        (seq, self.data_at(now, seq, payload, false))
    }

    fn data_at(&self, now: Instant, seq: u32, payload: &[u8], rexmit: bool) -> Vec<u8> {
        let mut body = payload.to_vec();
        let key = match &self.keys {
            Some(k) => {
                assert!(k.apply(1, seq, &mut body));
                1
            }
            None => 0,
        };
        let mut d = Vec::new();
        DataHeader {
            seq,
            position: PP_SOLO,
            in_order: false,
            key,
            rexmit,
            msgno: 1,
            timestamp: self.ts(now),
            dest: self.dest,
        }
        .write(&mut d);
        d.extend_from_slice(&body);
        d
    }

    fn control(&self, now: Instant, kind: u16, info: u32, body: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        ControlHeader::new(kind, info, self.ts(now), self.dest).write(&mut d);
        d.extend_from_slice(body);
        d
    }
}

fn config() -> ListenerConfig {
    ListenerConfig::default()
}

const SECRET: [u8; 32] = [42; 32];

fn drain(l: &mut Listener) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut Listener) -> Vec<Event> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn handshake_of(t: &Transmit) -> (ControlHeader, Handshake) {
    match Packet::parse(&t.data).unwrap() {
        Packet::Control(h, body) if h.kind == ctrl::HANDSHAKE => {
            (h, Handshake::parse(body).unwrap())
        }
        other => panic!("not a handshake: {other:?}"),
    }
}

/// Induction then conclusion; returns the answers to the conclusion and the events.
fn connect(l: &mut Listener, c: &Caller, now: Instant, sid: &[u8]) -> (Vec<Transmit>, Vec<Event>) {
    l.handle_datagram(now, c.addr, &c.induction(now));
    let out = drain(l);
    assert_eq!(out.len(), 1);
    let (_, ind) = handshake_of(&out[0]);
    let conc = c.conclusion_hs(ind.cookie, sid).to_packet(c.ts(now), 0);
    l.handle_datagram(now, c.addr, &conc);
    (drain(l), events(l))
}

/// A caller connected and accepted; returns the listener's id for it.
fn open(l: &mut Listener, c: &mut Caller, now: Instant, sid: &[u8]) -> ConnId {
    let (out, ev) = connect(l, c, now, sid);
    assert!(out.is_empty(), "no answer before the decision");
    let Some(Event::Request { id, .. }) = ev.first() else {
        panic!("no request: {ev:?}")
    };
    l.accept(*id, now);
    let out = drain(l);
    let (h, hs) = handshake_of(&out[0]);
    assert_eq!(h.dest, c.id);
    assert_eq!(hs.hs_type, TYPE_CONCLUSION);
    assert_eq!(hs.socket_id, *id);
    c.dest = hs.socket_id;
    *id
}

fn payloads(ev: &[Event]) -> Vec<Vec<u8>> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Data { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect()
}

fn controls(out: &[Transmit], kind: u16) -> Vec<(ControlHeader, Vec<u8>)> {
    out.iter()
        .filter_map(|t| match Packet::parse(&t.data).unwrap() {
            Packet::Control(h, b) if h.kind == kind => Some((h, b.to_vec())),
            _ => None,
        })
        .collect()
}

#[test]
fn induction_is_answered_with_a_cookie_and_keeps_no_state() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0);
    for _ in 0..100 {
        l.handle_datagram(t0, c.addr, &c.induction(t0));
    }
    let out = drain(&mut l);
    assert_eq!(out.len(), 100);
    let (h, hs) = handshake_of(&out[0]);
    assert_eq!(h.dest, c.id);
    assert_eq!(
        (hs.version, hs.extension, hs.hs_type),
        (5, SRT_MAGIC, TYPE_INDUCTION)
    );
    assert_ne!(hs.cookie, 0);
    assert_eq!(hs.isn, c.isn);
    assert!(l.is_empty(), "a flood of inductions allocates nothing");
    assert_eq!(l.poll_timeout(), None);
    // Another address gets another cookie (once the induction budget has refilled).
    let d = Caller::new("10.0.0.2:5000", t0);
    l.handle_datagram(t0 + ms(10), d.addr, &d.induction(t0));
    assert_ne!(handshake_of(&drain(&mut l)[0]).1.cookie, hs.cookie);
}

#[test]
fn conclusion_needs_a_valid_fresh_cookie() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0);
    let sid = b"#!::r=live/s,m=publish";
    // A guessed cookie: silence and no state.
    l.handle_datagram(t0, c.addr, &c.conclusion_hs(12345, sid).to_packet(0, 0));
    assert!(drain(&mut l).is_empty());
    assert!(l.is_empty());
    assert_eq!(l.stats().bad_cookies, 1);
    // A cookie for one address does not work from another.
    l.handle_datagram(t0, c.addr, &c.induction(t0));
    let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
    let other: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    l.handle_datagram(t0, other, &c.conclusion_hs(cookie, sid).to_packet(0, 0));
    assert!(l.is_empty());
    // Still good a minute later, stale after two.
    let late = t0 + Duration::from_secs(61);
    l.handle_datagram(late, c.addr, &c.conclusion_hs(cookie, sid).to_packet(0, 0));
    assert_eq!(events(&mut l).len(), 1);
    let mut l = Listener::new(config(), SECRET, t0);
    let stale = t0 + Duration::from_secs(121);
    l.handle_datagram(stale, c.addr, &c.conclusion_hs(cookie, sid).to_packet(0, 0));
    assert!(l.is_empty());
    assert_eq!(l.stats().bad_cookies, 1);
}

#[test]
fn conclusion_raises_a_request_and_accept_answers_with_negotiated_latency() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    c.latency_ms = 300;
    let (out, ev) = connect(&mut l, &c, t0, b"#!::r=live/cam,m=publish,token=abc");
    assert!(out.is_empty());
    let Event::Request { id, peer, stream } = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(*peer, c.addr);
    assert_eq!(stream.mode, Mode::Publish);
    assert_eq!(
        (stream.app.as_str(), stream.stream.as_str()),
        ("live", "cam")
    );
    assert_eq!(stream.query, "token=abc");
    let id = *id;
    // A repeated conclusion while undecided: no answer, no second request.
    let (out, ev) = connect(
        &mut l,
        &c,
        t0 + ms(250),
        b"#!::r=live/cam,m=publish,token=abc",
    );
    assert!(out.is_empty() && ev.is_empty());
    l.accept(id, t0);
    let out = drain(&mut l);
    let (_, hs) = handshake_of(&out[0]);
    let srt = hs.srt.unwrap();
    assert_eq!(
        (srt.recv_delay_ms, srt.send_delay_ms),
        (300, 300),
        "max(120, 300)"
    );
    assert!(srt.flags & OPT_TSBPDRCV != 0 && srt.flags & OPT_TLPKTDROP != 0);
    assert_eq!(hs.isn, c.isn, "libsrt checks the ISN echo");
    assert_eq!(l.conn_stats(id).unwrap().rcv_latency_ms, 300);
    // The conclusion again (our answer lost): the same answer, still one connection.
    l.handle_datagram(t0, c.addr, &c.induction(t0));
    let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
    l.handle_datagram(
        t0,
        c.addr,
        &c.conclusion_hs(cookie, b"#!::r=live/cam,m=publish")
            .to_packet(0, 0),
    );
    assert_eq!(drain(&mut l), out);
    assert!(events(&mut l).is_empty());
    assert_eq!(l.len(), 1);
}

fn reject_code(out: &[Transmit]) -> u32 {
    RejectReason::code_of_type(handshake_of(&out[0]).1.hs_type).expect("a rejection")
}

#[test]
fn protocol_rejections_carry_srt_codes() {
    let t0 = Instant::now();
    let bomb = [b'a'; 600];
    let cases: [(&[u8], u32); 6] = [
        (&bomb, 1400),
        (b"", 1400),
        (b"live", 1400),
        (b"#!::r=live/s,m=bidirectional", 1405),
        (b"#!::r=live/s,t=file", 1405),
        (b"delete:live/s", 1405),
    ];
    for (sid, code) in cases {
        let mut l = Listener::new(config(), SECRET, t0);
        let c = Caller::new("10.0.0.1:5000", t0);
        let (out, ev) = connect(&mut l, &c, t0, sid);
        assert_eq!(
            reject_code(&out),
            code,
            "{:?}",
            String::from_utf8_lossy(sid)
        );
        assert!(ev.is_empty());
        assert!(l.is_empty());
    }
    // Not HSv5.
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0);
    l.handle_datagram(t0, c.addr, &c.induction(t0));
    let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
    let mut hs = c.conclusion_hs(cookie, b"live/s");
    hs.version = 4;
    l.handle_datagram(t0, c.addr, &hs.to_packet(0, 0));
    assert_eq!(reject_code(&drain(&mut l)), 8);
    // File (stream) mode.
    let c = Caller::new("10.0.0.2:5000", t0);
    l.handle_datagram(t0, c.addr, &c.induction(t0));
    let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
    let mut hs = c.conclusion_hs(cookie, b"live/s");
    hs.srt.as_mut().unwrap().flags |= OPT_STREAM;
    l.handle_datagram(t0, c.addr, &hs.to_packet(0, 0));
    assert_eq!(reject_code(&drain(&mut l)), 12);
    // Another congestion controller.
    let c = Caller::new("10.0.0.3:5000", t0);
    l.handle_datagram(t0, c.addr, &c.induction(t0));
    let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
    let mut hs = c.conclusion_hs(cookie, b"live/s");
    hs.congestion = Some(b"file".to_vec());
    l.handle_datagram(t0, c.addr, &hs.to_packet(0, 0));
    assert_eq!(reject_code(&drain(&mut l)), 13);
}

#[test]
fn policy_rejection_is_final_and_repeated_conclusions_get_the_same_answer() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0);
    let (_, ev) = connect(&mut l, &c, t0, b"publish:live/s?token=bad");
    let Event::Request { id, .. } = ev[0] else {
        panic!()
    };
    l.reject(id, t0, RejectReason::Forbidden);
    let out = drain(&mut l);
    assert_eq!(reject_code(&out), 1403);
    assert_eq!(handshake_of(&out[0]).1.hs_type, 2403);
    assert!(matches!(
        events(&mut l)[..],
        [Event::Closed { id: i, reason: CloseReason::Local, .. }] if i == id
    ));
    // The caller repeats its conclusion: the same rejection, no new request.
    let (out, ev) = connect(&mut l, &c, t0 + ms(250), b"publish:live/s?token=bad");
    assert_eq!(reject_code(&out), 1403);
    assert!(ev.is_empty());
    assert!(l.is_empty());
}

#[test]
fn undecided_requests_time_out_with_a_rejection() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0);
    let (_, ev) = connect(&mut l, &c, t0, b"live/s");
    let Event::Request { id, .. } = ev[0] else {
        panic!()
    };
    let deadline = l.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(5));
    l.handle_timeout(deadline);
    assert_eq!(reject_code(&drain(&mut l)), 16);
    assert!(matches!(events(&mut l)[..], [Event::Closed { id: i, .. }] if i == id));
    assert!(l.is_empty());
}

#[test]
fn connection_limits_reject_with_resource() {
    let t0 = Instant::now();
    let cfg = ListenerConfig {
        max_per_ip: 2,
        max_conns: 3,
        ..config()
    };
    let mut l = Listener::new(cfg, SECRET, t0);
    for port in 1..=3 {
        let mut c = Caller::new(&format!("10.0.0.1:{port}"), t0);
        c.id = port;
        let (out, ev) = connect(&mut l, &c, t0, b"live/s");
        if port <= 2 {
            assert_eq!(ev.len(), 1);
        } else {
            assert_eq!(reject_code(&out), 3, "per-IP cap");
        }
    }
    let c = Caller::new("10.0.0.2:1", t0);
    assert_eq!(connect(&mut l, &c, t0, b"live/s").1.len(), 1);
    let c = Caller::new("10.0.0.3:1", t0);
    assert_eq!(
        reject_code(&connect(&mut l, &c, t0, b"live/s").0),
        3,
        "total cap"
    );
}

#[test]
fn encryption_rejections_badsecret_and_unsecure() {
    let t0 = Instant::now();
    let enc = ListenerConfig {
        passphrase: Some(PASS.to_vec()),
        ..config()
    };
    // Wrong passphrase.
    let mut l = Listener::new(enc.clone(), SECRET, t0);
    let c = Caller::new("10.0.0.1:5000", t0).with_key(b"not-the-passphrase", 16);
    assert_eq!(reject_code(&connect(&mut l, &c, t0, b"live/s").0), 10);
    assert!(l.is_empty());
    // No passphrase on the caller while we require one.
    let c = Caller::new("10.0.0.2:5000", t0);
    assert_eq!(reject_code(&connect(&mut l, &c, t0, b"live/s").0), 11);
    // A passphrase on the caller while we have none.
    let mut l = Listener::new(config(), SECRET, t0);
    let c = Caller::new("10.0.0.3:5000", t0).with_key(PASS, 32);
    assert_eq!(reject_code(&connect(&mut l, &c, t0, b"live/s").0), 11);
}

/// Publishing: in-order delivery at the TSBPD time, a NAK for a gap, the retransmission fills it,
/// ACKs advance, ACKACK gives an RTT, across the 31-bit sequence wrap.
#[test]
fn receive_path_acks_naks_and_delivers_in_order_at_play_time() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    c.latency_ms = 0; // ours (120 ms) wins
    let id = open(&mut l, &mut c, t0, b"#!::r=live/s,m=publish");
    let mut sent = Vec::new();
    let mut lost = None;
    for i in 0..32u8 {
        let now = t0 + ms(1 + u64::from(i));
        let payload = vec![i; 1316];
        let (seq, d) = c.data(now, &payload);
        sent.push(payload);
        if i == 10 {
            lost = Some((seq, now));
            continue;
        }
        l.handle_datagram(now, c.addr, &d);
    }
    let (lost_seq, lost_at) = lost.unwrap();
    let out = drain(&mut l);
    let naks = controls(&out, ctrl::NAK);
    assert_eq!(naks.len(), 1, "one immediate NAK");
    assert_eq!(
        parse_loss_list(&naks[0].1, 10).unwrap(),
        vec![(lost_seq, lost_seq)]
    );
    // Nothing is delivered before its play time (timestamp + 120 ms).
    assert!(payloads(&events(&mut l)).is_empty());
    // The ACK stops at the hole.
    l.handle_timeout(t0 + ms(40));
    let acks = controls(&drain(&mut l), ctrl::ACK);
    assert_eq!(acks.len(), 1);
    let (ack, full) = Ack::parse(&acks[0].1).unwrap();
    assert!(full);
    assert_eq!(ack.next, lost_seq);
    // The ACKACK makes an RTT sample of 4 ms.
    let ackack = c.control(t0 + ms(44), ctrl::ACKACK, acks[0].0.info, &[0; 4]);
    l.handle_datagram(t0 + ms(44), c.addr, &ackack);
    let rtt = l.conn_stats(id).unwrap().rtt_us;
    assert!(rtt < 100_000, "RTT moved toward the 4 ms sample: {rtt}");
    // The retransmission fills the hole; then the ACK covers everything.
    let re = c.data_at(lost_at, lost_seq, &sent[10], true);
    l.handle_datagram(t0 + ms(50), c.addr, &re);
    l.handle_timeout(t0 + ms(60));
    let acks = controls(&drain(&mut l), ctrl::ACK);
    assert_eq!(Ack::parse(&acks[0].1).unwrap().0.next, c.next_seq);
    // Play time of the first packet: its timestamp (1 ms) + 120 ms.
    l.handle_timeout(t0 + ms(120));
    assert!(payloads(&events(&mut l)).is_empty());
    l.handle_timeout(t0 + ms(121));
    assert_eq!(payloads(&events(&mut l)), sent[..1]);
    let mut got = Vec::new();
    let mut now = t0 + ms(121);
    while let Some(t) = l.poll_timeout().filter(|t| *t <= t0 + ms(200)) {
        now = t;
        l.handle_timeout(now);
        got.extend(payloads(&events(&mut l)));
    }
    assert!(now <= t0 + ms(200));
    assert_eq!(got, sent[1..]);
    let st = l.conn_stats(id).unwrap();
    assert_eq!(
        (st.pkts_lost, st.pkts_recv_rexmit, st.pkts_dropped),
        (1, 1, 0)
    );
    assert_eq!(st.pkts_recv, 32);
}

/// A packet that never comes is given up once the packets after it are due; the rest flow.
#[test]
fn too_late_packets_are_dropped_and_periodic_naks_repeat_until_then() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let (_, d) = c.data(t0 + ms(10), &[i; 100]);
        sent.push(vec![i; 100]);
        if i != 2 {
            l.handle_datagram(t0 + ms(10), c.addr, &d);
        }
    }
    let mut naks = 0;
    let mut got = Vec::new();
    while let Some(t) = l.poll_timeout().filter(|t| *t <= t0 + ms(300)) {
        l.handle_timeout(t);
        naks += controls(&drain(&mut l), ctrl::NAK).len();
        got.extend(payloads(&events(&mut l)));
    }
    assert!(naks >= 2, "periodic NAKs while waiting: {naks}");
    sent.remove(2);
    assert_eq!(got, sent);
    assert_eq!(l.conn_stats(id).unwrap().pkts_dropped, 1);
}

#[test]
fn encrypted_publish_round_trips_for_every_key_length() {
    for len in [16, 24, 32] {
        let t0 = Instant::now();
        let cfg = ListenerConfig {
            passphrase: Some(PASS.to_vec()),
            ..config()
        };
        let mut l = Listener::new(cfg, SECRET, t0);
        let mut c = Caller::new("10.0.0.1:5000", t0).with_key(PASS, len);
        let (_, ev) = connect(&mut l, &c, t0, b"publish:live/s");
        let Event::Request { id, .. } = ev[0] else {
            panic!("{ev:?}")
        };
        l.accept(id, t0);
        let (_, hs) = handshake_of(&drain(&mut l)[0]);
        assert_eq!(hs.km, c.km, "KMRSP echoes the caller's keying material");
        c.dest = id;
        let clear: Vec<u8> = (0..1316).map(|i| (i * 7) as u8).collect();
        let (_, d) = c.data(t0, &clear);
        assert!(
            !d.windows(16).any(|w| w == &clear[..16]),
            "the wire is not clear"
        );
        l.handle_datagram(t0, c.addr, &d);
        l.handle_timeout(t0 + ms(200));
        assert_eq!(payloads(&events(&mut l)), vec![clear]);
        assert_eq!(l.conn_stats(id).unwrap().key_len, len);
    }
}

/// A payload buffer handed back with `recycle` carries a later data packet (no allocation per
/// packet), holding exactly that packet's bytes, decrypted; the pool is bounded.
#[test]
fn recycled_payload_buffers_carry_later_packets() {
    for key_len in [0, 16] {
        let t0 = Instant::now();
        let cfg = ListenerConfig {
            passphrase: (key_len > 0).then(|| PASS.to_vec()),
            ..config()
        };
        let mut l = Listener::new(cfg, SECRET, t0);
        let mut c = Caller::new("10.0.0.1:5000", t0);
        if key_len > 0 {
            c = c.with_key(PASS, key_len);
        }
        open(&mut l, &mut c, t0, b"publish:live/s");
        // Handed-back buffers: a capacity no fresh payload buffer has, full of stale bytes.
        for _ in 0..8 {
            let mut stale = Vec::with_capacity(1400);
            stale.resize(1400, 0xee);
            l.recycle(stale);
        }
        let mut sent = Vec::new();
        for i in 0..16u32 {
            let now = t0 + ms(u64::from(i));
            let payload: Vec<u8> = (0..1316 - i as usize)
                .map(|b| (b as u32 * 31 + i) as u8)
                .collect();
            let (_, d) = c.data(now, &payload);
            l.handle_datagram(now, c.addr, &d);
            sent.push(payload);
        }
        l.handle_timeout(t0 + ms(200));
        let got: Vec<Vec<u8>> = events(&mut l)
            .into_iter()
            .filter_map(|e| match e {
                Event::Data { data, .. } => Some(data),
                _ => None,
            })
            .collect();
        assert_eq!(got, sent, "every packet's bytes, and only them");
        let reused = got.iter().filter(|d| d.capacity() == 1400).count();
        assert_eq!(reused, 8, "the 8 handed-back buffers carried packets");
        // The pool is bounded: a flood of handed-back buffers is not all kept.
        for _ in 0..10_000 {
            l.recycle(Vec::with_capacity(1316));
        }
        assert!(l.spare_len() <= 256);
        // A buffer larger than a datagram is not kept.
        let before = l.spare_len();
        l.handle_datagram(t0 + ms(20), c.addr, &c.data(t0 + ms(20), &[1; 1316]).1);
        l.recycle(Vec::with_capacity(1 << 20));
        assert_eq!(l.spare_len(), before - 1);
    }
}

/// Playing: our data packets, a NAK makes a retransmission with the R flag, an ACK empties the
/// buffer and gets an ACKACK; encrypted payloads decrypt with the caller's key.
#[test]
fn send_path_retransmits_on_nak_and_frees_on_ack() {
    let t0 = Instant::now();
    let cfg = ListenerConfig {
        passphrase: Some(PASS.to_vec()),
        ..config()
    };
    let mut l = Listener::new(cfg, SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0).with_key(PASS, 16);
    let id = open(&mut l, &mut c, t0, b"#!::r=live/s,m=request");
    let ts: Vec<u8> = (0..188 * 20).map(|i| (i % 256) as u8).collect();
    l.send(id, t0 + ms(5), &ts).unwrap();
    let out = drain(&mut l);
    let mut got = Vec::new();
    let mut seqs = Vec::new();
    for t in &out {
        let Packet::Data(h, body) = Packet::parse(&t.data).unwrap() else {
            panic!()
        };
        assert_eq!(h.dest, c.id);
        assert_eq!(h.key, 1);
        let mut body = body.to_vec();
        assert!(c.keys.as_ref().unwrap().apply(h.key, h.seq, &mut body));
        got.extend(body);
        seqs.push(h.seq);
    }
    assert_eq!(got, ts);
    assert_eq!(seqs, [c.isn, seq_add(c.isn, 1), seq_add(c.isn, 2)]);
    // NAK the middle one.
    let mut body = Vec::new();
    write_loss_list(&[(seqs[1], seqs[1])], &mut body);
    l.handle_datagram(
        t0 + ms(20),
        c.addr,
        &c.control(t0 + ms(20), ctrl::NAK, 0, &body),
    );
    let out = drain(&mut l);
    assert_eq!(out.len(), 1);
    let Packet::Data(h, _) = Packet::parse(&out[0].data).unwrap() else {
        panic!()
    };
    assert!(h.rexmit);
    assert_eq!(h.seq, seqs[1]);
    // The same NAK again at once (a flood) gets nothing; 10 ms later it is served again.
    let nak = c.control(t0 + ms(21), ctrl::NAK, 0, &body);
    for _ in 0..100 {
        l.handle_datagram(t0 + ms(21), c.addr, &nak);
    }
    assert!(drain(&mut l).is_empty());
    l.handle_datagram(t0 + ms(30), c.addr, &nak);
    assert_eq!(drain(&mut l).len(), 1);
    // A full ACK of everything: ACKACK back, buffer empty.
    let mut ack = Vec::new();
    Ack {
        next: seq_add(seqs[2], 1),
        rtt_us: 3000,
        rtt_var_us: 1000,
        avail: 8000,
        ..Ack::default()
    }
    .write(&mut ack);
    l.handle_datagram(
        t0 + ms(30),
        c.addr,
        &c.control(t0 + ms(30), ctrl::ACK, 7, &ack),
    );
    let out = drain(&mut l);
    let ackacks = controls(&out, ctrl::ACKACK);
    assert_eq!(ackacks[0].0.info, 7);
    let st = l.conn_stats(id).unwrap();
    assert_eq!(
        (st.snd_buffered, st.pkts_retransmitted, st.rtt_us),
        (0, 2, 3000)
    );
    // An ACK beyond what we sent is ignored.
    let mut bogus = Vec::new();
    write_loss_list(&[], &mut bogus);
    Ack {
        next: seq_add(seqs[2], 1000),
        ..Ack::default()
    }
    .write(&mut bogus);
    l.handle_datagram(
        t0 + ms(31),
        c.addr,
        &c.control(t0 + ms(31), ctrl::ACK, 8, &bogus),
    );
    assert_eq!(l.conn_stats(id).unwrap().snd_buffered, 0);
}

/// A player that never ACKs: the send buffer stays bounded (old packets leave, a DROPREQ says
/// so, `send` refuses when full) and silence ends the connection.
#[test]
fn a_peer_that_stops_acking_is_bounded_and_times_out() {
    let t0 = Instant::now();
    let cfg = ListenerConfig {
        max_bitrate: 1_000_000,
        ..config()
    };
    let mut l = Listener::new(cfg, SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"live/s");
    let chunk = vec![0x47u8; 1316];
    let mut full = 0;
    let mut now = t0;
    for i in 0..3000u64 {
        now = t0 + ms(i);
        if l.send(id, now, &chunk) == Err(SendFull) {
            full += 1;
        }
        if i % 500 == 0 {
            // Keep-alives from the peer, never an ACK.
            l.handle_datagram(now, c.addr, &c.control(now, ctrl::KEEPALIVE, 0, &[0; 4]));
        }
    }
    assert!(full > 0, "send refused once full");
    let st = l.conn_stats(id).unwrap();
    // 1 Mbit/s for (1 s + 1 s) is 189 packets of 1316 bytes.
    assert!(st.snd_buffered <= 189, "bounded: {}", st.snd_buffered);
    assert!(st.pkts_snd_dropped > 0);
    assert!(!controls(&drain(&mut l), ctrl::DROPREQ).is_empty());
    // Silence from the peer for 5 s: closed.
    while let Some(t) = l.poll_timeout() {
        if t > now + Duration::from_secs(10) {
            break;
        }
        l.handle_timeout(t);
        now = t;
        if !l.is_empty() {
            continue;
        }
        break;
    }
    assert!(l.is_empty());
    let closed = events(&mut l).into_iter().find_map(|e| match e {
        Event::Closed {
            id: i,
            reason,
            stats,
        } if i == id => Some((reason, stats)),
        _ => None,
    });
    let (reason, stats) = closed.expect("closed");
    assert_eq!(reason, CloseReason::Timeout);
    assert!(
        stats.pkts_sent > 0 && stats.pkts_snd_dropped > 0,
        "final counters: {stats:?}"
    );
}

/// The tail a caller sent before its SHUTDOWN (within the latency, not yet due) is delivered, in
/// order, before the close; a hole in it is given up and counted.
#[test]
fn shutdown_delivers_the_buffered_tail_before_closing() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let now = t0 + ms(10);
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let (_, d) = c.data(now, &[i; 100]);
        sent.push(d);
    }
    // The third packet is lost and never comes again.
    for (i, d) in sent.iter().enumerate() {
        if i != 2 {
            l.handle_datagram(now, c.addr, d);
        }
    }
    assert!(payloads(&events(&mut l)).is_empty(), "nothing due yet");
    l.handle_datagram(now, c.addr, &c.control(now, ctrl::SHUTDOWN, 0, &[0; 4]));
    let ev = events(&mut l);
    assert_eq!(
        payloads(&ev),
        vec![vec![0; 100], vec![1; 100], vec![3; 100], vec![4; 100]]
    );
    match ev.last() {
        Some(Event::Closed {
            id: i,
            reason: CloseReason::Shutdown,
            stats,
        }) => {
            assert_eq!(*i, id);
            assert_eq!(stats.pkts_dropped, 1, "the hole");
        }
        other => panic!("{other:?}"),
    }
}

/// A flood of inductions is answered up to a burst, then at a rate: the rest is dropped and
/// counted, so the answers cannot crowd out open connections' traffic; a repeat later is answered.
#[test]
fn an_induction_flood_is_answered_at_a_bounded_rate() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut answered = 0;
    for i in 0..5000u32 {
        let c = Caller::new(&format!("10.1.{}.{}:4000", i / 250, i % 250), t0);
        l.handle_datagram(t0, c.addr, &c.induction(t0));
        answered += drain(&mut l).len();
    }
    assert_eq!(answered, 100, "the burst");
    assert_eq!(l.stats().inductions, 5000);
    assert_eq!(l.stats().inductions_dropped, 4900);
    assert!(l.is_empty(), "no state for any of them");
    // 10 ms later: 10 more (1000 a second).
    let later = t0 + ms(10);
    let mut more = 0;
    for i in 0..50u32 {
        let c = Caller::new(&format!("10.2.0.{i}:4000"), t0);
        l.handle_datagram(later, c.addr, &c.induction(later));
        more += drain(&mut l).len();
    }
    assert!((9..=11).contains(&more), "{more}");
    // A caller that repeats its induction after the flood gets its cookie and connects.
    let mut c = Caller::new("10.3.0.1:4000", t0);
    open(&mut l, &mut c, t0 + ms(500), b"publish:live/s");
}

#[test]
fn keepalives_flow_and_shutdown_closes() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let mut now = t0;
    let mut wakeups = 0;
    while let Some(t) = l.poll_timeout().filter(|t| *t <= t0 + ms(2500)) {
        now = t;
        l.handle_timeout(now);
        wakeups += 1;
    }
    let kas = controls(&drain(&mut l), ctrl::KEEPALIVE);
    assert_eq!(kas.len(), 2, "one a second");
    assert!(
        wakeups <= 4,
        "an idle connection wakes for keep-alives only: {wakeups}"
    );
    l.handle_datagram(now, c.addr, &c.control(now, ctrl::SHUTDOWN, 0, &[0; 4]));
    assert!(matches!(
        events(&mut l)[..],
        [Event::Closed { id: i, reason: CloseReason::Shutdown, .. }] if i == id
    ));
    assert!(l.is_empty());
}

#[test]
fn packets_from_another_address_or_unknown_ids_are_dropped() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let (_, d) = c.data(t0, b"x");
    l.handle_datagram(t0, "10.6.6.6:5000".parse().unwrap(), &d);
    let mut shut = Vec::new();
    ControlHeader::new(ctrl::SHUTDOWN, 0, 0, id).write(&mut shut);
    l.handle_datagram(t0, "10.0.0.1:5001".parse().unwrap(), &shut);
    let mut unknown = Vec::new();
    ControlHeader::new(ctrl::SHUTDOWN, 0, 0, 0xEEEE).write(&mut unknown);
    l.handle_datagram(t0, c.addr, &unknown);
    assert_eq!(l.len(), 1);
    assert_eq!(l.stats().dropped, 3);
    assert_eq!(l.conn_stats(id).unwrap().pkts_recv, 0);
}

/// Random and truncated datagrams never panic, never allocate connections, never grow buffers
/// past their caps.
#[test]
fn garbage_never_panics() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let conc = c
        .conclusion_hs(1, b"#!::r=live/s,m=publish")
        .to_packet(0, 0);
    for i in 0..20_000u64 {
        let len = (rnd() % 200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        match i % 4 {
            // Aimed at our connection: a valid header shape, random body.
            0 if d.len() >= 16 => d[12..16].copy_from_slice(&id.to_be_bytes()),
            1 if d.len() >= 16 => {
                d[0] = 0x80 | (d[0] & 7);
                d[12..16].copy_from_slice(&id.to_be_bytes());
            }
            2 => {
                d = conc[..(rnd() as usize % conc.len())].to_vec();
            }
            _ => {}
        }
        l.handle_datagram(t0 + ms(i / 10), c.addr, &d);
        let _ = drain(&mut l);
        let _ = events(&mut l);
    }
    if let Some(st) = l.conn_stats(id) {
        assert!(st.rcv_buffered <= 8192);
    }
    assert!(l.len() <= 1);
}

/// A sender whose clock runs 1% slow: without the drift tracer the packets would play ever
/// earlier (40 ms early after 4 s); with it they stay within one correction window (10 ms of
/// drift per 1000 packets) of the agreed 120 ms.
#[test]
fn tsbpd_follows_a_drifting_peer_clock() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let mut delays = Vec::new();
    let mut pending: std::collections::VecDeque<(Instant, u8)> = Default::default();
    for i in 0..4000u64 {
        let now = t0 + ms(i);
        // The caller's clock: 0.99 ms per real millisecond.
        let their_now = t0 + Duration::from_micros(i * 990);
        let (_, d) = c.data(their_now, &[(i % 256) as u8]);
        l.handle_datagram(now, c.addr, &d);
        pending.push_back((now, (i % 256) as u8));
        l.handle_timeout(now);
        for p in payloads(&events(&mut l)) {
            let (sent, b) = pending.pop_front().unwrap();
            assert_eq!(p, [b]);
            delays.push(now.duration_since(sent));
        }
    }
    let last = *delays.last().unwrap();
    assert!(
        last >= ms(100) && last <= ms(130),
        "latency held near 120 ms: {last:?}"
    );
    assert_eq!(l.conn_stats(id).unwrap().pkts_dropped, 0);
}

/// A cached GOP handed over at once leaves paced: at most 32 packets back to back, then about
/// 3800 a second (twice the 20 Mbit/s buffers are sized for), each stamped when it leaves, and
/// the loop is woken for batches rather than for every packet.
#[test]
fn a_burst_is_paced_and_stamped_when_it_leaves() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"live/s");
    let gop = vec![0x47u8; 1316 * 1520];
    l.send(id, t0, &gop).unwrap();
    let data_count = |out: &[Transmit]| {
        out.iter()
            .filter_map(|t| match Packet::parse(&t.data).unwrap() {
                Packet::Data(h, _) => Some(h.timestamp),
                _ => None,
            })
            .collect::<Vec<u32>>()
    };
    let first = data_count(&drain(&mut l));
    assert_eq!(first.len(), 32);
    let mut stamps = first;
    let mut wakeups = 0;
    let mut now = t0;
    while stamps.len() < 1520 {
        now = l.poll_timeout().unwrap();
        assert!(
            now < t0 + Duration::from_secs(1),
            "all sent within a second"
        );
        l.handle_timeout(now);
        wakeups += 1;
        stamps.extend(data_count(&drain(&mut l)));
        // The player keeps acknowledging so it is not timed out; nothing else.
        if wakeups % 50 == 0 {
            l.handle_datagram(now, c.addr, &c.control(now, ctrl::KEEPALIVE, 0, &[0; 4]));
        }
    }
    let took = now.duration_since(t0);
    assert!(
        took >= ms(350) && took <= ms(450),
        "1488 paced packets at ~3800/s: {took:?}"
    );
    assert!(wakeups <= 1520 / 4, "woken per batch: {wakeups}");
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    assert!(stamps.last().unwrap() - stamps[0] >= 350_000);
    assert_eq!(l.conn_stats(id).unwrap().pkts_sent, 1520);
}

/// The source pauses right after a packet that was lost: no later packet reveals the gap, so the
/// last packet goes again (one probe per period) until an ACK covers it.
#[test]
fn a_lost_last_packet_is_probed_until_acknowledged() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"live/s");
    l.send(id, t0, &[0x47; 1316 * 3]).unwrap();
    assert_eq!(drain(&mut l).len(), 3);
    let mut probes = Vec::new();
    let mut now = t0;
    while now < t0 + ms(1000) {
        now = l.poll_timeout().unwrap();
        l.handle_timeout(now);
        for t in drain(&mut l) {
            if let Packet::Data(h, _) = Packet::parse(&t.data).unwrap() {
                assert!(h.rexmit);
                probes.push((now, h.seq));
            }
        }
    }
    // Unmeasured RTT (100 ms, var 50 ms): a probe every 400 ms, the last packet each time.
    assert_eq!(probes.len(), 2, "{probes:?}");
    assert!(probes.iter().all(|(_, s)| *s == seq_add(c.isn, 2)));
    assert_eq!(probes[0].0, t0 + ms(400));
    let mut ack = Vec::new();
    Ack {
        next: seq_add(c.isn, 3),
        ..Ack::default()
    }
    .write(&mut ack);
    l.handle_datagram(now, c.addr, &c.control(now, ctrl::ACK, 1, &ack));
    let end = now + ms(2000);
    while now < end {
        now = l.poll_timeout().unwrap().min(end);
        l.handle_timeout(now);
        let data = drain(&mut l)
            .iter()
            .filter(|t| matches!(Packet::parse(&t.data), Ok(Packet::Data(..))))
            .count();
        assert_eq!(data, 0, "nothing to probe once acknowledged");
        l.handle_datagram(now, c.addr, &c.control(now, ctrl::KEEPALIVE, 0, &[0; 4]));
    }
}

/// One packet stamped half an hour in the future (a glitch or a hostile publisher) neither stalls
/// the packets behind it nor moves the clock the others play by.
#[test]
fn a_timestamp_from_the_future_stalls_nothing() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    open(&mut l, &mut c, t0, b"publish:live/s");
    let mut delays = Vec::new();
    let mut pending: std::collections::VecDeque<(Instant, u8)> = Default::default();
    for i in 0..2000u64 {
        let now = t0 + ms(i);
        let stamp = if i == 500 {
            now + Duration::from_secs(1800)
        } else {
            now
        };
        let (_, d) = c.data(stamp, &[(i % 256) as u8]);
        l.handle_datagram(now, c.addr, &d);
        pending.push_back((now, (i % 256) as u8));
        l.handle_timeout(now);
        for p in payloads(&events(&mut l)) {
            let (sent, b) = pending.pop_front().unwrap();
            assert_eq!(p, [b]);
            delays.push(now.duration_since(sent));
        }
    }
    assert!(delays.len() >= 1870, "delivery went on: {}", delays.len());
    assert!(
        delays.iter().all(|d| *d <= ms(121)),
        "max {:?}",
        delays.iter().max()
    );
    assert!(*delays.last().unwrap() >= ms(119));
}

/// The publisher re-keys in the stream (libsrt does every 2^25 packets): its KMREQ is answered
/// with the same bytes as KMRSP, and packets under the new (odd) key decrypt.
#[test]
fn in_stream_key_refresh_is_answered_and_used() {
    let t0 = Instant::now();
    let cfg = ListenerConfig {
        passphrase: Some(PASS.to_vec()),
        ..config()
    };
    let mut l = Listener::new(cfg, SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0).with_key(PASS, 16);
    let id = open(&mut l, &mut c, t0, b"publish:live/s");
    let even = [0x11u8; 16];
    let odd = [0x22u8; 16];
    let km = build_km(PASS, [0x5A; 16], &even, Some(&odd)).unwrap();
    let mut h = ControlHeader::new(ctrl::EXT, 0, 0, id);
    h.subtype = CMD_KMREQ;
    let mut d = Vec::new();
    h.write(&mut d);
    d.extend_from_slice(&km);
    l.handle_datagram(t0 + ms(1), c.addr, &d);
    let out = drain(&mut l);
    let rsp = controls(&out, ctrl::EXT);
    assert_eq!(rsp.len(), 1);
    assert_eq!(
        Packet::parse(&out[0].data).map(|p| match p {
            Packet::Control(h, _) => h.subtype,
            _ => 0,
        }),
        Ok(CMD_KMRSP)
    );
    assert_eq!(rsp[0].1, km, "KMRSP echoes the keying material");
    // A packet under the odd key.
    let new_keys = Keys::from_km(&km, PASS).unwrap();
    let clear = b"after the key switch".to_vec();
    let seq = c.next_seq;
    let mut body = clear.clone();
    assert!(new_keys.apply(2, seq, &mut body));
    let mut pkt = Vec::new();
    DataHeader {
        seq,
        position: PP_SOLO,
        in_order: false,
        key: 2,
        rexmit: false,
        msgno: 1,
        timestamp: 2000,
        dest: id,
    }
    .write(&mut pkt);
    pkt.extend_from_slice(&body);
    l.handle_datagram(t0 + ms(2), c.addr, &pkt);
    l.handle_timeout(t0 + ms(300));
    assert_eq!(payloads(&events(&mut l)), vec![clear]);
    // A refresh under another passphrase is ignored (no answer, keys kept).
    let bad = build_km(b"someone-else's-pass", [1; 16], &even, None).unwrap();
    let mut d = Vec::new();
    h.write(&mut d);
    d.extend_from_slice(&bad);
    l.handle_datagram(t0 + ms(301), c.addr, &d);
    assert!(controls(&drain(&mut l), ctrl::EXT).is_empty());
}

#[test]
fn closing_from_our_side_sends_shutdown() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    let mut c = Caller::new("10.0.0.1:5000", t0);
    let id = open(&mut l, &mut c, t0, b"live/s");
    l.close(id, t0 + ms(5));
    let out = drain(&mut l);
    let shut = controls(&out, ctrl::SHUTDOWN);
    assert_eq!(shut.len(), 1);
    assert_eq!(shut[0].0.dest, c.id);
    assert!(matches!(
        events(&mut l)[..],
        [Event::Closed { id: i, reason: CloseReason::Local, .. }] if i == id
    ));
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

/// A client looping on fresh sockets with a bad stream id: every attempt is refused, but only
/// 20 refusals in ten seconds may be logged; the window then starts again.
#[test]
fn refusal_log_lines_are_bounded() {
    let t0 = Instant::now();
    let mut l = Listener::new(config(), SECRET, t0);
    for i in 0..200u32 {
        let mut c = Caller::new("10.0.0.1:5000", t0);
        c.id = 1000 + i;
        let (out, _) = connect(&mut l, &c, t0 + ms(u64::from(i)), b"nonsense");
        assert_eq!(reject_code(&out), 1400);
    }
    assert_eq!(l.stats().rejected, 200);
    // The 200 refusals above used up this window's 20 lines.
    assert!(!l.may_log(t0 + ms(9000)));
    let allowed = (0..100).filter(|_| l.may_log(t0 + ms(10_000))).count();
    assert_eq!(allowed, 20, "a new window, 20 lines again");
}

/// A player with a small MTU gets packets that fit it, in whole TS packets.
#[test]
fn payloads_fit_the_peer_mtu() {
    let t0 = Instant::now();
    for (mtu, size) in [(1500, 1316), (1000, 940), (100, 376)] {
        let mut l = Listener::new(config(), SECRET, t0);
        let c = Caller::new("10.0.0.1:5000", t0);
        l.handle_datagram(t0, c.addr, &c.induction(t0));
        let cookie = handshake_of(&drain(&mut l)[0]).1.cookie;
        let mut hs = c.conclusion_hs(cookie, b"live/s");
        hs.mtu = mtu;
        l.handle_datagram(t0, c.addr, &hs.to_packet(0, 0));
        let Some(Event::Request { id, .. }) = l.poll_event() else {
            panic!()
        };
        l.accept(id, t0);
        let _ = drain(&mut l);
        l.send(id, t0, &[0x47; 188 * 20]).unwrap();
        let lens: Vec<usize> = drain(&mut l)
            .iter()
            .map(|t| t.data.len() - HEADER_LEN)
            .collect();
        assert_eq!(lens[0], size, "mtu {mtu}");
        assert_eq!(lens.iter().sum::<usize>(), 188 * 20);
    }
}
