//! A str0m client (the browser's side) against a `WhepSession`, in memory on a fake clock:
//! offer, answer, ICE, DTLS, SRTP, media bit for bit, NACK and resend, PLI, consent expiry,
//! hostile datagrams and offers. Datagrams go as they are over "UDP", and over "ICE-TCP"
//! framed by `tcp_framing` and fed one byte at a time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::RawPacket;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::tcp_framing::{self, Deframer};
use super::*;
use crate::media::frame::{Codec, Frame, Track};
use crate::mux::flv_demux;

fn client_addr() -> SocketAddr {
    "127.0.0.2:50000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "127.0.0.1:8189".parse().unwrap()
}

pub(super) fn fixture(name: &str) -> Vec<Frame> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap();
    flv_demux::read_all(&data).unwrap().2
}

/// The H.264 frames of fixture.flv (sequence header first) and the Opus frames of
/// vp9_opus.flv, as one stream's packager sees them.
pub(super) fn h264_opus_units() -> (Packager, Vec<MediaUnit>, Vec<MediaUnit>) {
    let mut p = Packager::new();
    let mut video = Vec::new();
    for f in fixture("fixture.flv")
        .iter()
        .filter(|f| f.track == Track::Video)
    {
        video.extend(p.push(f));
    }
    let mut audio = Vec::new();
    for f in fixture("codecs/vp9_opus.flv")
        .iter()
        .filter(|f| f.track == Track::Audio)
    {
        audio.extend(p.push(f));
    }
    (p, video, audio)
}

/// Decides whether a server->client datagram is lost.
type DropFilter = Box<dyn FnMut(&[u8]) -> bool>;

/// The client's transport in the test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Net {
    Udp,
    /// RFC 4571 frames, delivered one byte at a time in both directions.
    TcpByteByByte,
}

pub(super) struct Pair {
    pub(super) now: Instant,
    pub(super) client: Rtc,
    client_deadline: Instant,
    pub(super) server: WhepSession,
    net: Net,
    pub(super) client_video: Mid,
    pub(super) client_audio: Mid,
    /// What the client received, in order, per mid.
    received: Vec<(Mid, Arc<[u8]>)>,
    /// The RTP time of each of `received`.
    received_times: Vec<MediaTime>,
    server_events: Vec<WebRtcEvent>,
    /// Drop this server->client datagram? (after the decision, it is gone)
    pub(super) drop_to_client: Option<DropFilter>,
    /// The client stops sending anything (consent test).
    client_silent: bool,
    /// Byte streams for the TCP mode.
    to_server: Deframer,
    to_client: Deframer,
    /// Every timer wake-up of the server, with the deadline it set after.
    server_wakeups: Vec<(Instant, Option<Instant>)>,
    /// STUN binding requests the client sent (to replay tampered copies).
    client_stun: Vec<Vec<u8>>,
    /// Every datagram the client sent.
    client_sent: Vec<Vec<u8>>,
    /// The sender reports and RTP headers the client received (with `enable_raw_packets`).
    pub(super) sender_reports: Vec<str0m::rtp::rtcp::SenderInfo>,
    pub(super) rtp_headers: Vec<str0m::rtp::RtpHeader>,
}

pub(super) fn client_config() -> RtcConfig {
    RtcConfig::new().set_crypto_provider(crypto::provider())
}

impl Pair {
    pub(super) fn new(net: Net, codecs: &StreamCodecs) -> Pair {
        Self::with_client(net, codecs, client_config())
    }

    fn with_client(net: Net, codecs: &StreamCodecs, config: RtcConfig) -> Pair {
        Self::with_media(net, codecs, config, true)
    }

    /// A client that offers video, and audio when `audio`.
    pub(super) fn with_media(
        net: Net,
        codecs: &StreamCodecs,
        config: RtcConfig,
        audio: bool,
    ) -> Pair {
        let now = Instant::now();
        let mut client = config.build(now);
        let cand = match net {
            Net::Udp => Candidate::host(client_addr(), "udp").unwrap(),
            Net::TcpByteByByte => Candidate::builder()
                .tcp()
                .host(client_addr())
                .tcptype(TcpType::Active)
                .build()
                .unwrap(),
        };
        client.add_local_candidate(cand);
        let mut api = client.sdp_api();
        let client_video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let client_audio = if audio {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None)
        } else {
            Mid::from("none")
        };
        let (offer, pending) = api.apply().unwrap();
        let (server, answer) = WhepSession::accept(
            &offer.to_sdp_string(),
            &SessionConfig::default(),
            &[server_addr()],
            codecs,
            now,
        )
        .unwrap();
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        Pair {
            now,
            client,
            client_deadline: now,
            server,
            net,
            client_video,
            client_audio,
            received: Vec::new(),
            received_times: Vec::new(),
            server_events: Vec::new(),
            drop_to_client: None,
            client_silent: false,
            to_server: Deframer::new(),
            to_client: Deframer::new(),
            server_wakeups: Vec::new(),
            client_stun: Vec::new(),
            client_sent: Vec::new(),
            sender_reports: Vec::new(),
            rtp_headers: Vec::new(),
        }
    }

    fn proto(&self) -> Protocol {
        match self.net {
            Net::Udp => Protocol::Udp,
            Net::TcpByteByByte => Protocol::Tcp,
        }
    }

    /// Moves every pending datagram both ways until neither side has anything to send.
    pub(super) fn shuttle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            // Client -> server.
            loop {
                match self.client.poll_output().unwrap() {
                    Output::Timeout(t) => {
                        self.client_deadline = t;
                        break;
                    }
                    Output::Transmit(t) => {
                        moved = true;
                        assert_eq!(t.destination, server_addr());
                        let bytes: Vec<u8> = t.contents.into();
                        if bytes.first() == Some(&0) && bytes.get(1) == Some(&1) {
                            self.client_stun.push(bytes.clone());
                        }
                        self.client_sent.push(bytes.clone());
                        if self.client_silent {
                            continue;
                        }
                        for packet in self.carry(bytes, true) {
                            let proto = match self.net {
                                Net::Udp => Proto::Udp,
                                Net::TcpByteByByte => Proto::Tcp,
                            };
                            self.server.handle_datagram(
                                self.now,
                                proto,
                                t.source,
                                t.destination,
                                &packet,
                            );
                        }
                    }
                    Output::Event(e) => match e {
                        Event::MediaData(m) => {
                            self.received.push((m.mid, m.data));
                            self.received_times.push(m.time);
                        }
                        Event::RawPacket(raw) => match *raw {
                            RawPacket::RtcpRx(Rtcp::SenderReport(sr)) => {
                                self.sender_reports.push(sr.sender_info)
                            }
                            RawPacket::RtpRx(h, _) => self.rtp_headers.push(h),
                            _ => {}
                        },
                        _ => {}
                    },
                }
            }
            // Server -> client.
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(t.source, server_addr());
                assert_eq!(t.destination, client_addr());
                let expected = match self.net {
                    Net::Udp => Proto::Udp,
                    Net::TcpByteByByte => Proto::Tcp,
                };
                assert_eq!(t.proto, expected);
                if let Some(drop) = self.drop_to_client.as_mut() {
                    if drop(&t.contents) {
                        continue;
                    }
                }
                for packet in self.carry(t.contents, false) {
                    let input = Input::Receive(
                        self.now,
                        Receive {
                            proto: self.proto(),
                            source: t.source,
                            destination: t.destination,
                            contents: packet.as_slice().try_into().unwrap(),
                        },
                    );
                    self.client.handle_input(input).unwrap();
                }
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the two sides never went quiet");
    }

    /// One datagram across the test's transport: as is over UDP; over TCP framed, then fed to
    /// the receiver's deframer one byte at a time.
    fn carry(&mut self, bytes: Vec<u8>, to_server: bool) -> Vec<Vec<u8>> {
        if self.net == Net::Udp {
            return vec![bytes];
        }
        let framed = tcp_framing::frame(&bytes).unwrap();
        let d = if to_server {
            &mut self.to_server
        } else {
            &mut self.to_client
        };
        let mut out = Vec::new();
        for b in &framed {
            d.push(std::slice::from_ref(b));
            while let Some(p) = d.next_packet().unwrap() {
                out.push(p);
            }
        }
        assert_eq!(out.len(), 1);
        out
    }

    /// Advances the clock to the earlier of the two deadlines and fires it.
    pub(super) fn tick(&mut self) {
        self.shuttle();
        let server_deadline = self.server.next_deadline();
        let next = server_deadline.map_or(self.client_deadline, |s| s.min(self.client_deadline));
        // A test may have moved the clock past a deadline (frames 40 ms apart): fire it late.
        self.now = next.max(self.now);
        if server_deadline.is_some_and(|s| s <= self.now) {
            self.server.handle_timeout(self.now);
            self.server_wakeups
                .push((self.now, self.server.next_deadline()));
        }
        if self.client_deadline <= self.now {
            self.client.handle_input(Input::Timeout(self.now)).unwrap();
        }
        self.shuttle();
    }

    /// Moves the clock to `t`, firing every deadline on the way at its own time.
    pub(super) fn advance_to(&mut self, t: Instant) {
        for i in 0.. {
            assert!(i < 100_000, "the timers never passed {t:?}");
            self.shuttle();
            let server = self.server.next_deadline().filter(|d| *d <= t);
            let client = Some(self.client_deadline).filter(|d| *d <= t);
            let Some(next) = [server, client].into_iter().flatten().min() else {
                break;
            };
            self.now = next.max(self.now);
            if server.is_some_and(|s| s <= self.now) {
                self.server.handle_timeout(self.now);
            }
            if client.is_some_and(|c| c <= self.now) {
                self.client.handle_input(Input::Timeout(self.now)).unwrap();
            }
        }
        self.now = t.max(self.now);
        self.shuttle();
    }

    /// Ticks until `done` or `limit` of fake time passes.
    pub(super) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Pair) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }

    pub(super) fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(5), |p| {
            p.server.is_connected() && p.client.is_connected()
        });
        assert!(ok, "no connection: {:?}", self.server_events);
        assert_eq!(self.server_events, [WebRtcEvent::Connected]);
        self.server_events.clear();
    }

    pub(super) fn send(&mut self, unit: &MediaUnit) {
        self.server.send(unit, self.now);
        self.shuttle();
    }

    pub(super) fn received_on(&self, mid: Mid) -> Vec<&[u8]> {
        self.received
            .iter()
            .filter(|(m, _)| *m == mid)
            .map(|(_, d)| &d[..])
            .collect()
    }

    /// What arrived on `mid`, each with its RTP time in milliseconds.
    pub(super) fn received_timed(&self, mid: Mid) -> Vec<(f64, &[u8])> {
        self.received
            .iter()
            .zip(&self.received_times)
            .filter(|((m, _), _)| *m == mid)
            .map(|((_, d), t)| (t.as_seconds() * 1000.0, &d[..]))
            .collect()
    }
}

/// The first keyframe's position, and the frames from there on spaced by their own time.
fn play(
    pair: &mut Pair,
    video: &[MediaUnit],
    audio: &[MediaUnit],
    n: usize,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut sent_v = Vec::new();
    let mut sent_a = Vec::new();
    for (i, v) in video.iter().take(n).enumerate() {
        pair.send(v);
        sent_v.push(v.data.to_vec());
        if let Some(a) = audio.get(i) {
            pair.send(a);
            sent_a.push(a.data.to_vec());
        }
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
    (sent_v, sent_a)
}

fn is_annex_b_keyframe_with_parameter_sets(au: &[u8]) -> bool {
    // Start code, then SPS (7), ..., PPS (8), ..., IDR (5).
    let types: Vec<u8> = au
        .windows(5)
        .filter(|w| w[..4] == [0, 0, 0, 1])
        .map(|w| w[4] & 0x1f)
        .collect();
    types.first() == Some(&7) && types.contains(&8) && types.contains(&5)
}

fn media_roundtrip(net: Net) {
    let (packager, video, audio) = h264_opus_units();
    let codecs = packager.codecs().clone();
    assert_eq!(codecs.video, Some(Codec::Avc));
    assert_eq!(codecs.audio, Some(Codec::Opus));
    // fixture.flv is High profile: profile_idc 100.
    assert_eq!(codecs.h264_profile_level_id.map(|p| p >> 16), Some(100));
    assert!(video[0].key && is_annex_b_keyframe_with_parameter_sets(&video[0].data));

    let mut pair = Pair::new(net, &codecs);
    // Before the connection, units are dropped and counted, not queued.
    pair.server.send(&video[0], pair.now);
    assert_eq!(pair.server.stats().frames_dropped, 1);
    assert!(pair.server.poll_transmit().is_none());
    pair.connect();

    // Video starts at a keyframe: a P frame first is dropped.
    let p_frame = video.iter().find(|u| !u.key).unwrap();
    pair.send(p_frame);
    assert_eq!(pair.server.stats().frames_dropped, 2);

    let (sent_v, sent_a) = play(&mut pair, &video, &audio, 60);
    pair.run_until(Duration::from_secs(1), |_| false);
    let got_v = pair.received_on(pair.client_video);
    let got_a = pair.received_on(pair.client_audio);
    assert_eq!(got_v.len(), sent_v.len(), "video frames");
    for (i, (g, s)) in got_v.iter().zip(&sent_v).enumerate() {
        assert_eq!(*g, &s[..], "video frame {i}");
    }
    assert!(is_annex_b_keyframe_with_parameter_sets(got_v[0]));
    assert_eq!(got_a.len(), sent_a.len(), "opus packets");
    for (g, s) in got_a.iter().zip(&sent_a) {
        assert_eq!(*g, &s[..]);
    }
    // str0m's counters arrive with its stats interval.
    pair.run_until(Duration::from_secs(2), |_| false);
    let st = pair.server.stats().clone();
    assert_eq!(st.frames_sent, (sent_v.len() + sent_a.len()) as u64);
    let payload: usize = sent_v.iter().chain(&sent_a).map(|d| d.len()).sum();
    assert!(st.packets >= st.frames_sent, "{st:?}");
    assert!(st.bytes as usize >= payload / 2, "{st:?}");
}

#[test]
fn h264_and_opus_arrive_bit_for_bit_over_udp() {
    media_roundtrip(Net::Udp);
}

#[test]
fn h264_and_opus_arrive_bit_for_bit_over_ice_tcp_byte_by_byte() {
    media_roundtrip(Net::TcpByteByByte);
}

#[test]
fn timers_move_forward_while_idle() {
    let (packager, _, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    let start = pair.now;
    pair.run_until(Duration::from_secs(5), |_| false);
    let wakeups: Vec<_> = pair
        .server_wakeups
        .iter()
        .filter(|(t, _)| *t > start)
        .collect();
    assert!(!wakeups.is_empty(), "no timer fired in 5 s");
    // No busy loop: a few str0m ticks a second, not thousands.
    assert!(wakeups.len() < 500, "{} wake-ups in 5 s", wakeups.len());
    for (t, next) in wakeups {
        let next = next.expect("a live session has a deadline");
        assert!(next >= *t);
    }
    // The client's binding requests keep consent: still connected.
    assert!(pair.server.is_connected());
}

#[test]
fn a_lost_packet_is_nacked_and_resent() {
    let (packager, video, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    // Send the first keyframe (several packets) whole, then lose the 2nd RTP packet of the
    // next big frame.
    let key = &video[0];
    assert!(key.data.len() > 3000, "the keyframe spans packets");
    pair.send(key);
    pair.now += Duration::from_millis(40);
    let big = video[1..]
        .iter()
        .position(|u| u.data.len() > 2500)
        .map(|i| i + 1)
        .expect("a multi-packet frame");
    for u in &video[1..big] {
        pair.send(u);
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
    let mut seen = 0;
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    let d2 = dropped.clone();
    pair.drop_to_client = Some(Box::new(move |d: &[u8]| {
        // An RTP packet (version 2; RTCP's packet types 200..=207 read as 72..=79 here) of
        // the video payload type.
        let rtp = d.len() > 12 && d[0] >> 6 == 2 && !(64..96).contains(&(d[1] & 0x7f));
        if rtp && d2.get() == 0 {
            seen += 1;
            if seen == 2 {
                d2.set(1);
                return true;
            }
        }
        false
    }));
    pair.send(&video[big]);
    // The client NACKs, we resend from the history, the frame completes.
    pair.run_until(Duration::from_secs(3), |_| false);
    assert_eq!(dropped.get(), 1, "the test dropped one packet");
    let got = pair.received_on(pair.client_video);
    assert!(
        got.iter().any(|g| *g == &video[big].data[..]),
        "the frame with the lost packet arrived whole"
    );
    assert!(pair.server.stats().nacks >= 1, "{:?}", pair.server.stats());
}

#[test]
fn a_pli_surfaces_as_a_keyframe_request() {
    let (packager, video, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    pair.send(&video[0]);
    pair.tick();
    let mid = pair.client_video;
    pair.client
        .writer(mid)
        .expect("the client's video writer")
        .request_keyframe(None, KeyframeRequestKind::Pli)
        .unwrap();
    pair.run_until(Duration::from_secs(1), |p| !p.server_events.is_empty());
    assert_eq!(
        pair.server_events,
        [WebRtcEvent::KeyframeRequest(KeyframeKind::Pli)]
    );
    pair.run_until(Duration::from_secs(2), |_| false);
    assert!(pair.server.stats().plis >= 1);
}

#[test]
fn consent_expiry_closes_the_session() {
    let (packager, _, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    pair.client_silent = true;
    let silent_from = pair.now;
    let closed = pair.run_until(Duration::from_secs(60), |p| p.server.is_closed());
    assert!(closed, "still open after 60 s of silence");
    let after = pair.now - silent_from;
    let cfg = SessionConfig::default();
    assert!(
        after >= Duration::from_secs(5),
        "closed too early: {after:?}"
    );
    assert!(
        after <= cfg.consent_timeout + Duration::from_secs(1),
        "{after:?}"
    );
    assert!(matches!(
        pair.server_events.as_slice(),
        [WebRtcEvent::Closed { reason }] if reason.contains("consent")
    ));
    assert_eq!(pair.server.next_deadline(), None);
    assert!(pair.server.poll_transmit().is_none());
}

#[test]
fn no_connection_in_time_closes_the_session() {
    let (packager, _, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.client_silent = true;
    let closed = pair.run_until(Duration::from_secs(30), |p| p.server.is_closed());
    assert!(closed);
    assert!(
        pair.now
            <= Instant::now() + SessionConfig::default().connect_timeout + Duration::from_secs(1)
    );
    assert!(matches!(
        pair.server_events.as_slice(),
        [WebRtcEvent::Closed { reason }] if reason.contains("did not complete")
    ));
}

#[test]
fn garbage_and_wrong_credentials_change_nothing() {
    let (packager, video, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    // Let the client send its first binding requests, but keep them from the server.
    pair.client_silent = true;
    pair.tick();
    pair.client_silent = false;
    let stranger: SocketAddr = "127.0.0.9:4000".parse().unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 3],
        vec![0x80; 1200],
        vec![22; 100],
        (0..=255).collect(),
    ];
    // Every prefix of a valid-looking STUN header.
    let stun_head = [
        0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 6, 0, 4,
    ];
    for n in 0..stun_head.len() {
        junk.push(stun_head[..n].to_vec());
    }
    let before = pair.server.next_deadline();
    let check_quiet = |pair: &mut Pair| {
        assert!(pair.server.poll_transmit().is_none());
        assert!(pair.server.poll_event().is_none());
        assert_eq!(pair.server.next_deadline(), before);
        assert!(!pair.server.is_connected() && !pair.server.is_closed());
    };
    for j in &junk {
        for from in [client_addr(), stranger] {
            assert!(!pair.server.accepts(Proto::Udp, from, server_addr(), j));
            pair.server
                .handle_datagram(pair.now, Proto::Udp, from, server_addr(), j);
        }
    }
    check_quiet(&mut pair);

    // A real binding request with its integrity broken, and one from a stranger with another
    // session's ufrag: no answer, no state.
    let real = pair
        .client_stun
        .first()
        .cloned()
        .expect("a client binding request");
    assert_eq!(
        stun_username_fragment(&real),
        Some(pair.server.local_ufrag())
    );
    let mut tampered = real.clone();
    let last = tampered.len() - 30; // inside MESSAGE-INTEGRITY, before FINGERPRINT
    tampered[last] ^= 0x55;
    let mut other_ufrag = real.clone();
    let at = other_ufrag
        .windows(pair.server.local_ufrag().len())
        .position(|w| w == pair.server.local_ufrag().as_bytes())
        .unwrap();
    other_ufrag[at] ^= 0x01;
    for m in [&tampered, &other_ufrag] {
        for from in [client_addr(), stranger] {
            assert!(!pair.server.accepts(Proto::Udp, from, server_addr(), m));
            pair.server
                .handle_datagram(pair.now, Proto::Udp, from, server_addr(), m);
        }
    }
    check_quiet(&mut pair);
    // Frames before the connection are dropped, not queued.
    pair.server.send(&video[0], pair.now);
    assert!(pair.server.poll_transmit().is_none());

    // The untouched request still works: the session was not disturbed.
    pair.connect();
    // And after the connection, garbage from the peer's own address is ignored too.
    for j in &junk {
        pair.server
            .handle_datagram(pair.now, Proto::Udp, client_addr(), server_addr(), j);
    }
    assert!(pair.server.is_connected());
}

fn offer_from(config: RtcConfig) -> String {
    let mut client = config.build(Instant::now());
    client.add_local_candidate(Candidate::host(client_addr(), "udp").unwrap());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.apply().unwrap().0.to_sdp_string()
}

fn h264_codecs() -> StreamCodecs {
    StreamCodecs {
        video: Some(Codec::Avc),
        h264_profile_level_id: Some(0x64001f),
        audio: Some(Codec::Aac),
        b_frames: false,
    }
}

fn accept(offer: &str, codecs: &StreamCodecs) -> Result<String, String> {
    WhepSession::accept(
        offer,
        &SessionConfig::default(),
        &[server_addr()],
        codecs,
        Instant::now(),
    )
    .map(|(_, answer)| answer)
    .map_err(|e| e.to_string())
}

#[test]
fn bad_offers_have_a_reason() {
    let big = "v=0\r\n".repeat(64 * 1024 / 5 + 1);
    assert_eq!(
        accept(&big, &h264_codecs()).unwrap_err(),
        format!(
            "SDP offer is too large ({} bytes; the limit is 65536)",
            big.len()
        )
    );
    let e = accept("hello", &h264_codecs()).unwrap_err();
    assert!(e.starts_with("SDP offer is not valid: "), "{e}");
    let e = accept("", &h264_codecs()).unwrap_err();
    assert!(e.starts_with("SDP offer is not valid: "), "{e}");

    let vp8_only = offer_from(
        client_config()
            .clear_codecs()
            .enable_vp8(true)
            .enable_opus(true, false),
    );
    assert_eq!(
        accept(&vp8_only, &h264_codecs()).unwrap_err(),
        "the offer has no video codec this stream can send (stream: H.264; offer: VP8)"
    );
    // An AAC-only stream has nothing to send yet.
    let audio_only = StreamCodecs {
        audio: Some(Codec::Aac),
        ..StreamCodecs::default()
    };
    let e = accept(&offer_from(client_config()), &audio_only).unwrap_err();
    assert!(
        e.starts_with("the offer has no codec this stream can send (stream: AAC; "),
        "{e}"
    );

    // A good offer: an ICE-lite answer with our candidates, UDP and TCP passive.
    let (session, answer) = WhepSession::accept(
        &offer_from(client_config()),
        &SessionConfig::default(),
        &[server_addr()],
        &h264_codecs(),
        Instant::now(),
    )
    .unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("127.0.0.1 8189 typ host"), "{answer}");
    assert!(answer.contains("tcptype passive"), "{answer}");
    assert!(answer.contains("H264/90000"), "{answer}");
    // An AAC stream: the audio m-line is answered (a valid answer needs a codec on it) but
    // nothing is sent on it.
    assert!(answer.contains("opus/48000"), "{answer}");
    assert!(session.sends(UnitKind::Video) && !session.sends(UnitKind::Audio));
    str0m::change::SdpAnswer::from_sdp_string(&answer).expect("str0m reads our answer");
}

#[test]
fn offers_are_fuzzed_without_panics() {
    let good = offer_from(client_config());
    let lines: Vec<&str> = good.split("\r\n").collect();
    // Drop each line in turn, and cut the offer at every 7th byte.
    for skip in 0..lines.len() {
        let o: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        let _ = accept(&o.join("\r\n"), &h264_codecs());
    }
    for cut in (0..good.len()).step_by(13) {
        if good.is_char_boundary(cut) {
            let _ = accept(&good[..cut], &h264_codecs());
        }
    }
}

#[test]
fn packager_keeps_parameter_sets_and_drops_auds() {
    let frames = fixture("fixture.flv");
    let mut p = Packager::new();
    // A picture before the sequence header cannot be converted.
    let first_pic = frames
        .iter()
        .find(|f| f.track == Track::Video && !f.config)
        .unwrap();
    assert!(p.push(first_pic).is_none());
    let units: Vec<MediaUnit> = frames.iter().filter_map(|f| p.push(f)).collect();
    assert!(units.iter().all(|u| u.kind == UnitKind::Video));
    let keys: Vec<&MediaUnit> = units.iter().filter(|u| u.key).collect();
    assert_eq!(keys.len(), 5, "fixtures.txt: 5 keyframes");
    for k in keys {
        assert!(is_annex_b_keyframe_with_parameter_sets(&k.data));
    }
    for u in units.iter().filter(|u| !u.key) {
        assert!(!is_annex_b_keyframe_with_parameter_sets(&u.data));
        assert!(u.data.starts_with(&[0, 0, 0, 1]));
    }
    // fixtures.txt: has_b_frames=2.
    assert!(p.codecs().b_frames);
    // AAC audio is not sent (the bridge's hook), but the stream's codec is known.
    assert_eq!(p.codecs().audio, Some(Codec::Aac));
    assert_eq!(p.codecs().describe(), "H.264 + AAC");
}

/// An FLV H.264 picture of one slice NAL unit whose header byte is `nal_header` (nal_ref_idc in
/// bits 5-6, the type below), decoded at `dts` ms and shown `cts` ms later.
fn avc_picture(dts: u32, cts: i32, key: bool, nal_header: u8) -> Frame {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 1];
    body.extend_from_slice(&cts.to_be_bytes()[1..]);
    let nal = [nal_header, 0x9a, 0x02, 0x0c, 0x40];
    body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    body.extend_from_slice(&nal);
    let f = Frame::parse(9, dts, bytes::Bytes::from(body)).unwrap();
    assert_eq!((f.key, f.cts, f.config), (key, cts, false));
    f
}

/// A packager primed with fixture.flv's H.264 sequence header (4-byte NAL lengths).
fn avc_packager() -> Packager {
    let mut p = Packager::new();
    let config = fixture("fixture.flv")
        .into_iter()
        .find(|f| f.track == Track::Video && f.config)
        .unwrap();
    assert!(p.push(&config).is_none());
    p
}

const IDR: u8 = 0x65; // nal_ref_idc 3, type 5
const P_REF: u8 = 0x41; // nal_ref_idc 2, type 1
const B_NONREF: u8 = 0x01; // nal_ref_idc 0, type 1

/// The presentation times of the units a packager sends for `frames`.
fn sent_pts(p: &mut Packager, frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| p.push(f))
        .map(|u| u.pts_ms)
        .collect()
}

#[test]
fn b_frames_are_dropped_and_the_rest_goes_in_presentation_order() {
    // x264 -bf 2 -b-pyramid none at 25 fps, in decode order: I P B B P B B | I P B B.
    let gop = |t0: u32| {
        vec![
            avc_picture(t0, 80, true, IDR),             // shown at t0+80
            avc_picture(t0 + 40, 160, false, P_REF),    // t0+200
            avc_picture(t0 + 80, 40, false, B_NONREF),  // t0+120
            avc_picture(t0 + 120, 40, false, B_NONREF), // t0+160
            avc_picture(t0 + 160, 160, false, P_REF),   // t0+320
            avc_picture(t0 + 200, 40, false, B_NONREF), // t0+240
            avc_picture(t0 + 240, 40, false, B_NONREF), // t0+280
        ]
    };
    let mut p = avc_packager();
    let frames: Vec<Frame> = gop(0).into_iter().chain(gop(280)).collect();
    assert_eq!(sent_pts(&mut p, &frames), [80, 200, 320, 360, 480, 600]);
    assert_eq!(
        p.reorder_drops(),
        ReorderDrops {
            pictures: 8,
            references: 0
        }
    );
    assert!(p.codecs().b_frames);
}

#[test]
fn a_stream_without_b_frames_loses_nothing() {
    let mut p = avc_packager();
    // Composition offsets without reordering (some encoders always set one) are not B-frames.
    let frames: Vec<Frame> = (0..60u32)
        .map(|i| {
            avc_picture(
                i * 40,
                80,
                i % 25 == 0,
                if i % 25 == 0 { IDR } else { P_REF },
            )
        })
        .collect();
    let pts = sent_pts(&mut p, &frames);
    assert_eq!(pts, (0..60u64).map(|i| i * 40 + 80).collect::<Vec<_>>());
    assert_eq!(p.reorder_drops(), ReorderDrops::default());
    // A keyframe starts over: a publisher whose clock went back is still played.
    let back = [
        avc_picture(0, 0, true, IDR),
        avc_picture(40, 0, false, P_REF),
    ];
    assert_eq!(sent_pts(&mut p, &back), [0, 40]);
}

#[test]
fn reference_b_frames_are_dropped_and_counted() {
    // -bf 3 with b-pyramid: I P Bref b b, where the middle B (nal_ref_idc 2) is a reference.
    let frames = [
        avc_picture(0, 80, true, IDR),         // shown at 80
        avc_picture(40, 200, false, P_REF),    // 240
        avc_picture(80, 80, false, P_REF),     // 160: the reference B
        avc_picture(120, 0, false, B_NONREF),  // 120
        avc_picture(160, 40, false, B_NONREF), // 200
        avc_picture(200, 200, false, P_REF),   // 400
    ];
    let mut p = avc_packager();
    assert_eq!(sent_pts(&mut p, &frames), [80, 240, 400]);
    assert_eq!(
        p.reorder_drops(),
        ReorderDrops {
            pictures: 3,
            references: 1
        }
    );
}

#[test]
fn the_fixtures_b_frames_leave_pictures_in_presentation_order() {
    // fixture.flv: x264 with B-frames (fixtures.txt: has_b_frames=2).
    let frames = fixture("fixture.flv");
    let pictures = frames
        .iter()
        // AVCPacketType 1: pictures (not the sequence header, nor the end of sequence).
        .filter(|f| f.track == Track::Video && f.data.get(1) == Some(&1))
        .count() as u64;
    let mut p = Packager::new();
    let units: Vec<MediaUnit> = frames.iter().filter_map(|f| p.push(f)).collect();
    let drops = p.reorder_drops();
    assert!(drops.pictures > 0);
    assert_eq!(units.len() as u64 + drops.pictures, pictures);
    let mut last = 0;
    for u in &units {
        assert!(u.key || u.pts_ms >= last, "{} after {last}", u.pts_ms);
        last = u.pts_ms;
    }
}

#[test]
fn mutated_datagrams_from_the_viewer_do_not_break_the_session() {
    let (packager, video, audio) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    play(&mut pair, &video, &audio, 30);
    // Five seconds: without TWCC feedback the client's RTCP is a receiver report a second or so.
    pair.run_until(Duration::from_secs(5), |_| false);
    let sent = std::mem::take(&mut pair.client_sent);
    assert!(
        sent.len() > 10,
        "STUN, DTLS and RTCP from the client: {}",
        sent.len()
    );
    let mut fed = 0;
    for d in &sent {
        // Flip one bit at a spread of positions, and cut at a few lengths.
        for pos in (0..d.len()).step_by(7) {
            let mut m = d.clone();
            m[pos] ^= 1 << (pos % 8);
            pair.server
                .handle_datagram(pair.now, Proto::Udp, client_addr(), server_addr(), &m);
            fed += 1;
        }
        for cut in [1, 4, 12, 13, d.len() / 2] {
            if cut < d.len() {
                pair.server.handle_datagram(
                    pair.now,
                    Proto::Udp,
                    client_addr(),
                    server_addr(),
                    &d[..cut],
                );
                fed += 1;
            }
        }
        pair.shuttle();
    }
    assert!(fed > 100);
    // Media still flows after all of it.
    let before = pair.received_on(pair.client_video).len();
    let next_key = video.iter().skip(30).find(|u| u.key).unwrap();
    pair.send(next_key);
    pair.run_until(Duration::from_secs(1), |_| false);
    assert!(pair.server.is_connected(), "{:?}", pair.server_events);
    assert_eq!(pair.received_on(pair.client_video).len(), before + 1);
}

/// The video of a fixture through a session: what the client gets, against what was sent.
fn video_roundtrip(file: &str, codec: Codec) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut p = Packager::new();
    let video: Vec<MediaUnit> = fixture(file)
        .iter()
        .filter(|f| f.track == Track::Video)
        .filter_map(|f| p.push(f))
        .collect();
    assert_eq!(p.codecs().video, Some(codec));
    assert!(video[0].key);
    let mut pair = Pair::new(Net::Udp, p.codecs());
    pair.connect();
    let (sent, _) = play(&mut pair, &video, &[], 30);
    assert!(sent.len() >= 10);
    pair.run_until(Duration::from_secs(1), |_| false);
    let got = pair
        .received_on(pair.client_video)
        .into_iter()
        .map(|d| d.to_vec())
        .collect();
    (sent, got)
}

#[test]
fn hevc_arrives_bit_for_bit() {
    let (sent, got) = video_roundtrip("codecs/hevc_aac.flv", Codec::Hevc);
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "H.265 access units differ");
    // VPS (32), SPS (33), PPS (34) before the first picture.
    let types: Vec<u8> = sent[0]
        .windows(5)
        .filter(|w| w[..4] == [0, 0, 0, 1])
        .map(|w| (w[4] >> 1) & 0x3f)
        .take(3)
        .collect();
    assert_eq!(types, [32, 33, 34]);
}

#[test]
fn vp9_arrives_bit_for_bit() {
    let (sent, got) = video_roundtrip("codecs/vp9_opus.flv", Codec::Vp9);
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "VP9 frames differ");
}

#[test]
fn av1_obus_arrive_intact() {
    let (sent, got) = video_roundtrip("codecs/av1_opus.flv", Codec::Av1);
    assert_eq!(got.len(), sent.len());
    // RTP carries OBUs without temporal delimiters (type 2) and may rewrite the size fields
    // (RFC/AV1-RTP 5): compare the OBUs' types and payloads.
    let obus = |tu: &[u8]| -> Vec<(u8, Vec<u8>)> {
        crate::media::av1::obus_of(tu)
            .filter(|(ty, _)| *ty != 2)
            .map(|(ty, p)| (ty, p.to_vec()))
            .collect()
    };
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert!(!obus(s).is_empty());
        assert!(obus(g) == obus(s), "temporal unit {i}");
    }
}

#[test]
fn candidates_are_the_request_address_and_the_public_ones() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(
        candidate_addrs(
            ip("::ffff:10.0.0.5"),
            &[
                ip("203.0.113.7"),
                ip("10.0.0.5"),
                ip("0.0.0.0"),
                ip("2001:db8::1")
            ],
            8189
        ),
        [
            "10.0.0.5:8189".parse::<SocketAddr>().unwrap(),
            "203.0.113.7:8189".parse().unwrap(),
            "[2001:db8::1]:8189".parse().unwrap(),
        ]
    );
    assert!(candidate_addrs(ip("0.0.0.0"), &[], 8189).is_empty());
    let err = WhepSession::accept(
        &offer_from(client_config()),
        &SessionConfig::default(),
        &[],
        &h264_codecs(),
        Instant::now(),
    )
    .unwrap_err();
    assert_eq!(err, WebRtcError::NoCandidate);
}

#[test]
fn close_sends_the_goodbyes_and_says_why() {
    let (packager, video, _) = h264_opus_units();
    let mut pair = Pair::new(Net::Udp, packager.codecs());
    pair.connect();
    pair.send(&video[0]);
    pair.server.close(pair.now, "the viewer's DELETE");
    let mut goodbyes = 0;
    while pair.server.poll_transmit().is_some() {
        goodbyes += 1;
    }
    assert!(goodbyes >= 1, "DTLS close_notify and RTCP BYE go out");
    assert_eq!(
        pair.server.poll_event(),
        Some(WebRtcEvent::Closed {
            reason: "the viewer's DELETE".into()
        })
    );
    assert_eq!(pair.server.poll_event(), None);
    assert!(pair.server.is_closed() && pair.server.next_deadline().is_none());
    // Nothing more comes out, whatever goes in.
    pair.server.send(&video[1], pair.now);
    pair.server
        .handle_timeout(pair.now + Duration::from_secs(1));
    assert!(pair.server.poll_transmit().is_none() && pair.server.poll_event().is_none());
}

/// The NACK history is str0m's per-viewer send buffer (its RTX cache, one per outgoing stream):
/// at most `video_history_packets` video and `audio_history_packets` audio packets, and none
/// older than 3 s (str0m's `DEFAULT_RTX_CACHE_DURATION`). Its bound per viewer, with every
/// packet at the largest payload str0m makes, stays under 2 MiB; docs/webrtc.md quotes it.
#[test]
fn the_nack_history_per_viewer_is_bounded() {
    let cfg = SessionConfig::default();
    // A slot of str0m's ring (position, time, packet) and the payload's own allocation.
    let slot = std::mem::size_of::<Option<(u64, Instant, str0m::rtp::RtpPacket)>>();
    let payload = str0m::DATAGRAM_MTU_TARGET + 16;
    let packets = cfg.video_history_packets + cfg.audio_history_packets;
    let bound = packets * (slot + payload);
    eprintln!(
        "NACK history: {packets} packets x ({slot} B slot + {payload} B payload) = {} KiB per viewer at most",
        bound / 1024
    );
    assert!(bound < 2 << 20, "{bound} bytes per viewer");
    // At the benchmark's 232 kbps (25 video frames of ~800 B and 50 Opus packets a second),
    // 3 s of packets is what is held: 75 video and 100 audio (its cap) packets.
    let held = 75 * (slot + 800 + 16) + 100 * (slot + 160 + 16);
    eprintln!("at 232 kbps: {} KiB per viewer", held / 1024);
}

/// The answer leaves out transport-wide congestion control (we send as published, so the
/// browser's TWCC feedback, an RTCP packet every ~50-100 ms per viewer, would be work for
/// nothing) and keeps the MID extension BUNDLE needs; NACK and PLI feedback stay.
#[test]
fn the_answer_asks_for_no_twcc_feedback() {
    let offer = offer_from(client_config());
    assert!(offer.contains("transport-wide-cc"), "str0m offers TWCC");
    let answer = accept(&offer, &h264_codecs()).unwrap();
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:rtp-hdrext:sdes:mid"),
        "{answer}"
    );
    assert!(
        answer.contains("a=rtcp-fb:") && answer.contains(" nack pli"),
        "{answer}"
    );
}
