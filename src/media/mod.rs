//! Protocol-free media: the `Frame` every input produces and every output consumes, stream names,
//! and codec helpers. Nothing here knows about sockets, RTMP chunks or files.

pub mod frame;
pub mod key;

pub use frame::{Codec, Frame, Track};
pub use key::{KeyError, StreamKey};
pub mod aac;
pub mod avc;
