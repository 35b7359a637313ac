//! A WHIP publish over ICE-TCP (RFC 6544 passive candidates on the WebRTC port, RFC 4571
//! framing): a str0m publisher whose one candidate is an active TCP one sends the H.264 fixture
//! in real time; an HTTP-FLV reader gets its pictures, starting at a keyframe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rtmpd::media::avc::AvcConfig;
use rtmpd::media::{Frame, Track};
use str0m::change::SdpAnswer;
use str0m::format::Codec as RtpCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};

use crate::util::flv::{assert_clean_start, count_pictures, fixture_media, parse_flv};
use crate::util::whep::whep_post;
use crate::util::*;

/// The fixture's video as a browser sends it: Annex B, SPS and PPS before each keyframe; with
/// each frame's presentation time (ms).
fn annex_b_units() -> Vec<(u64, Vec<u8>)> {
    let frames: Vec<Frame> = fixture_media("fixture.flv")
        .into_iter()
        .filter(|f| f.track == Track::Video)
        .collect();
    let cfg = frames.iter().find(|f| f.config).expect("an avcC");
    let c = AvcConfig::parse(&cfg.data[5..]).expect("the avcC parses");
    let mut out = Vec::new();
    for f in frames
        .iter()
        .filter(|f| !f.config && f.data.get(1) == Some(&1))
    {
        let mut au = Vec::new();
        if f.key {
            for s in c.sps.iter().chain(&c.pps) {
                au.extend_from_slice(&[0, 0, 0, 1]);
                au.extend_from_slice(s);
            }
        }
        let mut b = &f.data[5..];
        while b.len() >= 4 {
            let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let Some(nal) = b.get(4..4 + n) else { break };
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
            b = &b[4 + n..];
        }
        let pts = i64::from(f.dts) + i64::from(f.cts);
        out.push((pts.max(0) as u64, au));
    }
    out
}

struct TcpPublisher {
    rtc: Rtc,
    stream: TcpStream,
    inbuf: Vec<u8>,
    local: SocketAddr,
    peer: SocketAddr,
}

impl TcpPublisher {
    fn pump(&mut self, until: Instant) {
        let mut buf = vec![0u8; 4096];
        loop {
            let deadline = loop {
                match self.rtc.poll_output().expect("the publisher runs") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&t.contents);
                        let _ = self.stream.write_all(&framed);
                    }
                    Output::Event(_) => {}
                }
            };
            if Instant::now() >= until {
                return;
            }
            if let Ok(n) = self.stream.read(&mut buf) {
                self.inbuf.extend_from_slice(&buf[..n]);
            }
            while self.inbuf.len() >= 2 {
                let len = u16::from_be_bytes([self.inbuf[0], self.inbuf[1]]) as usize;
                if self.inbuf.len() < 2 + len {
                    break;
                }
                let packet = self.inbuf[2..2 + len].to_vec();
                self.inbuf.drain(..2 + len);
                if let Ok(contents) = packet.as_slice().try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Tcp,
                            source: self.peer,
                            destination: self.local,
                            contents,
                        },
                    );
                    if self.rtc.accepts(&input) {
                        self.rtc
                            .handle_input(input)
                            .expect("the publisher takes it");
                    }
                }
            }
            let now = Instant::now();
            if deadline <= now {
                self.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
        }
    }
}

#[test]
fn a_whip_publish_over_ice_tcp_reaches_http_flv() {
    let srv = Server::builder().no_web().start();
    let port = srv.listener("WebRTC");
    let stream = TcpStream::connect(port).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let local = stream.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(rtmpd::webrtc::crypto::provider())
        .clear_codecs()
        .enable_h264(true)
        .build(Instant::now());
    let cand = Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(cand);
    let mut api = rtc.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let r = whep_post(
        srv.http,
        "/live/whiptcp/whip",
        &["Content-Type: application/sdp"],
        offer.to_sdp_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body_text());
    let answer = r.body_text();
    assert!(
        answer.contains(" tcp ") && answer.contains("tcptype passive"),
        "{answer}"
    );
    let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let mut p = TcpPublisher {
        rtc,
        stream,
        inbuf: Vec::new(),
        local,
        peer: port,
    };
    let end = Instant::now() + Duration::from_secs(10);
    while !p.rtc.is_connected() {
        assert!(Instant::now() < end, "ICE-TCP and DTLS did not complete");
        p.pump(Instant::now() + Duration::from_millis(20));
    }
    let pt = p
        .rtc
        .writer(video)
        .unwrap()
        .payload_params()
        .find(|x| x.spec().codec == RtpCodec::H264 && x.spec().format.packetization_mode == Some(1))
        .map(|x| x.pt())
        .expect("H.264 negotiated");

    // An HTTP-FLV reader for 3 s from the start, on its own thread.
    let http = srv.http;
    let reader = std::thread::spawn(move || {
        http_get_when_live(
            http,
            "/live/whiptcp.flv",
            1,
            Duration::from_secs(5),
            Duration::from_secs(3),
        )
        .body
    });
    let units = annex_b_units();
    let start = Instant::now();
    let base = units[0].0;
    let mut sent = 0;
    // The fixture twice over (3.5 s at least), each frame at its time.
    let span = units.last().unwrap().0 - base + 40;
    'outer: for round in 0..8u64 {
        for (pts, au) in &units {
            let t = round * span + pts - base;
            if t > 3_500 {
                break 'outer;
            }
            p.pump(start + Duration::from_millis(t));
            let now = Instant::now();
            let mt = MediaTime::new(t * 90, Frequency::NINETY_KHZ);
            p.rtc
                .writer(video)
                .unwrap()
                .write(pt, now, mt, au.clone())
                .unwrap();
            sent += 1;
        }
    }
    p.pump(Instant::now() + Duration::from_millis(300));
    let body = reader.join().unwrap();
    let flv = parse_flv(&body);
    let frames = &flv.frames;
    let pictures = count_pictures(frames);
    eprintln!("whip over ICE-TCP: {sent} frames sent, {pictures} pictures over HTTP-FLV in 3 s");
    assert_clean_start(frames, "HTTP-FLV of a WHIP publish over ICE-TCP");
    assert!(
        frames.iter().any(|f| f.track == Track::Video && f.config),
        "the avcC"
    );
    // 3 s of a 25-30 fps fixture from the publish's start (the reader joins within ~250 ms).
    assert!(pictures >= 50, "{pictures} pictures of {sent} sent");
    assert!(
        srv.log_contains("WHIP publisher"),
        "connected: {:?}",
        srv.logs()
    );
}
