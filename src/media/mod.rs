//! Protocol-free media: the `Frame` every input produces and every output consumes, stream names,
//! the ingest normaliser (`time`: one timestamp policy; `meta`: one `onMetaData` policy), and codec
//! helpers (configuration records, RFC 6381 codec strings, Enhanced RTMP tag headers). Nothing here
//! knows about sockets, RTMP chunks or files.

pub mod frame;
pub mod key;
pub mod meta;
pub mod time;

pub use frame::{Codec, Frame, Track};
pub use key::{KeyError, StreamKey};
pub use meta::MetaInfo;
pub use time::Normaliser;
pub mod aac;
pub mod ac3;
pub mod av1;
pub mod avc;
pub mod enhanced;
pub mod hevc;
pub mod mp3;
pub mod opus;
pub mod vp9;
