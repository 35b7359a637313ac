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
//! - `media`: the protocol-free `Frame`, stream names, codec configuration parsing.
//! - `amf`, `rtmp`: AMF0/AMF3 values; the RTMP handshake, chunk stream and sessions, sans-IO.
//! - `http`: request parsing, responses, routing, WebSocket framing, static files.
//! - `mux`: FLV, MPEG-TS/HLS, ISO BMFF (fMP4, MP4): frames in, bytes out, no files.
//! - `hub`: streams, publishers and players, the GOP cache, per-viewer bounded queues.
//! - `record`: the recorder worker pool and its sinks (the only writers of recordings).
//! - `server`: the one `mio::Poll` loop per process and the glue from sockets to the above.
//! - `gateway`: the FLV relay and the file gateway modes.

pub mod access;
pub mod amf;
pub mod config;
pub mod gateway;
pub mod http;
pub mod hub;
pub mod media;
pub mod mux;
pub mod record;
pub mod rtmp;
pub mod server;
