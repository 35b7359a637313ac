//! One WHIP publisher: a str0m `Rtc` in ICE-lite mode that answers the publisher's offer
//! (OBS, FFmpeg, a browser), completes ICE, DTLS and SRTP, and turns the RTP it receives into
//! the hub's frames. Inputs are `handle_datagram` and `handle_timeout` with `now`; outputs are
//! `poll_transmit`, `poll_event`, `poll_frame` and `next_deadline`. Sans-IO like `WhepSession`.
//!
//! - **Depacketization** is str0m's frame API: its receive buffer reorders, NACKs lost packets
//!   and reassembles H.264/HEVC access units (Annex B) and Opus packets. It is bounded: at most
//!   `REORDER_PACKETS` packets wait for a missing one, an incomplete frame at most
//!   `REORDER_TIMEOUT`, and str0m holds at most 4096 packets per stream whatever a peer sends.
//!   `depack` makes the hub's frames of them, drops a broken picture and waits for a keyframe.
//! - **Keyframes** are asked for (PLI, else FIR) whenever no keyframe has come for
//!   `SessionConfig::keyframe_interval`, and at once (at most every `MIN_PLI_GAP`) when a gap
//!   broke the picture or video has not started.
//! - **Timeouts**: ICE and DTLS within `connect_timeout`; then ICE consent (`consent_timeout`)
//!   and media: no RTP for `media_timeout` ends the publish (a silent publisher).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec as RtpCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::net::{Protocol, TcpType};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

use super::depack::{DepackStats, Depacketizer, RtpFrame, SenderReport, VideoCodec};
use super::sdp::offered_codecs;
use super::session::{random_token, receive};
use super::{crypto, Proto, SessionConfig, Transmit, WebRtcError};
use crate::media::{Frame, Track};

/// Datagrams held for the caller between drains (RTCP and STUN answers: few).
const MAX_QUEUED_TRANSMITS: usize = 1024;
const MAX_QUEUED_EVENTS: usize = 16;
/// Frames held for the caller between drains; the caller drains after every input.
const MAX_QUEUED_FRAMES: usize = 1024;
/// Video packets str0m holds back waiting for a missing one (a large keyframe fits).
pub const REORDER_PACKETS: usize = 1000;
/// How long an incomplete video frame waits for its missing packets (NACKed) before it is
/// given up. Longer than a browser's pacing of a large keyframe.
pub const REORDER_TIMEOUT: Duration = Duration::from_millis(500);
/// Keyframe requests for broken pictures are at least this far apart.
pub const MIN_PLI_GAP: Duration = Duration::from_millis(500);

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WhipEvent {
    /// ICE, DTLS and SRTP are up: media will follow.
    Connected,
    /// The session is over (timeouts, the publisher's DTLS close, an error, or `close`).
    Closed { reason: String },
}

/// Counters of one publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// RTP payload bytes and packets received (str0m's counters, refreshed every
    /// `stats_interval`).
    pub bytes: u64,
    pub packets: u64,
    /// NACK, PLI and FIR messages we sent.
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    pub depack: DepackStats,
    /// Frames dropped because the caller did not drain `poll_frame`.
    pub frames_dropped: u64,
    /// Video frames of simulcast layers other than the one taken.
    pub other_layer_frames: u64,
}

#[derive(Debug)]
enum State {
    Connecting { deadline: Instant },
    Connected,
    Closed,
}

pub struct WhipSession {
    rtc: Rtc,
    state: State,
    local_ufrag: String,
    video: Option<Mid>,
    /// The simulcast layer taken when the offer sends several (`a=simulcast:send`): the first
    /// listed; the others' frames are dropped (see `first_send_rid`).
    pub(crate) video_rid: Option<Rid>,
    audio: Option<Mid>,
    depack: Depacketizer,
    consent_timeout: Duration,
    media_timeout: Duration,
    keyframe_interval: Option<Duration>,
    last_heard: Instant,
    /// The last media frame, or the connection.
    last_media: Instant,
    /// The last keyframe, or the connection.
    last_keyframe: Instant,
    last_request: Option<Instant>,
    rtc_deadline: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<WhipEvent>,
    frames: VecDeque<Frame>,
    ingress: Vec<(Mid, str0m::stats::MediaIngressStats)>,
    stats: IngestStats,
    local_close: Option<String>,
}

impl std::fmt::Debug for WhipSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhipSession")
            .field("ufrag", &self.local_ufrag)
            .field("state", &self.state)
            .finish()
    }
}

impl WhipSession {
    /// Answers a publisher's SDP offer: H.264, HEVC and AV1 video, Opus audio. `local_candidates`
    /// are our addresses (UDP host and ICE-TCP passive each). The error's `Display` is the 400.
    pub fn accept(
        offer: &str,
        cfg: &SessionConfig,
        local_candidates: &[SocketAddr],
        now: Instant,
    ) -> Result<(WhipSession, String), WebRtcError> {
        if offer.len() > cfg.max_offer_bytes {
            return Err(WebRtcError::OfferTooLarge {
                size: offer.len(),
                limit: cfg.max_offer_bytes,
            });
        }
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let offered = offered_codecs(offer);
        let offered_mids: Vec<Mid> = parsed.media_lines.iter().map(|m| m.mid()).collect();

        let no_random = || WebRtcError::Internal("no random numbers for the ICE credentials");
        let local_ufrag = random_token(8).ok_or_else(no_random)?;
        let password = random_token(24).ok_or_else(no_random)?;
        let mut config = RtcConfig::new()
            .set_crypto_provider(crypto::provider())
            .set_ice_lite(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: local_ufrag.clone(),
                pass: password,
            })
            .set_reordering_size_video(REORDER_PACKETS)
            .set_reordering_timeout_video(Some(REORDER_TIMEOUT))
            .set_stats_interval(Some(cfg.stats_interval))
            .clear_codecs();
        let cc = config.codec_config();
        // Our video codecs in the offer's order: the answer lists them so, and the publisher
        // sends the first (a browser with AV1 put first by setCodecPreferences sends AV1).
        let mut ours = [
            ("H.264", RtpCodec::H264),
            ("H.265", RtpCodec::H265),
            ("AV1", RtpCodec::Av1),
        ];
        ours.sort_by_key(|(name, _)| {
            offered
                .video
                .iter()
                .position(|o| o == name)
                .unwrap_or(usize::MAX)
        });
        for (_, codec) in ours {
            match codec {
                RtpCodec::H264 => cc.enable_h264(true),
                RtpCodec::H265 => cc.enable_h265(true),
                _ => cc.enable_av1(true),
            }
        }
        cc.enable_opus(true, false);
        let mut rtc = config.build(now);

        let mut any_candidate = false;
        for addr in local_candidates {
            let udp = Candidate::host(*addr, Protocol::Udp);
            let tcp = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build();
            for c in [udp, tcp].into_iter().flatten() {
                any_candidate |= rtc.add_local_candidate(c).is_some();
            }
        }
        if !any_candidate {
            return Err(WebRtcError::NoCandidate);
        }
        let answer = crate::contain::run(|| rtc.sdp_api().accept_offer(parsed))
            .map_err(|_| WebRtcError::BadOffer("the offer could not be negotiated".into()))?
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;

        let mut video = None;
        let mut audio = None;
        for mid in offered_mids {
            let Some(kind) = rtc.media(mid).map(|m| m.kind()) else {
                continue;
            };
            let Some(writer) = rtc.writer(mid) else {
                continue;
            };
            let codecs: Vec<RtpCodec> = writer.payload_params().map(|p| p.spec().codec).collect();
            let has = |want: &[RtpCodec]| codecs.iter().any(|c| want.contains(c));
            match kind {
                MediaKind::Video
                    if video.is_none() && has(&[RtpCodec::H264, RtpCodec::H265, RtpCodec::Av1]) =>
                {
                    video = Some(mid)
                }
                MediaKind::Audio if audio.is_none() && has(&[RtpCodec::Opus]) => audio = Some(mid),
                _ => {}
            }
        }
        if video.is_none() && audio.is_none() {
            return Err(WebRtcError::NothingToTake {
                offered: offered.describe_all(),
            });
        }
        let mut session = WhipSession {
            rtc,
            state: State::Connecting {
                deadline: now + cfg.connect_timeout,
            },
            local_ufrag,
            video,
            video_rid: first_send_rid(offer).map(|r| Rid::from(r.as_str())),
            audio,
            depack: Depacketizer::new(),
            consent_timeout: cfg.consent_timeout,
            media_timeout: cfg.media_timeout,
            keyframe_interval: cfg.keyframe_interval,
            last_heard: now,
            last_media: now,
            last_keyframe: now,
            last_request: None,
            rtc_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            frames: VecDeque::new(),
            ingress: Vec::new(),
            stats: IngestStats::default(),
            local_close: None,
        };
        session.drain(now);
        Ok((session, answer.to_sdp_string()))
    }

    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Whether the offer gave us a video (audio) m-line with a codec we take.
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Whether this datagram is for this session (see `WhepSession::accepts`).
    pub fn accepts(
        &self,
        proto: Proto,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) -> bool {
        if matches!(self.state, State::Closed) {
            return false;
        }
        let Some(input) = receive(self.last_heard, proto, source, destination, bytes) else {
            return false;
        };
        self.rtc.accepts(&input)
    }

    /// One datagram from the publisher; anything this session does not accept is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        proto: Proto,
        source: SocketAddr,
        destination: SocketAddr,
        bytes: &[u8],
    ) {
        if matches!(self.state, State::Closed) {
            return;
        }
        let Some(input) = receive(now, proto, source, destination, bytes) else {
            return;
        };
        if !self.rtc.accepts(&input) {
            return;
        }
        self.last_heard = now;
        let rtc = &mut self.rtc;
        match crate::contain::run(|| rtc.handle_input(input)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.close_with(format!("WebRTC error: {e}")),
            Err(_) => {
                return self
                    .close_with("WebRTC error: the publisher's packet broke the session".into())
            }
        }
        self.drain(now);
    }

    /// Runs the timers due at `now`: str0m's, the connect deadline, consent and media expiry,
    /// the keyframe clock.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => return,
            State::Connecting { deadline } if now >= deadline => {
                return self.close_with("ICE and DTLS did not complete in time".into());
            }
            State::Connected if now >= self.last_heard + self.consent_timeout => {
                return self
                    .close_with("ICE consent expired: the publisher stopped answering".into());
            }
            State::Connected if now >= self.last_media + self.media_timeout => {
                let s = self.media_timeout.as_secs();
                return self.close_with(format!("the publisher sent no media for {s} s"));
            }
            State::Connected if self.next_keyframe_request().is_some_and(|t| now >= t) => {
                self.request_keyframe(now);
            }
            _ => {}
        }
        let rtc = &mut self.rtc;
        match crate::contain::run(|| rtc.handle_input(Input::Timeout(now))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return self.close_with(format!("WebRTC error: {e}")),
            Err(_) => return self.close_with("WebRTC error: a timer broke the session".into()),
        }
        self.drain(now);
    }

    /// When the keyframe clock asks next: `keyframe_interval` after the last keyframe (or
    /// request), once connected with video.
    fn next_keyframe_request(&self) -> Option<Instant> {
        let interval = self.keyframe_interval?;
        if self.video.is_none() || !matches!(self.state, State::Connected) {
            return None;
        }
        let since = self
            .last_request
            .map_or(self.last_keyframe, |r| r.max(self.last_keyframe));
        Some(since + interval)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let own = match self.state {
            State::Closed => return None,
            State::Connecting { deadline } => deadline,
            State::Connected => {
                (self.last_heard + self.consent_timeout).min(self.last_media + self.media_timeout)
            }
        };
        let own = self.next_keyframe_request().map_or(own, |k| k.min(own));
        Some(self.rtc_deadline.map_or(own, |t| t.min(own)))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<WhipEvent> {
        self.events.pop_front()
    }

    /// The next frame for the hub.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn stats(&self) -> IngestStats {
        let mut s = self.stats;
        s.depack = self.depack.stats;
        s
    }

    /// Ends the session (a DELETE, a takeover): the DTLS close_notify goes out, then `Closed`.
    pub fn close(&mut self, now: Instant, reason: &str) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.local_close = Some(reason.into());
        let _ = self.rtc.close();
        self.drain(now);
        self.close_with(reason.into());
    }

    /// Sends a PLI (FIR when the publisher did not offer PLI) on the video m-line.
    fn request_keyframe(&mut self, now: Instant) {
        let Some(mid) = self.video else {
            return;
        };
        self.last_request = Some(now);
        let Some(mut w) = self.rtc.writer(mid) else {
            return;
        };
        let kind = if w.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            KeyframeRequestKind::Pli
        } else if w.is_request_keyframe_possible(KeyframeRequestKind::Fir) {
            KeyframeRequestKind::Fir
        } else {
            return;
        };
        // Fails before the first video packet (no receive stream yet): the clock tries again.
        if w.request_keyframe(self.video_rid, kind).is_ok() {
            match kind {
                KeyframeRequestKind::Pli => self.stats.plis += 1,
                KeyframeRequestKind::Fir => self.stats.firs += 1,
            }
        }
    }

    fn close_with(&mut self, reason: String) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Closed;
        self.rtc.disconnect();
        self.rtc_deadline = None;
        self.events.push_back(WhipEvent::Closed { reason });
    }

    fn drain(&mut self, now: Instant) {
        loop {
            if matches!(self.state, State::Closed) && !self.rtc.is_alive() {
                return;
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => return self.close_with(format!("WebRTC error: {e}")),
            };
            match out {
                Output::Timeout(t) => {
                    self.rtc_deadline = Some(t.max(now));
                    if !self.rtc.is_alive() {
                        let reason = self.local_close.take();
                        self.close_with(
                            reason.unwrap_or_else(|| "the publisher closed the connection".into()),
                        );
                    }
                    return;
                }
                Output::Transmit(t) => {
                    if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
                        self.transmits.pop_front();
                    }
                    self.transmits.push_back(Transmit {
                        proto: match t.proto {
                            Protocol::Udp => Proto::Udp,
                            _ => Proto::Tcp,
                        },
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                }
                Output::Event(e) => self.on_event(e, now),
            }
        }
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected => {
                if matches!(self.state, State::Connecting { .. }) {
                    self.state = State::Connected;
                    self.last_media = now;
                    self.last_keyframe = now;
                    if self.events.len() < MAX_QUEUED_EVENTS {
                        self.events.push_back(WhipEvent::Connected);
                    }
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if matches!(self.state, State::Connected) =>
            {
                self.close_with("ICE consent expired: the publisher stopped answering".into());
            }
            Event::MediaData(m) => self.media(m, now),
            Event::MediaIngressStats(s) => {
                match self.ingress.iter_mut().find(|(mid, _)| *mid == s.mid) {
                    Some(slot) => slot.1 = s,
                    None => self.ingress.push((s.mid, s)),
                }
                let (mut bytes, mut packets, mut nacks) = (0, 0, 0);
                for (_, i) in &self.ingress {
                    bytes += i.bytes;
                    packets += i.packets;
                    nacks += i.nacks;
                }
                (self.stats.bytes, self.stats.packets, self.stats.nacks) = (bytes, packets, nacks);
            }
            _ => {}
        }
    }

    fn media(&mut self, m: MediaData, now: Instant) {
        if !matches!(self.state, State::Connected) {
            return;
        }
        let video = Some(m.mid) == self.video;
        if !video && Some(m.mid) != self.audio {
            return;
        }
        if video && self.video_rid.is_some() && m.rid.is_some() && m.rid != self.video_rid {
            // Another simulcast layer: one stream goes to the hub.
            self.stats.other_layer_frames += 1;
            return;
        }
        self.last_media = now;
        let f = RtpFrame {
            rtp: m.time.numer(),
            arrival: m.network_time,
            contiguous: m.contiguous,
            sender: m.last_sender_info.map(|s| SenderReport {
                ntp: s.ntp_time,
                rtp: s.rtp_time.numer() as u32,
            }),
            data: &m.data,
        };
        let pushed = if video {
            let codec = match m.params.spec().codec {
                RtpCodec::H264 => VideoCodec::H264,
                RtpCodec::H265 => VideoCodec::H265,
                RtpCodec::Av1 => VideoCodec::Av1,
                _ => return,
            };
            self.depack.push_video(codec, &f)
        } else if m.params.spec().codec == RtpCodec::Opus {
            self.depack.push_audio(&f)
        } else {
            return;
        };
        for frame in pushed.frames {
            if frame.track == Track::Video && frame.key && !frame.config {
                self.last_keyframe = now;
            }
            if self.frames.len() >= MAX_QUEUED_FRAMES {
                self.stats.frames_dropped += 1;
                continue;
            }
            self.frames.push_back(frame);
        }
        if pushed.want_keyframe && self.last_request.is_none_or(|t| now >= t + MIN_PLI_GAP) {
            self.request_keyframe(now);
        }
    }
}

/// The simulcast layer a WHIP publisher's offer sends first: the first rid of the video m-line's
/// `a=simulcast:send` (RFC 8853; alternatives after `,`, a paused `~rid` skipped). OBS 32.1 lists
/// its layers `0;1;2` with `0` its own encoder at the output size (the highest): so the first is
/// the one taken. `None` without simulcast.
pub(crate) fn first_send_rid(offer: &str) -> Option<String> {
    let mut in_video = false;
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
            continue;
        }
        let Some(list) = line.strip_prefix("a=simulcast:send ").filter(|_| in_video) else {
            continue;
        };
        let list = list.split(' ').next().unwrap_or("");
        return list
            .split([';', ','])
            .find(|r| !r.is_empty() && !r.starts_with('~'))
            .filter(|r| {
                r.len() <= 16
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
            .map(str::to_string);
    }
    None
}
