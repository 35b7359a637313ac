//! rtmpd: a live-streaming server. RTMP in; RTMP, HTTP-FLV, WebSocket-FLV, HLS and MP4 out.
//!
//! Media flows one way, and modules to the right never import modules to their left:
//!
//! ```text
//! socket bytes -> protocol machine -> origin core -> hub ---------------------> players' queues -> sockets
//!  server/mod.rs   rtmp/session.rs    server/       hub/mod.rs                   hub/queue.rs      server/netio.rs
//!  (mio: the only  http/request.rs    origin.rs     Hub::frame_inner:             (bytes::Bytes,
//!   place with     ws, gateway pulls  (judges        1. media/time.rs Normaliser  serialised once
//!   sockets)       (sans-IO)          publish/play,     (the ingest normaliser:   per output form)
//!                                     returns           stream time, wraps,
//!                                     Actions)          jumps, discontinuity)
//!                                                    2. media/meta.rs onMetaData
//!                                                    3. GOP cache, fan-out ------> hub readers (hub/reader.rs):
//!                                                                                  record/pool.rs RecorderReader
//!                                                                                  -> worker threads -> record/{flv,hls,fmp4}.rs
//! ```
//!
//! - `codec`: leaf encodings any layer may import (byte reader, the RTMP chunk encoder and its
//!   chunk stream ids, FLV tag framing, HTTP chunked coding, response heads, WebSocket frames,
//!   what our JSON documents share over serde_json); it imports nothing from the rest of the crate.
//! - `media`: the protocol-free `Frame`, stream names, codec configuration parsing, the ingest
//!   normaliser (`media::time`) and the one `onMetaData` rule (`media::meta`).
//! - `amf`, `rtmp`: AMF0/AMF3 values; the RTMP handshake, chunk stream and sessions, sans-IO.
//! - `http`: request parsing, responses, routing, WebSocket framing, HTTP dates, the static file responder (no fs: `server::fs`).
//! - `mux`: FLV, MPEG-TS/HLS, ISO BMFF (fMP4, MP4), m3u8 playlists: frames in, bytes out, no files.
//! - `llhls`: Low-Latency HLS core: the in-memory part window, its playlist, blocking reload; sans-IO.
//! - `hub`: streams, publishers and players, the GOP cache, per-viewer bounded queues, and the
//!   readers that are not players (recorders) with their back-pressure on the publisher.
//! - `record`: the recorder worker pool and its sinks (the only writers of recordings); the per-stream
//!   session index, retention (its own thread) and playback cuts (their own thread).
//! - `server`: the one `mio::Poll` loop per process (`server/mod.rs`, `netio.rs`) and the sans-IO
//!   origin core (`server/origin.rs`), the one place where publish and play are judged.
//! - `tls`: TLS for the RTMPS and HTTPS listeners (a sans-IO wrapper of rustls) and the
//!   certificate files and their reload; `server/netio.rs` puts it between the socket and the protocols.
//! - `stats`: per-stream health verdicts and the 10-minute history for the dashboard, sans-IO.
//! - `gateway`: the FLV relay and the file gateway modes.

/// The release version, for the API, the gateway's User-Agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod access;
pub mod amf;
pub mod codec;
pub mod config;
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
pub mod stats;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tls;
