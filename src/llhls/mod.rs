//! Low-Latency HLS (RFC 8216bis) core, sans-IO: so far the blocking-reload request rules
//! (`park`) and the HTTP answers (`answer`); the in-memory part window and playlist are designed in docs/llhls.md, not yet built.

pub mod answer;
pub mod park;
