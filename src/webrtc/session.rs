//! One WHEP viewer: a str0m `Rtc` in ICE-lite mode that answers the viewer's offer, completes
//! ICE, DTLS and SRTP, and sends the stream's units as RTP. Inputs are `handle_datagram` and
//! `handle_timeout` with `now`; outputs are `poll_transmit`, `poll_event` and `next_deadline`.
//! str0m's output is drained after every input into two queues here, so the caller can empty
//! them whenever it likes; both are bounded.
//!
//! Not here: which frames to send (the caller sends the GOP cache's keyframe first and answers
//! `KeyframeRequest` from it), the socket, and the routing of a viewer's first packet
//! (`stun_username_fragment`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::{Codec as RtpCodec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

use super::media::{codec_name, sendable_audio, sendable_video, MediaUnit, StreamCodecs, UnitKind};
use super::rtp::{Packetizers, RtpGroup, RtpPayload, RtpUnit};
use super::sdp::offered_codecs;
use super::{crypto, Proto, SessionConfig, Transmit, WebRtcError};
use crate::media::frame::Codec;

/// Datagrams held for the caller between drains: a keyframe of a few hundred packets fits;
/// past this the oldest are dropped (and counted), as a full socket buffer would.
const MAX_QUEUED_TRANSMITS: usize = 4096;
/// Events held for the caller.
const MAX_QUEUED_EVENTS: usize = 64;

/// Which keyframe request the viewer sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeKind {
    Pli,
    Fir,
}

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebRtcEvent {
    /// ICE, DTLS and SRTP are up: media can flow. Send the cached keyframe now.
    Connected,
    /// The viewer asked for a keyframe (PLI or FIR): send the GOP cache's keyframe.
    KeyframeRequest(KeyframeKind),
    /// The session is over (timeout, consent expiry, the viewer's DTLS close, an error, or
    /// `close`); no more output. Remove it from the routing tables.
    Closed { reason: String },
}

/// Counters of one session (str0m's egress counters are refreshed every
/// `SessionConfig::stats_interval`; the frame counters are ours and always current).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// RTP payload bytes and packets sent (audio and video).
    pub bytes: u64,
    pub packets: u64,
    /// NACK, PLI and FIR messages received from the viewer.
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    /// Units handed to str0m.
    pub frames_sent: u64,
    /// Units not sent: before the session connected, while waiting for a keyframe, or refused.
    pub frames_dropped: u64,
    /// Datagrams dropped because the caller did not drain `poll_transmit`.
    pub transmits_dropped: u64,
}

/// One negotiated m-line we send on.
#[derive(Clone, Copy, Debug)]
struct Track {
    mid: Mid,
    pt: Pt,
    /// The shared packets this m-line sends (`RtpUnit::packets` of this group), or `None`:
    /// str0m's frame API packetizes for this viewer.
    group: Option<RtpGroup>,
    /// The next RTP sequence number of shared packets (from 0, as str0m's frame API counts).
    seq: SeqNo,
}

#[derive(Debug)]
enum State {
    /// Waiting for ICE and DTLS, until the deadline.
    Connecting {
        deadline: Instant,
    },
    Connected,
    Closed,
}

pub struct WhepSession {
    rtc: Rtc,
    state: State,
    local_ufrag: String,
    video: Option<Track>,
    audio: Option<Track>,
    /// Video is dropped until a keyframe (from connection on, and after a refused write).
    wait_keyframe: bool,
    consent_timeout: Duration,
    last_heard: Instant,
    rtc_deadline: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<WebRtcEvent>,
    /// Egress counters per m-line, summed into `stats`.
    egress: Vec<(Mid, str0m::stats::MediaEgressStats)>,
    stats: SessionStats,
    /// Our own `close`'s reason while str0m drains its close output.
    local_close: Option<String>,
    /// `send_rtp` queued packets that `flush` has not sent yet.
    unflushed: bool,
    /// The turn (its `now`) whose queued packets wait for the next one (`flush_next_turn`).
    held_turn: Option<Instant>,
}

impl std::fmt::Debug for WhepSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepSession")
            .field("ufrag", &self.local_ufrag)
            .field("state", &self.state)
            .finish()
    }
}

impl WhepSession {
    /// Answers a viewer's SDP offer. `local_candidates` are our addresses: each is offered as a
    /// UDP host candidate and as an ICE-TCP passive one on the same port. The error's `Display`
    /// is the reason for the 400.
    pub fn accept(
        offer: &str,
        cfg: &SessionConfig,
        local_candidates: &[SocketAddr],
        codecs: &StreamCodecs,
        now: Instant,
    ) -> Result<(WhepSession, String), WebRtcError> {
        if offer.len() > cfg.max_offer_bytes {
            return Err(WebRtcError::OfferTooLarge {
                size: offer.len(),
                limit: cfg.max_offer_bytes,
            });
        }
        let parsed = SdpOffer::from_sdp_string(offer)
            .map_err(|_| WebRtcError::BadOffer(sdp_parse_reason(offer)))?;
        let offered = offered_codecs(offer);
        let offered_mids: Vec<Mid> = parsed.media_lines.iter().map(|m| m.mid()).collect();
        let video = codecs.video.filter(|c| sendable_video(*c));
        let audio = codecs.audio.filter(|c| sendable_audio(*c));
        if video.is_none() && audio.is_none() {
            return Err(WebRtcError::NothingToSend {
                stream: codecs.describe(),
                offered: offered.describe_all(),
            });
        }

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
            .set_send_buffer_video(cfg.video_history_packets.max(1))
            .set_send_buffer_audio(cfg.audio_history_packets.max(1))
            .set_stats_interval(Some(cfg.stats_interval))
            .clear_codecs()
            // Chrome's header extensions (str0m's standard map) but transport-wide congestion
            // control: without it the browser sends no TWCC feedback (an RTCP packet per viewer
            // every ~50-100 ms to decrypt and apply) and each packet carries no TWCC number. We do
            // not adapt the bit rate (the stream is sent as published), so the feedback would buy
            // nothing; NACK and PLI/FIR are separate RTCP feedback and stay.
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(2, Extension::AbsoluteSendTime)
            .set_extension(4, Extension::RtpMid)
            .set_extension(10, Extension::RtpStreamId)
            .set_extension(11, Extension::RepairedRtpStreamId)
            .set_extension(13, Extension::VideoOrientation);
        let codec_config = config.codec_config();
        match video {
            Some(Codec::Avc) => add_h264(codec_config, codecs.h264_profile_level_id),
            Some(Codec::Hevc) => codec_config.enable_h265(true),
            Some(Codec::Av1) => codec_config.enable_av1(true),
            Some(Codec::Vp9) => codec_config.enable_vp9(true),
            Some(Codec::Vp8) => codec_config.enable_vp8(true),
            _ => {}
        }
        // Opus is configured even for a stream without it: an offered audio m-line must get a
        // payload type in the answer (str0m writes an empty m-line otherwise, which browsers and
        // str0m itself refuse). Nothing is sent on it unless the stream has Opus.
        codec_config.enable_opus(true, false);
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

        // str0m asserts some invariants of the negotiation with panics; an offer must never take
        // the server down, so a panic here is an invalid offer.
        let answer = crate::contain::run(|| rtc.sdp_api().accept_offer(parsed))
            .map_err(|_| WebRtcError::BadOffer("the offer could not be negotiated".into()))?
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;

        let mut session = WhepSession {
            rtc,
            state: State::Connecting {
                deadline: now + cfg.connect_timeout,
            },
            local_ufrag,
            video: None,
            audio: None,
            wait_keyframe: true,
            consent_timeout: cfg.consent_timeout,
            last_heard: now,
            rtc_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            egress: Vec::new(),
            stats: SessionStats::default(),
            local_close: None,
            unflushed: false,
            held_turn: None,
        };
        session.drain(now);
        for mid in offered_mids {
            let Some(kind) = session.rtc.media(mid).map(|m| m.kind()) else {
                continue;
            };
            let Some(writer) = session.rtc.writer(mid) else {
                continue; // not a sending direction
            };
            let params: Vec<PayloadParams> = writer.payload_params().copied().collect();
            match kind {
                MediaKind::Video if session.video.is_none() => {
                    if let Some(pt) = video.and_then(|v| pick_video_pt(&params, v, codecs)) {
                        // pick_video_pt takes H.264 in packetization mode 1 only.
                        let group = video.and_then(RtpGroup::of);
                        session.video = Some(Track {
                            mid,
                            pt,
                            group,
                            seq: SeqNo::default(),
                        });
                    }
                }
                MediaKind::Audio if session.audio.is_none() && audio.is_some() => {
                    if let Some(p) = params.iter().find(|p| p.spec().codec == RtpCodec::Opus) {
                        session.audio = Some(Track {
                            mid,
                            pt: p.pt(),
                            group: Some(RtpGroup::Opus),
                            seq: SeqNo::default(),
                        });
                    }
                }
                _ => {}
            }
        }
        // The NACK history's size (str0m 0.24 takes it per stream, not from its config's send
        // buffer): packets a viewer may ask for again, the shared payloads (video: Opus is not
        // resent). str0m also drops what is older than 3 s.
        if let Some(v) = session.video {
            if let Some(tx) = session.rtc.direct_api().stream_tx_by_mid(v.mid, None) {
                tx.set_rtx_cache(
                    cfg.video_history_packets.max(1),
                    Duration::from_secs(3),
                    Some(0.15),
                );
            }
        }
        if video.is_some() && session.video.is_none() && offered.has_video {
            return Err(WebRtcError::NoVideoCodec {
                stream: video.map_or("none", codec_name).into(),
                offered: offered.describe_video(),
            });
        }
        if session.video.is_none() && session.audio.is_none() {
            return Err(WebRtcError::NothingToSend {
                stream: codecs.describe(),
                offered: offered.describe_all(),
            });
        }
        Ok((session, answer.to_sdp_string()))
    }

    /// Our ICE username fragment: a viewer's STUN requests name it first in USERNAME.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Whether this datagram is for this session: a STUN request with our credentials, or
    /// anything from an address ICE has validated. Garbage is never accepted.
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

    /// One datagram from the viewer (a whole RFC 4571 frame for TCP). Datagrams that are not
    /// STUN, DTLS, RTP or RTCP, or that this session does not accept (wrong ICE credentials,
    /// an unknown peer), are dropped without changing any state.
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
        // A peer's packet must never take the server down: a panic in str0m ends this session.
        let rtc = &mut self.rtc;
        match crate::contain::run(|| rtc.handle_input(input)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.close_with(format!("WebRTC error: {e}"));
                return;
            }
            Err(_) => {
                self.close_with("WebRTC error: the viewer's packet broke the session".into());
                return;
            }
        }
        self.drain(now);
    }

    /// Runs the timers due at `now` (str0m's, the connect deadline, consent expiry).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed => return,
            State::Connecting { deadline } if now >= deadline => {
                self.close_with("ICE and DTLS did not complete in time".into());
                return;
            }
            State::Connected if now >= self.last_heard + self.consent_timeout => {
                self.close_with("ICE consent expired: the viewer stopped answering".into());
                return;
            }
            _ => {}
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.close_with(format!("WebRTC error: {e}"));
            return;
        }
        self.drain(now);
    }

    /// When `handle_timeout` must run next; `None` once closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        let own = match self.state {
            State::Closed => return None,
            State::Connecting { deadline } => deadline,
            State::Connected => self.last_heard + self.consent_timeout,
        };
        Some(self.rtc_deadline.map_or(own, |t| t.min(own)))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<WebRtcEvent> {
        self.events.pop_front()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Whether the negotiation gave this session a video (audio) m-line to send on.
    pub fn sends(&self, kind: UnitKind) -> bool {
        match kind {
            UnitKind::Video => self.video.is_some(),
            UnitKind::Audio => self.audio.is_some(),
        }
    }

    /// Sends one unit, packetized for this viewer alone, and `flush`es (tests).
    pub fn send(&mut self, unit: &MediaUnit, now: Instant) {
        let rtp = Packetizers::new().packetize(unit.clone());
        self.send_rtp(&rtp, now);
        self.flush(now);
    }

    /// Queues one unit: its shared RTP payloads when this viewer's m-line is of their group
    /// (only the header and SRTP are this viewer's), else through str0m's frame API. Nothing
    /// leaves before `flush`: a loop turn's units go out together, in one pass of str0m's
    /// timers and output. Before the session is connected every unit is dropped (counted):
    /// str0m would drop them too, and queueing them would be unbounded. Video starts at a
    /// keyframe.
    pub fn send_rtp(&mut self, rtp: &RtpUnit, now: Instant) {
        let unit = &rtp.unit;
        let track = match unit.kind {
            UnitKind::Video => &mut self.video,
            UnitKind::Audio => &mut self.audio,
        };
        let Some(track) = track else {
            return; // not negotiated: nothing to count
        };
        if !matches!(self.state, State::Connected) {
            self.stats.frames_dropped += 1;
            return;
        }
        if unit.kind == UnitKind::Video {
            if self.wait_keyframe && !unit.key {
                self.stats.frames_dropped += 1;
                return;
            }
            self.wait_keyframe = false;
        }
        let sent = match &rtp.packets {
            Some((group, packets)) if track.group == Some(*group) => {
                write_packets(&mut self.rtc, track, rtp, packets, now)
            }
            _ => write_frame(&mut self.rtc, track, unit, now),
        };
        match sent {
            Ok(()) => {
                self.stats.frames_sent += 1;
                self.unflushed = true;
            }
            Err(e) => {
                log::debug!("webrtc {}: a frame was not sent: {e}", self.local_ufrag);
                self.stats.frames_dropped += 1;
                if unit.kind == UnitKind::Video {
                    self.wait_keyframe = true;
                }
            }
        }
    }

    /// Sends what `send_rtp` queued: str0m's timers run at `now` (its send queues are released
    /// there) and its output is drained, as `handle_timeout` would on the next loop turn.
    pub fn flush(&mut self, now: Instant) {
        if !std::mem::take(&mut self.unflushed) || !matches!(self.state, State::Connected) {
            return;
        }
        // The loop's paths name a turn's time to the millisecond or finer.
        if self
            .held_turn
            .is_some_and(|t| now < t + Duration::from_millis(1))
        {
            // Connected in this turn (`flush_next_turn`): these go with the cached GOP.
            self.drain(now);
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.close_with(format!("WebRTC error: {e}"));
            return;
        }
        self.drain(now);
    }

    /// Sends what `send_rtp` queued on the next loop turn (the session's deadline becomes `now`,
    /// its timer sends them), not in this one: for the cached GOP on connecting, which is queued
    /// in the turn the DTLS handshake completed. Its last flight then reaches the viewer before
    /// the SRTP packets, not in the same read: a client that installs its SRTP keys when it next
    /// polls (str0m does) drops SRTP that arrives with the handshake's end, over ICE-TCP above all.
    pub fn flush_next_turn(&mut self, now: Instant) {
        self.unflushed = false;
        self.held_turn = Some(now);
        if matches!(self.state, State::Connected) {
            self.drain(now);
        }
    }

    /// Ends the session (a DELETE): str0m queues its DTLS close_notify and RTCP BYE, which
    /// `poll_transmit` hands out; then `Closed` with `reason`.
    pub fn close(&mut self, now: Instant, reason: &str) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.local_close = Some(reason.into());
        let _ = self.rtc.close();
        self.drain(now);
        self.close_with(reason.into());
    }

    fn close_with(&mut self, reason: String) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Closed;
        self.rtc.disconnect();
        self.rtc_deadline = None;
        self.push_event(WebRtcEvent::Closed { reason });
    }

    fn push_event(&mut self, e: WebRtcEvent) {
        // `Closed` is always delivered; keyframe requests beyond the bound are redundant.
        if self.events.len() < MAX_QUEUED_EVENTS || matches!(e, WebRtcEvent::Closed { .. }) {
            self.events.push_back(e);
        }
    }

    /// Drains str0m's output until its next timeout.
    fn drain(&mut self, now: Instant) {
        loop {
            if matches!(self.state, State::Closed) && !self.rtc.is_alive() {
                return;
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.close_with(format!("WebRTC error: {e}"));
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.rtc_deadline = Some(t.max(now));
                    if !self.rtc.is_alive() {
                        let reason = self.local_close.take();
                        self.close_with(
                            reason.unwrap_or_else(|| "the viewer closed the connection".into()),
                        );
                    }
                    return;
                }
                Output::Transmit(t) => {
                    if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
                        self.transmits.pop_front();
                        self.stats.transmits_dropped += 1;
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
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                if matches!(self.state, State::Connecting { .. }) {
                    self.state = State::Connected;
                    self.wait_keyframe = true;
                    self.push_event(WebRtcEvent::Connected);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if matches!(self.state, State::Connected) =>
            {
                self.close_with("ICE consent expired: the viewer stopped answering".into());
            }
            Event::KeyframeRequest(r) => {
                let kind = match r.kind {
                    KeyframeRequestKind::Pli => KeyframeKind::Pli,
                    KeyframeRequestKind::Fir => KeyframeKind::Fir,
                };
                self.push_event(WebRtcEvent::KeyframeRequest(kind));
            }
            Event::MediaEgressStats(s) => {
                match self.egress.iter_mut().find(|(mid, _)| *mid == s.mid) {
                    Some(slot) => slot.1 = s,
                    None => self.egress.push((s.mid, s)),
                }
                let (frames_sent, frames_dropped, transmits_dropped) = (
                    self.stats.frames_sent,
                    self.stats.frames_dropped,
                    self.stats.transmits_dropped,
                );
                let mut st = SessionStats {
                    frames_sent,
                    frames_dropped,
                    transmits_dropped,
                    ..SessionStats::default()
                };
                for (_, e) in &self.egress {
                    st.bytes += e.bytes;
                    st.packets += e.packets;
                    st.nacks += e.nacks;
                    st.plis += e.plis;
                    st.firs += e.firs;
                }
                self.stats = st;
            }
            _ => {}
        }
    }
}

/// The shared payloads of one unit on this viewer's stream: str0m writes the header (its
/// payload type, SSRC, sequence numbers, extensions), keeps the nackable packets for
/// resends, and maps the RTP time to `now` for its sender reports, as its frame API does.
fn write_packets(
    rtc: &mut Rtc,
    track: &mut Track,
    rtp: &RtpUnit,
    packets: &[RtpPayload],
    now: Instant,
) -> Result<(), String> {
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(track.mid, None) else {
        return Err("no RTP stream for the m-line".into());
    };
    let time = rtp.rtp_time();
    for p in packets {
        let write = RtpWrite::new(track.pt, track.seq.inc(), time, now, p.data.clone())
            .marker(p.marker)
            .nackable(rtp.nackable);
        tx.write_rtp(write);
    }
    Ok(())
}

/// One unit through str0m's frame API (its packetizer, for this viewer alone).
fn write_frame(rtc: &mut Rtc, track: &Track, unit: &MediaUnit, now: Instant) -> Result<(), String> {
    let rtp_time = match unit.kind {
        UnitKind::Video => MediaTime::new(unit.pts_ms.wrapping_mul(90), Frequency::NINETY_KHZ),
        UnitKind::Audio => MediaTime::new(unit.pts_ms.wrapping_mul(48), Frequency::FORTY_EIGHT_KHZ),
    };
    let Some(writer) = rtc.writer(track.mid) else {
        return Err("no writer for the m-line".into());
    };
    writer
        .write(track.pt, now, rtp_time, unit.data.clone())
        .map_err(|e| e.to_string())
}

/// A datagram as str0m's input at `at`; `None` when str0m cannot hold it (too large).
pub(super) fn receive(
    at: Instant,
    proto: Proto,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: &[u8],
) -> Option<Input<'_>> {
    let contents = bytes.try_into().ok()?;
    Some(Input::Receive(
        at,
        Receive {
            proto: protocol(proto),
            source,
            destination,
            contents,
        },
    ))
}

pub(super) fn protocol(p: Proto) -> Protocol {
    match p {
        Proto::Udp => Protocol::Udp,
        Proto::Tcp => Protocol::Tcp,
    }
}

/// H.264 with packetization-mode 1: the stream's own profile-level-id first, then the common
/// browser profiles, so a browser that offers only Constrained Baseline still gets video
/// (browsers decode higher profiles than they offer; MediaMTX answers the same way). A profile
/// that str0m would match to one already listed is left out: two local payload types matching
/// one offered payload type make str0m panic ("Pt locked multiple times").
fn add_h264(cc: &mut str0m::format::CodecConfig, profile_level_id: Option<u32>) {
    const COMMON: [u32; 5] = [0x42e01f, 0x42001f, 0x4d001f, 0x64001f, 0x640c1f];
    let ids = profile_level_id.into_iter().chain(COMMON);
    // Dynamic payload types 96.. for the codecs, 106.. for their retransmissions.
    let mut n = 0u8;
    for id in ids {
        let probe = PayloadParams::new(
            96.into(),
            None,
            CodecSpec {
                codec: RtpCodec::H264,
                clock_rate: Frequency::NINETY_KHZ,
                channels: None,
                format: FormatParams {
                    level_asymmetry_allowed: Some(true),
                    packetization_mode: Some(1),
                    profile_level_id: Some(id),
                    ..FormatParams::default()
                },
            },
        );
        if cc.match_params(probe).is_some() {
            continue;
        }
        cc.add_h264((96 + n).into(), Some((106 + n).into()), true, id);
        n += 1;
    }
}

/// The payload type to send the stream's video with: for H.264 the negotiated one whose
/// profile is the stream's, else any with packetization-mode 1.
fn pick_video_pt(params: &[PayloadParams], video: Codec, codecs: &StreamCodecs) -> Option<Pt> {
    let want = match video {
        Codec::Avc => RtpCodec::H264,
        Codec::Hevc => RtpCodec::H265,
        Codec::Av1 => RtpCodec::Av1,
        Codec::Vp9 => RtpCodec::Vp9,
        Codec::Vp8 => RtpCodec::Vp8,
        _ => return None,
    };
    let mut candidates = params.iter().filter(|p| p.spec().codec == want);
    if want != RtpCodec::H264 {
        return candidates.next().map(|p| p.pt());
    }
    let mode1: Vec<&PayloadParams> = candidates
        .filter(|p| p.spec().format.packetization_mode == Some(1))
        .collect();
    let profile = |id: Option<u32>| id.map(|v| v >> 8);
    mode1
        .iter()
        .find(|p| {
            profile(p.spec().format.profile_level_id) == profile(codecs.h264_profile_level_id)
        })
        .or(mode1.first())
        .map(|p| p.pt())
}

/// A random ICE token of `n` letters and digits (RFC 8839 `ice-char` without `+` and `/`, so
/// the ufrag can also name the session in a URL). `None` when the system's generator fails:
/// a guessable ICE password is worse than a refused viewer.
pub(super) fn random_token(n: usize) -> Option<String> {
    use ring::rand::SecureRandom;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; n];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(
        bytes
            .iter()
            .map(|b| CHARS[*b as usize % CHARS.len()] as char)
            .collect(),
    )
}

/// Why an offer does not parse, for the 400: the first line that is not `type=value`, else a
/// plain "does not parse". str0m's own parse error is not shown: it names a pointer (an address
/// in the server's memory, which a client must not learn) and nothing a user could act on.
fn sdp_parse_reason(offer: &str) -> String {
    for (i, line) in offer.lines().enumerate() {
        let b = line.as_bytes();
        let typed = b.len() >= 2 && b[0].is_ascii_lowercase() && b[1] == b'=';
        if !typed && !line.trim().is_empty() {
            return format!("SDP parse error: line {} is not a type=value line", i + 1);
        }
    }
    "SDP parse error: a line's value does not parse".into()
}
