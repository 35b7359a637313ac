//! A WHEP viewer over real sockets, for the end-to-end tests: str0m as the browser's side (with
//! the crypto backend the server runs on), the offer POSTed to the server's HTTP port, media
//! received over UDP. Only str0m's public API and sockets: nothing of the server's internals.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::http::{http_exchange, HttpResponse};

/// How the viewer reaches the server: UDP, or ICE-TCP (RFC 4571 frames on one connection).
enum Transport {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, inbuf: Vec<u8> },
}

/// An offer made and not answered yet.
pub struct WhepOffer {
    rtc: Rtc,
    pending: SdpPendingOffer,
    sock: Transport,
    local: SocketAddr,
    video: Mid,
    pub sdp: String,
}

/// One video frame as the client depacketised it.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    pub at: Instant,
    /// An H.264 access unit with an IDR slice (NAL type 5).
    pub key: bool,
    /// It carries its SPS and PPS (NAL types 7 and 8) in band.
    pub parameter_sets: bool,
    pub len: usize,
}

/// A connected (or connecting) viewer.
pub struct WhepClient {
    rtc: Rtc,
    sock: Transport,
    local: SocketAddr,
    video: Mid,
    pub connected: bool,
    pub video_frames: Vec<VideoFrame>,
    pub audio_frames: usize,
    /// Each audio packet's RTP time (ms) and payload.
    pub audio_packets: Vec<(f64, Vec<u8>)>,
    /// Each video frame's RTP time (ms).
    pub video_times: Vec<f64>,
    /// The answer's `Location`.
    pub location: String,
}

impl WhepOffer {
    /// A recvonly video + audio offer with one UDP host candidate on 127.0.0.1.
    pub fn new() -> WhepOffer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        let cand = Candidate::host(local, "udp").unwrap();
        WhepOffer::with(Transport::Udp(sock), local, cand)
    }

    /// A viewer over ICE-TCP only: connected to the server's WebRTC port first, its one
    /// candidate an active TCP one.
    pub fn new_tcp(server: SocketAddr) -> WhepOffer {
        let stream = TcpStream::connect(server).unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        let cand = Candidate::builder()
            .tcp()
            .host(local)
            .tcptype(TcpType::Active)
            .build()
            .unwrap();
        let t = Transport::Tcp {
            stream,
            inbuf: Vec::new(),
        };
        WhepOffer::with(t, local, cand)
    }

    fn with(sock: Transport, local: SocketAddr, cand: Candidate) -> WhepOffer {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(rtmpd::webrtc::crypto::provider())
            .build(Instant::now());
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        WhepOffer {
            rtc,
            pending,
            sock,
            local,
            video,
            sdp: offer.to_sdp_string(),
        }
    }

    /// Takes the server's answer (a 201's body and its Location).
    pub fn answered(mut self, answer: &str, location: &str) -> WhepClient {
        let answer = SdpAnswer::from_sdp_string(answer).expect("the answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .expect("the answer is accepted");
        let t = Some(Duration::from_millis(5));
        match &self.sock {
            Transport::Udp(u) => u.set_read_timeout(t).unwrap(),
            Transport::Tcp { stream, .. } => stream.set_read_timeout(t).unwrap(),
        }
        WhepClient {
            rtc: self.rtc,
            sock: self.sock,
            local: self.local,
            video: self.video,
            connected: false,
            video_frames: Vec::new(),
            audio_frames: 0,
            audio_packets: Vec::new(),
            video_times: Vec::new(),
            location: location.to_string(),
        }
    }
}

impl Default for WhepOffer {
    fn default() -> Self {
        WhepOffer::new()
    }
}

/// `POST path` with `body` and these header lines, over HTTP/1.1 (connection closed after).
pub fn whep_post(http: SocketAddr, path: &str, headers: &[&str], body: &[u8]) -> HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {http}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_exchange(http, &bytes, Duration::from_secs(10), false)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// NAL unit types of an Annex B access unit.
fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            out.push(au[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

impl WhepClient {
    /// Runs the client for `dur`: datagrams both ways, timers, frames counted.
    pub fn run_for(&mut self, dur: Duration) {
        let end = Instant::now() + dur;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < end {
            let deadline = self.drain_output();
            for (packet, from, proto) in self.receive(&mut buf) {
                if let Ok(contents) = packet.as_slice().try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive {
                            proto,
                            source: from,
                            destination: self.local,
                            contents,
                        },
                    );
                    if self.rtc.accepts(&input) {
                        self.rtc
                            .handle_input(input)
                            .expect("the client takes the datagram");
                    }
                }
            }
            let now = Instant::now();
            if deadline <= now {
                self.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
        }
        self.drain_output();
    }

    /// Sends what str0m has queued, takes its events; returns its next timeout.
    fn drain_output(&mut self) -> Instant {
        loop {
            match self.rtc.poll_output().expect("the client runs") {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => match &mut self.sock {
                    Transport::Udp(u) => {
                        let _ = u.send_to(&t.contents, t.destination);
                    }
                    Transport::Tcp { stream, .. } => {
                        let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&t.contents);
                        let _ = stream.write_all(&framed);
                    }
                },
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(m)) => {
                    if m.mid == self.video {
                        let types = nal_types(&m.data);
                        self.video_frames.push(VideoFrame {
                            at: Instant::now(),
                            key: types.contains(&5),
                            parameter_sets: types.contains(&7) && types.contains(&8),
                            len: m.data.len(),
                        });
                        self.video_times.push(m.time.as_seconds() * 1000.0);
                    } else {
                        self.audio_frames += 1;
                        if self.audio_packets.len() < 100_000 {
                            let at = m.time.as_seconds() * 1000.0;
                            self.audio_packets.push((at, m.data.to_vec()));
                        }
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    /// What arrived within the read timeout: whole datagrams (UDP) or whole RFC 4571 frames.
    fn receive(&mut self, buf: &mut [u8]) -> Vec<(Vec<u8>, SocketAddr, Protocol)> {
        match &mut self.sock {
            Transport::Udp(u) => match u.recv_from(buf) {
                Ok((n, from)) => vec![(buf[..n].to_vec(), from, Protocol::Udp)],
                Err(_) => Vec::new(),
            },
            Transport::Tcp { stream, inbuf } => {
                let from = stream.peer_addr().unwrap();
                if let Ok(n) = stream.read(buf) {
                    inbuf.extend_from_slice(&buf[..n]);
                }
                let mut out = Vec::new();
                while inbuf.len() >= 2 {
                    let len = u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize;
                    if inbuf.len() < 2 + len {
                        break;
                    }
                    out.push((inbuf[2..2 + len].to_vec(), from, Protocol::Tcp));
                    inbuf.drain(..2 + len);
                }
                out
            }
        }
    }

    /// Another handle on the viewer's UDP socket (none over ICE-TCP): what is sent through it
    /// comes from the viewer's own address, on the session's 5-tuple.
    pub fn udp_clone(&self) -> Option<UdpSocket> {
        match &self.sock {
            Transport::Udp(u) => u.try_clone().ok(),
            Transport::Tcp { .. } => None,
        }
    }

    /// Whether the server's side ended the session: str0m saw the DTLS close or ICE gave up.
    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }
}
