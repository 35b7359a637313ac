//! Protocol-free media: the `Frame` every input produces and every output consumes, stream names,
//! and codec helpers (configuration records, RFC 6381 codec strings, Enhanced RTMP tag headers).
//! Nothing here knows about sockets, RTMP chunks or files.

pub mod frame;
pub mod key;

pub use frame::{Codec, Frame, Track};
pub use key::{KeyError, StreamKey};
pub mod aac;
pub mod ac3;
pub mod av1;
pub mod avc;
pub mod enhanced;
pub mod hevc;
pub mod mp3;
pub mod opus;
pub mod vp9;
