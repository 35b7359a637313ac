//! rtmpd: a live-streaming server. RTMP in; RTMP, HTTP-FLV, WebSocket-FLV, HLS and MP4 out.
//!
//! Media flows one way, and modules to the right never import modules to their left:
//!
//! ```text
//! socket bytes -> protocol machine (sans-IO) -> media::Frame -> hub (GOP cache, fan-out) -> outputs
//!   server/        rtmp/ http/                   media/          hub/                      players (server/)
//!   (mio here)                                                                            recorders (record/, mux/)
//! ```
//!
//! - `codec`: leaf encodings any layer may import (HTTP chunked coding, client-side response
//!   heads, WebSocket frames); no state beyond one message.
//! - `media`: the protocol-free `Frame`, stream names, codec configuration parsing.
//! - `codec`: leaf encodings any layer may import (the civil calendar, the RTMP chunk encoder and
//!   the chunk stream ids, FLV tag framing); it imports nothing from the rest of the crate.
//! - `amf`, `rtmp`: AMF0/AMF3 values; the RTMP handshake, chunk stream and sessions, sans-IO.
//! - `http`: request parsing, responses, routing, WebSocket framing, the static file responder (no fs: `server::fs`).
//! - `mux`: FLV, MPEG-TS/HLS, ISO BMFF (fMP4, MP4), m3u8 playlists: frames in, bytes out, no files.
//! - `llhls`: Low-Latency HLS core: the in-memory part window, its playlist, blocking reload; sans-IO.
//! - `hub`: streams, publishers and players, the GOP cache, per-viewer bounded queues.
//! - `record`: the recorder worker pool and its sinks (the only writers of recordings).
//! - `server`: the one `mio::Poll` loop per process and the glue from sockets to the above.
//! - `stats`: per-stream health verdicts and the 10-minute history for the dashboard, sans-IO.
//! - `gateway`: the FLV relay and the file gateway modes.

/// The release version, for the API, the gateway's User-Agent and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod amf;
pub mod codec;
pub mod config;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod llhls;
pub mod media;
pub mod mux;
pub mod record;
pub mod rtmp;
pub mod server;
pub mod stats;
#[cfg(test)]
pub(crate) mod testutil;
