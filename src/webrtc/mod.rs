//! WebRTC playback (WHEP) over str0m, sans-IO: an SDP offer in, an SDP answer and a
//! [`WhepSession`] out; datagrams and `now` in, datagrams, events and the next deadline out.
//! No sockets, no clock, no HTTP: the server's UDP endpoint and TCP listener route datagrams
//! here (by [`stun_username_fragment`] for a peer's first STUN request, then by address), the
//! timer heap holds [`WhepSession::next_deadline`], and the hub's frames come in through one
//! [`Packager`] and [`Packetizers`] per stream (serialised and packetized once) and
//! [`WhepSession::send_rtp`] per viewer.
//!
//! What this module does not do: parse HTTP, pick the candidates' addresses (the caller passes
//! them), answer keyframe requests (they come out as events; the GOP cache has the answer), or
//! transcode (AAC audio becomes Opus in `crate::audio`, which `server::webrtc` runs per stream).
//!
//! How the server loop drives it (one UDP socket and one TCP listener on `--webrtc-port`):
//!
//! 1. `POST /{app}/{stream}/whep`: `WhepSession::accept(offer, &cfg, &candidate_addrs(..),
//!    packager.codecs(), now)`; `201` with the answer, or `400` with the error's `Display`.
//!    Index the session by `local_ufrag()`.
//! 2. A datagram (or a whole RFC 4571 frame from a TCP connection's `tcp_framing::Deframer`):
//!    known source address -> that session; else `stun_username_fragment` -> the session with
//!    that ufrag, then remember the address; else drop (no state for strangers).
//!    `handle_datagram`, then drain `poll_transmit` (TCP: `tcp_framing::frame` each) and
//!    `poll_event`, and re-arm the timer at `next_deadline`.
//! 3. `WebRtcEvent::Connected`: send the GOP cache from its keyframe (`Packager::push` on the
//!    cached frames, then `send`); then every live unit. `KeyframeRequest`: answer from the GOP
//!    cache. `Closed`: forget the session and its addresses. `DELETE`: `close`.
//!
//! Modules:
//! - `session`: one viewer: ICE-lite, DTLS, SRTP, RTP/RTCP on one str0m `Rtc`.
//! - `media`: frames to what the packetizers take (Annex B with parameter sets, OBUs, Opus).
//! - `rtp`: a unit's RTP payloads, made once per stream for all its viewers (H.264, Opus).
//! - `sdp`: the offer's limits and what it offers, for the 400's reason.
//! - `stun`: the USERNAME of a STUN binding request, read without state.
//! - `tcp_framing`: RFC 4571 framing for ICE-TCP (a 2-byte length before each packet).
//! - `crypto`: the pure-Rust crypto backend str0m runs on.

#[cfg(test)]
mod bridge_tests;
pub mod crypto;
pub mod depack;
pub mod ingest;
#[cfg(test)]
mod ingest_tests;
pub mod media;
pub mod rtp;
#[cfg(test)]
mod rtp_tests;
pub mod sdp;
pub mod session;
pub mod stun;
pub mod tcp_framing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use ingest::{IngestStats, WhipEvent, WhipSession};
pub use media::{MediaUnit, Packager, ReorderDrops, StreamCodecs, UnitKind};
pub use rtp::{Packetizers, RtpUnit};
pub use session::{KeyframeKind, SessionStats, WebRtcEvent, WhepSession};
pub use stun::stun_username_fragment;

/// The addresses to offer as candidates: the local address the offer's HTTP request arrived
/// on, then every `--webrtc-public-ip`, each with the WebRTC port; unspecified addresses
/// (0.0.0.0, ::) and repeats left out. IPv4-mapped IPv6 addresses are offered as IPv4.
pub fn candidate_addrs(http_local: IpAddr, public: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for ip in std::iter::once(http_local).chain(public.iter().copied()) {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let addr = SocketAddr::new(ip, port);
        if !ip.is_unspecified() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The UDP port for WebRTC media (ICE-lite) and, with the same number, ICE-TCP passive.
pub const DEFAULT_PORT: u16 = 8189;

/// The transport a datagram came on or goes out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Udp,
    /// ICE-TCP (RFC 6544): one packet per RFC 4571 frame; `tcp_framing` does the framing.
    Tcp,
}

/// One datagram to send: over UDP from `source` (our local address) to `destination`, or over
/// the TCP connection between the two (framed by the caller with `tcp_framing::frame`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub proto: Proto,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Limits and timers for every session; one per server, shared by reference.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The largest SDP offer taken (bytes).
    pub max_offer_bytes: usize,
    /// ICE and DTLS must complete within this long after the answer, or the session ends.
    pub connect_timeout: Duration,
    /// Once connected: no datagram from the viewer for this long ends the session (RFC 7675's
    /// consent expiry; str0m's ICE-lite agent gives up on a pair after 15 s, which also ends it).
    pub consent_timeout: Duration,
    /// Video RTP packets kept per viewer to answer NACKs (str0m's send buffer).
    pub video_history_packets: usize,
    /// Audio RTP packets kept per viewer.
    pub audio_history_packets: usize,
    /// How often str0m reports the per-session counters (`SessionStats`).
    pub stats_interval: Duration,
    /// WHIP: a keyframe is asked for when none came for this long (`--webrtc-keyframe-interval`);
    /// `None` never asks on a clock (broken pictures are still answered with a PLI).
    pub keyframe_interval: Option<Duration>,
    /// WHIP: no media from a connected publisher for this long ends the publish.
    pub media_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_offer_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(10),
            consent_timeout: Duration::from_secs(30),
            // About 1.2 MB of video per viewer: two seconds of a 4 Mbit/s stream.
            video_history_packets: 1000,
            audio_history_packets: 100,
            stats_interval: Duration::from_secs(1),
            keyframe_interval: Some(Duration::from_secs(2)),
            media_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an offer was refused: each `Display` is the 400's body, fixed and user-readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebRtcError {
    /// The offer is over `SessionConfig::max_offer_bytes`.
    OfferTooLarge { size: usize, limit: usize },
    /// The offer does not parse as SDP, or str0m refused it (the reason says which).
    BadOffer(String),
    /// The stream's video codec is not among the offer's video codecs.
    NoVideoCodec { stream: String, offered: String },
    /// Neither the stream's video nor its audio can be sent to this offer (or the stream has
    /// nothing a browser can play yet).
    NothingToSend { stream: String, offered: String },
    /// WHIP: the offer has no H.264, HEVC or Opus m-line to publish on.
    NothingToTake { offered: String },
    /// The server has no address to give as a candidate.
    NoCandidate,
    /// A fault on the server's side (a 500, not a 400).
    Internal(&'static str),
}

impl fmt::Display for WebRtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebRtcError::OfferTooLarge { size, limit } => {
                write!(f, "SDP offer is too large ({size} bytes; the limit is {limit})")
            }
            WebRtcError::BadOffer(why) => write!(f, "SDP offer is not valid: {why}"),
            WebRtcError::NoVideoCodec { stream, offered } => write!(
                f,
                "the offer has no video codec this stream can send (stream: {stream}; offer: {offered})"
            ),
            WebRtcError::NothingToSend { stream, offered } => write!(
                f,
                "the offer has no codec this stream can send (stream: {stream}; offer: {offered})"
            ),
            WebRtcError::NothingToTake { offered } => write!(
                f,
                "the offer has no codec rtmpd takes (H.264, HEVC or Opus; offer: {offered})"
            ),
            WebRtcError::NoCandidate => write!(f, "the server has no WebRTC address to offer"),
            WebRtcError::Internal(why) => write!(f, "WebRTC is not available: {why}"),
        }
    }
}

impl std::error::Error for WebRtcError {}
