//! A str0m client (a browser, OBS, FFmpeg) publishing to a `WhipSession`, in memory on a fake
//! clock: offer, answer, ICE, DTLS, SRTP; the frames that come out for the hub against the
//! ones sent (H.264 NAL units bit for bit, Opus packets); reordered, duplicated and lost
//! packets; keyframe requests on the clock and after a gap; the silent publisher; an OBS-style
//! offer.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec as RtpCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;
use crate::media::frame::{Frame, Track};
use crate::mux::flv_demux;

fn client_addr() -> SocketAddr {
    "127.0.0.2:50000".parse().unwrap()
}

fn server_addr() -> SocketAddr {
    "127.0.0.1:8189".parse().unwrap()
}

fn fixture(name: &str) -> Vec<Frame> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    flv_demux::read_all(&std::fs::read(path).unwrap())
        .unwrap()
        .2
}

/// The fixture's H.264 as a browser sends it (Annex B, parameter sets before each keyframe),
/// with the FLV frames they came from; and Opus packets.
fn units() -> (Vec<(MediaUnit, Frame)>, Vec<MediaUnit>) {
    let mut p = Packager::new();
    let mut video = Vec::new();
    for f in fixture("fixture.flv")
        .into_iter()
        .filter(|f| f.track == Track::Video)
    {
        if let Some(u) = p.push(&f) {
            video.push((u, f));
        }
    }
    let mut audio = Vec::new();
    for f in fixture("codecs/vp9_opus.flv")
        .iter()
        .filter(|f| f.track == Track::Audio)
    {
        audio.extend(p.push(f));
    }
    (video, audio)
}

/// The NAL units of an AVCC payload with 4-byte lengths, parameter sets and AUDs left out.
fn avcc_nals(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let nal = &b[4..4 + n];
        if !matches!(nal[0] & 0x1f, 7..=9) {
            out.push(nal.to_vec());
        }
        b = &b[4 + n..];
    }
    out
}

type Filter = Box<dyn FnMut(&[u8]) -> Action>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Pass,
    Drop,
    /// Held back and delivered after the next packet.
    Hold,
    Twice,
}

struct Pair {
    now: Instant,
    client: Rtc,
    client_deadline: Instant,
    server: WhipSession,
    video: Mid,
    audio: Mid,
    video_pt: Pt,
    audio_pt: Pt,
    rtx_pt: Option<Pt>,
    frames: Vec<Frame>,
    events: Vec<WhipEvent>,
    /// Keyframe requests the client received, with the fake time.
    keyframe_requests: Rc<RefCell<Vec<Instant>>>,
    to_server: Option<Filter>,
    held: Option<Vec<u8>>,
    /// Every datagram the client sent.
    client_sent: Vec<Vec<u8>>,
}

fn session_config() -> SessionConfig {
    SessionConfig::default()
}

impl Pair {
    fn new() -> Pair {
        Self::with(session_config())
    }

    fn with(cfg: SessionConfig) -> Pair {
        Self::with_video(cfg, RtpCodec::H264)
    }

    /// A client that sends `codec` video (the first payload type of it it offers).
    fn with_video(cfg: SessionConfig, codec: RtpCodec) -> Pair {
        Self::build(cfg, codec, None)
    }

    /// As `with_video`, the video sent as simulcast layers `rids` when given.
    fn build(cfg: SessionConfig, codec: RtpCodec, rids: Option<&[&str]>) -> Pair {
        let now = Instant::now();
        let mut client = RtcConfig::new()
            .set_crypto_provider(crypto::provider())
            .build(now);
        client.add_local_candidate(Candidate::host(client_addr(), "udp").unwrap());
        let mut api = client.sdp_api();
        let simulcast = rids.map(|rids| {
            let mut s = str0m::media::Simulcast::new();
            for r in rids {
                s.add_send_layer(str0m::media::SimulcastLayer::new(r));
            }
            s
        });
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let (server, answer) =
            WhipSession::accept(&offer.to_sdp_string(), &cfg, &[server_addr()], now).unwrap();
        assert!(server.has_video() && server.has_audio());
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        client.sdp_api().accept_answer(pending, answer).unwrap();
        let w = client.writer(video).unwrap();
        let h264 = w
            .payload_params()
            .find(|p| {
                p.spec().codec == codec
                    && (codec != RtpCodec::H264 || p.spec().format.packetization_mode == Some(1))
            })
            .copied()
            .expect("the video codec negotiated");
        let audio_pt = client
            .writer(audio)
            .unwrap()
            .payload_params()
            .find(|p| p.spec().codec == RtpCodec::Opus)
            .unwrap()
            .pt();
        Pair {
            now,
            client,
            client_deadline: now,
            server,
            video,
            audio,
            video_pt: h264.pt(),
            audio_pt,
            rtx_pt: h264.resend(),
            frames: Vec::new(),
            events: Vec::new(),
            keyframe_requests: Rc::default(),
            to_server: None,
            held: None,
            client_sent: Vec::new(),
        }
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.server
            .handle_datagram(self.now, Proto::Udp, from, to, bytes);
    }

    fn shuttle(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            loop {
                match self.client.poll_output().unwrap() {
                    Output::Timeout(t) => {
                        self.client_deadline = t;
                        break;
                    }
                    Output::Transmit(t) => {
                        moved = true;
                        let bytes: Vec<u8> = t.contents.into();
                        self.client_sent.push(bytes.clone());
                        let action = self.to_server.as_mut().map_or(Action::Pass, |f| f(&bytes));
                        match action {
                            Action::Pass => {
                                self.deliver(t.source, t.destination, &bytes);
                                if let Some(h) = self.held.take() {
                                    self.deliver(t.source, t.destination, &h);
                                }
                            }
                            Action::Drop => {}
                            Action::Hold => self.held = Some(bytes),
                            Action::Twice => {
                                self.deliver(t.source, t.destination, &bytes);
                                self.deliver(t.source, t.destination, &bytes);
                            }
                        }
                    }
                    Output::Event(Event::KeyframeRequest(_)) => {
                        self.keyframe_requests.borrow_mut().push(self.now)
                    }
                    Output::Event(_) => {}
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(t.destination, client_addr());
                let input = Input::Receive(
                    self.now,
                    Receive {
                        proto: Protocol::Udp,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.as_slice().try_into().unwrap(),
                    },
                );
                self.client.handle_input(input).unwrap();
            }
            while let Some(e) = self.server.poll_event() {
                self.events.push(e);
            }
            while let Some(f) = self.server.poll_frame() {
                self.frames.push(f);
            }
            if !moved {
                return;
            }
        }
        panic!("the two sides never went quiet");
    }

    fn tick(&mut self) {
        self.shuttle();
        let s = self.server.next_deadline();
        let next = s.map_or(self.client_deadline, |s| s.min(self.client_deadline));
        self.now = next.max(self.now);
        if s.is_some_and(|s| s <= self.now) {
            self.server.handle_timeout(self.now);
        }
        if self.client_deadline <= self.now {
            self.client.handle_input(Input::Timeout(self.now)).unwrap();
        }
        self.shuttle();
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
        }
    }

    fn connect(&mut self) {
        let end = self.now + Duration::from_secs(5);
        while !(self.server.is_connected() && self.client.is_connected()) {
            assert!(self.now < end, "no connection: {:?}", self.events);
            self.tick();
        }
        assert_eq!(self.events, [WhipEvent::Connected]);
        self.events.clear();
    }

    /// Writes one unit with its capture time `wall` (for the sender reports).
    fn write(&mut self, u: &MediaUnit, wall: Instant) {
        let (mid, pt, time) = match u.kind {
            UnitKind::Video => (
                self.video,
                self.video_pt,
                MediaTime::new(u.pts_ms * 90, Frequency::NINETY_KHZ),
            ),
            UnitKind::Audio => (
                self.audio,
                self.audio_pt,
                MediaTime::new(u.pts_ms * 48, Frequency::FORTY_EIGHT_KHZ),
            ),
        };
        self.client
            .writer(mid)
            .unwrap()
            .write(pt, wall, time, u.data.to_vec())
            .unwrap();
        self.shuttle();
    }

    fn video_frames(&self) -> Vec<&Frame> {
        self.frames
            .iter()
            .filter(|f| f.track == Track::Video && !f.config)
            .collect()
    }
}

/// Whether a client datagram is an RTP packet of payload type `pt`, and its sequence number.
fn rtp_seq(d: &[u8], pt: Pt) -> Option<u16> {
    let rtp = d.len() > 12 && d[0] >> 6 == 2 && !(64..96).contains(&(d[1] & 0x7f));
    (rtp && d[1] & 0x7f == *pt).then(|| u16::from_be_bytes([d[2], d[3]]))
}

/// Sends `n` video units (and the audio beside them) 40 ms apart, ticking between.
fn publish(pair: &mut Pair, video: &[(MediaUnit, Frame)], audio: &[MediaUnit], n: usize) {
    for (i, (v, _)) in video.iter().take(n).enumerate() {
        let now = pair.now;
        pair.write(v, now);
        if let Some(a) = audio.get(i) {
            pair.write(a, now);
        }
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
}

fn assert_bit_for_bit(pair: &Pair, video: &[(MediaUnit, Frame)], n: usize) {
    let got = pair.video_frames();
    assert_eq!(got.len(), n, "video frames");
    for (i, (g, (u, src))) in got.iter().zip(video).enumerate() {
        assert_eq!(g.key, src.key, "frame {i} key");
        assert_eq!(
            avcc_nals(&g.data[5..]),
            avcc_nals(&src.data[5..]),
            "frame {i}"
        );
        // Its time is the RTP time (the presentation time), on the first frame's clock.
        let t = |f: &Frame| i64::from(f.dts.wrapping_sub(got[0].dts) as i32);
        assert_eq!(
            t(g),
            u.pts_ms as i64 - video[0].0.pts_ms as i64,
            "frame {i} time"
        );
    }
    // The configuration record carries the fixture's parameter sets.
    let cfg = pair
        .frames
        .iter()
        .find(|f| f.config && f.track == Track::Video);
    let src_cfg = fixture("fixture.flv")
        .into_iter()
        .find(|f| f.config && f.track == Track::Video);
    let sets = |f: &Frame| {
        let c = crate::media::avc::AvcConfig::parse(&f.data[5..]).unwrap();
        (c.sps, c.pps)
    };
    assert_eq!(sets(cfg.unwrap()), sets(&src_cfg.unwrap()));
}

#[test]
fn h264_and_opus_reach_the_hub_bit_for_bit() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    publish(&mut pair, &video, &audio, 75);
    pair.run_for(Duration::from_millis(600));
    assert_bit_for_bit(&pair, &video, 75);
    let opus: Vec<&Frame> = pair
        .frames
        .iter()
        .filter(|f| f.track == Track::Audio && !f.config)
        .collect();
    assert_eq!(opus.len(), 75);
    for (g, s) in opus.iter().zip(&audio) {
        assert_eq!(&g.data[5..], &s.data[..]);
        assert_eq!(&g.data[..5], b"\x91Opus");
    }
    let head = pair
        .frames
        .iter()
        .filter(|f| f.config && f.track == Track::Audio);
    assert_eq!(head.count(), 1, "one OpusHead");
    let st = pair.server.stats();
    assert_eq!((st.depack.video_dropped, st.depack.gaps), (0, 0));
}

#[test]
fn reordered_and_duplicated_packets_change_nothing() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    let pt = pair.video_pt;
    let mut n = 0;
    pair.to_server = Some(Box::new(move |d| {
        if rtp_seq(d, pt).is_none() {
            return Action::Pass;
        }
        n += 1;
        match n % 7 {
            3 => Action::Hold,
            5 => Action::Twice,
            _ => Action::Pass,
        }
    }));
    publish(&mut pair, &video, &audio, 50);
    pair.run_for(Duration::from_millis(600));
    assert_bit_for_bit(&pair, &video, 50);
}

#[test]
fn a_lost_packet_is_nacked_and_the_frame_completes() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    let pt = pair.video_pt;
    let mut n = 0;
    pair.to_server = Some(Box::new(move |d| {
        if rtp_seq(d, pt).is_some() {
            n += 1;
            if n == 40 {
                return Action::Drop; // once: its retransmission passes
            }
        }
        Action::Pass
    }));
    publish(&mut pair, &video, &audio, 50);
    pair.run_for(Duration::from_secs(2));
    assert_bit_for_bit(&pair, &video, 50);
    assert!(pair.server.stats().nacks >= 1, "{:?}", pair.server.stats());
}

#[test]
fn a_packet_lost_for_good_drops_frames_until_the_next_keyframe_and_asks_for_one() {
    use std::cell::Cell;
    let (video, audio) = units();
    let cfg = SessionConfig {
        keyframe_interval: None,
        ..session_config()
    };
    let mut pair = Pair::with(cfg);
    pair.connect();
    let (pt, rtx) = (pair.video_pt, pair.rtx_pt);
    // Lose the first video packet of the 5th frame, and every retransmission for a second.
    let count = Rc::new(Cell::new(0usize));
    let target = Rc::new(Cell::new(None::<usize>));
    let lost_at = Rc::new(Cell::new(None::<Instant>));
    let clock = Rc::new(Cell::new(pair.now));
    let (c2, t2, l2, k2) = (
        count.clone(),
        target.clone(),
        lost_at.clone(),
        clock.clone(),
    );
    pair.to_server = Some(Box::new(move |d| {
        let now = k2.get();
        if let Some(t) = l2.get() {
            if rtx.is_some_and(|r| rtp_seq(d, r).is_some()) && now < t + Duration::from_secs(1) {
                return Action::Drop;
            }
        }
        if rtp_seq(d, pt).is_some() {
            c2.set(c2.get() + 1);
            if t2.get() == Some(c2.get()) {
                l2.set(Some(now));
                return Action::Drop;
            }
        }
        Action::Pass
    }));
    let keys: Vec<usize> = (0..video.len()).filter(|&i| video[i].0.key).collect();
    assert!(keys.len() >= 2 && keys[1] > 6, "{keys:?}");
    let second_key = keys[1];
    for (i, (v, _)) in video.iter().take(second_key + 3).enumerate() {
        if i == 4 {
            target.set(Some(count.get() + 1));
        }
        clock.set(pair.now);
        let now = pair.now;
        pair.write(v, now);
        if let Some(a) = audio.get(i) {
            pair.write(a, now);
        }
        pair.now += Duration::from_millis(40);
        clock.set(pair.now);
        pair.tick();
    }
    clock.set(pair.now);
    pair.run_for(Duration::from_secs(1));
    assert!(lost_at.get().is_some(), "the test lost a packet");
    let got = pair.video_frames();
    let st = pair.server.stats();
    // Frames 0..4 whole, then nothing until the second keyframe, then it and the rest.
    assert_eq!(got.len(), 4 + 3, "{st:?}");
    assert!(got[4].key);
    for (g, (_, src)) in got[..4].iter().zip(&video) {
        assert_eq!(avcc_nals(&g.data[5..]), avcc_nals(&src.data[5..]));
    }
    for (g, (_, src)) in got[4..].iter().zip(&video[second_key..]) {
        assert_eq!(avcc_nals(&g.data[5..]), avcc_nals(&src.data[5..]));
    }
    assert!(st.depack.gaps >= 1, "{st:?}");
    assert!(
        !pair.keyframe_requests.borrow().is_empty(),
        "a PLI after the gap"
    );
}

#[test]
fn keyframes_are_asked_for_on_the_clock() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    // One keyframe, then only delta frames for 5 s.
    let deltas: Vec<&MediaUnit> = video.iter().map(|(u, _)| u).filter(|u| !u.key).collect();
    let start = pair.now;
    let now = pair.now;
    pair.write(&video[0].0, now);
    let mut i = 0;
    while pair.now < start + Duration::from_secs(5) {
        pair.now += Duration::from_millis(40);
        let mut u = deltas[i % deltas.len()].clone();
        u.pts_ms = video[0].0.pts_ms + 40 * (i as u64 + 1);
        let now = pair.now;
        pair.write(&u, now);
        if let Some(a) = audio.get(i % audio.len()) {
            pair.write(a, now);
        }
        pair.tick();
        i += 1;
    }
    let at: Vec<u128> = pair
        .keyframe_requests
        .borrow()
        .iter()
        .map(|t| t.duration_since(start).as_millis())
        .collect();
    // Every 2 s after the keyframe: about 2000 and 4000 ms.
    assert_eq!(at.len(), 2, "{at:?}");
    assert!(
        (1990..=2100).contains(&at[0]) && (3990..=4100).contains(&at[1]),
        "{at:?}"
    );
    assert_eq!(pair.server.stats().plis, 2);
}

#[test]
fn a_silent_publisher_is_ended() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    publish(&mut pair, &video, &audio, 10);
    // It still answers ICE (consent) but sends no media.
    let start = pair.now;
    while pair.events.is_empty() && pair.now < start + Duration::from_secs(30) {
        pair.tick();
    }
    let waited = pair.now.duration_since(start);
    assert!(
        matches!(&pair.events[..], [WhipEvent::Closed { reason }] if reason.contains("no media")),
        "{:?}",
        pair.events
    );
    assert!(
        waited >= Duration::from_secs(9) && waited <= Duration::from_secs(11),
        "{waited:?}"
    );
    assert!(pair.server.next_deadline().is_none());
}

#[test]
fn sender_reports_keep_audio_and_video_within_20_ms() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    // Audio's packets arrive 150 ms after the video captured at the same time (a sender that
    // buffers audio): its first frame is placed by arrival, then moved by the reports (str0m,
    // like browsers, reports audio every 5 s and video every second).
    let t0 = pair.now;
    let mut pending: Vec<(Instant, MediaUnit, Instant)> = Vec::new();
    for i in 0..200 {
        let capture = t0 + Duration::from_millis(40 * i as u64);
        pair.now = pair.now.max(capture);
        let mut v = video[i % 50].0.clone();
        v.pts_ms = 40 * i as u64;
        if i > 0 && i % 50 == 0 {
            v = video[0].0.clone();
            v.pts_ms = 40 * i as u64;
        }
        pair.write(&v, capture);
        let mut a = audio[i % audio.len()].clone();
        a.pts_ms = 40 * i as u64;
        pending.push((capture + Duration::from_millis(150), a, capture));
        while let Some(k) = pending.iter().position(|(due, _, _)| *due <= pair.now) {
            let (_, a, cap) = pending.remove(k);
            pair.write(&a, cap);
        }
        pair.tick();
    }
    pair.run_for(Duration::from_millis(300));
    // The audio and video frames captured at the same time (same pts) end up within 20 ms,
    // once both tracks had a sender report.
    let v: Vec<&Frame> = pair.video_frames();
    let a: Vec<&Frame> = pair
        .frames
        .iter()
        .filter(|f| f.track == Track::Audio && !f.config)
        .collect();
    assert!(v.len() >= 190 && a.len() >= 190, "{} {}", v.len(), a.len());
    let first = |f: &&Frame| f.dts;
    let base = first(&v[0]);
    let off = |f: &Frame, i: usize| i64::from(f.dts.wrapping_sub(base) as i32) - 40 * i as i64;
    let early = off(a[0], 0);
    assert!(early >= 100, "by arrival audio starts late: {early}");
    let last = off(a[a.len() - 1], a.len() - 1);
    assert!(
        last.abs() <= 20,
        "audio {last} ms off video after the reports"
    );
}

/// An OBS 30 WHIP offer (libdatachannel): ICE credentials, fingerprint and setup at session
/// level, no candidates, `a=group:LS`, codec names in capitals.
const OBS_OFFER: &str = "v=0\r\n\
o=rtc 2766329587 0 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=group:LS 0 1\r\n\
a=msid-semantic:WMS *\r\n\
a=setup:actpass\r\n\
a=ice-ufrag:Gv7c\r\n\
a=ice-pwd:Ofsa6uxBsTeo3BXdCm3Pp6\r\n\
a=ice-options:ice2,trickle\r\n\
a=fingerprint:sha-256 3E:C6:5B:1C:42:9E:76:D2:2E:DB:E5:11:2E:9E:1C:90:2F:2A:C0:D9:3E:A8:F3:5E:88:2C:7F:13:1E:D8:6A:3F\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=ssrc:2937425146 cname:rE4sSyIYdCDfFCgl\r\n\
a=ssrc:2937425146 msid:obs-studio obs-studio-audio\r\n\
a=msid:obs-studio obs-studio-audio\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 OPUS/48000/2\r\n\
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=ssrc:2937425147 cname:rE4sSyIYdCDfFCgl\r\n\
a=ssrc:2937425147 msid:obs-studio obs-studio-video\r\n\
a=msid:obs-studio obs-studio-video\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 H264/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n";

#[test]
fn an_obs_offer_is_answered() {
    let now = Instant::now();
    let (s, answer) =
        WhipSession::accept(OBS_OFFER, &session_config(), &[server_addr()], now).unwrap();
    assert!(s.has_video() && s.has_audio());
    assert!(answer.contains("a=candidate:"), "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("h264/90000"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("opus/48000/2"),
        "{answer}"
    );
    assert!(answer.contains(&format!("a=ice-ufrag:{}", s.local_ufrag())));
    // str0m, as a client, takes it.
    assert!(SdpAnswer::from_sdp_string(&answer).is_ok());
}

#[test]
fn offers_without_a_codec_we_take_or_garbage_are_refused() {
    let now = Instant::now();
    let cfg = session_config();
    let vp8_only = OBS_OFFER
        .replace("H264/90000", "VP8/90000")
        .replace("OPUS/48000/2", "PCMU/8000");
    let e = WhipSession::accept(&vp8_only, &cfg, &[server_addr()], now).unwrap_err();
    assert!(e.to_string().contains("no codec rtmpd takes"), "{e}");
    for bad in [
        "",
        "garbage",
        "v=0\r\nm=video x\r\n",
        &OBS_OFFER[..OBS_OFFER.len() / 2],
    ] {
        let e = WhipSession::accept(bad, &cfg, &[server_addr()], now).unwrap_err();
        assert!(
            matches!(
                e,
                WebRtcError::BadOffer(_) | WebRtcError::NothingToTake { .. }
            ),
            "{bad}: {e}"
        );
    }
    let big = "a".repeat(cfg.max_offer_bytes + 1);
    assert!(matches!(
        WhipSession::accept(&big, &cfg, &[server_addr()], now),
        Err(WebRtcError::OfferTooLarge { .. })
    ));
}

#[test]
fn mutated_datagrams_and_offers_do_not_break_anything() {
    let (video, audio) = units();
    let mut pair = Pair::new();
    pair.connect();
    // Publish a few frames (to the middle of the first GOP).
    for (i, (v, _)) in video.iter().take(20).enumerate() {
        let now = pair.now;
        pair.write(v, now);
        pair.write(&audio[i], now);
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
    let sent = std::mem::take(&mut pair.client_sent);
    assert!(sent.len() > 40, "STUN, DTLS, RTP and RTCP from the client");
    let (from, to) = (client_addr(), server_addr());
    for d in &sent {
        for pos in (0..d.len()).step_by(11) {
            let mut m = d.clone();
            m[pos] ^= 1 << (pos % 8);
            pair.server
                .handle_datagram(pair.now, Proto::Udp, from, to, &m);
        }
        for cut in [1, 4, 12, 13, d.len() / 2] {
            if cut < d.len() {
                pair.server
                    .handle_datagram(pair.now, Proto::Udp, from, to, &d[..cut]);
            }
        }
        pair.shuttle();
    }
    assert!(pair.server.is_connected(), "{:?}", pair.events);
    // Media goes on, whole: the rest of the GOP and the next one arrive as sent.
    for (i, (v, _)) in video.iter().enumerate().take(75).skip(20) {
        let now = pair.now;
        pair.write(v, now);
        pair.write(&audio[i], now);
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
    pair.run_for(Duration::from_millis(600));
    assert_bit_for_bit(&pair, &video, 75);

    // Offers cut at every 13th byte and with each line left out: an answer or an error.
    let cfg = session_config();
    let lines: Vec<&str> = OBS_OFFER.split("\r\n").collect();
    for skip in 0..lines.len() {
        let o: Vec<&str> = (0..lines.len())
            .filter(|i| *i != skip)
            .map(|i| lines[i])
            .collect();
        let _ = WhipSession::accept(&o.join("\r\n"), &cfg, &[server_addr()], Instant::now());
    }
    for cut in (0..OBS_OFFER.len()).step_by(13) {
        let _ = WhipSession::accept(&OBS_OFFER[..cut], &cfg, &[server_addr()], Instant::now());
    }
}

/// The AV1 fixture's temporal units as a browser sends them (a temporal delimiter, the
/// sequence header before each keyframe), with the FLV frames they came from.
fn av1_units() -> (Vec<(MediaUnit, Frame)>, Frame) {
    let frames = fixture("codecs/av1_opus.flv");
    let config = frames
        .iter()
        .find(|f| f.track == Track::Video && f.config)
        .cloned()
        .unwrap();
    let rec = &config.data[5..];
    let seq = &rec[crate::media::av1::Av1Config::parse(rec)
        .unwrap()
        .config_obus_at..];
    let units = frames
        .into_iter()
        // Coded frames (not the metadata packet).
        .filter(|f| f.track == Track::Video && !f.config && f.data[0] & 0x0f == 1)
        .map(|f| {
            let mut data = vec![0x12, 0x00]; // temporal delimiter
            let obus = &f.data[5..];
            let has_seq = crate::media::av1::obus_of(obus).any(|(t, _)| t == 1);
            if f.key && !has_seq {
                data.extend_from_slice(seq);
            }
            data.extend_from_slice(obus);
            let u = MediaUnit {
                kind: UnitKind::Video,
                codec: crate::media::Codec::Av1,
                pts_ms: u64::from(f.dts) + u64::from(f.cts.max(0) as u32),
                data: data.into(),
                key: f.key,
            };
            (u, f)
        })
        .collect();
    (units, config)
}

/// (type, payload) of each OBU but temporal delimiters and padding.
fn obu_list(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    crate::media::av1::obus_of(b)
        .filter(|(t, _)| !matches!(t, 2 | 15))
        .map(|(t, p)| (t, p.to_vec()))
        .collect()
}

#[test]
fn av1_reaches_the_hub_obu_for_obu_with_its_sequence_header_as_av1c() {
    let (video, src_cfg) = av1_units();
    assert!(video.len() >= 40);
    let mut pair = Pair::with_video(session_config(), RtpCodec::Av1);
    pair.connect();
    let n = video.len();
    publish(&mut pair, &video, &[], n);
    pair.run_for(Duration::from_millis(300));

    let got = pair.video_frames();
    assert_eq!(got.len(), n, "video frames");
    for (i, (g, (u, src))) in got.iter().zip(&video).enumerate() {
        assert_eq!(g.codec, crate::media::Codec::Av1, "frame {i}");
        assert_eq!(g.key, src.key, "frame {i} key");
        assert_eq!(&g.data[1..5], b"av01");
        assert_eq!(g.data[0] & 0x0f, 1, "frame {i}: CodedFrames");
        // The same OBUs as sent (the sequence header added before a keyframe included).
        assert_eq!(obu_list(&g.data[5..]), obu_list(&u.data), "frame {i}");
        let t = |f: &Frame| i64::from(f.dts.wrapping_sub(got[0].dts) as i32);
        assert_eq!(
            t(g),
            u.pts_ms as i64 - video[0].0.pts_ms as i64,
            "frame {i} time"
        );
    }
    let cfgs: Vec<&Frame> = pair
        .frames
        .iter()
        .filter(|f| f.config && f.track == Track::Video)
        .collect();
    assert_eq!(cfgs.len(), 1, "one sequence header, one record");
    let rec = &cfgs[0].data[5..];
    let src_rec = &src_cfg.data[5..];
    // The fixed part as FFmpeg wrote it, and the same sequence header.
    use crate::media::av1::Av1Config;
    let (a, b) = (
        Av1Config::parse(rec).unwrap(),
        Av1Config::parse(src_rec).unwrap(),
    );
    assert_eq!(rec[..3], src_rec[..3]);
    assert_eq!(a.codec_string(), b.codec_string());
    // Its configOBUs are the sequence header sent in band (FFmpeg's own record rewrites some
    // bits of it).
    let inband: Vec<(u8, Vec<u8>)> = obu_list(&video[0].0.data)
        .into_iter()
        .filter(|(t, _)| *t == 1)
        .collect();
    assert_eq!(obu_list(&rec[a.config_obus_at..]), inband);
    assert_eq!(a.dimensions(rec), b.dimensions(src_rec));
    assert_eq!(pair.server.stats().frames_dropped, 0);
}

#[test]
fn av1_after_a_packet_lost_for_good_waits_for_the_next_key_frame() {
    use std::cell::Cell;
    let (video, _) = av1_units();
    let cfg = SessionConfig {
        keyframe_interval: None,
        ..session_config()
    };
    let mut pair = Pair::with_video(cfg, RtpCodec::Av1);
    pair.connect();
    let (pt, rtx) = (pair.video_pt, pair.rtx_pt);
    // Lose the first packet of the 5th temporal unit, and every retransmission for a second.
    let count = Rc::new(Cell::new(0usize));
    let target = Rc::new(Cell::new(None::<usize>));
    let lost_at = Rc::new(Cell::new(None::<Instant>));
    let clock = Rc::new(Cell::new(pair.now));
    let (c2, t2, l2, k2) = (
        count.clone(),
        target.clone(),
        lost_at.clone(),
        clock.clone(),
    );
    pair.to_server = Some(Box::new(move |d| {
        let now = k2.get();
        if let Some(t) = l2.get() {
            if rtx.is_some_and(|r| rtp_seq(d, r).is_some()) && now < t + Duration::from_secs(1) {
                return Action::Drop;
            }
        }
        if rtp_seq(d, pt).is_some() {
            c2.set(c2.get() + 1);
            if t2.get() == Some(c2.get()) {
                l2.set(Some(now));
                return Action::Drop;
            }
        }
        Action::Pass
    }));
    let keys: Vec<usize> = (0..video.len()).filter(|&i| video[i].1.key).collect();
    assert!(keys.len() >= 2 && keys[1] > 6, "{keys:?}");
    let second_key = keys[1];
    for (i, (v, _)) in video.iter().take(second_key + 3).enumerate() {
        if i == 4 {
            target.set(Some(count.get() + 1));
        }
        clock.set(pair.now);
        let now = pair.now;
        pair.write(v, now);
        pair.now += Duration::from_millis(40);
        clock.set(pair.now);
        pair.tick();
    }
    clock.set(pair.now);
    pair.run_for(Duration::from_secs(1));
    assert!(lost_at.get().is_some(), "the test lost a packet");
    let got = pair.video_frames();
    let st = pair.server.stats();
    // Units 0..4 whole, then nothing until the second keyframe, then it and the rest.
    assert_eq!(got.len(), 4 + 3, "{st:?}");
    assert!(got[4].key && !got[3].key);
    for (g, (u, _)) in got[..4].iter().zip(&video) {
        assert_eq!(obu_list(&g.data[5..]), obu_list(&u.data));
    }
    for (g, (u, _)) in got[4..].iter().zip(&video[second_key..]) {
        assert_eq!(obu_list(&g.data[5..]), obu_list(&u.data));
    }
    assert!(st.depack.gaps >= 1, "{st:?}");
    assert!(
        !pair.keyframe_requests.borrow().is_empty(),
        "a PLI after the gap"
    );
}

/// The codec of the first payload type on the answer's video m-line.
fn first_video_codec(answer: &str) -> String {
    let m = answer.lines().find(|l| l.starts_with("m=video")).unwrap();
    let pt = m.split(' ').nth(3).unwrap();
    let map = format!("a=rtpmap:{pt} ");
    let line = answer.lines().find(|l| l.starts_with(&map)).unwrap();
    line[map.len()..].split('/').next().unwrap().to_string()
}

#[test]
fn the_answer_keeps_the_offers_video_codec_order() {
    for (first, then, want) in [
        (RtpCodec::Av1, RtpCodec::H264, "AV1"),
        (RtpCodec::H264, RtpCodec::Av1, "H264"),
    ] {
        let now = Instant::now();
        let mut cfg = RtcConfig::new()
            .set_crypto_provider(crypto::provider())
            .clear_codecs();
        for c in [first, then] {
            match c {
                RtpCodec::Av1 => cfg.codec_config().enable_av1(true),
                _ => cfg.codec_config().enable_h264(true),
            }
        }
        let mut client = cfg.build(now);
        client.add_local_candidate(Candidate::host(client_addr(), "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, _) = api.apply().unwrap();
        let (_, answer) = WhipSession::accept(
            &offer.to_sdp_string(),
            &session_config(),
            &[server_addr()],
            now,
        )
        .unwrap();
        assert_eq!(first_video_codec(&answer), want, "{answer}");
    }
}

use crate::webrtc::ingest::first_send_rid;
use str0m::media::Rid;

/// OBS 32.1 with three simulcast layers: rids 0 (the output size), 1 and 2 on the video m-line.
fn obs_simulcast_offer() -> String {
    OBS_OFFER.replace(
        "a=rtcp-mux\r\na=rtpmap:96",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
         a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
         a=rid:0 send\r\na=rid:1 send\r\na=rid:2 send\r\na=simulcast:send 0;1;2\r\n\
         a=rtcp-mux\r\na=rtpmap:96",
    )
}

#[test]
fn an_obs_simulcast_offer_is_answered_and_its_first_layer_taken() {
    let offer = obs_simulcast_offer();
    assert!(offer.contains("a=simulcast:send 0;1;2\r\na=rtcp-mux\r\na=rtpmap:96"));
    assert_eq!(first_send_rid(&offer).as_deref(), Some("0"));
    let (s, answer) =
        WhipSession::accept(&offer, &session_config(), &[server_addr()], Instant::now()).unwrap();
    assert!(s.has_video() && s.has_audio());
    assert_eq!(s.video_rid, Some(Rid::from("0")));
    assert!(answer.contains("a=simulcast:recv 0;1;2"), "{answer}");
    assert!(SdpAnswer::from_sdp_string(&answer).is_ok());
    // Paused layers and alternatives; no simulcast at all.
    assert_eq!(
        first_send_rid("m=video 9 X 96\r\na=simulcast:send ~h;m,l\r\n").as_deref(),
        Some("m")
    );
    assert_eq!(first_send_rid(OBS_OFFER), None);
    assert_eq!(
        first_send_rid("m=audio 9 X 1\r\na=simulcast:send a;b\r\n"),
        None
    );
}

#[test]
fn simulcast_layers_other_than_the_first_are_left_out() {
    let (video, audio) = units();
    let mut pair = Pair::build(session_config(), RtpCodec::H264, Some(&["0", "1"]));
    pair.connect();
    let n = 30;
    // Layer 1 carries the same pictures 1 ms later: were it taken, every frame would come twice.
    for (i, (v, _)) in video.iter().take(n).enumerate() {
        let now = pair.now;
        let (mid, pt) = (pair.video, pair.video_pt);
        for (rid, shift) in [("0", 0), ("1", 1)] {
            let t = MediaTime::new((v.pts_ms + shift) * 90, Frequency::NINETY_KHZ);
            pair.client
                .writer(mid)
                .unwrap()
                .rid(Rid::from(rid))
                .write(pt, now, t, v.data.to_vec())
                .unwrap();
            pair.shuttle();
        }
        if let Some(a) = audio.get(i) {
            pair.write(a, now);
        }
        pair.now += Duration::from_millis(40);
        pair.tick();
    }
    pair.run_for(Duration::from_millis(300));
    assert_bit_for_bit(&pair, &video, n);
    let st = pair.server.stats();
    assert!(st.other_layer_frames >= n as u64 - 2, "{st:?}");
}
