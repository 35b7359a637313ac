//! Low-Latency HLS (RFC 8216bis) core, sans-IO: the in-memory part window of a stream
//! (`window`), its playlist (`playlist`), the blocking-reload rules (`park`) and the HTTP answers
//! (`answer`). The server owns the sockets, the routing and the wiring (docs/llhls.md).

pub mod answer;
pub mod park;
pub mod playlist;
pub mod window;

pub use window::{LiveWindow, Lookup, WindowConfig};
