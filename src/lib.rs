//! rtmpd: a live-streaming server. RTMP in; RTMP, HTTP-FLV, WebSocket-FLV, HLS and MP4 out.
//!
//! Media flows one way, and modules to the right never import modules to their left:
//!
//! ```text
//! socket bytes -> protocol machine -> origin core -> hub ---------------------> players' queues -> sockets
//!  server/mod.rs   rtmp/session.rs    origin.rs     hub/mod.rs                   hub/queue.rs      server/netio.rs
//!  (mio: the only  http/request.rs    (judges        Hub::frame_inner:             (bytes::Bytes,
//!   place with     ws, gateway pulls  publish/play,  1. media/time.rs Normaliser  serialised once
//!   sockets)       (sans-IO)          returns           (the ingest normaliser:   per output form)
//!                                     Actions)          stream time, wraps,
//!                                                       jumps, discontinuity)
//!                                                    2. media/meta.rs onMetaData
//!                                                    3. GOP cache, fan-out ------> hub readers (hub/reader.rs):
//!                                                                                  record/pool.rs RecorderReader
//!                                                                                  -> worker threads -> record/{flv,hls,fmp4}.rs
//!                                                                                  origin/llhls.rs: the LL-HLS windows
//! ```
//!
//! The modules, from the leaves up; each imports only modules listed before it (`make lint` runs
//! `tools/modgraph.py`, which fails on any cycle between them):
//!
//! - `contain`: lets a third-party protocol library's panic (str0m) end only its session.
//! - `codec`: leaf encodings any layer may import (byte reader, the RTMP chunk encoder and its
//!   chunk stream ids, FLV tag framing, HTTP chunked coding, response heads, WebSocket frames,
//!   query strings and the masking of their credentials, what our JSON documents share over
//!   serde_json); it imports nothing from the rest of the crate.
//! - `tls`: TLS for the RTMPS and HTTPS listeners and the gateway's https:// upstream (a sans-IO
//!   wrapper of rustls), the certificate files and their reload, `TlsConfig`; `server/tlsio.rs`
//!   puts it between the socket and the protocols.
//! - `amf`: AMF0/AMF3 values with caps.
//! - `media`: the protocol-free `Frame`, stream names and the session-name rule, codec
//!   configuration parsing, the ingest normaliser (`media::time`) and the one `onMetaData` rule
//!   (`media::meta`).
//! - `audio`: the audio bridge (AAC to Opus for WebRTC viewers): decoder, resampler, encoder and
//!   the worker thread each bridged stream runs on, with bounded queues both ways.
//! - `rtmp`: the RTMP handshake, chunk stream and sessions, sans-IO.
//! - `http`: request parsing, responses, routing, WebSocket framing, HTTP dates, the static file
//!   responder (no fs: `server::fs`).
//! - `mux`: FLV, MPEG-TS/HLS, ISO BMFF (fMP4, MP4), m3u8 playlists: frames in, bytes out, no files.
//! - `access`: who may publish, play, fetch recordings and read the API (tokens, the auth file,
//!   signed URLs, hooks on worker threads), connection and stream limits, `AccessConfig` and
//!   `LimitsConfig`; the refusal as each protocol says it is `server::reply`.
//! - `stats`: per-stream health verdicts and the 10-minute history for the dashboard, sans-IO.
//! - `gateway`: the FLV relay's sans-IO upstream client (URL, request, response framing, demux,
//!   timestamps); its sockets are `server::upstream`.
//! - `llhls`: Low-Latency HLS core: the in-memory part window, its playlist, blocking reload,
//!   `LlhlsConfig`; sans-IO.
//! - `hub`: streams, publishers and players, the GOP cache, per-viewer bounded queues, and the
//!   readers that are not players (recorders) with their back-pressure on the publisher.
//! - `record`: the recorder worker pool and its sinks (the only writers of recordings); the per-stream
//!   session index, retention (its own thread) and playback cuts (their own thread).
//! - `webrtc`: WHEP playback sessions over str0m (ICE-lite, DTLS, SRTP, RTP), sans-IO.
//! - `srt`: the SRT listener (handshake with SYN cookies, stream ids, ACK/NAK retransmission,
//!   TSBPD, AES-CTR), sans-IO: datagrams and `now` in; datagrams, events and a deadline out.
//! - `origin`: the sans-IO origin core (`origin.rs`), the one place where publish and play are
//!   judged, and the reader half of LL-HLS (`origin/llhls.rs`: the windows fed as hub readers);
//!   no mio.
//! - `config`: command line -> validated `Config` per mode; it fills the subsystems' own config
//!   types (`access`, `tls`, `llhls`, `record`, `gateway`).
//! - `server`: the one `mio::Poll` loop per process (`server/mod.rs`, `netio.rs`) and everything
//!   with a socket: the protocol glue, the refusal replies (`reply.rs`), the loop half of LL-HLS,
//!   static files, the API; the origin (`start.rs: run_origin`), the file gateway
//!   (`start.rs: run_file_gateway`) and the FLV gateway (`upstream/: run_flv_gateway`).
//! - `testutil` (tests only): a seeded random source and temporary folders for the unit tests.

/// The release version, for the API, the gateway's User-Agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod access;
pub mod amf;
pub mod audio;
pub mod codec;
pub mod config;
pub mod contain;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod llhls;
pub mod media;
pub mod mux;
pub mod origin;
pub mod record;
pub mod rtmp;
pub mod server;
pub mod srt;
pub mod stats;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tls;
pub mod webrtc;
