//! Low-Latency HLS (RFC 8216bis) core, sans-IO: the in-memory part window of a stream
//! (`window`), its playlist (`playlist`), the blocking-reload rules (`park`) and the HTTP answers
//! (`answer`), and `LlhlsConfig`, the settings `crate::config` fills in. The origin core feeds the
//! windows (`origin::llhls`); the server owns the sockets, the routing and the wiring (docs/llhls.md).

pub mod answer;
pub mod park;
pub mod playlist;
pub mod window;

pub use window::{LiveWindow, Lookup, WindowConfig};

/// The in-memory LL-HLS output of the origin; `None` in `OriginConfig` when it is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LlhlsConfig {
    pub window: WindowConfig,
    /// `--llhls-max-waiting`: blocking requests parked per stream; more get 503 at once.
    pub max_waiting: usize,
}
